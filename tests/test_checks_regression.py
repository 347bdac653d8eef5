"""The answer checks decide the same on recorded answers as when this file's golden digests were made.

A golden-master test for the cascade's checks (``llmroute.checks``, ``llmroute._answer``): the
default checks (plus ``code_parses``) and the whole text analysis run on a fixed sample of real
recorded answers from ``../shared/data`` (``responses/*.parquet`` and
``routing/routerbench_responses.parquet``, read in place), and a digest of every verdict (score,
each check's result and detail), every :class:`~llmroute._answer.Analysis` field and every
feature is compared, 50 answers at a time, with ``tests/fixtures/checks_golden.json``. Speed work on
the checks must leave these digests alone; a change that is meant to alter what the checks
decide regenerates them (and says so in its commit)::

    python tests/test_checks_regression.py --update          # rewrite the golden digests
    python tests/test_checks_regression.py --write F [--all]  # every fingerprint, one per line
    python tests/test_checks_regression.py --compare F [--all]

``--write`` / ``--compare`` are the before/after harness: run ``--write`` on the old code
(``PYTHONPATH=<old checkout>``), ``--compare`` on the new one; ``--all`` takes every recorded
answer instead of the sample, and fingerprints keep floats exact (the golden digests round them,
so another CPU's last-bit differences in ``log1p`` or onnxruntime do not matter). Skips, with
the reason, when the shared data is absent (set ``LLMROUTE_SHARED_DATA`` to use another copy).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMROUTE_SHARED_DATA", ROOT.parent / "shared" / "data"))
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "checks_golden.json"
FILES = (
    "responses/can_ai_code.parquet",
    "responses/commonsenseqa.parquet",
    "responses/cruxeval.parquet",
    "responses/math_level5.parquet",
    "responses/word_problems.parquet",
    "routing/routerbench_responses.parquet",
)
#: Every SAMPLE_STEP-th answer of each file is in the golden sample (about 12,000 answers).
SAMPLE_STEP = 10
BLOCK = 50
#: The :class:`~llmroute._answer.Analysis` fields compared (all but the question and the text).
ANALYSIS_FIELDS = (
    "chars",
    "words",
    "lines",
    "final_kind",
    "final_text",
    "final_value",
    "final_distinct",
    "equations",
    "equations_wrong",
    "final_mismatch",
    "refusal",
    "impossible",
    "uncertain",
    "approx",
    "correction",
    "repeated",
    "ends_cleanly",
    "coverage",
    "chosen",
)


def rows(path: str, step: int) -> Iterator[tuple[str, str, str, str]]:
    """``(prompt_id, model, prompt, response)`` of every *step*-th recorded answer of *path*."""
    import pyarrow.parquet as pq

    table = pq.read_table(SHARED / path).to_pydict()
    prompts = table.get("prompt")
    if prompts is None:  # routerbench_responses: the prompts are in routerbench.parquet
        bench = pq.read_table(SHARED / "routing" / "routerbench.parquet", columns=["prompt_id", "prompt"]).to_pydict()
        by_id = dict(zip(bench["prompt_id"], bench["prompt"]))
        prompts = [by_id.get(pid) for pid in table["prompt_id"]]
    for i in range(0, len(table["prompt_id"]), step):
        yield (
            str(table["prompt_id"][i]),
            str(table["model"][i]),
            prompts[i] or "",
            table["response"][i] or "",
        )


def _num(x: object, exact: bool, digits: int = 9) -> str:
    if not isinstance(x, float) or exact:
        return repr(x)
    return f"{x:.{digits}g}"


def fingerprint(prompt: str, response: str, exact: bool = True) -> str:
    """Everything the checks decide and compute about one answer, as one line of text."""
    from llmroute import _answer
    from llmroute.checks import DEFAULT_CHECKS, Answer, judge

    answer = Answer(response, prompt=prompt)
    verdict = judge(answer, (*DEFAULT_CHECKS, "code_parses"))
    an = answer.analysis
    q = an.question
    # the confidence model's output: compared to 5 decimals unless exact
    fields = [_num(verdict.score, exact, 5)]
    for r in verdict.results:
        fields += [r.name, repr(r.passed), _num(r.score, exact, 5), r.detail, repr(r.hard)]
    fields += [
        repr(q.chars),
        repr(sorted(q.numbers)),
        repr(q.number_count),
        q.options,
        *(_num(getattr(an, name), exact) for name in ANALYSIS_FIELDS),
        repr(len(an.text)),
        hashlib.sha256(repr(an.code_blocks()).encode()).hexdigest()[:16],
        repr(an.python_shape()),
        repr(an.python_parses()),
        repr(an.looks_mathematical),
        *(_num(f, exact) for f in _answer.features(an)),
    ]
    return "\x1f".join(fields)


def fingerprints(step: int, exact: bool) -> Iterator[tuple[str, str]]:
    """``(file, fingerprint line)`` of the sample (every *step*-th answer of each file)."""
    for path in FILES:
        for pid, model, prompt, response in rows(path, step):
            yield path, f"{pid}\x1f{model}\x1f{fingerprint(prompt, response, exact)}"


def digests() -> dict[str, list[str]]:
    """Per file, one digest (16 hex digits) per block of 50 answers of the golden sample."""
    out: dict[str, list[str]] = {}
    current: dict[str, list[str]] = {}
    for path, line in fingerprints(SAMPLE_STEP, exact=False):
        block = current.setdefault(path, [])
        block.append(line)
        if len(block) == BLOCK:
            out.setdefault(path, []).append(hashlib.sha256("\n".join(block).encode()).hexdigest()[:16])
            block.clear()
    for path, block in current.items():
        if block:
            out.setdefault(path, []).append(hashlib.sha256("\n".join(block).encode()).hexdigest()[:16])
    return out


@pytest.mark.skipif(
    not all((SHARED / f).is_file() for f in FILES),
    reason="needs ../shared/data (responses/ and routing/) beside the repo, or LLMROUTE_SHARED_DATA",
)
def test_checks_decide_as_the_golden_digests_say() -> None:
    pytest.importorskip("pyarrow")
    pytest.importorskip("onnxruntime")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = digests()
    assert set(got) == set(golden["blocks"])
    for path, blocks in golden["blocks"].items():
        bad = [i for i, (a, b) in enumerate(zip(blocks, got[path])) if a != b]
        assert len(blocks) == len(got[path]) and not bad, (
            f"{path}: the checks now decide differently on answers in blocks {bad[:10]} "
            f"(answers {BLOCK}*i to {BLOCK}*i+{BLOCK - 1} of every {SAMPLE_STEP}th); if meant, "
            "regenerate with python tests/test_checks_regression.py --update"
        )


def main(argv: list[str] | None = None) -> int:
    """The harness's command line (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python tests/test_checks_regression.py")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--update", action="store_true", help="rewrite tests/fixtures/checks_golden.json")
    g.add_argument("--write", metavar="FILE", help="write every fingerprint of the sample to FILE")
    g.add_argument("--compare", metavar="FILE", help="compare the fingerprints with those --write wrote")
    ap.add_argument("--all", action="store_true", help="every recorded answer, not every 10th")
    args = ap.parse_args(argv)
    if not all((SHARED / f).is_file() for f in FILES):
        print(f"shared data not found under {SHARED} (set LLMROUTE_SHARED_DATA)", file=sys.stderr)
        return 2
    if args.update:
        GOLDEN.parent.mkdir(exist_ok=True)
        blocks = digests()
        doc = {"sample_step": SAMPLE_STEP, "block": BLOCK, "blocks": blocks}
        GOLDEN.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {GOLDEN} ({sum(map(len, blocks.values()))} blocks)")
        return 0
    step = 1 if args.all else SAMPLE_STEP
    if args.write:
        n = 0
        with open(args.write, "w", encoding="utf-8") as f:
            for _, line in fingerprints(step, exact=True):
                f.write(line.replace("\n", "\\n") + "\n")
                n += 1
        print(f"wrote {n} fingerprints to {args.write}")
        return 0
    with open(args.compare, encoding="utf-8") as f:
        want = f.read().splitlines()
    n = differ = 0
    for n, (path, line) in enumerate(fingerprints(step, exact=True), 1):
        line = line.replace("\n", "\\n")
        if n > len(want) or want[n - 1] != line:
            differ += 1
            if differ <= 5:
                old = want[n - 1].split("\x1f") if n <= len(want) else []
                new = line.split("\x1f")
                diff = [(i, a, b) for i, (a, b) in enumerate(zip(old, new)) if a != b]
                print(f"DIFFERS {path} {new[0]} {new[1]}: {diff[:5]}")
    if n != len(want):
        print(f"{len(want)} fingerprints written, {n} now")
        differ += 1
    print(f"{n} answers compared, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.path.append(str(ROOT))
    raise SystemExit(main())
