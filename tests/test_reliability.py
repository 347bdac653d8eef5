"""Production safety over the loopback fleet: bursts past the connection pool, budgets that are never
overspent, abandoned streams, deadlines that cover the whole call."""

from __future__ import annotations

import gc
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from conftest import SECRET, make_config, provider_cfg

import llmroute
from llmroute.testing import FakeProvider, FakeReply, Fault, Fleet

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "Tell me about the weather today, please."}]
PRICES = {"oai": (0.5, 1.5), "claude": (1.0, 3.0), "gem": (0.3, 2.5)}


@pytest.fixture(scope="module")
def spend_fleet() -> Iterator[Fleet]:
    """A fleet of its own: replies of random length, longer than any estimate, paced so that
    cancellations land before, during and after generation."""
    rng = random.Random(7)

    def long_reply(body: Any) -> FakeReply:
        return FakeReply(text=" ".join(["token"] * rng.randint(1, 1500)))

    providers = [
        FakeProvider(name, api=api, api_key=SECRET, reply=long_reply, ttft_s=0.002, tokens_per_s=20_000.0)
        for name, api in (("oai", "openai"), ("claude", "anthropic"), ("gem", "gemini"))
    ]
    with Fleet(providers) as f:
        yield f


def spend_config(fleet: Fleet, **route: Any) -> dict[str, Any]:
    return {
        "providers": {name: provider_cfg(fleet, name, fleet[name].api) for name in PRICES},
        "models": {
            name: {"deployments": [{"provider": name, "model": f"{name}-m", "price": {"input": i, "output": o}}]}
            for name, (i, o) in PRICES.items()
        },
        "routes": {"default": {"models": list(PRICES), **route}},
        "retry": {"attempts": 1},
        "timeout": {"connect_s": 2.0, "read_s": 2.0},
    }


def provider_spend(fleet: Fleet) -> float:
    """What the providers actually generated and would bill, from their own counters."""
    return sum(
        (fleet[name].billed_input_tokens * i + fleet[name].billed_output_tokens * o) / 1e6
        for name, (i, o) in PRICES.items()
    )


async def race_random_calls(
    router: llmroute.Router,
    rng: random.Random,
    who: Callable[[], dict[str, Any]] = dict,
    *,
    waves: int = 4,
    per_wave: int = 60,
) -> list[str]:
    """Waves of concurrent callers (complete, stream, abandoned stream), each with a random
    cancellation and deadline (and ``who()``'s call arguments), with the cycle collector off:
    nothing may rely on it. Returns each call's outcome."""
    outcomes: list[str] = []

    async def caller() -> None:
        kind = rng.choice(["complete", "stream", "abandon"])
        cancel_after = rng.choice([None, rng.uniform(0.0, 0.08)])
        deadline = rng.choice([None, rng.uniform(0.005, 0.1)])
        kw = who()
        with anyio.CancelScope() as scope:
            if cancel_after is not None:
                scope.deadline = anyio.current_time() + cancel_after
            try:
                if kind == "complete":
                    await router.complete(MSG, deadline_s=deadline, **kw)
                elif kind == "stream":
                    async with router.stream(MSG, deadline_s=deadline, **kw) as s:
                        async for _ in s:
                            pass
                else:
                    s = router.stream(MSG, deadline_s=deadline, **kw)
                    async for _ in s:
                        break
                    del s  # dropped without aclose: freed at once, closed by the loop
                outcomes.append("ok")
            except llmroute.LLMRouteError as exc:
                outcomes.append(type(exc).__name__)
        if scope.cancelled_caught:
            outcomes.append("cancelled")

    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            for _wave in range(waves):
                async with anyio.create_task_group() as tg:
                    for _ in range(per_wave):
                        tg.start_soon(caller)
            await anyio.sleep(0.3)  # let the loop finish closing abandoned streams
    finally:
        gc.enable()
    return outcomes


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_budget_is_never_overspent_by_concurrent_cancelled_and_abandoned_calls(
    spend_fleet: Fleet, seed: int
) -> None:
    """Property: many concurrent callers (complete and stream), replies longer than any estimate,
    random cancellations, timeouts and abandoned streams: what the providers served never exceeds
    the limit, and every reservation is settled."""
    spend_fleet.reset()
    rng = random.Random(seed)
    limit = 0.02
    budget = llmroute.MemoryBudget(limit)
    router = llmroute.Router.from_dict(spend_config(spend_fleet, max_output_tokens=800), budget=budget)

    async with router:
        outcomes = await race_random_calls(router, rng)
    served = provider_spend(spend_fleet)
    assert budget.open_reservations == 0 and budget.reserved_usd == 0
    assert served <= limit, f"providers served ${served:.6f} against a limit of ${limit}"
    assert budget.spent_usd <= limit + 1e-12
    assert served <= budget.spent_usd + 1e-9  # the budget never counts less than was billed
    assert "BudgetExceededError" in outcomes and "ok" in outcomes  # the limit was really reached


