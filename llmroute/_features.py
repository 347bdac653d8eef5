"""Prompt features for the predictor: hashed token n-grams plus cheap structural signals.

Everything here is deterministic across runs and platforms (no Python ``hash``, only integer
arithmetic on tokenizer ids in wrapping ``uint64``) and needs no network. Long inputs are
bounded *before* tokenising: only a head and a tail character window are tokenised, so a 1 MB
prompt costs about as much as a 1,000-character one. Lengths are still measured on the whole
conversation (``len`` is O(1)).

The training script (``training/train_predictor.py``) calls :func:`extract` on every training
prompt, so the runtime and the trained weights always see the same features.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "ENCODING",
    "FEATURE_VERSION",
    "HEAD_CHARS",
    "N_BUCKETS",
    "STRUCT_NAMES",
    "TAIL_CHARS",
    "TOKEN_PAD",
    "Features",
    "extract",
    "extract_text",
    "hash_buckets",
]

#: Bump when anything below changes the feature values; the sidecar records it.
FEATURE_VERSION = 5
#: Tokenizer shipped with the package (``llmroute/_data/tokenizers``).
ENCODING = "o200k_base"
#: Characters tokenised from the start and the end of the conversation text.
HEAD_CHARS = 768
TAIL_CHARS = 256
#: Number of hash buckets for token uni- and bigrams; bucket ``N_BUCKETS`` is the "empty" row.
N_BUCKETS = 1 << 12
#: ``Features.tokens`` of a prompt without tokens: any id past the vocabulary (the model's token
#: table maps it to a row that weighs nothing).
TOKEN_PAD = 1 << 30

_MUL = np.uint64(0x9E3779B97F4A7C15)
_MUL2 = np.uint64(0x100000001B3)
_SHIFT = np.uint64(29)
_BIGRAM_SALT = np.uint64(0x5BD1E995)
_MASK = np.uint64(N_BUCKETS - 1)  # N_BUCKETS is a power of two

_CHOICE_RE = re.compile(r"\n\s?\(?[A-Ea-e][).:]\s")
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")

#: Names of the structural features, in the order of :attr:`Features.struct`.
STRUCT_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_tokens_est",
    "chars_per_token",
    "mean_log_token_id",
    "frac_rare_tokens",
    "type_token_ratio",
    "log_messages",
    "log_user_turns",
    "has_system",
    "log_system_chars",
    "log_last_user_chars",
    "has_tools",
    "log_nontext_parts",
    "log_code_marks",
    "log_numbers",
    "digit_token_frac",
    "log_math_marks",
    "non_ascii_frac",
    "cjk_frac",
    "log_negations",
    "log_questions",
    "log_newlines",
    "log_choices",
    "is_empty",
)


@dataclass(frozen=True, slots=True)
class Features:
    """Features of one prompt: hash-bucket ids (int64), structural values (float32) and the
    window's token ids (int64; ``[TOKEN_PAD]`` when there are none)."""

    buckets: np.ndarray
    struct: np.ndarray
    n_tokens: int
    tokens: np.ndarray


def _text_of(content: Any) -> tuple[list[str], int]:
    """Texts of a message ``content`` and the number of non-text parts."""
    if content is None:
        return [], 0
    if isinstance(content, str):
        return [content], 0
    if isinstance(content, (list, tuple)):
        texts: list[str] = []
        other = 0
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
                else:
                    other += 1
            else:
                other += 1
        return texts, other
    if isinstance(content, (bytes, bytearray)):
        return [], 1
    return [str(content)], 0


def _window(parts: Sequence[str], total: int) -> str:
    """Head + tail character windows of the concatenation of *parts* (joined by newlines)."""
    if total <= HEAD_CHARS + TAIL_CHARS:
        return "\n".join(parts)
    head: list[str] = []
    need = HEAD_CHARS
    for p in parts:
        if need <= 0:
            break
        head.append(p[:need])
        need -= len(p) + 1
    tail: list[str] = []
    need = TAIL_CHARS
    for p in reversed(parts):
        if need <= 0:
            break
        tail.append(p[-need:] if len(p) > need else p)
        need -= len(p) + 1
    return "\n".join(head)[:HEAD_CHARS] + "\n" + "\n".join(reversed(tail))[-TAIL_CHARS:]


