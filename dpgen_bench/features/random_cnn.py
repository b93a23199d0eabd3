"""``random-cnn``: a small seeded random-weight CNN, for tests and ablations (no download, fast)."""

from __future__ import annotations

import torch
from torch import nn

from .base import FeatureExtractor, register_extractor


class RandomCNN(FeatureExtractor):
    name = "random-cnn"

    def __init__(self, seed: int = 0, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.in_channels = in_channels
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            ]
        )
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * 9
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / fan_in**0.5)
                conv.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        x = x * 2 - 1
        feats = []
        for conv in self.convs:
            x = conv(x)
            feats.append(x.flatten(1))  # activations before the non-linearity, as in DP-MEPF
            x = torch.relu(x)
        return torch.cat(feats, dim=1)


@register_extractor("random-cnn", trained_on=())
def random_cnn(seed: int = 0, width: int = 16) -> RandomCNN:
    return RandomCNN(seed=seed, width=width)
