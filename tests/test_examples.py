"""The README's demo, the quick start and the framework examples run, offline, as a newcomer would run them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout


def test_demo_routes_every_prompt() -> None:
    full = run("demo.py")
    assert "cascade tier 1 (gpt-4o-mini): escalated" in full and "hedge: no first token" in full
    out = run("demo.py", "--quiet")
    assert "calls: 40   answered: 40   failed: 0" in out
    assert "daily budget: $" in out
    assert "calls that fell back: 0" not in out  # the scripted faults really caused fallbacks


def test_quickstart_falls_back_and_streams() -> None:
    out = run("quickstart.py")
    assert "answered by large @ anthropic" in out
    assert "attempt 2 on openai/gpt-4o-mini: error 503" in out


@pytest.mark.parametrize(
    ("script", "needs", "expected"),
    [
        ("openai_sdk.py", "openai", "It is sunny, 21 C in Paris."),
        ("pydantic_ai_agent.py", "pydantic_ai", "city='Paris' summary='It is sunny, 21 C in Paris.'"),
        ("langchain_agent.py", "langchain", "It is sunny, 21 C in Paris."),
        ("openai_agents_agent.py", "agents", "It is sunny, 21 C in Paris."),
        ("litellm_completion.py", "litellm", "Hello from the fake fleet. (streamed, $"),
    ],
)
def test_framework_examples_answer_through_a_fallback(script: str, needs: str, expected: str) -> None:
    if importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed: pip install -e '.[integrations]' (Python 3.11+)")
    out = run(script)
    assert expected in out
    assert "backup/gpt-4o-mini after 2 attempt(s)" in out  # the scripted 503 on the first deployment
