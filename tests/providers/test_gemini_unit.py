"""Pure unit tests of the Gemini adapter: no network."""

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
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    ResponseError,
    ServerError,
)
from llmroute.providers import get_adapter
from llmroute.providers.base import Target
from llmroute.providers.gemini import DUMMY_THOUGHT_SIGNATURE, GeminiAdapter, requires_thought_signatures
from llmroute.testing import _wire
from llmroute.types import ChatRequest, Chunk, ToolCall, ToolCallDelta, Usage

KEY = "AIzaSyD-SECRET-gemini-key-do-not-leak"
TARGET = Target(
    provider="google",
    api="gemini",
    base_url="https://generativelanguage.googleapis.com/v1beta",
    model="gemini-2.5-flash",
    deployment="gemini-flash",
    api_key=SecretStr(KEY),
    headers={"X-Goog-User-Project": SecretStr("my-project")},
)
ADAPTER = GeminiAdapter()
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def body_of(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    return json.loads(ADAPTER.build_request(request, TARGET, stream=stream).body)


# --------------------------------------------------------------------------- build_request


def test_registry_returns_adapter() -> None:
    assert get_adapter("gemini").api == "gemini"


def test_urls_and_headers() -> None:
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}]), TARGET, stream=False)
    assert req.method == "POST"
    assert req.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.headers["x-goog-api-key"] == KEY
    assert req.headers["x-goog-user-project"] == "my-project"
    assert req.headers["content-type"] == "application/json"
    assert "key=" not in req.url
    assert json.loads(req.body) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}]), TARGET, stream=True)
    assert req.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )
    target = Target("g", "gemini", "http://local/v1beta/", "models/gemini-2.0-flash", "d")
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}]), target, stream=False)
    assert req.url == "http://local/v1beta/models/gemini-2.0-flash:generateContent"
    assert "x-goog-api-key" not in req.headers


def test_key_not_in_repr() -> None:
    req = ADAPTER.build_request(ChatRequest([{"role": "user", "content": "Hi"}]), TARGET, stream=True)
    assert KEY not in repr(req) and KEY not in str(req)


def test_system_instruction_and_roles() -> None:
    body = body_of(
        ChatRequest(
            [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "How are you?"},
            ]
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello."}]},
        {"role": "user", "parts": [{"text": "How are you?"}]},
    ]


def test_merge_consecutive_same_role() -> None:
    body = body_of(
        ChatRequest(
            [
                {"role": "user", "content": "A"},
                {"role": "user", "content": [{"type": "text", "text": "B"}]},
                {"role": "assistant", "content": "C"},
                {"role": "assistant", "content": "D"},
            ]
        )
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "A"}, {"text": "B"}]},
        {"role": "model", "parts": [{"text": "C"}, {"text": "D"}]},
    ]


def test_generation_config() -> None:
    body = body_of(
        ChatRequest(
            [{"role": "user", "content": "Hi"}],
            max_tokens=100,
            temperature=0.5,
            top_p=0.8,
            stop=["END"],
            extra_body={"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}, "safetySettings": []},
        )
    )
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.5,
        "topP": 0.8,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": 0},
    }
    assert body["safetySettings"] == []
    assert "generationConfig" not in body_of(ChatRequest([{"role": "user", "content": "Hi"}]))


