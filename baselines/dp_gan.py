"""DP-SGD GAN baselines: ``dp-gan`` (unconditional) and ``dp-cgan`` (class-conditional), trained with Opacus.

Privacy argument (add/remove-one neighbouring, docs/privacy.md, docs/dp_gan.md):

* Only the discriminator D touches private data, and only through DP-SGD: Opacus's ``PrivacyEngine``
  wraps D (per-sample gradients, clipping to ``max_grad_norm`` = C, Gaussian noise of std σ·C per step).
* Each step draws a Poisson batch of real examples (every example independently with rate q = batch_size/n̂,
  n̂ the *declared* size of the private split — its actual length is private) and exactly as many fake
  images, fake *i* conditioned on real label *i*. Fake *i* depends only on its own latent z_i and label
  (G is per-example: GroupNorm, no batch statistics, no buffers), so the pair's gradient is a function of
  example *i* and z_i alone; the conformance suite checks this through :meth:`~_BaseDPGAN.gradient_probe`.
  The z_i of D's step are drawn from OS entropy, like the gradient noise and the batch selection: they are
  part of the mechanism's internal randomness, and a public stream would tie each z to a row position that
  shifts when an example is removed. D runs once on the real batch and
  once on the fake batch before a single backward, so Opacus accumulates the per-sample gradients of
  row *i* of both passes into one gradient of the *pair* (real *i*, fake *i*), and clips that pair's
  gradient to C. Adding or removing one private example adds or removes one pair, so the clipped sum
  changes by at most C: each optimizer step is exactly one Poisson-subsampled Gaussian mechanism with
  noise multiplier σ. (Clipping real and fake rows separately would double the sensitivity, because the
  number of fake rows follows the real batch size.)
* In Opacus's hooks mode D's convolutions (:class:`~.per_sample_conv.PerSampleConv2d`) skip autograd's
  batch weight gradient: ``DPOptimizer`` overwrites ``.grad`` with the noisy clipped sum of per-sample
  gradients, so that gradient was never used (a test checks the update is unchanged).
* An empty Poisson batch still takes a (noise-only) step: skipping it would reveal that the batch was
  empty. Every step taken is counted; the ledger gets the count actually performed.
* The generator G only sees D's outputs (post-processing); its step runs with D's Opacus hooks disabled
  and computes gradients for G's parameters only, so D's per-sample-gradient state is never touched.
* σ comes from the shared calibrator for the plan (q, steps) that ``epochs``, ``batch_size`` and n̂ imply,
  with the budget's accountant. Nothing public (q, T, σ, the G-step draws) depends on the private batch
  sizes or the actual dataset size: the G step's latents and labels come from a fresh public generator per
  step, seeded from (seed, step), and always draw ``batch_size`` rows.
* With ``physical_batch_size`` P a private D step runs in chunks of exactly P pairs, the Poisson batch padded
  with masked pairs whose gradient rows are zeroed before clipping (the helper DPDM shares,
  :func:`~.dpsgd_rows.step_in_fixed_chunks`): the step's memory is then a function of the public P, not of the
  private batch size; its clipped sum, noise and divisor are the one-pass step's.
* A run that diverges (non-finite loss) stops with :class:`TrainingDivergedError`; the steps taken
  before it are still recorded in the ledger.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from unittest import mock
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dpgen_bench.context import RunContext
from dpgen_bench.data.loaders import poisson_loader
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.method import BrokenVariant, Capabilities, GenerativeMethod, GradientProbe, MethodConfig
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import public_generator, release_generator
from dpgen_bench.privacy.plans import dpsgd_plan_from_settings

from .dcgan import SUPPORTED_SIZES, Discriminator, Generator, validate_per_example, validate_private_discriminator
from .dp_sgd import GradSampleMode, groups_rows, make_private_module
from .dpsgd_rows import nonfinite_rows, parameters_finite, step_in_fixed_chunks, zero_rows

AUDIT_OUTSIDER_NORM = 1.0e4
"""Norm of the latent the audit gives the canary's fakes (:meth:`_BaseDPGAN.audit_latents`): large enough that,
in a generator with batch statistics, the canary's activations dominate every batch it joins."""

if TYPE_CHECKING:
    from opacus import PrivacyEngine
    from opacus.optimizers import DPOptimizer


