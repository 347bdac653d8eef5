"""Client-side rate limits: per-deployment token buckets shared through the store.

A deployment with ``rate_limit`` in the config gets up to two buckets: requests per minute and
tokens per minute (a request counts its estimated input tokens plus the ``max_tokens`` sent, as a
provider's limiter counts at admission). Before each attempt the executor takes one request and its
tokens from both buckets at once (:meth:`RateLimiter.acquire`). When they do not hold enough, it
waits for the refill if that takes at most the deployment's ``max_wait_s`` and fits in the call's
deadline; otherwise the deployment is skipped for the route's next candidate, with a
:class:`~llmroute.errors.RateLimitError` (``status`` ``None``: no request was sent) in the trace.

The provider's own rate-limit headers lower the buckets (:func:`parse_rate_limit_headers`,
:meth:`RateLimiter.observe`): OpenAI's ``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*`` and
Anthropic's ``anthropic-ratelimit-*``, so a fleet that shares its buckets through Redis slows down
before the provider answers 429. A 429's ``Retry-After`` empties the request bucket until then.
Rate limits are advisory (the provider enforces the real ones): when the store cannot be reached
they let attempts through, with a warning.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio

from ._clock import Sleep
from .errors import RateLimitError
from .stores import Bucket, StoreUnavailableError

if TYPE_CHECKING:
    from .config import RateLimitConfig
    from .stores import Store

__all__ = ["RateLimitInfo", "RateLimiter", "parse_duration", "parse_rate_limit_headers"]

logger = logging.getLogger("llmroute.ratelimit")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What a provider's response headers say about its rate limits (``None``: not said)."""

    remaining_requests: float | None = None
    #: Seconds until the request limit is replenished.
    reset_requests_s: float | None = None
    limit_requests: float | None = None
    remaining_tokens: float | None = None
    reset_tokens_s: float | None = None
    limit_tokens: float | None = None


