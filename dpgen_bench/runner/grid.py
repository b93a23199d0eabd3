"""The benchmark grid: one cell per dataset × method × ε × seed, keyed by a hash of its resolved config."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from .config import BenchConfig, EvaluationSpec


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


@dataclass(frozen=True)
class Cell:
    """Everything that determines one benchmark result (and nothing that does not, e.g. the device).

    ``method_config`` is the method's *fully resolved* config (defaults filled in), so a change of a
    method's default changes the key and the cell is recomputed.
    """

    dataset: str
    split_seed: int
    test_fraction: float
    method: str
    """Registered method name."""
    label: str
    """Display label (tables)."""
    method_config: dict[str, Any]
    epsilon: float
    delta: float | str
    """A value, or the rule ``"1/(n ln n)"``."""
    seed: int
    accountant: str
    evaluation: EvaluationSpec
    data_dir: str | None = None
    download: bool = False
    public_data: dict[str, Any] | None = None
    """The method entry's validated ``public_data`` (dataset, resize, ...) or None: a cell with public data is a
    different cell."""
    split: str = "pooled"
    """``pooled`` or ``official`` (:data:`dpgen_bench.data.SPLITS`)."""
    tuning_split: bool = False
    """Whether the declared tuning split is held out of train and test (part of the key only when True)."""
    tuned_on: str = "undeclared"
    """What the cell's settings were chosen on (:mod:`dpgen_bench.runner.tuned_on`); recorded, not in the key."""

    def key_data(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("data_dir", "download", "public_data", "split", "tuning_split", "tuned_on")}
        if self.split != "pooled":  # only then: pooled cells keep the keys they always had
            data["split"] = self.split
        # Where the data lives and whether it may be downloaded do not change the result.
        if self.public_data is not None:  # only then: cells without public data keep the keys they always had
            data["public_data"] = {k: v for k, v in self.public_data.items() if k not in ("data_dir", "download")}
        if self.tuning_split:  # only then, for the same reason
            data["tuning_split"] = True
        data["method_config"] = dict(self.method_config)
        data["evaluation"] = self.evaluation.model_dump(mode="json")
        if self.evaluation.protocol == "dpgen-bench":  # the default protocol's cells keep the keys they always had
            for key in ("protocol", "selection", "dpimagebench"):
                data["evaluation"].pop(key)
        return data

    @property
    def key(self) -> str:
        """Resume key: hash of the cell's full resolved config."""
        return config_hash(self.key_data(), 16)

    @property
    def method_config_hash(self) -> str:
        return config_hash({"method": self.method, "config": self.method_config})

    @property
    def name(self) -> str:
        eps = "inf" if math.isinf(self.epsilon) else f"{self.epsilon:g}"
        return f"{self.dataset}/{self.label}/eps={eps}/seed={self.seed}"


def build_cells(config: BenchConfig, method_configs: dict[str, Any]) -> list[Cell]:
    """All cells of ``config`` in a stable order (method, ε, seed); ``method_configs`` from
    :func:`~dpgen_bench.runner.config.resolve_methods` (label → validated MethodConfig)."""
    from ..registry import get_method
    from .tuned_on import resolve_tuned_on

    cells = []
    for spec in config.methods:
        resolved = method_configs[spec.display]
        tuned_on = resolve_tuned_on(spec.tuned_on, get_method(spec.name).tuned_on, spec.config)
        mc = resolved.model_dump(mode="json") if hasattr(resolved, "model_dump") else dict(resolved)
        for eps in config.epsilons:
            for seed in config.seeds:
                cells.append(
                    Cell(
                        dataset=config.dataset,
                        split_seed=config.split_seed,
                        test_fraction=config.test_fraction,
                        method=spec.name,
                        label=spec.display,
                        method_config=mc,
                        epsilon=float(eps),
                        delta=config.delta,
                        seed=int(seed),
                        accountant=config.accountant,
                        evaluation=config.evaluation,
                        data_dir=config.data_dir,
                        download=config.download,
                        public_data=spec.public_data.model_dump(mode="json") if spec.public_data is not None else None,
                        split=config.split,
                        tuning_split=config.tuning_split,
                        tuned_on=tuned_on,
                    )
                )
    return cells
