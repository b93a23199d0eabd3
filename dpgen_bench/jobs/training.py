"""Running one cell, in four steps a reader can follow (:func:`run_cell`):

1. **train and check the spend** — build the method, fit it with a fresh ledger, recompute ε from the ledger;
2. **sample and validate** — draw the samples every metric needs, refuse a wrong shape, NaN or range;
3. **evaluate** — the metrics of :func:`evaluate_samples` (shared with ``dpgen-bench evaluate``);
4. **write the artefacts** — samples, grid, checkpoint, ledger; then return the record (the driver writes it).

:func:`run_cell` never raises for a problem of the cell itself (an exception in the method, NaN samples or
metrics, a privacy check that fails): it returns a record with ``status="failed"`` and the error, so the
other cells still run. The record is what :class:`~dpgen_bench.jobs.store.ResultsStore` stores.

The spec of a training cell is :class:`Cell`; ``Cell.run`` is :func:`run_cell`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..context import RunContext
from ..data.types import ImageDataset
from ..files import write_atomic
from ..method import GenerativeMethod
from ..privacy.budget import NEIGHBOURING, PrivacyBudget
from ..privacy.ledger import PrivacyLedger
from .base import MethodJob, record
from .evaluation import EvaluationSpec
from .keys import config_hash
from .memory import measure_peak_memory
from .notices import warnings_from
from .private_text import exception_report
from .provenance import versions
from .samples import check_samples, save_grid, save_samples
from .schema import RESULTS
from .store import ResultsStore, artefact_digests
from .tuned_on import tuned_on_reported_data

CELL_ARTEFACTS = ("samples.npz", "samples.png", "ledger.json", "checkpoint/state.pt", "checkpoint/method.json")
"""Files a finished cell leaves in its folder; their sizes and SHA-256 go into its record."""


PRIVATE_CELL_WITHHELD = ("fit_time_s", "wall_time_s", "peak_memory_mb", "peak_gpu_memory_mb")
"""Row fields recorded only for ε = ∞ cells: a private cell's time and memory depend on the actual n and the
Poisson batch sizes, which are private (README, "Privacy": what a results row releases)."""

WITHHELD_REASON = ("withheld for a private cell: time and memory depend on the private dataset size and Poisson "
                   "batch sizes (README, privacy)")


def withhold_private_figures(facts: dict[str, Any], private: bool) -> dict[str, Any]:
    """For a private cell, replace every figure that depends on the actual n or the Poisson batch sizes by None
    and say why (``resources_missing_reason``); ``finished_at`` keeps the day only (with the log's start
    time it would give the wall time). ε = ∞ cells keep them all. Returns ``facts``, changed in place."""
    if not private:
        facts["resources_missing_reason"] = None
        return facts
    for name in PRIVATE_CELL_WITHHELD:
        facts[name] = None
    if facts.get("finished_at"):
        facts["finished_at"] = str(facts["finished_at"])[:10]
    facts["resources_missing_reason"] = WITHHELD_REASON
    return facts


class PrivacyCheckError(RuntimeError):
    """The ε recomputed from the ledger exceeds the target, or a private run recorded nothing."""


@dataclass(frozen=True, kw_only=True)
class Cell(MethodJob):
    """A training cell: everything that determines one benchmark result (and nothing that does not, e.g. the
    device).

    ``method_config`` is the method's *fully resolved* config (defaults filled in), so a change of a
    method's default changes the key and the cell is recomputed.
    """

    table = RESULTS
    evaluation: EvaluationSpec
    tuned_on: str = "undeclared"
    """What the cell's settings were chosen on (:mod:`dpgen_bench.jobs.tuned_on`); recorded, not in the key."""

    def key_data(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("data_dir", "download", "public_data", "split", "tuning_split", "tuned_on")}
        if self.split != "pooled":  # only then: pooled cells keep the keys they always had
            data["split"] = self.split
        # Where the data lives and whether it may be downloaded do not change the result.
        if self.public_data is not None:  # only then: cells without public data keep the keys they always had
            data["public_data"] = {k: v for k, v in self.public_data.items() if k not in ("data_dir", "download")}
        if self.tuning_split:  # only then, for the same reason
            data["tuning_split"] = True
        data["method_config"] = dict(self.method_config)
        data["evaluation"] = self.evaluation.key_data()
        if self.evaluation.protocol == "dpgen-bench":  # the default protocol's cells keep the keys they always had
            for key in ("protocol", "selection", "dpimagebench"):
                data["evaluation"].pop(key)
        return data

    @property
    def method_config_hash(self) -> str:
        return config_hash({"method": self.method, "config": self.method_config})

    @property
    def name(self) -> str:
        eps = "inf" if math.isinf(self.epsilon) else f"{self.epsilon:g}"
        return f"{self.dataset}/{self.label}/eps={eps}/seed={self.seed}"

    def row_facts(self) -> dict[str, Any]:
        """The columns every row of the cell carries, known before it runs (where it runs aside)."""
        return {
            "cell_key": self.key,
            "dataset": self.dataset,
            "method": self.label,
            "method_name": self.method,
            "method_config_hash": self.method_config_hash,
            "method_config": json.dumps(self.method_config, sort_keys=True),
            "tuned_on": self.tuned_on,
            "tuned_on_reported_data": tuned_on_reported_data(self.tuned_on, self.dataset, self.tuning_split),
            "target_epsilon": self.epsilon,
            "accountant": self.accountant,
            "neighbouring": NEIGHBOURING,
            "seed": self.seed,
            "split": self.split,
            "split_seed": self.split_seed,
            "public_dataset": self.public_data["dataset"] if self.public_data is not None else None,
        }

    def run(self, root: str | Path, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
        return run_cell(self, root, device=device, progress=progress)


@functools.lru_cache(maxsize=2)
def _splits(dataset: str, split_seed: int, test_fraction: float, data_dir: str | None, download: bool,
            split: str = "pooled", tuning: bool = False):
    from ..data import load_splits

    return load_splits(dataset, seed=split_seed, test_fraction=test_fraction, data_dir=data_dir, download=download,
                       split=split, tuning=tuning)


def load_cell_splits(cell: MethodJob):
    """The job's (train, test, info[, val, tuning]) splits (cached per process: every cell of a run shares them)."""
    return _splits(cell.dataset, cell.split_seed, cell.test_fraction, cell.data_dir, cell.download, cell.split,
                   cell.tuning_split)


def budget_for(cell: Cell, nominal_train_size: int) -> PrivacyBudget:
    """The cell's budget, carrying its accountant; the δ rule uses the *declared* train size n̂."""
    return PrivacyBudget.from_setting(cell.epsilon, cell.delta, nominal_train_size, cell.accountant)


def check_spend(spent: float, ledger: PrivacyLedger, budget: PrivacyBudget, method: str) -> None:
    """:class:`PrivacyCheckError` if ``spent`` (ε recomputed from ``ledger`` with the budget's accountant)
    exceeds the target beyond float rounding, or a private run recorded nothing."""
    if len(ledger) == 0:
        raise PrivacyCheckError(
            f"{method} trained at ε={budget.epsilon:g} but recorded no release in the ledger; "
            f"every data-dependent release must be recorded"
        )
    if not budget.admits(spent):  # also catches NaN
        raise PrivacyCheckError(
            f"ε recomputed from the ledger is {spent:.6g} with accountant {budget.accountant!r}, above the "
            f"target {budget.epsilon:g} (δ={budget.delta:.3g}): the method released more than it calibrated for"
        )


def _metric_row(m: Any) -> dict[str, Any]:
    value = m.value
    if value is not None:
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"metric {m.name!r} came out as {value}; a metric that cannot be computed must be missing with a reason")
    details = getattr(m, "details", None) or {}
    return {
        "metric": m.name,
        "value": value,
        "direction": m.direction,
        "missing_reason": m.missing_reason,
        "n_real": m.n_real,
        "n_fake": m.n_fake,
        "extractor": m.extractor,
        "same_space_as_training": bool(getattr(m, "same_space_as_training", False)),
        "metric_details": json.dumps(details, sort_keys=True, default=str),
    }


