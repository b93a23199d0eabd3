"""Pre-trained (and random) feature extractors; see :mod:`dpgen_bench.features.base`.

An extractor of your own: decorate a factory ``(**options) -> FeatureExtractor`` with
``@register_extractor(name, trained_on=(families...))``; it is then usable by name in ``get_extractor``.
"""

from .base import (
    EXTRACTORS,
    ExtractorEntry,
    FeatureExtractor,
    PrivateExtractorError,
    UnknownExtractorError,
    check_public_extractor,
    extractor_trained_on,
    get_extractor,
    list_extractors,
    register_extractor,
)

# Each module registers its extractors on import.
from . import digitcnn  # noqa: E402,F401
from . import random_cnn  # noqa: E402,F401  (more extractor modules are imported here as they are added)
from . import efficientnet_lite0, torchvision_nets  # noqa: E402,F401

__all__ = [
    "EXTRACTORS",
    "ExtractorEntry",
    "FeatureExtractor",
    "PrivateExtractorError",
    "UnknownExtractorError",
    "check_public_extractor",
    "extractor_trained_on",
    "get_extractor",
    "list_extractors",
    "register_extractor",
]
