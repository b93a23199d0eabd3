"""DP-MEPF speed: the feature pass and the generator step, each beside the bare network in the same run.

Run: ``pytest tests/benchmarks/test_bench_mepf.py --benchmark-only`` (skipped in the normal test run).

* group ``embedding-pass``: images/s through ``get_extractor("efficientnet-lite0").extract`` (default
  layers, grey 28×28 → 32×32) vs a bare ``torch.no_grad()`` forward of the same published network (the
  un-fused EfficientNet-Lite0 with the same input handling and the same layer outputs) on the same batches.
  Target: library / bare throughput ≥ 0.9.
* group ``generator-step``: one DP-MEPF training step (batch 100: generate, embed φ1+φ2, update m, update
  the generator) vs the bare forward+backward of the extractor network on a batch of 100.
  Target: step ≤ 1.15 × bare pass.

No timed asserts: compare the medians in the printed table. Each benchmark checks its output.
Runs single-threaded by default (``DPGEN_BENCH_THREADS`` overrides): on a shared 2-core machine two
intra-op threads oversubscribe and times swing 10×, which says nothing about the code.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.features import get_extractor
from dpgen_bench.features.efficientnet_lite0 import EfficientNetLite0, weights_path
from dpgen_bench.features.preprocess import TF_LITE_MEAN, TF_LITE_STD
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_methods.dp_mepf import DPMEPF

N_IMAGES, BATCH = 400, 100
INFO = DatasetInfo("bench", 1, 28, 28, 10)


@pytest.fixture(scope="module", autouse=True)
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("DPGEN_BENCH_THREADS", "1")))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(N_IMAGES, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def bare_net() -> EfficientNetLite0:
    net = EfficientNetLite0().eval()
    net.load_state_dict(torch.load(weights_path(), weights_only=True))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


_MEAN = torch.tensor(TF_LITE_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(TF_LITE_STD).view(1, 3, 1, 1)


def bare_features(net: EfficientNetLite0, x: torch.Tensor) -> torch.Tensor:
    """What a user would write by hand: grey→RGB, resize to 32, normalise, stem + 16 block outputs."""
    x = F.interpolate(x.expand(-1, 3, -1, -1), size=(32, 32), mode="bilinear", align_corners=False)
    h = net._bn0(net._conv_stem((x - _MEAN) / _STD))
    out = [h.flatten(1)]
    h = F.relu6(h)
    for block in net._blocks:
        h = block(h)
        out.append(h.flatten(1))
    return torch.cat(out, dim=1)


@pytest.mark.benchmark(group="embedding-pass")
def test_bench_embedding_pass_library(benchmark, images):
    ext = get_extractor("efficientnet-lite0")
    feats = benchmark.pedantic(lambda: ext.extract(images, batch_size=BATCH), rounds=3, iterations=1,
                               warmup_rounds=1)
    assert feats.shape == (N_IMAGES, 20032)
    benchmark.extra_info["images_per_s"] = N_IMAGES / benchmark.stats.stats.median


@pytest.mark.benchmark(group="embedding-pass")
def test_bench_embedding_pass_bare_torch(benchmark, images, bare_net):
    def run():
        with torch.no_grad():
            return torch.cat([bare_features(bare_net, images[i : i + BATCH]) for i in range(0, N_IMAGES, BATCH)])

    feats = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    lib = get_extractor("efficientnet-lite0").extract(images[:BATCH])
    torch.testing.assert_close(lib, feats[:BATCH], rtol=1e-3, atol=1e-3)
    benchmark.extra_info["images_per_s"] = N_IMAGES / benchmark.stats.stats.median


@pytest.mark.benchmark(group="generator-step")
def test_bench_generator_step_dp_mepf(benchmark, images):
    method = DPMEPF({"batch_size": BATCH, "progress": False, "generator": "conv"}, INFO, seed=0)
    data = ImageDataset(images[:200], torch.arange(200) % 10, INFO)
    released = method.release(data, PrivacyBudget(math.inf, 1e-5), PrivacyLedger())  # public stand-in data
    real = dict(released.means)
    ma = {k: torch.zeros_like(v, requires_grad=True) for k, v in real.items()}
    opt_g = torch.optim.Adam(method.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_m = torch.optim.Adam(list(ma.values()), lr=1e-3, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(0)
    loss = benchmark.pedantic(lambda: method.training_step(real, ma, opt_g, opt_m, 10, gen), rounds=5,
                              iterations=1, warmup_rounds=1)
    assert math.isfinite(loss)


@pytest.mark.benchmark(group="generator-step")
def test_bench_bare_extractor_forward_backward(benchmark, images, bare_net):
    x = images[:BATCH].clone()

    def run():
        xx = x.clone().requires_grad_(True)
        bare_features(bare_net, xx).square().sum().backward()
        return xx.grad

    grad = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.benchmark(group="generator-step")
def test_bench_library_extractor_forward_backward(benchmark, images):
    """The library's (fused) extractor alone: how much of the step is the extractor itself."""
    ext = get_extractor("efficientnet-lite0")
    x = images[:BATCH].clone()

    def run():
        xx = x.clone().requires_grad_(True)
        ext(xx).square().sum().backward()
        return xx.grad

    grad = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert grad is not None and grad.abs().sum() > 0
