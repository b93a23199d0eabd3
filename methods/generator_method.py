"""What DP-MEPF and DP-MERF share: the release-once ``fit``, the generator, sampling and checkpoints.

Contracts: a :class:`GeneratorMethod` has a config derived from :class:`GeneratorConfig`; a
:class:`ReleaseOnceMethod` one derived from :class:`ReleaseOnceConfig` and implements the three abstract hooks
:meth:`~ReleaseOnceMethod.num_moments`, :meth:`~ReleaseOnceMethod.embed` and
:meth:`~ReleaseOnceMethod.train_generator`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from abc import abstractmethod
from typing import Any, ClassVar, Literal, Mapping

import torch
from pydantic import Field

from dpgen_bench.data.types import ImageDataset
from dpgen_bench.method import GenerativeMethod, MethodConfig
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import gaussian_releases_plan
from dpgen_bench.privacy.ledger import PrivacyLedger

from .generators import ConditionalGenerator, build_generator
from .mean_embedding import (
    ReleasedEmbedding,
    ReleaseSpec,
    per_class_sums,
    release_mean_embedding,
    release_sensitivities,
)


class GeneratorConfig(MethodConfig):
    """Config fields every generator method has (subclasses may change the defaults)."""

    labelled: bool = True
    """Class-conditional generator (trained per class) or one for all data."""
    generator: Literal["auto", "conv", "resnet"] = "auto"
    """Architecture (:func:`methods.generators.build_generator`)."""
    z_dim: int | None = Field(None, ge=1)
    """Noise dimension; None = the generator's default."""


class ReleaseOnceConfig(GeneratorConfig):
    """Config fields of a release-once method."""

    count_noise_ratio: float = Field(2.0, gt=0)
    """Count noise std = ratio × σ (σ = the sums' noise multiplier); see mean_embedding's allocation note."""
    embed_batch_size: int = Field(200, ge=1)
    """Private examples embedded per batch (memory only; the release does not depend on it)."""


