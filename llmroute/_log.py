"""The structured fields llmroute puts on its log records (``extra=``), in one place.

llmroute logs through the standard :mod:`logging` module, one logger per module under
``llmroute`` (``llmroute.execute``, ``llmroute.router``, ``llmroute.budget``, ...). Records about a
call or an attempt carry these fields as record attributes, for a JSON formatter or a filter::

    route, call_id, model, deployment, provider, attempt, status, outcome, error_type,
    cost_usd, cost_estimated, duration_s, queued_s, wait_s, attempts

Values come from the trace (no key, header or prompt is ever among them).
"""

from __future__ import annotations

from typing import Any

from .types import Attempt, RouteTrace

__all__ = ["attempt_fields", "call_fields"]


def attempt_fields(route: str, attempt: Attempt) -> dict[str, Any]:
    """The ``extra`` fields of a record about one attempt."""
    return {
        "route": route,
        "call_id": attempt.call_id,
        "model": attempt.model,
        "deployment": attempt.deployment,
        "provider": attempt.provider,
        "attempt": attempt.number,
        "status": attempt.status,
        "outcome": attempt.outcome,
        "error_type": attempt.error_type,
        "cost_usd": attempt.cost_usd,
        "cost_estimated": attempt.cost_estimated,
        "duration_s": attempt.duration_s,
        "queued_s": attempt.queued_s,
        "wait_s": attempt.wait_s,
    }


def call_fields(trace: RouteTrace, outcome: str, error: BaseException | None) -> dict[str, Any]:
    """The ``extra`` fields of a record about a whole routed call (*outcome*: ``ok``, ``error`` or
    ``cancelled``); model, deployment and status are those of its answering (else last) attempt."""
    last = trace.chosen or (trace.attempts[-1] if trace.attempts else None)
    return {
        "route": trace.route,
        "call_id": trace.call_id,
        "model": None if last is None else last.model,
        "deployment": None if last is None else last.deployment,
        "provider": None if last is None else last.provider,
        "attempt": None if last is None else last.number,
        "status": None if last is None else last.status,
        "outcome": outcome,
        "error_type": None if error is None else type(error).__name__,
        "cost_usd": trace.cost_usd,
        "cost_estimated": any(a.cost_estimated for a in trace.attempts),
        "duration_s": trace.duration_s,
        "queued_s": sum(a.queued_s for a in trace.attempts),
        "attempts": len(trace.attempts),
    }
