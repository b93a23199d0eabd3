"""The black-box one-run audit of a whole pipeline (Steinke, Nasr, Jagielski, "Privacy Auditing with One (1)
Training Run", NeurIPS 2023).

m canaries are each added to the private train split with probability ½ (the auditor's coins S_i ∈ {±1});
the method is fitted once; each canary gets a membership score from the released model's samples (minus the
distance to its nearest synthetic sample in a public feature space: members should be reproduced more
closely); the auditor guesses "in" for the k highest scores and "out" for the k lowest (r = 2k guesses, k fixed
before looking) and counts the correct guesses W.

**The bound** (their Theorem 3 with δ, Algorithm 2): if the pipeline is (ε, δ)-DP then for every v

    P[W ≥ v] ≤ β + 2mδ·α,   β = P[Binomial(r, p_ε) ≥ v],   p_ε = e^ε / (1 + e^ε),
    α = max_{1≤i≤v} P[v − i ≤ Binomial(r, p_ε) < v] / i.

The reported lower bound is the largest ε whose p-value is below 1 − confidence: at that confidence the pipeline
is not ε′-DP for any smaller ε′. For generators it is expected to be far below the claimed ε (one fit, weak
membership signal from samples); it shows that nothing grossly leaks, not that the claim is tight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from dpgen_bench.data.types import ImageDataset
from dpgen_bench.privacy.noise import public_generator

from .bounds import DEFAULT_CONFIDENCE


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[≥ v of r guesses correct] under the null "the pipeline is (ε, δ)-DP" (m canaries)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1], got {epsilon}, {delta}")
    p = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of ε-DP randomised response
    beta = float(stats.binom.sf(v - 1, r, p))
    if v == 0:
        return min(1.0, beta)
    i = np.arange(1, v + 1)
    below = np.cumsum(stats.binom.pmf(v - i, r, p))  # below[i-1] = P[v − i <= Binomial(r, p) < v]
    alpha = float(np.max(below / i))
    return min(1.0, beta + 2 * m * delta * alpha)


def one_run_epsilon_lower(m: int, r: int, v: int, delta: float, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The largest ε rejected at ``confidence``: p-value(ε) ≤ 1 − confidence (0 if even ε = 0 is not)."""
    level = 1.0 - confidence
    if one_run_p_value(m, r, v, 0.0, delta) > level:
        return 0.0
    lo, hi = 0.0, 1.0
    while one_run_p_value(m, r, v, hi, delta) <= level:  # the p-value grows with ε
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return math.inf
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if one_run_p_value(m, r, v, mid, delta) <= level else (lo, mid)
    return lo


@dataclass(frozen=True)
class OneRunAudit:
    """``epsilon_lower``: the one-run bound; ``correct`` of ``guesses`` guesses on ``canaries`` canaries."""

    epsilon_lower: float
    claimed_epsilon: float
    canaries: int
    guesses: int
    correct: int
    confidence: float

    @property
    def violation(self) -> bool:
        return self.epsilon_lower > self.claimed_epsilon


def canary_inclusion(m: int, seed: int) -> torch.Tensor:
    """The auditor's coins: a bool per canary, included with probability ½ (public, fixed by ``seed``)."""
    return torch.rand(m, generator=public_generator(seed, "one-run-canaries")) < 0.5


def with_canaries(data: ImageDataset, images: torch.Tensor, labels: torch.Tensor) -> ImageDataset:
    """``data`` plus the given canaries, declaring the same size n̂ (add/remove neighbours declare one n̂)."""
    return ImageDataset(
        images=torch.cat([data.images, images.to(data.images.dtype)]),
        labels=torch.cat([data.labels, labels.long()]),
        info=data.info, split=data.split, nominal_size=data.nominal_size,
    )


def membership_scores(canary_features: torch.Tensor, sample_features: torch.Tensor) -> torch.Tensor:
    """Minus the Euclidean distance of each canary to its nearest synthetic sample (higher: more member-like)."""
    return -torch.cdist(canary_features.double(), sample_features.double()).min(dim=1).values


def guess_and_count(scores: torch.Tensor, included: torch.Tensor, k: int) -> tuple[int, int]:
    """Guess "in" for the k highest scores and "out" for the k lowest; returns (guesses r, correct v)."""
    if not 1 <= 2 * k <= len(scores):
        raise ValueError(f"need 1 <= 2k <= m, got k={k}, m={len(scores)}")
    order = torch.argsort(scores, descending=True)
    guessed_in, guessed_out = order[:k], order[-k:]
    correct = int(included[guessed_in].sum()) + int((~included[guessed_out]).sum())
    return 2 * k, correct


def one_run_bound(scores: torch.Tensor, included: torch.Tensor, k: int, delta: float, claimed_epsilon: float,
                  confidence: float = DEFAULT_CONFIDENCE) -> OneRunAudit:
    """The audit's result from the canaries' scores and the coins."""
    r, v = guess_and_count(scores, included, k)
    m = len(scores)
    eps = one_run_epsilon_lower(m, r, v, delta, confidence)
    return OneRunAudit(eps, float(claimed_epsilon), m, r, v, confidence)


def guesses_for(m: int) -> int:
    """k: a tenth of the canaries on each side (fixed before the scores are seen, so the p-value is exact)."""
    return max(1, m // 10)


__all__ = [
    "OneRunAudit", "canary_inclusion", "guess_and_count", "guesses_for", "membership_scores", "one_run_bound",
    "one_run_epsilon_lower", "one_run_p_value", "with_canaries",
]
