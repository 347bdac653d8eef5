"""Answer checks: is this answer good enough, or should a cascade ask a stronger model?

Pure, fast functions over an :class:`Answer` (a reply's text, tool calls, finish reason and
token log-probabilities, with the request it answers). Each returns a :class:`CheckResult`;
:func:`judge` runs a list of them and composes a :class:`Verdict`::

    from llmroute.checks import Answer, judge
    verdict = judge(Answer("Janet sells 16 - 3 - 4 = 9 eggs ... #### 18", prompt="Janet's ducks ..."))
    verdict.score, verdict.failed           # 0.83, ()
    verdict.accepts(0.7)                    # True: keep the cheap answer

Built-in checks (names usable in a route's ``checks``):

====================  =====  ===============================================================
name                  kind   fails when
====================  =====  ===============================================================
``non_empty``         hard   no text and no tool call
``finished``          hard   the provider cut the answer (``length``) or filtered it
``not_refusal``       hard   the answer opens with a refusal ("I'm sorry, but I can't ...")
``json``              hard   the request asked for JSON (``response_format``) and the text is
                             not JSON, or breaks the ``json_schema`` it gave
``tool_args``         hard   a tool call names a tool the request did not offer, or its
                             arguments are not a JSON object valid against the tool's schema;
                             or ``tool_choice`` required a call and none came
``code``              hard   a Python code block (fenced, or a bare program) is cut off or
                             malformed (unbalanced brackets, unterminated string): its shape
``code_parses``       hard   (not a default: ~100 µs per kB) the Python code does not parse
``math``              soft   a worked answer shows arithmetic that is wrong (``388 * 1359 =
                             527,622``), or a maths question gets no final answer
``choice``            soft   a multiple-choice question gets no option, or several
``confidence``        score  the answer's confidence: the provider's token log-probabilities
                             (``exp(mean logprob)``) where returned, else the answer-quality
                             model (``llmroute.quality``) over the answer's features
====================  =====  ===============================================================

A check that does not apply (no JSON asked, no code in the answer, ...) reports
``passed=None`` and does not count. Composition: the verdict's **score** is the product of
the checks' scores: a failed hard check scores 0, a failed soft check :data:`SOFT_PENALTY`,
the confidence check its probability, everything else 1. A cascade accepts an answer when
``score >= accept``. After a hard failure the remaining checks are skipped (``passed=None``,
detail ``skipped``): the score is 0 whatever they say. (The answer-quality model sees the
same signals the soft checks test, among others; a soft failure still halves the score,
because on worked maths answers a wrong equation multiplies the odds of a wrong answer by
about 13 in the development data, far more than the model's pooled weight.)

Your own checks are callables ``(answer) -> CheckResult | bool | float | None`` (``True``
passes; ``False`` fails hard; a float in [0, 1] is a score; ``None`` does not apply), sync
here, sync or async in a cascade (``llmroute.cascade`` awaits them). :func:`parses_as` builds a
hard check from a pydantic model or a JSON schema.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from . import _answer
from ._jsonschema import first_error
from .quality import AnswerQuality
from .types import Completion, FinishReason, Reply, TokenLogprobs, ToolCall

__all__ = [
    "BUILTIN_CHECKS",
    "DEFAULT_CHECKS",
    "SOFT_PENALTY",
    "Answer",
    "Check",
    "CheckResult",
    "Verdict",
    "combine",
    "confidence",
    "judge",
    "judge_async",
    "parses_as",
    "prompt_of",
    "resolve_checks",
    "result_of",
]

#: What a failed soft check multiplies the score by when the confidence is not the model's.
SOFT_PENALTY = 0.5

#: Names of the built-in checks, in the order :func:`judge` runs them.
DEFAULT_CHECKS: tuple[str, ...] = (
    "non_empty",
    "finished",
    "not_refusal",
    "json",
    "tool_args",
    "code",
    "math",
    "choice",
    "confidence",
)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(
            str(p.get("text") or "") for p in content if isinstance(p, Mapping) and p.get("type", "text") == "text"
        )
    return ""


def prompt_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """The question a conversation asks: the text of its last user message."""
    return next(
        (_text_of(m.get("content")) for m in reversed(messages) if isinstance(m, Mapping) and m.get("role") == "user"),
        "",
    )


class Answer:
    """One answer to judge: what came back, and what was asked.

    *prompt* is the question (by default the last user message of *messages*); *tools*,
    *tool_choice* and *response_format* are the request's (OpenAI shapes). The text analysis
    (``llmroute._answer``) is computed once, on first use, and shared by every check.
    """

    __slots__ = (
        "_analysis",
        "_question",
        "finish_reason",
        "logprobs",
        "prompt",
        "response_format",
        "text",
        "tool_calls",
        "tool_choice",
        "tools",
    )

    def __init__(
        self,
        text: str | None,
        *,
        prompt: str = "",
        tool_calls: Sequence[ToolCall] = (),
        finish_reason: FinishReason | str | None = None,
        logprobs: TokenLogprobs | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        response_format: Mapping[str, Any] | None = None,
        question: _answer.Question | None = None,
    ) -> None:
        self.text = text or ""
        self.prompt = prompt
        self.tool_calls = tuple(tool_calls)
        self.finish_reason = finish_reason
        self.logprobs = logprobs
        self.tools = tools
        self.tool_choice = tool_choice
        self.response_format = response_format
        self._question = question
        self._analysis: _answer.Analysis | None = None

    @classmethod
    def of(cls, reply: Reply | Completion, request: Any = None, *, question: _answer.Question | None = None) -> Answer:
        """The answer in *reply* to *request* (a :class:`~llmroute.types.ChatRequest`, or ``None``)."""
        prompt = prompt_of(getattr(request, "messages", None) or ())
        return cls(
            reply.text,
            prompt=prompt,
            tool_calls=reply.tool_calls,
            finish_reason=reply.finish_reason,
            logprobs=reply.logprobs,
            tools=getattr(request, "tools", None),
            tool_choice=getattr(request, "tool_choice", None),
            response_format=getattr(request, "response_format", None),
            question=question,
        )

    @property
    def question(self) -> _answer.Question:
        """The question's analysis (numbers, options), computed once."""
        if self._question is None:
            self._question = _answer.question(self.prompt)
        return self._question

    @property
    def analysis(self) -> _answer.Analysis:
        """The answer's text analysis (``llmroute._answer.analyse``), computed once."""
        if self._analysis is None:
            self._analysis = _answer.analyse(self.text, self.question)
        return self._analysis

    def __repr__(self) -> str:
        return f"Answer({self.text[:40]!r}{'...' if len(self.text) > 40 else ''}, tool_calls={len(self.tool_calls)})"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's finding: passed (``None``: did not apply), a score in [0, 1], and why."""

    name: str
    passed: bool | None
    #: What this check multiplies the verdict's score by (1 = no objection).
    score: float = 1.0
    detail: str = ""
    #: Whether a failure alone rejects the answer (score 0).
    hard: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """The checks' combined judgement of one answer (see the module docstring)."""

    score: float
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """Whether no applicable check failed."""
        return all(r.passed is not False for r in self.results)

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the checks that failed."""
        return tuple(r.name for r in self.results if r.passed is False)

    def accepts(self, threshold: float) -> bool:
        """Whether a cascade keeps this answer at accept *threshold*: ``score >= threshold``."""
        return self.score >= threshold

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"score": self.score, "passed": self.passed, "results": [asdict(r) for r in self.results]}


#: A check: ``(answer) -> CheckResult | bool | float | None`` (see the module docstring).
Check = Callable[[Answer], Any]


def _na(name: str, detail: str = "") -> CheckResult:
    return CheckResult(name, None, 1.0, detail)


def _fail_hard(name: str, detail: str) -> CheckResult:
    return CheckResult(name, False, 0.0, detail, hard=True)


# The built-in checks' results that never vary, made once (a CheckResult is frozen).
_NON_EMPTY_OK = CheckResult("non_empty", True, hard=True)
_NON_EMPTY_FAIL = _fail_hard("non_empty", "empty answer")
_FINISHED_NA = _na("finished", "no finish reason")
_FINISHED_OK = CheckResult("finished", True, hard=True)
_FINISHED_LENGTH = _fail_hard("finished", "cut off at the output token limit")
_FINISHED_FILTER = _fail_hard("finished", "stopped by the content filter")
_REFUSAL_NA = _na("not_refusal")
_REFUSAL_OK = CheckResult("not_refusal", True, hard=True)
_REFUSAL_FAIL = _fail_hard("not_refusal", "the answer refuses")
_JSON_NA = _na("json", "no JSON asked")
_TOOLS_NA = _na("tool_args", "no tools offered")
_CODE_NONE = _na("code", "no code")
_CODE_NO_PYTHON = _na("code", "no Python code")
_CODE_OK = CheckResult("code", True, hard=True)
_MATH_NA = _na("math", "not a worked maths answer")
_CHOICE_NA = _na("choice", "no options offered")


# ---------------------------------------------------------------------------------------- checks


def check_non_empty(a: Answer) -> CheckResult:
    """Fails (hard) when the answer has no text and no tool call."""
    if a.tool_calls or (a.text and not a.text.isspace()):
        return _NON_EMPTY_OK
    return _NON_EMPTY_FAIL


def check_finished(a: Answer) -> CheckResult:
    """Fails (hard) when the provider stopped the answer for its length or filtered it."""
    if a.finish_reason is None:
        return _FINISHED_NA
    if a.finish_reason == "length":
        return _FINISHED_LENGTH
    if a.finish_reason == "content_filter":
        return _FINISHED_FILTER
    return _FINISHED_OK


def check_not_refusal(a: Answer) -> CheckResult:
    """Fails (hard) when the answer opens with a refusal."""
    if not a.text or a.text.isspace():
        return _REFUSAL_NA
    if a.analysis.refusal:
        return _REFUSAL_FAIL
    return _REFUSAL_OK


def _strip_fence(text: str) -> str:
    t = text.strip()
    if t.startswith("```") and t.endswith("```"):
        t = t[3:-3]
        if t.startswith("json"):
            t = t[4:]
    return t.strip()


def _json_schema_of(response_format: Mapping[str, Any] | None) -> tuple[bool, Any]:
    """``(JSON asked, schema or None)`` from a request's ``response_format``."""
    if not isinstance(response_format, Mapping):
        return False, None
    kind = response_format.get("type")
    if kind == "json_object":
        return True, {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return True, schema if isinstance(schema, Mapping) else {"type": "object"}
    return False, None


def check_json(a: Answer) -> CheckResult:
    """Fails (hard) when JSON was asked for and the text is not JSON valid against the schema given."""
    asked, schema = _json_schema_of(a.response_format)
    if not asked:
        return _JSON_NA
    if a.tool_calls and not a.text.strip():
        return _na("json", "answered with tool calls")
    try:
        value = json.loads(_strip_fence(a.text))
    except ValueError as exc:
        return _fail_hard("json", f"not JSON: {exc}"[:200])
    err = first_error(value, schema)
    if err:
        return _fail_hard("json", f"breaks the schema: {err}"[:200])
    return CheckResult("json", True, hard=True)


def _tool_schemas(tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        name = fn.get("name")
        if isinstance(name, str):
            out[name] = fn.get("parameters")
    return out


def check_tool_args(a: Answer) -> CheckResult:
    """Fails (hard) on a call to an unknown tool, arguments that break the tool's schema, or a
    required call that did not come."""
    if not a.tools:
        return _TOOLS_NA
    schemas = _tool_schemas(a.tools)
    choice = a.tool_choice
    forced = choice.get("function", {}).get("name") if isinstance(choice, Mapping) else None
    if not a.tool_calls:
        if choice == "required" or forced:
            return _fail_hard("tool_args", "a tool call was required and none came")
        return _na("tool_args", "no tool call")
    for call in a.tool_calls:
        if call.name not in schemas:
            return _fail_hard("tool_args", f"call to unknown tool {call.name!r}"[:200])
        if forced and call.name != forced:
            return _fail_hard("tool_args", f"called {call.name!r}, {forced!r} was required"[:200])
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return _fail_hard("tool_args", f"{call.name}: arguments are not JSON ({exc})"[:200])
        if not isinstance(args, dict):
            return _fail_hard("tool_args", f"{call.name}: arguments are not a JSON object")
        schema = schemas[call.name]
        if isinstance(schema, Mapping):
            err = first_error(args, schema)
            if err:
                return _fail_hard("tool_args", f"{call.name}: {err}"[:200])
    return CheckResult("tool_args", True, hard=True)


def check_code(a: Answer) -> CheckResult:
    """Fails (hard) when Python code in the answer is cut off or malformed: unbalanced brackets, an
    unterminated string, a last line that cannot end a program (a shape check, microseconds)."""
    if "\n" not in a.text and "```" not in a.text:
        return _CODE_NONE
    problem = a.analysis.python_shape()
    if problem is None:
        return _CODE_OK
    if not problem:
        return _CODE_NO_PYTHON
    return _fail_hard("code", f"Python code: {problem}")


def check_code_parses(a: Answer) -> CheckResult:
    """Fails (hard) when Python code in the answer does not parse (``ast.parse``: about 100 µs per
    kB of code, so not a default check)."""
    if "```" not in a.text and "\n" not in a.text:
        return _na("code_parses", "no code")
    ok = a.analysis.python_parses()
    if ok is None:
        return _na("code_parses", "no Python code")
    return (
        CheckResult("code_parses", True, hard=True) if ok else _fail_hard("code_parses", "Python code does not parse")
    )


def check_math(a: Answer) -> CheckResult:
    """Fails (soft) when a worked answer's arithmetic is wrong, or a maths question gets no final answer."""
    an = a.analysis
    q = a.question
    mathsy = an.equations > 0 or (q.number_count >= 2 and not q.options)
    if not mathsy or a.tool_calls:
        return _MATH_NA
    if an.equations_wrong:
        return CheckResult(
            "math", False, SOFT_PENALTY, f"{an.equations_wrong} of {an.equations} equations shown are wrong"
        )
    if an.final_kind is None and an.final_value is None and an.equations > 0:
        return CheckResult("math", False, SOFT_PENALTY, "no final answer stated")
    detail = f"{an.equations} equations checked" + (f", final answer {an.final_text}" if an.final_text else "")
    return CheckResult("math", True, 1.0, detail[:200])


def check_choice(a: Answer) -> CheckResult:
    """Fails (soft) when a multiple-choice question gets no option, or several."""
    options = a.question.options
    if not options:
        return _CHOICE_NA
    chosen = a.analysis.chosen
    if not chosen:
        return CheckResult("choice", False, SOFT_PENALTY, f"none of {options} chosen")
    if len(chosen) > 1:
        return CheckResult("choice", False, SOFT_PENALTY, f"several options chosen: {chosen}")
    return CheckResult("choice", True, 1.0, f"chose {chosen}")


def confidence(model: Any = None) -> Check:
    """The confidence check: ``exp(mean token logprob)`` where the provider returned log-probs,
    else the answer-quality model's probability (*model*: an ``AnswerQuality``; default: the shipped one)."""

    def check_confidence(a: Answer) -> CheckResult:
        lp = a.logprobs
        if lp is not None and lp.tokens > 0 and math.isfinite(lp.mean):
            p = min(1.0, max(0.0, math.exp(min(0.0, lp.mean))))
            return CheckResult("confidence", p >= 0.5, p, f"token logprobs: mean {lp.mean:.3f} over {lp.tokens}")
        if a.tool_calls and (not a.text or a.text.isspace()):
            return _na("confidence", "tool calls only")
        p = (model or AnswerQuality.default()).try_score(_answer.features(a.analysis))
        if p is None:
            return _na("confidence", "answer-quality model unavailable")
        return CheckResult("confidence", p >= 0.5, p, "answer-quality model")

    return check_confidence


def parses_as(schema: Any, name: str = "parses_as") -> Check:
    """A hard check: the answer's text is JSON that *schema* accepts (a pydantic model class, or a
    JSON schema dict, see ``llmroute._jsonschema``)."""
    validate = getattr(schema, "model_validate_json", None)

    def check_parses_as(a: Answer) -> CheckResult:
        text = _strip_fence(a.text)
        if validate is not None:
            try:
                validate(text)
            except Exception as exc:  # pydantic's ValidationError, or a JSON error
                first = str(exc).splitlines()
                return _fail_hard(name, f"does not parse as {schema.__name__}: {' '.join(first[:3])}"[:200])
            return CheckResult(name, True, hard=True)
        try:
            value = json.loads(text)
        except ValueError as exc:
            return _fail_hard(name, f"not JSON: {exc}"[:200])
        err = first_error(value, schema)
        return _fail_hard(name, f"breaks the schema: {err}"[:200]) if err else CheckResult(name, True, hard=True)

    check_parses_as.__name__ = name
    return check_parses_as


#: The built-in checks by name.
BUILTIN_CHECKS: Mapping[str, Check] = {
    "non_empty": check_non_empty,
    "finished": check_finished,
    "not_refusal": check_not_refusal,
    "json": check_json,
    "tool_args": check_tool_args,
    "code": check_code,
    "code_parses": check_code_parses,
    "math": check_math,
    "choice": check_choice,
    "confidence": confidence(),
}


def resolve_checks(spec: Sequence[str | Check] | None) -> tuple[Check, ...]:
    """Check callables for *spec*: built-in names and callables, in order (``None``: the defaults).

    Raises ``ValueError`` naming an unknown check.
    """
    if spec is None:
        spec = DEFAULT_CHECKS
    out: list[Check] = []
    for item in spec:
        if isinstance(item, str):
            fn = BUILTIN_CHECKS.get(item)
            if fn is None:
                raise ValueError(f"unknown check {item!r}; built-in: {', '.join(BUILTIN_CHECKS)}")
            out.append(fn)
        elif callable(item):
            out.append(item)
        else:
            raise ValueError(f"a check is a built-in name or a callable, got {type(item).__name__}")
    return tuple(out)


def _name(fn: Any) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__).removeprefix("check_")


def result_of(fn: Any, value: Any) -> CheckResult:
    """A check's return value (``CheckResult | bool | float | None``) as a :class:`CheckResult`."""
    if isinstance(value, CheckResult):
        return value
    name = _name(fn)
    if value is None:
        return _na(name)
    if isinstance(value, bool):
        return CheckResult(name, True, hard=True) if value else _fail_hard(name, "rejected")
    if isinstance(value, (int, float)):
        x = float(value)
        if not math.isfinite(x):
            return _fail_hard(name, f"returned {value!r}")
        x = min(1.0, max(0.0, x))
        return CheckResult(name, x >= 0.5, x, f"score {x:.3f}")
    raise TypeError(f"check {name!r} returned {type(value).__name__}; want CheckResult, bool, float or None")


def combine(results: Sequence[CheckResult]) -> Verdict:
    """Compose check results into a :class:`Verdict`: the score is the product of the applicable
    checks' scores (see the module docstring)."""
    score = 1.0
    for r in results:
        if r.passed is not None:
            s = r.score
            if not s >= 1.0:  # a score of 1 (or more) leaves the product as it is
                score *= s if s > 0.0 else 0.0  # NaN and negatives count as 0
    return Verdict(score, tuple(results))


class _Judging:
    """Collects check results in order; after a hard failure the rest are skipped."""

    __slots__ = ("dead", "results")

    def __init__(self) -> None:
        self.results: list[CheckResult] = []
        self.dead = False

    def skip(self, fn: Any) -> None:
        self.results.append(CheckResult(_name(fn), None, 1.0, "skipped: a hard check already failed"))

    def add(self, fn: Any, value: Any) -> None:
        res = value if type(value) is CheckResult else result_of(fn, value)
        self.results.append(res)
        if res.passed is False and res.score <= 0.0:
            self.dead = True

    def raised(self, fn: Any, exc: BaseException) -> None:
        self.add(fn, _fail_hard(_name(fn), f"check raised {type(exc).__name__}: {exc}"[:200]))


def judge(answer: Answer, checks: Sequence[str | Check] | None = None) -> Verdict:
    """Run *checks* (names or callables; default :data:`DEFAULT_CHECKS`) on *answer*, synchronously.

    A check that raises counts as a hard failure naming the exception; an async check raises
    ``TypeError`` here (use :func:`judge_async`, as a cascade does).
    """
    run = _Judging()
    for fn in resolve_checks(checks):
        if run.dead:
            run.skip(fn)
            continue
        try:
            value = fn(answer)
        except Exception as exc:
            run.raised(fn, exc)
            continue
        if type(value) is not CheckResult and inspect.isawaitable(value):
            if hasattr(value, "close"):
                value.close()
            raise TypeError(f"check {_name(fn)!r} is async: use judge_async() (as a cascade does), not judge()")
        run.add(fn, value)
    return combine(run.results)


async def judge_async(answer: Answer, checks: Sequence[str | Check] | None = None) -> Verdict:
    """Like :func:`judge`, awaiting the checks that are async (a cascade's user validators).

    Built-in checks run inline (microseconds); an async check runs in the caller's task, so bound
    it yourself if it may wait on I/O (a cascade's deadline covers it).
    """
    run = _Judging()
    for fn in resolve_checks(checks):
        if run.dead:
            run.skip(fn)
            continue
        try:
            value = fn(answer)
            if type(value) is not CheckResult and inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            run.raised(fn, exc)
            continue
        run.add(fn, value)
    return combine(run.results)
