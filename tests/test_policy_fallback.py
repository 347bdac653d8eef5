"""Retry decisions and waits: Retry-After parsing, backoff, deadline stop, budgets."""

from __future__ import annotations

import email.utils

import pytest
from tenacity import AsyncRetrying, RetryCallState

from llmroute.errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    RateLimitError,
    ServerError,
)
from llmroute.policy.budget import MemoryBudget, Spend
from llmroute.policy.fallback import (
    retry_if_retryable,
    should_fall_back,
    stop_at_deadline,
    wait_retry_after_or_backoff,
)
from llmroute.providers.base import Target, error_from_status, parse_retry_after


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
        ({"retry-after": email.utils.formatdate(1_000_010.0, usegmt=True)}, 10.0),
        # the table below never raises and never returns more than a day (86,400 s)
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": ""}, None),
        ({"retry-after": "inf"}, 86_400.0),
        ({"retry-after": "-inf"}, 0.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "1e308"}, 86_400.0),
        ({"retry-after": "1" * 400}, 86_400.0),
        ({"retry-after-ms": "1e400"}, 86_400.0),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": email.utils.formatdate(999_990.0, usegmt=True)}, 0.0),  # in the past
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, 86_400.0),
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 -0000"}, 86_400.0),
        ({"retry-after": "Sat, 01 Jan 10000 00:00:00 GMT"}, None),
        ({"retry-after": "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"}, None),  # OverflowError before
        ({"retry-after": "Mon, 01 Jan 2000 00:00:00 +99999999999999999999"}, None),
        ({"retry-after": "Mon, 01 Jan 2000 99999999999:00:00 GMT"}, None),
        ({"retry-after": "Tue, 30 Feb 2024 00:00:00 GMT"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=1_000_000.0) == expected


def state_after(exc: BaseException, attempt: int = 1) -> RetryCallState:
    s = RetryCallState(AsyncRetrying(), None, (), {})
    s.attempt_number = attempt
    s.set_exception((type(exc), exc, None))
    return s


def test_retry_predicate() -> None:
    retry = retry_if_retryable(max_retry_after_s=10)
    assert retry(state_after(ServerError("boom", status=500)))
    assert retry(state_after(RateLimitError("slow", retry_after=5)))
    assert not retry(state_after(RateLimitError("slow", retry_after=60)))
    assert not retry(state_after(BadRequestError("bad", status=400)))
    assert not retry(state_after(AuthenticationError("no", status=401)))
    assert not retry(state_after(ValueError("not ours")))


def test_wait_prefers_retry_after_else_backoff_with_jitter() -> None:
    wait = wait_retry_after_or_backoff(0.5, 4.0, 0.25, rng=lambda: 1.0)
    assert wait(state_after(RateLimitError("x", retry_after=2.0))) == 2.0
    assert wait(state_after(ServerError("x"), attempt=1)) == 0.75
    assert wait(state_after(ServerError("x"), attempt=3)) == 2.25
    assert wait(state_after(ServerError("x"), attempt=10)) == 4.25


def test_retry_after_on_a_server_error_is_honoured_like_on_a_429() -> None:
    wait = wait_retry_after_or_backoff(0.5, 4.0, 0.25, rng=lambda: 1.0)
    retry = retry_if_retryable(max_retry_after_s=10)
    assert wait(state_after(ServerError("busy", status=503, retry_after=3.0))) == 3.0
    assert wait(state_after(ServerError("overloaded", status=529, retry_after=0.0))) == 0.0
    assert retry(state_after(ServerError("busy", status=503, retry_after=3.0)))
    assert not retry(state_after(ServerError("busy", status=503, retry_after=60.0)))  # fall back instead
    assert wait(state_after(ServerError("x", status=500), attempt=1)) == 0.75  # no hint: backoff


def test_error_from_status_reads_retry_after_on_5xx() -> None:
    target = Target(provider="p", api="openai", base_url="http://x", model="m", deployment="p/m")
    for status in (500, 502, 503, 529):
        err = error_from_status(status, "busy", target, headers={"retry-after": "7"})
        assert isinstance(err, ServerError) and err.retry_after == 7.0
    assert error_from_status(503, "busy", target, headers={}).retry_after is None
    assert error_from_status(503, "busy", target).retry_after is None


@pytest.mark.parametrize("attempt", [1, 64, 1025, 2000, 10**6])
def test_backoff_never_overflows(attempt: int) -> None:
    wait = wait_retry_after_or_backoff(0.0, 8.0, 0.0, rng=lambda: 1.0)
    assert wait(state_after(ServerError("x"), attempt=attempt)) == 0.0
    wait = wait_retry_after_or_backoff(0.25, 8.0, 0.0, rng=lambda: 1.0)
    assert wait(state_after(ServerError("x"), attempt=attempt)) == min(0.25 * 2 ** min(attempt - 1, 10), 8.0)


def test_stop_at_deadline() -> None:
    now = [100.0]
    stop = stop_at_deadline(101.0, lambda: now[0])
    s = state_after(ServerError("x"))
    s.upcoming_sleep = 0.5
    assert not stop(s)
    s.upcoming_sleep = 2.0
    assert stop(s)


def test_should_fall_back() -> None:
    assert should_fall_back(ServerError("x"))
    assert should_fall_back(BadRequestError("x"))
    assert should_fall_back(BudgetExceededError("b", limit_usd=1, spent_usd=1, needed_usd=1))
    assert not should_fall_back(ValueError("x"))


@pytest.mark.anyio
async def test_memory_budget_never_overspends_and_settles() -> None:
    b = MemoryBudget(1.0, name="daily")
    spend = Spend("default", "small")
    r1 = await b.reserve(0.6, spend)
    with pytest.raises(BudgetExceededError) as info:
        await b.reserve(0.5, spend)
    msg = str(info.value)
    assert "budget 'daily' would be exceeded by $0.100000" in msg
    assert info.value.limit_usd == 1.0 and info.value.needed_usd == 0.5
    assert b.open_reservations == 1
    await b.settle(r1, 0.2)
    await b.settle(r1, 0.2)  # settling twice is a no-op
    assert b.spent_usd == pytest.approx(0.2) and b.reserved_usd == 0 and b.open_reservations == 0
    assert b.remaining_usd == pytest.approx(0.8)
    r2 = await b.reserve(0.8, spend)
    await b.settle(r2, 0.0)
    assert b.remaining_usd == pytest.approx(0.8)


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), -1e-9, -(10**7)])
def test_memory_budget_refuses_amounts_that_would_poison_it(amount: float) -> None:
    b = MemoryBudget(1.0)
    with pytest.raises(ValueError, match="finite amount"):
        b.reserve_now(amount)
    r = b.reserve_now(0.5)
    with pytest.raises(ValueError, match="finite amount"):
        b.settle_now(r, amount)
    assert b.spent_usd == 0 and b.reserved_usd == 0.5
    with pytest.raises(ValueError, match="finite amount"):
        MemoryBudget(amount)
