"""The llmroute error hierarchy.

Every error llmroute raises derives from :class:`LLMRouteError`::

    LLMRouteError
     ├── ConfigError                      invalid configuration (names the field and the reason)
     ├── UnknownRouteError                a route or model name that the config does not define
     ├── InvalidRequestError              a request llmroute cannot send (bad messages, bad arguments)
     ├── ProviderError                    one provider call failed (names provider, model, status, attempt)
     │    ├── RateLimitError              HTTP 429; ``retry_after`` when the provider said
     │    ├── ProviderTimeoutError        connect/read timeout, or the attempt's own deadline
     │    ├── ProviderConnectionError     could not connect, connection reset
     │    ├── ServerError                 HTTP 5xx (and 529 "overloaded"); ``retry_after`` when the provider said
     │    ├── ResponseError               malformed body, or a stream that broke off
     │    ├── BadRequestError             HTTP 400/404/422: the request itself is wrong (never retried)
     │    │    └── ContextWindowExceededError  the prompt does not fit the model's context window
     │    ├── AuthenticationError         HTTP 401/403
     │    └── ContentFilteredError        the provider refused or filtered the content
     ├── AllAttemptsFailedError           every candidate of a route failed; ``errors`` holds each one
     ├── DeadlineExceededError            the call's overall deadline passed
     ├── BudgetExceededError              a budget refused the call (names the scope and by how much)
     └── PredictorUnavailableError        the predictor model is missing or corrupt (in llmroute.predictor;
                                          predictive routes then keep their configured order)

Provider errors carry :attr:`ProviderError.retryable` and :attr:`ProviderError.fallback`: whether
the same deployment may be tried again, and whether the route should move on to the next one.
API keys never appear in any message: adapters build errors from status codes and response bodies
only, and bodies are truncated.

:func:`http_status` is the one mapping from these errors to HTTP statuses: what the OpenAI SDK
transport (``llmroute.integrations.openai``) answers, and so what each framework integration
raises its own exception types from (``docs/integrations.md`` has the table).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AllAttemptsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "DeadlineExceededError",
    "InvalidRequestError",
    "LLMRouteError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ResponseError",
    "ServerError",
    "UnknownRouteError",
    "http_status",
]

_BODY_LIMIT = 500


class LLMRouteError(Exception):
    """Root of every error llmroute raises."""


class ConfigError(LLMRouteError, ValueError):
    """The configuration is invalid; the message lists each bad field's path and reason."""

    def __init__(self, message: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        #: ``(field path, reason)`` pairs, e.g. ``("models.small.deployments.0.price", "...")``.
        self.errors: tuple[tuple[str, str], ...] = tuple(errors)


class UnknownRouteError(LLMRouteError, KeyError):
    """A route or model name that the configuration does not define."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain message
        return str(self.args[0]) if self.args else ""


class InvalidRequestError(LLMRouteError, ValueError):
    """The request cannot be sent as given (e.g. a message without a role).

    ``field`` names the offending argument by its path (``max_tokens``, ``messages[2].content``)
    when one is to blame, else ``None``. Nothing was sent to any provider.
    """

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        #: Path of the offending argument, e.g. ``messages[2].content``; ``None`` when not one field.
        self.field = field


class ProviderError(LLMRouteError):
    """A call to one provider failed.

    Attributes name where and how: ``provider`` (config name), ``model`` (the provider's model
    id), ``deployment``, ``status`` (HTTP status, or ``None`` when no response arrived),
    ``attempt`` (1-based attempt number on this deployment), ``request_id`` and a truncated
    ``body``.
    """

    #: Whether retrying the same deployment can help.
    retryable: bool = False
    #: Whether the route should move on to its next candidate.
    fallback: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        deployment: str = "",
        status: int | None = None,
        attempt: int = 0,
        request_id: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.deployment = deployment
        self.status = status
        self.attempt = attempt
        self.request_id = request_id
        self.body = body[:_BODY_LIMIT] if body else body

    def __str__(self) -> str:
        where = f"{self.provider or '?'}/{self.model or '?'}"
        parts = [where]
        if self.status is not None:
            parts.append(f"status {self.status}")
        if self.attempt:
            parts.append(f"attempt {self.attempt}")
        if self.request_id:
            parts.append(f"request {self.request_id}")
        return f"{self.message} ({', '.join(parts)})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class RateLimitError(ProviderError):
    """HTTP 429: the provider asked to slow down; ``retry_after`` is its hint in seconds."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderTimeoutError(ProviderError):
    """The provider did not answer in time (connect, read, or the attempt's own timeout)."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The connection could not be made or was reset."""

    retryable = True


class ServerError(ProviderError):
    """HTTP 5xx from the provider (including 529 overloaded); ``retry_after`` is the provider's
    Retry-After hint in seconds when it sent one (e.g. with a 503)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ResponseError(ProviderError):
    """The provider's response could not be understood: malformed body or a broken stream."""

    retryable = True


class BadRequestError(ProviderError):
    """The provider rejected the request itself (400/404/422); retrying cannot help."""

    retryable = False
    fallback = True  # another model or provider may accept it (e.g. a larger context window)


class ContextWindowExceededError(BadRequestError):
    """The prompt (plus requested output) does not fit the model's context window."""


class AuthenticationError(ProviderError):
    """HTTP 401/403: the credentials were refused."""

    retryable = False


class ContentFilteredError(ProviderError):
    """The provider refused or filtered the content."""

    retryable = False


class AllAttemptsFailedError(LLMRouteError):
    """Every candidate of the route failed; ``errors`` holds each attempt's error in order."""

    def __init__(self, route: str, errors: Sequence[BaseException]) -> None:
        self.route = route
        self.errors: tuple[BaseException, ...] = tuple(errors)
        lines = "; ".join(str(e) for e in self.errors[-5:])
        more = f" (last 5 of {len(self.errors)})" if len(self.errors) > 5 else ""
        super().__init__(f"route {route!r}: all {len(self.errors)} attempts failed{more}: {lines}")

    @property
    def last(self) -> BaseException | None:
        """The last error, usually the most informative."""
        return self.errors[-1] if self.errors else None


class DeadlineExceededError(LLMRouteError, TimeoutError):
    """The call's overall deadline passed before any candidate answered."""

    def __init__(self, route: str, deadline_s: float, errors: Sequence[BaseException] = ()) -> None:
        self.route = route
        self.deadline_s = deadline_s
        self.errors: tuple[BaseException, ...] = tuple(errors)
        super().__init__(
            f"route {route!r}: deadline of {deadline_s:g}s exceeded after {len(self.errors)} failed attempts"
        )


class BudgetExceededError(LLMRouteError):
    """A budget refused the call: names the scope, its limit, what is spent and what was requested.

    ``BudgetExceededError(scope, limit, spent, requested)``: *scope* names the budget that refused
    (e.g. ``"user/day[alice]"``), *spent* is what it had spent or held, *requested* what this
    attempt needed, all in USD. ``retry_after_s`` is how long until its window frees (``None`` for
    budgets without a window); ``held`` is the part of *spent* held by attempts in flight, if known.
    The older names ``budget``, ``limit_usd``, ``spent_usd`` and ``needed_usd`` are kept as aliases.
    """

    def __init__(
        self,
        scope: str,
        limit: float | None = None,
        spent: float | None = None,
        requested: float | None = None,
        *,
        limit_usd: float | None = None,
        spent_usd: float | None = None,
        needed_usd: float | None = None,
        retry_after_s: float | None = None,
        held: float | None = None,
        reason: str | None = None,
    ) -> None:
        self.scope = scope
        self.limit = float(limit if limit is not None else limit_usd or 0.0)
        self.spent = float(spent if spent is not None else spent_usd or 0.0)
        self.requested = float(requested if requested is not None else needed_usd or 0.0)
        self.retry_after_s = retry_after_s
        #: The part of *spent* still held by attempts in flight (it may be freed), if known.
        self.held = held
        if reason is not None:
            message = f"budget {scope!r} refused the call: {reason}"
        else:
            over = self.spent + self.requested - self.limit
            message = (
                f"budget {scope!r} would be exceeded by ${over:.6f}: limit ${self.limit:.6f}, "
                f"spent or reserved ${self.spent:.6f}, this call needs up to ${self.requested:.6f}"
            )
        super().__init__(message)

    @property
    def budget(self) -> str:
        """Alias of :attr:`scope`."""
        return self.scope

    @property
    def limit_usd(self) -> float:
        """Alias of :attr:`limit`."""
        return self.limit

    @property
    def spent_usd(self) -> float:
        """Alias of :attr:`spent`."""
        return self.spent

    @property
    def needed_usd(self) -> float:
        """Alias of :attr:`requested`."""
        return self.requested


def http_status(error: BaseException) -> int:
    """The HTTP status a gateway answers for *error*, as the OpenAI API would for the same failure.

    The request's own faults keep their 4xx (400 bad request or context window, 401/403 refused
    credentials, 404 unknown route or model, 429 rate limit or budget: the OpenAI API's status for
    an exhausted quota); upstream failures are 502 (bad or failed response), 503 (provider
    overloaded) or 504 (timeout, deadline). :class:`AllAttemptsFailedError` answers as its last
    error; anything else is 500.
    """
    if isinstance(error, AllAttemptsFailedError):
        return http_status(error.last) if error.last is not None else 502
    if isinstance(error, (RateLimitError, BudgetExceededError)):
        return 429
    if isinstance(error, (ProviderTimeoutError, DeadlineExceededError)):
        return 504
    if isinstance(error, BadRequestError):
        return error.status if error.status in (400, 404, 413, 422) else 400
    if isinstance(error, AuthenticationError):
        return error.status if error.status in (401, 403) else 401
    if isinstance(error, (ContentFilteredError, InvalidRequestError)):
        return 400
    if isinstance(error, UnknownRouteError):
        return 404
    if isinstance(error, ServerError) and error.status in (503, 529):
        return 503
    if isinstance(error, ProviderError):
        return 502
    return 500

