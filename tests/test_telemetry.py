"""OpenTelemetry spans and metrics, recorded by the real SDK's in-memory exporter and metric reader.

Every routed call goes over loopback to the fake fleet; spans are asserted attribute by attribute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import VirtualSleep, make_config

import llmroute
from llmroute.testing import Fault, Fleet

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (pip install -e '.[test]')")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmroute.telemetry import OTelHooks

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "What is the capital of France?"}]
NAMES = {"oai": "openai", "oai2": "openai", "claude": "anthropic", "gem": "gcp.gemini"}
CANDIDATES = ("oai/small-1", "oai2/small-1", "claude/claude-x", "gem/gemini-x")


@dataclass
class Otel:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def hooks(self, **kwargs: Any) -> OTelHooks:
        kwargs.setdefault("provider_names", NAMES)
        return OTelHooks(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs)

    def spans(self) -> tuple[ReadableSpan, list[ReadableSpan]]:
        """The one call span and its attempt spans (in start order)."""
        spans = self.exporter.get_finished_spans()
        calls = [s for s in spans if s.kind == SpanKind.INTERNAL and s.name.startswith("chat ")]
        assert len(calls) == 1, [s.name for s in spans]
        call = calls[0]
        attempts = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0)
        return call, attempts

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(exporter, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def router(fleet: Fleet, hooks: OTelHooks, vsleep: VirtualSleep | None = None) -> llmroute.Router:
    return llmroute.Router.from_dict(make_config(fleet), hooks=[hooks], sleep=vsleep)


def usage_attrs(usage: llmroute.Usage) -> dict[str, Any]:
    return {"gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens}


def attempt_start_attrs(
    a: llmroute.Attempt, provider: str, trace: llmroute.RouteTrace, **request: Any
) -> dict[str, Any]:
    (sent,) = [c.max_output_tokens for c in trace.candidates if c.deployment == a.deployment]
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": a.provider_model,
        "llmroute.route": "default",
        "llmroute.model": a.model,
        "llmroute.deployment": a.deployment,
        "llmroute.provider": a.provider,
        "llmroute.attempt": a.number,
        "llmroute.call_id": a.call_id,
        **request,
        "gen_ai.request.max_tokens": sent,  # what this deployment was sent
    }


def billed(a: llmroute.Attempt) -> dict[str, Any]:
    """The llmroute.* attributes every finished attempt span carries."""
    return {
        "llmroute.outcome": a.outcome,
        "llmroute.cost_usd": a.cost_usd,
        "llmroute.cost_estimated": a.cost_estimated,
        "llmroute.queued_s": a.queued_s,
    }


def response_attrs(reply: llmroute.Reply) -> dict[str, Any]:
    return {
        "gen_ai.response.model": reply.provider_model,
        "gen_ai.response.id": reply.response_id,
        "gen_ai.response.finish_reasons": (reply.finish_reason,),
    }


def call_start_attrs(trace: llmroute.RouteTrace, **request: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "default",
        "llmroute.route": "default",
        "llmroute.strategy": "ordered",
        "llmroute.reason": "configured order",
        "llmroute.call_id": trace.call_id,
        "llmroute.candidates": CANDIDATES,
        "llmroute.est_input_tokens": trace.est_input_tokens,
        **request,
    }


def call_end_attrs(trace: llmroute.RouteTrace, provider: str) -> dict[str, Any]:
    return {
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "llmroute.attempts": len(trace.attempts),
        "llmroute.cost_usd": trace.cost_usd,
        "llmroute.cost_estimated": any(a.cost_estimated for a in trace.attempts),
        "llmroute.queued_s": sum(a.queued_s for a in trace.attempts),
        "llmroute.hedged": False,
    }


def assert_attrs(span: ReadableSpan, expected: dict[str, Any]) -> None:
    """The span has exactly these attributes, compared one by one (so a failure names the attribute)."""
    got = dict(span.attributes or {})
    for key, value in expected.items():
        assert key in got, f"{span.name}: missing {key}"
        assert got[key] == value, f"{span.name}: {key} = {got[key]!r}, expected {value!r}"
    assert set(got) == set(expected), f"{span.name}: unexpected {sorted(set(got) - set(expected))}"


def assert_child(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id
    assert parent.start_time is not None and child.start_time is not None
    assert parent.end_time is not None and child.end_time is not None
    assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time


async def test_plain_call(fleet: Fleet, otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    async with router(fleet, otel.hooks()) as r:
        with tracer.start_as_current_span("handle request") as outer:
            reply = await r.complete(MSG, max_tokens=64, temperature=0.25, top_p=0.5, stop=["END"])
    trace = reply.route
    (attempt,) = trace.attempts
    call, (span,) = otel.spans()
    request = {
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.25,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.stop_sequences": ("END",),
    }

    assert call.name == "chat default" and call.kind == SpanKind.INTERNAL
    assert call.status.status_code == StatusCode.UNSET
    assert_attrs(
        call,
        {
            **call_start_attrs(trace, **request),
            **call_end_attrs(trace, "openai"),
            **usage_attrs(reply.usage),
            **response_attrs(reply),
            "llmroute.model": "small",
            "llmroute.deployment": "oai/small-1",
        },
    )
    assert call.attributes is not None and call.attributes["gen_ai.response.id"]
    assert call.attributes["llmroute.call_id"] == attempt.call_id != 0
    assert call.parent is not None and call.parent.span_id == outer.get_span_context().span_id

    assert span.name == "chat small-1" and span.kind == SpanKind.CLIENT
    assert span.status.status_code == StatusCode.UNSET
    assert_attrs(
        span,
        {
            **attempt_start_attrs(attempt, "openai", trace, **request),
            **billed(attempt),
            **usage_attrs(reply.usage),
            **response_attrs(reply),
        },
    )
    assert attempt.outcome == "ok" and attempt.cost_usd == reply.cost_usd > 0
    assert_child(span, call)
    assert not call.events and not span.events

    # metrics: one attempt, its tokens and cost; one call
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "small-1",
        "gen_ai.response.model": "small-1",
        "llmroute.route": "default",
        "llmroute.model": "small",
        "llmroute.deployment": "oai/small-1",
    }
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes) == base and duration.count == 1
    assert duration.sum == pytest.approx(attempt.duration_s)
    tokens = {p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")}
    assert tokens["input"].sum == reply.usage.input_tokens and tokens["output"].sum == reply.usage.output_tokens
    assert dict(tokens["input"].attributes) == {**base, "gen_ai.token.type": "input"}
    (cost,) = otel.points("llmroute.cost")
    assert cost.value == pytest.approx(reply.cost_usd)
    assert dict(cost.attributes) == {**base, "llmroute.cost_estimated": False}
    (queued,) = otel.points("llmroute.attempt.queued")
    assert queued.count == 1 and queued.sum == pytest.approx(attempt.queued_s)
    (call_duration,) = otel.points("llmroute.call.duration")
    assert dict(call_duration.attributes) == {
        "gen_ai.operation.name": "chat",
        "llmroute.route": "default",
        "llmroute.strategy": "ordered",
        "llmroute.model": "small",
    }
    assert call_duration.count == 1 and call_duration.sum == pytest.approx(trace.duration_s)
    (call_cost,) = otel.points("llmroute.call.cost")
    assert call_cost.sum == pytest.approx(trace.cost_usd)
    assert otel.points("gen_ai.client.operation.time_to_first_chunk") == []  # not a stream


async def test_stream(fleet: Fleet, otel: Otel) -> None:
    async with router(fleet, otel.hooks()) as r, r.stream(MSG, max_tokens=32) as stream:
        text = await stream.text()
    reply = stream.reply
    assert reply is not None and text == reply.text
    trace = reply.route
    (attempt,) = trace.attempts
    assert attempt.ttft_s is not None and attempt.usage is not None
    call, (span,) = otel.spans()
    request = {"gen_ai.request.max_tokens": 32, "gen_ai.request.stream": True}

    assert call.name == "chat default" and call.status.status_code == StatusCode.UNSET
    assert_attrs(
        call,
        {
            **call_start_attrs(trace, **request),
            **call_end_attrs(trace, "openai"),
            **usage_attrs(reply.usage),
            **response_attrs(reply),
            "llmroute.model": "small",
            "llmroute.deployment": "oai/small-1",
            # from the call's start, as the caller waited for it
            "gen_ai.response.time_to_first_chunk": attempt.started_s + attempt.ttft_s,
        },
    )
    assert span.name == "chat small-1" and span.kind == SpanKind.CLIENT
    assert_attrs(
        span,
        {
            **attempt_start_attrs(attempt, "openai", trace, **request),
            **billed(attempt),
            **usage_attrs(attempt.usage),
            **response_attrs(reply),
            "gen_ai.response.time_to_first_chunk": attempt.ttft_s,
        },
    )
    assert_child(span, call)

    (ttft,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttft.count == 1 and ttft.sum == pytest.approx(attempt.ttft_s)
    (rate,) = otel.points("llmroute.decode.rate")
    expected_rate = attempt.usage.output_tokens / (attempt.duration_s - attempt.ttft_s)
    assert rate.count == 1 and rate.sum == pytest.approx(expected_rate)


async def test_fallback_gives_two_attempt_spans_under_one_call_span(
    fleet: Fleet, otel: Otel, vsleep: VirtualSleep
) -> None:
    fleet["oai"].enqueue(Fault.auth())
    async with router(fleet, otel.hooks(), vsleep) as r:
        reply = await r.complete(MSG)
    trace = reply.route
    failed, answered = trace.attempts
    assert failed.deployment == "oai/small-1" and answered.deployment == "oai2/small-1"
    call, (first, second) = otel.spans()

    assert call.status.status_code == StatusCode.UNSET
    assert_attrs(
        call,
        {
            **call_start_attrs(trace),
            **call_end_attrs(trace, "openai"),
            **usage_attrs(reply.usage),
            **response_attrs(reply),
            "llmroute.model": "small",
            "llmroute.deployment": "oai2/small-1",
        },
    )
    assert call.attributes is not None and call.attributes["llmroute.attempts"] == 2

    assert first.status.status_code == StatusCode.ERROR
    assert first.status.description == failed.error and "401" in (failed.error or "")
    assert_attrs(
        first,
        {
            **attempt_start_attrs(failed, "openai", trace),
            **billed(failed),
            "http.response.status_code": 401,
            "error.type": "AuthenticationError",
        },
    )
    assert (
        first.attributes is not None and first.attributes["llmroute.cost_usd"] == 0.0
    )  # an error status is not billed

    assert second.status.status_code == StatusCode.UNSET
    assert_attrs(
        second,
        {
            **attempt_start_attrs(answered, "openai", trace),
            **billed(answered),
            **usage_attrs(reply.usage),
            **response_attrs(reply),
        },
    )
    assert second.attributes is not None and second.attributes["llmroute.provider"] == "oai2"
    for span in (first, second):
        assert_child(span, call)
    assert first.end_time is not None and second.start_time is not None and first.end_time <= second.start_time

    durations = {p.attributes.get("error.type"): p for p in otel.points("gen_ai.client.operation.duration")}
    assert set(durations) == {"AuthenticationError", None}
    assert durations["AuthenticationError"].attributes["llmroute.deployment"] == "oai/small-1"
    assert durations[None].attributes["llmroute.deployment"] == "oai2/small-1"
    # only the answering attempt used tokens and cost anything
    assert {p.attributes["llmroute.deployment"] for p in otel.points("gen_ai.client.token.usage")} == {"oai2/small-1"}
    (cost,) = otel.points("llmroute.cost")
    assert cost.value == pytest.approx(reply.cost_usd)


async def test_failure_sets_error_status_on_every_span(fleet: Fleet, otel: Otel, vsleep: VirtualSleep) -> None:
    fleet["claude"].enqueue(Fault.server_error(500), Fault.server_error(500))
    seen: list[llmroute.RouteTrace] = []

    class Keep(llmroute.Hooks):
        def call_finished(self, trace: Any, reply: Any, error: BaseException | None) -> None:
            seen.append(trace)

    hooks = otel.hooks()
    async with llmroute.Router.from_dict(make_config(fleet), hooks=[hooks, Keep()], sleep=vsleep) as r:
        with pytest.raises(llmroute.AllAttemptsFailedError) as info:
            await r.complete(MSG, model="claude")
    (trace,) = seen
    assert [a.status for a in trace.attempts] == [500, 500]
    call, attempts = otel.spans()

    assert call.name == "chat model:claude"
    assert call.status.status_code == StatusCode.ERROR and call.status.description == str(info.value)
    assert_attrs(
        call,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "model:claude",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.system": "anthropic",
            "llmroute.route": "model:claude",
            "llmroute.strategy": "ordered",
            "llmroute.reason": "configured order",
            "llmroute.call_id": trace.call_id,
            "llmroute.candidates": ("claude/claude-x",),
            "llmroute.est_input_tokens": trace.est_input_tokens,
            "llmroute.attempts": 2,
            "llmroute.cost_usd": 0.0,
            "llmroute.cost_estimated": False,
            "llmroute.queued_s": sum(a.queued_s for a in trace.attempts),
            "llmroute.hedged": False,
            "error.type": "AllAttemptsFailedError",
        },
    )
    assert [s.attributes["llmroute.attempt"] for s in attempts if s.attributes] == [1, 2]
    for span, attempt in zip(attempts, trace.attempts):
        assert span.status.status_code == StatusCode.ERROR and span.status.description == attempt.error
        assert_attrs(
            span,
            {
                **attempt_start_attrs(attempt, "anthropic", trace),
                **billed(attempt),
                "http.response.status_code": 500,
                "llmroute.route": "model:claude",
                "error.type": "ServerError",
            },
        )
        assert_child(span, call)

    (call_duration,) = otel.points("llmroute.call.duration")
    assert call_duration.attributes["error.type"] == "AllAttemptsFailedError"
    assert "llmroute.model" not in call_duration.attributes
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 2 and duration.attributes["error.type"] == "ServerError"
    assert otel.points("gen_ai.client.token.usage") == [] and otel.points("llmroute.cost") == []


async def test_stream_closed_early_is_cancelled(fleet: Fleet, otel: Otel) -> None:
    fleet["oai"].output_tokens = 50
    async with router(fleet, otel.hooks()) as r:
        stream = r.stream(MSG)
        async for _ in stream:
            break
        await stream.aclose()
    trace = stream.route
    (attempt,) = trace.attempts
    assert attempt.outcome == "cancelled"
    call, (span,) = otel.spans()
    assert call.status.status_code == StatusCode.ERROR and span.status.status_code == StatusCode.ERROR
    assert call.attributes is not None and call.attributes["error.type"] == "cancelled"
    assert span.attributes is not None and span.attributes["error.type"] == "cancelled"
    assert "gen_ai.response.model" not in call.attributes
    assert_child(span, call)


async def test_content_is_recorded_only_when_asked(fleet: Fleet, otel: Otel) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy, 14C"},
        {"role": "user", "content": "And in Rome?"},
    ]
    async with router(fleet, otel.hooks()) as r:
        await r.complete(messages, tools=tools)
    call, _ = otel.spans()
    assert call.attributes is not None
    assert not any(k in call.attributes for k in ("gen_ai.input.messages", "gen_ai.output.messages"))
    assert "gen_ai.tool.definitions" not in call.attributes

    otel.exporter.clear()
    async with router(fleet, otel.hooks(capture_content=True)) as r:
        reply = await r.complete(messages, tools=tools)
    call, (span,) = otel.spans()
    assert call.attributes is not None and span.attributes is not None
    assert json.loads(str(call.attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy, 14C"}]},
        {"role": "user", "parts": [{"type": "text", "content": "And in Rome?"}]},
    ]
    assert json.loads(str(call.attributes["gen_ai.tool.definitions"])) == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    (tool_call,) = reply.tool_calls
    parts = [{"type": "text", "content": reply.text}] if reply.text else []
    parts.append(
        {"type": "tool_call", "id": tool_call.id, "name": tool_call.name, "arguments": json.loads(tool_call.arguments)}
    )
    assert reply.finish_reason == "tool_calls"
    assert json.loads(str(call.attributes["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": parts, "finish_reason": "tool_call"}
    ]
    assert call.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    # content goes on the call span only, once
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output.m", "gen_ai.tool")) for k in span.attributes)


def test_decision_attributes_cascade_hedged_and_predicted_quality(otel: Otel) -> None:
    from llmroute.policy.cascade import TierTrace
    from llmroute.types import Attempt, Candidate, ChatRequest, Reply, Usage

    hooks = otel.hooks()
    cands = [
        Candidate("small", "oai/small-1", "oai", "small-1", 0.001, 0.62, 100, 0.002),
        Candidate("large", "claude/claude-x", "claude", "claude-x", 0.01, 0.91, 100, 0.02),
    ]
    tiers = [
        TierTrace(0, ("small",), "escalated", "checks failed", model="small"),
        TierTrace(1, ("large",), "accepted", "score 0.90 >= accept 0.50", model="large"),
    ]
    trace = llmroute.RouteTrace("smart", "cascade", cands, call_id=42, cascade=tiers)
    hooks.call_started(trace, ChatRequest([{"role": "user", "content": "hi"}]), False)
    a = Attempt("small", "oai/small-1", "oai", "small-1", 1, 0.0, call_id=42)
    b = Attempt("large", "claude/claude-x", "claude", "claude-x", 1, 0.1, call_id=42)
    for att in (a, b):  # b starts while a is in flight: a hedged pair
        trace.attempts.append(att)
        hooks.attempt_started(att)
    a.duration_s, a.outcome, a.usage, a.cost_usd = 0.5, "ok", Usage(5, 5), 0.001
    b.duration_s, b.outcome, b.usage, b.cost_usd = 0.3, "ok", Usage(5, 7), 0.01
    hooks.attempt_finished(a, None)
    hooks.attempt_finished(b, None)
    trace.duration_s = 0.6
    reply = Reply("done", (), "stop", Usage(5, 7), 0.01, "large", "claude/claude-x", "claude", "claude-x", trace, "r1")
    hooks.call_finished(trace, reply, None)
    call, attempts = otel.spans()
    assert call.attributes is not None
    assert call.attributes["llmroute.strategy"] == "cascade"
    assert call.attributes["llmroute.cascade.tiers"] == 2 and call.attributes["llmroute.cascade.tier"] == 1
    assert call.attributes["llmroute.hedged"] is True
    assert call.attributes["llmroute.predicted_quality"] == 0.91  # the answering candidate's
    assert call.attributes["gen_ai.provider.name"] == "anthropic"
    assert call.attributes["llmroute.cost_usd"] == pytest.approx(0.011)
    assert [s.attributes["gen_ai.request.max_tokens"] for s in attempts if s.attributes] == [100, 100]


def test_calls_that_never_started_and_unknown_attempts_are_handled(otel: Otel) -> None:
    from llmroute.types import Attempt

    hooks = otel.hooks()
    hooks.attempt_started(Attempt("m", "d", "p", "pm", 1, 0.0, call_id=7))  # no call: ignored
    hooks.attempt_finished(Attempt("m", "d", "p", "pm", 1, 0.0, call_id=7), None)
    trace = llmroute.RouteTrace("default", "", [], duration_s=0.25)  # planning failed: only call_finished
    hooks.call_finished(trace, None, llmroute.DeadlineExceededError("default", 0.25, []))
    (span,) = otel.exporter.get_finished_spans()
    assert span.name == "chat default" and span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "DeadlineExceededError"
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == pytest.approx(0.25e9, rel=0.01)


def test_no_opentelemetry_no_import_and_a_no_op_hook() -> None:
    code = (
        "import sys, llmroute, llmroute.telemetry; llmroute.Router;"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), 'imported early';"
        "sys.modules['opentelemetry'] = None;"  # as if not installed
        "import logging; logging.basicConfig(level=logging.WARNING, format='%(name)s %(message)s');"
        "from llmroute.types import RouteTrace, ChatRequest, Attempt;"
        "h = llmroute.telemetry.OTelHooks(); assert h.enabled is False;"
        "t = RouteTrace('r', 'ordered', [], call_id=1); a = Attempt('m', 'd', 'p', 'pm', 1, 0.0, call_id=1);"
        "h.call_started(t, ChatRequest([]), False); h.attempt_started(a); h.attempt_finished(a, None);"
        "h.call_finished(t, None, None); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert "llmroute.telemetry opentelemetry-api is not installed" in out.stderr


async def test_a_cascade_is_one_call_span_with_its_tiers_inside(fleet: Fleet, otel: Otel) -> None:
    """A cascade route: one call span for the whole call (cascade attributes, its cost), each
    tier a call span under it with its attempts under that; call metrics recorded once."""
    cfg = make_config(fleet)
    cfg["routes"]["smart"] = {"strategy": "cascade", "models": ["small", "claude"], "checks": ["non_empty"]}
    saved = fleet["oai"].reply
    fleet["oai"].reply = ""  # the cheap answer is empty: escalate
    try:
        async with llmroute.Router.from_dict(cfg, hooks=[otel.hooks()]) as r:
            reply = await r.complete("Name three moons of Jupiter.", route="smart")
    finally:
        fleet["oai"].reply = saved
    assert [t.outcome for t in reply.route.cascade] == ["escalated", "accepted"]
    spans = otel.exporter.get_finished_spans()
    calls = [s for s in spans if s.kind == SpanKind.INTERNAL]
    (outer,) = [s for s in calls if s.parent is None]
    tiers = sorted((s for s in calls if s is not outer), key=lambda s: s.start_time or 0)
    assert len(tiers) == 2 and all(t.parent.span_id == outer.context.span_id for t in tiers)
    assert outer.attributes["llmroute.strategy"] == "cascade"
    assert outer.attributes["llmroute.cascade.tiers"] == 2 and outer.attributes["llmroute.cascade.tier"] == 1
    assert outer.attributes["llmroute.call_id"] == reply.route.call_id != 0
    attempts = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert len(attempts) == 2
    assert {a.parent.span_id for a in attempts} == {t.context.span_id for t in tiers}
    assert outer.start_time <= tiers[0].start_time and tiers[-1].end_time <= outer.end_time
    durations = otel.points("llmroute.call.duration")
    assert sum(p.count for p in durations) == 1  # the cascade call, not each tier again
