"""Prices, costs, token estimates and the shipped tokenizer/price files."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from llmroute import Router
from llmroute.config import load_config
from llmroute.costs import Price, cost_usd, estimate_cost_usd, lookup_price
from llmroute.tokens import ENCODINGS, count_message_tokens, count_tokens, get_encoding
from llmroute.types import Usage

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_price_table.py"


def test_cost_uses_cached_rate_for_cached_input() -> None:
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cached_input_tokens=400_000)
    assert cost_usd(usage, price) == pytest.approx(600_000 * 2 / 1e6 + 400_000 * 0.5 / 1e6 + 500_000 * 8 / 1e6)
    assert cost_usd(usage, Price(2.0, 8.0)) == pytest.approx(2.0 + 4.0)  # no cached rate: full price
    assert estimate_cost_usd(1000, 100, price) == pytest.approx((1000 * 2 + 100 * 8) / 1e6)


def test_cache_writes_are_billed_at_the_table_cache_write_rate() -> None:
    sonnet = lookup_price("claude-sonnet-4-5")
    assert sonnet is not None
    # litellm 1.109.1: input 3, output 15, cache read 0.3, cache write (5-minute TTL) 3.75 USD per Mtok
    assert sonnet.price == Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = Usage(input_tokens=10_000, output_tokens=1_000, cached_input_tokens=4_000, cache_write_input_tokens=2_000)
    # 4,000 plain x 3 + 4,000 read x 0.3 + 2,000 written x 3.75 + 1,000 out x 15 = 35,700 USD per Mtok
    assert cost_usd(usage, sonnet.price) == pytest.approx(0.0357, rel=1e-12)
    # before, the written tokens were billed at the input rate: 0.75 USD per Mtok less on each of them
    plain = Usage(10_000, 1_000, 4_000)
    assert cost_usd(usage, sonnet.price) - cost_usd(plain, sonnet.price) == pytest.approx(2_000 * 0.75 / 1e6)


def test_config_price_with_cache_write() -> None:
    price = {"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75}
    cfg = load_config(
        {
            "providers": {"ant": {"api": "anthropic", "api_key": "sk-x"}},
            "models": {"m": {"deployments": [{"provider": "ant", "model": "my-claude", "price": price}]}},
        }
    )
    resolved = cfg.models["m"].deployments[0].price
    assert resolved is not None and resolved.to_price() == Price(3.0, 15.0, 0.3, 3.75)
    usage = Usage(10_000, 1_000, 4_000, 2_000)
    assert cost_usd(usage, resolved.to_price()) == pytest.approx(0.0357, rel=1e-12)  # same figure as the table's


def test_absent_cache_write_price_falls_back_to_the_input_rate() -> None:
    usage = Usage(1_000_000, 0, 0, 250_000)
    assert cost_usd(usage, Price(2.0, 8.0)) == pytest.approx(2.0)
    assert cost_usd(usage, Price(2.0, 8.0, cached_input=0.5)) == pytest.approx(2.0)  # reads do not price writes
    assert cost_usd(usage, Price(2.0, 8.0, cache_write=2.5)) == pytest.approx(750_000 * 2 / 1e6 + 250_000 * 2.5 / 1e6)
    # rows where litellm has no cache-write cost, or a zero one, load without a cache-write price
    for key in ("gpt-4o-mini", "zai/glm-4.6", "deepseek/deepseek-chat"):
        entry = lookup_price(key)
        assert entry is not None and entry.price.cache_write is None, key


def test_cache_reads_and_writes_are_clamped_to_the_input() -> None:
    price = Price(1.0, 0.0, cached_input=0.1, cache_write=1.25)
    # 100 input tokens: 70 written, then only 30 left for the 80 claimed reads
    assert cost_usd(Usage(100, 0, 80, 70), price) == pytest.approx((70 * 1.25 + 30 * 0.1) / 1e6)
    assert cost_usd(Usage(100, 0, 0, 500), price) == pytest.approx(100 * 1.25 / 1e6)
    assert cost_usd(Usage(100, 0, -5, -5), price) == pytest.approx(100 / 1e6)


def test_usage_keeps_positional_construction_and_adds_cache_writes() -> None:
    assert Usage(10, 2, 3) == Usage(input_tokens=10, output_tokens=2, cached_input_tokens=3, cache_write_input_tokens=0)
    total = Usage(10, 2, 3, 4) + Usage(20, 1, 0, 6)
    assert total == Usage(30, 3, 3, 10) and total.total_tokens == 33
    assert "cache_write_input_tokens=10" in repr(total)


def test_estimate_assumes_cache_writes_only_when_asked() -> None:
    sonnet = Price(3.0, 15.0, cached_input=0.3, cache_write=3.75)
    assert estimate_cost_usd(1000, 100, sonnet) == pytest.approx((1000 * 3 + 100 * 15) / 1e6)
    # every input token written: the estimate stays an upper bound of what the reply can cost
    est = estimate_cost_usd(1000, 100, sonnet, cache_write=True)
    assert est == pytest.approx((1000 * 3.75 + 100 * 15) / 1e6)
    assert est >= cost_usd(Usage(1000, 100, 0, 1000), sonnet) >= cost_usd(Usage(1000, 100, 500, 500), sonnet)
    # no cache-write price, or a cheaper one: never below the plain input rate
    assert estimate_cost_usd(1000, 100, Price(3.0, 15.0), cache_write=True) == pytest.approx(0.0045)
    assert estimate_cost_usd(1000, 100, Price(3.0, 15.0, cache_write=1.0), cache_write=True) == pytest.approx(0.0045)


def test_plan_estimates_cache_writes_for_requests_marked_cache_control() -> None:
    cfg = {
        "providers": {"ant": {"api": "anthropic", "api_key": "sk-x"}},
        "models": {
            "sonnet": {"deployments": [{"provider": "ant", "model": "claude-sonnet-4-5"}]},
            "mine": {"deployments": [{"provider": "ant", "model": "m", "price": {"input": 3, "output": 15}}]},
            "mine_w": {
                "deployments": [
                    {"provider": "ant", "model": "w", "price": {"input": 3, "output": 15, "cache_write": 4.5}}
                ]
            },
        },
        "routes": {"default": {"models": ["sonnet", "mine", "mine_w"]}},
    }
    router = Router(cfg)
    text = "a long shared prefix " * 50
    plain = router.plan([{"role": "user", "content": text}], max_tokens=100).trace
    marked = [{"role": "user", "content": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]}]
    cached = router.plan(marked, max_tokens=100).trace
    n_in = plain.est_input_tokens
    assert cached.est_input_tokens == n_in
    by_model = {c.model: c.est_cost_usd for c in plain.candidates}
    assert by_model == pytest.approx({m: (n_in * 3 + 1500) / 1e6 for m in ("sonnet", "mine", "mine_w")})
    by_model = {c.model: c.est_cost_usd for c in cached.candidates}
    # the table price's cache-write rate (3.75), the config's (4.5), and none: the input rate stands
    assert by_model == pytest.approx(
        {"sonnet": (n_in * 3.75 + 1500) / 1e6, "mine": (n_in * 3 + 1500) / 1e6, "mine_w": (n_in * 4.5 + 1500) / 1e6}
    )
    # a cache_control mark anywhere in the body counts, extra_body included
    system = [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]
    extra = router.plan("hi", max_tokens=100, extra_body={"system": system}).trace
    assert extra.candidates[0].est_cost_usd == pytest.approx((extra.est_input_tokens * 3.75 + 1500) / 1e6)


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


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_price_table", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_price_table_builder_appends_the_cache_write_column() -> None:
    build = _build_script()
    table = (
        b"model,provider,input_usd_per_mtok,cache_read_usd_per_mtok\na,x,3.0,0.3\nb,y,1e-05,\nc,z,0.6,0.11\nd,z,0.1,\n"
    )
    prices = {
        "a": {"cache_creation_input_token_cost": 3.75e-06},
        "b": {"cache_creation_input_token_cost": 1.1e-11},
        "c": {"cache_creation_input_token_cost": 0},  # litellm's zero: no separate write price
        "d": {},
    }
    assert build.build_table(table, prices) == (
        b"model,provider,input_usd_per_mtok,cache_read_usd_per_mtok,cache_write_usd_per_mtok\n"
        b"a,x,3.0,0.3,3.75\n"
        b"b,y,1e-05,,1.1e-05\n"
        b"c,z,0.6,0.11,\n"
        b"d,z,0.1,,\n"
    )
    with pytest.raises(ValueError, match="'e' is not in"):
        build.build_table(table + b"e,z,1.0,\n", prices)
    data = build.gzip_bytes(b"x")
    assert data == build.gzip_bytes(b"x") and data[3] == 0 and data[4:8] == b"\0\0\0\0"  # no name, mtime 0


def test_price_table_builder_fails_clearly_without_the_shared_data(tmp_path: Path) -> None:
    out = tmp_path / "table.csv.gz"
    cmd = [sys.executable, str(BUILD_SCRIPT), "--shared", str(tmp_path / "shared"), "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode != 0 and "shared pricing data not found" in run.stderr
    assert not out.exists()


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside this checkout")
def test_shipped_files_are_the_published_ones() -> None:
    pkg = Path(__file__).resolve().parents[1] / "llmroute" / "_data"
    manifest = json.loads((SHARED / "pricing" / "manifest.json").read_text())
    shipped = (pkg / "prices" / "litellm_chat_prices.csv.gz").read_bytes()
    table = gzip.decompress(shipped)
    # the published CSV, byte for byte, plus one appended column
    published = b"".join(line.rpartition(b",")[0] + b"\n" for line in table.splitlines())
    assert hashlib.sha256(published).hexdigest() == manifest["files"]["litellm_chat_prices.csv"]
    # exactly what scripts/build_price_table.py makes of the shared data now
    assert table == gzip.decompress(_build_script().build(SHARED / "pricing"))
    assert shipped[3] == 0 and shipped[4:8] == b"\0\0\0\0"  # gzip -n: no file name, mtime 0
    for name in ("cl100k_base", "o200k_base"):
        shipped = (pkg / "tokenizers" / f"{name}.tiktoken").read_bytes()
        assert shipped == (SHARED / "tokenizers" / f"{name}.tiktoken").read_bytes()
