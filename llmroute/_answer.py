"""Text analysis behind the cascade's answer checks: pure, standard library only, microseconds.

One :func:`analyse` pass over an answer (with the :class:`Question` it answers) finds what the
checks in ``llmroute.checks`` and the answer-quality model need:

* the **final answer** the text states (``#### 42``, ``\\boxed{42}``, ``"answer": "42"``, ``the
  answer is 42``, ``Answer: B``, else a closing ``so ... 42``), and its number when it is one;
* the **arithmetic** it shows: every chain ``a op b = c`` whose sides are plain arithmetic
  (``16 - 3 - 4 = 9``, ``$2 \\times 9 = $18``, ``<<48/2=24>>``) is evaluated by a small parser
  (never ``eval``) and compared, rounding tolerated to the decimals the text wrote;
* **refusals** (at the start), **hedges** (uncertainty, impossibility, approximation) and
  **self-corrections** ("wait", "re-evaluate", "mistake"), from one split of the words;
* **multiple choice**: the options the question offers and the option letters the answer picks;
* **code** blocks (fenced, or a bare program) and whether the Python ones parse (on demand);
* length, repetition, whether the text ends cleanly, and how many of the question's numbers it uses.

Speed: the text is scanned by a handful of C-speed passes (``lower``; the words split from the
UTF-8 bytes, because ``str.translate`` looks every character of a non-ASCII text up in a dict;
substring finds). Patterns that scan a whole text start with one literal character where they
can (one starting with a set of characters is tried at every such character, a few ns each);
the arithmetic runs only on the lines holding ``=`` (read from both ends, at most 900
characters), the commonest equation ``a op b = c`` is read by one pattern, and flat sides such as
``(3)/(4) * 48`` by one loop. A 1,000-token answer costs 50-100 µs here, 90-160 µs with every
check and the answer-quality model (``bench/cascade_checks.py``). Everything is bounded: the
answer scanned is capped (head and tail windows), so a 10 MB answer costs the same as a 24 kB
one, and no pattern can match the same text in two ways, so none backtracks badly.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "Analysis",
    "Question",
    "analyse",
    "eval_arithmetic",
    "features",
    "question",
]

#: Characters of an answer scanned (head + tail) and of a question.
_MAX_ANSWER = 24_000
_MAX_PROMPT = 8_000
#: Lines holding "=" whose arithmetic is checked (the first ones and the last ones).
_MAX_EQ_LINES = 20
#: Characters of those lines checked (head and tail), and equations judged at most.
_MAX_EQ_CHARS = 900
_MAX_EQUATIONS = 10
#: Characters at the end of an answer searched for its final answer.
_FINAL_TAIL = 1_500

# ---------------------------------------------------------------------------------------- maths

#: Replacements when the text holds a backslash (LaTeX), then the ones always looked for.
_LATEX = (
    ("\\\\", "\\"),
    ("\\times", "*"),
    ("\\cdot", "*"),
    ("\\div", "/"),
    ("\\left", ""),
    ("\\right", ""),
    ("\\$", ""),
    ("\\,", ""),
    ("\\!", ""),
    ("\\%", "%"),
    # then the display and inline maths delimiters \[ \] \( \), all made spaces (_LATEX_DELIMITERS)
)
_LATEX_DELIMITERS = re.compile(r"\\[][()]")
#: Every LaTeX operator above, found in one scan (sound while the text has no ``\\\\``).
_LATEX_FIND = re.compile(r"\\(?:\\|times|cdot|div|left|right|[$,!%\[\]()])")
_PLAIN = (
    ("×", "*"),
    ("·", "*"),
    ("÷", "/"),
    ("−", "-"),
    ("–", "-"),
    # the ASCII ones (_PLAIN[_PLAIN_ASCII:]) are all an ASCII text needs
    ("$", ""),
    ("{,}", ""),
    ("<<", " "),
    (">>", " "),
    ("**", " "),  # markdown bold (Python's power is left out: "2 3" is not arithmetic)
)
_PLAIN_ASCII = 5
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]{1,40})\}\{([^{}]{1,40})\}")
#: Thousands separators ("1,200" -> "1200"): a comma between a digit and exactly three digits.
_THOUSANDS = re.compile(r",(?<=\d,)(?=\d{3}(?!\d))")
#: "3 x 4" products ("3*4"); _X_FIND finds one scanning only for "x" (neither pattern can change
#: where the other matches: they touch no digit and no comma between digits).
_TIMES_X = re.compile(r"(\d)\s?[xX]\s?(?=\d)")
_X_FIND = re.compile(r"[xX](?:(?<=\d[xX])|(?<=\d\s[xX]))\s?\d")
#: A chain of at least two plain-arithmetic sides joined by "=": ``16 - 3 - 4 = 9``, ``a = b = c``.
#: (The lookbehind only saves time: a chain can start after a start character only where one
#: starting at that character failed, and every start in one run of such characters fails alike.)
_CHAIN = re.compile(r"[0-9.(\-](?<![0-9.(\-][0-9.(\-])[0-9.()+\-*/^% ]*(?:=[0-9.()+\-*/^% ]+)+")
#: The commonest chain, ``a op b = c`` with plain numbers, read in one match.
_SIMPLE_CHAIN = re.compile(r"(\d+(?:\.\d*)?) *([-+*/]) *(\d+(?:\.\d*)?) *= *(\d+(?:\.\d*)?) *")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DIGIT = re.compile(r"\d")


def _normalise_maths(text: str) -> str:
    """*text* with LaTeX operators, currency, thousands separators and ``3 x 4`` made plain."""
    if "\\" in text:
        # One scan finds the operators present. Without "\\\\" their occurrences are disjoint
        # and a replacement by a character cannot make a new one; a deletion can ("\\ri\\leftght"),
        # so after one the loop asks the text itself, as it always does when "\\\\" is there.
        found = set(_LATEX_FIND.findall(text))
        exact = "\\\\" in found
        for old, new in _LATEX:
            if (old in text) if exact else (old in found):
                text = text.replace(old, new)
                exact = exact or not new
        # one pass for the four delimiters: none can make or unmake another (only their first
        # character is a backslash)
        if _LATEX_DELIMITERS.search(text) if exact else not found.isdisjoint(("\\[", "\\]", "\\(", "\\)")):
            text = _LATEX_DELIMITERS.sub(" ", text)
    for old, new in _PLAIN if not text.isascii() else _PLAIN[_PLAIN_ASCII:]:
        if old in text:
            text = text.replace(old, new)
    if "frac" in text:
        parts = _FRAC.split(text)  # [before, numerator, denominator, between, ..., after]
        if len(parts) > 1:
            out = [parts[0]]
            for k in range(1, len(parts), 3):
                out += ("(", parts[k], ")/(", parts[k + 1], ")", parts[k + 2])
            text = "".join(out)
    if "," in text:
        text = _THOUSANDS.sub("", text)
    if ("x" in text or "X" in text) and _X_FIND.search(text):
        text = _TIMES_X.sub(_times, text)
    if "{" in text:
        text = text.replace("{", " ").replace("}", " ")
    return text


def _times(m: re.Match[str]) -> str:
    return m.group(1) + "*"


_TOKEN = re.compile(r"\d+(?:\.\d*)?|\.\d+|[-+*/^%()]|\S")


# Recursive descent over the tokens, one function per precedence level (a list and an index
# passed along: no parser object, no per-token method calls):
#   expr  := term (("+" | "-") term)*
#   term  := power (("*" | "/") power | power starting with "(")*     (2(3 + 4): implicit product)
#   power := unary ("^" unary)?                                        (bounded; no chains)
#   unary := ("-" | "+")* atom                                         (-2^2 is (-2)^2)
#   atom  := (number | "(" expr ")") "%"?


def _expr(t: list[str], i: int, n: int) -> tuple[float, int]:
    value, i = _term(t, i, n)
    while i < n and (t[i] == "+" or t[i] == "-"):
        add = t[i] == "+"
        b, i = _term(t, i + 1, n)
        value = value + b if add else value - b
    return value, i


def _term(t: list[str], i: int, n: int) -> tuple[float, int]:
    value, i = _power(t, i, n)
    while i < n:
        c = t[i]
        if c == "*":
            b, i = _power(t, i + 1, n)
            value *= b
        elif c == "/":
            b, i = _power(t, i + 1, n)
            if b == 0:
                raise ValueError("division by zero")
            value /= b
        elif c == "(":
            b, i = _power(t, i, n)
            value *= b
        else:
            break
    return value, i


def _power(t: list[str], i: int, n: int) -> tuple[float, int]:
    base, i = _unary(t, i, n)
    if i < n and t[i] == "^":
        exp, i = _unary(t, i + 1, n)
        if abs(exp) > 64 or abs(base) > 1e12:
            raise ValueError("power too large")
        return float(base) ** exp, i
    return base, i


def _unary(t: list[str], i: int, n: int) -> tuple[float, int]:
    negative = False
    while i < n:
        c = t[i]
        if c == "-":
            negative = not negative
        elif c != "+":
            break
        i += 1
    else:
        raise ValueError("number expected")
    i += 1
    if c == "(":
        if i + 1 < n and t[i + 1] == ")" and t[i][0].isdigit():  # "(3)", as \frac{3}{4} becomes
            value = float(t[i])
            i += 2
        else:
            value, i = _expr(t, i, n)
            if i >= n or t[i] != ")":
                raise ValueError("unbalanced")
            i += 1
    elif c[0].isdigit() or c[0] == ".":
        value = float(c)
    else:
        raise ValueError("number expected")
    if i < n and t[i] == "%":
        i += 1
        value /= 100.0
    return (-value if negative else value), i


def eval_arithmetic(expression: str) -> float | None:
    """The value of a plain arithmetic *expression* (``+ - * / ^ % ( )``), or ``None``.

    A tiny parser, not ``eval``: no names, no calls, powers bounded, at most 200 characters.
    """
    if len(expression) > 200:
        return None
    try:
        return float(expression) if expression.isdigit() else _evaluate(_TOKEN.findall(expression))
    except (ValueError, OverflowError, IndexError, ZeroDivisionError, RecursionError, TypeError):
        return None


def _evaluate(tokens: list[str]) -> float | None:
    n = len(tokens)
    value, i = _expr(tokens, 0, n)
    if i != n or isinstance(value, complex) or not math.isfinite(value):
        return None
    return float(value)


#: What rounding to d decimals may change a number by (``_agree``), for small d.
_ROUNDING = tuple(0.5 * 10.0 ** (-d) + 1e-9 for d in range(24))


def _agree(a: float, b: float, da: int | None, db: int | None) -> bool:
    """Whether two computed sides agree, tolerating rounding to the decimals written."""
    tol = 1e-6 * max(abs(a), abs(b), 1.0)
    for d in (da, db):
        if d is not None:
            tol = max(tol, 0.5 * 10.0 ** (-d) + 1e-9)
    return abs(a - b) <= tol


_OPS = frozenset("+-*/^")
#: Characters that glue a number to a variable or a function ("2x", "x+1", "\\sqrt 2", "f(3)").
_GLUE_BEFORE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_\\^{)]|!'")
_GLUE_AFTER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_\\^{([|!")


def _decimals(tok: str) -> int:
    """Decimals written in the number *tok* (``"2.50"``: 2)."""
    dot = tok.find(".")
    return 0 if dot < 0 else len(tok) - dot - 1


_NOT_FLAT: Any = object()


def _flat(t: list[str], n: int) -> Any:
    """What :func:`_evaluate` makes of *t* when it is numbers, bare or in parentheses (``(3)/(4) *
    48``), joined by ``+ - * /``: the same operations in the same order, in one loop instead of a
    call per token. ``_NOT_FLAT`` for any other shape (signs, powers, percentages, nesting,
    implicit products), which :func:`_evaluate` then reads."""
    total: float | None = None  # the terms before the current one, summed
    sign = op = ""
    term = 0.0
    i = 0
    while True:
        c = t[i]
        if c == "(":  # "(" number ")" only
            if i + 2 >= n or t[i + 2] != ")" or not t[i + 1][0].isdigit():
                return _NOT_FLAT
            x = float(t[i + 1])
            i += 3
        elif c[0].isdigit():
            x = float(c)
            i += 1
        else:
            return _NOT_FLAT
        if i < n:  # what follows the number must be an operator ("0^2": the 0 is no divisor)
            nxt = t[i]
            if (nxt != "+" and nxt != "-" and nxt != "*" and nxt != "/") or i + 1 == n:
                return _NOT_FLAT
        if op == "*":
            term *= x
        elif op == "/":
            if x == 0:
                return None  # division by zero
            term /= x
        else:  # the first term, or one after "+" / "-": the term before it joins the sum
            if op:
                total = term if total is None else (total + term if sign == "+" else total - term)
                sign = op
            term = x
        if i == n:
            break
        op = t[i]
        i += 1
    if total is not None:
        term = total + term if sign == "+" else total - term
    return term if math.isfinite(term) else None


def _side(tokens: list[str]) -> tuple[float, int | None, bool] | None:
    """``(value, decimals written when a bare number, has an operator)`` of one side, or ``None``."""
    n = len(tokens)
    if n == 1:
        tok = tokens[0]
        c = tok[0]
        if not c.isdigit() and c != ".":
            return None
        try:
            return float(tok), _decimals(tok), False
        except ValueError:  # a lone "." ("Total . = 3 + 4")
            return None
    if not n:
        return None
    if n == 3 and tokens[1] in _OPS and tokens[0][0].isdigit() and tokens[2][0].isdigit():
        a, op, b = float(tokens[0]), tokens[1], float(tokens[2])  # "84 * 2.50": most sides
        if op == "+":
            return a + b, None, True
        if op == "-":
            return a - b, None, True
        if op == "*":
            return a * b, None, True
        if op == "/" and b:
            return a / b, None, True
    try:
        value = _flat(tokens, n)
        if value is _NOT_FLAT:
            value = _evaluate(tokens)
    except (ValueError, OverflowError, IndexError, ZeroDivisionError, RecursionError, TypeError):
        return None
    if value is None:
        return None
    if n == 2 and tokens[0] == "-":
        return value, _decimals(tokens[1]), False
    return value, None, not _OPS.isdisjoint(tokens[1:])


def _check_arithmetic(norm: str) -> tuple[int, int, float | None]:
    """``(equations checked, equations wrong, value of the last checked one)`` over *norm*.

    A side glued to a variable or function (``2x``, ``x+1``, ``f(3)``, ``2^{x}``) is not plain
    arithmetic and is left out, so only equations whose both sides are numbers are judged.
    """
    checked = wrong = 0
    last: float | None = None
    n = len(norm)
    tokenize = _TOKEN.findall
    simple_chain = _SIMPLE_CHAIN.fullmatch
    glue_before, glue_after, rounding_of = _GLUE_BEFORE, _GLUE_AFTER, _ROUNDING
    for m in _CHAIN.finditer(norm):
        start, stop = m.span()
        simple = simple_chain(norm, start, stop)
        if simple is not None:
            chain = ""
            end = simple.end(4)
        else:
            chain = m.group()
            if "+" in chain or "*" in chain or "/" in chain or "^" in chain or chain.find("-", 1) > 0:
                end = start + len(chain.rstrip())
            else:
                continue  # "a = b": nothing computed, nothing to check
        glued_before = glued_after = False
        if start > 0:
            c = norm[start - 1]
            j = start - 1
            while c == " " and j > 0:  # the first non-space character before the chain
                j -= 1
                c = norm[j]
            glued_before = norm[start - 1] in glue_before or c in "+*/^<>"
            if not glued_before and norm[start] == "-":
                glued_before = c.isalnum() or c in ")]}"  # "x - 3 = 7": the minus is the variable's
        if end < n:
            c = norm[end]
            j = end
            while c == " " and j < n - 1:  # the first non-space character after the chain
                j += 1
                c = norm[j]
            glued_after = norm[end] in glue_after or c in "+-*/^<>"
        if simple is not None:  # what the general way below makes of "a op b = c", only sooner
            if glued_before or glued_after:
                continue  # a glued side is left out, and with it the only equation
            a, op, b, result = simple.groups()
            x, y = float(a), float(b)
            if op == "+":
                value = x + y
            elif op == "-":
                value = x - y
            elif op == "*":
                value = x * y
            elif y:
                value = x / y
            else:
                continue  # division by zero: not arithmetic
            checked += 1
            last = float(result)
            # _agree(value, last, None, decimals of result), inline
            tol = 1e-6 * max(abs(value), abs(last), 1.0)
            dot = result.find(".")
            d = 0 if dot < 0 else len(result) - dot - 1
            rounding = rounding_of[d] if d < len(rounding_of) else 0.5 * 10.0 ** (-d) + 1e-9
            if rounding > tol:
                tol = rounding
            if not abs(value - last) <= tol:
                wrong += 1
            if checked >= _MAX_EQUATIONS:
                break
            continue
        sides = chain.split("=")
        if glued_before:
            sides[0] = ""
        if glued_after:
            sides[-1] = ""
        sides[-1] = sides[-1].rstrip(" .").rstrip("+-*/^( ")
        prev: tuple[float, int | None, bool] | None = None
        for side in sides:
            cur = _side(tokenize(side))
            if cur is None:
                prev = None
                continue
            if prev is not None and (cur[2] or prev[2]):
                checked += 1
                if not _agree(prev[0], cur[0], prev[1], cur[1]):
                    wrong += 1
                last = cur[0]
            prev = cur
        if checked >= _MAX_EQUATIONS:
            break
    return checked, wrong, last


# ---------------------------------------------------------------------------------- final answer

#: Read at a found "answer": ``final answer is X``, ``the answer: X``, ``answer = X``.
_ANSWER_AT = re.compile(r"answer\**\s*(?:is|would\s+be|will\s+be|should\s+be)?\s*[:=]?\s*\**\s*(?P<v>[^\n]{1,80})")
_JSON_ANSWER = re.compile(r"\"answer\"\s*:\s*(?P<v>\"(?:[^\"\\\n]|\\.){0,200}\"|[^,}\n]{1,80})")
_ANSWER_LEAD = re.compile(r"(?:final|the|correct|my|an?)\s*\**\s*$|^\s*[#*]*\s*$")
_CONCLUSION = re.compile(
    r"(?:therefore|thus|hence|so|in total|altogether|in all|the result is|which gives|we get)\b[^.\n]{0,160}?"
    r"(-?\$?\d[\d,]*(?:\.\d+)?)"
)
_FIRST_CLAUSE = re.compile(r"[,;]\s|\.\s|\s\(|\s(?:because|since|which|as)\s")
_ANSWER_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")


def _boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` (braces matched), in order; at most 20."""
    out: list[str] = []
    start = text.find("\\boxed")
    while start >= 0 and len(out) < 20:
        i = text.find("{", start, start + 12)
        if i < 0:
            break
        depth, j = 0, i
        end = min(len(text), i + 200)
        while j < end:
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if depth == 0 and j > i:
            out.append(text[i + 1 : j])
        start = text.find("\\boxed", j)
    return out


