"""Errors of the data layer. Both carry a message meant to be shown to the user as is."""

from __future__ import annotations

from ..named_registry import UnknownNameError


class UnknownDatasetError(UnknownNameError):
    """A dataset name that is not registered; the message lists the valid names.

    An :class:`~dpgen_bench.named_registry.UnknownNameError`, so both ``KeyError`` and ``ValueError``."""


class DatasetUnavailableError(RuntimeError):
    """A dataset whose files are missing (and could not or may not be downloaded).

    The message says which files are expected where, and how to get them.
    """
