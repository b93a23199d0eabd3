"""Deterministic, stratified train/test splits.

The benchmark trains methods on ``train`` only; ``test`` is for evaluation and never reaches a method
(the runner enforces this). Both parts keep every class in the same proportion (per-class rounding).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from .registry import load_dataset
from .types import DatasetInfo, ImageDataset


@dataclass(frozen=True)
class DatasetSplits:
    """The private training split, the held-out test split and the shared public metadata."""

    train: ImageDataset
    test: ImageDataset
    info: DatasetInfo
    tuning: ImageDataset | None = None
    """The declared tuning split (``load_splits(..., tuning=True)``), disjoint from train and test; else None."""


def stratified_split_indices(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, test_idx), sorted, disjoint, covering every example.

    Each class c with n_c examples sends round(test_fraction · n_c) of them to test, chosen by a
    permutation from ``torch.Generator().manual_seed(seed)`` (classes processed in increasing order), so
    the same (labels, test_fraction, seed) always gives the same split on every platform.
    """
    if not (0.0 < float(test_fraction) < 1.0):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    gen = torch.Generator().manual_seed(int(seed))
    train_parts, test_parts = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c, as_tuple=True)[0]
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = int(round(float(test_fraction) * len(idx)))
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    train = torch.sort(torch.cat(train_parts)).values
    test = torch.sort(torch.cat(test_parts)).values
    return train, test


def nominal_split_sizes(total: int, test_fraction: float) -> tuple[int, int]:
    """Declared (train, test) sizes of a declared total: n̂_test = round(test_fraction · total)."""
    n_test = int(round(float(test_fraction) * int(total)))
    return int(total) - n_test, n_test


TUNING_FRACTION = 0.1
"""Share of a dataset's declared size held out as its tuning split (``"<dataset>:tuning"``)."""
TUNING_SEED = 0
"""Seed of the tuning split's stratified draw: fixed, so ``"<dataset>:tuning"`` names one set of examples
whatever the train/test ``split_seed``."""


def declared_split_sizes(total: int, test_fraction: float, tuning: bool = False) -> tuple[int, int]:
    """Declared (train, test) sizes of a declared total, after holding out the tuning split if ``tuning``:
    the rest is n̂ − round(TUNING_FRACTION · n̂), split by :func:`nominal_split_sizes`. Public quantities only."""
    rest = int(total) - (nominal_tuning_size(total) if tuning else 0)
    return nominal_split_sizes(rest, test_fraction)


def nominal_tuning_size(total: int) -> int:
    """Declared size of the tuning split of a dataset of declared size ``total``."""
    return int(round(TUNING_FRACTION * int(total)))


def split_dataset(dataset: ImageDataset, *, seed: int = 0, test_fraction: float = 0.2, tuning: bool = False) -> DatasetSplits:
    """Split an in-memory dataset; the split seed, fraction and sizes are recorded in each part's ``meta``.

    Each part's public ``nominal_size`` follows from the whole's declared size (:func:`nominal_split_sizes`);
    a dataset without one gives parts without one (training on them is refused until one is declared).
    """
    tuning_part = None
    if tuning:  # first, with its own fixed seed: the tuning examples never depend on split_seed
        rest_idx, tuning_idx = stratified_split_indices(dataset.labels, TUNING_FRACTION, TUNING_SEED)
        declared = None if dataset.nominal_size is None else nominal_tuning_size(dataset.nominal_size)
        tuning_part = dataclasses.replace(dataset.subset(tuning_idx, split="tuning"), nominal_size=declared)
        tuning_part.meta.update(tuning_fraction=TUNING_FRACTION, tuning_seed=TUNING_SEED)
        rest = dataclasses.replace(dataset.subset(rest_idx), nominal_size=None if declared is None
                                   else dataset.nominal_size - declared)
        for part, idx in ((rest, rest_idx), (tuning_part, tuning_idx)):
            for key, value in list(part.meta.items()):
                if isinstance(value, torch.Tensor) and value.shape[:1] == (len(dataset),):
                    part.meta[key] = value[idx]
        splits = split_dataset(rest, seed=seed, test_fraction=test_fraction)
        for part in (splits.train, splits.test):
            part.meta.update(tuning_fraction=TUNING_FRACTION, tuning_seed=TUNING_SEED)
        return dataclasses.replace(splits, tuning=tuning_part)
    train_idx, test_idx = stratified_split_indices(dataset.labels, test_fraction, seed)
    nominal = (None, None) if dataset.nominal_size is None else nominal_split_sizes(dataset.nominal_size, test_fraction)
    record = {
        "split_seed": int(seed),
        "test_fraction": float(test_fraction),
        "split_rule": "stratified per class, torch.randperm with torch.Generator().manual_seed(split_seed)",
        # Declared sizes only: the actual train length (and the pooled total it follows from) is private.
        "nominal_train_size": nominal[0],
        "nominal_test_size": nominal[1],
    }
    train = dataclasses.replace(dataset.subset(train_idx, split="train"), nominal_size=nominal[0])
    test = dataclasses.replace(dataset.subset(test_idx, split="test"), nominal_size=nominal[1])
    for part, idx in ((train, train_idx), (test, test_idx)):
        part.meta.update(record)
        # Per-example tensors in meta (e.g. the official-test mask) follow the rows they describe.
        for key, value in list(part.meta.items()):
            if isinstance(value, torch.Tensor) and value.shape[:1] == (len(dataset),):
                part.meta[key] = value[idx]
    return DatasetSplits(train=train, test=test, info=dataset.info)


def load_splits(
    name: str,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    data_dir: str | Path | None = None,
    download: bool = False,
    tuning: bool = False,
) -> DatasetSplits:
    """Load ``name`` and split it deterministically (``mnist-5k`` → 4,000 train / 1,000 test). ``tuning``: first
    hold out the declared tuning split (``mnist-5k``: 500 examples; then 3,600 train / 900 test), which never
    reaches training or evaluation and is where defaults may be chosen (``tuned_on: mnist-5k:tuning``)."""
    return split_dataset(load_dataset(name, data_dir=data_dir, download=download), seed=seed,
                         test_fraction=test_fraction, tuning=tuning)
