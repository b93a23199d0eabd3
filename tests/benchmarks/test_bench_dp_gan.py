"""Private discriminator step vs the same step without Opacus (same model, batch, machine, run).

Run: ``pytest tests/benchmarks/test_bench_dp_gan.py --benchmark-only`` (skipped in the normal test run).
Target: the private step (default ``grad_sample_mode="hooks"``) at most 2.0× the non-private step for the
28×28 dp-cgan discriminator at the default width on 2 CPU cores. No timed asserts: compare the medians in
group ``d-step-28x28`` of the printed table; the ``functorch`` and ``ew`` rows answer whether another per-sample
gradient mode helps, and ``hooks-full-backward`` shows hooks mode without skipping the discarded batch weight
gradient (see ``dpgen_bench_baselines.per_sample_conv``). Each benchmark checks that its step changed D's
weights (a no-op cannot win). glibc malloc is tuned as in ``dpgen-bench run`` (``conftest.py``); run with
``DPGEN_BENCH_MALLOC=default`` to see glibc's defaults.

The step timed is exactly the training step: D on a real batch and on an equally sized fake batch,
one backward of the per-pair loss, one ``optimizer.step()`` (clip + noise for the private variant).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from opacus.data_loader import DPDataLoader
from torch.utils.data import TensorDataset

from dpgen_bench_baselines.dcgan import Discriminator
from dpgen_bench_baselines.dp_gan import DPGANConfig, make_private_discriminator
from dpgen_bench_baselines.per_sample_conv import PerSampleConv2d

BATCH = 64
WIDTH = DPGANConfig().d_width


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    real = torch.rand(BATCH, 1, 28, 28, generator=g)
    fake = torch.rand(BATCH, 1, 28, 28, generator=g)
    labels = torch.randint(0, 10, (BATCH,), generator=g)
    return real, fake, labels


def _step(D: torch.nn.Module, opt: torch.optim.Optimizer, real, fake, labels) -> None:
    opt.zero_grad(set_to_none=True)
    loss = (F.softplus(-D(real, labels)) + F.softplus(D(fake, labels))).sum() / real.shape[0]
    loss.backward()
    opt.step()


def _make(mode: str):
    """D and its optimizer as the trainer builds them; ``mode`` is "non-private" or an Opacus grad_sample_mode.

    "hooks-full-backward" is hooks mode with the batch weight gradient left on (PerSampleConv2d.batch_grad),
    i.e. Opacus's stock behaviour, to show what skipping it saves.
    """
    torch.manual_seed(0)
    D = Discriminator(1, 28, 10, width=WIDTH)
    opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    if mode != "non-private":
        real, _, labels = _batch()
        loader = DPDataLoader(TensorDataset(real, labels), sample_rate=BATCH / 4000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            D, opt, _ = make_private_discriminator(
                D, opt, loader, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=BATCH,
                grad_sample_mode=mode.removesuffix("-full-backward"),
            )
        if mode.endswith("-full-backward"):
            for m in D.modules():
                if isinstance(m, PerSampleConv2d):
                    m.batch_grad = True
    return D, opt


@pytest.mark.parametrize("mode", ["non-private", "hooks", "hooks-full-backward", "functorch", "ew"])
@pytest.mark.benchmark(group="d-step-28x28", min_rounds=20, warmup=True)
def test_bench_discriminator_step(benchmark, mode: str) -> None:
    D, opt = _make(mode)
    real, fake, labels = _batch()
    before = [p.detach().clone() for p in D.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # full-backward-hook notice on inputs without grad
        benchmark.pedantic(_step, args=(D, opt, real, fake, labels), rounds=30, iterations=1, warmup_rounds=3)
    assert any(not torch.equal(b, p) for b, p in zip(before, D.parameters())), "the step did not update D"
