"""LangChain agents over ChatLLMRoute, with the real langchain packages, on the loopback fleet."""

from __future__ import annotations

import anyio
import pytest
from fleet_for_agents import (
    QUESTION,
    WEATHER,
    Answer,
    agent_config,
    fail_everything,
    get_weather,
    settled,
)

import llmroute
from llmroute.testing import Fault, Fleet

pytest.importorskip("langchain", reason="langchain is not installed (pip install 'llmroute[langchain]')")

from langchain.agents import create_agent
from langchain_core import exceptions as lc
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool

from llmroute.integrations.langchain import ChatLLMRoute, langchain_error

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # LangChain and LangGraph run on asyncio only


@pytest.mark.parametrize("streamed", [False, True])
async def test_create_agent_calls_a_tool_and_answers_through_a_fallback(agent_fleet: Fleet, streamed: bool) -> None:
    agent_fleet["primary"].enqueue(Fault.server_error(503))
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        agent = create_agent(ChatLLMRoute(router=router), tools=[tool(get_weather)])
        question = {"messages": [("user", QUESTION)]}
        if streamed:
            tokens = []
            async for mode, event in agent.astream(question, stream_mode=["messages", "values"]):
                if mode == "values":
                    state = event
                elif isinstance(event[0], AIMessageChunk):
                    tokens.append(event[0].content)
            assert "".join(tokens) == f'Tool result received: "{WEATHER} in Paris"'
        else:
            state = await agent.ainvoke(question)
    call, answer = [m for m in state["messages"] if isinstance(m, AIMessage)]
    assert call.tool_calls[0]["name"] == "get_weather" and call.tool_calls[0]["args"] == {"city": "Paris"}
    assert answer.content == f'Tool result received: "{WEATHER} in Paris"'
    route = call.response_metadata["llmroute"]
    assert route["deployment"] == "backup/gpt-4o-mini" and [a["status"] for a in route["trace"]["attempts"]] == [
        503,
        None,
    ]
    assert answer.response_metadata["llmroute"]["deployment"] == "primary/gpt-4o-mini"
    assert answer.usage_metadata["total_tokens"] > 0 and answer.response_metadata["llmroute"]["cost_usd"] > 0
    assert agent_fleet["backup"].requests[-1].stream is streamed


async def test_astream_yields_tool_call_chunks_and_ends_with_usage_and_route(agent_fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        model = ChatLLMRoute(router=router, route="fast-only").bind_tools([get_weather], tool_choice="get_weather")
        chunks = [c async for c in model.astream(QUESTION)]
    assert any(c.tool_call_chunks for c in chunks)
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": merged.tool_calls[0]["id"], "type": "tool_call"}
    ]
    assert (
        chunks[-1].usage_metadata["output_tokens"] > 0
        and chunks[-1].response_metadata["llmroute"]["route"] == "fast-only"
    )
    sent = agent_fleet["primary"].requests[0].json
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(("route", "method"), [("fast-only", "json_schema"), ("default", "function_calling")])
async def test_structured_output_by_schema_or_by_tool(agent_fleet: Fleet, route: str, method: str) -> None:
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        model = ChatLLMRoute(router=router, route=route)
        assert model.profile["structured_output"] is (method == "json_schema")
        out = await model.with_structured_output(Answer, include_raw=True).ainvoke("hi")
    assert out["parsed"] == Answer(reply="Echo: structured", ok=True) and out["parsing_error"] is None
    assert out["raw"].response_metadata["llmroute"]["route"] == route
    sent = agent_fleet["primary"].requests[0].json
    if method == "json_schema":
        assert sent["response_format"]["json_schema"]["name"] == "Answer"
    else:
        assert sent["tools"][0]["function"]["name"] == "Answer" and sent["tool_choice"] == "required"


@pytest.mark.parametrize("streamed", [False, True])
async def test_every_attempt_failing_raises_langchains_error(agent_fleet: Fleet, streamed: bool) -> None:
    fail_everything(agent_fleet)
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        model = ChatLLMRoute(router=router)
        with pytest.raises(lc.ModelAPIError) as info:
            if streamed:
                async for _ in model.astream("hi"):
                    pass
            else:
                await model.ainvoke("hi")
    assert isinstance(info.value.__cause__, llmroute.AllAttemptsFailedError)
    assert info.value.is_retryable


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (llmroute.RateLimitError("slow"), lc.ModelRateLimitError),
        (llmroute.ContextWindowExceededError("long", status=400), lc.ContextOverflowError),
        (llmroute.AuthenticationError("no", status=401), lc.ModelAuthenticationError),
        (llmroute.ProviderConnectionError("refused"), lc.ModelConnectionError),
        (llmroute.DeadlineExceededError("r", 1.0), lc.ModelTimeoutError),
        (llmroute.UnknownRouteError("nope"), lc.ModelNotFoundError),
        (llmroute.AllAttemptsFailedError("r", [llmroute.ServerError("x", status=503)]), lc.ModelAPIError),
    ],
)
def test_error_mapping(error: llmroute.LLMRouteError, expected: type) -> None:
    assert type(langchain_error(error)) is expected


async def test_cancelling_leaves_nothing_in_flight(agent_fleet: Fleet) -> None:
    agent_fleet["primary"].tokens_per_s = 20.0
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        model = ChatLLMRoute(router=router, route="fast-only")
        seen = []
        with anyio.move_on_after(0.3):
            async for chunk in model.astream("tell me a long story"):
                seen.append(chunk)
        assert seen
        agent_fleet["primary"].enqueue(Fault.stall(2.0))
        with anyio.move_on_after(0.2):
            await model.ainvoke("hi")
        await settled(agent_fleet)
        assert router._executor.admission is not None and router._executor.admission.in_flight == 0


def test_the_sync_api_says_to_use_the_async_one(agent_fleet: Fleet) -> None:
    router = llmroute.Router.from_dict(agent_config(agent_fleet))
    with pytest.raises(NotImplementedError, match="ainvoke"):
        ChatLLMRoute(router=router).invoke("hi")
