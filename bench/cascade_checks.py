"""Per-answer cost of the cascade's default checks on a 1,000-token answer.

    python bench/cascade_checks.py [--iters 2000] [--json] [--no-pin]

Times ``judge(Answer(text, prompt=question))`` with ``llmroute.checks.DEFAULT_CHECKS`` (every
built-in check, the answer-quality model included; a fresh ``Answer`` each time, so nothing is
cached between iterations) on four deterministic answers of exactly 1,000 ``o200k_base``
tokens: a worked maths answer (numbered steps, LaTeX, equations, a boxed result), a prose answer,
a code answer (a fenced Python block, shape-checked by the code check) and the prose answer with
typographic punctuation (’ — “ ”, as models write it: a text that is not ASCII takes other,
slower paths in Python's string methods). Baseline, measured in the
same interleaved loop: ``json.loads`` of the provider's JSON body carrying the same answer
(what receiving the answer costs anyway). Also reported: the answer-quality model's ONNX run
alone. Target: p99 <= 200 us. The process is pinned to one core when the OS allows it.

With ``--json`` the last stdout line is one JSON object: ``p50_us_<kind>``, ``p99_us_<kind>``
(kind in math, prose, code, unicode), ``baseline_p50_us_<kind>``, ``baseline_p99_us_<kind>``,
``ratio_p50_<kind>`` / ``ratio_p99_<kind>`` (checks / baseline), ``model_p50_us``,
``model_p99_us``, ``p99_us_max`` and ``target_p99_us``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import bench_args, percentile

from llmroute import _answer
from llmroute.checks import Answer, judge
from llmroute.quality import AnswerQuality

QUESTION = (
    "A bakery sells 48 muffins in the morning and 3/4 as many in the afternoon. Each muffin costs $2.50, and "
    "the bakery spends $35 on ingredients every day. How much profit does the bakery make in one week?"
)
MATH_STEP = (
    "{i}. **Afternoon sales**: the bakery sells \\( \\frac{{3}}{{4}} \\times 48 = 36 \\) muffins.\n"
    "   So the day's total is\n   \\[\n   48 + 36 = 84\n   \\]\n"
    "   The revenue is \\( 84 \\times 2.50 = 210 \\) dollars, and after the ingredients\n"
    "   \\[\n   210 - 35 = 175\n   \\]\n   dollars of profit per day; over a week that is 175 * 7 = 1,225 dollars.\n\n"
)
MATH_END = "\nTherefore, the bakery makes \\(\\boxed{1225}\\) dollars of profit in one week."
PROSE_STEP = (
    "The question asks about a small business, so it helps to separate what happens in one day from what "
    "happens over the week. In the morning the shop sells its first batch, later it sells a smaller share, "
    "and its costs stay the same whatever the sales. Keeping those parts apart makes the reasoning easy "
    "to check, and it shows where a mistake could creep in if the numbers were rounded too early. "
)
PROSE_END = "\nIn short, the weekly profit is the daily profit times seven."
UNICODE_STEP = (
    "The question asks about a small business, so it helps to separate what happens in one day from what "
    "happens over the week — in the morning the shop sells its first batch, later it sells a smaller share, "
    "and its costs stay the same whatever the sales. Keeping those parts apart makes the reasoning easy "
    "to check: it shows where a mistake could creep in if the numbers were “rounded too early”. "
)
UNICODE_END = "\nIn short, the week’s profit is the day’s profit times seven."
CODE_HEAD = "Here is a function that computes it, with a few checks:\n\n```python\n"
CODE_STEP = (
    "def profit_{i}(morning: int = 48, share: float = 0.75, price: float = 2.5, cost: float = 35.0) -> float:\n"
    '    """Weekly profit of the bakery (variant {i})."""\n'
    "    afternoon = int(morning * share)\n"
    "    daily = (morning + afternoon) * price - cost\n"
    "    return daily * 7\n\n"
)
CODE_END = "\nCalling `profit_0()` returns 1225.0."


def _exactly(head: str, step: str, close: str, end: str, tokens: int) -> str:
    """*head* + whole repeats of *step* + *close* + filler words + *end*: exactly *tokens* o200k tokens.

    Steps are never cut (a code answer stays valid Python); the filler is plain words before *end*.
    """
    from llmroute.tokens import get_encoding

    enc = get_encoding("o200k_base")

    def n(text: str) -> int:
        return len(enc.encode_ordinary(text))

    body, i = head, 0
    while n(body + step.format(i=i) + close + end) <= tokens:
        body += step.format(i=i)
        i += 1
    body += close
    filler = "To sum up the steps above in plain words before the result follows."
    words = filler.split(" ")
    k = 0
    while n(body + end) < tokens:
        body += (" " if k else "") + words[k % len(words)]
        k += 1
    text = body + end
    while n(text) > tokens:  # a merged token: drop one filler word
        body = body.rsplit(" ", 1)[0]
        text = body + end
    return text


def answers(tokens: int = 1000) -> dict[str, str]:
    """The four deterministic answers of *tokens* tokens."""
    return {
        "math": _exactly("Let's work it out step by step.\n\n", MATH_STEP, "\n", MATH_END, tokens),
        "prose": _exactly("", PROSE_STEP, "\n", PROSE_END, tokens),
        "code": _exactly(CODE_HEAD, CODE_STEP, "```\n\n", CODE_END, tokens),
        "unicode": _exactly("", UNICODE_STEP, "\n", UNICODE_END, tokens),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    args = bench_args("python bench/cascade_checks.py", argv)
    texts = answers()
    bodies = {
        k: json.dumps({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": t}}]})
        for k, t in texts.items()
    }
    model = AnswerQuality.default()
    feats = _answer.features(_answer.analyse(texts["math"], QUESTION))
    for t in texts.values():  # warm-up: session, regex caches
        for _ in range(50):
            judge(Answer(t, prompt=QUESTION))
    clock = time.perf_counter_ns
    times: dict[str, list[float]] = {}
    for k in texts:
        times[k] = []
        times["baseline_" + k] = []
    times["model"] = []
    loads = json.loads
    for _ in range(args.iters):
        for k, t in texts.items():
            body = bodies[k]
            s = clock()
            loads(body)
            times["baseline_" + k].append((clock() - s) / 1e3)
            s = clock()
            judge(Answer(t, prompt=QUESTION))
            times[k].append((clock() - s) / 1e3)
        s = clock()
        model.score(feats)
        times["model"].append((clock() - s) / 1e3)
    out: dict[str, float] = {"target_p99_us": 200.0, "tokens": 1000.0}
    for k in texts:
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            v, b = percentile(times[k], q), percentile(times["baseline_" + k], q)
            out[f"{name}_us_{k}"] = round(v, 1)
            out[f"baseline_{name}_us_{k}"] = round(b, 2)
            out[f"ratio_{name}_{k}"] = round(v / b, 1) if b else float("inf")
    out["model_p50_us"] = round(percentile(times["model"], 0.5), 1)
    out["model_p99_us"] = round(percentile(times["model"], 0.99), 1)
    out["p99_us_max"] = max(out[f"p99_us_{k}"] for k in texts)
    if not args.json:
        print(
            f"default checks on a 1,000-token answer, {args.iters} iterations each (baseline: json.loads of the body)"
        )
        for k in texts:
            print(
                f"{k:>7}: p50 {out[f'p50_us_{k}']:7.1f} us  p99 {out[f'p99_us_{k}']:7.1f} us   |   baseline p50 "
                f"{out[f'baseline_p50_us_{k}']:6.2f} us  p99 {out[f'baseline_p99_us_{k}']:6.2f} us   |   ratio p50 "
                f"{out[f'ratio_p50_{k}']}x  p99 {out[f'ratio_p99_{k}']}x"
            )
        print(f"answer-quality model alone: p50 {out['model_p50_us']} us, p99 {out['model_p99_us']} us")
        verdict = "met" if out["p99_us_max"] <= out["target_p99_us"] else "MISSED"
        print(f"worst p99 {out['p99_us_max']} us, target {out['target_p99_us']:.0f} us: {verdict}")
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
