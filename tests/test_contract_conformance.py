"""The contract conformance suite over every registered method (toy runner methods included), and its power:
each check must flag a deliberately broken method of the kind it exists to catch, and pass a correct one."""

from __future__ import annotations

import math

import pytest
import torch

import runner_toy  # noqa: F401  (registers the toy methods, so the suite below runs over them too)
from dpgen_bench.conformance import contract
from dpgen_bench.conformance.contract import ContractError
from dpgen_bench.conformance.test_contract import *  # noqa: F401,F403  (the suite, parametrised over list_methods())
from dpgen_bench.method import Capabilities, GenerativeMethod, MethodConfig
from dpgen_bench.privacy.calibration import calibrate_gaussian_releases
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.noise import gaussian_noise
from dpgen_bench_methods.dp_merf import DPMERF


class _Config(MethodConfig):
    spread: float = 0.1


class _Means(GenerativeMethod):
    """Correct: noisy per-class pixel means plus seeded pixel noise when sampling; subclasses break one rule each."""

    name = "contract-toy"
    Config = _Config
    capabilities = Capabilities(labelled=True, unlabelled=False, channels=(1,))

    def fit(self, train, budget, ledger) -> None:
        x = train.images.flatten(1)
        k, d = self.info.num_classes, x.shape[1]
        sums = torch.zeros(k, d).index_add_(0, train.labels, x)
        counts = torch.bincount(train.labels, minlength=k).float()
        if budget.is_private:
            sigma = calibrate_gaussian_releases([1.0, 1.0], budget)
            sums = sums + gaussian_noise((k, d), sigma * math.sqrt(d), dtype=torch.float32)
            counts = counts + gaussian_noise((k,), sigma, dtype=torch.float32)
            ledger.record(GaussianEvent(sigma), "per-class sums")
            ledger.record(GaussianEvent(sigma), "per-class counts")
        self.means = (sums / counts.clamp(min=1.0)[:, None]).clamp(0, 1)

    def noise(self, shape, generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator)

    def generate(self, n, labels, generator):
        x = self.means[labels] + self.config.spread * self.noise((n, self.means.shape[1]), generator)
        return x.clamp(0, 1).reshape(n, *self.info.shape)

    def checkpoint_state(self):
        return {"means": self.means}

    def load_checkpoint_state(self, state) -> None:
        self.means = state["means"]


class _GlobalMean(_Means):
    """Correct, unlabelled: one noisy mean of all images."""

    capabilities = Capabilities(labelled=False, unlabelled=True, channels=(1,))

    def fit(self, train, budget, ledger) -> None:
        super().fit(train, budget, ledger)
        self.means = self.means.mean(0, keepdim=True)

    def generate(self, n, labels, generator):
        return super().generate(n, torch.zeros(n, dtype=torch.long), generator)


def _fitted(method: type[GenerativeMethod], epsilon: float = contract.PRIVATE_EPSILON, shape: str = "grey8"):
    return contract.fit_tiny(method, shape, epsilon)


# ------------------------------------------------------------------------------------------------ correct ones


@pytest.mark.parametrize("method", [_Means, _GlobalMean], ids=["labelled", "unlabelled"])
def test_correct_toy_methods_pass_the_whole_contract(method) -> None:
    assert contract.check_contract(method) == ["grey28", "grey8"]
    assert contract.check_refuses_unsupported(method) == 1  # a 3-channel dataset


def test_a_method_outside_every_suite_shape_is_still_checked_on_one_it_supports() -> None:
    class Only64(_Means):
        capabilities = Capabilities(labelled=True, unlabelled=False, channels=(3,), image_sizes=(64,))

    assert contract.supported_shapes(Only64) == ["c3s64"] and contract.shape_of("c3s64") == (3, 64, 64)
    assert contract.unsupported_shapes(Only64) == [("channels", (1, 64, 64)), ("size", (3, 16, 16))]


# ------------------------------------------------------------------------------------------------ construction


def test_samples_labelled_contradicting_the_capabilities_is_flagged() -> None:
    class ClaimsLabels(_GlobalMean):
        @property
        def samples_labelled(self) -> bool:
            return True

    with pytest.raises(ContractError, match="contradicts capabilities"):
        contract.check_construction(ClaimsLabels, contract.contract_info("grey8"))


def test_a_construction_that_fails_with_the_defaults_is_flagged() -> None:
    class NeedsConfig(_Means):
        def __init__(self, config, info, seed=0, context=None) -> None:
            super().__init__(config, info, seed, context)
            if config is None:
                raise KeyError("spread")

    with pytest.raises(ContractError, match=r"the default config.*raised KeyError"):
        contract.check_construction(NeedsConfig, contract.contract_info("grey8"))


