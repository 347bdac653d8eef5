"""The predictive route strategy: the cheapest model that is predicted to be good enough.

Pure functions over a :class:`~llmroute.predictor.Prediction` (no I/O, no awaits). Rules:

* ``quality_target`` set (or neither knob set: :data:`DEFAULT_QUALITY_TARGET`): the cheapest
  candidate whose predicted quality is >= the target; if none reaches it, the one with the
  highest predicted quality. Fallback order after the chosen model: the other candidates that
  reach the target (cheapest first), then the rest by predicted quality (best first).
* ``cost_weight`` (lambda) set and no target: maximise ``quality - lambda * est_cost_usd``.
* Ties: among models that reach the target (and in utility mode) the cheaper model wins, then
  config order. When no model reaches the target, models with equal predicted quality are
  ordered most expensive first: the predictor cannot tell them apart, and price is the best
  remaining sign of capability. (Models the predictor does not know all get the same quality,
  ``1 - difficulty``, so a route over unknown models sends easy prompts to the cheapest model
  and hard ones - predicted quality below the target - to the most expensive.)
* Candidates without a prediction (missing or NaN quality) are never chosen while some
  candidate has one, and come last, in config order. No prediction at all keeps the config
  order, and the decision says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "DEFAULT_QUALITY_TARGET",
    "CandidateLike",
    "PredictionLike",
    "PredictiveCandidate",
    "PredictiveDecision",
    "choose",
]

#: Target used when a predictive route sets neither ``quality_target`` nor ``cost_weight``.
DEFAULT_QUALITY_TARGET = 0.8
_QUANT = 1e-9


class CandidateLike(Protocol):
    """Anything with a model name and an estimated cost for this call."""

    @property
    def model(self) -> str: ...

    @property
    def est_cost_usd(self) -> float: ...


class PredictionLike(Protocol):
    """The parts of :class:`llmroute.predictor.Prediction` the strategy reads."""

    @property
    def difficulty(self) -> float: ...

    @property
    def quality(self) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class PredictiveCandidate:
    """A route candidate: model name and the estimated cost of this call on it."""

    model: str
    est_cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class PredictiveDecision:
    """The predictive choice and why, for the route trace."""

    #: Model names to try, chosen first, then the fallback order.
    order: tuple[str, ...]
    #: The chosen model (``order[0]``), or None when there were no candidates.
    chosen: str | None
    #: Human-readable reason.
    reason: str
    #: Whether a prediction was used (False: config order kept).
    used_prediction: bool
    difficulty: float | None = None
    quality: Mapping[str, float] = field(default_factory=dict)
    known: Mapping[str, bool] = field(default_factory=dict)
    quality_target: float | None = None
    cost_weight: float | None = None
    #: The prompt latent the prediction came from (what :meth:`Router.record_feedback` learns from).
    latent: tuple[float, ...] = ()
    #: Whether an exploring learner chose differently from its best guess (``llmroute.learning``).
    explored: bool = False
    #: The shipped prior's predicted quality, when learning from your traffic adjusted ``quality``.
    prior_quality: Mapping[str, float] = field(default_factory=dict)
    #: The prediction this decision was made from (not serialised; what learning reads later).
    source: Any = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for traces."""
        return {
            "order": list(self.order),
            "chosen": self.chosen,
            "reason": self.reason,
            "used_prediction": self.used_prediction,
            "difficulty": self.difficulty,
            "quality": dict(self.quality),
            "known": dict(self.known),
            "quality_target": self.quality_target,
            "cost_weight": self.cost_weight,
            "explored": self.explored,
            **({"prior_quality": dict(self.prior_quality)} if self.prior_quality else {}),
        }


def _q(quality: Mapping[str, float], model: str) -> float | None:
    v = quality.get(model)
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _r(x: float) -> float:
    """Round so that float noise does not break ties that are meant to be ties."""
    return round(x / _QUANT) * _QUANT


def choose(
    prediction: PredictionLike | None,
    candidates: Sequence[CandidateLike],
    *,
    quality_target: float | None = None,
    cost_weight: float | None = None,
) -> PredictiveDecision:
    """Order *candidates* for one call from *prediction* (see the module docstring)."""
    names = tuple(c.model for c in candidates)
    if not candidates:
        return PredictiveDecision(
            (), None, "no candidates", False, quality_target=quality_target, cost_weight=cost_weight
        )
    if prediction is None:
        return PredictiveDecision(
            names,
            names[0],
            "no prediction available: configured order kept",
            False,
            quality_target=quality_target,
            cost_weight=cost_weight,
        )
    quality = prediction.quality
    known = dict(getattr(prediction, "known", {}) or {})
    difficulty = float(prediction.difficulty)
    idx = {c.model: i for i, c in enumerate(candidates)}
    cost = {c.model: float(c.est_cost_usd) for c in candidates}
    qs = {c.model: _q(quality, c.model) for c in candidates}
    have = [c.model for c in candidates if qs[c.model] is not None]
    missing = [c.model for c in candidates if qs[c.model] is None]
    shown = {m: q for m, q in qs.items() if q is not None}

    latent = tuple(getattr(prediction, "latent", ()) or ())

    def record(order: list[str], reason: str, target: float | None, lam: float | None) -> PredictiveDecision:
        full = tuple(order + missing)
        return PredictiveDecision(
            full, full[0], reason, True, difficulty, shown, known, target, lam, latent, source=prediction
        )

    if not have:
        return PredictiveDecision(
            names,
            names[0],
            "no predicted quality for any candidate: configured order kept",
            False,
            difficulty,
            {},
            known,
            quality_target,
            cost_weight,
            latent,
            source=prediction,
        )
    suffix = f" (difficulty {difficulty:.2f})"
    if missing:
        suffix += f"; no prediction for {', '.join(missing)}: tried last"
    if quality_target is None and cost_weight is not None:
        lam = float(cost_weight)
        order = sorted(have, key=lambda m: (-_r(shown[m] - lam * cost[m]), cost[m], idx[m]))
        best = order[0]
        reason = (
            f"max quality - {lam:g} x cost: {best} (quality {shown[best]:.2f}, est. cost ${cost[best]:.6f})" + suffix
        )
        return record(order, reason, None, lam)
    target = DEFAULT_QUALITY_TARGET if quality_target is None else float(quality_target)
    ok = [m for m in have if shown[m] >= target]
    rest = [m for m in have if shown[m] < target]
    ok.sort(key=lambda m: (cost[m], idx[m]))
    rest.sort(key=lambda m: (-_r(shown[m]), -cost[m], idx[m]))
    if ok:
        best = ok[0]
        reason = (
            f"cheapest model with predicted quality >= {target:.2f}: {best} "
            f"(quality {shown[best]:.2f}, est. cost ${cost[best]:.6f})" + suffix
        )
        return record(ok + rest, reason, target, cost_weight)
    best = rest[0]
    reason = f"no model predicted to reach {target:.2f}: highest predicted quality {best} ({shown[best]:.2f})" + suffix
    return record(rest, reason, target, cost_weight)
