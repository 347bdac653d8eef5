"""Gemini 3 thought signatures over real loopback sockets, through the Router.

The fake Gemini provider acts like Gemini 3 for ``gemini-3-*`` model ids: it signs the first
function call of each reply and rejects a request whose current-turn calls come back unsigned
(400 INVALID_ARGUMENT). llmroute must carry the signature from one turn to the next (also across
providers of a routed conversation), fill in Google's dummy value where a call has none, and keep
Google's ``extra_content`` away from the OpenAI and Anthropic APIs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import make_config

import llmroute
from llmroute.providers.gemini import DUMMY_THOUGHT_SIGNATURE
from llmroute.testing import FakeProvider, FakeReply, Fault, Fleet

pytestmark = pytest.mark.anyio

GEMINI_3 = "gemini-3-pro-preview"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOLS = [WEATHER_TOOL]
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]
PARIS = {"city": "Paris"}
#: Which fake provider serves each config model.
PROVIDER = {"small": "oai", "claude": "claude", "gemini": "gem", "gemini3": "gem"}


def config(fleet: Fleet) -> dict[str, Any]:
    """make_config with a Gemini 3 model on the fake Gemini provider, one deployment per model, one
    attempt per deployment, and an "agent" route that falls back from OpenAI to Gemini 3."""
    cfg = make_config(fleet, retry={"attempts": 1})
    price = {"input": 1.0, "output": 2.0}
    cfg["models"]["small"]["deployments"] = [{"provider": "oai", "model": "small-1", "price": price}]
    cfg["models"]["gemini3"] = {"deployments": [{"provider": "gem", "model": GEMINI_3, "price": price}]}
    cfg["routes"]["agent"] = {"models": ["small", "gemini3"]}
    return cfg


def router(fleet: Fleet) -> llmroute.Router:
    return llmroute.Router.from_dict(config(fleet), transport=httpx.AsyncHTTPTransport(verify=False))


async def ask(r: llmroute.Router, messages: list[dict[str, Any]], streamed: bool, **kw: Any) -> llmroute.Reply:
    if not streamed:
        return await r.complete(messages, tools=TOOLS, **kw)
    stream = r.stream(messages, tools=TOOLS, **kw)
    async for _ in stream:
        pass
    assert stream.reply is not None
    return stream.reply


def answered(reply: llmroute.Reply, result: str = "Sunny, 21 C") -> list[dict[str, Any]]:
    """The reply as an assistant message, then a tool result for each of its calls."""
    return [
        reply.to_message(),
        *({"role": "tool", "tool_call_id": c.id, "content": result} for c in reply.tool_calls),
    ]


@pytest.fixture
def gem(fleet: Fleet) -> Iterator[FakeProvider]:
    """The fake Gemini provider; its reply and thought_signatures knobs are restored afterwards."""
    provider = fleet["gem"]
    saved = provider.reply, provider.thought_signatures
    try:
        yield provider
    finally:
        provider.reply, provider.thought_signatures = saved


def sent_to(fleet: Fleet, model: str) -> dict[str, Any]:
    body = fleet[PROVIDER[model]].requests[-1].json
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_two_turn_tool_loop_carries_the_signature(fleet: Fleet, gem: FakeProvider, streamed: bool) -> None:
    gem.reply = FakeReply(tool_calls=[("get_weather", PARIS)])
    async with router(fleet) as r:
        first = await ask(r, QUESTION, streamed, model="gemini3")
        (call,) = first.tool_calls
        assert call.name == "get_weather" and json.loads(call.arguments) == PARIS
        sig = call.thought_signature
        assert isinstance(sig, str) and sig and sig != DUMMY_THOUGHT_SIGNATURE
        assert first.to_message()["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": sig}}

        gem.reply = None  # the default: answer a tool result with text
        reply = await ask(r, [*QUESTION, *answered(first)], streamed, model="gemini3")

    assert reply.finish_reason == "stop" and reply.text and reply.text.startswith("Tool result received:")
    assert gem.served == 2
    contents = sent_to(fleet, "gemini3")["contents"]
    assert contents[-2] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": PARIS}, "thoughtSignature": sig}],
    }
    assert contents[-1]["parts"][0]["functionResponse"]["name"] == "get_weather"


async def test_sequential_and_parallel_calls_keep_their_own_signatures(fleet: Fleet, gem: FakeProvider) -> None:
    def script(body: Any) -> FakeReply:
        answers = sum("functionResponse" in p for c in body["contents"] for p in c["parts"])
        if answers == 0:  # step 1: two parallel calls
            return FakeReply(tool_calls=[("get_weather", PARIS), ("get_weather", {"city": "Rome"})])
        if answers == 2:  # step 2: one more call
            return FakeReply(tool_calls=[("get_weather", {"city": "Oslo"})])
        return FakeReply(text="Sunny everywhere.")

    gem.reply = script
    async with router(fleet) as r:
        step1 = await r.complete(QUESTION, model="gemini3", tools=TOOLS)
        history = [*QUESTION, *answered(step1)]
        step2 = await r.complete(history, model="gemini3", tools=TOOLS)
        history += answered(step2)
        final = await r.complete(history, model="gemini3", tools=TOOLS)

    sig1, no_sig = (c.thought_signature for c in step1.tool_calls)
    (sig2,) = (c.thought_signature for c in step2.tool_calls)
    assert sig1 and sig2 and sig1 != sig2 and no_sig is None  # parallel calls: only the first is signed
    assert "extra_content" not in step1.to_message()["tool_calls"][1]
    assert final.text == "Sunny everywhere."
    contents = sent_to(fleet, "gemini3")["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert [p.get("thoughtSignature") for p in contents[1]["parts"]] == [sig1, None]
    assert [p.get("thoughtSignature") for p in contents[3]["parts"]] == [sig2]


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_fallback_from_openai_to_gemini_3_mid_conversation(
    fleet: Fleet, gem: FakeProvider, streamed: bool
) -> None:
    """Turn 1 is served by OpenAI (no signature); turn 2 falls back to Gemini 3, which gets the dummy."""
    oai = fleet["oai"]
    saved = oai.reply
    oai.reply = FakeReply(tool_calls=[("get_weather", PARIS)])
    try:
        async with router(fleet) as r:
            first = await ask(r, QUESTION, streamed, route="agent")
            assert first.provider == "oai"
            (call,) = first.tool_calls
            assert call.thought_signature is None and "extra_content" not in first.to_message()["tool_calls"][0]

            oai.enqueue(Fault.server_error())
            reply = await ask(r, [*QUESTION, *answered(first)], streamed, route="agent")
    finally:
        oai.reply = saved

    assert (reply.provider, reply.provider_model) == ("gem", GEMINI_3)
    assert [a.outcome for a in reply.route.attempts] == ["error", "ok"]
    assert reply.text and reply.text.startswith("Tool result received:")
    assert sent_to(fleet, "gemini3")["contents"][-2] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": PARIS}, "thoughtSignature": DUMMY_THOUGHT_SIGNATURE}
        ],
    }


@pytest.mark.parametrize("model", ["small", "claude", "gemini", "gemini3"])
async def test_a_gemini_signed_history_goes_to_every_api(fleet: Fleet, gem: FakeProvider, model: str) -> None:
    gem.reply = FakeReply(tool_calls=[("get_weather", PARIS)])
    async with router(fleet) as r:
        first = await r.complete(QUESTION, model="gemini3", tools=TOOLS)
        gem.reply = None
        (call,) = first.tool_calls
        sig = call.thought_signature
        assert sig
        reply = await r.complete([*QUESTION, *answered(first)], model=model, tools=TOOLS)

    assert reply.finish_reason == "stop" and reply.text and reply.text.startswith("Tool result received:")
    body = sent_to(fleet, model)
    if model == "small":
        assert body["messages"][1] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.arguments}}
            ],
        }
    if model in ("small", "claude"):
        assert sig not in json.dumps(body) and "extra_content" not in json.dumps(body)
    else:  # Gemini, whichever version: the signature goes back as received
        assert body["contents"][1]["parts"][0]["thoughtSignature"] == sig


@pytest.mark.parametrize("model", ["small", "claude"])
async def test_an_openai_history_still_goes_to_openai_and_anthropic(fleet: Fleet, model: str) -> None:
    oai = fleet["oai"]
    saved = oai.reply
    oai.reply = FakeReply(tool_calls=[("get_weather", PARIS)])
    try:
        async with router(fleet) as r:
            first = await r.complete(QUESTION, model="small", tools=TOOLS)
            oai.reply = None
            reply = await r.complete([*QUESTION, *answered(first)], model=model, tools=TOOLS)
    finally:
        oai.reply = saved
    assert reply.text and reply.text.startswith("Tool result received:")


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_a_missing_signature_is_a_bad_request_naming_the_deployment(
    fleet: Fleet, gem: FakeProvider, streamed: bool
) -> None:
    """A model id llmroute does not take for Gemini 3 (so no dummy is added) on a fake that validates."""
    gem.thought_signatures = True
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
    ]
    async with router(fleet) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            await ask(r, history, streamed, model="gemini")

    (err,) = info.value.errors
    assert type(err) is llmroute.BadRequestError, repr(err)
    assert (err.provider, err.model, err.deployment, err.status) == ("gem", "gemini-x", "gem/gemini-x", 400)
    assert "missing a thought_signature" in str(err) and "`default_api:get_weather` , position 2" in str(err)
    assert "gem/gemini-x" in str(err)
    assert gem.calls == 1 and gem.served == 0
