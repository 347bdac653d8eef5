"""Experiment: a static MiniLM token table in the difficulty head (model2vec-style), vs length.

What it tries: the difficulty head of ``training/train_predictor.py`` (ridge on within-benchmark
standardised failure rates, features centred per benchmark, each benchmark weighing the same,
length floor) with and without the SIF-weighted mean of a 16-dim PCA of all-MiniLM-L6-v2
embeddings of every o200k token (``token_table``; frequencies, PCA and SIF weights from the
training fold only, unseen tokens weigh 1 with a zero vector). Only the difficulty head is
refitted (seconds), so this is a quick check of what ``python -m training.train_predictor
--eval`` then measures in full. It prints, per held-out group and as means, APGR (strong/weak
pair of ``training/evaluate.py``) and the Spearman ρ with the within-benchmark failure rate,
for: random, length, current head (``token_dim=0``) and the token-table head; in distribution
(20 % of questions held out, by question text) and leave-one-benchmark-out (LOBO, a benchmark
held out in both files). ``--grid`` also prints a small grid over (token_dim, l2_tokens).

    python -m training.experiments.token_table_difficulty [--grid]

Measured with this command (mean APGR over groups with a strong-weak gap >= 0.05 / worst APGR /
mean ρ over all groups; random 0.500):

* LOBO: length 0.496 / 0.409 / +0.181; current head 0.495 / 0.414 / +0.184;
  token table 0.509 / 0.419 / +0.205.
* in distribution: length 0.503 / 0.405 / +0.179; current 0.502 / 0.411 / +0.184;
  token table 0.518 / 0.374 / +0.195 (worst row RouterDC MBPP).

(token_dim 16, l2_tokens 0.3 were picked on this LOBO; a nested LOBO that picks them from the
training benchmarks only, run in /tmp, gave 0.511 / 0.412 / +0.200.) Other variants tried in /tmp during the same
work (not kept): per-benchmark rank targets (no gain), sqrt(n) group weights (ρ lower),
whole-prompt MiniLM embeddings (PCA 16/32/64) instead of the token table (LOBO APGR 0.494-0.497,
no better than length: the token table transferred better than the full encoder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmroute.eval import evaluate_pair  # noqa: E402
from training import evaluate as ev  # noqa: E402
from training import train_predictor as tp  # noqa: E402


def head_scores(ds: tp.Dataset, train: np.ndarray, hp: dict) -> np.ndarray:
    hp = {**tp.DEFAULT_HP, **hp}
    s = ds.struct[train]
    mu, sd = s.mean(0), s.std(0)
    sd = np.where(sd < 1e-6, 1.0, sd)
    d_w, d_b, ids, uw, w = tp.fit_difficulty(ds, train, mu, sd, hp)
    p = tp.Params(
        table=np.zeros((1, tp.K)),
        w_struct=np.zeros((len(mu), tp.K)),
        bias=np.zeros(tp.K),
        mu=mu,
        sd=sd,
        d_w=d_w,
        d_b=d_b,
        tok_ids=ids,
        tok_uw=uw,
        tok_w=w,
        theta=np.zeros(0),
        a=np.zeros((0, tp.K)),
        models=[],
        hp=hp,
    )
    return tp.difficulty(p, ds.struct, ds.tokens)


def groups(ds, mat, file_models, scores: dict, test: np.ndarray) -> dict:
    out = {}
    for g, gname in enumerate(ds.group_names):
        f = gname.split("/")[0]
        si, wi = (ds.models.index(m) for m in ev.PAIRS[f])
        idx = np.flatnonzero(test & (ds.group == g))
        idx = idx[~(np.isnan(mat[idx, si]) | np.isnan(mat[idx, wi]))]
        if len(idx) < 10:
            continue
        fail = 1.0 - np.nanmean(mat[idx][:, file_models[f]], axis=1)
        r = {}
        for name, sc in scores.items():
            m = evaluate_pair(sc[idx].tolist(), mat[idx, si].tolist(), mat[idx, wi].tolist())
            r[name] = (m.apgr, ev._spearman(sc[idx], fail))
            r["gap"] = m.strong_mean - m.weak_mean
        out[gname] = r
    return out


def report(title: str, res: dict, names: list[str]) -> None:
    print(f"\n{title}")
    print(f"{'group':28s} " + " ".join(f"{n:>22s}" for n in ["random", *names]))
    for g, r in res.items():
        print(f"{g:28s} {'0.500 / ---':>22s} " + " ".join(f"{r[n][0]:>12.3f} / {r[n][1]:+.3f}" for n in names))
    ok = [r for r in res.values() if abs(r["gap"]) >= ev.MIN_GAP]
    line = []
    for n in names:
        a = [r[n][0] for r in ok]
        rho = np.mean([r[n][1] for r in res.values()])
        line.append(f"{n}: APGR mean {np.mean(a):.3f} worst {min(a):.3f}, mean ρ {rho:+.3f}")
    print("mean (APGR over groups with gap >= 0.05; ρ over all): random 0.500 / 0.500; " + "; ".join(line))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", action="store_true")
    args = ap.parse_args(argv)
    ds = tp.load_dataset(tp.default_data_dir())
    mat = ev._score_matrix(ds)
    files = np.array([g.split("/")[0] for g in ds.group_names])[ds.group]
    file_models = {f: np.flatnonzero(~np.isnan(mat[files == f]).all(axis=0)) for f in set(files)}
    length = np.array([len(p) for p in ds.prompts], float)
    variants = {"current": {"token_dim": 0}, "tokens": {}}
    if args.grid:
        grid = [(d, lam) for d in (8, 16, 32) for lam in (0.1, 0.3, 1.0)]
        variants.update({f"d{d}_l{lam}": {"token_dim": d, "l2_tokens": lam} for d, lam in grid})
    names = ["length", *variants]
    test = ev.split_mask(ds)
    sc = {"length": length, **{k: head_scores(ds, ~test, hp) for k, hp in variants.items()}}
    report("In distribution (20 % of questions held out): APGR / ρ", groups(ds, mat, file_models, sc, test), names)
    bench = np.array(ds.bench)
    res = {}
    for b in sorted(set(ds.bench)):
        held = bench == b
        sc = {"length": length, **{k: head_scores(ds, ~held, hp) for k, hp in variants.items()}}
        res.update(groups(ds, mat, file_models, sc, held))
    report("Leave-one-benchmark-out: APGR / ρ", res, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
