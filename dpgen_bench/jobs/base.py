"""The job model every kind of job shares: a frozen, picklable spec with a key (the hash of everything that
determines its result), a name, the table its record goes to, and :meth:`Job.run`, which runs it in whichever
process an executor chose and returns its record (never writes it: the driver is the store's only writer).

A record is one model for every kind: ``{"key", "name", "status", "error", "cell": the key's data, "rows": [...],
"artefacts": {file: size and SHA-256}}``; its rows have the columns of its table (:mod:`dpgen_bench.jobs.schema`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .keys import config_hash
from .schema import Table


class Job(ABC):
    """One unit of work an executor runs (docs/executors.md): a training cell, an audit, an evaluation."""

    table: ClassVar[Table]
    """Where its record is stored (``cells/`` → ``results.csv`` or ``audit/`` → ``audit.csv``)."""

    @abstractmethod
    def key_data(self) -> dict[str, Any]:
        """Everything that determines the result (and nothing that does not: the device, where data lives)."""

    @property
    def key(self) -> str:
        """Resume key: 16 hex digits of the hash of :meth:`key_data`."""
        return config_hash(self.key_data(), 16)

    @property
    @abstractmethod
    def name(self) -> str:
        """Human-readable name (progress lines, summaries)."""

    @property
    def private(self) -> bool:
        """Whether its time and memory may depend on private sizes (the actual n, Poisson batch sizes): then
        no progress line times it. Unknown counts as private; :class:`MethodJob`: trained at a finite ε."""
        return True

    @abstractmethod
    def row_facts(self) -> dict[str, Any]:
        """The columns of its rows known before it runs (a failed record carries at least these)."""

    @abstractmethod
    def run(self, root: str | Path, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
        """Run it, writing its artefacts under ``root``; return its record. Never raises for a problem of the
        job itself: that is a record with ``status="failed"`` and the error."""

    def failed_record(self, error: str) -> dict[str, Any]:
        """The record of a job whose worker died (killed, preempted beyond its retries, out of memory) before it
        could return one; the driver writes it, so the job shows as failed with ``error`` as the reason (its
        figures scrubbed for a private job: a worker's death message can print the memory it used)."""
        from .private_text import job_error_text

        error = job_error_text(error, self.private)
        return record(self, "failed", error, [{**self.row_facts(), "status": "failed", "error": error}])


def record(job: Job, status: str, error: str | None, rows: list[dict[str, Any]],
           artefacts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of ``job`` (the one record model of every kind of job)."""
    return {"key": job.key, "name": job.name, "status": status, "error": error, "cell": job.key_data(),
            "rows": rows, "artefacts": artefacts or {}}


@dataclass(frozen=True, kw_only=True)
class MethodJob(Job):
    """The fields every job that fits a registered method on a dataset's private split shares (a training cell,
    an audit). ``data_dir``, ``download`` and ``split`` say where the data comes from; only a non-default
    ``split`` (and ``tuning_split`` when True) is part of a key (see the subclasses' :meth:`key_data`)."""

    dataset: str
    split_seed: int
    test_fraction: float
    method: str
    """Registered method name."""
    label: str
    """Display label (tables)."""
    method_config: dict[str, Any]
    epsilon: float
    delta: float | str
    """A value, or the rule ``"1/(n ln n)"``."""
    accountant: str
    seed: int = 0
    public_data: dict[str, Any] | None = None
    """The method entry's validated ``public_data`` (dataset, resize, ...) or None."""
    data_dir: str | None = None
    download: bool = False
    split: str = "pooled"
    """``pooled`` or ``official`` (:data:`dpgen_bench.data.SPLITS`)."""
    tuning_split: bool = False
    """Whether the declared tuning split is held out of train and test (part of a key only when True)."""

    PLACEMENT: ClassVar[tuple[str, ...]] = ("data_dir", "download", "split")
    """Fields that say where the data lives, not what is computed (``split``: only ``pooled``)."""

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)
