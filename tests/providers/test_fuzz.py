"""Random and mutated provider bytes: only llmroute errors escape the adapters, never KeyError,
TypeError or a hang."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.errors import LLMRouteError
from llmroute.providers import get_adapter
from llmroute.providers.base import Target

APIS = ["openai", "anthropic", "gemini"]
TARGET = {api: Target(provider="p", api=api, base_url="http://x", model="m", deployment="p/m") for api in APIS}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
# plausible keys make the parsers go deeper than random dicts would
shaped = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(
            st.dictionaries(st.sampled_from(["message", "delta", "finish_reason", "index"]), json_values, max_size=4),
            max_size=2,
        ),
        "content": st.lists(
            st.dictionaries(st.sampled_from(["type", "text", "id", "name", "input"]), json_values, max_size=5),
            max_size=3,
        ),
        "candidates": st.lists(
            st.dictionaries(st.sampled_from(["content", "finishReason"]), json_values, max_size=2), max_size=2
        ),
        "usage": json_values,
        "usageMetadata": json_values,
        "type": st.sampled_from(
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "message_delta",
                "message_stop",
                "error",
                "ping",
            ]
        ),
        "delta": json_values,
        "message": json_values,
        "index": json_values,
        "content_block": json_values,
        "error": json_values,
        "stop_reason": json_values,
    },
)

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ok_or_ours(fn) -> None:  # type: ignore[no-untyped-def]
    try:
        fn()
    except LLMRouteError:
        pass


@pytest.mark.parametrize("api", APIS)
@FAST
@given(body=st.binary(max_size=200) | shaped.map(lambda d: json.dumps(d).encode()))
def test_parse_response_only_raises_llmroute_errors(api: str, body: bytes) -> None:
    adapter = get_adapter(api)
    ok_or_ours(lambda: adapter.parse_response(body, TARGET[api]))


@pytest.mark.parametrize("api", APIS)
@FAST
@given(status=st.integers(100, 599), body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parse_error_always_returns_a_provider_error(api: str, status: int, body: bytes) -> None:
    err = get_adapter(api).parse_error(status, {"retry-after": "x"}, body, TARGET[api])
    assert isinstance(err, LLMRouteError)
    assert str(err)


def sse(events: list[object]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


@pytest.mark.parametrize("api", APIS)
@FAST
@given(
    events=st.lists(shaped, max_size=6),
    noise=st.binary(max_size=40),
    cut=st.integers(0, 400),
)
def test_stream_parsers_only_raise_llmroute_errors(api: str, events: list[object], noise: bytes, cut: int) -> None:
    data = sse(events)
    data = data[:cut] + noise + data[cut:]
    parser = get_adapter(api).stream_parser(TARGET[api])

    def run() -> None:
        for i in range(0, len(data), 7):
            parser.feed(data[i : i + 7])
        parser.close()

    ok_or_ours(run)
