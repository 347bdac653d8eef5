"""The values llmroute hands back: replies, stream chunks, usage, and the route trace.

Requests use the OpenAI chat message shape (plain dicts), which every adapter translates to its
provider's wire format: ``{"role": "system" | "user" | "assistant" | "tool", "content": ...}``,
with ``tool_calls`` on assistant messages and ``tool_call_id`` on tool results. Content is a
string or a list of parts (``{"type": "text", "text": ...}``, ``{"type": "image_url", ...}``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .ratelimit import RateLimitInfo

__all__ = [
    "Attempt",
    "Candidate",
    "Capabilities",
    "ChatRequest",
    "Chunk",
    "Completion",
    "FinishReason",
    "Message",
    "Reply",
    "RouteTrace",
    "TokenLogprobs",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]

#: A chat message in the OpenAI shape (see the module docstring).
Message = Mapping[str, Any]

#: Why generation stopped, normalised across providers.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the provider for one call.

    ``input_tokens`` is the whole prompt: cache reads and cache writes are parts of it, not extra.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    #: Input tokens served from the provider's prompt cache (included in ``input_tokens``).
    cached_input_tokens: int = 0
    #: Input tokens written to the provider's prompt cache (included in ``input_tokens``); only
    #: Anthropic reports them, and bills them above the plain input rate.
    cache_write_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_input_tokens + other.cache_write_input_tokens,
        )


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """A compact summary of the answer's token log-probabilities (natural log), where the provider
    returned them (OpenAI ``logprobs``, Gemini ``responseLogprobs``): the cascade's confidence."""

    #: Tokens summarised.
    tokens: int
    #: Mean log-probability per token (<= 0).
    mean: float
    #: The least likely token's log-probability (<= 0).
    min: float


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is the JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str
    #: Gemini's opaque ``thoughtSignature`` for this call, to send back unchanged with the call
    #: (Gemini 3 rejects a tool-calling history without it); ``None`` for other providers.
    thought_signature: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """This call in the OpenAI message shape, to append to the conversation.

        A thought signature travels as ``extra_content.google.thought_signature``, the field
        Google's own OpenAI-compatible endpoint uses.
        """
        call: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        if self.thought_signature is not None:
            call["extra_content"] = {"google": {"thought_signature": self.thought_signature}}
        return call


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call: ``index`` ties fragments of the same call together."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    #: Gemini's ``thoughtSignature`` for the call, on the fragment that carried it.
    thought_signature: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What to ask, independent of any provider's wire format."""

    messages: Sequence[Message]
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: Any = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] | None = None
    #: ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {...}}``.
    response_format: Mapping[str, Any] | None = None
    #: Extra top-level fields merged into the provider's request body as given.
    extra_body: Mapping[str, Any] | None = None
    #: Ask for token log-probabilities where the wire format has them (OpenAI, Gemini); cascades set it.
    logprobs: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    """One provider's parsed answer, before routing details are attached."""

    text: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage = field(default_factory=Usage)
    #: The model id the provider says answered.
    response_model: str | None = None
    response_id: str | None = None
    #: Token log-probabilities, when asked for and returned.
    logprobs: TokenLogprobs | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a streamed reply.

    ``text`` is the new text only. The last chunk of a stream carries ``finish_reason`` and,
    where the provider reports it, ``usage``.
    """

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    response_model: str | None = None
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (model, deployment) the route could use, in the order it would be tried."""

    model: str
    deployment: str
    provider: str
    provider_model: str
    #: Expected cost of this call on this deployment (input tokens counted, at the cache-write rate when
    #: the request marks ``cache_control`` and that rate is higher; output at the request's max_tokens or
    #: the route's ``est_output_tokens``). Strategies order by it.
    est_cost_usd: float
    #: Strategy-specific score (e.g. predicted quality); ``None`` where the strategy has none.
    score: float | None = None
    #: The ``max_tokens`` sent to this deployment: the request's, else the route's
    #: ``max_output_tokens``, else the deployment's, capped by the deployment's limit.
    max_output_tokens: int = 0
    #: Worst-case cost of one attempt (input with the model's ``input_margin``, output at
    #: ``max_output_tokens``): what budgets reserve before sending.
    max_cost_usd: float = 0.0


