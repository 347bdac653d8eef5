"""Budgets: reserve an attempt's worst-case cost before it is sent, settle what it may have cost after.

The executor calls :meth:`Budget.reserve` before every attempt with the attempt's *worst case*:
its input tokens counted, and its output at the ``max_tokens`` actually sent (llmroute always sends
one; see ``docs/configuration.md``). A reservation that does not fit raises
:class:`~llmroute.errors.BudgetExceededError` naming the budget and by how much, and the route moves
on to its next, possibly cheaper, candidate. After the attempt, :meth:`Budget.settle` replaces the
hold with what the attempt may have been billed:

* the cost of the usage the provider reported, when it reported one;
* nothing, when the provider answered with an error status or the request never left (the
  connection could not be made, or the call was cancelled while waiting for a connection);
* the reserved worst case otherwise: an attempt cancelled, timed out or cut off after its request
  was sent may have been generated and billed in full, and llmroute cannot know.

So a budget's *spent* is what may have been billed, never less than what was. Settling happens in
``finally`` blocks shielded from cancellation, so a cancelled call, a timed-out call and an abandoned
stream all release their holds without relying on the garbage collector.

Both methods are coroutines, so a budget may live in another process (Redis); the in-memory
:class:`MemoryBudget` never suspends inside them, which makes each call atomic on its event loop.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Protocol

from ..errors import BudgetExceededError

__all__ = ["Budget", "MemoryBudget", "Reservation", "Spend"]


@dataclass(frozen=True, slots=True)
class Spend:
    """What an attempt spends on, and for whom: the keys a budget may be scoped by."""

    route: str
    #: The logical model (config name).
    model: str
    deployment: str = ""
    provider: str = ""
    #: The end user the call was made for (``complete(..., user=...)``), if given.
    user: str | None = None
    #: Free-form tags of the call (``complete(..., tags=...)``).
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reservation:
    """A held amount, to be settled once the attempt's real cost is known."""

    id: int | str
    budget: str
    amount_usd: float


class Budget(Protocol):
    """The seam shared by the in-memory budget and shared (e.g. Redis) ones."""

    async def reserve(self, amount_usd: float, spend: Spend) -> Reservation:
        """Hold *amount_usd* (finite, >= 0) for one attempt, or raise BudgetExceededError."""
        ...

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the hold with what the attempt may have cost (0 releases it); idempotent."""
        ...


def _amount(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite amount >= 0, got {value!r}")
    return value


class MemoryBudget:
    """A spending limit for this process: spent + reserved never exceeds ``limit_usd``."""

    def __init__(self, limit_usd: float, *, name: str = "default") -> None:
        self.name = name
        self.limit_usd = _amount(limit_usd, "limit_usd")
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self._held: dict[int, float] = {}
        self._ids = itertools.count(1)

    async def reserve(self, amount_usd: float, spend: Spend | None = None) -> Reservation:
        """Hold *amount_usd* for one attempt, or raise BudgetExceededError."""
        return self.reserve_now(amount_usd)

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the hold and record *actual_usd* as spent; settling twice is a no-op."""
        self.settle_now(reservation, actual_usd)

    def reserve_now(self, amount_usd: float) -> Reservation:
        """:meth:`reserve` without awaiting (for synchronous callers)."""
        amount = _amount(amount_usd, "amount_usd")
        committed = self.spent_usd + self.reserved_usd
        if committed + amount > self.limit_usd + 1e-12:
            raise BudgetExceededError(self.name, limit_usd=self.limit_usd, spent_usd=committed, needed_usd=amount)
        rid = next(self._ids)
        self._held[rid] = amount
        self.reserved_usd += amount
        return Reservation(rid, self.name, amount)

    def settle_now(self, reservation: Reservation, actual_usd: float) -> None:
        """:meth:`settle` without awaiting (for synchronous callers)."""
        actual = _amount(actual_usd, "actual_usd")
        held = self._held.pop(reservation.id, None)  # type: ignore[call-overload]
        if held is None:
            return
        self.reserved_usd = max(0.0, self.reserved_usd - held) if self._held else 0.0
        self.spent_usd += actual

    @property
    def remaining_usd(self) -> float:
        """What is left after spending and holds."""
        return self.limit_usd - self.spent_usd - self.reserved_usd

    @property
    def open_reservations(self) -> int:
        """Holds not yet settled (0 once every attempt has ended)."""
        return len(self._held)

    def __repr__(self) -> str:
        return (
            f"MemoryBudget(name={self.name!r}, limit_usd={self.limit_usd}, spent_usd={self.spent_usd:.6f}, "
            f"reserved_usd={self.reserved_usd:.6f})"
        )
