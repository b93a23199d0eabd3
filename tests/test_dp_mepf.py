"""DP-MEPF: release accounting, embeddings, end-to-end fit/sample/save/load (random-cnn, few steps)."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.method import ConfigError
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.registry import get_method
from dpgen_bench_methods.dp_mepf import DPMEPF, PAPER_PRESETS
from dpgen_bench_methods.mean_embedding import per_class_sums



FAST = {"extractor": "random-cnn", "steps": 3, "batch_size": 20, "embed_batch_size": 100}


@pytest.fixture(scope="module")
def small_train(mnist5k_splits):
    """500 mnist-5k training images (50 per class) keep the end-to-end test fast."""
    train = mnist5k_splits.train
    idx = torch.cat([torch.nonzero(train.labels == k).flatten()[:50] for k in range(10)])
    return train.subset(idx)


def test_entry_point_resolves_to_dpmepf():
    assert get_method("dp-mepf") is DPMEPF


def test_checkpoint_restores_the_release_summary(small_train, tmp_path):
    """Samples, labels and identical samples after save/load: the contract suite (dpgen_bench.conformance)."""
    method = DPMEPF(FAST, small_train.info, seed=3)
    method.fit(small_train, PrivacyBudget(10.0, 1e-5), PrivacyLedger())
    method.save(tmp_path / "ckpt")
    again = DPMEPF.load(tmp_path / "ckpt")
    assert method.release_summary and again.release_summary == method.release_summary
    assert again.release_summary["sigma"] > 0


def test_ledger_has_phi1_phi2_and_counts_and_spends_at_most_the_target(small_train):
    method = DPMEPF(FAST, small_train.info)
    ledger = PrivacyLedger()
    method.fit(small_train, PrivacyBudget(1.0, 1e-5), ledger)
    notes = [e.note for e in ledger.entries]
    assert len(notes) == 3 and "phi1" in notes[0] and "phi2" in notes[1] and "counts" in notes[2]
    assert ledger.within(PrivacyBudget(1.0, 1e-5))


def test_phi1_variant_releases_one_sum_plus_counts(small_train):
    method = DPMEPF({**FAST, "moments": "phi1"}, small_train.info)
    ledger = PrivacyLedger()
    method.fit(small_train, PrivacyBudget(1.0, 1e-5), ledger)
    assert len(ledger) == 2


def test_generator_only_sees_noisy_statistics(small_train, monkeypatch):
    method = DPMEPF(FAST, small_train.info)
    seen = {}
    monkeypatch.setattr(method, "train_generator", lambda released: seen.setdefault("r", released))
    method.fit(small_train, PrivacyBudget(1.0, 1e-5), PrivacyLedger())
    released = seen["r"]
    exact = per_class_sums(method.embed, small_train.images, small_train.labels, 10, 1.0)
    assert not torch.equal(released.counts.double(), exact.counts)
    exact_mean = exact.sums["phi1"] / exact.counts[:, None]
    assert not torch.allclose(released.means["phi1"].double(), exact_mean, atol=1e-3)


def test_non_private_run_records_nothing_and_uses_exact_means(small_train, monkeypatch):
    method = DPMEPF(FAST, small_train.info)
    seen = {}
    monkeypatch.setattr(method, "train_generator", lambda released: seen.setdefault("r", released))
    ledger = PrivacyLedger()
    method.fit(small_train, PrivacyBudget(math.inf, 1e-5), ledger)
    assert len(ledger) == 0 and seen["r"].sigma is None
    assert torch.equal(seen["r"].counts, torch.full((10,), 50.0))


def test_real_and_generated_images_get_the_same_unit_norm_embedding(small_train):
    method = DPMEPF({**FAST, "sum_norm": 2.0}, small_train.info)
    fake, _ = method.sample(8)
    for x in (small_train.images[:8], fake):
        for phi in method.embed(x).values():
            torch.testing.assert_close(phi.norm(dim=1), torch.full((8,), 2.0))


def test_unlabelled_model_returns_minus_one_labels_and_refuses_labels(small_train):
    method = DPMEPF({**FAST, "labelled": False}, small_train.info)
    ledger = PrivacyLedger()
    method.fit(small_train, PrivacyBudget(5.0, 1e-5), ledger)
    images, labels = method.sample(6)
    assert images.shape == (6, 1, 28, 28) and (labels == -1).all()
    assert "K=1" in ledger.entries[0].note
    with pytest.raises(ValueError, match="unlabelled"):
        method.sample(2, labels=torch.tensor([0, 1]))


def test_training_moves_the_generator_towards_the_target(small_train):
    """25 steps reduce the (noise-free) embedding distance to the real data."""
    method = DPMEPF({**FAST, "steps": 25, "lr": 3e-3, "ma_lr": 3e-3}, small_train.info, seed=0)
    real = {k: v.mean(0) for k, v in method.embed(small_train.images).items()}

    def distance():
        fake, _ = method.sample(200, seed=0)
        with torch.no_grad():
            return sum((method.embed(fake)[k].mean(0) - real[k]).norm() for k in real)

    before = distance()
    method.fit(small_train, PrivacyBudget(math.inf, 1e-5), PrivacyLedger())
    assert distance() < before


def test_bad_config_is_refused_with_the_key():
    with pytest.raises(ConfigError, match="moments"):
        DPMEPF.preset("paper-mnist", moments="phi3")
    with pytest.raises(ConfigError, match="unknown config key"):
        from dpgen_bench.method import build_config

        build_config(DPMEPF.Config, {"stpes": 3})


def test_paper_presets_are_valid_configs():
    for name in PAPER_PRESETS:
        cfg = DPMEPF.preset(name)
        assert cfg.extractor == "vgg19" and cfg.beta1 == 0.5


def test_rgb_32_uses_the_resnet_generator():
    from dpgen_bench.data.types import DatasetInfo
    from dpgen_bench_methods.generators import ResNetGenerator

    info = DatasetInfo("rgb", channels=3, height=32, width=32, num_classes=10)
    method = DPMEPF(FAST, info)
    assert isinstance(method.generator, ResNetGenerator)
