"""Anthropic Messages API: ``POST {base_url}/messages``, JSON or SSE (``event: message_stop``).

Translation from the OpenAI chat shape:

* every ``system`` (or ``developer``) message, in order, goes to the top-level ``system`` field
  (a string when there is one text, otherwise a list of text blocks);
* consecutive messages of the same role are merged (Anthropic requires alternation); ``tool``
  messages become ``tool_result`` blocks in a ``user`` message, placed before any text there;
* assistant ``tool_calls`` become ``tool_use`` blocks whose ``input`` is the parsed arguments
  (a call's ``extra_content``, e.g. a Gemini thought signature, is Google's and is not sent);
* ``image_url`` parts become ``image`` blocks (``base64`` source for data URLs, ``url`` otherwise);
* tools -> ``{"name", "description", "input_schema"}``; ``tool_choice`` is sent only with tools;
* ``max_tokens`` is required by Anthropic: 4096 when the request sets none;
* JSON mode: Anthropic has no ``json_object`` flag, so ``response_format`` is implemented by
  appending an instruction to the system prompt ("Respond with a single JSON object only.",
  plus the schema for ``json_schema``). The model usually complies, but it is not enforced.

Only client tools are tool calls: ``tool_use`` blocks become :class:`~llmroute.types.ToolCall`
values. Blocks of tools Anthropic runs itself (``server_tool_use`` for web search, web fetch, code
execution and tool search, ``mcp_tool_use``, and their ``*_tool_result`` blocks) are not returned:
their outcome is already in the reply text, and sending them back as ``tool_use`` would ask the
caller to run a tool it does not have. ``thinking`` and ``redacted_thinking`` blocks are not part of
the reply text either.

Usage: Anthropic's ``input_tokens`` *excludes* prompt-cache reads and writes, so llmroute's
``Usage.input_tokens`` is ``input_tokens + cache_read_input_tokens +
cache_creation_input_tokens``, ``Usage.cached_input_tokens`` is ``cache_read_input_tokens`` and
``Usage.cache_write_input_tokens`` is ``cache_creation_input_tokens`` (billed at the deployment's
``cache_write`` price).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._sse import SSEEvent
from ..errors import ContentFilteredError, InvalidRequestError, ProviderError, ResponseError
from ..types import ChatRequest, Chunk, Completion, FinishReason, ToolCall, ToolCallDelta, Usage
from .base import HTTPRequest, SSEStream, Target, error_from_status, function_tools, json_loads

__all__ = ["DEFAULT_MAX_TOKENS", "JSON_INSTRUCTION", "AnthropicAdapter", "AnthropicStream"]

#: ``max_tokens`` sent when the request has none (Anthropic requires the field).
DEFAULT_MAX_TOKENS = 4096
#: Appended to the system prompt for ``response_format`` (Anthropic has no JSON mode flag).
JSON_INSTRUCTION = "Respond with a single JSON object only."
_DEFAULT_VERSION = "2023-06-01"

_FINISH: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: Status codes for the error types Anthropic documents, for ``error`` stream events.
_ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _finish(value: Any) -> FinishReason | None:
    if value is None:
        return None
    return _FINISH.get(value, "other")


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- request translation


def _parse_data_url(url: str) -> tuple[str, str]:
    """``data:<media type>;base64,<data>`` -> (media type, data)."""
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise InvalidRequestError("image data URLs must look like data:<media type>;base64,<data>")
    media_type = head[len("data:") : -len(";base64")] or "image/jpeg"
    return media_type, data


def _image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequestError("an image_url part has no url")
    if url.startswith("data:"):
        media_type, data = _parse_data_url(url)
        source: dict[str, Any] = {"type": "base64", "media_type": media_type, "data": data}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """OpenAI message content (string, list of parts or ``None``) -> Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, (list, tuple)):
        raise InvalidRequestError(f"{where}: content must be a string or a list of parts")
    out: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            block: dict[str, Any] | None = {"type": "text", "text": part} if part else None
        elif not isinstance(part, Mapping):
            raise InvalidRequestError(f"{where}: content parts must be objects")
        elif part.get("type") == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequestError(f"{where}: a text part has no text")
            block = {"type": "text", "text": text} if text else None
        elif part.get("type") == "image_url":
            block = _image_block(part)
        else:
            raise InvalidRequestError(f"{where}: unsupported content part type {part.get('type')!r}")
        if block is not None:
            if isinstance(part, Mapping) and part.get("cache_control") is not None:
                block["cache_control"] = part["cache_control"]
            out.append(block)
    return out


