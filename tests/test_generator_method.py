"""The contracts of the shared generator bases (methods/generator_method.py)."""

from __future__ import annotations

import pytest
import torch

from dpgen_bench.data.types import DatasetInfo
from dpgen_bench.method import MethodConfig
from dpgen_bench_methods.generator_method import GeneratorConfig, ReleaseOnceConfig, ReleaseOnceMethod

INFO = DatasetInfo("grey8", 1, 8, 8, 2)


def test_a_release_once_method_whose_config_lacks_the_shared_fields_is_refused_when_defined():
    with pytest.raises(TypeError, match="Config must derive from ReleaseOnceConfig, got GeneratorConfig"):
        class _Wrong(ReleaseOnceMethod):  # noqa: F841
            Config = GeneratorConfig
    with pytest.raises(TypeError, match="Config must derive from ReleaseOnceConfig, got MethodConfig"):
        class _Plain(ReleaseOnceMethod):  # noqa: F841
            Config = MethodConfig


def test_a_release_once_method_must_implement_the_three_hooks():
    class _Incomplete(ReleaseOnceMethod):
        Config = ReleaseOnceConfig

        @classmethod
        def num_moments(cls, config) -> int:
            return 1

    with pytest.raises(TypeError, match="abstract methods .*embed.*train_generator"):
        _Incomplete({}, INFO)


def test_a_complete_release_once_method_inherits_fit_sampling_and_the_release():
    class _Pixels(ReleaseOnceMethod):
        Config = ReleaseOnceConfig

        @classmethod
        def num_moments(cls, config) -> int:
            return 1

        def embed(self, images):
            flat = images.flatten(1)
            return {"pixels": flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)}

        def train_generator(self, released, steps=None):
            self.trained_on = released

    method = _Pixels({"generator": "conv"}, INFO)
    assert method.sum_norm == 1.0 and method.samples_labelled is True
    images, labels = method.sample(4, seed=0)
    assert images.shape == (4, 1, 8, 8) and torch.bincount(labels).tolist() == [2, 2]