# ------------------------------------------------------------------------------------------------ fit


def test_a_non_private_fit_that_records_a_release_is_flagged() -> None:
    class RecordsAlways(_Means):
        def fit(self, train, budget, ledger) -> None:
            super().fit(train, budget, ledger)
            if not budget.is_private:
                ledger.record(GaussianEvent(1.0), "a release nobody made")

    instance, ledger, _ = _fitted(RecordsAlways, math.inf)
    with pytest.raises(ContractError, match="non-private fit"):
        contract.check_fit_ledger(instance, ledger, math.inf)
    instance, ledger, _ = _fitted(_Means, math.inf)
    contract.check_fit_ledger(instance, ledger, math.inf)


def test_a_private_fit_that_records_nothing_is_flagged() -> None:
    class RecordsNothing(_Means):
        def fit(self, train, budget, ledger) -> None:
            from dpgen_bench.privacy.ledger import PrivacyLedger

            super().fit(train, budget, PrivacyLedger())

    instance, ledger, _ = _fitted(RecordsNothing)
    with pytest.raises(ContractError, match="recorded nothing"):
        contract.check_fit_ledger(instance, ledger, contract.PRIVATE_EPSILON)


# ------------------------------------------------------------------------------------------------ samples


def test_out_of_range_pixels_are_flagged() -> None:
    class NoClamp(_Means):
        def generate(self, n, labels, generator):
            return (self.means[labels] + self.noise((n, self.means.shape[1]), generator)).reshape(n, *self.info.shape)

    with pytest.raises(ContractError, match=r"outside \[0, 1\]"):
        contract.check_samples(_fitted(NoClamp)[0])


def test_non_finite_pixels_are_flagged() -> None:
    class NaNs(_Means):
        def generate(self, n, labels, generator):
            x = super().generate(n, labels, generator)
            x[:, :, 0, 0] = float("nan")
            return x

    with pytest.raises(ContractError, match="non-finite"):
        contract.check_samples(_fitted(NaNs)[0])


def test_float64_images_are_flagged() -> None:
    class Doubles(_Means):
        def sample(self, n, labels=None, seed=None):
            images, labels = super().sample(n, labels, seed)
            return images.double(), labels

    with pytest.raises(ContractError, match="expected torch.float32"):
        contract.check_samples(_fitted(Doubles)[0])


def test_int32_labels_are_flagged() -> None:
    class Int32Labels(_Means):
        def sample(self, n, labels=None, seed=None):
            images, labels = super().sample(n, labels, seed)
            return images, labels.int()

    with pytest.raises(ContractError, match="expected torch.int64"):
        contract.check_samples(_fitted(Int32Labels)[0])


def test_unbalanced_labels_are_flagged() -> None:
    class AllClassZero(_Means):
        def balanced_labels(self, n, generator=None):
            return torch.zeros(n, dtype=torch.long)

    with pytest.raises(ContractError, match="not class-balanced"):
        contract.check_samples(_fitted(AllClassZero)[0])


def test_labels_of_an_unlabelled_model_that_are_not_minus_one_are_flagged() -> None:
    class ZeroLabels(_GlobalMean):
        def sample(self, n, labels=None, seed=None):
            images, _ = super().sample(n, labels, seed)
            return images, torch.zeros(n, dtype=torch.long)

    with pytest.raises(ContractError, match="expected all -1"):
        contract.check_samples(_fitted(ZeroLabels)[0])


def test_given_labels_that_are_not_returned_are_flagged() -> None:
    class IgnoresLabels(_Means):
        def sample(self, n, labels=None, seed=None):
            return super().sample(n, None, seed)

    with pytest.raises(ContractError, match=r"sample\(7, labels=.*returned labels"):
        contract.check_given_labels(_fitted(IgnoresLabels)[0])


# ------------------------------------------------------------------------------------------------ determinism


def test_a_generate_that_ignores_its_generator_is_flagged() -> None:
    class GlobalRNG(_Means):
        def noise(self, shape, generator):
            return torch.randn(shape)

    with pytest.raises(ContractError, match="two sample.*seed=5.* calls returned different images"):
        contract.check_determinism(_fitted(GlobalRNG)[0])


def test_a_generator_kept_between_calls_is_flagged() -> None:
    class StatefulRNG(_Means):
        def noise(self, shape, generator):
            if not hasattr(self, "_rng"):
                self._rng = generator
            return torch.randn(shape, generator=self._rng)

    with pytest.raises(ContractError, match="returned different images"):
        contract.check_determinism(_fitted(StatefulRNG)[0])


