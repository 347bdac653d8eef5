"""llmroute: a Router with one route of two models (two deployments each, as in production
configs), so planning, cost estimates, retries/fallback bookkeeping and the trace all run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import llmroute

NAME = "llmroute.Router"


def config(base_url: str) -> dict[str, Any]:
    """The benchmarked configuration (two fake providers on *base_url*)."""
    price = {"input": 0.15, "output": 0.6}
    return {
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
                "deployments": [{"provider": "b", "model": "bench-large", "price": {"input": 2.5, "output": 10}}]
            },
        },
        "routes": {"default": {"models": ["small", "large"]}},
    }


class Client:
    def __init__(
        self, base_url: str, hooks: Sequence[llmroute.Hooks] = (), *, cfg: dict[str, Any] | None = None
    ) -> None:
        self._router = llmroute.Router.from_dict(cfg or config(base_url), hooks=hooks)

    async def call(self, messages: list[dict[str, Any]]) -> str:
        reply = await self._router.complete(messages)
        _ = reply.usage, reply.cost_usd
        return reply.text or ""

    async def stream(self, messages: list[dict[str, Any]]) -> int:
        chunks = 0
        async with self._router.stream(messages) as s:
            async for _ in s:
                chunks += 1
        reply = s.reply
        assert reply is not None
        _ = reply.usage, reply.cost_usd, reply.text
        return chunks

    async def aclose(self) -> None:
        await self._router.aclose()


async def make(base_url: str) -> Client:
    return Client(base_url)