def _tool_input(call: Mapping[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    fn = call.get("function")
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise InvalidRequestError(f"{where}: a tool call has no function name")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError(f"{where}: tool call {fn['name']!r} has no id")
    raw = fn.get("arguments")
    if raw is None or raw == "":
        return call_id, fn["name"], {}
    if isinstance(raw, Mapping):
        return call_id, fn["name"], dict(raw)
    try:
        args = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(
            f"{where}: tool call {call_id!r} ({fn['name']}) has arguments that are not valid JSON: {exc}"
        ) from None
    if not isinstance(args, dict):
        raise InvalidRequestError(f"{where}: tool call {call_id!r} ({fn['name']}) arguments must be a JSON object")
    return call_id, fn["name"], args


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError(f"{where}: a tool message needs a tool_call_id")
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    elif content is not None:
        block["content"] = _blocks(content, where)
    return block


def _messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system text blocks, Anthropic messages) from OpenAI-shaped messages."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"{where}: a message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            for block in _blocks(message.get("content"), where):
                if block["type"] != "text":
                    raise InvalidRequestError(f"{where}: system messages may only hold text")
                system.append(block)
            continue
        if role == "user":
            wire_role, blocks = "user", _blocks(message.get("content"), where)
        elif role == "assistant":
            wire_role, blocks = "assistant", _blocks(message.get("content"), where)
            for call in message.get("tool_calls") or ():
                if not isinstance(call, Mapping):
                    raise InvalidRequestError(f"{where}: tool_calls entries must be objects")
                call_id, name, args = _tool_input(call, where)
                blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
        elif role == "tool":
            wire_role, blocks = "user", [_tool_result(message, where)]
        else:
            raise InvalidRequestError(f"{where}: unsupported role {role!r}")
        if not blocks:
            continue  # Anthropic rejects empty content; merging keeps the turns alternating
        if out and out[-1]["role"] == wire_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": wire_role, "content": blocks})
    for message in out:
        blocks = message["content"]
        if message["role"] == "user":
            # tool_result blocks must come first in a user turn
            blocks.sort(key=lambda b: b["type"] != "tool_result")
        if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
            message["content"] = blocks[0]["text"]
    return system, out


def _tools(tools: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for fn in function_tools(tools):
        item: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            item["description"] = fn["description"]
        item["input_schema"] = dict(fn.get("parameters") or {"type": "object", "properties": {}})
        out.append(item)
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else choice.get("name")
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise InvalidRequestError(f"unsupported tool_choice {choice!r}")


def _json_instruction(response_format: Mapping[str, Any]) -> str | None:
    kind = response_format.get("type")
    if kind == "json_object":
        return JSON_INSTRUCTION
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if schema is None:
            return JSON_INSTRUCTION
        return f"{JSON_INSTRUCTION} It must conform to this JSON schema:\n{json.dumps(schema)}"
    if kind in (None, "text"):
        return None
    raise InvalidRequestError(f"unsupported response_format type {kind!r}")


# --------------------------------------------------------------------------- responses


def _usage(data: Any) -> Usage:
    """Anthropic usage -> llmroute Usage (cache reads and writes counted as input, and apart)."""
    if not isinstance(data, Mapping):
        return Usage()
    read = _int(data.get("cache_read_input_tokens"))
    written = _int(data.get("cache_creation_input_tokens"))
    return Usage(_int(data.get("input_tokens")) + read + written, _int(data.get("output_tokens")), read, written)


def _error_fields(err: Any) -> tuple[str, str | None]:
    if isinstance(err, Mapping):
        return str(err.get("message") or ""), (str(err.get("type")) if err.get("type") else None)
    if isinstance(err, str):
        return err, None
    return "", None


class AnthropicAdapter:
    """The Anthropic Messages wire format."""

    api = "anthropic"

    def build_request(self, request: ChatRequest, target: Target, *, stream: bool) -> HTTPRequest:
        """The ``messages`` request for *request*; raises InvalidRequestError for untranslatable input."""
        system, messages = _messages(request.messages)
        if request.response_format is not None:
            instruction = _json_instruction(request.response_format)
            if instruction is not None:
                system.append({"type": "text", "text": instruction})
        body: dict[str, Any] = {
            "model": target.model,
            "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            plain = all(len(b) == 2 for b in system)
            body["system"] = "\n\n".join(b["text"] for b in system) if plain else system
        if request.tools:
            body["tools"] = _tools(request.tools)
            if request.tool_choice is not None:
                body["tool_choice"] = _tool_choice(request.tool_choice)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
        if stream:
            body["stream"] = True
        if request.extra_body:
            body.update(request.extra_body)
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "anthropic-version": target.api_version or _DEFAULT_VERSION,
        }
        if target.api_key is not None:
            headers["x-api-key"] = target.api_key.get_secret_value()
        for k, v in target.headers.items():
            headers[k.lower()] = v.get_secret_value()
        url = target.base_url.rstrip("/") + "/messages"
        return HTTPRequest("POST", url, headers, json.dumps(body).encode())

    def parse_response(self, body: bytes, target: Target) -> Completion:
        """Parse a ``message`` object."""
        data = json_loads(body, target)
        if isinstance(data, dict) and data.get("type") == "error":
            message, code = _error_fields(data.get("error"))
            status = _ERROR_STATUS.get(code or "", 500)
            snippet = body[:500].decode("utf-8", "replace")
            raise error_from_status(status, message or "provider error", target, body=snippet, code=code)
        try:
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in data["content"]:
                kind = block.get("type")
                if kind == "text":
                    if not isinstance(block["text"], str):
                        raise TypeError("text block without a string")
                    texts.append(block["text"])
                elif kind == "tool_use":
                    calls.append(ToolCall(str(block["id"]), str(block["name"]), json.dumps(block.get("input") or {})))
                # thinking, redacted_thinking and server tool blocks carry no reply text
            finish = _finish(data.get("stop_reason"))
            usage = _usage(data.get("usage"))
            model, rid = _str(data.get("model")), _str(data.get("id"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ResponseError(
                f"unexpected message shape: {exc!r}",
                body=body[:200].decode("utf-8", "replace"),
                **target.error_fields(),
            ) from None
        text = "".join(texts) if texts else None
        if finish == "content_filter" and not text and not calls:
            raise ContentFilteredError("the provider refused to answer (stop_reason: refusal)", **target.error_fields())
        return Completion(text, tuple(calls), finish, usage, model, rid)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> ProviderError:
        """Map ``{"type": "error", "error": {"type", "message"}}`` and the status to the hierarchy."""
        text = body[:2000].decode("utf-8", "replace")
        try:
            message, code = _error_fields(json.loads(body).get("error"))
        except (ValueError, AttributeError, UnicodeDecodeError):
            message, code = text[:200], None
        return error_from_status(status, message, target, headers=headers, body=text, code=code)

    def stream_parser(self, target: Target) -> AnthropicStream:
        """A decoder for Messages SSE events."""
        return AnthropicStream(target)


class AnthropicStream(SSEStream):
    """Incremental decoder of one streamed Messages response (see :class:`~.base.StreamParser`)."""

    __slots__ = ("_done", "_emitted", "_finish", "_id", "_model", "_tool_args", "_usage")

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._done = False
        self._emitted = False
        self._finish: FinishReason | None = None
        self._id: str | None = None
        self._model: str | None = None
        #: Raw cumulative usage fields, from message_start updated by message_delta.
        self._usage: dict[str, Any] = {}
        #: Open client ``tool_use`` blocks: index -> whether an argument fragment was emitted. Server
        #: tool blocks (``server_tool_use``, ``mcp_tool_use``) are not tool calls and are not listed.
        self._tool_args: dict[int, bool] = {}

    def _end(self) -> list[Chunk]:
        if not self._done:
            raise ResponseError("stream ended before message_stop", **self._target.error_fields())
        return []

    def _bad(self, what: str, data: str) -> ResponseError:
        return ResponseError(what, body=data[:200], **self._target.error_fields())

    def _chunk(self, text: str = "", calls: tuple[ToolCallDelta, ...] = ()) -> Chunk:
        self._emitted = True
        return Chunk(text, calls, None, None, self._model, self._id)

    def _event(self, event: SSEEvent) -> list[Chunk]:
        name, data = event.event, event.data
        if self._done or name == "ping" or (not data and name in ("message", "")):
            return []
        obj = json_loads(data, self._target)
        if not isinstance(obj, dict):
            raise self._bad("stream event is not an object", data)
        kind = obj.get("type") or name
        try:
            return self._dispatch(kind, obj, data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise self._bad(f"unexpected {kind} event shape: {exc!r}", data) from None

    def _dispatch(self, kind: str, obj: dict[str, Any], data: str) -> list[Chunk]:
        if kind == "message_start":
            message = obj["message"]
            self._id = _str(message.get("id"))
            self._model = _str(message.get("model"))
            if isinstance(message.get("usage"), Mapping):
                self._usage.update(message["usage"])
            return []
        if kind == "content_block_start":
            index, block = int(obj["index"]), obj["content_block"]
            if block.get("type") == "tool_use":
                self._tool_args[index] = False
                return [self._chunk(calls=(ToolCallDelta(index, str(block["id"]), str(block["name"])),))]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk(str(block["text"]))]
            return []
        if kind == "content_block_delta":
            index, delta = int(obj["index"]), obj["delta"]
            if delta.get("type") == "text_delta":
                text = delta["text"]
                if not isinstance(text, str):
                    raise TypeError("text_delta without a string")
                return [self._chunk(text)] if text else []
            if delta.get("type") == "input_json_delta":
                fragment = delta.get("partial_json") or ""
                if not isinstance(fragment, str):
                    raise TypeError("partial_json is not a string")
                if not fragment or index not in self._tool_args:
                    return []  # nothing, or the input of a server tool (web search, MCP, code execution...)
                self._tool_args[index] = True
                return [self._chunk(calls=(ToolCallDelta(index, arguments=fragment),))]
            return []  # thinking_delta, signature_delta, citations_delta: not part of the reply
        if kind == "content_block_stop":
            index = int(obj["index"])
            if self._tool_args.pop(index, None) is False:
                # a tool call with no arguments: keep the assembled text valid JSON, as parse_response does
                return [self._chunk(calls=(ToolCallDelta(index, arguments="{}"),))]
            return []
        if kind == "message_delta":
            delta = obj.get("delta") or {}
            if delta.get("stop_reason") is not None:
                self._finish = _finish(delta["stop_reason"])
            usage = obj.get("usage")
            if isinstance(usage, Mapping):
                # cumulative counts; newer API versions repeat the input side here too
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            return []
        if kind == "message_stop":
            self._done = True
            finish = self._finish or "other"
            if finish == "content_filter" and not self._emitted:
                raise ContentFilteredError(
                    "the provider refused to answer (stop_reason: refusal)", **self._target.error_fields()
                )
            return [Chunk("", (), finish, _usage(self._usage), self._model, self._id)]
        if kind == "error":
            message, code = _error_fields(obj.get("error"))
            status = _ERROR_STATUS.get(code or "", 500)
            raise error_from_status(status, message or "stream error", self._target, body=data[:500], code=code)
        return []  # unknown event types are ignored, as Anthropic's versioning policy asks
