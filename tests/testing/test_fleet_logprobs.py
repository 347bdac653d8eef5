"""The fleet returns token log-probabilities in OpenAI's and Gemini's wire formats when asked."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from llmroute.testing import FakeProvider, FakeReply, Fleet


@pytest.fixture(scope="module")
def fl() -> Iterator[Fleet]:
    with Fleet([FakeProvider("oai", api="openai"), FakeProvider("gem", api="gemini")]) as f:
        yield f


def test_openai_logprobs_only_when_asked(fl: Fleet) -> None:
    fl["oai"].reply = FakeReply(text="Hello there friend", logprobs=[-0.1, -0.2])
    url = fl.base_url("oai") + "/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    plain = httpx.post(url, json=body).json()
    assert plain["choices"][0]["logprobs"] is None
    asked = httpx.post(url, json={**body, "logprobs": True}).json()
    content = asked["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in content] == ["Hello", " there", " friend"]
    assert [t["logprob"] for t in content] == [-0.1, -0.2, -0.1]  # repeated as needed
    assert content[1]["bytes"] == list(b" there") and content[0]["top_logprobs"] == []
    fl["oai"].reply = None


def test_gemini_logprobs_only_when_asked(fl: Fleet) -> None:
    fl["gem"].reply = FakeReply(text="Hello there", logprobs=-0.5)
    url = fl.base_url("gem") + "/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    plain = httpx.post(url, json=body).json()["candidates"][0]
    assert "logprobsResult" not in plain and "avgLogprobs" not in plain
    cand = httpx.post(url, json={**body, "generationConfig": {"responseLogprobs": True}}).json()["candidates"][0]
    assert cand["avgLogprobs"] == -0.5
    chosen = cand["logprobsResult"]["chosenCandidates"]
    assert [c["token"] for c in chosen] == ["Hello", " there"] and chosen[0]["logProbability"] == -0.5
    fl["gem"].reply = None