def test_a_seed_that_changes_nothing_is_flagged() -> None:
    class FixedNoise(_Means):
        def noise(self, shape, generator):
            return torch.randn(shape, generator=torch.Generator().manual_seed(0))

    with pytest.raises(ContractError, match="the seed has no effect"):
        contract.check_determinism(_fitted(FixedNoise)[0])


def test_a_seed_that_only_shuffles_the_labels_is_flagged() -> None:
    class DeterministicPerClass(_Means):
        def noise(self, shape, generator):
            return torch.zeros(shape)

    with pytest.raises(ContractError, match="identical images for the same labels"):
        contract.check_determinism(_fitted(DeterministicPerClass)[0])


def test_a_default_seed_other_than_the_methods_seed_is_flagged() -> None:
    class OtherDefault(_Means):
        def sample(self, n, labels=None, seed=None):
            return super().sample(n, labels, 12345 if seed is None else seed)

    with pytest.raises(ContractError, match=r"differs from sample\(7, seed=0\)"):
        contract.check_determinism(_fitted(OtherDefault)[0])


# ------------------------------------------------------------------------------------------------ sample(0), bad input


def test_a_sample_zero_that_fails_is_flagged() -> None:
    class RowByRow(_Means):
        def generate(self, n, labels, generator):
            return torch.stack([super(RowByRow, self).generate(1, labels[i:i + 1], generator)[0] for i in range(n)])

    contract.check_samples(_fitted(RowByRow)[0])  # fine for n > 0
    with pytest.raises(ContractError, match=r"sample\(0.*raised RuntimeError"):
        contract.check_empty_sample(_fitted(RowByRow)[0])


def test_bad_sample_input_that_is_silently_repaired_is_flagged() -> None:
    class Lenient(_Means):
        def sample(self, n, labels=None, seed=None):
            if labels is not None:
                labels = torch.as_tensor(labels).flatten()[: max(n, 0)].clamp(0, self.info.num_classes - 1)
            return super().sample(max(n, 0), labels, seed)

    with pytest.raises(ContractError, match=r"sample\(-1\) was accepted"):
        contract.check_bad_sample_input(_fitted(Lenient)[0])

    class LenientLabels(Lenient):
        def sample(self, n, labels=None, seed=None):
            if n < 0:
                raise ValueError("n < 0")
            return super().sample(n, labels, seed)

    with pytest.raises(ContractError, match=r"labels of shape \(8,\) was accepted"):
        contract.check_bad_sample_input(_fitted(LenientLabels)[0])


def test_labels_accepted_by_an_unlabelled_model_are_flagged() -> None:
    class TakesLabels(_GlobalMean):
        def sample(self, n, labels=None, seed=None):
            return super().sample(n, None, seed)

    with pytest.raises(ContractError, match="for a model that samples unlabelled was accepted"):
        contract.check_bad_sample_input(_fitted(TakesLabels)[0])


def test_a_refusal_with_the_wrong_exception_type_is_flagged() -> None:
    class AssertsInstead(_Means):
        def sample(self, n, labels=None, seed=None):
            if labels is not None and int(torch.as_tensor(labels).max()) >= self.info.num_classes:
                raise IndexError("label out of range")
            return super().sample(n, labels, seed)

    with pytest.raises(ContractError, match="raised IndexError.*expected ValueError"):
        contract.check_bad_sample_input(_fitted(AssertsInstead)[0])


# ------------------------------------------------------------------------------------------------ save / load


def test_a_checkpoint_that_forgets_the_weights_is_flagged(tmp_path) -> None:
    class Forgetful(_Means):
        def checkpoint_state(self):
            return {}

        def load_checkpoint_state(self, state) -> None:
            self.means = torch.full((self.info.num_classes, math.prod(self.info.shape)), 0.5)

    with pytest.raises(ContractError, match="after save/load, sample.*differs"):
        contract.check_round_trip(_fitted(Forgetful)[0], tmp_path)


def test_a_checkpoint_that_forgets_the_sampling_config_is_flagged(tmp_path) -> None:
    class ForgetsSpread(_Means):
        def load_checkpoint_state(self, state) -> None:
            super().load_checkpoint_state(state)
            self.config = self.Config(spread=0.3)

    with pytest.raises(ContractError, match="load\\(\\) restored config"):
        contract.check_round_trip(_fitted(ForgetsSpread)[0], tmp_path)


