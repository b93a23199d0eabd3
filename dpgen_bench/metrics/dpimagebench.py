"""The DPImageBench evaluation protocol (``evaluation: {protocol: dpimagebench}``; ``docs/protocol.md``).

What DPImageBench's code does (commit 565f8d7, ``evaluation/evaluator.py``), reproduced here:

* the synthetic set (60,000 images) is shuffled with ``np.random.default_rng(seed=0).permutation``; the first
  55,000 train the classifiers, the last 5,000 are a *synthetic* validation split;
* three classifiers (:mod:`.protocol_classifiers`: ResNet, WRN, ResNeXt; only the first two above 32×32),
  inputs scaled to [-1, 1], cross-entropy; CIFAR: SGD lr 0.1, momentum 0.9, weight decay 5e-4, StepLR(60, 0.2),
  200 epochs, batch 126; other datasets: Adam lr 0.01, StepLR(20, 0.2), 50 epochs, batch 256;
* an EMA of the parameters (decay 0.9999 with the warm-up min(decay, (1+t)/(10+t))) is evaluated after every
  epoch on the validation split and on the test split; the reported accuracy of a classifier is the test
  accuracy at the epoch of best validation accuracy (ties: the later epoch), and the reported number is the
  mean over the classifiers;
* FID of all synthetic images against the *sensitive train split* (Inception pool features), precision and
  recall with k = 4 against the same train features, and the Inception Score of the synthetic images (one
  split, the classifier head's logits with its bias: :mod:`.inception_score`).

Selection modes, reported under different result names:

* ``synthetic-val`` → ``acc-dpi-synthetic-val``: selection on the synthetic validation split; honest (uses only
  the released samples).
* ``sensitive-val`` → ``acc-dpi-sensitive-val``: DPImageBench's reported number (``eval.mode: val``):
  selection on the *sensitive* validation split, un-noised and outside every ε. Flagged ``not_private``.

One training run per classifier serves both modes: each epoch's EMA model is scored on both validation
splits and the test split, and each mode picks its own epoch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.types import ImageDataset
from .base import MetricResult
from .protocol_classifiers import CIFAR_CLASSIFIERS, DEFAULT_CLASSIFIERS, ClassifierSpec

PROTOCOL = "dpimagebench"
SELECTIONS = ("synthetic-val", "sensitive-val")
PROTOCOL_METRICS = ("accuracy", "fid", "prdc")
"""What ``evaluation.metrics`` may name under this protocol: the classifiers, FID vs train (with IS),
precision/recall."""
N_SYNTHETIC = 60_000
SYNTHETIC_VAL = 5_000
PR_K = 4
EMA_DECAY = 0.9999

NOT_PRIVATE_NOTICE = ("acc-dpi-sensitive-val selects each classifier's epoch on the sensitive validation split, "
                      "un-noised and outside every ε (DPImageBench's reported number): not private")
TRAIN_REFERENCE_RESULTS = ("FID-train", "IS", "precision-train", "recall-train")
"""Results whose real set is the sensitive train split (:func:`fidelity_results`); the others use the test split."""
TRAIN_REFERENCE_NOTICE = ("FID-train / precision-train / recall-train compare the samples with the private train "
                          "split itself, un-noised (the field's evaluation; evaluation, not a release, but it touches "
                          "private data outside the ledger)")


@dataclass(frozen=True)
class TrainingRecipe:
    """A classifier training recipe: optimiser, StepLR schedule, epochs and batch size."""

    optimizer: Literal["sgd", "adam"]
    lr: float
    step_size: int
    gamma: float
    epochs: int
    batch_size: int
    momentum: float = 0.0
    weight_decay: float = 0.0

    def build(self, params) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
        opt = (torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
               if self.optimizer == "sgd" else torch.optim.Adam(params, lr=self.lr))
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=self.step_size, gamma=self.gamma)


CIFAR_RECIPE = TrainingRecipe("sgd", 0.1, 60, 0.2, 200, 126, momentum=0.9, weight_decay=5e-4)
DEFAULT_RECIPE = TrainingRecipe("adam", 0.01, 20, 0.2, 50, 256)
TINY_CLASSIFIERS = (ClassifierSpec("resnet", 8, base=4), ClassifierSpec("wrn", 10, widen=1, dropout=0.3, base=4),
                    ClassifierSpec("resnext", 11, widen=1, cardinality=2, base=8))
"""Small stand-ins for CPU runs and tests (same families, a few thousand parameters each)."""


@dataclass(frozen=True)
class ProtocolOptions:
    """Deviations from the protocol, for CPU runs and tests (any of them makes the numbers not comparable with
    the published ones, and the results say so). Defaults are the protocol."""

    synthetic_val_size: int = SYNTHETIC_VAL
    """Synthetic images held out as the synthetic validation split (the rest train the classifiers)."""
    classifiers: Literal["protocol", "tiny"] = "protocol"
    """``protocol``: DPImageBench's three; ``tiny``: :data:`TINY_CLASSIFIERS`."""
    epochs: int | None = None
    """Training epochs (None: the recipe's, 200 CIFAR / 50 otherwise)."""
    batch_size: int | None = None
    """Batch size (None: the recipe's, 126 CIFAR / 256 otherwise)."""


