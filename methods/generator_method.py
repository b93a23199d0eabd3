"""What DP-MEPF and DP-MERF share: the release-once ``fit``, the generator, sampling and checkpoints."""

from __future__ import annotations

import time
from typing import Any, Mapping

import torch

from dpgen_bench.data.types import ImageDataset
from dpgen_bench.method import GenerativeMethod
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import gaussian_releases_plan
from dpgen_bench.privacy.ledger import PrivacyLedger

from .generators import ConditionalGenerator, build_generator
from .mean_embedding import ReleasedEmbedding, release_mean_embedding, release_sensitivities


class GeneratorMethod(GenerativeMethod):
    """A method whose sampler is one conditional (or unconditional) generator network.

    Subclass configs must have ``generator`` (``"auto"``, ``"conv"``, ``"resnet"``), ``z_dim`` (int or
    None for the generator's default) and ``labelled`` (bool). ``self.generator`` is built in ``__init__``
    (fresh weights from the public seed), so a loaded checkpoint can sample without the private data.
    """

    def __init__(self, config, info, seed: int = 0, device: str | torch.device = "cpu") -> None:
        super().__init__(config, info, seed=seed, device=device)
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
    def sample(
        self, n: int, labels: torch.Tensor | None = None, seed: int | None = None, batch_size: int = 500
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` images in [0, 1] (CPU, NCHW) and labels; unlabelled models return labels of -1.

        ``labels=None`` draws class-balanced labels; ``seed`` fixes noise and labels (default: the
        method's seed), so equal seeds give bit-identical samples.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        gen = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        if labels is not None:
            if not self.config.labelled:
                raise ValueError(f"{self.name} was trained unlabelled (labelled=False): it cannot take labels")
            labels = torch.as_tensor(labels, dtype=torch.long).cpu()
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
            k = self.info.num_classes
            if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
                raise ValueError(f"labels must be in [0, {k}), got {labels.unique().tolist()}")
        elif self.config.labelled:
            labels = self.balanced_labels(n, gen)
        was_training = self.generator.training
        self.generator.eval()
        images = []
        try:
            for start in range(0, n, batch_size):
                m = min(batch_size, n - start)
                z = self.generator.sample_noise(m, gen, self.device)
                y = labels[start : start + m].to(self.device) if labels is not None else None
                images.append(self.generator(z, y).float().cpu())
        finally:
            self.generator.train(was_training)
        c, h, w = self.info.shape
        out = torch.cat(images) if images else torch.empty(0, c, h, w)
        if labels is None:
            labels = torch.full((n,), -1, dtype=torch.long)
        return out.clamp_(0.0, 1.0), labels

    def checkpoint_state(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(), "release": dict(self.release_summary)}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.release_summary = dict(state.get("release", {}))


class ReleaseOnceMethod(GeneratorMethod):
    """A generator trained to match a noisy mean embedding released once (DP-MEPF, DP-MERF).

    Subclasses implement :meth:`embed` (images → {moment: per-example embeddings of norm ``sum_norm``}) and
    :meth:`train_generator` (post-processing of the release only). Configs also need ``count_noise_ratio``,
    ``embed_batch_size`` and ``progress``; the accountant comes with the budget.
    """

    @classmethod
    def num_moments(cls, config) -> int:  # pragma: no cover - abstract
        """How many embedded vectors (moments) are released per example with ``config``."""
        raise NotImplementedError

    @classmethod
    def privacy_plan(cls, config, nominal_size: int):
        """One Gaussian release per moment plus the counts; independent of the data size."""
        return gaussian_releases_plan(release_sensitivities(cls.num_moments(config), config.count_noise_ratio))

    @property
    def sum_norm(self) -> float:
        """C: the norm of every per-example embedding, i.e. each moment's L2 sensitivity."""
        return float(getattr(self.config, "sum_norm", 1.0))

    def embed(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_generator(self, released: ReleasedEmbedding, steps: int | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def release(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> ReleasedEmbedding:
        """The single data access: noisy per-class mean embeddings, recorded in ``ledger``."""
        cfg = self.config
        return release_mean_embedding(
            self.embed, train, budget, ledger, labelled=cfg.labelled, sum_norm=self.sum_norm,
            count_noise_ratio=cfg.count_noise_ratio,
            batch_size=cfg.embed_batch_size, device=self.device, progress=cfg.progress, method_name=self.name,
        )

    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        t0 = time.perf_counter()
        released = self.release(train, budget, ledger)
        self.release_summary = released.summary()
        t1 = time.perf_counter()
        self.train_generator(released)
        self.history.update(release_s=t1 - t0, train_s=time.perf_counter() - t1)
