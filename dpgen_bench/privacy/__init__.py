"""The shared privacy-accounting layer: budget, mechanism events, accountants, calibration, ledger.

Every method uses it and nothing computes ε on its own. Neighbouring relation: add/remove one example,
everywhere. Noise multipliers σ are relative to each mechanism's L2 sensitivity (noise std = σ · Δ).
"""

from .accounting import (
    ACCOUNTANTS,
    DEFAULT_ACCOUNTANT,
    AccountingError,
    UnsupportedEventError,
    accountant_tolerance,
    analytic_gaussian_epsilon,
    epsilon,
    to_history,
)
from .budget import DELTA_RULE, NEIGHBOURING, SPEND_RTOL, PrivacyBudget
from .calibration import (
    DEFAULT_RTOL,
    CalibrationError,
    calibrate,
    calibrate_gaussian_releases,
    gaussian_releases_plan,
)
from .events import (
    ComposedEvent,
    Event,
    GaussianEvent,
    PoissonSubsampledGaussianEvent,
    event_from_dict,
    events_from_json,
    events_to_json,
    flatten,
)
from .ledger import LedgerEntry, PrivacyLedger
from .noise import gaussian_noise, public_generator, release_generator
from .plans import dpsgd_plan, dpsgd_plan_from_settings, dpsgd_steps, sample_rate, steps_per_epoch

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ACCOUNTANT",
    "DEFAULT_RTOL",
    "DELTA_RULE",
    "NEIGHBOURING",
    "AccountingError",
    "CalibrationError",
    "ComposedEvent",
    "Event",
    "GaussianEvent",
    "LedgerEntry",
    "PoissonSubsampledGaussianEvent",
    "PrivacyBudget",
    "PrivacyLedger",
    "UnsupportedEventError",
    "accountant_tolerance",
    "SPEND_RTOL",
    "analytic_gaussian_epsilon",
    "calibrate",
    "calibrate_gaussian_releases",
    "dpsgd_plan",
    "dpsgd_plan_from_settings",
    "dpsgd_steps",
    "epsilon",
    "event_from_dict",
    "events_from_json",
    "events_to_json",
    "flatten",
    "gaussian_noise",
    "gaussian_releases_plan",
    "public_generator",
    "release_generator",
    "sample_rate",
    "steps_per_epoch",
    "to_history",
]
