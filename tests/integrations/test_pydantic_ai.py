"""pydantic-ai agents over LLMRouteModel, with the real pydantic-ai package, on the loopback fleet."""

from __future__ import annotations

from decimal import Decimal

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

pytest.importorskip("pydantic_ai", reason="pydantic-ai is not installed (pip install 'llmroute[pydantic-ai]')")

from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError
from pydantic_ai.messages import ModelResponse

from llmroute.integrations.pydantic_ai import LLMRouteModel

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # pydantic-ai's Agent calls asyncio.create_task


def _responses(messages: list) -> list[ModelResponse]:
    return [m for m in messages if isinstance(m, ModelResponse)]


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_agent_calls_a_tool_and_answers_through_a_fallback(agent_fleet: Fleet, streamed: bool) -> None:
    agent_fleet["primary"].enqueue(Fault.server_error(503))
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        agent = Agent(LLMRouteModel(router), tools=[get_weather])
        if streamed:
            async with agent.run_stream(QUESTION) as run:
                output = await run.get_output()
            messages, usage = run.all_messages(), run.usage
        else:
            result = await agent.run(QUESTION)
            output, messages, usage = result.output, result.all_messages(), result.usage
    assert output == f'Tool result received: "{WEATHER} in Paris"'
    first, second = _responses(messages)
    assert first.parts[0].tool_name == "get_weather" and first.parts[0].args_as_dict() == {"city": "Paris"}
    route = first.provider_details["llmroute"]
    assert route["deployment"] == "backup/gpt-4o-mini" and route["route"] == "default"
    assert [a["status"] for a in route["trace"]["attempts"]] == [503, None]
    assert second.provider_details["llmroute"]["deployment"] == "primary/gpt-4o-mini"
    # llmroute's cost of each answering attempt is pydantic-ai's cost
    costs = [Decimal(str(r.provider_details["llmroute"]["cost_usd"])) for r in (first, second)]
    assert first.usage.cost == costs[0] > 0 and usage.cost == sum(costs)


@pytest.mark.parametrize(("route", "mode"), [("fast-only", "native"), ("default", "tool")])
async def test_structured_output_native_or_by_tool_from_the_capabilities(
    agent_fleet: Fleet, route: str, mode: str
) -> None:
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        model = LLMRouteModel(router, route)
        # the default route holds an Anthropic model: its JSON schema is only prompted, so tool mode
        assert model.profile["default_structured_output_mode"] == mode
        result = await Agent(model, output_type=Answer).run("hi")
    assert result.output == Answer(reply="Echo: structured", ok=True)
    sent = agent_fleet["primary"].requests[0].json
    if mode == "native":
        assert sent["response_format"]["type"] == "json_schema" and "tools" not in sent
    else:
        assert sent["tools"][0]["function"]["name"] == "final_result" and "response_format" not in sent


@pytest.mark.parametrize("streamed", [False, True])
async def test_every_attempt_failing_raises_pydantic_ais_error(agent_fleet: Fleet, streamed: bool) -> None:
    fail_everything(agent_fleet)
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        agent = Agent(LLMRouteModel(router))
        with pytest.raises(ModelHTTPError) as info:
            if streamed:
                async with agent.run_stream("hi") as run:
                    await run.get_output()
            else:
                await agent.run("hi")
    assert isinstance(info.value, ModelAPIError) and info.value.status_code == 502
    assert "all 3 attempts failed" in str(info.value.body)


async def test_cancelling_a_run_leaves_nothing_in_flight(agent_fleet: Fleet) -> None:
    agent_fleet["primary"].tokens_per_s = 20.0
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        agent = Agent(LLMRouteModel(router, "fast-only"))
        seen: list[str] = []
        with anyio.move_on_after(0.3):
            async with agent.run_stream("tell me a long story") as run:
                async for text in run.stream_text(delta=True):
                    seen.append(text)
        assert seen
        agent_fleet["primary"].enqueue(Fault.stall(2.0))
        with anyio.move_on_after(0.2):
            await agent.run("hi")
        await settled(agent_fleet)
        assert router._executor.admission is not None and router._executor.admission.in_flight == 0
