"""llmroute with OpenTelemetry on: the ``llmroute_router`` client plus ``OTelHooks`` over the real
SDK (spans through a ``BatchSpanProcessor`` to an exporter that drops them, metrics into a reader
that is never collected), to measure what recording spans and metrics costs per call::

    python bench/overhead.py --baseline bench.adapters.llmroute_router --candidate bench.adapters.llmroute_otel
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from llmroute.telemetry import OTelHooks

from .llmroute_router import Client

NAME = "llmroute.Router + OTelHooks"


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def make(base_url: str) -> Client:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    hooks = OTelHooks(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return Client(base_url, hooks=[hooks])
