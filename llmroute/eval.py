"""Evaluate the predictor as a router on labelled data: ``python -m llmroute.eval DATA ...``.

DATA is CSV, CSV.gz or Parquet in long format, one row per (prompt, model), with the columns
``prompt_id, benchmark, prompt, model, score`` (score in [0, 1]). Parquet needs ``pyarrow``
(``pip install 'llmroute[parquet]'``); CSV is read with the standard library. Without a
``benchmark`` column every prompt is in one group, ``all``.

Strong/weak mode (``--strong S --weak W``), per benchmark, as in RouteLLM:

* A router gives every prompt a *routing score* (higher = send to the strong model). Sweeping a
  threshold over that score routes a share ``c`` of the prompts, in score order, to the strong
  model (``c`` from 0 to 1) and the rest to the weak one; its performance is the mean score of
  the answers it would have got.
* **PGR(c)** (performance gap recovered) = ``(perf(c) - perf_weak) / (perf_strong - perf_weak)``:
  0 when everything goes to the weak model, 1 when everything goes to the strong one.
* **APGR** = area under PGR(c) for ``c`` in [0, 1] (trapezoids). A random router scores 0.5.
* **CPT(x)** = the smallest share of strong calls ``c`` with PGR(c) >= x (a random router needs
  ``c = x``). Reported for x = 50 % and 80 %, as fractions in [0, 1].
* **AUC** = ROC AUC of the routing score for "strong needed" (strong score > weak score).
* References: random (APGR 0.5, CPT(x) = x), prompt length (longer = strong), oracle (strong
  exactly where it scores higher).

Ties in the routing score are resolved in expectation: the curve is evaluated only at the
boundaries of blocks of equal scores and interpolated linearly in between, which is the
expected curve under random tie-breaking (so a constant router scores exactly 0.5).
Where the two models' mean scores differ by less than ``1e-6`` (no gap to recover, PGR is
0/0), the benchmark is reported with the random-router values (APGR 0.5, CPT(x) = x), flagged
``degenerate`` in the human table and on stderr; nothing is divided by zero. A negative gap
(the "weak" model is better) keeps the same formula.

Routing score (``--score``): ``difficulty`` routes the prompts the predictor finds hardest to
the strong model; ``gap`` uses the predicted quality gap ``q_strong - q_weak`` of the two models'
vectors (training pool, ``--strong-like`` / ``--weak-like`` priors, or vectors fitted on your
labels, read from ``--config``). ``auto`` (the default) is the gap when both models have fitted
vectors in ``--config`` (``llmroute calibrate --model``), else the difficulty: on benchmarks the
predictor never saw, difficulty beats the pool vectors' gap (leave-one-benchmark-out tables in
``models/MODEL_CARD.md``), while vectors refitted on a task's own labels beat both
(``python -m training.experiments.user_traffic``). ``--json`` prints exactly one JSON object, the last line of stdout::

    {"<benchmark>": {"apgr": float, "cpt50": float, "cpt80": float, "n": int}, ...}

Cascade mode (``--score cascade --responses RESPONSES``): scores the cascade's answer checks
(``llmroute.checks``, the defaults or ``--checks a,b,c``) as a router. RESPONSES (CSV, CSV.gz or
Parquet with ``prompt_id, model, response``, e.g. ``routerbench_responses.parquet``, or a
responses file that is also DATA) holds the weak model's recorded answers; a prompt's routing
score is the escalation score ``1 - verdict.score`` of the checks on its weak answer, so the
prompts whose cheap answers look worst go to the strong model first. Prompts without a weak
response are skipped and counted on stderr. The human table adds the predictor's difficulty
beside prompt length; ``--json`` keeps the per-benchmark format above.

Multi-model mode (``--pool A,B,C --prices A=0.1,B=1,C=10``): for a sweep of the cost weight
lambda, every prompt goes to the model maximising ``q - lambda * price``; prints the resulting
(mean cost, mean score) curve against the oracle's and each single model's, and per benchmark
``cost_ratio_at_95``: the lowest mean cost on the router's curve whose mean score reaches 95 % of
the best single model's, divided by the price of the cheapest single model that reaches that
score (below 1: routing beats picking one model; null when the curve never reaches it; see
:func:`cost_ratio_at`). Models the predictor does not know get a family or price prior
(:func:`llmroute.learning.prior_profiles`).

Learning curves (``--learn N --observe both|routed [--seed K]``, both modes): the first N prompts
in a seeded random order are handled as live traffic by the online learner, which learns after
each; the rest are scored with learning frozen, beside the zero-shot prior, length and random.
See ``llmroute/_learn_eval.py``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PairMetrics",
    "PromptRow",
    "cost_ratio_at",
    "evaluate_pair",
    "load_long",
    "load_responses",
    "main",
    "pgr_curve",
    "pool_curve",
    "pool_lambdas",
    "pool_result",
]

_EPS_GAP = 1e-6


@dataclass(frozen=True, slots=True)
class PairMetrics:
    """Strong/weak routing metrics of one benchmark (see the module docstring)."""

    apgr: float
    cpt50: float
    cpt80: float
    auc: float | None
    n: int
    strong_mean: float
    weak_mean: float
    oracle_apgr: float
    degenerate: bool


@dataclass(slots=True)
class PromptRow:
    """One prompt of a long-format file with its per-model scores."""

    prompt_id: str
    benchmark: str
    prompt: str
    scores: dict[str, float] = field(default_factory=dict)


def pgr_curve(
    route_score: Sequence[float], strong: Sequence[float], weak: Sequence[float]
) -> tuple[list[float], list[float]]:
    """Points (share of strong calls, PGR) of the routing curve, at tie-block boundaries.

    Raises ``ZeroDivisionError`` never: callers check the gap first (see :func:`evaluate_pair`).
    """
    n = len(route_score)
    order = sorted(range(n), key=lambda i: -route_score[i])
    total = sum(strong[i] - weak[i] for i in range(n))
    shares = [0.0]
    pgr = [0.0]
    cum = 0.0
    k = 0
    while k < n:
        s = route_score[order[k]]
        cum += strong[order[k]] - weak[order[k]]
        j = k + 1  # always advances, whatever the scores compare like
        while j < n and route_score[order[j]] == s:
            cum += strong[order[j]] - weak[order[j]]
            j += 1
        shares.append(j / n)
        pgr.append(cum / total if total else 0.0)
        k = j
    return shares, pgr


def _area(xs: Sequence[float], ys: Sequence[float]) -> float:
    return sum((xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1]) / 2.0 for i in range(1, len(xs)))


def _cpt(xs: Sequence[float], ys: Sequence[float], target: float) -> float:
    for i in range(1, len(xs)):
        if ys[i] >= target - 1e-12:
            y0, y1 = ys[i - 1], ys[i]
            if y0 >= target or y1 == y0:
                return xs[i - 1] if y0 >= target else xs[i]
            return xs[i - 1] + (xs[i] - xs[i - 1]) * (target - y0) / (y1 - y0)
    return 1.0


def _auc(score: Sequence[float], label: Sequence[bool]) -> float | None:
    pos = sum(1 for x in label if x)
    neg = len(label) - pos
    if not pos or not neg:
        return None
    order = sorted(range(len(score)), key=lambda i: score[i])
    ranks = [0.0] * len(score)
    k = 0
    while k < len(order):
        j = k + 1
        while j < len(order) and score[order[j]] == score[order[k]]:
            j += 1
        for t in range(k, j):
            ranks[order[t]] = (k + j + 1) / 2.0
        k = j
    rsum = sum(r for r, y in zip(ranks, label, strict=True) if y)
    return (rsum - pos * (pos + 1) / 2.0) / (pos * neg)


def evaluate_pair(route_score: Sequence[float], strong: Sequence[float], weak: Sequence[float]) -> PairMetrics:
    """APGR, CPT(50 %), CPT(80 %), AUC and references for one benchmark.

    The three sequences are per prompt and must have the same length; ``strong`` and ``weak``
    are the two models' scores. Raises ``ValueError`` on different lengths or on a value that
    is not a finite number (a NaN has no place in a ranking or a mean).
    """
    n = len(route_score)
    if len(strong) != n or len(weak) != n:
        raise ValueError(f"route_score, strong and weak differ in length ({n}, {len(strong)}, {len(weak)})")
    for name, seq in (("route_score", route_score), ("strong", strong), ("weak", weak)):
        bad = next((i for i, x in enumerate(seq) if not math.isfinite(x)), None)
        if bad is not None:
            raise ValueError(f"{name}[{bad}] is {seq[bad]!r}: every value must be a finite number")
    if n == 0:
        return PairMetrics(0.5, 0.5, 0.8, None, 0, 0.0, 0.0, 0.5, True)
    sm = sum(strong) / n
    wm = sum(weak) / n
    diff = [s - w for s, w in zip(strong, weak, strict=True)]
    auc = _auc(list(route_score), [d > 0 for d in diff])
    if abs(sm - wm) < _EPS_GAP:
        return PairMetrics(0.5, 0.5, 0.8, auc, n, sm, wm, 0.5, True)
    xs, ys = pgr_curve(route_score, strong, weak)
    oxs, oys = pgr_curve(diff, strong, weak)
    return PairMetrics(
        apgr=_area(xs, ys),
        cpt50=_cpt(xs, ys, 0.5),
        cpt80=_cpt(xs, ys, 0.8),
        auc=auc,
        n=n,
        strong_mean=sm,
        weak_mean=wm,
        oracle_apgr=_area(oxs, oys),
        degenerate=False,
    )


# --------------------------------------------------------------------------- data loading


def _rows_from_dicts(records: Iterable[Mapping[str, Any]]) -> dict[str, PromptRow]:
    prompts: dict[str, PromptRow] = {}
    for rec in records:
        try:
            pid = str(rec["prompt_id"])
            model = str(rec["model"])
            raw = rec["score"]
        except KeyError as exc:
            raise ValueError(
                f"missing column {exc.args[0]!r}; need prompt_id, benchmark, prompt, model, score"
            ) from None
        bench = str(rec.get("benchmark") or "all")  # no benchmark column: one group "all"
        if raw is None or raw == "":
            continue
        score = float(raw)
        if math.isnan(score):
            continue
        key = f"{bench}\x00{pid}"
        row = prompts.get(key)
        if row is None:
            prompt = rec.get("prompt")
            row = prompts[key] = PromptRow(pid, bench, "" if prompt is None else str(prompt))
        row.scores[model] = score
    return prompts


def load_long(path: str | Path) -> list[PromptRow]:
    """Read a long-format CSV / CSV.gz / Parquet file into one :class:`PromptRow` per prompt."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such data file: {p}")
    name = p.name.lower()
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise RuntimeError("reading Parquet needs pyarrow: pip install 'llmroute[parquet]' (or pyarrow)") from None
        names = set(pq.read_schema(p).names)
        cols = [c for c in ("prompt_id", "benchmark", "prompt", "model", "score") if c in names]
        table = pq.read_table(p, columns=cols)
        return list(_rows_from_dicts(table.to_pylist()).values())
    opener: Callable[..., Any] = gzip.open if name.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8", newline="") as f:
        csv.field_size_limit(1 << 30)
        return list(_rows_from_dicts(csv.DictReader(f)).values())


