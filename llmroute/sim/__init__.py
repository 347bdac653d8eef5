"""Trace-replay simulator: what routing across the providers of one model is worth.

Replays request arrivals (ServeGen's daily shape, Azure's token counts) against simulated
providers of one model whose speed, errors, limits and prices come from public data
(:mod:`llmroute.sim.world` says what is measured and what is synthetic), and runs several policies
against the *same* world, llmroute's real health tracking, circuit breakers and selection among
them, in virtual time. Driven by ``bench/simulate.py``::

    from llmroute.sim import run
    result = run("qwen3-32b", seed=1)
    result.metrics["llmroute"]["cost_per_1k_usd"]

Needs no ``../shared``: it reads the committed summary statistics (``llmroute/sim/data``), which
``python -m llmroute.sim.derive`` rebuilds from the shared data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..policy.selection import SelectionSettings
from .engine import Engine, ExecutorRules, Request, RequestResult
from .policies import LLMRoute, MeanOfLast10, OfficialOnly, Oracle, RoundRobin, StaticCheapest
from .report import summarize, windows
from .scenarios import SCENARIOS, Scenario, build

__all__ = ["POLICIES", "SCENARIOS", "RunResult", "Scenario", "build", "run"]

#: The policies every run compares, in table order.
POLICIES = ("official-only", "static cheapest", "round robin", "mean-of-last-10", "llmroute", "oracle")


@dataclass
class RunResult:
    """One scenario run: per policy its metrics, time series and raw results."""

    scenario: Scenario
    metrics: dict[str, dict[str, float]]
    series: dict[str, dict[str, list[float]]]
    results: dict[str, list[RequestResult]]
    extra: dict[str, Any]


def _policy(name: str, sc: Scenario, engine: Engine) -> Any:
    world = sc.world
    tok_in = sorted(r.input_tokens for r in sc.requests)[len(sc.requests) // 2]
    tok_out = sorted(r.output_tokens for r in sc.requests)[len(sc.requests) // 2]
    names = sorted(world.providers)
    by_price = sorted(names, key=lambda n: (world.providers[n].median_request_cost(tok_in, tok_out), n))
    if name == "official-only":
        return OfficialOnly(sc.baseline)
    if name == "static cheapest":
        return StaticCheapest(by_price)
    if name == "round robin":
        return RoundRobin(names)
    if name == "mean-of-last-10":
        return MeanOfLast10(names)
    if name == "llmroute":
        return LLMRoute(world, sc.spec.selection, sc.spec.health, lambda: engine.now, seed=sc.seed)
    if name == "llmroute latency":  # the same, with the latency objective (and no constraint)
        lat = LLMRoute(
            world, SelectionSettings(objective={"latency": 1.0}), sc.spec.health, lambda: engine.now, seed=sc.seed
        )
        lat.name = name
        return lat
    if name == "oracle":
        return Oracle(lambda: engine, sc.spec.oracle_objective, sc.spec.oracle_max_ttft_s)
    raise KeyError(name)


def run(
    scenario: str | Scenario,
    seed: int = 1,
    *,
    policies: tuple[str, ...] = POLICIES,
    hours: float | None = None,
    mean_rps: float | None = None,
    window_s: float = 1800.0,
) -> RunResult:
    """Build *scenario* (or take a built one) and run every policy in *policies* over it."""
    sc = scenario if isinstance(scenario, Scenario) else build(scenario, seed, hours=hours, mean_rps=mean_rps)
    metrics: dict[str, dict[str, float]] = {}
    series: dict[str, dict[str, list[float]]] = {}
    results: dict[str, list[RequestResult]] = {}
    for name in policies:
        engine = Engine(sc.world, sc.requests, None, rules=ExecutorRules(), seed=sc.seed)  # type: ignore[arg-type]
        engine.policy = _policy(name, sc, engine)
        res = engine.run()
        results[name] = res
        metrics[name] = summarize(res, sc.duration_s)
        series[name] = windows(res, sc.duration_s, window_s)
    return RunResult(sc, metrics, series, results, {})


def requests_of(sc: Scenario) -> list[Request]:
    """The scenario's arrivals (for tests and the loopback check)."""
    return sc.requests
