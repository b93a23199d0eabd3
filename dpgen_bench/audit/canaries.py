"""Canaries: the one example that makes D′ = D ∪ {canary} a worst-case neighbour of D for a given method.

* Release-once methods (DP-MEPF, DP-MERF): every example's embedding has norm C per moment by construction
  (the release clips to C), so *any* image moves its class's sum of every moment by exactly C and its count by
  1 — every canary attains the sensitivity the noise was calibrated for. :func:`release_once_canary` takes the
  black image and checks that its embedding has norm C.
* Private Evolution: a canary that votes for a chosen candidate of the (public) first population; the
  candidate's own image is nearest to itself. :func:`pe_canary` picks the candidate with the most votes from D,
  so PE's H·σ threshold (post-processing) rarely zeroes the bin the canary moves.
"""

from __future__ import annotations

import math

import torch

from dpgen_bench.data.types import ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget


def with_canary(data: ImageDataset, image: torch.Tensor, label: int) -> ImageDataset:
    """D′ = D ∪ {(image, label)}: one example appended, same info, split and declared size (add/remove-one
    neighbours declare the same n̂). Row-aligned tensors in ``meta`` are dropped."""
    image = image.reshape(1, *data.info.shape).to(data.images.dtype)
    meta = {k: v for k, v in data.meta.items() if not isinstance(v, torch.Tensor)}
    return ImageDataset(
        images=torch.cat([data.images, image.to(data.images.device)]),
        labels=torch.cat([data.labels, torch.tensor([int(label)], dtype=torch.long, device=data.labels.device)]),
        info=data.info, split=data.split, meta=meta, nominal_size=data.nominal_size,
    )


def release_once_canary(method, data: ImageDataset, label: int = 0) -> tuple[torch.Tensor, int]:
    """(image, label) for a release-once method: the black image in class ``label``, after checking that every
    moment of its embedding has norm C = ``method.sum_norm`` (so it attains the sensitivity)."""
    image = torch.zeros(1, *data.info.shape)
    with torch.no_grad():
        for name, phi in method.embed(image.to(method.device)).items():
            norm = float(phi.double().norm())
            if not math.isclose(norm, method.sum_norm, rel_tol=1e-4):
                raise ValueError(f"canary's {name} embedding has norm {norm:.6g}, not C={method.sum_norm}: "
                                 f"it would not attain the sensitivity")
    return image[0], int(label)


def pe_canary(method, data: ImageDataset) -> tuple[torch.Tensor, int]:
    """(image, label) for Private Evolution: the image of the first-population candidate with the most exact
    votes from ``data`` (the canary then votes for it), in that candidate's class (0 when unlabelled)."""
    votes = method.audit_release(data, PrivacyBudget(math.inf, 1e-5))
    j = int(torch.argmax(votes))
    candidates = method.audit_candidates()
    return candidates.images[j].clone(), max(int(candidates.labels[j]), 0)
