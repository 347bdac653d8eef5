"""Budgets: reserve an attempt's estimated cost before it is sent, settle its real cost after.

A reservation that fails raises :class:`~llmroute.errors.BudgetExceededError` naming the budget
and by how much; the route then moves on to a cheaper candidate if it has one. Reservations are
always settled or released in ``finally``, so a cancelled call holds nothing. Reserve and settle
are synchronous: in one event loop they are atomic, so concurrent calls can never overspend.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

from ..errors import BudgetExceededError

__all__ = ["Budget", "MemoryBudget", "Reservation"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """A held amount, to be settled once the attempt's real cost is known."""

    id: int
    budget: str
    amount_usd: float


class Budget(Protocol):
    """The seam shared by the in-memory budget and shared (e.g. Redis) ones."""

    def reserve(self, amount_usd: float, *, route: str, model: str) -> Reservation:
        """Hold *amount_usd* or raise BudgetExceededError."""
        ...

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the held amount with what the attempt really cost (0 releases it)."""
        ...


class MemoryBudget:
    """A spending limit for this process: spent + reserved never exceeds ``limit_usd``."""

    def __init__(self, limit_usd: float, *, name: str = "default") -> None:
        if limit_usd < 0:
            raise ValueError("limit_usd must be >= 0")
        self.name = name
        self.limit_usd = float(limit_usd)
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self._held: dict[int, float] = {}
        self._ids = itertools.count(1)

    def reserve(self, amount_usd: float, *, route: str = "", model: str = "") -> Reservation:
        """Hold *amount_usd* for one attempt, or raise BudgetExceededError."""
        committed = self.spent_usd + self.reserved_usd
        if committed + amount_usd > self.limit_usd + 1e-12:
            raise BudgetExceededError(self.name, limit_usd=self.limit_usd, spent_usd=committed, needed_usd=amount_usd)
        rid = next(self._ids)
        self._held[rid] = amount_usd
        self.reserved_usd += amount_usd
        return Reservation(rid, self.name, amount_usd)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the hold and record *actual_usd* as spent; settling twice is a no-op."""
        held = self._held.pop(reservation.id, None)
        if held is None:
            return
        self.reserved_usd = max(0.0, self.reserved_usd - held)
        self.spent_usd += actual_usd

    @property
    def remaining_usd(self) -> float:
        """What is left after spending and holds."""
        return self.limit_usd - self.spent_usd - self.reserved_usd

    def __repr__(self) -> str:
        return (
            f"MemoryBudget(name={self.name!r}, limit_usd={self.limit_usd}, spent_usd={self.spent_usd:.6f}, "
            f"reserved_usd={self.reserved_usd:.6f})"
        )