def test_a_checkpoint_holding_training_images_is_flagged(tmp_path) -> None:
    class KeepsExamples(_Means):
        def fit(self, train, budget, ledger) -> None:
            super().fit(train, budget, ledger)
            self.examples = train.images[3:5].clone()

        def checkpoint_state(self):
            return {"means": self.means, "extra": {"nearest": [self.examples]}}

    instance, _, data = _fitted(KeepsExamples)
    with pytest.raises(ContractError, match="contains a training image"):
        contract.check_round_trip(instance, tmp_path / "a", data=data)
    contract.check_round_trip(_fitted(_Means)[0], tmp_path / "b", data=data)


def test_a_load_that_reads_the_original_folder_is_flagged(tmp_path) -> None:
    saved_at: dict = {}

    class RemembersFolder(_Means):
        def save(self, directory):
            saved_at["dir"] = directory
            return super().save(directory)

        @classmethod
        def load(cls, directory, context=None):
            return super().load(saved_at["dir"], context)

    with pytest.raises(ContractError, match="load\\(\\) raised FileNotFoundError"):
        contract.check_round_trip(_fitted(RemembersFolder)[0], tmp_path)


# ------------------------------------------------------------------------------------------------ refusal


def test_a_method_that_accepts_a_shape_outside_its_capabilities_is_flagged() -> None:
    class LaxCapabilities(Capabilities):
        def check(self, info) -> None:
            return None

    class AcceptsRGB(_Means):
        capabilities = LaxCapabilities(labelled=True, unlabelled=False, channels=(1,))

    with pytest.raises(ContractError, match="3x28x28 dataset .channels outside its capabilities. was accepted"):
        contract.check_refuses_unsupported(AcceptsRGB)


def test_a_refusal_that_does_not_name_the_problem_is_flagged() -> None:
    class VagueCapabilities(Capabilities):
        def check(self, info) -> None:
            if info.channels not in self.channels or (self.image_sizes and info.height not in self.image_sizes):
                raise ValueError("this dataset is not supported")

    class Vague(_Means):
        capabilities = VagueCapabilities(labelled=True, unlabelled=False, channels=(1,), image_sizes=(8, 28))

    with pytest.raises(ContractError, match="does not name the channels"):
        contract.check_refuses_unsupported(Vague)


def test_a_size_refused_only_at_fit_time_is_flagged() -> None:
    class SizeCheckedLate(_Means):
        capabilities = Capabilities(labelled=True, unlabelled=False, channels=(1, 2, 3, 4), image_sizes=(8, 28))

        def __init__(self, config, info, seed=0, context=None) -> None:
            caps = type(self).capabilities
            type(self).capabilities = Capabilities(labelled=True, unlabelled=False, channels=caps.channels)
            try:
                super().__init__(config, info, seed, context)
            finally:
                type(self).capabilities = caps

    with pytest.raises(ContractError, match="construction on a 1x16x16 dataset .size.*was accepted"):
        contract.check_refuses_unsupported(SizeCheckedLate)


# ------------------------------------------------------------------------------------------------ a built-in, broken


def test_a_built_in_whose_generate_ignores_the_generator_is_flagged(monkeypatch) -> None:
    instance, _, _ = contract.fit_tiny(DPMERF, "grey8", math.inf)
    contract.check_determinism(instance)
    original = DPMERF.generate

    def global_rng(self, n, labels, generator):
        return original(self, n, labels, torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()))))

    monkeypatch.setattr(DPMERF, "generate", global_rng)
    with pytest.raises(ContractError, match="returned different images"):
        contract.check_determinism(instance)


def test_a_built_in_whose_generator_is_not_restored_by_load_is_flagged(monkeypatch, tmp_path) -> None:
    instance, _, _ = contract.fit_tiny(DPMERF, "grey8", contract.PRIVATE_EPSILON)
    contract.check_round_trip(instance, tmp_path / "a")
    monkeypatch.setattr(DPMERF, "load_checkpoint_state", lambda self, state: None)  # keeps the fresh weights
    with pytest.raises(ContractError, match="after save/load"):
        contract.check_round_trip(instance, tmp_path / "b")


def test_the_suite_uses_the_capabilities_the_method_has_with_its_conformance_config() -> None:
    class GreyWhenNarrow(_Means):
        capabilities = Capabilities(labelled=True, unlabelled=False, channels=(1, 3))

        @classmethod
        def capabilities_for(cls, config):
            return Capabilities(labelled=True, unlabelled=False, channels=(1,) if config.spread < 0.5 else (1, 3))

    assert contract.supported_shapes(GreyWhenNarrow) == ["grey28", "grey8"]
    assert contract.unsupported_shapes(GreyWhenNarrow) == [("channels", (3, 28, 28))]
    assert contract.check_refuses_unsupported(GreyWhenNarrow) == 1
