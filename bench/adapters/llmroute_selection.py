"""llmroute with live selection: the same router as ``llmroute_router``, with a ``selection``
block on the route, so health lookups, scoring and the trace's explanation run on every call."""

from __future__ import annotations

from bench.adapters.llmroute_router import Client, config

NAME = "llmroute.Router+selection"


async def make(base_url: str) -> Client:
    cfg = config(base_url)
    cfg["routes"]["default"]["selection"] = {"objective": {"price": 1, "latency": 1}}
    return Client(base_url, cfg=cfg)
