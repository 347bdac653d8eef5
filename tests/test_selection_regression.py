"""Health and selection decisions pinned: seeded runs in virtual time, digested.

The speed work on the health tracker and selection (issue 16) must not change a single decision
or trace: these runs record every selection decision (order, rule, scores, draws), every health
reading selection saw and the routers' traces, and compare a digest of them with the one recorded
before that work. Floats are rounded to 10 significant digits (so a libm that differs in the last
bit does not fail them, and any real change does).

A digest that no longer matches means a decision changed: if that is intended, say so in the
commit and record the new digest (``LLMROUTE_PRINT_DIGESTS=1 pytest -s tests/test_selection_regression.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
from random import Random
from typing import Any

import httpx

import llmroute
from llmroute.circuit import CircuitSettings
from llmroute.costs import Price
from llmroute.errors import BadRequestError, ProviderTimeoutError, RateLimitError, ServerError
from llmroute.health import HealthSettings, HealthTracker
from llmroute.policy.selection import Option, SelectionSettings, select
from llmroute.ratelimit import RateLimitInfo
from llmroute.types import Attempt, Usage


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return x if not math.isfinite(x) or x == 0.0 else float(f"{x:.10g}")
    if isinstance(x, dict):
        return {str(k): _round(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v) for v in x]
    return x


def digest(records: list[Any]) -> str:
    text = json.dumps(_round(records), sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check(name: str, records: list[Any], expected: str) -> None:
    got = digest(records)
    if os.environ.get("LLMROUTE_PRINT_DIGESTS"):
        print(f"{name}: {got} ({len(records)} records)")
    assert got == expected, f"{name}: the decisions changed ({got} != {expected})"


# ---------------------------------------------------------------------------------------- tracker
SETTINGS = {
    "price": SelectionSettings(objective={"price": 1.0}),
    "latency": SelectionSettings(objective={"latency": 1.0}, load_aware=True),
    "mix": SelectionSettings(
        objective={"price": 1.0, "latency": 0.5, "throughput": 0.25},
        max_p95_ttft_s=1.5,
        min_tokens_per_s=20.0,
        max_error_rate=0.3,
        sticky=True,
    ),
    "greedy": SelectionSettings(objective={"throughput": 1.0}, exploration=0.0, load_aware=False),
    "rules": SelectionSettings(objective={"price": 1.0, "latency": 1.0}, exclude_providers=frozenset({"c"})),
}

OPTIONS = {
    "m": (
        Option("a/m", "a", Price(0.5, 1.5)),
        Option("b/m", "b", Price(0.4, 1.2), max_output_tokens=300),
        Option("c/m", "c", Price(0.3, 2.0, cached_input=0.03)),
    ),
    "solo": (Option("a/solo", "a", Price(2.5, 10.0)),),
}

#: Each deployment's behaviour: TTFT scale, decode rate, failure chance.
WORLD = {"a/m": (0.4, 80.0, 0.05), "b/m": (0.9, 40.0, 0.15), "c/m": (0.25, 120.0, 0.3), "a/solo": (0.6, 60.0, 0.05)}


def test_tracker_and_selection_decisions_are_pinned() -> None:
    """Overlapping attempts (streams and not, every error kind, cancellations, rate-limit
    headers), a degrading and recovering deployment, every objective; each decision and each
    health reading selection saw is recorded."""
    now = [0.0]
    tracker = HealthTracker(
        HealthSettings(half_life_s=30.0, circuit=CircuitSettings(consecutive_failures=3, open_s=5.0)),
        clock=lambda: now[0],
    )
    for model, opts in OPTIONS.items():
        for o in opts:
            tracker.register(o.deployment, model=model, provider=o.provider)
    world = Random(11)
    rng = Random(5)
    pending: list[tuple[float, Attempt, BaseException | None]] = []
    records: list[Any] = []
    for step in range(1500):
        now[0] += world.expovariate(8.0)
        # finish what is due
        due = [p for p in pending if p[0] <= now[0]]
        pending = [p for p in pending if p[0] > now[0]]
        for _, a, err in due:
            tracker.attempt_finished(a, err)
        name = ("price", "latency", "mix", "greedy", "rules")[step % 5]
        s = SETTINGS[name]
        model = "solo" if step % 7 == 0 else "m"
        opts = OPTIONS[model]
        fresh = step % 13 == 0
        hs = [tracker.get(o.deployment, fresh=fresh) for o in opts]
        live = [tracker.in_flight(o.deployment) for o in opts]
        sticky = None
        if s.sticky and step % 3 == 0:
            sticky = tracker.served_recently(f"k{step % 4}", s.cache_ttl_s)
        d = select(
            model,
            opts,
            hs,
            s,
            input_tokens=200 + step % 50,
            output_tokens=(50, 400, 1000)[step % 3],
            rng=rng,
            sticky=sticky,
            cached_tokens=150 if sticky else 0,
            prefix_key=f"k{step % 4}" if s.sticky else None,
            in_flight=live if s.load_aware else None,
        )
        records.append(d.as_dict())
        records.append(d.circuit_excluded)
        if step % 10 == 0:
            records.append([h.as_dict() for h in hs])
        if not d.order:
            continue
        dep = d.order[0]
        ttft_scale, rate, fail = WORLD[dep]
        if dep == "b/m" and 300 <= step < 700:
            ttft_scale *= 6  # an incident: b slows down, then recovers
        stream = step % 4 != 0
        a = Attempt(model, dep, dep.split("/")[0], "x", 1, 0.0, stream=stream)
        tracker.attempt_started(a)
        ttft = ttft_scale * world.lognormvariate(0.0, 0.5)
        out = world.randint(5, 400)
        u = world.random()
        err: BaseException | None = None
        if u < fail * 0.3:
            err = RateLimitError("429", retry_after=world.choice([None, 2.0]))
        elif u < fail * 0.6:
            err = ServerError("500")
        elif u < fail * 0.8:
            err = ProviderTimeoutError("timeout")
        elif u < fail * 0.9:
            err = BadRequestError("400")
        elif u < fail:
            err = asyncio.CancelledError()
        dur = ttft + (out / rate if err is None else 0.0)
        a.duration_s = dur
        if err is None:
            a.ttft_s = ttft if stream else None
            a.usage = Usage(200, out)
            a.outcome = "ok"
            if s.sticky:
                tracker.remember(f"k{step % 4}", dep)
        else:
            a.outcome = "error"
        if world.random() < 0.3:
            a.rate_limit = RateLimitInfo(
                remaining_requests=float(world.randint(0, 6)),
                reset_requests_s=world.choice([None, 0.5, 3.0]),
                limit_requests=100.0,
                remaining_tokens=float(world.randint(0, 2000)),
                reset_tokens_s=world.choice([None, 1.0]),
                limit_tokens=10000.0,
            )
        pending.append((now[0] + dur, a, err))
        if step % 250 == 249:
            records.append(tracker.snapshot().as_dict())
    check("tracker", records, "08a7af7065281029")


# ----------------------------------------------------------------------------------------- router
def _router_config() -> dict[str, Any]:
    return {
        "providers": {
            p: {"api": "openai", "base_url": f"http://{p}.invalid/v1", "api_key": "sk-test"} for p in ("a", "b", "c")
        },
        "models": {
            "m": {
                "deployments": [
                    {"provider": "a", "model": "m", "price": {"input": 0.5, "output": 1.5}},
                    {"provider": "b", "model": "m", "price": {"input": 0.4, "output": 1.2}},
                    {"provider": "c", "model": "m", "price": {"input": 0.3, "output": 2.0, "cached_input": 0.03}},
                ]
            },
            "solo": {"deployments": [{"provider": "a", "model": "solo", "price": {"input": 2.5, "output": 10}}]},
        },
        "health": {"half_life_s": 30, "circuit": {"consecutive_failures": 3, "open_s": 5}},
        "routes": {
            "mix": {
                "models": ["m", "solo"],
                "selection": {"objective": {"price": 1, "latency": 1}, "sticky": True, "max_error_rate": 0.4},
            },
            "fast": {"models": ["m"], "selection": {"objective": "latency", "max_p95_ttft_s": 2.0}},
            "plain": {"models": ["m", "solo"]},
        },
    }


def _body(text: str, out: int) -> bytes:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": out, "total_tokens": 20 + out},
        }
    ).encode()


def test_router_traces_with_selection_are_pinned() -> None:
    """A router on a virtual clock over a MockTransport whose providers slow down, fail, answer
    429 with rate-limit headers; every call's trace (reason, selection decisions, attempts)."""
    now = [0.0]
    world = Random(3)
    speed = {"a.invalid": 0.5, "b.invalid": 0.3, "c.invalid": 0.8}
    fail = {"a.invalid": 0.05, "b.invalid": 0.2, "c.invalid": 0.1}

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        now[0] += speed[host] * world.lognormvariate(0.0, 0.4)
        u = world.random()
        headers = {"content-type": "application/json"}
        if world.random() < 0.4:
            headers["x-ratelimit-remaining-requests"] = str(world.randint(0, 5))
            headers["x-ratelimit-reset-requests"] = world.choice(["1s", "250ms", "6m0s"])
            headers["x-ratelimit-limit-requests"] = "100"
        if u < fail[host] * 0.5:
            return httpx.Response(
                429, headers={**headers, "retry-after": "1"}, json={"error": {"message": "slow down"}}
            )
        if u < fail[host]:
            return httpx.Response(500, headers=headers, json={"error": {"message": "oops"}})
        return httpx.Response(200, headers=headers, content=_body("ok", world.randint(5, 300)))

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def run() -> list[Any]:
        router = llmroute.Router(
            _router_config(),
            transport=httpx.MockTransport(handler),
            clock=lambda: now[0],
            sleep=sleep,
            rng=Random(9),
        )
        records: list[Any] = []
        try:
            for i in range(400):
                if i == 150:
                    speed["b.invalid"] = 3.0  # b slows down...
                if i == 260:
                    speed["b.invalid"] = 0.3  # ...and recovers
                if i in (300, 340):
                    fail["a.invalid"] = 0.9 if i == 300 else 0.05  # a fails for a while: its circuit opens
                now[0] += world.expovariate(2.0)
                route = ("mix", "fast", "plain")[i % 3]
                messages = [
                    {"role": "system", "content": f"conversation {i % 5}"},
                    {"role": "user", "content": f"question {i}"},
                ]
                try:
                    reply = await router.complete(messages, route=route)
                    trace = reply.route
                    records.append([reply.deployment, reply.cost_usd])
                except llmroute.LLMRouteError as exc:
                    trace = getattr(exc, "trace", None)
                    records.append(type(exc).__name__)
                if trace is None:
                    continue
                records.append(trace.reason)
                records.append([c.deployment for c in trace.candidates])
                records.append([(a.deployment, a.outcome, a.status, a.duration_s) for a in trace.attempts])
                records.append([d.as_dict() for d in trace.selection or ()])
                if i % 50 == 0:
                    records.append(router.health().as_dict())
        finally:
            await router.aclose()
        return records

    state = random.getstate()
    random.seed(17)  # the retry waits' jitter draws from the module's generator
    try:
        records = asyncio.run(run())
    finally:
        random.setstate(state)
    check("router", records, "cf88b5011f5b7283")
