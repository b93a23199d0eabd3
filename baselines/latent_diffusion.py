"""The latent diffusion model that ``dp-ldm`` and ``dp-lora`` share, and their DP fine-tuning. See
``docs/latent_diffusion.md``.

A small convolutional autoencoder maps images to latents (one halving per level after the first); a small
LDM-style U-Net (residual blocks, a *spatial transformer* per level: self-attention, cross-attention to the class
embedding, feed-forward) denoises the latents with DPDM's EDM loss (``baselines/dpdm.py``). Both are pre-trained
on public data (``RunContext.public_data``, cached by content hash like DPDM's pre-training) or loaded from a
pre-trained file (``pretrained``); then a declared part of the denoiser is fine-tuned with DP-SGD on the private
images' latents — DP-LDM: the spatial transformers and the class embedding; DP-LoRA: low-rank adapters only.

Everything DP is DPDM's, inherited: Poisson batches at q = B / n̂, noise multiplicity K averaged before
clipping (``grouped`` grad samples), Opacus's ``DPOptimizer`` made by the library's one DP-SGD factory, the
ledger event, the hook audit of one q = 1 step, the gradient probe, EMA and the Euler EDM sampler. What is
written here: the networks, the trainable-set declaration and its enforcement, the autoencoder's public
pre-training, and encoding/decoding around DPDM's steps.

Privacy argument (add/remove-one, docs/privacy.md): the autoencoder is public (pre-trained on public data) and
frozen; encoding a private image is a deterministic function of that image alone (no batch statistics), so it is
part of the per-example computation: row i = ∇_θ (1/K) Σ_k ℓ(E(x_i), σ_ik, n_ik) for the *trainable* θ only,
clipped to C. Frozen parameters never change during DP fine-tuning (they get no gradient; checked after every
fit, and by ``tests/test_latent_diffusion.py``): a frozen parameter that moved would be an un-noised release.
Sampling decodes latents: post-processing.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.method import Capabilities
from dpgen_bench.privacy.noise import public_generator

from .dpdm import DPDM, NOT_IN_PRETRAINING, DPDMConfig, trainable

SUPPORTED_SIZES: tuple[int, ...] = (8, 16, 28, 32, 64)


class PretrainedWeightsError(ValueError):
    """``pretrained`` names weights that are not there (or not of this model); the message names what is missing."""


class LatentDiffusionConfig(DPDMConfig):
    """DPDM's settings (EDM loss, K, DP-SGD, EMA, sampler; ``channels`` are now the latent U-Net's levels) plus
    the autoencoder, the cross-attention and where pre-trained weights come from.

    CPU defaults: 28×28 → 3×14×14 latents, U-Net (16, 32) with a spatial transformer per level, K = 1, B = 100,
    10 epochs; pre-training 10 epochs of the autoencoder and of the denoiser on the public data. ``p_mean`` was
    chosen on mnist-5k's tuning split; the rest are paper values or compute-driven choices, not evaluated
    (docs/latent_diffusion.md)."""

    channels: tuple[int, ...] = Field(
        (16, 32), min_length=1, max_length=4,
        description="latent U-Net channels per level (each level after the first halves the latent size); every "
        "level and the mid block have a spatial transformer")
    attention_head_dim: int = Field(8, ge=1, le=512, description="channels per attention head")
    p_mean: float = Field(
        1.0, ge=-10, le=10, description="mean of ln σ of the training noise levels, in pre-training and DP "
        "fine-tuning (EDM and the paper configs: -1.2; the CPU default 1.0 was chosen by dpgen-bench tune on "
        "mnist-5k's tuning split, results/tune_dp_ldm_mnist5k; latents have std sigma_data like EDM's images)")
    ema_decay: float | None = Field(
        0.99, ge=0, lt=1, description="EMA decay per step (paper 0.999 over ~100k steps; 0.99 averages ~100 of the "
        "default's 400 steps: a compute-driven choice); None samples from the raw weights")
    noise_multiplicity: int = Field(
        1, ge=1, le=1024, description="K: noise draws per example averaged before clipping (DP-LDM: 1; DPImageBench's "
        "DP-LoRA: 8); costs no privacy, multiplies compute by K")
    pretrain_epochs: float = Field(10.0, gt=0, le=100_000, description="passes of the denoiser over the public data")
    latent_channels: int = Field(3, ge=1, le=64, description="latent channels (DP-LDM / DPImageBench: 3)")
    ae_channels: tuple[int, ...] = Field(
        (16, 32), min_length=1, max_length=4,
        description="autoencoder channels per level (each level after the first halves the size: (16, 32) maps "
        "28×28 to 14×14 latents, DPImageBench's factor)")
    ae_epochs: float = Field(10.0, gt=0, le=100_000, description="passes of the autoencoder over the public data")
    ae_batch_size: int = Field(64, ge=1, le=65_536, description="autoencoder pre-training batch size")
    ae_lr: float = Field(2e-3, gt=0, le=1.0, description="Adam learning rate of the autoencoder pre-training")
    ae_latent_penalty: float = Field(
        1e-3, ge=0, le=10, description="weight of mean(z²) in the autoencoder loss (keeps the latents compact, in "
        "place of the KL term of LDM's autoencoder)")
    context_dim: int = Field(32, ge=1, le=4096, description="class embedding width, the cross-attention's context")
    pretrained: str | None = Field(
        None, description="pre-trained autoencoder + denoiser instead of pre-training on public_data: a local .pt "
        "file (what a run with public_data caches under cache/latent-diffusion-pretrain/) or "
        "'hf://<owner>/<repo>/<file>' on the Hugging Face hub; needs pretrained_trained_on")
    pretrained_trained_on: tuple[str, ...] = Field(
        (), description="data families the pretrained weights were trained on (the runner refuses the private "
        "dataset's family)")

    @field_validator("ae_channels")
    @classmethod
    def _positive_ae(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(c < 1 for c in v):
            raise ValueError(f"autoencoder channel counts must be >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _pretrained_declared(self) -> "LatentDiffusionConfig":
        if self.pretrained is not None and not self.pretrained_trained_on:
            raise ValueError(f"pretrained={self.pretrained!r} needs pretrained_trained_on: the data families the "
                             f"weights were trained on (e.g. ['imagenet'])")
        return self

    not_in_pretraining: ClassVar[frozenset[str]] = NOT_IN_PRETRAINING | {"pretrained", "pretrained_trained_on"}

    @property
    def halvings(self) -> int:
        """How many times an image side is halved on the way to the U-Net's lowest level."""
        return len(self.ae_channels) - 1 + len(self.channels) - 1


