"""One private DPDM training step vs the same step without Opacus (same U-Net, batch, K, machine, run).

Run: ``pytest tests/benchmarks/test_dpdm_step.py --benchmark-only`` (skipped in the normal test run). Compare the
medians of group ``dpdm-step-28x28``: ``non-private`` is the plain step (forward and backward of the mean EDM
loss over the B·K rows, Adam step); ``hooks`` and ``functorch`` are the private step (per-row gradients, mean
over each example's K rows, clip, noise, Adam step) in each Opacus ``grad_sample_mode`` that runs on diffusers'
U-Net (``ew``, expanded weights, fails on it: "Expanded Weights encountered but cannot handle function
is_floating_point"). Model: the CPU default config (28×28 grey, conditional); batch B = 32 examples, K = 2.
Each benchmark checks that its step changed the weights (a no-op cannot win).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dpgen_bench import DatasetInfo
from dpgen_bench.context import RunContext
from dpgen_bench_baselines.dpdm import DPDM, make_private_denoiser

BATCH = 32
K = 2
INFO = DatasetInfo("bench", 1, 28, 28, 10)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(BATCH, 1, 28, 28, generator=g), torch.randint(0, 10, (BATCH,), generator=g), g


def _make(mode: str):
    method = DPDM({"noise_multiplicity": K, "batch_size": BATCH, "grad_sample_mode": "hooks" if mode == "non-private"
                   else mode}, INFO, seed=0, context=RunContext(progress=False))
    net = method.net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    if mode != "non-private":
        x, y, _ = _batch()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net, opt, _ = make_private_denoiser(net, opt, DataLoader(TensorDataset(x, y), batch_size=BATCH),
                                                noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=BATCH,
                                                grad_sample_mode=mode)
    return method, net, opt


def _step(method: DPDM, net, opt, x, y, draws, private: bool) -> None:
    opt.zero_grad(set_to_none=True)
    (method._backward if private else method._plain_backward)(net, x, y, draws, 0)
    opt.step()


@pytest.mark.parametrize("mode", ["non-private", "hooks", "functorch"])
@pytest.mark.benchmark(group="dpdm-step-28x28", min_rounds=3, warmup=True)
def test_bench_dpdm_step(benchmark, mode: str) -> None:
    method, net, opt = _make(mode)
    x, y, g = _batch()
    draws = method.draws(BATCH, g)
    before = [p.detach().clone() for p in net.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        benchmark.pedantic(_step, args=(method, net, opt, x, y, draws, mode != "non-private"), rounds=5,
                           iterations=1, warmup_rounds=1)
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters())), "the step did not update the net"
