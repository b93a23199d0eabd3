"""The mechanism audit of a method through its optional ``audit_release`` hook (see ``docs/audit.md``)."""

from __future__ import annotations

import dataclasses
import inspect
import math

import torch

from dpgen_bench.data.types import ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger

from .bounds import DEFAULT_CONFIDENCE
from .mechanism import MechanismAudit, audit_mechanism


def supports_audit(method) -> bool:
    """Whether ``method`` implements the optional ``audit_release(train, budget[, ledger])`` hook
    (:attr:`GenerativeMethod.audit_release <dpgen_bench.method.GenerativeMethod.audit_release>` not None)."""
    return method.audit_release is not None


def claimed_ledger(method, data: ImageDataset, budget: PrivacyBudget) -> PrivacyLedger | None:
    """The ledger of one ``audit_release`` call (None when the hook takes no ``ledger``)."""
    if "ledger" not in inspect.signature(method.audit_release).parameters:
        return None
    ledger = PrivacyLedger()
    method.audit_release(data, budget, ledger=ledger)
    if not len(ledger):
        raise RuntimeError(f"{type(method).__name__}.audit_release recorded nothing at a private budget")
    return ledger


def claimed_epsilon(method, data: ImageDataset, budget: PrivacyBudget) -> float:
    """The ε the ledger claims for what one ``audit_release`` call releases: the events it records (when the
    hook takes a ``ledger``), else the budget's ε."""
    ledger = claimed_ledger(method, data, budget)
    return budget.epsilon if ledger is None else ledger.epsilon(budget)


def noiseless_difference(method, data: ImageDataset, neighbour: ImageDataset, budget: PrivacyBudget) -> torch.Tensor:
    """release(D′) − release(D) with the noise off (``audit_release`` at ε = ∞, which must be exact)."""
    exact = PrivacyBudget(math.inf, budget.delta, accountant=budget.accountant)
    return method.audit_release(neighbour, exact) - method.audit_release(data, exact)


PROJECTED = "projection on the method's audit_direction (fixed before the trials)"
"""The ``direction`` of a :class:`MechanismAudit` whose releases were projected on ``audit_direction``."""


def audit_direction(method, data: ImageDataset, neighbour: ImageDataset) -> torch.Tensor:
    """The method's ``audit_direction(D, D′)`` as a unit float64 vector (ValueError if it is zero or not finite:
    the canary then moves nothing the auditor can see)."""
    u = method.audit_direction(data, neighbour).detach().to("cpu", torch.float64).flatten()
    norm = float(u.norm())
    if not (norm > 0 and math.isfinite(norm)):
        raise ValueError(f"{type(method).__name__}.audit_direction has norm {norm}: the canary moves nothing")
    return u / norm


def audit_method(
    method,
    data: ImageDataset,
    neighbour: ImageDataset,
    budget: PrivacyBudget,
    *,
    trials: int,
    confidence: float = DEFAULT_CONFIDENCE,
    known_difference: bool | None = None,
    project: bool | None = None,
    progress: bool = False,
    **options,
) -> MechanismAudit:
    """:func:`~dpgen_bench.audit.mechanism.audit_mechanism` of ``method.audit_release(·, budget)`` on D and D′.

    ``project`` (None: when the method has ``audit_direction``): score every release by its projection on the
    unit vector u = :func:`audit_direction` — a one-dimensional release, so a trial costs one release and one
    dot product, and thousands of trials fit where the releases are large — with D′ on the side of +u.
    Otherwise ``known_difference``: take Δ from the exact releases (:func:`noiseless_difference`) instead of
    estimating it (only the statistic's power depends on this, never the bound's validity); None (default):
    when the noiseless release is reproducible (two calls agree: no sampling randomness left). The claimed ε is
    :func:`claimed_epsilon`. ``options`` go to ``audit_mechanism``."""
    if not supports_audit(method):
        raise TypeError(f"{type(method).__name__} does not implement audit_release(train, budget)")
    if not budget.is_private:
        raise ValueError("a non-private budget has nothing to audit")
    claim = claimed_epsilon(method, data, budget)
    desc = f"audit {getattr(method, 'name', '') or type(method).__name__}"
    if project is None:
        project = method.audit_direction is not None
    if project:
        u = audit_direction(method, data, neighbour)
        # A one-dimensional statistic: only the sign of Δ matters (D′ lies towards +u), its scale cancels.
        result = audit_mechanism(
            lambda d: (method.audit_release(d, budget).detach().to("cpu", torch.float64) @ u).view(1), data,
            neighbour, trials=trials, delta=budget.delta, confidence=confidence,
            mean_difference=torch.ones(1, dtype=torch.float64), claimed_epsilon=claim, progress=progress,
            desc=desc, **options)
        return dataclasses.replace(result, direction=PROJECTED)
    diff = None
    if known_difference is not False:
        diff = noiseless_difference(method, data, neighbour, budget)
        if known_difference is None and not torch.equal(diff, noiseless_difference(method, data, neighbour, budget)):
            diff = None  # e.g. Poisson sampling at q < 1: the noiseless release is itself random
    return audit_mechanism(
        lambda d: method.audit_release(d, budget), data, neighbour, trials=trials, delta=budget.delta,
        confidence=confidence, mean_difference=diff, claimed_epsilon=claim, progress=progress, desc=desc,
        **options,
    )