# ------------------------------------------------------------------------------------------ the networks


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class Autoencoder(nn.Module):
    """Convolutional autoencoder, one halving per level after the first; no normalisation layers (so encoding
    one image never depends on another). ``scale`` (public, set after pre-training) maps the raw latents to std
    ``sigma_data``, as LDM's scale factor does."""

    def __init__(self, image_channels: int, widths: tuple[int, ...], latent_channels: int) -> None:
        super().__init__()
        enc: list[nn.Module] = [_conv(image_channels, widths[0]), nn.SiLU()]
        for i, w in enumerate(widths):
            if i:
                enc += [nn.Conv2d(widths[i - 1], w, 4, stride=2, padding=1), nn.SiLU()]
            enc += [_conv(w, w), nn.SiLU()]
        enc.append(_conv(widths[-1], latent_channels))
        dec: list[nn.Module] = [_conv(latent_channels, widths[-1]), nn.SiLU()]
        for i in range(len(widths) - 1, -1, -1):
            dec += [_conv(widths[i], widths[i]), nn.SiLU()]
            if i:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(widths[i], widths[i - 1]), nn.SiLU()]
        dec.append(_conv(widths[0], image_channels))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        self.register_buffer("scale", torch.ones(()))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents."""
        return self.encoder(x) * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in about [-1, 1]."""
        return self.decoder(z / self.scale)


class DenoiserOutput(NamedTuple):
    sample: torch.Tensor  # the name diffusers' models use: dpdm.denoise reads ``.sample``


class Attention(nn.Module):
    """Multi-head attention from plain ``nn.Linear`` projections (Opacus computes their per-sample gradients;
    the attention product has no parameters). Cross-attention when a context is given."""

    def __init__(self, dim: int, head_dim: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = max(1, dim // head_dim)
        ctx = context_dim or dim
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim, bias=False), nn.Linear(ctx, dim, bias=False), nn.Linear(ctx, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        b, t, d = x.shape

        def split(u: torch.Tensor) -> torch.Tensor:
            return u.reshape(b, u.shape[1], self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx)))
        return self.to_out(out.transpose(1, 2).reshape(b, t, d))


