"""Calibration speed with the default backend, side by side with Opacus's own get_noise_multiplier.

Run: ``pytest tests/benchmarks/test_bench_privacy.py --benchmark-only`` (skipped in the normal test run).
Target: median under 1 s for each dpgen-bench calibration on 2 cores, and at least 3× faster than
Opacus's ``get_noise_multiplier`` on the same DP-SGD plan in the same run. No timed asserts: compare the
``opacus-get_noise_multiplier`` and ``dpsgd`` medians in the printed table (group ``calibrate-dpsgd``).
Every benchmark checks its answer, so a fast wrong result cannot pass.
"""

from __future__ import annotations

import warnings

import pytest

from dpgen_bench.privacy import (
    GaussianEvent,
    PoissonSubsampledGaussianEvent,
    PrivacyBudget,
    calibrate,
    dpsgd_plan,
    epsilon,
)

Q, STEPS, TARGET, DELTA = 0.016, 2000, 1.0, 1e-5
BUDGET = PrivacyBudget(TARGET, DELTA)


def _mixed_plan(sigma):
    return [GaussianEvent(sigma), GaussianEvent(sigma / 2**0.5), PoissonSubsampledGaussianEvent(sigma, Q, STEPS)]


@pytest.mark.benchmark(group="calibrate-dpsgd", min_rounds=5, warmup=True)
def test_bench_calibrate_dpsgd_plan_default_backend(benchmark):
    plan = dpsgd_plan(Q, STEPS)
    sigma = benchmark.pedantic(lambda: calibrate(plan, BUDGET), rounds=5, iterations=1, warmup_rounds=1)
    assert epsilon(plan(sigma), DELTA) <= TARGET < epsilon(plan(sigma * (1 - 1e-3)), DELTA)


@pytest.mark.benchmark(group="calibrate-dpsgd")
def test_bench_opacus_get_noise_multiplier_same_plan(benchmark):
    from opacus.accountants.utils import get_noise_multiplier

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_noise_multiplier(
                target_epsilon=TARGET, target_delta=DELTA, sample_rate=Q, steps=STEPS, accountant="prv"
            )

    sigma = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert epsilon(dpsgd_plan(Q, STEPS)(sigma), DELTA) <= TARGET


@pytest.mark.benchmark(group="calibrate-mixed")
def test_bench_calibrate_mixed_plan_default_backend(benchmark):
    sigma = benchmark.pedantic(lambda: calibrate(_mixed_plan, BUDGET), rounds=5, iterations=1, warmup_rounds=1)
    assert epsilon(_mixed_plan(sigma), DELTA) <= TARGET < epsilon(_mixed_plan(sigma * (1 - 1e-3)), DELTA)
