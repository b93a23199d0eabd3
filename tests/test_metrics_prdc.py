"""PRDC (Naeem et al. 2020, k = 5): limiting cases and agreement with a brute-force NumPy transcription."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpgen_bench.metrics.prdc import prdc


def numpy_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Direct transcription of clovaai/generative-evaluation-prdc ``compute_prdc``."""

    def dists(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_r = np.sort(dists(real, real), axis=1)[:, k]
    fake_r = np.sort(dists(fake, fake), axis=1)[:, k]
    d = dists(real, fake)
    return {
        "precision": (d < real_r[:, None]).any(axis=0).mean(),
        "recall": (d < fake_r[None, :]).any(axis=1).mean(),
        "density": (1.0 / k) * (d < real_r[:, None]).sum(axis=0).mean(),
        "coverage": (d.min(axis=1) < real_r).mean(),
    }


def test_identical_sets_give_precision_recall_coverage_one():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    out = prdc(x, x.clone(), k=5)
    assert out["precision"] == pytest.approx(1.0)
    assert out["recall"] == pytest.approx(1.0)
    assert out["coverage"] == pytest.approx(1.0)
    assert out["density"] >= 1.0 - 1e-12  # each point lies in its own ball plus its neighbours'


def test_disjoint_far_apart_sets_give_zero_everywhere():
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(200, 8, generator=gen)
    fake = torch.randn(200, 8, generator=gen) + 1000.0
    assert prdc(real, fake, k=5) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_matches_bruteforce_reference_on_overlapping_sets_across_block_boundaries(monkeypatch):
    import dpgen_bench.metrics.prdc as mod

    monkeypatch.setattr(mod, "_BLOCK", 37)  # force several row blocks
    rng = np.random.default_rng(2)
    real = rng.standard_normal((150, 5))
    fake = 0.8 * rng.standard_normal((120, 5)) + 0.3
    got = prdc(torch.from_numpy(real), torch.from_numpy(fake), k=5)
    ref = numpy_reference(real, fake, 5)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key


def test_mode_collapse_keeps_precision_but_loses_recall_and_coverage():
    gen = torch.Generator().manual_seed(3)
    real = torch.randn(400, 4, generator=gen)
    fake = 0.05 * torch.randn(400, 4, generator=gen)  # all fakes near the real mode
    out = prdc(real, fake, k=5)
    assert out["precision"] > 0.9
    assert out["recall"] < 0.2 and out["coverage"] < 0.5


def test_prdc_rejects_too_few_samples_and_mismatched_dims():
    with pytest.raises(ValueError, match="more than 5 samples"):
        prdc(torch.randn(5, 3), torch.randn(10, 3), k=5)
    with pytest.raises(ValueError, match="dimensions differ"):
        prdc(torch.randn(10, 3), torch.randn(10, 4))