def load_responses(path: str | Path, models: Sequence[str] | None = None) -> dict[tuple[str, str], str]:
    """``{(prompt_id, model): response}`` from a CSV / CSV.gz / Parquet file with ``prompt_id, model,
    response`` (only *models*, when given). Rows without a response are left out."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such responses file: {p}")
    wanted = set(models) if models else None
    out: dict[tuple[str, str], str] = {}

    def add(records: Iterable[Mapping[str, Any]]) -> None:
        for rec in records:
            try:
                pid, model, text = rec["prompt_id"], rec["model"], rec["response"]
            except KeyError as exc:
                raise ValueError(
                    f"responses file is missing column {exc.args[0]!r}; need prompt_id, model, response"
                ) from None
            if text is None or (wanted is not None and str(model) not in wanted):
                continue
            out[(str(pid), str(model))] = str(text)

    if p.name.lower().endswith(".parquet"):
        try:
            import pyarrow as pa
            import pyarrow.compute as pc
            import pyarrow.parquet as pq
        except ImportError:
            raise RuntimeError("reading Parquet needs pyarrow: pip install 'llmroute[parquet]' (or pyarrow)") from None
        names = set(pq.read_schema(p).names)
        missing = [c for c in ("prompt_id", "model", "response") if c not in names]
        if missing:
            raise ValueError(f"responses file is missing column {missing[0]!r}; need prompt_id, model, response")
        table = pq.read_table(p, columns=["prompt_id", "model", "response"])
        if wanted is not None:
            table = table.filter(pc.is_in(table["model"].cast("string"), value_set=pa.array(sorted(wanted))))
        add(table.to_pylist())
        return out
    opener: Callable[..., Any] = gzip.open if p.name.lower().endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8", newline="") as f:
        csv.field_size_limit(1 << 30)
        add(csv.DictReader(f))
    return out


# --------------------------------------------------------------------------- scoring


class _Progress:
    def __init__(self, total: int, enabled: bool, label: str = "predicting") -> None:
        self.label = label
        self.total = total
        self.enabled = enabled and total >= 500
        self.last = -1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        pct = int(100 * done / self.total)
        step = 1 if sys.stderr.isatty() else 10
        if pct // step != self.last // step or done >= self.total:
            self.last = pct
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}% ({done}/{self.total})")
            if done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _predict_all(rows: Sequence[PromptRow], models: Sequence[Any], predictor: Any, progress: bool) -> list[Any]:
    bar = _Progress(len(rows), progress)
    out = []
    for i, row in enumerate(rows):
        out.append(predictor.predict([{"role": "user", "content": row.prompt}], models))
        if i % 50 == 0 or i + 1 == len(rows):
            bar.update(i + 1)
    return out


def _fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.3f}"


def _routing_scores(preds: Sequence[Any], idx: Sequence[int], mode: str, strong: str, weak: str) -> list[float]:
    """The routing score of the prompts *idx*: the predicted quality gap or the difficulty."""
    if mode == "gap":
        return [preds[i].quality[strong] - preds[i].quality[weak] for i in idx]
    return [preds[i].difficulty for i in idx]


def _config_profiles(path: str) -> dict[str, Any]:
    """``{model: ModelProfile}`` from a config file's ``models.<name>.predictor`` entries."""
    from llmroute.predictor import ModelProfile

    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read --config {path}: {exc}") from None
    models = cfg.get("models") if isinstance(cfg, Mapping) else None
    out: dict[str, Any] = {}
    for name, entry in (models or {}).items():
        if isinstance(entry, Mapping) and isinstance(entry.get("predictor"), Mapping):
            out[name] = ModelProfile.from_config(name, entry["predictor"])
    return out


