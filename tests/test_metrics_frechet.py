"""Fréchet distance: float64, matches a scipy-sqrtm reference and closed forms, robust to singular covariances."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from dpgen_bench.metrics.frechet import GaussianStats, frechet_distance, gaussian_stats


def scipy_reference(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's formula: ‖μ₁−μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr sqrtm(Σ₁Σ₂), all float64."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


@pytest.mark.parametrize("d", [2, 16, 64])
def test_frechet_matches_scipy_sqrtm_reference_on_random_gaussians(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    got = frechet_distance(GaussianStats(mu1, s1, 100), GaussianStats(mu2, s2, 100))
    assert got == pytest.approx(scipy_reference(mu1, s1, mu2, s2), rel=1e-8, abs=1e-9)


def test_frechet_equals_closed_form_for_diagonal_gaussians():
    # For commuting (diagonal) covariances: d² = ‖μ₁−μ₂‖² + Σᵢ (√aᵢ − √bᵢ)².
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 4.0, 32), rng.uniform(0.1, 4.0, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(GaussianStats(mu1, np.diag(a), 10), GaussianStats(mu2, np.diag(b), 10))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_of_samples_converges_to_known_distance():
    # N(0, I) vs N(m·1, 4I) in 8 dims: d² = 8m² + 8(2−1)² ; sample estimate within a few percent at n=20k.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 8, generator=gen, dtype=torch.float64)
    y = 0.5 + 2 * torch.randn(20000, 8, generator=gen, dtype=torch.float64)
    got = frechet_distance(gaussian_stats(x), gaussian_stats(y))
    assert got == pytest.approx(8 * 0.25 + 8 * 1.0, rel=0.05)


def test_frechet_is_zero_for_identical_stats_and_symmetric():
    rng = np.random.default_rng(1)
    s1, s2 = random_spd(rng, 20), random_spd(rng, 20)
    st1, st2 = GaussianStats(np.ones(20), s1, 5), GaussianStats(np.zeros(20), s2, 5)
    assert frechet_distance(st1, st1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(st1, st2) == pytest.approx(frechet_distance(st2, st1), rel=1e-9)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_frechet_survives_zero_variance_dimensions_and_rank_deficient_covariances():
    # Dead ReLU units give constant feature dims; fewer samples than dims gives singular covariances.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 50, generator=gen)
    y = torch.randn(30, 50, generator=gen) + 1.0
    x[:, :10] = 0.0
    y[:, :10] = 0.0
    sx, sy = gaussian_stats(x), gaussian_stats(y)
    got = frechet_distance(sx, sy)
    assert np.isfinite(got) and got > 0
    # The constant dims contribute nothing: same as the distance on the live dims only.
    live = frechet_distance(gaussian_stats(x[:, 10:]), gaussian_stats(y[:, 10:]))
    assert got == pytest.approx(live, rel=1e-6)
    assert got == pytest.approx(scipy_reference(sx.mu, sx.sigma, sy.mu, sy.sigma), rel=1e-5)


def test_gaussian_stats_are_float64_and_unbiased():
    x = torch.randn(100, 4, dtype=torch.float32)
    st = gaussian_stats(x)
    assert st.mu.dtype == np.float64 and st.sigma.dtype == np.float64 and st.n == 100
    np.testing.assert_allclose(st.sigma, np.cov(x.double().numpy(), rowvar=False), rtol=1e-10)


def test_gaussian_stats_reject_bad_input_with_clear_messages():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        gaussian_stats(torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(GaussianStats(np.zeros(2), np.eye(2), 2), GaussianStats(np.zeros(3), np.eye(3), 2))


@pytest.mark.parametrize("n", [3, 40, 200])
def test_low_rank_feature_path_agrees_with_the_covariance_path(n):
    from dpgen_bench.metrics.frechet import frechet_distance_to_features

    gen = torch.Generator().manual_seed(n)
    ref = gaussian_stats(torch.randn(300, 64, generator=gen, dtype=torch.float64))
    fake = 0.7 * torch.randn(n, 64, generator=gen, dtype=torch.float64) + 0.2
    fake[:, :5] = 1.0  # constant dims as well
    # rel 1e-6: for rank-deficient Σ the general path adds √(rounding noise) per null eigenvalue.
    assert frechet_distance_to_features(ref, fake) == pytest.approx(
        frechet_distance(ref, gaussian_stats(fake)), rel=1e-6
    )
