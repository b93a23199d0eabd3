"""Writing files so that a reader (or a crash) never sees half of one.

Every file the library writes for later reading goes through :func:`write_atomic` (text or bytes in hand)
or :func:`atomic_path` (a writer that wants a file name: ``np.savez``, ``torch.save``, torchvision's
``save_image``). Both write a temporary file in the same directory, flush it to disk and move it onto the
target with ``os.replace`` (atomic on POSIX), so a reader sees the old file or the complete new one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary_sibling(path: Path, keep_suffix: bool) -> Path:
    # A leading dot: listings of result folders skip it. pid + random part: concurrent writers never collide.
    suffix = path.suffix if keep_suffix else ""
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, *, keep_suffix: bool = True) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; moved onto ``path`` when the block exits
    cleanly, removed if it raises (``path`` is then untouched).

    The temporary name keeps ``path``'s suffix by default, because writers pick the format from it
    (``save_image``) or append their own to any other name (``np.savez`` adds ``.npz``). Parent folders are
    created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path, keep_suffix)
    try:
        yield tmp
        _fsync(tmp)  # the data reaches the disk before the name does
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text, or bytes written as is) to ``path`` so that readers see either the old or the
    complete new file. Returns ``path``."""
    path = Path(path)
    with atomic_path(path, keep_suffix=False) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
    return path