def test_json_mode() -> None:
    msgs = [{"role": "user", "content": "Alice is 30."}]
    body = body_of(ChatRequest(msgs, response_format={"type": "json_object"}))
    assert body["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    body = body_of(ChatRequest(msgs, response_format=fmt))
    assert body["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    with pytest.raises(InvalidRequestError):
        body_of(ChatRequest(msgs, response_format={"type": "xml"}))


def test_json_schemas_go_where_gemini_takes_json_schema() -> None:
    # OpenAI strict-mode schemas carry additionalProperties, $schema, const, list-valued types: Google's
    # OpenAPI subset (`parameters`, `responseSchema`) answers 400 for them, its JSON Schema fields do not.
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"unit": {"type": ["string", "null"]}, "kind": {"const": "now"}},
        "required": ["unit", "kind"],
        "additionalProperties": False,
    }
    tool = {"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}}
    body = body_of(ChatRequest([{"role": "user", "content": "Hi"}], tools=[tool], response_format=fmt))
    assert body["tools"] == [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": schema}]}]
    assert body["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert _wire.schema_problems(body) == []  # what the fake Gemini, like the real one, would refuse
    legacy = {"tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}]}
    assert len(_wire.schema_problems(legacy)) == 4


def test_images() -> None:
    body = body_of(
        ChatRequest(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.webp?size=large"}},
                        {"type": "image_url", "image_url": {"url": "gs://bucket/photo.png"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/render"}},
                    ],
                }
            ]
        )
    )
    assert body["contents"][0]["parts"] == [
        {"text": "What is in these?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"fileUri": "https://example.com/a/cat.webp?size=large", "mimeType": "image/webp"}},
        {"fileData": {"fileUri": "gs://bucket/photo.png", "mimeType": "image/png"}},
        {"fileData": {"fileUri": "https://example.com/render", "mimeType": "image/jpeg"}},
    ]


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
]


def test_tools_and_tool_config() -> None:
    msgs = [{"role": "user", "content": "Weather?"}]
    body = body_of(ChatRequest(msgs, tools=TOOLS, tool_choice="auto"))
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parametersJsonSchema": TOOLS[0]["function"]["parameters"],
                },
                {"name": "now", "parametersJsonSchema": {"type": "object", "properties": {}}},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert body_of(ChatRequest(msgs, tools=TOOLS, tool_choice="none"))["toolConfig"] == {
        "functionCallingConfig": {"mode": "NONE"}
    }
    assert body_of(ChatRequest(msgs, tools=TOOLS, tool_choice="required"))["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY"}
    }
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert body_of(ChatRequest(msgs, tools=TOOLS, tool_choice=named))["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert "toolConfig" not in body_of(ChatRequest(msgs, tools=TOOLS))
    with pytest.raises(InvalidRequestError):
        body_of(ChatRequest(msgs, tools=TOOLS, tool_choice={"type": "function"}))


def test_tool_round_trip() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris? And the time?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": '{"temp_c": 18, "sky": "clear"}'},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00 CET"},
        {"role": "assistant", "content": "18°C and noon."},
        {"role": "user", "content": "And Rome?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "now", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": [{"type": "text", "text": "[1, 2]"}]},
    ]
    body = body_of(ChatRequest(messages, tools=TOOLS))
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris? And the time?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "now", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 18, "sky": "clear"}}}},
                {"functionResponse": {"name": "now", "response": {"result": "12:00 CET"}}},
            ],
        },
        {"role": "model", "parts": [{"text": "18°C and noon."}]},
        {"role": "user", "parts": [{"text": "And Rome?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "now", "args": {}}}]},
        # the reused id resolves to the latest call, and the JSON content is parsed
        {"role": "user", "parts": [{"functionResponse": {"name": "now", "response": {"result": [1, 2]}}}]},
    ]


def test_tool_result_errors() -> None:
    with pytest.raises(InvalidRequestError, match="call_x"):
        body_of(ChatRequest([{"role": "tool", "tool_call_id": "call_x", "content": "1"}]))
    call = {"id": "call_bad", "type": "function", "function": {"name": "now", "arguments": "{oops"}}
    with pytest.raises(InvalidRequestError, match="call_bad"):
        body_of(ChatRequest([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]))
    with pytest.raises(InvalidRequestError, match="role"):
        body_of(ChatRequest([{"role": "narrator", "content": "x"}]))
    with pytest.raises(InvalidRequestError):
        body_of(ChatRequest([{"role": "user", "content": [{"type": "file", "file": {}}]}]))


# --------------------------------------------------------------------------- parse_response


def response(**over: Any) -> bytes:
    data: dict[str, Any] = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hello"}, {"text": " there!"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 3, "totalTokenCount": 11},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mKdGaMesKJqsxN8Pq6_s4QM",
    }
    data.update(over)
    return json.dumps(data).encode()


def test_parse_text() -> None:
    c = ADAPTER.parse_response(response(), TARGET)
    assert c.text == "Hello there!"
    assert c.tool_calls == ()
    assert c.finish_reason == "stop"
    assert c.usage == Usage(8, 3, 0)
    assert c.response_model == "gemini-2.5-flash"
    assert c.response_id == "mKdGaMesKJqsxN8Pq6_s4QM"


def test_parse_function_calls_and_thoughts() -> None:
    parts = [
        {"text": "Thinking about weather", "thought": True},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQB..."},
        {"functionCall": {"name": "now", "args": {}}},
        {"functionCall": {"id": "fc-abc", "name": "now"}},
    ]
    c = ADAPTER.parse_response(response(candidates=[{"content": {"parts": parts}, "finishReason": "STOP"}]), TARGET)
    assert c.text is None
    assert c.tool_calls == (
        ToolCall("call_0", "get_weather", '{"city": "Paris"}', "CiQB..."),
        ToolCall("call_1", "now", "{}"),
        ToolCall("fc-abc", "now", "{}"),
    )
    assert c.finish_reason == "tool_calls"


def test_parse_usage_with_cache_and_thoughts() -> None:
    usage = {
        "promptTokenCount": 5000,
        "cachedContentTokenCount": 4096,
        "candidatesTokenCount": 120,
        "thoughtsTokenCount": 300,
        "totalTokenCount": 5420,
    }
    assert ADAPTER.parse_response(response(usageMetadata=usage), TARGET).usage == Usage(5000, 420, 4096)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("MALFORMED_FUNCTION_CALL", "other")],
)
def test_finish_reasons_with_text(reason: str, finish: str) -> None:
    cand = [{"content": {"parts": [{"text": "partial"}], "role": "model"}, "finishReason": reason}]
    assert ADAPTER.parse_response(response(candidates=cand), TARGET).finish_reason == finish


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"])
def test_filtered_without_text(reason: str) -> None:
    cand = [{"finishReason": reason, "index": 0, "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT"}]}]
    with pytest.raises(ContentFilteredError, match=reason):
        ADAPTER.parse_response(response(candidates=cand), TARGET)


