"""Real recorded provider traffic (``tests/fixtures/recorded``, see its SOURCES.md) replayed through
the adapters, then through the router over loopback.

Every body must parse. The expected values are what the official SDKs read from the same bytes
(openai 3.57, anthropic 2.15, google-genai 3.6: text without thoughts, client tool calls, finish
reason, usage), in llmroute's terms: finish reasons normalised; Anthropic input = ``input_tokens``
+ cache reads + cache writes; Gemini input = ``promptTokenCount`` + ``toolUsePromptTokenCount``
and output = ``candidatesTokenCount`` + ``thoughtsTokenCount``. Where those SDK versions cannot
type a body (Mistral's list ``content``; Anthropic streams with ``mcp_tool_use``, advisor or
compaction blocks) the values were read by hand from the events. Long texts are checked by
length, start and end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _streams import feed_stream, random_sizes
from conftest import make_config

import llmroute
from llmroute.errors import (
    BadRequestError,
    ContentFilteredError,
    ProviderError,
    RateLimitError,
    ResponseError,
)
from llmroute.providers import get_adapter
from llmroute.providers.base import Target
from llmroute.testing import Fault, Fleet
from llmroute.types import Chunk, Completion, ToolCall

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded"

Text = str | tuple[int, str, str] | None


@dataclass(frozen=True)
class Reads:
    """A body that parses: text (exact, or ``(length, start, end)``), client tool calls
    ``(id, name, arguments)``, finish reason, ``(input, output, cached input)`` tokens, model."""

    text: Text
    calls: tuple[tuple[str, str, dict[str, Any]], ...]
    finish: str | None
    usage: tuple[int, int, int]
    model: str


@dataclass(frozen=True)
class Fails:
    """A body that maps to an error (an error response, a filtered reply, an error event)."""

    error: type[ProviderError]
    status: int | None


EXPECTED: dict[str, Reads | Fails] = {
    # ---- Anthropic Messages
    "anthropic/error-400-invalid-request.json": Fails(BadRequestError, 400),
    "anthropic/error-404-not-found.json": Fails(BadRequestError, 404),
    "anthropic/message-code-execution.json": Reads(
        "The result of **3 × 12,390 = 37,170**.", (), "stop", (4692, 106, 0), "claude-sonnet-4-6"
    ),
    "anthropic/message-parallel-tool-use.json": Reads(
        (156, "I'll help you find out w", "pare their ages."),
        tuple(
            (cid, "retrieve_entity_info", {"name": name})
            for cid, name in [
                ("toolu_0167cfEnoQaPviGdVXA95zcu", "Alice"),
                ("toolu_01EEe2V5HD1Ac4rKiUR4HD2T", "Bob"),
                ("toolu_01XFyAjstT3966qvRynZyVPo", "Charlie"),
                ("toolu_013mnQZbgtK2oe3Mo3XKJsx3", "Daisy"),
            ]
        ),
        "tool_calls",
        (423, 202, 0),
        "claude-haiku-4-5-20251001",
    ),
    "anthropic/message-redacted-thinking.json": Reads(
        (341, "I notice that your messa", " you with today?"), (), "stop", (92, 196, 0), "claude-sonnet-4-5-20250929"
    ),
    "anthropic/message-thinking-tool-use.json": Reads(
        (103, "I'll help you find the l", "try you're from."),
        (("toolu_01YGzqpRE16Vricda3Aqcejo", "get_user_country", {}),),
        "tool_calls",
        (398, 155, 0),
        "claude-sonnet-4-20250514",
    ),
    "anthropic/stream-advisor-tool.sse": Reads(
        (190, "The task asks \"What's 2+", "answer is **4**."), (), "stop", (2411, 145, 0), "claude-sonnet-5"
    ),
    "anthropic/stream-code-execution.sse": Reads(
        (501, "I'll calculate that expr", ",330,955.97745**"), (), "stop", (4714, 304, 0), "claude-sonnet-4-6"
    ),
    "anthropic/stream-compaction-cache.sse": Reads("Hello! 👋", (), "stop", (181, 8, 0), "claude-sonnet-4-6"),
    "anthropic/stream-mcp-tool.sse": Reads(
        (806, "**Pydantic-AI** is a fra", "ic complexities."), (), "stop", (3042, 354, 0), "claude-sonnet-4-5-20250929"
    ),
    "anthropic/stream-redacted-thinking.sse": Reads(
        (359, "I notice that you've sen", "ask or question?"), (), "stop", (92, 189, 0), "claude-sonnet-4-5-20250929"
    ),
    "anthropic/stream-text-editor-code-execution.sse": Reads(
        (542, "Sure! I'll do both steps", "t you specified."), (), "stop", (7621, 384, 0), "claude-sonnet-4-6"
    ),
    "anthropic/stream-text.sse": Reads("2", (), "stop", (20, 5, 0), "claude-sonnet-4-5-20250929"),
    "anthropic/stream-tool-search-then-client-tool.sse": Reads(
        (158, "Let me search for a tool", "ge rate for you."),
        (("toolu_01EFn5wTNBYA8Reni8rbmnHT", "get_exchange_rate", {"from_currency": "USD", "to_currency": "EUR"}),),
        "tool_calls",
        (1591, 175, 0),
        "claude-sonnet-4-6",
    ),
    "anthropic/stream-web-fetch.sse": Reads(
        (167, "Pydantic AI is a Python ", "h Generative AI."), (), "stop", (7244, 153, 0), "claude-sonnet-4-20250514"
    ),
    "anthropic/stream-web-search-citations.sse": Reads(
        (338, "Let me search for histor", " the same right."), (), "stop", (12251, 153, 0), "claude-sonnet-4-5-20250929"
    ),
    # ---- Gemini generateContent (Gemini API and Vertex AI)
    "gemini/cached-content.json": Reads("Paris.", (), "stop", (3520, 44, 3512), "gemini-2.5-flash"),
    "gemini/code-execution.json": Reads(
        (131, "Today is **Thursday, May", "ime (CEST) zone."), (), "stop", (1989, 943, 0), "gemini-3-flash-preview"
    ),
    "gemini/error-404-not-found.json": Fails(BadRequestError, 404),
    "gemini/function-call-json-schema-tool.json": Reads(
        '{\n  "city": "Mexico City",\n  "country": "Mexico"\n} ', (), "stop", (161, 72, 0), "gemini-3-flash-preview"
    ),
    "gemini/function-call-no-args.json": Reads(
        None, (("call_0", "bar", {}),), "tool_calls", (21, 1, 0), "gemini-2.0-flash"
    ),
    "gemini/max-tokens-thinking-empty.json": Reads(None, (), "length", (15, 2, 0), "gemini-2.5-pro"),
    "gemini/safety-settings.json": Fails(ContentFilteredError, None),
    "gemini/stream-code-execution.sse": Reads(
        (82, "The result of $65465 - 6", "330,955.97745**."), (), "stop", (507, 276, 0), "gemini-3-flash-preview"
    ),
    "gemini/stream-function-call-signature.sse": Reads(
        "", (("call_0", "get_country", {}),), "tool_calls", (29, 212, 0), "gemini-3-pro-preview"
    ),
    "gemini/stream-function-call.sse": Reads(
        "", (("call_0", "get_capital", {"country": "France"}),), "tool_calls", (52, 5, 0), "gemini-2.0-flash"
    ),
    "gemini/stream-thinking.sse": Reads(
        (1938, "This is a great question", "ght not see you."), (), "stop", (34, 1256, 0), "gemini-2.5-pro"
    ),
    "gemini/stream-usage.sse": Reads(
        "\n".join(str(i) for i in range(1, 31)), (), "stop", (18, 115, 0), "gemini-2.5-flash"
    ),
    "gemini/stream-web-fetch.sse": Reads(
        "Pydantic AI Gateway is now available!", (), "stop", (4642, 62, 0), "gemini-2.5-flash"
    ),
    "gemini/thinking-text.json": Reads(
        (3291, "Of course. That's an exc", "nage the hazard."), (), "stop", (1106, 1867, 0), "gemini-2.5-pro"
    ),
    "gemini/vertex-error-400.json": Fails(BadRequestError, 400),
    "gemini/vertex-model-armor-finish.json": Fails(ContentFilteredError, None),
    "gemini/vertex-model-armor-prompt-blocked.json": Fails(ContentFilteredError, None),
    "gemini/vertex-stream-flex.sse": Reads("OK", (), "stop", (5, 101, 0), "gemini-3-flash-preview"),
    # ---- OpenAI Chat Completions and compatible servers
    "openai/crusoe-stream.sse": Reads("1, 2, 3, 4, 5", (), "stop", (46, 14, 0), "meta-llama/Llama-3.3-70B-Instruct"),
    "openai/deepseek-reasoning.json": Reads(
        (1568, "Crossing the street safe", "e fully crossed."), (), "stop", (12, 789, 0), "deepseek-reasoner"
    ),
    "openai/google-compat-text.json": Reads(
        "The current time is Noon.", (), "stop", (66, 6, 0), "gemini-2.5-pro-preview-05-06"
    ),
    "openai/google-compat-tool-call-empty-id.json": Reads(
        None, (("call_0", "get_current_time", {}),), "tool_calls", (35, 12, 0), "gemini-2.5-pro-preview-05-06"
    ),
    "openai/groq-error-400-tool-use-failed.json": Fails(BadRequestError, 400),
    "openai/groq-tool-call-reasoning.json": Reads(
        None,
        (("fc_beee8d84-e6d7-4980-bec6-298d3ec7a73f", "final_result", {"response": "yes"}),),
        "tool_calls",
        (254, 174, 0),
        "openai/gpt-oss-120b",
    ),
    "openai/mistral-magistral-stream.sse": Reads(
        (607, "To cross the street safe", "a safe crossing."), (), "stop", (10, 232, 0), "magistral-medium-latest"
    ),
    "openai/mistral-magistral-thinking.json": Reads(
        (1282, "Crossing a river is quit", "ions. Stay safe!"), (), "stop", (664, 747, 0), "magistral-medium-latest"
    ),
    "openai/mistral-small-thinking.json": Reads("4", (), "stop", (28, 35, 0), "mistral-small-latest"),
    "openai/openai-cached-prompt.json": Reads("OK", (), "stop", (4020, 4, 4012), "gpt-5.6-sol"),
    "openai/openai-error-400-invalid-value.json": Fails(BadRequestError, 400),
    "openai/openai-error-404-model-not-found.json": Fails(BadRequestError, 404),
    "openai/openai-stream-text.sse": Reads("Paris.", (), "stop", (13, 11, 0), "gpt-5-2025-08-07"),
    "openai/openai-stream-tool-call.sse": Reads(
        "",
        (("call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital", {"country": "UK"}),),
        "tool_calls",
        (53, 15, 0),
        "gpt-4o-mini-2024-07-18",
    ),
    "openai/openai-tool-call.json": Reads(
        None,
        (("call_VrtIe6Ngj9pFHcIGCiIp5O0R", "get_mixed_content", {}),),
        "tool_calls",
        (126, 85, 0),
        "gpt-5-mini-2025-08-07",
    ),
    "openai/openrouter-error-429.json": Fails(RateLimitError, 429),
    # an error event after the finish, in the same 200 stream: the stream fails with it
    "openai/openrouter-stream-error.sse": Fails(BadRequestError, 400),
    # no finish_reason at all, and "id": "" on every chunk
    "openai/snowflake-stream-empty-ids.sse": Reads(
        (93, "15 × 27 = **405**\n\nHere'", " + 105 = **405**"), (), None, (45, 73, 0), "claude-sonnet-4-6"
    ),
    "openai/zai-thinking-stream.sse": Reads("4", (), "stop", (13, 564, 0), "glm-4.7"),
}


def body(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def target(api: str) -> Target:
    return Target("recorded", api, "http://recorded.invalid", "m", "d")


def assemble(chunks: list[Chunk]) -> Completion:
    """The completion a caller assembles from *chunks* (text, calls by index, last finish and usage)."""
    calls: dict[int, list[Any]] = {}
    for chunk in chunks:
        for d in chunk.tool_calls:
            slot = calls.setdefault(d.index, [None, None, ""])
            slot[0] = d.id or slot[0]
            slot[1] = d.name or slot[1]
            slot[2] += d.arguments
    finishes = [c.finish_reason for c in chunks if c.finish_reason is not None]
    usages = [c.usage for c in chunks if c.usage is not None]
    return Completion(
        "".join(c.text for c in chunks),
        tuple(ToolCall(*slot) for _, slot in sorted(calls.items())),
        finishes[-1] if finishes else None,
        usages[-1],
        chunks[-1].response_model,
    )


def parse(name: str) -> Completion:
    """*name* through its adapter: ``parse_response`` for a JSON body, the stream parser for SSE."""
    api = name.split("/")[0]
    adapter = get_adapter(api)
    if name.endswith(".sse"):
        return assemble(feed_stream(adapter, target(api), body(name)))
    return adapter.parse_response(body(name), target(api))


def check_text(got: str | None, want: Text) -> None:
    if isinstance(want, tuple):
        assert got is not None
        assert (len(got), got[: len(want[1])], got[len(got) - len(want[2]) :]) == want
    else:
        assert got == want


def test_every_recorded_file_is_expected_and_sourced() -> None:
    files = {str(p.relative_to(RECORDED)) for p in RECORDED.glob("*/*") if p.parent.name != "LICENSES"}
    assert files == set(EXPECTED)
    sources = (RECORDED / "SOURCES.md").read_text(encoding="utf-8")
    assert all(f"| `{name}` |" in sources for name in files)
    assert (RECORDED / "LICENSES" / "pydantic-ai-MIT.txt").read_text().startswith("The MIT License")


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if isinstance(e, Reads)))
def test_recorded_reply_reads_as_the_sdk_does(name: str) -> None:
    want = EXPECTED[name]
    assert isinstance(want, Reads)
    got = parse(name)
    check_text(got.text, want.text)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in got.tool_calls] == list(want.calls)
    assert all(c.id and c.name for c in got.tool_calls)
    assert got.finish_reason == want.finish
    u = got.usage
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens) == want.usage
    assert got.response_model == want.model


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if isinstance(e, Fails)))
def test_recorded_failure_maps_to_its_error(name: str) -> None:
    want = EXPECTED[name]
    assert isinstance(want, Fails)
    api = name.split("/")[0]
    if want.status is not None and not name.endswith(".sse"):
        err = get_adapter(api).parse_error(want.status, {}, body(name), target(api))
    else:
        with pytest.raises(ProviderError) as info:
            parse(name)
        err = info.value
    assert type(err) is want.error, repr(err)
    assert err.status == want.status
    assert err.message


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.endswith(".sse")))
def test_recorded_stream_decodes_the_same_in_any_split(name: str) -> None:
    api = name.split("/")[0]
    data = body(name)
    try:
        whole: Any = feed_stream(get_adapter(api), target(api), data)
    except ProviderError as exc:
        whole = type(exc)
    for seed in range(3):
        try:
            split: Any = feed_stream(get_adapter(api), target(api), data, random_sizes(len(data), seed))
        except ProviderError as exc:
            split = type(exc)
        assert split == whole


def test_server_tool_blocks_are_not_tool_calls() -> None:
    # Anthropic runs server tools (code execution, web search/fetch, MCP, tool search) itself: their
    # server_tool_use / mcp_tool_use blocks stream input_json_delta events like client tools do, but
    # they are not calls for the caller to run. Only the client tool_use block is a call.
    for name in [
        "anthropic/stream-code-execution.sse",
        "anthropic/stream-mcp-tool.sse",
        "anthropic/stream-web-fetch.sse",
        "anthropic/stream-web-search-citations.sse",
        "anthropic/stream-advisor-tool.sse",
        "anthropic/stream-text-editor-code-execution.sse",
    ]:
        assert b"input_json_delta" in body(name)
        assert parse(name).tool_calls == (), name
    (call,) = parse("anthropic/stream-tool-search-then-client-tool.sse").tool_calls
    assert call.name == "get_exchange_rate"


def test_mistral_list_content_reads_text_parts_and_leaves_thinking_out() -> None:
    data = json.loads(body("openai/mistral-small-thinking.json"))
    thinking, text = data["choices"][0]["message"]["content"]
    assert (thinking["type"], text) == ("thinking", {"text": "4", "type": "text"})
    assert parse("openai/mistral-small-thinking.json").text == "4"
    got = parse("openai/mistral-magistral-stream.sse").text
    assert got is not None and "Okay, the user is asking" not in got  # the thinking deltas' text


def test_content_that_is_neither_text_nor_parts_is_a_response_error() -> None:
    for content in (42, {"type": "text", "text": "hi"}, [{"type": "text", "text": 7}]):
        raw = json.dumps({"choices": [{"message": {"content": content}, "finish_reason": "stop"}]}).encode()
        with pytest.raises(ResponseError):
            get_adapter("openai").parse_response(raw, target("openai"))


# ---------------------------------------------------------------------------- through the router


def router(fleet: Fleet, attempts: int = 2) -> llmroute.Router:
    cfg = make_config(fleet, retry={"attempts": attempts, "initial_backoff_s": 0.0, "jitter_s": 0.0})
    return llmroute.Router.from_dict(cfg, transport=httpx.AsyncHTTPTransport(verify=False))


QUESTION = [{"role": "user", "content": "What is 2+2?"}]
MODEL = {"openai": "small", "anthropic": "claude", "gemini": "gemini"}
PROVIDER = {"openai": "oai", "anthropic": "claude", "gemini": "gem"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name",
    [
        "openai/mistral-small-thinking.json",
        "openai/mistral-magistral-stream.sse",
        "anthropic/stream-code-execution.sse",
        "anthropic/stream-mcp-tool.sse",
        "gemini/stream-code-execution.sse",
    ],
)
async def test_recorded_reply_served_once_through_the_router(fleet: Fleet, name: str) -> None:
    # Served over loopback as recorded, once: it must be answered by the first attempt (a reply
    # llmroute cannot read is retried, so the call would be sent and billed twice).
    api = name.split("/")[0]
    want = EXPECTED[name]
    assert isinstance(want, Reads)
    fleet[PROVIDER[api]].enqueue(Fault.recorded(body(name)))
    async with router(fleet) as r:
        if name.endswith(".sse"):
            stream = r.stream(QUESTION, model=MODEL[api])
            async for _ in stream:
                pass
            reply = stream.reply
        else:
            reply = await r.complete(QUESTION, model=MODEL[api])
    assert reply is not None
    check_text(reply.text, want.text)
    assert reply.tool_calls == () and "tool_calls" not in reply.to_message()
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == want.usage[:2]
    assert [a.outcome for a in reply.route.attempts] == ["ok"]
    assert fleet[PROVIDER[api]].calls == 1


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("follow_up", ["anthropic", "gemini"])
async def test_empty_tool_call_id_gets_one_id_and_the_conversation_goes_on(
    fleet: Fleet, streamed: bool, follow_up: str
) -> None:
    # Google's OpenAI-compatible endpoint answered a tool call with "id": "" (recorded). Streamed,
    # the same call arrives as chunk deltas; both paths must give the call the same id, which the
    # next turn (here routed to Anthropic or Gemini, which tie results to calls by id) can use.
    recorded = json.loads(body("openai/google-compat-tool-call-empty-id.json"))
    call = recorded["choices"][0]["message"]["tool_calls"][0]
    assert call["id"] == ""
    if streamed:
        chunk = {"id": recorded["id"], "object": "chat.completion.chunk", "model": recorded["model"]}
        first = {
            **chunk,
            "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{**call, "index": 0}]}}],
        }
        last = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
        served = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in (first, last)) + b"data: [DONE]\n\n"
    else:
        served = body("openai/google-compat-tool-call-empty-id.json")
    fleet["oai"].enqueue(Fault.recorded(served))
    tools = [{"type": "function", "function": {"name": "get_current_time", "parameters": {"type": "object"}}}]
    async with router(fleet, attempts=1) as r:
        if streamed:
            stream = r.stream(QUESTION, model="small", tools=tools)
            async for _ in stream:
                pass
            reply = stream.reply
        else:
            reply = await r.complete(QUESTION, model="small", tools=tools)
        assert reply is not None
        (got,) = reply.tool_calls
        assert (got.id, got.name) == ("call_0", "get_current_time")
        history = [*QUESTION, reply.to_message(), {"role": "tool", "tool_call_id": got.id, "content": "Noon"}]
        answer = await r.complete(history, model=MODEL[follow_up], tools=tools)
    assert answer.text is not None and answer.text.startswith("Tool result received:") and "Noon" in answer.text
    sent = fleet[PROVIDER[follow_up]].requests[-1].json
    if follow_up == "anthropic":
        use, result = sent["messages"][1]["content"][0], sent["messages"][2]["content"][0]
        assert (use["type"], use["id"], result["tool_use_id"]) == ("tool_use", "call_0", "call_0")
    else:
        assert sent["contents"][1]["parts"][0]["functionCall"]["name"] == "get_current_time"
        assert sent["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_current_time"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name", ["gemini/vertex-model-armor-finish.json", "gemini/vertex-model-armor-prompt-blocked.json"]
)
async def test_model_armor_block_is_content_filtered_and_not_retried(fleet: Fleet, name: str) -> None:
    fleet["gem"].enqueue(Fault.recorded(body(name)))
    async with router(fleet) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            await r.complete(QUESTION, model="gemini")
    (err,) = info.value.errors
    assert isinstance(err, ContentFilteredError) and "MODEL_ARMOR" in str(err)
    assert fleet["gem"].calls == 1