def _resolve_mode(args: argparse.Namespace, preds: Sequence[Any]) -> str:
    """The routing score ``--score`` stands for: ``auto`` is the gap when both models have vectors
    fitted on your own labels, else the difficulty; warns when ``gap`` has no vectors to use."""
    mode = args.score
    if mode == "auto":
        # the gap only when both vectors were fitted on your own labels; else the difficulty
        both_fitted = bool(preds) and all(preds[0].source.get(m) == "vector" for m in (args.strong, args.weak))
        mode = "gap" if both_fitted else "difficulty"
    elif mode == "gap" and not all(preds[0].known.get(m) for m in (args.strong, args.weak)):
        unknown = [m for m in (args.strong, args.weak) if not preds[0].known.get(m)]
        print(
            f"warning: --score gap: the predictor has no vector for {', '.join(unknown)} "
            "(give --strong-like / --weak-like); its quality is 1 - difficulty",
            file=sys.stderr,
        )
    return mode


def _pair_rows_profiles(args: argparse.Namespace, rows: list[PromptRow]) -> tuple[list[PromptRow], list[Any]] | None:
    """The prompts scored for both models of the pair, and the two models' predictor profiles
    (fitted vectors from ``--config``, else ``--strong-like`` / ``--weak-like``); None after an error."""
    from llmroute.predictor import ModelProfile

    rows = [r for r in rows if args.strong in r.scores and args.weak in r.scores]
    if not rows:
        print(f"error: no prompt has scores for both {args.strong!r} and {args.weak!r}", file=sys.stderr)
        return None
    try:
        fitted = _config_profiles(args.config) if args.config else {}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    profiles = [
        fitted.get(args.strong) or ModelProfile(args.strong, like=args.strong_like),
        fitted.get(args.weak) or ModelProfile(args.weak, like=args.weak_like),
    ]
    return rows, profiles


