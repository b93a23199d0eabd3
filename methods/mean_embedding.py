"""The release-once core shared by DP-MEPF and DP-MERF.

Both methods touch the private data exactly once: they embed every training example with a map φ whose
output has L2 norm at most C per *moment* (a moment is one embedded vector, e.g. DP-MEPF's φ1 and φ2, or
DP-MERF's random Fourier features), sum the embeddings per class, and release

    S̃_k = Σ_{y_i = k} φ(x_i) + N(0, σ²C² I)      (one Gaussian release per moment, all classes together)
    ñ_k = n_k + N(0, (ρσ)²)                      (one Gaussian release of all K counts)

The released per-class mean embedding is μ̃_k = S̃_k / max(ñ_k, 1). Everything the generator sees afterwards
is post-processing of these releases.

Sensitivity under add/remove-one neighbouring: adding or removing one example (x, y) changes exactly one
row S_y of each moment's (K × D) sum matrix by φ(x), so the L2 sensitivity is ‖φ(x)‖ ≤ C per moment — the
core enforces the bound by clipping (a no-op for the normalised embeddings the methods produce). It
changes one count by 1, so the counts have sensitivity 1. (No √2 or 1/n appears: n is not public and
nothing is replaced.)

Noise allocation: the sums of every moment get the same noise multiplier σ (std σ·C); the counts get noise
multiplier ρσ (std ρσ, ρ = ``count_noise_ratio``, default 2). Counts are large numbers (hundreds per
class), so a somewhat larger count noise costs little accuracy while leaving most of the budget to the
high-dimensional sums: with two moments and ρ = 2, σ is only ~6 % larger than if the counts were free.
σ is the smallest value for which the M + 1 releases compose to the target (ε, δ) with the shared
calibrator (:func:`dpgen_bench.privacy.calibration.calibrate_gaussian_releases`); each release is recorded
in the ledger as a :class:`~dpgen_bench.privacy.events.GaussianEvent` when it is made.

The release noise is drawn from a generator seeded with fresh OS entropy, never from the run's (public)
seed — otherwise anyone knowing the seed could subtract it. Tests may pass their own generator.

``budget.epsilon == inf`` is the non-private reference run: exact sums and counts, nothing recorded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from tqdm.auto import tqdm

from dpgen_bench.context import RunContext
from dpgen_bench.data.types import ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate_gaussian_releases
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import gaussian_noise, release_generator

EmbedFn = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
"""images (B, C, H, W) in [0, 1] → {moment name: (B, D_moment) embeddings with norm ≤ C each}."""


def normalise_rows(v: torch.Tensor, norm: float, eps: float = 1e-12) -> torch.Tensor:
    """Scale each row of ``v`` (N, D) to L2 norm ``norm`` (an all-zero row stays zero). Differentiable."""
    return v * (norm / v.norm(dim=1, keepdim=True).clamp_min(eps))


def clip_rows(v: torch.Tensor, norm: float) -> torch.Tensor:
    """Scale down rows whose L2 norm exceeds ``norm``; shorter rows are unchanged (the sensitivity guard)."""
    scale = (norm / v.norm(dim=1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)
    return v * scale


@dataclass
class ClassSums:
    """Exact (pre-noise) per-class sums and counts. Private: never leaves :func:`release_mean_embedding`."""

    sums: dict[str, torch.Tensor]  # moment → (K, D) float64
    counts: torch.Tensor  # (K,) float64


@torch.no_grad()
def per_class_sums(
    embed: EmbedFn,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    sum_norm: float,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> ClassSums:
    """Σ φ(x_i) over each class (float64 accumulation), with every φ(x_i) clipped to norm ``sum_norm``.

    ``labels`` must lie in [0, num_classes); unlabelled data passes all-zero labels and ``num_classes=1``.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]")
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for start in tqdm(range(0, len(images), batch_size), desc="embedding private data", disable=not progress,
                      leave=False):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].long().cpu()
        for name, phi in embed(x).items():
            phi = clip_rows(phi.detach().double().cpu(), sum_norm)
            if name not in sums:
                sums[name] = torch.zeros(num_classes, phi.shape[1], dtype=torch.float64)
            sums[name].index_add_(0, y, phi)
        counts += torch.bincount(y, minlength=num_classes).double()
    if not sums:
        raise ValueError("no private examples to embed")
    return ClassSums(sums, counts)


@dataclass
class ReleasedEmbedding:
    """What the private data gives the generator: noisy per-class means (or exact ones when non-private).

    ``means[m]`` is (K, D_m) float32 = S̃_k / max(ñ_k, 1); ``counts`` are the noisy ñ_k (K,).
    ``sigma`` is the noise multiplier of the sums (std σ·C), ``count_sigma`` the std of the count noise;
    both None in a non-private run.
    """

    means: dict[str, torch.Tensor]
    counts: torch.Tensor
    sigma: float | None
    count_sigma: float | None
    sum_norm: float
    notes: list[str] = field(default_factory=list)
    sums: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    """The released per-class sums S̃ (K, D_m) float64 behind ``means`` (exact ones when non-private): what the
    empirical privacy audit (``audit_release``) tests. Not used for training, not in :meth:`summary`."""

    @property
    def private(self) -> bool:
        return self.sigma is not None

    def summary(self) -> dict:
        """Plain-value description for checkpoints and logs (released quantities only)."""
        return {
            "sigma": self.sigma,
            "count_sigma": self.count_sigma,
            "sum_norm": self.sum_norm,
            "noisy_counts": [float(c) for c in self.counts],
            "dims": {k: int(v.shape[1]) for k, v in self.means.items()},
        }


