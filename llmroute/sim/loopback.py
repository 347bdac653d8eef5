"""The simulator checked against reality: the same scenario over the loopback fleet, in real time.

A window of a scenario is replayed twice: in the simulator (virtual time), and for real: the real
:class:`~llmroute.Router` (executor, adapters, HTTP, health tracker, circuits, selection) streams
every request from the local fake fleet, whose providers answer as the simulated world says for
that request (the same per-request draws, so the same TTFT, decode rate, errors, incidents and
account limits; 429s and successes carry ``x-ratelimit-*`` headers as in the simulator). Time is
compressed by a factor *k*: every duration in the world and in the router's settings is divided
by *k*, and measured times are multiplied back, so both runs are reported in scenario seconds.

What differs, by construction: real HTTP, parsing and scheduling add a few milliseconds per
request (times *k* in scenario seconds); the fleet paces tokens in chunks; and the account
limits, load and incidents are looked up at the real (slightly later) times. The comparison
table shows how much that moves each metric.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from ..testing import FakeProvider, Fault, Fleet
from ..testing._server import Request as HTTPRequest
from ..testing._server import Responder
from .engine import Engine, Request, RequestResult
from .policies import LLMRoute, OfficialOnly
from .report import summarize
from .scenarios import Scenario
from .world import Bucket

__all__ = ["LoopbackComparison", "compare", "window"]

_INDEX = re.compile(rb"req-(\d+) ")


def _reply(body: Any) -> str:
    """As many words as the request's max_tokens (the scenario's output length)."""
    n = body.get("max_tokens") if isinstance(body, dict) else None
    return " ".join(["tok"] * (n if isinstance(n, int) and n > 0 else 16))


class WorldProvider(FakeProvider):
    """A fake provider that answers each request as the simulated world would, *k* times faster."""

    def __init__(self, name: str, scenario: Scenario, requests: dict[int, Request], k: float) -> None:
        super().__init__(name, "openai", reply=_reply, record_requests=False)
        self.scenario = scenario
        self.by_index = requests
        self.k = k
        p = scenario.world.providers[name]
        self.bucket = Bucket(p.rpm_limit) if p.rpm_limit is not None else None
        self.t0 = 0.0
        self.start_s = 0.0
        self._index: int | None = None
        self._tries: dict[int, int] = {}
        self._headers: list[tuple[str, str]] = []

    def scenario_time(self) -> float:
        """Scenario seconds now."""
        return self.start_s + (time.perf_counter() - self.t0) * self.k

    async def _handle(self, rest: str, req: HTTPRequest, resp: Responder) -> None:
        m = _INDEX.search(req.body[:400])
        self._index = int(m.group(1)) if m else None  # read by _next_fault before the next await
        await super()._handle(rest, req, resp)

    def _next_fault(self) -> Fault | None:
        idx, self._index = self._index, None
        if idx is None:
            return None
        n = self._tries[idx] = self._tries.get(idx, 0) + 1
        r = self.by_index[idx]
        draws = r.draws[self.name]
        out = self.scenario.world.outcome(
            self.name, self.scenario_time(), r.output_tokens, draws[min(n, len(draws)) - 1], self.bucket
        )
        k = self.k
        rl = out.rate_limit
        self._headers = []
        if rl is not None:
            self._headers = [
                ("x-ratelimit-limit-requests", f"{rl.limit_requests or 0:.0f}"),
                ("x-ratelimit-remaining-requests", f"{rl.remaining_requests or 0:.0f}"),
                ("x-ratelimit-reset-requests", f"{(rl.reset_requests_s or 0.0) / k:.4f}s"),
            ]
        if out.kind == "rate_limit":
            return Fault.status(429, retry_after=(out.retry_after_s or 1.0) / k, headers=dict(self._headers))
        if out.kind == "server":
            return Fault.server_error(500)
        if out.kind == "timeout":
            return Fault.stall(self.scenario.spec.synthetic.read_timeout_s / k + 1.0)
        assert out.ttft_s is not None and out.tokens_per_s is not None
        return Fault.slow(ttft_s=out.ttft_s / k, tokens_per_s=out.tokens_per_s * k)

    def _stream_headers(self, sse: bool) -> list[tuple[str, str]]:
        return [*super()._stream_headers(sse), *self._headers]


def window(sc: Scenario, start_s: float, length_s: float) -> list[Request]:
    """The scenario's requests arriving in [start, start + length), renumbered from 0."""
    picked = [r for r in sc.requests if start_s <= r.arrival_s < start_s + length_s]
    return [Request(i, r.arrival_s, r.input_tokens, r.output_tokens, r.draws) for i, r in enumerate(picked)]


