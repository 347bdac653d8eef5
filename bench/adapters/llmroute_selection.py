"""llmroute with live selection: the same router as ``llmroute_router`` (two models, two
deployments of the first), with a ``selection`` block on the route, so health lookups, scoring
and the trace's explanation all run on every call."""

from __future__ import annotations

from typing import Any

import llmroute

NAME = "llmroute.Router+selection"


class Client:
    def __init__(self, base_url: str) -> None:
        price = {"input": 0.15, "output": 0.6}
        self._router = llmroute.Router.from_dict(
            {
                "providers": {
                    "a": {"api": "openai", "base_url": base_url, "api_key": "sk-bench"},
                    "b": {"api": "openai", "base_url": base_url, "api_key": "sk-bench"},
                },
                "models": {
                    "small": {
                        "deployments": [
                            {"provider": "a", "model": "bench-model", "price": price},
                            {"provider": "b", "model": "bench-model", "price": price},
                        ]
                    },
                    "large": {
                        "deployments": [
                            {"provider": "b", "model": "bench-large", "price": {"input": 2.5, "output": 10}}
                        ]
                    },
                },
                "routes": {
                    "default": {"models": ["small", "large"], "selection": {"objective": {"price": 1, "latency": 1}}}
                },
            }
        )

    async def call(self, messages: list[dict[str, Any]]) -> str:
        reply = await self._router.complete(messages)
        _ = reply.usage, reply.cost_usd
        return reply.text or ""

    async def aclose(self) -> None:
        await self._router.aclose()


async def make(base_url: str) -> Client:
    return Client(base_url)
