"""``dp-ldm``: DP latent diffusion (Liu, Lyu, Vinaroz, Park; TMLR 2024). The autoencoder and the denoiser are
pre-trained on public data; DP-SGD fine-tunes only the attention/conditioning layers: every spatial transformer
of the latent U-Net (self- and cross-attention, their norms, feed-forward and projections — what DP-LDM's
``train_condition_only`` trains) and the class embedding. The shared model: ``baselines/latent_diffusion.py``;
``docs/latent_diffusion.md``."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from .latent_diffusion import LatentDiffusion, SpatialTransformer


class DPLDM(LatentDiffusion):
    """DP-LDM: DP-SGD on the spatial transformers and the class embedding of a publicly pre-trained latent
    diffusion model."""

    name: ClassVar[str] = "dp-ldm"

    def declared_trainable(self, net: nn.Module) -> set[str]:
        names: set[str] = set()
        for prefix, module in net.named_modules():
            if isinstance(module, SpatialTransformer) or prefix == "class_embedding":
                names |= {f"{prefix}.{p}" for p, _ in module.named_parameters()}
        return names


__all__ = ["DPLDM"]
