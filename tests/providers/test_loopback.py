"""Every adapter over real loopback sockets: plain, streaming, tools, usage, JSON mode, each error kind.

Each test runs once per wire format (OpenAI, Anthropic, Gemini) through a model-only route with a
single deployment, and once per anyio backend (asyncio, trio). What the router returns is checked
together with what the fake provider received on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import SECRET, make_config

import llmroute
from llmroute.providers.anthropic import JSON_INSTRUCTION
from llmroute.testing import FakeProvider, FakeReply, Fault, Fleet, RecordedRequest, _wire

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Api:
    """One wire format: its fake provider, the config model routed to it and the provider's model id."""

    name: str
    provider: str
    model: str
    provider_model: str

    @property
    def deployment(self) -> str:
        return f"{self.provider}/{self.provider_model}"


OPENAI = Api("openai", "oai", "small", "small-1")
ANTHROPIC = Api("anthropic", "claude", "claude", "claude-x")
GEMINI = Api("gemini", "gem", "gemini", "gemini-x")
APIS = [OPENAI, ANTHROPIC, GEMINI]

SYSTEM = "You are terse."
CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What is the capital of France?"},
]
#: The fleet counts input tokens as whitespace words plus 3 per message, whatever the wire format.
CONVERSATION_TOKENS = sum(len(m["content"].split()) + 3 for m in CONVERSATION)
QUESTION = [CONVERSATION[-1]]

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOOLS = [WEATHER_TOOL]
WEATHER_ARGS = {"city": "Paris", "unit": "celsius"}
TOOL_RESULT = "Sunny, 21 C"
PRICE = {"input": 1.0, "output": 2.0}  # make_config's price for the claude and gemini deployments


@pytest.fixture(params=APIS, ids=[a.name for a in APIS])
def api(request: pytest.FixtureRequest) -> Api:
    return request.param


def config(fleet: Fleet, *, attempts: int = 1, **overrides: Any) -> dict[str, Any]:
    """make_config with one attempt per deployment and one deployment per model ("small" -> oai only),
    so a failure surfaces as AllAttemptsFailedError whose only error is what the adapter mapped."""
    cfg = make_config(fleet, retry={"attempts": attempts}, **overrides)
    cfg["models"]["small"]["deployments"] = [
        {"provider": "oai", "model": "small-1", "price": {"input": 1.0, "output": 2.0}}
    ]
    return cfg


def router(cfg: dict[str, Any]) -> llmroute.Router:
    # The fleet is plain HTTP: a transport without a CA bundle saves ~50 ms of SSL setup per router
    # (the router still builds its own client, and timeouts travel per request).
    return llmroute.Router.from_dict(cfg, transport=httpx.AsyncHTTPTransport(verify=False))


def only_request(fleet: Fleet, api: Api) -> RecordedRequest:
    requests = fleet[api.provider].requests
    assert len(requests) == 1, [r.path for r in requests]
    return requests[0]


def expected_cost(usage: llmroute.Usage, cached_rate: float | None = None, write_rate: float | None = None) -> float:
    cached, written = usage.cached_input_tokens, usage.cache_write_input_tokens
    rate = PRICE["input"] if cached_rate is None else cached_rate
    wrate = PRICE["input"] if write_rate is None else write_rate
    plain = usage.input_tokens - cached - written
    return (plain * PRICE["input"] + cached * rate + written * wrate + usage.output_tokens * PRICE["output"]) / 1e6


async def collect(stream: llmroute.ReplyStream) -> list[llmroute.Chunk]:
    return [chunk async for chunk in stream]


async def reply_of(r: llmroute.Router, messages: Any, streamed: bool, **kwargs: Any) -> llmroute.Reply:
    """The reply of one call, through ``complete`` or through a fully read ``stream``."""
    if not streamed:
        return await r.complete(messages, **kwargs)
    stream = r.stream(messages, **kwargs)
    await collect(stream)
    assert stream.reply is not None
    return stream.reply


