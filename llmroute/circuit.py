"""Circuit breakers: stop sending to a deployment that keeps failing, then probe it back.

One :class:`CircuitBreaker` per deployment, a small state machine in the manner of h11's
``_state.py``: the states, the events and the transitions are tables, and the breaker is sans-I/O
(every method takes the time ``now``; it never reads a clock or sleeps)::

    CLOSED ──(trip: N consecutive failures, or failure rate ≥ r over ≥ m recent attempts)──▶ OPEN
    OPEN ──(cooldown over)──▶ HALF_OPEN            (cooldown doubles at each re-trip, capped)
    HALF_OPEN ──(a probe fails)──▶ OPEN
    HALF_OPEN ──(k probes succeed)──▶ CLOSED
    HALF_OPEN admits at most ``half_open_probes`` attempts at a time; OPEN admits none.

A 429 with ``Retry-After`` counts as a failure, and an open circuit never reopens before the
provider's hint. What counts as a failure is decided by the caller (see :mod:`llmroute.health`):
rate limits, 5xx, timeouts, connection errors, malformed responses and refused credentials do;
a request the provider rejects as bad, a content filter or the caller's own cancellation do not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

__all__ = ["CircuitBreaker", "CircuitEvent", "CircuitSettings", "CircuitSnapshot", "CircuitState"]


class CircuitState(str, Enum):
    """Where a breaker is: ``closed`` (normal), ``open`` (refusing), ``half_open`` (probing)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitEvent(str, Enum):
    """What moves a breaker: a trip, the cooldown ending, a probe's verdict."""

    TRIP = "trip"
    COOLDOWN_OVER = "cooldown_over"
    PROBE_FAILED = "probe_failed"
    PROBES_SUCCEEDED = "probes_succeeded"


#: The whole state machine: (state, event) -> next state. Anything else is ignored.
TRANSITIONS: dict[tuple[CircuitState, CircuitEvent], CircuitState] = {
    (CircuitState.CLOSED, CircuitEvent.TRIP): CircuitState.OPEN,
    (CircuitState.OPEN, CircuitEvent.COOLDOWN_OVER): CircuitState.HALF_OPEN,
    (CircuitState.HALF_OPEN, CircuitEvent.PROBE_FAILED): CircuitState.OPEN,
    (CircuitState.HALF_OPEN, CircuitEvent.PROBES_SUCCEEDED): CircuitState.CLOSED,
}


@dataclass(frozen=True, slots=True)
class CircuitSettings:
    """Thresholds of a breaker (``health.circuit`` in the config)."""

    enabled: bool = True
    #: Consecutive failures that open the circuit.
    consecutive_failures: int = 5
    #: Or: a failure rate at least this high over the recent attempts...
    failure_rate: float = 0.5
    #: ...counting at least this many (decayed) attempts.
    min_samples: int = 10
    #: Half-life of the failure-rate window, seconds.
    window_s: float = 30.0
    #: First cooldown, seconds; it doubles each time a probe fails, up to ``max_open_s``.
    open_s: float = 15.0
    max_open_s: float = 300.0
    #: Probe attempts admitted at a time while half-open.
    half_open_probes: int = 1
    #: Successful probes that close the circuit.
    close_after: int = 2


@dataclass(frozen=True, slots=True)
class CircuitSnapshot:
    """A breaker's state, as :meth:`CircuitBreaker.snapshot` reports it."""

    state: CircuitState
    #: Seconds since the last transition.
    since_s: float
    #: While open: seconds until probing may start (``0.0`` otherwise).
    retry_in_s: float
    consecutive_failures: int
    #: Decayed failure rate over the recent window (``window_s`` half-life).
    failure_rate: float
    probes_in_flight: int
    #: How many times the circuit opened.
    trips: int
    #: Whether a new attempt may be sent now (closed; or half-open with a free probe slot).
    admitting: bool = True

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        data = asdict(self)
        data["state"] = self.state.value
        return data


