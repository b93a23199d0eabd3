"""One metric layer for every method (docs/metrics.md): FID, FD-<extractor>, downstream accuracy and PRDC.

Each metric is a registered unit (:mod:`.base`) declaring its results, their directions and its feature
space: ``fid``, ``fd-digitcnn``, ``fd-effnet`` (:mod:`.frechet_metrics`), ``accuracy`` (:mod:`.accuracy`),
``prdc`` (:mod:`.prdc`). Add your own with :func:`register_metric`. Sample counts are whatever the two
datasets hold and are recorded with every value (FD/FID values are only comparable at equal counts). A metric
that cannot be computed is returned with ``value=None`` and a ``missing_reason`` — never 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..data.types import ImageDataset
from .base import (METRICS, Direction, Measurement, MetricResult, MetricSkippedWarning, MetricUnit,
                   SameFeatureSpaceWarning, UnknownMetricError, list_metrics, register_metric)
from .context import MetricContext

# Importing a unit's module registers it; this order is the order of list_metrics().
from . import frechet_metrics  # noqa: E402,F401  (fid, fd-digitcnn, fd-effnet)
from .accuracy import AccuracyConfig  # noqa: E402  (accuracy)
from .prdc import PRDC_K  # noqa: E402  (prdc)
from .frechet import GaussianStats, frechet_distance, gaussian_stats  # noqa: E402

__all__ = [
    "METRICS", "Direction", "Measurement", "MetricContext", "MetricResult", "MetricSkippedWarning", "MetricUnit",
    "SameFeatureSpaceWarning", "UnknownMetricError", "compute_metrics", "list_metrics", "register_metric",
    "frechet_distance", "gaussian_stats", "GaussianStats",
]


def compute_metrics(
    names: Iterable[str],
    real_test: ImageDataset,
    synthetic: ImageDataset,
    *,
    train_extractor: str | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    fid_weights_path: str | Path | None = None,
    progress: bool = False,
    prdc_k: int = PRDC_K,
    prdc_space: str = "effnet",
    accuracy_config: AccuracyConfig = AccuracyConfig(),
) -> list[MetricResult]:
    """Evaluate ``synthetic`` (generated images in [0, 1] + labels) against the real test split.

    ``names``: config names from :func:`list_metrics` (:class:`UnknownMetricError` lists them). Returns the
    results of each name's unit, in order. ``train_extractor``: the extractor the method trained on (e.g.
    ``"efficientnet-lite0"``); a metric in that space is flagged and warned about. ``cache_dir``: where
    real-split feature statistics are cached (None: no cache). ``fid_weights_path``: the Inception checkpoint
    (None: torch hub cache, downloaded once if the network allows). ``seed`` fixes classifier training.
    ``prdc_k``: k of the PRDC k-NN balls. ``prdc_space``: feature space of PRDC, ``"effnet"`` (default) or
    ``"digitcnn"``. EfficientNet is the default everywhere because in digitcnn space uniform noise scores
    precision ≈ 0.98 against real MNIST (the CNN maps noise into a tight cluster inside the real manifold),
    while in EfficientNet space it scores 0.
    """
    units = [METRICS.get(name) for name in names]
    ctx = MetricContext(real_test, synthetic, device, seed, cache_dir, progress, prdc_k, prdc_space,
                        accuracy_config, fid_weights_path, train_extractor)
    results: list[MetricResult] = []
    for unit in units:  # a plain loop: warnings in evaluate() point at our caller (stacklevel 3)
        results.extend(unit.evaluate(ctx))
    return results
