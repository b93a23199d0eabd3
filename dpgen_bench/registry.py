"""Method registry: in-process registration by decorator plus discovery through entry points.

Built-in methods (``methods/``, ``baselines/``) and outside plugins both register through the entry-point
group ``dpgen_bench.methods``; each entry point names a :class:`GenerativeMethod` subclass::

    [project.entry-points."dpgen_bench.methods"]
    my-method = "my_package.module:MyMethod"

The decorator :func:`register_method` registers a class in the running process only (notebooks, tests).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Callable, TypeVar

from .method import GenerativeMethod
from .named_registry import DuplicateNameError, Registry, UnknownNameError

ENTRY_POINT_GROUP = "dpgen_bench.methods"

M = TypeVar("M", bound=type[GenerativeMethod])


class UnknownMethodError(UnknownNameError):
    """Raised for a method name that is not registered; the message lists the valid names."""


class DuplicateMethodError(DuplicateNameError, RuntimeError):
    """Two sources register the same method name."""


class PluginLoadError(UnknownMethodError):
    """The method's plugin is installed but failed to load; the message says which package and why."""


@dataclass(frozen=True)
class FailedPlugin:
    """An entry point of ``dpgen_bench.methods`` that could not be loaded, and why."""

    name: str
    source: str
    reason: str


@dataclass(frozen=True)
class MethodEntry:
    name: str
    cls: type[GenerativeMethod]
    source: str
    """Distribution (package) that provided it, or ``"<registered in-process>"``."""


_in_process: Registry[MethodEntry] = Registry("method", error=UnknownMethodError)
_cache: Registry[MethodEntry] | None = None
_failed: dict[str, FailedPlugin] = {}


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register ``cls`` under ``name`` in this process."""

    def wrap(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, GenerativeMethod)):
            raise TypeError(f"{cls!r} is not a GenerativeMethod subclass")
        if name in _in_process:
            if _in_process.get(name).cls is cls:  # the same class imported twice
                return cls
            raise DuplicateMethodError(
                f"method name {name!r} registered twice in-process: "
                f"{_in_process.get(name).cls.__module__} and {cls.__module__}"
            )
        cls.name = name
        _in_process.register(name, MethodEntry(name, cls, "<registered in-process>"), origin=cls.__module__)
        refresh()
        return cls

    return wrap


def unregister_method(name: str) -> None:
    """Remove an in-process registration (tests)."""
    _in_process.unregister(name)
    refresh()


def refresh() -> None:
    """Forget discovered entry points (e.g. after installing a plugin)."""
    global _cache
    _cache = None
    _failed.clear()


def _source(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.module.split(".")[0]


def _discover() -> Registry[MethodEntry]:
    found: Registry[MethodEntry] = Registry("method", error=UnknownMethodError)
    seen_eps: set[tuple[str, str]] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key in seen_eps:  # the same distribution visible twice on sys.path
            continue
        seen_eps.add(key)
        source = _source(ep)
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            reason = f"{type(exc).__name__}: {exc}"
            _failed[ep.name] = FailedPlugin(ep.name, source, reason)
            warnings.warn(
                f"dpgen-bench: method plugin {ep.name!r} from package {source!r} failed to import "
                f"({reason}); skipping it",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        if not (isinstance(cls, type) and issubclass(cls, GenerativeMethod)):
            _failed[ep.name] = FailedPlugin(ep.name, source, f"{ep.value} is not a GenerativeMethod subclass")
            warnings.warn(
                f"dpgen-bench: entry point {ep.name!r} from package {source!r} is not a "
                f"GenerativeMethod subclass ({ep.value}); skipping it",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        if ep.name in found:
            first = found.get(ep.name)
            raise DuplicateMethodError(
                f"method name {ep.name!r} is provided by two packages: "
                f"{first.source!r} ({first.cls.__module__}) and {source!r} ({cls.__module__}); "
                f"uninstall one of them"
            )
        if not cls.name:
            cls.name = ep.name
        found.register(ep.name, MethodEntry(ep.name, cls, source), origin=f"package {source!r}")
    for name, entry in _in_process.items():
        if name in found:
            if found.get(name).cls is not entry.cls:
                raise DuplicateMethodError(
                    f"method name {name!r} is provided by package {found.get(name).source!r} and registered "
                    f"in-process by {entry.cls.__module__}"
                )
            found.unregister(name)
        found.register(name, entry, origin=f"in-process ({entry.cls.__module__})")
    return found


def _registry() -> Registry[MethodEntry]:
    global _cache
    if _cache is None:
        _cache = _discover()
    return _cache


def list_methods() -> list[str]:
    """Names of all available methods, sorted."""
    return sorted(_registry().names())


def method_entry(name: str) -> MethodEntry:
    """The registry entry (class and source package) for ``name``; :class:`PluginLoadError` naming the package
    and the reason if ``name`` is an installed plugin that failed to load."""
    found = _registry()
    if name not in found and name in _failed:
        failed = _failed[name]
        raise PluginLoadError(f"method {name!r} from package {failed.source!r} is installed but failed to load: "
                              f"{failed.reason}")
    return found.get(name)


def failed_plugins() -> list[FailedPlugin]:
    """Installed method plugins that failed to load, with the reason (``dpgen-bench list`` shows them)."""
    _registry()
    return sorted(_failed.values(), key=lambda f: f.name)


def get_method(name: str) -> type[GenerativeMethod]:
    """The method class registered as ``name``."""
    return method_entry(name).cls
