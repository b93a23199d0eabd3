"""DP-FETA (``dp-feta``): the central-image release (sensitivity, noise, ledger), the joint calibration with the
DP-SGD phase, the central images themselves, and the mechanism audit with its power checks.

Models are DPDM's 2-level 8-channel U-Net on 8×8 grey images; fits take a couple of steps."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from dpgen_bench import DatasetInfo, ImageDataset, PrivacyBudget, PrivacyLedger, get_method
from dpgen_bench.audit import audit_mechanism, audit_method, noiseless_difference, with_canary
from dpgen_bench.audit.broken import VARIANTS, broken_class, variants_for
from dpgen_bench.audit.canaries import canary_for
from dpgen_bench.context import RunContext
from dpgen_bench.privacy.accounting import epsilon
from dpgen_bench.privacy.calibration import calibrate
from dpgen_bench.privacy.events import PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.noise import recording_noise
from dpgen_bench.privacy.plans import dpsgd_plan
from dpgen_bench_baselines.dp_feta import DPFETA, DPFETAConfig, post_process

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = {"epochs": 1, "batch_size": 10, "noise_multiplicity": 2, "channels": (8, 8), "norm_groups": 4,
        "attention_head_dim": 4, "sampler_steps": 2, "central_queries": 3, "pretrain_epochs": 1,
        "pretrain_batch_size": 8}
INFO = DatasetInfo("toy", 1, 8, 8, 4)
QUIET = RunContext(progress=False)
BUDGET = PrivacyBudget(1.0, 1e-5, accountant="gdp")  # the audits: unsubsampled Gaussians only
FIT = PrivacyBudget(1.0, 1e-5, accountant="rdp")  # fits: the DP-SGD phase is subsampled
EXACT = PrivacyBudget(math.inf, 1e-5)


def _data(n: int = 40, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % INFO.num_classes
    return ImageDataset(torch.rand(n, *INFO.shape, generator=gen) * 0.6, labels, INFO, "train", nominal_size=n)


def _method(cls=DPFETA, **overrides) -> DPFETA:
    return cls({**TINY, **overrides}, INFO, seed=0, context=QUIET)


def test_dp_feta_is_registered_with_a_dp_sgd_probe_and_no_public_data():
    assert get_method("dp-feta") is DPFETA
    assert DPFETA.capabilities.dp_sgd and not DPFETA.capabilities.public_data
    assert _method().gradient_probe() is not None


# ------------------------------------------------------------------------------------ the sensitivity


def test_the_central_sensitivity_is_the_norm_of_a_white_image_sum_and_its_weighted_count():
    """8×8 grey images at downsample 0.5: d' = 16 pixels, each ≤ 1, and the count weighted by w = 4:
    Δ = √(16 + 4²). Written out, so a changed formula (a forgotten count, the full-size d, a division by a
    batch size) fails here."""
    assert _method().central_sensitivity() == pytest.approx(math.sqrt(16 + 16))
    assert _method(central_count_weight=1.0, central_downsample=0.25).central_sensitivity() == pytest.approx(
        math.sqrt(4 + 1))


def test_adding_the_white_canary_moves_the_exact_release_by_exactly_the_sensitivity():
    """Add/remove-one: the white image attains Δ (so Δ is not too large), and no example moves the release
    by more (so Δ is not too small) — checked on the exact (ε = ∞, q = 1) release of the real code."""
    method, data = _method(), _data()
    exact = method.release_central(data, None, 1.0, 1, None)
    white = with_canary(data, torch.ones(INFO.shape), 2)
    assert float((method.release_central(white, None, 1.0, 1, None) - exact).norm()) == pytest.approx(
        method.central_sensitivity(), rel=1e-9)
    for i in range(0, 40, 7):
        keep = torch.arange(40) != i
        moved = float((method.release_central(data.subset(keep), None, 1.0, 1, None) - exact).norm())
        assert 0 < moved <= method.central_sensitivity() + 1e-9


def test_the_central_noise_is_sigma_c_times_the_sensitivity_with_sigma_c_the_ratio_times_the_dp_sgd_sigma():
    method, data, ledger = _method(), _data(), PrivacyLedger()
    with recording_noise() as draws:
        method.fit(data, FIT, ledger)
    central, dpsgd = ledger.events
    assert central.noise_multiplier == pytest.approx(method.config.central_noise_ratio * dpsgd.noise_multiplier)
    mine = [d for d in draws if d.source == "gaussian_noise"]
    assert len(mine) == TINY["central_queries"]
    for d in mine:
        assert d.sensitivity == pytest.approx(method.central_sensitivity())
        assert d.std == pytest.approx(central.noise_multiplier * method.central_sensitivity())
    # and the noise is really that large: 200 releases of one query around the exact one
    noisy = torch.stack([method.release_central(data, central.noise_multiplier, 1.0, 1, None) for _ in range(200)])
    spread = (noisy - method.release_central(data, None, 1.0, 1, None)).std()
    assert float(spread) == pytest.approx(central.noise_multiplier * method.central_sensitivity(), rel=0.05)


# ------------------------------------------------------------------------------------------ the ledger


def test_the_ledger_holds_the_central_release_then_the_dp_sgd_steps_jointly_calibrated_to_the_target():
    method, data, ledger = _method(), _data(), PrivacyLedger()
    method.fit(data, FIT, ledger)
    plan = DPFETA.privacy_plan(method.config, data.public_size())
    sigma = calibrate(plan, FIT)
    assert ledger.events == plan(sigma)
    central, dpsgd = ledger.events
    assert central == PoissonSubsampledGaussianEvent(method.config.central_noise_ratio * sigma, 1.0, 3)
    assert "central" in ledger.entries[0].note
    assert dpsgd.steps == method.steps_taken and dpsgd.sample_rate == 10 / 40
    assert ledger.epsilon(FIT) == pytest.approx(1.0, abs=1e-3)  # the composition meets the target
    without_central = PrivacyLedger()
    without_central.record(dpsgd)
    assert without_central.epsilon(FIT) < 0.99  # the central release is paid for, not free


def test_a_fixed_central_sigma_leaves_the_rest_of_the_budget_to_dp_sgd():
    """DP-FETA's own split: σ_c fixed (the paper's 5, on subsamples), the calibrator finds the DP-SGD σ for
    what is left."""
    cfg = DPFETAConfig(**TINY, central_noise_multiplier=5.0, central_batch_size=4)
    plan = DPFETA.privacy_plan(cfg, 40)
    sigma = calibrate(plan, FIT)
    central, dpsgd = plan(sigma)
    assert central.noise_multiplier == 5.0 and dpsgd.noise_multiplier == sigma
    assert epsilon(plan(sigma), FIT.delta, "rdp") <= 1.0 < epsilon(plan(sigma * 0.99), FIT.delta, "rdp")


def test_the_central_queries_subsample_at_the_declared_rate():
    cfg = DPFETAConfig(**TINY, central_batch_size=8)
    central, _ = DPFETA.privacy_plan(cfg, 40)(1.0)
    assert central.sample_rate == pytest.approx(8 / 40) and central.steps == 3
    with pytest.raises(ValueError, match="exceeds"):
        DPFETA.privacy_plan(DPFETAConfig(**TINY, central_batch_size=41), 40)


def test_a_non_private_fit_uses_exact_means_and_records_nothing():
    method, ledger = _method(), PrivacyLedger()
    method.fit(_data(), EXACT, ledger)
    assert len(ledger) == 0 and method.sigma_central is None
    assert method.central_images.shape == (3 * INFO.num_classes, *INFO.shape)


# ------------------------------------------------------------------------------- the central images


def test_central_images_are_the_noisy_sums_over_the_noisy_counts_post_processed():
    """A class whose images are all 0.3 gives a central image of 0.3 everywhere (the filters keep constants);
    the divisor is the released count, so a count released as 20 for 10 images halves the mean."""
    method = _method()
    gen = torch.Generator().manual_seed(1)
    data = _data()
    flat = ImageDataset(torch.full_like(data.images, 0.3), data.labels, INFO, "train", nominal_size=40)
    images, labels = method.central_images_from(method.release_central(flat, None, 1.0, 1, None))
    assert torch.allclose(images, torch.full_like(images, 0.3), atol=1e-6) and labels.tolist() == [0, 1, 2, 3]
    released = method.release_central(flat, None, 1.0, 1, None)
    released[0, -4:] *= 2  # doubled counts
    halved, _ = method.central_images_from(released)
    assert torch.allclose(halved, torch.full_like(halved, 0.15), atol=1e-6)
    assert post_process(torch.rand(2, 3, 4, 4, generator=gen) * 3 - 1, (8, 8)).shape == (2, 3, 8, 8)


def test_the_warm_up_trains_on_the_central_images_before_the_private_steps():
    method = _method(epochs=0.1)
    before = [p.detach().clone() for p in method.net.parameters()]
    method.fit(_data(), EXACT, PrivacyLedger())
    assert any(not torch.equal(a, b) for a, b in zip(before, method.net.parameters()))
    warmed = _method(pretrain_epochs=50)
    warmed._warm_up(torch.full((4, *INFO.shape), 0.5), torch.arange(4))
    untouched = _method()
    assert any(not torch.equal(a, b) for a, b in zip(warmed.net.parameters(), untouched.net.parameters()))


# ------------------------------------------------------------------------------------------- the audits


def _central_audit(cls=DPFETA, patches=None, trials=1500):
    """The hook audit's central half alone (one query at q = 1, σ_c calibrated to BUDGET): cheap, so many trials."""
    method, data = _method(cls), _data(8)
    neighbour = with_canary(data, torch.ones(INFO.shape), 0)
    sigma_c = calibrate(dpsgd_plan(1.0, 1), BUDGET)

    def release(d):
        with (patches or contextlib.nullcontext)():
            return method.release_central(d, sigma_c, 1.0, 1, None).flatten()

    exact = method.release_central(neighbour, None, 1.0, 1, None) - method.release_central(data, None, 1.0, 1, None)
    return audit_mechanism(release, data, neighbour, trials=trials, delta=BUDGET.delta,
                           mean_difference=exact.flatten(), claimed_epsilon=1.0)


