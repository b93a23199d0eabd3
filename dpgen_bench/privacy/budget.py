"""The privacy budget (ε, δ) a method is trained at, with the rule that chose δ."""

from __future__ import annotations

import math
from dataclasses import dataclass

NEIGHBOURING = "add/remove-one"
"""The neighbouring relation used everywhere in dpgen-bench (what Opacus's accountants assume)."""


@dataclass(frozen=True)
class PrivacyBudget:
    """A target (ε, δ) under add/remove-one neighbouring.

    ``epsilon`` > 0, or ``math.inf`` for a non-private reference run (no noise, nothing accounted).
    ``delta`` ∈ (0, 1). ``delta_rule`` records how δ was chosen: ``"fixed"`` or ``"1/(n ln n)"``.
    """

    epsilon: float
    delta: float
    delta_rule: str = "fixed"

    def __post_init__(self) -> None:
        eps = float(self.epsilon)
        if math.isnan(eps) or eps <= 0:
            raise ValueError(f"epsilon must be > 0 (or inf for non-private), got {self.epsilon!r}")
        d = float(self.delta)
        if not (0.0 < d < 1.0):
            raise ValueError(f"delta must be in (0, 1), got {self.delta!r}")
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "delta", d)

    @property
    def is_private(self) -> bool:
        """False for the ε = ∞ reference run."""
        return math.isfinite(self.epsilon)

    @classmethod
    def from_rule(cls, epsilon: float, n: int) -> "PrivacyBudget":
        """δ = 1 / (n · ln n) from the private split size n (n ≥ 3)."""
        if n < 3:
            raise ValueError(f"the 1/(n ln n) rule needs n >= 3, got n={n}")
        return cls(epsilon, 1.0 / (n * math.log(n)), "1/(n ln n)")

    @property
    def neighbouring(self) -> str:
        return NEIGHBOURING
