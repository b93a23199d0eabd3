"""The mechanism audit, with power checks: a correct release is never flagged, a broken one always is.

"Broken" means what a real bug would look like: the release adds a tenth of the noise while the ledger still
records the calibrated σ, so the accounted ε (1) is a lie. A correct audit of the real release code must
stay at or below the claim, and the same audit must flag the broken variant (lower bound > claimed ε).
"""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.audit import (
    audit_mechanism,
    audit_method,
    noiseless_difference,
    pe_canary,
    release_once_canary,
    with_canary,
)
from dpgen_bench.audit.broken import VARIANTS, broken_class
from dpgen_bench.audit.cache import IdentityMemo
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_methods.dp_mepf import DPMEPF
from dpgen_bench_methods.dp_merf import DPMERF
from dpgen_bench_methods.private_evolution import PrivateEvolution
from pe_toy import blob_api_registered

INFO = DatasetInfo("audit-toy", 1, 8, 8, 2)
TRIALS = 2000
BUDGET = PrivacyBudget(1.0, 1e-5, accountant="gdp")  # exact for Gaussian releases, and fast


def _data(seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(40) % 2
    images = (labels.float() * 0.8 + 0.1).view(-1, 1, 1, 1) + 0.05 * torch.rand(40, 1, 8, 8, generator=g)
    return ImageDataset(images.clamp(0, 1), labels, INFO, split="train", nominal_size=40)


@pytest.fixture(scope="module")
def merf():
    method = DPMERF({"n_features": 50, "steps": 1}, INFO, seed=0, context=RunContext(progress=False))
    data = _data()
    return method, data, with_canary(data, *release_once_canary(method, data))


@pytest.fixture(scope="module")
def pe():
    with blob_api_registered() as api:
        method = PrivateEvolution({"api": {"name": api}, "population": 10, "iterations": 1,
                                   "extractor": "random-cnn"}, INFO, seed=0, context=RunContext(progress=False))
        data = _data()
        yield method, data, with_canary(data, *pe_canary(method, data))


@pytest.fixture
def broken_merf_noise():
    """The shared ``tenth-noise`` variant (dpgen_bench.audit.broken) active, as inside a broken method."""
    with VARIANTS.get("tenth-noise").patches():
        yield


broken_pe_noise = broken_merf_noise


# -- the hooks release what fit releases ------------------------------------------------------------------
def test_dp_merf_audit_release_is_the_real_noisy_release_of_sums_and_counts(merf):
    method, data, neighbour = merf
    ledger = PrivacyLedger()
    x = method.audit_release(data, BUDGET, ledger)
    fit_ledger = PrivacyLedger()
    DPMERF({"n_features": 50, "steps": 1}, INFO, seed=0, context=RunContext(progress=False)).fit(data, BUDGET, fit_ledger)
    assert ledger.events == fit_ledger.events and x.dtype == torch.float64 and x.shape == (2 * 50 + 2,)
    assert "embed" not in method.__dict__ and method.context.progress is False  # the memo is gone afterwards
    diff = noiseless_difference(method, data, neighbour, BUDGET)
    phi = method.embed(torch.zeros(1, *INFO.shape))["rff"][0].double()
    torch.testing.assert_close(diff[:50], phi)  # the canary (class 0) moves class 0's sum by φ, norm C = 1
    assert diff[50:100].abs().max() < 1e-12 and diff[100:].tolist() == [1.0, 0.0]
    sigma = ledger.events[0].noise_multiplier
    noise = torch.stack([method.audit_release(data, BUDGET) for _ in range(400)]) - method.audit_release(
        data, PrivacyBudget(math.inf, 1e-5))
    assert noise[:, :100].std().item() == pytest.approx(sigma, rel=0.05)  # fresh noise of the recorded scale
    assert noise[:, 100:].std().item() == pytest.approx(2 * sigma, rel=0.15)


def test_pe_audit_release_is_the_first_noisy_histogram_and_the_canary_votes_once(pe):
    method, data, neighbour = pe
    ledger = PrivacyLedger()
    x = method.audit_release(data, BUDGET, ledger)
    fit_ledger = PrivacyLedger()
    PrivateEvolution(method.config, INFO, seed=0, context=RunContext(progress=False)).fit(data, BUDGET, fit_ledger)
    assert ledger.events == fit_ledger.events and x.shape == (10,) and x.dtype == torch.float64
    diff = noiseless_difference(method, data, neighbour, BUDGET)
    assert diff.abs().sum().item() == 1.0 and diff.max().item() == 1.0
    j = int(diff.argmax())
    exact = method.audit_release(data, PrivacyBudget(math.inf, 1e-5))
    assert exact[j].item() == 20  # the canary votes for the candidate all of its class votes for
    noisy = torch.stack([method.audit_release(data, BUDGET)[j] for _ in range(400)])
    assert noisy.std().item() == pytest.approx(ledger.events[0].noise_multiplier, rel=0.15)


def test_the_memo_hits_views_of_the_same_memory_and_misses_a_changed_tensor():
    calls = []
    memo = IdentityMemo(lambda x: calls.append(1) or x.sum())
    images = torch.rand(6, 3)
    memo(images[0:3]), memo(images[0:3]), memo(images[3:6])
    assert len(calls) == 2
    images[0, 0] += 1.0  # an in-place write bumps the version
    assert memo(images[0:3]).item() == pytest.approx(images[0:3].sum().item()) and len(calls) == 3


# -- the generic audit --------------------------------------------------------------------------------------
def test_a_coordinate_released_without_noise_is_found():
    """A Gaussian release that forgets to noise its last coordinate (the count), audited black-box."""

    def release(d: ImageDataset) -> torch.Tensor:
        x = torch.randn(5, dtype=torch.float64) * 4.0
        x[-1] = float(len(d))
        return x

    data = _data()
    neighbour = with_canary(data, torch.zeros(*INFO.shape), 0)
    result = audit_mechanism(release, data, neighbour, trials=400, delta=1e-5, claimed_epsilon=1.0)
    # 200 calibration trials per side estimate the statistic, 100 choose τ, 100 evaluate it: all separated
    assert result.calibration_trials == 200 and result.bound.n_negative == result.bound.n_positive == 100
    u = 1 - (1 - math.sqrt(0.95)) ** (1 / 100)
    assert result.bound.fpr == result.bound.fnr == 0.0
    assert result.violation and result.epsilon_lower == pytest.approx(math.log((1 - 1e-5 - u) / u))


# -- power checks: correct implementations are not flagged, broken ones are ----------------------------------
@pytest.mark.parametrize("known", [True, False], ids=["known-difference", "estimated-difference"])
def test_dp_merf_correct_release_stays_below_its_claim(merf, known):
    method, data, neighbour = merf
    for _ in range(2):
        result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS, known_difference=known)
        assert result.claimed_epsilon == pytest.approx(1.0, abs=1e-3)
        assert result.epsilon_lower <= result.claimed_epsilon and not result.violation, result


