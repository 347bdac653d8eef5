"""Execution: how a planned call is carried out.

One attempt is one HTTP request to one deployment (:func:`send` or :class:`_AttemptStream`).
:class:`Executor` runs a :class:`Plan`: for each candidate in order, retries on the same
deployment while the error is retryable (tenacity strategies: Retry-After or exponential backoff
with jitter, bounded by the call's deadline), then falls back to the next candidate. A stream
falls back only before its first token, so no text is ever duplicated. Every attempt is
recorded in the trace and reported to the hooks; budgets are reserved before an attempt and
settled after it, cancellation included.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from tenacity import AsyncRetrying, RetryCallState

from ._clock import Clock, Sleep
from .config import RetryConfig
from .costs import Price, cost_usd
from .errors import (
    AllAttemptsFailedError,
    BudgetExceededError,
    DeadlineExceededError,
    LLMRouteError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ResponseError,
)
from .hooks import Hooks, dispatch_attempt_finished, dispatch_attempt_started, dispatch_call_finished
from .policy.budget import Budget, Reservation
from .policy.fallback import retry_if_retryable, should_fall_back, stop_for, wait_retry_after_or_backoff
from .providers.base import Adapter, Target
from .types import Attempt, Candidate, ChatRequest, Chunk, Completion, Reply, RouteTrace, ToolCall, Usage

__all__ = ["Executor", "Plan", "PlannedCandidate", "ReplyStream", "send"]

logger = logging.getLogger("llmroute")


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


def _map_transport_error(exc: httpx.HTTPError, target: Target, *, reading: bool) -> ProviderError:
    """An httpx exception as a ProviderError, keeping the cause."""
    fields = target.error_fields()
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeoutError(f"timed out ({type(exc).__name__})", **fields)
    if isinstance(exc, httpx.RemoteProtocolError) and reading:
        return ResponseError(f"connection closed mid-response ({exc})", **fields)
    if isinstance(exc, httpx.TransportError):
        return ProviderConnectionError(f"connection failed ({type(exc).__name__}: {exc})", **fields)
    return ProviderError(f"HTTP error ({type(exc).__name__}: {exc})", **fields)


def _http_request(
    pc: PlannedCandidate, request: ChatRequest, *, stream: bool, urls: dict[str, httpx.URL] | None = None
) -> httpx.Request:
    spec = pc.adapter.build_request(request, pc.target, stream=stream)
    url: str | httpx.URL = spec.url
    if urls is not None:  # parsing a URL costs more than the rest of the request: keep them
        parsed = urls.get(spec.url)
        if parsed is None:
            if len(urls) >= 4096:
                urls.clear()
            parsed = urls[spec.url] = httpx.URL(spec.url)
        url = parsed
    return httpx.Request(spec.method, url, headers=spec.headers, content=spec.body, extensions={"timeout": pc.timeout})


async def send(
    client: httpx.AsyncClient,
    pc: PlannedCandidate,
    request: ChatRequest,
    *,
    urls: dict[str, httpx.URL] | None = None,
) -> Completion:
    """One non-streamed attempt: send, read, parse. Raises a ProviderError on failure.

    *urls* is an optional cache of parsed URLs, shared across calls.
    """
    http_request = _http_request(pc, request, stream=False, urls=urls)
    try:
        response = await client.send(http_request)
    except httpx.HTTPError as exc:
        raise _map_transport_error(exc, pc.target, reading=True) from exc
    if response.status_code >= 300:
        raise pc.adapter.parse_error(response.status_code, response.headers, response.content, pc.target)
    return pc.adapter.parse_response(response.content, pc.target)


class _AttemptStream:
    """One streamed attempt: the open response and its parser."""

    __slots__ = ("_bytes", "_deferred", "_parser", "_pc", "_pending", "_response")

    def __init__(self, pc: PlannedCandidate) -> None:
        self._pc = pc
        self._response: httpx.Response | None = None
        self._bytes: AsyncIterator[bytes] | None = None
        self._parser = pc.adapter.stream_parser(pc.target)
        self._pending: list[Chunk] = []
        #: An error decoded after some chunks of the same read: raised once those are consumed.
        self._deferred: BaseException | None = None

    async def open(
        self, client: httpx.AsyncClient, request: ChatRequest, urls: dict[str, httpx.URL] | None = None
    ) -> None:
        """Send the request; raise the provider's error for a non-2xx status."""
        http_request = _http_request(self._pc, request, stream=True, urls=urls)
        try:
            self._response = await client.send(http_request, stream=True)
        except httpx.HTTPError as exc:
            raise _map_transport_error(exc, self._pc.target, reading=False) from exc
        if self._response.status_code >= 300:
            try:
                body = await self._response.aread()
            except httpx.HTTPError as exc:
                raise _map_transport_error(exc, self._pc.target, reading=True) from exc
            raise self._pc.adapter.parse_error(
                self._response.status_code, self._response.headers, body, self._pc.target
            )
        self._bytes = self._response.aiter_bytes()

    async def next_chunk(self, deadline_at: float | None, clock: Clock) -> Chunk | None:
        """The next chunk, or ``None`` at the end of the stream."""
        while not self._pending:
            assert self._bytes is not None
            if self._deferred is not None:
                raise self._deferred
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
            except httpx.HTTPError as exc:
                raise _map_transport_error(exc, self._pc.target, reading=True) from exc
            self._feed(data)
        return self._pending.pop(0) if self._pending else None

    def _feed(self, data: bytes) -> None:
        """Feed one read event by event, so chunks decoded before an error event are kept."""
        assert self._parser is not None
        if data.count(b"\n\n") < 2:  # at most one complete event: nothing can be lost
            pieces = [data]
        else:
            parts = data.split(b"\n\n")
            pieces = [part + b"\n\n" for part in parts[:-1]]
            if parts[-1]:
                pieces.append(parts[-1])
        for piece in pieces:
            try:
                self._pending.extend(self._parser.feed(piece))
            except ProviderError as exc:
                if not self._pending:
                    raise
                self._deferred = exc
                return

    async def aclose(self) -> None:
        """Close the response, even inside a cancelled scope."""
        if self._response is not None:
            response, self._response = self._response, None
            with anyio.CancelScope(shield=True):
                await response.aclose()


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, LLMRouteError) else f"{type(exc).__name__}: {exc}"


