"""The adapter interface, and helpers every adapter shares.

An adapter is pure: it builds an :class:`HTTPRequest` from a request and a :class:`Target`,
parses a response body into a :class:`~llmroute.types.Completion`, turns an error response into a
:class:`~llmroute.errors.ProviderError`, and decodes a stream incrementally with a
:class:`StreamParser`. It never does I/O, so it can be tested and fuzzed without a network; the
executor (``llmroute.execute``) sends the requests.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import SecretStr

from .._sse import SSEDecoder, SSEEvent
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextWindowExceededError,
    InvalidRequestError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ServerError,
)
from ..types import ChatRequest, Chunk, Completion, TokenLogprobs

__all__ = [
    "Adapter",
    "HTTPRequest",
    "SSEStream",
    "StreamParser",
    "Target",
    "error_from_status",
    "function_tools",
    "google_thought_signature",
    "json_loads",
    "logprob_summary",
    "parse_retry_after",
]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt goes: a provider's endpoint and a deployment's model id."""

    provider: str
    api: str
    base_url: str
    #: The provider's model id.
    model: str
    deployment: str
    api_key: SecretStr | None = None
    headers: Mapping[str, SecretStr] = field(default_factory=dict)
    api_version: str | None = None

    def error_fields(self) -> dict[str, Any]:
        """Keyword arguments naming this target in a :class:`ProviderError`."""
        return {"provider": self.provider, "model": self.model, "deployment": self.deployment}


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """What to send: method, URL, headers and body. Headers may hold the key: never log them."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"HTTPRequest({self.method} {self.url}, {len(self.body)} bytes)"


class StreamParser(Protocol):
    """Incremental decoder of one streamed response.

    Errors never cost content: when an error event follows content events in the same *data*,
    :meth:`feed` returns the chunks decoded before the error and raises the error on the next
    call to :meth:`feed` or :meth:`close` (providers end the stream after an error event, so the
    next read is the end of the stream). An error event with nothing before it is raised at once.
    """

    def feed(self, data: bytes) -> list[Chunk]:
        """Decode *data*; return the chunks it completed. Raises ProviderError on an error event
        (a pending one from an earlier call first)."""
        ...

    def close(self) -> list[Chunk]:
        """The stream ended: return what is left, or raise the pending error, or ResponseError if
        the stream ended early."""
        ...


class SSEStream:
    """Base of the adapters' stream parsers: decodes Server-Sent Events with
    :class:`~llmroute._sse.SSEDecoder` (``\\n``, ``\\r\\n`` or ``\\r`` line ends, any split) and keeps
    the chunks decoded before an error event, as :class:`StreamParser` describes.

    Subclasses implement :meth:`_event` (one event -> chunks, raising ProviderError for an error
    event) and :meth:`_end` (end of stream -> last chunks, raising if the stream ended early).
    """

    __slots__ = ("_error", "_sse", "_target")

    def __init__(self, target: Target) -> None:
        self._sse = SSEDecoder()
        self._target = target
        self._error: ProviderError | None = None

    def feed(self, data: bytes) -> list[Chunk]:
        """Decode *data*; return the chunks it completed (see :class:`StreamParser`)."""
        if self._error is not None:
            raise self._error
        return self._decode(self._sse.feed(data))

    def close(self) -> list[Chunk]:
        """The stream ended: the remaining chunks, the pending error, or ResponseError if it ended early."""
        if self._error is not None:
            raise self._error
        out = self._decode(self._sse.flush())
        if self._error is not None:
            raise self._error
        out.extend(self._end())
        return out

    def _decode(self, events: list[SSEEvent]) -> list[Chunk]:
        out: list[Chunk] = []
        for event in events:
            try:
                out.extend(self._event(event))
            except ProviderError as exc:
                self._error = exc
                if not out:
                    raise
                break
        return out

    def _event(self, event: SSEEvent) -> list[Chunk]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end(self) -> list[Chunk]:  # pragma: no cover - abstract
        raise NotImplementedError


class Adapter(Protocol):
    """One provider wire format."""

    api: str

    def build_request(self, request: ChatRequest, target: Target, *, stream: bool) -> HTTPRequest:
        """The HTTP request for *request* on *target*. Raises InvalidRequestError for bad input."""
        ...

    def parse_response(self, body: bytes, target: Target) -> Completion:
        """Parse a 2xx body. Raises ResponseError if malformed, ContentFilteredError if refused."""
        ...

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> ProviderError:
        """The error for a non-2xx response."""
        ...

    def stream_parser(self, target: Target) -> StreamParser:
        """A fresh decoder for one streamed response."""
        ...


def json_loads(body: bytes | str, target: Target) -> Any:
    """Parse JSON, raising :class:`ResponseError` (naming *target*) when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        snippet = body[:200].decode("utf-8", "replace") if isinstance(body, bytes) else body[:200]
        raise ResponseError(f"malformed JSON from provider: {exc}", body=snippet, **target.error_fields()) from None


