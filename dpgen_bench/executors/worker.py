"""Setting up a worker process (``--jobs``, Ray, Slurm): die with the parent, leave Ctrl-C to it, threads,
plugins."""

from __future__ import annotations

import os
import signal
import sys

import torch

from ..allocator import retain_freed_memory
from ..plugins import load_plugins


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``), so a killed
    driver never leaves workers running on (each holding GBs). Exits at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def configure_worker(threads: int | None, plugins: tuple[str, ...] | list[str] = (), parent_pid: int | None = None) -> None:
    """Process-pool initializer: die with the parent, leave Ctrl-C to the parent (it stops the run), malloc
    tuning (:func:`dpgen_bench.allocator.retain_freed_memory`), thread count and plugin imports (in-process
    registrations do not survive ``spawn``)."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_up_cell_process(threads, plugins)


def set_up_cell_process(threads: int | None, plugins: tuple[str, ...] | list[str] = ()) -> None:
    """What every process that runs cells for a driver applies (``--jobs``, Ray and Slurm workers): one-line
    warnings, malloc tuning (:func:`dpgen_bench.allocator.retain_freed_memory`), the thread count and the plugin
    imports (in-process registrations do not reach another process). Idempotent: a reused worker applies it
    once per cell."""
    from ..jobs.notices import one_line_warnings

    one_line_warnings()
    retain_freed_memory()
    if threads:
        torch.set_num_threads(int(threads))
    load_plugins(plugins)
