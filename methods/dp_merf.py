"""DP-MERF (Harder, Adamczewski, Park, AISTATS 2021): match a noisy mean embedding of random Fourier
features (RFF) of the raw pixels, i.e. minimise an approximate MMD with a Gaussian kernel.

The RFF map φ(x) = √(2/D)·[cos(Wx), sin(Wx)], W ∈ R^{D/2 × d} with rows ~ N(0, I/σ²_rff), has norm exactly
1 for every x, so the release is the same as DP-MEPF's (:mod:`.mean_embedding`, C = 1): noisy per-class
sums and noisy per-class counts, released once. W is drawn from a *public* seed (``rff_seed``, default the
method seed): it does not depend on the data. The generator then minimises Σ_k ‖μ̃_k − μ̂_fake,k‖².

Defaults follow the published DP-MERF code for MNIST ("digits"): D = 1,000 features, σ²_rff = 105 (127 for
FashionMNIST), noise code of 5 dims, the conv generator with a 200-unit hidden layer and (16, 8) channels,
batch 100, Adam lr 0.01 decayed ×0.9 per epoch for 5 epochs of 600 steps (= 3,000 steps, total ×0.59).
Their fixed noise multiplier (5) is replaced by the calibrated σ at the requested (ε, δ).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from dpgen_bench.method import Capabilities, MethodConfig

from .generator_method import ReleaseOnceConfig, ReleaseOnceMethod
from .generators import ConditionalGenerator, ConvCondGenerator, build_generator
from .mean_embedding import ReleasedEmbedding


class DPMERFConfig(ReleaseOnceConfig):
    """DP-MERF hyper-parameters (published MNIST defaults)."""

    n_features: int = Field(1000, ge=2)
    """D: number of random Fourier features (even: D/2 frequencies, cos and sin)."""
    rff_sigma2: float = Field(105.0, gt=0)
    """σ²_rff: squared kernel length-scale in flattened-pixel space ([0, 1] pixels); frequencies ~ N(0, 1/σ²)."""
    rff_seed: int | None = None
    """Public seed of the frequencies; None uses the method seed."""
    generator: Literal["auto", "conv", "resnet"] = "conv"
    z_dim: int | None = Field(5, ge=1)
    hidden: int = Field(200, ge=1)
    """Hidden units of the conv generator's first layer."""
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(100, ge=1)
    lr: float = Field(0.01, gt=0)
    lr_decay: float = Field(0.59, gt=0, le=1)
    """Total lr decay factor over training, applied geometrically (0.9⁵ ≈ 0.59 as published)."""
    embed_batch_size: int = Field(500, ge=1)

    @field_validator("n_features")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"n_features must be even (cos and sin pairs), got {v}")
        return v


class DPMERF(ReleaseOnceMethod):
    """DP-MERF; see the module docstring."""

    name: ClassVar[str] = "dp-merf"
    Config: ClassVar[type[MethodConfig]] = DPMERFConfig
    capabilities: ClassVar[Capabilities] = Capabilities(labelled=True, unlabelled=True, channels=(1, 3))
    tuned_on: ClassVar[str] = "paper"  # the paper's MNIST schedule (module docstring)
    conformance_config: ClassVar[dict[str, Any]] = {"n_features": 50, "steps": 2, "batch_size": 10}

    @classmethod
    def num_moments(cls, config: DPMERFConfig) -> int:
        return 1  # the random Fourier features

    def __init__(self, config, info, seed: int = 0, context=None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        rff_seed = self.seed if self.config.rff_seed is None else self.config.rff_seed
        gen = torch.Generator().manual_seed(rff_seed)
        d_in = info.channels * info.height * info.width
        w = torch.randn(self.config.n_features // 2, d_in, generator=gen) / self.config.rff_sigma2**0.5
        self.frequencies = w.to(self.device)

    def _build_generator(self) -> ConditionalGenerator:
        cfg = self.config
        classes = self.info.num_classes if cfg.labelled else 0
        size, ch = self.info.height, self.info.channels
        if cfg.generator == "conv" or (cfg.generator == "auto" and not (ch == 3 and size in (32, 64))):
            return ConvCondGenerator(size, ch, classes, z_dim=cfg.z_dim or 5, hidden=cfg.hidden)
        return build_generator(cfg.generator, size, ch, classes, cfg.z_dim)

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """RFF of the flattened pixels, (N, D), each row of norm exactly 1."""
        proj = images.flatten(1) @ self.frequencies.T
        scale = (2.0 / self.config.n_features) ** 0.5
        return {"rff": torch.cat([torch.cos(proj), torch.sin(proj)], dim=1) * scale}

    def train_generator(self, released: ReleasedEmbedding, steps: int | None = None) -> None:
        """Minimise the RFF-MMD to the released embedding (post-processing only)."""
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        real = released.means["rff"].to(self.device)
        k_classes = real.shape[0]
        opt = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay ** (1.0 / max(steps, 1)))
        gen = torch.Generator().manual_seed(self.seed + 1)
        self.generator.train()
        losses = []
        for step in tqdm(range(steps), desc=f"{self.name} generator", disable=not self.context.progress):
            labels = self._batch_labels(cfg.batch_size, gen)
            fake = self.generator(self.generator.sample_noise(cfg.batch_size, gen, self.device), labels)
            phi = self.embed(fake)["rff"]
            onehot = (torch.ones(cfg.batch_size, 1, device=self.device) if labels is None
                      else F.one_hot(labels, k_classes).float())
            n_b = onehot.sum(0)
            present = n_b > 0
            fake_means = (onehot[:, present] / n_b[present]).T @ phi
            loss = ((real[present] - fake_means) ** 2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 100 == 0 or step == steps - 1:
                losses.append((step, float(loss.detach())))
        self.history["loss"] = losses
