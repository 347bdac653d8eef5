"""LiteLLM's acompletion over llmroute (offline, on the local fake fleet): model="llmroute/<route>".

python examples/litellm_completion.py        (needs: pip install 'llmroute[litellm]')
"""

from __future__ import annotations

import asyncio

from _agent_fleet import agent_fleet

import llmroute
from llmroute.integrations.litellm import litellm, register  # imports LiteLLM with its local price map


async def main() -> None:
    with agent_fleet() as config:
        async with llmroute.Router.from_dict(config) as router:
            register(router)
            messages = [{"role": "user", "content": "Say hello."}]
            response = await litellm.acompletion(model="llmroute/default", messages=messages)
            route, cost = response._hidden_params["llmroute"], response._hidden_params["response_cost"]
            print(response.choices[0].message.content)
            print(f"  {route['deployment']} after {route['attempts']} attempt(s), ${cost:.8f}")
            stream = await litellm.acompletion(model="llmroute/default", messages=messages, stream=True)
            chunks = [chunk async for chunk in stream]
            built = litellm.stream_chunk_builder(chunks, messages=messages)
            print(built.choices[0].message.content, f"(streamed, ${built._hidden_params['response_cost']:.8f})")


if __name__ == "__main__":
    asyncio.run(main())
