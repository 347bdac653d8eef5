"""The simulated world: providers of one model whose speed, errors and limits vary over time.

What is measured (real) and what is synthetic is kept apart here, and every synthetic part carries
a label that the report prints:

- a provider's **base speed** is an LLMPerf measurement (TTFT and inter-token latency quantiles of
  Llama-2-70B, 2023-12/2024-01, :mod:`llmroute.sim.derive`), its own when LLMPerf measured it,
  else a measured profile assigned by a seeded draw (the rule is printed);
- its **base error rate** is that profile's measured share of failed requests other than 429s
  (LLMPerf's 429s measured the benchmark account's limits, lepton's at 87 %: every account limit
  here is synthetic instead, so a profile carries only its speed and its other errors);
- **prices** are rows of the shipped price table (litellm 1.109.1), cited by key;
- *synthetic*: how TTFT and decode rate grow with the provider's own (diurnal) load, incidents
  (slowdowns, error bursts, throttling), a shared upstream outage, and per-account request limits.

Outcomes draw their randomness from numbers fixed per (request, provider, attempt), so every
policy meets the same world: a policy's results differ only by its choices.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..costs import Price
from ..ratelimit import RateLimitInfo

__all__ = ["Bucket", "Incident", "Outcome", "Profile", "SimProvider", "Synthetic", "World"]


def _interp(levels: Sequence[float], values: Sequence[float], u: float) -> float:
    """The quantile function through (*levels*, *values*) at *u* in [0, 1], linear between points."""
    i = bisect.bisect_right(levels, u)
    if i <= 0:
        return values[0]
    if i >= len(levels):
        return values[-1]
    lo, hi = levels[i - 1], levels[i]
    return values[i - 1] + (values[i] - values[i - 1]) * (u - lo) / (hi - lo)


@dataclass(frozen=True)
class Profile:
    """A measured latency profile (one LLMPerf run): quantiles of TTFT and inter-token latency."""

    name: str
    levels: tuple[float, ...]
    ttft_s: tuple[float, ...]
    inter_token_s: tuple[float, ...]
    #: Measured shares of the run's requests: answered 429, failed otherwise.
    rate_limited: float
    other_errors: float
    #: Requests the run completed per minute (LLMPerf's summary).
    completed_per_min: float
    source: str

    def ttft(self, u: float) -> float:
        """TTFT at quantile *u*."""
        return _interp(self.levels, self.ttft_s, u)

    def tokens_per_s(self, u: float) -> float:
        """Decode rate at quantile *u* (1 / inter-token latency; *u* high = fast)."""
        return 1.0 / max(_interp(self.levels, self.inter_token_s, 1.0 - u), 1e-4)


@dataclass(frozen=True)
class Incident:
    """A synthetic episode: ``slow`` (TTFT and decode worse), ``errors`` (5xx) or ``throttle`` (429)."""

    start: float
    end: float
    kind: str
    ttft_factor: float = 1.0
    decode_factor: float = 1.0
    probability: float = 0.0
    retry_after_s: float = 0.0
    #: Part of an outage shared by several providers (a common upstream).
    shared: bool = False


@dataclass
class SimProvider:
    """One provider selling the model, as the simulation sees it."""

    name: str
    #: The price row's key in the shipped table, and the price.
    price_key: str
    price: Price
    profile: Profile
    #: How the profile was chosen (``own measurement`` or the mapping rule).
    profile_note: str
    official: bool = False
    #: Synthetic: phase of the provider's own diurnal load, and how much TTFT grows with it.
    load_phase_s: float = 0.0
    load_gain: float = 0.0
    #: Account limit, requests per minute (``None``: none).
    rpm_limit: float | None = None
    rpm_note: str = ""
    incidents: list[Incident] = field(default_factory=list)

    def median_request_cost(self, input_tokens: float, output_tokens: float) -> float:
        """USD for a request of these sizes at list price."""
        return (input_tokens * self.price.input + output_tokens * self.price.output) / 1e6

    def incident_at(self, t: float) -> Incident | None:
        """The incident in force at *t*, if any."""
        for inc in self.incidents:
            if inc.start <= t < inc.end:
                return inc
        return None


@dataclass(frozen=True)
class Outcome:
    """What one attempt does: ``ok`` (first token at ``ttft_s``, done at ``duration_s``),
    ``rate_limit`` (429 after ``duration_s``, with ``retry_after_s``), ``server`` (5xx) or ``timeout``."""

    kind: str
    duration_s: float
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    retry_after_s: float | None = None
    #: The account's limit as the response's ``x-ratelimit-*`` headers would state it.
    rate_limit: RateLimitInfo | None = None


class Bucket:
    """A token bucket: the account's request limit at one provider (refills continuously)."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rpm: float, burst_s: float = 10.0) -> None:
        self.rate = rpm / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.tokens = self.capacity
        self.last = 0.0

    def _refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now

    def peek(self, now: float) -> float | None:
        """``None`` if a request may go now, else seconds until one may."""
        self._refill(now)
        return None if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> float | None:
        """Spend one request; ``None`` if allowed, else the wait (nothing spent)."""
        wait = self.peek(now)
        if wait is None:
            self.tokens -= 1.0
        return wait

    def headers(self) -> RateLimitInfo:
        """What ``x-ratelimit-*`` headers would say now: requests left, and seconds until full
        (OpenAI's ``reset`` meaning)."""
        return RateLimitInfo(
            limit_requests=round(self.rate * 60),
            remaining_requests=int(self.tokens),
            reset_requests_s=(self.capacity - self.tokens) / self.rate,
        )


