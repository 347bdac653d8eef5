"""Tests of the predictor: features, ONNX model, profiles, edge-case inputs, failure modes."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from llmroute import _features as F
from llmroute.policy.predictive import PredictiveCandidate, choose
from llmroute.predictor import (
    ModelProfile,
    Prediction,
    Predictor,
    PredictorUnavailableError,
    default_model_dir,
)

REPO = Path(__file__).resolve().parent.parent
MODEL = default_model_dir() / "predictor.onnx"

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="models/predictor.onnx not built")


@pytest.fixture(scope="module")
def pred() -> Predictor:
    return Predictor.load(MODEL)


# ----------------------------------------------------------------------------- features


def test_hash_buckets_are_fixed_numbers() -> None:
    # wrapping uint64 arithmetic only: the same on every platform and run
    got = F.hash_buckets(np.array([0, 1, 2, 199_997], dtype=np.int64)).tolist()
    assert got == EXPECTED_BUCKETS
    assert F.hash_buckets(np.array([], dtype=np.int64)).tolist() == [F.N_BUCKETS]


EXPECTED_BUCKETS = [0, 3531, 2967, 1100, 2993, 737, 2128]


def test_features_deterministic() -> None:
    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Solve 12 * 7 + 3. Explain why?\n```python\nprint(1)\n```"},
    ]
    a = F.extract(msgs)
    b = F.extract(json.loads(json.dumps(msgs)))
    assert np.array_equal(a.buckets, b.buckets)
    assert np.array_equal(a.struct, b.struct)
    assert a.struct.dtype == np.float32 and a.buckets.dtype == np.int64
    assert len(a.struct) == len(F.STRUCT_NAMES)
    s = dict(zip(F.STRUCT_NAMES, a.struct.tolist(), strict=True))
    assert s["has_system"] == 1.0 and s["log_code_marks"] > 0 and s["log_numbers"] > 0


def test_features_same_in_a_fresh_process() -> None:
    code = (
        "import json; from llmroute import _features as F;"
        "f = F.extract('Which gas do plants absorb? A) O2 B) CO2');"
        "print(json.dumps([f.buckets.tolist(), [round(float(x), 6) for x in f.struct]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    f = F.extract("Which gas do plants absorb? A) O2 B) CO2")
    assert json.loads(out.stdout) == [f.buckets.tolist(), [round(float(x), 6) for x in f.struct]]


def test_long_input_is_bounded() -> None:
    huge = "lorem ipsum dolor sit amet " * 40_000  # ~1 MB
    t = time.perf_counter()
    f = F.extract([{"role": "user", "content": huge}])
    assert time.perf_counter() - t < 0.5
    assert f.n_tokens < 2_000
    small = F.extract([{"role": "user", "content": huge[:1000]}])
    assert f.struct[F.STRUCT_NAMES.index("log_chars")] > small.struct[F.STRUCT_NAMES.index("log_chars")]


def test_import_does_not_load_onnxruntime_or_tokenizer() -> None:
    code = (
        "import sys, llmroute.predictor, llmroute.policy.predictive, llmroute.calibration, llmroute.eval;"
        "bad = [m for m in ('onnxruntime', 'tiktoken') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- model


def _numpy_forward(onnx_path: Path, feats: F.Features, vectors: np.ndarray) -> tuple[np.ndarray, ...]:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(str(onnx_path)).graph.initializer}
    s = np.clip((feats.struct.astype(np.float64) - w["mu"]) / w["sd"], -5, 5)
    t = np.minimum(feats.tokens, w["tok_uw"].size - 1)
    tok = w["tok_uw"][t].sum() / max(w["tok_w"][t].sum(), 1e-6)
    d_logit = s @ w["d_w"][:, 0] + tok + w["d_b"][0]
    z = w["table"][feats.buckets].mean(axis=0) + s @ w["w_struct"] + w["bias"]
    z = z + w["e0"] * d_logit  # latent 0 = minus the difficulty logit
    q = 1 / (1 + np.exp(-(vectors.astype(np.float64) @ np.r_[1.0, z])))
    return q, z, np.array([1 / (1 + np.exp(-d_logit))])


def test_onnx_equals_numpy_forward(pred: Predictor) -> None:
    names = list(pred.pool)[:5]
    for text in ("", "What is 2+2?", "def f(x):\n    return x  # " * 50, "长城有多长？" * 20):
        p = pred.predict([{"role": "user", "content": text}], names)
        feats = F.extract([{"role": "user", "content": text}])
        vec = np.array([pred.metadata["models"][n] for n in names])
        q, z, d = _numpy_forward(MODEL, feats, vec)
        assert np.allclose([p.quality[n] for n in names], q, atol=1e-5)
        assert np.allclose(p.latent, z, atol=1e-5)
        assert abs(p.difficulty - d[0]) < 1e-5


def test_sidecar_describes_the_model(pred: Predictor) -> None:
    meta = pred.metadata
    assert meta["features"]["struct"] == list(F.STRUCT_NAMES)
    assert len(meta["models"]) >= 10
    assert {"small", "medium", "large", "frontier", "neutral"} <= set(meta["tiers"])
    assert "routerdc7_nc.parquet" not in meta["training"]["files"]
    assert MODEL.stat().st_size < 5_000_000


def test_loads_and_predicts_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_net(*a: object, **k: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket, "socket", no_net)
    monkeypatch.setattr(socket, "create_connection", no_net)
    p = Predictor.load(MODEL).predict("hello", ["gpt-4-1106-preview"])
    assert 0.0 <= p.difficulty <= 1.0


def test_prediction_shape(pred: Predictor) -> None:
    p = pred.predict([{"role": "user", "content": "Name the capital of France."}], ["gpt-4-1106-preview", "claude-v1"])
    assert isinstance(p, Prediction)
    assert set(p.quality) == {"gpt-4-1106-preview", "claude-v1"}
    assert all(0.0 < q < 1.0 for q in p.quality.values())
    assert p.known == {"gpt-4-1106-preview": True, "claude-v1": True}
    assert p.source["claude-v1"] == "pool"
    json.dumps(p.as_dict())


def test_unknown_like_tier_and_vector_profiles(pred: Predictor) -> None:
    width = pred.metadata["latent_dim"] + 1
    models = [
        ModelProfile("mystery-model"),
        ModelProfile("my-gpt4", like="gpt-4-1106-preview"),
        ModelProfile("tiny", tier="small"),
        ModelProfile("fitted", vector=tuple([0.5] + [0.0] * (width - 1))),
        ModelProfile("bad-like", like="not-a-pool-model"),
        "gpt-4-1106-preview",
    ]
    p = pred.predict("Prove that sqrt(2) is irrational.", models)
    assert p.known["mystery-model"] is False and p.source["mystery-model"] == "neutral"
    assert p.known["bad-like"] is False
    assert p.quality["mystery-model"] == pytest.approx(1.0 - p.difficulty)
    assert p.known["my-gpt4"] and p.source["my-gpt4"] == "like:gpt-4-1106-preview"
    assert p.quality["my-gpt4"] == p.quality["gpt-4-1106-preview"]
    assert p.source["tiny"] == "tier:small" and p.source["fitted"] == "vector"
    assert p.quality["gpt-4-1106-preview"] > p.quality["tiny"]
    with pytest.raises(ValueError):
        pred.predict("x", [ModelProfile("short", vector=(1.0,))])


def test_profile_from_config() -> None:
    assert ModelProfile.from_config("a", {"like": "claude-v1"}).like == "claude-v1"
    assert ModelProfile.from_config("a", {"tier": "large"}).tier == "large"
    assert ModelProfile.from_config("a", {"vector": [1, 2]}).vector == (1.0, 2.0)
    assert ModelProfile.from_config("a", None) == ModelProfile("a")


@pytest.mark.parametrize(
    "messages",
    [
        [],
        "",
        [{"role": "user", "content": None}],
        [{"role": "user", "content": ""}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}],
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}, "raw"],
            }
        ],
        [{"role": "user", "content": b"\x00\xff bytes"}],
        [{"role": "user", "content": 12345}],
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "call a tool"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "1", "content": "42"},
        ],
        ["not a dict", {"role": "user", "content": "\ud800 lone surrogate"}],
    ],
)
def test_odd_inputs_do_not_fail(pred: Predictor, messages: object) -> None:
    p = pred.predict(messages, ["gpt-4-1106-preview", "unknown"])  # type: ignore[arg-type]
    assert 0.0 <= p.difficulty <= 1.0
    assert np.isfinite(list(p.quality.values())).all()


def test_huge_prompt_is_fast(pred: Predictor) -> None:
    huge = "x = 1 + 2  # comment with words\n" * 33_000  # ~1 MB
    pred.predict("warm", ["claude-v1"])
    t = time.perf_counter()
    p = pred.predict([{"role": "user", "content": huge}], ["claude-v1"])
    assert time.perf_counter() - t < 0.05
    assert p.n_tokens <= 3_000


def test_tools_flag_changes_features() -> None:
    a = F.extract("use the weather tool")
    b = F.extract("use the weather tool", tools=[{"type": "function", "function": {"name": "w"}}])
    assert a.struct[F.STRUCT_NAMES.index("has_tools")] == 0.0
    assert b.struct[F.STRUCT_NAMES.index("has_tools")] == 1.0


def test_empty_model_list(pred: Predictor) -> None:
    p = pred.predict("hello", [])
    assert dict(p.quality) == {}


# ----------------------------------------------------------------------------- failures


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PredictorUnavailableError, match="not found"):
        Predictor.load(tmp_path / "nope.onnx")
    lazy = Predictor(tmp_path / "nope.onnx")  # like Predictor.default(): nothing read yet
    with pytest.raises(PredictorUnavailableError):
        lazy.predict("hi", ["a"])


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    shutil.copy(MODEL, tmp_path / "predictor.onnx")
    shutil.copy(MODEL.with_suffix(".json"), tmp_path / "predictor.json")
    data = bytearray((tmp_path / "predictor.onnx").read_bytes())
    data[100:200] = b"\x00" * 100
    (tmp_path / "predictor.onnx").write_bytes(bytes(data))
    with pytest.raises(PredictorUnavailableError, match="corrupt"):
        Predictor.load(tmp_path)
    # garbage whose hash matches the sidecar: onnxruntime refuses it, still our error
    (tmp_path / "predictor.onnx").write_bytes(b"garbage")
    meta = json.loads((tmp_path / "predictor.json").read_text())
    import hashlib

    meta["onnx_sha256"] = hashlib.sha256(b"garbage").hexdigest()
    (tmp_path / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorUnavailableError, match="onnxruntime"):
        Predictor.load(tmp_path).predict("hi", ["a"])
    (tmp_path / "predictor.json").write_text("{not json")
    with pytest.raises(PredictorUnavailableError, match="JSON"):
        Predictor.load(tmp_path)


def test_router_falls_back_to_config_order_when_model_missing(tmp_path: Path) -> None:
    broken = Predictor(tmp_path / "missing.onnx")
    prediction = broken.try_predict("hello", ["small", "large"])
    assert prediction is None
    cands = [PredictiveCandidate("small", 0.001), PredictiveCandidate("large", 0.01)]
    decision = choose(prediction, cands, quality_target=0.8)
    assert decision.order == ("small", "large")
    assert not decision.used_prediction and "configured order" in decision.reason


def test_error_derives_from_package_root() -> None:
    from llmroute.errors import LLMRouteError

    assert issubclass(PredictorUnavailableError, LLMRouteError)


def test_default_is_a_lazy_singleton() -> None:
    a = Predictor.default()
    assert a is Predictor.default()
