"""dpgen-bench: benchmark differentially private image generators at matched privacy budgets."""

from .data.types import DatasetInfo, ImageDataset
from .method import Capabilities, ConfigError, GenerativeMethod, MethodConfig
from .privacy.budget import PrivacyBudget
from .privacy.ledger import PrivacyLedger
from .registry import get_method, list_methods, register_method

__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "ConfigError",
    "DatasetInfo",
    "GenerativeMethod",
    "ImageDataset",
    "MethodConfig",
    "PrivacyBudget",
    "PrivacyLedger",
    "get_method",
    "list_methods",
    "register_method",
    "__version__",
]
