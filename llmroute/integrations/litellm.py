"""LiteLLM over llmroute: ``register(router)`` adds an ``llmroute/`` provider to LiteLLM.

::

    import litellm
    from llmroute.integrations.litellm import register

    register(router)
    response = await litellm.acompletion(model="llmroute/default", messages=[...], tools=[...])
    response._hidden_params["response_cost"], response._hidden_params["llmroute"]["deployment"]

``llmroute/<name>`` routes along the route ``<name>`` (or to the model ``<name>``; an unknown
name takes the default route). It is a LiteLLM ``CustomLLM``: ``litellm.acompletion`` with or
without ``stream=True``, tools, ``tool_choice``, ``response_format``, ``max_tokens``,
``temperature``, ``top_p``, ``stop`` and ``timeout`` (the call's deadline) go to the router.

- Cost: llmroute's cost of the answering attempt is LiteLLM's ``response_cost``, in
  ``response._hidden_params`` and in what LiteLLM's callbacks and budgets see. For a stream it is
  in ``litellm.stream_chunk_builder(chunks)._hidden_params`` (LiteLLM builds the whole response
  from the chunks with the first chunk's hidden params: llmroute puts its cost there at the end);
  LiteLLM stamps it on its own last chunk only for text replies, not for tool calls.
- The route record (route, model, deployment, costs, the whole trace) is
  ``_hidden_params["llmroute"]`` of the response (of ``stream_chunk_builder(chunks)`` for a stream).
- Errors: LiteLLM's own exception for the status of :func:`llmroute.errors.http_status`
  (``litellm.RateLimitError``, ``ServiceUnavailableError``, ``BadRequestError``,
  ``ContextWindowExceededError``, ``Timeout``, ...), with the llmroute error as its ``__cause__``.
- Importing this module sets ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (unless set) before LiteLLM
  loads, so LiteLLM reads its shipped price map instead of downloading one at import time.
- The sync ``litellm.completion`` is not supported (the router's connections belong to its event
  loop): it raises ``NotImplementedError``.

Needs ``pip install 'llmroute[litellm]'``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import time

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse, ModelResponseStream

from ..errors import ContextWindowExceededError, LLMRouteError, http_status
from ._common import openai_finish, openai_tool_delta, openai_usage, resolve, route_info

if TYPE_CHECKING:
    from ..router import Router

__all__ = ["LLMRouteLiteLLM", "litellm_error", "register"]

PROVIDER = "llmroute"


def litellm_error(error: LLMRouteError, model: str) -> Exception:
    """LiteLLM's exception for an llmroute *error* (by :func:`~llmroute.errors.http_status`)."""
    status = http_status(error)
    message = str(error)
    kw: dict[str, Any] = {"message": message, "model": model, "llm_provider": PROVIDER}
    last = getattr(error, "last", None) or error
    if isinstance(last, ContextWindowExceededError):
        return litellm.ContextWindowExceededError(**kw)
    by_status: dict[int, Any] = {
        400: litellm.BadRequestError,
        401: litellm.AuthenticationError,
        403: litellm.PermissionDeniedError,
        404: litellm.NotFoundError,
        422: litellm.UnprocessableEntityError,
        429: litellm.RateLimitError,
        503: litellm.ServiceUnavailableError,
        504: litellm.Timeout,
    }
    cls = by_status.get(status)
    if cls is not None:
        return cls(**kw)
    return litellm.APIError(status_code=status, **kw)


def _call_kwargs(
    router: Router, model: str, messages: list[Any], params: dict[str, Any] | None, timeout: Any
) -> dict[str, Any]:
    params = params or {}
    name = model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model
    kw: dict[str, Any] = {"messages": messages, **resolve(router, name)}
    for key in ("tools", "tool_choice", "response_format", "temperature", "top_p"):
        if params.get(key) is not None:
            kw[key] = params[key]
    max_tokens = params.get("max_completion_tokens") or params.get("max_tokens")
    if max_tokens is not None:
        kw["max_tokens"] = max_tokens
    stop = params.get("stop")
    if stop:
        kw["stop"] = [stop] if isinstance(stop, str) else stop
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        kw["deadline_s"] = float(timeout)
    return kw