def is_cifar(dataset_name: str) -> bool:
    """DPImageBench switches recipe and classifier sizes on ``'cifar' in name``."""
    return "cifar" in dataset_name


def recipe_for(dataset_name: str, options: ProtocolOptions) -> TrainingRecipe:
    base = CIFAR_RECIPE if is_cifar(dataset_name) else DEFAULT_RECIPE
    return dataclasses.replace(base, epochs=options.epochs or base.epochs, batch_size=options.batch_size or base.batch_size)


def classifiers_for(dataset_name: str, image_size: int, options: ProtocolOptions) -> tuple[ClassifierSpec, ...]:
    specs = TINY_CLASSIFIERS if options.classifiers == "tiny" else (
        CIFAR_CLASSIFIERS if is_cifar(dataset_name) else DEFAULT_CLASSIFIERS)
    return specs[:2] if image_size > 32 else specs  # DPImageBench: ResNet and WRN only above 32x32


def deviations(n_synthetic: int, options: ProtocolOptions) -> list[str]:
    """What differs from the protocol (empty: the protocol's own settings)."""
    out = []
    if n_synthetic != N_SYNTHETIC:
        out.append(f"{n_synthetic} synthetic images (protocol: {N_SYNTHETIC})")
    if options.synthetic_val_size != SYNTHETIC_VAL:
        out.append(f"synthetic validation split {options.synthetic_val_size} (protocol: {SYNTHETIC_VAL})")
    if options.classifiers != "protocol":
        out.append(f"{options.classifiers} classifiers")
    if options.epochs is not None:
        out.append(f"{options.epochs} epochs")
    if options.batch_size is not None:
        out.append(f"batch {options.batch_size}")
    return out


class ParameterEMA:
    """DPImageBench's EMA (``evaluation/ema.py``): shadow copies of the trainable parameters, updated after each
    optimiser step with decay min(decay, (1 + t) / (10 + t)); BatchNorm buffers are not averaged."""

    def __init__(self, model: nn.Module, decay: float = EMA_DECAY) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = [p.detach().clone() for p in model.parameters() if p.requires_grad]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, (p for p in model.parameters() if p.requires_grad)):
            s.sub_((1.0 - decay) * (s - p))

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the model's parameters with the shadow ones (call twice to restore)."""
        for s, p in zip(self.shadow, (p for p in model.parameters() if p.requires_grad)):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def select_epoch(val_accuracy: list[float]) -> int:
    """The epoch DPImageBench selects: the best validation accuracy, the later epoch on ties (``>=``)."""
    best, best_acc = 0, -1.0
    for epoch, acc in enumerate(val_accuracy):
        if acc >= best_acc:
            best, best_acc = epoch, acc
    return best


@torch.no_grad()
def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    correct = 0
    for start in range(0, len(images), 1000):
        x = images[start:start + 1000].to(device).float() * 2.0 - 1.0
        correct += int((model(x).argmax(1).cpu() == labels[start:start + 1000]).sum())
    return correct / max(len(images), 1)