async def test_reservation_bounds_the_max_tokens_actually_sent(spend_fleet: Fleet) -> None:
    spend_fleet.reset()
    budget = llmroute.MemoryBudget(10.0)
    reserved: list[float] = []

    class Spy(llmroute.MemoryBudget):
        async def reserve(self, amount_usd: float, spend: Any = None) -> Any:
            reserved.append(amount_usd)
            return await budget.reserve(amount_usd, spend)

        async def settle(self, reservation: Any, actual_usd: float) -> None:
            await budget.settle(reservation, actual_usd)

    async with llmroute.Router.from_dict(spend_config(spend_fleet), budget=Spy(10.0)) as r:
        reply = await r.complete(MSG, model="claude")
    (cand,) = reply.route.candidates
    sent = spend_fleet["claude"].requests[-1].json["max_tokens"]
    assert sent == cand.max_output_tokens == 4096  # neither request, route nor deployment gave one
    assert reserved == [cand.max_cost_usd]
    n_in = math.ceil(reply.route.est_input_tokens * 1.1)
    assert cand.max_cost_usd == pytest.approx((n_in * 1.0 + 4096 * 3.0) / 1e6)
    assert reply.usage.output_tokens <= 4096
    assert budget.spent_usd == pytest.approx(reply.cost_usd) and budget.open_reservations == 0


async def test_cancelled_after_sending_settles_at_the_worst_case(spend_fleet: Fleet) -> None:
    spend_fleet.reset()
    budget = llmroute.MemoryBudget(10.0)
    prov = spend_fleet["oai"]
    saved = prov.ttft_s
    prov.ttft_s = 5.0
    try:
        async with llmroute.Router.from_dict(spend_config(spend_fleet), budget=budget) as r:
            with anyio.move_on_after(0.3):
                await r.complete(MSG, model="oai")
            plan = r.plan(MSG, model="oai")
    finally:
        prov.ttft_s = saved
    assert budget.open_reservations == 0
    assert budget.spent_usd == pytest.approx(plan.candidates[0].candidate.max_cost_usd)


async def test_error_status_and_unsent_requests_cost_nothing(spend_fleet: Fleet) -> None:
    spend_fleet.reset()
    budget = llmroute.MemoryBudget(10.0)
    cfg = spend_config(spend_fleet)
    cfg["providers"]["oai"]["base_url"] = "http://127.0.0.1:9/v1"  # nothing listens: never sent
    spend_fleet["claude"].enqueue(llmroute.testing.Fault.server_error(500))
    async with llmroute.Router.from_dict(cfg, budget=budget) as r:
        reply = await r.complete(MSG)
    first, second, third = reply.route.attempts
    assert first.error_type == "ProviderConnectionError" and first.cost_usd == 0 and not first.cost_estimated
    assert second.status == 500 and second.cost_usd == 0
    assert third.outcome == "ok" and budget.spent_usd == pytest.approx(third.cost_usd)


# ---------------------------------------------------------------------------- bursts past the pool
async def test_burst_past_the_connection_pool_keeps_deadlines_and_the_router(fleet: Fleet) -> None:
    """2,000 concurrent calls through a pool of 100: each succeeds or fails with a typed
    DeadlineExceededError at its deadline, and the router works normally afterwards."""
    cfg = make_config(fleet, max_connections=100, max_keepalive_connections=100)
    deadline = 2.0
    results: list[tuple[str, float]] = []

    async def one(r: llmroute.Router) -> None:
        t = time.perf_counter()
        try:
            await r.complete(MSG, model="small", deadline_s=deadline)
            results.append(("ok", time.perf_counter() - t))
        except llmroute.DeadlineExceededError:
            results.append(("deadline", time.perf_counter() - t))

    async with llmroute.Router.from_dict(cfg) as r:
        await r.warmup()
        async with anyio.create_task_group() as tg:
            for _ in range(2000):
                tg.start_soon(one, r)
        assert len(results) == 2000
        late = [t for kind, t in results if kind == "deadline" and abs(t - deadline) > 0.5]
        assert not late, f"{len(late)} deadline errors far from the deadline: {sorted(late)[-3:]}"
        assert max(t for _, t in results) < deadline + 0.5
        adm = r._executor.admission
        assert adm is not None and adm.in_flight == 0 and adm.waiting == 0
        transport = r._client._transport  # type: ignore[attr-defined]
        assert transport.in_flight == 0
        for pools in transport._pools.values():
            for pool in pools:
                assert not [c for c in pool.transport._pool.connections if "CONNECTING" in c.info()]
        # fully usable afterwards
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(r.complete, MSG)
        assert sum(kind == "ok" for kind, _ in results) > 0


