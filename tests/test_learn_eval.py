"""``python -m llmroute.eval --learn N --observe both|routed``: learning curves in strong/weak and
pool mode, cost_ratio_at_95, and the priors of models the predictor never saw."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from llmroute.eval import cost_ratio_at, main
from llmroute.learning import prior_profiles
from llmroute.predictor import Predictor, default_model_dir

pytestmark = pytest.mark.skipif(
    not (default_model_dir() / "predictor.onnx").exists(), reason="models/predictor.onnx not built"
)

TOPICS = {
    # topic: (words, P(big right), P(mid right), P(tiny right))
    "chemistry": (["molar mass", "covalent bond", "titration", "oxidation state", "isotope"], 0.95, 0.9, 0.05),
    "poetry": (["sonnet", "stanza", "rhyme scheme", "iambic metre", "haiku"], 0.95, 0.95, 0.95),
    "history": (["treaty", "dynasty", "revolution", "empire", "armistice"], 0.5, 0.1, 0.05),
}


def _write(path: Path, n: int = 600, seed: int = 0) -> None:
    """A mixed-topic traffic: the tiny model fails chemistry, which prompt length cannot tell."""
    rnd = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["prompt_id", "benchmark", "prompt", "model", "score"])
        w.writeheader()
        for i in range(n):
            topic = rnd.choice(sorted(TOPICS))
            words, *probs = TOPICS[topic]
            text = f"Question {i}: in {topic}, what about the {rnd.choice(words)} of case {rnd.randint(1, 99)}?"
            text += " Explain." * rnd.randint(0, 3)
            for model, p in zip(("big", "mid", "tiny"), probs):
                w.writerow(
                    {
                        "prompt_id": i,
                        "benchmark": "mixed",
                        "prompt": text,
                        "model": model,
                        "score": int(rnd.random() < p),
                    }
                )


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1])


def test_pair_mode_learns_what_the_prior_cannot_know(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.csv"
    _write(data)
    base = [str(data), "--strong", "big", "--weak", "tiny", "--json", "--no-progress"]
    both = _json(capsys, [*base, "--learn", "300", "--observe", "both"])["mixed"]
    assert {"apgr", "cpt50", "cpt80", "n"} <= set(both) and both["n"] == 300
    assert both["apgr"] > both["zero_shot_apgr"] + 0.1  # which topic, not how long, decides here
    assert both["apgr"] > 0.65 and "learn_strong_share" not in both  # the oracle is 0.77
    routed = _json(capsys, [*base, "--learn", "300", "--observe", "routed", "--seed", "3"])["mixed"]
    assert 0.3 < routed["learn_strong_share"] < 0.7
    assert routed["apgr"] > routed["zero_shot_apgr"] + 0.05
    again = _json(capsys, [*base, "--learn", "300", "--observe", "routed", "--seed", "3"])["mixed"]
    other = _json(capsys, [*base, "--learn", "300", "--observe", "routed", "--seed", "4"])["mixed"]
    assert again == routed and other != routed
    zero = _json(capsys, [*base, "--learn", "0"])["mixed"]
    assert zero["apgr"] == pytest.approx(zero["zero_shot_apgr"])  # nothing learned: the prior's ranking
    assert main([*base, "--learn", "600"]) == 2
    assert "leaves none" in capsys.readouterr().err
    assert main([str(data), "--strong", "big", "--weak", "tiny", "--learn", "50"]) == 0
    assert "learned online from 50 prompts" in capsys.readouterr().out


def test_pool_mode_learns_and_reports_cost_ratio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.csv"
    _write(data)
    argv = [str(data), "--pool", "tiny,mid,big", "--prices", "tiny=1,mid=3,big=10", "--json", "--no-progress"]
    plain = _json(capsys, argv)["mixed"]
    assert {"curve", "oracle", "single", "cost_ratio_at_95"} <= set(plain)
    both = _json(capsys, [*argv, "--learn", "300", "--observe", "both"])["mixed"]
    assert {"curve", "oracle", "single", "cost_ratio_at_95", "zero_shot_cost_ratio_at_95"} <= set(both)
    assert both["n"] == 300
    # learned: it reaches 95 % of the best single model for much less than that model costs
    assert both["cost_ratio_at_95"] is not None and both["cost_ratio_at_95"] < 0.8
    zs = both["zero_shot_cost_ratio_at_95"]
    assert zs is None or both["cost_ratio_at_95"] < zs
    routed = _json(capsys, [*argv, "--learn", "300", "--observe", "routed", "--seed", "1"])["mixed"]
    assert routed["learn_mean_cost"] > 0 and "learn_explored" in routed
    assert routed == _json(capsys, [*argv, "--learn", "300", "--observe", "routed", "--seed", "1"])["mixed"]
    assert main([*argv[:-2], "--learn", "100"]) == 0
    assert "cost ratio at 95 %" in capsys.readouterr().out


def test_cost_ratio_at_95() -> None:
    single = {"a": {"cost": 1.0, "score": 0.5}, "b": {"cost": 10.0, "score": 0.9}, "c": {"cost": 5.0, "score": 0.86}}
    # target 0.855: the cheapest single model reaching it is c (price 5)
    curve = [{"cost": 1.0, "score": 0.5}, {"cost": 3.0, "score": 0.8}, {"cost": 4.0, "score": 0.9}]
    # the segment (3, 0.8) - (4, 0.9) reaches 0.855 at cost 3.55
    assert cost_ratio_at(curve, single) == pytest.approx(3.55 / 5.0)
    assert cost_ratio_at([{"cost": 1.0, "score": 0.5}, {"cost": 9.0, "score": 0.8}], single) is None
    assert cost_ratio_at([{"cost": 2.0, "score": 0.95}], single) == pytest.approx(2.0 / 5.0)


def test_unknown_models_get_a_family_or_price_prior() -> None:
    pred = Predictor.default()
    prices = {"cheap": 0.1, "dear": 10.0, "gpt-4-1106-preview": 20.0, "mixtral": 0.5, "tiered": 1.0}
    from llmroute.predictor import ModelProfile

    profs = prior_profiles(
        list(prices),
        prices,
        pred,
        profiles={"tiered": ModelProfile("tiered", tier="small")},
        provider_ids={"mixtral": "together_ai/mistralai/Mixtral-8x7B-Instruct-v0.1"},
    )
    by = {p.name: p for p in profs}
    assert by["gpt-4-1106-preview"] == ModelProfile("gpt-4-1106-preview")  # in the pool
    assert by["mixtral"].like == "mistralai/mixtral-8x7b-chat"  # its provider id names a pool family
    assert by["tiered"].tier == "small" and by["tiered"].price_ratio is None  # configured: kept
    assert by["cheap"].price_ratio < 1 < by["dear"].price_ratio
    p = pred.predict("Prove that there are infinitely many primes, then generalise.", profs)
    assert p.quality["dear"] > p.quality["cheap"]
    assert p.known["dear"] is False and p.source["dear"].startswith("price:")
    assert p.quality["cheap"] == pytest.approx(1 - p.difficulty * by["cheap"].price_ratio ** -0.13)
