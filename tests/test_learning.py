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
    assert -0.3 < one < 0.0  # a single label moves it a little
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


# ---------------------------------------------------------------------------- label sources


def _reply(text: str | None = None, calls: tuple[tuple[str, str], ...] = ()) -> Any:
    from llmroute.types import ToolCall

    return SimpleNamespace(text=text, tool_calls=tuple(ToolCall(f"c{i}", n, a) for i, (n, a) in enumerate(calls)))


def test_structured_output_checks() -> None:
    from llmroute.learning import MAX_CHECKED_CHARS, structured_output_failed

    js = SimpleNamespace(response_format={"type": "json_object"}, tools=None)
    assert structured_output_failed(js, _reply('{"a": 1}')) is None
    assert "not valid JSON" in structured_output_failed(js, _reply('{"a": 1'))
    assert structured_output_failed(js, _reply("x" * (MAX_CHECKED_CHARS + 1))) is None  # too big to check
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"required": ["a", "b"]}}}
    req = SimpleNamespace(response_format=schema, tools=None)
    assert "missing required b" in structured_output_failed(req, _reply('{"a": 1}'))
    assert structured_output_failed(req, _reply('{"a": 1, "b": 2}')) is None
    tool = {"type": "function", "function": {"name": "w", "parameters": {"type": "object", "required": ["city"]}}}
    treq = SimpleNamespace(response_format=None, tools=[tool])
    assert structured_output_failed(treq, _reply(calls=(("w", '{"city": "Oslo"}'),))) is None
    assert "not valid JSON" in structured_output_failed(treq, _reply(calls=(("w", '{"city": '),)))
    assert "missing required city" in structured_output_failed(treq, _reply(calls=(("w", "{}"),)))
    assert "not a JSON object" in structured_output_failed(treq, _reply(calls=(("w", "[1]"),)))
    plain = SimpleNamespace(response_format=None, tools=None)
    assert structured_output_failed(plain, _reply("not json at all")) is None


def test_parse_grade() -> None:
    from llmroute.learning import parse_grade

    assert parse_grade("8") == 0.8
    assert parse_grade("Grade: 10/10") == 1.0
    assert parse_grade(" 0") == 0.0
    assert parse_grade("excellent") is None and parse_grade(None) is None


@pytest.fixture(scope="module")
def lfleet() -> Any:
    """A fleet of its own: these tests script the replies."""
    from llmroute.testing import FakeProvider

    with Fleet([FakeProvider("cheap"), FakeProvider("dear"), FakeProvider("judge", reply="7")]) as f:
        yield f


def _lconfig(fleet: Fleet, **learning: Any) -> dict[str, Any]:
    def prov(name: str) -> dict[str, Any]:
        return {"api": "openai", "base_url": fleet.base_url(name), "api_key": "k"}

    return {
        "providers": {n: prov(n) for n in ("cheap", "dear", "judge")},
        "models": {
            "cheap": {
                "deployments": [{"provider": "cheap", "model": "c", "price": {"input": 0.1, "output": 0.1}}],
                "predictor": {"tier": "small"},
            },
            "dear": {
                "deployments": [{"provider": "dear", "model": "d", "price": {"input": 5, "output": 5}}],
                "predictor": {"tier": "frontier"},
            },
            "grader": {"deployments": [{"provider": "judge", "model": "j", "price": {"input": 1000, "output": 1000}}]},
        },
        "routes": {"auto": {"models": ["cheap", "dear"], "strategy": "predictive", "quality_target": 0.0}},
        "learning": learning,
    }


@pytest.mark.anyio
async def test_a_reply_that_breaks_its_json_contract_is_a_zero_label(lfleet: Fleet) -> None:
    lfleet["cheap"].reply = '{"answer": 4'  # cut-off JSON
    try:
        async with llmroute.Router.from_dict(_lconfig(lfleet)) as r:
            fmt = {"type": "json_object"}
            for i in range(3):
                await r.complete(f"2+2 as JSON ({i})", route="auto", response_format=fmt)
            await r.complete("no format asked", route="auto")
            assert r.learning.auto_labels == 3 and r.learning.learner.labels() == {"cheap": 3}
        async with llmroute.Router.from_dict(_lconfig(lfleet, structured_output_labels=False)) as r:
            await r.complete("2+2 as JSON", route="auto", response_format=fmt)
            assert r.learning.auto_labels == 0 and r.learning.learner.labels() == {}
    finally:
        lfleet["cheap"].reply = None


@pytest.mark.anyio
async def test_sampled_judge_grades_off_the_callers_path_within_its_budget(lfleet: Fleet) -> None:
    import anyio

    # every reply is sampled; each judge call costs ~0.02-0.03 USD, the cap allows a few
    cfg = _lconfig(lfleet, judge={"model": "grader", "share": 1.0, "max_cost_usd": 0.1, "max_concurrency": 2})
    r = llmroute.Router.from_dict(cfg)
    calls = lfleet["judge"].calls
    try:
        for i in range(8):
            await r.complete(f"What is the capital of country number {i}?", route="auto")
        # nothing was graded on the callers' path: all 8 wait for the judge
        assert len(r.learning._judge_queue) == 8 and lfleet["judge"].calls == calls
        graded = await r.learning.judge_pending()
        stats = r.learning.judge_stats
        assert graded == stats["graded"] > 0 and stats["over_budget"] == 8 - graded
        assert 0 < r.learning.judge_spent_usd <= 0.1
        assert r.learning.learner.labels() == {"cheap": graded}
        assert lfleet["judge"].calls - calls == graded  # the judge's own replies were never judged
    finally:
        await r.aclose()
    cfg["learning"]["judge"]["max_cost_usd"] = 100.0
    async with llmroute.Router.from_dict(cfg) as r:  # in the background under `async with`
        for i in range(4):
            await r.complete(f"Name a river in country number {i}.", route="auto")
        with anyio.fail_after(10):
            while r.learning.judge_stats["graded"] < 4:
                await anyio.sleep(0.01)
        assert r.learning.learner.labels() == {"cheap": 4}


