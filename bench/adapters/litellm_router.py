"""LiteLLM's Router over the same local server, for the same comparison (optional).

Needs ``pip install litellm`` (not a dependency of llmroute; use a separate virtualenv). Configured
like the llmroute adapter: one model group with two OpenAI-compatible deployments, default
settings, a model id LiteLLM has a price for (an unpriced id sends it down a much slower
zero-cost diagnostic path, which would be unfair to it).

    LITELLM_LOCAL_MODEL_COST_MAP=True python bench/overhead.py --candidate bench.adapters.litellm_router
"""

from __future__ import annotations

import os
from typing import Any

NAME = "litellm.Router"


class Client:
    def __init__(self, base_url: str) -> None:
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        deployment = {"model": "openai/gpt-4o-mini", "api_base": base_url, "api_key": "sk-bench"}
        self._router = litellm.Router(
            model_list=[
                {"model_name": "small", "litellm_params": dict(deployment)},
                {"model_name": "small", "litellm_params": dict(deployment)},
            ],
            num_retries=1,
        )

    async def call(self, messages: list[dict[str, Any]]) -> str:
        response = await self._router.acompletion(model="small", messages=messages)
        _ = response.usage
        return response.choices[0].message.content or ""

    async def aclose(self) -> None:
        return None


async def make(base_url: str) -> Client:
    return Client(base_url)
