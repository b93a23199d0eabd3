"""DP-SGD GAN baselines (dp-gan, dp-cgan): privacy bookkeeping, Opacus wiring, checkpoints.

Every training run here is one epoch on ≤ 200 tiny images with width-8 networks.
"""

from __future__ import annotations

import math

import pytest
import torch
from opacus.data_loader import DPDataLoader
from opacus.optimizers.optimizer import DPOptimizer
from torch import nn
from torch.utils.data import TensorDataset

from dpgen_bench import ConfigError, DatasetInfo, ImageDataset, PrivacyBudget, PrivacyLedger, get_method
from dpgen_bench.context import RunContext
from dpgen_bench.privacy.plans import dpsgd_steps
from dpgen_bench_baselines.dcgan import Discriminator, PrivateDiscriminatorError, validate_private_discriminator
from dpgen_bench_baselines.dp_gan import DPCGAN, DPGAN, TrainingDivergedError, make_private_discriminator
from dpgen_bench_baselines.per_sample_conv import PerSampleConv2d

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = {"epochs": 1, "batch_size": 20, "g_width": 8, "d_width": 8, "z_dim": 8}
DELTA = 1e-5


def _data(n: int = 200, size: int = 28, channels: int = 1, seed: int = 0) -> ImageDataset:
    info = DatasetInfo(f"toy{size}", channels, size, size, 10)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (torch.rand(n, channels, size, size, generator=gen) * 0.5 + labels.view(-1, 1, 1, 1) / 20).clamp(0, 1)
    return ImageDataset(images, labels, info, "train", nominal_size=n)


