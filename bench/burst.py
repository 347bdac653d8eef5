"""A burst of concurrent calls past the connection pool: llmroute vs raw httpx, same fleet, same run.

    python bench/burst.py [--calls 2000] [--pool 100] [--deadline 2] [--ttft 0.02] [--backend asyncio,trio] [--json]

The fake provider (``python -m llmroute.testing``) runs in its own process. Per backend, four
runs start *--calls* calls at once in one task group, each with a *--deadline*:

- **llmroute**: a Router with ``max_connections`` = *--pool* (``deadline_s``);
- **raw httpx**: one ``httpx.AsyncClient`` with the same pool limits, each call in
  ``anyio.move_on_after(deadline)`` (what a hand-written client does);
- **raw httpx + limiter**: the same client behind an ``anyio.CapacityLimiter`` of the pool's size
  (the admission idea with no llmroute code): how late a hand-written client that never
  overfills httpcore's pool delivers its deadlines, i.e. what the HTTP work alone costs the loop;
- **floor**: the same number of tasks that only wait in an ``anyio.CapacityLimiter`` of the pool's
  size until their deadline: how late the event loop itself delivers that many cancellations.

Each call ends ``ok``, ``deadline`` (a typed DeadlineExceededError, or the cancel scope for raw
httpx) or ``error``; "late" is how long after its deadline a call that missed it returned. Then
each client makes 100 more calls (5 s timeout each) to show whether it still works. Calls still
running *--cap* seconds after the burst started are cancelled and reported as unfinished. With
``--json`` the last line is one JSON object with the figures per backend and run, and the ratios
``late_p50_vs_floor``, ``late_p50_vs_httpx_limiter`` and ``ok_share_vs_httpx`` (llmroute / raw
httpx; null when httpx had none).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llmroute

MESSAGES = [{"role": "user", "content": "Give me one sentence about the history of the printing press."}]


def start_fleet(ttft: float) -> tuple[subprocess.Popen[str], str]:
    spec = Path(tempfile.mkdtemp()) / "fleet.json"
    spec.write_text(json.dumps([{"name": "openai", "api": "openai", "ttft_s": ttft, "record_requests": False}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute.testing", "--port", "0", "--spec", str(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["providers"]["openai"]


def summarise(results: list[tuple[str, float]], deadline: float, after_ok: int, calls: int) -> dict[str, Any]:
    late = [t - deadline for kind, t in results if kind == "deadline"]
    ok = [t for kind, t in results if kind == "ok"]
    q = statistics.quantiles(late, n=20) if len(late) >= 2 else late * 19 if late else []
    return {
        "ok": len(ok),
        "deadline": len(late),
        "error": sum(kind == "error" for kind, _ in results),
        #: still running when the run's cap (--cap) ran out: cancelled, counted apart
        "unfinished": calls - len(results),
        "late_ms_p50": round(statistics.median(late) * 1000, 1) if late else None,
        "late_ms_p95": round(q[18] * 1000, 1) if q else None,
        "late_ms_max": round(max(late) * 1000, 1) if late else None,
        "slowest_s": round(max(t for _, t in results), 3) if results else None,
        "after_ok": after_ok,
    }


async def burst(call: Any, n: int, cap: float) -> list[tuple[str, float]]:
    """Start *n* calls at once; after *cap* seconds, cancel those still running (not counted)."""
    results: list[tuple[str, float]] = []

    async def one() -> None:
        t = time.perf_counter()
        kind = await call()
        results.append((kind, time.perf_counter() - t))

    with anyio.move_on_after(cap):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    return results


async def after(call: Any) -> int:
    ok = 0

    async def one() -> None:
        nonlocal ok
        with anyio.move_on_after(5):
            if await call() == "ok":
                ok += 1

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(one)
    return ok


async def run_llmroute(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = {
        "providers": {"p": {"api": "openai", "base_url": base_url, "api_key": "sk-bench"}},
        "models": {"m": {"deployments": [{"provider": "p", "model": "bench", "price": {"input": 1, "output": 1}}]}},
        "routes": {"default": {"models": ["m"], "retry": {"attempts": 1}}},
        "max_connections": args.pool,
    }
    async with llmroute.Router.from_dict(cfg) as router:
        await router.warmup()

        async def call(deadline: float = args.deadline) -> str:
            try:
                await router.complete(MESSAGES, deadline_s=deadline)
                return "ok"
            except llmroute.DeadlineExceededError:
                return "deadline"
            except llmroute.LLMRouteError:
                return "error"

        results = await burst(call, args.calls, args.cap)
        return summarise(results, args.deadline, await after(lambda: call(5.0)), args.calls)


async def run_httpx(base_url: str, args: argparse.Namespace, limited: bool = False) -> dict[str, Any]:
    """Raw httpx, each call in a cancel scope; *limited*: behind a CapacityLimiter of the pool's size."""
    limits = httpx.Limits(max_connections=args.pool, max_keepalive_connections=20)
    limiter = anyio.CapacityLimiter(args.pool) if limited else None
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        body = {"model": "bench", "messages": MESSAGES}
        headers = {"authorization": "Bearer sk-bench"}

        async def post() -> str:
            try:
                r = await client.post(base_url + "/chat/completions", json=body, headers=headers)
                return "ok" if r.status_code == 200 else "error"
            except httpx.HTTPError:
                return "error"

        async def call(deadline: float = args.deadline) -> str:
            with anyio.move_on_after(deadline):
                if limiter is None:
                    return await post()
                async with limiter:
                    return await post()
            return "deadline"

        results = await burst(call, args.calls, args.cap)
        return summarise(results, args.deadline, await after(lambda: call(5.0)), args.calls)