def _clean_answer(value: str) -> str:
    value = value.strip().strip(" .*:`")
    for old in ("\\text{", "\\textbf{", "\\mathrm{"):
        if old in value:
            value = value.replace(old, "")
    return value.strip("{} $").strip()


def _final(text: str, lower: str) -> tuple[str | None, str | None, int]:
    """``(kind, text, distinct answers stated)``: the final answer the text states.

    Kinds, by precedence: ``json`` (the first ``"answer"`` field, as graders read it), then the
    last of ``hash`` (``####``), ``boxed`` and ``stated`` (``the answer is``, ``Answer:``), else
    ``conclusion`` (a closing ``so / therefore ... <number>``) or ``None``.
    """
    found: list[tuple[int, str, str]] = []
    if "####" in text:
        i = text.rfind("####")
        line = text[i + 4 :].split("\n", 1)[0]
        if line.strip():
            found.append((i, "hash", _clean_answer(line)))
    if "\\boxed" in text:
        i = text.find("\\boxed")
        for value in _boxed(text):
            found.append((i, "boxed", _clean_answer(value)))
            i += 1
    json_first = None
    if '"answer"' in text:
        m = _JSON_ANSWER.search(text, text.find('"answer"'))
        if m is not None:
            v = m.group("v").strip().strip('"').strip()
            if v and v not in ("___", "...", "..."):
                json_first = _clean_answer(v)
    if "answer" in lower:
        same = len(lower) == len(text)
        i = lower.find("answer")
        seen = 0
        while i >= 0 and seen < 30:
            seen += 1
            lead = lower[max(0, i - 12) : i]
            if lower[i - 1 : i] != '"' and _ANSWER_LEAD.search(lead):
                m = _ANSWER_AT.match(lower, i)
                if m is not None:
                    a, b = m.span("v")
                    v = _clean_answer(_FIRST_CLAUSE.split(text[a:b] if same else lower[a:b], 1)[0])
                    if v and "\\boxed" not in v:
                        found.append((i, "stated", v))
            i = lower.find("answer", i + 6)
    values = {v.lower() for _, _, v in found if v}
    if json_first is not None:
        values.add(json_first.lower())
        return "json", json_first, len(values)
    if found:
        if len(found) > 1:
            found.sort(key=lambda f: f[0])
        _, kind, value = found[-1]
        return kind, value, len(values)
    last = None
    for last in _CONCLUSION.finditer(lower, max(0, len(lower) - 300)):  # noqa: B007 - the last one
        pass
    if last is not None:
        return "conclusion", last.group(1), 1
    return None, None, 0


