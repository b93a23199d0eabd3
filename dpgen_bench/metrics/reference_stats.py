"""On-disk cache of Gaussian feature statistics of a real split.

Key: dataset name, a SHA-256 of the split's content (image and label bytes) and the extractor (name plus
options). A cached file is only ever reused for byte-identical data in the same feature space. Writes are
atomic (temporary file + ``os.replace``) so an interrupted run never leaves a truncated cache entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.types import ImageDataset
from .frechet import GaussianStats

_FORMAT_VERSION = 1


def content_hash(dataset: ImageDataset) -> str:
    """SHA-256 (hex) of the images (as float32, NCHW, C-contiguous) and labels (int64) of ``dataset``."""
    h = hashlib.sha256()
    images = dataset.images.detach().to("cpu", torch.float32).contiguous()
    h.update(repr(tuple(images.shape)).encode())
    h.update(images.numpy().tobytes())
    h.update(dataset.labels.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]


def cache_path(cache_dir: str | Path, dataset: ImageDataset, extractor_key: str) -> Path:
    """Where the statistics of ``dataset`` in feature space ``extractor_key`` live under ``cache_dir``."""
    digest = content_hash(dataset)
    key_digest = hashlib.sha256(extractor_key.encode()).hexdigest()[:12]
    name = f"{_safe(dataset.info.name)}__{_safe(dataset.split)}__{digest[:16]}__{_safe(extractor_key)}-{key_digest}.npz"
    return Path(cache_dir) / name


def save_stats(path: str | Path, stats: GaussianStats, meta: dict) -> None:
    """Atomically write ``stats`` (+ JSON ``meta``) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                mu=stats.mu,
                sigma=stats.sigma,
                n=np.int64(stats.n),
                meta=np.array(json.dumps({"format": _FORMAT_VERSION, **meta}, sort_keys=True)),
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_stats(path: str | Path) -> tuple[GaussianStats, dict]:
    with np.load(Path(path), allow_pickle=False) as z:
        stats = GaussianStats(mu=z["mu"].astype(np.float64), sigma=z["sigma"].astype(np.float64), n=int(z["n"]))
        meta = json.loads(str(z["meta"]))
    return stats, meta


def cached_reference_stats(
    dataset: ImageDataset,
    extractor_key: str,
    compute: Callable[[], GaussianStats],
    cache_dir: str | Path | None,
) -> tuple[GaussianStats, bool]:
    """Statistics of ``dataset`` in ``extractor_key`` space: from ``cache_dir`` when present, else ``compute()``
    (and stored there). ``cache_dir=None`` disables the cache. Returns ``(stats, loaded_from_cache)``."""
    if cache_dir is None:
        return compute(), False
    path = cache_path(cache_dir, dataset, extractor_key)
    if path.is_file():
        try:
            stats, meta = load_stats(path)
            if meta.get("format") == _FORMAT_VERSION and meta.get("extractor") == extractor_key:
                return stats, True
        except (OSError, ValueError, KeyError):
            pass  # unreadable entry (e.g. written by an older version): recompute and overwrite it
    stats = compute()
    save_stats(
        path,
        stats,
        {
            "dataset": dataset.info.name,
            "split": dataset.split,
            "content_sha256": content_hash(dataset),
            "extractor": extractor_key,
        },
    )
    return stats, False
