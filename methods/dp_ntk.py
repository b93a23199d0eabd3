"""DP-NTK (Yang, Adamczewski, Sutherland, Li, Park, AISTATS 2023): match a noisy mean embedding whose features
are the empirical neural tangent kernel (e-NTK) of a fixed, randomly initialised network.

The network (the reference's ``fc_1l``) is f(x) = W2·LN(relu(W1·x + b1)) + b2 on the flattened pixels in
[0, 1], with a width-H hidden layer, LayerNorm without affine parameters and K_out outputs. Its weights are
drawn once from a *public* seed (``ntk_seed``, default the method seed), never trained, and never depend on
the data. The feature of an image x is the gradient of the summed output Σ_k f_k(x) with respect to all
parameters (W1, b1, W2, b2 — the reference's ``grad_outputs`` of ones), normalised to L2 norm 1:
φ(x) = ∇_θ Σ f(x) / ‖∇_θ Σ f(x)‖, of dimension D = H·d + H + K_out·H + K_out (636,010 for MNIST, H = 800).

Because every φ(x) has norm exactly 1, the release is :mod:`.mean_embedding`'s (C = 1): noisy per-class sums
(sensitivity 1 under add/remove-one: one example moves one class's row by φ(x)) and noisy per-class counts
(sensitivity 1), released once; the generator then minimises Σ_k ‖μ̃_k − μ̂_fake,k‖² (post-processing). The
reference instead divides all sums by the dataset size n and adds noise of std 2σ/n: that is the
replace-one relation with a public n; here n is private, so the counts are released (noisily) instead.

The gradient has a closed form (see :meth:`NTKFeatures.parts`), so features are computed for a whole batch
at once and generated batches are matched without materialising a D-dimensional row per image; a test checks
the closed form against autograd.

Defaults: the reference's MNIST settings (``ntk_width`` 800, the DP-MERF conv generator with a 5-dim code and
200 hidden units, Adam lr 0.01) except the generator batch (5,000 → 100, DP-MERF's) and step count (2,000 → 1,000),
reduced so that an mnist-5k cell trains in a couple of minutes on 2 CPU cores; not tuned on any data.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import tqdm

from dpgen_bench.method import Capabilities, MethodConfig

from .generator_method import ReleaseOnceConfig, ReleaseOnceMethod
from .generators import ConditionalGenerator, ConvCondGenerator, build_generator
from .mean_embedding import ClassSums, ReleasedEmbedding

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, as in the reference network


class NTKFeatures:
    """The fixed random network x ↦ W2·LN(relu(W1 x + b1)) + b2 and its normalised e-NTK features.

    Parameters are initialised like ``torch.nn.Linear`` (uniform on ±1/√fan_in, weights and biases) from a
    generator seeded with ``seed`` (public). ``width`` H ≥ 1, ``outputs`` K_out ≥ 1, ``d_in`` = pixels.
    Parameter order in a feature row: W1 (H×d, row-major), b1 (H), W2 (K_out×H), b2 (K_out).
    """

    def __init__(self, d_in: int, width: int, outputs: int, seed: int, device: torch.device | str = "cpu") -> None:
        gen = torch.Generator().manual_seed(int(seed))

        def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
            return ((torch.rand(shape, generator=gen) * 2 - 1) / fan_in**0.5).to(device)

        self.d_in, self.width, self.outputs = d_in, width, outputs
        self.w1, self.b1 = uniform((width, d_in), d_in), uniform((width,), d_in)
        self.w2, self.b2 = uniform((outputs, width), width), uniform((outputs,), width)

    @property
    def dim(self) -> int:
        """D: the number of parameters, i.e. the feature dimension."""
        return self.width * self.d_in + self.width + self.outputs * self.width + self.outputs

    def parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, g, u, norm) for a batch: x (N, d) the flattened images, u = LN(relu(a)) (N, H) the hidden
        output, g = ∂Σf/∂a (N, H) the gradient at the pre-activation a = W1 x + b1, and norm (N,) the L2 norm
        of the full gradient. Then ∂Σf/∂W1 = g xᵀ, ∂Σf/∂b1 = g, ∂Σf/∂W2 = 1 uᵀ (every output row), ∂Σf/∂b2 = 1.

        With v = W2ᵀ1 and s = √(var(h) + eps), LayerNorm's Jacobian is (I − 11ᵀ/H − u uᵀ/H)/s (symmetric),
        so ∂Σf/∂h = (v − mean(v) − u·(u·v)/H)/s, and relu passes it where a > 0. Differentiable in images.
        """
        x = images.flatten(1)
        w1, b1, w2 = (p.to(x.dtype) for p in (self.w1, self.b1, self.w2))  # float64 in the release
        a = x @ w1.T + b1
        h = F.relu(a)
        mean, var = h.mean(dim=1, keepdim=True), h.var(dim=1, unbiased=False, keepdim=True)
        s = (var + LAYER_NORM_EPS).sqrt()
        u = (h - mean) / s
        v = w2.sum(dim=0)  # (H,) = W2ᵀ·1
        g_h = (v - v.mean() - u * (u @ v)[:, None] / self.width) / s
        g = g_h * (a > 0).to(g_h.dtype)
        sq = (g * g).sum(1) * ((x * x).sum(1) + 1.0) + self.outputs * ((u * u).sum(1) + 1.0)
        return x, g, u, sq.sqrt()

    def rows(self, images: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised feature rows, each of norm 1 (N·D floats: embed private data in small batches)."""
        x, g, u, norm = self.parts(images)
        n = len(x)
        w1 = (g[:, :, None] * x[:, None, :]).reshape(n, -1)
        w2 = u[:, None, :].expand(n, self.outputs, self.width).reshape(n, -1)
        ones = torch.ones(n, self.outputs, dtype=x.dtype, device=x.device)
        return torch.cat([w1, g, w2, ones], dim=1) / norm[:, None]

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(K, D) rows → their (W1 (K,H,d), b1 (K,H), W2 (K,K_out,H), b2 (K,K_out)) blocks (views)."""
        k, h, d, o = flat.shape[0], self.width, self.d_in, self.outputs
        sizes = [h * d, h, o * h, o]
        w1, b1, w2, b2 = torch.split(flat, sizes, dim=1)
        return w1.reshape(k, h, d), b1, w2.reshape(k, o, h), b2

    def class_means(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *, sums: bool = False):
        """The per-class means (``sums``: sums) of :meth:`rows` as blocks (see :meth:`split`), computed without
        materialising the rows: Σ_{i∈k} g_i x_iᵀ/‖·‖_i is one (H × n_k)(n_k × d) product per class. Classes
        without an image in the batch get zero blocks. Differentiable in ``images``."""
        x, g, u, norm = self.parts(images)
        w = 1.0 / norm  # each row's normalisation: rows have norm exactly 1
        if not sums:
            counts = torch.bincount(labels, minlength=num_classes).to(x.dtype)
            w = w / counts[labels].clamp_min(1.0)
        gw, uw = g * w[:, None], u * w[:, None]
        w1 = torch.stack([gw[labels == k].T @ x[labels == k] for k in range(num_classes)])
        onehot = F.one_hot(labels, num_classes).to(x.dtype)  # (N, K)
        b1, u_mean, b2 = onehot.T @ gw, onehot.T @ uw, onehot.T @ w
        w2 = u_mean[:, None, :].expand(num_classes, self.outputs, self.width)
        return w1, b1, w2, b2[:, None].expand(num_classes, self.outputs)


class DPNTKConfig(ReleaseOnceConfig):
    """DP-NTK hyper-parameters (the reference's MNIST values unless stated; see the module docstring)."""

    ntk_width: int = Field(800, ge=1, le=100_000)
    """H: hidden units of the fixed random network (reference: 800). D grows as H·(pixels + 2 + K_out)."""
    ntk_outputs: int | None = Field(None, ge=1)
    """K_out: outputs of the network (reference: the number of classes); None = the dataset's classes."""
    ntk_seed: int | None = None
    """Public seed of the network's weights; None uses the method seed."""
    generator: Literal["auto", "conv", "resnet"] = "conv"
    z_dim: int | None = Field(5, ge=1)
    hidden: int = Field(200, ge=1)
    """Hidden units of the conv generator's first layer (reference: 200)."""
    steps: int = Field(1000, ge=1)
    """Generator steps (reference: 2,000; halved for CPU)."""
    batch_size: int = Field(100, ge=1)
    """Generated images per step (reference: 5,000; DP-MERF's 100 for CPU)."""
    lr: float = Field(0.01, gt=0)
    """Generator Adam learning rate (reference: 0.01)."""
    lr_decay: float = Field(0.9, gt=0, le=1)
    """Total lr decay factor over training, applied geometrically (the reference decays ×0.9 once)."""
    embed_batch_size: int = Field(16, ge=1)
    """Private images embedded at once: each is a D-dimensional row (~5 MB in float64 for MNIST)."""


class DPNTK(ReleaseOnceMethod):
    """DP-NTK; see the module docstring."""

    name: ClassVar[str] = "dp-ntk"
    Config: ClassVar[type[MethodConfig]] = DPNTKConfig
    capabilities: ClassVar[Capabilities] = Capabilities(labelled=True, unlabelled=True, channels=(1, 3))
    conformance_config: ClassVar[dict[str, Any]] = {"ntk_width": 16, "steps": 2, "batch_size": 10}
    tuned_on: ClassVar[str] = "paper"  # the reference's MNIST values, batch and steps cut for CPU; never evaluated

    @classmethod
    def num_moments(cls, config: DPNTKConfig) -> int:
        return 1  # the e-NTK features

    def __init__(self, config, info, seed: int = 0, context=None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        cfg = self.config
        outputs = cfg.ntk_outputs if cfg.ntk_outputs is not None else info.num_classes
        self.ntk = NTKFeatures(info.channels * info.height * info.width, cfg.ntk_width, outputs,
                               self.seed if cfg.ntk_seed is None else cfg.ntk_seed, self.device)

    def _build_generator(self) -> ConditionalGenerator:
        cfg = self.config
        classes = self.info.num_classes if cfg.labelled else 0
        size, ch = self.info.height, self.info.channels
        if cfg.generator == "conv" or (cfg.generator == "auto" and not (ch == 3 and size in (32, 64))):
            return ConvCondGenerator(size, ch, classes, z_dim=cfg.z_dim or 5, hidden=cfg.hidden)
        return build_generator(cfg.generator, size, ch, classes, cfg.z_dim)

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised e-NTK features (N, D), each row of norm 1."""
        return {"ntk": self.ntk.rows(images)}

    def release(self, train, budget, ledger, class_sums=None) -> ReleasedEmbedding:
        """:meth:`ReleaseOnceMethod.release` with the per-class sums computed in closed form
        (:meth:`ntk_class_sums`) unless ``class_sums`` is given (the audit's memoised generic sums)."""
        return super().release(train, budget, ledger, class_sums or self.ntk_class_sums)

    @torch.no_grad()
    def ntk_class_sums(self, embed, images: torch.Tensor, labels: torch.Tensor, num_classes: int, sum_norm: float,
                       batch_size: int = 256, device="cpu", progress: bool = False) -> ClassSums:
        """:func:`~.mean_embedding.per_class_sums` of :meth:`embed` (same signature and result, ``embed``
        unused) without materialising D-dimensional rows: each row is normalised to norm exactly 1 = C by its
        analytic norm, in float64 (tests check both against autograd and the generic path)."""
        if not sum_norm >= 1.0:
            raise ValueError(f"DP-NTK rows have norm 1; a clipping norm C={sum_norm} < 1 needs the generic path")
        sums = torch.zeros(num_classes, self.ntk.dim, dtype=torch.float64)
        chunk = max(batch_size, 256)  # no D-dimensional rows here, so larger chunks cost little memory
        for start in tqdm(range(0, len(images), chunk), desc="embedding private data", disable=not progress,
                          leave=False):
            x = images[start : start + chunk].to(device).double()
            y = labels[start : start + chunk].long().to(device)
            blocks = self.ntk.class_means(x, y, num_classes, sums=True)
            sums += torch.cat([b.reshape(num_classes, -1) for b in blocks], dim=1).cpu()
        if not len(images):
            raise ValueError("no private examples to embed")
        return ClassSums({"ntk": sums}, torch.bincount(labels.long().cpu(), minlength=num_classes).double())

    def train_generator(self, released: ReleasedEmbedding, steps: int | None = None) -> None:
        """Minimise Σ_k ‖μ̃_k − μ̂_fake,k‖² over the e-NTK features (post-processing only)."""
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        real = self.ntk.split(released.means["ntk"].to(self.device))
        k_classes = real[0].shape[0]
        opt = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay ** (1.0 / max(steps, 1)))
        gen = torch.Generator().manual_seed(self.seed + 1)
        self.generator.train()
        losses = []
        for step in tqdm(range(steps), desc=f"{self.name} generator", disable=not self.context.progress):
            labels = self._batch_labels(cfg.batch_size, gen)
            fake = self.generator(self.generator.sample_noise(cfg.batch_size, gen, self.device), labels)
            fake_labels = labels if labels is not None else torch.zeros(cfg.batch_size, dtype=torch.long,
                                                                          device=self.device)
            fake_means = self.ntk.class_means(fake, fake_labels, k_classes)
            present = torch.bincount(fake_labels, minlength=k_classes) > 0
            loss = sum(((r[present] - f[present]) ** 2).sum() for r, f in zip(real, fake_means))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 50 == 0 or step == steps - 1:
                losses.append((step, float(loss.detach())))
        self.history["loss"] = losses
