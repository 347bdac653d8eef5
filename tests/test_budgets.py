"""Budgets declared in the config: scopes, windows, the ledger over the in-process store, what a
route does when a budget refuses, and holds that never leak (cancelled reserves, store outages)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import anyio
import pytest
from conftest import make_config

import llmroute
from llmroute.config import BudgetConfig
from llmroute.policy.budget import Ledger, Spend, applicable, budget_wait, window_of
from llmroute.stores import Counter, Refusal, StoreUnavailableError
from llmroute.stores.memory import MemoryStore
from llmroute.testing import Fleet

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "Tell me about the weather today, please."}]


def budgets(*items: dict[str, Any]) -> list[BudgetConfig]:
    return [BudgetConfig.model_validate(item) for item in items]


def spend(**kw: Any) -> Spend:
    base: dict[str, Any] = {"route": "default", "model": "small", "deployment": "oai/small-1", "provider": "oai"}
    base.update(kw)
    return Spend(**base)


class Clock:
    """Wall-clock time that tests move by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("budget", "path", "reason"),
    [
        ({"scope": "users", "limit_usd": 1}, "budgets.0.scope", "Input should be"),
        ({"scope": "user", "limit_usd": float("nan")}, "budgets.0.limit_usd", "finite"),
        ({"scope": "user", "limit_usd": 0}, "budgets.0.limit_usd", "greater than 0"),
        ({"scope": "user", "limit_usd": 1, "window": "week"}, "budgets.0.window", "Input should be"),
        ({"scope": "global", "limit_usd": 1, "match": ["x"]}, "budgets.0.match", "no values to match"),
        ({"scope": "call", "limit_usd": 1, "window": "day"}, "budgets.0.window", "no window"),
        ({"scope": "route", "limit_usd": 1, "match": ["nope"]}, "budgets.0.match.0", "unknown route 'nope'"),
        ({"scope": "model", "limit_usd": 1, "match": ["huge"]}, "budgets.0.match.0", "unknown model 'huge'"),
        ({"scope": "key", "limit_usd": 1, "match": ["opnai"]}, "budgets.0.match.0", "unknown key 'opnai'"),
        ({"scope": "user", "limit_usd": 1, "colour": "red"}, "budgets.0.colour", "Extra inputs"),
    ],
)
def test_bad_budgets_are_config_errors_with_field_paths(
    fleet: Fleet, budget: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.load_config(make_config(fleet, budgets=[budget]))
    assert any(p == path and reason in r for p, r in info.value.errors), info.value.errors


def test_duplicate_budget_names_and_bad_store_and_route_mode(fleet: Fleet) -> None:
    cfg = make_config(fleet, budgets=[{"scope": "user", "limit_usd": 1}, {"scope": "user", "limit_usd": 2}])
    cfg["store"] = {"url": "postgres://x"}
    cfg["routes"]["default"]["on_budget_exceeded"] = "pray"
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.load_config(cfg)
    paths = {p for p, _ in info.value.errors}
    assert {"store.url", "routes.default.on_budget_exceeded"} <= paths
    cfg = make_config(fleet, budgets=[{"scope": "user", "limit_usd": 1}, {"scope": "user", "limit_usd": 2}])
    with pytest.raises(llmroute.ConfigError, match=r"budgets\.1\.name: budget name 'user/total' is already used"):
        llmroute.load_config(cfg)


def test_budget_argument_and_config_budgets_are_exclusive(fleet: Fleet) -> None:
    cfg = make_config(fleet, budgets=[{"scope": "global", "limit_usd": 1}])
    with pytest.raises(llmroute.ConfigError, match="not both"):
        llmroute.Router.from_dict(cfg, budget=llmroute.MemoryBudget(1.0))


# ---------------------------------------------------------------------------- windows and scopes
def test_windows_are_utc_calendar_windows() -> None:
    t = datetime(2024, 12, 31, 23, 59, 30, tzinfo=timezone.utc).timestamp()
    assert window_of("month", t) == ("2024-12", datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())
    wid, end = window_of("minute", t)
    assert end == t + 30 and window_of("minute", t + 30)[0] != wid
    assert window_of("day", t)[1] == datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
    assert window_of("hour", t)[1] == t + 30
    assert window_of("total", t) == ("total", None)


def test_applicable_scopes() -> None:
    bs = budgets(
        {"scope": "global", "limit_usd": 10},
        {"scope": "user", "limit_usd": 1, "window": "day"},
        {"scope": "tag", "limit_usd": 2, "match": ["team-a"]},
        {"scope": "model", "limit_usd": 3},
        {"scope": "key", "limit_usd": 4, "window": "hour"},
        {"scope": "route", "limit_usd": 5, "match": ["other"]},
        {"scope": "call", "limit_usd": 0.5},
    )
    got = applicable(bs, spend(user="alice", tags=("team-a", "team-b", "team-a")), 1_700_000_000.0, 600.0)
    assert [a.scope for a in got] == [
        "global/total",
        "user/day[alice]",
        "tag/total[team-a]",
        "model/total[small]",
        "key/hour[oai]",
    ]
    assert got[1].counter.ttl_s is not None and got[0].counter.ttl_s is None
    # no user given: user budgets do not apply; keys are quoted
    got = applicable(bs, spend(model="a:b/c"), 0.0, 600.0)
    assert [a.scope for a in got] == ["global/total", "model/total[a:b/c]", "key/hour[oai]"]
    assert "a%3Ab%2Fc" in got[1].counter.key


def test_budget_wait_policy() -> None:
    exc = llmroute.BudgetExceededError("x", 1.0, 0.9, 0.2, retry_after_s=0.01)
    assert budget_wait(exc, 0.0, 0, None) == 0.01  # the window frees first
    exc = llmroute.BudgetExceededError("x", 1.0, 0.9, 0.2)
    assert budget_wait(exc, 0.0, 0, 5.0) == 0.05 and budget_wait(exc, 0.0, 10, 5.0) == 1.0
    assert budget_wait(exc, 0.0, 10, 0.5) is None  # past the deadline
    assert budget_wait(exc, 59.5, 10, None) is None  # past the longest wait
    assert budget_wait(llmroute.BudgetExceededError("x", 1.0, 0.0, 2.0), 0.0, 0, None) is None  # never fits
    spent_for_good = llmroute.BudgetExceededError("x", 1.0, 0.9, 0.2, held=0.05)
    assert budget_wait(spent_for_good, 0.0, 0, None) is None  # settling 0.05 cannot free 0.1
    assert budget_wait(llmroute.BudgetExceededError("x", 1.0, 0.9, 0.2, held=0.5), 0.0, 0, None) == 0.05


def test_error_keeps_old_and_new_attributes() -> None:
    exc = llmroute.BudgetExceededError("user/day[alice]", 1.0, 0.75, 0.5)
    assert (exc.scope, exc.limit, exc.spent, exc.requested) == ("user/day[alice]", 1.0, 0.75, 0.5)
    assert (exc.budget, exc.limit_usd, exc.spent_usd, exc.needed_usd) == ("user/day[alice]", 1.0, 0.75, 0.5)
    assert "would be exceeded by $0.250000" in str(exc)
    old = llmroute.BudgetExceededError("tiny", limit_usd=1.0, spent_usd=0.5, needed_usd=0.75)
    assert old.scope == "tiny" and old.requested == 0.75


# ---------------------------------------------------------------------------- the ledger
async def test_ledger_reserves_on_every_scope_all_or_nothing_and_names_the_tightest() -> None:
    store, clock = MemoryStore(), Clock()
    ledger = Ledger(
        budgets(
            {"scope": "global", "limit_usd": 1.0},
            {"scope": "user", "limit_usd": 0.30, "window": "day"},
            {"scope": "tag", "limit_usd": 0.25, "match": ["team-a"]},
        ),
        store,
        clock=clock,
    )
    r1 = await ledger.reserve(0.2, spend(user="alice", tags=("team-a",)))
    with pytest.raises(llmroute.BudgetExceededError) as info:
        await ledger.reserve(0.1, spend(user="alice", tags=("team-a",)))
    exc = info.value
    assert exc.scope == "tag/total[team-a]" and exc.limit == 0.25 and exc.spent == pytest.approx(0.2)
    assert exc.requested == pytest.approx(0.1) and exc.retry_after_s is None
    assert await ledger.usage("global/total") == (pytest.approx(0.0), pytest.approx(0.2))  # refused: nothing held
    await ledger.settle(r1, 0.05)
    await ledger.settle(r1, 0.05)  # idempotent
    assert await ledger.usage("user/day", "alice") == (pytest.approx(0.05), 0.0)
    r2 = await ledger.reserve(0.2, spend(user="alice", tags=("team-a",)))
    with pytest.raises(llmroute.BudgetExceededError) as info:
        await ledger.reserve(0.1, spend(user="alice"))
    assert info.value.scope == "user/day[alice]" and info.value.retry_after_s is not None
    await ledger.reserve(0.1, spend(user="bob"))  # another user has their own day
    await ledger.settle(r2, 0.0)
    assert ledger.open_reservations == 1 and await store.open_holds() == 1


async def test_windows_free_when_they_end() -> None:
    clock = Clock(datetime(2025, 3, 1, 12, 0, 59, tzinfo=timezone.utc).timestamp())
    ledger = Ledger(budgets({"scope": "user", "limit_usd": 0.1, "window": "minute"}), MemoryStore(), clock=clock)
    r = await ledger.reserve(0.1, spend(user="alice"))
    await ledger.settle(r, 0.1)
    with pytest.raises(llmroute.BudgetExceededError) as info:
        await ledger.reserve(0.01, spend(user="alice"))
    assert info.value.retry_after_s == pytest.approx(1.0)
    clock.now += 1.0
    await ledger.reserve(0.1, spend(user="alice"))


async def test_per_call_budget_counts_every_attempt_of_the_call() -> None:
    ledger = Ledger(budgets({"scope": "call", "limit_usd": 0.01}), MemoryStore())
    await ledger.reserve(0.006, spend())
    with pytest.raises(llmroute.BudgetExceededError) as info:
        await ledger.reserve(0.006, spend(call_spent_usd=0.005))
    assert info.value.scope == "call/total" and info.value.spent == 0.005


async def test_expired_hold_is_charged_in_full_and_a_late_settle_counts_nothing() -> None:
    store, clock = MemoryStore(), Clock()
    ledger = Ledger(budgets({"scope": "global", "limit_usd": 1.0}), store, clock=clock, hold_ttl_s=60)
    r = await ledger.reserve(0.4, spend())
    clock.now += 61  # the process holding it "died"
    await ledger.reserve(0.1, spend())  # any reserve expires old holds
    assert await ledger.usage("global/total") == (pytest.approx(0.4), pytest.approx(0.1))
    await ledger.settle(r, 0.01)  # too late: its worst case was already charged
    assert await ledger.usage("global/total") == (pytest.approx(0.4), pytest.approx(0.1))


class SlowStore(MemoryStore):
    """A store whose reserve reaches the server only after *delay* seconds, like a request in flight
    on a slow network: cancelling the caller does not stop it."""

    def __init__(self, tg: anyio.abc.TaskGroup, delay: float) -> None:
        super().__init__()
        self.tg = tg
        self.delay = delay
        self.arrived = anyio.Event()

    async def reserve(self, hold_id: str, amount: int, counters: Sequence[Counter], **kw: Any) -> Refusal | None:
        async def in_flight() -> None:
            await anyio.sleep(self.delay)
            await MemoryStore.reserve(self, hold_id, amount, counters, **kw)
            self.arrived.set()

        self.tg.start_soon(in_flight)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_reserve_cancelled_mid_way_leaves_no_hold_even_when_it_lands_later() -> None:
    async with anyio.create_task_group() as tg:
        store = SlowStore(tg, delay=0.05)
        ledger = Ledger(budgets({"scope": "global", "limit_usd": 1.0}), store)
        with anyio.move_on_after(0.01):
            await ledger.reserve(0.5, spend())
        await store.arrived.wait()  # the reserve reached the store after its release
    assert await store.open_holds() == 0 and ledger.open_reservations == 0
    assert await ledger.usage("global/total") == (0.0, 0.0)


async def test_reserve_cancelled_after_it_landed_is_released() -> None:
    class LateReply(MemoryStore):
        async def reserve(self, *args: Any, **kw: Any) -> Refusal | None:
            await MemoryStore.reserve(self, *args, **kw)
            await anyio.sleep_forever()  # the reply never comes back
            raise AssertionError("unreachable")

    store = LateReply()
    ledger = Ledger(budgets({"scope": "global", "limit_usd": 1.0}), store, timeout_s=5.0)
    with anyio.move_on_after(0.01):
        await ledger.reserve(0.5, spend())
    assert await store.open_holds() == 0 and await ledger.usage("global/total") == (0.0, 0.0)


class DownStore(MemoryStore):
    """A store that cannot be reached."""

    async def reserve(self, *args: Any, **kw: Any) -> Refusal | None:
        raise StoreUnavailableError("connection refused")

    async def settle(self, *args: Any, **kw: Any) -> bool:
        raise StoreUnavailableError("connection refused")

    async def charge(self, *args: Any, **kw: Any) -> None:
        raise StoreUnavailableError("connection refused")


class HangingStore(MemoryStore):
    async def reserve(self, *args: Any, **kw: Any) -> Refusal | None:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_store_outage_fails_closed_or_open_as_each_budget_chose(caplog: pytest.LogCaptureFixture) -> None:
    closed = Ledger(budgets({"scope": "global", "limit_usd": 1.0}), DownStore())
    with pytest.raises(llmroute.BudgetExceededError, match="store is unavailable") as info:
        await closed.reserve(0.1, spend())
    assert info.value.scope == "global/total"
    mixed = budgets(
        {"scope": "global", "limit_usd": 1.0, "on_store_error": "fail_open"}, {"scope": "model", "limit_usd": 1}
    )
    with pytest.raises(llmroute.BudgetExceededError, match="fails closed"):
        await Ledger(mixed, DownStore()).reserve(0.1, spend())
    opened = Ledger(mixed[:1], HangingStore(), timeout_s=0.05)
    with caplog.at_level(logging.WARNING, logger="llmroute"):
        r = await opened.reserve(0.1, spend())
        await opened.reserve(0.1, spend())
    warnings = [rec for rec in caplog.records if rec.name == "llmroute.budget"]
    assert len(warnings) == 1 and "fail_open" in warnings[0].getMessage()  # one warning, not one per call
    await opened.settle(r, 0.05)  # recorded once the store answers (here: the memory part)
    assert await opened.usage("global/total") == (pytest.approx(0.05), 0.0)


async def test_settle_is_bounded_in_time_when_the_store_hangs(caplog: pytest.LogCaptureFixture) -> None:
    class HangingSettle(MemoryStore):
        async def settle(self, *args: Any, **kw: Any) -> bool:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    ledger = Ledger(budgets({"scope": "global", "limit_usd": 1.0}), HangingSettle(), timeout_s=0.05)
    r = await ledger.reserve(0.1, spend())
    with anyio.fail_after(1), anyio.CancelScope(shield=True):
        await ledger.settle(r, 0.05)
    assert "charged in full when it expires" in caplog.text


# ---------------------------------------------------------------------------- through the router
def budget_config(fleet: Fleet, *items: dict[str, Any], mode: str = "downgrade") -> dict[str, Any]:
    cfg = make_config(fleet, budgets=list(items))
    cfg["routes"]["default"]["on_budget_exceeded"] = mode
    cfg["routes"]["default"]["max_output_tokens"] = 100
    return cfg


async def test_user_and_tags_scope_the_router_budgets(fleet: Fleet) -> None:
    cfg = budget_config(
        fleet, {"scope": "user", "limit_usd": 0.00005, "window": "day"}, {"scope": "tag", "limit_usd": 1.0}
    )
    async with llmroute.Router.from_dict(cfg) as r:
        reply = await r.complete(MSG, user="alice", tags=["team-a"])
        ledger = r.budget
        assert isinstance(ledger, Ledger)
        spent, held = await ledger.usage("user/day", "alice")
        assert spent == pytest.approx(reply.cost_usd, abs=1e-9) and held == 0
        assert (await ledger.usage("tag/total", "team-a"))[0] == pytest.approx(reply.cost_usd, abs=1e-9)
        with pytest.raises(llmroute.BudgetExceededError) as info:
            for _ in range(20):
                await r.complete(MSG, user="alice")
        assert info.value.scope == "user/day[alice]"
        assert (await r.complete(MSG, user="bob")).text
        assert await r.store.open_holds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("user", "tags"),
    [(123, None), ("", None), ("x" * 300, None), ("\ud800", None), (None, "team-a"), (None, [1]), (None, ["a"] * 65)],
)
async def test_bad_user_or_tags_are_refused_before_sending(fleet: Fleet, user: Any, tags: Any) -> None:
    async with llmroute.Router.from_dict(budget_config(fleet, {"scope": "user", "limit_usd": 1})) as r:
        with pytest.raises(llmroute.InvalidRequestError):
            await r.complete(MSG, user=user, tags=tags)
        with pytest.raises(llmroute.InvalidRequestError):
            r.stream(MSG, user=user, tags=tags)
    assert sum(fleet[n].calls for n in ("oai", "oai2", "claude", "gem")) == 0


