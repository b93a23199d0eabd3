"""The results store moved to :mod:`dpgen_bench.jobs.store`; this module keeps the old imports working."""

from ..jobs.store import (  # noqa: F401
    AUDITS,
    CELLS_DIR,
    COLUMNS,
    LEGACY_ARTEFACTS,
    LOCK_FILE,
    RESULTS,
    RESULTS_CSV,
    ResultsStore,
    StoreLockedError,
    Table,
    _as_record,
    _decode,
    _encode,
    _json_default,
    _pid_alive,
    artefact_digests,
    file_digest,
    verify_artefacts,
    write_atomic,
)
