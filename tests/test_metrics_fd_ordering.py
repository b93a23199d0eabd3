"""FD-<extractor> orders what it should on mnist-5k: two real halves < real vs blurred < real vs uniform noise."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from dpgen_bench.data import ImageDataset
from dpgen_bench.features import get_extractor
from dpgen_bench.metrics.frechet import frechet_distance_to_features, gaussian_stats


@pytest.fixture(scope="module")
def four_sets(mnist5k_splits) -> dict[str, torch.Tensor]:
    """Random halves (a, b) of all 5,000 mnist-5k images, b blurred (Gaussian σ=1 px), and uniform noise."""
    x = torch.cat([mnist5k_splits.train.images, mnist5k_splits.test.images])
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=gen)
    a, b = x[perm[:2500]], x[perm[2500:]]
    return {
        "a": a,
        "halves": b,
        "blurred": TF.gaussian_blur(b, [5, 5], [1.0, 1.0]).clamp(0, 1),
        "noise": torch.rand(b.shape, generator=gen),
    }


def _fds(extractor, sets: dict[str, torch.Tensor], n: int) -> dict[str, float]:
    ref = gaussian_stats(extractor.extract(sets["a"][:n]))
    return {k: frechet_distance_to_features(ref, extractor.extract(v[:n])) for k, v in sets.items() if k != "a"}


@pytest.mark.slow  # 4 × 2,500 images through the digit CNN: 12 s on 2 idle cores
def test_fd_digitcnn_orders_real_halves_below_blurred_below_noise(four_sets):
    fd = _fds(get_extractor("digitcnn"), four_sets, n=2500)
    assert fd["halves"] < fd["blurred"] < fd["noise"]
    assert fd["halves"] < 0.1 * fd["blurred"]  # sampling noise is far below a visible degradation


def test_fd_effnet_orders_real_halves_below_blurred_below_noise(four_sets):
    # 500 per set keeps this fast on 2 cores; the ordering is already clear at this size.
    fd = _fds(get_extractor("efficientnet-lite0", layers="pooled"), four_sets, n=500)
    assert fd["halves"] < fd["blurred"] < fd["noise"]


def test_digitcnn_features_are_256d_and_refuse_non_mnist_shapes():
    net = get_extractor("digitcnn")
    assert net.extract(torch.rand(3, 1, 28, 28)).shape == (3, 256)
    with pytest.raises(ValueError, match="grey 28x28"):
        net(torch.rand(2, 3, 32, 32))


def test_digitcnn_classifier_head_on_its_features_recognises_real_digits(mnist5k_splits):
    # Proves the bundled weights and the MNIST normalisation are wired as the package trained them.
    net = get_extractor("digitcnn")
    from digit_recognizer.model import CNN

    head = CNN().fc_layers[2]
    state = torch.load(net.weights_path, weights_only=True)
    head.load_state_dict({k[len("fc_layers.2."):]: v for k, v in state.items() if k.startswith("fc_layers.2.")})
    test: ImageDataset = mnist5k_splits.test
    with torch.no_grad():
        pred = head(net.extract(test.images)).argmax(1)
    assert (pred == test.labels).double().mean() > 0.95
