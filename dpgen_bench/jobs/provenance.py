"""Provenance of a result: the code version, library versions and the machine it ran on."""

from __future__ import annotations

import functools
import importlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..allocator import freed_memory_retained


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the source tree this package runs from, else the package version."""
    from .. import __version__ as pkg_version

    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        described = out.stdout.strip()
        if described:
            return described
    except (OSError, subprocess.SubprocessError):
        pass
    return f"dpgen-bench {pkg_version}"


def _version(module: str) -> str:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # not installed or no __version__
        return "n/a"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    from .. import __version__ as pkg_version

    return {
        "python_version": platform.python_version(),
        "torch_version": _version("torch"),
        "opacus_version": _version("opacus"),
        "dpgen_bench_version": str(pkg_version),
        "code_version": code_version(),
    }


def environment() -> dict[str, Any]:
    """Versions and machine description saved as ``environment.json`` next to the results."""
    import sklearn

    env = dict(versions())
    env.update(
        {
            "numpy_version": np.__version__,
            "sklearn_version": sklearn.__version__,
            "torchvision_version": _version("torchvision"),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or "n/a",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "malloc_retains_freed_memory": freed_memory_retained(),
            "cuda_available": torch.cuda.is_available(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        }
    )
    return env
