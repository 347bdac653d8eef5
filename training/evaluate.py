"""Held-out evaluation of the predictor: split by prompt, and leave-one-benchmark-out.

Run by ``python -m training.train_predictor --eval`` (which also writes the model card), or
alone: ``python -m training.evaluate [--data DIR] [--json FILE]``.

For each evaluation the model is refitted without the held-out prompts, then scored as a
strong/weak router per (file, benchmark) with :func:`llmroute.eval.evaluate_pair` for:

* ``pred_gap``  - predicted quality gap ``q_strong - q_weak`` (models in the training pool);
* ``pred_diff`` - predicted difficulty only (what the router uses for models it never saw);
* ``length``    - prompt length in characters (longer = strong);
* ``random``    - APGR 0.5, CPT(x) = x by definition; ``oracle`` - upper bound.

Splits: *prompt split* holds out 20 % of the questions (by normalised question text, so the
same ARC / MBPP question in both files is on one side); *leave-one-benchmark-out* (LOBO)
holds out every prompt of one benchmark name, in both files, and fits on the rest.
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

from llmroute.eval import evaluate_pair  # noqa: E402
from training import train_predictor as tp  # noqa: E402

__all__ = ["PAIRS", "run", "score_groups", "write_card"]

#: Strong/weak pair evaluated in each file (highest and a low-scoring model of the file).
PAIRS = {
    "routerbench": ("gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat"),
    "routerdc7": ("cognitivecomputations/dolphin-2.9-llama3-8b", "itpossible/Chinese-Mistral-7B-v0.1"),
}
METHODS = ("pred_gap", "pred_diff", "length", "random", "oracle")


def _score_matrix(ds: tp.Dataset) -> np.ndarray:
    mat = np.full((len(ds.prompts), len(ds.models)), np.nan)
    mat[ds.p_idx, ds.m_idx] = ds.y
    return mat


def prompt_scores(ds: tp.Dataset, params: tp.Params, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Routing scores of the prompts *idx* for their file's strong/weak pair: gap and difficulty."""
    z = tp.forward(params, [ds.buckets[i] for i in idx], ds.struct[idx], [ds.tokens[i] for i in idx])
    z1 = np.c_[np.ones(len(idx)), z]
    files = [ds.group_names[ds.group[i]].split("/")[0] for i in idx]
    gap = np.zeros(len(idx))
    for f in set(files):
        si, wi = (ds.models.index(m) for m in PAIRS[f])
        rows = np.array([x == f for x in files])
        q = [1 / (1 + np.exp(-(z1[rows] @ np.r_[params.theta[m], params.a[m]]))) for m in (si, wi)]
        gap[rows] = q[0] - q[1]
    diff = tp.difficulty(params, ds.struct[idx], [ds.tokens[i] for i in idx])
    return {"pred_gap": gap, "pred_diff": diff}


def mixed_groups(ds: tp.Dataset, scores: dict[str, np.ndarray], scored: np.ndarray) -> dict:
    """One mixed-topic test set per file: all its *scored* prompts pooled (each was scored by a
    model that never saw its benchmark), metrics for the file's strong/weak pair."""
    mat = _score_matrix(ds)
    files = np.array([g.split("/")[0] for g in ds.group_names])[ds.group]
    out = {}
    for f in sorted(set(files)):
        si, wi = (ds.models.index(m) for m in PAIRS[f])
        idx = np.flatnonzero(scored & (files == f))
        idx = idx[~(np.isnan(mat[idx, si]) | np.isnan(mat[idx, wi]))]
        res: dict = {}
        length = np.array([float(len(ds.prompts[i])) for i in idx])
        for name, sc in (
            ("pred_gap", scores["pred_gap"][idx]),
            ("pred_diff", scores["pred_diff"][idx]),
            ("length", length),
        ):
            m = evaluate_pair(sc.tolist(), mat[idx, si].tolist(), mat[idx, wi].tolist())
            res[name] = {"apgr": m.apgr, "cpt50": m.cpt50, "cpt80": m.cpt80, "auc": m.auc}
            res["n"], res["strong_mean"], res["weak_mean"] = m.n, m.strong_mean, m.weak_mean
            res["oracle"] = {"apgr": m.oracle_apgr}
        out[f"{f} (all benchmarks)"] = res
    return out


