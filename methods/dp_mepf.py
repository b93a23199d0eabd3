"""DP-MEPF (Harder, Jalali, Sutherland, Park, TMLR 2023): match a noisy mean embedding in the feature
space of a frozen network pre-trained on public data. See docs/dp_mepf.md and :mod:`.mean_embedding`.

1. Release once (ε, δ): per-example embeddings φ1(x) = C·f(x)/‖f(x)‖ and (variant ``phi1+phi2``)
   φ2(x) = C·(f(x)⊙f(x))/‖f(x)⊙f(x)‖, noisy per-class sums and noisy per-class counts.
2. Train the generator without touching the data again (post-processing), with the GFMN "Adam moving
   average" loss: per moment and class a vector m is fitted by its own Adam to μ̃_real − μ_fake, and the
   generator minimises Σ m⊙μ̃_real − Σ m⊙μ_fake. Generated images are embedded exactly like real ones.

Training length costs no privacy, and there is no model selection on private data.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import tqdm

from dpgen_bench.method import Capabilities, MethodConfig, build_config

from .generator_method import ReleaseOnceConfig, ReleaseOnceMethod
from .mean_embedding import ReleasedEmbedding, normalise_rows


class DPMEPFConfig(ReleaseOnceConfig):
    """DP-MEPF hyper-parameters. Defaults train mnist-5k in a few minutes on 2 CPU cores; the paper's
    settings are in :data:`PAPER_PRESETS`."""

    extractor: str = "efficientnet-lite0"
    """Feature extractor name (``dpgen_bench.features``)."""
    extractor_options: dict[str, Any] = Field(default_factory=dict)
    """Passed to ``get_extractor`` (e.g. ``{"layers": "all"}``)."""
    moments: Literal["phi1", "phi1+phi2"] = "phi1+phi2"
    sum_norm: float = Field(1.0, gt=0)
    """C: every per-example embedding (each moment) has L2 norm exactly C."""
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(100, ge=1)
    lr: float = Field(3e-4, gt=0)
    """Generator Adam learning rate."""
    ma_lr: float = Field(1e-3, gt=0)
    """Learning rate of the moving-average vectors' Adam."""
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    lr_decay: float = Field(0.5, gt=0, le=1)
    """Generator lr is multiplied by this factor, spread geometrically over training (1 = constant)."""


PAPER_PRESETS: dict[str, dict[str, Any]] = {
    # docs/dp_mepf.md / Harder et al. 2023: VGG19, 16 conv outputs before ReLU, φ1+φ2.
    "paper-mnist": {"extractor": "vgg19", "moments": "phi1+phi2", "generator": "conv", "batch_size": 100,
                    "steps": 100_000, "lr": 1e-3, "lr_decay": 1.0},
    "paper-cifar10": {"extractor": "vgg19", "moments": "phi1+phi2", "generator": "resnet", "batch_size": 128,
                      "steps": 200_000, "lr": 1e-3, "ma_lr": 1e-4, "lr_decay": 1.0},
}


