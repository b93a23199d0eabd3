"""The one-run audit's bound (Steinke, Nasr, Jagielski 2023): exact p-values, valid on an ε-DP mechanism,
powerful on a leaky one."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.audit.one_run import (
    canary_inclusion,
    guess_and_count,
    one_run_bound,
    one_run_epsilon_lower,
    one_run_p_value,
)


def test_without_delta_the_p_value_is_the_binomial_tail_of_randomised_response():
    from scipy import stats

    p = math.exp(1.0) / (1 + math.exp(1.0))
    assert one_run_p_value(1000, 100, 80, 1.0, 0.0) == pytest.approx(stats.binom.sf(79, 100, p))


def test_delta_only_raises_the_p_value_so_it_only_lowers_the_bound():
    assert one_run_p_value(1000, 100, 80, 1.0, 1e-5) > one_run_p_value(1000, 100, 80, 1.0, 0.0)
    assert one_run_epsilon_lower(1000, 100, 80, 1e-5) <= one_run_epsilon_lower(1000, 100, 80, 0.0)


def test_chance_level_guessing_certifies_nothing_and_perfect_guessing_is_capped_by_the_guess_count():
    assert one_run_epsilon_lower(1000, 200, 100, 1e-5) == 0.0
    perfect = one_run_epsilon_lower(1000, 200, 200, 1e-5)
    assert 3.0 < perfect < 5.0  # r = 200 perfect guesses cannot certify more than ~log(r)


def test_the_bound_is_the_largest_epsilon_whose_p_value_is_below_the_level():
    eps = one_run_epsilon_lower(1000, 200, 150, 1e-5)
    assert one_run_p_value(1000, 200, 150, eps, 1e-5) <= 0.05 < one_run_p_value(1000, 200, 150, eps + 1e-3, 1e-5)


def _randomised_response(included: torch.Tensor, epsilon: float, g: torch.Generator) -> torch.Tensor:
    """ε-DP per canary: the score is the true bit with probability e^ε/(1+e^ε), plus a tie-breaking jitter."""
    keep = torch.rand(len(included), generator=g) < math.exp(epsilon) / (1 + math.exp(epsilon))
    bit = torch.where(keep, included, ~included).double()
    return bit + 0.01 * torch.rand(len(included), generator=g, dtype=torch.float64)


def test_an_epsilon_dp_mechanism_is_flagged_in_at_most_5_percent_of_runs_and_a_leakier_one_is_flagged():
    """Randomised response attains ε exactly, so at 95 % confidence about 5 % of honest runs exceed the claim;
    more would mean the bound is not valid. (Seeded: the count is the same on every run of the test.)"""
    g = torch.Generator().manual_seed(0)
    m, k, runs = 1000, 100, 100
    flagged = sum(one_run_bound(_randomised_response(inc, 1.0, g), inc, k, 1e-5, 1.0).violation
                  for inc in (canary_inclusion(m, seed) for seed in range(runs)))
    assert flagged <= 12  # P[Binomial(100, 0.05) > 12] < 0.002
    included = canary_inclusion(m, 99)
    leaky = one_run_bound(_randomised_response(included, 4.0, g), included, k, 1e-5, 1.0)
    assert leaky.violation and leaky.epsilon_lower > 2.0, leaky


def test_guesses_are_the_k_highest_in_and_the_k_lowest_out():
    scores = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    included = torch.tensor([True, False, True, False, True, False])
    assert guess_and_count(scores, included, 2) == (4, 1 + 1)
    with pytest.raises(ValueError, match="2k <= m"):
        guess_and_count(scores, included, 4)


def test_the_coins_are_fair_and_fixed_by_the_seed():
    a, b = canary_inclusion(4000, 3), canary_inclusion(4000, 3)
    assert torch.equal(a, b) and abs(a.float().mean().item() - 0.5) < 0.03
