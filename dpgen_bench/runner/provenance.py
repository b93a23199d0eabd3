"""Moved to :mod:`dpgen_bench.jobs.provenance`; this module keeps the old imports working."""

from ..jobs.provenance import (  # noqa: F401
    _version,
    code_version,
    environment,
    freed_memory_retained,
    versions,
)
