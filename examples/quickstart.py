"""The README's quick start, runnable offline: the same calls against a local fake fleet.

python examples/quickstart.py
"""

from __future__ import annotations

import anyio

import llmroute
from llmroute.testing import FakeProvider, Fault, Fleet


async def main() -> None:
    with Fleet([FakeProvider("openai", api="openai"), FakeProvider("anthropic", api="anthropic")]) as fleet:
        config = {
            "providers": {
                "openai": {"api": "openai", "base_url": fleet.base_url("openai"), "api_key": "sk-local"},
                "anthropic": {"api": "anthropic", "base_url": fleet.base_url("anthropic"), "api_key": "sk-local"},
            },
            "models": {
                "small": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]},
                "large": {"deployments": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}]},
            },
            "routes": {"default": {"models": ["small", "large"], "deadline_s": 30}},
        }
        fleet["openai"].enqueue(Fault.server_error(503), Fault.server_error(503))  # watch it fall back
        async with llmroute.Router.from_dict(config) as router:
            reply = await router.complete([{"role": "user", "content": "Name three moons of Jupiter."}])
            print(reply.text)
            print(f"answered by {reply.model} @ {reply.provider}, {reply.usage}, ${reply.cost_usd:.6f}")
            for attempt in reply.route.attempts:
                print(f"  attempt {attempt.number} on {attempt.deployment}: {attempt.outcome} {attempt.status or ''}")
            async for chunk in router.stream("Tell me a joke."):
                print(chunk.text, end="", flush=True)
            print()


if __name__ == "__main__":
    anyio.run(main)
