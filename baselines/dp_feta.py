"""``dp-feta``: DP diffusion "from easy to hard" (Li, Gong, Li, Zhao, Hou, Wang; IEEE S&P 2025). See
``docs/dp_feta.md``.

The recipe, on top of :class:`~.dpdm.DPDM` (same U-Net, EDM loss, noise multiplicity, Opacus DP-SGD):

1. **DP central images** (the "easy" features). ``central_queries`` = T times: a Poisson subsample of the
   private split at rate q_c = ``central_batch_size`` / n̂ (None: q_c = 1, every example); per class k (one
   class when unlabelled) the sum S_k of the *downsampled* images and the count n_k, released together as one
   Gaussian mechanism; the central image of class k is S̃_k / max(ñ_k, 1), clamped to [0, 1], upsampled
   (bilinear) and filtered (3×3 median; a sharpening kernel for grey images), as DP-FETA's ``CentralDataset``
   does. T·K central images in all.
2. **Warm-up** (post-processing, no privacy): plain EDM training of the denoiser on the central images, each
   batch freshly augmented by torchvision's ``RandAugment`` (DP-FETA: 2 ops, magnitude 3), seeded per step
   from the public run seed.
3. **DP-SGD fine-tuning** on the private split: exactly DPDM's (``_train_loop``, ``make_private_denoiser``,
   K-averaged rows clipped to C), starting from the warmed-up network.

Privacy argument (add/remove-one neighbouring; the derivation is in ``docs/dp_feta.md``):

* **Sensitivity of one central query.** Images are clamped to [0, 1] and downsampled by average pooling to
  d' = C·h·w pixels, each in [0, 1], so ‖down(x)‖₂ ≤ √d'. The released vector of one query is
  v = (S_1, …, S_K, w·n_1, …, w·n_K) with w = ``central_count_weight``. Adding or removing one example changes
  exactly one class's sum, by down(x), and that class's count, by 1 (whether it is in the subsample or not,
  the other examples' terms are unchanged), so ‖v(D) − v(D′)‖₂ ≤ √(d' + w²) =: Δ. Noise N(0, (σ_c·Δ)² I) on
  v is therefore a Gaussian mechanism with noise multiplier σ_c; with Poisson subsampling at the public
  rate q_c and T independent queries it is ``PoissonSubsampledGaussianEvent(σ_c, q_c, T)`` in the ledger.
* **n is private.** The mean divides by the *noisy* count ñ_k (released with the sums, above), never by
  ``len(train)`` nor by a true class count; q_c uses the declared size n̂ = ``train.public_size()``.
* **The split.** σ_c = ``central_noise_ratio``·σ, σ the DP-SGD noise multiplier (or a fixed
  ``central_noise_multiplier``, DP-FETA's own way); one call of the shared calibrator on the plan
  σ ↦ [central(σ_c), DP-SGD(σ)] finds the smallest σ whose composition meets the target ε, so both noise
  scales come from that calibration and both releases compose in one ledger (recorded as each happens).
* The subsample and the release noise come from OS entropy (``release_generator`` / ``gaussian_noise``); the
  warm-up's order, draws and augmentation are public (``public_generator``), consumed in amounts fixed by the
  public T·K. The warm-up and everything after the DP-SGD steps are post-processing.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import tqdm

from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.method import BrokenVariant, Capabilities
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import gaussian_noise, public_generator, release_generator
from dpgen_bench.privacy.plans import dpsgd_plan, dpsgd_plan_from_settings, sample_rate

from .dpdm import DPDM, SUPPORTED_SIZES, DPDMConfig


class DPFETAConfig(DPDMConfig):
    """DPDM's settings (the DP-SGD fine-tuning, network, sampler; same defaults) plus the central-image
    release and the warm-up. The ``pretrain_*`` fields set the warm-up on the central images (DP-FETA has no
    public data). Defaults: a ``mnist-5k`` cell on 2 CPU cores in under 10 minutes (``docs/dp_feta.md``);
    ``configs/dpimagebench-*.yaml`` hold DPImageBench's published DP-FETA settings."""

    central_queries: int = Field(
        5, ge=1, le=100_000, description="T: central-image queries, each a fresh Poisson subsample giving one "
        "central image per class (DP-FETA: 5; 250 for CelebA)")
    central_batch_size: int | None = Field(
        None, ge=1, le=10_000_000, description="expected Poisson batch of one query (q_c = this / n̂; DP-FETA: 6000 "
        "of 60,000); None: q_c = 1, every query sees every example")
    central_downsample: float = Field(
        0.5, gt=0, le=1, description="the sums are of images average-pooled to round(size·this) pixels a side "
        "(DP-FETA: 0.5): fewer pixels, less noise per pixel")
    central_count_weight: float = Field(
        4.0, gt=0, le=1e4, description="w: the counts are released as w·n_k beside the sums (sensitivity "
        "√(d' + w²)); larger w: less noise on the counts, more on the sums")
    central_noise_ratio: float = Field(
        8.0, gt=0, le=1e4, description="σ_c / σ: the central release's noise multiplier over the DP-SGD one (the "
        "budget split; larger: less of the budget to the central images)")
    central_noise_multiplier: float | None = Field(
        None, gt=0, le=1e6, description="a fixed σ_c instead (DP-FETA's way: 5, 10 for CelebA): the calibrator then "
        "gives the DP-SGD phase what the central release leaves; None: σ_c = central_noise_ratio · σ")
    augment_ops: int = Field(2, ge=0, le=14, description="RandAugment ops per warm-up image (DP-FETA: 2); 0: none")
    augment_magnitude: int = Field(3, ge=0, le=30, description="RandAugment magnitude of 31 bins (DP-FETA: 3)")
    pretrain_epochs: float = Field(
        400.0, gt=0, le=1_000_000, description="warm-up passes over the T·K central images (DP-FETA: 2000 at batch "
        "50, i.e. 2000 steps for 50 images)")
    pretrain_batch_size: int = Field(50, ge=1, le=65_536, description="warm-up batch size (DP-FETA: 50)")
    pretrain_lr: float = Field(2e-3, gt=0, le=1.0, description="warm-up Adam learning rate (DP-FETA: 3e-4)")


