"""ε from mechanism events: reference values (docs/privacy.md), backend agreement, events, ledger, bad input."""

from __future__ import annotations

import math

import pytest

from dpgen_bench.privacy import (
    ACCOUNTANTS,
    AccountingError,
    ComposedEvent,
    GaussianEvent,
    PoissonSubsampledGaussianEvent,
    PrivacyBudget,
    PrivacyLedger,
    UnsupportedEventError,
    accountant_tolerance,
    analytic_gaussian_epsilon,
    epsilon,
    events_from_json,
    events_to_json,
    to_history,
)
from dpgen_bench.privacy.accounting import analytic_gaussian_delta

DELTA = 1e-5
Q_MNIST = 256 / 60000


# ---- docs/privacy.md reference table -------------------------------------------------------------------------


def test_one_gaussian_release_sigma5_exact_is_0_7255():
    assert epsilon([GaussianEvent(5.0)], DELTA, "gdp") == pytest.approx(0.7255, abs=5e-5)


def test_one_gaussian_release_sigma5_rdp_is_0_7945():
    assert epsilon([GaussianEvent(5.0)], DELTA, "rdp") == pytest.approx(0.7945, abs=5e-5)


@pytest.mark.parametrize("backend", ["prv", "prv-accountant"])
def test_one_gaussian_release_sigma5_prv_upper_is_0_7356(backend):
    assert epsilon([GaussianEvent(5.0)], DELTA, backend) == pytest.approx(0.7356, abs=5e-5)


def test_gaussian_plus_2000_poisson_steps_prv_is_1_283():
    events = [GaussianEvent(5.0), PoissonSubsampledGaussianEvent(1.0, Q_MNIST, 2000)]
    assert epsilon(events, DELTA, "prv") == pytest.approx(1.283, abs=5e-4)


def test_gaussian_plus_2000_poisson_steps_rdp_is_1_488():
    events = [GaussianEvent(5.0), PoissonSubsampledGaussianEvent(1.0, Q_MNIST, 2000)]
    assert epsilon(events, DELTA, "rdp") == pytest.approx(1.488, abs=5e-4)


def test_mixed_history_prv_accountant_agrees_with_opacus_prv():
    events = [GaussianEvent(5.0), PoissonSubsampledGaussianEvent(1.0, Q_MNIST, 2000)]
    assert epsilon(events, DELTA, "prv-accountant") == pytest.approx(epsilon(events, DELTA, "prv"), abs=1e-3)


@pytest.mark.parametrize("backend", ["prv", "prv-accountant"])
def test_4690_poisson_steps_prv_is_1_569_within_stated_error(backend):
    # The table's 1.569 is the PRV/PLD *estimate*; the backends report the upper bound (estimate + eps_error).
    eps = epsilon([PoissonSubsampledGaussianEvent(1.0, Q_MNIST, 4690)], DELTA, backend)
    assert 1.569 - 5e-4 <= eps <= 1.569 + accountant_tolerance(backend, eps) + 5e-4


def test_sigma_3_7306_gives_epsilon_1_exactly():
    assert epsilon([GaussianEvent(3.7306)], DELTA, "gdp") == pytest.approx(1.0, abs=1e-4)


def test_two_releases_at_5_2759_give_epsilon_1_exactly():
    assert epsilon([GaussianEvent(5.2759)] * 2, DELTA, "gdp") == pytest.approx(1.0, abs=1e-4)


# ---- the analytic Gaussian itself --------------------------------------------------------------------------


def test_analytic_gaussian_delta_is_inverse_of_epsilon():
    for mu in (0.05, 0.3, 1.0, 3.0):
        eps = analytic_gaussian_epsilon(mu, DELTA)
        assert analytic_gaussian_delta(eps, mu) == pytest.approx(DELTA, rel=1e-6)


