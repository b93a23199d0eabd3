"""Feature extractors: shapes, layer options, input handling, frozen weights, weight-loading errors."""

from __future__ import annotations

import pytest
import torch

from dpgen_bench.features import get_extractor, list_extractors
from dpgen_bench.features import torchvision_nets
from dpgen_bench.features.efficientnet_lite0 import EfficientNetLite0, weights_path




def test_all_extractors_are_registered():
    assert {"random-cnn", "efficientnet-lite0", "resnet18", "vgg19"} <= set(list_extractors())


def test_effnet_default_layers_give_dp_mepf_dimension_20032_for_grey_28x28():
    ext = get_extractor("efficientnet-lite0")
    x = torch.rand(3, 1, 28, 28)
    assert ext(x).shape == (3, 20032)


def test_effnet_pooled_layer_gives_1280_imagenet_features():
    ext = get_extractor("efficientnet-lite0", layers="pooled")
    assert ext(torch.rand(2, 3, 32, 32)).shape == (2, 1280)


def test_effnet_grey_input_equals_the_same_image_repeated_to_rgb():
    ext = get_extractor("efficientnet-lite0", layers="stem,block3")
    grey = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(ext(grey), ext(grey.repeat(1, 3, 1, 1)))


def test_effnet_resizes_28_to_32_bilinear_and_keeps_native_32():
    ext = get_extractor("efficientnet-lite0", layers="stem")
    assert ext(torch.rand(1, 1, 28, 28)).shape == ext(torch.rand(1, 1, 32, 32)).shape == (1, 32 * 16 * 16)
    assert ext(torch.rand(1, 3, 64, 64)).shape == (1, 32 * 32 * 32)  # larger images keep their size


def test_effnet_fused_channels_last_matches_the_plain_network():
    fused, plain = get_extractor("efficientnet-lite0"), get_extractor("efficientnet-lite0", fuse=False)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-4, atol=1e-3)
    unfused = get_extractor("efficientnet-lite0", fuse=False, channels_last=False)
    torch.testing.assert_close(unfused(x), plain(x), rtol=1e-4, atol=1e-3)


def test_effnet_reproduces_the_reference_implementation_logits():
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0").eval()
    state = torch.load(weights_path(), weights_only=True)
    ref.load_state_dict(state)
    net = EfficientNetLite0().eval()
    net.load_state_dict(state)
    x = (torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)) - 0.5) * 2
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-4, atol=1e-4)


def test_unknown_layer_name_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="block99.*valid layers"):
        get_extractor("efficientnet-lite0", layers=["block99"], weights=None)


@pytest.mark.parametrize("name,dim", [("vgg19", 303104), ("resnet18", 64 * 64 + 128 * 16 + 256 * 4 + 512)])
def test_torchvision_nets_default_layers_without_weights(name, dim):
    ext = get_extractor(name, weights=None)
    assert ext(torch.rand(2, 1, 28, 28)).shape == (2, dim)


def test_vgg19_pooled_is_512_dims():
    assert get_extractor("vgg19", weights=None, layers="pooled")(torch.rand(1, 3, 32, 32)).shape == (1, 512)


def test_missing_torchvision_weights_name_the_file_and_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(torchvision_nets.WeightsUnavailableError) as err:
        get_extractor("resnet18")
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg and str(tmp_path) in msg


@pytest.mark.parametrize("name,opts", [("efficientnet-lite0", {}), ("resnet18", {"weights": None}),
                                       ("random-cnn", {})])
def test_extractors_are_frozen_and_differentiable_wrt_input(name, opts):
    ext = get_extractor(name, **opts)
    assert not ext.training and all(not p.requires_grad for p in ext.parameters())
    ext.train()  # must stay in eval mode: batch-norm statistics never move
    assert not ext.training
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    ext(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in ext.parameters())


def test_extract_batches_match_a_single_forward():
    ext = get_extractor("efficientnet-lite0", layers="pooled")
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        full = ext(x)
    torch.testing.assert_close(ext.extract(x, batch_size=3), full, rtol=1e-5, atol=1e-5)


def test_bad_channel_count_is_refused():
    with pytest.raises(ValueError, match="1 or 3 channels, got 2"):
        get_extractor("efficientnet-lite0", layers="stem")(torch.rand(1, 2, 32, 32))
