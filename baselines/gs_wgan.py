"""GS-WGAN (Chen, Orekondy & Fritz, NeurIPS 2020): a gradient-sanitised conditional WGAN-GP, with a correct
privacy charge under add/remove-one (``docs/gs_wgan.md``).

The algorithm (as in the authors' code, ``source/main.py``):

* The private examples are split into ``num_discriminators`` (N_D) disjoint parts, one discriminator D_k per
  part. Each D_k is trained **non-privately** on its own part (WGAN-GP loss with the drift penalty), first
  ``pretrain_iterations`` warm-up iterations against a throw-away generator of its own, then whenever it is
  sampled. No discriminator ever leaves ``fit`` (they are not in the checkpoint).
* Iteration t: pick k uniformly at random (secret), take ``critic_iters`` steps of D_k on its part, then one
  generator step through D_k: for a public batch of B latents and labels, the gradient of −D_k with respect
  to each generated image (∂L/∂x̂, one row per image) is clipped to norm C and Gaussian noise is added to every
  coordinate. That noisy B×d matrix is the **release**; G's parameter gradient is its back-propagation
  through G (post-processing). The original does this in a backward hook on D's first layer (the "dynamic
  hook"); here :func:`sanitise_rows` is the one place it happens.

The charge (derived in ``docs/gs_wgan.md``): removing or adding one example can change its discriminator
arbitrarily (non-private training from the first step on, state carried across iterations), so **every row**
of a release through that discriminator can move anywhere inside the clipping ball: the release's L2
sensitivity is 2·C·√B. Each iteration is a Gaussian mechanism with that sensitivity, whatever
discriminator is drawn (the bound holds for any D, so the partition, the pre-training and the secrecy of the
draw are not needed for it), and T iterations compose adaptively. The ledger records
``PoissonSubsampledGaussianEvent(σ, sample_rate=1.0, steps=T)``: T un-subsampled Gaussian releases, noise std
σ·2C√B. The original analysis counts the B rows of an iteration as B independent releases each subsampled
with q = 1/N_D; :data:`ORIGINAL_ACCOUNTING` reproduces it for the comparison table and for the broken
variant ``original-accounting`` (:meth:`GSWGAN.broken_variants`).

Randomness: everything on the discriminators' side (part assignment, the choice of k, real batches, their
fakes' latents, gradient-penalty mixing) comes from one OS-entropy generator per fit; the generator step's
latents and labels are public, seeded per step; release noise is :func:`~dpgen_bench.privacy.noise.gaussian_noise`.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from tqdm.auto import tqdm

from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.method import BrokenVariant, Capabilities, GenerativeMethod, MethodConfig
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import gaussian_noise, public_generator, release_generator

from .dcgan import SUPPORTED_SIZES, Discriminator, Generator, validate_per_example

CHARGED_ACCOUNTING = "charged"
"""Our analysis: T Gaussian releases with L2 sensitivity 2·C·√B each (no amplification)."""
ORIGINAL_ACCOUNTING = "original"
"""The authors' analysis (``evaluation/privacy_analysis.py``): T·B releases, each a Gaussian of sensitivity 2C
(one row, replace-one) Poisson-subsampled at q = 1/N_D. Under-counts: kept only for comparison and the
audit's broken variant."""


class TrainingDivergedError(RuntimeError):
    """A GAN loss became NaN or infinite; the message names the iteration."""


