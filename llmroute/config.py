"""Configuration: providers, models, deployments and routes, validated from a plain dict.

A *provider* is an endpoint with a wire format and credentials. A *model* is a logical name the
application asks for; it has one or more *deployments*, each the model served by one provider
(the provider's model id, prices, context window). A *route* says which models a request may go
to, in what order, with what strategy, retries and deadline.

::

    {
      "providers": {"openai": {"api": "openai", "api_key_env": "OPENAI_API_KEY"}},
      "models": {"small": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]}},
      "routes": {"default": {"models": ["small"]}},
    }

Unknown keys are errors. :func:`load_config` raises :class:`~llmroute.errors.ConfigError` naming
every bad field by its path (``models.small.deployments.0.price.input``) and the reason.

Everything that ends up in an HTTP request is checked here, so a config that loads cannot crash
on its first call: ``base_url`` must parse as an http(s) URL with a host; API keys (``api_key``,
or the variable ``api_key_env`` names) lose surrounding whitespace (a key read from a file or a
Kubernetes secret often ends in a newline) and must then be non-empty printable ASCII; header
names must be HTTP tokens and header values printable ASCII (also stripped). Errors about keys
and header values never show the value, and a :class:`ConfigError` keeps no exception context
(pydantic's ``ValidationError`` holds the input).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from .costs import Price, lookup_price
from .errors import ConfigError
from .tokens import ENCODINGS

__all__ = [
    "DEFAULT_BASE_URLS",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "MAX_RETRY_ATTEMPTS",
    "BudgetConfig",
    "CapabilitiesConfig",
    "CircuitConfig",
    "Config",
    "DeploymentConfig",
    "HealthConfig",
    "HedgeConfig",
    "JudgeConfig",
    "LearningConfig",
    "ModelConfig",
    "PriceConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "RetryConfig",
    "RouteConfig",
    "SelectionConfig",
    "StoreConfig",
    "TierConfig",
    "TimeoutConfig",
    "load_config",
]

Api = Literal["openai", "anthropic", "gemini"]

#: ``max_tokens`` sent when neither the request, the route nor the deployment gives one.
DEFAULT_MAX_OUTPUT_TOKENS = 4096

#: Base URL used when a provider gives none.
DEFAULT_BASE_URLS: Mapping[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
}


#: Most attempts per deployment a retry config may ask for.
MAX_RETRY_ATTEMPTS = 100

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")  # RFC 9110 field-value, ASCII only
#: Headers that frame the message: set by the HTTP client, never by the config.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TimeoutConfig(_Strict):
    """Per-attempt HTTP timeouts in seconds."""

    connect_s: PositiveFloat = 5.0
    #: Longest wait for the next bytes of a response (also the time to first byte).
    read_s: PositiveFloat = 60.0
    #: Upper bound on one whole attempt; ``None`` for no bound beyond ``read_s`` gaps.
    attempt_s: PositiveFloat | None = None


class RetryConfig(_Strict):
    """How often to retry one deployment before falling back to the next."""

    #: Attempts per deployment, the first included (1 = no retry); at most 100.
    attempts: int = Field(2, ge=1, le=MAX_RETRY_ATTEMPTS)
    initial_backoff_s: float = Field(0.25, ge=0)
    max_backoff_s: float = Field(8.0, ge=0)
    #: Random extra delay up to this many seconds, so clients do not retry in lockstep.
    jitter_s: float = Field(0.25, ge=0)
    #: A Retry-After longer than this is not waited for: the route falls back instead.
    max_retry_after_s: float = Field(20.0, ge=0)


class PriceConfig(_Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    #: Prompt-cache reads; default: the input price.
    cached_input: float | None = Field(None, ge=0)
    #: Prompt-cache writes (Anthropic: 1.25x input for the 5-minute TTL); default: the input price.
    cache_write: float | None = Field(None, ge=0)

    def to_price(self) -> Price:
        """The runtime :class:`~llmroute.costs.Price`."""
        return Price(self.input, self.output, self.cached_input, self.cache_write)


class ProviderConfig(_Strict):
    """An endpoint with its wire format and credentials."""

    #: Wire format: ``openai`` (Chat Completions, also vLLM, Together, Groq, ...),
    #: ``anthropic`` (Messages) or ``gemini`` (generateContent).
    api: Api
    #: ``http://`` or ``https://`` URL with a host, no query or fragment (paths are appended to it).
    base_url: str | None = None
    #: The key itself (kept as a secret, never shown); prefer ``api_key_env``. Surrounding
    #: whitespace is removed; what is left must be printable ASCII.
    api_key: SecretStr | None = None
    #: Name of an environment variable holding the key, read when the config loads (its value is
    #: stripped and checked like ``api_key``).
    api_key_env: str | None = None
    #: Extra HTTP headers sent on every request (values are treated as secrets in reprs, stripped
    #: of surrounding whitespace, and must be printable ASCII; names must be HTTP tokens).
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: TimeoutConfig | None = None
    #: Anthropic's ``anthropic-version`` header.
    api_version: str | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        problem = _url_problem(v)
        if problem:
            raise ValueError(problem)
        return v.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None and not _HEADER_VALUE.fullmatch(v):
            raise ValueError("is sent as a header value: it must be non-empty printable ASCII")
        return v

    @property
    def url(self) -> str:
        """The base URL, or the wire format's default."""
        return self.base_url or DEFAULT_BASE_URLS[self.api]