def _answer_number(text: str) -> float | None:
    if len(text) <= 200 and text.isascii() and text.isdigit():
        return float(text)  # what the general way makes of plain digits, only sooner
    norm = _normalise_maths(text)
    m = _ANSWER_NUMBER.search(norm)
    if m is None:
        return None
    return eval_arithmetic(m.group().replace(" ", ""))


# ------------------------------------------------------------------------------ words and tells

#: ASCII punctuation, read as spaces between words. (``str.translate`` looks every character up
#: in a dict once a text is not ASCII, ~50 ns each; these are replaced in the UTF-8 bytes instead,
#: where no byte of a multi-byte character is ASCII.)
_PUNCT_CHARS = '!"#$%&()*+,./:;<=>?@[\\]^_`{|}~\n\t\r'
#: (\x1c-\x1f too: str.split splits at them, bytes.split does not.)
_PUNCT_BYTES = bytes.maketrans(_PUNCT_CHARS.encode() + b"\x1c\x1d\x1e\x1f", b" " * (len(_PUNCT_CHARS) + 4))
_TELL_WORDS: dict[str, str] = {
    # self-corrections: the answer doubts its own work
    "wait": "correction",
    "mistake": "correction",
    "mistakes": "correction",
    "incorrect": "correction",
    "re-evaluate": "correction",
    "reevaluate": "correction",
    "recalculate": "correction",
    "re-calculate": "correction",
    "recheck": "correction",
    "re-check": "correction",
    "re-examine": "correction",
    "reconsider": "correction",
    "revisit": "correction",
    "double-check": "correction",
    "oops": "correction",
    "actually": "correction",
    "however": "correction",
    "error": "correction",
    # uncertainty
    "unsure": "uncertain",
    "maybe": "uncertain",
    "perhaps": "uncertain",
    "possibly": "uncertain",
    "probably": "uncertain",
    "likely": "uncertain",
    "unclear": "uncertain",
    "ambiguous": "uncertain",
    "assume": "uncertain",
    "assuming": "uncertain",
    "seems": "uncertain",
    "guess": "uncertain",
    # the answer says there is no answer
    "impossible": "impossible",
    "undetermined": "impossible",
    "insufficient": "impossible",
    # approximation
    "approximately": "approx",
    "approx": "approx",
    "roughly": "approx",
    "closest": "approx",
    "nearest": "approx",
    "estimate": "approx",
    "≈": "approx",
}
#: Phrases checked when one of their words is present.
_TELL_PHRASES: tuple[tuple[str, str, str], ...] = (
    ("sure", "not sure", "uncertain"),
    ("think", "i think", "uncertain"),
    ("believe", "i believe", "uncertain"),
    ("determined", "cannot be determined", "impossible"),
    ("determined", "can't be determined", "impossible"),
    ("possible", "not possible", "impossible"),
    ("none", "none of the", "impossible"),
    ("information", "not enough information", "impossible"),
    ("solution", "no solution", "impossible"),
    ("match", "not match any", "impossible"),
    ("listed", "not listed", "impossible"),
)
_PHRASES_BY_KEY: dict[str, list[tuple[str, str]]] = {}
for _key, _phrase, _cat in _TELL_PHRASES:
    _PHRASES_BY_KEY.setdefault(_key, []).append((_phrase, _cat))