@dataclass(slots=True)
class Attempt:
    """One attempt to call one deployment: timings, outcome, and the error if it failed."""

    model: str
    deployment: str
    provider: str
    provider_model: str
    #: 1-based attempt number on this deployment (retries increase it).
    number: int
    #: Seconds from the start of the routed call to the start of this attempt.
    started_s: float
    #: Seconds from the start of the attempt (``started_s``) to its end, admission wait included.
    duration_s: float = 0.0
    #: Seconds this attempt waited for a free connection slot (the router's admission limit).
    queued_s: float = 0.0
    #: Seconds from this attempt's start to its first streamed token (streams only).
    ttft_s: float | None = None
    outcome: Literal["ok", "error", "cancelled", "pending"] = "pending"
    error_type: str | None = None
    error: str | None = None
    status: int | None = None
    #: Seconds waited before the next attempt (backoff or the provider's Retry-After).
    wait_s: float = 0.0
    usage: Usage | None = None
    #: What this attempt may have been billed: from its usage; 0 when the provider answered with an
    #: error or the request never left; the reserved worst case when it was sent but ended without
    #: usage (cancelled, timed out, cut off): then ``cost_estimated`` is true.
    cost_usd: float = 0.0
    cost_estimated: bool = False
    #: The ``call_id`` of the routed call this attempt belongs to (see :attr:`RouteTrace.call_id`).
    call_id: int = 0
    #: Hedged routes: why this attempt was started as a hedge (raced against a slow attempt), or,
    #: on a slow attempt that was not hedged, why not; ``None`` otherwise.
    hedge: str | None = None
    #: Wall-clock time the attempt started, in seconds since the epoch (``time.time()``), for logs
    #: and framework traces; the other timings are on the router's clock, relative to the call.
    started_at: float = field(default_factory=time.time)
    #: Whether this attempt was streamed (``ttft_s`` is then measured).
    stream: bool = False
    #: The provider's rate-limit headers on its response (success or error), when it sent any.
    rate_limit: RateLimitInfo | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What every model of a route (or one model) can do: ``router.capabilities(route=...)``.

    Built from each model's ``capabilities`` in the config; frameworks build their model profiles
    from it (which structured-output mode, whether to offer tools, images, streaming).
    """

    tools: bool = True
    #: Output constrained to a JSON schema (``response_format`` ``json_schema``) is enforced.
    json_schema: bool = True
    vision: bool = True
    streaming: bool = True


@dataclass(slots=True)
class RouteTrace:
    """Why and how a call was routed: the candidates in order, every attempt, and totals."""

    route: str
    strategy: str
    candidates: list[Candidate]
    attempts: list[Attempt] = field(default_factory=list)
    #: Estimated input tokens of the request (tiktoken), used for cost estimates.
    est_input_tokens: int = 0
    #: Strategy-specific decision record (e.g. the predictor's output); ``None`` for ordered routes.
    prediction: Any = None
    #: A one-line human-readable reason for the order.
    reason: str = ""
    #: Seconds the call took (while it runs, as ``Hooks.call_started`` sees it: the time so far).
    duration_s: float = 0.0
    #: How deployments of each model were ordered from their live health, one
    #: :class:`~llmroute.policy.selection.SelectionDecision` per model; ``None`` when the route
    #: has no ``selection`` block and no circuit was open.
    selection: Any = None
    #: Cascade routes: one record per tier (answer, checks, cost, accepted / escalated / skipped, why).
    cascade: list[Any] | None = None
    #: A random 63-bit id given to the call when it starts (its attempts carry it too): ties
    #: attempts, hooks, spans and log records to one call. 0 until the call starts.
    call_id: int = 0
    #: For one tier of a cascade: the ``call_id`` of the cascade call it belongs to (0: none).
    parent_call_id: int = 0

    @property
    def chosen(self) -> Attempt | None:
        """The attempt that answered, if any."""
        for attempt in reversed(self.attempts):
            if attempt.outcome == "ok":
                return attempt
        return None

    @property
    def cost_usd(self) -> float:
        """What every attempt of this call cost, failed ones included."""
        return sum(a.cost_usd for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, for logs and dashboards."""
        from dataclasses import asdict

        data = asdict(self)
        pred = self.prediction
        if hasattr(pred, "as_dict"):
            data["prediction"] = pred.as_dict()
        elif hasattr(pred, "__dataclass_fields__"):
            data["prediction"] = asdict(pred)
        if self.selection is not None:
            data["selection"] = [d.as_dict() if hasattr(d, "as_dict") else d for d in self.selection]
        if self.cascade is not None:
            data["cascade"] = [t.as_dict() if hasattr(t, "as_dict") else t for t in self.cascade]
        return data


@dataclass(frozen=True, slots=True)
class Reply:
    """A routed call's answer: the text or tool calls, usage, cost, and the route it took."""

    text: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason | None
    usage: Usage
    #: Cost of the answering attempt, from its usage and the deployment's prices.
    cost_usd: float
    #: The logical model (config name) that answered.
    model: str
    deployment: str
    provider: str
    #: The model id the provider reported (or the deployment's model id).
    provider_model: str
    route: RouteTrace
    response_id: str | None = None
    #: Token log-probabilities of the answer, when asked for and returned.
    logprobs: TokenLogprobs | None = None

    @property
    def total_cost_usd(self) -> float:
        """Cost of every attempt of the call, including failed or cancelled ones."""
        return self.route.cost_usd

    def to_message(self) -> dict[str, Any]:
        """This reply as an assistant message, to append to the conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            msg["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        return msg