def evaluate_samples(
    images: torch.Tensor,
    labels: torch.Tensor,
    labelled: bool,
    test,
    evaluation: EvaluationSpec,
    *,
    root: str | Path,
    seed: int,
    split_seed: int,
    train_extractor: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    train: ImageDataset | None = None,
    val: ImageDataset | None = None,
) -> list[dict[str, Any]]:
    """The metric rows of one set of samples (images in [0, 1], NCHW) against the real ``test`` split under
    the evaluation protocol ``evaluation``; the first k samples serve a metric that asks for k. Used by
    :func:`run_cell` and by ``dpgen-bench evaluate`` for samples made elsewhere.

    The ``dpimagebench`` protocol also needs the sensitive ``train`` split (FID / precision / recall reference)
    and, for ``sensitive-val`` selection, the ``val`` split (``split: official``)."""
    from ..metrics import MetricSkippedWarning, compute_metrics

    if evaluation.protocol == "dpimagebench":
        from ..metrics import dpimagebench

        if train is None:
            raise ValueError("the dpimagebench protocol needs the sensitive train split (its FID reference)")
        synthetic = ImageDataset(images, labels, test.info, split="synthetic", meta={"labelled": labelled})
        results = dpimagebench.evaluate(
            list(evaluation.metrics), synthetic, train=train, test=test, val=val, selections=list(evaluation.selection),
            options=evaluation.protocol_options(), seed=seed, device=device, cache_dir=str(Path(root) / "cache"),
            fid_weights_path=evaluation.fid_weights_path, train_extractor=train_extractor, progress=progress)
        return [_metric_row(m) for m in results]

    real = test
    if evaluation.n_real is not None and evaluation.n_real < len(test):
        g = torch.Generator().manual_seed(split_seed)
        real = test.subset(torch.randperm(len(test), generator=g)[: evaluation.n_real], split="test")
    rows: list[dict[str, Any]] = []
    for count in sorted({evaluation.sample_count(m) for m in evaluation.metrics}):
        names = [m for m in evaluation.metrics if evaluation.sample_count(m) == count]
        synthetic = ImageDataset(images[:count], labels[:count], test.info, split="synthetic", meta={"labelled": labelled})
        with warnings.catch_warnings():
            # A skipped metric is a row with its missing_reason; the run prints one notice per reason at the end.
            warnings.simplefilter("ignore", MetricSkippedWarning)
            results = compute_metrics(
                names, real, synthetic, train_extractor=train_extractor, cache_dir=str(Path(root) / "cache"),
                device=device, seed=seed, progress=progress, fid_weights_path=evaluation.fid_weights_path,
                options={m: o for m, o in evaluation.options.items() if m in names},
            )
        rows.extend(_metric_row(m) for m in results)
    return rows


