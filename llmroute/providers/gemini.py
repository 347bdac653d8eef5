"""Google Gemini API (``generativelanguage.googleapis.com/v1beta``):
``POST {base_url}/models/{model}:generateContent`` for JSON, and
``POST {base_url}/models/{model}:streamGenerateContent?alt=sse`` for SSE, where every ``data:``
event is a whole ``GenerateContentResponse`` holding only the new parts (there is no ``[DONE]``).

Translation from the OpenAI chat shape:

* ``system`` (or ``developer``) messages -> ``systemInstruction.parts``; ``assistant`` -> role
  ``model``; consecutive contents of the same role are merged;
* ``image_url`` parts -> ``inlineData`` (data URLs) or ``fileData`` (other URLs, MIME type guessed
  from the extension, ``image/jpeg`` by default);
* assistant ``tool_calls`` -> ``functionCall`` parts; ``tool`` messages -> ``functionResponse``
  parts in a ``user`` content, named after the assistant tool call they answer, with
  ``response: {"result": <content parsed as JSON when it is JSON, else the text>}``;
* tools -> ``functionDeclarations`` whose JSON Schema goes in ``parametersJsonSchema``;
  ``tool_choice`` -> ``functionCallingConfig.mode``;
* ``max_tokens``/``temperature``/``top_p``/``stop``/``response_format`` -> ``generationConfig``
  (JSON mode is ``responseMimeType: application/json`` plus ``responseJsonSchema`` for
  ``json_schema``).

Schemas go in the fields that take JSON Schema (``parametersJsonSchema``, ``responseJsonSchema``)
and not in ``parameters`` / ``responseSchema``, which take only Google's OpenAPI subset and answer
400 INVALID_ARGUMENT (``Unknown name "additionalProperties" at 'tools[0].function_declarations[0]
.parameters'``) for ``additionalProperties``, ``$schema``, ``const``, ``$ref``, a list-valued
``type`` and other JSON Schema keywords that OpenAI-style tools (strict mode above all) carry.

``extra_body`` is merged into the body; where both it and the adapter set an object field (e.g.
``generationConfig``), the two objects are merged one level deep, ``extra_body`` winning.

Gemini does not always give function calls ids: calls without one get ``call_<n>``, ``n``
counting the calls of the reply (or of the stream).

Thought signatures. Gemini 3 models put an opaque ``thoughtSignature`` on ``functionCall`` parts
(with parallel calls, on the first one only) and must get it back unchanged when the history is
sent again: a ``functionCall`` of the current turn without one is rejected with 400
INVALID_ARGUMENT. The adapter reads it into :attr:`ToolCall.thought_signature`
(:attr:`ToolCallDelta.thought_signature` when streaming), which ``to_openai()`` (and so
``Reply.to_message()``) writes as ``tool_calls[i]["extra_content"]["google"]["thought_signature"]``,
the field Google's OpenAI-compatible endpoint uses; building a request, that field becomes the
part's ``thoughtSignature`` again. Signatures are sent as received, whichever model made them:
Gemini ignores ones it cannot use (e.g. from another model family). When the target model needs
signatures (:func:`requires_thought_signatures`: Gemini 3 and later) and the first
``functionCall`` part of a model content in the current turn (the model contents after the last
``user`` content holding more than function responses) has none, e.g. because the call came from
OpenAI or Anthropic on an earlier turn of a routed conversation, it gets the documented dummy
value ``skip_thought_signature_validator`` (:data:`DUMMY_THOUGHT_SIGNATURE`), which skips the
validation. A real signature is never replaced. Signatures on text parts are not kept: Gemini
does not require them back.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Mapping
from typing import Any

from .._sse import SSEEvent
from ..errors import (
    AuthenticationError,
    ContentFilteredError,
    InvalidRequestError,
    ProviderError,
    ResponseError,
)
from ..types import ChatRequest, Chunk, Completion, FinishReason, TokenLogprobs, ToolCall, ToolCallDelta, Usage
from .base import (
    HTTPRequest,
    SSEStream,
    Target,
    error_from_status,
    function_tools,
    google_thought_signature,
    json_loads,
    logprob_summary,
)

__all__ = ["DUMMY_THOUGHT_SIGNATURE", "GeminiAdapter", "GeminiStream", "requires_thought_signatures"]

#: The value Google documents for a ``thoughtSignature`` that cannot be the real one (the call
#: came from another model, or the history was rebuilt): it makes Gemini skip the validation.
DUMMY_THOUGHT_SIGNATURE = "skip_thought_signature_validator"

_GEMINI_MAJOR = re.compile(r"(?:^|/)gemini-(\d+)(?=[.\-]|$)")

#: Finish reasons of a filtered reply (``MODEL_ARMOR``: Vertex AI's Model Armor screening).
_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MODEL_ARMOR",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

#: HTTP statuses of the google.rpc codes, for errors that arrive inside a stream.
_RPC_STATUS: Mapping[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def requires_thought_signatures(model: str) -> bool:
    """Whether *model* (a Gemini model id, ``models/`` prefix allowed) validates thought signatures on
    function calls: Gemini 3 and later (``gemini-3-pro-preview``, ``gemini-3.1-flash``, ``gemini-4...``)."""
    match = _GEMINI_MAJOR.search(model.lower())
    return match is not None and int(match.group(1)) >= 3


def _finish(value: Any, has_calls: bool) -> FinishReason | None:
    if value is None:
        return None
    if value == "STOP":
        return "tool_calls" if has_calls else "stop"
    if value == "MAX_TOKENS":
        return "length"
    if value in _FILTERED:
        return "content_filter"
    return "other"


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _usage(data: Any) -> Usage | None:
    """``usageMetadata`` -> Usage: input is the prompt (cached tokens included) plus the results of
    built-in tools fed back to the model (``toolUsePromptTokenCount``); output is the reply plus
    the thinking (``thoughtsTokenCount``), all billed at those rates."""
    if not isinstance(data, Mapping):
        return None
    prompt = _int(data.get("promptTokenCount")) + _int(data.get("toolUsePromptTokenCount"))
    output = _int(data.get("candidatesTokenCount")) + _int(data.get("thoughtsTokenCount"))
    return Usage(prompt, output, _int(data.get("cachedContentTokenCount")))


# --------------------------------------------------------------------------- request translation


def _image_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"{where}: an image_url part has no url")
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise InvalidRequestError(f"{where}: image data URLs must look like data:<media type>;base64,<data>")
        mime = head[len("data:") : -len(";base64")] or "image/jpeg"
        return {"inlineData": {"mimeType": mime, "data": data}}
    path = url.split("?", 1)[0].split("#", 1)[0]
    mime = mimetypes.guess_type(path)[0] or "image/jpeg"
    return {"fileData": {"fileUri": url, "mimeType": mime}}


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    """OpenAI message content (string, list of parts or ``None``) -> Gemini parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, (list, tuple)):
        raise InvalidRequestError(f"{where}: content must be a string or a list of parts")
    out: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            if part:
                out.append({"text": part})
        elif not isinstance(part, Mapping):
            raise InvalidRequestError(f"{where}: content parts must be objects")
        elif part.get("type") == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequestError(f"{where}: a text part has no text")
            if text:
                out.append({"text": text})
        elif part.get("type") == "image_url":
            out.append(_image_part(part, where))
        else:
            raise InvalidRequestError(f"{where}: unsupported content part type {part.get('type')!r}")
    return out


