"""Moved to :mod:`dpgen_bench.jobs.samples`; this module keeps the old imports working."""

from ..jobs.samples import (  # noqa: F401
    SampleCheckError,
    atomic_path,
    check_samples,
    save_grid,
    save_samples,
)
