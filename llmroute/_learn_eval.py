"""Learning curves for ``python -m llmroute.eval DATA ... --learn N --observe both|routed``.

The prompts of DATA (every benchmark mixed, as a user's traffic is) are put in a random order
drawn from ``--seed``. The first N are handled as live traffic by an online learner
(:class:`llmroute.learning.OnlineLearner`, the router's own), which learns after each; then
learning is frozen and the remaining prompts are scored per benchmark, beside the zero-shot
prior, prompt length and random.

Strong/weak mode (``--strong S --weak W``):

* the prior of each model's quality is the zero-shot score's: with vectors fitted on your labels
  (``--config``, or ``--score gap``) their predicted qualities; else a difficulty prior,
  ``q_weak = 1 - difficulty`` and ``q_strong = 1 - difficulty / 2``, whose gap ranks prompts
  exactly as the difficulty does;
* the learned routing score is ``(q_strong + learned_strong) - (q_weak + learned_weak)``;
* ``--observe both``: after each of the N calls the learner sees both models' scores;
* ``--observe routed``: the router calls one model per prompt and sees only its score. It
  routes a Thompson sample of the gap (each head's posterior) against the running
  ``1 - --learn-share`` quantile of the learned gaps seen so far, so that about that share of
  the calls go to the strong model, exploring where it is unsure; the share actually spent is
  reported (``learn_strong_share``).

Pool mode (``--pool A,B,... --prices ...``): each model's prior is the predictor's quality for it
(training-pool vector, ``like`` or tier, else the price prior of unknown models); ``both`` shows
the learner every model's score, ``routed`` only the model that the router's own predictive
decision (:meth:`llmroute.learning.Learning.decide`, cost weight ``--learn-cost-weight``,
Thompson exploration capped by ``--explore-share``) picked. The output keeps pool mode's
``curve`` (now the learned router's), ``oracle``, ``single`` and ``cost_ratio_at_95`` per
benchmark, over the held-out prompts, and adds the zero-shot router's ``zero_shot_curve`` and
``zero_shot_cost_ratio_at_95``.

``--json`` keeps each mode's per-benchmark format; the added keys sit inside each benchmark's
object (``zero_shot_apgr``, ``length_apgr``, ``learn_n``, ``learn_strong_share`` ...).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from llmroute.eval import (
    PromptRow,
    _fmt,
    _pair_rows_profiles,
    _pool_rows,
    _predict_all,
    _resolve_mode,
    _routing_scores,
    evaluate_pair,
    pool_result,
)
from llmroute.learning import prior_profiles

__all__ = ["learn_pair", "learn_pool", "main"]

#: Difficulty prior of the strong model in strong/weak mode: it fails this share as often as the weak one.
STRONG_FAIL_RATIO = 0.5


def _order(n: int, seed: int, learn: int) -> tuple[list[int], list[int]] | None:
    import numpy as np

    if learn < 0:
        print("error: --learn must be >= 0", file=sys.stderr)
        return None
    if learn >= n:
        print(f"error: --learn {learn} leaves none of the {n} prompts to evaluate", file=sys.stderr)
        return None
    perm = np.random.default_rng(seed).permutation(n).tolist()
    return perm[:learn], perm[learn:]


def main(args: argparse.Namespace, rows: list[PromptRow], predictor: Any) -> int:
    """Run ``--learn`` in strong/weak or pool mode; returns the exit code."""
    if args.pool:
        return _pool(args, rows, predictor)
    return _pair(args, rows, predictor)


def _by_bench(rows: Sequence[PromptRow], idx: Sequence[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in idx:
        out.setdefault(rows[i].benchmark, []).append(i)
    return dict(sorted(out.items()))


def _pair(args: argparse.Namespace, rows: list[PromptRow], predictor: Any) -> int:
    if not 0.0 <= args.learn_share <= 1.0:
        print("error: --learn-share must be within [0, 1]", file=sys.stderr)
        return 2
    got = _pair_rows_profiles(args, rows)
    if got is None:
        return 2
    rows, profiles = got
    split = _order(len(rows), args.seed, args.learn)
    if split is None:
        return 2
    learn_idx, test_idx = split
    preds = _predict_all(rows, profiles, predictor, not args.no_progress)
    mode = _resolve_mode(args, preds)
    result, share = learn_pair(
        rows, preds, args.strong, args.weak, mode, learn_idx, test_idx, args.observe, args.learn_share, args.seed
    )
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    how = f"observe {args.observe}" + (f", strong share while learning {share:.3f}" if share is not None else "")
    print(
        f"strong={args.strong}  weak={args.weak}  learned online from {len(learn_idx)} prompts ({how}; seed "
        f"{args.seed}); prior: {'fitted vectors' if mode == 'gap' else 'difficulty'}; scored on the other "
        f"{len(test_idx)}"
    )
    head = f"{'benchmark':<22}{'n':>6}  {'strong':>6} {'weak':>6} |  {'APGR':>6} {'CPT50':>6} {'CPT80':>6}"
    head += f" | {'0-shot':>6} {'len':>6} | {'rand':>5} {'oracle':>6}"
    print(head)
    print("-" * len(head))
    for bench, e in result.items():
        print(
            f"{bench:<22}{e['n']:>6}  {e['strong_mean']:6.3f} {e['weak_mean']:6.3f} |  {e['apgr']:6.3f} "
            f"{e['cpt50']:6.3f} {e['cpt80']:6.3f} | {e['zero_shot_apgr']:6.3f} {e['length_apgr']:6.3f} | "
            f"{0.5:5.2f} {e['oracle_apgr']:6.3f}"
        )
    print("APGR of the learned router (learning frozen) vs zero-shot, length and random (0.5), held-out prompts.")
    return 0


def learn_pair(
    rows: Sequence[PromptRow],
    preds: Sequence[Any],
    strong: str,
    weak: str,
    mode: str,
    learn_idx: Sequence[int],
    test_idx: Sequence[int],
    observe: str,
    learn_share: float = 0.5,
    seed: int = 0,
    settings: Any = None,
) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Learn online on *learn_idx*, then score *test_idx* per benchmark (see the module docstring).

    Returns ``({benchmark: metrics}, strong share while learning or None)``; *preds* are the
    predictor's predictions of *rows*, *mode* the zero-shot score (``gap`` or ``difficulty``).
    """
    import numpy as np

    from llmroute.learning import OnlineLearner

    s, w = strong, weak
    if mode == "gap":
        prior = [(p.quality[s], p.quality[w]) for p in preds]
    else:
        prior = [(1.0 - STRONG_FAIL_RATIO * p.difficulty, 1.0 - p.difficulty) for p in preds]
    learner = OnlineLearner(settings)
    xs = [learner.encode(p) for p in preds]
    rng = np.random.default_rng(seed)
    seen: list[float] = []
    strong_calls = 0
    for i in learn_idx:
        x, (qs, qw), scores = xs[i], prior[i], rows[i].scores
        if observe == "both":
            learner.update(s, x, scores[s] - qs)
            learner.update(w, x, scores[w] - qw)
            continue
        (ms, mw), (vs, vw) = learner.predict([s, w], x)
        gap = (qs + ms) - (qw + mw)
        seen.append(gap)
        threshold = float(np.quantile(seen, 1.0 - learn_share)) if learn_share < 1 else -math.inf
        sampled = gap + math.sqrt(vs + vw) * float(rng.standard_normal())
        if learn_share > 0 and sampled >= threshold:
            strong_calls += 1
            learner.update(s, x, scores[s] - qs)
        else:
            learner.update(w, x, scores[w] - qw)
    share = strong_calls / len(learn_idx) if observe == "routed" and learn_idx else None

    def learned(i: int) -> float:
        (ms, mw), _ = learner.predict([s, w], xs[i])
        return (prior[i][0] + ms) - (prior[i][1] + mw)

    result: dict[str, dict[str, Any]] = {}
    for bench, idx in _by_bench(rows, test_idx).items():
        sc = [rows[i].scores[s] for i in idx]
        wc = [rows[i].scores[w] for i in idx]
        m = evaluate_pair([learned(i) for i in idx], sc, wc)
        z = evaluate_pair(_routing_scores(preds, idx, mode, s, w), sc, wc)
        ln = evaluate_pair([float(len(rows[i].prompt)) for i in idx], sc, wc)
        if m.degenerate:
            print(f"warning: {bench}: strong and weak means are equal; reporting random values", file=sys.stderr)
        entry: dict[str, Any] = {"apgr": m.apgr, "cpt50": m.cpt50, "cpt80": m.cpt80, "n": m.n}
        entry.update(
            zero_shot_apgr=z.apgr,
            zero_shot_cpt50=z.cpt50,
            length_apgr=ln.apgr,
            oracle_apgr=m.oracle_apgr,
            strong_mean=m.strong_mean,
            weak_mean=m.weak_mean,
            learn_n=len(learn_idx),
            observe=observe,
        )
        if share is not None:
            entry["learn_strong_share"] = share
        result[bench] = entry
    return result, share


