"""A fleet of workers racing for one Redis budget: never overspent, used to the end, nothing leaked.

    python bench/budget_race.py [--calls 10000] [--processes 4] [--concurrency 200] [--json]

Starts a ``redis-server`` of its own (Debian: ``apt-get install redis-server``) and the fake provider
fleet in its own process (``python -m llmroute.testing``: three providers, one per wire format,
replies of random length, 1 to 600 words, cut at the ``max_tokens`` sent), then *processes* worker
processes, each with *concurrency* tasks, share *calls* routed calls. Every worker's router has the
same config: one global budget in Redis, a route of three models with ``on_budget_exceeded:
wait`` (a call refused while other calls' holds are open waits for them to settle; one refused for
good, when what is spent leaves less than its worst case, fails at once). The budget is sized to run
out at about 60 % of the calls, so the rest race a nearly spent budget.

Reported (from the fleet's own counters, i.e. what the providers would bill, and from Redis):

* ``overspend_usd``: what the providers billed beyond the limit (must be 0);
* ``budget_used_frac``: what the providers billed / the limit, at the end (calls keep being refused
  only once less than one call's worst case is left);
* ``used_frac_at_first_refusal``: what Redis counted as spent (settled) when the first call was
  refused;
* ``leaked_reservations``: holds left open in Redis after every worker has finished (must be 0);
* ``metered_frac``: what Redis counted as spent / what the providers billed (>= 1: nothing unmetered);
* ``redis_reserve_settle_ms``: the Redis overhead of one call that is let through, one reserve plus
  one settle on an idle connection (median of 500); ``redis_op_p50_ms_loaded``: the median time a
  worker awaited one Redis operation during the race (queueing on its busy event loop and for a
  pooled connection included); ``redis_ops_per_call``: operations per call (reserve, settle, and
  the reserves of calls waiting for the budget);
* ``wall_ratio_vs_memory``: the run's wall time against the same run with an in-process budget per
  worker (a quarter of the limit each), measured in the same invocation (the baseline).

With ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PRICES = {"openai": (2.0, 8.0), "anthropic": (1.0, 5.0), "gemini": (0.3, 2.5)}  # USD per million tokens
MAX_TOKENS = 400
MSG = [{"role": "user", "content": "Write about the sea, as long as you like."}]


def start_fleet(tmp: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    spec = [
        {"name": api, "api": api, "output_tokens": 1, "output_tokens_max": 600, "seed": i, "record_requests": False}
        for i, api in enumerate(PRICES)
    ]
    path = os.path.join(tmp, "fleet.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute.testing", "--spec", path, "--no-record"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["providers"]


def stop_fleet(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Stop the fleet and return what each provider served and would bill."""
    proc.terminate()
    assert proc.stdout is not None
    out, _ = proc.communicate(timeout=30)
    return json.loads(out.strip().splitlines()[-1])["providers"]


def billed_usd(report: dict[str, Any]) -> float:
    return sum(
        (report[n]["billed_input_tokens"] * i + report[n]["billed_output_tokens"] * o) / 1e6
        for n, (i, o) in PRICES.items()
    )


def router_config(urls: dict[str, str], limit: float, store: dict[str, Any]) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    for name in PRICES:
        providers[name] = {"api": name, "base_url": urls[name], "api_key": "sk-bench"}
        if name == "anthropic":
            providers[name]["api_version"] = "2023-06-01"
    return {
        "providers": providers,
        "models": {
            name: {"deployments": [{"provider": name, "model": f"{name}-m", "price": {"input": i, "output": o}}]}
            for name, (i, o) in PRICES.items()
        },
        "routes": {
            "default": {
                "models": list(PRICES),
                "max_output_tokens": MAX_TOKENS,
                "on_budget_exceeded": "wait",
                "deadline_s": 60,
            }
        },
        "retry": {"attempts": 1},
        "max_connections": 64,
        "budgets": [{"scope": "global", "limit_usd": limit}],
        "store": store,
    }


