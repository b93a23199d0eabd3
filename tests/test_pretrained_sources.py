"""Pre-trained parts a method trains with must say what they were trained on, and never the private data's
family: local extractor weights (``weights_trained_on``) and PE generation APIs (``trained_on``)."""

from __future__ import annotations

import pytest

from dpgen_bench.features import check_public_extractor
from dpgen_bench.features.base import PrivateExtractorError, UndeclaredWeightsError
from dpgen_bench.runner.config import ConfigFileError, parse_config, resolve_methods
from dpgen_bench_methods.pe_api import GenerationAPI, register_pe_api


def test_local_extractor_weights_must_declare_their_training_data():
    with pytest.raises(UndeclaredWeightsError, match="weights_trained_on"):
        check_public_extractor("efficientnet-lite0", "mnist-5k", {"weights": "/some/file.pth"})
    with pytest.raises(PrivateExtractorError, match="'mnist'"):
        check_public_extractor("efficientnet-lite0", "mnist-5k", {"weights": "/f.pth", "weights_trained_on": ["mnist"]})
    check_public_extractor("efficientnet-lite0", "mnist-5k", {"weights": "/f.pth", "weights_trained_on": ["imagenet"]})
    check_public_extractor("efficientnet-lite0", "mnist-5k", {"weights": None})  # random weights
    with pytest.raises(PrivateExtractorError):  # digitcnn's own weights are MNIST's; a path changes nothing undeclared
        check_public_extractor("digitcnn", "mnist-5k", {"weights_path": "/x.pt"})


def _config(entry: dict) -> dict:
    return {"dataset": "mnist-5k", "epsilons": [1], "evaluation": {"metrics": ["accuracy"]}, "methods": [entry]}


def test_the_runner_refuses_undeclared_local_weights_for_a_training_extractor():
    entry = {"name": "dp-mepf", "config": {"extractor": "efficientnet-lite0",
                                           "extractor_options": {"weights": "/trained/on/what.pth"}}}
    with pytest.raises(ConfigFileError, match=r"methods\[0\].*weights_trained_on"):
        resolve_methods(parse_config(_config(entry)))


@pytest.mark.parametrize("options, problem", [
    ({"model": "some/model"}, "declare what model"),
    ({"model": "google/ddpm-mnist", "trained_on": ["mnist"]}, "trained on 'mnist' data"),
])
def test_a_pe_diffusion_model_must_declare_its_data_and_not_be_the_private_family(options, problem):
    entry = {"name": "pe", "config": {"api": {"name": "diffusers", "options": options}, "labelled": False}}
    with pytest.raises(ConfigFileError, match=problem):
        resolve_methods(parse_config(_config(entry)))


def test_a_pe_diffusion_model_trained_on_other_data_is_accepted():
    entry = {"name": "pe", "config": {"api": {"name": "diffusers", "options": {"model": "m", "trained_on": ["imagenet"]}},
                                      "labelled": False}}
    resolve_methods(parse_config(_config(entry)))


def test_a_pe_api_that_declares_nothing_cannot_register():
    class Undeclared(GenerationAPI):
        def random(self, labels, generator): ...
        def variation(self, population, strength, generator): ...

    with pytest.raises(TypeError, match="must declare what its model was trained on"):
        register_pe_api("test-undeclared-api")(Undeclared)
