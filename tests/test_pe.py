"""Private Evolution (`pe`): the DP vote histogram, its ledger, resampling and sampling."""

from __future__ import annotations

import math

import pytest
import torch

from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.calibration import calibrate, gaussian_releases_plan
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_methods.pe_api import PE_APIS, register_pe_api
from dpgen_bench_methods.private_evolution import PrivateEvolution, resample, vote_histogram
from pe_toy import BLOB_API, BlobAPI, blob_api_registered

INFO = DatasetInfo("toy-grey", 1, 8, 8, 3)


@pytest.fixture(autouse=True)
def blob_api():
    with blob_api_registered():
        yield


CONFIG = {"api": {"name": BLOB_API}, "population": 30, "iterations": 4, "extractor": "random-cnn"}


def _data(n: int = 60, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = (labels.float() / 2).view(-1, 1, 1, 1).expand(-1, 1, 8, 8) * 0.8 + 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    return ImageDataset(images.clamp(0, 1), labels, INFO, split="train", nominal_size=n)


def _pe(**changes) -> PrivateEvolution:
    return PrivateEvolution({**CONFIG, **changes}, INFO, seed=0, context=RunContext(progress=False))


def test_each_private_example_casts_exactly_one_vote_within_its_class():
    g = torch.Generator().manual_seed(1)
    private, candidates = torch.randn(50, 4, generator=g), torch.randn(12, 4, generator=g)
    p_groups, c_groups = torch.arange(50) % 3, torch.arange(12) % 3
    votes = vote_histogram(private, p_groups, candidates, c_groups)
    assert int(votes.sum()) == 50
    for k in range(3):
        assert int(votes[c_groups == k].sum()) == int((p_groups == k).sum())


def test_removing_one_private_example_changes_one_bin_by_exactly_one():
    g = torch.Generator().manual_seed(2)
    private, candidates = torch.randn(40, 4, generator=g), torch.randn(10, 4, generator=g)
    p_groups, c_groups = torch.arange(40) % 2, torch.arange(10) % 2
    full = vote_histogram(private, p_groups, candidates, c_groups)
    for removed in (0, 17, 39):
        keep = torch.arange(40) != removed
        diff = full - vote_histogram(private[keep], p_groups[keep], candidates, c_groups)
        assert int(diff.abs().sum()) == 1 and float(diff.double().norm()) == 1.0


def test_resampling_stays_within_groups_and_consumes_the_public_stream_independently_of_the_weights():
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    states = []
    for weights in (torch.tensor([5.0, 0, 0, 0, 0, 1]), torch.tensor([0.0, 0, 0, 0, 0, 0])):
        gen = torch.Generator().manual_seed(3)
        picked = resample(weights, groups, gen)
        assert torch.equal(groups[picked], groups)
        states.append(gen.get_state())
    assert torch.equal(states[0], states[1])
    picked = resample(torch.tensor([5.0, 0, 0, 0, 0, 1]), groups, torch.Generator().manual_seed(0))
    assert picked[:3].tolist() == [0, 0, 0] and picked[3:].tolist() == [5, 5, 5]


def test_the_ledger_holds_one_gaussian_event_per_iteration_at_the_calibrated_sigma():
    budget = PrivacyBudget(2.0, 1e-5)
    ledger = PrivacyLedger()
    pe = _pe()
    pe.fit(_data(), budget, ledger)
    sigma = calibrate(gaussian_releases_plan([1.0] * 4), budget)
    assert ledger.events == [GaussianEvent(sigma)] * 4
    assert pe.noise_multiplier == pytest.approx(sigma)
    assert ledger.epsilon(budget) <= budget.epsilon * (1 + 1e-9)


def test_a_non_private_run_records_nothing_and_is_reproducible():
    a, b = _pe(), _pe()
    for pe in (a, b):
        ledger = PrivacyLedger()
        pe.fit(_data(), PrivacyBudget(math.inf, 1e-5), ledger)
        assert len(ledger) == 0
    assert torch.equal(a.sample(20, seed=1)[0], b.sample(20, seed=1)[0])


def test_non_private_evolution_moves_the_population_towards_the_private_data():
    pe = _pe(iterations=6, strength_start=0.5, strength_end=0.1)
    start = BlobAPI(INFO).random(torch.arange(30) % 3, torch.Generator().manual_seed(0))
    pe.fit(_data(), PrivacyBudget(math.inf, 1e-5), PrivacyLedger())
    target = (torch.arange(3).float() / 2 * 0.8 + 0.05)  # the private grey level of each class
    before = (start.state.flatten() - target[start.labels]).abs().mean()
    after = (pe.population.state.flatten() - target[pe.population.labels]).abs().mean()
    assert after < 0.5 * before


def test_samples_are_drawn_from_the_population_of_their_class():
    pe = _pe()
    pe.fit(_data(), PrivacyBudget(5.0, 1e-5), PrivacyLedger())
    images, labels = pe.sample(45, seed=0)
    assert torch.bincount(labels).tolist() == [15, 15, 15]
    pop = pe.population
    for img, k in zip(images, labels):
        members = pop.images[pop.labels == k]
        assert (members - img).flatten(1).abs().amax(1).min() < 1e-6


def test_an_unconditional_api_with_labelled_pe_is_refused_at_construction():
    class _Unconditional(BlobAPI):
        conditional = False

    register_pe_api("test-unconditional")(_Unconditional)
    try:
        with pytest.raises(ValueError, match="unconditional: set class_conditioning: votes"):
            PrivateEvolution({**CONFIG, "api": {"name": "test-unconditional"}}, INFO)
        PrivateEvolution({**CONFIG, "api": {"name": "test-unconditional"}, "labelled": False}, INFO)
    finally:
        PE_APIS.unregister("test-unconditional")


def test_class_conditioning_votes_gives_labelled_blocks_from_class_free_api_calls():
    """DPSDA's PE with an ImageNet model: the API is asked for label -1 only, yet each class keeps its own block
    of N/K candidates, voted on by that class alone, and samples carry the block's class."""
    asked: list[torch.Tensor] = []

    class _Unconditional(BlobAPI):
        conditional = False

        def random(self, labels, generator):
            asked.append(labels.clone())
            return super().random(labels, generator)

        def variation(self, population, strength, generator):
            asked.append(population.labels.clone())
            return super().variation(population, strength, generator)

    register_pe_api("test-unconditional")(_Unconditional)
    try:
        pe = _pe(api={"name": "test-unconditional"}, class_conditioning="votes")
        assert PrivateEvolution.capabilities_for(pe.config).labelled
        pe.fit(_data(), PrivacyBudget(float("inf"), 1e-5), PrivacyLedger())
    finally:
        PE_APIS.unregister("test-unconditional")
    assert asked and all(bool((a == -1).all()) for a in asked)
    assert torch.bincount(pe.population.labels).tolist() == [10, 10, 10]
    # exact votes, classes at grey levels 0.1 / 0.5 / 0.9: each block drifts to its own class's level
    levels = [float(pe.population.state[pe.population.labels == k].mean()) for k in range(3)]
    assert levels[0] < levels[1] < levels[2]
    _, labels = pe.sample(30, seed=0)
    assert torch.bincount(labels).tolist() == [10, 10, 10]


def test_an_unknown_api_is_refused_naming_the_valid_ones():
    from dpgen_bench.method import ConfigError

    with pytest.raises(ConfigError, match="unknown PE API 'nope'; available: .*digit-simulator"):
        PrivateEvolution({**CONFIG, "api": {"name": "nope"}}, INFO)
