"""Prices and costs: the shipped price table, a reply's cost, and pre-call estimates.

Prices are USD per million tokens. They come from the config (``price:`` on a deployment) or
from the shipped price table (litellm 1.109.1's maintained table, see
``llmroute/_data/prices/SOURCE.md``), never typed into code.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .types import Usage

__all__ = ["PRICE_TABLE_SOURCE", "Price", "PriceTableEntry", "cost_usd", "estimate_cost_usd", "lookup_price"]

_TABLE = Path(__file__).parent / "_data" / "prices" / "litellm_chat_prices.csv.gz"

#: Where the shipped price table comes from.
PRICE_TABLE_SOURCE = "litellm 1.109.1 model_prices_and_context_window (MIT), via llmroute/_data/prices"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens for input, output, cached input (cache reads) and cache writes.

    ``None`` for ``cached_input`` or ``cache_write`` means the input rate. Anthropic bills cache
    writes (5-minute TTL) at 1.25x its input rate.
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None


@dataclass(frozen=True, slots=True)
class PriceTableEntry:
    """One row of the shipped price table."""

    key: str
    provider: str
    price: Price
    max_input_tokens: int | None
    max_output_tokens: int | None


def _num(s: str) -> float | None:
    return float(s) if s else None


def _int(s: str) -> int | None:
    return int(float(s)) if s else None


@lru_cache(maxsize=1)
def _table() -> dict[str, PriceTableEntry]:
    rows: dict[str, PriceTableEntry] = {}
    with gzip.open(_TABLE, "rb") as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")):
            inp, out = _num(row["input_usd_per_mtok"]), _num(row["output_usd_per_mtok"])
            if inp is None or out is None:
                continue
            entry = PriceTableEntry(
                key=row["model"],
                provider=row["provider"],
                price=Price(inp, out, _num(row["cache_read_usd_per_mtok"]), _num(row["cache_write_usd_per_mtok"])),
                max_input_tokens=_int(row["max_input_tokens"]),
                max_output_tokens=_int(row["max_output_tokens"]),
            )
            rows.setdefault(row["model"], entry)
            rows.setdefault(f"{row['provider']}/{row['model']}", entry)
    return rows


def lookup_price(key: str) -> PriceTableEntry | None:
    """Find *key* in the shipped table: a model id (``gpt-4o-mini``) or ``provider/model``
    (``deepinfra/deepseek-ai/DeepSeek-V3.2``). Returns ``None`` when absent."""
    return _table().get(key)


def cost_usd(usage: Usage, price: Price) -> float:
    """What *usage* costs at *price*: cache reads at the cached rate, cache writes at the cache-write
    rate, the rest of the input at the input rate.

    Reads and writes are parts of ``input_tokens``; counts that add up to more are clamped so no
    token is billed twice, writes kept before reads (writes usually cost the most).
    """
    written = max(0, min(usage.cache_write_input_tokens, usage.input_tokens))
    cached = max(0, min(usage.cached_input_tokens, usage.input_tokens - written))
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    plain = usage.input_tokens - cached - written
    return (
        plain * price.input + cached * cached_rate + written * write_rate + usage.output_tokens * price.output
    ) / 1_000_000


def estimate_cost_usd(input_tokens: int, output_tokens: int, price: Price, *, cache_write: bool = False) -> float:
    """Upper-bound style estimate before the call: no cache-read discount, every output token given.

    Cache writes: with *cache_write* (the request asks for prompt caching), every input token is
    assumed written to the cache and priced at the higher of the input and cache-write rates;
    without it, none is (only a request marked ``cache_control`` makes Anthropic write the cache).
    """
    rate = price.input
    if cache_write and price.cache_write is not None:
        rate = max(rate, price.cache_write)
    return (input_tokens * rate + output_tokens * price.output) / 1_000_000
