"""The ``digit-simulator`` PE API: deterministic, MNIST-like, recognisable digits; variations scale with strength."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.data.types import DatasetInfo
from dpgen_bench_methods.pe_api import PE_APIS, Population, list_pe_apis
from dpgen_bench_methods.pe_digit_simulator import CLASS, FONT, FONTS, STATE_DIM, DigitSimulator

MNIST = DatasetInfo("mnist", 1, 28, 28, 10)
# Measured with the seeds below: 0.93 on 500 random samples, 0.93 after a 0.3 variation (chance: 0.1).
MIN_ACCURACY = 0.85


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def api() -> DigitSimulator:
    return DigitSimulator(MNIST)


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    """The digit-recognizer-py MNIST CNN (the weights ship in the package), 10-way logits."""
    from digit_recognizer.model import CNN
    from digit_recognizer.recognizer import DEFAULT_MODEL_PATH

    net = CNN()
    net.load_state_dict(torch.load(DEFAULT_MODEL_PATH, map_location="cpu", weights_only=True))
    return net.eval()


def accuracy(cnn: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor) -> float:
    with torch.no_grad():
        pred = cnn((images - 0.1307) / 0.3081).argmax(1)
    return (pred == classes).float().mean().item()


def state_classes(pop: Population) -> torch.Tensor:
    return pop.state[:, CLASS].long()


# ------------------------------------------------------------------ registration and output format
def test_registered() -> None:
    try:
        names = list_pe_apis()
    except ImportError:
        names = PE_APIS.names()
    assert "digit-simulator" in names
    assert PE_APIS.get("digit-simulator") is DigitSimulator
    assert DigitSimulator.channels == (1,) and DigitSimulator.image_sizes == (8, 28, 32)


@pytest.mark.parametrize("size", [8, 28, 32])
def test_images_shape_range_and_rendering_is_a_function_of_the_state(size: int) -> None:
    api = DigitSimulator(DatasetInfo("digits", 1, size, size, 10))
    labels = torch.arange(40) % 10
    pop = api.random(labels, gen(0))
    assert pop.images.shape == (40, 1, size, size) and pop.images.dtype == torch.float32
    assert pop.images.device.type == "cpu"
    assert pop.images.min() >= 0 and pop.images.max() <= 1
    solid = 0.6 if size == 8 else 0.9  # at 8x8 the thinnest pens (0.8 px) cover no pixel fully
    assert (pop.images.amax(dim=(1, 2, 3)) > solid).all()  # every image has ink
    assert torch.equal(pop.labels, labels) and torch.equal(state_classes(pop), labels)
    assert pop.state.shape == (40, STATE_DIM)
    assert torch.equal(api.render(pop.state), pop.images)


def test_digits_are_centred_and_sized_like_mnist(api: DigitSimulator) -> None:
    images = api.random(torch.arange(200) % 10, gen(1)).images[:, 0]
    ink = images.sum(dim=(1, 2))
    grid = torch.arange(28, dtype=torch.float32) + 0.5
    cy = (images.sum(2) * grid).sum(1) / ink
    cx = (images.sum(1) * grid).sum(1) / ink
    assert (cx - 14).abs().mean() < 1.5 and (cy - 14).abs().mean() < 1.5
    # mnist-5k: 19.6 ink rows and 15.4 ink columns on average, 11% with ink in the outer 2-px frame, mean 0.13
    rows, cols = ((images.amax(d) > 0.3).sum(1).float().mean() for d in (2, 1))
    assert 18 <= rows <= 21 and 13 <= cols <= 17, (rows, cols)
    frame = torch.ones(28, 28, dtype=torch.bool)
    frame[2:-2, 2:-2] = False
    assert (images[:, frame].amax(1) > 0.5).float().mean() < 0.15
    assert 0.1 < images.mean() < 0.17


# ------------------------------------------------------------------ determinism
def test_random_and_variation_are_deterministic_per_seed(api: DigitSimulator) -> None:
    labels = torch.arange(20) % 10
    a, b, c = api.random(labels, gen(3)), api.random(labels, gen(3)), api.random(labels, gen(4))
    assert torch.equal(a.images, b.images) and torch.equal(a.state, b.state)
    assert not torch.equal(a.state, c.state) and (a.images - c.images).abs().mean() > 0.05
    va, vb, vc = (api.variation(a, 0.3, gen(s)) for s in (5, 5, 6))
    assert torch.equal(va.images, vb.images) and torch.equal(va.state, vb.state)
    assert not torch.equal(va.state, vc.state) and (va.images - vc.images).abs().mean() > 0.005


def test_uses_no_global_random_state(api: DigitSimulator) -> None:
    labels = torch.full((10,), -1)
    torch.manual_seed(0)
    a = api.random(labels, gen(7))
    torch.manual_seed(1)
    b = api.random(labels, gen(7))
    assert torch.equal(a.state, b.state)


# ------------------------------------------------------------------ recognisable digits
def test_random_digits_are_recognised_by_an_mnist_cnn(api: DigitSimulator, cnn: torch.nn.Module) -> None:
    labels = torch.arange(500) % 10
    pop = api.random(labels, gen(0))
    acc = accuracy(cnn, pop.images, labels)
    assert acc >= MIN_ACCURACY, f"MNIST CNN accuracy on simulated digits {acc:.3f}"
    varied = api.variation(pop, 0.3, gen(1))
    assert torch.equal(varied.labels, labels) and torch.equal(state_classes(varied), labels)
    acc = accuracy(cnn, varied.images, labels)
    assert acc >= MIN_ACCURACY, f"MNIST CNN accuracy after a 0.3 variation {acc:.3f}"


def test_unlabelled_requests_draw_every_digit(api: DigitSimulator, cnn: torch.nn.Module) -> None:
    pop = api.random(torch.full((300,), -1), gen(2))
    assert (pop.labels == -1).all()
    classes = state_classes(pop)
    assert set(classes.tolist()) == set(range(10))
    assert accuracy(cnn, pop.images, classes) >= MIN_ACCURACY
    varied = api.variation(pop, 0.5, gen(3))
    assert (varied.labels == -1).all() and torch.equal(state_classes(varied), classes)


# ------------------------------------------------------------------ variation strength
def test_variation_distance_grows_with_strength(api: DigitSimulator, cnn: torch.nn.Module) -> None:
    labels = torch.arange(300) % 10
    pop = api.random(labels, gen(0))
    dist = {}
    for s in (0.05, 0.3, 1.0):
        varied = api.variation(pop, s, gen(1))
        dist[s] = (varied.images - pop.images).abs().mean().item()
        if s == 0.05:
            assert accuracy(cnn, varied.images, labels) >= MIN_ACCURACY
            changed = (varied.state[:, FONT] != pop.state[:, FONT]).float().mean().item()
            assert changed < 0.15
    assert dist[0.05] < dist[0.3] < dist[1.0], dist
    assert dist[0.05] < 0.3 * dist[1.0]
    # strength 1 is about as far as a fresh sample of the same classes
    fresh = (api.random(labels, gen(9)).images - pop.images).abs().mean().item()
    assert 0.7 * fresh < dist[1.0] < 1.3 * fresh


def test_font_is_redrawn_with_probability_about_strength(api: DigitSimulator) -> None:
    pop = api.random(torch.arange(2000) % 10, gen(0))
    varied = api.variation(pop, 0.3, gen(1))
    changed = (varied.state[:, FONT] != pop.state[:, FONT]).float().mean().item()
    expected = 0.3 * (1 - 1 / len(FONTS))
    assert abs(changed - expected) < 0.05, changed


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("options, match", [
    ({"colour": "red"}, "takes no option"),
    ({"fonts": ["Comic Sans"]}, "unknown: \\['Comic Sans'\\]"),
    ({"fonts": "all"}, "fonts"),
    ({"fonts": []}, "fonts"),
    ({"rotation": -1}, "'rotation'"),
    ({"rotation": "15"}, "'rotation'"),
    ({"shear": [0.5, 0.1]}, "'shear'"),
    ({"scale": [0.1, 1.0]}, "'scale'"),
    ({"aspect": 1.0}, "'aspect'"),
    ({"translation": True}, "'translation'"),
    ({"stroke": [2.0, math.nan]}, "'stroke'"),
    ({"elastic": 7}, "'elastic'"),
    ({"supersample": 0}, "'supersample'"),
    ({"batch_size": 1.5}, "'batch_size'"),
])
def test_bad_options_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DigitSimulator(MNIST, **options)


def test_options_change_the_priors() -> None:
    api = DigitSimulator(MNIST, fonts=["cmr10"], rotation=0, shear=[0, 0], scale=[1, 1], aspect=[1, 1],
                         translation=0, stroke=[2, 2], elastic=0)
    pop = api.random(torch.full((4,), 3), gen(0))
    assert torch.equal(pop.images[0], pop.images[3])  # nothing left to vary
    assert "cmr10" in api.describe() and "digit-simulator" in api.describe()


@pytest.mark.parametrize("strength", [0, -0.1, 1.5, math.nan, True, "0.3", None])
def test_bad_strength_is_refused(api: DigitSimulator, strength) -> None:
    pop = api.random(torch.arange(3), gen(0))
    with pytest.raises(ValueError, match="strength"):
        api.variation(pop, strength, gen(1))


@pytest.mark.parametrize("info, match", [
    (DatasetInfo("cifar", 3, 32, 32, 10), "1 channel"),
    (DatasetInfo("mnist16", 1, 16, 16, 10), "square images of size \\[8, 28, 32\\]"),
    (DatasetInfo("wide", 1, 28, 32, 10), "28x32"),
    (DatasetInfo("eleven", 1, 28, 28, 11), "digits 0..9"),
])
def test_unsupported_datasets_are_refused(info: DatasetInfo, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DigitSimulator(info)


def test_bad_labels_and_states_are_refused(api: DigitSimulator) -> None:
    with pytest.raises(ValueError, match="labels"):
        api.random(torch.tensor([0, 10]), gen(0))
    with pytest.raises(ValueError, match="labels"):
        api.random(torch.tensor([0.0, 1.0]), gen(0))
    pop = api.random(torch.arange(2), gen(0))
    with pytest.raises(ValueError, match="state"):
        api.variation(Population(pop.images, pop.labels, pop.state[:, :5]), 0.3, gen(1))


def test_a_dataset_with_fewer_classes_gets_the_first_digits():
    api = DigitSimulator(DatasetInfo("binary", 1, 28, 28, 2))
    pop = api.random(torch.full((40,), -1), gen(0))
    assert set(state_classes(pop).tolist()) == {0, 1}
    with pytest.raises(ValueError, match="digits 0..1 or -1"):
        api.random(torch.tensor([2]), gen(0))
