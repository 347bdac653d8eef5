"""Selection among the deployments of one model: pure, from health snapshots and a seeded RNG."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from random import Random

import pytest

from llmroute.circuit import CircuitBreaker, CircuitSettings, CircuitState
from llmroute.costs import Price
from llmroute.health import DeploymentHealth, Estimate, RateLimitState
from llmroute.policy.selection import (
    Option,
    SelectionDecision,
    SelectionSettings,
    circuit_filter,
    expected_cost_usd,
    route_order,
    select,
)


def est(mean: float, samples: float = 50.0, sd: float = 0.3) -> Estimate:
    return Estimate(
        mean=mean,
        p05=mean * math.exp(-1.645 * sd),
        p50=mean,
        p95=mean * math.exp(1.645 * sd),
        samples=samples,
        log_mean=math.log(mean),
        log_sd=sd,
        uncertainty=sd / math.sqrt(samples + 1),
    )


def health(
    name: str,
    *,
    ttft: float = 0.5,
    tps: float = 50.0,
    samples: float = 50.0,
    error_rate: float = 0.0,
    in_flight: int = 0,
    circuit: CircuitState = CircuitState.CLOSED,
    admitting: bool | None = None,
    rate_limit: RateLimitState | None = None,
) -> DeploymentHealth:
    b = CircuitBreaker(CircuitSettings(consecutive_failures=1, open_s=10))
    if circuit is not CircuitState.CLOSED:
        b.failed(0.0)
        if circuit is CircuitState.HALF_OPEN:
            b.allows(10.0)
    snap = b.snapshot(10.0 if circuit is CircuitState.HALF_OPEN else 1.0)
    if admitting is not None:
        snap = dataclasses.replace(snap, admitting=admitting)
    return DeploymentHealth(
        deployment=name,
        model="m",
        provider=name.split("/")[0],
        ttft_s=est(ttft, samples),
        tokens_per_s=est(tps, samples),
        error_rate=error_rate,
        rate_limited_rate=0.0,
        attempts=samples,
        errors={},
        in_flight=in_flight,
        overdue=0,
        rate_limit=rate_limit,
        circuit=snap,
        mean_output_tokens=None,
        last_seen_s=1.0,
    )


def option(
    name: str, inp: float = 1.0, out: float = 2.0, *, cached: float | None = None, tags: dict[str, str] | None = None
) -> Option:
    return Option(name, name.split("/")[0], Price(inp, out, cached), tags or {})


def pick(
    opts: list[Option], hs: list[DeploymentHealth], s: SelectionSettings, rng: Random, **kw: object
) -> SelectionDecision:
    return select("m", opts, hs, s, input_tokens=1000, output_tokens=200, rng=rng, **kw)  # type: ignore[arg-type]


def settings(**kw: object) -> SelectionSettings:
    kw.setdefault("exploration", 0.0)
    return SelectionSettings(**kw)  # type: ignore[arg-type]


def decide(opts: list[Option], hs: list[DeploymentHealth], seed: int = 0, **kw: object) -> SelectionDecision:
    return pick(opts, hs, settings(**kw), Random(seed))


def test_price_orders_by_expected_cost_and_explains_it() -> None:
    opts = [option("a/x", 1, 2), option("b/x", 0.5, 1), option("c/x", 3, 3)]
    d = decide(opts, [health(o.deployment) for o in opts], objective={"price": 1})
    assert d.order == ("b/x", "a/x", "c/x") and d.objective == "price" and not d.excluded
    first = d.scores[1]
    assert first.expected_cost_usd == pytest.approx(expected_cost_usd(opts[1].price, 1000, 200))
    assert first.score is not None and first.status == "ranked"
    assert "objective price" in d.rule and "first b/x" in d.rule
    assert json.loads(json.dumps(d.as_dict()))["rule"] == d.rule


def test_errors_make_a_cheap_deployment_dearer() -> None:
    opts = [option("a/x", 1, 2), option("b/x", 0.8, 1.6)]
    d = decide(opts, [health("a/x"), health("b/x", error_rate=0.5)], objective={"price": 1})
    assert d.order == ("a/x", "b/x")


def test_latency_is_ttft_plus_output_over_decode_rate() -> None:
    opts = [option("fastfirst/x"), option("fastdecode/x")]
    hs = [health("fastfirst/x", ttft=0.2, tps=20), health("fastdecode/x", ttft=0.8, tps=200)]
    d = decide(opts, hs, objective={"latency": 1})
    assert d.order == ("fastdecode/x", "fastfirst/x")  # 200 tokens: 0.8 + 1 beats 0.2 + 10
    assert d.scores[0].expected_latency_s == pytest.approx(0.2 + 200 / 20)
    d = decide(opts, hs, objective={"throughput": 1})
    assert d.order[0] == "fastdecode/x"


def test_weighted_mix_normalises_each_term_by_the_best() -> None:
    opts = [option("cheap/x", 0.1, 0.1), option("quick/x", 1, 1)]
    hs = [health("cheap/x", ttft=3.0, tps=10), health("quick/x", ttft=0.2, tps=100)]
    assert decide(opts, hs, objective={"price": 1}).order[0] == "cheap/x"
    assert decide(opts, hs, objective={"price": 1, "latency": 1}).order[0] == "quick/x"  # 10x cost vs ~9x time
    assert decide(opts, hs, objective={"price": 3, "latency": 1}).order[0] == "cheap/x"
    assert decide(opts, hs, objective={"price": 1, "latency": 1}).objective == "price:1,latency:1"


def test_rules_exclude_and_are_never_relaxed() -> None:
    opts = [option("a/x", tags={"region": "us"}), option("b/x", tags={"region": "eu"}), option("c/x")]
    hs = [health(o.deployment) for o in opts]
    d = decide(opts, hs, tags={"region": "eu"})
    assert d.order == ("b/x",) and set(d.excluded) == {"a/x", "c/x"} and not d.circuit_excluded
    d = decide(opts, hs, providers=frozenset({"a", "c"}), exclude_providers=frozenset({"c"}))
    assert d.order == ("a/x",)
    d = decide(opts, hs, tags={"region": "mars"})
    assert d.order == () and "no deployment available" in d.rule


def test_open_and_busy_half_open_circuits_are_left_out() -> None:
    opts = [option("a/x", 0.1, 0.1), option("b/x", 0.2, 0.2), option("c/x")]
    hs = [health("a/x", circuit=CircuitState.OPEN), health("b/x", circuit=CircuitState.HALF_OPEN), health("c/x")]
    d = decide(opts, hs)
    assert d.order == ("b/x", "c/x") and d.circuit_excluded == ("a/x",)  # half-open with a free slot: a probe
    assert "circuit open" in next(s.note for s in d.scores if s.deployment == "a/x")


def test_constraints_exclude_unless_none_meet_them() -> None:
    opts = [option("cheap/x", 0.1, 0.1), option("dear/x", 1, 1)]
    hs = [health("cheap/x", ttft=4.0), health("dear/x", ttft=0.3)]
    d = decide(opts, hs, max_p95_ttft_s=2.0)
    assert d.order == ("dear/x",) and d.excluded == ("cheap/x",) and "1 fail constraints (p95 TTFT" in d.rule
    d = decide(opts, hs, max_p95_ttft_s=0.1)
    assert d.order == ("cheap/x", "dear/x") and "relaxed" in d.rule
    d = decide(opts, [health("cheap/x", tps=5), health("dear/x", tps=80)], min_tokens_per_s=20)
    assert d.order == ("dear/x",)
    d = decide(opts, [health("cheap/x", error_rate=0.4), health("dear/x")], max_error_rate=0.2)
    assert d.order == ("dear/x",)


def test_rate_limited_deployments_go_last() -> None:
    empty = RateLimitState(0, None, 100, None, 12.0, None, 0, 1.0)
    tokens = RateLimitState(5, 100, 100, 10_000, 12.0, 30.0, 0, 1.0)  # 100 tokens left, call needs 1200
    opts = [option("a/x", 0.1, 0.1), option("b/x", 0.2, 0.2), option("c/x")]
    hs = [health("a/x", rate_limit=empty), health("b/x", rate_limit=tokens), health("c/x")]
    d = decide(opts, hs)
    assert d.order == ("c/x", "a/x", "b/x") and "2 rate-limited" in d.rule


def test_sticky_conversation_prices_cache_reads() -> None:
    opts = [option("a/x", 1.0, 2, cached=0.1), option("b/x", 0.8, 2, cached=0.1)]
    hs = [health("a/x"), health("b/x")]
    assert pick(opts, hs, settings(), Random(0)).order[0] == "b/x"
    d = pick(opts, hs, settings(), Random(0), sticky="a/x", cached_tokens=900, prefix_key="k")
    assert d.order[0] == "a/x" and "sticky" in d.rule and d.scores[0].sticky and d.prefix_key == "k"


def test_in_flight_load_spreads_latency_routing() -> None:
    opts = [option("a/x"), option("b/x")]
    assert decide(opts, [health("a/x", ttft=0.4), health("b/x", ttft=0.5)], objective={"latency": 1}).order[0] == "a/x"
    busy = [health("a/x", ttft=0.4, in_flight=8), health("b/x", ttft=0.5)]
    assert decide(opts, busy, objective={"latency": 1}).order[0] == "b/x"
    assert decide(opts, busy, objective={"latency": 1}, load_aware=False).order[0] == "a/x"


def test_exploration_tries_a_barely_known_deployment_sometimes() -> None:
    opts = [option("known/x"), option("new/x")]
    hs = [health("known/x", ttft=0.5, samples=200), health("new/x", ttft=0.6, samples=0.1)]
    firsts = Counter(
        pick(opts, hs, SelectionSettings(objective={"latency": 1}), Random(i)).order[0] for i in range(400)
    )
    assert 20 < firsts["new/x"] < 300
    greedy = {pick(opts, hs, settings(objective={"latency": 1}), Random(i)).order[0] for i in range(50)}
    assert greedy == {"known/x"}


def test_circuit_filter_and_route_order_fail_open() -> None:
    assert circuit_filter([True, False, True]) == ([0, 2], 1)
    assert circuit_filter([False, False]) == ([0, 1], 0)
    opts = [option("a/x")]
    shut = decide(opts, [health("a/x", circuit=CircuitState.OPEN)])
    other = select("n", [option("b/y")], [health("b/y")], settings(), input_tokens=10, output_tokens=10, rng=Random(0))
    assert route_order(["m", "n", "m"], {"m": shut, "n": other}) == (["b/y"], False)
    assert route_order(["m"], {"m": shut}) == (["a/x"], True)


def test_half_open_with_its_probe_slots_taken_is_left_out() -> None:
    opts = [option("a/x", 0.1, 0.1), option("b/x")]
    d = decide(opts, [health("a/x", circuit=CircuitState.HALF_OPEN, admitting=False), health("b/x")])
    assert d.order == ("b/x",) and d.circuit_excluded == ("a/x",) and "probe slots taken" in d.rule


def test_settings_reject_unknown_or_zero_objectives() -> None:
    with pytest.raises(ValueError, match="unknown objective"):
        SelectionSettings(objective={"speed": 1.0})
    with pytest.raises(ValueError, match="> 0"):
        SelectionSettings(objective={"price": 0.0})
