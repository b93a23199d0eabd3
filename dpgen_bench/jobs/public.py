"""Public data for methods that pre-train on it: the checks before training and the loading for a cell.

A method entry of the benchmark YAML may name a public dataset (``public_data: {dataset: digits}``). It is
allowed only for a method whose capabilities declare ``public_data`` (never guessed from config field names),
and only if it is not the private dataset or another dataset of the same family (``DatasetSpec.family``:
``mnist`` and ``mnist-5k`` are one distribution, so neither is public for the other). The runner loads it
through the data layer, converts it to the private images' shape and hands it to the method as
``RunContext.public_data``; the cell key and every results row (``public_dataset``) carry it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
import torch.nn.functional as F

from ..data.types import DatasetInfo, ImageDataset


class PublicDataError(ValueError):
    """Public data that cannot be used for this benchmark; the runner turns it into a ConfigFileError."""


def check_public_data(public: Any, private_dataset: str, method_name: str, capabilities: Any) -> None:
    """Refuse, naming both datasets, public data of the private family; refuse public data for a method that
    does not declare it uses any; refuse an unknown public dataset or a shape that cannot be converted."""
    from ..data import UnknownDatasetError, dataset_spec

    if not capabilities.public_data:
        raise PublicDataError(
            f"method {method_name!r} does not declare that it uses public data (Capabilities.public_data), but "
            f"its entry sets public_data: {{dataset: {public.dataset!r}}}; remove it or use a method that pre-trains"
        )
    try:
        pub, priv = dataset_spec(public.dataset), dataset_spec(private_dataset)
    except UnknownDatasetError as exc:
        raise PublicDataError(f"dataset: {exc}") from None
    if pub.info.name == priv.info.name or pub.family == priv.family:
        raise PublicDataError(
            f"public dataset {public.dataset!r} is not public with respect to the private dataset "
            f"{private_dataset!r}: both are the {priv.family!r} family (the same data distribution, possibly the "
            f"same images); choose public data from another source (e.g. 'digits' for MNIST)"
        )
    converted_info(pub.info, priv.info, public.resize)  # raises for an impossible conversion


def converted_info(public: DatasetInfo, private: DatasetInfo, resize: str) -> DatasetInfo:
    """The public data's info after conversion to the private images' channels and size."""
    if public.channels not in (1, 3) or private.channels not in (1, 3):
        raise PublicDataError(f"cannot convert {public.channels} to {private.channels} channels")
    if (public.height, public.width) != (private.height, private.width) and resize == "none":
        raise PublicDataError(
            f"public dataset {public.name!r} has {public.height}x{public.width} images, the private dataset "
            f"{private.name!r} {private.height}x{private.width}; set public_data.resize to 'bilinear' or 'nearest'"
        )
    return DatasetInfo(f"{public.name}@{private.channels}x{private.height}x{private.width}", private.channels,
                       private.height, private.width, public.num_classes, public.class_names)


def convert_to_shape(data: ImageDataset, private: DatasetInfo, resize: str = "bilinear") -> ImageDataset:
    """``data`` resized (``bilinear``/``nearest``) to the private height × width and mapped to its channels
    (grey → RGB by repetition, RGB → grey by the channel mean); values stay in [0, 1]."""
    info = converted_info(data.info, private, resize)
    x = data.images
    if x.shape[-2:] != (private.height, private.width):
        kwargs = {"align_corners": False} if resize == "bilinear" else {}
        x = F.interpolate(x, size=(private.height, private.width), mode=resize, **kwargs)
    if x.shape[1] != private.channels:
        x = x.repeat(1, 3, 1, 1) if private.channels == 3 else x.mean(1, keepdim=True)
    meta = {**data.meta, "public_source": data.info.name, "resize": resize}
    return ImageDataset(x.clamp(0, 1).contiguous(), data.labels.clone(), info, split="public", meta=meta,
                        nominal_size=len(x))


@functools.lru_cache(maxsize=2)
def _load(dataset: str, data_dir: str | None, download: bool) -> ImageDataset:
    from ..data import load_dataset

    return load_dataset(dataset, data_dir=data_dir, download=download)


def load_public_data(public: dict[str, Any], private: DatasetInfo, data_dir: str | None = None,
                     download: bool = False) -> ImageDataset:
    """A cell's public data (``Cell.public_data``: the validated ``public_data`` entry as a dict), loaded
    through the data layer (all of its examples; it is public, so its length is too) and converted to
    ``private``'s shape. ``data_dir``/``download`` are the benchmark's unless the entry sets its own."""
    data = _load(public["dataset"], public.get("data_dir") or data_dir, bool(public.get("download") or download))
    with torch.no_grad():
        return convert_to_shape(data, private, public.get("resize", "bilinear"))


def with_public_data(context, public: dict[str, Any] | None, private: DatasetInfo, data_dir: str | None = None,
                     download: bool = False):
    """``context`` (a ``RunContext``) with ``public`` loaded by :func:`load_public_data` as its ``public_data``;
    ``context`` unchanged when there is none. The one way a cell, an audit or a tuning candidate gets the public
    data its method pre-trains on."""
    if public is None:
        return context
    return dataclasses.replace(context, public_data=load_public_data(public, private, data_dir=data_dir,
                                                                     download=download))
