"""The public classifier behind PrivImage's semantic query (``docs/privimage.md``): a network that maps an image
to scores over the *public* pool's semantic classes, never trained on private data.

Two kinds, chosen by :data:`ClassifierSpec`'s ``kind``:

* ``trained`` (the offline default): a small GroupNorm CNN trained here on the public pool itself (its images and
  semantic labels), seeded from the run seed and cached in ``RunContext.cache_dir`` under a hash of the pool's
  content, the settings and the seed. It never sees private data, so it costs no privacy.
* ``torchvision``: a torchvision architecture with weights from a local file (e.g. a ResNet-50 trained on
  ImageNet, whose 1,000 classes are then the public pool's classes). Missing weights raise
  :class:`MissingClassifierWeightsError` naming the path; nothing is downloaded.

Applied in eval mode one batch at a time with no batch statistics, so each image's top-k classes are a function
of that image alone (what the query's sensitivity argument needs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal, Union

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from dpgen_bench.data.types import ImageDataset
from dpgen_bench.files import atomic_path
from dpgen_bench.privacy.noise import public_generator

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MissingClassifierWeightsError(FileNotFoundError):
    """The ``torchvision`` classifier's weights file does not exist; the message names the path."""


class TrainedClassifierSpec(BaseModel):
    """A small CNN trained on the public pool (no privacy cost: the pool is public)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["trained"] = "trained"
    epochs: float = Field(3.0, gt=0, le=10_000, description="passes over the public pool")
    batch_size: int = Field(128, ge=1, le=65_536, description="batch size of the classifier's training")
    lr: float = Field(2e-3, gt=0, le=1.0, description="Adam learning rate")
    width: int = Field(16, ge=4, le=512, multiple_of=4, description="channels of the first conv (then 2×width), a multiple of 4 (GroupNorm groups)")


class TorchvisionClassifierSpec(BaseModel):
    """A torchvision classifier with local weights whose output classes are the public pool's classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["torchvision"] = "torchvision"
    arch: str = Field("resnet50", description="torchvision.models name, e.g. resnet50, wide_resnet50_2")
    weights: str = Field(..., description="path of a state_dict file (loaded with weights_only=True)")
    input_size: int = Field(224, ge=8, le=1024, description="images are resized to this square size first")
    trained_on: tuple[str, ...] = Field(("imagenet",), description="data families the weights were trained on")


ClassifierSpec = Annotated[Union[TrainedClassifierSpec, TorchvisionClassifierSpec], Field(discriminator="kind")]


class SmallClassifier(nn.Module):
    """Three convs (GroupNorm, ReLU; two of stride 2), global average pooling, a linear layer."""

    def __init__(self, channels: int, classes: int, width: int = 16) -> None:
        super().__init__()
        w2 = 2 * width
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(4, width), nn.ReLU(),
            nn.Conv2d(width, w2, 3, stride=2, padding=1), nn.GroupNorm(4, w2), nn.ReLU(),
            nn.Conv2d(w2, w2, 3, stride=2, padding=1), nn.GroupNorm(4, w2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(w2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x * 2 - 1))


