"""Which failures are retried on the same deployment, how long to wait, and which move on.

The strategies are tenacity strategy objects, so they compose with tenacity's own
(``stop_after_attempt(3) | stop_at_deadline(...)``) and can be reused by other executors.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import RetryCallState, stop_after_attempt
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from ..config import RetryConfig
from ..errors import BudgetExceededError, ProviderError

__all__ = [
    "retry_if_retryable",
    "should_fall_back",
    "stop_at_deadline",
    "stop_for",
    "wait_retry_after_or_backoff",
]


#: Backoff doubles at most this many times (``2**32`` times the initial wait is past any cap), so
#: ``initial * 2**(n-1)`` never overflows a float however many attempts a config allows.
_MAX_DOUBLINGS = 32


def _error(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()


def _retry_after(exc: BaseException | None) -> float | None:
    """The provider's Retry-After hint on *exc* (429, 503, 529, ...), if it gave one."""
    value = getattr(exc, "retry_after", None) if isinstance(exc, ProviderError) else None
    return value if isinstance(value, (int, float)) and value == value else None


class retry_if_retryable(retry_base):
    """Retry provider errors marked retryable, unless the provider asked (Retry-After, on a 429 or
    a 5xx) for a longer wait than ``max_retry_after_s``: then moving on to another deployment is faster."""

    def __init__(self, max_retry_after_s: float) -> None:
        self.max_retry_after_s = max_retry_after_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = _error(retry_state)
        if not isinstance(exc, ProviderError) or not exc.retryable:
            return False
        retry_after = _retry_after(exc)
        if retry_after is not None:
            return retry_after <= self.max_retry_after_s
        return True


class wait_retry_after_or_backoff(wait_base):
    """Wait what the provider asked for (Retry-After on any provider error), else exponential
    backoff with jitter: ``min(initial * 2**(n-1), max) + uniform(0, jitter)`` (the exponent is
    capped, so any attempt number is safe)."""

    def __init__(self, initial: float, maximum: float, jitter: float, rng: Callable[[], float] = random.random) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        retry_after = _retry_after(_error(retry_state))
        if retry_after is not None:
            return retry_after
        doublings = min(max(retry_state.attempt_number - 1, 0), _MAX_DOUBLINGS)
        backoff = min(self.initial * float(1 << doublings), self.maximum)
        return backoff + self.jitter * self._rng()


class stop_at_deadline(stop_base):
    """Stop when the next wait would end past *deadline* (a ``clock()`` reading)."""

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock() + (getattr(retry_state, "upcoming_sleep", 0.0) or 0.0) >= self.deadline


def stop_for(cfg: RetryConfig, deadline: float | None, clock: Callable[[], float]) -> stop_base:
    """The stop strategy for *cfg*, bounded by *deadline* when there is one."""
    stop: stop_base = stop_after_attempt(cfg.attempts)
    if deadline is not None:
        stop = stop | stop_at_deadline(deadline, clock)
    return stop


def should_fall_back(exc: BaseException) -> bool:
    """Whether the route moves on to its next candidate after *exc*."""
    if isinstance(exc, ProviderError):
        return exc.fallback
    return isinstance(exc, BudgetExceededError)
