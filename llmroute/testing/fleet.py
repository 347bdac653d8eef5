"""The fake provider fleet: :class:`Fleet` (the server) and :class:`FakeProvider` (one fake API).

A :class:`Fleet` serves any number of :class:`FakeProvider` objects over real HTTP on loopback,
each under its own path prefix and speaking one provider's wire format. Providers are plain
objects whose attributes may be changed while the fleet runs; faults are queued with
:meth:`FakeProvider.enqueue` and each is consumed by exactly one request, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from . import _wire
from ._requests import Prompt, summarize
from ._server import Request, Responder, ServerThread
from ._wire import API, ErrorKind, Finish, Turn
from .faults import FakeReply, Fault, FaultKind, RecordedRequest, ReplyFn

__all__ = [
    "API",
    "MIX_FAULTS",
    "FakeProvider",
    "FakeReply",
    "Fault",
    "FaultKind",
    "Fleet",
    "RecordedRequest",
    "ReplyFn",
]

_DEFAULT_CONTEXT = {"openai": 128_000, "anthropic": 200_000, "gemini": 1_048_576}
_DEFAULT_MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
_FILLER = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "a",
    "fake",
    "model",
    "keeps",
    "talking",
    "politely",
]
_TOKEN_RE = re.compile(r"\s*\S+")

#: The faults *fault_mix* can draw, by name: what a busy, flaky provider does to a share of requests.
MIX_FAULTS: Mapping[str, Fault] = {
    "rate_limit": Fault.rate_limit(retry_after=0.05),
    "rate_limit_no_header": Fault.rate_limit(retry_after=None),
    "server_error": Fault.server_error(503),
    "overloaded": Fault.overloaded(),
    "stall": Fault.stall(30.0),
    "reset": Fault.reset(),
    "drop_stream": Fault.drop_stream(after_tokens=3),
    "stream_error": Fault.stream_error(after_tokens=3),
    "malformed": Fault.malformed(),
    "trickle": Fault.slow(tokens_per_s=4.0),
}


class FakeProvider:
    """One fake LLM provider speaking *api*'s wire format; every knob may be changed at run time.

    *ttft_s* delays the first token (and a non-streamed body); *tokens_per_s* paces tokens (also
    added to non-streamed replies; ``None``: no delay); *reply* is a string, a :class:`FakeReply`
    or a callable ``(request_json) -> str | FakeReply`` (default: ``"Echo: <last user text>"``
    plus filler up to *output_tokens* words, a tool call when tools are offered, a JSON object in
    JSON mode); *context_window* rejects larger prompts with the provider's real error;
    *cached_input_tokens* are reported as prompt-cache hits and *cache_write_input_tokens* as
    prompt-cache writes (Anthropic only, the one API that reports them); *models* restricts the model ids
    (404 otherwise); *fault_mix* strikes requests at random with named faults (``{"rate_limit": 0.05,
    "reset": 0.01, ...}``: the share of requests for each name in :data:`MIX_FAULTS`, RNG seeded
    with *seed*); *error_rate* answers that fraction of requests with a 500 (RNG seeded with
    *seed*); *api_key* enforces authentication; *faults* are queued as by :meth:`enqueue`.
    *thought_signatures* (Gemini only) makes the model act like Gemini 3: replies carry a
    ``thoughtSignature``, and a request whose current-turn function calls lack one gets Gemini 3's
    400 ``INVALID_ARGUMENT``; ``None`` (the default) does so for model ids that look like Gemini 3
    or later (``gemini-3-pro-preview``, ``gemini-3.1-flash``, ...).
    *thinking* makes it a reasoning model that thinks this text before each reply, billed as output
    tokens: Anthropic shows it as a ``thinking`` block (``thinking_delta`` and ``signature_delta``
    events) when the request turns extended thinking on, or as a ``redacted_thinking`` block with
    *redacted_thinking*; Gemini counts it in ``thoughtsTokenCount`` and sends ``thought: true``
    parts when the request sets ``includeThoughts``; OpenAI counts it in ``reasoning_tokens``.
    *citations* (Anthropic) gives the text block a ``char_location`` citation (a ``citations_delta``
    event when streamed). *response_headers* are added
    to every response (e.g. ``{"x-ratelimit-remaining-requests": "0"}``); with
    *output_tokens_max*, default replies have a random length between *output_tokens* and it.
    """

    def __init__(
        self,
        name: str,
        api: API = "openai",
        *,
        api_key: str | None = None,
        ttft_s: float = 0.0,
        tokens_per_s: float | None = None,
        reply: str | FakeReply | ReplyFn | None = None,
        output_tokens: int = 12,
        context_window: int | None = None,
        cached_input_tokens: int = 0,
        cache_write_input_tokens: int = 0,
        models: Iterable[str] | None = None,
        error_rate: float = 0.0,
        fault_mix: Mapping[str, float] | None = None,
        seed: int = 0,
        faults: Iterable[Fault] = (),
        record_requests: bool = True,
        thought_signatures: bool | None = None,
        thinking: str | None = None,
        redacted_thinking: bool = False,
        citations: bool = False,
        response_headers: Mapping[str, str] | None = None,
        output_tokens_max: int | None = None,
    ) -> None:
        if not name or "/" in name or "?" in name:
            raise ValueError(f"invalid provider name {name!r}")
        if api not in ("openai", "anthropic", "gemini"):
            raise ValueError(f"unknown api {api!r}")
        self.name = name
        self.api: API = api
        self.api_key = api_key
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.reply = reply
        self.output_tokens = output_tokens
        #: When set, each default reply's length is drawn uniformly from
        #: ``[output_tokens, output_tokens_max]`` words (RNG seeded with *seed*).
        self.output_tokens_max = output_tokens_max
        self.context_window = context_window
        self.cached_input_tokens = cached_input_tokens
        self.cache_write_input_tokens = cache_write_input_tokens
        self.models: set[str] | None = set(models) if models is not None else None
        self.error_rate = error_rate
        for key, share in (fault_mix or {}).items():
            if key not in MIX_FAULTS or not 0.0 <= share <= 1.0:
                raise ValueError(f"fault_mix: unknown fault {key!r} or share {share!r} outside [0, 1]")
        if sum((fault_mix or {}).values()) > 1.0:
            raise ValueError("fault_mix: the shares add up to more than 1")
        #: Named faults that strike requests at random, and the share of requests for each.
        self.fault_mix: dict[str, float] = dict(fault_mix or {})
        self.seed = seed
        self.record_requests = record_requests
        self.thought_signatures = thought_signatures
        self.thinking = thinking
        self.redacted_thinking = redacted_thinking
        self.citations = citations
        #: Extra headers on every response (e.g. a provider's ``x-ratelimit-*`` headers).
        self.response_headers: dict[str, str] = dict(response_headers or {})
        self._rng = random.Random(seed)
        self._queue: deque[Fault] = deque(faults)
        self._ids = itertools.count(1)
        #: Requests received (including rejected and faulted ones).
        self.calls = 0
        #: Requests answered with a complete 200 reply.
        self.served = 0
        #: Requests being handled right now.
        self.in_flight = 0
        #: How many times each fault was applied, by :attr:`Fault.name` (``rate_limit``, ``stall``, ...).
        self.fault_counts: Counter[str] = Counter()
        #: Every request received, in order (when *record_requests*).
        self.requests: list[RecordedRequest] = []
        #: What this provider would bill, as a real one does: the input and output tokens of every
        #: reply it generated (a non-streamed reply in full once generated, even if the client left
        #: before reading it; a stream up to the last token written before the client left).
        self.billed_input_tokens = 0
        self.billed_output_tokens = 0

    def __repr__(self) -> str:
        return f"FakeProvider({self.name!r}, api={self.api!r})"

    @property
    def prefix(self) -> str:
        """The path prefix of this provider's base URL (``/<name>/v1`` or ``/<name>/v1beta``)."""
        return f"/{self.name}/v1beta" if self.api == "gemini" else f"/{self.name}/v1"

    @property
    def pending(self) -> list[Fault]:
        """The faults still queued, next first."""
        return list(self._queue)

    def enqueue(self, *faults: Fault) -> None:
        """Queue *faults*; each following request consumes the next one, in order."""
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"not a Fault: {fault!r}")
        self._queue.extend(faults)

    def reset(self) -> None:
        """Clear the fault queue, the counters and the recorded requests; re-seed the RNG."""
        self._queue.clear()
        self.calls = self.served = 0
        self.billed_input_tokens = self.billed_output_tokens = 0
        self.fault_counts.clear()
        self.requests.clear()
        self._rng = random.Random(self.seed)

    # -- request handling (runs on the fleet's thread) ----------------------------------------
    def _next_fault(self) -> Fault | None:
        try:
            return self._queue.popleft()
        except IndexError:
            pass
        if self.fault_mix:
            draw = self._rng.random()
            for key, share in self.fault_mix.items():
                if draw < share:
                    return MIX_FAULTS[key]
                draw -= share
        if self.error_rate and self._rng.random() < self.error_rate:
            return Fault("status", 500, "server_error")
        return None

    async def _handle(self, rest: str, req: Request, resp: Responder) -> None:
        api = self.api
        method = req.method
        if api == "openai":
            if rest == "v1/chat/completions" and method == "POST":
                return await self._chat(req, resp, None)
            if rest == "v1/models" and method == "GET":
                return await self._list_models(resp)
        elif api == "anthropic":
            if rest == "v1/messages" and method == "POST":
                return await self._chat(req, resp, None)
            if rest == "v1/models" and method == "GET":
                return await self._list_models(resp)
        elif rest.startswith("v1beta/models/") and method == "POST":
            model, _, action = rest[len("v1beta/models/") :].rpartition(":")
            if action in ("generateContent", "streamGenerateContent") and model:
                return await self._chat(req, resp, model, stream=action == "streamGenerateContent")
        elif rest == "v1beta/models" and method == "GET":
            return await self._list_models(resp)
        status, body = _wire.error_body(
            api, "not_found", message=f"Invalid URL ({method} {req.path})" if api == "openai" else None
        )
        await resp.send(status, self._json_headers(), body)

    def _json_headers(self) -> list[tuple[str, str]]:
        extra = list(self.response_headers.items())
        if self.api == "gemini":
            return [("content-type", "application/json; charset=UTF-8"), *extra]
        rid = f"req_{next(self._ids):024x}"
        rid_header = "x-request-id" if self.api == "openai" else "request-id"
        return [("content-type", "application/json"), (rid_header, rid), *extra]

    async def _list_models(self, resp: Responder) -> None:
        ids = sorted(self.models) if self.models else [_DEFAULT_MODEL[self.api]]
        if self.api == "openai":
            obj: Any = {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "llmroute"} for m in ids],
            }
        elif self.api == "anthropic":
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in ids]
            obj = {"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
        else:
            obj = {
                "models": [
                    {
                        "name": f"models/{m}",
                        "displayName": m,
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    }
                    for m in ids
                ]
            }
        await resp.send(200, self._json_headers(), json.dumps(obj).encode())

    async def _error(
        self,
        resp: Responder,
        kind: ErrorKind,
        *,
        status: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        retry_after_header: bool = True,
        headers: Iterable[tuple[str, str]] = (),
        tokens: int = 0,
        limit: int = 0,
        model: str = "",
    ) -> None:
        hdrs = self._json_headers()
        rid = hdrs[1][1] if len(hdrs) > 1 else ""
        status, body = _wire.error_body(
            self.api,
            kind,
            status=status,
            message=message,
            retry_after=retry_after,
            tokens=tokens,
            limit=limit,
            model=model,
            request_id=rid,
        )
        if retry_after is not None and retry_after_header:
            hdrs.append(("retry-after", f"{retry_after:g}"))
            if self.api == "openai":
                hdrs.append(("retry-after-ms", str(round(retry_after * 1000))))
        if self.api == "openai" and kind == "rate_limit":
            hdrs.extend(_wire.openai_rate_limit_headers(retry_after))
        if self.api == "anthropic" and kind == "overloaded":
            hdrs.append(("x-should-retry", "true"))
        hdrs.extend(headers)
        await resp.send(status, hdrs, body)

    def _signs(self, model: str) -> bool:
        """Whether this (Gemini) provider acts like Gemini 3 for *model*: see *thought_signatures*."""
        if self.api != "gemini":
            return False
        if self.thought_signatures is not None:
            return self.thought_signatures
        return _wire.looks_like_gemini_3(model)

    def _check(self, req: Request, body: Any, model: str) -> tuple[ErrorKind, int | None, str | None] | None:
        """Auth, required headers and fields, model, thought signatures: the first problem as
        ``(kind, status, message)``."""
        api, h = self.api, req.headers
        if self.api_key is not None:
            if api == "openai":
                auth = h.get("authorization", "")
                if not auth:
                    return (
                        "auth",
                        401,
                        "You didn't provide an API key. You need to provide your API key in an Authorization header "
                        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    )
                if auth != "Bearer " + self.api_key:
                    return "auth", 401, None
            elif api == "anthropic":
                key = h.get("x-api-key")
                if key is None:
                    return "auth", 401, "x-api-key header is required"
                if key != self.api_key:
                    return "auth", 401, None
            else:
                key = h.get("x-goog-api-key") or _query_param(req.query, "key")
                if key != self.api_key:
                    return "auth", 401, None
        if api == "anthropic" and "anthropic-version" not in h:
            return "bad_request", 400, "anthropic-version: header is required"
        if not isinstance(body, dict):
            msg = {
                "openai": "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                "not valid JSON.)",
                "anthropic": "There was an error parsing the body of your request: invalid JSON",
                "gemini": "Invalid JSON payload received.",
            }[api]
            return "bad_request", 400, msg
        if api == "openai":
            if not isinstance(body.get("messages"), list):
                return "bad_request", 400, "Missing required parameter: 'messages'."
            if not model:
                return "bad_request", 400, "you must provide a model parameter"
        elif api == "anthropic":
            if not isinstance(body.get("messages"), list):
                return "bad_request", 400, "messages: Field required"
            if not model:
                return "bad_request", 400, "model: Field required"
            if not isinstance(body.get("max_tokens"), int):
                return "bad_request", 400, "max_tokens: Field required"
        elif not isinstance(body.get("contents"), list) or not body["contents"]:
            return "bad_request", 400, "* GenerateContentRequest.contents: contents is not specified\n"
        if self.models is not None and model not in self.models:
            return "model_not_found", 404, None
        if api == "gemini" and (problems := _wire.schema_problems(body)):
            return "bad_request", 400, "\n".join(problems)
        if self._signs(model):
            unsigned = _wire.unsigned_function_call(body["contents"])
            if unsigned is not None:
                return "bad_request", 400, _wire.thought_signature_message(*unsigned)
        return None

    async def _chat(self, req: Request, resp: Responder, path_model: str | None, *, stream: bool = False) -> None:
        self.calls += 1
        self.in_flight += 1
        resp.on_final = self._request_done
        try:
            body: Any = None
            if req.body:
                try:
                    body = json.loads(req.body)
                except ValueError:
                    body = None
            if self.api == "gemini":
                model = path_model or ""
                sse = _query_param(req.query, "alt") == "sse"
            else:
                model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else ""
                stream = isinstance(body, dict) and body.get("stream") is True
                sse = True
            fault = self._next_fault()
            if fault is not None:
                self.fault_counts[fault.name] += 1
            if self.record_requests:
                self.requests.append(
                    RecordedRequest(
                        req.method, req.path, req.query, req.headers, body, stream, model, fault.name if fault else None
                    )
                )
            if fault is not None:
                if fault.kind == "stall":
                    if not await resp.idle(fault.seconds):
                        return
                    fault = None
                elif fault.kind == "reset":
                    resp.reset()
                    return
                elif fault.kind == "recorded":
                    await self._send_recorded(resp, fault, stream)
                    return
                elif fault.kind == "status" or (fault.kind == "stream_error" and not stream):
                    assert fault.error is not None
                    prompt = summarize(self.api, body) if isinstance(body, dict) else Prompt()
                    limit = self.context_window or _DEFAULT_CONTEXT[self.api]
                    await self._error(
                        resp,
                        fault.error,
                        status=fault.code,
                        message=fault.message,
                        retry_after=fault.retry_after,
                        retry_after_header=fault.retry_after_header,
                        headers=fault.headers,
                        tokens=max(prompt.input_tokens, limit + 1),
                        limit=limit,
                        model=model,
                    )
                    return
            problem = self._check(req, body, model)
            if problem is not None:
                kind, status, message = problem
                await self._error(resp, kind, status=status, message=message, model=model)
                return
            prompt = summarize(self.api, body)
            if self.context_window is not None and prompt.input_tokens > self.context_window:
                await self._error(
                    resp, "context_overflow", tokens=prompt.input_tokens, limit=self.context_window, model=model
                )
                return
            try:
                turn = self._turn(body, prompt, model, fault)
            except Exception as exc:  # a user reply callable failed: report it as a 500
                await self._error(resp, "server_error", message=f"reply callable failed: {exc!r}")
                return
            ttft, tps = self.ttft_s, self.tokens_per_s
            if fault is not None and fault.kind == "slow":
                ttft = fault.ttft_s if fault.ttft_s is not None else ttft
                tps = fault.tokens_per_s if fault.tokens_per_s is not None else tps
            if stream:
                await self._send_stream(resp, turn, prompt, fault, ttft, tps, sse)
            else:
                await self._send_plain(resp, turn, fault, ttft, tps)
        finally:
            resp.finalize()

    async def _send_recorded(self, resp: Responder, fault: Fault, stream: bool) -> None:
        status = fault.code or 200
        headers = self._stream_headers(True) if stream and status < 300 else self._json_headers()
        if status < 300:
            self.served += 1
        await resp.send(status, [*headers, *fault.headers], fault.body)

    def _request_done(self) -> None:
        self.in_flight -= 1

    def _turn(self, body: Any, prompt: Prompt, model: str, fault: Fault | None) -> Turn:
        n = next(self._ids)
        api = self.api
        tid = {"openai": f"chatcmpl-{n:029x}", "anthropic": f"msg_01{n:022x}", "gemini": f"llmroute{n:014x}"}[api]
        cached = max(0, min(self.cached_input_tokens, prompt.input_tokens))
        turn = Turn(
            tid,
            model,
            int(time.time()),
            input_tokens=prompt.input_tokens,
            cached_tokens=cached,
            cache_write_tokens=max(0, min(self.cache_write_input_tokens, prompt.input_tokens - cached)),
        )
        if self._signs(model):
            turn.thought_signature = _wire.thought_signature(model, tid)
        thinks, turn.show_thinking = _wire.thinking_mode(api, body)
        if self.thinking and thinks:
            turn.thinking = _tokens(self.thinking)
        turn.redacted_thinking, turn.citations = self.redacted_thinking, self.citations
        if fault is not None and fault.kind == "content_filter":
            turn.finish = "content_filter"
            return turn
        reply = self.reply
        if callable(reply):
            reply = reply(body)
        if isinstance(reply, str):
            reply = FakeReply(text=reply)
        if reply is None:
            reply = self._default_reply(prompt)
        if reply.text:
            turn.pieces = _tokens(reply.text)
        for i, (name, args) in enumerate(reply.tool_calls):
            cid = f"call_{n:016x}{i:08x}" if api == "openai" else f"toolu_01{n:014x}{i:08x}"
            turn.tool_calls.append((cid, name, json.dumps(args, ensure_ascii=False, separators=(",", ":"))))
        finish: Finish = "tool_calls" if turn.tool_calls else "stop"
        if prompt.max_tokens is not None and len(turn.pieces) > prompt.max_tokens:
            turn.pieces = turn.pieces[: max(0, prompt.max_tokens)]
            finish = "length"
        turn.finish = reply.finish or finish
        if _asks_logprobs(api, body):
            turn.logprobs = _logprobs(reply.logprobs, len(turn.pieces))
        return turn

    def _default_reply(self, p: Prompt) -> FakeReply:
        if p.last_is_tool_result:
            return FakeReply(text=f"Tool result received: {_snippet(p.tool_result_text)}")
        if p.tool_names and not p.tools_disabled:
            name = p.forced_tool if p.forced_tool in p.tool_names else p.tool_names[0]
            return FakeReply(tool_calls=[(name, {})])
        snippet = _snippet(p.last_user_text)
        if p.json_mode:
            return FakeReply(text=json.dumps({"reply": f"Echo: {snippet}", "ok": True}, ensure_ascii=False))
        words = ["Echo:", *snippet.split()]
        filler = itertools.cycle(_FILLER)
        n = self.output_tokens
        if self.output_tokens_max is not None and self.output_tokens_max > n:
            n = self._rng.randint(n, self.output_tokens_max)
        while len(words) < n:
            words.append(next(filler))
        return FakeReply(text=" ".join(words))

    async def _send_plain(
        self, resp: Responder, turn: Turn, fault: Fault | None, ttft: float, tps: float | None
    ) -> bool:
        delay = ttft + (turn.output_tokens / tps if tps else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        self.billed_input_tokens += turn.input_tokens  # generated: billed whether or not it is read
        self.billed_output_tokens += turn.output_tokens + turn.thinking_tokens
        kind = fault.kind if fault is not None else None
        if kind == "malformed":
            await resp.send(200, self._json_headers(), _wire.malformed_body(self.api))
            return False
        api = self.api
        body = (
            _wire.openai_body(turn)
            if api == "openai"
            else _wire.anthropic_body(turn)
            if api == "anthropic"
            else _wire.gemini_body(turn)
        )
        if kind == "drop_stream":
            resp.start(200, [*self._json_headers(), ("content-length", str(len(body)))])
            resp.write(body[: len(body) // 2])
            await resp.close()
            return False
        self.served += 1  # counted before the bytes leave, so a client sees settled counters
        await resp.send(200, self._json_headers(), body)
        return True

    def _events(self, turn: Turn, prompt: Prompt, sse: bool) -> list[tuple[bytes, int]]:
        if self.api == "openai":
            return list(_wire.openai_stream(turn, include_usage=prompt.include_usage))
        if self.api == "anthropic":
            return list(_wire.anthropic_stream(turn))
        return list(_wire.gemini_stream(turn, sse=sse))

    def _stream_headers(self, sse: bool) -> list[tuple[str, str]]:
        if self.api == "gemini":
            ctype = "text/event-stream" if sse else "application/json; charset=UTF-8"
            return [("content-type", ctype), ("cache-control", "no-cache"), *self.response_headers.items()]
        hdrs = self._json_headers()
        hdrs[0] = ("content-type", "text/event-stream; charset=utf-8")
        hdrs.append(("cache-control", "no-cache"))
        return hdrs

    async def _send_stream(
        self,
        resp: Responder,
        turn: Turn,
        prompt: Prompt,
        fault: Fault | None,
        ttft: float,
        tps: float | None,
        sse: bool,
    ) -> bool:
        events = self._events(turn, prompt, sse)
        # The "first token" point: ttft is waited there, and faults strike at a token boundary.
        first = next((i for i, (_, n) in enumerate(events) if n), min(1, len(events) - 1))
        kind = fault.kind if fault is not None else None
        cut = fault.after_tokens if fault is not None and kind in ("drop_stream", "stream_error", "malformed") else None
        resp.start(200, self._stream_headers(sse))
        self.billed_input_tokens += turn.input_tokens
        loop = asyncio.get_running_loop()
        emitted = 0
        t0 = 0.0
        for i, (data, ntok) in enumerate(events):
            if ntok or i == first:
                if cut is not None and emitted >= cut:
                    assert fault is not None
                    if kind == "drop_stream":
                        await resp.close()
                        return False
                    if kind == "malformed":
                        ev = _wire.malformed_event(self.api, sse=sse)
                    else:
                        assert fault.error is not None
                        ev = _wire.stream_error_event(
                            self.api, fault.error, status=fault.code, message=fault.message, sse=sse
                        )
                    if i == 0 and ev.startswith(b",\r\n"):
                        ev = b"[" + ev[3:]
                    resp.write(ev)
                    await resp.end()
                    return False
                if i == first:
                    if not turn.show_thinking:  # thoughts no event carries were generated before it
                        self.billed_output_tokens += turn.thinking_tokens
                    if ttft > 0:
                        if not await resp.flush():
                            return False
                        await asyncio.sleep(ttft)
                    t0 = loop.time()
                elif tps:
                    delay = t0 + emitted / tps - loop.time()
                    if delay > 0:
                        if not await resp.flush():
                            return False
                        await asyncio.sleep(delay)
                if resp.closed:
                    return False
                emitted += ntok
                self.billed_output_tokens += ntok
            resp.write(data)
        self.served += 1  # counted before the last bytes leave, so a client sees settled counters
        await resp.end()
        return True


def _asks_logprobs(api: API, body: Any) -> bool:
    """Whether the request asks for token log-probabilities (OpenAI ``logprobs``, Gemini ``responseLogprobs``)."""
    if not isinstance(body, dict):
        return False
    if api == "openai":
        return body.get("logprobs") is True
    if api == "gemini":
        config = body.get("generationConfig") or body.get("generation_config")
        return isinstance(config, dict) and (config.get("responseLogprobs") or config.get("response_logprobs")) is True
    return False


def _logprobs(spec: float | Any, n: int) -> list[float]:
    """*n* token log-probabilities from a :class:`FakeReply`'s ``logprobs`` (see there)."""
    if spec is None:
        return [-0.05] * n
    if isinstance(spec, (int, float)):
        return [float(spec)] * n
    values = [float(v) for v in spec] or [-0.05]
    return [values[i % len(values)] for i in range(n)]


def _tokens(text: str) -> list[str]:
    """Split *text* into word tokens whose concatenation is *text*."""
    pieces = _TOKEN_RE.findall(text)
    rest = len(text) - sum(map(len, pieces))
    if rest and pieces:
        pieces[-1] += text[-rest:]
    elif rest:
        pieces = [text]
    return pieces


def _snippet(text: str) -> str:
    return " ".join(text.split())[:40].strip()


def _query_param(query: str, name: str) -> str | None:
    if not query:
        return None
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None


class Fleet:
    """Serves :class:`FakeProvider` objects over HTTP on loopback, from a background thread.

    Use it as a context manager (``with fleet:`` or ``async with fleet:``), or call
    :meth:`start` and :meth:`stop`. Each provider is reachable at :meth:`base_url`.
    """

    def __init__(self, providers: Iterable[FakeProvider] = (), *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._providers: dict[str, FakeProvider] = {}
        for p in providers:
            self.add(p)
        self.host = host
        self._port = port
        self._server: ServerThread | None = None

    @classmethod
    def default(cls, *, host: str = "127.0.0.1", port: int = 0) -> Fleet:
        """A fleet of one zero-latency provider per api, named ``openai``, ``anthropic`` and ``gemini``."""
        return cls(
            [
                FakeProvider("openai", "openai"),
                FakeProvider("anthropic", "anthropic"),
                FakeProvider("gemini", "gemini"),
            ],
            host=host,
            port=port,
        )

    def add(self, provider: FakeProvider) -> FakeProvider:
        """Add *provider* (also while running); its name must be new."""
        if provider.name in self._providers:
            raise ValueError(f"duplicate provider name {provider.name!r}")
        self._providers[provider.name] = provider
        return provider

    def __getitem__(self, name: str) -> FakeProvider:
        return self._providers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __iter__(self) -> Iterator[FakeProvider]:
        return iter(list(self._providers.values()))

    def __len__(self) -> int:
        return len(self._providers)

    @property
    def providers(self) -> Mapping[str, FakeProvider]:
        """The providers by name."""
        return dict(self._providers)

    @property
    def running(self) -> bool:
        """Whether the server thread is up."""
        return self._server is not None

    @property
    def thread(self) -> threading.Thread | None:
        """The server thread while running."""
        return self._server.thread if self._server else None

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the fleet is not running")
        return self._server.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (after :meth:`start`)."""
        return f"http://{self.host}:{self.port}"

    def base_url(self, name: str) -> str:
        """The base URL to configure a client with: ``.../<name>/v1`` (``/v1beta`` for Gemini)."""
        return self.url + self._providers[name].prefix

    def base_urls(self) -> dict[str, str]:
        """:meth:`base_url` of every provider."""
        return {name: self.base_url(name) for name in self._providers}

    def reset(self) -> None:
        """:meth:`FakeProvider.reset` every provider."""
        for p in self._providers.values():
            p.reset()

    def start(self) -> Fleet:
        """Start the server thread and bind the port (blocks until it listens)."""
        if self._server is not None:
            raise RuntimeError("the fleet is already running")
        server = ServerThread(self._dispatch, self.host, self._port, name=f"llmroute-fleet-{id(self):x}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Close the listener and all connections (even stalled ones) and join the thread."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Fleet:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.stop)

    async def _dispatch(self, req: Request, resp: Responder) -> None:
        _, _, rest = req.path.partition("/")
        name, _, rest = rest.partition("/")
        provider = self._providers.get(name)
        if provider is not None:
            await provider._handle(rest, req, resp)
            return
        body = json.dumps(
            {"error": {"message": f"no fake provider at {req.path}", "type": "not_found", "param": None, "code": None}}
        ).encode()
        await resp.send(404, [("content-type", "application/json")], body)
