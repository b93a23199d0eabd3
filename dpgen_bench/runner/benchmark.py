"""Run a whole benchmark grid: validate everything up front, run the missing cells (optionally in parallel
processes), keep ``results.csv`` current after every cell, then render tables and plots."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..allocator import retain_freed_memory
from ..privacy.budget import NEIGHBOURING
from .config import BenchConfig, check_environment, dump_config, resolve_methods
from .execute import run_cell
from .grid import Cell, build_cells
from .progress import CellProgress
from .provenance import environment
from .store import ResultsStore, write_atomic
from .workers import configure_worker, names_workers_cannot_see


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run: queued cells were not started, running ones abandoned; the store is valid."""

    def __init__(self, summary: "RunSummary") -> None:
        super().__init__(f"interrupted; {len(summary.ran)} cell(s) finished, rerun to continue")
        self.summary = summary


@dataclass
class RunSummary:
    """What a run did: cells in the grid, cells skipped as already finished, cells run, cells failed."""

    root: Path
    total: int
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(cell name, error message)."""
    outputs: list[Path] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(metric, reason) for every metric that could not be computed (e.g. FID without Inception weights)."""
    damaged: list[tuple[str, str]] = field(default_factory=list)
    """(cell name, what was wrong) for finished cells whose record or artefacts no longer verify (recomputed)."""

    @property
    def ok(self) -> bool:
        return not self.failed


def prepare(config: BenchConfig) -> tuple[list[Cell], ResultsStore, dict[str, Any]]:
    """Validate methods/dataset/metrics (raises ConfigFileError) and build the cells; nothing trains.

    Returns the cells, the store and the resolved method configs (label → MethodConfig)."""
    method_configs = resolve_methods(config)
    check_environment(config)
    cells = build_cells(config, method_configs)
    return cells, ResultsStore(config.output_dir), method_configs


def _check_spawnable(config: BenchConfig) -> None:
    """--jobs workers are fresh processes: every name the config uses must reach them through dpgen_bench or
    a module listed under ``plugins``."""
    from .config import ConfigFileError

    unseen = names_workers_cannot_see(config)
    if unseen:
        raise ConfigFileError(
            "--jobs worker processes import dpgen-bench and the modules under 'plugins' only, and there: "
            + "; ".join(unseen) + ". Register these in a module and list that module under 'plugins' "
            "(or run with --jobs 1)"
        )


def _failed_record(cell: Cell, store: ResultsStore, error: str) -> dict[str, Any]:
    """Record for a cell whose worker process died (e.g. killed for memory) before it could record itself."""
    record = {
        "key": cell.key,
        "name": cell.name,
        "status": "failed",
        "error": error,
        "cell": cell.key_data(),
        "rows": [
            {
                "cell_key": cell.key,
                "status": "failed",
                "error": error,
                "dataset": cell.dataset,
                "method": cell.label,
                "method_name": cell.method,
                "target_epsilon": cell.epsilon,
                "accountant": cell.accountant,
                "seed": cell.seed,
                "neighbouring": NEIGHBOURING,
            }
        ],
    }
    store.write_record(record)
    return record


