"""`dpgen-bench privacy`: reserved; built in a later issue."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("privacy", help="(not built yet)")
    p.set_defaults(handler=lambda args: _todo())


def _todo() -> int:
    from . import UsageError

    raise UsageError("'privacy' is not implemented yet")
