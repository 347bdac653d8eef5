"""The routed call path over the loopback fleet: fallback, retries, deadlines, streams, costs."""

from __future__ import annotations

import pytest
from conftest import VirtualSleep, make_config

import llmroute
from llmroute.testing import Fault, Fleet

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "What is the capital of France?"}]


def router(fleet: Fleet, vsleep: VirtualSleep | None = None, **overrides: object) -> llmroute.Router:
    return llmroute.Router.from_dict(make_config(fleet, **overrides), sleep=vsleep)


async def test_complete_returns_text_usage_cost_and_route(fleet: Fleet) -> None:
    async with router(fleet) as r:
        reply = await r.complete(MSG)
    assert reply.text
    assert reply.model == "small" and reply.provider == "oai" and reply.deployment == "oai/small-1"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    expected = (reply.usage.input_tokens * 0.1 + reply.usage.output_tokens * 0.4) / 1e6
    assert reply.cost_usd == pytest.approx(expected)
    assert [a.outcome for a in reply.route.attempts] == ["ok"]
    assert reply.route.candidates[0].deployment == "oai/small-1"
    assert len(reply.route.candidates) == 4
    assert reply.route.duration_s > 0


async def test_rate_limit_retry_after_is_honoured(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.rate_limit(retry_after=1.5))
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    assert reply.deployment == "oai/small-1"
    assert vsleep.calls == [1.5]
    first, second = reply.route.attempts
    assert first.outcome == "error" and first.status == 429 and first.error_type == "RateLimitError"
    assert first.wait_s == 1.5
    assert second.outcome == "ok" and second.number == 2


async def test_retry_after_longer_than_cap_falls_back_without_waiting(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.rate_limit(retry_after=120))
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    assert vsleep.calls == []
    assert reply.deployment == "oai2/small-1"


async def test_server_error_is_retried_with_backoff(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.server_error(503))
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    assert reply.deployment == "oai/small-1"
    assert vsleep.calls == [pytest.approx(0.01)]
    assert [a.status for a in reply.route.attempts] == [503, None]


async def test_bad_request_is_not_retried_but_falls_back(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.bad_request())
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    assert vsleep.calls == []
    assert fleet["oai"].calls == 1
    assert reply.deployment == "oai2/small-1"
    assert reply.route.attempts[0].error_type == "BadRequestError"


async def test_retries_exhausted_then_next_deployment(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.server_error(500), Fault.server_error(502))
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    assert reply.deployment == "oai2/small-1"
    assert [(a.deployment, a.number, a.outcome) for a in reply.route.attempts] == [
        ("oai/small-1", 1, "error"),
        ("oai/small-1", 2, "error"),
        ("oai2/small-1", 1, "ok"),
    ]


async def test_timeout_moves_to_next_deployment(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.stall(3.0))
    cfg = make_config(fleet, retry={"attempts": 1})
    cfg["providers"]["oai"]["timeout"] = {"connect_s": 1.0, "read_s": 0.3}
    async with llmroute.Router.from_dict(cfg, sleep=vsleep) as r:
        reply = await r.complete(MSG)
    assert reply.deployment == "oai2/small-1"
    assert reply.route.attempts[0].error_type == "ProviderTimeoutError"


async def test_connection_reset_and_malformed_body_fall_back(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.reset(), Fault.malformed())
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    kinds = [a.error_type for a in reply.route.attempts if a.outcome == "error"]
    assert kinds == ["ProviderConnectionError", "ResponseError"]
    assert reply.deployment == "oai2/small-1"


