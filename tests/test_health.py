"""Health tracking on a virtual clock: decayed estimates, aging, errors, limits, in-flight evidence."""

from __future__ import annotations

import json
import math
import random

import pytest

from llmroute.circuit import CircuitSettings, CircuitState
from llmroute.errors import BadRequestError, RateLimitError, ServerError
from llmroute.health import DecayedSketch, HealthSettings, HealthTracker, error_kind
from llmroute.ratelimit import RateLimitInfo
from llmroute.types import Attempt, Usage


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tracker(**kw: object) -> tuple[HealthTracker, Clock]:
    clock = Clock()
    return HealthTracker(HealthSettings(**kw), clock=clock), clock  # type: ignore[arg-type]


def attempt(dep: str = "a", *, stream: bool = True) -> Attempt:
    return Attempt("m", dep, "p", "x", 1, 0.0, stream=stream)


def finish(
    h: HealthTracker,
    clock: Clock,
    dep: str = "a",
    *,
    ttft: float | None = 0.2,
    dur: float = 1.2,
    out: int = 51,
    error: BaseException | None = None,
    stream: bool = True,
    rate_limit: RateLimitInfo | None = None,
) -> Attempt:
    a = attempt(dep, stream=stream)
    h.attempt_started(a)
    clock.now += dur
    a.duration_s = dur
    a.ttft_s = ttft if stream else None
    a.usage = Usage(100, out) if error is None else None
    a.outcome = "ok" if error is None else "error"
    a.rate_limit = rate_limit
    h.attempt_finished(a, error)
    return a


def test_sketch_quantiles_match_a_lognormal_within_a_bin() -> None:
    rng = random.Random(1)
    sk = DecayedSketch(1e-3, 1e3)
    xs = sorted(math.exp(rng.gauss(math.log(0.5), 0.6)) for _ in range(20_000))
    for x in xs:
        sk.add(x, 1.0)
    p05, p50, p95 = sk.quantiles((0.05, 0.5, 0.95))
    for got, q in ((p05, 0.05), (p50, 0.5), (p95, 0.95)):
        assert got == pytest.approx(xs[int(q * len(xs))], rel=0.08)
    assert DecayedSketch(1, 10).quantiles((0.5,))[0] != DecayedSketch(1, 10).quantiles((0.5,))[0]  # NaN when empty


def test_streams_measure_ttft_and_decode_rate_apart() -> None:
    h, clock = tracker(half_life_s=60, prior_weight=0.01)
    for _ in range(30):
        finish(h, clock, ttft=0.25, dur=0.25 + 50 / 100.0, out=51)  # 50 tokens after the first at 100 tok/s
    e = h.get("a")
    assert e.ttft_s.p50 == pytest.approx(0.25, rel=0.1) and e.ttft_s.mean == pytest.approx(0.25, rel=0.02)
    assert e.tokens_per_s.p50 == pytest.approx(100, rel=0.1) and e.tokens_per_s.mean == pytest.approx(100, rel=0.02)
    assert e.error_rate < 0.01 and e.in_flight == 0 and e.mean_output_tokens == pytest.approx(51)


def test_non_streamed_durations_scale_both_estimates() -> None:
    h, clock = tracker(half_life_s=60, prior_ttft_s=0.5, prior_tokens_per_s=50, prior_weight=1)
    for _ in range(20):  # twice as slow as the prior predicts: 2 * (0.5 + 50/50)
        finish(h, clock, stream=False, dur=3.0, out=50)
    e = h.get("a")
    assert e.ttft_s.mean == pytest.approx(1.0, rel=0.15)
    assert e.tokens_per_s.mean == pytest.approx(25, rel=0.15)


def test_samples_halve_every_half_life_and_estimates_drift_back_to_the_prior() -> None:
    h, clock = tracker(half_life_s=100, prior_ttft_s=1.0, prior_weight=2)
    for _ in range(50):
        finish(h, clock, ttft=5.0, dur=5.5, out=2)  # a slow provider
    fresh = h.get("a")
    assert fresh.ttft_s.mean > 4.0
    clock.now += 100
    aged = h.get("a")
    assert aged.ttft_s.samples == pytest.approx(fresh.ttft_s.samples / 2, rel=0.01)
    clock.now += 900  # ten half-lives without a sample
    old = h.get("a")
    assert old.ttft_s.mean < 1.1 and old.ttft_s.samples < 0.05
    assert old.ttft_s.uncertainty > 2 * fresh.ttft_s.uncertainty
    assert old.last_seen_s == pytest.approx(1000)


