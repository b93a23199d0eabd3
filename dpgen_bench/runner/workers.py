"""Setting up a ``--jobs`` worker process: die with the parent, leave Ctrl-C to it, threads, plugins; and
checking, before a run starts, that a fresh worker sees every name the config uses."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys

import torch

from ..allocator import retain_freed_memory
from ..plugins import load_installed_plugins, load_plugins


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``), so a killed
    driver never leaves workers running on (each holding GBs). Exits at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def configure_worker(threads: int | None, plugins: tuple[str, ...] | list[str] = (), parent_pid: int | None = None) -> None:
    """Process-pool initializer: die with the parent, leave Ctrl-C to the parent (it stops the run), malloc
    tuning (:func:`dpgen_bench.allocator.retain_freed_memory`), thread count and plugin imports (in-process
    registrations do not survive ``spawn``)."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_up_cell_process(threads, plugins)


def set_up_cell_process(threads: int | None, plugins: tuple[str, ...] | list[str] = ()) -> None:
    """What every process that runs cells for a driver applies (``--jobs``, Ray and Slurm workers): one-line
    warnings, malloc tuning (:func:`dpgen_bench.allocator.retain_freed_memory`), the thread count and the plugin
    imports (in-process registrations do not reach another process). Idempotent: a reused worker applies it
    once per cell."""
    from .progress import one_line_warnings

    one_line_warnings()
    retain_freed_memory()
    if threads:
        torch.set_num_threads(int(threads))
    load_plugins(plugins)


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