def run_benchmark(
    config: BenchConfig,
    *,
    force: bool = False,
    jobs: int = 1,
    progress: bool = True,
    render: bool = True,
) -> RunSummary:
    """Run every cell of ``config`` that has not finished yet (all of them with ``force``).

    Raises :class:`~dpgen_bench.runner.config.ConfigFileError` before anything trains if the config
    cannot run. Cell failures do not raise: they are in the summary and in ``results.csv``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    cells, store, method_configs = prepare(config)
    retain_freed_memory()  # cells train in this process when jobs == 1 (workers do it in configure_worker)
    if jobs > 1:
        _check_spawnable(config)
    with store.lock():
        return _run_locked(config, cells, store, method_configs, force=force, jobs=jobs, progress=progress,
                           render=render)


def _run_locked(config, cells, store, method_configs, *, force, jobs, progress, render) -> RunSummary:
    root = store.root
    keys = [c.key for c in cells]
    summary = RunSummary(root=root, total=len(cells))
    todo = []
    for cell in cells:
        state = store.cell_state(cell.key)
        if not force and state == "done":
            summary.skipped.append(cell.name)
            continue
        if state.startswith("damaged"):
            summary.damaged.append((cell.name, state.split(": ", 1)[1]))
        todo.append(cell)
    if todo:  # a run with nothing to do rewrites no provenance (every row also carries its own versions)
        write_atomic(root / "config.yaml", dump_config(config, method_configs))
        write_atomic(root / "environment.json", json.dumps(environment(), indent=1, sort_keys=True))
    store.rebuild_csv(keys)

    def finished(cell: Cell, record: dict[str, Any]) -> None:
        summary.ran.append(cell.name)
        if record["status"] != "ok":
            summary.failed.append((cell.name, str(record.get("error"))))
        store.rebuild_csv(keys)  # results.csv stays current: a kill now loses only unfinished cells

    # One deliberate thread count per training process: the cores split between the jobs. torch's default
    # (all cores in every process) oversubscribes them under --jobs or other load (DP-MEPF fell from 9 to ~1
    # step/s). Each row records the count it ran with (torch_threads).
    threads = threads_per_job(jobs)
    view = CellProgress(len(todo), enabled=progress)
    try:
        _run_cells(todo, config, root, jobs, threads, finished, view, store)
    except KeyboardInterrupt:
        view.close()
        store.rebuild_csv(keys)  # every finished cell is in results.csv; abandoned ones have no record
        raise RunInterrupted(summary) from None
    view.close()
    df = store.frame(keys)
    gone = df[(df["status"] == "ok") & df["metric"].notna() & df["value"].isna()]
    summary.missing = sorted({(str(m), str(r)) for m, r in zip(gone["metric"], gone["missing_reason"])})
    if render:
        summary.outputs = render_outputs(root)
    return summary


def _run_cells(todo, config, root, jobs, threads, finished, view: CellProgress, store) -> None:
    """Run ``todo`` serially in this process or in ``jobs`` worker processes; ``finished(cell, record)`` after each."""
    if jobs == 1 or len(todo) <= 1:
        import torch

        caller_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for cell in todo:
                view.start(cell.name)
                record = run_cell(cell, root, device=config.device, progress=view.cell_bars)
                finished(cell, record)
                view.finish(cell.name, record)
        finally:
            torch.set_num_threads(caller_threads)
    else:
        # spawn, not fork: forking a process that already ran torch's thread pools can deadlock.
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=min(jobs, len(todo)),
            mp_context=ctx,
            initializer=configure_worker,
            initargs=(threads, tuple(config.plugins), os.getpid()),
        )
        try:
            futures = {pool.submit(run_cell, cell, str(root), config.device, False): cell for cell in todo}
            for fut in as_completed(futures):
                cell = futures[fut]
                try:
                    record = fut.result()
                except BrokenProcessPool as exc:
                    record = _failed_record(cell, store, f"worker process died: {exc}")
                except Exception as exc:  # pickling or similar: still record, never lose the cell
                    record = _failed_record(cell, store, f"{type(exc).__name__}: {exc}")
                finished(cell, record)
                view.finish(cell.name, record)
        except KeyboardInterrupt:
            # Stop promptly: queued cells are cancelled, running ones abandoned (they have written no record,
            # so a rerun does them). The executor has no public way to stop running work, hence _processes.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def threads_per_job(jobs: int) -> int:
    """torch intra-op threads for each of ``jobs`` training processes: the usable cores split evenly."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, jobs))


def render_outputs(root: str | Path) -> list[Path]:
    """(Re)write ``tables/`` and ``plots/`` of a results directory from its ``results.csv``."""
    from .plots import write_plots
    from .tables import write_tables

    root = Path(root)
    df = ResultsStore(root).read_results()
    return write_tables(df, root / "tables") + write_plots(df, root, root / "plots")
