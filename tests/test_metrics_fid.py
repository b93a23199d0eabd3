"""FID plumbing without a download: torch-fidelity's Inception with random weights, and the missing-weights path."""

from __future__ import annotations

import warnings

import pytest
import torch

from dpgen_bench.data import DatasetInfo, ImageDataset
from dpgen_bench.metrics import MetricSkippedWarning, compute_metrics
from dpgen_bench.metrics import fid as fid_mod
from dpgen_bench.metrics.fid import (
    INCEPTION_WEIGHTS_FILENAME,
    INCEPTION_WEIGHTS_URL,
    InceptionV3Features,
    InceptionWeightsMissing,
    resolve_inception_weights,
)
from dpgen_bench.metrics.frechet import frechet_distance_to_features, gaussian_stats

GREY = DatasetInfo("grey16", 1, 16, 16, 2)


def _ds(images: torch.Tensor) -> ImageDataset:
    return ImageDataset(images, torch.arange(len(images)) % 2, DatasetInfo("x", *images.shape[1:], 2))


@pytest.fixture(scope="module")
def random_inception() -> InceptionV3Features:
    return InceptionV3Features(random_weights=True).freeze()


def test_random_weight_inception_maps_grey_and_rgb_unit_images_to_2048_pool_features(random_inception):
    gen = torch.Generator().manual_seed(0)
    grey = torch.rand(3, 1, 20, 20, generator=gen)
    f_grey = random_inception.extract(grey)
    f_rgb = random_inception.extract(grey.expand(-1, 3, -1, -1))
    assert f_grey.shape == (3, 2048) and torch.isfinite(f_grey).all()
    # Grey is repeated to RGB: the same image either way gives the same features.
    torch.testing.assert_close(f_grey, f_rgb)


def test_random_weight_inception_feeds_the_frechet_distance(random_inception):
    gen = torch.Generator().manual_seed(1)
    a = random_inception.extract(torch.rand(4, 3, 16, 16, generator=gen))
    b = random_inception.extract(torch.rand(4, 3, 16, 16, generator=gen) * 0.2)
    ref = gaussian_stats(a)
    assert frechet_distance_to_features(ref, b) > 0
    assert frechet_distance_to_features(ref, a) == pytest.approx(0.0, abs=1e-6 * float(ref.sigma.trace()))


def test_inception_rejects_images_outside_unit_range(random_inception):
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        random_inception(torch.full((1, 3, 8, 8), 255.0))


def test_trained_weights_are_loaded_with_weights_only_from_a_given_path(tmp_path, random_inception):
    # A state dict saved from the random network stands in for the real checkpoint file.
    path = tmp_path / INCEPTION_WEIGHTS_FILENAME
    torch.save(random_inception.net.state_dict(), path)
    net = InceptionV3Features(path).freeze()
    assert net.weights_path == str(path)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(net.extract(x), random_inception.extract(x))


def test_missing_weights_message_names_the_file_where_to_put_it_and_the_url(tmp_path):
    where = tmp_path / "nowhere" / INCEPTION_WEIGHTS_FILENAME
    with pytest.raises(InceptionWeightsMissing) as err:
        resolve_inception_weights(where)
    msg = str(err.value)
    assert "\n" not in msg and INCEPTION_WEIGHTS_FILENAME in msg and str(where) in msg and INCEPTION_WEIGHTS_URL in msg


def test_default_path_without_network_reports_the_torch_hub_location(monkeypatch, tmp_path):
    monkeypatch.setattr(fid_mod, "default_inception_weights_path", lambda: tmp_path / INCEPTION_WEIGHTS_FILENAME)

    def no_network(*a, **k):
        raise OSError("network unreachable")

    calls = []
    monkeypatch.setattr(fid_mod, "download_inception_weights", lambda *a, **k: calls.append(1) or no_network())
    monkeypatch.setattr(fid_mod, "_FAILED_DOWNLOADS", set())
    for _ in range(2):
        with pytest.raises(InceptionWeightsMissing, match=str(tmp_path)):
            resolve_inception_weights(None)
    assert len(calls) == 1  # the network is tried once per process, not on every evaluation


def test_compute_metrics_skips_fid_with_a_one_line_notice_never_zero(tmp_path):
    gen = torch.Generator().manual_seed(3)
    real, fake = _ds(torch.rand(6, 1, 16, 16, generator=gen)), _ds(torch.rand(6, 1, 16, 16, generator=gen))
    missing = tmp_path / INCEPTION_WEIGHTS_FILENAME
    with pytest.warns(MetricSkippedWarning, match=INCEPTION_WEIGHTS_FILENAME) as rec:
        (res,) = compute_metrics(["fid"], real, fake, fid_weights_path=missing)
    assert res.name == "FID" and res.value is None
    assert str(missing) in res.missing_reason and "\n" not in str(rec[0].message)
    assert res.n_real == 6 and res.n_fake == 6


def test_compute_metrics_fid_runs_end_to_end_on_given_weights(tmp_path, random_inception):
    path = tmp_path / INCEPTION_WEIGHTS_FILENAME
    torch.save(random_inception.net.state_dict(), path)
    gen = torch.Generator().manual_seed(4)
    real, fake = _ds(torch.rand(5, 3, 16, 16, generator=gen)), _ds(torch.rand(4, 3, 16, 16, generator=gen) * 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricSkippedWarning)
        (res,) = compute_metrics(["fid"], real, fake, fid_weights_path=path)
    assert res.name == "FID" and res.value is not None and res.value > 0
    assert res.extractor == "inception-v3-tf-2015-12-05" and (res.n_real, res.n_fake) == (5, 4)
    assert "tf1-bilinear" in res.details["resize"] and "uint8" in res.details["input"]


def test_class_logits_on_pool_features_are_torch_fidelitys_own_logits(random_inception):
    """The IS head reuses the FID pool features; it must give what torch-fidelity's network outputs itself
    (``logits_unbiased``: pool @ W, the original IS code's; ``logits``: with the bias, pytorch-fid's fc)."""
    x = (torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 255).round().to(torch.uint8)
    net = random_inception.net
    kept = net.features_list
    net.features_list = ["2048", "logits_unbiased", "logits"]
    try:
        pool, unbiased, biased = net(x)
    finally:
        net.features_list = kept
    torch.testing.assert_close(random_inception.class_logits(pool), unbiased)
    torch.testing.assert_close(random_inception.class_logits(pool, bias=True), biased)
    assert unbiased.shape == (2, 1008) and not torch.allclose(unbiased, biased)
