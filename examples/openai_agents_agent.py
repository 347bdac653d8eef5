"""An OpenAI Agents SDK agent over llmroute (offline, on the local fake fleet): a handoff, then a tool.

python examples/openai_agents_agent.py        (needs: pip install 'llmroute[openai-agents]')
"""

from __future__ import annotations

import asyncio

from _agent_fleet import QUESTION, agent_fleet, get_weather
from agents import Agent, RunConfig, Runner, function_tool

import llmroute
from llmroute.integrations.openai_agents import LLMRouteProvider


async def main() -> None:
    with agent_fleet() as config:
        async with llmroute.Router.from_dict(config) as router:
            provider = LLMRouteProvider(router)  # trace upload stays off without OPENAI_API_KEY
            agent = Agent(name="weather", instructions="Answer weather questions.", tools=[function_tool(get_weather)])
            result = await Runner.run(agent, QUESTION, run_config=RunConfig(model_provider=provider))
            print(result.final_output)
            for response in result.raw_responses:
                route = provider.route_of(response)
                print(f"  {route['deployment']} after {route['attempts']} attempt(s), ${route['cost_usd']:.8f}")


if __name__ == "__main__":
    asyncio.run(main())
