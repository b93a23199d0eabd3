"""The one plugin phase: import every extension before any config is parsed.

An extension point (method, dataset, feature extractor, metric, accountant, executor, PE generation API) is a
registry that code fills by calling its ``register_*`` function at import time. Two ways bring that code in,
both imported here and nowhere else:

* an **installed package** declares a module in the entry-point group ``dpgen_bench.plugins``
  (``[project.entry-points."dpgen_bench.plugins"] mine = "my_package.dpgen_plugin"``): imported once per
  process, before the first config is read; methods may instead use the ``dpgen_bench.methods`` group
  (``dpgen_bench.registry``), which names a class rather than a module;
* a config's ``plugins: [module, ...]``: imported before the config is validated, so its ``executor:``,
  ``dataset:``, ``accountant:`` and method names may come from it.

Worker processes (``--jobs``, Ray, Slurm) run the same phase with the same list.
"""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points
from typing import Iterable

ENTRY_POINT_GROUP = "dpgen_bench.plugins"

_installed_loaded = False
_failed: dict[str, str] = {}


class PluginImportError(ImportError):
    """A module named under ``plugins:`` that cannot be imported; the message names it and why."""


def load_installed_plugins() -> dict[str, str]:
    """Import every installed ``dpgen_bench.plugins`` entry point (once per process). A plugin that fails to
    import is skipped with a one-line warning naming its package, so one broken package cannot take the others
    down; returns ``{entry point: reason}`` of those that failed."""
    global _installed_loaded
    if not _installed_loaded:
        _installed_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            package = ep.dist.name if getattr(ep, "dist", None) is not None else ep.value.split(".")[0]
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - a plugin's own bug, reported, not raised
                _failed[f"{ep.name} ({package})"] = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"dpgen-bench: plugin {ep.name!r} from package {package!r} failed to import "
                              f"({type(exc).__name__}: {exc}); skipping it", RuntimeWarning, stacklevel=2)
    return dict(_failed)


def load_plugins(modules: Iterable[str] = ()) -> None:
    """The plugin phase: installed plugins (once), then ``modules`` (a config's ``plugins:`` list) in order.
    Raises :class:`PluginImportError` naming a module that does not import."""
    load_installed_plugins()
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise PluginImportError(f"plugins: cannot import module {module!r}: {exc}") from None
