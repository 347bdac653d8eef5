"""The three providers' response wire formats, as pure functions (no I/O, no clocks).

Every builder takes a :class:`Turn` (what the fake model "said", provider-neutral) and returns
bytes exactly as the real API would put them on the wire:

* OpenAI Chat Completions: a ``chat.completion`` object, or ``chat.completion.chunk`` SSE events
  ending in ``data: [DONE]`` (with a final ``choices: []`` usage chunk when
  ``stream_options.include_usage`` is true).
* Anthropic Messages: a ``message`` object, or the SSE sequence ``message_start``,
  ``content_block_start``, ``ping``, ``content_block_delta`` (``thinking_delta`` /
  ``signature_delta`` / ``citations_delta`` / ``text_delta`` / ``input_json_delta``),
  ``content_block_stop``, ``message_delta`` (with the whole usage), ``message_stop``.
* Gemini ``generateContent``: a ``GenerateContentResponse`` (pretty-printed, as Google does), or
  for ``streamGenerateContent`` one response per chunk, as SSE (``alt=sse``, events separated by
  ``\\r\\n\\r\\n``) or as a streamed JSON array (no ``alt``). A turn's thought signature (Gemini 3)
  goes on the first ``functionCall`` part, or on the last text part when there is no call; and
  :func:`unsigned_function_call` finds what Gemini 3 rejects in a request's ``contents``.

Stream builders yield ``(event_bytes, tokens)`` pairs: ``tokens`` is how many output tokens the
event carries, so the server can pace them (time to first token, tokens per second) and cut a
stream after N tokens. Error builders return ``(status, body)`` in each provider's error format.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "API",
    "ErrorKind",
    "Finish",
    "Turn",
    "anthropic_body",
    "anthropic_stream",
    "context_limit_message",
    "default_status",
    "error_body",
    "error_kind_for_status",
    "gemini_body",
    "gemini_stream",
    "looks_like_gemini_3",
    "malformed_body",
    "malformed_event",
    "openai_body",
    "openai_rate_limit_headers",
    "openai_stream",
    "schema_problems",
    "stream_error_event",
    "thinking_mode",
    "thought_signature",
    "thought_signature_message",
    "unsigned_function_call",
]

API = Literal["openai", "anthropic", "gemini"]
#: Provider-neutral finish reason of a :class:`Turn`.
Finish = Literal["stop", "length", "tool_calls", "content_filter"]
#: Provider-neutral error kinds; each maps to the provider's own type/code/status.
ErrorKind = Literal[
    "rate_limit",
    "server_error",
    "overloaded",
    "bad_request",
    "context_overflow",
    "auth",
    "permission",
    "not_found",
    "model_not_found",
    "too_large",
    "timeout",
]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_pretty = json.JSONEncoder(ensure_ascii=False, indent=2).encode


@dataclass(slots=True)
class Turn:
    """One reply of the fake model, before it is put in a provider's wire format."""

    id: str
    model: str
    created: int
    #: Text tokens in order; ``"".join(pieces)`` is the reply text.
    pieces: list[str] = field(default_factory=list)
    #: ``(call_id, name, arguments_json)`` per tool call.
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    finish: Finish = "stop"
    input_tokens: int = 0
    #: Prompt tokens read from the cache (part of ``input_tokens``).
    cached_tokens: int = 0
    #: Prompt tokens written to the cache (part of ``input_tokens``); only Anthropic reports them.
    cache_write_tokens: int = 0
    #: Gemini 3's ``thoughtSignature`` for this turn (Gemini only; ``None``: the model sends none).
    thought_signature: str | None = None
    #: Thinking tokens in order (a reasoning model's thoughts); counted as output tokens everywhere.
    thinking: list[str] = field(default_factory=list)
    #: Whether the thoughts are shown: Anthropic ``thinking`` blocks (extended thinking enabled),
    #: Gemini ``thought: true`` parts (``includeThoughts``). OpenAI never shows them.
    show_thinking: bool = False
    #: Anthropic only: the thoughts come as a ``redacted_thinking`` block (opaque ``data``).
    redacted_thinking: bool = False
    #: Anthropic only: the text block carries a citation (``citations_delta`` when streamed).
    citations: bool = False
    #: Log-probability of each text piece, when the request asked for them (OpenAI, Gemini).
    logprobs: list[float] | None = None

    @property
    def text(self) -> str:
        """The full reply text."""
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        """Text tokens plus, per tool call, one for the name and one per argument fragment (thinking
        tokens not included: see :attr:`thinking_tokens`)."""
        return len(self.pieces) + sum(1 + len(arg_fragments(a)) for _, _, a in self.tool_calls)

    @property
    def thinking_tokens(self) -> int:
        """Thinking tokens (billed as output by every provider)."""
        return len(self.thinking)

    @property
    def thinking_text(self) -> str:
        """The full thoughts."""
        return "".join(self.thinking)

    def opaque(self, kind: str) -> str:
        """Deterministic base64 for this turn's signature or redacted-thinking data (*kind*)."""
        digest = hashlib.sha256(f"llmroute-{kind}:{self.model}:{self.id}".encode()).digest()
        return base64.b64encode(digest * 2).decode()


