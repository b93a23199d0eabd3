"""The benchmark grid: one training cell (:class:`dpgen_bench.jobs.training.Cell`) per dataset × method × ε × seed."""

from __future__ import annotations

from typing import Any

from ..jobs.keys import _canonical, config_hash  # noqa: F401 (re-exported: the old place)
from ..jobs.training import Cell
from .config import BenchConfig


def build_cells(config: BenchConfig, method_configs: dict[str, Any]) -> list[Cell]:
    """All cells of ``config`` in a stable order (method, ε, seed); ``method_configs`` from
    :func:`~dpgen_bench.runner.config.resolve_methods` (label → validated MethodConfig)."""
    from ..registry import get_method
    from .tuned_on import resolve_tuned_on

    cells = []
    for spec in config.methods:
        resolved = method_configs[spec.display]
        tuned_on = resolve_tuned_on(spec.tuned_on, get_method(spec.name).tuned_on, spec.config)
        mc = resolved.key_dump() if hasattr(resolved, "key_dump") else dict(resolved)
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
