"""Audit bounds: Clopper–Pearson values, the ε lower bound of a threshold test, its coverage, the split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpgen_bench.audit.bounds import (
    clopper_pearson_interval,
    clopper_pearson_lower,
    clopper_pearson_upper,
    epsilon_from_rates,
    evaluate_threshold,
    gdp_mu_from_rates,
    gdp_threshold_bound,
    threshold_test_bound,
)
from dpgen_bench.privacy.accounting import analytic_gaussian_epsilon


def test_clopper_pearson_has_its_closed_forms_at_the_edges_and_the_textbook_interval_inside():
    n, c = 50, 0.9
    assert clopper_pearson_upper(0, n, c) == pytest.approx(1 - (1 - c) ** (1 / n), rel=1e-10)
    assert clopper_pearson_lower(n, n, c) == pytest.approx((1 - c) ** (1 / n), rel=1e-10)
    assert clopper_pearson_upper(n, n, c) == 1.0 and clopper_pearson_lower(0, n, c) == 0.0
    lo, hi = clopper_pearson_interval(5, 10, 0.95)  # the classic exact interval for 5/10
    assert (lo, hi) == (pytest.approx(0.187086, abs=1e-6), pytest.approx(0.812914, abs=1e-6))
    up = clopper_pearson_upper(np.arange(11), 10, 0.95)
    assert np.all(np.diff(up) > 0) and up[-1] == 1.0
    with pytest.raises(ValueError):
        clopper_pearson_upper(3, 2)
    with pytest.raises(ValueError, match="confidence"):
        clopper_pearson_upper(1, 2, 1.0)


def test_a_perfect_test_gives_the_clopper_pearson_bound_of_zero_errors():
    n, delta, c = 1000, 1e-5, 0.95
    result = evaluate_threshold(np.zeros(n), np.ones(n), 0.5, delta=delta, confidence=c)
    u = 1 - (1 - math.sqrt(c)) ** (1 / n)  # each side at sqrt(c): the two hold together with probability c
    assert result.fpr == result.fnr == 0.0
    assert result.fpr_upper == pytest.approx(u, rel=1e-10) and result.fnr_upper == pytest.approx(u, rel=1e-10)
    assert result.epsilon_lower == pytest.approx(math.log((1 - delta - u) / u), rel=1e-10)
    assert 5.5 < result.epsilon_lower < 5.7
    # with threshold selection, half the trials evaluate: the bound of n/2 perfect trials
    split = threshold_test_bound(np.zeros(n), np.ones(n), delta=delta, confidence=c)
    u2 = 1 - (1 - math.sqrt(c)) ** (2 / n)
    assert split.n_negative == split.n_positive == n // 2 and split.n_selection == n // 2
    assert split.epsilon_lower == pytest.approx(math.log((1 - delta - u2) / u2), rel=1e-10)
    assert split.threshold == 0.5


def test_higher_confidence_gives_a_lower_bound():
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(size=2000), rng.normal(2.0, size=2000)
    values = [evaluate_threshold(neg, pos, 2.5, delta=1e-5, confidence=c).epsilon_lower for c in (0.5, 0.9, 0.99)]
    assert values[0] > values[1] > values[2] > 0


def test_no_separation_gives_no_evidence():
    rng = np.random.default_rng(1)
    same = rng.normal(size=500)
    assert threshold_test_bound(same, same.copy(), delta=1e-5).epsilon_lower == 0.0
    for tau in (-10.0, 0.0, 10.0):
        assert evaluate_threshold(same, same.copy(), tau, delta=1e-5).epsilon_lower == 0.0
    assert epsilon_from_rates(0.5, 0.5, 1e-5) == 0.0
    assert epsilon_from_rates(1.0, 1.0, 1e-5) == 0.0  # log of a non-positive number is no evidence, not NaN
    assert epsilon_from_rates(0.0, 0.5, 0.0) == math.inf


def test_the_bound_covers_the_true_epsilon_of_randomised_response():
    """Randomised response is exactly (ε, 0)-DP and the test at 0.5 attains ε: the empirical rates alone would
    claim more than ε about half the time; the bound may do so in at most 1 − confidence of the runs."""
    eps, n, runs = 1.0, 2000, 300
    p = 1 / (1 + math.exp(eps))  # P[output 1 | D] = P[output 0 | D′]
    rng = np.random.default_rng(2)
    over = 0
    for _ in range(runs):
        neg = (rng.random(n) < p).astype(float)
        pos = (rng.random(n) >= p).astype(float)
        over += evaluate_threshold(neg, pos, 0.5, delta=0.0, confidence=0.95).epsilon_lower > eps
    assert over / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)


def test_the_threshold_is_chosen_on_trials_that_do_not_evaluate_it():
    """First halves perfectly separated, second halves identical: a test whose τ was chosen on the first
    half must be evaluated on the second alone, which shows nothing."""
    n = 400
    rng = np.random.default_rng(3)
    tail = rng.normal(size=n // 2)
    neg = np.concatenate([np.zeros(n // 2), tail])
    pos = np.concatenate([np.full(n // 2, 100.0), tail.copy()])
    result = threshold_test_bound(neg, pos, delta=1e-5)
    assert 0 <= result.threshold < 100
    assert result.epsilon_lower == 0.0


def test_the_threshold_is_not_chosen_on_the_trials_that_evaluate_it():
    """The selection half says τ ≈ 50; the evaluation half is separated only at 65. Picking τ on the
    evaluation trials would certify a large ε from them; the honest test evaluates τ ≈ 50 and finds nothing."""
    n = 400
    neg = np.concatenate([np.zeros(n // 2), np.full(n // 2, 60.0)])
    pos = np.concatenate([np.full(n // 2, 100.0), np.full(n // 2, 70.0)])
    result = threshold_test_bound(neg, pos, delta=1e-5)
    assert result.threshold == 50.0 and result.fpr == 1.0 and result.fnr == 0.0
    assert result.epsilon_lower == 0.0


# -- under a Gaussian trade-off curve (bounds.py, (2)) ------------------------------------------------------


def test_the_gaussian_mu_from_rates_inverts_the_gaussian_trade_off_curve():
    from scipy.stats import norm

    for mu in (0.3, 2.0, 6.0):
        fpr = np.array([1e-4, 0.01, 0.3])
        fnr = norm.cdf(norm.isf(fpr) - mu)  # the points of T_mu
        assert np.allclose(gdp_mu_from_rates(fpr, fnr), mu)
    assert gdp_mu_from_rates(0.5, 0.6) == 0.0  # worse than guessing: no evidence
    assert gdp_mu_from_rates(0.0, 0.0) == 0.0  # infinite rates never become a bound


def test_the_gaussian_bound_covers_the_true_mu_of_a_gaussian_mechanism():
    rng = np.random.default_rng(0)
    for mu in (0.5, 2.0):
        over = [gdp_threshold_bound(rng.normal(0, 1, 200), rng.normal(mu, 1, 200), delta=1e-5).mu_lower > mu
                for _ in range(200)]
        assert np.mean(over) <= 0.05  # at most the 5 % the confidence allows (Clopper–Pearson: ~0)


def test_the_gaussian_bound_certifies_past_the_trial_limit_of_a_threshold_test():
    rng = np.random.default_rng(1)
    neg, pos = rng.normal(0, 1, 900), rng.normal(20.0, 1, 900)  # mu = 20: tenth-noise at a claim of eps = 10
    free = threshold_test_bound(neg, pos, delta=1e-5)
    gdp = gdp_threshold_bound(neg, pos, delta=1e-5)
    assert free.epsilon_lower < 5.0  # log(450 evaluation trials) caps it
    assert gdp.epsilon_lower == pytest.approx(analytic_gaussian_epsilon(gdp.mu_lower, 1e-5))
    assert gdp.mu_lower > 4.5 and gdp.epsilon_lower > 25.0 and gdp.n_selection == 450