def _function_call(call: Any, where: str) -> tuple[str | None, dict[str, Any]]:
    fn = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise InvalidRequestError(f"{where}: a tool call has no function name")
    call_id = call.get("id") if isinstance(call.get("id"), str) else None
    raw = fn.get("arguments")
    if raw is None or raw == "":
        args: Any = {}
    elif isinstance(raw, Mapping):
        args = dict(raw)
    else:
        try:
            args = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"{where}: tool call {call_id!r} ({fn['name']}) has arguments that are not valid JSON: {exc}"
            ) from None
        if not isinstance(args, dict):
            raise InvalidRequestError(f"{where}: tool call {call_id!r} ({fn['name']}) arguments must be a JSON object")
    part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": args}}
    signature = google_thought_signature(call)
    if signature is not None:
        part["thoughtSignature"] = signature
    return call_id, part


def _result_value(content: Any) -> Any:
    if isinstance(content, (list, tuple)):
        content = "".join((p.get("text") or "") if isinstance(p, Mapping) else str(p) for p in content)
    if content is None:
        return ""
    if not isinstance(content, str):
        return content
    try:  # NaN / Infinity are not JSON: such a result is sent as text, not as a non-JSON number
        return json.loads(content, parse_constant=_not_json)
    except ValueError:
        return content


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _contents(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system parts, contents) from OpenAI-shaped messages."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, latest definition wins
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"{where}: a message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            parts = _parts(message.get("content"), where)
            if any("text" not in p for p in parts):
                raise InvalidRequestError(f"{where}: system messages may only hold text")
            system.extend(parts)
            continue
        if role == "user":
            wire_role, parts = "user", _parts(message.get("content"), where)
        elif role == "assistant":
            wire_role, parts = "model", _parts(message.get("content"), where)
            for call in message.get("tool_calls") or ():
                call_id, part = _function_call(call, where)
                if call_id:
                    names[call_id] = part["functionCall"]["name"]
                parts.append(part)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            name = names.get(call_id) if isinstance(call_id, str) else None
            name = name or message.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequestError(
                    f"{where}: tool result {call_id!r} does not answer any earlier assistant tool call"
                )
            response = {"name": name, "response": {"result": _result_value(message.get("content"))}}
            wire_role, parts = "user", [{"functionResponse": response}]
        else:
            raise InvalidRequestError(f"{where}: unsupported role {role!r}")
        if not parts:
            continue
        if out and out[-1]["role"] == wire_role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": wire_role, "parts": parts})
    return system, out


