"""GS-WGAN (gs-wgan): the charged sensitivity of one release, the ledger, the discriminators' secrecy, and the
audit's power check on the original accounting (docs/gs_wgan.md)."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.audit import with_canary
from dpgen_bench.audit.broken import broken_class
from dpgen_bench.audit.method_audit import PROJECTED, audit_method
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.accounting import epsilon
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_baselines.dcgan import Discriminator
from dpgen_bench_baselines.gs_wgan import (GSWGAN, GSWGANConfig, accounting_events, generator_loss_gradient,
                                          release_sensitivity, sanitise_rows)

INFO = DatasetInfo("toy", 1, 28, 28, 2)
TINY = {"num_discriminators": 3, "iterations": 3, "pretrain_iterations": 1, "critic_iters": 1, "batch_size": 8,
        "g_width": 8, "d_width": 8, "z_dim": 4}
DELTA = 1e-5


def _data(n: int, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.rand(n, 1, 28, 28, generator=g) * 0.5, torch.arange(n) % 2, INFO, split="train",
                        nominal_size=n)


class _Negated(torch.nn.Module):
    """A discriminator whose output is minus another's: the 'other' discriminator an example can swap in."""

    def __init__(self, D: torch.nn.Module) -> None:
        super().__init__()
        self.D = D

    def forward(self, x, y):
        return -self.D(x, y)


def test_one_release_moves_by_the_charged_sensitivity_when_one_discriminator_changes():
    # One example changes its discriminator arbitrarily; here D -> -D flips every row, so every clipped row
    # moves by 2C and the B x d release by 2C·sqrt(B): the noise must be calibrated to that, not to C or 2C.
    cfg = GSWGANConfig(batch_size=16, max_grad_norm=1e-3)
    D = Discriminator(1, 28, 2, 8)
    fake = torch.rand(16, 1, 28, 28)
    y = torch.arange(16) % 2
    a = sanitise_rows(generator_loss_gradient(D, fake, y), cfg.max_grad_norm, 0.0)
    b = sanitise_rows(generator_loss_gradient(_Negated(D), fake, y), cfg.max_grad_norm, 0.0)
    shift = float((a - b).norm())
    assert shift == pytest.approx(2 * cfg.max_grad_norm * math.sqrt(cfg.batch_size), rel=1e-4)
    assert shift <= release_sensitivity(cfg) * (1 + 1e-6)


def test_release_noise_has_the_calibrated_std_and_the_ledger_charges_one_gaussian_per_iteration():
    method = GSWGAN(TINY, INFO, seed=0, context=RunContext(progress=False))
    data, budget = _data(6), PrivacyBudget(1.0, DELTA)
    ledger = PrivacyLedger()
    noisy = method.audit_release(data, budget, ledger, discriminator=0)
    exact = method.audit_release(data, PrivacyBudget(math.inf, DELTA), discriminator=0)
    (event,) = ledger.events
    assert event.sample_rate == 1.0 and event.steps == 1
    # σ is calibrated for the whole run (3 iterations); this release is one of them
    assert epsilon(accounting_events(method.config, event.noise_multiplier, 3), DELTA) == pytest.approx(1, abs=0.02)
    expected_std = event.noise_multiplier * 2 * method.config.max_grad_norm * math.sqrt(method.config.batch_size)
    assert (noisy - exact).std().item() == pytest.approx(expected_std, rel=0.05)


def test_fit_records_the_iterations_done_and_keeps_no_discriminator():
    method = GSWGAN(TINY, INFO, seed=0, context=RunContext(progress=False))
    ledger, budget = PrivacyLedger(), PrivacyBudget(2.0, DELTA)
    method.fit(_data(12), budget, ledger)
    (event,) = ledger.events
    assert (event.sample_rate, event.steps) == (1.0, 3) and method.iterations_done == 3
    assert ledger.epsilon(budget) <= 2.0 * (1 + 1e-9)
    state = method.checkpoint_state()
    assert set(state) == {"generator", "ema", "noise_multiplier", "iterations_done"}


def test_the_original_accounting_charges_far_less_for_the_same_run():
    cfg = GSWGANConfig(num_discriminators=1000, batch_size=32, iterations=20000)
    sigma_row = 1.07  # the authors' default, relative to one row's 2C
    original = epsilon(accounting_events(cfg, sigma_row, cfg.iterations, "original"), DELTA, "rdp")
    charged = epsilon(accounting_events(cfg, sigma_row / math.sqrt(cfg.batch_size), cfg.iterations), DELTA, "rdp")
    assert original < 10 < 1000 * 10 < charged