def parse_duration(value: str) -> float | None:
    """Seconds in an OpenAI reset header (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``, ``"0.5"``)."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        n = float(value)
    except ValueError:
        return None
    return n if math.isfinite(n) and n >= 0 else None


def _reset_at(value: str | None, now: float) -> float | None:
    """Seconds until an RFC 3339 time (Anthropic's ``*-reset``), from wall-clock *now*."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_rate_limit_headers(headers: Mapping[str, str], *, now: float | None = None) -> RateLimitInfo | None:
    """The rate-limit state a response's *headers* report (OpenAI or Anthropic style), or ``None``."""
    raw = getattr(headers, "raw", None)
    if type(raw) is list and b"ratelimit" not in b"\0".join([k for k, _ in raw]).lower():
        # httpx headers naming no rate limit (most providers' successes): one scan of the names,
        # not a case-insensitive lookup of each name below (every one of which scans them all)
        return None
    wall = time.time() if now is None else now
    if "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers:
        rr, rt = headers.get("x-ratelimit-reset-requests"), headers.get("x-ratelimit-reset-tokens")
        return RateLimitInfo(
            _number(headers, "x-ratelimit-remaining-requests"),
            parse_duration(rr) if rr else None,
            _number(headers, "x-ratelimit-limit-requests"),
            _number(headers, "x-ratelimit-remaining-tokens"),
            parse_duration(rt) if rt else None,
            _number(headers, "x-ratelimit-limit-tokens"),
        )
    a = "anthropic-ratelimit-"
    if a + "requests-remaining" in headers or a + "tokens-remaining" in headers:
        tok = "tokens" if a + "tokens-remaining" in headers else "input-tokens"
        return RateLimitInfo(
            _number(headers, a + "requests-remaining"),
            _reset_at(headers.get(a + "requests-reset"), wall),
            _number(headers, a + "requests-limit"),
            _number(headers, f"{a}{tok}-remaining"),
            _reset_at(headers.get(f"{a}{tok}-reset"), wall),
            _number(headers, f"{a}{tok}-limit"),
        )
    return None


class RateLimiter:
    """The configured deployments' token buckets, in a store (see the module docstring)."""

    def __init__(
        self,
        limits: Mapping[str, RateLimitConfig],
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 2.0,
    ) -> None:
        self.limits = dict(limits)
        self.store = store
        self.clock = clock
        self.timeout_s = timeout_s
        self._buckets = {name: self._make(name, cfg) for name, cfg in self.limits.items()}
        self._warned_at = -math.inf

    @staticmethod
    def _make(name: str, cfg: RateLimitConfig) -> tuple[Bucket | None, Bucket | None]:
        key = quote(name, safe="")
        rpm, tpm = cfg.requests_per_minute, cfg.tokens_per_minute
        return (
            Bucket(f"rl:{key}:requests", rpm, rpm / 60.0) if rpm else None,
            Bucket(f"rl:{key}:tokens", tpm, tpm / 60.0) if tpm else None,
        )

    def __contains__(self, deployment: object) -> bool:
        return deployment in self._buckets

    async def acquire(
        self,
        deployment: str,
        tokens: int,
        *,
        sleep: Sleep,
        left_s: float | None,
        error_fields: Mapping[str, Any],
    ) -> float:
        """Take one request and *tokens* for *deployment*, waiting for a refill when that is short
        enough; returns the seconds waited. Raises :class:`RateLimitError` to skip the deployment."""
        req, tok = self._buckets[deployment]
        buckets = [b for b in (req, tok) if b is not None]
        amounts = [1.0 if b is req else float(tokens) for b in buckets]
        max_wait = self.limits[deployment].max_wait_s
        waited = 0.0
        while True:
            try:
                with anyio.fail_after(self.timeout_s):
                    wait = await self.store.take(buckets, amounts, now=self.clock())
            except (StoreUnavailableError, TimeoutError) as exc:
                self._warn(exc)
                return waited
            if wait <= 0:
                return waited
            room = max_wait - waited if left_s is None else min(max_wait - waited, left_s - waited)
            if wait > room:
                what = "never fits" if math.isinf(wait) else f"frees in {wait:.3f}s"
                raise RateLimitError(
                    f"client-side rate limit: {deployment!r} {what} (waited {waited:.3f}s of {max_wait:g}s)",
                    retry_after=None if math.isinf(wait) else wait,
                    **error_fields,
                )
            await sleep(wait)
            waited += wait

    async def observe(self, deployment: str, info: RateLimitInfo | None, retry_after_s: float | None = None) -> None:
        """Lower *deployment*'s buckets to what the provider reported (headers, a 429's Retry-After)."""
        req, tok = self._buckets[deployment]
        now = self.clock()
        caps: list[tuple[Bucket, float, float | None]] = []
        if req is not None and retry_after_s is not None:
            caps.append((req, 0.0, now + retry_after_s))
        if info is not None:
            for bucket, remaining, reset, limit in (
                (req, info.remaining_requests, info.reset_requests_s, info.limit_requests),
                (tok, info.remaining_tokens, info.reset_tokens_s, info.limit_tokens),
            ):
                if bucket is None or remaining is None:
                    continue
                refill_at = None
                if remaining < 1 and reset is not None:  # empty: the next unit frees at the provider's pace
                    refill_at = now + min(reset, 60.0 / (limit or bucket.capacity))
                caps.append((bucket, remaining, refill_at))
        if not caps:
            return
        try:
            with anyio.fail_after(self.timeout_s):
                for bucket, level, refill_at in caps:
                    await self.store.cap_bucket(bucket, level, now=now, refill_at=refill_at)
        except (StoreUnavailableError, TimeoutError) as exc:
            self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 10.0:
            self._warned_at = now
            logger.warning("rate-limit store unavailable (%s): attempts pass unlimited", type(exc).__name__)
