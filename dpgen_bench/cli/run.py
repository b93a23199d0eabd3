"""`dpgen-bench run`: reserved; built in a later issue."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("run", help="(not built yet)")
    p.set_defaults(handler=lambda args: _todo())


def _todo() -> int:
    from . import UsageError

    raise UsageError("'run' is not implemented yet")
