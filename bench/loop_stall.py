"""Event-loop stalls: planning huge prompts, warming up the tokenizers, validating a request.

    python bench/loop_stall.py [--rounds 5] [--json]

* ``plan``: milliseconds one ``Router.plan()`` of a 1 MB and a 10 MB prompt (prose, and CJK
  text) holds the loop, against the baseline of counting the same prompt exactly with tiktoken
  (what planning did before counting was bounded), measured in the same run; the ratio is
  plan / exact count (lower is better). Best of ``--rounds``.
* ``warmup``: the longest gap of a 1 ms heartbeat task while ``Router.warmup()`` loads both
  shipped tokenizers in a worker thread, on asyncio and on trio, each in a fresh process (so
  nothing is cached), against the time tiktoken's ``CoreBPE`` constructor for ``o200k_base``
  takes in the same process: the constructor holds the GIL for its whole run, so the stall
  cannot be shorter than it.
* ``validate``: microseconds of :func:`llmroute._request.validate_request` for the 2-message
  request of ``bench/overhead.py``, against a baseline of building the ``ChatRequest`` itself.

With ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "providers": {"oai": {"api": "openai", "api_key": "sk-bench"}},
    "models": {
        "small": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini"}]},
        "big": {"deployments": [{"provider": "oai", "model": "gpt-4o"}], "tokenizer": "cl100k_base"},
    },
    "routes": {"default": {"models": ["small", "big"]}},
}
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Give me one sentence about the history of the printing press in Europe."},
]

_WARMUP_CHILD = r"""
import json, sys, time
import anyio

async def main():
    import llmroute
    from llmroute.testing.loop import LoopStalls

    router = llmroute.Router.from_dict(json.loads(sys.argv[2]))
    async with LoopStalls() as stalls:
        await anyio.sleep(0.02)
        t0 = time.perf_counter()
        await router.warmup()
        warm = time.perf_counter() - t0
        await anyio.sleep(0.02)
    gaps = stalls.gaps
    from llmroute import tokens
    from tiktoken import _tiktoken
    ranks = tokens._load_ranks(tokens._DIR / "o200k_base.tiktoken")
    t0 = time.perf_counter()
    _tiktoken.CoreBPE(ranks, {}, tokens.ENCODINGS["o200k_base"][0])
    ctor = time.perf_counter() - t0
    print(json.dumps({"max_stall_ms": max(gaps) * 1e3, "warmup_ms": warm * 1e3, "ctor_ms": ctor * 1e3}))

anyio.run(main, backend=sys.argv[1])
"""


def _text(kind: str, n: int) -> str:
    cjk = "東京は日本の首都であり、世界最大級の都市圏。"
    seed = (ROOT / "README.md").read_text(encoding="utf-8") if kind == "prose" else cjk
    return (seed * (n // len(seed) + 1))[:n]


def bench_plan(rounds: int) -> dict[str, float]:
    import llmroute
    from llmroute.tokens import get_encoding

    router = llmroute.Router.from_dict(CONFIG)
    encodings = [get_encoding("o200k_base"), get_encoding("cl100k_base")]
    out: dict[str, float] = {}
    for kind in ("prose", "cjk"):
        for mb in (1, 10):
            text = _text(kind, mb * 1_000_000)
            messages = [{"role": "user", "content": text}]
            plan_s = exact_s = float("inf")
            for _ in range(rounds):
                t0 = time.perf_counter()
                router.plan(messages)
                plan_s = min(plan_s, time.perf_counter() - t0)
                t0 = time.perf_counter()
                for enc in encodings:  # the plan counts once per tokenizer of the route
                    enc.encode_ordinary(text)
                exact_s = min(exact_s, time.perf_counter() - t0)
            key = f"{kind}_{mb}mb"
            out[f"plan_ms_{key}"] = plan_s * 1e3
            out[f"exact_count_ms_{key}"] = exact_s * 1e3
            out[f"plan_ratio_vs_exact_{key}"] = plan_s / exact_s
    return out


def bench_warmup() -> dict[str, float]:
    out: dict[str, float] = {}
    for backend in ("asyncio", "trio"):
        proc = subprocess.run(
            [sys.executable, "-c", _WARMUP_CHILD, backend, json.dumps(CONFIG)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        out[f"warmup_max_stall_ms_{backend}"] = res["max_stall_ms"]
        out[f"warmup_ms_{backend}"] = res["warmup_ms"]
        out[f"corebpe_ctor_ms_{backend}_process"] = res["ctor_ms"]
        out[f"warmup_stall_ratio_vs_ctor_{backend}"] = res["max_stall_ms"] / res["ctor_ms"]
    return out


def bench_validate(rounds: int) -> dict[str, float]:
    import timeit

    from llmroute._request import validate_request
    from llmroute.types import ChatRequest

    request = ChatRequest(MESSAGES)
    n = 100_000
    validate = min(timeit.repeat(lambda: validate_request(request), number=n, repeat=rounds)) / n
    build = min(timeit.repeat(lambda: ChatRequest(MESSAGES), number=n, repeat=rounds)) / n
    return {"validate_us": validate * 1e6, "build_request_us": build * 1e6, "validate_ratio_vs_build": validate / build}


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and print them (``--json``: one JSON object on the last line)."""
    ap = argparse.ArgumentParser(prog="python bench/loop_stall.py")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = {**bench_plan(args.rounds), **bench_warmup(), **bench_validate(args.rounds)}
    for key, value in out.items():
        print(f"{key:42s} {value:10.3f}")
    if args.json:
        print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
