"""The generic mechanism audit: an ε lower bound for *any* registered method, plugins included, with no hook.

    for i in 1..trials:   fit a fresh instance on D, and one on D′ = D ∪ {canary}      (fresh noise each fit)
    release             = everything the fit leaves behind: its ``checkpoint_state()`` tensors, flattened
                          (``sample()`` output only for a method whose checkpoint holds no tensor)
    statistic, bound    = :func:`~dpgen_bench.audit.mechanism.audit_mechanism`: w = Σ̂⁻¹Δ̂ learnt on a calibration
                          half of the trials, τ chosen on half of the rest, Clopper–Pearson on the other half
                          (:mod:`dpgen_bench.audit.bounds`)

**What it audits.** The whole fit, as a black box with a white-box view of its output: a checkpoint is
post-processing of everything the fit released, so an implementation that records σ but adds σ/10, or clips
nothing, leaves a checkpoint that tells D from D′ more often than its ε allows. The claim compared with is
the ε its ledger records for that fit (``ledger.epsilon(budget)``).

**Sizes.** Each trial is a whole ``fit``: the method is configured with its benchmark config overlaid with
its :attr:`audit_config` class attribute if it declares one, else its ``conformance_config`` (which makes
``fit`` take seconds on a tiny dataset), on D = the first few train examples, declared as their own size.

**The canary.** The method's ``audit_canary(data)`` hook if it has one (the worst case it knows); otherwise
:data:`OUTLIER_RULE`: the all-ones (white) image in class 0 — far from every natural image, and with pixels in
[0, 1] the example of largest norm, so for a sum or mean of pixels it attains the sensitivity.

**Cost and cap.** 2 × ``trials`` fits (plus one timing fit). With ``max_seconds``, the trial count is cut
before any trial runs, from the timing fit, to what fits in the budget (``capped``); below
:data:`MIN_TRIALS` the audit does not run and says so.

**Power.** The statistic is estimated, not known: with d released numbers and k calibration trials its
power falls as d/k grows, so for a large checkpoint (a network) a correct *and* a broken method can both
stay unflagged — a bound of 0 is then "no evidence", never "verified". A small release (a noisy mean) is
audited sharply: ``tests/test_audit_generic.py`` requires a toy that adds a tenth of its noise to be flagged
and its honest twin not to be, over several repeats.

**The Gaussian-trade-off bound** (:func:`~dpgen_bench.audit.bounds.gdp_threshold_bound`) is reported only
where it holds: every event of the fit's ledger is a Gaussian mechanism without subsampling (a
:class:`~dpgen_bench.privacy.events.GaussianEvent`, or DP-SGD at q = 1); the checkpoint is post-processing of
their composition, whose trade-off curve then lies above the Gaussian one, so the bound stays conservative.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import GaussianEvent, flatten
from dpgen_bench.privacy.ledger import PrivacyLedger

from .bounds import DEFAULT_CONFIDENCE
from .canaries import with_canary
from .mechanism import MechanismAudit, audit_mechanism

MIN_TRIALS = 20
"""Fewest trials per dataset the generic audit runs (half calibrate, a quarter choose τ, a quarter evaluate)."""
OUTLIER_RULE = "outlier: the all-ones image in class 0"
"""The canary of a method without an ``audit_canary`` hook."""
SAMPLE_RELEASE = 64
"""Samples drawn (seed 0) as the release of a method whose checkpoint holds no tensor."""


def audit_config(method_cls: type) -> dict[str, Any]:
    """The audit-sized config overrides of ``method_cls``: its ``audit_config`` attribute if it declares one,
    else its ``conformance_config`` (empty if neither)."""
    declared = method_cls.audit_config
    return dict(declared if declared is not None else method_cls.conformance_config or {})


def generic_canary(method, data: ImageDataset) -> tuple[torch.Tensor, int, str]:
    """(image, label, rule): the method's ``audit_canary(data)`` hook if present, else :data:`OUTLIER_RULE`."""
    if method.audit_canary is not None:
        image, label = method.audit_canary(data)
        return image, int(label), "the method's audit_canary"
    return torch.ones(*data.info.shape), 0, OUTLIER_RULE


def release_vector(method) -> tuple[torch.Tensor, str]:
    """Everything a fitted ``method`` leaves behind as one float64 vector, and what it is (``checkpoint`` or
    ``samples``): its checkpoint tensors, flattened and concatenated; ``sample()`` output if it has none."""
    from dpgen_bench.conformance.checks import tensors_in

    parts = [t.detach().to("cpu", torch.float64).flatten() for t in tensors_in(method.checkpoint_state())]
    parts = [p for p in parts if p.numel()]
    if parts:
        kind, x = "checkpoint", torch.cat(parts)
    else:
        kind, x = "samples", method.sample(SAMPLE_RELEASE, seed=0)[0].to(torch.float64).flatten()
    return torch.nan_to_num(x, nan=0.0, posinf=1e12, neginf=-1e12), kind


def gaussian_tradeoff_holds(events) -> bool:
    """Whether every leaf event is a Gaussian mechanism without subsampling (q = 1 counts as none), so that
    the Gaussian-trade-off bound is valid for a release that is post-processing of them."""
    leaves = flatten(list(events))
    return bool(leaves) and all(isinstance(e, GaussianEvent) or e.sample_rate >= 1.0 for e in leaves)


