"""The local executor's worker pool (``--jobs N``): what it tells the progress view and what it records."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import pytest

from dpgen_bench.executors import local
from dpgen_bench.executors.local import LocalExecutor, LocalSpec


@dataclass(frozen=True)
class _Job:
    name: str

    def failed_record(self, error: str) -> dict:
        return {"status": "failed", "name": self.name, "error": error}


class _Run:
    """A stand-in JobRun: sleeps a little and returns an ok record."""

    threads, plugins = 1, ()

    def __call__(self, job: _Job) -> dict:
        time.sleep(0.02)
        return {"status": "ok", "name": job.name}


@pytest.fixture
def thread_pool(monkeypatch):
    """The pool as threads: the scheduling under test is the executor's, not the processes'."""
    monkeypatch.setattr(local, "ProcessPoolExecutor",
                        lambda max_workers, **_: ThreadPoolExecutor(max_workers=max_workers))


def test_jobs_2_never_reports_more_than_2_cells_running_and_records_every_cell(thread_pool):
    running, most, done, lock = set(), [0], [], threading.Lock()

    def on_start(job):
        with lock:
            running.add(job.name)
            most[0] = max(most[0], len(running))

    def on_done(job, record):
        with lock:
            running.discard(job.name)
            done.append(record["name"])

    jobs = [_Job(f"cell{i}") for i in range(7)]
    LocalExecutor(LocalSpec(jobs=2))._run_pool(jobs, _Run(), on_start, on_done)
    assert most[0] == 2
    assert sorted(done) == sorted(j.name for j in jobs)


def test_after_the_pool_breaks_every_remaining_cell_is_recorded_failed(monkeypatch):
    class _Broken(ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            raise BrokenProcessPool("a worker was killed")

    monkeypatch.setattr(local, "ProcessPoolExecutor", lambda max_workers, **_: _Broken(max_workers=max_workers))
    records = []
    LocalExecutor(LocalSpec(jobs=2))._run_pool([_Job("a"), _Job("b"), _Job("c")], _Run(), lambda job: None,
                                              lambda job, record: records.append(record))
    assert len(records) == 3 and all("worker process died" in r["error"] for r in records)


def test_threads_per_job_split_the_cores_and_never_exceed_omp_num_threads(monkeypatch):
    monkeypatch.setattr(local.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [local.threads_per_job(j) for j in (1, 3, 16)] == [8, 2, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert [local.threads_per_job(j) for j in (1, 4)] == [4, 2]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert local.threads_per_job(1) == 1
    for ignored in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)
        assert local.threads_per_job(1) == 8
