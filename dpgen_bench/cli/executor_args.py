"""The executor options every command that runs jobs shares (``run``, ``audit``): ``--jobs``, ``--executor``,
``--address``."""

from __future__ import annotations


def with_executor(config, args):
    """The config with ``--executor`` / ``--address`` / ``--jobs`` applied (UsageError for a mismatch)."""
    from . import UsageError
    from ..executors import override_executor

    if args.executor is None and args.address is None and args.jobs is None:
        return config
    try:
        spec = override_executor(config.executor, name=args.executor, address=args.address, jobs=args.jobs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return config.model_copy(update={"executor": spec})
