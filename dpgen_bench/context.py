"""The run context: what a run hands a method besides its config, the dataset info and the private data.

Everything in it is public and operational: it may change where and how fast a method runs and what it
prints, never what it computes from the private data. The runner builds one per cell; code that makes a
method by hand may pass one or take the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data.types import ImageDataset


@dataclass(frozen=True)
class RunContext:
    """``device``: a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``). ``progress``: show progress
    bars (the runner turns them off in ``--jobs`` workers and logs). ``cache_dir``: a folder the method may
    use for caches of *public* computations (None: no cache). ``public_data``: a public dataset the
    benchmark provides for methods that pre-train on public data (None: there is none)."""

    device: str = "cpu"
    progress: bool = True
    cache_dir: Path | None = None
    public_data: ImageDataset | None = None

    def __post_init__(self) -> None:
        import torch

        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"RunContext.device: {self.device!r} is not a torch device") from None
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