class RateLimitConfig(_Strict):
    """Client-side rate limits of one deployment, as token buckets shared through the store."""

    #: Requests per minute (a bucket of this many requests, refilled evenly over a minute).
    requests_per_minute: PositiveInt | None = None
    #: Tokens per minute, counted as a provider's limiter does at admission: the input tokens
    #: estimated plus the ``max_tokens`` sent.
    tokens_per_minute: PositiveInt | None = None
    #: Longest wait for the bucket before the deployment is skipped for the next candidate
    #: (never past the call's deadline).
    max_wait_s: float = Field(1.0, ge=0, allow_inf_nan=False)


class DeploymentConfig(_Strict):
    """One logical model served by one provider."""

    provider: str
    #: The provider's model id, e.g. ``gpt-4o-mini`` or ``Qwen/Qwen3-32B``.
    model: str = Field(min_length=1)
    #: Unique name; defaults to ``<provider>/<model>``.
    name: str | None = None
    #: Prices; when absent they are looked up in the shipped price table by ``price_key``
    #: (default: the model id).
    price: PriceConfig | None = None
    price_key: str | None = None
    context_window: PositiveInt | None = None
    max_output_tokens: PositiveInt | None = None
    timeout: TimeoutConfig | None = None
    #: Free-form labels (region, data policy, ...), for selection rules.
    tags: dict[str, str] = Field(default_factory=dict)
    #: Client-side rate limits (see docs/budgets.md); also lowered by the provider's rate-limit headers.
    rate_limit: RateLimitConfig | None = None


class CapabilitiesConfig(_Strict):
    """What a model can do, declared for agent frameworks (their model profiles: which output modes
    and inputs to use). llmroute forwards requests as they come; it does not check them against this.
    """

    #: Function tools (``tools=``, tool calls in replies).
    tools: bool = True
    #: Output constrained to a JSON schema (``response_format`` ``json_schema``). ``None`` (default):
    #: true when every deployment's wire format enforces the schema (``openai``, ``gemini``), false
    #: when one is ``anthropic``, where llmroute asks for the schema in the system prompt.
    json_schema: bool | None = None
    #: Image inputs (``image_url`` parts). A model that cannot see images answers them with a 400,
    #: which falls back like any bad request.
    vision: bool = True
    #: Streamed replies.
    streaming: bool = True


