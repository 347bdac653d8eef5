"""Client CPU per routed call: llmroute vs raw httpx against the same local fake provider.

    python bench/overhead.py [--calls 400] [--rounds 15] [--concurrency 4] [--json]
    python bench/overhead.py --candidate bench.adapters.my_router   # compare another router

The fake provider (``python -m llmroute.testing``) runs in a separate process, so this process's
CPU time (``time.process_time``) is the client's alone. Rounds alternate baseline and candidate
(each pair in alternating order) so machine noise hits both; the ratios are the medians of the
per-pair ratios, the absolute figures the medians over rounds. A candidate is any module
with ``NAME`` and ``async def make(base_url) -> client`` where the client has
``async def call(messages) -> str`` and ``async def aclose()``.
With ``--json`` the last line is one JSON object with ``cpu_ratio_vs_httpx`` and
``calls_per_s_ratio_vs_httpx``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info = json.loads(line)
    return proc, info["providers"]["openai"]


MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Give me one sentence about the history of the printing press in Europe."},
]


async def run_round(client: Any, calls: int, concurrency: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for *calls* calls at *concurrency*."""
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await client.call(MESSAGES)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    proc, base_url = start_server()
    try:
        base_mod = importlib.import_module(args.baseline)
        cand_mod = importlib.import_module(args.candidate)
        base = await base_mod.make(base_url)
        cand = await cand_mod.make(base_url)
        n = (args.calls // args.concurrency) * args.concurrency
        for client in (base, cand):  # warm up: connections, lazy imports, caches
            await run_round(client, max(args.concurrency, n // 5), args.concurrency)
        results: dict[str, list[tuple[float, float]]] = {"base": [], "cand": []}
        for i in range(args.rounds):
            # alternate which client goes first, so drift and warm caches favour neither
            order = (("base", base), ("cand", cand)) if i % 2 == 0 else (("cand", cand), ("base", base))
            for key, client in order:
                results[key].append(await run_round(client, n, args.concurrency))
        await base.aclose()
        await cand.aclose()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    def summary(rows: list[tuple[float, float]]) -> dict[str, float]:
        cpu = statistics.median(c / n for c, _ in rows)
        wall = statistics.median(w for _, w in rows)
        return {"cpu_us_per_call": cpu * 1e6, "calls_per_s": n / wall}

    b, c = summary(results["base"]), summary(results["cand"])
    # the ratio of each round pair, then the median: robust to a noisy neighbour in one round
    cpu_ratio = statistics.median(cc / bc for (bc, _), (cc, _) in zip(results["base"], results["cand"]))
    rate_ratio = statistics.median(bw / cw for (_, bw), (_, cw) in zip(results["base"], results["cand"]))
    return {
        "baseline": base_mod.NAME,
        "candidate": cand_mod.NAME,
        "calls_per_round": n,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "python": platform.python_version(),
        "cpu_us_per_call_httpx": round(b["cpu_us_per_call"], 1),
        "cpu_us_per_call_candidate": round(c["cpu_us_per_call"], 1),
        "calls_per_s_httpx": round(b["calls_per_s"], 1),
        "calls_per_s_candidate": round(c["calls_per_s"], 1),
        "cpu_ratio_vs_httpx": round(cpu_ratio, 3),
        "calls_per_s_ratio_vs_httpx": round(rate_ratio, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=400, help="calls per round and client (default 400)")
    p.add_argument("--rounds", type=int, default=15, help="alternating rounds per client (default 15)")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent callers (default 4)")
    p.add_argument("--baseline", default="bench.adapters.raw_httpx")
    p.add_argument("--candidate", default="bench.adapters.llmroute_router")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    res = asyncio.run(main_async(args))
    print(
        f"{res['candidate']} vs {res['baseline']}: {res['calls_per_round']} calls x {res['rounds']} rounds, "
        f"concurrency {res['concurrency']}"
    )
    print(
        f"  client CPU per call : {res['cpu_us_per_call_candidate']:8.1f} us vs {res['cpu_us_per_call_httpx']:8.1f} us"
        f"  -> ratio {res['cpu_ratio_vs_httpx']:.3f}"
    )
    print(
        f"  calls per second    : {res['calls_per_s_candidate']:8.1f}    vs {res['calls_per_s_httpx']:8.1f}"
        f"     -> ratio {res['calls_per_s_ratio_vs_httpx']:.3f}"
    )
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