def _pair_mode(args: argparse.Namespace, rows: list[PromptRow], predictor: Any) -> int:
    if args.score == "cascade":
        pair = [r for r in rows if args.strong in r.scores and args.weak in r.scores]
        if not pair:
            print(f"error: no prompt has scores for both {args.strong!r} and {args.weak!r}", file=sys.stderr)
            return 2
        return _cascade_mode(args, pair, predictor)
    got = _pair_rows_profiles(args, rows)
    if got is None:
        return 2
    rows, profiles = got
    preds = _predict_all(rows, profiles, predictor, not args.no_progress)
    mode = _resolve_mode(args, preds)
    by_bench: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_bench.setdefault(r.benchmark, []).append(i)
    result: dict[str, dict[str, Any]] = {}
    table: list[tuple[str, PairMetrics, PairMetrics]] = []
    for bench in sorted(by_bench):
        idx = by_bench[bench]
        strong = [rows[i].scores[args.strong] for i in idx]
        weak = [rows[i].scores[args.weak] for i in idx]
        score = _routing_scores(preds, idx, mode, args.strong, args.weak)
        m = evaluate_pair(score, strong, weak)
        lm = evaluate_pair([float(len(rows[i].prompt)) for i in idx], strong, weak)
        if m.degenerate:
            print(f"warning: {bench}: strong and weak means are equal; reporting random values", file=sys.stderr)
        result[bench] = {"apgr": m.apgr, "cpt50": m.cpt50, "cpt80": m.cpt80, "n": m.n}
        table.append((bench, m, lm))
    if args.plot:
        _plot_pairs(args.plot, rows, by_bench, preds, mode, args.strong, args.weak)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"strong={args.strong}  weak={args.weak}  routing score={mode}")
    head = f"{'benchmark':<22}{'n':>6}  {'strong':>6} {'weak':>6} |  {'APGR':>6} {'CPT50':>6} {'CPT80':>6} {'AUC':>6}"
    head += f" | {'len':>6} {'lenC50':>6} | {'rand':>5} {'oracle':>6}"
    print(head)
    print("-" * len(head))
    for bench, m, lm in table:
        flag = " (degenerate)" if m.degenerate else ""
        print(
            f"{bench:<22}{m.n:>6}  {m.strong_mean:6.3f} {m.weak_mean:6.3f} |  {m.apgr:6.3f} "
            f"{m.cpt50:6.3f} {m.cpt80:6.3f} {_fmt(m.auc)} | {lm.apgr:6.3f} {lm.cpt50:6.3f} | "
            f"{0.5:5.2f} {m.oracle_apgr:6.3f}{flag}"
        )
    print("APGR: area under PGR vs strong share (random 0.5); CPT50/80: strong share for 50/80 % PGR.")
    return 0


