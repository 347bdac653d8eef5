"""Trace-replay simulation: what routing across the providers of one model is worth.

    python bench/simulate.py [--scenario all|qwen3-32b|deepseek-v3.2] [--seeds 5] [--hours 24]
                             [--plot sim.png] [--json]
    python bench/simulate.py --loopback [--json]     # the simulator against the real router, ~1 min

Replays a day of request arrivals against simulated providers of one model (llmroute.sim: speed
from LLMPerf, load shape from ServeGen, token counts from Azure's trace, real price rows; every
synthetic part is printed), and compares in virtual time: official-only, static cheapest, round
robin, mean-of-last-10 latency (LiteLLM's latency routing), llmroute (its real health tracking,
circuit breakers and selection) and a hindsight oracle. Each seed draws a new world (which
measured speed profile each unmeasured provider gets, incidents, limits, arrivals); the headline
ratios are medians over the seeds, and every seed is printed. Ratios are llmroute / baseline,
measured in the same run. With ``--json`` the last line is one JSON object: a nested object per
scenario and, at top level, ``cost_vs_official``, ``p95_ttft_vs_official``, ``p95_ttft_vs_mean10``
(cost scenario) and ``throughput_vs_official`` (throughput scenario).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmroute.sim import POLICIES, SCENARIOS, run
from llmroute.sim.report import METRICS, as_jsonable, ratios, table

#: Extra policy rows per scenario: llmroute with the latency objective in the cost scenario, so
#: its TTFT can be set against mean-of-last-10's on the same objective.
EXTRA = {"qwen3-32b": ("llmroute latency",), "deepseek-v3.2": ()}
KEYS = [k for k, _, _ in METRICS] + ["decode_tok_s_p50"]


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def run_scenario(name: str, seeds: list[int], hours: float, quiet: bool) -> tuple[dict[str, Any], Any]:
    per_seed = []
    first = None
    policies = POLICIES[:-1] + EXTRA[name] + POLICIES[-1:]
    for seed in seeds:
        t0 = time.perf_counter()
        res = run(name, seed, policies=policies, hours=hours)
        took = time.perf_counter() - t0
        first = first or res
        sc = res.scenario
        rat = {p: ratios(m, res.metrics["official-only"]) for p, m in res.metrics.items()}
        for p, m in res.metrics.items():
            b = res.metrics["official-only"]["decode_tok_s_p50"]
            rat[p]["decode_tok_s_p50"] = m["decode_tok_s_p50"] / b if b else float("nan")
        per_seed.append(
            {
                "seed": seed,
                "baseline": sc.baseline,
                "requests": len(sc.requests),
                "providers": sc.notes,
                "metrics": res.metrics,
                "ratios_vs_official": rat,
                "llmroute_vs_mean10": ratios(res.metrics["llmroute"], res.metrics["mean-of-last-10"]),
                "seconds": took,
            }
        )
        if not quiet:
            if seed == seeds[0]:
                print()
                for line in sc.describe()[: -len(sc.notes)]:
                    print(line)
            print(f"\n  seed {seed}: {len(sc.requests)} requests, baseline {sc.baseline}, {took:.1f} s")
            for line in sc.notes:
                print(f"    {line}")
            for line in table(res.metrics, "official-only"):
                print(line)
    med = {
        p: {k: _median([s["ratios_vs_official"][p][k] for s in per_seed]) for k in KEYS} for p in per_seed[0]["metrics"]
    }
    spread = {p: {k: [s["ratios_vs_official"][p][k] for s in per_seed] for k in KEYS} for p in per_seed[0]["metrics"]}
    vs10 = {k: _median([s["llmroute_vs_mean10"][k] for s in per_seed]) for k, _, _ in METRICS}
    out = {
        "model": SCENARIOS[name].model,
        "focus": SCENARIOS[name].focus,
        "hours": hours,
        "seeds": seeds,
        "median_ratios_vs_official": med,
        "ratios_vs_official_per_seed": spread,
        "llmroute_vs_mean10_median": vs10,
        "per_seed": per_seed,
    }
    if "llmroute latency" in med:
        out["llmroute_latency_vs_mean10_median"] = {
            k: _median([ratios(s["metrics"]["llmroute latency"], s["metrics"]["mean-of-last-10"])[k] for s in per_seed])
            for k, _, _ in METRICS
        }
    return out, first


def plot(path: Path, firsts: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(firsts), figsize=(7 * len(firsts), 8), squeeze=False)
    for col, res in enumerate(firsts.values()):
        for policy, s in res.series.items():
            style = {"linewidth": 2.2} if policy == "llmroute" else {"linewidth": 1.0, "alpha": 0.8}
            axes[0][col].plot(s["start_h"], s["cost_per_1k_usd"], label=policy, **style)
            axes[1][col].plot(s["start_h"], s["ttft_p95_s"], label=policy, **style)
        sc = res.scenario
        axes[0][col].set_title(f"{sc.spec.model}, seed {sc.seed}: cost per 1k served requests (USD)")
        axes[1][col].set_title("TTFT p95 per 30 min (s)")
        axes[1][col].set_yscale("log")
        axes[1][col].set_xlabel("simulated hour")
        axes[0][col].legend(fontsize=8)
    fig.suptitle("llmroute.sim: real prices and measured speeds, synthetic time variation (see the printout)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def loopback(args: argparse.Namespace) -> int:
    """Replay a window of the cost scenario in the simulator and, compressed k times, through the
    real Router over the loopback fleet; print both and their ratio."""
    from llmroute.sim import build
    from llmroute.sim.loopback import compare

    sc = build("qwen3-32b", args.loopback_seed, mean_rps=args.loopback_rps)
    cheapest = min(sc.world.providers.values(), key=lambda p: p.price.input + p.price.output)
    start = cheapest.incidents[0].start - 60.0 if cheapest.incidents else 12 * 3600.0
    cmp = compare(sc, start_s=start, length_s=args.loopback_minutes * 60, k=args.loopback_k)
    print(
        f"loopback check: qwen3-32b seed {sc.seed} at {args.loopback_rps:g} req/s mean, scenario hours "
        f"{cmp.window_s[0] / 3600:.2f}-{cmp.window_s[1] / 3600:.2f} (from a minute before the cheapest provider's "
        f"first incident), {cmp.requests} requests, time compressed {cmp.k:g}x, {cmp.wall_s:.0f} s wall"
    )
    print("  metric (scenario units)        " + "".join(f"{p:>34}" for p in cmp.sim))
    print("                                 " + "".join(f"{'sim':>10} {'real':>10} {'real/sim':>12}" for _ in cmp.sim))
    for key, label, _ in (*METRICS, ("attempts_per_request", "attempts/request", "")):
        cells = "".join(
            f"{cmp.sim[p][key]:10.4f} {cmp.real[p][key]:10.4f} {cmp.real[p][key] / cmp.sim[p][key]:11.3f}x"
            if cmp.sim[p][key]
            else f"{cmp.sim[p][key]:10.4f} {cmp.real[p][key]:10.4f} {'-':>12}"
            for p in cmp.sim
        )
        print(f"  {label:<31}{cells}")
    for p in cmp.sim:
        sim_share = ", ".join(f"{k} {v:.1%}" for k, v in cmp.shares_sim[p].items())
        real_share = ", ".join(f"{k} {v:.1%}" for k, v in cmp.shares_real[p].items())
        print(f"  {p} traffic: sim [{sim_share}]\n  {' ' * len(p)}          real [{real_share}]")
    if args.json:
        print(json.dumps(as_jsonable({"bench": "simulate-loopback", **cmp.__dict__}), separators=(",", ":")))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="all", choices=["all", *SCENARIOS])
    p.add_argument("--seeds", type=int, default=5, help="worlds to draw (default 5); headline = median")
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours per world (default 24)")
    p.add_argument("--plot", type=Path, help="write a PNG of cost and p95 TTFT over time (first seed)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.add_argument("--loopback", action="store_true", help="check the simulator against the real router (~1 min)")
    p.add_argument("--loopback-minutes", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument("--loopback-k", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--loopback-rps", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--loopback-seed", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.loopback:
        return loopback(args)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    seeds = list(range(1, args.seeds + 1))
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    firsts: dict[str, Any] = {}
    for name in names:
        results[name], firsts[name] = run_scenario(name, seeds, args.hours, quiet=False)

    print("\nsummary (llmroute / baseline, median over seeds; per seed in brackets)")
    head: dict[str, Any] = {}
    for name, r in results.items():
        med, spread = r["median_ratios_vs_official"]["llmroute"], r["ratios_vs_official_per_seed"]["llmroute"]
        print(f"  {name} ({r['focus']} focus), vs official-only:")
        for key, label, _ in METRICS:
            cells = ", ".join(f"{x:.2f}" for x in spread[key])
            print(f"    {label:<18} {med[key]:6.2f}x  [{cells}]")
        print(f"    {'decode tok/s p50':<18} {med['decode_tok_s_p50']:6.2f}x")
        vs10 = r["llmroute_vs_mean10_median"]
        print(f"    vs mean-of-last-10: TTFT p95 {vs10['ttft_p95_s']:.2f}x, cost {vs10['cost_per_1k_usd']:.2f}x")
        if "llmroute_latency_vs_mean10_median" in r:
            lat = r["llmroute_latency_vs_mean10_median"]
            print(
                f"    llmroute with the latency objective vs mean-of-last-10: TTFT p95 {lat['ttft_p95_s']:.2f}x, "
                f"cost {lat['cost_per_1k_usd']:.2f}x"
            )
    if "qwen3-32b" in results:
        r = results["qwen3-32b"]
        head["cost_vs_official"] = r["median_ratios_vs_official"]["llmroute"]["cost_per_1k_usd"]
        head["p95_ttft_vs_official"] = r["median_ratios_vs_official"]["llmroute"]["ttft_p95_s"]
        head["p95_ttft_vs_mean10"] = r["llmroute_vs_mean10_median"]["ttft_p95_s"]
        head["p95_ttft_vs_mean10_latency_objective"] = r["llmroute_latency_vs_mean10_median"]["ttft_p95_s"]
    if "deepseek-v3.2" in results:
        r = results["deepseek-v3.2"]
        head["throughput_vs_official"] = r["median_ratios_vs_official"]["llmroute"]["throughput_tok_s"]
        head["decode_tok_s_vs_official"] = r["median_ratios_vs_official"]["llmroute"]["decode_tok_s_p50"]
    if head:
        print("  targets: cost <= 0.60x at p95 TTFT <= 1.00x (cost scenario), throughput >= 2x (throughput")
        print("  scenario), p95 TTFT < mean-of-last-10's; each figure above is what this run measured")
    if args.plot:
        plot(args.plot, firsts)
        print(f"  plot: {args.plot}")
    took = time.perf_counter() - t0
    print(f"  {took:.0f} s")
    if args.json:
        obj = {
            "bench": "simulate",
            "seeds": seeds,
            "hours": args.hours,
            "seconds": round(took, 1),
            **head,
            "scenarios": results,
        }
        print(json.dumps(as_jsonable(obj), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
