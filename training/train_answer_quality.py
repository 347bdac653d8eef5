"""Train the cascade's answer-quality model and write ``models/answer_quality.{onnx,json}`` + its card.

One command, from the repo root::

    python -m training.train_answer_quality [--data ../shared/data] [--out models] [--eval]

What it learns: from one answer (and the question it answers), how likely the answer is right.
Inputs are the 26 features of ``llmroute/_answer.py`` (lengths, the final answer it states and
its kind, arithmetic checked and wrong, hedges, self-corrections, repetition, a cut-off ending,
multiple-choice picks). The model is linear: ``quality = sigmoid(scale * (w . x) + bias)``.

* ``w`` is fitted by **pairwise ranking within a (benchmark, model) group**: logistic loss on
  ``x_right - x_wrong`` over sampled pairs of one model's answers to one benchmark, each
  benchmark weighing the same. Routing needs the *order* of one model's answers on one task,
  not how hard one task is against another, and pairs never compare across groups.
* **Sign constraints** (``SIGNS``): every feature may only count the way it does everywhere
  (a longer answer, a longer question, a wrong equation, a hedge, no final answer: never
  better). In leave-one-benchmark-out runs an unconstrained fit learned relationships that hold
  on competition maths or code reasoning and reversed on grade-school word problems (a worked
  answer showing more equations looked *better*); constrained, the signs transfer.
* ``scale`` and ``bias`` are a 1-D logistic calibration of ``w . x`` to the labels (each
  benchmark weighing the same), so the output reads as a probability of a right answer.

``--eval`` scores it leave-one-benchmark-out (train on all benchmarks but one, score the one
left out): per benchmark the mean within-model AUC for "the answer is right", and APGR of the
cascade's routing score (``1 - quality`` of the weak model's answer) on the weak/strong pairs of
``training/answer_data.py``, beside answer length, prompt length and random.

The data are read in place from ``../shared/data/responses`` and ``../shared/data/routing``
(``routerbench_responses.parquet`` + ``routerbench.parquet``) and never copied.
Deterministic: fixed seed, no threads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmroute import _answer as A  # noqa: E402
from llmroute.eval import _auc, evaluate_pair  # noqa: E402
from training.answer_data import PAIRS, Answers, default_data_dir, load_answers  # noqa: E402

__all__ = ["SIGNS", "fit", "main"]

SEED = 20240601
#: Pairs sampled per (benchmark, model) group.
PAIRS_PER_GROUP = 3000
L2 = 1e-4
NEG, POS, FREE = (-20.0, 0.0), (0.0, 20.0), (-20.0, 20.0)
#: Which way each feature may count (NEG: never makes an answer look better).
SIGNS: dict[str, tuple[float, float]] = {
    "log_chars": NEG,
    "log_lines": NEG,
    "log_prompt_chars": NEG,
    "log_prompt_numbers": NEG,
    "log_len_ratio": NEG,
    "final_explicit": POS,
    "final_conclusion": FREE,
    "final_none": NEG,
    "final_not_integer": NEG,
    "final_negative": NEG,
    "final_copies_prompt": NEG,
    "final_distinct_extra": NEG,
    "log_equations": NEG,
    "equations_wrong_any": NEG,
    "log_equations_wrong": NEG,
    "final_mismatch": NEG,
    "impossible": NEG,
    "uncertain": NEG,
    "approx": NEG,
    "correction": NEG,
    "repeated": NEG,
    "not_ends_cleanly": NEG,
    "coverage_missing": NEG,
    "choice_none": NEG,
    "choice_many": NEG,
    "short_answer": FREE,
}
#: Worked answers (chain of thought) looked at on their own in the card: the closest stand-in
#: for grade-school maths answers in the development data.
WORKED = (
    ("svamp", "gpt-4o-mini-2024-07-18"),
    ("aqua", "gpt-4"),
    ("math_level5", "Meta-Llama-3.1-8B-Instruct"),
    ("math_level5", "gpt-3.5-turbo-0125"),
)


def _bench(a: Answers) -> np.ndarray:
    """Benchmark per row; can-ai-code's two interviews count as one benchmark."""
    b = a.benchmark.astype(object)
    b[np.char.startswith(a.benchmark.astype(str), "can_ai_code")] = "can_ai_code"
    return b.astype(str)


