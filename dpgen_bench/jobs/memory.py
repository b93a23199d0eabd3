"""Peak memory of one cell: resident memory of the process (Linux VmHWM) and, on a GPU, torch's allocator peak."""

from __future__ import annotations

import resource
import sys
from contextlib import contextmanager
from typing import Iterator

import torch


def reset_peak_memory() -> bool:
    """Reset the process's peak-RSS mark (Linux ``clear_refs``), so each cell reports its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB since the last reset (VmHWM), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


class PeakMemory:
    """Filled in by :func:`measure_peak_memory`: ``cpu_mb`` (peak RSS, MiB) and ``gpu_mb`` (None off GPU)."""

    cpu_mb: float | None = None
    gpu_mb: float | None = None


@contextmanager
def measure_peak_memory(device: str | torch.device) -> Iterator[PeakMemory]:
    """Measure the peak memory of the enclosed block (resets the marks on entry; read them after exit)."""
    reset_peak_memory()
    dev = torch.device(device)
    on_gpu = dev.type == "cuda" and torch.cuda.is_available()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(dev)
    peak = PeakMemory()
    try:
        yield peak
    finally:
        peak.cpu_mb = peak_memory_mb()
        peak.gpu_mb = torch.cuda.max_memory_allocated(dev) / 2**20 if on_gpu else None
