"""Experiment: how much do labels from the user's own traffic help on a task the predictor never saw?

For every benchmark, the model is fitted without it (leave-one-benchmark-out). Its prompts are
then split by question into "your traffic" (the first *n* labelled prompts, in a fixed hashed
order) and a test set (the rest, at least half). On the traffic, the strong and the weak
model's vectors are refitted with :func:`llmroute.calibration.fit_model_vector` (network
frozen, prior = the pool vector, what ``llmroute calibrate --model`` and
``Router.refit_models`` do), and the test set is routed by the refitted quality gap. Printed per
benchmark and as means (groups with a strong-weak gap >= 0.05), APGR on the test set for:
length, the predictor's difficulty (no labels), the pool vectors' gap (no labels) and the
refitted gap after n = 25 / 100 / 400 labels.

    python -m training.experiments.user_traffic

Measured with this command (mean / worst APGR on the test halves; random 0.500; each line over
the benchmark rows big enough for that many labels, the baselines on the same rows):

* 25 labels (8 rows): length 0.495 / 0.415, difficulty 0.518 / 0.422, pool-vector gap
  0.508 / 0.397, refitted gap **0.534 / 0.465**;
* 100 labels (6 rows): length 0.486 / 0.415, difficulty 0.521 / 0.422, pool gap 0.516 / 0.428,
  refitted **0.560 / 0.503**;
* 400 labels (4 rows): length 0.479 / 0.415, difficulty 0.499 / 0.422, pool gap 0.489 / 0.428,
  refitted **0.544 / 0.502**.

Largest gains: RouterDC MATH prealgebra 0.428 -> 0.586 (100 labels), RouterDC MBPP 0.485 -> 0.603
(100); none on GSM8K (0.498 -> 0.502 with 400). So labels from the new task fix much of what
the zero-shot prior gets wrong about *which model* does better where (the worst row rises from
about 0.42 to 0.50), though the frozen 4-number latent still caps the per-question signal. Both
models are labelled on the same prompts here, as with ``llmroute calibrate --labels``; feedback
through ``Router.record_feedback`` only labels the model that answered. Takes about a minute.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmroute.calibration import fit_model_vector  # noqa: E402
from llmroute.eval import evaluate_pair  # noqa: E402
from training import evaluate as ev  # noqa: E402
from training import train_predictor as tp  # noqa: E402
from training.experiments.between_topics import load  # noqa: E402

SIZES = (25, 100, 400)


def main() -> int:
    ds = load(True)
    mat = ev._score_matrix(ds)
    bench = np.array(ds.bench)
    rows: dict[str, dict[str, float]] = {}
    for b in sorted(set(ds.bench)):
        held = bench == b
        params = tp.fit(ds, ~held, None)
        for g in np.unique(ds.group[held]):
            gname = ds.group_names[g]
            si, wi = (ds.models.index(m) for m in ev.PAIRS[gname.split("/")[0]])
            idx = np.flatnonzero(ds.group == g)
            idx = idx[~(np.isnan(mat[idx, si]) | np.isnan(mat[idx, wi]))]
            order = sorted(idx, key=lambda i: hashlib.sha256(ds.keys[i].encode()).hexdigest())
            n_test = max(len(order) // 2, len(order) - max(SIZES))
            test, pool = np.array(order[:n_test]), order[n_test:]
            z = tp.forward(params, [ds.buckets[i] for i in test], ds.struct[test], [ds.tokens[i] for i in test])
            z1 = np.c_[np.ones(len(test)), z]
            strong, weak = mat[test, si].tolist(), mat[test, wi].tolist()
            if abs(np.mean(strong) - np.mean(weak)) < ev.MIN_GAP:
                continue
            vec = {m: np.r_[params.theta[m], params.a[m]] for m in (si, wi)}

            def gap(vs: np.ndarray, vw: np.ndarray, z1: np.ndarray = z1) -> list[float]:
                return (1 / (1 + np.exp(-(z1 @ vs))) - 1 / (1 + np.exp(-(z1 @ vw)))).tolist()

            res = {
                "length": evaluate_pair([float(len(ds.prompts[i])) for i in test], strong, weak).apgr,
                "difficulty": evaluate_pair(
                    tp.difficulty(params, ds.struct[test], [ds.tokens[i] for i in test]).tolist(), strong, weak
                ).apgr,
                "pool gap": evaluate_pair(gap(vec[si], vec[wi]), strong, weak).apgr,
            }
            for n in SIZES:
                lab = np.array(pool[:n])
                if len(lab) < n:
                    continue
                zl = tp.forward(params, [ds.buckets[i] for i in lab], ds.struct[lab], [ds.tokens[i] for i in lab])
                fitted = {m: np.array(fit_model_vector(zl, mat[lab, m], prior=vec[m])) for m in (si, wi)}
                res[f"{n} labels"] = evaluate_pair(gap(fitted[si], fitted[wi]), strong, weak).apgr
            rows[gname] = res
            print(f"{gname:28s} " + "  ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
    print("\nmean / worst APGR, each line over the rows where that many labels fit in the traffic half:")
    for n in SIZES:
        have = [r for r in rows.values() if f"{n} labels" in r]
        line = []
        for k in ("length", "difficulty", "pool gap", f"{n} labels"):
            vals = [r[k] for r in have]
            line.append(f"{k} {np.mean(vals):.3f} / {min(vals):.3f}")
        print(f"  {len(have)} rows: " + ", ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
