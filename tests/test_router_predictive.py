"""Predictive routes: the predictor orders models, the decision is in the trace, failures of the
predictor never fail a call, and calibration fits the route to a sample of prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import make_config

import llmroute
from llmroute.predictor import Predictor
from llmroute.testing import Fleet

pytestmark = pytest.mark.anyio

EASY = "Hi!"
HARD = (
    "Let f(x) = 3x^2 - 12x + 7. Find the minimum of f, the x where it occurs, then integrate f from 0 to 4 "
    "and prove your answer is correct. " * 4
)


def predictive_config(fleet: Fleet, **route: Any) -> dict[str, Any]:
    cfg = make_config(fleet)
    cfg["models"]["small"]["predictor"] = {"tier": "small"}
    cfg["models"]["claude"]["predictor"] = {"tier": "frontier"}
    cfg["routes"]["auto"] = {"models": ["claude", "small"], "strategy": "predictive", **route}
    return cfg


async def test_predictive_route_puts_the_decision_in_the_trace(fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(predictive_config(fleet, quality_target=0.0)) as r:
        reply = await r.complete(EASY, route="auto")
    decision = reply.route.prediction
    assert decision is not None and decision.used_prediction
    assert 0.0 <= decision.difficulty <= 1.0
    assert set(decision.quality) == {"small", "claude"}
    assert reply.model == "small"  # target 0: the cheapest model is good enough
    assert reply.route.candidates[0].score == pytest.approx(decision.quality["small"])
    assert reply.route.to_dict()["prediction"]["chosen"] == "small"


async def test_unreachable_target_escalates_to_the_best_model(fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(predictive_config(fleet, quality_target=1.0)) as r:
        reply = await r.complete(HARD, route="auto")
    assert reply.model == "claude"
    assert [c.model for c in reply.route.candidates][-1] == "small"  # still a fallback


async def test_missing_model_file_falls_back_to_configured_order(fleet: Fleet, tmp_path: Path) -> None:
    broken = tmp_path / "predictor.onnx"
    broken.write_bytes(b"not an onnx model")
    (tmp_path / "predictor.json").write_text("{}")
    predictor = Predictor(broken, tmp_path / "predictor.json")
    async with llmroute.Router.from_dict(predictive_config(fleet, quality_target=0.5), predictor=predictor) as r:
        reply = await r.complete(EASY, route="auto")
    assert reply.text
    assert reply.model == "claude"  # configured order kept
    assert "configured order" in reply.route.reason or not reply.route.prediction.used_prediction


def test_calibrate_hits_the_strong_share(fleet: Fleet) -> None:
    prompts = [EASY, HARD, "What is 2+2?", "Summarise the causes of the French revolution in detail.", "ok"] * 4
    prompts += [f"Question {i}: " + "explain " * i for i in range(20)]
    r = llmroute.Router.from_dict(predictive_config(fleet))
    target = r.calibrate(prompts, route="auto", strong_share=0.3)
    assert 0.0 <= target <= 1.0
    assert r.config.routes["auto"].quality_target == target
    escalated = sum(r.plan(p, route="auto").trace.candidates[0].model == "claude" for p in prompts)
    assert abs(escalated / len(prompts) - 0.3) <= 0.15
    with pytest.raises(llmroute.InvalidRequestError, match="predictive"):
        r.calibrate(prompts, route="default", strong_share=0.3)


PROMPTS = [
    "Hi!",
    "What is the capital of France?",
    "Translate 'good morning' into Spanish.",
    "def add(a, b):\n    return a + b\n# write a unit test for add",
    "A train leaves at 3 pm at 60 km/h and another at 4 pm at 90 km/h; when does the second catch up?",
    HARD,
    "Which of these is a mammal? A) shark B) whale C) trout D) eel",
    "Summarise the causes of the French revolution in two sentences.",
]


async def _answered(router: llmroute.Router, n: int) -> list[llmroute.Reply]:
    return [await router.complete(PROMPTS[i % len(PROMPTS)] + f" ({i})", route="auto") for i in range(n)]


@pytest.mark.parametrize("score", [0.0, 1.0])
async def test_feedback_refits_the_answering_models_vector(fleet: Fleet, score: float) -> None:
    async with llmroute.Router.from_dict(predictive_config(fleet, quality_target=0.0)) as r:
        replies = await _answered(r, 12)
        assert {x.model for x in replies} == {"small"}  # target 0: the cheap model answers all
        before = replies[0].route.prediction.quality["small"]
        for reply in replies:
            r.record_feedback(reply, score)
        assert r.feedback_counts() == {"small": 12}
        assert await r.refit_models(min_labels=13) == {}  # not enough labels yet: nothing moves
        fits = await r.refit_models(min_labels=10)
        fit = fits["small"]
        assert (fit.labels, fit.mean_score, fit.source_before) == (12, score, "tier:small")
        assert fit.vector_after != fit.vector_before
        # the config holds the fitted vector (tier kept), and later predictions use it
        assert r.config.models["small"].predictor == {"tier": "small", "vector": list(fit.vector_after)}
        again = await r.complete(PROMPTS[0] + " (0)", route="auto")
        after = again.route.prediction.quality["small"]
        assert after < before if score == 0.0 else after > before
        # a second refit starts from the fitted vector
        assert (await r.refit_models(min_labels=10))["small"].source_before == "vector"


async def test_feedback_is_bounded_and_checked(fleet: Fleet) -> None:
    cfg = predictive_config(fleet, quality_target=0.0)
    cfg["routes"]["plain"] = {"models": ["small"]}
    async with llmroute.Router.from_dict(cfg) as r:
        r.feedback_limit = 3
        replies = await _answered(r, 5)
        for reply in replies:
            r.record_feedback(reply, 1)
        assert r.feedback_counts() == {"small": 3}  # the oldest were dropped
        with pytest.raises(llmroute.InvalidRequestError, match="within \\[0, 1\\]"):
            r.record_feedback(replies[0], 1.5)
        with pytest.raises(llmroute.InvalidRequestError, match="within \\[0, 1\\]"):
            r.record_feedback(replies[0], float("nan"))
        with pytest.raises(llmroute.InvalidRequestError, match="a number"):
            r.record_feedback(replies[0], "good")  # type: ignore[arg-type]
        plain = await r.complete("Hi!", route="plain")
        with pytest.raises(llmroute.InvalidRequestError, match="carries no prediction"):
            r.record_feedback(plain, 1.0)
        with pytest.raises(llmroute.InvalidRequestError, match="min_labels"):
            await r.refit_models(min_labels=0)
        assert r.feedback_counts() == {"small": 3}