def arg_fragments(arguments: str, size: int = 8) -> list[str]:
    """Split tool-call argument JSON into the small fragments a stream carries."""
    if not arguments:
        return [""]
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


# --------------------------------------------------------------------------------------------
# OpenAI Chat Completions

_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}
_FINGERPRINT = "fp_llmroute"


def _openai_usage(t: Turn) -> dict[str, Any]:
    out = t.output_tokens + t.thinking_tokens  # completion_tokens include the reasoning tokens
    return {
        "prompt_tokens": t.input_tokens,
        "completion_tokens": out,
        "total_tokens": t.input_tokens + out,
        "prompt_tokens_details": {"cached_tokens": t.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": t.thinking_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_body(t: Turn) -> bytes:
    """A non-streamed ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": t.text if (t.pieces or not t.tool_calls) else None,
        "refusal": None,
        "annotations": [],
    }
    if t.finish == "content_filter" and not t.pieces:
        message["content"] = None
    if t.tool_calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in t.tool_calls
        ]
    logprobs = None
    if t.logprobs is not None:  # the shape of OpenAI's ChoiceLogprobs
        content = [
            {"token": p, "logprob": lp, "bytes": list(p.encode()), "top_logprobs": []}
            for p, lp in zip(t.pieces, t.logprobs)
        ]
        logprobs = {"content": content, "refusal": None}
    body = {
        "id": t.id,
        "object": "chat.completion",
        "created": t.created,
        "model": t.model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": _OPENAI_FINISH[t.finish]}],
        "usage": _openai_usage(t),
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    return _dumps(body).encode()


def openai_stream(t: Turn, *, include_usage: bool) -> Iterator[tuple[bytes, int]]:
    """``chat.completion.chunk`` SSE events, then the usage chunk (if asked) and ``[DONE]``."""
    head = (
        f'data: {{"id":{_dumps(t.id)},"object":"chat.completion.chunk","created":{t.created},'
        f'"model":{_dumps(t.model)},"service_tier":"default","system_fingerprint":"{_FINGERPRINT}","choices":['
    )
    tail = ',"usage":null}\n\n' if include_usage else "}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return (head + _dumps(choice) + "]" + tail).encode()

    first: dict[str, Any] = {
        "role": "assistant",
        "content": None if t.tool_calls and not t.pieces else "",
        "refusal": None,
    }
    yield chunk(first), 0
    for piece in t.pieces:
        yield chunk({"content": piece}), 1
    for i, (cid, name, args) in enumerate(t.tool_calls):
        yield (
            chunk(
                {
                    "tool_calls": [
                        {"index": i, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}
                    ]
                }
            ),
            1,
        )
        for frag in arg_fragments(args):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}), 1
    yield chunk({}, _OPENAI_FINISH[t.finish]), 0
    if include_usage:
        usage = {
            "id": t.id,
            "object": "chat.completion.chunk",
            "created": t.created,
            "model": t.model,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": [],
            "usage": _openai_usage(t),
        }
        yield b"data: " + _dumps(usage).encode() + b"\n\n", 0
    yield b"data: [DONE]\n\n", 0


# --------------------------------------------------------------------------------------------
# Anthropic Messages

_ANTHROPIC_FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def _anthropic_usage(t: Turn, output_tokens: int) -> dict[str, Any]:
    # Anthropic's input_tokens excludes cache reads and writes: the three input counts add up to the prompt.
    return {
        "input_tokens": t.input_tokens - t.cached_tokens - t.cache_write_tokens,
        "cache_creation_input_tokens": t.cache_write_tokens,
        "cache_read_input_tokens": t.cached_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _anthropic_thinking(t: Turn) -> dict[str, Any] | None:
    """The turn's thinking block, if it shows one."""
    if not t.thinking or not t.show_thinking:
        return None
    if t.redacted_thinking:
        return {"type": "redacted_thinking", "data": t.opaque("redacted")}
    return {"type": "thinking", "thinking": t.thinking_text, "signature": t.opaque("signature")}


def _anthropic_citation(t: Turn) -> dict[str, Any]:
    """The text block's citation: a ``char_location`` in document 0 quoting the reply's first words."""
    cited = "".join(t.pieces[:3]).strip() or "document"
    return {
        "type": "char_location",
        "cited_text": cited,
        "document_index": 0,
        "document_title": None,
        "start_char_index": 0,
        "end_char_index": len(cited),
    }


def anthropic_body(t: Turn) -> bytes:
    """A non-streamed ``message`` object."""
    content: list[dict[str, Any]] = []
    thinking = _anthropic_thinking(t)
    if thinking is not None:
        content.append(thinking)
    if t.pieces:
        block: dict[str, Any] = {"type": "text", "text": t.text}
        if t.citations:
            block["citations"] = [_anthropic_citation(t)]
        content.append(block)
    for cid, name, args in t.tool_calls:
        content.append({"type": "tool_use", "id": cid, "name": name, "input": json.loads(args or "{}")})
    body = {
        "id": t.id,
        "type": "message",
        "role": "assistant",
        "model": t.model,
        "content": content,
        "stop_reason": _ANTHROPIC_FINISH[t.finish],
        "stop_sequence": None,
        "usage": _anthropic_usage(t, t.output_tokens + t.thinking_tokens),
    }
    return _dumps(body).encode()


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _dumps(data).encode() + b"\n\n"


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _block_stop(index: int) -> bytes:
    return _sse("content_block_stop", {"type": "content_block_stop", "index": index})


def anthropic_stream(t: Turn) -> Iterator[tuple[bytes, int]]:
    """The Messages SSE event sequence, ``message_start`` through ``message_stop``: a thinking
    block first when the turn shows one (``thinking_delta`` pieces then a ``signature_delta``, or a
    whole ``redacted_thinking`` block), the text block (a ``citations_delta`` before the text when
    the turn cites), the ``tool_use`` blocks, then ``message_delta`` with the full usage."""
    message = {
        "id": t.id,
        "type": "message",
        "role": "assistant",
        "model": t.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(t, 1),
    }
    yield _sse("message_start", {"type": "message_start", "message": message}), 0
    index = 0
    pinged = False
    thinking = _anthropic_thinking(t)
    if thinking is not None:
        if thinking["type"] == "redacted_thinking":
            yield _block_start(index, thinking), len(t.thinking)
            yield _sse("ping", {"type": "ping"}), 0
        else:
            yield _block_start(index, {"type": "thinking", "thinking": "", "signature": ""}), 0
            yield _sse("ping", {"type": "ping"}), 0
            for piece in t.thinking:
                yield _block_delta(index, {"type": "thinking_delta", "thinking": piece}), 1
            yield _block_delta(index, {"type": "signature_delta", "signature": thinking["signature"]}), 0
        pinged = True
        yield _block_stop(index), 0
        index += 1
    if t.pieces:
        block: dict[str, Any] = {"type": "text", "text": ""}
        if t.citations:
            block = {"citations": [], **block}
        yield _block_start(index, block), 0
        if not pinged:
            yield _sse("ping", {"type": "ping"}), 0
            pinged = True
        if t.citations:
            yield _block_delta(index, {"type": "citations_delta", "citation": _anthropic_citation(t)}), 0
        for piece in t.pieces:
            yield _block_delta(index, {"type": "text_delta", "text": piece}), 1
        yield _block_stop(index), 0
        index += 1
    for cid, name, args in t.tool_calls:
        yield _block_start(index, {"type": "tool_use", "id": cid, "name": name, "input": {}}), 1
        if not pinged:
            yield _sse("ping", {"type": "ping"}), 0
            pinged = True
        for frag in arg_fragments(args):
            yield _block_delta(index, {"type": "input_json_delta", "partial_json": frag}), 1
        yield _block_stop(index), 0
        index += 1
    if not pinged:
        yield _sse("ping", {"type": "ping"}), 0
    # like the real API, message_delta repeats the whole usage: input and cache counts too
    usage = _anthropic_usage(t, t.output_tokens + t.thinking_tokens)
    usage.pop("service_tier")
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _ANTHROPIC_FINISH[t.finish], "stop_sequence": None},
        "usage": usage,
    }
    yield _sse("message_delta", delta), 0
    yield _sse("message_stop", {"type": "message_stop"}), 0


