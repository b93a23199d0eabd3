"""The driver loop every grid shares (training cells, audits): skip what is finished, hand the rest to the
config's executor, write each returned record (this driver is the store's only writer), keep the table's CSV
current after every job, and show the progress. ``run_benchmark`` and ``run_audits`` are this loop on their
jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..allocator import retain_freed_memory
from ..errors import ConfigFileError
from ..executors import Executor, JobRun, make_executor
from ..jobs import Job, ResultsStore, Table
from .progress import CellProgress
from .workers import names_workers_cannot_see


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run: queued jobs were not started, running ones abandoned; the store is valid."""

    def __init__(self, summary: "JobSummary") -> None:
        super().__init__(f"interrupted; {len(summary.ran)} cell(s) finished, rerun to continue")
        self.summary = summary


@dataclass
class JobSummary:
    """What a run of a grid did: jobs in it, skipped as already finished, run, failed, not run."""

    root: Path
    total: int
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(job name, error message)."""
    not_run: list[tuple[str, str]] = field(default_factory=list)
    """(job name, reason) for jobs that ended without running for a stated reason (an audit the budget cap left
    too few trials): final like a finished job, and not a failure."""
    damaged: list[tuple[str, str]] = field(default_factory=list)
    """(job name, what was wrong) for finished jobs whose record or artefacts no longer verify (recomputed)."""
    keys: list[str] = field(default_factory=list)
    """The keys of the grid's jobs (its rows in the table's CSV, in order)."""

    @property
    def ok(self) -> bool:
        return not self.failed


def pending(jobs: Sequence[Job], store: ResultsStore, summary: JobSummary, force: bool) -> list[Job]:
    """The jobs to run (all with ``force``); finished ones go to ``summary.skipped``, damaged ones are noted."""
    todo = []
    for job in jobs:
        state = store.job_state(job)
        if not force and state == "done":
            summary.skipped.append(job.name)
            continue
        if state.startswith("damaged"):
            summary.damaged.append((job.name, state.split(": ", 1)[1]))
        todo.append(job)
    return todo


def run_jobs(todo: Sequence[Job], table: Table, store: ResultsStore, summary: JobSummary, executor: Executor,
             run_one: JobRun, *, progress: bool, on_record: Callable[[Job, dict[str, Any]], None] | None = None,
             unit: str = "cell") -> None:
    """Run ``todo`` with ``executor`` (the store's lock held by the caller): each record is written to
    ``table`` as it arrives and the CSV of ``summary.keys`` rebuilt. Ctrl-C: :class:`RunInterrupted`."""
    store.rebuild_csv(summary.keys, table)
    view = CellProgress(len(todo), enabled=progress, unit=unit)

    def finished(job: Job, record: dict[str, Any]) -> None:
        # The driver is the single writer of the store: workers only return their records.
        store.write_record(record, table)
        summary.ran.append(job.name)
        if record["status"] == "not-run":
            summary.not_run.append((job.name, str(record.get("error"))))
        elif record["status"] != "ok":
            summary.failed.append((job.name, str(record.get("error"))))
        if on_record is not None:
            on_record(job, record)
        store.rebuild_csv(summary.keys, table)  # the CSV stays current: a kill now loses only unfinished jobs
        view.finish(job.name, record)

    try:
        if todo:
            executor.open()
        executor.run(list(todo), run_one, lambda job: view.start(job.name, private=job.private), finished,
                     progress=view.cell_bars)
    except KeyboardInterrupt:
        view.close()
        store.rebuild_csv(summary.keys, table)  # every finished job is in the CSV; abandoned ones have no record
        raise RunInterrupted(summary) from None
    finally:
        view.close()  # stops the heartbeat and gives sys.stderr back, whatever happened
        executor.close()


def open_executor(config) -> Executor:
    """The config's executor, checked before the run lock (nothing trains): its own checks, and that a worker
    process out of this one sees every name the config uses."""
    executor = make_executor(config.executor)
    executor.check(config)
    retain_freed_memory()  # jobs may run in this process (workers do it in set_up_cell_process)
    if not executor.in_process:
        _check_spawnable(config)
    return executor


def job_run(config, executor: Executor, root: Path) -> JobRun:
    """How every job of this run is run (picklable, it travels to the workers). Each row records the thread
    count its job ran with (``torch_threads``)."""
    return JobRun(root=str(root), device=config.device, threads=executor.threads, plugins=tuple(config.plugins),
                  env=dict(config.executor.env))


def _check_spawnable(config) -> None:
    """Workers of an out-of-process executor (``--jobs`` processes, Ray, Slurm) are fresh processes: every name
    the config uses must reach them through dpgen_bench or a module listed under ``plugins``."""
    unseen = names_workers_cannot_see(config)
    if unseen:
        raise ConfigFileError(
            f"the {config.executor.name!r} executor's worker processes import dpgen-bench and the modules under "
            "'plugins' only, and there: " + "; ".join(unseen) + ". Register these in a module and list that module "
            "under 'plugins' (or run in this process: --jobs 1 with the local executor)"
        )
