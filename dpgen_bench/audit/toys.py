"""Toy release-once methods that calibrate the audits and the conformance suite's noise check: one noisy
pixel mean (fits take milliseconds), honest or broken in one way each. Never registered by importing this
module; :mod:`dpgen_bench.audit.toy_plugins` registers them (name it under ``plugins:`` in a config).

* :class:`NoisyPixelMean` — honest: the sum of the images (pixels clamped to [0, 1], so one example moves it
  by at most √D in L2, D = C·H·W) plus N(0, (σ√D)²), divided by the declared size n̂; one Gaussian event σ.
* :class:`TenthNoisePixelMean` — records σ, adds σ/10 (what an under-noising plugin looks like).
* :class:`ParityNoisePixelMean` — the noise scale depends on the parity of len(train) (private).
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import torch

from dpgen_bench.data.types import ImageDataset
from dpgen_bench.method import Capabilities, GenerativeMethod
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate_gaussian_releases
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import gaussian_noise


@functools.lru_cache(maxsize=64)
def _sigma(budget: PrivacyBudget) -> float:
    """σ of one Gaussian release at ``budget`` (deterministic: computed once, so a fit takes milliseconds)."""
    return float(calibrate_gaussian_releases([1.0], budget))


class NoisyPixelMean(GenerativeMethod):
    """One noisy pixel mean of the private images (honest); samples are that mean plus public pixel noise."""

    name: ClassVar[str] = "audit-toy-honest"
    capabilities: ClassVar[Capabilities] = Capabilities(labelled=False, unlabelled=True, channels=(1, 3))
    noise_factor: ClassVar[float] = 1.0
    """The fraction of the calibrated noise actually drawn (1 for the honest toy)."""

    def noise_std(self, train: ImageDataset, sigma: float, dim: int) -> float:
        return self.noise_factor * sigma * math.sqrt(dim)

    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        x = train.images.flatten(1).double().clamp(0.0, 1.0)
        total = x.sum(0)
        if budget.is_private:
            sigma = _sigma(budget)
            dim = x.shape[1]
            total = total + gaussian_noise(total.shape, self.noise_std(train, sigma, dim), sensitivity=math.sqrt(dim))
            ledger.record(GaussianEvent(sigma), f"{self.name}: pixel sum (L2 sensitivity sqrt({dim}))")
        self.mean = total / train.public_size()

    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        noise = 0.05 * torch.randn(n, self.mean.numel(), generator=generator, dtype=torch.float64)
        return (self.mean.clamp(0, 1) + noise).clamp(0, 1).float().reshape(n, *self.info.shape)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"]


class TenthNoisePixelMean(NoisyPixelMean):
    """Records the calibrated σ, draws a tenth of it (the ledger overstates the noise ten-fold)."""

    name: ClassVar[str] = "audit-toy-tenth-noise"
    noise_factor: ClassVar[float] = 0.1


class ParityNoisePixelMean(NoisyPixelMean):
    """Noise std σ√D on an even private size, 2σ√D on an odd one: the scale leaks the parity of len(train)."""

    name: ClassVar[str] = "audit-toy-parity"

    def noise_std(self, train: ImageDataset, sigma: float, dim: int) -> float:
        return sigma * math.sqrt(dim) * (1.0 if len(train) % 2 == 0 else 2.0)


TOYS: tuple[type[NoisyPixelMean], ...] = (NoisyPixelMean, TenthNoisePixelMean, ParityNoisePixelMean)