# --------------------------------------------------------------------------------------------
# Gemini generateContent

_GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_SAFETY_BLOCK = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]


def _gemini_usage(t: Turn, candidates: int, thoughts: int) -> dict[str, Any]:
    # Like the real API: zero counts are omitted; in a stream every chunk carries the counts so far.
    usage: dict[str, Any] = {"promptTokenCount": t.input_tokens}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = t.input_tokens + candidates + thoughts
    if t.cached_tokens:
        usage["cachedContentTokenCount"] = t.cached_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": t.input_tokens}]
    if t.cached_tokens:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": t.cached_tokens}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _gemini_candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    cand: dict[str, Any] = {}
    if parts:
        cand["content"] = {"parts": parts, "role": "model"}
    if finish is not None:
        cand["finishReason"] = finish
        if finish == "SAFETY":
            cand["safetyRatings"] = _SAFETY_BLOCK
    cand["index"] = 0
    return cand


def _gemini_call_parts(t: Turn) -> list[dict[str, Any]]:
    parts = [{"functionCall": {"name": name, "args": json.loads(args or "{}")}} for _, name, args in t.tool_calls]
    if parts and t.thought_signature:  # parallel calls: only the first one is signed
        parts[0]["thoughtSignature"] = t.thought_signature
    return parts


