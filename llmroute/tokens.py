"""Token counting with the tokenizer files shipped inside the package.

The BPE rank files for ``cl100k_base`` and ``o200k_base`` live in
``llmroute/_data/tokenizers/`` (MIT, see the licence file beside them). They are parsed
directly, so nothing is ever downloaded and tiktoken's cache directory is never touched.
Encodings load lazily, on first use, and are cached for the life of the process.

Counting is bounded, because it runs on the event loop (``Router.plan``): the first
:data:`EXACT_CHARS` characters of a request are counted exactly; beyond them the count is an
estimate from :data:`SAMPLE_WINDOWS` windows of :data:`SAMPLE_CHARS` characters spread evenly
over the rest, scaled by length and raised by :data:`SAMPLE_MARGIN`. Counting any request costs
at most about 50,000 characters of tiktoken work (a few milliseconds) however long it is. The
estimate leans high: for text whose kind does not change along its length (prose, code, base64,
CJK) it is 0-20% above the exact count; a stretch of a different kind shorter than 1/16 of the
text may be under- or over-represented by the sampling.
"""

from __future__ import annotations

import base64
import bisect
import math
import threading
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import tiktoken

__all__ = [
    "ENCODINGS",
    "EXACT_CHARS",
    "SAMPLE_CHARS",
    "SAMPLE_MARGIN",
    "SAMPLE_WINDOWS",
    "count_message_tokens",
    "count_tokens",
    "get_encoding",
]

#: Characters of a request (or text) counted exactly; the rest is estimated from samples.
EXACT_CHARS = 32_768
#: Number of sample windows the estimate of the rest is drawn from.
SAMPLE_WINDOWS = 16
#: Characters per sample window.
SAMPLE_CHARS = 1_024
#: Factor applied to the sampled estimate, so that it errs high (budgets reserve from it).
SAMPLE_MARGIN = 1.1

_DIR = Path(__file__).parent / "_data" / "tokenizers"

_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

#: The encodings shipped with llmroute: name -> (pattern, special tokens).
ENCODINGS: Mapping[str, tuple[str, Mapping[str, int]]] = {
    "o200k_base": (_O200K_PAT, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
    "cl100k_base": (
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}

_lock = threading.Lock()


def _load_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


@cache
def _get_encoding(name: str) -> tiktoken.Encoding:
    import tiktoken

    pat_str, special = ENCODINGS[name]
    return tiktoken.Encoding(
        name=name,
        pat_str=pat_str,
        mergeable_ranks=_load_ranks(_DIR / f"{name}.tiktoken"),
        special_tokens=dict(special),
    )


def get_encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    """Return the shipped tiktoken encoding *name*, loading it on first use.

    Raises ``ValueError`` for a name that is not shipped (see :data:`ENCODINGS`).
    """
    if name not in ENCODINGS:
        raise ValueError(f"unknown tokenizer {name!r}; shipped: {sorted(ENCODINGS)}")
    with _lock:
        return _get_encoding(name)


def _estimate(enc: tiktoken.Encoding, texts: list[str]) -> int:
    """Tokens of *texts* estimated from SAMPLE_WINDOWS evenly spaced windows (see the module docstring)."""
    ends: list[int] = []
    total = 0
    for text in texts:
        total += len(text)
        ends.append(total)
    sampled_chars = sampled_tokens = 0
    for k in range(SAMPLE_WINDOWS):
        pos = (2 * k + 1) * total // (2 * SAMPLE_WINDOWS)
        i = bisect.bisect_right(ends, pos)
        text = texts[i]
        start = max(0, min(pos - (ends[i] - len(text)) - SAMPLE_CHARS // 2, len(text) - SAMPLE_CHARS))
        window = text[start : start + SAMPLE_CHARS]
        sampled_chars += len(window)
        sampled_tokens += len(enc.encode_ordinary(window))
    return math.ceil(sampled_tokens / max(sampled_chars, 1) * total * SAMPLE_MARGIN)


def _count(enc: tiktoken.Encoding, texts: Iterable[str]) -> int:
    """Tokens of *texts*: exact for the first EXACT_CHARS characters, estimated beyond."""
    total = 0
    budget = EXACT_CHARS
    rest: list[str] = []
    for text in texts:
        if not text:
            continue
        if len(text) <= budget:
            budget -= len(text)
            total += len(enc.encode_ordinary(text))
        else:
            rest.append(text)
    if rest:
        total += _estimate(enc, rest)
    return total


def count_tokens(text: str, encoding: str = "o200k_base") -> int:
    """Count the tokens of *text*; special-token strings are counted as plain text.

    Exact up to :data:`EXACT_CHARS` characters, a bounded estimate beyond (see the module docstring).
    """
    if not text:
        return 0
    return _count(get_encoding(encoding), (text,))


# Per-message framing overhead used by OpenAI's chat format (role markers, separators).
_PER_MESSAGE = 3
_PER_REPLY = 3


def _texts(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    yield text
            elif isinstance(part, str):
                yield part


def count_message_tokens(
    messages: Iterable[Mapping[str, Any]],
    encoding: str = "o200k_base",
    *,
    tools: Iterable[Mapping[str, Any]] | None = None,
) -> int:
    """Estimate the input tokens of a chat request: message texts, tool calls and tool specs.

    This is an estimate for budgeting and context-window checks; the provider's reported
    ``usage`` is what costs are computed from. Its cost is bounded: the first
    :data:`EXACT_CHARS` characters are counted exactly, the rest estimated (module docstring).
    """
    import json

    enc = get_encoding(encoding)
    total = _PER_REPLY
    texts: list[str] = []
    for message in messages:
        total += _PER_MESSAGE
        texts.extend(_texts(message.get("content")))
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            texts.append(str(fn.get("name", "")) + str(fn.get("arguments", "")))
    if tools:
        texts.append(json.dumps(list(tools), separators=(",", ":")))
    return total + _count(enc, texts)
