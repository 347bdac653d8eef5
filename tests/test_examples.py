"""The README's demo and the quick start example run, offline, as a newcomer would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout


def test_demo_routes_every_prompt() -> None:
    out = run("demo.py", "--quiet")
    assert "calls: 36   answered: 36   failed: 0" in out
    assert "calls that fell back: 0" not in out  # the scripted faults really caused fallbacks


def test_quickstart_falls_back_and_streams() -> None:
    out = run("quickstart.py")
    assert "answered by large @ anthropic" in out
    assert "attempt 2 on openai/gpt-4o-mini: error 503" in out