def _groups(a: Answers, bench: np.ndarray) -> np.ndarray:
    """Group per row: (benchmark, model); can-ai-code's 600 models of 28 answers form one group."""
    return np.array([b if b == "can_ai_code" else f"{b}|{m}" for b, m in zip(bench, a.model)])


def _pairs(X: np.ndarray, y: np.ndarray, groups: np.ndarray, bench: np.ndarray, rng: np.random.Generator):
    """Difference vectors ``x_right - x_wrong`` within groups, with weights (benchmarks equal)."""
    by_bench: dict[str, list[str]] = {}
    for g in np.unique(groups):
        by_bench.setdefault(g.split("|")[0], []).append(g)
    diffs, weights = [], []
    for b in sorted(by_bench):
        gs = by_bench[b]
        for g in sorted(gs):
            idx = np.flatnonzero(groups == g)
            good, bad = idx[y[idx] >= 0.5], idx[y[idx] < 0.5]
            if not len(good) or not len(bad):
                continue
            k = min(PAIRS_PER_GROUP, len(good) * len(bad))
            i, j = rng.choice(good, k), rng.choice(bad, k)
            diffs.append(X[i] - X[j])
            weights.append(np.full(k, 1.0 / len(by_bench) / len(gs) / k))
    d = np.vstack(diffs)
    w = np.concatenate(weights)
    return d, w / w.sum()


def fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray, bench: np.ndarray) -> np.ndarray:
    """The sign-constrained pairwise-ranking weights ``w`` (see the module docstring)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(SEED)
    d, w = _pairs(X, y, groups, bench, rng)

    def loss(p: np.ndarray) -> tuple[float, np.ndarray]:
        z = d @ p
        sig = 1.0 / (1.0 + np.exp(-z))
        return float((w * np.logaddexp(0.0, -z)).sum() + L2 * p @ p), d.T @ (w * (sig - 1.0)) + 2 * L2 * p

    bounds = [SIGNS[f] for f in A.FEATURE_NAMES]
    res = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds)
    return res.x


def calibrate(s: np.ndarray, y: np.ndarray, bench: np.ndarray) -> tuple[float, float]:
    """``(scale, bias)`` of ``sigmoid(scale * s + bias)`` fitted to the labels, benchmarks equal."""
    from scipy.optimize import minimize

    w = np.zeros(len(s))
    names = np.unique(bench)
    for b in names:
        m = bench == b
        w[m] = 1.0 / len(names) / m.sum()

    def loss(p: np.ndarray) -> tuple[float, np.ndarray]:
        z = p[0] * s + p[1]
        sig = 1.0 / (1.0 + np.exp(-z))
        r = w * (sig - y)
        return float((w * (np.logaddexp(0.0, z) - y * z)).sum()), np.array([(r * s).sum(), r.sum()])

    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(1e-3, 50.0), (-50.0, 50.0)])
    return float(res.x[0]), float(res.x[1])


# --------------------------------------------------------------------------------- evaluation


def _pair_rows(a: Answers, bench_name: str, weak: str, strong: str) -> tuple[list[int], list[int]]:
    mw = np.flatnonzero((a.benchmark == bench_name) & (a.model == weak))
    ms = np.flatnonzero((a.benchmark == bench_name) & (a.model == strong))
    sw = dict(zip(a.prompt_id[mw], mw))
    ss = dict(zip(a.prompt_id[ms], ms))
    common = sorted(set(sw) & set(ss))
    return [sw[p] for p in common], [ss[p] for p in common]


class _FoldModel:
    """A fold's model with the ``try_score`` of ``llmroute.quality.AnswerQuality`` (for the checks)."""

    def __init__(self, w: np.ndarray, scale: float, bias: float) -> None:
        self.w, self.scale, self.bias = w, scale, bias

    def try_score(self, features) -> float:
        z = self.scale * float(np.dot(self.w, features)) + self.bias
        return float(1.0 / (1.0 + np.exp(-z)))


