"""A pydantic-ai agent over llmroute (offline, on the local fake fleet): a tool, then a typed answer.

python examples/pydantic_ai_agent.py        (needs: pip install 'llmroute[pydantic-ai]')
"""

from __future__ import annotations

import asyncio

from _agent_fleet import QUESTION, agent_fleet, get_weather
from pydantic import BaseModel
from pydantic_ai import Agent

import llmroute
from llmroute.integrations.pydantic_ai import LLMRouteModel


class Weather(BaseModel):
    city: str
    summary: str


async def main() -> None:
    with agent_fleet() as config:
        async with llmroute.Router.from_dict(config) as router:
            agent = Agent(LLMRouteModel(router, "default"), tools=[get_weather], output_type=Weather)
            result = await agent.run(QUESTION)
            print(result.output)
            for response in result.all_messages()[1::2]:
                route = response.provider_details["llmroute"]
                print(f"  {route['deployment']} after {route['attempts']} attempt(s), ${route['cost_usd']:.8f}")
            print(f"run cost (llmroute's): ${result.usage.cost:.8f}")


if __name__ == "__main__":
    asyncio.run(main())
