"""PerSampleConv2d: per-sample gradients equal Opacus's own, and skipping the batch weight gradient changes
nothing but ``weight.grad``."""

from __future__ import annotations

import pytest
import torch
from opacus.grad_sample.conv import compute_conv_grad_sample
from torch import nn

from dpgen_bench_baselines.per_sample_conv import PerSampleConv2d, per_sample_conv2d_grads, skip_batch_weight_grads

CONFIGS = [
    dict(in_channels=3, out_channels=4, kernel_size=4, stride=2, padding=1),
    dict(in_channels=2, out_channels=6, kernel_size=3, stride=1, padding=0, bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=2),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=1, padding=1, groups=2),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["k4s2p1", "no-bias", "dilated-rect", "groups"])
def test_per_sample_grads_equal_opacus_unfold_sampler(cfg: dict) -> None:
    torch.manual_seed(0)
    ours = PerSampleConv2d(**cfg)
    stock = nn.Conv2d(**cfg)
    stock.load_state_dict(ours.state_dict())
    x = torch.randn(5, cfg["in_channels"], 11, 10)
    grad_out = torch.randn_like(stock(x))
    got = per_sample_conv2d_grads(ours, [x], grad_out)
    want = compute_conv_grad_sample(stock, [x], grad_out)
    torch.testing.assert_close(got[ours.weight], want[stock.weight], rtol=1e-4, atol=1e-5)
    assert (ours.bias in got) == (stock.bias is not None)
    if stock.bias is not None:
        torch.testing.assert_close(got[ours.bias], want[stock.bias])


def test_per_sample_grads_of_an_empty_batch_are_one_zero_row() -> None:
    conv = PerSampleConv2d(2, 3, 3)
    got = per_sample_conv2d_grads(conv, [torch.zeros(0, 2, 8, 8)], torch.zeros(0, 3, 6, 6))
    assert got[conv.weight].shape == (1, 3, 2, 3, 3) and not got[conv.weight].any()
    assert got[conv.bias].shape == (1, 3) and not got[conv.bias].any()


def test_skipping_the_batch_weight_grad_keeps_output_input_and_bias_grads() -> None:
    torch.manual_seed(0)
    full = PerSampleConv2d(3, 4, 4, 2, 1)
    skip = PerSampleConv2d(3, 4, 4, 2, 1)
    skip.load_state_dict(full.state_dict())
    assert skip_batch_weight_grads(nn.Sequential(skip, nn.ReLU())) == 1 and not skip.batch_grad
    x1 = torch.randn(2, 3, 8, 8, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = full(x1), skip(x2)
    torch.testing.assert_close(y1, y2)
    (y1**2).sum().backward()
    (y2**2).sum().backward()
    assert skip.weight.grad is None, "the batch weight gradient was computed anyway"
    torch.testing.assert_close(x2.grad, x1.grad)
    torch.testing.assert_close(skip.bias.grad, full.bias.grad)


def test_skipping_layer_output_still_requires_grad_when_its_input_does_not() -> None:
    conv = PerSampleConv2d(1, 2, 3)
    conv.batch_grad = False
    assert conv(torch.rand(1, 1, 5, 5)).requires_grad  # Opacus's backward hook must still fire on it


@pytest.mark.parametrize("kwargs", [{"padding": "same"}, {"padding": 1, "padding_mode": "reflect"}])
def test_unsupported_padding_is_refused_at_construction(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="padding"):
        PerSampleConv2d(1, 2, 3, **kwargs)
