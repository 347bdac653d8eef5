"""Rate-limit headers of each convention, read into RateLimit."""

from __future__ import annotations

import httpx
import pytest

from llmroute._ratelimit import parse_duration, parse_rate_limit
from llmroute.types import RateLimit


def test_openai_style_headers() -> None:
    headers = httpx.Headers(
        {
            "x-ratelimit-limit-requests": "60",
            "X-RateLimit-Remaining-Requests": "59",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert parse_rate_limit(headers) == RateLimit(60, 59, 1.0, 150000, 149984, 360.0)


def test_anthropic_style_headers_with_rfc3339_resets() -> None:
    now = 1_900_000_000.0
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2030-03-17T17:46:50Z",
        "anthropic-ratelimit-input-tokens-remaining": "1200",
        "anthropic-ratelimit-tokens-remaining": "900",  # the combined figure wins over input-only
    }
    rl = parse_rate_limit(headers, now=now)
    assert rl is not None
    assert rl.limit_requests == 50 and rl.remaining_requests == 0 and rl.remaining_tokens == 900
    assert rl.reset_requests_s == pytest.approx(1_900_000_000 + 10 - now, abs=1e6)  # a positive duration
    assert rl.reset_requests_s > 0


def test_ietf_draft_headers_count_as_requests() -> None:
    assert parse_rate_limit([("RateLimit-Remaining", "3"), ("RateLimit-Reset", "12")]) == RateLimit(
        remaining_requests=3, reset_requests_s=12.0
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"content-type": "application/json"}, {"x-ratelimit-remaining-requests": "lots"}],
)
def test_absent_or_unreadable_is_none(headers: dict[str, str]) -> None:
    assert parse_rate_limit(headers) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("20ms", 0.02),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("12", 12.0),
        ("-3", 0.0),
        ("soon", None),
        ("1.2.3s", None),
        ("", None),
        ("2020-01-01T00:00:00", None),  # no time zone: unreadable
    ],
)
def test_durations(text: str, seconds: float | None) -> None:
    got = parse_duration(text)
    assert got == (None if seconds is None else pytest.approx(seconds))
