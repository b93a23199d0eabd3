"""A job's key: a short SHA-256 of the canonical JSON of everything that determines its result."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def _canonical(value: Any) -> str:
    """JSON with sorted keys and ε = ∞ spelled ``"inf"`` (JSON has no infinity)."""

    def fix(v: Any) -> Any:
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if isinstance(v, dict):
            return {str(k): fix(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        return v

    return json.dumps(fix(value), sort_keys=True, separators=(",", ":"))


def config_hash(value: Any, length: int = 12) -> str:
    """Short SHA-256 of the canonical JSON of ``value``."""
    return hashlib.sha256(_canonical(value).encode()).hexdigest()[:length]
