"""The data layer: dataset registry, deterministic stratified splits, Poisson and class-balanced loaders.

Images are float32 in [0, 1], NCHW; labels int64. The test split never reaches a method.
"""

from .errors import DatasetUnavailableError, UnknownDatasetError
from .loaders import ClassBalancedBatchSampler, class_balanced_loader, poisson_loader
from .registry import DEFAULT_DATASET, DatasetSpec, dataset_spec, default_data_dir, list_datasets, load_dataset
from .splits import DatasetSplits, load_splits, split_dataset, stratified_split_indices
from .types import DatasetInfo, ImageDataset

__all__ = [
    "DEFAULT_DATASET",
    "ClassBalancedBatchSampler",
    "DatasetInfo",
    "DatasetSpec",
    "DatasetSplits",
    "DatasetUnavailableError",
    "ImageDataset",
    "UnknownDatasetError",
    "class_balanced_loader",
    "dataset_spec",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "load_splits",
    "poisson_loader",
    "split_dataset",
    "stratified_split_indices",
]