@functools.lru_cache(maxsize=64)  # deterministic in its (hashable) arguments; the search is not free
def calibrate_release(
    num_moments: int, budget: PrivacyBudget, count_noise_ratio: float = 2.0
) -> float:
    """σ for ``num_moments`` sum releases (sensitivity C, noise σC) plus one count release (noise ρσ),
    accounted with ``budget.accountant``."""
    return calibrate_gaussian_releases(release_sensitivities(num_moments, count_noise_ratio), budget)


def release_sensitivities(num_moments: int, count_noise_ratio: float = 2.0) -> list[float]:
    """Relative sensitivities of the releases (``num_moments`` sums, then the counts at noise ρσ): the plan
    is ``gaussian_releases_plan`` of these."""
    if num_moments < 1:
        raise ValueError(f"num_moments must be >= 1, got {num_moments}")
    if not count_noise_ratio > 0:
        raise ValueError(f"count_noise_ratio must be > 0, got {count_noise_ratio!r}")
    return [1.0] * num_moments + [1.0 / count_noise_ratio]


@dataclass(frozen=True)
class ReleaseSpec:
    """What :func:`release_mean_embedding` releases.

    ``labelled``: per-class sums and counts (False: one class, labels neither used nor released).
    ``sum_norm``: C > 0, every per-example embedding is clipped to L2 norm C (each sum's sensitivity).
    ``count_noise_ratio``: ρ > 0, the counts get noise std ρσ. ``batch_size``: examples embedded at once
    (memory only). ``label``: names the releases in the ledger.
    """

    labelled: bool = True
    sum_norm: float = 1.0
    count_noise_ratio: float = 2.0
    batch_size: int = 256
    label: str = "mean-embedding"

    def __post_init__(self) -> None:
        if not self.sum_norm > 0:
            raise ValueError(f"sum_norm (C) must be > 0, got {self.sum_norm!r}")
        if not self.count_noise_ratio > 0:
            raise ValueError(f"count_noise_ratio must be > 0, got {self.count_noise_ratio!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")


def release_mean_embedding(
    embed: EmbedFn,
    data: ImageDataset,
    budget: PrivacyBudget,
    ledger: PrivacyLedger,
    spec: ReleaseSpec = ReleaseSpec(),
    context: RunContext = RunContext(progress=False),
    noise_generator: torch.Generator | None = None,
    class_sums: Callable[..., ClassSums] | None = None,
) -> ReleasedEmbedding:
    """Embed ``data`` once and release noisy per-class sums and counts (see the module docstring and
    :class:`ReleaseSpec`); ``context`` gives the device and whether to show progress.

    Records M + 1 :class:`GaussianEvent` s in ``ledger`` (M = number of moments) when ``budget`` is private.
    ``noise_generator`` is for tests only: release noise comes from OS entropy. ``class_sums`` replaces
    :func:`per_class_sums` (same signature and result) — the audit passes a memoised one, so thousands of
    releases of the same data clip and sum the embeddings once.
    """
    labelled, sum_norm, count_noise_ratio, method_name = spec.labelled, spec.sum_norm, spec.count_noise_ratio, spec.label
    num_classes = data.info.num_classes if labelled else 1
    labels = data.labels if labelled else torch.zeros(len(data), dtype=torch.long)
    exact = (class_sums or per_class_sums)(embed, data.images, labels, num_classes, sum_norm, spec.batch_size, context.device,
                           context.progress)
    notes: list[str] = []
    if not budget.is_private:
        means = {k: (s / exact.counts.clamp_min(1.0)[:, None]).float() for k, s in exact.sums.items()}
        return ReleasedEmbedding(means, exact.counts.float(), None, None, sum_norm, ["non-private: exact"],
                                 sums=dict(exact.sums))

    sigma = calibrate_release(len(exact.sums), budget, count_noise_ratio)
    gen = noise_generator or release_generator()
    noisy_sums: dict[str, torch.Tensor] = {}
    for name, s in exact.sums.items():
        noise = gaussian_noise(s.shape, sigma * sum_norm, sensitivity=sum_norm, generator=gen)
        noisy_sums[name] = s + noise
        note = (f"{method_name}: per-class sums of {name} (K={num_classes}, D={s.shape[1]}, "
                f"L2 sensitivity C={sum_norm}, noise std {sigma * sum_norm:.4g})")
        ledger.record(GaussianEvent(sigma), note)
        notes.append(note)
    count_sigma = count_noise_ratio * sigma
    noisy_counts = exact.counts + gaussian_noise((num_classes,), count_sigma, sensitivity=1.0, generator=gen)
    note = f"{method_name}: per-class counts (K={num_classes}, L2 sensitivity 1, noise std {count_sigma:.4g})"
    ledger.record(GaussianEvent(count_sigma), note)
    notes.append(note)
    denom = noisy_counts.clamp_min(1.0)[:, None]
    means = {k: (s / denom).float() for k, s in noisy_sums.items()}
    return ReleasedEmbedding(means, noisy_counts.float(), sigma, count_sigma, sum_norm, notes, sums=noisy_sums)
