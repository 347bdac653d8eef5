"""llmroute with ``OTelHooks`` but no OpenTelemetry SDK configured (the API's no-op providers): what
the hook costs in an application that installs it and has not set up tracing::

    python bench/overhead.py --baseline bench.adapters.llmroute_router --candidate bench.adapters.llmroute_otel_api
"""

from __future__ import annotations

from llmroute.telemetry import OTelHooks

from .llmroute_router import Client

NAME = "llmroute.Router + OTelHooks, no SDK"


async def make(base_url: str) -> Client:
    return Client(base_url, hooks=[OTelHooks()])
