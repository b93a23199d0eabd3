"""DP-NTK: the e-NTK features (closed form = autograd), the release (sensitivity 1, the closed-form sums = the
generic clipped sums), end-to-end fit."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.registry import get_method
from dpgen_bench_methods.dp_ntk import DPNTK, NTKFeatures
from dpgen_bench_methods.mean_embedding import per_class_sums

FAST = {"ntk_width": 12, "steps": 5, "batch_size": 20}
INFO = DatasetInfo("t", 1, 8, 8, 3)


def _data(n: int = 30) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 3, INFO, split="train", nominal_size=n)


def _reference_network(f: NTKFeatures) -> torch.nn.Module:
    """The reference's ``fc_1l`` network with f's weights: Linear, ReLU, LayerNorm (no affine), Linear."""
    net = torch.nn.Sequential(torch.nn.Flatten(0), torch.nn.Linear(f.d_in, f.width), torch.nn.ReLU(),
                              torch.nn.LayerNorm(f.width, elementwise_affine=False), torch.nn.Linear(f.width, f.outputs))
    with torch.no_grad():
        net[1].weight.copy_(f.w1), net[1].bias.copy_(f.b1), net[4].weight.copy_(f.w2), net[4].bias.copy_(f.b2)
    return net


def test_entry_point_resolves_to_dpntk():
    assert get_method("dp-ntk") is DPNTK


def test_features_are_the_normalised_autograd_gradient_of_the_summed_output():
    f = NTKFeatures(64, 12, 3, seed=4)
    net, images = _reference_network(f), _data(5).images
    rows = f.rows(images)
    for i in range(len(images)):
        grads = torch.autograd.grad(net(images[i]).sum(), list(net.parameters()))
        g = torch.cat([p.flatten() for p in grads])
        torch.testing.assert_close(rows[i], g / g.norm(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(len(images)))
    assert rows.shape == (5, f.dim) and f.dim == 12 * 64 + 12 + 3 * 12 + 3


def test_class_means_without_rows_equal_the_means_of_the_rows():
    f, data = NTKFeatures(64, 12, 3, seed=4), _data(12)
    blocks = f.class_means(data.images, data.labels, 4)  # class 3 has no image: zero blocks
    flat = torch.cat([b.reshape(4, -1) for b in blocks], dim=1)
    rows = f.rows(data.images)
    expected = torch.stack([rows[data.labels == k].mean(0) if (data.labels == k).any() else torch.zeros(f.dim)
                            for k in range(4)])
    torch.testing.assert_close(flat, expected, atol=1e-6, rtol=1e-5)


def test_the_release_sums_are_the_generic_clipped_sums_and_one_example_moves_them_by_norm_one():
    """Sensitivity under add/remove: appending one example changes one class's sum by a vector of norm 1
    (C) and its count by 1 — the σ·C noise and the count noise are calibrated for exactly that."""
    method, data = DPNTK(FAST, INFO, seed=1), _data()
    args = (data.images, data.labels, 3, 1.0, 7)
    closed = method.ntk_class_sums(method.embed, *args)
    generic = per_class_sums(method.embed, *args)
    torch.testing.assert_close(closed.sums["ntk"], generic.sums["ntk"], atol=1e-6, rtol=1e-5)
    assert torch.equal(closed.counts, generic.counts)
    image = torch.rand(1, 1, 8, 8)
    bigger = method.ntk_class_sums(method.embed, torch.cat([data.images, image]),
                                   torch.cat([data.labels, torch.tensor([2])]), 3, 1.0)
    diff = bigger.sums["ntk"] - closed.sums["ntk"]
    assert diff[:2].abs().max() < 1e-12 and diff[2].norm().item() == pytest.approx(1.0, abs=1e-9)
    assert (bigger.counts - closed.counts).tolist() == [0.0, 0.0, 1.0]


def test_private_fit_records_the_sums_and_the_counts_at_the_calibrated_noise():
    method, ledger, budget = DPNTK(FAST, INFO, seed=2), PrivacyLedger(), PrivacyBudget(2.0, 1e-5)
    method.fit(_data(), budget, ledger)
    notes = [e.note for e in ledger.entries]
    assert len(notes) == 2 and "sums of ntk" in notes[0] and "sensitivity C=1.0" in notes[0] and "counts" in notes[1]
    sigma = ledger.events[0].noise_multiplier
    assert ledger.events == [GaussianEvent(sigma), GaussianEvent(2 * sigma)]  # count noise ratio 2
    assert ledger.within(budget) and ledger.epsilon(budget) == pytest.approx(2.0, rel=1e-3)
    assert method.release_summary["dims"] == {"ntk": method.ntk.dim}


def test_generator_loss_decreases_non_privately():
    method = DPNTK({**FAST, "steps": 40}, INFO, seed=0)
    method.fit(_data(), PrivacyBudget(math.inf, 1e-5), PrivacyLedger())
    losses = [loss for _, loss in method.history["loss"]]
    assert losses[-1] < losses[0]


def test_network_weights_come_from_the_public_seed():
    a, b = DPNTK(FAST, INFO, seed=3), DPNTK({**FAST, "ntk_seed": 3}, INFO, seed=99)
    assert torch.equal(a.ntk.w1, b.ntk.w1) and torch.equal(a.ntk.w2, b.ntk.w2)
