"""LiteLLM's acompletion over the llmroute/ provider, with the real litellm package, on the fleet."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import anyio
import openai
import pytest
from fleet_for_agents import QUESTION, TOOLS, agent_config, fail_everything, settled

import llmroute
from llmroute.testing import Fault, Fleet

if importlib.util.find_spec("litellm") is None:  # not importorskip: llmroute's module must load LiteLLM first
    pytest.skip("litellm is not installed (pip install 'llmroute[litellm]')", allow_module_level=True)

# LiteLLM through llmroute's module, which imports it first (so LiteLLM reads its local price map)
from llmroute.integrations.litellm import litellm, litellm_error, register

MidStreamFallbackError = litellm.exceptions.MidStreamFallbackError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # LiteLLM runs on asyncio only


async def _turn(messages: list[dict[str, Any]], streamed: bool) -> tuple[dict[str, Any], dict[str, Any], float]:
    """One turn: (assistant message, route record, cost LiteLLM reports)."""
    kw = {"model": "llmroute/default", "messages": messages, "tools": TOOLS}
    if not streamed:
        res = await litellm.acompletion(**kw)
        message = res.choices[0].message.model_dump(exclude_none=True)
        return message, res._hidden_params["llmroute"], res._hidden_params["response_cost"]
    stream = await litellm.acompletion(**kw, stream=True)
    chunks = [c async for c in stream]
    built = litellm.stream_chunk_builder(chunks, messages=messages)
    message = built.choices[0].message.model_dump(exclude_none=True)
    return message, built._hidden_params["llmroute"], built._hidden_params["response_cost"]


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_tool_calling_loop_through_a_fallback(agent_fleet: Fleet, streamed: bool) -> None:
    agent_fleet["primary"].enqueue(Fault.server_error(503))
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        register(router)
        messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
        first, route, cost = await _turn(messages, streamed)
        (call,) = first["tool_calls"]
        assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {
            "city": "Paris"
        }
        assert route["deployment"] == "backup/gpt-4o-mini" and [a["status"] for a in route["trace"]["attempts"]] == [
            503,
            None,
        ]
        assert cost == route["cost_usd"] > 0  # llmroute's cost is LiteLLM's response_cost
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ]
        answer, route, cost = await _turn(messages, streamed)
    assert answer["content"] == 'Tool result received: "sunny"'
    assert route["deployment"] == "primary/gpt-4o-mini" and cost == route["cost_usd"] > 0


async def test_structured_output(agent_fleet: Fleet) -> None:
    schema = {"type": "object", "properties": {"reply": {"type": "string"}, "ok": {"type": "boolean"}}}
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        register(router)
        res = await litellm.acompletion(
            model="llmroute/fast-only",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "Answer", "schema": schema}},
        )
    assert json.loads(res.choices[0].message.content) == {"reply": "Echo: structured", "ok": True}
    assert res._hidden_params["llmroute"]["route"] == "fast-only"


@pytest.mark.parametrize(
    ("code", "error"), [(500, litellm.APIError), (429, litellm.RateLimitError), (400, litellm.BadRequestError)]
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_every_attempt_failing_raises_litellms_error(
    agent_fleet: Fleet, code: int, error: type, streamed: bool
) -> None:
    for name in ("primary", "backup", "claude"):
        agent_fleet[name].enqueue(Fault.status(code))
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        register(router)
        with pytest.raises(openai.APIError if streamed else error) as info:  # the base of all LiteLLM errors
            res = await litellm.acompletion(
                model="llmroute/default", messages=[{"role": "user", "content": "hi"}], stream=streamed
            )
            if streamed:
                async for _ in res:
                    pass
    raised = info.value
    if isinstance(raised, MidStreamFallbackError):  # LiteLLM wraps a retryable error raised in a stream
        assert raised.is_pre_first_chunk
        raised = raised.original_exception
    assert isinstance(raised, error) and "all 3 attempts failed" in str(raised)


def test_error_mapping() -> None:
    ctx = llmroute.AllAttemptsFailedError("r", [llmroute.ContextWindowExceededError("long", status=400)])
    assert isinstance(litellm_error(ctx, "llmroute/r"), litellm.ContextWindowExceededError)
    assert isinstance(litellm_error(llmroute.DeadlineExceededError("r", 1.0), "m"), litellm.Timeout)
    assert isinstance(litellm_error(llmroute.ServerError("x", status=529), "m"), litellm.ServiceUnavailableError)


async def test_cancelling_leaves_nothing_in_flight(agent_fleet: Fleet) -> None:
    agent_fleet["primary"].tokens_per_s = 20.0
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        register(router)
        seen = 0
        with anyio.move_on_after(0.3):
            stream = await litellm.acompletion(
                model="llmroute/fast-only", messages=[{"role": "user", "content": "a long story"}], stream=True
            )
            async for _ in stream:
                seen += 1
        assert seen
        fail_everything(agent_fleet)  # then a non-streamed call cancelled while it waits
        agent_fleet["primary"].reset()
        agent_fleet["primary"].enqueue(Fault.stall(2.0))
        with anyio.move_on_after(0.2):
            await litellm.acompletion(model="llmroute/fast-only", messages=[{"role": "user", "content": "hi"}])
        await settled(agent_fleet)
        assert router._executor.admission is not None and router._executor.admission.in_flight == 0