def _cascade_scores(
    rows: Sequence[PromptRow], responses: Mapping[tuple[str, str], str], weak: str, checks: Any, progress: bool
) -> list[float]:
    """The cascade's escalation score ``1 - verdict.score`` of each prompt's weak answer."""
    from llmroute.checks import Answer, judge

    bar = _Progress(len(rows), progress, "judging")
    out = []
    for i, r in enumerate(rows):
        out.append(1.0 - judge(Answer(responses[(r.prompt_id, weak)], prompt=r.prompt), checks).score)
        if i % 200 == 0 or i + 1 == len(rows):
            bar.update(i + 1)
    return out


def _cascade_mode(args: argparse.Namespace, rows: list[PromptRow], predictor: Any) -> int:
    """Strong/weak mode routed by the cascade's checks on the weak model's recorded answers."""
    from llmroute.checks import resolve_checks

    if not args.responses:
        print("error: --score cascade needs --responses RESPONSES (prompt_id, model, response)", file=sys.stderr)
        return 2
    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else None
    try:
        resolve_checks(checks)
        responses = load_responses(args.responses, [args.weak])
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kept = [r for r in rows if (r.prompt_id, args.weak) in responses]
    skipped = len(rows) - len(kept)
    if skipped:
        print(
            f"note: {skipped} of {len(rows)} prompts have no recorded answer of {args.weak!r}: skipped", file=sys.stderr
        )
    if not kept:
        print(f"error: no prompt has a recorded answer of {args.weak!r} in {args.responses}", file=sys.stderr)
        return 2
    scores = _cascade_scores(kept, responses, args.weak, checks, not args.no_progress)
    by_bench: dict[str, list[int]] = {}
    for i, r in enumerate(kept):
        by_bench.setdefault(r.benchmark, []).append(i)
    result: dict[str, dict[str, Any]] = {}
    table = []
    difficulty: list[float] | None = None
    if not args.json:
        try:
            preds = _predict_all(kept, [], predictor, not args.no_progress)
            difficulty = [p.difficulty for p in preds]
        except Exception as exc:  # the predictor column is a reference, never a reason to fail
            print(f"warning: predictor unavailable, its column is left out: {exc}", file=sys.stderr)
    for bench in sorted(by_bench):
        idx = by_bench[bench]
        strong = [kept[i].scores[args.strong] for i in idx]
        weak = [kept[i].scores[args.weak] for i in idx]
        m = evaluate_pair([scores[i] for i in idx], strong, weak)
        if m.degenerate:
            print(f"warning: {bench}: strong and weak means are equal; reporting random values", file=sys.stderr)
        result[bench] = {"apgr": m.apgr, "cpt50": m.cpt50, "cpt80": m.cpt80, "n": m.n}
        lm = evaluate_pair([float(len(kept[i].prompt)) for i in idx], strong, weak)
        pm = evaluate_pair([difficulty[i] for i in idx], strong, weak) if difficulty is not None else None
        table.append((bench, m, lm, pm))
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"strong={args.strong}  weak={args.weak}  routing score=cascade (checks: {args.checks or 'default'})")
    head = f"{'benchmark':<22}{'n':>6}  {'strong':>6} {'weak':>6} |  {'APGR':>6} {'CPT50':>6} {'CPT80':>6} {'AUC':>6}"
    head += f" | {'len':>6} {'pred':>6} | {'rand':>5} {'oracle':>6}"
    print(head)
    print("-" * len(head))
    for bench, m, lm, pm in table:
        flag = " (degenerate)" if m.degenerate else ""
        print(
            f"{bench:<22}{m.n:>6}  {m.strong_mean:6.3f} {m.weak_mean:6.3f} |  {m.apgr:6.3f} "
            f"{m.cpt50:6.3f} {m.cpt80:6.3f} {_fmt(m.auc)} | {lm.apgr:6.3f} {_fmt(pm.apgr if pm else None)} | "
            f"{0.5:5.2f} {m.oracle_apgr:6.3f}{flag}"
        )
    print("APGR: area under PGR vs strong share (random 0.5); len: prompt length; pred: predictor difficulty.")
    if skipped:
        print(f"{skipped} prompts without a recorded weak answer were skipped.")
    return 0


