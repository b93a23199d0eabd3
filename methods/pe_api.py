"""The generation APIs Private Evolution calls: RANDOM_API and VARIATION_API (Lin et al., ICLR 2024).

An API is public: it never sees private data, only the population PE has selected with DP votes. It is a
class registered under a name (``register_pe_api``), built from a plain options dict in the PE config::

    api: {name: digit-simulator, options: {...}}

A population is a batch of generated images plus the API's own *state* per image (the simulator's rendering
parameters, or the image itself for a diffusion model), so a variation can start from the state rather than
from pixels. Write a new API as one file that subclasses :class:`GenerationAPI` and registers it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar

import torch

from dpgen_bench.data.types import DatasetInfo
from dpgen_bench.named_registry import Registry, UnknownNameError


class UnknownAPIError(UnknownNameError):
    """A PE API name that is not registered; the message lists the valid names."""


@dataclass(frozen=True)
class Population:
    """``images``: (N, C, H, W) float32 in [0, 1] on CPU. ``labels``: (N,) int64, the class each sample was
    generated for (-1 when unlabelled). ``state``: (N, ...) tensor, the API's description of each sample."""

    images: torch.Tensor
    labels: torch.Tensor
    state: torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.labels.shape != (n,) or self.state.shape[0] != n:
            raise ValueError(
                f"population of {n} images has labels of shape {tuple(self.labels.shape)} and state of shape "
                f"{tuple(self.state.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, index: torch.Tensor) -> "Population":
        """The samples at ``index`` (repeats allowed), in that order."""
        return Population(self.images[index], self.labels[index], self.state[index])

    @staticmethod
    def cat(parts: list["Population"]) -> "Population":
        return Population(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                          torch.cat([p.state for p in parts]))


class GenerationAPI(ABC):
    """RANDOM_API and VARIATION_API of one generator (public: it never receives private data).

    ``info``: the shape and classes of the images PE must produce. ``options``: API-specific settings from
    the config (validated by the API; unknown keys refused). All randomness comes from the ``generator``
    argument, so a fixed seed gives identical populations.
    """

    name: str = ""
    conditional: ClassVar[bool] = True
    """Whether :meth:`random` can produce a requested class (labelled PE needs it)."""
    channels: ClassVar[tuple[int, ...]] = (1, 3)
    """Image channel counts the API can produce."""
    image_sizes: ClassVar[tuple[int, ...] | None] = None
    """Square image sizes it can produce (None: any, by resizing)."""
    trained_on: ClassVar[tuple[str, ...] | None] = None
    """Data families (:attr:`dpgen_bench.data.DatasetSpec.family`) its model was trained on, ``()`` for none (a
    hand-written renderer); None: it depends on the options (override :meth:`trained_on_for`). The runner
    refuses an API trained on the private dataset's family, like a training feature extractor."""

    @classmethod
    def trained_on_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """What the API's model was trained on with ``options``; ValueError if it cannot say."""
        if cls.trained_on is None:
            raise ValueError(f"PE API {cls.name!r} does not declare what its model was trained on")
        return cls.trained_on

    @classmethod
    def describe_options(cls, options: dict[str, Any]) -> str:
        """Which model the options pick, for messages (default: the API has one)."""
        return "its built-in generator"

    def __init__(self, info: DatasetInfo, device: str | torch.device = "cpu", **options: Any) -> None:
        self.info = info
        self.device = torch.device(device)
        if options:
            raise ValueError(f"PE API {self.name!r} takes no option(s) {sorted(options)}")

    @abstractmethod
    def random(self, labels: torch.Tensor, generator: torch.Generator) -> Population:
        """RANDOM_API: one fresh sample per entry of ``labels`` ((N,) int64; all -1 when unlabelled)."""

    @abstractmethod
    def variation(self, population: Population, strength: float, generator: torch.Generator) -> Population:
        """VARIATION_API: one variation of every sample, keeping its label. ``strength`` in (0, 1]: 1 is as far
        as the API's variations go (close to a fresh sample), small values stay close to the original."""

    def describe(self) -> str:
        """One line for logs and results (the generator and its weights)."""
        return self.name


A = TypeVar("A", bound=type[GenerationAPI])
PE_APIS: Registry[type[GenerationAPI]] = Registry("PE API", error=UnknownAPIError)


def register_pe_api(name: str) -> Callable[[A], A]:
    """Class decorator: register a :class:`GenerationAPI` subclass as ``name`` (duplicates refused)."""

    def wrap(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, GenerationAPI)):
            raise TypeError(f"{cls!r} is not a GenerationAPI subclass")
        if cls.trained_on is None and cls.trained_on_for.__func__ is GenerationAPI.trained_on_for.__func__:
            raise TypeError(f"PE API {name!r} ({cls.__qualname__}) must declare what its model was trained on: set "
                            f"trained_on = (families...) (() for none) or override trained_on_for(options)")
        cls.name = name
        return PE_APIS.register(name, cls)

    return wrap


def list_pe_apis() -> list[str]:
    """Registered API names (the built-in ones register when ``methods.private_evolution`` is imported)."""
    return PE_APIS.names()


def get_pe_api(name: str) -> type[GenerationAPI]:
    """The API class registered as ``name`` (:class:`UnknownAPIError` lists the valid names)."""
    return PE_APIS.get(name)


def build_pe_api(name: str, info: DatasetInfo, device: str | torch.device = "cpu", **options: Any) -> GenerationAPI:
    """The API registered as ``name``, built for images like ``info``."""
    return get_pe_api(name)(info, device=device, **options)

