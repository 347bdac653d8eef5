"""Experiment: does adding prompt length to the difficulty make the zero-shot prior >= length everywhere?

On tasks it never saw, the shipped difficulty routes below prompt length on grade-school maths
and (per the held-out measurements in ``shared/PREDICTOR.md``) knowledge QA. The simplest floor
is to add length to its logit: ``score = logit(difficulty) + kappa * log(1 + characters)``. This
scores that family on the held-out predictors exported by
``python -m training.experiments.learning_curves`` (each fitted without the prompts it scores:
leave-one-benchmark-out, and two mixed-topic folds), for kappa in 0, 0.25, 0.5, 1, 2 and length
alone::

    python -m training.experiments.length_floor [--work /tmp/llmroute_learning_curves]

Measured (APGR of the file's strong/weak pair; means over the rows with a gap >= 0.05):

* single benchmarks (LOBO), mean: 0.524 (kappa 0), 0.519, 0.517, 0.512, 0.507 (kappa 2); length
  0.496. GSM8K 0.503 -> 0.519 (length 0.521), HumanEval 0.553 -> 0.581 (length 0.584), but
  RouterBench ARC 0.579 -> 0.541, MBPP 0.588 -> 0.534, WinoGrande 0.521 -> 0.492.
* mixed topics, mean: 0.616 (kappa 0), 0.604, 0.594, 0.580, 0.563; length 0.533.

So a length term buys GSM8K and HumanEval only by giving up more elsewhere: no kappa is >= length
on every row without losing the mean, and the shipped prior was left as it is. Length stays an
input of the online learner (``llmroute/learning.py``), which can weigh it per user.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmroute.eval import evaluate_pair, load_long  # noqa: E402
from llmroute.predictor import Predictor  # noqa: E402
from training.experiments.learning_curves import MIN_GAP, PAIRS  # noqa: E402

KAPPAS = (0.0, 0.25, 0.5, 1.0, 2.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.experiments.length_floor")
    ap.add_argument("--work", type=Path, default=Path("/tmp/llmroute_learning_curves"))
    args = ap.parse_args(argv)
    if not args.work.is_dir():
        raise SystemExit(f"error: {args.work} holds no exported predictors: run training.experiments.learning_curves")
    res: dict[str, tuple[float, list[float]]] = {}
    for d in sorted(args.work.iterdir()):
        pred = Predictor.load(d / "predictor.onnx")
        rows = load_long(d / "heldout.csv.gz")
        for file, (s, w) in PAIRS.items():
            mine = [r for r in rows if r.benchmark.startswith(file + "/") and s in r.scores and w in r.scores]
            groups: dict[str, list] = {}
            for r in mine:
                groups.setdefault(r.benchmark if d.name.startswith("lobo_") else f"{file} mixed {d.name}", []).append(r)
            for name, grp in groups.items():
                diff = [pred.predict(r.prompt).difficulty for r in grp]
                logit = np.array([math.log(x / (1 - x)) for x in diff])
                length = np.array([math.log1p(len(r.prompt)) for r in grp])
                strong, weak = [r.scores[s] for r in grp], [r.scores[w] for r in grp]
                out = [evaluate_pair((logit + k * length).tolist(), strong, weak).apgr for k in KAPPAS]
                out.append(evaluate_pair(length.tolist(), strong, weak).apgr)
                res[name] = (abs(float(np.mean(strong)) - float(np.mean(weak))), out)
                print(f"{name:32s} gap {res[name][0]:.3f}  " + " ".join(f"{x:.3f}" for x in out), flush=True)
    print("columns: kappa " + ", ".join(str(k) for k in KAPPAS) + ", length alone")
    for kind in ("lobo", "mixed"):
        keep = [v for k, v in res.items() if ("mixed" in k) == (kind == "mixed") and v[0] >= MIN_GAP]
        if keep:
            mean = np.mean([v[1] for v in keep], axis=0)
            print(f"{kind} mean over {len(keep)} rows: " + " ".join(f"{x:.3f}" for x in mean))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
