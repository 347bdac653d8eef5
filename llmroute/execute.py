"""Execution: how a planned call is carried out.

One attempt is one HTTP request to one deployment (:func:`send` or :class:`_AttemptStream`).
:class:`Executor` runs a :class:`Plan`: for each candidate in order, retries on the same
deployment while the error is retryable (tenacity strategies: Retry-After or exponential backoff
with jitter, bounded by the call's deadline), then falls back to the next candidate. A stream
falls back only before its first token, so no text is ever duplicated. Every attempt is
recorded in the trace and reported to the hooks; budgets are reserved before an attempt (its
worst case) and settled after it (what it may have been billed), cancellation included.

Admission: the executor never hands the HTTP client more concurrent requests than its
connection pool holds (:class:`Admission`). Requests beyond that wait here, where waiting is
cancellable and counts against the call's deadline, instead of in the pool, whose queue slows
down with its length and whose cancelled waiters can leave connections stuck.

Deadlines: the call's deadline covers everything from the call: warm-up, planning, waiting for
admission, every attempt and every retry wait.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from random import getrandbits
from typing import Any

import anyio
import httpx
from tenacity import AsyncRetrying, RetryCallState

from ._clock import Clock, Sleep, monotonic
from ._http import HTTPX, Wire
from ._log import attempt_fields, call_fields
from ._race import LostRace, race
from .config import RetryConfig
from .costs import Price, cost_usd
from .errors import (
    AllAttemptsFailedError,
    BudgetExceededError,
    DeadlineExceededError,
    LLMRouteError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
)
from .hooks import (
    Hooks,
    dispatch_attempt_finished,
    dispatch_attempt_started,
    dispatch_call_finished,
    dispatch_call_started,
)
from .policy.budget import Budget, Reservation, Spend, budget_wait
from .policy.fallback import retry_if_retryable, should_fall_back, stop_for, wait_retry_after_or_backoff
from .policy.hedging import HedgeSettings
from .providers.base import Adapter, Target
from .ratelimit import RateLimiter, parse_rate_limit_headers
from .types import Attempt, Candidate, ChatRequest, Chunk, Completion, Reply, RouteTrace, ToolCall, Usage

__all__ = ["Admission", "Executor", "Plan", "PlannedCandidate", "ReplyStream", "send"]

logger = logging.getLogger("llmroute.execute")


@dataclass(frozen=True, slots=True)
class PlannedCandidate:
    """A candidate with everything needed to call it."""

    candidate: Candidate
    adapter: Adapter
    target: Target
    price: Price
    #: httpx timeout extension: connect/read/write/pool seconds.
    timeout: dict[str, float | None]
    retry: RetryConfig
    #: Upper bound on one attempt, seconds.
    attempt_s: float | None = None
    #: The request as sent to this candidate (its ``max_tokens`` set); ``None``: the plan's request.
    request: ChatRequest | None = None


@dataclass(slots=True)
class Plan:
    """What to call, in order, under which deadline; the trace is filled in as it runs."""

    route: str
    request: ChatRequest
    candidates: Sequence[PlannedCandidate]
    trace: RouteTrace
    deadline_s: float | None = None
    #: Estimated input tokens, for usage estimates when a provider reports none.
    est_input_tokens: int = 0
    #: Errors found while planning (e.g. candidates skipped for their context window).
    skipped: list[BaseException] = field(default_factory=list)
    #: How the route hedges slow attempts (``llmroute.policy.hedging``); ``None``: it does not.
    hedge: HedgeSettings | None = None
    #: Who the call is for and its tags (budget scopes).
    user: str | None = None
    tags: tuple[str, ...] = ()
    #: What to do when a budget refuses a candidate: ``downgrade``, ``refuse`` or ``wait``.
    on_budget_exceeded: str = "downgrade"

    def spend(self, pc: PlannedCandidate) -> Spend:
        """What an attempt on *pc* spends on, for the budget (with what the call has spent so far)."""
        c = pc.candidate
        spent = sum(a.cost_usd for a in self.trace.attempts)
        return Spend(self.route, c.model, c.deployment, c.provider, self.user, self.tags, spent)


#: A plan, or an async factory that makes one (planning then runs inside the call's deadline).
PlanSource = Plan | Callable[[], Awaitable[Plan]]


class _Waiter:
    """One request waiting in :class:`Admission`'s line."""

    __slots__ = ("deadline_at", "event", "state")

    def __init__(self, deadline_at: float | None) -> None:
        self.event = anyio.Event()
        self.deadline_at = deadline_at
        #: ``_WAITING``, ``_ADMITTED`` (a place was handed to it) or ``_PASSED`` (passed over).
        self.state = _WAITING


_WAITING, _ADMITTED, _PASSED = 0, 1, 2