class GeneratorMethod(GenerativeMethod):
    """A method whose sampler is one conditional (or unconditional) generator network.

    ``Config`` derives from :class:`GeneratorConfig`. ``self.generator`` is built in ``__init__`` (fresh
    weights from the public seed), so a loaded checkpoint can sample without the private data.
    """

    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    config: GeneratorConfig
    config_base: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    """The class every subclass's ``Config`` must derive from (checked when the subclass is defined)."""
    sample_batch_size: ClassVar[int] = 500
    """Images generated per forward pass in :meth:`generate` (memory only)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not issubclass(cls.Config, cls.config_base):
            raise TypeError(f"{cls.__name__}.Config must derive from {cls.config_base.__name__}, got {cls.Config.__name__}")

    def __init__(self, config, info, seed: int = 0, context=None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        # Generator initialisation is a function of the public seed only (without touching the global RNG).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.generator: ConditionalGenerator = self._build_generator().to(self.device)
        self.release_summary: dict[str, Any] = {}

    @property
    def samples_labelled(self) -> bool:
        """Labels are class conditions exactly when the generator was trained labelled."""
        return bool(self.config.labelled)

    def _build_generator(self) -> ConditionalGenerator:
        cfg = self.config
        classes = self.info.num_classes if cfg.labelled else 0
        return build_generator(cfg.generator, self.info.height, self.info.channels, classes, cfg.z_dim)

    def _batch_labels(self, n: int, gen: torch.Generator) -> torch.Tensor | None:
        """Class-balanced labels for a training batch (None when unlabelled)."""
        if not self.config.labelled:
            return None
        return self.balanced_labels(n, gen).to(self.device)

    @torch.no_grad()
    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        was_training = self.generator.training
        self.generator.eval()
        images = []
        try:
            for start in range(0, n, self.sample_batch_size):
                m = min(self.sample_batch_size, n - start)
                z = self.generator.sample_noise(m, generator, self.device)
                y = labels[start : start + m].to(self.device) if labels is not None else None
                images.append(self.generator(z, y).float().cpu())
        finally:
            self.generator.train(was_training)
        return torch.cat(images).clamp_(0.0, 1.0) if images else torch.empty(0, *self.info.shape)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(), "release": dict(self.release_summary)}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.release_summary = dict(state.get("release", {}))


class ReleaseOnceMethod(GeneratorMethod):
    """A generator trained to match a noisy mean embedding released once (DP-MEPF, DP-MERF).

    ``Config`` derives from :class:`ReleaseOnceConfig`; the accountant comes with the budget. Subclasses
    implement the three hooks below; :attr:`sum_norm` is 1 unless they override it.
    """

    Config: ClassVar[type[ReleaseOnceConfig]] = ReleaseOnceConfig
    config: ReleaseOnceConfig
    config_base: ClassVar[type[GeneratorConfig]] = ReleaseOnceConfig

    def __init__(self, config, info, seed: int = 0, context=None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        self.history: dict[str, Any] = {}

    @classmethod
    @abstractmethod
    def num_moments(cls, config: ReleaseOnceConfig) -> int:
        """How many embedded vectors (moments) are released per example with ``config``."""

    @classmethod
    def privacy_plan(cls, config, nominal_size: int):
        """One Gaussian release per moment plus the counts; independent of the data size."""
        return gaussian_releases_plan(release_sensitivities(cls.num_moments(config), config.count_noise_ratio))

    @property
    def sum_norm(self) -> float:
        """C > 0: the norm of every per-example embedding, i.e. each moment's L2 sensitivity."""
        return 1.0

    @abstractmethod
    def embed(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """Images (N, C, H, W) in [0, 1] → {moment name: (N, D) embeddings, every row of norm :attr:`sum_norm`},
        differentiable in the images (the generator is trained through it)."""

    @abstractmethod
    def train_generator(self, released: ReleasedEmbedding, steps: int | None = None) -> None:
        """Fit ``self.generator`` to ``released`` (post-processing: no private data may be used here);
        ``steps`` overrides the config's step count."""

    def release(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger,
                class_sums=None) -> ReleasedEmbedding:
        """The single data access: noisy per-class mean embeddings, recorded in ``ledger`` (``class_sums``:
        see :func:`release_mean_embedding`; None in ``fit``)."""
        cfg = self.config
        spec = ReleaseSpec(labelled=cfg.labelled, sum_norm=self.sum_norm, count_noise_ratio=cfg.count_noise_ratio,
                           batch_size=cfg.embed_batch_size, label=self.name)
        return release_mean_embedding(self.embed, train, budget, ledger, spec, self.context, class_sums=class_sums)

    def audit_release(self, train: ImageDataset, budget: PrivacyBudget,
                      ledger: PrivacyLedger | None = None) -> torch.Tensor:
        """Everything one :meth:`fit` releases, for the empirical privacy audit (``docs/audit.md``): the noisy
        per-class sums of every moment, then the noisy counts, flattened into one float64 vector (exact values
        when ``budget`` is non-private).

        It calls :meth:`release` itself — the real noise and ledger code, fresh noise on every call — with
        the exact per-class sums (:func:`~.mean_embedding.per_class_sums`: embed, clip, sum) memoised per
        (images, labels) tensor pair (:class:`dpgen_bench.audit.cache.IdentityMemo`), so thousands of trials on
        the same datasets embed and clip once (and without a progress bar per call). The events are recorded
        in ``ledger`` (default: a throw-away one)."""
        from dpgen_bench.audit.cache import IdentityMemo

        memo = self.__dict__.get("_audit_sums_memo")
        if memo is None:  # keyed on the images' identity, then on the labels' values (unlabelled: fresh zeros)
            memo = self._audit_sums_memo = IdentityMemo(lambda images: {})

        def class_sums(embed, images, labels, *args, **kwargs):
            by_labels = memo(images)
            key = hashlib.blake2b(labels.cpu().numpy().tobytes(), digest_size=16).hexdigest()
            if key not in by_labels:
                by_labels[key] = per_class_sums(embed, images, labels, *args, **kwargs)
            return by_labels[key]

        context = self.context
        self.context = dataclasses.replace(context, progress=False)  # no bar per trial
        try:
            released = self.release(train, budget, PrivacyLedger() if ledger is None else ledger, class_sums)
        finally:
            self.context = context
        if released.sums is None:
            raise RuntimeError(f"{type(self).__name__}.release returned no sums to audit")
        parts = [released.sums[k].double().flatten() for k in released.sums] + [released.counts.double().flatten()]
        return torch.cat(parts)

    def audit_canary(self, data: ImageDataset) -> tuple[torch.Tensor, int]:
        """The audit's worst-case canary: :func:`dpgen_bench.audit.canaries.release_once_canary`."""
        from dpgen_bench.audit.canaries import release_once_canary

        return release_once_canary(self, data)

    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        t0 = time.perf_counter()
        released = self.release(train, budget, ledger)
        self.release_summary = released.summary()
        t1 = time.perf_counter()
        self.train_generator(released)
        self.history.update(release_s=t1 - t0, train_s=time.perf_counter() - t1)