def _gemini_text_part(t: Turn, text: str, last: bool) -> dict[str, Any]:
    part: dict[str, Any] = {"text": text}
    if last and t.thought_signature and not t.tool_calls:  # no call: the last text part is signed
        part["thoughtSignature"] = t.thought_signature
    return part


def thinking_mode(api: API, body: Any) -> tuple[bool, bool]:
    """``(thinks, shows)`` for a reasoning model answering *body*: Anthropic models think only with
    extended thinking on (``thinking.type`` ``enabled`` or ``adaptive``) and then show it; Gemini
    models always think and show thoughts with ``thinkingConfig.includeThoughts``; OpenAI reasoning
    models always think and never show it."""
    body = body if isinstance(body, dict) else {}
    if api == "anthropic":
        thinking = body.get("thinking")
        on = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        return on, on
    if api == "gemini":
        config = _field(body, "generationConfig", "generation_config")
        thinking = _field(config, "thinkingConfig", "thinking_config") if isinstance(config, dict) else None
        shown = isinstance(thinking, dict) and _field(thinking, "includeThoughts", "include_thoughts") is True
        return True, shown
    return True, False


def _gemini_thought_parts(t: Turn) -> list[dict[str, Any]]:
    """The thoughts as ``thought: true`` parts, when the request asked for them (``includeThoughts``)."""
    return [{"text": piece, "thought": True} for piece in t.thinking] if t.show_thinking else []


