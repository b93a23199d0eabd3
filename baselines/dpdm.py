"""``dpdm``: a diffusion model trained with DP-SGD through Opacus (Dockhorn et al., TMLR 2023), optionally
pre-trained on public data first (PDP-Diffusion). See ``docs/dpdm.md``.

What comes from libraries and what is written here:

* the network is diffusers' ``UNet2DModel`` (GroupNorm, ``DownBlock2D``/``AttnDownBlock2D``, attention in the
  lowest-resolution block and the mid block, optional class embedding), with every ``nn.Conv2d`` swapped for
  :class:`~.per_sample_conv.PerSampleConv2d` (same weights and output). The swap is needed for correctness, not
  only speed: Opacus 1.6.0's conv grad sampler (``opacus.utils.tensor_utils.unfold2d``) returns wrong
  per-sample gradients for inputs with channels-last strides, which diffusers' attention blocks produce
  (``transpose(...).reshape(...)`` back to NCHW), so every conv after the first attention got wrong rows
  (found by comparing with per-example autograd; ``tests/test_dpdm.py`` checks every parameter).
  ``PerSampleConv2d``'s grad sampler reshapes logically and is right for any strides;
* EDM preconditioning (c_in, c_skip, c_out, c_noise) and the Karras σ schedule and Euler step of the
  deterministic sampler are diffusers' ``EDMEulerScheduler``;
* written here: the log-normal noise levels and EDM loss weight λ(σ) (the scheduler has no training loss),
  noise multiplicity, the DP-SGD loop, EMA and public pre-training.

Privacy argument (add/remove-one neighbouring, docs/privacy.md, docs/dpdm.md):

* Only the denoiser's DP-SGD steps touch private data. Each step draws a Poisson batch at rate
  q = batch_size / n̂ (n̂ = ``train.public_size()``, the declared size), so each step is one
  Poisson-subsampled Gaussian mechanism with noise multiplier σ from the shared calibrator for the plan
  (q, ``dpsgd_steps(n̂, batch_size, epochs)``); the ledger gets the steps Opacus actually noised.
* **Noise multiplicity**: example i is repeated K times, each copy with its own noise level and noise; the
  forward/backward runs on the B·K rows and Opacus's hooks give B·K per-row gradients, which
  :func:`average_over_draws` replaces by the mean over each example's K rows *before* the optimizer clips.
  The clipped unit is therefore ∇ (1/K Σ_k ℓ(x_i, σ_ik, n_ik)): a function of example i and its own draws
  only, with norm ≤ C, so the sensitivity stays C whatever K is and K costs no privacy. (Clipping the B·K rows
  separately would give a sensitivity of K·C.)
* The per-example draws (σ_ik, n_ik) are the mechanism's internal randomness and come from OS entropy, like
  the batch selection and the gradient noise; their amount follows the private batch size, so a public
  stream would leak it. GroupNorm only (no BatchNorm): each row depends on its own example alone (checked by
  the conformance suite through :meth:`DPDM.gradient_probe`).
* An empty Poisson batch still takes a noise-only step (skipping it would reveal the empty batch).
* EMA, sampling and checkpoints are post-processing. Class labels for sampling are balanced (public).
* Public pre-training (``RunContext.public_data``) never sees private data and costs no privacy; the runner
  refuses public data of the private dataset's family. It is cached in ``RunContext.cache_dir`` under a hash
  of the public data's content, the pre-training settings and the seed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dpgen_bench.audit.canaries import dpsgd_canary
from dpgen_bench.context import RunContext
from dpgen_bench.data.loaders import poisson_loader
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.files import atomic_path
from dpgen_bench.method import BrokenVariant, Capabilities, GenerativeMethod, GradientProbe, MethodConfig
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate
from dpgen_bench.privacy.dpsgd import active_transforms
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import public_generator, release_generator
from dpgen_bench.privacy.plans import dpsgd_plan_from_settings

from .dp_sgd import GradSampleMode, groups_rows, make_private_module
from .per_sample_conv import PerSampleConv2d
from .dpsgd_rows import nonfinite_rows, parameters_finite, step_in_fixed_chunks, zero_rows

if TYPE_CHECKING:
    from diffusers import EDMEulerScheduler, UNet2DModel

SUPPORTED_SIZES: tuple[int, ...] = (8, 16, 28, 32, 64)
"""Square sizes the default 3-level U-Net handles (each halves twice to an integer)."""


class TrainingDivergedError(RuntimeError):
    """The diffusion loss became NaN or infinite; the message names the step."""


NOT_IN_PRETRAINING = frozenset({"epochs", "batch_size", "lr", "max_grad_norm", "ema_decay", "sampler_steps",
                                "guidance_scale", "sample_batch_size", "grad_sample_mode"})
"""DPDM fields public pre-training never reads (DP fine-tuning and sampling only); every other field is part of
the pre-training cache key (noise multiplicity K included: it sets the draws per example)."""


class DPDMConfig(MethodConfig):
    """Hyper-parameters of DPDM. Defaults train ``mnist-5k`` (4,000 images, 28×28) on 2 CPU cores in under
    four minutes (measured 198–209 s; acc-logreg 0.66 / 0.75 at ε = 1 / 10, ``results/dpdm_mnist5k/``);
    ``configs/dpdm-*.yaml`` hold the paper-scale settings for GPUs (batch 4096, 300 epochs, K=32, EDM's
    ``p_mean`` −1.2).

    A "step" is one DP-SGD update on one Poisson batch at rate q = batch_size / n̂ (n̂ the private split's
    declared size); there are ``dpsgd_steps(n̂, batch_size, epochs)`` of them.
    """

    conditional: bool = Field(True, description="class-conditional (label embedding) or unconditional")
    epochs: float = Field(10.0, gt=0, le=10_000, description="expected passes over the private data, > 0")
    batch_size: int = Field(100, ge=1, le=65_536, description="expected Poisson batch size B (q = B / n̂)")
    noise_multiplicity: int = Field(
        2, ge=1, le=1024, description="K: noise draws per example averaged before clipping (paper: 32); costs no "
        "privacy, multiplies compute by K")
    lr: float = Field(2e-3, gt=0, le=1.0, description="Adam learning rate of the DP fine-tuning (paper: 3e-4 at "
                      "batch 4096)")
    max_grad_norm: float = Field(1.0, gt=0, description="per-example L2 clipping bound C")
    ema_decay: float | None = Field(
        0.95, ge=0, lt=1, description="EMA decay per step (paper: 0.999 over ~300 epochs; 0.95 suits the default's "
        "400 steps); None samples from the raw weights")
    p_mean: float = Field(
        1.0, ge=-10, le=10, description="mean of ln σ of the training noise levels (EDM and the DPDM paper: -1.2, "
        "the paper configs; the CPU default 1.0 weights the high noise levels that set a digit's shape, which DP "
        "noise at 400 steps otherwise leaves unlearnt: docs/dpdm.md)")
    p_std: float = Field(1.2, gt=0, le=10, description="std of ln σ of the training noise levels (EDM, DPDM)")
    sigma_data: float = Field(0.5, gt=0, le=10, description="data std σ_d of EDM preconditioning (images in [-1, 1])")
    sigma_min: float = Field(0.002, gt=0, description="smallest σ of the sampler's Karras schedule")
    sigma_max: float = Field(80.0, gt=0, description="largest σ of the sampler's Karras schedule")
    label_dropout: float = Field(
        0.0, ge=0, lt=1, description="probability that a training row's label is replaced by the null class, so "
        "one network is both conditional and unconditional (classifier-free guidance training; DPDM's code: 0.1, "
        "the paper configs here); 0: no null class")
    guidance_scale: float = Field(
        0.0, ge=0, le=20, description="classifier-free guidance w of the sampler: (1 + w)·D(x; σ, y) − w·D(x; σ, ∅), "
        "DPDM's convention (0: plain conditional sampling; paper configs: 0); needs label_dropout > 0")
    sampler_steps: int = Field(
        25, ge=1, le=2000, description="deterministic Euler (DDIM-equivalent) sampler steps (paper configs: 50)")
    channels: tuple[int, ...] = Field(
        (8, 16, 16), min_length=2, max_length=5,
        description="U-Net channels per resolution level (each level after the first halves the size); the last "
        "level and the mid block have self-attention")
    layers_per_block: int = Field(1, ge=1, le=8, description="residual blocks per U-Net level")
    norm_groups: int = Field(4, ge=1, le=128, description="GroupNorm groups (must divide every channel count)")
    attention_head_dim: int = Field(8, ge=1, le=512, description="channels per attention head")
    grad_sample_mode: Literal["hooks", "functorch", "grouped"] = Field(
        "grouped", description="how per-example gradients are computed: grouped (one gradient per example straight "
        "from the hooks, never the B·K per-row ones: docs/dpsgd_speed.md), or Opacus's hooks / functorch (per-row "
        "gradients, then the K-average); 'ew' does not run on diffusers' U-Net")
    pretrain_epochs: float = Field(
        10.0, gt=0, le=100_000, description="passes over the public data when the run provides one (no privacy)")
    pretrain_batch_size: int = Field(128, ge=1, le=65_536, description="batch size of public pre-training")
    pretrain_lr: float = Field(2e-3, gt=0, le=1.0, description="Adam learning rate of public pre-training")
    sample_batch_size: int = Field(500, ge=1, le=65_536, description="images per sampler batch (memory only)")
    physical_batch_size: int | None = Field(
        None, ge=1, le=65_536, description="examples per forward/backward chunk of a DP-SGD step (memory only: "
        "the step, its clipping and its noise are unchanged); None: the whole Poisson batch at once")

    @field_validator("channels")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(c < 1 for c in v):
            raise ValueError(f"channel counts must be >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _groups_divide(self) -> "DPDMConfig":
        bad = [c for c in self.channels if c % self.norm_groups]
        if bad:
            raise ValueError(f"norm_groups={self.norm_groups} must divide every channel count, not {bad}")
        bad = [c for c in self.channels if c % self.attention_head_dim]
        if bad:
            raise ValueError(f"attention_head_dim={self.attention_head_dim} must divide every channel count, not {bad}")
        if self.guidance_scale > 0 and not (self.conditional and self.label_dropout > 0):
            raise ValueError(f"guidance_scale={self.guidance_scale} needs a conditional model trained with "
                             f"label_dropout > 0 (got conditional={self.conditional}, label_dropout={self.label_dropout})")
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min={self.sigma_min} must be below sigma_max={self.sigma_max}")
        return self

    not_in_pretraining: ClassVar[frozenset[str]] = NOT_IN_PRETRAINING
    """The fields public pre-training never reads (a subclass adds its fine-tuning-only fields)."""

    def pretrain_key_fields(self) -> dict[str, Any]:
        """The settings a pre-trained network may depend on, for its cache key: every field except those only
        DP fine-tuning or sampling reads (:data:`NOT_IN_PRETRAINING`), so a new field is in the key by default."""
        return {k: getattr(self, k) for k in sorted(type(self).model_fields) if k not in self.not_in_pretraining}


# ------------------------------------------------------------------------------------------ the network


def build_unet(info: DatasetInfo, cfg: DPDMConfig) -> "UNet2DModel":
    """diffusers ``UNet2DModel`` for ``info``'s images, attention at the lowest resolution, convs made
    :class:`PerSampleConv2d` (see the module docstring for why). With ``label_dropout`` > 0 a conditional net has
    one class embedding more than the dataset has classes: index ``num_classes`` is the null label."""
    from diffusers import UNet2DModel

    levels = len(cfg.channels)
    down = ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",)
    up = ("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1)
    net = UNet2DModel(
        sample_size=info.height, in_channels=info.channels, out_channels=info.channels,
        layers_per_block=cfg.layers_per_block, block_out_channels=tuple(cfg.channels),
        down_block_types=down, up_block_types=up, norm_num_groups=cfg.norm_groups,
        attention_head_dim=cfg.attention_head_dim,
        num_class_embeds=(info.num_classes + (cfg.label_dropout > 0)) if cfg.conditional else None,
    )
    swap_convs(net)
    return net


def swap_convs(module: nn.Module) -> int:
    """Replace every plain ``nn.Conv2d`` in ``module`` by a :class:`PerSampleConv2d` with the same weights."""
    count = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d:
            new = PerSampleConv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                  padding=child.padding, dilation=child.dilation, groups=child.groups,
                                  bias=child.bias is not None)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
            count += 1
        else:
            count += swap_convs(child)
    return count


def validate_private_net(net: nn.Module) -> None:
    """No BatchNorm (or any running statistics) in the private network: rows must not mix examples."""
    for name, m in net.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "track_running_stats", False):
            raise ValueError(f"{name} ({type(m).__name__}) keeps batch statistics; DP-SGD needs per-example layers")


def edm_scheduler(cfg: DPDMConfig) -> "EDMEulerScheduler":
    from diffusers import EDMEulerScheduler

    return EDMEulerScheduler(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, sigma_data=cfg.sigma_data,
                             prediction_type="epsilon")


def denoise(net: nn.Module, scheduler: "EDMEulerScheduler", x: torch.Tensor, sigma: torch.Tensor,
            labels: torch.Tensor | None) -> torch.Tensor:
    """EDM denoiser D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x; c_noise(σ)), σ of shape (N,)."""
    s = sigma.view(-1, 1, 1, 1)
    out = net(scheduler.precondition_inputs(x, s), scheduler.precondition_noise(sigma), class_labels=labels).sample
    return scheduler.precondition_outputs(x, out, s)


def edm_row_losses(net: nn.Module, scheduler: "EDMEulerScheduler", cfg: DPDMConfig, x: torch.Tensor,
                   labels: torch.Tensor | None, draws: torch.Tensor) -> torch.Tensor:
    """Per-row EDM loss λ(σ)·mean‖D(x + σn; σ, y') − x‖², λ(σ) = (σ² + σ_d²)/(σ·σ_d)², ln σ = P_mean + P_std·u.

    ``x`` in [-1, 1], (N, C, H, W); ``draws`` (N, 1 + C·H·W [+ 1]): u, the standard normal noise n, and with
    ``label_dropout`` > 0 a last column v: y' is the null label (index ``num_classes``) where Φ(v) <
    ``label_dropout``, else the row's label."""
    sigma = torch.exp(cfg.p_mean + cfg.p_std * draws[:, 0])
    noise = draws[:, 1:1 + x[0].numel()].view_as(x)
    if labels is not None and cfg.label_dropout > 0:
        labels = drop_labels(labels, draws[:, -1], cfg.label_dropout, net_null_label(net))
    weight = (sigma**2 + cfg.sigma_data**2) / (sigma * cfg.sigma_data) ** 2
    denoised = denoise(net, scheduler, x + sigma.view(-1, 1, 1, 1) * noise, sigma, labels)
    return weight * ((denoised - x) ** 2).flatten(1).mean(1)


def drop_labels(labels: torch.Tensor, v: torch.Tensor, p: float, null: int) -> torch.Tensor:
    """``labels`` with the rows where Φ(v) < p (v standard normal, so probability p each) set to ``null``."""
    if p == 0:
        return labels
    return torch.where(torch.special.ndtr(v) < p, torch.full_like(labels, null), labels)


def net_null_label(net: nn.Module) -> int:
    """The null-label index of a conditional U-Net (its last class embedding); also through Opacus's wrapper."""
    unet = getattr(net, "_module", net)
    return unet.class_embedding.num_embeddings - 1


def average_over_draws(net: nn.Module, k: int) -> None:
    """Noise multiplicity: replace each parameter's (B·K, ...) per-row gradients by the (B, ...) means over each
    example's K consecutive rows, so what Opacus then clips is the gradient of the K-averaged loss."""
    if k == 1:
        return
    for p in net.parameters():
        gs = getattr(p, "grad_sample", None)
        if gs is None:
            continue
        if gs.shape[0] % k:
            raise RuntimeError(f"grad_sample has {gs.shape[0]} rows, not a multiple of K={k}")
        p.grad_sample = gs.view(gs.shape[0] // k, k, *gs.shape[1:]).mean(1)


def trainable(net: nn.Module) -> list[nn.Parameter]:
    """The parameters DP-SGD trains (``requires_grad``): all of DPDM's, a subset in a latent model."""
    return [p for p in net.parameters() if p.requires_grad]


def make_private_denoiser(net: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *,
                          noise_multiplier: float, max_grad_norm: float, expected_batch_size: int,
                          grad_sample_mode: GradSampleMode = "hooks"):
    """Wrap ``net`` and ``optimizer`` for DP-SGD (Opacus); gradient noise from OS entropy, never the run seed.
    ``expected_batch_size`` is B (examples, not B·K rows): the divisor of the noisy sum of clipped rows."""
    validate_private_net(net)
    net, optimizer, engine = make_private_module(
        net, optimizer, loader, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        grad_sample_mode=grad_sample_mode, noise_generator=release_generator(next(net.parameters()).device))
    optimizer.expected_batch_size = expected_batch_size  # Opacus derives it from len(loader)
    return net, optimizer, engine


# ------------------------------------------------------------------------------------------ the method


class DPDM(GenerativeMethod):
    """DP diffusion model (EDM loss, noise multiplicity, DP-SGD with Opacus); with ``RunContext.public_data``
    it pre-trains on the public data first (PDP-Diffusion)."""

    name: ClassVar[str] = "dpdm"
    Config: ClassVar[type[MethodConfig]] = DPDMConfig
    config: DPDMConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        labelled=True, unlabelled=True, channels=(1, 3), image_sizes=SUPPORTED_SIZES, dp_sgd=True, public_data=True
    )
    # p_mean, EMA: first chosen by ~17 probe fits on the reported split, then re-chosen (the same values) by
    # `dpgen-bench tune` on the tuning split alone (docs/dpdm.md, results/tune_dpdm_mnist5k).
    tuned_on: ClassVar[str] = "mnist-5k:tuning"
    conformance_config: ClassVar[dict[str, Any]] = {
        "epochs": 1, "batch_size": 16, "noise_multiplicity": 2, "channels": (8, 8), "norm_groups": 4,
        "attention_head_dim": 4, "sampler_steps": 2, "pretrain_epochs": 1,
    }

    def __init__(self, config: DPDMConfig | dict[str, Any] | None, info: DatasetInfo, seed: int = 0,
                 context: RunContext | None = None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        if self.config.conditional and info.num_classes < 2:
            raise ValueError(f"conditional {self.name} needs >= 2 classes, dataset has {info.num_classes}")
        with torch.random.fork_rng(devices=[]):  # public initialisation, global RNG untouched
            torch.manual_seed(self.seed)
            self.net = self._build_net().to(self.device)
        self.scheduler = edm_scheduler(self.config)
        self.ema: nn.Module | None = None
        self.noise_multiplier: float | None = None
        self.steps_taken = 0
        self.sample_rate: float | None = None
        self.pretrained_on: str | None = None

    @property
    def samples_labelled(self) -> bool:
        return self.config.conditional

    # -- what a subclass that diffuses elsewhere (a latent space: baselines/latent_diffusion.py) replaces ----
    pretrain_family: ClassVar[str] = "dpdm"
    """Name of the public pre-training this method shares (its cache folder and key): methods of one family
    pre-train the same network from the same settings."""

    def _build_net(self) -> nn.Module:
        """The denoiser network (called once, under the seeded public initialisation)."""
        levels = len(self.config.channels)
        if self.info.height % 2 ** (levels - 1):
            raise ValueError(f"image size {self.info.height} does not halve {levels - 1} times; use fewer channel levels")
        return build_unet(self.info, self.config)

    @property
    def model_shape(self) -> tuple[int, ...]:
        """(C, H, W) of what the denoiser diffuses: the images themselves here."""
        return self.info.shape

    def _to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> what the denoiser diffuses ([-1, 1] pixels here). Per example: row i depends on
        image i only."""
        return x * 2 - 1

    def _from_model_space(self, z: torch.Tensor) -> torch.Tensor:
        """The sampler's output -> images in [0, 1]."""
        return ((z + 1) / 2).clamp_(0, 1)

    def _public_start(self, public: ImageDataset | None) -> dict[str, Any] | None:
        """The public state the DP steps start from: the pre-training on ``public`` (cached; :meth:`fit` passes
        :meth:`pretraining_data`), or None (the seeded initialisation)."""
        if public is None:
            return None
        return self.pretrained_state(public)

    def _load_pretrained(self, net: nn.Module, state: dict[str, Any]) -> None:
        """Load :meth:`pretrained_state`'s output into ``net`` (the network the DP steps then train)."""
        net.load_state_dict(state)

    def _before_private_training(self) -> None:
        """Called by :meth:`fit` after public pre-training is loaded, before the first step (a subclass checks its
        trainable set here)."""

    def _after_private_training(self) -> None:
        """Called by :meth:`fit` after the last step."""

    @classmethod
    def capabilities_for(cls, config: DPDMConfig) -> Capabilities:  # type: ignore[override]
        levels = len(config.channels)
        sizes = tuple(s for s in SUPPORTED_SIZES if s % 2 ** (levels - 1) == 0)
        return Capabilities(labelled=config.conditional, unlabelled=not config.conditional, channels=(1, 3),
                            image_sizes=sizes, dp_sgd=True, public_data=True)

    @classmethod
    def privacy_plan(cls, config: DPDMConfig, nominal_size: int):  # type: ignore[override]
        """``dpsgd_steps(n̂, batch_size, epochs)`` Poisson-subsampled steps at q = batch_size / n̂."""
        return dpsgd_plan_from_settings(nominal_size, config.batch_size, epochs=config.epochs)

    # -- per-example draws and the loss of one batch -------------------------------------------------
    def draws(self, m: int, generator: torch.Generator, device: torch.device | str | None = None) -> torch.Tensor:
        """(m, K, 1 + C·H·W [+ 1]) standard normals: per example, K (noise level, noise image[, label dropout])
        draws, on ``device`` (None: the model's)."""
        c, h, w = self.model_shape
        extra = 1 if self.config.conditional and self.config.label_dropout > 0 else 0
        return torch.randn(m, self.config.noise_multiplicity, 1 + c * h * w + extra, generator=generator,
                           device=generator.device).to(self.device if device is None else device)

    def _backward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor, step: int) -> None:
        """Forward/backward of the K-repeated batch in one pass; leaves the per-example (K-averaged) rows of the
        whole batch in each parameter's ``grad_sample`` (the rows the optimiser clips: the gradient probe's view,
        and the private step when ``physical_batch_size`` is None)."""
        params = [p for p in net.parameters() if p.requires_grad]
        if x.shape[0] == 0:
            # An empty Poisson batch: diffusers' attention cannot run on 0 rows, so give the optimiser what
            # Opacus's own samplers return for one (a single all-zero row); the step then adds noise only.
            for p in params:
                p.grad_sample = torch.zeros(1, *p.shape, device=p.device, dtype=p.dtype)
            return
        self._chunk_backward(net, x, y, draws, step)

    def _private_step(self, net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                      draws: torch.Tensor, step: int) -> None:
        """One DP-SGD step on the Poisson batch ``x``. With ``physical_batch_size`` P, the batch is padded with
        masked rows to a multiple of P and processed in chunks of exactly P examples, each clipped and summed
        into the optimiser's accumulator (Opacus's skip-step accumulation) before one noised update: memory is
        a function of the public P alone, never of the private batch size (an empty batch is one masked chunk).
        The clipped sum, its noise and the divisor B are those of the one-pass step."""
        chunk = self.config.physical_batch_size
        if chunk is None:
            self._backward(net, x, y, draws, step)
            opt.step()
            return
        step_in_fixed_chunks(opt, [p for p in net.parameters() if p.requires_grad], (x, y, draws), chunk,
                             lambda part: self._chunk_backward(net, *part, step), device=self.device)

    def _chunk_backward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor, step: int) -> None:
        k = self.config.noise_multiplicity
        rows_x = self._to_model_space(x).repeat_interleave(k, dim=0)  # example i's K copies: rows iK .. iK+K-1
        labels = y.repeat_interleave(k) if self.config.conditional else None
        losses = edm_row_losses(net, self.scheduler, self.config, rows_x, labels, draws.flatten(0, 1))
        # "mean" reduction over the B·K rows: Opacus scales each row back to ∇ℓ_row, and the K-average below
        # turns them into ∇ of example i's mean loss. max(., 1) survives an empty batch.
        # No check of this loss: it is computed on the private batch, so stopping on it would release an
        # un-noised bit. A non-finite row is zeroed instead (a function of its own example: sensitivity holds),
        # and divergence is judged on the parameters after the noised step (post-processing).
        loss = losses.sum() / max(losses.shape[0], 1)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            if groups_rows(net):  # grouped: the hooks give the K-averaged rows
                from .grouped_grad_sample import grouped_rows

                with grouped_rows(net, k):
                    loss.backward()
            else:
                loss.backward()
                self._rows_per_example(net, k)
        params = [p for p in net.parameters() if p.requires_grad]
        zero_rows(params, nonfinite_rows(params))

    def _rows_per_example(self, net: nn.Module, k: int) -> None:
        """Hooks/functorch modes: turn the B·K per-row gradients into the B per-example rows the optimiser clips
        (:func:`average_over_draws`). The ``per-row-clip`` broken variant skips this."""
        average_over_draws(net, k)

    # -- training ----------------------------------------------------------------------------------
    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        """Pre-train on ``context.public_data`` if given (cached), then DP fine-tune on ``train``.

        q, steps and σ use ``train.public_size()``; ``budget.epsilon == inf`` trains without Opacus."""
        cfg = self.config
        if train.info.shape != self.info.shape:
            raise ValueError(f"training images have shape {train.info.shape}, the model was built for {self.info.shape}")
        plan = self.privacy_plan(cfg, train.public_size())  # what is calibrated: DP-SGD, plus any release before it
        (planned,) = dpsgd_plan_from_settings(train.public_size(), cfg.batch_size, epochs=cfg.epochs)(1.0)
        q, total_steps = planned.sample_rate, planned.steps
        self.sample_rate = q
        if budget.is_private:
            self.capabilities.check_accountant(budget.accountant)
        start = self._public_start(self.pretraining_data(train, budget, ledger))
        if start is not None:
            self._load_pretrained(self.net, start)
        self._before_private_training()
        sigma = float(calibrate(plan, budget)) if budget.is_private else None
        self._dp_sgd(train, sigma, q, total_steps, ledger)
        self._after_private_training()

    def _dp_sgd(self, train: ImageDataset, sigma: float | None, q: float, total_steps: int,
                ledger: PrivacyLedger) -> None:
        """The DP-SGD phase of :meth:`fit` from the current weights: ``total_steps`` Poisson-sampled steps at rate
        ``q`` with noise multiplier ``sigma`` (calibrated by the caller for its whole plan; None: non-private, no
        Opacus), recorded in ``ledger`` as one subsampled Gaussian event of the steps actually taken."""
        cfg = self.config
        private = sigma is not None
        self.sample_rate = q
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if cfg.ema_decay is not None else None

        net: nn.Module = self.net.train()
        opt: torch.optim.Optimizer = torch.optim.Adam(trainable(net), lr=cfg.lr)
        # Batch selection, per-example draws and gradient noise are the mechanism's secret randomness.
        loader = poisson_loader(train, q) if private else poisson_loader(train, q, self.seed + 1)
        # In fixed chunks the Poisson batch and its draws stay on the host: the device then holds one chunk of them
        # at a time, never an amount that follows the private batch size.
        batch_device = torch.device("cpu") if private and cfg.physical_batch_size is not None \
            else torch.device(self.device)
        draw_gen = release_generator(batch_device) if private else public_generator(
            self.seed, "draws", device=self.device)
        counted = [0]
        if private:
            self.noise_multiplier = sigma
            net, opt, engine = make_private_denoiser(
                net, opt, loader, noise_multiplier=self.noise_multiplier, max_grad_norm=cfg.max_grad_norm,
                expected_batch_size=cfg.batch_size, grad_sample_mode=cfg.grad_sample_mode)
            self._opacus_accountant = engine.accountant  # cross-check only; the ledger is authoritative
            opacus_hook = opt.step_hook

            def _count(o: Any) -> None:  # runs once per noised step
                counted[0] += 1
                if opacus_hook is not None:
                    opacus_hook(o)

            opt.attach_step_hook(_count)
        self._net, self._opt = net, opt  # for tests
        try:
            self._train_loop(net, opt, loader, draw_gen, total_steps, counted, private, batch_device)
        finally:
            self.steps_taken = counted[0]
            if private and counted[0] > 0:
                ledger.record(
                    PoissonSubsampledGaussianEvent(self.noise_multiplier, q, counted[0]),
                    f"{self.name}: {counted[0]} DP-SGD steps (q={q:.6g}, sigma={self.noise_multiplier:.6g}, "
                    f"C={cfg.max_grad_norm}, K={cfg.noise_multiplicity})",
                )
        self.net.eval()

    def pretraining_data(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> ImageDataset | None:
        """The public data :meth:`fit` pre-trains on before its DP-SGD steps: ``context.public_data`` (None: no
        pre-training). A subclass may derive it from the private data through a release it records in
        ``ledger`` (PrivImage's semantic query), which :meth:`privacy_plan` must then declare."""
        return self.context.public_data

    def _train_loop(self, net, opt, loader, draw_gen, total_steps: int, counted: list[int], private: bool,
                    batch_device: torch.device) -> None:
        """The steps of ``fit``; a private step's batch and draws are put on ``batch_device`` (the host in fixed
        chunks)."""
        dev = self.device
        step = 0
        with tqdm(total=total_steps, desc="dpdm steps", leave=False, disable=not self.context.progress) as bar:
            batches = iter(loader)
            while step < total_steps:
                try:
                    x, y = next(batches)
                except StopIteration:
                    batches = iter(loader)
                    continue
                opt.zero_grad(set_to_none=True)
                if private:
                    at = batch_device
                    self._private_step(net, opt, x.to(at), y.to(at), self.draws(x.shape[0], draw_gen, at), step)
                    if not parameters_finite(self.net):  # decided on the noised update: post-processing
                        raise TrainingDivergedError(f"parameters are not finite after noised step {step + 1}; lower lr")
                else:
                    self._plain_backward(self.net, x.to(dev), y.to(dev), self.draws(x.shape[0], draw_gen), step)
                    counted[0] += 1
                    opt.step()
                step += 1
                self._update_ema()
                bar.update(1)

    def _plain_backward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor,
                        step: int) -> None:
        """Non-private step (ε = ∞ and public pre-training): the mean loss over all B·K rows."""
        if x.shape[0] == 0:
            return
        k = draws.shape[1]
        chunk = self.config.physical_batch_size or x.shape[0]
        for lo in range(0, x.shape[0], chunk):  # gradients accumulate: the mean over all B·K rows
            sl = slice(lo, lo + chunk)
            labels = y[sl].repeat_interleave(k) if self.config.conditional else None
            losses = edm_row_losses(net, self.scheduler, self.config, self._to_model_space(x[sl]).repeat_interleave(k, 0), labels,
                                    draws[sl].flatten(0, 1))
            loss = losses.sum() / (x.shape[0] * k)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"diffusion loss is {loss.item()} at step {step + 1}; lower lr")
            loss.backward()

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = self.config.ema_decay
        assert decay is not None
        for pe, p in zip(self.ema.parameters(), self.net.parameters()):
            pe.lerp_(p, 1.0 - decay)

    # -- public pre-training (no privacy; cached) ----------------------------------------------------
    def pretrain_key(self, public: ImageDataset) -> str:
        """Hash of the public data's identity (name, shape, content), the pre-training settings and the seed."""
        digest = hashlib.sha256()
        digest.update(public.images.contiguous().numpy().tobytes())
        digest.update(public.labels.contiguous().numpy().tobytes())
        ident = {"name": public.info.name, "shape": list(public.images.shape), "content": digest.hexdigest(),
                 "meta": {k: str(v) for k, v in sorted(public.meta.items())}, "classes": self.info.num_classes,
                 "config": self.config.pretrain_key_fields(), "seed": self.seed, "method": self.pretrain_family}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def pretrained_state(self, public: ImageDataset) -> dict[str, torch.Tensor]:
        """The network pre-trained on ``public``: from ``context.cache_dir`` if there, else trained and cached."""
        if public.info.shape != self.info.shape:
            raise ValueError(f"public data {public.info.name!r} has shape {public.info.shape}, the private data "
                             f"{self.info.shape}; convert it first (the runner's public_data.resize does)")
        if self.config.conditional and public.info.num_classes != self.info.num_classes:
            raise ValueError(f"conditional pre-training needs the public data's {public.info.num_classes} classes to "
                             f"match the private {self.info.num_classes}; use conditional: false")
        self.pretrained_on = public.info.name
        path = None
        if self.context.cache_dir is not None:
            path = self.context.cache_dir / f"{self.pretrain_family}-pretrain" / f"{self.pretrain_key(public)}.pt"
            if path.exists():
                return torch.load(path, map_location=self.device, weights_only=True)
        state = self._pretrain(public)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
        return state

    def _pretrain(self, public: ImageDataset) -> dict[str, torch.Tensor]:
        """Plain (non-private) EDM training on the public data; all randomness seeded, per use, from the seed."""
        # A copy: pre-training returns its state and leaves self.net alone (fit loads the state explicitly).
        return self._pretrain_denoiser(copy.deepcopy(self.net), public)

    def _pretrain_denoiser(self, net: nn.Module, public: ImageDataset) -> dict[str, torch.Tensor]:
        """Train every parameter of ``net`` on ``public`` (non-private EDM, seeded per use); its state."""
        cfg = self.config
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=cfg.pretrain_lr)
        n = len(public)  # public data: its length is public
        b = min(cfg.pretrain_batch_size, n)
        steps = max(1, round(cfg.pretrain_epochs * n / b))
        order_gen = public_generator(self.seed, "pretrain-order")
        perm = torch.randperm(n, generator=order_gen)
        pos = 0
        for step in tqdm(range(steps), desc=f"{self.pretrain_family} public pre-training", leave=False, disable=not self.context.progress):
            if pos + b > n:
                perm, pos = torch.randperm(n, generator=order_gen), 0
            idx = perm[pos:pos + b]
            pos += b
            x, y = public.images[idx].to(self.device), public.labels[idx].to(self.device)
            opt.zero_grad(set_to_none=True)
            self._plain_backward(net, x, y, self.draws(b, public_generator(self.seed, "pretrain-draws", step)), step)
            opt.step()
        net.eval()
        return {k: v.detach().clone() for k, v in net.state_dict().items()}

    # -- the empirical privacy audit's view of the private step (docs/audit.md) -------------------------
    def audit_release(self, train: ImageDataset, budget: PrivacyBudget,
                      ledger: PrivacyLedger | None = None) -> torch.Tensor:
        """The noisy gradient of one real DP-SGD step at sample rate q = 1 on ``train`` (float64, flattened), for
        the mechanism audit: one Gaussian mechanism without subsampling.

        The real private step: the denoiser wrapped by :func:`make_private_denoiser` (Opacus's ``DPOptimizer``:
        per-example clipping of the K-averaged rows to C, noise σ·C, division by the batch size B = n̂), the
        loss and K-averaging of :meth:`_backward`, ``grad_sample_mode`` as configured. σ is calibrated by the
        shared calibrator for that one step (q = 1) at ``budget``, so the ledger's claim is the budget's ε.
        What the audit fixes is public: the network starts where :meth:`fit`'s DP steps start (the seeded
        initialisation, or the public pre-training when the run has public data), and every example's K
        draws are :meth:`audit_draws`. At a non-private budget (σ = 0: clipped, no noise) the release is exact.
        The step goes into ``ledger``."""
        cfg = self.config
        n_hat = train.public_size()
        plan = dpsgd_plan_from_settings(n_hat, n_hat, steps=1)
        sigmas = self.__dict__.setdefault("_audit_sigmas", {})  # calibration is deterministic: once per budget
        if (n_hat, budget) not in sigmas:
            sigmas[n_hat, budget] = float(calibrate(plan, budget)) if budget.is_private else 0.0
        sigma = sigmas[n_hat, budget]
        released = self._audited_step(train, n_hat, sigma)
        if budget.is_private and ledger is not None:
            ledger.record(PoissonSubsampledGaussianEvent(sigma, 1.0, 1),
                          f"{self.name}: 1 audited DP-SGD step (q=1, sigma={sigma:.6g}, C={cfg.max_grad_norm}, "
                          f"K={cfg.noise_multiplicity})")
        return released

    def _audited_step(self, train: ImageDataset, n_hat: int, sigma: float) -> torch.Tensor:
        """One real private step at q = 1 on ``train`` from :meth:`_audit_start` with noise multiplier ``sigma``
        (0: clipped, exact): the released noisy gradient, float64 on the host. Records nothing."""
        loader = poisson_loader(train, 1.0)  # q = 1: every example, every call
        net, opt = self._audit_private_step(loader, n_hat, sigma)
        x, y = next(iter(loader))
        opt.zero_grad(set_to_none=True)
        self._backward(net, x.to(self.device), y.to(self.device), self.audit_draws(x.shape[0]), step=0)
        opt.step()
        return torch.cat([p.grad.detach().flatten() for p in opt.params]).double().cpu()

    def _audit_private_step(self, loader: DataLoader, n_hat: int, sigma: float):
        """(net, optimiser) for one audited step: a copy of :meth:`_audit_start` wrapped by
        :func:`make_private_denoiser` (noise ``sigma``, divisor ``n_hat``, the optimiser transforms active now),
        with every parameter and buffer set back to the start.

        Made once per (n̂, σ, transforms) and reused: an audit runs thousands of steps, and copying and wrapping
        the network cost more than the step itself. Reuse changes nothing released: the step starts from the
        start's state, the optimiser's zero_grad clears the per-example gradients, and the noise keeps coming
        from the wrapper's OS-entropy generator."""
        cache = self.__dict__.setdefault("_audit_private_steps", {})
        key = (n_hat, sigma, active_transforms())
        start = self._audit_start()
        if key not in cache:
            cfg = self.config
            inner = copy.deepcopy(start).train()
            opt = torch.optim.Adam(trainable(inner), lr=cfg.lr)
            net, opt, _ = make_private_denoiser(inner, opt, loader, noise_multiplier=sigma,
                                                max_grad_norm=cfg.max_grad_norm, expected_batch_size=n_hat,
                                                grad_sample_mode=cfg.grad_sample_mode)
            cache[key] = inner, net, opt
        inner, net, opt = cache[key]
        inner.load_state_dict(start.state_dict())  # the previous step moved the trainable parameters
        opt.original_optimizer.state.clear()  # and left Adam moments (they never reach the released gradient)
        return net, opt

    def _audit_start(self) -> nn.Module:
        """The network the audited step starts from (kept, never trained): as :meth:`fit` starts its DP steps."""
        start = self.__dict__.get("_audit_start_net")
        if start is None:
            start = copy.deepcopy(self.net)
            state = self._public_start(self.context.public_data)
            if state is not None:
                self._load_pretrained(start, state)
            self._audit_start_net = start
        return start

    def audit_draws(self, m: int) -> torch.Tensor:
        """The auditor's per-example draws for a batch of ``m`` examples, (m, K, ·): one public draw shared by
        every example and by each example's K rows.

        DP holds for any draws fixed in advance as long as each row depends on its own example only (these do
        not depend on the data at all). The auditor picks the worst case for a bug in how the K rows are
        combined: identical rows, so that clipping them one by one instead of their mean moves the clipped sum
        by exactly K·C (``per-row-clip``), where the correct step moves it by C."""
        one = self.draws(1, public_generator(self.seed, "audit-draws"))[:, :1]
        return one.expand(m, self.config.noise_multiplicity, -1).contiguous()

    def audit_canary(self, data: ImageDataset) -> tuple[torch.Tensor, int]:
        """The audit's worst-case canary: :func:`~dpgen_bench.audit.canaries.dpsgd_canary` (the white image, its
        per-example gradient norm checked ≥ C) at the draws :meth:`audit_draws` gives it."""
        return dpsgd_canary(self, data, draw=self.audit_draws(1))

    @classmethod
    def broken_variants(cls) -> tuple[BrokenVariant, ...]:
        """``per-row-clip``: Opacus clips each of an example's K noise-draw rows separately (and sums them)
        instead of clipping their mean, so one example moves the clipped sum by up to K·C while σ is calibrated
        for C (the bug the K-average before clipping exists to avoid)."""
        return (BrokenVariant("per-row-clip", "each of an example's K noise-draw rows clipped separately instead of "
                              "their mean: sensitivity K·C, noise for C", transform=_per_row_clip),)

    # -- the conformance suite's view of the private step ----------------------------------------------
    def gradient_probe(self) -> GradientProbe:
        return _DPDMProbe(self)

    # -- sampling and checkpoints ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """Deterministic EDM Euler sampler (probability-flow ODE on the Karras σ schedule; DDIM is this Euler
        step) from N(0, σ_max² I), ``sampler_steps`` steps, EMA weights when enabled."""
        net = self.ema if self.ema is not None else self.net
        net.eval()
        x = torch.randn(n, *self.model_shape, generator=generator) * self.config.sigma_max
        out = [self._sample_batch(net, x[i:i + self.config.sample_batch_size],
                                  labels[i:i + self.config.sample_batch_size] if labels is not None else None)
               for i in range(0, n, self.config.sample_batch_size)]
        if not out:
            return torch.empty(0, *self.info.shape)
        return self._from_model_space(torch.cat(out))

    def _sample_batch(self, net: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        scheduler = edm_scheduler(self.config)  # fresh: the scheduler keeps a step index
        scheduler.set_timesteps(self.config.sampler_steps)
        scheduler.is_scale_input_called = True  # inputs are preconditioned in denoise(); silences its warning
        x = x.to(self.device) * (scheduler.sigmas[0] / self.config.sigma_max)
        lab = labels.to(self.device) if labels is not None else None
        for i in range(len(scheduler.sigmas) - 1):
            sigma = scheduler.sigmas[i].to(self.device)
            denoised = self._guided_denoise(net, scheduler, x, sigma.expand(x.shape[0]), lab)
            x = scheduler.step(torch.zeros_like(x), scheduler.timesteps[i], x, pred_original_sample=denoised,
                               return_dict=False)[0]
        return x.float().cpu()

    def _guided_denoise(self, net: nn.Module, scheduler: "EDMEulerScheduler", x: torch.Tensor, sigma: torch.Tensor,
                        labels: torch.Tensor | None) -> torch.Tensor:
        """D(x; σ, y), or with guidance w > 0 (1 + w)·D(x; σ, y) − w·D(x; σ, ∅) from one forward of both halves."""
        w = self.config.guidance_scale
        if w == 0 or labels is None:
            return denoise(net, scheduler, x, sigma, labels)
        null = torch.full_like(labels, net_null_label(net))
        both = denoise(net, scheduler, torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([labels, null]))
        cond, uncond = both.chunk(2)
        return (1 + w) * cond - w * uncond

    def checkpoint_state(self) -> dict[str, Any]:
        """Network (and EMA) weights and the privacy parameters used; no private data."""
        return {"net": self.net.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
                "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "steps_taken": self.steps_taken, "pretrained_on": self.pretrained_on}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.net.eval()
        self.ema = None
        if state.get("ema") is not None:
            self.ema = copy.deepcopy(self.net).requires_grad_(False)
            self.ema.load_state_dict(state["ema"])
            self.ema.eval()
        self.noise_multiplier = state.get("noise_multiplier")
        self.sample_rate = state.get("sample_rate")
        self.steps_taken = int(state.get("steps_taken") or 0)
        self.pretrained_on = state.get("pretrained_on")


def _per_row_clip(method_cls: type[DPDM]) -> type[DPDM]:
    """``method_cls`` whose optimiser gets the B·K per-row gradients (hooks mode, no K-average)."""

    class PerRowClipDPDM(method_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.config.grad_sample_mode == "grouped":  # grouped never forms the per-row gradients
                self.config.grad_sample_mode = "hooks"

        def _rows_per_example(self, net: nn.Module, k: int) -> None:
            """The bug: the B·K rows go to the optimiser, which clips each one."""

    return PerRowClipDPDM


class _DPDMProbe:
    """:class:`~dpgen_bench.method.GradientProbe` of DPDM: draws are each example's K (σ, noise) draws; rows are
    the K-averaged per-example gradients exactly as the optimiser clips them."""

    def __init__(self, method: DPDM) -> None:
        self.method = method

    def draws(self, m: int, generator: torch.Generator) -> torch.Tensor:
        return self.method.draws(m, generator)

    def rows(self, images: torch.Tensor, labels: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        method, cfg = self.method, self.method.config
        net = copy.deepcopy(method.net).train()
        opt = torch.optim.Adam(trainable(net), lr=cfg.lr)
        loader = DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=max(len(images), 1))
        net, opt, _ = make_private_denoiser(net, opt, loader, noise_multiplier=1.0, max_grad_norm=cfg.max_grad_norm,
                                            expected_batch_size=cfg.batch_size, grad_sample_mode=cfg.grad_sample_mode)
        opt.zero_grad(set_to_none=True)
        method._backward(net, images.to(method.device), labels.to(method.device), draws, step=0)
        return torch.cat([p.grad_sample.flatten(1) for p in trainable(net) if p.grad_sample is not None], dim=1)


__all__ = ["DPDM", "DPDMConfig", "TrainingDivergedError", "average_over_draws", "build_unet", "edm_row_losses",
           "drop_labels", "make_private_denoiser", "net_null_label", "trainable"]