@dataclass(frozen=True)
class GenericAudit:
    """The result of :func:`audit_any_method`.

    ``result``: the mechanism audit (None if the budget cap left fewer than :data:`MIN_TRIALS` trials; then
    ``reason`` says so); ``trials_requested`` / ``trials`` per dataset, ``capped`` whether ``max_seconds`` cut
    them; ``fit_seconds`` the timing fit's wall time, ``estimated_seconds`` = 2 × trials × fit_seconds;
    ``release`` ``checkpoint`` or ``samples`` and ``release_size`` its length; ``gaussian_tradeoff`` whether the
    Gaussian-trade-off bound holds (:func:`gaussian_tradeoff_holds`); ``canary`` the rule that chose it;
    ``claimed_epsilon`` the ledger's ε of one fit; ``config`` the method config of every fit."""

    result: MechanismAudit | None
    claimed_epsilon: float
    trials_requested: int
    trials: int
    capped: bool
    fit_seconds: float
    estimated_seconds: float
    release: str
    release_size: int
    gaussian_tradeoff: bool
    canary: str
    config: dict[str, Any]
    reason: str | None = None

    @property
    def flagged(self) -> bool | None:
        return None if self.result is None else self.result.violation

    @property
    def flagged_gdp(self) -> bool | None:
        if self.result is None or not self.gaussian_tradeoff:
            return None
        return self.result.gdp_violation


def audit_any_method(
    method_cls: type,
    data: ImageDataset,
    budget: PrivacyBudget,
    *,
    trials: int,
    config: dict[str, Any] | None = None,
    max_seconds: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    context: RunContext | None = None,
    seed: int = 0,
    progress: bool = False,
    instantiate: Callable[..., Any] | None = None,
) -> GenericAudit:
    """The generic mechanism audit of ``method_cls`` on D = ``data`` (module docstring).

    ``config``: the method config of every fit (default: :func:`audit_config`); ``trials`` fits per dataset,
    cut to fit ``max_seconds`` (wall time of all trials, estimated from one timing fit); every fit uses
    ``seed`` (public initialisation; the release noise is fresh OS entropy every fit, so trials are
    independent) and ``context`` (e.g. the method's public data, pre-trained on as in its cells).
    ``instantiate(config, info, seed=, context=)`` builds an instance (default ``method_cls``)."""
    if not budget.is_private:
        raise ValueError("a non-private budget has nothing to audit")
    if trials < MIN_TRIALS:
        raise ValueError(f"trials must be >= {MIN_TRIALS}, got {trials}")
    config = audit_config(method_cls) if config is None else dict(config)
    context = context if context is not None else RunContext(progress=False)
    make = instantiate or method_cls
    info: DatasetInfo = data.info

    def fitted(d: ImageDataset, ledger: PrivacyLedger | None = None):
        method = make(config, info, seed=seed, context=context)
        method.fit(d, budget, ledger if ledger is not None else PrivacyLedger())
        return method

    image, label, rule = generic_canary(make(config, info, seed=seed, context=context), data)
    neighbour = with_canary(data, image, label)
    ledger = PrivacyLedger()
    t0 = time.perf_counter()
    first = fitted(data, ledger)
    x, kind = release_vector(first)
    fit_seconds = time.perf_counter() - t0
    if not len(ledger):
        raise RuntimeError(f"{getattr(method_cls, 'name', '') or method_cls.__name__} recorded nothing in a "
                           f"private fit: there is no claim to audit")
    claim = ledger.epsilon(budget)
    run = int(trials)
    if max_seconds is not None and 2 * trials * fit_seconds > max_seconds:
        run = int(max_seconds // (2 * max(fit_seconds, 1e-9)))
    common = dict(claimed_epsilon=claim, trials_requested=int(trials), capped=run < trials,
                  fit_seconds=fit_seconds, release=kind, release_size=int(x.numel()),
                  gaussian_tradeoff=gaussian_tradeoff_holds(ledger.events), canary=rule, config=config)
    if run < MIN_TRIALS:
        return GenericAudit(result=None, trials=run, estimated_seconds=2 * trials * fit_seconds,
                            reason=(f"{trials} trials would take ~{2 * trials * fit_seconds:.0f} s "
                                    f"(2 × {trials} fits × {fit_seconds:.2f} s), the cap max_seconds={max_seconds:g} "
                                    f"allows {run} < {MIN_TRIALS}"), **common)
    result = audit_mechanism(
        lambda d: release_vector(fitted(d))[0], data, neighbour, trials=run, delta=budget.delta,
        confidence=confidence, calibration_fraction=0.5, claimed_epsilon=claim, progress=progress,
        desc=f"generic audit {getattr(method_cls, 'name', '') or method_cls.__name__}",
    )
    return GenericAudit(result=result, trials=run, estimated_seconds=2 * run * fit_seconds, **common)


def seconds_per_trial(audit: GenericAudit) -> float:
    """Measured wall time per fit of a finished audit (its two datasets' trials together), or the timing fit's."""
    if audit.result is None or not audit.trials:
        return audit.fit_seconds
    return audit.result.seconds / (2 * audit.trials)


__all__ = ["GenericAudit", "MIN_TRIALS", "OUTLIER_RULE", "audit_any_method", "audit_config", "gaussian_tradeoff_holds",
           "generic_canary", "release_vector", "seconds_per_trial"]