class LLMRouteLiteLLM(CustomLLM):
    """The ``llmroute/`` LiteLLM provider: routes completions through *router* (see the module docs)."""

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported: use ``litellm.acompletion`` (the router's connections belong to its event loop)."""
        raise NotImplementedError("llmroute is async: use litellm.acompletion")

    def streaming(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported: use ``litellm.acompletion(..., stream=True)``."""
        raise NotImplementedError("llmroute is async: use litellm.acompletion(..., stream=True)")

    async def acompletion(  # type: ignore[override]
        self,
        model: str,
        messages: list[Any],
        *args: Any,
        optional_params: dict[str, Any] | None = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> ModelResponse:
        """Route one completion; LiteLLM's ``ModelResponse`` with llmroute's cost and route."""
        try:
            reply = await self.router.complete(**_call_kwargs(self.router, model, messages, optional_params, timeout))
        except LLMRouteError as exc:
            raise litellm_error(exc, model) from exc
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [c.to_openai() for c in reply.tool_calls]
        response = ModelResponse(
            **({"id": reply.response_id} if reply.response_id else {}),
            created=int(time.time()),
            model=reply.provider_model,
            choices=[{"index": 0, "message": message, "finish_reason": openai_finish(reply.finish_reason)}],
            usage=openai_usage(reply.usage),
        )
        info = route_info(reply)
        response._hidden_params["response_cost"] = reply.cost_usd
        response._hidden_params["llmroute"] = info
        return response

    async def astreaming(  # type: ignore[override]
        self,
        model: str,
        messages: list[Any],
        *args: Any,
        optional_params: dict[str, Any] | None = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ModelResponseStream]:
        """Route one streamed completion as LiteLLM chunks; the last one has usage, cost and route."""
        stream = self.router.stream(**_call_kwargs(self.router, model, messages, optional_params, timeout))
        model = model if model.startswith(f"{PROVIDER}/") else f"{PROVIDER}/{model}"
        first: ModelResponseStream | None = None
        created = int(time.time())
        try:
            async for chunk in stream:
                if not chunk.text and not chunk.tool_calls:
                    continue
                delta: dict[str, Any] = {"content": chunk.text or None}
                if chunk.tool_calls:
                    delta["tool_calls"] = [openai_tool_delta(d) for d in chunk.tool_calls]
                out = ModelResponseStream(
                    model=model, created=created, choices=[{"index": 0, "delta": delta, "finish_reason": None}]
                )
                first = first or out
                yield out  # type: ignore[misc]
        except LLMRouteError as exc:
            raise litellm_error(exc, model) from exc
        finally:
            await stream.aclose()
        reply = stream.reply
        assert reply is not None
        info = route_info(reply)
        # LiteLLM builds the whole response from the chunks at the end, with the first chunk's hidden
        # params: the cost put there now is the cost it reports (instead of pricing "llmroute/<route>").
        for target in {id(c): c for c in (first,) if c is not None}.values():
            target._hidden_params["response_cost"] = reply.cost_usd
            target._hidden_params["llmroute"] = info
        last = ModelResponseStream(
            model=model,
            created=created,
            choices=[{"index": 0, "delta": {}, "finish_reason": openai_finish(reply.finish_reason)}],
            usage=openai_usage(reply.usage),
        )
        last._hidden_params["response_cost"] = reply.cost_usd
        last._hidden_params["llmroute"] = info
        last.provider_specific_fields = {"llmroute": info}
        yield last  # type: ignore[misc]


def register(router: Router) -> LLMRouteLiteLLM:
    """Make ``litellm.acompletion(model="llmroute/<route>")`` route through *router*.

    Registering again replaces the earlier router. Returns the handler.
    """
    handler = LLMRouteLiteLLM(router)
    litellm.custom_provider_map = [
        entry for entry in litellm.custom_provider_map if entry.get("provider") != PROVIDER
    ] + [{"provider": PROVIDER, "custom_handler": handler}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    return handler
