"""Fit the predictor to your own traffic: route thresholds and new-model vectors.

Pure functions:

* :func:`threshold_for_strong_share` - from unlabelled prompts' routing scores (or predictions:
  their difficulty), the threshold above which a target share of calls goes to the strong model.
* :func:`quality_target_for_strong_share` - the same, as a predictive route's ``quality_target``:
  the route escalates past the weak model when its predicted quality is below the target.
* :func:`threshold_for_quality` - from labelled prompts, the smallest strong share (and its
  threshold) whose routed mean quality reaches a target.
* :func:`accept_for_escalation_share` - a cascade route's ``accept`` threshold from the checks'
  verdicts on a sample of the cheap tier's answers: about a target share of them escalates.
* :func:`fit_model_vector` - a new model's vector from a handful of labelled prompts, with the
  network frozen (L2-regularised logistic regression on the prompt latents, pulled toward a prior).

CLI (also ``llmroute calibrate``), writing into a JSON config file::

    python -m llmroute.calibration --config cfg.json --route auto --prompts prompts.jsonl --strong-share 0.3
    python -m llmroute.calibration --config cfg.json --route auto --labels data.csv \\
        --strong big --weak small --target-quality 0.85
    python -m llmroute.calibration --config cfg.json --model my-model --labels data.csv
    python -m llmroute.calibration --config cfg.json --model my-model --like gpt-4-1106-preview

Prompts files: ``.jsonl`` (one object per line with ``prompt`` or ``messages``), ``.txt`` (one
prompt per line) or a long-format CSV/Parquet (``prompt`` column). Labels: the long format of
``python -m llmroute.eval``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ModelRefit",
    "accept_for_escalation_share",
    "fit_model_vector",
    "main",
    "quality_target_for_strong_share",
    "threshold_for_quality",
    "threshold_for_strong_share",
]


def _scores(predictions_or_scores: Sequence[Any]) -> list[float]:
    out = []
    for p in predictions_or_scores:
        out.append(float(p.difficulty) if hasattr(p, "difficulty") else float(p))
    return out


def threshold_for_strong_share(predictions_or_scores: Sequence[Any], target_share: float) -> float:
    """Threshold ``t`` such that about ``target_share`` of the scores are ``> t``.

    Items are routing scores (higher = strong) or predictions (their ``difficulty``). Route to
    the strong model when ``score > t``. ``target_share`` 0 gives the maximum score, 1 gives
    just below the minimum.
    """
    if not 0.0 <= target_share <= 1.0:
        raise ValueError("target_share must be in [0, 1]")
    s = sorted(_scores(predictions_or_scores))
    if not s:
        raise ValueError("no scores")
    n = len(s)
    k = round(target_share * n)  # number of strong calls
    if k <= 0:
        return s[-1]
    if k >= n:
        return math.nextafter(s[0], -math.inf)
    lo, hi = s[n - k - 1], s[n - k]
    return (lo + hi) / 2.0 if lo != hi else lo


def quality_target_for_strong_share(predictions: Sequence[Any], weak_model: str, target_share: float) -> float:
    """A route ``quality_target`` that sends about ``target_share`` of calls past *weak_model*.

    The predictive strategy keeps the weak (cheap) model when its predicted quality is >= the
    target, so the target is the ``target_share`` quantile of the weak model's predicted quality.
    """
    q = [-float(p.quality[weak_model]) for p in predictions]
    # escalate when q_weak < target  <=>  -q_weak > -target
    return -threshold_for_strong_share(q, target_share)


def accept_for_escalation_share(verdicts_or_scores: Sequence[Any], target_share: float) -> float:
    """A cascade ``accept`` threshold that escalates about *target_share* of the answers.

    Items are :class:`~llmroute.checks.Verdict` values (their ``score``) or scores in [0, 1] of the
    cheap tier's answers on a sample of real requests. A cascade keeps an answer when
    ``score >= accept``, so the threshold is the *target_share* quantile of the scores (answers
    scoring the same escalate together: the share is met as closely as ties allow).
    """
    scores = [float(v.score) if hasattr(v, "score") else float(v) for v in verdicts_or_scores]
    if any(not math.isfinite(x) for x in scores):
        raise ValueError("verdict scores must be finite numbers")
    # escalate when 1 - score > t  <=>  score < 1 - t
    t = threshold_for_strong_share([1.0 - x for x in scores], target_share)
    return min(1.0, max(0.0, 1.0 - t))


def threshold_for_quality(
    scores: Sequence[float],
    strong: Sequence[float],
    weak: Sequence[float],
    target_quality: float,
) -> tuple[float, float]:
    """``(threshold, strong_share)``: the fewest strong calls whose routed mean quality >= target.

    Labelled prompts: routing scores and each model's observed score. Routes ``score > threshold``
    to the strong model. If even all-strong misses the target, returns the all-strong threshold.
    """
    n = len(scores)
    if n == 0 or n != len(strong) or n != len(weak):
        raise ValueError("scores, strong and weak must be non-empty and of equal length")
    order = sorted(range(n), key=lambda i: -scores[i])
    total = sum(weak)
    best_k = n
    if total / n >= target_quality:
        best_k = 0
    else:
        for k, i in enumerate(order, start=1):
            total += strong[i] - weak[i]
            # only cut between distinct scores
            if k < n and scores[order[k]] == scores[i]:
                continue
            if total / n >= target_quality:
                best_k = k
                break
    share = best_k / n
    return threshold_for_strong_share(scores, share), share


@dataclass(frozen=True, slots=True)
class ModelRefit:
    """One model's vector refitted from feedback (:meth:`llmroute.Router.refit_models`)."""

    model: str
    #: Feedback labels the fit used.
    labels: int
    #: Mean feedback score of those labels.
    mean_score: float
    #: Where the vector came from before (``pool``, ``tier:large``, ``vector``, ``neutral``...).
    source_before: str
    vector_before: tuple[float, ...]
    vector_after: tuple[float, ...]


