"""The DP-SGD mechanism audit of DPDM over its real private step — the grouped per-example gradients of the
U-Net, Opacus's DPOptimizer, σ from the calibrator — at q = 1 (one Gaussian, no subsampling), with power checks:
the correct step is not flagged; a tenth of the noise, unclipped gradients (both through the library's seams)
and each of the K noise-draw rows clipped separately (declared by DPDM itself) are.

The release costs ~0.05–0.1 s of CPU (a U-Net forward/backward), so the audits run 60 trials: too few for the
assumption-free bound to certify a violation of ε = 3, enough for the Gaussian-trade-off bound, which holds for
this release (one unsubsampled Gaussian mechanism; docs/audit.md)."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.audit import audit_method, noiseless_difference, with_canary
from dpgen_bench.audit.broken import VARIANTS, broken_class, variants_for
from dpgen_bench.audit.canaries import canary_for
from dpgen_bench.audit.generic import gaussian_tradeoff_holds
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_baselines.dpdm import DPDM

INFO = DatasetInfo("audit-digits", 1, 8, 8, 2)
N, K, C = 2, 8, 0.1  # C small: the canary's unclipped gradient (norm ~6.8) is then ~68 C
CONFIG = dict(DPDM.conformance_config, channels=(4, 4), batch_size=N, noise_multiplicity=K, max_grad_norm=C)
# ε = 3 (μ ≈ 0.72): tenth-noise and per-row-clip (K = 8) move the release by ≈ 6-7 σ, far past what 60 trials can
# miss; at ε = 1 (μ ≈ 0.25) both sit near the GDP bound (the same setting failed CI for the latent models).
BUDGET = PrivacyBudget(3.0, 1e-5, accountant="gdp")
TRIALS = 60

pytestmark = pytest.mark.slow


def _audit(cls=DPDM):
    method = cls(CONFIG, INFO, seed=0, context=RunContext(progress=False))
    g = torch.Generator().manual_seed(0)
    data = ImageDataset(torch.rand(N, *INFO.shape, generator=g) * 0.5, torch.arange(N) % 2, INFO, split="train",
                        nominal_size=N)
    return method, data, with_canary(data, *canary_for(method, data))


def test_the_audited_release_is_one_unsubsampled_dp_sgd_step_with_the_calibrated_noise():
    method, data, _ = _audit()
    ledger = PrivacyLedger()
    x = method.audit_release(data, BUDGET, ledger)
    (event,) = ledger.events
    assert isinstance(event, PoissonSubsampledGaussianEvent) and event.sample_rate == 1.0 and event.steps == 1
    assert ledger.epsilon(BUDGET) == pytest.approx(3.0, abs=1e-3) and gaussian_tradeoff_holds(ledger.events)
    assert x.shape == (sum(p.numel() for p in method.net.parameters()),) and x.dtype == torch.float64
    exact = PrivacyBudget(math.inf, 1e-5)
    assert torch.equal(method.audit_release(data, exact), method.audit_release(data, exact))  # q = 1, σ = 0: exact
    noise = torch.stack([method.audit_release(data, BUDGET) for _ in range(8)]) - method.audit_release(data, exact)
    assert noise.std().item() == pytest.approx(event.noise_multiplier * C / N, rel=0.05)  # σ·C / B, fresh


def test_every_audited_step_starts_from_the_same_network_under_the_seams_active_at_its_call():
    """The wrapped network of the audited step is made once and reused across releases (it is costly to copy
    and wrap): each call must still start from the same weights, and use the optimiser transforms of its call."""
    method, data, neighbour = _audit()
    exact = PrivacyBudget(math.inf, 1e-5)
    first = method.audit_release(data, exact)
    method.audit_release(neighbour, exact)
    with VARIANTS.get("unclipped").patches():
        unclipped = method.audit_release(data, exact)
    assert torch.equal(method.audit_release(data, exact), first)
    fresh, _, _ = _audit(broken_class(DPDM, "unclipped"))
    assert torch.equal(unclipped, fresh.audit_release(data, exact)) and not torch.equal(unclipped, first)


def test_the_canary_moves_the_step_by_c_and_each_bug_by_what_it_leaks():
    """The guards of the power checks, noiseless: ‖Δ‖·B/C is 1 for the correct step, K when the K identical
    audit rows are clipped one by one, the canary's whole gradient norm over C (> 20) when nothing is clipped."""
    def shift(cls) -> float:  # in units of C / B
        method, data, neighbour = _audit(cls)
        return noiseless_difference(method, data, neighbour, BUDGET).norm().item() * N / C

    assert shift(DPDM) == pytest.approx(1.0, rel=1e-4)
    assert shift(broken_class(DPDM, "per-row-clip")) == pytest.approx(K, rel=1e-4)
    assert shift(broken_class(DPDM, "unclipped")) > 20.0
    assert shift(broken_class(DPDM, "tenth-noise")) == pytest.approx(1.0, rel=1e-4)  # same Δ, a tenth of the noise


def test_dpdm_declares_per_row_clip_and_gets_the_generic_variants_through_the_seams():
    assert set(variants_for(DPDM)) >= {"tenth-noise", "unclipped", "per-row-clip"}
    assert "batch-coupled" not in variants_for(DPDM)


def test_the_correct_private_step_is_not_flagged():
    method, data, neighbour = _audit()
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS, calibration_fraction=0.3)
    assert result.claimed_epsilon == pytest.approx(3.0, abs=1e-3) and result.direction.startswith("known")
    assert not result.violation and not result.gdp_violation, result


@pytest.mark.parametrize("variant", ["tenth-noise", "unclipped", "per-row-clip"])
def test_a_broken_private_step_is_flagged(variant):
    method, data, neighbour = _audit(broken_class(DPDM, variant))
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS, calibration_fraction=0.3)
    assert result.claimed_epsilon == pytest.approx(3.0, abs=1e-3)  # the ledger still claims ε = 3
    assert result.gdp_violation, result  # the bound under a Gaussian trade-off exceeds the claim: flagged