def _sign_current_turn(contents: list[dict[str, Any]]) -> None:
    """Give the first ``functionCall`` part of every model content of the current turn the dummy
    signature when it has none (see the module docstring); real signatures are left alone."""
    start = 0
    for i, content in enumerate(contents):
        if content["role"] == "user" and any("functionResponse" not in p for p in content["parts"]):
            start = i + 1
    for content in contents[start:]:
        if content["role"] != "model":
            continue
        first = next((p for p in content["parts"] if "functionCall" in p), None)
        if first is not None and not first.get("thoughtSignature"):
            first["thoughtSignature"] = DUMMY_THOUGHT_SIGNATURE


def _declarations(tools: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for fn in function_tools(tools):
        item: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            item["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, Mapping) and params:
            item["parametersJsonSchema"] = dict(params)
        out.append(item)
    return out


def _tool_config(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    else:
        fn = choice.get("function") if isinstance(choice, Mapping) else None
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(f"unsupported tool_choice {choice!r}")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"functionCallingConfig": config}


def _merge(body: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value


def _model_path(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else "models/" + model


# --------------------------------------------------------------------------- responses


def _retry_delay(details: Any) -> str | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "37s"``), as text."""
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", str(detail.get("retryDelay", "")))
            if match:
                return match.group(1)
    return None


def _api_key_invalid(details: Any) -> bool:
    return any(
        isinstance(d, Mapping) and d.get("reason") in ("API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED")
        for d in (details if isinstance(details, list) else ())
    )


class _Reply:
    """The parts of one GenerateContentResponse that matter, validated."""

    __slots__ = ("blocked", "calls", "finish", "logprobs", "model", "rid", "text", "usage")

    def __init__(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise TypeError("response is not an object")
        self.usage = _usage(data.get("usageMetadata"))
        model, rid = data.get("modelVersion"), data.get("responseId")
        self.model: str | None = model if isinstance(model, str) else None
        self.rid: str | None = rid if isinstance(rid, str) else None
        feedback = data.get("promptFeedback")
        self.blocked: str | None = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
        self.text: list[str] = []
        #: ``(id, name, arguments JSON, thought signature)`` per function call.
        self.calls: list[tuple[str | None, str, str, str | None]] = []
        self.finish: str | None = None
        self.logprobs: TokenLogprobs | None = None
        candidates = data.get("candidates") or []
        if not candidates:
            return
        candidate = candidates[0]
        result = candidate.get("logprobsResult")
        chosen = result.get("chosenCandidates") if isinstance(result, Mapping) else None
        if isinstance(chosen, list):
            self.logprobs = logprob_summary([c.get("logProbability") for c in chosen if isinstance(c, Mapping)])
        self.finish = candidate.get("finishReason")
        if self.finish is not None and not isinstance(self.finish, str):
            raise TypeError("finishReason is not a string")
        content = candidate.get("content") or {}
        for part in content.get("parts") or ():
            if "text" in part:
                if not isinstance(part["text"], str):
                    raise TypeError("text part without a string")
                if not part.get("thought"):  # thought summaries are not the reply
                    self.text.append(part["text"])
            elif "functionCall" in part:
                call = part["functionCall"]
                call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
                sig = part.get("thoughtSignature")
                sig = sig if isinstance(sig, str) and sig else None
                self.calls.append((call_id, str(call["name"]), json.dumps(call.get("args") or {}), sig))


class GeminiAdapter:
    """The Gemini ``generateContent`` wire format."""

    api = "gemini"

    def build_request(self, request: ChatRequest, target: Target, *, stream: bool) -> HTTPRequest:
        """The ``generateContent`` (or ``streamGenerateContent?alt=sse``) request for *request*."""
        system, contents = _contents(request.messages)
        if requires_thought_signatures(target.model):
            _sign_current_turn(contents)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        if request.tools:
            body["tools"] = [{"functionDeclarations": _declarations(request.tools)}]
            if request.tool_choice is not None:
                body["toolConfig"] = _tool_config(request.tool_choice)
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.stop:
            config["stopSequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
        if request.response_format is not None:
            kind = request.response_format.get("type")
            if kind in ("json_object", "json_schema"):
                config["responseMimeType"] = "application/json"
                spec = request.response_format.get("json_schema")
                if kind == "json_schema" and isinstance(spec, Mapping) and spec.get("schema") is not None:
                    config["responseJsonSchema"] = spec["schema"]
            elif kind not in (None, "text"):
                raise InvalidRequestError(f"unsupported response_format type {kind!r}")
        if request.logprobs:
            config["responseLogprobs"] = True
        if config:
            body["generationConfig"] = config
        if request.extra_body:
            _merge(body, request.extra_body)
        headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
        if target.api_key is not None:
            headers["x-goog-api-key"] = target.api_key.get_secret_value()
        for k, v in target.headers.items():
            headers[k.lower()] = v.get_secret_value()
        method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        url = f"{target.base_url.rstrip('/')}/{_model_path(target.model)}{method}"
        return HTTPRequest("POST", url, headers, json.dumps(body).encode())

    def parse_response(self, body: bytes, target: Target) -> Completion:
        """Parse a ``GenerateContentResponse``."""
        data = json_loads(body, target)
        try:
            reply = _Reply(data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ResponseError(
                f"unexpected GenerateContentResponse shape: {exc!r}",
                body=body[:200].decode("utf-8", "replace"),
                **target.error_fields(),
            ) from None
        if reply.finish is None and not reply.text and not reply.calls:
            if reply.blocked:
                raise ContentFilteredError(f"the prompt was blocked ({reply.blocked})", **target.error_fields())
            raise ResponseError(
                "response has no candidate content", body=body[:200].decode("utf-8", "replace"), **target.error_fields()
            )
        calls = tuple(
            ToolCall(cid or f"call_{i}", name, args, sig) for i, (cid, name, args, sig) in enumerate(reply.calls)
        )
        text = "".join(reply.text) if reply.text else None
        finish = _finish(reply.finish, bool(calls))
        if finish == "content_filter" and not text and not calls:
            raise ContentFilteredError(f"the reply was filtered ({reply.finish})", **target.error_fields())
        return Completion(text, calls, finish, reply.usage or Usage(), reply.model, reply.rid, reply.logprobs)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> ProviderError:
        """Map ``{"error": {"code", "message", "status", "details"}}`` and the status to the hierarchy."""
        text = body[:2000].decode("utf-8", "replace")
        message, code, details = "", None, None
        try:
            data = json.loads(body)
            if isinstance(data, list) and data:  # streamGenerateContent without alt=sse wraps it in a list
                data = data[0]
            err = data.get("error")
            if isinstance(err, Mapping):
                message = str(err.get("message") or "")
                code = str(err.get("status") or "") or None
                details = err.get("details")
            elif isinstance(err, str):
                message = err
        except (ValueError, AttributeError, UnicodeDecodeError):
            message = text[:200]
        if _api_key_invalid(details):  # Gemini answers a bad key with 400 INVALID_ARGUMENT
            rid = headers.get("x-request-id") or headers.get("request-id")
            return AuthenticationError(
                message or "API key not valid", status=status, body=text, request_id=rid, **target.error_fields()
            )
        delay = _retry_delay(details)
        if delay is not None and headers.get("retry-after") is None and headers.get("retry-after-ms") is None:
            headers = {**{k.lower(): v for k, v in headers.items()}, "retry-after": delay}
        return error_from_status(status, message, target, headers=headers, body=text, code=code)

    def stream_parser(self, target: Target) -> GeminiStream:
        """A decoder for ``streamGenerateContent?alt=sse`` events."""
        return GeminiStream(target)


class GeminiStream(SSEStream):
    """Incremental decoder of one streamed Gemini response (see :class:`~.base.StreamParser`)."""

    __slots__ = ("_calls", "_emitted", "_finish", "_model", "_rid", "_usage")

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._calls = 0
        self._emitted = False
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._model: str | None = None
        self._rid: str | None = None

    def _end(self) -> list[Chunk]:
        if self._finish is None:
            raise ResponseError("stream ended before a finishReason", **self._target.error_fields())
        return []

    def _event(self, event: SSEEvent) -> list[Chunk]:
        chunk = self._response(event.data)
        return [chunk] if chunk is not None else []

    def _response(self, data: str) -> Chunk | None:
        if not data.strip():
            return None
        obj = json_loads(data, self._target)
        if isinstance(obj, Mapping) and isinstance(obj.get("error"), Mapping):
            err = obj["error"]
            code = str(err.get("status") or "") or None
            status = err.get("code") if isinstance(err.get("code"), int) else _RPC_STATUS.get(code or "", 500)
            raise error_from_status(
                status, str(err.get("message") or "stream error"), self._target, body=data[:500], code=code
            )
        try:
            reply = _Reply(obj)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ResponseError(
                f"unexpected GenerateContentResponse shape: {exc!r}", body=data[:200], **self._target.error_fields()
            ) from None
        self._model = reply.model or self._model
        self._rid = reply.rid or self._rid
        if reply.usage is not None:
            self._usage = reply.usage
        if reply.blocked and reply.finish is None and not reply.text and not reply.calls:
            raise ContentFilteredError(f"the prompt was blocked ({reply.blocked})", **self._target.error_fields())
        text = "".join(reply.text)
        calls: list[ToolCallDelta] = []
        for cid, name, args, sig in reply.calls:
            calls.append(ToolCallDelta(self._calls, cid or f"call_{self._calls}", name, args, sig))
            self._calls += 1
        if text or calls:
            self._emitted = True
        finish: FinishReason | None = None
        if reply.finish is not None:
            finish = _finish(reply.finish, self._calls > 0)
            if finish == "content_filter" and not self._emitted:
                raise ContentFilteredError(f"the reply was filtered ({reply.finish})", **self._target.error_fields())
            self._finish = finish
        elif self._finish is not None and reply.usage is not None:
            finish = self._finish  # usage after the finishing chunk: repeat it so the last chunk has both
        if not text and not calls and finish is None:
            return None
        usage = self._usage if finish is not None else None
        return Chunk(text, tuple(calls), finish, usage, self._model, self._rid)