async def test_admission_wait_is_in_the_trace(fleet: Fleet) -> None:
    cfg = make_config(fleet, max_connections=1, max_keepalive_connections=1)
    saved = fleet["oai"].ttft_s
    fleet["oai"].ttft_s = 0.1
    replies: list[llmroute.Reply] = []
    try:
        async with llmroute.Router.from_dict(cfg) as r:

            async def one() -> None:
                replies.append(await r.complete(MSG, model="small"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
    finally:
        fleet["oai"].ttft_s = saved
    waits = sorted(reply.route.attempts[0].queued_s for reply in replies)
    assert waits[0] < 0.05 and waits[1] >= 0.08


async def test_a_streamed_attempt_s_admission_wait_is_not_its_wait_for_the_response(fleet: Fleet) -> None:
    cfg = make_config(fleet, max_connections=1, max_keepalive_connections=1)
    replies: list[llmroute.Reply] = []
    async with llmroute.Router.from_dict(cfg) as r:

        async def one() -> None:
            async with r.stream(MSG, model="small") as s:
                await s.text()
            assert s.reply is not None
            replies.append(s.reply)

        fleet["oai"].enqueue(Fault.stall(0.1))  # no response headers for 0.1 s
        await one()
        (alone,) = replies.pop().route.attempts
        assert alone.queued_s < 0.05 and alone.ttft_s is not None and alone.ttft_s >= 0.08

        fleet["oai"].enqueue(Fault.stall(0.1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
    first, second = sorted((reply.route.attempts[0] for reply in replies), key=lambda a: a.queued_s)
    assert first.queued_s < 0.05  # it waited for the provider, not for a place
    assert second.queued_s >= 0.08  # held back while the first stream kept the only place


# ---------------------------------------------------------------------------- deadlines
class SlowPredictor:
    """A predictor whose warm-up takes a second (as loading the real one can)."""

    def try_predict(self, *args: Any, **kwargs: Any) -> None:
        time.sleep(1.0)


async def test_deadline_covers_warm_up(fleet: Fleet) -> None:
    cfg = make_config(fleet)
    cfg["routes"]["default"]["strategy"] = "predictive"
    async with llmroute.Router.from_dict(cfg, predictor=SlowPredictor()) as r:
        t = time.perf_counter()
        with pytest.raises(llmroute.DeadlineExceededError):
            await r.complete(MSG, deadline_s=0.3)
        assert time.perf_counter() - t < 0.6
        t = time.perf_counter()
        with pytest.raises(llmroute.DeadlineExceededError):
            async with r.stream(MSG, deadline_s=0.2) as s:
                async for _ in s:
                    pass
        assert time.perf_counter() - t < 0.5
    assert fleet["oai"].calls == 0


async def test_zero_deadline_is_already_expired_and_bad_deadlines_are_refused(fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(make_config(fleet)) as r:
        with pytest.raises(llmroute.DeadlineExceededError):
            await r.complete(MSG, deadline_s=0)
        for bad in (-1, float("nan"), float("inf"), True, "2"):
            with pytest.raises(llmroute.InvalidRequestError, match="deadline_s"):
                await r.complete(MSG, deadline_s=bad)  # type: ignore[arg-type]
            with pytest.raises(llmroute.InvalidRequestError, match="deadline_s"):
                r.stream(MSG, deadline_s=bad)  # type: ignore[arg-type]
    assert fleet["oai"].calls == 0


# ---------------------------------------------------------------------------- abandoned streams
async def test_abandoned_stream_releases_everything_without_the_cycle_collector(fleet: Fleet) -> None:
    budget = llmroute.MemoryBudget(10.0)
    finished: list[BaseException | None] = []

    class Calls(llmroute.Hooks):
        def call_finished(self, trace: Any, reply: Any, error: BaseException | None) -> None:
            finished.append(error)

    saved = fleet["oai"].tokens_per_s
    fleet["oai"].tokens_per_s = 50.0  # the stream is still running when it is dropped
    gc.disable()
    try:
        async with llmroute.Router.from_dict(make_config(fleet), budget=budget, hooks=[Calls()]) as r:
            for _ in range(20):
                s = r.stream(MSG, model="small")
                async for _chunk in s:
                    break
                with pytest.warns(ResourceWarning, match="dropped unfinished without aclose"):
                    del s
            await anyio.sleep(0.2)
            adm = r._executor.admission
            assert adm is not None and adm.in_flight == 0
            assert budget.open_reservations == 0
            assert len(finished) == 20 and all(isinstance(e, GeneratorExit) for e in finished)
            # the router is fine afterwards
            assert (await r.complete(MSG)).text
    finally:
        gc.enable()
        fleet["oai"].tokens_per_s = saved
    for _ in range(50):
        if fleet["oai"].in_flight == 0:
            break
        await anyio.sleep(0.02)
    assert fleet["oai"].in_flight == 0


async def test_stream_read_to_the_end_or_closed_gives_no_warning(fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(make_config(fleet)) as r:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="llmroute stream", category=ResourceWarning)
            s = r.stream(MSG)
            async for _ in s:
                pass
            del s
            s = r.stream(MSG)
            async for _ in s:
                break
            await s.aclose()
            del s
            gc.collect()


# ---------------------------------------------------------------------------- the admission line
async def test_admission_is_fifo_and_cancelled_waiters_leave_or_pass_their_place_on() -> None:
    from llmroute.execute import Admission

    adm = Admission(2)
    order: list[int] = []
    holders = [object() for _ in range(6)]
    await adm.acquire(holders[0])
    await adm.acquire(holders[1])
    assert adm.in_flight == 2 and adm.waiting == 0

    async def wait(i: int) -> None:
        await adm.acquire(holders[i])
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in (2, 3, 4):
            tg.start_soon(wait, i)
        await anyio.sleep(0.01)
        assert adm.waiting == 3
        with anyio.CancelScope() as scope:  # a waiter cancelled in line leaves it
            scope.cancel()
            await adm.acquire(holders[5])
        assert adm.waiting == 3
        adm.release(holders[0])  # hands the place to 2
        adm.release(holders[1])  # hands the place to 3
        tg.cancel_scope.cancel()  # 4 is cancelled while waiting; 2 and 3 may be cancelled after the handover
    assert adm.waiting == 0
    # places handed to cancelled waiters were passed on, never lost or duplicated
    assert adm.in_flight == len(order)
    for i in order:
        adm.release(holders[i])
    assert adm.in_flight == 0
    await adm.acquire(holders[0])
    await adm.acquire(holders[1])
    assert adm.in_flight == 2


async def test_admission_waiters_cancelled_anywhere_in_line_leave_it_and_the_rest_keep_their_order() -> None:
    from llmroute.execute import Admission

    adm = Admission(1)
    first = object()
    await adm.acquire(first)
    holders = [object() for _ in range(10)]
    scopes: dict[int, anyio.CancelScope] = {}
    admitted: list[int] = []
    line: list[int] = []  # the order the waiters joined the line (trio starts tasks in any order)

    async def wait(i: int) -> None:
        with anyio.CancelScope() as scope:
            scopes[i] = scope
            line.append(i)  # no checkpoint before acquire queues it
            await adm.acquire(holders[i])
            admitted.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(wait, i)
        await anyio.sleep(0.01)
        assert adm.waiting == 10
        cancelled = {line[0], line[4], line[9]}  # the head, the middle and the tail of the line
        for i in cancelled:
            scopes[i].cancel()
        await anyio.sleep(0.01)
        assert adm.waiting == 7 and adm.in_flight == 1
        adm.release(first)
        for _ in range(7):
            await anyio.sleep(0.01)
            adm.release(holders[admitted[-1]])
    assert admitted == [i for i in line if i not in cancelled]
    assert adm.in_flight == 0 and adm.waiting == 0


async def test_a_place_handed_to_a_waiter_cancelled_before_it_ran_goes_to_the_next() -> None:
    from llmroute.execute import Admission

    adm = Admission(1)
    first, a, b = object(), object(), object()
    await adm.acquire(first)
    admitted: list[object] = []

    async def wait(holder: object, scope: anyio.CancelScope) -> None:
        with scope:
            await adm.acquire(holder)
            admitted.append(holder)

    scope_a, scope_b = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, a, scope_a)
        tg.start_soon(wait, b, scope_b)
        await anyio.sleep(0.01)
        adm.release(first)  # the place is handed to a ...
        scope_a.cancel()  # ... which is cancelled before it could run: it takes the place or passes it on
        await anyio.sleep(0.01)
        assert adm.in_flight == 1 and len(admitted) == 1  # neither lost nor duplicated
        if admitted == [a]:  # (asyncio: a woken task's cancellation waits for its next checkpoint)
            assert adm.waiting == 1
            adm.release(a)
            await anyio.sleep(0.01)
        assert admitted[-1] is b and adm.in_flight == 1 and adm.waiting == 0
    adm.release(b)
    assert adm.in_flight == 0


async def test_admission_passes_over_a_waiter_too_close_to_its_deadline() -> None:
    """A freed place goes to the first waiter with time left for a request (at least what the
    fastest recent ones took); the one passed over still ends at its own deadline, by its scope."""
    from llmroute.execute import Admission

    adm = Admission(1)
    assert adm.fast_s is None
    for _ in range(Admission.HOLDS_NEEDED):
        h = object()
        await adm.acquire(h)
        adm.release(h, held_s=0.2)
    assert adm.fast_s == pytest.approx(0.2)
    first, near, far, open_ended = object(), object(), object(), object()
    await adm.acquire(first)
    admitted: list[object] = []
    ended_at: dict[object, float] = {}

    async def wait(holder: object, deadline_s: float | None) -> None:
        deadline_at = None if deadline_s is None else adm.clock() + deadline_s
        with anyio.move_on_after(math.inf if deadline_s is None else deadline_s):
            await adm.acquire(holder, deadline_at)
            admitted.append(holder)
        ended_at[holder] = adm.clock()
        if deadline_at is not None and holder not in admitted:
            assert ended_at[holder] >= deadline_at

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, near, 0.1)  # first in line, but 0.1 s is less than the fastest requests take
        await anyio.sleep(0.01)
        tg.start_soon(wait, far, 5.0)
        await anyio.sleep(0.01)
        tg.start_soon(wait, open_ended, None)  # no deadline given: never passed over
        await anyio.sleep(0.01)
        adm.release(first)
        await anyio.sleep(0.01)
        assert admitted == [far] and adm.waiting == 1  # near left the line, waiting for its deadline
        await anyio.sleep(0.15)
        assert near in ended_at and near not in admitted
        assert adm.in_flight == 1  # near's cancellation handed nothing over
        adm.release(far)
        await anyio.sleep(0.01)
        assert admitted == [far, open_ended]
        adm.release(open_ended, held_s=0.01)
    assert adm.in_flight == 0 and adm.waiting == 0


async def test_a_call_cut_off_in_the_admission_line_says_so_in_its_trace(fleet: Fleet) -> None:
    """Its deadline ends it while it waits for a place: a DeadlineExceededError at the deadline, the
    attempt cancelled with its wait in ``queued_s``, nothing billed and the place never taken."""
    cfg = make_config(fleet, max_connections=1, max_keepalive_connections=1)
    traces: list[llmroute.RouteTrace] = []

    class Traces(llmroute.Hooks):
        def call_finished(self, trace: Any, reply: Any, error: BaseException | None) -> None:
            traces.append(trace)

    saved = fleet["oai"].ttft_s
    fleet["oai"].ttft_s = 0.4
    try:
        async with llmroute.Router.from_dict(cfg, hooks=[Traces()]) as r:
            await r.warmup()
            async with anyio.create_task_group() as tg:
                tg.start_soon(r.complete, MSG)  # holds the only place for 0.4 s
                await anyio.sleep(0.05)
                t = time.perf_counter()
                with pytest.raises(llmroute.DeadlineExceededError):
                    await r.complete(MSG, model="small", deadline_s=0.1)
                assert 0.09 < time.perf_counter() - t < 0.3
            adm = r._executor.admission
            assert adm is not None and adm.in_flight == 0 and adm.waiting == 0
    finally:
        fleet["oai"].ttft_s = saved
    cut = next(tr for tr in traces if tr.attempts and tr.attempts[0].outcome == "cancelled")
    (attempt,) = cut.attempts
    assert attempt.queued_s >= 0.09 and attempt.cost_usd == 0.0
