"""The small JSON Schema validator behind the json / tool_args checks."""

from __future__ import annotations

import pytest

from llmroute._jsonschema import first_error, is_valid

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "role": {"enum": ["admin", "user"]},
        "boss": {"$ref": "#/$defs/ref"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
    "$defs": {"ref": {"type": ["string", "null"]}},
}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ({"name": "Ada", "age": 36}, True),
        ({"name": "Ada", "age": 36.0}, True),  # 36.0 is an integer in JSON Schema
        ({"name": "Ada", "age": True}, False),  # a boolean is never a number
        ({"name": "Ada", "age": 3.5}, False),
        ({"name": "", "age": 1}, False),
        ({"name": "Ada"}, False),
        ({"name": "Ada", "age": 1, "x": 1}, False),
        ({"name": "Ada", "age": 1, "tags": ["a", "b"]}, True),
        ({"name": "Ada", "age": 1, "tags": ["a", 2]}, False),
        ({"name": "Ada", "age": 1, "tags": ["a"] * 4}, False),
        ({"name": "Ada", "age": 1, "role": "root"}, False),
        ({"name": "Ada", "age": 1, "boss": None}, True),
        ({"name": "Ada", "age": 1, "boss": 3}, False),
        ([], False),
    ],
)
def test_object_schema(value: object, ok: bool) -> None:
    assert is_valid(value, PERSON) is ok


def test_combinators_and_messages() -> None:
    any_of = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    assert is_valid("x", any_of) and is_valid(2, any_of) and not is_valid(None, any_of)
    one_of = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    assert not is_valid(1, one_of)  # matches both
    assert is_valid(1.5, one_of)
    assert is_valid(3, {"allOf": [{"minimum": 1}, {"maximum": 5}]})
    assert not is_valid(3, {"not": {"type": "integer"}})
    assert is_valid(None, {"type": "string", "nullable": True})
    assert first_error(
        {"a": {"b": [1, "x"]}}, {"properties": {"a": {"properties": {"b": {"items": {"type": "integer"}}}}}}
    ) == ("a.b[1] should be integer, got str")


def test_unknown_keywords_are_ignored_and_depth_is_bounded() -> None:
    assert is_valid("2024-01-01", {"type": "string", "format": "date", "pattern": "^x$"})
    deep: dict = {}
    node = deep
    for _ in range(200):
        node["properties"] = {"a": {}}
        node = node["properties"]["a"]
    value: dict = {}
    v = value
    for _ in range(200):
        v["a"] = {}
        v = v["a"]
    assert first_error(value, deep) is not None  # too deep: reported, never a crash
    loop = {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}
    assert "too deeply" in (first_error({}, loop) or "")
