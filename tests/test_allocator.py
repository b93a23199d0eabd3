"""glibc malloc tuning: applied where glibc is, refused cleanly where opted out, recorded in provenance."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from dpgen_bench import allocator

GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


def _in_subprocess(code: str, *args: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, **env}, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="needs glibc")
def test_retain_freed_memory_applies_on_glibc_and_is_idempotent() -> None:
    code = ("from dpgen_bench.allocator import retain_freed_memory as r, freed_memory_retained as f;"
            "print(f(), r(), r(), f())")
    assert _in_subprocess(code, DPGEN_BENCH_MALLOC="") == "False True True True"


def test_opt_out_leaves_malloc_untouched() -> None:
    code = "from dpgen_bench.allocator import retain_freed_memory as r, freed_memory_retained as f; print(r(), f())"
    assert _in_subprocess(code, DPGEN_BENCH_MALLOC="default") == "False False"


_DP_STEPS = """
import resource, sys, warnings, torch
import torch.nn.functional as F
from opacus.data_loader import DPDataLoader
from torch.utils.data import TensorDataset
from dpgen_bench.allocator import retain_freed_memory
from dpgen_bench_baselines.dcgan import Discriminator
from dpgen_bench_baselines.dp_gan import make_private_discriminator
warnings.simplefilter("ignore")
if sys.argv[1] == "tuned":
    assert retain_freed_memory()
torch.manual_seed(0)
x, f, y = torch.rand(64, 1, 28, 28), torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
D = Discriminator(1, 28, 10, width=16)
D, opt, _ = make_private_discriminator(
    D, torch.optim.Adam(D.parameters()), DPDataLoader(TensorDataset(x, y), sample_rate=0.1),
    noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=64)
def step():
    opt.zero_grad(set_to_none=True)
    ((F.softplus(-D(x, y)) + F.softplus(D(f, y))).sum() / 64).backward()
    opt.step()
for _ in range(3): step()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8): step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 8)
"""


@pytest.mark.slow  # two fresh interpreters that import torch and Opacus
@pytest.mark.skipif(not GLIBC, reason="needs glibc")
def test_retained_memory_stops_the_page_faults_of_private_discriminator_steps() -> None:
    """The pattern that slowed DP-SGD: multi-MiB per-sample gradients allocated and freed every step."""
    default, tuned = (float(_in_subprocess(_DP_STEPS, mode, DPGEN_BENCH_MALLOC="")) for mode in ("default", "tuned"))
    assert tuned < 0.1 * default, f"minor page faults per step: {default} with glibc defaults, {tuned} tuned"


def test_runner_provenance_records_the_malloc_setting() -> None:
    from dpgen_bench.runner.provenance import environment

    assert environment()["malloc_retains_freed_memory"] is allocator.freed_memory_retained()
