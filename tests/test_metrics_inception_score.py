"""The Inception Score: torch-fidelity's definition on hand-computable logits, the ``is`` metric reading the
classifier head of the FID network (a stand-in classifier here: the real weights are never on this machine),
DPImageBench's variant (one split, logits with the bias), and IS missing with the reason, never 0, without the
weights."""

from __future__ import annotations

import pytest
import torch

from dpgen_bench.data import DatasetInfo, ImageDataset
from dpgen_bench.features.base import FeatureExtractor
from dpgen_bench.metrics import MetricSkippedWarning, compute_metrics, dpimagebench
from dpgen_bench.metrics import feature_spaces
from dpgen_bench.metrics.fid import INCEPTION_EXTRACTOR_NAME, INCEPTION_WEIGHTS_FILENAME
from dpgen_bench.metrics.inception_score import inception_score

C = 8  # classes of the stand-in classifier


def _one_hot_logits(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return 50.0 * torch.nn.functional.one_hot(labels, classes).double()  # softmax ≈ one-hot to 1e-20


@pytest.mark.parametrize("n,splits", [(30, 10), (7, 1)])
def test_uniform_predictions_score_1(n, splits):
    mean, std = inception_score(torch.zeros(n, 5), splits=splits)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_confident_predictions_over_c_balanced_classes_score_c():
    labels = torch.arange(4 * C) % C
    mean, std = inception_score(_one_hot_logits(labels, C), splits=1)
    assert mean == pytest.approx(C, rel=1e-9) and std == 0.0


@pytest.mark.parametrize("splits,per_split", [(1, 20), (4, 5), (10, 2)])
def test_the_score_is_the_mean_over_splits_of_each_splits_own_score(splits, per_split):
    """20 samples, each confident in a class of its own: any chunk of m samples scores m, whatever the shuffle."""
    mean, std = inception_score(_one_hot_logits(torch.arange(20), 20), splits=splits)
    assert mean == pytest.approx(per_split, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_more_splits_than_samples_is_refused():
    with pytest.raises(ValueError, match=r"splits must be in \[1, 3\] for 3 samples, got 10"):
        inception_score(torch.zeros(3, 4), splits=10)


# ---------------------------------------------------------------------------- the metric, with a stand-in head


class StandInInception(FeatureExtractor):
    """Stands in for the Inception network: its "pool features" are the first C pixels, its classifier head
    50 × features, and its head's bias +100 on class 0 (so with the bias every image is class 0)."""

    name = INCEPTION_EXTRACTOR_NAME

    def __init__(self, weights_path=None) -> None:
        super().__init__()
        self.weights_path = weights_path

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :C]

    def class_logits(self, features: torch.Tensor, bias: bool = False) -> torch.Tensor:
        logits = 50.0 * features
        return logits + 100.0 * torch.nn.functional.one_hot(torch.tensor(0), C) if bias else logits


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(feature_spaces, "InceptionV3Features", StandInInception)


def _images(classes: torch.Tensor) -> ImageDataset:
    """4x4 grey images, image i bright at pixel ``classes[i]`` only (class -1: all dark)."""
    images = torch.zeros(len(classes), 1, 4, 4)
    lit = classes >= 0
    images.view(len(classes), -1)[lit.nonzero().squeeze(1), classes[lit]] = 1.0
    return ImageDataset(images, classes.clamp(min=0) % 2, DatasetInfo("pixels", 1, 4, 4, 2))


def test_is_reads_the_classifier_head_of_the_fid_network_with_the_splits_and_bias_it_is_given(stand_in):
    real, balanced = _images(torch.zeros(5, dtype=torch.long)), _images(torch.arange(5 * C) % C)
    (res,) = compute_metrics(["is"], real, balanced, options={"is": {"splits": 1}})
    assert (res.name, res.direction, res.extractor) == ("IS", "higher", INCEPTION_EXTRACTOR_NAME)
    assert res.value == pytest.approx(C, rel=1e-9) and res.details["logits"] == "unbiased"
    (dark,) = compute_metrics(["is"], real, _images(torch.full((20,), -1)))  # uniform predictions
    assert dark.value == pytest.approx(1.0) and dark.details["splits"] == 10 and dark.details["std"] == pytest.approx(0)
    (biased,) = compute_metrics(["is"], real, balanced, options={"is": {"splits": 1, "bias": True}})
    assert biased.value == pytest.approx(1.0) and biased.details["logits"] == "with bias"


def test_is_with_fewer_samples_than_splits_is_missing_with_the_reason(stand_in):
    with pytest.warns(MetricSkippedWarning):
        (res,) = compute_metrics(["is"], _images(torch.arange(3)), _images(torch.arange(3)))
    assert res.value is None and res.missing_reason == "IS with 10 splits needs at least 10 samples, got 3"


def test_dpimagebench_reports_is_with_one_split_of_logits_with_the_bias(stand_in):
    train, synthetic = _images(torch.arange(12) % C), _images(torch.arange(4 * C) % C)
    out = {r.name: r for r in dpimagebench.fidelity_results(["fid"], synthetic, train)}
    assert list(out) == ["FID-train", "IS"]
    assert out["IS"].details["splits"] == 1 and out["IS"].details["logits"] == "with bias"
    assert out["IS"].value == pytest.approx(1.0)  # the stand-in's bias makes every image class 0
    assert out["IS"].details["protocol"] == "dpimagebench"


# ------------------------------------------------------------------------------------- without the weights


def test_is_without_the_inception_weights_is_missing_with_the_reason_never_0(tmp_path):
    gen = torch.Generator().manual_seed(0)
    real, fake = _images(torch.arange(12) % C), _images(torch.randint(0, C, (12,), generator=gen))
    missing = tmp_path / INCEPTION_WEIGHTS_FILENAME
    with pytest.warns(MetricSkippedWarning, match=INCEPTION_WEIGHTS_FILENAME):
        (res,) = compute_metrics(["is"], real, fake, fid_weights_path=missing, options={"is": {"splits": 2}})
    assert res.name == "IS" and res.value is None and str(missing) in res.missing_reason


def test_dpimagebench_is_without_the_weights_is_missing_with_the_weights_reason(tmp_path):
    missing = tmp_path / INCEPTION_WEIGHTS_FILENAME
    with pytest.warns(MetricSkippedWarning):
        out = {r.name: r for r in dpimagebench.fidelity_results(
            ["fid", "prdc"], _images(torch.arange(12) % C), _images(torch.arange(12) % C), fid_weights_path=missing)}
    assert list(out) == ["FID-train", "IS", "precision-train", "recall-train"]
    for r in out.values():
        assert r.value is None and INCEPTION_WEIGHTS_FILENAME in r.missing_reason, r
