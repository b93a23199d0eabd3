"""Private Evolution (Lin, Gopi, Kulkarni, Nori, Yekhanin, ICLR 2024): DP synthetic images from a public
generation API, with no training on private data. See docs/private_evolution.md.

    S₀ = RANDOM_API(N)                                  (N/K per class when labelled; public)
    for t = 1..T:
        h_t[j] = #{private x : x's nearest neighbour in S_{t-1} is j}   (within x's class, public features)
        h̃_t = h_t + N(0, σ²)                             one Gaussian release, L2 sensitivity 1
        h̃_t[h̃_t < H·σ] = 0                               threshold (post-processing)
        S'_t = N draws from S_{t-1} ∝ h̃_t (per class)   post-processing
        S_t = VARIATION_API(S'_t, strength_t)            post-processing (public API)
    release S_T

**Privacy.** Add/remove one private example x changes exactly one entry of h_t by exactly 1 (x casts one vote,
for one candidate): L2 sensitivity 1. Labelled PE votes within each class: the per-class histograms are one
vector indexed by candidate, and x votes only in its own class's block, so the concatenation still has
sensitivity 1 — the classes compose in parallel and iteration t is *one* Gaussian event ``GaussianEvent(σ)``,
T events in all, σ calibrated for exactly that plan. Everything after the noisy histogram (threshold,
resampling, variation, the next iteration's candidates and features) is post-processing, and the only
randomness besides the release noise is public (seeded per use). The private embeddings are computed once in a
public feature space (an extractor not trained on the private data's family; the runner checks it). Private
class counts are never used: per-class candidate counts are the public N/K. With ``class_conditioning: votes``
the API is asked for class-free samples and a class's block differs from another's only through the votes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm.auto import tqdm

from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.method import Capabilities, GenerativeMethod, MethodConfig
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate, gaussian_releases_plan
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import gaussian_noise, public_generator

from . import pe_diffusers, pe_digit_simulator  # noqa: F401  (the built-in APIs register themselves)
from .pe_api import GenerationAPI, Population, build_pe_api, get_pe_api, list_pe_apis


class APISpec(BaseModel):
    """Which generation API (``methods.pe_api``) and its options."""

    model_config = ConfigDict(extra="forbid")
    name: str = "digit-simulator"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in list_pe_apis():
            raise ValueError(f"unknown PE API {name!r}; available: {', '.join(list_pe_apis())}")
        return name


class PEConfig(MethodConfig):
    """Private Evolution hyper-parameters; defaults run mnist-5k in a few minutes on 2 CPU cores."""

    api: APISpec = Field(default_factory=APISpec)
    population: int = Field(4000, ge=1)
    """N: candidates per iteration (split evenly over classes when labelled; public)."""
    iterations: int = Field(10, ge=1)
    """T: DP vote histograms released (one Gaussian event each)."""
    strength_start: float = Field(0.8, gt=0, le=1)
    strength_end: float = Field(0.2, gt=0, le=1)
    """Variation strength of iteration 1 and T (geometric in between; in (0, 1], 1 ≈ a fresh sample)."""
    threshold: float = Field(2.0, ge=0)
    """H: noisy votes below H·σ count as 0 (in units of the noise std; ε = ∞ runs keep every positive vote)."""
    sample_variation: float = Field(0.0, ge=0, lt=1)
    """Strength of a variation applied to each drawn sample in :meth:`sample` (0: the population as released)."""
    extractor: str = "efficientnet-lite0"
    """Public feature space of the votes (``dpgen_bench.features``)."""
    extractor_options: dict[str, Any] = Field(default_factory=dict)
    labelled: bool = True
    """Vote within classes: the population is split into one block of N/K candidates per class."""
    class_conditioning: Literal["api", "votes"] = "api"
    """How a labelled population's classes are made. ``api``: the API generates each requested class (it must be
    conditional for the dataset's classes). ``votes``: the API generates class-free samples (label -1; e.g. an
    ImageNet model for MNIST) and each class's block is shaped only by that class's private votes — DPSDA's and
    DPImageBench's PE with an ImageNet diffusion model."""
    embed_batch_size: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _schedule(self) -> "PEConfig":
        if self.strength_end > self.strength_start:
            raise ValueError(f"strength_end ({self.strength_end}) must not exceed strength_start ({self.strength_start})")
        return self

    def strengths(self) -> list[float]:
        """The variation strength of each iteration: geometric from ``strength_start`` to ``strength_end``."""
        t = self.iterations
        ratio = (self.strength_end / self.strength_start) ** (1.0 / max(t - 1, 1))
        return [self.strength_start * ratio**i for i in range(t)]


