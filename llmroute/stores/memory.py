"""The in-process store: budgets, rate limits and key/values for one process.

Every operation runs to completion without awaiting, under one lock, so it is atomic on its event
loop (asyncio or trio) and across threads (several event loops in one process).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import Bucket, Counter, Refusal

__all__ = ["MemoryStore"]

#: How long a cancelled reserve's id is remembered (a reserve arriving later holds nothing).
_TOMBSTONE_S = 3600.0


@dataclass(slots=True)
class _Counter:
    spent: int = 0
    held: int = 0
    #: Wall-clock time it expires; ``None``: never.
    expires_at: float | None = None


@dataclass(slots=True)
class _Hold:
    amount: int
    keys: tuple[str, ...]
    expires_at: float


@dataclass(slots=True)
class _Bucket:
    level: float
    last: float
    not_before: float = 0.0


@dataclass(slots=True)
class _State:
    counters: dict[str, _Counter] = field(default_factory=dict)
    holds: dict[str, _Hold] = field(default_factory=dict)
    expiry: list[tuple[float, str]] = field(default_factory=list)
    tombstones: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    values: dict[str, tuple[str, float | None]] = field(default_factory=dict)


class MemoryStore:
    """A :class:`~llmroute.stores.Store` held in this process's memory.

    *clock* gives the wall-clock time used for key/value expiry (budgets and buckets take ``now``
    from their caller).
    """

    def __init__(self, *, clock: object = None) -> None:
        self._lock = threading.Lock()
        self._s = _State()
        self._clock = clock if callable(clock) else time.time
        self._sweep_at = 1024

    # -- budgets ---------------------------------------------------------------------------
    def _live(self, key: str, now: float) -> _Counter | None:
        c = self._s.counters.get(key)
        if c is not None and c.expires_at is not None and c.expires_at <= now:
            del self._s.counters[key]
            return None
        return c

    def _expire_holds(self, now: float) -> None:
        s = self._s
        while s.expiry and s.expiry[0][0] <= now:
            _, hid = heapq.heappop(s.expiry)
            hold = s.holds.get(hid)
            if hold is not None and hold.expires_at <= now:
                self._finish(hid, hold.amount, now)  # its attempt may have been billed in full
        for hid in [h for h, t in s.tombstones.items() if t <= now]:
            del s.tombstones[hid]

    def _finish(self, hold_id: str, actual: int, now: float) -> bool:
        hold = self._s.holds.pop(hold_id, None)
        if hold is None:
            return False
        for key in hold.keys:
            c = self._live(key, now)
            if c is not None:
                c.held -= hold.amount
                c.spent += actual
        return True

    def _sweep(self, now: float) -> None:
        """Drop expired counters once their number has doubled (amortised O(1) per reserve)."""
        counters = self._s.counters
        if len(counters) > self._sweep_at:
            for key in [k for k, c in counters.items() if c.expires_at is not None and c.expires_at <= now]:
                del counters[key]
            self._sweep_at = max(1024, 2 * len(counters))

    async def reserve(
        self, hold_id: str, amount: int, counters: Sequence[Counter], *, now: float, hold_ttl_s: float
    ) -> Refusal | None:
        """Hold *amount* on every counter or none (see :meth:`llmroute.stores.Store.reserve`)."""
        with self._lock:
            self._expire_holds(now)
            self._sweep(now)
            s = self._s
            if hold_id in s.tombstones or hold_id in s.holds:
                return None
            refusal: Refusal | None = None
            room = math.inf
            for i, spec in enumerate(counters):
                c = self._live(spec.key, now)
                committed = 0 if c is None else c.spent + c.held
                if committed + amount > spec.limit and spec.limit - committed < room:
                    room = spec.limit - committed
                    refusal = Refusal(i, committed, 0 if c is None else c.held)
            if refusal is not None:
                return refusal
            for spec in counters:
                c = self._live(spec.key, now)
                if c is None:
                    c = s.counters[spec.key] = _Counter()
                if spec.ttl_s is not None:
                    c.expires_at = max(c.expires_at or 0.0, now + spec.ttl_s)
                c.held += amount
            expires_at = now + hold_ttl_s
            s.holds[hold_id] = _Hold(amount, tuple(spec.key for spec in counters), expires_at)
            heapq.heappush(s.expiry, (expires_at, hold_id))
            return None

    async def settle(self, hold_id: str, actual: int, *, now: float, cancelled: bool = False) -> bool:
        """Replace the hold with *actual* (see :meth:`llmroute.stores.Store.settle`)."""
        with self._lock:
            done = self._finish(hold_id, actual, now)
            if not done and cancelled:
                self._s.tombstones[hold_id] = now + _TOMBSTONE_S
            return done

    async def charge(self, actual: int, counters: Sequence[Counter]) -> None:
        """Add *actual* to each counter's spending, without a hold."""
        now = self._clock()
        with self._lock:
            for spec in counters:
                c = self._live(spec.key, now)
                if c is None:
                    c = self._s.counters[spec.key] = _Counter()
                if spec.ttl_s is not None:
                    c.expires_at = max(c.expires_at or 0.0, now + spec.ttl_s)
                c.spent += actual

    async def counter(self, key: str) -> tuple[int, int]:
        """``(spent, held)`` of a counter."""
        with self._lock:
            c = self._s.counters.get(key)
            return (0, 0) if c is None else (c.spent, c.held)

    async def open_holds(self) -> int:
        """Holds not settled or expired yet."""
        with self._lock:
            return len(self._s.holds)

    # -- token buckets ---------------------------------------------------------------------
    def _bucket(self, b: Bucket, now: float) -> _Bucket:
        state = self._s.buckets.get(b.key)
        if state is None:
            state = self._s.buckets[b.key] = _Bucket(b.capacity, now)
        start = max(state.last, state.not_before)
        if now > start:
            state.level = min(b.capacity, state.level + (now - start) * b.rate)
        state.last = max(state.last, now)
        return state

    async def take(self, buckets: Sequence[Bucket], amounts: Sequence[float], *, now: float) -> float:
        """Take *amounts* from every bucket or none; the seconds to wait when they do not fit."""
        with self._lock:
            states = [self._bucket(b, now) for b in buckets]
            wait = 0.0
            for b, st, n in zip(buckets, states, amounts):
                if n > b.capacity:
                    return math.inf
                if st.level < n:
                    wait = max(wait, max(0.0, st.not_before - now) + (n - st.level) / b.rate)
            if wait > 0:
                return wait
            for st, n in zip(states, amounts):
                st.level -= n
            return 0.0

    async def cap_bucket(self, bucket: Bucket, level: float, *, now: float, refill_at: float | None = None) -> None:
        """Lower a bucket to *level* (and hold its refill until *refill_at*)."""
        with self._lock:
            st = self._bucket(bucket, now)
            if level < st.level:
                st.level = max(0.0, level)
                if refill_at is not None and refill_at > now:
                    st.not_before = max(st.not_before, refill_at)

    # -- key/value -------------------------------------------------------------------------
    def _get(self, full: str, now: float) -> str | None:
        item = self._s.values.get(full)
        if item is None:
            return None
        if item[1] is not None and item[1] <= now:
            del self._s.values[full]
            return None
        return item[0]

    async def get(self, namespace: str, key: str) -> str | None:
        """The value under *namespace*/*key*."""
        with self._lock:
            return self._get(f"{namespace}\0{key}", self._clock())

    async def put(self, namespace: str, key: str, value: str, *, ttl_s: float | None = None) -> None:
        """Store *value* (expiring after *ttl_s*)."""
        now = self._clock()
        with self._lock:
            self._s.values[f"{namespace}\0{key}"] = (value, None if ttl_s is None else now + ttl_s)

    async def add(self, namespace: str, key: str, delta: float, *, ttl_s: float | None = None) -> float:
        """Add *delta* to the number under *namespace*/*key*; return the sum."""
        now = self._clock()
        full = f"{namespace}\0{key}"
        with self._lock:
            old = self._get(full, now)
            total = (float(old) if old is not None else 0.0) + delta
            expires = self._s.values[full][1] if old is not None else None
            if ttl_s is not None:
                expires = now + ttl_s
            self._s.values[full] = (repr(total), expires)
            return total

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryStore(counters={len(self._s.counters)}, open_holds={len(self._s.holds)})"
