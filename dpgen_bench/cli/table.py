"""`dpgen-bench table`: reserved; built in a later issue."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("table", help="(not built yet)")
    p.set_defaults(handler=lambda args: _todo())


def _todo() -> int:
    from . import UsageError

    raise UsageError("'table' is not implemented yet")
