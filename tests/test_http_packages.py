"""The router over an ``httpx2`` client or transport (as over ``httpx``), the error-to-status mapping,
model capabilities and wall-clock attempt times."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest
from conftest import make_config

import llmroute
from llmroute import errors as e
from llmroute._http import HTTPX, package_of, wire_for
from llmroute.testing import Fault, Fleet

httpx2 = pytest.importorskip("httpx2", reason="httpx2 is not installed (pip install httpx2; it needs Python 3.11+)")

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_package_is_found_from_the_client_or_transport_class() -> None:
    class MyClient(httpx2.AsyncClient):
        pass

    assert package_of(httpx.AsyncClient()) == "httpx"
    assert package_of(MyClient()) == "httpx2"
    assert package_of(httpx2.AsyncHTTPTransport()) == "httpx2"
    assert wire_for(None) is HTTPX and wire_for(object()) is HTTPX  # duck-typed clients stay httpx ones
    wire = wire_for(httpx2.MockTransport(lambda r: httpx2.Response(200)))
    assert wire.package == "httpx2" and wire.Request is httpx2.Request and wire.HTTPError is httpx2.HTTPError


async def test_an_httpx2_client_routes_falls_back_and_streams(fleet: Fleet, vsleep: Any) -> None:
    fleet["oai"].enqueue(Fault.server_error(503), Fault.server_error(503))
    async with httpx2.AsyncClient() as client:
        router = llmroute.Router.from_dict(make_config(fleet), http_client=client, sleep=vsleep)
        reply = await router.complete("hello")
        assert reply.deployment == "oai2/small-1" and [a.status for a in reply.route.attempts] == [503, 503, None]
        fleet["oai"].enqueue(Fault.server_error(503), Fault.server_error(503))
        async with router.stream("hello") as stream:
            text = await stream.text()
        assert text.startswith("Echo: hello") and stream.reply is not None
        assert stream.reply.deployment == "oai2/small-1"
        await router.aclose()
        assert not client.is_closed  # the user's client is the user's to close


async def test_an_httpx2_transport_gets_an_httpx2_client(fleet: Fleet) -> None:
    async with llmroute.Router.from_dict(make_config(fleet), transport=httpx2.AsyncHTTPTransport()) as router:
        assert isinstance(router._client, httpx2.AsyncClient)
        reply = await router.complete("hi")
    assert reply.text and reply.text.startswith("Echo: hi")


async def test_httpx2_errors_map_like_httpx_ones(fleet: Fleet, vsleep: Any) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    cfg = make_config(fleet, routes={"default": {"models": ["small"]}})
    cfg["providers"]["oai"]["base_url"] = dead
    cfg["providers"]["oai2"]["timeout"] = {"connect_s": 2.0, "read_s": 0.05}
    fleet["oai2"].enqueue(Fault.stall(1.0), Fault.stall(1.0))
    async with httpx2.AsyncClient() as client:
        router = llmroute.Router.from_dict(cfg, http_client=client, sleep=vsleep)
        with pytest.raises(e.AllAttemptsFailedError) as info:
            await router.complete("hi")
        kinds = [type(x) for x in info.value.errors]
        assert kinds == [e.ProviderConnectionError] * 2 + [e.ProviderTimeoutError] * 2
        assert all(isinstance(x.__cause__, httpx2.HTTPError) for x in info.value.errors)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (e.RateLimitError("slow down", status=429), 429),
        (e.BudgetExceededError("b", limit_usd=1, spent_usd=1, needed_usd=1), 429),
        (e.ContextWindowExceededError("too long", status=400), 400),
        (e.BadRequestError("no such model", status=404), 404),
        (e.BadRequestError("bad", status=None), 400),
        (e.AuthenticationError("no", status=403), 403),
        (e.AuthenticationError("no"), 401),
        (e.ContentFilteredError("filtered"), 400),
        (e.InvalidRequestError("bad messages"), 400),
        (e.UnknownRouteError("no route"), 404),
        (e.ServerError("overloaded", status=529), 503),
        (e.ServerError("boom", status=500), 502),
        (e.ResponseError("malformed"), 502),
        (e.ProviderConnectionError("refused"), 502),
        (e.ProviderTimeoutError("slow"), 504),
        (e.DeadlineExceededError("r", 1.0), 504),
        (e.AllAttemptsFailedError("r", [e.ServerError("x", status=500), e.RateLimitError("y")]), 429),
        (e.AllAttemptsFailedError("r", []), 502),
        (e.ConfigError("bad config"), 500),
        (ValueError("not ours"), 500),
    ],
)
def test_http_status_of_each_error(error: BaseException, status: int) -> None:
    assert llmroute.http_status(error) == status


def test_capabilities_default_declared_and_per_route(fleet: Fleet) -> None:
    cfg = make_config(fleet)
    router = llmroute.Router.from_dict(cfg)
    # anthropic's JSON schema is prompted, not enforced: a route holding claude lacks it
    assert router.capabilities() == llmroute.Capabilities(tools=True, json_schema=False, vision=True, streaming=True)
    assert router.capabilities(model="small").json_schema is True
    assert router.capabilities(model="gemini").json_schema is True
    cfg["models"]["claude"]["capabilities"] = {"json_schema": True, "vision": False}
    cfg["models"]["small"]["capabilities"] = {"tools": False}
    router = llmroute.Router.from_dict(cfg)
    assert router.capabilities() == llmroute.Capabilities(tools=False, json_schema=True, vision=False, streaming=True)
    cfg["models"]["small"]["capabilities"] = {"tooling": True}
    with pytest.raises(llmroute.ConfigError, match=r"capabilities\.tooling"):
        llmroute.Router.from_dict(cfg)
    with pytest.raises(llmroute.UnknownRouteError):
        router.capabilities(route="nope")


async def test_attempts_carry_wall_clock_start(fleet: Fleet) -> None:
    before = time.time()
    async with llmroute.Router.from_dict(make_config(fleet)) as router:
        reply = await router.complete("hi")
    (attempt,) = reply.route.attempts
    assert before <= attempt.started_at <= time.time()
    assert reply.route.to_dict()["attempts"][0]["started_at"] == attempt.started_at
