"""The OpenAI Agents SDK over llmroute: :class:`LLMRouteProvider`, a ``ModelProvider`` that routes.

::

    from agents import Agent, RunConfig, Runner
    from llmroute.integrations.openai_agents import LLMRouteProvider

    provider = LLMRouteProvider(router)
    agent = Agent(name="weather", tools=[get_weather])
    result = await Runner.run(agent, "What is the weather in Paris?", run_config=RunConfig(model_provider=provider))
    provider.route_of(result.raw_responses[-1])["deployment"]

Its models are the SDK's own ``OpenAIChatCompletionsModel`` (so the SDK's own chat-completions
converters handle items, tools, handoffs, output schemas and streaming) over
:func:`llmroute.integrations.openai.openai_client`; an agent's ``model`` (or ``RunConfig.model``)
names the route, the model or an alias (``None``: the default route). On top of that:

- the route of each model call is in its tracing span (``GenerationSpanData.model_config
  ["llmroute"]``: route, model, deployment, cost) and reachable from the run's replies:
  ``provider.route_of(model_response)`` returns the whole route record (trace included) for an
  item of ``result.raw_responses``, streamed or not (by its ``request_id``; the last 10,000 are
  kept);
- trace export to OpenAI is turned off when there is no ``OPENAI_API_KEY`` (the SDK would
  otherwise try to upload every trace and log an error for each); tracing itself stays on for
  your own processors. Pass ``export_traces=True`` or ``False`` to decide yourself;
- when every attempt fails, the SDK raises the ``openai`` error for the status of
  :func:`llmroute.errors.http_status` (``openai.InternalServerError``, ``RateLimitError``, ...),
  as it does for any model failure.

Needs ``pip install 'llmroute[openai-agents]'``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from agents import Model, ModelProvider, ModelResponse, OpenAIChatCompletionsModel

from .openai import openai_client

if TYPE_CHECKING:
    from ..router import Router

__all__ = ["LLMRouteModel", "LLMRouteProvider", "stop_trace_export"]

_KEEP = 10_000


def stop_trace_export() -> None:
    """Stop the Agents SDK from uploading traces to OpenAI; other trace processors keep running."""
    from agents.tracing import get_trace_provider, set_trace_processors, set_tracing_disabled
    from agents.tracing.processors import default_processor

    provider = get_trace_provider()
    processors = getattr(getattr(provider, "_multi_processor", None), "_processors", None)
    if processors is None:  # an SDK whose processors cannot be listed: no tracing rather than failed uploads
        set_tracing_disabled(True)
        return
    set_trace_processors([p for p in processors if p is not default_processor()])


class _Routes:
    """Route records by response request id, the last *keep* of them."""

    def __init__(self, keep: int = _KEEP) -> None:
        self._keep = keep
        self._by_id: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, request_id: str | None, info: dict[str, Any] | None, span: Any) -> None:
        if info is None:
            return
        if span is not None:  # the route in the generation span (a short summary; the trace stays here)
            config = dict(getattr(span.span_data, "model_config", None) or {})
            config["llmroute"] = {k: info.get(k) for k in ("route", "model", "deployment", "cost_usd", "attempts")}
            span.span_data.model_config = config
        if request_id:
            self._by_id[request_id] = info
            while len(self._by_id) > self._keep:
                self._by_id.popitem(last=False)

    def get(self, request_id: str | None) -> dict[str, Any] | None:
        return self._by_id.get(request_id) if request_id else None


def _info(obj: Any) -> dict[str, Any] | None:
    info = (getattr(obj, "model_extra", None) or {}).get("llmroute")
    return info if isinstance(info, dict) else None


class _Watched:
    """A chat-completion chunk stream that records the route of its last chunk."""

    def __init__(self, stream: Any, routes: _Routes, span: Any) -> None:
        self._stream = stream
        self._routes = routes
        self._span = span

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def __aiter__(self) -> AsyncIterator[Any]:
        headers = getattr(getattr(self._stream, "response", None), "headers", None) or {}
        async for chunk in self._stream:
            info = _info(chunk)
            if info is not None:
                self._routes.add(headers.get("x-request-id"), info, self._span)
            yield chunk


class LLMRouteModel(OpenAIChatCompletionsModel):
    """The Agents SDK's chat-completions model over the routing transport, recording each call's route."""

    def __init__(self, name: str, client: Any, routes: _Routes) -> None:
        super().__init__(model=name, openai_client=client)
        self._routes = routes

    async def _fetch_response(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        result = await super()._fetch_response(*args, **kwargs)
        span = kwargs.get("span", args[6] if len(args) > 6 else None)
        if isinstance(result, tuple):  # streamed: (response, chunk stream)
            response, stream = result
            return response, _Watched(stream, self._routes, span)
        self._routes.add(getattr(result, "_request_id", None), _info(result), span)
        return result


class LLMRouteProvider(ModelProvider):
    """An Agents SDK ``ModelProvider`` whose models route through *router* (see the module docs).

    *aliases* map model names an agent asks for to route or model names; *export_traces* decides
    whether the SDK uploads traces to OpenAI (default: only when ``OPENAI_API_KEY`` is set).
    """

    def __init__(
        self,
        router: Router,
        *,
        aliases: Mapping[str, str] | None = None,
        export_traces: bool | None = None,
    ) -> None:
        self.router = router
        self._client = openai_client(router, aliases=aliases)
        self._routes = _Routes()
        if export_traces is None:
            export_traces = bool(os.environ.get("OPENAI_API_KEY"))
        if not export_traces:
            stop_trace_export()

    def get_model(self, model_name: str | None) -> Model:
        """The model for *model_name*: a route, a model or an alias (``None``: the default route)."""
        return LLMRouteModel(model_name or self.router._route(None, None)[0], self._client, self._routes)

    def route_of(self, response: ModelResponse | str | None) -> dict[str, Any] | None:
        """The route record (route, model, deployment, costs, trace) of a run's ``ModelResponse``
        (or its ``request_id``), if it is one of the last 10,000 this provider's models made."""
        request_id = response if isinstance(response, str) or response is None else response.request_id
        return self._routes.get(request_id)
