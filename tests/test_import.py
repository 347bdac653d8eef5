"""``import llmroute`` is light: no onnxruntime, no tokenizer, no framework."""

from __future__ import annotations

import subprocess
import sys

import llmroute


def test_import_loads_no_heavy_modules() -> None:
    code = (
        "import sys, llmroute; "
        "heavy = [m for m in ('onnxruntime', 'tiktoken', 'numpy', 'llmroute.predictor') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_reaching_the_router_and_telemetry_loads_no_heavy_modules() -> None:
    code = (
        "import sys, llmroute, llmroute.telemetry; llmroute.Router; "
        "heavy = ('onnxruntime', 'tiktoken', 'numpy', 'llmroute.predictor', 'opentelemetry', "
        "'openai', 'langchain_core', 'pydantic_ai', 'agents', 'litellm'); "
        "print(','.join(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve_and_have_docstrings() -> None:
    for name in llmroute.__all__:
        if name == "__version__":
            continue
        obj = getattr(llmroute, name)
        if name == "Message":
            continue
        assert obj.__doc__, name


def test_py_typed_is_shipped() -> None:
    from pathlib import Path

    assert (Path(llmroute.__file__).parent / "py.typed").exists()
