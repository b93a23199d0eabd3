"""The shared context of one ``compute_metrics`` call: the two image sets, what every metric may use (device,
seed, caches, where the Inception weights are) and a memo of feature extractors and features, so that metrics in
the same space (FD-effnet and PRDC; FID and IS) extract once. Options of a single metric are not here: each metric
declares its own (:class:`~dpgen_bench.metrics.base.MetricOptions`).

Feature spaces (:mod:`.feature_spaces`) are imported on first use, not at import time: listing metrics
(``dpgen-bench list``) must not load the feature extractors and their weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from ..data.types import ImageDataset

if TYPE_CHECKING:
    from ..features.base import FeatureExtractor
    from .feature_spaces import FeatureSpace

Which = Literal["real", "synthetic"]


def _check_images(ds: ImageDataset, role: str) -> None:
    if len(ds) == 0:
        raise ValueError(f"{role} dataset is empty")
    lo, hi = float(ds.images.min()), float(ds.images.max())
    if not (0.0 <= lo and hi <= 1.0):
        raise ValueError(f"{role} images must lie in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]")


@dataclass
class MetricContext:
    """What every metric's compute function may use. Built by ``compute_metrics``; the inputs are checked on
    construction (non-empty, images in [0, 1], equal image shapes).

    ``real``: the real reference split; ``synthetic``: the generated set (``meta["labelled"] is False`` or negative
    labels: unlabelled). ``seed``: fixes any training a metric does. ``cache_dir``: where real-split feature
    statistics are cached (None: no cache). ``fid_weights_path``: the Inception-v3 checkpoint of the Inception
    space, shared by every metric computed in it (FID, IS); None: torch hub cache, downloaded once if the network
    allows. ``train_extractor``: the extractor the method trained on, or None.
    """

    real: ImageDataset
    synthetic: ImageDataset
    device: str = "cpu"
    seed: int = 0
    cache_dir: str | Path | None = None
    progress: bool = False
    fid_weights_path: str | Path | None = None
    train_extractor: str | None = None
    _extractors: dict[str, FeatureExtractor] = field(default_factory=dict, init=False, repr=False)
    _features: dict[tuple[str, Which], torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_images(self.real, "real_test")
        _check_images(self.synthetic, "synthetic")
        if self.real.images.shape[1:] != self.synthetic.images.shape[1:]:
            raise ValueError(
                f"synthetic images have shape {tuple(self.synthetic.images.shape[1:])}, "
                f"real test images {tuple(self.real.images.shape[1:])}"
            )

    @property
    def n_real(self) -> int:
        return len(self.real)

    @property
    def n_fake(self) -> int:
        return len(self.synthetic)

    def space(self, name: str) -> FeatureSpace:
        """The feature space ``name``; the unknown-name error lists the registered spaces."""
        from .feature_spaces import FEATURE_SPACES

        return FEATURE_SPACES.get(name)

    def extractor(self, space: str) -> FeatureExtractor:
        """The network of ``space`` on ``device``, built once per call."""
        if space not in self._extractors:
            self._extractors[space] = self.space(space).build(self)
        return self._extractors[space]

    def features(self, space: str, which: Which) -> torch.Tensor:
        """(N, D) features of the real or synthetic images in ``space``, extracted once per call."""
        if (space, which) not in self._features:
            ds = self.real if which == "real" else self.synthetic
            label = f"{space} features ({which})" if self.progress else False
            self._features[(space, which)] = self.extractor(space).extract(ds.images, progress=label, device=self.device)
        return self._features[(space, which)]

    def trained_in(self, extractor: str) -> bool:
        """True if the method trained on the recorded extractor ``extractor`` (its ``train_extractor`` may be
        a space's name or alias, e.g. ``effnet`` or ``inception``)."""
        if not self.train_extractor:
            return False
        from .feature_spaces import canonical_extractor

        return canonical_extractor(self.train_extractor) == extractor
