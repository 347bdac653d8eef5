"""LangChain over llmroute: :class:`ChatLLMRoute`, a LangChain chat model that routes.

::

    from langchain.agents import create_agent
    from llmroute.integrations.langchain import ChatLLMRoute

    model = ChatLLMRoute(router=router, route="default")
    agent = create_agent(model, tools=[get_weather])
    state = await agent.ainvoke({"messages": [("user", "What is the weather in Paris?")]})
    state["messages"][-1].response_metadata["llmroute"]["deployment"]

It calls ``router.complete`` / ``router.stream`` directly (no HTTP in between): ``ainvoke``,
``astream`` (text and tool-call chunks; the last chunk carries usage and the route),
``bind_tools``, ``with_structured_output`` (``method="json_schema"`` when every model of the
route enforces a JSON schema, else ``"function_calling"``), ``usage_metadata``, and
``response_metadata["llmroute"]`` (route, model, deployment, costs, the whole trace). Its
``profile`` comes from the route's capabilities.

When every attempt fails it raises LangChain's own ``ModelError`` subclass for the failure
(``ModelRateLimitError``, ``ModelAPIError``, ``ModelTimeoutError``, ``ContextOverflowError``, ...,
chosen by :func:`llmroute.errors.http_status`), with the llmroute error as its ``__cause__``.
The router's connections belong to its event loop, so the model is async only: ``invoke`` and
``stream`` raise ``NotImplementedError``; use ``ainvoke`` / ``astream``.

Needs ``pip install 'llmroute[langchain]'``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core import exceptions as lc
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field

from ..errors import ContextWindowExceededError, LLMRouteError, ProviderConnectionError, http_status
from ..router import Router
from ..types import Reply, Usage
from ._common import openai_finish, resolve, route_info

__all__ = ["ChatLLMRoute", "langchain_error"]

_BY_STATUS: dict[int, type[lc.ModelError]] = {
    400: lc.ModelInvalidRequestError,
    401: lc.ModelAuthenticationError,
    403: lc.ModelPermissionDeniedError,
    404: lc.ModelNotFoundError,
    413: lc.ContextOverflowError,
    422: lc.ModelInvalidRequestError,
    429: lc.ModelRateLimitError,
    504: lc.ModelTimeoutError,
}


def langchain_error(error: LLMRouteError) -> lc.ModelError:
    """LangChain's ``ModelError`` subclass for an llmroute *error* (by :func:`~llmroute.errors.http_status`)."""
    last = error
    while getattr(last, "last", None) is not None:  # AllAttemptsFailedError: judged by its last error
        last = last.last  # type: ignore[attr-defined]
    status = http_status(error)
    cls: type[lc.ModelError]
    if isinstance(last, ContextWindowExceededError):
        cls = lc.ContextOverflowError
    elif isinstance(last, ProviderConnectionError):
        cls = lc.ModelConnectionError
    else:
        cls = _BY_STATUS.get(status, lc.ModelAPIError if status >= 500 else lc.ModelInvalidRequestError)
    return cls(str(error))


def _usage_metadata(usage: Usage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        input_token_details={"cache_read": usage.cached_input_tokens},
    )


def _metadata(reply: Reply) -> dict[str, Any]:
    return {
        "model_name": reply.provider_model,
        "model_provider": "llmroute",
        "finish_reason": openai_finish(reply.finish_reason),
        "id": reply.response_id,
        "llmroute": route_info(reply),
    }


def _tool_choice(choice: Any) -> Any:
    """A LangChain ``tool_choice`` as an OpenAI one."""
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in (None, "auto", "none") or isinstance(choice, Mapping):
        return choice
    if isinstance(choice, str):
        return {"type": "function", "function": {"name": choice}}
    raise ValueError(f"unsupported tool_choice {choice!r}")