class _StepSpy:
    """Counts DP optimizer steps that really updated D (pre_step returned True)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps = 0
        original = DPOptimizer.pre_step

        def pre_step(opt, closure=None):  # type: ignore[no-untyped-def]
            done = original(opt, closure)
            self.steps += int(bool(done))
            return done

        monkeypatch.setattr(DPOptimizer, "pre_step", pre_step)


def test_ledger_epsilon_after_short_run_is_within_target(monkeypatch: pytest.MonkeyPatch) -> None:
    train = _data()
    method = DPCGAN(TINY, train.info, seed=0)
    ledger = PrivacyLedger()
    budget = PrivacyBudget(2.0, DELTA)
    method.fit(train, budget, ledger)
    assert len(ledger) == 1
    spent = ledger.epsilon(budget)
    assert 0 < spent <= 2.0
    event = ledger.events[0]
    assert event.sample_rate == pytest.approx(20 / 200)
    assert event.noise_multiplier == pytest.approx(method.noise_multiplier)


def test_ledger_steps_equal_optimizer_steps_actually_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _StepSpy(monkeypatch)
    train = _data()
    method = DPGAN(TINY, train.info, seed=1)
    ledger = PrivacyLedger()
    method.fit(train, PrivacyBudget(5.0, DELTA), ledger)
    (event,) = ledger.events
    assert spy.steps == event.steps == method.steps_taken == dpsgd_steps(200, 20, 1)
    # Opacus's own accountant, fed by the same optimizer hook, saw the same number of noised steps.
    assert sum(n for _, _, n in method._opacus_accountant.history) == event.steps


def test_empty_poisson_batches_still_take_a_counted_noise_only_step(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _StepSpy(monkeypatch)
    train = _data(n=20)
    sizes: list[int] = []
    original = DPCGAN._d_step

    def d_step(self, D, opt, x, y, z_gen, step):  # type: ignore[no-untyped-def]
        sizes.append(int(x.shape[0]))
        return original(self, D, opt, x, y, z_gen, step)

    monkeypatch.setattr(DPCGAN, "_d_step", d_step)
    method = DPCGAN({**TINY, "batch_size": 1}, train.info, seed=0)
    ledger = PrivacyLedger()
    method.fit(train, PrivacyBudget(10.0, DELTA), ledger)
    assert 0 in sizes, f"no empty batch drawn (sizes {sizes}); the test needs one"
    assert spy.steps == len(sizes) == ledger.events[0].steps == 20


def test_private_discriminator_rejects_batchnorm_with_clear_error() -> None:
    class BatchNormCGAN(DPCGAN):
        def build_discriminator(self) -> nn.Module:
            d = Discriminator(1, 28, 10, width=8)
            d.features[3] = nn.BatchNorm2d(16)  # replaces the GroupNorm
            return d

    train = _data()
    ledger = PrivacyLedger()
    with pytest.raises(PrivateDiscriminatorError, match=r"features\.3 \(BatchNorm2d\) keeps running statistics"):
        BatchNormCGAN(TINY, train.info).fit(train, PrivacyBudget(1.0, DELTA), ledger)
    assert len(ledger) == 0


@pytest.mark.parametrize(
    "layer, message",
    [
        (nn.LeakyReLU(0.2, inplace=True), "works in place"),
        (nn.InstanceNorm2d(16, track_running_stats=True), "running statistics"),
    ],
)
def test_private_discriminator_rejects_inplace_and_running_stats_layers(layer: nn.Module, message: str) -> None:
    d = Discriminator(1, 28, 10, width=8)
    d.features[1] = layer if message == "works in place" else d.features[1]
    if message != "works in place":
        d.features[3] = layer
    with pytest.raises(PrivateDiscriminatorError, match=message):
        validate_private_discriminator(d)


def test_default_discriminators_pass_the_private_check() -> None:
    for size, c in [(28, 1), (32, 3), (64, 3)]:
        validate_private_discriminator(Discriminator(c, size, 10, width=8))


def test_generator_step_leaves_discriminator_per_sample_state_clean() -> None:
    train = _data(n=100)
    method = DPCGAN({**TINY, "batch_size": 10}, train.info, seed=0)
    method.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    D, opt_d = method._D, method._opt_d
    z_gen = torch.Generator().manual_seed(0)
    opt_g = torch.optim.Adam(method.generator.parameters())
    method.generator.train()
    x, y = train.images[:10], train.labels[:10]
    for step in range(2):  # two consecutive D+G steps
        method._d_step(D, opt_d, x, y, method._latents(10, z_gen), step)
        method._g_step(D, opt_g, z_gen, step, private=True)
        for p in D.parameters():
            assert p.grad_sample is None or p.grad_sample.shape[0] == 10  # only the D step's own samples
            assert not hasattr(p, "_current_grad_sample")
        assert all(not getattr(m, "activations", []) for m in D.modules()), "G step left activations on D"
        assert D.hooks_enabled


def _private_d(mode: str, width: int = 8, noise_multiplier: float = 1.0, seed: int = 0):
    """A 28×28 conditional D wrapped exactly as the trainer wraps it (make_private_discriminator)."""
    torch.manual_seed(seed)
    D = Discriminator(1, 28, 10, width=width)
    opt = torch.optim.SGD(D.parameters(), lr=0.1)
    loader = DPDataLoader(TensorDataset(torch.zeros(40, 1, 28, 28), torch.zeros(40, dtype=torch.long)), sample_rate=0.1)
    return make_private_discriminator(D, opt, loader, noise_multiplier=noise_multiplier, max_grad_norm=1.0,
                                      expected_batch_size=4, grad_sample_mode=mode)


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_discriminator_per_sample_gradient_is_the_joint_gradient_of_each_real_fake_pair(mode: str) -> None:
    """Row i of Opacus's grad_sample must be ∇[ℓ_real(x_i) + ℓ_fake(f_i)]: one clipped unit per example.

    Same wrapping and loss form as training: per-pair losses summed and divided by the batch size, "mean"
    reduction; in hooks mode the batch weight gradients are skipped (PerSampleConv2d).
    """
    gsm, _, _ = _private_d(mode)
    d = Discriminator(1, 28, 10, width=8)
    d.load_state_dict(gsm._module.state_dict())
    x, f = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    y = torch.tensor([0, 3, 5, 9])
    loss = (nn.functional.softplus(-gsm(x, y)) + nn.functional.softplus(gsm(f, y))).sum() / 4
    loss.backward()
    for i in range(4):
        d.zero_grad()
        li = nn.functional.softplus(-d(x[i:i + 1], y[i:i + 1])) + nn.functional.softplus(d(f[i:i + 1], y[i:i + 1]))
        li.sum().backward()
        for (name, p), q in zip(d.named_parameters(), gsm._module.parameters()):
            torch.testing.assert_close(q.grad_sample[i], p.grad, msg=lambda m: f"{name}, pair {i}: {m}")


def test_hooks_mode_skips_the_discarded_batch_weight_gradient_only_there() -> None:
    hooks, _, _ = _private_d("hooks")
    functorch, _, _ = _private_d("functorch")  # functorch differentiates forward itself: must keep it
    assert [m.batch_grad for m in hooks.modules() if isinstance(m, PerSampleConv2d)] == [False, False]
    assert [m.batch_grad for m in functorch.modules() if isinstance(m, PerSampleConv2d)] == [True, True]


def test_skipping_the_batch_weight_gradient_leaves_the_dp_sgd_update_unchanged() -> None:
    """Without noise, three DP-SGD steps give the same D whether or not autograd's batch gradient exists."""
    runs = []
    for skip in (True, False):
        D, opt, _ = _private_d("hooks", noise_multiplier=0.0)
        for m in D.modules():
            if isinstance(m, PerSampleConv2d):
                m.batch_grad = not skip
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            x, f = torch.rand(4, 1, 28, 28, generator=gen), torch.rand(4, 1, 28, 28, generator=gen)
            y = torch.randint(0, 10, (4,), generator=gen)
            opt.zero_grad(set_to_none=True)
            ((nn.functional.softplus(-D(x, y)) + nn.functional.softplus(D(f, y))).sum() / 4).backward()
            opt.step()
        runs.append([p.detach().clone() for p in D.parameters()])
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(runs[0], _private_d("hooks")[0].parameters())), "D never moved"


