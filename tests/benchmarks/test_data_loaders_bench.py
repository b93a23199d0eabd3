"""Speed of one pass over mnist-5k train (4,000 images, expected batch 100): Opacus Poisson sampling vs a
plain shuffled DataLoader and the class-balanced loader. Read the ratios in the `loaders` group table.

Run: python -m pytest tests/benchmarks/test_data_loaders_bench.py --benchmark-only
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dpgen_bench.data import class_balanced_loader, poisson_loader


def _drain(loader) -> int:
    return sum(len(y) for _, y in loader)


@pytest.mark.benchmark(group="loaders")
def test_bench_plain_shuffled_loader(benchmark, mnist5k_splits):
    train = mnist5k_splits.train
    loader = DataLoader(TensorDataset(train.images, train.labels), batch_size=100, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    assert benchmark(_drain, loader) == 4000


@pytest.mark.benchmark(group="loaders")
def test_bench_poisson_loader(benchmark, mnist5k_splits):
    loader = poisson_loader(mnist5k_splits.train, sample_rate=100 / 4000, seed=0)
    assert 3000 < benchmark(_drain, loader) < 5000


@pytest.mark.benchmark(group="loaders")
def test_bench_class_balanced_loader(benchmark, mnist5k_splits):
    loader = class_balanced_loader(mnist5k_splits.train, batch_size=100, seed=0)
    assert benchmark(_drain, loader) == 4000
