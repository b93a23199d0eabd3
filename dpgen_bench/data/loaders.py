"""Shared batch loaders over an :class:`ImageDataset`.

* :func:`poisson_loader` — Poisson sampling (each example independently with probability q per step), the
  sampling that DP-SGD accounting with ``PoissonSubsampledGaussianEvent`` assumes. It is Opacus's
  ``DPDataLoader``; batches vary in size and can be empty.
* :func:`class_balanced_loader` — every batch holds the same number of examples of each class. It is
  *not* a private sampling scheme: use it for public/synthetic data or evaluation, never for accounted
  training on the private split.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from .types import ImageDataset

if TYPE_CHECKING:
    from opacus.data_loader import DPDataLoader


def poisson_loader(dataset: ImageDataset, sample_rate: float, seed: int | None = None, *,
                   with_index: bool = False) -> "DPDataLoader":
    """Opacus ``DPDataLoader`` yielding ``(images, labels)`` — ``(images, labels, row indices)`` with
    ``with_index`` — ; each example is in each batch w.p. ``sample_rate``.

    ``sample_rate`` q ∈ (0, 1]. One pass (``len(loader)``) is ⌊1/q⌋ steps; the expected batch size is q·n.
    An empty batch comes out as tensors with 0 rows and the right trailing shape.

    Privacy amplification by subsampling holds only while *which* examples were sampled stays secret, and
    run seeds are public; so private training leaves ``seed=None`` (sampling seeded from OS entropy via
    :func:`dpgen_bench.privacy.noise.release_generator`). A fixed ``seed`` is for tests and non-private use.
    """
    # Imported here: the privacy layer and opacus take seconds to import, and a data-layer import must not.
    from ..privacy.events import check_sample_rate
    from ..privacy.noise import release_generator

    q = check_sample_rate(sample_rate)
    from opacus.data_loader import DPDataLoader

    generator = release_generator() if seed is None else torch.Generator().manual_seed(int(seed))
    tensors = (dataset.images, dataset.labels) + ((torch.arange(len(dataset)),) if with_index else ())
    return DPDataLoader(TensorDataset(*tensors), sample_rate=q, generator=generator)


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of indices with ``batch_size // k`` examples of each of the ``k`` classes.

    Within a class, indices are drawn without replacement from a seeded permutation that is redrawn when
    used up, so small classes are repeated (oversampled) rather than batches becoming unbalanced.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, batch_size: int, seed: int, num_batches: int | None = None):
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if batch_size < num_classes or batch_size % num_classes:
            raise ValueError(
                f"batch_size must be a positive multiple of the number of classes ({num_classes}), got {batch_size}"
            )
        counts = torch.bincount(labels, minlength=num_classes)
        empty = [c for c in range(num_classes) if counts[c] == 0]
        if empty:
            raise ValueError(f"class-balanced batches need every class; class(es) {empty} have no examples")
        self.per_class = batch_size // num_classes
        self.by_class = [torch.nonzero(labels == c, as_tuple=True)[0] for c in range(num_classes)]
        self.num_batches = int(num_batches) if num_batches is not None else math.ceil(len(labels) / batch_size)
        if self.num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches!r}")
        self.generator = torch.Generator().manual_seed(int(seed))
        self._queues = [torch.empty(0, dtype=torch.int64) for _ in self.by_class]

    def _take(self, c: int) -> torch.Tensor:
        out = []
        need = self.per_class
        while need:
            if len(self._queues[c]) == 0:
                idx = self.by_class[c]
                self._queues[c] = idx[torch.randperm(len(idx), generator=self.generator)]
            got = self._queues[c][:need]
            self._queues[c] = self._queues[c][need:]
            out.append(got)
            need -= len(got)
        return torch.cat(out)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.num_batches):
            batch = torch.cat([self._take(c) for c in range(len(self.by_class))])
            yield batch[torch.randperm(len(batch), generator=self.generator)].tolist()


def class_balanced_loader(
    dataset: ImageDataset, batch_size: int, seed: int, num_batches: int | None = None
) -> DataLoader:
    """``(images, labels)`` batches of ``batch_size`` with equal counts per class (non-private use only).

    ``batch_size`` must be a multiple of ``dataset.info.num_classes``; one pass is ``num_batches`` batches
    (default ⌈n / batch_size⌉). Successive passes continue the same seeded stream.
    """
    sampler = ClassBalancedBatchSampler(dataset.labels, dataset.info.num_classes, batch_size, seed, num_batches)
    return DataLoader(TensorDataset(dataset.images, dataset.labels), batch_sampler=sampler)
