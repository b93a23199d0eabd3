"""Noise calibration: the smallest noise multiplier σ whose planned events spend at most the target ε.

A *plan* is a function σ → events: what a method will release if it uses noise multiplier σ (relative to
each mechanism's L2 sensitivity). :func:`calibrate` returns σ such that, with the chosen backend,

    epsilon(plan(σ), δ) ≤ target ε    and    epsilon(plan(σ·(1 − rtol)), δ) > target ε,

both checked with the backend itself (the same call the runner uses to re-check a ledger), so the
guarantee never rests on an approximation.

How it is fast: the root is first located with a cheap *guide* (for a backend declared ``discretised``, such
as the two PRV ones, the same PRV computation on a 10× coarser grid with a fixed domain; for any other, e.g.
RDP and GDP, the backend itself, which is cheap),
then the backend is evaluated at the guide's answer and one point rtol below it. When the guide is right
(the usual case) that is two accurate evaluations; otherwise a monotone bisection on the backend finishes
the job. A backend's numerical failure counts as "too little noise".
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy.fft import next_fast_len
from scipy.optimize import brentq

from .accounting import (
    PRV_DELTA_ERROR_FRACTION,
    PRV_EPS_ERROR,
    AccountingError,
    UnsupportedEventError,
    analytic_gaussian_epsilon,
    epsilon,
    get_accountant,
    merge_gaussians,
    subsampling_accountants,
    to_history,
)
from .budget import PrivacyBudget
from .events import Event, GaussianEvent

Plan = Callable[[float], "Event | Iterable[Event]"]
"""σ → the events a method would perform with noise multiplier σ (relative to L2 sensitivity)."""

DEFAULT_RTOL = 1e-3
"""Default relative tolerance on σ: the returned σ is within 0.1 % of the smallest feasible one."""

SIGMA_MIN = 1e-3
SIGMA_MAX = 1e6
"""Search range for σ. A budget that needs σ > SIGMA_MAX is reported as unreachable (Opacus uses 1e6 too)."""

_MAX_BACKEND_EVALS = 200


class CalibrationError(ValueError):
    """The target budget cannot be met inside the σ search range (e.g. ε too small for any σ ≤ SIGMA_MAX)."""


def _guide_for(accountant: str, plan: Plan, delta: float) -> tuple[Callable[[float], float], float]:
    """(guide, aim): a cheap σ → ε stand-in for the backend, and how far above its root (relative, in units of
    rtol) to place the first accurate probe. The coarse PRV guide is off by ~1e-4 relative, the exact
    closed forms not at all."""
    if get_accountant(accountant).discretised:
        # Any guide only *locates* σ (the backend itself has the last word), so the coarse PRV serves every
        # discretised backend, not only the two built-in ones it mirrors.
        return _memoised(_CoarsePRV(plan, delta)), 0.25

    def exact(sigma: float) -> float:
        try:
            return epsilon(plan(sigma), delta, accountant)
        except AccountingError:
            return math.inf

    return _memoised(exact), 0.01


def _memoised(fn: Callable[[float], float]) -> Callable[[float], float]:
    cache: dict[float, float] = {}

    def wrapped(sigma: float) -> float:
        if sigma not in cache:
            cache[sigma] = fn(sigma)
        return cache[sigma]

    return wrapped


class _CoarsePRV:
    """The PRV upper bound on a 10× coarser grid: a cheap stand-in used only to *locate* σ.

    Same construction as Opacus's PRV accountant (Gopi et al. 2021: discretise each privacy-loss variable
    on an aligned grid, shift it to the continuous mean, compose by FFT), with three shortcuts that make it
    ~10× cheaper and ~1e-4 (relative) less accurate: ``eps_error`` = 0.1 instead of 0.01 (a 10× coarser
    grid); the PRV mean by Gauss–Hermite quadrature instead of adaptive ``quad``; and the truncation domain
    from RDP at a few orders, computed once per σ region. It reports ``find_epsilon(δ − δ_err) + 0.01``,
    i.e. the quantity the accurate backend reports.
    """

    COARSE_EPS_ERROR = 0.1
    _ORDERS = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0)
    _GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(120)

    def __init__(self, plan: Plan, delta: float) -> None:
        self.plan = plan
        self.delta = delta
        self.delta_error = delta * PRV_DELTA_ERROR_FRACTION
        self._domain_sigma = math.inf  # the domain half-width is valid for σ ≥ this
        self._half_width = 0.0

    def _safe_half_width(self, history) -> float:
        """Gopi et al. remark 5.6 (as in Opacus), with RDP at a few orders: any order is a valid bound."""
        from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

        orders = list(self._ORDERS)
        total = sum(n for _, _, n in history)
        rdp = sum(compute_rdp(q=q, noise_multiplier=s, steps=n, orders=orders) for s, q, n in history)
        width, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=self.delta_error / 4)
        for s, q, _ in history:
            one = compute_rdp(q=q, noise_multiplier=s, steps=1, orders=orders)
            e1, _ = get_privacy_spent(orders=orders, rdp=one, delta=self.delta_error / (8 * total))
            width = max(width, e1)
        return max(float(width), PRV_EPS_ERROR) + 3.0

    def _mean(self, sigma: float, q: float) -> float:
        """E[privacy loss] = q·E_{x~N(1,σ²)} ℓ(x) + (1−q)·E_{x~N(0,σ²)} ℓ(x), ℓ(x) = log(1 − q + q·e^{(2x−1)/(2σ²)})."""
        x = sigma * self._GH_NODES
        w = self._GH_WEIGHTS / math.sqrt(2 * math.pi)

        def loss(x):
            z = (2 * x - 1) / (2 * sigma**2)
            return np.logaddexp(math.log1p(-q) if q < 1 else -np.inf, math.log(q) + z)

        return float(q * np.dot(w, loss(x + 1.0)) + (1 - q) * (np.dot(w, loss(x)) if q < 1 else 0.0))

    def __call__(self, sigma: float) -> float:
        from opacus.accountants.analysis.prv import (
            DiscretePRV,
            Domain,
            PoissonSubsampledGaussianPRV,
            compose_heterogeneous,
        )

        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if sigma < self._domain_sigma:
                    # The safe domain shrinks as σ grows; compute it with margin so nearby σ reuse it.
                    self._domain_sigma = sigma / 1.5
                    self._half_width = self._safe_half_width(
                        merge_gaussians(to_history(self.plan(self._domain_sigma)))
                    )
                history = merge_gaussians(to_history(self.plan(sigma)))
                if not history:
                    return 0.0
                steps = [n for _, _, n in history]
                ee = self.COARSE_EPS_ERROR
                mesh = ee / math.sqrt(sum(steps) * math.log(12 / self.delta_error) / 2)
                domain = Domain.create_aligned(-self._half_width, self._half_width, mesh)
                # Pad to an FFT-friendly (even) length: pocketfft is slow on sizes with large prime factors.
                size = next_fast_len(domain.size, real=True)
                while size % 2 or (size - domain.size) % 2:
                    size = next_fast_len(size + 1, real=True)
                # Grow both ends equally: the FFT self-composition assumes a domain centred on 0.
                pad = (size - domain.size) // 2
                domain = Domain(domain.t_min - pad * domain.dt, domain.t_max + pad * domain.dt, size)
                ts = domain.ts
                dprvs = []
                for s, q, _ in history:
                    prv = PoissonSubsampledGaussianPRV(q, s)
                    cdf = prv.cdf(np.concatenate([ts - domain.dt / 2, ts[-1:] + domain.dt / 2]))
                    pmf = np.diff(cdf)
                    pmf = pmf / pmf.sum()
                    shift = self._mean(s, q) - float(np.dot(ts, pmf))
                    dprvs.append(DiscretePRV(pmf=pmf, domain=domain.shift_right(shift)))
                dprv = compose_heterogeneous(dprvs, steps)
                _, _, upper = dprv.compute_epsilon(self.delta, self.delta_error, ee)
            value = float(upper) - ee + PRV_EPS_ERROR
        except (RuntimeError, ValueError, FloatingPointError, OverflowError, MemoryError):
            return math.inf
        return value if math.isfinite(value) else math.inf


def _clt_start(plan: Plan, target: float, delta: float) -> float:
    """A rough starting σ from the Gaussian (CLT) approximation of the plan: μ² = Σ n/σ² + Σ q²n(e^{1/σ²} − 1).

    Optimistic for subsampled runs, so usually a little below the answer; only a starting point.
    """

    def mu(sigma: float) -> float:
        total = 0.0
        for s, q, n in to_history(plan(sigma)):
            total += n / s**2 if q == 1.0 else q * q * n * math.expm1(min(1.0 / s**2, 700.0))
        return math.sqrt(total)

    try:
        lo, hi = math.log(SIGMA_MIN), math.log(SIGMA_MAX)

        def g(log_s: float) -> float:
            return analytic_gaussian_epsilon(mu(math.exp(log_s)), delta) - target

        if g(lo) <= 0 or g(hi) >= 0:
            return 1.0
        return math.exp(brentq(g, lo, hi, xtol=1e-3))
    except (ValueError, OverflowError, ZeroDivisionError, AccountingError):
        return 1.0


def _locate(
    guide: Callable[[float], float], target: float, start: float, sigma_min: float, sigma_max: float, xtol: float
) -> float | None:
    """The σ where guide(σ) crosses target: bracket from ``start`` (first step predicted from ε ∝ 1/σ, then
    doubling), then Brent's method in log σ.

    None if no crossing inside [sigma_min, sigma_max].
    """
    big = 1e12  # stand-in for ∞ so Brent's method sees a sign, not a NaN

    def g(log_s: float) -> float:
        v = guide(math.exp(log_s)) - target
        return min(v, big)

    a = math.log(min(max(start, sigma_min), sigma_max))
    ga = g(a)
    # First step: ε is roughly ∝ 1/σ, so |log(ε/target)| predicts the distance in log σ; take 1.5× that
    # to land on the other side, then widen ×2 per miss.
    step = min(max(1.5 * abs(math.log(max(ga + target, 1e-12) / target)), 0.005), 0.5) if ga < big else 0.2
    if ga > 0:  # too little noise at start: walk up
        while True:
            b = min(a + step, math.log(sigma_max))
            gb = g(b)
            if gb <= 0:
                lo, hi = a, b
                break
            if b >= math.log(sigma_max):
                return None
            a, step = b, step * 2
    else:  # enough noise at start: walk down
        b = a
        while True:
            a = max(b - step, math.log(sigma_min))
            ga = g(a)
            if ga > 0:
                lo, hi = a, b
                break
            if a <= math.log(sigma_min):
                return None
            b, step = a, step * 2
    if g(hi) == 0:
        return math.exp(hi)
    return math.exp(brentq(g, lo, hi, xtol=xtol))


def check_reachable(plan: Plan, budget: PrivacyBudget, *, sigma_max: float = SIGMA_MAX) -> None:
    """Raise the :class:`CalibrationError` :func:`calibrate` would raise for an unreachable target, without
    the search: one backend evaluation, at ``sigma_max``.

    More noise never costs more privacy (the plan is monotone), so the target is reachable exactly when
    ``epsilon(plan(sigma_max), budget.delta) ≤ budget.epsilon``. Used to refuse a configuration before
    anything trains (the full calibration runs later, in ``fit``).

    Raises:
        ValueError: non-private budget or ``sigma_max`` not finite and > 0.
        CalibrationError: the target is unreachable (same message as :func:`calibrate`'s).
        UnsupportedEventError: the backend cannot account the plan's events (as in :func:`calibrate`).
    """
    _check_budget(budget)
    if not (0.0 < sigma_max < math.inf):
        raise ValueError(f"sigma_max must be finite and > 0, got {sigma_max!r}")
    _check_supported(plan, budget.accountant)
    try:
        spent = epsilon(plan(sigma_max), budget.delta, budget.accountant)
    except AccountingError:  # numerical failure counts as too little noise, as in calibrate
        spent = math.inf
    if spent > budget.epsilon:
        raise _unreachable(budget, sigma_max, spent)


def _check_budget(budget: PrivacyBudget) -> None:
    if not isinstance(budget, PrivacyBudget):
        raise TypeError(f"budget must be a PrivacyBudget, got {budget!r}")
    if not budget.is_private:
        raise ValueError(f"cannot calibrate noise for a non-private budget (epsilon={budget.epsilon}); use no noise")


def _check_supported(plan: Plan, accountant: str) -> None:
    """UnsupportedEventError up front (not mid-search, with a σ the user never chose) when the backend cannot
    account the plan's events."""
    if get_accountant(accountant).subsampling:
        return
    rates = sorted({q for _, q, _ in to_history(plan(1.0)) if q != 1.0})
    if rates:
        raise UnsupportedEventError(
            f"the {accountant!r} accountant cannot account Poisson-subsampled events; this plan has "
            f"sample_rate(s) {rates}. Use one of {', '.join(subsampling_accountants())}."
        )


def _unreachable(budget: PrivacyBudget, sigma_max: float, spent: float) -> CalibrationError:
    return CalibrationError(
        f"target epsilon={budget.epsilon} at delta={budget.delta} is unreachable with accountant "
        f"{budget.accountant!r}: even noise_multiplier={sigma_max:g} spends epsilon={spent:.6g}"
    )


def calibrate(
    plan: Plan,
    budget: PrivacyBudget,
    rtol: float = DEFAULT_RTOL,
    *,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
) -> float:
    """Smallest noise multiplier σ (within ``rtol``) with ``epsilon(plan(σ), budget.delta) ≤ budget.epsilon``,
    accounted with ``budget.accountant`` (the backend the runner's ledger re-check uses too).

    Args:
        plan: σ → the events the method would perform (σ > 0, relative to L2 sensitivity). Must be monotone:
            more noise never costs more privacy.
        budget: target (ε, δ) and accountant backend; must be private (finite ε).
        rtol: relative tolerance on σ in (0, 0.5): the result σ satisfies ε(plan(σ)) ≤ ε_target and
            ε(plan(σ·(1 − rtol))) > ε_target, both evaluated with ``budget.accountant``.
        sigma_min, sigma_max: the search range for σ.

    Raises:
        ValueError: bad arguments (non-private budget, rtol out of range, unknown accountant).
        CalibrationError: the target is unreachable (even σ = sigma_max spends more than ε), or is met
            already at σ = sigma_min.
        UnsupportedEventError: the backend cannot account the plan's events (e.g. ``gdp`` + subsampling).
    """
    _check_budget(budget)
    if not (0.0 < rtol < 0.5):
        raise ValueError(f"rtol must be in (0, 0.5), got {rtol!r}")
    if not (0.0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
    _check_supported(plan, budget.accountant)
    accountant = budget.accountant
    target, delta = budget.epsilon, budget.delta

    memo: dict[float, float] = {}

    def spent(sigma: float) -> float:
        """The backend's ε at σ; numerical failure → ∞ (too little noise). Unsupported events still raise."""
        if sigma not in memo:
            if len(memo) >= _MAX_BACKEND_EVALS:
                raise AccountingError(f"calibration did not converge after {_MAX_BACKEND_EVALS} evaluations")
            try:
                memo[sigma] = epsilon(plan(sigma), delta, accountant)
            except AccountingError:
                memo[sigma] = math.inf
        return memo[sigma]

    def unreachable() -> CalibrationError:
        return _unreachable(budget, sigma_max, spent(sigma_max))

    guide, aim = _guide_for(accountant, plan, delta)
    start = min(max(_clt_start(plan, target, delta), sigma_min), sigma_max)
    located = _locate(guide, target, start, sigma_min, sigma_max, xtol=rtol * aim / 4)
    if located is None and spent(sigma_max) > target:
        raise unreachable()
    sigma_hat = min(max(located if located is not None else start, sigma_min), sigma_max)

    lo: float | None = None  # largest σ known to spend > target
    hi: float | None = None  # smallest σ known to spend ≤ target

    def probe(sigma: float) -> None:
        nonlocal lo, hi
        if spent(sigma) <= target:
            hi = sigma if hi is None else min(hi, sigma)
        else:
            lo = sigma if lo is None else max(lo, sigma)

    # Aim a little above the guide's root so both accurate checks usually pass at the first try.
    probe(min(sigma_hat * (1 + rtol * aim), sigma_max))
    while True:
        step = rtol
        while hi is None:  # walk up, widening, until enough noise
            assert lo is not None
            if lo >= sigma_max:
                raise unreachable()
            nxt = min(lo * (1 + step), sigma_max)
            probe(nxt)
            step *= 4
        while lo is None:  # walk down until too little noise
            nxt = hi * (1 - rtol) if step == rtol else hi / (1 + step)
            if nxt < sigma_min:
                probe(sigma_min)
                if lo is None:
                    raise CalibrationError(
                        f"target epsilon={target} at delta={delta} is met already at the smallest noise "
                        f"multiplier searched (sigma_min={sigma_min:g}, epsilon={memo[sigma_min]:.6g}); "
                        f"pass a smaller sigma_min"
                    )
                break
            probe(nxt)
            step *= 4
        # Monotone bisection (geometric) until the bracket is within rtol.
        while hi * (1 - rtol) > lo:
            probe(math.sqrt(lo * hi))
        # The defining check, with the backend itself: σ·(1 − rtol) must spend more than the target.
        check = hi * (1 - rtol)
        if spent(check) > target:
            return hi
        # Non-monotone numerics below the bracket: restart the downward search from the new, smaller hi.
        hi, lo = check, None


def calibrate_gaussian_releases(
    relative_sensitivities: Sequence[float],
    budget: PrivacyBudget,
    rtol: float = DEFAULT_RTOL,
) -> float:
    """σ for k one-shot Gaussian releases that together spend at most ``budget`` (its accountant).

    Release i adds noise with std σ·Δ and has L2 sensitivity sᵢ·Δ, where sᵢ = ``relative_sensitivities[i]``
    and Δ is a common unit (e.g. the per-example embedding norm C); so it is ``GaussianEvent(σ / sᵢ)``.
    Equal sᵢ give equal noise multipliers. Returns σ (noise std in units of Δ).

    Remembered per (sensitivities, budget, rtol, accountant object): an audit repeats the same release
    thousands of times, and each search costs tens of milliseconds of PRV evaluations.
    """
    sens = tuple(float(s) for s in relative_sensitivities)
    if not sens:
        raise ValueError("relative_sensitivities is empty: nothing to calibrate")
    for s in sens:
        if not math.isfinite(s) or s <= 0:
            raise ValueError(f"relative sensitivities must be finite and > 0, got {s!r}")
    if not isinstance(budget, PrivacyBudget):
        raise TypeError(f"budget must be a PrivacyBudget, got {budget!r}")
    # The accountant object (not only its name) is in the key: a backend registered again under the same
    # name is searched afresh.
    return _calibrate_releases(sens, budget, float(rtol), get_accountant(budget.accountant))


@functools.lru_cache(maxsize=256)
def _calibrate_releases(sens: tuple[float, ...], budget: PrivacyBudget, rtol: float, _backend: object) -> float:
    return calibrate(gaussian_releases_plan(sens), budget, rtol)


def gaussian_releases_plan(relative_sensitivities: Sequence[float]) -> Plan:
    """Plan σ → [GaussianEvent(σ / sᵢ)]: the contract of :func:`calibrate_gaussian_releases`."""
    sens = tuple(float(s) for s in relative_sensitivities)

    def plan(sigma: float) -> list[Event]:
        return [GaussianEvent(sigma / s) for s in sens]

    return plan