def test_checkpoint_restores_the_privacy_parameters_and_the_step_count(tmp_path) -> None:
    """Identical samples after save/load: the contract suite (dpgen_bench.conformance.contract.check_round_trip)."""
    train = _data(n=100)
    method = DPCGAN({**TINY, "batch_size": 25}, train.info, seed=3)
    method.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    method.save(tmp_path / "ckpt")
    loaded = get_method("dp-cgan").load(tmp_path / "ckpt")
    assert loaded.steps_taken == method.steps_taken == dpsgd_steps(100, 25, 1)
    assert loaded.noise_multiplier == method.noise_multiplier and loaded.noise_multiplier is not None
    assert loaded.sample_rate == method.sample_rate == pytest.approx(0.25)


def test_non_private_run_records_nothing_and_adds_no_noise() -> None:
    train = _data(n=60)
    method = DPGAN({**TINY, "batch_size": 20}, train.info, seed=0)
    ledger = PrivacyLedger()
    method.fit(train, PrivacyBudget(math.inf, DELTA), ledger)
    assert len(ledger) == 0 and method.noise_multiplier is None
    assert method.steps_taken == dpsgd_steps(60, 20, 1)


def test_a_private_batch_with_a_non_finite_loss_never_stops_training() -> None:
    # Stopping on the private batch's loss would release an un-noised bit. NaN pairs' rows are zeroed, so each
    # step is noise (plus the finite rows) and every planned step is taken and recorded.
    train = _data(n=60)
    train.images[:] = float("nan")
    ledger = PrivacyLedger()
    method = DPCGAN({**TINY, "batch_size": 30}, train.info)
    method.fit(train, PrivacyBudget(10.0, DELTA), ledger)
    assert method.steps_taken == dpsgd_steps(60, 30, 1) == ledger.events[0].steps