#: Words whose presence is worth a look: tells, and the key words of the phrases.
_TELL_KEYS = frozenset(_TELL_WORDS) | frozenset(_PHRASES_BY_KEY)
_TELL_KEYS_BYTES = frozenset(k.encode() for k in _TELL_KEYS)
_REFUSALS = (
    "i'm sorry",
    "i am sorry",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "i can't help",
    "i can't assist",
    "i cannot help",
    "i cannot assist",
    "i cannot provide",
    "i can't provide",
    "i won't be able",
    "i will not",
    "i can't comply",
    "i cannot comply",
    "as an ai",
    "i do not have access",
    "i don't have access",
    "i'm not comfortable",
)
_REFUSAL_HEAD = 300

# ---------------------------------------------------------------------------------------- choices

_OPTION = re.compile(r"(?:^|[\s\[])\(?([A-J])[).:]\s*\S|(?:^|\s)\(([A-J])\)\s*\S", re.M)
_CHOICE_STATEMENT = re.compile(
    r"\\boxed\s*\{\s*\(?([A-J])\b"
    r"|(?:[Aa]nswer|[Oo]ption|[Cc]hoice)(?:\s+is|\s*:)?\s*[:=]?\s*\(?\**([A-J])\b(?!['’])"
    r"|^\s*\(?\**([A-J])\**\)?\s*[.)\]:]?\s*$",
    re.M,
)