def train_classifier(spec: ClassifierSpec, recipe: TrainingRecipe, train: tuple[torch.Tensor, torch.Tensor],
                     evals: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int, *, seed: int,
                     device: str = "cpu", progress: bool = False) -> dict[str, list[float]]:
    """Train one classifier on ``train`` (images in [0, 1], labels) and return, per name of ``evals``, the
    accuracy in [0, 1] of the EMA model after every epoch."""
    device_t = torch.device(device)
    x, y = train
    with torch.random.fork_rng(devices=[]):  # seeded init and dropout without moving the caller's RNG
        torch.manual_seed(seed)
        model = spec.build(x.shape[1], x.shape[2], num_classes).to(device_t)
        opt, sched = recipe.build(model.parameters())
        ema = ParameterEMA(model)
        gen = torch.Generator().manual_seed(seed)
        curves: dict[str, list[float]] = {name: [] for name in evals}
        for _ in tqdm(range(recipe.epochs), desc=spec.family, disable=not progress, leave=False):
            model.train()
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(order), recipe.batch_size):
                idx = order[start:start + recipe.batch_size]
                loss = nn.functional.cross_entropy(model(x[idx].to(device_t) * 2.0 - 1.0), y[idx].to(device_t))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ema.update(model)
            sched.step()
            model.eval()
            ema.swap(model)
            for name, (ex, ey) in evals.items():
                curves[name].append(_accuracy(model, ex, ey, device_t))
            ema.swap(model)
    return curves