class TimedStore:
    """Wraps a store and times its budget round trips (reserve, settle)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.samples: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def reserve(self, *args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return await self.inner.reserve(*args, **kw)
        finally:
            self.samples.append(time.perf_counter() - t)

    async def settle(self, *args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return await self.inner.settle(*args, **kw)
        finally:
            self.samples.append(time.perf_counter() - t)


def worker(cfg: dict[str, Any], calls: int, concurrency: int, start_at: float) -> dict[str, Any]:
    """One worker process: *calls* calls by *concurrency* tasks on one router."""
    import anyio

    import llmroute
    from llmroute.stores import from_url

    async def main() -> dict[str, Any]:
        sc = cfg["store"]
        timed = TimedStore(from_url(sc["url"], prefix=sc.get("prefix", "llmroute"), timeout_s=sc["timeout_s"]))
        outcomes: dict[str, int] = {}
        first_refusal: list[float] = []
        async with llmroute.Router.from_dict(cfg, store=timed) as router:  # type: ignore[arg-type]
            await router.warmup()
            await anyio.sleep(max(0.0, start_at - time.time()))
            t0 = time.perf_counter()
            left = iter(range(calls))

            async def task() -> None:
                for _ in left:
                    try:
                        await router.complete(MSG)
                        key = "ok"
                    except llmroute.BudgetExceededError as exc:
                        key = "unavailable" if "unavailable" in str(exc) else "refused"
                        if key == "refused" and not first_refusal:
                            first_refusal.append(0.0)  # placeholder: read the spend right away
                            spent, _ = await router.budget.usage("global/total")  # type: ignore[union-attr]
                            first_refusal[0] = spent
                    except llmroute.LLMRouteError as exc:
                        key = type(exc).__name__
                    outcomes[key] = outcomes.get(key, 0) + 1

            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(task)
            wall = time.perf_counter() - t0
        await timed.inner.aclose()
        return {
            "outcomes": outcomes,
            "wall_s": wall,
            "round_trips": len(timed.samples),
            "rt_p50_ms": 1000 * statistics.median(timed.samples) if timed.samples else 0.0,
            "spent_at_first_refusal": first_refusal[0] if first_refusal else None,
        }

    return asyncio.run(main())


def race(urls: dict[str, str], store: dict[str, Any], limit: float, args: argparse.Namespace) -> dict[str, Any]:
    """Run the workers at once; their results merged."""
    cfg = router_config(urls, limit, store)
    per = [args.calls // args.processes + (1 if i < args.calls % args.processes else 0) for i in range(args.processes)]
    start_at = time.time() + 3.0  # after every worker has loaded its tokenizers
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.processes, mp_context=ctx) as pool:
        futures = [pool.submit(worker, cfg, n, args.concurrency, start_at) for n in per]
        results = [f.result() for f in futures]
    outcomes: dict[str, int] = {}
    for r in results:
        for k, v in r["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
    firsts = [r["spent_at_first_refusal"] for r in results if r["spent_at_first_refusal"] is not None]
    return {
        "outcomes": outcomes,
        "wall_s": max(r["wall_s"] for r in results),
        "round_trips": sum(r["round_trips"] for r in results),
        "rt_p50_ms": statistics.median(r["rt_p50_ms"] for r in results),
        "spent_at_first_refusal": min(firsts) if firsts else None,
    }


async def idle_round_trip(url: str, n: int = 500) -> float:
    """Median milliseconds of one reserve plus one settle, one at a time, on an idle Redis."""
    from llmroute.stores import Counter
    from llmroute.stores.redis import RedisStore

    store = RedisStore(url, prefix=f"idle{uuid.uuid4().hex[:6]}", timeout_s=5.0)
    counters = [Counter("b:global%2Ftotal::total", 10**15)]
    samples = []
    try:
        for i in range(n):
            t = time.perf_counter()
            await store.reserve(f"h{i}", 1000, counters, now=time.time(), hold_ttl_s=600)
            await store.settle(f"h{i}", 500, now=time.time())
            samples.append(time.perf_counter() - t)
    finally:
        await store.aclose()
    return 1000 * statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--limit-usd", type=float, default=None, help="default: about 60%% of the calls' cost")
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-process-budget baseline run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from llmroute.stores.redis import RedisStore
    from llmroute.testing.redis_server import RedisServer

    # average cost of a call: ~15 input tokens, ~(1 + 400) / 2 output words, at the route's first model
    i, o = PRICES["openai"]
    limit = args.limit_usd or round(0.6 * args.calls * (15 * i + 200 * o) / 1e6, 4)
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as server:
        baseline = None
        if not args.no_baseline:
            proc, urls = start_fleet(tmp)
            baseline = race(urls, {"url": "memory://", "timeout_s": 5.0}, limit / args.processes, args)
            stop_fleet(proc)
        proc, urls = start_fleet(tmp)
        prefix = f"race{uuid.uuid4().hex[:6]}"
        run = race(urls, {"url": server.url, "prefix": prefix, "timeout_s": 5.0}, limit, args)
        report = stop_fleet(proc)

        async def final() -> tuple[int, int, int]:
            store = RedisStore(server.url, prefix=prefix, timeout_s=5.0)
            try:
                spent, held = await store.counter("b:global%2Ftotal::total")
                return await store.open_holds(), spent, held
            finally:
                await store.aclose()

        leaked, spent_units, held_units = asyncio.run(final())
        idle_ms = asyncio.run(idle_round_trip(server.url))
    billed = billed_usd(report)
    spent = spent_units * 1e-9
    result = {
        "calls": sum(run["outcomes"].values()),
        "processes": args.processes,
        "concurrency": args.concurrency,
        "limit_usd": limit,
        "billed_usd": round(billed, 6),
        "overspend_usd": round(max(0.0, billed - limit), 9),
        "budget_used_frac": round(billed / limit, 4),
        "used_frac_at_first_refusal": (
            round(run["spent_at_first_refusal"] / limit, 4) if run["spent_at_first_refusal"] is not None else None
        ),
        "metered_frac": round(spent / billed, 6) if billed else None,
        "leaked_reservations": leaked,
        "held_usd_after": held_units * 1e-9,
        "outcomes": run["outcomes"],
        "served": sum(p["served"] for p in report.values()),
        "redis_ops_per_call": round(run["round_trips"] / max(1, sum(run["outcomes"].values())), 3),
        "redis_reserve_settle_ms": round(idle_ms, 3),
        "redis_op_p50_ms_loaded": round(run["rt_p50_ms"], 3),
        "wall_s": round(run["wall_s"], 2),
        "baseline_wall_s": round(baseline["wall_s"], 2) if baseline else None,
        "wall_ratio_vs_memory": round(run["wall_s"] / baseline["wall_s"], 3) if baseline else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(
        f"{result['calls']} calls, {args.processes} processes x {args.concurrency} tasks, one Redis budget of "
        f"${limit:.4f}: providers billed ${billed:.6f} (overspend ${result['overspend_usd']:.6f}, "
        f"{100 * result['budget_used_frac']:.2f}% used), {leaked} leaked holds, outcomes {run['outcomes']}; "
        f"Redis: {result['redis_reserve_settle_ms']} ms for a reserve + settle on an idle connection, "
        f"{result['redis_op_p50_ms_loaded']} ms per operation (p50) under the race's load; "
        f"wall {result['wall_s']} s vs {result['baseline_wall_s']} s with in-process budgets "
        f"(ratio {result['wall_ratio_vs_memory']})"
    )
    if args.json:
        print(json.dumps(result))
    ok = result["overspend_usd"] == 0 and leaked == 0 and result["budget_used_frac"] >= 0.98
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