def _config(sc: Scenario, fleet: Fleet, policy: str, k: float) -> dict[str, Any]:
    s, h, c = sc.spec.selection, sc.spec.health, sc.spec.health.circuit
    rules_backoff = 0.25 / k
    names = [sc.baseline] if policy == "official-only" else sorted(sc.world.providers)
    route: dict[str, Any] = {
        "models": ["model"],
        "retry": {
            "attempts": 2,
            "initial_backoff_s": rules_backoff,
            "max_backoff_s": 8.0 / k,
            "jitter_s": 0.25 / k,
            "max_retry_after_s": 20.0 / k,
        },
    }
    if policy == "llmroute":
        sel: dict[str, Any] = {"objective": dict(s.objective), "exploration": s.exploration}
        if s.max_p95_ttft_s is not None:
            sel["max_p95_ttft_s"] = s.max_p95_ttft_s / k
        route["selection"] = sel
    return {
        "providers": {n: {"api": "openai", "base_url": fleet.base_url(n)} for n in names},
        "models": {
            "model": {
                "deployments": [
                    {
                        "provider": n,
                        "model": "m",
                        "price": {
                            "input": sc.world.providers[n].price.input,
                            "output": sc.world.providers[n].price.output,
                        },
                    }
                    for n in names
                ]
            }
        },
        "routes": {"pick": route},
        "timeout": {"connect_s": 5.0, "read_s": sc.spec.synthetic.read_timeout_s / k},
        "health": {
            "half_life_s": h.half_life_s / k,
            "prior_ttft_s": h.prior_ttft_s / k,
            "prior_tokens_per_s": h.prior_tokens_per_s * k,
            "prior_error_rate": h.prior_error_rate,
            "prior_weight": h.prior_weight,
            "circuit": {
                "consecutive_failures": c.consecutive_failures,
                "failure_rate": c.failure_rate,
                "min_samples": c.min_samples,
                "window_s": c.window_s / k,
                "open_s": c.open_s / k,
                "max_open_s": c.max_open_s / k,
                "half_open_probes": c.half_open_probes,
                "close_after": c.close_after,
            },
        },
        "max_connections": 500,
        "max_keepalive_connections": 100,
    }


async def _real(sc: Scenario, reqs: Sequence[Request], policy: str, k: float) -> list[RequestResult]:
    from ..errors import LLMRouteError
    from ..router import Router

    by_index = {r.index: r for r in reqs}
    start_s = reqs[0].arrival_s if reqs else 0.0
    providers = [WorldProvider(n, sc, by_index, k) for n in sorted(sc.world.providers)]
    results = [RequestResult(r.index, r.arrival_s, False, None, None, r.output_tokens, 0.0, None, 0) for r in reqs]
    async with Fleet(providers) as fleet, Router(_config(sc, fleet, policy, k)) as router:
        await router.warmup()
        t0 = time.perf_counter() + 0.2
        for p in providers:
            p.t0, p.start_s = t0, start_s

        async def one(r: Request) -> None:
            await anyio.sleep(max(0.0, t0 + (r.arrival_s - start_s) / k - time.perf_counter()))
            res = results[r.index]
            began = time.perf_counter()
            first: float | None = None
            content = f"req-{r.index} " + "w " * max(0, r.input_tokens - 1)
            stream = router.stream([{"role": "user", "content": content}], route="pick", max_tokens=r.output_tokens)
            try:
                async with stream:
                    async for chunk in stream:
                        if first is None and chunk.text:
                            first = time.perf_counter()
                reply = stream.reply
            except LLMRouteError:
                res.attempts = len(stream.route.attempts)
                return
            assert reply is not None and first is not None
            res.ok = True
            res.ttft_s = (first - began) * k
            res.e2e_s = (time.perf_counter() - began) * k
            res.cost_usd = reply.route.cost_usd
            res.provider = reply.provider
            res.attempts = len(reply.route.attempts)
            res.output_tokens = reply.usage.output_tokens

        async with anyio.create_task_group() as tg:
            for r in reqs:
                tg.start_soon(one, r)
    return results


@dataclass
class LoopbackComparison:
    """Metrics per policy from the simulator and from the real run (scenario seconds)."""

    k: float
    requests: int
    window_s: tuple[float, float]
    sim: dict[str, dict[str, float]]
    real: dict[str, dict[str, float]]
    shares_sim: dict[str, dict[str, float]]
    shares_real: dict[str, dict[str, float]]
    wall_s: float


def _shares(results: Sequence[RequestResult]) -> dict[str, float]:
    ok = [r for r in results if r.ok]
    out: dict[str, float] = {}
    for r in ok:
        out[r.provider or "?"] = out.get(r.provider or "?", 0.0) + 1 / len(ok)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def compare(
    sc: Scenario,
    *,
    start_s: float,
    length_s: float,
    k: float = 10.0,
    policies: Sequence[str] = ("official-only", "llmroute"),
) -> LoopbackComparison:
    """Replay [start, start + length) of *sc* in the simulator and over the loopback fleet."""
    reqs = window(sc, start_s, length_s)
    sim: dict[str, dict[str, float]] = {}
    real: dict[str, dict[str, float]] = {}
    shares_sim: dict[str, dict[str, float]] = {}
    shares_real: dict[str, dict[str, float]] = {}
    t = time.perf_counter()
    for name in policies:
        engine = Engine(sc.world, reqs, None, seed=sc.seed)  # type: ignore[arg-type]
        if name == "llmroute":
            engine.policy = LLMRoute(sc.world, sc.spec.selection, sc.spec.health, lambda e=engine: e.now, seed=sc.seed)
        else:
            engine.policy = OfficialOnly(sc.baseline)
        res_sim = engine.run()
        res_real = anyio.run(_real, sc, reqs, name, k)
        sim[name] = summarize(res_sim, length_s)
        real[name] = summarize(res_real, length_s)
        shares_sim[name] = _shares(res_sim)
        shares_real[name] = _shares(res_real)
    return LoopbackComparison(
        k, len(reqs), (start_s, start_s + length_s), sim, real, shares_sim, shares_real, time.perf_counter() - t
    )
