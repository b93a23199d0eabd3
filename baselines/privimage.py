"""``privimage``: PrivImage (Li, Gong, Li, Zhao, Hou, Wang; USENIX Security 2024) — a DP *semantic query* selects
the part of a public pool whose semantics match the private data; the diffusion model is pre-trained on that part
and then DP-SGD fine-tuned exactly as ``dpdm``. See ``docs/privimage.md``.

The recipe (DPImageBench's implementation of it, ``data/dataset_loader.py::semantic_query``):

1. A classifier trained on public data only (:mod:`.public_classifier`) scores each private image over the public
   pool's P semantic classes; its ``top_k`` highest classes form a k-hot vector.
2. **The release**: the (rows × P) histogram of those vectors, one row per private class (one row in total for an
   unconditional model), plus Gaussian noise N(0, (σ_q·√k)²) per cell through the shared
   :func:`~dpgen_bench.privacy.noise.gaussian_noise`. Under add/remove-one an example adds or removes its own
   k-hot vector in its own row: L2 sensitivity √k (k distinct classes). The ledger gets ``GaussianEvent(σ_q)``.
3. **Selection** (post-processing of the noisy histogram): private class 0 takes its ``top_k`` public classes,
   class 1 its ``top_k`` among those not yet taken, and so on; the selected public images are relabelled with the
   private class that chose them (conditional pre-training on private labels, as DPImageBench does).
4. **Pre-training** on that subset (public, no privacy), cached by the subset's content hash, so the selection is
   in the key; then DPDM's DP-SGD fine-tuning on the private data.

Budget split: σ_q = ``query_noise_multiplier`` is declared (DPImageBench: 50, the query then costs ~0.1 of ε at
δ = 1e-5); DP-SGD's σ is calibrated by the shared calibrator for the composition of the query and its steps
(:meth:`PrivImage.privacy_plan`), so both compose in one ledger and the total meets the target ε.

The public pool is ``RunContext.public_data`` (the runner's ``public_data:`` entry, checked against the private
dataset's family and recorded in the row's ``public_dataset``); its labels are the semantic classes.
``pool: synthetic`` instead builds a pool of seeded random class templates (public by construction: a function
of the seed and the shape only) for tests and the conformance suite, which run without public data.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.method import BrokenVariant, MethodConfig
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate
from dpgen_bench.privacy.events import GaussianEvent, PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import gaussian_noise, public_generator
from dpgen_bench.privacy.plans import dpsgd_plan, dpsgd_plan_from_settings

from .dpdm import DPDM, DPDMConfig
from .public_classifier import (
    ClassifierSpec,
    TorchvisionClassifierSpec,
    TrainedClassifierSpec,
    public_classifier,
    top_k_classes,
)


class PrivImageConfig(DPDMConfig):
    """DPDM's settings plus the semantic query's. The CPU default is DPDM's (U-Net (8, 16, 16), B = 100, 10 epochs,
    K = 2: one ``mnist-5k`` cell in under 10 minutes on 2 cores), including its ``p_mean`` 1.0 and EMA 0.95, which
    ``dpgen-bench tune`` chose on mnist-5k's held-out tuning split (``tuned_on = "mnist-5k:tuning"``; EDM's
    −1.2, the paper's, left PrivImage near chance: docs/privimage.md); ``query_noise_multiplier`` 50 is
    DPImageBench's."""

    query_noise_multiplier: float = Field(
        50.0, gt=0, le=1e6, description="σ_q of the semantic query: noise std σ_q·√k on each histogram cell, charged "
        "as GaussianEvent(σ_q). The budget split: DP-SGD gets what the query leaves (DPImageBench: 50)")
    top_k: int = Field(
        1, ge=1, le=10_000, description="k: public classes counted per private image (its classifier's top k) and "
        "selected per private class (DPImageBench: 1000·0.05/10 = 5 with ImageNet; k·classes ≤ the pool's classes)")
    classifier: ClassifierSpec = Field(
        default_factory=TrainedClassifierSpec, description="the public classifier: {kind: trained, ...} (trained on "
        "the pool, cached) or {kind: torchvision, arch, weights, input_size, trained_on}")
    query_batch_size: int = Field(500, ge=1, le=65_536, description="images per classifier batch (memory only)")
    pool: Literal["public_data", "synthetic"] = Field(
        "public_data", description="the public pool: the run's public_data (its labels are the semantic classes), or "
        "'synthetic' (seeded random class templates, for tests and the conformance suite only)")
    synthetic_classes_per_row: int = Field(
        2, ge=1, le=1000, description="synthetic pool: classes per histogram row and k (P = this·k·rows)")
    synthetic_per_class: int = Field(16, ge=1, le=10_000, description="synthetic pool: images per class")

    @model_validator(mode="after")
    def _torchvision_needs_a_pool(self) -> "PrivImageConfig":
        if self.pool == "synthetic" and isinstance(self.classifier, TorchvisionClassifierSpec):
            raise ValueError("pool: synthetic has random classes no torchvision classifier knows; use classifier: "
                             "{kind: trained}")
        return self


