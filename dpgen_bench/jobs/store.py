"""The results store: one record file per finished cell, and ``results.csv`` rebuilt from them.

Layout of a results directory::

    config.yaml            the resolved config of the last run
    environment.json       versions, code version, machine
    cells/<key>.json       one record per cell (status, error, result rows, artefact sizes and SHA-256); a
                           finished cell is done only while its record reads and its artefacts verify
    cells/<key>/           artefacts: samples.npz, samples.png, checkpoint/, ledger.json
    results.csv            long format, one row per (cell, metric); derived from cells/*.json
    audit/<key>.json       one record per audit (the same record model, one row each)
    audit.csv              one row per audit; derived from audit/*.json
    .lock                  while a run writes here: its pid and host (a second run is refused)

Why this survives ``SIGKILL`` at any moment and ``--jobs N``: every file is written to a unique temporary
name in the same directory and moved into place with ``os.replace`` (atomic on POSIX), so a reader sees the
old file or the new one, never half of one. A cell's record is written last, after its artefacts, so a
killed cell simply has no record and is recomputed. ``results.csv`` is a pure function of the records; each
rebuild writes a complete file atomically, and one row per (cell key, metric) by construction means no
duplicates however often it is rebuilt, by however many processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..files import write_atomic
from .schema import AUDITS, COLUMNS, RESULTS, TEXT_COLUMNS, Table  # noqa: F401 (COLUMNS: re-exported)

RESULTS_CSV = "results.csv"
CELLS_DIR = "cells"
LOCK_FILE = ".lock"


class StoreLockedError(RuntimeError):
    """Another live run holds the results directory (the message names its pid and host)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True



def _json_default(value: Any) -> Any:
    if isinstance(value, float):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def _encode(value: Any) -> Any:
    """JSON has no inf/nan: store them as strings and turn them back on read."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _as_record(data: dict[str, Any], table: Table) -> dict[str, Any]:
    """A stored record; an audit stored before audits were jobs (its bare row) as the record it is now."""
    if "rows" in data or "key" in data:
        return data
    key = data.get(table.key_column)
    return {"key": key, "name": key, "status": data.get("status"), "error": data.get("error"), "rows": [data],
            "artefacts": {}}


def read_rows(path: str | Path) -> pd.DataFrame:
    """A stored CSV of rows (``results.csv``, ``audit.csv``) with the :data:`~dpgen_bench.jobs.schema.TEXT_COLUMNS`
    it has read as text, so keys and versions come back as they were written."""
    return pd.read_csv(path, dtype={column: str for column in TEXT_COLUMNS})


def file_digest(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def artefact_digests(cell_dir: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Digests of a cell's artefacts (paths relative to its directory), for its record."""
    return {name: file_digest(cell_dir / name) for name in names}


LEGACY_ARTEFACTS = ("samples.npz", "checkpoint/state.pt")


def verify_artefacts(cell_dir: Path, expected: dict[str, dict[str, Any] | None]) -> str | None:
    """None if every listed artefact is there with its recorded size and SHA-256 (existence only where the
    digest is None), else what is wrong."""
    for name, want in sorted(expected.items()):
        path = cell_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if want is None:
            continue
        if path.stat().st_size != want.get("bytes") or file_digest(path)["sha256"] != want.get("sha256"):
            return f"{name} differs from its record (size or SHA-256)"
    return None


