"""Loaders: Poisson sampling at the stated rate (Opacus), class-balanced batches."""

from __future__ import annotations

import math

import pytest
import torch
from opacus.data_loader import DPDataLoader

from dpgen_bench.data import class_balanced_loader, poisson_loader


def _batches(loader):
    return [(x, y) for x, y in loader]


def test_poisson_loader_is_opacus_dploader_with_mean_batch_size_q_times_n(tiny_dataset):
    q = 0.25
    loader = poisson_loader(tiny_dataset, sample_rate=q, seed=0)
    assert isinstance(loader, DPDataLoader)
    assert len(loader) == 4  # ⌊1/q⌋ steps per pass
    sizes = [len(y) for _ in range(50) for _, y in loader]  # 200 steps
    n = len(tiny_dataset)
    mean, expected = sum(sizes) / len(sizes), q * n
    # 200 Binomial(64, 0.25) draws: std of the mean = sqrt(64·0.25·0.75/200) ≈ 0.245; allow 5 std.
    assert abs(mean - expected) < 5 * math.sqrt(n * q * (1 - q) / len(sizes))
    assert len(set(sizes)) > 3  # variable batch sizes, as Poisson sampling must give


def test_poisson_loader_includes_each_example_at_rate_q(tiny_dataset):
    q = 0.5
    loader = poisson_loader(tiny_dataset, sample_rate=q, seed=1)
    # Identify examples by their (unique) first pixel rows.
    key = {tuple(x[0, 0, :6].tolist()): i for i, x in enumerate(tiny_dataset.images)}
    hits = torch.zeros(len(tiny_dataset))
    steps = 0
    for _ in range(100):
        for x, _ in loader:
            steps += 1
            for row in x:
                hits[key[tuple(row[0, 0, :6].tolist())]] += 1
    rate = hits / steps  # each ~ Binomial(200, 0.5)/200, std 0.035
    assert float(rate.min()) > q - 0.15 and float(rate.max()) < q + 0.15


def test_poisson_loader_yields_empty_batches_with_the_right_shape(tiny_dataset):
    loader = poisson_loader(tiny_dataset, sample_rate=0.002, seed=0)
    batches = _batches(loader)
    empty = [b for b in batches if len(b[1]) == 0]
    assert empty, "with q·n = 0.13 most batches must be empty"
    x, y = empty[0]
    assert tuple(x.shape[1:]) == (1, 28, 28) and y.dtype == torch.int64


def test_poisson_loader_is_reproducible_from_its_seed(tiny_dataset):
    a = [y.tolist() for _, y in poisson_loader(tiny_dataset, 0.3, seed=7)]
    b = [y.tolist() for _, y in poisson_loader(tiny_dataset, 0.3, seed=7)]
    c = [y.tolist() for _, y in poisson_loader(tiny_dataset, 0.3, seed=8)]
    assert a == b and a != c


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01, float("nan")])
def test_poisson_loader_refuses_a_sample_rate_outside_0_1(tiny_dataset, bad):
    with pytest.raises(ValueError, match="sample_rate"):
        poisson_loader(tiny_dataset, bad, seed=0)


def test_class_balanced_batches_hold_equal_counts_per_class_even_when_data_is_unbalanced(tiny_dataset):
    keep = torch.cat([torch.nonzero(tiny_dataset.labels == c).flatten()[: 1 + c % 3] for c in range(10)])
    skewed = tiny_dataset.subset(keep)  # 1 to 3 examples per class
    loader = class_balanced_loader(skewed, batch_size=30, seed=0, num_batches=12)
    batches = _batches(loader)
    assert len(batches) == 12
    for _, y in batches:
        assert torch.bincount(y, minlength=10).tolist() == [3] * 10


def test_class_balanced_loader_visits_every_example_of_a_class_before_repeating(tiny_dataset):
    loader = class_balanced_loader(tiny_dataset, batch_size=10, seed=0, num_batches=6)
    xs = torch.cat([x[y == 0] for x, y in loader])  # class 0 has 7 examples; 6 draws must all differ
    assert len(xs) == 6 and len({tuple(r[0, 0, :6].tolist()) for r in xs}) == 6


def test_class_balanced_loader_refuses_a_batch_size_not_divisible_by_classes(tiny_dataset):
    with pytest.raises(ValueError, match="multiple of the number of classes"):
        class_balanced_loader(tiny_dataset, batch_size=15, seed=0)


def test_class_balanced_loader_refuses_a_dataset_missing_a_class(tiny_dataset):
    no_three = tiny_dataset.subset(tiny_dataset.labels != 3)
    with pytest.raises(ValueError, match=r"\[3\]"):
        class_balanced_loader(no_three, batch_size=10, seed=0)


def test_poisson_loader_without_seed_draws_secret_batches(tiny_dataset):
    torch.manual_seed(0)
    a = [y.tolist() for _, y in poisson_loader(tiny_dataset, 0.3)]
    torch.manual_seed(0)
    b = [y.tolist() for _, y in poisson_loader(tiny_dataset, 0.3)]
    assert a != b
