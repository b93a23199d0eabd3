"""Evaluate samples made elsewhere (``dpgen-bench evaluate``): the same metrics and the same result rows as a
benchmark cell, for researchers whose method lives in their own code.

Input: an ``.npz`` with ``images`` (N×C×H×W or N×H×W×C, uint8 in [0, 255] or float in [0, 1]) and optional
int ``labels``; or a folder of image files, labelled by the name of their sub-folder when every sub-folder
is a class index (``0/``, ``1/``, …), else unlabelled. The ε of such samples is the author's claim: it is
recorded as the target, and the spend is left empty (nothing here can verify it).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..privacy.budget import NEIGHBOURING
from .base import Job, record
from .evaluation import EvaluationSpec
from .provenance import environment, versions
from .samples import save_grid, save_samples
from .schema import RESULTS
from .store import ResultsStore, artefact_digests, write_atomic
from .training import declare_real_counts, evaluate_samples

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class SamplesError(ValueError):
    """Samples that cannot be read or do not fit the dataset (the message says what and how)."""


def _to_unit_nchw(array: np.ndarray, shape: tuple[int, int, int], source: str) -> torch.Tensor:
    c, h, w = shape
    if array.ndim == 3 and c == 1:
        array = array[:, None]
    if array.ndim != 4:
        raise SamplesError(f"{source}: images must be 4-d (N, C, H, W) or (N, H, W, C), got shape {array.shape}")
    if array.shape[1:] != (c, h, w) and array.shape[1:] == (h, w, c):
        array = array.transpose(0, 3, 1, 2)
    if array.shape[1:] != (c, h, w):
        raise SamplesError(f"{source}: images have shape {array.shape[1:]} per sample, the dataset's are {(c, h, w)}")
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 255.0)
    images = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise SamplesError(f"{source}: float images must be finite and in [0, 1] (uint8 is read as [0, 255])")
    return images


def load_samples(path: str | Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(images in [0, 1] NCHW, int64 labels, labelled) from an ``.npz`` file or a folder of images."""
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "images" not in data:
                    raise SamplesError(f"{path}: no 'images' array (found {sorted(data.files)})")
                images = _to_unit_nchw(data["images"], shape, str(path))
                labels = data["labels"] if "labels" in data else None
        except (OSError, ValueError) as exc:
            if isinstance(exc, SamplesError):
                raise
            raise SamplesError(f"{path}: not a readable .npz ({exc})") from None
        if labels is None:
            return images, torch.full((len(images),), -1, dtype=torch.long), False
        labels = torch.as_tensor(np.asarray(labels)).long().flatten()
        if labels.shape != (len(images),):
            raise SamplesError(f"{path}: {len(labels)} labels for {len(images)} images")
        return images, labels, bool((labels >= 0).all())
    if path.is_dir():
        return _load_folder(path, shape)
    raise SamplesError(f"{path}: expected an .npz file or a folder of images")


def _load_folder(folder: Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, bool]:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SamplesError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    classes = {p.parent.name for p in files}
    labelled = all(p.parent != folder for p in files) and all(c.isdigit() for c in classes)
    mode = "L" if shape[0] == 1 else "RGB"
    arrays = []
    for p in files:
        try:
            with Image.open(p) as im:
                arrays.append(np.asarray(im.convert(mode), dtype=np.uint8))
        except (OSError, UnidentifiedImageError) as exc:
            raise SamplesError(f"{p}: not a readable image ({exc})") from None
    images = _to_unit_nchw(np.stack(arrays), shape, str(folder))
    labels = torch.tensor([int(p.parent.name) if labelled else -1 for p in files], dtype=torch.long)
    return images, labels, labelled