def test_gdp_composes_gaussians_by_summing_inverse_variances():
    # two releases at σ·√2 are exactly one release at σ
    assert epsilon([GaussianEvent(5 * math.sqrt(2))] * 2, DELTA, "gdp") == pytest.approx(
        epsilon([GaussianEvent(5.0)], DELTA, "gdp"), rel=1e-9
    )


def test_gdp_refuses_subsampled_events_with_clear_error():
    with pytest.raises(UnsupportedEventError, match="sample_rate=0.01"):
        epsilon([GaussianEvent(2.0), PoissonSubsampledGaussianEvent(1.0, 0.01, 10)], DELTA, "gdp")


def test_gdp_accepts_unsubsampled_runs_as_repeated_gaussians():
    assert epsilon([PoissonSubsampledGaussianEvent(4.0, 1.0, 3)], DELTA, "gdp") == pytest.approx(
        epsilon([GaussianEvent(4.0)] * 3, DELTA, "gdp"), rel=1e-12
    )


# ---- cross-check between backends --------------------------------------------------------------------------

GRID = [
    # (σ, q, T, δ)
    (0.8, 0.01, 200, 1e-5),
    (1.0, Q_MNIST, 1000, 1e-5),
    (1.5, 0.02, 500, 1e-6),
    (3.0, 0.05, 100, 1e-4),
]


@pytest.mark.parametrize("sigma,q,steps,delta", GRID)
def test_backends_agree_and_rdp_is_loosest_on_subsampled_grid(sigma, q, steps, delta):
    events = [PoissonSubsampledGaussianEvent(sigma, q, steps)]
    prv = epsilon(events, delta, "prv")
    ms = epsilon(events, delta, "prv-accountant")
    rdp = epsilon(events, delta, "rdp")
    # Both PRV implementations compute the same bound at the same accuracy.
    assert abs(prv - ms) <= accountant_tolerance("prv", prv)
    # RDP is an upper bound too, and never tighter than PRV's upper bound (beyond PRV's stated error).
    assert rdp >= prv - accountant_tolerance("prv", prv)


@pytest.mark.parametrize("sigmas,delta", [((5.0,), 1e-5), ((2.0, 3.0), 1e-5), ((1.0,), 1e-3), ((10.0,) * 4, 1e-6)])
def test_ordering_rdp_ge_prv_upper_ge_exact_for_gaussians(sigmas, delta):
    events = [GaussianEvent(s) for s in sigmas]
    exact = epsilon(events, delta, "gdp")
    prv = epsilon(events, delta, "prv")
    ms = epsilon(events, delta, "prv-accountant")
    rdp = epsilon(events, delta, "rdp")
    assert rdp >= prv >= exact
    assert ms >= exact
    # PRV's upper bound is within its stated error (plus the δ-error term) of the exact value.
    assert prv - exact <= 2 * accountant_tolerance("prv", prv)


# ---- histories, events, ledger ---------------------------------------------------------------------------


def test_history_merges_equal_mechanisms_so_ledger_of_single_steps_equals_plan():
    ledger = PrivacyLedger()
    ledger.record(GaussianEvent(5.0), "embedding")
    for _ in range(50):
        ledger.record(PoissonSubsampledGaussianEvent(1.2, 0.01, 1), "step")
    plan = [GaussianEvent(5.0), PoissonSubsampledGaussianEvent(1.2, 0.01, 50)]
    assert to_history(ledger.events) == to_history(plan) == [(5.0, 1.0, 1), (1.2, 0.01, 50)]
    for acc in ("prv", "rdp"):
        assert ledger.epsilon(PrivacyBudget(1.0, DELTA, accountant=acc)) == epsilon(plan, DELTA, acc)


def test_composed_events_flatten_into_the_same_history():
    nested = ComposedEvent((GaussianEvent(3.0), ComposedEvent((PoissonSubsampledGaussianEvent(1.0, 0.1, 5),))))
    assert epsilon(nested, DELTA, "rdp") == epsilon(
        [GaussianEvent(3.0), PoissonSubsampledGaussianEvent(1.0, 0.1, 5)], DELTA, "rdp"
    )


