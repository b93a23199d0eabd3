"""The one factory of DP-SGD optimisers (Opacus's ``PrivacyEngine.make_private``), and its seam.

Every DP-SGD step in the library runs on an optimiser made by :func:`make_private`: per-example clipping to
``max_grad_norm`` = C, Gaussian noise of std σ·C from ``noise_generator``, Opacus's ``DPOptimizer``. A method
picks its per-example-gradient wrapper (``engine_cls``, ``grad_sample_mode``) but never builds the optimiser
another way, so one seam reaches every private step:

* :func:`optimizer_transform` — within the block, every optimiser :func:`make_private` returns is first passed
  to a function that may change it. The audits' broken variants (``docs/audit.md``) use it to scale Opacus's
  noise or to skip clipping, with the ledger unchanged; nothing in a method knows about it.

Opacus is imported on use: importing the privacy layer stays cheap.
"""

from __future__ import annotations

import contextlib
import warnings
from contextvars import ContextVar
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from .noise import release_generator

if TYPE_CHECKING:
    from opacus import PrivacyEngine
    from opacus.optimizers import DPOptimizer

OptimizerTransform = Callable[["DPOptimizer"], None]
"""Changes a freshly made ``DPOptimizer`` in place (e.g. its ``noise_multiplier``)."""

_TRANSFORMS: ContextVar[tuple[OptimizerTransform, ...]] = ContextVar("dpgen_bench_dpsgd_transforms", default=())


@contextlib.contextmanager
def optimizer_transform(transform: OptimizerTransform) -> Iterator[None]:
    """Within the block, every optimiser :func:`make_private` returns has gone through ``transform`` (after
    those of enclosing blocks). Local to the running thread or task (a context variable)."""
    token = _TRANSFORMS.set(_TRANSFORMS.get() + (transform,))
    try:
        yield
    finally:
        _TRANSFORMS.reset(token)


def active_transforms() -> tuple[OptimizerTransform, ...]:
    """The transforms :func:`make_private` applies here and now (those of the enclosing
    :func:`optimizer_transform` blocks, outermost first): what a cached private optimiser must match."""
    return _TRANSFORMS.get()


def make_private(module: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *,
                 noise_multiplier: float, max_grad_norm: float, grad_sample_mode: str = "hooks",
                 noise_generator: torch.Generator | None = None,
                 engine_cls: type[PrivacyEngine] | None = None) -> tuple[nn.Module, DPOptimizer, PrivacyEngine]:
    """Opacus's ``make_private`` with the settings every DP-SGD trainer here uses: ``loader`` is used as given
    (it must already draw Poisson batches), ``noise_multiplier`` σ ≥ 0 relative to ``max_grad_norm`` C > 0.

    ``noise_generator`` draws the gradient noise; None: a fresh :func:`release_generator` on the module's
    device (OS entropy, never a public run seed). ``engine_cls``: a ``PrivacyEngine`` subclass (e.g. one with
    its own per-example-gradient wrapper); default Opacus's. Returns (module, optimiser, engine); the
    optimiser has gone through the current :func:`optimizer_transform` blocks."""
    from opacus import PrivacyEngine

    if noise_generator is None:
        noise_generator = release_generator(next(module.parameters()).device)
    with warnings.catch_warnings():
        # "Secure RNG turned off": Opacus's secure_mode needs torchcsprng; the noise and batch sampling
        # here use OS-entropy-seeded generators instead (dpgen_bench.privacy.noise).
        warnings.filterwarnings("ignore", message="Secure RNG turned off", category=UserWarning)
        engine = (engine_cls or PrivacyEngine)(accountant="prv")
    module, dp_optimizer, _ = engine.make_private(
        module=module, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm, poisson_sampling=False, grad_sample_mode=grad_sample_mode,
        noise_generator=noise_generator,
    )
    for transform in _TRANSFORMS.get():
        transform(dp_optimizer)
    return module, dp_optimizer, engine


__all__ = ["OptimizerTransform", "active_transforms", "make_private", "optimizer_transform"]