class GSWGANConfig(MethodConfig):
    """Hyper-parameters of GS-WGAN. Defaults are a CPU-sized version of the paper's MNIST run (not tuned on any
    data: paper values where they fit in a few minutes on 2 cores, scaled-down counts otherwise); the paper's
    values are in ``configs/dpimagebench-mnist.yaml`` and ``docs/gs_wgan.md``.

    An "iteration" is ``critic_iters`` steps of one sampled discriminator followed by one sanitised generator
    step (one release, one accounted Gaussian event).
    """

    num_discriminators: int = Field(
        10, ge=1, le=100_000, description="N_D, disjoint data parts with one discriminator each (paper: 1000)")
    iterations: int = Field(400, ge=1, le=1_000_000, description="T, generator steps = releases (paper: 20000)")
    pretrain_iterations: int = Field(
        20, ge=0, le=100_000, description="non-private warm-up iterations of every discriminator on its part, "
        "each against its own throw-away generator (paper: 2000); free under the charge")
    critic_iters: int = Field(5, ge=1, le=100, description="discriminator steps per iteration (paper: 5)")
    batch_size: int = Field(32, ge=1, le=65_536, description="B, generated images per release and real images "
                            "per discriminator step (paper: 32)")
    max_grad_norm: float = Field(1.0, gt=0, description="C, the L2 clipping bound of each row ∂L/∂x̂_i")
    lr: float = Field(1e-4, gt=0, le=1.0, description="Adam learning rate of G and every D (paper: 1e-4)")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam β1 (paper: 0.5)")
    beta2: float = Field(0.9, ge=0, lt=1, description="Adam β2 (paper: 0.9)")
    lambda_gp: float = Field(10.0, ge=0, description="WGAN-GP gradient-penalty weight (paper: 10)")
    lambda_drift: float = Field(1e-3, ge=0, description="penalty on D(real)² (paper's L_epsilon: 0.001)")
    z_dim: int = Field(10, ge=1, le=4096, description="latent dimension (paper: 10)")
    latent: Literal["bernoulli", "normal"] = Field("bernoulli", description="latent distribution (paper: "
                                                   "bernoulli(0.5))")
    g_width: int = Field(32, ge=4, le=1024, description="generator channels at full resolution")
    d_width: int = Field(32, ge=4, le=1024, description="discriminator channels after the first conv")
    ema_decay: float | None = Field(0.999, ge=0, lt=1, description="generator EMA (paper: 0.999, with warm-up "
                                    "min(1 − 1/(t+1), decay)); None samples from G")

    @field_validator("g_width", "d_width")
    @classmethod
    def _even_width(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"width must be even, got {v}")
        return v


# ------------------------------------------------------------------------------------------------ accounting


def release_sensitivity(config: GSWGANConfig, accounting: str = CHARGED_ACCOUNTING) -> float:
    """The L2 sensitivity the calibrated σ refers to (noise std per coordinate = σ × this).

    Charged: one iteration's B×d matrix of clipped rows, every row free to move inside the ball of radius C,
    2·C·√B. Original: one row, 2C."""
    if accounting == CHARGED_ACCOUNTING:
        return 2.0 * config.max_grad_norm * math.sqrt(config.batch_size)
    if accounting == ORIGINAL_ACCOUNTING:
        return 2.0 * config.max_grad_norm
    raise ValueError(f"unknown accounting {accounting!r}; valid: {CHARGED_ACCOUNTING!r}, {ORIGINAL_ACCOUNTING!r}")


def accounting_events(config: GSWGANConfig, sigma: float, iterations: int,
                      accounting: str = CHARGED_ACCOUNTING) -> list[PoissonSubsampledGaussianEvent]:
    """The events of ``iterations`` releases at noise multiplier ``sigma`` (relative to
    :func:`release_sensitivity`) under ``accounting``."""
    if accounting == CHARGED_ACCOUNTING:
        return [PoissonSubsampledGaussianEvent(sigma, 1.0, iterations)]
    if accounting == ORIGINAL_ACCOUNTING:
        return [PoissonSubsampledGaussianEvent(sigma, 1.0 / config.num_discriminators,
                                               iterations * config.batch_size)]
    raise ValueError(f"unknown accounting {accounting!r}; valid: {CHARGED_ACCOUNTING!r}, {ORIGINAL_ACCOUNTING!r}")


# ------------------------------------------------------------------------------------------------ the release


