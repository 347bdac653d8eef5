"""Drop-in adapters that put llmroute inside agent frameworks, one module per framework.

- :mod:`llmroute.integrations.openai`: an HTTP transport that answers the OpenAI Chat Completions
  API by routing, and ``openai_client(router)``; every framework that takes an ``AsyncOpenAI``
  client works through it unchanged.
- :mod:`llmroute.integrations.pydantic_ai`: ``LLMRouteModel`` (extra ``pydantic-ai``).
- :mod:`llmroute.integrations.langchain`: ``ChatLLMRoute`` (extra ``langchain``).
- :mod:`llmroute.integrations.openai_agents`: ``LLMRouteProvider`` (extra ``openai-agents``).
- :mod:`llmroute.integrations.litellm`: ``register(router)`` (extra ``litellm``).

Importing this package imports no framework; each module imports only its own. See
``docs/integrations.md``.
"""

from __future__ import annotations

__all__: list[str] = []
