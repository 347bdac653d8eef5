"""Token counting with the tokenizer files shipped inside the package.

The BPE rank files for ``cl100k_base`` and ``o200k_base`` live in
``llmroute/_data/tokenizers/`` (MIT, see the licence file beside them). They are parsed
directly, so nothing is ever downloaded and tiktoken's cache directory is never touched.
Encodings load lazily, on first use, and are cached for the life of the process.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import tiktoken

__all__ = ["ENCODINGS", "count_message_tokens", "count_tokens", "get_encoding"]

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


def count_tokens(text: str, encoding: str = "o200k_base") -> int:
    """Count the tokens of *text*; special-token strings are counted as plain text."""
    if not text:
        return 0
    return len(get_encoding(encoding).encode_ordinary(text))


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
    ``usage`` is what costs are computed from.
    """
    import json

    enc = get_encoding(encoding)
    total = _PER_REPLY
    for message in messages:
        total += _PER_MESSAGE
        for text in _texts(message.get("content")):
            total += len(enc.encode_ordinary(text))
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            total += len(enc.encode_ordinary(str(fn.get("name", "")) + str(fn.get("arguments", ""))))
    if tools:
        total += len(enc.encode_ordinary(json.dumps(list(tools), separators=(",", ":"))))
    return total