# ---------------------------------------------------------------------------- plain replies
async def test_plain_reply_usage_cost_and_wire_shape(fleet: Fleet, api: Api) -> None:
    async with router(config(fleet)) as r:
        reply = await r.complete(CONVERSATION, model=api.model)

    assert reply.text and reply.text.startswith("Echo: What is the capital of France?")
    assert reply.finish_reason == "stop"
    assert reply.tool_calls == ()
    assert (reply.model, reply.provider, reply.deployment) == (api.model, api.provider, api.deployment)
    assert reply.provider_model == api.provider_model
    assert reply.response_id
    # the fleet counts the translated conversation the same way on every wire format
    assert reply.usage.input_tokens == CONVERSATION_TOKENS
    assert reply.usage.output_tokens == len(reply.text.split()) == 12
    assert reply.usage.cached_input_tokens == reply.usage.cache_write_input_tokens == 0
    assert reply.cost_usd == pytest.approx(expected_cost(reply.usage))
    assert [a.outcome for a in reply.route.attempts] == ["ok"]
    assert reply.route.route == f"model:{api.model}"

    sent = only_request(fleet, api)
    body = sent.json
    assert sent.method == "POST" and sent.stream is False and sent.fault is None
    if api is OPENAI:
        assert sent.path == "/oai/v1/chat/completions"
        assert body["model"] == "small-1"
        assert body["messages"] == CONVERSATION
        assert "stream" not in body
    elif api is ANTHROPIC:
        assert sent.path == "/claude/v1/messages"
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert body["model"] == "claude-x"
        assert body["max_tokens"] == 4096
        assert body["system"] == SYSTEM
        assert body["messages"] == [
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "What is the capital of France?"},
        ]
        assert "stream" not in body
    else:
        assert sent.path == "/gem/v1beta/models/gemini-x:generateContent"
        assert sent.query == ""
        assert body["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
        assert body["contents"] == [
            {"role": "user", "parts": [{"text": "Hi there"}]},
            {"role": "model", "parts": [{"text": "Hello! How can I help?"}]},
            {"role": "user", "parts": [{"text": "What is the capital of France?"}]},
        ]
        assert "model" not in body


async def test_key_is_sent_the_providers_way(fleet: Fleet, api: Api) -> None:
    async with router(config(fleet)) as r:
        await r.complete(QUESTION, model=api.model)
    sent = only_request(fleet, api)
    key_headers = {h: v for h, v in sent.headers.items() if h in ("authorization", "x-api-key", "x-goog-api-key")}
    expected = {
        "openai": {"authorization": f"Bearer {SECRET}"},
        "anthropic": {"x-api-key": SECRET},
        "gemini": {"x-goog-api-key": SECRET},
    }[api.name]
    assert key_headers == expected
    assert SECRET not in sent.path and SECRET not in sent.query


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_wrong_key_is_an_authentication_error(fleet: Fleet, api: Api, streamed: bool) -> None:
    cfg = config(fleet)
    wrong = "sk-wrong-key-0000000000000000"
    cfg["providers"][api.provider]["api_key"] = wrong
    async with router(cfg) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            if streamed:
                await r.stream(QUESTION, model=api.model).text()
            else:
                await r.complete(QUESTION, model=api.model)
    (err,) = info.value.errors
    assert isinstance(err, llmroute.AuthenticationError)
    assert (err.provider, err.model, err.deployment) == (api.provider, api.provider_model, api.deployment)
    assert err.status == 401 and err.attempt == 1
    assert wrong not in str(info.value) and wrong not in repr(err)
    sent = only_request(fleet, api)
    assert SECRET not in json.dumps(sent.headers)
    assert any(v.endswith(wrong) for v in sent.headers.values())


# ---------------------------------------------------------------------------- streaming
async def test_stream_reassembles_the_same_reply(fleet: Fleet, api: Api) -> None:
    async with router(config(fleet)) as r:
        plain = await r.complete(CONVERSATION, model=api.model)
        stream = r.stream(CONVERSATION, model=api.model)
        chunks = await collect(stream)

    reply = stream.reply
    assert reply is not None
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1
    assert "".join(c.text for c in chunks) == reply.text == plain.text
    assert chunks[-1].finish_reason == "stop"
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].usage == reply.usage
    assert reply.finish_reason == "stop"
    assert reply.usage == plain.usage
    assert reply.usage.input_tokens == CONVERSATION_TOKENS and reply.usage.output_tokens > 0
    assert reply.cost_usd == pytest.approx(plain.cost_usd)
    assert (reply.provider, reply.deployment, reply.provider_model) == (
        api.provider,
        api.deployment,
        api.provider_model,
    )
    (attempt,) = stream.route.attempts
    assert attempt.outcome == "ok"
    assert attempt.ttft_s is not None and 0 < attempt.ttft_s <= attempt.duration_s

    sent = fleet[api.provider].requests[-1]
    assert sent.stream is True
    if api is OPENAI:
        assert sent.json["stream"] is True and sent.json["stream_options"] == {"include_usage": True}
        assert sent.json["messages"] == CONVERSATION
    elif api is ANTHROPIC:
        assert sent.json["stream"] is True and sent.json["system"] == SYSTEM
    else:
        assert sent.path == "/gem/v1beta/models/gemini-x:streamGenerateContent"
        assert sent.query == "alt=sse"
        assert sent.json["systemInstruction"] == {"parts": [{"text": SYSTEM}]}


