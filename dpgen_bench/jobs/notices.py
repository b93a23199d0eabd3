"""Warnings while jobs run: each distinct one shown once, as one line naming the job it came from."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, TextIO

from .private_text import scrub_figures, unscrubbed_opted_in


def one_line_warnings(stream: TextIO | None = None) -> None:
    """Show each distinct warning (category and message) once, as one line, without Python source lines.

    Installed for the rest of the process (a run's driver and each ``--jobs`` worker)."""
    import warnings

    seen: set[tuple[str, str, str | None]] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        first = str(message).strip().splitlines()[0] if str(message).strip() else ""
        if _private:  # a private cell's warning may print private figures (a batch size in a shape)
            first = scrub_figures(first)
        key = (category.__name__, first, _cell)  # by the text shown: how many lines must not follow private figures
        if key in seen:
            return
        seen.add(key)
        where = f"{_cell}: " if _cell else ""
        print(f"warning: {where}{category.__name__}: {first}", file=stream if stream is not None else sys.stderr,
              flush=True)

    warnings.simplefilter("always")  # deduplicated above, by content rather than by source location
    warnings.showwarning = show


_cell: str | None = None
"""The cell whose code runs in this process now (:func:`warnings_from`), named in its warnings' lines."""
_private = False
"""Whether that cell is private (its warning lines are then scrubbed of figures)."""


@contextmanager
def warnings_from(cell_name: str, private: bool = False) -> Iterator[None]:
    """Name ``cell_name`` in the line of every warning shown while the block runs (with
    :func:`one_line_warnings`; each distinct warning is then shown once per cell). For a ``private`` cell the
    lines have their figures scrubbed (:func:`~dpgen_bench.jobs.private_text.scrub_figures`) and are
    deduplicated by that text, so neither a line nor the number of lines follows a private figure."""
    global _cell, _private
    before, _cell = (_cell, _private), cell_name
    _private = private and not unscrubbed_opted_in()
    try:
        yield
    finally:
        _cell, _private = before
