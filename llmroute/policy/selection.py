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
   TTFT and decode rate are scaled by a draw from their uncertainty (log-normal, width
   ``uncertainty * exploration``; the constraints of step 3 see the same draws), so a deployment
   known only vaguely, or not measured for a while, sometimes passes and comes first and gets
   measured again (Thompson-style exploration), and concurrent callers spread rather than herd:

   - ``price``: expected cost of this call (output tokens: the request's max or the route's
     estimate, capped by the mean seen on the model's deployments; cache reads at the cached rate
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

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from random import Random
from statistics import NormalDist
from typing import Any, NamedTuple

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
    "prefix_key",
    "prefix_tokens",
    "route_order",
    "select",
]

#: The objectives a route may ask for (alone or weighted).
OBJECTIVES = ("price", "latency", "throughput")


_TERM = {"price": 0, "latency": 1, "throughput": 2}

#: Standard normal quantiles at the midpoints of 1024 equal-probability slices: a draw is one
#: ``random()`` and a lookup (random.gauss costs ten times more, and exploration needs no finer tail).
_NORMAL = tuple(NormalDist().inv_cdf((k + 0.5) / 1024) for k in range(1024))


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
    #: The objective as text: ``price`` or ``price:1,latency:0.5`` (derived).
    label: str = field(init=False, default="")
    _weights: tuple[tuple[int, float], ...] = field(init=False, default=(), repr=False, compare=False)
    _total: float = field(init=False, default=1.0, repr=False, compare=False)
    _rules: bool = field(init=False, default=False, repr=False, compare=False)
    _constraints: bool = field(init=False, default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.objective) - set(_TERM)
        if unknown:
            raise ValueError(f"unknown objective {sorted(unknown)}; known: {', '.join(OBJECTIVES)}")
        weights = tuple((_TERM[k], float(w)) for k, w in self.objective.items() if w > 0)
        if not weights:
            raise ValueError("at least one objective weight must be > 0")
        label = (
            next(iter(self.objective))
            if len(self.objective) == 1
            else ",".join(f"{k}:{v:g}" for k, v in self.objective.items())
        )
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "_weights", weights)
        object.__setattr__(self, "_total", sum(w for _, w in weights))
        object.__setattr__(self, "_rules", bool(self.providers is not None or self.exclude_providers or self.tags))
        object.__setattr__(
            self,
            "_constraints",
            self.max_p95_ttft_s is not None or self.min_tokens_per_s is not None or self.max_error_rate is not None,
        )

    @classmethod
    def from_config(cls, cfg: Any) -> SelectionSettings:
        """From a :class:`~llmroute.config.SelectionConfig` (same field names)."""
        data = cfg.model_dump()
        data["objective"] = cfg.weights
        data["providers"] = None if cfg.providers is None else frozenset(cfg.providers)
        data["exclude_providers"] = frozenset(cfg.exclude_providers)
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Option:
    """One deployment of the model: what does not change from call to call."""

    deployment: str
    provider: str
    price: Price
    tags: Mapping[str, str] = field(default_factory=dict)
    #: The deployment's cap on output tokens (``None``: none known).
    max_output_tokens: int | None = None


#: What happened to an option: ranked; left out (rules, circuit); failing a constraint (left out,
#: or kept when the constraints were relaxed); rate-limited (ranked last).
Status = str


@dataclass(frozen=True, slots=True)
class OptionScore:
    """How one deployment fared: its estimates, what was drawn, its score or why it was left out."""

    deployment: str
    provider: str
    #: ``ranked``, ``left_out``, ``constraint`` or ``rate_limited``.
    status: Status
    #: Lower is better; ``None`` when left out.
    score: float | None
    #: Why it was left out, failed a constraint or moved last.
    note: str | None
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