def _judged(a: Answers, rows: list[int], model: _FoldModel) -> list[float]:
    """The default checks' escalation score ``1 - verdict.score`` of answers *rows*, with *model* as confidence."""
    from llmroute import checks as C

    spec = [C.confidence(model) if name == "confidence" else name for name in C.DEFAULT_CHECKS]
    return [1.0 - C.judge(C.Answer(a.response[i], prompt=a.prompt[i]), spec).score for i in rows]


def lobo(a: Answers) -> dict:
    """Leave-one-benchmark-out AUC and pair APGR (see the module docstring)."""
    bench = _bench(a)
    groups = _groups(a, bench)
    out: dict = {"benchmarks": {}, "worked": {}}
    for held in sorted(np.unique(bench)):
        train = bench != held
        w = fit(a.X[train], a.score[train], groups[train], bench[train])
        fold = _FoldModel(w, *calibrate(a.X[train] @ w, a.score[train], bench[train]))
        s = a.X @ w
        test = bench == held
        aucs = []
        for m in np.unique(a.model[test]):
            mm = test & (a.model == m)
            if mm.sum() >= 20:
                v = _auc(s[mm].tolist(), (a.score[mm] >= 0.5).tolist())
                if v is not None:
                    aucs.append(v)
        pairs = []
        for pb, weak, strong in PAIRS:
            if pb != held and not (held == "can_ai_code" and pb.startswith("can_ai_code")):
                continue
            wi, si = _pair_rows(a, pb, weak, strong)
            if not wi:
                continue
            st, wk = a.score[si].tolist(), a.score[wi].tolist()
            cas = evaluate_pair(_judged(a, wi, fold), st, wk)
            mod = evaluate_pair((-s[wi]).tolist(), st, wk)
            alen = evaluate_pair([float(len(a.response[i])) for i in wi], st, wk)
            plen = evaluate_pair([float(len(a.prompt[i])) for i in wi], st, wk)
            pairs.append(
                {
                    "weak": weak,
                    "strong": strong,
                    "n": cas.n,
                    "cascade": cas.apgr,
                    "model_only": mod.apgr,
                    "answer_length": alen.apgr,
                    "prompt_length": plen.apgr,
                    "oracle": cas.oracle_apgr,
                }
            )
        out["benchmarks"][held] = {"auc": float(np.mean(aucs)) if aucs else None, "pairs": pairs}
        for gb, gm in WORKED:
            mm = test & (a.benchmark == gb) & (a.model == gm)
            if mm.any():
                y = (a.score[mm] >= 0.5).tolist()
                rows = list(np.flatnonzero(mm))
                perfect = [1.0] * len(rows)  # a strong model that is always right: the gap is the weak errors
                worked_apgr = evaluate_pair(_judged(a, rows, fold), perfect, a.score[rows].tolist()).apgr
                length_apgr = evaluate_pair(
                    [float(len(a.response[i])) for i in rows], perfect, a.score[rows].tolist()
                ).apgr
                out["worked"][f"{gb} / {gm}"] = {
                    "n": int(mm.sum()),
                    "wrong": float(1.0 - np.mean(y)),
                    "auc": _auc(s[mm].tolist(), y),
                    "apgr_vs_perfect": worked_apgr,
                    "length_apgr_vs_perfect": length_apgr,
                    "answer_length_auc": _auc(
                        (-np.array([len(a.response[i]) for i in np.flatnonzero(mm)])).tolist(), y
                    ),
                }
    apgrs = [p["cascade"] for b in out["benchmarks"].values() for p in b["pairs"]]
    alens = [p["answer_length"] for b in out["benchmarks"].values() for p in b["pairs"]]
    plens = [p["prompt_length"] for b in out["benchmarks"].values() for p in b["pairs"]]
    model_only = [p["model_only"] for b in out["benchmarks"].values() for p in b["pairs"]]
    out["mean"] = {
        "cascade": float(np.mean(apgrs)),
        "model_only": float(np.mean(model_only)),
        "answer_length": float(np.mean(alens)),
        "prompt_length": float(np.mean(plens)),
    }
    return out


