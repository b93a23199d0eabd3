"""The privacy budget (ε, δ, accountant) a method is trained at, with the rule that chose δ.

The accountant travels with the budget: calibration (:func:`~dpgen_bench.privacy.calibration.calibrate`) and
the ledger re-check (:meth:`~dpgen_bench.privacy.ledger.PrivacyLedger.epsilon`) both read
``budget.accountant``, so they can never use different backends, and no method carries an accountant setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .accounting import DEFAULT_ACCOUNTANT, check_delta, get_accountant

NEIGHBOURING = "add/remove-one"
"""The neighbouring relation used everywhere in dpgen-bench (what Opacus's accountants assume, and what every
registered accountant must assume): recorded in every results row and every CLI output."""

DELTA_RULE = "1/(n ln n)"
"""The one supported δ rule: δ = 1 / (n̂ · ln n̂), n̂ the *declared* (public) size of the private split."""

SPEND_RTOL = 1e-9
"""A recomputed spend may exceed the target by this relative amount (float rounding) and no more.

Calibration returns a σ whose ε is ≤ target with the budget's own backend, and the PRV backends already
report an upper bound, so any larger excess means the method released more than it planned."""


@dataclass(frozen=True)
class PrivacyBudget:
    """A target (ε, δ) under add/remove-one neighbouring, accounted with ``accountant``.

    ``epsilon`` > 0, or ``math.inf`` for a non-private reference run (no noise, nothing accounted).
    ``delta`` ∈ (0, 1). ``delta_rule`` records how δ was chosen: ``"fixed"`` or ``"1/(n ln n)"``.
    ``accountant``: a backend name registered in :data:`~dpgen_bench.privacy.accounting.ACCOUNTANTS` (default
    :data:`~dpgen_bench.privacy.accounting.DEFAULT_ACCOUNTANT`).
    """

    epsilon: float
    delta: float
    delta_rule: str = "fixed"
    accountant: str = DEFAULT_ACCOUNTANT

    def __post_init__(self) -> None:
        eps = float(self.epsilon)
        if math.isnan(eps) or eps <= 0:
            raise ValueError(f"epsilon must be > 0 (or inf for non-private), got {self.epsilon!r}")
        d = check_delta(self.delta)
        get_accountant(self.accountant)  # UnknownAccountantError (a ValueError) lists the registered names
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "delta", d)

    @property
    def is_private(self) -> bool:
        """False for the ε = ∞ reference run."""
        return math.isfinite(self.epsilon)

    @classmethod
    def from_rule(cls, epsilon: float, nominal_size: int, accountant: str = DEFAULT_ACCOUNTANT) -> "PrivacyBudget":
        """δ = 1 / (n̂ · ln n̂) from the *declared* size n̂ ≥ 3 of the private split (never its actual length,
        which is private under add/remove neighbouring)."""
        if isinstance(nominal_size, bool) or int(nominal_size) != nominal_size or nominal_size < 3:
            raise ValueError(f"the {DELTA_RULE} rule needs a declared size n >= 3, got n={nominal_size!r}")
        n = int(nominal_size)
        return cls(epsilon, 1.0 / (n * math.log(n)), DELTA_RULE, accountant)

    @classmethod
    def from_setting(cls, epsilon: float, delta: float | str, nominal_size: int,
                     accountant: str = DEFAULT_ACCOUNTANT) -> "PrivacyBudget":
        """The budget of a config's ``delta`` setting: a value in (0, 1), or the rule :data:`DELTA_RULE`
        applied to the declared size ``nominal_size``."""
        if isinstance(delta, str):
            if delta != DELTA_RULE:
                raise ValueError(f"delta must be a value in (0, 1) or the rule {DELTA_RULE!r}, got {delta!r}")
            return cls.from_rule(epsilon, nominal_size, accountant)
        return cls(epsilon, float(delta), "fixed", accountant)

    def admits(self, spent: float) -> bool:
        """Whether a recomputed spend ``spent`` stays within ε (up to :data:`SPEND_RTOL`); False for NaN."""
        return bool(spent <= self.epsilon * (1.0 + SPEND_RTOL))

    @property
    def neighbouring(self) -> str:
        return NEIGHBOURING
