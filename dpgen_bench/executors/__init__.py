"""Executors: what runs a grid's cells (``executor:`` in a benchmark config; ``--executor`` / ``--address`` /
``--jobs`` on ``dpgen-bench run``). See ``docs/executors.md``.

``local`` (this machine: serial or ``--jobs N`` processes), ``ray`` (Ray core tasks) and ``slurm`` (submitit).
A new one is one module with an :class:`ExecutorSpec` and an :class:`Executor` subclass, registered here in
:data:`EXECUTORS` (or from a plugin module with :func:`register_executor`).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..named_registry import Registry, UnknownNameError
from .base import CellRun, Executor, ExecutorSpec, JobRun, failed_record
from .local import LocalExecutor, LocalSpec, threads_per_job
from .ray_executor import RayExecutor, RaySpec
from .slurm import SlurmExecutor, SlurmSpec


class UnknownExecutorError(UnknownNameError):
    """An executor name that is not registered; the message lists the valid names."""


EXECUTORS: Registry[type[Executor]] = Registry("executor", error=UnknownExecutorError)
"""Executor name → its :class:`Executor` class (whose ``Spec`` is the config schema)."""


def register_executor(name: str, cls: type[Executor]) -> type[Executor]:
    """Register an executor class under ``name`` (its ``Spec.name`` must accept that name)."""
    return EXECUTORS.register(name, cls)


for _cls in (LocalExecutor, RayExecutor, SlurmExecutor):
    register_executor(_cls.Spec.model_fields["name"].default, _cls)


def parse_executor_spec(value: Any) -> ExecutorSpec:
    """The ``executor:`` value of a config (a spec, a mapping with ``name``, or a bare name) as its executor's
    validated spec. Raises ``ValueError`` (pydantic's ``ValidationError`` for bad keys)."""
    if isinstance(value, ExecutorSpec):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping with a 'name' or an executor name, got {value!r}")
    name = value.get("name", "local")
    return EXECUTORS.get(name).Spec.model_validate(dict(value))


def make_executor(spec: ExecutorSpec) -> Executor:
    """The executor that ``spec`` configures."""
    return EXECUTORS.get(spec.name)(spec)


def override_executor(spec: ExecutorSpec, *, name: str | None = None, address: str | None = None,
                      jobs: int | None = None) -> ExecutorSpec:
    """``spec`` with the command line's choices: ``name`` (a different executor starts from its defaults; the same
    one keeps the config's keys), ``address`` (Ray) and ``jobs`` (local). ``ValueError`` naming a mismatch."""
    data = spec.model_dump()
    if name is not None and name != spec.name:
        EXECUTORS.get(name)  # an unknown name lists the valid ones
        data = {"name": name, "threads_per_cell": spec.threads_per_cell, "env": spec.env}
    if address is not None:
        if data["name"] != "ray":
            raise ValueError(f"--address is the Ray cluster's address; the executor is {data['name']!r} "
                             f"(add --executor ray)")
        data["address"] = address
    if jobs is not None:
        if data["name"] != "local" and jobs > 1:
            raise ValueError(f"--jobs sets the local executor's parallelism; the executor is {data['name']!r}, "
                             f"whose parallelism is its cluster's (see docs/executors.md)")
        if data["name"] == "local":
            data["jobs"] = jobs
    return parse_executor_spec(data)


__all__ = [
    "EXECUTORS",
    "CellRun",
    "Executor",
    "ExecutorSpec",
    "JobRun",
    "LocalExecutor",
    "LocalSpec",
    "RayExecutor",
    "RaySpec",
    "SlurmExecutor",
    "SlurmSpec",
    "UnknownExecutorError",
    "failed_record",
    "make_executor",
    "override_executor",
    "parse_executor_spec",
    "register_executor",
    "threads_per_job",
]
