"""The run's progress view: one bar over cells (done, running, failed, elapsed, ETA) with the current cell's bars beneath it on a
terminal; in a non-interactive log (CI, ``nohup``, a pipe) plain lines, one per finished cell and a heartbeat
at least every :data:`HEARTBEAT_S` seconds per running cell (its time so far, the step of its innermost bar and
that bar's time left) — no cursor escapes and no thousands of carriage-return updates. Warnings raised inside a
cell name the cell (:func:`warnings_from`)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from tqdm.auto import tqdm

from ..jobs.notices import one_line_warnings, warnings_from  # noqa: F401 (re-exported: the old place)

HEARTBEAT_S = 60.0
"""Longest silence, in seconds, of a log while a cell runs: a heartbeat line is printed at this interval."""


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class _BarSink:
    """Stands in for ``sys.stderr`` while a run logs plain lines: the cells' tqdm bars stay live (so the heartbeat
    can read their step and rate) but their redraws — writes that start with a carriage return, cursor moves,
    and the newlines that end them — are dropped; every other write (warnings, prints) goes through."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._in_bar = False

    def write(self, text: str) -> int:
        if text.startswith("\r") or "\x1b[" in text or (self._in_bar and not text.strip("\n")):
            self._in_bar = True
            return len(text)
        self._in_bar = False
        return self._stream.write(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # flush, fileno, encoding ...: the real stream's
        return getattr(self._stream, name)


def _live_bars() -> list:
    """The tqdm bars alive in this process, oldest first (methods use ``tqdm.auto``; both classes are looked at
    because each keeps its own registry once instantiated)."""
    import tqdm as _tqdm

    bars: dict[int, Any] = {}
    for cls in (_tqdm.std.tqdm, tqdm):
        for bar in list(getattr(cls, "_instances", ())):
            if not getattr(bar, "disable", True):
                bars[id(bar)] = bar
    return sorted(bars.values(), key=lambda b: getattr(b, "start_t", 0.0))


def _bar_text(bar, timed: bool = True) -> str:
    """``step n/total (desc), ~m:ss left in it`` from a live bar (the time left from its own rate; only if
    ``timed``)."""
    d = bar.format_dict
    n, total, rate = d.get("n", 0), d.get("total"), d.get("rate")
    if rate is None and d.get("elapsed"):
        rate = n / d["elapsed"] if n else None
    desc = (d.get("prefix") or "").strip().rstrip(":")
    text = f"step {n}/{total:g}" if total else f"step {n}"
    text += f" ({desc})" if desc else ""
    if total and rate and timed:
        text += f", ~{_clock((total - n) / rate)} left in it"
    return text


class CellProgress:
    """Progress over ``total`` cells. ``interactive`` (default: stderr is a terminal) picks bars or lines."""

    def __init__(self, total: int, enabled: bool = True, interactive: bool | None = None,
                 stream: TextIO | None = None, heartbeat_s: float | None = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic, unit: str = "cell") -> None:
        """``heartbeat_s``: in a log, the interval of the heartbeat lines (None: none); ``clock``: seconds, for
        tests; ``unit``: what is counted (``cell``, ``audit``)."""
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.interactive = self.enabled and (self.stream.isatty() if interactive is None else interactive)
        self.total, self.done = total, 0
        self.running, self.failed = 0, 0
        """Cells submitted and not finished yet (on a cluster, queued ones count), and cells finished failed."""
        self.clock = clock
        self.started = clock()
        self._since: dict[str, float] = {}  # running cell -> when it started
        self._lock = threading.Lock()
        self.private_seen = False
        """Whether a private cell has started: from then on no line prints an elapsed time, an ETA or a time left,
        which would time private cells (their duration depends on private sizes); steps are still shown."""
        self._bar = tqdm(total=total, desc=f"{unit}s", unit=unit, file=self.stream, position=0) if self.interactive else None
        self._stderr, self._stop, self._beats = None, threading.Event(), None
        if self.enabled and not self.interactive and heartbeat_s is not None:
            # The cell's bars run into a sink; the heartbeat reads their step and rate (see _BarSink).
            self._stderr, sys.stderr = sys.stderr, _BarSink(sys.stderr)
            self._beats = threading.Thread(target=self._beat_every, args=(float(heartbeat_s),), daemon=True,
                                           name="dpgen-bench heartbeat")
            self._beats.start()

    @property
    def cell_bars(self) -> bool:
        """Whether an in-process cell should keep its own bars live: drawn beneath the cell bar on a terminal,
        or read by the heartbeat in a log (drawn nowhere)."""
        return self.interactive or self._beats is not None

    def _beat_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.beat()

    def beat(self) -> None:
        """One heartbeat line per running cell: its time so far, the innermost live bar's step and time left (a
        cell running in this process), the cells done and the run's elapsed time and ETA."""
        now = self.clock()
        with self._lock:
            running = dict(self._since)
            done = self.done
        bars = _live_bars() if len(running) == 1 else []  # bars of --jobs workers are in other processes
        timed = not self.private_seen
        elapsed = now - self.started
        eta = f" · ETA {_clock(elapsed / done * (self.total - done))}" if done and timed else ""
        for name, since in running.items():
            step = f" · {_bar_text(bars[-1], timed)}" if bars else ""
            clock = f" {_clock(now - since)}" if timed else ""
            total = f" · elapsed {_clock(elapsed)}{eta}" if timed else " (private: no times shown)"
            print(f"… {name}: running{clock}{step} · done {done}/{self.total}{total}", file=self.stream, flush=True)

    def _counts(self) -> str:
        return f"running {self.running} · failed {self.failed}"

    def start(self, name: str, private: bool = False) -> None:
        """``name`` was started (serial) or submitted to workers; ``private``: it trains at a finite ε."""
        self.running += 1
        self.private_seen |= private
        with self._lock:
            self._since[name] = self.clock()
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self._counts()} · {name}", refresh=True)

    def finish(self, name: str, record: dict[str, Any]) -> None:
        with self._lock:
            self.done += 1
            self._since.pop(name, None)
        self.running = max(0, self.running - 1)
        self.failed += record.get("status") not in ("ok", "not-run")
        if self._bar is not None:
            self._bar.set_postfix_str(self._counts(), refresh=False)
            self._bar.update(1)
        elif self.enabled:
            self.private_seen |= _is_private(record)
            status = record.get("status", "?")
            error = f" ({record.get('error')})" if status != "ok" and record.get("error") else ""
            timing = ""
            if not self.private_seen:
                elapsed = self.clock() - self.started
                eta = elapsed / self.done * (self.total - self.done)
                timing = f" · elapsed {_clock(elapsed)} · ETA {_clock(eta)}"
            print(f"[{self.done}/{self.total}] {name}: {status}{error} · {self._counts()}{timing}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        """Stop the bar or the heartbeat and give ``sys.stderr`` back; safe to call twice."""
        if self._bar is not None:
            self._bar.close()
        self._stop.set()
        if self._beats is not None:
            self._beats.join()
            self._beats = None
        if self._stderr is not None:
            sys.stderr, self._stderr = self._stderr, None


def _is_private(record: dict[str, Any]) -> bool:
    """Whether a record is of a private cell (finite ε); unknown counts as private."""
    import math

    eps = (record.get("cell") or {}).get("epsilon")
    try:
        return not math.isinf(float(eps))
    except (TypeError, ValueError):
        return True