def _parse_prices(text: str | None, pool: Sequence[str]) -> dict[str, float]:
    prices: dict[str, float] = {}
    for item in (text or "").split(","):
        if item.strip():
            name, _, value = item.rpartition("=")
            prices[name.strip()] = float(value)
    missing = [m for m in pool if m not in prices]
    if missing:
        raise SystemExit(f"error: --prices has no price for {', '.join(missing)}")
    return prices


def _pool_rows(
    args: argparse.Namespace, rows: list[PromptRow]
) -> tuple[list[str], dict[str, float], list[PromptRow]] | None:
    """``(pool, prices, prompts scored for every pool model)`` of pool mode; None after an error."""
    pool = [m.strip() for m in args.pool.split(",") if m.strip()]
    prices = _parse_prices(args.prices, pool)
    rows = [r for r in rows if all(m in r.scores for m in pool)]
    if not rows:
        print("error: no prompt has scores for every model of --pool", file=sys.stderr)
        return None
    return pool, prices, rows


def _pool_mode(args: argparse.Namespace, rows: list[PromptRow], predictor: Any) -> int:
    from llmroute.learning import prior_profiles

    got = _pool_rows(args, rows)
    if got is None:
        return 2
    pool, prices, rows = got

    # models the predictor does not know get a family (like) or price prior, as in a router
    preds = _predict_all(rows, prior_profiles(pool, prices, predictor), predictor, not args.no_progress)
    by_bench: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_bench.setdefault(r.benchmark, []).append(i)
    out: dict[str, Any] = {}
    for bench in sorted(by_bench):
        out[bench] = pool_result(rows, by_bench[bench], [p.quality for p in preds], pool, prices)
    if args.plot:
        _plot_pool(args.plot, out)
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    for bench, res in out.items():
        ratio = res["cost_ratio_at_95"]
        print(f"== {bench} (n={res['n']}; cost ratio at 95 % of the best single model: {_fmt(ratio).strip()})")
        print(
            "  single models: "
            + ", ".join(f"{m}: score {v['score']:.3f} @ {v['cost']:g}" for m, v in res["single"].items())
        )
        print(f"  {'lambda':>10} {'cost':>10} {'score':>7} | {'oracle cost':>11} {'score':>7}")
        for c, o in zip(res["curve"], res["oracle"], strict=True):
            print(f"  {c['lambda']:10.4g} {c['cost']:10.4g} {c['score']:7.3f} | {o['cost']:11.4g} {o['score']:7.3f}")
    return 0


def pool_lambdas(prices: Mapping[str, float]) -> list[float]:
    """The cost weights of the pool-mode sweep: 0, 10^(k/4) / max price for k in -12..12, and 1e9."""
    top = max(prices.values()) or 1.0
    return [0.0] + [10 ** (k / 4.0) / top for k in range(-12, 13)] + [1e9]


