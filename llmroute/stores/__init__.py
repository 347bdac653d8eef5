"""Shared state: where budgets, rate limits (and later health and learned routing state) live.

A :class:`Store` holds a few kinds of state, each changed by one atomic operation:

* **budget counters** (:meth:`Store.reserve` / :meth:`Store.settle`): a counter is one budget
  scope in one window (``user alice, day 2025-01-31``) with a limit; a *hold* is one attempt's
  reservation across every counter that applies to it, taken all or nothing, and settled once.
  Amounts are integers in :data:`UNIT` USD (nano-dollars), so sums are exact.
* **token buckets** (:meth:`Store.take`, :meth:`Store.cap_bucket`): client-side rate limits.
* **a small namespaced key/value API** (:meth:`Store.get`, :meth:`Store.put`, :meth:`Store.add`):
  the seam other shared state plugs into (health estimates, learned routing state), so one Redis
  connection serves a whole fleet of workers.

Two implementations: :class:`~llmroute.stores.memory.MemoryStore` (this process) and
:class:`~llmroute.stores.redis.RedisStore` (a fleet of processes, ``pip install llmroute[redis]``).
A store that cannot be reached raises :class:`StoreUnavailableError`; what a budget then does is
its ``on_store_error`` choice (see ``docs/budgets.md``).

Holds never leak: each has a client-generated id and an expiry (``hold_ttl_s``). A hold whose
process died is charged in full when it expires (its attempt may have been billed), and a reserve
cancelled mid-way is released by id with a tombstone, so a reserve that reaches the store after
its release does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import LLMRouteError

__all__ = [
    "UNIT",
    "Bucket",
    "Counter",
    "Refusal",
    "Store",
    "StoreUnavailableError",
    "from_url",
]

#: The store's unit of money: amounts are whole nano-dollars.
UNIT = 1e-9


class StoreUnavailableError(LLMRouteError):
    """The shared store could not be reached in time (e.g. Redis is down)."""


@dataclass(frozen=True, slots=True)
class Counter:
    """One budget scope in one window: its store key, limit (in :data:`UNIT`) and end of life."""

    key: str
    limit: int
    #: Seconds the counter must live from now (its window's end plus the hold TTL); ``None``: forever.
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reserve was refused: the counter with the least room left, and what it holds."""

    #: Index of that counter in the reserve's ``counters``.
    index: int
    #: Spent plus held at that counter (:data:`UNIT`).
    committed: int
    #: The held part of it: what settling the holds now open may free.
    held: int = 0


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: *capacity* tokens, refilled at *rate* tokens per second."""

    key: str
    capacity: float
    rate: float


class Store(Protocol):
    """The operations every store provides; each one is atomic."""

    async def reserve(
        self, hold_id: str, amount: int, counters: Sequence[Counter], *, now: float, hold_ttl_s: float
    ) -> Refusal | None:
        """Hold *amount* on every counter, or on none: ``None`` when held, else the :class:`Refusal`.

        A hold expires *hold_ttl_s* after *now* and is then charged in full. A reserve whose id was
        already released (see :meth:`settle` with ``cancelled``) holds nothing and returns ``None``.
        """
        ...

    async def settle(self, hold_id: str, actual: int, *, now: float, cancelled: bool = False) -> bool:
        """Replace the hold with *actual* spent on each of its counters; ``False`` if it was not held.

        With *cancelled*, also make sure a reserve of this id still on its way holds nothing.
        """
        ...

    async def charge(self, actual: int, counters: Sequence[Counter]) -> None:
        """Add *actual* to what each counter has spent, without a hold (fail-open spending)."""
        ...

    async def counter(self, key: str) -> tuple[int, int]:
        """``(spent, held)`` of a counter (``(0, 0)`` if it does not exist)."""
        ...

    async def open_holds(self) -> int:
        """How many holds are open (not settled, not expired)."""
        ...

    async def take(self, buckets: Sequence[Bucket], amounts: Sequence[float], *, now: float) -> float:
        """Take *amounts* from every bucket, or from none: 0.0 when taken, else the seconds until they
        could all be taken."""
        ...

    async def cap_bucket(self, bucket: Bucket, level: float, *, now: float, refill_at: float | None = None) -> None:
        """Lower a bucket to *level* tokens if it holds more (a provider said so), optionally not
        refilling before *refill_at*."""
        ...

    async def get(self, namespace: str, key: str) -> str | None:
        """The value stored under *namespace*/*key*, or ``None``."""
        ...

    async def put(self, namespace: str, key: str, value: str, *, ttl_s: float | None = None) -> None:
        """Store *value* under *namespace*/*key*, expiring after *ttl_s* seconds if given."""
        ...

    async def add(self, namespace: str, key: str, delta: float, *, ttl_s: float | None = None) -> float:
        """Atomically add *delta* to the number under *namespace*/*key* (0 if absent); return the sum."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def from_url(url: str, **options: Any) -> Store:
    """A store from a URL: ``memory://`` or ``redis://host:port/db`` (``rediss://``, ``unix://``)."""
    if url.startswith("memory:"):
        from .memory import MemoryStore

        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore(url, **options)
    raise ValueError("store URL must start with memory:, redis://, rediss:// or unix://")