def synthetic_split(n: int, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """DPImageBench's synthetic train/val split: ``np.random.default_rng(seed=0).permutation(n)``, the last
    ``val_size`` positions are validation."""
    if not 0 < val_size < n:
        raise ValueError(f"synthetic_val_size must be in (0, {n}) for {n} synthetic images, got {val_size}")
    perm = np.random.default_rng(seed=0).permutation(n)
    return perm[: n - val_size], perm[n - val_size:]


def accuracy_results(synthetic: ImageDataset, test: ImageDataset, val: ImageDataset | None, selections: list[str],
                     options: ProtocolOptions, *, seed: int = 0, device: str = "cpu",
                     progress: bool = False) -> list[MetricResult]:
    """``acc-dpi-<selection>`` for each selection mode: the mean over the classifiers of the test accuracy at the
    epoch each mode selects. Per-classifier curves, epochs and accuracies are in the details."""
    names = {s: f"acc-dpi-{s}" for s in selections}
    unlabelled = synthetic.meta.get("labelled") is False or bool((synthetic.labels < 0).any())
    if unlabelled:
        return [_missing(names[s], "synthetic set is unlabelled", synthetic, test) for s in selections]
    train_pos, val_pos = synthetic_split(len(synthetic), options.synthetic_val_size)
    x, y = synthetic.images.float(), synthetic.labels.long()
    evals = {"synthetic-val": (x[val_pos], y[val_pos]), "test": (test.images, test.labels)}
    if val is not None:
        evals["sensitive-val"] = (val.images, val.labels)
    recipe = recipe_for(test.info.name, options)
    specs = classifiers_for(test.info.name, test.info.height, options)
    runs = {}
    for spec in specs:
        curves = train_classifier(spec, recipe, (x[train_pos], y[train_pos]), evals, test.info.num_classes,
                                  seed=seed, device=device, progress=progress)
        runs[spec.describe()] = curves
    common = {"protocol": PROTOCOL, "recipe": dataclasses.asdict(recipe), "classifiers": list(runs),
              "synthetic_train": len(train_pos), "synthetic_val": len(val_pos), "ema_decay": EMA_DECAY}
    dev = deviations(len(synthetic), options)
    if dev:
        common["notice"] = ("reduced DPImageBench protocol (" + "; ".join(dev) + "): not comparable with the "
                            "published DPImageBench numbers")
    out = []
    for s in selections:
        if s not in evals:
            out.append(_missing(names[s], "no sensitive validation split: it exists only with split: official", synthetic, test))
            continue
        per = {}
        for name, curves in runs.items():
            epoch = select_epoch(curves[s])
            per[name] = {"epoch": epoch, "test_accuracy": curves["test"][epoch], "val_accuracy": curves[s][epoch],
                         "val_curve": curves[s], "test_curve": curves["test"]}
        details = {**common, "selection": s, "per_classifier": per}
        if s == "sensitive-val":
            details.update(not_private=True, notice=NOT_PRIVATE_NOTICE)
        value = float(np.mean([p["test_accuracy"] for p in per.values()]))
        out.append(MetricResult(names[s], value, "higher", len(test), len(synthetic), details=details))
    return out


def _missing(name: str, reason: str, synthetic: ImageDataset, real: ImageDataset) -> MetricResult:
    return MetricResult(name, None, "higher", len(real), len(synthetic), missing_reason=reason,
                        details={"protocol": PROTOCOL})


IS_OPTIONS = {"splits": 1, "bias": True}
"""DPImageBench's Inception Score (``compute_inception_score_from_logits(softmax(fc(pool)))``): one split, the
logits of pytorch-fid's ``fc`` with its bias."""
PR_OPTIONS = {"k": PR_K, "space": "inception"}
"""DPImageBench's precision/recall: k = 4 in Inception pool features, against the train split."""
_TRAIN_NAMES = {"FID": "FID-train", "precision": "precision-train", "recall": "recall-train"}


def fidelity_results(names: list[str], synthetic: ImageDataset, train: ImageDataset, *, device: str = "cpu",
                     cache_dir: str | Path | None = None, fid_weights_path: str | Path | None = None,
                     train_extractor: str | None = None, progress: bool = False) -> list[MetricResult]:
    """``FID-train`` and ``IS`` (``fid``), ``precision-train`` / ``recall-train`` with k = 4 (``prdc``), all in
    Inception space (the FID network, one forward pass), FID and precision/recall against the sensitive train
    split; each missing with the reason where the Inception weights are absent."""
    from . import compute_metrics

    options = ({"fid": {}, "is": IS_OPTIONS} if "fid" in names else {}) | ({"prdc": PR_OPTIONS} if "prdc" in names else {})
    if not options:
        return []
    results = compute_metrics(list(options), train, synthetic, cache_dir=cache_dir, device=device, progress=progress,
                              fid_weights_path=fid_weights_path, train_extractor=train_extractor, options=options)
    notice = {"protocol": PROTOCOL, "reference": f"{train.info.name}/train", "notice": TRAIN_REFERENCE_NOTICE}
    out = []
    for r in results:
        if r.name == "IS":  # no reference split: the train data is not used
            out.append(dataclasses.replace(r, details={**r.details, "protocol": PROTOCOL}))
        elif r.name in _TRAIN_NAMES:  # density and coverage are not in the protocol
            out.append(dataclasses.replace(r, name=_TRAIN_NAMES[r.name], details={**r.details, **notice}))
    return out


def evaluate(names: list[str], synthetic: ImageDataset, *, train: ImageDataset, test: ImageDataset,
             val: ImageDataset | None, selections: list[str], options: ProtocolOptions, seed: int = 0,
             device: str = "cpu", cache_dir: str | Path | None = None, fid_weights_path: str | Path | None = None,
             train_extractor: str | None = None, progress: bool = False) -> list[MetricResult]:
    """The protocol's results for ``names`` (a subset of :data:`PROTOCOL_METRICS`), in that order."""
    unknown = sorted(set(names) - set(PROTOCOL_METRICS))
    if unknown:
        raise ValueError(f"the dpimagebench protocol computes {list(PROTOCOL_METRICS)}; got {unknown}")
    out = []
    if "accuracy" in names:
        out += accuracy_results(synthetic, test, val, selections, options, seed=seed, device=device, progress=progress)
    out += fidelity_results([n for n in names if n != "accuracy"], synthetic, train, device=device, cache_dir=cache_dir,
                            fid_weights_path=fid_weights_path, train_extractor=train_extractor, progress=progress)
    return out
