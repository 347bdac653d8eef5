"""llmroute: a client-side LLM router.

One async interface over OpenAI-compatible, Anthropic and Gemini providers, with predictive
model choice, retries, fallback, deadlines, costs and a trace of every decision::

    import llmroute

    router = llmroute.Router.from_dict(config)
    reply = await router.complete(messages=[{"role": "user", "content": "Hello"}])
    print(reply.text, reply.cost_usd, reply.route.attempts)

Public names load lazily, so ``import llmroute`` is cheap and never loads onnxruntime or a
tokenizer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Router": "router",
    "ReplyStream": "execute",
    "Config": "config",
    "load_config": "config",
    "Hooks": "hooks",
    "MemoryBudget": "policy.budget",
    "Budget": "policy.budget",
    "Reply": "types",
    "Chunk": "types",
    "Usage": "types",
    "ToolCall": "types",
    "ToolCallDelta": "types",
    "RouteTrace": "types",
    "Attempt": "types",
    "Candidate": "types",
    "Capabilities": "types",
    "Message": "types",
    "Price": "costs",
    "LLMRouteError": "errors",
    "ConfigError": "errors",
    "UnknownRouteError": "errors",
    "InvalidRequestError": "errors",
    "ProviderError": "errors",
    "RateLimitError": "errors",
    "ProviderTimeoutError": "errors",
    "ProviderConnectionError": "errors",
    "ServerError": "errors",
    "ResponseError": "errors",
    "BadRequestError": "errors",
    "ContextWindowExceededError": "errors",
    "AuthenticationError": "errors",
    "ContentFilteredError": "errors",
    "AllAttemptsFailedError": "errors",
    "DeadlineExceededError": "errors",
    "BudgetExceededError": "errors",
    "PredictorUnavailableError": "predictor",
    "http_status": "errors",
}

__all__ = [
    "AllAttemptsFailedError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "Budget",
    "BudgetExceededError",
    "Candidate",
    "Capabilities",
    "Chunk",
    "Config",
    "ConfigError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "DeadlineExceededError",
    "Hooks",
    "InvalidRequestError",
    "LLMRouteError",
    "MemoryBudget",
    "Message",
    "PredictorUnavailableError",
    "Price",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "Reply",
    "ReplyStream",
    "ResponseError",
    "RouteTrace",
    "Router",
    "ServerError",
    "ToolCall",
    "ToolCallDelta",
    "UnknownRouteError",
    "Usage",
    "__version__",
    "http_status",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmroute' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .config import Config, load_config
    from .costs import Price
    from .errors import (
        AllAttemptsFailedError,
        AuthenticationError,
        BadRequestError,
        BudgetExceededError,
        ConfigError,
        ContentFilteredError,
        ContextWindowExceededError,
        DeadlineExceededError,
        InvalidRequestError,
        LLMRouteError,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeoutError,
        RateLimitError,
        ResponseError,
        ServerError,
        UnknownRouteError,
        http_status,
    )
    from .execute import ReplyStream
    from .hooks import Hooks
    from .policy.budget import Budget, MemoryBudget
    from .predictor import PredictorUnavailableError
    from .router import Router
    from .types import (
        Attempt,
        Candidate,
        Capabilities,
        Chunk,
        Message,
        Reply,
        RouteTrace,
        ToolCall,
        ToolCallDelta,
        Usage,
    )
