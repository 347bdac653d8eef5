"""The three stream parsers on what they share: SSE line ends of every kind, and an error event
that arrives in the same read as content (the content is kept, the error comes next)."""

from __future__ import annotations

import pytest
from _streams import feed_stream, random_sizes

from llmroute.errors import ProviderError, ServerError
from llmroute.providers import get_adapter
from llmroute.providers.base import Target
from llmroute.testing import _wire
from llmroute.testing._wire import Turn

APIS = ["openai", "anthropic", "gemini"]
PIECES = ["Hello", " there", ",", " friend"]


def target(api: str) -> Target:
    return Target("p", api, "http://local", "m-1", "d")


def events(api: str) -> list[bytes]:
    """A whole stream of *api* for a four-token reply, one item per event."""
    turn = Turn("r-1", "m-1", 1700000000, pieces=list(PIECES), input_tokens=7)
    if api == "openai":
        return [e for e, _ in _wire.openai_stream(turn, include_usage=True)]
    if api == "anthropic":
        return [e for e, _ in _wire.anthropic_stream(turn)]
    return [e for e, _ in _wire.gemini_stream(turn, sse=True)]


def text_events(api: str, n: int) -> bytes:
    """The stream's events up to and including the *n*-th text token."""
    out, seen = [], 0
    for event in events(api):
        out.append(event)
        seen += any(piece.encode() in event for piece in PIECES[seen : seen + 1])
        if seen == n:
            break
    return b"".join(out)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_any_line_end_in_any_split(api: str, eol: bytes) -> None:
    data = b"".join(events(api)).replace(b"\r\n", b"\n").replace(b"\n", eol)
    adapter = get_adapter(api)
    whole = feed_stream(adapter, target(api), data)
    assert "".join(c.text for c in whole) == "".join(PIECES)
    assert whole[-1].finish_reason == "stop"
    for seed in range(5):
        assert feed_stream(adapter, target(api), data, random_sizes(len(data), seed)) == whole


@pytest.mark.parametrize("api", APIS)
def test_content_then_error_in_one_read_keeps_the_content(api: str) -> None:
    data = text_events(api, 2) + _wire.stream_error_event(api, "overloaded")  # type: ignore[arg-type]
    parser = get_adapter(api).stream_parser(target(api))
    chunks = parser.feed(data)
    assert "".join(c.text for c in chunks) == "Hello there"
    with pytest.raises(ServerError) as first:
        parser.close()
    # the error stays: every later call raises it again
    with pytest.raises(ServerError) as again:
        parser.feed(b"")
    assert again.value is first.value


@pytest.mark.parametrize("api", APIS)
def test_pending_error_is_raised_by_the_next_feed(api: str) -> None:
    data = text_events(api, 1) + _wire.stream_error_event(api, "rate_limit")  # type: ignore[arg-type]
    parser = get_adapter(api).stream_parser(target(api))
    assert "".join(c.text for c in parser.feed(data)) == "Hello"
    with pytest.raises(ProviderError) as info:
        parser.feed(b"data: {}\n\n")
    assert info.value.status == 429


@pytest.mark.parametrize("api", APIS)
def test_error_event_alone_raises_at_once(api: str) -> None:
    data = _wire.stream_error_event(api, "overloaded")  # type: ignore[arg-type]
    parser = get_adapter(api).stream_parser(target(api))
    parser.feed(text_events(api, 0))  # the stream's opening events, no text yet
    with pytest.raises(ServerError):
        parser.feed(data)


def test_gemini_crlf_separators_with_error_split_anywhere() -> None:
    # Gemini separates events with \r\n\r\n; the error may land in any read
    data = text_events("gemini", 3) + _wire.stream_error_event("gemini", "overloaded")
    assert b"\r\n\r\n" in data and b"\n\n" not in data
    for seed in range(20):
        parser = get_adapter("gemini").stream_parser(target("gemini"))
        texts: list[str] = []
        sizes, pos = random_sizes(len(data), seed), 0
        with pytest.raises(ServerError):
            for size in sizes:
                texts.extend(c.text for c in parser.feed(data[pos : pos + size]))
                pos += size
            parser.close()
        assert "".join(texts) == "Hello there,"
