"""Errors of the data layer. Both carry a message meant to be shown to the user as is."""

from __future__ import annotations


class UnknownDatasetError(KeyError):
    """A dataset name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DatasetUnavailableError(RuntimeError):
    """A dataset whose files are missing (and could not or may not be downloaded).

    The message says which files are expected where, and how to get them.
    """
