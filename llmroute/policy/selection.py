"""Selection: which deployment of one model to try first, from its live health.

Pure: it reads a health snapshot (:class:`~llmroute.health.DeploymentHealth`, one per deployment)
and a random source, and returns a :class:`SelectionDecision`; it never awaits and never does I/O.

For each deployment of the model, in order:

1. **Rules** (never relaxed): providers allowed / denied, required tags (region, data policy...).
2. **Circuit**: an open circuit, or a half-open one whose probe slots are taken, is left out.
3. **Constraints**: estimated p95 TTFT above ``max_p95_ttft_s``, slow-tail decode rate (p05) below
   ``min_tokens_per_s``, error rate above ``max_error_rate``. When *no* deployment meets them all,
   they are relaxed (all kept, ranked by the objective) and the decision says so.
4. **Score** (lower is better) by the objective, from *sampled* estimates: each deployment's
   expected TTFT and decode rate are drawn from their uncertainty (log-normal around the estimate,
   width ``uncertainty * exploration``), so a deployment known only vaguely, or not measured for a
   while, sometimes comes first and gets measured again (Thompson-style exploration), and
   concurrent callers spread rather than herd:

   - ``price``: expected cost of this call (expected output tokens; cache reads at the cached rate
     on the deployment that served this conversation's prefix recently), divided by the chance of
     success;
   - ``latency``: expected TTFT + expected output tokens / decode rate, divided by the chance of
     success;
   - ``throughput``: seconds per output token (1 / decode rate), divided by the chance of success;
   - a weighted mix ``{"price": 1, "latency": 0.5}``: each term divided by its best value among the
     candidates, then weighted.

   Load: with ``load_aware``, time-based terms grow by ``in_flight / in_flight_scale`` per attempt
   already in flight there, and a deployment whose rate-limit headers say no requests (or too few
   tokens) remain until a reset goes after the others.
5. Order by score; ties keep the configured order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from random import Random
from typing import Any

from ..circuit import CircuitState
from ..costs import Price
from ..health import DeploymentHealth

__all__ = [
    "OBJECTIVES",
    "Option",
    "OptionScore",
    "SelectionDecision",
    "SelectionSettings",
    "circuit_filter",
    "expected_cost_usd",
    "route_order",
    "select",
]

#: The objectives a route may ask for (alone or weighted).
OBJECTIVES = ("price", "latency", "throughput")


@dataclass(frozen=True, slots=True)
class SelectionSettings:
    """How a route selects among the deployments of each model (``selection`` in a route)."""

    #: Objective weights, e.g. ``{"price": 1.0}`` or ``{"price": 1.0, "latency": 0.5}``.
    objective: Mapping[str, float] = field(default_factory=lambda: {"price": 1.0})
    max_p95_ttft_s: float | None = None
    min_tokens_per_s: float | None = None
    max_error_rate: float | None = None
    #: Providers allowed (``None``: all) and denied.
    providers: frozenset[str] | None = None
    exclude_providers: frozenset[str] = frozenset()
    #: Tags a deployment must carry, e.g. ``{"region": "eu"}``.
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Width of the exploration draws, in units of each estimate's uncertainty (0: greedy).
    exploration: float = 1.0
    load_aware: bool = True
    #: In-flight attempts that double a deployment's time-based score.
    in_flight_scale: float = 8.0
    #: Prefer the deployment that served this conversation's prompt prefix (prompt cache).
    sticky: bool = False
    #: How long a provider is assumed to keep a prompt prefix cached, seconds.
    cache_ttl_s: float = 300.0

    @property
    def label(self) -> str:
        """The objective as text: ``price`` or ``price:1,latency:0.5``."""
        if len(self.objective) == 1:
            return next(iter(self.objective))
        return ",".join(f"{k}:{v:g}" for k, v in self.objective.items())


@dataclass(frozen=True, slots=True)
class Option:
    """One deployment of the model, as the router sees it for this call."""

    deployment: str
    provider: str
    price: Price
    input_tokens: int
    #: Output tokens to expect: the request's max_tokens or the route's estimate.
    output_tokens: int
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Input tokens likely served from this deployment's prompt cache (sticky conversations).
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class OptionScore:
    """How one deployment fared: its estimates, what was drawn, its score or why it was left out."""

    deployment: str
    provider: str
    #: Lower is better; ``None`` when left out.
    score: float | None
    #: Why it was left out or moved last (``None``: ranked normally).
    excluded: str | None
    expected_cost_usd: float
    ttft_s: float
    p95_ttft_s: float
    tokens_per_s: float
    error_rate: float
    in_flight: int
    circuit: str
    #: The exploration draws the score used.
    sampled_ttft_s: float
    sampled_tokens_per_s: float
    #: Expected seconds to the whole reply (sampled TTFT + output / sampled rate).
    expected_latency_s: float
    #: Effective samples behind the TTFT estimate (0: only the prior).
    samples: float
    sticky: bool = False


@dataclass(frozen=True, slots=True)
class SelectionDecision:
    """How one model's deployments were ordered, and why."""

    model: str
    objective: str
    #: The deployments to try, in order.
    order: tuple[str, ...]
    #: Left out (rules, open circuits, and constraints unless relaxed).
    excluded: tuple[str, ...]
    #: Of those, the ones left out only for their circuit (a route may fall back on them).
    circuit_excluded: tuple[str, ...]
    scores: tuple[OptionScore, ...]
    #: One line: the rule that decided.
    rule: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return asdict(self)


