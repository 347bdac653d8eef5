"""OpenTelemetry: GenAI spans and metrics for every routed call and every attempt.

::

    pip install 'llmroute[otel]'        # opentelemetry-api; you configure the SDK and exporters

    from llmroute.telemetry import OTelHooks
    router = llmroute.Router(config, hooks=[OTelHooks()])

:class:`OTelHooks` is a :class:`~llmroute.hooks.Hooks` object. For each routed call it records

* a **call span** ``chat {route}`` (kind ``INTERNAL``), a child of whatever span is current where
  the call is made: the call as the application sees it, with the decision (``llmroute.*``);
* one **attempt span** ``chat {provider model}`` (kind ``CLIENT``) per request sent to a provider,
  retries and fallbacks included, each a child of the call span;
* metrics (``gen_ai.client.token.usage``, ``gen_ai.client.operation.duration``,
  ``gen_ai.client.operation.time_to_first_chunk``, and ``llmroute.*`` cost, decode rate, queueing
  and call duration).

Names follow the OpenTelemetry GenAI semantic conventions v1.41 (:data:`SEMCONV_VERSION`); see
docs/operations.md for every attribute and metric. Prompts and completions are recorded only with
``capture_content=True`` (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.tool.definitions``, JSON strings on the call span); API keys never reach telemetry (nothing
here reads them).

Spans are never made "current" (a stream's spans live across the caller's ``await``\\ s and an
async generator's yields): the hook holds span objects and gives each attempt span its parent
explicitly. OpenTelemetry is imported when an :class:`OTelHooks` is made, never by
``import llmroute``; without ``opentelemetry-api`` installed the hook does nothing (one warning
says so).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from .errors import LLMRouteError
from .hooks import Hooks
from .types import Attempt, ChatRequest, Reply, RouteTrace

__all__ = ["SEMCONV_VERSION", "OTelHooks"]

logger = logging.getLogger("llmroute.telemetry")

#: The OpenTelemetry semantic conventions release whose GenAI names this module follows.
SEMCONV_VERSION = "1.41.1"

#: ``gen_ai.provider.name`` for config provider names that match a well-known provider (the
#: semantic conventions' list); other names are used as they are, unless ``provider_names`` maps them.
WELL_KNOWN_PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "google": "gcp.gen_ai",
    "vertex": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
    "mistral": "mistral_ai",
    "mistral_ai": "mistral_ai",
    "perplexity": "perplexity",
    "xai": "x_ai",
    "x_ai": "x_ai",
}

# Bucket boundaries the conventions advise (seconds; tokens), and llmroute's own.
_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_QUEUED = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_RATE = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
_USD = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)

_CHAT = "chat"


class _Call:
    """What the hook keeps about one call in flight: its span and its attempts' spans."""

    __slots__ = ("attempts", "ctx", "done", "request", "span", "stream", "trace")

    def __init__(self, span: Any, ctx: Any, trace: RouteTrace, request: ChatRequest | None, stream: bool) -> None:
        self.span = span
        self.ctx = ctx  # the context whose current span is the call span: the attempts' parent
        self.trace = trace
        self.request = request
        self.stream = stream
        #: Open attempt spans by ``id(attempt)``.
        self.attempts: dict[int, Any] = {}
        #: Answering attempts, ended: their span waits for the reply's response fields.
        self.done: list[tuple[Any, Attempt, int]] = []


