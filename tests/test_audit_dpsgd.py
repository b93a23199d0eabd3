"""The DP-SGD mechanism audit (white-box, every noisy gradient observed; Nasr et al. 2023) over the real
private step of dp-cgan — Opacus's DPOptimizer, the real loss, σ from the calibrator — with power checks:
the correct step is not flagged; a tenth of the noise, unclipped gradients and a generator with batch
statistics (the first DP-CGAN) are."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.audit import audit_method, noiseless_difference, with_canary
from dpgen_bench.audit.broken import broken_class
from dpgen_bench.audit.canaries import canary_for
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_baselines.dp_gan import DPCGAN

pytestmark = pytest.mark.slow

INFO = DatasetInfo("audit-digits", 1, 28, 28, 2)
N = 4
CONFIG = {"d_width": 8, "g_width": 8, "z_dim": 8, "batch_size": N, "epochs": 2}  # q = 1: two full-batch steps
BUDGET = PrivacyBudget(1.0, 1e-5, accountant="gdp")
TRIALS = 250


N_COUPLED = 32  # the batch-coupled bug grows with the batch its fakes share: audited on a larger one


def _data(n: int = N) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.rand(n, 1, 28, 28, generator=g) * 0.5, torch.arange(n) % 2, INFO, split="train",
                        nominal_size=n)


def _audit(cls=DPCGAN, n: int = N):
    method = cls(dict(CONFIG, batch_size=n), INFO, seed=0, context=RunContext(progress=False))
    data = _data(n)
    neighbour = with_canary(data, *canary_for(method, data))
    return method, data, neighbour


def test_the_audited_release_is_the_planned_dp_sgd_steps_with_the_calibrated_noise():
    method, data, neighbour = _audit()
    ledger = PrivacyLedger()
    x = method.audit_release(data, BUDGET, ledger)
    (event,) = ledger.events
    assert isinstance(event, PoissonSubsampledGaussianEvent) and event.sample_rate == 1.0 and event.steps == 2
    assert ledger.epsilon(BUDGET) == pytest.approx(1.0, abs=1e-3)
    params = sum(p.numel() for p in method.build_discriminator().parameters())
    assert x.shape == (2 * params,) and x.dtype == torch.float64
    exact = PrivacyBudget(math.inf, 1e-5)
    assert torch.equal(method.audit_release(data, exact), method.audit_release(data, exact))  # q = 1, σ = 0: exact
    noise = torch.stack([method.audit_release(data, BUDGET) for _ in range(50)]) - method.audit_release(data, exact)
    # step 1 starts from the same D: its noise is σ·C / B per coordinate, fresh on every call
    assert noise[:, :params].std().item() == pytest.approx(event.noise_multiplier * 1.0 / N, rel=0.1)


def test_the_canary_moves_the_first_step_by_exactly_the_clipping_bound():
    method, data, neighbour = _audit()
    diff = noiseless_difference(method, data, neighbour, BUDGET)
    params = diff.numel() // 2
    first, second = diff.split(params)
    assert first.norm().item() * N == pytest.approx(1.0, rel=1e-4)  # C = 1, divided by the batch size B
    # Step 2 starts from a D that step 1 moved differently on D and D′, so the other rows move a little too.
    assert second.norm().item() * N == pytest.approx(1.0, rel=0.1)


def test_the_correct_private_step_is_not_flagged_across_repeated_audits():
    method, data, neighbour = _audit()
    for _ in range(2):
        result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS)
        assert result.claimed_epsilon == pytest.approx(1.0, abs=1e-3)
        assert not result.violation, result


def test_the_audit_latents_make_a_batch_coupled_generator_move_every_pair():
    # The canary's fakes get an outsized latent (audit_latents): with BatchNorm in G it dominates the batch
    # statistics, so the first noiseless step moves by several C instead of the canary's own C.
    def first_step_shift(cls) -> float:  # in units of C / B
        method, data, neighbour = _audit(cls, N_COUPLED)
        diff = noiseless_difference(method, data, neighbour, BUDGET)
        return diff.split(diff.numel() // 2)[0].norm().item() * N_COUPLED

    assert first_step_shift(DPCGAN) == pytest.approx(1.0, rel=1e-4)  # per-example G: the canary's C only
    assert first_step_shift(broken_class(DPCGAN, "batch-coupled")) > 5.0


def test_a_batch_coupled_generator_is_flagged():
    method, data, neighbour = _audit(broken_class(DPCGAN, "batch-coupled"), N_COUPLED)
    result = audit_method(method, data, neighbour, BUDGET, trials=400)
    assert result.claimed_epsilon == pytest.approx(1.0, abs=1e-3)
    assert result.violation and result.epsilon_lower > 1.5, result
    assert result.gdp_violation and result.gdp.epsilon_lower > 5.0, result


@pytest.mark.parametrize("variant", ["tenth-noise", "unclipped"])
def test_a_broken_private_step_is_flagged(variant):
    method, data, neighbour = _audit(broken_class(DPCGAN, variant))
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS)
    assert result.claimed_epsilon == pytest.approx(1.0, abs=1e-3)  # the ledger still claims ε = 1
    assert result.violation and result.epsilon_lower > 1.5, result


def test_broken_variants_apply_only_where_the_bug_can_exist():
    from dpgen_bench_methods.dp_merf import DPMERF

    with pytest.raises(ValueError, match="'unclipped' does not apply to DPMERF"):
        broken_class(DPMERF, "unclipped")