# ------------------------------------------------------------------------------------------ code

_PY_LINE = re.compile(r"^(?:def |class |import |from \w+ import |for .* in .*:|if .*:|while .*:|return\b)", re.M)
_PY_LANGS = frozenset({"python", "py", "python3", "py3"})
_PY_STARTS = ("def ", "import", "from ", "class ")
_PY_BARE = re.compile(r"\n(?:def|import|from|class) ")
#: Strings and comments of Python source, removed before brackets are counted.
#: Strings and comments of Python source, removed before brackets are counted: a triple-quoted
#: string runs to the first closing triple quote, a plain one stops at its line's end.
_PY_DQ3 = r'"""[^"]*(?:"(?!"")[^"]*)*"""'
_PY_SQ3 = r"'''[^']*(?:'(?!'')[^']*)*'''"
_PY_DQ1 = r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
_PY_SQ1 = r"'[^'\\\n]*(?:\\.[^'\\\n]*)*'"
_PY_HASH = r"#[^\n]*"
_PY_SKIP = re.compile("|".join((_PY_DQ3, _PY_SQ3, _PY_DQ1, _PY_SQ1, _PY_HASH)))
#: The same for source holding only one of '"', "'" and "#" (the others cannot match in it): a
#: pattern starting with one character is scanned for several times faster than one starting
#: with a set of three.
_PY_SKIPS = {
    (True, False, False): re.compile(f"{_PY_DQ3}|{_PY_DQ1}"),
    (False, True, False): re.compile(f"{_PY_SQ3}|{_PY_SQ1}"),
    (False, False, True): re.compile(_PY_HASH),
}
_PY_OPEN_END = (":", ",", "\\", "(", "[", "{", "=", "+", "-", "*", "/", ".")
_PY_FENCES = ("```py", "```\n", "```Py", "``` py", "```\r")


