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
"""

from __future__ import annotations

import os
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
    "Config",
    "DeploymentConfig",
    "ModelConfig",
    "PriceConfig",
    "ProviderConfig",
    "RetryConfig",
    "RouteConfig",
    "TierConfig",
    "TimeoutConfig",
    "load_config",
]

Api = Literal["openai", "anthropic", "gemini"]

#: Base URL used when a provider gives none.
DEFAULT_BASE_URLS: Mapping[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutConfig(_Strict):
    """Per-attempt HTTP timeouts in seconds."""

    connect_s: PositiveFloat = 5.0
    #: Longest wait for the next bytes of a response (also the time to first byte).
    read_s: PositiveFloat = 60.0
    #: Upper bound on one whole attempt; ``None`` for no bound beyond ``read_s`` gaps.
    attempt_s: PositiveFloat | None = None


class RetryConfig(_Strict):
    """How often to retry one deployment before falling back to the next."""

    #: Attempts per deployment, the first included (1 = no retry).
    attempts: PositiveInt = 2
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
    base_url: str | None = None
    #: The key itself (kept as a secret, never shown); prefer ``api_key_env``.
    api_key: SecretStr | None = None
    #: Name of an environment variable holding the key, read when the config loads.
    api_key_env: str | None = None
    #: Extra HTTP headers sent on every request (values are treated as secrets in reprs).
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: TimeoutConfig | None = None
    #: Anthropic's ``anthropic-version`` header.
    api_version: str | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/") if v else v

    @property
    def url(self) -> str:
        """The base URL, or the wire format's default."""
        return self.base_url or DEFAULT_BASE_URLS[self.api]


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


class ModelConfig(_Strict):
    """A logical model the application asks for, and where it is served."""

    deployments: list[DeploymentConfig] = Field(min_length=1)
    #: Tokenizer for estimates: ``o200k_base`` or ``cl100k_base``.
    tokenizer: str = "o200k_base"
    #: How the predictor sees this model: ``{"like": "<pool model>"}``, ``{"tier": "large"}``
    #: or ``{"vector": [...]}`` (see docs/predictor.md).
    predictor: dict[str, Any] | None = None

    @field_validator("tokenizer")
    @classmethod
    def _tok(cls, v: str) -> str:
        if v not in ENCODINGS:
            raise ValueError(f"unknown tokenizer {v!r}; shipped: {', '.join(sorted(ENCODINGS))}")
        return v


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
    #: Output tokens assumed for cost estimates when the request sets no max_tokens.
    est_output_tokens: PositiveInt = 256
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


class Config(_Strict):
    """The whole router configuration."""

    providers: dict[str, ProviderConfig] = Field(min_length=1)
    models: dict[str, ModelConfig] = Field(min_length=1)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    #: Route used when a call names neither a route nor a model; defaults to ``default`` or the first route.
    default_route: str | None = None
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    #: Connection pool limits of the shared HTTP client.
    max_connections: PositiveInt = 100
    max_keepalive_connections: PositiveInt = 20


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


def _resolve_env(cfg: Config, environ: Mapping[str, str]) -> tuple[Config, list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    providers = dict(cfg.providers)
    for pname, prov in cfg.providers.items():
        if prov.api_key_env is None:
            continue
        value = environ.get(prov.api_key_env)
        if not value:
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
        try:
            cfg = Config.model_validate(dict(data))
        except ValidationError as exc:
            errors = [(_path(e["loc"]), e["msg"]) for e in exc.errors(include_input=False, include_url=False)]
            raise _config_error(errors) from None
    errors = _cross_check(cfg)
    cfg, env_errors = _resolve_env(cfg, os.environ if environ is None else environ)
    errors += env_errors
    if errors:
        raise _config_error(errors)
    return cfg


def _config_error(errors: list[tuple[str, str]]) -> ConfigError:
    lines = "\n".join(f"  {path}: {reason}" for path, reason in errors)
    n = len(errors)
    return ConfigError(f"invalid llmroute config ({n} error{'s' if n != 1 else ''}):\n{lines}", errors)
