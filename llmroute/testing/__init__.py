"""A local fleet of fake LLM providers over real HTTP on loopback, for tests, demos and benchmarks.

Each :class:`FakeProvider` speaks one provider's real wire format (OpenAI Chat Completions,
Anthropic Messages, Gemini ``generateContent``; JSON and SSE streaming, real error bodies), and
a :class:`Fleet` serves them from a background thread with its own event loop, so the code under
test may use asyncio, trio or threads::

    from llmroute.testing import Fleet, FakeProvider, Fault

    with Fleet([FakeProvider("oai", api="openai", ttft_s=0.05)]) as fleet:
        fleet["oai"].enqueue(Fault.rate_limit(retry_after=0.2))
        client = MyClient(base_url=fleet.base_url("oai"))   # http://127.0.0.1:PORT/oai/v1
        ...
        assert fleet["oai"].calls == 2

Run ``python -m llmroute.testing`` for a standalone fleet (see ``docs/testing.md``).
"""

from ._wire import ErrorKind, Finish
from .faults import FakeReply, Fault, FaultKind, RecordedRequest, ReplyFn
from .fleet import API, FakeProvider, Fleet

__all__ = [
    "API",
    "ErrorKind",
    "FakeProvider",
    "FakeReply",
    "Fault",
    "FaultKind",
    "Finish",
    "Fleet",
    "RecordedRequest",
    "ReplyFn",
]
