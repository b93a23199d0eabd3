"""Run a whole benchmark grid: validate everything up front, run the missing cells with the config's executor
(:mod:`dpgen_bench.executors`: serial, ``--jobs`` processes, Ray or Slurm), write each returned record and keep
``results.csv`` current after every cell (this driver is the store's only writer), then render tables and plots."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..allocator import retain_freed_memory
from ..executors import CellRun, Executor, make_executor, override_executor, threads_per_job  # noqa: F401
from .config import BenchConfig, ConfigFileError, attempt, check_environment, dump_config, resolve_methods
from .grid import Cell, build_cells
from .progress import CellProgress
from .provenance import environment
from .store import ResultsStore, write_atomic
from .workers import names_workers_cannot_see


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

    audit: Any = None
    """The :class:`~dpgen_bench.runner.audits.AuditSummary` when the config has ``audit: true``."""

    @property
    def ok(self) -> bool:
        return not self.failed


def prepare(config: BenchConfig) -> tuple[list[Cell], ResultsStore, dict[str, Any]]:
    """Validate methods/dataset/metrics (raises ConfigFileError) and build the cells; nothing trains.

    Returns the cells, the store and the resolved method configs (label → MethodConfig)."""
    problems: list[str] = []  # the config's problems and the machine's, reported together
    method_configs = attempt(problems, resolve_methods, config)
    attempt(problems, check_environment, config)
    if problems:
        raise ConfigFileError(problems)
    cells = build_cells(config, method_configs)
    return cells, ResultsStore(config.output_dir), method_configs


def _check_spawnable(config: BenchConfig) -> None:
    """Workers of an out-of-process executor (``--jobs`` processes, Ray, Slurm) are fresh processes: every name
    the config uses must reach them through dpgen_bench or a module listed under ``plugins``."""
    unseen = names_workers_cannot_see(config)
    if unseen:
        raise ConfigFileError(
            f"the {config.executor.name!r} executor's worker processes import dpgen-bench and the modules under "
            "'plugins' only, and there: " + "; ".join(unseen) + ". Register these in a module and list that module "
            "under 'plugins' (or run in this process: --jobs 1 with the local executor)"
        )


def run_benchmark(
    config: BenchConfig,
    *,
    force: bool = False,
    jobs: int | None = None,
    progress: bool = True,
    render: bool = True,
) -> RunSummary:
    """Run every cell of ``config`` that has not finished yet (all of them with ``force``), with the config's
    ``executor`` (``jobs``: the local executor's parallelism, as ``--jobs``).

    Raises :class:`~dpgen_bench.runner.config.ConfigFileError` before anything trains if the config
    cannot run. Cell failures do not raise: they are in the summary and in ``results.csv``.
    """
    if jobs is not None:
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        config = config.model_copy(update={"executor": override_executor(config.executor, jobs=jobs)})
    cells, store, method_configs = prepare(config)
    executor = make_executor(config.executor)
    executor.check(config)
    retain_freed_memory()  # cells may train in this process (workers do it in set_up_cell_process)
    if not executor.in_process:
        _check_spawnable(config)
    with store.lock():
        return _run_locked(config, cells, store, method_configs, executor, force=force, progress=progress,
                           render=render)


def _run_locked(config, cells, store, method_configs, executor: Executor, *, force, progress, render) -> RunSummary:
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
    view = CellProgress(len(todo), enabled=progress)

    def finished(cell: Cell, record: dict[str, Any]) -> None:
        # The driver is the single writer of the store: workers only return their records.
        store.write_record(record)
        summary.ran.append(cell.name)
        if record["status"] != "ok":
            summary.failed.append((cell.name, str(record.get("error"))))
        store.rebuild_csv(keys)  # results.csv stays current: a kill now loses only unfinished cells
        view.finish(cell.name, record)

    # Each row records the thread count its cell ran with (torch_threads).
    run_one = CellRun(root=str(root), device=config.device, threads=executor.threads, plugins=tuple(config.plugins),
                      env=dict(config.executor.env))
    try:
        if todo:
            executor.open()
        executor.run(todo, run_one, lambda cell: view.start(cell.name, private=math.isfinite(cell.epsilon)), finished,
                     progress=view.cell_bars)
    except KeyboardInterrupt:
        view.close()
        store.rebuild_csv(keys)  # every finished cell is in results.csv; abandoned ones have no record
        raise RunInterrupted(summary) from None
    finally:
        view.close()  # stops the heartbeat and gives sys.stderr back, whatever happened
        executor.close()
    df = store.frame(keys)
    gone = df[(df["status"] == "ok") & df["metric"].notna() & df["value"].isna()]
    summary.missing = sorted({(str(m), str(r)) for m, r in zip(gone["metric"], gone["missing_reason"])})
    if config.audit.enabled:  # after the grid, under the same lock; audit.csv is in place before rendering
        from .audits import run_audits

        summary.audit = run_audits(config, progress=progress, lock=False)
    if render:
        summary.outputs = render_outputs(root)
    return summary


def render_outputs(root: str | Path) -> list[Path]:
    """(Re)write ``tables/`` and ``plots/`` of a results directory from its ``results.csv``."""
    from .plots import write_plots
    from .tables import write_tables

    import pandas as pd

    root = Path(root)
    df = ResultsStore(root).read_results()
    audit = pd.read_csv(root / "audit.csv") if (root / "audit.csv").is_file() else None
    return write_tables(df, root / "tables", audit) + write_plots(df, root, root / "plots")
