"""Mechanism audits of DP-NTK and DP-Kernel (``docs/audit.md``) with power checks: the honest release is not
flagged, the shared ``tenth-noise`` variant (a tenth of the noise, the ledger unchanged) is."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.audit import audit_method, noiseless_difference, with_canary
from dpgen_bench.audit.broken import broken_class
from dpgen_bench.audit.canaries import canary_for
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_methods.dp_kernel import DPKernel
from dpgen_bench_methods.dp_ntk import DPNTK

INFO = DatasetInfo("audit-toy", 1, 8, 8, 2)
N = 40
BUDGET = PrivacyBudget(1.0, 1e-5, accountant="gdp")  # exact for unsubsampled Gaussian releases
TRIALS = 1000
NTK = {"ntk_width": 4, "steps": 1}  # 2 × 270 features + 2 counts
KERNEL = {"n_features": 20, "bandwidths": [4.0], "batch_size": N, "steps": 2}  # q = 1: two full-batch steps


def _data() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(N) % 2
    images = (labels.float() * 0.8 + 0.1).view(-1, 1, 1, 1) + 0.05 * torch.rand(N, 1, 8, 8, generator=g)
    return ImageDataset(images.clamp(0, 1), labels, INFO, split="train", nominal_size=N)


def _setup(cls, config):
    method = cls(config, INFO, seed=0, context=RunContext(progress=False))
    data = _data()
    return method, data, with_canary(data, *canary_for(method, data))


def _broken(cls, config):
    return broken_class(cls, "tenth-noise")(config, INFO, seed=0, context=RunContext(progress=False))


@pytest.mark.parametrize("cls, config", [(DPNTK, NTK), (DPKernel, KERNEL)], ids=["dp-ntk", "dp-kernel"])
def test_correct_release_stays_below_its_claim_and_a_tenth_of_the_noise_is_flagged(cls, config):
    method, data, neighbour = _setup(cls, config)
    correct = audit_method(method, data, neighbour, BUDGET, trials=TRIALS)
    assert correct.claimed_epsilon == pytest.approx(1.0, abs=1e-3)
    assert not correct.violation and correct.epsilon_lower <= correct.claimed_epsilon, correct
    broken = audit_method(_broken(cls, config), data, neighbour, BUDGET, trials=TRIALS)
    assert broken.claimed_epsilon == pytest.approx(1.0, abs=1e-3)  # the ledger still claims ε = 1
    assert broken.violation and broken.epsilon_lower > 2.0, broken


def test_dp_kernel_audit_release_is_every_steps_noisy_sums_and_the_canary_moves_each_by_sqrt_l():
    method, data, neighbour = _setup(DPKernel, KERNEL)
    ledger = PrivacyLedger()
    x = method.audit_release(data, BUDGET, ledger)
    (event,) = ledger.events
    assert event == PoissonSubsampledGaussianEvent(method.noise_multiplier or event.noise_multiplier, 1.0, 2)
    assert x.shape == (2 * 2 * 20,) and x.dtype == torch.float64
    diff = noiseless_difference(method, data, neighbour, BUDGET).view(2, 2, 20)  # (step, class, feature)
    assert diff[:, 1].abs().max() < 1e-12  # the canary is in class 0
    torch.testing.assert_close(diff[:, 0].norm(dim=1), torch.full((2,), method.sum_norm, dtype=torch.float64))
    exact = method.audit_release(data, PrivacyBudget(math.inf, 1e-5))
    noise = torch.stack([method.audit_release(data, BUDGET) for _ in range(100)]) - exact
    assert noise.std().item() == pytest.approx(event.noise_multiplier * method.sum_norm, rel=0.05)
