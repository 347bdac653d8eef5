"""Feeding a stream parser in pieces: shared by the adapters' unit tests."""

from __future__ import annotations

import random

from llmroute.providers.base import Adapter, Target
from llmroute.types import Chunk


def feed_stream(adapter: Adapter, target: Target, data: bytes, sizes: list[int] | None = None) -> list[Chunk]:
    """Every chunk a fresh parser yields for *data* fed in pieces of *sizes* (the rest at the end)."""
    parser = adapter.stream_parser(target)
    out: list[Chunk] = []
    pos = 0
    for size in sizes or [len(data)]:
        out.extend(parser.feed(data[pos : pos + size]))
        pos += size
    out.extend(parser.feed(data[pos:]))
    out.extend(parser.close())
    return out


def random_sizes(n: int, seed: int) -> list[int]:
    """Random piece sizes (1..40 bytes) covering at least *n* bytes, reproducible by *seed*."""
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(rng.randint(1, 40))
    return sizes
