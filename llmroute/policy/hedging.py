"""Hedged requests: when to start a second attempt on another deployment, and where (pure).

A hedge races a slow first attempt: if no first token has come after a delay (by default the
primary deployment's p95 TTFT estimate), the next-best deployment is started too; the first of
the two to produce a token wins, the other is cancelled. These functions only *decide*; the
executor acts (see the design note in ``docs/health.md``: race in one task group, commit to the
first token, cancel and settle the loser, count its spend, never emit the loser's text).

Never hedges: past the call's budget (the hedge's worst-case cost must fit what is left), into an
open circuit (or a half-open one with its probe slots taken), when the deadline leaves less than
the hedge's expected TTFT, beyond ``max_hedges``, or onto a deployment costing more than
``max_cost_ratio`` times the primary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..health import DeploymentHealth

__all__ = ["HedgeCandidate", "HedgeDecision", "HedgeSettings", "hedge_delay", "should_hedge"]


@dataclass(frozen=True, slots=True)
class HedgeSettings:
    """How a route hedges (off unless ``enabled``)."""

    enabled: bool = False
    #: A fixed delay before hedging; ``None``: the primary's p95 TTFT estimate x ``delay_factor``.
    delay_s: float | None = None
    delay_factor: float = 1.0
    #: Bounds on the computed delay, seconds.
    min_delay_s: float = 0.05
    max_delay_s: float = 30.0
    #: Hedges per call (each one more attempt in flight).
    max_hedges: int = 1
    #: Refuse a hedge whose estimated cost exceeds this multiple of the primary's (``None``: any).
    max_cost_ratio: float | None = None
    #: Prefer a deployment at another provider (a provider-wide slowdown hits all its deployments).
    prefer_other_provider: bool = True


@dataclass(frozen=True, slots=True)
class HedgeCandidate:
    """A deployment the hedge could go to, in the plan's order, with its health and worst-case cost."""

    deployment: str
    provider: str
    health: DeploymentHealth
    #: The cost the budget would reserve for it (the executor's upper-bound estimate).
    est_cost_usd: float


@dataclass(frozen=True, slots=True)
class HedgeDecision:
    """Whether to start a hedge now, on which deployment, and why (for the trace)."""

    hedge: bool
    deployment: str | None
    reason: str
    #: When not yet: seconds until the delay is reached (``None`` when never).
    wait_s: float | None = None


def hedge_delay(primary: DeploymentHealth, settings: HedgeSettings) -> float:
    """Seconds without a first token after which to hedge: ``delay_s``, else the primary's p95
    TTFT estimate x ``delay_factor``; clipped to [``min_delay_s``, ``max_delay_s``]."""
    delay = settings.delay_s if settings.delay_s is not None else primary.ttft_s.p95 * settings.delay_factor
    return min(max(delay, settings.min_delay_s), settings.max_delay_s)


def should_hedge(
    *,
    elapsed_s: float,
    primary: HedgeCandidate,
    candidates: Sequence[HedgeCandidate],
    settings: HedgeSettings,
    hedges_started: int = 0,
    first_token: bool = False,
    budget_left_usd: float | None = None,
    deadline_left_s: float | None = None,
) -> HedgeDecision:
    """Decide, *elapsed_s* after the primary attempt started, whether to start a hedge.

    *candidates* are the plan's other deployments in order (the primary's own entry is skipped);
    *budget_left_usd* is what the budget can still reserve, *deadline_left_s* what the call's
    deadline leaves (``None``: no budget / no deadline).
    """
    if not settings.enabled:
        return HedgeDecision(False, None, "hedging off")
    if first_token:
        return HedgeDecision(False, None, "the primary has produced its first token")
    if hedges_started >= settings.max_hedges:
        return HedgeDecision(False, None, f"{hedges_started} hedge(s) already started (max {settings.max_hedges})")
    delay = hedge_delay(primary.health, settings)
    if elapsed_s < delay:
        return HedgeDecision(False, None, f"waiting for the hedge delay {delay:.3g}s", wait_s=delay - elapsed_s)
    refused: list[str] = []
    eligible: list[HedgeCandidate] = []
    for c in candidates:
        if c.deployment == primary.deployment:
            continue
        if not c.health.circuit.admitting:
            refused.append(f"{c.deployment}: circuit {c.health.circuit.state.value}")
            continue
        if budget_left_usd is not None and c.est_cost_usd > budget_left_usd:
            refused.append(f"{c.deployment}: needs ${c.est_cost_usd:.6f}, budget has ${budget_left_usd:.6f}")
            continue
        if deadline_left_s is not None and c.health.ttft_s.mean >= deadline_left_s:
            refused.append(f"{c.deployment}: expected TTFT {c.health.ttft_s.mean:.3g}s >= {deadline_left_s:.3g}s left")
            continue
        if settings.max_cost_ratio is not None and c.est_cost_usd > settings.max_cost_ratio * primary.est_cost_usd:
            refused.append(f"{c.deployment}: costs over {settings.max_cost_ratio:g}x the primary")
            continue
        eligible.append(c)
    if not eligible:
        why = "; ".join(refused) if refused else "no other deployment in the plan"
        return HedgeDecision(False, None, f"no deployment to hedge on ({why})")
    pick = eligible[0]
    if settings.prefer_other_provider:
        pick = next((c for c in eligible if c.provider != primary.provider), pick)
    return HedgeDecision(
        True,
        pick.deployment,
        f"no first token after {elapsed_s:.3g}s (delay {delay:.3g}s, primary p95 TTFT "
        f"{primary.health.ttft_s.p95:.3g}s): hedging on {pick.deployment}",
    )