def test_events_json_round_trip_preserves_epsilon():
    events = [GaussianEvent(4.0), ComposedEvent((PoissonSubsampledGaussianEvent(1.1, 0.02, 30),))]
    back = events_from_json(events_to_json(events))
    assert back == events
    assert epsilon(back, DELTA, "rdp") == epsilon(events, DELTA, "rdp")


def test_empty_ledger_spends_nothing():
    assert PrivacyLedger().epsilon(PrivacyBudget(1.0, DELTA)) == 0.0
    assert epsilon([], DELTA, "prv") == 0.0


def test_ledger_round_trips_through_dicts_with_notes():
    ledger = PrivacyLedger()
    ledger.record(GaussianEvent(2.0), "counts")
    back = PrivacyLedger.from_dicts(ledger.to_dicts())
    assert back.entries == ledger.entries


# ---- failures and bad input --------------------------------------------------------------------------------


def test_known_prv_accountant_failure_is_an_accounting_error_and_opacus_prv_copes():
    # docs/privacy.md: prv-accountant 0.2.0 raises "Discrete mean differs ..." at q=0.1, σ=0.6, T=100.
    events = [PoissonSubsampledGaussianEvent(0.6, 0.1, 100)]
    with pytest.raises(AccountingError, match="prv-accountant"):
        epsilon(events, DELTA, "prv-accountant")
    assert math.isfinite(epsilon(events, DELTA, "prv"))


def test_unknown_accountant_is_named_and_valid_ones_listed():
    with pytest.raises(ValueError, match=r"'gaussian'.*prv"):
        epsilon([GaussianEvent(1.0)], DELTA, "gaussian")


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 1.5, float("nan")])
def test_delta_outside_open_unit_interval_is_refused_naming_it(delta):
    with pytest.raises(ValueError, match=f"delta must be in \\(0, 1\\), got {delta!r}"):
        epsilon([GaussianEvent(1.0)], delta, "rdp")


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan")])
def test_budget_epsilon_not_positive_is_refused_naming_it(eps):
    with pytest.raises(ValueError, match=f"epsilon must be > 0.*{eps!r}"):
        PrivacyBudget(eps, DELTA)


@pytest.mark.parametrize("q", [0.0, -0.1, 1.0001, float("nan")])
def test_sample_rate_outside_0_1_is_refused_naming_it(q):
    with pytest.raises(ValueError, match=f"sample_rate.*{q!r}"):
        PoissonSubsampledGaussianEvent(1.0, q, 10)


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_steps_below_one_is_refused_naming_it(steps):
    with pytest.raises(ValueError, match=f"steps.*{steps!r}"):
        PoissonSubsampledGaussianEvent(1.0, 0.1, steps)


@pytest.mark.parametrize("sigma", [-1.0, 0.0, float("inf")])
def test_negative_or_zero_sigma_is_refused_naming_it(sigma):
    with pytest.raises(ValueError, match=f"noise_multiplier.*{sigma!r}"):
        GaussianEvent(sigma)


def test_every_backend_states_its_tolerance():
    for name in ACCOUNTANTS:
        tol = accountant_tolerance(name, 1.0)
        assert 0 < tol <= 0.01
    assert accountant_tolerance("prv", 1.0) == 0.01
    assert accountant_tolerance("rdp", 10.0) == pytest.approx(1e-5)


def test_merging_gaussian_releases_is_exact_composition():
    # RDP of Gaussians adds exactly, so it certifies the identity the PRV backends use to merge releases.
    from dpgen_bench.privacy.accounting import merge_gaussians

    merged = merge_gaussians(to_history([GaussianEvent(3.0), PoissonSubsampledGaussianEvent(1.0, 0.01, 5), GaussianEvent(4.0)]))
    assert merged == [(pytest.approx(2.4), 1.0, 1), (1.0, 0.01, 5)]
    assert epsilon([GaussianEvent(3.0), GaussianEvent(4.0)], DELTA, "rdp") == pytest.approx(
        epsilon([GaussianEvent(2.4)], DELTA, "rdp"), rel=1e-9
    )