# ---------------------------------------------------------------------------- tools
@pytest.fixture
def weather_call(fleet: Fleet, api: Api) -> Iterator[FakeProvider]:
    """The fake model answers every request with one get_weather call."""
    provider = fleet[api.provider]
    saved = provider.reply
    provider.reply = FakeReply(tool_calls=[("get_weather", WEATHER_ARGS)])
    try:
        yield provider
    finally:
        provider.reply = saved


def assert_weather_call(reply: llmroute.Reply) -> llmroute.ToolCall:
    assert not reply.text
    assert reply.finish_reason == "tool_calls"
    (call,) = reply.tool_calls
    assert call.name == "get_weather"
    assert call.id
    assert json.loads(call.arguments) == WEATHER_ARGS
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    return call


async def test_tool_call(fleet: Fleet, api: Api, weather_call: FakeProvider) -> None:
    async with router(config(fleet)) as r:
        reply = await r.complete(QUESTION, model=api.model, tools=TOOLS)
    assert_weather_call(reply)

    body = only_request(fleet, api).json
    fn = WEATHER_TOOL["function"]
    if api is OPENAI:
        assert body["tools"] == TOOLS
    elif api is ANTHROPIC:
        assert body["tools"] == [
            {"name": fn["name"], "description": fn["description"], "input_schema": fn["parameters"]}
        ]
    else:
        assert body["tools"] == [
            {
                "functionDeclarations": [
                    {"name": fn["name"], "description": fn["description"], "parametersJsonSchema": fn["parameters"]}
                ]
            }
        ]


async def test_streamed_tool_call_assembles_the_same_call(fleet: Fleet, api: Api, weather_call: FakeProvider) -> None:
    async with router(config(fleet)) as r:
        plain = await r.complete(QUESTION, model=api.model, tools=TOOLS)
        stream = r.stream(QUESTION, model=api.model, tools=TOOLS)
        chunks = await collect(stream)
    assert stream.reply is not None
    call = assert_weather_call(stream.reply)
    (plain_call,) = plain.tool_calls
    assert call.name == plain_call.name
    assert json.loads(call.arguments) == json.loads(plain_call.arguments)
    assert any(c.tool_calls for c in chunks)
    assert all(not c.text for c in chunks)
    assert chunks[-1].finish_reason == "tool_calls"
    assert stream.reply.usage == plain.usage


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_tool_result_turn_gets_a_text_reply(
    fleet: Fleet, api: Api, weather_call: FakeProvider, streamed: bool
) -> None:
    async with router(config(fleet)) as r:
        first = await reply_of(r, QUESTION, streamed, model=api.model, tools=TOOLS)
        call = assert_weather_call(first)
        weather_call.reply = None  # back to the default: answer a tool result with text
        follow_up = [
            *QUESTION,
            first.to_message(),
            {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
        ]
        reply = await r.complete(follow_up, model=api.model, tools=TOOLS)

    assert reply.finish_reason == "stop"
    assert reply.tool_calls == ()
    assert reply.text and reply.text.startswith("Tool result received:") and TOOL_RESULT in reply.text

    body = fleet[api.provider].requests[-1].json
    if api is OPENAI:
        assert body["messages"][-2] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.arguments}}
            ],
        }
        assert body["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT}
    elif api is ANTHROPIC:
        assert body["messages"][-2] == {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": WEATHER_ARGS}],
        }
        assert body["messages"][-1] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": TOOL_RESULT}],
        }
    else:
        assert body["contents"][-2] == {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}}],
        }
        assert body["contents"][-1] == {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": TOOL_RESULT}}}],
        }


