"""The sans-I/O SSE decoder, fed whole and in every split."""

from __future__ import annotations

import random

import pytest

from llmroute._sse import SSEDecoder, SSEEvent

STREAM = (
    b": comment line\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: line one\ndata: line two\nid: 7\n\n"
    b"data:no-space\r\n\r\n"
    b"event: ping\ndata: {}\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}', "message_start"),
    SSEEvent("line one\nline two", "message", "7"),
    SSEEvent("no-space", "message", "7"),
    SSEEvent("{}", "ping", "7"),
    SSEEvent("[DONE]", "message", "7"),
]


def decode(data: bytes, sizes: list[int]) -> list[SSEEvent]:
    dec = SSEDecoder()
    out: list[SSEEvent] = []
    pos = 0
    for size in sizes:
        out += dec.feed(data[pos : pos + size])
        pos += size
    out += dec.feed(data[pos:])
    out += dec.flush()
    return out


def test_whole() -> None:
    assert decode(STREAM, []) == EXPECTED


def test_byte_by_byte() -> None:
    assert decode(STREAM, [1] * len(STREAM)) == EXPECTED


@pytest.mark.parametrize("seed", range(10))
def test_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    assert decode(STREAM, [rng.randint(1, 9) for _ in range(len(STREAM))]) == EXPECTED


def test_final_event_without_blank_line_is_flushed() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: tail") == []
    assert dec.flush() == [SSEEvent("tail")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode(b"data: \xff\xfe\n\n", []) == [SSEEvent("\ufffd\ufffd")]
