"""The dpimagebench evaluation protocol: its selection modes, its classifiers, and a whole cell on a tiny
official split (val held out of training, δ from the declared size, rows flagged), all with tiny widths."""

from __future__ import annotations

import json
import math

import pytest
import torch

import runner_toy
from dpgen_bench.data import DATASETS, DatasetInfo, DatasetSpec, ImageDataset, OfficialSplit, register_dataset
from dpgen_bench.data.torchvision_sources import TorchvisionSource
from dpgen_bench.metrics import dpimagebench as dpi
from dpgen_bench.metrics.protocol_classifiers import CIFAR_CLASSIFIERS, DEFAULT_CLASSIFIERS, ClassifierSpec

INFO = DatasetInfo("tiny-protocol", 1, 8, 8, 2, ("a", "b"))
N_TRAIN, N_TEST = 80, 40
TINY = dpi.ProtocolOptions(synthetic_val_size=20, classifiers="tiny", epochs=2, batch_size=32)


def _two_blobs(n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: dark images, class 1: bright ones; pixel (0, 0) holds the row index / 255."""
    labels = torch.arange(n) % 2
    images = (0.2 + 0.6 * labels.float())[:, None, None, None].expand(n, 1, 8, 8).clone()
    images[:, 0, 0, 0] = (torch.arange(n) + offset).float() / 255.0
    return images, labels


def test_selection_picks_the_best_validation_epoch_and_the_later_one_on_ties():
    assert dpi.select_epoch([0.1, 0.5, 0.3]) == 1
    assert dpi.select_epoch([0.5, 0.2, 0.5]) == 2  # DPImageBench's `>=`


def test_selection_modes_pick_different_epochs_when_their_validation_curves_disagree(monkeypatch):
    # Constructed: the synthetic split peaks at epoch 0, the sensitive one at epoch 2.
    curves = {"synthetic-val": [0.9, 0.5, 0.4], "sensitive-val": [0.2, 0.3, 0.8], "test": [0.6, 0.7, 0.75]}
    monkeypatch.setattr(dpi, "train_classifier", lambda *a, **k: curves)
    x, y = _two_blobs(60)
    syn = ImageDataset(x, y, INFO, split="synthetic")
    test = ImageDataset(*_two_blobs(20), INFO, split="test")
    val = ImageDataset(*_two_blobs(10), INFO, split="val")
    honest, theirs = dpi.accuracy_results(syn, test, val, ["synthetic-val", "sensitive-val"], TINY)
    assert honest.name == "acc-dpi-synthetic-val" and theirs.name == "acc-dpi-sensitive-val"
    assert honest.value == pytest.approx(0.6) and theirs.value == pytest.approx(0.75)
    assert {p["epoch"] for p in honest.details["per_classifier"].values()} == {0}
    assert {p["epoch"] for p in theirs.details["per_classifier"].values()} == {2}
    assert theirs.details["not_private"] is True and "not_private" not in honest.details


def test_sensitive_selection_is_missing_without_a_validation_split(monkeypatch):
    monkeypatch.setattr(dpi, "train_classifier", lambda *a, **k: {"synthetic-val": [0.5], "test": [0.5]})
    syn = ImageDataset(*_two_blobs(60), INFO, split="synthetic")
    (res,) = dpi.accuracy_results(syn, ImageDataset(*_two_blobs(20), INFO), None, ["sensitive-val"], TINY)
    assert res.value is None and "split: official" in res.missing_reason


def test_tiny_classifiers_train_and_report_the_mean_of_three_at_the_selected_epochs():
    syn = ImageDataset(*_two_blobs(100), INFO, split="synthetic")
    test = ImageDataset(*_two_blobs(40), INFO, split="test")
    (res,) = dpi.accuracy_results(syn, test, None, ["synthetic-val"], TINY)
    per = res.details["per_classifier"]
    assert len(per) == 3 and all(len(p["test_curve"]) == 2 for p in per.values())
    assert res.value == pytest.approx(sum(p["test_accuracy"] for p in per.values()) / 3)
    assert res.details["synthetic_train"] == 80 and res.details["synthetic_val"] == 20
    assert "not comparable" in res.details["notice"]


def test_synthetic_split_is_dpimagebenchs_seed_0_permutation():
    import numpy as np

    train, val = dpi.synthetic_split(100, 20)
    perm = np.random.default_rng(seed=0).permutation(100)
    assert (train == perm[:80]).all() and (val == perm[80:]).all()


@pytest.mark.parametrize("spec, params_millions", [(CIFAR_CLASSIFIERS[1], 36.5), (DEFAULT_CLASSIFIERS[0], 1.73)])
def test_protocol_classifiers_have_the_published_sizes(spec, params_millions):
    # WRN-28-10: 36.5M parameters (Zagoruyko & Komodakis); CIFAR ResNet-110: 1.7M (He et al.)
    model = spec.build(3, 32, 10)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_millions, rel=0.01)


def test_the_recipe_follows_the_dataset():
    assert dpi.recipe_for("cifar10", dpi.ProtocolOptions()) == dpi.CIFAR_RECIPE
    assert dpi.recipe_for("mnist", dpi.ProtocolOptions()).optimizer == "adam"
    assert [s.family for s in dpi.classifiers_for("celeba64", 64, dpi.ProtocolOptions())] == ["resnet", "wrn"]


# ----------------------------------------------------------------------------- a whole cell through the runner


def _read(root, download):
    x_train, y_train = _two_blobs(N_TRAIN)
    x_test, y_test = _two_blobs(N_TEST, offset=N_TRAIN)
    images = (torch.cat([x_train, x_test]) * 255).round().to(torch.uint8)
    return images, torch.cat([y_train, y_test]), torch.arange(N_TRAIN + N_TEST) >= N_TRAIN


@pytest.fixture
def tiny_official():
    source = TorchvisionSource("FakeMNIST", "fake", (), _read)
    register_dataset(DatasetSpec(info=INFO, size=N_TRAIN + N_TEST, family="tiny-protocol", source=source,
                                 official=OfficialSplit(train_size=60, val_size=20, test_size=40),
                                 description="tiny"), origin="test")
    yield INFO.name
    DATASETS.unregister(INFO.name)


def test_a_cell_under_the_protocol_never_shows_val_to_the_method_and_flags_its_rows(tiny_official, tmp_path, monkeypatch):
    from dpgen_bench.runner.config import parse_config, resolve_methods
    from dpgen_bench.runner.execute import _splits, run_cell
    from dpgen_bench.runner.grid import build_cells

    seen: list[set[int]] = []
    original = runner_toy.ToyMeans.fit

    def spy(self, train, budget, ledger):
        seen.append(set(torch.round(train.images[:, 0, 0, 0] * 255).long().tolist()))
        seen.append({"n_hat": train.public_size(), "delta": budget.delta})
        return original(self, train, budget, ledger)

    monkeypatch.setattr(runner_toy.ToyMeans, "fit", spy)
    config = parse_config({
        "dataset": tiny_official, "split": "official", "data_dir": str(tmp_path), "epsilons": [10],
        "delta": "1/(n ln n)", "methods": [{"name": "toy-means"}], "output_dir": str(tmp_path / "out"),
        "evaluation": {"metrics": ["accuracy"], "n_samples": 100, "protocol": "dpimagebench",
                       "selection": ["synthetic-val", "sensitive-val"], "dpimagebench": {
                           "synthetic_val_size": 20, "classifiers": "tiny", "epochs": 1, "batch_size": 32}}})
    (cell,) = build_cells(config, resolve_methods(config))
    _splits.cache_clear()
    record = run_cell(cell, tmp_path / "out")
    _splits.cache_clear()
    assert record["status"] == "ok", record["error"]
    rows_seen, facts = seen
    val_rows = set(range(N_TRAIN)) - rows_seen
    assert len(rows_seen) == 60 and len(val_rows) == 20 and not rows_seen & set(range(N_TRAIN, N_TRAIN + N_TEST))
    assert facts == {"n_hat": 60, "delta": pytest.approx(1 / (60 * math.log(60)))}
    rows = {r["metric"]: r for r in record["rows"]}
    assert set(rows) == {"acc-dpi-synthetic-val", "acc-dpi-sensitive-val"}
    assert all(r["split"] == "official" for r in rows.values())
    assert json.loads(rows["acc-dpi-sensitive-val"]["metric_details"])["not_private"] is True
    assert {r["n_real"] for r in rows.values()} == {N_TEST}  # a private cell records the declared test size
