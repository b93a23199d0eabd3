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


def dpsgd_canary(method, data: ImageDataset, label: int = 0,
                 draw: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(image, label) for a DP-SGD method with a :meth:`~dpgen_bench.method.GenerativeMethod.gradient_probe`:
    the white image in class ``label``, after checking that its per-example gradient at the initial model has
    norm at least C (``config.max_grad_norm``), so that clipping makes it move the clipped sum by exactly C —
    the sensitivity the noise was calibrated for. (A correct implementation then shifts each noisy gradient by
    C/B; an unclipped one by the full norm; a batch-coupled one moves every row's gradient.) ``draw``: the
    probe's draw for the canary's row (one row) in the audited release; default a public random one."""
    probe = method.gradient_probe()
    image = torch.ones(1, *data.info.shape)
    labels = torch.tensor([int(label)])
    from dpgen_bench.privacy.noise import public_generator

    if draw is None:
        draw = probe.draws(1, public_generator(method.seed, "audit-canary"))
    rows = probe.rows(image, labels, draw)
    norm, clip = float(rows.norm()), float(method.config.max_grad_norm)
    if norm < clip:
        raise ValueError(f"canary's per-example gradient has norm {norm:.4g} < C={clip:g}: it would not attain "
                         f"the sensitivity (lower max_grad_norm for the audit)")
    return image[0], int(label)


def canary_for(method, data: ImageDataset) -> tuple[torch.Tensor, int]:
    """The method's worst-case canary for ``data``: its optional ``audit_canary(data)`` hook."""
    if method.audit_canary is None:
        raise TypeError(f"{type(method).__name__} has no audit_canary(data) hook: give the canary explicitly")
    image, label = method.audit_canary(data)
    return image, int(label)
