"""The online learner (llmroute/learning.py): per-model heads over the predictor's own features,
learning from labels, exploration within its cost cap, state that round-trips and merges."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import make_config

import llmroute
from llmroute.config import LearningConfig
from llmroute.learning import LearnedStateError, LearnerSettings, Learning, OnlineLearner
from llmroute.policy.predictive import PredictiveCandidate
from llmroute.predictor import ModelProfile, Predictor
from llmroute.testing import Fleet

MATHS = [f"Compute {i} * {i + 7} - {3 * i} and simplify the fraction {i}/{i + 2}." for i in range(40)]
CHAT = [f"Tell me a fun fact about the colour number {i} and why people like it." for i in range(40)]
PROFILES = [ModelProfile("small", tier="small"), ModelProfile("large", tier="large")]
CANDS = [PredictiveCandidate("small", 0.001), PredictiveCandidate("large", 0.02)]


@pytest.fixture(scope="module")
def pred() -> Predictor:
    return Predictor.default()


def _learning(**cfg: Any) -> Learning:
    """A Learning outside a router (the parts these tests exercise need only its config)."""
    return Learning(None, config=LearningConfig(**cfg))


def test_the_prior_dominates_few_labels_and_the_learned_part_takes_over(pred: Predictor) -> None:
    lrn = OnlineLearner()
    p = pred.predict(MATHS[0], PROFILES)
    x = lrn.encode(p)
    assert x is not None
    assert lrn.predict(["small"], x) == ([0.0], [pytest.approx(lrn.predict(["never-seen"], x)[1][0])])
    lrn.update("small", x, -0.5)  # one label: the model did 0.5 worse than the prior said
    one = lrn.predict(["small"], x)[0][0]
    assert -0.2 < one < 0.0  # a single label moves it a little
    for prompt in MATHS[1:]:
        lrn.update("small", lrn.encode(pred.predict(prompt, PROFILES)), -0.5)
    many = lrn.predict(["small"], x)[0][0]
    assert many < -0.35  # forty agree: the learned part has taken over
    assert lrn.labels() == {"small": 40}
    _, var_after = lrn.predict(["small", "large"], x)
    assert var_after[0] < var_after[1]  # labels shrink the uncertainty of that model only


def test_learns_which_kind_of_prompt_a_model_fails(pred: Predictor) -> None:
    lrn = OnlineLearner()
    for m, c in zip(MATHS[:30], CHAT[:30]):
        lrn.update("small", lrn.encode(pred.predict(m, PROFILES)), -0.4)  # fails maths
        lrn.update("small", lrn.encode(pred.predict(c, PROFILES)), 0.1)  # fine at chat
    held_m = lrn.predict(["small"], lrn.encode(pred.predict(MATHS[35], PROFILES)))[0][0]
    held_c = lrn.predict(["small"], lrn.encode(pred.predict(CHAT[35], PROFILES)))[0][0]
    assert held_m < held_c - 0.2


def test_update_is_deterministic_and_rejects_nan(pred: Predictor) -> None:
    blobs = []
    for _ in range(2):
        lrn = OnlineLearner()
        for i, prompt in enumerate(MATHS + CHAT):
            lrn.update(("small", "large")[i % 2], lrn.encode(pred.predict(prompt, PROFILES)), (i % 5) / 5 - 0.4)
        blobs.append(lrn.to_bytes())
    assert blobs[0] == blobs[1]
    with pytest.raises(ValueError, match="finite"):
        lrn.update("small", lrn.encode(pred.predict("x", PROFILES)), float("nan"))


def test_state_round_trips_and_corruption_is_refused(pred: Predictor) -> None:
    lrn = OnlineLearner(predictor_id="abc")
    xs = [lrn.encode(pred.predict(p, PROFILES)) for p in MATHS[:10]]
    for i, x in enumerate(xs):
        lrn.update("small", x, -0.3 + i / 50)
    blob = lrn.to_bytes()
    back = OnlineLearner.from_bytes(blob, predictor_id="abc", settings=LearnerSettings())
    assert back.to_bytes() == blob
    assert back.labels() == {"small": 10}
    assert back.predict(["small", "large"], xs[3]) == lrn.predict(["small", "large"], xs[3])
    bad = bytearray(blob)
    bad[-5] ^= 0xFF
    for corrupt in (bytes(bad), blob[:40], b"", b"not a state", blob[:-1]):
        with pytest.raises(LearnedStateError):
            OnlineLearner.from_bytes(corrupt)
    with pytest.raises(LearnedStateError, match="predictor"):
        OnlineLearner.from_bytes(blob, predictor_id="other")
    with pytest.raises(LearnedStateError, match="settings"):
        OnlineLearner.from_bytes(blob, settings=LearnerSettings(hashed_dims=512))
    assert issubclass(LearnedStateError, llmroute.LLMRouteError)


def test_workers_merge_what_they_learned(pred: Predictor) -> None:
    prompts = MATHS + CHAT
    xs = [OnlineLearner().encode(pred.predict(p, PROFILES)) for p in prompts]
    ys = [(-0.4 if i < len(MATHS) else 0.1) for i in range(len(prompts))]
    alone = OnlineLearner()
    for x, y in zip(xs, ys):
        alone.update("small", x, y)
    a, b = OnlineLearner(), OnlineLearner()
    for i, (x, y) in enumerate(zip(xs, ys)):
        (a if i % 2 else b).update("small", x, y)
    shared = OnlineLearner()
    shared.merge(a)
    shared.merge(b)
    assert shared.labels() == {"small": len(prompts)}
    probe = [alone.encode(pred.predict(p, PROFILES)) for p in ("Compute 3 * 9 - 2.", "A fun fact?")]
    for x in probe:
        assert shared.predict(["small"], x)[0][0] == pytest.approx(alone.predict(["small"], x)[0][0], abs=0.08)
    # an increment since a base: merging a worker that started from the shared state adds only what is new
    base = shared.copy()
    worker = shared.copy()
    worker.update("small", xs[0], -0.4)
    shared.merge(worker, base=base)
    assert shared.labels() == {"small": len(prompts) + 1}
    with pytest.raises(LearnedStateError):
        shared.merge(OnlineLearner(LearnerSettings(hashed_dims=256)))


def test_decide_without_labels_or_exploration_is_the_prior(pred: Predictor) -> None:
    from llmroute.policy.predictive import choose

    learning = _learning()
    p = pred.predict(MATHS[0], PROFILES)
    assert learning.decide(p, CANDS, quality_target=0.6) == choose(p, CANDS, quality_target=0.6)


def test_labels_move_the_decision(pred: Predictor) -> None:
    learning = _learning()
    easy = pred.predict("Hi! How are you?", PROFILES)
    target = easy.quality["small"] - 0.05  # the prior sends it to the small model
    assert learning.decide(easy, CANDS, quality_target=target).chosen == "small"
    for prompt in ("Hi! How are you?", "Hello! How are you doing?", "Hi, how is it going?") * 10:
        assert learning.learn("small", pred.predict(prompt, PROFILES), 0.0)
    d = learning.decide(easy, CANDS, quality_target=target)
    assert d.chosen == "large"
    assert d.prior_quality["small"] == pytest.approx(easy.quality["small"])
    assert d.quality["small"] < d.prior_quality["small"] - 0.2
    assert d.as_dict()["explored"] is False and "prior_quality" in d.as_dict()
    assert not learning.learn("small", None, 1.0)
    with pytest.raises(llmroute.InvalidRequestError):
        learning.learn("small", easy, 1.5)


def _explore_run(pred: Predictor, seed: int, share: float) -> tuple[list[str], Learning]:
    learning = _learning(seed=seed, explore_share=share)
    cands = [PredictiveCandidate("small", 0.001), PredictiveCandidate("large", 0.003)]
    chosen = []
    for prompt in (MATHS + CHAT) * 3:
        d = learning.decide(pred.predict(prompt, PROFILES), cands, quality_target=0.7)
        chosen.append(f"{d.chosen}:{d.explored}")
        assert d.explored == d.reason.startswith("exploring")
    return chosen, learning


def test_exploration_is_seeded_and_within_its_cost_cap(pred: Predictor) -> None:
    a, la = _explore_run(pred, 1, 0.05)
    b, _ = _explore_run(pred, 1, 0.05)
    c, _ = _explore_run(pred, 2, 0.05)
    assert a == b and a != c
    assert la.explored_calls > 0
    assert 0 < la.explore_cost_usd <= 0.05 * la.routed_cost_usd + 1e-12
    for share in (0.01, 0.2):
        _, lrn = _explore_run(pred, 3, share)
        assert lrn.explore_cost_usd <= share * lrn.routed_cost_usd + 1e-12
    none, lz = _explore_run(pred, 1, 0.0)
    assert lz.explored_calls == 0 and not any(s.endswith("True") for s in none)


def test_learned_decision_and_update_stay_cheap(pred: Predictor) -> None:
    """Loose regression guard; bench/predictor.py measures the real budget (p50 <= 0.3 ms)."""
    import time

    learning = _learning(explore_share=0.1)
    preds = [pred.predict(p, PROFILES) for p in MATHS + CHAT]
    t = time.perf_counter()
    for i in range(400):
        learning.learn(("small", "large")[i % 2], preds[i % len(preds)], 0.5)
    assert (time.perf_counter() - t) / 400 < 500e-6
    times = []
    for p in preds * 3:
        t = time.perf_counter()
        learning.decide(p, CANDS, quality_target=0.7)
        times.append(time.perf_counter() - t)
    assert sorted(times)[len(times) // 2] < 1e-3


# ---------------------------------------------------------------------------- through the router


def _config(fleet: Fleet, **learning: Any) -> dict[str, Any]:
    cfg = make_config(fleet)
    cfg["models"]["small"]["predictor"] = {"tier": "small"}
    cfg["models"]["claude"]["predictor"] = {"tier": "frontier"}
    cfg["routes"]["auto"] = {"models": ["claude", "small"], "strategy": "predictive", "quality_target": 0.0}
    cfg["learning"] = learning
    return cfg


@pytest.mark.anyio
async def test_feedback_teaches_the_online_head(fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(_config(fleet)) as r:
        first = await r.complete("Hi there, what's up?", route="auto")
        assert first.model == "small" and first.route.prediction.prior_quality == {}
        for i in range(20):
            reply = await r.complete(f"Hi there, what's up? ({i})", route="auto")
            r.record_feedback(reply, 0.0)
        assert r.learning.learner.labels() == {"small": 20}
        again = await r.complete("Hi there, what's up?", route="auto")
        decision = again.route.prediction
        assert decision.prior_quality["small"] == pytest.approx(first.route.prediction.quality["small"])
        assert decision.quality["small"] < decision.prior_quality["small"] - 0.2
        assert again.route.to_dict()["prediction"]["explored"] is False


@pytest.mark.anyio
async def test_learning_can_be_switched_off(fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(_config(fleet, enabled=False)) as r:
        for i in range(5):
            r.record_feedback(await r.complete(f"Hi ({i})", route="auto"), 0.0)
        assert r.feedback_counts() == {"small": 5}  # still kept for refit_models
        assert r.learning.learner.labels() == {}


@pytest.mark.anyio
async def test_explored_calls_are_marked_in_the_trace(fleet: Fleet) -> None:
    cfg = _config(fleet, explore_share=0.5, seed=7)
    cfg["routes"]["auto"]["quality_target"] = 0.7
    async with llmroute.Router.from_dict(cfg) as r:
        replies = [await r.complete(f"{MATHS[i % 40]} {CHAT[i % 40]}", route="auto") for i in range(30)]
    explored = [x for x in replies if x.route.prediction.explored]
    assert explored and len(explored) < len(replies)
    for x in explored:
        assert x.route.to_dict()["prediction"]["explored"] is True
        assert x.route.reason.startswith("exploring")
        assert x.model == x.route.prediction.chosen


def test_encode_matches_the_features_of_the_prediction(pred: Predictor) -> None:
    p = pred.predict("def f(x):\n    return x + 1  # add a test", PROFILES)
    idx, val = OnlineLearner().encode(p)
    assert val[0] == 1.0 and val[1] == pytest.approx(p.difficulty)
    assert np.array_equal(val[5:29], p.features.struct.astype(np.float64))
    hashed = idx[29:] - 29
    assert np.array_equal(hashed, np.unique(p.features.buckets & 1023))
    assert np.linalg.norm(val[29:]) == pytest.approx(1.0)
    assert OnlineLearner().encode(SimpleNamespace(features=None)) is None
