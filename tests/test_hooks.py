"""The hooks seam: call_started, attempts and call_finished, tied together by the call id."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from conftest import VirtualSleep, make_config

import llmroute
from llmroute.testing import Fault, Fleet
from llmroute.types import ChatRequest

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "What is the capital of France?"}]


class Recorder(llmroute.Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, Any]] = []

    def call_started(self, trace: llmroute.RouteTrace, request: ChatRequest, stream: bool) -> None:
        assert trace.candidates and not trace.attempts
        self.events.append(("call_started", trace.call_id, (trace.route, request.max_tokens, stream)))

    def attempt_started(self, attempt: llmroute.Attempt) -> None:
        self.events.append(("attempt_started", attempt.call_id, attempt.deployment))

    def attempt_finished(self, attempt: llmroute.Attempt, error: BaseException | None) -> None:
        self.events.append(("attempt_finished", attempt.call_id, attempt.outcome))

    def call_finished(
        self, trace: llmroute.RouteTrace, reply: llmroute.Reply | None, error: BaseException | None
    ) -> None:
        self.events.append(("call_finished", trace.call_id, reply is not None))

    def per_call(self) -> dict[int, list[tuple[str, Any]]]:
        calls: dict[int, list[tuple[str, Any]]] = {}
        for name, call_id, detail in self.events:
            calls.setdefault(call_id, []).append((name, detail))
        return calls


async def test_call_started_comes_first_and_the_call_id_ties_everything(fleet: Fleet, vsleep: VirtualSleep) -> None:
    rec = Recorder()
    fleet["oai"].enqueue(Fault.server_error(500))  # one call retries
    replies: list[llmroute.Reply] = []
    async with llmroute.Router.from_dict(make_config(fleet), hooks=[rec], sleep=vsleep) as r:
        await r.warmup()

        async def one(i: int) -> None:
            if i % 2:
                replies.append(await r.complete(MSG, max_tokens=10 + i))
            else:
                async with r.stream(MSG, max_tokens=10 + i) as s:
                    await s.text()
                assert s.reply is not None
                replies.append(s.reply)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
    calls = rec.per_call()
    assert len(calls) == 20 and 0 not in calls
    for reply in replies:
        trace = reply.route
        events = calls[trace.call_id]
        assert all(a.call_id == trace.call_id for a in trace.attempts)
        started = reply.route.attempts[0]
        assert events[0][0] == "call_started"
        route, max_tokens, stream = events[0][1]
        assert route == "default" and max_tokens is not None and isinstance(stream, bool)
        assert events[-1] == ("call_finished", True)
        body = events[1:-1]
        assert body[0] == ("attempt_started", started.deployment)
        assert [name for name, _ in body] == ["attempt_started", "attempt_finished"] * len(trace.attempts)
        assert [d for n, d in body if n == "attempt_finished"] == [a.outcome for a in trace.attempts]
    assert sorted(len(reply.route.attempts) for reply in replies)[-1] == 2  # the retried one
    streamed = [calls[reply.route.call_id][0][1][2] for reply in replies]
    assert streamed.count(True) == 10 and streamed.count(False) == 10


async def test_a_call_that_fails_while_planning_reports_only_call_finished(fleet: Fleet) -> None:
    rec = Recorder()
    async with llmroute.Router.from_dict(make_config(fleet), hooks=[rec]) as r:
        with pytest.raises(llmroute.DeadlineExceededError):
            await r.complete(MSG, deadline_s=0)  # expires during the first call's warm-up
    assert [(name, detail) for name, _, detail in rec.events] == [("call_finished", False)]


async def test_a_duck_typed_hook_without_call_started_still_works(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    class Old:  # an observer written before call_started existed
        def __init__(self) -> None:
            self.n = 0

        def attempt_started(self, attempt: Any) -> None:
            self.n += 1

        def attempt_finished(self, attempt: Any, error: Any) -> None:
            pass

        def call_finished(self, trace: Any, reply: Any, error: Any) -> None:
            pass

    caplog.set_level(logging.DEBUG, logger="llmroute")
    old = Old()
    async with llmroute.Router.from_dict(make_config(fleet), hooks=[old]) as r:  # type: ignore[list-item]
        await r.complete(MSG)
    assert old.n == 1
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