def gemini_body(t: Turn) -> bytes:
    """A non-streamed ``GenerateContentResponse`` (pretty-printed, like Google's)."""
    thoughts = _gemini_thought_parts(t)
    parts: list[dict[str, Any]] = [{"text": t.thinking_text, "thought": True}] if thoughts else []
    if t.pieces:
        parts.append(_gemini_text_part(t, t.text, True))
    parts += _gemini_call_parts(t)
    candidate = _gemini_candidate(parts, _GEMINI_FINISH[t.finish])
    if t.logprobs is not None and t.pieces:  # responseLogprobs: avgLogprobs and logprobsResult
        chosen = [{"token": p, "logProbability": lp} for p, lp in zip(t.pieces, t.logprobs)]
        candidate["avgLogprobs"] = sum(t.logprobs) / len(t.logprobs)
        candidate["logprobsResult"] = {
            "topCandidates": [{"candidates": [c]} for c in chosen],
            "chosenCandidates": chosen,
        }
    body = {
        "candidates": [candidate],
        "usageMetadata": _gemini_usage(t, t.output_tokens, t.thinking_tokens),
        "modelVersion": t.model,
        "responseId": t.id,
    }
    return _pretty(body).encode()


def gemini_stream(t: Turn, *, sse: bool) -> Iterator[tuple[bytes, int]]:
    """One ``GenerateContentResponse`` per chunk: SSE ``data:`` events, or a streamed JSON array.

    Shown thoughts come first, one ``thought: true`` part per chunk; every chunk carries the usage
    so far (thoughts not shown are all counted from the first chunk: the model thought before it
    wrote); the last chunk carries ``finishReason``. Function calls come whole, in one chunk.
    """
    n = len(t.pieces)
    chunks: list[tuple[list[dict[str, Any]], int]] = [([part], 1) for part in _gemini_thought_parts(t)]
    chunks += [([_gemini_text_part(t, p, i == n - 1)], 1) for i, p in enumerate(t.pieces)]
    if t.tool_calls:
        chunks.append((_gemini_call_parts(t), t.output_tokens - len(t.pieces)))
    if not chunks:
        chunks.append(([], 0))
    last = len(chunks) - 1
    thoughts = 0 if t.show_thinking else t.thinking_tokens
    candidates = 0
    for i, (parts, ntok) in enumerate(chunks):
        final = i == last
        if parts and parts[0].get("thought"):
            thoughts += ntok
        else:
            candidates += ntok
        body = {
            "candidates": [_gemini_candidate(parts, _GEMINI_FINISH[t.finish] if final else None)],
            "usageMetadata": _gemini_usage(t, candidates, thoughts),
            "modelVersion": t.model,
            "responseId": t.id,
        }
        if sse:
            yield b"data: " + _dumps(body).encode() + b"\r\n\r\n", ntok
        else:
            text = _pretty(body)
            prefix = "[" if i == 0 else ",\r\n"
            yield (prefix + text + ("]" if final else "")).encode(), ntok


_GEMINI_MAJOR = re.compile(r"(?:^|/)gemini-(\d+)(?=[.\-]|$)")
_SIGNATURE_DOCS = "https://ai.google.dev/gemini-api/docs/thought-signatures"


def looks_like_gemini_3(model: str) -> bool:
    """Whether *model* is a Gemini 3 (or later) id, e.g. ``gemini-3-pro-preview``, ``gemini-3.1-flash``."""
    match = _GEMINI_MAJOR.search(model.lower())
    return match is not None and int(match.group(1)) >= 3


def thought_signature(model: str, turn_id: str) -> str:
    """The fake's opaque thought signature for one turn: base64 text, deterministic in its inputs."""
    digest = hashlib.sha256(f"llmroute-thought:{model}:{turn_id}".encode()).digest()
    return base64.b64encode(digest).decode()


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


