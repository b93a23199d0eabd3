"""A cell's samples: checking what a method returned, and writing ``samples.npz`` and the ``samples.png`` grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..files import atomic_path


class SampleCheckError(RuntimeError):
    """A method returned samples of the wrong shape, outside [0, 1], or not finite."""


def check_samples(images: torch.Tensor, labels: torch.Tensor, n: int, shape: tuple[int, int, int]) -> torch.Tensor:
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
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, images=arr, labels=labels.cpu().numpy().astype(np.int64))


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
    with atomic_path(path) as tmp:
        save_image(grid, tmp, nrow=per_class, padding=2, pad_value=1.0)
