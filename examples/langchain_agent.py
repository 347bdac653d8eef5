"""A LangChain agent (create_agent) over llmroute (offline, on the local fake fleet), streamed.

python examples/langchain_agent.py        (needs: pip install 'llmroute[langchain]')
"""

from __future__ import annotations

import asyncio

from _agent_fleet import QUESTION, agent_fleet, get_weather
from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

import llmroute
from llmroute.integrations.langchain import ChatLLMRoute


async def main() -> None:
    with agent_fleet() as config:
        async with llmroute.Router.from_dict(config) as router:
            agent = create_agent(ChatLLMRoute(router=router, route="default"), tools=[tool(get_weather)])
            async for mode, event in agent.astream(
                {"messages": [("user", QUESTION)]}, stream_mode=["messages", "values"]
            ):
                if mode == "values":
                    state = event
                elif event[0].content and isinstance(event[0], AIMessage):
                    print(event[0].content, end="", flush=True)
            print()
            for message in state["messages"]:
                if isinstance(message, AIMessage):
                    route = message.response_metadata["llmroute"]
                    print(f"  {route['deployment']} after {route['attempts']} attempt(s), ${route['cost_usd']:.8f}")


if __name__ == "__main__":
    asyncio.run(main())
