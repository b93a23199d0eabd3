"""compute_metrics contract: names, sample counts, missing-with-reason, same-space flag, reference-stats cache."""

from __future__ import annotations

import warnings

import pytest
import torch

from dpgen_bench.data import DatasetInfo, ImageDataset
from dpgen_bench.metrics import (
    METRICS,
    MetricResult,
    MetricSkippedWarning,
    SameFeatureSpaceWarning,
    compute_metrics,
    list_metrics,
)
from dpgen_bench.metrics.accuracy import AccuracyOptions
from dpgen_bench.metrics.frechet_metrics import frechet_names

FAST = AccuracyOptions(logreg_max_iter=50, mlp_max_iter=10, cnn_epochs=1, cnn_width=4)


@pytest.fixture(scope="module")
def real_and_fake(mnist5k_splits) -> tuple[ImageDataset, ImageDataset]:
    real = mnist5k_splits.test.subset(torch.arange(0, 1000, 5))  # 200
    fake = mnist5k_splits.train.subset(torch.arange(0, 4000, 25))  # 160
    return real, fake


def _rgb(n: int, seed: int) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.rand(n, 3, 16, 16, generator=gen), torch.arange(n) % 3, DatasetInfo("rgb16", 3, 16, 16, 3))


def test_every_metric_a_shipped_config_names_is_registered():
    from pathlib import Path

    import yaml

    root = Path(__file__).parents[1]
    configs = [*root.joinpath("configs").glob("*.yaml"), root / "dpgen_bench" / "runner" / "default.yaml"]
    named = {m for path in configs for m in yaml.safe_load(path.read_text())["evaluation"]["metrics"]}
    assert {"fid", "fd-digitcnn", "accuracy", "prdc"} <= named  # the configs do name the built-ins
    assert named <= set(list_metrics())


def test_names_expand_to_result_names_with_directions_and_sample_counts(real_and_fake):
    real, fake = real_and_fake
    res = compute_metrics(["fd-digitcnn", "accuracy", "prdc"], real, fake,
                          options={"accuracy": FAST, "prdc": {"space": "digitcnn"}})
    assert [r.name for r in res] == [
        "FD-digitcnn", "acc-logreg", "acc-mlp", "acc-cnn", "precision", "recall", "density", "coverage"
    ]
    by = {r.name: r for r in res}
    assert by["FD-digitcnn"].direction == "lower" and by["acc-cnn"].direction == "higher"
    declared = {result: d for name in ("fd-digitcnn", "accuracy", "prdc") for result, d in METRICS.get(name).results.items()}
    assert {r.name: r.direction for r in res} == declared  # each result carries its unit's declared direction
    assert all((r.n_real, r.n_fake) == (200, 160) for r in res)
    assert all(r.value is not None and r.missing_reason is None for r in res)
    assert by["precision"].extractor == "digitcnn" and by["precision"].details["k"] == 5
    assert by["acc-logreg"].extractor is None and "LogisticRegression" in by["acc-logreg"].details["classifier"]
    assert by["FD-digitcnn"].to_dict()["value"] == by["FD-digitcnn"].value


def test_metric_that_does_not_apply_is_none_with_a_reason_never_zero():
    real, fake = _rgb(12, 0), _rgb(10, 1)
    unlabelled = ImageDataset(fake.images, fake.labels, fake.info, meta={"labelled": False})
    with pytest.warns(MetricSkippedWarning):
        res = compute_metrics(["fd-digitcnn", "accuracy"], real, unlabelled)
    assert [r.name for r in res] == ["FD-digitcnn", "acc-logreg", "acc-mlp", "acc-cnn"]
    assert all(r.value is None for r in res)
    assert "grey 28x28" in res[0].missing_reason and "unlabelled" in res[1].missing_reason


def test_prdc_defaults_to_effnet_space_even_for_grey_digits(real_and_fake):
    real, fake = real_and_fake
    res = compute_metrics(["prdc"], real, fake)
    assert {r.extractor for r in res} == {"efficientnet-lite0"}


def test_prdc_on_colour_images_uses_effnet_and_records_it():
    res = compute_metrics(["prdc", "fd-effnet"], _rgb(12, 0), _rgb(10, 1))
    assert {r.extractor for r in res} == {"efficientnet-lite0"}
    assert all(r.value is not None for r in res)


def test_same_feature_space_as_training_is_flagged_and_warned(real_and_fake):
    real, fake = real_and_fake
    with pytest.warns(SameFeatureSpaceWarning, match="digitcnn"):
        res = compute_metrics(["fd-digitcnn", "fd-effnet"], real, fake, train_extractor="digitcnn")
    assert [r.same_space_as_training for r in res] == [True, False]


def test_no_same_space_warning_when_the_method_trained_elsewhere(real_and_fake):
    real, fake = real_and_fake
    with warnings.catch_warnings():
        warnings.simplefilter("error", SameFeatureSpaceWarning)
        (res,) = compute_metrics(["fd-digitcnn"], real, fake, train_extractor="efficientnet-lite0")
    assert not res.same_space_as_training


def test_reference_stats_are_cached_on_disk_and_keyed_by_content(tmp_path, real_and_fake):
    real, fake = real_and_fake
    (first,) = compute_metrics(["fd-digitcnn"], real, fake, cache_dir=tmp_path)
    (second,) = compute_metrics(["fd-digitcnn"], real, fake, cache_dir=tmp_path)
    assert not first.details["reference_stats_from_cache"] and second.details["reference_stats_from_cache"]
    assert first.value == pytest.approx(second.value, rel=1e-12)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob("*.tmp"))
    changed = ImageDataset(real.images.flip(-1), real.labels, real.info, real.split)
    (third,) = compute_metrics(["fd-digitcnn"], changed, fake, cache_dir=tmp_path)
    assert not third.details["reference_stats_from_cache"] and len(list(tmp_path.glob("*.npz"))) == 2


def test_images_outside_unit_range_and_unknown_names_are_rejected_by_name(real_and_fake):
    real, fake = real_and_fake
    scaled = ImageDataset(fake.images * 255, fake.labels, fake.info)
    with pytest.raises(ValueError, match=r"synthetic images must lie in \[0, 1\].*255"):
        compute_metrics(["fd-digitcnn"], real, scaled)
    with pytest.raises(ValueError, match="'fid-typo'"):
        compute_metrics(["fid-typo"], real, fake)


def test_metric_result_requires_exactly_one_of_value_and_reason():
    with pytest.raises(ValueError, match="exactly one"):
        MetricResult("FID", None, "lower", 1, 1)
    with pytest.raises(ValueError, match="direction"):
        MetricResult("FID", 1.0, "up", 1, 1)  # type: ignore[arg-type]


def test_fid_is_the_name_of_a_frechet_distance_only_in_inception_space():
    assert frechet_names("inception") == ("fid", "FID") and frechet_names("effnet") == ("fd-effnet", "FD-effnet")
    assert [n for n, u in METRICS.items() if "FID" in u.results] == ["fid"]
    assert METRICS.get("fid").feature_space == "inception"
    for space in ("digitcnn", "effnet"):
        assert dict(METRICS.get(f"fd-{space}").results) == {f"FD-{space}": "lower"}