async def test_all_failed_raises_with_every_error(fleet: Fleet, vsleep: VirtualSleep) -> None:
    for name in ("oai", "oai2", "claude", "gem"):
        fleet[name].enqueue(Fault.auth(), Fault.auth())
    async with router(fleet, vsleep) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            await r.complete(MSG)
    err = info.value
    assert len(err.errors) == 4
    assert all(isinstance(e, llmroute.AuthenticationError) for e in err.errors)
    assert {e.provider for e in err.errors} == {"oai", "oai2", "claude", "gem"}
    first = err.errors[0]
    assert isinstance(first, llmroute.ProviderError)
    assert first.status == 401 and first.attempt == 1 and first.model == "small-1"
    assert "oai/small-1" in str(first) and "status 401" in str(first) and "attempt 1" in str(first)


async def test_context_overflow_moves_to_next_model(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.context_overflow())
    fleet["oai2"].enqueue(Fault.context_overflow())
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    assert reply.model == "claude"
    assert [a.error_type for a in reply.route.attempts[:2]] == ["ContextWindowExceededError"] * 2


async def test_known_context_window_is_skipped_before_sending(fleet: Fleet) -> None:
    cfg = make_config(fleet)
    cfg["models"]["small"]["deployments"][0]["context_window"] = 5
    async with llmroute.Router.from_dict(cfg) as r:
        reply = await r.complete(MSG)
    assert fleet["oai"].calls == 0
    assert reply.deployment == "oai2/small-1"
    assert "skipped for context window" in reply.route.reason


async def test_deadline_exceeded(fleet: Fleet) -> None:
    fleet["oai"].enqueue(Fault.stall(2.0))
    async with router(fleet) as r:
        with pytest.raises(llmroute.DeadlineExceededError) as info:
            await r.complete(MSG, deadline_s=0.2)
    assert "0.2s" in str(info.value)


async def test_cheapest_strategy_orders_by_estimated_cost(fleet: Fleet) -> None:
    async with router(fleet) as r:
        reply = await r.complete(MSG, route="cheap-first")
    assert reply.model == "small"
    costs = [c.est_cost_usd for c in reply.route.candidates]
    assert costs == sorted(costs)


async def test_model_argument_targets_one_model(fleet: Fleet) -> None:
    async with router(fleet) as r:
        reply = await r.complete(MSG, model="gemini")
    assert reply.provider == "gem" and reply.route.route == "model:gemini"


async def test_unknown_route_and_bad_messages(fleet: Fleet) -> None:
    async with router(fleet) as r:
        with pytest.raises(llmroute.UnknownRouteError, match="unknown route 'nope'"):
            await r.complete(MSG, route="nope")
        with pytest.raises(llmroute.InvalidRequestError, match=r"messages\[0\].role"):
            await r.complete([{"content": "no role"}])


# ---------------------------------------------------------------------------- streams
async def test_stream_yields_text_and_final_reply(fleet: Fleet) -> None:
    async with router(fleet) as r:
        stream = r.stream(MSG)
        parts = [c.text async for c in stream]
    assert len([p for p in parts if p]) > 1
    assert stream.reply is not None
    assert stream.reply.text == "".join(parts)
    assert stream.reply.usage.output_tokens > 0
    assert stream.reply.cost_usd > 0
    assert stream.route.attempts[0].ttft_s is not None


async def test_stream_dropped_before_first_token_falls_back(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.drop_stream(after_tokens=0), Fault.drop_stream(after_tokens=0))
    async with router(fleet, vsleep) as r:
        stream = r.stream(MSG)
        text = await stream.text()
    assert stream.reply is not None and stream.reply.deployment == "oai2/small-1"
    assert text == stream.reply.text
    assert [a.outcome for a in stream.route.attempts] == ["error", "error", "ok"]


async def test_stream_dropped_after_first_token_raises_without_duplicates(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.drop_stream(after_tokens=3))
    async with router(fleet, vsleep) as r:
        stream = r.stream(MSG)
        seen: list[str] = []
        with pytest.raises(llmroute.ResponseError):
            async for chunk in stream:
                seen.append(chunk.text)
    assert fleet["oai2"].calls == 0
    assert len([s for s in seen if s]) >= 1
    assert stream.reply is None
    assert stream.route.attempts[-1].outcome == "error"