#: Longest wait :func:`parse_retry_after` reports (a day): anything longer, or infinite, is capped
#: to it, so a caller's "too long to wait" check still sees it as too long.
_MAX_RETRY_AFTER_S = 86_400.0


def _seconds(text: str, scale: float = 1.0) -> float | None:
    """*text* times *scale* as seconds, within [0, a day]; ``None`` if *text* is not a number."""
    try:
        value = float(text) * scale
    except (ValueError, OverflowError):
        return None
    if value != value:  # NaN
        return None
    return min(max(0.0, value), _MAX_RETRY_AFTER_S)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait as the provider asked: ``retry-after-ms``, ``retry-after`` in seconds or
    as an HTTP date. ``None`` when absent or unparseable; never negative, never above
    a day (absurd values such as ``inf`` or the year 9999 are capped); never raises."""
    ms = headers.get("retry-after-ms")
    if ms:
        seconds = _seconds(ms, 0.001)
        if seconds is not None:
            return seconds
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
        delta = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None
    return min(max(0.0, delta), _MAX_RETRY_AFTER_S)


_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "context limit",  # Anthropic: "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000"
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "input is too long",
    "exceeds the maximum number of tokens",
    "input token count",
)
_FILTER_MARKERS = ("content_filter", "content filter", "content_policy", "safety", "responsible ai")


def error_from_status(
    status: int,
    message: str,
    target: Target,
    *,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    code: str | None = None,
) -> ProviderError:
    """Map an HTTP status (plus the provider's message and error code) to the error hierarchy."""
    fields = target.error_fields()
    text = f"{code or ''} {message}".lower()
    kw: dict[str, Any] = {"status": status, "body": body, **fields}
    if headers is not None:
        kw["request_id"] = headers.get("x-request-id") or headers.get("request-id")
    if status == 429:
        return RateLimitError(message or "rate limited", retry_after=parse_retry_after(headers or {}), **kw)
    if status in (401, 403):
        return AuthenticationError(message or "authentication failed", **kw)
    if status == 408:
        return ProviderTimeoutError(message or "provider timed out", **kw)
    if status == 413 or (400 <= status < 500 and any(m in text for m in _CONTEXT_MARKERS)):
        return ContextWindowExceededError(message or "context window exceeded", **kw)
    if 400 <= status < 500 and any(m in text for m in _FILTER_MARKERS):
        return ContentFilteredError(message or "content filtered", **kw)
    if 400 <= status < 500:
        return BadRequestError(message or f"request rejected with HTTP {status}", **kw)
    if status >= 500:  # 503 and 529 often carry Retry-After
        retry_after = parse_retry_after(headers) if headers is not None else None
        return ServerError(message or f"provider error HTTP {status}", retry_after=retry_after, **kw)
    return ProviderError(message or f"unexpected HTTP {status}", **kw)


def function_tools(tools: Any) -> list[Mapping[str, Any]]:
    """The ``function`` objects of OpenAI-style tools (``{"type": "function", "function": {...}}``),
    checked: raises :class:`InvalidRequestError` naming the tool for anything else."""
    out: list[Mapping[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function" or not isinstance(fn, Mapping):
            raise InvalidRequestError(f"tools[{i}]: only function tools are supported")
        if not isinstance(fn.get("name"), str):
            raise InvalidRequestError(f"tools[{i}]: a function tool needs a name")
        out.append(fn)
    return out


def google_thought_signature(call: Any) -> str | None:
    """The Gemini thought signature an OpenAI-shaped tool call carries, if any: the non-empty string
    at ``call["extra_content"]["google"]["thought_signature"]`` (Google's OpenAI-compatible field)."""
    extra = call.get("extra_content") if isinstance(call, Mapping) else None
    google = extra.get("google") if isinstance(extra, Mapping) else None
    sig = google.get("thought_signature") if isinstance(google, Mapping) else None
    return sig if isinstance(sig, str) and sig else None


def logprob_summary(values: Any) -> TokenLogprobs | None:
    """The compact summary (count, mean, min) of token log-probabilities; ``None`` when there are
    none. Values that are not finite numbers (or are positive) are left out."""
    n, total, low = 0, 0.0, 0.0
    for v in values if isinstance(values, (list, tuple)) else ():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (-1e9 < v <= 0.0):
            continue
        n += 1
        total += v
        low = min(low, v)
    return TokenLogprobs(n, total / n, low) if n else None