def score_groups(ds: tp.Dataset, params: tp.Params, test_mask: np.ndarray) -> dict:
    """Metrics per (file/benchmark) group on the prompts of *test_mask*."""
    mat = _score_matrix(ds)
    out = {}
    idx_all = np.flatnonzero(test_mask)
    z = tp.forward(params, [ds.buckets[i] for i in idx_all], ds.struct[idx_all], [ds.tokens[i] for i in idx_all])
    zpos = {int(i): k for k, i in enumerate(idx_all)}
    file_models: dict[str, list[int]] = {}
    for i, gname in enumerate(ds.group_names):
        f = gname.split("/")[0]
        rows = np.isin(ds.p_idx, np.flatnonzero(ds.group == i))
        file_models.setdefault(f, [])
        file_models[f] = sorted(set(file_models[f]) | set(np.unique(ds.m_idx[rows]).tolist()))
    for g, gname in enumerate(ds.group_names):
        file = gname.split("/")[0]
        strong_name, weak_name = PAIRS[file]
        si, wi = ds.models.index(strong_name), ds.models.index(weak_name)
        idx = [int(i) for i in idx_all if ds.group[i] == g]
        idx = [i for i in idx if not (np.isnan(mat[i, si]) or np.isnan(mat[i, wi]))]
        if len(idx) < 10:
            continue
        zz = z[[zpos[i] for i in idx]]
        strong = mat[idx, si].tolist()
        weak = mat[idx, wi].tolist()
        vs = np.r_[params.theta[si], params.a[si]]
        vw = np.r_[params.theta[wi], params.a[wi]]
        z1 = np.c_[np.ones(len(idx)), zz]
        gap = 1 / (1 + np.exp(-(z1 @ vs))) - 1 / (1 + np.exp(-(z1 @ vw)))
        diff = tp.difficulty(params, ds.struct[idx], [ds.tokens[i] for i in idx])
        res = {}
        for name, sc in (
            ("pred_gap", gap.tolist()),
            ("pred_diff", diff.tolist()),
            ("length", [float(len(ds.prompts[i])) for i in idx]),
        ):
            m = evaluate_pair(sc, strong, weak)
            res[name] = {"apgr": m.apgr, "cpt50": m.cpt50, "cpt80": m.cpt80, "auc": m.auc}
            res["n"] = m.n
            res["oracle"] = {"apgr": m.oracle_apgr}
            res["strong_mean"], res["weak_mean"] = m.strong_mean, m.weak_mean
        # rank correlation with the prompt's mean failure rate over all the file's models
        fail = 1.0 - np.nanmean(mat[idx][:, file_models[file]], axis=1)
        res["pred_diff"]["rho"] = _spearman(diff, fail)
        res["length"]["rho"] = _spearman(np.array([float(len(ds.prompts[i])) for i in idx]), fail)
        res["random"] = {"apgr": 0.5, "cpt50": 0.5, "cpt80": 0.8}
        out[gname] = res
    return out


#: Groups whose strong/weak mean gap is below this are left out of the summary (PGR is unstable).
MIN_GAP = 0.05


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(a, b).correlation
    return float(r) if np.isfinite(r) else 0.0


def _summary(groups: dict) -> dict:
    summ = {}
    for meth in ("pred_gap", "pred_diff", "length"):
        vals = [g[meth]["apgr"] for g in groups.values() if abs(g["strong_mean"] - g["weak_mean"]) >= MIN_GAP]
        summ[meth] = {"mean_apgr": float(np.mean(vals)), "worst_apgr": float(np.min(vals))}
        if meth != "pred_gap":
            summ[meth]["mean_rho"] = float(np.mean([g[meth]["rho"] for g in groups.values()]))
    return summ


