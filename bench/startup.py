"""Start-up cost: reaching ``llmroute.Router`` on top of importing llmroute's own dependencies.

    python bench/startup.py [--runs 15] [--repo PATH] [--json]

Each run is a fresh interpreter that imports httpx, pydantic, anyio and tenacity (timed: the
baseline), then ``import llmroute; llmroute.Router`` (timed: llmroute's own cost, the dependencies
being loaded already), then builds a one-model ``Router.from_dict`` (timed: the first router,
which validates the config and creates the HTTP client). It also lists any of onnxruntime,
tiktoken, numpy, opentelemetry or a framework (openai, langchain, pydantic_ai, agents, litellm)
that got imported: there must be none.

Two modes, runs interleaved, both on a copy of the package in a temporary directory:

- **bytecode**: the copy is compiled first (``compileall``), as an installed wheel is;
- **source**: no ``.pyc`` for llmroute and none written (``PYTHONDONTWRITEBYTECODE=1``), as in a
  source checkout run that way (the dependencies keep their installed ``.pyc`` in both modes).

Figures are medians over *--runs*; ``ratio_vs_deps`` is the median of the per-run ratios
(llmroute / dependencies). *--repo* measures another checkout's ``llmroute`` (default: this
one), e.g. ``--repo ../main`` for a before/after. With ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DEPS = ("httpx", "pydantic", "anyio", "tenacity")
HEAVY = ("onnxruntime", "tiktoken", "numpy", "opentelemetry", "openai", "langchain", "langchain_core",
         "pydantic_ai", "agents", "litellm")  # fmt: skip
TARGET_MS = 100.0

CHILD = """
import sys, time, json
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import {deps}
t1 = time.perf_counter()
import llmroute
llmroute.Router
t2 = time.perf_counter()
router = llmroute.Router.from_dict({{
    "providers": {{"p": {{"api": "openai", "base_url": "http://127.0.0.1:9", "api_key": "sk-x"}}}},
    "models": {{"m": {{"deployments": [{{"provider": "p", "model": "x", "price": {{"input": 1, "output": 2}}}}]}}}},
}})
t3 = time.perf_counter()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"deps": t1 - t0, "own": t2 - t1, "router": t3 - t2, "file": llmroute.__file__, "heavy": heavy}}))
"""


def copy_package(repo: Path, dest: Path, compiled: bool) -> Path:
    """A copy of *repo*'s ``llmroute`` package under *dest* (compiled, or source only)."""
    shutil.copytree(repo / "llmroute", dest / "llmroute", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if compiled:
        ok = compileall.compile_dir(dest / "llmroute", quiet=1)
        if not ok:
            raise SystemExit("compileall failed")
    return dest


def run_child(root: Path, compiled: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not compiled:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    code = CHILD.format(root=str(root), deps=", ".join(DEPS), heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    if not str(data["file"]).startswith(str(root)):
        raise SystemExit(f"imported {data['file']}, not the copy under {root}")
    return data


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ms = {k: statistics.median(r[k] for r in rows) * 1e3 for k in ("deps", "own", "router")}
    return {
        "deps_ms": round(ms["deps"], 1),
        "llmroute_ms": round(ms["own"], 1),
        "ratio_vs_deps": round(statistics.median(r["own"] / r["deps"] for r in rows), 3),
        "first_router_ms": round(ms["router"], 1),
        "within_target": ms["own"] <= TARGET_MS,
        "heavy_imported": sorted({m for r in rows for m in r["heavy"]}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=15, help="fresh interpreters per mode (default 15)")
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent, help="checkout to measure")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    if not (repo / "llmroute" / "__init__.py").exists():
        raise SystemExit(f"no llmroute package under {repo}")
    rows: dict[str, list[dict[str, Any]]] = {"bytecode": [], "source": []}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {
            "bytecode": copy_package(repo, Path(tmp) / "bytecode", compiled=True),
            "source": copy_package(repo, Path(tmp) / "source", compiled=False),
        }
        for mode, root in roots.items():  # warm the OS file cache once per mode, not counted
            run_child(root, mode == "bytecode")
        for i in range(args.runs):
            order = ("bytecode", "source") if i % 2 == 0 else ("source", "bytecode")
            for mode in order:
                rows[mode].append(run_child(roots[mode], mode == "bytecode"))
    result = {
        "repo": str(repo),
        "runs": args.runs,
        "python": platform.python_version(),
        "dependencies": list(DEPS),
        "target_ms": TARGET_MS,
        **{mode: summarise(r) for mode, r in rows.items()},
    }
    b, s = result["bytecode"], result["source"]
    print(f"start-up of {repo} ({args.runs} fresh interpreters per mode, medians)")
    print(f"{'mode':<10}{'deps ms':>10}{'llmroute ms':>13}{'ratio':>8}{'first Router ms':>17}  heavy imported")
    for mode, v in (("bytecode", b), ("source", s)):
        heavy = ", ".join(v["heavy_imported"]) or "none"
        print(
            f"{mode:<10}{v['deps_ms']:>10.1f}{v['llmroute_ms']:>13.1f}{v['ratio_vs_deps']:>8.2f}"
            f"{v['first_router_ms']:>17.1f}  {heavy}"
        )
    print(f"target: llmroute <= {TARGET_MS:.0f} ms on top of its dependencies (bytecode: {b['within_target']})")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
