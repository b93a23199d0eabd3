"""Keep freed CPU tensor memory inside the process, so training loops stop page-faulting it back in.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves multi-MiB requests with fresh
``mmap`` pages and trims the top of its heap back to the OS once enough of it is free, so a training step
that allocates and frees the same multi-MiB temporaries every iteration touches brand-new pages each time.
DP-SGD is hit hardest: per-sample gradients are batch-size times larger than the weights. Measured on a
2-core VM (28×28 ``dp-cgan`` discriminator, batch 64): glibc's defaults cost the private discriminator step
8,000–9,000 minor page faults and about 20 ms of system time per step; tuned, under 60 faults, and the step
fell from 2.05–2.10× to 1.28–1.71× the plain step (``tests/benchmarks/test_bench_dp_gan.py`` medians).

:func:`retain_freed_memory` sets glibc's ``M_MMAP_THRESHOLD`` to its 64-bit maximum (32 MiB) and
``M_TRIM_THRESHOLD`` to 1 GiB, the same as running with
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824``. The cost: up
to 1 GiB of freed memory stays with the process instead of going back to the OS, and buffers up to 32 MiB
come from the heap. ``dpgen-bench run`` (:func:`dpgen_bench.runner.run_benchmark`) calls it in every process
that trains; call it yourself at the start of a script that trains through the Python API. It changes
nothing where the C library is not glibc (macOS, musl) or when ``DPGEN_BENCH_MALLOC=default`` is set.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest accepted value on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 2**30
_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
OPT_OUT_ENV = "DPGEN_BENCH_MALLOC"

_retained = False


def retain_freed_memory() -> bool:
    """Tune glibc malloc as the module docstring says; True once applied in this process, else False.

    Idempotent. Returns False without changing anything when ``DPGEN_BENCH_MALLOC=default``, on a C
    library other than glibc, or if glibc refuses a value (then nothing is changed: setting only the trim
    threshold would switch off glibc's adaptive mmap threshold and make things worse).
    """
    global _retained
    if _retained:
        return True
    if os.environ.get(OPT_OUT_ENV, "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses
        if not hasattr(libc, "gnu_get_libc_version"):
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        return False
    if mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        return False
    _retained = True
    return True


def freed_memory_retained() -> bool:
    """Whether :func:`retain_freed_memory` has been applied in this process (recorded in run provenance)."""
    return _retained
