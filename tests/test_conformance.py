"""The privacy conformance suite over every registered method (toy runner methods included), and its power:
each check must flag a deliberately broken method of the kind it exists to catch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import runner_toy  # noqa: F401  (registers the toy methods, so the suite below runs over them too)
from dpgen_bench.conformance import ConformanceError, checks
from dpgen_bench.conformance.test_methods import *  # noqa: F401,F403  (the suite, parametrised over list_methods())
from dpgen_bench.method import Capabilities, GenerativeMethod
from dpgen_bench.privacy.calibration import calibrate_gaussian_releases
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.noise import gaussian_noise
from dpgen_bench_baselines import dp_gan
from dpgen_bench_baselines.dcgan import Generator, PrivateDiscriminatorError


class _PixelMeans(GenerativeMethod):
    """One noisy global pixel mean; subclasses break one rule each."""

    name = "broken-means"
    capabilities = Capabilities(labelled=False, unlabelled=True, channels=(1, 3))

    @property
    def samples_labelled(self) -> bool:
        return False

    def noise(self, shape, std):
        return gaussian_noise(shape, std, dtype=torch.float32)

    def sensitivity_scale(self, train) -> float:
        return 1.0

    def fit(self, train, budget, ledger) -> None:
        x = train.images.flatten(1).clamp(0, 1)
        total = x.sum(0)
        if budget.is_private:
            sigma = calibrate_gaussian_releases([self.sensitivity_scale(train)], budget)
            total = total + self.noise(total.shape, sigma * math.sqrt(x.shape[1]))
            ledger.record(GaussianEvent(sigma / self.sensitivity_scale(train)), "pixel sum")
        self.mean = (total / train.public_size()).clamp(0, 1)

    def generate(self, n, labels, generator):
        return self.mean.expand(n, -1).reshape(n, *self.info.shape).clone()

    def checkpoint_state(self):
        return {"mean": self.mean}

    def load_checkpoint_state(self, state) -> None:
        self.mean = state["mean"]


def test_a_correct_toy_method_passes_every_check() -> None:
    checks.check_fresh_release_noise(_PixelMeans)
    checks.check_public_stream(_PixelMeans)
    assert checks.check_accountants(_PixelMeans) == ["prv", "rdp", "prv-accountant", "gdp"]


def test_release_noise_seeded_from_the_public_run_seed_is_flagged() -> None:
    class SeededNoise(_PixelMeans):
        def noise(self, shape, std):
            return torch.randn(shape, generator=torch.Generator().manual_seed(self.seed)) * std

    with pytest.raises(ConformanceError, match="identical checkpoints"):
        checks.check_fresh_release_noise(SeededNoise)


def test_a_plan_computed_from_the_private_length_is_flagged() -> None:
    class LengthInPlan(_PixelMeans):
        def sensitivity_scale(self, train) -> float:
            return 100.0 / len(train)  # private n leaks into σ

    with pytest.raises(ConformanceError, match="ledger depends on the private data"):
        checks.check_public_stream(LengthInPlan)


def test_public_draws_consumed_in_private_amounts_are_flagged() -> None:
    class LengthInStream(_PixelMeans):
        def fit(self, train, budget, ledger) -> None:
            super().fit(train, budget, ledger)
            torch.randn(len(train), generator=torch.Generator().manual_seed(self.seed))

    with pytest.raises(ConformanceError, match="consumed different amounts"):
        checks.check_public_stream(LengthInStream)


def test_global_random_stream_consumed_in_private_amounts_is_flagged() -> None:
    class LengthInGlobalStream(_PixelMeans):
        def fit(self, train, budget, ledger) -> None:
            super().fit(train, budget, ledger)
            torch.randn(len(train))

    with pytest.raises(ConformanceError, match="global random generator"):
        checks.check_public_stream(LengthInGlobalStream)


def test_an_accountant_the_method_cannot_use_must_be_refused_before_training() -> None:
    class ClaimsDPSGD(_PixelMeans):
        capabilities = Capabilities(labelled=False, unlabelled=True, dp_sgd=True)

    with pytest.raises(ConformanceError, match="cannot use accountant 'gdp', but fit\\(\\) trained"):
        checks.check_accountants(ClaimsDPSGD)


def test_a_dp_sgd_method_without_a_gradient_probe_is_flagged() -> None:
    class NoProbe(_PixelMeans):
        capabilities = Capabilities(labelled=False, unlabelled=True, dp_sgd=True)

    with pytest.raises(ConformanceError, match="without a gradient_probe"):
        checks.check_neighbouring_independence(NoProbe)


class _BatchNormGenerator(Generator):
    """The generator of the first DP-CGAN: batch statistics mix the rows of D's fake batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.net[0] = nn.BatchNorm2d(self.top)


