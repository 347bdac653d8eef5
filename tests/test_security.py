"""Keys never leak: not in reprs, config dumps, logs, errors or traces."""

from __future__ import annotations

import logging
import traceback

import pytest
from conftest import SECRET, VirtualSleep, make_config

import llmroute
from llmroute.testing import Fault, Fleet

pytestmark = pytest.mark.anyio


async def test_key_never_in_repr_logs_errors_or_trace(
    fleet: Fleet, vsleep: VirtualSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = make_config(fleet)
    cfg["providers"]["oai"]["headers"] = {"x-extra-auth": SECRET}
    fleet["oai"].enqueue(Fault.auth())
    for name in ("oai2", "claude", "gem"):
        fleet[name].enqueue(Fault.server_error(500), Fault.server_error(500))
    r = llmroute.Router.from_dict(cfg, sleep=vsleep)
    texts = [repr(r), str(r.config), repr(r.config), r.config.model_dump_json(), repr(r.plan("hi"))]
    with pytest.raises(llmroute.AllAttemptsFailedError) as info:
        await r.complete("hi")
    texts += [str(info.value), repr(info.value)]
    texts += [str(e) + repr(e) + repr(vars(e)) for e in info.value.errors]
    texts += [repr(info.value.errors[0].__cause__), repr(info.value.errors[0].__context__)]
    reply = await r.complete("hello")
    texts += [repr(reply), str(reply.route.to_dict())]
    await r.aclose()
    texts += [rec.getMessage() for rec in caplog.records]
    for text in texts:
        assert SECRET not in text
    # and the key really was sent to the provider
    assert fleet["oai"].requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_config_error_does_not_echo_the_key() -> None:
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.Router.from_dict(
            {"providers": {"p": {"api": "openai", "api_key": SECRET, "nope": SECRET}}, "models": {}}
        )
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.errors)


def _everything_said_about(exc: BaseException) -> str:
    """Every text an error exposes: str, repr, attributes, its context and cause, the traceback."""
    parts = [str(exc), repr(exc), repr(getattr(exc, "errors", None)), repr(exc.__context__), repr(exc.__cause__)]
    parts += traceback.format_exception(exc)
    link = exc.__cause__ or exc.__context__
    while link is not None:
        parts += [str(link), repr(link), repr(link.args)]
        link = link.__cause__ or link.__context__
    return "\n".join(parts)


async def test_a_key_with_a_trailing_newline_is_stripped_and_used(
    fleet: Fleet, vsleep: VirtualSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = make_config(fleet)
    cfg["providers"]["oai"]["api_key"] = SECRET + "\n"  # as read from a file or a Kubernetes secret
    async with llmroute.Router.from_dict(cfg, sleep=vsleep) as r:
        reply = await r.complete("hi")
    assert reply.deployment == "oai/small-1" and len(reply.route.attempts) == 1
    assert fleet["oai"].requests[0].headers["authorization"] == f"Bearer {SECRET}"
    texts = [str(reply.route.to_dict()), repr(reply)] + [rec.getMessage() for rec in caplog.records]
    assert not any(SECRET in t for t in texts)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("api_key", SECRET + "\u00e9"),
        ("api_key", SECRET[:10] + "\n" + SECRET[10:]),
        ("api_key", SECRET + "\x00"),
        ("header", SECRET + "\r\nx-injected: 1"),
        ("header", "\u00e9" + SECRET),
        ("env", SECRET[:10] + "\u2028" + SECRET[10:]),
    ],
)
def test_a_malformed_key_is_refused_at_load_and_never_echoed(where: str, value: str) -> None:
    cfg = {
        "providers": {"p": {"api": "openai", "api_key": "sk-ok"}},
        "models": {"m": {"deployments": [{"provider": "p", "model": "gpt-4o-mini"}]}},
    }
    environ = {}
    if where == "api_key":
        cfg["providers"]["p"]["api_key"] = value
    elif where == "header":
        cfg["providers"]["p"]["headers"] = {"x-auth": value}
    else:
        cfg["providers"]["p"] = {"api": "openai", "api_key_env": "KEY"}
        environ = {"KEY": value}
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.Router.from_dict(cfg, environ=environ)
    assert info.value.errors and info.value.errors[0][0].startswith("providers.p.")
    said = _everything_said_about(info.value)
    assert SECRET not in said and SECRET[10:] not in said


