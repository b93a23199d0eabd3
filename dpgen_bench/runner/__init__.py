"""The benchmark runner: config → grid of cells → results store → tables and plots.

``dpgen-bench run`` is :func:`run_benchmark` on :func:`load_config`'s result; ``dpgen-bench table`` and
``dpgen-bench plot`` re-render from a stored ``results.csv``. Modules: ``config`` (schema, ``--set``,
checks before training), ``grid`` (cells and their keys), ``execute`` (one cell), ``store`` (atomic,
resumable results directory), ``tables``, ``plots``, ``benchmark`` (the grid loop, ``--jobs``).
"""

from .benchmark import RunSummary, render_outputs, run_benchmark
from .config import BenchConfig, ConfigFileError, load_config, parse_config, resolve_methods
from ..jobs import Cell
from .grid import build_cells
from ..jobs.store import COLUMNS, ResultsStore

__all__ = [
    "COLUMNS",
    "BenchConfig",
    "Cell",
    "ConfigFileError",
    "ResultsStore",
    "RunSummary",
    "build_cells",
    "load_config",
    "parse_config",
    "render_outputs",
    "resolve_methods",
    "run_benchmark",
]