@dataclass(frozen=True, slots=True)
class Question:
    """What the answer checks need from the question: its size, numbers and options (see :func:`question`)."""

    chars: int
    #: Numbers written in the question (absolute values, thousands separators removed).
    numbers: frozenset[float]
    #: How many numbers the question writes (with repeats).
    number_count: int
    #: Option letters the question offers (``"ABCDE"``), empty when it offers none.
    options: str

    @property
    def multiple_choice(self) -> bool:
        """Whether the question offers lettered options."""
        return bool(self.options)


_NO_QUESTION = Question(0, frozenset(), 0, "")


def _window(text: str, cap: int) -> str:
    if len(text) <= cap:
        return text
    head = cap * 3 // 4
    return text[:head] + "\n" + text[-(cap - head) :]


def question(prompt: str) -> Question:
    """Analyse the question *prompt* once (its numbers and options), for every answer to it.

    The last 256 questions under 64 kB are remembered (a cascade judges every tier's answer to the
    same question).
    """
    if not prompt:
        return _NO_QUESTION
    return _question_cached(prompt) if len(prompt) <= 65_536 else _question(prompt)


@functools.lru_cache(maxsize=256)
def _question_cached(prompt: str) -> Question:
    return _question(prompt)


def _question(prompt: str) -> Question:
    chars = len(prompt)
    prompt = _window(prompt, _MAX_PROMPT)
    norm = _normalise_maths(prompt)
    found = _NUMBER.findall(norm)
    numbers = set()
    for s in found[:400]:
        try:
            value = abs(float(s))
        except ValueError:
            continue
        if value != math.inf:  # 309 digits or more: no answer writes it back
            numbers.add(value)
    letters = sorted({a or b for a, b in _OPTION.findall(prompt[-3000:])})
    options = "".join(letters) if len(letters) >= 2 and letters[0] == "A" and "B" in letters else ""
    return Question(chars, frozenset(numbers), len(found), options)


@dataclass(slots=True)
class Analysis:
    """What :func:`analyse` found in one answer (see the module docstring)."""

    chars: int
    words: int
    lines: int
    question: Question
    #: ``hash``, ``boxed``, ``json``, ``stated``, ``conclusion`` or ``None``.
    final_kind: str | None
    final_text: str | None
    final_value: float | None
    #: Distinct final answers stated (by text), 0 when none.
    final_distinct: int
    equations: int
    equations_wrong: int
    #: Whether the last computed value differs from the stated final number.
    final_mismatch: bool
    refusal: bool
    impossible: int
    uncertain: int
    approx: int
    correction: int
    #: Share of the non-trivial lines that repeat an earlier line (looping).
    repeated: float
    ends_cleanly: bool
    #: Share of the question's distinct numbers the answer writes (``None``: the question has < 2).
    coverage: float | None
    #: Option letters the answer states as its choice.
    chosen: str
    #: The answer text as scanned (windowed), for the checks computed on demand.
    text: str
    _parses: bool | None = None
    _parsed: bool = False
    _shape: str | None = None

    @property
    def looks_mathematical(self) -> bool:
        """Whether the answer shows arithmetic or states a numeric final answer."""
        return self.equations > 0 or self.final_value is not None

    def code_blocks(self) -> list[tuple[str, str]]:
        """``(language, source)`` of each fenced code block; a bare program is one untagged block."""
        text = self.text
        if "```" in text:
            return _fenced(text)
        if (text.lstrip()[:6].startswith(_PY_STARTS) or _PY_BARE.search(text)) and _PY_LINE.search(text):
            return [("", text)]  # a bare program: a line opens with def / import / from / class
        return []

    def python_sources(self) -> list[str]:
        """The Python code in the answer: ``python``-tagged blocks, untagged ones that look like Python."""
        return [src for lang, src in self.code_blocks() if lang in _PY_LANGS or (lang == "" and _PY_LINE.search(src))]

    def python_shape(self) -> str | None:
        """What is wrong with the shape of the Python code, cheaply: unbalanced brackets, an
        unterminated string, a last line that cannot end a program (``"``: no Python, ``None``: fine)."""
        if self._shape is None:
            sources = self.python_sources()
            self._shape = "" if not sources else next((p for p in map(_python_shape, sources) if p), "ok")
        return None if self._shape == "ok" else self._shape

    def python_parses(self) -> bool | None:
        """Whether every Python block parses with :func:`ast.parse` (``None``: no Python). About
        100 µs per kB of code: the ``code_parses`` check, not a default one."""
        if not self._parsed:
            self._parsed = True
            sources = self.python_sources()
            if sources:
                import ast

                ok = True
                for src in sources:
                    try:
                        ast.parse(src[:20_000])
                    except (SyntaxError, ValueError, MemoryError, RecursionError):
                        ok = False
                        break
                self._parses = ok
        return self._parses


