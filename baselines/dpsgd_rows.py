"""Per-example gradient rows of a DP-SGD step, before Opacus clips them: masking and non-finite rows.

Stopping a run because the loss of a *private* batch is NaN releases an un-noised bit about the batch. The
baselines instead zero a non-finite row (a function of its own example only, with norm 0 ≤ C, so the
sensitivity argument still holds) and judge divergence on the parameters after the noised step, which are
post-processing of released values (:func:`parameters_finite`).
"""

from __future__ import annotations

import torch
from torch import nn


def _rows(params: list[nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad_sample for p in params if isinstance(getattr(p, "grad_sample", None), torch.Tensor)]


def nonfinite_rows(params: list[nn.Parameter]) -> torch.Tensor:
    """Bool (m,): examples whose per-example gradient has a NaN or ±inf in any parameter."""
    rows = _rows(params)
    if not rows:
        return torch.zeros(0, dtype=torch.bool)
    bad = torch.zeros(rows[0].shape[0], dtype=torch.bool, device=rows[0].device)
    for gs in rows:
        bad |= ~torch.isfinite(gs.flatten(1)).all(1)
    return bad


def zero_rows(params: list[nn.Parameter], rows: torch.Tensor) -> None:
    """Set the per-example gradient rows marked in ``rows`` (bool (m,)) to zero in every parameter."""
    if rows.numel() == 0 or not bool(rows.any()):
        return
    for gs in _rows(params):
        gs[rows.to(gs.device)] = 0.0


def parameters_finite(module: nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (checked after a noised step: post-processing)."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())
