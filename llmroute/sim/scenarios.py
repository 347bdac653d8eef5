"""The shipped scenarios, built from the derived statistics and real price rows.

``qwen3-32b`` (cost focus): a dense model sold by many providers. Alibaba's own endpoint for
Qwen3-32B is not priced in the tables, so the single-provider baseline is the **median-priced**
provider (by the cost of the trace's median request): not the dearest nor the slowest, the one
"a provider in the middle of the list" a user would plausibly pick.

``deepseek-v3.2`` (throughput focus): a large MoE model; the baseline is DeepSeek's own API
(``deepseek/deepseek-v3.2``), whose account limit binds (the scenario's premise, synthetic).

Everything synthetic is listed by :meth:`Scenario.describe`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..costs import lookup_price
from ..health import HealthSettings
from ..policy.selection import SelectionSettings
from .engine import Request
from .world import Profile, SimProvider, Synthetic, World, draw_incidents

__all__ = ["SCENARIOS", "Scenario", "ScenarioSpec", "build", "derived"]


#: The committed summary statistics (written by ``python -m llmroute.sim.derive``).
DERIVED = Path(__file__).parent / "data" / "derived.json"


@lru_cache(maxsize=1)
def derived() -> dict[str, Any]:
    """The committed summary statistics (see :mod:`llmroute.sim.derive`)."""
    return json.loads(DERIVED.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _profiles() -> dict[str, Profile]:
    lat = derived()["latency"]
    levels = tuple(lat["quantiles"])
    out = {}
    for name, v in lat["providers"].items():
        n = v["requests"]
        out[name] = Profile(
            name,
            levels,
            tuple(v["ttft_s"]),
            tuple(v["inter_token_s"]),
            v["rate_limited"] / n,
            v["other_errors"] / n,
            v["completed_per_min"],
            f"LLMPerf {v['model']} run {v['run_utc']}",
        )
    return out


@dataclass(frozen=True)
class ScenarioSpec:
    """What defines a scenario (all choices visible)."""

    name: str
    model: str
    focus: str
    #: (provider name, price-table key, LLMPerf profile it was measured as, or None).
    providers: tuple[tuple[str, str, str | None], ...]
    #: The single-provider baseline and why it is the one.
    baseline: str | None
    baseline_rule: str
    #: ServeGen rate curve giving the load's daily shape.
    load_model: str
    mean_rps: float
    hours: float
    selection: SelectionSettings
    #: The oracle's objective (``cost`` under ``max_ttft_s``, or ``throughput``).
    oracle_objective: str
    oracle_max_ttft_s: float | None
    #: Account limits, requests per minute, as multiples of the mean demand: drawn uniformly in
    #: ``rpm_range`` per provider; the baseline's fixed at ``baseline_rpm`` when set.
    rpm_range: tuple[float, float]
    baseline_rpm: float | None = None
    synthetic: Synthetic = field(default_factory=Synthetic)
    health: HealthSettings = field(default_factory=HealthSettings)


SCENARIOS: dict[str, ScenarioSpec] = {
    "qwen3-32b": ScenarioSpec(
        name="qwen3-32b",
        model="Qwen3-32B (dense)",
        focus="cost",
        providers=(
            ("bedrock", "qwen.qwen3-32b-v1:0", "bedrock"),
            ("deepinfra", "deepinfra/Qwen/Qwen3-32B", None),
            ("fireworks", "fireworks_ai/accounts/fireworks/models/qwen3-32b", "fireworks"),
            ("lambda", "lambda_ai/qwen3-32b-fp8", None),
            ("nebius", "nebius/Qwen/Qwen3-32B", None),
            ("novita", "novita/qwen/qwen3-32b-fp8", None),
            ("ovhcloud", "ovhcloud/Qwen3-32B", None),
        ),
        baseline=None,  # the median-priced provider, computed
        baseline_rule="Alibaba's own Qwen3-32B endpoint is not priced in the tables: the baseline is the "
        "median-priced provider for the trace's median request (not the dearest, not the slowest)",
        load_model="m-mid",
        mean_rps=0.25,
        hours=24.0,
        selection=SelectionSettings(objective={"price": 1.0}, max_p95_ttft_s=2.0),
        oracle_objective="cost",
        oracle_max_ttft_s=2.0,
        rpm_range=(2.0, 6.0),
    ),
    "deepseek-v3.2": ScenarioSpec(
        name="deepseek-v3.2",
        model="DeepSeek-V3.2 (671B MoE)",
        focus="throughput",
        providers=(
            ("deepseek", "deepseek/deepseek-v3.2", None),
            ("deepinfra", "deepinfra/deepseek-ai/DeepSeek-V3.2", None),
            ("novita", "novita/deepseek/deepseek-v3.2", None),
            ("gmi", "gmi/deepseek-ai/DeepSeek-V3.2", None),
            ("friendliai", "friendliai/deepseek-ai/DeepSeek-V3.2", None),
            ("fireworks", "fireworks_ai/accounts/fireworks/models/deepseek-v3p2", "fireworks"),
            ("azure", "azure_ai/deepseek-v3.2", None),
            ("vertex", "vertex_ai/deepseek-ai/deepseek-v3.2-maas", None),
            ("sambanova", "sambanova/DeepSeek-V3.2", None),
        ),
        baseline="deepseek",
        baseline_rule="the model maker's own API as the tables price it (deepseek/deepseek-v3.2)",
        load_model="deepseek-r1",
        mean_rps=0.25,
        hours=24.0,
        selection=SelectionSettings(objective={"throughput": 1.0}),
        oracle_objective="throughput",
        oracle_max_ttft_s=None,
        rpm_range=(0.5, 1.5),
        baseline_rpm=0.4,
    ),
}


@dataclass
class Scenario:
    """One built scenario: its world, its requests, and how it was made."""

    spec: ScenarioSpec
    seed: int
    world: World
    requests: list[Request]
    baseline: str
    duration_s: float
    notes: list[str]

    def describe(self) -> list[str]:
        """Lines saying what is real, what is synthetic, and every choice."""
        s = self.spec
        lat, load, tok = derived()["latency"], derived()["load"], derived()["tokens"]
        lines = [
            f"scenario {s.name}: {s.model}, {s.focus} focus, seed {self.seed}, "
            f"{self.duration_s / 3600:g} h simulated, {len(self.requests)} requests",
            f"  baseline (official-only): {self.baseline} — {s.baseline_rule}",
            "  prices [real]: shipped litellm 1.109.1 table rows, by key; no time-of-day prices in these rows",
            f"  provider speed [real, mapped]: {lat['source']}, Llama-2-{lat['model_size']} runs (2023-12/2024-01);"
            " a provider LLMPerf measured keeps its run, the others get a measured run by a seeded draw"
            " (distinct runs while any are unused); TTFT and inter-token latency drawn independently",
            f"  load [real shape, synthetic scale]: {load['source']}, model {s.load_model}, scaled to "
            f"{s.mean_rps:g} req/s mean; gamma inter-arrivals with ServeGen's CV clipped to [1, 3]",
            f"  token counts [real]: {tok['source']}, input and output drawn independently",
            "  [synthetic] TTFT x (1 + gain x max(0, load - 1)) on each provider's own daily load "
            f"(phase uniform over the day, gain in {s.synthetic.load_gain}), decode rate / (1 + gain/2 x ...)",
            f"  [synthetic] incidents: {s.synthetic.incidents_per_hour * 24:g}/day per provider, median "
            f"{s.synthetic.incident_median_s / 60:g} min: slowdown (TTFT x4-12, decode x0.3-0.7), 5xx burst "
            "(30-90 %), throttling (429 50-95 %, Retry-After 2-30 s)",
            f"  [synthetic] shared upstream outage: {s.synthetic.shared_outages_per_day:g}/day, hitting "
            f"{s.synthetic.shared_share:.0%} of providers with 90 % 5xx",
            f"  [synthetic] account limits: token bucket, rpm = U{s.rpm_range} x mean demand"
            + (
                f"; baseline's fixed at {s.baseline_rpm:g} x mean demand (the scenario's premise)"
                if s.baseline_rpm
                else ""
            ),
            f"  llmroute route: selection objective {s.selection.label}"
            + (f", max_p95_ttft_s {s.selection.max_p95_ttft_s:g}" if s.selection.max_p95_ttft_s else "")
            + f", health half-life {s.health.half_life_s:g} s, other settings default",
        ]
        lines += [f"  {n}" for n in self.notes]
        return lines


def _quantile(levels: Sequence[float], values: Sequence[float], u: float) -> float:
    from .world import _interp

    return _interp(levels, values, u)


def build(name: str, seed: int, *, hours: float | None = None, mean_rps: float | None = None) -> Scenario:
    """Build scenario *name* with *seed* (the mapping, incidents, limits and arrivals all follow it)."""
    spec = SCENARIOS[name]
    hours = spec.hours if hours is None else hours
    mean_rps = spec.mean_rps if mean_rps is None else mean_rps
    rng = random.Random(f"{name}/{seed}")
    profiles = _profiles()
    tok = derived()["tokens"]
    med_in = _quantile(tok["quantiles"], tok["input_tokens"], 0.5)
    med_out = _quantile(tok["quantiles"], tok["output_tokens"], 0.5)

    own = {measured for _, _, measured in spec.providers if measured}
    free = sorted(set(profiles) - own)
    rng.shuffle(free)
    providers: list[SimProvider] = []
    notes: list[str] = []
    pool = list(free)
    for pname, key, measured in spec.providers:
        entry = lookup_price(key)
        if entry is None:
            raise KeyError(f"price key {key!r} is not in the shipped table")
        if measured:
            prof, how = profiles[measured], "own measurement"
        else:
            if not pool:
                pool = list(free)
                rng.shuffle(pool)
            mapped = pool.pop()
            prof, how = profiles[mapped], f"mapped from LLMPerf '{mapped}' (seeded draw)"
        providers.append(SimProvider(pname, key, entry.price, prof, how))

    baseline = spec.baseline
    if baseline is None:
        by_cost = sorted(providers, key=lambda p: (p.median_request_cost(med_in, med_out), p.name))
        baseline = by_cost[(len(by_cost) - 1) // 2].name
    duration = hours * 3600.0
    incidents = draw_incidents(rng, [p.name for p in providers], duration, spec.synthetic)
    demand_rpm = mean_rps * 60.0
    for p in providers:
        p.official = p.name == baseline
        p.load_phase_s = rng.uniform(0, 86400.0)
        p.load_gain = rng.uniform(*spec.synthetic.load_gain)
        p.incidents = incidents[p.name]
        if p.official and spec.baseline_rpm is not None:
            p.rpm_limit = spec.baseline_rpm * demand_rpm
            p.rpm_note = f"synthetic: {spec.baseline_rpm:g} x mean demand"
        else:
            k = rng.uniform(*spec.rpm_range)
            p.rpm_limit = k * demand_rpm
            p.rpm_note = f"synthetic: {k:.2f} x mean demand"
    for p in sorted(providers, key=lambda p: p.median_request_cost(med_in, med_out)):
        cost = p.median_request_cost(med_in, med_out) * 1e6
        n_inc = len(p.incidents)
        notes.append(
            f"{p.name:<11} {p.price_key:<52} ${cost:7.1f}/M median requests; {p.profile_note}; "
            f"p50/p95 TTFT {p.profile.ttft(0.5):.2f}/{p.profile.ttft(0.95):.2f} s, "
            f"{p.profile.tokens_per_s(0.5):.0f} tok/s; limit {p.rpm_limit:.1f} rpm ({p.rpm_note}); "
            f"{n_inc} incident{'s' if n_inc != 1 else ''}" + (" [baseline]" if p.official else "")
        )

    load = derived()["load"]["models"][spec.load_model]
    world = World(providers, load["rate_rps"], load["window_s"], spec.synthetic)
    requests = _arrivals(rng, world, load["cv"], mean_rps, duration, [p.name for p in providers], spec.selection)
    return Scenario(spec, seed, world, requests, baseline, duration, notes)


def _arrivals(
    rng: random.Random,
    world: World,
    cvs: Sequence[float],
    mean_rps: float,
    duration: float,
    names: Sequence[str],
    selection: SelectionSettings,
) -> list[Request]:
    tok = derived()["tokens"]
    levels = tok["quantiles"]
    out: list[Request] = []
    t = 0.0
    while True:
        rate = max(mean_rps * world.load_at(t), 1e-6)
        cv = min(max(cvs[int(t // world.window_s) % len(cvs)], 1.0), 3.0)
        shape = 1.0 / (cv * cv)
        t += rng.gammavariate(shape, 1.0 / (rate * shape))
        if t >= duration:
            break
        n_in = max(1, round(_quantile(levels, tok["input_tokens"], rng.random())))
        n_out = max(1, round(_quantile(levels, tok["output_tokens"], rng.random())))
        draws = {n: [(rng.random(), rng.random(), rng.random(), rng.random()) for _ in range(2)] for n in names}
        out.append(Request(len(out), t, n_in, n_out, draws))
    return out
