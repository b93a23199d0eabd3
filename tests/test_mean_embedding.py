"""The release-once core: norms, sensitivity, calibrated noise, noisy counts, ledger."""

from __future__ import annotations

from dataclasses import replace

import math

import pytest
import torch

from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_methods.mean_embedding import (
    calibrate_release,
    normalise_rows,
    per_class_sums,
    ReleaseSpec,
    release_mean_embedding,
)



INFO = DatasetInfo("toy", channels=1, height=4, width=4, num_classes=3)


def _embed(x: torch.Tensor) -> dict[str, torch.Tensor]:
    f = x.flatten(1) - 0.3
    return {"phi1": normalise_rows(f, 1.0), "phi2": normalise_rows(f * f, 1.0)}


def _data(n: int = 30, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % 3, INFO)


def test_normalised_embeddings_have_norm_exactly_c():
    v = torch.randn(50, 17) * torch.logspace(-3, 3, 50)[:, None]
    torch.testing.assert_close(normalise_rows(v, 2.5).norm(dim=1), torch.full((50,), 2.5))


def test_removing_one_example_changes_each_moment_sum_by_at_most_c_and_one_count_by_one():
    data = _data(30)
    for c in (0.5, 1.0, 3.0):
        def embed(x, c=c):
            return {k: v * c for k, v in _embed(x).items()}  # norm exactly c

        full = per_class_sums(embed, data.images, data.labels, 3, c)
        for i in (0, 7, 29):
            keep = torch.arange(30) != i
            minus = per_class_sums(embed, data.images[keep], data.labels[keep], 3, c)
            for k in full.sums:
                diff = (full.sums[k] - minus.sums[k]).norm()  # Frobenius over all classes
                assert diff <= c * (1 + 1e-9) and diff >= c * (1 - 1e-6)
            assert (full.counts - minus.counts).abs().sum() == 1


def test_embeddings_longer_than_c_are_clipped_so_the_sensitivity_holds():
    data = _data(6)
    big = per_class_sums(lambda x: {"m": x.flatten(1) * 100}, data.images, data.labels, 3, 1.0)
    one = per_class_sums(lambda x: {"m": x.flatten(1) * 100}, data.images[1:], data.labels[1:], 3, 1.0)
    assert (big.sums["m"] - one.sums["m"]).norm() <= 1.0 + 1e-9


def test_release_noise_has_the_calibrated_std_and_counts_are_noised():
    data = _data(30)
    budget = PrivacyBudget(2.0, 1e-5)
    exact = per_class_sums(_embed, data.images, data.labels, 3, 1.0)
    gen = torch.Generator().manual_seed(0)
    sums_noise, count_noise = [], []
    sigma = None
    for _ in range(300):
        rel = release_mean_embedding(_embed, data, budget, PrivacyLedger(), noise_generator=gen)
        sigma = rel.sigma
        noisy_counts = rel.counts.double()
        count_noise.append(noisy_counts - exact.counts)
        # Undo the division to recover the noise added to the sums.
        s = rel.means["phi1"].double() * noisy_counts.clamp_min(1)[:, None]
        sums_noise.append((s - exact.sums["phi1"]).flatten())
    sums_noise = torch.cat(sums_noise)
    count_noise = torch.cat(count_noise)
    assert sigma == pytest.approx(calibrate_release(2, budget), rel=1e-9)
    # 14,400 draws: the sample std is within ~2 % of the truth with overwhelming probability.
    assert sums_noise.std().item() == pytest.approx(sigma * 1.0, rel=0.03)
    assert abs(sums_noise.mean().item()) < 0.05 * sigma
    assert count_noise.std().item() == pytest.approx(2.0 * sigma, rel=0.1)
    assert (count_noise != 0).all()


def test_release_records_one_gaussian_per_moment_plus_counts_and_stays_within_budget():
    data = _data(30)
    budget = PrivacyBudget(1.0, 1e-5)
    ledger = PrivacyLedger()
    rel = release_mean_embedding(_embed, data, budget, ledger, ReleaseSpec(count_noise_ratio=3.0))
    assert len(ledger) == 3
    sigmas = [e.noise_multiplier for e in ledger.events]
    assert sigmas[0] == sigmas[1] == pytest.approx(rel.sigma) and sigmas[2] == pytest.approx(3.0 * rel.sigma)
    assert "counts" in ledger.entries[2].note and "phi2" in ledger.entries[1].note
    for acc in ("prv", "gdp"):  # calibrated with prv; the exact gdp value is lower still
        assert ledger.within(replace(budget, accountant=acc))


def test_non_private_release_is_exact_and_records_nothing():
    data = _data(30)
    ledger = PrivacyLedger()
    rel = release_mean_embedding(_embed, data, PrivacyBudget(math.inf, 1e-5), ledger)
    exact = per_class_sums(_embed, data.images, data.labels, 3, 1.0)
    assert len(ledger) == 0 and rel.sigma is None and not rel.private
    torch.testing.assert_close(rel.means["phi1"].double(), exact.sums["phi1"] / exact.counts[:, None])


def test_unlabelled_release_is_one_class():
    rel = release_mean_embedding(_embed, _data(30), PrivacyBudget(5.0, 1e-5), PrivacyLedger(), ReleaseSpec(labelled=False))
    assert rel.means["phi1"].shape == (1, 16) and rel.counts.shape == (1,)


def test_release_noise_does_not_repeat_across_calls_without_a_generator():
    data = _data(30)
    a = release_mean_embedding(_embed, data, PrivacyBudget(5.0, 1e-5), PrivacyLedger())
    b = release_mean_embedding(_embed, data, PrivacyBudget(5.0, 1e-5), PrivacyLedger())
    assert not torch.equal(a.means["phi1"], b.means["phi1"])


def test_labels_out_of_range_are_refused():
    data = _data(6)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        per_class_sums(_embed, data.images, data.labels, 2, 1.0)
