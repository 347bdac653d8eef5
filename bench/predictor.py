"""Latency of one prediction (tokenise + features + ONNX) and predictive decisions per second.

    python bench/predictor.py [--iters 2000] [--json]

Measures p50/p99 microseconds per prediction for prompts of about 50, 500 and 5,000 tokens
(interleaved, so every size sees the same machine load), a no-op baseline in the same loop
(the cost of the timing loop itself, for comparison), and decisions per second (prediction +
:func:`llmroute.policy.predictive.choose` over 3 candidates). The ONNX session uses one
intra-op thread; the process is pinned to one core when the OS allows it (``--no-pin`` to
skip). With ``--json`` the last stdout line is one JSON object with ``p50_us_<n>`` and
``p99_us_<n>`` for n in 50/500/5000, ``noop_p50_us``, ``noop_p99_us`` and ``decisions_per_s``.

"With learned state" row: the whole predictive decision (prediction + the route's choice) on
the shipped prior alone (``decide_p50_us`` / ``decide_p99_us``, ``choose`` over 3 candidates)
and with a learned state (``learned_p50_us`` / ``learned_p99_us``: ``Learning.decide`` after
1,000 labels spread over the 3 models, with Thompson-sampling exploration on), interleaved on
the 500-token prompt, with their ratio (``learned_ratio``); and the amortised cost of one label
(``update_us``: ``Learning.learn``, features encoded from the prediction, then the update).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import bench_args, percentile

from llmroute.policy.predictive import PredictiveCandidate, choose
from llmroute.predictor import ModelProfile, Predictor

_TEXT = (
    "the model answers a question about physics chemistry history law and code; compute 17 * 23, "
    "then explain why the integral of x^2 from 0 to 3 equals 9. Which option is correct? "
    "A) photosynthesis B) respiration C) mitosis D) osmosis. def f(x): return x + 1"
)


def make_prompt(tokens: int) -> str:
    """A deterministic prompt of about *tokens* o200k tokens."""
    from llmroute.tokens import get_encoding

    enc = get_encoding("o200k_base")
    vocab = _TEXT.split()
    words: list[str] = []
    i = 0
    text = ""
    while True:
        words.append(vocab[i % len(vocab)])
        i += 1
        if i % 64 == 0:
            text = " ".join(words)
            if len(enc.encode_ordinary(text)) >= tokens:
                break
        if i > tokens * 4 and len(enc.encode_ordinary(" ".join(words))) >= tokens:
            break
    text = " ".join(words)
    ids = enc.encode_ordinary(text)[:tokens]
    return enc.decode(ids)


def _learned_rows(pred: Predictor, models: list, cands: list, prompts: dict, iters: int) -> dict[str, float]:
    """The "with learned state" row (see the module docstring)."""
    from llmroute.config import LearningConfig
    from llmroute.learning import Learning

    learning = Learning(None, config=LearningConfig(explore_share=0.1))
    names = [m.name for m in models]
    words = _TEXT.split()
    teach = [pred.predict(f"{words[i % len(words)]} {i} " + make_prompt(40 + i % 300), models) for i in range(100)]
    clock = time.perf_counter_ns
    t = clock()
    for i in range(1000):
        learning.learn(names[i % 3], teach[i % len(teach)], (i * 7919 % 10) / 10)
    update_us = (clock() - t) / 1e3 / 1000
    msg = prompts[500]
    prior_t: list[float] = []
    learned_t: list[float] = []
    for _ in range(max(200, iters // 2)):
        t = clock()
        choose(pred.predict(msg, models), cands, quality_target=0.8)
        prior_t.append((clock() - t) / 1e3)
        t = clock()
        learning.decide(pred.predict(msg, models), cands, quality_target=0.8)
        learned_t.append((clock() - t) / 1e3)
    p50, base = percentile(learned_t, 0.5), percentile(prior_t, 0.5)
    return {
        "decide_p50_us": round(base, 1),
        "decide_p99_us": round(percentile(prior_t, 0.99), 1),
        "learned_p50_us": round(p50, 1),
        "learned_p99_us": round(percentile(learned_t, 0.99), 1),
        "learned_ratio": round(p50 / base, 3),
        "update_us": round(update_us, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    args = bench_args("python bench/predictor.py", argv)
    pred = Predictor.default()
    models = [
        ModelProfile("small", tier="small"),
        ModelProfile("medium", tier="medium"),
        ModelProfile("large", tier="large"),
    ]
    cands = [
        PredictiveCandidate("small", 0.0001),
        PredictiveCandidate("medium", 0.001),
        PredictiveCandidate("large", 0.01),
    ]
    t0 = time.perf_counter()
    pred.predict("warm up", models)
    first_ms = (time.perf_counter() - t0) * 1e3
    out: dict[str, float] = {"first_call_ms": round(first_ms, 2)}

    def noop(_m: object, _p: object) -> None:
        return None

    prompts = {n: [{"role": "user", "content": make_prompt(n)}] for n in (50, 500, 5000)}
    # the sizes and the no-op baseline are interleaved, so they all see the same machine load
    clock = time.perf_counter_ns
    sizes = list(prompts)
    times: dict[object, list[float]] = {n: [] for n in [*sizes, "noop"]}
    for msg in prompts.values():
        for _ in range(50):
            pred.predict(msg, models)
    for _ in range(args.iters):
        t = clock()
        noop(prompts[500], models)
        times["noop"].append((clock() - t) / 1e3)
        for n in sizes:
            msg = prompts[n]
            t = clock()
            pred.predict(msg, models)
            times[n].append((clock() - t) / 1e3)
    out["noop_p50_us"] = round(percentile(times["noop"], 0.5), 3)
    out["noop_p99_us"] = round(percentile(times["noop"], 0.99), 3)
    for n in sizes:
        out[f"p50_us_{n}"] = round(percentile(times[n], 0.5), 1)
        out[f"p99_us_{n}"] = round(percentile(times[n], 0.99), 1)
    out.update(_learned_rows(pred, models, cands, prompts, args.iters))
    msg = prompts[500]
    k = max(200, args.iters // 2)
    t = time.perf_counter()
    for _ in range(k):
        choose(pred.predict(msg, models), cands, quality_target=0.8)
    out["decisions_per_s"] = round(k / (time.perf_counter() - t), 1)
    if not args.json:
        print(f"first call (session + tokenizer load): {out['first_call_ms']} ms")
        print(f"no-op baseline: p50 {out['noop_p50_us']} us, p99 {out['noop_p99_us']} us")
        for n in (50, 500, 5000):
            print(f"{n:>5}-token prompt: p50 {out[f'p50_us_{n}']:8.1f} us   p99 {out[f'p99_us_{n}']:8.1f} us")
        print(f"decisions/s (predict + choose, 500-token prompt, 3 models): {out['decisions_per_s']}")
        print(
            f"with learned state (500 tokens, 3 models): decision p50 {out['learned_p50_us']} us, "
            f"p99 {out['learned_p99_us']} us; prior only p50 {out['decide_p50_us']} us, p99 {out['decide_p99_us']} us "
            f"(ratio {out['learned_ratio']}); one label {out['update_us']} us amortised"
        )
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
