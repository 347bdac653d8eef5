"""Tests of the routing metrics and the eval CLI (inline fixture data, no shared/ needed)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from llmroute.eval import _auc, evaluate_pair, load_long, main, pgr_curve
from llmroute.predictor import default_model_dir

HAS_MODEL = (default_model_dir() / "predictor.onnx").exists()
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "routing"


def test_perfect_router_and_constant_router() -> None:
    strong = [1, 1, 1, 1, 0, 1]
    weak = [0, 0, 1, 1, 0, 1]
    oracle = [s - w for s, w in zip(strong, weak, strict=True)]
    m = evaluate_pair(oracle, strong, weak)
    # gap 2 prompts of 6: the oracle recovers everything with 1/3 strong calls
    assert m.cpt50 == pytest.approx(1 / 6) and m.cpt80 == pytest.approx(0.8 / 3)
    assert m.apgr == pytest.approx(1 - (1 / 3) / 2)
    assert m.oracle_apgr == pytest.approx(m.apgr)
    const = evaluate_pair([0.3] * 6, strong, weak)
    assert const.apgr == pytest.approx(0.5)
    assert const.cpt50 == pytest.approx(0.5) and const.cpt80 == pytest.approx(0.8)
    worst = evaluate_pair([-x for x in oracle], strong, weak)
    assert worst.apgr < 0.5


def test_pgr_curve_endpoints() -> None:
    xs, ys = pgr_curve([3, 2, 1], [1, 0, 1], [0, 0, 0])
    assert xs[0] == 0 and xs[-1] == 1 and ys[0] == 0 and ys[-1] == pytest.approx(1)


def test_zero_gap_does_not_divide_by_zero() -> None:
    m = evaluate_pair([1, 2, 3, 4], [1, 0, 1, 0], [0, 1, 0, 1])
    assert m.degenerate and m.apgr == 0.5 and m.cpt50 == 0.5 and m.cpt80 == 0.8
    empty = evaluate_pair([], [], [])
    assert empty.n == 0 and empty.degenerate


def test_bad_inputs_raise_instead_of_looping() -> None:
    # a NaN never equals itself: the tie-block loop must still advance (this once ran out of memory)
    with pytest.raises(ValueError, match=r"route_score\[2\] is nan"):
        evaluate_pair([1.0, 2.0, float("nan")], [1, 1, 0], [0, 1, 1])
    with pytest.raises(ValueError, match=r"strong\[1\]"):
        evaluate_pair([1, 2, 3], [1, float("nan"), 0], [0, 1, 1])
    with pytest.raises(ValueError, match="differ in length"):
        evaluate_pair([1, 2], [1, 0, 1], [0, 0, 1])
    xs, ys = pgr_curve([float("nan")] * 3, [1, 0, 1], [0, 0, 0])
    assert xs == [0.0, 1 / 3, 2 / 3, 1.0] and ys[-1] == pytest.approx(1)


def test_auc() -> None:
    assert _auc([0.1, 0.9], [False, True]) == 1.0
    assert _auc([0.5, 0.5], [False, True]) == 0.5
    assert _auc([0.1, 0.2], [True, True]) is None


def _write_long(path: Path, gz: bool = False) -> None:
    rows = []
    prompts = {
        "q1": ("Add 2 and 3.", 1, 1),
        "q2": ("A train leaves at 3 pm travelling 60 km/h; another leaves at 4 pm at 90 km/h. " * 3, 1, 0),
        "q3": ("Which is a mammal? A) shark B) whale", 1, 1),
        "q4": ("Explain the proof of the prime number theorem in detail, with all the lemmas. " * 5, 0, 0),
        "q5": ("Compute the determinant of [[1,2],[3,4]] and then its inverse matrix entries.", 1, 0),
        "q6": ("Say hi.", 1, 1),
    }
    for pid, (text, s, w) in prompts.items():
        bench = "math" if pid in ("q1", "q2", "q5") else "qa"
        rows.append({"prompt_id": pid, "benchmark": bench, "prompt": text, "model": "big", "score": s})
        rows.append({"prompt_id": pid, "benchmark": bench, "prompt": text, "model": "tiny", "score": w})
    rows.append({"prompt_id": "q7", "benchmark": "qa", "prompt": "only one model", "model": "big", "score": 1})
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt_id", "benchmark", "prompt", "model", "score"])
        writer.writeheader()
        writer.writerows(rows)


def test_load_long_csv_and_gz(tmp_path: Path) -> None:
    _write_long(tmp_path / "d.csv")
    _write_long(tmp_path / "d.csv.gz", gz=True)
    a = load_long(tmp_path / "d.csv")
    b = load_long(tmp_path / "d.csv.gz")
    assert len(a) == len(b) == 7
    assert a[0].scores == {"big": 1.0, "tiny": 1.0}


def test_load_long_missing_column(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("prompt_id,prompt\n1,hi\n")
    with pytest.raises(ValueError, match="missing column"):
        load_long(tmp_path / "bad.csv")


@pytest.mark.skipif(not HAS_MODEL, reason="models/predictor.onnx not built")
def test_cli_json_is_one_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_long(tmp_path / "d.csv")
    assert main([str(tmp_path / "d.csv"), "--strong", "big", "--weak", "tiny", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    obj = json.loads(out[-1])
    assert set(obj) == {"math", "qa"}
    for v in obj.values():
        assert set(v) == {"apgr", "cpt50", "cpt80", "n"}
        assert isinstance(v["n"], int) and isinstance(v["apgr"], float)
    assert obj["math"]["n"] == 3


@pytest.mark.skipif(not HAS_MODEL, reason="models/predictor.onnx not built")
def test_cli_table_and_pool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_long(tmp_path / "d.csv")
    assert main([str(tmp_path / "d.csv"), "--strong", "big", "--weak", "tiny"]) == 0
    text = capsys.readouterr().out
    assert "APGR" in text and "math" in text
    assert main([str(tmp_path / "d.csv"), "--pool", "tiny,big", "--prices", "tiny=1,big=10", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert obj["math"]["single"]["big"]["score"] == 1.0
    assert obj["qa"]["oracle"][0]["score"] >= obj["qa"]["curve"][0]["score"] - 1e-9


@pytest.mark.skipif(not HAS_MODEL, reason="models/predictor.onnx not built")
def test_cli_routes_by_difficulty_unless_asked_for_the_gap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strong, weak = "gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat"  # both in the training pool
    data = tmp_path / "d.csv"
    _write_long(data)
    data.write_text(data.read_text().replace(",big,", f",{strong},").replace(",tiny,", f",{weak},"))
    runs = {}
    for score in ("auto", "difficulty", "gap"):
        assert main([str(data), "--strong", strong, "--weak", weak, "--score", score, "--json"]) == 0
        runs[score] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert runs["auto"] == runs["difficulty"]
    assert set(runs["gap"]) == {"math", "qa"}
    # the gap of two models the predictor does not know is flagged, not silently meaningless
    _write_long(data)
    assert main([str(data), "--strong", "big", "--weak", "tiny", "--score", "gap", "--json"]) == 0
    assert "no vector for big, tiny" in capsys.readouterr().err


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing.csv"), "--strong", "a", "--weak", "b"]) == 2
    assert main([str(tmp_path / "missing.csv")]) == 2


@pytest.mark.skipif(not (HAS_MODEL and SHARED.exists()), reason="needs ../shared/data/routing beside the repo")
def test_cli_on_shared_parquet(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyarrow")
    rc = main(
        [
            str(SHARED / "routerbench.parquet"),
            "--strong",
            "gpt-4-1106-preview",
            "--weak",
            "mistralai/mixtral-8x7b-chat",
            "--json",
            "--no-progress",
        ]
    )
    assert rc == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(obj) == {"arc_challenge", "mbpp", "winogrande"}


@pytest.mark.skipif(not HAS_MODEL, reason="models/predictor.onnx not built")
def test_cli_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _write_long(tmp_path / "d.csv")
    assert main([str(tmp_path / "d.csv"), "--strong", "big", "--weak", "tiny", "--plot", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").stat().st_size > 1000
    args = [
        str(tmp_path / "d.csv"),
        "--pool",
        "tiny,big",
        "--prices",
        "tiny=1,big=10",
        "--plot",
        str(tmp_path / "b.png"),
    ]
    assert main(args) == 0
    assert (tmp_path / "b.png").exists()


def test_missing_benchmark_column_is_one_group(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("prompt_id,prompt,model,score\n1,hi,a,1\n1,hi,b,0\n")
    rows = load_long(tmp_path / "d.csv")
    assert rows[0].benchmark == "all" and rows[0].scores == {"a": 1.0, "b": 0.0}


@pytest.mark.skipif(not HAS_MODEL, reason="models/predictor.onnx not built")
def test_cli_uses_vectors_fitted_on_your_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llmroute.calibration import main as calibrate

    data = tmp_path / "d.csv"
    _write_long(data)
    cfg = tmp_path / "cfg.json"
    for model, tier in (("big", "large"), ("tiny", "small")):
        assert calibrate(["--config", str(cfg), "--model", model, "--labels", str(data), "--tier", tier]) == 0
    runs = {}
    for score in ("auto", "gap", "difficulty"):
        args = [str(data), "--strong", "big", "--weak", "tiny", "--config", str(cfg), "--score", score, "--json"]
        assert main(args) == 0
        runs[score] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert runs["auto"] == runs["gap"]  # both models have fitted vectors: auto uses their gap
    assert "no vector" not in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(data), "--strong", "big", "--weak", "tiny", "--config", str(tmp_path / "bad.json")]) == 2
    assert "cannot read --config" in capsys.readouterr().err
