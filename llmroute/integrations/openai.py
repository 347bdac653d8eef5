"""The OpenAI SDK over llmroute: an HTTP transport that answers Chat Completions by routing.

::

    from llmroute.integrations.openai import openai_client

    client = openai_client(router)                       # an openai.AsyncOpenAI
    reply = await client.chat.completions.create(model="default", messages=[...])
    reply.llmroute["deployment"], reply.llmroute["cost_usd"]

:class:`LLMRouteTransport` is an ``AsyncBaseTransport`` of both ``httpx`` and ``httpx2``: put it
under any client of either package, and ``POST …/chat/completions`` (JSON or SSE, tools,
``response_format``) goes through ``router.complete`` / ``router.stream`` instead of the network;
nothing leaves the process but the router's own provider calls. ``GET …/models`` lists the
routes, models and aliases. Every framework that takes an ``AsyncOpenAI`` client (pydantic-ai's
``OpenAIChatModel``, the Agents SDK's ``OpenAIChatCompletionsModel``, LangChain's ``ChatOpenAI``,
LiteLLM's ``client=``) then routes unchanged.

- The request's ``model`` picks a route of that name, else a model of that name, else the
  default route; *aliases* map other names first (for frameworks that validate model names).
- The request's timeout (the SDK's ``timeout=``) bounds the routed call: its deadline is the
  smaller of the timeout's longest part and the route's ``deadline_s``. When it passes, the
  transport raises the package's ``ReadTimeout``, so the SDK raises its own timeout error; for a
  stream it bounds the whole stream.
- Every response carries ``x-should-retry: false``: llmroute has already retried and fallen back,
  so the SDK must not retry on top. :func:`openai_client` also sets ``max_retries=0``. Each also
  has a fresh ``x-request-id`` (which the SDK keeps as the response's request id).
- Errors answer with :func:`llmroute.errors.http_status` and an OpenAI-shaped error body, so the
  SDK raises its own class for that status (``RateLimitError``, ``BadRequestError``, ...).
- The route shows in the headers (``x-llmroute-route``, ``-model``, ``-deployment``, and
  ``-cost-usd`` for JSON replies) and in an extra body field, ``llmroute`` (see
  :func:`llmroute.integrations._common.route_info`: route, model, deployment, costs, the whole
  trace), which the SDK keeps on the parsed object (``completion.llmroute``). A stream ends with
  a ``choices: []`` chunk that carries it (and ``usage``, when ``stream_options.include_usage``).
- Fields llmroute does not map (``seed``, ``user``, ``parallel_tool_calls``, ``logprobs``, ...)
  are ignored: they do not carry across wire formats. ``n`` other than 1 is refused (400).
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from .._http import package_of
from ..errors import DeadlineExceededError, LLMRouteError, http_status
from ..execute import ReplyStream
from ..types import Chunk, Reply
from ._common import openai_finish, openai_tool_delta, openai_usage, resolve, route_info

if TYPE_CHECKING:
    import openai as _openai

    from ..router import Router

__all__ = ["LLMRouteTransport", "openai_client"]

#: The ``base_url`` :func:`openai_client` gives the SDK: the transport answers every host.
BASE_URL = "http://llmroute.invalid/v1"

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_exceeded", 503: "service_unavailable"}  # fmt: skip

try:  # the transport is an AsyncBaseTransport of each package that is installed
    import httpx2 as _httpx2

    _BASES: tuple[type, ...] = (httpx.AsyncBaseTransport, _httpx2.AsyncBaseTransport)
except ImportError:  # pragma: no cover - httpx2 needs Python 3.11+
    _BASES = (httpx.AsyncBaseTransport,)


class _Refused(Exception):
    """A request the transport answers with an error status before routing it."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


