"""Client-side rate limits: header parsing, token buckets waited for or skipped, shared by several
routers through one store (in-process and Redis), lowered by the provider's headers and 429s."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pytest
from conftest import make_config

import llmroute
from llmroute.config import RateLimitConfig
from llmroute.ratelimit import RateLimiter, RateLimitInfo, parse_duration, parse_rate_limit_headers
from llmroute.stores import Store
from llmroute.stores.memory import MemoryStore
from llmroute.testing import Fault, Fleet

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "Hello there"}]
NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5), ("soon", None), ("1s2", None)],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_openai_and_anthropic_headers() -> None:
    openai = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert parse_rate_limit_headers(openai) == RateLimitInfo(59, 1.0, 60, 149984, 360.0, 150000)
    reset = datetime.fromtimestamp(NOW + 30, timezone.utc).isoformat().replace("+00:00", "Z")
    anthropic = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-input-tokens-reset": reset,
    }
    info = parse_rate_limit_headers(anthropic, now=NOW)
    assert info == RateLimitInfo(0, pytest.approx(30.0), 50, 39000, pytest.approx(30.0), 40000)
    assert parse_rate_limit_headers({"content-type": "application/json"}) is None
    bad = parse_rate_limit_headers({"x-ratelimit-remaining-requests": "nan", "x-ratelimit-reset-requests": "?"})
    assert bad == RateLimitInfo()


class VirtualWall:
    """A wall clock and a sleep that moves it: rate-limit waits in virtual time."""

    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(wall: VirtualWall, store: Store | None = None, **cfg: Any) -> RateLimiter:
    return RateLimiter({"d": RateLimitConfig(**cfg)}, store or MemoryStore(), clock=wall)


async def test_waits_for_a_short_refill_and_skips_a_long_one() -> None:
    wall = VirtualWall()
    rl = limiter(wall, requests_per_minute=60, tokens_per_minute=6000, max_wait_s=2.0)
    fields: Mapping[str, Any] = {"provider": "p", "model": "m", "deployment": "d"}
    for _ in range(60):
        assert await rl.acquire("d", 10, sleep=wall.sleep, left_s=None, error_fields=fields) == 0
    assert await rl.acquire("d", 10, sleep=wall.sleep, left_s=None, error_fields=fields) == pytest.approx(1.0)
    # tokens: 5,490 left (6,000 - 61 x 10 + 1 s of refill); 5,990 would take 5 s more: skipped
    with pytest.raises(llmroute.RateLimitError, match="client-side rate limit") as info:
        await rl.acquire("d", 5990, sleep=wall.sleep, left_s=None, error_fields=fields)
    assert info.value.status is None and info.value.retry_after is not None and info.value.deployment == "d"
    # never past the deadline
    with pytest.raises(llmroute.RateLimitError):
        await rl.acquire("d", 10, sleep=wall.sleep, left_s=0.5, error_fields=fields)
    with pytest.raises(llmroute.RateLimitError, match="never fits"):
        await rl.acquire("d", 6001, sleep=wall.sleep, left_s=None, error_fields=fields)


async def test_headers_and_retry_after_lower_the_buckets() -> None:
    wall = VirtualWall()
    rl = limiter(wall, requests_per_minute=600, max_wait_s=0.0)
    fields: Mapping[str, Any] = {}
    await rl.observe("d", RateLimitInfo(remaining_requests=0, reset_requests_s=20.0, limit_requests=60))
    with pytest.raises(llmroute.RateLimitError) as info:
        await rl.acquire("d", 1, sleep=wall.sleep, left_s=None, error_fields=fields)
    assert info.value.retry_after == pytest.approx(1.0 + 0.1)  # held 60/60 s, then one request at 10/s
    wall.now += 1.2
    await rl.acquire("d", 1, sleep=wall.sleep, left_s=None, error_fields=fields)
    await rl.observe("d", None, retry_after_s=5.0)  # a 429 with Retry-After: 5
    wall.now += 4.0
    with pytest.raises(llmroute.RateLimitError):
        await rl.acquire("d", 1, sleep=wall.sleep, left_s=None, error_fields=fields)


def limited_config(fleet: Fleet, **rate: Any) -> dict[str, Any]:
    cfg = make_config(fleet)
    cfg["models"]["small"]["deployments"][0]["rate_limit"] = rate
    cfg["retry"]["attempts"] = 1
    return cfg


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_two_routers_share_one_bucket_and_skip_to_the_next_deployment(
    fleet: Fleet, request: pytest.FixtureRequest, kind: str
) -> None:
    """Two routers (two workers of a fleet) share a requests-per-minute bucket through the store."""
    if kind == "memory":
        cfg = limited_config(fleet, requests_per_minute=2, max_wait_s=0)
        shared: Store | None = MemoryStore()
    else:
        server = request.getfixturevalue("redis_server")
        cfg = limited_config(fleet, requests_per_minute=2, max_wait_s=0)
        cfg["store"] = {"url": server.url, "prefix": f"rl{uuid.uuid4().hex[:8]}", "timeout_s": 2.0}
        shared = None
    async with llmroute.Router.from_dict(cfg, store=shared) as a, llmroute.Router.from_dict(cfg, store=shared) as b:
        assert (await a.complete(MSG)).deployment == "oai/small-1"
        assert (await b.complete(MSG)).deployment == "oai/small-1"
        third = await a.complete(MSG)
        async with b.stream(MSG) as s:
            await s.text()
    assert third.deployment == "oai2/small-1" and s.reply is not None and s.reply.deployment == "oai2/small-1"
    assert fleet["oai"].calls == 2  # the limited deployment saw no request beyond its limit


async def test_provider_headers_make_the_router_skip_before_a_429(fleet: Fleet) -> None:
    fleet["oai"].response_headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "20s",
    }
    try:
        async with llmroute.Router.from_dict(limited_config(fleet, requests_per_minute=1000, max_wait_s=0)) as r:
            assert (await r.complete(MSG)).deployment == "oai/small-1"
            reply = await r.complete(MSG)  # the provider said it has no request left
    finally:
        fleet["oai"].response_headers = {}
    assert reply.deployment == "oai2/small-1" and fleet["oai"].calls == 1


async def test_a_429_retry_after_empties_the_bucket(fleet: Fleet) -> None:
    fleet["oai"].enqueue(Fault.rate_limit(retry_after=30))
    async with llmroute.Router.from_dict(limited_config(fleet, requests_per_minute=1000, max_wait_s=0.5)) as r:
        first = await r.complete(MSG)  # 429, falls back
        t = time.perf_counter()
        second = await r.complete(MSG)  # skipped at once, no request
    assert first.route.attempts[0].status == 429 and first.deployment == "oai2/small-1"
    assert second.deployment == "oai2/small-1" and len(second.route.attempts) == 1
    assert fleet["oai"].calls == 1 and time.perf_counter() - t < 0.4


async def test_rate_limit_config_is_validated(fleet: Fleet) -> None:
    for bad, path in (
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"tokens_per_minute": -5}, "tokens_per_minute"),
        ({"max_wait_s": float("inf")}, "max_wait_s"),
        ({"rpm": 5}, "rpm"),
    ):
        with pytest.raises(llmroute.ConfigError) as info:
            llmroute.load_config(limited_config(fleet, **bad))
        assert any(p == f"models.small.deployments.0.rate_limit.{path}" for p, _ in info.value.errors)