def _digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256((images * 255).round().to(torch.uint8).numpy().tobytes())
    h.update(labels.numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class ExternalEvaluation(Job):
    """An evaluation of outside samples: a job whose rows go to ``results.csv`` beside the training cells'."""

    table = RESULTS
    samples: str
    """The ``.npz`` file or folder of images."""
    digest: str
    """SHA-256 of the samples as read (uint8 images and labels): part of the key, so changed files are new rows."""
    dataset: str
    label: str
    metrics: tuple[str, ...]
    n_samples: int
    claimed_epsilon: float = float("inf")
    split_seed: int = 0
    test_fraction: float = 0.2
    data_dir: str | None = None
    seed: int = 0

    @property
    def evaluation(self) -> EvaluationSpec:
        return EvaluationSpec(metrics=list(self.metrics), n_samples=max(self.n_samples, 1))

    def key_data(self) -> dict[str, Any]:
        return {"external": self.digest, "dataset": self.dataset, "split_seed": self.split_seed,
                "test_fraction": self.test_fraction, "evaluation": self.evaluation.key_data(),
                "label": self.label, "claimed_epsilon": self.claimed_epsilon}

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.label}/external"

    @property
    def private(self) -> bool:
        """Whether the samples claim a finite ε."""
        return self.claimed_epsilon != float("inf")

    def row_facts(self) -> dict[str, Any]:
        return {"cell_key": self.key, "dataset": self.dataset, "method": self.label, "method_name": "external",
                "method_config": json.dumps({"samples": self.samples}), "target_epsilon": self.claimed_epsilon,
                "spent_epsilon": None, "accountant": None, "neighbouring": NEIGHBOURING, "seed": self.seed,
                "split_seed": self.split_seed}

    def run(self, root: str | Path, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
        """Evaluate the samples (raises :class:`SamplesError` for samples that do not fit: nothing to store)."""
        from ..data import load_splits

        started = time.perf_counter()
        splits = load_splits(self.dataset, seed=self.split_seed, test_fraction=self.test_fraction,
                             data_dir=self.data_dir)
        images, labels, labelled = load_samples(self.samples, splits.info.shape)
        if labelled and (int(labels.max()) >= splits.info.num_classes):
            raise SamplesError(f"{self.samples}: labels go up to {int(labels.max())}, {self.dataset!r} has "
                               f"{splits.info.num_classes} classes")
        cell_dir = ResultsStore(root).cell_dir(self.key)
        save_samples(cell_dir / "samples.npz", images, labels)
        save_grid(cell_dir / "samples.png", images, labels, splits.info.num_classes if labelled else 1)
        rows = evaluate_samples(images, labels, labelled, splits.test, self.evaluation, root=root, seed=self.seed,
                                split_seed=self.split_seed, device=device)
        if self.private:  # samples claimed private: the test split's actual length follows the private n
            rows = declare_real_counts(rows, splits, self.evaluation)
        base = {**self.row_facts(), "status": "ok", "error": None, "n_test": splits.test.public_size(), "device": device,
                "torch_threads": torch.get_num_threads(), "wall_time_s": time.perf_counter() - started,
                "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **versions()}
        out = record(self, "ok", None, [{**base, **r} for r in rows],
                     artefact_digests(cell_dir, ("samples.npz", "samples.png")))
        out["cell"] = {"external": self.samples, "evaluation": self.evaluation.model_dump(mode="json")}
        return out


def evaluate_external(
    samples: str | Path,
    *,
    dataset: str,
    label: str,
    metrics: list[str],
    output_dir: str | Path,
    claimed_epsilon: float = float("inf"),
    split_seed: int = 0,
    test_fraction: float = 0.2,
    data_dir: str | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate ``samples`` with ``metrics`` (every sample counts) against the test split of ``dataset`` and
    store them as one finished cell of a results directory (record, ``results.csv``, samples, grid)."""
    from ..data import load_splits

    splits = load_splits(dataset, seed=split_seed, test_fraction=test_fraction, data_dir=data_dir)
    images, labels, _ = load_samples(samples, splits.info.shape)
    job = ExternalEvaluation(samples=str(samples), digest=_digest(images, labels), dataset=dataset, label=label,
                             metrics=tuple(metrics), n_samples=len(images), claimed_epsilon=claimed_epsilon,
                             split_seed=split_seed, test_fraction=test_fraction, data_dir=data_dir, seed=seed)
    store = ResultsStore(output_dir)
    with store.lock():
        result = job.run(output_dir, device=device)
        store.write_record(result)
        write_atomic(Path(output_dir) / "environment.json", json.dumps(environment(), indent=1, sort_keys=True))
        store.rebuild_csv()
    return result