def pool_curve(
    rows: Sequence[PromptRow],
    idx: Sequence[int],
    quality: Sequence[Mapping[str, float]],
    pool: Sequence[str],
    prices: Mapping[str, float],
) -> list[dict[str, float]]:
    """``[{lambda, cost, score}]``: every prompt of *idx* goes to the model maximising
    ``quality[i][m] - lambda * price`` (ties to the cheaper), for each cost weight of the sweep."""
    n = len(idx)
    out = []
    for lam in pool_lambdas(prices):
        cost = score = 0.0
        for i in idx:
            q = quality[i]
            best = max(pool, key=lambda m, q=q: (q[m] - lam * prices[m], -prices[m]))
            cost += prices[best]
            score += rows[i].scores[best]
        out.append({"lambda": lam, "cost": cost / n, "score": score / n})
    return out


def cost_ratio_at(
    curve: Sequence[Mapping[str, float]], single: Mapping[str, Mapping[str, float]], share: float = 0.95
) -> float | None:
    """Cost ratio of a routing curve at ``share`` of the best single model's mean score.

    The lowest mean cost at which the curve's mean score reaches ``share x`` the best single
    model's (between two points of the curve, a router that mixes those two cost weights at
    random reaches every point of the segment, so segments are interpolated), divided by the
    price of the cheapest single model that reaches that score. Below 1: routing beats picking
    one model. ``None`` when the curve never reaches the score.
    """
    target = share * max(v["score"] for v in single.values())
    price = min(v["cost"] for v in single.values() if v["score"] >= target - 1e-12)
    pts = sorted((p["cost"], p["score"]) for p in curve)
    best: float | None = None
    for k, (c, sc) in enumerate(pts):
        if sc >= target - 1e-12:
            best = c if best is None else min(best, c)
        if k:
            c0, s0 = pts[k - 1]
            if (s0 - target) * (sc - target) < 0:  # the segment crosses the target score
                x = c0 + (c - c0) * (target - s0) / (sc - s0)
                best = x if best is None else min(best, x)
    if best is None:
        return None
    return best / price if price > 0 else None


def pool_result(
    rows: Sequence[PromptRow],
    idx: Sequence[int],
    quality: Sequence[Mapping[str, float]],
    pool: Sequence[str],
    prices: Mapping[str, float],
) -> dict[str, Any]:
    """One benchmark of pool mode: ``n``, the router's ``curve``, the ``oracle`` curve, each
    ``single`` model's cost and score, and ``cost_ratio_at_95`` (:func:`cost_ratio_at`)."""
    n = len(idx)
    single = {m: {"cost": prices[m], "score": sum(rows[i].scores[m] for i in idx) / n} for m in pool}
    curve = pool_curve(rows, idx, quality, pool, prices)
    oracle = pool_curve(rows, idx, [r.scores for r in rows], pool, prices)
    return {
        "n": n,
        "curve": curve,
        "oracle": oracle,
        "single": single,
        "cost_ratio_at_95": cost_ratio_at(curve, single),
    }