def unsigned_function_call(contents: Any) -> tuple[str, int] | None:
    """``(function name, 1-based content position)`` of the first current-turn step Gemini 3 rejects.

    The current turn is every content after the last ``user`` content holding more than function
    responses; in each of its ``model`` contents, the first ``functionCall`` part must carry a
    non-empty ``thoughtSignature`` (any string, ``skip_thought_signature_validator`` included).
    """
    items = [c if isinstance(c, dict) else {} for c in contents] if isinstance(contents, list) else []
    parts_of = [
        [p for p in c["parts"] if isinstance(p, dict)] if isinstance(c.get("parts"), list) else [] for c in items
    ]
    start = 0
    for i, content in enumerate(items):
        if content.get("role", "user") == "user" and any(
            _field(p, "functionResponse", "function_response") is None for p in parts_of[i]
        ):
            start = i + 1
    for i in range(start, len(items)):
        if items[i].get("role") != "model":
            continue
        first = next((p for p in parts_of[i] if isinstance(_field(p, "functionCall", "function_call"), dict)), None)
        if first is not None and not _field(first, "thoughtSignature", "thought_signature"):
            return str(_field(first, "functionCall", "function_call").get("name")), i + 1
    return None


#: The fields of Google's ``Schema`` (its OpenAPI subset), which ``parameters`` and ``responseSchema``
#: take; the JSON Schema fields ``parametersJsonSchema`` and ``responseJsonSchema`` take anything.
_GOOGLE_SCHEMA_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)


def _schema_problems(schema: Any, where: str, out: list[str]) -> None:
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        if camel not in _GOOGLE_SCHEMA_FIELDS:
            out.append(
                f"Invalid JSON payload received. Unknown name {json.dumps(key)} at '{where}': Cannot find field."
            )
        elif camel == "type" and isinstance(value, list):
            out.append(
                f"Invalid JSON payload received. Unknown name \"type\" at '{where}': "
                "Proto field is not repeating, cannot start list."
            )
        elif camel == "properties" and isinstance(value, dict):
            for i, sub in enumerate(value.values()):
                _schema_problems(sub, f"{where}.properties[{i}].value", out)
        elif camel == "items":
            _schema_problems(value, f"{where}.items", out)
        elif camel == "anyOf" and isinstance(value, list):
            for i, sub in enumerate(value):
                _schema_problems(sub, f"{where}.any_of[{i}]", out)


def schema_problems(body: Any) -> list[str]:
    """What Gemini rejects (400 ``INVALID_ARGUMENT``) in a request's ``parameters`` and
    ``responseSchema``, which take only Google's OpenAPI subset: JSON Schema keywords such as
    ``additionalProperties``, ``$schema``, ``const``, ``$ref`` ("Unknown name ... Cannot find
    field.") and a list-valued ``type``. One message per problem, worded and placed as Gemini's."""
    out: list[str] = []
    if not isinstance(body, dict):
        return out
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        decls = _field(tool, "functionDeclarations", "function_declarations") if isinstance(tool, dict) else None
        for j, decl in enumerate(decls if isinstance(decls, list) else ()):
            if isinstance(decl, dict) and "parameters" in decl:
                _schema_problems(decl["parameters"], f"tools[{i}].function_declarations[{j}].parameters", out)
    config = _field(body, "generationConfig", "generation_config")
    if isinstance(config, dict):
        schema = _field(config, "responseSchema", "response_schema")
        _schema_problems(schema, "generation_config.response_schema", out)
    return out


def thought_signature_message(name: str, position: int) -> str:
    """Gemini 3's 400 message for a function call sent back without its thought signature."""
    return (
        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work "
        "correctly, and missing thought_signature may lead to degraded model performance. Additional data, "
        f"function call `default_api:{name}` , position {position}. Please refer to {_SIGNATURE_DOCS} for more details."
    )


# --------------------------------------------------------------------------------------------
# Errors

_STATUS: dict[ErrorKind, int] = {
    "rate_limit": 429,
    "server_error": 500,
    "overloaded": 503,
    "bad_request": 400,
    "context_overflow": 400,
    "auth": 401,
    "permission": 403,
    "not_found": 404,
    "model_not_found": 404,
    "too_large": 413,
    "timeout": 504,
}


