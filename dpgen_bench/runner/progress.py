"""The run's progress view: one bar over cells (done, running, failed, elapsed, ETA) with the current cell's bars beneath it on a
terminal; in a non-interactive log (CI, ``nohup``, a pipe) plain lines, one per cell, and no cell bars —
no cursor escapes and no thousands of carriage-return updates."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class CellProgress:
    """Progress over ``total`` cells. ``interactive`` (default: stderr is a terminal) picks bars or lines."""

    def __init__(self, total: int, enabled: bool = True, interactive: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.interactive = self.enabled and (self.stream.isatty() if interactive is None else interactive)
        self.total, self.done = total, 0
        self.running, self.failed = 0, 0
        """Cells submitted and not finished yet (on a cluster, queued ones count), and cells finished failed."""
        self.started = time.monotonic()
        self.private_finished = False
        """Whether a private cell has finished: from then on log lines print no elapsed time or ETA, which would
        time it (its duration depends on private sizes)."""
        self._bar = tqdm(total=total, desc="cells", unit="cell", file=self.stream, position=0) if self.interactive else None

    @property
    def cell_bars(self) -> bool:
        """Whether the running cell may draw its own bars (only beneath the cell bar on a terminal)."""
        return self.interactive

    def _counts(self) -> str:
        return f"running {self.running} · failed {self.failed}"

    def start(self, name: str) -> None:
        """``name`` was started (serial) or submitted to workers."""
        self.running += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self._counts()} · {name}", refresh=True)

    def finish(self, name: str, record: dict[str, Any]) -> None:
        self.done += 1
        self.running = max(0, self.running - 1)
        self.failed += record.get("status") != "ok"
        if self._bar is not None:
            self._bar.set_postfix_str(self._counts(), refresh=False)
            self._bar.update(1)
        elif self.enabled:
            self.private_finished |= _is_private(record)
            status = record.get("status", "?")
            error = f" ({record.get('error')})" if status != "ok" and record.get("error") else ""
            timing = ""
            if not self.private_finished:
                elapsed = time.monotonic() - self.started
                eta = elapsed / self.done * (self.total - self.done)
                timing = f" · elapsed {_clock(elapsed)} · ETA {_clock(eta)}"
            print(f"[{self.done}/{self.total}] {name}: {status}{error} · {self._counts()}{timing}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _is_private(record: dict[str, Any]) -> bool:
    """Whether a record is of a private cell (finite ε); unknown counts as private."""
    import math

    eps = (record.get("cell") or {}).get("epsilon")
    try:
        return not math.isinf(float(eps))
    except (TypeError, ValueError):
        return True


def one_line_warnings(stream: TextIO | None = None) -> None:
    """Show each distinct warning (category and message) once, as one line, without Python source lines.

    Installed for the rest of the process (a run's driver and each ``--jobs`` worker)."""
    import warnings

    seen: set[tuple[str, str]] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        key = (category.__name__, str(message))
        if key in seen:
            return
        seen.add(key)
        first = str(message).strip().splitlines()[0] if str(message).strip() else ""
        print(f"warning: {category.__name__}: {first}", file=stream if stream is not None else sys.stderr, flush=True)

    warnings.simplefilter("always")  # deduplicated above, by content rather than by source location
    warnings.showwarning = show
