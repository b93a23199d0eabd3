"""Audit jobs (``docs/audit.md``): the mechanism audit of a method through its ``audit_release`` hook (``hook``)
or through whole fits (``generic``), and the one-run black-box audit (``one-run``). Each is a job like a training
cell: a key, a record in ``audit/<key>.json`` (one row, :data:`~dpgen_bench.jobs.schema.AUDIT_COLUMNS`), run by any
executor. The planning of a config's audits is the runner's (:mod:`dpgen_bench.runner.audits`)."""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..context import RunContext
from ..data.types import ImageDataset
from ..privacy.budget import PrivacyBudget
from .base import MethodJob, record
from .provenance import versions
from .private_text import exception_report
from .schema import AUDIT_KINDS, AUDITS


@dataclass(frozen=True, kw_only=True)
class AuditJob(MethodJob):
    """One audit: everything that determines its row. Built by :func:`make_audit`, which picks the spec of its
    kind (:class:`MechanismAudit` or :class:`OneRunAudit`)."""

    table = AUDITS
    KINDS: ClassVar[tuple[str, ...]] = AUDIT_KINDS

    variant: str
    """``correct`` or the name of a broken variant (``dpgen_bench.audit.broken.variants_for``)."""
    kind: str
    """One of :data:`~dpgen_bench.jobs.schema.AUDIT_KINDS`."""
    examples: int | None
    trials: int
    confidence: float
    one_run: dict[str, Any] | None = None
    max_seconds: float | None = None
    """The generic audit's wall-time cap."""

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"{type(self).__name__}: kind {self.kind!r} is not one of {list(self.KINDS)}")

    def key_data(self) -> dict[str, Any]:
        # Every field but where the data lives, as audit keys have always been (a non-pooled split is added).
        data = {k: v for k, v in asdict(self).items() if k not in (*self.PLACEMENT, "tuning_split")}
        if self.split != "pooled":
            data["split"] = self.split
        if self.tuning_split:  # the audit's D is drawn from a train split without the tuning part
            data["tuning_split"] = True
        return data

    @property
    def name(self) -> str:
        return f"{self.label}[{self.variant}]/{self.kind}/eps={self.epsilon:g}"

    def row_facts(self) -> dict[str, Any]:
        return {
            "audit_key": self.key, "dataset": self.dataset, "method": self.label, "method_name": self.method,
            "variant": self.variant, "audit_kind": self.kind, "target_epsilon": self.epsilon,
            "confidence": self.confidence, "accountant": self.accountant,
            "trials": self.trials if self.kind != "one-run" else None,
            "public_dataset": (self.public_data or {}).get("dataset"),
            "method_config": json.dumps(self.method_config, sort_keys=True),
            "code_version": versions().get("code_version"),
        }

    def run(self, root: str | Path, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
        from .public import with_public_data
        from .training import load_cell_splits

        context = RunContext(device=str(device), progress=progress, cache_dir=Path(root) / "cache")
        try:
            splits = load_cell_splits(self)
            # the audit's fits pre-train on the method's public data, as its cells do
            context = with_public_data(context, self.public_data, splits.info, data_dir=self.data_dir,
                                       download=self.download)
        except Exception as exc:  # the data did not load: this audit fails, the others go on
            return self.failed_record(f"{type(exc).__name__}: {exc}")
        row = run_audit_cell(self, splits, context)
        return record(self, row["status"], row["error"], [row])


@dataclass(frozen=True, kw_only=True)
class MechanismAudit(AuditJob):
    """The mechanism audit: through the method's ``audit_release`` hook (``hook``) or whole fits (``generic``)."""

    KINDS: ClassVar[tuple[str, ...]] = ("hook", "generic")


@dataclass(frozen=True, kw_only=True)
class OneRunAudit(AuditJob):
    """The one-run black-box audit: one fit with canaries included by public coins (``one_run``: its settings)."""

    KINDS: ClassVar[tuple[str, ...]] = ("one-run",)


AuditCell = AuditJob
"""The old name of :class:`AuditJob`."""


def make_audit(**fields: Any) -> AuditJob:
    """The audit spec of ``fields["kind"]``: :class:`OneRunAudit` for ``one-run``, else :class:`MechanismAudit`."""
    return (OneRunAudit if fields.get("kind") == "one-run" else MechanismAudit)(**fields)


def _audit_data(train: ImageDataset, examples: int | None) -> ImageDataset:
    """The audit's D: the first ``examples`` train examples, declared as their own size (or all of them)."""
    if examples is None:
        return train
    if examples > len(train):
        raise ValueError(f"audit examples={examples} exceeds the {len(train)} train examples")
    return ImageDataset(train.images[:examples], train.labels[:examples], train.info, split="train",
                        nominal_size=examples)


def _method_class(cell: AuditJob):
    from ..audit.broken import broken_class
    from ..registry import get_method

    cls = get_method(cell.method)
    return cls if cell.variant == "correct" else broken_class(cls, cell.variant)


def _budget(cell: AuditJob, data: ImageDataset) -> PrivacyBudget:
    return PrivacyBudget.from_setting(cell.epsilon, cell.delta, data.public_size(), cell.accountant)


class AuditNotRun(RuntimeError):
    """An audit that did not run for a stated reason (e.g. the budget cap): a ``not-run`` row."""


def _gdp_fields(result, holds: bool) -> dict[str, Any]:
    """The Gaussian-trade-off bound's columns, filled only where the assumption holds."""
    if not holds:
        return {"gaussian_tradeoff": False, "mu_lower": None, "epsilon_lower_gdp": None}
    return {"gaussian_tradeoff": True, "mu_lower": result.gdp.mu_lower, "epsilon_lower_gdp": result.gdp.epsilon_lower}


def _mechanism(cell: AuditJob, splits, context: RunContext) -> dict[str, Any]:
    from ..audit import audit_method, with_canary
    from ..audit.canaries import canary_for
    from ..audit.generic import gaussian_tradeoff_holds
    from ..audit.method_audit import PROJECTED, claimed_ledger

    data = _audit_data(splits.train, cell.examples)
    method = _method_class(cell)(cell.method_config, splits.info, seed=cell.seed, context=context)
    budget = _budget(cell, data)
    neighbour = with_canary(data, *canary_for(method, data))
    ledger = claimed_ledger(method, data, budget)
    result = audit_method(method, data, neighbour, budget, trials=cell.trials, confidence=cell.confidence,
                          progress=context.progress)
    return {"claimed_epsilon": result.claimed_epsilon, "epsilon_lower": result.epsilon_lower,
            **_gdp_fields(result, ledger is not None and gaussian_tradeoff_holds(ledger.events)),
            "delta": budget.delta, "separation": result.separation, "direction": result.direction,
            "examples": data.public_size(), "canary": "the method's audit_canary",
            "release": "audit_release" + (" projected on audit_direction" if result.direction == PROJECTED else "")}


def _generic(cell: AuditJob, splits, context: RunContext) -> dict[str, Any]:
    from ..audit.generic import audit_any_method

    data = _audit_data(splits.train, cell.examples)
    budget = _budget(cell, data)
    audit = audit_any_method(_method_class(cell), data, budget, trials=cell.trials, config=cell.method_config,
                             max_seconds=cell.max_seconds, confidence=cell.confidence, context=context,
                             seed=cell.seed, progress=context.progress)
    row = {"claimed_epsilon": audit.claimed_epsilon, "delta": budget.delta, "examples": data.public_size(),
           "trials": audit.trials, "trials_requested": audit.trials_requested, "capped": audit.capped,
           "release": f"{audit.release} ({audit.release_size} numbers)", "canary": audit.canary}
    if audit.result is None:
        raise AuditNotRun(audit.reason, row)
    result = audit.result
    return {**row, "epsilon_lower": result.epsilon_lower, **_gdp_fields(result, audit.gaussian_tradeoff),
            "separation": result.separation, "direction": result.direction}


def _one_run(cell: AuditJob, splits, context: RunContext) -> dict[str, Any]:
    from ..audit.one_run import canary_inclusion, guesses_for, membership_scores, one_run_bound, with_canaries
    from ..features import get_extractor
    from ..privacy.ledger import PrivacyLedger

    spec = cell.one_run or {}
    m = int(spec["canaries"])
    if m > len(splits.test):
        raise ValueError(f"one-run audit: {m} canaries but only {len(splits.test)} test examples to make them from")
    # Canaries: inverted test images (never in the train split; white backgrounds are rare, so memorising one
    # shows in the nearest synthetic sample), each included with probability ½ by public coins.
    images, labels = 1.0 - splits.test.images[:m], splits.test.labels[:m]
    included = canary_inclusion(m, cell.seed)
    train = with_canaries(splits.train, images[included], labels[included])
    method = _method_class(cell)(cell.method_config, splits.info, seed=cell.seed, context=context)
    budget = _budget(cell, splits.train)
    ledger = PrivacyLedger()
    method.fit(train, budget, ledger)
    samples, _ = method.sample(int(spec["n_samples"]), seed=cell.seed)
    extractor = get_extractor(spec["extractor"], device=context.device)
    scores = membership_scores(extractor.extract(images), extractor.extract(samples))
    result = one_run_bound(scores, included, guesses_for(m), budget.delta, ledger.epsilon(budget), cell.confidence)
    return {"claimed_epsilon": result.claimed_epsilon, "epsilon_lower": result.epsilon_lower, "delta": budget.delta,
            "canaries": m, "guesses": result.guesses, "correct": result.correct,
            "examples": splits.train.public_size()}


def run_audit_cell(cell: AuditJob, splits, context: RunContext) -> dict[str, Any]:
    """The audit's row; a failure is a row with ``status="failed"`` and the error, never an exception."""
    row: dict[str, Any] = cell.row_facts()
    run = {"hook": _mechanism, "generic": _generic, "one-run": _one_run}[cell.kind]
    t0 = time.perf_counter()
    try:
        row.update(run(cell, splits, context))
        row.update(status="ok", error=None, flagged=bool(row["epsilon_lower"] > row["claimed_epsilon"]))
        if row.get("epsilon_lower_gdp") is not None:
            row["flagged_gdp"] = bool(row["epsilon_lower_gdp"] > row["claimed_epsilon"])
    except AuditNotRun as exc:  # a stated reason, not a failure
        reason, partial = exc.args
        row.update(partial)
        row.update(status="not-run", error=reason, flagged=None)
    except Exception as exc:  # the audit fails; the others go on
        error, report = exception_report(exc, private=cell.private)  # figures scrubbed for a private audit
        row.update(status="failed", error=error, flagged=None, traceback=report)
    row.update(seconds=time.perf_counter() - t0,
               finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return row
