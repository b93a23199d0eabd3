"""Where a row's settings were chosen moved to :mod:`dpgen_bench.jobs.tuned_on` (a cell's rows carry it); this
module keeps the old imports working."""

from ..jobs.tuned_on import (  # noqa: F401
    NOT_DATA,
    TUNING_PARTS,
    UNDECLARED,
    parse_tuned_on,
    resolve_tuned_on,
    tuned_on_reported_data,
)
