"""Running one cell: build the method → fit with a fresh ledger → recompute ε → sample → metrics → artefacts.

:func:`run_cell` never raises for a problem of the cell itself (an exception in the method, NaN samples or
metrics, a privacy check that fails): it returns a record with ``status="failed"`` and the error, so the
other cells still run. The record is what :class:`~dpgen_bench.runner.store.ResultsStore` stores.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import inspect
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..allocator import freed_memory_retained, retain_freed_memory
from ..privacy.budget import NEIGHBOURING, PrivacyBudget
from ..privacy.ledger import PrivacyLedger
from .grid import Cell
from .store import ResultsStore, artefact_digests, write_atomic

CELL_ARTEFACTS = ("samples.npz", "samples.png", "ledger.json", "checkpoint/state.pt", "checkpoint/method.json")
"""Files a finished cell leaves in its folder; their sizes and SHA-256 go into its record."""


class PrivacyCheckError(RuntimeError):
    """The ε recomputed from the ledger exceeds the target, or a private run recorded nothing."""


class SampleCheckError(RuntimeError):
    """A method returned samples of the wrong shape, outside [0, 1], or not finite."""


# ------------------------------------------------------------------------------------------ provenance


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the source tree this package runs from, else the package version."""
    from .. import __version__ as pkg_version

    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        described = out.stdout.strip()
        if described:
            return described
    except (OSError, subprocess.SubprocessError):
        pass
    return f"dpgen-bench {pkg_version}"


def _version(module: str) -> str:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # not installed or no __version__
        return "n/a"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    from .. import __version__ as pkg_version

    return {
        "python_version": platform.python_version(),
        "torch_version": _version("torch"),
        "opacus_version": _version("opacus"),
        "dpgen_bench_version": str(pkg_version),
        "code_version": code_version(),
    }


