"""Health, circuits and selection inside the Router, over the loopback fleet, on a virtual clock.

The fleet answers at once; a transport wrapper moves the virtual clock forward by each provider's
scripted latency before handing the response over, so the router measures that latency without
any real waiting.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from conftest import VirtualSleep, make_config

import llmroute
from llmroute.circuit import CircuitState
from llmroute.testing import Fault, Fleet

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "What is the capital of France?"}]


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class DelayTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, plus virtual latency per provider (path prefix ``/<name>/``)."""

    def __init__(self, clock: VirtualClock, delay: Callable[[str], float]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.clock = clock
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.clock.now += self.delay(request.url.path.split("/")[1])
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def small_route(fleet: Fleet, **selection: Any) -> dict[str, Any]:
    cfg = make_config(fleet)
    cfg["routes"]["pick"] = {"models": ["small"], "selection": selection}
    return cfg


async def test_health_snapshot_lists_every_deployment_and_is_json_ready(fleet: Fleet) -> None:
    clock = VirtualClock()
    async with llmroute.Router.from_dict(make_config(fleet), clock=clock) as r:
        assert set(r.health().deployments) == {"oai/small-1", "oai2/small-1", "claude/claude-x", "gem/gemini-x"}
        await r.complete(MSG)
        snap = r.health()
    oai = snap["oai/small-1"]
    assert oai.attempts == pytest.approx(1) and oai.in_flight == 0 and oai.circuit.state is CircuitState.CLOSED
    assert oai.ttft_s.samples > 0 and snap["gem/gemini-x"].ttft_s.samples == 0
    data = json.loads(json.dumps(snap.as_dict()))
    assert data["deployments"]["oai/small-1"]["circuit"]["state"] == "closed"


async def test_selection_by_price_and_the_trace_explains_it(fleet: Fleet) -> None:
    cfg = small_route(fleet, objective="price", exploration=0)
    cfg["models"]["small"]["deployments"].reverse()  # the dearer one first in the config
    async with llmroute.Router.from_dict(cfg) as r:
        reply = await r.complete(MSG, route="pick")
    assert reply.deployment == "oai/small-1"  # the cheaper one
    (decision,) = reply.route.selection
    assert decision.model == "small" and decision.order == ("oai/small-1", "oai2/small-1")
    assert "objective price" in decision.rule and "deployments by price" in reply.route.reason
    data = json.loads(json.dumps(reply.route.to_dict()))
    assert data["selection"][0]["scores"][0]["deployment"] == "oai2/small-1"


async def test_a_burst_of_429s_opens_the_circuit_and_probes_close_it(fleet: Fleet, vsleep: VirtualSleep) -> None:
    clock = VirtualClock()
    cfg = make_config(fleet, health={"circuit": {"consecutive_failures": 3, "open_s": 30, "close_after": 2}})
    fleet["oai"].enqueue(*[Fault.rate_limit(retry_after=0.5)] * 4)
    async with llmroute.Router.from_dict(cfg, clock=clock, sleep=clock.sleep) as r:
        for _ in range(2):  # 2 calls x (2 attempts on oai, then fallback to oai2)
            reply = await r.complete(MSG, model="small")
            assert reply.deployment == "oai2/small-1"
        assert r.health()["oai/small-1"].circuit.state is CircuitState.OPEN
        calls = fleet["oai"].calls
        for _ in range(5):  # open: not even tried
            reply = await r.complete(MSG, model="small")
            assert [a.deployment for a in reply.route.attempts] == ["oai2/small-1"]
            assert "circuit open" in reply.route.reason
        assert fleet["oai"].calls == calls
        clock.now += 31  # cooldown over: the next calls probe it, succeed, close it
        for _ in range(2):
            reply = await r.complete(MSG, model="small")
            assert reply.deployment == "oai/small-1"
        state = r.health()["oai/small-1"].circuit
    assert state.state is CircuitState.CLOSED and state.trips == 1


async def test_every_circuit_open_fails_open(fleet: Fleet, vsleep: VirtualSleep) -> None:
    cfg = make_config(fleet, health={"circuit": {"consecutive_failures": 1, "open_s": 600}})
    cfg["routes"]["solo"] = {"models": ["claude"], "selection": {"objective": "latency"}}
    fleet["claude"].enqueue(Fault.server_error(503), Fault.server_error(503))
    async with llmroute.Router.from_dict(cfg, sleep=vsleep) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError):
            await r.complete(MSG, route="solo")
        assert r.health()["claude/claude-x"].circuit.state is CircuitState.OPEN
        reply = await r.complete(MSG, route="solo")  # nothing else to try: try it anyway
    assert reply.deployment == "claude/claude-x" and "every circuit open" in reply.route.reason


