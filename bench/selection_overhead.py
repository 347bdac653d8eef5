"""In-process CPU per call of health tracking and selection, over an ``httpx.MockTransport``.

    python bench/selection_overhead.py [--calls 400] [--rounds 15] [--concurrency 4] [--json]

Three routers on the benchmark configuration of ``bench/adapters/llmroute_router.py`` (two
models, one with two deployments), each answering from an in-process ``httpx.MockTransport`` (no
sockets, so the router's own CPU is most of what is measured):

- ``bare``: the router with its health tracker unhooked and rate-limit headers not parsed: what a
  call costs without health bookkeeping (the state before health tracking existed);
- ``health``: the router as shipped (health tracker, circuit breakers, headers parsed);
- ``selection``: the same with a ``selection`` block on the route (objective price + latency), as
  ``bench/adapters/llmroute_selection.py``.

Rounds alternate the variants (rotating which goes first); per variant the figure is the median
over rounds of CPU per call, and the increments are medians of the per-round differences against
``bare`` in the same round. With ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llmroute
from bench.adapters.llmroute_router import config
from llmroute import execute as _execute

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Give me one sentence about the history of the printing press in Europe."},
]

_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Gutenberg's press spread print across Europe."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43},
    }
).encode()


def _handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=_BODY, headers={"content-type": "application/json"})


VARIANTS = ("bare", "health", "selection")


def make_router(variant: str) -> llmroute.Router:
    """The benchmarked router of *variant* (see the module docstring)."""
    cfg = config("http://bench.invalid/v1")
    if variant == "selection":
        cfg["routes"]["default"]["selection"] = {"objective": {"price": 1, "latency": 1}}
    router = llmroute.Router.from_dict(cfg, transport=httpx.MockTransport(_handler))
    if variant == "bare":
        ex = router._executor
        ex.hooks = tuple(h for h in ex.hooks if h is not router._health)
    return router


def _no_headers(headers: Any, *, now: float | None = None) -> None:
    return None


async def run_round(router: llmroute.Router, variant: str, calls: int, concurrency: int) -> float:
    """CPU seconds for *calls* calls at *concurrency*."""
    per_worker = calls // concurrency
    parse = _execute.parse_rate_limit_headers
    if variant == "bare":
        _execute.parse_rate_limit_headers = _no_headers  # type: ignore[assignment]

    async def worker() -> None:
        for _ in range(per_worker):
            reply = await router.complete(MESSAGES)
            _ = reply.usage, reply.cost_usd, reply.text

    try:
        cpu0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.process_time() - cpu0
    finally:
        _execute.parse_rate_limit_headers = parse  # type: ignore[assignment]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    routers = {v: make_router(v) for v in VARIANTS}
    n = (args.calls // args.concurrency) * args.concurrency
    for v, r in routers.items():  # warm up: tokenizers, caches
        await run_round(r, v, max(args.concurrency, n // 2), args.concurrency)
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i in range(args.rounds):
        order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]
        for v in order:
            cpu[v].append(await run_round(routers[v], v, n, args.concurrency) / n * 1e6)
    for r in routers.values():
        await r.aclose()
    out: dict[str, Any] = {
        "calls_per_round": n,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "python": platform.python_version(),
    }
    for v in VARIANTS:
        out[f"cpu_us_per_call_{v}"] = round(statistics.median(cpu[v]), 1)
    for v in ("health", "selection"):
        out[f"added_us_{v}"] = round(statistics.median(c - b for c, b in zip(cpu[v], cpu["bare"])), 1)
        out[f"ratio_{v}_vs_bare"] = round(statistics.median(c / b for c, b in zip(cpu[v], cpu["bare"])), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=400, help="calls per round and variant (default 400)")
    p.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent callers (default 4)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    args = p.parse_args(argv)
    res = asyncio.run(main_async(args))
    print(f"{res['calls_per_round']} calls x {res['rounds']} rounds, concurrency {res['concurrency']} (MockTransport)")
    for v in VARIANTS:
        extra = (
            "" if v == "bare" else f"  (+{res[f'added_us_{v}']:.1f} us, ratio {res[f'ratio_{v}_vs_bare']:.3f} vs bare)"
        )
        print(f"  {v:9s}: {res[f'cpu_us_per_call_{v}']:7.1f} us per call{extra}")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