def make_private_discriminator(
    D: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: int,
    grad_sample_mode: GradSampleMode = "hooks",
    noise_generator: torch.Generator | None = None,
) -> tuple[nn.Module, DPOptimizer, PrivacyEngine]:
    """Wrap discriminator ``D`` and its optimizer for DP-SGD with Opacus; returns (D, optimizer, engine).

    ``loader`` must already sample Poisson batches (Opacus does not re-wrap it); ``noise_multiplier`` is σ
    relative to ``max_grad_norm`` (the per-example clipping bound C > 0); ``expected_batch_size`` is q·n, the
    divisor of the noisy gradient sum. A second backward before ``step()`` raises (``forbid_grad_accumulation``).
    In hooks mode the batch weight gradients that ``DPOptimizer`` discards are not computed
    (:func:`skip_batch_weight_grads`). ``noise_generator`` draws the gradient noise; None means a fresh one
    seeded from OS entropy (:func:`dpgen_bench.privacy.noise.release_generator`), never the public run seed.
    ``"grouped"`` is hooks mode through :class:`~.grouped_grad_sample.GroupedGradSampleModule`: the trainer then
    runs each (real, fake) pair as two consecutive rows of one forward and gets one gradient per pair directly.
    """
    if noise_generator is None:
        noise_generator = release_generator(next(D.parameters()).device)
    D, optimizer, engine = make_private_module(
        D, optimizer, loader, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        grad_sample_mode=grad_sample_mode, noise_generator=noise_generator)
    optimizer.expected_batch_size = expected_batch_size  # Opacus derives it from len(loader)
    return D, optimizer, engine


def _is_private(D: nn.Module) -> bool:
    """Whether ``D`` is wrapped for DP-SGD (Opacus's per-sample-gradient module)."""
    from opacus import GradSampleModule

    return isinstance(D, GradSampleModule)


class TrainingDivergedError(RuntimeError):
    """A GAN loss became NaN or infinite; the message names the step and the loss."""


class DPGANConfig(MethodConfig):
    """Hyper-parameters of the DP-SGD GANs. Defaults train ``mnist-5k`` (3,600 training images) in under 10
    minutes on 2 CPU cores; ``epochs`` was chosen for DP-CGAN on mnist-5k's tuning split (``tuned_on``).

    A "step" is one discriminator update on one Poisson batch (one accounted DP-SGD step); the number of
    steps is ``dpsgd_steps(n̂, batch_size, epochs)`` with sample rate q = batch_size / n̂ (n̂: the private
    split's declared size, ``ImageDataset.public_size()``).
    """

    epochs: int = Field(50, ge=1, le=10_000, description="expected passes over the private data, >= 1")
    batch_size: int = Field(64, ge=1, le=65_536, description="expected Poisson batch size (q = batch_size / n̂)")
    lr_d: float = Field(2e-4, gt=0, le=1.0, description="discriminator Adam learning rate")
    lr_g: float = Field(2e-4, gt=0, le=1.0, description="generator Adam learning rate")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam β1 for both networks")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam β2 for both networks")
    d_steps_per_g_step: int = Field(1, ge=1, le=100, description="discriminator steps per generator step")
    max_grad_norm: float = Field(1.0, gt=0, description="per-example L2 clipping bound C of D's gradient")
    ema_decay: float | None = Field(
        0.995, ge=0, lt=1, description="generator EMA decay per G step; None disables EMA (samples from G)"
    )
    loss: Literal["bce", "hinge"] = Field("bce", description="non-saturating BCE or hinge GAN loss")
    z_dim: int = Field(100, ge=1, le=4096, description="generator noise dimension")
    g_width: int = Field(64, ge=4, le=1024, description="generator channels at full resolution")
    d_width: int = Field(32, ge=4, le=1024, description="discriminator channels after the first conv")
    grad_sample_mode: Literal["hooks", "functorch", "grouped"] = Field(
        "hooks", description="how per-pair gradients are computed (all keep the pair semantics): Opacus's hooks "
        "(also skips the batch weight gradient DP-SGD discards) or functorch, or grouped (one forward of the "
        "2B rows, one gradient per pair from the hooks: docs/dpsgd_speed.md)"
    )
    physical_batch_size: int | None = Field(
        None, ge=1, le=65_536, description="pairs per forward/backward chunk of a private discriminator step "
        "(memory only: the step, its clipping and its noise are unchanged; the Poisson batch is padded with masked "
        "pairs to whole chunks, so memory depends on this public size alone); None: the whole Poisson batch at "
        "once. Non-private (ε = ∞) steps always take the whole batch",
        json_schema_extra={"key_neutral": True})  # added later: cells at the default keep their keys

    @field_validator("g_width", "d_width")
    @classmethod
    def _even_width(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"width must be even, got {v}")
        return v


