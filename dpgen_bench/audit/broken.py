"""Deliberately broken variants of methods: the audit's power checks (``docs/audit.md``).

Each variant is what a real bug looks like — the ledger still records the calibrated mechanism while the code
releases more — and an audit is only credible if it flags them (lower bound above the claimed ε). The core
never names a concrete method: the generic variants go through the library's two seams, and a bug that only
one method can have is declared by that method (:meth:`~dpgen_bench.method.GenerativeMethod.broken_variants`).

Generic (:data:`VARIANTS`), for any method whose releases use the seams:

* ``tenth-noise``: every Gaussian release draws a tenth of its noise — :func:`~dpgen_bench.privacy.noise.gaussian_noise`
  through :func:`~dpgen_bench.privacy.noise.noise_sampler`, and Opacus's gradient noise through the DP-SGD
  factory's :func:`~dpgen_bench.privacy.dpsgd.optimizer_transform` (the optimiser's σ divided by 10).
* ``unclipped``: DP-SGD sums the per-example gradients without clipping them to C (the noise is still σ·C),
  through the same factory seam.

A generic variant applies where its ``applies`` rule holds (``unclipped``: ``capabilities.dp_sgd``) unless the
method excludes it with a reason (:attr:`~dpgen_bench.method.GenerativeMethod.excluded_variants`, e.g. DP-Kernel,
whose summed rows have norm √L by construction and which never goes through the DP-SGD factory).

Declared by a method, e.g. ``batch-coupled`` (DP-GANs: a BatchNorm generator) and ``per-row-clip`` (DPDM: each of
an example's K noise-draw rows clipped separately). A variant is never a registered method: :func:`broken_class`
builds it inside an audit only.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import TYPE_CHECKING, ContextManager, Iterator

from dpgen_bench.method import BrokenVariant  # noqa: F401  (defined with the method interface; re-exported here)
from dpgen_bench.named_registry import Registry, UnknownNameError
from dpgen_bench.privacy.dpsgd import optimizer_transform
from dpgen_bench.privacy.noise import draw_gaussian, noise_sampler

if TYPE_CHECKING:
    from opacus.optimizers import DPOptimizer


VARIANTS: Registry[BrokenVariant] = Registry("broken variant")
"""The generic variants (through the seams); a method's own are on its ``broken_variants()``."""


def declared_variants(method_cls: type) -> dict[str, BrokenVariant]:
    """The variants ``method_cls`` declares for itself (:meth:`GenerativeMethod.broken_variants`), by name."""
    return {v.name: v for v in method_cls.broken_variants()}


def excluded_variants(method_cls: type) -> dict[str, str]:
    """The generic variants ``method_cls`` declares impossible for it, with the reasons
    (:attr:`GenerativeMethod.excluded_variants <dpgen_bench.method.GenerativeMethod.excluded_variants>`)."""
    return dict(getattr(method_cls, "excluded_variants", None) or {})


def _generic_applies(variant: BrokenVariant, method_cls: type) -> bool:
    return variant.applies(method_cls) and variant.name not in excluded_variants(method_cls)


def variants_for(method_cls: type) -> dict[str, BrokenVariant]:
    """Every variant that applies to ``method_cls``, by name: the generic ones whose ``applies`` holds and that
    the method does not exclude, then its own (which take precedence on a shared name)."""
    found = {name: v for name, v in VARIANTS.items() if _generic_applies(v, method_cls)}
    return {**found, **declared_variants(method_cls)}


def _not_applicable(variant: BrokenVariant, method_cls: type) -> ValueError:
    reason = excluded_variants(method_cls).get(variant.name)
    return ValueError(f"broken variant {variant.name!r} does not apply to {method_cls.__name__}"
                      + (f": {reason}" if reason else ""))


def known_variant_names(method_classes: list[type]) -> list[str]:
    """The generic variants' names and those ``method_classes`` declare, sorted."""
    names = set(VARIANTS.names())
    for cls in method_classes:
        names |= set(declared_variants(cls))
    return sorted(names)


