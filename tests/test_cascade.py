"""Cascade routes over real sockets: a cheap tier answers, its checks accept or escalate, the trace,
costs, log-probs, tier skipping by prediction, user validators, feedback labels and streams."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from conftest import SECRET, provider_cfg

import llmroute
import llmroute.checks
from llmroute.checks import Answer, CheckResult
from llmroute.testing import FakeProvider, FakeReply, Fault, Fleet

pytestmark = pytest.mark.anyio

QUESTION = "Tom has 12 apples and buys 30 more. How many apples does he have now?"
GOOD = "Tom has 12 + 30 = 42 apples.\n#### 42"
STRONG = "He has 12 + 30 = 42 apples in all, so the answer is 42."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
NAMES = ("cheap", "cheapgem", "strong")


@pytest.fixture(scope="module")
def cfleet() -> Iterator[Fleet]:
    providers = [
        FakeProvider("cheap", api="openai", api_key=SECRET),
        FakeProvider("cheapgem", api="gemini", api_key=SECRET),
        FakeProvider("strong", api="anthropic", api_key=SECRET),
    ]
    with Fleet(providers) as f:
        yield f


@pytest.fixture(autouse=True)
def _clean(cfleet: Fleet) -> Iterator[None]:
    yield
    for name in NAMES:
        cfleet[name].reset()
        cfleet[name].reply = None
        cfleet[name].ttft_s = 0.0


def config(fleet: Fleet, cheap: str = "cheap", **route: Any) -> dict[str, Any]:
    api = "gemini" if cheap == "cheapgem" else "openai"
    return {
        "providers": {
            "cheap": provider_cfg(fleet, cheap, api),
            "strong": provider_cfg(fleet, "strong", "anthropic"),
        },
        "models": {
            "small": {
                "deployments": [{"provider": "cheap", "model": "small-1", "price": {"input": 0.1, "output": 0.4}}],
                "predictor": {"tier": "small"},
            },
            "large": {
                "deployments": [{"provider": "strong", "model": "large-1", "price": {"input": 3.0, "output": 15.0}}],
                "predictor": {"tier": "frontier"},
            },
        },
        "routes": {"smart": {"strategy": "cascade", "models": ["small", "large"], **route}},
        "retry": {"attempts": 1, "initial_backoff_s": 0.0, "max_backoff_s": 0.0, "jitter_s": 0.0},
        "timeout": {"connect_s": 2.0, "read_s": 2.0},
    }


def script(fleet: Fleet, cheap: Any, strong: Any = STRONG, cheap_name: str = "cheap") -> None:
    fleet[cheap_name].reply = cheap
    fleet["strong"].reply = strong


async def test_a_good_cheap_answer_is_accepted(cfleet: Fleet) -> None:
    script(cfleet, GOOD)
    async with llmroute.Router.from_dict(config(cfleet, accept=0.3)) as r:
        reply = await r.complete(QUESTION, route="smart")
    assert reply.text == GOOD and reply.model == "small"
    assert cfleet["strong"].calls == 0
    (tier,) = reply.route.cascade
    assert tier.outcome == "accepted" and tier.model == "small" and tier.verdict.passed
    assert reply.route.strategy == "cascade" and "tier 1 (small) accepted" in reply.route.reason
    assert reply.cost_usd == pytest.approx(tier.cost_usd) and reply.cost_usd > 0
    data = reply.route.to_dict()
    assert data["cascade"][0]["verdict"]["results"][0]["name"] == "non_empty"
    json.dumps(data)  # the whole trace is JSON-ready


BAD_ANSWERS = [
    ("non_empty", FakeReply(text=""), {}),
    ("finished", FakeReply(text="Tom has 12 + 30 =", finish="length"), {}),
    ("not_refusal", "I'm sorry, but I can't help with that.", {}),
    ("json", 'the answer is {"apples": 42}', {"response_format": {"type": "json_object"}}),
    ("tool_args", FakeReply(tool_calls=[("get_weather", {"town": "Paris"})]), {"tools": TOOLS}),
    ("code", "Here you go:\n```python\ndef apples(:\n    return 42\n```", {}),
    ("math", "Tom has 12 + 30 = 52 apples.\n#### 52", {}),
    ("choice", "It could be any of them.", {"question": "Which is a fruit? A) apple B) brick C) spoon"}),
    ("confidence", FakeReply(text="Tom has 42 apples.", logprobs=-2.5), {}),
]


@pytest.mark.parametrize(("check", "cheap", "extra"), BAD_ANSWERS, ids=[b[0] for b in BAD_ANSWERS])
async def test_each_failed_check_escalates(cfleet: Fleet, check: str, cheap: Any, extra: dict[str, Any]) -> None:
    script(cfleet, cheap, FakeReply(text='{"apples": 42}') if check == "json" else STRONG)
    extra = dict(extra)
    question = extra.pop("question", QUESTION)
    async with llmroute.Router.from_dict(config(cfleet, accept=0.7)) as r:
        reply = await r.complete(question, route="smart", **extra)
    assert reply.model == "large" and cfleet["cheap"].calls == 1 and cfleet["strong"].calls == 1
    first, second = reply.route.cascade
    assert first.outcome == "escalated" and check in first.failed_checks
    assert second.outcome == "accepted" and second.model == "large"
    # the reply pays for both answers; every attempt is in the trace
    assert reply.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)
    assert reply.total_cost_usd == pytest.approx(reply.cost_usd)
    assert [a.model for a in reply.route.attempts] == ["small", "large"]
    assert reply.route.attempts[1].started_s >= reply.route.attempts[0].started_s


async def test_logprobs_are_requested_from_cheap_tiers_and_used(cfleet: Fleet) -> None:
    script(cfleet, FakeReply(text="Tom has 42 apples.", logprobs=-0.01))
    async with llmroute.Router.from_dict(config(cfleet, checks=["non_empty", "confidence"])) as r:
        reply = await r.complete(QUESTION, route="smart")
    assert cfleet["cheap"].requests[-1].json["logprobs"] is True
    assert reply.model == "small" and reply.logprobs is not None and reply.logprobs.mean == pytest.approx(-0.01)
    conf = reply.route.cascade[0].verdict.results[1]
    assert "token logprobs" in conf.detail and conf.score == pytest.approx(0.99, abs=0.001)
    # the last tier is never asked (nothing is decided on its confidence)
    script(cfleet, FakeReply(text="Tom has 42 apples.", logprobs=-3.0))
    async with llmroute.Router.from_dict(config(cfleet, checks=["confidence"])) as r:
        reply = await r.complete(QUESTION, route="smart")
    assert reply.model == "large"
    assert "logprobs" not in (cfleet["strong"].requests[-1].json or {})
    async with llmroute.Router.from_dict(config(cfleet, checks=["confidence"], logprobs=False)) as r:
        await r.complete(QUESTION, route="smart")
    assert "logprobs" not in cfleet["cheap"].requests[-1].json


async def test_gemini_logprobs(cfleet: Fleet) -> None:
    script(cfleet, FakeReply(text="Tom has 42 apples.", logprobs=[-0.5, -4.0]), cheap_name="cheapgem")
    async with llmroute.Router.from_dict(config(cfleet, cheap="cheapgem", checks=["confidence"])) as r:
        reply = await r.complete(QUESTION, route="smart")
    assert cfleet["cheapgem"].requests[-1].json["generationConfig"]["responseLogprobs"] is True
    lp = reply.route.cascade[0].verdict.results[0]
    assert "token logprobs" in lp.detail and lp.score < 0.5  # mean of -0.5, -4.0, ... is low
    assert reply.model == "large"


async def test_the_predictor_skips_a_tier_it_expects_to_fail(cfleet: Fleet) -> None:
    script(cfleet, GOOD)
    async with llmroute.Router.from_dict(config(cfleet, skip_below=0.999)) as r:
        reply = await r.complete(QUESTION, route="smart")
    assert cfleet["cheap"].calls == 0 and reply.model == "large"
    skipped, answered = reply.route.cascade
    assert skipped.outcome == "skipped" and "predicted quality" in skipped.reason
    assert skipped.predicted_quality is not None and skipped.predicted_quality < 0.999
    assert answered.outcome == "accepted"
    assert reply.route.prediction is not None  # the prediction that decided is in the trace
    async with llmroute.Router.from_dict(config(cfleet, skip_below=0.0)) as r:
        reply = await r.complete(QUESTION, route="smart")
    assert reply.model == "small" and reply.route.cascade[0].outcome == "accepted"


async def test_user_validators_sync_and_async(cfleet: Fleet) -> None:
    seen: list[str] = []

    async def has_citation(answer: Answer) -> CheckResult:
        await anyio.sleep(0)
        seen.append(answer.text)
        ok = "[1]" in answer.text
        return CheckResult("has_citation", ok, 1.0 if ok else 0.0, "" if ok else "no citation", hard=True)

    def short_enough(answer: Answer) -> bool:
        return len(answer.text) < 500

    script(cfleet, GOOD, STRONG + " [1]")
    async with llmroute.Router.from_dict(config(cfleet, checks=["non_empty", short_enough, has_citation])) as r:
        reply = await r.complete(QUESTION, route="smart")
    assert seen == [GOOD, STRONG + " [1]"]  # both tiers judged
    assert reply.model == "large" and reply.route.cascade[0].failed_checks == ("has_citation",)
    script(cfleet, GOOD + " [1]")
    async with llmroute.Router.from_dict(config(cfleet, checks=[has_citation])) as r:
        reply = await r.complete(QUESTION, route="smart")
    assert reply.model == "small"


async def test_a_failing_tier_escalates_and_all_failing_raises(cfleet: Fleet) -> None:
    script(cfleet, GOOD)
    cfleet["cheap"].enqueue(Fault.server_error(500))
    async with llmroute.Router.from_dict(config(cfleet)) as r:
        reply = await r.complete(QUESTION, route="smart")
        assert reply.model == "large" and reply.route.cascade[0].outcome == "failed"
        assert "ServerError" in reply.route.cascade[0].reason
        cfleet["cheap"].enqueue(Fault.server_error(500))
        cfleet["strong"].enqueue(Fault.server_error(500))
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            await r.complete(QUESTION, route="smart")
    assert len(info.value.errors) == 2 and info.value.route == "smart"


async def test_bad_input_sends_nothing(cfleet: Fleet) -> None:
    async with llmroute.Router.from_dict(config(cfleet)) as r:
        with pytest.raises(llmroute.InvalidRequestError):
            await r.complete([{"role": "robot", "content": "hi"}], route="smart")
    assert cfleet["cheap"].calls == 0 and cfleet["strong"].calls == 0


async def test_the_deadline_covers_every_tier(cfleet: Fleet) -> None:
    script(cfleet, "I'm sorry, but I can't help with that.")
    cfleet["strong"].enqueue(Fault.stall(5.0))
    async with llmroute.Router.from_dict(config(cfleet, deadline_s=0.3)) as r:
        with anyio.fail_after(3):
            with pytest.raises(llmroute.DeadlineExceededError) as info:
                await r.complete(QUESTION, route="smart")
    assert info.value.route == "smart"


async def test_every_verdict_is_a_feedback_label(cfleet: Fleet) -> None:
    script(cfleet, "Tom has 12 + 30 = 52 apples.\n#### 52")
    async with llmroute.Router.from_dict(config(cfleet, skip_below=0.0, accept=0.7)) as r:
        reply = await r.complete(QUESTION, route="smart")
        assert reply.model == "large"
        assert r.feedback_counts() == {"small": 1, "large": 1}
    async with llmroute.Router.from_dict(config(cfleet, skip_below=0.0, accept=0.7, feedback=False)) as r:
        await r.complete(QUESTION, route="smart")
        assert r.feedback_counts() == {}


async def test_tiers_may_choose_among_models(cfleet: Fleet) -> None:
    cfg = config(cfleet)
    cfg["routes"]["smart"] = {
        "strategy": "cascade",
        "tiers": [{"models": ["large", "small"], "strategy": "cheapest", "accept": 0.2}, {"models": ["large"]}],
    }
    script(cfleet, GOOD)
    async with llmroute.Router.from_dict(cfg) as r:
        assert r.config.routes["smart"].models == ["large", "small"]
        reply = await r.complete(QUESTION, route="smart")
        dry = r.plan(QUESTION, route="smart")
    assert reply.model == "small"  # the cheapest of tier 1
    assert [c.model for c in dry.trace.candidates] == ["small", "large", "large"]
    assert dry.trace.strategy == "cascade"


# ------------------------------------------------------------------------------------- streams


async def test_validate_then_stream_sends_only_the_accepted_cheap_answer(cfleet: Fleet) -> None:
    script(cfleet, GOOD)
    async with llmroute.Router.from_dict(config(cfleet, accept=0.3)) as r:
        chunks = [c async for c in r.stream(QUESTION, route="smart")]
    assert len(chunks) == 1 and chunks[0].text == GOOD and chunks[0].finish_reason == "stop"
    assert cfleet["strong"].calls == 0
    assert not cfleet["cheap"].requests[-1].stream  # the cheap tier is buffered, not streamed


async def test_validate_then_stream_never_sends_the_rejected_answer(cfleet: Fleet) -> None:
    bad = "Tom has 12 + 30 = 52 apples.\n#### 52"
    script(cfleet, bad)
    async with llmroute.Router.from_dict(config(cfleet, accept=0.7)) as r:
        stream = r.stream(QUESTION, route="smart")
        async with stream:
            text = "".join([c.text async for c in stream])
    assert text == STRONG and "52" not in text
    assert cfleet["strong"].requests[-1].stream
    reply = stream.reply
    assert reply is not None and reply.model == "large" and reply.text == STRONG
    escalated, kept = reply.route.cascade
    assert escalated.outcome == "escalated" and kept.outcome == "accepted" and kept.verdict is not None
    assert reply.cost_usd == pytest.approx(escalated.cost_usd + kept.cost_usd)


async def test_stream_strong_only_skips_the_cheap_tiers(cfleet: Fleet) -> None:
    script(cfleet, GOOD)
    async with llmroute.Router.from_dict(config(cfleet, stream="strong_only")) as r:
        stream = r.stream(QUESTION, route="smart")
        assert await stream.text() == STRONG
    assert cfleet["cheap"].calls == 0
    assert [t.outcome for t in stream.route.cascade] == ["skipped", "accepted"]
    assert stream.route.cascade[0].reason == "stream: strong_only"


async def test_an_abandoned_cascade_stream_releases_its_connection(cfleet: Fleet) -> None:
    script(cfleet, "I'm sorry, but I can't help with that.", "word " * 200)
    cfleet["strong"].tokens_per_s = 200.0
    try:
        async with llmroute.Router.from_dict(config(cfleet)) as r:
            stream = r.stream(QUESTION, route="smart")
            async with stream:
                async for _ in stream:
                    break
            with anyio.fail_after(2):
                while cfleet["strong"].in_flight:
                    await anyio.sleep(0.01)
    finally:
        cfleet["strong"].tokens_per_s = None
    assert stream.reply is None


# --------------------------------------------------------------------------------- calibration


def test_calibrate_sets_accept_for_an_escalation_share(cfleet: Fleet) -> None:
    from llmroute.calibration import accept_for_escalation_share

    prompts = [f"Tom has {i} apples and buys {i + 5} more. How many apples does he have?" for i in range(40)]
    answers = [
        f"He has {i} + {i + 5} = {2 * i + 5 + (3 if i % 4 == 0 else 0)} apples.\n#### {2 * i + 5}"
        + (" Wait, maybe I made a mistake." * (i % 5))
        for i in range(40)
    ]
    r = llmroute.Router.from_dict(config(cfleet))
    accept = r.calibrate(prompts, route="smart", strong_share=0.3, answers=answers)
    assert r.config.routes["smart"].accept == accept
    scores = [llmroute.checks.judge(Answer(a, prompt=p)).score for p, a in zip(prompts, answers)]
    escalated = sum(s < accept for s in scores) / len(scores)
    assert abs(escalated - 0.3) <= 0.1
    assert accept_for_escalation_share([0.2, 0.4, 0.6, 0.8], 0.5) == pytest.approx(0.5)
    assert accept_for_escalation_share([0.2, 0.4, 0.6, 0.8], 0.0) <= 0.2
    with pytest.raises(llmroute.InvalidRequestError, match="answers="):
        r.calibrate(prompts, route="smart", strong_share=0.3)
    with pytest.raises(ValueError, match="finite"):
        accept_for_escalation_share([float("nan")], 0.5)


# ------------------------------------------------------------------------------------ adversarial


async def test_many_concurrent_cascades(cfleet: Fleet) -> None:
    script(cfleet, lambda body: GOOD if "odd" in json.dumps(body) else "I'm sorry, but I can't help with that.")
    results: list[str] = []
    async with llmroute.Router.from_dict(config(cfleet, accept=0.3)) as r:

        async def one(i: int) -> None:
            reply = await r.complete(f"{QUESTION} ({'odd' if i % 2 else 'even'} {i})", route="smart")
            results.append(reply.model)

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert results.count("small") == 100 and results.count("large") == 100
    assert cfleet["cheap"].calls == 200 and cfleet["strong"].calls == 100


async def test_a_cancelled_caller_leaves_nothing_in_flight(cfleet: Fleet) -> None:
    script(cfleet, "I'm sorry, but I can't help with that.")
    cfleet["strong"].enqueue(Fault.stall(5.0))
    async with llmroute.Router.from_dict(config(cfleet)) as r:
        with anyio.move_on_after(0.3) as scope:
            await r.complete(QUESTION, route="smart")
        assert scope.cancelled_caught
        with anyio.fail_after(3):
            while cfleet["strong"].in_flight:
                await anyio.sleep(0.01)
        script(cfleet, GOOD)
        assert (await r.complete(QUESTION, route="smart")).model == "small"  # the router still works


async def test_a_predictive_tier(cfleet: Fleet) -> None:
    cfg = config(cfleet)
    cfg["routes"]["smart"] = {
        "strategy": "cascade",
        "tiers": [
            {"models": ["small", "large"], "strategy": "predictive", "quality_target": 0.0},
            {"models": ["large"]},
        ],
        "accept": 0.2,
    }
    script(cfleet, GOOD)
    async with llmroute.Router.from_dict(cfg) as r:
        reply = await r.complete(QUESTION, route="smart")
        assert reply.model == "small" and reply.route.cascade[0].outcome == "accepted"
        assert r.feedback_counts() == {"small": 1}  # a predictive tier's verdict is a usable label
