"""Run a whole benchmark grid: validate everything up front, run the missing cells with the config's executor
(:mod:`dpgen_bench.executors`: serial, ``--jobs`` processes, Ray or Slurm), write each returned record and keep
``results.csv`` current after every cell (this driver is the store's only writer), then render tables and plots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..executors import CellRun, Executor, JobRun, make_executor, override_executor, threads_per_job  # noqa: F401
from ..jobs import RESULTS, Cell, ResultsStore
from ..jobs.provenance import environment
from ..jobs.store import read_rows
from ..files import write_atomic
from .config import (BenchConfig, ConfigFileError, attempt, check_environment, check_required_files, dump_config,
                     resolve_methods)
from .driver import JobSummary, RunInterrupted, _check_spawnable, job_run, open_executor, pending, run_jobs  # noqa: F401
from .grid import build_cells


@dataclass
class RunSummary(JobSummary):
    """What a run did: cells in the grid, cells skipped as already finished, cells run, cells failed."""

    outputs: list[Path] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(metric, reason) for every metric that could not be computed (e.g. FID without Inception weights)."""

    audit: Any = None
    """The :class:`~dpgen_bench.runner.audits.AuditSummary` when the config has ``audit: true``."""


def prepare(config: BenchConfig) -> tuple[list[Cell], ResultsStore, dict[str, Any]]:
    """Validate methods/dataset/metrics (raises ConfigFileError) and build the cells; nothing trains.

    Returns the cells, the store and the resolved method configs (label → MethodConfig)."""
    problems: list[str] = []  # the config's problems and the machine's, reported together
    method_configs = attempt(problems, resolve_methods, config)
    attempt(problems, check_environment, config)
    if method_configs is not None:
        attempt(problems, check_required_files, config, method_configs)
    if problems:
        raise ConfigFileError(problems)
    cells = build_cells(config, method_configs)
    return cells, ResultsStore(config.output_dir), method_configs


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
    executor = open_executor(config)
    with store.lock():
        return _run_locked(config, cells, store, method_configs, executor, force=force, progress=progress,
                           render=render)


def _run_locked(config, cells, store, method_configs, executor: Executor, *, force, progress, render) -> RunSummary:
    root = store.root
    keys = [c.key for c in cells]
    summary = RunSummary(root=root, total=len(cells), keys=keys)
    todo = pending(cells, store, summary, force)
    if todo:  # a run with nothing to do rewrites no provenance (every row also carries its own versions)
        write_atomic(root / "config.yaml", dump_config(config, method_configs))
        write_atomic(root / "environment.json", json.dumps(environment(), indent=1, sort_keys=True))
    run_jobs(todo, RESULTS, store, summary, executor, job_run(config, executor, root), progress=progress)
    df = store.frame(keys)
    gone = df[(df["status"] == "ok") & df["metric"].notna() & df["value"].isna()]
    summary.missing = sorted({(str(m), str(r)) for m, r in zip(gone["metric"], gone["missing_reason"])})
    if config.audit.enabled:  # after the grid, under the same lock; audit.csv is in place before rendering
        from .audits import run_audits

        summary.audit = run_audits(config, progress=progress, lock=False, executor=executor)
    if render:
        summary.outputs = render_outputs(root)
    return summary


def render_outputs(root: str | Path) -> list[Path]:
    """(Re)write ``tables/`` and ``plots/`` of a results directory from its ``results.csv``."""
    from .plots import write_plots
    from .tables import write_tables

    root = Path(root)
    df = ResultsStore(root).read_results()
    audit = read_rows(root / "audit.csv") if (root / "audit.csv").is_file() else None
    return write_tables(df, root / "tables", audit) + write_plots(df, root, root / "plots")
