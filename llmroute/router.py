"""The Router: one async interface over every configured provider.

::

    router = llmroute.Router.from_dict(config)
    reply = await router.complete(messages=[{"role": "user", "content": "Hi"}])
    async for chunk in router.stream(messages=[...]):
        print(chunk.text, end="")

The router plans a call (which candidates, in which order: ``llmroute.policy``), then the
executor carries it out (retries, fallback, deadline: ``llmroute.execute``). Every reply carries
its :class:`~llmroute.types.RouteTrace`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from . import _clock
from ._clock import Clock, Sleep
from ._request import validate_request
from ._transport import PooledTransport, env_proxies
from .config import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    Config,
    DeploymentConfig,
    ModelConfig,
    RouteConfig,
    TimeoutConfig,
    load_config,
)
from .costs import Price, estimate_cost_usd, lookup_price
from .errors import ConfigError, ContextWindowExceededError, InvalidRequestError, UnknownRouteError
from .execute import Executor, Plan, PlannedCandidate, ReplyStream
from .hooks import Hooks
from .policy.budget import Budget, Ledger, call_scope
from .policy.ordering import order_candidates
from .providers import get_adapter
from .providers.base import Adapter, Target
from .ratelimit import RateLimiter
from .stores import Store
from .tokens import count_message_tokens
from .types import Candidate, ChatRequest, Message, Reply, RouteTrace

__all__ = ["Router"]

logger = logging.getLogger("llmroute.router")


@dataclass(frozen=True, slots=True)
class _Deployment:
    model: str
    name: str
    config: DeploymentConfig
    adapter: Adapter
    target: Target
    price: Price
    timeout: dict[str, float | None]
    attempt_s: float | None
    context_window: int | None
    max_output_tokens: int | None
    tokenizer: str


def _timeouts(*layers: TimeoutConfig | None) -> tuple[dict[str, float | None], float | None]:
    """The most specific timeout layer that is set, as an httpx timeout extension."""
    chosen = next(t for t in layers if t is not None)
    return (
        {"connect": chosen.connect_s, "read": chosen.read_s, "write": chosen.read_s, "pool": chosen.connect_s},
        chosen.attempt_s,
    )


def _as_messages(messages: Sequence[Message] | str) -> Sequence[Message]:
    """*messages*, a plain string becoming one user message (checked by ``validate_request``)."""
    if isinstance(messages, str):
        return ({"role": "user", "content": messages},)
    return messages


def _with_max_tokens(req: ChatRequest, max_tokens: int) -> ChatRequest:
    """*req* with another ``max_tokens`` (a plain constructor call: ``dataclasses.replace`` costs more)."""
    return ChatRequest(
        req.messages,
        req.tools,
        req.tool_choice,
        max_tokens,
        req.temperature,
        req.top_p,
        req.stop,
        req.response_format,
        req.extra_body,
    )


def _call_deadline(deadline_s: Any, rcfg: RouteConfig) -> float | None:
    """The call's deadline: *deadline_s* (0 means already expired), else the route's."""
    if deadline_s is None:
        return rcfg.deadline_s
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)) or not 0 <= deadline_s < math.inf:
        raise InvalidRequestError(f"deadline_s must be a finite number of seconds >= 0, got {deadline_s!r}")
    return float(deadline_s)


def _marks_cache_control(obj: Any) -> bool:
    """Whether *obj* (message, tool or body JSON) holds a ``cache_control`` key at any depth."""
    if isinstance(obj, Mapping):
        return "cache_control" in obj or any(_marks_cache_control(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_marks_cache_control(v) for v in obj)
    return False


def _asks_for_cache_writes(req: ChatRequest) -> bool:
    """Whether *req* may make the provider write its prompt cache (Anthropic: a ``cache_control`` mark)."""
    return any(_marks_cache_control(part) for part in (req.messages, req.tools, req.extra_body))


class Router:
    """Routes chat calls across the providers, models and deployments of a :class:`Config`.

    Inject the parts tests and integrations need: ``http_client`` (or just ``transport``, an
    ``httpx.AsyncBaseTransport``), ``clock`` and ``sleep`` (virtual time), ``hooks`` (attempt
    observers), ``budget`` (reserve/settle spending), ``store`` (where the config's budgets and rate
    limits live; default: the one ``config.store`` names) and ``predictor`` (predictive routes).
    Close it with ``await router.aclose()`` or use ``async with``.
    """

    #: Feedback labels kept per model by :meth:`record_feedback` (the oldest are dropped).
    feedback_limit: int = 10_000

    def __init__(
        self,
        config: Config | Mapping[str, Any],
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        hooks: Sequence[Hooks] = (),
        budget: Budget | None = None,
        predictor: Any = None,
        environ: Mapping[str, str] | None = None,
        store: Store | None = None,
    ) -> None:
        self.config: Config = load_config(config, environ=environ)
        cfg = self.config
        if budget is not None and cfg.budgets:
            raise ConfigError("give budget= or the config's budgets, not both", [("budgets", "budget= also given")])
        budget, limiter = self._open_budgets(store, budget)
        self._owns_client = http_client is None
        if http_client is None and transport is None and not env_proxies():
            transport = PooledTransport(
                max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_keepalive_connections
            )
        self._client = http_client or httpx.AsyncClient(
            transport=transport,
            limits=httpx.Limits(
                max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_keepalive_connections
            ),
            timeout=httpx.Timeout(cfg.timeout.read_s, connect=cfg.timeout.connect_s),
            follow_redirects=False,
        )
        self._clock = clock or _clock.monotonic
        self._executor = Executor(
            self._client,
            clock=self._clock,
            sleep=sleep or _clock.sleep,
            hooks=hooks,
            budget=budget,
            max_in_flight=cfg.max_connections,
            rate_limiter=limiter,
        )
        self._predictor = predictor
        self._warm = False
        self._warm_lock = anyio.Lock()
        self._profiles: dict[str, Any] = {}
        #: Feedback labels per model: ``(prompt latent, score)`` (see :meth:`record_feedback`).
        self._feedback: dict[str, Any] = {}
        self._deployments: dict[str, list[_Deployment]] = {
            name: self._resolve_model(name, model) for name, model in cfg.models.items()
        }
        self._default_route = cfg.default_route or (
            "default" if "default" in cfg.routes else next(iter(cfg.routes), None)
        )

    # ------------------------------------------------------------------ construction
    def _open_budgets(self, store: Store | None, budget: Budget | None) -> tuple[Budget | None, RateLimiter | None]:
        """The config's budgets and rate limits over *store* (else one from ``config.store``)."""
        cfg = self.config
        limits = {
            dep.name or f"{dep.provider}/{dep.model}": dep.rate_limit
            for model in cfg.models.values()
            for dep in model.deployments
            if dep.rate_limit is not None and (dep.rate_limit.requests_per_minute or dep.rate_limit.tokens_per_minute)
        }
        self._owns_store = store is None and bool(cfg.budgets or limits)
        if self._owns_store:
            from .stores import from_url

            url = cfg.store.url.get_secret_value()
            store = from_url(url, prefix=cfg.store.prefix, timeout_s=cfg.store.timeout_s)
        #: The shared store of budgets and rate limits (``None`` when neither is configured nor given).
        self.store: Store | None = store
        sc = cfg.store
        if cfg.budgets:
            assert store is not None
            budget = Ledger(cfg.budgets, store, timeout_s=sc.timeout_s, hold_ttl_s=sc.hold_ttl_s)
        #: What reserves and settles spending: ``budget=``, the config's budgets (a Ledger), or ``None``.
        self.budget: Budget | None = budget
        limiter = RateLimiter(limits, store, timeout_s=sc.timeout_s) if limits and store is not None else None
        return budget, limiter

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **kwargs: Any) -> Router:
        """Build a router from a plain dict (validated; raises ConfigError naming bad fields)."""
        return cls(data, **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Router:
        """Build a router from a JSON file."""
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f), **kwargs)

    def _resolve_model(self, name: str, model: ModelConfig) -> list[_Deployment]:
        cfg = self.config
        out = []
        for dep in model.deployments:
            prov = cfg.providers[dep.provider]
            if dep.price is not None:
                price = dep.price.to_price()
                table = None
            else:
                table = lookup_price(dep.price_key or dep.model)
                assert table is not None  # load_config checked it
                price = table.price
            timeout, attempt_s = _timeouts(dep.timeout, prov.timeout, cfg.timeout)
            dname = dep.name or f"{dep.provider}/{dep.model}"
            target = Target(
                provider=dep.provider,
                api=prov.api,
                base_url=prov.url,
                model=dep.model,
                deployment=dname,
                api_key=prov.api_key,
                headers=prov.headers,
                api_version=prov.api_version,
            )
            out.append(
                _Deployment(
                    model=name,
                    name=dname,
                    config=dep,
                    adapter=get_adapter(prov.api),
                    target=target,
                    price=price,
                    timeout=timeout,
                    attempt_s=attempt_s,
                    context_window=dep.context_window or (table.max_input_tokens if table else None),
                    max_output_tokens=dep.max_output_tokens or (table.max_output_tokens if table else None),
                    tokenizer=model.tokenizer,
                )
            )
        return out

    # ------------------------------------------------------------------ planning
    def _route(self, route: str | None, model: str | None) -> tuple[str, RouteConfig]:
        cfg = self.config
        if route is not None and model is not None:
            raise InvalidRequestError("give route= or model=, not both")
        if model is not None:
            if model not in cfg.models:
                raise UnknownRouteError(f"unknown model {model!r}; defined: {', '.join(sorted(cfg.models))}")
            return f"model:{model}", RouteConfig(models=[model])
        name = route or self._default_route
        if name is None:
            raise UnknownRouteError("no route given and the config defines none; pass model= or add routes")
        try:
            return name, cfg.routes[name]
        except KeyError:
            raise UnknownRouteError(f"unknown route {name!r}; defined: {', '.join(sorted(cfg.routes))}") from None

    def plan(
        self,
        messages: Sequence[Message] | str,
        *,
        route: str | None = None,
        model: str | None = None,
        deadline_s: float | None = None,
        user: str | None = None,
        tags: Sequence[str] | None = None,
        **request: Any,
    ) -> Plan:
        """Decide how a call would be routed, without sending anything (also a dry run)."""
        name, rcfg = self._route(route, model)
        who, labels = call_scope(user, tags)
        req = ChatRequest(messages=_as_messages(messages), **request)
        validate_request(req)  # bad input fails here, before anything is planned or sent
        return self._plan(name, rcfg, req, _call_deadline(deadline_s, rcfg), who, labels)

    def _plan(
        self,
        name: str,
        rcfg: RouteConfig,
        req: ChatRequest,
        deadline: float | None,
        who: str | None,
        labels: tuple[str, ...],
    ) -> Plan:
        """:meth:`plan` for a request already checked (by :meth:`plan`, :meth:`complete` or :meth:`stream`)."""
        tokens_by_enc: dict[str, int] = {}
        est_out = req.max_tokens or rcfg.est_output_tokens
        cache_write: bool | None = None  # looked up only for a price whose cache writes cost more
        deps: list[_Deployment] = []
        cands: list[Candidate] = []
        for mname in rcfg.models:
            model_deps = self._deployments[mname]
            enc = model_deps[0].tokenizer
            if enc not in tokens_by_enc:
                tokens_by_enc[enc] = count_message_tokens(req.messages, enc, tools=req.tools)
            n_in = tokens_by_enc[enc]
            n_in_worst = math.ceil(n_in * self.config.models[mname].input_margin)
            for d in model_deps:
                cap = d.max_output_tokens
                send_max = req.max_tokens or rcfg.max_output_tokens or cap or DEFAULT_MAX_OUTPUT_TOKENS
                if cap and send_max > cap:
                    send_max = cap
                deps.append(d)
                price = d.price
                if price.cache_write is not None and price.cache_write > price.input and cache_write is None:
                    cache_write = _asks_for_cache_writes(req)
                writes = bool(cache_write)
                est = estimate_cost_usd(n_in, min(est_out, send_max), price, cache_write=writes)
                worst = estimate_cost_usd(n_in_worst, send_max, price, cache_write=writes)
                cands.append(Candidate(mname, d.name, d.target.provider, d.target.model, est, None, send_max, worst))
        prediction = None
        if rcfg.strategy == "predictive":
            deps, cands, reason, prediction = self._predictive(req, rcfg, deps, cands)
        elif rcfg.strategy == "ordered":
            reason = "configured order"
        else:
            order, reason = order_candidates(rcfg.strategy, cands)
            deps, cands = [deps[i] for i in order], [cands[i] for i in order]
        est_in = max(tokens_by_enc.values()) if tokens_by_enc else 0
        skipped: list[BaseException] = []
        planned: list[PlannedCandidate] = []
        kept: list[Candidate] = []
        retry = rcfg.retry or self.config.retry
        sent_requests: dict[int, ChatRequest] = {}
        for d, c in zip(deps, cands):
            if d.context_window and tokens_by_enc[d.tokenizer] > d.context_window:
                n_in = tokens_by_enc[d.tokenizer]
                skipped.append(
                    ContextWindowExceededError(
                        f"skipped: about {n_in} input tokens exceed the context window of {d.context_window}",
                        **d.target.error_fields(),
                    )
                )
                continue
            sent = req
            if c.max_output_tokens != req.max_tokens:
                sent = sent_requests.get(c.max_output_tokens)  # type: ignore[assignment]
                if sent is None:
                    sent = sent_requests[c.max_output_tokens] = _with_max_tokens(req, c.max_output_tokens)
            planned.append(PlannedCandidate(c, d.adapter, d.target, d.price, d.timeout, retry, d.attempt_s, sent))
            kept.append(c)
        if skipped:
            reason += f"; {len(skipped)} skipped for context window"
        trace = RouteTrace(name, rcfg.strategy, kept, est_input_tokens=est_in, prediction=prediction, reason=reason)
        return Plan(
            name,
            req,
            planned,
            trace,
            deadline,
            est_in,
            skipped,
            user=who,
            tags=labels,
            on_budget_exceeded=rcfg.on_budget_exceeded,
        )

    def _predictive(
        self, req: ChatRequest, rcfg: RouteConfig, deps: list[_Deployment], cands: list[Candidate]
    ) -> tuple[list[_Deployment], list[Candidate], str, Any]:
        """Order models by the predictor's decision; on any predictor failure keep config order."""
        try:
            order, decision = self._predict_order(req, rcfg, cands)
        except Exception as exc:  # the predictor must never fail a call
            logger.warning("predictor unavailable, using configured order: %s", exc)
            return deps, cands, f"configured order (predictor unavailable: {exc})", None
        rank = {m: i for i, m in enumerate(order)}
        idx = sorted(range(len(deps)), key=lambda i: (rank.get(deps[i].model, len(rank)), i))
        quality = getattr(decision, "quality", {}) or {}
        ordered = [dataclasses.replace(cands[i], score=quality.get(cands[i].model)) for i in idx]
        return [deps[i] for i in idx], ordered, decision.reason, decision

    def _profile(self, model: str) -> Any:
        """How the predictor sees *model* (built once from its config, then kept)."""
        profile = self._profiles.get(model)
        if profile is None:
            from .predictor import ModelProfile

            profile = self._profiles[model] = ModelProfile.from_config(model, self.config.models[model].predictor)
        return profile

    def _predict_order(self, req: ChatRequest, rcfg: RouteConfig, cands: list[Candidate]) -> tuple[list[str], Any]:
        """Ask the predictor about this prompt and let the predictive policy order the models."""
        from .policy.predictive import PredictiveCandidate, choose
        from .predictor import Predictor

        if self._predictor is None:
            self._predictor = Predictor.default()
        models = list(dict.fromkeys(c.model for c in cands))
        profiles = [self._profile(m) for m in models]
        prediction = self._predictor.try_predict(req.messages, profiles, tools=req.tools)
        cheapest = {m: min(c.est_cost_usd for c in cands if c.model == m) for m in models}
        decision = choose(
            prediction,
            [PredictiveCandidate(m, cheapest[m]) for m in models],
            quality_target=rcfg.quality_target,
            cost_weight=rcfg.cost_weight,
        )
        return list(decision.order), decision

    # ------------------------------------------------------------------ calls
    async def complete(
        self,
        messages: Sequence[Message] | str,
        *,
        route: str | None = None,
        model: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        response_format: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
        user: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> Reply:
        """Send a chat request along a route (or to one model) and return the reply.

        Raises :class:`~llmroute.errors.AllAttemptsFailedError` when every candidate failed,
        :class:`~llmroute.errors.DeadlineExceededError` when *deadline_s* (or the route's) ran
        out, and :class:`~llmroute.errors.UnknownRouteError` / ``InvalidRequestError`` for bad
        arguments. *user* and *tags* name who the call is for and label it, for the config's
        budgets (``BudgetExceededError`` when one refuses; see docs/budgets.md).
        """
        t0 = self._clock()
        name, rcfg = self._route(route, model)
        req = ChatRequest(
            _as_messages(messages),
            tools,
            tool_choice,
            max_tokens,
            temperature,
            top_p,
            stop,
            response_format,
            extra_body,
        )
        validate_request(req)
        who, labels = call_scope(user, tags)
        deadline = _call_deadline(deadline_s, rcfg)

        async def make_plan() -> Plan:
            if not self._warm:
                await self.warmup()
            return self._plan(name, rcfg, req, deadline, who, labels)

        return await self._executor.complete(make_plan, deadline_s=deadline, route=name, t0=t0)

    def stream(
        self,
        messages: Sequence[Message] | str,
        *,
        route: str | None = None,
        model: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        response_format: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
        user: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> ReplyStream:
        """Stream a reply: ``async for chunk in router.stream(...)``; then ``stream.reply``.

        Falls back to the next candidate only before the first token, so text is never
        duplicated; an error after the first token ends the stream with that error. The deadline
        counts from the first ``__anext__`` (when the stream starts working).
        """
        name, rcfg = self._route(route, model)  # bad arguments fail here, not at the first chunk
        req = ChatRequest(
            _as_messages(messages),
            tools,
            tool_choice,
            max_tokens,
            temperature,
            top_p,
            stop,
            response_format,
            extra_body,
        )
        validate_request(req)
        who, labels = call_scope(user, tags)
        deadline = _call_deadline(deadline_s, rcfg)

        async def make_plan() -> Plan:
            if not self._warm:
                await self.warmup()
            return self._plan(name, rcfg, req, deadline, who, labels)

        return self._executor.stream(make_plan, deadline_s=deadline, route=name)

    # ------------------------------------------------------------------ calibration
    def calibrate(
        self,
        prompts: Sequence[Sequence[Message] | str],
        *,
        route: str,
        strong_share: float,
    ) -> float:
        """Fit a predictive route to your own traffic: set its ``quality_target`` so that about
        *strong_share* of *prompts* (unlabelled; a sample of real requests) go past the route's
        cheapest model. Returns the target; ``router.config`` holds it from now on (save it with
        ``router.config.model_dump(mode="json")``). For labelled data and new model vectors, see
        ``llmroute calibrate``. Runs the predictor inline: call it at start-up, not per request.
        """
        from .calibration import quality_target_for_strong_share
        from .predictor import Predictor

        name, rcfg = self._route(route, None)
        if rcfg.strategy != "predictive":
            raise InvalidRequestError(f"route {name!r} has strategy {rcfg.strategy!r}; calibrate needs 'predictive'")
        if not 0.0 <= strong_share <= 1.0:
            raise InvalidRequestError(f"strong_share must be within [0, 1], got {strong_share}")
        if not prompts:
            raise InvalidRequestError("calibrate needs at least one prompt")

        def unit_price(model: str) -> float:
            return min(d.price.input + d.price.output for d in self._deployments[model])

        weak = min(rcfg.models, key=unit_price)
        profiles = [self._profile(m) for m in rcfg.models]
        predictor = self._predictor = self._predictor or Predictor.default()
        requests = [ChatRequest(_as_messages(p)) for p in prompts]
        for request in requests:
            validate_request(request)
        predictions = [predictor.predict(r.messages, profiles) for r in requests]
        target = min(1.0, max(0.0, quality_target_for_strong_share(predictions, weak, strong_share)))
        routes = dict(self.config.routes)
        routes[name] = rcfg.model_copy(update={"quality_target": target, "cost_weight": None})
        self.config = self.config.model_copy(update={"routes": routes})
        return target

    # ------------------------------------------------------------------ learning from your traffic
    def record_feedback(self, reply: Reply, score: float) -> None:
        """Tell the router how good *reply* was: *score* in [0, 1] (1 good, 0 bad), from a user's
        thumbs, a test that passed, a grader, a cascade's verdict...

        Only replies of predictive routes can teach anything (they carry the prompt latent the
        predictor saw); others raise ``InvalidRequestError``. The label is kept in memory for the
        model that answered, at most :attr:`feedback_limit` per model (oldest dropped). No I/O and
        no fitting here: :meth:`refit_models` learns from what was recorded.
        """
        decision = reply.route.prediction
        latent = tuple(getattr(decision, "latent", ()) or ())
        if not latent:
            raise InvalidRequestError(
                f"reply of route {reply.route.route!r} ({reply.route.strategy}) carries no prediction: "
                "only replies of predictive routes with a working predictor can be used as feedback"
            )
        try:
            value = float(score)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"feedback score must be a number in [0, 1], got {score!r}") from None
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise InvalidRequestError(f"feedback score must be within [0, 1], got {score!r}")
        if reply.model not in self.config.models:
            raise InvalidRequestError(f"reply's model {reply.model!r} is not in this router's config")
        store = self._feedback.get(reply.model)
        if store is None:
            from collections import deque

            store = self._feedback[reply.model] = deque(maxlen=self.feedback_limit)
        store.append((latent, value))

    def feedback_counts(self) -> dict[str, int]:
        """Feedback labels held per model (see :meth:`record_feedback`)."""
        return {m: len(d) for m, d in self._feedback.items()}

    async def refit_models(self, *, min_labels: int = 30, l2: float = 1.0) -> dict[str, Any]:
        """Refit the predictor vector of every model with at least *min_labels* feedback labels.

        Each fit starts from the model's current vector (pool, ``like``, tier, or an earlier fit)
        as its prior, with the network frozen (:func:`llmroute.calibration.fit_model_vector`;
        *l2* pulls toward the prior, so a few labels move it little). The fits run in a worker
        thread. Later predictions use the new vectors, and ``router.config`` holds them
        (``models.<name>.predictor.vector``: save it with ``router.config.model_dump(mode="json")``).
        The labels are kept, so the next refit learns from them again plus what came since.
        Returns ``{model: ModelRefit}`` for the models refitted.

        Feedback only comes from the model that answered, which the router picked because it
        looked good enough: a cheap model is mostly labelled on prompts the predictor found easy.
        The fit conditions on the prompt latent, which is what makes that usable, but it cannot
        learn about prompts a model never gets.
        """
        import anyio.to_thread

        from .calibration import ModelRefit, fit_model_vector
        from .predictor import ModelProfile, Predictor

        if min_labels < 1:
            raise InvalidRequestError(f"min_labels must be at least 1, got {min_labels}")
        if l2 <= 0:
            raise InvalidRequestError(f"l2 must be positive, got {l2}")
        predictor = self._predictor = self._predictor or Predictor.default()
        out: dict[str, Any] = {}
        for model, store in sorted(self._feedback.items()):
            if len(store) < min_labels:
                continue
            latents = [z for z, _ in store]
            scores = [y for _, y in store]
            old = self._profile(model)
            prior, _known, source = predictor.resolve(old)
            vector = await anyio.to_thread.run_sync(
                lambda latents=latents, scores=scores, prior=prior: fit_model_vector(
                    latents, scores, prior=prior, l2=l2
                )
            )
            self._profiles[model] = ModelProfile(model, like=old.like, tier=old.tier, vector=tuple(vector))
            models = dict(self.config.models)
            entry = dict(models[model].predictor or {})
            entry["vector"] = list(vector)
            models[model] = models[model].model_copy(update={"predictor": entry})
            self.config = self.config.model_copy(update={"models": models})
            out[model] = ModelRefit(model, len(scores), sum(scores) / len(scores), source, tuple(prior), tuple(vector))
        return out

    # ------------------------------------------------------------------ lifecycle
    async def warmup(self) -> None:
        """Load the tokenizers (and the predictor, if a route is predictive) in a worker thread.

        The first call does this by itself; call it at start-up to keep that one-off cost
        (about half a second per tokenizer) off the first request. Concurrent callers share one
        load. It runs inside the calling call's deadline: a caller whose deadline passes stops
        waiting (the load goes on in its thread and the next caller finds it done). The loading
        runs in a worker thread, but tiktoken builds each encoder holding the GIL (about 70 ms for
        ``o200k_base`` on an idle machine, more on a busy one), so the event loop stalls that long
        once: warm up before serving traffic.
        """
        if self._warm:
            return
        import anyio.to_thread

        encodings = {m.tokenizer for m in self.config.models.values()}
        predictive = any(r.strategy == "predictive" for r in self.config.routes.values())

        def load() -> None:
            from .tokens import get_encoding

            for name in sorted(encodings):
                get_encoding(name)
            if predictive:
                from .predictor import Predictor

                if self._predictor is None:
                    self._predictor = Predictor.default()
                self._predictor.try_predict("warm up", [])

        async with self._warm_lock:
            if not self._warm:
                await anyio.to_thread.run_sync(load, abandon_on_cancel=True)
                self._warm = True

    # ------------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        """Close the HTTP client and the store (those the router created)."""
        if self._owns_client:
            await self._client.aclose()
        if self._owns_store and self.store is not None:
            await self.store.aclose()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        cfg = getattr(self, "config", None)  # total: also for a half-built Router
        if not isinstance(cfg, Config):
            return "Router(<not configured>)"
        return (
            f"Router(providers={sorted(cfg.providers)}, models={sorted(cfg.models)}, "
            f"routes={sorted(cfg.routes)}, default_route={getattr(self, '_default_route', None)!r})"
        )
