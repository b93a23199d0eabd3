"""dpgen-bench: benchmark differentially private image generators at matched privacy budgets.

The public names below are imported on first use (PEP 562), so ``import dpgen_bench.cli`` — and with it
``dpgen-bench --help`` — does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Capabilities": ".method",
    "ConfigError": ".method",
    "DatasetInfo": ".data.types",
    "GenerativeMethod": ".method",
    "ImageDataset": ".data.types",
    "MethodConfig": ".method",
    "PrivacyBudget": ".privacy.budget",
    "PrivacyLedger": ".privacy.ledger",
    "get_method": ".registry",
    "list_methods": ".registry",
    "register_method": ".registry",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dpgen_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