class Executor:
    """Runs plans: retries, fallback, deadline, budget, trace and hooks."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        sleep: Sleep,
        hooks: Sequence[Hooks] = (),
        budget: Budget | None = None,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.sleep = sleep
        self.hooks = tuple(hooks)
        self.budget = budget
        self._rng = rng
        self._retrying = AsyncRetrying(sleep=sleep)  # only the owner object tenacity's retry state wants
        self._urls: dict[str, httpx.URL] = {}

    # ----------------------------------------------------------------- bookkeeping
    def _begin(self, plan: Plan, pc: PlannedCandidate, number: int, t0: float) -> tuple[Attempt, Reservation | None]:
        reservation = None
        if self.budget is not None:
            reservation = self.budget.reserve(pc.candidate.est_cost_usd, route=plan.route, model=pc.candidate.model)
        c = pc.candidate
        attempt = Attempt(c.model, c.deployment, c.provider, c.provider_model, number, self.clock() - t0)
        plan.trace.attempts.append(attempt)
        if self.hooks:
            dispatch_attempt_started(self.hooks, attempt)
        return attempt, reservation

    def _end(
        self,
        attempt: Attempt,
        pc: PlannedCandidate,
        t0: float,
        reservation: Reservation | None,
        error: BaseException | None,
        usage: Usage | None = None,
    ) -> None:
        attempt.duration_s = self.clock() - t0 - attempt.started_s
        if usage is not None:
            attempt.usage = usage
            attempt.cost_usd = cost_usd(usage, pc.price)
        if error is None:
            attempt.outcome = "ok"
        else:
            cancelled = isinstance(error, (anyio.get_cancelled_exc_class(), GeneratorExit))
            attempt.outcome = "cancelled" if cancelled else "error"
            attempt.error_type = type(error).__name__
            attempt.error = _error_text(error)
            if isinstance(error, ProviderError):
                attempt.status = error.status
                error.attempt = attempt.number
        if reservation is not None and self.budget is not None:
            self.budget.settle(reservation, attempt.cost_usd)
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
            return None
        kw = {} if self._rng is None else {"rng": self._rng}
        delay = wait_retry_after_or_backoff(cfg.initial_backoff_s, cfg.max_backoff_s, cfg.jitter_s, **kw)(state)
        state.upcoming_sleep = delay
        if stop_for(cfg, deadline_at, self.clock)(state):
            return None
        attempt.wait_s = delay
        logger.debug("retrying %s after %.3fs: %s", pc.candidate.deployment, delay, exc)
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

    def _failed(self, plan: Plan, errors: list[BaseException]) -> LLMRouteError:
        if errors and all(isinstance(e, BudgetExceededError) for e in errors):
            return errors[0]  # type: ignore[return-value]
        return AllAttemptsFailedError(plan.route, errors)

    # ----------------------------------------------------------------- complete
    async def complete(self, plan: Plan) -> Reply:
        """Run *plan* for a non-streamed reply."""
        t0 = self.clock()
        errors: list[BaseException] = list(plan.skipped)
        reply: Reply | None = None
        error: BaseException | None = None
        try:
            if plan.deadline_s is None:
                reply = await self._complete(plan, t0, None, errors)
                return reply
            with anyio.move_on_after(plan.deadline_s) as scope:
                reply = await self._complete(plan, t0, t0 + plan.deadline_s, errors)
                return reply
            if scope.cancelled_caught:
                raise DeadlineExceededError(plan.route, plan.deadline_s, errors)
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException as exc:
            error = exc
            raise
        finally:
            plan.trace.duration_s = self.clock() - t0
            if self.hooks:
                dispatch_call_finished(self.hooks, plan.trace, reply, error)

    async def _complete(self, plan: Plan, t0: float, deadline_at: float | None, errors: list[BaseException]) -> Reply:
        for pc in plan.candidates:
            state: RetryCallState | None = None
            number = 0
            while True:
                number += 1
                try:
                    attempt, reservation = self._begin(plan, pc, number, t0)
                except BudgetExceededError as exc:
                    errors.append(exc)
                    break
                try:
                    if pc.attempt_s is None:
                        completion = await send(self.client, pc, plan.request, urls=self._urls)
                    else:
                        completion = await self._send_bounded(pc, plan.request)
                except BaseException as exc:
                    self._end(attempt, pc, t0, reservation, exc)
                    if not isinstance(exc, ProviderError):
                        raise
                    errors.append(exc)
                    state = await self._retry_wait(state, plan, pc, exc, deadline_at, attempt)
                    if state is None:
                        if not should_fall_back(exc):
                            raise
                        break
                    continue
                self._end(attempt, pc, t0, reservation, None, completion.usage)
                return self._reply(plan, pc, completion, attempt)
        raise self._failed(plan, errors)

    async def _send_bounded(self, pc: PlannedCandidate, request: ChatRequest) -> Completion:
        assert pc.attempt_s is not None
        with anyio.move_on_after(pc.attempt_s):
            return await send(self.client, pc, request, urls=self._urls)
        raise ProviderTimeoutError(f"attempt exceeded {pc.attempt_s:g}s", **pc.target.error_fields()) from None

    # ----------------------------------------------------------------- stream
    def stream(self, plan: Plan | Callable[[], Awaitable[Plan]]) -> ReplyStream:
        """Run *plan* (or the plan an async factory makes at the first chunk) as a stream."""
        return ReplyStream(self, plan)


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


def _pending_plan() -> Plan:
    """A placeholder until a lazily planned stream starts (its trace is empty)."""
    return Plan("", ChatRequest(()), (), RouteTrace("", "", []))


def _has_content(chunk: Chunk) -> bool:
    return bool(chunk.text or chunk.tool_calls or chunk.finish_reason is not None)


class ReplyStream:
    """A streamed routed reply: ``async for chunk in stream``; afterwards ``stream.reply``.

    Use it as an async context manager (``async with router.stream(...) as s:``) to close the
    connection promptly if you stop reading early; otherwise it is closed when iteration ends or
    the stream is garbage-collected. Fallback happens only before the first token.
    """

    def __init__(self, executor: Executor, plan: Plan | Callable[[], Awaitable[Plan]]) -> None:
        self._ex = executor
        self._plan_factory = None if isinstance(plan, Plan) else plan
        self._plan: Plan = plan if isinstance(plan, Plan) else _pending_plan()
        self._gen: Any = None
        #: The complete reply, set once the stream has ended normally.
        self.reply: Reply | None = None

    @property
    def route(self) -> RouteTrace:
        """The trace so far (complete once the stream has ended)."""
        return self._plan.trace

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> Chunk:
        if self._gen is None:
            self._gen = self._run()
        return await self._gen.__anext__()

    async def __aenter__(self) -> ReplyStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream and release its connection."""
        if self._gen is not None:
            await self._gen.aclose()

    async def text(self) -> str:
        """Read the whole stream and return its text."""
        async for _ in self:
            pass
        assert self.reply is not None
        return self.reply.text or ""

    async def _open_first(
        self, pc: PlannedCandidate, deadline_at: float | None
    ) -> tuple[_AttemptStream, Chunk | None, list[Chunk]]:
        """Open an attempt and read up to its first content chunk."""
        ex = self._ex
        stream = _AttemptStream(pc)
        try:
            if deadline_at is None:
                await stream.open(ex.client, self._plan.request, ex._urls)
            else:
                with anyio.fail_after(max(0.0, deadline_at - ex.clock())):
                    await stream.open(ex.client, self._plan.request, ex._urls)
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

    async def _run(self) -> AsyncIterator[Chunk]:
        if self._plan_factory is not None:
            self._plan = await self._plan_factory()
        ex, plan = self._ex, self._plan
        t0 = ex.clock()
        deadline_at = None if plan.deadline_s is None else t0 + plan.deadline_s
        errors: list[BaseException] = list(plan.skipped)
        error: BaseException | None = None
        try:
            for pc in plan.candidates:
                state: RetryCallState | None = None
                number = 0
                while True:
                    number += 1
                    try:
                        attempt, reservation = ex._begin(plan, pc, number, t0)
                    except BudgetExceededError as exc:
                        errors.append(exc)
                        break
                    try:
                        stream, first, early = await self._open_first(pc, deadline_at)
                    except TimeoutError as exc:
                        if deadline_at is not None and ex.clock() >= deadline_at:
                            err = DeadlineExceededError(plan.route, plan.deadline_s or 0.0, errors)
                            ex._end(attempt, pc, t0, reservation, err)
                            raise err from exc
                        raise
                    except BaseException as exc:
                        ex._end(attempt, pc, t0, reservation, exc)
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
                    committed = self._commit(pc, attempt, reservation, stream, first, early, t0, deadline_at)
                    try:
                        async for chunk in committed:
                            yield chunk
                    finally:
                        await committed.aclose()
                    return
            raise ex._failed(plan, errors)
        except BaseException as exc:
            error = exc
            raise
        finally:
            plan.trace.duration_s = ex.clock() - t0
            if ex.hooks:
                dispatch_call_finished(ex.hooks, plan.trace, self.reply, error)

    async def _commit(
        self,
        pc: PlannedCandidate,
        attempt: Attempt,
        reservation: Reservation | None,
        stream: _AttemptStream,
        first: Chunk,
        early: list[Chunk],
        t0: float,
        deadline_at: float | None,
    ) -> AsyncIterator[Chunk]:
        """Yield the committed attempt's chunks; failures now end the stream (no fallback)."""
        ex, plan = self._ex, self._plan
        acc = _Assembler()
        error: BaseException | None = None
        try:
            for chunk in (*early, first):
                acc.add(chunk)
            yield first
            while True:
                try:
                    chunk = await stream.next_chunk(deadline_at, ex.clock)
                except TimeoutError as exc:
                    if deadline_at is not None and ex.clock() >= deadline_at:
                        raise DeadlineExceededError(plan.route, plan.deadline_s or 0.0) from exc
                    raise
                if chunk is None:
                    break
                acc.add(chunk)
                if _has_content(chunk) or chunk.usage is not None:
                    yield chunk
        except BaseException as exc:
            error = exc
            raise
        finally:
            await stream.aclose()
            completion = acc.completion()
            usage = acc.usage or _estimate_usage(plan, completion)
            ex._end(attempt, pc, t0, reservation, error, usage)
            if error is None:
                self.reply = ex._reply(plan, pc, completion, attempt)


def _estimate_usage(plan: Plan, completion: Completion) -> Usage:
    """Usage when the provider reported none: input estimated, output counted with tiktoken."""
    from .tokens import count_tokens

    text = completion.text or ""
    out = count_tokens(text) + sum(count_tokens(c.arguments) for c in completion.tool_calls)
    return Usage(plan.est_input_tokens, out, 0)
