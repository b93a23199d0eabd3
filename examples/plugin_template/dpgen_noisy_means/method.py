"""``noisy-means``: the simplest honest DP generator.

Private release (add/remove-one neighbouring), both with the Gaussian mechanism:

1. per-class pixel sums S_k = Σ_{y_i = k} x_i. Pixels are clamped to [0, 1], so one example changes the
   (K × D) matrix of sums by at most ‖x‖₂ ≤ √D in L2 (D = C·H·W): noise std σ·√D;
2. per-class counts n_k: one example changes one count by 1: noise std σ.

σ comes from the shared calibrator so that the two releases together spend at most the budget; both
are recorded in the ledger, and ``privacy_plan`` declares them ahead (the runner refuses an unreachable ε before
training; the conformance suite checks the ledger against it). Sampling is post-processing: mean_k = S̃_k / max(ñ_k, 1), clamped to
[0, 1], plus N(0, sample_std²) pixel noise.

Release noise comes from :func:`dpgen_bench.privacy.noise.gaussian_noise`, seeded from OS entropy: the run
seed is public (it is in every results row), so noise seeded with it could be subtracted again.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from dpgen_bench.data.types import ImageDataset
from dpgen_bench.method import Capabilities, GenerativeMethod, MethodConfig
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate_gaussian_releases, gaussian_releases_plan
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import gaussian_noise


class NoisyMeansConfig(MethodConfig):
    sample_std: float = Field(0.15, ge=0.0, le=1.0, description="std of pixel noise added when sampling, in [0, 1] pixel units")
    use_labels: bool = Field(True, description="one mean per class (True) or a single mean of all images (False)")


class NoisyClassMeans(GenerativeMethod):
    """Per-class noisy pixel means (Gaussian mechanism) + Gaussian pixel noise at sampling time."""

    name = "noisy-means"
    Config = NoisyMeansConfig
    capabilities = Capabilities(labelled=True, unlabelled=True, channels=(1, 3), image_sizes=None)

    means: torch.Tensor | None = None
    noise_multiplier: float | None = None

    @property
    def samples_labelled(self) -> bool:
        """Sample labels are class conditions only when one mean per class was released."""
        return self.config.use_labels

    RELEASES = (1.0, 1.0)
    """Relative L2 sensitivities of the two releases (sums in units of √D, counts in units of 1): both get
    noise multiplier σ."""

    @classmethod
    def privacy_plan(cls, config: NoisyMeansConfig, nominal_size: int):
        """σ → the events ``fit`` records at noise multiplier σ: two Gaussian releases (sums, counts)."""
        return gaussian_releases_plan(cls.RELEASES)

    def release(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> tuple[torch.Tensor, torch.Tensor]:
        """The private release: noisy per-class pixel sums (K, D) and counts (K,), float64, recorded in ``ledger``
        (exact, and nothing recorded, at ε = ∞)."""
        k = self.info.num_classes if self.config.use_labels else 1
        x = train.images.flatten(1).double().clamp(0.0, 1.0)
        y = train.labels if self.config.use_labels else torch.zeros(len(train), dtype=torch.int64)
        dim = x.shape[1]
        sums = torch.zeros(k, dim, dtype=torch.float64).index_add_(0, y, x)
        counts = torch.bincount(y, minlength=k).double()
        if budget.is_private:
            sigma = calibrate_gaussian_releases(self.RELEASES, budget)
            sums += gaussian_noise(sums.shape, sigma * math.sqrt(dim), sensitivity=math.sqrt(dim))
            ledger.record(GaussianEvent(sigma), f"noisy-means: per-class pixel sums (L2 sensitivity sqrt({dim}))")
            counts += gaussian_noise(counts.shape, sigma, sensitivity=1.0)
            ledger.record(GaussianEvent(sigma), "noisy-means: per-class counts (L2 sensitivity 1)")
            self.noise_multiplier = float(sigma)
        return sums, counts

    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        sums, counts = self.release(train, budget, ledger)
        self.means = (sums / counts.clamp(min=1.0)[:, None]).clamp(0.0, 1.0).float()

    # -- optional audit hooks (docs/audit.md): what `dpgen-bench audit` runs thousands of times --------------
    def audit_release(self, train: ImageDataset, budget: PrivacyBudget,
                      ledger: PrivacyLedger | None = None) -> torch.Tensor:
        """Everything one fit releases, flattened: the real release code, fresh noise on every call."""
        sums, counts = self.release(train, budget, PrivacyLedger() if ledger is None else ledger)
        return torch.cat([sums.flatten(), counts])

    def audit_canary(self, data: ImageDataset) -> tuple[torch.Tensor, int]:
        """The white image in class 0: its pixels have the largest norm, √D, so it moves the sums by the full
        sensitivity (and one count by 1)."""
        return torch.ones(data.info.shape), 0

    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        # ``sample()`` (the base class) has checked n and labels and draws balanced labels if none are given.
        if self.means is None:
            raise RuntimeError("noisy-means: call fit() or load() before sample()")
        rows = labels if labels is not None else torch.zeros(n, dtype=torch.int64)
        images = self.means[rows] + self.config.sample_std * torch.randn((n, self.means.shape[1]), generator=generator)
        return images.clamp(0.0, 1.0).reshape(n, *self.info.shape)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"means": self.means, "noise_multiplier": self.noise_multiplier}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.means = state["means"]
        self.noise_multiplier = state["noise_multiplier"]
