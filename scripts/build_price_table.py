"""Rebuild the shipped price table ``llmroute/_data/prices/litellm_chat_prices.csv.gz``.

Reads, in place and read-only, the project's shared pricing data beside this checkout
(``../shared/data/pricing``): ``litellm_chat_prices.csv`` (3,500 chat rows flattened from litellm
1.109.1's price table) and ``litellm_model_prices.json.gz`` (that table itself, keyed by the CSV's
``model`` column). Both are checked against ``manifest.json`` first.

Every existing column is kept byte for byte; one column is appended at the end:
``cache_write_usd_per_mtok``, litellm's ``cache_creation_input_token_cost`` x 1e6 (USD per million
prompt-cache write tokens, 5-minute TTL), formatted like ``cache_read_usd_per_mtok``
(``repr(round(x * 1e6, 6))``). It is empty when litellm gives no cost *or a zero cost*: a zero
there marks providers with no separate cache-write charge, and an empty cell makes llmroute bill
such writes at the input rate, so a budget never under-counts them.

The output is gzip level 9 with mtime 0 and no file name, so the same inputs give the same bytes
(with the same zlib). Run from the repository root::

    python scripts/build_price_table.py

Exits non-zero with a message when the shared data is missing or does not match its manifest.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The shared pricing data, read in place.
SHARED = ROOT.parent / "shared" / "data" / "pricing"
#: The shipped table this script writes.
OUT = ROOT / "llmroute" / "_data" / "prices" / "litellm_chat_prices.csv.gz"
CSV_NAME = "litellm_chat_prices.csv"
JSON_NAME = "litellm_model_prices.json.gz"
#: The appended column.
COLUMN = "cache_write_usd_per_mtok"


def _per_mtok(cost: Any) -> str:
    """litellm's USD-per-token *cost* as the CSV writes prices: USD per million tokens, or empty."""
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost <= 0:
        return ""
    return repr(round(float(cost) * 1_000_000, 6))


def build_table(table_csv: bytes, prices: Mapping[str, Any]) -> bytes:
    """*table_csv* with the ``cache_write_usd_per_mtok`` column appended from litellm's *prices*.

    Lines are copied as they are and only gain ``,<value>``; the CSV must be plain (LF line ends,
    no quoted fields) and every model must be in *prices*, else ValueError.
    """
    text = table_csv.decode("utf-8")
    if not text.endswith("\n") or "\r" in text or '"' in text:
        raise ValueError(f"{CSV_NAME}: expected plain LF-terminated lines without quoting")
    lines = text[:-1].split("\n")
    header = next(csv.reader([lines[0]]))
    if COLUMN in header:
        raise ValueError(f"{CSV_NAME} already has a {COLUMN} column")
    model_at = header.index("model")
    out = [f"{lines[0]},{COLUMN}"]
    for n, line in enumerate(lines[1:], start=2):
        row = next(csv.reader([line]))
        if len(row) != len(header):
            raise ValueError(f"{CSV_NAME} line {n}: {len(row)} fields, the header has {len(header)}")
        entry = prices.get(row[model_at])
        if not isinstance(entry, Mapping):
            raise ValueError(f"{CSV_NAME} line {n}: {row[model_at]!r} is not in {JSON_NAME}")
        out.append(f"{line},{_per_mtok(entry.get('cache_creation_input_token_cost'))}")
    return ("\n".join(out) + "\n").encode("utf-8")


def gzip_bytes(data: bytes) -> bytes:
    """*data* gzipped deterministically: level 9, mtime 0, no file name."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def _checked(path: Path, manifest: Mapping[str, Any]) -> bytes:
    data = path.read_bytes()
    want = manifest.get("files", {}).get(path.name)
    got = hashlib.sha256(data).hexdigest()
    if want != got:
        raise SystemExit(f"{path}: sha256 {got} does not match manifest.json ({want})")
    return data


def build(shared: Path = SHARED) -> bytes:
    """The gzipped table from the shared data in *shared*; SystemExit with a message if it is unusable."""
    if not shared.is_dir():
        raise SystemExit(
            f"shared pricing data not found at {shared}: this script reads ../shared/data/pricing beside "
            "the checkout (litellm_chat_prices.csv, litellm_model_prices.json.gz, manifest.json)"
        )
    try:
        manifest = json.loads((shared / "manifest.json").read_text(encoding="utf-8"))
        table_csv = _checked(shared / CSV_NAME, manifest)
        prices = json.loads(gzip.decompress(_checked(shared / JSON_NAME, manifest)))
    except OSError as exc:
        raise SystemExit(f"cannot read the shared pricing data: {exc}") from None
    try:
        return gzip_bytes(build_table(table_csv, prices))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """Write the table (default: the shipped file) and print what was written."""
    parser = argparse.ArgumentParser(description="Rebuild llmroute's shipped price table from ../shared.")
    parser.add_argument("--shared", type=Path, default=SHARED, help=f"shared pricing folder (default {SHARED})")
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write (default {OUT})")
    args = parser.parse_args(argv)
    data = build(args.shared)
    args.out.write_bytes(data)
    table = gzip.decompress(data)
    rows = table.splitlines()[1:]
    filled = sum(1 for line in rows if not line.endswith(b","))
    digest = hashlib.sha256(table).hexdigest()
    print(f"wrote {args.out}: {len(data)} bytes, {len(rows)} rows, {filled} with {COLUMN}, CSV sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
