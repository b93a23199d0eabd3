"""DP-Kernel (random-feature GP): features, the per-step release's sensitivity under add/remove, the plan
(Poisson-subsampled steps at q = batch_size / n̂), end-to-end fit."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.method import ConfigError
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.registry import get_method
from dpgen_bench_methods.dp_kernel import DPKernel

INFO = DatasetInfo("t", 1, 8, 8, 3)
FAST = {"n_features": 40, "bandwidths": [2.0, 8.0], "steps": 6, "batch_size": 10}


def _data(n: int = 30) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 3, INFO, split="train", nominal_size=n)


def test_entry_point_resolves_to_dpkernel():
    assert get_method("dp-kernel") is DPKernel


def test_features_have_norm_sqrt_l_and_approximate_the_sum_of_gaussian_kernels():
    method = DPKernel({**FAST, "n_features": 20000, "bandwidths": [1.0, 3.0]}, INFO, seed=0)
    x = _data(6).images
    phi = method.features(x)
    torch.testing.assert_close(phi.norm(dim=1), torch.full((6,), math.sqrt(2.0)))
    sq = torch.cdist(x.flatten(1) * 2 - 1, x.flatten(1) * 2 - 1) ** 2  # pixels scaled to [-1, 1]
    kernel = torch.exp(-sq / 2) + torch.exp(-sq / 18)
    torch.testing.assert_close(phi @ phi.T, kernel, atol=0.04, rtol=0)


def test_one_added_example_moves_one_steps_sums_by_sqrt_l_in_its_class_only():
    """The sensitivity the noise is calibrated for: √L (L bandwidths), one row, add/remove-one."""
    method, data = DPKernel(FAST, INFO, seed=1), _data()
    sums = method.release_step(data.images, data.labels, None, None)
    more = method.release_step(torch.cat([data.images, torch.ones(1, 1, 8, 8)]),
                               torch.cat([data.labels, torch.tensor([1])]), None, None)
    diff = more - sums
    assert diff[[0, 2]].abs().max() < 1e-12
    assert diff[1].norm().item() == pytest.approx(math.sqrt(2.0), rel=1e-6) == method.sum_norm


def test_release_noise_has_std_sigma_times_sqrt_l():
    method, data = DPKernel(FAST, INFO, seed=1), _data()
    exact = method.release_step(data.images, data.labels, None, None)
    gen = torch.Generator().manual_seed(5)
    noisy = torch.stack([method.release_step(data.images, data.labels, 0.7, gen) for _ in range(30)])
    assert (noisy - exact).std().item() == pytest.approx(0.7 * math.sqrt(2.0), rel=0.05)  # 3,600 draws


def test_plan_is_poisson_subsampled_steps_at_batch_size_over_declared_size():
    cfg = DPKernel.Config(**FAST)
    (event,) = DPKernel.privacy_plan(cfg, 200)(1.3)
    assert event == PoissonSubsampledGaussianEvent(1.3, 10 / 200, 6)


def test_private_fit_records_one_subsampled_event_at_the_target():
    method, ledger, budget = DPKernel(FAST, INFO, seed=2), PrivacyLedger(), PrivacyBudget(3.0, 1e-5)
    method.fit(_data(), budget, ledger)
    (event,) = ledger.events
    assert isinstance(event, PoissonSubsampledGaussianEvent)
    assert event.sample_rate == pytest.approx(10 / 30) and event.steps == 6
    assert event.noise_multiplier == method.noise_multiplier
    assert ledger.epsilon(budget) == pytest.approx(3.0, rel=1e-3)


def test_accountants_without_subsampling_are_refused_before_anything_is_recorded():
    ledger = PrivacyLedger()
    with pytest.raises(ValueError, match="subsampl"):
        DPKernel(FAST, INFO).fit(_data(), PrivacyBudget(1.0, 1e-5, accountant="gdp"), ledger)
    assert len(ledger) == 0


def test_mmd_to_the_exact_embedding_decreases_non_privately():
    method = DPKernel({**FAST, "steps": 150, "batch_size": 30, "lr": 5e-3}, INFO, seed=0)
    method.fit(_data(), PrivacyBudget(math.inf, 1e-5), PrivacyLedger())
    losses = [loss for _, loss in method.history["loss"]]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("bad", [{"n_features": 31}, {"bandwidths": [1.0, -2.0]}, {"bandwidths": []}])
def test_bad_config_is_refused_naming_the_key(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        DPKernel(bad, INFO)
