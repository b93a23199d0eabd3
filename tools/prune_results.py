"""Keep committed evidence light: drop model checkpoints (and cached pre-trained weights) from result folders.

A committed results folder is read for its rows, tables, plots, sample grids and samples (``samples.npz``,
uint8); nobody samples from its checkpoints, which were 72 MB of the 116 MB under ``results/``. This removes
``cells/<key>/checkpoint/`` and ``cache/**/*.pt`` and rewrites each cell record so that it stays a verified,
finished cell (``dpgen_bench.runner.store.ResultsStore.cell_state`` reads "done"):

* the dropped files move from the record's ``artefacts`` to ``pruned_artefacts`` (size and SHA-256 kept, so the
  record still says what the run wrote);
* a record from before digests were kept gets ``artefacts`` computed from the files that remain.

Rows (the results) are not touched. Usage: ``python tools/prune_results.py results/NAME [...]``; idempotent.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from dpgen_bench.files import write_atomic
from dpgen_bench.runner.store import artefact_digests

CHECKPOINT_DIR = "checkpoint"


def prune_cell(record_path: Path) -> int:
    """Prune one cell (its record and its folder); return the bytes removed."""
    record = json.loads(record_path.read_text())
    cell_dir = record_path.with_suffix("")
    artefacts = record.get("artefacts")
    if artefacts is None:  # legacy record: digest what is there now, before removing anything
        names = [str(p.relative_to(cell_dir)) for p in sorted(cell_dir.rglob("*")) if p.is_file()]
        artefacts = artefact_digests(cell_dir, names)
    dropped = {name: d for name, d in artefacts.items() if name.startswith(CHECKPOINT_DIR + "/")}
    if not dropped and "artefacts" in record:
        return 0
    record["artefacts"] = {name: d for name, d in artefacts.items() if name not in dropped}
    record["pruned_artefacts"] = {**record.get("pruned_artefacts", {}), **dropped}
    freed = sum(d["bytes"] for d in dropped.values() if d)
    write_atomic(record_path, json.dumps(record, indent=1, sort_keys=True))
    shutil.rmtree(cell_dir / CHECKPOINT_DIR, ignore_errors=True)
    return freed


def prune_folder(folder: Path) -> int:
    freed = sum(prune_cell(p) for p in sorted((folder / "cells").glob("*.json")) if not p.name.startswith("."))
    for cached in sorted((folder / "cache").rglob("*.pt")):
        freed += cached.stat().st_size
        cached.unlink()
    return freed


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    for name in argv:
        folder = Path(name)
        if not (folder / "cells").is_dir() and not (folder / "cache").is_dir():
            print(f"{folder}: no cells/ or cache/ folder, nothing to prune", file=sys.stderr)
            continue
        print(f"{folder}: {prune_folder(folder) / 2**20:.1f} MiB removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