def _fenced(text: str) -> list[tuple[str, str]]:
    """``(language, source)`` of the fenced blocks of *text* (an unclosed last fence runs to the end)."""
    out: list[tuple[str, str]] = []
    i = text.find("```")
    while i >= 0 and len(out) < 32:
        eol = text.find("\n", i + 3)
        if eol < 0:
            break
        lang = text[i + 3 : eol].strip().split(" ", 1)[0].lower()
        close = text.find("```", eol + 1)
        out.append((lang, text[eol + 1 : close if close >= 0 else len(text)]))
        if close < 0:
            break
        i = text.find("```", close + 3)
    return out


def _python_shape(src: str) -> str | None:
    """Why Python *src* cannot be a whole program, from its shape alone (``None``: it can)."""
    src = src[:20_000]
    kinds = ('"' in src, "'" in src, "#" in src)
    code = _PY_SKIPS.get(kinds, _PY_SKIP).sub(" ", src) if any(kinds) else src
    for a, b in ("()", "[]", "{}"):
        if code.count(a) != code.count(b):
            return f"unbalanced {a}{b}"
    if '"' in code or "'" in code:
        return "unterminated string"
    last = code.rstrip()
    if last.endswith(_PY_OPEN_END) and not last.endswith(("...", "*/")):
        return "code cut off"
    return None


#: A line without a digit, between two newlines.
_DIGITLESS_LINE = re.compile(r"\n[^\d\n]*\n")


def _all_have_digits(lines: list[str]) -> bool:
    """Whether every one of *lines* (no newline in any) holds a digit: one scan, not one per line."""
    return _DIGITLESS_LINE.search("\n" + "\n".join(lines) + "\n") is None


def _equation_lines(lines: list[str]) -> str:
    """The lines holding "=" and a digit (the first and last ``_MAX_EQ_LINES // 2`` of them when
    there are more), each cut to 400 characters, joined; the head and tail of ``_MAX_EQ_CHARS``."""
    eq = [ln for ln in lines if "=" in ln]
    has_digit = _DIGIT.search
    half = _MAX_EQ_LINES // 2
    n = len(eq)
    if n <= _MAX_EQ_LINES:
        if not _all_have_digits(eq):
            eq = [ln for ln in eq if has_digit(ln)]
    elif _all_have_digits(ends := eq[:half] + eq[-half:]):
        eq = ends
    else:  # the first `half` from the front, the last `half` from the back, never both for a line
        front: list[str] = []
        i = 0
        while len(front) < half and i < n:
            if has_digit(eq[i]):
                front.append(eq[i])
            i += 1
        back: list[str] = []
        j = n - 1
        while len(back) < half and j >= i:
            if has_digit(eq[j]):
                back.append(eq[j])
            j -= 1
        eq = front + back[::-1]
    if not eq:
        return ""
    text = "\n".join(eq) if max(map(len, eq)) <= 400 else "\n".join(ln[:400] for ln in eq)
    if len(text) > _MAX_EQ_CHARS:
        half = _MAX_EQ_CHARS // 2
        text = text[:half] + "\n" + text[-half:]
    return text


def _coverage(text: str, q: Question) -> float | None:
    keys = _coverage_keys(q.numbers) if len(q.numbers) <= 30 else _number_keys(q.numbers)
    if len(keys) < 2:
        return None
    hit = 0
    for s, grouped in keys:
        # a number's first digit is looked for first: a single character is found far faster
        if (s[0] in text and s in text) or (grouped and grouped in text):
            hit += 1
    return hit / len(keys)


def _number_keys(numbers: frozenset[float]) -> tuple[tuple[str, str], ...]:
    """How the answer may write each of the question's numbers (the first 30 of 2 or more, not 0
    or 1): ``(digits, digits with thousands separators or "")``."""
    nums = [n for n in numbers if n >= 2 or n != int(n)][:30]
    return tuple(
        (str(int(n)) if n == int(n) else repr(n), f"{int(n):,}" if n >= 1000 and n == int(n) else "") for n in nums
    )


#: The same for a question's numbers when there are 30 or fewer (then which ones come first in
#: the set does not matter), remembered with the question's analysis.
_coverage_keys = functools.lru_cache(maxsize=256)(_number_keys)


