"""Client CPU per routed call: llmroute vs raw httpx against the same local fake provider.

    python bench/overhead.py [--calls 400] [--rounds 15] [--concurrency 4] [--json]
    python bench/overhead.py --stream [--tokens 100]   # streamed calls: CPU per call and per chunk
    python bench/overhead.py --candidate bench.adapters.my_router   # compare another router

The fake provider (``python -m llmroute.testing``) runs in a separate process, so this process's
CPU time (``time.process_time``) is the client's alone. Rounds alternate baseline and candidate
(each pair in alternating order) so machine noise hits both; the ratios are the medians of the
per-pair ratios, the absolute figures the medians over rounds. A candidate is any module
with ``NAME`` and ``async def make(base_url) -> client`` where the client has
``async def call(messages) -> str`` and ``async def aclose()`` (and, for ``--stream``,
``async def stream(messages) -> int``, the number of chunks read: the baseline reads the SSE lines
with ``aiter_lines`` and decodes each ``data:`` line's JSON by hand). With ``--stream`` the fake
provider streams replies of *--tokens* tokens, one per event.
With ``--json`` the last line is one JSON object with ``cpu_ratio_vs_httpx`` and
``calls_per_s_ratio_vs_httpx`` (and with ``--stream``, ``cpu_us_per_chunk_*``).
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
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def start_server(output_tokens: int = 12) -> tuple[subprocess.Popen[str], str]:
    spec = Path(tempfile.mkdtemp()) / "fleet.json"
    provider = {"name": "openai", "api": "openai", "output_tokens": output_tokens, "record_requests": False}
    spec.write_text(json.dumps([provider]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute.testing", "--port", "0", "--spec", str(spec)],
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


async def run_round(client: Any, calls: int, concurrency: int, stream: bool = False) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for *calls* calls at *concurrency*."""
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            if stream:
                await client.stream(MESSAGES)
            else:
                await client.call(MESSAGES)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    proc, base_url = start_server(args.tokens if args.stream else 12)
    try:
        base_mod = importlib.import_module(args.baseline)
        cand_mod = importlib.import_module(args.candidate)
        base = await base_mod.make(base_url)
        cand = await cand_mod.make(base_url)
        n = (args.calls // args.concurrency) * args.concurrency
        for client in (base, cand):  # warm up: connections, lazy imports, caches
            await run_round(client, max(args.concurrency, n // 5), args.concurrency, args.stream)
        chunks = await base.stream(MESSAGES) if args.stream else 0
        results: dict[str, list[tuple[float, float]]] = {"base": [], "cand": []}
        for i in range(args.rounds):
            # alternate which client goes first, so drift and warm caches favour neither
            order = (("base", base), ("cand", cand)) if i % 2 == 0 else (("cand", cand), ("base", base))
            for key, client in order:
                results[key].append(await run_round(client, n, args.concurrency, args.stream))
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
    out = {
        "baseline": base_mod.NAME,
        "candidate": cand_mod.NAME,
        "stream": args.stream,
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
    if args.stream:
        out["chunks_per_call"] = chunks
        out["cpu_us_per_chunk_httpx"] = round(b["cpu_us_per_call"] / chunks, 2)
        out["cpu_us_per_chunk_candidate"] = round(c["cpu_us_per_call"] / chunks, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=400, help="calls per round and client (default 400)")
    p.add_argument("--rounds", type=int, default=15, help="alternating rounds per client (default 15)")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent callers (default 4)")
    p.add_argument("--stream", action="store_true", help="streamed calls (SSE) instead of JSON replies")
    p.add_argument("--tokens", type=int, default=100, help="tokens (events) per streamed reply (default 100)")
    p.add_argument("--baseline", default="bench.adapters.raw_httpx")
    p.add_argument("--candidate", default="bench.adapters.llmroute_router")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    res = asyncio.run(main_async(args))
    kind = f"streamed calls of {res['chunks_per_call']} chunks" if args.stream else "calls"
    print(
        f"{res['candidate']} vs {res['baseline']}: {res['calls_per_round']} {kind} x {res['rounds']} rounds, "
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
    if args.stream:
        print(
            f"  client CPU per chunk: {res['cpu_us_per_chunk_candidate']:8.2f} us vs "
            f"{res['cpu_us_per_chunk_httpx']:8.2f} us"
        )
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
