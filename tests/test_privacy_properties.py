"""Property tests: ε never grows with more noise, and never shrinks with a higher sample rate or more steps."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpgen_bench.privacy import GaussianEvent, PoissonSubsampledGaussianEvent, PrivacyBudget, calibrate, epsilon

DELTA = 1e-5
# derandomize: the suite must not turn red on a new random draw; widen max_examples locally to explore more.
FAST = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

sigmas = st.floats(min_value=0.7, max_value=20.0)
rates = st.floats(min_value=1e-3, max_value=0.2)
step_counts = st.integers(min_value=1, max_value=2000)
gaps = st.floats(min_value=1.05, max_value=3.0)  # multiplicative gap between the two settings compared


def _dpsgd(sigma, q, steps):
    return [PoissonSubsampledGaussianEvent(sigma, q, steps)]


@FAST
@given(sigma=sigmas, gap=gaps, q=rates, steps=step_counts)
def test_rdp_epsilon_decreases_with_sigma(sigma, gap, q, steps):
    assert epsilon(_dpsgd(sigma * gap, q, steps), DELTA, "rdp") <= epsilon(_dpsgd(sigma, q, steps), DELTA, "rdp")


@FAST
@given(sigma=sigmas, q=rates, gap=gaps, steps=step_counts)
def test_rdp_epsilon_increases_with_sample_rate(sigma, q, gap, steps):
    q2 = min(1.0, q * gap)
    assert epsilon(_dpsgd(sigma, q2, steps), DELTA, "rdp") >= epsilon(_dpsgd(sigma, q, steps), DELTA, "rdp")


@FAST
@given(sigma=sigmas, q=rates, steps=step_counts, extra=st.integers(min_value=1, max_value=2000))
def test_rdp_epsilon_increases_with_steps(sigma, q, steps, extra):
    assert epsilon(_dpsgd(sigma, q, steps + extra), DELTA, "rdp") >= epsilon(_dpsgd(sigma, q, steps), DELTA, "rdp")


@FAST
@given(sigma=st.floats(min_value=0.2, max_value=200.0), gap=gaps, k=st.integers(min_value=1, max_value=10))
def test_exact_gaussian_epsilon_decreases_with_sigma_and_increases_with_releases(sigma, gap, k):
    base = epsilon([GaussianEvent(sigma)] * k, DELTA, "gdp")
    assert epsilon([GaussianEvent(sigma * gap)] * k, DELTA, "gdp") <= base
    assert epsilon([GaussianEvent(sigma)] * (k + 1), DELTA, "gdp") >= base


@SLOW
@given(sigma=st.floats(min_value=0.8, max_value=8.0), gap=gaps, q=rates, steps=st.integers(1, 500))
def test_prv_epsilon_is_monotone_in_sigma_q_and_steps(sigma, gap, q, steps):
    base = epsilon(_dpsgd(sigma, q, steps), DELTA, "prv")
    assert epsilon(_dpsgd(sigma * gap, q, steps), DELTA, "prv") <= base
    assert epsilon(_dpsgd(sigma, min(1.0, q * gap), steps), DELTA, "prv") >= base
    assert epsilon(_dpsgd(sigma, q, steps + 50), DELTA, "prv") >= base


@SLOW
@given(eps=st.floats(min_value=0.2, max_value=10.0), q=rates, steps=st.integers(1, 1000))
def test_calibrated_sigma_round_trips_for_random_dpsgd_plans(eps, q, steps):
    budget = PrivacyBudget(eps, DELTA)

    def plan(s):
        return _dpsgd(s, q, steps)

    sigma = calibrate(plan, replace(budget, accountant="rdp"))
    assert epsilon(plan(sigma), DELTA, "rdp") <= eps
    assert epsilon(plan(sigma * (1 - 1e-3)), DELTA, "rdp") > eps
