"""The standard FID feature network: Inception-v3 with the 2015-12-05 TensorFlow weights.

The network, its TF1-exact bilinear resize to 299×299 and its (x − 128)/128 input scaling are torch-fidelity's
``FeatureExtractorInceptionV3`` — the same weights pytorch-fid, torch-fidelity and torchmetrics use — so FID
values here are comparable with theirs at equal sample counts. We own two things: input handling (images in
[0, 1] asserted, grey repeated to RGB, quantised to uint8 by rounding, as a saved PNG would be) and loading the
checkpoint ourselves with ``torch.load(weights_only=True)`` (torch-fidelity would unpickle it unrestricted).

Weights: ``weights-inception-2015-12-05-6726825d.pth`` (~92 MB), by default in torch hub's checkpoint
directory (``$TORCH_HOME/hub/checkpoints``, the same place torch-fidelity/torchmetrics cache it), or any path
the caller gives. Without the file (and no network), FID is reported missing with a message naming the file,
where to put it and where to get it. The same network's classifier head gives the Inception Score
(:mod:`.inception_score`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from unittest import mock

import torch

from ..features.base import FeatureExtractor

INCEPTION_WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILENAME
)
# torch hub convention: the suffix of the file name is the start of the file's SHA-256.
_INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_EXTRACTOR_NAME = "inception-v3-tf-2015-12-05"
RESIZE_MODE = "tf1-bilinear-299 (torch-fidelity interpolate_bilinear_2d_like_tensorflow1x, no antialias)"
QUANTISATION = "round(255*x) to uint8, grey repeated to RGB"


# Default paths whose download already failed in this process: try the network once, not on every call.
_FAILED_DOWNLOADS: set[Path] = set()


class InceptionWeightsMissing(FileNotFoundError):
    """The Inception checkpoint is not on disk (and could not be downloaded)."""


def default_inception_weights_path() -> Path:
    """``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILENAME


def missing_weights_message(path: str | Path) -> str:
    """One line: which file is missing, where to put it, where to get it."""
    return (
        f"Inception weights file {INCEPTION_WEIGHTS_FILENAME} not found at {path}; "
        f"download it from {INCEPTION_WEIGHTS_URL} and put it there (or pass fid_weights_path=...)"
    )


def download_inception_weights(dest: str | Path | None = None, timeout_s: float = 60.0) -> Path:
    """Download the checkpoint to ``dest`` (default: torch hub cache), verify its SHA-256 prefix, write atomically."""
    dest = Path(dest) if dest is not None else default_inception_weights_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        sha = hashlib.sha256()
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(INCEPTION_WEIGHTS_URL, timeout=timeout_s) as r:
            while chunk := r.read(1 << 20):
                sha.update(chunk)
                f.write(chunk)
        if not sha.hexdigest().startswith(_INCEPTION_SHA256_PREFIX):
            raise OSError(f"downloaded {INCEPTION_WEIGHTS_URL} has SHA-256 {sha.hexdigest()}, expected {_INCEPTION_SHA256_PREFIX}...")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def resolve_inception_weights(path: str | Path | None = None, download: bool = True) -> Path:
    """The checkpoint to use. An explicit ``path`` must exist. With ``path=None`` the torch hub cache is used,
    downloading into it if ``download`` (one attempt per process). Raises :class:`InceptionWeightsMissing` with a one-line message."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InceptionWeightsMissing(missing_weights_message(path))
        return path
    default = default_inception_weights_path()
    if default.is_file():
        return default
    if download and default not in _FAILED_DOWNLOADS:
        try:
            return download_inception_weights(default)
        except Exception:  # no network, proxy, HTTP error, bad hash: all mean "not available"
            _FAILED_DOWNLOADS.add(default)
    raise InceptionWeightsMissing(missing_weights_message(default))


def _build_torch_fidelity_inception(state_dict: dict | None) -> torch.nn.Module:
    """torch-fidelity's Inception-v3 with ``state_dict`` (``None``: PyTorch's random init, for plumbing tests).

    torch-fidelity's constructor always loads weights itself (download or unrestricted ``torch.load``); we hand it
    our own already-safely-loaded state dict instead, by standing in for its download function.
    """
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    class _Inception(tfi.FeatureExtractorInceptionV3):
        def load_state_dict(self, sd, strict: bool = True, assign: bool = False):  # type: ignore[override]
            if sd is None:  # random-weights build: keep the initialisation
                return None
            return super().load_state_dict(sd, strict=strict, assign=assign)

    with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: state_dict):
        return _Inception("inception-v3-compat", ["2048"])


class InceptionV3Features(FeatureExtractor):
    """(N, 1|3, H, W) images in [0, 1] → (N, 2048) Inception-v3 pool features (the FID feature space)."""

    name = INCEPTION_EXTRACTOR_NAME
    num_features = 2048

    def __init__(self, weights_path: str | Path | None = None, *, random_weights: bool = False, download: bool = True):
        super().__init__()
        if random_weights:
            self.weights_path: str | None = None
            state_dict = None
        else:
            path = resolve_inception_weights(weights_path, download=download)
            self.weights_path = str(path)
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        self.net = _build_torch_fidelity_inception(state_dict)
        self.random_weights = random_weights

    @torch.no_grad()
    def class_logits(self, pool: torch.Tensor, bias: bool = False) -> torch.Tensor:
        """(N, 1008) logits of the network's ImageNet classifier head on (N, 2048) pool features (what
        :meth:`features` returns), so the Inception Score reuses the FID features instead of a second pass.
        ``bias=False``: torch-fidelity's ``logits_unbiased`` (the original Inception Score code's
        ``pool3 @ W``); ``bias=True``: its ``logits`` (pytorch-fid's ``fc``, what DPImageBench uses)."""
        fc = self.net.fc
        pool = pool.to(fc.weight.device, fc.weight.dtype)
        logits = pool.mm(fc.weight.T)
        return logits + fc.bias.unsqueeze(0) if bias else logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"Inception expects (N, 1|3, H, W) images, got shape {tuple(x.shape)}")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"Inception input must be images in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x * 255).round().to(torch.uint8)
        return self.net(x)[0]
