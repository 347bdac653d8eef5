"""Non-predictive strategies: the order in which a route's candidates are tried."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Candidate

__all__ = ["order_candidates"]


def order_candidates(strategy: str, candidates: Sequence[Candidate]) -> tuple[list[int], str]:
    """Indices of *candidates* in the order *strategy* tries them, and the reason.

    ``ordered`` keeps the configured order (models as listed, each model's deployments as
    listed). ``cheapest`` sorts by estimated cost, ties kept in configured order.
    """
    if strategy == "cheapest":
        return sorted(range(len(candidates)), key=lambda i: candidates[i].est_cost_usd), "cheapest estimated cost first"
    return list(range(len(candidates))), "configured order"