class SpatialTransformer(nn.Module):
    """LDM's spatial transformer (one block): GroupNorm, token projection, self-attention, cross-attention to the
    class context, feed-forward, projection back, residual. DP-LDM fine-tunes these modules."""

    def __init__(self, dim: int, head_dim: int, context_dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim)
        self.proj_in = nn.Linear(dim, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = Attention(dim, head_dim)
        self.attn2 = Attention(dim, head_dim, context_dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x).reshape(b, c, h * w).transpose(1, 2))
        t = t + self.attn1(self.norm1(t))
        t = t + self.attn2(self.norm2(t), context)
        t = t + self.ff(self.norm3(t))
        return x + self.proj_out(t).transpose(1, 2).reshape(b, c, h, w)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), _conv(c_in, c_out)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), _conv(c_out, c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class LatentUNet(nn.Module):
    """The latent denoiser F(z; c_noise, y): a U-Net over ``channels`` levels, ``layers`` (residual block,
    spatial transformer) pairs per level on each path and one in the middle, the class embedding as
    cross-attention context, one skip connection per level. Called like diffusers' models
    (``net(z, c_noise, class_labels=y).sample``) so DPDM's EDM code drives it unchanged. An unconditional net has
    one learned context (index 0)."""

    def __init__(self, latent_channels: int, channels: tuple[int, ...], context_dim: int, num_embeds: int,
                 head_dim: int, groups: int, layers: int = 1) -> None:
        super().__init__()
        c0, emb = channels[0], 4 * channels[0]
        half = max(c0 // 2, 1)
        self.register_buffer("freqs", torch.exp(-math.log(1e4) * torch.arange(half) / half), persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(2 * half, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.class_embedding = nn.Embedding(num_embeds, context_dim)
        self.conv_in = _conv(latent_channels, c0)
        self.down_res, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        prev = c0
        for i, c in enumerate(channels):
            self.down_res.append(nn.ModuleList(ResBlock(prev if j == 0 else c, c, emb, groups) for j in range(layers)))
            self.down_attn.append(nn.ModuleList(SpatialTransformer(c, head_dim, context_dim, groups)
                                                for _ in range(layers)))
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(channels) - 1 else nn.Identity())
            prev = c
        self.mid_res1, self.mid_res2 = ResBlock(prev, prev, emb, groups), ResBlock(prev, prev, emb, groups)
        self.mid_attn = SpatialTransformer(prev, head_dim, context_dim, groups)
        self.up_res, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in range(len(channels) - 1, -1, -1):
            c = channels[i]
            self.up_res.append(nn.ModuleList(ResBlock(prev + c if j == 0 else c, c, emb, groups) for j in range(layers)))
            self.up_attn.append(nn.ModuleList(SpatialTransformer(c, head_dim, context_dim, groups)
                                              for _ in range(layers)))
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(c, channels[i - 1]))
                                 if i else nn.Identity())
            prev = channels[i - 1] if i else c
        self.norm_out, self.conv_out = nn.GroupNorm(groups, c0), _conv(c0, latent_channels)

    def forward(self, z: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> DenoiserOutput:
        args = c_noise.reshape(-1, 1).to(z.dtype) * self.freqs
        emb = self.time_mlp(torch.cat([args.cos(), args.sin()], dim=1))
        if class_labels is None:
            class_labels = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        context = self.class_embedding(class_labels)[:, None, :]
        h = self.conv_in(z)
        skips = []
        for res, attn, down in zip(self.down_res, self.down_attn, self.downsample):
            for r, a in zip(res, attn):
                h = a(r(h, emb), context)
            skips.append(h)
            h = down(h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb), context), emb)
        for res, attn, up in zip(self.up_res, self.up_attn, self.upsample):
            h = torch.cat([h, skips.pop()], dim=1)
            for r, a in zip(res, attn):
                h = a(r(h, emb), context)
            h = up(h)
        return DenoiserOutput(self.conv_out(F.silu(self.norm_out(h))))


# ------------------------------------------------------------------------------------------ pre-trained weights


