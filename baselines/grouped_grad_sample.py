"""Per-example gradients of examples made of several rows, without materialising per-row gradients.

DP-SGD clips one gradient per private example. Here an example is often a *group* of rows that go through the
network together: DPDM's K noise draws of one image (rows i·K … i·K+K−1), the DP-CGAN discriminator's (real,
fake) pair. Opacus's ``hooks`` mode computes one gradient per row (B·K of them, each the size of the model) and
the trainer then sums or averages each group; memory and time grow with K. :class:`GroupedGradSampleModule`
computes each group's gradient directly, layer by layer, from the activations a and output gradients g the hooks
capture anyway (see ``docs/dpsgd_speed.md``):

* ``Linear`` (and the q/k/v/out projections of attention): G_i = Σ_{r∈i, t} g_{r,t} a_{r,t}ᵀ, one batched matmul
  of (B, K·T, d_out)ᵀ × (B, K·T, d_in);
* ``Conv2d`` / :class:`~.per_sample_conv.PerSampleConv2d`: the weight gradient of one convolution whose *batch*
  is the K rows of a group and whose *groups* are the B examples (autograd's own weight-gradient kernel sums
  over the batch);
* ``Embedding``: a one-hot (B, K·T, V) × (B, K·T, D) matmul;
* every other layer (GroupNorm, LayerNorm, ...; their parameters are a few numbers per channel): Opacus's own
  per-row sampler, then the sum over each group.

The row a group contributes is (1/K)·Σ_{r∈i} (row r's gradient as ``hooks`` gives it), exactly what DPDM's
``average_over_draws`` produced from the B·K rows; the optimiser (Opacus's ``DPOptimizer``: clipping, noise,
accounting) is unchanged and sees B rows. With K = 1 the module is Opacus's ``GradSampleModule``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from opacus import PrivacyEngine
from opacus.grad_sample.functorch import ft_compute_per_sample_gradient
from opacus.grad_sample.grad_sample_module import (
    GradSampleModule,
    create_or_accumulate_grad_sample,
    promote_current_grad_sample,
)
from opacus.utils.module_utils import trainable_parameters
from torch import nn

from .per_sample_conv import PerSampleConv2d

GroupedSampler = Callable[[nn.Module, list[torch.Tensor], torch.Tensor, int], dict[nn.Parameter, torch.Tensor]]
"""(layer, activations, output gradients of the B·K rows, K) -> {parameter: (B, *parameter.shape) group sums}."""


def _fold(t: torch.Tensor, k: int) -> torch.Tensor:
    """(B·K, C, ...) rows, example-major, -> (K, B·C, ...): the K rows of a group become a batch, the examples
    become channel groups (a copy; ``reshape`` is logical, so any input strides are fine)."""
    b = t.shape[0] // k
    return t.reshape(b, k, *t.shape[1:]).transpose(0, 1).reshape(k, b * t.shape[1], *t.shape[2:])


def grouped_linear(layer: nn.Linear, activations: list[torch.Tensor], backprops: torch.Tensor,
                   k: int) -> dict[nn.Parameter, torch.Tensor]:
    """Σ over each group's rows (and any sequence positions) of g aᵀ: (B, d_out, d_in) and (B, d_out)."""
    a = activations[0].to(backprops.dtype)
    b = a.shape[0] // k
    a, g = a.reshape(b, -1, a.shape[-1]), backprops.reshape(b, -1, backprops.shape[-1])
    ret: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        ret[layer.weight] = torch.bmm(g.transpose(1, 2), a)
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = g.sum(1)
    return ret