def central_shape(info: DatasetInfo, downsample: float) -> tuple[int, int, int]:
    """(C, h, w) of the downsampled images whose sums are released."""
    return info.channels, max(1, round(info.height * downsample)), max(1, round(info.width * downsample))


def central_sensitivity(info: DatasetInfo, config: DPFETAConfig) -> float:
    """L2 sensitivity Δ = √(d' + w²) of one query's released vector (per-class sums of downsampled images in
    [0, 1], d' = C·h·w pixels each, and w × the per-class counts) under add/remove-one."""
    c, h, w = central_shape(info, config.central_downsample)
    return math.sqrt(c * h * w + config.central_count_weight ** 2)


def downsampled(images: torch.Tensor, size: tuple[int, int], chunk: int = 4096) -> torch.Tensor:
    """(N, C·h·w) float32: ``images`` clamped to [0, 1] and average-pooled to ``size``, so every pixel is in
    [0, 1] and each row has L2 norm ≤ √(C·h·w) (the sensitivity rests on this). In chunks (memory only)."""
    rows = [F.adaptive_avg_pool2d(images[i:i + chunk].float().clamp(0, 1), size).flatten(1)
            for i in range(0, images.shape[0], chunk)]
    return torch.cat(rows) if rows else images.new_zeros(0, images.shape[1] * size[0] * size[1])


def _median3(x: torch.Tensor) -> torch.Tensor:
    """3×3 median filter per channel, edges replicated (cv2.medianBlur's 3×3 on the central images)."""
    n, c, h, w = x.shape
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3)  # (n, c·9, h·w)
    return patches.view(n, c, 9, h * w).median(2).values.view(n, c, h, w)


_SHARPEN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])


