"""Empirical ε lower bounds from a threshold test on neighbouring datasets.

**The inequality.** Let M be (ε, δ)-DP and D, D′ neighbours. For every measurable set S of outputs

    P[M(D′) ∈ S] ≤ e^ε · P[M(D) ∈ S] + δ      and      P[M(D) ∈ S] ≤ e^ε · P[M(D′) ∈ S] + δ.

A *threshold test* scores an output with a fixed statistic s and says "D′" when s > τ. Call its false-positive
rate FPR = P[s(M(D)) > τ] and its false-negative rate FNR = P[s(M(D′)) ≤ τ]. Taking S = {s > τ} in the first
inequality and S = {s ≤ τ} in the second gives

    1 − FNR ≤ e^ε · FPR + δ      and      1 − FPR ≤ e^ε · FNR + δ,

so every test certifies

    ε ≥ max( log((1 − δ − FNR) / FPR),  log((1 − δ − FPR) / FNR) ).                                  (1)

**From trials to a bound with confidence.** The true rates are unknown; we observe FP false positives among
n₀ independent releases on D and FN false negatives among n₁ independent releases on D′. The right-hand side of
(1) decreases in both FPR and FNR, so replacing them by *upper* confidence bounds keeps it a valid lower bound.
We use one-sided Clopper–Pearson (exact binomial) upper bounds

    FPR_ub = Beta⁻¹(c′; FP + 1, n₀ − FP)       (1 when FP = n₀),

and likewise FNR_ub, each at level c′ = √c. The two counts come from disjoint, independent sets of trials, so
both bounds hold together with probability c′·c′ = c (the stated confidence, default 95 %); on that event
both logs in (1) are valid at once, so taking their maximum costs nothing. A result of 0 means the trials give
no evidence (ε ≥ 0 holds trivially); it is never negative.

**The multiple-threshold problem.** Picking τ to maximise (1) on the same trials that evaluate it makes the
confidence statement false (the maximum of many noisy bounds is biased upwards). This module *splits* the
trials: τ is chosen on the first ``selection_fraction`` of each side and the bound is evaluated on the rest,
whose counts are then binomial with the chosen τ fixed, so the Clopper–Pearson statement is exact. The
alternative, a union bound over a fixed grid of G thresholds (each at confidence 1 − (1 − c)/G), needs the
grid before the scores are seen — the informative thresholds sit in the far tails, whose location depends on
the unknown noise scale — and pays for every grid point; the split pays a constant factor of two in trials
and needs no grid. A threshold fixed in advance (``threshold=...``) uses all trials for evaluation.

**Under a Gaussian trade-off (Nasr et al. 2023, "Tight Auditing of DP Machine Learning", §5).** The bound
(1) needs FPR ≈ e^−ε to certify ε, so it cannot exceed about log(n) — ≈ 4.8 with 450 evaluation trials per
side, whatever the release does. If the release is assumed to be μ-GDP with a Gaussian trade-off curve —
every test has FNR ≥ Φ(Φ⁻¹(1 − FPR) − μ), as for a composition of Gaussian mechanisms without subsampling,
which every mechanism audit of this benchmark releases — one test's rates give

    μ ≥ Φ⁻¹(1 − FPR) − Φ⁻¹(FNR),                                                                      (2)

and μ converts to ε at δ exactly (:func:`~dpgen_bench.privacy.accounting.analytic_gaussian_epsilon`). With
the same Clopper–Pearson upper bounds and selection split, :func:`gdp_threshold_bound` gives μ̲ and ε(μ̲, δ):
a bound that reaches past 30 with a few hundred trials, but is only as valid as that assumption (a
thresholded histogram such as Private Evolution's is post-processing of a Gaussian, so its curve lies above
the Gaussian one and (2) stays conservative; a Poisson-subsampled release is not Gaussian-shaped).

Trials must be independent: every release must draw fresh noise. (A release that reuses its noise is not
private anyway; the audit then sees identical outputs and reports the largest ε the trials can certify.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta, norm

from dpgen_bench.privacy.accounting import analytic_gaussian_epsilon

DEFAULT_CONFIDENCE = 0.95


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


def _check_counts(k, n) -> tuple[np.ndarray, np.ndarray]:
    k, n = np.asarray(k), np.asarray(n)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k!r}, n={n!r}")
    return k.astype(float), n.astype(float)


def clopper_pearson_upper(k, n, confidence: float = DEFAULT_CONFIDENCE):
    """One-sided Clopper–Pearson upper bound p̄ on a binomial rate: P[p ≤ p̄] ≥ ``confidence`` for k successes
    in n trials. p̄ = Beta⁻¹(c; k + 1, n − k), and 1 when k = n. Vectorised over k (and n)."""
    c = _check_confidence(confidence)
    k, n = _check_counts(k, n)
    full = k >= n
    out = beta.ppf(c, k + 1.0, np.where(full, 1.0, n - k))
    out = np.where(full, 1.0, out)
    return float(out) if out.ndim == 0 else out


def clopper_pearson_lower(k, n, confidence: float = DEFAULT_CONFIDENCE):
    """One-sided Clopper–Pearson lower bound p̲: P[p ≥ p̲] ≥ ``confidence``. p̲ = Beta⁻¹(1 − c; k, n − k + 1),
    and 0 when k = 0."""
    c = _check_confidence(confidence)
    k, n = _check_counts(k, n)
    none = k <= 0
    out = beta.ppf(1.0 - c, np.where(none, 1.0, k), n - k + 1.0)
    out = np.where(none, 0.0, out)
    return float(out) if out.ndim == 0 else out


def clopper_pearson_interval(k: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval at ``confidence`` ((1 − c)/2 in each tail)."""
    c = _check_confidence(confidence)
    tail = (1.0 + c) / 2.0
    return float(clopper_pearson_lower(k, n, tail)), float(clopper_pearson_upper(k, n, tail))