class Admission:
    """Lets at most *limit* requests into the HTTP client at once; the rest wait in line, cancellably.

    One per router, sized to the connection pool (``max_connections``). A streamed attempt holds
    its place until its response is closed. Taking a free place does not yield to the event loop
    (the request's own I/O does), so an uncontended call pays nothing here; a waiter that is
    cancelled leaves the line in O(1), or passes on a place handed to it just before.

    A freed place goes to the first waiter in line that can still use it: a waiter that gave its
    deadline (*deadline_at* in :meth:`acquire`, on *clock*) and has less time left than the
    fastest recent requests took (:attr:`fast_s`, measured from the hold times passed to
    :meth:`release`) is passed over. Its request could not have answered in time; sending it would
    only cost the event loop (and, once its deadline cut it off, the connection) work that delays
    every other call. A passed-over waiter stays cancellable and simply waits for its deadline,
    which its caller enforces (the executor's deadline scope), and fails there as before.
    """

    __slots__ = ("_holds", "_n_holds", "_used", "_waiters", "clock", "fast_s", "limit")

    #: Successful hold times kept for :attr:`fast_s`, and how many are needed before it is set.
    HOLDS_KEPT = 32
    HOLDS_NEEDED = 8

    def __init__(self, limit: int, clock: Clock = monotonic) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.clock = clock
        self._used = 0
        self._waiters: OrderedDict[object, _Waiter] = OrderedDict()
        self._holds: list[float] = []
        self._n_holds = 0
        #: Seconds the fastest recent successful requests held a place (about the 5th percentile
        #: of the last :attr:`HOLDS_KEPT`); ``None`` until :attr:`HOLDS_NEEDED` were seen. A waiter
        #: with less time left than this before its deadline is passed over.
        self.fast_s: float | None = None

    async def acquire(self, holder: object, deadline_at: float | None = None) -> None:
        """Wait for a place for *holder* (any object unique to one attempt).

        *deadline_at* (on :attr:`clock`) is when the caller's deadline cancels this wait; a waiter
        that gives it may be passed over when a place frees up too close to it (see the class).
        """
        if self._used < self.limit and not self._waiters:
            self._used += 1
            return
        waiter = _Waiter(deadline_at)
        self._waiters[holder] = waiter
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.state == _WAITING:
                del self._waiters[holder]
            elif waiter.state == _ADMITTED:  # a place was handed over: pass it on
                self._hand_over()
            raise

    def release(self, holder: object, held_s: float | None = None) -> None:
        """Give *holder*'s place back (to the first waiter that can use it, if any).

        *held_s*: how long a request that succeeded held the place (feeds :attr:`fast_s`); leave
        it ``None`` for one that failed or was cut off.
        """
        if held_s is not None:
            self._record(held_s)
        self._hand_over()

    def _record(self, held_s: float) -> None:
        holds = self._holds
        if len(holds) < self.HOLDS_KEPT:
            holds.append(held_s)
        else:
            holds[self._n_holds % self.HOLDS_KEPT] = held_s
        self._n_holds += 1
        if len(holds) >= self.HOLDS_NEEDED and self._n_holds % 4 == 0:
            self.fast_s = sorted(holds)[len(holds) // 20]

    def _hand_over(self) -> None:
        waiters = self._waiters
        fast = self.fast_s
        now: float | None = None
        while waiters:
            _, waiter = waiters.popitem(last=False)
            if fast is not None and waiter.deadline_at is not None:
                if now is None:
                    now = self.clock()
                if waiter.deadline_at - now < fast:
                    waiter.state = _PASSED  # it waits for its deadline, out of line
                    continue
            waiter.state = _ADMITTED
            waiter.event.set()  # the place goes to it: ``_used`` is unchanged
            return
        self._used -= 1

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished."""
        return self._used

    @property
    def waiting(self) -> int:
        """Requests waiting for a place."""
        return len(self._waiters)


class _Progress:
    """Whether an attempt's request may have reached the provider (so it may be billed)."""

    __slots__ = ("headers", "sent")

    def __init__(self) -> None:
        self.sent = False
        #: The response's headers, once it arrived (read for the provider's rate-limit state).
        self.headers: httpx.Headers | None = None


def _http_request(
    pc: PlannedCandidate, request: ChatRequest, wire: Wire, *, stream: bool, urls: dict[str, Any] | None = None
) -> Any:
    """The *wire* package's request for one attempt (an ``httpx.Request`` or an ``httpx2.Request``)."""
    spec = pc.adapter.build_request(pc.request or request, pc.target, stream=stream)
    url: Any = spec.url
    if urls is not None:  # parsing a URL costs more than the rest of the request: keep them
        parsed = urls.get(spec.url)
        if parsed is None:
            if len(urls) >= 4096:
                urls.clear()
            parsed = urls[spec.url] = wire.URL(spec.url)
        url = parsed
    return wire.Request(spec.method, url, headers=spec.headers, content=spec.body, extensions={"timeout": pc.timeout})


async def send(
    client: httpx.AsyncClient,
    pc: PlannedCandidate,
    request: ChatRequest,
    *,
    urls: dict[str, Any] | None = None,
    progress: _Progress | None = None,
    wire: Wire = HTTPX,
) -> Completion:
    """One non-streamed attempt: send, read, parse. Raises a ProviderError on failure.

    *urls* is an optional cache of parsed URLs, shared across calls; *wire* is the HTTP package of
    *client* (``httpx`` or ``httpx2``: see ``llmroute._http``).
    """
    http_request = _http_request(pc, request, wire, stream=False, urls=urls)
    if progress is not None:
        progress.sent = True
    try:
        response = await client.send(http_request)
    except wire.HTTPError as exc:
        if progress is not None and isinstance(exc, wire.not_sent):
            progress.sent = False
        raise wire.map_error(exc, pc.target.error_fields(), reading=True) from exc
    if progress is not None:
        progress.headers = response.headers
    if response.status_code >= 300:
        raise pc.adapter.parse_error(response.status_code, response.headers, response.content, pc.target)
    return pc.adapter.parse_response(response.content, pc.target)


class _AttemptStream:
    """One streamed attempt: the open response, its parser, and its admission place."""

    __slots__ = ("_admission", "_bytes", "_parser", "_pc", "_pending", "_progress", "_response", "_wire", "queued_s")

    def __init__(self, pc: PlannedCandidate, progress: _Progress, wire: Wire = HTTPX) -> None:
        self._pc = pc
        self._progress = progress
        self._wire = wire
        self._admission: Admission | None = None
        self._response: Any = None
        self._bytes: AsyncIterator[bytes] | None = None
        self._parser = pc.adapter.stream_parser(pc.target)
        self._pending: list[Chunk] = []
        #: Seconds :meth:`open` waited for an admission place.
        self.queued_s = 0.0

    async def open(
        self,
        client: httpx.AsyncClient,
        request: ChatRequest,
        urls: dict[str, Any] | None = None,
        admission: Admission | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Send the request; raise the provider's error for a non-2xx status.

        With *admission*, first wait for a place (timed with *clock* into :attr:`queued_s`); it is
        held until :meth:`aclose`.
        """
        wire = self._wire
        http_request = _http_request(self._pc, request, wire, stream=True, urls=urls)
        if admission is not None:
            queued_at = None if clock is None else clock()
            await admission.acquire(self._progress)
            self._admission = admission
            if queued_at is not None and clock is not None:
                self.queued_s = clock() - queued_at
        self._progress.sent = True
        try:
            self._response = await client.send(http_request, stream=True)
        except wire.HTTPError as exc:
            if isinstance(exc, wire.not_sent):
                self._progress.sent = False
            raise wire.map_error(exc, self._pc.target.error_fields(), reading=False) from exc
        self._progress.headers = self._response.headers
        if self._response.status_code >= 300:
            try:
                body = await self._response.aread()
            except wire.HTTPError as exc:
                raise wire.map_error(exc, self._pc.target.error_fields(), reading=True) from exc
            raise self._pc.adapter.parse_error(
                self._response.status_code, self._response.headers, body, self._pc.target
            )
        self._bytes = self._response.aiter_bytes()

    async def next_chunk(self, deadline_at: float | None, clock: Clock) -> Chunk | None:
        """The next chunk, or ``None`` at the end of the stream."""
        while not self._pending:
            assert self._bytes is not None
            if self._parser is None:
                return None
            try:
                if deadline_at is None:
                    data = await self._bytes.__anext__()
                else:
                    with anyio.fail_after(max(0.0, deadline_at - clock())):
                        data = await self._bytes.__anext__()
            except StopAsyncIteration:
                parser, self._parser = self._parser, None
                self._pending.extend(parser.close())
                break
            except self._wire.HTTPError as exc:
                raise self._wire.map_error(exc, self._pc.target.error_fields(), reading=True) from exc
            self._feed(data)
        return self._pending.pop(0) if self._pending else None

    def _feed(self, data: bytes) -> None:
        """Feed one read: the parser keeps chunks decoded before an error event (see StreamParser)."""
        assert self._parser is not None
        self._pending.extend(self._parser.feed(data))

    async def aclose(self) -> None:
        """Close the response and give the admission place back, even inside a cancelled scope."""
        try:
            if self._response is not None:
                response, self._response = self._response, None
                with anyio.CancelScope(shield=True):
                    await response.aclose()
        finally:
            if self._admission is not None:
                admission, self._admission = self._admission, None
                admission.release(self._progress)


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, LLMRouteError) else f"{type(exc).__name__}: {exc}"


def _unbilled(error: BaseException | None, progress: _Progress) -> bool:
    """Whether an attempt that ended with *error* and no usage surely cost nothing: its request never
    left, or the provider answered it with an error status (no generation)."""
    if not progress.sent:
        return True
    return isinstance(error, ProviderError) and error.status is not None


class Executor:
    """Runs plans: admission, retries, fallback, deadline, budget, trace and hooks."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        sleep: Sleep,
        hooks: Sequence[Hooks] = (),
        budget: Budget | None = None,
        rng: Callable[[], float] | None = None,
        max_in_flight: int | None = None,
        wire: Wire = HTTPX,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.client = client
        #: The HTTP package of *client* (``httpx`` or ``httpx2``): its request and exception classes.
        self.wire = wire
        self.clock = clock
        self.sleep = sleep
        self.hooks = tuple(hooks)
        self.budget = budget
        #: Client-side rate limits per deployment (``None``: none configured).
        self.rate_limiter = rate_limiter
        #: Requests let into the HTTP client at once (``None``: no limit here).
        self.admission = Admission(max_in_flight, clock) if max_in_flight else None
        #: The router's health tracker (hedged routes read it); ``None``: no hedging.
        self.health: Any = None
        self._rng = rng
        self._retrying = AsyncRetrying(sleep=sleep)  # only the owner object tenacity's retry state wants
        self._urls: dict[str, Any] = {}

    # ----------------------------------------------------------------- bookkeeping
    async def _start(
        self,
        plan: Plan,
        pc: PlannedCandidate,
        number: int,
        t0: float,
        deadline_at: float | None,
        errors: list[BaseException],
    ) -> tuple[Attempt, Reservation | None] | None:
        """Begin an attempt once *pc*'s rate limit and budgets allow it; ``None``: skip to the next
        candidate (the reason is appended to *errors*). A budget refusal is raised at once on a
        ``refuse`` route, waited out on a ``wait`` route (within the deadline), else skips."""
        limiter = self.rate_limiter
        if limiter is not None and pc.candidate.deployment in limiter:
            try:
                await limiter.acquire(
                    pc.candidate.deployment,
                    plan.est_input_tokens + pc.candidate.max_output_tokens,
                    sleep=self.sleep,
                    left_s=None if deadline_at is None else deadline_at - self.clock(),
                    error_fields=pc.target.error_fields(),
                )
            except RateLimitError as exc:  # client-side: no request was sent
                errors.append(exc)
                return None
        waited, tries = 0.0, 0
        while True:
            try:
                return await self._begin(plan, pc, number, t0)
            except BudgetExceededError as exc:
                if plan.on_budget_exceeded == "refuse":
                    raise
                if plan.on_budget_exceeded == "wait":
                    left = None if deadline_at is None else deadline_at - self.clock()
                    delay = budget_wait(exc, waited, tries, left)
                    if delay is not None:
                        await self.sleep(delay)
                        waited, tries = waited + delay, tries + 1
                        continue
                errors.append(exc)
                return None

    async def _begin(
        self, plan: Plan, pc: PlannedCandidate, number: int, t0: float
    ) -> tuple[Attempt, Reservation | None]:
        reservation = None
        if self.budget is not None:
            reservation = await self.budget.reserve(pc.candidate.max_cost_usd, plan.spend(pc))
        c = pc.candidate
        attempt = Attempt(
            c.model, c.deployment, c.provider, c.provider_model, number, self.clock() - t0, call_id=plan.trace.call_id
        )
        plan.trace.attempts.append(attempt)
        if self.hooks:
            dispatch_attempt_started(self.hooks, attempt)
        return attempt, reservation

    async def _end(
        self,
        attempt: Attempt,
        pc: PlannedCandidate,
        t0: float,
        reservation: Reservation | None,
        error: BaseException | None,
        usage: Usage | None = None,
        *,
        unbilled: bool = False,
        estimated: bool = False,
        progress: _Progress | None = None,
    ) -> None:
        """Close an attempt: timings, outcome, what it may have cost; settle its reservation."""
        attempt.duration_s = self.clock() - t0 - attempt.started_s
        if usage is not None:
            attempt.usage = usage
            attempt.cost_usd = cost_usd(usage, pc.price)
            attempt.cost_estimated = estimated
        elif not unbilled:  # sent, and ended without usage: it may have been generated and billed in full
            attempt.cost_usd = pc.candidate.max_cost_usd
            attempt.cost_estimated = True
        if error is None:
            attempt.outcome = "ok"
        else:
            cancelled = isinstance(error, (anyio.get_cancelled_exc_class(), GeneratorExit, LostRace))
            attempt.outcome = "cancelled" if cancelled else "error"
            attempt.error_type = type(error).__name__
            attempt.error = _error_text(error)
            if isinstance(error, ProviderError):
                attempt.status = error.status
                error.attempt = attempt.number
        if reservation is not None and self.budget is not None:
            with anyio.CancelScope(shield=True):
                await self.budget.settle(reservation, attempt.cost_usd)
        if attempt.rate_limit is None and progress is not None and progress.headers is not None:
            attempt.rate_limit = parse_rate_limit_headers(progress.headers)  # for the limiter and health
        limiter = self.rate_limiter
        if limiter is not None and pc.candidate.deployment in limiter:
            info = attempt.rate_limit
            retry_after = error.retry_after if isinstance(error, RateLimitError) and error.status else None
            if info is not None or retry_after is not None:
                with anyio.CancelScope(shield=True):
                    await limiter.observe(pc.candidate.deployment, info, retry_after)
        if self.hooks:
            dispatch_attempt_finished(self.hooks, attempt, error)

    async def _retry_wait(
        self,
        state: RetryCallState | None,
        plan: Plan,
        pc: PlannedCandidate,
        exc: ProviderError,
        deadline_at: float | None,
        attempt: Attempt,
    ) -> RetryCallState | None:
        """Decide with tenacity's strategies whether to retry; sleep if so. ``None`` = give up."""
        if state is None:
            state = RetryCallState(self._retrying, None, (), {})
        state.set_exception((type(exc), exc, exc.__traceback__))
        cfg = pc.retry
        if not retry_if_retryable(cfg.max_retry_after_s)(state):
            _log_gave_up(plan, attempt)
            return None
        kw = {} if self._rng is None else {"rng": self._rng}
        delay = wait_retry_after_or_backoff(cfg.initial_backoff_s, cfg.max_backoff_s, cfg.jitter_s, **kw)(state)
        state.upcoming_sleep = delay
        if stop_for(cfg, deadline_at, self.clock)(state):
            _log_gave_up(plan, attempt)
            return None
        attempt.wait_s = delay
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "retrying %s in %.3fs after attempt %d failed: %s",
                attempt.deployment,
                delay,
                attempt.number,
                attempt.error,
                extra=attempt_fields(plan.route, attempt),
            )
        await self.sleep(delay)
        state.prepare_for_next_attempt()
        return state

    def _reply(self, plan: Plan, pc: PlannedCandidate, completion: Completion, attempt: Attempt) -> Reply:
        c = pc.candidate
        return Reply(
            text=completion.text,
            tool_calls=completion.tool_calls,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            cost_usd=attempt.cost_usd,
            model=c.model,
            deployment=c.deployment,
            provider=c.provider,
            provider_model=completion.response_model or c.provider_model,
            route=plan.trace,
            response_id=completion.response_id,
            logprobs=completion.logprobs,
        )

    def _call_started(self, plan: Plan, t0: float, stream: bool) -> None:
        """The plan is made: give the call its id and tell the hooks."""
        trace = plan.trace
        trace.call_id = getrandbits(63)
        if self.hooks:
            trace.duration_s = self.clock() - t0
            dispatch_call_started(self.hooks, trace, plan.request, stream)

    def _call_finished(self, trace: RouteTrace, reply: Reply | None, error: BaseException | None) -> None:
        """The call ended: tell the hooks, and log it (DEBUG; INFO when it failed)."""
        if self.hooks:
            dispatch_call_finished(self.hooks, trace, reply, error)
        if error is None:
            outcome, level = "ok", logging.DEBUG
        elif isinstance(error, (anyio.get_cancelled_exc_class(), GeneratorExit)):
            outcome, level = "cancelled", logging.DEBUG
        else:
            outcome, level = "error", logging.INFO
        if logger.isEnabledFor(level):
            answer = trace.chosen
            logger.log(
                level,
                "call on route %r %s after %d attempt(s) in %.3fs, $%.6f%s",
                trace.route,
                f"answered by {answer.deployment}" if answer is not None else outcome,
                len(trace.attempts),
                trace.duration_s,
                trace.cost_usd,
                "" if error is None or outcome == "cancelled" else f": {_error_text(error)}",
                extra=call_fields(trace, outcome, error),
            )

    def _failed(self, plan: Plan, errors: list[BaseException]) -> LLMRouteError:
        if errors and all(isinstance(e, BudgetExceededError) for e in errors):
            return errors[0]  # type: ignore[return-value]
        return AllAttemptsFailedError(plan.route, errors)

    def _remaining(self, t0: float, deadline_s: float) -> float:
        return max(0.0, deadline_s - (self.clock() - t0))

    # ----------------------------------------------------------------- complete
    async def complete(
        self, plan: PlanSource, *, deadline_s: float | None = None, route: str = "", t0: float | None = None
    ) -> Reply:
        """Run *plan* for a non-streamed reply.

        *plan* may be an async factory: it then runs inside the deadline (*deadline_s*, which must
        be given for a factory; a :class:`Plan` brings its own), as does everything after it. *t0*
        is when the call started (default: now).
        """
        t0 = self.clock() if t0 is None else t0
        current: Plan | None = None
        if isinstance(plan, Plan):
            current, deadline_s, route = plan, plan.deadline_s, plan.route
        errors: list[BaseException] = []
        reply: Reply | None = None
        error: BaseException | None = None
        try:
            if deadline_s is None:
                current = current or await plan()  # type: ignore[operator]
                errors.extend(current.skipped)
                reply = await self._complete(current, t0, None, errors)
                return reply
            with anyio.move_on_after(self._remaining(t0, deadline_s)) as scope:
                current = current or await plan()  # type: ignore[operator]
                errors.extend(current.skipped)
                reply = await self._complete(current, t0, t0 + deadline_s, errors)
                return reply
            if scope.cancelled_caught:
                raise DeadlineExceededError(route, deadline_s, errors)
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException as exc:
            error = exc
            raise
        finally:
            trace = current.trace if current is not None else RouteTrace(route, "", [])
            trace.duration_s = self.clock() - t0
            self._call_finished(trace, reply, error)

    async def _complete(self, plan: Plan, t0: float, deadline_at: float | None, errors: list[BaseException]) -> Reply:
        self._call_started(plan, t0, False)
        for pc in plan.candidates:
            state: RetryCallState | None = None
            number = 0
            while True:
                number += 1
                begun = await self._start(plan, pc, number, t0, deadline_at, errors)
                if begun is None:
                    break
                attempt, reservation = begun
                progress = _Progress()
                try:
                    completion, pc, attempt, progress, reservation = await race(
                        self,
                        plan,
                        pc,
                        attempt,
                        progress,
                        reservation,
                        t0,
                        deadline_at,
                        errors,
                        self._sender(plan, deadline_at),
                    )
                except BaseException as exc:
                    unbilled = _unbilled(exc, progress)
                    await self._end(attempt, pc, t0, reservation, exc, unbilled=unbilled, progress=progress)
                    if not isinstance(exc, ProviderError):
                        raise
                    errors.append(exc)
                    state = await self._retry_wait(state, plan, pc, exc, deadline_at, attempt)
                    if state is None:
                        if not should_fall_back(exc):
                            raise
                        break
                    continue
                await self._end(attempt, pc, t0, reservation, None, completion.usage, progress=progress)
                return self._reply(plan, pc, completion, attempt)
        raise self._failed(plan, errors)

    def _sender(
        self, plan: Plan, deadline_at: float | None = None
    ) -> Callable[[PlannedCandidate, Attempt, _Progress], Awaitable[Completion]]:
        """:meth:`_send` for *plan*'s request, as a racer's opener (``llmroute._race``)."""

        def opener(pc: PlannedCandidate, attempt: Attempt, progress: _Progress) -> Awaitable[Completion]:
            return self._send(pc, plan.request, attempt, progress, deadline_at)

        return opener

    async def _send(
        self,
        pc: PlannedCandidate,
        request: ChatRequest,
        attempt: Attempt,
        progress: _Progress,
        deadline_at: float | None = None,
    ) -> Completion:
        """One attempt through admission; ``attempt_s`` bounds the request once admitted.

        *deadline_at* is the call's deadline (enforced by the caller's scope): admission may pass
        the attempt over when a place frees up too close to it (see :class:`Admission`).
        """
        admission = self.admission
        if admission is None:
            return await self._request(pc, request, progress)
        queued_at = self.clock()
        try:
            await admission.acquire(progress, deadline_at)
        except BaseException:  # cancelled in line (its deadline, say): the trace shows the wait
            attempt.queued_s = self.clock() - queued_at
            raise
        admitted_at = self.clock()
        attempt.queued_s = admitted_at - queued_at
        held: float | None = None
        try:
            completion = await self._request(pc, request, progress)
            held = self.clock() - admitted_at
            return completion
        finally:
            admission.release(progress, held)

    async def _request(self, pc: PlannedCandidate, request: ChatRequest, progress: _Progress) -> Completion:
        if pc.attempt_s is None:
            return await send(self.client, pc, request, urls=self._urls, progress=progress, wire=self.wire)
        with anyio.move_on_after(pc.attempt_s):
            return await send(self.client, pc, request, urls=self._urls, progress=progress, wire=self.wire)
        raise ProviderTimeoutError(f"attempt exceeded {pc.attempt_s:g}s", **pc.target.error_fields()) from None

    # ----------------------------------------------------------------- stream
    def stream(self, plan: PlanSource, *, deadline_s: float | None = None, route: str = "") -> ReplyStream:
        """Run *plan* (or the plan an async factory makes at the first chunk) as a stream."""
        return ReplyStream(self, plan, deadline_s=deadline_s, route=route)


class _Assembler:
    """Accumulates chunks into the final reply's text, tool calls and usage."""

    __slots__ = ("calls", "finish", "model", "rid", "text", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, list[Any]] = {}
        self.finish: Any = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.rid: str | None = None

    def add(self, chunk: Chunk) -> None:
        if chunk.text:
            self.text.append(chunk.text)
        for d in chunk.tool_calls:
            slot = self.calls.setdefault(d.index, [None, None, [], None])
            if d.id:
                slot[0] = d.id
            if d.name:
                slot[1] = d.name
            if d.arguments:
                slot[2].append(d.arguments)
            if d.thought_signature:
                slot[3] = d.thought_signature
        if chunk.finish_reason is not None:
            self.finish = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        self.model = chunk.response_model or self.model
        self.rid = chunk.response_id or self.rid

    def completion(self) -> Completion:
        calls = tuple(
            ToolCall(slot[0] or f"call_{i}", slot[1] or "", "".join(slot[2]), slot[3])
            for i, slot in sorted(self.calls.items())
        )
        text = "".join(self.text) if self.text or not calls else None
        return Completion(text, calls, self.finish, self.usage or Usage(), self.model, self.rid)


async def _close_opened(opened: tuple[_AttemptStream, Chunk, list[Chunk]]) -> None:
    """Close a stream opened by a racer that lost (its first token came second)."""
    await opened[0].aclose()


def _has_content(chunk: Chunk) -> bool:
    return bool(chunk.text or chunk.tool_calls or chunk.finish_reason is not None)


class _StreamRun:
    """The state of one routed stream, and the async generator that produces its chunks.

    Kept apart from :class:`ReplyStream` so the generator does not reference the stream object:
    a stream dropped without ``aclose`` is then freed at once (no reference cycle), and the event
    loop's async-generator finalizer closes the generator, which releases everything in its
    ``finally`` (response, admission place, budget reservation, hooks).
    """

    __slots__ = ("deadline_s", "ex", "factory", "finished", "plan", "reply", "route")

    def __init__(self, executor: Executor, plan: PlanSource, deadline_s: float | None, route: str) -> None:
        self.ex = executor
        if isinstance(plan, Plan):
            self.factory: Callable[[], Awaitable[Plan]] | None = None
            self.plan = plan
            self.deadline_s = plan.deadline_s
            self.route = plan.route
        else:
            self.factory = plan
            self.plan = Plan(route, ChatRequest(()), (), RouteTrace(route, "", []))
            self.deadline_s = deadline_s
            self.route = route
        self.reply: Reply | None = None
        self.finished = False

    async def _open_first(
        self, pc: PlannedCandidate, attempt: Attempt, progress: _Progress, deadline_at: float | None
    ) -> tuple[_AttemptStream, Chunk, list[Chunk]]:
        """Open an attempt (after admission) and read up to its first content chunk."""
        ex = self.ex
        stream = _AttemptStream(pc, progress, ex.wire)
        try:
            if deadline_at is None:
                await stream.open(ex.client, self.plan.request, ex._urls, ex.admission, ex.clock)
            else:
                with anyio.fail_after(max(0.0, deadline_at - ex.clock())):
                    await stream.open(ex.client, self.plan.request, ex._urls, ex.admission, ex.clock)
            attempt.queued_s = stream.queued_s  # the wait for a place alone, not the time to the response
            early: list[Chunk] = []
            while True:
                chunk = await stream.next_chunk(deadline_at, ex.clock)
                if chunk is None:
                    raise ResponseError("stream ended with no content", **pc.target.error_fields())
                if _has_content(chunk):
                    return stream, chunk, early
                early.append(chunk)
        except BaseException:
            await stream.aclose()
            raise

    def _opener(
        self, deadline_at: float | None
    ) -> Callable[[PlannedCandidate, Attempt, _Progress], Awaitable[tuple[_AttemptStream, Chunk, list[Chunk]]]]:
        """:meth:`_open_first` as a racer's opener (``llmroute._race``): a stream's first token."""

        def opener(
            pc: PlannedCandidate, attempt: Attempt, progress: _Progress
        ) -> Awaitable[tuple[_AttemptStream, Chunk, list[Chunk]]]:
            attempt.stream = True
            return self._open_first(pc, attempt, progress, deadline_at)

        return opener

    def _deadline_error(self, errors: Sequence[BaseException] = ()) -> DeadlineExceededError:
        return DeadlineExceededError(self.route, self.deadline_s or 0.0, errors)

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The stream's chunks: plan, then each candidate until one commits (first token)."""
        ex = self.ex
        t0 = ex.clock()
        deadline_at = None if self.deadline_s is None else t0 + self.deadline_s
        error: BaseException | None = None
        try:
            if self.factory is not None:
                if deadline_at is None:
                    self.plan = await self.factory()
                else:
                    try:
                        with anyio.fail_after(max(0.0, deadline_at - ex.clock())):
                            self.plan = await self.factory()
                    except TimeoutError as exc:
                        raise self._deadline_error() from exc
            plan = self.plan
            ex._call_started(plan, t0, True)
            errors: list[BaseException] = list(plan.skipped)
            for pc in plan.candidates:
                state: RetryCallState | None = None
                number = 0
                while True:
                    number += 1
                    begun = await ex._start(plan, pc, number, t0, deadline_at, errors)
                    if begun is None:
                        break
                    attempt, reservation = begun
                    attempt.stream = True
                    progress = _Progress()
                    try:
                        (stream, first, early), pc, attempt, progress, reservation = await race(
                            ex,
                            plan,
                            pc,
                            attempt,
                            progress,
                            reservation,
                            t0,
                            deadline_at,
                            errors,
                            self._opener(deadline_at),
                            _close_opened,
                        )
                    except BaseException as exc:
                        err: BaseException = exc
                        timed_out = isinstance(exc, TimeoutError) and not isinstance(exc, LLMRouteError)
                        if timed_out and deadline_at is not None and ex.clock() >= deadline_at:
                            err = self._deadline_error(errors)
                        unbilled = _unbilled(err, progress)
                        await ex._end(attempt, pc, t0, reservation, err, unbilled=unbilled, progress=progress)
                        if err is not exc:
                            raise err from exc
                        if not isinstance(exc, ProviderError):
                            raise
                        errors.append(exc)
                        state = await ex._retry_wait(state, plan, pc, exc, deadline_at, attempt)
                        if state is None:
                            if not should_fall_back(exc):
                                raise
                            break
                        continue
                    attempt.ttft_s = ex.clock() - t0 - attempt.started_s
                    if progress.headers is not None:  # the health tracker reads them before the stream ends
                        attempt.rate_limit = parse_rate_limit_headers(progress.headers)
                    # Committed: from here on a failure ends the stream (no fallback, no duplicate text).
                    acc = _Assembler()
                    failure: BaseException | None = None
                    try:
                        for chunk in (*early, first):
                            acc.add(chunk)
                        yield first
                        while True:
                            try:
                                chunk = await stream.next_chunk(deadline_at, ex.clock)
                            except TimeoutError as exc:
                                if deadline_at is not None and ex.clock() >= deadline_at:
                                    raise self._deadline_error() from exc
                                raise
                            if chunk is None:
                                break
                            acc.add(chunk)
                            if _has_content(chunk) or chunk.usage is not None:
                                yield chunk
                    except BaseException as exc:
                        failure = exc
                        raise
                    finally:
                        await stream.aclose()
                        completion = acc.completion()
                        if failure is None:
                            usage = acc.usage or _estimate_usage(plan, completion)
                            estimated = acc.usage is None
                            await ex._end(
                                attempt, pc, t0, reservation, None, usage, estimated=estimated, progress=progress
                            )
                            self.reply = ex._reply(plan, pc, completion, attempt)
                        else:  # cut off, cancelled or abandoned: billed as reported, else its worst case
                            await ex._end(attempt, pc, t0, reservation, failure, acc.usage, progress=progress)
                    return
            raise ex._failed(plan, errors)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.finished = True
            self.plan.trace.duration_s = ex.clock() - t0
            ex._call_finished(self.plan.trace, self.reply, error)


class ReplyStream:
    """A streamed routed reply: ``async for chunk in stream``; afterwards ``stream.reply``.

    Use it as an async context manager (``async with router.stream(...) as s:``) or call
    :meth:`aclose` if you stop reading early. A stream dropped unfinished and unclosed is closed
    by the event loop as soon as it is freed (its connection, admission place and budget hold are
    released then) and a ``ResourceWarning`` says so, as for an unclosed file. Fallback happens
    only before the first token.
    """

    def __init__(
        self, executor: Executor, plan: PlanSource, *, deadline_s: float | None = None, route: str = ""
    ) -> None:
        self._gen: AsyncIterator[Chunk] | None = None
        self._run = _StreamRun(executor, plan, deadline_s, route)

    @property
    def reply(self) -> Reply | None:
        """The complete reply, once the stream has ended normally (else ``None``).

        It is set before ``async for`` stops, so the end of the loop is the stream's end event:
        code that needs the cost, the chosen model and deployment or the trace at the end of a
        stream (the framework integrations do) reads ``stream.reply`` there. No chunk carries it.
        """
        return self._run.reply

    @property
    def route(self) -> RouteTrace:
        """The trace so far (complete once the stream has ended)."""
        return self._run.plan.trace

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> Chunk:
        if self._gen is None:
            self._gen = self._run.chunks()
        return await self._gen.__anext__()

    async def __aenter__(self) -> ReplyStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream and release its connection, admission place and budget hold."""
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]
        self._run.finished = True

    async def text(self) -> str:
        """Read the whole stream and return its text."""
        async for _ in self:
            pass
        reply = self.reply
        assert reply is not None
        return reply.text or ""

    def __del__(self) -> None:
        run = getattr(self, "_run", None)
        if getattr(self, "_gen", None) is not None and run is not None and not run.finished:
            warnings.warn(
                f"llmroute stream on route {run.route!r} was dropped unfinished without aclose(); "
                "use `async with router.stream(...) as s:` (it is being closed now)",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    def __repr__(self) -> str:
        run = getattr(self, "_run", None)
        return f"<ReplyStream route={getattr(run, 'route', '?')!r} finished={getattr(run, 'finished', '?')}>"


def _log_gave_up(plan: Plan, attempt: Attempt) -> None:
    """Log (INFO) an attempt that is not retried on its deployment."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "attempt %d on %s failed, not retried there: %s",
            attempt.number,
            attempt.deployment,
            attempt.error,
            extra=attempt_fields(plan.route, attempt),
        )


def _estimate_usage(plan: Plan, completion: Completion) -> Usage:
    """Usage when the provider reported none: input estimated, output counted with tiktoken."""
    from .tokens import count_tokens

    text = completion.text or ""
    out = count_tokens(text) + sum(count_tokens(c.arguments) for c in completion.tool_calls)
    return Usage(plan.est_input_tokens, out, 0)
