"""Provider adapters: each turns a :class:`~llmroute.types.ChatRequest` into its wire format
and its responses (JSON or SSE) back into llmroute types. Wire formats stay inside here."""

from __future__ import annotations

from .base import Adapter, HTTPRequest, StreamParser, Target

__all__ = ["Adapter", "HTTPRequest", "StreamParser", "Target", "get_adapter"]


def get_adapter(api: str) -> Adapter:
    """The adapter for wire format *api* (``openai``, ``anthropic`` or ``gemini``)."""
    if api == "openai":
        from .openai import OpenAIAdapter

        return OpenAIAdapter()
    if api == "anthropic":
        from .anthropic import AnthropicAdapter

        return AnthropicAdapter()
    if api == "gemini":
        from .gemini import GeminiAdapter

        return GeminiAdapter()
    raise ValueError(f"unknown provider api {api!r}")
