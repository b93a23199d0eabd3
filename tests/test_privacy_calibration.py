"""Noise calibration: reference σ (docs/privacy.md), round trips for every backend, failures, plan helpers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

import dpgen_bench.privacy.calibration as calibration_module
from dpgen_bench.privacy import (
    DEFAULT_RTOL,
    AccountingError,
    CalibrationError,
    GaussianEvent,
    PoissonSubsampledGaussianEvent,
    PrivacyBudget,
    UnsupportedEventError,
    calibrate,
    calibrate_gaussian_releases,
    check_reachable,
    dpsgd_plan,
    dpsgd_plan_from_settings,
    dpsgd_steps,
    epsilon,
    gaussian_releases_plan,
    sample_rate,
    steps_per_epoch,
)

DELTA = 1e-5
EPS1 = PrivacyBudget(1.0, DELTA)


def _mixed_plan(sigma):
    return [GaussianEvent(sigma), GaussianEvent(sigma / math.sqrt(2)), PoissonSubsampledGaussianEvent(sigma, 0.02, 300)]


def _assert_round_trip(plan, budget, accountant, sigma, rtol=DEFAULT_RTOL):
    """The calibrator's contract: enough noise at σ, too little at σ·(1 − rtol), both per the backend."""
    assert epsilon(plan(sigma), budget.delta, accountant) <= budget.epsilon
    assert epsilon(plan(sigma * (1 - rtol)), budget.delta, accountant) > budget.epsilon


# ---- docs/privacy.md reference σ ------------------------------------------------------------------------------


def test_sigma_for_one_release_at_eps1_is_3_7306_analytic():
    assert calibrate_gaussian_releases([1.0], replace(EPS1, accountant="gdp"), rtol=1e-6) == pytest.approx(3.7306, abs=5e-5)


def test_sigma_for_two_equal_releases_at_eps1_is_5_2759_exact():
    assert calibrate_gaussian_releases([1.0, 1.0], replace(EPS1, accountant="gdp"), rtol=1e-6) == pytest.approx(5.2759, abs=5e-5)


@pytest.mark.parametrize("backend,reference", [("prv", 5.36), ("rdp", 5.73)])
def test_sigma_for_two_equal_releases_matches_table_to_its_epsilon_tolerance(backend, reference):
    # The table's "≈" values come from a search that stops within 0.01 in ε (Opacus's get_noise_multiplier),
    # so they sit slightly above the smallest σ: ours must be ≤ the reference and within 1 % of it.
    sigma = calibrate_gaussian_releases([1.0, 1.0], replace(EPS1, accountant=backend))
    assert sigma <= reference + 0.005
    assert sigma == pytest.approx(reference, rel=0.01)
    assert epsilon([GaussianEvent(reference)] * 2, DELTA, backend) <= 1.0


def test_backend_ordering_carries_over_to_calibrated_sigma():
    exact = calibrate_gaussian_releases([1.0, 1.0], replace(EPS1, accountant="gdp"))
    prv = calibrate_gaussian_releases([1.0, 1.0], replace(EPS1, accountant="prv"))
    rdp = calibrate_gaussian_releases([1.0, 1.0], replace(EPS1, accountant="rdp"))
    assert exact < prv < rdp


# ---- round trips -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
@pytest.mark.parametrize("eps", [0.5, 1.0, 8.0])
def test_dpsgd_round_trip(accountant, eps):
    plan = dpsgd_plan(0.01, 500)
    budget = PrivacyBudget(eps, DELTA)
    _assert_round_trip(plan, budget, accountant, calibrate(plan, replace(budget, accountant=accountant)))


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_mixed_plan_round_trip(accountant):
    _assert_round_trip(_mixed_plan, EPS1, accountant, calibrate(_mixed_plan, replace(EPS1, accountant=accountant)))


def test_prv_accountant_round_trip_on_a_mixed_plan():
    budget = PrivacyBudget(2.0, 1e-5)
    plan = lambda s: [GaussianEvent(s), PoissonSubsampledGaussianEvent(s, 0.05, 40)]  # noqa: E731
    _assert_round_trip(plan, budget, "prv-accountant", calibrate(plan, replace(budget, accountant="prv-accountant")))


def test_gdp_round_trip_with_unequal_sensitivities():
    sens = [1.0, math.sqrt(2), 0.5]
    sigma = calibrate_gaussian_releases(sens, replace(EPS1, accountant="gdp"))
    _assert_round_trip(gaussian_releases_plan(sens), EPS1, "gdp", sigma)


def test_looser_rtol_is_honoured():
    plan = dpsgd_plan(0.02, 200)
    sigma = calibrate(plan, replace(EPS1, accountant="rdp"), rtol=0.05)
    _assert_round_trip(plan, EPS1, "rdp", sigma, rtol=0.05)


def test_release_i_is_gaussian_event_sigma_over_sensitivity():
    assert gaussian_releases_plan([1.0, 2.0])(4.0) == [GaussianEvent(4.0), GaussianEvent(2.0)]


# ---- failure modes ---------------------------------------------------------------------------------------


def test_unreachable_budget_is_a_clear_error_not_a_hang():
    # PRV's upper bound is at least its eps_error (0.01), so ε = 0.005 cannot be certified with any σ.
    with pytest.raises(CalibrationError, match="epsilon=0.005 .*unreachable"):
        calibrate(dpsgd_plan(0.01, 100), replace(PrivacyBudget(0.005, DELTA), accountant="prv"))


def test_budget_needing_more_than_sigma_max_is_unreachable():
    with pytest.raises(CalibrationError, match="noise_multiplier=100"):
        calibrate(gaussian_releases_plan([1.0]), replace(PrivacyBudget(0.01, DELTA), accountant="gdp"), sigma_max=100.0)


