"""The scripting vocabulary: :class:`Fault`, :class:`FakeReply`, and :class:`RecordedRequest`.

Frozen value objects, shared by the fleet and by tests that script it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import _wire
from ._wire import ErrorKind, Finish

__all__ = ["FakeReply", "Fault", "FaultKind", "RecordedRequest", "ReplyFn"]

#: What a :class:`Fault` does (see the constructors on :class:`Fault`).
FaultKind = Literal[
    "status", "stall", "reset", "drop_stream", "malformed", "content_filter", "slow", "stream_error", "recorded"
]


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted misbehaviour, consumed by exactly one request. Build it with the constructors.

    ``status`` faults answer with an HTTP error in the provider's format; the others are
    transport-level (stall, reset, dropped stream), payload-level (malformed, content filter,
    in-stream error) or timing (slow). Use :meth:`FakeProvider.enqueue` to queue them.
    """

    kind: FaultKind
    #: HTTP status for ``status`` / ``stream_error`` faults (``None``: the provider's usual one).
    code: int | None = None
    #: Provider-neutral error kind (``rate_limit``, ``overloaded``, ``context_overflow``, ...).
    error: ErrorKind | None = None
    message: str | None = None
    retry_after: float | None = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    after_tokens: int = 0
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    #: The response body of a ``recorded`` fault.
    body: bytes = b""
    #: Whether a ``retry_after`` is sent as ``retry-after`` (and ``retry-after-ms``) headers.
    retry_after_header: bool = True

    @property
    def name(self) -> str:
        """Counter key: the error kind for status faults (``rate_limit``, ...), else the kind."""
        return self.error if self.kind == "status" and self.error else self.kind

    # -- HTTP errors ---------------------------------------------------------------------------
    @staticmethod
    def status(
        code: int | None,
        message: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        error: ErrorKind | None = None,
    ) -> Fault:
        """Answer with HTTP *code* and an error body in the provider's format.

        *error* picks the provider's error type (default: guessed from *code*); *retry_after*
        (seconds) sets ``retry-after`` (and ``retry-after-ms`` on OpenAI); *headers* are added.
        """
        if error is None:
            error = _wire.error_kind_for_status(code or 500)
        return Fault("status", code, error, message, retry_after, tuple((headers or {}).items()))

    @staticmethod
    def rate_limit(retry_after: float | None = 1.0, message: str | None = None, *, header: bool = True) -> Fault:
        """HTTP 429 in the provider's format, with ``retry-after`` (seconds) when given.

        With ``header=False`` the wait is only where the body puts it, as in many real 429s: OpenAI's
        message ("... Please try again in 1.5s. ...") and ``x-ratelimit-reset-tokens``, Gemini's
        ``RetryInfo`` detail; Anthropic's body has none.
        """
        return Fault("status", 429, "rate_limit", message, retry_after, retry_after_header=header)

    @staticmethod
    def server_error(code: int = 500, message: str | None = None) -> Fault:
        """HTTP 5xx (500 by default) in the provider's format (``server_error`` / ``api_error`` / ``INTERNAL``).

        Counted as ``server_error`` whatever the code, except 529 (Anthropic's overload): ``overloaded``.
        """
        return Fault("status", code, "overloaded" if code == 529 else "server_error", message)

    @staticmethod
    def overloaded(message: str | None = None) -> Fault:
        """The provider is overloaded: Anthropic 529 ``overloaded_error``, others 503."""
        return Fault("status", None, "overloaded", message)

    @staticmethod
    def bad_request(message: str | None = None) -> Fault:
        """HTTP 400 ``invalid_request_error`` / ``INVALID_ARGUMENT``."""
        return Fault("status", 400, "bad_request", message)

    @staticmethod
    def context_overflow(message: str | None = None) -> Fault:
        """HTTP 400 with the provider's real context-window-exceeded error."""
        return Fault("status", 400, "context_overflow", message)

    @staticmethod
    def auth(message: str | None = None) -> Fault:
        """HTTP 401 in the provider's format (as if the API key were wrong)."""
        return Fault("status", 401, "auth", message)

    # -- transport and payload -------------------------------------------------------------------
    @staticmethod
    def stall(seconds: float) -> Fault:
        """Accept the request, send nothing for *seconds*, then answer normally."""
        return Fault("stall", seconds=float(seconds))

    @staticmethod
    def reset() -> Fault:
        """Close the TCP connection (RST) without sending any response."""
        return Fault("reset")

    @staticmethod
    def drop_stream(after_tokens: int = 0) -> Fault:
        """Cut the connection mid-response: after *after_tokens* streamed tokens (no terminal
        event), or, for a non-streamed request, after the headers and half the body."""
        return Fault("drop_stream", after_tokens=int(after_tokens))

    @staticmethod
    def stream_error(after_tokens: int = 0, error: ErrorKind = "overloaded", message: str | None = None) -> Fault:
        """Send an error event inside a 200 stream after *after_tokens* tokens (Anthropic
        ``event: error``; ``data: {"error": ...}`` elsewhere); a non-streamed request gets the HTTP error."""
        return Fault("stream_error", None, error, message, after_tokens=int(after_tokens))

    @staticmethod
    def malformed() -> Fault:
        """HTTP 200 whose body is not JSON; for a stream, an SSE ``data:`` line that is not JSON."""
        return Fault("malformed")

    @staticmethod
    def content_filter() -> Fault:
        """HTTP 200 with no text, stopped by the content filter (``content_filter`` / ``refusal`` / ``SAFETY``)."""
        return Fault("content_filter")

    @staticmethod
    def recorded(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Fault:
        """Answer with *body* as it is, e.g. a response recorded from the real API: ``text/event-stream``
        when the request asked for a stream, else JSON, with HTTP *status* and *headers* added."""
        return Fault("recorded", status, headers=tuple((headers or {}).items()), body=bytes(body))

    @staticmethod
    def slow(ttft_s: float | None = None, tokens_per_s: float | None = None) -> Fault:
        """Answer normally but with this latency (``None`` keeps the provider's setting)."""
        return Fault("slow", ttft_s=ttft_s, tokens_per_s=tokens_per_s)


@dataclass(frozen=True, slots=True)
class FakeReply:
    """A scripted model reply: text and/or tool calls ``(name, arguments)``; *finish* overrides the finish reason.

    *logprobs* is what the reply's text tokens report when the request asks for log-probabilities
    (OpenAI ``logprobs: true``, Gemini ``generationConfig.responseLogprobs``): one value for every
    token, or one per token (repeated as needed); ``None``: ``-0.05`` each.
    """

    text: str | None = None
    tool_calls: Sequence[tuple[str, Mapping[str, Any]]] = ()
    finish: Finish | None = None
    logprobs: float | Sequence[float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple((str(n), dict(a)) for n, a in self.tool_calls))


#: A reply callable: gets the parsed request JSON, returns the reply.
ReplyFn = Callable[[Any], "str | FakeReply"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the fake provider received it (for assertions)."""

    method: str
    path: str
    query: str
    #: Header names are lower-case.
    headers: dict[str, str]
    #: The parsed JSON body (``None`` if there was none or it was not JSON).
    json: Any
    #: Whether the request asked for a streamed reply.
    stream: bool
    model: str
    #: Name of the fault this request consumed, if any.
    fault: str | None = None