class DPMEPF(ReleaseOnceMethod):
    """DP-MEPF; see the module docstring."""

    name: ClassVar[str] = "dp-mepf"
    Config: ClassVar[type[MethodConfig]] = DPMEPFConfig
    capabilities: ClassVar[Capabilities] = Capabilities(labelled=True, unlabelled=True, channels=(1, 3))

    tuned_on: ClassVar[str] = "mnist-5k:tuning"  # steps 1000, lr 3e-4: dpgen-bench tune on the tuning split (results/tune_dp_mepf_mnist5k)
    conformance_config: ClassVar[dict[str, Any]] = {
        "extractor": "random-cnn", "steps": 2, "batch_size": 10, "embed_batch_size": 64,
    }

    @classmethod
    def num_moments(cls, config: DPMEPFConfig) -> int:
        return 2 if config.moments == "phi1+phi2" else 1

    @classmethod
    def training_extractor(cls, config: DPMEPFConfig) -> str:  # type: ignore[override]
        """DP-MEPF matches embeddings in ``config.extractor``'s feature space."""
        return config.extractor

    @classmethod
    def training_extractor_options(cls, config: DPMEPFConfig) -> dict[str, Any]:  # type: ignore[override]
        return dict(config.extractor_options)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DPMEPFConfig:
        """A config from :data:`PAPER_PRESETS` with ``overrides`` applied."""
        if name not in PAPER_PRESETS:
            raise KeyError(f"unknown DP-MEPF preset {name!r}; available: {sorted(PAPER_PRESETS)}")
        return build_config(DPMEPFConfig, {**PAPER_PRESETS[name], **overrides})  # type: ignore[return-value]

    def __init__(self, config, info, seed: int = 0, context=None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        self._extractor = None

    @property
    def sum_norm(self) -> float:
        return float(self.config.sum_norm)

    # -- embedding (identical for real and generated images) ---------------------------------------------
    @property
    def extractor(self):
        if self._extractor is None:
            from dpgen_bench.features import get_extractor  # on use: listing methods stays cheap

            self._extractor = get_extractor(self.config.extractor, self.device, **self.config.extractor_options)
        return self._extractor

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example φ1 (and φ2), each row of norm exactly C; differentiable w.r.t. ``images``."""
        f = self.extractor(images)
        out = {"phi1": normalise_rows(f, self.config.sum_norm)}
        if self.config.moments == "phi1+phi2":
            out["phi2"] = normalise_rows(f * f, self.config.sum_norm)
        return out

    # -- training (post-processing of the release) ---------------------------------------------
    def train_generator(self, released: ReleasedEmbedding, steps: int | None = None) -> None:
        """GFMN moving-average training against ``released`` (post-processing: no private data here)."""
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        real = {k: v.to(self.device) for k, v in released.means.items()}
        k_classes = next(iter(real.values())).shape[0]
        ma = {k: torch.zeros_like(v, requires_grad=True) for k, v in real.items()}
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        opt_m = torch.optim.Adam(list(ma.values()), lr=cfg.ma_lr, betas=(cfg.beta1, cfg.beta2))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=cfg.lr_decay ** (1.0 / max(steps, 1)))
        gen = torch.Generator().manual_seed(self.seed + 1)
        self.generator.train()
        losses = []
        for step in tqdm(range(steps), desc=f"{self.name} generator", disable=not self.context.progress):
            loss = self.training_step(real, ma, opt_g, opt_m, k_classes, gen)
            sched.step()
            if step % 50 == 0 or step == steps - 1:
                losses.append((step, loss))
        self.history["loss"] = losses

    def training_step(self, real, ma, opt_g, opt_m, k_classes: int, gen: torch.Generator) -> float:
        """One generator step: embed a generated batch, update m, then the generator."""
        cfg = self.config
        labels = self._batch_labels(cfg.batch_size, gen)
        z = self.generator.sample_noise(cfg.batch_size, gen, self.device)
        fake = self.generator(z, labels)
        phis = self.embed(fake)
        if labels is None:
            onehot = torch.ones(cfg.batch_size, 1, device=self.device)
        else:
            onehot = F.one_hot(labels, k_classes).float()
        n_b = onehot.sum(0)
        present = n_b > 0
        w = onehot[:, present] / n_b[present]  # (B, K') column-normalised: per-class batch means
        fake_means = {k: w.T @ phi for k, phi in phis.items()}

        # 1) moving average m ≈ μ̃_real − μ_fake (its own Adam; the generator is not involved).
        opt_m.zero_grad(set_to_none=True)
        loss_m = sum(((ma[k][present] - (real[k][present] - fake_means[k].detach())) ** 2).sum()
                     for k in fake_means)
        loss_m.backward()
        opt_m.step()

        # 2) generator: minimise Σ m⊙μ̃_real − Σ m⊙μ_fake (the first term is constant in G).
        opt_g.zero_grad(set_to_none=True)
        loss_g = sum(((ma[k][present].detach()) * (real[k][present] - fake_means[k])).sum() for k in fake_means)
        loss_g.backward()
        opt_g.step()
        return float(loss_g.detach())
