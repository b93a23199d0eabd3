"""The one registry pattern behind datasets, extractors, metrics, accountants and methods."""

from __future__ import annotations

import pytest

from dpgen_bench.named_registry import DuplicateNameError, Registry, UnknownNameError


class UnknownThingError(UnknownNameError):
    pass


def test_a_registered_entry_is_returned_by_name_and_listed_in_registration_order():
    reg: Registry[int] = Registry("thing")
    reg.register("b", 2, origin="here")
    reg.register("a", 1, origin="there")
    assert reg.get("a") == 1 and reg.names() == ["b", "a"] and "a" in reg and len(reg) == 2


def test_registering_a_name_twice_is_refused_naming_both_origins():
    reg: Registry[int] = Registry("thing")
    reg.register("x", 1, origin="package-one")
    with pytest.raises(DuplicateNameError, match=r"thing 'x' registered twice: by package-one and by package-two"):
        reg.register("x", 2, origin="package-two")
    assert reg.get("x") == 1  # the first registration is kept


def test_the_default_origin_is_the_entry_module_and_name():
    def factory():
        return None

    reg: Registry = Registry("thing")
    reg.register("f", factory)
    assert reg.origin("f") == f"{__name__}.test_the_default_origin_is_the_entry_module_and_name.<locals>.factory"


def test_an_unknown_name_raises_the_registry_error_listing_the_valid_names():
    reg: Registry[int] = Registry("thing", error=UnknownThingError)
    reg.register("beta", 1)
    reg.register("alpha", 2)
    with pytest.raises(UnknownThingError, match=r"unknown thing 'gamma'; available: alpha, beta") as err:
        reg.get("gamma")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_an_empty_or_non_string_name_is_refused():
    reg: Registry[int] = Registry("thing")
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="thing name must be a non-empty string"):
            reg.register(bad, 1)  # type: ignore[arg-type]


def test_unregister_frees_the_name():
    reg: Registry[int] = Registry("thing")
    reg.register("x", 1)
    reg.unregister("x")
    reg.register("x", 2)
    assert reg.get("x") == 2


def test_the_decorator_registers_and_returns_the_object():
    reg: Registry = Registry("thing")

    @reg.decorator("k")
    def k():
        return 5

    assert reg.get("k") is k and k() == 5