def _plot_pool(path: str, out: Mapping[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(out)
    cols = min(3, k)
    nrows = (k + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    for ax, (bench, res) in zip(axes.flat, out.items(), strict=False):
        for label, pts in (("predictor", res["curve"]), ("oracle", res["oracle"])):
            ax.plot([p["cost"] for p in pts], [p["score"] for p in pts], marker=".", label=label)
        for m, v in res["single"].items():
            ax.scatter([v["cost"]], [v["score"]], marker="x")
            ax.annotate(m, (v["cost"], v["score"]), fontsize=6)
        ax.set_xscale("symlog")
        ax.set_title(bench)
        ax.set_xlabel("mean cost per call")
        ax.set_ylabel("mean score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_pairs(
    path: str,
    rows: Sequence[PromptRow],
    by_bench: Mapping[str, list[int]],
    preds: Sequence[Any],
    mode: str,
    strong_name: str,
    weak_name: str,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("error: --plot needs matplotlib: pip install 'llmroute[plot]'") from None
    k = len(by_bench)
    cols = min(3, k)
    nrows = (k + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    for ax, bench in zip(axes.flat, sorted(by_bench), strict=False):
        idx = by_bench[bench]
        strong = [rows[i].scores[strong_name] for i in idx]
        weak = [rows[i].scores[weak_name] for i in idx]
        if abs(sum(strong) - sum(weak)) < _EPS_GAP * len(idx):
            continue
        score = _routing_scores(preds, idx, mode, strong_name, weak_name)
        diff = [s - w for s, w in zip(strong, weak, strict=True)]
        for label, sc in (
            ("predictor", score),
            ("length", [float(len(rows[i].prompt)) for i in idx]),
            ("oracle", diff),
        ):
            xs, ys = pgr_curve(sc, strong, weak)
            ax.plot(xs, ys, label=f"{label} ({_area(xs, ys):.2f})")
        ax.plot([0, 1], [0, 1], "k:", label="random (0.50)")
        ax.set_title(bench)
        ax.set_xlabel("share of strong calls")
        ax.set_ylabel("PGR")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m llmroute.eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="CSV, CSV.gz or Parquet in long format")
    ap.add_argument("--strong", help="strong model name (as in the data)")
    ap.add_argument("--weak", help="weak model name (as in the data)")
    ap.add_argument("--strong-like", help="a training-pool model the strong model resembles")
    ap.add_argument("--weak-like", help="a training-pool model the weak model resembles")
    ap.add_argument(
        "--score",
        choices=("auto", "gap", "difficulty", "cascade"),
        default="auto",
        help="routing score: predicted difficulty, the predicted quality gap of the two models, or auto "
        "(the default: the gap when both models have vectors fitted on your labels in --config, "
        "else the difficulty, which is best on unseen tasks); cascade: the answer checks on the weak "
        "model's recorded answer (needs --responses)",
    )
    ap.add_argument(
        "--responses",
        metavar="RESPONSES",
        help="--score cascade: CSV, CSV.gz or Parquet with prompt_id, model, response (the weak model's answers)",
    )
    ap.add_argument("--checks", help="--score cascade: comma-separated check names (default: the default checks)")
    ap.add_argument(
        "--config",
        metavar="CFG.json",
        help="take the models' predictor entries (like / tier / fitted vector) from this config, "
        "e.g. one written by `llmroute calibrate --model`",
    )
    ap.add_argument("--pool", help="multi-model mode: comma-separated model names")
    ap.add_argument("--prices", help="multi-model mode: NAME=PRICE,... (any unit, per call)")
    ap.add_argument("--model", help="predictor.onnx to use instead of the shipped one")
    ap.add_argument(
        "--learn",
        type=int,
        metavar="N",
        help="handle the first N prompts (seeded random order, all benchmarks mixed) as live traffic, "
        "learning online after each, then score the rest with learning frozen (see llmroute/_learn_eval.py)",
    )
    ap.add_argument(
        "--observe",
        choices=("both", "routed"),
        default="both",
        help="with --learn: see every model's score after each call (both), or only the routed model's (routed)",
    )
    ap.add_argument("--seed", type=int, default=0, help="with --learn: order of the prompts and exploration")
    ap.add_argument(
        "--learn-share",
        type=float,
        default=0.5,
        help="with --learn --observe routed, strong/weak mode: share of strong calls the router aims at while learning",
    )
    ap.add_argument(
        "--learn-cost-weight",
        type=float,
        help="with --learn --observe routed, pool mode: the cost weight the router routes by while learning "
        "(default 0.1 / the highest price: the dearest model must buy 0.1 more quality than a free one)",
    )
    ap.add_argument(
        "--explore-share",
        type=float,
        default=0.1,
        help="with --learn --observe routed, pool mode: cap of exploration's extra cost, as a share of the routed cost",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--plot", metavar="FILE.png", help="draw the routing curves (needs matplotlib)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the eval CLI; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    if not args.pool and not (args.strong and args.weak):
        print("error: give --strong and --weak, or --pool and --prices", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib: pip install 'llmroute[plot]'", file=sys.stderr)
            return 2
    try:
        rows = load_long(args.data)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from llmroute.predictor import Predictor

    predictor = Predictor.load(args.model) if args.model else Predictor.default()
    if args.learn is not None and args.score == "cascade":
        print("error: --learn does not combine with --score cascade (it judges recorded answers)", file=sys.stderr)
        return 2
    if args.learn is not None:
        from llmroute import _learn_eval

        return _learn_eval.main(args, rows, predictor)
    if args.pool:
        return _pool_mode(args, rows, predictor)
    return _pair_mode(args, rows, predictor)


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    raise SystemExit(main())
