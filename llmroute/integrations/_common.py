"""What the framework integrations share: choosing the route for a framework's model name, the
route summary frameworks carry in their reply objects, and OpenAI-shaped pieces of a reply."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..types import FinishReason, Reply, ToolCallDelta, Usage

if TYPE_CHECKING:
    from ..router import Router

__all__ = ["openai_finish", "openai_tool_delta", "openai_usage", "resolve", "route_info"]


def resolve(router: Router, name: str | None, aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``route=`` or ``model=`` keyword for a framework's model *name*.

    *aliases* first (a framework that validates model names can ask for ``gpt-4o`` and get a
    route), then a route of that name, then a model of that name, else the default route.
    """
    if name and aliases:
        name = aliases.get(name, name)
    if name:
        if name in router.config.routes:
            return {"route": name}
        if name in router.config.models:
            return {"model": name}
    return {}


def route_info(reply: Reply) -> dict[str, Any]:
    """What llmroute did for *reply*, JSON-serialisable: route, model, deployment, costs, trace."""
    return {
        "route": reply.route.route,
        "model": reply.model,
        "deployment": reply.deployment,
        "provider": reply.provider,
        "provider_model": reply.provider_model,
        "cost_usd": reply.cost_usd,
        "total_cost_usd": reply.total_cost_usd,
        "attempts": len(reply.route.attempts),
        "trace": json.loads(json.dumps(reply.route.to_dict(), default=str)),
    }


def openai_finish(reason: FinishReason | None) -> str:
    """A reply's finish reason as an OpenAI ``finish_reason``."""
    return "stop" if reason in (None, "other") else reason  # type: ignore[return-value]


def openai_usage(usage: Usage) -> dict[str, Any]:
    """*usage* as an OpenAI ``usage`` object."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }


def openai_tool_delta(delta: ToolCallDelta) -> dict[str, Any]:
    """A streamed tool-call fragment as an OpenAI ``delta.tool_calls`` item."""
    out: dict[str, Any] = {"index": delta.index, "function": {"arguments": delta.arguments}}
    if delta.id:
        out["id"] = delta.id
        out["type"] = "function"
    if delta.name:
        out["function"]["name"] = delta.name
    return out
