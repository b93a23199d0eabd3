"""``digitcnn``: the pre-trained MNIST CNN shipped in the PyPI package ``digit-recognizer-py`` (no download).

Features are the penultimate layer: the 256-d ReLU output of the first fully connected layer, i.e. the
input of the 10-way classifier (the analogue of Inception's pool features). Only grey 28×28 images are
accepted — the network was trained on MNIST and resizing colour images into it would not be meaningful.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .base import FeatureExtractor, register_extractor

# The normalisation the package trains and predicts with (``DigitRecognizer._transform``): MNIST mean/std.
_MNIST_MEAN = 0.1307
_MNIST_STD = 0.3081


def default_weights_path() -> Path:
    """The checkpoint bundled inside ``digit-recognizer-py``."""
    from digit_recognizer.recognizer import DEFAULT_MODEL_PATH

    return Path(DEFAULT_MODEL_PATH)


class DigitCNN(FeatureExtractor):
    """(N, 1, 28, 28) images in [0, 1] → (N, 256) penultimate features of the digit-recognizer CNN."""

    name = "digitcnn"
    num_features = 256

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        from digit_recognizer.model import CNN

        path = Path(weights_path) if weights_path is not None else default_weights_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"digitcnn weights not found at {path}; reinstall digit-recognizer-py or pass weights_path"
            )
        net = CNN()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.conv_layers = net.conv_layers
        # fc_layers = [Linear(1152, 256), ReLU, Linear(256, 10)]: keep everything up to the classifier.
        self.penultimate = net.fc_layers[:2]
        self.weights_path = str(path)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(
                f"digitcnn accepts grey 28x28 images (N, 1, 28, 28) only, got shape {tuple(x.shape)}"
            )
        x = (x - _MNIST_MEAN) / _MNIST_STD
        return self.penultimate(self.conv_layers(x).flatten(1))


@register_extractor("digitcnn", trained_on=("mnist",))
def digitcnn(weights_path: str | Path | None = None) -> DigitCNN:
    return DigitCNN(weights_path=weights_path)