def test_the_central_release_audit_does_not_flag_the_correct_release():
    result = _central_audit()
    assert not result.violation and not result.gdp_violation, result


def test_the_central_release_audit_flags_a_tenth_of_the_sensitivity_and_a_tenth_of_the_noise():
    wrong = _central_audit(broken_class(DPFETA, "central-tenth-sensitivity"))
    assert wrong.violation and wrong.gdp_violation, wrong
    tenth = _central_audit(patches=VARIANTS.get("tenth-noise").patches)
    assert tenth.violation and tenth.gdp_violation, tenth


def test_dp_feta_declares_its_central_bug_and_keeps_dpdms():
    assert set(variants_for(DPFETA)) >= {"tenth-noise", "unclipped", "per-row-clip", "central-tenth-sensitivity"}


HOOK = dict(TINY, channels=(4, 4), batch_size=2, noise_multiplicity=4, max_grad_norm=0.1)


def _hook(cls=DPFETA):
    method = cls(HOOK, INFO, seed=0, context=QUIET)
    data = ImageDataset(torch.rand(2, *INFO.shape, generator=torch.Generator().manual_seed(0)) * 0.5,
                        torch.arange(2), INFO, "train", nominal_size=2)
    return method, data, with_canary(data, *canary_for(method, data))


def test_the_hook_releases_one_central_query_and_one_dp_sgd_step_and_the_canary_moves_each_by_its_sensitivity():
    """audit_release = one central query (q = 1) + DPDM's audited DP-SGD step (q = 1), each calibrated alone to
    the budget: the ledger claims their composition, and the white canary moves the exact release by Δ in the
    central part and by C / B in the gradient part (the sensitivities the noise is sized for)."""
    method, data, neighbour = _hook()
    ledger = PrivacyLedger()
    method.audit_release(data, BUDGET, ledger)
    assert [(e.sample_rate, e.steps) for e in ledger.events] == [(1.0, 1), (1.0, 1)]
    assert ledger.epsilon(BUDGET) > 1.3  # two releases of ε = 1 each
    shift = noiseless_difference(method, data, neighbour, BUDGET)
    central = (INFO.num_classes * 16 + INFO.num_classes)
    assert float(shift[:central].norm()) == pytest.approx(method.central_sensitivity(), rel=1e-9)
    assert float(shift[central:].norm()) * 2 == pytest.approx(HOOK["max_grad_norm"], rel=1e-4)


@pytest.mark.slow
def test_the_hook_audit_of_both_releases_does_not_flag_the_correct_method():
    """60 trials (a U-Net step each): the bounds stay below the composed claim. The power checks of the two
    parts: the central release above (many trials, cheap), the DP-SGD step in tests/test_audit_dpdm.py."""
    method, data, neighbour = _hook()
    result = audit_method(method, data, neighbour, BUDGET, trials=60, calibration_fraction=0.3)
    assert result.claimed_epsilon > 1.3 and result.direction.startswith("known")
    assert not result.violation and not result.gdp_violation, result