async def test_stream_rate_limited_then_served(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.rate_limit(retry_after=0.5))
    async with router(fleet, vsleep) as r:
        text = await r.stream(MSG).text()
    assert text
    assert vsleep.calls == [0.5]


async def test_stream_closed_early_records_cancelled_attempt(fleet: Fleet) -> None:
    async with router(fleet) as r, r.stream(MSG) as stream:
        async for _chunk in stream:
            break
    assert stream.route.attempts[0].outcome == "cancelled"


# ---------------------------------------------------------------------------- budget and hooks
async def test_budget_refuses_and_releases(fleet: Fleet) -> None:
    budget = llmroute.MemoryBudget(1e-9, name="tiny")
    async with llmroute.Router.from_dict(make_config(fleet), budget=budget) as r:
        with pytest.raises(llmroute.BudgetExceededError, match="budget 'tiny' would be exceeded by"):
            await r.complete(MSG)
    assert budget.reserved_usd == 0
    assert fleet["oai"].calls == 0


async def test_budget_settles_real_cost(fleet: Fleet) -> None:
    budget = llmroute.MemoryBudget(1.0)
    async with llmroute.Router.from_dict(make_config(fleet), budget=budget) as r:
        reply = await r.complete(MSG)
    assert budget.reserved_usd == 0
    assert budget.spent_usd == pytest.approx(reply.cost_usd)


async def test_cancellation_releases_reservation_and_in_flight(fleet: Fleet) -> None:
    import anyio

    class InFlight(llmroute.Hooks):
        def __init__(self) -> None:
            self.n = 0
            self.outcomes: list[str] = []

        def attempt_started(self, attempt: llmroute.Attempt) -> None:
            self.n += 1

        def attempt_finished(self, attempt: llmroute.Attempt, error: BaseException | None) -> None:
            self.n -= 1
            self.outcomes.append(attempt.outcome)

    fleet["oai"].enqueue(Fault.stall(2.0))
    budget = llmroute.MemoryBudget(1.0)
    hook = InFlight()
    async with llmroute.Router.from_dict(make_config(fleet), budget=budget, hooks=[hook]) as r:
        with anyio.move_on_after(0.2):
            await r.complete(MSG)
    assert budget.reserved_usd == 0
    assert hook.n == 0
    assert hook.outcomes == ["cancelled"]


async def test_hooks_see_every_attempt_and_a_broken_hook_is_harmless(fleet: Fleet, vsleep: VirtualSleep) -> None:
    class Recorder(llmroute.Hooks):
        def __init__(self) -> None:
            self.finished: list[tuple[str, str | None]] = []
            self.calls: list[tuple[str, bool, str | None]] = []

        def attempt_finished(self, attempt: llmroute.Attempt, error: BaseException | None) -> None:
            self.finished.append((attempt.outcome, type(error).__name__ if error else None))

        def call_finished(
            self, trace: llmroute.RouteTrace, reply: llmroute.Reply | None, error: BaseException | None
        ) -> None:
            self.calls.append((trace.route, reply is not None, type(error).__name__ if error else None))

    class Broken(llmroute.Hooks):
        def attempt_started(self, attempt: llmroute.Attempt) -> None:
            raise RuntimeError("boom")

    fleet["oai"].enqueue(Fault.server_error(500))
    rec = Recorder()
    async with llmroute.Router.from_dict(make_config(fleet), sleep=vsleep, hooks=[Broken(), rec]) as r:
        await r.complete(MSG)
        await r.stream(MSG).text()
        with pytest.raises(llmroute.UnknownRouteError):
            await r.complete(MSG, route="nope")  # refused before any call starts: no hook
        for name in ("oai", "oai2", "claude", "gem"):
            fleet[name].enqueue(Fault.auth())
        with pytest.raises(llmroute.AllAttemptsFailedError):
            await r.complete(MSG)
    assert rec.finished[:3] == [("error", "ServerError"), ("ok", None), ("ok", None)]
    assert rec.calls == [("default", True, None), ("default", True, None), ("default", False, "AllAttemptsFailedError")]