class PrivateEvolution(GenerativeMethod):
    """Private Evolution; see the module docstring."""

    name: ClassVar[str] = "pe"
    Config: ClassVar[type[MethodConfig]] = PEConfig
    config: PEConfig
    capabilities: ClassVar[Capabilities] = Capabilities(labelled=True, unlabelled=True, channels=(1, 3))
    tuned_on: ClassVar[str] = "mnist-5k:tuning"  # population 4000: dpgen-bench tune on the tuning split (results/tune_pe_mnist5k)
    conformance_config: ClassVar[dict[str, Any]] = {"population": 16, "iterations": 2, "extractor": "random-cnn"}

    def __init__(self, config, info: DatasetInfo, seed: int = 0, context=None) -> None:
        super().__init__(config, info, seed=seed, context=context)
        if self.config.labelled and not type(self).capabilities_for(self.config).labelled:
            raise ValueError(f"PE API {self.config.api.name!r} is unconditional: set class_conditioning: votes "
                             f"(class blocks shaped by the votes alone) or labelled: false")
        if self.config.labelled and self.config.population < info.num_classes:
            raise ValueError(f"population={self.config.population} is below the {info.num_classes} classes")
        self._api: GenerationAPI | None = None
        self.population: Population | None = None
        self.noise_multiplier: float | None = None
        self.history: dict[str, Any] = {}

    @property
    def samples_labelled(self) -> bool:
        return bool(self.config.labelled)

    @classmethod
    def privacy_plan(cls, config: PEConfig, nominal_size: int):  # type: ignore[override]
        """T Gaussian releases of sensitivity 1 (the vote histograms); independent of the data size."""
        return gaussian_releases_plan([1.0] * config.iterations)

    @classmethod
    def capabilities_for(cls, config: PEConfig) -> Capabilities:  # type: ignore[override]
        """What the configured API can produce (e.g. the digit simulator: grey digits only)."""
        api = get_pe_api(config.api.name)
        labelled = api.conditional or config.class_conditioning == "votes"
        return Capabilities(labelled=labelled, unlabelled=True, channels=api.channels,
                            image_sizes=api.image_sizes)

    @classmethod
    def training_extractor(cls, config: PEConfig) -> str:  # type: ignore[override]
        return config.extractor

    @classmethod
    def training_extractor_options(cls, config: PEConfig) -> dict[str, Any]:  # type: ignore[override]
        return dict(config.extractor_options)

    @classmethod
    def pretrained_components(cls, config: PEConfig) -> dict[str, tuple[str, ...]]:  # type: ignore[override]
        """The generation API's model and what it was trained on (its ``trained_on`` declaration)."""
        api = get_pe_api(config.api.name)
        return {f"PE API {config.api.name!r} ({api.describe_options(config.api.options)})":
                api.trained_on_for(config.api.options)}

    @property
    def api(self) -> GenerationAPI:
        if self._api is None:
            spec = self.config.api
            api = build_pe_api(spec.name, self.info, device=self.device, **spec.options)
            if self._api_conditioned and not api.conditional:  # e.g. an unconditional diffusion model
                raise ValueError(f"PE API {api.describe()!r} cannot generate class-conditionally: set "
                                 f"class_conditioning: votes or labelled: false")
            self._api = api
        return self._api

    # -- the evolution ----------------------------------------------------------------------------
    def fit(self, train: ImageDataset, budget: PrivacyBudget, ledger: PrivacyLedger) -> None:
        cfg = self.config
        from dpgen_bench.features import get_extractor  # on use: listing methods stays cheap

        extractor = get_extractor(cfg.extractor, self.device, **cfg.extractor_options)
        private = extractor.extract(train.images, cfg.embed_batch_size, device=self.device)
        private_labels = train.labels if cfg.labelled else torch.zeros(len(train), dtype=torch.long)
        sigma = None
        if budget.is_private:
            sigma = float(calibrate(self.privacy_plan(cfg, train.public_size()), budget))
        self.noise_multiplier = sigma

        population = self._random(self._candidate_labels(), public_generator(self.seed, "pe-random"))
        kept = []
        for t, strength in enumerate(tqdm(cfg.strengths(), desc="pe iterations", disable=not self.context.progress)):
            synthetic = extractor.extract(population.images, cfg.embed_batch_size, device=self.device)
            votes = vote_histogram(private, private_labels, synthetic, self._vote_groups(population))
            noisy = self._release(votes, sigma, ledger, t)
            picked = resample(noisy, self._vote_groups(population), public_generator(self.seed, "pe-resample", t))
            kept.append(int((noisy > 0).sum()))
            population = self._variation(population.take(picked), strength,
                                         public_generator(self.seed, "pe-variation", t))
        # Released as 8-bit images (what samples.npz holds anyway), so a checkpoint restores them exactly.
        self.population = Population((population.images * 255).round() / 255, population.labels, population.state)
        self.history = {"candidates_with_votes": kept, "strengths": cfg.strengths()}

    @property
    def _api_conditioned(self) -> bool:
        """Whether the API is asked for the dataset's classes (labelled, ``class_conditioning: api``)."""
        return self.config.labelled and self.config.class_conditioning == "api"

    def _random(self, labels: torch.Tensor, generator: torch.Generator) -> Population:
        """RANDOM_API for candidates of class ``labels`` (class-free requests under ``votes``; labels kept)."""
        asked = labels if self._api_conditioned else torch.full_like(labels, -1)
        drawn = self.api.random(asked, generator)
        return Population(drawn.images, labels.clone(), drawn.state)

    def _variation(self, population: Population, strength: float, generator: torch.Generator) -> Population:
        """VARIATION_API of ``population``; each candidate keeps its class block."""
        asked = population if self._api_conditioned else Population(
            population.images, torch.full_like(population.labels, -1), population.state)
        varied = self.api.variation(asked, strength, generator)
        return Population(varied.images, population.labels.clone(), varied.state)

    def _candidate_labels(self) -> torch.Tensor:
        """N public labels: balanced over classes when labelled (sorted), else all -1."""
        n = self.config.population
        if not self.config.labelled:
            return torch.full((n,), -1, dtype=torch.long)
        return (torch.arange(n) % self.info.num_classes).sort().values

    def _vote_groups(self, population: Population) -> torch.Tensor:
        """The class block each candidate votes in (0 for all when unlabelled)."""
        return population.labels.clamp_min(0) if self.config.labelled else torch.zeros(len(population), dtype=torch.long)

    def _release(self, votes: torch.Tensor, sigma: float | None, ledger: PrivacyLedger, t: int) -> torch.Tensor:
        """The DP histogram of iteration t (one Gaussian event), thresholded at H·σ; exact when non-private."""
        if sigma is None:
            return votes.double()
        noisy = votes.double() + gaussian_noise(votes.shape, sigma, sensitivity=1.0)
        ledger.record(GaussianEvent(sigma), f"pe: nearest-neighbour vote histogram {t + 1}/{self.config.iterations} "
                                            f"({len(votes)} candidates, L2 sensitivity 1, noise std {sigma:.4g})")
        return torch.where(noisy >= self.config.threshold * sigma, noisy, torch.zeros_like(noisy))

    # -- the empirical privacy audit (docs/audit.md) ------------------------------------------------
    def audit_candidates(self) -> Population:
        """The public first population S₀ that :meth:`fit` starts from (same seed and stream), fixed for the
        audit."""
        state = self.__dict__.setdefault("_audit_state", {})
        if "candidates" not in state:
            state["candidates"] = self._random(self._candidate_labels(), public_generator(self.seed, "pe-random"))
        return state["candidates"]

    def audit_release(self, train: ImageDataset, budget: PrivacyBudget,
                      ledger: PrivacyLedger | None = None) -> torch.Tensor:
        """The first iteration's released vote histogram (after the H·σ threshold), float64, for the empirical
        privacy audit: the candidates are the public S₀ of :meth:`fit` (:meth:`audit_candidates`), the votes
        come from :func:`vote_histogram` and the noise from :meth:`_release` — fit's own code, fresh noise on
        every call, the event recorded in ``ledger`` (default: a throw-away one). Exact votes when ``budget``
        is non-private.

        One iteration is one Gaussian release; the T iterations of :meth:`fit` compose (each is the same
        mechanism on candidates that are post-processing of earlier releases), so the audit tests one, and its
        claimed ε is that of the one event recorded here, ε(GaussianEvent(σ)), below the budget when T > 1.

        The extractor, the candidates' features, the private features and exact votes (per (labels, images)
        tensor pair, :class:`dpgen_bench.audit.cache.IdentityMemo`) and σ are computed once and kept for later
        calls."""
        from dpgen_bench.audit.cache import IdentityMemo, tensor_identity
        from dpgen_bench.features import get_extractor

        cfg = self.config
        state = self.__dict__.setdefault("_audit_state", {})
        if "extractor" not in state:
            extractor = get_extractor(cfg.extractor, self.device, **cfg.extractor_options)
            candidates = self.audit_candidates()
            state["extractor"] = extractor
            state["candidate_features"] = extractor.extract(candidates.images, cfg.embed_batch_size, device=self.device)
            state["features"] = IdentityMemo(lambda x: extractor.extract(x, cfg.embed_batch_size, device=self.device))
            state["votes"] = IdentityMemo(lambda labels: {})  # exact histograms per (labels, images) pair
            state["sigma"] = {}
        candidates = self.audit_candidates()
        private_labels = train.labels if cfg.labelled else torch.zeros(len(train), dtype=torch.long)
        by_images = state["votes"](train.labels)
        key = tensor_identity(train.images)
        if key not in by_images:  # the votes are a deterministic function of the data: computed once
            private = state["features"](train.images)
            by_images[key] = (train.images, vote_histogram(private, private_labels, state["candidate_features"],
                                                           self._vote_groups(candidates)))
        votes = by_images[key][1]
        sigma = None
        if budget.is_private:
            key = (budget, train.public_size())
            if key not in state["sigma"]:
                state["sigma"][key] = float(calibrate(self.privacy_plan(cfg, train.public_size()), budget))
            sigma = state["sigma"][key]
        return self._release(votes.clone(), sigma, PrivacyLedger() if ledger is None else ledger, 0).double()

    def audit_canary(self, data: ImageDataset) -> tuple[torch.Tensor, int]:
        """The audit's worst-case canary: :func:`dpgen_bench.audit.canaries.pe_canary`."""
        from dpgen_bench.audit.canaries import pe_canary

        return pe_canary(self, data)

    # -- sampling and checkpoints -------------------------------------------------------------------
    def generate(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        if self.population is None:
            raise RuntimeError("pe: call fit() or load() before sample()")
        pop = self.population
        groups = labels if labels is not None else torch.zeros(n, dtype=torch.long)
        index = torch.empty(n, dtype=torch.long)
        for k in groups.unique().tolist():
            want = torch.nonzero(groups == k).flatten()
            members = torch.nonzero(self._vote_groups(pop) == k).flatten()
            if len(members) == 0:
                raise RuntimeError(f"pe: the population has no member of class {k}")
            index[want] = members[_cycled_permutation(len(members), len(want), generator)]
        drawn = pop.take(index)
        if self.config.sample_variation > 0 and n:
            drawn = self._variation(drawn, self.config.sample_variation, generator)
        return drawn.images

    def checkpoint_state(self) -> dict[str, Any]:
        pop = self.population
        return {
            "images": None if pop is None else (pop.images * 255).round().to(torch.uint8),
            "labels": None if pop is None else pop.labels,
            "state": None if pop is None else pop.state,
            "noise_multiplier": self.noise_multiplier,
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state["images"] is not None:
            self.population = Population(state["images"].float() / 255.0, state["labels"], state["state"])
        self.noise_multiplier = state.get("noise_multiplier")


def vote_histogram(private: torch.Tensor, private_groups: torch.Tensor, candidates: torch.Tensor,
                   candidate_groups: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(M,) int64: how many private embeddings (N_priv, D) have candidate j (M, D) as their nearest neighbour
    (squared L2) among the candidates of their own group. Every private example casts exactly one vote if its
    group has a candidate, none otherwise."""
    votes = torch.zeros(len(candidates), dtype=torch.long)
    for g in private_groups.unique().tolist():
        members = torch.nonzero(candidate_groups == g).flatten()
        if len(members) == 0:
            continue
        voters = private[private_groups == g]
        for start in range(0, len(voters), chunk):
            nearest = torch.cdist(voters[start:start + chunk], candidates[members]).argmin(dim=1)
            votes.index_add_(0, members[nearest], torch.ones_like(nearest))
    return votes


def resample(weights: torch.Tensor, groups: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Indices of a new population: per group, as many draws as the group has members, with probability ∝
    ``weights`` (uniform when a group's weights are all 0). Uses exactly len(weights) uniforms (inverse CDF),
    so the public generator's consumption never depends on the weights."""
    u = torch.rand(len(weights), generator=generator, dtype=torch.float64)
    picked = torch.empty(len(weights), dtype=torch.long)
    for g in groups.unique().tolist():
        members = torch.nonzero(groups == g).flatten()
        w = weights[members].clamp_min(0).double()
        w = w if w.sum() > 0 else torch.ones_like(w)
        cdf = torch.cumsum(w, 0) / w.sum()
        picked[members] = members[torch.searchsorted(cdf, u[members]).clamp_max(len(members) - 1)]
    return picked


def _cycled_permutation(size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` indices into range(size): whole random permutations back to back (each index repeats at most
    ⌈count/size⌉ times)."""
    rounds = -(-count // size)
    return torch.cat([torch.randperm(size, generator=generator) for _ in range(rounds)])[:count]