class ChatLLMRoute(BaseChatModel):
    """A LangChain chat model that routes every call through *router* along *route* (a route or
    model name; default: the router's default route). See the module docs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Router = Field(exclude=True)
    #: A route or model name (``None``: the router's default route).
    route: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    #: Overall deadline per call, seconds (``None``: the route's).
    deadline_s: float | None = None

    def model_post_init(self, context: Any) -> None:
        """Declare the model's profile from the route's capabilities, unless one was given."""
        super().model_post_init(context)
        if self.profile is None:
            caps = self.router.capabilities(**resolve(self.router, self.route))
            self.profile = {
                "tool_calling": caps.tools,
                "tool_choice": caps.tools,
                "tool_call_streaming": caps.tools and caps.streaming,
                "structured_output": caps.json_schema,
                "image_inputs": caps.vision,
                "image_url_inputs": caps.vision,
                "text_inputs": True,
                "text_outputs": True,
            }

    @property
    def _llm_type(self) -> str:
        return "llmroute"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"route": self.route}

    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "messages": convert_to_openai_messages(messages),
            **resolve(self.router, self.route),
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "temperature": kwargs.pop("temperature", self.temperature),
            "deadline_s": kwargs.pop("deadline_s", self.deadline_s),
            "stop": stop,
        }
        for key in ("tools", "response_format", "top_p"):
            if kwargs.get(key) is not None:
                kw[key] = kwargs[key]
        if kwargs.get("tool_choice") is not None:
            kw["tool_choice"] = _tool_choice(kwargs["tool_choice"])
        return kw

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any) -> ChatResult:
        raise NotImplementedError(
            "ChatLLMRoute is async: use ainvoke/astream (the router's connections belong to its event loop)"
        )

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        try:
            reply = await self.router.complete(**self._request(messages, stop, kwargs))
        except LLMRouteError as exc:
            raise langchain_error(exc) from exc
        message = AIMessage(
            content=reply.text or "",
            tool_calls=[
                {"name": c.name, "args": json.loads(c.arguments or "{}"), "id": c.id, "type": "tool_call"}
                for c in reply.tool_calls
            ],
            usage_metadata=_usage_metadata(reply.usage),
            response_metadata=_metadata(reply),
            id=reply.response_id,
        )
        info = {"finish_reason": openai_finish(reply.finish_reason)}
        return ChatResult(generations=[ChatGeneration(message=message, generation_info=info)])

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream = self.router.stream(**self._request(messages, stop, kwargs))
        try:
            async for chunk in stream:
                if not chunk.text and not chunk.tool_calls:
                    continue
                message = AIMessageChunk(
                    content=chunk.text,
                    tool_call_chunks=[
                        {"name": d.name, "args": d.arguments, "id": d.id, "index": d.index, "type": "tool_call_chunk"}
                        for d in chunk.tool_calls
                    ],
                )
                if run_manager is not None and chunk.text:
                    await run_manager.on_llm_new_token(chunk.text, chunk=ChatGenerationChunk(message=message))
                yield ChatGenerationChunk(message=message)
        except LLMRouteError as exc:
            raise langchain_error(exc) from exc
        finally:
            await stream.aclose()
        reply = stream.reply
        assert reply is not None
        last = AIMessageChunk(
            content="",
            usage_metadata=_usage_metadata(reply.usage),
            response_metadata=_metadata(reply),
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last, generation_info={"finish_reason": openai_finish(reply.finish_reason)})

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Bind *tools* (LangChain tools, functions, pydantic models or OpenAI tool dicts) to the model."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["json_schema", "function_calling"] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, Any]:
        """A runnable whose output is *schema* (a pydantic model or a JSON schema dict).

        *method*: ``json_schema`` (the provider constrains the reply: ``response_format``) or
        ``function_calling`` (the model fills a tool); default: ``json_schema`` when every model of
        the route enforces a JSON schema (its capabilities), else ``function_calling``.
        """
        if method is None:
            method = "json_schema" if (self.profile or {}).get("structured_output") else "function_calling"
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        pydantic_schema = isinstance(schema, type) and is_basemodel_subclass(schema)
        json_schema = convert_to_json_schema(schema)
        name = json_schema.get("title") or "output"
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": json_schema, "strict": bool(strict)},
        }
        llm = self.bind(
            response_format=response_format,
            ls_structured_output_format={"kwargs": {"method": "json_schema"}, "schema": schema},
        )
        parser: Runnable[Any, Any] = (
            PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
            if pydantic_schema
            else JsonOutputParser()
        )
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")
