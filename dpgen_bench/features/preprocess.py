"""Input handling shared by the pre-trained extractors: grey→RGB, up-sizing, per-network normalisation.

Images arrive in [0, 1], NCHW, with 1 or 3 channels. Every step is differentiable, so a generator can be
trained through an extractor.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""torchvision's ImageNet normalisation (VGG, ResNet weights)."""

TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3
"""EfficientNet-Lite (TF) normalisation: (pixel·255 − 127) / 128, i.e. roughly [−1, 1]."""


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Repeat a grey channel three times; RGB passes through. Any other channel count is an error."""
    if x.ndim != 4:
        raise ValueError(f"expected NCHW images, got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    return x


def resize_input(x: torch.Tensor, size: int | None, min_size: int | None) -> torch.Tensor:
    """Bilinear resize: to ``size``×``size`` if given, else up to ``min_size`` when smaller (e.g. 28→32).

    Images at or above ``min_size`` keep their native size (the DP-MEPF paper setting).
    """
    h, w = x.shape[-2:]
    target: tuple[int, int] | None = None
    if size is not None:
        target = (size, size)
    elif min_size is not None and (h < min_size or w < min_size):
        target = (max(h, min_size), max(w, min_size))
    if target is None or target == (h, w):
        return x
    return F.interpolate(x, size=target, mode="bilinear", align_corners=False)


class Normalize(torch.nn.Module):
    """(x − mean) / std per channel, with the constants stored as buffers (so ``.to(device)`` moves them)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def parse_layers(layers: str | Sequence[str], available: Sequence[str], presets: dict[str, Sequence[str]]) -> list[str]:
    """Turn a layer option into an ordered list of layer names.

    ``layers`` is a preset name (``"all"``, ``"pooled"``, …), a comma-separated string, or a list of names
    from ``available``; an unknown name is an error listing the valid ones.
    """
    if isinstance(layers, str):
        if layers in presets:
            return list(presets[layers])
        names = [s.strip() for s in layers.split(",") if s.strip()]
    else:
        names = list(layers)
    if not names:
        raise ValueError("layers must name at least one layer")
    valid = list(available)
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(f"unknown layer(s) {bad}; valid layers: {valid}; presets: {sorted(presets)}")
    # Keep network order, drop duplicates.
    return [n for n in valid if n in set(names)]
