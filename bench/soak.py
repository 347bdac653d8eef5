"""Fault soak: many routed calls, streamed and not, through a fleet that misbehaves on purpose.

    python bench/soak.py [--calls 20000] [--concurrency 200] [--seed 0] [--backend asyncio] [--json]

The fake fleet (``python -m llmroute.testing``, its own process) serves three providers (OpenAI,
Anthropic, Gemini wire formats) whose requests are struck at random by a mix of faults: 429 with
and without Retry-After, 503, 529, stalls longer than the deadline, connection resets, streams
dropped or broken mid-way, malformed bodies and trickling bodies (4 tokens/s). The router (one
route over the three, 2 attempts per deployment, a 3 s deadline, 100 connections, an in-memory
budget) is driven by *--concurrency* callers: complete (40 %), stream read to the end (35 %),
stream dropped after its first chunk without ``aclose`` (10 %), caller cancelling mid-call (10 %),
stream closed early with ``aclose`` (5 %).

It checks that every call ended exactly once, in a reply or an ``LLMRouteError`` (``lost``: a call
that never ended or ended in an untyped exception; ``duplicated``: one that ended twice), and that
nothing leaked once the calls are done: admission places, transport requests, attempts in flight
(hooks), budget reservations, tasks, and (after ``aclose``) sockets. Memory: resident set size
after the first half of the calls and at the end (``rss_growth_mb``: flat is about 0; the first
half warms caches). This is a correctness bench: its "baseline" is the process's own state before
the calls (tasks, sockets) and after the first half (memory). With ``--json`` the last line is one
JSON object with ``calls``, ``lost``, ``duplicated``, ``leaked``, ``rss_growth_mb`` and the rest.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llmroute

FAULTS = {
    "rate_limit": 0.03,
    "rate_limit_no_header": 0.01,
    "server_error": 0.03,
    "overloaded": 0.01,
    "stall": 0.005,
    "reset": 0.01,
    "drop_stream": 0.02,
    "stream_error": 0.02,
    "malformed": 0.01,
    "trickle": 0.005,
}
KINDS = [("complete", 0.40), ("stream", 0.35), ("abandon", 0.10), ("cancel", 0.10), ("aclose", 0.05)]
PROMPTS = [
    "Give me one sentence about the history of the printing press.",
    "What is 17 times 23? Show your work.",
    "Name three rivers in Africa.",
    "Write a haiku about routers.",
]


def start_fleet(seed: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    spec = [
        {
            "name": name,
            "api": api,
            "ttft_s": 0.005,
            "tokens_per_s": 2000.0,
            "output_tokens": 30,
            "fault_mix": FAULTS,
            "seed": seed + i,
            "record_requests": False,
        }
        for i, (name, api) in enumerate((("oai", "openai"), ("claude", "anthropic"), ("gem", "gemini")))
    ]
    path = Path(tempfile.mkdtemp()) / "fleet.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute.testing", "--port", "0", "--spec", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["providers"]


def config(urls: dict[str, str]) -> dict[str, Any]:
    price = {"input": 1.0, "output": 2.0}
    return {
        "providers": {
            "oai": {"api": "openai", "base_url": urls["oai"], "api_key": "sk-soak"},
            "claude": {"api": "anthropic", "base_url": urls["claude"], "api_key": "sk-soak"},
            "gem": {"api": "gemini", "base_url": urls["gem"], "api_key": "sk-soak"},
        },
        "models": {
            "a": {"deployments": [{"provider": "oai", "model": "soak-a", "price": price}]},
            "b": {"deployments": [{"provider": "claude", "model": "soak-b", "price": price}]},
            "c": {"deployments": [{"provider": "gem", "model": "soak-c", "price": price}]},
        },
        "routes": {"default": {"models": ["a", "b", "c"], "deadline_s": 3.0, "max_output_tokens": 200}},
        "retry": {"attempts": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.1, "jitter_s": 0.01},
        "timeout": {"connect_s": 2.0, "read_s": 2.0},
        "max_connections": 100,
    }


class InFlight(llmroute.Hooks):
    """Attempts started and not finished, per the hooks."""

    def __init__(self) -> None:
        self.open = 0
        self.calls_finished = 0

    def attempt_started(self, attempt: llmroute.Attempt) -> None:
        self.open += 1

    def attempt_finished(self, attempt: llmroute.Attempt, error: BaseException | None) -> None:
        self.open -= 1

    def call_finished(self, trace: Any, reply: Any, error: BaseException | None) -> None:
        self.calls_finished += 1


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def tasks_now() -> int:
    try:
        import asyncio

        return len(asyncio.all_tasks())
    except RuntimeError:  # not asyncio
        return 0


async def soak(urls: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    ended: dict[int, list[str]] = {}
    kinds: Counter[str] = Counter()
    budget = llmroute.MemoryBudget(1e9)
    hooks = InFlight()
    fds0, tasks0 = open_fds(), tasks_now()
    router = llmroute.Router.from_dict(config(urls), budget=budget, hooks=[hooks])
    await router.warmup()

    def end(i: int, outcome: str) -> None:
        ended.setdefault(i, []).append(outcome)

    async def call(i: int, kind: str, prompt: str, cancel_after: float) -> None:
        try:
            if kind == "complete":
                await router.complete(prompt)
                end(i, "reply")
            elif kind == "stream":
                async with router.stream(prompt) as s:
                    async for _ in s:
                        pass
                end(i, "reply" if s.reply is not None else "stream-without-reply")
            elif kind == "abandon":
                s = router.stream(prompt)
                async for _ in s:
                    break
                del s  # dropped without aclose: the loop closes it
                end(i, "abandoned")
            elif kind == "aclose":
                s = router.stream(prompt)
                async for _ in s:
                    break
                await s.aclose()
                end(i, "closed")
            else:
                with anyio.move_on_after(cancel_after) as scope:
                    await router.complete(prompt)
                    end(i, "reply")
                if scope.cancelled_caught:
                    end(i, "cancelled")
        except llmroute.LLMRouteError as exc:
            end(i, type(exc).__name__)
        except BaseException as exc:  # anything else is a defect: counted as lost
            end(i, f"untyped:{type(exc).__name__}")
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise

    plan = []
    for i in range(args.calls):
        kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
        plan.append((i, kind, rng.choice(PROMPTS), rng.uniform(0.0, 0.05)))
        kinds[kind] += 1

    async def run(chunk: list[tuple[int, str, str, float]]) -> None:
        limiter = anyio.Semaphore(args.concurrency)

        async def one(item: tuple[int, str, str, float]) -> None:
            async with limiter:
                await call(*item)

        async with anyio.create_task_group() as tg:
            for item in chunk:
                tg.start_soon(one, item)

    half = len(plan) // 2
    t0, cpu0 = time.perf_counter(), time.process_time()
    await run(plan[:half])
    await anyio.sleep(0.5)
    gc.collect()
    rss_half = rss_mb()
    await run(plan[half:])
    await anyio.sleep(0.5)  # streams dropped at the very end are closed by the loop
    gc.collect()
    rss_end = rss_mb()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    adm = router._executor.admission
    transport = router._client._transport
    leaks = {
        "admission_in_flight": adm.in_flight if adm else 0,
        "admission_waiting": adm.waiting if adm else 0,
        "transport_in_flight": getattr(transport, "in_flight", 0),
        "attempts_in_flight": hooks.open,
        "budget_reservations": budget.open_reservations,
    }
    await router.aclose()
    await anyio.sleep(0.2)
    gc.collect()
    leaks["tasks"] = max(0, tasks_now() - tasks0)
    leaks["sockets"] = max(0, open_fds() - fds0)
    outcomes = Counter(o for outs in ended.values() for o in outs)
    lost = args.calls - len(ended) + sum(n for o, n in outcomes.items() if o.startswith("untyped"))
    return {
        "calls": args.calls,
        "concurrency": args.concurrency,
        "seed": args.seed,
        "backend": args.backend,
        "kinds": dict(kinds),
        "outcomes": dict(outcomes.most_common()),
        "lost": lost,
        "duplicated": sum(1 for outs in ended.values() if len(outs) > 1),
        "leaked": sum(leaks.values()),
        "leaks": leaks,
        "rss_mb_after_half": round(rss_half, 1),
        "rss_mb_end": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_half, 1),
        "wall_s": round(wall, 1),
        "calls_per_s": round(args.calls / wall, 1),
        "cpu_us_per_call": round(cpu / args.calls * 1e6, 1),
        "calls_finished_hooks": hooks.calls_finished,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    fleet, urls = start_fleet(args.seed)
    try:
        res = anyio.run(soak, urls, args, backend=args.backend)
    finally:
        fleet.terminate()
        fleet.wait()
    head = f"{res['calls']} calls, concurrency {res['concurrency']}, {args.backend}, seed {args.seed}"
    print(f"{head}: {res['wall_s']} s")
    print(f"  kinds: {res['kinds']}")
    print(f"  outcomes: {res['outcomes']}")
    print(f"  lost {res['lost']}, duplicated {res['duplicated']}, leaked {res['leaked']} {res['leaks']}")
    print(
        f"  rss {res['rss_mb_after_half']} MB after half, {res['rss_mb_end']} MB at the end "
        f"(growth {res['rss_growth_mb']} MB); {res['calls_per_s']} calls/s, {res['cpu_us_per_call']} us CPU/call"
    )
    if args.json:
        print(json.dumps(res))
    return 0 if res["lost"] == 0 and res["duplicated"] == 0 and res["leaked"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