# ------------------------------------------------------------------------------------------ the four steps


def train(method: GenerativeMethod, train: ImageDataset, budget: PrivacyBudget) -> tuple[PrivacyLedger, float, float]:
    """Step 1a: fit ``method`` with a fresh ledger; returns (ledger, ε recomputed from it with the budget's
    accountant — ∞ for a non-private run, fit time in s)."""
    ledger = PrivacyLedger()
    t0 = time.perf_counter()
    method.fit(train, budget, ledger)
    fit_time = time.perf_counter() - t0
    spent = float(ledger.epsilon(budget)) if budget.is_private else math.inf
    return ledger, spent, fit_time


def draw_samples(method: GenerativeMethod, evaluation: EvaluationSpec, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 2: as many samples as the hungriest metric needs, checked (shape, finite, [0, 1])."""
    n = evaluation.max_samples
    images, labels = method.sample(n, seed=seed)
    return check_samples(images, labels, n, method.info.shape), labels.detach().cpu().long()


def write_artefacts(cell_dir: Path, method: GenerativeMethod, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Step 4: ``samples.npz``, the ``samples.png`` grid and the checkpoint (``ledger.json`` is written right
    after training, so a cell that fails the spend check keeps it)."""
    save_samples(cell_dir / "samples.npz", images, labels)
    save_grid(cell_dir / "samples.png", images, labels, method.info.num_classes if method.samples_labelled else 1)
    method.save(cell_dir / "checkpoint")


def _cell_facts(cell: Cell, device: str) -> dict[str, Any]:
    """The columns every row of the cell carries, known before it runs."""
    return {
        **cell.row_facts(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        **versions(),
    }


def _run_steps(cell: Cell, cell_dir: Path, root: Path, context: RunContext, facts: dict[str, Any]) -> list[dict]:
    """Steps 1–4 for one cell; fills ``facts`` as they become known and returns the metric rows."""
    from ..registry import get_method

    splits = load_cell_splits(cell)
    # The declared size n̂ only: the actual length of the private split is private (add/remove).
    n_hat = splits.train.public_size()
    budget = budget_for(cell, n_hat)
    facts.update(n_train_nominal=n_hat, n_test=splits.test.public_size(), delta=budget.delta, delta_rule=budget.delta_rule)
    from .public import with_public_data

    # public, so it may change what the method computes (resolve_methods checked it)
    context = with_public_data(context, cell.public_data, splits.info, data_dir=cell.data_dir, download=cell.download)
    torch.manual_seed(cell.seed)
    method_cls = get_method(cell.method)
    method = method_cls(cell.method_config, splits.info, seed=cell.seed, context=context)
    facts["train_extractor"] = method_cls.training_extractor(method.config)

    ledger, facts["spent_epsilon"], facts["fit_time_s"] = train(method, splits.train, budget)
    facts["ledger"] = json.dumps(ledger.to_dicts(), sort_keys=True)
    write_atomic(cell_dir / "ledger.json", json.dumps(ledger.to_dicts(), indent=1))
    if budget.is_private:  # step 1b: the runner's own privacy check, on what was actually released
        check_spend(facts["spent_epsilon"], ledger, budget, cell.method)
    images, labels = draw_samples(method, cell.evaluation, cell.seed)
    write_artefacts(cell_dir, method, images, labels)
    rows = evaluate_samples(images, labels, method.samples_labelled, splits.test, cell.evaluation, root=root,
                            seed=cell.seed, split_seed=cell.split_seed, train_extractor=facts["train_extractor"],
                            device=context.device, progress=context.progress, train=splits.train, val=splits.val)
    return declare_real_counts(rows, splits, cell.evaluation) if cell.private else rows


def declare_real_counts(rows: list[dict[str, Any]], splits, evaluation: EvaluationSpec) -> list[dict[str, Any]]:
    """Metric rows whose ``n_real`` is the *declared* size of the real set each was computed on (the test split,
    at most ``evaluation.n_real`` of it, or for the DPImageBench protocol's train-referenced results the train
    split), never its actual length: the parts of a pooled split are drawn per class from the private data, so
    their actual lengths follow the private n and class counts. For private cells; changes ``rows`` in place."""
    test = splits.test.public_size()
    if evaluation.n_real is not None:
        test = min(test, evaluation.n_real)
    train_referenced: tuple[str, ...] = ()
    if evaluation.protocol == "dpimagebench":
        from ..metrics import dpimagebench

        train_referenced = dpimagebench.TRAIN_REFERENCE_RESULTS
    for row in rows:
        row["n_real"] = splits.train.public_size() if row["metric"] in train_referenced else test
    return rows


def run_cell(cell: Cell, root: str | Path, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Run one cell end to end and write its artefacts in its folder under ``root``; return its record (for the
    driver to store: :meth:`~dpgen_bench.jobs.store.ResultsStore.write_record`)."""
    store = ResultsStore(root)
    cell_dir = store.cell_dir(cell.key)
    context = RunContext(device=str(device), progress=progress, cache_dir=Path(root) / "cache")
    facts = _cell_facts(cell, device)
    facts.update(fit_time_s=None, delta=None, delta_rule=None)
    started = time.perf_counter()
    status, error, metric_rows = "ok", None, []
    with measure_peak_memory(device) as peak:
        try:
            with warnings_from(cell.name, private=cell.private):
                metric_rows = _run_steps(cell, cell_dir, Path(root), context, facts)
        except Exception as exc:  # the cell fails; the grid goes on
            # A private cell's message may print private figures (a shape with the Poisson batch size): scrubbed.
            status = "failed"
            error, report = exception_report(exc, private=cell.private)
            write_atomic(cell_dir / "error.txt", report)
    facts.update(status=status, error=error, wall_time_s=time.perf_counter() - started, peak_memory_mb=peak.cpu_mb,
                 peak_gpu_memory_mb=peak.gpu_mb,
                 finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    withhold_private_figures(facts, private=cell.private)
    if status == "ok":
        rows, artefacts = [{**facts, **r} for r in metric_rows], artefact_digests(cell_dir, CELL_ARTEFACTS)
    else:
        rows, artefacts = [{**facts, "metric": None, "value": None}], {}
    # Returned, not written: the driver is the results store's only writer (it writes this record after the
    # artefacts above, so a cell killed before that has no record and is recomputed).
    return record(cell, status, error, rows, artefacts)
