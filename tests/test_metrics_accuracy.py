"""Downstream accuracy: real→real sanity on mnist-5k, label-shuffled data near chance, determinism."""

from __future__ import annotations

import pytest
import torch

from dpgen_bench.data import ImageDataset
from dpgen_bench.metrics.accuracy import AccuracyOptions, cnn_accuracy, logreg_accuracy, mlp_accuracy

FAST = AccuracyOptions(logreg_max_iter=100, mlp_max_iter=30, cnn_epochs=2, cnn_width=8)


def _shuffled(ds: ImageDataset, seed: int = 0) -> ImageDataset:
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    return ImageDataset(ds.images, ds.labels[perm], ds.info, "shuffled")


def test_logreg_real_train_to_real_test_on_mnist5k_is_well_above_80_percent(mnist5k_splits):
    acc = logreg_accuracy(mnist5k_splits.train, mnist5k_splits.test, seed=0, options=FAST)
    assert acc > 0.85


@pytest.mark.parametrize("fn", [logreg_accuracy, mlp_accuracy, cnn_accuracy], ids=["logreg", "mlp", "cnn"])
def test_label_shuffled_synthetic_training_data_gives_near_chance_accuracy(mnist5k_splits, fn):
    train = _shuffled(mnist5k_splits.train.subset(torch.arange(0, 4000, 2)))
    acc = fn(train, mnist5k_splits.test, seed=0, options=FAST)
    assert acc < 0.2  # chance is 0.1


def test_small_cnn_learns_real_digits(mnist5k_splits):
    train = mnist5k_splits.train.subset(torch.arange(0, 4000, 2))
    acc = cnn_accuracy(train, mnist5k_splits.test, seed=3, options=AccuracyOptions(cnn_epochs=4, cnn_width=8))
    assert acc > 0.8


def test_small_cnn_accuracy_is_deterministic_for_a_seed(mnist5k_splits):
    train = mnist5k_splits.train.subset(torch.arange(0, 4000, 10))
    runs = [cnn_accuracy(train, mnist5k_splits.test, seed=s, options=FAST) for s in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # the seed is actually used


def test_accuracy_rejects_shape_mismatch_and_single_class_training_sets(mnist5k_splits, tiny_dataset):
    rgb_info = type(tiny_dataset.info)("rgb", 3, 28, 28, 10)
    rgb = ImageDataset(torch.rand(10, 3, 28, 28), torch.arange(10), rgb_info)
    with pytest.raises(ValueError, match="shape"):
        logreg_accuracy(rgb, mnist5k_splits.test)
    one = ImageDataset(tiny_dataset.images, torch.zeros(len(tiny_dataset), dtype=torch.long), tiny_dataset.info)
    with pytest.raises(ValueError, match="at least 2 classes"):
        mlp_accuracy(one, mnist5k_splits.test)
