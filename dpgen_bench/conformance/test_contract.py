"""The contract conformance suite as pytest tests, per registered method, dataset shape and budget.

``python -m pytest --pyargs dpgen_bench.conformance`` runs it (with the privacy suite, ``test_methods.py``) over
every method ``list_methods()`` returns, installed plugins included; ``-k NAME`` selects one method. Test ids
are ``NAME-SHAPE`` or ``NAME-SHAPE-eps10`` / ``NAME-SHAPE-epsinf``, SHAPE one of the shapes the method's
capabilities accept (``grey28``, ``rgb32``, ``grey8``). Each (method, shape, ε) is fitted once per session,
at the defaults plus ``conformance_config``.
"""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.conformance import contract
from dpgen_bench.registry import get_method, list_methods


def _shape_cases() -> list:
    return [pytest.param(name, shape, id=f"{name}-{shape}")
            for name in list_methods() for shape in contract.supported_shapes(get_method(name))]


def _fit_cases() -> list:
    return [pytest.param((name, shape, eps), id=f"{name}-{shape}-eps{eps:g}")
            for name in list_methods() for shape in contract.supported_shapes(get_method(name))
            for eps in contract.EPSILONS]


_FITS: dict[tuple[str, str, float], tuple] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The suite's models are tiny: one intra-op thread is fastest (and several oversubscribe a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=_fit_cases())
def fitted(request: pytest.FixtureRequest):
    """(instance, ledger, training data, ε) of a tiny fit, shared by every test of that (method, shape, ε)."""
    name, shape, eps = request.param
    key = (name, shape, eps)
    if key not in _FITS:
        _FITS[key] = contract.fit_tiny(get_method(name), shape, eps)
    instance, ledger, data = _FITS[key]
    return instance, ledger, data, eps


@pytest.mark.parametrize("name, shape", _shape_cases())
def test_constructs_with_the_defaults_and_conformance_config(name: str, shape: str) -> None:
    contract.check_construction(get_method(name), contract.contract_info(contract.shape_of(shape)))


def test_fit_records_releases_exactly_when_private(fitted) -> None:
    instance, ledger, _, eps = fitted
    contract.check_fit_ledger(instance, ledger, eps)


def test_samples_are_cpu_float32_in_unit_range_with_int64_labels(fitted) -> None:
    contract.check_samples(fitted[0])


def test_given_labels_are_returned_unchanged(fitted) -> None:
    instance = fitted[0]
    if not instance.samples_labelled:
        pytest.skip(f"{instance.name} samples unlabelled: it takes no labels (refusal: the bad-input test)")
    contract.check_given_labels(instance)


def test_equal_seeds_give_identical_samples_and_different_seeds_different_ones(fitted) -> None:
    contract.check_determinism(fitted[0])


def test_sample_zero_returns_empty_tensors(fitted) -> None:
    contract.check_empty_sample(fitted[0])


def test_bad_sample_input_is_refused_with_value_error(fitted) -> None:
    contract.check_bad_sample_input(fitted[0])


def test_save_load_round_trip_samples_identically_without_the_data(fitted, tmp_path) -> None:
    instance, _, data, eps = fitted
    contract.check_round_trip(instance, tmp_path, data=None if math.isinf(eps) else data)


@pytest.mark.parametrize("name", list_methods())
def test_unsupported_dataset_shapes_are_refused_naming_the_problem(name: str) -> None:
    method = get_method(name)
    if not contract.unsupported_shapes(method):
        pytest.skip(f"{name} accepts every channel count and size the suite tries")
    contract.check_refuses_unsupported(method)
