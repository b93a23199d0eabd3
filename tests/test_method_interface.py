"""The GenerativeMethod base class: typed configs, capability messages, checkpoint loading safety.

What every method's sample/save/load must do (shapes, range, labels, determinism, round trip, refusals) is
checked generically, over every registered method, by the contract suite: dpgen_bench.conformance.contract
(run in tests/test_contract_conformance.py)."""

from __future__ import annotations

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
    with pytest.raises(TypeError, match="add a property `samples_labelled"):
        class Either(MeanImage):  # noqa: F841
            capabilities = Capabilities(labelled=True, unlabelled=True)

    class Declared(MeanImage):
        capabilities = Capabilities(labelled=True, unlabelled=True)

        @property
        def samples_labelled(self) -> bool:
            return self.config.steps > 5  # e.g. from its config

    info = DatasetInfo("grey", channels=1, height=28, width=28, num_classes=10)
    assert Declared({"steps": 3}, info).samples_labelled is False
    assert Declared({"steps": 8}, info).samples_labelled is True


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


def test_capabilities_refuse_non_square_images_naming_the_dataset_and_the_supported_sizes():
    wide = DatasetInfo("wide", channels=1, height=28, width=32, num_classes=10)
    with pytest.raises(ValueError, match=r"'wide' has images of 28x32; supported square sizes: \[28\]"):
        MeanImage(None, wide)


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
