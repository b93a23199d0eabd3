"""The generic mechanism audit (``dpgen_bench.audit.generic``) of any method, no hook needed: its power (a toy
that adds a tenth of its recorded noise is flagged, its honest twin is not, over several repeats), its canary
rule, its release, its budget cap, and where its Gaussian-trade-off bound holds."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.audit.generic import (MIN_TRIALS, OUTLIER_RULE, audit_any_method, audit_config,
                                       gaussian_tradeoff_holds, generic_canary, release_vector)
from dpgen_bench.audit.toys import NoisyPixelMean, TenthNoisePixelMean
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import GaussianEvent, PoissonSubsampledGaussianEvent

INFO = DatasetInfo("audit-toy", 1, 8, 8, 2)
BUDGET = PrivacyBudget(1.0, 1e-5, accountant="gdp")
TRIALS = 600  # per dataset; a toy fit takes ~0.1 ms
REPEATS = 4


def _data(n: int = 40) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.rand(n, *INFO.shape, generator=g) * 0.5, torch.arange(n) % 2, INFO, split="train",
                        nominal_size=n)


def test_a_toy_that_adds_a_tenth_of_its_recorded_noise_is_flagged_in_every_repeat():
    for _ in range(REPEATS):
        audit = audit_any_method(TenthNoisePixelMean, _data(), BUDGET, trials=TRIALS)
        assert audit.claimed_epsilon == pytest.approx(1.0, abs=1e-3)  # the ledger still claims ε = 1
        assert audit.flagged and audit.result.epsilon_lower > 1.5, audit.result.bound
        assert audit.flagged_gdp  # one unsubsampled Gaussian event: the trade-off bound holds and flags too


def test_the_honest_toy_is_not_flagged_in_any_repeat():
    for _ in range(REPEATS):
        audit = audit_any_method(NoisyPixelMean, _data(), BUDGET, trials=TRIALS)
        assert audit.claimed_epsilon == pytest.approx(1.0, abs=1e-3)
        assert not audit.flagged and not audit.flagged_gdp, audit.result.bound
        assert audit.result.separation < 1.0  # μ = 1/σ ≈ 0.27 at most (estimated direction: less)


def test_without_an_audit_canary_hook_the_canary_is_the_all_ones_outlier_in_class_0():
    image, label, rule = generic_canary(NoisyPixelMean(None, INFO), _data())
    assert rule == OUTLIER_RULE and label == 0 and torch.equal(image, torch.ones(*INFO.shape))


def test_the_release_is_the_flattened_checkpoint_and_samples_only_without_one():
    method = NoisyPixelMean(None, INFO)
    method.fit(_data(), BUDGET, __import__("dpgen_bench.privacy.ledger", fromlist=["x"]).PrivacyLedger())
    x, kind = release_vector(method)
    assert kind == "checkpoint" and x.shape == (64,) and x.dtype == torch.float64
    method.checkpoint_state = lambda: {"seed": 3}  # no tensor left behind: its samples are what it releases
    x, kind = release_vector(method)
    assert kind == "samples" and x.numel() == 64 * 64


def test_the_budget_cap_cuts_the_trials_before_they_run_and_says_so(monkeypatch):
    import time

    class Slow(NoisyPixelMean):
        def fit(self, train, budget, ledger):
            time.sleep(0.01)
            super().fit(train, budget, ledger)

    audit = audit_any_method(Slow, _data(), BUDGET, trials=200, max_seconds=1.0)
    assert audit.capped and MIN_TRIALS <= audit.trials < 200 and audit.trials_requested == 200
    assert audit.result is not None and audit.result.trials == audit.trials
    too_tight = audit_any_method(Slow, _data(), BUDGET, trials=200, max_seconds=0.05)
    assert too_tight.result is None and too_tight.capped and "the cap max_seconds=0.05 allows" in too_tight.reason


def test_the_gaussian_tradeoff_bound_holds_only_without_subsampling():
    assert gaussian_tradeoff_holds([GaussianEvent(2.0), PoissonSubsampledGaussianEvent(1.0, 1.0, 3)])
    assert not gaussian_tradeoff_holds([GaussianEvent(2.0), PoissonSubsampledGaussianEvent(1.0, 0.1, 3)])
    assert not gaussian_tradeoff_holds([])


def test_the_audit_config_is_audit_config_else_conformance_config():
    class Declared(NoisyPixelMean):
        conformance_config = {"a": 1}
        audit_config = {"b": 2}

    class Conformance(NoisyPixelMean):
        conformance_config = {"a": 1}

    assert audit_config(Declared) == {"b": 2} and audit_config(Conformance) == {"a": 1}


def test_a_non_private_budget_is_refused():
    with pytest.raises(ValueError, match="nothing to audit"):
        audit_any_method(NoisyPixelMean, _data(), PrivacyBudget(math.inf, 1e-5), trials=50)
