"""``vgg19`` and ``resnet18``: torchvision ImageNet networks as frozen feature extractors.

Weights come through torchvision's own download cache (``$TORCH_HOME/hub/checkpoints``, see
:func:`torch.hub.get_dir`) and are loaded with ``weights_only=True``. Without network access, put the file
named in the error message into that folder. ``weights=None`` builds the architecture with random
weights (tests, ablations); ``weights="path/to/file.pth"`` loads a local state dict.

Input: [0, 1] images, 1 or 3 channels; grey is repeated to RGB; images smaller than ``min_size`` (default
32) are resized bilinearly, others keep their native size unless ``size`` is given; then torchvision's
ImageNet mean/std normalisation.

Layers:

* ``vgg19``: ``conv1_1`` … ``conv5_4`` (16 convolutions), taken *before* their ReLU, no pooling features.
  Default ``"all"`` = all 16, the DP-MEPF paper setting (D = 303,104 at 32×32). ``"pooled"`` = the 512-d
  global average of the last block (after ReLU).
* ``resnet18``: ``stem`` (after conv1/bn1/ReLU/max-pool), ``layer1`` … ``layer4``, ``pooled`` (512-d global
  average, the classifier input). Default ``"all"`` = ``layer1`` … ``layer4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torchvision import models

from .base import FeatureExtractor, register_extractor
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Normalize, parse_layers, resize_input, to_rgb


class WeightsUnavailableError(RuntimeError):
    """Pre-trained weights could not be downloaded or found in the torch hub cache."""


def load_torchvision_state_dict(weights: models.WeightsEnum) -> dict[str, torch.Tensor]:
    """Fetch ``weights`` through torchvision's cache; on failure say which file goes where."""
    url = weights.url
    filename = url.rsplit("/", 1)[-1]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True, weights_only=True,
                                                  map_location="cpu")
    except Exception as exc:  # network errors come in many types (URLError, OSError, HTTPError, ...)
        raise WeightsUnavailableError(
            f"could not load torchvision weights {weights} ({exc.__class__.__name__}: {exc}). "
            f"Download {url} elsewhere and put it at {folder / filename} "
            f"(set TORCH_HOME to change the cache folder), or pass weights='path/to/{filename}'."
        ) from exc


def _resolve_state_dict(weights: str | None, enum: models.WeightsEnum) -> dict[str, torch.Tensor] | None:
    if weights is None:
        return None
    if weights == "imagenet":
        return load_torchvision_state_dict(enum)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


# --- VGG19 ---------------------------------------------------------------------------------------------
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _vgg_layer_names() -> list[str]:
    names, stage, idx = [], 1, 1
    for v in _VGG19_CFG:
        if v == "M":
            stage, idx = stage + 1, 1
        else:
            names.append(f"conv{stage}_{idx}")
            idx += 1
    return names


VGG19_CONVS = _vgg_layer_names()
VGG19_LAYERS = [*VGG19_CONVS, "pooled"]
VGG19_PRESETS = {"all": VGG19_CONVS, "pooled": ["pooled"]}


class VGG19Features(FeatureExtractor):
    name = "vgg19"

    def __init__(self, layers: str | Sequence[str] = "all", weights: str | None = "imagenet",
                 size: int | None = None, min_size: int | None = 32) -> None:
        super().__init__()
        self.layers = parse_layers(layers, VGG19_LAYERS, VGG19_PRESETS)
        self.size, self.min_size = size, min_size
        # Only the convolutional trunk: the 120M-parameter classifier is never needed.
        self.features_net = models.vgg.make_layers(_VGG19_CFG, batch_norm=False)
        state = _resolve_state_dict(weights, models.VGG19_Weights.IMAGENET1K_V1)
        if state is not None:
            trunk = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
            self.features_net.load_state_dict(trunk)
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self._last = max(VGG19_LAYERS.index(n) for n in self.layers)
        self.freeze()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.normalize(resize_input(to_rgb(x), self.size, self.min_size))
        wanted, out, conv_i = set(self.layers), [], 0
        for module in self.features_net:
            if isinstance(module, nn.Conv2d):
                if conv_i > self._last:
                    break
                h = module(h)
                if VGG19_CONVS[conv_i] in wanted:
                    out.append(h.flatten(1))  # before the ReLU, as in DP-MEPF
                conv_i += 1
            elif isinstance(module, nn.MaxPool2d):
                # Tiny inputs cannot be pooled five times; later layers then work at 1×1.
                if min(h.shape[-2:]) >= 2:
                    h = module(h)
            else:
                h = torch.relu(h)  # torchvision's in-place ReLU would break autograd on stored outputs
        if "pooled" in wanted:
            out.append(h.mean(dim=(2, 3)))
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]


@register_extractor("vgg19", trained_on=("imagenet",))
def vgg19(layers: str | Sequence[str] = "all", weights: str | None = "imagenet",
          size: int | None = None, min_size: int | None = 32) -> VGG19Features:
    """VGG19 (torchvision IMAGENET1K_V1) conv features; ``weights``: "imagenet", a path, or None (random)."""
    return VGG19Features(layers=layers, weights=weights, size=size, min_size=min_size)


# --- ResNet-18 -----------------------------------------------------------------------------------------
RESNET18_LAYERS = ["stem", "layer1", "layer2", "layer3", "layer4", "pooled"]
RESNET18_PRESETS = {"all": ["layer1", "layer2", "layer3", "layer4"], "pooled": ["pooled"]}


class ResNet18Features(FeatureExtractor):
    name = "resnet18"

    def __init__(self, layers: str | Sequence[str] = "all", weights: str | None = "imagenet",
                 size: int | None = None, min_size: int | None = 32) -> None:
        super().__init__()
        self.layers = parse_layers(layers, RESNET18_LAYERS, RESNET18_PRESETS)
        self.size, self.min_size = size, min_size
        self.net = models.resnet18(weights=None)
        state = _resolve_state_dict(weights, models.ResNet18_Weights.IMAGENET1K_V1)
        if state is not None:
            self.net.load_state_dict(state)
        self.net.fc = nn.Identity()
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self._last = max(RESNET18_LAYERS.index(n) for n in self.layers)
        self.freeze()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        net, wanted, out = self.net, set(self.layers), []
        h = self.normalize(resize_input(to_rgb(x), self.size, self.min_size))
        h = net.maxpool(net.relu(net.bn1(net.conv1(h))))
        if "stem" in wanted:
            out.append(h.flatten(1))
        for i, name in enumerate(["layer1", "layer2", "layer3", "layer4"], start=1):
            if i > self._last:
                break
            h = getattr(net, name)(h)
            if name in wanted:
                out.append(h.flatten(1))
        if "pooled" in wanted:
            out.append(h.mean(dim=(2, 3)))
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]


@register_extractor("resnet18", trained_on=("imagenet",))
def resnet18(layers: str | Sequence[str] = "all", weights: str | None = "imagenet",
             size: int | None = None, min_size: int | None = 32) -> ResNet18Features:
    """ResNet-18 (torchvision IMAGENET1K_V1) features; ``weights``: "imagenet", a path, or None (random)."""
    return ResNet18Features(layers=layers, weights=weights, size=size, min_size=min_size)