def test_budget_records_delta_rule_and_add_remove_neighbouring():
    budget = PrivacyBudget.from_rule(1.0, 4000)
    assert budget.delta == pytest.approx(1 / (4000 * math.log(4000)))
    assert budget.delta_rule == "1/(n ln n)"
    assert budget.neighbouring == "add/remove-one"
    assert PrivacyBudget(1.0, 1e-5).delta_rule == "fixed"
    assert not PrivacyBudget(math.inf, 1e-5).is_private


def test_budget_carries_its_accountant_and_refuses_unknown_ones():
    assert PrivacyBudget(1.0, 1e-5).accountant == "prv"
    assert PrivacyBudget(1.0, 1e-5, accountant="rdp").accountant == "rdp"
    assert PrivacyBudget.from_rule(1.0, 4000, "gdp").accountant == "gdp"
    with pytest.raises(ValueError, match="unknown accountant 'pld'"):
        PrivacyBudget(1.0, 1e-5, accountant="pld")


def test_ledger_epsilon_uses_the_budgets_accountant():
    ledger = PrivacyLedger()
    ledger.record(GaussianEvent(5.0), "release")
    for acc in ("prv", "rdp", "gdp"):
        assert ledger.epsilon(PrivacyBudget(1.0, DELTA, accountant=acc)) == epsilon([GaussianEvent(5.0)], DELTA, acc)


def test_spend_above_target_by_less_than_prv_error_is_not_admitted():
    """The PRV value is already an upper bound: no extra 0.01 of slack on top (only float rounding)."""
    budget = PrivacyBudget(1.0, DELTA)
    assert budget.admits(1.0) and budget.admits(1.0 + 1e-12)
    assert not budget.admits(1.005)
    assert not budget.admits(float("nan"))


def test_delta_rule_needs_a_declared_integer_size():
    with pytest.raises(ValueError, match="declared size n >= 3"):
        PrivacyBudget.from_rule(1.0, 2)
    with pytest.raises(ValueError, match="declared size"):
        PrivacyBudget.from_rule(1.0, 40.5)


def test_budget_from_a_config_delta_setting_is_the_value_or_the_rule():
    assert PrivacyBudget.from_setting(1.0, 1e-5, 4000, "rdp") == PrivacyBudget(1.0, 1e-5, "fixed", "rdp")
    assert PrivacyBudget.from_setting(1.0, "1/(n ln n)", 4000) == PrivacyBudget.from_rule(1.0, 4000)
    with pytest.raises(ValueError, match="or the rule"):
        PrivacyBudget.from_setting(1.0, "1/n", 4000)


def test_a_backend_evaluates_each_history_once_and_its_failures_are_not_remembered():
    # Calibration's probes, the runner's re-check and the conformance plan check ask for the same histories again.
    from dpgen_bench.privacy.accounting import Accountant, register_accountant

    calls = []

    def counting(history, delta):
        calls.append((tuple(history), delta))
        if history[0][0] < 1.0:
            raise AccountingError("a toy failure")
        return 0.5 * len(calls)

    register_accountant(Accountant("toy-counting", "counts its calls (a test toy)", counting, 0.0, 0.0, True))
    try:
        first = epsilon(GaussianEvent(2.0), DELTA, "toy-counting")
        assert epsilon([GaussianEvent(2.0)], DELTA, "toy-counting") == first and len(calls) == 1
        assert epsilon(GaussianEvent(2.0), 2 * DELTA, "toy-counting") != first and len(calls) == 2
        assert epsilon(GaussianEvent(3.0), DELTA, "toy-counting") != first and len(calls) == 3
        for _ in range(2):
            with pytest.raises(AccountingError, match="a toy failure"):
                epsilon(GaussianEvent(0.5), DELTA, "toy-counting")
        assert len(calls) == 5
    finally:
        ACCOUNTANTS.unregister("toy-counting")