def check_variant_name(name: str, method_classes: list[type]) -> None:
    """Raise :class:`UnknownNameError` naming the valid variants if ``name`` is neither generic nor declared by
    one of ``method_classes``."""
    valid = known_variant_names(method_classes)
    if name not in valid:
        raise UnknownNameError(f"unknown broken variant {name!r}; valid: {', '.join(valid)}")


def broken_class(method_cls: type, variant: BrokenVariant | str) -> type:
    """``method_cls`` with ``variant``'s bug; its name is ``"<Class>[<variant>]"``. A name is looked up among
    the variants ``method_cls`` declares, then the generic ones."""
    if isinstance(variant, str):
        declared = declared_variants(method_cls)
        if variant in declared:
            variant = declared[variant]
        elif variant in VARIANTS:
            variant = VARIANTS.get(variant)
            if not _generic_applies(variant, method_cls):
                raise _not_applicable(variant, method_cls)
        else:
            raise ValueError(f"broken variant {variant!r} does not apply to {method_cls.__name__}; its variants: "
                             f"{', '.join(sorted(variants_for(method_cls))) or 'none'}")
    elif variant.name not in declared_variants(method_cls) and not _generic_applies(variant, method_cls):
        raise _not_applicable(variant, method_cls)
    base = variant.transform(method_cls) if variant.transform else method_cls

    def broken(name: str):
        real = getattr(base, name)

        @functools.wraps(real)  # keeps the signature: the audit reads audit_release's `ledger` parameter
        def method(self, *args, **kwargs):
            with variant.patches():
                return real(self, *args, **kwargs)

        return method

    namespace = {name: broken(name) for name in ("__init__", "fit", "audit_release", "audit_direction")
                 if getattr(base, name, None) is not None}
    Broken = type(f"{method_cls.__name__}[{variant.name}]", (base,), namespace)
    Broken.broken_variant = variant.name
    return Broken


# ------------------------------------------------------------------------------------------------ the bugs


def _is_dp_sgd(cls: type) -> bool:
    return bool(cls.capabilities.dp_sgd)


def _has_gaussian_release(cls: type) -> bool:
    return _is_dp_sgd(cls) or cls.audit_release is not None


def _tenth_sampler(shape, std, **kwargs):
    return draw_gaussian(shape, std / 10, **kwargs)


def _tenth_opacus_noise(optimizer: "DPOptimizer") -> None:
    optimizer.noise_multiplier = optimizer.noise_multiplier / 10


@contextlib.contextmanager
def _tenth_noise() -> Iterator[None]:
    with noise_sampler(_tenth_sampler), optimizer_transform(_tenth_opacus_noise):
        yield


def _skip_clipping(optimizer: "DPOptimizer") -> None:
    """Opacus's own ``clip_and_accumulate`` with C = ∞ (every clip factor 1); the noise still uses C."""
    clip = optimizer.clip_and_accumulate

    def clip_and_accumulate() -> None:
        bound = optimizer.max_grad_norm
        optimizer.max_grad_norm = math.inf
        try:
            clip()
        finally:
            optimizer.max_grad_norm = bound

    optimizer.clip_and_accumulate = clip_and_accumulate


def _unclipped() -> ContextManager:
    return optimizer_transform(_skip_clipping)


VARIANTS.register("tenth-noise", BrokenVariant(
    "tenth-noise", "every Gaussian release draws a tenth of its noise; the ledger records the calibrated σ",
    applies=_has_gaussian_release, patches=_tenth_noise))
VARIANTS.register("unclipped", BrokenVariant(
    "unclipped", "DP-SGD sums per-example gradients without clipping them to C; the noise is still σ·C",
    applies=_is_dp_sgd, patches=_unclipped))


__all__ = ["BrokenVariant", "VARIANTS", "broken_class", "check_variant_name", "declared_variants",
           "excluded_variants", "known_variant_names", "variants_for"]