def test_prompt_blocked() -> None:
    body = json.dumps(
        {
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
            "modelVersion": "gemini-2.5-flash",
        }
    ).encode()
    with pytest.raises(ContentFilteredError, match="SAFETY"):
        ADAPTER.parse_response(body, TARGET)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>",
        b"[]",
        b"{}",
        b'{"candidates": [{"content": {"parts": [{"text": 5}]}, "finishReason": "STOP"}]}',
        b'{"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}, "finishReason": "STOP"}]}',
    ],
)
def test_malformed_response(body: bytes) -> None:
    with pytest.raises(ResponseError):
        ADAPTER.parse_response(body, TARGET)


# --------------------------------------------------------------------------- parse_error


def gerr(code: int, status: str, message: str, details: list[Any] | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return json.dumps({"error": err}).encode()


def test_parse_error_statuses() -> None:
    e = ADAPTER.parse_error(400, {}, gerr(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), TARGET)
    assert type(e) is BadRequestError and e.status == 400
    e = ADAPTER.parse_error(
        403, {}, gerr(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers"), TARGET
    )
    assert isinstance(e, AuthenticationError)
    e = ADAPTER.parse_error(500, {}, gerr(500, "INTERNAL", "An internal error has occurred."), TARGET)
    assert isinstance(e, ServerError)
    e = ADAPTER.parse_error(
        503, {}, gerr(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), TARGET
    )
    assert isinstance(e, ServerError) and e.retryable
    e = ADAPTER.parse_error(
        404, {}, gerr(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta"), TARGET
    )
    assert type(e) is BadRequestError


def test_parse_error_bad_key_is_authentication() -> None:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
    ]
    body = gerr(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", details)
    e = ADAPTER.parse_error(400, {}, body, TARGET)
    assert isinstance(e, AuthenticationError) and e.status == 400 and not e.retryable
    assert e.provider == "google"


def test_parse_error_rate_limit() -> None:
    body = gerr(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.")
    e = ADAPTER.parse_error(429, {"retry-after": "4"}, body, TARGET)
    assert isinstance(e, RateLimitError) and e.retry_after == 4.0
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
    ]
    e = ADAPTER.parse_error(429, {"X-Request-Id": "r1"}, gerr(429, "RESOURCE_EXHAUSTED", "quota", details), TARGET)
    assert isinstance(e, RateLimitError) and e.retry_after == 37.0 and e.request_id == "r1"
    e = ADAPTER.parse_error(429, {}, body, TARGET)
    assert isinstance(e, RateLimitError) and e.retry_after is None


def test_parse_error_context_window() -> None:
    msg = "The input token count (1250000) exceeds the maximum number of tokens allowed (1048576)."
    e = ADAPTER.parse_error(400, {}, gerr(400, "INVALID_ARGUMENT", msg), TARGET)
    assert isinstance(e, ContextWindowExceededError)


def test_parse_error_list_wrapped_and_non_json() -> None:
    body = json.dumps([json.loads(gerr(500, "INTERNAL", "boom"))]).encode()
    e = ADAPTER.parse_error(500, {}, body, TARGET)
    assert isinstance(e, ServerError) and e.message == "boom"
    e = ADAPTER.parse_error(502, {}, b"<html>502 Bad Gateway</html>", TARGET)
    assert isinstance(e, ServerError) and "Bad Gateway" in e.message


def test_key_never_in_errors() -> None:
    errors: list[BaseException] = [
        ADAPTER.parse_error(s, {}, gerr(s, "X", "bad"), TARGET) for s in (400, 401, 403, 429, 500, 503)
    ]
    for bad in (b"nope", b"{}"):
        try:
            ADAPTER.parse_response(bad, TARGET)
        except ProviderError as exc:
            errors.append(exc)
    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in (getattr(exc, "body", "") or "")


# --------------------------------------------------------------------------- streaming


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\r\n\r\n" for e in events)


META = {"modelVersion": "gemini-2.5-flash", "responseId": "resp-42"}
STREAM = sse(
    {
        "candidates": [{"content": {"parts": [{"text": "The weather "}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 20, "totalTokenCount": 20},
        **META,
    },
    {
        "candidates": [{"content": {"parts": [{"text": "in Zürich – ☀️, "}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
        **META,
    },
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "let me check."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Zürich"}}},
                        {"functionCall": {"name": "now", "args": {}}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 20,
            "cachedContentTokenCount": 8,
            "candidatesTokenCount": 30,
            "thoughtsTokenCount": 12,
            "totalTokenCount": 62,
        },
        **META,
    },
)


def run(data: bytes, sizes: list[int] | None = None) -> list[Chunk]:
    return feed_stream(ADAPTER, TARGET, data, sizes)


def random_sizes(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(rng.randint(1, 37))
    return sizes


def test_stream_text_and_calls() -> None:
    chunks = run(STREAM)
    assert "".join(c.text for c in chunks) == "The weather in Zürich – ☀️, let me check."
    assert [d for c in chunks for d in c.tool_calls] == [
        ToolCallDelta(0, "call_0", "get_weather", '{"city": "Z\\u00fcrich"}'),
        ToolCallDelta(1, "call_1", "now", "{}"),
    ]
    last = chunks[-1]
    assert last.finish_reason == "tool_calls"
    assert last.usage == Usage(20, 42, 8)
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    assert {c.response_id for c in chunks} == {"resp-42"}
    assert {c.response_model for c in chunks} == {"gemini-2.5-flash"}


def test_stream_split_anywhere_gives_same_chunks() -> None:
    whole = run(STREAM)
    assert run(STREAM, [1] * len(STREAM)) == whole
    for seed in range(5):
        assert run(STREAM, random_sizes(len(STREAM), seed)) == whole
    lf = STREAM.replace(b"\r\n", b"\n")
    assert run(lf, random_sizes(len(lf), 7)) == whole


def test_stream_usage_after_finish() -> None:
    data = sse(
        {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP"}], **META},
        {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1}, **META},
    )
    chunks = run(data)
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage == Usage(3, 1, 0)


def test_stream_truncated() -> None:
    for cut in (0, STREAM.index(b"data:", 10), len(STREAM) - 5):
        parser = ADAPTER.stream_parser(TARGET)
        parser.feed(STREAM[:cut])
        with pytest.raises(ResponseError):
            parser.close()


def test_stream_last_event_without_blank_line() -> None:
    assert run(STREAM.rstrip(b"\r\n"))[-1].finish_reason == "tool_calls"


def test_stream_error_event() -> None:
    data = sse(
        {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}}], **META},
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
    )
    parser = ADAPTER.stream_parser(TARGET)
    with pytest.raises(ServerError) as info:
        for i in range(len(data)):
            parser.feed(data[i : i + 1])
    assert info.value.status == 503 and KEY not in str(info.value)
    parser = ADAPTER.stream_parser(TARGET)
    with pytest.raises(RateLimitError):
        parser.feed(sse({"error": {"message": "quota", "status": "RESOURCE_EXHAUSTED"}}))


def test_stream_malformed_json() -> None:
    parser = ADAPTER.stream_parser(TARGET)
    with pytest.raises(ResponseError):
        parser.feed(b'data: {"candidates": [\r\n\r\n')
    parser = ADAPTER.stream_parser(TARGET)
    with pytest.raises(ResponseError):
        parser.feed(b"data: [1, 2]\n\n")


def test_stream_safety_and_blocked_prompt() -> None:
    with pytest.raises(ContentFilteredError):
        run(sse({"candidates": [{"finishReason": "SAFETY", "index": 0}], **META}))
    with pytest.raises(ContentFilteredError):
        run(sse({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, **META}))
    chunks = run(
        sse(
            {"candidates": [{"content": {"parts": [{"text": "Once upon"}], "role": "model"}}], **META},
            {"candidates": [{"finishReason": "RECITATION", "index": 0}], **META},
        )
    )
    assert chunks[-1].finish_reason == "content_filter"


def test_stream_max_tokens() -> None:
    chunks = run(
        sse(
            {
                "candidates": [
                    {"content": {"parts": [{"text": "abc"}], "role": "model"}, "finishReason": "MAX_TOKENS"}
                ],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3},
                **META,
            }
        )
    )
    assert chunks == [Chunk("abc", (), "length", Usage(4, 3, 0), "gemini-2.5-flash", "resp-42")]


# --------------------------------------------------------------------------- thought signatures

GEMINI_3 = Target(
    provider="google",
    api="gemini",
    base_url="https://generativelanguage.googleapis.com/v1beta",
    model="gemini-3-pro-preview",
    deployment="gemini-3",
    api_key=SecretStr(KEY),
)


def signed(call_id: str, name: str, signature: str | None = None, arguments: str = "{}") -> dict[str, Any]:
    """An OpenAI-shaped tool call, with a Gemini thought signature in ``extra_content`` when given."""
    return ToolCall(call_id, name, arguments, signature).to_openai()


def contents_for(messages: list[dict[str, Any]], target: Target = GEMINI_3) -> list[dict[str, Any]]:
    return json.loads(ADAPTER.build_request(ChatRequest(messages, tools=TOOLS), target, stream=False).body)["contents"]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gemini-3-pro-preview", True),
        ("gemini-3-flash", True),
        ("gemini-3", True),
        ("gemini-3.1-pro-preview", True),
        ("models/gemini-3-flash-preview", True),
        ("gemini-4-ultra", True),
        ("gemini-10.0-pro", True),
        ("gemini-2.5-flash", False),
        ("gemini-2.0-flash-lite", False),
        ("gemini-1.5-pro-002", False),
        ("models/gemini-2.5-pro", False),
        ("gemini-exp-1206", False),
        ("gemini-x", False),
        ("gemini-30b-local", False),
        ("gemma-3-27b-it", False),
        ("learnlm-gemini-3", False),
    ],
)
def test_requires_thought_signatures(model: str, expected: bool) -> None:
    assert requires_thought_signatures(model) is expected


def test_tool_call_to_openai_carries_the_signature_only_when_there_is_one() -> None:
    plain = ToolCall("c1", "now", "{}")
    assert plain.thought_signature is None
    assert plain.to_openai() == {"id": "c1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    assert ToolCall("c1", "now", "{}", "sig==").to_openai() == {
        "id": "c1",
        "type": "function",
        "function": {"name": "now", "arguments": "{}"},
        "extra_content": {"google": {"thought_signature": "sig=="}},
    }


def test_signatures_go_back_as_received() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris? And the time?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [signed("c0", "get_weather", "sig-A"), signed("c1", "now")],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
    ]
    expected_model = {
        "role": "model",
        "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": "sig-A"},
            {"functionCall": {"name": "now", "args": {}}},
        ],
    }
    # Gemini 2.5 and Gemini 3 alike: the signature goes back on its part; parallel calls after the first stay bare
    assert contents_for(messages, TARGET)[1] == expected_model
    assert contents_for(messages)[1] == expected_model
    # extra_content holding no usable signature is ignored
    odd = dict(signed("c0", "get_weather"), extra_content={"google": {"thought_signature": 7}, "other": {}})
    assert contents_for([messages[0], {"role": "assistant", "tool_calls": [odd]}], TARGET)[1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {}}}
    ]


