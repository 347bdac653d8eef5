"""Tests of the predictive strategy (pure function over a prediction)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmroute.policy.predictive import DEFAULT_QUALITY_TARGET, PredictiveCandidate, choose


@dataclass(frozen=True)
class P:
    difficulty: float
    quality: dict[str, float]
    known: dict[str, bool] = field(default_factory=dict)


C = [PredictiveCandidate("small", 0.001), PredictiveCandidate("medium", 0.01), PredictiveCandidate("large", 0.1)]


def test_cheapest_model_reaching_the_target() -> None:
    d = choose(P(0.3, {"small": 0.7, "medium": 0.85, "large": 0.95}), C, quality_target=0.8)
    assert d.chosen == "medium"
    assert d.order == ("medium", "large", "small")
    assert d.used_prediction and d.quality_target == 0.8
    assert "medium" in d.reason and "0.80" in d.reason


def test_easy_prompt_goes_to_the_cheap_model() -> None:
    d = choose(P(0.05, {"small": 0.9, "medium": 0.93, "large": 0.97}), C, quality_target=0.8)
    assert d.order[0] == "small"


def test_none_reaches_target_takes_the_best() -> None:
    d = choose(P(0.9, {"small": 0.2, "medium": 0.4, "large": 0.6}), C, quality_target=0.8)
    assert d.chosen == "large"
    assert d.order == ("large", "medium", "small")
    assert "no model predicted to reach" in d.reason


def test_ties_broken_by_cost_then_config_order() -> None:
    # nobody reaches the target and the predictor cannot tell them apart: escalate by price
    d = choose(P(0.9, {"small": 0.5, "medium": 0.5, "large": 0.5}), C, quality_target=0.8)
    assert d.order == ("large", "medium", "small")
    # all reach it: the cheapest
    d = choose(P(0.1, {"small": 0.9, "medium": 0.9, "large": 0.9}), C, quality_target=0.8)
    assert d.order == ("small", "medium", "large")
    same_cost = [PredictiveCandidate("b", 1.0), PredictiveCandidate("a", 1.0)]
    d = choose(P(0.5, {"a": 0.9, "b": 0.9}), same_cost, quality_target=0.8)
    assert d.order == ("b", "a")


def test_cost_weight_utility() -> None:
    q = {"small": 0.6, "medium": 0.8, "large": 0.9}
    assert choose(P(0.5, q), C, cost_weight=0.0).chosen == "large"
    assert choose(P(0.5, q), C, cost_weight=100.0).chosen == "small"
    d = choose(P(0.5, q), C, cost_weight=1.0)
    # utilities: 0.599, 0.79, 0.8 -> large
    assert d.chosen == "large" and d.cost_weight == 1.0 and d.quality_target is None


def test_default_target_when_no_knob() -> None:
    d = choose(P(0.5, {"small": 0.79, "medium": 0.81, "large": 0.9}), C)
    assert d.quality_target == DEFAULT_QUALITY_TARGET and d.chosen == "medium"


def test_missing_prediction_keeps_config_order() -> None:
    d = choose(None, C, quality_target=0.8)
    assert d.order == ("small", "medium", "large") and not d.used_prediction
    assert "configured order" in d.reason


def test_missing_quality_for_some_candidates() -> None:
    d = choose(P(0.5, {"medium": 0.9, "large": math.nan}), C, quality_target=0.8)
    assert d.order == ("medium", "small", "large")
    assert "tried last" in d.reason
    d = choose(P(0.5, {}), C, quality_target=0.8)
    assert d.order == ("small", "medium", "large") and not d.used_prediction


def test_no_candidates() -> None:
    d = choose(P(0.5, {}), [], quality_target=0.8)
    assert d.order == () and d.chosen is None


def test_decision_is_json_ready() -> None:
    import json

    d = choose(P(0.3, {"small": 0.7, "medium": 0.85, "large": 0.95}, {"small": True}), C, quality_target=0.8)
    out = json.loads(json.dumps(d.as_dict()))
    assert out["chosen"] == "medium" and out["difficulty"] == 0.3 and out["known"] == {"small": True}