QUERY_NOTE = "privimage: semantic query"
"""Start of the ledger note of the query's release (tests find it by this)."""


# ------------------------------------------------------------------------------------------ the query


def semantic_histogram(top: torch.Tensor, rows: torch.Tensor, n_rows: int, n_classes: int) -> torch.Tensor:
    """(n_rows, n_classes) float64 counts: example i adds 1 at (rows[i], c) for each of its k classes top[i]."""
    hist = torch.zeros(n_rows, n_classes, dtype=torch.float64)
    k = top.shape[1] if top.ndim == 2 else 0
    if top.numel():
        hist.index_put_((rows.repeat_interleave(k), top.flatten()), torch.ones(top.numel(), dtype=torch.float64),
                        accumulate=True)
    return hist


def select_public_classes(noisy: torch.Tensor, k: int) -> list[list[int]]:
    """Row r (private class r) takes its k highest noisy counts among the public classes earlier rows did not
    take (DPImageBench's greedy order); post-processing of the released histogram."""
    taken = torch.zeros(noisy.shape[1], dtype=torch.bool)
    selection = []
    for row in noisy:
        scores = row.clone().masked_fill_(taken, -math.inf)
        top = scores.topk(k).indices
        taken[top] = True
        selection.append(sorted(int(c) for c in top))
    return selection


def selected_subset(pool: ImageDataset, selection: list[list[int]], info: DatasetInfo, conditional: bool) -> ImageDataset:
    """The pool's images of the selected classes, labelled with the private class (row) that selected them."""
    to_row = torch.full((pool.info.num_classes,), -1, dtype=torch.long)
    for row, classes in enumerate(selection):
        to_row[classes] = row
    mapped = to_row[pool.labels]
    keep = mapped >= 0
    labels = mapped[keep] if conditional else torch.zeros(int(keep.sum()), dtype=torch.long)
    chosen = json.dumps(selection, separators=(",", ":"))
    sub_info = DatasetInfo(f"{pool.info.name}[privimage:{chosen}]", info.channels, info.height, info.width,
                           info.num_classes, info.class_names)
    meta = {**pool.meta, "public_source": pool.info.name, "privimage_selection": chosen}
    return ImageDataset(pool.images[keep].contiguous(), labels.contiguous(), sub_info, split="public", meta=meta,
                        nominal_size=int(keep.sum()))


def synthetic_pool(info: DatasetInfo, classes: int, per_class: int, seed: int) -> ImageDataset:
    """``classes`` × ``per_class`` images of ``info``'s shape: a smooth random template per class plus pixel noise,
    all from a public stream of ``seed`` (no data: public by construction)."""
    g = public_generator(seed, "privimage-synthetic-pool")
    c, h, w = info.shape
    templates = F.interpolate(torch.rand(classes, c, 4, 4, generator=g), size=(h, w), mode="bilinear",
                              align_corners=False)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = (templates[labels] + 0.1 * torch.randn(len(labels), c, h, w, generator=g)).clamp(0, 1)
    pool_info = DatasetInfo(f"privimage-synthetic@{c}x{h}x{w}", c, h, w, classes)
    return ImageDataset(images, labels, pool_info, split="public", nominal_size=len(labels))


# ------------------------------------------------------------------------------------------ the method


