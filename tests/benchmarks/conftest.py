"""Benchmarks measure the machine as ``dpgen-bench run`` uses it: all cores (the test suite's one-thread
setting is undone) and glibc malloc tuned by :func:`dpgen_bench.allocator.retain_freed_memory`, as the runner
does in every training process. ``DPGEN_BENCH_MALLOC=default`` measures glibc's default behaviour instead.
"""

from __future__ import annotations

import os

import pytest
import torch

from dpgen_bench.allocator import freed_memory_retained, retain_freed_memory


@pytest.fixture(autouse=True, scope="session")
def _all_torch_threads(_one_torch_thread):
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _runner_malloc_settings() -> None:
    retain_freed_memory()


def pytest_benchmark_update_machine_info(config, machine_info) -> None:  # noqa: ARG001
    machine_info["malloc_retains_freed_memory"] = freed_memory_retained()
