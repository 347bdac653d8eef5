"""A small JSON Schema validator for the subset tool parameters and response formats use.

Supported keywords: ``type`` (one or a list; ``integer`` accepts ``3.0``, booleans are never
numbers), ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties`` (``false``
or a schema), ``items`` (a schema), ``minItems``/``maxItems``, ``minLength``/``maxLength``,
``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``, ``anyOf``, ``oneOf``,
``allOf``, ``not``, ``nullable`` (OpenAPI, as Gemini schemas write it), local ``$ref``
(``#/$defs/...``, ``#/definitions/...``) with ``$defs``/``definitions``. Keywords it does not
know (``format``, ``pattern``, ``description``, ...) are ignored, so a schema using them is
checked less strictly, never wrongly rejected. Nesting is bounded (64 levels).

Why not ``jsonschema``: this runs on every cascade tier's answer in microseconds and needs no
dependency; what it leaves out is what tool and response schemas rarely carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["first_error", "is_valid"]

_MAX_DEPTH = 64


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float))
    return True  # an unknown type name: not checked


def _where(path: str) -> str:
    return path or "the value"


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def _check(value: Any, schema: Any, path: str, root: Mapping[str, Any], depth: int) -> str | None:
    if schema is True or schema is None or not isinstance(schema, Mapping):
        return None if schema is not False else f"{_where(path)} is not allowed"
    if depth > _MAX_DEPTH:
        return f"{_where(path)}: schema nested too deeply"
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, root)
        if target is not None:
            err = _check(value, target, path, root, depth + 1)
            if err:
                return err
    if value is None and schema.get("nullable") is True:
        return None
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(isinstance(k, str) and _type_ok(value, k) for k in kinds):
            return f"{_where(path)} should be {' or '.join(map(str, kinds))}, got {type(value).__name__}"
    if "const" in schema and value != schema["const"]:
        return f"{_where(path)} should be {schema['const']!r}"
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        return f"{_where(path)} should be one of {enum!r}"[:200]
    if isinstance(value, dict):
        err = _check_object(value, schema, path, root, depth)
        if err:
            return err
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, (Mapping, bool)):
            for i, item in enumerate(value):
                err = _check(item, items, f"{path}[{i}]", root, depth + 1)
                if err:
                    return err
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        if isinstance(lo, int) and len(value) < lo:
            return f"{_where(path)} should have at least {lo} items"
        if isinstance(hi, int) and len(value) > hi:
            return f"{_where(path)} should have at most {hi} items"
    elif isinstance(value, str):
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        if isinstance(lo, int) and len(value) < lo:
            return f"{_where(path)} should be at least {lo} characters"
        if isinstance(hi, int) and len(value) > hi:
            return f"{_where(path)} should be at most {hi} characters"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, bad in (
            ("minimum", lambda v, b: v < b),
            ("maximum", lambda v, b: v > b),
            ("exclusiveMinimum", lambda v, b: v <= b),
            ("exclusiveMaximum", lambda v, b: v >= b),
        ):
            bound = schema.get(key)
            if isinstance(bound, (int, float)) and not isinstance(bound, bool) and bad(value, bound):
                return f"{_where(path)} violates {key} {bound}"
    for key in ("allOf", "anyOf", "oneOf"):
        subs = schema.get(key)
        if not isinstance(subs, list) or not subs:
            continue
        errors = [_check(value, s, path, root, depth + 1) for s in subs]
        passed = sum(e is None for e in errors)
        if key == "allOf" and passed < len(subs):
            return next(e for e in errors if e)
        if key == "anyOf" and passed == 0:
            return f"{_where(path)} matches none of anyOf ({errors[0]})"
        if key == "oneOf" and passed != 1:
            return f"{_where(path)} matches {passed} of oneOf, not exactly one"
    neg = schema.get("not")
    if isinstance(neg, Mapping) and _check(value, neg, path, root, depth + 1) is None:
        return f"{_where(path)} matches a schema it must not"
    return None


def _check_object(value: dict, schema: Mapping[str, Any], path: str, root: Mapping[str, Any], depth: int) -> str | None:
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = schema.get("required")
    if isinstance(required, list):
        for name in required:
            if isinstance(name, str) and name not in value:
                return f"{path + '.' if path else ''}{name} is required"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        sub_path = f"{path}.{name}" if path else str(name)
        if name in props:
            err = _check(item, props[name], sub_path, root, depth + 1)
        elif extra is False:
            err = f"{sub_path} is not an allowed property"
        elif isinstance(extra, Mapping):
            err = _check(item, extra, sub_path, root, depth + 1)
        else:
            err = None
        if err:
            return err
    return None


def first_error(value: Any, schema: Mapping[str, Any] | bool) -> str | None:
    """The first way *value* (parsed JSON) breaks *schema*, as a short message; ``None`` if valid."""
    root = schema if isinstance(schema, Mapping) else {}
    try:
        return _check(value, schema, "", root, 0)
    except RecursionError:
        return "the value is nested too deeply"


def is_valid(value: Any, schema: Mapping[str, Any] | bool) -> bool:
    """Whether *value* (parsed JSON) satisfies *schema* (the supported subset, see the module docstring)."""
    return first_error(value, schema) is None