def test_gemini_3_current_turn_gets_the_dummy_signature_where_one_is_missing() -> None:
    messages = [
        {"role": "user", "content": "Paris?"},
        # an earlier turn (a user text message follows): not validated, left alone
        {"role": "assistant", "tool_calls": [signed("a", "get_weather")]},
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "And the time in Rome and Oslo?"},
        # the current turn: step 1 came from another provider (no signature), parallel calls
        {"role": "assistant", "tool_calls": [signed("b", "now"), signed("c", "now")]},
        {"role": "tool", "tool_call_id": "b", "content": "noon"},
        {"role": "tool", "tool_call_id": "c", "content": "noon"},
        # step 2 came from Gemini 3 itself: its real signature is kept
        {"role": "assistant", "tool_calls": [signed("d", "get_weather", "real-sig")]},
        {"role": "tool", "tool_call_id": "d", "content": "rain"},
    ]
    contents = contents_for(messages)
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user", "model", "user", "model", "user"]
    assert contents[1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {}}}]
    assert contents[5]["parts"] == [
        {"functionCall": {"name": "now", "args": {}}, "thoughtSignature": DUMMY_THOUGHT_SIGNATURE},
        {"functionCall": {"name": "now", "args": {}}},
    ]
    assert contents[7]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": "real-sig"}
    ]
    # Gemini 2.5 does not validate signatures: nothing is added
    assert all("thoughtSignature" not in p for p in contents_for(messages, TARGET)[5]["parts"])
    # a history whose current turn has no function call is sent unchanged
    plain = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "?"},
    ]
    assert contents_for(plain) == contents_for(plain, TARGET)


