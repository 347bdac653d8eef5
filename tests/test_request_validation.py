"""Bad requests get one typed InvalidRequestError naming the field, and nothing is sent.

The table throws each bad input at ``router.complete`` (and ``router.stream``) for each of the
three wire formats over the loopback fleet, and checks that no request reached any provider.
The property test feeds random requests to the validator and then to every adapter: whatever the
validator lets through, every adapter can express (no AttributeError/TypeError, strict JSON).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from conftest import make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmroute
from llmroute.errors import InvalidRequestError
from llmroute.providers import get_adapter
from llmroute.providers.base import Target
from llmroute.testing import Fleet
from llmroute.types import ChatRequest

NAN = float("nan")
USER = {"role": "user", "content": "hi"}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
ASSISTANT_CALLS = {"role": "assistant", "content": None, "tool_calls": [CALL]}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def user(content: Any, **extra: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content, **extra}]


# (id, keyword arguments of complete(), the field the error must name; "..." ends a prefix)
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("messages-empty", {"messages": []}, "messages"),
    ("messages-int", {"messages": 123}, "messages"),
    ("message-not-mapping", {"messages": [1]}, "messages[0]"),
    ("role-unknown", {"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ("role-unhashable", {"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
    ("content-missing", {"messages": [{"role": "user"}]}, "messages[0].content"),
    ("content-none", {"messages": user(None)}, "messages[0].content"),
    ("content-int", {"messages": user(12345)}, "messages[0].content"),
    ("content-dict", {"messages": user({"text": "x"})}, "messages[0].content"),
    ("content-empty-list", {"messages": user([])}, "messages[0].content"),
    ("content-bare-string-part", {"messages": user(["x"])}, "messages[0].content[0]"),
    ("content-text-part-no-text", {"messages": user([{"type": "text"}])}, "messages[0].content[0].text"),
    ("content-part-unknown-type", {"messages": user([{"type": "video", "video": {}}])}, "messages[0].content[0].type"),
    (
        "content-image-url-string",
        {"messages": user([{"type": "image_url", "image_url": "http://x/a.png"}])},
        "messages[0].content[0].image_url",
    ),
    ("content-lone-surrogate", {"messages": user("caf\ud800e")}, "messages[0].content"),
    (
        "content-part-lone-surrogate",
        {"messages": user([{"type": "text", "text": "ok"}, {"type": "text", "text": "\udfff"}])},
        "messages[0].content[1].text",
    ),
    (
        "content-nested-5000-deep",
        {"messages": user([{"type": "text", "text": "x", "meta": nested(5000)}])},
        "messages[0].content[0].meta[0][0]...",
    ),
    (
        "system-image",
        {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}, USER]},
        "messages[0].content[0].type",
    ),
    (
        "tool-calls-string",
        {"messages": [USER, {"role": "assistant", "content": "x", "tool_calls": "x"}]},
        "messages[1].tool_calls",
    ),
    ("tool-calls-on-user", {"messages": user("x", tool_calls=[CALL])}, "messages[0].tool_calls"),
    (
        "tool-call-dict-arguments",
        {
            "messages": [
                USER,
                {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"a": 1}}}]},
            ]
        },
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        "tool-call-no-id",
        {"messages": [USER, {"role": "assistant", "tool_calls": [{"type": "function", "function": CALL["function"]}]}]},
        "messages[1].tool_calls[0].id",
    ),
    (
        "tool-call-no-name",
        {"messages": [USER, {"role": "assistant", "tool_calls": [{**CALL, "function": {"arguments": "{}"}}]}]},
        "messages[1].tool_calls[0].function.name",
    ),
    (
        "tool-message-no-id",
        {"messages": [USER, ASSISTANT_CALLS, {"role": "tool", "content": "42"}]},
        "messages[2].tool_call_id",
    ),
    (
        "tool-message-unknown-id",
        {"messages": [USER, ASSISTANT_CALLS, {"role": "tool", "tool_call_id": "nope", "content": "42"}]},
        "messages[2].tool_call_id",
    ),
    ("message-extra-nan", {"messages": user("x", meta=NAN)}, "messages[0].meta"),
    ("message-extra-object", {"messages": user("x", meta=object())}, "messages[0].meta"),
    ("message-int-key", {"messages": [{"role": "user", "content": "x", 1: 2}]}, "messages[0]"),
    ("max-tokens-negative", {"max_tokens": -5}, "max_tokens"),
    ("max-tokens-zero", {"max_tokens": 0}, "max_tokens"),
    ("max-tokens-float", {"max_tokens": 1.5}, "max_tokens"),
    ("max-tokens-bool", {"max_tokens": True}, "max_tokens"),
    ("max-tokens-nan", {"max_tokens": NAN}, "max_tokens"),
    ("max-tokens-huge", {"max_tokens": 10**12}, "max_tokens"),
    ("max-tokens-string", {"max_tokens": "100"}, "max_tokens"),
    ("temperature-string", {"temperature": "hot"}, "temperature"),
    ("temperature-nan", {"temperature": NAN}, "temperature"),
    ("temperature-inf", {"temperature": math.inf}, "temperature"),
    ("temperature-negative", {"temperature": -0.1}, "temperature"),
    ("temperature-too-high", {"temperature": 2.5}, "temperature"),
    ("temperature-bool", {"temperature": True}, "temperature"),
    ("top-p-too-high", {"top_p": 1.5}, "top_p"),
    ("top-p-nan", {"top_p": NAN}, "top_p"),
    ("tools-string", {"tools": "str"}, "tools"),
    ("tools-int-item", {"tools": [42]}, "tools[0]"),
    ("tools-no-function", {"tools": [{"type": "function"}]}, "tools[0].function"),
    ("tools-not-function-type", {"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    (
        "tools-bad-name",
        {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
        "tools[0].function.name",
    ),
    ("tools-duplicate-name", {"tools": [TOOL, TOOL]}, "tools[1].function.name"),
    (
        "tools-parameters-string",
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
        "tools[0].function.parameters",
    ),
    (
        "tools-parameters-nan",
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"maximum": NAN}}}]},
        "tools[0].function.parameters.maximum",
    ),
    ("tool-choice-unknown", {"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ("tool-choice-without-tools", {"tool_choice": "auto"}, "tool_choice"),
    (
        "tool-choice-undeclared",
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}},
        "tool_choice.function.name",
    ),
    ("stop-int", {"stop": 5}, "stop"),
    ("stop-empty-string", {"stop": [""]}, "stop[0]"),
    ("stop-too-many", {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ("stop-int-item", {"stop": ["a", 1]}, "stop[1]"),
    ("response-format-string", {"response_format": "json"}, "response_format"),
    ("response-format-unknown-type", {"response_format": {"type": "xml"}}, "response_format.type"),
    ("response-format-schema-missing", {"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    (
        "response-format-schema-no-name",
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name",
    ),
    ("extra-body-list", {"extra_body": [1]}, "extra_body"),
    ("extra-body-nan", {"extra_body": {"seed": NAN}}, "extra_body.seed"),
    ("extra-body-object", {"extra_body": {"x": object()}}, "extra_body.x"),
    ("extra-body-int-key", {"extra_body": {1: "a"}}, "extra_body"),
    ("extra-body-surrogate", {"extra_body": {"user": "\udfff"}}, "extra_body.user"),
    ("extra-body-deep", {"extra_body": {"x": nested(5000)}}, "extra_body.x[0][0]..."),
    (
        "tool-call-id-on-a-user-message-not-json",
        {"messages": [user("x")[0] | {"tool_call_id": [NAN]}]},
        "messages[0].tool_call_id[0]",
    ),
    # fields llmroute controls: an output cap a budget could not see, extra billed answers, streaming
    ("extra-body-max-tokens", {"extra_body": {"max_tokens": 100_000}}, "extra_body.max_tokens"),
    ("extra-body-max-completion", {"extra_body": {"max_completion_tokens": 9}}, "extra_body.max_completion_tokens"),
    ("extra-body-n", {"extra_body": {"n": 8}}, "extra_body.n"),
    ("extra-body-stream", {"extra_body": {"stream": False}}, "extra_body.stream"),
    (
        "extra-body-gemini-max-output",
        {"extra_body": {"generationConfig": {"maxOutputTokens": 65536}}},
        "extra_body.generationConfig.maxOutputTokens",
    ),
    (
        "extra-body-gemini-candidates",
        {"extra_body": {"generationConfig": {"candidateCount": 4}}},
        "extra_body.generationConfig.candidateCount",
    ),
]

#: The model of each wire format in conftest.make_config, and its fleet providers.
WIRES = {"openai": ("small", ("oai", "oai2")), "anthropic": ("claude", ("claude",)), "gemini": ("gemini", ("gem",))}


def _args(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    kwargs.setdefault("messages", [USER])
    return kwargs


@pytest.fixture(scope="module")
def shared_router(fleet: Fleet) -> Iterator[llmroute.Router]:
    """One router for the whole table: no call of it ever opens a connection."""
    router = llmroute.Router.from_dict(make_config(fleet))
    yield router
    anyio.run(router.aclose)


@pytest.mark.anyio
@pytest.mark.parametrize("wire", list(WIRES))
@pytest.mark.parametrize(("kwargs", "field"), [pytest.param(k, f, id=i) for i, k, f in BAD])
async def test_bad_input_is_one_typed_error_and_nothing_is_sent(
    fleet: Fleet, shared_router: llmroute.Router, wire: str, kwargs: dict[str, Any], field: str
) -> None:
    model, _ = WIRES[wire]
    router = shared_router
    with pytest.raises(InvalidRequestError) as info:
        await router.complete(**_args(kwargs), model=model)
    got = getattr(info.value, "field", None)
    assert got == field or (field.endswith("...") and str(got).startswith(field[:-3])), got
    assert str(info.value).startswith(f"{got}: ")
    assert len(str(info.value)) < 600  # never echoes a huge value
    with pytest.raises(InvalidRequestError):  # a stream refuses at call time, before iterating
        router.stream(**_args(kwargs), model=model)
    with pytest.raises(InvalidRequestError):
        router.plan(**_args(kwargs), model=model)
    # the whole route too: a bad parameter is never sent to any deployment by fallback
    with pytest.raises(InvalidRequestError):
        await router.complete(**_args(kwargs))
    assert all(fleet[name].calls == 0 for name in ("oai", "oai2", "claude", "gem"))


def test_the_table_is_large() -> None:
    assert len(BAD) >= 40


@pytest.mark.anyio
@pytest.mark.parametrize("wire", list(WIRES))
async def test_good_requests_still_go_through(fleet: Fleet, wire: str) -> None:
    model, providers = WIRES[wire]
    router = llmroute.Router.from_dict(make_config(fleet))
    schema = {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What time is it? é 漢字 😀"}]},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
    ]
    try:
        for kwargs in (
            {"messages": "hello"},
            {"messages": conversation, "tools": [TOOL], "tool_choice": "auto"},
            {"messages": [USER], "max_tokens": 1000, "temperature": 0, "top_p": 1, "stop": "x"},
            {"messages": [USER], "response_format": {"type": "json_schema", "json_schema": schema}},
            {"messages": [USER], "stop": ["a", "b"], "temperature": 2.0},
        ):
            reply = await router.complete(**kwargs, model=model)
            assert reply.model == model
    finally:
        await router.aclose()
    assert sum(fleet[name].calls for name in providers) == 5


def test_a_huge_bad_value_is_not_echoed() -> None:
    from llmroute._request import validate_request

    with pytest.raises(InvalidRequestError) as info:
        validate_request(ChatRequest([USER], stop=["x" * 10_000_000, 3]))
    assert info.value.field == "stop[1]" and len(str(info.value)) < 200
    with pytest.raises(InvalidRequestError) as info:
        validate_request(ChatRequest([USER], temperature="hot" * 1_000_000))  # type: ignore[arg-type]
    assert len(str(info.value)) < 200
    assert info.value.__context__ is None and info.value.__cause__ is None


# --------------------------------------------------------------------------- property test

APIS = ["openai", "anthropic", "gemini"]
TARGETS = {api: Target(provider="p", api=api, base_url="http://x", model="m", deployment="p/m") for api in APIS}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["\ud800", "auto", "none", "required", "text", "json_object", "json_schema", "f", "c1"])
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "text", "name", "url", "id", "x"]) | st.text(max_size=4), inner, max_size=4
        )
    ),
    max_leaves=12,
)
text = st.text(max_size=12)
text_part = st.builds(lambda t: {"type": "text", "text": t}, text)
image_part = st.sampled_from(
    [
        {"type": "image_url", "image_url": {"url": "http://x/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
)
arguments = st.dictionaries(st.sampled_from(["a", "city", "n"]), st.integers() | text, max_size=2).map(json.dumps)


@st.composite
def valid_messages(draw: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if draw(st.booleans()):
        role = draw(st.sampled_from(["system", "developer"]))
        out.append({"role": role, "content": draw(text | st.lists(text_part, min_size=1, max_size=2))})
    n = 0
    for _ in range(draw(st.integers(1, 3))):
        content = draw(text | st.lists(text_part | image_part, min_size=1, max_size=3))
        out.append({"role": "user", "content": content})
        if draw(st.booleans()):
            ids = [f"c{n + k}" for k in range(draw(st.integers(1, 2)))]
            n += len(ids)
            calls = [
                {
                    "id": i,
                    "type": "function",
                    "function": {"name": draw(st.sampled_from(["f", "g"])), "arguments": draw(arguments)},
                }
                for i in ids
            ]
            out.append({"role": "assistant", "content": draw(st.none() | text), "tool_calls": calls})
            out += [{"role": "tool", "tool_call_id": i, "content": draw(text)} for i in ids]
        else:
            out.append({"role": "assistant", "content": draw(text)})
    return out[:-1] if draw(st.booleans()) else out


tool = st.builds(
    lambda name, params: {"type": "function", "function": {"name": name, **params}},
    st.sampled_from(["f", "g", "_x-1"]),
    st.sampled_from([{}, {"parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}]),
)
valid_requests = st.builds(
    ChatRequest,
    messages=valid_messages(),
    tools=st.none() | st.lists(tool, max_size=3, unique_by=lambda t: t["function"]["name"]),
    max_tokens=st.none() | st.integers(1, 1_000_000),
    temperature=st.none() | st.floats(0, 2),
    top_p=st.none() | st.floats(0, 1),
    stop=st.none() | st.text(min_size=1, max_size=3) | st.lists(st.text(min_size=1, max_size=3), max_size=4),
    response_format=st.none()
    | st.sampled_from(
        [
            {"type": "json_object"},
            {"type": "text"},
            {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
        ]
    ),
    extra_body=st.none() | st.dictionaries(st.sampled_from(["seed", "metadata", "user"]), json_like, max_size=2),
)
FIELDS = [
    "messages",
    "tools",
    "tool_choice",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "response_format",
    "extra_body",
]


@st.composite
def requests(draw: Any) -> ChatRequest:
    """Mostly valid requests, a third with one field replaced by junk and a third with one message
    key replaced by junk, so both the validator's refusals and the adapters are exercised."""
    request = draw(valid_requests)
    if request.tools:
        names = [t["function"]["name"] for t in request.tools]
        choice = draw(st.none() | st.sampled_from(["auto", "none", "required", *names]))
        if choice in names:
            choice = {"type": "function", "function": {"name": choice}}
        request = dataclasses.replace(request, tool_choice=choice)
    how = draw(st.integers(0, 2))
    if how == 1:
        request = dataclasses.replace(request, **{draw(st.sampled_from(FIELDS)): draw(json_like)})
    elif how == 2:
        messages = [dict(m) for m in request.messages]
        m = draw(st.sampled_from(messages))
        m[draw(st.sampled_from(["role", "content", "tool_calls", "tool_call_id", "name", "x"]))] = draw(json_like)
        request = dataclasses.replace(request, messages=messages)
    return request


def _not_json(constant: str) -> None:
    pytest.fail(f"the body holds {constant}, which is not JSON")


def validate_request(request: ChatRequest) -> None:
    from llmroute._request import validate_request

    validate_request(request)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_whatever_validation_lets_through_every_adapter_can_send(request: ChatRequest) -> None:
    try:
        validate_request(request)
    except InvalidRequestError as exc:
        assert exc.field and str(exc).startswith(exc.field.split(".")[0].split("[")[0])
        return
    for api in APIS:
        try:
            http = get_adapter(api).build_request(request, TARGETS[api], stream=api == "gemini")
        except InvalidRequestError:
            continue  # a valid request this wire format cannot express: typed, and before sending
        body = json.loads(http.body, parse_constant=_not_json)
        assert isinstance(body, dict)
        http.body.decode("utf-8")  # strict UTF-8 on the wire
