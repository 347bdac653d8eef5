"""OpenAI Agents SDK agents over LLMRouteProvider, with the real openai-agents package, on the fleet."""

from __future__ import annotations

from typing import Any

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

pytest.importorskip("agents", reason="openai-agents is not installed (pip install 'llmroute[openai-agents]')")

import openai
from agents import Agent, RunConfig, Runner, function_tool
from agents.tracing import TracingProcessor, add_trace_processor, get_trace_provider, set_trace_processors
from agents.tracing.processors import default_processor

from llmroute.integrations.openai_agents import LLMRouteProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Agents SDK runs on asyncio only


class Spans(TracingProcessor):
    """Keeps the data of every span that ends."""

    def __init__(self) -> None:
        self.ended: list[dict[str, Any]] = []

    def on_trace_start(self, trace: Any) -> None: ...
    def on_trace_end(self, trace: Any) -> None: ...
    def on_span_start(self, span: Any) -> None: ...
    def on_span_end(self, span: Any) -> None:
        self.ended.append(span.span_data.export())

    def shutdown(self) -> None: ...
    def force_flush(self) -> None: ...


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    processor = Spans()
    add_trace_processor(processor)
    yield processor
    set_trace_processors([p for p in get_trace_provider()._multi_processor._processors if p is not processor])


async def _run(agent: Agent, question: str, provider: LLMRouteProvider, streamed: bool) -> Any:
    config = RunConfig(model_provider=provider)
    if not streamed:
        return await Runner.run(agent, question, run_config=config)
    result = Runner.run_streamed(agent, question, run_config=config)
    async for _ in result.stream_events():
        pass
    return result


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_agent_calls_a_tool_and_answers_through_a_fallback(
    agent_fleet: Fleet, spans: Spans, streamed: bool
) -> None:
    agent_fleet["primary"].enqueue(Fault.server_error(503))
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        provider = LLMRouteProvider(router)
        # no OPENAI_API_KEY: nothing is uploaded, but tracing still reaches our processor
        assert default_processor() not in get_trace_provider()._multi_processor._processors
        result = await _run(Agent(name="weather", tools=[function_tool(get_weather)]), QUESTION, provider, streamed)
    assert result.final_output == f'Tool result received: "{WEATHER} in Paris"'
    first, second = (provider.route_of(r) for r in result.raw_responses)
    assert first["deployment"] == "backup/gpt-4o-mini" and [a["status"] for a in first["trace"]["attempts"]] == [
        503,
        None,
    ]
    assert second["deployment"] == "primary/gpt-4o-mini" and second["cost_usd"] > 0
    generations = [s for s in spans.ended if s["type"] == "generation"]
    assert [g["model_config"]["llmroute"]["deployment"] for g in generations[-2:]] == [
        "backup/gpt-4o-mini",
        "primary/gpt-4o-mini",
    ]
    tools = [s for s in spans.ended if s["type"] == "function"]
    assert tools and tools[-1]["name"] == "get_weather"


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_handoff_then_a_tool(agent_fleet: Fleet, streamed: bool) -> None:
    weather = Agent(name="weather", tools=[function_tool(get_weather)], handoff_description="knows the weather")
    triage = Agent(name="triage", handoffs=[weather])
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        provider = LLMRouteProvider(router, export_traces=False)
        result = await _run(triage, QUESTION, provider, streamed)
    assert result.last_agent is weather
    assert result.final_output == f'Tool result received: "{WEATHER} in Paris"'
    assert len(result.raw_responses) == 3 and all(provider.route_of(r) for r in result.raw_responses)


async def test_structured_output(agent_fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        provider = LLMRouteProvider(router, export_traces=False)
        result = await _run(Agent(name="s", output_type=Answer, model="fast-only"), "hi", provider, False)
    assert result.final_output == Answer(reply="Echo: structured", ok=True)
    assert provider.route_of(result.raw_responses[0])["route"] == "fast-only"
    assert agent_fleet["primary"].requests[0].json["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("streamed", [False, True])
async def test_every_attempt_failing_raises_the_sdks_error(agent_fleet: Fleet, streamed: bool) -> None:
    fail_everything(agent_fleet)
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        provider = LLMRouteProvider(router, export_traces=False)
        with pytest.raises(openai.InternalServerError) as info:
            await _run(Agent(name="a"), "hi", provider, streamed)
    assert info.value.status_code == 502 and "all 3 attempts failed" in info.value.message


async def test_cancelling_a_streamed_run_leaves_nothing_in_flight(agent_fleet: Fleet) -> None:
    agent_fleet["primary"].tokens_per_s = 20.0
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        provider = LLMRouteProvider(router, export_traces=False)
        seen = 0
        with anyio.move_on_after(0.3):
            result = Runner.run_streamed(
                Agent(name="a", model="fast-only"), "a long story", run_config=RunConfig(model_provider=provider)
            )
            async for _ in result.stream_events():
                seen += 1
        result.cancel()
        assert seen
        await settled(agent_fleet)
        assert router._executor.admission is not None and router._executor.admission.in_flight == 0
