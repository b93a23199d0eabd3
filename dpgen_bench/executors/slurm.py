"""The ``slurm`` executor: each cell is a Slurm job of one array, submitted with submitit; a preempted or timed-out
job is requeued (``submitit.helpers.Checkpointable``), a job that fails otherwise is resubmitted by the driver up
to ``max_retries`` times. Needs ``pip install 'dpgen-bench[slurm]'``; see ``docs/executors.md``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import ConfigFileError
from .base import JobRun, Executor, ExecutorSpec, OnDone, OnStart, failed_record, missing_extra


class SlurmSpec(ExecutorSpec):
    """``executor: {name: slurm, partition: ..., time_min: ..., gpus_per_cell: ...}``."""

    name: Literal["slurm"] = "slurm"
    cluster: Literal["slurm", "local", "debug"] = "slurm"
    """submitit back-end: ``slurm``; ``local`` runs each job as a subprocess of the driver (tests, a laptop);
    ``debug`` runs jobs in the driver process itself."""
    partition: str | None = None
    """Slurm partition (``--partition``); None: the cluster's default."""
    time_min: int = Field(default=60, ge=1)
    """Time limit of each cell's job in minutes; a job that reaches it is requeued (and runs the cell again)."""
    cpus_per_cell: int = Field(default=1, ge=1)
    """CPUs per job (``--cpus-per-task``); also its torch threads unless ``threads_per_cell``."""
    gpus_per_cell: int = Field(default=0, ge=0)
    """GPUs per job (``--gpus-per-node``); > 0 is required with a ``cuda`` device."""
    memory_gb: float | None = Field(default=None, gt=0)
    """Memory per job in GiB (``--mem``); None: the partition's default."""
    array_parallelism: int = Field(default=64, ge=1)
    """At most this many cells of the array run at once (``--array=...%N``)."""
    max_retries: int = Field(default=2, ge=0)
    """How often the driver resubmits a cell whose job failed (node failure, killed, out of memory) before it
    is recorded failed; preemption and time-outs are requeued by Slurm and do not count."""
    log_dir: str | None = None
    """submitit's job folders (scripts, pickles, Slurm stdout); None: ``<output_dir>/submitit``. Must be on
    storage the driver and the compute nodes share."""
    poll_s: float = Field(default=2.0, gt=0)
    """How often the driver checks its jobs, in seconds (submitit caches the ``sacct`` queries)."""
    result_wait_s: float | None = Field(default=None, gt=0)
    """How long the driver waits for the result file of a job that ended without one before counting it failed,
    in seconds (shared filesystems show files late); None: submitit's default (15 s)."""


def _submitit():
    try:
        import submitit
    except ImportError:
        raise missing_extra("slurm", "submitit", "slurm") from None
    return submitit


def _checkpointable_cell(submitit):
    """The job callable: requeued with the same arguments on preemption or time-out (a cell restarts from
    scratch; its artefacts are rewritten atomically, its record is only ever written by the driver)."""

    class CellJob(submitit.helpers.Checkpointable):
        def __init__(self, run_one: JobRun) -> None:
            self.run_one = run_one

        def __call__(self, cell) -> dict[str, Any]:
            return self.run_one(cell)

    return CellJob


class SlurmExecutor(Executor):
    """Cells as the jobs of one submitit array; the driver polls them and records each as it finishes."""

    Spec = SlurmSpec
    spec: SlurmSpec

    def default_threads(self) -> int:
        return self.spec.cpus_per_cell

    def check(self, config) -> None:
        import shutil

        _submitit()
        if self.spec.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigFileError("executor: slurm needs `sbatch` on PATH: run the driver on a Slurm login node "
                                  "(or set executor.cluster: local to run the jobs as local processes)")
        if config.device.startswith("cuda") and self.spec.gpus_per_cell <= 0:
            raise ConfigFileError(f"executor.gpus_per_cell: device is {config.device!r} but each cell's job asks "
                                  f"for no GPU; set executor.gpus_per_cell (e.g. 1)")

    def _executor(self, root: str):
        submitit = _submitit()
        folder = Path(self.spec.log_dir) if self.spec.log_dir else Path(root) / "submitit"
        ex = submitit.AutoExecutor(folder=str(folder), cluster=self.spec.cluster)  # files are named by job id
        params: dict[str, Any] = {"name": "dpgen-bench", "timeout_min": self.spec.time_min,
                                  "cpus_per_task": self.spec.cpus_per_cell, "gpus_per_node": self.spec.gpus_per_cell,
                                  "slurm_array_parallelism": self.spec.array_parallelism}
        if self.spec.memory_gb is not None:
            params["mem_gb"] = self.spec.memory_gb
        if self.spec.partition is not None:
            params["slurm_partition"] = self.spec.partition
        ex.update_parameters(**params)
        return ex

    def run(self, cells, run_one: JobRun, on_start: OnStart, on_done: OnDone, *, progress: bool = False) -> None:
        ex = self._executor(run_one.root)
        job_fn = _checkpointable_cell(_submitit())(run_one)
        try:
            with ex.batch():  # one array job: Slurm schedules it as one unit, array_parallelism at a time
                submitted = [(ex.submit(job_fn, cell), cell) for cell in cells]
        except Exception as exc:  # sbatch refused it (unknown partition, limits): nothing was submitted
            raise ConfigFileError(f"executor: submitting the cells failed: {type(exc).__name__}: "
                                  f"{str(exc).strip()[:500]}") from None
        pending = {job: (cell, 0) for job, cell in submitted}
        for cell in cells:
            on_start(cell)
        try:
            while pending:
                for job in [j for j in pending if j.done()]:
                    cell, retries = pending.pop(job)
                    record, error = self._result(job, cell)
                    if error is not None and retries < self.spec.max_retries:
                        pending[ex.submit(job_fn, cell)] = (cell, retries + 1)  # the driver's retry
                        continue
                    on_done(cell, record if error is None else failed_record(
                        cell, f"Slurm job {job.job_id} failed ({retries + 1} attempt(s)): {error}"))
                if pending:
                    time.sleep(self.spec.poll_s)
        except KeyboardInterrupt:
            for job in pending:  # abandoned cells have written no record: a rerun does them
                job.cancel(check=False)
            raise

    def _result(self, job, cell) -> tuple[dict[str, Any] | None, str | None]:
        """(record, None) for a job that returned, (None, why) for one that died or raised."""
        if self.spec.result_wait_s is not None:
            job._results_timeout_s = self.spec.result_wait_s  # submitit's wait for a late result file
        try:
            return job.result(), None
        except Exception as exc:  # UncompletedJobError: the job's process died; FailedJobError: it raised
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            return None, f"{type(exc).__name__}: {' '.join(lines[:2])}"[:400] + f" (log: {job.paths.stderr})"
