"""Logging: one ``llmroute`` logger hierarchy, structured fields, quiet on healthy calls."""

from __future__ import annotations

import logging

import pytest
from conftest import VirtualSleep, make_config

import llmroute
from llmroute.testing import Fault, Fleet

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "What is the capital of France?"}]
ATTEMPT_FIELDS = {
    "route",
    "call_id",
    "model",
    "deployment",
    "provider",
    "attempt",
    "status",
    "outcome",
    "error_type",
    "cost_usd",
    "cost_estimated",
    "duration_s",
    "queued_s",
    "wait_s",
}


def llmroute_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "llmroute" or r.name.startswith("llmroute.")]


async def test_healthy_and_retried_calls_log_nothing_at_warning(
    fleet: Fleet, vsleep: VirtualSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with llmroute.Router.from_dict(make_config(fleet), sleep=vsleep) as r:
        healthy = await r.complete(MSG)
        async with r.stream(MSG) as s:
            await s.text()
        fleet["oai"].enqueue(Fault.rate_limit(retry_after=0.5), Fault.server_error(503))  # then a fallback
        retried = await r.complete(MSG)
    assert len(healthy.route.attempts) == 1
    assert [a.status for a in retried.route.attempts] == [429, 503, None]
    records = llmroute_records(caplog)
    assert records, "nothing logged at DEBUG"
    assert [r for r in records if r.levelno >= logging.WARNING] == []
    assert all(r.name in ("llmroute.execute", "llmroute.router") for r in records), {r.name for r in records}

    # the retry and the move to the next deployment are INFO, with the attempt's fields
    info = [r for r in records if r.levelno == logging.INFO]
    assert [r.getMessage().split(" ")[0] for r in info] == ["retrying", "attempt"]
    first, second = retried.route.attempts[:2]
    for record, attempt in zip(info, (first, second)):
        assert set(vars(record)) >= ATTEMPT_FIELDS
        assert record.route == "default" and record.call_id == retried.route.call_id  # type: ignore[attr-defined]
        assert record.deployment == "oai/small-1" and record.model == "small"  # type: ignore[attr-defined]
        assert record.attempt == attempt.number and record.status == attempt.status  # type: ignore[attr-defined]
        assert record.outcome == "error" and record.cost_usd == 0.0  # type: ignore[attr-defined]
        assert record.error_type == attempt.error_type  # type: ignore[attr-defined]
    assert info[0].wait_s == 0.5  # type: ignore[attr-defined]
    assert "retrying oai/small-1 in 0.500s after attempt 1 failed" in info[0].getMessage()

    # each call ends with one DEBUG record carrying the call's fields
    done = [r for r in records if r.getMessage().startswith("call on route")]
    assert len(done) == 3 and all(r.levelno == logging.DEBUG for r in done)
    last = done[-1]
    assert last.call_id == retried.route.call_id and last.outcome == "ok"  # type: ignore[attr-defined]
    assert last.deployment == "oai2/small-1" and last.attempts == 3  # type: ignore[attr-defined]
    assert last.cost_usd == pytest.approx(retried.total_cost_usd)  # type: ignore[attr-defined]
    assert "answered by oai2/small-1 after 3 attempt(s)" in last.getMessage()


async def test_a_failed_call_is_info_not_warning(
    fleet: Fleet, vsleep: VirtualSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fleet["claude"].enqueue(Fault.server_error(500), Fault.server_error(500))
    async with llmroute.Router.from_dict(make_config(fleet), sleep=vsleep) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError):
            await r.complete(MSG, model="claude")
    records = llmroute_records(caplog)
    assert [r for r in records if r.levelno >= logging.WARNING] == []
    (failed,) = [r for r in records if r.getMessage().startswith("call on route")]
    assert failed.levelno == logging.INFO
    assert failed.outcome == "error" and failed.error_type == "AllAttemptsFailedError"  # type: ignore[attr-defined]
    assert failed.route == "model:claude" and failed.status == 500  # type: ignore[attr-defined]


async def test_nothing_is_logged_by_default(
    fleet: Fleet, vsleep: VirtualSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)  # Python's default level
    fleet["oai"].enqueue(Fault.server_error(500))
    async with llmroute.Router.from_dict(make_config(fleet), sleep=vsleep) as r:
        await r.complete(MSG)
        async with r.stream(MSG) as s:
            await s.text()
    assert llmroute_records(caplog) == []
