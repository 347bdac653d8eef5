"""Prices, costs, token estimates and the shipped tokenizer/price files."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmroute.costs import Price, cost_usd, estimate_cost_usd, lookup_price
from llmroute.tokens import ENCODINGS, count_message_tokens, count_tokens, get_encoding
from llmroute.types import Usage

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_cost_uses_cached_rate_for_cached_input() -> None:
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cached_input_tokens=400_000)
    assert cost_usd(usage, price) == pytest.approx(600_000 * 2 / 1e6 + 400_000 * 0.5 / 1e6 + 500_000 * 8 / 1e6)
    assert cost_usd(usage, Price(2.0, 8.0)) == pytest.approx(2.0 + 4.0)  # no cached rate: full price
    assert estimate_cost_usd(1000, 100, price) == pytest.approx((1000 * 2 + 100 * 8) / 1e6)


def test_price_table_lookup_by_model_and_provider_key() -> None:
    mini = lookup_price("gpt-4o-mini")
    assert mini is not None and mini.price == Price(0.15, 0.6, 0.075) and mini.max_input_tokens == 128000
    qwen = lookup_price("deepinfra/Qwen/Qwen3-32B")
    assert qwen is not None and qwen.provider == "deepinfra"
    assert lookup_price("no-such-model-anywhere") is None


def test_shipped_encodings_match_tiktoken_reference_ids() -> None:
    assert get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert get_encoding("o200k_base").n_vocab == 200019
    assert set(ENCODINGS) == {"o200k_base", "cl100k_base"}
    with pytest.raises(ValueError, match="unknown tokenizer"):
        get_encoding("gpt2")


def test_token_estimates() -> None:
    assert count_tokens("") == 0
    assert count_tokens("<|endoftext|>") > 1  # special tokens are plain text here
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hello world"}, {"type": "image_url"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
    ]
    n = count_message_tokens(msgs)
    assert n > count_tokens("Be brief.") + count_tokens("hello world")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert count_message_tokens(msgs, tools=tools) > n


def test_tokenizer_loads_without_network_or_cache_dir(tmp_path: Path) -> None:
    code = (
        "import socket\n"
        "def no_net(*a, **k): raise RuntimeError('network used')\n"
        "socket.socket.connect = no_net\n"
        "socket.create_connection = no_net\n"
        "from llmroute.tokens import get_encoding\n"
        "print(get_encoding('o200k_base').encode('hi there'))\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "cache"), "DATA_GYM_CACHE_DIR": str(tmp_path / "dg")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().startswith("[")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "dg").exists()


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside this checkout")
def test_shipped_files_are_the_published_ones() -> None:
    pkg = Path(__file__).resolve().parents[1] / "llmroute" / "_data"
    manifest = json.loads((SHARED / "pricing" / "manifest.json").read_text())
    table = gzip.decompress((pkg / "prices" / "litellm_chat_prices.csv.gz").read_bytes())
    assert hashlib.sha256(table).hexdigest() == manifest["files"]["litellm_chat_prices.csv"]
    for name in ("cl100k_base", "o200k_base"):
        shipped = (pkg / "tokenizers" / f"{name}.tiktoken").read_bytes()
        assert shipped == (SHARED / "tokenizers" / f"{name}.tiktoken").read_bytes()