def default_status(api: API, kind: ErrorKind) -> int:
    """The HTTP status the provider uses for *kind* (Anthropic's overload is 529)."""
    if kind == "overloaded" and api == "anthropic":
        return 529
    return _STATUS[kind]


def error_kind_for_status(status: int) -> ErrorKind:
    """The error kind an arbitrary HTTP status most likely stands for."""
    if status == 429:
        return "rate_limit"
    if status in (401, 407):
        return "auth"
    if status == 403:
        return "permission"
    if status == 404:
        return "not_found"
    if status == 413:
        return "too_large"
    if status in (503, 529):
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "server_error"
    return "bad_request"


_OPENAI_ERR: dict[ErrorKind, tuple[str, str | None, str | None]] = {
    # kind: (type, code, param)
    "rate_limit": ("tokens", "rate_limit_exceeded", None),
    "server_error": ("server_error", None, None),
    "overloaded": ("server_error", None, None),
    "bad_request": ("invalid_request_error", None, None),
    "context_overflow": ("invalid_request_error", "context_length_exceeded", "messages"),
    "auth": ("invalid_request_error", "invalid_api_key", None),
    "permission": ("invalid_request_error", "unsupported_country_region_territory", None),
    "not_found": ("invalid_request_error", None, None),
    "model_not_found": ("invalid_request_error", "model_not_found", None),
    "too_large": ("invalid_request_error", None, None),
    "timeout": ("server_error", "timeout", None),
}
_ANTHROPIC_ERR: dict[ErrorKind, str] = {
    "rate_limit": "rate_limit_error",
    "server_error": "api_error",
    "overloaded": "overloaded_error",
    "bad_request": "invalid_request_error",
    "context_overflow": "invalid_request_error",
    "auth": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "model_not_found": "not_found_error",
    "too_large": "request_too_large",
    "timeout": "timeout_error",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _go_duration(seconds: float) -> str:
    """*seconds* the way OpenAI writes waits: ``120ms``, ``1.612s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


def openai_rate_limit_headers(retry_after: float | None) -> list[tuple[str, str]]:
    """The ``x-ratelimit-*`` headers of an OpenAI 429 (the token bucket is the one exhausted)."""
    reset = _go_duration(retry_after) if retry_after is not None else "1s"
    return [
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-limit-tokens", "30000"),
        ("x-ratelimit-remaining-requests", "499"),
        ("x-ratelimit-remaining-tokens", "452"),
        ("x-ratelimit-reset-requests", "120ms"),
        ("x-ratelimit-reset-tokens", reset),
    ]


def context_limit_message(tokens: int, max_tokens: int, limit: int) -> str:
    """Anthropic's 400 when the prompt fits but the prompt plus ``max_tokens`` does not."""
    return (
        f"input length and `max_tokens` exceed context limit: {tokens} + {max_tokens} > {limit}, "
        "decrease input length or `max_tokens` and try again"
    )


def _default_message(
    api: API, kind: ErrorKind, *, tokens: int, limit: int, model: str, retry_after: float | None
) -> str:
    if kind == "context_overflow":
        if api == "openai":
            return (
                f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
                f"{tokens} tokens. Please reduce the length of the messages."
            )
        if api == "anthropic":
            return f"prompt is too long: {tokens} tokens > {limit} maximum"
        return f"The input token count ({tokens}) exceeds the maximum number of tokens allowed ({limit})."
    if kind == "rate_limit":
        if api == "openai":
            wait = f" Please try again in {_go_duration(retry_after)}." if retry_after is not None else ""
            return (
                f"Rate limit reached for {model or 'model'} in organization org-llmroute on tokens per min (TPM): "
                f"Limit 30000, Used 29548, Requested 1258.{wait} "
                "Visit https://platform.openai.com/account/rate-limits to learn more."
            )
        if api == "anthropic":
            return (
                "This request would exceed the rate limit for your organization of 50 requests per minute. "
                "Please reduce the prompt length or the maximum tokens requested, or try again later."
            )
        return "Resource has been exhausted (e.g. check quota)."
    if kind == "overloaded":
        return {
            "openai": "The engine is currently overloaded, please try again later.",
            "anthropic": "Overloaded",
            "gemini": "The model is overloaded. Please try again later.",
        }[api]
    if kind in ("server_error", "timeout"):
        return {
            "openai": "The server had an error while processing your request. Sorry about that!",
            "anthropic": "Internal server error",
            "gemini": "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        }[api]
    if kind == "auth":
        return {
            "openai": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "anthropic": "invalid x-api-key",
            "gemini": "API key not valid. Please pass a valid API key.",
        }[api]
    if kind == "permission":
        return {
            "openai": "Country, region, or territory not supported",
            "anthropic": "Your API key does not have permission to use the specified resource.",
            "gemini": "The caller does not have permission",
        }[api]
    if kind == "model_not_found":
        if api == "openai":
            return f"The model `{model}` does not exist or you do not have access to it."
        if api == "anthropic":
            return f"model: {model}"
        return (
            f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
            "Call ListModels to see the list of available models and their supported methods."
        )
    if kind == "too_large":
        return "Request exceeds the maximum allowed number of bytes."
    if kind == "not_found":
        return "Not Found"
    return "Invalid request (fault injected by llmroute.testing)."


def error_body(
    api: API,
    kind: ErrorKind,
    *,
    status: int | None = None,
    message: str | None = None,
    tokens: int = 0,
    limit: int = 0,
    model: str = "",
    retry_after: float | None = None,
    request_id: str = "req_llmroute",
) -> tuple[int, bytes]:
    """``(status, body)`` of an error response in *api*'s real error format."""
    if status is None:
        status = default_status(api, kind)
    if message is None:
        message = _default_message(api, kind, tokens=tokens, limit=limit, model=model, retry_after=retry_after)
    if api == "openai":
        etype, code, param = _OPENAI_ERR[kind]
        return status, _dumps({"error": {"message": message, "type": etype, "param": param, "code": code}}).encode()
    if api == "anthropic":
        return status, _dumps(
            {"type": "error", "error": {"type": _ANTHROPIC_ERR[kind], "message": message}, "request_id": request_id}
        ).encode()
    err: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
    }
    if kind == "rate_limit" and retry_after is not None:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}]
    elif kind == "auth":
        err["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ]
    return status, _pretty({"error": err}).encode()


def stream_error_event(
    api: API, kind: ErrorKind, *, status: int | None = None, message: str | None = None, sse: bool = True
) -> bytes:
    """An error delivered inside a 200 stream (Anthropic ``event: error``; ``data: {"error": ...}`` elsewhere)."""
    status, body = error_body(api, kind, status=status, message=message)
    if api == "anthropic":
        obj = json.loads(body)
        obj.pop("request_id", None)
        return b"event: error\ndata: " + _dumps(obj).encode() + b"\n\n"
    compact = _dumps(json.loads(body)).encode()
    if api == "gemini":
        return b"data: " + compact + b"\r\n\r\n" if sse else b",\r\n" + compact + b"]"
    return b"data: " + compact + b"\n\n"


def malformed_body(api: API) -> bytes:
    """A 200 body that is not valid JSON (cut mid-object, then garbage)."""
    start = {
        "openai": b'{"id":"chatcmpl-broken","object":"chat.completion","choices":[{"index":0,',
        "anthropic": b'{"id":"msg_broken","type":"message","content":[',
        "gemini": b'{\n  "candidates": [\n    {\n',
    }[api]
    return start + b"<<malformed: not JSON>>"


def malformed_event(api: API, *, sse: bool = True) -> bytes:
    """A stream event whose ``data:`` line is not JSON."""
    if api == "anthropic":
        return b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":<<malformed>>\n\n'
    if api == "gemini":
        return b'data: {"candidates":[{"content":<<malformed>>\r\n\r\n' if sse else b'[{"candidates": <<malformed>>'
    return b'data: {"id":"chatcmpl-broken","choices":[{"delta":<<malformed>>\n\n'
