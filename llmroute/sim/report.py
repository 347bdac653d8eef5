"""Metrics of one policy's run, ratios to the baseline, time series, and the text table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .engine import RequestResult

__all__ = ["METRICS", "quantile", "ratios", "summarize", "table", "windows"]

#: (key, label, format) of the metrics a table shows, in order.
METRICS = (
    ("cost_per_1k_usd", "cost $/1k served", "{:9.4f}"),
    ("ttft_p50_s", "TTFT p50 s", "{:7.3f}"),
    ("ttft_p95_s", "TTFT p95 s", "{:7.3f}"),
    ("e2e_p95_s", "e2e p95 s", "{:7.2f}"),
    ("throughput_tok_s", "served tok/s", "{:8.2f}"),
    ("error_rate", "errors", "{:6.2%}"),
)


def quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted *xs* (NaN when empty)."""
    if not xs:
        return math.nan
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(results: Sequence[RequestResult], duration_s: float) -> dict[str, float]:
    """Cost per 1,000 served requests (failed attempts cost nothing; a failed request is not
    served), TTFT p50/p95 and end-to-end p95 of served requests (from arrival, retries and
    fallbacks included), served output tokens per second of the run, share of failed requests."""
    ok = [r for r in results if r.ok]
    ttft = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    e2e = sorted(r.e2e_s for r in ok if r.e2e_s is not None)
    rates = sorted(r.tokens_per_s for r in ok if r.tokens_per_s is not None)
    cost = sum(r.cost_usd for r in results)
    return {
        "requests": float(len(results)),
        "served": float(len(ok)),
        "cost_usd": cost,
        "cost_per_1k_usd": 1000 * cost / len(ok) if ok else math.nan,
        "ttft_p50_s": quantile(ttft, 0.5),
        "ttft_p95_s": quantile(ttft, 0.95),
        "e2e_p95_s": quantile(e2e, 0.95),
        "throughput_tok_s": sum(r.output_tokens for r in ok) / duration_s,
        "decode_tok_s_p50": quantile(rates, 0.5),
        "error_rate": 1 - len(ok) / len(results) if results else math.nan,
        "attempts_per_request": sum(r.attempts for r in results) / len(results) if results else math.nan,
    }


def ratios(metrics: Mapping[str, float], base: Mapping[str, float]) -> dict[str, float]:
    """Each metric of *metrics* divided by *base*'s (NaN where the base is 0 or missing)."""
    out = {}
    for key, _, _ in METRICS:
        b = base.get(key, math.nan)
        out[key] = metrics[key] / b if b and math.isfinite(b) else math.nan
    return out


def windows(results: Sequence[RequestResult], duration_s: float, width_s: float) -> dict[str, list[float]]:
    """Per window of *width_s*: start (h), cost per 1k served requests, TTFT p95 (served)."""
    n = max(1, math.ceil(duration_s / width_s))
    cost = [0.0] * n
    served = [0] * n
    ttft: list[list[float]] = [[] for _ in range(n)]
    for r in results:
        i = min(int(r.arrival_s // width_s), n - 1)
        cost[i] += r.cost_usd
        if r.ok and r.ttft_s is not None:
            served[i] += 1
            ttft[i].append(r.ttft_s)
    return {
        "start_h": [i * width_s / 3600 for i in range(n)],
        "cost_per_1k_usd": [1000 * c / s if s else math.nan for c, s in zip(cost, served)],
        "ttft_p95_s": [quantile(sorted(t), 0.95) for t in ttft],
    }


def table(rows: Mapping[str, Mapping[str, float]], base: str) -> list[str]:
    """The policies' metrics, each with its ratio to *base*."""
    head = f"  {'policy':<16}" + "".join(f" {label:>22}" for _, label, _ in METRICS)
    lines = [head]
    for name, m in rows.items():
        r = ratios(m, rows[base])
        cells = []
        for key, _, fmt in METRICS:
            cells.append(f" {fmt.format(m[key]):>13} ({r[key]:5.2f}x)")
        lines.append(f"  {name:<16}" + "".join(cells))
    return lines


def as_jsonable(x: Any) -> Any:
    """NaN and infinities as ``None`` (JSON has neither)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: as_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [as_jsonable(v) for v in x]
    return x