class PrivImage(DPDM):
    """DPDM whose public pre-training data is the part of a public pool a DP semantic query selects."""

    name: ClassVar[str] = "privimage"
    Config: ClassVar[type[MethodConfig]] = PrivImageConfig
    config: PrivImageConfig
    tuned_on: ClassVar[str] = "mnist-5k:tuning"  # DPDM's tuning-split p_mean / EMA; query settings DPImageBench's (docs/privimage.md)
    conformance_config: ClassVar[dict[str, Any]] = {
        **DPDM.conformance_config, "pool": "synthetic", "query_noise_multiplier": 10.0,
        "classifier": {"kind": "trained", "epochs": 1, "width": 4}, "synthetic_per_class": 4,
    }

    def __init__(self, config, info: DatasetInfo, seed: int = 0, context=None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        self._audit_start_net = copy.deepcopy(self.net)  # the audited DP-SGD step starts at the seeded init
        self.selection: list[list[int]] | None = None
        self._classifier: nn.Module | None = None

    @classmethod
    def privacy_plan(cls, config: PrivImageConfig, nominal_size: int):  # type: ignore[override]
        """σ → the query's ``GaussianEvent(σ_q)`` (σ_q declared, fixed) and DPDM's DP-SGD steps at σ."""
        steps = dpsgd_plan_from_settings(nominal_size, config.batch_size, epochs=config.epochs)
        sigma_q = config.query_noise_multiplier
        return lambda sigma: [GaussianEvent(sigma_q), *steps(sigma)]

    @classmethod
    def pretrained_components(cls, config: PrivImageConfig) -> dict[str, tuple[str, ...]]:  # type: ignore[override]
        """A torchvision classifier and the data families its weights were trained on (the runner refuses the
        private dataset's family). A ``trained`` classifier is trained on the run's public data, which the
        runner checks itself."""
        spec = config.classifier
        if not isinstance(spec, TorchvisionClassifierSpec):
            return {}
        return {f"semantic-query classifier {spec.arch} ({spec.weights})": spec.trained_on}

    @classmethod
    def required_files(cls, config: PrivImageConfig) -> dict[str, str]:  # type: ignore[override]
        """The torchvision classifier's weights file: the runner refuses the run (exit 2) naming it if missing."""
        spec = config.classifier
        if not isinstance(spec, TorchvisionClassifierSpec):
            return {}
        return {f"semantic-query classifier weights ({spec.arch}, a state_dict)": spec.weights}

    # -- the public pool and its classifier (public; no privacy) -------------------------------------
    def public_pool(self) -> ImageDataset:
        """The pool the query selects from; ValueError naming the fix when the run provides none."""
        cfg = self.config
        if cfg.pool == "synthetic":
            rows = self.info.num_classes if cfg.conditional else 1
            return synthetic_pool(self.info, cfg.synthetic_classes_per_row * cfg.top_k * rows, cfg.synthetic_per_class,
                                  self.seed)
        pool = self.context.public_data
        if pool is None:
            raise ValueError("privimage needs a public pool: give its benchmark entry public_data: {dataset: ...} "
                             "(e.g. digits for mnist-5k, an ImageNet folder for CIFAR-10), or set pool: synthetic")
        return pool

    def classifier(self, pool: ImageDataset) -> nn.Module:
        if self._classifier is None:
            self._classifier = public_classifier(pool, self.config.classifier, self.seed, self.device,
                                                 self.context.cache_dir)
        return self._classifier

    def query_sensitivity(self) -> float:
        """L2 sensitivity of the histogram under add/remove-one: one example's k-hot vector, √k."""
        return math.sqrt(self.config.top_k)

    def semantic_query(self, train: ImageDataset, pool: ImageDataset, sigma_q: float | None) -> torch.Tensor:
        """The released histogram (rows × P): exact counts plus N(0, (σ_q·√k)²) per cell; σ_q None: exact."""
        cfg = self.config
        rows = self.info.num_classes if cfg.conditional else 1
        if cfg.top_k * rows > pool.info.num_classes:
            raise ValueError(f"top_k={cfg.top_k} classes for each of {rows} private classes needs at least "
                             f"{cfg.top_k * rows} public classes; the pool {pool.info.name!r} has "
                             f"{pool.info.num_classes}")
        top = top_k_classes(self.classifier(pool), train.images, cfg.top_k, cfg.query_batch_size, self.device)
        row_of = train.labels if cfg.conditional else torch.zeros(len(train), dtype=torch.long)
        hist = semantic_histogram(top, row_of.cpu(), rows, pool.info.num_classes)
        if sigma_q is None:
            return hist
        s = self.query_sensitivity()
        return hist + gaussian_noise(hist.shape, sigma_q * s, sensitivity=s)

    def pretraining_data(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> ImageDataset:
        """The query's release (recorded in ``ledger``), the selection and the selected public subset."""
        cfg = self.config
        pool = self.public_pool()
        sigma_q = cfg.query_noise_multiplier if budget.is_private else None
        noisy = self.semantic_query(train, pool, sigma_q)
        self.selection = select_public_classes(noisy, cfg.top_k)
        if sigma_q is not None:
            ledger.record(GaussianEvent(sigma_q), f"{QUERY_NOTE} (top-{cfg.top_k} of {pool.info.num_classes} classes "
                          f"of {pool.info.name!r}, L2 sensitivity sqrt({cfg.top_k}), sigma={sigma_q:g}); selected "
                          f"{json.dumps(self.selection, separators=(',', ':'))}")
        return selected_subset(pool, self.selection, self.info, cfg.conditional)

    # -- the audit: the query and one DP-SGD step, as one release (docs/audit.md) -----------------------
    def audit_release(self, train: ImageDataset, budget: PrivacyBudget,  # type: ignore[override]
                      ledger: PrivacyLedger | None = None) -> torch.Tensor:
        """The noisy semantic-query histogram (the real query code, σ_q as configured) followed by the noisy
        gradient of one real DP-SGD step at q = 1 (DPDM's step, σ calibrated by the shared calibrator so that the
        query and that step compose to ``budget``), flattened, float64; both go into ``ledger``.

        The step starts from the seeded initialisation (fixed in advance; in ``fit`` it starts from the
        pre-training on the selected subset, a post-processing of the query that would make every trial
        pre-train). The draws are DPDM's :meth:`audit_draws`. At ε = ∞ the release is exact."""
        cfg = self.config
        pool = self.public_pool()
        n_hat = train.public_size()
        private = budget.is_private
        sigma = 0.0
        if private:
            plan = lambda s: [GaussianEvent(cfg.query_noise_multiplier), *dpsgd_plan(1.0, 1)(s)]  # noqa: E731
            sigmas = self.__dict__.setdefault("_audit_sigmas", {})
            if budget not in sigmas:
                sigmas[budget] = float(calibrate(plan, budget))
            sigma = sigmas[budget]
        hist = self.semantic_query(train, pool, cfg.query_noise_multiplier if private else None)
        step = self._audited_step(train, n_hat, sigma)
        if private and ledger is not None:
            ledger.record(GaussianEvent(cfg.query_noise_multiplier), f"{QUERY_NOTE} (audited)")
            ledger.record(PoissonSubsampledGaussianEvent(sigma, 1.0, 1),
                          f"privimage: 1 audited DP-SGD step (q=1, sigma={sigma:.6g}, C={cfg.max_grad_norm})")
        return torch.cat([hist.flatten(), step])

    @classmethod
    def broken_variants(cls) -> tuple[BrokenVariant, ...]:
        """DPDM's ``per-row-clip`` (the same DP-SGD step) and ``unit-sensitivity``: the k-hot histogram charged
        as sensitivity 1 (noise std σ_q instead of σ_q·√k; declared sensitivity 1, so the conformance suite's
        noise check cannot see it)."""
        return (*DPDM.broken_variants(),
                BrokenVariant("unit-sensitivity", "the semantic query's k-hot histogram noised and declared for L2 "
                              "sensitivity 1 instead of √k", transform=_unit_sensitivity))

    # -- checkpoints -----------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(), "selection": json.dumps(self.selection)}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.selection = json.loads(state.get("selection") or "null")


def _unit_sensitivity(method_cls: type[PrivImage]) -> type[PrivImage]:
    class UnitSensitivityPrivImage(method_cls):  # type: ignore[misc, valid-type]
        def query_sensitivity(self) -> float:
            return 1.0  # the bug: a k-hot vector has L2 norm √k

    return UnitSensitivityPrivImage


__all__ = ["PrivImage", "PrivImageConfig", "QUERY_NOTE", "select_public_classes", "selected_subset",
           "semantic_histogram", "synthetic_pool"]