def _call_kwargs(body: Any) -> dict[str, Any]:
    """The ``router.complete`` keywords for an OpenAI Chat Completions request body."""
    if not isinstance(body, dict):
        raise _Refused(400, "the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refused(400, "messages must be a non-empty array", "messages")
    if body.get("n") not in (None, 1):
        raise _Refused(400, "llmroute answers one choice per request: n must be 1", "n")
    kw: dict[str, Any] = {"messages": messages}
    if body.get("tools"):
        kw["tools"] = body["tools"]
    if body.get("tool_choice") is not None:
        kw["tool_choice"] = body["tool_choice"]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        kw["max_tokens"] = max_tokens
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            kw[key] = body[key]
    stop = body.get("stop")
    if stop:
        kw["stop"] = [stop] if isinstance(stop, str) else stop
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
        kw["response_format"] = fmt
    return kw


def _deadline(router: Router, target: dict[str, str], request: Any) -> float | None:
    """The call's deadline: the smaller of the request's timeout and the route's own."""
    timeout = request.extensions.get("timeout") or {}
    parts = [v for v in timeout.values() if v is not None] if isinstance(timeout, Mapping) else []
    sdk = max(parts) if parts else None
    _, route = router._route(target.get("route"), target.get("model"))
    own = route.deadline_s
    if sdk is None or (own is not None and own < sdk):
        return own
    return sdk


def _completion_id(reply: Reply | None) -> str:
    return (reply.response_id if reply is not None else None) or f"chatcmpl-llmroute-{uuid.uuid4().hex[:24]}"


def _completion(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [c.to_openai() for c in reply.tool_calls]
    return {
        "id": _completion_id(reply),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.provider_model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": openai_finish(reply.finish_reason), "logprobs": None}
        ],
        "usage": openai_usage(reply.usage),
        "llmroute": route_info(reply),
    }


def _error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": kind}}


def _sse(data: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _headers(extra: Mapping[str, str], content_type: str) -> dict[str, str]:
    """Response headers: a fresh ``x-request-id`` (the SDK keeps it as ``_request_id``), no retries."""
    request_id = f"req_llmroute_{uuid.uuid4().hex}"
    return {"content-type": content_type, "x-should-retry": "false", "x-request-id": request_id, **extra}


class _Body:
    """An SSE response body over a routed stream; closing it closes the stream (connection,
    admission place and budget hold released at once)."""

    def __init__(self, events: AsyncIterator[bytes], stream: ReplyStream) -> None:
        self._events = events
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._events.aclose()  # type: ignore[attr-defined]
            finally:
                await self._stream.aclose()


_BODY_CLASSES: dict[str, type] = {}


def _body_class(package: str) -> type:
    """:class:`_Body` as an ``AsyncByteStream`` of *package* (its clients check the type)."""
    cls = _BODY_CLASSES.get(package)
    if cls is None:
        base = importlib.import_module(package).AsyncByteStream
        cls = _BODY_CLASSES[package] = type(f"_Body_{package}", (_Body, base), {})
    return cls


class LLMRouteTransport(*_BASES):  # type: ignore[misc]
    """An ``httpx`` and ``httpx2`` transport that answers OpenAI Chat Completions by routing them
    through *router* (see the module docs). *aliases* maps a requested model name to a route or
    model name. The router is the caller's to close."""

    def __init__(self, router: Router, *, aliases: Mapping[str, str] | None = None) -> None:
        self.router = router
        self.aliases = dict(aliases or {})

    async def handle_async_request(self, request: Any) -> Any:
        """Answer *request* (an ``httpx.Request`` or ``httpx2.Request``) with a response of its package."""
        module = importlib.import_module(package_of(request) or "httpx")
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/models"):
            return self._json(module, 200, self._models())
        if request.method != "POST" or not path.endswith("/chat/completions"):
            return self._json(module, 404, _error_body(404, f"llmroute answers POST …/chat/completions, not {path}"))
        try:
            body = json.loads(await request.aread() or b"null")
            kwargs = _call_kwargs(body)
        except ValueError as exc:
            return self._json(module, 400, _error_body(400, f"the request body is not JSON: {exc}"))
        except _Refused as exc:
            return self._json(module, exc.status, _error_body(exc.status, str(exc), exc.param))
        target = resolve(self.router, body.get("model"), self.aliases)
        deadline = _deadline(self.router, target, request)
        try:
            if body.get("stream"):
                return await self._stream(module, request, kwargs, target, deadline, body)
            reply = await self.router.complete(**kwargs, **target, deadline_s=deadline)
        except DeadlineExceededError as exc:
            raise module.ReadTimeout(f"llmroute: {exc}", request=request) from exc
        except LLMRouteError as exc:
            return self._failed(module, exc)
        headers = {**self._route_headers(reply), "x-llmroute-cost-usd": f"{reply.cost_usd:.10f}"}
        return self._json(module, 200, _completion(reply), headers)

    async def _stream(
        self,
        module: Any,
        request: Any,
        kwargs: dict[str, Any],
        target: dict[str, str],
        deadline: float | None,
        body: dict[str, Any],
    ) -> Any:
        stream = self.router.stream(**kwargs, **target, deadline_s=deadline)
        try:
            first = await stream.__anext__()
        except BaseException:
            await stream.aclose()
            raise
        chosen = stream.route.attempts[-1]
        headers = {
            "x-llmroute-route": stream.route.route,
            "x-llmroute-model": chosen.model,
            "x-llmroute-deployment": chosen.deployment,
        }
        options = body.get("stream_options")
        usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        events = self._events(stream, first, usage, request, module)
        response_stream = _body_class(module.__name__)(events, stream)
        return module.Response(200, headers=_headers(headers, "text/event-stream"), stream=response_stream)

    async def _events(
        self, stream: ReplyStream, first: Chunk, usage: bool, request: Any, module: Any
    ) -> AsyncIterator[bytes]:
        cid = _completion_id(None)
        created = int(time.time())
        model = first.response_model or stream.route.attempts[-1].provider_model

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": choices, **extra}  # fmt: skip
            return _sse(data)

        yield chunk({"role": "assistant", "content": ""})
        item: Chunk | None = first
        try:
            while item is not None:
                delta: dict[str, Any] = {}
                if item.text:
                    delta["content"] = item.text
                if item.tool_calls:
                    delta["tool_calls"] = [openai_tool_delta(d) for d in item.tool_calls]
                if delta or item.finish_reason is not None:
                    finish = None if item.finish_reason is None else openai_finish(item.finish_reason)
                    yield chunk(delta, finish)
                try:
                    item = await stream.__anext__()
                except StopAsyncIteration:
                    item = None
        except DeadlineExceededError as exc:
            raise module.ReadTimeout(f"llmroute: {exc}", request=request) from exc
        except LLMRouteError as exc:  # after the first token: the SDK raises APIError for an error event
            yield _sse(_error_body(http_status(exc), str(exc)))
            return
        reply = stream.reply
        assert reply is not None
        extra: dict[str, Any] = {"llmroute": route_info(reply)}
        if usage:
            extra["usage"] = openai_usage(reply.usage)
        yield chunk(None, **extra)
        yield b"data: [DONE]\n\n"

    def _models(self) -> dict[str, Any]:
        cfg = self.router.config
        names = [*cfg.routes, *cfg.models, *self.aliases]
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "llmroute"} for n in names]}

    @staticmethod
    def _route_headers(reply: Reply) -> dict[str, str]:
        return {
            "x-llmroute-route": reply.route.route,
            "x-llmroute-model": reply.model,
            "x-llmroute-deployment": reply.deployment,
        }

    def _failed(self, module: Any, exc: LLMRouteError) -> Any:
        status = http_status(exc)
        body = _error_body(status, str(exc))
        if status == 400 and "context window" in str(exc):
            body["error"]["code"] = "context_length_exceeded"
        return self._json(module, status, body, {"x-llmroute-error": type(exc).__name__})

    @staticmethod
    def _json(module: Any, status: int, data: Any, headers: Mapping[str, str] | None = None) -> Any:
        content = json.dumps(data, separators=(",", ":")).encode()
        return module.Response(status, headers=_headers(headers or {}, "application/json"), content=content)

    async def aclose(self) -> None:
        """Nothing to close: the router is the caller's."""


def openai_client(router: Router, *, aliases: Mapping[str, str] | None = None, **kwargs: Any) -> _openai.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` whose Chat Completions are routed by *router* (see the module docs).

    *kwargs* go to ``AsyncOpenAI`` (``timeout=``, ``default_headers=``, ...); ``api_key`` defaults
    to a placeholder (the router holds the real keys), ``base_url`` to a host that is never
    contacted, ``max_retries`` to 0 (llmroute retries). The HTTP client is the SDK's own default
    client class (``httpx2`` for openai 3.x, ``httpx`` before) over :class:`LLMRouteTransport`.
    """
    import openai

    kwargs.setdefault("api_key", "llmroute")
    kwargs.setdefault("base_url", BASE_URL)
    kwargs.setdefault("max_retries", 0)
    http_client = openai.DefaultAsyncHttpxClient(transport=LLMRouteTransport(router, aliases=aliases))
    return openai.AsyncOpenAI(http_client=http_client, **kwargs)
