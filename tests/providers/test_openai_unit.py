"""Pure unit tests of the OpenAI Chat Completions adapter: no network."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from _streams import feed_stream
from pydantic import SecretStr

from llmroute.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextWindowExceededError,
    ProviderError,
    RateLimitError,
    ResponseError,
    ServerError,
)
from llmroute.providers import get_adapter
from llmroute.providers.base import Target
from llmroute.providers.openai import OpenAIAdapter
from llmroute.types import ChatRequest, Chunk, ToolCall, ToolCallDelta, Usage

KEY = "sk-proj-SECRET-openai-key-do-not-leak"
TARGET = Target(
    provider="openai",
    api="openai",
    base_url="https://api.openai.com/v1",
    model="gpt-4o-mini",
    deployment="oai-mini",
    api_key=SecretStr(KEY),
    headers={"OpenAI-Organization": SecretStr("org-123")},
)
ADAPTER = OpenAIAdapter()


def body_of(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    return json.loads(ADAPTER.build_request(request, TARGET, stream=stream).body)


# --------------------------------------------------------------------------- build_request


def test_registry_returns_adapter() -> None:
    assert get_adapter("openai").api == "openai"
    with pytest.raises(ValueError):
        get_adapter("cohere")


def test_url_headers_and_body() -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    req = ADAPTER.build_request(ChatRequest(msgs), TARGET, stream=False)
    assert req.method == "POST"
    assert req.url == "https://api.openai.com/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["openai-organization"] == "org-123"
    assert req.headers["accept"] == "application/json"
    assert json.loads(req.body) == {"model": "gpt-4o-mini", "messages": msgs}
    assert KEY not in repr(req) and KEY not in str(req)


def test_no_key_no_authorization() -> None:
    target = Target("ollama", "openai", "http://localhost:11434/v1", "llama3", "local")
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}]), target, stream=False)
    assert "authorization" not in req.headers


def test_all_options_and_stream() -> None:
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    body = body_of(
        ChatRequest(
            [{"role": "user", "content": "Hi"}],
            tools=tools,
            tool_choice="required",
            max_tokens=50,
            temperature=0.0,
            top_p=1.0,
            stop=["END"],
            response_format=fmt,
            extra_body={"seed": 7, "temperature": 0.3},
        ),
        stream=True,
    )
    assert body["tools"] == tools
    assert body["tool_choice"] == "required"
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body  # api.openai.com
    assert body["temperature"] == 0.3  # extra_body wins
    assert body["top_p"] == 1.0
    assert body["stop"] == ["END"]
    assert body["response_format"] == fmt
    assert body["seed"] == 7
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_stop_as_single_string() -> None:
    assert body_of(ChatRequest([{"role": "user", "content": "Hi"}], stop="END"))["stop"] in ("END", ["END"])


# --------------------------------------------------------------------------- parse_response


def completion(message: dict[str, Any], finish: str | None = "stop", **over: Any) -> bytes:
    data: dict[str, Any] = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "logprobs": None, "finish_reason": finish}
        ],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_06737a9306",
    }
    data.update(over)
    return json.dumps(data).encode()


def test_parse_text() -> None:
    c = ADAPTER.parse_response(completion({"content": "Hello there.", "refusal": None}), TARGET)
    assert c.text == "Hello there."
    assert c.finish_reason == "stop"
    assert c.usage == Usage(19, 10, 0)
    assert c.response_model == "gpt-4o-mini-2024-07-18"
    assert c.response_id == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"


def test_parse_tool_calls() -> None:
    calls = [
        {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_def", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    c = ADAPTER.parse_response(completion({"content": None, "tool_calls": calls}, "tool_calls"), TARGET)
    assert c.text is None
    assert c.tool_calls == (
        ToolCall("call_abc", "get_weather", '{"city":"Paris"}'),
        ToolCall("call_def", "now", "{}"),
    )
    assert c.finish_reason == "tool_calls"


def test_parse_cached_usage() -> None:
    usage = {"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}}
    assert ADAPTER.parse_response(completion({"content": "x"}, usage=usage), TARGET).usage == Usage(2006, 300, 1920)


@pytest.mark.parametrize(
    ("raw", "finish"),
    [("stop", "stop"), ("length", "length"), ("function_call", "tool_calls"), ("eos", "other"), (None, None)],
)
def test_finish_reasons(raw: str | None, finish: str | None) -> None:
    assert ADAPTER.parse_response(completion({"content": "x"}, raw), TARGET).finish_reason == finish


def test_content_filter() -> None:
    with pytest.raises(ContentFilteredError):
        ADAPTER.parse_response(completion({"content": None}, "content_filter"), TARGET)
    c = ADAPTER.parse_response(completion({"content": "partial"}, "content_filter"), TARGET)
    assert c.finish_reason == "content_filter"


@pytest.mark.parametrize("body", [b"oops", b'{"choices": []}', b'{"choices": [{"message": {"content": 5}}]}'])
def test_malformed(body: bytes) -> None:
    with pytest.raises(ResponseError):
        ADAPTER.parse_response(body, TARGET)


# --------------------------------------------------------------------------- parse_error


def oerr(message: str, kind: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def test_parse_error_statuses() -> None:
    e = ADAPTER.parse_error(
        401,
        {},
        oerr("Incorrect API key provided: sk-proj-****leak.", "invalid_request_error", "invalid_api_key"),
        TARGET,
    )
    assert isinstance(e, AuthenticationError)
    e = ADAPTER.parse_error(400, {}, oerr("Invalid value for 'temperature'", "invalid_request_error"), TARGET)
    assert type(e) is BadRequestError
    e = ADAPTER.parse_error(500, {"x-request-id": "req_1"}, oerr("The server had an error", "server_error"), TARGET)
    assert isinstance(e, ServerError) and e.request_id == "req_1"
    e = ADAPTER.parse_error(503, {}, b"upstream connect error", TARGET)
    assert isinstance(e, ServerError) and "upstream" in e.message


def test_parse_error_rate_limit() -> None:
    body = oerr("Rate limit reached for gpt-4o-mini", "requests", "rate_limit_exceeded")
    e = ADAPTER.parse_error(429, {"retry-after-ms": "1500", "retry-after": "2"}, body, TARGET)
    assert isinstance(e, RateLimitError) and e.retry_after == 1.5
    e = ADAPTER.parse_error(429, {"retry-after": "2"}, body, TARGET)
    assert isinstance(e, RateLimitError) and e.retry_after == 2.0


@pytest.mark.parametrize(
    ("wait", "seconds"), [("1.612s", 1.612), ("20ms", 0.02), ("6m0s", 360.0), ("1h2m3s", 3723.0), (None, None)]
)
def test_parse_error_rate_limit_wait_from_the_message(wait: str | None, seconds: float | None) -> None:
    # OpenAI's 429s often carry no retry-after: the wait is in the message
    hint = f" Please try again in {wait}." if wait else ""
    message = (
        "Rate limit reached for gpt-4o-mini in organization org-x on tokens per min (TPM): "
        f"Limit 30000, Used 29548, Requested 1258.{hint} Visit https://platform.openai.com/account/rate-limits"
    )
    e = ADAPTER.parse_error(
        429, {"x-ratelimit-reset-tokens": "9s"}, oerr(message, "tokens", "rate_limit_exceeded"), TARGET
    )
    assert isinstance(e, RateLimitError) and e.retry_after == (pytest.approx(seconds) if seconds else None)
    # a header wins over the message
    e = ADAPTER.parse_error(429, {"retry-after": "3"}, oerr(message, "tokens", "rate_limit_exceeded"), TARGET)
    assert isinstance(e, RateLimitError) and e.retry_after == 3.0


def test_parse_error_context_window() -> None:
    body = oerr(
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
        "invalid_request_error",
        "context_length_exceeded",
    )
    assert isinstance(ADAPTER.parse_error(400, {}, body, TARGET), ContextWindowExceededError)


def test_parse_error_vllm_shape() -> None:
    body = json.dumps(
        {
            "object": "error",
            "message": "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    ).encode()
    assert isinstance(ADAPTER.parse_error(400, {}, body, TARGET), ContextWindowExceededError)


def test_key_never_in_errors() -> None:
    for status in (400, 401, 429, 500):
        e = ADAPTER.parse_error(status, {}, oerr("bad", "x"), TARGET)
        assert KEY not in str(e) and KEY not in repr(e)


# --------------------------------------------------------------------------- streaming


def chunk_event(delta: dict[str, Any], finish: str | None = None, usage: Any = None, choices: bool = True) -> bytes:
    data = {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
        "usage": usage,
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


STREAM = b"".join(
    [
        chunk_event({"role": "assistant", "content": ""}),
        chunk_event({"content": "Hel"}),
        chunk_event({"content": "lo – ☀️"}),
        chunk_event(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}}
                ]
            }
        ),
        chunk_event({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        chunk_event({}, "tool_calls"),
        chunk_event({}, usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}, choices=False),
        b"data: [DONE]\n\n",
    ]
)


def run(data: bytes, sizes: list[int] | None = None) -> list[Chunk]:
    return feed_stream(ADAPTER, TARGET, data, sizes)


def test_stream() -> None:
    chunks = run(STREAM)
    assert "".join(c.text for c in chunks) == "Hello – ☀️"
    assert [d for c in chunks for d in c.tool_calls] == [
        ToolCallDelta(0, "call_1", "now", ""),
        ToolCallDelta(0, None, None, "{}"),
    ]
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]
    assert [c.usage for c in chunks if c.usage] == [Usage(9, 4, 0)]


def test_stream_last_chunk_has_finish_and_usage() -> None:
    last = run(STREAM)[-1]
    assert last.finish_reason == "tool_calls" and last.usage == Usage(9, 4, 0)


def test_stream_split_anywhere() -> None:
    whole = run(STREAM)
    assert run(STREAM, [1] * len(STREAM)) == whole
    rng = random.Random(1234)
    for _ in range(5):
        sizes = [rng.randint(1, 50) for _ in range(len(STREAM))]
        assert run(STREAM, sizes) == whole


def test_stream_truncated() -> None:
    parser = ADAPTER.stream_parser(TARGET)
    parser.feed(STREAM[: STREAM.index(b"tool_calls")])
    with pytest.raises(ResponseError):
        parser.close()


def test_stream_without_done_but_finished_is_ok() -> None:
    assert run(STREAM.replace(b"data: [DONE]\n\n", b""))


def test_stream_error_event() -> None:
    parser = ADAPTER.stream_parser(TARGET)
    event = b'data: {"error": {"message": "The server is overloaded", "type": "server_error", "code": null}}\n\n'
    with pytest.raises(ServerError) as info:
        parser.feed(event)
    assert KEY not in str(info.value)


def test_stream_malformed() -> None:
    with pytest.raises(ResponseError):
        ADAPTER.stream_parser(TARGET).feed(b"data: {nope\n\n")
    with pytest.raises(ResponseError):
        ADAPTER.stream_parser(TARGET).feed(b"data: 42\n\n")


def test_key_not_in_provider_error_fields() -> None:
    try:
        ADAPTER.parse_response(b"garbage", TARGET)
    except ProviderError as exc:
        assert KEY not in str(exc) and KEY not in (exc.body or "")


@pytest.mark.parametrize(
    ("base_url", "field"),
    [
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("https://my-resource.openai.azure.com/openai/deployments/x", "max_completion_tokens"),
        ("https://api.together.xyz/v1", "max_tokens"),
        ("http://127.0.0.1:8000/v1", "max_tokens"),
        ("https://openrouter.ai/api/v1", "max_tokens"),
    ],
)
def test_max_tokens_field_follows_the_server(base_url: str, field: str) -> None:
    # OpenAI refuses max_tokens on its reasoning models; compatible servers expect max_tokens
    target = Target(provider="p", api="openai", base_url=base_url, model="m", deployment="d")
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}], max_tokens=9), target, stream=False)
    body = json.loads(req.body)
    assert body[field] == 9
    assert ({"max_tokens", "max_completion_tokens"} - {field}).isdisjoint(body)


# --------------------------------------------------------------------------- Gemini thought signatures

SIGNED_CALL = {
    "id": "call_g",
    "type": "function",
    "function": {"name": "now", "arguments": "{}"},
    "extra_content": {"google": {"thought_signature": "sig-G"}},
}
SIGNED_HISTORY = [
    {"role": "user", "content": "time?"},
    {"role": "assistant", "content": None, "tool_calls": [SIGNED_CALL]},
    {"role": "tool", "tool_call_id": "call_g", "content": "noon"},
]


@pytest.mark.parametrize(
    ("base_url", "kept"),
    [
        ("https://api.openai.com/v1", False),
        ("https://api.groq.com/openai/v1", False),
        ("http://127.0.0.1:8000/v1", False),
        ("https://generativelanguage.googleapis.com/v1beta/openai", True),
        ("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi", True),
    ],
)
def test_extra_content_is_sent_only_to_google(base_url: str, kept: bool) -> None:
    target = Target(provider="p", api="openai", base_url=base_url, model="m", deployment="d")
    body = json.loads(ADAPTER.build_request(ChatRequest(SIGNED_HISTORY), target, stream=False).body)
    (call,) = body["messages"][1]["tool_calls"]
    assert ("extra_content" in call) is kept
    assert {k: v for k, v in call.items() if k != "extra_content"} == {
        "id": "call_g",
        "type": "function",
        "function": {"name": "now", "arguments": "{}"},
    }
    assert body["messages"][0] == SIGNED_HISTORY[0] and body["messages"][2] == SIGNED_HISTORY[2]
    assert "extra_content" in SIGNED_HISTORY[1]["tool_calls"][0]  # the caller's history is not modified


def test_parse_google_thought_signature() -> None:
    c = ADAPTER.parse_response(completion({"content": None, "tool_calls": [SIGNED_CALL]}, "tool_calls"), TARGET)
    assert c.tool_calls == (ToolCall("call_g", "now", "{}", "sig-G"),)
    assert c.tool_calls[0].to_openai() == SIGNED_CALL


def test_stream_google_thought_signature() -> None:
    delta = {"tool_calls": [{"index": 0, **SIGNED_CALL}]}
    event = {
        "id": "x",
        "model": "gemini-3-flash",
        "choices": [{"index": 0, "delta": delta, "finish_reason": "tool_calls"}],
    }
    chunks = run(b"data: " + json.dumps(event).encode() + b"\n\ndata: [DONE]\n\n")
    assert [d for c in chunks for d in c.tool_calls] == [ToolCallDelta(0, "call_g", "now", "{}", "sig-G")]
