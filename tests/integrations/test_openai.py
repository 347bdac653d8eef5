"""The OpenAI SDK (and raw httpx / httpx2 clients) over LLMRouteTransport, on the loopback fleet."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from fleet_for_agents import QUESTION, TOOLS, agent_config, fail_everything, settled

import llmroute
from llmroute.integrations.openai import LLMRouteTransport, openai_client
from llmroute.testing import Fault, Fleet

openai = pytest.importorskip("openai", reason="the openai package is not installed (pip install 'llmroute[openai]')")
httpx2 = pytest.importorskip("httpx2", reason="httpx2 is not installed (pip install httpx2)")

pytestmark = pytest.mark.anyio


async def _stream_turn(client: Any, messages: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """One streamed turn assembled the way agent loops do; returns (assistant message, last chunk)."""
    stream = await client.chat.completions.create(
        model="default", messages=messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    )
    text, calls, last = "", {}, None
    async for chunk in stream:
        last = chunk
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for d in choice.delta.tool_calls or []:
                slot = calls.setdefault(
                    d.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] = d.id or slot["id"]
                slot["function"]["name"] += d.function.name or ""
                slot["function"]["arguments"] += d.function.arguments or ""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message, last


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_tool_calling_loop_through_a_fallback(agent_fleet: Fleet, streamed: bool) -> None:
    agent_fleet["primary"].enqueue(Fault.server_error(503))
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        client = openai_client(router)
        messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
        if streamed:
            first, last = await _stream_turn(client, messages)
            info = last.llmroute
        else:
            res = await client.chat.completions.create(model="default", messages=messages, tools=TOOLS)
            first, info = res.choices[0].message.model_dump(exclude_none=True), res.llmroute
            assert res.choices[0].finish_reason == "tool_calls"
        assert info["deployment"] == "backup/gpt-4o-mini"
        assert [a["status"] for a in info["trace"]["attempts"]] == [503, None]
        (call,) = first["tool_calls"]
        assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {
            "city": "Paris"
        }
        messages += [first, {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
        if streamed:
            answer, last = await _stream_turn(client, messages)
            text, info = answer["content"], last.llmroute
            assert last.usage.total_tokens > 0 and info["cost_usd"] > 0
        else:
            res = await client.chat.completions.create(model="default", messages=messages, tools=TOOLS)
            text, info = res.choices[0].message.content, res.llmroute
        assert text == 'Tool result received: "sunny"'
        assert info["route"] == "default" and info["model"] == "fast"
    assert agent_fleet["primary"].fault_counts["server_error"] == 1


async def test_structured_output_with_a_json_schema(agent_fleet: Fleet) -> None:
    schema = {"type": "object", "properties": {"reply": {"type": "string"}, "ok": {"type": "boolean"}}}
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        client = openai_client(router)
        res = await client.chat.completions.create(
            model="fast",
            messages=[{"role": "user", "content": "hi"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "Answer", "schema": schema, "strict": True},
            },
        )
    assert json.loads(res.choices[0].message.content) == {"reply": "Echo: structured", "ok": True}
    sent = agent_fleet["primary"].requests[0].json
    assert sent["response_format"]["json_schema"]["name"] == "Answer" and sent["model"] == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("code", "error"),
    [(500, "InternalServerError"), (429, "RateLimitError"), (400, "BadRequestError")],
)
async def test_the_sdk_raises_its_own_error_once(agent_fleet: Fleet, code: int, error: str) -> None:
    for name in ("primary", "backup", "claude"):
        agent_fleet[name].enqueue(Fault.status(code))
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        client = openai_client(router, max_retries=2)  # x-should-retry: false keeps the SDK from retrying
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert type(info.value).__name__ == error
    assert info.value.status_code == {500: 502, 429: 429, 400: 400}[code]  # llmroute.http_status
    assert info.value.response.headers["x-llmroute-error"] == "AllAttemptsFailedError"
    assert sum(agent_fleet[n].calls for n in ("primary", "backup", "claude")) == 3


async def test_a_stream_that_fails_everywhere_raises_before_any_chunk(agent_fleet: Fleet) -> None:
    fail_everything(agent_fleet)
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        with pytest.raises(openai.InternalServerError):
            await openai_client(router).chat.completions.create(
                model="default", messages=[{"role": "user", "content": "hi"}], stream=True
            )


async def test_model_names_pick_a_route_a_model_an_alias_or_the_default(agent_fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        client = openai_client(router, aliases={"gpt-4o": "claude"})
        msgs = [{"role": "user", "content": "hi"}]
        picked = {}
        for name in ("fast-only", "claude", "gpt-4o", "something-else"):
            res = await client.chat.completions.create(model=name, messages=msgs)
            picked[name] = (res.llmroute["route"], res.llmroute["model"])
        listed = [m.id async for m in client.models.list()]
    assert picked == {
        "fast-only": ("fast-only", "fast"),
        "claude": ("model:claude", "claude"),
        "gpt-4o": ("model:claude", "claude"),
        "something-else": ("default", "fast"),
    }
    assert listed == ["default", "fast-only", "fast", "claude", "gpt-4o"]


@pytest.mark.parametrize("package", ["httpx", "httpx2"])
async def test_the_sdk_timeout_bounds_the_routed_call(agent_fleet: Fleet, package: str) -> None:
    agent_fleet["primary"].enqueue(Fault.stall(3.0))
    module = httpx if package == "httpx" else httpx2
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        transport = LLMRouteTransport(router)
        async with module.AsyncClient(transport=transport, timeout=0.3) as client:
            with pytest.raises(module.ReadTimeout, match=r"deadline of 0\.3s exceeded"):
                await client.post(
                    "http://llmroute/v1/chat/completions",
                    json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
                )
        if package == "httpx2":  # the SDK (built on httpx2) raises its own timeout error
            with pytest.raises(openai.APITimeoutError):
                agent_fleet["primary"].enqueue(Fault.stall(3.0))
                await openai_client(router, timeout=0.3).chat.completions.create(
                    model="fast", messages=[{"role": "user", "content": "hi"}]
                )
    await settled(agent_fleet)


@pytest.mark.parametrize("package", ["httpx", "httpx2"])
async def test_plain_clients_of_either_package(agent_fleet: Fleet, package: str) -> None:
    module = httpx if package == "httpx" else httpx2
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        assert isinstance(LLMRouteTransport(router), module.AsyncBaseTransport)
        async with module.AsyncClient(transport=LLMRouteTransport(router)) as client:
            body = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}
            res = await client.post("http://anything/v1/chat/completions", json=body)
            assert res.status_code == 200 and res.headers["x-should-retry"] == "false"
            assert res.headers["x-llmroute-deployment"] == "primary/gpt-4o-mini"
            assert float(res.headers["x-llmroute-cost-usd"]) == res.json()["llmroute"]["cost_usd"] > 0
            async with client.stream("POST", "http://anything/v1/chat/completions", json={**body, "stream": True}) as s:
                lines = [line async for line in s.aiter_lines() if line]
            assert s.headers["content-type"] == "text/event-stream" and lines[-1] == "data: [DONE]"
            assert json.loads(lines[-2][6:])["llmroute"]["deployment"] == "primary/gpt-4o-mini"
            for bad, status in [({"messages": []}, 400), ({**body, "n": 2}, 400), (b"{", 400)]:
                kw = {"content": bad} if isinstance(bad, bytes) else {"json": bad}
                res = await client.post("http://anything/v1/chat/completions", **kw)
                assert res.status_code == status and res.json()["error"]["type"] == "invalid_request_error"
            assert (await client.get("http://anything/v1/embeddings")).status_code == 404


async def test_cancelling_a_stream_leaves_nothing_in_flight(agent_fleet: Fleet) -> None:
    agent_fleet["primary"].tokens_per_s = 20.0
    async with llmroute.Router.from_dict(agent_config(agent_fleet)) as router:
        client = openai_client(router)
        got = []
        with anyio.move_on_after(0.3):
            stream = await client.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": "tell me a long story"}], stream=True
            )
            async for chunk in stream:
                got.append(chunk)
        assert got and agent_fleet["primary"].in_flight <= 1
        await settled(agent_fleet)
        adm = router._executor.admission
        assert adm is not None and adm.in_flight == 0
        # cancelled while waiting for a non-streamed answer
        agent_fleet["primary"].enqueue(Fault.stall(2.0))
        with anyio.move_on_after(0.2):
            await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        await settled(agent_fleet)
        assert adm.in_flight == 0
