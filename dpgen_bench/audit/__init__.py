"""Empirical privacy audits (docs/audit.md): ε *lower* bounds from a method's real release code.

* :mod:`.bounds` — Clopper–Pearson intervals and the ε lower bound of a threshold test.
* :mod:`.mechanism` — the mechanism audit: many releases on D and D′ = D ∪ {canary}, the likelihood-ratio
  statistic of a Gaussian mechanism, the bound.
* :mod:`.method_audit` — the same through a method's optional ``audit_release`` hook.
* :mod:`.canaries` — worst-case canaries for the release-once methods and Private Evolution.

See ``docs/audit.md``.
"""

from .bounds import (
    DEFAULT_CONFIDENCE,
    EpsilonLowerBound,
    clopper_pearson_interval,
    clopper_pearson_lower,
    clopper_pearson_upper,
    epsilon_from_rates,
    evaluate_threshold,
    select_threshold,
    threshold_test_bound,
)
from .canaries import pe_canary, release_once_canary, with_canary
from .mechanism import MechanismAudit, audit_mechanism, likelihood_ratio_weights
from .method_audit import audit_method, claimed_epsilon, noiseless_difference, supports_audit

__all__ = [
    "DEFAULT_CONFIDENCE", "EpsilonLowerBound", "MechanismAudit", "audit_mechanism", "audit_method",
    "claimed_epsilon", "clopper_pearson_interval", "clopper_pearson_lower", "clopper_pearson_upper",
    "epsilon_from_rates", "evaluate_threshold", "likelihood_ratio_weights", "noiseless_difference", "pe_canary",
    "release_once_canary", "select_threshold", "supports_audit", "threshold_test_bound", "with_canary",
]
