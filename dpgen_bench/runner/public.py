"""Moved to :mod:`dpgen_bench.jobs.public`; this module keeps the old imports working."""

from ..jobs.public import (  # noqa: F401
    DatasetInfo,
    ImageDataset,
    PublicDataError,
    _load,
    check_public_data,
    convert_to_shape,
    converted_info,
    load_public_data,
)
