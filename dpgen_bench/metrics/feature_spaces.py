"""The feature spaces metrics are computed in: ``digitcnn``, ``effnet`` and ``inception`` (the FID space).

A :class:`FeatureSpace` says how to build its network, which images it applies to, the key its reference
statistics are cached under, the extractor name recorded with every result (and compared with a method's
``train_extractor``) and what a distance in it records about the network. Importing this module loads the
feature extractors; :class:`~dpgen_bench.metrics.context.MetricContext` imports it on first use (this module
does not import the context back: a network is built from the :class:`BuildSettings` it needs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..data.types import ImageDataset
from ..features.base import FeatureExtractor, get_extractor
from ..named_registry import Registry
from .fid import INCEPTION_EXTRACTOR_NAME, QUANTISATION, RESIZE_MODE, InceptionV3Features


class BuildSettings(Protocol):
    """What building a space's network needs (a :class:`~dpgen_bench.metrics.context.MetricContext` has it)."""

    @property
    def device(self) -> str: ...

    @property
    def fid_weights_path(self) -> str | Path | None: ...


@dataclass(frozen=True)
class FeatureSpace:
    """A feature space. ``name``: what metric units and options call it (``prdc: {space: effnet}``).
    ``extractor``: the recorded extractor name. ``cache_key``: extractor plus options, the reference-statistics
    cache key. ``build(settings)``: the frozen network on ``settings.device``. ``applies(real)``: None if the space can
    embed these images, else the reason it cannot. ``details``: network and preprocessing, recorded with a
    Fréchet distance. ``aliases``: other names a method may give for this extractor as its ``train_extractor``."""

    name: str
    extractor: str
    cache_key: str
    build: Callable[[BuildSettings], FeatureExtractor]
    applies: Callable[[ImageDataset], str | None]
    details: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


def _grey28_only(ds: ImageDataset) -> str | None:
    if tuple(ds.images.shape[1:]) != (1, 28, 28):
        return f"digitcnn features need grey 28x28 images; {ds.info.name!r} has shape {tuple(ds.images.shape[1:])}"
    return None


def _one_or_three_channels(ds: ImageDataset) -> str | None:
    if ds.images.shape[1] not in (1, 3):
        return f"needs 1- or 3-channel images; {ds.info.name!r} has {ds.images.shape[1]} channels"
    return None


FEATURE_SPACES: Registry[FeatureSpace] = Registry("metric feature space")
"""The spaces a metric unit may name as its ``feature_space``."""

for _space in (
    FeatureSpace(
        "inception",
        INCEPTION_EXTRACTOR_NAME,
        f"{INCEPTION_EXTRACTOR_NAME}:pool2048:tf1-bilinear:uint8-round",
        lambda ctx: InceptionV3Features(ctx.fid_weights_path).freeze().to(ctx.device),
        _one_or_three_channels,
        {
            "network": "torch-fidelity FeatureExtractorInceptionV3, 2015-12-05 TF weights, pool 2048",
            "resize": RESIZE_MODE,
            "input": QUANTISATION,
        },
        aliases=("inception-v3", "inceptionv3"),
    ),
    FeatureSpace(
        "digitcnn",
        "digitcnn",
        "digitcnn",
        lambda ctx: get_extractor("digitcnn", device=ctx.device),
        _grey28_only,
        {"network": "digit-recognizer-py CNN, penultimate 256-d ReLU"},
    ),
    FeatureSpace(
        "effnet",
        "efficientnet-lite0",
        "efficientnet-lite0:layers=pooled:min_size=32",
        lambda ctx: get_extractor("efficientnet-lite0", device=ctx.device, layers="pooled"),
        _one_or_three_channels,
        {"network": "EfficientNet-Lite0 ImageNet, 1280-d pooled", "resize": "bilinear up to >= 32x32"},
    ),
):
    FEATURE_SPACES.register(_space.name, _space, origin=__name__)


def canonical_extractor(name: str) -> str:
    """The recorded extractor name for a space name or alias (``effnet`` → ``efficientnet-lite0``); other
    names unchanged."""
    for space_name, space in FEATURE_SPACES.items():
        if name == space_name or name in space.aliases:
            return space.extractor
    return name
