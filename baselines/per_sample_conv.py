"""A Conv2d for DP-SGD discriminators that skips the batch weight gradient Opacus would throw away.

Under Opacus's ``grad_sample_mode="hooks"`` the per-sample gradients come from backward hooks (module
input × gradient w.r.t. module output), and ``DPOptimizer`` rebuilds every ``.grad`` from their clipped sum
plus noise. The batch gradient that autograd also computes for each weight is therefore discarded work (a
weight-gradient convolution per layer and pass). :class:`PerSampleConv2d` with
``batch_grad=False`` uses a detached weight in its forward so autograd never computes it, and adds the bias
outside the convolution so the output still requires grad (Opacus's backward hook fires on it even for the
first layer, whose input does not require grad).

The per-sample gradients of :class:`PerSampleConv2d` come from :func:`per_sample_conv2d_grads`, registered
with Opacus as its grad sampler: one grouped weight-gradient convolution with the batch folded into the
groups, equal to Opacus's unfold-based sampler for ``nn.Conv2d`` (checked in tests) and faster on CPU for the
discriminator's shapes.

Only the hooks mode may switch ``batch_grad`` off: ``functorch`` and expanded-weights modes differentiate the
forward itself, so a detached weight would give them zero gradients. :func:`skip_batch_weight_grads` is the
one place that switches it, and the DP-GAN trainer calls it only in hooks mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PerSampleConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding, numeric ``padding`` only) with an opt-out of the batch weight gradient.

    Attributes:
        batch_grad: True (default) behaves exactly like ``nn.Conv2d``. False: forward gives the same output,
            but autograd computes no gradient for ``weight`` (``weight.grad`` stays None); the bias gradient is
            still computed. Set it only through :func:`skip_batch_weight_grads`, for Opacus hooks mode. A layer
            without bias ignores it (its output would not require grad, and Opacus's hook would never fire).
    """

    batch_grad: bool = True

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError(
                f"PerSampleConv2d supports zero padding given as numbers only, got padding={self.padding!r}, "
                f"padding_mode={self.padding_mode!r}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_grad or self.bias is None or not torch.is_grad_enabled():
            return super().forward(x)
        out = F.conv2d(x, self.weight.detach(), None, self.stride, self.padding, self.dilation, self.groups)
        return out + self.bias.view(1, -1, 1, 1)


def per_sample_conv2d_grads(
    layer: PerSampleConv2d, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradients of ``layer``'s weight (N, *weight.shape) and bias (N, out_channels).

    ``activations[0]`` is the layer input (N, C_in, H, W), ``backprops`` the gradient w.r.t. its output
    (N, C_out, H_out, W_out), already scaled by Opacus for the loss reduction. The N examples become N·groups
    groups of one convolution, whose weight gradient is exactly the stack of per-example gradients.
    """
    x = activations[0].to(backprops.dtype)
    n = x.shape[0]
    ret: dict[nn.Parameter, torch.Tensor] = {}
    if n == 0:  # an empty Poisson batch: one all-zero row, as Opacus's own samplers return
        if layer.weight.requires_grad:
            ret[layer.weight] = torch.zeros_like(layer.weight).unsqueeze(0)
        if layer.bias is not None and layer.bias.requires_grad:
            ret[layer.bias] = torch.zeros_like(layer.bias).unsqueeze(0)
        return ret
    if layer.weight.requires_grad:
        # aten's convolution backward with only the weight gradient requested, i.e. torch.nn.grad.conv2d_weight,
        # but given an uninitialised weight of the right shape: conv2d_weight passes an expanded scalar, which
        # the CPU kernel copies into an N× weight-sized buffer first.
        grads = torch.ops.aten.convolution_backward(
            backprops.reshape(1, n * layer.out_channels, *backprops.shape[2:]),
            x.reshape(1, n * layer.in_channels, *x.shape[2:]),
            x.new_empty((n * layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size)),
            None, layer.stride, layer.padding, layer.dilation, False, (0, 0), n * layer.groups,
            (False, True, False),
        )[1]
        ret[layer.weight] = grads.view(n, *layer.weight.shape)
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = backprops.sum(dim=(2, 3))
    return ret


_REGISTERED = False


def register_with_opacus() -> None:
    """Make :func:`per_sample_conv2d_grads` Opacus's grad sampler for :class:`PerSampleConv2d` (idempotent).

    Done on first use rather than at import, so that importing the baselines (e.g. ``dpgen-bench list``)
    does not pay for importing Opacus; :func:`~.dp_gan.make_private_discriminator` calls it."""
    global _REGISTERED
    if not _REGISTERED:
        from opacus.grad_sample import register_grad_sampler

        register_grad_sampler(PerSampleConv2d)(per_sample_conv2d_grads)
        _REGISTERED = True


def skip_batch_weight_grads(module: nn.Module) -> int:
    """Switch off the batch weight gradient in every :class:`PerSampleConv2d` of ``module``; returns how many.

    Call only on a module whose per-sample gradients come from Opacus hooks (``grad_sample_mode="hooks"``)
    and whose optimizer is Opacus's ``DPOptimizer``, which never reads autograd's batch gradient.
    """
    layers = [m for m in module.modules() if isinstance(m, PerSampleConv2d)]
    for layer in layers:
        layer.batch_grad = False
    return len(layers)