async def test_a_slow_provider_loses_traffic_and_gets_it_back(fleet: Fleet) -> None:
    clock = VirtualClock()
    latency = {"oai": 0.2, "oai2": 0.5}
    transport = DelayTransport(clock, lambda name: latency.get(name, 0.0))
    cfg = small_route(fleet, objective="latency")
    cfg["health"] = {"half_life_s": 60}
    picks: list[str] = []
    async with llmroute.Router.from_dict(cfg, transport=transport, clock=clock, rng=random.Random(3)) as r:

        async def run(n: int) -> list[str]:
            out = []
            for _ in range(n):
                clock.now += 1.0
                reply = await r.complete(MSG, route="pick")
                out.append(reply.deployment)
            return out

        before = await run(120)
        latency["oai"] = 4.0  # slows down
        during = await run(300)
        latency["oai"] = 0.2  # recovers
        after = await run(400)
        picks = before + during + after
    assert Counter(before[60:])["oai/small-1"] > 50
    assert Counter(during[20:])["oai/small-1"] < 0.1 * len(during[20:])  # lost within 20 s
    assert Counter(after[200:])["oai/small-1"] > 0.8 * len(after[200:])  # back within ~3 minutes
    assert len(picks) == 820


async def test_concurrent_callers_spread_instead_of_herding(fleet: Fleet) -> None:
    cfg = small_route(fleet, objective="latency", exploration=0)
    async with llmroute.Router.from_dict(cfg) as r:
        await r.warmup()
        chosen: list[str] = []

        async def one() -> None:
            reply = await r.complete(MSG, route="pick")
            chosen.append(reply.deployment)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
    counts = Counter(chosen)
    assert len(chosen) == 40 and min(counts.values()) >= 12, counts


async def test_without_load_awareness_they_herd(fleet: Fleet) -> None:
    cfg = small_route(fleet, objective="latency", exploration=0, load_aware=False)
    async with llmroute.Router.from_dict(cfg) as r:
        await r.warmup()
        chosen: list[str] = []

        async def one() -> None:
            chosen.append((await r.complete(MSG, route="pick")).deployment)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
    assert len(set(chosen)) == 1  # the contrast the previous test relies on


async def test_rate_limit_headers_reach_health_and_selection(fleet: Fleet, vsleep: VirtualSleep) -> None:
    clock = VirtualClock()
    # the fleet's OpenAI 429 carries OpenAI's headers: 452 tokens left until the reset (60 s here)
    fleet["oai"].enqueue(Fault.rate_limit(retry_after=60))
    cfg = small_route(fleet, objective="price", exploration=0)
    async with llmroute.Router.from_dict(cfg, clock=clock, sleep=clock.sleep) as r:
        first = await r.complete(MSG, route="pick", max_tokens=1000)
        assert first.deployment == "oai2/small-1"  # Retry-After 60 > 20 cap: fell back at once
        assert first.route.attempts[0].rate_limit.remaining_tokens == 452
        rl = r.health()["oai/small-1"].rate_limit
        assert rl is not None and rl.remaining_tokens == 452 and rl.reset_tokens_in_s == pytest.approx(60)
        second = await r.complete(MSG, route="pick", max_tokens=1000)  # cheaper, but 452 tokens < 1000: last
        assert second.deployment == "oai2/small-1" and second.route.selection[0].order[-1] == "oai/small-1"
        assert "rate-limited" in second.route.selection[0].rule
        small = await r.complete(MSG, route="pick", max_tokens=100)  # a small call fits in what is left
        clock.now += 61
        third = await r.complete(MSG, route="pick", max_tokens=1000)
    assert small.deployment == "oai/small-1" and third.deployment == "oai/small-1"


async def test_sticky_prompt_prefix_goes_back_to_the_warm_cache(fleet: Fleet) -> None:
    cfg = small_route(fleet, objective="price", exploration=0, sticky=True)
    deps = cfg["models"]["small"]["deployments"]
    deps[0]["price"] = {"input": 1.0, "output": 1.0, "cached_input": 0.1}
    deps[1]["price"] = {"input": 0.9, "output": 1.0, "cached_input": 0.1}
    system = {"role": "system", "content": "You are a meticulous assistant. " * 40}
    async with llmroute.Router.from_dict(cfg) as r:
        first = await r.complete([system, *MSG], route="pick")
        assert first.deployment == "oai2/small-1"  # cheaper list price
        r._health.remember(first.route.selection[0].prefix_key, "oai/small-1")  # as if oai served it last
        second = await r.complete([system, {"role": "user", "content": "And of Spain?"}], route="pick")
        other = await r.complete([{"role": "system", "content": "Different."}, *MSG], route="pick")
    assert second.deployment == "oai/small-1" and second.route.selection[0].scores[0].sticky
    assert other.deployment == "oai2/small-1"


async def test_selection_config_errors_name_the_field(fleet: Fleet) -> None:
    cfg = small_route(fleet, objective={"price": 0}, providers=["nope"])
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.Router.from_dict(cfg)
    paths = {p for p, _ in info.value.errors}
    assert "routes.pick.selection.objective" in paths
