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

FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGIT_NAMES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class TorchvisionSource:
    """How one torchvision dataset is found in, and read from, a data directory."""

    info: DatasetInfo
    size: int
    torchvision_class: str
    folder: str
    """Sub-folder of the data directory torchvision uses."""
    files: tuple[str, ...]
    """Paths relative to ``folder`` that must exist (a trailing ``/`` marks a directory)."""
    read: Callable[[Path, bool], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    """``(root, download) -> (uint8 images NCHW, int64 labels, bool official_test mask)``."""

    def expected_paths(self, data_dir: str | Path) -> list[Path]:
        return [Path(data_dir) / self.folder / f for f in self.files]

    def files_present(self, data_dir: str | Path) -> bool:
        """Cheap check (existence only, no checksums) used by listings."""
        return all(
            p.is_dir() if f.endswith("/") else p.is_file() for p, f in zip(self.expected_paths(data_dir), self.files)
        )

    def unavailable_message(self, data_dir: str | Path, reason: str) -> str:
        root = Path(data_dir)
        listing = "\n".join(f"  {p}{'/' if f.endswith('/') else ''}" for p, f in zip(self.expected_paths(root), self.files))
        return (
            f"dataset {self.info.name!r} is not available: {reason}.\n"
            f"Expected these files under data dir {root}:\n{listing}\n"
            f"Either put them there (e.g. copy them from a machine that has them), or download them with "
            f"`dpgen-bench info {self.info.name} --data-dir {root} --download` / "
            f"load_dataset({self.info.name!r}, data_dir={str(root)!r}, download=True), which calls "
            f"torchvision.datasets.{self.torchvision_class}(root={str(root)!r}, download=True) and needs network access."
        )

    def load(self, data_dir: str | Path, download: bool) -> ImageDataset:
        root = Path(data_dir)
        if not self.files_present(root) and not download:
            raise DatasetUnavailableError(self.unavailable_message(root, "files not found and download=False"))
        try:
            images, labels, official_test = self.read(root, download)
        except DatasetUnavailableError:
            raise
        except Exception as exc:  # torchvision raises RuntimeError / URLError / OSError variously
            what = "download failed" if download else "files missing or corrupt"
            raise DatasetUnavailableError(
                self.unavailable_message(root, f"{what} ({type(exc).__name__}: {exc})")
            ) from exc
        return ImageDataset(
            images=images.float().div_(255.0),
            labels=labels,
            info=self.info,
            split="all",
            meta={"source": f"torchvision.datasets.{self.torchvision_class}", "data_dir": str(root),
                  "official_test": official_test},
        )


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
        tmp = cache.with_suffix(".tmp")
        torch.save(blob, tmp)
        tmp.replace(cache)
        return blob["images"], blob["labels"], blob["official_test"]

    return read


def _celeba_partition(root: Path) -> torch.Tensor | None:
    path = root / "celeba" / "list_eval_partition.txt"
    try:
        rows = path.read_text().split()
    except OSError:
        return None
    return torch.tensor([int(v) for v in rows[1::2]], dtype=torch.int64)


SOURCES: dict[str, TorchvisionSource] = {
    "mnist": TorchvisionSource(
        DatasetInfo("mnist", 1, 28, 28, 10, DIGIT_NAMES), 70_000, "MNIST", "MNIST/raw", MNIST_FILES,
        _read_mnist_like("MNIST"),
    ),
    "fashion-mnist": TorchvisionSource(
        DatasetInfo("fashion-mnist", 1, 28, 28, 10, FASHION_NAMES), 70_000, "FashionMNIST", "FashionMNIST/raw",
        MNIST_FILES, _read_mnist_like("FashionMNIST"),
    ),
    "cifar10": TorchvisionSource(
        DatasetInfo("cifar10", 3, 32, 32, 10, CIFAR10_NAMES), 60_000, "CIFAR10", "cifar-10-batches-py",
        CIFAR10_FILES, _read_cifar10,
    ),
    "celeba32": TorchvisionSource(
        DatasetInfo("celeba32", 3, 32, 32, 2, ("female", "male")), 202_599, "CelebA", "celeba", CELEBA_FILES,
        _read_celeba(32),
    ),
    "celeba64": TorchvisionSource(
        DatasetInfo("celeba64", 3, 64, 64, 2, ("female", "male")), 202_599, "CelebA", "celeba", CELEBA_FILES,
        _read_celeba(64),
    ),
}
