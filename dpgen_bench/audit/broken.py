"""Deliberately broken variants of the built-in methods: the audit's power checks (``docs/audit.md``).

Each variant is what a real bug looks like — the ledger still records the calibrated mechanism while the code
releases more — and an audit is only credible if it flags them (lower bound above the claimed ε):

* ``tenth-noise``: every Gaussian release draws a tenth of its noise: the shared
  :func:`~dpgen_bench.privacy.noise.gaussian_noise` of the mean-embedding, DP-Kernel and Private Evolution
  releases, and
  Opacus's gradient noise in DP-SGD.
* ``unclipped``: DP-SGD sums the per-example gradients without clipping them to C (the noise is still σ·C).
* ``batch-coupled``: the first DP-CGAN: its generator normalises over the batch of D's fakes (BatchNorm),
  so one private example's presence moves the gradient of every pair, not only its own.
* ``original-accounting``: GS-WGAN with the authors' analysis (the B rows of an iteration counted as B
  independent releases, each subsampled at 1/N_D): σ calibrated to, and the ledger recording, those cheaper
  events (``docs/gs_wgan.md``).

A variant is never a registered method: :func:`broken_class` builds it inside an audit only.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator
from unittest import mock

from torch import nn

from dpgen_bench.named_registry import Registry


@dataclass(frozen=True)
class BrokenVariant:
    """``patches()``: a context in which the method's code is broken (entered around construction, ``fit``
    and ``audit_release``); ``transform(cls)``: a subclass with a broken part, or None; ``applies(cls)``:
    whether the bug can exist in that method at all (no DP-SGD, no clipping to skip)."""

    name: str
    description: str
    applies: Callable[[type], bool]
    patches: Callable[[], ContextManager] = contextlib.nullcontext
    transform: Callable[[type], type] | None = None


VARIANTS: Registry[BrokenVariant] = Registry("broken variant")


def broken_class(method_cls: type, variant: BrokenVariant | str) -> type:
    """``method_cls`` with ``variant``'s bug; its name is ``"<Class>[<variant>]"``."""
    variant = VARIANTS.get(variant) if isinstance(variant, str) else variant
    if not variant.applies(method_cls):
        raise ValueError(f"broken variant {variant.name!r} does not apply to {method_cls.__name__}")
    base = variant.transform(method_cls) if variant.transform else method_cls

    def broken(name: str):
        real = getattr(base, name)

        @functools.wraps(real)  # keeps the signature: the audit reads audit_release's `ledger` parameter
        def method(self, *args, **kwargs):
            with variant.patches():
                return real(self, *args, **kwargs)

        return method

    namespace = {name: broken(name) for name in ("__init__", "fit", "audit_release") if hasattr(base, name)}
    Broken = type(f"{method_cls.__name__}[{variant.name}]", (base,), namespace)
    Broken.broken_variant = variant.name
    return Broken


# ------------------------------------------------------------------------------------------------ the bugs


def _is_dp_sgd(cls: type) -> bool:
    return bool(getattr(getattr(cls, "capabilities", None), "dp_sgd", False))


def _has_gaussian_release(cls: type) -> bool:
    return _is_dp_sgd(cls) or callable(getattr(cls, "audit_release", None))


@contextlib.contextmanager
def _tenth_noise() -> Iterator[None]:
    import opacus.optimizers.optimizer as dp_optimizer

    import dpgen_bench_methods.dp_kernel as dp_kernel
    import dpgen_bench_baselines.gs_wgan as gs_wgan
    import dpgen_bench_methods.mean_embedding as mean_embedding
    import dpgen_bench_methods.private_evolution as private_evolution
    from dpgen_bench.privacy.noise import gaussian_noise

    real_opacus = dp_optimizer._generate_noise

    def tenth(shape, std, **kwargs):
        return gaussian_noise(shape, std / 10, **kwargs)

    def tenth_opacus(std, reference, *args, **kwargs):
        return real_opacus(std / 10, reference, *args, **kwargs)

    with mock.patch.object(mean_embedding, "gaussian_noise", tenth), \
            mock.patch.object(dp_kernel, "gaussian_noise", tenth), \
            mock.patch.object(private_evolution, "gaussian_noise", tenth), \
            mock.patch.object(gs_wgan, "gaussian_noise", tenth), \
            mock.patch.object(dp_optimizer, "_generate_noise", tenth_opacus):
        yield


@contextlib.contextmanager
def _unclipped() -> Iterator[None]:
    from opacus.optimizers import optimizer as dp_optimizer

    def sum_unclipped(self) -> None:
        for p in self.params:
            dp_optimizer._check_processed_flag(p.grad_sample)
            grad = self._get_flat_grad_sample(p).to(p.dtype).sum(0)
            p.summed_grad = grad if p.summed_grad is None else p.summed_grad + grad
            dp_optimizer._mark_as_processed(p.grad_sample)

    with mock.patch.object(dp_optimizer.DPOptimizer, "clip_and_accumulate", sum_unclipped):
        yield


def batchnorm_generator_class(generator_cls: type[nn.Module]) -> type[nn.Module]:
    """``generator_cls`` with its first normalisation replaced by BatchNorm (the first DP-CGAN's generator)."""

    class BatchNormGenerator(generator_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.net[0] = nn.BatchNorm2d(self.top)

    return BatchNormGenerator


def _batch_coupled(method_cls: type) -> type:
    from dpgen_bench_baselines.dcgan import Generator

    bn_generator = batchnorm_generator_class(Generator)

    class BatchNormGAN(method_cls):  # type: ignore[misc, valid-type]
        def build_generator(self):
            c = self.config
            return bn_generator(self.info.channels, self.info.height, self._num_classes, c.z_dim, c.g_width)

    return BatchNormGAN


@contextlib.contextmanager
def _allow_batch_statistics() -> Iterator[None]:
    import dpgen_bench_baselines.dp_gan as dp_gan

    with mock.patch.object(dp_gan, "validate_per_example", lambda module, role="generator": None):
        yield


def _is_dp_gan(cls: type) -> bool:
    from dpgen_bench_baselines.dp_gan import _BaseDPGAN

    return issubclass(cls, _BaseDPGAN)


def _is_gs_wgan(cls: type) -> bool:
    from dpgen_bench_baselines.gs_wgan import GSWGAN

    return issubclass(cls, GSWGAN)


def _original_accounting(method_cls: type) -> type:
    from dpgen_bench_baselines.gs_wgan import ORIGINAL_ACCOUNTING

    return type(f"{method_cls.__name__}OriginalAccounting", (method_cls,), {"accounting": ORIGINAL_ACCOUNTING})


VARIANTS.register("tenth-noise", BrokenVariant(
    "tenth-noise", "every Gaussian release draws a tenth of its noise; the ledger records the calibrated σ",
    applies=_has_gaussian_release, patches=_tenth_noise))
VARIANTS.register("unclipped", BrokenVariant(
    "unclipped", "DP-SGD sums per-example gradients without clipping them to C; the noise is still σ·C",
    applies=_is_dp_sgd, patches=_unclipped))
VARIANTS.register("batch-coupled", BrokenVariant(
    "batch-coupled", "the first DP-CGAN: BatchNorm in the generator couples every fake of D's batch",
    applies=_is_dp_gan, patches=_allow_batch_statistics, transform=_batch_coupled))
VARIANTS.register("original-accounting", BrokenVariant(
    "original-accounting", "GS-WGAN with the authors' analysis: the B rows of an iteration counted as independent "
    "releases subsampled at 1/N_D; σ calibrated to and the ledger recording those events",
    applies=_is_gs_wgan, transform=_original_accounting))
