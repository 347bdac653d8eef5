"""Config budgets under fire, on the in-process store and on a real Redis: many concurrent callers
with random costs, cancellations, timeouts and abandoned streams never make the providers serve more
than the limit, and every reservation is settled; a Redis killed mid-run and restarted neither
overspends nor stops the fleet, and each budget's fail mode is honoured."""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

import anyio
import pytest
from test_reliability import (  # noqa: F401 (spend_fleet is a fixture)
    MSG,
    provider_spend,
    race_random_calls,
    spend_config,
    spend_fleet,
)

import llmroute
from llmroute.policy.budget import Ledger
from llmroute.testing import Fleet

pytestmark = pytest.mark.anyio

USERS = ["u0", "u1", "u2"]


def shared_config(fleet: Fleet, store: dict[str, Any], *budgets: dict[str, Any], **route: Any) -> dict[str, Any]:
    cfg = spend_config(fleet, **route)
    cfg["budgets"] = list(budgets)
    cfg["store"] = store
    return cfg


def store_config(kind: str, request: pytest.FixtureRequest, **extra: Any) -> dict[str, Any]:
    if kind == "memory":
        return {"url": "memory://", **extra}
    server = request.getfixturevalue("redis_server")
    return {"url": server.url, "prefix": f"p{uuid.uuid4().hex[:8]}", "timeout_s": 2.0, **extra}


@pytest.mark.parametrize("kind", ["memory", "redis"])
@pytest.mark.parametrize("seed", [1, 2])
async def test_shared_budget_is_never_overspent_and_every_hold_settles(
    spend_fleet: Fleet,  # noqa: F811
    request: pytest.FixtureRequest,
    kind: str,
    seed: int,
) -> None:
    """Property: concurrent callers (complete, stream, abandoned stream) with random users and tags,
    replies longer than any estimate, random cancellations and deadlines, against a global budget
    and per-user daily budgets kept in the store: the providers never serve more than the global
    limit, no user's spending passes theirs, and no hold is left."""
    spend_fleet.reset()
    rng = random.Random(seed)
    limit, per_user = 0.02, 0.009
    cfg = shared_config(
        spend_fleet,
        store_config(kind, request),
        {"scope": "global", "limit_usd": limit},
        {"scope": "user", "limit_usd": per_user, "window": "day"},
        max_output_tokens=800,
        on_budget_exceeded=rng.choice(["downgrade", "wait"]),
    )
    router = llmroute.Router.from_dict(cfg)

    def who() -> dict[str, Any]:
        return {"user": rng.choice(USERS), "tags": rng.sample(["a", "b", "c"], rng.randint(0, 2))}

    async with router:
        outcomes = await race_random_calls(router, rng, who)
        ledger = router.budget
        assert isinstance(ledger, Ledger) and router.store is not None
        assert ledger.open_reservations == 0 and await router.store.open_holds() == 0
        spent, held = await ledger.usage("global/total")
        users = [await ledger.usage("user/day", u) for u in USERS]
    served = provider_spend(spend_fleet)
    assert held == 0 and all(h == 0 for _, h in users)
    assert served <= limit, f"providers served ${served:.6f} against a limit of ${limit}"
    assert spent <= limit and all(s <= per_user for s, _ in users)
    assert served <= spent + 1e-9  # the budget never counts less than the providers billed
    assert "BudgetExceededError" in outcomes and "ok" in outcomes  # the limits were really reached


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
async def test_redis_killed_mid_run_and_restarted(
    spend_fleet: Fleet,  # noqa: F811
    mode: str,
    caplog: pytest.LogCaptureFixture,
    anyio_backend: str,
) -> None:
    """Redis (append-only, fsync always) is killed while 30 workers call in a loop, and restarted
    after a second. Half the workers tag their calls with a small budget that is spent before the
    kill. fail_closed refuses during the outage, meters everything the providers served, and still
    refuses the spent tag after the restart; fail_open serves with a warning; both resume once Redis
    is back, and every hold is settled or, for settles that met the outage, charged in full."""
    from llmroute.testing.redis_server import RedisServer, RedisServerNotFound

    pytest.importorskip("redis", reason="the redis package is not installed")
    try:
        server = RedisServer(appendonly=True)
    except RedisServerNotFound:
        pytest.skip("redis-server not found on PATH (Debian: apt-get install redis-server)")
    spend_fleet.reset()
    small = 0.004
    cfg = shared_config(
        spend_fleet,
        {"url": server.url, "prefix": "fault", "timeout_s": 0.3, "hold_ttl_s": 2.0},
        {"scope": "global", "limit_usd": 10.0, "on_store_error": mode},
        {"scope": "tag", "limit_usd": small, "match": ["capped"], "on_store_error": mode},
        max_output_tokens=800,
    )
    events: list[tuple[str, str, str, str]] = []  # (phase at start, phase at end, tag, outcome)
    phase = "before"
    with server:
        async with llmroute.Router.from_dict(cfg) as router:
            await router.warmup()

            async def worker(tag: str) -> None:
                while phase != "done":
                    started = phase
                    try:
                        await router.complete(MSG, deadline_s=1.0, tags=[tag])
                        outcome = "ok"
                    except llmroute.BudgetExceededError as exc:
                        outcome = "unavailable" if "store is unavailable" in str(exc) else "refused"
                    except llmroute.LLMRouteError as exc:
                        outcome = type(exc).__name__
                    events.append((started, phase, tag, outcome))
                    await anyio.sleep(0.01)

            with caplog.at_level(logging.WARNING, logger="llmroute"):
                async with anyio.create_task_group() as tg:
                    for i in range(30):
                        tg.start_soon(worker, "capped" if i % 2 else "open")
                    await anyio.sleep(0.8)
                    server.kill()
                    phase = "down"
                    await anyio.sleep(1.0)
                    phase = "restarting"
                    await anyio.to_thread.run_sync(server.start)
                    phase = "after"
                    await anyio.sleep(1.0)  # however long the restart took, calls go on a second after it
                    phase = "done"
            await anyio.sleep(2.1)  # holds whose settle met the outage expire after hold_ttl_s ...
            ledger = router.budget
            assert isinstance(ledger, Ledger) and router.store is not None
            await router.store.reserve("probe", 0, [], now=time.time(), hold_ttl_s=1)  # ... charged by a reserve
            await router.store.settle("probe", 0, now=time.time())
            assert await router.store.open_holds() == 0 and ledger.open_reservations == 0
            spent, held = await ledger.usage("global/total")
            capped, capped_held = await ledger.usage("tag/total", "capped")
    served = provider_spend(spend_fleet)
    out = {p: [o for ph, _, _, o in events if ph == p] for p in ("before", "down", "after")}
    down_only = [o for start, end, _, o in events if start == end == "down"]
    after_capped = [o for ph, _, tag, o in events if ph == "after" and tag == "capped"]
    assert "refused" in [o for _, ph, tag, o in events if ph == "before" and tag == "capped"]  # spent before the kill
    assert "ok" in out["before"] and "ok" in out["after"]  # calls resume
    assert held == 0 and capped_held == 0
    if mode == "fail_closed":
        assert "ok" not in down_only and "unavailable" in down_only  # calls made while Redis was down
        assert served <= spent + 1e-9, f"providers served ${served:.6f}, the budget counted ${spent:.6f}"
        assert capped <= small
        assert after_capped and "ok" not in after_capped  # the spent tag is still spent after the restart
    else:
        assert out["down"].count("ok") > 10  # served unmetered while Redis was down
        assert any("fail_open" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
