"""Datasets read through ``torchvision.datasets`` from a data directory (downloaded once, then offline).

Each loader first looks for the files with ``download=False``. If they are missing it either downloads
(``download=True``) or fails fast with :class:`DatasetUnavailableError` naming the exact files expected and
where. The official train and test parts are pooled; :mod:`dpgen_bench.data.splits` makes the benchmark's
own seeded stratified split (``meta["official_test"]`` marks the examples of the official test part).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..files import atomic_path
from .errors import DatasetUnavailableError
from .types import DatasetInfo, ImageDataset

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
CELEBA_FILES = (
    "img_align_celeba/",
    "list_attr_celeba.txt",
    "identity_CelebA.txt",
    "list_bbox_celeba.txt",
    "list_landmarks_align_celeba.txt",
    "list_eval_partition.txt",
)
CELEBA_LABEL_ATTRIBUTE = "Male"
CELEBA_NAMES = ("female", "male")
"""What the 0/1 label read from :data:`CELEBA_LABEL_ATTRIBUTE` means."""

# What the label indices torchvision returns mean (MNIST's are the digits themselves).
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class TorchvisionSource:
    """How one torchvision dataset is found in, and read from, a data directory.

    Only *how to read*: what the dataset is (name, shape, classes, declared size) is its
    :class:`~dpgen_bench.data.registry.DatasetSpec`, which hands its ``info`` to :meth:`load`."""

    torchvision_class: str
    folder: str
    """Sub-folder of the data directory torchvision uses."""
    files: tuple[str, ...]
    """Paths relative to ``folder`` that must exist (a trailing ``/`` marks a directory)."""
    read: Callable[[Path, bool], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    """``(root, download) -> (uint8 images NCHW, int64 labels, bool official_test mask)``."""
    official_other: Callable[[Path], torch.Tensor | None] | None = None
    """``root -> bool mask`` of rows in neither the official train nor test part (CelebA's official validation
    partition), or None when every row is in one of them. Read for ``split: official``."""

    def expected_paths(self, data_dir: str | Path) -> list[Path]:
        return [Path(data_dir) / self.folder / f for f in self.files]

    def files_present(self, data_dir: str | Path) -> bool:
        """Cheap check (existence only, no checksums) used by listings."""
        return all(
            p.is_dir() if f.endswith("/") else p.is_file() for p, f in zip(self.expected_paths(data_dir), self.files)
        )

    def unavailable_message(self, name: str, data_dir: str | Path, reason: str) -> str:
        root = Path(data_dir)
        listing = "\n".join(f"  {p}{'/' if f.endswith('/') else ''}" for p, f in zip(self.expected_paths(root), self.files))
        return (
            f"dataset {name!r} is not available: {reason}.\n"
            f"Expected these files under data dir {root}:\n{listing}\n"
            f"Either put them there (e.g. copy them from a machine that has them), or download them with "
            f"`dpgen-bench info {name} --data-dir {root} --download` / "
            f"load_dataset({name!r}, data_dir={str(root)!r}, download=True), which calls "
            f"torchvision.datasets.{self.torchvision_class}(root={str(root)!r}, download=True) and needs network access."
        )

    def load(self, info: DatasetInfo, data_dir: str | Path, download: bool) -> ImageDataset:
        """All examples (official train and test parts pooled) as images float32 in [0, 1] labelled by ``info``."""
        root = Path(data_dir)
        if not self.files_present(root) and not download:
            raise DatasetUnavailableError(self.unavailable_message(info.name, root, "files not found and download=False"))
        try:
            images, labels, official_test = self.read(root, download)
        except DatasetUnavailableError:
            raise
        except Exception as exc:  # torchvision raises RuntimeError / URLError / OSError variously
            what = "download failed" if download else "files missing or corrupt"
            raise DatasetUnavailableError(
                self.unavailable_message(info.name, root, f"{what} ({type(exc).__name__}: {exc})")
            ) from exc
        meta = {"source": f"torchvision.datasets.{self.torchvision_class}", "data_dir": str(root),
                "official_test": official_test}
        other = self.official_other(root) if self.official_other is not None else None
        if other is not None:
            meta["official_other"] = other
        return ImageDataset(images=images.float().div_(255.0), labels=labels, info=info, split="all", meta=meta)


def _tv():
    import torchvision.datasets as datasets

    return datasets


def _read_mnist_like(cls_name: str) -> Callable[[Path, bool], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    def read(root: Path, download: bool):
        cls = getattr(_tv(), cls_name)
        parts = [cls(str(root), train=train, download=download) for train in (True, False)]
        images = torch.cat([p.data for p in parts]).unsqueeze(1)  # uint8 N×1×28×28
        labels = torch.cat([torch.as_tensor(p.targets, dtype=torch.int64) for p in parts])
        official_test = torch.cat([torch.zeros(len(parts[0]), dtype=torch.bool), torch.ones(len(parts[1]), dtype=torch.bool)])
        return images, labels, official_test

    return read


def _read_cifar10(root: Path, download: bool):
    parts = [_tv().CIFAR10(str(root), train=train, download=download) for train in (True, False)]
    images = torch.from_numpy(np.concatenate([p.data for p in parts])).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(np.concatenate([np.asarray(p.targets) for p in parts]), dtype=torch.int64)
    official_test = torch.cat([torch.zeros(len(parts[0]), dtype=torch.bool), torch.ones(len(parts[1]), dtype=torch.bool)])
    return images, labels, official_test


def _read_celeba(size: int) -> Callable[[Path, bool], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    def read(root: Path, download: bool):
        from torchvision import transforms
        from tqdm import tqdm

        # Decoding 202,599 JPEGs takes a while: keep the resized uint8 tensors next to the raw files.
        cache = root / "celeba" / f"dpgen_bench_celeba{size}.pt"
        if cache.is_file():
            blob = torch.load(cache, weights_only=True)
            return blob["images"], blob["labels"], blob["official_test"]
        tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()])
        ds = _tv().CelebA(str(root), split="all", target_type="attr", transform=tf, download=download)
        attr = ds.attr_names.index(CELEBA_LABEL_ATTRIBUTE)
        loader = torch.utils.data.DataLoader(ds, batch_size=512, num_workers=0)
        images, labels = [], []
        for x, a in tqdm(loader, desc=f"celeba{size}: decoding", unit="batch"):
            images.append(x)
            labels.append(a[:, attr].long())
        partition = _celeba_partition(root)
        official_test = partition == 2 if partition is not None else torch.zeros(len(ds), dtype=torch.bool)
        blob = {"images": torch.cat(images), "labels": torch.cat(labels), "official_test": official_test}
        with atomic_path(cache) as tmp:  # a killed decode must not leave a truncated cache behind
            torch.save(blob, tmp)
        return blob["images"], blob["labels"], blob["official_test"]

    return read


def _celeba_partition(root: Path) -> torch.Tensor | None:
    path = root / "celeba" / "list_eval_partition.txt"
    try:
        rows = path.read_text().split()
    except OSError:
        return None
    return torch.tensor([int(v) for v in rows[1::2]], dtype=torch.int64)


def _read_imagenet32(root: Path, download: bool):
    """ImageNet's 1,281,167 training images downsampled to 32×32 (Chrabaszcz et al. 2017), as an image folder
    ``imagenet32/train/<wnid>/*`` (what DPImageBench reads for PrivImage); labels are the sorted wnids' indices,
    torchvision's ImageNet class order. Never downloaded (ImageNet's licence): ``download`` is ignored."""
    from torchvision import transforms
    from tqdm import tqdm

    cache = root / "imagenet32" / "dpgen_bench_imagenet32.pt"
    if cache.is_file():
        blob = torch.load(cache, weights_only=True)
        return blob["images"], blob["labels"], torch.zeros(len(blob["labels"]), dtype=torch.bool)
    tf = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.PILToTensor()])
    ds = _tv().ImageFolder(str(root / "imagenet32" / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=1024, num_workers=0)
    images, labels = [], []
    for x, y in tqdm(loader, desc="imagenet32: decoding", unit="batch"):
        images.append(x)
        labels.append(y.long())
    blob = {"images": torch.cat(images), "labels": torch.cat(labels)}
    with atomic_path(cache) as tmp:  # a killed decode must not leave a truncated cache behind
        torch.save(blob, tmp)
    return blob["images"], blob["labels"], torch.zeros(len(blob["labels"]), dtype=torch.bool)


MNIST = TorchvisionSource("MNIST", "MNIST/raw", MNIST_FILES, _read_mnist_like("MNIST"))
IMAGENET32 = TorchvisionSource("ImageFolder", "imagenet32", ("train/",), _read_imagenet32)
FASHION_MNIST = TorchvisionSource("FashionMNIST", "FashionMNIST/raw", MNIST_FILES, _read_mnist_like("FashionMNIST"))
CIFAR10 = TorchvisionSource("CIFAR10", "cifar-10-batches-py", CIFAR10_FILES, _read_cifar10)


def celeba(size: int) -> TorchvisionSource:
    """CelebA aligned faces resized and centre-cropped to ``size``×``size`` (label: :data:`CELEBA_LABEL_ATTRIBUTE`)."""
    return TorchvisionSource("CelebA", "celeba", CELEBA_FILES, _read_celeba(size), official_other=_celeba_official_valid)


def _celeba_official_valid(root: Path) -> torch.Tensor | None:
    """Rows of CelebA's official validation partition (1), or None without the partition file."""
    partition = _celeba_partition(root)
    return None if partition is None else partition == 1
