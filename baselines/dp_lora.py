"""``dp-lora``: DP-SGD on low-rank adapters (LoRA) of a publicly pre-trained latent diffusion model, as
DPImageBench's DP-LoRA: rank-r adapters on the attention projections (``to_q``, ``to_k``, ``to_v``, ``to_out``)
of every spatial transformer, everything else frozen. The adapters are peft's (``inject_adapter_in_model``):
each is a pair of plain ``nn.Linear`` layers (``lora_A``, ``lora_B``), whose per-sample gradients Opacus's
hooks (and the ``grouped`` mode) compute; ``tests/test_latent_diffusion.py`` checks them against per-example
autograd. The shared model: ``baselines/latent_diffusion.py``; ``docs/latent_diffusion.md``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from torch import nn

from .latent_diffusion import LatentDiffusion, LatentDiffusionConfig, LatentUNet


class DPLoRAConfig(LatentDiffusionConfig):
    """The latent model's settings plus the adapters'."""

    lr: float = Field(
        1e-2, gt=0, le=1.0, description="Adam learning rate of the DP fine-tuning of the adapters (paper configs: "
        "3e-4; the CPU default 1e-2 was chosen by dpgen-bench tune on mnist-5k's tuning split from 2e-3, 1e-2, "
        "3e-2: results/tune_dp_lora_mnist5k)")
    lora_rank: int = Field(8, ge=1, le=1024, description="rank r of every adapter (DPImageBench: 8)")
    lora_alpha: float = Field(8.0, gt=0, le=1e4, description="adapter scaling α (the update is (α/r)·B·A·x)")
    lora_targets: tuple[str, ...] = Field(
        ("to_q", "to_k", "to_v", "to_out"), min_length=1,
        description="names of the Linear layers that get adapters (DPImageBench: the attention projections)")
    train_class_embedding: bool = Field(
        False, description="also fine-tune the class embedding (needed when the pre-trained weights have another "
        "class count; the public digits pre-training has the private classes)")

    not_in_pretraining: ClassVar[frozenset[str]] = LatentDiffusionConfig.not_in_pretraining | {
        "lora_rank", "lora_alpha", "lora_targets", "train_class_embedding"}


class DPLoRA(LatentDiffusion):
    """DP-LoRA: DP-SGD on the adapters alone (and the class embedding if configured)."""

    name: ClassVar[str] = "dp-lora"
    Config: ClassVar[type[DPLoRAConfig]] = DPLoRAConfig
    config: DPLoRAConfig

    def _adapt(self, base: LatentUNet) -> nn.Module:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            raise ImportError("dp-lora needs peft: pip install 'dpgen-bench[lora]' (or pip install peft)") from None
        cfg = self.config
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.lora_targets),
                          lora_dropout=0.0, bias="none")
        return inject_adapter_in_model(lora, base)

    def declared_trainable(self, net: nn.Module) -> set[str]:
        names = {n for n, _ in net.named_parameters() if ".lora_A." in n or ".lora_B." in n}
        if self.config.train_class_embedding:
            names.add("class_embedding.weight")
        return names


__all__ = ["DPLoRA", "DPLoRAConfig"]
