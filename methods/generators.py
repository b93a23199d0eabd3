"""Generators shared by DP-MEPF and DP-MERF. Each maps (noise, one-hot label) to images in [0, 1].

* :class:`ConvCondGenerator` — the small conv generator of DP-MERF / DP-MEPF for 28×28 grey (docs/dp_mepf.md):
  one-hot label ⊕ 90-d noise → FC 500 → FC 784 (= 16×7×7) → two (upsample ×2, 5×5 conv) stages → sigmoid.
  It works for any square size divisible by 4 and any channel count (8×8 digits: 16×2×2 start).
* :class:`ResNetGenerator` — a ResNet generator for RGB 32×32 / 64×64 (z = 100): FC → 4×4×256, then
  3 (32×32) or 4 (64×64) up-sampling residual blocks, BN-ReLU-conv3×3 → sigmoid; 4.0M parameters at 32×32 (the paper reports 3.3M for its variant).

Unconditional use: pass ``num_classes=0``; the label argument is then ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalGenerator(nn.Module):
    """Common interface: ``forward(z, labels)``; :meth:`sample_noise` draws z of the right size."""

    z_dim: int
    num_classes: int

    def sample_noise(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
        z = torch.randn(n, self.z_dim, generator=generator)
        return z.to(device)

    def _with_labels(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.num_classes == 0:
            return z
        if labels is None:
            raise ValueError("this generator is class-conditional: labels are required")
        return torch.cat([z, F.one_hot(labels.long(), self.num_classes).to(z.dtype)], dim=1)


class ConvCondGenerator(ConditionalGenerator):
    """Small conv generator (DP-MERF's ``ConvCondGen``); ``image_size`` must be divisible by 4."""

    def __init__(self, image_size: int = 28, channels: int = 1, num_classes: int = 10, z_dim: int = 90,
                 hidden: int = 500, widths: tuple[int, int] = (16, 8), kernel: int = 5) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"ConvCondGenerator needs an image size divisible by 4, got {image_size}")
        self.z_dim, self.num_classes, self.image_size, self.channels = z_dim, num_classes, image_size, channels
        self.start = image_size // 4
        self.widths = widths
        self.fc1 = nn.Linear(z_dim + num_classes, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, widths[0] * self.start * self.start)
        self.bn2 = nn.BatchNorm1d(widths[0] * self.start * self.start)
        self.conv1 = nn.Conv2d(widths[0], widths[1], kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(widths[1], channels, kernel, padding=kernel // 2)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self._with_labels(z, labels)
        h = F.relu(self.bn1(self.fc1(h)))
        h = F.relu(self.bn2(self.fc2(h)))
        h = h.view(-1, self.widths[0], self.start, self.start)
        h = F.relu(self.conv1(F.interpolate(h, scale_factor=2)))
        h = self.conv2(F.interpolate(h, scale_factor=2))
        return torch.sigmoid(h)


class _UpBlock(nn.Module):
    """Pre-activation residual block with nearest ×2 up-sampling (SNGAN/ResNet-GAN style)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.skip(F.interpolate(x, scale_factor=2))


class ResNetGenerator(ConditionalGenerator):
    """ResNet generator for 32×32 or 64×64 images (any channel count)."""

    def __init__(self, image_size: int = 32, channels: int = 3, num_classes: int = 10, z_dim: int = 100,
                 width: int = 256) -> None:
        super().__init__()
        if image_size not in (32, 64):
            raise ValueError(f"ResNetGenerator supports image sizes 32 and 64, got {image_size}")
        self.z_dim, self.num_classes, self.image_size, self.channels = z_dim, num_classes, image_size, channels
        self.width = width
        self.fc = nn.Linear(z_dim + num_classes, 4 * 4 * width)
        n_blocks = 3 if image_size == 32 else 4
        self.blocks = nn.Sequential(*[_UpBlock(width, width) for _ in range(n_blocks)])
        self.bn = nn.BatchNorm2d(width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(self._with_labels(z, labels)).view(-1, self.width, 4, 4)
        h = self.blocks(h)
        return torch.sigmoid(self.out(F.relu(self.bn(h))))


def build_generator(kind: str, image_size: int, channels: int, num_classes: int,
                    z_dim: int | None = None) -> ConditionalGenerator:
    """``kind``: ``"conv"``, ``"resnet"`` or ``"auto"`` (ResNet for RGB 32/64, else the small conv one)."""
    if kind == "auto":
        kind = "resnet" if channels == 3 and image_size in (32, 64) else "conv"
    if kind == "conv":
        return ConvCondGenerator(image_size, channels, num_classes, z_dim=z_dim or 90)
    if kind == "resnet":
        return ResNetGenerator(image_size, channels, num_classes, z_dim=z_dim or 100)
    raise ValueError(f"unknown generator {kind!r}; choose 'auto', 'conv' or 'resnet'")
