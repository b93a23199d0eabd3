"""The value types the whole library passes around: an image dataset and its public metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class DatasetInfo:
    """Public metadata of a dataset: what a method may know without touching the private data.

    The number of private examples is *not* here: under add/remove neighbouring it is private.
    """

    name: str
    channels: int
    height: int
    width: int
    num_classes: int
    class_names: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.channels, self.height, self.width)


class UndeclaredSizeError(ValueError):
    """A private split without a declared (public) size: its actual length is private and may not be used."""


@dataclass
class ImageDataset:
    """Images as float tensors in [0, 1], NCHW, with int64 labels in [0, num_classes).

    ``nominal_size`` is the *declared*, public size n̂ of this split (from the dataset spec, or given by the
    user). Under add/remove neighbouring the actual length ``len(dataset)`` of a private split is private:
    sample rates q = B/n̂, step counts and δ rules must use :meth:`public_size`, never ``len``. A subset keeps
    the declared size, so a neighbouring dataset (one example removed) declares the same n̂.
    """

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    split: str = "all"
    meta: dict = field(default_factory=dict)
    nominal_size: int | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be NCHW, got shape {tuple(self.images.shape)}")
        if self.images.shape[1:] != self.info.shape:
            raise ValueError(
                f"images have shape {tuple(self.images.shape[1:])} per example, "
                f"but dataset {self.info.name!r} declares {self.info.shape}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}"
            )
        if not self.images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {self.images.dtype}")
        self.labels = self.labels.long()
        if self.nominal_size is not None and (isinstance(self.nominal_size, bool) or int(self.nominal_size) != self.nominal_size
                                              or self.nominal_size < 1):
            raise ValueError(f"nominal_size must be an integer >= 1 or None, got {self.nominal_size!r}")

    def public_size(self) -> int:
        """The declared size n̂ (public); :class:`UndeclaredSizeError` if none was declared."""
        if self.nominal_size is None:
            raise UndeclaredSizeError(
                f"the {self.split!r} split of {self.info.name!r} has no declared size: its length is private under "
                f"add/remove neighbouring, so sample rates, step counts and δ need a public one; pass "
                f"ImageDataset(..., nominal_size=N) (splits from load_splits declare it)"
            )
        return int(self.nominal_size)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor, split: str | None = None) -> "ImageDataset":
        """A new dataset with the rows in ``index`` (a LongTensor or bool mask)."""
        return ImageDataset(
            images=self.images[index],
            labels=self.labels[index],
            info=self.info,
            split=split or self.split,
            meta=dict(self.meta),
            nominal_size=self.nominal_size,
        )

    def class_counts(self) -> torch.Tensor:
        """Exact per-class counts. Private when called on the train split: never release un-noised."""
        return torch.bincount(self.labels, minlength=self.info.num_classes)
