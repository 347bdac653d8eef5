"""Experiment: learning curves of the online learner on tasks the shipped prior never saw.

Each view fits the prior *without* the prompts it is then scored on, exports that predictor
(``predictor.onnx`` + sidecar) beside the held-out prompts (``heldout.csv.gz``), and runs the
``python -m llmroute.eval --learn N --observe both|routed`` simulation (the same functions,
``llmroute._learn_eval.learn_pair`` / ``learn_pool``) for N = 100 / 300 / 1,000 over seeds 0-2,
so every number here can be re-run with the CLI on the exported files::

    python -m llmroute.eval WORK/lobo_gsm8k/heldout.csv.gz --model WORK/lobo_gsm8k/predictor.onnx \\
        --strong cognitivecomputations/dolphin-2.9-llama3-8b --weak itpossible/Chinese-Mistral-7B-v0.1 \\
        --learn 300 --observe routed --seed 0 --json

Views (strong/weak pair of ``training/evaluate.py`` per file):

* ``lobo``: leave one benchmark out: learn on the held-out benchmark's own traffic, score its
  remaining prompts (only benchmarks with at least N + 100 prompts for each N).
* ``mixed``: two folds of benchmarks held out together (F1: ARC-Challenge, GSM8K,
  HumanEvalPack-JS, WinoGrande; F2: ARC-Easy, HumanEval, MATH prealgebra, MBPP); within each
  file, the fold's held-out benchmarks are one mixed-topic traffic, scored as one set (the dev
  proxy of a multi-subject set).
* ``nc`` (evaluation only, CC BY-NC data, nothing is fitted to it that ships): CMMLU, a
  67-subject Chinese knowledge-QA set the prior never saw, ``Meta-Llama-3-8B`` vs
  ``zephyr-7b-beta``, with the shipped predictor.
* ``pool``: 8 current models the predictor never saw (``../shared/data/responses``: MATH level 5
  and CRUXEval-O, both mixed), list prices, with the shipped predictor: ``cost_ratio_at_95``.

    python -m training.experiments.learning_curves [--views lobo,mixed,nc,pool] [--seeds 0,1,2]
        [--sizes 100,300,1000] [--set hashed_dims=1024 ...] [--work /tmp/llmroute_learning_curves]

Prints Markdown tables (means over the seeds). Results are in ``docs/predictor.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmroute._learn_eval import learn_pair, learn_pool  # noqa: E402
from llmroute.eval import PromptRow, _predict_all, load_long  # noqa: E402
from llmroute.learning import LearnerSettings  # noqa: E402
from llmroute.predictor import ModelProfile, Predictor  # noqa: E402

FOLDS = {
    "F1": ("arc_challenge", "gsm8k", "humanevalpack_js", "winogrande"),
    "F2": ("arc_easy", "humaneval", "math_prealgebra", "mbpp"),
}
PAIRS = {
    "routerbench": ("gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat"),
    "routerdc7": ("cognitivecomputations/dolphin-2.9-llama3-8b", "itpossible/Chinese-Mistral-7B-v0.1"),
}
NC_PAIR = ("meta-llama/Meta-Llama-3-8B", "HuggingFaceH4/zephyr-7b-beta")
#: Pool view: 8 current models and a blended list price, (input + output) / 2 USD per million tokens
#: (OpenAI, Anthropic and Google list prices of 2024; Llama 3.1 at DeepInfra's, from litellm's table).
POOL_PRICES = {
    "claude-3-5-sonnet-20240620": 9.0,
    "gpt-4o-2024-08-06": 6.25,
    "gemini-1.5-pro": 3.125,
    "claude-3-haiku-20240307": 0.75,
    "Meta-Llama-3.1-70B-Instruct": 0.4,
    "gpt-4o-mini-2024-07-18": 0.375,
    "gemini-1.5-flash": 0.1875,
    "Meta-Llama-3.1-8B-Instruct": 0.04,
}
POOL_FILES = ("math_level5.parquet", "cruxeval.parquet")
#: Rows whose strong-weak gap is smaller are left out of the means (their PGR is unstable).
MIN_GAP = 0.05


def _data_dir(arg: str | None) -> Path:
    return Path(arg) if arg else REPO.parent / "shared" / "data"


def export_priors(data: Path, work: Path) -> None:
    """Fit and export one predictor per held-out set (skipped when already in *work*)."""
    from training import evaluate as ev
    from training import train_predictor as tp

    names = [f"lobo_{b}" for b in sorted({b for f in FOLDS.values() for b in f})] + [f"fold_{k}" for k in FOLDS]
    if all((work / n / "heldout.csv.gz").exists() for n in names):
        return
    ds = tp.load_dataset(data / "routing")
    bench = np.array(ds.bench)
    for name in names:
        if (work / name / "heldout.csv.gz").exists():
            continue
        held = np.isin(bench, FOLDS[name[5:]]) if name.startswith("fold_") else bench == name[5:]
        print(f"fit without {name}", file=sys.stderr)
        params = tp.fit(ds, ~held)
        ev._export_heldout(ds, params, work / name, held)


def _pair_runs(
    rows: list[PromptRow], predictor: Predictor, pair: tuple[str, str], sizes: list[int], seeds: list[int], st: Any
) -> dict[str, float]:
    """Mean APGR over seeds per (N, observe), plus zero-shot, length and the routed strong share."""
    s, w = pair
    rows = [r for r in rows if s in r.scores and w in r.scores]
    preds = _predict_all(rows, [ModelProfile(s), ModelProfile(w)], predictor, False)
    gap = abs(float(np.mean([r.scores[s] - r.scores[w] for r in rows]))) if rows else 0.0
    out: dict[str, float] = {"n": float(len(rows)), "gap": gap}
    for n in sizes:
        if n + 100 > len(rows):
            continue
        for observe in ("both", "routed"):
            vals, zero, length, share = [], [], [], []
            for seed in seeds:
                perm = np.random.default_rng(seed).permutation(len(rows)).tolist()
                res, sh = learn_pair(rows, preds, s, w, "difficulty", perm[:n], perm[n:], observe, 0.5, seed, st)
                (entry,) = res.values()
                vals.append(entry["apgr"])
                zero.append(entry["zero_shot_apgr"])
                length.append(entry["length_apgr"])
                if sh is not None:
                    share.append(sh)
            out[f"{n}/{observe}"] = float(np.mean(vals))
            out[f"{n}/zero"] = float(np.mean(zero))
            out[f"{n}/length"] = float(np.mean(length))
            if share:
                out[f"{n}/share"] = float(np.mean(share))
    return out


def _relabel(rows: list[PromptRow], name: str) -> list[PromptRow]:
    return [PromptRow(r.prompt_id, name, r.prompt, r.scores) for r in rows]


def pair_views(data: Path, work: Path, views: set[str], sizes: list[int], seeds: list[int], st: Any) -> dict:
    out: dict[str, dict[str, float]] = {}
    if "lobo" in views or "mixed" in views:
        export_priors(data, work)
    for d in sorted(work.iterdir()) if work.exists() else []:
        kind = "lobo" if d.name.startswith("lobo_") else "mixed" if d.name.startswith("fold_") else None
        if kind not in views:
            continue
        predictor = Predictor.load(d / "predictor.onnx")
        rows = load_long(d / "heldout.csv.gz")
        for file, pair in PAIRS.items():
            if kind == "lobo":
                groups: dict[str, list[PromptRow]] = {}
                for r in rows:
                    if r.benchmark.startswith(file + "/"):
                        groups.setdefault(r.benchmark, []).append(r)
            else:
                mixed = [r for r in rows if r.benchmark.startswith(file + "/")]
                label = f"{file} mixed {d.name[5:]} ({len({r.benchmark for r in mixed})} benchmarks)"
                groups = {label: _relabel(mixed, label)} if mixed else {}
            for name, grp in groups.items():
                print(f"{kind}: {name}", file=sys.stderr)
                out[f"{kind}|{name}"] = _pair_runs(grp, predictor, pair, sizes, seeds, st)
    if "nc" in views:
        import pandas as pd

        df = pd.read_parquet(data / "routing" / "routerdc7_nc.parquet")
        df = df[(df.benchmark == "cmmlu") & df.model.isin(NC_PAIR)]
        rows_nc: dict[str, PromptRow] = {}
        for rec in df.itertuples():
            rows_nc.setdefault(rec.prompt_id, PromptRow(str(rec.prompt_id), "cmmlu", rec.prompt)).scores[rec.model] = (
                float(rec.score)
            )
        print("nc: cmmlu", file=sys.stderr)
        out["nc|cmmlu (eval only)"] = _pair_runs(list(rows_nc.values()), Predictor.default(), NC_PAIR, sizes, seeds, st)
    return out


def pool_view(data: Path, sizes: list[int], seeds: list[int], st: Any) -> dict:
    import pandas as pd

    from llmroute.learning import prior_profiles

    pool = list(POOL_PRICES)
    frames = [
        pd.read_parquet(data / "responses" / f, columns=["prompt_id", "benchmark", "prompt", "model", "score"])
        for f in POOL_FILES
    ]
    df = pd.concat(frames)
    df = df[df.model.isin(pool)]
    rows_by: dict[str, PromptRow] = {}
    for rec in df.itertuples():
        key = f"{rec.benchmark}/{rec.prompt_id}"
        rows_by.setdefault(key, PromptRow(key, rec.benchmark, rec.prompt)).scores[rec.model] = float(rec.score)
    rows = [r for r in rows_by.values() if all(m in r.scores for m in pool)]
    predictor = Predictor.default()
    preds = _predict_all(rows, prior_profiles(pool, POOL_PRICES, predictor), predictor, False)
    out: dict[str, dict[str, Any]] = {}
    for n in sizes:
        if n + 100 > len(rows):
            continue
        for observe in ("both", "routed"):
            for seed in seeds:
                perm = np.random.default_rng(seed).permutation(len(rows)).tolist()
                res = learn_pool(rows, preds, pool, POOL_PRICES, perm[:n], perm[n:], observe, seed=seed, settings=st)
                for bench, r in res.items():
                    e = out.setdefault(f"pool|{bench}", {})
                    e.setdefault(f"{n}/{observe}", []).append(r["cost_ratio_at_95"])
                    e.setdefault(f"{n}/zero", []).append(r["zero_shot_cost_ratio_at_95"])
                    if observe == "routed":
                        e.setdefault(f"{n}/routed_cost", []).append(r["learn_mean_cost"])
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        vals = [x for x in v if x is not None]
        if len(vals) < len(v):
            return f"{np.mean(vals):.2f} ({len(v) - len(vals)} of {len(v)} never)" if vals else "never"
        return f"{np.mean(vals):.3f}"
    return "-" if v is None else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.experiments.learning_curves")
    ap.add_argument("--data", help="the shared data folder (default ../shared/data)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/llmroute_learning_curves"))
    ap.add_argument("--views", default="lobo,mixed,nc,pool")
    ap.add_argument("--sizes", default="100,300,1000")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a LearnerSettings field")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    data = _data_dir(args.data)
    if not (data / "routing").is_dir():
        raise SystemExit(f"error: no routing data in {data} (pass --data)")
    st = LearnerSettings(**{k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)})
    views = set(args.views.split(","))
    sizes = [int(x) for x in args.sizes.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    res = pair_views(data, args.work, views, sizes, seeds, st)
    print(f"settings: {st}\n")
    if res:
        print("Each cell: zero-shot / length / learned, observe both / learned, observe routed (strong-call share")
        print("while learning), APGR on the prompts left after learning (means over the seeds).\n")
        head = "| view | prompts | " + " | ".join(f"N = {n}" for n in sizes)
        print(head + " |\n|" + "---|" * (2 + len(sizes)))
        for key, r in res.items():
            cells = []
            for n in sizes:
                if f"{n}/both" in r:
                    cells.append(
                        f"{r[f'{n}/zero']:.3f} / {r[f'{n}/length']:.3f} / **{r[f'{n}/both']:.3f}** / "
                        f"**{r[f'{n}/routed']:.3f}** ({r.get(f'{n}/share', 0):.2f})"
                    )
                else:
                    cells.append("-")
            print(f"| {key} | {int(r['n'])} | " + " | ".join(cells) + " |")
        print(f"\nMeans over the rows with a strong-weak gap >= {MIN_GAP} (as in the model card):")
        for kind in ("lobo", "mixed"):
            rows = [r for k, r in res.items() if k.startswith(kind + "|") and r["gap"] >= MIN_GAP]
            for n in sizes:
                have = [r for r in rows if f"{n}/both" in r]
                if have:
                    means = {k: np.mean([r[f"{n}/{k}"] for r in have]) for k in ("zero", "length", "both", "routed")}
                    print(
                        f"{kind} mean over {len(have)} rows with N={n}: zero-shot {means['zero']:.3f}, length "
                        f"{means['length']:.3f}, both {means['both']:.3f}, routed {means['routed']:.3f}"
                    )
    if "pool" in views:
        pool = pool_view(data, sizes, seeds, st)
        print("\n| pool view (cost ratio at 95 %) | " + " | ".join(f"N={n} zero-shot / both / routed" for n in sizes))
        print("|" + "---|" * (1 + len(sizes)))
        for key, r in pool.items():
            cells = [
                f"{_fmt(r.get(f'{n}/zero'))} / {_fmt(r.get(f'{n}/both'))} / {_fmt(r.get(f'{n}/routed'))}" for n in sizes
            ]
            print(f"| {key} | " + " | ".join(cells) + " |")
        res.update(pool)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
