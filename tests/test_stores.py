"""The store contract, on the in-process store and on a real Redis (started by the tests), under
asyncio and trio: atomic all-or-nothing holds, settles, expiry, tombstones, token buckets, key/values."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from llmroute.stores import Bucket, Counter, Refusal, Store, StoreUnavailableError, from_url
from llmroute.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0


def counters(*limits: int, ttl_s: float | None = None) -> list[Counter]:
    return [Counter(f"b:c{i}", limit, ttl_s) for i, limit in enumerate(limits)]


async def test_reserve_is_all_or_nothing_and_names_the_tightest_counter(store: Store) -> None:
    cs = counters(100, 50, 1000)
    assert await store.reserve("h1", 40, cs, now=NOW, hold_ttl_s=60) is None
    assert [await store.counter(c.key) for c in cs] == [(0, 40)] * 3
    assert await store.reserve("h2", 20, cs, now=NOW, hold_ttl_s=60) == Refusal(1, 40, 40)
    assert [await store.counter(c.key) for c in cs] == [(0, 40)] * 3  # nothing held by the refusal
    assert await store.settle("h1", 7, now=NOW) is True
    assert await store.settle("h1", 7, now=NOW) is False  # once
    assert [await store.counter(c.key) for c in cs] == [(7, 0)] * 3
    assert await store.reserve("h3", 43, cs, now=NOW, hold_ttl_s=60) is None  # exactly at the limit
    assert await store.reserve("h4", 1, cs, now=NOW, hold_ttl_s=60) == Refusal(1, 50, 43)
    assert await store.open_holds() == 1


async def test_big_amounts_stay_exact(store: Store) -> None:
    big = 9_000_000_000_000_000  # $9M in nano-dollars, near 2**53
    cs = counters(big)
    assert await store.reserve("h", big - 1, cs, now=NOW, hold_ttl_s=60) is None
    await store.settle("h", big - 3, now=NOW)
    assert await store.counter(cs[0].key) == (big - 3, 0)
    assert await store.reserve("h2", 4, cs, now=NOW, hold_ttl_s=60) == Refusal(0, big - 3, 0)


async def test_expired_holds_are_charged_in_full(store: Store) -> None:
    cs = counters(100)
    await store.reserve("dead", 30, cs, now=NOW, hold_ttl_s=10)
    await store.reserve("alive", 5, cs, now=NOW + 11, hold_ttl_s=10)
    assert await store.counter(cs[0].key) == (30, 5)
    assert await store.settle("dead", 1, now=NOW + 12) is False
    assert await store.open_holds() == 1


async def test_released_id_blocks_a_late_reserve(store: Store) -> None:
    cs = counters(100)
    assert await store.settle("late", 0, now=NOW, cancelled=True) is False
    assert await store.reserve("late", 30, cs, now=NOW, hold_ttl_s=60) is None
    assert await store.counter(cs[0].key) == (0, 0) and await store.open_holds() == 0


async def test_counters_expire_with_their_window(store: Store) -> None:
    cs = counters(100, ttl_s=0.3)
    await store.reserve("h", 30, cs, now=NOW, hold_ttl_s=0.1)
    await store.settle("h", 30, now=NOW)
    assert await store.counter(cs[0].key) == (30, 0)
    if isinstance(store, MemoryStore):  # memory expiry runs on the caller's clock
        await store.reserve("h2", 1, counters(100), now=NOW + 1, hold_ttl_s=1)
        assert await store.counter(cs[0].key) == (0, 1)
    else:  # Redis expires keys itself
        await anyio.sleep(0.5)
        assert await store.counter(cs[0].key) == (0, 0)


async def test_charge_without_a_hold(store: Store) -> None:
    cs = counters(100, 100)
    await store.charge(12, cs)
    assert [await store.counter(c.key) for c in cs] == [(12, 0), (12, 0)]


async def test_concurrent_reserves_never_overcommit(store: Store) -> None:
    cs = counters(1000)
    held: list[str] = []

    async def one(i: int) -> None:
        if await store.reserve(f"h{i}", 7, cs, now=NOW, hold_ttl_s=60) is None:
            held.append(f"h{i}")

    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(one, i)
    assert len(held) == 1000 // 7
    assert await store.counter(cs[0].key) == (0, 7 * len(held))


async def test_token_buckets(store: Store) -> None:
    req, tok = Bucket("rl:d:requests", 2, 1.0), Bucket("rl:d:tokens", 100, 10.0)
    assert await store.take([req, tok], [1, 60], now=NOW) == 0
    assert await store.take([req, tok], [1, 60], now=NOW) == pytest.approx(2.0)  # tokens short by 20: 2 s
    assert await store.take([req, tok], [1, 30], now=NOW) == 0  # nothing was taken by the refusal
    assert await store.take([req, tok], [1, 1], now=NOW) == pytest.approx(1.0)  # requests empty
    assert await store.take([req, tok], [1, 1], now=NOW + 1.0) == 0
    assert math.isinf(await store.take([tok], [101], now=NOW + 100))
    # a provider's headers lower a bucket and hold its refill
    await store.cap_bucket(req, 0, now=NOW + 100, refill_at=NOW + 105)
    assert await store.take([req], [1], now=NOW + 101) == pytest.approx(5.0)
    assert await store.take([req], [1], now=NOW + 106) == 0
    await store.cap_bucket(req, 5, now=NOW + 106)  # never raises a bucket
    assert await store.take([req], [1], now=NOW + 106) == pytest.approx(1.0)


async def test_key_value_seam(store: Store) -> None:
    assert await store.get("health", "oai") is None
    await store.put("health", "oai", '{"p50": 0.2}')
    assert await store.get("health", "oai") == '{"p50": 0.2}'
    assert await store.get("learning", "oai") is None  # namespaces are apart
    assert await store.add("learning", "n", 1.5) == 1.5
    assert await store.add("learning", "n", 2) == 3.5
    await store.put("health", "tmp", "x", ttl_s=0.05)
    await anyio.sleep(0.2)
    assert await store.get("health", "tmp") is None


async def test_unreachable_redis_is_a_typed_error_within_the_timeout(redis_server: Any) -> None:
    from llmroute.testing.redis_server import _free_port

    s = from_url(f"redis://127.0.0.1:{_free_port()}/0", timeout_s=0.2)
    t = anyio.current_time()
    with pytest.raises(StoreUnavailableError):
        await s.reserve("h", 1, counters(10), now=NOW, hold_ttl_s=1)
    assert anyio.current_time() - t < 2.0
    await s.aclose()
