"""One metric layer for every method (docs/metrics.md): FID, FD-<extractor>, downstream accuracy, PRDC and IS.

Each metric is a registered unit (:mod:`.base`) declaring its results, their directions, its feature space and
its options: ``fid``, ``fd-digitcnn``, ``fd-effnet`` (:mod:`.frechet_metrics`), ``accuracy`` (:mod:`.accuracy`),
``prdc`` (:mod:`.prdc`), ``is`` (:mod:`.inception_score`). Add your own with :func:`register_metric`. Sample
counts are whatever the two
datasets hold and are recorded with every value (FD/FID values are only comparable at equal counts). A metric
that cannot be computed is returned with ``value=None`` and a ``missing_reason`` — never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..data.types import ImageDataset
from .base import (METRICS, Direction, Measurement, MetricOptions, MetricOptionsError, MetricResult,
                   MetricSkippedWarning, MetricUnit, SameFeatureSpaceWarning, UnknownMetricError, list_metrics,
                   register_metric)
from .context import MetricContext

# Importing a unit's module registers it; this order is the order of list_metrics().
from . import frechet_metrics  # noqa: E402,F401  (fid, fd-digitcnn, fd-effnet)
from . import accuracy  # noqa: E402,F401  (accuracy)
from . import prdc  # noqa: E402,F401  (prdc)
from . import inception_score  # noqa: E402,F401  (is)
from .frechet import GaussianStats, frechet_distance, gaussian_stats  # noqa: E402

__all__ = [
    "METRICS", "Direction", "Measurement", "MetricContext", "MetricOptions", "MetricOptionsError", "MetricResult",
    "MetricSkippedWarning", "MetricUnit", "SameFeatureSpaceWarning", "UnknownMetricError", "compute_metrics",
    "list_metrics", "parse_metric_options", "register_metric", "frechet_distance", "gaussian_stats",
    "GaussianStats",
]


def parse_metric_options(names: Iterable[str],
                         options: Mapping[str, Mapping[str, Any] | MetricOptions] | None = None) -> dict[str, MetricOptions]:
    """The validated options of each metric of ``names`` (its defaults where ``options`` gives none). Raises
    :class:`UnknownMetricError` for an unknown name, :class:`MetricOptionsError` for options of a metric not in
    ``names`` or options a metric refuses (naming the metric and its valid options)."""
    return _options_of([METRICS.get(name) for name in names], options)


def _options_of(units: list[MetricUnit], options: Mapping[str, Any] | None) -> dict[str, MetricOptions]:
    options = dict(options or {})
    stray = sorted(set(options) - {unit.name for unit in units})
    if stray:
        raise MetricOptionsError(f"options given for metric(s) {stray} that are not computed "
                                 f"(metrics: {[unit.name for unit in units]})")
    return {unit.name: unit.parse_options(options.get(unit.name)) for unit in units}


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
    options: Mapping[str, Mapping[str, Any] | MetricOptions] | None = None,
) -> list[MetricResult]:
    """Evaluate ``synthetic`` (generated images in [0, 1] + labels) against the real test split.

    ``names``: config names from :func:`list_metrics` (:class:`UnknownMetricError` lists them). Returns the
    results of each name's unit, in order. ``options``: metric name → its options (a mapping, or an instance
    of the metric's options model, e.g. ``{"prdc": {"k": 3, "space": "digitcnn"}}``); a metric not named takes
    its defaults; bad options raise :class:`MetricOptionsError` before anything is computed.
    ``train_extractor``: the extractor the method trained on (e.g. ``"efficientnet-lite0"``); a metric in that
    space is flagged and warned about. ``cache_dir``: where real-split feature statistics are cached (None: no
    cache). ``fid_weights_path``: the Inception checkpoint of every metric in Inception space (FID, IS; None:
    torch hub cache, downloaded once if the network allows). ``seed`` fixes classifier training.
    """
    units = [METRICS.get(name) for name in names]
    parsed = _options_of(units, options)
    ctx = MetricContext(real_test, synthetic, device=device, seed=seed, cache_dir=cache_dir, progress=progress,
                        fid_weights_path=fid_weights_path, train_extractor=train_extractor)
    results: list[MetricResult] = []
    for unit in units:  # a plain loop: warnings in evaluate() point at our caller (stacklevel 3)
        results.extend(unit.evaluate(ctx, parsed[unit.name]))
    return results
