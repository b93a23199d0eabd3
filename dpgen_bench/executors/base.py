"""The executor interface: what runs a grid's jobs (training cells, audits: :mod:`dpgen_bench.jobs`), in this
process, on a Ray cluster or on Slurm. Executors depend on the jobs layer only, never on the runner.

An executor only *runs* jobs (docs/executors.md); "cell" below means any job. The driver (:func:`dpgen_bench.runner.benchmark.run_benchmark`)
stays the single writer of the results store: a worker writes the artefacts in its own ``cells/<key>/`` folder
and *returns* the cell's record; the driver writes the record and rebuilds ``results.csv``. A worker that dies
(killed, preempted, out of memory) is retried ``max_retries`` times where the executor supports it; after that
the executor hands the driver a failed record (:func:`failed_record`) naming the reason, so no cell silently
disappears.

A new executor is one module: an :class:`ExecutorSpec` subclass (its config keys, ``name`` a ``Literal``) and an
:class:`Executor` subclass, registered in :data:`dpgen_bench.executors.EXECUTORS`.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigFileError
from ..jobs import Job, ResultsStore

CELL_LOG = "log.txt"
"""A worker's stdout and stderr while it runs a cell go to ``cells/<key>/log.txt`` (appended, one header per
attempt)."""


class ExecutorSpec(BaseModel):
    """The ``executor:`` section of a benchmark config: keys every executor has (each executor adds its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """Registered executor name: ``local``, ``ray`` or ``slurm`` (``dpgen_bench.executors.EXECUTORS``)."""
    threads_per_cell: int | None = Field(default=None, ge=1)
    """torch intra-op threads each cell trains with; None: derived from the executor's CPUs per cell (local:
    the cores split between the jobs). Recorded per row (``torch_threads``); equal counts give equal results."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables set in the worker before a cell runs, e.g. ``TORCH_HOME`` / ``HF_HOME`` on shared
    storage so downloaded weights are fetched once. ``PYTHONPATH`` entries are also put on the worker's
    ``sys.path`` (where ``plugins`` modules may live)."""

    remote: ClassVar[bool] = False
    """Whether cells may run on another machine than the driver (the driver's own GPU is then not checked)."""


@dataclass(frozen=True)
class JobRun:
    """How to run one job, picklable so it travels to a worker: the results root, the device and the
    process set-up every worker applies (threads, plugin imports, environment)."""

    root: str
    device: str
    threads: int
    plugins: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, job: Job) -> dict[str, Any]:
        """Worker entry: set the process up, run the job with its output in ``<table>/<key>/log.txt``, return
        the record (written by the driver, never here)."""
        from .worker import set_up_cell_process

        with worker_environment(self.env):
            set_up_cell_process(self.threads, self.plugins)
            folder = ResultsStore(self.root).root / job.table.folder / job.key
            folder.mkdir(parents=True, exist_ok=True)
            with cell_log(folder / CELL_LOG):
                return job.run(self.root, device=self.device, progress=False)

    def in_process(self, job: Job, progress: bool) -> dict[str, Any]:
        """Run the job in the driver itself (the serial local path): the caller's thread count and output,
        the job's own bars beneath the progress bar when ``progress``."""
        return job.run(self.root, device=self.device, progress=progress)


CellRun = JobRun
"""The old name of :class:`JobRun`."""


@contextmanager
def worker_environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` in this worker for one cell and restore the previous values afterwards (Ray reuses worker
    processes across runs, whose configs may set different variables). ``PYTHONPATH`` entries also go onto
    ``sys.path`` for the duration, so ``plugins`` modules living there import."""
    before = {key: os.environ.get(key) for key in env}
    path_before = list(sys.path)
    os.environ.update(env)
    if env.get("PYTHONPATH"):
        sys.path[:0] = [p for p in env["PYTHONPATH"].split(os.pathsep) if p and p not in sys.path]
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.path[:] = path_before


@contextmanager
def cell_log(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C libraries' output too) to ``path``
    (appended) for the duration, with a header naming the host, pid and start time of this attempt."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as fh:
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        fh.write(f"--- attempt on {socket.gethostname()} pid {os.getpid()} at {now}\n")
        fh.flush()
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def failed_record(job: Job, error: str) -> dict[str, Any]:
    """Record of a job whose worker died (killed, preempted beyond its retries, out of memory) before it
    could return its record (:meth:`dpgen_bench.jobs.Job.failed_record`)."""
    return job.failed_record(error)


OnStart = Callable[[Job], None]
OnDone = Callable[[Job, dict[str, Any]], None]


class Executor(ABC):
    """Runs cells. Built from its spec; :meth:`check` before the run lock (nothing trains), :meth:`open` once
    there is work, :meth:`run`, then :meth:`close` (also after an error or Ctrl-C)."""

    Spec: ClassVar[type[ExecutorSpec]]

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec

    @property
    def in_process(self) -> bool:
        """Whether cells run in the driver process (then in-process registrations are visible to them)."""
        return False

    @property
    def threads(self) -> int:
        """torch threads per cell: ``threads_per_cell`` if set, else the executor's own default."""
        return self.spec.threads_per_cell or self.default_threads()

    @abstractmethod
    def default_threads(self) -> int:
        """torch threads per cell when the config does not set ``threads_per_cell``."""

    def check(self, config: Any) -> None:
        """Raise ``ConfigFileError`` for what can be known wrong before anything trains (a missing extra, a GPU
        device without GPUs per cell). ``config``: the benchmark config (its ``device``). Default: nothing."""

    def open(self) -> None:
        """Acquire what the run needs (a cluster connection); ``ConfigFileError`` if unreachable."""

    def close(self) -> None:
        """Release what :meth:`open` acquired."""

    @abstractmethod
    def run(self, cells: list[Job], run_one: JobRun, on_start: OnStart, on_done: OnDone, *,
            progress: bool = False) -> None:
        """Run every cell; call ``on_start(cell)`` when it is submitted and ``on_done(cell, record)`` in this
        (the driver's) process when it has finished, once per cell, a failed record after a worker died
        beyond its retries. ``progress``: an in-process cell may draw its own bars. Ctrl-C
        (``KeyboardInterrupt``) stops submitting, abandons what runs, and propagates."""


def missing_extra(extra: str, module: str, what: str) -> Exception:
    """The error for an executor whose optional dependency is not installed, naming the install command."""
    return ConfigFileError(f"executor {what!r} needs the {module!r} package, which is not installed: "
                           f"pip install 'dpgen-bench[{extra}]'")
