"""One metric layer for every method (DESIGN.md §7): FID, FD-<extractor>, downstream accuracy and PRDC.

``compute_metrics(names, real_test, synthetic, ...)`` takes config names (``list_metrics()``) and returns one
:class:`MetricResult` per reported number. Sample counts are whatever the two datasets hold and are recorded
with every value (FD/FID values are only comparable at equal counts). A metric that cannot be computed is
returned with ``value=None`` and a ``missing_reason`` — never 0.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

import torch

from ..data.types import ImageDataset
from ..features.base import FeatureExtractor, get_extractor
from .accuracy import AccuracyConfig, cnn_accuracy, logreg_accuracy, mlp_accuracy
from .fid import (
    INCEPTION_EXTRACTOR_NAME,
    QUANTISATION,
    RESIZE_MODE,
    InceptionV3Features,
)
from .frechet import GaussianStats, frechet_distance, frechet_distance_to_features, gaussian_stats
from .prdc import prdc as _prdc
from .reference_stats import cached_reference_stats

__all__ = [
    "MetricResult",
    "SameFeatureSpaceWarning",
    "MetricSkippedWarning",
    "compute_metrics",
    "list_metrics",
    "frechet_distance",
    "gaussian_stats",
    "GaussianStats",
]

Direction = Literal["lower", "higher"]
FD_IMPLEMENTATION = "dpgen_bench.metrics.frechet (float64; Tr sqrt via eigvals of S1 S2)"
PRDC_K = 5


class SameFeatureSpaceWarning(UserWarning):
    """A method is evaluated in the feature space it was trained to match: the number flatters it."""


class MetricSkippedWarning(UserWarning):
    """A requested metric could not be computed (its reason is in ``MetricResult.missing_reason``)."""


@dataclass(frozen=True)
class MetricResult:
    """One reported number.

    ``value``: the metric (None when it could not be computed; see ``missing_reason``). ``direction``: whether
    lower or higher is better. ``n_real`` / ``n_fake``: sample counts behind the value. ``extractor``: the
    feature space (None for pixel-space metrics). ``same_space_as_training``: the method trained on this
    extractor. ``details``: implementation, resize mode, classifier, cache use, ...
    """

    name: str
    value: float | None
    direction: Direction
    n_real: int
    n_fake: int
    extractor: str | None = None
    missing_reason: str | None = None
    same_space_as_training: bool = False
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.direction not in ("lower", "higher"):
            raise ValueError(f"direction must be 'lower' or 'higher', got {self.direction!r}")
        if (self.value is None) == (self.missing_reason is None):
            raise ValueError(f"metric {self.name!r}: exactly one of value / missing_reason must be set")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Space:
    """A feature space an FD / PRDC can be computed in."""

    extractor: str  # recorded name; also what ``train_extractor`` is compared with
    build: Callable[[str], FeatureExtractor]
    key: str  # cache key: extractor + options
    applies: Callable[[ImageDataset], str | None]  # None if usable, else the reason it is not


def _grey28_only(ds: ImageDataset) -> str | None:
    if tuple(ds.images.shape[1:]) != (1, 28, 28):
        return f"digitcnn features need grey 28x28 images; {ds.info.name!r} has shape {tuple(ds.images.shape[1:])}"
    return None


def _one_or_three_channels(ds: ImageDataset) -> str | None:
    if ds.images.shape[1] not in (1, 3):
        return f"needs 1- or 3-channel images; {ds.info.name!r} has {ds.images.shape[1]} channels"
    return None


def _spaces(fid_weights_path: str | Path | None) -> dict[str, _Space]:
    return {
        "digitcnn": _Space("digitcnn", lambda dev: get_extractor("digitcnn", device=dev), "digitcnn", _grey28_only),
        "effnet": _Space(
            "efficientnet-lite0",
            lambda dev: get_extractor("efficientnet-lite0", device=dev, layers="pooled"),
            "efficientnet-lite0:layers=pooled:min_size=32",
            _one_or_three_channels,
        ),
        "inception": _Space(
            INCEPTION_EXTRACTOR_NAME,
            lambda dev: InceptionV3Features(fid_weights_path).freeze().to(dev),
            f"{INCEPTION_EXTRACTOR_NAME}:pool2048:tf1-bilinear:uint8-round",
            _one_or_three_channels,
        ),
    }


# Names a method may use for the extractor it trained on, mapped to the names recorded here.
_EXTRACTOR_ALIASES = {
    "effnet": "efficientnet-lite0",
    "inception": INCEPTION_EXTRACTOR_NAME,
    "inception-v3": INCEPTION_EXTRACTOR_NAME,
    "inceptionv3": INCEPTION_EXTRACTOR_NAME,
}

# config name → (result names it expands to)
_METRICS: dict[str, tuple[str, ...]] = {
    "fid": ("FID",),
    "fd-digitcnn": ("FD-digitcnn",),
    "fd-effnet": ("FD-effnet",),
    "accuracy": ("acc-logreg", "acc-mlp", "acc-cnn"),
    "prdc": ("precision", "recall", "density", "coverage"),
}


def list_metrics() -> list[str]:
    """Metric names accepted in configs."""
    return list(_METRICS)


def _check_unit_range(ds: ImageDataset, role: str) -> None:
    if len(ds) == 0:
        raise ValueError(f"{role} dataset is empty")
    lo, hi = float(ds.images.min()), float(ds.images.max())
    if not (0.0 <= lo and hi <= 1.0):
        raise ValueError(f"{role} images must lie in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]")


class _FeatureCache:
    """Per-call memo: build each extractor once, extract each set once."""

    def __init__(self, real: ImageDataset, fake: ImageDataset, spaces: dict[str, _Space], device: str, progress: bool):
        self.real, self.fake, self.spaces, self.device, self.progress = real, fake, spaces, device, progress
        self._nets: dict[str, FeatureExtractor] = {}
        self._feats: dict[tuple[str, str], torch.Tensor] = {}

    def net(self, space: str) -> FeatureExtractor:
        if space not in self._nets:
            self._nets[space] = self.spaces[space].build(self.device)
        return self._nets[space]

    def features(self, space: str, which: Literal["real", "fake"]) -> torch.Tensor:
        if (space, which) not in self._feats:
            ds = self.real if which == "real" else self.fake
            self._feats[(space, which)] = self.net(space).extract(
                ds.images, progress=f"{space} features ({which})" if self.progress else False, device=self.device
            )
        return self._feats[(space, which)]


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

    ``names``: config names from :func:`list_metrics`. ``train_extractor``: the extractor the method trained on
    (e.g. ``"efficientnet-lite0"``); a metric in that space is flagged and warned about. ``cache_dir``: where
    real-split feature statistics are cached (None: no cache). ``fid_weights_path``: the Inception checkpoint
    (None: torch hub cache, downloaded once if the network allows). ``seed`` fixes classifier training.
    ``prdc_space``: feature space of PRDC, ``"effnet"`` (default) or ``"digitcnn"``. EfficientNet is the
    default everywhere because in digitcnn space uniform noise scores precision ≈ 0.98 against real MNIST
    (the CNN maps noise into a tight cluster inside the real manifold), while in EfficientNet space it scores 0.
    """
    names = list(names)
    unknown = [n for n in names if n not in _METRICS]
    if unknown:
        raise ValueError(f"unknown metric name(s) {unknown}; available: {', '.join(list_metrics())}")
    _check_unit_range(real_test, "real_test")
    _check_unit_range(synthetic, "synthetic")
    if real_test.images.shape[1:] != synthetic.images.shape[1:]:
        raise ValueError(
            f"synthetic images have shape {tuple(synthetic.images.shape[1:])}, "
            f"real test images {tuple(real_test.images.shape[1:])}"
        )

    spaces = _spaces(fid_weights_path)
    feats = _FeatureCache(real_test, synthetic, spaces, device, progress)
    trained_on = _EXTRACTOR_ALIASES.get(train_extractor, train_extractor) if train_extractor else None
    n_real, n_fake = len(real_test), len(synthetic)
    results: list[MetricResult] = []

    def emit(name: str, direction: Direction, *, value=None, reason=None, space: str | None = None, details=None):
        extractor = spaces[space].extractor if space else None
        same = extractor is not None and extractor == trained_on
        if same and value is not None:
            warnings.warn(
                f"{name} is computed in the {extractor} feature space the method was trained on; "
                "it is biased in the method's favour",
                SameFeatureSpaceWarning,
                stacklevel=3,
            )
        if reason is not None:
            warnings.warn(f"{name} skipped: {reason}", MetricSkippedWarning, stacklevel=3)
        results.append(
            MetricResult(
                name=name,
                value=None if value is None else float(value),
                direction=direction,
                n_real=n_real,
                n_fake=n_fake,
                extractor=extractor,
                missing_reason=reason,
                same_space_as_training=same,
                details=dict(details or {}),
            )
        )

    def frechet(result_name: str, space: str, extra: dict) -> None:
        sp = spaces[space]
        reason = sp.applies(real_test)
        if reason is None and min(n_real, n_fake) < 2:
            reason = f"needs at least 2 samples per set, got {n_real} real, {n_fake} fake"
        if reason is not None:
            emit(result_name, "lower", reason=reason, space=space, details=extra)
            return
        try:
            ref, from_cache = cached_reference_stats(
                real_test, sp.key, lambda: gaussian_stats(feats.features(space, "real")), cache_dir
            )
            fake_features = feats.features(space, "fake")
        except (FileNotFoundError, ImportError) as exc:  # incl. InceptionWeightsMissing: weights not on disk
            emit(result_name, "lower", reason=str(exc), space=space, details=extra)
            return
        details = {
            "implementation": FD_IMPLEMENTATION,
            "reference": f"{real_test.info.name}/{real_test.split}",
            "reference_stats_from_cache": from_cache,
            "feature_dim": ref.dim,
            **extra,
        }
        emit(result_name, "lower", value=frechet_distance_to_features(ref, fake_features), space=space, details=details)

    for metric in names:
        if metric == "fid":
            frechet(
                "FID",
                "inception",
                {
                    "network": "torch-fidelity FeatureExtractorInceptionV3, 2015-12-05 TF weights, pool 2048",
                    "resize": RESIZE_MODE,
                    "input": QUANTISATION,
                },
            )
        elif metric == "fd-digitcnn":
            frechet("FD-digitcnn", "digitcnn", {"network": "digit-recognizer-py CNN, penultimate 256-d ReLU"})
        elif metric == "fd-effnet":
            frechet(
                "FD-effnet",
                "effnet",
                {"network": "EfficientNet-Lite0 ImageNet, 1280-d pooled", "resize": "bilinear up to >= 32x32"},
            )
        elif metric == "accuracy":
            results.extend(_accuracy(real_test, synthetic, seed, device, progress, accuracy_config))
        elif metric == "prdc":
            if prdc_space not in ("effnet", "digitcnn"):
                raise ValueError(f"prdc_space must be 'effnet' or 'digitcnn', got {prdc_space!r}")
            space = prdc_space
            reason = spaces[space].applies(real_test)
            if reason is None and min(n_real, n_fake) <= prdc_k:
                reason = f"PRDC with k={prdc_k} needs more than {prdc_k} samples per set, got {n_real} real, {n_fake} fake"
            if reason is None:
                values = _prdc(feats.features(space, "real"), feats.features(space, "fake"), k=prdc_k)
            for key in _METRICS["prdc"]:
                if reason is None:
                    emit(key, "higher", value=values[key], space=space, details={"k": prdc_k})
                else:
                    emit(key, "higher", reason=reason, space=space, details={"k": prdc_k})
    return results