async def test_concurrent_calls_share_one_client(fleet: Fleet) -> None:
    import anyio

    replies: list[llmroute.Reply] = []
    async with router(fleet) as r:

        async def one(i: int) -> None:
            replies.append(await r.complete([{"role": "user", "content": f"question {i}"}]))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
    assert len(replies) == 20
    assert all(rep.text for rep in replies)


async def test_stream_cancelled_mid_way_releases_everything(fleet: Fleet) -> None:
    import anyio

    class InFlight(llmroute.Hooks):
        def __init__(self) -> None:
            self.n = 0

        def attempt_started(self, attempt: llmroute.Attempt) -> None:
            self.n += 1

        def attempt_finished(self, attempt: llmroute.Attempt, error: BaseException | None) -> None:
            self.n -= 1

    fleet["oai"].enqueue(Fault.slow(ttft_s=0.0, tokens_per_s=5.0))
    budget = llmroute.MemoryBudget(1.0)
    hook = InFlight()
    got: list[str] = []
    async with llmroute.Router.from_dict(make_config(fleet), budget=budget, hooks=[hook]) as r:
        await r.warmup()
        stream = r.stream(MSG)
        with anyio.move_on_after(0.8):
            async for chunk in stream:
                got.append(chunk.text)
    assert got, "some text arrived before the cancel"
    assert stream.reply is None
    assert stream.route.attempts[0].outcome == "cancelled"
    assert budget.reserved_usd == 0 and hook.n == 0


async def test_trace_is_json_serialisable(fleet: Fleet, vsleep: VirtualSleep) -> None:
    import json

    fleet["oai"].enqueue(Fault.rate_limit(retry_after=0.1))
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    data = json.loads(json.dumps(reply.route.to_dict()))
    assert data["route"] == "default"
    assert [a["outcome"] for a in data["attempts"]] == ["error", "ok"]
    assert data["attempts"][0]["status"] == 429


async def test_stream_deadline_exceeded_before_first_token(fleet: Fleet) -> None:
    fleet["oai"].enqueue(Fault.stall(2.0))
    async with router(fleet) as r:
        await r.warmup()
        stream = r.stream(MSG, deadline_s=0.3)
        with pytest.raises(llmroute.DeadlineExceededError):
            await stream.text()
    assert stream.route.attempts[0].outcome == "error"
    assert fleet["oai2"].calls == 0


async def test_retry_after_on_a_503_is_honoured(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.status(503, retry_after=3))
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    assert reply.deployment == "oai/small-1"
    assert vsleep.calls == [3.0]
    assert reply.route.attempts[0].status == 503 and reply.route.attempts[0].wait_s == 3.0


async def test_retry_after_on_a_503_longer_than_cap_falls_back_without_waiting(
    fleet: Fleet, vsleep: VirtualSleep
) -> None:
    fleet["oai"].enqueue(Fault.status(503, retry_after=120))
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    assert vsleep.calls == []
    assert reply.deployment == "oai2/small-1"
    assert fleet["oai"].calls == 1


async def test_an_absurd_retry_after_date_falls_back(fleet: Fleet, vsleep: VirtualSleep) -> None:
    fleet["oai"].enqueue(Fault.status(503, headers={"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}))
    fleet["oai2"].enqueue(Fault.status(429, headers={"retry-after": "Mon, 01 Jan 2000 99999999999:00:00 GMT"}))
    async with router(fleet, vsleep) as r:
        reply = await r.complete(MSG)
    # the year 9999 is too long to wait: fall back at once; the date that overflowed is no hint:
    # back off, then retry
    assert vsleep.calls == [pytest.approx(0.01)]
    assert reply.deployment == "oai2/small-1"
    assert [a.status for a in reply.route.attempts] == [503, 429, None]