def classifier_key(pool: ImageDataset, spec: TrainedClassifierSpec, seed: int) -> str:
    """Hash of the pool's content (pixels, labels, name, shape), the settings and the seed."""
    digest = hashlib.sha256()
    digest.update(pool.images.contiguous().numpy().tobytes())
    digest.update(pool.labels.contiguous().numpy().tobytes())
    ident = {"pool": pool.info.name, "shape": list(pool.images.shape), "classes": pool.info.num_classes,
             "content": digest.hexdigest(), "spec": spec.model_dump(), "seed": seed}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def train_small_classifier(pool: ImageDataset, spec: TrainedClassifierSpec, seed: int,
                           device: str | torch.device = "cpu") -> SmallClassifier:
    """Plain supervised training on the public pool; initialisation and order from public streams of ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallClassifier(pool.info.channels, pool.info.num_classes, spec.width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
    n = len(pool)  # public: its length is public
    b = min(spec.batch_size, n)
    steps = max(1, round(spec.epochs * n / b))
    order = public_generator(seed, "privimage-classifier-order")
    perm, pos = torch.randperm(n, generator=order), 0
    net.train()
    for _ in range(steps):
        if pos + b > n:
            perm, pos = torch.randperm(n, generator=order), 0
        idx = perm[pos:pos + b]
        pos += b
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(pool.images[idx].to(device)), pool.labels[idx].to(device)).backward()
        opt.step()
    return net.eval()


def trained_classifier(pool: ImageDataset, spec: TrainedClassifierSpec, seed: int, device: str | torch.device,
                       cache_dir: Path | None) -> SmallClassifier:
    """:func:`train_small_classifier`, read from / written to ``cache_dir/privimage-classifier/<key>.pt``."""
    path = None if cache_dir is None else Path(cache_dir) / "privimage-classifier" / f"{classifier_key(pool, spec, seed)}.pt"
    if path is not None and path.exists():
        net = SmallClassifier(pool.info.channels, pool.info.num_classes, spec.width).to(device)
        net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return net.eval()
    net = train_small_classifier(pool, spec, seed, device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(net.state_dict(), tmp)
    return net


def check_torchvision_weights(spec: TorchvisionClassifierSpec) -> Path:
    """The weights path; :class:`MissingClassifierWeightsError` naming it if the file is not there."""
    path = Path(spec.weights).expanduser()
    if not path.is_file():
        raise MissingClassifierWeightsError(
            f"semantic-query classifier weights {str(path)!r} ({spec.arch}) not found: put a torchvision "
            f"{spec.arch} state_dict there (e.g. ImageNet weights saved with torch.save(model.state_dict(), path)) "
            f"or use classifier: {{kind: trained}} to train one on the public pool")
    return path


class _Preprocessed(nn.Module):
    """Resize, grey → RGB, ImageNet normalisation, then the torchvision network."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net, self.size = net, size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net((x - self.mean) / self.std)


def torchvision_classifier(spec: TorchvisionClassifierSpec, classes: int, device: str | torch.device) -> nn.Module:
    """``spec.arch`` with ``classes`` outputs (the pool's) and the local weights; ValueError naming the path when
    the weights do not fit (e.g. ImageNet's 1,000-class head for a pool of another size)."""
    import torchvision

    path = check_torchvision_weights(spec)
    try:
        net = torchvision.models.get_model(spec.arch, weights=None, num_classes=classes)
    except ValueError as exc:
        raise ValueError(f"classifier.arch {spec.arch!r}: {exc}") from None
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"classifier weights {str(path)!r} do not fit {spec.arch} with {classes} output classes "
                         f"(the public pool's classes; its labels must be the classifier's): {first}") from None
    return _Preprocessed(net, spec.input_size).to(device).eval()


def public_classifier(pool: ImageDataset, spec: TrainedClassifierSpec | TorchvisionClassifierSpec, seed: int,
                      device: str | torch.device = "cpu", cache_dir: Path | None = None) -> nn.Module:
    """The classifier ``spec`` describes, in eval mode, scoring the pool's ``pool.info.num_classes`` classes."""
    if isinstance(spec, TorchvisionClassifierSpec):
        return torchvision_classifier(spec, pool.info.num_classes, device)
    return trained_classifier(pool, spec, seed, device, cache_dir)


@torch.no_grad()
def top_k_classes(net: nn.Module, images: torch.Tensor, k: int, batch_size: int = 500,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, k) int64: each image's k highest-scoring classes (distinct), computed batch by batch in eval mode
    (a function of each image alone)."""
    net.eval()
    out = [net(images[i:i + batch_size].to(device)).topk(k, dim=1).indices.cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long)


__all__ = ["ClassifierSpec", "MissingClassifierWeightsError", "SmallClassifier", "TorchvisionClassifierSpec",
           "TrainedClassifierSpec", "check_torchvision_weights", "public_classifier", "top_k_classes"]