def fit_model_vector(
    latents: Sequence[Sequence[float]],
    scores: Sequence[float],
    *,
    prior: Sequence[float],
    l2: float = 1.0,
    iterations: int = 50,
) -> list[float]:
    """Fit one model's vector ``v`` from labelled prompts, with the network frozen.

    Minimises ``sum BCE(score, sigmoid(v . [1, z])) + l2/2 * |v - prior|^2`` by Newton's
    method; ``latents`` are the prompts' :attr:`Prediction.latent`, ``scores`` in [0, 1].
    With few labels the prior (a tier's or a resembling model's vector) dominates.
    """
    import numpy as np

    z = np.asarray(latents, dtype=np.float64)
    y = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    p0 = np.asarray(prior, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != y.size or z.shape[1] + 1 != p0.size:
        raise ValueError("latents must be (n, K), scores (n,), prior (K + 1,)")
    x = np.c_[np.ones(len(y)), z]
    v = p0.copy()
    for _ in range(iterations):
        s = 1.0 / (1.0 + np.exp(-(x @ v)))
        grad = x.T @ (s - y) + l2 * (v - p0)
        hess = (x * (s * (1 - s))[:, None]).T @ x + l2 * np.eye(v.size)
        step = np.linalg.solve(hess, grad)
        v -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    return [float(t) for t in v]


# ---------------------------------------------------------------------------- CLI


def _read_prompts(path: Path) -> list[Any]:
    name = path.name.lower()
    if name.endswith(".jsonl"):
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                out.append(obj.get("messages") or obj.get("prompt") or "")
        return out
    if name.endswith(".txt"):
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    from llmroute.eval import load_long

    return [r.prompt for r in load_long(path)]


def _load_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SystemExit(f"error: {path} is not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise SystemExit(f"error: {path} does not hold a JSON object")
    return cfg


def _route_weak(cfg: Mapping[str, Any], route: str, weak: str | None) -> str:
    if weak:
        return weak
    models = cfg.get("routes", {}).get(route, {}).get("models") or []
    if not models:
        raise SystemExit(f"error: route {route!r} lists no models; pass --weak")
    return str(models[0])


def _profile(cfg: Mapping[str, Any], name: str) -> Any:
    from llmroute.predictor import ModelProfile

    entry = cfg.get("models", {}).get(name, {})
    return ModelProfile.from_config(name, entry.get("predictor") if isinstance(entry, Mapping) else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the calibration CLI; returns the exit code."""
    ap = argparse.ArgumentParser(prog="llmroute calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True, help="JSON config file to update")
    ap.add_argument("--route", help="route whose quality_target to set")
    ap.add_argument("--prompts", type=Path, help="unlabelled prompts (.jsonl, .txt, CSV, Parquet)")
    ap.add_argument("--labels", type=Path, help="labelled long-format data (CSV, CSV.gz, Parquet)")
    ap.add_argument("--strong-share", type=float, help="target share of calls past the weak model")
    ap.add_argument("--target-quality", type=float, help="target mean quality (needs --labels)")
    ap.add_argument("--strong", help="strong model (default: last model of the route)")
    ap.add_argument("--weak", help="weak model (default: first model of the route)")
    ap.add_argument("--model", help="write a predictor profile for this model")
    ap.add_argument("--like", help="with --model: a training-pool model it resembles")
    ap.add_argument("--tier", choices=("small", "medium", "large", "frontier"), help="with --model: size tier prior")
    ap.add_argument("--l2", type=float, default=1.0, help="with --model --labels: pull toward the prior")
    ap.add_argument("--predictor", help="predictor.onnx to use instead of the shipped one")
    ap.add_argument("--dry-run", action="store_true", help="print the change, do not write")
    args = ap.parse_args(argv)

    from llmroute.predictor import ModelProfile, Predictor, PredictorUnavailableError

    cfg = _load_config(args.config)
    try:
        pred = Predictor.load(args.predictor) if args.predictor else Predictor.default()
        change: dict[str, Any]
        if args.model:
            entry: dict[str, Any]
            if args.labels:
                rows = [r for r in _load_labels(args.labels) if args.model in r.scores]
                if not rows:
                    raise SystemExit(f"error: no labelled prompt for {args.model!r} in {args.labels}")
                prior_profile = ModelProfile(args.model, like=args.like, tier=args.tier or "medium")
                prior, _, _ = pred.resolve(prior_profile)
                lat = [pred.predict(r.prompt).latent for r in rows]
                vec = fit_model_vector(lat, [r.scores[args.model] for r in rows], prior=prior, l2=args.l2)
                entry = {"vector": [round(v, 6) for v in vec], "fitted_on": len(rows)}
            elif args.like:
                entry = {"like": args.like}
            elif args.tier:
                entry = {"tier": args.tier}
            else:
                raise SystemExit("error: --model needs --labels, --like or --tier")
            cfg.setdefault("models", {}).setdefault(args.model, {})["predictor"] = entry
            change = {f"models.{args.model}.predictor": entry}
        elif args.route and args.strong_share is not None:
            if args.prompts is None:
                raise SystemExit("error: --strong-share needs --prompts")
            weak = _route_weak(cfg, args.route, args.weak)
            prompts = _read_prompts(args.prompts)
            preds = [pred.predict(p, [_profile(cfg, weak)]) for p in prompts]
            target = quality_target_for_strong_share(preds, weak, args.strong_share)
            cfg.setdefault("routes", {}).setdefault(args.route, {})["quality_target"] = round(target, 6)
            change = {f"routes.{args.route}.quality_target": round(target, 6), "prompts": len(prompts)}
        elif args.route and args.target_quality is not None:
            if args.labels is None:
                raise SystemExit("error: --target-quality needs --labels")
            weak = _route_weak(cfg, args.route, args.weak)
            models = cfg.get("routes", {}).get(args.route, {}).get("models") or []
            strong = args.strong or (str(models[-1]) if models else None)
            if not strong:
                raise SystemExit("error: pass --strong")
            rows = [r for r in _load_labels(args.labels) if strong in r.scores and weak in r.scores]
            if not rows:
                raise SystemExit(f"error: no labelled prompt has scores for both {strong!r} and {weak!r}")
            preds = [pred.predict(r.prompt, [_profile(cfg, weak)]) for r in rows]
            qw = [p.quality[weak] for p in preds]
            neg = [-q for q in qw]
            thr, share = threshold_for_quality(
                neg, [r.scores[strong] for r in rows], [r.scores[weak] for r in rows], args.target_quality
            )
            target = round(-thr, 6)
            cfg.setdefault("routes", {}).setdefault(args.route, {})["quality_target"] = target
            change = {f"routes.{args.route}.quality_target": target, "strong_share": share, "prompts": len(rows)}
        else:
            ap.error("give --model, or --route with --strong-share or --target-quality")
            return 2
    except PredictorUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(change, sort_keys=True))
    if not args.dry_run:
        args.config.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return 0


def _load_labels(path: Path) -> list[Any]:
    from llmroute.eval import load_long

    return load_long(path)


if __name__ == "__main__":
    raise SystemExit(main())