async def test_refuse_downgrade_and_wait_routes(fleet: Fleet) -> None:
    tight = {"scope": "model", "limit_usd": 1e-6, "match": ["small"]}
    async with llmroute.Router.from_dict(budget_config(fleet, tight, mode="downgrade")) as r:
        reply = await r.complete(MSG)
        assert reply.model == "claude"  # the best candidate that still fits
        async with r.stream(MSG) as s:
            assert await s.text()
        assert s.reply is not None and s.reply.model == "claude"
    async with llmroute.Router.from_dict(budget_config(fleet, tight, mode="refuse")) as r:
        with pytest.raises(llmroute.BudgetExceededError) as info:
            await r.complete(MSG)
        assert info.value.scope == "model/total[small]"
        with pytest.raises(llmroute.BudgetExceededError):
            async with r.stream(MSG) as s:
                await s.text()
    assert fleet["claude"].calls == 2 and fleet["oai"].calls == 0


async def test_wait_route_waits_for_a_hold_to_settle_within_the_deadline(fleet: Fleet) -> None:
    cfg = budget_config(fleet, {"scope": "global", "limit_usd": 0.00006}, mode="wait")
    cfg["routes"]["default"]["models"] = ["small"]
    fleet["oai"].ttft_s = 0.2
    try:
        async with llmroute.Router.from_dict(cfg) as r:
            plan = r.plan(MSG)
            worst = plan.candidates[0].candidate.max_cost_usd
            assert worst < 0.00006 < 2 * worst  # one hold at a time
            replies: list[Any] = []

            async def one() -> None:
                replies.append(await r.complete(MSG, deadline_s=3))

            t = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
            assert len(replies) == 2 and anyio.current_time() - t >= 0.4  # the second waited for the first
            # a deadline too short to wait for: refused at once, with the budget's error
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                await anyio.sleep(0.05)
                with pytest.raises(llmroute.BudgetExceededError):
                    await r.complete(MSG, deadline_s=0.1)
    finally:
        fleet["oai"].ttft_s = 0.0


