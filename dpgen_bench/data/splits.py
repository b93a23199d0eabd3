"""Deterministic train/test splits: ``pooled`` (the default) and ``official``.

``pooled``: the benchmark's own seeded split, stratified per class, of all examples (torchvision datasets
pool their official parts first). ``official``: the field's split (``docs/protocol.md``): the official train
part minus a sensitive validation part drawn with seed 0 is ``train``, the official test part is ``test``,
and the validation part is ``val`` (evaluation only).

The benchmark trains methods on ``train`` only; ``test`` and ``val`` are for evaluation and never reach a
method (the runner hands ``fit`` the train split alone).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from .registry import OfficialSplit, dataset_spec, load_dataset
from .types import DatasetInfo, ImageDataset

SPLITS = ("pooled", "official")
"""The split kinds a config may name (``split:``)."""


@dataclass(frozen=True)
class DatasetSplits:
    """The private training split, the held-out test split, the shared public metadata and, for the
    official split, the sensitive validation split (held out of generator training; evaluation only)."""

    train: ImageDataset
    test: ImageDataset
    info: DatasetInfo
    val: ImageDataset | None = None
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
        "split": "pooled",
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


def official_split_indices(n_official_train: int, train_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train positions, val positions) within the official train part, DPImageBench's draw:
    ``torch.manual_seed(seed); random_split(range(n), [train_size, n - train_size])``, i.e. the first
    ``train_size`` entries of ``torch.randperm(n)`` under ``seed`` go to train (in that order), the rest to val."""
    if not 0 < train_size < n_official_train:
        raise ValueError(f"the official train part has {n_official_train} rows; a train split of {train_size} "
                         f"must leave a non-empty validation part")
    perm = torch.randperm(int(n_official_train), generator=torch.Generator().manual_seed(int(seed)))
    return perm[:train_size], perm[train_size:]


def split_official(dataset: ImageDataset, official: OfficialSplit) -> DatasetSplits:
    """The official split of a loaded (pooled) dataset whose ``meta["official_test"]`` marks the official
    test rows (and ``meta["official_other"]``, if present, rows of neither part). Each part declares the
    protocol's sizes (:class:`OfficialSplit`), never its length."""
    test_mask = dataset.meta.get("official_test")
    if not isinstance(test_mask, torch.Tensor) or test_mask.shape != (len(dataset),):
        raise ValueError(f"dataset {dataset.info.name!r} does not mark its official test rows "
                         f"(meta['official_test']); only datasets with an official partition have split: official")
    other = dataset.meta.get("official_other")
    train_mask = ~test_mask if other is None else ~test_mask & ~other
    official_train = torch.nonzero(train_mask, as_tuple=True)[0]
    train_pos, val_pos = official_split_indices(len(official_train), official.train_size, official.seed)
    record = {
        "split": "official",
        "split_seed": official.seed,
        "split_rule": ("official train part minus a validation part: torch.randperm(n, generator seeded "
                       f"{official.seed})[:train_size] is train (DPImageBench's random_split); official test part is test"),
        "nominal_train_size": official.train_size,
        "nominal_val_size": official.val_size,
        "nominal_test_size": official.test_size,
    }
    parts = {}
    for name, idx, size in (("train", official_train[train_pos], official.train_size),
                            ("val", official_train[val_pos], official.val_size),
                            ("test", torch.nonzero(test_mask, as_tuple=True)[0], official.test_size)):
        part = dataclasses.replace(dataset.subset(idx, split=name), nominal_size=size)
        part.meta.update(record)
        for key, value in list(part.meta.items()):  # per-row tensors follow their rows
            if isinstance(value, torch.Tensor) and value.shape[:1] == (len(dataset),):
                part.meta[key] = value[idx]
        parts[name] = part
    return DatasetSplits(train=parts["train"], test=parts["test"], info=dataset.info, val=parts["val"])


def official_split_of(name: str) -> OfficialSplit:
    """The :class:`OfficialSplit` of dataset ``name``; ValueError naming the datasets that have one."""
    from .registry import list_datasets

    official = dataset_spec(name).official
    if official is None:
        having = [n for n in list_datasets() if dataset_spec(n).official is not None]
        raise ValueError(f"dataset {name!r} has no official split; split: official needs one of {having} "
                         f"(or split: pooled)")
    return official


def declared_train_size(name: str, split: str = "pooled", test_fraction: float = 0.2, tuning: bool = False) -> int:
    """The declared (public) size n̂ of the train split ``split`` of dataset ``name`` (after holding out the
    tuning split if ``tuning``), without loading it."""
    check_split(split)
    if split == "official":
        return official_split_of(name).train_size
    return declared_split_sizes(dataset_spec(name).size, test_fraction, tuning)[0]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def load_splits(
    name: str,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    data_dir: str | Path | None = None,
    download: bool = False,
    split: str = "pooled",
    tuning: bool = False,
) -> DatasetSplits:
    """Load ``name`` and split it deterministically: ``pooled`` (``mnist-5k`` → 4,000 train / 1,000 test;
    ``seed`` and ``test_fraction`` apply) or ``official`` (the dataset's :class:`OfficialSplit`, with ``val``).
    ``tuning`` (pooled only): first hold out the declared tuning split (``mnist-5k``: 500 examples; then 3,600
    train / 900 test), which never reaches training or evaluation and is where defaults may be chosen
    (``tuned_on: mnist-5k:tuning``)."""
    check_split(split)
    if tuning and split != "pooled":
        raise ValueError(f"a tuning split is only declared for split: pooled, not {split!r}")
    official = official_split_of(name) if split == "official" else None  # before loading: fail fast
    dataset = load_dataset(name, data_dir=data_dir, download=download)
    if official is not None:
        return split_official(dataset, official)
    return split_dataset(dataset, seed=seed, test_fraction=test_fraction, tuning=tuning)