def test_dp_merf_with_a_tenth_of_the_noise_is_flagged(merf, broken_merf_noise):
    method, data, neighbour = merf
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS)
    assert result.claimed_epsilon == pytest.approx(1.0, abs=1e-3)  # the ledger still claims ε = 1
    assert result.violation and result.epsilon_lower > 2.0, result


def test_at_epsilon_10_a_tenth_of_the_noise_is_flagged_under_a_gaussian_trade_off(merf):
    method, data, neighbour = merf
    budget = PrivacyBudget(10.0, 1e-5, accountant="gdp")
    correct = audit_method(method, data, neighbour, budget, trials=1000)
    assert not correct.violation and not correct.gdp_violation, correct
    with VARIANTS.get("tenth-noise").patches():
        broken = audit_method(method, data, neighbour, budget, trials=1000)
    assert not broken.violation  # the assumption-free test cannot certify 10 with 450 evaluation trials
    assert broken.gdp_violation and broken.gdp.epsilon_lower > 20.0, broken


def test_dp_merf_with_a_tenth_of_the_noise_is_flagged_black_box(merf, broken_merf_noise):
    method, data, neighbour = merf
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS, known_difference=False)
    assert result.violation, result


def test_pe_correct_release_stays_below_its_claim(pe):
    method, data, neighbour = pe
    for _ in range(2):
        result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS)
        assert result.claimed_epsilon == pytest.approx(1.0, abs=1e-3)
        assert result.epsilon_lower <= result.claimed_epsilon and not result.violation, result


def test_pe_with_a_tenth_of_the_noise_is_flagged(pe, broken_pe_noise):
    method, data, neighbour = pe
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS)
    assert result.claimed_epsilon == pytest.approx(1.0, abs=1e-3)
    assert result.violation and result.epsilon_lower > 2.0, result


def test_dp_mepf_inherits_the_hook_and_its_broken_variant_is_flagged():
    method = DPMEPF(DPMEPF.conformance_config, INFO, seed=0, context=RunContext(progress=False))
    data = _data()
    neighbour = with_canary(data, *release_once_canary(method, data))
    assert not audit_method(method, data, neighbour, BUDGET, trials=1000).violation
    broken = broken_class(DPMEPF, "tenth-noise")(DPMEPF.conformance_config, INFO, seed=0,
                                                 context=RunContext(progress=False))
    assert audit_method(broken, data, neighbour, BUDGET, trials=1000).violation


def test_a_broken_variant_claims_what_its_own_ledger_records():
    """The claim of a broken variant comes from its audit_release's ledger, as for the correct method: PE with
    T = 2 claims the ε of one iteration's event, below the budget (a wrapper that hid the ``ledger``
    parameter once made the broken variant claim the whole budget)."""
    from dpgen_bench.audit import claimed_epsilon

    with blob_api_registered() as api:
        config = {"api": {"name": api}, "population": 10, "iterations": 2, "extractor": "random-cnn"}
        correct = PrivateEvolution(config, INFO, seed=0, context=RunContext(progress=False))
        broken = broken_class(PrivateEvolution, "tenth-noise")(config, INFO, seed=0, context=RunContext(progress=False))
        data = _data()
        claim = claimed_epsilon(correct, data, BUDGET)
        assert claim < 0.9 * BUDGET.epsilon and claimed_epsilon(broken, data, BUDGET) == pytest.approx(claim)