def sanitise_rows(grad: torch.Tensor, clip: float, noise_std: float, sensitivity: float | None = None) -> torch.Tensor:
    """The GS-WGAN release: every row of ``grad`` (B, ...) = ∂L/∂x̂_i clipped to L2 norm ``clip``, plus
    N(0, noise_std²) on every coordinate (fresh OS-entropy noise; ``noise_std`` = 0: clipped only).
    ``sensitivity``: the L2 sensitivity ``noise_std`` was scaled to (:func:`release_sensitivity`), declared to
    the noise recorder so the conformance suite can check the draw against the ledger."""
    rows = grad.flatten(1)
    scale = (clip / rows.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
    clipped = rows * scale[:, None]
    if noise_std > 0:
        clipped = clipped + gaussian_noise(clipped.shape, noise_std, dtype=clipped.dtype, device=clipped.device,
                                         sensitivity=sensitivity)
    return clipped.view_as(grad)


def generator_loss_gradient(D: nn.Module, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∂(−Σ_i D(x̂_i, y_i))/∂x̂: row i is the gradient of generated image i's own loss (D is per-example), the
    quantity the original's hook on D's first layer sanitises. D's parameters get no gradient."""
    x = fake.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(-D(x, labels).sum(), x)
    return grad


@contextmanager
def _seeded(*stream: int | str) -> Iterator[None]:
    """Torch's global RNG seeded from a public stream inside, restored after (module initialisation)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(public_generator(*stream).initial_seed())
        yield


def _with_original_accounting(method_cls: type) -> type:
    """``method_cls`` charging the original analysis (the broken variant ``original-accounting``)."""
    return type(f"{method_cls.__name__}OriginalAccounting", (method_cls,), {"accounting": ORIGINAL_ACCOUNTING})


class GSWGAN(GenerativeMethod):
    """GS-WGAN: N_D non-private discriminators on disjoint parts, a conditional generator trained through one
    sampled discriminator's clipped and noised ∂L/∂x̂ (see the module docstring and ``docs/gs_wgan.md``)."""

    name: ClassVar[str] = "gs-wgan"
    Config: ClassVar[type[MethodConfig]] = GSWGANConfig
    config: GSWGANConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        labelled=True, unlabelled=False, channels=(1, 3), image_sizes=SUPPORTED_SIZES, dp_sgd=False)
    conformance_config: ClassVar[dict[str, Any]] = {
        "num_discriminators": 3, "iterations": 3, "pretrain_iterations": 1, "critic_iters": 1, "batch_size": 8,
        "g_width": 8, "d_width": 8, "z_dim": 4,
    }
    tuned_on: ClassVar[str] = "paper"  # paper values, counts scaled down for 2 cores; never evaluated (docs/gs_wgan.md)
    accounting: ClassVar[str] = CHARGED_ACCOUNTING
    """Which analysis ``privacy_plan`` and the ledger use; only the audit's broken variant changes it."""

    def __init__(self, config: GSWGANConfig | dict[str, Any] | None, info: DatasetInfo, seed: int = 0,
                 context: RunContext | None = None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        if info.num_classes < 2:
            raise ValueError(f"gs-wgan is class-conditional and needs >= 2 classes, dataset has {info.num_classes}")
        with _seeded(self.seed, "gs-wgan-g"):
            self.generator = self._build_generator().to(self.device)
        validate_per_example(self.generator)
        self.ema = copy.deepcopy(self.generator).requires_grad_(False) if self.config.ema_decay is not None else None
        self.noise_multiplier: float | None = None
        self.iterations_done = 0
        self._audit_rows: dict[tuple, torch.Tensor] = {}

    # -- networks --------------------------------------------------------------------------------
    def _build_generator(self) -> nn.Module:
        c = self.config
        return Generator(self.info.channels, self.info.height, self.info.num_classes, c.z_dim, c.g_width)

    def _build_discriminator(self, k: int) -> nn.Module:
        with _seeded(self.seed, "gs-wgan-d", k):
            return Discriminator(self.info.channels, self.info.height, self.info.num_classes,
                                 self.config.d_width).to(self.device)

    def _adam(self, module: nn.Module) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.Adam(module.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    def _latents(self, m: int, gen: torch.Generator) -> torch.Tensor:
        if self.config.latent == "bernoulli":
            return torch.bernoulli(torch.full((m, self.config.z_dim), 0.5, device=self.device), generator=gen)
        return torch.randn(m, self.config.z_dim, device=self.device, generator=gen)

    # -- privacy ---------------------------------------------------------------------------------
    @classmethod
    def broken_variants(cls) -> tuple[BrokenVariant, ...]:
        """``original-accounting``: GS-WGAN with the authors' analysis (the B rows of an iteration counted as B
        independent releases, each subsampled at 1/N_D): σ calibrated to, and the ledger recording, those cheaper
        events (``docs/gs_wgan.md``). The audit must flag it."""
        return (BrokenVariant(
            "original-accounting", "GS-WGAN with the authors' analysis: the B rows of an iteration counted as "
            "independent releases subsampled at 1/N_D; σ calibrated to and the ledger recording those events",
            transform=_with_original_accounting),)

    @classmethod
    def privacy_plan(cls, config: GSWGANConfig, nominal_size: int):  # type: ignore[override]
        """σ → the events of ``iterations`` releases (n̂ plays no part: the charge holds for any partition)."""
        return lambda sigma: accounting_events(config, sigma, config.iterations, cls.accounting)

    def _calibrated_sigma(self, train: ImageDataset, budget: PrivacyBudget) -> float:
        if not budget.is_private:
            return 0.0
        cache = self.__dict__.setdefault("_sigmas", {})  # calibration is deterministic in its public inputs
        key = (self.config.iterations, budget)
        if key not in cache:
            cache[key] = float(calibrate(self.privacy_plan(self.config, train.public_size()), budget))
        return cache[key]

    def _record(self, ledger: PrivacyLedger, sigma: float, iterations: int) -> None:
        for event in accounting_events(self.config, sigma, iterations, self.accounting):
            ledger.record(event, f"{self.name}: {iterations} sanitised generator releases ({self.accounting} "
                                 f"accounting: sigma={sigma:.6g} x sensitivity "
                                 f"{release_sensitivity(self.config, self.accounting):.6g}, "
                                 f"B={self.config.batch_size}, N_D={self.config.num_discriminators})")

    # -- the discriminators (non-private, never released) ------------------------------------------
    def _parts(self, train: ImageDataset, gen: torch.Generator | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The disjoint parts: each example in part U{0..N_D−1} drawn from ``gen`` (secret), or, for the audit
        (``gen`` None), part = row index mod N_D, so that appending a canary leaves every other row's part."""
        n, nd = len(train), self.config.num_discriminators
        part = torch.arange(n) % nd if gen is None else torch.randint(nd, (n,), generator=gen, device=gen.device)
        part = part.to(self.device)
        images, labels = train.images.to(self.device), train.labels.to(self.device)
        return [(images[part == k], labels[part == k]) for k in range(nd)]

    def _gradient_penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor,
                          gen: torch.Generator) -> torch.Tensor:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=self.device, generator=gen)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(mixed, y).sum(), mixed, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()

    def _d_step(self, D: nn.Module, opt: torch.optim.Optimizer, G: nn.Module,
                part: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator) -> None:
        """One WGAN-GP step of D on a batch drawn with replacement from its part (skipped for an empty part)."""
        images, labels = part
        if len(images) == 0:
            return
        c = self.config
        idx = torch.randint(len(images), (c.batch_size,), generator=gen, device=gen.device).to(self.device)
        x, y = images[idx], labels[idx]
        with torch.no_grad():
            fake = G(self._latents(c.batch_size, gen), y)
        real_score = D(x, y)
        loss = D(fake, y).mean() - real_score.mean() + c.lambda_drift * (real_score ** 2).mean()
        if c.lambda_gp:
            loss = loss + c.lambda_gp * self._gradient_penalty(D, x, fake, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def _pretrain(self, k: int, D: nn.Module, opt: torch.optim.Optimizer,
                  part: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator) -> None:
        """The original's warm-up: D_k against a generator of its own, both non-private; the generator is
        discarded (only D_k continues)."""
        c = self.config
        if not c.pretrain_iterations or len(part[0]) == 0:
            return
        with _seeded(self.seed, "gs-wgan-pretrain-g", k):
            G = self._build_generator().to(self.device)
        opt_g = self._adam(G)
        for _ in range(c.pretrain_iterations):
            for _ in range(c.critic_iters):
                self._d_step(D, opt, G, part, gen)
            y = torch.randint(self.info.num_classes, (c.batch_size,), device=self.device, generator=gen)
            loss = -D(G(self._latents(c.batch_size, gen), y), y).mean()
            grads = torch.autograd.grad(loss, list(G.parameters()))
            for p, g in zip(G.parameters(), grads):
                p.grad = g
            opt_g.step()

    def _discriminator(self, k: int, part: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator,
                       init: int | None = None):
        """D_k and its optimiser, pre-trained on its part; ``init`` picks the seeded initialisation (default k)."""
        D = self._build_discriminator(k if init is None else init)
        opt = self._adam(D)
        self._pretrain(k, D, opt, part, gen)
        return D, opt

    # -- training --------------------------------------------------------------------------------
    def _g_batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Iteration t's public latents and labels (uniform labels: no use of private class frequencies)."""
        gen = public_generator(self.seed, "gs-wgan-g-step", t, device=self.device)
        z = self._latents(self.config.batch_size, gen)
        y = torch.randint(self.info.num_classes, (self.config.batch_size,), device=self.device, generator=gen)
        return z, y

    def _g_update(self, fake: torch.Tensor, released: torch.Tensor, opt_g: torch.optim.Optimizer, t: int) -> None:
        """Back-propagate the released (noisy) ∂L/∂x̂, averaged over the batch, through G: post-processing."""
        opt_g.zero_grad(set_to_none=True)
        fake.backward(released / self.config.batch_size)
        opt_g.step()
        if self.ema is not None:
            decay = min(1.0 - 1.0 / (t + 1), float(self.config.ema_decay))
            with torch.no_grad():
                for pe, p in zip(self.ema.parameters(), self.generator.parameters()):
                    pe.lerp_(p, 1.0 - decay)

    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        """Train on ``train`` at ``budget``; records the releases actually made in ``ledger`` (also when
        training stops early). ε = ∞: clipped, un-noised, nothing recorded."""
        if train.info.shape != self.info.shape:
            raise ValueError(f"training images have shape {train.info.shape}, the model was built for {self.info.shape}")
        self.capabilities.check_accountant(budget.accountant)
        c = self.config
        sigma = self._calibrated_sigma(train, budget)
        self.noise_multiplier = sigma if budget.is_private else None
        sensitivity = release_sensitivity(c, self.accounting)
        std = sigma * sensitivity
        # Everything on the discriminators' side is internal to the mechanism: OS entropy when private.
        gen = release_generator(self.device) if budget.is_private else public_generator(self.seed, "gs-wgan-d-side",
                                                                                         device=self.device)
        G = self.generator.train()
        opt_g = self._adam(G)
        done = 0
        try:
            parts = self._parts(train, gen)
            Ds, opts = zip(*(self._discriminator(k, part, gen) for k, part in enumerate(parts)))
            for t in tqdm(range(c.iterations), desc=f"{self.name} iterations", leave=False,
                          disable=not self.context.progress):
                k = int(torch.randint(c.num_discriminators, (1,), generator=gen, device=gen.device))
                for _ in range(c.critic_iters):
                    self._d_step(Ds[k], opts[k], G, parts[k], gen)
                z, y = self._g_batch(t)
                fake = G(z, y)
                released = sanitise_rows(generator_loss_gradient(Ds[k], fake, y), c.max_grad_norm, std, sensitivity)
                done += 1
                if not torch.isfinite(released).all():
                    raise TrainingDivergedError(f"non-finite generator gradient at iteration {t + 1}; lower lr")
                self._g_update(fake, released, opt_g, t)
        finally:
            self.iterations_done = done
            if budget.is_private and done:
                self._record(ledger, sigma, done)
        self.generator.eval()
        if self.ema is not None:
            self.ema.eval()

    # -- the mechanism audit (docs/audit.md, docs/gs_wgan.md) --------------------------------------
    def audit_release(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger | None = None,
                      *, discriminator: int | None = None) -> torch.Tensor:
        """The first iteration's release (B×d noisy ∂L/∂x̂, flattened, float64) through the real code of
        ``fit``: the discriminator drawn uniformly from OS entropy, :func:`sanitise_rows` with the noise σ that
        ``fit`` calibrates, one iteration's events recorded in ``ledger``.

        What the audit fixes is allowed to be adversarial and public: parts by row index mod N_D (a canary
        appended to D lands in part n mod N_D, the others keep theirs), the discriminators' internal draws from
        a public stream, one initialisation for every discriminator, G at its seeded initialisation. The charge holds for any such choice, so the
        clipped rows of each discriminator are a deterministic function of the images and are memoised; the
        noise is fresh on every call. ``discriminator`` forces the draw (the auditor's noiseless shift)."""
        c = self.config
        sigma = self._calibrated_sigma(train, budget)
        sensitivity = release_sensitivity(c, self.accounting)
        std = sigma * sensitivity
        k = discriminator if discriminator is not None else int(
            torch.randint(c.num_discriminators, (1,), generator=release_generator()))
        released = sanitise_rows(self._audit_gradient(train, k), c.max_grad_norm, std, sensitivity)
        if budget.is_private and ledger is not None:
            self._record(ledger, sigma, 1)
        return released.flatten().double().cpu()

    def audit_direction(self, data: ImageDataset, neighbour: ImageDataset) -> torch.Tensor:
        """Σ_k [release(D′ | k) − release(D | k)] at ε = ∞: the canary's noiseless shift summed over the
        discriminator draws. Every part but the canary's is the same on D and D′ and its rows are a deterministic
        function of it, so every term but one is zero: this is the shift when the canary's discriminator is drawn,
        the direction the hook audit projects on (the draw itself stays secret in the trials)."""
        exact = PrivacyBudget(math.inf, 1e-5)
        return sum(self.audit_release(neighbour, exact, discriminator=k) - self.audit_release(data, exact, discriminator=k)
                   for k in range(self.config.num_discriminators))

    def _audit_gradient(self, train: ImageDataset, k: int) -> torch.Tensor:
        key = (id(train.images), train.images._version, len(train), k)
        if key not in self._audit_rows:
            with _seeded(self.seed, "gs-wgan-g"):
                G = self._build_generator().to(self.device).train()
            gen = public_generator(self.seed, "gs-wgan-audit-d-side", device=self.device)
            part = self._parts(train, None)[k]
            # Only the drawn D matters to this release; all start from one initialisation, so the ones whose
            # parts are equal on D and D' (empty ones included) give equal rows: the worst case for mixing.
            D, opt = self._discriminator(k, part, gen, init=0)
            for _ in range(self.config.critic_iters):
                self._d_step(D, opt, G, part, gen)
            z, y = self._g_batch(0)
            self._audit_rows[key] = generator_loss_gradient(D, G(z, y), y).detach()
        return self._audit_rows[key]

    def audit_canary(self, data: ImageDataset) -> tuple[torch.Tensor, int]:
        """The white image in class 0; appended as row n it lands in part n mod N_D (see :meth:`audit_release`)."""
        return torch.ones(*data.info.shape), 0

    # -- sampling and checkpoints ----------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        net = self.ema if self.ema is not None else self.generator
        net.eval()
        if self.config.latent == "bernoulli":
            z = torch.bernoulli(torch.full((n, self.config.z_dim), 0.5), generator=generator)
        else:
            z = torch.randn(n, self.config.z_dim, generator=generator)
        assert labels is not None
        out = [net(z[i:i + 500].to(self.device), labels[i:i + 500].to(self.device)).float().clamp_(0, 1).cpu()
               for i in range(0, n, 500)]
        return torch.cat(out) if out else torch.empty(0, *self.info.shape)

    def checkpoint_state(self) -> dict[str, Any]:
        """Generator (and EMA) weights and the noise used; never a discriminator (trained non-privately)."""
        return {"generator": self.generator.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "noise_multiplier": self.noise_multiplier, "iterations_done": self.iterations_done}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.generator.eval()
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError("checkpoint has no EMA weights but the config enables ema_decay")
            self.ema.load_state_dict(state["ema"])
            self.ema.eval()
        self.noise_multiplier = state.get("noise_multiplier")
        self.iterations_done = int(state.get("iterations_done") or 0)


__all__ = ["GSWGAN", "GSWGANConfig", "CHARGED_ACCOUNTING", "ORIGINAL_ACCOUNTING", "TrainingDivergedError",
           "accounting_events", "generator_loss_gradient", "release_sensitivity", "sanitise_rows"]