def split_mask(ds: tp.Dataset, frac: float = 0.2) -> np.ndarray:
    """True for test prompts: a deterministic hash of the normalised question text."""
    h = np.array([int(hashlib.sha256(k.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF for k in ds.keys])
    return h < frac


def _export_heldout(ds: tp.Dataset, params: tp.Params, out: Path, test: np.ndarray) -> None:
    """Write a held-out model and its held-out prompts (long CSV.gz) for ``python -m llmroute.eval``."""
    import csv
    import gzip

    tp.export(params, out, ds, None)
    inv = {i: m for i, m in enumerate(ds.models)}
    with gzip.open(out / "heldout.csv.gz", "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt_id", "benchmark", "prompt", "model", "score"])
        for p, m, y in zip(ds.p_idx, ds.m_idx, ds.y):
            if test[p]:
                w.writerow([p, ds.group_names[ds.group[p]], ds.prompts[p], inv[int(m)], y])


def run(ds: tp.Dataset, hp: dict | None = None, lobo: bool = True, export_dir: Path | None = None) -> dict:
    """Prompt-split and leave-one-benchmark-out metrics (see the module docstring).

    With *export_dir*, every held-out model and its held-out prompts are also written there
    (``split/``, ``lobo_<benchmark>/``), so the same numbers can be reproduced with the CLI.
    """
    test = split_mask(ds)
    print("fit: prompt split", file=sys.stderr)
    params = tp.fit(ds, ~test, hp)
    if export_dir is not None:
        _export_heldout(ds, params, export_dir / "split", test)
    result = {"prompt_split": {"groups": score_groups(ds, params, test)}}
    result["prompt_split"]["summary"] = _summary(result["prompt_split"]["groups"])
    if lobo:
        groups = {}
        bench = np.array(ds.bench)
        scores = {k: np.zeros(len(ds.prompts)) for k in ("pred_gap", "pred_diff")}
        for b in sorted(set(ds.bench)):
            print(f"fit: leave out {b}", file=sys.stderr)
            held = bench == b
            params = tp.fit(ds, ~held, hp)
            groups.update(score_groups(ds, params, held))
            idx = np.flatnonzero(held)
            for k, v in prompt_scores(ds, params, idx).items():
                scores[k][idx] = v
            if export_dir is not None:
                _export_heldout(ds, params, export_dir / f"lobo_{b}", held)
        result["lobo"] = {"groups": groups, "summary": _summary(groups)}
        result["lobo_mixed"] = {"groups": mixed_groups(ds, scores, np.ones(len(ds.prompts), dtype=bool))}
    return result


def _table(groups: dict, rho: bool = True) -> list[str]:
    lines = [
        "| benchmark | n | strong / weak mean | predictor (gap) APGR / CPT50 / CPT80 "
        "| predictor (difficulty) APGR / CPT50 / CPT80 | length APGR / CPT50 / CPT80 | random | oracle "
        "| ρ difficulty / ρ length |",
        "|---|---:|---|---|---|---|---|---|---|",
    ]
    for g, r in groups.items():
        cells = []
        for meth in ("pred_gap", "pred_diff", "length"):
            m = r[meth]
            cells.append(f"{m['apgr']:.3f} / {m['cpt50']:.2f} / {m['cpt80']:.2f}")
        lines.append(
            f"| {g} | {r['n']} | {r['strong_mean']:.3f} / {r['weak_mean']:.3f} | "
            + " | ".join(cells)
            + f" | 0.500 / 0.50 / 0.80 | {r['oracle']['apgr']:.3f} "
            + (f"| {r['pred_diff']['rho']:+.3f} / {r['length']['rho']:+.3f} |" if rho else "| - |")
        )
    return lines


def tables_markdown(metrics: dict) -> str:
    """The prompt-split and LOBO tables as Markdown."""
    out = []
    for key, title in (
        ("prompt_split", "In distribution (20 % of questions held out)"),
        ("lobo", "Leave-one-benchmark-out"),
    ):
        if key not in metrics:
            continue
        out.append(f"**{title}**\n")
        out.extend(_table(metrics[key]["groups"]))
        s = metrics[key]["summary"]
        out.append("")
        out.append(
            f"Mean / worst APGR over benchmarks with a strong-weak gap >= {MIN_GAP}: "
            + ", ".join(f"{k} {v['mean_apgr']:.3f} / {v['worst_apgr']:.3f}" for k, v in s.items())
            + ", random 0.500 / 0.500. Mean ρ (all rows): "
            + ", ".join(f"{k} {v['mean_rho']:+.3f}" for k, v in s.items() if "mean_rho" in v)
            + "."
        )
        out.append("")
        if key == "lobo" and "lobo_mixed" in metrics:
            out.append("")
            out.append(
                "*Mixed topics, still zero-shot:* every prompt scored by the model fitted without its "
                "benchmark, then all prompts of a file pooled into one test set (like a multi-subject "
                "set such as MMLU, where which kind of task a prompt is matters most):\n"
            )
            out.extend(_table(metrics["lobo_mixed"]["groups"], rho=False))
            out.append("")
    return "\n".join(out)


def write_card(path: Path, ds: tp.Dataset, metrics: dict, params: tp.Params) -> None:
    """Write ``MODEL_CARD.md`` from the template beside this file and the measured tables."""
    template = (Path(__file__).parent / "MODEL_CARD.template.md").read_text()
    pairs = "\n".join(f"- `{f}`: strong `{s}`, weak `{w}`" for f, (s, w) in PAIRS.items())
    files = "\n".join(f"- `{k}` sha256 `{v}`" for k, v in ds.hashes.items())
    text = (
        template.replace("{{TABLES}}", tables_markdown(metrics))
        .replace("{{PAIRS}}", pairs)
        .replace("{{FILES}}", files)
        .replace("{{N_PROMPTS}}", str(len(ds.prompts)))
        .replace("{{N_CELLS}}", str(int(ds.y.size)))
        .replace("{{MODELS}}", ", ".join(f"`{m}`" for m in ds.models))
        .replace("{{HP}}", json.dumps(params.hp, sort_keys=True))
    )
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Evaluate without exporting anything."""
    ap = argparse.ArgumentParser(prog="python -m training.evaluate")
    ap.add_argument("--data", type=Path, default=tp.default_data_dir())
    ap.add_argument("--json", type=Path, help="write the metrics here")
    ap.add_argument("--hp", default="{}", help="JSON dict of hyperparameters to override")
    ap.add_argument("--no-lobo", action="store_true")
    ap.add_argument("--export-dir", type=Path, help="also write each held-out model + prompts here")
    args = ap.parse_args(argv)
    ds = tp.load_dataset(args.data)
    metrics = run(ds, json.loads(args.hp), lobo=not args.no_lobo, export_dir=args.export_dir)
    print(tables_markdown(metrics))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