def _accuracy(
    real: ImageDataset, fake: ImageDataset, seed: int, device: str, progress: bool, config: AccuracyConfig
) -> list[MetricResult]:
    n_real, n_fake = len(real), len(fake)
    reason = None
    if fake.meta.get("labelled") is False or bool((fake.labels < 0).any()):
        reason = "synthetic set is unlabelled"
    elif int(fake.labels.max()) >= real.info.num_classes:
        reason = f"synthetic label {int(fake.labels.max())} outside the {real.info.num_classes} real classes"
    runners = {
        "acc-logreg": ("sklearn LogisticRegression(lbfgs) on pixels", lambda: logreg_accuracy(fake, real, seed, config)),
        "acc-mlp": (f"sklearn MLPClassifier({config.mlp_hidden},) on pixels", lambda: mlp_accuracy(fake, real, seed, config)),
        "acc-cnn": (
            f"torch SmallCNN(width={config.cnn_width}), {config.cnn_epochs} epochs Adam",
            lambda: cnn_accuracy(fake, real, seed, config, device=device, progress=progress),
        ),
    }
    single = reason is None and len(torch.unique(fake.labels)) < 2
    out = []
    for name, (classifier, run) in runners.items():
        details = {"classifier": classifier, "seed": seed, "train": "synthetic", "test": f"{real.info.name}/{real.split}"}
        if reason is not None:
            warnings.warn(f"{name} skipped: {reason}", MetricSkippedWarning, stacklevel=3)
            out.append(MetricResult(name, None, "higher", n_real, n_fake, missing_reason=reason, details=details))
            continue
        if single:
            # One class only: any classifier can only predict it; report that constant predictor's accuracy.
            only = int(fake.labels[0])
            value = float((real.labels == only).double().mean())
            details["note"] = f"synthetic set has the single class {only}: constant predictor"
        else:
            value = run()
        out.append(MetricResult(name, value, "higher", n_real, n_fake, details=details))
    return out
