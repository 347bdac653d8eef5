"""OpenAI-compatible Chat Completions (OpenAI, vLLM, Together, Fireworks, DeepSeek, OpenRouter,
Groq, Ollama, ...): ``POST {base_url}/chat/completions``, JSON or SSE (``data: [DONE]``).

``max_tokens`` goes out as ``max_completion_tokens`` to OpenAI itself (``api.openai.com`` and
Azure OpenAI), where ``max_tokens`` is deprecated and refused by the reasoning models (o-series,
GPT-5), and as ``max_tokens`` to every other OpenAI-compatible server, which is the field they
all accept. ``extra_body`` can still set either field explicitly.

``content`` may be a list of parts instead of a string (Mistral's reasoning models, ``magistral-*``
and ``mistral-small`` with thinking, in replies and stream deltas): its ``text`` parts make the
reply text, its ``thinking`` parts are left out, like ``reasoning_content`` (DeepSeek) and
``reasoning`` (OpenRouter, Groq) fields. A tool call with no id (``"id": ""``, seen from
OpenAI-compatible servers) gets ``call_<index>``, ``index`` being its position among the reply's
tool calls, in streamed and non-streamed replies alike, so the conversation can go on with any
provider (Anthropic and Gemini need the id to tie a tool result to its call).

A 429 without ``retry-after`` (OpenAI often sends none) takes its wait from the message,
"... Please try again in 1.612s. ...", as the ``retry_after`` of the RateLimitError.

Gemini thought signatures (see ``llmroute.providers.gemini``) travel on OpenAI-shaped tool calls
as ``extra_content: {"google": {"thought_signature": ...}}``, the field Google's OpenAI-compatible
endpoint uses. Replies that carry it (from that endpoint) keep it in
:attr:`~llmroute.types.ToolCall.thought_signature`. Building a request, ``extra_content`` is kept
on assistant ``tool_calls`` only for Google's endpoints (``generativelanguage.googleapis.com``,
``*aiplatform.googleapis.com``) and removed for every other server: OpenAI and several compatible
servers reject message properties they do not know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from .._sse import SSEEvent
from ..errors import ContentFilteredError, ProviderError, ResponseError
from ..types import ChatRequest, Chunk, Completion, FinishReason, ToolCall, ToolCallDelta, Usage
from .base import (
    HTTPRequest,
    SSEStream,
    Target,
    error_from_status,
    google_thought_signature,
    json_loads,
    logprob_summary,
)

__all__ = ["OpenAIAdapter"]

_FINISH: Mapping[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        int(data.get("prompt_tokens") or 0),
        int(data.get("completion_tokens") or 0),
        int(cached or 0),
    )


@lru_cache(maxsize=64)
def _host(base_url: str) -> str:
    """The lower-cased host of *base_url* (cached: it is asked on every request)."""
    return base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()


def _max_tokens_field(base_url: str) -> str:
    """``max_completion_tokens`` for OpenAI's own API (and Azure OpenAI), else ``max_tokens``."""
    host = _host(base_url)
    if host == "api.openai.com" or host.endswith(".openai.azure.com"):
        return "max_completion_tokens"
    return "max_tokens"


def _is_google(base_url: str) -> bool:
    """Whether *base_url* is Google's OpenAI-compatible endpoint (Gemini API or Vertex AI)."""
    host = _host(base_url)
    return host == "generativelanguage.googleapis.com" or host.endswith("aiplatform.googleapis.com")


def _without_extra_content(messages: Sequence[Any]) -> list[Any]:
    """*messages* with ``extra_content`` removed from assistant tool calls (other messages as given)."""
    out: list[Any] = []
    for message in messages:
        calls = message.get("tool_calls") if isinstance(message, Mapping) else None
        if isinstance(calls, (list, tuple)) and any(isinstance(c, Mapping) and "extra_content" in c for c in calls):
            stripped = [
                {k: v for k, v in c.items() if k != "extra_content"} if isinstance(c, Mapping) else c for c in calls
            ]
            message = {**message, "tool_calls": stripped}
        out.append(message)
    return out


_WAIT = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:h|ms|m|s))+)", re.IGNORECASE)
_WAIT_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)", re.IGNORECASE)
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _wait_in_message(message: str) -> float | None:
    """Seconds from an OpenAI rate-limit message's "Please try again in 1.612s" (``120ms``, ``6m0s``,
    ``1h2m3s``), or ``None``."""
    match = _WAIT.search(message)
    if match is None:
        return None
    return sum(float(n) * _UNIT_S[unit.lower()] for n, unit in _WAIT_PART.findall(match.group(1)))