# --------------------------------------------------------------------------------- export


def export(w: np.ndarray, scale: float, bias: float, out_dir: Path, metrics: dict | None, n_rows: int) -> Path:
    """Write ``answer_quality.onnx`` (features -> quality) and its ``answer_quality.json`` sidecar."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    coef = (w * scale).astype(f32).reshape(-1, 1)
    init = [numpy_helper.from_array(coef, "coef"), numpy_helper.from_array(np.array([bias], f32), "bias")]
    nodes = [
        helper.make_node("MatMul", ["features", "coef"], ["lin"]),
        helper.make_node("Add", ["lin", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["quality"]),
    ]
    graph = helper.make_graph(
        nodes,
        "answer_quality",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, len(w)])],
        [
            helper.make_tensor_value_info("quality", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, [None, 1]),
        ],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="llmroute-training")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "answer_quality.onnx"
    data = model.SerializeToString()
    path.write_bytes(data)
    sidecar = {
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "features": {"version": A.FEATURE_VERSION, "names": list(A.FEATURE_NAMES)},
        "weights": {name: float(x) for name, x in zip(A.FEATURE_NAMES, w)},
        "scale": scale,
        "bias": bias,
        "training": {"rows": n_rows, "seed": SEED, "pairs_per_group": PAIRS_PER_GROUP, "l2": L2},
        "metrics": metrics or {},
    }
    (out_dir / "answer_quality.json").write_text(json.dumps(sidecar, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def card(metrics: dict, w: np.ndarray, n_rows: int) -> str:
    """The model card's markdown (every number from this run)."""
    lines = [
        "# Model card: llmroute answer-quality model (`models/answer_quality.onnx`)",
        "",
        "Generated by `python -m training.train_answer_quality --eval`; every number below comes from that command.",
        "",
        "## What it is",
        "",
        "The confidence check of llmroute's `cascade` routes when the provider returns no token",
        "log-probabilities: from one answer and the question it answers, the probability that the answer",
        "is right. Input: the 26 features of `llmroute/_answer.py` (answer and question lengths, the final",
        "answer the text states and its kind, arithmetic shown and wrong, hedges, self-corrections,",
        "repetition, a cut-off ending, the options a multiple-choice answer picks). Linear:",
        "`quality = sigmoid(scale * (w . x) + bias)`; the ONNX graph is one MatMul, Add and Sigmoid.",
        "",
        "## Training",
        "",
        f"- Data ({n_rows:,} recorded answers, read in place, never copied): `../shared/data/responses/`",
        "  (MATH level 5, CRUXEval-O, SVAMP, AQuA, CommonsenseQA, can-ai-code) and",
        "  `../shared/data/routing/routerbench_responses.parquet` (ARC-Challenge, WinoGrande, MBPP).",
        "- Objective: pairwise ranking (logistic on `x_right - x_wrong`) within each (benchmark, model)",
        "  group, each benchmark weighing the same; features constrained to count one way only (a longer",
        "  answer, a wrong equation, a hedge, no final answer never look better); then a 1-D calibration.",
        "- Deterministic (seed {SEED}); about a minute on one core.".replace("{SEED}", str(SEED)),
        "",
        "## Weights (w, before the calibration scale)",
        "",
        "| feature | weight |",
        "|---|---|",
    ]
    lines += [f"| `{n}` | {x:+.3f} |" for n, x in zip(A.FEATURE_NAMES, w)]
    if metrics:
        lines += [
            "",
            "## Leave-one-benchmark-out (trained without the benchmark it is scored on)",
            "",
            'AUC: mean over the benchmark\'s models of the ROC AUC of the quality for "the answer is right".',
            "APGR: as a strong/weak router (random 0.5), the default cascade checks (`1 - verdict.score` of",
            "the weak model's answer, this fold's model as their confidence), the fold's model alone, the weak",
            "answer's length and the prompt's length.",
            "",
            "| benchmark | AUC | weak -> strong | n | cascade checks | model only | answer length | prompt length "
            "| oracle |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for b, res in metrics["benchmarks"].items():
            auc = "-" if res["auc"] is None else f"{res['auc']:.3f}"
            if not res["pairs"]:
                lines.append(f"| {b} | {auc} | - | - | - | - | - | - | - |")
            for i, p in enumerate(res["pairs"]):
                lines.append(
                    f"| {b if i == 0 else ''} | {auc if i == 0 else ''} | {p['weak']} -> {p['strong']} | {p['n']} | "
                    f"{p['cascade']:.3f} | {p['model_only']:.3f} | {p['answer_length']:.3f} | "
                    f"{p['prompt_length']:.3f} | {p['oracle']:.3f} |"
                )
        m = metrics["mean"]
        lines += [
            "",
            f"Mean APGR over the {sum(len(r['pairs']) for r in metrics['benchmarks'].values())} pairs: cascade checks "
            f"{m['cascade']:.3f}, model only {m['model_only']:.3f}, answer length {m['answer_length']:.3f}, "
            f"prompt length {m['prompt_length']:.3f}.",
            "",
            "Worked (chain-of-thought) answers, the closest stand-in here for grade-school maths: AUC of the",
            'quality for "right" (the model trained without that benchmark) against the answer\'s length alone,',
            "and APGR of the default checks (and of answer length) against a strong model that is always right,",
            "so that the gap is exactly the weak answers' errors (as with a strong model near 95 % on the task).",
            "",
            "| answers | n | wrong | AUC | answer length AUC | APGR vs perfect strong | length APGR |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, v in metrics["worked"].items():
            lines.append(
                f"| {k} | {v['n']} | {v['wrong']:.3f} | {v['auc']:.3f} | {v['answer_length_auc']:.3f} | "
                f"{v['apgr_vs_perfect']:.3f} | {v['length_apgr_vs_perfect']:.3f} |"
            )
    lines += [
        "",
        "## Limits",
        "",
        "- Answer length and question length carry much of the signal: on tasks whose answers are one",
        "  letter (ARC, WinoGrande with letter-only prompts) the model can only rank by the question and",
        "  is close to random. Token log-probabilities, where the provider returns them, replace it.",
        "- The labels are whether the *weak* answer was right; escalating a prompt both models fail",
        "  gains nothing, and the model cannot tell those apart (compare AUC with APGR above).",
        "- Trained on English benchmark answers; chat and open-ended writing were not in the data.",
        "- Licences of the data: see `../shared/data/README.md` (RouterBench labels: research data with",
        "  an unstated licence).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train, optionally evaluate, and write the model files."""
    ap = argparse.ArgumentParser(prog="python -m training.train_answer_quality", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=default_data_dir(), help="the shared data folder (default ../shared/data)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "models")
    ap.add_argument("--eval", action="store_true", help="leave-one-benchmark-out evaluation, written into the card")
    ap.add_argument("--cache", type=Path, default=None, help="an .npz to cache the features in")
    args = ap.parse_args(argv)
    a = load_answers(args.data, args.cache)
    bench = _bench(a)
    groups = _groups(a, bench)
    metrics = lobo(a) if args.eval else None
    w = fit(a.X, a.score, groups, bench)
    scale, bias = calibrate(a.X @ w, a.score, bench)
    export(w, scale, bias, args.out, metrics, len(a.score))
    if metrics is not None:
        (args.out / "ANSWER_QUALITY_CARD.md").write_text(card(metrics, w, len(a.score)), encoding="utf-8")
        print(json.dumps(metrics["mean"]))
    print(f"wrote {args.out / 'answer_quality.onnx'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
