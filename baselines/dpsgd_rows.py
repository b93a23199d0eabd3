"""Per-example gradient rows of a DP-SGD step, before Opacus clips them: masking, non-finite rows, and the
step in fixed physical chunks (:func:`step_in_fixed_chunks`) that DPDM and DP-GAN share.

Stopping a run because the loss of a *private* batch is NaN releases an un-noised bit about the batch. The
baselines instead zero a non-finite row (a function of its own example only, with norm 0 ≤ C, so the
sensitivity argument still holds) and judge divergence on the parameters after the noised step, which are
post-processing of released values (:func:`parameters_finite`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from opacus.optimizers import DPOptimizer


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
    """Set the per-example gradient rows marked in ``rows`` (bool (m,)) to zero in every parameter, in place.

    The same work (and the same allocations) whether any row is marked or not: neither memory nor time may
    tell whether a private row was non-finite, or how many rows of a chunk were masked."""
    for gs in _rows(params):
        gs.masked_fill_(rows.to(gs.device).view(-1, *([1] * (gs.dim() - 1))), 0.0)


def parameters_finite(module: nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (checked after a noised step: post-processing)."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def step_in_fixed_chunks(optimizer: DPOptimizer, params: list[nn.Parameter], batch: Sequence[torch.Tensor],
                         chunk: int, backward: Callable[[list[torch.Tensor]], None],
                         device: torch.device | str | None = None) -> int:
    """One DP-SGD step on the Poisson batch ``batch`` (tensors sharing their first dimension m, e.g. images,
    labels, per-example draws) in physical chunks of exactly ``chunk`` examples; returns the number of chunks.

    The batch is cut into max(1, ⌈m / chunk⌉) chunks, the last one padded with masked rows (public zeros), so
    every forward and backward runs on ``chunk`` rows and a step's memory is a function of the public ``chunk``
    alone, never of the private m (an empty batch is one masked chunk). Each chunk is built on ``device`` (None:
    the batch's own) in a fresh buffer of ``chunk`` rows: keep the batch on the host and the accelerator never
    holds more than one chunk of it. ``backward(part)`` fills the per-example rows (``grad_sample``) of one
    chunk; the masked rows' gradients are zeroed before clipping, each chunk is clipped and accumulated by
    Opacus's skip-step accumulation, and only the last ``optimizer.step()`` adds the noise and divides by the
    expected batch size: the clipped sum, its noise and the divisor are the one-pass step's. How many chunks a
    step takes (its time) still follows m. ``backward`` must normalise its loss by the rows it is given
    (``chunk``), as Opacus's "mean" reduction expects."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 examples, got {chunk}")
    m = int(batch[0].shape[0])
    chunks = max(1, -(-m // chunk))
    for p in optimizer.params:
        # Opacus allocates the accumulator in the first chunk and adds to it in the others; allocated here, every
        # chunk does the same, so a one-chunk step's memory is that of a longer one (adding to 0 is exact).
        p.summed_grad = torch.zeros_like(p)
    for i in range(chunks):
        lo = i * chunk
        backward([_padded_chunk(t, lo, min(chunk, m - lo), chunk, device) for t in batch])
        zero_rows(params, torch.arange(lo, lo + chunk) >= m)  # the masked rows, before clipping
        last = i == chunks - 1
        if not last:
            optimizer.signal_skip_step(do_skip=True)  # clip and accumulate only; the noise comes once, at the end
        optimizer.step()
        if not last:
            optimizer.zero_grad(set_to_none=True)  # clears the rows, keeps the accumulated clipped sum
    return chunks


def _padded_chunk(t: torch.Tensor, lo: int, rows: int, chunk: int, device: torch.device | str | None) -> torch.Tensor:
    """Rows ``lo .. lo + rows`` of ``t`` in a new zero buffer of ``chunk`` rows on ``device`` (None: ``t``'s):
    the same allocation whatever ``rows`` is."""
    out = torch.zeros((chunk, *t.shape[1:]), dtype=t.dtype, device=t.device if device is None else device)
    if rows > 0:
        out[:rows].copy_(t[lo:lo + rows])
    return out
