"""Live health of every deployment: time to first token, decode rate, errors, limits, in flight.

:class:`HealthTracker` is a :class:`~llmroute.hooks.Hooks` the router registers first, so it sees
every attempt (streams, failures and cancellations included). It measures; it never decides
(``llmroute.policy.selection`` decides from its snapshots) and never does I/O.

What it keeps per deployment, all on the injected clock:

- **time to first token** and **decode rate** (output tokens/s after the first), tracked apart, in
  a :class:`DecayedSketch`: a log-scale histogram plus moments whose weights halve every
  ``half_life_s`` of wall-clock time (forward decay: an update is O(1), a quantile one pass over
  96 bins). A streamed attempt measures both; a non-streamed one only its whole duration, which is
  split between the two in proportion to the current estimates (a stated approximation).
- **errors by kind** (``rate_limit``, ``server``, ``timeout``, ``connection``, ``response``,
  ``auth``, ``bad_request``, ``content_filter``, ``other``) and attempts, decayed alike; the
  provider's rate-limit headers (remaining requests/tokens and their reset) and the in-flight count;
- a :class:`~llmroute.circuit.CircuitBreaker`.

Knowledge ages: an estimate is the decayed data blended with a prior that weighs
``prior_weight`` samples. With no recent samples the data's weight decays away, the estimate drifts
back to the prior and its uncertainty grows, so a provider that was slow once gets traffic back.
In-flight attempts already slower than the estimate's p95 count as (lower-bound) samples before
they finish, so a provider that stalls loses traffic without waiting for its slow calls to end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._clock import Clock, monotonic
from .circuit import CircuitBreaker, CircuitSettings, CircuitSnapshot, CircuitState
from .errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ServerError,
)
from .hooks import Hooks
from .types import Attempt, Reply, RouteTrace

if TYPE_CHECKING:
    from .ratelimit import RateLimitInfo

__all__ = [
    "DecayedSketch",
    "DeploymentHealth",
    "Estimate",
    "HealthSettings",
    "HealthSnapshot",
    "HealthTracker",
    "RateLimitState",
    "error_kind",
]

_LN2 = math.log(2.0)
_CLOSED = CircuitState.CLOSED
#: Error kinds that count against a deployment's health (and its circuit).
FAILURE_KINDS = frozenset({"rate_limit", "server", "timeout", "connection", "response", "auth", "other"})
#: z-scores of the normal quantiles the prior's log-normal spread is read at.
_Z05, _Z95 = -1.6448536, 1.6448536


def error_kind(error: BaseException | None) -> str:
    """The kind an attempt's error is counted under (``"ok"`` for none)."""
    if error is None:
        return "ok"
    if isinstance(error, RateLimitError):
        return "rate_limit"
    if isinstance(error, ServerError):
        return "server"
    if isinstance(error, (ProviderTimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(error, ProviderConnectionError):
        return "connection"
    if isinstance(error, ResponseError):
        return "response"
    if isinstance(error, AuthenticationError):
        return "auth"
    if isinstance(error, BadRequestError):
        return "bad_request"
    if isinstance(error, ContentFilteredError):
        return "content_filter"
    if isinstance(error, ProviderError):
        return "other"
    return "cancelled"


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """How health is measured (``health`` in the config)."""

    #: Seconds after which a sample weighs half as much.
    half_life_s: float = 300.0
    #: What a deployment is assumed to do before (or long after) it was measured.
    prior_ttft_s: float = 1.0
    prior_tokens_per_s: float = 50.0
    prior_error_rate: float = 0.02
    #: How many samples the prior weighs.
    prior_weight: float = 2.0
    #: Spread of the prior (standard deviation of the log), for its quantiles and uncertainty.
    prior_log_sd: float = 0.7
    circuit: CircuitSettings = field(default_factory=CircuitSettings)
    #: In-flight attempts older than this are not counted (a hook pair that never closed).
    stale_in_flight_s: float = 3600.0

    @classmethod
    def from_config(cls, cfg: Any) -> HealthSettings:
        """From a :class:`~llmroute.config.HealthConfig` (same field names)."""
        data = cfg.model_dump()
        circuit = data.pop("circuit")
        circuit["max_open_s"] = max(circuit["max_open_s"], circuit["open_s"])
        return cls(**data, circuit=CircuitSettings(**circuit))


class DecayedSketch:
    """Forward-decayed histogram on a log scale, with decayed moments: bounded memory, O(1) updates.

    A sample at time *t* gets weight ``exp(lam * (t - t_ref))``; reading at *now* multiplies every
    weight by ``exp(-lam * (now - t_ref))``. Relative weights never change with time, so quantiles
    only change when samples arrive; the total weight (the effective sample count) decays.
    96 bins of 15.5 % each cover *lo*..*hi*; quantiles interpolate log-linearly within a bin.
    """

    __slots__ = ("_adds", "_bins", "_inv_step", "_lo", "_q", "_step", "n", "s_log", "s_log2", "s_x")

    BINS = 96

    def __init__(self, lo: float, hi: float) -> None:
        self._lo = math.log(lo)
        self._step = (math.log(hi) - self._lo) / self.BINS
        self._inv_step = 1.0 / self._step
        self._bins = [0.0] * self.BINS
        #: Sums of weight, weight*x, weight*log(x), weight*log(x)^2 (forward-decayed).
        self.n = 0.0
        self.s_x = 0.0
        self.s_log = 0.0
        self.s_log2 = 0.0
        self._q: list[float] | None = None  # p05/p50/p95 of the data, from the last scan
        self._adds = 0  # samples added since

    def add(self, x: float, w: float) -> None:
        """Add sample *x* (> 0) with forward weight *w*."""
        self._adds += 1
        lx = math.log(x)
        i = int((lx - self._lo) * self._inv_step)
        self._bins[0 if i < 0 else (self.BINS - 1 if i >= self.BINS else i)] += w
        self.n += w
        self.s_x += w * x
        self.s_log += w * lx
        self.s_log2 += w * lx * lx

    def scale(self, k: float) -> None:
        """Multiply every weight by *k* (renormalising the forward-decay origin)."""
        self._bins = [b * k for b in self._bins]
        self.n *= k
        self.s_x *= k
        self.s_log *= k
        self.s_log2 *= k

    def p05_p50_p95(self, *, fresh: bool, max_stale_adds: int = 8) -> list[float]:
        """p05, p50 and p95 of the data, rescanned when *fresh* is asked for or when
        *max_stale_adds* samples arrived since the last scan (relative weights never change with
        time, so between scans only new samples can move them)."""
        if self._q is None or (self._adds and (fresh or self._adds >= max_stale_adds)):
            self._q = self.quantiles((0.05, 0.5, 0.95))
            self._adds = 0
        return self._q

    def quantiles(self, qs: Iterable[float], extra: Iterable[tuple[float, float]] = ()) -> list[float]:
        """The *qs* quantiles (ascending) of the data, with *extra* ``(x, w)`` pseudo-samples; NaN if empty."""
        bins = self._bins
        total = self.n
        extra = list(extra)
        if extra:
            bins = list(bins)
            for x, w in extra:
                i = int((math.log(x) - self._lo) * self._inv_step)
                bins[0 if i < 0 else (self.BINS - 1 if i >= self.BINS else i)] += w
                total += w
        out: list[float] = []
        if total <= 0:
            return [math.nan for _ in qs]
        targets = [q * total for q in qs]
        acc = 0.0
        t = 0
        for i, b in enumerate(bins):
            if not b:
                continue
            while t < len(targets) and acc + b >= targets[t]:
                frac = (targets[t] - acc) / b
                out.append(math.exp(self._lo + (i + frac) * self._step))
                t += 1
            if t == len(targets):
                break
            acc += b
        while len(out) < len(targets):
            out.append(math.exp(self._lo + self.BINS * self._step))
        return out


@dataclass(frozen=True, slots=True)
class Estimate:
    """One quantity's current estimate: data blended with the prior by their weights."""

    #: Expected value (arithmetic mean).
    mean: float
    p05: float
    p50: float
    p95: float
    #: Effective (decayed) number of samples behind the data part.
    samples: float
    #: Mean and spread of the log (for sampling).
    log_mean: float
    log_sd: float
    #: Standard deviation of ``log_mean`` itself: how unsure the estimate is (grows as it ages).
    uncertainty: float


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """The last rate-limit headers a deployment sent, aged to now."""

    remaining_requests: float | None
    remaining_tokens: float | None
    limit_requests: float | None
    limit_tokens: float | None
    #: Seconds until the request / token window resets (``None``: not said, or already reset).
    reset_requests_in_s: float | None
    reset_tokens_in_s: float | None
    #: Attempts started since those headers arrived (they may already have used the remainder).
    started_since: int
    age_s: float


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """What is known about one deployment now: estimates, errors, limits, circuit, load."""

    deployment: str
    model: str
    provider: str
    ttft_s: Estimate
    #: Output tokens per second after the first token.
    tokens_per_s: Estimate
    #: Probability that an attempt fails in a way that counts against the deployment.
    error_rate: float
    #: Share of attempts answered with 429.
    rate_limited_rate: float
    #: Decayed attempts and errors by kind.
    attempts: float
    errors: Mapping[str, float]
    in_flight: int
    #: In-flight attempts already slower than the p95 estimate (counted as evidence).
    overdue: int
    rate_limit: RateLimitState | None
    circuit: CircuitSnapshot
    #: Mean output tokens of recent successful attempts (``None`` before any).
    mean_output_tokens: float | None
    #: Seconds since the last finished attempt (``None``: never measured).
    last_seen_s: float | None

    @property
    def state(self) -> CircuitState:
        """The circuit's state."""
        return self.circuit.state

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        data = asdict(self)
        data["circuit"] = self.circuit.as_dict()
        data["errors"] = dict(self.errors)
        return data


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """Every deployment's health at one moment: ``snapshot["qwen/together"]``, ``as_dict()``."""

    #: The clock's reading when taken.
    at: float
    half_life_s: float
    deployments: Mapping[str, DeploymentHealth]

    def __getitem__(self, deployment: str) -> DeploymentHealth:
        return self.deployments[deployment]

    def __iter__(self) -> Any:
        return iter(self.deployments.values())

    def __len__(self) -> int:
        return len(self.deployments)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, for dashboards."""
        return {
            "at": self.at,
            "half_life_s": self.half_life_s,
            "deployments": {name: d.as_dict() for name, d in self.deployments.items()},
        }


class _Deployment:
    """Mutable per-deployment state (private; read it through :class:`DeploymentHealth`)."""

    __slots__ = (
        "breaker",
        "cached",
        "cached_at",
        "dirty",
        "errors",
        "in_flight",
        "last_seen",
        "model",
        "n_attempts",
        "out_n",
        "out_sum",
        "p95_base",
        "provider",
        "rate_limit",
        "rate_limit_at",
        "rate_limit_started",
        "starts",
        "t_ref",
        "tps",
        "ttft",
        "urgent",
    )

    def __init__(self, model: str, provider: str, now: float, circuit: CircuitSettings) -> None:
        self.model = model
        self.provider = provider
        self.t_ref = now
        self.ttft = DecayedSketch(1e-3, 1e3)
        self.tps = DecayedSketch(1e-1, 1e5)
        self.errors: dict[str, float] = {}
        self.n_attempts = 0.0
        self.out_sum = 0.0
        self.out_n = 0.0
        #: id(attempt) -> (start time, attempt), oldest first.
        #: id(attempt) -> (start time, attempt, start number), oldest first.
        self.in_flight: dict[int, tuple[float, Attempt, int]] = {}
        #: Attempts started so far (numbers them, so "started since" is a subtraction).
        self.starts = 0
        self.rate_limit: RateLimitInfo | None = None
        self.rate_limit_at = 0.0
        self.rate_limit_started = 0
        self.breaker = CircuitBreaker(circuit, now=now)
        self.last_seen: float | None = None
        self.cached: DeploymentHealth | None = None
        #: p95 TTFT from finished attempts only (the threshold for in-flight evidence).
        self.p95_base: float | None = None
        self.cached_at = -math.inf
        #: Successful attempts since the last recompute, and whether something that must be seen
        #: at once (an error, a circuit change, rate-limit headers) happened since.
        self.dirty = 0
        self.urgent = True


class HealthTracker(Hooks):
    """Measures every deployment from the attempts it sees; hands out snapshots.

    Register it as a hook (the router does); read :meth:`get` (one deployment, cached) or
    :meth:`snapshot` (all). Deployments may be declared up front with :meth:`register` (so the
    snapshot lists them before any traffic) or appear on their first attempt.
    """

    #: Estimates are recomputed at most this often (seconds of clock) while samples keep coming...
    refresh_s: float = 0.02
    #: ...and at least this often when none come (aging and overdue in-flight attempts).
    max_age_s: float = 0.5
    #: After an error or a circuit change, at most this often (an error storm with thousands in
    #: flight must not rescan them on every call); a clock that has not moved at all (virtual
    #: time) recomputes at once.
    urgent_s: float = 0.001

    #: Prompt prefixes remembered for sticky selection (the oldest are forgotten first).
    affinity_limit: int = 10_000

    def __init__(self, settings: HealthSettings | None = None, *, clock: Clock | None = None) -> None:
        self.settings = settings or HealthSettings()
        self.clock: Clock = clock or monotonic
        self._lam = _LN2 / self.settings.half_life_s
        self._deps: dict[str, _Deployment] = {}
        #: prompt-prefix key -> (deployment that last served it, when).
        self._affinity: dict[str, tuple[str, float]] = {}
        #: Deployments whose circuit is not closed (so a router can skip the check when empty).
        self._not_closed: set[str] = set()
        s = self.settings
        self._prior_ttft_log = math.log(s.prior_ttft_s) - s.prior_log_sd**2 / 2  # so the prior's mean is prior_ttft_s
        self._prior_tps_log = math.log(s.prior_tokens_per_s) - s.prior_log_sd**2 / 2
        #: prior log-mean -> the prior's mean, p05, p50, p95 (constants of the settings).
        self._priors: dict[float, tuple[float, float, float, float]] = {}

    def __repr__(self) -> str:
        return f"HealthTracker({len(self._deps)} deployments, half_life_s={self.settings.half_life_s:g})"

    # ------------------------------------------------------------------ state
    def register(self, deployment: str, *, model: str = "", provider: str = "") -> None:
        """Declare a deployment (idempotent)."""
        if deployment not in self._deps:
            self._deps[deployment] = _Deployment(model, provider, self.clock(), self.settings.circuit)

    def _dep(self, attempt: Attempt) -> _Deployment:
        d = self._deps.get(attempt.deployment)
        if d is None:
            d = self._deps[attempt.deployment] = _Deployment(
                attempt.model, attempt.provider, self.clock(), self.settings.circuit
            )
        return d

    def _weight(self, d: _Deployment, now: float) -> float:
        """Forward weight of a sample at *now*, renormalising the origin when it grows large."""
        x = self._lam * (now - d.t_ref)
        if x > 30.0:
            k = math.exp(-x)
            d.ttft.scale(k)
            d.tps.scale(k)
            d.errors = {kind: v * k for kind, v in d.errors.items()}
            d.n_attempts *= k
            d.out_sum *= k
            d.out_n *= k
            d.t_ref = now
            return 1.0
        return math.exp(x)

    # ------------------------------------------------------------------ hooks
    def attempt_started(self, attempt: Attempt) -> None:
        """Count *attempt* in flight (and claim a probe slot of a half-open circuit)."""
        d = self._deps.get(attempt.deployment) or self._dep(attempt)
        now = self.clock()
        d.starts = starts = d.starts + 1
        d.in_flight[id(attempt)] = (now, attempt, starts)
        d.rate_limit_started += 1
        rl = d.rate_limit
        if rl is not None and rl.remaining_requests is not None and rl.remaining_requests - d.rate_limit_started <= 1:
            d.urgent = True  # about to run out of requests: the next selection must see it
        breaker = d.breaker
        if breaker.state is not _CLOSED:  # a closed breaker has nothing to note
            breaker.started(now)

    def attempt_finished(self, attempt: Attempt, error: BaseException | None) -> None:
        """Record *attempt*'s timings and verdict."""
        d = self._deps.get(attempt.deployment) or self._dep(attempt)
        now = self.clock()
        entry = d.in_flight.pop(id(attempt), None)
        started = entry[0] if entry is not None else now - attempt.duration_s
        seq = entry[2] if entry is not None else d.starts
        w = self._weight(d, now)
        rl = attempt.rate_limit
        kind = error_kind(error)
        if rl is not None:
            if d.rate_limit is None or (rl.remaining_requests is not None and rl.remaining_requests <= 4):
                d.urgent = True  # first headers, or nearly out of requests: selection must know now
            # The headers came with the response (at its first token, for a stream): attempts sent
            # since this one may already have used what they said was left.
            d.rate_limit = rl
            d.rate_limit_at = started + (attempt.ttft_s if attempt.ttft_s is not None else attempt.duration_s)
            d.rate_limit_started = d.starts - seq
        try:
            self._finish(d, attempt, error, kind, now, started, w)
        finally:
            if d.breaker.state is _CLOSED:
                self._not_closed.discard(attempt.deployment)
            else:
                self._not_closed.add(attempt.deployment)

    def _finish(
        self,
        d: _Deployment,
        attempt: Attempt,
        error: BaseException | None,
        kind: str,
        now: float,
        started: float,
        w: float,
    ) -> None:
        if kind == "cancelled":
            d.breaker.released(now)
            self._censored(d, attempt, now - started, w)
            return
        d.n_attempts += w
        d.last_seen = now
        if kind == "ok":
            d.dirty += 1
            state = d.breaker.state
            d.breaker.succeeded(now)
            if d.breaker.state is not state:
                d.urgent = True
            self._observe(d, attempt, w)
            return
        d.urgent = True
        d.errors[kind] = d.errors.get(kind, 0.0) + w
        if kind in FAILURE_KINDS:
            retry_after = getattr(error, "retry_after", None)
            d.breaker.failed(now, retry_after=retry_after)
            if kind == "timeout" and attempt.ttft_s is None:
                self._censored(d, attempt, now - started, w)
        else:
            d.breaker.released(now)

    def call_finished(self, trace: RouteTrace, reply: Reply | None, error: BaseException | None) -> None:
        """Remember which deployment served a sticky call's prompt prefix (its cache is warm)."""
        if reply is None or not trace.selection:
            return
        for decision in trace.selection:
            key = getattr(decision, "prefix_key", None)
            if key is not None and decision.model == reply.model:
                self.remember(key, reply.deployment)

    def remember(self, key: str, deployment: str) -> None:
        """Note that *deployment* just served the prompt prefix *key*."""
        aff = self._affinity
        aff.pop(key, None)
        aff[key] = (deployment, self.clock())
        if len(aff) > self.affinity_limit:
            del aff[next(iter(aff))]

    def served_recently(self, key: str, within_s: float) -> str | None:
        """The deployment that served prompt prefix *key* within *within_s* seconds, if any."""
        hit = self._affinity.get(key)
        if hit is None or self.clock() - hit[1] > within_s:
            return None
        return hit[0]

    # ------------------------------------------------------------------ observations
    def _observe(self, d: _Deployment, a: Attempt, w: float) -> None:
        usage = a.usage
        out = usage.output_tokens if usage is not None else 0
        if out > 0:
            d.out_sum += w * out
            d.out_n += w
        ttft_s = a.ttft_s
        if ttft_s is not None:
            ttft = max(ttft_s, 1e-4)
            d.ttft.add(ttft, w)
            gen = a.duration_s - ttft_s
            if out > 1 and gen > 0:
                d.tps.add(max((out - 1) / gen, 1e-3), w)
            return
        # Non-streamed: only the whole duration is seen. Split it in proportion to the current
        # estimates: the part the model predicts for TTFT and for decoding both scale by the ratio.
        ttft_hat = self._mean(d.ttft, self.settings.prior_ttft_s, w)
        tps_hat = self._mean(d.tps, self.settings.prior_tokens_per_s, w)
        pred = ttft_hat + out / tps_hat
        ratio = max(a.duration_s, 1e-4) / pred
        d.ttft.add(max(ttft_hat * ratio, 1e-4), w)
        if out > 1:
            d.tps.add(max(tps_hat / ratio, 1e-3), w)

    def _censored(self, d: _Deployment, a: Attempt, elapsed: float, w: float) -> None:
        """An attempt ended (cancelled, timed out) before its first token after *elapsed* seconds:
        if that is already slower than usual, it is a (lower-bound) TTFT sample."""
        if a.ttft_s is not None or elapsed <= 0:
            return
        wait = elapsed - self._decode_part(d, a, w)
        if wait > self._p95_hint(d):
            d.ttft.add(wait, w)
            d.urgent = True

    def _mean(self, sk: DecayedSketch, prior: float, now_w: float) -> float:
        """Posterior mean of *sk* blended with *prior* (*now_w*: the forward weight of now)."""
        k = self.settings.prior_weight * now_w
        return (sk.s_x + k * prior) / (sk.n + k)

    def _decode_part(self, d: _Deployment, a: Attempt, now_w: float) -> float:
        """Seconds a non-streamed attempt is expected to spend decoding (0 for streams)."""
        if a.stream or d.out_n <= 0:
            return 0.0
        return (d.out_sum / d.out_n) / self._mean(d.tps, self.settings.prior_tokens_per_s, now_w)

    def _p95_hint(self, d: _Deployment) -> float:
        """p95 TTFT from finished attempts (not inflated by the in-flight evidence it gates)."""
        if d.p95_base is not None:
            return d.p95_base
        return self.settings.prior_ttft_s * math.exp(_Z95 * self.settings.prior_log_sd)

    # ------------------------------------------------------------------ estimates
    def _estimate(
        self, sk: DecayedSketch, now_w: float, prior_log: float, extra: list[tuple[float, float]], *, fresh: bool
    ) -> Estimate:
        s = self.settings
        k = s.prior_weight
        sd0 = s.prior_log_sd
        prior = self._priors.get(prior_log)
        if prior is None:
            prior = self._priors[prior_log] = self._prior_terms(prior_log)
        prior_mean, prior_p05, prior_p50, prior_p95 = prior
        n = sk.n + sum(w for _, w in extra) if extra else sk.n
        n_eff = n / now_w  # decayed to now: effective samples
        if n_eff > 1e-9:
            if extra:
                s_x = sk.s_x + sum(x * w for x, w in extra)
                s_log = sk.s_log + sum(math.log(x) * w for x, w in extra)
                s_log2 = sk.s_log2 + sum(math.log(x) ** 2 * w for x, w in extra)
                q05, q50, q95 = sk.quantiles((0.05, 0.5, 0.95), extra)
            else:
                s_x, s_log, s_log2 = sk.s_x, sk.s_log, sk.s_log2
                q05, q50, q95 = sk.p05_p50_p95(fresh=fresh)
            mean_x = s_x / n
            mu = s_log / n
            var = max(s_log2 / n - mu * mu, 0.0)
        else:
            n_eff = 0.0
            mean_x = mu = var = q05 = q50 = q95 = 0.0
        a, b = n_eff / (n_eff + k), k / (n_eff + k)
        mu_post = a * mu + b * prior_log
        var_post = a * (var + (mu - mu_post) ** 2) + b * (sd0 * sd0 + (prior_log - mu_post) ** 2)
        sd_post = math.sqrt(var_post)
        return Estimate(
            mean=a * mean_x + b * prior_mean,
            p05=a * q05 + b * prior_p05,
            p50=a * q50 + b * prior_p50,
            p95=a * q95 + b * prior_p95,
            samples=n_eff,
            log_mean=mu_post,
            log_sd=sd_post,
            uncertainty=sd_post / math.sqrt(n_eff + k),
        )

    def _prior_terms(self, prior_log: float) -> tuple[float, float, float, float]:
        """The prior's mean, p05, p50 and p95 (log-normal around *prior_log*)."""
        sd0 = self.settings.prior_log_sd
        return (
            math.exp(prior_log + sd0 * sd0 / 2),
            math.exp(prior_log + _Z05 * sd0),
            math.exp(prior_log),
            math.exp(prior_log + _Z95 * sd0),
        )

    def _overdue(self, d: _Deployment, now: float, now_w: float) -> list[tuple[float, float]]:
        """In-flight attempts with no first token yet, already slower than the p95 estimate, as
        pseudo-samples of their elapsed time (a lower bound on their TTFT)."""
        if not d.in_flight:
            return []
        p95 = self._p95_hint(d)
        stale = now - self.settings.stale_in_flight_s
        out: list[tuple[float, float]] = []
        younger = now - p95  # started after this: not overdue, whatever it is
        for started, a, _ in d.in_flight.values():  # oldest first
            if started >= younger:
                break  # every later one is younger still: the scan stays short
            if started < stale or a.ttft_s is not None:
                continue
            wait = now - started - self._decode_part(d, a, now_w)
            if wait > p95:
                out.append((wait, now_w))
        return out

    def get(self, deployment: str, *, fresh: bool = False) -> DeploymentHealth:
        """The health of *deployment* now, for selection: recomputed at once after an error, a
        circuit change or telling rate-limit headers; after successes, at most every
        ``refresh_s`` (or 8 successes); and every ``max_age_s`` regardless (aging, in-flight
        evidence). *fresh* recomputes whenever anything changed. ``in_flight`` is as of the last
        recompute: read :meth:`in_flight` for the live count. The circuit state is always live.
        """
        d = self._deps.get(deployment)
        if d is None:
            self.register(deployment)
            d = self._deps[deployment]
        return self._read(deployment, d, self.clock(), fresh)

    def _read(self, deployment: str, d: _Deployment, now: float, fresh: bool) -> DeploymentHealth:
        age = now - d.cached_at
        cached = d.cached
        if (
            cached is None
            or (d.urgent and (age >= self.urgent_s or age == 0.0))
            or age >= self.max_age_s
            or (d.dirty and (fresh or age >= self.refresh_s or d.dirty >= 8))
            or (fresh and cached.in_flight != len(d.in_flight))
        ):
            cached = d.cached = self._compute(deployment, d, now, fresh=fresh or age >= self.refresh_s)
            d.cached_at = now
            d.dirty = 0
            d.urgent = False
            return cached
        if d.breaker.state is not _CLOSED or cached.circuit.state is not _CLOSED:
            cached = replace(cached, circuit=d.breaker.snapshot(now))  # cooldowns end with time
        return cached

    def read(self, deployments: Sequence[str], *, live: bool = True) -> tuple[list[DeploymentHealth], list[int] | None]:
        """:meth:`get` of each of *deployments*, in order (what selection reads on every call), and
        with *live* their :meth:`in_flight` counts after those reads (else ``None``)."""
        out: list[DeploymentHealth] = []
        counts: list[int] | None = [] if live else None
        deps, clock = self._deps, self.clock
        for name in deployments:
            d = deps.get(name)
            if d is None:
                out.append(self.get(name))
                d = deps[name]
            else:
                out.append(self._read(name, d, clock(), False))
            if counts is not None:  # a reading never changes what is in flight
                counts.append(len(d.in_flight))
        return out, counts

    def in_flight(self, deployment: str) -> int:
        """Attempts in flight on *deployment* right now."""
        d = self._deps.get(deployment)
        return 0 if d is None else len(d.in_flight)

    def _newer_headers(self, d: _Deployment) -> None:
        """Adopt rate-limit headers that in-flight streams already received (they are read at the
        first token, long before the attempt ends)."""
        best: tuple[float, Attempt, int] | None = None
        for started, a, seq in d.in_flight.values():
            if a.rate_limit is not None and a.ttft_s is not None:
                said_at = started + a.ttft_s
                if said_at > d.rate_limit_at and (best is None or said_at > best[0]):
                    best = (said_at, a, seq)
        if best is not None:
            d.rate_limit_at, a, seq = best
            d.rate_limit = a.rate_limit
            d.rate_limit_started = d.starts - seq

    def _compute(self, name: str, d: _Deployment, now: float, *, fresh: bool) -> DeploymentHealth:
        s = self.settings
        if d.in_flight and d.rate_limit is not None:  # a provider that never sent any: nothing to look for
            self._newer_headers(d)
        now_w = self._weight(d, now)
        extra = self._overdue(d, now, now_w)
        ttft = self._estimate(d.ttft, now_w, self._prior_ttft_log, extra, fresh=fresh)
        base = ttft if not extra else self._estimate(d.ttft, now_w, self._prior_ttft_log, [], fresh=fresh)
        d.p95_base = base.p95
        tps = self._estimate(d.tps, now_w, self._prior_tps_log, [], fresh=fresh)
        attempts = d.n_attempts / now_w
        if d.errors:
            errors = {kind: v / now_w for kind, v in d.errors.items()}
            failures = sum(v for kind, v in errors.items() if kind in FAILURE_KINDS)
        else:
            errors, failures = {}, 0
        k = s.prior_weight
        error_rate = (failures + k * s.prior_error_rate) / (attempts + k)
        limited = errors.get("rate_limit", 0.0) / (attempts + k)
        rl = None
        if d.rate_limit is not None:
            r = d.rate_limit
            age = now - d.rate_limit_at

            def left(reset: float | None) -> float | None:
                return None if reset is None or reset <= age else reset - age

            req_left, tok_left = left(r.reset_requests_s), left(r.reset_tokens_s)
            rl = RateLimitState(
                remaining_requests=r.remaining_requests
                if r.reset_requests_s is None or req_left is not None
                else r.limit_requests,
                remaining_tokens=r.remaining_tokens
                if r.reset_tokens_s is None or tok_left is not None
                else r.limit_tokens,
                limit_requests=r.limit_requests,
                limit_tokens=r.limit_tokens,
                reset_requests_in_s=req_left,
                reset_tokens_in_s=tok_left,
                started_since=d.rate_limit_started,
                age_s=age,
            )
        return DeploymentHealth(
            deployment=name,
            model=d.model,
            provider=d.provider,
            ttft_s=ttft,
            tokens_per_s=tps,
            error_rate=error_rate,
            rate_limited_rate=limited,
            attempts=attempts,
            errors=errors,
            in_flight=len(d.in_flight),
            overdue=len(extra),
            rate_limit=rl,
            circuit=d.breaker.snapshot(now),
            mean_output_tokens=d.out_sum / d.out_n if d.out_n > 0 else None,
            last_seen_s=None if d.last_seen is None else now - d.last_seen,
        )

    @property
    def all_closed(self) -> bool:
        """Whether every circuit was closed at its last attempt (then no check is needed)."""
        return not self._not_closed

    def allows(self, deployment: str) -> bool:
        """Whether the deployment's circuit lets a new attempt through now."""
        d = self._deps.get(deployment)
        return True if d is None else d.breaker.allows(self.clock())

    def circuit(self, deployment: str) -> CircuitBreaker | None:
        """The deployment's breaker (``None`` if never seen)."""
        d = self._deps.get(deployment)
        return None if d is None else d.breaker

    def snapshot(self) -> HealthSnapshot:
        """Every deployment's health now."""
        return HealthSnapshot(
            self.clock(), self.settings.half_life_s, {name: self.get(name, fresh=True) for name in list(self._deps)}
        )