# ---------------------------------------------------------------------------- usage: cached input
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_cached_input_tokens_are_billed_at_the_cached_rate(fleet: Fleet, api: Api, streamed: bool) -> None:
    cfg = config(fleet)
    (dep,) = cfg["models"][api.model]["deployments"]
    dep["price"] = {"input": 1, "output": 2, "cached_input": 0.1}
    provider = fleet[api.provider]
    saved = provider.cached_input_tokens
    provider.cached_input_tokens = 10
    try:
        async with router(cfg) as r:
            reply = await reply_of(r, CONVERSATION, streamed, model=api.model)
    finally:
        provider.cached_input_tokens = saved

    assert reply.usage.cached_input_tokens == 10
    assert reply.usage.input_tokens == CONVERSATION_TOKENS  # cached tokens are part of the input
    assert reply.usage.output_tokens == 12
    assert reply.cost_usd == pytest.approx(expected_cost(reply.usage, cached_rate=0.1))
    assert reply.cost_usd < expected_cost(reply.usage)
    assert reply.route.attempts[0].cost_usd == reply.cost_usd


# ---------------------------------------------------------------------------- usage: cache writes
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_cache_writes_are_billed_at_the_cache_write_rate(fleet: Fleet, api: Api, streamed: bool) -> None:
    cfg = config(fleet)
    (dep,) = cfg["models"][api.model]["deployments"]
    dep["price"] = {"input": 1, "output": 2, "cached_input": 0.1, "cache_write": 1.25}
    provider = fleet[api.provider]
    saved = provider.cached_input_tokens, provider.cache_write_input_tokens
    provider.cached_input_tokens, provider.cache_write_input_tokens = 4, 6
    budget = llmroute.MemoryBudget(1.0)
    try:
        async with llmroute.Router.from_dict(cfg, transport=httpx.AsyncHTTPTransport(verify=False), budget=budget) as r:
            reply = await reply_of(r, CONVERSATION, streamed, model=api.model)
    finally:
        provider.cached_input_tokens, provider.cache_write_input_tokens = saved

    # only Anthropic reports cache writes; the fleet's OpenAI and Gemini report the reads alone
    written = 6 if api is ANTHROPIC else 0
    assert reply.usage == llmroute.Usage(CONVERSATION_TOKENS, 12, 4, written)
    plain = CONVERSATION_TOKENS - 4 - written
    expected = (plain * 1 + 4 * 0.1 + written * 1.25 + 12 * 2) / 1e6
    assert reply.cost_usd == pytest.approx(expected, rel=1e-12)
    assert reply.cost_usd == pytest.approx(expected_cost(reply.usage, cached_rate=0.1, write_rate=1.25))
    if api is ANTHROPIC:
        assert reply.cost_usd > expected_cost(reply.usage, cached_rate=0.1)  # what writes at the input rate gave
    assert reply.route.attempts[0].cost_usd == reply.cost_usd
    assert budget.spent_usd == pytest.approx(reply.cost_usd) and budget.reserved_usd == 0


# ---------------------------------------------------------------------------- JSON mode
async def test_json_mode(fleet: Fleet, api: Api) -> None:
    async with router(config(fleet)) as r:
        reply = await r.complete(CONVERSATION, model=api.model, response_format={"type": "json_object"})
    body = only_request(fleet, api).json
    assert reply.finish_reason == "stop" and reply.text
    if api is ANTHROPIC:
        # no JSON flag on the wire: the instruction is appended to the top-level system prompt
        assert body["system"] == f"{SYSTEM}\n\n{JSON_INSTRUCTION}"
        assert "response_format" not in body
        return
    assert json.loads(reply.text) == {"reply": "Echo: What is the capital of France?", "ok": True}
    if api is OPENAI:
        assert body["response_format"] == {"type": "json_object"}
    else:
        # llmroute always sends an output cap (what a budget reserves for): the default, here
        assert body["generationConfig"] == {"responseMimeType": "application/json", "maxOutputTokens": 4096}
        assert body["systemInstruction"] == {"parts": [{"text": SYSTEM}]}


# ---------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class ErrorCase:
    fault: Callable[[], Fault]
    error: type[llmroute.ProviderError]
    #: Expected HTTP status per api name (``None``: no response status, e.g. transport errors).
    status: dict[str, int | None]
    timeout: bool = False


