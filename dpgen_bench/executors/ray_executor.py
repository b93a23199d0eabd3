"""The ``ray`` executor: each cell is a Ray core task with the config's per-cell resources, so a GPU cell lands
on a node with a free GPU. Needs ``pip install 'dpgen-bench[ray]'``; see ``docs/executors.md``.

(Named ``ray_executor`` so it never shadows the ``ray`` package.)"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from ..errors import ConfigFileError
from .base import JobRun, Executor, ExecutorSpec, OnDone, OnStart, failed_record, missing_extra


class RaySpec(ExecutorSpec):
    """``executor: {name: ray, address: ..., num_cpus: ..., num_gpus: ...}``."""

    name: Literal["ray"] = "ray"
    address: str | None = None
    """Cluster to join (``ray.init(address=...)``): ``auto``, ``HOST:PORT`` or ``ray://HOST:10001``; None starts a
    local Ray on this machine. ``--address`` sets it."""
    num_cpus: float = Field(default=1.0, gt=0)
    """CPUs Ray reserves for each cell (also its torch threads, rounded down, unless ``threads_per_cell``)."""
    num_gpus: float = Field(default=0.0, ge=0)
    """GPUs Ray reserves for each cell (fractions share a GPU); > 0 is required with a ``cuda`` device."""
    memory_gb: float | None = Field(default=None, gt=0)
    """Memory Ray reserves for each cell in GiB (scheduling only, not a hard limit); None: no reservation."""
    max_retries: int = Field(default=2, ge=0)
    """How often a cell whose worker process died (killed, node lost) is rerun before it is recorded failed."""


def _ray():
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "ray", "ray") from None
    return ray


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """``ConfigFileError`` naming ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) if nothing accepts a TCP
    connection there within ``timeout_s`` seconds: ``ray.init`` itself would retry for minutes. ``None`` and
    ``auto`` (found by Ray on this machine) are left to Ray."""
    import socket

    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigFileError(f"executor.address: {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigFileError(f"executor.address: cannot reach a Ray cluster at {address!r} "
                              f"({exc.strerror or type(exc).__name__}); is `ray start --head` running there?") from None


def _run_on_worker(run_one: JobRun, cell) -> dict[str, Any]:
    """The Ray task: a module-level function, so workers import it by name from an installed dpgen-bench."""
    return run_one(cell)


class RayExecutor(Executor):
    """Cells as Ray tasks; the driver waits on them and records each as it finishes."""

    Spec = RaySpec
    spec: RaySpec

    def __init__(self, spec: RaySpec) -> None:
        super().__init__(spec)
        self._started_here = False

    def default_threads(self) -> int:
        return max(1, math.floor(self.spec.num_cpus))

    def check(self, config) -> None:
        _ray()
        if config.device.startswith("cuda") and self.spec.num_gpus <= 0:
            raise ConfigFileError(f"executor.num_gpus: device is {config.device!r} but each cell reserves no "
                                  f"GPU; set executor.num_gpus (e.g. 1) so Ray places cells on GPU nodes")

    def open(self) -> None:
        ray = _ray()
        if not ray.is_initialized():  # else a session the caller opened (a notebook, a test): use it, leave it open
            check_reachable(self.spec.address)
            try:
                ray.init(address=self.spec.address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.spec.address or "a new local Ray instance"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigFileError(f"executor.address: cannot connect to Ray at {where!r}: {first}") from None
            self._started_here = True
        self._check_resources(ray)

    def _check_resources(self, ray) -> None:
        """A request no node can meet would wait forever: refuse it (autoscaling clusters: the current size)."""
        have = ray.cluster_resources()
        need = {"CPU": self.spec.num_cpus, "GPU": self.spec.num_gpus}
        short = {k: v for k, v in need.items() if v > have.get(k, 0.0)}
        if short:
            self.close()
            raise ConfigFileError(f"executor: each cell asks for {short} but the Ray cluster has "
                                  f"{ {k: have.get(k, 0.0) for k in short} } in all")

    def close(self) -> None:
        if self._started_here:
            _ray().shutdown()
            self._started_here = False

    def run(self, cells, run_one: JobRun, on_start: OnStart, on_done: OnDone, *, progress: bool = False) -> None:
        ray = _ray()
        options: dict[str, Any] = {"num_cpus": self.spec.num_cpus, "num_gpus": self.spec.num_gpus,
                                   # a dead worker is retried; an exception in the cell is a failed record
                                   # already (run_cell never raises for the cell's own problems)
                                   "max_retries": self.spec.max_retries, "retry_exceptions": False}
        if self.spec.memory_gb is not None:
            options["memory"] = int(self.spec.memory_gb * 2**30)
        task = ray.remote(_run_on_worker).options(**options)
        pending = {}
        try:
            for cell in cells:
                pending[task.remote(run_one, cell)] = cell
                on_start(cell)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    on_done(cell, self._result(ray, ref, cell))
        except KeyboardInterrupt:
            for ref in pending:  # abandoned cells have written no record: a rerun does them
                ray.cancel(ref, force=True)
            raise

    def _result(self, ray, ref, cell) -> dict[str, Any]:
        try:
            return ray.get(ref)
        except Exception as exc:  # WorkerCrashedError, NodeDiedError, OutOfMemoryError ... after the retries
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return failed_record(cell, f"Ray worker died {self.spec.max_retries + 1} time(s) running this cell: "
                                       f"{type(exc).__name__}: {first}")
