"""The ``llmroute`` command: ``llmroute eval ...`` and ``llmroute calibrate ...``.

Each subcommand is also a module: ``python -m llmroute.eval`` and
``python -m llmroute.calibration`` take the same arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_USAGE = """usage: llmroute {eval,calibrate} [args...]

  eval        score the predictor as a router on labelled data (APGR, CPT50, CPT80)
  calibrate   pick a route's threshold or fit a new model's vector on your own prompts

Run `llmroute <command> --help` for a command's arguments."""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "eval":
        from .eval import main as run
    elif command == "calibrate":
        from .calibration import main as run
    else:
        print(f"llmroute: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