class SelectionDecision(NamedTuple):
    """How one model's deployments were ordered, and why (``rule`` says it in one line).

    Immutable. ``scores`` (each deployment's estimates, draws and score) is built when first
    read, so a call that never looks at its trace does not pay for it (a named tuple for the
    same reason: it is made on every call, at a fraction of a frozen dataclass's cost).
    """

    model: str
    objective: str
    #: The deployments to try, in order.
    order: tuple[str, ...]
    #: Whether no deployment met the constraints, so all were ranked anyway.
    relaxed: bool
    #: Whether the estimates were sampled (exploration) rather than taken as they are.
    explored: bool
    #: The deployment that served this prompt prefix recently, if any.
    sticky: str | None
    #: The prompt-prefix key of a sticky route (so the deployment that answers is remembered).
    prefix_key: str | None
    #: Internal: (options, health, status, notes, scores, draws, live in-flight counts or None),
    #: per deployment in configured order; read it through the properties.
    internals: tuple[Any, ...] = ()

    @property
    def _options(self) -> Sequence[Option]:
        return self.internals[0]  # type: ignore[no-any-return]

    @property
    def _status(self) -> Sequence[str]:
        return self.internals[2]  # type: ignore[no-any-return]

    @property
    def _notes(self) -> Sequence[str | None]:
        return self.internals[3]  # type: ignore[no-any-return]

    @property
    def excluded(self) -> tuple[str, ...]:
        """Deployments left out (rules, open circuits, and constraints unless relaxed)."""
        kept = set(self.order)
        return tuple(o.deployment for o in self._options if o.deployment not in kept)

    @property
    def circuit_excluded(self) -> tuple[str, ...]:
        """Of those, the ones left out only for their circuit (a route may fall back on them)."""
        return tuple(
            o.deployment
            for o, st, note in zip(self._options, self._status, self._notes)
            if st == "left_out" and note is not None and note.startswith("circuit")
        )

    @property
    def scores(self) -> tuple[OptionScore, ...]:
        """Every deployment's estimates, draws, status and score, in configured order."""
        rows = []
        options, health, status, notes, scores, draws, live = self.internals
        for i, (opt, h, st, note, score, draw) in enumerate(zip(options, health, status, notes, scores, draws)):
            ttft, rate, latency, cost = draw if draw is not None else (math.nan,) * 4
            rows.append(
                OptionScore(
                    opt.deployment,
                    opt.provider,
                    st,
                    score,
                    note,
                    cost,
                    h.ttft_s.mean,
                    h.ttft_s.p95,
                    h.tokens_per_s.mean,
                    h.error_rate,
                    h.in_flight if live is None else live[i],
                    h.circuit.state.value,
                    ttft,
                    rate,
                    latency,
                    h.ttft_s.samples,
                    opt.deployment == self.sticky,
                )
            )
        return tuple(rows)

    @property
    def rule(self) -> str:
        """One line: the objective, the first choice, and what was left out or moved and why."""
        parts = [f"objective {self.objective}"]
        if self.explored and len(self._options) > 1:
            parts.append("sampled estimates")
        if self.order:
            first = self.order[0]
            parts.append(f"first {first}" + (" (sticky prompt cache)" if first == self.sticky else ""))
        else:
            parts.append("no deployment available")
        notes = list(zip(self._status, self._notes))
        left = [n for st, n in notes if st == "left_out" and n]
        if left:
            parts.append(f"{len(left)} left out ({'; '.join(left)})")
        failing = [n for st, n in notes if st == "constraint" and n]
        if self.relaxed:
            parts.append("no deployment meets the constraints: relaxed, ranked by objective")
        elif failing:
            parts.append(f"{len(failing)} fail constraints ({'; '.join(failing)})")
        limited = sum(1 for st, _ in notes if st == "rate_limited")
        if limited:
            parts.append(f"{limited} rate-limited, moved last")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (with ``rule``, ``excluded`` and ``scores``)."""
        return {
            "model": self.model,
            "objective": self.objective,
            "rule": self.rule,
            "order": list(self.order),
            "excluded": list(self.excluded),
            "relaxed": self.relaxed,
            "explored": self.explored,
            "sticky": self.sticky,
            "prefix_key": self.prefix_key,
            "scores": [asdict(row) for row in self.scores],
        }


def expected_cost_usd(price: Price, input_tokens: int, output_tokens: float, cached_tokens: int = 0) -> float:
    """Cost of a call at *price* with *output_tokens*, *cached_tokens* of the input read from cache."""
    cached = min(cached_tokens, input_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    return ((input_tokens - cached) * price.input + cached * cached_rate + output_tokens * price.output) / 1e6


def _rule_exclusion(opt: Option, s: SelectionSettings) -> str | None:
    if s.providers is not None and opt.provider not in s.providers:
        return f"provider {opt.provider!r} not allowed"
    if opt.provider in s.exclude_providers:
        return f"provider {opt.provider!r} denied"
    for key, want in s.tags.items():
        if opt.tags.get(key) != want:
            return f"tag {key}={want!r} required"
    return None


def _constraint_violation(h: DeploymentHealth, s: SelectionSettings, kt: float, kr: float) -> str | None:
    """The first constraint *h* fails, its TTFT and decode estimates scaled by the draws *kt*, *kr*."""
    if s.max_p95_ttft_s is not None and h.ttft_s.p95 * kt > s.max_p95_ttft_s:
        return f"p95 TTFT {h.ttft_s.p95:.3g}s > {s.max_p95_ttft_s:g}s"
    if s.min_tokens_per_s is not None and h.tokens_per_s.p05 * kr < s.min_tokens_per_s:
        return f"p05 decode {h.tokens_per_s.p05:.3g} tok/s < {s.min_tokens_per_s:g}"
    if s.max_error_rate is not None and h.error_rate > s.max_error_rate:
        return f"error rate {h.error_rate:.2f} > {s.max_error_rate:g}"
    return None


def _rate_limited(h: DeploymentHealth, tokens: int) -> str | None:
    rl = h.rate_limit
    if rl is None:
        return None
    req, tok = rl.remaining_requests, rl.remaining_tokens
    if req is not None and rl.reset_requests_in_s is not None and req - rl.started_since <= 0:
        return f"no requests left until reset in {rl.reset_requests_in_s:.3g}s"
    if tok is not None and rl.reset_tokens_in_s is not None and tok < tokens:
        return f"{tok} tokens left until reset in {rl.reset_tokens_in_s:.3g}s"
    return None


def select(
    model: str,
    options: Sequence[Option],
    health: Sequence[DeploymentHealth],
    settings: SelectionSettings,
    *,
    input_tokens: int,
    output_tokens: int,
    rng: Random,
    sticky: str | None = None,
    cached_tokens: int = 0,
    prefix_key: str | None = None,
    in_flight: Sequence[int] | None = None,
) -> SelectionDecision:
    """Order *options* (one model's deployments, configured order) by *settings*' objective.

    *health* holds each option's health, in the same order; *input_tokens* / *output_tokens*
    size this call (output: the request's max or the route's estimate); *rng* drives the
    exploration draws; *sticky* names the deployment that served this prompt prefix recently
    (*cached_tokens* of the input are then priced as cache reads there); *in_flight* gives live
    in-flight counts (default: each health's own, as of its last recompute).
    """
    s = settings
    n = len(options)
    notes: list[str | None] = [None] * n
    status: list[str] = ["ranked"] * n
    live: list[int] = []
    ranked: list[int] = []
    tokens = input_tokens + output_tokens
    explore = s.exploration if n > 1 else 0.0
    uniform = rng.random
    z = _NORMAL
    exp = math.exp
    # Exploration draws: how much better or worse than its estimate each deployment is taken
    # to be this time, in proportion to how unsure the estimate is. Constraints and scores both
    # use them, so a deployment the constraints would exclude on thin or old evidence is
    # sometimes given a chance, and concurrent callers do not all make the same choice.
    kt = [1.0] * n
    kr = [1.0] * n
    rules, constraints = s._rules, s._constraints
    limits = False  # whether any ranked option is rate-limited
    for i in range(n):
        h = health[i]
        reason = _rule_exclusion(options[i], s) if rules else None
        if reason is None and not h.circuit.admitting:
            reason = _circuit_note(h)
        if reason is not None:
            notes[i], status[i] = reason, "left_out"
            continue
        live.append(i)
        if explore > 0:
            kt[i] = exp(z[int(uniform() * 1024)] * h.ttft_s.uncertainty * explore)
            kr[i] = exp(z[int(uniform() * 1024)] * h.tokens_per_s.uncertainty * explore)
        if constraints:
            soft = _constraint_violation(h, s, kt[i], kr[i])
            if soft is not None:
                notes[i], status[i] = soft, "constraint"
                continue
        ranked.append(i)
        if h.rate_limit is not None:
            limited = _rate_limited(h, tokens)
            if limited is not None:
                notes[i], status[i] = limited, "rate_limited"
                limits = True
    relaxed = bool(live) and not ranked
    if relaxed:
        ranked = live
    scores: list[float | None] = [None] * n
    draws: list[tuple[float, float, float, float] | None] = [None] * n
    if len(ranked) > 1:  # something to rank: score it
        # Output length is the model's and the request's, not the deployment's: pool what was seen.
        num = den = 0.0
        for h in health:
            if h.mean_output_tokens is not None and h.attempts > 0:
                num += h.mean_output_tokens * h.attempts
                den += h.attempts
        pooled_out = num / den if den > 0 else math.inf
        scale = s.in_flight_scale if s.load_aware else 0.0
        weights = s._weights
        single = weights[0][0] if len(weights) == 1 else -1
        terms: list[tuple[float, float, float]] = []
        b0 = b1 = b2 = math.inf
        for i in ranked:
            opt, h = options[i], health[i]
            ttft = h.ttft_s.mean * kt[i]
            rate = h.tokens_per_s.mean * kr[i]
            cap = opt.max_output_tokens
            out = output_tokens if cap is None or cap > output_tokens else cap
            if pooled_out < out:
                out = pooled_out
            price = opt.price
            if cached_tokens and opt.deployment == sticky:
                cost = expected_cost_usd(price, input_tokens, out, cached_tokens)
            else:
                cost = (input_tokens * price.input + out * price.output) / 1e6
            fail = h.error_rate
            inv = 1.0 / (1.0 - fail) if fail < 0.95 else 20.0
            load = 1.0 + (h.in_flight if in_flight is None else in_flight[i]) / scale if scale else 1.0
            latency = ttft + out / rate
            term = (cost * inv, latency * load * inv, load * inv / rate)
            terms.append(term)
            draws[i] = (ttft, rate, latency, cost)
            if single < 0:
                t0, t1, t2 = term
                if t0 < b0:
                    b0 = t0
                if t1 < b1:
                    b1 = t1
                if t2 < b2:
                    b2 = t2
        if single >= 0:
            for j, i in enumerate(ranked):
                scores[i] = terms[j][single]
        else:
            best = (b0, b1, b2)
            total = s._total
            active = [(k, w) for k, w in weights if best[k] > 0]
            for j, i in enumerate(ranked):
                t = terms[j]
                scores[i] = sum([w * t[k] / best[k] for k, w in active]) / total
        if limits:  # rate-limited ones last, each group by score, ties in configured order
            order = sorted(ranked, key=lambda i: (status[i] == "rate_limited", scores[i], i))
        else:
            order = sorted(ranked, key=scores.__getitem__)  # stable: ties keep configured order
    else:
        order = ranked
    return SelectionDecision(
        model,
        s.label,
        tuple([options[i].deployment for i in order]),
        relaxed,
        explore > 0,
        sticky,
        prefix_key,
        (options, health, status, notes, scores, draws, in_flight),
    )


def _circuit_note(h: DeploymentHealth) -> str:
    c = h.circuit
    return (
        f"circuit open (probing in {c.retry_in_s:.3g}s)"
        if c.state is CircuitState.OPEN
        else "circuit half-open, probe slots taken"
    )


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


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""


#: Characters of the first message that identify a prompt prefix.
_PREFIX_CHARS = 4096


def prefix_key(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """A short key for the prompt prefix a provider would cache: the first message (role and the
    start of its text). ``None`` for a one-message prompt (nothing is reused)."""
    if len(messages) < 2:
        return None
    first = messages[0]
    text = _text(first.get("content"))[:_PREFIX_CHARS]
    return hashlib.blake2b(f"{first.get('role')}\0{text}".encode("utf-8", "replace"), digest_size=8).hexdigest()


def prefix_tokens(messages: Sequence[Mapping[str, Any]], input_tokens: int) -> int:
    """Input tokens likely cached when the same prefix was just served: every message but the
    last, by its share of the characters."""
    if len(messages) < 2:
        return 0
    lengths = [len(_text(m.get("content"))) for m in messages]
    total = sum(lengths)
    return 0 if total <= 0 else int(input_tokens * (total - lengths[-1]) / total)
