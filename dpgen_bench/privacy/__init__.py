"""The shared privacy-accounting layer: budget, mechanism events, accountants, calibration, ledger.

Every method uses it and nothing computes ε on its own. Neighbouring relation: add/remove one example,
everywhere. Noise multipliers σ are relative to each mechanism's L2 sensitivity (noise std = σ · Δ).
"""

from .accounting import (
    ACCOUNTANTS,
    DEFAULT_ACCOUNTANT,
    Accountant,
    AccountingError,
    UnknownAccountantError,
    UnsupportedEventError,
    accountant_tolerance,
    analytic_gaussian_epsilon,
    check_delta,
    epsilon,
    get_accountant,
    list_accountants,
    register_accountant,
    subsampling_accountants,
    to_history,
)
from .budget import DELTA_RULE, NEIGHBOURING, SPEND_RTOL, PrivacyBudget
from .calibration import (
    DEFAULT_RTOL,
    CalibrationError,
    calibrate,
    calibrate_gaussian_releases,
    check_reachable,
    gaussian_releases_plan,
)
from .events import (
    ComposedEvent,
    Event,
    GaussianEvent,
    PoissonSubsampledGaussianEvent,
    check_sample_rate,
    event_from_dict,
    events_from_json,
    events_to_json,
    flatten,
)
from .ledger import LedgerEntry, PrivacyLedger
from .noise import gaussian_noise, public_generator, release_generator
from .plans import dpsgd_plan, dpsgd_plan_from_settings, dpsgd_steps, epochs_to_steps, sample_rate, steps_per_epoch

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ACCOUNTANT",
    "DEFAULT_RTOL",
    "DELTA_RULE",
    "NEIGHBOURING",
    "Accountant",
    "AccountingError",
    "CalibrationError",
    "ComposedEvent",
    "Event",
    "GaussianEvent",
    "LedgerEntry",
    "PoissonSubsampledGaussianEvent",
    "PrivacyBudget",
    "PrivacyLedger",
    "UnknownAccountantError",
    "UnsupportedEventError",
    "accountant_tolerance",
    "SPEND_RTOL",
    "analytic_gaussian_epsilon",
    "calibrate",
    "calibrate_gaussian_releases",
    "check_delta",
    "check_reachable",
    "check_sample_rate",
    "dpsgd_plan",
    "dpsgd_plan_from_settings",
    "dpsgd_steps",
    "epochs_to_steps",
    "epsilon",
    "event_from_dict",
    "events_from_json",
    "events_to_json",
    "flatten",
    "gaussian_noise",
    "gaussian_releases_plan",
    "get_accountant",
    "list_accountants",
    "public_generator",
    "register_accountant",
    "release_generator",
    "sample_rate",
    "steps_per_epoch",
    "subsampling_accountants",
    "to_history",
]
