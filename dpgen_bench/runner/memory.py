"""Moved to :mod:`dpgen_bench.jobs.memory`; this module keeps the old imports working."""

from ..jobs.memory import (  # noqa: F401
    PeakMemory,
    measure_peak_memory,
    peak_memory_mb,
    reset_peak_memory,
)