def epsilon_from_rates(fpr, fnr, delta: float):
    """The right-hand side of (1) for rates (or their upper bounds) ``fpr``, ``fnr``; 0 where it is ≤ 0 or
    undefined (no evidence). Vectorised."""
    fpr, fnr = np.asarray(fpr, dtype=float), np.asarray(fnr, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        num_a, num_b = 1.0 - delta - fnr, 1.0 - delta - fpr
        a = np.where(num_a > 0, np.log(np.where(num_a > 0, num_a, 1.0)) - np.log(fpr), -np.inf)
        b = np.where(num_b > 0, np.log(np.where(num_b > 0, num_b, 1.0)) - np.log(fnr), -np.inf)
    out = np.maximum(np.maximum(a, b), 0.0)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class EpsilonLowerBound:
    """An empirical ε lower bound: with probability ≥ ``confidence`` over the trials, the mechanism is not
    (ε, δ)-DP for any ε < ``epsilon_lower`` (0: no evidence).

    ``threshold`` τ of the test "D′ if score > τ"; ``fpr``/``fnr`` the empirical rates on the evaluation trials
    (``n_negative`` on D, ``n_positive`` on D′), ``fpr_upper``/``fnr_upper`` their one-sided Clopper–Pearson
    upper bounds at √confidence each; ``n_selection`` trials per side chose τ (0: τ fixed in advance);
    ``test`` describes the statistic and the selection rule.
    """

    epsilon_lower: float
    confidence: float
    delta: float
    threshold: float
    fpr: float
    fnr: float
    fpr_upper: float
    fnr_upper: float
    n_negative: int
    n_positive: int
    n_selection: int
    test: str

    def to_dict(self) -> dict:
        return asdict(self)


def _error_counts(neg: np.ndarray, pos: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False positives #{neg > τ} and false negatives #{pos ≤ τ} for each τ."""
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    fp = len(neg) - np.searchsorted(neg_sorted, thresholds, side="right")
    fn = np.searchsorted(pos_sorted, thresholds, side="right")
    return fp, fn


def _upper_rates(neg: np.ndarray, pos: np.ndarray, thresholds: np.ndarray, confidence: float):
    """Error counts (fp, fn) for each τ and their one-sided Clopper–Pearson upper rates at √confidence each
    (the two sides' trials are independent, so both hold together with probability = confidence)."""
    fp, fn = _error_counts(neg, pos, thresholds)
    each = math.sqrt(confidence)
    return fp, fn, clopper_pearson_upper(fp, len(neg), each), clopper_pearson_upper(fn, len(pos), each)


def _selection_split(n_negative: int, n_positive: int, selection_fraction: float) -> tuple[int, int]:
    """How many trials of each side choose τ (the rest evaluate it)."""
    if not 0.0 < selection_fraction < 1.0:
        raise ValueError(f"selection_fraction must be in (0, 1), got {selection_fraction!r}")
    k0, k1 = int(n_negative * selection_fraction), int(n_positive * selection_fraction)
    if min(k0, k1) < 1 or k0 >= n_negative or k1 >= n_positive:
        raise ValueError(f"too few trials ({n_negative}, {n_positive}) to split for threshold selection")
    return k0, k1


def evaluate_threshold(negative, positive, threshold: float, *, delta: float,
                       confidence: float = DEFAULT_CONFIDENCE, n_selection: int = 0,
                       test: str = "score > threshold") -> EpsilonLowerBound:
    """The bound (1) of the fixed test "D′ if score > ``threshold``" on scores of releases on D
    (``negative``) and on D′ (``positive``), with Clopper–Pearson upper bounds at √``confidence`` each.
    ``threshold`` must not depend on these scores (see the module docstring)."""
    c = _check_confidence(confidence)
    neg, pos = np.asarray(negative, dtype=float).ravel(), np.asarray(positive, dtype=float).ravel()
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("need at least one trial on each dataset")
    (fp,), (fn,), (fpr_ub,), (fnr_ub,) = _upper_rates(neg, pos, np.array([float(threshold)]), c)
    fp, fn = int(fp), int(fn)
    return EpsilonLowerBound(
        epsilon_lower=float(epsilon_from_rates(fpr_ub, fnr_ub, delta)), confidence=c, delta=float(delta),
        threshold=float(threshold), fpr=fp / len(neg), fnr=fn / len(pos), fpr_upper=float(fpr_ub),
        fnr_upper=float(fnr_ub), n_negative=len(neg), n_positive=len(pos), n_selection=int(n_selection), test=test,
    )


def select_threshold(negative, positive, *, delta: float, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The τ that maximises the Clopper–Pearson bound (1) *on these scores*, among the midpoints between
    consecutive distinct scores and ±∞ (every distinct split of them). Only valid as a choice for evaluation on
    other trials."""
    c = _check_confidence(confidence)
    neg, pos = np.asarray(negative, dtype=float).ravel(), np.asarray(positive, dtype=float).ravel()
    values = np.unique(np.concatenate([neg, pos]))
    candidates = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2.0, [np.inf]])  # one per distinct split
    _, _, fpr_ub, fnr_ub = _upper_rates(neg, pos, candidates, c)
    bounds = np.atleast_1d(epsilon_from_rates(fpr_ub, fnr_ub, delta))
    best = int(np.argmax(bounds))
    if bounds[best] <= 0:  # no separation: any τ will do; the median keeps the evaluation informative
        return float(np.median(values))
    return float(candidates[best])


def threshold_test_bound(negative, positive, *, delta: float, confidence: float = DEFAULT_CONFIDENCE,
                         threshold: float | None = None, selection_fraction: float = 0.5,
                         statistic: str = "score") -> EpsilonLowerBound:
    """An ε lower bound from scores of independent releases on D (``negative``) and on D′ (``positive``).

    With ``threshold=None`` the first ``selection_fraction`` of each side (in the given order; trials are
    i.i.d.) chooses τ (:func:`select_threshold`) and the rest evaluates it (:func:`evaluate_threshold`);
    a given ``threshold`` (fixed before the trials) uses all of them. ``statistic`` names the score in the
    result's ``test`` description."""
    neg, pos = np.asarray(negative, dtype=float).ravel(), np.asarray(positive, dtype=float).ravel()
    if threshold is not None:
        return evaluate_threshold(neg, pos, threshold, delta=delta, confidence=confidence,
                                  test=f"{statistic} > {float(threshold):.6g} (threshold fixed in advance)")
    k0, k1 = _selection_split(len(neg), len(pos), selection_fraction)
    tau = select_threshold(neg[:k0], pos[:k1], delta=delta, confidence=confidence)
    return evaluate_threshold(
        neg[k0:], pos[k1:], tau, delta=delta, confidence=confidence, n_selection=min(k0, k1),
        test=(f"{statistic} > τ, τ chosen on {k0}+{k1} selection trials, bound evaluated on the other "
              f"{len(neg) - k0}+{len(pos) - k1}"),
    )


# ---------------------------------------------------------------- under a Gaussian trade-off curve, (2)


def gdp_mu_from_rates(fpr, fnr):
    """The right-hand side of (2), Φ⁻¹(1 − FPR) − Φ⁻¹(FNR), for rates (or their upper bounds); 0 where it is
    ≤ 0 (no evidence). Vectorised."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = norm.isf(np.asarray(fpr, dtype=float)) - norm.ppf(np.asarray(fnr, dtype=float))
    out = np.where(np.isfinite(mu), np.maximum(mu, 0.0), 0.0)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class GaussianDPLowerBound:
    """A lower bound on the Gaussian-DP parameter μ of a release assumed to have a Gaussian trade-off curve
    (module docstring, (2)), and the ε it implies at ``delta``: with probability ≥ ``confidence`` over the
    trials, μ ≥ ``mu_lower`` and so ε(δ) ≥ ``epsilon_lower``. The other fields are as in
    :class:`EpsilonLowerBound`."""

    mu_lower: float
    epsilon_lower: float
    confidence: float
    delta: float
    threshold: float
    fpr_upper: float
    fnr_upper: float
    n_negative: int
    n_positive: int
    n_selection: int

    def to_dict(self) -> dict:
        return asdict(self)


def gdp_threshold_bound(negative, positive, *, delta: float, confidence: float = DEFAULT_CONFIDENCE,
                        selection_fraction: float = 0.5) -> GaussianDPLowerBound:
    """μ̲ and ε(μ̲, δ) from scores on D (``negative``) and D′ (``positive``): τ maximises (2) with
    Clopper–Pearson upper rates (√``confidence`` each) on the first ``selection_fraction`` of each side and
    is evaluated on the rest, as in :func:`threshold_test_bound`. Valid only under the Gaussian trade-off
    assumption of the module docstring."""
    c = _check_confidence(confidence)
    neg, pos = np.asarray(negative, dtype=float).ravel(), np.asarray(positive, dtype=float).ravel()
    k0, k1 = _selection_split(len(neg), len(pos), selection_fraction)
    values = np.unique(np.concatenate([neg[:k0], pos[:k1]]))
    candidates = (values[:-1] + values[1:]) / 2.0 if len(values) > 1 else values
    _, _, fpr_sel, fnr_sel = _upper_rates(neg[:k0], pos[:k1], candidates, c)
    tau = float(candidates[int(np.argmax(np.atleast_1d(gdp_mu_from_rates(fpr_sel, fnr_sel))))])
    _, _, (fpr_ub,), (fnr_ub,) = _upper_rates(neg[k0:], pos[k1:], np.array([tau]), c)
    mu = gdp_mu_from_rates(fpr_ub, fnr_ub)
    return GaussianDPLowerBound(
        mu_lower=float(mu), epsilon_lower=analytic_gaussian_epsilon(float(mu), delta), confidence=c,
        delta=float(delta), threshold=tau, fpr_upper=float(fpr_ub), fnr_upper=float(fnr_ub),
        n_negative=len(neg) - k0, n_positive=len(pos) - k1, n_selection=min(k0, k1),
    )
