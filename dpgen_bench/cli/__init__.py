"""``dpgen-bench`` command line. Each sub-command lives in its own module exposing ``register(subparsers)``.

Exit codes: 0 success, 1 a run finished with failures, 2 bad input (unknown names, invalid config).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order they appear in --help.
_COMMAND_MODULES = ("listing", "privacy", "run", "tune", "audit", "evaluate", "table")


class UsageError(Exception):
    """Bad user input: printed as ``dpgen-bench: error: ...`` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpgen-bench",
        description="Benchmark differentially private image generators at matched (ε, δ).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{mod}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return code
    except UsageError as exc:
        print(f"dpgen-bench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. `dpgen-bench list | head`): stop quietly, as Unix tools do.
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
