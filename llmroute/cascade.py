"""Running cascade routes: a cheap tier answers first, its answer's checks decide whether to escalate.

::

    "routes": {"smart": {"strategy": "cascade", "models": ["small", "large"],
                         "checks": ["finished", "not_refusal", "json", "tool_args", "math"], "accept": 0.7}}
    reply = await router.complete(route="smart", messages=[...])
    reply.route.cascade   # per tier: outcome, why, the checks' verdict, cost

:class:`Cascade` runs each tier as an ordinary sub-plan through the executor's public entry
points (:meth:`Executor.complete` / :meth:`Executor.stream`), so retries, fallback among a tier's
deployments, budgets, hooks and per-attempt traces behave as on any route. Between tiers it
judges the answer (``llmroute.checks``, awaiting async user validators) and asks the pure
policy (``llmroute.policy.cascade``) to keep or escalate it; the predictor may skip tiers it
expects to fail (``skip_below``).

Costs: ``reply.cost_usd`` is the sum of every judged tier's answering attempt (the cheap answer
you paid for and threw away included); ``reply.total_cost_usd`` adds failed attempts.
Budgets: while a tier that may escalate runs, the router's budget also holds the worst case of
one attempt of every later tier (those the predictor does not skip), so a cheap answer is never
bought that the budget could not escalate from; the holds are released when the tier is judged,
just before the next tier reserves its own. A tier whose escalation path the budget refuses is
skipped (``skipped``, with the budget's refusal as the reason) and the next tier is tried.
Deadline: the route's (or call's) ``deadline_s`` covers every tier and check. If every tier
fails, :class:`~llmroute.errors.AllAttemptsFailedError` carries all tiers' errors. Each judged
verdict is reported to the router's feedback seam (``feedback: false`` turns it off).

Streams (``route.stream``):

* ``validate`` (default): every tier before the last runs unstreamed and is judged; an accepted
  answer is sent as one chunk, so nothing is ever taken back. Only when the last tier answers is
  it streamed live (its checks run after the last chunk: it is kept whatever they say). Latency
  cost: the time to first token is the cheap tier's whole generation plus the checks (tens of
  microseconds), plus the strong tier's own time to first token when it escalates.
* ``strong_only``: the last tier alone is streamed, the cheaper tiers are skipped (trace says
  so): normal streaming latency, no saving.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from random import getrandbits
from typing import Any

import anyio

from ._clock import Clock
from .checks import Answer, judge_async, resolve_checks
from .config import RouteConfig
from .errors import AllAttemptsFailedError, BudgetExceededError, DeadlineExceededError, LLMRouteError
from .execute import Executor, Plan, ReplyStream
from .hooks import dispatch_call_finished, dispatch_call_started
from .policy.budget import Reservation, Spend
from .policy.cascade import Tier, TierTrace, decide, skip_reason, summary, tiers_of
from .types import Candidate, ChatRequest, Chunk, Reply, RouteTrace, ToolCallDelta

__all__ = ["Cascade", "CascadeStream"]

logger = logging.getLogger("llmroute")

#: Builds the executor plan of one tier: ``(route name, tier, request, deadline_s, scope) -> Plan``
#: (*scope* is passed through from the call: who it is for, for budgets).
PlanTier = Callable[[str, Tier, ChatRequest, "float | None", Any], Plan]
#: The predictor's quality per model for a request, or ``None``: ``(request, models) -> (quality, prediction)``.
Predict = Callable[[ChatRequest, Sequence[str]], "tuple[Mapping[str, float], Any] | None"]
#: The feedback seam: ``(reply, score)``.
Feedback = Callable[[Reply, float], None]
#: The worst case of one attempt of a tier, and what it spends on: ``(route name, tier, request,
#: scope) -> (usd, spend)``: what the budget holds for a tier the call may escalate to.
Escalation = Callable[[str, Tier, ChatRequest, Any], "tuple[float, Spend]"]


@dataclass(slots=True)
class _Run:
    """The state of one cascade call: traces, attempts, errors, spend."""

    name: str
    route: RouteConfig
    t0: float
    deadline_s: float | None = None
    scope: Any = None
    #: The cascade call's id (hooks): each tier's own call carries it as ``parent_call_id``.
    call_id: int = 0
    traces: list[TierTrace] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    attempts: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    answered_cost: float = 0.0
    est_input_tokens: int = 0
    prediction: Any = None
    quality: Mapping[str, float] | None = None

    def absorb(self, plan: Plan, started: float) -> None:
        """Take a finished tier plan's candidates and attempts into the call's trace."""
        if not self.candidates:
            self.est_input_tokens = plan.est_input_tokens
        self.candidates.extend(plan.trace.candidates)
        for attempt in plan.trace.attempts:
            attempt.started_s += started  # relative to the cascade's start
            self.attempts.append(attempt)

    def predicted(self, tier: Tier) -> float | None:
        if not self.quality:
            return None
        known = [self.quality[m] for m in tier.models if m in self.quality]
        return max(known) if known else None

    def trace(self, duration_s: float) -> RouteTrace:
        return RouteTrace(
            self.name,
            "cascade",
            list(self.candidates),
            list(self.attempts),
            est_input_tokens=self.est_input_tokens,
            prediction=self.prediction,
            reason=summary(self.traces),
            duration_s=duration_s,
            cascade=list(self.traces),
            call_id=self.call_id,
        )


async def _never_planned() -> Plan:  # pragma: no cover - a CascadeStream plans its own tiers
    raise AssertionError("a cascade stream is never planned as one route")


def _first_chunk(reply: Reply) -> Chunk:
    """A whole buffered reply as one stream chunk (text, tool calls, finish reason and usage)."""
    calls = tuple(
        ToolCallDelta(i, c.id, c.name, c.arguments, c.thought_signature) for i, c in enumerate(reply.tool_calls)
    )
    return Chunk(reply.text or "", calls, reply.finish_reason, reply.usage, reply.provider_model, reply.response_id)


class Cascade:
    """Runs cascade routes over an :class:`~llmroute.execute.Executor` (see the module docstring)."""

    def __init__(
        self,
        executor: Executor,
        *,
        plan: PlanTier,
        clock: Clock,
        predict: Predict | None = None,
        feedback: Feedback | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        escalation: Escalation | None = None,
    ) -> None:
        self._prepare = prepare
        self._escalation = escalation
        self._executor = executor
        self._plan = plan
        self._clock = clock
        self._predict = predict
        self._feedback = feedback

    # ------------------------------------------------------------------ shared walk over the tiers
    async def _start(
        self, name: str, route: RouteConfig, request: ChatRequest, deadline_s: float | None, scope: Any
    ) -> tuple[_Run, list[Tier]]:
        if self._prepare is not None:
            await self._prepare()
        run = _Run(name, route, self._clock(), deadline_s, scope, getrandbits(63))
        tiers = tiers_of(route)
        if route.skip_below is not None and self._predict is not None:
            try:
                predicted = self._predict(request, list(dict.fromkeys(m for t in tiers for m in t.models)))
            except Exception as exc:  # the predictor must never fail a call
                logger.warning("cascade: predictor unavailable, no tier is skipped: %s", exc)
                predicted = None
            if predicted is not None:
                run.quality, run.prediction = predicted
        return run, tiers

    def _tier_plan(self, run: _Run, tier: Tier, request: ChatRequest, deadline_at: float | None) -> Plan:
        if run.route.logprobs and not tier.last and not request.logprobs:
            request = replace(request, logprobs=True)
        remaining = None if deadline_at is None else max(0.0, deadline_at - self._clock())
        plan = self._plan(run.name, tier, request, remaining, run.scope)
        plan.trace.parent_call_id = run.call_id  # hooks see the tier as a call inside the cascade's
        if plan.trace.prediction is None and run.prediction is not None:
            plan.trace.prediction = run.prediction  # so a verdict can be learned from (record_feedback)
        return plan

    async def _judge(self, run: _Run, tier: Tier, plan: Plan, reply: Reply, started: float) -> TierTrace:
        answer = Answer.of(reply, plan.request)
        verdict = await judge_async(answer, resolve_checks(tier.checks))
        outcome, why = decide(tier, verdict.score)
        trace = TierTrace(
            tier.index,
            tier.models,
            outcome,
            why,
            model=reply.model,
            verdict=verdict,
            cost_usd=plan.trace.cost_usd,
            started_s=started,
            duration_s=self._clock() - run.t0 - started,
            predicted_quality=run.predicted(tier),
            attempts=len(plan.trace.attempts),
        )
        run.traces.append(trace)
        run.answered_cost += reply.cost_usd
        if run.route.feedback and self._feedback is not None:
            self._label(reply, verdict.score)
        return trace

    def _label(self, reply: Reply, score: float) -> None:
        try:
            self._feedback(reply, score)  # type: ignore[misc]
        except LLMRouteError as exc:  # e.g. no prediction to learn from: the label is dropped
            logger.debug("cascade verdict not recorded as feedback: %s", exc)

    def _tier_error(
        self, run: _Run, tier: Tier, plan: Plan, exc: LLMRouteError, started: float
    ) -> LLMRouteError | None:
        """Record a tier that raised; the error the whole call raises (``None``: the next tier answers)."""
        run.absorb(plan, started)
        if isinstance(exc, DeadlineExceededError):
            run.errors.extend(exc.errors)
            return DeadlineExceededError(run.name, run.deadline_s or 0.0, run.errors)
        self._failed(run, tier, plan, exc, started)
        if not tier.last:
            return None
        if run.errors and all(isinstance(e, BudgetExceededError) for e in run.errors):
            return run.errors[0]  # type: ignore[return-value]  # only budgets refused: say so, as a route does
        return AllAttemptsFailedError(run.name, run.errors)

    def _failed(self, run: _Run, tier: Tier, plan: Plan, exc: LLMRouteError, started: float) -> None:
        run.errors.extend(getattr(exc, "errors", None) or [exc])
        last = exc.last if isinstance(exc, AllAttemptsFailedError) and exc.last is not None else exc
        run.traces.append(
            TierTrace(
                tier.index,
                tier.models,
                "failed",
                f"{type(last).__name__}: {last}"[:300],
                cost_usd=plan.trace.cost_usd,
                started_s=started,
                duration_s=self._clock() - run.t0 - started,
                predicted_quality=run.predicted(tier),
                attempts=len(plan.trace.attempts),
            )
        )

    async def _walk(
        self,
        run: _Run,
        tiers: list[Tier],
        request: ChatRequest,
        deadline_at: float | None,
        *,
        stream_last: bool,
    ) -> Reply | Plan:
        """Run the tiers until one is accepted (its reply), or, with *stream_last*, up to the last
        tier (its plan, to stream)."""
        for tier in tiers:
            started = self._clock() - run.t0
            why = skip_reason(tier, run.quality, run.route.skip_below)
            if why is not None:
                pq = run.predicted(tier)
                run.traces.append(
                    TierTrace(tier.index, tier.models, "skipped", why, started_s=started, predicted_quality=pq)
                )
                continue
            plan = self._tier_plan(run, tier, request, deadline_at)
            if tier.last and stream_last:
                return plan
            try:
                holds = await self._hold_path(run, tiers[tier.index + 1 :], request)
            except BudgetExceededError as exc:
                run.traces.append(
                    TierTrace(
                        tier.index,
                        tier.models,
                        "skipped",
                        f"the budget cannot cover escalating from it: {exc}"[:300],
                        started_s=started,
                        predicted_quality=run.predicted(tier),
                    )
                )
                continue
            try:
                reply = await self._executor.complete(plan)
            except LLMRouteError as exc:
                error = self._tier_error(run, tier, plan, exc, started)
                if error is not None:
                    raise error from exc
                continue
            finally:
                await self._release(holds)
            run.absorb(plan, started)
            trace = await self._judge(run, tier, plan, reply, started)
            if trace.outcome == "accepted":
                return reply
        raise AssertionError("unreachable: the last tier is never skipped")  # pragma: no cover

    async def _hold_path(self, run: _Run, later: Sequence[Tier], request: ChatRequest) -> list[Reservation]:
        """Hold, on the router's budget, the worst case of one attempt of each later tier the call
        may escalate to (all or none: BudgetExceededError when one is refused)."""
        budget = self._executor.budget
        if budget is None or self._escalation is None:
            return []
        holds: list[Reservation] = []
        try:
            for tier in later:
                if skip_reason(tier, run.quality, run.route.skip_below) is not None:
                    continue
                usd, spend = self._escalation(run.name, tier, request, run.scope)
                holds.append(await budget.reserve(usd, spend))
        except BaseException:
            await self._release(holds)
            raise
        return holds

    async def _release(self, holds: list[Reservation]) -> None:
        budget = self._executor.budget
        if budget is None or not holds:
            return
        with anyio.CancelScope(shield=True):
            for hold in holds:
                await budget.settle(hold, 0.0)

    def _final(self, run: _Run, reply: Reply) -> Reply:
        trace = run.trace(self._clock() - run.t0)
        return replace(reply, cost_usd=run.answered_cost, route=trace)

    def _call_started(self, run: _Run, request: ChatRequest, stream: bool) -> None:
        """Tell the hooks the cascade call started (each tier then reports a call of its own,
        whose trace's ``parent_call_id`` is this call's id)."""
        hooks = self._executor.hooks
        if hooks:
            dispatch_call_started(hooks, run.trace(self._clock() - run.t0), request, stream)

    def _call_finished(self, run: _Run, reply: Reply | None, error: BaseException | None) -> None:
        hooks = self._executor.hooks
        if hooks:
            trace = reply.route if reply is not None else run.trace(self._clock() - run.t0)
            dispatch_call_finished(hooks, trace, reply, error)

    # ------------------------------------------------------------------ complete
    async def complete(
        self, name: str, route: RouteConfig, request: ChatRequest, deadline_s: float | None = None, scope: Any = None
    ) -> Reply:
        """Run the cascade *route* for *request* (checked already) within *deadline_s* and return the
        accepted reply, its trace covering every tier. *scope* goes to every tier's plan."""
        deadline = deadline_s
        run, tiers = await self._start(name, route, request, deadline, scope)
        self._call_started(run, request, False)
        final: Reply | None = None
        error: BaseException | None = None
        try:
            if deadline is None:
                reply = await self._walk(run, tiers, request, None, stream_last=False)
                assert isinstance(reply, Reply)
                final = self._final(run, reply)
                return final
            with anyio.move_on_after(deadline) as cancel:
                reply = await self._walk(run, tiers, request, run.t0 + deadline, stream_last=False)
                assert isinstance(reply, Reply)
                final = self._final(run, reply)
                return final
            assert cancel.cancelled_caught
            raise DeadlineExceededError(name, deadline, run.errors)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._call_finished(run, final, error)

    # ------------------------------------------------------------------ stream
    def stream(
        self, name: str, route: RouteConfig, request: ChatRequest, deadline_s: float | None = None, scope: Any = None
    ) -> CascadeStream:
        """Stream the cascade *route* (see the module docstring for the two modes)."""
        return CascadeStream(self, name, route, request, deadline_s, scope)


