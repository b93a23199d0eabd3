"""The mechanism audit: an empirical ε lower bound from many runs of a method's real release code on
neighbouring datasets D and D′ = D ∪ {canary} (docs/audit.md).

    for i in 1..trials:   x₀ᵢ = release(D),  x₁ᵢ = release(D′)          (fresh noise every call)
    w      = Σ̂⁻¹ Δ        from calibration trials (Δ = E x₁ − E x₀, Σ̂ = per-coordinate noise variance)
    scores sᵢ = ⟨w, xᵢ⟩   test "D′ if s > τ", τ chosen on a selection split, bound on the rest
                          (:mod:`dpgen_bench.audit.bounds`)

**Why this statistic.** For a Gaussian mechanism, x ~ N(μ₀, Σ) on D and N(μ₁, Σ) on D′, the log-likelihood
ratio log p₁(x)/p₀(x) = ⟨Σ⁻¹(μ₁ − μ₀), x⟩ + const is a monotone function of s = ⟨w, x⟩ with w = Σ⁻¹Δ, so by
Neyman–Pearson the threshold tests on s are the most powerful tests at every false-positive rate; s is then
N(·, ‖Δ‖²_{Σ⁻¹}) on each side, a one-dimensional Gaussian mechanism with μ = ‖Δ‖_{Σ⁻¹} — exactly the
mechanism whose (ε, δ) the accountant computed. The audit takes Σ diagonal (every release in this benchmark
adds independent noise per coordinate, with possibly different scales, e.g. sums vs counts).

**Where Δ and Σ come from.** Never from the method's claims (a broken method lies in exactly those): Σ̂ is
the pooled per-coordinate variance of ``calibration`` trials, Δ either their mean difference
(``mean_difference=None``) or a given noiseless difference (e.g. the release on D′ minus that on D with the
noise off, which the auditor who chose the canary may know). Calibration trials are disjoint from the trials
that select τ and evaluate the bound, so w is fixed before those are drawn and the Clopper–Pearson statement
of :mod:`~dpgen_bench.audit.bounds` is exact. A coordinate with (near) zero variance that differs between D and
D′ gets a huge weight: a value released without noise is found.

**Validity never rests on the method being right**: whatever ``release`` does, as long as its calls are
independent, the bound holds with the stated confidence. Its *tightness* rests on the statistic: for a
Gaussian release it is the optimal one; for a non-Gaussian release (e.g. PE's thresholded histogram) it is
still valid, just possibly loose.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from dpgen_bench.data.types import ImageDataset

from .bounds import (DEFAULT_CONFIDENCE, EpsilonLowerBound, GaussianDPLowerBound, gdp_threshold_bound,
                     threshold_test_bound)

Release = Callable[[ImageDataset], torch.Tensor]
"""data → one noisy release vector (the method's real release code, fresh noise on every call)."""

VARIANCE_FLOOR = 1e-12
"""Relative floor on the estimated per-coordinate variance (of the mean variance; absolute when all are 0)."""


@dataclass(frozen=True)
class MechanismAudit:
    """The result of :func:`audit_mechanism`: the bound, what it is compared with, and how it was obtained.

    ``trials`` releases per dataset in all, of which ``calibration_trials`` estimated the statistic;
    ``direction`` says where Δ came from; ``separation`` is the estimated μ = ‖Δ̂‖_{Σ̂⁻¹} of the score
    (difference of the evaluation means over their pooled std: the Gaussian-DP parameter the trials show);
    ``claimed_epsilon`` (None if not given) is what the ledger claims for one release; ``seconds`` the wall time.
    ``gdp``: the bound from the same scores under a Gaussian trade-off curve (:func:`gdp_threshold_bound`),
    which reaches large ε with few trials but rests on that assumption.
    """

    bound: EpsilonLowerBound
    gdp: GaussianDPLowerBound
    claimed_epsilon: float | None
    trials: int
    calibration_trials: int
    direction: str
    separation: float
    seconds: float

    @property
    def epsilon_lower(self) -> float:
        return self.bound.epsilon_lower

    @property
    def violation(self) -> bool:
        """True if the lower bound exceeds the claimed ε: the implementation releases more than it records."""
        return self.claimed_epsilon is not None and self.bound.epsilon_lower > self.claimed_epsilon

    @property
    def gdp_violation(self) -> bool:
        """True if the Gaussian-trade-off bound exceeds the claimed ε."""
        return self.claimed_epsilon is not None and self.gdp.epsilon_lower > self.claimed_epsilon

    def to_dict(self) -> dict:
        d = asdict(self)
        d["violation"], d["gdp_violation"] = self.violation, self.gdp_violation
        return d


def _releases(release: Release, data: ImageDataset, count: int, bar, project: torch.Tensor | None = None) -> torch.Tensor:
    """``count`` releases stacked (count, d), or only their scores ⟨project, x⟩ (count,): a release of 400k
    numbers (DP-MEPF) times thousands of trials would not fit in memory, its score does."""
    rows = []
    for _ in range(count):
        x = release(data)
        if not isinstance(x, torch.Tensor) or x.ndim != 1:
            raise TypeError(f"release must return a 1-d tensor, got {getattr(x, 'shape', type(x).__name__)}")
        x = x.detach().to("cpu", torch.float64)
        rows.append(x if project is None else x @ project)
        bar.update(1)
    return torch.stack(rows) if rows else torch.empty(0)


def likelihood_ratio_weights(neg: torch.Tensor, pos: torch.Tensor,
                             mean_difference: torch.Tensor | None = None) -> torch.Tensor:
    """w = Σ̂⁻¹Δ from calibration releases ``neg`` (on D) and ``pos`` (on D′), (k, d) each: Σ̂ the pooled
    per-coordinate variance (floored at :data:`VARIANCE_FLOOR` × its mean), Δ ``mean_difference`` or the
    difference of the calibration means."""
    if neg.shape[0] < 2 or pos.shape[0] < 2:
        raise ValueError("need at least 2 calibration trials per dataset")
    delta = (pos.mean(0) - neg.mean(0)) if mean_difference is None else mean_difference.double().flatten()
    if delta.shape != neg.shape[1:]:
        raise ValueError(f"mean_difference has {tuple(delta.shape)} entries, releases have {tuple(neg.shape[1:])}")
    var = (neg.var(0) * (neg.shape[0] - 1) + pos.var(0) * (pos.shape[0] - 1)) / (neg.shape[0] + pos.shape[0] - 2)
    mean_var = float(var.mean())
    floor = VARIANCE_FLOOR * (mean_var if mean_var > 0 else 1.0)
    return delta / var.clamp_min(floor)


def audit_mechanism(
    release: Release,
    data: ImageDataset,
    neighbour: ImageDataset,
    *,
    trials: int,
    delta: float,
    confidence: float = DEFAULT_CONFIDENCE,
    mean_difference: torch.Tensor | None = None,
    calibration_fraction: float | None = None,
    selection_fraction: float = 0.5,
    claimed_epsilon: float | None = None,
    progress: bool = False,
    desc: str = "audit trials",
) -> MechanismAudit:
    """Run ``trials`` releases on ``data`` (D) and on ``neighbour`` (D′) each and bound ε from below.

    The first ``calibration_fraction`` of the trials (default 0.5, or 0.1 when ``mean_difference`` — the known
    noiseless Δ = release(D′) − release(D) — is given) estimate the likelihood-ratio statistic
    (:func:`likelihood_ratio_weights`); the rest are scored and go to
    :func:`~dpgen_bench.audit.bounds.threshold_test_bound` (``selection_fraction`` of them choose τ).
    ``delta`` is the δ of the claim being tested; ``claimed_epsilon`` the ε it claims (for
    :attr:`MechanismAudit.violation`). ``progress`` shows a tqdm bar over the 2 × ``trials`` releases.
    """
    if trials < 8:
        raise ValueError(f"trials must be >= 8, got {trials}")
    frac = (0.1 if mean_difference is not None else 0.5) if calibration_fraction is None else calibration_fraction
    if not 0.0 < frac < 1.0:
        raise ValueError(f"calibration_fraction must be in (0, 1), got {frac!r}")
    n_cal = max(2, int(round(trials * frac)))
    if trials - n_cal < 4:
        raise ValueError(f"{trials} trials leave too few after {n_cal} calibration trials")
    t0 = time.perf_counter()
    with tqdm(total=2 * trials, desc=desc, disable=not progress, leave=False) as bar:
        cal0, cal1 = _releases(release, data, n_cal, bar), _releases(release, neighbour, n_cal, bar)
        w = likelihood_ratio_weights(cal0, cal1, mean_difference)
        s0 = _releases(release, data, trials - n_cal, bar, project=w).numpy()
        s1 = _releases(release, neighbour, trials - n_cal, bar, project=w).numpy()
    source = "known noiseless difference" if mean_difference is not None else "estimated mean difference"
    bound = threshold_test_bound(
        s0, s1, delta=delta, confidence=confidence, selection_fraction=selection_fraction,
        statistic=f"<Σ̂⁻¹Δ, x> (Δ: {source}, Σ̂: {n_cal}+{n_cal} calibration trials)",
    )
    gdp = gdp_threshold_bound(s0, s1, delta=delta, confidence=confidence, selection_fraction=selection_fraction)
    pooled = math.sqrt((np.var(s0, ddof=1) + np.var(s1, ddof=1)) / 2.0)
    separation = float((s1.mean() - s0.mean()) / pooled) if pooled > 0 else (math.inf if s1.mean() != s0.mean() else 0.0)
    return MechanismAudit(bound=bound, gdp=gdp, claimed_epsilon=claimed_epsilon, trials=int(trials),
                          calibration_trials=n_cal, direction=source, separation=separation,
                          seconds=time.perf_counter() - t0)
