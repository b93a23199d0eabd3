"""Downstream accuracy: classifiers trained on synthetic labelled images, tested on the real test split.

Three classifiers, each reported separately (accuracy in [0, 1], higher is better):

* ``logreg`` — scikit-learn multinomial logistic regression on flattened pixels;
* ``mlp``    — scikit-learn MLP (one hidden layer of 128 ReLU units, Adam, early stopping) on flattened pixels;
* ``cnn``    — a small torch CNN (two conv blocks + linear head) trained with Adam.

Everything is seeded, so a given (synthetic, real) pair always yields the same numbers. The metric unit
``accuracy`` (→ ``acc-logreg``, ``acc-mlp``, ``acc-cnn``) is at the end of this module; its options
(:class:`AccuracyOptions`, ``evaluation.options.accuracy`` in a config) are the classifiers' training budgets.
"""

from __future__ import annotations

import warnings
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from ..data.types import ImageDataset
from .base import Measurement, MetricOptions, register_metric
from .context import MetricContext

CLASSIFIERS = ("logreg", "mlp", "cnn")

_Count = Annotated[int, Field(gt=0, strict=True)]  # strict: 2.5 or true is an error, not silently 2 or 1


class AccuracyOptions(MetricOptions):
    """Training budgets. Defaults are sized for ≤ 10k images of ≤ 32×32 on a CPU in well under a minute each
    (not tuned on any reported split)."""

    logreg_max_iter: _Count = 100
    """lbfgs iterations of the logistic regression."""
    mlp_hidden: _Count = 128
    """Hidden ReLU units of the MLP."""
    mlp_max_iter: _Count = 100
    """Adam epochs of the MLP."""
    cnn_epochs: _Count = 5
    """Epochs of the small CNN."""
    cnn_batch_size: _Count = 64
    """Batch size of the small CNN."""
    cnn_lr: Annotated[float, Field(gt=0, strict=True)] = 3e-3
    """Adam learning rate of the small CNN."""
    cnn_width: _Count = 32
    """Channels of the CNN's first conv (the second has twice as many)."""


def _flat(ds: ImageDataset) -> np.ndarray:
    return ds.images.detach().to("cpu", torch.float32).reshape(len(ds), -1).numpy()


def _check_pair(train: ImageDataset, test: ImageDataset) -> None:
    if train.images.shape[1:] != test.images.shape[1:]:
        raise ValueError(
            f"synthetic images have shape {tuple(train.images.shape[1:])}, real test images {tuple(test.images.shape[1:])}"
        )
    if len(torch.unique(train.labels)) < 2:
        raise ValueError("the synthetic training set must contain at least 2 classes to train a classifier")


def logreg_accuracy(train: ImageDataset, test: ImageDataset, seed: int = 0, options: AccuracyOptions = AccuracyOptions()) -> float:
    from sklearn.exceptions import ConvergenceWarning  # on use: `dpgen-bench list` stays cheap
    from sklearn.linear_model import LogisticRegression

    _check_pair(train, test)
    clf = LogisticRegression(max_iter=options.logreg_max_iter, random_state=seed)
    with warnings.catch_warnings():
        # A capped iteration budget is a deliberate, recorded choice, not an error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(_flat(train), train.labels.numpy())
    return float((clf.predict(_flat(test)) == test.labels.numpy()).mean())


def mlp_accuracy(train: ImageDataset, test: ImageDataset, seed: int = 0, options: AccuracyOptions = AccuracyOptions()) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    _check_pair(train, test)
    # Early stopping needs a validation slice with every class; fall back to a fixed budget on tiny sets.
    early = len(train) >= 200
    clf = MLPClassifier(
        hidden_layer_sizes=(options.mlp_hidden,),
        max_iter=options.mlp_max_iter,
        early_stopping=early,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(_flat(train), train.labels.numpy())
    return float((clf.predict(_flat(test)) == test.labels.numpy()).mean())


class SmallCNN(nn.Module):
    """conv(3×3)–ReLU–maxpool ×2, adaptive average pool to 4×4, linear: ~30k parameters at width 32."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),  # any input size → 4×4, keeping coarse spatial layout
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x * 2 - 1))


def cnn_accuracy(
    train: ImageDataset,
    test: ImageDataset,
    seed: int = 0,
    options: AccuracyOptions = AccuracyOptions(),
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> float:
    _check_pair(train, test)
    device = torch.device(device)
    num_classes = max(train.info.num_classes, int(train.labels.max()) + 1, int(test.labels.max()) + 1)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's global RNG
        torch.manual_seed(seed)
        model = SmallCNN(train.images.shape[1], num_classes, options.cnn_width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=options.cnn_lr)
    x_train = train.images.detach().float().cpu()
    y_train = train.labels.cpu()
    model.train()
    for _ in tqdm(range(options.cnn_epochs), desc="acc-cnn", disable=not progress, leave=False):
        order = torch.randperm(len(x_train), generator=gen)
        for start in range(0, len(order), options.cnn_batch_size):
            idx = order[start : start + options.cnn_batch_size]
            loss = nn.functional.cross_entropy(model(x_train[idx].to(device)), y_train[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 512):
            logits = model(test.images[start : start + 512].float().to(device))
            correct += int((logits.argmax(1).cpu() == test.labels[start : start + 512]).sum())
    return correct / len(test)


# ------------------------------------------------------------------------------------------ the metric unit


def _unusable_labels(fake: ImageDataset, real: ImageDataset) -> str | None:
    """Why no classifier can be trained on ``fake`` and scored on ``real``, or None."""
    if fake.meta.get("labelled") is False or bool((fake.labels < 0).any()):
        return "synthetic set is unlabelled"
    if int(fake.labels.max()) >= real.info.num_classes:
        return f"synthetic label {int(fake.labels.max())} outside the {real.info.num_classes} real classes"
    return None


@register_metric("accuracy", results={"acc-logreg": "higher", "acc-mlp": "higher", "acc-cnn": "higher"},
                 options=AccuracyOptions)
def accuracy_metric(ctx: MetricContext, options: AccuracyOptions) -> dict[str, Measurement]:
    """Accuracy in [0, 1] on the real split of each classifier trained on the synthetic set."""
    real, fake, seed = ctx.real, ctx.synthetic, ctx.seed
    classifiers = {
        "acc-logreg": ("sklearn LogisticRegression(lbfgs) on pixels", lambda: logreg_accuracy(fake, real, seed, options)),
        "acc-mlp": (f"sklearn MLPClassifier({options.mlp_hidden},) on pixels", lambda: mlp_accuracy(fake, real, seed, options)),
        "acc-cnn": (
            f"torch SmallCNN(width={options.cnn_width}), {options.cnn_epochs} epochs Adam",
            lambda: cnn_accuracy(fake, real, seed, options, device=ctx.device, progress=ctx.progress),
        ),
    }
    reason = _unusable_labels(fake, real)
    single = reason is None and len(torch.unique(fake.labels)) < 2
    out: dict[str, Measurement] = {}
    for name, (classifier, run) in classifiers.items():
        details = {"classifier": classifier, "seed": seed, "train": "synthetic", "test": f"{real.info.name}/{real.split}"}
        if reason is not None:
            out[name] = Measurement.missing(reason, details)
        elif single:
            # One class only: any classifier can only predict it; report that constant predictor's accuracy.
            only = int(fake.labels[0])
            details["note"] = f"synthetic set has the single class {only}: constant predictor"
            out[name] = Measurement(float((real.labels == only).double().mean()), details=details)
        else:
            out[name] = Measurement(run(), details=details)
    return out