def _call_id(index: int) -> str:
    """The id given to a tool call that came without one (some OpenAI-compatible servers send
    ``"id": ""``): ``call_<index>``, the same whether the reply was streamed or not."""
    return f"call_{index}"


def _text(content: Any) -> str | None:
    """A message's ``content`` as text: a string as is; a list of parts (Mistral's reasoning models)
    as its ``text`` parts joined, ``None`` when it has none. ``thinking`` parts are not the reply."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TypeError(f"content is a {type(content).__name__}, not a string or a list of parts")
    texts = [
        part if isinstance(part, str) else part.get("text")
        for part in content
        if isinstance(part, str) or part.get("type") == "text"
    ]
    if not all(isinstance(text, str) for text in texts):
        raise TypeError("a text part of content has no text")
    return "".join(texts) if texts else None


def _finish(value: Any) -> FinishReason | None:
    if value is None:
        return None
    return _FINISH.get(value, "other")


def _stream_error_status(kind: str) -> int:
    """An HTTP status for an error event inside a 200 stream, from its type/code words."""
    kind = kind.lower()
    if "rate_limit" in kind or "insufficient_quota" in kind:
        return 429
    if "context_length" in kind or "invalid_request" in kind:
        return 400
    if "authentication" in kind or "invalid_api_key" in kind:
        return 401
    return 500


class OpenAIAdapter:
    """The OpenAI Chat Completions wire format."""

    api = "openai"

    def build_request(self, request: ChatRequest, target: Target, *, stream: bool) -> HTTPRequest:
        """The ``chat/completions`` request; messages are already in the OpenAI shape (``extra_content``
        is dropped from tool calls unless the server is Google's, see the module docstring)."""
        messages = list(request.messages)
        if not _is_google(target.base_url):
            messages = _without_extra_content(messages)
        body: dict[str, Any] = {"model": target.model, "messages": messages}
        if request.tools:
            body["tools"] = list(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.max_tokens is not None:
            body[_max_tokens_field(target.base_url)] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
        if request.response_format is not None:
            body["response_format"] = dict(request.response_format)
        if request.logprobs:
            body["logprobs"] = True
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra_body:
            body.update(request.extra_body)
        headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
        if target.api_key is not None:
            headers["authorization"] = "Bearer " + target.api_key.get_secret_value()
        for k, v in target.headers.items():
            headers[k.lower()] = v.get_secret_value()
        return HTTPRequest("POST", target.base_url + "/chat/completions", headers, json.dumps(body).encode())

    def parse_response(self, body: bytes, target: Target) -> Completion:
        """Parse a ``chat.completion`` object."""
        data = json_loads(body, target)
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
            calls = tuple(
                ToolCall(
                    c.get("id") or _call_id(i),
                    c["function"]["name"],
                    c["function"].get("arguments") or "",
                    google_thought_signature(c),
                )
                for i, c in enumerate(message.get("tool_calls") or ())
            )
            text = _text(message.get("content"))
            finish = _finish(choice.get("finish_reason"))
            lp = choice.get("logprobs")
            logprobs = (
                logprob_summary([t.get("logprob") for t in lp["content"] if isinstance(t, dict)])
                if (isinstance(lp, dict) and isinstance(lp.get("content"), list))
                else None
            )
            usage = _usage(data.get("usage")) or Usage()
            model = data.get("model")
            rid = data.get("id")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            snippet = body[:200].decode("utf-8", "replace")
            raise ResponseError(
                f"unexpected chat.completion shape: {exc!r}", body=snippet, **target.error_fields()
            ) from None
        if finish == "content_filter" and not text and not calls:
            raise ContentFilteredError("the provider filtered the reply", **target.error_fields())
        return Completion(text, calls, finish, usage, model, rid, logprobs)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> ProviderError:
        """Map ``{"error": {"message", "type", "code"}}`` and the status to the hierarchy."""
        message, code = "", None
        text = body[:2000].decode("utf-8", "replace")
        try:
            data = json.loads(body)
            err = data.get("error")
            if err is None and data.get("object") == "error":  # vLLM's shape: the error at top level
                err = data
            if isinstance(err, dict):
                message = str(err.get("message") or "")
                code = str(err.get("code") or err.get("type") or "") or None
            elif isinstance(err, str):
                message = err
        except (ValueError, AttributeError, UnicodeDecodeError):
            message = text[:200]
        if status == 429 and headers.get("retry-after") is None and headers.get("retry-after-ms") is None:
            wait = _wait_in_message(message)
            if wait is not None:  # OpenAI often sends no retry-after: its message says how long
                headers = {**{k.lower(): v for k, v in headers.items()}, "retry-after": f"{wait:g}"}
        return error_from_status(status, message, target, headers=headers, body=text, code=code)

    def stream_parser(self, target: Target) -> _OpenAIStream:
        """A decoder for ``chat.completion.chunk`` events."""
        return _OpenAIStream(target)


class _OpenAIStream(SSEStream):
    """Decodes ``chat.completion.chunk`` events.

    With ``stream_options.include_usage`` OpenAI sends the finish reason and the usage on two
    separate final events; the chunk with the finish reason is held back until the usage (or the
    end of the stream) arrives, so the last chunk carries both.
    """

    __slots__ = ("_calls", "_content", "_done", "_finished", "_held")

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._done = False
        self._finished = False
        self._content = False
        self._held: Chunk | None = None
        #: Tool call indices seen so far (a call's first fragment carries its id and name).
        self._calls: set[int] = set()

    def _event(self, event: SSEEvent) -> list[Chunk]:
        out: list[Chunk] = []
        self._data(event.data, out)
        return out

    def _end(self) -> list[Chunk]:
        if self._held is not None:
            held, self._held = self._held, None
            return [held]
        if not self._done and not self._finished:
            raise ResponseError("stream ended before completion", **self._target.error_fields())
        return []

    def _emit(self, chunk: Chunk, out: list[Chunk]) -> None:
        held = self._held
        if held is None:
            if chunk.finish_reason is not None and chunk.usage is None:
                self._held = chunk
            else:
                out.append(chunk)
            return
        if not chunk.text and not chunk.tool_calls and chunk.usage is not None:
            # the usage-only event that follows the finish: merge the two
            self._held = None
            out.append(
                Chunk(
                    held.text,
                    held.tool_calls,
                    held.finish_reason,
                    chunk.usage,
                    held.response_model or chunk.response_model,
                    held.response_id or chunk.response_id,
                )
            )
            return
        self._held = None
        out.append(held)
        self._emit(chunk, out)

    def _call_delta(self, position: int, tc: Any) -> ToolCallDelta:
        """One tool-call fragment; the first fragment of a call without an id gets ``call_<index>``."""
        index = int(tc.get("index", position))
        call_id = tc.get("id") or None
        if index not in self._calls:
            self._calls.add(index)
            call_id = call_id or _call_id(index)
        fn = tc.get("function") or {}
        return ToolCallDelta(index, call_id, fn.get("name"), fn.get("arguments") or "", google_thought_signature(tc))

    def _data(self, data: str, out: list[Chunk]) -> None:
        if self._done:
            return
        if data == "[DONE]":
            self._done = True
            if self._held is not None:
                out.append(self._held)
                self._held = None
            return
        target = self._target
        obj = json_loads(data, target)
        if not isinstance(obj, dict):
            raise ResponseError("stream event is not an object", body=data[:200], **target.error_fields())
        if obj.get("error") is not None:
            err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
            code = err.get("code")
            kind = " ".join(str(x) for x in (code, err.get("type")) if x)
            status = code if isinstance(code, int) else _stream_error_status(kind)
            message = str(err.get("message") or "stream error")
            raise error_from_status(status, message, target, body=data[:500], code=kind)
        try:
            usage = _usage(obj.get("usage"))
            choices = obj.get("choices") or ()
            text = ""
            calls: tuple[ToolCallDelta, ...] = ()
            finish = None
            if choices:
                choice = choices[0]
                delta = choice.get("delta") or {}
                text = _text(delta.get("content")) or ""
                if delta.get("tool_calls"):
                    calls = tuple(self._call_delta(i, tc) for i, tc in enumerate(delta["tool_calls"]))
                finish = _finish(choice.get("finish_reason"))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ResponseError(
                f"unexpected chat.completion.chunk shape: {exc!r}", body=data[:200], **target.error_fields()
            ) from None
        if not text and not calls and finish is None and usage is None:
            return
        if text or calls:
            self._content = True
        if finish is not None:
            self._finished = True
            if finish == "content_filter" and not self._content:
                raise ContentFilteredError("the provider filtered the reply", **target.error_fields())
        self._emit(Chunk(text, calls, finish, usage, obj.get("model"), obj.get("id")), out)
