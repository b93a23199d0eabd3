"""Frozen feature extractors shared by methods (DP-MEPF) and metrics (FD-<extractor>).

An extractor maps images in [0, 1] (NCHW, 1 or 3 channels) to flat feature vectors (N, D). It owns its
input handling (grey→RGB, resizing if any, the normalisation its network was trained with), is frozen
(eval mode, ``requires_grad=False`` on weights) and stays differentiable with respect to its *input*, so a
generator can be trained through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ..named_registry import Registry, UnknownNameError, origin_of


class FeatureExtractor(nn.Module):
    """Base class: subclasses set ``name`` and implement :meth:`features` (input already in [0, 1])."""

    name: str = ""

    def freeze(self) -> "FeatureExtractor":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # Always eval: batch-norm statistics of a pre-trained network must never move.
        return super().train(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] → (N, D) features; differentiable w.r.t. ``x``."""
        return self.features(x)

    @torch.no_grad()
    def extract(
        self,
        images: torch.Tensor,
        batch_size: int = 256,
        progress: bool | str = False,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """Batched no-grad extraction of a whole tensor; returns float32 (N, D) on CPU."""
        device = torch.device(device) if device is not None else next(self.parameters(), torch.empty(0)).device
        out = []
        desc = progress if isinstance(progress, str) else f"features[{self.name}]"
        for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            out.append(self(batch).float().cpu())
        return torch.cat(out) if out else torch.empty(0, 0)


E = TypeVar("E", bound=Callable[..., FeatureExtractor])


class PrivateExtractorError(ValueError):
    """A training feature extractor that was itself trained on the private data's family of data."""


class UnknownExtractorError(UnknownNameError):
    """A feature extractor name that is not registered; the message lists the valid names (KeyError and ValueError)."""


@dataclass(frozen=True)
class ExtractorEntry:
    """A registered extractor: how to build it and what its weights were fitted on."""

    factory: Callable[..., FeatureExtractor]
    """``(**options) -> FeatureExtractor`` (:func:`get_extractor` freezes it and moves it to the device)."""
    trained_on: tuple[str, ...]
    """Data families (:attr:`dpgen_bench.data.DatasetSpec.family`) the weights were fitted on; ``()`` for
    random weights."""


EXTRACTORS: Registry[ExtractorEntry] = Registry("feature extractor", error=UnknownExtractorError)
"""Every registered feature extractor, by name. Add with :func:`register_extractor`; ``EXTRACTORS.unregister``."""


def register_extractor(name: str, trained_on: tuple[str, ...]) -> Callable[[E], E]:
    """Decorator: register a factory ``(**options) -> FeatureExtractor`` under ``name``.

    ``trained_on``: the data families (:attr:`dpgen_bench.data.DatasetSpec.family`, e.g. ``("imagenet",)``,
    ``("mnist",)``; ``()`` for random weights) its weights were fitted on. A method may train against the
    extractor only on datasets of other families (:func:`check_public_extractor`). A name taken twice raises
    :class:`~dpgen_bench.named_registry.DuplicateNameError` naming both factories.
    """
    if isinstance(trained_on, str):  # tuple("mnist") would silently become ("m", "n", "i", "s", "t")
        raise TypeError(f"trained_on must be a tuple of family names, e.g. ({trained_on!r},), got the string {trained_on!r}")
    families = tuple(trained_on)
    if not all(isinstance(f, str) and f for f in families):
        raise TypeError(f"trained_on must hold non-empty family names (strings), got {trained_on!r}")

    def wrap(factory: E) -> E:
        EXTRACTORS.register(name, ExtractorEntry(factory, families), origin=origin_of(factory))
        return factory

    return wrap


def list_extractors() -> list[str]:
    """Registered extractor names, sorted."""
    return sorted(EXTRACTORS)


WEIGHTS_OPTIONS = ("weights", "weights_path")
"""Extractor options that name the weights to load: ``None`` (random), ``"imagenet"`` (the registered weights)
or a local file, whose training data the registry cannot know."""
WEIGHTS_TRAINED_ON = "weights_trained_on"
"""The option declaring what a local weights file was trained on (data families, ``[]`` for none); consumed by
:func:`get_extractor`, never passed to the factory."""


class UndeclaredWeightsError(PrivateExtractorError):
    """A local weights file given to a training extractor without ``weights_trained_on``."""


def extractor_trained_on(name: str, options: dict | None = None) -> tuple[str, ...]:
    """The data families the named extractor's weights were trained on, with these ``options``: the
    registered families, ``()`` for ``weights=None`` (random), and for a local weights file the families its
    ``weights_trained_on`` option declares (:class:`UndeclaredWeightsError` if it declares none)."""
    entry = EXTRACTORS.get(name)
    options = dict(options or {})
    for key in WEIGHTS_OPTIONS:
        if key not in options:
            continue
        weights = options[key]
        if weights is None:
            return ()
        if weights == "imagenet":
            return entry.trained_on
        declared = options.get(WEIGHTS_TRAINED_ON)
        if declared is None:
            raise UndeclaredWeightsError(
                f"feature extractor {name!r} loads the local weights {weights!r}, whose training data nobody "
                f"declared: add extractor_options.{WEIGHTS_TRAINED_ON}: [families] (e.g. [imagenet]; [] for none) "
                f"saying what they were trained on")
        if isinstance(declared, str):
            declared = (declared,)
        return tuple(declared)
    return entry.trained_on


def check_public_extractor(name: str, dataset: str, options: dict | None = None) -> None:
    """Raise :class:`PrivateExtractorError` if extractor ``name`` (with ``options``: local weights must declare
    ``weights_trained_on``) was trained on ``dataset``'s family.

    Such an extractor is not public data with respect to that dataset (it may even have seen the very
    examples), so a method may not train against it there; metrics may still use it."""
    from ..data.registry import dataset_spec

    family = dataset_spec(dataset).family
    if family in extractor_trained_on(name, options):
        raise PrivateExtractorError(
            f"feature extractor {name!r} was trained on {family!r} data, the family of the private dataset "
            f"{dataset!r}, so it is not public for it; train against an extractor fitted on other data "
            f"(e.g. efficientnet-lite0, ImageNet) — metrics may still use {name!r}"
        )


def get_extractor(name: str, device: str | torch.device = "cpu", **options) -> FeatureExtractor:
    """Build the named extractor, frozen, on ``device``. Options are extractor-specific.

    :class:`UnknownExtractorError` (a KeyError) lists the registered names; TypeError if the factory does
    not return a :class:`FeatureExtractor` (the frozen, input-differentiable contract of this module)."""
    options.pop(WEIGHTS_TRAINED_ON, None)  # a declaration for the checks, not an option of the network
    extractor = EXTRACTORS.get(name).factory(**options)
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(f"feature extractor {name!r}: its factory returned {type(extractor).__name__}, "
                        f"expected a FeatureExtractor")
    return extractor.freeze().to(device)
