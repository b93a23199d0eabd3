"""The audit grid of a benchmark config (``dpgen-bench audit``, or ``audit: true`` after ``dpgen-bench run``):
for every method and finite ε, the mechanism audit of the method and of each broken variant that applies
(power checks), and optionally the one-run black-box audit; one row each in ``audit.csv``.

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
    "delta", "accountant", "trials", "examples",
    "separation", "direction", "canaries", "guesses", "correct", "seconds", "method_config", "finished_at",
    "code_version",
]
"""Columns of ``audit.csv``: ``variant`` is ``correct`` or a broken variant's name; ``audit_kind``
``mechanism`` or ``one-run``; ``flagged`` = lower bound > claimed ε; ``mu_lower``, ``epsilon_lower_gdp``,
``flagged_gdp``: the mechanism audit's bound under a Gaussian trade-off curve (``dpgen_bench.audit.bounds``, (2);
empty for one-run audits); ``separation`` the estimated Gaussian-DP μ of the mechanism audit's statistic."""


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
    """``correct`` or the name of a broken variant (``dpgen_bench.audit.broken.VARIANTS``)."""
    kind: str
    """``mechanism`` or ``one-run``."""
    examples: int | None
    trials: int
    confidence: float
    one_run: dict[str, Any] | None = None
    seed: int = 0

    @property
    def key(self) -> str:
        return config_hash(asdict(self), 16)

    @property
    def name(self) -> str:
        return f"{self.label}[{self.variant}]/{self.kind}/eps={self.epsilon:g}"


@dataclass
class AuditSummary:
    root: Path
    total: int
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def build_audit_cells(config: BenchConfig, method_configs: dict[str, Any]) -> list[AuditCell]:
    """The audits of ``config``: per method (label) and finite ε, ``correct`` plus each applicable variant
    (mechanism audits, if the method has ``audit_release``), then ``one-run`` if configured."""
    from ..audit.broken import VARIANTS
    from ..registry import get_method

    spec, cells = config.audit, []
    for method in config.methods:
        cls = get_method(method.name)
        setting = spec.methods.get(method.display)
        resolved = method_configs[method.display]
        mc = {**resolved.model_dump(mode="json"), **(setting.config if setting else {})}
        base = dict(dataset=config.dataset, split_seed=config.split_seed, test_fraction=config.test_fraction,
                    method=method.name, label=method.display, method_config=mc, delta=config.delta,
                    accountant=config.accountant, examples=setting.examples if setting else None,
                    trials=spec.trials, confidence=spec.confidence)
        variants = ["correct"] + [v for v in spec.variants if VARIANTS.get(v).applies(cls)]
        for eps in config.epsilons:
            if math.isinf(eps):
                continue
            if callable(getattr(cls, "audit_release", None)):
                cells += [AuditCell(**base, epsilon=float(eps), variant=v, kind="mechanism") for v in variants]
            if spec.one_run is not None:
                one = {**base, "method_config": resolved.model_dump(mode="json"), "examples": None, "trials": 1}
                cells.append(AuditCell(**one, epsilon=float(eps), variant="correct", kind="one-run",
                                       one_run=spec.one_run.model_dump(mode="json")))
    return cells


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


def _mechanism(cell: AuditCell, splits, context: RunContext) -> dict[str, Any]:
    from ..audit import audit_method, with_canary
    from ..audit.canaries import canary_for

    data = _audit_data(splits.train, cell.examples)
    method = _method_class(cell)(cell.method_config, splits.info, seed=cell.seed, context=context)
    budget = _budget(cell, data)
    neighbour = with_canary(data, *canary_for(method, data))
    result = audit_method(method, data, neighbour, budget, trials=cell.trials, confidence=cell.confidence,
                          progress=context.progress)
    return {"claimed_epsilon": result.claimed_epsilon, "epsilon_lower": result.epsilon_lower,
            "mu_lower": result.gdp.mu_lower, "epsilon_lower_gdp": result.gdp.epsilon_lower,
            "delta": budget.delta, "separation": result.separation, "direction": result.direction,
            "examples": data.public_size()}


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
        "trials": cell.trials if cell.kind == "mechanism" else None,
        "method_config": json.dumps(cell.method_config, sort_keys=True), "code_version": versions().get("code_version"),
    }
    t0 = time.perf_counter()
    try:
        row.update((_mechanism if cell.kind == "mechanism" else _one_run)(cell, splits, context))
        row.update(status="ok", error=None, flagged=bool(row["epsilon_lower"] > row["claimed_epsilon"]))
        if row.get("epsilon_lower_gdp") is not None:
            row["flagged_gdp"] = bool(row["epsilon_lower_gdp"] > row["claimed_epsilon"])
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
    cells = build_audit_cells(config, method_configs)
    store = ResultsStore(config.output_dir)
    summary = AuditSummary(root=store.root, total=len(cells))
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
                             data_dir=config.data_dir, download=config.download) if todo else None
        context = RunContext(device=config.device, progress=False, cache_dir=store.root / "cache")
        for cell in tqdm(todo, desc="audits", disable=not progress):
            row = run_audit_cell(cell, splits, context)
            write_atomic(folder / f"{cell.key}.json", json.dumps(row, indent=1, default=str))
            write_audit_csv(store.root, keys)
            summary.ran.append(cell.name)
            if row["status"] != "ok":
                summary.failed.append((cell.name, row["error"]))
            elif row["flagged"] or row.get("flagged_gdp"):
                summary.flagged.append(cell.name)
    return summary


def _done(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
