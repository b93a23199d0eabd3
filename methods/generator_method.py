"""What DP-MEPF and DP-MERF share after the release: the generator, sampling and checkpoints."""

from __future__ import annotations

from typing import Any

import torch

from dpgen_bench.method import GenerativeMethod

from .generators import ConditionalGenerator, build_generator


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