def analyse(text: str, q: Question | str | None = None) -> Analysis:
    """Analyse one answer *text* to the question *q* (a :class:`Question`, or its text)."""
    if not isinstance(q, Question):
        q = question(q or "")
    raw = text or ""
    text = _window(raw, _MAX_ANSWER)
    stripped = text.strip()
    lower = text.lower()
    # -- tells: one split of the words, phrases only where one of their words occurs
    spaced = lower.encode("utf-8", "surrogatepass").translate(_PUNCT_BYTES)
    if lower.isascii():  # bytes split where str.split does (\x1c-\x1f are spaces in _PUNCT_BYTES)
        words: list[str] | list[bytes] = spaced.split()
        tells = [w.decode() for w in _TELL_KEYS_BYTES.intersection(words)]
    else:  # str.split also splits at Unicode spaces
        words = spaced.decode("utf-8", "surrogatepass").split()
        tells = _TELL_KEYS.intersection(words)
    counts = {"impossible": 0, "uncertain": 0, "approx": 0, "correction": 0}
    for w in tells:
        cat = _TELL_WORDS.get(w)
        if cat is not None:
            counts[cat] += lower.count(w)
        for phrase, cat in _PHRASES_BY_KEY.get(w, ()):
            if phrase in lower:
                counts[cat] += 1
    head = lower[:_REFUSAL_HEAD]
    refusal = any(r in head for r in _REFUSALS) if ("sorry" in head or "i " in head or "as an" in head) else False
    # -- lines
    lines = list(filter(None, map(str.strip, stripped.split("\n"))))
    long_lines = [ln for ln in lines if len(ln) > 12]
    repeated = 1.0 - len(set(long_lines)) / len(long_lines) if len(long_lines) > 2 else 0.0
    # -- arithmetic, on the lines holding "=" only
    equations = wrong = 0
    last_value = None
    if "=" in text:
        equations, wrong, last_value = _check_arithmetic(_normalise_maths(_equation_lines(lines)))
    # -- final answer: the end of the text, a JSON "answer" field wherever it is
    cut = max(0, len(text) - _FINAL_TAIL)
    kind, final_text, distinct = _final(text[cut:], lower[cut:])
    if kind != "json" and cut and text.find('"answer"', 0, cut) >= 0:
        head = _final(text[:cut], lower[:cut])
        if head[0] == "json":
            kind, final_text, distinct = head[0], head[1], distinct + 1
    final_value = _answer_number(final_text) if final_text else None
    mismatch = bool(
        final_value is not None and last_value is not None and not _agree(final_value, last_value, None, None)
    )
    # -- ending
    last_char = stripped[-1:]
    ends_cleanly = bool(last_char) and (last_char in ".!?)]}>`\"'*|$" or last_char.isalnum())
    if ends_cleanly and last_char.isalpha() and len(stripped) > 200 and kind is None:
        ends_cleanly = False  # a long answer stopping mid-word without any answer: cut off
    # -- multiple choice
    chosen = ""
    if q.options:
        picks = []
        for m in _CHOICE_STATEMENT.finditer(text[-1500:]):
            letter = m.group(1) or m.group(2) or m.group(3)
            if letter and letter in q.options:
                picks.append(letter)
        if picks:
            chosen = "".join(sorted(set(picks[-3:])))
    return Analysis(
        chars=len(raw),
        words=len(words),
        lines=len(lines),
        question=q,
        final_kind=kind,
        final_text=final_text,
        final_value=final_value,
        final_distinct=distinct,
        equations=equations,
        equations_wrong=wrong,
        final_mismatch=mismatch,
        refusal=refusal,
        impossible=counts["impossible"],
        uncertain=counts["uncertain"],
        approx=counts["approx"],
        correction=counts["correction"],
        repeated=repeated,
        ends_cleanly=ends_cleanly,
        coverage=_coverage(text, q) if q.numbers else None,
        chosen=chosen,
        text=text,
    )


# -------------------------------------------------------------------------------------- features

FEATURE_VERSION = 3

#: The answer-quality model's inputs, in order (see :func:`features`).
FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_lines",
    "log_prompt_chars",
    "log_prompt_numbers",
    "log_len_ratio",
    "final_explicit",
    "final_conclusion",
    "final_none",
    "final_not_integer",
    "final_negative",
    "final_copies_prompt",
    "final_distinct_extra",
    "log_equations",
    "equations_wrong_any",
    "log_equations_wrong",
    "final_mismatch",
    "impossible",
    "uncertain",
    "approx",
    "correction",
    "repeated",
    "not_ends_cleanly",
    "coverage_missing",
    "choice_none",
    "choice_many",
    "short_answer",
)


def _log(x: float) -> float:
    return math.log1p(max(0.0, x))


def features(a: Analysis) -> list[float]:
    """The answer-quality model's feature vector of one analysed answer (:data:`FEATURE_NAMES` order)."""
    q = a.question
    fv = a.final_value
    explicit = a.final_kind is not None and a.final_kind != "conclusion"
    # an open question answered with one of its own numbers: usually a copied, unworked answer
    copies = 1.0 if fv is not None and not q.options and abs(fv) in q.numbers else 0.0
    return [
        _log(a.chars) / 8.0,
        _log(a.lines) / 4.0,
        _log(q.chars) / 8.0,
        _log(q.number_count) / 4.0,
        (_log(a.chars) - _log(q.chars)) / 4.0,
        1.0 if explicit else 0.0,
        1.0 if a.final_kind == "conclusion" else 0.0,
        1.0 if a.final_kind is None else 0.0,
        1.0 if fv is not None and abs(fv - round(fv)) > 1e-9 else 0.0,
        1.0 if fv is not None and fv < 0 else 0.0,
        copies,
        min(3.0, max(0, a.final_distinct - 1)) / 3.0,
        _log(a.equations) / 3.0,
        1.0 if a.equations_wrong else 0.0,
        _log(a.equations_wrong) / 2.0,
        1.0 if a.final_mismatch else 0.0,
        min(3, a.impossible) / 3.0,
        min(5, a.uncertain) / 5.0,
        min(5, a.approx) / 5.0,
        min(5, a.correction) / 5.0,
        a.repeated,
        0.0 if a.ends_cleanly else 1.0,
        0.0 if a.coverage is None else 1.0 - a.coverage,
        1.0 if q.options and not a.chosen else 0.0,
        1.0 if len(a.chosen) > 1 else 0.0,
        1.0 if a.chars <= 8 else 0.0,
    ]