def _pool(args: argparse.Namespace, rows: list[PromptRow], predictor: Any) -> int:
    got = _pool_rows(args, rows)
    if got is None:
        return 2
    pool, prices, rows = got
    if not 0.0 <= args.explore_share <= 1.0:
        print("error: --explore-share must be within [0, 1]", file=sys.stderr)
        return 2
    split = _order(len(rows), args.seed, args.learn)
    if split is None:
        return 2
    learn_idx, test_idx = split
    preds = _predict_all(rows, prior_profiles(pool, prices, predictor), predictor, not args.no_progress)
    out = learn_pool(
        rows,
        preds,
        pool,
        prices,
        learn_idx,
        test_idx,
        args.observe,
        seed=args.seed,
        cost_weight=args.learn_cost_weight,
        explore_share=args.explore_share,
    )
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    print(
        f"pool of {len(pool)}: learned online from {len(learn_idx)} prompts (observe {args.observe}; seed "
        f"{args.seed}), scored on the other {len(test_idx)}"
    )
    for bench, res in out.items():
        print(
            f"== {bench} (n={res['n']}) cost ratio at 95 % of the best single model: learned "
            f"{_fmt(res['cost_ratio_at_95']).strip()}, zero-shot {_fmt(res['zero_shot_cost_ratio_at_95']).strip()}"
        )
        print(
            "  single models: "
            + ", ".join(f"{m}: score {v['score']:.3f} @ {v['cost']:g}" for m, v in res["single"].items())
        )
        cols = f"  {'lambda':>10} {'cost':>10} {'score':>7} | {'0-shot cost':>11} {'score':>7}"
        print(cols + f" | {'oracle':>9} {'score':>7}")
        for c, z, o in zip(res["curve"], res["zero_shot_curve"], res["oracle"], strict=True):
            print(
                f"  {c['lambda']:10.4g} {c['cost']:10.4g} {c['score']:7.3f} | {z['cost']:11.4g} {z['score']:7.3f} | "
                f"{o['cost']:9.4g} {o['score']:7.3f}"
            )
    return 0


