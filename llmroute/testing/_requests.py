"""Reading a request body in each provider's format into a provider-neutral :class:`Prompt`.

Pure functions: what the fake model needs to know to answer (last user text, whether the last
message is a tool result, tools offered, ``max_tokens``, JSON mode) and the token count used for
usage and the context-window check: whitespace words of all message text, plus 3 per message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._wire import API

__all__ = ["Prompt", "count_words", "summarize"]

_SKIP_KEYS = frozenset(
    {
        "role",
        "type",
        "id",
        "tool_call_id",
        "tool_use_id",
        "image_url",
        "inline_data",
        "inlineData",
        "mime_type",
        "mimeType",
        "source",
        "cache_control",
        "file_data",
        "fileData",
        "thought_signature",
        "thoughtSignature",
    }
)


@dataclass(slots=True)
class Prompt:
    """What a request asks for, whatever its wire format."""

    last_user_text: str = ""
    last_is_tool_result: bool = False
    tool_result_text: str = ""
    tool_names: list[str] = field(default_factory=list)
    #: Tool named by ``tool_choice`` (or Gemini's ``allowedFunctionNames``), if any.
    forced_tool: str | None = None
    #: ``tool_choice`` says not to call tools.
    tools_disabled: bool = False
    max_tokens: int | None = None
    json_mode: bool = False
    #: OpenAI ``stream_options.include_usage``.
    include_usage: bool = False
    input_tokens: int = 0


def count_words(obj: Any) -> int:
    """Whitespace words in every string of *obj* (nested dicts/lists), skipping metadata keys."""
    if isinstance(obj, str):
        return len(obj.split())
    if isinstance(obj, dict):
        return sum(count_words(v) for k, v in obj.items() if k not in _SKIP_KEYS)
    if isinstance(obj, list):
        return sum(count_words(v) for v in obj)
    return 0


def _text_of(content: Any) -> str:
    """The text of a message content (string, or list of text parts/blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif "content" in part:  # Anthropic tool_result block
                    out.append(_text_of(part["content"]))
                elif isinstance(part.get("functionResponse"), dict):
                    out.append(json.dumps(part["functionResponse"].get("response"), ensure_ascii=False))
        return " ".join(o for o in out if o)
    if content is None:
        return ""
    return json.dumps(content, ensure_ascii=False)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _openai(body: dict[str, Any], p: Prompt) -> None:
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    p.input_tokens = sum(count_words(m) + 3 for m in messages)
    if messages:
        last = messages[-1]
        if last.get("role") == "tool":
            p.last_is_tool_result = True
            p.tool_result_text = _text_of(last.get("content"))
    for m in reversed(messages):
        if m.get("role") == "user":
            p.last_user_text = _text_of(m.get("content"))
            break
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            if isinstance(fn.get("name"), str):
                p.tool_names.append(fn["name"])
    choice = body.get("tool_choice")
    if choice == "none":
        p.tools_disabled = True
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        p.forced_tool = choice["function"].get("name")
    p.max_tokens = _int(body.get("max_completion_tokens")) or _int(body.get("max_tokens"))
    fmt = body.get("response_format")
    p.json_mode = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
    opts = body.get("stream_options")
    p.include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))


def _anthropic(body: dict[str, Any], p: Prompt) -> None:
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    p.input_tokens = sum(count_words(m) + 3 for m in messages)
    if body.get("system"):
        p.input_tokens += count_words(body["system"]) + 3
    if messages:
        last = messages[-1]
        content = last.get("content")
        if last.get("role") == "user" and isinstance(content, list):
            results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            if results:
                p.last_is_tool_result = True
                p.tool_result_text = _text_of(results[-1].get("content"))
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                content = [b for b in content if isinstance(b, dict) and b.get("type") == "text"]
            text = _text_of(content)
            if text or not p.last_is_tool_result:
                p.last_user_text = text
                break
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            p.tool_names.append(tool["name"])
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") == "none":
            p.tools_disabled = True
        elif choice.get("type") == "tool":
            p.forced_tool = choice.get("name")
    p.max_tokens = _int(body.get("max_tokens"))


def _gemini(body: dict[str, Any], p: Prompt) -> None:
    contents = [c for c in body.get("contents") or () if isinstance(c, dict)]
    p.input_tokens = sum(count_words(c) + 3 for c in contents)
    system = body.get("systemInstruction") or body.get("system_instruction")
    if system:
        p.input_tokens += count_words(system) + 3
    if contents:
        parts = contents[-1].get("parts") or []
        responses = [x for x in parts if isinstance(x, dict) and ("functionResponse" in x or "function_response" in x)]
        if responses:
            p.last_is_tool_result = True
            r = responses[-1].get("functionResponse") or responses[-1].get("function_response") or {}
            p.tool_result_text = json.dumps(r.get("response"), ensure_ascii=False) if isinstance(r, dict) else ""
    for c in reversed(contents):
        if c.get("role", "user") == "user":
            text = _text_of([x for x in c.get("parts") or [] if isinstance(x, dict) and "text" in x])
            if text or not p.last_is_tool_result:
                p.last_user_text = text
                break
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or ():
                if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                    p.tool_names.append(decl["name"])
    tool_config = body.get("toolConfig") or body.get("tool_config") or {}
    fcc = (
        tool_config.get("functionCallingConfig") or tool_config.get("function_calling_config") or {}
        if isinstance(tool_config, dict)
        else {}
    )
    if isinstance(fcc, dict):
        if fcc.get("mode") == "NONE":
            p.tools_disabled = True
        names = fcc.get("allowedFunctionNames") or fcc.get("allowed_function_names")
        if isinstance(names, list) and names:
            p.forced_tool = names[0]
    gen = body.get("generationConfig") or body.get("generation_config") or {}
    if isinstance(gen, dict):
        p.max_tokens = _int(gen.get("maxOutputTokens")) or _int(gen.get("max_output_tokens"))
        p.json_mode = (gen.get("responseMimeType") or gen.get("response_mime_type")) == "application/json"


def summarize(api: API, body: dict[str, Any]) -> Prompt:
    """Read *body* (a request in *api*'s format) into a :class:`Prompt`."""
    p = Prompt()
    {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}[api](body, p)
    return p
