"""Precision, recall, density and coverage (Naeem et al., 2020, "Reliable Fidelity and Diversity Metrics for
Generative Models"), on feature vectors; k-nearest-neighbour manifolds with k = 5 by default.

Follows the reference implementation (github.com/clovaai/generative-evaluation-prdc): the radius of a sample
is the distance to its k-th nearest neighbour *excluding itself* within its own set; distances are Euclidean,
balls are open (strict <, as in the reference), computed in float64 and in row blocks so 10k × 10k never
materialises more than a block at a time.

* precision: fraction of fake samples inside at least one real k-NN ball;
* recall:    fraction of real samples inside at least one fake k-NN ball;
* density:   (1 / kM) Σ_fake #{real balls containing it}  (can exceed 1);
* coverage:  fraction of real samples whose own ball contains at least one fake sample.
All in [0, 1] except density ∈ [0, ∞); higher is better.

The metric unit ``prdc`` (→ ``precision``, ``recall``, ``density``, ``coverage``) is at the end of this module;
its options (:class:`PRDCOptions`, ``evaluation.options.prdc`` in a config) are k and the feature space.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from .base import Measurement, MetricOptions, register_metric
from .context import MetricContext

_BLOCK = 1024
PRDC_K = 5
PRDC_SPACES = ("effnet", "digitcnn", "inception")
PRDC_RESULTS = ("precision", "recall", "density", "coverage")


class PRDCOptions(MetricOptions):
    """k of the k-NN balls and the feature space.

    EfficientNet is the default space because in digitcnn space uniform noise scores precision ≈ 0.98 against
    real MNIST (the CNN maps noise into a tight cluster inside the real manifold), while in EfficientNet space
    it scores 0. ``inception`` is the FID space (DPImageBench's precision/recall; needs the Inception weights)."""

    k: int = Field(default=PRDC_K, ge=1, strict=True)
    """Neighbours of the k-NN balls (the reference implementation's default, 5)."""
    space: Literal["effnet", "digitcnn", "inception"] = "effnet"
    """Feature space (a name of :data:`~dpgen_bench.metrics.feature_spaces.FEATURE_SPACES`)."""


def _as64(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(x.shape)}")
    return x


def _kth_nn_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest *other* row."""
    radii = []
    for start in range(0, len(x), _BLOCK):
        d = torch.cdist(x[start : start + _BLOCK], x)
        # The k+1 smallest include the point itself at distance 0 (the reference implementation's convention).
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def prdc(real_features: torch.Tensor, fake_features: torch.Tensor, k: int = PRDC_K) -> dict[str, float]:
    """PRDC between (N, D) real and (M, D) fake features. Needs N > k and M > k."""
    real, fake = _as64(real_features), _as64(fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} samples per set, got {len(real)} real, {len(fake)} fake")
    real_r = _kth_nn_radius(real, k)  # (N,)
    fake_r = _kth_nn_radius(fake, k)  # (M,)

    fake_in_real = torch.zeros(len(fake), dtype=torch.float64)  # #real balls containing each fake sample
    real_nn_dist = torch.full((len(real),), float("inf"), dtype=torch.float64)  # distance to nearest fake
    real_in_fake = torch.zeros(len(real), dtype=torch.bool)  # real sample inside some fake ball
    for start in range(0, len(real), _BLOCK):
        d = torch.cdist(real[start : start + _BLOCK], fake)  # (b, M)
        inside_real_ball = d < real_r[start : start + _BLOCK, None]
        fake_in_real += inside_real_ball.sum(dim=0)
        real_nn_dist[start : start + _BLOCK] = d.min(dim=1).values
        real_in_fake[start : start + _BLOCK] = (d < fake_r[None, :]).any(dim=1)

    return {
        "precision": float((fake_in_real > 0).double().mean()),
        "recall": float(real_in_fake.double().mean()),
        "density": float(fake_in_real.sum() / (k * len(fake))),
        "coverage": float((real_nn_dist < real_r).double().mean()),
    }


# ------------------------------------------------------------------------------------------ the metric unit


@register_metric("prdc", results=dict.fromkeys(PRDC_RESULTS, "higher"), space_option="space", options=PRDCOptions)
def prdc_metric(ctx: MetricContext, options: PRDCOptions) -> dict[str, Measurement]:
    """PRDC with k = ``options.k`` in the feature space ``options.space``; missing (with the reason) when the
    space does not apply, a set has k samples or fewer, or the network's weights are absent."""
    space, k = options.space, options.k
    reason = ctx.space(space).applies(ctx.real)
    if reason is None and min(ctx.n_real, ctx.n_fake) <= k:
        reason = f"PRDC with k={k} needs more than {k} samples per set, got {ctx.n_real} real, {ctx.n_fake} fake"
    if reason is None:
        try:
            values = prdc(ctx.features(space, "real"), ctx.features(space, "synthetic"), k=k)
        except (FileNotFoundError, ImportError) as exc:  # incl. InceptionWeightsMissing: weights not on disk
            reason = str(exc)
    if reason is not None:
        return {name: Measurement.missing(reason, {"k": k}) for name in PRDC_RESULTS}
    return {name: Measurement(values[name], details={"k": k}) for name in PRDC_RESULTS}
