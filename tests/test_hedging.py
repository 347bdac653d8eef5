"""Hedged requests over real sockets: a slow attempt is raced against another deployment; the first
to answer wins, the other is cancelled and its spend counted; text is never duplicated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from conftest import make_config

import llmroute
from llmroute.testing import Fault, Fleet

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "Name three moons of Jupiter."}]


@pytest.fixture(autouse=True)
def _restore(fleet: Fleet) -> Iterator[None]:
    yield
    for name in ("oai", "oai2"):
        fleet[name].ttft_s = 0.0
        fleet[name].reply = None


def hedged(fleet: Fleet, **hedge: Any) -> dict[str, Any]:
    cfg = make_config(fleet)
    cfg["routes"]["fast"] = {"models": ["small"], "hedge": {"delay_s": 0.1, **hedge}}
    return cfg


async def settle(fleet: Fleet) -> None:
    for _ in range(150):  # a stalled fake finishes its stall before it sees the connection is gone
        if fleet["oai"].in_flight == 0 and fleet["oai2"].in_flight == 0:
            return
        await anyio.sleep(0.02)


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_a_slow_attempt_is_hedged_and_the_first_answer_wins(fleet: Fleet, streamed: bool) -> None:
    fleet["oai"].ttft_s = 1.5  # the primary stalls before its first token
    fleet["oai"].reply = "primary text"
    fleet["oai2"].reply = "hedge text"
    budget = llmroute.MemoryBudget(10.0)
    async with llmroute.Router.from_dict(hedged(fleet), budget=budget) as r:
        t = anyio.current_time()
        if streamed:
            async with r.stream(MSG, route="fast") as s:
                texts = [c.text async for c in s]
            reply = s.reply
            assert reply is not None
            assert "".join(texts) == "hedge text"  # only the winner's text, once
        else:
            reply = await r.complete(MSG, route="fast")
        elapsed = anyio.current_time() - t
    assert reply.text == "hedge text" and reply.deployment == "oai2/small-1"
    assert elapsed < 1.0  # did not wait for the stalled primary
    primary, hedge = reply.route.attempts
    assert primary.deployment == "oai/small-1" and primary.outcome == "cancelled"
    assert primary.error_type == "LostRace" and "oai2/small-1 answered first" in (primary.error or "")
    assert primary.cost_estimated and primary.cost_usd > 0  # sent: it may have been billed, and counted
    assert hedge.outcome == "ok" and hedge.hedge is not None and "hedging on oai2/small-1" in hedge.hedge
    assert hedge.started_s >= 0.09
    assert reply.total_cost_usd == pytest.approx(primary.cost_usd + hedge.cost_usd)
    assert budget.open_reservations == 0 and budget.spent_usd == pytest.approx(reply.total_cost_usd)
    await settle(fleet)
    assert fleet["oai"].in_flight == 0 and fleet["oai2"].in_flight == 0


async def test_a_fast_attempt_is_not_hedged(fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(hedged(fleet, delay_s=1.0)) as r:
        reply = await r.complete(MSG, route="fast")
    (attempt,) = reply.route.attempts
    assert attempt.deployment == "oai/small-1" and attempt.hedge is None
    assert fleet["oai2"].calls == 0


async def test_an_error_before_the_delay_falls_back_as_usual(fleet: Fleet, vsleep: Any) -> None:
    fleet["oai"].enqueue(Fault.bad_request(), Fault.bad_request())
    async with llmroute.Router.from_dict(hedged(fleet, delay_s=1.0), sleep=vsleep) as r:
        reply = await r.complete(MSG, route="fast")
    first, second = reply.route.attempts
    assert first.status == 400 and first.hedge is None and second.deployment == "oai2/small-1"


async def test_no_hedge_past_the_budget(fleet: Fleet) -> None:
    fleet["oai"].ttft_s = 0.4
    async with llmroute.Router.from_dict(hedged(fleet)) as r:
        worst = r.plan(MSG, route="fast").candidates[0].candidate.max_cost_usd
    budget = llmroute.MemoryBudget(worst * 1.5)  # the primary fits, a second attempt beside it does not
    async with llmroute.Router.from_dict(hedged(fleet), budget=budget) as r:
        reply = await r.complete(MSG, route="fast")
    (attempt,) = reply.route.attempts
    assert attempt.deployment == "oai/small-1" and attempt.outcome == "ok"
    assert attempt.hedge is not None and "not hedged" in attempt.hedge and "budget" in attempt.hedge
    assert fleet["oai2"].calls == 0 and budget.open_reservations == 0


async def test_no_hedge_into_an_open_circuit(fleet: Fleet, vsleep: Any) -> None:
    cfg = hedged(fleet)
    cfg["health"] = {"circuit": {"consecutive_failures": 2}}
    async with llmroute.Router.from_dict(cfg, sleep=vsleep) as r:
        # oai refuses the request (no retry), oai2 fails twice: oai2's circuit opens
        fleet["oai"].enqueue(Fault.bad_request())
        fleet["oai2"].enqueue(Fault.server_error(500), Fault.server_error(500))
        await r.complete(MSG)  # the default route: answered by its next model
        assert r.health().deployments["oai2/small-1"].circuit.state.value == "open"
        calls = fleet["oai2"].calls
        fleet["oai"].ttft_s = 0.4  # slow past the hedge delay: it would be hedged on oai2
        reply = await r.complete(MSG, route="fast")
    (attempt,) = reply.route.attempts
    assert attempt.deployment == "oai/small-1" and attempt.outcome == "ok"
    # the open circuit kept oai2 out of the plan, so there was nothing to hedge on
    assert [c.deployment for c in reply.route.candidates] == ["oai/small-1"] and attempt.hedge is None
    assert fleet["oai2"].calls == calls


async def test_a_cancelled_caller_leaves_no_racer_behind(fleet: Fleet) -> None:
    fleet["oai"].ttft_s = 1.5
    fleet["oai2"].ttft_s = 1.5
    budget = llmroute.MemoryBudget(10.0)
    async with llmroute.Router.from_dict(hedged(fleet), budget=budget) as r:
        with anyio.move_on_after(0.4):
            await r.complete(MSG, route="fast")
        adm = r._executor.admission
        assert adm is not None and adm.in_flight == 0
    assert budget.open_reservations == 0
    await settle(fleet)
    assert fleet["oai"].in_flight == 0 and fleet["oai2"].in_flight == 0