class ModelConfig(_Strict):
    """A logical model the application asks for, and where it is served."""

    deployments: list[DeploymentConfig] = Field(min_length=1)
    #: Tokenizer for estimates: ``o200k_base`` or ``cl100k_base``.
    tokenizer: str = "o200k_base"
    #: How the predictor sees this model: ``{"like": "<pool model>"}``, ``{"tier": "large"}``
    #: or ``{"vector": [...]}`` (see docs/predictor.md).
    predictor: dict[str, Any] | None = None
    #: Budgets reserve ``input_margin`` x the tokenizer's input count, since a provider's own
    #: tokenizer may count more tokens than the configured one (e.g. Anthropic's vs ``o200k_base``).
    input_margin: float = Field(1.1, ge=1.0, le=10.0)
    #: What the model can do, for agent frameworks (see :class:`CapabilitiesConfig`).
    capabilities: CapabilitiesConfig = Field(default_factory=CapabilitiesConfig)

    @field_validator("tokenizer")
    @classmethod
    def _tok(cls, v: str) -> str:
        if v not in ENCODINGS:
            raise ValueError(f"unknown tokenizer {v!r}; shipped: {', '.join(sorted(ENCODINGS))}")
        return v


class CircuitConfig(_Strict):
    """When a deployment's circuit opens and how it is probed back (see ``llmroute.circuit``)."""

    enabled: bool = True
    #: Consecutive failures that open the circuit...
    consecutive_failures: PositiveInt = 5
    #: ...or this failure rate over the recent window, once it holds at least ``min_samples`` attempts.
    failure_rate: float = Field(0.5, gt=0, le=1)
    min_samples: PositiveInt = 10
    #: Half-life of that window, seconds.
    window_s: PositiveFloat = 30.0
    #: First cooldown before probing; doubles each time a probe fails, up to ``max_open_s``.
    open_s: PositiveFloat = 15.0
    max_open_s: PositiveFloat = 300.0
    #: Probe attempts at a time while half-open, and successes that close the circuit.
    half_open_probes: PositiveInt = 1
    close_after: PositiveInt = 2


class HealthConfig(_Strict):
    """How deployment health is measured (see ``llmroute.health``)."""

    #: Seconds after which a measurement weighs half as much.
    half_life_s: PositiveFloat = 300.0
    #: What an unmeasured (or long unmeasured) deployment is assumed to do.
    prior_ttft_s: PositiveFloat = 1.0
    prior_tokens_per_s: PositiveFloat = 50.0
    prior_error_rate: float = Field(0.02, ge=0, lt=1)
    #: How many measurements the prior weighs.
    prior_weight: PositiveFloat = 2.0
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)


Objective = Literal["price", "latency", "throughput"]


class HedgeConfig(_Strict):
    """Hedged requests: when an attempt is slow to answer, race it against another deployment."""

    enabled: bool = True
    #: A fixed delay before hedging; default: the deployment's p95 time to first token x ``delay_factor``.
    delay_s: PositiveFloat | None = None
    delay_factor: PositiveFloat = 1.0
    #: Bounds on the computed delay, seconds.
    min_delay_s: float = Field(0.05, ge=0)
    max_delay_s: PositiveFloat = 30.0
    #: Hedges per attempt (each one more request in flight, and billed).
    max_hedges: int = Field(1, ge=1, le=4)
    #: Refuse a hedge on a deployment whose worst-case cost is over this multiple of the slow one's.
    max_cost_ratio: PositiveFloat | None = None
    #: Prefer a deployment of another provider (a provider-wide slowdown hits all of its deployments).
    prefer_other_provider: bool = True


class SelectionConfig(_Strict):
    """How a route picks among the deployments of each model, from their live health."""

    #: ``price``, ``latency``, ``throughput``, or weights such as ``{"price": 1, "latency": 0.5}``.
    objective: Objective | dict[Objective, float] = "price"
    #: Constraints on the estimates (relaxed when no deployment meets them).
    max_p95_ttft_s: PositiveFloat | None = None
    min_tokens_per_s: PositiveFloat | None = None
    max_error_rate: float | None = Field(None, ge=0, le=1)
    #: Providers allowed (``None``: all) and denied; tags a deployment must carry.
    providers: list[str] | None = None
    exclude_providers: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    #: Width of the exploration draws in units of each estimate's uncertainty (0: always the best estimate).
    exploration: float = Field(1.0, ge=0, le=10)
    #: Count in-flight attempts and rate-limit headers, so concurrent callers spread.
    load_aware: bool = True
    #: In-flight attempts that double a deployment's time-based score.
    in_flight_scale: PositiveFloat = 8.0
    #: Prefer the deployment that served this prompt prefix recently (provider prompt caches).
    sticky: bool = False
    cache_ttl_s: PositiveFloat = 300.0

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: Any) -> Any:
        if isinstance(v, dict):
            if not v:
                raise ValueError("give at least one objective weight")
            for key, w in v.items():
                if not (w >= 0) or w == float("inf"):
                    raise ValueError(f"weight of {key!r} must be a finite number >= 0, got {w!r}")
            if not any(w > 0 for w in v.values()):
                raise ValueError("at least one objective weight must be > 0")
        return v

    @property
    def weights(self) -> dict[str, float]:
        """The objective as weights."""
        return dict(self.objective) if isinstance(self.objective, dict) else {self.objective: 1.0}


