"""The OpenAI SDK over llmroute (offline, on the local fake fleet): a tool-calling loop.

python examples/openai_sdk.py        (needs: pip install 'llmroute[openai]')
"""

from __future__ import annotations

import json

import anyio
from _agent_fleet import QUESTION, agent_fleet, get_weather

import llmroute
from llmroute.integrations.openai import openai_client

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


async def main() -> None:
    with agent_fleet() as config:
        async with llmroute.Router.from_dict(config) as router:
            client = openai_client(router)  # an openai.AsyncOpenAI; model= names a route or a model
            messages = [{"role": "user", "content": QUESTION}]
            while True:
                res = await client.chat.completions.create(model="default", messages=messages, tools=TOOLS)
                route = res.llmroute  # the extra body field: route, model, deployment, cost, trace
                print(
                    f"answered by {route['deployment']} after {route['attempts']} attempt(s), ${route['cost_usd']:.8f}"
                )
                message = res.choices[0].message
                messages.append(message.model_dump(exclude_none=True))
                if not message.tool_calls:
                    break
                for call in message.tool_calls:
                    result = get_weather(**json.loads(call.function.arguments))
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            print(message.content)


if __name__ == "__main__":
    anyio.run(main)
