"""The privacy of hyper-parameter tuning with a random number of candidates (Papernot & Steinke, ICLR 2022).

Run K ~ D candidates, each a DP run with RDP curve ε(λ), and output only the best one (the candidate
itself, model and score; never K, the other candidates or their scores). For the truncated negative binomial
D = D_{η,γ} (η > −1, 0 < γ < 1; η = 1 is the geometric distribution, η = 0 the logarithmic) their Theorem 2
gives, for every λ > 1 and λ̂ ≥ 1, that the whole procedure is (λ, ε′)-RDP with

    ε′(λ) = ε(λ) + (1 + η)(1 − 1/λ̂) ε(λ̂) + (1 + η) log(1/γ) / λ̂ + log E[K] / (λ − 1),

    E[K] = η (1 − γ) / (γ (1 − γ^η))   (η ≠ 0),   E[K] = (1/γ − 1) / log(1/γ)   (η = 0).

Here λ̂ is minimised over the order grid (any λ̂ is valid), ε(λ) of a candidate is the RDP of the events
its ledger records (Opacus's RDP of the subsampled Gaussian, composed by addition), and ε′ is converted to
(ε, δ)-DP with Opacus's RDP conversion. :func:`calibrate_candidate_sigma` finds the noise multiplier a
candidate plan needs so that the whole search, tuning included, meets a target (ε, δ).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from .events import GaussianEvent, PoissonSubsampledGaussianEvent, flatten

ORDERS: tuple[float, ...] = tuple([1.25, 1.5, 1.75] + [float(x) for x in range(2, 64)] + [80.0, 96.0, 128.0, 256.0, 512.0])
"""Rényi orders λ (and λ̂) evaluated; all > 1."""


def check_tnb(eta: float, gamma: float) -> None:
    """ValueError unless η > −1 and 0 < γ < 1 (the truncated negative binomial's parameters)."""
    if not (eta > -1 and 0 < gamma < 1):
        raise ValueError(f"truncated negative binomial needs eta > -1 and 0 < gamma < 1, got eta={eta!r}, gamma={gamma!r}")


def tnb_mean(eta: float, gamma: float) -> float:
    """E[K] for K ~ D_{η,γ}."""
    check_tnb(eta, gamma)
    if eta == 0:
        return (1 / gamma - 1) / math.log(1 / gamma)
    return eta * (1 - gamma) / (gamma * (1 - gamma**eta))


def tnb_pmf(k: int, eta: float, gamma: float) -> float:
    """P[K = k], k ≥ 1: ∝ C(k + η − 1, k)(1 − γ)^k (η ≠ 0), (1 − γ)^k / (k log(1/γ)) (η = 0)."""
    check_tnb(eta, gamma)
    if k < 1:
        return 0.0
    if eta == 0:
        return (1 - gamma) ** k / (k * math.log(1 / gamma))
    log_binom = math.lgamma(k + eta) - math.lgamma(eta) - math.lgamma(k + 1)
    return math.exp(log_binom + k * math.log(1 - gamma) + eta * math.log(gamma)) / (1 - gamma**eta)


def sample_tnb(eta: float, gamma: float, generator: torch.Generator) -> int:
    """One K ~ D_{η,γ} by inversion; ``generator`` must be secret (``release_generator()``): K is never released."""
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    k, cdf = 0, 0.0
    while True:
        k += 1
        cdf += tnb_pmf(k, eta, gamma)
        if u <= cdf or k > 10**7:
            return k


def events_rdp(events, orders: Sequence[float] = ORDERS) -> np.ndarray:
    """RDP ε(λ) at ``orders`` of the composition of ``events`` (add/remove-one, sensitivity-relative σ)."""
    from opacus.accountants.analysis.rdp import compute_rdp

    total = np.zeros(len(orders))
    for event in flatten(events):
        if isinstance(event, PoissonSubsampledGaussianEvent):
            total += np.asarray(compute_rdp(q=event.sample_rate, noise_multiplier=event.noise_multiplier,
                                            steps=event.steps, orders=list(orders)), dtype=float)
        elif isinstance(event, GaussianEvent):
            total += np.asarray(orders, dtype=float) / (2 * event.noise_multiplier**2)
        else:  # pragma: no cover - flatten returns only these
            raise TypeError(f"no RDP for event {event!r}")
    return total


def tuning_rdp(candidate_rdp: np.ndarray, eta: float, gamma: float, orders: Sequence[float] = ORDERS) -> np.ndarray:
    """ε′(λ) of the best-of-K search (Theorem 2 above), from one candidate's RDP curve at ``orders``."""
    check_tnb(eta, gamma)
    lam = np.asarray(orders, dtype=float)
    hat = np.min((1 + eta) * (1 - 1 / lam) * candidate_rdp + (1 + eta) * math.log(1 / gamma) / lam)
    return candidate_rdp + hat + math.log(tnb_mean(eta, gamma)) / (lam - 1)


def rdp_epsilon(rdp: np.ndarray, delta: float, orders: Sequence[float] = ORDERS) -> float:
    """(ε, δ)-DP from an RDP curve (Opacus's conversion, minimised over the orders)."""
    from opacus.accountants.analysis.rdp import get_privacy_spent

    eps, _ = get_privacy_spent(orders=list(orders), rdp=list(rdp), delta=delta)
    return float(eps)


def tuning_epsilon(candidate_events, delta: float, eta: float, gamma: float) -> float:
    """ε at ``delta`` of the whole search when each candidate releases ``candidate_events`` ("ε incl. tuning")."""
    return tuning_epsilon_from_rdp(events_rdp(candidate_events), delta, eta, gamma)


def tuning_epsilon_from_rdp(candidate_rdp: np.ndarray, delta: float, eta: float, gamma: float) -> float:
    """ε at ``delta`` of the whole search when every candidate's RDP curve is at most ``candidate_rdp``."""
    return rdp_epsilon(tuning_rdp(candidate_rdp, eta, gamma), delta)


def calibrate_candidate_sigma(plan: Callable[[float], list], epsilon: float, delta: float, eta: float, gamma: float,
                              *, rtol: float = 1e-3, sigma_max: float = 1e6) -> float:
    """The smallest σ (to ``rtol``) at which the search, each candidate releasing ``plan(σ)``, is within
    (``epsilon``, ``delta``); ValueError if even ``sigma_max`` does not get there (log E[K] alone may exceed ε)."""
    if tuning_epsilon(plan(sigma_max), delta, eta, gamma) > epsilon:
        raise ValueError(f"no noise multiplier up to {sigma_max:g} meets ε={epsilon:g} including tuning with "
                         f"eta={eta}, gamma={gamma} (E[K]={tnb_mean(eta, gamma):.3g}); ask for fewer expected candidates")
    lo, hi = 1e-3, sigma_max
    while hi / lo > 1 + rtol:
        mid = math.sqrt(lo * hi)
        if tuning_epsilon(plan(mid), delta, eta, gamma) <= epsilon:
            hi = mid
        else:
            lo = mid
    return hi