@pytest.mark.parametrize("accountant", ["prv", "gdp"])
def test_the_one_evaluation_reachability_check_agrees_with_calibrate(accountant):
    # The runner refuses a config with check_reachable (one evaluation at SIGMA_MAX) instead of a full search:
    # for the same plan and budgets, it must refuse exactly what calibrate refuses, with the same message.
    plan = gaussian_releases_plan([1.0, 2.0])
    reachable, unreachable = (replace(PrivacyBudget(eps, DELTA), accountant=accountant) for eps in (1.0, 0.005))
    check_reachable(plan, reachable)
    assert calibrate(plan, reachable) > 0
    sigma_max = 100.0 if accountant == "gdp" else calibration_module.SIGMA_MAX  # prv: ε ≥ its eps_error 0.01
    with pytest.raises(CalibrationError) as by_search:
        calibrate(plan, unreachable, sigma_max=sigma_max)
    with pytest.raises(CalibrationError) as by_check:
        check_reachable(plan, unreachable, sigma_max=sigma_max)
    assert "unreachable" in str(by_check.value) and str(by_check.value) == str(by_search.value)


def test_the_reachability_check_refuses_subsampled_events_the_backend_cannot_account():
    with pytest.raises(UnsupportedEventError, match="gdp"):
        check_reachable(dpsgd_plan(0.01, 100), replace(EPS1, accountant="gdp"))


def test_a_repeated_release_calibration_is_searched_once_and_gives_calibrates_sigma(monkeypatch):
    # Audits calibrate the same release thousands of times: the search runs once per budget, same answer.
    budget, sens = replace(EPS1, accountant="gdp"), [1.0, 2.5]
    expected = calibrate(gaussian_releases_plan(sens), budget)
    calibration_module._calibrate_releases.cache_clear()
    searches = []
    real = calibration_module.calibrate
    monkeypatch.setattr(calibration_module, "calibrate", lambda *a, **k: searches.append(a) or real(*a, **k))
    assert {calibrate_gaussian_releases(sens, budget) for _ in range(3)} == {expected} and len(searches) == 1
    assert calibrate_gaussian_releases(sens, replace(budget, epsilon=2.0)) < expected and len(searches) == 2


def test_budget_met_at_sigma_min_is_reported():
    with pytest.raises(CalibrationError, match="sigma_min"):
        calibrate(gaussian_releases_plan([1.0]), replace(PrivacyBudget(1e4, 0.5), accountant="gdp"), sigma_min=0.5)


def test_numerical_failure_counts_as_too_little_noise(monkeypatch):
    real = calibration_module.epsilon

    def flaky(events, delta, accountant="prv"):
        if any(e.noise_multiplier < 4.0 for e in events):
            raise AccountingError("simulated backend failure")
        return real(events, delta, accountant)

    monkeypatch.setattr(calibration_module, "epsilon", flaky)
    # Without failures the answer would be 3.73; with every σ < 4 failing, the smallest usable σ is 4.
    sigma = calibrate(gaussian_releases_plan([1.0]), replace(EPS1, accountant="gdp"))
    assert 4.0 <= sigma <= 4.0 * (1 + 2 * DEFAULT_RTOL)


def test_gdp_calibration_of_dpsgd_is_refused_not_searched():
    with pytest.raises(UnsupportedEventError, match="Poisson-subsampled"):
        calibrate(dpsgd_plan(0.01, 10), replace(EPS1, accountant="gdp"))


def test_non_private_budget_is_not_calibrated():
    with pytest.raises(ValueError, match="non-private"):
        calibrate(dpsgd_plan(0.01, 10), PrivacyBudget(math.inf, DELTA))


@pytest.mark.parametrize("rtol", [0.0, -0.1, 0.5])
def test_bad_rtol_is_refused_naming_it(rtol):
    with pytest.raises(ValueError, match=f"rtol.*{rtol!r}"):
        calibrate(dpsgd_plan(0.01, 10), replace(EPS1, accountant="rdp"), rtol=rtol)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_relative_sensitivity_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match=f"got {bad!r}"):
        calibrate_gaussian_releases([1.0, bad], EPS1)


# ---- DP-SGD plan helpers ------------------------------------------------------------------------------------


def test_sample_rate_is_batch_over_dataset_size():
    assert sample_rate(256, 60000) == 256 / 60000


def test_steps_follow_opacus_poisson_loader_batches_per_epoch():
    # Opacus's DPDataLoader yields int(1/q) batches per epoch: 60000/256 → 234 per epoch.
    assert steps_per_epoch(256 / 60000) == 234
    assert dpsgd_steps(60000, 256, 20) == 20 * 234
    assert dpsgd_steps(4000, 100, 30) == 1200


def test_plan_from_settings_matches_explicit_plan():
    assert dpsgd_plan_from_settings(4000, 64, epochs=2)(1.5) == [PoissonSubsampledGaussianEvent(1.5, 64 / 4000, 124)]
    assert dpsgd_plan_from_settings(4000, 64, steps=7)(1.5) == dpsgd_plan(64 / 4000, 7)(1.5)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: dpsgd_plan(1.5, 10), "sample_rate.*1.5"),
        (lambda: dpsgd_plan(0.1, 0), "steps.*0"),
        (lambda: sample_rate(500, 100), "batch_size=500 exceeds dataset_size=100"),
        (lambda: dpsgd_steps(100, 10, -1), "epochs.*-1"),
        (lambda: dpsgd_plan_from_settings(100, 10), "exactly one of epochs or steps"),
    ],
)
def test_plan_helpers_refuse_bad_settings_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()