def test_dummy_signature_goes_on_the_first_call_even_after_text() -> None:
    # the first functionCall part of the model content gets it, not the text part before it
    messages = [
        {"role": "user", "content": "time?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [signed("x", "now"), signed("y", "get_weather", "s")],
        },
    ]
    assert contents_for(messages)[1]["parts"] == [
        {"text": "Let me look."},
        {"functionCall": {"name": "now", "args": {}}, "thoughtSignature": DUMMY_THOUGHT_SIGNATURE},
        {"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": "s"},
    ]


def test_parse_ignores_signatures_that_are_not_strings_and_on_text_parts() -> None:
    parts = [
        {"text": "Here.", "thoughtSignature": "text-sig"},
        {"functionCall": {"name": "now", "args": {}}, "thoughtSignature": 12},
        {"functionCall": {"name": "now", "args": {}}, "thoughtSignature": ""},
    ]
    c = ADAPTER.parse_response(response(candidates=[{"content": {"parts": parts}, "finishReason": "STOP"}]), TARGET)
    assert c.text == "Here."
    assert [call.thought_signature for call in c.tool_calls] == [None, None]


def test_stream_keeps_signatures() -> None:
    data = sse(
        {"candidates": [{"content": {"parts": [{"text": "Checking."}], "role": "model"}}], **META},
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {
                                "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
                                "thoughtSignature": "S1",
                            },
                            {"functionCall": {"name": "now", "args": {}}},
                        ],
                        "role": "model",
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4},
            **META,
        },
    )
    chunks = run(data)
    assert [d for c in chunks for d in c.tool_calls] == [
        ToolCallDelta(0, "call_0", "get_weather", '{"city": "Rome"}', "S1"),
        ToolCallDelta(1, "call_1", "now", "{}"),
    ]
    assert run(data, random_sizes(len(data), 3)) == chunks