def hash_buckets(ids: np.ndarray) -> np.ndarray:
    """Bucket ids (int64) of the token unigrams and bigrams of *ids* (wrapping uint64 hashing)."""
    if ids.size == 0:
        return np.array([N_BUCKETS], dtype=np.int64)
    u = ids.astype(np.uint64)
    h = np.concatenate((u, (u[:-1] * _MUL2) ^ (u[1:] + _BIGRAM_SALT))) if u.size > 1 else u
    h *= _MUL
    h >>= _SHIFT
    h &= _MASK
    return h.view(np.int64)


_DIGIT, _CODE, _MATH, _NEG, _QUESTION, _NEWLINE = 1, 2, 4, 8, 16, 32
#: (64 class values x 5 bits): which of code, maths, negation, question, newline each value has.
_BIT_COUNTS = np.array(
    [[(v & b) != 0 for b in (_CODE, _MATH, _NEG, _QUESTION, _NEWLINE)] for v in range(64)], dtype=np.int64
)
_CODE_WORDS = frozenset(
    {b"def", b"return", b"import", b"function", b"const", b"let", b"var", b"print", b"self", b"elif", b"lambda"}
)
_NEG_WORDS = frozenset({b"not", b"never", b"except", b"n't", b"none", b"neither", b"nor", b"cannot", b"false"})
_SPECIAL = re.compile(rb"[{};`=+^*/\\<>%$?\n0-9]")


def _token_class(b: bytes) -> int:
    """Class bits of one token's bytes (see :func:`_class_table`)."""
    s = b.strip()
    low = s.lower()
    c = 0
    if s.isdigit():
        c |= _DIGIT
    if b"{" in b or b"}" in b or b";" in b or b"```" in b or b"=>" in b or s in _CODE_WORDS:
        c |= _CODE
    if any(ch in b for ch in (b"+", b"=", b"^", b"*", b"/", b"\\", b"<", b">", b"%", b"$")):
        c |= _MATH
    if low in _NEG_WORDS:
        c |= _NEG
    if b"?" in b:
        c |= _QUESTION
    if b"\n" in b:
        c |= _NEWLINE
    return c


@lru_cache(maxsize=4)
def _class_table(enc: Any) -> np.ndarray:
    """Per-token-id class bits: digits, code, maths, negation, question mark, newline.

    Built once per encoding from the token bytes, so feature extraction counts these marks
    with one gather over the token ids instead of scanning the text.
    """
    table = np.zeros(int(enc.n_vocab) + 1, dtype=np.uint8)
    ranks = getattr(enc, "_mergeable_ranks", None)
    if isinstance(ranks, dict):
        items = ranks.items()
    else:  # pragma: no cover - other tiktoken versions
        items = []
        for i in range(int(enc.n_vocab)):
            try:
                items.append((enc.decode_single_token_bytes(i), i))
            except KeyError:
                continue
    words = _CODE_WORDS | _NEG_WORDS
    special = _SPECIAL.search
    for b, i in items:
        if special(b) or b.strip().lower() in words:
            table[i] = _token_class(b)
    return table


def _encoder() -> Any:
    from llmroute.tokens import get_encoding

    return get_encoding(ENCODING)


