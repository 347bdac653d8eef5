"""The circuit breaker state machine, driven by explicit times (no clock, no sleeps)."""

from __future__ import annotations

import pytest

from llmroute.circuit import TRANSITIONS, CircuitBreaker, CircuitEvent, CircuitSettings, CircuitState

CLOSED, OPEN, HALF = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def test_the_table_is_the_whole_machine() -> None:
    assert TRANSITIONS == {
        (CLOSED, CircuitEvent.TRIP): OPEN,
        (OPEN, CircuitEvent.COOLDOWN_OVER): HALF,
        (HALF, CircuitEvent.PROBE_FAILED): OPEN,
        (HALF, CircuitEvent.PROBES_SUCCEEDED): CLOSED,
    }


def test_consecutive_failures_open_then_cooldown_then_probes_close() -> None:
    b = CircuitBreaker(CircuitSettings(consecutive_failures=3, open_s=10, half_open_probes=1, close_after=2))
    for t in (0.0, 0.1):
        b.failed(t)
    assert b.state is CLOSED and b.allows(0.2)
    b.failed(0.2)
    assert b.state is OPEN and not b.allows(5.0)
    snap = b.snapshot(5.0)
    assert snap.retry_in_s == pytest.approx(5.2) and not snap.admitting and snap.trips == 1
    assert b.allows(10.2) and b.state is HALF  # cooldown over: one probe may go
    b.started(10.2)
    assert not b.allows(10.3)  # the only probe slot is taken
    b.succeeded(11.0)
    assert b.state is HALF and b.allows(11.0)
    b.started(11.0)
    b.succeeded(11.5)
    assert b.state is CLOSED and b.snapshot(11.5).consecutive_failures == 0


def test_a_failed_probe_reopens_for_twice_as_long_capped() -> None:
    b = CircuitBreaker(CircuitSettings(consecutive_failures=1, open_s=10, max_open_s=25))
    b.failed(0.0)
    assert b.allows(10.0)
    b.started(10.0)
    b.failed(10.5)
    assert b.state is OPEN and b.snapshot(10.5).retry_in_s == pytest.approx(20.0)
    assert not b.allows(30.0) and b.allows(30.5)
    b.started(30.5)
    b.failed(31.0)
    assert b.snapshot(31.0).retry_in_s == pytest.approx(25.0)  # capped at max_open_s


def test_failure_rate_over_the_window_opens_without_consecutive_failures() -> None:
    b = CircuitBreaker(CircuitSettings(consecutive_failures=100, failure_rate=0.5, min_samples=10, window_s=30))
    t = 0.0
    for i in range(20):  # alternate: never two failures in a row, but half fail
        t += 0.1
        if i % 2:
            b.failed(t)
        else:
            b.succeeded(t)
        if b.state is OPEN:
            break
    assert b.state is OPEN and i >= 9


def test_old_failures_decay_out_of_the_window() -> None:
    b = CircuitBreaker(CircuitSettings(consecutive_failures=100, failure_rate=0.5, min_samples=4, window_s=10))
    for t in (0.0, 0.1, 0.2):
        b.failed(t)
    b.succeeded(0.3)
    assert b.snapshot(0.3).failure_rate == pytest.approx(0.75, abs=0.01)
    for i in range(40):  # 10 minutes later, 40 successes in 10 s: the old failures are gone
        b.succeeded(600.0 + i / 4)
    b.failed(610.0)
    assert b.state is CLOSED and b.snapshot(610.0).failure_rate < 0.1


def test_retry_after_keeps_it_open_at_least_that_long() -> None:
    b = CircuitBreaker(CircuitSettings(consecutive_failures=2, open_s=5))
    b.failed(0.0, retry_after=30.0)
    b.failed(0.1, retry_after=30.0)
    assert b.state is OPEN and not b.allows(20.0) and b.allows(30.1)


def test_a_straggler_failing_while_open_extends_to_its_hint() -> None:
    b = CircuitBreaker(CircuitSettings(consecutive_failures=1, open_s=5))
    b.failed(0.0)
    b.failed(1.0, retry_after=60.0)
    assert not b.allows(30.0) and b.allows(61.0)


def test_cancelled_probe_frees_its_slot() -> None:
    b = CircuitBreaker(CircuitSettings(consecutive_failures=1, open_s=1))
    b.failed(0.0)
    assert b.allows(1.0)
    b.started(1.0)
    assert not b.allows(1.0)
    b.released(1.1)
    assert b.allows(1.1) and b.state is HALF


def test_disabled_breaker_never_opens() -> None:
    b = CircuitBreaker(CircuitSettings(enabled=False, consecutive_failures=1))
    for t in range(10):
        b.failed(float(t))
    assert b.state is CLOSED and b.allows(10.0)
