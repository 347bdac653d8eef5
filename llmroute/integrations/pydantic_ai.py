"""pydantic-ai over llmroute: :class:`LLMRouteModel`, a pydantic-ai ``Model`` that routes.

::

    from pydantic_ai import Agent
    from llmroute.integrations.pydantic_ai import LLMRouteModel

    agent = Agent(LLMRouteModel(router, "default"), tools=[get_weather])
    result = await agent.run("What is the weather in Paris?")
    result.response.provider_details["llmroute"]["deployment"], result.usage().cost

It is pydantic-ai's own ``OpenAIChatModel`` over :func:`llmroute.integrations.openai.openai_client`,
so pydantic-ai's message mapping, streaming (``OpenAIStreamedResponse``), tools and output modes
all apply unchanged; the routed call happens in llmroute's transport. On top of that:

- the model profile comes from the route's capabilities (:meth:`llmroute.Router.capabilities`):
  ``supports_tools``, ``supports_json_schema_output`` / ``supports_json_object_output``,
  ``supports_image_input``, and ``default_structured_output_mode`` ``native`` when every model of
  the route enforces a JSON schema, else ``tool``; pass ``profile=`` to override any of it;
- every ``ModelResponse`` carries ``provider_details["llmroute"]`` (route, model, deployment,
  costs, the whole trace), streamed or not;
- ``RequestUsage.cost`` is llmroute's cost of the answering attempt (from the deployment's
  prices), so ``result.usage().cost`` and ``UsageLimits(cost_limit=...)`` see it;
- when every attempt fails, pydantic-ai raises its own ``ModelHTTPError`` (a ``ModelAPIError``)
  with the status of :func:`llmroute.errors.http_status`; the SDK's timeout (``ModelSettings``
  ``timeout``) becomes the call's deadline.

Needs ``pip install 'llmroute[pydantic-ai]'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic_ai.models.openai import OpenAIChatModel, OpenAIStreamedResponse
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.providers.openai import OpenAIProvider

from .openai import openai_client

if TYPE_CHECKING:
    from openai.types import chat
    from openai.types.chat import ChatCompletionChunk
    from pydantic_ai import usage

    from ..router import Router

__all__ = ["LLMRouteModel", "LLMRouteStreamedResponse", "profile_for"]


def _route_info(obj: Any) -> dict[str, Any] | None:
    """The ``llmroute`` field the transport adds to a completion or to a stream's last chunk."""
    extra = getattr(obj, "model_extra", None) or {}
    info = extra.get("llmroute")
    return info if isinstance(info, dict) else None


def _with_cost(request_usage: usage.RequestUsage, info: Mapping[str, Any] | None) -> usage.RequestUsage:
    if info is not None and info.get("cost_usd") is not None:
        request_usage.cost = Decimal(str(info["cost_usd"]))
    return request_usage


def profile_for(router: Router, route: str | None = None) -> ModelProfile:
    """The pydantic-ai ``ModelProfile`` of *route* (a route or model name; default route), from its capabilities."""
    from ._common import resolve

    caps = router.capabilities(**resolve(router, route))
    return ModelProfile(
        supports_tools=caps.tools,
        supports_json_schema_output=caps.json_schema,
        supports_json_object_output=caps.json_schema,
        supports_image_input=caps.vision,
        default_structured_output_mode="native" if caps.json_schema else "tool",
    )


class LLMRouteStreamedResponse(OpenAIStreamedResponse):
    """pydantic-ai's OpenAI stream, plus llmroute's route (``provider_details["llmroute"]``) and cost."""

    def _map_chunk_provider_details(self, chunk: ChatCompletionChunk) -> dict[str, Any] | None:
        info = _route_info(chunk)
        return {"llmroute": info} if info is not None else None

    def _map_usage(self, response: ChatCompletionChunk) -> usage.RequestUsage:
        return _with_cost(super()._map_usage(response), _route_info(response))


class LLMRouteModel(OpenAIChatModel):
    """A pydantic-ai model that routes every request through *router* along *route* (a route or
    model name, or an alias; default: the router's default route). See the module docs."""

    def __init__(
        self,
        router: Router,
        route: str | None = None,
        *,
        aliases: Mapping[str, str] | None = None,
        profile: ModelProfile | None = None,
        settings: Any = None,
    ) -> None:
        self.router = router
        name = route or router._route(None, None)[0]
        base = profile_for(router, (aliases or {}).get(name, name))
        provider = OpenAIProvider(openai_client=openai_client(router, aliases=aliases))
        super().__init__(name, provider=provider, profile={**base, **(profile or {})}, settings=settings)

    def _process_provider_details(self, response: chat.ChatCompletion) -> dict[str, Any] | None:
        details = super()._process_provider_details(response)
        info = _route_info(response)
        if info is None:
            return details
        return {**(details or {}), "llmroute": info}

    def _map_usage(self, response: chat.ChatCompletion) -> usage.RequestUsage:
        return _with_cost(super()._map_usage(response), _route_info(response))

    @property
    def _streamed_response_cls(self) -> type[OpenAIStreamedResponse]:
        return LLMRouteStreamedResponse
