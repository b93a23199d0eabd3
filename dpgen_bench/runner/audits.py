"""The audit grid of a benchmark config (``dpgen-bench audit``, or ``audit: true`` after ``dpgen-bench run``):
for every method and finite ε, the hook-based mechanism audit of the method and of each broken variant that
applies (power checks) where the method has ``audit_release``, the generic mechanism audit of every method
(``dpgen_bench.audit.generic``), and optionally the one-run black-box audit; one row each in ``audit.csv``.
What could not run for a method and ε is an :class:`AuditGap` with its reason (never a silent skip).

Resumable like the grid: each audit's row is written to ``audit/<key>.json`` when it finishes (the key hashes
everything that determines it), finished audits are skipped, and ``audit.csv`` is rebuilt after each one.
See ``docs/audit.md`` for what the numbers mean.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..context import RunContext
from ..data.types import ImageDataset
from ..files import write_atomic
from ..privacy.budget import PrivacyBudget
from .config import BenchConfig, resolve_methods
from .grid import config_hash
from .provenance import versions
from .store import ResultsStore

AUDIT_COLUMNS = [
    "audit_key", "status", "error", "dataset", "method", "method_name", "variant", "audit_kind", "target_epsilon",
    "claimed_epsilon", "epsilon_lower", "confidence", "flagged", "mu_lower", "epsilon_lower_gdp", "flagged_gdp",
    "gaussian_tradeoff", "delta", "accountant", "trials", "trials_requested", "capped", "examples", "release",
    "canary", "public_dataset",
    "separation", "direction", "canaries", "guesses", "correct", "seconds", "method_config", "finished_at",
    "code_version",
]
"""Columns of ``audit.csv``: ``status`` ``ok``, ``failed`` or ``not-run`` (the budget cap left too few trials;
``error`` says why); ``variant`` is ``correct`` or a broken variant's name; ``audit_kind`` ``hook`` (the
mechanism audit through the method's ``audit_release``), ``generic`` (whole fits, the checkpoint released) or
``one-run``; ``flagged`` = lower bound > claimed ε; ``mu_lower``, ``epsilon_lower_gdp``, ``flagged_gdp``: the
bound under a Gaussian trade-off curve (``dpgen_bench.audit.bounds``, (2)), filled only where
``gaussian_tradeoff`` (every audited event an unsubsampled Gaussian); ``trials_requested``/``capped``: the
generic audit's budget cap; ``release`` (``checkpoint``/``samples``) and ``canary`` (the rule that chose it);
``public_dataset``: public data the fits pre-trained on, as in the method's cells; ``separation`` the
estimated Gaussian-DP μ of the mechanism statistic."""

AUDIT_KINDS = ("hook", "generic", "one-run")


@dataclass(frozen=True)
class AuditCell:
    """One audit: everything that determines its row."""

    dataset: str
    split_seed: int
    test_fraction: float
    method: str
    label: str
    method_config: dict[str, Any]
    epsilon: float
    delta: float | str
    accountant: str
    variant: str
    """``correct`` or the name of a broken variant (``dpgen_bench.audit.broken.variants_for``)."""
    kind: str
    """One of :data:`AUDIT_KINDS`."""
    examples: int | None
    trials: int
    confidence: float
    one_run: dict[str, Any] | None = None
    seed: int = 0
    public_data: dict[str, Any] | None = None
    """The method entry's ``public_data``: every fit of the audit gets it, as the method's cells do."""
    max_seconds: float | None = None
    """The generic audit's wall-time cap."""

    @property
    def key(self) -> str:
        return config_hash(asdict(self), 16)

    @property
    def name(self) -> str:
        return f"{self.label}[{self.variant}]/{self.kind}/eps={self.epsilon:g}"


@dataclass(frozen=True)
class AuditGap:
    """An audit that does not run for a method and ε, and why (reported by ``dpgen-bench audit``)."""

    method: str
    epsilon: float
    kind: str
    reason: str


@dataclass
class AuditSummary:
    root: Path
    total: int
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    gaps: list[AuditGap] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    """The keys of this config's audits (its rows in ``audit.csv``, in order)."""

    @property
    def ok(self) -> bool:
        return not self.failed