def post_process(means: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Noisy downsampled means (N, C, h, w) → central images (N, C, H, W) in [0, 1]: clamp, bilinear upsampling,
    3×3 median, and for grey images DP-FETA's sharpening kernel. Pure post-processing."""
    x = F.interpolate(means.float().clamp(0, 1), size=size, mode="bilinear", align_corners=False)
    x = _median3(x)
    if x.shape[1] == 1:
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), _SHARPEN.view(1, 1, 3, 3).to(x))
    return x.clamp(0, 1)


class DPFETA(DPDM):
    """DPDM warmed up on DP central images (per-class noisy means of Poisson subsamples), then DP-SGD
    fine-tuned; both releases in one ledger, σ of both from one calibration."""

    name: ClassVar[str] = "dp-feta"
    Config: ClassVar[type] = DPFETAConfig
    config: DPFETAConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        labelled=True, unlabelled=True, channels=(1, 3), image_sizes=SUPPORTED_SIZES, dp_sgd=True, public_data=False
    )
    # The DP-SGD/sampler defaults are DPDM's, chosen on mnist-5k's tuning split (docs/dpdm.md); the central-image
    # settings are DP-FETA's (paper) or compute-driven, not tuned (docs/dp_feta.md).
    tuned_on: ClassVar[str] = "mnist-5k:tuning"
    conformance_config: ClassVar[dict[str, Any]] = {
        **DPDM.conformance_config, "central_queries": 2, "pretrain_epochs": 1, "pretrain_batch_size": 8,
    }

    def __init__(self, config: DPFETAConfig | dict[str, Any] | None, info: DatasetInfo, seed: int = 0,
                 context=None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        self.sigma_central: float | None = None
        self.central_images: torch.Tensor | None = None  # the last fit's (a DP release; kept for inspection)

    @classmethod
    def capabilities_for(cls, config: DPFETAConfig) -> Capabilities:  # type: ignore[override]
        caps = super().capabilities_for(config)
        return Capabilities(labelled=caps.labelled, unlabelled=caps.unlabelled, channels=caps.channels,
                            image_sizes=caps.image_sizes, dp_sgd=True, public_data=False)

    @classmethod
    def central_sample_rate(cls, config: DPFETAConfig, nominal_size: int) -> float:
        """q_c = ``central_batch_size`` / n̂ (1 when None); ValueError if the batch exceeds n̂."""
        return 1.0 if config.central_batch_size is None else sample_rate(config.central_batch_size, nominal_size)

    @classmethod
    def privacy_plan(cls, config: DPFETAConfig, nominal_size: int):  # type: ignore[override]
        """σ ↦ [central: ``PoissonSubsampledGaussianEvent(σ_c, q_c, T)``, DP-SGD: DPDM's plan at σ], σ_c from
        :meth:`central_sigma`."""
        central = dpsgd_plan(cls.central_sample_rate(config, nominal_size), config.central_queries)
        dpsgd = dpsgd_plan_from_settings(nominal_size, config.batch_size, epochs=config.epochs)

        def plan(sigma: float) -> list[PoissonSubsampledGaussianEvent]:
            return [*central(cls.central_sigma(config, sigma)), *dpsgd(sigma)]

        return plan

    @staticmethod
    def central_sigma(config: DPFETAConfig, sigma: float) -> float:
        """σ_c at DP-SGD noise multiplier σ: ``central_noise_multiplier`` if set, else ``central_noise_ratio``·σ."""
        if config.central_noise_multiplier is not None:
            return config.central_noise_multiplier
        return config.central_noise_ratio * sigma

    # -- the central-image release ----------------------------------------------------------------------
    def central_sensitivity(self) -> float:
        """Δ of one query (:func:`central_sensitivity`); the noise std is σ_c·Δ. The ``central-tenth-sensitivity``
        broken variant overrides this."""
        return central_sensitivity(self.info, self.config)

    def release_central(self, train: ImageDataset, sigma_c: float | None, sample_rate_: float, queries: int,
                        ledger: PrivacyLedger | None) -> torch.Tensor:
        """The released vectors of ``queries`` queries, (T, K·d' + K) float64: per-class sums of the
        downsampled images of a Poisson subsample at ``sample_rate_``, then w × the per-class counts, each with
        N(0, (σ_c·Δ)²) noise. ``sigma_c`` None: exact (ε = ∞, nothing recorded; the subsample is then drawn
        from the public seed). Records one ``PoissonSubsampledGaussianEvent(σ_c, q_c, T)`` in ``ledger``."""
        cfg = self.config
        k = self.info.num_classes if cfg.conditional else 1
        c, h, w = central_shape(self.info, cfg.central_downsample)
        small = downsampled(train.images, (h, w))
        labels = train.labels if cfg.conditional else torch.zeros(len(train), dtype=torch.long)
        private = sigma_c is not None
        delta_s = self.central_sensitivity()
        out = []
        for t in range(queries):
            # Poisson subsample: the mechanism's secret randomness (its amount follows n, so never a public stream)
            gen = release_generator() if private else public_generator(self.seed, "central-subsample", t)
            keep = torch.rand(len(train), generator=gen, dtype=torch.float64) < sample_rate_
            sums = torch.zeros(k, c * h * w, dtype=torch.float64).index_add_(0, labels[keep], small[keep].double())
            counts = torch.bincount(labels[keep], minlength=k).double() * cfg.central_count_weight
            vec = torch.cat([sums.flatten(), counts])
            if private:
                vec = vec + gaussian_noise(vec.shape, sigma_c * delta_s, sensitivity=delta_s)
            out.append(vec)
        if private and ledger is not None:
            ledger.record(PoissonSubsampledGaussianEvent(sigma_c, sample_rate_, queries),
                          f"dp-feta: {queries} central-image queries (q={sample_rate_:.6g}, sigma={sigma_c:.6g}, "
                          f"L2 sensitivity {delta_s:.6g} = sqrt(d'+w^2))")
        return torch.stack(out)

    def central_images_from(self, released: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Released vectors (T, K·d' + K) → (T·K central images (N, C, H, W) in [0, 1], their class labels):
        S̃_k / max(ñ_k, 1) with ñ_k the noisy count (never the private n), then :func:`post_process`."""
        cfg = self.config
        k = self.info.num_classes if cfg.conditional else 1
        c, h, w = central_shape(self.info, cfg.central_downsample)
        t = released.shape[0]
        sums = released[:, :k * c * h * w].reshape(t * k, c, h, w)
        counts = (released[:, k * c * h * w:] / cfg.central_count_weight).reshape(t * k, 1, 1, 1)
        images = post_process(sums / counts.clamp(min=1.0), (self.info.height, self.info.width))
        return images, torch.arange(k).repeat(t)

    # -- the warm-up on the central images (post-processing) --------------------------------------------
    def _augment(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """RandAugment each image (uint8 round trip, as torchvision's ops expect), seeded from the public run seed
        and the step; torch's global generator is left as it was."""
        cfg = self.config
        if cfg.augment_ops == 0:
            return x
        from torchvision.transforms import v2

        aug = v2.RandAugment(num_ops=cfg.augment_ops, magnitude=cfg.augment_magnitude)
        seed = int(torch.randint(2**62, (1,), generator=public_generator(self.seed, "warmup-augment", step)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
            return torch.stack([aug(img) for img in u8]).float() / 255

    def _warm_up(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Plain EDM training of ``self.net`` on the augmented central images (DPDM's non-private step)."""
        cfg = self.config
        net = self.net.train()
        opt = torch.optim.Adam(net.parameters(), lr=cfg.pretrain_lr)
        m = images.shape[0]  # T·K: public
        b = min(cfg.pretrain_batch_size, m)
        steps = max(1, round(cfg.pretrain_epochs * m / b))
        order_gen = public_generator(self.seed, "warmup-order")
        perm, pos = torch.randperm(m, generator=order_gen), 0
        for step in tqdm(range(steps), desc="dp-feta warm-up", leave=False, disable=not self.context.progress):
            if pos + b > m:
                perm, pos = torch.randperm(m, generator=order_gen), 0
            idx = perm[pos:pos + b]
            pos += b
            x = self._augment(images[idx], step).to(self.device)
            opt.zero_grad(set_to_none=True)
            self._plain_backward(net, x, labels[idx].to(self.device),
                                 self.draws(b, public_generator(self.seed, "warmup-draws", step)), step)
            opt.step()
        net.eval()

    # -- training ----------------------------------------------------------------------------------
    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        """Central images (recorded), warm-up, then DPDM's DP-SGD fine-tuning (recorded); σ of both from one
        calibration of :meth:`privacy_plan` at n̂ = ``train.public_size()``. ε = ∞: exact means, no Opacus."""
        cfg = self.config
        if train.info.shape != self.info.shape:
            raise ValueError(f"training images have shape {train.info.shape}, the model was built for {self.info.shape}")
        if self.context.public_data is not None:
            raise ValueError("dp-feta uses no public data (its warm-up is on DP central images); drop public_data")
        plan = self.privacy_plan(cfg, train.public_size())
        central_event, dpsgd_event = plan(1.0)
        private = budget.is_private
        sigma = None
        if private:
            self.capabilities.check_accountant(budget.accountant)
            sigma = float(calibrate(plan, budget))
            self.sigma_central = self.central_sigma(cfg, sigma)
        released = self.release_central(train, self.sigma_central if private else None,
                                        central_event.sample_rate, central_event.steps, ledger)
        self.central_images, central_labels = self.central_images_from(released)
        self._warm_up(self.central_images, central_labels)
        self._dp_sgd(train, sigma, dpsgd_event.sample_rate, dpsgd_event.steps, ledger)  # DPDM's phase

    # -- the mechanism audit (docs/audit.md, docs/dp_feta.md) -------------------------------------------
    def audit_release(self, train: ImageDataset, budget: PrivacyBudget,
                      ledger: PrivacyLedger | None = None) -> torch.Tensor:
        """One central query at q = 1 (:meth:`release_central`, σ_c calibrated alone to ``budget``) followed by
        DPDM's audited DP-SGD step (one step at q = 1, its σ calibrated alone to ``budget``), concatenated
        (float64). Both are unsubsampled Gaussian mechanisms, so the claim is their composition (what
        ``ledger`` records: about √2 × the budget's μ under GDP) and the Gaussian-trade-off bound holds. At
        ε = ∞ the release is exact."""
        sigmas = self.__dict__.setdefault("_central_audit_sigmas", {})
        if budget not in sigmas:
            sigmas[budget] = float(calibrate(dpsgd_plan(1.0, 1), budget)) if budget.is_private else None
        central = self.release_central(train, sigmas[budget], 1.0, 1, ledger).flatten()
        return torch.cat([central, super().audit_release(train, budget, ledger)])

    def checkpoint_state(self) -> dict[str, Any]:
        """DPDM's (weights, DP-SGD parameters) and σ_c; never the central images (at ε = ∞ a class of one
        example has that example as its mean)."""
        return {**super().checkpoint_state(), "sigma_central": self.sigma_central}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.sigma_central = state.get("sigma_central")

    @classmethod
    def broken_variants(cls) -> tuple[BrokenVariant, ...]:
        """DPDM's ``per-row-clip`` (the DP-SGD phase) and ``central-tenth-sensitivity``: the central release's
        noise calibrated for a tenth of its sensitivity (e.g. forgetting that a count moves too, or dividing Δ
        by a batch size), the ledger unchanged."""
        return (*super().broken_variants(),
                BrokenVariant("central-tenth-sensitivity", "central-image noise calibrated for Δ/10, the ledger "
                              "unchanged", transform=_tenth_sensitivity))


def _tenth_sensitivity(method_cls: type[DPFETA]) -> type[DPFETA]:
    class TenthSensitivityDPFETA(method_cls):  # type: ignore[misc, valid-type]
        def central_sensitivity(self) -> float:
            return super().central_sensitivity() / 10

    return TenthSensitivityDPFETA


__all__ = ["DPFETA", "DPFETAConfig", "central_sensitivity", "central_shape", "downsampled", "post_process"]
