"""The cascade's answer checks: each built-in check, their composition, user checks, and the text
analysis behind them (arithmetic, final answers, choices, tells), including hostile input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydantic
import pytest

from llmroute import _answer
from llmroute.checks import (
    DEFAULT_CHECKS,
    SOFT_PENALTY,
    Answer,
    CheckResult,
    combine,
    confidence,
    judge,
    parses_as,
    resolve_checks,
)
from llmroute.quality import AnswerQuality
from llmroute.types import TokenLogprobs, ToolCall

GSM_Q = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
    "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per "
    "fresh duck egg. How much in dollars does she make every day at the farmers' market?"
)
GSM_RIGHT = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n#### 18"
)
GSM_WRONG_ARITH = "Janet sells 16 - 3 - 4 = 10 duck eggs a day.\nShe makes 10 * 2 = $20 every day.\n#### 20"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


def by_name(verdict, name):
    return next(r for r in verdict.results if r.name == name)


# ------------------------------------------------------------------------------- built-in checks


def test_a_clean_worked_answer_passes_every_check_that_applies() -> None:
    v = judge(Answer(GSM_RIGHT, prompt=GSM_Q, finish_reason="stop"))
    assert v.passed and v.failed == ()
    assert by_name(v, "math").passed is True
    assert by_name(v, "json").passed is None and by_name(v, "tool_args").passed is None
    assert 0.0 < v.score < 1.0  # the confidence is a probability
    assert v.score == pytest.approx(by_name(v, "confidence").score)


@pytest.mark.parametrize(
    ("answer", "failed"),
    [
        (Answer("   ", finish_reason="stop"), "non_empty"),
        (Answer("The answer is", finish_reason="length"), "finished"),
        (Answer("", finish_reason="content_filter"), "non_empty"),
        (Answer("I'm sorry, but I can't help with that request."), "not_refusal"),
        (Answer("As an AI language model, I cannot provide that."), "not_refusal"),
        (Answer("not json at all", response_format={"type": "json_object"}), "json"),
        (Answer("[1, 2]", response_format={"type": "json_object"}), "json"),
        (Answer("```python\ndef f(:\n    return 1\n```"), "code"),
    ],
)
def test_each_hard_check_rejects_outright(answer: Answer, failed: str) -> None:
    v = judge(answer)
    assert failed in v.failed
    assert v.score == 0.0
    assert not v.accepts(0.01)
    # everything after the hard failure was skipped, and says so
    after = v.results[[r.name for r in v.results].index(failed) + 1 :]
    assert all(r.passed is None and "skipped" in r.detail for r in after)


def test_wrong_arithmetic_fails_the_math_check_softly() -> None:
    good = judge(Answer(GSM_RIGHT, prompt=GSM_Q))
    bad = judge(Answer(GSM_WRONG_ARITH, prompt=GSM_Q))
    math_check = by_name(bad, "math")
    assert math_check.passed is False and not math_check.hard
    assert math_check.score == SOFT_PENALTY
    assert "1 of 2 equations" in math_check.detail
    assert 0.0 < bad.score < good.score


def test_a_maths_question_without_a_final_answer_fails_the_math_check() -> None:
    v = judge(Answer("First 16 - 3 = 13, then 13 - 4 = 9 and", prompt=GSM_Q))
    assert by_name(v, "math").passed is False
    assert "no final answer" in by_name(v, "math").detail


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("The answer is (B).", True),
        ("\\boxed{C}", True),
        ("Answer: D", True),
        ("B", True),
        ("I think it is probably one of them.", False),
        ("The answer is (B).\nActually, the answer is (C).", False),
    ],
)
def test_choice_check_wants_exactly_one_option(text: str, ok: bool) -> None:
    q = "Which gas do plants absorb?\nA) oxygen\nB) carbon dioxide\nC) nitrogen\nD) helium"
    v = judge(Answer(text, prompt=q), ["choice"])
    assert by_name(v, "choice").passed is ok
    assert v.score == (1.0 if ok else SOFT_PENALTY)


def test_json_schema_response_format_is_validated() -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "person",
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
                "required": ["name", "age"],
            },
        },
    }
    assert judge(Answer('{"name": "Ada", "age": 36}', response_format=fmt)).passed
    assert judge(Answer('```json\n{"name": "Ada", "age": 36}\n```', response_format=fmt)).passed
    bad = judge(Answer('{"name": "Ada", "age": -1}', response_format=fmt))
    assert bad.failed == ("json",) and "minimum" in by_name(bad, "json").detail
    missing = judge(Answer('{"name": "Ada"}', response_format=fmt))
    assert "age is required" in by_name(missing, "json").detail


@pytest.mark.parametrize(
    ("calls", "choice", "ok", "why"),
    [
        ([ToolCall("c1", "get_weather", '{"city": "Paris"}')], None, True, ""),
        ([ToolCall("c1", "get_weather", '{"city": "Paris", "unit": "k"}')], None, False, "unit should be one of"),
        ([ToolCall("c1", "get_weather", '{"town": "Paris"}')], None, False, "city is required"),
        ([ToolCall("c1", "get_wether", '{"city": "Paris"}')], None, False, "unknown tool"),
        ([ToolCall("c1", "get_weather", '{"city": ')], None, False, "not JSON"),
        ([ToolCall("c1", "get_weather", "[1]")], None, False, "not a JSON object"),
        ([], "required", False, "required"),
        ([], {"type": "function", "function": {"name": "get_weather"}}, False, "required"),
    ],
)
def test_tool_calls_must_name_real_tools_with_valid_arguments(calls, choice, ok, why) -> None:
    v = judge(Answer("", tool_calls=calls, tools=TOOLS, tool_choice=choice), ["non_empty", "tool_args"])
    res = by_name(v, "tool_args")
    if not calls and choice is not None:
        assert "non_empty" in v.failed  # nothing at all came back
        v = judge(Answer("It is sunny.", tools=TOOLS, tool_choice=choice), ["tool_args"])
        res = by_name(v, "tool_args")
    assert res.passed is ok
    assert why in res.detail


def test_confidence_uses_logprobs_when_present() -> None:
    sure = Answer("Paris.", logprobs=TokenLogprobs(3, -0.01, -0.02))
    unsure = Answer("Paris.", logprobs=TokenLogprobs(3, -1.5, -3.0))
    a, b = judge(sure, ["confidence"]), judge(unsure, ["confidence"])
    assert "logprobs" in a.results[0].detail
    assert a.score == pytest.approx(0.99005, rel=1e-4)
    assert b.score < 0.25 < a.score


def test_confidence_falls_back_to_the_answer_quality_model() -> None:
    v = judge(Answer(GSM_RIGHT, prompt=GSM_Q), ["confidence"])
    assert v.results[0].detail == "answer-quality model"
    long_hedged = "Hmm, maybe. " + "Wait, let me re-evaluate this; I made a mistake. " * 30 + "Perhaps 7?"
    worse = judge(Answer(long_hedged, prompt=GSM_Q), ["confidence"])
    assert worse.score < v.score


def test_confidence_without_the_model_does_not_apply(tmp_path: Path) -> None:
    (tmp_path / "answer_quality.onnx").write_bytes(b"garbage")
    (tmp_path / "answer_quality.json").write_text(json.dumps({"onnx_sha256": "0" * 64}))
    broken = AnswerQuality(tmp_path / "answer_quality.onnx")
    v = judge(Answer("42"), [confidence(broken)])
    assert v.results[0].passed is None and "unavailable" in v.results[0].detail
    assert v.score == 1.0


def test_the_shipped_model_matches_its_sidecar_and_features() -> None:
    model = AnswerQuality.default()
    meta = model.metadata
    assert list(meta["features"]["names"]) == list(_answer.FEATURE_NAMES)
    p = model.score(_answer.features(_answer.analyse(GSM_RIGHT, GSM_Q)))
    assert 0.0 < p < 1.0


# ---------------------------------------------------------------------------------- composition


def test_user_checks_may_return_bool_float_none_or_a_result() -> None:
    def says_yes(a: Answer) -> bool:
        return True

    def likes_short(a: Answer) -> float:
        return 0.25 if len(a.text) > 5 else 1.0

    def abstains(a: Answer) -> None:
        return None

    def explains(a: Answer) -> CheckResult:
        return CheckResult("explains", False, 0.5, "no citation")

    v = judge(Answer("a long answer"), [says_yes, likes_short, abstains, explains])
    assert [r.passed for r in v.results] == [True, False, None, False]
    assert v.score == pytest.approx(0.25 * 0.5)
    assert v.failed == ("likes_short", "explains")


def test_a_check_that_raises_is_a_hard_failure_and_nan_is_rejected() -> None:
    def boom(a: Answer) -> bool:
        raise RuntimeError("validator broke")

    def nan(a: Answer) -> float:
        return float("nan")

    v = judge(Answer("x"), [boom])
    assert v.score == 0.0 and "RuntimeError" in v.results[0].detail
    assert judge(Answer("x"), [nan]).score == 0.0


def test_async_checks_are_refused_by_the_sync_judge() -> None:
    async def later(a: Answer) -> bool:
        return True

    with pytest.raises(TypeError, match="async"):
        judge(Answer("x"), [later])


def test_unknown_check_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown check 'spellcheck'"):
        resolve_checks(["finished", "spellcheck"])
    assert len(resolve_checks(None)) == len(DEFAULT_CHECKS)


def test_parses_as_accepts_a_pydantic_model_or_a_schema() -> None:
    class Person(pydantic.BaseModel):
        name: str
        age: int

    check = parses_as(Person)
    assert judge(Answer('{"name": "Ada", "age": 36}'), [check]).passed
    v = judge(Answer('{"name": "Ada", "age": "old"}'), [check])
    assert v.score == 0.0 and "Person" in v.results[0].detail
    schema_check = parses_as({"type": "array", "items": {"type": "number"}}, name="numbers")
    assert judge(Answer("[1, 2.5]"), [schema_check]).passed
    assert judge(Answer('[1, "2"]'), [schema_check]).failed == ("numbers",)


def test_combine_multiplies_applicable_scores_only() -> None:
    v = combine([CheckResult("a", None, 0.0), CheckResult("b", True, 0.8), CheckResult("c", False, 0.5)])
    assert v.score == pytest.approx(0.4)
    assert v.as_dict()["results"][2]["name"] == "c"


# -------------------------------------------------------------------------------- text analysis


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("16 - 3 - 4", 9.0),
        ("2(3 + 4)", 14.0),
        ("20% * 50", 10.0),
        ("-3 + 5", 2.0),
        (".5 * 4", 2.0),
        ("2^10", 1024.0),
        ("10 / 0", None),
        ("9^99", None),
        ("(1 + 2", None),
        ("__import__('os')", None),
        ("1" * 300, None),
    ],
)
def test_eval_arithmetic_is_a_small_safe_parser(expr: str, value: float | None) -> None:
    assert _answer.eval_arithmetic(expr) == value


@pytest.mark.parametrize(
    ("text", "checked", "wrong"),
    [
        ("So 48/2 = 24 clips in May.", 1, 0),
        ("So 48/2 = 25 clips in May.", 1, 1),
        ("$1,200 + $300 = $1,500 in total", 1, 0),
        ("\\[ 388 \\times 1359 = 527,622 \\]", 1, 1),
        ("\\frac{3}{4} \\cdot 8 = 6", 1, 0),
        ("x = 21.90 / 0.28 = 78.21", 1, 0),  # rounding to the decimals written is fine
        ("10 / 3 = 3.33", 1, 0),
        ("2x + 3 = 7", 0, 0),  # a variable: not plain arithmetic
        ("x - 3 + 4 = 8", 0, 0),
        ("f(3 + 4) = 8", 0, 0),
        ("2^{x+1}+6 = 2 \\cdot 2^x + 6", 0, 0),
        ("T' = T - R = 406 - 132 = 274", 1, 0),
        ("5 + 3 = 8 = 9", 1, 0),  # two bare numbers are not compared (units may have been dropped)
        ("5 + 3 = 9 = 8", 1, 1),
    ],
)
def test_arithmetic_consistency(text: str, checked: int, wrong: int) -> None:
    a = _answer.analyse(text)
    assert (a.equations, a.equations_wrong) == (checked, wrong)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("... so she makes $18.\n#### 18", "hash", 18.0),
        ("Thus the total is \\(\\boxed{1,500}\\).", "boxed", 1500.0),
        ('{"reasoning": "...", "answer": "42"}', "json", 42.0),
        ("The final answer is: $\\boxed{-15}$", "boxed", -15.0),
        ("Wait, that was wrong. The answer is 7, not 5.", "stated", 7.0),
        ("Answer: 3/4", "stated", 0.75),
        ("Adding them up, in total there are 45 apples.", "conclusion", 45.0),
        ("I do not know.", None, None),
    ],
)
def test_final_answer_extraction(text: str, kind: str | None, value: float | None) -> None:
    a = _answer.analyse(text)
    assert a.final_kind == kind
    assert a.final_value == value


def test_tells_and_question_features() -> None:
    a = _answer.analyse("Wait, I made a mistake. Maybe it is approximately 7. None of the options match.", GSM_Q)
    assert a.correction >= 2 and a.uncertain >= 1 and a.approx >= 1 and a.impossible >= 1
    q = _answer.question("Pick one: (A) red (B) blue (C) green")
    assert q.options == "ABC"
    assert _answer.question(GSM_Q).numbers == {16.0, 2.0}  # "three" and "four" are words
    f = _answer.features(a)
    assert len(f) == len(_answer.FEATURE_NAMES)


# Pinned from the implementation before the speed work (the fast paths must decide the same):
# LaTeX operators made by deleting another one, doubled backslashes, \frac, "3 x 4", thousands.
@pytest.mark.parametrize(
    ("text", "normalised", "arithmetic"),
    [
        ("\\ri\\leftght = 2", " = 2", (0, 0, None)),
        ("\\\\(3 \\times 4\\) = 12", " 3 * 4  = 12", (1, 0, 12.0)),
        ("\\[ \\frac{3}{4} \\times 48 = 36 \\]", "  (3)/(4) * 48 = 36  ", (1, 0, 36.0)),
        ("3 x 4 = 12 and 3x 4", "3*4 = 12 and 3*4", (1, 0, 12.0)),
        ("1,234,567 + 1,000 = 1,235,567", "1234567 + 1000 = 1235567", (1, 0, 1235567.0)),
        ("$2 \\cdot 9 = $18", "2 * 9 = 18", (1, 0, 18.0)),
        ("12 × 3 − 6 = 30", "12 * 3 - 6 = 30", (1, 0, 30.0)),
        ("**Total**: 5 + 5 = 10", " Total : 5 + 5 = 10", (1, 0, 10.0)),
    ],
)
def test_maths_normalisation_and_arithmetic(text: str, normalised: str, arithmetic: tuple) -> None:
    assert _answer._normalise_maths(text) == normalised
    assert _answer._check_arithmetic(normalised) == arithmetic


@pytest.mark.parametrize(
    ("side", "value"),
    [
        ("(3)/(4) * 48", (36.0, None, True)),
        ("1 / 0^-0", (1.0, None, True)),  # the 0 is a base, not a divisor
        ("2(3)", (6.0, None, False)),
        ("(3)", (3.0, None, False)),
        ("-(2)^2", (4.0, None, True)),
        ("10 / (4)%", (250.0, None, True)),
        ("(2.5)*(4) - 1", (9.0, None, True)),
        ("12 / 0", None),
        (".", None),
    ],
)
def test_sides_of_an_equation(side: str, value: tuple | None) -> None:
    assert _answer._side(_answer._TOKEN.findall(side)) == value


@pytest.mark.parametrize(
    "text",
    [
        "plain words, and punctuation: here.",
        "it’s typographic — “quoted” … and café",
        "a\xa0non-breaking\u2009thin\u3000ideographic space",
        "separators\x1cfile\x1dgroup\x1erecord\x1funit",
        "a lone surrogate \ud800 survives",
    ],
)
def test_words_are_counted_as_str_split_counts_them(text: str) -> None:
    punct = str.maketrans({c: " " for c in '!"#$%&()*+,./:;<=>?@[\\]^_`{|}~\n\t\r'})
    assert _answer.analyse(text).words == len(text.lower().translate(punct).split())


@pytest.mark.parametrize(
    ("text", "prompt"),
    [
        ("Total . = 3 + 4 = 7", "What is 3 + 4?"),  # a side that is a lone "."
        ("It is 5 more than that number.", "What is " + "9" * 400 + " plus 5?"),  # past float range
    ],
)
def test_odd_sides_and_huge_numbers_do_not_break_the_analysis(text: str, prompt: str) -> None:
    v = judge(Answer(text, prompt=prompt))
    assert not any("raised" in r.detail for r in v.results), v.results
    assert v.score > 0.0


def test_hostile_answers_stay_bounded() -> None:
    huge = ("12 + 30 = 42. " * 50_000) + "x" * 5_000_000  # ~5.7 MB
    nested = "(" * 5000 + "1" + ")" * 5000 + " = 1"
    t0 = time.perf_counter()
    for text in (huge, nested, "\x00\ufffd" * 10_000, "=" * 100_000, "{" * 100_000):
        v = judge(Answer(text, prompt=text[:100_000]))
        assert 0.0 <= v.score <= 1.0
    assert time.perf_counter() - t0 < 2.0
    assert judge(Answer(None)).failed == ("non_empty",)
