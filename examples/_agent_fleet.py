"""What the framework examples share: a local fake fleet whose model calls ``get_weather`` when it
is offered, and a config routing over it with one scripted 503 (so every example shows a fallback).

Not an example itself: ``examples/<framework>_*.py`` import it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmroute.testing import FakeProvider, FakeReply, Fault, Fleet

QUESTION = "What is the weather in Paris?"


def get_weather(city: str) -> str:
    """Get the weather in a city."""
    return f"sunny, 21 C in {city}"


def fake_model(request: Any) -> str | FakeReply:
    """Calls get_weather for a question, answers a tool result, fills an output schema or tool."""
    tools = [t.get("function", t).get("name") for t in request.get("tools") or []]
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    json_mode = (request.get("response_format") or {}).get("type") in ("json_object", "json_schema")
    if last.get("role") == "tool":
        answer = f"It is {last.get('content')}."
        outputs = [t for t in tools if t != "get_weather"]
        if outputs:  # structured output by tool
            return FakeReply(tool_calls=[(outputs[0], {"city": "Paris", "summary": answer})])
        return json.dumps({"city": "Paris", "summary": answer}) if json_mode else answer
    if "get_weather" in tools:
        return FakeReply(tool_calls=[("get_weather", {"city": "Paris"})])
    if tools:
        return FakeReply(tool_calls=[(tools[0], {"city": "Paris", "summary": "sunny"})])
    if json_mode:
        return json.dumps({"city": "Paris", "summary": "sunny"})
    return "Hello from the fake fleet."


@contextmanager
def agent_fleet() -> Iterator[dict[str, Any]]:
    """Start the fleet; yield the router config (route ``default``: two deployments of ``fast``)."""
    providers = [FakeProvider(name, api="openai", reply=fake_model) for name in ("primary", "backup")]
    with Fleet(providers) as fleet:
        fleet["primary"].enqueue(Fault.server_error(503))  # the first call falls back to "backup"
        price = {"input": 0.15, "output": 0.6}
        yield {
            "providers": {
                name: {"api": "openai", "base_url": fleet.base_url(name), "api_key": "sk-local"}
                for name in ("primary", "backup")
            },
            "models": {
                "fast": {
                    "deployments": [
                        {"provider": "primary", "model": "gpt-4o-mini", "price": price},
                        {"provider": "backup", "model": "gpt-4o-mini", "price": price},
                    ]
                }
            },
            "routes": {"default": {"models": ["fast"], "deadline_s": 30}},
            "retry": {"attempts": 1},
        }
