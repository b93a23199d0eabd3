"""Benchmarks measure the machine as a user runs it: all cores (the test suite's one-thread setting is undone)."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _all_torch_threads(_one_torch_thread):
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)