async def test_per_call_budget_stops_retries_and_fallback(fleet: Fleet) -> None:
    cfg = budget_config(fleet, {"scope": "call", "limit_usd": 0.00008})
    fleet["oai"].enqueue(llmroute.testing.Fault.server_error(500))
    async with llmroute.Router.from_dict(cfg) as r:
        worst = r.plan(MSG).candidates[0].candidate.max_cost_usd
        reply = await r.complete(MSG)  # an error status costs nothing: the retry fits
        assert [a.status for a in reply.route.attempts] == [500, None]
        fleet["oai"].enqueue(llmroute.testing.Fault.reset())
        calls = sum(fleet[n].calls for n in ("oai", "oai2", "claude", "gem"))
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            await r.complete(MSG)
    # a reset connection may have been billed in full: no second worst case fits in the call
    first, *rest = info.value.errors
    assert isinstance(first, llmroute.ProviderError) and first.status is None
    assert rest and all(isinstance(e, llmroute.BudgetExceededError) and e.scope == "call/total" for e in rest)
    assert rest[0].spent == pytest.approx(worst)  # type: ignore[attr-defined]
    assert sum(fleet[n].calls for n in ("oai", "oai2", "claude", "gem")) == calls + 1


async def test_cancelled_calls_leave_no_holds_through_the_router(fleet: Fleet) -> None:
    cfg = budget_config(fleet, {"scope": "global", "limit_usd": 1.0})
    fleet["oai"].ttft_s = 0.5
    try:
        async with llmroute.Router.from_dict(cfg) as r:
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(r.complete, MSG)
                await anyio.sleep(0.1)
                tg.cancel_scope.cancel()
            assert await r.store.open_holds() == 0  # type: ignore[union-attr]
            spent, held = await r.budget.usage("global/total")  # type: ignore[union-attr]
            assert held == 0 and spent > 0  # sent, then cancelled: charged at the worst case
    finally:
        fleet["oai"].ttft_s = 0.0


def test_store_url_is_a_secret(fleet: Fleet) -> None:
    cfg = make_config(fleet, budgets=[{"scope": "global", "limit_usd": 1}], store={"url": "redis://:hunter2@h:1/0"})
    router = llmroute.Router.from_dict(cfg)
    assert "hunter2" not in repr(router.config) + repr(router) + repr(router.store) + str(router.config.model_dump())
    for bad in ("postgres://:hunter2@h", "memcached://x"):
        with pytest.raises(llmroute.ConfigError) as info:
            llmroute.load_config(make_config(fleet, store={"url": bad}))
        assert "hunter2" not in str(info.value) and info.value.errors[0][0] == "store.url"
