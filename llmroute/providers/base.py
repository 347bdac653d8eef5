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
    """Incremental decoder of one streamed response."""

    def feed(self, data: bytes) -> list[Chunk]:
        """Decode *data*; return the chunks it completed. Raises ProviderError on an error event."""
        ...

    def close(self) -> list[Chunk]:
        """The stream ended: return what is left, or raise ResponseError if it ended early."""
        ...


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


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait as the provider asked: ``retry-after-ms``, ``retry-after`` in seconds or
    as an HTTP date. ``None`` when absent or unparseable; never negative."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
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
    if status >= 500:
        return ServerError(message or f"provider error HTTP {status}", **kw)
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
