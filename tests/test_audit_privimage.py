"""The mechanism audit of PrivImage over its real releases (docs/privimage.md, docs/audit.md): the semantic query's
noisy histogram (the real query code, σ_q as configured) followed by one real DP-SGD step at q = 1 (DPDM's step),
σ of the step calibrated so the two compose to the budget. Power checks: the correct release is not flagged; the
k-hot histogram charged as sensitivity 1 (``unit-sensitivity``, which the conformance noise check cannot see) is
(``tenth-noise`` and DPDM's own variants of the step: ``tests/test_audit_dpdm.py``; the query alone, fast and with
many trials: ``tests/test_privimage.py``).

The query carries a large share of the claim here (σ_q = 2, k = 64: √k = 8, so the unit-sensitivity bug moves μ
of the query from 0.5 to 4), and each trial pays a U-Net forward/backward (~0.1 s), hence 60 trials and the
Gaussian-trade-off bound, which holds for this release (unsubsampled Gaussian mechanisms)."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.audit import audit_method, noiseless_difference, with_canary
from dpgen_bench.audit.broken import broken_class
from dpgen_bench.audit.canaries import canary_for
from dpgen_bench.audit.generic import gaussian_tradeoff_holds
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import GaussianEvent, PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_baselines.privimage import PrivImage

INFO = DatasetInfo("audit-privimage", 1, 8, 8, 2)
N, K, C, TOP_K, SIGMA_Q = 2, 8, 0.1, 64, 2.0
CONFIG = dict(PrivImage.conformance_config, channels=(4, 4), batch_size=N, noise_multiplicity=K, max_grad_norm=C,
              top_k=TOP_K, query_noise_multiplier=SIGMA_Q, synthetic_classes_per_row=2, synthetic_per_class=2)
BUDGET = PrivacyBudget(2.0, 1e-5, accountant="gdp")
TRIALS = 60
HIST = INFO.num_classes * 2 * TOP_K * INFO.num_classes  # rows × P

pytestmark = pytest.mark.slow


def _audit(cls=PrivImage):
    method = cls(CONFIG, INFO, seed=0, context=RunContext(progress=False))
    g = torch.Generator().manual_seed(0)
    data = ImageDataset(torch.rand(N, *INFO.shape, generator=g) * 0.5, torch.arange(N) % 2, INFO, split="train",
                        nominal_size=N)
    return method, data, with_canary(data, *canary_for(method, data))


def test_the_audited_release_is_the_query_and_one_step_composing_to_the_budget():
    method, data, _ = _audit()
    ledger = PrivacyLedger()
    x = method.audit_release(data, BUDGET, ledger)
    query, step = ledger.events
    assert query == GaussianEvent(SIGMA_Q)
    assert isinstance(step, PoissonSubsampledGaussianEvent) and step.sample_rate == 1.0 and step.steps == 1
    assert ledger.epsilon(BUDGET) == pytest.approx(2.0, abs=1e-3) and gaussian_tradeoff_holds(ledger.events)
    assert x.shape == (HIST + sum(p.numel() for p in method.net.parameters()),) and x.dtype == torch.float64
    exact = PrivacyBudget(math.inf, 1e-5)
    assert torch.equal(method.audit_release(data, exact), method.audit_release(data, exact))


def test_the_canary_moves_the_histogram_by_sqrt_k_and_the_step_by_c():
    method, data, neighbour = _audit()
    diff = noiseless_difference(method, data, neighbour, BUDGET)
    assert diff[:HIST].norm().item() == pytest.approx(math.sqrt(TOP_K))
    assert diff[HIST:].norm().item() * N / C == pytest.approx(1.0, rel=1e-4)


def test_the_correct_release_is_not_flagged():
    method, data, neighbour = _audit()
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS, calibration_fraction=0.3)
    assert result.claimed_epsilon == pytest.approx(2.0, abs=1e-3) and result.direction.startswith("known")
    assert not result.violation and not result.gdp_violation, result


def test_the_k_hot_histogram_charged_as_sensitivity_one_is_flagged():
    method, data, neighbour = _audit(broken_class(PrivImage, "unit-sensitivity"))
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS, calibration_fraction=0.3)
    assert result.claimed_epsilon == pytest.approx(2.0, abs=1e-3)  # the ledger still claims ε = 2
    assert result.gdp_violation, result
