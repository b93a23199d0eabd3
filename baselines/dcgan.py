"""DCGAN-style generator and discriminator sized from a dataset's metadata, plus the DP-safety check for D.

Supported image sizes (square): 28 (7×7 base, two ×2 stages), 32 (4×4 base, three stages) and 64 (4×4 base,
four stages); 1 or 3 channels. Conditional models take class labels: G concatenates a one-hot label to its
noise vector, D receives the label as ``num_classes`` extra constant input channels (one-hot maps).

The discriminator is the part trained with DP-SGD, so it must make every example's output depend on that
example alone and must be compatible with Opacus's per-sample-gradient hooks: GroupNorm instead of BatchNorm,
no spectral norm, no in-place activations. :func:`validate_private_discriminator` enforces this.

The generator is per-example too (GroupNorm, no BatchNorm): the fakes in D's private step are generated
alongside the private batch, and with batch statistics every fake — and so every per-pair gradient D clips —
would depend on every other row of the batch (its labels, its size), so removing one example would change all
pairs and the clipping bound would no longer be the sensitivity. BatchNorm's running statistics would also be
an un-noised function of the private batches saved in the checkpoint. :func:`validate_per_example` checks G.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .per_sample_conv import PerSampleConv2d

# Square size -> (base spatial size, number of ×2 up/down-sampling stages).
_STAGES: dict[int, tuple[int, int]] = {28: (7, 2), 32: (4, 3), 64: (4, 4)}
SUPPORTED_SIZES: tuple[int, ...] = tuple(sorted(_STAGES))


class PrivateDiscriminatorError(ValueError):
    """A discriminator that cannot be trained privately with Opacus (the message names the layer)."""


def _stages(size: int) -> tuple[int, int]:
    if size not in _STAGES:
        raise ValueError(f"image size {size} is not supported; supported square sizes: {list(SUPPORTED_SIZES)}")
    return _STAGES[size]


def _group_count(channels: int) -> int:
    """Largest of 8, 4, 2, 1 groups that divides ``channels`` (GroupNorm needs an exact split)."""
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class Generator(nn.Module):
    """FC → base map → ``stages`` transposed convs (×2 each) → sigmoid; outputs images in [0, 1].

    Normalisation is GroupNorm, so each output depends on its own (z, label) only (see the module docstring).

    Args:
        channels, size: output image shape (C, size, size); size ∈ {28, 32, 64}.
        num_classes: 0 for an unconditional generator, else the number of classes K ≥ 2.
        z_dim: noise dimension (≥ 1).
        width: channels of the last hidden feature map (doubled at each coarser stage).
    """

    def __init__(self, channels: int, size: int, num_classes: int = 0, z_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        base, stages = _stages(size)
        self.channels, self.size, self.num_classes, self.z_dim = channels, size, num_classes, z_dim
        top = width * 2 ** (stages - 1)
        self.base, self.top = base, top
        self.fc = nn.Linear(z_dim + num_classes, top * base * base, bias=False)
        layers: list[nn.Module] = [nn.GroupNorm(_group_count(top), top), nn.ReLU()]
        c = top
        for i in range(stages - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.GroupNorm(_group_count(c // 2), c // 2),
                       nn.ReLU()]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("this generator is class-conditional: labels are required")
            z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)
        h = self.fc(z).view(-1, self.top, self.base, self.base)
        return self.net(h)


class Discriminator(nn.Module):
    """``stages`` strided 4×4 convs (GroupNorm after all but the first, LeakyReLU 0.2) → linear logit.

    Input images in [0, 1] are mapped to [-1, 1]. A conditional D appends ``num_classes`` one-hot label
    planes to its input. Every operation is per-example, as DP-SGD requires.
    """

    def __init__(self, channels: int, size: int, num_classes: int = 0, width: int = 64) -> None:
        super().__init__()
        base, stages = _stages(size)
        self.num_classes = num_classes
        # PerSampleConv2d: an nn.Conv2d that can skip the batch weight gradient DP-SGD discards.
        layers: list[nn.Module] = [PerSampleConv2d(channels + num_classes, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(stages - 1):
            layers += [PerSampleConv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(_group_count(2 * c), 2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * base * base, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of shape (N,) for images ``x`` (N, C, H, W) in [0, 1]."""
        x = 2.0 * x - 1.0
        if self.num_classes:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: labels are required")
            planes = F.one_hot(labels, self.num_classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, planes.expand(-1, -1, x.shape[2], x.shape[3])], dim=1)
        return self.head(self.features(x).flatten(1)).squeeze(1)


def _batch_coupling_problems(module: nn.Module) -> list[str]:
    """Layers that make one example's output depend on other rows of the batch (or keep running stats)."""
    problems = []
    for name, sub in module.named_modules():
        label = f"{name or '<root>'} ({type(sub).__name__})"
        if isinstance(sub, nn.modules.batchnorm._NormBase) and sub.track_running_stats:
            problems.append(f"{label} keeps running statistics; use GroupNorm")
        elif isinstance(sub, nn.modules.batchnorm._NormBase):
            problems.append(f"{label} is a batch/instance norm layer; use GroupNorm")
    return problems


def validate_per_example(module: nn.Module, role: str = "generator") -> None:
    """Raise :class:`PrivateDiscriminatorError` if ``module`` mixes rows of a batch (BatchNorm and kin).

    Used for G, whose outputs enter D's private step: each fake must depend on its own draw alone."""
    problems = _batch_coupling_problems(module)
    if problems:
        raise PrivateDiscriminatorError(f"the {role} must treat every example separately: " + "; ".join(problems))


def validate_private_discriminator(module: nn.Module) -> None:
    """Raise :class:`PrivateDiscriminatorError` unless ``module`` is safe to train with DP-SGD (Opacus).

    Checks Opacus's ``ModuleValidator`` (BatchNorm and other unsupported layers) and, explicitly, that no
    layer keeps running statistics (they mix examples and leak through buffers), no spectral norm is
    attached, and no activation works in place (Opacus's backward hooks need the original activations).
    """
    from opacus.validators import ModuleValidator

    problems: list[str] = _batch_coupling_problems(module)
    for name, sub in module.named_modules():
        label = f"{name or '<root>'} ({type(sub).__name__})"
        if getattr(sub, "inplace", False):
            problems.append(f"{label} works in place; use inplace=False")
        if hasattr(sub, "weight_orig") or any("spectral" in type(h).__name__.lower()
                                               for h in getattr(sub, "_forward_pre_hooks", {}).values()):
            problems.append(f"{label} has spectral norm attached")
        parametrizations = getattr(sub, "parametrizations", None)
        if parametrizations is not None:
            for pname, plist in parametrizations.items():
                if any("spectral" in type(p).__name__.lower() for p in plist):
                    problems.append(f"{label} has spectral norm on {pname!r}")
    for err in ModuleValidator.validate(module, strict=False):
        problems.append(f"Opacus ModuleValidator: {str(err).split('.')[0]}")
    if problems:
        raise PrivateDiscriminatorError(
            "the discriminator cannot be trained with DP-SGD: " + "; ".join(problems)
        )
