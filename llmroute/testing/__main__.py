"""``python -m llmroute.testing [--host H] [--port N] [--spec fleet.json]``: run a fake fleet.

Prints one JSON line ``{"port": ..., "providers": {name: base_url}}`` on stdout when it listens,
then serves until SIGINT or SIGTERM, and then prints one more JSON line: what each provider
received, served and would bill, ``{"providers": {name: {"calls", "served", "billed_input_tokens",
"billed_output_tokens"}}}``. Without ``--spec``: one zero-latency provider per api,
named ``openai``, ``anthropic`` and ``gemini``. ``--spec`` is a JSON list of
:class:`~llmroute.testing.FakeProvider` keyword arguments (``name`` and ``api`` included).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .fleet import FakeProvider, Fleet

_KNOBS = {
    "name",
    "api",
    "api_key",
    "ttft_s",
    "tokens_per_s",
    "reply",
    "output_tokens",
    "context_window",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "models",
    "error_rate",
    "fault_mix",
    "seed",
    "record_requests",
    "thought_signatures",
    "response_headers",
    "output_tokens_max",
}


def _providers(spec: Any) -> list[FakeProvider]:
    if not isinstance(spec, list) or not all(isinstance(item, dict) for item in spec):
        raise SystemExit("--spec must hold a JSON list of objects (FakeProvider keyword arguments)")
    out = []
    for item in spec:
        unknown = set(item) - _KNOBS
        if unknown:
            raise SystemExit(f"--spec: unknown FakeProvider argument(s) {sorted(unknown)}")
        if "reply" in item and not isinstance(item["reply"], str):
            raise SystemExit("--spec: reply must be a string")
        kw = dict(item)
        name = kw.pop("name")
        out.append(FakeProvider(name, **kw))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run a fleet in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m llmroute.testing", description="Serve fake LLM providers on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free port)")
    parser.add_argument("--spec", help="JSON file: a list of FakeProvider keyword arguments")
    parser.add_argument("--no-record", action="store_true", help="do not keep received requests in memory")
    args = parser.parse_args(argv)
    if args.spec:
        with open(args.spec, encoding="utf-8") as f:
            providers = _providers(json.load(f))
        fleet = Fleet(providers, host=args.host, port=args.port)
    else:
        fleet = Fleet.default(host=args.host, port=args.port)
    if args.no_record:
        for p in fleet:
            p.record_requests = False
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with fleet:
        print(json.dumps({"port": fleet.port, "providers": fleet.base_urls()}), flush=True)
        while not done.wait(0.5):
            pass
    report = {
        p.name: {
            "calls": p.calls,
            "served": p.served,
            "billed_input_tokens": p.billed_input_tokens,
            "billed_output_tokens": p.billed_output_tokens,
        }
        for p in fleet
    }
    print(json.dumps({"providers": report}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