class CircuitBreaker:
    """One deployment's breaker. Feed it every attempt's start and verdict; ask it before sending.

    ``allows(now)`` says whether a new attempt may go (closed: yes; open: no; half-open: while a
    probe slot is free). ``started(now)`` claims a probe slot when half-open; ``succeeded`` /
    ``failed`` report the verdict (``retry_after`` from a 429 keeps it open at least that long);
    ``released`` frees a slot without a verdict (a cancelled attempt).
    """

    __slots__ = (
        "_consecutive",
        "_cooldown",
        "_fail_w",
        "_last_t",
        "_probe_ok",
        "_probes",
        "_reopen_at",
        "_since",
        "_total_w",
        "settings",
        "state",
        "trips",
    )

    def __init__(self, settings: CircuitSettings | None = None, *, now: float = 0.0) -> None:
        self.settings = settings or CircuitSettings()
        self.state = CircuitState.CLOSED
        self.trips = 0
        self._since = now
        self._consecutive = 0
        self._fail_w = 0.0
        self._total_w = 0.0
        self._last_t = now
        self._cooldown = self.settings.open_s
        self._reopen_at = now
        self._probes = 0
        self._probe_ok = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.state.value}, trips={self.trips})"

    # ------------------------------------------------------------------ transitions
    def _fire(self, event: CircuitEvent, now: float) -> None:
        nxt = TRANSITIONS.get((self.state, event))
        if nxt is None:
            return
        self.state = nxt
        self._since = now
        self._probes = 0
        self._probe_ok = 0
        if nxt is CircuitState.CLOSED:
            self._consecutive = 0
            self._fail_w = self._total_w = 0.0
            self._cooldown = self.settings.open_s
        elif nxt is CircuitState.OPEN:
            self.trips += 1

    def _open(self, now: float, event: CircuitEvent, retry_after: float | None) -> None:
        if event is CircuitEvent.PROBE_FAILED:  # failed again: wait longer
            self._cooldown = min(self._cooldown * 2.0, self.settings.max_open_s)
        self._fire(event, now)
        self._reopen_at = now + max(self._cooldown, retry_after or 0.0)

    def _tick(self, now: float) -> None:
        """Let time act: an open circuit whose cooldown is over becomes half-open."""
        if self.state is CircuitState.OPEN and now >= self._reopen_at:
            self._fire(CircuitEvent.COOLDOWN_OVER, now)

    def _decay(self, now: float) -> None:
        dt = now - self._last_t
        if dt > 0.005 * self.settings.window_s:  # finer steps change the weights by < 0.35 %
            k = math.exp(-dt * math.log(2) / self.settings.window_s)
            self._fail_w *= k
            self._total_w *= k
            self._last_t = now

    # ------------------------------------------------------------------ inputs
    def allows(self, now: float) -> bool:
        """Whether a new attempt may be sent now."""
        if not self.settings.enabled:
            return True
        self._tick(now)
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.OPEN:
            return False
        return self._probes < self.settings.half_open_probes

    def started(self, now: float) -> None:
        """An attempt was sent (claims a probe slot when half-open)."""
        self._tick(now)
        if self.state is CircuitState.HALF_OPEN:
            self._probes += 1

    def released(self, now: float) -> None:
        """An attempt ended with no verdict (cancelled by the caller): free its probe slot."""
        if self.state is CircuitState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def succeeded(self, now: float) -> None:
        """An attempt succeeded."""
        self._consecutive = 0
        if self.state is CircuitState.CLOSED:  # time changes nothing for a closed circuit
            self._decay(now)
            self._total_w += 1.0
            return
        self._tick(now)  # an open one may be half-open by now; one still open only waits
        if self.state is CircuitState.HALF_OPEN:
            self._probes = max(0, self._probes - 1)
            self._probe_ok += 1
            if self._probe_ok >= self.settings.close_after:
                self._fire(CircuitEvent.PROBES_SUCCEEDED, now)

    def failed(self, now: float, *, retry_after: float | None = None) -> None:
        """An attempt failed in a way that counts against the deployment."""
        if not self.settings.enabled:
            return
        self._tick(now)
        s = self.settings
        if self.state is CircuitState.HALF_OPEN:
            self._open(now, CircuitEvent.PROBE_FAILED, retry_after)
            return
        if self.state is CircuitState.OPEN:  # a straggler sent before the trip: extend to its hint
            if retry_after is not None:
                self._reopen_at = max(self._reopen_at, now + retry_after)
            return
        self._consecutive += 1
        self._decay(now)
        self._fail_w += 1.0
        self._total_w += 1.0
        if self._consecutive >= s.consecutive_failures or (
            self._total_w >= s.min_samples and self._fail_w >= s.failure_rate * self._total_w
        ):
            self._open(now, CircuitEvent.TRIP, retry_after)

    # ------------------------------------------------------------------ outputs
    def snapshot(self, now: float) -> CircuitSnapshot:
        """The breaker's state at *now*."""
        self._tick(now)
        self._decay(now)
        rate = self._fail_w / self._total_w if self._total_w > 0 else 0.0
        retry = max(0.0, self._reopen_at - now) if self.state is CircuitState.OPEN else 0.0
        return CircuitSnapshot(
            self.state,
            now - self._since,
            retry,
            self._consecutive,
            rate,
            self._probes,
            self.trips,
            self.allows(now),
        )
