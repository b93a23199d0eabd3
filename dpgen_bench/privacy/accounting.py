"""ε of a history of mechanism events, with one of the registered accountant backends.

One function, :func:`epsilon`, turns events and δ into ε. Every ε in dpgen-bench comes from here
(add/remove-one neighbouring throughout, which is what every backend must assume).

Backends are :class:`Accountant` entries of the registry :data:`ACCOUNTANTS`; :func:`register_accountant`
adds one from user code (it is then usable in ``PrivacyBudget(..., accountant=name)``, a benchmark config's
``accountant`` and ``dpgen-bench privacy --accountant``). Built in:

* ``"prv"`` (default) — Opacus's port of the PRV accountant (Gopi et al. 2021). Returns the *upper bound*
  of its estimate at ``eps_error`` = 0.01 and ``delta_error`` = δ/1000. Handles any mix of one-shot
  Gaussian releases and Poisson-subsampled Gaussian runs. The history is fed to the accountant as is,
  except that the one-shot Gaussian releases are first composed exactly into one (:func:`merge_gaussians`).
* ``"rdp"`` — Opacus's RDP accountant (Mironov 2017, subsampled Gaussian of Mironov et al. 2019) with its
  default orders. An upper bound, looser than PRV.
* ``"prv-accountant"`` — Microsoft's ``prv-accountant`` package (``PRVAccountant`` with
  ``GaussianMechanism`` / ``PoissonSubsampledGaussianMechanism``), upper bound of ``compute_epsilon`` at the
  same ``eps_error``/``delta_error`` as ``"prv"``.
* ``"gdp"`` — the exact ε of a composition of *non-subsampled* Gaussian releases: they compose to one
  Gaussian with μ = sqrt(Σ 1/σᵢ²) (μ-GDP, Dong et al. 2019), whose exact (ε, δ) curve is the analytic
  Gaussian mechanism (Balle & Wang 2018). Subsampled events are refused with
  :class:`UnsupportedEventError`: no exact closed form exists for them.

Opacus's ``GaussianAccountant`` is deliberately absent: it reads only the last history entry.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr

from ..named_registry import Registry, UnknownNameError, origin_of
from .events import Event, GaussianEvent, flatten

DEFAULT_ACCOUNTANT = "prv"
"""The backend used wherever none is named (budgets, benchmark configs, the CLI, the conformance suite)."""

PRV_EPS_ERROR = 0.01
"""Additive ε error of the two PRV backends (the stated error of their upper bound)."""

PRV_DELTA_ERROR_FRACTION = 1e-3
"""δ error of the two PRV backends, as a fraction of δ (Opacus's default δ/1000)."""

_CLOSED_FORM_RTOL = 1e-6
"""Relative error allowed for the closed-form backends (RDP, GDP): floating point and root finding only."""


class AccountingError(RuntimeError):
    """A backend failed numerically for this history (e.g. PRV's "Discrete mean differs ..." at high ε).

    The calibrator treats it as "too little noise"; anywhere else it is an error, never a silent 0 or ∞.
    """


class UnsupportedEventError(ValueError):
    """The chosen backend cannot account this kind of event (e.g. ``gdp`` with Poisson subsampling)."""


class UnknownAccountantError(UnknownNameError):
    """An accountant name that is not registered; the message lists the valid names (KeyError and ValueError)."""


History = list[tuple[float, float, int]]
"""Canonical history: ``(noise_multiplier, sample_rate, steps)`` per distinct (σ, q); q = 1 for a one-shot
Gaussian release. The same layout as Opacus's ``accountant.history``."""


def to_history(events: Event | Iterable[Event]) -> History:
    """Flatten events into the canonical history, merging leaves with equal (σ, q).

    Composition is commutative, so merging is exact; it makes a ledger that recorded 2,000 single steps
    account exactly like a plan that says ``steps=2000`` (and keeps PRV fast). Order of first appearance
    is kept so results are deterministic. A one-shot Gaussian becomes ``(σ, 1.0, 1)``.
    """
    merged: dict[tuple[float, float], int] = {}
    for leaf in flatten(events):
        if isinstance(leaf, GaussianEvent):
            key, steps = (leaf.noise_multiplier, 1.0), 1
        else:
            key, steps = (leaf.noise_multiplier, leaf.sample_rate), leaf.steps
        merged[key] = merged.get(key, 0) + steps
    return [(sigma, q, n) for (sigma, q), n in merged.items()]


def merge_gaussians(history: History) -> History:
    """Replace all non-subsampled Gaussian entries (q = 1) by one Gaussian with σ = (Σ steps/σ²)^(-1/2).

    Exact, not an approximation: composing Gaussian mechanisms gives a Gaussian mechanism with
    μ² = Σ 1/σᵢ² (Dong, Roth & Su 2019, μ-GDP composition), so the privacy-loss distribution is the same.
    The PRV backends get one fewer variable to discretise per release (faster, and less discretisation
    error). The merged entry takes the place of the first Gaussian.
    """
    gauss = [(s, n) for s, q, n in history if q == 1.0]
    if len(gauss) <= 1 and all(n == 1 for _, n in gauss):
        return list(history)
    sigma = sum(n / s**2 for s, n in gauss) ** -0.5
    out: History = []
    for s, q, n in history:
        if q != 1.0:
            out.append((s, q, n))
        elif not any(e[1] == 1.0 for e in out):
            out.append((sigma, 1.0, 1))
    return out


def check_delta(delta: float, name: str = "delta") -> float:
    """δ as a float in the open interval (0, 1); ValueError naming ``name`` and the value otherwise (NaN too).

    The one δ check: budgets, :func:`epsilon`, benchmark configs and the CLI all call it."""
    try:
        d = float(delta)
    except (TypeError, ValueError):
        d = math.nan
    if not (0.0 < d < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {delta!r}")
    return d


# ---------------------------------------------------------------------------------------------------------
# Backends: each is a function (history, delta) -> ε, registered below with its stated error.
# ---------------------------------------------------------------------------------------------------------


def _opacus_prv(history: History, delta: float, eps_error: float = PRV_EPS_ERROR) -> float:
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = merge_gaussians(history)
    try:
        # q = 1 makes Opacus evaluate log(1 - q) = -inf inside its PRV; that is intended, not an error.
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)  # Opacus's RDP domain bound: "optimal order is the largest alpha"
            eps = float(acc.get_epsilon(delta, eps_error=eps_error, delta_error=delta * PRV_DELTA_ERROR_FRACTION))
    except (RuntimeError, ValueError, FloatingPointError, OverflowError) as exc:
        raise AccountingError(f"Opacus PRV accountant failed for history {history} at delta={delta}: {exc}") from exc
    if not math.isfinite(eps):
        raise AccountingError(f"Opacus PRV accountant returned eps={eps} for history {history}")
    return eps


def _opacus_rdp(history: History, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = list(history)
    try:
        # Opacus warns when the best order is its largest; the bound is still valid (just not the tightest),
        # and the default orders are what the reference values in docs/privacy.md use.
        with np.errstate(over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            eps = float(acc.get_epsilon(delta))
    except (RuntimeError, ValueError, FloatingPointError, OverflowError) as exc:
        raise AccountingError(f"Opacus RDP accountant failed for history {history} at delta={delta}: {exc}") from exc
    if not math.isfinite(eps):
        raise AccountingError(f"Opacus RDP accountant returned eps={eps} for history {history}")
    return eps


def _microsoft_prv(history: History, delta: float, eps_error: float = PRV_EPS_ERROR) -> float:
    from prv_accountant import GaussianMechanism, PoissonSubsampledGaussianMechanism, PRVAccountant

    history = merge_gaussians(history)
    prvs = [
        GaussianMechanism(sigma) if q == 1.0 else PoissonSubsampledGaussianMechanism(q, sigma)
        for sigma, q, _ in history
    ]
    steps = [n for _, _, n in history]
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)  # Opacus's RDP domain bound: "optimal order is the largest alpha"
            acc = PRVAccountant(
                prvs=prvs,
                max_self_compositions=steps,
                eps_error=eps_error,
                delta_error=delta * PRV_DELTA_ERROR_FRACTION,
            )
            _, _, eps_upper = acc.compute_epsilon(delta=delta, num_self_compositions=steps)
    except (RuntimeError, ValueError, FloatingPointError, OverflowError, AssertionError) as exc:
        # Known: "Discrete mean differs from continuous mean" in some high-ε settings (docs/privacy.md).
        raise AccountingError(f"prv-accountant failed for history {history} at delta={delta}: {exc}") from exc
    eps_upper = float(eps_upper)
    if not math.isfinite(eps_upper):
        raise AccountingError(f"prv-accountant returned eps={eps_upper} for history {history}")
    return eps_upper


def gaussian_mu(history: History) -> float:
    """μ of the composition of non-subsampled Gaussian releases: sqrt(Σ steps/σ²).

    Raises :class:`UnsupportedEventError` for any Poisson-subsampled entry (q < 1).
    """
    total = 0.0
    for sigma, q, n in history:
        if q != 1.0:
            raise UnsupportedEventError(
                f"the 'gdp' accountant is exact only for non-subsampled Gaussian releases; got a "
                f"Poisson-subsampled event (noise_multiplier={sigma}, sample_rate={q}, steps={n}). "
                f"Use one of {', '.join(subsampling_accountants())}."
            )
        total += n / sigma**2
    return math.sqrt(total)


def analytic_gaussian_delta(eps: float, mu: float) -> float:
    """Exact δ(ε) of a Gaussian mechanism with sensitivity/σ = μ (Balle & Wang 2018, Thm. 8).

    δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2), computed in log space so large ε does not overflow.
    """
    a = log_ndtr(-eps / mu + mu / 2)
    b = eps + log_ndtr(-eps / mu - mu / 2)
    if b >= a:
        return 0.0
    return float(math.exp(a) * -math.expm1(b - a))


def analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Smallest ε ≥ 0 with δ(ε) ≤ δ for a μ-GDP (Gaussian) mechanism; exact up to root-finding (1e-12)."""
    if mu <= 0:
        return 0.0
    if analytic_gaussian_delta(0.0, mu) <= delta:
        return 0.0
    hi = max(1.0, mu * mu)
    while analytic_gaussian_delta(hi, mu) > delta:
        hi *= 2.0
        if hi > 1e8:  # pragma: no cover - only for absurdly small σ
            raise AccountingError(f"analytic Gaussian: eps above 1e8 for mu={mu}, delta={delta}")
    return float(brentq(lambda e: analytic_gaussian_delta(e, mu) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12))


def _gdp(history: History, delta: float) -> float:
    return analytic_gaussian_epsilon(gaussian_mu(history), delta)


@dataclass(frozen=True)
class Accountant:
    """A backend: its name, what it computes, its stated error and what it can account.

    ``compute(history, delta) -> ε``: ``history`` is the canonical :data:`History` (never empty), ``delta`` is
    already checked to lie in (0, 1); it returns ε ≥ 0 under add/remove-one neighbouring, an *upper bound*
    if not exact. It raises :class:`UnsupportedEventError` for events it cannot account and
    :class:`AccountingError` when it fails numerically (never returns NaN or ∞ silently)."""

    name: str
    description: str
    compute: Callable[[History, float], float]
    abs_error: float
    """Stated additive ε error, >= 0 (the PRV backends' eps_error, 0.01)."""
    rel_error: float
    """Stated relative ε error, >= 0 (floating point / root finding for closed forms, 1e-6)."""
    subsampling: bool
    """Whether Poisson-subsampled events are supported (False: only one-shot Gaussian releases)."""
    discretised: bool = False
    """Whether ε comes from a discretised privacy-loss distribution (the PRV backends): each evaluation is
    costly, so :func:`~dpgen_bench.privacy.calibration.calibrate` first locates σ with a cheap coarse-grid PRV
    computation, then checks with this backend. False: the backend is cheap and locates σ itself."""

    def __post_init__(self) -> None:
        if not callable(self.compute):
            raise TypeError(f"accountant {self.name!r}: compute must be a callable (history, delta) -> epsilon")
        for field_name in ("abs_error", "rel_error"):
            value = getattr(self, field_name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"accountant {self.name!r}: {field_name} must be a finite number >= 0, got {value!r}")


ACCOUNTANTS: Registry[Accountant] = Registry("accountant", error=UnknownAccountantError)
"""The accountant backends by name, in registration order (built-ins first, :data:`DEFAULT_ACCOUNTANT` among
them). Add with :func:`register_accountant`; ``ACCOUNTANTS.unregister(name)`` removes."""


def register_accountant(accountant: Accountant, *, origin: str | None = None) -> Accountant:
    """Register ``accountant`` under ``accountant.name``; returns it.

    ``origin`` names the registration if the name is taken twice (default: ``compute``'s module.qualname);
    :class:`~dpgen_bench.named_registry.DuplicateNameError` then names both."""
    if not isinstance(accountant, Accountant):
        raise TypeError(f"register_accountant expects an Accountant, got {type(accountant).__name__}")
    return ACCOUNTANTS.register(accountant.name, accountant, origin=origin or origin_of(accountant.compute))


def get_accountant(name: str) -> Accountant:
    """The backend called ``name``; :class:`UnknownAccountantError` (a ValueError) lists the valid names."""
    return ACCOUNTANTS.get(name)


def list_accountants() -> list[str]:
    """Registered accountant names, in registration order."""
    return ACCOUNTANTS.names()


def subsampling_accountants() -> list[str]:
    """Names of the registered backends that can account Poisson-subsampled (DP-SGD) events: what an error
    message offers instead of one that cannot."""
    return [name for name, acc in ACCOUNTANTS.items() if acc.subsampling]


for _accountant in (
    Accountant(
        "prv",
        "Opacus PRV accountant (Gopi et al. 2021), upper bound at eps_error=0.01, delta_error=delta/1000",
        _opacus_prv,
        abs_error=PRV_EPS_ERROR,
        rel_error=0.0,
        subsampling=True,
        discretised=True,
    ),
    Accountant(
        "rdp",
        "Opacus RDP accountant (Renyi DP, default orders), upper bound",
        _opacus_rdp,
        abs_error=0.0,
        rel_error=_CLOSED_FORM_RTOL,
        subsampling=True,
    ),
    Accountant(
        "prv-accountant",
        "Microsoft prv-accountant PRVAccountant.compute_epsilon upper bound, eps_error=0.01, delta_error=delta/1000",
        _microsoft_prv,
        abs_error=PRV_EPS_ERROR,
        rel_error=0.0,
        subsampling=True,
        discretised=True,
    ),
    Accountant(
        "gdp",
        "exact analytic Gaussian (Balle & Wang 2018) on mu=sqrt(sum 1/sigma^2); non-subsampled Gaussians only",
        _gdp,
        abs_error=0.0,
        rel_error=_CLOSED_FORM_RTOL,
        subsampling=False,
    ),
):
    register_accountant(_accountant, origin=__name__)
del _accountant


def accountant_tolerance(accountant: str, eps: float) -> float:
    """The stated ε error of ``accountant`` at a value ``eps``: ``abs_error + rel_error · max(|ε|, 1)``.

    ``prv`` / ``prv-accountant``: 0.01 (their ``eps_error``; the value they report is already an upper bound).
    ``rdp`` / ``gdp``: 1e-6 · max(ε, 1) (closed forms: floating point and root finding only).
    """
    acc = get_accountant(accountant)
    return acc.abs_error + acc.rel_error * max(abs(float(eps)), 1.0)


def epsilon(events: Event | Iterable[Event], delta: float, accountant: str = DEFAULT_ACCOUNTANT) -> float:
    """ε spent by ``events`` (composed) at ``delta`` under add/remove-one neighbouring.

    Args:
        events: an event, a :class:`ComposedEvent`, or a list of them. Noise multipliers are relative to
            each mechanism's L2 sensitivity.
        delta: target δ in (0, 1).
        accountant: a name registered in :data:`ACCOUNTANTS` (default :data:`DEFAULT_ACCOUNTANT`).

    Returns:
        ε ≥ 0 (0.0 for an empty history). For the PRV backends this is the upper bound of the estimate.

    Raises:
        ValueError: bad δ or accountant name; :class:`UnsupportedEventError` when the backend cannot
            account an event; :class:`AccountingError` when the backend fails numerically.
    """
    acc = get_accountant(accountant)
    delta = check_delta(delta)
    history = to_history(events)
    if not history:
        return 0.0
    return _evaluate(acc, tuple(history), delta)


@functools.lru_cache(maxsize=4096)
def _evaluate(acc: Accountant, history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """``acc.compute`` remembered: a backend is a pure function of (history, δ), and calibration's probes, the
    runner's re-check of a ledger and the conformance suite's plan check evaluate the same histories again
    (an RDP curve at fractional orders costs ~0.2 s, a PRV ~0.5 s). Failures are not remembered."""
    return acc.compute(list(history), delta)
