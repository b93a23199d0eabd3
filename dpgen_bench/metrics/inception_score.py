"""Inception Score (Salimans et al., 2016): exp(E_x KL(p(y|x) ‖ p(y))) of the Inception-v3 ImageNet classifier on
the synthetic images; higher is better, in [1, number of classes] (1008 for this network). It needs no real
images.

Computed as torch-fidelity computes it: its ``metric_isc.isc_features_to_metric`` is called here, so the
definition is theirs — the samples shuffled with a fixed seed (2020) and cut into ``splits`` chunks (default 10,
the original code's), the score of each chunk exp(mean KL(p(y|x) ‖ mean p(y))) in float64, reported as the mean
over the chunks with their standard deviation in the details. The logits are the 1008-way head of the same
network and weights FID uses, applied to the same pool features (one forward pass serves FID and IS), without the
head's bias by default (torch-fidelity's ``logits_unbiased``, as the original code's ``pool3 @ W``).

DPImageBench (commit 565f8d7, ``evaluation/evaluator.py``, ``compute_inception_score_from_logits``) reports one
split of softmax(pytorch-fid ``fc``) — logits *with* the bias; its protocol here passes ``splits=1, bias=True``
(``docs/protocol.md``).

Missing with the reason, never 0, when the Inception weights are absent or there are fewer samples than splits.
The metric unit ``is`` (→ ``IS``) is at the end of this module; options :class:`ISOptions`.
"""

from __future__ import annotations

from typing import Protocol

import torch
from pydantic import Field

from .base import Measurement, MetricOptions, register_metric
from .context import MetricContext

IS_SPACE = "inception"
IMPLEMENTATION = "torch_fidelity.metric_isc.isc_features_to_metric (float64, shuffle seed 2020)"


class ClassifierHead(Protocol):
    """A feature space's network that also classifies: logits from the features it extracts."""

    def class_logits(self, features: torch.Tensor, bias: bool = False) -> torch.Tensor: ...


class ISOptions(MetricOptions):
    """How the score is split and which logits it reads (defaults: torch-fidelity's, the original code's)."""

    splits: int = Field(default=10, ge=1, strict=True)
    """Equal chunks the samples are cut into; the score is the mean over chunks (DPImageBench: 1)."""
    bias: bool = False
    """Add the classifier head's bias to the logits (False: torch-fidelity; True: DPImageBench / pytorch-fid)."""


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, standard deviation) over ``splits`` chunks of the Inception Score of (N, C) class ``logits``
    (unnormalised; softmax is applied here), N ≥ ``splits``. Uniform predictions score 1; confident predictions
    spread evenly over C classes score C."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, classes), got shape {tuple(logits.shape)}")
    if not 1 <= splits <= len(logits):
        raise ValueError(f"splits must be in [1, {len(logits)}] for {len(logits)} samples, got {splits}")
    out = isc_features_to_metric(logits.detach().to("cpu"), splits=splits, shuffle=True, rng_seed=2020)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]


# ------------------------------------------------------------------------------------------ the metric unit


@register_metric("is", results={"IS": "higher"}, feature_space=IS_SPACE, options=ISOptions)
def inception_score_metric(ctx: MetricContext, options: ISOptions) -> dict[str, Measurement]:
    """IS of the synthetic images with the Inception network's classifier head."""
    space = ctx.space(IS_SPACE)
    details = {"splits": options.splits, "logits": "with bias" if options.bias else "unbiased", **space.details}
    reason = space.applies(ctx.synthetic)
    if reason is None and ctx.n_fake < options.splits:
        reason = f"IS with {options.splits} splits needs at least {options.splits} samples, got {ctx.n_fake}"
    if reason is None:
        try:
            head: ClassifierHead = ctx.extractor(IS_SPACE)  # type: ignore[assignment]
            logits = head.class_logits(ctx.features(IS_SPACE, "synthetic"), bias=options.bias)
        except (FileNotFoundError, ImportError) as exc:  # incl. InceptionWeightsMissing: weights not on disk
            reason = str(exc)
    if reason is not None:
        return {"IS": Measurement.missing(reason, details)}
    mean, std = inception_score(logits, options.splits)
    return {"IS": Measurement(mean, details={**details, "std": std, "implementation": IMPLEMENTATION})}