def environment() -> dict[str, Any]:
    """Versions and machine description saved as ``environment.json`` next to the results."""
    import sklearn

    env = dict(versions())
    env.update(
        {
            "numpy_version": np.__version__,
            "sklearn_version": sklearn.__version__,
            "torchvision_version": _version("torchvision"),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or "n/a",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "malloc_retains_freed_memory": freed_memory_retained(),
            "cuda_available": torch.cuda.is_available(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        }
    )
    return env


# ------------------------------------------------------------------------------------------ peak memory


def reset_peak_memory() -> bool:
    """Reset the process's peak-RSS mark (Linux ``clear_refs``), so each cell reports its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB since the last reset (VmHWM), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


# ------------------------------------------------------------------------------------------ worker setup


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``), so a killed
    driver never leaves workers running on (each holding GBs). Exits at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def configure_worker(threads: int | None, plugins: tuple[str, ...] | list[str] = (), parent_pid: int | None = None) -> None:
    """Process-pool initializer: die with the parent, leave Ctrl-C to the parent (it stops the run), malloc
    tuning (:func:`dpgen_bench.allocator.retain_freed_memory`), thread count and plugin imports (in-process
    registrations do not survive ``spawn``)."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .progress import one_line_warnings

    one_line_warnings()
    retain_freed_memory()
    if threads:
        torch.set_num_threads(int(threads))
    for module in plugins:
        importlib.import_module(module)


@functools.lru_cache(maxsize=2)
def _splits(dataset: str, split_seed: int, test_fraction: float, data_dir: str | None, download: bool):
    from ..data import load_splits

    return load_splits(dataset, seed=split_seed, test_fraction=test_fraction, data_dir=data_dir, download=download)


def load_cell_splits(cell: Cell):
    """The cell's (train, test, info) splits (cached per process: every cell of a run shares them)."""
    return _splits(cell.dataset, cell.split_seed, cell.test_fraction, cell.data_dir, cell.download)


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


def _check_samples(images: torch.Tensor, labels: torch.Tensor, n: int, shape: tuple[int, int, int]) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != (n, *shape):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise SampleCheckError(f"sample({n}) returned images of shape {got}, expected {(n, *shape)}")
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (n,):
        raise SampleCheckError(f"sample({n}) returned labels that are not a length-{n} tensor")
    images = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(images).all():
        raise SampleCheckError("sample() returned NaN or infinite pixel values")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise SampleCheckError(f"sample() returned pixels in [{lo:.4g}, {hi:.4g}], expected [0, 1]")
    return images.clamp_(0.0, 1.0)


def save_samples(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """``samples.npz``: ``images`` uint8 NCHW (x·255 rounded) and ``labels`` int64."""
    arr = (images.numpy() * 255.0).round().astype(np.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, images=arr, labels=labels.cpu().numpy().astype(np.int64))
    os.replace(tmp, path)


def save_grid(path: Path, images: torch.Tensor, labels: torch.Tensor, num_classes: int, per_class: int = 10) -> None:
    """A PNG grid: one row per class (up to 10 classes), ``per_class`` samples each."""
    from torchvision.utils import save_image

    rows = []
    if num_classes > 1:
        for k in range(min(num_classes, 10)):
            idx = torch.nonzero(labels == k).flatten()[:per_class]
            row = images[idx]
            if len(row) < per_class:  # pad with white so rows align
                row = torch.cat([row, torch.ones(per_class - len(row), *images.shape[1:])])
            rows.append(row)
        grid = torch.cat(rows)
    else:
        grid = images[: per_class * per_class]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    save_image(grid, tmp, nrow=per_class, padding=2, pad_value=1.0)
    os.replace(tmp, path)


def _compute(names, real_test, synthetic, **kwargs):
    from ..metrics import MetricSkippedWarning, compute_metrics

    params = inspect.signature(compute_metrics).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in params or any(p.kind is p.VAR_KEYWORD for p in params.values())}
    with warnings.catch_warnings():
        # A skipped metric is a row with its missing_reason; the run prints one notice per reason at the end.
        warnings.simplefilter("ignore", MetricSkippedWarning)
        return compute_metrics(names, real_test, synthetic, **kwargs)


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
    evaluation: dict[str, Any],
    *,
    root: str | Path,
    seed: int,
    split_seed: int,
    train_extractor: str | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """The metric rows of one set of samples (images in [0, 1], NCHW) against the real ``test`` split, with
    the evaluation protocol of a config (``EvaluationSpec`` as a dict); the first k samples serve a metric
    that asks for k. Used by :func:`run_cell` and by ``dpgen-bench evaluate`` for samples made elsewhere."""
    from ..data.types import ImageDataset
    from ..metrics.accuracy import AccuracyConfig

    counts = {m: int(evaluation.get("n_samples_per_metric", {}).get(m, evaluation["n_samples"])) for m in evaluation["metrics"]}
    real = test
    n_real = evaluation.get("n_real")
    if n_real is not None and n_real < len(test):
        g = torch.Generator().manual_seed(split_seed)
        real = test.subset(torch.randperm(len(test), generator=g)[:n_real], split="test")
    rows: list[dict[str, Any]] = []
    for count in sorted(set(counts.values())):
        names = [m for m in evaluation["metrics"] if counts[m] == count]
        synthetic = ImageDataset(images[:count], labels[:count], test.info, split="synthetic", meta={"labelled": labelled})
        results = _compute(
            names,
            real,
            synthetic,
            train_extractor=train_extractor,
            cache_dir=str(Path(root) / "cache"),
            device=device,
            seed=seed,
            progress=progress,
            accuracy_config=AccuracyConfig(**evaluation.get("accuracy", {})),
            prdc_k=int(evaluation.get("prdc_k", 5)),
            prdc_space=evaluation.get("prdc_space", "effnet"),
            fid_weights_path=evaluation.get("fid_weights_path"),
        )
        rows.extend(_metric_row(m) for m in results)
    return rows


def run_cell(cell: Cell, root: str | Path, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Run one cell end to end, write its artefacts and record under ``root``; return the record."""
    from ..registry import get_method

    store = ResultsStore(root)
    cell_dir = store.cell_dir(cell.key)
    reset_peak_memory()
    on_gpu = torch.device(device).type == "cuda" and torch.cuda.is_available()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    started = time.perf_counter()
    base = {
        "cell_key": cell.key,
        "dataset": cell.dataset,
        "method": cell.label,
        "method_name": cell.method,
        "method_config_hash": cell.method_config_hash,
        "method_config": json.dumps(cell.method_config, sort_keys=True),
        "target_epsilon": cell.epsilon,
        "accountant": cell.accountant,
        "delta_rule": "1/(n ln n)" if isinstance(cell.delta, str) else "fixed",
        "delta": None if isinstance(cell.delta, str) else float(cell.delta),
        "neighbouring": NEIGHBOURING,
        "seed": cell.seed,
        "split_seed": cell.split_seed,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        **versions(),
    }
    metric_rows: list[dict[str, Any]] = []
    status, error = "ok", None
    fit_time = None
    try:
        splits = load_cell_splits(cell)
        train, test, info = splits.train, splits.test, splits.info
        # The declared size n̂ only: the actual length of the private split is private (add/remove).
        base["n_train_nominal"], base["n_test"] = train.public_size(), len(test)
        budget = budget_for(cell, train.public_size())
        base["delta"], base["delta_rule"] = budget.delta, budget.delta_rule

        torch.manual_seed(cell.seed)
        method_cls = get_method(cell.method)
        method_config = dict(cell.method_config)
        if "progress" in getattr(method_cls.Config, "model_fields", {}):
            method_config["progress"] = bool(progress)  # no bars from --jobs workers or --no-progress
        method = method_cls(method_config, info, seed=cell.seed, device=device)
        base["train_extractor"] = method_cls.training_extractor(method.config)
        ledger = PrivacyLedger()
        t0 = time.perf_counter()
        method.fit(train, budget, ledger)
        fit_time = time.perf_counter() - t0
        base["ledger"] = json.dumps(ledger.to_dicts(), sort_keys=True)
        write_atomic(cell_dir / "ledger.json", json.dumps(ledger.to_dicts(), indent=1))

        # The runner's own privacy check: recompute ε from what was actually released.
        base["spent_epsilon"] = float(ledger.epsilon(budget)) if budget.is_private else math.inf
        if budget.is_private:
            check_spend(base["spent_epsilon"], ledger, budget, cell.method)

        evaluation = cell.evaluation
        counts = {m: int(evaluation.get("n_samples_per_metric", {}).get(m, evaluation["n_samples"])) for m in evaluation["metrics"]}
        n = max(counts.values())
        images, labels = method.sample(n, seed=cell.seed)
        images = _check_samples(images, labels, n, info.shape)
        labels = labels.detach().cpu().long()
        labelled = method.samples_labelled
        save_samples(cell_dir / "samples.npz", images, labels)
        save_grid(cell_dir / "samples.png", images, labels, info.num_classes if labelled else 1)
        method.save(cell_dir / "checkpoint")

        metric_rows = evaluate_samples(images, labels, labelled, test, evaluation, root=root, seed=cell.seed,
                                       split_seed=cell.split_seed, train_extractor=base.get("train_extractor"),
                                       device=device, progress=progress)
    except Exception as exc:  # the cell fails; the grid goes on
        status = "failed"
        error = f"{type(exc).__name__}: {exc}"
        write_atomic(cell_dir / "error.txt", traceback.format_exc())
    wall = time.perf_counter() - started
    base.update(
        {
            "status": status,
            "error": error,
            "fit_time_s": fit_time,
            "wall_time_s": wall,
            "peak_memory_mb": peak_memory_mb(),
            "peak_gpu_memory_mb": torch.cuda.max_memory_allocated(torch.device(device)) / 2**20 if on_gpu else None,
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    artefacts: dict[str, Any] = {}
    if status == "ok":
        rows = [{**base, **r} for r in metric_rows]
        artefacts = artefact_digests(cell_dir, CELL_ARTEFACTS)
    else:
        rows = [{**base, "metric": None, "value": None}]
    record = {"key": cell.key, "name": cell.name, "status": status, "error": error, "cell": cell.key_data(),
              "rows": rows, "artefacts": artefacts}
    store.write_record(record)
    return record
