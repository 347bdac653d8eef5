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

:class:`Ledger` is the budget built from the config's ``budgets`` list: it decides which budgets
apply to an attempt (:func:`applicable`: its scopes and windows, a pure function) and reserves on
all of them at once in a :class:`~llmroute.stores.Store` (in memory, or Redis for a fleet). See
``docs/budgets.md``.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

import anyio

from ..errors import BudgetExceededError, InvalidRequestError
from ..stores import UNIT, Counter, StoreUnavailableError

if TYPE_CHECKING:
    from ..config import BudgetConfig
    from ..stores import Store

__all__ = [
    "MAX_BUDGET_WAIT_S",
    "Applicable",
    "Budget",
    "Ledger",
    "MemoryBudget",
    "Reservation",
    "Spend",
    "applicable",
    "budget_wait",
    "call_scope",
    "window_of",
]

logger = logging.getLogger("llmroute.budget")


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
    #: What the call's earlier attempts may have cost (for per-call budgets).
    call_spent_usd: float = 0.0


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


# ---------------------------------------------------------------------------- budgets from the config
_MAX_TAGS = 64
_MAX_LABEL = 256


def _label(value: object, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_LABEL:
        raise InvalidRequestError(f"{what} must be a non-empty string of at most {_MAX_LABEL} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(f"{what} is not valid text (lone surrogate)") from None
    return value


def call_scope(user: object, tags: object) -> tuple[str | None, tuple[str, ...]]:
    """The checked ``user=`` and ``tags=`` of a call (budget scopes); InvalidRequestError if malformed."""
    u = None if user is None else _label(user, "user")
    if tags is None:
        return u, ()
    if isinstance(tags, (str, bytes)) or not isinstance(tags, (list, tuple, set, frozenset)):
        raise InvalidRequestError("tags must be a list of strings")
    if len(tags) > _MAX_TAGS:
        raise InvalidRequestError(f"at most {_MAX_TAGS} tags per call, got {len(tags)}")
    return u, tuple(dict.fromkeys(_label(t, f"tags[{i}]") for i, t in enumerate(tags)))


_PERIOD = {"minute": 60, "hour": 3600, "day": 86400}


def window_of(window: str, now: float) -> tuple[str, float | None]:
    """The id of the window holding wall-clock time *now* (UTC) and when it ends (``None``: never)."""
    period = _PERIOD.get(window)
    if period is not None:
        n = int(now // period)
        return str(n), float((n + 1) * period)
    if window == "month":
        t = datetime.fromtimestamp(now, timezone.utc)
        nxt = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=timezone.utc)
        return f"{t.year:04d}-{t.month:02d}", nxt.timestamp()
    return "total", None


def _values(b: BudgetConfig, spend: Spend) -> Sequence[str]:
    scope = b.scope
    if scope == "global":
        values: Sequence[str] = ("",)
    elif scope == "route":
        values = (spend.route,)
    elif scope == "model":
        values = (spend.model,)
    elif scope == "key":
        values = (spend.provider,)
    elif scope == "user":
        values = (spend.user,) if spend.user is not None else ()
    elif scope == "tag":
        values = tuple(dict.fromkeys(spend.tags))
    else:  # call: kept in-process, not in the store
        return ()
    if b.match is not None:
        values = [v for v in values if v in b.match]
    return values


@dataclass(frozen=True, slots=True)
class Applicable:
    """One budget applying to an attempt: which value of its scope, its store counter, its window's end."""

    budget: BudgetConfig
    value: str
    counter: Counter
    window_end: float | None

    @property
    def scope(self) -> str:
        """How errors name it: ``user/day[alice]``, ``global/total``."""
        return f"{self.budget.label}[{self.value}]" if self.value else self.budget.label


def applicable(budgets: Sequence[BudgetConfig], spend: Spend, now: float, hold_ttl_s: float) -> list[Applicable]:
    """The shared budgets (every scope but ``call``) that apply to an attempt spending on *spend*."""
    out = []
    for b in budgets:
        for value in _values(b, spend):
            wid, end = window_of(b.window, now)
            key = _counter_key(b, value, wid)
            ttl = None if end is None else end - now + hold_ttl_s
            out.append(Applicable(b, value, Counter(key, _limit_units(b.limit_usd), ttl), end))
    return out


def _counter_key(b: BudgetConfig, value: str, window_id: str) -> str:
    return f"b:{quote(b.label, safe='')}:{quote(value, safe='')}:{window_id}"


#: Longest a ``wait`` route waits for a budget when the call has no deadline.
MAX_BUDGET_WAIT_S = 60.0


def budget_wait(exc: BudgetExceededError, waited_s: float, tries: int, left_s: float | None) -> float | None:
    """How long a ``wait`` route sleeps before asking *exc*'s budget again; ``None``: stop waiting.

    Polls with backoff (50 ms doubling to 1 s: settled holds free room early), never past the end
    of the refusing window, the call's deadline (*left_s*), or :data:`MAX_BUDGET_WAIT_S` in all.
    Does not wait when nothing can free enough room: the request exceeds the limit, or the budget
    has no window and what is already spent (holds aside) leaves too little.
    """
    if exc.requested > exc.limit:
        return None  # can never fit
    if exc.retry_after_s is None and exc.held is not None and exc.spent - exc.held + exc.requested > exc.limit:
        return None  # spent for good: settling the holds cannot free enough
    delay = min(0.05 * 2**tries, 1.0)
    if exc.retry_after_s is not None:
        delay = min(delay, max(exc.retry_after_s, 0.001))
    bound = MAX_BUDGET_WAIT_S - waited_s if left_s is None else left_s
    return delay if delay < bound else None


def _units(usd: float) -> int:
    """An amount in store units, rounded up (never under-counts)."""
    return max(0, math.ceil(usd / UNIT - 1e-6))


def _limit_units(usd: float) -> int:
    return math.floor(usd / UNIT + 1e-6)


class Ledger:
    """The config's budgets over a store: implements :class:`Budget` for the router.

    One reserve holds the attempt's worst case on every budget that applies, all or nothing; the
    per-call budgets are checked in-process first. The most restrictive refusal is raised
    (:class:`~llmroute.errors.BudgetExceededError` naming its scope). Every store operation is
    bounded by *timeout_s*; an unreachable store refuses (``fail_closed``) or lets the attempt
    through unmetered with a warning (``fail_open``, only when every applicable budget chose it).
    A reserve cancelled mid-way releases its hold by id, shielded; a settle that cannot reach the
    store leaves its hold to expire after *hold_ttl_s*, charged in full.
    """

    def __init__(
        self,
        budgets: Sequence[BudgetConfig],
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 2.0,
        hold_ttl_s: float = 600.0,
    ) -> None:
        self.budgets = tuple(budgets)
        self.store = store
        self.clock = clock
        self.timeout_s = timeout_s
        self.hold_ttl_s = hold_ttl_s
        self._calls = tuple(b for b in self.budgets if b.scope == "call")
        self._shared = tuple(b for b in self.budgets if b.scope != "call")
        #: Open reservations: ``None`` when held in the store, else the counters to charge at settle
        #: (let through while the store was unreachable).
        self._open: dict[str, tuple[Counter, ...] | None] = {}
        self._warned_at = -math.inf

    @property
    def open_reservations(self) -> int:
        """Reservations made through this ledger and not settled yet."""
        return len(self._open)

    async def reserve(self, amount_usd: float, spend: Spend) -> Reservation:
        """Hold *amount_usd* on every budget that applies to *spend*, or raise BudgetExceededError."""
        amount = _amount(amount_usd, "amount_usd")
        for b in self._calls:
            if spend.call_spent_usd + amount > b.limit_usd + 1e-12:
                raise BudgetExceededError(b.label, b.limit_usd, spend.call_spent_usd, amount, held=0.0)
        hold_id = uuid.uuid4().hex
        now = self.clock()
        scopes = applicable(self._shared, spend, now, self.hold_ttl_s) if self._shared else []
        if not scopes:
            return Reservation(hold_id, "", amount)
        counters = [a.counter for a in scopes]
        units = _units(amount)
        try:
            with anyio.fail_after(self.timeout_s):
                refusal = await self.store.reserve(hold_id, units, counters, now=now, hold_ttl_s=self.hold_ttl_s)
        except (StoreUnavailableError, TimeoutError) as exc:
            await self._release(hold_id)
            return self._unavailable(hold_id, amount, scopes, exc)
        except BaseException:  # cancelled mid-way: the hold may exist, or be on its way
            await self._release(hold_id)
            raise
        if refusal is not None:
            a = scopes[refusal.index]
            retry = None if a.window_end is None else max(0.0, a.window_end - now)
            spent, held = refusal.committed * UNIT, refusal.held * UNIT
            raise BudgetExceededError(a.scope, a.budget.limit_usd, spent, amount, retry_after_s=retry, held=held)
        self._open[hold_id] = None
        return Reservation(hold_id, scopes[0].scope, amount)

    async def _release(self, hold_id: str) -> None:
        """Make sure *hold_id* holds nothing, whether its reserve ran, runs later, or never will."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout_s):
            try:
                await self.store.settle(hold_id, 0, now=self.clock(), cancelled=True)
            except StoreUnavailableError:
                pass  # the hold, if any, expires after hold_ttl_s (charged in full)

    def _unavailable(self, hold_id: str, amount: float, scopes: list[Applicable], exc: BaseException) -> Reservation:
        closed = [a for a in scopes if a.budget.on_store_error == "fail_closed"]
        if closed:
            a = closed[0]
            raise BudgetExceededError(
                a.scope,
                a.budget.limit_usd,
                0.0,
                amount,
                retry_after_s=1.0,
                reason=f"the budget store is unavailable and the budget fails closed ({type(exc).__name__})",
            ) from exc
        now = time.monotonic()
        if now - self._warned_at >= 10.0:  # at most one warning per 10 s
            self._warned_at = now
            logger.warning(
                "budget store unavailable (%s): attempts pass unmetered while it is (fail_open: %s)",
                type(exc).__name__,
                ", ".join(sorted({a.budget.label for a in scopes})),
            )
        self._open[hold_id] = tuple(a.counter for a in scopes)
        return Reservation(hold_id, scopes[0].scope, amount)

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the hold with *actual_usd* on each of its budgets; idempotent, bounded in time."""
        actual = _amount(actual_usd, "actual_usd")
        rid = str(reservation.id)
        if rid not in self._open:
            return
        unheld = self._open.pop(rid)
        try:
            with anyio.fail_after(self.timeout_s):
                if unheld is None:
                    await self.store.settle(rid, _units(actual), now=self.clock())
                elif actual > 0:
                    await self.store.charge(_units(actual), unheld)
        except (StoreUnavailableError, TimeoutError) as exc:
            logger.warning(
                "budget store unavailable at settle (%s): %s",
                type(exc).__name__,
                "the hold will be charged in full when it expires" if unheld is None else "spending not recorded",
            )

    async def usage(self, name: str, value: str = "", *, now: float | None = None) -> tuple[float, float]:
        """``(spent_usd, held_usd)`` of budget *name* for *value* of its scope, in the current window."""
        b = next((b for b in self._shared if b.label == name), None)
        if b is None:
            raise KeyError(name)
        wid, _ = window_of(b.window, self.clock() if now is None else now)
        spent, held = await self.store.counter(_counter_key(b, value, wid))
        return spent * UNIT, held * UNIT

    def __repr__(self) -> str:
        return f"Ledger(budgets={[b.label for b in self.budgets]}, store={type(self.store).__name__})"