def grouped_conv2d(layer: nn.Conv2d, activations: list[torch.Tensor], backprops: torch.Tensor,
                   k: int) -> dict[nn.Parameter, torch.Tensor]:
    """Each example's weight gradient summed over its K rows, from one convolution weight-gradient kernel with
    batch K and B·groups channel groups (zero padding given as numbers; :func:`grouped_grad_samples` checks)."""
    x = activations[0].to(backprops.dtype)
    b = x.shape[0] // k
    ret: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        weight_shape = (b * layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size)
        grads = torch.ops.aten.convolution_backward(
            _fold(backprops, k), _fold(x, k), x.new_empty(weight_shape), None, layer.stride, layer.padding,
            layer.dilation, False, (0, 0), b * layer.groups, (False, True, False),
        )[1]
        ret[layer.weight] = grads.view(b, *layer.weight.shape)
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = backprops.reshape(b, k, layer.out_channels, -1).sum(dim=(1, 3))
    return ret


def grouped_embedding(layer: nn.Embedding, activations: list[torch.Tensor], backprops: torch.Tensor,
                      k: int) -> dict[nn.Parameter, torch.Tensor]:
    """(B, V, D): the output gradients of each group's rows added onto the rows of the table they looked up. The
    padding row, if any, gets none (as in autograd; Opacus's per-row sampler gives it one)."""
    ret: dict[nn.Parameter, torch.Tensor] = {}
    if not layer.weight.requires_grad:
        return ret
    idx = activations[0]
    b, d = idx.shape[0] // k, layer.embedding_dim
    grads = torch.zeros(b, *layer.weight.shape, device=backprops.device, dtype=backprops.dtype)
    grads.scatter_add_(1, idx.reshape(b, -1, 1).expand(-1, -1, d), backprops.reshape(b, -1, d))
    if layer.padding_idx is not None:
        grads[:, layer.padding_idx] = 0
    ret[layer.weight] = grads
    return ret


