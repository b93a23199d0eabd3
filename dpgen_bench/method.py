"""The generator interface every method implements (built-in or plugin).

Life of a method in the runner::

    method = MethodClass(config, info, seed=0, context=RunContext(device="cpu"))
    method.fit(train, budget, ledger)        # private data touched only here
    images, labels = method.sample(n)        # images in [0, 1], NCHW float
    method.save(dir);  MethodClass.load(dir) # sampling needs no private data

A subclass implements :meth:`GenerativeMethod.fit`, :meth:`GenerativeMethod.generate` (``sample`` checks the
inputs once for every method and calls it), and the two checkpoint hooks.

**Interface versions** (:data:`INTERFACE_VERSION`). 1: a method overrode ``sample(n, labels=None, seed=None)``
and returned (images, labels); ``samples_labelled`` did not exist. 2 (now): a method implements ``generate(n,
labels, generator)`` and returns the images only; a method whose capabilities allow both labelled and
unlabelled training overrides ``samples_labelled``. A version-1 class that overrides ``sample`` but not
``generate`` is adapted when it is defined, with a one-line :class:`FutureWarning` naming its module and what
to change (supported for one more minor version); a missing ``samples_labelled`` cannot be guessed, so such a
class is refused when it is defined (before any training), naming its module and the property to add.
"""

from __future__ import annotations

import contextlib
import json
import operator
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager, Mapping, Protocol

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from .context import RunContext
from .data.types import DatasetInfo, ImageDataset
from .files import atomic_path, write_atomic
from .privacy.budget import PrivacyBudget
from .privacy.ledger import PrivacyLedger

INTERFACE_VERSION = 2
"""The version of the method interface this library implements (see the module docstring)."""


class PluginInterfaceError(TypeError):
    """A method class written against an interface version this library no longer accepts; the message names
    its module and exactly what to change."""