def test_errors_by_kind_and_what_counts_against_health() -> None:
    h, clock = tracker(half_life_s=600, prior_weight=1, prior_error_rate=0.0)
    for _ in range(6):
        finish(h, clock)
    finish(h, clock, error=RateLimitError("slow down", retry_after=2.0), ttft=None, dur=0.01)
    finish(h, clock, error=ServerError("boom", status=503), ttft=None, dur=0.01)
    finish(h, clock, error=BadRequestError("your fault", status=400), ttft=None, dur=0.01)
    e = h.get("a")
    assert set(e.errors) == {"rate_limit", "server", "bad_request"}
    assert e.attempts == pytest.approx(9, rel=0.01)
    assert e.error_rate == pytest.approx(2 / 10, rel=0.02)  # the 400 is not the provider's fault
    assert e.rate_limited_rate == pytest.approx(1 / 10, rel=0.02)
    assert error_kind(None) == "ok" and error_kind(KeyboardInterrupt()) == "cancelled"


def test_in_flight_is_live_and_slow_in_flight_attempts_count_before_they_finish() -> None:
    h, clock = tracker(half_life_s=60, prior_weight=0.5)
    for _ in range(20):
        finish(h, clock, ttft=0.3, dur=0.8)
    before = h.get("a")
    stuck = [attempt() for _ in range(5)]
    for a in stuck:
        h.attempt_started(a)
    assert h.in_flight("a") == 5 and h.get("a", fresh=True).in_flight == 5
    clock.now += 0.2  # younger than p95: no evidence yet
    assert h.get("a").overdue == 0
    clock.now += 10.0  # ten seconds without a first token
    during = h.get("a")
    assert during.overdue == 5 and during.ttft_s.mean > 2 * before.ttft_s.mean
    assert during.ttft_s.p95 > 5.0
    for a in stuck:  # they give up (cancelled): kept as lower-bound samples, not errors
        a.outcome, a.duration_s = "cancelled", 10.2
        h.attempt_finished(a, KeyboardInterrupt())
    clock.now += 1.0
    after = h.get("a")
    assert after.in_flight == 0 and after.error_rate < 0.05 and after.ttft_s.mean > 2 * before.ttft_s.mean


def test_rate_limit_headers_age_and_reset() -> None:
    h, clock = tracker()
    finish(h, clock, rate_limit=RateLimitInfo(limit_requests=10, remaining_requests=0, reset_requests_s=5.0))
    rl = h.get("a").rate_limit
    # the headers came with the first token, 1 s before the stream ended
    assert rl is not None and rl.remaining_requests == 0 and rl.reset_requests_in_s == pytest.approx(4.0)
    h.attempt_started(attempt())
    clock.now += 6.0  # past the reset: assume the window refilled
    rl = h.get("a").rate_limit
    assert rl is not None and rl.reset_requests_in_s is None and rl.remaining_requests == 10
    assert rl.started_since == 1


def test_a_burst_of_429s_opens_the_circuit_and_probes_close_it() -> None:
    circuit = CircuitSettings(consecutive_failures=3, open_s=10, close_after=1)
    h, clock = tracker(circuit=circuit)
    for _ in range(3):
        finish(h, clock, error=RateLimitError("429", retry_after=1.0), ttft=None, dur=0.01)
    e = h.get("a")
    assert e.circuit.state is CircuitState.OPEN and not e.circuit.admitting and not h.allows("a")
    clock.now += 10.0
    assert h.allows("a") and h.get("a").circuit.state is CircuitState.HALF_OPEN
    finish(h, clock)  # the probe succeeds
    assert h.get("a").circuit.state is CircuitState.CLOSED


def test_snapshot_lists_registered_deployments_and_is_json_ready() -> None:
    h, clock = tracker()
    h.register("b", model="m", provider="q")
    finish(h, clock)
    snap = h.snapshot()
    assert set(snap.deployments) == {"a", "b"} and snap["b"].attempts == 0 and len(snap) == 2
    data = json.loads(json.dumps(snap.as_dict()))
    assert data["deployments"]["a"]["circuit"]["state"] == "closed"
    assert data["deployments"]["b"]["ttft_s"]["samples"] == 0
    with pytest.raises(AttributeError):
        snap.at = 1.0  # type: ignore[misc]


def test_stale_in_flight_attempts_are_ignored() -> None:
    h, clock = tracker(stale_in_flight_s=100)
    h.attempt_started(attempt())  # a hook pair that never closes
    clock.now += 1000
    e = h.get("a")
    assert e.overdue == 0 and e.ttft_s.mean == pytest.approx(1.0, rel=0.01)


def test_long_runs_renormalise_without_overflow() -> None:
    h, clock = tracker(half_life_s=1, prior_weight=0.01)
    for _ in range(200):
        clock.now += 5  # 1000 half-lives in all
        finish(h, clock, ttft=0.1, dur=0.01)
    e = h.get("a")
    assert math.isfinite(e.ttft_s.mean) and 0.05 < e.ttft_s.p50 < 0.2