def learn_pool(
    rows: Sequence[PromptRow],
    preds: Sequence[Any],
    pool: Sequence[str],
    prices: dict[str, float],
    learn_idx: Sequence[int],
    test_idx: Sequence[int],
    observe: str,
    *,
    seed: int = 0,
    cost_weight: float | None = None,
    explore_share: float = 0.1,
    settings: Any = None,
) -> dict[str, Any]:
    """Learn online on *learn_idx*, then the pool-mode result of *test_idx* per benchmark
    (see the module docstring)."""
    from llmroute.config import LearningConfig
    from llmroute.learning import Learning
    from llmroute.policy.predictive import PredictiveCandidate

    learning = Learning(None, settings, config=LearningConfig(seed=seed, explore_share=explore_share))
    top = max(prices.values()) or 1.0
    lam = cost_weight if cost_weight is not None else 0.1 / top
    cands = [PredictiveCandidate(m, prices[m]) for m in pool]
    spent = 0.0
    for i in learn_idx:
        scores = rows[i].scores
        if observe == "both":
            for m in pool:
                learning.learn(m, preds[i], scores[m])
            continue
        chosen = learning.decide(preds[i], cands, cost_weight=lam).chosen or pool[0]
        spent += prices[chosen]
        learning.learn(chosen, preds[i], scores[chosen])
    learner = learning.learner
    learned: list[dict[str, float]] = [{} for _ in rows]
    for i in test_idx:
        x = learning._encode(preds[i])
        mean = learner.predict(pool, x)[0] if x is not None else [0.0] * len(pool)
        learned[i] = {m: min(1.0, max(0.0, preds[i].quality[m] + mu)) for m, mu in zip(pool, mean)}
    zero = [p.quality for p in preds]
    out: dict[str, Any] = {}
    for bench, idx in _by_bench(rows, test_idx).items():
        res = pool_result(rows, idx, learned, pool, prices)
        zs = pool_result(rows, idx, zero, pool, prices)
        res["zero_shot_curve"] = zs["curve"]
        res["zero_shot_cost_ratio_at_95"] = zs["cost_ratio_at_95"]
        res["learn_n"] = len(learn_idx)
        res["observe"] = observe
        if observe == "routed" and learn_idx:
            res["learn_mean_cost"] = spent / len(learn_idx)
            res["learn_explored"] = learning.explored_calls
        out[bench] = res
    return out