class MethodConfig(BaseModel):
    """Base class of method configs: typed, validated, defaults for everything, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    def key_dump(self) -> dict[str, Any]:
        """The resolved config as it enters a job's key: every field, except a field declared key-neutral
        (``Field(..., json_schema_extra={"key_neutral": True})``) while it holds its default. A new field whose
        default keeps the old behaviour is declared so, and every committed cell keeps its key; any other value
        of it is in the key as usual."""
        data = self.model_dump(mode="json")
        for name, field in type(self).model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("key_neutral") and getattr(self, name) == field.get_default(call_default_factory=True):
                data.pop(name, None)
        return data


class ConfigError(ValueError):
    """A method config that does not validate; the message names the key(s) and the valid keys."""


def build_config(config_cls: type[MethodConfig], values: Mapping[str, Any] | MethodConfig | None) -> MethodConfig:
    """Validate ``values`` into ``config_cls``; unknown keys and bad values raise :class:`ConfigError`."""
    if isinstance(values, config_cls):
        return values
    values = dict(values or {})
    valid = sorted(config_cls.model_fields)
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} for {config_cls.__name__}; valid keys: {valid}"
        )
    try:
        return config_cls(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid config for {config_cls.__name__}: {problems}") from None


@dataclass(frozen=True)
class Capabilities:
    """What a method supports, so the runner can refuse a bad combination before training."""

    labelled: bool = True
    """Can generate class-conditional samples (``sample(n, labels)``)."""
    unlabelled: bool = True
    """Can train ignoring labels."""
    channels: tuple[int, ...] = (1, 3)
    image_sizes: tuple[int, ...] | None = None
    """Square sizes supported (H = W); None means any."""
    dp_sgd: bool = False
    """Trains with Poisson-subsampled DP-SGD steps. Such a method must provide a
    :meth:`GenerativeMethod.gradient_probe`, and accountants that cannot account subsampling (``gdp``) are
    refused before training."""
    public_data: bool = False
    """Can use a public dataset the benchmark provides (``public_data:`` of a method entry in the benchmark
    YAML, handed over as :attr:`RunContext.public_data <dpgen_bench.context.RunContext.public_data>`), e.g. to
    pre-train on it. The runner refuses ``public_data`` for a method that does not declare this; it never
    guesses from config field names."""

    def check(self, info: DatasetInfo) -> None:
        """Raise ValueError naming the mismatch if the method cannot handle ``info``."""
        if info.channels not in self.channels:
            raise ValueError(
                f"dataset {info.name!r} has {info.channels} channel(s); supported: {list(self.channels)}"
            )
        if self.image_sizes is not None and (
            info.height != info.width or info.height not in self.image_sizes
        ):
            raise ValueError(
                f"dataset {info.name!r} has images of {info.height}x{info.width}; "
                f"supported square sizes: {list(self.image_sizes)}"
            )

    def check_accountant(self, accountant: str) -> None:
        """Raise ValueError if ``accountant`` cannot account what this method releases."""
        from .privacy.accounting import get_accountant, subsampling_accountants

        if self.dp_sgd and not get_accountant(accountant).subsampling:
            raise ValueError(
                f"accountant {accountant!r} cannot account Poisson-subsampled DP-SGD steps, which this method "
                f"performs; use one of {', '.join(subsampling_accountants())}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BrokenVariant:
    """A deliberately broken copy of a method, for the audit's power checks (``dpgen_bench.audit.broken`` builds
    and runs them). ``patches()``: a context in which the method's code is broken (entered around construction,
    ``fit``, ``audit_release`` and ``audit_direction``); ``transform(cls)``: a subclass with a broken part, or
    None; ``applies(cls)``: whether the bug can exist in that method at all (no DP-SGD, no clipping to skip). A
    variant a method declares for itself (:meth:`GenerativeMethod.broken_variants`) applies to it (and its
    subclasses) by definition."""

    name: str
    description: str
    applies: Callable[[type], bool] = lambda cls: True
    patches: Callable[[], ContextManager] = contextlib.nullcontext
    transform: Callable[[type], type] | None = None


class GradientProbe(Protocol):
    """How a DP-SGD method lets the conformance suite see the rows its private optimiser clips.

    The sensitivity argument of DP-SGD holds only if row i (example i's gradient, before clipping) is a
    function of example i and its own public draws alone: removing or changing example j must leave every
    other row unchanged. The suite checks exactly that (``dpgen_bench.conformance``).
    """

    def draws(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """The per-example randomness of a batch of ``m`` examples, as a tensor with leading dimension m."""

    def rows(self, images: torch.Tensor, labels: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """(m, P) per-example gradients of one private step on this batch, exactly as the optimiser would
        clip them (the training code path, not a re-implementation)."""


class GenerativeMethod(ABC):
    """Base class for a DP image generator.

    Subclasses set ``name``, ``Config`` (a :class:`MethodConfig` subclass) and ``capabilities``, and
    implement :meth:`fit`, :meth:`generate`, :meth:`checkpoint_state` and :meth:`load_checkpoint_state`.
    ``self.context`` (a :class:`~dpgen_bench.context.RunContext`) says where to run and whether to show
    progress; ``self.device`` is its device.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    capabilities: ClassVar[Capabilities] = Capabilities()
    conformance_config: ClassVar[dict[str, Any]] = {}
    """Config overrides that make :meth:`fit` take seconds on a tiny dataset, for the conformance suite."""
    tuned_on: ClassVar[str] = "undeclared"
    """What the defaults of :attr:`Config` were chosen on: ``"paper"``, ``"none"``, a registered dataset name or
    ``"<dataset>:tuning"`` (its declared tuning split); ``"undeclared"`` if nobody said. Recorded in every row;
    tables mark rows tuned on the reported data (:mod:`dpgen_bench.jobs.tuned_on`). Say the truth: defaults
    chosen by evaluating on the benchmark's own split are ``"<that dataset>"``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _adapt_interface_1_sample(cls)
        caps = cls.__dict__.get("capabilities")
        if (caps is not None and caps.labelled and caps.unlabelled
                and cls.samples_labelled is GenerativeMethod.samples_labelled):
            raise PluginInterfaceError(
                f"{cls.__module__}.{cls.__name__} can train both labelled and unlabelled, so it must say which it "
                f"did (method interface {INTERFACE_VERSION}): add a property `samples_labelled(self) -> bool` "
                f"returning whether sample()'s labels are class conditions (e.g. from its config)"
            )

    def __init__(
        self,
        config: MethodConfig | Mapping[str, Any] | None,
        info: DatasetInfo,
        seed: int = 0,
        context: RunContext | None = None,
    ) -> None:
        self.config = build_config(self.Config, config)
        type(self).capabilities_for(self.config).check(info)
        self.info = info
        self.seed = int(seed)
        self.context = context if context is not None else RunContext()
        if not isinstance(self.context, RunContext):
            raise TypeError(f"context must be a RunContext, got {type(self.context).__name__}")
        self.device = torch.device(self.context.device)

    # -- the life cycle -------------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        """Train on the private ``train`` split within ``budget``.

        Noise comes from :mod:`dpgen_bench.privacy.calibration`; every data-dependent release is
        recorded in ``ledger``. ``budget.epsilon == inf`` means a non-private reference run.
        """

    def sample(
        self, n: int, labels: torch.Tensor | None = None, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` images (float32, [0, 1], NCHW, on CPU) and their int64 labels (-1 for an unlabelled model).

        ``labels=None`` draws class-balanced labels (labelled models); given labels must have shape (n,)
        and lie in [0, num_classes). ``seed`` (default: the method's seed) fixes labels and noise, so
        equal seeds give identical samples. Checks the inputs and the output, and calls :meth:`generate`.
        """
        if isinstance(n, bool) or not hasattr(n, "__index__") or operator.index(n) < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        n = operator.index(n)
        generator = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        if labels is not None:
            if not self.samples_labelled:
                raise ValueError(f"{self.name or type(self).__name__} was trained unlabelled: sample() takes no labels")
            labels = torch.as_tensor(labels).long().cpu()
            k = self.info.num_classes
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
            if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
                raise ValueError(f"labels must be in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")
        elif self.samples_labelled:
            labels = self.balanced_labels(n, generator)
        images = self.generate(n, labels, generator)
        if not isinstance(images, torch.Tensor) or tuple(images.shape) != (n, *self.info.shape):
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise RuntimeError(f"{type(self).__name__}.generate({n}) returned {got}, expected {(n, *self.info.shape)}")
        out_labels = labels if labels is not None else torch.full((n,), -1, dtype=torch.long)
        return images.detach().to("cpu", torch.float32), out_labels

    @abstractmethod
    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """``n`` images (NCHW, values in [0, 1]) for the checked ``labels`` ((n,) int64 on CPU, or None for an
        unlabelled model), drawing all randomness from ``generator`` (CPU)."""

    @abstractmethod
    def checkpoint_state(self) -> dict[str, Any]:
        """Tensors (and plain values) needed to sample; no private data."""

    @abstractmethod
    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`checkpoint_state` returned."""

    # -- what the runner needs to know (explicit, never guessed from config field names) ----------
    @property
    def samples_labelled(self) -> bool:
        """Whether :meth:`sample`'s labels are real class conditions (downstream accuracy needs them).

        The default follows the capabilities of a method that can only do one of the two; a method that can
        train either way must override it (enforced when the class is defined)."""
        return type(self).capabilities.labelled

    @classmethod
    def capabilities_for(cls, config: MethodConfig) -> Capabilities:
        """What the method supports with ``config`` (default: :attr:`capabilities`). A method whose supported
        datasets depend on its config (e.g. Private Evolution on its generation API) narrows them here; the
        runner and the constructor check datasets against this."""
        return cls.capabilities

    @classmethod
    def training_extractor(cls, config: MethodConfig) -> str | None:
        """Name of the feature extractor the method trains against with ``config`` (None: none).

        The runner refuses an extractor trained on the private data's own distribution, and flags metrics
        computed in this feature space."""
        return None

    @classmethod
    def training_extractor_options(cls, config: MethodConfig) -> dict[str, Any]:
        """The options the training extractor is built with (a local ``weights`` file must declare
        ``weights_trained_on``: the runner checks it like the extractor's name). Default: none."""
        return {}

    @classmethod
    def pretrained_components(cls, config: MethodConfig) -> dict[str, tuple[str, ...]]:
        """Every other pre-trained part the method uses with ``config`` (e.g. PE's generation API), as
        description → the data families it was trained on; the runner refuses one trained on the private
        dataset's family. ValueError if a part cannot say (an undeclared model). Default: none."""
        return {}

    @classmethod
    def required_files(cls, config: MethodConfig) -> dict[str, str]:
        """Local files the method needs with ``config`` (e.g. pre-trained weights), as description → path. The
        runner checks they exist before anything trains and refuses the run naming each missing one (exit 2).
        Default: none."""
        return {}

    @classmethod
    def privacy_plan(cls, config: MethodConfig, nominal_size: int) -> Any:
        """σ → the events :meth:`fit` will record at noise multiplier σ on a private split of declared size
        n̂ = ``nominal_size`` (a :data:`~dpgen_bench.privacy.calibration.Plan`), or None if the method cannot
        say ahead. The runner calibrates it before training, so an ε no σ can reach is refused up front."""
        return None

    def gradient_probe(self) -> GradientProbe | None:
        """For DP-SGD methods (``capabilities.dp_sgd``): the probe of the rows the optimiser clips."""
        return None

    # -- optional audit hooks (docs/audit.md); None / empty means "not provided" -----------------
    audit_release: ClassVar[Callable[..., torch.Tensor] | None] = None
    """Optional hook of the mechanism audit: a method ``audit_release(self, train, budget, ledger=None) ->
    torch.Tensor``, one noisy release (1-d, float64) of the same release code :meth:`fit` uses, on ``train``,
    with fresh noise on every call and the exact values at ε = ∞; it records what it releases in ``ledger``
    (the audit compares its bound with that ε). None: the method is audited by the generic audit only."""

    audit_canary: ClassVar[Callable[..., tuple[torch.Tensor, int]] | None] = None
    """Optional hook: a method ``audit_canary(self, data) -> (image, label)``, the example whose addition to
    ``data`` moves the release by the full sensitivity (checked there). None: the auditor's rule (the all-ones
    image in class 0)."""

    audit_config: ClassVar[dict[str, Any] | None] = None
    """Optional config overrides that make :meth:`fit` take well under a second on ~32 images, for the generic
    audit's many fits. None: :attr:`conformance_config`."""

    audit_direction: ClassVar[Callable[..., torch.Tensor] | None] = None
    """Optional hook of the mechanism audit, for a release whose noiseless shift is itself random (a secret draw
    inside the mechanism, e.g. GS-WGAN's discriminator): a method ``audit_direction(self, data, neighbour) ->
    torch.Tensor``, a fixed direction in ``audit_release``'s output along which the releases on ``neighbour``
    (D′) are shifted, computed without release noise from what the auditor knows (public inputs, D and D′).
    The hook audit then scores each release by its projection on it, a one-dimensional release (the most
    powerful linear test when the noise is isotropic; valid whatever the direction, since it is fixed before
    the trials). None: the audit takes Σ̂⁻¹Δ (``docs/audit.md``)."""

    excluded_variants: ClassVar[dict[str, str]] = {}
    """Generic broken variants (``dpgen_bench.audit.broken.VARIANTS``) whose bug cannot exist in this method,
    each with the reason, e.g. DP-Kernel's ``{"unclipped": "no per-example gradient is clipped ..."}``: the
    audit leaves them out (``variants_for``) and refuses to build them, naming the reason. Default: none."""

    @classmethod
    def broken_variants(cls) -> tuple[BrokenVariant, ...]:
        """Deliberately broken copies of this method that only it can have (the audit's power checks, e.g.
        DPDM's ``per-row-clip``), as :class:`BrokenVariant`; the generic ones
        (``tenth-noise``, ``unclipped``) reach every method through the noise and DP-SGD seams and are not
        listed here. Default: none."""
        return ()

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``method.json`` (name, config, dataset info, seed) and ``state.pt``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "method": self.name,
            "config": self.config.model_dump(mode="json"),
            "info": asdict(self.info),
            "seed": self.seed,
        }
        with atomic_path(directory / "state.pt") as tmp:
            torch.save(self.checkpoint_state(), tmp)
        write_atomic(directory / "method.json", json.dumps(meta, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | Path, context: RunContext | None = None) -> "GenerativeMethod":
        """Rebuild a method from :meth:`save`'s output (tensors loaded with ``weights_only=True``)."""
        directory = Path(directory)
        meta = json.loads((directory / "method.json").read_text())
        if cls.name and meta["method"] != cls.name:
            raise ValueError(f"checkpoint in {directory} is for method {meta['method']!r}, not {cls.name!r}")
        info = meta["info"]
        info["class_names"] = tuple(info.get("class_names", ()))
        method = cls(meta["config"], DatasetInfo(**info), seed=meta["seed"], context=context)
        state = torch.load(directory / "state.pt", map_location=method.device, weights_only=True)
        method.load_checkpoint_state(state)
        return method

    # -- helpers shared by methods ---------------------------------------------------------------
    def balanced_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` labels, as equal per class as possible (counts differ by at most one), shuffled."""
        k = self.info.num_classes
        labels = torch.arange(n) % k
        return labels[torch.randperm(n, generator=generator)]


def _adapt_interface_1_sample(cls: type) -> None:
    """A class written against interface 1 overrides ``sample(n, labels=None, seed=None) -> (images, labels)``
    and has no ``generate``: give it a ``generate`` that calls its ``sample`` (seeded from the generator the
    checked ``sample`` of interface 2 passes, so equal seeds stay equal samples), restore the checked
    ``sample``, and say once what to change. (ABCMeta computes the abstract methods after this hook.)"""
    legacy = cls.__dict__.get("sample")
    if legacy is None or "generate" in cls.__dict__ or not getattr(cls.generate, "__isabstractmethod__", False):
        return

    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        images, _ = legacy(self, n, labels=labels, seed=seed)
        return images

    generate.__doc__ = f"Adapted from {cls.__name__}.sample (method interface 1)."
    cls.generate = generate  # type: ignore[method-assign]
    cls.sample = GenerativeMethod.sample  # type: ignore[method-assign]
    warnings.warn(
        f"dpgen-bench: {cls.__module__}.{cls.__name__} overrides sample() (method interface 1); adapted for now — "
        f"rename it to generate(self, n, labels, generator) returning the images only (interface "
        f"{INTERFACE_VERSION}); interface 1 support ends in the next minor version",
        FutureWarning, stacklevel=3,
    )
