"""The audit grid of a benchmark config (``dpgen-bench audit``, or ``audit: true`` after ``dpgen-bench run``):
for every method and finite ε, the hook-based mechanism audit of the method and of each broken variant that
applies (power checks) where the method has ``audit_release``, the generic mechanism audit of every method
(``dpgen_bench.audit.generic``), and optionally the one-run black-box audit; one row each in ``audit.csv``.
What could not run for a method and ε is an :class:`AuditGap` with its reason (never a silent skip).

Each audit is a job (:mod:`dpgen_bench.jobs.audit`) run by the config's executor (serial, ``--jobs``, Ray,
Slurm) through the same driver as the grid (:mod:`dpgen_bench.runner.driver`): resumable, its record written to
``audit/<key>.json`` when it finishes (the key hashes everything that determines it), finished audits skipped,
``audit.csv`` rebuilt after each one. See ``docs/audit.md`` for what the numbers mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..executors import Executor
from ..jobs import AUDITS, ResultsStore
from ..jobs.audit import (  # noqa: F401 (re-exported: the old place)
    AuditCell,
    AuditJob,
    AuditNotRun,
    make_audit,
    run_audit_cell,
)
from ..jobs.schema import AUDIT_COLUMNS, AUDIT_KINDS  # noqa: F401 (re-exported: the old place)
from .config import BenchConfig, resolve_methods
from .driver import JobSummary, job_run, open_executor, pending, run_jobs


@dataclass(frozen=True)
class AuditGap:
    """An audit that does not run for a method and ε, and why (reported by ``dpgen-bench audit``)."""

    method: str
    epsilon: float
    kind: str
    reason: str


@dataclass
class AuditSummary(JobSummary):
    """What an audit run did (:class:`~dpgen_bench.runner.driver.JobSummary`), the audits that flagged their
    method and the audits that could not run (:class:`AuditGap`)."""

    flagged: list[str] = field(default_factory=list)
    gaps: list[AuditGap] = field(default_factory=list)


def _audit_plan(config: BenchConfig, method_configs: dict[str, Any]) -> tuple[list[AuditJob], list[AuditGap]]:
    from ..audit.broken import variants_for
    from ..audit.generic import audit_config
    from ..registry import get_method

    spec, cells, gaps = config.audit, [], []
    for method in config.methods:
        cls = get_method(method.name)
        setting = spec.methods.get(method.display)
        resolved = method_configs[method.display].key_dump()
        public = method.public_data.model_dump(mode="json") if method.public_data is not None else None
        mc = {**resolved, **(setting.config if setting else {})}
        base = dict(dataset=config.dataset, split_seed=config.split_seed, test_fraction=config.test_fraction,
                    method=method.name, label=method.display, method_config=mc, delta=config.delta,
                    accountant=config.accountant, examples=setting.examples if setting else None,
                    trials=setting.trials if setting is not None and setting.trials is not None else spec.trials,
                    confidence=spec.confidence, public_data=public, data_dir=config.data_dir,
                    download=config.download, split=config.split, tuning_split=config.tuning_split)
        applicable = variants_for(cls)
        wanted = setting.variants if setting is not None and setting.variants is not None else spec.variants
        variants = ["correct"] + [v for v in wanted if v in applicable]
        for eps in config.epsilons:
            if math.isinf(eps):
                continue
            eps = float(eps)
            if cls.audit_release is not None:
                cells += [make_audit(**base, epsilon=eps, variant=v, kind="hook") for v in variants]
            else:
                gaps.append(AuditGap(method.display, eps, "hook", f"{cls.__name__} has no audit_release hook"))
            gspec = setting.generic if setting is not None and setting.generic is not None else spec.generic
            if gspec is not None:
                generic = {**base, "method_config": {**resolved, **audit_config(cls)},
                           "examples": gspec.examples, "trials": gspec.trials}
                cells.append(make_audit(**generic, epsilon=eps, variant="correct", kind="generic",
                                       max_seconds=gspec.max_seconds))
            else:
                gaps.append(AuditGap(method.display, eps, "generic", "switched off (audit.generic: null)"))
            if spec.one_run is not None:
                one = {**base, "method_config": resolved, "examples": None, "trials": 1}
                cells.append(make_audit(**one, epsilon=eps, variant="correct", kind="one-run",
                                       one_run=spec.one_run.model_dump(mode="json")))
            else:
                gaps.append(AuditGap(method.display, eps, "one-run", "not configured (audit.one_run)"))
    return cells, gaps


def build_audit_cells(config: BenchConfig, method_configs: dict[str, Any]) -> list[AuditJob]:
    """The audits of ``config``: per method (label) and finite ε, ``correct`` plus each applicable variant
    (``hook`` audits, if the method has ``audit_release``), the ``generic`` audit (unless switched off), then
    ``one-run`` if configured."""
    return _audit_plan(config, method_configs)[0]


def audit_gaps(config: BenchConfig, method_configs: dict[str, Any]) -> list[AuditGap]:
    """The audits that do not run for each method and finite ε of ``config``, with the reason."""
    return _audit_plan(config, method_configs)[1]


# ------------------------------------------------------------------------------------------------ the grid


def audit_dir(root: str | Path) -> Path:
    return Path(root) / "audit"


def read_audit_rows(root: str | Path, keys: list[str] | None = None) -> pd.DataFrame:
    """The recorded audit rows (of ``keys`` only, in that order, if given) as a frame with :data:`AUDIT_COLUMNS`."""
    return ResultsStore(root).frame(keys, AUDITS)


def write_audit_csv(root: str | Path, keys: list[str]) -> Path:
    return ResultsStore(root).rebuild_csv(keys, AUDITS)


def run_audits(config: BenchConfig, *, force: bool = False, progress: bool = True, lock: bool = True,
               executor: Executor | None = None) -> AuditSummary:
    """Run every audit of ``config`` that has not finished (all with ``force``) with the config's executor
    (``executor``: one already checked, e.g. the grid's); ``audit.csv`` stays current."""
    method_configs = resolve_methods(config)
    audits, gaps = _audit_plan(config, method_configs)
    store = ResultsStore(config.output_dir)
    summary = AuditSummary(root=store.root, total=len(audits), gaps=gaps, keys=[a.key for a in audits])
    executor = executor if executor is not None else open_executor(config)

    def flagged(job: AuditJob, record: dict[str, Any]) -> None:
        row = record["rows"][0]
        if record["status"] == "ok" and (row.get("flagged") or row.get("flagged_gdp")):
            summary.flagged.append(job.name)

    with store.lock() if lock else _NoLock():
        todo = pending(audits, store, summary, force)
        run_jobs(todo, AUDITS, store, summary, executor, job_run(config, executor, store.root), progress=progress,
                 on_record=flagged, unit="audit")
    return summary


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
