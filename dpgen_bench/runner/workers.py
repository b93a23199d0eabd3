"""Checking, before a run starts, that a fresh worker process sees every name the config uses (the worker's
own set-up is :mod:`dpgen_bench.executors.worker`)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

from ..executors.worker import configure_worker, die_with_parent, set_up_cell_process  # noqa: F401 (old place)
from ..plugins import load_installed_plugins


def names_workers_cannot_see(config) -> list[str]:
    """What a fresh ``--jobs`` worker (which imports dpgen_bench and ``config.plugins`` only) would not find:
    the config's methods and their config values (e.g. a PE API), dataset, accountant and metrics. Asks a fresh
    interpreter with this process's ``sys.path``, so the answer is what a worker sees, whatever registered the
    names here (a notebook, a test, a module not listed under ``plugins``)."""
    payload = json.dumps({
        "plugins": list(config.plugins), "dataset": config.dataset, "accountant": config.accountant,
        "metrics": list(config.evaluation.metrics), "methods": [[m.name, dict(m.config)] for m in config.methods],
    })
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-m", "dpgen_bench.runner.workers", payload], capture_output=True,
                         text=True, env=env, timeout=300)
    if out.returncode not in (0, 1):
        return [f"a fresh worker could not start: {out.stderr.strip()[-500:]}"]
    return [line for line in out.stdout.splitlines() if line.strip()]


def _unseen(request: dict) -> list[str]:
    from ..data import dataset_spec
    from ..metrics import list_metrics
    from ..method import build_config
    from ..privacy.accounting import get_accountant
    from ..registry import get_method

    load_installed_plugins()
    problems = []
    for module in request["plugins"]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # the worker's own import would fail the same way
            problems.append(f"plugin module {module!r} does not import: {type(exc).__name__}: {exc}")
    checks = [(f"method {name!r}", lambda n=name, c=cfg: build_config(get_method(n).Config, c))
              for name, cfg in request["methods"]]
    checks += [(f"dataset {request['dataset']!r}", lambda: dataset_spec(request["dataset"])),
               (f"accountant {request['accountant']!r}", lambda: get_accountant(request["accountant"]))]
    for what, check in checks:
        try:
            check()
        except Exception as exc:
            problems.append(f"{what}: {exc}")
    problems += [f"metric {m!r}: not registered" for m in request["metrics"] if m not in list_metrics()]
    return problems


if __name__ == "__main__":
    unseen = _unseen(json.loads(sys.argv[1]))
    print("\n".join(unseen))
    sys.exit(1 if unseen else 0)
