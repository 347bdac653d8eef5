"""Keys never leak: not in reprs, config dumps, logs, errors or traces."""

from __future__ import annotations

import logging

import pytest
from conftest import SECRET, VirtualSleep, make_config

import llmroute
from llmroute.testing import Fault, Fleet

pytestmark = pytest.mark.anyio


async def test_key_never_in_repr_logs_errors_or_trace(
    fleet: Fleet, vsleep: VirtualSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = make_config(fleet)
    cfg["providers"]["oai"]["headers"] = {"x-extra-auth": SECRET}
    fleet["oai"].enqueue(Fault.auth())
    for name in ("oai2", "claude", "gem"):
        fleet[name].enqueue(Fault.server_error(500), Fault.server_error(500))
    r = llmroute.Router.from_dict(cfg, sleep=vsleep)
    texts = [repr(r), str(r.config), repr(r.config), r.config.model_dump_json(), repr(r.plan("hi"))]
    with pytest.raises(llmroute.AllAttemptsFailedError) as info:
        await r.complete("hi")
    texts += [str(info.value), repr(info.value)]
    texts += [str(e) + repr(e) + repr(vars(e)) for e in info.value.errors]
    texts += [repr(info.value.errors[0].__cause__), repr(info.value.errors[0].__context__)]
    reply = await r.complete("hello")
    texts += [repr(reply), str(reply.route.to_dict())]
    await r.aclose()
    texts += [rec.getMessage() for rec in caplog.records]
    for text in texts:
        assert SECRET not in text
    # and the key really was sent to the provider
    assert fleet["oai"].requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_config_error_does_not_echo_the_key() -> None:
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.Router.from_dict(
            {"providers": {"p": {"api": "openai", "api_key": SECRET, "nope": SECRET}}, "models": {}}
        )
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.errors)
