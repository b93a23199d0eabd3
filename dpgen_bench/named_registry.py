"""One registry pattern for everything users extend: datasets, extractors, metrics, accountants (and, on top
of entry points, methods).

A :class:`Registry` maps names to entries. Registering a name twice is refused with an error naming both
origins; looking up an unknown name raises an error that lists the valid names. Each registry is a module
global next to the things it holds, e.g.::

    DATASETS: Registry[DatasetSpec] = Registry("dataset", error=UnknownDatasetError)
    DATASETS.register("mnist-5k", spec, origin=__name__)
    DATASETS.get("mnist-5k")           # the spec
    DATASETS.names()                   # registration order
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered; the message lists the valid names.

    A ``KeyError`` (it is a failed lookup) and a ``ValueError`` (it is bad user input), so callers catching
    either keep working."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(ValueError):
    """Two registrations of the same name; the message names both origins."""


def origin_of(entry: object) -> str:
    """``module.qualname`` of a function or class (of an instance: of its type): the default origin of a
    registration, and what wrappers name when the registered entry merely holds the user's callable."""
    module = getattr(entry, "__module__", None) or type(entry).__module__
    qualname = getattr(entry, "__qualname__", None) or type(entry).__qualname__
    return f"{module}.{qualname}"


class Registry(Generic[T]):
    """Names → entries of one kind (``kind`` is the word used in messages, e.g. ``"dataset"``)."""

    def __init__(self, kind: str, error: type[UnknownNameError] = UnknownNameError) -> None:
        self.kind = kind
        self._error = error
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str, entry: T, *, origin: str | None = None) -> T:
        """Add ``entry`` as ``name``; :class:`DuplicateNameError` if the name is taken. ``origin`` says where
        the registration comes from (default: the entry's module and qualified name). Returns ``entry``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        origin = origin or origin_of(entry)
        if name in self._entries:
            raise DuplicateNameError(
                f"{self.kind} {name!r} registered twice: by {self._origins[name]} and by {origin}"
            )
        self._entries[name] = entry
        self._origins[name] = origin
        return entry

    def decorator(self, name: str, origin: str | None = None) -> Callable[[T], T]:
        """``@REGISTRY.decorator(name)`` registers the decorated object."""
        return lambda entry: self.register(name, entry, origin=origin)

    def unregister(self, name: str) -> None:
        """Remove ``name`` if present (tests and notebooks)."""
        self._entries.pop(name, None)
        self._origins.pop(name, None)

    def get(self, name: str) -> T:
        """The entry called ``name``; the registry's unknown-name error lists the valid names (sorted)."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            valid = ", ".join(sorted(self._entries)) or "(none)"
            raise self._error(f"unknown {self.kind} {name!r}; available: {valid}") from None

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origins[name]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