def _same(status: int | None) -> dict[str, int | None]:
    return {a.name: status for a in APIS}


ERRORS: dict[str, ErrorCase] = {
    "rate_limit": ErrorCase(lambda: Fault.rate_limit(retry_after=1.5), llmroute.RateLimitError, _same(429)),
    "server_error": ErrorCase(lambda: Fault.server_error(500), llmroute.ServerError, _same(500)),
    "overloaded": ErrorCase(Fault.overloaded, llmroute.ServerError, {"openai": 503, "anthropic": 529, "gemini": 503}),
    "bad_request": ErrorCase(Fault.bad_request, llmroute.BadRequestError, _same(400)),
    "context_overflow": ErrorCase(Fault.context_overflow, llmroute.ContextWindowExceededError, _same(400)),
    "auth": ErrorCase(Fault.auth, llmroute.AuthenticationError, _same(401)),
    "stall": ErrorCase(lambda: Fault.stall(2.0), llmroute.ProviderTimeoutError, _same(None), timeout=True),
    "reset": ErrorCase(Fault.reset, llmroute.ProviderConnectionError, _same(None)),
    "malformed": ErrorCase(Fault.malformed, llmroute.ResponseError, _same(None)),
    "dropped": ErrorCase(lambda: Fault.drop_stream(after_tokens=0), llmroute.ResponseError, _same(None)),
    "content_filter": ErrorCase(Fault.content_filter, llmroute.ContentFilteredError, _same(None)),
}


def _error_params() -> list[Any]:
    params = []
    for kind in ERRORS:
        for a in APIS:
            for streamed in (False, True):
                marks: list[Any] = []
                mode = "stream" if streamed else "complete"
                params.append(pytest.param(kind, a, streamed, marks=marks, id=f"{kind}-{a.name}-{mode}"))
    return params


@pytest.mark.parametrize(("kind", "api", "streamed"), _error_params())
async def test_error_kind_is_mapped(fleet: Fleet, kind: str, api: Api, streamed: bool) -> None:
    """One attempt on one deployment: the only error is the adapter's typed, fully-named error.

    For a stream, a malformed fault is a malformed SSE event and a dropped stream is cut before the
    first token; for a plain call they are a non-JSON body and a body cut in half."""
    case = ERRORS[kind]
    cfg = config(fleet)
    if case.timeout:
        cfg["providers"][api.provider]["timeout"] = {"connect_s": 1, "read_s": 0.3}
    fleet[api.provider].enqueue(case.fault())
    async with router(cfg) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            if streamed:
                stream = r.stream(QUESTION, model=api.model)
                await collect(stream)
            else:
                await r.complete(QUESTION, model=api.model)

    failed = info.value
    assert failed.route == f"model:{api.model}"
    (err,) = failed.errors
    assert type(err) is case.error, repr(err)
    assert (err.provider, err.model, err.deployment) == (api.provider, api.provider_model, api.deployment)
    assert err.status == case.status[api.name]
    assert err.attempt == 1
    assert f"{api.provider}/{api.provider_model}" in str(err)
    if isinstance(err, llmroute.RateLimitError):
        assert err.retry_after == pytest.approx(1.5)
    sent = only_request(fleet, api)
    assert sent.stream is streamed
    assert sent.fault == case.fault().name


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        ("rate_limit", llmroute.RateLimitError, 429),
        ("context_overflow", llmroute.ContextWindowExceededError, 400),
    ],
    ids=["rate_limit", "context_overflow"],
)
@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
async def test_error_event_inside_a_stream_is_mapped(
    fleet: Fleet, api: Api, error: Any, expected: type[llmroute.ProviderError], status: int
) -> None:
    fleet[api.provider].enqueue(Fault.stream_error(after_tokens=0, error=error))
    async with router(config(fleet)) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            await collect(r.stream(QUESTION, model=api.model))
    (err,) = info.value.errors
    assert type(err) is expected, repr(err)
    assert (err.provider, err.model, err.status) == (api.provider, api.provider_model, status)