async def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    limiter = anyio.CapacityLimiter(args.pool)

    async def call() -> str:
        with anyio.move_on_after(args.deadline):
            async with limiter:
                await anyio.sleep(args.deadline * 10)
        return "deadline"

    return summarise(await burst(call, args.calls, args.cap), args.deadline, 0, args.calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--ttft", type=float, default=0.02, help="the fake provider's time to first byte")
    parser.add_argument("--backend", default="asyncio,trio")
    parser.add_argument("--cap", type=float, default=30.0, help="seconds before a run's unfinished calls are cancelled")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"calls": args.calls, "pool": args.pool, "deadline_s": args.deadline, "ttft_s": args.ttft}
    for backend in args.backend.split(","):
        fleet, base_url = start_fleet(args.ttft)
        try:
            runs = {
                "llmroute": anyio.run(run_llmroute, base_url, args, backend=backend),
                "httpx": anyio.run(run_httpx, base_url, args, backend=backend),
                "httpx_limiter": anyio.run(run_httpx, base_url, args, True, backend=backend),
                "floor": anyio.run(run_floor, args, backend=backend),
            }
        finally:
            fleet.terminate()
            fleet.wait()
        ours, raw, floor = runs["llmroute"], runs["httpx"], runs["floor"]
        runs["late_p50_vs_floor"] = (
            round(ours["late_ms_p50"] / floor["late_ms_p50"], 2)
            if ours["late_ms_p50"] is not None and floor["late_ms_p50"]
            else None
        )
        lim = runs["httpx_limiter"]
        runs["late_p50_vs_httpx_limiter"] = (
            round(ours["late_ms_p50"] / lim["late_ms_p50"], 2)
            if ours["late_ms_p50"] is not None and lim["late_ms_p50"]
            else None
        )
        runs["ok_share_vs_httpx"] = round(ours["ok"] / raw["ok"], 2) if raw["ok"] else None
        out[backend] = runs
        print(f"\n{backend}: {args.calls} calls at once, pool {args.pool}, deadline {args.deadline:g} s")
        head = f"{'ok':>6}{'deadline':>10}{'error':>7}{'unfinished':>11}{'late p50/p95/max ms':>24}"
        print(f"  {'':15}{head}{'slowest s':>11}{'after':>8}")
        for name in ("llmroute", "httpx", "httpx_limiter", "floor"):
            r = runs[name]
            late = "/".join("-" if r[k] is None else f"{r[k]:g}" for k in ("late_ms_p50", "late_ms_p95", "late_ms_max"))
            after_ok = "-" if name == "floor" else f"{r['after_ok']}/100"
            counts = f"{r['ok']:>6}{r['deadline']:>10}{r['error']:>7}{r['unfinished']:>11}"
            slowest = "-" if r["slowest_s"] is None else f"{r['slowest_s']:g}"
            print(f"  {name:15}{counts}{late:>24}{slowest:>11}{after_ok:>8}")
        print(
            f"  late p50 vs floor: {runs['late_p50_vs_floor']}x; vs raw httpx + limiter: "
            f"{runs['late_p50_vs_httpx_limiter']}x; ok share vs raw httpx: {runs['ok_share_vs_httpx']}"
        )
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