class BatchNormCGAN(dp_gan.DPCGAN):
    def build_generator(self):
        c = self.config
        return _BatchNormGenerator(self.info.channels, self.info.height, self._num_classes, c.z_dim, c.g_width)


def test_dp_cgan_with_a_batchnorm_generator_is_refused_at_construction() -> None:
    with pytest.raises(PrivateDiscriminatorError, match="generator must treat every example separately"):
        checks.check_declarations(BatchNormCGAN)


def test_neighbouring_independence_flags_fakes_that_depend_on_the_whole_batch(monkeypatch) -> None:
    monkeypatch.setattr(dp_gan, "validate_per_example", lambda module: None)  # let the broken G through

    with pytest.raises(ConformanceError, match="gradient rows of the other examples change"):
        checks.check_neighbouring_independence(BatchNormCGAN)


def test_one_latent_stream_shared_by_d_and_g_steps_is_flagged() -> None:
    """The first DP-GAN drew D's fakes (as many rows as the private batch) and G's latents from one seeded
    generator, so every later latent depended on the private Poisson batch sizes."""

    class SharedStream(dp_gan.DPCGAN):
        def _latents(self, m, generator):
            if not hasattr(self, "_shared"):
                self._shared = torch.Generator().manual_seed(self.seed + 3)
            return torch.randn(m, self.config.z_dim, generator=self._shared)

    with pytest.raises(ConformanceError, match="consumed different amounts"):
        checks.check_public_stream(SharedStream)


# ------------------------------------------------------------------ the noise actually drawn (check_noise_draws)


def test_the_honest_noisy_mean_draws_exactly_the_noise_its_ledger_records() -> None:
    from dpgen_bench.audit.toys import NoisyPixelMean

    assert checks.check_noise_draws(NoisyPixelMean) is None


def test_a_plugin_that_records_sigma_but_draws_a_tenth_of_it_fails() -> None:
    from dpgen_bench.audit.toys import TenthNoisePixelMean

    with pytest.raises(ConformanceError, match="the noise added is not the noise accounted for"):
        checks.check_noise_draws(TenthNoisePixelMean)


def test_a_noise_scale_that_depends_on_the_parity_of_the_private_size_fails() -> None:
    from dpgen_bench.audit.toys import ParityNoisePixelMean

    with pytest.raises(ConformanceError, match="the noise drawn depends on the private data"):
        checks.check_noise_draws(ParityNoisePixelMean)


def test_noise_drawn_outside_the_library_is_reported_unchecked_not_passed() -> None:
    class OwnNoise(_PixelMeans):
        def noise(self, shape, std):
            return torch.randn(shape) * std  # not through gaussian_noise: the suite cannot see it

    unchecked = checks.check_noise_draws(OwnNoise)
    assert isinstance(unchecked, checks.NoiseUnchecked) and "no noise was drawn through" in unchecked


def test_a_draw_without_a_declared_sensitivity_is_compared_across_neighbours_only() -> None:
    unchecked = checks.check_noise_draws(_PixelMeans)  # gaussian_noise(shape, std) without sensitivity=
    assert isinstance(unchecked, checks.NoiseUnchecked) and "declare no sensitivity" in unchecked


def test_opacus_gradient_noise_is_recorded_with_the_clipping_norm_as_its_sensitivity() -> None:
    from dpgen_bench.audit.broken import broken_class

    with pytest.raises(ConformanceError, match="opacus.*the noise added is not the noise accounted for"):
        checks.check_noise_draws(broken_class(dp_gan.DPCGAN, "tenth-noise"))
