"""Hedged requests, carried out: race a slow attempt against a second deployment.

The decisions are pure and live in :mod:`llmroute.policy.hedging` (when, and on which deployment);
this module acts on them for the executor. One attempt is started; if it has not produced its
result (a whole reply, or for a stream its first token) after the hedge delay, a hedge is started
on another deployment of the plan, through the executor's own bookkeeping (rate limit, budget
reservation, hooks, trace). The first racer to produce its result wins; the others are cancelled
and closed, and end as ``cancelled`` attempts whose cost is settled like any attempt that was sent
(usage if it came, else the reserved worst case), so ``reply.total_cost_usd`` counts them. Only
the winner's result goes on, so no text is ever duplicated. A racer that fails leaves the others
racing; when every racer fails the primary's error is raised and the route goes on as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from .errors import BudgetExceededError
from .policy.hedging import HedgeCandidate, should_hedge

if TYPE_CHECKING:  # pragma: no cover
    from .execute import Executor, Plan, PlannedCandidate, _Progress
    from .policy.budget import Reservation
    from .types import Attempt

__all__ = ["LostRace", "race"]

T = TypeVar("T")

#: Starts one racer's work: ``(candidate, attempt, progress) -> result``.
Opener = Callable[["PlannedCandidate", "Attempt", "_Progress"], Awaitable[T]]
#: Releases a result a losing racer produced anyway (e.g. closes its open stream).
Discard = Callable[[T], Awaitable[None]]


class LostRace(Exception):
    """An attempt cancelled because a hedged twin produced its result first."""


class _Racer(Generic[T]):
    __slots__ = ("attempt", "done", "error", "ok", "pc", "progress", "reservation", "result", "scope")

    def __init__(self, pc: PlannedCandidate, attempt: Attempt, progress: _Progress, reservation: Any) -> None:
        self.pc = pc
        self.attempt = attempt
        self.progress = progress
        self.reservation = reservation
        self.scope: anyio.CancelScope | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.ok = False
        self.done = False


async def race(
    ex: Executor,
    plan: Plan,
    pc: PlannedCandidate,
    attempt: Attempt,
    progress: _Progress,
    reservation: Reservation | None,
    t0: float,
    deadline_at: float | None,
    errors: list[BaseException],
    opener: Opener[T],
    discard: Discard[T] | None = None,
) -> tuple[T, PlannedCandidate, Attempt, _Progress, Reservation | None]:
    """Run *opener* for the primary attempt, hedging it as ``plan.hedge`` says.

    Returns the winner's ``(result, candidate, attempt, progress, reservation)``; the caller ends
    the winner's attempt as usual. Every other attempt started here is ended here (a primary that
    failed or lost included). When every racer failed, the hedges' errors are added to *errors*,
    the primary's error is raised and the caller ends the primary, as for an attempt that was never
    hedged.
    """
    settings = plan.hedge
    health = ex.health
    if settings is None or not settings.enabled or health is None or len(plan.candidates) < 2:
        return await opener(pc, attempt, progress), pc, attempt, progress, reservation
    from .execute import _Progress, _unbilled  # the executor's own helpers (no import cycle at load)
    from .policy.hedging import hedge_delay

    primary = _Racer[T](pc, attempt, progress, reservation)
    racers: list[_Racer[T]] = [primary]
    changed = [anyio.Event()]

    async def run(r: _Racer[T]) -> None:
        with anyio.CancelScope() as scope:
            r.scope = scope
            try:
                r.result = await opener(r.pc, r.attempt, r.progress)
                r.ok = True
            except Exception as exc:  # a racer's failure; cancellation goes through
                r.error = exc
        r.done = True
        changed[0].set()

    delay = hedge_delay(health.get(pc.candidate.deployment), settings)
    position = next((i for i, c in enumerate(plan.candidates) if c is pc), 0)
    later = [c for c in plan.candidates[position + 1 :] if c.candidate.deployment != pc.candidate.deployment]
    started_at = ex.clock()
    hedges = 0
    closed = not later  # no more hedges will be started
    winner: _Racer[T] | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, primary)
            while True:
                winner = next((r for r in racers if r.ok), None)
                if winner is not None or all(r.done for r in racers):
                    break
                changed[0] = event = anyio.Event()
                if closed or primary.done or hedges >= settings.max_hedges:
                    await event.wait()
                    continue
                wait = delay - (ex.clock() - started_at)
                if wait > 0:
                    with anyio.move_on_after(wait):
                        await event.wait()
                    continue
                racing = {r.pc.candidate.deployment for r in racers}
                choices = [c for c in later if c.candidate.deployment not in racing]
                decision = should_hedge(
                    elapsed_s=ex.clock() - started_at,
                    primary=_candidate(pc, health),
                    candidates=[_candidate(c, health) for c in choices],
                    settings=settings,
                    hedges_started=hedges,
                    deadline_left_s=None if deadline_at is None else deadline_at - ex.clock(),
                )
                if not decision.hedge:
                    closed = True
                    attempt.hedge = f"not hedged: {decision.reason}"
                    continue
                target = next(c for c in choices if c.candidate.deployment == decision.deployment)
                hedges += 1
                try:  # a hedge takes the same road as any attempt: rate limit, budget, hooks, trace
                    begun = await ex._start(plan, target, 1, t0, deadline_at, [])
                except BudgetExceededError:  # a refuse route's budget: no hedge, not an error
                    begun = None
                if begun is None:
                    closed = True
                    attempt.hedge = f"not hedged: {decision.deployment} refused by its rate limit or budget"
                    continue
                hedge_attempt, hedge_reservation = begun
                hedge_attempt.hedge = decision.reason
                racer = _Racer[T](target, hedge_attempt, _Progress(), hedge_reservation)
                racers.append(racer)
                tg.start_soon(run, racer)
            for r in racers:
                if r is not winner and not r.done and r.scope is not None:
                    r.scope.cancel()
    except BaseException as exc:  # the call itself was cancelled (deadline, caller): end the hedges
        with anyio.CancelScope(shield=True):
            for r in racers[1:]:
                await ex._end(
                    r.attempt, r.pc, t0, r.reservation, exc, unbilled=_unbilled(exc, r.progress), progress=r.progress
                )
        raise
    for r in racers:
        if r is winner or (r is primary and winner is None):
            continue
        if r.ok:  # finished too, just after the winner: its result is not used
            if discard is not None:
                with anyio.CancelScope(shield=True):
                    await discard(r.result)
            usage = getattr(r.result, "usage", None)
            lost = LostRace(f"answered after {winner.pc.candidate.deployment} did; its answer was not used")  # type: ignore[union-attr]
            await ex._end(r.attempt, r.pc, t0, r.reservation, lost, usage, progress=r.progress)
        elif r.error is not None:
            unbilled = _unbilled(r.error, r.progress)
            await ex._end(r.attempt, r.pc, t0, r.reservation, r.error, unbilled=unbilled, progress=r.progress)
            if winner is None:
                errors.append(r.error)
        else:
            assert winner is not None
            lost = LostRace(f"cancelled: {winner.pc.candidate.deployment} answered first")
            await ex._end(
                r.attempt, r.pc, t0, r.reservation, lost, unbilled=_unbilled(None, r.progress), progress=r.progress
            )
    if winner is None:
        assert primary.error is not None
        raise primary.error
    return winner.result, winner.pc, winner.attempt, winner.progress, winner.reservation


def _candidate(pc: PlannedCandidate, health: Any) -> HedgeCandidate:
    c = pc.candidate
    return HedgeCandidate(c.deployment, c.provider, health.get(c.deployment), c.max_cost_usd)
