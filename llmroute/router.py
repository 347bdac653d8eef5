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
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from . import _clock
from ._clock import Clock, Sleep
from ._http import wire_for
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
from .health import HealthSettings, HealthSnapshot, HealthTracker
from .hooks import Hooks
from .learning import Learning
from .policy.budget import Budget, Ledger, call_scope
from .policy.hedging import HedgeSettings
from .policy.ordering import order_candidates
from .policy.selection import (
    Option,
    SelectionDecision,
    SelectionSettings,
    circuit_filter,
    prefix_key,
    prefix_tokens,
    route_order,
    select,
)
from .providers import get_adapter
from .providers.base import Adapter, Target
from .ratelimit import RateLimiter
from .stores import Store
from .tokens import count_message_tokens
from .types import Candidate, Capabilities, ChatRequest, Message, Reply, RouteTrace

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
        req.logprobs,
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
    ``AsyncBaseTransport``), of either ``httpx`` or ``httpx2`` (the package is found once, here, so
    the router can share one connection pool with an SDK built on either), ``clock`` and ``sleep``
    (virtual time), ``hooks`` (attempt observers), ``budget`` (reserve/settle spending), ``store``
    (where the config's budgets and rate limits live; default: the one ``config.store`` names) and
    ``predictor`` (predictive routes) and ``rng`` (the random source of selection's exploration;
    seed it for repeatable choices).
    Close it with ``await router.aclose()`` or use ``async with``.
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any],
        *,
        http_client: Any = None,
        transport: Any = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        hooks: Sequence[Hooks] = (),
        budget: Budget | None = None,
        predictor: Any = None,
        environ: Mapping[str, str] | None = None,
        store: Store | None = None,
        rng: random.Random | None = None,
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
        wire = wire_for(http_client if http_client is not None else transport)
        self._client = http_client or wire.AsyncClient(
            transport=transport,
            limits=wire.Limits(
                max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_keepalive_connections
            ),
            timeout=wire.Timeout(cfg.timeout.read_s, connect=cfg.timeout.connect_s),
            follow_redirects=False,
        )
        self._clock = clock or _clock.monotonic
        #: Measures every attempt (registered as the first hook); read it with :meth:`health`.
        self._health = HealthTracker(HealthSettings.from_config(cfg.health), clock=self._clock)
        self._rng = rng or random.Random()
        self._executor = Executor(
            self._client,
            clock=self._clock,
            sleep=sleep or _clock.sleep,
            hooks=(self._health, *hooks),
            budget=budget,
            max_in_flight=cfg.max_connections,
            wire=wire,
            rate_limiter=limiter,
        )
        self._predictor = predictor
        self._cascade_runner: Any = None
        self._warm = False
        self._warm_lock = anyio.Lock()
        self._profiles: dict[str, Any] = {}
        self._learning = Learning(self)
        self._background: Any = None
        self._deployments: dict[str, list[_Deployment]] = {
            name: self._resolve_model(name, model) for name, model in cfg.models.items()
        }
        for deps in self._deployments.values():
            for d in deps:
                self._health.register(d.name, model=d.model, provider=d.target.provider)
        self._selection = {n: SelectionSettings.from_config(r.selection) for n, r in cfg.routes.items() if r.selection}
        self._hedges = {n: HedgeSettings(**r.hedge.model_dump()) for n, r in cfg.routes.items() if r.hedge}
        self._executor.health = self._health  # hedged routes race on its estimates
        #: What selection needs to know of each model's deployments, in configured order.
        self._options = {
            model: tuple(Option(d.name, d.target.provider, d.price, d.config.tags, d.max_output_tokens) for d in deps)
            for model, deps in self._deployments.items()
        }
        self._option_names = {model: tuple(o.deployment for o in opts) for model, opts in self._options.items()}
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

    def capabilities(self, *, route: str | None = None, model: str | None = None) -> Capabilities:
        """What every model of *route* (or the one *model*; default: the default route) can do.

        From each model's ``capabilities`` in the config; a capability holds for a route when it
        holds for all its models, since any of them may answer.
        """
        _, rcfg = self._route(route, model)
        models = [self.config.models[m] for m in rcfg.models]

        def schema(m: ModelConfig) -> bool:
            declared = m.capabilities.json_schema
            if declared is not None:
                return declared
            return all(self.config.providers[d.provider].api != "anthropic" for d in m.deployments)

        return Capabilities(
            tools=all(m.capabilities.tools for m in models),
            json_schema=all(schema(m) for m in models),
            vision=all(m.capabilities.vision for m in models),
            streaming=all(m.capabilities.streaming for m in models),
        )

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
        """Decide how a call would be routed, without sending anything (also a dry run).

        For a cascade route the plan lists every tier's candidates in tier order (the cascade
        itself runs each tier as its own plan and judges its answer: ``llmroute.cascade``).
        """
        name, rcfg = self._route(route, model)
        who, labels = call_scope(user, tags)
        req = ChatRequest(messages=_as_messages(messages), **request)
        validate_request(req)  # bad input fails here, before anything is planned or sent
        if rcfg.strategy == "cascade":
            return self._cascade_dry_run(name, rcfg, req, _call_deadline(deadline_s, rcfg), who, labels)
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
        deps, cands, selection, note = self._order_deployments(name, req, deps, tokens_by_enc, est_out, cands)
        reason += note
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
        trace = RouteTrace(
            name,
            rcfg.strategy,
            kept,
            est_input_tokens=est_in,
            prediction=prediction,
            reason=reason,
            selection=selection,
        )
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
            hedge=self._hedges.get(name),
        )

    def _cascade_dry_run(
        self, name: str, rcfg: RouteConfig, req: ChatRequest, deadline: float | None, who: str | None, labels: Any
    ) -> Plan:
        from .policy.cascade import tiers_of

        plans = [self._plan(name, t.route, req, deadline, who, labels) for t in tiers_of(rcfg)]
        first = plans[0]
        cands = [c for p in plans for c in p.trace.candidates]
        tiers = " then ".join(f"tier {i + 1} ({p.trace.reason})" for i, p in enumerate(plans))
        trace = RouteTrace(name, "cascade", cands, est_input_tokens=first.est_input_tokens, reason=f"cascade: {tiers}")
        return dataclasses.replace(
            first,
            candidates=[pc for p in plans for pc in p.candidates],
            trace=trace,
            skipped=[e for p in plans for e in p.skipped],
        )

    def _cascade(self) -> Any:
        """The cascade runner (built once): tiers planned by this router, judged, labelled."""
        runner = self._cascade_runner
        if runner is None:
            from .cascade import Cascade

            def plan_tier(name: str, tier: Any, req: ChatRequest, deadline: float | None, scope: Any) -> Plan:
                return self._plan(name, tier.route, req, deadline, *scope)

            def escalation(name: str, tier: Any, req: ChatRequest, scope: Any) -> tuple[float, Any]:
                # the tier's candidates as an ordered route: no predictor run, the same worst cases
                plan = self._plan(name, tier.route.model_copy(update={"strategy": "ordered"}), req, None, *scope)
                worst = max(plan.candidates, key=lambda pc: pc.candidate.max_cost_usd)
                return worst.candidate.max_cost_usd, plan.spend(worst)

            runner = self._cascade_runner = Cascade(
                self._executor,
                plan=plan_tier,
                clock=self._clock,
                predict=self._predict_quality,
                feedback=self.record_feedback,
                prepare=self._ensure_warm,
                escalation=escalation,
            )
        return runner

    def _predict_quality(self, req: ChatRequest, models: Sequence[str]) -> tuple[Mapping[str, float], Any] | None:
        """The predictor's quality per model for a request (``None`` when it is unavailable)."""
        profiles = self._learning.route_profiles(list(models))  # unknown models: a price or family prior
        prediction = self._get_predictor().try_predict(req.messages, profiles, tools=req.tools)
        return None if prediction is None else (dict(prediction.quality), prediction)

    async def _ensure_warm(self) -> None:
        if not self._warm:
            await self.warmup()

    def _order_deployments(
        self,
        route: str,
        req: ChatRequest,
        deps: list[_Deployment],
        tokens_by_enc: dict[str, int],
        out_tokens: int,
        cands: list[Candidate],
    ) -> tuple[list[_Deployment], list[Candidate], list[SelectionDecision] | None, str]:
        """Each model's deployments in the order its health suggests (``llmroute.policy.selection``);
        without a ``selection`` block, the configured order with open circuits skipped."""
        health = self._health
        settings = self._selection.get(route)
        if settings is None:
            if health.all_closed:
                return deps, cands, None, ""
            kept, dropped = circuit_filter([health.allows(d.name) for d in deps])
            if not dropped:
                return deps, cands, None, ""
            return [deps[i] for i in kept], [cands[i] for i in kept], None, f"; {dropped} skipped (circuit open)"
        key = prefix_key(req.messages) if settings.sticky else None
        sticky = None if key is None else health.served_recently(key, settings.cache_ttl_s)
        decisions: dict[str, SelectionDecision] = {}
        names = self._option_names
        live = settings.load_aware
        for d in deps:
            model = d.model
            if model in decisions:
                continue
            options = self._options[model]
            n_in = tokens_by_enc[d.tokenizer]
            states, in_flight = health.read(names[model], live=live)
            decisions[model] = select(
                model,
                options,
                states,
                settings,
                in_flight=in_flight,
                input_tokens=n_in,
                output_tokens=out_tokens,
                rng=self._rng,
                sticky=sticky,
                cached_tokens=prefix_tokens(req.messages, n_in) if sticky is not None else 0,
                prefix_key=key,
            )
        order, failed_open = route_order(list(decisions), decisions)  # models in order of first appearance
        pos = {d.name: i for i, d in enumerate(deps)}
        idx = [pos[n] for n in order]
        note = f"; deployments by {settings.label}" + (" (every circuit open: trying anyway)" if failed_open else "")
        return [deps[i] for i in idx], [cands[i] for i in idx], list(decisions.values()), note

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
        from .policy.predictive import PredictiveCandidate
        from .predictor import Predictor

        if self._predictor is None:
            self._predictor = Predictor.default()
        models = list(dict.fromkeys(c.model for c in cands))
        profiles = self._learning.route_profiles(models)  # unknown models: a price or family prior
        prediction = self._predictor.try_predict(req.messages, profiles, tools=req.tools)
        cheapest = {m: min(c.est_cost_usd for c in cands if c.model == m) for m in models}
        decision = self._learning.decide(  # the prior's choice, adjusted by what was learned (learning.py)
            prediction,
            [PredictiveCandidate(m, cheapest[m]) for m in models],
            quality_target=rcfg.quality_target,
            cost_weight=rcfg.cost_weight,
        )
        return list(decision.order), decision

    # ------------------------------------------------------------------ calls
    def _call(
        self,
        messages: Sequence[Message] | str,
        route: str | None,
        model: str | None,
        deadline_s: Any,
        user: Any,
        tags: Any,
        *request: Any,
    ) -> tuple[str, RouteConfig, ChatRequest, float | None, str | None, tuple[str, ...]]:
        """A call's arguments, checked: its route, request (*request* in ChatRequest's order after
        the messages), deadline and budget scope. Raises before anything is planned or sent."""
        name, rcfg = self._route(route, model)
        req = ChatRequest(_as_messages(messages), *request)
        validate_request(req)
        who, labels = call_scope(user, tags)
        return name, rcfg, req, _call_deadline(deadline_s, rcfg), who, labels

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
        name, rcfg, req, deadline, who, labels = self._call(
            messages, route, model, deadline_s, user, tags,
            tools, tool_choice, max_tokens, temperature, top_p, stop, response_format, extra_body,
        )  # fmt: skip
        if rcfg.strategy == "cascade":  # each tier judged, kept or escalated (llmroute/cascade.py)
            return await self._cascade().complete(name, rcfg, req, deadline, (who, labels))

        async def make_plan() -> Plan:
            if not self._warm:
                await self.warmup()
            return self._plan(name, rcfg, req, deadline, who, labels)

        reply = await self._executor.complete(make_plan, deadline_s=deadline, route=name, t0=t0)
        self._learning.observe(req, reply)  # labels from the reply itself (learning.py)
        return reply

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
        name, rcfg, req, deadline, who, labels = self._call(  # bad arguments fail here, not at the first chunk
            messages, route, model, deadline_s, user, tags,
            tools, tool_choice, max_tokens, temperature, top_p, stop, response_format, extra_body,
        )  # fmt: skip
        if rcfg.strategy == "cascade":
            return self._cascade().stream(name, rcfg, req, deadline, (who, labels))

        async def make_plan() -> Plan:
            if not self._warm:
                await self.warmup()
            return self._plan(name, rcfg, req, deadline, who, labels)

        return self._executor.stream(make_plan, deadline_s=deadline, route=name)

    # ------------------------------------------------------------------ learning (llmroute/learning.py)
    @property
    def learning(self) -> Learning:
        """What this router learns from its traffic: calibration, feedback, refits (``llmroute.learning``)."""
        return self._learning

    @property
    def feedback_limit(self) -> int:
        """Feedback labels kept per model by :meth:`record_feedback` (the oldest are dropped)."""
        return self._learning.feedback_limit

    @feedback_limit.setter
    def feedback_limit(self, value: int) -> None:
        self._learning.feedback_limit = value

    def calibrate(
        self,
        prompts: Sequence[Sequence[Message] | str],
        *,
        route: str,
        strong_share: float,
        answers: Sequence[str | Reply] | None = None,
    ) -> float:
        """Fit a predictive route to your own traffic: set its ``quality_target`` so that about
        *strong_share* of *prompts* (unlabelled; a sample of real requests) go past the route's
        cheapest model. Returns the target; ``router.config`` holds it from now on (save it with
        ``router.config.model_dump(mode="json")``). For labelled data and new model vectors, see
        ``llmroute calibrate``. Runs the predictor inline: call it at start-up, not per request.

        A cascade route needs *answers*: the first tier's recorded answers to *prompts* (texts or
        replies, in order). Its ``accept`` threshold is set so that about *strong_share* of them
        escalate, judged by the first tier's checks (sync checks only).
        """
        name, rcfg = self._route(route, None)
        if rcfg.strategy == "cascade":
            return self._calibrate_cascade(name, rcfg, prompts, strong_share, answers)
        return self._learning.calibrate(prompts, route=route, strong_share=strong_share)

    def _calibrate_cascade(
        self,
        name: str,
        rcfg: RouteConfig,
        prompts: Sequence[Sequence[Message] | str],
        strong_share: float,
        answers: Sequence[str | Reply] | None,
    ) -> float:
        """``calibrate`` for a cascade route: its ``accept`` from the first tier's recorded answers."""
        from .calibration import accept_for_escalation_share
        from .checks import Answer, judge, prompt_of
        from .policy.cascade import tiers_of

        if not 0.0 <= strong_share <= 1.0:
            raise InvalidRequestError(f"strong_share must be within [0, 1], got {strong_share}")
        if not prompts or answers is None or len(answers) != len(prompts):
            raise InvalidRequestError(
                "calibrating a cascade needs prompts and answers=, the first tier's answers to them, in order"
            )
        tier = tiers_of(rcfg)[0]
        verdicts = []
        for p, a in zip(prompts, answers):
            request = ChatRequest(messages=_as_messages(p))
            answer = Answer(a, prompt=prompt_of(request.messages)) if isinstance(a, str) else Answer.of(a, request)
            try:
                verdicts.append(judge(answer, tier.checks))
            except TypeError as exc:
                raise InvalidRequestError(f"calibrate runs the checks synchronously: {exc}") from None
        accept = accept_for_escalation_share(verdicts, strong_share)
        routes = dict(self.config.routes)
        routes[name] = rcfg.model_copy(update={"accept": accept})
        self.config = self.config.model_copy(update={"routes": routes})
        return accept

    def record_feedback(self, reply: Reply, score: float) -> None:
        """Tell the router how good *reply* was: *score* in [0, 1] (1 good, 0 bad), from a user's
        thumbs, a test that passed, a grader, a cascade's verdict...

        Only replies of predictive routes can teach anything (they carry the prompt latent the
        predictor saw); others raise ``InvalidRequestError``. The label is kept in memory for the
        model that answered, at most :attr:`feedback_limit` per model (oldest dropped). No I/O and
        no fitting here: :meth:`refit_models` learns from what was recorded.
        """
        self._learning.record_feedback(reply, score)

    def feedback_counts(self) -> dict[str, int]:
        """Feedback labels held per model (see :meth:`record_feedback`)."""
        return self._learning.feedback_counts()

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
        return await self._learning.refit_models(min_labels=min_labels, l2=l2)

    def _get_predictor(self) -> Any:
        """The predictor of predictive routes (the shipped one unless one was injected)."""
        if self._predictor is None:
            from .predictor import Predictor

            self._predictor = Predictor.default()
        return self._predictor

    # ------------------------------------------------------------------ health
    def health(self) -> HealthSnapshot:
        """Every deployment's live health: TTFT and decode-rate estimates (mean, p05/p50/p95, how
        many samples back them), error rates by kind, 429s, rate-limit headers, in-flight count and
        circuit state. A frozen snapshot; ``.as_dict()`` for dashboards."""
        return self._health.snapshot()

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
        routes = self.config.routes.values()
        cascade = any(r.strategy == "cascade" for r in routes)
        predictive = any(r.strategy == "predictive" for r in routes) or any(
            r.strategy == "cascade"
            and (r.skip_below is not None or any(t.strategy == "predictive" for t in r.tiers or ()))
            for r in routes
        )

        def load() -> None:
            from .tokens import get_encoding

            for name in sorted(encodings):
                get_encoding(name)
            if cascade:  # the confidence check's model: loaded here, not on the event loop
                from ._answer import FEATURE_NAMES
                from .quality import AnswerQuality

                AnswerQuality.default().try_score([0.0] * len(FEATURE_NAMES))
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
        if self.config.learning.judge is not None:  # the sampled judge grades in the background
            import anyio

            self._background = anyio.create_task_group()
            await self._background.__aenter__()
            self._background.start_soon(self._learning.run_judge)
        return self

    async def __aexit__(self, *exc: object) -> None:
        background, self._background = self._background, None
        if background is not None:
            background.cancel_scope.cancel()
            await background.__aexit__(None, None, None)
        await self.aclose()

    def __repr__(self) -> str:
        cfg = getattr(self, "config", None)  # total: also for a half-built Router
        if not isinstance(cfg, Config):
            return "Router(<not configured>)"
        return (
            f"Router(providers={sorted(cfg.providers)}, models={sorted(cfg.models)}, "
            f"routes={sorted(cfg.routes)}, default_route={getattr(self, '_default_route', None)!r})"
        )
