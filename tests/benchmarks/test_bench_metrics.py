"""Feature extraction + Gaussian statistics (+ one Fréchet distance) per evaluation extractor.

Run: ``pytest tests/benchmarks/test_bench_metrics.py --benchmark-only`` (skipped in the normal test run).
Reports images/s in each row's ``extra_info`` (and prints it). 5,000 mnist-5k images for digitcnn and
EfficientNet-Lite0 (pooled); Inception-v3 (random weights: the same network cost, no download) runs on 200
images since it upsamples every image to 299×299 — compare images/s, not totals. No timed asserts; each run
checks that it produced finite statistics of the right dimension.
"""

from __future__ import annotations

import time

import pytest
import torch

from dpgen_bench.data import load_splits
from dpgen_bench.features import get_extractor
from dpgen_bench.metrics.fid import InceptionV3Features
from dpgen_bench.metrics.frechet import frechet_distance_to_features, gaussian_stats


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    s = load_splits("mnist-5k")
    return torch.cat([s.train.images, s.test.images])  # 5,000 × 1 × 28 × 28


CASES = {
    "digitcnn": (lambda: get_extractor("digitcnn"), 5000, 256),
    "efficientnet-lite0-pooled": (lambda: get_extractor("efficientnet-lite0", layers="pooled"), 5000, 1280),
    "inception-v3-random-weights": (lambda: InceptionV3Features(random_weights=True).freeze(), 200, 2048),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bench_feature_stats(benchmark, images, name):
    build, n, dim = CASES[name]
    net = build()
    x = images[:n]
    ref = gaussian_stats(torch.randn(3000, dim, generator=torch.Generator().manual_seed(0)))

    def run():
        feats = net.extract(x, batch_size=250)
        return gaussian_stats(feats), frechet_distance_to_features(ref, feats)

    benchmark.group = "metrics-feature-stats"
    t0 = time.perf_counter()
    stats, fd = benchmark.pedantic(run, rounds=1, iterations=1)
    seconds = time.perf_counter() - t0
    assert stats.dim == dim and stats.n == n and fd == fd
    benchmark.extra_info["images"] = n
    benchmark.extra_info["images_per_s"] = round(n / seconds, 1)
    print(f"\n{name}: {n} images in {seconds:.1f} s = {n / seconds:.1f} images/s")
