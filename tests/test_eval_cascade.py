"""``python -m llmroute.eval ... --responses R --score cascade``: the answer checks scored as a router."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from llmroute.eval import load_responses, main

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

QUESTIONS = {
    f"q{i}": f"Tom has {i + 3} apples and buys {2 * i + 1} more. How many apples does he have now?" for i in range(12)
}


def _weak_answer(i: int) -> tuple[str, float]:
    """A worked weak answer and whether it is right: every third one has wrong arithmetic."""
    a, b = i + 3, 2 * i + 1
    if i % 3 == 0:
        return f"He has {a} + {b} = {a + b + 7} apples.\n#### {a + b + 7}", 0.0
    return f"He has {a} + {b} = {a + b} apples.\n#### {a + b}", 1.0


def _write(tmp_path: Path, *, gz: bool = False, drop: int = 0) -> tuple[Path, Path]:
    data = tmp_path / "data.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt_id", "benchmark", "prompt", "model", "score"])
        for i, (pid, q) in enumerate(QUESTIONS.items()):
            w.writerow([pid, "word", q, "big", 1.0])
            w.writerow([pid, "word", q, "tiny", _weak_answer(i)[1]])
    responses = tmp_path / ("responses.csv.gz" if gz else "responses.csv")
    opener = gzip.open if gz else open
    with opener(responses, "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt_id", "model", "response"])
        for i, pid in enumerate(QUESTIONS):
            if i >= len(QUESTIONS) - drop:
                continue
            w.writerow([pid, "tiny", _weak_answer(i)[0]])
            w.writerow([pid, "big", "irrelevant: only the weak answers are judged"])
    return data, responses


@pytest.mark.parametrize("gz", [False, True])
def test_cascade_score_escalates_the_wrong_answers_first(tmp_path: Path, capsys, gz: bool) -> None:
    data, responses = _write(tmp_path, gz=gz)
    args = [str(data), "--strong", "big", "--weak", "tiny", "--responses", str(responses), "--score", "cascade"]
    assert main([*args, "--json", "--no-progress"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    obj = json.loads(out[-1])
    assert set(obj) == {"word"} and set(obj["word"]) == {"apgr", "cpt50", "cpt80", "n"}
    # the 4 wrong answers (bad arithmetic) are ranked first: CPT(80 %) needs only them
    assert obj["word"]["apgr"] > 0.8
    assert obj["word"]["cpt80"] <= 4 / 12 + 1e-9
    assert main([*args, "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "routing score=cascade" in table and "pred" in table


def test_prompts_without_a_weak_answer_are_skipped_and_counted(tmp_path: Path, capsys) -> None:
    data, responses = _write(tmp_path, drop=5)
    args = [str(data), "--strong", "big", "--weak", "tiny", "--responses", str(responses), "--score", "cascade"]
    assert main([*args, "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["word"]["n"] == 7
    assert "5 of 12 prompts have no recorded answer of 'tiny': skipped" in captured.err


def test_cascade_mode_errors(tmp_path: Path, capsys) -> None:
    data, responses = _write(tmp_path)
    base = [str(data), "--strong", "big", "--weak", "tiny", "--score", "cascade"]
    assert main(base) == 2
    assert "--responses" in capsys.readouterr().err
    assert main([*base, "--responses", str(tmp_path / "none.csv")]) == 2
    assert main([*base, "--responses", str(responses), "--checks", "math,nonsense"]) == 2
    assert "unknown check 'nonsense'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt_id,model\n1,tiny\n")
    assert main([*base, "--responses", str(bad)]) == 2
    assert "missing column 'response'" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("prompt_id,model,response\nq1,someone-else,hi\n")
    assert main([*base, "--responses", str(other)]) == 2


def test_checks_can_be_chosen(tmp_path: Path, capsys) -> None:
    data, responses = _write(tmp_path)
    args = [str(data), "--strong", "big", "--weak", "tiny", "--responses", str(responses), "--score", "cascade"]
    assert main([*args, "--checks", "math", "--json", "--no-progress"]) == 0
    only_math = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["word"]["apgr"]
    assert only_math > 0.8  # the math check alone finds the wrong equations


def test_load_responses_filters_models_and_reads_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"prompt_id": ["1", "1", "2"], "model": ["a", "b", "a"], "response": ["x", "y", None]})
    pq.write_table(table, tmp_path / "r.parquet")
    assert load_responses(tmp_path / "r.parquet", ["a"]) == {("1", "a"): "x"}
    assert load_responses(tmp_path / "r.parquet") == {("1", "a"): "x", ("1", "b"): "y"}


@pytest.mark.skipif(not (SHARED / "responses").exists(), reason="needs ../shared/data/responses beside the repo")
def test_cli_on_the_shared_word_problems(capsys) -> None:
    pytest.importorskip("pyarrow")
    path = str(SHARED / "responses" / "word_problems.parquet")
    args = ["--strong", "gpt-4", "--weak", "code-davinci-002", "--score", "cascade", "--json", "--no-progress"]
    rc = main([path, "--responses", path, *args])
    assert rc == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(obj) == {"aqua"} and obj["aqua"]["n"] == 253
    assert obj["aqua"]["apgr"] > 0.55
