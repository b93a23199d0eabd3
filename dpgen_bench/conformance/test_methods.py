"""The conformance suite as pytest tests, one per (check, registered method).

``python -m pytest --pyargs dpgen_bench.conformance`` runs it over every method ``list_methods()`` returns
(installed plugins included); add ``-k NAME`` for one method. Methods registered in-process are included when
the module that registers them is imported first (e.g. from a ``conftest.py``).
"""

from __future__ import annotations

import pytest

from dpgen_bench.conformance import checks
from dpgen_bench.registry import get_method, list_methods


def _methods() -> list[str]:
    return list_methods()


@pytest.fixture(params=_methods())
def method(request: pytest.FixtureRequest):
    return get_method(request.param)


def test_method_declares_its_privacy_contract(method) -> None:
    checks.check_declarations(method)


def test_ledger_stays_within_target_for_every_supported_accountant(method) -> None:
    assert checks.check_accountants(method), f"{method.name} supports no accountant"


def test_release_noise_is_fresh_for_the_same_public_seed(method) -> None:
    checks.check_fresh_release_noise(method)


def test_neighbouring_datasets_give_the_same_ledger_and_public_randomness(method) -> None:
    checks.check_public_stream(method)


def test_dp_sgd_gradient_rows_are_independent_of_other_examples(method) -> None:
    if not checks.check_neighbouring_independence(method):
        pytest.skip(f"{method.name} does not train with DP-SGD (no gradient probe)")


def test_noise_drawn_matches_the_ledger_and_not_the_private_data(method) -> None:
    unchecked = checks.check_noise_draws(method)
    if unchecked is not None:
        pytest.skip(f"UNCHECKED: {unchecked}")