class _BaseDPGAN(GenerativeMethod):
    """Shared training loop; subclasses fix whether labels are used."""

    Config: ClassVar[type[MethodConfig]] = DPGANConfig
    conditional: ClassVar[bool] = False
    config: DPGANConfig
    tuned_on: ClassVar[str] = "mnist-5k:tuning"  # epochs 50: dpgen-bench tune of DP-CGAN on the tuning split (results/tune_dp_cgan_mnist5k)
    conformance_config: ClassVar[dict[str, Any]] = {
        "epochs": 1, "batch_size": 16, "g_width": 8, "d_width": 8, "z_dim": 8,
    }

    def __init__(
        self,
        config: DPGANConfig | dict[str, Any] | None,
        info: DatasetInfo,
        seed: int = 0,
        context: RunContext | None = None,
    ) -> None:
        super().__init__(config, info, seed=seed, context=context)
        if self.conditional and info.num_classes < 2:
            raise ValueError(f"{self.name or type(self).__name__} needs >= 2 classes, dataset has {info.num_classes}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.generator = self.build_generator().to(self.device)
        validate_per_example(self.generator)
        self.ema: nn.Module | None = None
        if self.config.ema_decay is not None:
            self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.noise_multiplier: float | None = None
        self.steps_taken = 0
        self.sample_rate: float | None = None

    @property
    def samples_labelled(self) -> bool:
        return self.conditional

    # -- architectures (override to change them; D and G are always checked) ----------------------
    @property
    def _num_classes(self) -> int:
        return self.info.num_classes if self.conditional else 0

    def build_generator(self) -> nn.Module:
        c = self.config
        return Generator(self.info.channels, self.info.height, self._num_classes, c.z_dim, c.g_width)

    def build_discriminator(self) -> nn.Module:
        return Discriminator(self.info.channels, self.info.height, self._num_classes, self.config.d_width)

    # -- losses: per-example, so D's loss is a sum over (real, fake) pairs --------------------------
    def _d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "hinge":
            return F.relu(1.0 - real_logits) + F.relu(1.0 + fake_logits)
        return F.softplus(-real_logits) + F.softplus(fake_logits)

    def _g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "hinge":
            return -fake_logits
        return F.softplus(-fake_logits)  # non-saturating

    # -- training -------------------------------------------------------------------------------
    @classmethod
    def privacy_plan(cls, config: DPGANConfig, nominal_size: int):  # type: ignore[override]
        """``dpsgd_steps(n̂, batch_size, epochs)`` Poisson-subsampled steps at q = batch_size / n̂."""
        return dpsgd_plan_from_settings(nominal_size, config.batch_size, epochs=config.epochs)

    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        """Train on ``train`` with DP-SGD on D at ``budget``; records the steps taken in ``ledger``.

        q, the step count and σ use ``train.public_size()`` (the declared n̂), never ``len(train)``.
        ``budget.epsilon == inf`` trains without Opacus (no clipping, no noise) and records nothing.
        """
        cfg = self.config
        n_hat = train.public_size()
        if train.info.shape != self.info.shape:
            raise ValueError(f"training images have shape {train.info.shape}, the model was built for {self.info.shape}")
        plan = self.privacy_plan(cfg, n_hat)
        (planned,) = plan(1.0)
        q, total_steps = planned.sample_rate, planned.steps
        self.sample_rate = q
        dev = self.device

        D = self.build_discriminator()
        validate_private_discriminator(D)
        D = D.to(dev)
        opt_d: torch.optim.Optimizer = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        G = self.generator.train()
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))

        # Opacus DPDataLoader at rate q. Which examples are sampled, the gradient noise and the latents of D's
        # fakes must stay secret (run seeds are public), so they draw from OS entropy rather than self.seed.
        loader = poisson_loader(train, q) if budget.is_private else poisson_loader(train, q, self.seed + 1)
        # In fixed chunks the Poisson batch (and its fakes' latents) stays on the host: the device then holds one
        # chunk of it at a time, never an amount that follows the private batch size.
        batch_dev = torch.device("cpu") if budget.is_private and cfg.physical_batch_size is not None else dev
        fake_gen = (release_generator(batch_dev) if budget.is_private
                    else public_generator(self.seed, "d-fakes", device=dev))

        counted = [0]  # noisy steps Opacus actually performed (its step hook runs once per noised step)
        if budget.is_private:
            self.capabilities.check_accountant(budget.accountant)
            sigma = float(calibrate(plan, budget))
            self.noise_multiplier = sigma
            D, opt_d, engine = make_private_discriminator(
                D, opt_d, loader, noise_multiplier=sigma, max_grad_norm=cfg.max_grad_norm,
                expected_batch_size=cfg.batch_size, grad_sample_mode=cfg.grad_sample_mode,
            )  # gradient noise from OS entropy (make_private_discriminator's default)
            self._opacus_accountant = engine.accountant  # cross-check only; the ledger is authoritative
            opacus_hook = opt_d.step_hook

            def _count(opt: Any) -> None:
                counted[0] += 1
                if opacus_hook is not None:
                    opacus_hook(opt)

            opt_d.attach_step_hook(_count)
        self._D, self._opt_d = D, opt_d  # kept for tests / inspection; not part of the checkpoint

        step = 0
        try:
            with tqdm(total=total_steps, desc=f"{self.name or type(self).__name__} steps", leave=False,
                      disable=not self.context.progress) as bar:
                batches = iter(loader)
                while step < total_steps:
                    try:
                        x, y = next(batches)
                    except StopIteration:
                        batches = iter(loader)
                        continue
                    self._d_step(D, opt_d, x.to(batch_dev), y.to(batch_dev), self._latents(x.shape[0], fake_gen),
                                 step)
                    step += 1
                    if not budget.is_private:
                        counted[0] += 1
                    if step % cfg.d_steps_per_g_step == 0:
                        g_loss = self._g_step(D, opt_g, public_generator(self.seed, "g-step", step, device=dev),
                                              step, private=budget.is_private)
                        # Only the G loss is shown: it is post-processing of the private D. The D loss is
                        # an un-noised statistic of the private batch and stays out of every log.
                        if step % 20 == 0:
                            bar.set_postfix(g_loss=f"{g_loss:.3f}")
                    bar.update(1)
        finally:
            self.steps_taken = counted[0]
            if budget.is_private and counted[0] > 0:
                ledger.record(
                    PoissonSubsampledGaussianEvent(self.noise_multiplier, q, counted[0]),
                    f"{self.name}: {counted[0]} DP-SGD discriminator steps (q={q:.6g}, "
                    f"sigma={self.noise_multiplier:.6g}, C={cfg.max_grad_norm})",
                )
        self.generator.eval()
        if self.ema is not None:
            self.ema.eval()

    def _latents(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """(m, z_dim) latents, one row per example of a batch, on ``generator``'s device."""
        return torch.randn(m, self.config.z_dim, device=generator.device, generator=generator)

    def _d_backward(self, D: nn.Module, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, step: int) -> None:
        """Forward and backward of D's loss on the pairs (real x_i, fake G(z_i, y_i)); fills Opacus's
        per-sample gradients. Fake i is a function of (z_i, y_i) only: G is per-example."""
        m = x.shape[0]
        labels = y if self.conditional else None
        with torch.no_grad():
            fake = self.generator(z, labels)
        pairs = 2 if m > 0 and groups_rows(D) else 1
        if pairs == 2:
            # Grouped mode: one forward of the 2B rows, pair i = rows 2i, 2i+1 (D is per-example, so each row's
            # logit is the one it gets alone); the hooks then give one gradient per pair directly.
            rows = torch.stack([x, fake], 1).flatten(0, 1)
            logits = D(rows, labels.repeat_interleave(2) if labels is not None else None).view(m, 2)
            per_pair = self._d_loss(logits[:, 0], logits[:, 1])
        else:
            # Two forwards, one backward: Opacus sums row i of both passes into one per-pair gradient.
            per_pair = self._d_loss(D(x, labels), D(fake, labels))
        loss = per_pair.sum() / max(m, 1)  # "mean" reduction that survives an empty batch
        private = _is_private(D)
        # A private run never looks at this loss: it is an un-noised statistic of the private batch, and stopping
        # on it would release a bit. Its non-finite rows are zeroed below instead (each a function of its own
        # pair: the sensitivity holds) and divergence is judged on D's parameters after the noised step.
        if not private and not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"discriminator loss is {loss.item()} at step {step + 1}; lower the learning rates or "
                f"max_grad_norm"
            )
        with warnings.catch_warnings():
            # The images do not require grad, so PyTorch notes that Opacus's full backward hooks fire on
            # module outputs; those output gradients are exactly what Opacus needs (checked per pair in tests).
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            if pairs == 2:
                from .grouped_grad_sample import grouped_rows  # loaded already: D is a grouped module

                with grouped_rows(D, 2):
                    loss.backward()
            else:
                loss.backward()
        if private:
            params = [p for p in D.parameters() if p.requires_grad]
            zero_rows(params, nonfinite_rows(params))

    def _d_step(self, D: nn.Module, opt_d: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                z: torch.Tensor, step: int) -> None:
        """One discriminator step on the Poisson batch ``x`` (labels ``y``, fakes' latents ``z``). A private step
        with ``physical_batch_size`` P runs in chunks of exactly P pairs, the batch padded with masked pairs whose
        rows are zeroed before clipping (:func:`~.dpsgd_rows.step_in_fixed_chunks`): its memory then depends on
        the public P only, and its clipped sum, noise and divisor are the one-pass step's."""
        opt_d.zero_grad(set_to_none=True)
        chunk = self.config.physical_batch_size
        if chunk is not None and _is_private(D):
            step_in_fixed_chunks(opt_d, [p for p in D.parameters() if p.requires_grad], (x, y, z), chunk,
                                 lambda part: self._d_backward(D, *part, step), device=self.device)
        else:
            self._d_backward(D, x, y, z, step)
            opt_d.step()
        if _is_private(D) and not parameters_finite(D):  # decided on the noised update: post-processing
            raise TrainingDivergedError(f"discriminator parameters are not finite after noised step {step + 1}; "
                                        f"lower the learning rates")

    def _g_step(self, D: nn.Module, opt_g: torch.optim.Optimizer, gen: torch.Generator, step: int,
                private: bool) -> float:
        """One generator step through D with its Opacus hooks off; returns the G loss.

        Draws exactly ``batch_size`` latents (and uniform labels) from ``gen``, a public generator of its own."""
        cfg = self.config
        G = self.generator
        z = self._latents(cfg.batch_size, gen)
        labels = None
        if self.conditional:  # uniform labels: public, no use of private class frequencies
            labels = torch.randint(0, self.info.num_classes, (cfg.batch_size,), device=self.device, generator=gen)
        if private:
            D.disable_hooks()
        try:
            loss = self._g_loss(D(G(z, labels), labels)).mean()
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"generator loss is {loss.item()} at step {step}; lower the learning rates")
            params = [p for p in G.parameters() if p.requires_grad]
            # Gradients for G only: D's .grad / .grad_sample stay untouched.
            grads = torch.autograd.grad(loss, params)
        finally:
            if private:
                D.enable_hooks()
        for p, g in zip(params, grads):
            p.grad = g
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        if self.ema is not None:
            self._update_ema()
        return float(loss.detach())

    # -- the empirical privacy audit's view of the private step (docs/audit.md) ---------------------
    def audit_release(self, train: ImageDataset, budget: PrivacyBudget,
                      ledger: PrivacyLedger | None = None) -> torch.Tensor:
        """The noisy gradient of every planned DP-SGD discriminator step, concatenated (float64), for the
        mechanism audit in the white-box threat model of Nasr et al. (2023): the adversary sees every
        intermediate noisy gradient.

        The real private step: D wrapped by :func:`make_private_discriminator` (Opacus's ``DPOptimizer``:
        per-pair clipping to C, noise σ·C, division by the expected batch size), the loss of
        :meth:`_d_backward`, σ from :func:`calibrate` for the plan of ``epochs``, ``batch_size`` and n̂. What
        the audit fixes is public: D starts from the seeded initialisation, G stays at its current weights
        (G's steps are post-processing of D's noisy gradients), and the fakes' latents are
        :meth:`audit_latents`. With q = 1 (``batch_size`` = n̂) and a non-private budget (σ = 0: clipped, no
        noise) the release is therefore exact. The steps go into ``ledger``."""
        cfg = self.config
        plan = self.privacy_plan(cfg, train.public_size())
        (planned,) = plan(1.0)
        sigmas = self.__dict__.setdefault("_audit_sigmas", {})  # calibration is deterministic: once per plan
        if (planned, budget) not in sigmas:
            sigmas[planned, budget] = float(calibrate(plan, budget)) if budget.is_private else 0.0
        sigma = sigmas[planned, budget]
        with torch.random.fork_rng(devices=[]):  # the same initial D for every trial
            torch.manual_seed(self.seed)
            D = self.build_discriminator().to(self.device)
        opt = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        loader = poisson_loader(train, planned.sample_rate, with_index=True)
        D, opt, _ = make_private_discriminator(
            D, opt, loader, noise_multiplier=sigma, max_grad_norm=cfg.max_grad_norm,
            expected_batch_size=cfg.batch_size, grad_sample_mode=cfg.grad_sample_mode,
        )
        self.generator.train()  # as in fit(): a generator with batch statistics would use them
        released, batches = [], iter(loader)
        for step in range(planned.steps):
            batch = next(batches, None)
            if batch is None:  # a pass over the loader is floor(1/q) batches
                batches = iter(loader)
                batch = next(batches)
            x, y, index = batch
            z = self.audit_latents(index, train.public_size(), step)
            self._d_step(D, opt, x.to(self.device), y.to(self.device), z, step)
            released.append(torch.cat([p.grad.detach().flatten() for p in D.parameters()]))
        self.generator.eval()
        if budget.is_private and ledger is not None:
            ledger.record(PoissonSubsampledGaussianEvent(sigma, planned.sample_rate, planned.steps),
                          f"{self.name}: {planned.steps} audited DP-SGD discriminator steps")
        return torch.cat(released).double().cpu()

    def audit_latents(self, index: torch.Tensor, n_hat: int, step: int) -> torch.Tensor:
        """The auditor's latents for the fakes paired with dataset rows ``index`` at audited step ``step``.

        DP holds for any latents fixed in advance, as long as each fake depends on its own row only (a latent
        that is a public function of the row's index in D, which appending the canary does not change). The
        auditor picks the worst case for a generator that couples the rows of a batch: the rows of D
        (index < n̂) share one public latent, and a row beyond the declared size — the canary appended to
        D′ — gets the latent :data:`AUDIT_OUTSIDER_NORM`·(1, …, 1)/√z_dim. In a per-example generator that
        changes only the canary's own fake, whose pair clipping still bounds by C; in a generator that
        normalises over the batch, the outsized activations dominate the batch statistics and move every
        fake of D, so the coupling shows in the release."""
        z = self._latents(1, public_generator(self.seed, "audit-fakes", step, device=self.device))
        z = z.expand(len(index), -1).clone()
        outsider = index.to(self.device) >= n_hat
        z[outsider] = AUDIT_OUTSIDER_NORM / math.sqrt(self.config.z_dim)
        return z

    def audit_canary(self, data: ImageDataset) -> tuple[torch.Tensor, int]:
        """The audit's worst-case canary: :func:`dpgen_bench.audit.canaries.dpsgd_canary`, its gradient norm
        checked at the latent :meth:`audit_latents` gives it."""
        from dpgen_bench.audit.canaries import dpsgd_canary

        n_hat = data.public_size()
        return dpsgd_canary(self, data, draw=self.audit_latents(torch.tensor([n_hat]), n_hat, step=0))

    @classmethod
    def broken_variants(cls) -> tuple[BrokenVariant, ...]:
        """``batch-coupled``: the first DP-CGAN, whose generator normalises over the batch of D's fakes
        (BatchNorm), so one private example's presence moves the gradient of every pair, not only its own."""
        return (BrokenVariant("batch-coupled", "the first DP-CGAN: BatchNorm in the generator couples every fake "
                              "of D's batch", patches=_allow_batch_statistics, transform=_batch_coupled),)

    # -- the conformance suite's view of the private step ------------------------------------------
    def gradient_probe(self) -> GradientProbe:
        """The per-pair gradient rows D's private optimiser clips, through the trainer's own wrapping."""
        return _DPGANProbe(self)

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        assert self.ema is not None and decay is not None
        for pe, p in zip(self.ema.parameters(), self.generator.parameters()):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(self.ema.buffers(), self.generator.buffers()):
            be.copy_(b)

    # -- sampling and checkpoints -----------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """From the EMA generator if enabled, else G; ``labels`` condition dp-cgan and are None for dp-gan."""
        net = self.ema if self.ema is not None else self.generator
        net.eval()
        z = torch.randn(n, self.config.z_dim, generator=generator)
        out = []
        for i in range(0, n, 500):
            lab = labels[i:i + 500].to(self.device) if labels is not None else None
            out.append(net(z[i:i + 500].to(self.device), lab).float().clamp_(0, 1).cpu())
        return torch.cat(out) if out else torch.empty(0, *self.info.shape)

    def checkpoint_state(self) -> dict[str, Any]:
        """Generator (and EMA) weights plus the privacy parameters used; no private data."""
        return {
            "generator": self.generator.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps_taken": self.steps_taken,
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.generator.eval()
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError("checkpoint has no EMA weights but the config enables ema_decay")
            self.ema.load_state_dict(state["ema"])
            self.ema.eval()
        self.noise_multiplier = state.get("noise_multiplier")
        self.sample_rate = state.get("sample_rate")
        self.steps_taken = int(state.get("steps_taken") or 0)


class _DPGANProbe:
    """:class:`~dpgen_bench.method.GradientProbe` of a DP-GAN: draws are the latents z_i of the D-step fakes."""

    def __init__(self, method: _BaseDPGAN) -> None:
        self.method = method

    def draws(self, m: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(m, self.method.config.z_dim, generator=generator).to(self.method.device)

    def rows(self, images: torch.Tensor, labels: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        method, cfg = self.method, self.method.config
        with torch.random.fork_rng(devices=[]):  # the same D for every call
            torch.manual_seed(method.seed)
            D = method.build_discriminator().to(method.device)
        opt = torch.optim.Adam(D.parameters(), lr=cfg.lr_d)
        loader = DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=max(len(images), 1))
        D, opt, _ = make_private_discriminator(
            D, opt, loader, noise_multiplier=1.0, max_grad_norm=cfg.max_grad_norm,
            expected_batch_size=cfg.batch_size, grad_sample_mode=cfg.grad_sample_mode,
        )
        opt.zero_grad(set_to_none=True)
        method._d_backward(D, images.to(method.device), labels.to(method.device), draws, step=0)
        return torch.cat([p.grad_sample.flatten(1) for p in D.parameters() if p.grad_sample is not None], dim=1)


# ------------------------------------------------------------------------- the broken variant (audits only)


def batchnorm_generator_class(generator_cls: type[nn.Module]) -> type[nn.Module]:
    """``generator_cls`` with its first normalisation replaced by BatchNorm (the first DP-CGAN's generator)."""

    class BatchNormGenerator(generator_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.net[0] = nn.BatchNorm2d(self.top)

    return BatchNormGenerator


def _batch_coupled(method_cls: type[_BaseDPGAN]) -> type[_BaseDPGAN]:
    bn_generator = batchnorm_generator_class(Generator)

    class BatchNormGAN(method_cls):  # type: ignore[misc, valid-type]
        def build_generator(self) -> nn.Module:
            c = self.config
            return bn_generator(self.info.channels, self.info.height, self._num_classes, c.z_dim, c.g_width)

    return BatchNormGAN


@contextlib.contextmanager
def _allow_batch_statistics():
    """The per-example check of the generator off (this module's own; only the broken variant enters it)."""
    with mock.patch(f"{__name__}.validate_per_example", lambda module, role="generator": None):
        yield


class DPGAN(_BaseDPGAN):
    """Unconditional DCGAN whose discriminator is trained with DP-SGD (Opacus); labels are ignored."""

    name: ClassVar[str] = "dp-gan"
    conditional: ClassVar[bool] = False
    capabilities: ClassVar[Capabilities] = Capabilities(
        labelled=False, unlabelled=True, channels=(1, 3), image_sizes=SUPPORTED_SIZES, dp_sgd=True
    )


class DPCGAN(_BaseDPGAN):
    """Class-conditional DCGAN (labels to G and D) whose discriminator is trained with DP-SGD (Opacus)."""

    name: ClassVar[str] = "dp-cgan"
    conditional: ClassVar[bool] = True
    capabilities: ClassVar[Capabilities] = Capabilities(
        labelled=True, unlabelled=False, channels=(1, 3), image_sizes=SUPPORTED_SIZES, dp_sgd=True
    )


__all__ = ["DPGAN", "DPCGAN", "DPGANConfig", "GradSampleMode", "TrainingDivergedError", "make_private_discriminator"]
