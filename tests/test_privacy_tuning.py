"""The accounting of private hyper-parameter search (Papernot & Steinke 2022, Theorem 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpgen_bench.privacy.events import GaussianEvent, PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.plans import dpsgd_plan
from dpgen_bench.privacy.tuning import (ORDERS, calibrate_candidate_sigma, events_rdp, rdp_epsilon, sample_tnb,
                                        tnb_mean, tnb_pmf, tuning_epsilon, tuning_rdp)


@pytest.mark.parametrize("eta, gamma", [(1.0, 0.25), (0.0, 0.1), (0.5, 0.05), (2.0, 0.3)])
def test_the_truncated_negative_binomial_sums_to_one_with_the_stated_mean(eta, gamma):
    ks = np.arange(1, 5000)
    p = np.array([tnb_pmf(int(k), eta, gamma) for k in ks])
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert (ks * p).sum() == pytest.approx(tnb_mean(eta, gamma), rel=1e-6)


def test_geometric_case_has_mean_one_over_gamma_and_samples_follow_it():
    assert tnb_mean(1.0, 0.2) == pytest.approx(5.0)
    g = torch.Generator().manual_seed(0)
    draws = [sample_tnb(1.0, 0.2, g) for _ in range(4000)]
    assert min(draws) >= 1 and np.mean(draws) == pytest.approx(5.0, rel=0.06)


def test_gaussian_rdp_is_lambda_over_two_sigma_squared():
    np.testing.assert_allclose(events_rdp([GaussianEvent(2.0)]), np.asarray(ORDERS) / 8.0)


def test_the_search_costs_more_than_one_candidate_and_more_with_more_candidates():
    events = [PoissonSubsampledGaussianEvent(1.0, 0.02, 500)]
    one = rdp_epsilon(events_rdp(events), 1e-5)
    few, many = tuning_epsilon(events, 1e-5, 1.0, 1 / 4), tuning_epsilon(events, 1e-5, 1.0, 1 / 40)
    assert one < few < many


def test_tuning_rdp_matches_theorem_2_at_a_hand_computed_order():
    # Gaussian σ = 4: ε(λ) = λ/32. η = 1, γ = 1/2: E[K] = 2; λ̂ from the grid minimising the middle terms.
    rdp = events_rdp([GaussianEvent(4.0)])
    lam = np.asarray(ORDERS)
    middle = np.min(2 * (1 - 1 / lam) * lam / 32 + 2 * math.log(2) / lam)
    i = ORDERS.index(8.0)
    assert tuning_rdp(rdp, 1.0, 0.5)[i] == pytest.approx(8 / 32 + middle + math.log(2) / 7)


def test_calibrated_candidates_meet_the_target_including_tuning():
    plan = dpsgd_plan(0.025, 400)
    sigma = calibrate_candidate_sigma(plan, 10.0, 1e-5, 1.0, 0.25)
    assert tuning_epsilon(plan(sigma), 1e-5, 1.0, 0.25) <= 10.0
    assert tuning_epsilon(plan(sigma * 0.99), 1e-5, 1.0, 0.25) > 10.0
    with pytest.raises(ValueError, match="fewer expected candidates"):
        calibrate_candidate_sigma(plan, 0.05, 1e-5, 1.0, 1e-4)
