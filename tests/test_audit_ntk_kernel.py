"""Mechanism audits of DP-NTK and DP-Kernel (``docs/audit.md``) with power checks: the honest release is not
flagged, the shared ``tenth-noise`` variant (a tenth of the noise, the ledger unchanged) is."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from dpgen_bench.audit import audit_method, noiseless_difference, with_canary
from dpgen_bench.audit.broken import broken_class, variants_for
from dpgen_bench.audit.canaries import canary_for
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_baselines.dpdm import DPDM
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


def test_unclipped_does_not_apply_to_dp_kernel_which_clips_no_per_example_gradient():
    # dp_sgd is set for its event (Poisson-subsampled sums of bounded rows), but nothing goes through the DP-SGD
    # factory: an `unclipped` DP-Kernel would be the correct code audited twice, a power check that cannot fail.
    assert DPKernel.capabilities.dp_sgd
    assert "unclipped" not in variants_for(DPKernel) and "tenth-noise" in variants_for(DPKernel)
    with pytest.raises(ValueError, match="'unclipped' does not apply to DPKernel: DP-Kernel clips no per-example"):
        broken_class(DPKernel, "unclipped")
    assert "unclipped" in variants_for(DPDM)  # a DP-SGD method through the factory keeps it


def test_the_families_audit_config_audits_one_unsubsampled_dp_kernel_step_with_a_known_shift():
    # q < 1 makes the noiseless shift random (estimated from the calibration trials: no power at 300 trials);
    # the committed audit config must keep q = 1 so the runner's hook audit has power (tenth-noise flagged).
    from dpgen_bench.method import build_config
    from dpgen_bench.registry import get_method
    from dpgen_bench.runner.audits import build_audit_cells
    from dpgen_bench.runner.config import load_config

    config = load_config(Path(__file__).parents[1] / "configs" / "audit-families-mnist5k.yaml")
    resolved = {m.display: build_config(get_method(m.name).Config, m.config) for m in config.methods}  # no σ calibration
    cells = [c for c in build_audit_cells(config, resolved) if c.kind == "hook"]
    kernel = [c for c in cells if c.method == "dp-kernel"]
    assert {c.variant for c in kernel} == {"correct", "tenth-noise"}
    for cell in kernel:
        assert cell.examples == cell.method_config["batch_size"] and cell.method_config["steps"] == 1
        assert cell.trials >= 1000
    # GS-WGAN twice: N_D = 50 against original-accounting (thousands of trials: the leak shows in 1 release of
    # N_D), every example in one part against tenth-noise (each release one Gaussian of the charged sensitivity).
    gs = [c for c in cells if c.label == "GS-WGAN"]
    assert {c.variant for c in gs} == {"correct", "original-accounting"}
    assert all(c.examples == 1 and c.trials >= 5000 and c.method_config["num_discriminators"] == 50 for c in gs)
    one_part = [c for c in cells if c.label == "GS-WGAN (one part)"]
    assert {c.variant for c in one_part} == {"correct", "tenth-noise"}
    assert all(c.examples == 1 and c.trials >= 300 and c.method_config["num_discriminators"] == 1 for c in one_part)
