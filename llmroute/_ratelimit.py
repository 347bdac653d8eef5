"""Rate-limit headers: what a provider says about the account's remaining requests and tokens.

Read from any response, success or error: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
(OpenAI and the servers that copy it: Groq, Together, Fireworks, DeepInfra...), Anthropic's
``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`` and
the IETF draft's ``ratelimit-{limit,remaining,reset}`` (counted as requests). Pure: headers in,
a :class:`~llmroute.types.RateLimit` out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .types import RateLimit

__all__ = ["parse_duration", "parse_rate_limit"]

_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _go_duration(value: str) -> float | None:
    """``"6m0s"``, ``"1.5s"``, ``"20ms"``, ``"1h2m3.5s"`` (Go's time.Duration format) in seconds."""
    total = 0.0
    number = ""
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c.isdigit() or c == ".":
            number += c
            i += 1
            continue
        if not number:
            return None
        if value.startswith("ms", i):
            unit, i = 0.001, i + 2
        elif c in _UNIT:
            unit, i = _UNIT[c], i + 1
        else:
            return None
        try:
            total += float(number) * unit
        except ValueError:
            return None
        number = ""
    return None if number else total


def parse_duration(value: str, *, now: float | None = None) -> float | None:
    """Seconds in a reset value: ``"6m0s"``, ``"1.5s"``, ``"20ms"``, plain seconds, or an RFC 3339
    time (Anthropic). ``None`` when unreadable; never negative."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    if value[-1] in "sm" and value[0].isdigit():
        return _go_duration(value)
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _int(value: str) -> int | None:
    if value.isdigit():
        return int(value)
    try:
        return max(0, int(value))
    except ValueError:
        try:
            return max(0, int(float(value)))
        except (ValueError, OverflowError):
            return None


#: header name -> (RateLimit field, is a reset time). Where two names fill one field (Anthropic's
#: ``tokens`` and ``input-tokens``), the first in this table wins.
_FIELDS: dict[bytes, tuple[str, bool]] = {
    b"x-ratelimit-limit-requests": ("limit_requests", False),
    b"x-ratelimit-remaining-requests": ("remaining_requests", False),
    b"x-ratelimit-reset-requests": ("reset_requests_s", True),
    b"x-ratelimit-limit-tokens": ("limit_tokens", False),
    b"x-ratelimit-remaining-tokens": ("remaining_tokens", False),
    b"x-ratelimit-reset-tokens": ("reset_tokens_s", True),
    b"anthropic-ratelimit-requests-limit": ("limit_requests", False),
    b"anthropic-ratelimit-requests-remaining": ("remaining_requests", False),
    b"anthropic-ratelimit-requests-reset": ("reset_requests_s", True),
    b"anthropic-ratelimit-tokens-limit": ("limit_tokens", False),
    b"anthropic-ratelimit-tokens-remaining": ("remaining_tokens", False),
    b"anthropic-ratelimit-tokens-reset": ("reset_tokens_s", True),
    b"anthropic-ratelimit-input-tokens-limit": ("limit_tokens", False),
    b"anthropic-ratelimit-input-tokens-remaining": ("remaining_tokens", False),
    b"anthropic-ratelimit-input-tokens-reset": ("reset_tokens_s", True),
    b"ratelimit-limit": ("limit_requests", False),
    b"ratelimit-remaining": ("remaining_requests", False),
    b"ratelimit-reset": ("reset_requests_s", True),
}
_RANK = {name: i for i, name in enumerate(_FIELDS)}


def _pairs(headers: Any) -> Iterable[tuple[bytes, bytes]]:
    raw = getattr(headers, "raw", None)  # httpx.Headers: one pass over the raw bytes, no decoding
    if raw is not None:
        return raw
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in items]


def parse_rate_limit(headers: Any, *, now: float | None = None) -> RateLimit | None:
    """The rate-limit state in *headers* (an ``httpx.Headers``, a mapping or ``(name, value)``
    pairs), or ``None`` when they carry none. *now* (Unix seconds) is for RFC 3339 resets."""
    found: dict[str, tuple[int, int | float | None]] | None = None
    for key, value in _pairs(headers):
        spec = _FIELDS.get(key)
        if spec is None:
            k = key.lower()
            spec = _FIELDS.get(k)
        else:
            k = key
        if spec is None:
            continue
        field, is_reset = spec
        text = value.decode("latin-1")
        parsed = parse_duration(text, now=now) if is_reset else _int(text)
        rank = _RANK[k]
        if found is None:
            found = {}
        elif field in found and found[field][0] < rank:
            continue
        found[field] = (rank, parsed)
    if not found:
        return None
    values = {f: v for f, (_, v) in found.items() if v is not None}
    return RateLimit(**values) if values else None
