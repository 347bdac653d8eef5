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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from . import _clock
from ._clock import Clock, Sleep
from .config import Config, DeploymentConfig, ModelConfig, RouteConfig, TimeoutConfig, load_config
from .costs import Price, estimate_cost_usd, lookup_price
from .errors import ContextWindowExceededError, InvalidRequestError, UnknownRouteError
from .execute import Executor, Plan, PlannedCandidate, ReplyStream
from .hooks import Hooks
from .policy.budget import Budget
from .policy.ordering import order_candidates
from .providers import get_adapter
from .providers.base import Adapter, Target
from .tokens import count_message_tokens
from .types import Candidate, ChatRequest, Message, Reply, RouteTrace

__all__ = ["Router"]

logger = logging.getLogger("llmroute")

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


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
    if isinstance(messages, str):
        return ({"role": "user", "content": messages},)
    if not isinstance(messages, Sequence) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidRequestError(f"messages[{i}] must be a mapping, got {type(m).__name__}")
        role = m.get("role")
        if role not in _ROLES:
            raise InvalidRequestError(f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}")
    return messages


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
    observers), ``budget`` (reserve/settle spending) and ``predictor`` (predictive routes).
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
    ) -> None:
        self.config: Config = load_config(config, environ=environ)
        cfg = self.config
        self._owns_client = http_client is None
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
            self._client, clock=self._clock, sleep=sleep or _clock.sleep, hooks=hooks, budget=budget
        )
        self._predictor = predictor
        self._cascade_runner: Any = None
        self._warm = False
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
        **request: Any,
    ) -> Plan:
        """Decide how a call would be routed, without sending anything (also a dry run).

        For a cascade route the plan lists every tier's candidates in tier order (the cascade
        itself runs each tier as its own plan and judges its answer: ``llmroute.cascade``).
        """
        name, rcfg = self._route(route, model)
        if rcfg.strategy == "cascade":
            return self._cascade_dry_run(name, rcfg, messages, deadline_s, request)
        return self._plan(name, rcfg, messages, deadline_s, request)

    def _plan(
        self,
        name: str,
        rcfg: RouteConfig,
        messages: Sequence[Message] | str,
        deadline_s: float | None,
        request: Mapping[str, Any],
    ) -> Plan:
        """The plan of route *rcfg* (any strategy but cascade) for one request."""
        req = ChatRequest(messages=_as_messages(messages), **request)
        tokens_by_enc: dict[str, int] = {}
        out_tokens = req.max_tokens or rcfg.est_output_tokens
        cache_write: bool | None = None  # looked up only for a price whose cache writes cost more
        deps: list[_Deployment] = []
        cands: list[Candidate] = []
        for mname in rcfg.models:
            model_deps = self._deployments[mname]
            enc = model_deps[0].tokenizer
            if enc not in tokens_by_enc:
                tokens_by_enc[enc] = count_message_tokens(req.messages, enc, tools=req.tools)
            n_in = tokens_by_enc[enc]
            for d in model_deps:
                n_out = min(out_tokens, d.max_output_tokens) if d.max_output_tokens else out_tokens
                deps.append(d)
                price = d.price
                if price.cache_write is not None and price.cache_write > price.input and cache_write is None:
                    cache_write = _asks_for_cache_writes(req)
                est = estimate_cost_usd(n_in, n_out, price, cache_write=bool(cache_write))
                cands.append(Candidate(mname, d.name, d.target.provider, d.target.model, est))
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
            planned.append(PlannedCandidate(c, d.adapter, d.target, d.price, d.timeout, retry, d.attempt_s))
            kept.append(c)
        if skipped:
            reason += f"; {len(skipped)} skipped for context window"
        trace = RouteTrace(name, rcfg.strategy, kept, est_input_tokens=est_in, prediction=prediction, reason=reason)
        return Plan(name, req, planned, trace, deadline_s or rcfg.deadline_s, est_in, skipped)

    def _cascade_dry_run(
        self,
        name: str,
        rcfg: RouteConfig,
        messages: Sequence[Message] | str,
        deadline_s: float | None,
        request: Mapping[str, Any],
    ) -> Plan:
        from .policy.cascade import tiers_of

        plans = [self._plan(name, t.route, messages, deadline_s, request) for t in tiers_of(rcfg)]
        first = plans[0]
        cands = [c for p in plans for c in p.trace.candidates]
        tiers = " then ".join(f"tier {i + 1} ({p.trace.reason})" for i, p in enumerate(plans))
        trace = RouteTrace(name, "cascade", cands, est_input_tokens=first.est_input_tokens, reason=f"cascade: {tiers}")
        return Plan(
            name,
            first.request,
            [pc for p in plans for pc in p.candidates],
            trace,
            deadline_s or rcfg.deadline_s,
            first.est_input_tokens,
            [e for p in plans for e in p.skipped],
        )

    def _cascade(self) -> Any:
        """The cascade runner (built once): tiers planned by this router, judged, labelled."""
        runner = self._cascade_runner
        if runner is None:
            from .cascade import Cascade

            def plan_tier(name: str, tier: Any, request: Mapping[str, Any], deadline_s: float | None) -> Plan:
                fields = {k: v for k, v in request.items() if k != "messages"}
                return self._plan(name, tier.route, request["messages"], deadline_s, fields)

            runner = self._cascade_runner = Cascade(
                self._executor,
                plan=plan_tier,
                clock=self._clock,
                predict=self._predict_quality,
                feedback=self.record_feedback,
                prepare=self._ensure_warm,
            )
        return runner

    def _predict_quality(
        self, request: Mapping[str, Any], models: Sequence[str]
    ) -> tuple[Mapping[str, float], Any] | None:
        """The predictor's quality per model for a request (``None`` when it is unavailable)."""
        from .predictor import Predictor

        if self._predictor is None:
            self._predictor = Predictor.default()
        messages = _as_messages(request["messages"])
        prediction = self._predictor.try_predict(
            messages, [self._profile(m) for m in models], tools=request.get("tools")
        )
        return None if prediction is None else (dict(prediction.quality), prediction)

    async def _ensure_warm(self) -> None:
        if not self._warm:
            await self.warmup()

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
    ) -> Reply:
        """Send a chat request along a route (or to one model) and return the reply.

        Raises :class:`~llmroute.errors.AllAttemptsFailedError` when every candidate failed,
        :class:`~llmroute.errors.DeadlineExceededError` when *deadline_s* (or the route's) ran
        out, and :class:`~llmroute.errors.UnknownRouteError` / ``InvalidRequestError`` for bad
        arguments.
        """
        if not self._warm:
            await self.warmup()
        request = dict(
            tools=tools,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            response_format=response_format,
            extra_body=extra_body,
        )
        name, rcfg = self._route(route, model)
        if rcfg.strategy == "cascade":
            return await self._cascade().complete(name, rcfg, {"messages": messages, **request}, deadline_s)
        plan = self.plan(messages, route=route, model=model, deadline_s=deadline_s, **request)
        return await self._executor.complete(plan)

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
    ) -> ReplyStream:
        """Stream a reply: ``async for chunk in router.stream(...)``; then ``stream.reply``.

        Falls back to the next candidate only before the first token, so text is never
        duplicated; an error after the first token ends the stream with that error.
        """
        name, rcfg = self._route(route, model)  # bad arguments fail here, not at the first chunk
        _as_messages(messages)
        request = dict(
            tools=tools,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            response_format=response_format,
            extra_body=extra_body,
        )
        if rcfg.strategy == "cascade":
            return self._cascade().stream(name, rcfg, {"messages": messages, **request}, deadline_s)

        async def make_plan() -> Plan:
            if not self._warm:
                await self.warmup()
            return self.plan(messages, route=route, model=model, deadline_s=deadline_s, **request)

        return self._executor.stream(make_plan)

    # ------------------------------------------------------------------ calibration
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
        from .calibration import quality_target_for_strong_share
        from .predictor import Predictor

        name, rcfg = self._route(route, None)
        if rcfg.strategy == "cascade":
            return self._calibrate_cascade(name, rcfg, prompts, strong_share, answers)
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
        predictions = [predictor.predict(_as_messages(p), profiles) for p in prompts]
        target = min(1.0, max(0.0, quality_target_for_strong_share(predictions, weak, strong_share)))
        routes = dict(self.config.routes)
        routes[name] = rcfg.model_copy(update={"quality_target": target, "cost_weight": None})
        self.config = self.config.model_copy(update={"routes": routes})
        return target

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
        (about half a second per tokenizer) off the first request. Never blocks the event loop.
        """
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

        await anyio.to_thread.run_sync(load)
        self._warm = True

    # ------------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        """Close the HTTP client (if the router created it)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"Router(providers={sorted(cfg.providers)}, models={sorted(cfg.models)}, "
            f"routes={sorted(cfg.routes)}, default_route={self._default_route!r})"
        )
