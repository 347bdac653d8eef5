"""Fixtures and helpers for the framework integration tests (imported by each test module; not a
conftest.py, whose module name would shadow tests/conftest.py): a loopback fleet and a config where a
model is served by two OpenAI deployments and an Anthropic one, so a scripted 503 on the first falls back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pydantic
import pytest

from llmroute.testing import FakeProvider, FakeReply, Fleet

NAMES = ("primary", "backup", "claude")

#: What every agent test asks, and the tool it is given.
QUESTION = "What is the weather in Paris?"
WEATHER = "sunny, 21 C"


#: ``get_weather`` as an OpenAI tool, for tests that call the SDKs without an agent.
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


class Answer(pydantic.BaseModel):
    """The structured output the integration tests ask for (the fake model's JSON reply)."""

    reply: str
    ok: bool


def get_weather(city: str) -> str:
    """Get the weather in a city."""
    return f"{WEATHER} in {city}"


def scripted(request: Any) -> str | FakeReply:
    """The fake model: calls ``get_weather`` for a user question when offered it, answers a tool
    result with what it received, and fills an output tool (``final_result``, ``Answer``, ...) with
    a valid ``Answer``; otherwise the fleet's default reply (an echo, or JSON in JSON mode)."""
    tools = [t.get("function", t).get("name") for t in request.get("tools") or []]
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    last_is_tool = last.get("role") == "tool" or (
        isinstance(last.get("content"), list) and any(p.get("type") == "tool_result" for p in last["content"])
    )
    asked = any(c.get("function", {}).get("name") == "get_weather" for m in messages for c in m.get("tool_calls") or [])
    if last_is_tool and "get_weather" in tools and not asked:  # handed off to the agent with the tool
        return FakeReply(tool_calls=[("get_weather", {"city": "Paris"})])
    if last_is_tool:
        text = json.dumps(last.get("content"))
        outputs = [t for t in tools if t and t != "get_weather"]
        if outputs:  # structured output in tool mode: the answer goes into the output tool
            return FakeReply(tool_calls=[(outputs[0], {"reply": f"Tool result received: {text}", "ok": True})])
        return FakeReply(text=f"Tool result received: {text}")
    if "get_weather" in tools:
        return FakeReply(tool_calls=[("get_weather", {"city": "Paris"})])
    handoffs = [t for t in tools if t and t.startswith("transfer_to_")]
    if handoffs:
        return FakeReply(tool_calls=[(handoffs[0], {})])
    if tools and tools[0]:
        return FakeReply(tool_calls=[(tools[0], {"reply": "Echo: structured", "ok": True})])
    fmt = request.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        return json.dumps({"reply": "Echo: structured", "ok": True})
    user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"Echo: {user if isinstance(user, str) else json.dumps(user)}"


@pytest.fixture(scope="session")
def agent_fleet() -> Iterator[Fleet]:
    providers = [
        FakeProvider("primary", api="openai", reply=scripted),
        FakeProvider("backup", api="openai", reply=scripted),
        FakeProvider("claude", api="anthropic", reply=scripted),
    ]
    with Fleet(providers) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def reset_agent_fleet(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "agent_fleet" in request.fixturenames:
        fleet: Fleet = request.getfixturevalue("agent_fleet")
        for name in NAMES:
            fleet[name].reset()
            fleet[name].ttft_s = 0.0
            fleet[name].tokens_per_s = None


def agent_config(fleet: Fleet) -> dict[str, Any]:
    """Route ``default``: model ``fast`` (primary, then backup), then ``claude``; one attempt each."""
    price = {"input": 1.0, "output": 2.0}

    def prov(name: str, api: str) -> dict[str, Any]:
        extra = {"api_version": "2023-06-01"} if api == "anthropic" else {}
        return {"api": api, "base_url": fleet.base_url(name), "api_key": "sk-test", **extra}

    return {
        "providers": {"primary": prov("primary", "openai"), "backup": prov("backup", "openai"),
                      "claude": prov("claude", "anthropic")},
        "models": {
            "fast": {"deployments": [{"provider": "primary", "model": "gpt-4o-mini", "price": price},
                                     {"provider": "backup", "model": "gpt-4o-mini", "price": price}]},
            "claude": {"deployments": [{"provider": "claude", "model": "claude-sonnet-4-5", "price": price}]},
        },
        "routes": {"default": {"models": ["fast", "claude"]}, "fast-only": {"models": ["fast"]}},
        "retry": {"attempts": 1},
        "timeout": {"connect_s": 2.0, "read_s": 5.0},
    }  # fmt: skip


def fail_everything(fleet: Fleet, code: int = 500) -> None:
    """Queue one failure per deployment of the ``default`` route."""
    from llmroute.testing import Fault

    for name in NAMES:
        fleet[name].enqueue(Fault.server_error(code))


async def settled(fleet: Fleet) -> None:
    """Wait (briefly) until no provider has a request in flight, then assert it."""
    for _ in range(100):
        if all(fleet[n].in_flight == 0 for n in NAMES):
            break
        await anyio.sleep(0.02)
    assert {n: fleet[n].in_flight for n in NAMES} == dict.fromkeys(NAMES, 0)
