"""Hedging decisions (pure): when, where, and every case where it must not hedge."""

from __future__ import annotations

import pytest
from test_selection import health

from llmroute.circuit import CircuitState
from llmroute.policy.hedging import HedgeCandidate, HedgeSettings, hedge_delay, should_hedge

ON = HedgeSettings(enabled=True)


def cand(
    name: str,
    *,
    ttft: float = 0.5,
    cost: float = 0.001,
    circuit: CircuitState = CircuitState.CLOSED,
    admitting: bool | None = None,
) -> HedgeCandidate:
    return HedgeCandidate(name, name.split("/")[0], health(name, ttft=ttft, circuit=circuit, admitting=admitting), cost)


def test_delay_is_the_primary_p95_ttft_clipped() -> None:
    primary = cand("a/x", ttft=0.5)
    assert hedge_delay(primary.health, ON) == pytest.approx(primary.health.ttft_s.p95)
    assert hedge_delay(primary.health, HedgeSettings(enabled=True, delay_factor=2)) == pytest.approx(
        2 * primary.health.ttft_s.p95
    )
    assert hedge_delay(primary.health, HedgeSettings(enabled=True, delay_s=3.0)) == 3.0
    assert hedge_delay(cand("a/x", ttft=0.001).health, ON) == ON.min_delay_s
    assert hedge_delay(cand("a/x", ttft=500).health, ON) == ON.max_delay_s


def test_hedges_on_the_next_deployment_once_the_primary_is_late() -> None:
    primary, other = cand("a/x"), cand("b/x")
    early = should_hedge(elapsed_s=0.1, primary=primary, candidates=[primary, other], settings=ON)
    assert not early.hedge and early.wait_s == pytest.approx(hedge_delay(primary.health, ON) - 0.1)
    late = should_hedge(elapsed_s=2.0, primary=primary, candidates=[primary, other], settings=ON)
    assert late.hedge and late.deployment == "b/x" and "hedging on b/x" in late.reason


def test_prefers_another_provider() -> None:
    primary, same, other = cand("a/x"), cand("a/y"), cand("b/x")
    d = should_hedge(elapsed_s=5, primary=primary, candidates=[primary, same, other], settings=ON)
    assert d.deployment == "b/x"
    d = should_hedge(
        elapsed_s=5,
        primary=primary,
        candidates=[primary, same, other],
        settings=HedgeSettings(enabled=True, prefer_other_provider=False),
    )
    assert d.deployment == "a/y"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"settings": HedgeSettings()}, "hedging off"),
        ({"first_token": True}, "first token"),
        ({"hedges_started": 1}, "already started"),
        ({"budget_left_usd": 0.0005}, "budget has"),
        ({"deadline_left_s": 0.2}, "expected TTFT"),
        ({"settings": HedgeSettings(enabled=True, max_cost_ratio=0.5)}, "costs over"),
    ],
)
def test_never_hedges_when_it_must_not(kwargs: dict[str, object], fragment: str) -> None:
    primary, other = cand("a/x"), cand("b/x")
    args: dict[str, object] = {"elapsed_s": 10.0, "primary": primary, "candidates": [primary, other], "settings": ON}
    args.update(kwargs)
    d = should_hedge(**args)  # type: ignore[arg-type]
    assert not d.hedge and d.deployment is None and fragment in d.reason


def test_never_into_an_open_or_busy_circuit() -> None:
    primary = cand("a/x")
    shut = cand("b/x", circuit=CircuitState.OPEN)
    busy = cand("c/x", circuit=CircuitState.HALF_OPEN, admitting=False)
    d = should_hedge(elapsed_s=10, primary=primary, candidates=[primary, shut, busy], settings=ON)
    assert not d.hedge and "b/x: circuit open" in d.reason and "c/x: circuit half_open" in d.reason
    probe = cand("d/x", circuit=CircuitState.HALF_OPEN)  # a free probe slot: allowed
    assert (
        should_hedge(elapsed_s=10, primary=primary, candidates=[primary, shut, probe], settings=ON).deployment == "d/x"
    )


def test_a_stalled_primary_is_beaten_by_the_hedge_in_virtual_time() -> None:
    """Step a virtual clock: the primary stalls 30 s, the hedge answers 0.4 s after it starts."""
    primary, backup = cand("a/x", ttft=0.5), cand("b/x", ttft=0.4)
    t, hedged_at = 0.0, None
    while t < 30.0 and hedged_at is None:
        d = should_hedge(elapsed_s=t, primary=primary, candidates=[primary, backup], settings=ON)
        if d.hedge:
            hedged_at = t
        else:
            t += d.wait_s if d.wait_s else 0.01
    assert hedged_at is not None
    first_token = min(30.0, hedged_at + 0.4)
    assert first_token < 1.5  # instead of 30 s
