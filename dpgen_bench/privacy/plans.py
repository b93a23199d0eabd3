"""DP-SGD plans: turn training settings into the events a Poisson-sampled DP-SGD run performs.

A plan is σ → events (see :mod:`dpgen_bench.privacy.calibration`). Step counts follow Opacus's
``DPDataLoader``: one epoch is ``int(1 / sample_rate)`` Poisson-sampled batches, each one accounted step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .events import PoissonSubsampledGaussianEvent, check_positive_int, check_sample_rate


def sample_rate(batch_size: int, dataset_size: int) -> float:
    """Poisson sampling rate q = expected batch size / dataset size, in (0, 1]."""
    b = check_positive_int("batch_size", batch_size)
    n = check_positive_int("dataset_size", dataset_size)
    if b > n:
        raise ValueError(f"batch_size={b} exceeds dataset_size={n}: the sample rate would be above 1")
    return b / n


def steps_per_epoch(sample_rate_: float) -> int:
    """Batches per epoch of Opacus's Poisson loader: ``int(1 / q)`` (at least 1)."""
    q = check_sample_rate(sample_rate_)
    return max(1, int(1 / q))


def epochs_to_steps(sample_rate_: float, epochs: int | float) -> int:
    """Accounted DP-SGD steps for ``epochs`` > 0 passes (fractional allowed) at Poisson rate q ∈ (0, 1]:
    ``max(1, round(epochs · int(1 / q)))``, the batches Opacus's ``DPDataLoader`` yields, so a plan matches
    what the training loop will record in the ledger. The one epochs → steps rule."""
    e = float(epochs)
    if not math.isfinite(e) or e <= 0:
        raise ValueError(f"epochs must be > 0, got {epochs!r}")
    return max(1, round(e * steps_per_epoch(sample_rate_)))


def dpsgd_steps(dataset_size: int, batch_size: int, epochs: int | float) -> int:
    """Accounted DP-SGD steps for ``epochs`` passes with expected batch size ``batch_size`` over a declared
    ``dataset_size``: :func:`epochs_to_steps` at q = batch_size / dataset_size."""
    return epochs_to_steps(sample_rate(batch_size, dataset_size), epochs)


def dpsgd_plan(sample_rate: float, steps: int) -> Callable[[float], list[PoissonSubsampledGaussianEvent]]:
    """Plan σ → [PoissonSubsampledGaussianEvent(σ, q, steps)]. Arguments are validated now, not at σ time."""
    q = check_sample_rate(sample_rate)
    t = check_positive_int("steps", steps)

    def plan(sigma: float) -> list[PoissonSubsampledGaussianEvent]:
        return [PoissonSubsampledGaussianEvent(sigma, q, t)]

    return plan


def dpsgd_plan_from_settings(
    dataset_size: int, batch_size: int, *, epochs: int | float | None = None, steps: int | None = None
) -> Callable[[float], list[PoissonSubsampledGaussianEvent]]:
    """Plan from DP-SGD settings: q = batch_size / dataset_size and either ``epochs`` or ``steps``."""
    if (epochs is None) == (steps is None):
        raise ValueError(f"give exactly one of epochs or steps, got epochs={epochs!r}, steps={steps!r}")
    q = sample_rate(batch_size, dataset_size)
    t = dpsgd_steps(dataset_size, batch_size, epochs) if steps is None else steps
    return dpsgd_plan(q, t)