def test_a_config_error_keeps_no_context_holding_the_key() -> None:
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.Router.from_dict({"providers": {"p": {"api": "openai", "api_key": SECRET, "nope": SECRET}}})
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert SECRET not in _everything_said_about(info.value)


def test_router_repr_is_total() -> None:
    half_built = llmroute.Router.__new__(llmroute.Router)
    assert repr(half_built) == "Router(<not configured>)"

    class Failing(llmroute.Router):
        def __init__(self) -> None:
            self.config = None  # type: ignore[assignment]
            raise RuntimeError(repr(self))  # repr during a failed __init__

    with pytest.raises(RuntimeError, match="not configured"):
        Failing()


async def test_a_header_the_http_stack_refuses_does_not_leak(fleet: Fleet) -> None:
    """Defence in depth below the config check: if a bad header value ever reaches h11, its
    'Illegal header value' text (which quotes the key) is withheld along the whole chain."""
    import httpx
    from pydantic import SecretStr

    from llmroute.config import RetryConfig
    from llmroute.execute import PlannedCandidate, send
    from llmroute.providers import get_adapter
    from llmroute.providers.base import Target
    from llmroute.types import Candidate, ChatRequest

    target = Target(
        provider="oai",
        api="openai",
        base_url=fleet.base_url("oai"),
        model="small-1",
        deployment="oai/small-1",
        api_key=SecretStr(SECRET + "\n"),  # bypasses the config: as if a check were missing
    )
    pc = PlannedCandidate(
        Candidate("small", "oai/small-1", "oai", "small-1", 0.0),
        get_adapter("openai"),
        target,
        llmroute.Price(1.0, 1.0),
        {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0},
        RetryConfig(),
    )
    async with httpx.AsyncClient() as client:
        with pytest.raises(llmroute.ProviderError) as info:
            await send(client, pc, ChatRequest([{"role": "user", "content": "hi"}]))
    assert not info.value.retryable and info.value.fallback
    assert SECRET not in _everything_said_about(info.value)
    assert fleet["oai"].calls == 0


async def test_key_never_in_log_fields_or_telemetry(
    fleet: Fleet, vsleep: VirtualSleep, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log record (message and structured fields) and every span and metric attribute, over
    failed, retried, fallen-back and streamed calls, with prompts and completions captured."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="needs opentelemetry-sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llmroute.telemetry import OTelHooks

    caplog.set_level(logging.DEBUG)
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = sdk.TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks = OTelHooks(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]), capture_content=True
    )
    cfg = make_config(fleet)
    cfg["providers"]["oai"]["headers"] = {"x-extra-auth": SECRET}
    fleet["oai"].enqueue(Fault.auth(), Fault.rate_limit(retry_after=0.1))
    fleet["oai2"].enqueue(Fault.server_error(500), Fault.server_error(500))
    async with llmroute.Router.from_dict(cfg, sleep=vsleep, hooks=[hooks]) as r:
        await r.complete("hi")
        await r.stream("hello").text()
        for name in ("oai", "oai2", "claude", "gem"):
            fleet[name].enqueue(Fault.auth())
        with pytest.raises(llmroute.AllAttemptsFailedError):
            await r.complete("again")
    texts = [rec.getMessage() + repr(vars(rec)) for rec in caplog.records]
    assert any("retrying" in t for t in texts) and any("failed" in t for t in texts)
    spans = exporter.get_finished_spans()
    assert len(spans) >= 8
    texts += [repr(dict(s.attributes or {})) + repr(s.status.description) + repr(s.events) for s in spans]
    texts.append(reader.get_metrics_data().to_json())
    for text in texts:
        assert SECRET not in text
    assert fleet["oai"].requests[0].headers["x-extra-auth"] == SECRET  # it was sent