#: A cascade check: a built-in name (``llmroute.checks.BUILTIN_CHECKS``) or a callable
#: ``(answer) -> CheckResult | bool | float | None``, sync or async (not JSON-serialisable).
CheckSpec = Union[str, Callable[..., Any]]  # noqa: UP007 - pydantic needs the Union at run time


def _check_names(v: list[Any] | None) -> list[Any] | None:
    if v is None:
        return v
    from .checks import BUILTIN_CHECKS

    for item in v:
        if isinstance(item, str) and item not in BUILTIN_CHECKS:
            raise ValueError(f"unknown check {item!r}; built-in: {', '.join(BUILTIN_CHECKS)}")
    return v


def _dump_checks(v: list[Any] | None) -> list[str] | None:
    if v is None:
        return None
    return [c if isinstance(c, str) else f"<callable {getattr(c, '__name__', type(c).__name__)}>" for c in v]


class _Checked(_Strict):
    """A config part with cascade ``checks``: names are validated, callables dumped by name."""

    #: Answer checks: built-in names or callables (default ``llmroute.checks.DEFAULT_CHECKS``).
    checks: list[CheckSpec] | None = None

    @field_validator("checks")
    @classmethod
    def _names(cls, v: list[Any] | None) -> list[Any] | None:
        return _check_names(v)

    @field_serializer("checks")
    def _dump(self, v: list[Any] | None) -> list[str] | None:
        return _dump_checks(v)


class TierConfig(_Checked):
    """One tier of a cascade route: a model, or a choice among models, whose answer is judged."""

    models: list[str] = Field(min_length=1)
    #: How the tier picks among its models (as a route would): ``ordered``, ``cheapest``, ``predictive``.
    strategy: Literal["ordered", "cheapest", "predictive"] = "ordered"
    quality_target: float | None = Field(None, ge=0, le=1)
    cost_weight: float | None = Field(None, ge=0)
    #: This tier's accept threshold (default: the route's ``accept``); its ``checks`` replace the route's.
    accept: float | None = Field(None, ge=0, le=1)


