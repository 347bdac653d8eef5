"""Tests of threshold calibration and new-model vector fitting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from llmroute.calibration import (
    fit_model_vector,
    main,
    quality_target_for_strong_share,
    threshold_for_quality,
    threshold_for_strong_share,
)
from llmroute.predictor import default_model_dir

HAS_MODEL = (default_model_dir() / "predictor.onnx").exists()


@dataclass(frozen=True)
class P:
    difficulty: float
    quality: dict[str, float]


def test_threshold_for_strong_share() -> None:
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    t = threshold_for_strong_share(scores, 0.3)
    assert sum(s > t for s in scores) == 3
    assert sum(s > threshold_for_strong_share(scores, 0.0) for s in scores) == 0
    assert sum(s > threshold_for_strong_share(scores, 1.0) for s in scores) == 10
    preds = [P(d, {}) for d in scores]
    assert threshold_for_strong_share(preds, 0.3) == t
    with pytest.raises(ValueError):
        threshold_for_strong_share(scores, 1.5)


def test_quality_target_for_strong_share() -> None:
    preds = [P(0.5, {"weak": q}) for q in np.linspace(0.05, 0.95, 19)]
    target = quality_target_for_strong_share(preds, "weak", 0.25)
    escalated = sum(p.quality["weak"] < target for p in preds)
    assert abs(escalated / len(preds) - 0.25) <= 1 / len(preds)


def test_threshold_for_quality() -> None:
    scores = [0.9, 0.8, 0.1, 0.2]
    strong = [1, 1, 1, 1]
    weak = [0, 0, 1, 1]
    thr, share = threshold_for_quality(scores, strong, weak, 1.0)
    assert share == 0.5 and sum(s > thr for s in scores) == 2
    thr, share = threshold_for_quality(scores, strong, weak, 0.4)
    assert share == 0.0
    _, share = threshold_for_quality(scores, [0, 0, 0, 0], weak, 0.99)
    assert share == 1.0


def test_fit_model_vector_recovers_a_vector() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 3))
    true = np.array([0.5, 1.5, -1.0, 0.3])
    p = 1 / (1 + np.exp(-(np.c_[np.ones(400), z] @ true)))
    y = (rng.random(400) < p).astype(float)
    v = fit_model_vector(z, y, prior=[0, 0, 0, 0], l2=0.1)
    assert np.allclose(v, true, atol=0.35)
    # with no data the prior wins
    v0 = fit_model_vector(np.zeros((0, 3)), [], prior=[1, 2, 3, 4])
    assert np.allclose(v0, [1, 2, 3, 4])
    with pytest.raises(ValueError):
        fit_model_vector(z, y, prior=[0, 0])


@pytest.mark.skipif(not HAS_MODEL, reason="models/predictor.onnx not built")
def test_cli_writes_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"routes": {"auto": {"strategy": "predictive", "models": ["small", "large"]}}}))
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(f"question number {i} " + "word " * i for i in range(40)))
    assert main(["--config", str(cfg), "--route", "auto", "--prompts", str(prompts), "--strong-share", "0.25"]) == 0
    out = json.loads(cfg.read_text())
    assert 0.0 < out["routes"]["auto"]["quality_target"] < 1.0
    assert out["routes"]["auto"]["models"] == ["small", "large"]
    assert main(["--config", str(cfg), "--model", "small", "--tier", "small"]) == 0
    assert json.loads(cfg.read_text())["models"]["small"]["predictor"] == {"tier": "small"}
    labels = tmp_path / "l.csv"
    lines = ["prompt_id,benchmark,prompt,model,score"]
    for i in range(30):
        lines.append(f"{i},b,question {i} {'long ' * i},new-model,{int(i % 3 == 0)}")
        lines.append(f"{i},b,question {i} {'long ' * i},large,1")
        lines.append(f"{i},b,question {i} {'long ' * i},small,{int(i < 15)}")
    labels.write_text("\n".join(lines) + "\n")
    assert main(["--config", str(cfg), "--model", "new-model", "--labels", str(labels), "--like", "claude-v1"]) == 0
    vec = json.loads(cfg.read_text())["models"]["new-model"]["predictor"]["vector"]
    assert len(vec) >= 2
    assert main(["--config", str(cfg), "--route", "auto", "--labels", str(labels), "--target-quality", "0.9"]) == 0
    assert "quality_target" in json.loads(cfg.read_text())["routes"]["auto"]