@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
async def test_tokens_before_an_error_event_in_the_same_read_reach_the_caller(fleet: Fleet, api: Api) -> None:
    # The fake writes the first two tokens and the error event in one go (Gemini with \r\n\r\n
    # separators): the tokens are delivered, then the error is raised.
    fleet[api.provider].enqueue(Fault.stream_error(after_tokens=2, error="overloaded"))
    texts: list[str] = []
    async with router(config(fleet)) as r:
        with pytest.raises(llmroute.ProviderError) as info:
            async for chunk in r.stream(QUESTION, model=api.model):
                texts.append(chunk.text)
    assert "".join(texts) == "Echo: What"
    assert isinstance(info.value, llmroute.ServerError), repr(info.value)


async def test_anthropic_input_plus_max_tokens_over_the_limit_is_a_context_error(fleet: Fleet) -> None:
    # Anthropic's second context error ("input length and `max_tokens` exceed context limit") is a
    # ContextWindowExceededError: the route moves on to a model that may fit it.
    message = _wire.context_limit_message(178959, 64000, 200000)
    fleet["claude"].enqueue(Fault.status(400, message, error="bad_request"))
    cfg = make_config(fleet, retry={"attempts": 1})
    cfg["routes"]["claude-first"] = {"models": ["claude", "gemini"]}
    async with router(cfg) as r:
        reply = await r.complete(QUESTION, route="claude-first")
    assert reply.provider == "gem"
    failed = reply.route.attempts[0]
    assert (failed.error_type, failed.status) == ("ContextWindowExceededError", 400)
    assert fleet["claude"].requests[0].fault == "bad_request"


#: An OpenAI strict-mode tool: its JSON Schema has what Google's OpenAPI subset does not take.
STRICT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "strict": True,
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit", None]},
                "kind": {"const": "current"},
            },
            "required": ["city", "unit", "kind"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_gemini_takes_json_schema_tools_and_response_formats(fleet: Fleet, streamed: bool) -> None:
    # The fake Gemini answers 400 "Unknown name \"additionalProperties\" ..." for JSON Schema in
    # `parameters` / `responseSchema`, as the real API does; llmroute sends parametersJsonSchema and
    # responseJsonSchema, which take JSON Schema.
    schema = STRICT_TOOL["function"]["parameters"]
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}}
    async with router(config(fleet)) as r:
        called = await reply_of(r, QUESTION, streamed, model=GEMINI.model, tools=[STRICT_TOOL])
        shaped = await reply_of(r, QUESTION, streamed, model=GEMINI.model, response_format=fmt)
    assert [c.name for c in called.tool_calls] == ["get_weather"]
    assert shaped.text and json.loads(shaped.text)["ok"] is True
    first, second = (q.json for q in fleet["gem"].requests)
    (decl,) = first["tools"][0]["functionDeclarations"]
    assert decl["parametersJsonSchema"] == schema and "parameters" not in decl
    assert second["generationConfig"]["responseJsonSchema"] == schema


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("variant", ["thinking", "redacted", "citations"])
async def test_thinking_models_bill_thoughts_as_output_and_keep_them_out_of_the_text(
    fleet: Fleet, api: Api, streamed: bool, variant: str
) -> None:
    provider = fleet[api.provider]
    provider.thinking = "First I consider the question then I answer"  # 8 tokens
    provider.redacted_thinking, provider.citations = variant == "redacted", variant == "citations"
    extra = {
        "openai": {},
        "anthropic": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        "gemini": {"generationConfig": {"thinkingConfig": {"includeThoughts": True}}},
    }[api.name]
    try:
        async with router(config(fleet)) as r:
            reply = await reply_of(r, QUESTION, streamed, model=api.model, extra_body=extra)
    finally:
        provider.thinking, provider.redacted_thinking, provider.citations = None, False, False
    assert reply.text and reply.text.startswith("Echo: What is the capital") and "consider" not in reply.text
    assert reply.usage.output_tokens == 12 + 8
    assert reply.tool_calls == ()


async def test_openai_429_without_retry_after_waits_what_the_message_says(fleet: Fleet, vsleep: Any) -> None:
    fleet["oai"].enqueue(Fault.rate_limit(retry_after=1.612, header=False))
    cfg = config(fleet, attempts=2)
    async with llmroute.Router.from_dict(cfg, sleep=vsleep, transport=httpx.AsyncHTTPTransport(verify=False)) as r:
        reply = await r.complete(QUESTION, model=OPENAI.model)
    assert vsleep.calls == [pytest.approx(1.612)]
    first, second = reply.route.attempts
    assert (first.error_type, first.wait_s, second.outcome) == ("RateLimitError", pytest.approx(1.612), "ok")