def _audit_plan(config: BenchConfig, method_configs: dict[str, Any]) -> tuple[list[AuditCell], list[AuditGap]]:
    from ..audit.broken import variants_for
    from ..audit.generic import audit_config
    from ..registry import get_method

    spec, cells, gaps = config.audit, [], []
    for method in config.methods:
        cls = get_method(method.name)
        setting = spec.methods.get(method.display)
        resolved = method_configs[method.display].model_dump(mode="json")
        public = method.public_data.model_dump(mode="json") if method.public_data is not None else None
        mc = {**resolved, **(setting.config if setting else {})}
        base = dict(dataset=config.dataset, split_seed=config.split_seed, test_fraction=config.test_fraction,
                    method=method.name, label=method.display, method_config=mc, delta=config.delta,
                    accountant=config.accountant, examples=setting.examples if setting else None,
                    trials=setting.trials if setting is not None and setting.trials is not None else spec.trials,
                    confidence=spec.confidence, public_data=public)
        applicable = variants_for(cls)
        variants = ["correct"] + [v for v in spec.variants if v in applicable]
        for eps in config.epsilons:
            if math.isinf(eps):
                continue
            eps = float(eps)
            if cls.audit_release is not None:
                cells += [AuditCell(**base, epsilon=eps, variant=v, kind="hook") for v in variants]
            else:
                gaps.append(AuditGap(method.display, eps, "hook", f"{cls.__name__} has no audit_release hook"))
            gspec = setting.generic if setting is not None and setting.generic is not None else spec.generic
            if gspec is not None:
                generic = {**base, "method_config": {**resolved, **audit_config(cls)},
                           "examples": gspec.examples, "trials": gspec.trials}
                cells.append(AuditCell(**generic, epsilon=eps, variant="correct", kind="generic",
                                       max_seconds=gspec.max_seconds))
            else:
                gaps.append(AuditGap(method.display, eps, "generic", "switched off (audit.generic: null)"))
            if spec.one_run is not None:
                one = {**base, "method_config": resolved, "examples": None, "trials": 1}
                cells.append(AuditCell(**one, epsilon=eps, variant="correct", kind="one-run",
                                       one_run=spec.one_run.model_dump(mode="json")))
            else:
                gaps.append(AuditGap(method.display, eps, "one-run", "not configured (audit.one_run)"))
    return cells, gaps


def build_audit_cells(config: BenchConfig, method_configs: dict[str, Any]) -> list[AuditCell]:
    """The audits of ``config``: per method (label) and finite ε, ``correct`` plus each applicable variant
    (``hook`` audits, if the method has ``audit_release``), the ``generic`` audit (unless switched off), then
    ``one-run`` if configured."""
    return _audit_plan(config, method_configs)[0]


def audit_gaps(config: BenchConfig, method_configs: dict[str, Any]) -> list[AuditGap]:
    """The audits that do not run for each method and finite ε of ``config``, with the reason."""
    return _audit_plan(config, method_configs)[1]


# ------------------------------------------------------------------------------------------------ one audit


def _audit_data(train: ImageDataset, examples: int | None) -> ImageDataset:
    """The audit's D: the first ``examples`` train examples, declared as their own size (or all of them)."""
    if examples is None:
        return train
    if examples > len(train):
        raise ValueError(f"audit examples={examples} exceeds the {len(train)} train examples")
    return ImageDataset(train.images[:examples], train.labels[:examples], train.info, split="train",
                        nominal_size=examples)


def _method_class(cell: AuditCell):
    from ..audit.broken import broken_class
    from ..registry import get_method

    cls = get_method(cell.method)
    return cls if cell.variant == "correct" else broken_class(cls, cell.variant)


def _budget(cell: AuditCell, data: ImageDataset) -> PrivacyBudget:
    return PrivacyBudget.from_setting(cell.epsilon, cell.delta, data.public_size(), cell.accountant)


class AuditNotRun(RuntimeError):
    """An audit that did not run for a stated reason (e.g. the budget cap): a ``not-run`` row."""


def _gdp_fields(result, holds: bool) -> dict[str, Any]:
    """The Gaussian-trade-off bound's columns, filled only where the assumption holds."""
    if not holds:
        return {"gaussian_tradeoff": False, "mu_lower": None, "epsilon_lower_gdp": None}
    return {"gaussian_tradeoff": True, "mu_lower": result.gdp.mu_lower, "epsilon_lower_gdp": result.gdp.epsilon_lower}


def _mechanism(cell: AuditCell, splits, context: RunContext) -> dict[str, Any]:
    from ..audit import audit_method, with_canary
    from ..audit.canaries import canary_for
    from ..audit.generic import gaussian_tradeoff_holds
    from ..audit.method_audit import claimed_ledger

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
            "examples": data.public_size(), "release": "audit_release", "canary": "the method's audit_canary"}


