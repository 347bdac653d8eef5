"""Token log-probabilities: asked for (OpenAI ``logprobs``, Gemini ``responseLogprobs``) and read
into a compact summary; malformed values are ignored, never fatal."""

from __future__ import annotations

import json

import pytest

from llmroute.providers.anthropic import AnthropicAdapter
from llmroute.providers.base import Target, logprob_summary
from llmroute.providers.gemini import GeminiAdapter
from llmroute.providers.openai import OpenAIAdapter
from llmroute.types import ChatRequest, TokenLogprobs

REQ = ChatRequest(messages=[{"role": "user", "content": "hi"}], logprobs=True)


def target(api: str) -> Target:
    return Target("p", api, "https://example.test/v1", "m", "p/m")


def test_requests_ask_for_logprobs_only_when_told() -> None:
    body = json.loads(OpenAIAdapter().build_request(REQ, target("openai"), stream=False).body)
    assert body["logprobs"] is True
    plain = ChatRequest(messages=REQ.messages)
    assert "logprobs" not in json.loads(OpenAIAdapter().build_request(plain, target("openai"), stream=False).body)
    gem = json.loads(GeminiAdapter().build_request(REQ, target("gemini"), stream=False).body)
    assert gem["generationConfig"]["responseLogprobs"] is True
    ant = json.loads(AnthropicAdapter().build_request(REQ, target("anthropic"), stream=False).body)
    assert "logprobs" not in json.dumps(ant)  # Anthropic has none: nothing is sent


def test_openai_logprobs_are_summarised() -> None:
    body = {
        "id": "x",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there"},
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": "Hi", "logprob": -0.1}, {"token": " there", "logprob": -0.3}]},
            }
        ],
    }
    c = OpenAIAdapter().parse_response(json.dumps(body).encode(), target("openai"))
    assert c.logprobs == TokenLogprobs(2, pytest.approx(-0.2), -0.3)
    body["choices"][0]["logprobs"] = None
    assert OpenAIAdapter().parse_response(json.dumps(body).encode(), target("openai")).logprobs is None


def test_gemini_logprobs_are_summarised() -> None:
    body = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hi"}], "role": "model"},
                "finishReason": "STOP",
                "avgLogprobs": -0.25,
                "logprobsResult": {"chosenCandidates": [{"token": "Hi", "logProbability": -0.5}, {"token": "!"}]},
            }
        ]
    }
    c = GeminiAdapter().parse_response(json.dumps(body).encode(), target("gemini"))
    assert c.logprobs == TokenLogprobs(1, -0.5, -0.5)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (None, None),
        ("nope", None),
        ([float("nan"), float("inf"), 0.5, True, "x", -1.0], TokenLogprobs(1, -1.0, -1.0)),
        ([-9999.0, 0.0], TokenLogprobs(2, -4999.5, -9999.0)),
    ],
)
def test_logprob_summary_ignores_garbage(values: object, expected: TokenLogprobs | None) -> None:
    assert logprob_summary(values) == expected