class CascadeStream(ReplyStream):
    """A streamed cascade reply: ``async for chunk in stream``; afterwards ``stream.reply``.

    A :class:`~llmroute.execute.ReplyStream` (same use: ``text()``, ``aclose()``, ``async with``)
    whose chunks come from the cascade. Text is only ever sent for the answer the cascade keeps.
    """

    def __init__(
        self,
        cascade: Cascade,
        name: str,
        route: RouteConfig,
        request: ChatRequest,
        deadline_s: float | None,
        scope: Any = None,
    ) -> None:
        super().__init__(cascade._executor, _never_planned, deadline_s=deadline_s, route=name)
        self._run = _CascadeStreamRun(cascade, name, route, request, deadline_s, scope)  # type: ignore[assignment]

    @property
    def route(self) -> RouteTrace:
        """The trace so far (complete once the stream has ended)."""
        return self._run.trace()  # type: ignore[attr-defined]


class _CascadeStreamRun:
    """The state and chunk generator of one cascade stream (what ``ReplyStream`` drives)."""

    def __init__(
        self,
        cascade: Cascade,
        name: str,
        route: RouteConfig,
        request: ChatRequest,
        deadline_s: float | None,
        scope: Any,
    ) -> None:
        self.cascade = cascade
        self.route = name
        self.route_cfg = route
        self.request = request
        self.deadline_s = deadline_s
        self.scope = scope
        self.run: _Run | None = None
        self.reply: Reply | None = None
        self.finished = False

    def trace(self) -> RouteTrace:
        if self.reply is not None:
            return self.reply.route
        run = self.run
        if run is None:
            return RouteTrace(self.route, "cascade", [], cascade=[])
        return run.trace(self.cascade._clock() - run.t0)

    async def _prefix(self, run: _Run, tiers: list[Tier], deadline_at: float | None) -> Reply | Plan:
        """The buffered part: every tier before the last (validate), or none (strong_only)."""
        c = self.cascade
        if self.route_cfg.stream == "strong_only":
            for tier in tiers[:-1]:
                run.traces.append(TierTrace(tier.index, tier.models, "skipped", "stream: strong_only"))
            return c._tier_plan(run, tiers[-1], self.request, deadline_at)
        if deadline_at is None:
            return await c._walk(run, tiers, self.request, None, stream_last=True)
        with anyio.move_on_after(max(0.0, deadline_at - c._clock())) as scope:
            return await c._walk(run, tiers, self.request, deadline_at, stream_last=True)
        assert scope.cancelled_caught
        raise DeadlineExceededError(self.route, self.deadline_s or 0.0, run.errors)

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The cascade's chunks. One generator (no nested one), so a stream dropped without
        ``aclose`` is closed as a whole by the event loop's async-generator finalizer."""
        c = self.cascade
        try:
            run, tiers = await c._start(self.route, self.route_cfg, self.request, self.deadline_s, self.scope)
            self.run = run
            c._call_started(run, self.request, True)
            error: BaseException | None = None
            try:
                deadline_at = None if self.deadline_s is None else run.t0 + self.deadline_s
                head = await self._prefix(run, tiers, deadline_at)
                if isinstance(head, Reply):  # a cheaper tier was accepted: its whole answer, once
                    self.reply = c._final(run, head)
                    yield _first_chunk(head)
                    return
                plan, last = head, tiers[-1]
                started = c._clock() - run.t0
                inner = c._executor.stream(plan)
                try:
                    async with inner:
                        async for chunk in inner:
                            yield chunk
                except LLMRouteError as exc:
                    tier_error = c._tier_error(run, last, plan, exc, started)
                    raise (tier_error or exc) from exc
                run.absorb(plan, started)
                assert inner.reply is not None
                await c._judge(run, last, plan, inner.reply, started)
                self.reply = c._final(run, inner.reply)
            except BaseException as exc:
                error = exc
                raise
            finally:
                c._call_finished(run, self.reply, error)
        finally:
            self.finished = True