def _generic(cell: AuditCell, splits, context: RunContext) -> dict[str, Any]:
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


def _one_run(cell: AuditCell, splits, context: RunContext) -> dict[str, Any]:
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


def run_audit_cell(cell: AuditCell, splits, context: RunContext) -> dict[str, Any]:
    """The audit's row; a failure is a row with ``status="failed"`` and the error, never an exception."""
    row: dict[str, Any] = {
        "audit_key": cell.key, "dataset": cell.dataset, "method": cell.label, "method_name": cell.method,
        "variant": cell.variant, "audit_kind": cell.kind, "target_epsilon": cell.epsilon,
        "confidence": cell.confidence, "accountant": cell.accountant,
        "trials": cell.trials if cell.kind != "one-run" else None,
        "public_dataset": (cell.public_data or {}).get("dataset"),
        "method_config": json.dumps(cell.method_config, sort_keys=True), "code_version": versions().get("code_version"),
    }
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
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}", flagged=None,
                   traceback=traceback.format_exc())
    row.update(seconds=time.perf_counter() - t0,
               finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return row


# ------------------------------------------------------------------------------------------------ the grid


def audit_dir(root: str | Path) -> Path:
    return Path(root) / "audit"


def read_audit_rows(root: str | Path, keys: list[str] | None = None) -> pd.DataFrame:
    """The recorded audit rows (of ``keys`` only, in that order, if given) as a frame with :data:`AUDIT_COLUMNS`."""
    folder = audit_dir(root)
    rows = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        rows.append(json.loads(path.read_text()))
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(AUDIT_COLUMNS + [c for r in rows for c in r])))
    if keys is not None:
        order = {k: i for i, k in enumerate(keys)}
        frame = frame[frame["audit_key"].isin(order)]
        frame = frame.iloc[frame["audit_key"].map(order).argsort()]
    return frame.reset_index(drop=True)


def write_audit_csv(root: str | Path, keys: list[str]) -> Path:
    frame = read_audit_rows(root, keys)
    return write_atomic(Path(root) / "audit.csv", frame[AUDIT_COLUMNS].to_csv(index=False))


def run_audits(config: BenchConfig, *, force: bool = False, progress: bool = True, lock: bool = True) -> AuditSummary:
    """Run every audit of ``config`` that has not finished (all with ``force``); ``audit.csv`` stays current."""
    from ..data import load_splits

    method_configs = resolve_methods(config)
    cells, gaps = _audit_plan(config, method_configs)
    store = ResultsStore(config.output_dir)
    summary = AuditSummary(root=store.root, total=len(cells), gaps=gaps, keys=[c.key for c in cells])
    folder = audit_dir(store.root)
    folder.mkdir(parents=True, exist_ok=True)
    keys = [c.key for c in cells]
    todo = [c for c in cells if force or not _done(folder / f"{c.key}.json")]
    summary.skipped = [c.name for c in cells if c not in todo]
    guard = store.lock() if lock else _NoLock()
    with guard:
        write_audit_csv(store.root, keys)
        splits = load_splits(config.dataset, seed=config.split_seed, test_fraction=config.test_fraction,
                             tuning=config.tuning_split,
                             data_dir=config.data_dir, download=config.download, split=config.split) if todo else None
        context = RunContext(device=config.device, progress=False, cache_dir=store.root / "cache")
        for cell in tqdm(todo, desc="audits", disable=not progress):
            row = run_audit_cell(cell, splits, _with_public_data(context, cell, splits, config))
            write_atomic(folder / f"{cell.key}.json", json.dumps(row, indent=1, default=str))
            write_audit_csv(store.root, keys)
            summary.ran.append(cell.name)
            if row["status"] != "ok":
                summary.failed.append((cell.name, row["error"]))
            elif row["flagged"] or row.get("flagged_gdp"):
                summary.flagged.append(cell.name)
    return summary


def _with_public_data(context: RunContext, cell: AuditCell, splits, config: BenchConfig) -> RunContext:
    """The context of a cell of this method: with its public data, so the audit's fits pre-train on it as the
    method's cells do (a method without public data: ``context`` unchanged)."""
    if cell.public_data is None:
        return context
    import dataclasses

    from .public import load_public_data

    return dataclasses.replace(context, public_data=load_public_data(
        cell.public_data, splits.info, data_dir=config.data_dir, download=config.download))


def _done(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("status") in ("ok", "not-run")  # not-run: a stated reason
    except (OSError, ValueError):
        return False


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
