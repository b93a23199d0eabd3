"""Opacus's ``make_private`` as the DP-SGD trainers here use it, and the per-example gradient modes they offer.

The optimiser itself comes from the library's one DP-SGD factory, :func:`dpgen_bench.privacy.dpsgd.make_private`
(the seam the audits' broken variants use); this module adds what the baselines' networks need around it.

Modes (``grad_sample_mode`` of ``dp-gan``/``dp-cgan`` and ``dpdm``): Opacus's ``hooks``, ``functorch`` and ``ew``,
and ``grouped`` — hooks through :class:`~.grouped_grad_sample.GroupedGradSampleModule`, which gives one gradient
per *example* when an example is several rows of the batch (``docs/dpsgd_speed.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from dpgen_bench.privacy.dpsgd import make_private

from .per_sample_conv import register_with_opacus, skip_batch_weight_grads

if TYPE_CHECKING:
    from opacus import PrivacyEngine
    from opacus.optimizers import DPOptimizer

GradSampleMode = Literal["hooks", "functorch", "ew", "grouped"]
"""How per-example gradients are computed: Opacus's modes, or ``grouped`` (``docs/dpsgd_speed.md``)."""


def make_private_module(module: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *,
                        noise_multiplier: float, max_grad_norm: float, grad_sample_mode: GradSampleMode,
                        noise_generator: torch.Generator) -> tuple[nn.Module, DPOptimizer, PrivacyEngine]:
    """Opacus's ``make_private`` for the DP-SGD trainers here (no Poisson re-wrapping of ``loader``; gradient
    accumulation forbidden; batch weight gradients skipped where per-sample gradients come from hooks)."""
    register_with_opacus()
    engine_cls: type[PrivacyEngine] | None = None
    opacus_mode = grad_sample_mode
    if grad_sample_mode == "grouped":
        from .grouped_grad_sample import GroupedPrivacyEngine  # imported on use: importing the baselines stays cheap

        engine_cls, opacus_mode = GroupedPrivacyEngine, "hooks"
    module, optimizer, engine = make_private(
        module, optimizer, loader, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        grad_sample_mode=opacus_mode, noise_generator=noise_generator, engine_cls=engine_cls)
    module.forbid_grad_accumulation()  # a stray second backward before step() would raise
    if opacus_mode == "hooks":
        skip_batch_weight_grads(module)
    return module, optimizer, engine


def groups_rows(module: nn.Module) -> bool:
    """Whether ``module`` was wrapped in ``grouped`` mode (then the trainer runs an example's rows together and
    sets their count with :func:`~.grouped_grad_sample.grouped_rows` around the backward)."""
    return getattr(module, "rows_per_example", None) is not None


__all__ = ["GradSampleMode", "groups_rows", "make_private_module"]
