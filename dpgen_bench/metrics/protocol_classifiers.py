"""The three downstream classifiers of the DPImageBench protocol (``docs/protocol.md``), written compactly
with depth/width parameters so tests can build tiny ones.

Their architectures as DPImageBench defines them (commit 565f8d7, ``evaluation/classifier/{wrn,resnet,
resnext}.py``; settings in ``evaluation/evaluator.py``, ``cal_acc``):

* ``wrn``: Wide-ResNet (pre-activation basic blocks, stages 16·k, 32·k, 64·k after a 16-channel stem),
  dropout 0.3. CIFAR: depth 28, widen 10; other datasets: its defaults, depth 40, widen 4.
* ``resnet``: CIFAR ResNet with *basic* blocks (stages 16, 32, 64). CIFAR: depth 164 (DPImageBench passes
  ``block_name='BasicBlock'``, so 27 basic blocks per stage); other datasets: depth 110.
* ``resnext``: ResNeXt bottleneck type C (stem 64, stages 64·w, 128·w, 256·w, group width
  cardinality·out/w). CIFAR: depth 28 (2 blocks per stage), cardinality 8, widen 10; other datasets: depth 29,
  cardinality 8, widen 4. DPImageBench passes dropout 0.3, which its ResNeXt ignores; so does this one.

``base`` scales the stem/stage widths (16, 16, 64 in the originals) for tiny test models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

FAMILIES = ("resnet", "wrn", "resnext")
"""In DPImageBench's order (``Evaluator.acc_models``)."""


@dataclass(frozen=True)
class ClassifierSpec:
    """One classifier: ``family`` (:data:`FAMILIES`), ``depth``, ``widen`` (WRN/ResNeXt), ``cardinality``
    (ResNeXt), ``dropout`` (WRN) and ``base`` (stem width; the originals' 16 / 16 / 64)."""

    family: str
    depth: int
    widen: int = 1
    cardinality: int = 8
    dropout: float = 0.0
    base: int | None = None

    def build(self, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
        if self.family == "wrn":
            return WideResNet(in_channels, image_size, num_classes, self.depth, self.widen, self.dropout, self.base or 16)
        if self.family == "resnet":
            return CifarResNet(in_channels, image_size, num_classes, self.depth, self.base or 16)
        if self.family == "resnext":
            return ResNeXt(in_channels, image_size, num_classes, self.depth, self.cardinality, self.widen, self.base or 64)
        raise ValueError(f"unknown classifier family {self.family!r}; choose one of {list(FAMILIES)}")

    def describe(self) -> str:
        if self.family == "wrn":
            return f"WRN-{self.depth}-{self.widen} (dropout {self.dropout:g}, base {self.base or 16})"
        if self.family == "resnet":
            return f"ResNet-{self.depth} (basic blocks, base {self.base or 16})"
        return f"ResNeXt-{self.depth} ({self.cardinality}x, widen {self.widen}, base {self.base or 64})"


CIFAR_CLASSIFIERS = (ClassifierSpec("resnet", 164), ClassifierSpec("wrn", 28, widen=10, dropout=0.3),
                     ClassifierSpec("resnext", 28, widen=10, cardinality=8))
"""DPImageBench's classifiers for CIFAR datasets."""
DEFAULT_CLASSIFIERS = (ClassifierSpec("resnet", 110), ClassifierSpec("wrn", 40, widen=4, dropout=0.3),
                       ClassifierSpec("resnext", 29, widen=4, cardinality=8))
"""DPImageBench's classifiers for every other dataset (the three classes' default sizes)."""


def _kaiming_convs(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def _head(x: torch.Tensor, image_size: int, fc: nn.Linear) -> torch.Tensor:
    # The originals pool with a fixed window image_size // 4 (7 at 28x28, 8 at 32x32): the whole 1/4 map.
    return fc(torch.flatten(F.avg_pool2d(x, image_size // 4), 1))


class _WideBlock(nn.Module):
    """Pre-activation basic block; the shortcut is a strided 1x1 conv of the activated input when shapes differ."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        out = self.conv2(F.dropout(out, self.dropout, self.training))
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, depth: int = 40, widen: int = 4,
                 dropout: float = 0.0, base: int = 16) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n, widths = (depth - 4) // 6, [base, base * widen, 2 * base * widen, 4 * base * widen]
        self.image_size = image_size
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for stage in range(3):
            for i in range(n):
                cin = widths[stage] if i == 0 else widths[stage + 1]
                blocks.append(_WideBlock(cin, widths[stage + 1], (1 if stage == 0 else 2) if i == 0 else 1, dropout))
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.fc = nn.BatchNorm2d(widths[3]), nn.Linear(widths[3], num_classes)
        _kaiming_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _head(F.relu(self.bn(self.blocks(self.conv1(x)))), self.image_size, self.fc)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, depth: int = 110, base: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"ResNet depth with basic blocks must be 6n+2, got {depth}")
        n, widths = (depth - 2) // 6, [base, 2 * base, 4 * base]
        self.image_size = image_size
        self.stem = nn.Sequential(nn.Conv2d(in_channels, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU())
        blocks, cin = [], base
        for stage, width in enumerate(widths):
            for i in range(n):
                blocks.append(_BasicBlock(cin, width, 2 if (i == 0 and stage > 0) else 1))
                cin = width
        self.blocks, self.fc = nn.Sequential(*blocks), nn.Linear(widths[-1], num_classes)
        _kaiming_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _head(self.blocks(self.stem(x)), self.image_size, self.fc)


class _NeXtBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, cardinality: int, widen: int) -> None:
        super().__init__()
        d = cardinality * cout // widen
        self.body = nn.Sequential(
            nn.Conv2d(cin, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(),
            nn.Conv2d(d, d, 3, stride, 1, groups=cardinality, bias=False), nn.BatchNorm2d(d), nn.ReLU(),
            nn.Conv2d(d, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.body(x))


class ResNeXt(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, depth: int = 29, cardinality: int = 8,
                 widen: int = 4, base: int = 64) -> None:
        super().__init__()
        n = (depth - 2) // 9
        if n < 1:
            raise ValueError(f"ResNeXt depth must be >= 11, got {depth}")
        widths = [base, base * widen, 2 * base * widen, 4 * base * widen]
        self.image_size = image_size
        self.stem = nn.Sequential(nn.Conv2d(in_channels, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU())
        blocks = []
        for stage in range(3):
            for i in range(n):
                cin = widths[stage] if i == 0 else widths[stage + 1]
                blocks.append(_NeXtBlock(cin, widths[stage + 1], (1 if stage == 0 else 2) if i == 0 else 1,
                                         cardinality, widen))
        self.blocks, self.fc = nn.Sequential(*blocks), nn.Linear(widths[3], num_classes)
        _kaiming_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _head(self.blocks(self.stem(x)), self.image_size, self.fc)