class OTelHooks(Hooks):
    """Records OpenTelemetry GenAI spans and metrics for every routed call and attempt.

    *tracer_provider* and *meter_provider* default to the global ones (``opentelemetry.trace`` /
    ``opentelemetry.metrics``; no-ops until an SDK is configured). *capture_content* records
    prompts, tool definitions and completions on the call span (off by default: they are user
    data). *provider_names* maps config provider names to ``gen_ai.provider.name`` values
    (default: :data:`WELL_KNOWN_PROVIDERS`, else the config name). *legacy_system* also sets
    ``gen_ai.system`` (the attribute's name before semantic conventions v1.37) for backends that
    still read it.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        capture_content: bool = False,
        provider_names: Mapping[str, str] | None = None,
        legacy_system: bool = True,
    ) -> None:
        self.capture_content = capture_content
        self.legacy_system = legacy_system
        self._names = dict(provider_names or {})
        self._calls: dict[int, _Call] = {}
        try:
            from opentelemetry import metrics, trace
        except ImportError:
            logger.warning(
                "opentelemetry-api is not installed: OTelHooks records nothing (pip install 'llmroute[otel]')"
            )
            self.enabled = False
            return
        from . import __version__

        #: Whether OpenTelemetry was found (if not, every hook method returns at once).
        self.enabled = True
        self._trace = trace
        self._tracer = trace.get_tracer("llmroute", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("llmroute", __version__, meter_provider=meter_provider)

        def hist(name: str, unit: str, description: str, buckets: Sequence[float]) -> Any:
            return meter.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=buckets)

        self._duration = hist(
            "gen_ai.client.operation.duration", "s", "Duration of one request to a provider (one attempt).", _SECONDS
        )
        self._tokens = hist(
            "gen_ai.client.token.usage",
            "{token}",
            "Input and output tokens of one attempt, as the provider reported.",
            _TOKENS,
        )
        self._ttft = hist(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Seconds from a streamed attempt's start to its first content chunk.",
            _SECONDS,
        )
        self._decode = hist(
            "llmroute.decode.rate",
            "{token}/s",
            "Output tokens per second of a streamed answer after its first chunk.",
            _RATE,
        )
        self._queued = hist(
            "llmroute.attempt.queued",
            "s",
            "Seconds an attempt waited for one of the router's max_connections places.",
            _QUEUED,
        )
        self._cost = meter.create_counter(
            "llmroute.cost",
            "{USD}",
            "What attempts may have been billed (estimated where the provider reported no usage).",
        )
        self._call_duration = hist(
            "llmroute.call.duration",
            "s",
            "Duration of a routed call: planning, queueing, every attempt and wait.",
            _SECONDS,
        )
        self._call_cost = hist("llmroute.call.cost", "{USD}", "Cost of a routed call, every attempt included.", _USD)

    # ------------------------------------------------------------------ names
    def provider_name(self, provider: str) -> str:
        """The ``gen_ai.provider.name`` for a config provider name."""
        name = self._names.get(provider)
        if name is None:
            name = WELL_KNOWN_PROVIDERS.get(provider.lower(), provider)
        return name

    def _provider_attrs(self, provider: str) -> dict[str, Any]:
        name = self.provider_name(provider)
        attrs: dict[str, Any] = {"gen_ai.provider.name": name}
        if self.legacy_system:
            attrs["gen_ai.system"] = name
        return attrs

    # ------------------------------------------------------------------ hooks
    def call_started(self, trace: RouteTrace, request: ChatRequest, stream: bool) -> None:
        """Open the call span (backdated to the call's start: planning included)."""
        if not self.enabled:
            return
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": _CHAT,
            "gen_ai.request.model": trace.route,
            "llmroute.route": trace.route,
            "llmroute.strategy": trace.strategy,
            "llmroute.call_id": trace.call_id,
            "llmroute.candidates": [c.deployment for c in trace.candidates],
            "llmroute.est_input_tokens": trace.est_input_tokens,
        }
        attrs.update(_request_attrs(request, stream))
        if trace.reason:
            attrs["llmroute.reason"] = trace.reason
        if self.capture_content:
            attrs["gen_ai.input.messages"] = _json(_input_messages(request.messages))
            if request.tools:
                attrs["gen_ai.tool.definitions"] = _json(_tool_definitions(request.tools))
        parent = self._calls.get(trace.parent_call_id) if trace.parent_call_id else None
        if parent is not None:  # a cascade's tier: its call span goes under the cascade's
            attrs["llmroute.parent_call_id"] = trace.parent_call_id
        start = time_ns() - int(max(0.0, trace.duration_s) * 1e9)
        span = self._tracer.start_span(
            f"{_CHAT} {trace.route}",
            context=None if parent is None else parent.ctx,
            attributes=attrs,
            start_time=start,
        )
        ctx = self._trace.set_span_in_context(span)
        self._calls[trace.call_id] = _Call(span, ctx, trace, request, stream)

    def attempt_started(self, attempt: Attempt) -> None:
        """Open an attempt span under its call's span."""
        if not self.enabled:
            return
        call = self._calls.get(attempt.call_id)
        if call is None:  # an attempt outside a started call (an executor driven by hand)
            return
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": _CHAT,
            "gen_ai.request.model": attempt.provider_model,
            "llmroute.route": call.trace.route,
            "llmroute.model": attempt.model,
            "llmroute.deployment": attempt.deployment,
            "llmroute.provider": attempt.provider,
            "llmroute.attempt": attempt.number,
            "llmroute.call_id": attempt.call_id,
        }
        attrs.update(self._provider_attrs(attempt.provider))
        if call.request is not None:
            attrs.update(_request_attrs(call.request, call.stream))
        for c in call.trace.candidates:
            if c.deployment == attempt.deployment and c.model == attempt.model:
                attrs["gen_ai.request.max_tokens"] = c.max_output_tokens  # what was sent to this deployment
                break
        kind = self._trace.SpanKind.CLIENT
        span = self._tracer.start_span(
            f"{_CHAT} {attempt.provider_model}", context=call.ctx, kind=kind, attributes=attrs
        )
        call.attempts[id(attempt)] = span

    def attempt_finished(self, attempt: Attempt, error: BaseException | None) -> None:
        """Close an attempt span; an answering attempt's waits for the reply (response model, finish reason)."""
        if not self.enabled:
            return
        call = self._calls.get(attempt.call_id)
        span = None if call is None else call.attempts.pop(id(attempt), None)
        if call is None or span is None:
            return
        span.set_attributes(_attempt_end_attrs(attempt))
        if attempt.outcome == "ok":
            call.done.append((span, attempt, time_ns()))
            return
        etype = _attempt_error_type(attempt)
        span.set_attribute("error.type", etype)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, attempt.error or etype))
        span.end()
        self._record_attempt(call.trace.route, attempt, None, etype)

    def call_finished(self, trace: RouteTrace, reply: Reply | None, error: BaseException | None) -> None:
        """Close the call's attempt spans and its span; record the call's metrics."""
        if not self.enabled:
            return
        call = self._calls.pop(trace.call_id, None)
        end = time_ns()
        if call is None:  # it ended before its plan was made (deadline during warm-up, ...)
            start = end - int(max(0.0, trace.duration_s) * 1e9)
            attrs = {"gen_ai.operation.name": _CHAT, "gen_ai.request.model": trace.route, "llmroute.route": trace.route}
            call = _Call(
                self._tracer.start_span(f"{_CHAT} {trace.route}", attributes=attrs, start_time=start),
                None,
                trace,
                None,
                False,
            )
        response = _response_attrs(reply)
        for span, attempt, ended in call.done:
            span.set_attributes(response)
            span.end(end_time=ended)
            self._record_attempt(trace.route, attempt, reply.provider_model if reply is not None else None, None)
        for span in call.attempts.values():  # not expected: every attempt reports its end first
            span.end(end_time=end)
        span = call.span
        attrs = _call_end_attrs(trace, reply)
        last = trace.chosen or (trace.attempts[-1] if trace.attempts else None)
        provider = last.provider if last is not None else (trace.candidates[0].provider if trace.candidates else None)
        if provider is not None:
            attrs.update(self._provider_attrs(provider))
        attrs.update(response)
        if reply is not None and self.capture_content:
            attrs["gen_ai.output.messages"] = _json(_output_messages(reply))
        etype = None
        if error is not None:
            etype = _error_type(error)
            attrs["error.type"] = etype
            description = str(error) if isinstance(error, LLMRouteError) else etype
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))
        span.set_attributes(attrs)
        span.end(end_time=end)
        if trace.parent_call_id:
            return  # a cascade's tier: the cascade call records the call's metrics, once
        metric = {
            "gen_ai.operation.name": _CHAT,
            "llmroute.route": trace.route,
            "llmroute.strategy": trace.strategy,
        }
        if reply is not None:
            metric["llmroute.model"] = reply.model
        if etype is not None:
            metric["error.type"] = etype
        self._call_duration.record(trace.duration_s, metric)
        self._call_cost.record(trace.cost_usd, metric)

    # ------------------------------------------------------------------ metrics
    def _record_attempt(self, route: str, attempt: Attempt, response_model: str | None, etype: str | None) -> None:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": _CHAT,
            "gen_ai.provider.name": self.provider_name(attempt.provider),
            "gen_ai.request.model": attempt.provider_model,
            "llmroute.route": route,
            "llmroute.model": attempt.model,
            "llmroute.deployment": attempt.deployment,
        }
        if response_model is not None:
            attrs["gen_ai.response.model"] = response_model
        if etype is not None:
            attrs["error.type"] = etype
        self._duration.record(attempt.duration_s, attrs)
        self._queued.record(attempt.queued_s, attrs)
        usage = attempt.usage
        if usage is not None and not attempt.cost_estimated:  # the provider's counts, not an estimate
            self._tokens.record(usage.input_tokens, {**attrs, "gen_ai.token.type": "input"})
            self._tokens.record(usage.output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if attempt.cost_usd:
            self._cost.add(attempt.cost_usd, {**attrs, "llmroute.cost_estimated": attempt.cost_estimated})
        if attempt.ttft_s is not None:
            self._ttft.record(attempt.ttft_s, attrs)
            rate = _decode_rate(attempt)
            if rate is not None:
                self._decode.record(rate, attrs)


# ---------------------------------------------------------------------- attributes
def _request_attrs(request: ChatRequest, stream: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if request.max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = request.max_tokens
    if request.temperature is not None:
        attrs["gen_ai.request.temperature"] = float(request.temperature)
    if request.top_p is not None:
        attrs["gen_ai.request.top_p"] = float(request.top_p)
    if request.stop:
        attrs["gen_ai.request.stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    fmt = request.response_format
    if fmt is not None and fmt.get("type") in ("json_object", "json_schema"):
        attrs["gen_ai.output.type"] = "json"
    if stream:
        attrs["gen_ai.request.stream"] = True
    return attrs


def _attempt_end_attrs(attempt: Attempt) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "llmroute.outcome": attempt.outcome,
        "llmroute.cost_usd": attempt.cost_usd,
        "llmroute.cost_estimated": attempt.cost_estimated,
        "llmroute.queued_s": attempt.queued_s,
    }
    if attempt.usage is not None:
        attrs.update(_usage_attrs(attempt.usage))
    if attempt.status is not None:
        attrs["http.response.status_code"] = attempt.status
    if attempt.ttft_s is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = attempt.ttft_s
    return attrs


def _usage_attrs(usage: Any) -> dict[str, Any]:
    attrs = {"gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens}
    if usage.cached_input_tokens:
        attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
    if usage.cache_write_input_tokens:
        attrs["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_input_tokens
    return attrs


def _response_attrs(reply: Reply | None) -> dict[str, Any]:
    if reply is None:
        return {}
    attrs: dict[str, Any] = {"gen_ai.response.model": reply.provider_model}
    if reply.finish_reason is not None:
        attrs["gen_ai.response.finish_reasons"] = [reply.finish_reason]
    if reply.response_id:
        attrs["gen_ai.response.id"] = reply.response_id
    return attrs


def _call_end_attrs(trace: RouteTrace, reply: Reply | None) -> dict[str, Any]:
    attempts = trace.attempts
    attrs: dict[str, Any] = {
        "llmroute.attempts": len(attempts),
        "llmroute.cost_usd": trace.cost_usd,
        "llmroute.cost_estimated": any(a.cost_estimated for a in attempts),
        "llmroute.queued_s": sum(a.queued_s for a in attempts),
        "llmroute.hedged": _hedged(attempts),
    }
    chosen = trace.chosen
    if reply is not None:
        attrs["llmroute.model"] = reply.model
        attrs["llmroute.deployment"] = reply.deployment
        attrs.update(_usage_attrs(reply.usage))
    if chosen is not None:
        for c in trace.candidates:
            if c.deployment == chosen.deployment and c.model == chosen.model:
                if c.score is not None:
                    attrs["llmroute.predicted_quality"] = float(c.score)
                break
        if chosen.ttft_s is not None:  # from the call's start, as the caller waited for it
            attrs["gen_ai.response.time_to_first_chunk"] = chosen.started_s + chosen.ttft_s
    difficulty = getattr(trace.prediction, "difficulty", None)
    if isinstance(difficulty, (int, float)):
        attrs["llmroute.predicted_difficulty"] = float(difficulty)
    tiers = trace.cascade  # cascade routes: one record per tier
    if tiers:
        attrs["llmroute.cascade.tiers"] = len(tiers)
        answered = [t for t in tiers if getattr(t, "outcome", None) == "accepted"] or [
            t for t in tiers if getattr(t, "model", None) is not None
        ]
        if answered and isinstance(getattr(answered[-1], "tier", None), int):
            attrs["llmroute.cascade.tier"] = answered[-1].tier
    return attrs


def _hedged(attempts: Sequence[Attempt]) -> bool:
    """Whether two attempts of the call were in flight at once (a hedged request)."""
    ends: float | None = None
    for a in sorted(attempts, key=lambda a: a.started_s):
        if ends is not None and a.started_s < ends:
            return True
        end = a.started_s + a.duration_s
        ends = end if ends is None else max(ends, end)
    return False


def _decode_rate(attempt: Attempt) -> float | None:
    """Output tokens per second after the first chunk, for a streamed answer with reported usage."""
    usage = attempt.usage
    if attempt.outcome != "ok" or usage is None or attempt.ttft_s is None or usage.output_tokens < 2:
        return None
    decoding = attempt.duration_s - attempt.ttft_s
    return usage.output_tokens / decoding if decoding > 0 else None


def _error_type(error: BaseException) -> str:
    """``error.type`` of a call: ``cancelled`` for a cancelled call or abandoned stream, else the class name."""
    if isinstance(error, GeneratorExit) or type(error).__name__ in ("CancelledError", "Cancelled"):
        return "cancelled"
    return type(error).__name__


def _attempt_error_type(attempt: Attempt) -> str:
    if attempt.outcome == "cancelled":
        return "cancelled"
    return attempt.error_type or "_OTHER"


# ---------------------------------------------------------------------- content (opt-in)
def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _maybe_json(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content as semantic-convention message parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            parts.append({"type": "text", "content": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                parts.append({"type": "blob", "modality": "image", "mime_type": mime, "content": data})
            else:
                parts.append({"type": "uri", "modality": "image", "uri": url})
        else:
            parts.append({"type": str(kind)})
    return parts


def _input_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            content = m.get("content")
            if not isinstance(content, str):
                content = "".join(p.get("content", "") for p in _parts(content))
            part = {"type": "tool_call_response", "id": m.get("tool_call_id"), "response": content}
            out.append({"role": "tool", "parts": [part]})
            continue
        parts = _parts(m.get("content"))
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": fn.get("name"),
                    "arguments": _maybe_json(fn.get("arguments")),
                }
            )
        out.append({"role": role, "parts": parts})
    return out


def _output_messages(reply: Reply) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if reply.text:
        parts.append({"type": "text", "content": reply.text})
    for call in reply.tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": _maybe_json(call.arguments)})
    out: dict[str, Any] = {"role": "assistant", "parts": parts}
    if reply.finish_reason is not None:  # the conventions' name for a tool call stop is "tool_call"
        out["finish_reason"] = "tool_call" if reply.finish_reason == "tool_calls" else reply.finish_reason
    return [out]


def _tool_definitions(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        entry: dict[str, Any] = {"type": tool.get("type", "function"), "name": fn.get("name")}
        if fn.get("description"):
            entry["description"] = fn["description"]
        if fn.get("parameters") is not None:
            entry["parameters"] = fn["parameters"]
        out.append(entry)
    return out