@dataclass(frozen=True)
class Synthetic:
    """The synthetic knobs of a scenario (printed with the results)."""

    #: Incidents per provider per hour, their median length (s), and the length spread (log sd).
    incidents_per_hour: float = 1 / 8
    incident_median_s: float = 900.0
    incident_log_sd: float = 0.6
    #: Shared upstream outages per day, and the share of providers each hits.
    shared_outages_per_day: float = 1.0
    shared_share: float = 0.3
    #: TTFT growth with the provider's own load: gain drawn in this range.
    load_gain: tuple[float, float] = (0.2, 1.0)
    #: Attempt read timeout (s): a longer TTFT fails as a timeout at this point.
    read_timeout_s: float = 30.0


class World:
    """Providers plus the rules that turn (provider, time, request, draws) into an outcome."""

    def __init__(
        self, providers: Sequence[SimProvider], load_curve: Sequence[float], window_s: float, synthetic: Synthetic
    ) -> None:
        self.providers = {p.name: p for p in providers}
        mean = sum(load_curve) / len(load_curve)
        self.load = [x / mean for x in load_curve]
        self.window_s = window_s
        self.synthetic = synthetic

    def load_at(self, t: float, phase_s: float = 0.0) -> float:
        """The (normalised, mean 1) load curve at *t* shifted by *phase_s*, cycling daily."""
        day = self.window_s * len(self.load)
        x = ((t + phase_s) % day) / self.window_s
        i = int(x)
        frac = x - i
        return self.load[i] * (1 - frac) + self.load[(i + 1) % len(self.load)] * frac

    def outcome(
        self, name: str, t: float, output_tokens: int, u: Sequence[float], bucket: Bucket | None, *, spend: bool = True
    ) -> Outcome:
        """The attempt at provider *name* starting at *t*; *u* holds 4 uniforms (TTFT, decode,
        error, spare). *spend*: take the account's request budget (a peek does not)."""
        p = self.providers[name]
        s = self.synthetic
        rl = None
        if bucket is not None:
            wait = bucket.take(t) if spend else bucket.peek(t)
            rl = bucket.headers()
            if wait is not None:
                return Outcome("rate_limit", 0.15, retry_after_s=max(1.0, math.ceil(wait)), rate_limit=rl)
        inc = p.incident_at(t)
        u_err = u[2]
        prof = p.profile
        if inc is not None and inc.kind == "throttle" and u_err < inc.probability:
            return Outcome("rate_limit", 0.15, retry_after_s=inc.retry_after_s, rate_limit=rl)
        if inc is not None and inc.kind == "errors" and u_err < inc.probability:
            return Outcome("server", 0.3 + 0.7 * u[3], rate_limit=rl)
        if u_err > 1.0 - prof.other_errors:  # the measured base error rate, from the other end of the draw
            return Outcome("server", 0.2, rate_limit=rl)
        extra = max(0.0, self.load_at(t, p.load_phase_s) - 1.0) * p.load_gain
        ttft = prof.ttft(u[0]) * (1.0 + extra)
        rate = prof.tokens_per_s(u[1]) / (1.0 + 0.5 * extra)
        if inc is not None and inc.kind == "slow":
            ttft *= inc.ttft_factor
            rate *= inc.decode_factor
        if ttft >= s.read_timeout_s:
            return Outcome("timeout", s.read_timeout_s, rate_limit=rl)
        return Outcome("ok", ttft + max(output_tokens - 1, 0) / rate, ttft_s=ttft, tokens_per_s=rate, rate_limit=rl)


def draw_incidents(
    rng: random.Random, names: Sequence[str], duration_s: float, s: Synthetic
) -> dict[str, list[Incident]]:
    """Synthetic incidents per provider (Poisson arrivals, log-normal lengths) and shared outages."""
    out: dict[str, list[Incident]] = {n: [] for n in names}

    def length() -> float:
        return min(s.incident_median_s * math.exp(rng.gauss(0.0, s.incident_log_sd)), 4 * s.incident_median_s)

    for n in names:
        t = rng.expovariate(s.incidents_per_hour / 3600.0)
        while t < duration_s:
            kind = rng.choice(("slow", "errors", "throttle"))
            end = t + length()
            if kind == "slow":
                inc = Incident(t, end, kind, ttft_factor=rng.uniform(4, 12), decode_factor=rng.uniform(0.3, 0.7))
            elif kind == "errors":
                inc = Incident(t, end, kind, probability=rng.uniform(0.3, 0.9))
            else:
                inc = Incident(t, end, kind, probability=rng.uniform(0.5, 0.95), retry_after_s=rng.uniform(2, 30))
            out[n].append(inc)
            t = end + rng.expovariate(s.incidents_per_hour / 3600.0)
    if s.shared_outages_per_day > 0:
        t = rng.expovariate(s.shared_outages_per_day / 86400.0)
        while t < duration_s:
            end = t + length()
            hit = rng.sample(list(names), max(1, round(s.shared_share * len(names))))
            for n in hit:
                out[n].append(Incident(t, end, "errors", probability=0.9, shared=True))
            t = end + rng.expovariate(s.shared_outages_per_day / 86400.0)
    for n in names:
        out[n].sort(key=lambda inc: inc.start)
    return out
