"""Warnings while jobs run: each distinct one shown once, as one line naming the job it came from."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, TextIO


def one_line_warnings(stream: TextIO | None = None) -> None:
    """Show each distinct warning (category and message) once, as one line, without Python source lines.

    Installed for the rest of the process (a run's driver and each ``--jobs`` worker)."""
    import warnings

    seen: set[tuple[str, str, str | None]] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        key = (category.__name__, str(message), _cell)
        if key in seen:
            return
        seen.add(key)
        first = str(message).strip().splitlines()[0] if str(message).strip() else ""
        where = f"{_cell}: " if _cell else ""
        print(f"warning: {where}{category.__name__}: {first}", file=stream if stream is not None else sys.stderr,
              flush=True)

    warnings.simplefilter("always")  # deduplicated above, by content rather than by source location
    warnings.showwarning = show


_cell: str | None = None
"""The cell whose code runs in this process now (:func:`warnings_from`), named in its warnings' lines."""


@contextmanager
def warnings_from(cell_name: str) -> Iterator[None]:
    """Name ``cell_name`` in the line of every warning shown while the block runs (with
    :func:`one_line_warnings`; each distinct warning is then shown once per cell)."""
    global _cell
    before, _cell = _cell, cell_name
    try:
        yield
    finally:
        _cell = before
