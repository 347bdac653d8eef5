"""The fake provider fleet, driven with plain httpx over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmroute._sse import SSEDecoder, SSEEvent
from llmroute.testing import FakeProvider, FakeReply, Fault, Fleet

ANT_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
TOOLS_OAI = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TOOLS_ANT = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
TOOLS_GEM = [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}]


@pytest.fixture(scope="module")
def fl() -> Iterator[Fleet]:
    f = Fleet(
        [
            FakeProvider("oai", api="openai"),
            FakeProvider("claude", api="anthropic", api_key="sk-ant-test"),
            FakeProvider("gem", api="gemini"),
        ]
    )
    with f:
        yield f


@pytest.fixture(autouse=True)
def _fresh(fl: Fleet) -> None:
    fl.reset()
    for p in fl:
        p.ttft_s, p.tokens_per_s, p.reply, p.context_window, p.cached_input_tokens, p.models = (
            0.0,
            None,
            None,
            None,
            0,
            None,
        )
        p.cache_write_input_tokens = 0
        p.thought_signatures = None
        p.thinking, p.redacted_thinking, p.citations = None, False, False


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


# ---- helpers ---------------------------------------------------------------------------------


def oai(fl: Fleet, client: httpx.Client, text: str = "hello there world", **body: Any) -> httpx.Response:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **body}
    return client.post(fl.base_url("oai") + "/chat/completions", json=payload)


def ant(
    fl: Fleet, client: httpx.Client, text: str = "hello there world", headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    payload = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": text}], **body}
    return client.post(
        fl.base_url("claude") + "/messages", json=payload, headers=ANT_HEADERS if headers is None else headers
    )


def gem(
    fl: Fleet,
    client: httpx.Client,
    text: str = "hello there world",
    *,
    stream: bool = False,
    sse: bool = True,
    **body: Any,
) -> httpx.Response:
    payload = {"contents": [{"role": "user", "parts": [{"text": text}]}], **body}
    action = "streamGenerateContent" + ("?alt=sse" if sse else "") if stream else "generateContent"
    return client.post(fl.base_url("gem") + f"/models/gemini-test:{action}", json=payload)


def call(
    fl: Fleet, client: httpx.Client, api: str, *, stream: bool = False, text: str = "hello there world", **body: Any
) -> httpx.Response:
    if api == "openai":
        if stream:
            body.setdefault("stream", True)
            body.setdefault("stream_options", {"include_usage": True})
        return oai(fl, client, text, **body)
    if api == "anthropic":
        if stream:
            body["stream"] = True
        return ant(fl, client, text, **body)
    return gem(fl, client, text, stream=stream, **body)


NAME = {"openai": "oai", "anthropic": "claude", "gemini": "gem"}
APIS = ["openai", "anthropic", "gemini"]


def sse(resp: httpx.Response) -> list[SSEEvent]:
    dec = SSEDecoder()
    return dec.feed(resp.content) + dec.flush()


def stream_text(api: str, events: list[SSEEvent]) -> str:
    out = []
    for e in events:
        if e.data == "[DONE]":
            continue
        obj = json.loads(e.data)
        if api == "openai":
            for ch in obj["choices"]:
                out.append(ch["delta"].get("content") or "")
        elif api == "anthropic":
            if obj["type"] == "content_block_delta" and obj["delta"]["type"] == "text_delta":
                out.append(obj["delta"]["text"])
        else:
            for part in obj["candidates"][0].get("content", {}).get("parts", []):
                out.append(part.get("text", ""))
    return "".join(out)


def plain_text(api: str, resp: httpx.Response) -> str:
    obj = resp.json()
    if api == "openai":
        return obj["choices"][0]["message"]["content"]
    if api == "anthropic":
        return "".join(b["text"] for b in obj["content"] if b["type"] == "text")
    return "".join(p.get("text", "") for p in obj["candidates"][0]["content"]["parts"])


def error_message(api: str, resp: httpx.Response) -> str:
    obj = resp.json()
    if api == "anthropic":
        assert obj["type"] == "error"
        return obj["error"]["message"]
    return obj["error"]["message"]


# ---- plain replies -----------------------------------------------------------------------------


def test_openai_plain_shape(fl: Fleet, client: httpx.Client) -> None:
    r = oai(fl, client)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    obj = r.json()
    assert obj["object"] == "chat.completion" and obj["id"].startswith("chatcmpl-") and obj["model"] == "gpt-test"
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    text = choice["message"]["content"]
    assert text.startswith("Echo: hello there world") and len(text.split()) == 12
    assert obj["usage"] == {
        "prompt_tokens": 3 + 3,
        "completion_tokens": 12,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def test_anthropic_plain_shape(fl: Fleet, client: httpx.Client) -> None:
    fl["claude"].cached_input_tokens = 4
    r = ant(fl, client, system="be brief")
    assert r.status_code == 200 and r.headers["request-id"].startswith("req_")
    obj = r.json()
    assert obj["type"] == "message" and obj["role"] == "assistant" and obj["id"].startswith("msg_")
    assert obj["stop_reason"] == "end_turn" and obj["stop_sequence"] is None
    assert obj["content"][0]["type"] == "text" and obj["content"][0]["text"].startswith("Echo: hello")
    # input = (3 words + 3) + system (2 words + 3) = 11, of which 4 cached (reported apart)
    assert obj["usage"]["input_tokens"] == 7 and obj["usage"]["cache_read_input_tokens"] == 4
    assert obj["usage"]["output_tokens"] == 12


def test_anthropic_cache_writes_plain_and_streamed(fl: Fleet, client: httpx.Client) -> None:
    fl["claude"].cached_input_tokens = 4
    fl["claude"].cache_write_input_tokens = 5
    # input = (3 words + 3) + system (2 words + 3) = 11: 4 read, 5 written, 2 neither (all reported apart)
    want = {"input_tokens": 2, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 4}
    usage = ant(fl, client, system="be brief").json()["usage"]
    assert {k: usage[k] for k in want} == want
    start = json.loads(sse(call(fl, client, "anthropic", stream=True, system="be brief"))[0].data)
    assert {k: start["message"]["usage"][k] for k in want} == want
    # writes are capped at what the hits leave of the prompt
    fl["claude"].cache_write_input_tokens = 100
    usage = ant(fl, client, system="be brief").json()["usage"]
    assert (usage["input_tokens"], usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]) == (0, 7, 4)


def test_cache_writes_are_not_reported_by_openai_or_gemini(fl: Fleet, client: httpx.Client) -> None:
    fl["oai"].cache_write_input_tokens = fl["gem"].cache_write_input_tokens = 3
    assert oai(fl, client).json()["usage"]["prompt_tokens"] == 6
    assert gem(fl, client).json()["usageMetadata"]["promptTokenCount"] == 6


def test_gemini_plain_shape(fl: Fleet, client: httpx.Client) -> None:
    fl["gem"].cached_input_tokens = 2
    r = gem(fl, client)
    assert r.status_code == 200
    obj = r.json()
    cand = obj["candidates"][0]
    assert cand["finishReason"] == "STOP" and cand["content"]["role"] == "model"
    assert cand["content"]["parts"][0]["text"].startswith("Echo: hello there world")
    assert obj["usageMetadata"]["promptTokenCount"] == 6
    assert obj["usageMetadata"]["candidatesTokenCount"] == 12
    assert obj["usageMetadata"]["totalTokenCount"] == 18
    assert obj["usageMetadata"]["cachedContentTokenCount"] == 2
    assert obj["modelVersion"] == "gemini-test"


def test_fixed_and_callable_reply_and_max_tokens(fl: Fleet, client: httpx.Client) -> None:
    fl["oai"].reply = "one two  three four"
    assert oai(fl, client).json()["choices"][0]["message"]["content"] == "one two  three four"
    r = oai(fl, client, max_tokens=2).json()
    assert r["choices"][0]["message"]["content"] == "one two" and r["choices"][0]["finish_reason"] == "length"
    fl["claude"].reply = lambda body: FakeReply(text=f"{len(body['messages'])} messages")
    assert plain_text("anthropic", ant(fl, client)) == "1 messages"
    r = ant(fl, client, max_tokens=1)
    assert r.json()["stop_reason"] == "max_tokens"


def test_json_mode(fl: Fleet, client: httpx.Client) -> None:
    r = oai(fl, client, response_format={"type": "json_object"})
    assert json.loads(r.json()["choices"][0]["message"]["content"])["reply"].startswith("Echo:")
    r = gem(fl, client, generationConfig={"responseMimeType": "application/json"})
    assert isinstance(json.loads(plain_text("gemini", r)), dict)


def test_models_and_unknown_paths(fl: Fleet, client: httpx.Client) -> None:
    fl["oai"].models = {"gpt-ok"}
    r = oai(fl, client)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert client.get(fl.base_url("oai") + "/models").json()["data"][0]["id"] == "gpt-ok"
    fl["gem"].models = {"gemini-ok"}
    r = gem(fl, client)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    r = client.post(fl.url + "/nobody/v1/chat/completions", json={})
    assert r.status_code == 404 and "error" in r.json()
    r = client.post(fl.base_url("oai") + "/completions", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


# ---- streaming --------------------------------------------------------------------------------


def test_openai_stream(fl: Fleet, client: httpx.Client) -> None:
    plain = plain_text("openai", oai(fl, client))
    r = call(fl, client, "openai", stream=True)
    assert r.headers["content-type"].startswith("text/event-stream") and r.headers["transfer-encoding"] == "chunked"
    events = sse(r)
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    assert all(c["usage"] is None for c in chunks[:-1])
    assert stream_text("openai", events) == plain
    # without include_usage: no usage chunk, no usage key
    events = sse(oai(fl, client, stream=True))
    assert events[-1].data == "[DONE]" and all("usage" not in json.loads(e.data) for e in events[:-1])


def test_anthropic_stream(fl: Fleet, client: httpx.Client) -> None:
    plain = plain_text("anthropic", ant(fl, client))
    events = sse(call(fl, client, "anthropic", stream=True))
    names = [e.event for e in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[3:-3] == ["content_block_delta"] * 12
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(json.loads(e.data)["type"] == e.event for e in events)
    start = json.loads(events[0].data)["message"]
    assert start["usage"]["input_tokens"] == 6 and start["content"] == []
    delta = json.loads(events[-2].data)
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == 12
    assert stream_text("anthropic", events) == plain


def test_gemini_stream_sse_and_array(fl: Fleet, client: httpx.Client) -> None:
    plain = plain_text("gemini", gem(fl, client))
    r = gem(fl, client, stream=True)
    assert r.headers["content-type"].startswith("text/event-stream") and b"\r\n\r\n" in r.content
    events = sse(r)
    objs = [json.loads(e.data) for e in events]
    assert [o["candidates"][0].get("finishReason") for o in objs] == [None] * (len(objs) - 1) + ["STOP"]
    assert objs[-1]["usageMetadata"]["candidatesTokenCount"] == 12
    # like the recorded Gemini streams, every chunk carries the counts so far
    assert [o["usageMetadata"]["candidatesTokenCount"] for o in objs] == list(range(1, 13))
    assert stream_text("gemini", events) == plain
    arr = gem(fl, client, stream=True, sse=False).json()
    assert isinstance(arr, list) and "".join(o["candidates"][0]["content"]["parts"][0]["text"] for o in arr) == plain


def test_stream_pacing(fl: Fleet, client: httpx.Client) -> None:
    p = fl["oai"]
    p.ttft_s, p.tokens_per_s, p.output_tokens = 0.1, 100.0, 11
    try:
        t0 = time.perf_counter()
        arrivals = []
        with client.stream(
            "POST",
            fl.base_url("oai") + "/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ) as r:
            dec = SSEDecoder()
            for raw in r.iter_raw():
                for e in dec.feed(raw):
                    if e.data != "[DONE]" and json.loads(e.data)["choices"][0]["delta"].get("content"):
                        arrivals.append(time.perf_counter() - t0)
        assert len(arrivals) == 11
        assert 0.09 <= arrivals[0] < 0.5  # ttft
        assert arrivals[-1] - arrivals[0] >= 0.09  # 10 gaps at 100 tok/s
        # non-streamed replies wait ttft + tokens / tokens_per_s
        t0 = time.perf_counter()
        oai(fl, client, "hi")
        assert time.perf_counter() - t0 >= 0.2
        p.enqueue(Fault.slow(ttft_s=0.0, tokens_per_s=1e9))
        t0 = time.perf_counter()
        oai(fl, client, "hi")
        assert time.perf_counter() - t0 < 0.09
    finally:
        p.output_tokens = 12


# ---- tool calls --------------------------------------------------------------------------------


def test_tool_calls_plain(fl: Fleet, client: httpx.Client) -> None:
    obj = oai(fl, client, tools=TOOLS_OAI).json()
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    tc = choice["message"]["tool_calls"][0]
    assert (
        tc["type"] == "function"
        and tc["id"].startswith("call_")
        and tc["function"] == {"name": "get_weather", "arguments": "{}"}
    )

    fl["claude"].reply = FakeReply(tool_calls=[("get_weather", {"city": "Paris"})])
    obj = ant(fl, client, tools=TOOLS_ANT).json()
    assert obj["stop_reason"] == "tool_use"
    block = obj["content"][0]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_") and block["input"] == {"city": "Paris"}

    obj = gem(fl, client, tools=TOOLS_GEM).json()
    cand = obj["candidates"][0]
    assert cand["finishReason"] == "STOP" and cand["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {}}}
    ]


def test_tool_calls_streamed(fl: Fleet, client: httpx.Client) -> None:
    for p in fl:
        p.reply = FakeReply(tool_calls=[("get_weather", {"city": "Paris"})])
    # OpenAI: index/id/name first, then argument fragments
    events = sse(call(fl, client, "openai", stream=True, tools=TOOLS_OAI))
    deltas = [json.loads(e.data)["choices"] for e in events[:-1]]
    frags = [c[0]["delta"]["tool_calls"][0] for c in deltas if c and "tool_calls" in c[0]["delta"]]
    assert (
        frags[0]["index"] == 0 and frags[0]["id"].startswith("call_") and frags[0]["function"]["name"] == "get_weather"
    )
    assert len(frags) > 2 and all("id" not in f for f in frags[1:])
    assert json.loads("".join(f["function"]["arguments"] for f in frags)) == {"city": "Paris"}
    assert [c for c in deltas if c][-1][0]["finish_reason"] == "tool_calls"
    # Anthropic: tool_use block with input_json_delta fragments
    events = sse(call(fl, client, "anthropic", stream=True, tools=TOOLS_ANT))
    objs = [json.loads(e.data) for e in events]
    start = next(o for o in objs if o["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["name"] == "get_weather"
    partial = "".join(o["delta"]["partial_json"] for o in objs if o["type"] == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert next(o for o in objs if o["type"] == "message_delta")["delta"]["stop_reason"] == "tool_use"
    # Gemini: the functionCall comes whole
    objs = [json.loads(e.data) for e in sse(call(fl, client, "gemini", stream=True, tools=TOOLS_GEM))]
    assert objs[-1]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    ]


def test_tool_result_gets_text(fl: Fleet, client: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny 21C"},
    ]
    r = client.post(
        fl.base_url("oai") + "/chat/completions", json={"model": "m", "messages": messages, "tools": TOOLS_OAI}
    )
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and "sunny 21C" in choice["message"]["content"]
    msgs = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny 21C"}]},
    ]
    obj = ant(fl, client, tools=TOOLS_ANT, messages=msgs).json()
    assert obj["stop_reason"] == "end_turn" and "sunny 21C" in obj["content"][0]["text"]
    contents = [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]},
    ]
    obj = gem(fl, client, tools=TOOLS_GEM, contents=contents).json()
    assert "sunny" in obj["candidates"][0]["content"]["parts"][0]["text"]


# ---- Gemini 3 thought signatures ---------------------------------------------------------------

GEMINI_3 = "gemini-3-pro-preview"
DUMMY = "skip_thought_signature_validator"


def gem_model(
    fl: Fleet,
    client: httpx.Client,
    model: str,
    contents: list[dict[str, Any]],
    *,
    stream: bool = False,
    sse: bool = True,
    tools: bool = True,
) -> httpx.Response:
    action = "streamGenerateContent" + ("?alt=sse" if sse else "") if stream else "generateContent"
    body: dict[str, Any] = {"contents": contents, "tools": TOOLS_GEM} if tools else {"contents": contents}
    return client.post(fl.base_url("gem") + f"/models/{model}:{action}", json=body)


ASK = {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]}


def fc(name: str, signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": name, "args": {}}}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def fr(name: str) -> dict[str, Any]:
    return {"functionResponse": {"name": name, "response": {"result": "sunny"}}}


def test_gemini_3_signs_the_first_function_call(fl: Fleet, client: httpx.Client) -> None:
    fl["gem"].reply = FakeReply(tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})])
    parts = gem_model(fl, client, GEMINI_3, [ASK]).json()["candidates"][0]["content"]["parts"]
    assert [set(p) for p in parts] == [{"functionCall", "thoughtSignature"}, {"functionCall"}]
    sig = parts[0]["thoughtSignature"]
    assert isinstance(sig, str) and len(sig) > 20 and sig != DUMMY
    # streamed (SSE or JSON array): the calls come whole in the last chunk, signed the same way
    objs = [json.loads(e.data) for e in sse(gem_model(fl, client, GEMINI_3, [ASK], stream=True))]
    last = objs[-1]["candidates"][0]["content"]["parts"]
    assert [set(p) for p in last] == [{"functionCall", "thoughtSignature"}, {"functionCall"}]
    arr = gem_model(fl, client, GEMINI_3, [ASK], stream=True, sse=False).json()
    assert "thoughtSignature" in arr[-1]["candidates"][0]["content"]["parts"][0]
    # one signature per reply, never reused
    assert (
        len({sig, last[0]["thoughtSignature"], arr[-1]["candidates"][0]["content"]["parts"][0]["thoughtSignature"]})
        == 3
    )
    # older models and thought_signatures=False: no signature
    for model in ("gemini-2.5-flash", "gemini-test"):
        parts = gem_model(fl, client, model, [ASK]).json()["candidates"][0]["content"]["parts"]
        assert all("thoughtSignature" not in p for p in parts)
    fl["gem"].thought_signatures = False
    parts = gem_model(fl, client, GEMINI_3, [ASK]).json()["candidates"][0]["content"]["parts"]
    assert all("thoughtSignature" not in p for p in parts)


def test_gemini_3_signs_the_last_text_part_of_a_reply_without_calls(fl: Fleet, client: httpx.Client) -> None:
    parts = gem_model(fl, client, GEMINI_3, [ASK], tools=False).json()["candidates"][0]["content"]["parts"]
    assert len(parts) == 1 and parts[0]["text"].startswith("Echo:") and parts[0]["thoughtSignature"]
    objs = [json.loads(e.data) for e in sse(gem_model(fl, client, GEMINI_3, [ASK], stream=True, tools=False))]
    signed = ["thoughtSignature" in o["candidates"][0]["content"]["parts"][0] for o in objs]
    assert signed == [False] * (len(objs) - 1) + [True]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_gemini_3_rejects_a_current_turn_call_without_signature(fl: Fleet, client: httpx.Client, stream: bool) -> None:
    contents = [
        ASK,
        {"role": "model", "parts": [fc("get_weather"), fc("get_weather")]},
        {"role": "user", "parts": [fr("get_weather")]},
    ]
    r = gem_model(fl, client, GEMINI_3, contents, stream=stream)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == 400 and err["status"] == "INVALID_ARGUMENT"
    assert err["message"].startswith("Function call is missing a thought_signature in functionCall parts.")
    assert "function call `default_api:get_weather` , position 2." in err["message"]
    assert "https://ai.google.dev/gemini-api/docs/thought-signatures" in err["message"]
    assert fl["gem"].calls == 1 and fl["gem"].served == 0 and fl["gem"].requests[0].json["contents"] == contents


def test_gemini_3_signature_rules(fl: Fleet, client: httpx.Client) -> None:
    def status(model: str, *contents: dict[str, Any]) -> int:
        return gem_model(fl, client, model, list(contents)).status_code

    answer = {"role": "user", "parts": [fr("get_weather"), fr("get_weather")]}
    # the first call of a step signed (the real way, or with the dummy): accepted; parallel calls need no more
    assert (
        status(GEMINI_3, ASK, {"role": "model", "parts": [fc("get_weather", "abc"), fc("get_weather")]}, answer) == 200
    )
    assert (
        status(GEMINI_3, ASK, {"role": "model", "parts": [fc("get_weather", DUMMY), fc("get_weather")]}, answer) == 200
    )
    assert status(GEMINI_3, ASK, {"role": "model", "parts": [{"text": "ok"}, fc("get_weather", "s")]}, answer) == 200
    # snake_case fields, as the API also accepts
    snake = {
        "role": "model",
        "parts": [{"function_call": {"name": "get_weather", "args": {}}, "thought_signature": "s"}],
    }
    assert status(GEMINI_3, ASK, snake, answer) == 200
    # only a later parallel call signed, or an empty signature: rejected
    assert status(GEMINI_3, ASK, {"role": "model", "parts": [fc("get_weather"), fc("get_weather", "s")]}, answer) == 400
    assert status(GEMINI_3, ASK, {"role": "model", "parts": [fc("get_weather", "")]}, answer) == 400
    # every step of the current turn is checked: the second step is unsigned (content 4)
    r = gem_model(
        fl,
        client,
        GEMINI_3,
        [
            ASK,
            {"role": "model", "parts": [fc("get_weather", "s1")]},
            answer,
            {"role": "model", "parts": [fc("now")]},
            answer,
        ],
    )
    assert r.status_code == 400 and "`default_api:now` , position 4." in r.json()["error"]["message"]
    # an unsigned call in an earlier turn (a user text message follows it) is not checked
    earlier = [
        ASK,
        {"role": "model", "parts": [fc("get_weather")]},
        answer,
        {"role": "model", "parts": [{"text": "Sunny."}]},
        ASK,
    ]
    assert status(GEMINI_3, *earlier) == 200
    # a user content with text next to the function responses also starts a new turn
    mixed = {"role": "user", "parts": [fr("get_weather"), {"text": "thanks, and Oslo?"}]}
    assert status(GEMINI_3, ASK, {"role": "model", "parts": [fc("get_weather")]}, mixed) == 200
    # older models do not check; thought_signatures overrides the model id either way
    assert status("gemini-2.5-flash", ASK, {"role": "model", "parts": [fc("get_weather")]}, answer) == 200
    fl["gem"].thought_signatures = True
    assert status("gemini-2.5-flash", ASK, {"role": "model", "parts": [fc("get_weather")]}, answer) == 400
    fl["gem"].thought_signatures = False
    assert status(GEMINI_3, ASK, {"role": "model", "parts": [fc("get_weather")]}, answer) == 200


# ---- errors and faults -------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_rate_limit(fl: Fleet, client: httpx.Client, api: str) -> None:
    fl[NAME[api]].enqueue(Fault.rate_limit(retry_after=0.2))
    r = call(fl, client, api)
    assert r.status_code == 429 and r.headers["retry-after"] == "0.2"
    obj = r.json()
    if api == "openai":
        assert r.headers["retry-after-ms"] == "200"
        assert obj["error"]["code"] == "rate_limit_exceeded" and set(obj["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
    elif api == "anthropic":
        assert obj["error"]["type"] == "rate_limit_error"
    else:
        assert obj["error"]["code"] == 429 and obj["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert obj["error"]["details"][0]["retryDelay"] == "0.2s"
    assert call(fl, client, api).status_code == 200  # consumed


def test_openai_rate_limit_as_real_ones_come(fl: Fleet, client: httpx.Client) -> None:
    # Real OpenAI 429s: the wait is in the message and x-ratelimit-reset-*, often with no retry-after.
    fl["oai"].enqueue(Fault.rate_limit(retry_after=1.612, header=False), Fault.rate_limit(retry_after=0.02))
    r = oai(fl, client)
    assert r.status_code == 429 and "retry-after" not in r.headers and "retry-after-ms" not in r.headers
    err = r.json()["error"]
    assert (err["type"], err["code"], err["param"]) == ("tokens", "rate_limit_exceeded", None)
    assert err["message"].startswith("Rate limit reached for gpt-test in organization org-llmroute on tokens per min")
    assert "Please try again in 1.612s." in err["message"]
    assert r.headers["x-ratelimit-reset-tokens"] == "1.612s" and r.headers["x-ratelimit-remaining-tokens"] == "452"
    r = oai(fl, client)
    assert r.headers["retry-after-ms"] == "20" and "Please try again in 20ms." in r.json()["error"]["message"]


def test_recorded_fault_answers_with_the_given_bytes(fl: Fleet, client: httpx.Client) -> None:
    events = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    fl["oai"].enqueue(Fault.recorded(events), Fault.recorded(b'{"error": {"message": "no"}}', status=418))
    r = oai(fl, client, stream=True)
    assert r.status_code == 200 and r.content == events
    assert r.headers["content-type"].startswith("text/event-stream")
    r = oai(fl, client)
    assert r.status_code == 418 and r.json() == {"error": {"message": "no"}}
    assert fl["oai"].fault_counts["recorded"] == 2 and fl["oai"].served == 1


def test_gemini_refuses_json_schema_where_it_takes_its_openapi_subset(fl: Fleet, client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "tags": {"type": "array", "items": {"type": ["string", "null"]}}},
        "additionalProperties": False,
    }
    tools = [{"functionDeclarations": [{"name": "get_weather", "parameters": schema}]}]
    r = gem(fl, client, tools=tools)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert r.json()["error"]["message"].split("\n") == [
        'Invalid JSON payload received. Unknown name "type" at '
        "'tools[0].function_declarations[0].parameters.properties[1].value.items': "
        "Proto field is not repeating, cannot start list.",
        'Invalid JSON payload received. Unknown name "additionalProperties" at '
        "'tools[0].function_declarations[0].parameters': Cannot find field.",
    ]
    config = {"responseMimeType": "application/json", "responseSchema": {"type": "object", "$schema": "x"}}
    r = gem(fl, client, generationConfig=config)
    assert r.status_code == 400 and "'generation_config.response_schema'" in r.json()["error"]["message"]
    # the JSON Schema fields take it
    tools = [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": schema}]}]
    assert gem(fl, client, tools=tools).status_code == 200
    config = {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert gem(fl, client, generationConfig=config).status_code == 200


THOUGHTS = "Let me think about this carefully first"  # 7 tokens


def test_thinking_model_on_each_wire_format(fl: Fleet, client: httpx.Client) -> None:
    for p in fl:
        p.thinking = THOUGHTS
    # OpenAI: reasoning tokens are counted in completion_tokens, never shown
    usage = oai(fl, client).json()["usage"]
    assert usage["completion_tokens"] == 12 + 7 and usage["completion_tokens_details"]["reasoning_tokens"] == 7
    # Anthropic: only with extended thinking on; then a thinking block with its signature
    plain = ant(fl, client).json()
    assert [b["type"] for b in plain["content"]] == ["text"] and plain["usage"]["output_tokens"] == 12
    on = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    body = ant(fl, client, **on).json()
    thinking, text = body["content"]
    assert (thinking["type"], thinking["thinking"]) == ("thinking", THOUGHTS) and thinking["signature"]
    assert text["type"] == "text" and body["usage"]["output_tokens"] == 12 + 7
    events = [json.loads(e.data) for e in sse(ant(fl, client, stream=True, **on)) if e.event != "ping"]
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert "".join(d.get("thinking", "") for d in deltas) == THOUGHTS
    assert [d["type"] for d in deltas][:8] == ["thinking_delta"] * 7 + ["signature_delta"]
    assert len(deltas[7]["signature"]) == len(thinking["signature"]) == 88  # opaque base64, one per reply
    # Gemini: always thinks (thoughtsTokenCount); thought parts only with includeThoughts
    meta = gem(fl, client).json()["usageMetadata"]
    assert (meta["candidatesTokenCount"], meta["thoughtsTokenCount"], meta["totalTokenCount"]) == (12, 7, 6 + 12 + 7)
    config = {"thinkingConfig": {"includeThoughts": True}}
    parts = gem(fl, client, generationConfig=config).json()["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": THOUGHTS, "thought": True} and "thought" not in parts[1]
    objs = [json.loads(e.data) for e in sse(gem(fl, client, stream=True, generationConfig=config))]
    assert [o["candidates"][0]["content"]["parts"][0].get("thought", False) for o in objs[:8]] == [True] * 7 + [False]
    assert [o["usageMetadata"].get("thoughtsTokenCount") for o in objs[:3]] == [1, 2, 3]
    assert objs[-1]["usageMetadata"]["thoughtsTokenCount"] == 7


def test_anthropic_redacted_thinking_and_citations(fl: Fleet, client: httpx.Client) -> None:
    p = fl["claude"]
    p.thinking, p.redacted_thinking, p.citations = THOUGHTS, True, True
    on = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    redacted, text = ant(fl, client, **on).json()["content"]
    assert redacted["type"] == "redacted_thinking" and redacted["data"] and THOUGHTS not in json.dumps(redacted)
    (citation,) = text["citations"]
    assert citation["type"] == "char_location" and text["text"].startswith(citation["cited_text"])
    events = [json.loads(e.data) for e in sse(ant(fl, client, stream=True, **on)) if e.event != "ping"]
    assert events[1]["content_block"]["type"] == "redacted_thinking"
    assert events[3]["content_block"] == {"citations": [], "type": "text", "text": ""}
    assert events[4]["delta"] == {"type": "citations_delta", "citation": citation}
    assert events[5]["delta"]["type"] == "text_delta"


def test_anthropic_message_delta_repeats_the_whole_usage(fl: Fleet, client: httpx.Client) -> None:
    fl["claude"].cached_input_tokens, fl["claude"].cache_write_input_tokens = 2, 1
    events = [json.loads(e.data) for e in sse(ant(fl, client, "a b c d e f g", stream=True))]
    start, delta = events[0]["message"]["usage"], events[-2]["usage"]
    assert delta == {
        "input_tokens": start["input_tokens"],
        "cache_creation_input_tokens": 1,
        "cache_read_input_tokens": 2,
        "output_tokens": 12,
    }
    assert start["input_tokens"] + 1 + 2 == 10


@pytest.mark.parametrize(
    ("api", "status", "kind"),
    [("openai", 503, "server_error"), ("anthropic", 529, "overloaded_error"), ("gemini", 503, "UNAVAILABLE")],
)
def test_overloaded_and_server_errors(fl: Fleet, client: httpx.Client, api: str, status: int, kind: str) -> None:
    fl[NAME[api]].enqueue(Fault.overloaded(), Fault.server_error(500))
    r = call(fl, client, api)
    assert r.status_code == status
    obj = r.json()
    found = obj["error"]["type"] if api != "gemini" else obj["error"]["status"]
    assert found == kind
    r = call(fl, client, api)
    assert r.status_code == 500
    assert (r.json()["error"].get("status") or r.json()["error"]["type"]) in ("server_error", "api_error", "INTERNAL")


@pytest.mark.parametrize("api", APIS)
def test_context_overflow(fl: Fleet, client: httpx.Client, api: str) -> None:
    fl[NAME[api]].context_window = 10
    long = " ".join(["word"] * 20)
    r = call(fl, client, api, text=long)
    assert r.status_code == 400
    msg = error_message(api, r)
    if api == "openai":
        assert r.json()["error"]["code"] == "context_length_exceeded" and "maximum context length is 10 tokens" in msg
    elif api == "anthropic":
        assert (
            msg == "prompt is too long: 23 tokens > 10 maximum" and r.json()["error"]["type"] == "invalid_request_error"
        )
    else:
        assert "input token count (23) exceeds" in msg and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert call(fl, client, api, text="short").status_code == 200
    fl[NAME[api]].enqueue(Fault.context_overflow())
    assert call(fl, client, api, text="short").status_code == 400


def test_auth(client: httpx.Client) -> None:
    with Fleet(
        [
            FakeProvider("o", "openai", api_key="k1"),
            FakeProvider("a", "anthropic", api_key="k2"),
            FakeProvider("g", "gemini", api_key="k3"),
        ]
    ) as f:
        url = f.base_url("o") + "/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        assert client.post(url, json=body).status_code == 401
        r = client.post(url, json=body, headers={"authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert client.post(url, json=body, headers={"authorization": "Bearer k1"}).status_code == 200
        url = f.base_url("a") + "/messages"
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        r = client.post(url, json=body, headers={"x-api-key": "bad", "anthropic-version": "2023-06-01"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = client.post(url, json=body, headers={"x-api-key": "k2"})
        assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
        assert (
            client.post(url, json=body, headers={"x-api-key": "k2", "anthropic-version": "2023-06-01"}).status_code
            == 200
        )
        url = f.base_url("g") + "/models/gm:generateContent"
        body = {"contents": [{"parts": [{"text": "x"}]}]}
        r = client.post(url, json=body, headers={"x-goog-api-key": "bad"})
        assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
        assert client.post(url, json=body, headers={"x-goog-api-key": "k3"}).status_code == 200
        assert client.post(url + "?key=k3", json=body).status_code == 200
        f["o"].enqueue(Fault.auth())
        assert (
            client.post(
                f.base_url("o") + "/chat/completions",
                json={"model": "m", "messages": []},
                headers={"authorization": "Bearer k1"},
            ).status_code
            == 401
        )


def test_bad_requests(fl: Fleet, client: httpx.Client) -> None:
    r = client.post(
        fl.base_url("oai") + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.post(fl.base_url("claude") + "/messages", json={"model": "m", "messages": []}, headers=ANT_HEADERS)
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]
    fl["gem"].enqueue(Fault.bad_request("nope"))
    r = gem(fl, client)
    assert r.status_code == 400 and r.json()["error"] == {"code": 400, "message": "nope", "status": "INVALID_ARGUMENT"}
    fl["oai"].enqueue(Fault.status(418, "teapot", headers={"x-extra": "1"}))
    r = oai(fl, client)
    assert r.status_code == 418 and r.headers["x-extra"] == "1" and r.json()["error"]["message"] == "teapot"


def test_stall_times_out_then_recovers(fl: Fleet) -> None:
    fl["oai"].enqueue(Fault.stall(0.6))
    with httpx.Client(timeout=httpx.Timeout(5.0, read=0.2)) as c:
        t0 = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            oai(fl, c)
        assert time.perf_counter() - t0 < 0.5
        assert oai(fl, c).status_code == 200
    # a client that waits gets the normal reply after the stall
    fl["oai"].enqueue(Fault.stall(0.2))
    with httpx.Client(timeout=5.0) as c:
        t0 = time.perf_counter()
        assert oai(fl, c).status_code == 200 and time.perf_counter() - t0 >= 0.19
    assert fl["oai"].fault_counts["stall"] == 2


@pytest.mark.parametrize("api", APIS)
def test_reset(fl: Fleet, client: httpx.Client, api: str) -> None:
    fl[NAME[api]].enqueue(Fault.reset())
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        call(fl, client, api)
    assert call(fl, client, api).status_code == 200


@pytest.mark.parametrize("api", APIS)
def test_drop_stream(fl: Fleet, client: httpx.Client, api: str) -> None:
    p = fl[NAME[api]]
    for after in (0, 3):
        p.enqueue(Fault.drop_stream(after_tokens=after))
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):
            url, kw = _stream_args(fl, api)
            with client.stream("POST", url, **kw) as r:
                assert r.status_code == 200
                for raw in r.iter_raw():
                    received += raw
        events = SSEDecoder().feed(received)
        assert stream_text(api, events) == ("" if after == 0 else "Echo: hello there")
        if api == "anthropic":
            assert "message_stop" not in [e.event for e in events]
        if api == "openai":
            assert all(e.data != "[DONE]" for e in events)
    # non-streamed: headers then a truncated body
    p.enqueue(Fault.drop_stream())
    with pytest.raises(httpx.RemoteProtocolError):
        call(fl, client, api)
    assert p.served == 0 and p.calls == 3


def _stream_args(fl: Fleet, api: str) -> tuple[str, dict[str, Any]]:
    if api == "openai":
        return fl.base_url("oai") + "/chat/completions", {
            "json": {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello there world"}]}
        }
    if api == "anthropic":
        body = {
            "model": "m",
            "stream": True,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hello there world"}],
        }
        return fl.base_url("claude") + "/messages", {"json": body, "headers": ANT_HEADERS}
    return fl.base_url("gem") + "/models/g:streamGenerateContent?alt=sse", {
        "json": {"contents": [{"parts": [{"text": "hello there world"}]}]}
    }


def _stream(client: httpx.Client, fl: Fleet, api: str) -> httpx.Response:
    url, kw = _stream_args(fl, api)
    return client.post(url, **kw)


@pytest.mark.parametrize("api", APIS)
def test_malformed(fl: Fleet, client: httpx.Client, api: str) -> None:
    p = fl[NAME[api]]
    p.enqueue(Fault.malformed(), Fault.malformed())
    r = call(fl, client, api)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()
    r = _stream(client, fl, api)
    assert r.status_code == 200
    bad = 0
    for e in sse(r):
        try:
            json.loads(e.data)
        except json.JSONDecodeError:
            bad += 1
    assert bad == 1
    assert p.fault_counts["malformed"] == 2


@pytest.mark.parametrize("api", APIS)
def test_content_filter(fl: Fleet, client: httpx.Client, api: str) -> None:
    p = fl[NAME[api]]
    p.enqueue(Fault.content_filter(), Fault.content_filter())
    obj = call(fl, client, api).json()
    if api == "openai":
        assert obj["choices"][0]["finish_reason"] == "content_filter" and not obj["choices"][0]["message"]["content"]
    elif api == "anthropic":
        assert obj["stop_reason"] == "refusal" and obj["content"] == []
    else:
        cand = obj["candidates"][0]
        assert cand["finishReason"] == "SAFETY" and "content" not in cand
    events = sse(_stream(client, fl, api))
    assert stream_text(api, events) == ""
    last = json.loads(events[-1].data if api != "openai" else events[-2].data)
    if api == "openai":
        assert last["choices"][0]["finish_reason"] == "content_filter"
    elif api == "anthropic":
        assert json.loads(events[-2].data)["delta"]["stop_reason"] == "refusal"
    else:
        assert last["candidates"][0]["finishReason"] == "SAFETY"


@pytest.mark.parametrize("api", APIS)
def test_stream_error_event(fl: Fleet, client: httpx.Client, api: str) -> None:
    fl[NAME[api]].enqueue(Fault.stream_error(after_tokens=2))
    events = sse(_stream(client, fl, api))
    assert stream_text(api, events[:-1]) == "Echo: hello"
    last = events[-1]
    if api == "anthropic":
        assert last.event == "error" and json.loads(last.data)["error"]["type"] == "overloaded_error"
    else:
        assert "error" in json.loads(last.data)


def test_error_rate_is_seeded(fl: Fleet, client: httpx.Client) -> None:
    def run() -> list[int]:
        fl["oai"].reset()
        return [oai(fl, client).status_code for _ in range(20)]

    fl["oai"].error_rate, fl["oai"].seed = 0.3, 7
    try:
        first = run()
        assert 500 in first and 200 in first and run() == first
    finally:
        fl["oai"].error_rate = 0.0


# ---- records, counters, queue -------------------------------------------------------------------


def test_requests_record_and_queue_order(fl: Fleet, client: httpx.Client) -> None:
    p = fl["oai"]
    p.enqueue(Fault.rate_limit(retry_after=0.1), Fault.server_error(503), Fault.server_error(500))
    assert [f.name for f in p.pending] == ["rate_limit", "server_error", "server_error"]
    statuses = [oai(fl, client, f"msg {i}").status_code for i in range(4)]
    assert statuses == [429, 503, 500, 200]
    assert p.calls == 4 and p.served == 1 and p.in_flight == 0 and not p.pending
    assert p.fault_counts == {"rate_limit": 1, "server_error": 2}
    rec = p.requests[3]
    assert rec.path == "/oai/v1/chat/completions" and rec.method == "POST" and not rec.stream
    assert rec.json["messages"][0]["content"] == "msg 3" and rec.headers["content-type"] == "application/json"
    assert [r.fault for r in p.requests] == ["rate_limit", "server_error", "server_error", None]
    p.reset()
    assert p.calls == 0 and p.requests == [] and not p.fault_counts
    p2 = FakeProvider("x", faults=[Fault.reset()])
    assert p2.pending == [Fault.reset()]
    with pytest.raises(TypeError):
        p2.enqueue("nope")  # type: ignore[arg-type]


def test_async_client(fl: Fleet) -> None:
    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=5.0) as c:
            url = fl.base_url("oai") + "/chat/completions"
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            rs = await asyncio.gather(*(c.post(url, json=body) for _ in range(20)))
            return [r.status_code for r in rs if r.text.endswith("data: [DONE]\n\n")]

    assert asyncio.run(main()) == [200] * 20


def test_async_context_manager_under_trio() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> int:
        async with Fleet([FakeProvider("g", "gemini")]) as f, httpx.AsyncClient() as c:
            r = await c.post(
                f.base_url("g") + "/models/m:generateContent", json={"contents": [{"parts": [{"text": "x"}]}]}
            )
            return r.status_code

    assert trio.run(main) == 200


# ---- lifecycle --------------------------------------------------------------------------------


def test_clean_shutdown_even_mid_stall() -> None:
    before = set(threading.enumerate())
    f = Fleet([FakeProvider("oai", faults=[Fault.stall(30)])])
    f.start()
    thread = f.thread
    assert thread is not None and thread.is_alive()
    url = f.base_url("oai") + "/chat/completions"
    errors: list[BaseException] = []

    def stalled() -> None:
        try:
            httpx.post(url, json={"model": "m", "messages": []}, timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=stalled)
    t.start()
    deadline = time.time() + 2
    while f["oai"].in_flight == 0 and time.time() < deadline:
        time.sleep(0.01)
    t0 = time.perf_counter()
    f.stop()
    assert time.perf_counter() - t0 < 1.0
    t.join(2)
    assert not t.is_alive() and errors and not thread.is_alive()
    assert set(threading.enumerate()) <= before
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={}, timeout=1)
    with Fleet([FakeProvider("a")]) as again:  # can bind and stop again, and base_url shapes
        assert again.base_url("a") == f"http://127.0.0.1:{again.port}/a/v1"
    assert Fleet([FakeProvider("g", "gemini")]).start().stop() is None


def test_cli_prints_ready_line_and_stops_on_sigterm(tmp_path: Any) -> None:
    spec = tmp_path / "fl.json"
    spec.write_text(
        json.dumps([{"name": "fast", "api": "anthropic", "reply": "hi there", "response_headers": {"x-test": "1"}}])
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute.testing", "--spec", str(spec)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["providers"] == {"fast": f"http://127.0.0.1:{info['port']}/fast/v1"}
        r = httpx.post(
            info["providers"]["fast"] + "/messages",
            json={"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert r.json()["content"][0]["text"] == "hi there" and r.headers["x-test"] == "1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        report = json.loads(proc.stdout.readline())["providers"]["fast"]  # what it served and would bill
        assert report["calls"] == report["served"] == 1 and report["billed_output_tokens"] == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_random_reply_lengths() -> None:
    prov = FakeProvider("rnd", output_tokens=3, output_tokens_max=40, seed=5)
    with Fleet([prov]) as fl:
        lengths = set()
        for _ in range(20):
            r = httpx.post(
                fl.base_url("rnd") + "/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            )
            lengths.add(r.json()["usage"]["completion_tokens"])
    assert len(lengths) > 5 and min(lengths) >= 3 and max(lengths) <= 40