def extract(
    messages: Iterable[Mapping[str, Any]] | str,
    tools: Any = None,
    *,
    encoder: Any = None,
) -> Features:
    """Features of a chat request (OpenAI-style message dicts, or one plain prompt string).

    ``tools`` is the request's tool list (or any truthy flag); tool calls and tool messages in
    the conversation also count as "tools present".
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    parts: list[str] = []
    n_messages = n_user = nontext = 0
    system_chars = last_user_chars = 0
    has_system = False
    has_tools = bool(tools)
    for message in messages:
        if not isinstance(message, Mapping):
            nontext += 1
            continue
        n_messages += 1
        role = message.get("role")
        texts, other = _text_of(message.get("content"))
        nontext += other
        chars = sum(len(t) for t in texts)
        if role == "system" or role == "developer":
            has_system = True
            system_chars += chars
        elif role == "user":
            n_user += 1
            last_user_chars = chars
        elif role == "tool":
            has_tools = True
        calls = message.get("tool_calls")
        if calls:
            has_tools = True
        parts.extend(t for t in texts if t)
    return extract_text(
        parts,
        encoder=encoder,
        n_messages=n_messages,
        n_user=n_user,
        has_system=has_system,
        system_chars=system_chars,
        last_user_chars=last_user_chars,
        has_tools=has_tools,
        nontext=nontext,
    )


def extract_text(
    parts: Sequence[str],
    *,
    encoder: Any = None,
    n_messages: int = 1,
    n_user: int = 1,
    has_system: bool = False,
    system_chars: int = 0,
    last_user_chars: int | None = None,
    has_tools: bool = False,
    nontext: int = 0,
) -> Features:
    """Features of the text *parts* of a conversation plus the message-level counts given."""
    total = sum(len(p) for p in parts) + max(0, len(parts) - 1)
    if last_user_chars is None:
        last_user_chars = total
    w = _window(parts, total)
    enc = encoder if encoder is not None else _encoder()
    toks = enc.encode_ordinary(w) if w else []
    ids = np.asarray(toks, dtype=np.int64)
    n = int(ids.size)
    lw = len(w)
    log = math.log1p
    if n:
        mean_log_id = float(np.log1p(ids).sum()) / n / 12.0
        rare = np.count_nonzero(ids > 50_000) / n
        ttr = len(set(toks)) / n
        cpt = min(lw / n, 20.0) / 10.0
        scale = total / lw
        cls = _class_table(enc)[ids]
        isd = (cls & _DIGIT).view(bool)
        numbers = (int(isd[0]) + int(np.count_nonzero(isd[1:] > isd[:-1]))) * scale
        digit_frac = np.count_nonzero(isd) / n
        # tokens carrying each class bit: one histogram of the 64 class values, then a tiny matmul
        code, mathm, negations, questions, newlines = (np.bincount(cls, minlength=64) @ _BIT_COUNTS).tolist()
        code *= scale
        mathm *= scale
        negations *= scale
        questions *= scale
        newlines *= scale
        choices = len(_CHOICE_RE.findall("\n" + w))
        if w.isascii():
            non_ascii = cjk = 0.0
        else:
            non_ascii = (len(w.encode("utf-8", "surrogatepass")) - lw) / (2.0 * lw)
            cjk = len(_CJK_RE.findall(w)) / lw
    else:
        mean_log_id = rare = ttr = cpt = scale = 0.0
        numbers = digit_frac = code = mathm = negations = questions = newlines = non_ascii = cjk = 0.0
        choices = 0
    struct = np.array(
        [
            log(total) / 8.0,
            log(n * scale) / 8.0,
            cpt,
            mean_log_id,
            rare,
            ttr,
            log(n_messages),
            log(n_user),
            1.0 if has_system else 0.0,
            log(system_chars) / 8.0,
            log(last_user_chars) / 8.0,
            1.0 if has_tools else 0.0,
            log(nontext),
            log(code) / 4.0,
            log(numbers) / 4.0,
            digit_frac,
            log(mathm) / 4.0,
            min(non_ascii, 1.0),
            cjk,
            log(negations) / 2.0,
            log(questions) / 2.0,
            log(newlines) / 4.0,
            log(choices) / 2.0,
            0.0 if total else 1.0,
        ],
        dtype=np.float32,
    )
    tokens = ids if n else np.array([TOKEN_PAD], dtype=np.int64)
    return Features(buckets=hash_buckets(ids), struct=struct, n_tokens=n, tokens=tokens)
