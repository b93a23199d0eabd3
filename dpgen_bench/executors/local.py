"""The ``local`` executor: cells one after another in the driver (``jobs: 1``), or in ``jobs`` spawned worker
processes on this machine (``--jobs N``)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Literal

from pydantic import Field

from .base import JobRun, Executor, ExecutorSpec, OnDone, OnStart, failed_record


class LocalSpec(ExecutorSpec):
    """``executor: {name: local, jobs: N}``: this machine only."""

    name: Literal["local"] = "local"
    jobs: int = Field(default=1, ge=1)
    """Cells run at once, each in its own worker process (1: in the driver itself). ``--jobs N`` sets it."""


def threads_per_job(jobs: int) -> int:
    """torch intra-op threads for each of ``jobs`` training processes: the usable cores split evenly, and at
    most ``OMP_NUM_THREADS`` when that is set to a positive integer (the caller's own cap, e.g. processes
    already running side by side: a test suite's workers, or other jobs on a shared machine)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, jobs))
    cap = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(threads, int(cap)) if cap.isdigit() and int(cap) > 0 else threads


class LocalExecutor(Executor):
    """Serial in the driver, or a ``spawn`` process pool of ``jobs`` workers. A worker that dies (e.g. killed
    for memory) breaks the pool: its cells are recorded failed with the reason and a rerun retries them."""

    Spec = LocalSpec
    spec: LocalSpec

    @property
    def in_process(self) -> bool:
        return self.spec.jobs == 1

    def default_threads(self) -> int:
        # One deliberate count per training process: the cores split between the jobs. torch's default (all
        # cores in every process) oversubscribes them under --jobs or other load (DP-MEPF fell from 9 to ~1
        # step/s).
        return threads_per_job(self.spec.jobs)

    def run(self, cells, run_one: JobRun, on_start: OnStart, on_done: OnDone, *, progress: bool = False) -> None:
        if self.spec.jobs == 1 or len(cells) <= 1:
            self._run_serial(cells, run_one, on_start, on_done, progress)
        else:
            self._run_pool(cells, run_one, on_start, on_done)

    @staticmethod
    def _run_serial(cells, run_one: JobRun, on_start: OnStart, on_done: OnDone, progress: bool) -> None:
        import torch

        caller_threads = torch.get_num_threads()
        torch.set_num_threads(run_one.threads)
        try:
            for cell in cells:
                on_start(cell)
                on_done(cell, run_one.in_process(cell, progress))
        finally:
            torch.set_num_threads(caller_threads)

    def _run_pool(self, cells, run_one: JobRun, on_start: OnStart, on_done: OnDone) -> None:
        from .worker import configure_worker

        # spawn, not fork: forking a process that already ran torch's thread pools can deadlock.
        workers = min(self.spec.jobs, len(cells))
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=configure_worker,
            initargs=(run_one.threads, run_one.plugins, os.getpid()),
        )
        try:
            # At most one cell per worker is submitted at a time, so on_start means "now running" and the
            # progress view never calls queued cells running.
            queue, futures = iter(cells), {}

            def submit_next() -> None:
                for cell in queue:
                    on_start(cell)
                    try:
                        futures[pool.submit(run_one, cell)] = cell
                        return
                    except BrokenProcessPool as exc:  # a worker died earlier: the rest fail as before, recorded
                        on_done(cell, failed_record(cell, f"worker process died: {exc}"))

            for _ in range(workers):
                submit_next()
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in finished:
                    cell = futures.pop(fut)
                    try:
                        record = fut.result()
                    except BrokenProcessPool as exc:
                        record = failed_record(cell, f"worker process died: {exc}")
                    except Exception as exc:  # pickling or similar: still record, never lose the cell
                        record = failed_record(cell, f"{type(exc).__name__}: {exc}")
                    on_done(cell, record)
                    submit_next()
        except KeyboardInterrupt:
            # Stop promptly: queued cells are cancelled, running ones abandoned (they have written no record,
            # so a rerun does them). The executor has no public way to stop running work, hence _processes.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
