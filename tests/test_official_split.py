"""`split: official`: the field's split (official train minus a seed-0 validation part / official test),
checked on a tiny torchvision-like source injected into the registry (no files, no network)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from dpgen_bench.data import (DATASETS, DatasetInfo, DatasetSpec, OfficialSplit, declared_train_size, load_splits,
                              register_dataset)
from dpgen_bench.data.splits import official_split_indices
from dpgen_bench.data.torchvision_sources import TorchvisionSource
from dpgen_bench.privacy.budget import PrivacyBudget

N_TRAIN, N_TEST = 60, 20
OFFICIAL = OfficialSplit(train_size=50, val_size=10, test_size=20)
INFO = DatasetInfo("tiny-official", 1, 4, 4, 2, ("a", "b"))


def _fake_read(root: Path, download: bool):
    """Like torchvision's MNIST: official train rows first, then test rows; pixel 0 holds the row index."""
    n = N_TRAIN + N_TEST
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    official_test = torch.arange(n) >= N_TRAIN
    return images, labels, official_test


@pytest.fixture
def tiny_official():
    source = TorchvisionSource("FakeMNIST", "fake", (), _fake_read)
    register_dataset(DatasetSpec(info=INFO, size=N_TRAIN + N_TEST, family="tiny-official", source=source,
                                 official=OFFICIAL, description="tiny fake torchvision-like data"), origin="test")
    yield INFO.name
    DATASETS.unregister(INFO.name)


def _rows(ds) -> set[int]:
    return set(torch.round(ds.images[:, 0, 0, 0] * 255).long().tolist())


def test_official_split_has_the_declared_sizes_and_disjoint_parts(tiny_official, tmp_path):
    s = load_splits(tiny_official, split="official", data_dir=tmp_path)
    assert (len(s.train), len(s.val), len(s.test)) == (50, 10, 20)
    assert (s.train.public_size(), s.val.public_size(), s.test.public_size()) == (50, 10, 20)
    train, val, test = _rows(s.train), _rows(s.val), _rows(s.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val == set(range(N_TRAIN)) and test == set(range(N_TRAIN, N_TRAIN + N_TEST))
    for part in (s.train, s.val, s.test):
        assert part.meta["split"] == "official" and part.meta["split_seed"] == 0


def test_official_validation_part_is_dpimagebench_random_split_under_seed_0():
    # DPImageBench: torch.manual_seed(0); random_split(train_set, [train_size, val_size])
    torch.manual_seed(0)
    theirs = torch.utils.data.random_split(range(60), [50, 10])
    train, val = official_split_indices(60, 50, seed=0)
    assert train.tolist() == list(theirs[0].indices) and val.tolist() == list(theirs[1].indices)


def test_declared_sizes_are_the_protocols_not_the_loaded_lengths(tiny_official, tmp_path):
    # a dataset declaring sizes different from what loads: the declaration wins (lengths are private)
    DATASETS.unregister(tiny_official)
    source = TorchvisionSource("FakeMNIST", "fake", (), _fake_read)
    register_dataset(DatasetSpec(info=INFO, size=999, family="tiny-official", source=source, description="x",
                                 official=OfficialSplit(train_size=50, val_size=7, test_size=30)), origin="test")
    s = load_splits(tiny_official, split="official", data_dir=tmp_path)
    assert (s.train.public_size(), s.val.public_size(), s.test.public_size()) == (50, 7, 30)
    assert s.train.meta["nominal_val_size"] == 7


def test_delta_rule_uses_the_declared_official_train_size_55000():
    n = declared_train_size("mnist", "official")
    assert n == 55_000 and declared_train_size("fashion-mnist", "official") == 55_000
    assert declared_train_size("cifar10", "official") == 45_000
    budget = PrivacyBudget.from_rule(10.0, n)
    assert budget.delta == pytest.approx(1.0 / (55_000 * math.log(55_000)), rel=1e-12)


def test_split_official_is_refused_for_a_dataset_without_one():
    with pytest.raises(ValueError, match="no official split"):
        declared_train_size("mnist-5k", "official")
    with pytest.raises(ValueError, match="split must be one of"):
        declared_train_size("mnist", "offical")


def test_pooled_split_stays_the_default_and_is_recorded():
    s = load_splits("digits")
    assert s.val is None and s.train.meta["split"] == "pooled"
