"""Pure unit tests of the Anthropic Messages adapter: no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _streams import feed_stream, random_sizes
from pydantic import SecretStr

from llmroute.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextWindowExceededError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    ResponseError,
    ServerError,
)
from llmroute.providers import get_adapter
from llmroute.providers.anthropic import DEFAULT_MAX_TOKENS, JSON_INSTRUCTION, AnthropicAdapter
from llmroute.providers.base import Target
from llmroute.types import ChatRequest, Chunk, ToolCall, ToolCallDelta, Usage

KEY = "sk-ant-api03-SECRET-KEY-do-not-leak"
TARGET = Target(
    provider="anthropic",
    api="anthropic",
    base_url="https://api.anthropic.com/v1",
    model="claude-sonnet-4-5-20250929",
    deployment="claude-main",
    api_key=SecretStr(KEY),
    headers={"Anthropic-Beta": SecretStr("prompt-caching-2024-07-31")},
)
ADAPTER = AnthropicAdapter()
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def body_of(request: ChatRequest, *, stream: bool = False, target: Target = TARGET) -> dict[str, Any]:
    return json.loads(ADAPTER.build_request(request, target, stream=stream).body)


# --------------------------------------------------------------------------- build_request


def test_registry_returns_adapter() -> None:
    assert get_adapter("anthropic").api == "anthropic"


def test_url_headers_and_defaults() -> None:
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}]), TARGET, stream=False)
    assert req.method == "POST"
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    body = json.loads(req.body)
    assert body == {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_api_version_no_key_and_trailing_slash() -> None:
    target = Target("p", "anthropic", "http://proxy/v1/", "m", "d", api_version="2024-01-01")
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}]), target, stream=False)
    assert req.url == "http://proxy/v1/messages"
    assert req.headers["anthropic-version"] == "2024-01-01"
    assert "x-api-key" not in req.headers


def test_key_not_in_repr() -> None:
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}]), TARGET, stream=True)
    assert KEY not in repr(req)
    assert KEY not in str(req)


def test_system_messages_all_in_order() -> None:
    body = body_of(
        ChatRequest(
            [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
            ]
        )
    )
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "Hi"}]


def test_system_with_cache_control_stays_blocks() -> None:
    cc = {"type": "ephemeral"}
    body = body_of(
        ChatRequest(
            [
                {"role": "system", "content": [{"type": "text", "text": "Long context", "cache_control": cc}]},
                {"role": "user", "content": "Hi"},
            ]
        )
    )
    assert body["system"] == [{"type": "text", "text": "Long context", "cache_control": cc}]


def test_sampling_stop_and_max_tokens() -> None:
    body = body_of(
        ChatRequest(
            [{"role": "user", "content": "Hi"}],
            max_tokens=64,
            temperature=0.2,
            top_p=0.9,
            stop=["\n\nHuman:", "END"],
            extra_body={"metadata": {"user_id": "u-1"}, "top_k": 5},
        ),
        stream=True,
    )
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["\n\nHuman:", "END"]
    assert "stop" not in body
    assert body["stream"] is True
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["top_k"] == 5


def test_stop_as_single_string() -> None:
    assert body_of(ChatRequest([{"role": "user", "content": "Hi"}], stop="END"))["stop_sequences"] == ["END"]


def test_consecutive_same_role_merged() -> None:
    body = body_of(
        ChatRequest(
            [
                {"role": "user", "content": "First"},
                {"role": "user", "content": [{"type": "text", "text": "Second"}]},
                {"role": "assistant", "content": "A1"},
                {"role": "assistant", "content": "A2"},
                {"role": "user", "content": "Third"},
            ]
        )
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "First"}, {"type": "text", "text": "Second"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A1"}, {"type": "text", "text": "A2"}]},
        {"role": "user", "content": "Third"},
    ]


def test_empty_messages_are_dropped_and_turns_still_alternate() -> None:
    body = body_of(
        ChatRequest(
            [
                {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "Q2"},
            ]
        )
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Q1"}, {"type": "text", "text": "Q2"}]}
    ]


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "now"}},
]


def test_tools_and_tool_choice() -> None:
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    body = body_of(ChatRequest(msgs, tools=TOOLS, tool_choice="auto"))
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": TOOLS[0]["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert body_of(ChatRequest(msgs, tools=TOOLS, tool_choice="required"))["tool_choice"] == {"type": "any"}
    assert body_of(ChatRequest(msgs, tools=TOOLS, tool_choice="none"))["tool_choice"] == {"type": "none"}
    named = {"type": "function", "function": {"name": "now"}}
    assert body_of(ChatRequest(msgs, tools=TOOLS, tool_choice=named))["tool_choice"] == {"type": "tool", "name": "now"}
    assert "tool_choice" not in body_of(ChatRequest(msgs, tools=TOOLS))
    with pytest.raises(InvalidRequestError):
        body_of(ChatRequest(msgs, tools=TOOLS, tool_choice="sometimes"))
    with pytest.raises(InvalidRequestError):
        body_of(ChatRequest(msgs, tools=[{"type": "code_interpreter"}]))


def test_tool_round_trip() -> None:
    messages = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris and London?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "toolu_01B", "type": "function", "function": {"name": "now", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": '{"temp_c": 18}'},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "user", "content": "Thanks, and summarise."},
    ]
    body = body_of(ChatRequest(messages, tools=TOOLS))
    assert body["system"] == "Use tools."
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and London?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": '{"temp_c": 18}'},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": "12:00"}]},
                {"type": "text", "text": "Thanks, and summarise."},
            ],
        },
    ]


def test_assistant_tool_calls_with_null_content() -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    body = body_of(
        ChatRequest(
            [
                {"role": "user", "content": "time?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "12:00"},
            ]
        )
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12:00"}],
    }


def test_invalid_tool_arguments_name_the_call() -> None:
    call = {"id": "toolu_bad", "type": "function", "function": {"name": "get_weather", "arguments": "{city: Paris"}}
    with pytest.raises(InvalidRequestError, match="toolu_bad"):
        body_of(ChatRequest([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]))
    call["function"]["arguments"] = "[1, 2]"
    with pytest.raises(InvalidRequestError, match="object"):
        body_of(ChatRequest([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]))


def test_bad_messages_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="role"):
        body_of(ChatRequest([{"role": "robot", "content": "x"}]))
    with pytest.raises(InvalidRequestError, match="tool_call_id"):
        body_of(ChatRequest([{"role": "tool", "content": "x"}]))
    with pytest.raises(InvalidRequestError, match="input_audio"):
        body_of(ChatRequest([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]))
    with pytest.raises(InvalidRequestError):
        body_of(ChatRequest([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:xx"}}]}]))


def test_images() -> None:
    body = body_of(
        ChatRequest(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare these."},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
                    ],
                }
            ]
        )
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_json_mode_appends_instruction() -> None:
    msgs = [{"role": "system", "content": "You extract data."}, {"role": "user", "content": "Alice is 30."}]
    body = body_of(ChatRequest(msgs, response_format={"type": "json_object"}))
    assert body["system"] == "You extract data.\n\n" + JSON_INSTRUCTION
    assert "response_format" not in body
    body = body_of(ChatRequest(msgs[1:], response_format={"type": "json_object"}))
    assert body["system"] == JSON_INSTRUCTION
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    body = body_of(ChatRequest(msgs, response_format=fmt))
    assert body["system"].startswith("You extract data.\n\n" + JSON_INSTRUCTION)
    assert json.dumps(schema) in body["system"]
    assert "system" not in body_of(ChatRequest(msgs[1:], response_format={"type": "text"}))


# --------------------------------------------------------------------------- parse_response


def message(**over: Any) -> bytes:
    data: dict[str, Any] = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6},
    }
    data.update(over)
    return json.dumps(data).encode()


def test_parse_text() -> None:
    c = ADAPTER.parse_response(message(), TARGET)
    assert c.text == "Hello!"
    assert c.tool_calls == ()
    assert c.finish_reason == "stop"
    assert c.usage == Usage(12, 6, 0)
    assert c.response_model == "claude-sonnet-4-5-20250929"
    assert c.response_id == "msg_01XFDUDYJgAACzvnptvVoYEL"


def test_parse_tool_use_and_thinking() -> None:
    content = [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQB..."},
        {"type": "text", "text": "I'll check "},
        {"type": "text", "text": "the weather."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "now", "input": {}},
    ]
    c = ADAPTER.parse_response(message(content=content, stop_reason="tool_use"), TARGET)
    assert c.text == "I'll check the weather."
    assert c.tool_calls == (
        ToolCall("toolu_01A", "get_weather", '{"city": "Paris", "unit": "c"}'),
        ToolCall("toolu_01B", "now", "{}"),
    )
    assert json.loads(c.tool_calls[0].arguments) == {"city": "Paris", "unit": "c"}
    assert c.finish_reason == "tool_calls"


def test_parse_only_tool_use_has_no_text() -> None:
    content = [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}]
    assert ADAPTER.parse_response(message(content=content, stop_reason="tool_use"), TARGET).text is None


def test_parse_usage_with_cache() -> None:
    usage = {
        "input_tokens": 50,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 2000,
        "output_tokens": 30,
    }
    c = ADAPTER.parse_response(message(usage=usage), TARGET)
    assert c.usage == Usage(3050, 30, 2000, 1000)
    assert c.usage.cached_input_tokens == 2000 and c.usage.cache_write_input_tokens == 1000
    assert c.usage.cached_input_tokens + c.usage.cache_write_input_tokens <= c.usage.input_tokens


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # a first call that writes the cache: the write is input, and reported apart
        ({"input_tokens": 20, "cache_creation_input_tokens": 1500, "output_tokens": 7}, Usage(1520, 7, 0, 1500)),
        # null or absent cache fields count as zero
        (
            {
                "input_tokens": 20,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": None,
                "output_tokens": 7,
            },
            Usage(20, 7, 0, 0),
        ),
        ({"input_tokens": 20, "output_tokens": 7}, Usage(20, 7)),
        # the breakdown by TTL does not change the total Anthropic reports in cache_creation_input_tokens
        (
            {
                "input_tokens": 3,
                "cache_creation_input_tokens": 400,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 9,
            },
            Usage(403, 9, 0, 400),
        ),
    ],
)
def test_parse_usage_cache_writes(usage: dict[str, Any], expected: Usage) -> None:
    assert ADAPTER.parse_response(message(usage=usage), TARGET).usage == expected


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "other"),
        ("model_context_window_exceeded", "other"),
        (None, None),
    ],
)
def test_finish_reasons(stop: str | None, finish: str | None) -> None:
    assert ADAPTER.parse_response(message(stop_reason=stop), TARGET).finish_reason == finish


def test_refusal() -> None:
    with pytest.raises(ContentFilteredError):
        ADAPTER.parse_response(message(content=[], stop_reason="refusal"), TARGET)
    c = ADAPTER.parse_response(message(stop_reason="refusal"), TARGET)
    assert c.finish_reason == "content_filter"
    assert c.text == "Hello!"


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"type": "message"}', b'{"content": [{"type": "text", "text": 3}]}']
)
def test_malformed_response(body: bytes) -> None:
    with pytest.raises(ResponseError) as info:
        ADAPTER.parse_response(body, TARGET)
    assert info.value.provider == "anthropic"


def test_error_object_in_200_body() -> None:
    body = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).encode()
    with pytest.raises(ServerError):
        ADAPTER.parse_response(body, TARGET)


# --------------------------------------------------------------------------- parse_error


def err(kind: str, msg: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": msg}, "request_id": "req_011"}).encode()


def test_parse_error_statuses() -> None:
    e = ADAPTER.parse_error(400, {}, err("invalid_request_error", "messages: field required"), TARGET)
    assert type(e) is BadRequestError and e.status == 400 and "field required" in e.message
    assert isinstance(
        ADAPTER.parse_error(401, {}, err("authentication_error", "invalid x-api-key"), TARGET), AuthenticationError
    )
    assert isinstance(ADAPTER.parse_error(403, {}, err("permission_error", "no"), TARGET), AuthenticationError)
    e = ADAPTER.parse_error(500, {"request-id": "req_9"}, err("api_error", "Internal server error"), TARGET)
    assert isinstance(e, ServerError) and e.retryable and e.request_id == "req_9"
    e = ADAPTER.parse_error(529, {}, err("overloaded_error", "Overloaded"), TARGET)
    assert isinstance(e, ServerError) and e.status == 529 and e.message == "Overloaded"


def test_parse_error_rate_limit_retry_after() -> None:
    headers = {"retry-after": "17", "anthropic-ratelimit-requests-remaining": "0"}
    e = ADAPTER.parse_error(429, headers, err("rate_limit_error", "Number of request tokens has exceeded"), TARGET)
    assert isinstance(e, RateLimitError)
    assert e.retry_after == 17.0
    assert e.provider == "anthropic" and e.model == TARGET.model and e.deployment == "claude-main"


def test_parse_error_context_window() -> None:
    body = err("invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum")
    e = ADAPTER.parse_error(400, {}, body, TARGET)
    assert isinstance(e, ContextWindowExceededError)
    e = ADAPTER.parse_error(413, {}, err("request_too_large", "Request exceeds the maximum allowed size"), TARGET)
    assert isinstance(e, ContextWindowExceededError)


def test_parse_error_prompt_plus_max_tokens_over_the_limit_is_a_context_error() -> None:
    # The prompt fits but the prompt plus max_tokens does not: still a context-window error (a model
    # with a larger window, or a smaller max_tokens, can take it), not a plain bad request.
    message = (
        "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, "
        "decrease input length or `max_tokens` and try again"
    )
    e = ADAPTER.parse_error(400, {}, err("invalid_request_error", message), TARGET)
    assert type(e) is ContextWindowExceededError and e.status == 400 and e.message == message


def test_parse_error_non_json_body() -> None:
    e = ADAPTER.parse_error(502, {}, b"<html>Bad Gateway</html>", TARGET)
    assert isinstance(e, ServerError) and "Bad Gateway" in e.message


def test_key_never_in_errors() -> None:
    errors: list[BaseException] = [
        ADAPTER.parse_error(status, {}, err("x", "bad"), TARGET) for status in (400, 401, 429, 500, 529)
    ]
    for bad in (b"nope", b"{}"):
        try:
            ADAPTER.parse_response(bad, TARGET)
        except ProviderError as exc:
            errors.append(exc)
    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in (getattr(exc, "body", "") or "")


# --------------------------------------------------------------------------- streaming


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 472,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 2000,
                "output_tokens": 2,
            },
        },
    },
)
TEXT_TOOL_STREAM = sse(
    START,
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay"}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", checking – ☀️ weather"}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        },
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
        },
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'ris"}'}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_02", "name": "now", "input": {}},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)


def run(data: bytes, sizes: list[int] | None = None) -> list[Chunk]:
    return feed_stream(ADAPTER, TARGET, data, sizes)


def test_stream_text_and_tools() -> None:
    chunks = run(TEXT_TOOL_STREAM)
    assert "".join(c.text for c in chunks) == "Okay, checking – ☀️ weather"
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas == [
        ToolCallDelta(1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", ""),
        ToolCallDelta(1, None, None, '{"city": "Pa'),
        ToolCallDelta(1, None, None, 'ris"}'),
        ToolCallDelta(2, "toolu_02", "now", ""),
        ToolCallDelta(2, None, None, "{}"),
    ]
    last = chunks[-1]
    assert last.finish_reason == "tool_calls"
    assert last.usage == Usage(472 + 100 + 2000, 89, 2000, 100)
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    assert {c.response_id for c in chunks} == {"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    assert {c.response_model for c in chunks} == {"claude-sonnet-4-5-20250929"}


def test_stream_split_anywhere_gives_same_chunks() -> None:
    whole = run(TEXT_TOOL_STREAM)
    assert run(TEXT_TOOL_STREAM, [1] * len(TEXT_TOOL_STREAM)) == whole
    for seed in range(5):
        assert run(TEXT_TOOL_STREAM, random_sizes(len(TEXT_TOOL_STREAM), seed)) == whole
    crlf = TEXT_TOOL_STREAM.replace(b"\n", b"\r\n")
    assert run(crlf, random_sizes(len(crlf), 99)) == whole


def test_stream_message_delta_repeating_input_usage() -> None:
    data = sse(
        START,
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 480, "output_tokens": 3, "cache_read_input_tokens": None},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    last = run(data)[-1]
    assert last.finish_reason == "stop"
    assert last.usage == Usage(480 + 100 + 2000, 3, 2000, 100)


@pytest.mark.parametrize(
    ("delta_usage", "expected"),
    [
        # message_delta with only the output: message_start's cache write stands
        ({"output_tokens": 5}, Usage(472 + 100 + 2000, 5, 2000, 100)),
        # newer API versions repeat the cumulative input side, cache writes included: the delta wins
        (
            {
                "input_tokens": 472,
                "cache_creation_input_tokens": 1200,
                "cache_read_input_tokens": 0,
                "output_tokens": 5,
            },
            Usage(472 + 1200, 5, 0, 1200),
        ),
        # null counts in the delta do not erase message_start's
        ({"cache_creation_input_tokens": None, "output_tokens": 5}, Usage(472 + 100 + 2000, 5, 2000, 100)),
    ],
)
def test_stream_usage_cache_writes(delta_usage: dict[str, Any], expected: Usage) -> None:
    data = sse(
        START,
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        ),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta_usage}),
        ("message_stop", {"type": "message_stop"}),
    )
    chunks = run(data)
    assert chunks[-1].usage == expected
    assert [c.usage for c in chunks[:-1]] == [None] * (len(chunks) - 1)


def test_stream_ignores_thinking_and_unknown_events() -> None:
    data = sse(
        START,
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "Eq"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("brand_new_event", {"type": "brand_new_event", "x": 1}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9}},
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    chunks = run(data)
    assert [c.text for c in chunks] == [""]
    assert chunks[-1].finish_reason == "length"


def test_stream_truncated() -> None:
    for cut in (0, len(TEXT_TOOL_STREAM) // 2, TEXT_TOOL_STREAM.index(b"event: message_stop")):
        parser = ADAPTER.stream_parser(TARGET)
        parser.feed(TEXT_TOOL_STREAM[:cut])
        with pytest.raises(ResponseError):
            parser.close()


def test_stream_last_event_without_blank_line_is_flushed() -> None:
    data = TEXT_TOOL_STREAM.rstrip(b"\n")
    chunks = run(data)
    assert chunks[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("kind", "cls", "status"),
    [
        ("overloaded_error", ServerError, 529),
        ("api_error", ServerError, 500),
        ("rate_limit_error", RateLimitError, 429),
        ("invalid_request_error", BadRequestError, 400),
        ("mystery_error", ServerError, 500),
    ],
)
def test_stream_error_event(kind: str, cls: type[ProviderError], status: int) -> None:
    data = sse(
        START,
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("error", {"type": "error", "error": {"type": kind, "message": "Overloaded"}}),
    )
    parser = ADAPTER.stream_parser(TARGET)
    with pytest.raises(cls) as info:
        for i in range(len(data)):
            parser.feed(data[i : i + 1])
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.message == "Overloaded"
    assert KEY not in str(info.value)


def test_stream_malformed_json() -> None:
    parser = ADAPTER.stream_parser(TARGET)
    with pytest.raises(ResponseError):
        parser.feed(b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, \n\n')
    parser = ADAPTER.stream_parser(TARGET)
    with pytest.raises(ResponseError):
        parser.feed(b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {}}\n\n')
    parser = ADAPTER.stream_parser(TARGET)
    with pytest.raises(ResponseError):
        parser.feed(b"event: message_start\ndata: [1]\n\n")


def test_stream_refusal_without_text() -> None:
    data = sse(
        START,
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {"output_tokens": 1}},
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    with pytest.raises(ContentFilteredError):
        run(data)


def test_stream_events_after_message_stop_are_ignored() -> None:
    chunks = run(TEXT_TOOL_STREAM + sse(("content_block_delta", {"nonsense": True})))
    assert chunks == run(TEXT_TOOL_STREAM)


def test_gemini_extra_content_on_tool_calls_is_not_sent() -> None:
    call = {
        "id": "call_g",
        "type": "function",
        "function": {"name": "now", "arguments": "{}"},
        "extra_content": {"google": {"thought_signature": "sig-G"}},
    }
    body = body_of(
        ChatRequest(
            [
                {"role": "user", "content": "time?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_g", "content": "12:00"},
            ]
        )
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "call_g", "name": "now", "input": {}}],
    }
    assert "sig-G" not in json.dumps(body)