def _conv_supported(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros" and not isinstance(layer.padding, str))


GROUPED_SAMPLERS: dict[type[nn.Module], GroupedSampler] = {
    nn.Linear: grouped_linear,
    nn.Conv2d: grouped_conv2d,
    PerSampleConv2d: grouped_conv2d,
    nn.Embedding: grouped_embedding,
}
"""Layers whose group gradients are computed directly; any other layer goes through Opacus's per-row sampler
and a sum over each group (right for every layer, and cheap for the normalisation layers, whose parameters are a
few numbers per channel)."""


def grouped_grad_samples(layer: nn.Module, activations: list[torch.Tensor], backprops: torch.Tensor, k: int,
                         per_row: GroupedSampler | Callable[..., dict[nn.Parameter, torch.Tensor]]
                         ) -> dict[nn.Parameter, torch.Tensor]:
    """Each group's gradient summed over its K rows, (B, *shape) per parameter of ``layer``. ``per_row`` is the
    per-row sampler ``(layer, activations, backprops) -> {param: (B·K, *shape)}`` used for layers without a
    grouped one."""
    sampler = GROUPED_SAMPLERS.get(type(layer))
    if sampler is not None and (sampler is not grouped_conv2d or _conv_supported(layer)):
        return sampler(layer, activations, backprops, k)
    rows = per_row(layer, activations, backprops)
    return {p: gs.reshape(gs.shape[0] // k, k, *gs.shape[1:]).sum(1) for p, gs in rows.items()}


class GroupedGradSampleModule(GradSampleModule):
    """Opacus's hooks ``GradSampleModule`` whose backward hooks, while :attr:`rows_per_example` K > 1, leave one
    row per *example* in each ``p.grad_sample``: (1/K)·Σ of the per-row gradients ``hooks`` mode would give for
    the example's K consecutive rows. Set K around the backward with :func:`grouped_rows`.

    Under the "mean" loss reduction Opacus multiplies the output gradients by the number of rows N = B·K, so
    for a loss Σ_r ℓ_r / (B·K) (DPDM) the row is ∇ (1/K) Σ_k ℓ_ik, and for Σ_i (ℓ_real,i + ℓ_fake,i) / B over
    2B rows (the GAN pair) it is ∇ (ℓ_real,i + ℓ_fake,i): in both cases what today's path clips.
    """

    rows_per_example: int = 1

    def capture_backprops_hook(self, module: nn.Module, _forward_input: torch.Tensor, forward_output: torch.Tensor,
                               loss_reduction: str, batch_first: bool) -> None:
        k = self.rows_per_example
        rows = forward_output[0].shape[0 if batch_first else 1]
        if k == 1 or not self.hooks_enabled or rows == 0:
            # An empty batch: Opacus's own path (its samplers return one all-zero row; the step adds noise only).
            super().capture_backprops_hook(module, _forward_input, forward_output, loss_reduction, batch_first)
            return
        if not batch_first:
            raise ValueError("grouped per-example gradients need batch_first=True")
        if rows % k:
            raise ValueError(f"{type(module).__name__} saw {rows} rows, not a multiple of rows_per_example={k}")
        activations, backprops = self.rearrange_grad_samples(
            module=module, backprops=forward_output[0].detach(), loss_reduction=loss_reduction, batch_first=True)
        per_row = self.GRAD_SAMPLERS.get(type(module), ft_compute_per_sample_gradient)
        if self.force_functorch:
            per_row = ft_compute_per_sample_gradient
        for param, gs in grouped_grad_samples(module, activations, backprops, k, per_row).items():
            create_or_accumulate_grad_sample(param=param, grad_sample=gs / k, max_batch_len=rows // k)
        # What GradSampleModule.capture_backprops_hook does after its samplers (counters, accumulation check).
        for _, p in trainable_parameters(module):
            p._forward_counter -= 1
            if p._forward_counter == 0:
                promote_current_grad_sample(p)
            if not self.grad_accumulation_allowed and isinstance(p.grad_sample, list) and len(p.grad_sample) > 1:
                raise ValueError("Poisson sampling is not compatible with grad accumulation: call optimizer.step() "
                                 "after every forward/backward pass")
        if len(module.activations) == 0 and hasattr(module, "max_batch_len"):
            del module.max_batch_len


@contextmanager
def grouped_rows(module: nn.Module, k: int) -> Iterator[None]:
    """Within the block, ``module`` (a :class:`GroupedGradSampleModule`) treats each K consecutive rows of a
    batch as one example: run the backward inside it. K = 1 is the per-row behaviour."""
    if not isinstance(module, GroupedGradSampleModule):
        raise TypeError(f"grouped_rows needs a GroupedGradSampleModule, got {type(module).__name__}")
    if k < 1:
        raise ValueError(f"rows per example must be >= 1, got {k}")
    before = module.rows_per_example
    module.rows_per_example = k
    try:
        yield
    finally:
        module.rows_per_example = before


class GroupedPrivacyEngine(PrivacyEngine):
    """Opacus's ``PrivacyEngine`` whose model wrapper is :class:`GroupedGradSampleModule`; call ``make_private``
    with ``grad_sample_mode="hooks"`` (the optimiser, data loader and accountant are Opacus's, unchanged)."""

    def _prepare_model(self, module: nn.Module, *, batch_first: bool = True, max_grad_norm=1.0,  # noqa: ANN001
                       loss_reduction: str = "mean", grad_sample_mode: str = "hooks",
                       wrap_model: bool = True) -> GroupedGradSampleModule:
        if grad_sample_mode != "hooks" or not wrap_model or isinstance(module, GradSampleModule):
            raise ValueError(f"GroupedPrivacyEngine wraps a plain module in hooks mode, got grad_sample_mode="
                             f"{grad_sample_mode!r}, wrap_model={wrap_model}, module {type(module).__name__}")
        self.validate(module=module, optimizer=None, data_loader=None)
        return GroupedGradSampleModule(module, batch_first=batch_first, loss_reduction=loss_reduction, strict=True)


__all__ = ["GROUPED_SAMPLERS", "GroupedGradSampleModule", "grouped_conv2d", "grouped_embedding", "grouped_grad_samples",
           "grouped_linear", "grouped_rows", "GroupedPrivacyEngine"]
