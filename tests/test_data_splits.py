"""Train/test splits: deterministic, stratified, disjoint, recorded in meta."""

from __future__ import annotations

import pytest
import torch

from dpgen_bench.data import load_splits, split_dataset, stratified_split_indices


def test_mnist5k_default_split_is_4000_train_1000_test_with_400_and_100_per_class(mnist5k_splits):
    s = mnist5k_splits
    assert (len(s.train), len(s.test)) == (4000, 1000)
    assert s.train.class_counts().tolist() == [400] * 10
    assert s.test.class_counts().tolist() == [100] * 10
    assert (s.train.split, s.test.split) == ("train", "test")
    assert s.train.meta["split_seed"] == 0 and s.train.meta["nominal_test_size"] == 1000
    assert s.test.meta["nominal_train_size"] == 4000 and s.test.meta["test_fraction"] == 0.2
    assert (s.train.public_size(), s.test.public_size()) == (4000, 1000)


def test_same_seed_gives_identical_split_and_different_seed_a_different_one(mnist5k_splits):
    again = load_splits("mnist-5k", seed=0)
    assert torch.equal(again.train.images, mnist5k_splits.train.images)
    assert torch.equal(again.test.labels, mnist5k_splits.test.labels)
    other = load_splits("mnist-5k", seed=1)
    assert not torch.equal(other.test.images, mnist5k_splits.test.images)


def test_split_indices_are_disjoint_and_cover_every_example():
    labels = torch.randint(0, 7, (1001,), generator=torch.Generator().manual_seed(0))
    train, test = stratified_split_indices(labels, 0.3, seed=5)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(1001))


def test_split_is_stratified_within_rounding_for_unbalanced_classes():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([3, 10, 101, 1000])])
    train, test = stratified_split_indices(labels, 0.2, seed=0)
    for c, n in enumerate([3, 10, 101, 1000]):
        assert int((labels[test] == c).sum()) == round(0.2 * n)
        assert int((labels[train] == c).sum()) == n - round(0.2 * n)


def test_split_rows_keep_their_images_and_no_test_image_is_in_train(tiny_dataset):
    s = split_dataset(tiny_dataset, seed=3, test_fraction=0.25)
    train_rows = {tuple(x.flatten()[:8].tolist()) for x in s.train.images}
    assert all(tuple(x.flatten()[:8].tolist()) not in train_rows for x in s.test.images)
    assert len(s.train) + len(s.test) == len(tiny_dataset)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_test_fraction_outside_open_unit_interval_is_refused_naming_the_value(bad):
    with pytest.raises(ValueError, match=repr(bad)):
        stratified_split_indices(torch.arange(10) % 2, bad, seed=0)
