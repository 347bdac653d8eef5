"""Derive the simulator's summary statistics from the shared public data, read in place.

    python -m llmroute.sim.derive [--shared ../shared/data] [--out llmroute/sim/data/derived.json] [--check]

Reads ``latency/llmperf_*`` (per-request TTFT and inter-token latency of 8 hosted providers),
``traces/servegen_model_windows.csv`` (per-model request-rate curves) and
``traces/azure_llm_2023_conv.csv.gz`` (per-request token counts), checks each file against its
folder's ``manifest.json``, and writes quantiles and curves only (no rows are copied). The
output is committed, so the simulator runs in a clone that has no ``../shared``; ``--check``
verifies that the committed file is exactly what the shared data gives now. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["DERIVED", "LATENCY_QUANTILES", "TOKEN_QUANTILES", "default_shared", "derive"]

#: The committed output.
DERIVED = Path(__file__).parent / "data" / "derived.json"
#: Quantile levels kept of each provider's TTFT and inter-token latency (150 requests per run).
LATENCY_QUANTILES = (
    0.0,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.55,
    0.6,
    0.65,
    0.7,
    0.75,
    0.8,
    0.85,
    0.9,
    0.95,
    0.99,
    1.0,
)
#: Quantile levels kept of the Azure token counts (19,366 requests).
TOKEN_QUANTILES = tuple(i / 100 for i in range(101))
#: The rate curves kept: ServeGen's anonymised models, first day (144 ten-minute windows).
LOAD_MODELS = ("m-mid", "deepseek-r1")
#: LLMPerf runs used: the 70B one of every provider (the size every provider was measured at).
MODEL_SIZE = "70b"


def default_shared() -> Path:
    """``<checkout>/../shared/data``."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def _checked(path: Path, manifest: dict[str, Any]) -> bytes:
    data = path.read_bytes()
    want = manifest["files"].get(path.name)
    got = hashlib.sha256(data).hexdigest()
    if want != got:
        raise SystemExit(f"{path} does not match its manifest (sha256 {got}, manifest {want})")
    return data


def _quantiles(values: list[float], levels: tuple[float, ...]) -> list[float]:
    """Linear-interpolation quantiles (numpy's default method)."""
    xs = sorted(values)
    out = []
    for q in levels:
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        out.append(round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 6))
    return out


def _latency(folder: Path) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    rows = list(
        csv.DictReader(io.StringIO(gzip.decompress(_checked(folder / "llmperf_requests.csv.gz", manifest)).decode()))
    )
    summary = list(csv.DictReader(io.StringIO(_checked(folder / "llmperf_summary.csv", manifest).decode())))
    out: dict[str, Any] = {}
    for prov in sorted({r["provider"] for r in rows}):
        mine = [r for r in rows if r["provider"] == prov and r["model_size"] == MODEL_SIZE]
        if not mine:
            continue
        run = next(s for s in summary if s["provider"] == prov and s["model_size"] == MODEL_SIZE)
        # 429 and -1 rows carry 0 in the metric columns; -100 ("output too few tokens") rows keep
        # their measured latencies (the reply was shorter than asked, not an error for routing).
        ok = [r for r in mine if r["error_code"] in ("", "-100.0", "-100")]
        # The -100 rows' inter-token latency is their whole duration (LLMPerf divides by the tokens
        # it asked for, not the few it got): decode speed comes from the complete rows only.
        clean = [r for r in mine if r["error_code"] == ""]
        n429 = sum(1 for r in mine if r["error_code"] in ("429.0", "429"))
        other = len(mine) - len(ok) - n429
        out[prov] = {
            "model": run["model"],
            "run_utc": run["run_utc"],
            "requests": len(mine),
            "ok": len(ok),
            "rate_limited": n429,
            "other_errors": other,
            "completed_per_min": round(float(run["num_completed_requests_per_min"]), 4),
            "ttft_s": _quantiles([float(r["ttft_s"]) for r in ok], LATENCY_QUANTILES),
            "inter_token_s": _quantiles([float(r["inter_token_latency_s"]) for r in clean], LATENCY_QUANTILES),
            "output_tokens_median": _quantiles([float(r["output_tokens"]) for r in ok], (0.5,))[0],
        }
    return {
        "source": f"github.com/ray-project/llmperf-leaderboard@{manifest['commit']} raw_data ({manifest['licence']})",
        "model_size": MODEL_SIZE,
        "quantiles": list(LATENCY_QUANTILES),
        "providers": out,
    }


def _load(folder: Path) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    rows = list(csv.DictReader(io.StringIO(_checked(folder / "servegen_model_windows.csv", manifest).decode())))
    out: dict[str, Any] = {}
    for model in LOAD_MODELS:
        by_window = {int(float(r["window_start_s"])): r for r in rows if r["model"] == model}
        rates, cvs = [], []
        for w in range(144):  # the first day; absent windows had no requests
            r = by_window.get(w * 600)
            rates.append(round(float(r["total_rate_rps"]), 4) if r else 0.0)
            cvs.append(round(float(r["rate_weighted_cv"]), 4) if r and r["rate_weighted_cv"] else 1.0)
        out[model] = {"window_s": 600, "rate_rps": rates, "cv": cvs}
    sg = manifest["servegen"]
    return {
        "source": f"github.com/alibaba/ServeGen@{sg['commit']} (Apache-2.0), servegen_model_windows.csv, day 1",
        "models": out,
    }


def _tokens(folder: Path) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    raw = gzip.decompress(_checked(folder / "azure_llm_2023_conv.csv.gz", manifest)).decode()
    rows = list(csv.DictReader(io.StringIO(raw)))
    az = manifest["azure"]
    return {
        "source": f"github.com/Azure/AzurePublicDataset@{az['commit']} AzureLLMInferenceTrace_conv ({az['licence']}; "
        "Patel et al., Splitwise, ISCA 2024)",
        "requests": len(rows),
        "quantiles": list(TOKEN_QUANTILES),
        "input_tokens": _quantiles([float(r["ContextTokens"]) for r in rows], TOKEN_QUANTILES),
        "output_tokens": _quantiles([float(r["GeneratedTokens"]) for r in rows], TOKEN_QUANTILES),
    }


def derive(shared: Path) -> dict[str, Any]:
    """The summary statistics from *shared* (``.../shared/data``); SystemExit with a message if unusable."""
    if not (shared / "latency").is_dir() or not (shared / "traces").is_dir():
        raise SystemExit(
            f"shared data not found at {shared}: this reads ../shared/data/latency and ../shared/data/traces "
            "beside the checkout (give --shared DIR); the committed llmroute/sim/data/derived.json needs no rebuild"
        )
    return {
        "note": "Summary statistics derived by python -m llmroute.sim.derive; no source rows are copied.",
        "latency": _latency(shared / "latency"),
        "load": _load(shared / "traces"),
        "tokens": _tokens(shared / "traces"),
    }


def dumps(data: dict[str, Any]) -> str:
    """The canonical text of the derived file."""
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=default_shared())
    p.add_argument("--out", type=Path, default=DERIVED)
    p.add_argument("--check", action="store_true", help="fail if --out differs from what the shared data gives")
    args = p.parse_args(argv)
    text = dumps(derive(args.shared))
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print("derived statistics up to date" if same else f"{args.out} is stale: rerun without --check")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
