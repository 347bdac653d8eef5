"""The trace-replay simulator: its world, its engine's executor rules, its policies, the bench.

Everything runs from the committed summary statistics; only the check that they are up to date
needs ../shared/data (and skips without it)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmroute.costs import Price
from llmroute.sim import POLICIES, build, run
from llmroute.sim.derive import DERIVED, derive, dumps
from llmroute.sim.engine import Engine, Request
from llmroute.sim.policies import MeanOfLast10, OfficialOnly, StaticCheapest
from llmroute.sim.report import summarize
from llmroute.sim.world import Bucket, Incident, Profile, SimProvider, Synthetic, World
from llmroute.types import Attempt

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMROUTE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.skipif(not (SHARED / "latency").is_dir(), reason="needs ../shared/data (or LLMROUTE_SHARED_DATA)")
def test_committed_statistics_are_what_the_shared_data_gives() -> None:
    assert DERIVED.read_text(encoding="utf-8") == dumps(derive(SHARED))


def test_derive_says_clearly_when_the_shared_data_is_absent(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="shared data not found"):
        derive(tmp_path / "nowhere")


LEVELS = (0.0, 0.5, 1.0)


def world(*, rpm: float | None = None, incidents: list[Incident] | None = None, errors: float = 0.0) -> World:
    prof = Profile("flat", LEVELS, (0.2, 0.4, 0.6), (0.02, 0.02, 0.02), 0.0, errors, 60.0, "test")
    a = SimProvider("a", "a/key", Price(1.0, 2.0), prof, "test", rpm_limit=rpm, incidents=incidents or [])
    b = SimProvider("b", "b/key", Price(2.0, 4.0), prof, "test")
    return World([a, b], [1.0] * 144, 600.0, Synthetic())


def request(i: int, t: float, u: float = 0.5) -> Request:
    draws = {n: [(u, u, u, u), (u, u, u, u)] for n in ("a", "b")}
    return Request(i, t, 100, 11, draws)


def test_outcomes_are_fixed_by_the_draws_and_the_time() -> None:
    w = world()
    one = w.outcome("a", 10.0, 11, (0.5, 0.5, 0.5, 0.5), None)
    assert one == w.outcome("a", 10.0, 11, (0.5, 0.5, 0.5, 0.5), None)
    assert one.kind == "ok" and one.ttft_s == pytest.approx(0.4) and one.tokens_per_s == pytest.approx(50)
    assert one.duration_s == pytest.approx(0.4 + 10 / 50)
    slow = Incident(0.0, 100.0, "slow", ttft_factor=10.0, decode_factor=0.5)
    assert world(incidents=[slow]).outcome("a", 10.0, 11, (0.5,) * 4, None).ttft_s == pytest.approx(4.0)
    burst = Incident(0.0, 100.0, "errors", probability=0.6)
    assert world(incidents=[burst]).outcome("a", 10.0, 11, (0.5,) * 4, None).kind == "server"
    assert world(incidents=[burst]).outcome("a", 10.0, 11, (0.5, 0.5, 0.7, 0.5), None).kind == "ok"
    assert world(incidents=[burst]).outcome("a", 200.0, 11, (0.5,) * 4, None).kind == "ok"  # over by then


def test_account_limit_is_a_token_bucket_with_headers() -> None:
    bucket = Bucket(60.0, burst_s=2.0)  # 1 request/s, 2 in a burst
    assert bucket.take(0.0) is None and bucket.take(0.0) is None
    wait = bucket.take(0.0)
    assert wait == pytest.approx(1.0)
    rl = bucket.headers()
    assert rl.remaining_requests == 0 and rl.limit_requests == 60 and rl.reset_requests_s == pytest.approx(2.0)
    assert bucket.take(1.0) is None
    empty = Bucket(0.001)
    assert empty.take(0.0) is None  # the one request of its burst
    out = world().outcome("a", 0.0, 11, (0.5,) * 4, empty)
    assert out.kind == "rate_limit" and out.retry_after_s is not None and out.rate_limit is not None


def test_engine_retries_then_falls_back_like_the_executor() -> None:
    always = Incident(0.0, 1e9, "errors", probability=1.0)
    w = world(incidents=[always])
    res = Engine(w, [request(0, 1.0)], StaticCheapest(["a", "b"])).run()[0]
    assert res.ok and res.provider == "b" and res.attempts == 3  # 2 tries on a, then b
    assert res.cost_usd == pytest.approx((100 * 2.0 + 11 * 4.0) / 1e6)
    assert res.ttft_s is not None and res.ttft_s > 0.25 + 0.4  # waited a backoff between the tries on a
    failed = Engine(w, [request(0, 1.0)], OfficialOnly("a")).run()[0]
    assert not failed.ok and failed.attempts == 2 and failed.cost_usd == 0


def test_long_retry_after_falls_back_at_once() -> None:
    throttle = Incident(0.0, 1e9, "throttle", probability=1.0, retry_after_s=60.0)
    res = Engine(world(incidents=[throttle]), [request(0, 1.0)], StaticCheapest(["a", "b"])).run()[0]
    assert res.provider == "b" and res.attempts == 2 and res.ttft_s == pytest.approx(0.15 + 0.4)


def test_mean_of_last_10_tries_the_untried_and_learns_only_on_completion() -> None:
    m = MeanOfLast10(["a", "b"])
    a = Attempt("model", "a", "a", "k", 1, 0.0, stream=True)
    assert m.order(request(0, 0.0), 0.0) == ["a", "b"]
    m.started(a, 0.0)
    assert m.order(request(1, 0.1), 0.1) == ["a", "b"]  # a slow call in flight teaches nothing
    a.ttft_s = 5.0
    m.finished(a, None, 5.0)
    assert m.order(request(2, 5.0), 5.0) == ["b", "a"]
    for _ in range(10):
        b = Attempt("model", "b", "b", "k", 1, 0.0, stream=True)
        m.finished(b, RuntimeError("429"), 6.0)
    assert m.samples["b"][-1] == m.penalty_s


def test_shipped_scenarios_describe_what_is_real_and_what_is_synthetic() -> None:
    sc = build("qwen3-32b", 1, hours=0.5)
    text = "\n".join(sc.describe())
    for label in ("[real]", "[synthetic]", "baseline (official-only)", "nebius", "llmperf", "ServeGen", "Azure"):
        assert label.lower() in text.lower()
    assert sc.baseline == "nebius"  # the median-priced provider for the median request
    assert all(p.price_key in text for p in sc.world.providers.values())
    deep = build("deepseek-v3.2", 1, hours=0.5)
    assert deep.baseline == "deepseek" and deep.world.providers["deepseek"].official
    again = build("qwen3-32b", 1, hours=0.5)
    assert [r.arrival_s for r in again.requests] == [r.arrival_s for r in sc.requests]


def test_a_short_run_compares_every_policy_on_the_same_requests() -> None:
    res = run("qwen3-32b", 2, hours=1.0)
    assert list(res.metrics) == list(POLICIES)
    n = len(res.scenario.requests)
    assert n > 300
    for name, rows in res.results.items():
        assert len(rows) == n and all(r.attempts >= 1 for r in rows), name
        m = res.metrics[name]
        assert math.isfinite(m["cost_per_1k_usd"]) and 0 <= m["error_rate"] <= 1
    cheap = res.metrics["static cheapest"]["cost_per_1k_usd"]
    assert res.metrics["oracle"]["cost_per_1k_usd"] <= 1.25 * cheap
    assert res.metrics["llmroute"]["cost_per_1k_usd"] < res.metrics["round robin"]["cost_per_1k_usd"]
    assert summarize(res.results["llmroute"], res.scenario.duration_s) == res.metrics["llmroute"]


def test_bench_json_last_line(tmp_path: Path) -> None:
    plot = tmp_path / "sim.png"
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "simulate.py"),
            "--seeds",
            "1",
            "--hours",
            "0.5",
            "--json",
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    obj = json.loads(out.strip().splitlines()[-1])
    for key in ("cost_vs_official", "p95_ttft_vs_official", "p95_ttft_vs_mean10", "throughput_vs_official"):
        assert isinstance(obj[key], float), key
    assert set(obj["scenarios"]) == {"qwen3-32b", "deepseek-v3.2"}
    assert "[synthetic]" in out and plot.stat().st_size > 10_000


def test_loopback_replay_agrees_with_the_simulator() -> None:
    """The real Router over the loopback fleet, 10x faster than the scenario, makes the same choices.

    A calm window: near-equal choices (as around an incident, see ``bench/simulate.py
    --loopback``) tip either way once real HTTP adds its milliseconds, too noisy for a test."""
    from llmroute.sim.loopback import compare

    sc = build("qwen3-32b", 1, mean_rps=1.0, hours=12.1)
    cmp = compare(sc, start_s=12 * 3600.0, length_s=120.0, k=10.0, policies=("llmroute",))
    sim, real = cmp.sim["llmroute"], cmp.real["llmroute"]
    assert cmp.requests > 40 and real["served"] == sim["served"] == cmp.requests
    assert real["cost_per_1k_usd"] == pytest.approx(sim["cost_per_1k_usd"], rel=0.15)
    top = next(iter(cmp.shares_sim["llmroute"]))
    assert next(iter(cmp.shares_real["llmroute"])) == top
    assert cmp.shares_real["llmroute"][top] == pytest.approx(cmp.shares_sim["llmroute"][top], abs=0.15)
    # real HTTP adds milliseconds per request (times 10 in scenario seconds), never less time
    assert real["ttft_p50_s"] >= sim["ttft_p50_s"] * 0.95
