"""The Fréchet-distance metrics: ``fid`` (→ ``FID``), ``fd-digitcnn`` (→ ``FD-digitcnn``), ``fd-effnet``
(→ ``FD-effnet``); lower is better, ≥ 0, comparable only at equal sample counts.

One rule names them all (:func:`frechet_names`): a Fréchet distance is called FID only in the Inception-v3
space, in any other space ``FD-<space>``. The real split's Gaussian statistics come from the content-keyed
cache (:mod:`.reference_stats`); the synthetic side uses the low-rank path of
:func:`~dpgen_bench.metrics.frechet.frechet_distance_to_features`.
"""

from __future__ import annotations

from .base import Measurement, register_metric
from .context import MetricContext
from .frechet import frechet_distance_to_features, gaussian_stats
from .reference_stats import cached_reference_stats

FD_IMPLEMENTATION = "dpgen_bench.metrics.frechet (float64; Tr sqrt via eigvals of S1 S2)"


def frechet_names(space: str) -> tuple[str, str]:
    """(config name, result name) of the Fréchet distance in ``space``: FID only for Inception features."""
    return ("fid", "FID") if space == "inception" else (f"fd-{space}", f"FD-{space}")


def frechet_measurement(ctx: MetricContext, space_name: str) -> Measurement:
    """Fréchet distance between the real and synthetic features in ``space_name``; missing (with the
    reason) when the space does not apply, a set has fewer than 2 samples or the network's weights are absent."""
    space = ctx.space(space_name)
    reason = space.applies(ctx.real)
    if reason is None and min(ctx.n_real, ctx.n_fake) < 2:
        reason = f"needs at least 2 samples per set, got {ctx.n_real} real, {ctx.n_fake} fake"
    if reason is not None:
        return Measurement.missing(reason, space.details)
    try:
        ref, from_cache = cached_reference_stats(
            ctx.real, space.cache_key, lambda: gaussian_stats(ctx.features(space_name, "real")), ctx.cache_dir
        )
        fake_features = ctx.features(space_name, "synthetic")
    except (FileNotFoundError, ImportError) as exc:  # incl. InceptionWeightsMissing: weights not on disk
        return Measurement.missing(str(exc), space.details)
    details = {
        "implementation": FD_IMPLEMENTATION,
        "reference": f"{ctx.real.info.name}/{ctx.real.split}",
        "reference_stats_from_cache": from_cache,
        "feature_dim": ref.dim,
        **space.details,
    }
    return Measurement(frechet_distance_to_features(ref, fake_features), details=details)


def _register_frechet(space: str) -> None:
    config_name, result = frechet_names(space)

    def compute(ctx: MetricContext) -> dict[str, Measurement]:
        return {result: frechet_measurement(ctx, space)}

    register_metric(config_name, results={result: "lower"}, feature_space=space, origin=f"{__name__} ({space})")(compute)


for _space in ("inception", "digitcnn", "effnet"):
    _register_frechet(_space)