class ResultsStore:
    """A results directory (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths ------------------------------------------------------------------------------------
    @property
    def cells_dir(self) -> Path:
        return self.root / CELLS_DIR

    @property
    def csv_path(self) -> Path:
        return self.root / RESULTS_CSV

    def cell_dir(self, key: str) -> Path:
        """Artefact directory of a cell (created on demand)."""
        d = self.cells_dir / key
        d.mkdir(parents=True, exist_ok=True)
        return d

    def record_path(self, key: str, table: Table = RESULTS) -> Path:
        return self.root / table.folder / f"{key}.json"

    # -- the run lock -----------------------------------------------------------------------------
    @contextmanager
    def lock(self):
        """Hold ``.lock`` for the duration of a run, so two runs never write the same cells.

        A lock left by a dead process on this host (a killed run) is stale and taken over; one held by a live
        process, or by another host (shared storage: liveness unknowable), raises :class:`StoreLockedError`."""
        path = self.root / LOCK_FILE
        self.root.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder(path)
                if holder is None:
                    continue  # it vanished or was stale and is removed: try again
                raise StoreLockedError(
                    f"results directory {str(self.root)!r} is in use by another run (pid {holder.get('pid')} on "
                    f"host {holder.get('host')!r}); wait for it to finish, or remove {str(path)!r} if that run "
                    f"is gone"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            break
        try:
            yield
        finally:
            try:
                if json.loads(path.read_text()).get("pid") == me["pid"]:
                    path.unlink()
            except (OSError, ValueError):
                pass

    @staticmethod
    def _lock_holder(path: Path) -> dict[str, Any] | None:
        """The live holder of ``path``, or None after removing a stale (or unreadable, empty) lock."""
        try:
            holder = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            holder = {}
        pid, host = holder.get("pid"), holder.get("host")
        if host not in (None, socket.gethostname()):
            return holder
        if isinstance(pid, int) and _pid_alive(pid):
            return holder
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return None

    # -- records ----------------------------------------------------------------------------------
    def write_record(self, record: dict[str, Any], table: Table = RESULTS) -> Path:
        """Atomically store a job's record (``record["key"]`` names it) in ``table``'s folder. This marks the
        job finished."""
        text = json.dumps(_encode(record), indent=1, sort_keys=True, default=_json_default, allow_nan=False)
        return write_atomic(self.record_path(record["key"], table), text)

    def load_record(self, key: str, table: Table = RESULTS) -> dict[str, Any] | None:
        path = self.record_path(key, table)
        try:
            return _as_record(_decode(json.loads(path.read_text())), table)
        except (OSError, ValueError):
            return None

    def is_done(self, key: str) -> bool:
        """True if the cell finished successfully and its artefacts verify (failed cells are retried)."""
        return self.cell_state(key) == "done"

    def cell_state(self, key: str, table: Table = RESULTS) -> str:
        """``"missing"`` (no record), ``"failed"``, ``"done"``, or ``"damaged: <why>"`` (an unreadable record,
        or an artefact that is gone or differs from the size and SHA-256 its record lists)."""
        path = self.record_path(key, table)
        if not path.exists():
            return "missing"
        record = self.load_record(key, table)
        if record is None:
            return "damaged: the record does not read (truncated or garbled)"
        if record.get("status") not in table.done:
            return "failed"
        expected = record.get("artefacts")
        if expected is None:  # a record from before digests were kept: the files must at least be there
            expected = {name: None for name in LEGACY_ARTEFACTS}
        problem = verify_artefacts(self.root / table.folder / key, expected)
        return f"damaged: {problem}" if problem else "done"

    def job_state(self, job) -> str:
        """:meth:`cell_state` of a job (:class:`dpgen_bench.jobs.base.Job`) in its own table."""
        return self.cell_state(job.key, job.table)

    def records(self, table: Table = RESULTS) -> list[dict[str, Any]]:
        """All readable records of ``table``, sorted by key (leftover temporary files are ignored)."""
        out = []
        folder = self.root / table.folder
        if not folder.is_dir():
            return out
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                out.append(_as_record(_decode(json.loads(path.read_text())), table))
            except (OSError, ValueError):
                continue  # cannot happen with atomic writes; never let one bad file block the rest
        return out

    # -- results.csv ------------------------------------------------------------------------------
    def frame(self, keys: Iterable[str] | None = None, table: Table = RESULTS) -> pd.DataFrame:
        """All rows of ``table``'s records (only those of ``keys`` if given), in the column order of its
        columns; sorted by ``table.sort_by``, else in the order of ``keys`` (then of the keys)."""
        order = None if keys is None else {k: i for i, k in enumerate(keys)}
        records = [r for r in self.records(table) if order is None or r.get("key") in order]
        if order is not None and table.sort_by is None:
            records.sort(key=lambda r: order[r["key"]])
        rows = [row for record in records for row in record.get("rows", [])]
        columns = list(table.columns)
        df = pd.DataFrame(rows)
        for col in columns:
            if col not in df.columns:
                df[col] = None
        extra = [c for c in df.columns if c not in columns]
        df = df[columns + extra]
        if len(df) and table.sort_by is not None:
            df = df.sort_values(list(table.sort_by), na_position="last", kind="stable")
        return df.reset_index(drop=True)

    def rebuild_csv(self, keys: Iterable[str] | None = None, table: Table = RESULTS) -> Path:
        """Regenerate ``table``'s CSV (``results.csv``) from the records (of the current grid's ``keys``),
        atomically.

        Records of jobs no longer in the grid (an edited config) stay on disk but are left out.
        """
        df = self.frame(keys, table)
        if table.only_columns:
            df = df[list(table.columns)]
        return write_atomic(self.root / table.csv, df.to_csv(index=False))

    def consistency(self) -> str | None:
        """None if ``results.csv`` holds exactly the rows of the records, else what differs."""
        records = self.frame()
        try:
            csv = read_rows(self.csv_path)
        except FileNotFoundError:
            return f"{RESULTS_CSV} is missing" if len(records) else None
        except (ValueError, pd.errors.ParserError) as exc:
            return f"{RESULTS_CSV} does not parse ({str(exc).splitlines()[0]})"
        if "cell_key" not in csv.columns:
            return f"{RESULTS_CSV} has no cell_key column"
        if len(csv) != len(records) or set(csv["cell_key"].astype(str)) != set(records["cell_key"].astype(str)):
            return (f"{RESULTS_CSV} has {len(csv)} rows of {csv['cell_key'].nunique()} cells, the cell records "
                    f"{len(records)} rows of {records['cell_key'].nunique()} cells")
        return None

    def read_results(self) -> pd.DataFrame:
        """``results.csv`` as a DataFrame (``target_epsilon`` = inf for non-private rows)."""
        if not self.csv_path.exists():
            raise FileNotFoundError(f"no {RESULTS_CSV} in {str(self.root)!r}; run `dpgen-bench run` first")
        return read_rows(self.csv_path)