def pretrained_file(source: str) -> Path:
    """The local file of ``source`` (a path, or ``hf://<owner>/<repo>/<file>`` from the Hugging Face cache or hub);
    :class:`PretrainedWeightsError` naming what is missing."""
    if source.startswith("hf://"):
        parts = source[len("hf://"):].split("/", 2)
        if len(parts) < 3 or not all(parts):
            raise PretrainedWeightsError(f"pretrained={source!r}: a hub source is 'hf://<owner>/<repo>/<file>'")
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(f"{parts[0]}/{parts[1]}", parts[2]))
        except Exception as exc:  # noqa: BLE001  offline, unknown repo or file: all "missing" to the user
            raise PretrainedWeightsError(f"pretrained weights {source!r} are not available ({type(exc).__name__}: "
                                         f"{exc}); download them or give a local file") from None
    path = Path(source).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(
            f"pretrained weights {str(path)!r} not found: give the .pt file of a latent-diffusion pre-training (a run "
            f"with public_data caches one under <results>/cache/latent-diffusion-pretrain/), or use public_data instead")
    return path


def load_pretrained_file(source: str) -> dict[str, Any]:
    state = torch.load(pretrained_file(source), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not {"autoencoder", "denoiser"} <= set(state):
        raise PretrainedWeightsError(f"pretrained weights {source!r} are not a latent-diffusion pre-training (need the "
                                     f"keys 'autoencoder' and 'denoiser')")
    return state


# ------------------------------------------------------------------------------------------ the method


class LatentDiffusion(DPDM):
    """Latent DPDM: the autoencoder and the denoiser pre-trained on public data, then DP-SGD on the part of the
    denoiser that :meth:`declared_trainable` names. Subclasses (``dp-ldm``, ``dp-lora``) say which part."""

    Config: ClassVar[type[LatentDiffusionConfig]] = LatentDiffusionConfig
    config: LatentDiffusionConfig
    pretrain_family: ClassVar[str] = "latent-diffusion"
    # p_mean: dpgen-bench tune on mnist-5k's tuning split (results/tune_dp_ldm_mnist5k); the rest paper values and
    # compute-driven sizes, never evaluated (docs/latent_diffusion.md)
    tuned_on: ClassVar[str] = "mnist-5k:tuning"
    conformance_config: ClassVar[dict[str, Any]] = {
        "epochs": 1, "batch_size": 16, "noise_multiplicity": 2, "channels": (8, 8), "ae_channels": (4, 8),
        "norm_groups": 4, "attention_head_dim": 4, "context_dim": 8, "sampler_steps": 2, "pretrain_epochs": 1,
        "ae_epochs": 1,
    }

    def __init__(self, config: LatentDiffusionConfig | dict[str, Any] | None, info: DatasetInfo, seed: int = 0,
                 context: RunContext | None = None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)  # its own public stream: the denoiser's initialisation is unchanged
            self.autoencoder = self._build_autoencoder().to(self.device)
        self._frozen_snapshot: dict[str, torch.Tensor] | None = None

    # -- declarations --------------------------------------------------------------------------------
    def declared_trainable(self, net: nn.Module) -> set[str]:
        """Names of the denoiser parameters DP-SGD fine-tunes (the subclass's declaration)."""
        raise NotImplementedError

    @classmethod
    def capabilities_for(cls, config: LatentDiffusionConfig) -> Capabilities:  # type: ignore[override]
        sizes = tuple(s for s in SUPPORTED_SIZES if s % 2 ** config.halvings == 0)
        return Capabilities(labelled=config.conditional, unlabelled=not config.conditional, channels=(1, 3),
                            image_sizes=sizes, dp_sgd=True, public_data=True)

    @classmethod
    def pretrained_components(cls, config: LatentDiffusionConfig) -> dict[str, tuple[str, ...]]:  # type: ignore[override]
        """The ``pretrained`` weights and the data families they declare (the runner refuses the private one's)."""
        if config.pretrained is None:
            return {}
        return {f"pretrained latent diffusion {config.pretrained!r}": tuple(config.pretrained_trained_on)}

    @classmethod
    def required_files(cls, config: LatentDiffusionConfig) -> dict[str, str]:  # type: ignore[override]
        """A local ``pretrained`` file (a hub source is fetched, or refused, when fit loads it)."""
        if config.pretrained is None or config.pretrained.startswith("hf://"):
            return {}
        return {"pretrained latent diffusion weights (pretrained)": config.pretrained}

    # -- the networks --------------------------------------------------------------------------------
    def _build_base_denoiser(self) -> LatentUNet:
        cfg = self.config
        embeds = (self.info.num_classes + (cfg.label_dropout > 0)) if cfg.conditional else 1
        return LatentUNet(cfg.latent_channels, tuple(cfg.channels), cfg.context_dim, embeds, cfg.attention_head_dim,
                          cfg.norm_groups, cfg.layers_per_block)

    def _build_net(self) -> nn.Module:
        if self.info.height % 2 ** self.config.halvings:
            raise ValueError(f"image size {self.info.height} does not halve {self.config.halvings} times (autoencoder "
                             f"and U-Net levels); use fewer levels")
        net = self._adapt(self._build_base_denoiser())
        self._select_trainable(net)
        return net

    def _adapt(self, base: LatentUNet) -> nn.Module:
        """The denoiser DP-SGD trains, built on ``base`` (DP-LoRA adds adapters here)."""
        return base

    def _select_trainable(self, net: nn.Module) -> None:
        declared = self.declared_trainable(net)
        unknown = declared - {n for n, _ in net.named_parameters()}
        if unknown or not declared:
            raise RuntimeError(f"{self.name}: declared trainable parameters {sorted(unknown) or '(none)'} are not in the net")
        for name, p in net.named_parameters():
            p.requires_grad_(name in declared)

    def _build_autoencoder(self) -> Autoencoder:
        return Autoencoder(self.info.channels, tuple(self.config.ae_channels), self.config.latent_channels)

    @property
    def model_shape(self) -> tuple[int, ...]:
        f = 2 ** (len(self.config.ae_channels) - 1)
        return (self.config.latent_channels, self.info.height // f, self.info.width // f)

    def _to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> latents of the frozen public encoder (image by image; no gradient to it)."""
        with torch.no_grad():
            return self.autoencoder.encode(x * 2 - 1)

    @torch.no_grad()
    def _from_model_space(self, z: torch.Tensor) -> torch.Tensor:
        out = [self.autoencoder.decode(z[i:i + self.config.sample_batch_size].to(self.device)).cpu()
               for i in range(0, z.shape[0], self.config.sample_batch_size)]
        return ((torch.cat(out) + 1) / 2).clamp_(0, 1)

    # -- public pre-training: the autoencoder, then the base denoiser on its latents -------------------
    def _public_start(self, public: ImageDataset | None) -> dict[str, Any] | None:
        if self.config.pretrained is not None:
            if public is not None:
                raise ValueError(f"{self.name}: give pretrained weights or public_data to pre-train on, not both")
            self.pretrained_on = f"{self.config.pretrained} (trained on {', '.join(self.config.pretrained_trained_on)})"
            return load_pretrained_file(self.config.pretrained)
        if public is None:
            warnings.warn(f"{self.name}: no public_data and no pretrained weights: the autoencoder and the frozen "
                          f"denoiser stay at their random initialisation", stacklevel=3)
        return super()._public_start(public)

    def _pretrain(self, public: ImageDataset) -> dict[str, Any]:
        """The autoencoder trained on ``public`` (its latent scale set from the public latents' std), then the
        base denoiser (no adapters) on their latents with DPDM's public pre-training. Leaves the trained
        autoencoder in ``self.autoencoder`` (the state is loaded there anyway)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            ae = self._build_autoencoder().to(self.device)
        self.autoencoder = self._pretrain_autoencoder(ae, public)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            base = self._build_base_denoiser().to(self.device)
        denoiser = self._pretrain_denoiser(base, public)
        return {"autoencoder": {k: v.detach().clone() for k, v in self.autoencoder.state_dict().items()},
                "denoiser": denoiser, "public_data": public.info.name}

    def _pretrain_autoencoder(self, ae: Autoencoder, public: ImageDataset) -> Autoencoder:
        cfg = self.config
        opt = torch.optim.Adam(ae.parameters(), lr=cfg.ae_lr)
        n = len(public)  # public data: its length is public
        b = min(cfg.ae_batch_size, n)
        order = public_generator(self.seed, "ae-pretrain-order")
        perm, pos = torch.randperm(n, generator=order), 0
        for _ in range(max(1, round(cfg.ae_epochs * n / b))):
            if pos + b > n:
                perm, pos = torch.randperm(n, generator=order), 0
            x = public.images[perm[pos:pos + b]].to(self.device) * 2 - 1
            pos += b
            z = ae.encoder(x)
            loss = F.mse_loss(ae.decoder(z), x) + cfg.ae_latent_penalty * z.pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        ae.eval()
        with torch.no_grad():
            std = torch.cat([ae.encoder(public.images[i:i + 512].to(self.device) * 2 - 1).flatten()
                             for i in range(0, n, 512)]).std()
            ae.scale.fill_(cfg.sigma_data / max(float(std), 1e-6))
        return ae.requires_grad_(False)

    def _load_pretrained(self, net: nn.Module, state: dict[str, Any]) -> None:
        """The autoencoder into ``self.autoencoder``; the denoiser's weights into ``net`` (adapters, which the
        pre-training has not, keep their initialisation). A class embedding of another class count (weights
        pre-trained on other classes) is re-initialised from the seed and must be trainable."""
        try:
            self.autoencoder.load_state_dict(state["autoencoder"])
        except RuntimeError as exc:
            raise PretrainedWeightsError(f"{self.name}: the pre-trained autoencoder does not match ae_channels="
                                         f"{self.config.ae_channels}, latent_channels={self.config.latent_channels}: "
                                         f"{str(exc).splitlines()[0]}") from None
        self.autoencoder.requires_grad_(False).eval()
        own = net.state_dict()
        loaded, fresh = {}, []
        for key, value in own.items():
            source = key.replace(".base_layer", "")  # peft keeps an adapted layer's weights under base_layer
            if source in state["denoiser"] and state["denoiser"][source].shape == value.shape:
                loaded[key] = state["denoiser"][source]
            else:
                fresh.append(key)
        not_fresh = [k for k in fresh if "lora_" not in k and not k.startswith("class_embedding.")]
        if not_fresh:
            raise PretrainedWeightsError(f"{self.name}: the pre-trained denoiser does not match this architecture "
                                         f"(missing or mis-shaped: {not_fresh[:5]}); check channels, latent_channels")
        trainable_names = {n for n, p in net.named_parameters() if p.requires_grad}
        if any(k.startswith("class_embedding.") for k in fresh) and "class_embedding.weight" not in trainable_names:
            raise PretrainedWeightsError(f"{self.name}: the pre-trained class embedding has another class count than "
                                         f"{self.info.num_classes}; it must then be fine-tuned (train it)")
        net.load_state_dict(loaded, strict=False)
        self._select_trainable(net)

    # -- the trainable set, enforced -----------------------------------------------------------------
    def _before_private_training(self) -> None:
        """Snapshot everything DP fine-tuning must not move: the frozen denoiser parameters and the autoencoder."""
        self._select_trainable(self.net)
        self._frozen_snapshot = self.frozen_state()

    def frozen_state(self) -> dict[str, torch.Tensor]:
        """Copies of every parameter and buffer DP-SGD does not train (denoiser and autoencoder)."""
        out = {f"net.{n}": p.detach().clone() for n, p in self.net.named_parameters() if not p.requires_grad}
        out.update({f"autoencoder.{n}": v.detach().clone() for n, v in self.autoencoder.state_dict().items()})
        return out

    def _after_private_training(self) -> None:
        """A frozen parameter that moved was updated without clipping or noise: refuse the result. (The check's
        outcome is the same on every dataset for a correct implementation, so it releases nothing.)"""
        before, after = self._frozen_snapshot, self.frozen_state()
        moved = sorted(k for k in before if not torch.equal(before[k], after.get(k, before[k])))
        if moved or set(before) != set(after) or trainable_names(self.net) != self.declared_trainable(self.net):
            raise RuntimeError(f"{self.name}: parameters outside the declared trainable set changed during DP "
                               f"fine-tuning (un-noised): {moved[:5] or sorted(set(before) ^ set(after))[:5]}")

    # -- checkpoints ---------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(), "autoencoder": self.autoencoder.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.autoencoder.load_state_dict(state["autoencoder"])
        self.autoencoder.eval()


def trainable_names(net: nn.Module) -> set[str]:
    """Names of ``net``'s parameters that require gradients (what DP-SGD trains)."""
    return {n for n, p in net.named_parameters() if p.requires_grad}


__all__ = ["Autoencoder", "LatentDiffusion", "LatentDiffusionConfig", "LatentUNet", "PretrainedWeightsError",
           "SpatialTransformer", "load_pretrained_file", "pretrained_file", "trainable", "trainable_names"]
