"""Cascade decisions: which tiers to try, and whether a tier's answer is kept or escalated.

Pure functions and records, no I/O, no awaits (``llmroute.cascade`` runs the tiers):

* :func:`tiers_of` turns a cascade route's config into :class:`Tier` values: each tier's models,
  its sub-route (how it picks among its models), its checks and its accept threshold;
* :func:`skip_reason` says whether the predictor's view of a prompt skips a tier (never the
  last): the tier's best predicted quality is below the route's ``skip_below``;
* :func:`decide` keeps an answer whose verdict scores at least the tier's ``accept``, or
  escalates it; the last tier's answer is always kept (there is nowhere to escalate to), and
  its verdict is still recorded.

:class:`TierTrace` is one tier's line in ``reply.route.cascade``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..config import RouteConfig

__all__ = ["DEFAULT_ACCEPT", "Outcome", "Tier", "TierTrace", "decide", "skip_reason", "tiers_of"]

#: Accept threshold when neither the route nor the tier sets one.
DEFAULT_ACCEPT = 0.5

#: What happened to a tier: its answer ``accepted`` (the reply), ``escalated`` (judged not good
#: enough), ``skipped`` (by prediction, or left out of a stream-strong-only call) or ``failed``
#: (every attempt failed: the next tier answers).
Outcome = Literal["accepted", "escalated", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class Tier:
    """One resolved tier of a cascade route."""

    index: int
    models: tuple[str, ...]
    #: The sub-route the tier is planned and executed as (its models and strategy).
    route: RouteConfig
    #: The check specs (names or callables) its answer is judged by; ``None``: the defaults.
    checks: tuple[Any, ...] | None
    accept: float
    last: bool


def tiers_of(route: RouteConfig) -> list[Tier]:
    """The tiers of a cascade *route*, cheapest first (see ``RouteConfig.tiers``)."""
    tiers = route.cascade_tiers()
    out: list[Tier] = []
    for i, t in enumerate(tiers):
        sub = route.model_copy(
            update={
                "models": list(t.models),
                "strategy": t.strategy,
                "quality_target": t.quality_target,
                "cost_weight": t.cost_weight,
                "tiers": None,
                "checks": None,
                "accept": None,
                "skip_below": None,
            }
        )
        checks = t.checks if t.checks is not None else route.checks
        accept = t.accept if t.accept is not None else route.accept if route.accept is not None else DEFAULT_ACCEPT
        out.append(
            Tier(i, tuple(t.models), sub, tuple(checks) if checks is not None else None, accept, i == len(tiers) - 1)
        )
    return out


def skip_reason(tier: Tier, quality: Mapping[str, float] | None, skip_below: float | None) -> str | None:
    """Why the predictor skips *tier* (``None``: it does not): its best predicted quality is below
    *skip_below*. The last tier is never skipped; no prediction skips nothing."""
    if tier.last or skip_below is None or not quality:
        return None
    known = [quality[m] for m in tier.models if m in quality]
    if not known:
        return None
    best = max(known)
    if best < skip_below:
        return f"predicted quality {best:.2f} < skip_below {skip_below:.2f}"
    return None


def decide(tier: Tier, score: float) -> tuple[Outcome, str]:
    """Keep or escalate a tier's answer whose checks scored *score*."""
    if score >= tier.accept:
        return "accepted", f"score {score:.2f} >= accept {tier.accept:.2f}"
    if tier.last:
        return "accepted", f"last tier: kept (score {score:.2f} < accept {tier.accept:.2f})"
    return "escalated", f"score {score:.2f} < accept {tier.accept:.2f}"


@dataclass(slots=True)
class TierTrace:
    """One tier of a cascade call, for ``reply.route.cascade``."""

    tier: int
    models: tuple[str, ...]
    outcome: Outcome
    reason: str
    #: The model that answered (``None`` when skipped or failed).
    model: str | None = None
    #: The checks' verdict on the answer (``llmroute.checks.Verdict``).
    verdict: Any = None
    #: What this tier spent, every attempt included.
    cost_usd: float = 0.0
    #: Seconds from the start of the call to this tier's start, and the tier's duration.
    started_s: float = 0.0
    duration_s: float = 0.0
    #: The tier's best predicted quality, when the predictor ran.
    predicted_quality: float | None = None
    #: Attempts this tier made (they are also in ``reply.route.attempts``).
    attempts: int = 0

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Names of the checks the answer failed."""
        return tuple(self.verdict.failed) if self.verdict is not None else ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = {k: v for k, v in asdict(self).items() if k != "verdict"}
        data["models"] = list(self.models)
        data["verdict"] = self.verdict.as_dict() if self.verdict is not None else None
        return data


def summary(traces: Sequence[TierTrace]) -> str:
    """A one-line account of the tiers, for ``reply.route.reason``."""
    parts = []
    for t in traces:
        who = t.model or "/".join(t.models)
        failed = f", failed {','.join(t.failed_checks)}" if t.failed_checks else ""
        parts.append(f"tier {t.tier + 1} ({who}) {t.outcome}: {t.reason}{failed}")
    return "cascade: " + "; ".join(parts)
