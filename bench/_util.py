"""What the micro-benchmarks share: their command line (and pinning to one core) and percentiles."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence


def bench_args(prog: str, argv: Sequence[str] | None = None, iters: int = 2000) -> argparse.Namespace:
    """Parse ``--iters N --json --no-pin``; pin the process to one core unless ``--no-pin`` (when the OS allows)."""
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args(argv)
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        except OSError:
            pass
    return args


def percentile(values: Sequence[float], q: float) -> float:
    """The *q* quantile of *values* (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]
