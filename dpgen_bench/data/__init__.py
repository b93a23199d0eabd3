"""The data layer: dataset registry, deterministic stratified splits, Poisson and class-balanced loaders.

A dataset of your own: :func:`register_dataset` a :class:`DatasetSpec` whose ``load`` follows
:data:`DatasetLoader` (see :mod:`dpgen_bench.data.registry`).

Images are float32 in [0, 1], NCHW; labels int64. The test split never reaches a method.
"""

from .errors import DatasetUnavailableError, UnknownDatasetError
from .loaders import ClassBalancedBatchSampler, class_balanced_loader, poisson_loader
from .registry import (
    DATASETS,
    DEFAULT_DATASET,
    DatasetLoader,
    DatasetSpec,
    dataset_spec,
    default_data_dir,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .registry import OfficialSplit
from .splits import (SPLITS, DatasetSplits, declared_train_size, load_splits, split_dataset, split_official,
                     stratified_split_indices)
from .types import DatasetInfo, ImageDataset

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "ClassBalancedBatchSampler",
    "DatasetInfo",
    "DatasetLoader",
    "DatasetSpec",
    "DatasetSplits",
    "DatasetUnavailableError",
    "ImageDataset",
    "OfficialSplit",
    "SPLITS",
    "declared_train_size",
    "split_official",
    "UnknownDatasetError",
    "class_balanced_loader",
    "dataset_spec",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "load_splits",
    "poisson_loader",
    "register_dataset",
    "split_dataset",
    "stratified_split_indices",
]