def expected_cost_usd(option: Option, output_tokens: float) -> float:
    """Cost of the call on *option* with *output_tokens*, cache reads at the cached rate."""
    p = option.price
    cached = min(option.cached_tokens, option.input_tokens)
    cached_rate = p.input if p.cached_input is None else p.cached_input
    return ((option.input_tokens - cached) * p.input + cached * cached_rate + output_tokens * p.output) / 1e6


def _rule_exclusion(opt: Option, s: SelectionSettings) -> str | None:
    if s.providers is not None and opt.provider not in s.providers:
        return f"provider {opt.provider!r} not allowed"
    if opt.provider in s.exclude_providers:
        return f"provider {opt.provider!r} denied"
    for key, want in s.tags.items():
        if opt.tags.get(key) != want:
            return f"tag {key}={want!r} required"
    return None


def _constraint_violation(h: DeploymentHealth, s: SelectionSettings) -> str | None:
    if s.max_p95_ttft_s is not None and h.ttft_s.p95 > s.max_p95_ttft_s:
        return f"p95 TTFT {h.ttft_s.p95:.3g}s > {s.max_p95_ttft_s:g}s"
    if s.min_tokens_per_s is not None and h.tokens_per_s.p05 < s.min_tokens_per_s:
        return f"p05 decode {h.tokens_per_s.p05:.3g} tok/s < {s.min_tokens_per_s:g}"
    if s.max_error_rate is not None and h.error_rate > s.max_error_rate:
        return f"error rate {h.error_rate:.2f} > {s.max_error_rate:g}"
    return None


def _rate_limited(h: DeploymentHealth, opt: Option) -> str | None:
    rl = h.rate_limit
    if rl is None:
        return None
    req, tok = rl.remaining_requests, rl.remaining_tokens
    if req is not None and rl.reset_requests_in_s is not None and req - rl.started_since <= 0:
        return f"no requests left until reset in {rl.reset_requests_in_s:.3g}s"
    if tok is not None and rl.reset_tokens_in_s is not None and tok < opt.input_tokens + opt.output_tokens:
        return f"{tok} tokens left until reset in {rl.reset_tokens_in_s:.3g}s"
    return None