class RouteConfig(_Checked):
    """Which models a request may use, in what order, with what strategy."""

    models: list[str] = Field(min_length=1)
    #: ``ordered``: the listed order; ``cheapest``: by estimated cost;
    #: ``predictive``: the predictor picks the cheapest model good enough for the prompt;
    #: ``cascade``: each model (or tier) in turn answers until the checks accept an answer.
    strategy: Literal["ordered", "cheapest", "predictive", "cascade"] = "ordered"
    #: Predictive routes: the predicted quality a model must reach (0..1).
    quality_target: float | None = Field(None, ge=0, le=1)
    #: Predictive routes: maximise quality - cost_weight * cost_usd instead of a target.
    cost_weight: float | None = Field(None, ge=0)
    retry: RetryConfig | None = None
    #: Overall deadline for the call, every attempt and wait included.
    deadline_s: PositiveFloat | None = None
    #: Output tokens assumed for expected-cost estimates (ordering) when the request sets no max_tokens.
    est_output_tokens: PositiveInt = 256
    #: Order each model's deployments by live health (``None``: configured order, open circuits skipped).
    selection: SelectionConfig | None = None
    #: Race a slow attempt against the plan's next deployment (see docs/health.md); ``None``: never.
    hedge: HedgeConfig | None = None
    #: Cascade routes: the tiers, cheapest first (default: one tier per model of ``models``).
    tiers: list[TierConfig] | None = None
    #: Cascade routes: keep a tier's answer when its checks score at least this (default 0.5).
    accept: float | None = Field(None, ge=0, le=1)
    #: Cascade routes: skip a tier (never the last) whose best predicted quality is below this.
    skip_below: float | None = Field(None, ge=0, le=1)
    #: Cascade routes, when streamed: ``validate`` (buffer each cheaper tier, stream only the
    #: accepted answer) or ``strong_only`` (stream the last tier alone, no cascade).
    stream: Literal["validate", "strong_only"] = "validate"
    #: Cascade routes: ask the tiers before the last for token log-probabilities (OpenAI, Gemini).
    logprobs: bool = True
    #: Cascade routes: record each judged tier's verdict as a feedback label (``record_feedback``).
    feedback: bool = True
    #: ``max_tokens`` sent when the request sets none; default: each deployment's
    #: ``max_output_tokens`` (config or price table), else :data:`DEFAULT_MAX_OUTPUT_TOKENS`.
    #: Budgets reserve for it, so it bounds what one attempt can cost.
    max_output_tokens: PositiveInt | None = None
    #: When a budget refuses a candidate: ``downgrade`` tries the next candidate that fits,
    #: ``refuse`` fails the call at once, ``wait`` waits for the budget to free (within the deadline).
    on_budget_exceeded: Literal["refuse", "downgrade", "wait"] = "downgrade"

    @model_validator(mode="before")
    @classmethod
    def _models_from_tiers(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("tiers") and "models" not in data:
            tiers = data["tiers"]
            if isinstance(tiers, list) and all(isinstance(t, Mapping) for t in tiers):
                names = [m for t in tiers for m in (t.get("models") or ()) if isinstance(m, str)]
                data = {**data, "models": list(dict.fromkeys(names))}
        return data

    def cascade_tiers(self) -> list[TierConfig]:
        """The tiers of a cascade route: ``tiers``, or one per model of ``models``."""
        return list(self.tiers) if self.tiers else [TierConfig(models=[m]) for m in self.models]


BudgetScope = Literal["call", "global", "key", "tag", "user", "route", "model"]


class BudgetConfig(_Strict):
    """A spending limit: a scope (each user, each tag, ...) over a window (see docs/budgets.md)."""

    #: ``call``: one routed call, every attempt included; ``global``: everything; ``key``: each
    #: provider entry (one credential); ``tag`` / ``user``: each tag / user given to the call;
    #: ``route`` / ``model``: each route / logical model.
    scope: BudgetScope
    limit_usd: float = Field(gt=0, allow_inf_nan=False)
    #: ``minute`` / ``hour`` / ``day`` / ``month`` (UTC calendar windows) or ``total`` (never resets).
    window: Literal["minute", "hour", "day", "month", "total"] = "total"
    #: Only these values of the scope get this limit (e.g. ``["team-a"]``); default: each value its own.
    match: list[str] | None = Field(None, min_length=1)
    #: Unique name, shown in errors; default ``<scope>/<window>``.
    name: str | None = Field(None, min_length=1, max_length=200)
    #: When the store (Redis) cannot be reached: ``fail_closed`` refuses the call,
    #: ``fail_open`` lets it through unmetered and logs a warning.
    on_store_error: Literal["fail_closed", "fail_open"] = "fail_closed"

    @property
    def label(self) -> str:
        """The budget's name: ``name``, else ``<scope>/<window>``."""
        return self.name or f"{self.scope}/{self.window}"


class StoreConfig(_Strict):
    """Where shared state (budgets, rate limits) lives."""

    #: ``memory://`` (this process) or ``redis://host:port/db`` (a fleet; ``pip install llmroute[redis]``).
    #: Kept as a secret (it may hold a password), never shown.
    url: SecretStr = Field(default_factory=lambda: SecretStr("memory://"))
    #: Prefix of every key, so several applications can share one Redis.
    prefix: str = Field("llmroute", min_length=1, max_length=100)
    #: Upper bound on one store operation, seconds (queueing on a busy event loop included); past it
    #: the store counts as unavailable.
    timeout_s: PositiveFloat = 2.0
    #: A hold not settled after this long (its process died) is charged in full and released.
    hold_ttl_s: PositiveFloat = 600.0

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not all(ch.isascii() and (ch.isalnum() or ch in "_.-:") for ch in v):
            raise ValueError("may only hold ASCII letters, digits and _ . - :")
        return v

    @field_validator("url")
    @classmethod
    def _store_url(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith(("memory:", "redis://", "rediss://", "unix://")):
            raise ValueError("must start with memory://, redis://, rediss:// or unix://")
        return v


class JudgeConfig(_Strict):
    """A sampled judge: a configured model grades a small share of predictive replies (labels for learning)."""

    #: The route (or, instead, the model) that grades; its calls are ordinary routed calls.
    route: str | None = None
    model: str | None = None
    #: Share of predictive replies sent to the judge (drawn from the learning seed).
    share: float = Field(0.02, ge=0, le=1)
    #: Most the judge may spend in total (USD, its estimated cost counted before each call).
    max_cost_usd: float = Field(1.0, ge=0)
    #: Judge calls in flight at once, and replies waiting for one (more are not graded).
    max_concurrency: PositiveInt = 2
    max_pending: PositiveInt = 64


class LearningConfig(_Strict):
    """Learning from your traffic (``llmroute/learning.py``, docs/predictor.md)."""

    #: Online per-model heads over the predictor's features, updated by every label.
    enabled: bool = True
    #: Seed of exploration and judge sampling (decisions are reproducible given the same calls).
    seed: int = 0
    #: Thompson-sampling exploration, capped so that its extra estimated cost stays within this share
    #: of the routed calls' estimated cost (0: never explore).
    explore_share: float = Field(0.0, ge=0, le=1)
    #: A reply that fails its own ``response_format`` JSON or whose tool arguments are not JSON
    #: becomes a 0 label for the model that answered.
    structured_output_labels: bool = True
    #: Load the learned state from this file at start-up; ``await router.learning.save()`` writes it.
    state_file: str | None = None
    judge: JudgeConfig | None = None


class Config(_Strict):
    """The whole router configuration."""

    providers: dict[str, ProviderConfig] = Field(min_length=1)
    models: dict[str, ModelConfig] = Field(min_length=1)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    #: Route used when a call names neither a route nor a model; defaults to ``default`` or the first route.
    default_route: str | None = None
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    #: Connection pool limits of the shared HTTP client.
    max_connections: PositiveInt = 100
    max_keepalive_connections: PositiveInt = 20
    #: Health measurement and circuit breakers.
    health: HealthConfig = Field(default_factory=HealthConfig)
    #: Spending limits (see docs/budgets.md); several may apply to one call.
    budgets: list[BudgetConfig] = Field(default_factory=list)
    #: Where budgets and rate limits are kept (default: this process's memory).
    store: StoreConfig = Field(default_factory=StoreConfig)


def _url_problem(url: str) -> str | None:
    """Why *url* cannot be a base URL (without quoting it: it may hold credentials), or ``None``."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "is not a valid URL"
    if not parsed.host:
        return "has no host"
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        return "must not have a query or a fragment (request paths are appended to it)"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain whitespace or control characters"
    return None


def _secret_problem(value: str) -> str | None:
    """Why *value* (already stripped) cannot be sent as a header value, never quoting it."""
    if not value:
        return "is empty"
    if not value.isascii():
        return "holds a non-ASCII character (not allowed in an HTTP header; the value is not shown)"
    if not _HEADER_VALUE.fullmatch(value):
        return "holds a control character (not allowed in an HTTP header; the value is not shown)"
    return None


def _check_credentials(cfg: Config) -> tuple[Config, list[tuple[str, str]]]:
    """Strip API keys and header values of surrounding whitespace and refuse what HTTP cannot send.

    Runs after ``api_key_env`` is resolved, so a key from the environment is checked too (its
    errors name ``api_key_env``). Messages never hold a key or a header value.
    """
    errors: list[tuple[str, str]] = []
    providers = dict(cfg.providers)
    for pname, prov in cfg.providers.items():
        update: dict[str, Any] = {}
        if prov.api_key is not None:
            raw = prov.api_key.get_secret_value()
            key = raw.strip()
            field = "api_key_env" if prov.api_key_env is not None else "api_key"
            problem = _secret_problem(key)
            if problem:
                errors.append((f"providers.{pname}.{field}", f"the API key {problem}"))
            elif key != raw:
                update["api_key"] = SecretStr(key)
        headers: dict[str, SecretStr] = {}
        for hname, hvalue in prov.headers.items():
            path = f"providers.{pname}.headers.{hname[:40]}"
            if not _HEADER_NAME.fullmatch(hname):
                errors.append((path, "is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"))
                continue
            if hname.lower() in _FRAMING_HEADERS:
                errors.append((path, "is set by the HTTP client and cannot be configured"))
                continue
            raw = hvalue.get_secret_value()
            value = raw.strip()
            problem = _secret_problem(value)
            if problem:
                errors.append((path, f"the header value {problem}"))
            headers[hname] = hvalue if value == raw else SecretStr(value)
        if any(headers[h] is not prov.headers[h] for h in headers):
            update["headers"] = headers
        if update:
            providers[pname] = prov.model_copy(update=update)
    return cfg.model_copy(update={"providers": providers}), errors


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _cross_check(cfg: Config) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    names: dict[str, str] = {}
    for mname, model in cfg.models.items():
        for i, dep in enumerate(model.deployments):
            path = f"models.{mname}.deployments.{i}"
            if dep.provider not in cfg.providers:
                errors.append(
                    (
                        f"{path}.provider",
                        f"unknown provider {dep.provider!r}; defined: {', '.join(sorted(cfg.providers))}",
                    )
                )
            dname = dep.name or f"{dep.provider}/{dep.model}"
            if dname in names:
                errors.append(
                    (
                        f"{path}.name",
                        f"deployment name {dname!r} is already used by {names[dname]}; give one a distinct name",
                    )
                )
            names[dname] = path
            if dep.price is None and lookup_price(dep.price_key or dep.model) is None:
                key = dep.price_key or dep.model
                errors.append(
                    (
                        f"{path}.price",
                        f"no price given and {key!r} is not in the shipped price table; "
                        "give price: {input: ..., output: ...} (USD per million tokens) or a price_key from the table",
                    )
                )
    for rname, route in cfg.routes.items():
        for i, m in enumerate(route.models):
            if m not in cfg.models:
                errors.append(
                    (f"routes.{rname}.models.{i}", f"unknown model {m!r}; defined: {', '.join(sorted(cfg.models))}")
                )
        sel = route.selection
        if sel is not None:
            for key in ("providers", "exclude_providers"):
                for i, p in enumerate(getattr(sel, key) or ()):
                    if p not in cfg.providers:
                        errors.append(
                            (
                                f"routes.{rname}.selection.{key}.{i}",
                                f"unknown provider {p!r}; defined: {', '.join(sorted(cfg.providers))}",
                            )
                        )
        if route.strategy != "predictive" and (route.quality_target is not None or route.cost_weight is not None):
            errors.append((f"routes.{rname}.strategy", "quality_target and cost_weight need strategy 'predictive'"))
        errors += _cascade_errors(cfg, rname, route)
    if cfg.default_route is not None and cfg.default_route not in cfg.routes:
        errors.append(
            (
                "default_route",
                f"unknown route {cfg.default_route!r}; defined: {', '.join(sorted(cfg.routes)) or 'none'}",
            )
        )
    errors += _check_budgets(cfg)
    judge = cfg.learning.judge
    if judge is not None:
        if (judge.route is None) == (judge.model is None):
            errors.append(("learning.judge", "give route or model (one of them)"))
        elif judge.route is not None and judge.route not in cfg.routes:
            errors.append(("learning.judge.route", f"unknown route {judge.route!r}"))
        elif judge.model is not None and judge.model not in cfg.models:
            errors.append(("learning.judge.model", f"unknown model {judge.model!r}"))
    for pname, prov in cfg.providers.items():
        if prov.api_key is not None and prov.api_key_env is not None:
            errors.append((f"providers.{pname}.api_key_env", "give api_key or api_key_env, not both"))
    return errors


def _cascade_errors(cfg: Config, rname: str, route: RouteConfig) -> list[tuple[str, str]]:
    """Cascade-only fields on other routes, unknown tier models, too few tiers."""
    path = f"routes.{rname}"
    if route.strategy != "cascade":
        used = [f for f in ("tiers", "checks", "accept", "skip_below") if getattr(route, f) is not None]
        return [(f"{path}.{f}", "needs strategy 'cascade'") for f in used]
    errors: list[tuple[str, str]] = []
    for i, tier in enumerate(route.tiers or ()):
        for j, m in enumerate(tier.models):
            if m not in cfg.models:
                known = ", ".join(sorted(cfg.models))
                errors.append((f"{path}.tiers.{i}.models.{j}", f"unknown model {m!r}; defined: {known}"))
        if tier.strategy != "predictive" and (tier.quality_target is not None or tier.cost_weight is not None):
            errors.append((f"{path}.tiers.{i}.strategy", "quality_target and cost_weight need strategy 'predictive'"))
    if len(route.cascade_tiers()) < 2:
        errors.append((f"{path}.models", "a cascade needs at least two tiers (models, or tiers)"))
    return errors


def _check_budgets(cfg: Config) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    labels: dict[str, int] = {}
    known = {"route": cfg.routes, "model": cfg.models, "key": cfg.providers}
    for i, b in enumerate(cfg.budgets):
        path = f"budgets.{i}"
        if b.label in labels:
            errors.append((f"{path}.name", f"budget name {b.label!r} is already used by budgets.{labels[b.label]}"))
        labels.setdefault(b.label, i)
        if b.scope in ("call", "global") and b.match is not None:
            errors.append((f"{path}.match", f"scope {b.scope!r} has no values to match"))
        if b.scope == "call" and b.window != "total":
            errors.append((f"{path}.window", "a call budget has no window (it bounds one call)"))
        if b.scope == "call" and b.on_store_error != "fail_closed":
            errors.append((f"{path}.on_store_error", "a call budget is kept in-process and needs no store"))
        defined = known.get(b.scope)
        for j, value in enumerate(b.match or ()):
            if defined is not None and value not in defined:
                errors.append(
                    (f"{path}.match.{j}", f"unknown {b.scope} {value!r}; defined: {', '.join(sorted(defined))}")
                )
    return errors


def _resolve_env(cfg: Config, environ: Mapping[str, str]) -> tuple[Config, list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    providers = dict(cfg.providers)
    for pname, prov in cfg.providers.items():
        if prov.api_key_env is None:
            continue
        value = environ.get(prov.api_key_env)
        if not value or not value.strip():
            errors.append(
                (f"providers.{pname}.api_key_env", f"environment variable {prov.api_key_env!r} is not set or empty")
            )
            continue
        providers[pname] = prov.model_copy(update={"api_key": SecretStr(value)})
    return cfg.model_copy(update={"providers": providers}), errors


def load_config(data: Mapping[str, Any] | Config, *, environ: Mapping[str, str] | None = None) -> Config:
    """Validate *data* into a :class:`Config`, resolving ``api_key_env`` from *environ*
    (default ``os.environ``).

    Raises :class:`~llmroute.errors.ConfigError` listing every bad field's path and reason.
    """
    if isinstance(data, Config):
        cfg = data
    else:
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}", [("<root>", "not a mapping")])
        schema_errors: list[tuple[str, str]] = []
        try:
            cfg = Config.model_validate(dict(data))
        except ValidationError as exc:
            schema_errors = [(_path(e["loc"]), e["msg"]) for e in exc.errors(include_input=False, include_url=False)]
        if schema_errors:
            # raised here, not in the except block: the ValidationError holds the input (keys
            # included) and would otherwise stay reachable as the ConfigError's __context__
            raise _config_error(schema_errors)
    errors = _cross_check(cfg)
    cfg, env_errors = _resolve_env(cfg, os.environ if environ is None else environ)
    cfg, credential_errors = _check_credentials(cfg)
    errors += env_errors + credential_errors
    if errors:
        raise _config_error(errors)
    return cfg


def _config_error(errors: list[tuple[str, str]]) -> ConfigError:
    lines = "\n".join(f"  {path}: {reason}" for path, reason in errors)
    n = len(errors)
    return ConfigError(f"invalid llmroute config ({n} error{'s' if n != 1 else ''}):\n{lines}", errors)
