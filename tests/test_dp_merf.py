"""DP-MERF: random Fourier features, release, end-to-end fit/sample/save/load."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.method import ConfigError
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.registry import get_method
from dpgen_bench_methods.dp_merf import DPMERF



FAST = {"steps": 5, "n_features": 200}


@pytest.fixture
def data(tiny_dataset) -> ImageDataset:
    return tiny_dataset


def test_entry_point_resolves_to_dpmerf():
    assert get_method("dp-merf") is DPMERF


def test_random_fourier_features_have_norm_one_and_a_public_seed(data):
    a = DPMERF(FAST, data.info, seed=1)
    b = DPMERF({**FAST, "rff_seed": 1}, data.info, seed=99)
    torch.testing.assert_close(a.embed(data.images)["rff"].norm(dim=1), torch.ones(len(data)))
    assert torch.equal(a.frequencies, b.frequencies)


def test_rff_inner_products_approximate_the_gaussian_kernel(data):
    m = DPMERF({**FAST, "n_features": 20000, "rff_sigma2": 20.0}, data.info, seed=0)
    phi = m.embed(data.images[:6])["rff"]
    sq = torch.cdist(data.images[:6].flatten(1), data.images[:6].flatten(1)) ** 2
    torch.testing.assert_close(phi @ phi.T, torch.exp(-sq / (2 * 20.0)), atol=0.03, rtol=0)


def test_private_fit_releases_the_features_and_the_counts_within_budget(data):
    """Samples, save/load and the non-private run recording nothing: the contract suite (dpgen_bench.conformance)."""
    method = DPMERF(FAST, data.info, seed=2)
    ledger = PrivacyLedger()
    method.fit(data, PrivacyBudget(5.0, 1e-5), ledger)
    notes = [e.note for e in ledger.entries]
    assert len(notes) == 2 and "sums of rff" in notes[0] and "counts" in notes[1], notes
    assert ledger.within(PrivacyBudget(5.0, 1e-5))


def test_mmd_loss_decreases_non_privately(data):
    method = DPMERF({**FAST, "steps": 30, "batch_size": 20}, data.info, seed=0)
    method.fit(data, PrivacyBudget(math.inf, 1e-5), PrivacyLedger())
    losses = [l for _, l in method.history["loss"]]
    assert losses[-1] < losses[0]


def test_odd_feature_count_is_refused():
    info = DatasetInfo("t", 1, 8, 8, 10)
    with pytest.raises(ConfigError, match="n_features"):
        DPMERF({"n_features": 101}, info)