def test_judge_config_is_checked(lfleet: Fleet) -> None:
    for judge, path in (({"model": "nope"}, "learning.judge.model"), ({}, "learning.judge")):
        with pytest.raises(llmroute.ConfigError) as err:
            llmroute.Router.from_dict(_lconfig(lfleet, judge=judge))
        assert path in [p for p, _ in err.value.errors]


# ---------------------------------------------------------------------------- persistence


@pytest.mark.anyio
async def test_learned_state_survives_a_restart(lfleet: Fleet, tmp_path: Any) -> None:
    path = tmp_path / "learned.bin"
    async with llmroute.Router.from_dict(_lconfig(lfleet, state_file=str(path))) as r:
        for i in range(10):
            r.record_feedback(await r.complete(f"Hello there number {i}", route="auto"), 0.0)
        before = (await r.complete("Hello there number 3", route="auto")).route.prediction.quality
        await r.learning.save()
    async with llmroute.Router.from_dict(_lconfig(lfleet, state_file=str(path))) as r2:
        again = (await r2.complete("Hello there number 3", route="auto")).route.prediction
        assert again.quality == before and r2.learning.learner.labels() == {"cheap": 10}
    async with llmroute.Router.from_dict(_lconfig(lfleet)) as r3:  # no state file: the prior
        fresh = (await r3.complete("Hello there number 3", route="auto")).route.prediction
        assert fresh.prior_quality == {} and fresh.quality != before
        assert await r3.learning.load(path) and r3.learning.learner.labels() == {"cheap": 10}


@pytest.mark.anyio
async def test_corrupt_or_mismatched_state_warns_and_keeps_the_prior(
    lfleet: Fleet, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "learned.bin"
    path.write_bytes(b"LLMRLS\x00\x01 definitely not a state")
    with caplog.at_level("WARNING", logger="llmroute.learning"):
        async with llmroute.Router.from_dict(_lconfig(lfleet, state_file=str(path))) as r:
            reply = await r.complete("Hello", route="auto")
            assert reply.route.prediction.prior_quality == {}  # the prior decided
            assert r.learning.learner.labels() == {}
    assert "ignoring the learned state" in caplog.text
    caplog.clear()
    other = OnlineLearner(predictor_id="0123456789ab")  # fitted against another predictor
    p = Predictor.default().predict("Hello", PROFILES)
    other.update("cheap", other.encode(p), -0.5)
    path.write_bytes(other.to_bytes())
    with caplog.at_level("WARNING", logger="llmroute.learning"):
        async with llmroute.Router.from_dict(_lconfig(lfleet, state_file=str(path))) as r:
            reply = await r.complete("Hello", route="auto")
            assert r.learning.learner.labels() == {} and reply.route.prediction.prior_quality == {}
    assert "fitted against predictor 0123456789ab" in caplog.text


@pytest.mark.anyio
async def test_workers_sync_through_a_shared_file(lfleet: Fleet, tmp_path: Any) -> None:
    from llmroute.learning import FileStore, StateStore

    store = FileStore(tmp_path / "shared.bin")
    assert isinstance(store, StateStore) and await store.load() is None
    async with llmroute.Router.from_dict(_lconfig(lfleet)) as a, llmroute.Router.from_dict(_lconfig(lfleet)) as b:
        for i in range(6):
            a.record_feedback(await a.complete(f"Worker A question {i}", route="auto"), 0.0)
            b.record_feedback(await b.complete(f"Worker B question {i}", route="auto"), 0.0)
        await a.learning.sync(store)
        await b.learning.sync(store)
        assert b.learning.learner.labels() == {"cheap": 12}
        await a.learning.sync(store)  # A picks up B's labels, and counts its own once
        assert a.learning.learner.labels() == {"cheap": 12}
        b.record_feedback(await b.complete("Worker B question 99", route="auto"), 1.0)
        await b.learning.sync(store)
        shared = OnlineLearner.from_bytes(await store.load())
        assert shared.labels() == {"cheap": 13}
    with pytest.raises(llmroute.InvalidRequestError, match="state_file"):
        await a.learning.save()


@pytest.mark.anyio
async def test_learned_state_round_trips_and_merges_through_the_shared_store(lfleet: Fleet, store: Any) -> None:
    import anyio

    from llmroute.learning import SharedStoreState, StateStore

    state = SharedStoreState(store, key="fleet-a")
    assert isinstance(state, StateStore) and await state.load() is None
    async with llmroute.Router.from_dict(_lconfig(lfleet)) as a, llmroute.Router.from_dict(_lconfig(lfleet)) as b:
        for i in range(5):
            a.record_feedback(await a.complete(f"Shared question {i}", route="auto"), 0.0)
        await a.learning.save(state)
        assert await b.learning.load(state) and b.learning.learner.labels() == {"cheap": 5}
        probe = await b.complete("Shared question 2", route="auto")
        again = await a.complete("Shared question 2", route="auto")
        assert probe.route.prediction.quality == again.route.prediction.quality
        # two workers syncing at the same time: the lock serialises them, nothing is lost
        for i in range(3):
            a.record_feedback(await a.complete(f"A only {i}", route="auto"), 1.0)
            b.record_feedback(await b.complete(f"B only {i}", route="auto"), 1.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.learning.sync, state)
            tg.start_soon(b.learning.sync, state)
        shared = OnlineLearner.from_bytes(await state.load())
        assert shared.labels() == {"cheap": 11}  # 5 shared + 3 + 3
