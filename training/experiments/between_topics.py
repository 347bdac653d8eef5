"""Experiment: does the difficulty head carry *topic* difficulty to tasks it never saw?

The shipped head (``fit_difficulty``) is fitted on features centred per benchmark against
within-benchmark standardised failure rates: it learns what makes a prompt harder than its
neighbours and, on purpose, nothing about which benchmark is harder. A knowledge-QA test set
such as MMLU mixes many subjects, and there most of the routing signal is the subject
(a perfect per-topic oracle reaches about 0.71 APGR, ``shared/PREDICTOR.md``). The
within-benchmark leave-one-benchmark-out (LOBO) table cannot see that, so this script adds two
zero-shot views that can:

* **LOBO mixed**: every prompt is scored by the head fitted without its benchmark, then all
  prompts of a file are pooled into one mixed-topic test set (strong/weak pair of
  ``training/evaluate.py``, and the mean over every pair of the file's models whose gap is
  >= 0.05). Ranking a never-seen GSM8K prompt above a never-seen ARC-Easy prompt is rewarded.
* **CMMLU / C-Eval, evaluation only**: the head is fitted on the training files and scores the
  multi-subject Chinese knowledge-QA sets of ``routerdc7_nc.parquet`` (CC BY-NC / BY-NC-SA:
  used here only to *measure*, never to fit anything shipped).

Heads compared (all ridge, group-balanced, length floor where noted):

* ``length``: characters.
* ``within``: the shipped head (struct + 16-dim static token table, centred per benchmark).
* ``pooled``: same features, not centred, target = failure rate standardised per *file*, so
  differences between benchmarks of one file count (topic difficulty).
* ``mix``: z-score sum of ``within`` and ``pooled``.

    python -m training.experiments.between_topics [--dims 16,32] [--lams 0.1,0.3,1]   # heads
    python -m training.experiments.between_topics --mix    # alpha * within + (1 - alpha) * pooled
    python -m training.experiments.between_topics --irt    # per-model 2PL on the pooled difficulty
    python -m training.experiments.between_topics --interact | --typed | --nested   # see below

Measured (``--dims 16,32 --lams 0.1,0.3,1``; APGR of the file's strong/weak pair; "within" is
the mean / worst over LOBO benchmarks with a gap >= 0.05, "mixed" the pooled LOBO set per file):

* length: within 0.496 / 0.409; mixed RouterBench 0.444, RouterDC 0.627.
* within (the head shipped before): 0.509 / 0.419; mixed 0.481, 0.661.
* pooled, 16 dims, penalty 0.3: 0.524 / 0.433; mixed 0.540, 0.707. Every pooled variant of the
  grid (16 or 32 dims, penalty 0.1 to 1; 64 dims with 0.3 to 30) beat "within" on both views
  (within 0.505-0.524, mixed RouterDC 0.692-0.710), so the choice does not hinge on one
  setting; pooled without the token table (struct only) 0.505 / 0.447, mixed 0.496, 0.673.
* ``--mix``: blending in the within head raises the within-benchmark Spearman ρ (0.175 at
  alpha 0 to 0.205 at 1) but lowers every APGR view; GSM8K moves only from 0.503 to 0.512.
* ``--irt``: routing by the gap of per-model 2PL curves on the pooled difficulty (fitted with
  or without benchmark offsets) gives within 0.530 / 0.528 but mixed 0.465-0.469 and
  0.627-0.668: a pair's predicted gap shrinks on the hardest tasks, where the real gap is
  large, so it transfers worse than the difficulty itself.
* ``--interact`` (length x numbers / maths / code / choices): no gain (LOBO 0.524-0.525,
  GSM8K 0.503-0.504; in distribution GSM8K stays at 0.48, below length's 0.53).
* ``--nested`` (settings picked per held-out benchmark by an inner LOBO over the others, from
  within/pooled x 0/8/16/32 dims x penalty 0.1/0.3/1, criterion = mean of the within and mixed
  APGR): pooled in every fold; within 0.520 / 0.433, mixed 0.495 / 0.701 (shipped settings
  0.524 / 0.433, 0.540 / 0.707; length 0.496 / 0.409, 0.444 / 0.627). Takes under a minute.
* ``--typed`` (type-specific deviations for multiple-choice / code / maths prompts, detected from
  the structural features): better rank correlation on GSM8K (LOBO ρ +0.24 -> +0.28) but no
  better APGR (0.503 -> 0.504) and worse elsewhere (LOBO 0.515 / 0.415, mixed 0.536 / 0.682).
* CMMLU / C-Eval (evaluation only, Chinese, 7B models near chance): every score, length
  included, is below random for the file pair (length 0.373 / 0.417, within 0.399 / 0.411,
  pooled 0.417 / 0.443); not informative for English knowledge QA.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmroute import _features as F  # noqa: E402
from llmroute.eval import evaluate_pair  # noqa: E402
from training import evaluate as ev  # noqa: E402
from training import train_predictor as tp  # noqa: E402

CACHE = Path("/tmp/llmroute_between_ds.pkl")


def load(cache: bool) -> tp.Dataset:
    if cache and CACHE.exists():
        return pickle.loads(CACHE.read_bytes())
    ds = tp.load_dataset(tp.default_data_dir())
    if cache:
        CACHE.write_bytes(pickle.dumps(ds))
    return ds


def load_nc(ds: tp.Dataset):
    """CMMLU / C-Eval prompts (evaluation only): struct, token rows in ``ds.vocab``, score matrix."""
    import pandas as pd

    df = pd.read_parquet(
        tp.default_data_dir() / "routerdc7_nc.parquet", columns=["prompt_id", "benchmark", "prompt", "model", "score"]
    )
    first = df.drop_duplicates("prompt_id")
    enc = F._encoder()
    feats = [F.extract([{"role": "user", "content": p}], encoder=enc) for p in first["prompt"]]
    struct = np.stack([f.struct for f in feats]).astype(np.float64)
    rows = []
    for f in feats:
        t = f.tokens[f.tokens < F.TOKEN_PAD]
        pos = np.searchsorted(ds.vocab, t)
        pos = np.minimum(pos, ds.vocab.size - 1)
        rows.append(np.where(ds.vocab[pos] == t, pos, -1))
    piv = df.pivot_table(index="prompt_id", columns="model", values="score")
    piv = piv.reindex(first["prompt_id"])
    return {
        "bench": first["benchmark"].to_numpy(),
        "prompts": first["prompt"].tolist(),
        "struct": struct,
        "rows": rows,
        "mat": piv.to_numpy(),
        "models": list(piv.columns),
    }


def _setup(ds: tp.Dataset):
    """Score matrix, file of each prompt, files, each file's models and each prompt's failure rate
    (mean over its file's models)."""
    mat = ev._score_matrix(ds)
    file_of = np.array([g.split("/")[0] for g in ds.group_names])[ds.group]
    files = sorted(set(file_of))
    fm = {f: np.flatnonzero(~np.isnan(mat[file_of == f]).all(axis=0)) for f in files}
    fail = np.zeros(len(ds.prompts))
    for f in files:
        i = file_of == f
        fail[i] = 1.0 - np.nanmean(mat[i][:, fm[f]], axis=1)
    return mat, file_of, files, fm, fail


def token_means_rows(rows: list[np.ndarray], table: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """SIF mean; rows of -1 are tokens outside the table (value 0, weight 1)."""
    out = np.zeros((len(rows), table.shape[1]))
    for i, r in enumerate(rows):
        if r.size:
            known = r[r >= 0]
            w = weights[known]
            den = w.sum() + (r < 0).sum()
            if den > 0:
                out[i] = (w @ table[known]) / den
    return out


def fit_head(ds, train, fail, file_of, mode: str, dim: int, lam_s: float, lam_t: float):
    """Return a scorer ``f(struct, emb) -> score`` fitted on *train*."""
    table, tw = tp.token_table(ds, train, dim, 1e-3) if dim else (np.zeros((ds.vocab.size, 0)), np.ones(ds.vocab.size))
    emb = token_means_rows(ds.tok_rows, table, tw)
    s = ds.struct[train]
    mu, sd = s.mean(0), s.std(0)
    sd = np.where(sd < 1e-6, 1.0, sd)
    mu_e, sd_e = emb[train].mean(0), emb[train].std(0) if dim else np.zeros(0)
    if dim:
        sd_e = np.where(sd_e < 1e-9, 1.0, sd_e)

    def feats(struct, e):
        return np.c_[np.clip((struct - mu) / sd, -5, 5), (e - mu_e) / sd_e if dim else np.zeros((len(struct), 0))]

    xs = feats(ds.struct, emb)
    n_s = ds.struct.shape[1]
    lam = np.r_[np.full(n_s, lam_s), np.full(dim, lam_t)]
    P = len(ds.prompts)
    xc, yz, w = xs.copy(), np.zeros(P), np.zeros(P)
    gs = [g for g in range(len(ds.group_names)) if (train & (ds.group == g)).any()]
    if mode == "within":
        for g in gs:
            i = train & (ds.group == g)
            xc[i] = xs[i] - xs[i].mean(0)
            yz[i] = (fail[i] - fail[i].mean()) / (fail[i].std() + 1e-9)
            w[i] = 1.0 / i.sum() / len(gs)
    else:  # pooled: per-file standardised failure, features centred per file
        for f in set(file_of[train]):
            i = train & (file_of == f)
            xc[i] = xs[i] - xs[i].mean(0)
            yz[i] = (fail[i] - fail[i].mean()) / (fail[i].std() + 1e-9)
        for g in gs:
            i = train & (ds.group == g)
            w[i] = 1.0 / i.sum() / len(gs)
    beta = tp.ridge_length_floor(xc[train], yz[train], w[train], lam)

    def score(struct, rows):
        e = token_means_rows(rows, table, tw) if dim else np.zeros((len(struct), 0))
        return feats(struct, e) @ beta

    return score


def pair_apgrs(score, mat, pairs):
    out = []
    for si, wi in pairs:
        ok = ~(np.isnan(mat[:, si]) | np.isnan(mat[:, wi]))
        m = evaluate_pair(score[ok].tolist(), mat[ok, si].tolist(), mat[ok, wi].tolist())
        out.append(m.apgr)
    return out


def all_pairs(mat, cols, min_gap=0.05):
    res = []
    for i, j in itertools.permutations(cols, 2):
        ok = ~(np.isnan(mat[:, i]) | np.isnan(mat[:, j]))
        if ok.sum() and np.mean(mat[ok, i]) - np.mean(mat[ok, j]) >= min_gap:
            res.append((i, j))
    return res


def z(x):
    return (x - x.mean()) / (x.std() + 1e-12)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="16")
    ap.add_argument("--lams", default="0.3,3")
    ap.add_argument("--mix", action="store_true", help="blend the within and pooled heads")
    ap.add_argument("--irt", action="store_true", help="route by per-model 2PL gaps on the pooled difficulty")
    ap.add_argument("--interact", action="store_true", help="length x (numbers, maths, code, ...) interactions")
    ap.add_argument("--typed", action="store_true", help="type-specific deviations (choices / code / maths)")
    ap.add_argument("--nested", action="store_true", help="nested LOBO: settings chosen without the outer benchmark")
    ap.add_argument("--no-cache", action="store_true", help=f"do not cache the features in {CACHE}")
    args = ap.parse_args(argv)
    if args.mix:
        return mix_main()
    if args.irt:
        return irt_main()
    if args.interact:
        return interact_main()
    if args.nested:
        return nested_main()
    if args.typed:
        return typed_main()
    ds = load(not args.no_cache)
    mat, file_of, files, fm, fail = _setup(ds)
    length = np.log1p([len(p) for p in ds.prompts])
    heads = {"within": ("within", 16, 0.3, 0.3)}
    for d in [int(x) for x in args.dims.split(",")]:
        for lam in [float(x) for x in args.lams.split(",")]:
            heads[f"pooled_d{d}_l{lam}"] = ("pooled", d, lam, lam)
    heads["pooled_struct_l3"] = ("pooled", 0, 3.0, 3.0)
    bench = np.array(ds.bench)
    lobo = {k: np.zeros(len(ds.prompts)) for k in heads}
    for b in sorted(set(ds.bench)):
        held = bench == b
        for k, (mode, d, ls, lt) in heads.items():
            f = fit_head(ds, ~held, fail, file_of, mode, d, ls, lt)
            lobo[k][held] = f(ds.struct[held], [ds.tok_rows[i] for i in np.flatnonzero(held)])
        print(f"lobo {b} done", file=sys.stderr)
    scores = {"length": length, **lobo}
    for k in list(lobo):
        if k.startswith("pooled"):
            scores[f"mix[{k}]"] = None  # filled per test set (z-scores within the set)
    print("\nLOBO within-benchmark APGR (file pair) mean / worst; LOBO mixed APGR: pair, mean over pairs")
    for name in scores:
        within_vals = []
        mixed = []
        for f in files:
            sel = file_of == f
            sc = scores[name]
            pairs = all_pairs(mat[sel], fm[f])
            si, wi = (ds.models.index(m) for m in ev.PAIRS[f])
            for g in set(ds.group[sel]):
                gi = ds.group == g
                s_g = sc[gi] if sc is not None else z(lobo["within"][gi]) + z(lobo[name[4:-1]][gi])
                gap = np.nanmean(mat[gi, si]) - np.nanmean(mat[gi, wi])
                if abs(gap) >= ev.MIN_GAP:
                    within_vals.append(pair_apgrs(s_g, mat[gi], [(si, wi)])[0])
            s_f = sc[sel] if sc is not None else z(lobo["within"][sel]) + z(lobo[name[4:-1]][sel])
            mixed.append((f, pair_apgrs(s_f, mat[sel], [(si, wi)])[0], np.mean(pair_apgrs(s_f, mat[sel], pairs))))
        mx = "  ".join(f"{f}: {a:.3f} (all pairs {b:.3f})" for f, a, b in mixed)
        print(f"{name:24s} within {np.mean(within_vals):.3f} / {min(within_vals):.3f}   mixed  {mx}")
    # CMMLU / C-Eval, evaluation only
    nc = load_nc(ds)
    ncm = [ds.models.index(m) for m in nc["models"]]
    allm = np.full((len(nc["prompts"]), len(ds.models)), np.nan)
    allm[:, ncm] = nc["mat"]
    everything = np.ones(len(ds.prompts), dtype=bool)
    nscores = {"length": np.log1p([len(p) for p in nc["prompts"]])}
    for k, (mode, d, ls, lt) in heads.items():
        nscores[k] = fit_head(ds, everything, fail, file_of, mode, d, ls, lt)(nc["struct"], nc["rows"])
    for k in heads:
        if k.startswith("pooled"):
            nscores[f"mix[{k}]"] = z(nscores["within"]) + z(nscores[k])
    si, wi = (ds.models.index(m) for m in ev.PAIRS["routerdc7"])
    print("\nCMMLU / C-Eval (evaluation only): APGR file pair, mean over pairs with gap >= 0.05")
    for name, sc in nscores.items():
        line = []
        for b in ("cmmlu", "ceval"):
            sel = nc["bench"] == b
            pairs = all_pairs(allm[sel], ncm)
            one = pair_apgrs(sc[sel], allm[sel], [(si, wi)])[0]
            every = np.mean(pair_apgrs(sc[sel], allm[sel], pairs))
            line.append(f"{b}: {one:.3f} (all {every:.3f}, {len(pairs)} pairs)")
        print(f"{name:24s} " + "   ".join(line))
    return 0


def fit_irt_1d(s, p_idx, m_idx, y, train, group, n_models, offsets: bool, l2: float = 1e-3):
    """Per-model (theta, b) of ``y ~ sigmoid(theta_m + b_m * s_p)`` on the *train* prompts.

    With *offsets*, training-only (group x model) intercepts absorb benchmark-level differences,
    so ``b_m`` is the within-benchmark slope."""
    from scipy.optimize import minimize

    keep = train[p_idx]
    pi, mi, yy = p_idx[keep], m_idx[keep], y[keep]
    gi = group[pi]
    G = int(group.max()) + 1
    M = n_models
    cnt = np.bincount(gi, minlength=G).astype(float)
    w = 1.0 / (cnt[gi] * (cnt > 0).sum())
    sp = s[pi]

    def loss(x):
        th, b, off = x[:M], x[M : 2 * M], x[2 * M :].reshape(G, M)
        lg = th[mi] + b[mi] * sp + (off[gi, mi] if offsets else 0.0)
        sg = 1 / (1 + np.exp(-lg))
        ll = -(yy * np.log(sg + 1e-9) + (1 - yy) * np.log(1 - sg + 1e-9))
        r = w * (sg - yy)
        g = np.r_[
            np.bincount(mi, r, minlength=M),
            np.bincount(mi, r * sp, minlength=M),
            np.bincount(gi * M + mi, r, minlength=G * M) if offsets else np.zeros(G * M),
        ]
        val = (w * ll).sum() + l2 * (x[M:] ** 2).sum()
        g[M:] += 2 * l2 * x[M:]
        return val, g

    res = minimize(loss, np.zeros(2 * M + G * M), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x[:M], res.x[M : 2 * M]


def irt_main() -> int:
    ds = load(True)
    mat, file_of, files, _fm, fail = _setup(ds)
    bench = np.array(ds.bench)
    out = {k: np.zeros(len(ds.prompts)) for k in ("diff", "gap_off", "gap_nooff")}
    for b in sorted(set(ds.bench)):
        held = bench == b
        f = fit_head(ds, ~held, fail, file_of, "pooled", 16, 0.3, 0.3)
        s = f(ds.struct, ds.tok_rows)
        s = (s - s[~held].mean()) / s[~held].std()
        out["diff"][held] = s[held]
        for name, offs in (("gap_off", True), ("gap_nooff", False)):
            th, bb = fit_irt_1d(s, ds.p_idx, ds.m_idx, ds.y, ~held, ds.group, len(ds.models), offs)
            for fl in files:
                si, wi = (ds.models.index(m) for m in ev.PAIRS[fl])
                sel = held & (file_of == fl)
                qs, qw = (1 / (1 + np.exp(-(th[m] + bb[m] * s[sel]))) for m in (si, wi))
                out[name][sel] = qs - qw
        print(f"irt lobo {b}", file=sys.stderr)
    for name, sc in out.items():
        within_vals, mixed = [], []
        for fl in files:
            sel = file_of == fl
            si, wi = (ds.models.index(m) for m in ev.PAIRS[fl])
            for g in set(ds.group[sel]):
                gi = ds.group == g
                if abs(np.nanmean(mat[gi, si]) - np.nanmean(mat[gi, wi])) >= ev.MIN_GAP:
                    within_vals.append(pair_apgrs(sc[gi], mat[gi], [(si, wi)])[0])
            mixed.append(f"{fl}: {pair_apgrs(sc[sel], mat[sel], [(si, wi)])[0]:.3f}")
        print(f"{name:12s} within {np.mean(within_vals):.3f} / {min(within_vals):.3f}  mixed {'  '.join(mixed)}")
    return 0


def mix_main() -> int:
    """alpha * within + (1 - alpha) * pooled (each standardised on its training fold)."""
    ds = load(True)
    mat, file_of, files, _fm, fail = _setup(ds)
    bench = np.array(ds.bench)
    alphas = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)
    out = {a: np.zeros(len(ds.prompts)) for a in alphas}
    for b in sorted(set(ds.bench)):
        held = bench == b
        sc = {}
        for mode in ("within", "pooled"):
            s = fit_head(ds, ~held, fail, file_of, mode, 16, 0.3, 0.3)(ds.struct, ds.tok_rows)
            sc[mode] = (s - s[~held].mean()) / s[~held].std()
        for a in alphas:
            out[a][held] = (a * sc["within"] + (1 - a) * sc["pooled"])[held]
    for a, sc in out.items():
        within_vals, rhos, mixed, per = [], [], [], {}
        for fl in files:
            sel = file_of == fl
            si, wi = (ds.models.index(m) for m in ev.PAIRS[fl])
            for g in sorted(set(ds.group[sel])):
                gi = ds.group == g
                rhos.append(ev._spearman(sc[gi], fail[gi]))
                if abs(np.nanmean(mat[gi, si]) - np.nanmean(mat[gi, wi])) >= ev.MIN_GAP:
                    v = pair_apgrs(sc[gi], mat[gi], [(si, wi)])[0]
                    within_vals.append(v)
                    per[ds.group_names[g]] = v
            mixed.append(f"{fl}: {pair_apgrs(sc[sel], mat[sel], [(si, wi)])[0]:.3f}")
        pp = " ".join(f"{k}={v:.3f}" for k, v in per.items())
        head = f"alpha {a:.2f} within {np.mean(within_vals):.3f} / {min(within_vals):.3f} rho {np.mean(rhos):+.3f}"
        print(f"{head} mixed {'  '.join(mixed)}\n    {pp}")
    return 0


def _with_interactions(struct: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Append log_chars x each named structural feature (centred on the training data later)."""
    j = F.STRUCT_NAMES.index("log_chars")
    extra = [struct[:, j] * struct[:, F.STRUCT_NAMES.index(n)] for n in names]
    return np.c_[struct, np.stack(extra, axis=1)] if extra else struct


def interact_main() -> int:
    """Pooled head with length x (numbers, maths, code, choices, digits) interactions."""
    import copy

    ds0 = load(True)
    mat, file_of, files, _fm, fail = _setup(ds0)
    variants = {
        "pooled": (),
        "pooled+num": ("log_numbers", "digit_token_frac"),
        "pooled+all": ("log_numbers", "digit_token_frac", "log_math_marks", "log_code_marks", "log_choices"),
    }
    bench = np.array(ds0.bench)
    test = ev.split_mask(ds0)
    for name, inter in variants.items():
        ds = copy.copy(ds0)
        ds.struct = _with_interactions(ds0.struct, inter)
        lobo = np.zeros(len(ds.prompts))
        for b in sorted(set(ds.bench)):
            held = bench == b
            lobo[held] = fit_head(ds, ~held, fail, file_of, "pooled", 16, 0.3, 0.3)(
                ds.struct[held], [ds.tok_rows[i] for i in np.flatnonzero(held)]
            )
        split = fit_head(ds, ~test, fail, file_of, "pooled", 16, 0.3, 0.3)(ds.struct, ds.tok_rows)
        for label, sc, mask in (("LOBO", lobo, np.ones(len(ds.prompts), bool)), ("split", split, test)):
            vals, per, rhos = [], {}, []
            for fl in files:
                si, wi = (ds.models.index(m) for m in ev.PAIRS[fl])
                for g in sorted(set(ds.group[file_of == fl])):
                    gi = (ds.group == g) & mask
                    rhos.append(ev._spearman(sc[gi], fail[gi]))
                    if abs(np.nanmean(mat[gi, si]) - np.nanmean(mat[gi, wi])) >= ev.MIN_GAP:
                        v = pair_apgrs(sc[gi], mat[gi], [(si, wi)])[0]
                        vals.append(v)
                        per[ds.group_names[g]] = (v, rhos[-1])
            mixed = []
            if label == "LOBO":
                for fl in files:
                    sel = file_of == fl
                    si, wi = (ds.models.index(m) for m in ev.PAIRS[fl])
                    mixed.append(f"{fl} {pair_apgrs(sc[sel], mat[sel], [(si, wi)])[0]:.3f}")
            g8 = per.get("routerdc7/gsm8k", (np.nan, np.nan))
            mp = per.get("routerdc7/math_prealgebra", (np.nan, np.nan))
            print(
                f"{name:12s} {label:5s} APGR {np.mean(vals):.3f} / {min(vals):.3f} rho {np.mean(rhos):+.3f} "
                f"gsm8k {g8[0]:.3f} ({g8[1]:+.3f}) math {mp[0]:.3f} ({mp[1]:+.3f}) {' '.join(mixed)}"
            )
    return 0


def _fast_head(xs_all, train, fail, group, file_of, mode, n_s, dim, lam):
    """Ridge head on precomputed features ``xs_all = [struct_std | emb32]`` (first *dim* emb dims)."""
    xs = xs_all[:, : n_s + dim]
    xc = xs.copy()
    yz = np.zeros(len(fail))
    w = np.zeros(len(fail))
    gs = [g for g in np.unique(group[train])]
    units = (
        [train & (file_of == f) for f in set(file_of[train])]
        if mode == "pooled"
        else [train & (group == g) for g in gs]
    )
    for i in units:
        xc[i] = xs[i] - xs[i].mean(0)
        yz[i] = (fail[i] - fail[i].mean()) / (fail[i].std() + 1e-9)
    for g in gs:
        i = train & (group == g)
        w[i] = 1.0 / i.sum() / len(gs)
    beta = tp.ridge_length_floor(xc[train], yz[train], w[train], np.full(xs.shape[1], lam))
    return xs @ beta


def _fold_features(ds, train):
    table, tw = tp.token_table(ds, train, 32, 1e-3)
    emb = token_means_rows(ds.tok_rows, table, tw)
    s = ds.struct[train]
    mu, sd = s.mean(0), s.std(0)
    sd = np.where(sd < 1e-6, 1.0, sd)
    me, se = emb[train].mean(0), emb[train].std(0)
    se = np.where(se < 1e-9, 1.0, se)
    return np.c_[np.clip((ds.struct - mu) / sd, -5, 5), (emb - me) / se]


def nested_main() -> int:
    """Nested leave-one-benchmark-out: the head's settings are chosen *without* the outer
    benchmark (inner LOBO over the rest, criterion = mean of the within-benchmark and mixed
    APGR), then scored on it. An unbiased estimate of what the selection is worth."""
    ds = load(True)
    mat, file_of, files, _fm, fail = _setup(ds)
    n_s = ds.struct.shape[1]
    grid = [(m, d, lam) for m in ("within", "pooled") for d in (0, 8, 16, 32) for lam in (0.1, 0.3, 1.0)]
    bench = np.array(ds.bench)
    names = sorted(set(ds.bench))
    pairs = {f: tuple(ds.models.index(m) for m in ev.PAIRS[f]) for f in files}

    def views(sc, mask):
        within, mixed = [], []
        for fl in files:
            si, wi = pairs[fl]
            for g in np.unique(ds.group[mask & (file_of == fl)]):
                gi = mask & (ds.group == g)
                if abs(np.nanmean(mat[gi, si]) - np.nanmean(mat[gi, wi])) >= ev.MIN_GAP:
                    within.append(pair_apgrs(sc[gi], mat[gi], [(si, wi)])[0])
            sel = mask & (file_of == fl)
            if sel.any():
                mixed.append(pair_apgrs(sc[sel], mat[sel], [(si, wi)])[0])
        return within, mixed

    outer = {k: np.zeros(len(ds.prompts)) for k in ("nested", "fixed")}
    chosen = {}
    for b in names:
        held = bench == b
        rest = [x for x in names if x != b]
        inner = {cfg: np.zeros(len(ds.prompts)) for cfg in grid}
        for c in rest:
            tr = ~held & (bench != c)
            xs = _fold_features(ds, tr)
            for cfg in grid:
                inner[cfg][bench == c] = _fast_head(xs, tr, fail, ds.group, file_of, cfg[0], n_s, cfg[1], cfg[2])[
                    bench == c
                ]
        crit = {}
        for cfg, sc in inner.items():
            w, m = views(sc, ~held)
            crit[cfg] = (np.mean(w) + np.mean(m)) / 2
        best = max(grid, key=lambda k: (crit[k], k[0] == "within", -k[1], k[2]))
        chosen[b] = best
        xs = _fold_features(ds, ~held)
        outer["nested"][held] = _fast_head(xs, ~held, fail, ds.group, file_of, *best[:1], n_s, best[1], best[2])[held]
        outer["fixed"][held] = _fast_head(xs, ~held, fail, ds.group, file_of, "pooled", n_s, 16, 0.3)[held]
        print(f"outer {b}: chose {best} (inner criterion {crit[best]:.3f})", file=sys.stderr)
    length = np.log1p([len(p) for p in ds.prompts])
    everything = np.ones(len(ds.prompts), dtype=bool)
    for name, sc in (("length", length), ("shipped settings", outer["fixed"]), ("nested choice", outer["nested"])):
        w, m = views(sc, everything)
        print(
            f"{name:18s} LOBO within mean / worst {np.mean(w):.3f} / {min(w):.3f}   mixed "
            + " ".join(f"{x:.3f}" for x in m)
        )
    print("choices:", {k: v for k, v in chosen.items()})
    return 0


def _types(struct: np.ndarray) -> np.ndarray:
    """(n, 3) indicators: multiple choice, code, maths (numbers, no code); else none."""
    ch = struct[:, F.STRUCT_NAMES.index("log_choices")] > 0
    code = struct[:, F.STRUCT_NAMES.index("log_code_marks")] > 0.1
    num = struct[:, F.STRUCT_NAMES.index("log_numbers")] > 0.2
    return np.c_[ch, code & ~ch, num & ~code & ~ch].astype(float)


def typed_main() -> int:
    """Pooled head plus type-specific deviations (type indicator x structural features)."""
    import copy

    ds0 = load(True)
    mat, file_of, files, _fm, fail = _setup(ds0)
    t = _types(ds0.struct)
    keep = [
        F.STRUCT_NAMES.index(n)
        for n in (
            "log_chars",
            "log_numbers",
            "digit_token_frac",
            "log_math_marks",
            "log_negations",
            "log_newlines",
            "type_token_ratio",
            "frac_rare_tokens",
        )
    ]
    sub = ds0.struct[:, keep]
    sub = (sub - sub.mean(0)) / (sub.std(0) + 1e-9)
    typed = np.concatenate([t] + [t[:, [k]] * sub for k in range(3)], axis=1)
    bench = np.array(ds0.bench)
    test = ev.split_mask(ds0)
    for name, extra in (("pooled", None), ("pooled+typed", typed)):
        ds = copy.copy(ds0)
        if extra is not None:
            ds.struct = np.c_[ds0.struct, extra]
        lobo = np.zeros(len(ds.prompts))
        for b in sorted(set(ds.bench)):
            held = bench == b
            rows = [ds.tok_rows[i] for i in np.flatnonzero(held)]
            lobo[held] = fit_head(ds, ~held, fail, file_of, "pooled", 16, 0.3, 0.3)(ds.struct[held], rows)
        split = fit_head(ds, ~test, fail, file_of, "pooled", 16, 0.3, 0.3)(ds.struct, ds.tok_rows)
        for label, sc, mask in (("LOBO", lobo, np.ones(len(ds.prompts), bool)), ("split", split, test)):
            vals, per = [], {}
            for fl in files:
                si, wi = (ds.models.index(m) for m in ev.PAIRS[fl])
                for g in sorted(set(ds.group[file_of == fl])):
                    gi = (ds.group == g) & mask
                    if abs(np.nanmean(mat[gi, si]) - np.nanmean(mat[gi, wi])) >= ev.MIN_GAP:
                        vals.append(pair_apgrs(sc[gi], mat[gi], [(si, wi)])[0])
                        per[ds.group_names[g]] = (vals[-1], ev._spearman(sc[gi], fail[gi]))
            mixed = []
            if label == "LOBO":
                for fl in files:
                    sel = file_of == fl
                    si, wi = (ds.models.index(m) for m in ev.PAIRS[fl])
                    mixed.append(f"{fl} {pair_apgrs(sc[sel], mat[sel], [(si, wi)])[0]:.3f}")
            print(f"{name:13s} {label:5s} APGR {np.mean(vals):.3f} / {min(vals):.3f} {' '.join(mixed)}")
            print("     " + " ".join(f"{k.split('/')[1][:9]}{k[6]}={v[0]:.3f}({v[1]:+.2f})" for k, v in per.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