def test_divergence_is_decided_on_the_parameters_after_the_noised_step(monkeypatch) -> None:
    import dpgen_bench_baselines.dp_gan as dp_gan

    train = _data(n=60)
    monkeypatch.setattr(dp_gan, "parameters_finite", lambda module: False)
    ledger = PrivacyLedger()
    with pytest.raises(TrainingDivergedError, match=r"after noised step 1\b"):
        DPCGAN({**TINY, "batch_size": 30}, train.info).fit(train, PrivacyBudget(10.0, DELTA), ledger)
    assert ledger.events[0].steps == 1  # the noised step that was taken is released and recorded


def test_a_non_private_run_still_stops_on_a_non_finite_loss() -> None:
    train = _data(n=60)
    train.images[:] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"at step 1\b"):
        DPCGAN({**TINY, "batch_size": 30}, train.info).fit(train, PrivacyBudget(math.inf, DELTA), PrivacyLedger())


def test_rgb_64_model_trains_one_step() -> None:
    """64×64 is outside the contract suite's shapes (grey 28, RGB 32, grey 8), so it is checked here."""
    train = _data(n=8, size=64, channels=3)
    method = DPCGAN({**TINY, "batch_size": 8, "epochs": 1}, train.info)
    method.fit(train, PrivacyBudget(50.0, DELTA), PrivacyLedger())
    assert method.steps_taken == 1
    assert method.sample(3)[0].shape == (3, 3, 64, 64)


@pytest.mark.parametrize(
    "values, key",
    [({"batch_size": 0}, "batch_size"), ({"ema_decay": 1.0}, "ema_decay"), ({"loss": "wgan"}, "loss"),
     ({"d_width": 7}, "d_width"), ({"grad_sample_mode": "ghost"}, "grad_sample_mode"), ({"lr": 1e-3}, "lr")],
)
def test_bad_config_is_refused_naming_the_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        DPCGAN(values, _data(n=10).info)


def test_batch_larger_than_dataset_is_refused() -> None:
    train = _data(n=10)
    with pytest.raises(ValueError, match="batch_size=20"):
        DPCGAN(TINY, train.info).fit(train, PrivacyBudget(1.0, DELTA), PrivacyLedger())


def test_both_baselines_are_registered_through_entry_points() -> None:
    assert get_method("dp-gan") is DPGAN and get_method("dp-cgan") is DPCGAN


def test_discriminator_gradient_noise_is_seeded_from_os_entropy_not_the_run_seed() -> None:
    seeds = []
    for _ in range(2):
        _, opt, _ = _private_d("hooks", seed=0)  # same public seed both times
        assert opt.generator is not None, "noise would come from torch's global (seedable) RNG"
        seeds.append(opt.generator.initial_seed())
    assert seeds[0] != seeds[1]


