"""The GenerativeMethod contract: typed configs, capability checks, save/load round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from pydantic import Field

from dpgen_bench.data import DatasetInfo, ImageDataset
from dpgen_bench.method import Capabilities, ConfigError, GenerativeMethod, MethodConfig, build_config
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger


class MeanConfig(MethodConfig):
    steps: int = Field(10, ge=1, description="training steps")
    lr: float = Field(1e-3, gt=0)


class MeanImage(GenerativeMethod):
    """Non-private test double: stores the mean image (only ever run at ε = ∞ here)."""

    name = "mean-image-test"
    Config = MeanConfig
    capabilities = Capabilities(labelled=False, unlabelled=True, channels=(1,), image_sizes=(28,))

    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        assert not budget.is_private
        self.mean = train.images.mean(0)

    def generate(self, n, labels, generator):
        return self.mean.expand(n, *self.mean.shape).clone()

    def checkpoint_state(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"]


def test_a_method_that_trains_either_way_must_say_whether_its_sample_labels_mean_anything():
    with pytest.raises(TypeError, match="override the `samples_labelled` property"):
        class Either(MeanImage):  # noqa: F841
            capabilities = Capabilities(labelled=True, unlabelled=True)

    class Declared(MeanImage):
        capabilities = Capabilities(labelled=True, unlabelled=True)

        @property
        def samples_labelled(self) -> bool:
            return False

    assert Declared.samples_labelled.fget(None) is False  # type: ignore[union-attr]


def test_config_defaults_apply_when_nothing_is_given(tiny_dataset):
    m = MeanImage(None, tiny_dataset.info)
    assert (m.config.steps, m.config.lr) == (10, 1e-3)


def test_unknown_config_key_is_an_error_naming_it_and_the_valid_keys(tiny_dataset):
    with pytest.raises(ConfigError) as err:
        MeanImage({"step": 5}, tiny_dataset.info)
    msg = str(err.value)
    assert "'step'" in msg and "'steps'" in msg and "'lr'" in msg


def test_invalid_config_value_is_an_error_naming_the_key_and_value():
    with pytest.raises(ConfigError, match=r"steps.*got 0"):
        build_config(MeanConfig, {"steps": 0})
    with pytest.raises(ConfigError, match=r"lr.*'fast'"):
        build_config(MeanConfig, {"lr": "fast"})


def test_assigning_an_invalid_value_after_construction_is_refused():
    cfg = build_config(MeanConfig, {})
    with pytest.raises(ValueError):
        cfg.steps = -1


def test_capabilities_refuse_unsupported_channels_and_sizes_naming_the_dataset():
    rgb = DatasetInfo("rgb32", channels=3, height=32, width=32, num_classes=10)
    with pytest.raises(ValueError, match=r"'rgb32' has 3 channel\(s\); supported: \[1\]"):
        MeanImage(None, rgb)
    small = DatasetInfo("digits", channels=1, height=8, width=8, num_classes=10)
    with pytest.raises(ValueError, match=r"8x8.*\[28\]"):
        MeanImage(None, small)


def test_balanced_labels_counts_differ_by_at_most_one(tiny_dataset):
    labels = MeanImage(None, tiny_dataset.info).balanced_labels(103, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels, minlength=10)
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 103


def test_save_then_load_samples_identically_without_the_data(tiny_dataset, tmp_path):
    m = MeanImage({"steps": 3}, tiny_dataset.info, seed=4)
    m.fit(tiny_dataset, PrivacyBudget(float("inf"), 1e-5), PrivacyLedger())
    m.save(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "method.json").read_text())
    assert meta["method"] == "mean-image-test" and meta["config"]["steps"] == 3 and meta["seed"] == 4
    back = MeanImage.load(tmp_path / "ckpt")
    assert back.config.steps == 3 and back.info == tiny_dataset.info
    a, la = m.sample(12, seed=1)
    b, lb = back.sample(12, seed=1)
    assert torch.equal(a, b) and torch.equal(la, lb)


def test_load_refuses_a_checkpoint_of_another_method(tiny_dataset, tmp_path):
    class Other(MeanImage):
        name = "other-test"

    m = MeanImage(None, tiny_dataset.info)
    m.mean = torch.zeros(1, 28, 28)
    m.save(tmp_path)
    with pytest.raises(ValueError, match="'mean-image-test', not 'other-test'"):
        Other.load(tmp_path)


class _Opaque:
    pass


def test_load_uses_weights_only_and_refuses_pickled_objects(tiny_dataset, tmp_path):
    m = MeanImage(None, tiny_dataset.info)
    m.mean = torch.zeros(1, 28, 28)
    m.save(tmp_path)
    torch.save({"mean": _Opaque()}, tmp_path / "state.pt")  # a checkpoint smuggling an arbitrary object
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        MeanImage.load(tmp_path)