# -- the mechanism audit: the original accounting is flagged, the charged one is not -----------------------

AUDIT = {"num_discriminators": 50, "iterations": 1, "pretrain_iterations": 40, "critic_iters": 1,
         "batch_size": 64, "g_width": 8, "d_width": 8, "z_dim": 4, "max_grad_norm": 1e-3, "lr": 1e-2}
AUDIT_BUDGET = PrivacyBudget(1.0, DELTA, accountant="rdp")


def _audit(cls, trials: int, settings: dict = AUDIT):
    """One release on D (one example) vs D ∪ {canary} through ``audit_method`` — the runner's hook audit — which
    projects every release on the method's ``audit_direction`` (the canary discriminator's noiseless shift); the
    canary's discriminator is drawn with probability 1/N_D in every trial."""
    method = cls(settings, INFO, seed=0, context=RunContext(progress=False))
    data = _data(1)
    neighbour = with_canary(data, *method.audit_canary(data))
    result = audit_method(method, data, neighbour, AUDIT_BUDGET, trials=trials)
    assert result.direction == PROJECTED
    exact = PrivacyBudget(math.inf, DELTA)
    k = len(data) % settings["num_discriminators"]
    shift = method.audit_release(neighbour, exact, discriminator=k) - method.audit_release(data, exact, discriminator=k)
    return result, shift.norm().item() / release_sensitivity(method.config)


def test_the_audit_projects_on_the_canary_discriminators_shift_and_the_draw_stays_secret():
    # Only the canary's part differs between D and D′, so audit_direction is that discriminator's noiseless
    # shift; the trials still draw the discriminator (a release with the canary's D_k forced would not be the
    # mechanism the original accounting analyses).
    method = GSWGAN(TINY, INFO, seed=0, context=RunContext(progress=False))
    data = _data(4)
    neighbour = with_canary(data, *method.audit_canary(data))
    exact = PrivacyBudget(math.inf, DELTA)
    shifts = [method.audit_release(neighbour, exact, discriminator=k) - method.audit_release(data, exact, discriminator=k)
              for k in range(TINY["num_discriminators"])]
    canary_part = len(data) % TINY["num_discriminators"]
    assert all(float(s.abs().max()) == 0.0 for k, s in enumerate(shifts) if k != canary_part)
    assert float(shifts[canary_part].norm()) > 0
    torch.testing.assert_close(method.audit_direction(data, neighbour), shifts[canary_part])
    result = audit_method(method, data, neighbour, PrivacyBudget(1.0, DELTA), trials=40)
    assert result.direction == PROJECTED and result.claimed_epsilon is not None
    noiseless = {tuple(method.audit_release(data, exact)[:8].tolist()) for _ in range(30)}
    assert len(noiseless) > 1  # the discriminator is drawn afresh on every call (3 parts, all different)


@pytest.mark.slow
def test_the_original_accounting_is_flagged_and_the_charged_one_is_not():
    broken, moved = _audit(broken_class(GSWGAN, "original-accounting"), trials=6000)
    assert moved > 0.6  # the canary moves its discriminator's rows by more than half the worst case
    assert broken.claimed_epsilon == pytest.approx(1.0, abs=0.01)
    assert broken.violation, broken
    correct, _ = _audit(GSWGAN, trials=2000)
    assert correct.claimed_epsilon == pytest.approx(1.0, abs=0.01)
    assert not correct.violation, correct


@pytest.mark.slow
def test_a_tenth_of_the_noise_is_flagged_when_the_auditor_puts_every_example_in_one_part():
    # The charge takes no amplification from the draw of the discriminator, so it holds for any N_D, and the
    # auditor may pick N_D = 1: the canary's discriminator is drawn in every release, which is then one Gaussian
    # of the charged sensitivity (the Gaussian-trade-off bound holds). At N_D = 50 the shift shows in 1 release
    # of 50 and the 6,000-trial audit did not see a tenth of the noise (docs/gs_wgan.md).
    # Over 8 RNG states: the Gaussian-trade-off ε_lower of tenth-noise 3.9–6.2 against the claim 1 (the
    # assumption-free bound 1.1–1.9, too close to the claim to assert), the correct release's 0.0 on all 8.
    one_part = {**AUDIT, "num_discriminators": 1}
    broken, moved = _audit(broken_class(GSWGAN, "tenth-noise"), trials=300, settings=one_part)
    assert moved > 0.3
    assert broken.gdp_violation, broken
    correct, _ = _audit(GSWGAN, trials=300, settings=one_part)
    assert not correct.violation and not correct.gdp_violation, correct