def test_the_run_context_decides_whether_training_shows_a_progress_bar(capfd: pytest.CaptureFixture[str]) -> None:
    train = _data(n=60)
    quiet = DPCGAN({**TINY, "batch_size": 10}, train.info, context=RunContext(progress=False))
    quiet.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    assert "steps" not in capfd.readouterr().err
    DPCGAN({**TINY, "batch_size": 10}, train.info, context=RunContext(progress=True)).fit(
        train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    assert "dp-cgan steps" in capfd.readouterr().err


def _noised_step(method, x, y, z, noise_seed: int, mode: str) -> torch.Tensor:
    """The gradient one private D step leaves (σ = 0.5, C = 0.05, divisor 4), its noise from ``noise_seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        D = method.build_discriminator()
    opt = torch.optim.SGD(D.parameters(), lr=0.0)
    loader = DPDataLoader(TensorDataset(torch.zeros(40, 1, 28, 28), torch.zeros(40, dtype=torch.long)), sample_rate=0.1)
    D, opt, _ = make_private_discriminator(D, opt, loader, noise_multiplier=0.5, max_grad_norm=0.05, expected_batch_size=4,
                                           grad_sample_mode=mode, noise_generator=torch.Generator().manual_seed(noise_seed))
    method._d_step(D, opt, x, y, z, step=0)
    return torch.cat([p.grad.flatten() for p in D.parameters()])


@pytest.mark.parametrize("mode", ["hooks", "grouped"])
def test_fixed_physical_chunks_give_the_one_pass_clipped_noised_sum(mode: str) -> None:
    # 7 pairs in chunks of 3: three chunks, two masked pairs whose rows must be zeroed before clipping.
    data = _data(n=7)
    z = torch.randn(7, TINY["z_dim"], generator=torch.Generator().manual_seed(1))
    whole = DPCGAN({**TINY, "grad_sample_mode": mode}, data.info, seed=0)
    chunked = DPCGAN({**TINY, "grad_sample_mode": mode, "physical_batch_size": 3}, data.info, seed=0)
    a = _noised_step(whole, data.images, data.labels, z, noise_seed=5, mode=mode)
    b = _noised_step(chunked, data.images, data.labels, z, noise_seed=5, mode=mode)
    assert float((a - b).norm() / a.norm()) <= 1e-5
    noise_only = _noised_step(chunked, data.images[:0], data.labels[:0], z[:0], noise_seed=5, mode=mode)
    assert float((a - noise_only).norm() / a.norm()) > 1e-3, "the clipped sum must matter in this comparison"


def test_with_physical_chunks_the_discriminator_only_sees_the_public_chunk_size(monkeypatch) -> None:
    # Memory must be a function of public sizes: every private D pass runs on exactly physical_batch_size pairs,
    # whatever the Poisson batch size (here 0, 3 and 9 pairs, and the batches of a whole fit).
    seen: list[int] = []

    def spy(module, args):  # type: ignore[no-untyped-def]
        seen.append(int(args[0].shape[0]))

    data = _data(n=9)
    method = DPCGAN({**TINY, "physical_batch_size": 4}, data.info, seed=0)
    for m in (0, 3, 9):
        x, y = data.images[:m], data.labels[:m]
        D, opt, _ = _private_d("hooks")
        handle = D._module.register_forward_pre_hook(spy)
        method._d_step(D, opt, x, y, torch.randn(m, TINY["z_dim"]), step=0)
        handle.remove()
    assert seen and set(seen) == {4}, seen

    backward_rows: list[int] = []
    original = DPCGAN._d_backward

    def backward_spy(self, D, x, y, z, step):  # type: ignore[no-untyped-def]
        backward_rows.append(int(x.shape[0]))
        return original(self, D, x, y, z, step)

    monkeypatch.setattr(DPCGAN, "_d_backward", backward_spy)
    train = _data(n=20)
    DPCGAN({**TINY, "batch_size": 10, "physical_batch_size": 4}, train.info).fit(
        train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    assert backward_rows and set(backward_rows) == {4}, backward_rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the byte-exact GPU peak needs CUDA")
def test_on_a_gpu_a_chunked_private_steps_peak_memory_does_not_follow_the_batch_size() -> None:
    # What an accelerator's accounting would show: with the batch on the host, one chunk at a time on the GPU and
    # the accumulator allocated up front, the peak is the same byte count for 0, 3, 4, 9 and 21 pairs.
    import gc

    data = _data(n=21)
    method = DPCGAN({**TINY, "physical_batch_size": 4}, data.info, seed=0, context=RunContext(device="cuda"))
    loader = DPDataLoader(TensorDataset(torch.zeros(40, 1, 28, 28), torch.zeros(40, dtype=torch.long)), sample_rate=0.1)
    growth = {}
    for m in (0, 3, 4, 9, 21):
        D = method.build_discriminator().cuda()
        D, opt, _ = make_private_discriminator(D, torch.optim.Adam(D.parameters()), loader, noise_multiplier=1.0,
                                               max_grad_norm=1.0, expected_batch_size=4)
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        method._d_step(D, opt, data.images[:m], data.labels[:m], torch.randn(m, TINY["z_dim"]), step=0)
        torch.cuda.synchronize()
        growth[m] = torch.cuda.max_memory_allocated() - before
        del D, opt
    assert len(set(growth.values())) == 1, growth