def select(
    model: str,
    options: Sequence[Option],
    health: Sequence[DeploymentHealth],
    settings: SelectionSettings,
    *,
    rng: Random,
    sticky: str | None = None,
) -> SelectionDecision:
    """Order *options* (one model's deployments, configured order) by *settings*' objective.

    *health* holds each option's health, in the same order; *rng* drives the exploration draws;
    *sticky* names the deployment that recently served this conversation's prefix.
    """
    s = settings
    n = len(options)
    excluded: list[str | None] = [None] * n
    soft: list[str | None] = [None] * n  # constraint violations (may be relaxed)
    demoted: list[str | None] = [None] * n  # rate-limited: after the others
    for i, (opt, h) in enumerate(zip(options, health)):
        reason = _rule_exclusion(opt, s)
        if reason is None and not h.circuit.admitting:
            if h.circuit.state is CircuitState.OPEN:
                reason = f"circuit open (probing in {h.circuit.retry_in_s:.3g}s)"
            else:
                reason = "circuit half-open, probe slots taken"
        excluded[i] = reason
        if reason is None:
            soft[i] = _constraint_violation(h, s)
            demoted[i] = _rate_limited(h, opt)
    live = [i for i in range(n) if excluded[i] is None]
    meeting = [i for i in live if soft[i] is None]
    relaxed = bool(live) and not meeting
    ranked = live if relaxed else meeting

    # Draws and raw objective terms for every option (also left-out ones, for the trace).
    explore = s.exploration
    terms: list[dict[str, float]] = []
    draws: list[tuple[float, float, float, float]] = []
    for opt, h in zip(options, health):
        t_est, r_est = h.ttft_s, h.tokens_per_s
        if explore > 0:
            ttft = t_est.mean * math.exp(rng.gauss(0.0, t_est.uncertainty * explore))
            rate = r_est.mean * math.exp(rng.gauss(0.0, r_est.uncertainty * explore))
        else:
            ttft, rate = t_est.mean, r_est.mean
        out = opt.output_tokens
        if h.mean_output_tokens is not None:
            out = min(out, h.mean_output_tokens)
        cost = expected_cost_usd(opt, out)
        success = max(1.0 - h.error_rate, 0.05)
        load = 1.0 + h.in_flight / s.in_flight_scale if s.load_aware else 1.0
        latency = ttft + out / rate
        terms.append(
            {
                "price": cost / success,
                "latency": latency * load / success,
                "throughput": load / (rate * success),
            }
        )
        draws.append((ttft, rate, latency, cost))

    scores: list[float | None] = [None] * n
    weights = {k: w for k, w in s.objective.items() if w > 0}
    if ranked:
        best = {k: min(terms[i][k] for i in ranked) for k in weights}
        single = len(weights) == 1
        for i in ranked:
            if single:
                (k,) = weights
                scores[i] = terms[i][k]
            else:
                scores[i] = sum(w * terms[i][k] / best[k] for k, w in weights.items() if best[k] > 0) / sum(
                    weights.values()
                )
    order = sorted(ranked, key=lambda i: (demoted[i] is not None, scores[i], i))

    rows = []
    for i, (opt, h) in enumerate(zip(options, health)):
        ttft, rate, latency, cost = draws[i]
        note = excluded[i] or soft[i] or demoted[i]
        rows.append(
            OptionScore(
                deployment=opt.deployment,
                provider=opt.provider,
                score=scores[i],
                excluded=note,
                expected_cost_usd=cost,
                ttft_s=h.ttft_s.mean,
                p95_ttft_s=h.ttft_s.p95,
                tokens_per_s=h.tokens_per_s.mean,
                error_rate=h.error_rate,
                in_flight=h.in_flight,
                circuit=h.circuit.state.value,
                sampled_ttft_s=ttft,
                sampled_tokens_per_s=rate,
                expected_latency_s=latency,
                samples=h.ttft_s.samples,
                sticky=opt.deployment == sticky,
            )
        )
    kept = set(order)
    out_excluded = tuple(options[i].deployment for i in range(n) if i not in kept)
    by_circuit = tuple(
        options[i].deployment for i in range(n) if excluded[i] is not None and excluded[i].startswith("circuit")
    )
    rule = _rule(s, options, order, excluded, soft, demoted, relaxed, sticky)
    return SelectionDecision(
        model, s.label, tuple(options[i].deployment for i in order), out_excluded, by_circuit, tuple(rows), rule
    )


def _rule(
    s: SelectionSettings,
    options: Sequence[Option],
    order: list[int],
    excluded: list[str | None],
    soft: list[str | None],
    demoted: list[str | None],
    relaxed: bool,
    sticky: str | None,
) -> str:
    parts = [f"objective {s.label}"]
    if s.exploration > 0:
        parts.append("sampled estimates")
    if order:
        first = options[order[0]].deployment
        parts.append(f"first {first}" + (" (sticky prompt cache)" if first == sticky else ""))
    else:
        parts.append("no deployment available")
    n_out = sum(1 for e in excluded if e is not None)
    if n_out:
        parts.append(f"{n_out} left out ({'; '.join(e for e in excluded if e)})")
    n_soft = sum(1 for x in soft if x is not None)
    if relaxed:
        parts.append("no deployment meets the constraints: relaxed, ranked by objective")
    elif n_soft:
        parts.append(f"{n_soft} fail constraints")
    n_dem = sum(1 for x in demoted if x is not None)
    if n_dem:
        parts.append(f"{n_dem} rate-limited, moved last")
    return "; ".join(parts)


def circuit_filter(admitting: Sequence[bool]) -> tuple[list[int], int]:
    """Indices of candidates whose circuit admits an attempt, and how many were dropped.

    When *no* candidate admits one, all are kept (the route fails open rather than refusing
    every call), in their order, and 0 is reported dropped.
    """
    kept = [i for i, ok in enumerate(admitting) if ok]
    if not kept:
        return list(range(len(admitting))), 0
    return kept, len(admitting) - len(kept)


def route_order(models: Sequence[str], decisions: Mapping[str, SelectionDecision]) -> tuple[list[str], bool]:
    """The route's deployments in order: models as the strategy ordered them (first appearance),
    each model's deployments as its decision ordered them. Second value: whether the route fell
    back on deployments left out only for their circuit, because nothing else was left (it fails
    open rather than refusing every call)."""
    models = list(dict.fromkeys(models))
    out = [d for m in models for d in decisions[m].order]
    if out:
        return out, False
    return [d for m in models for d in decisions[m].circuit_excluded], True
