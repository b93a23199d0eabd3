"""DPDM (``dpdm``): noise multiplicity, privacy bookkeeping, sampling, checkpoints, public pre-training.

Every model here is a 2-level U-Net with 8 channels on ≤ 60 tiny images; runs take a couple of steps.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dpgen_bench import DatasetInfo, ImageDataset, PrivacyBudget, PrivacyLedger, get_method
from dpgen_bench.context import RunContext
from dpgen_bench.privacy.plans import dpsgd_steps
from dpgen_bench_baselines import dpdm as dpdm_module
from dpgen_bench_baselines.dpdm import DPDM, denoise, drop_labels, edm_row_losses, make_private_denoiser

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = {"epochs": 1, "batch_size": 10, "noise_multiplicity": 3, "channels": (8, 8), "norm_groups": 4,
        "attention_head_dim": 4, "sampler_steps": 2, "pretrain_epochs": 1, "pretrain_batch_size": 16}
DELTA = 1e-5
QUIET = RunContext(progress=False)


def _data(n: int = 40, size: int = 8, seed: int = 0, name: str = "toy") -> ImageDataset:
    info = DatasetInfo(name, 1, size, size, 10)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (torch.rand(n, 1, size, size, generator=gen) * 0.5 + labels.view(-1, 1, 1, 1) / 20).clamp(0, 1)
    return ImageDataset(images, labels, info, "train", nominal_size=n)


# ------------------------------------------------------------------------------- noise multiplicity


def _clipped_sum_by_hand(method: DPDM, x, y, draws, clip: float) -> list[torch.Tensor]:
    """Σ_i clip(mean_k ∇ℓ(x_i, draw_ik)), each per-draw gradient by plain autograd on a copy of the model."""
    net = copy.deepcopy(method.net)
    k = draws.shape[1]
    total = [torch.zeros_like(p) for p in net.parameters()]
    for i in range(x.shape[0]):
        per_draw = []
        for j in range(k):
            net.zero_grad(set_to_none=True)
            loss = edm_row_losses(net, method.scheduler, method.config, x[i:i + 1] * 2 - 1, y[i:i + 1],
                                  draws[i, j:j + 1])
            loss.sum().backward()
            per_draw.append([p.grad.detach().clone() for p in net.parameters()])
        mean = [torch.stack(g).mean(0) for g in zip(*per_draw)]
        norm = torch.sqrt(sum((g**2).sum() for g in mean))
        factor = min(1.0, clip / (float(norm) + 1e-6))  # Opacus's per-sample clip factor
        total = [t + factor * g for t, g in zip(total, mean)]
    return total


def _what_opacus_clips(method: DPDM, x, y, draws, clip: float, average: bool = True) -> list[torch.Tensor]:
    """The optimiser's clipped, un-noised gradient sum after the trainer's own backward (σ = 0)."""
    net = copy.deepcopy(method.net)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    net, opt, _ = make_private_denoiser(net, opt, loader, noise_multiplier=0.0, max_grad_norm=clip,
                                        expected_batch_size=1, grad_sample_mode=method.config.grad_sample_mode)
    opt.zero_grad(set_to_none=True)
    if average:
        method._backward(net, x, y, draws, step=0)
    else:  # the K-repeat without averaging: Opacus would clip each of the B·K rows on its own
        original = dpdm_module.average_over_draws
        dpdm_module.average_over_draws = lambda net, k: None
        try:
            method._backward(net, x, y, draws, step=0)
        finally:
            dpdm_module.average_over_draws = original
    opt.pre_step()  # clip + (zero) noise + scale by 1 / expected_batch_size = 1
    return [p.grad.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize(("mode", "label_dropout"), [("hooks", 0.0), ("functorch", 0.0), ("hooks", 0.5)])
def test_clipped_per_example_gradient_is_the_mean_of_its_k_per_draw_gradients(mode: str, label_dropout: float) -> None:
    """What Opacus clips for example i is ∇ (1/K Σ_k ℓ(x_i, σ_ik, n_ik)), for every parameter (attention and
    the convs after it included), in each grad_sample_mode and with label dropout (a per-draw coin, so still a
    function of example i and its own draws); a K-repeat clipped per row is not."""
    data = _data(n=3)
    method = DPDM({**TINY, "grad_sample_mode": mode, "label_dropout": label_dropout}, data.info, seed=0,
                  context=QUIET)
    x, y = data.images, data.labels
    draws = method.draws(3, torch.Generator().manual_seed(5))
    clip = 1e-3  # small enough that every row is clipped: the clipping unit matters
    expected = _clipped_sum_by_hand(method, x, y, draws, clip)
    got = _what_opacus_clips(method, x, y, draws, clip)
    names = [n for n, _ in method.net.named_parameters()]
    for name, g, e in zip(names, got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-9, msg=lambda m: f"{name}: {m}")
    per_row = _what_opacus_clips(method, x, y, draws, clip, average=False)
    worst = max(float((g - e).abs().max() / e.abs().max().clamp(min=1e-12)) for g, e in zip(per_row, expected))
    assert worst > 0.1, "clipping the K repeats row by row went unnoticed"


def test_k_copies_of_a_batch_cost_no_more_privacy_than_one() -> None:
    train = _data()
    ledgers = []
    for k in (1, 4):
        ledger = PrivacyLedger()
        DPDM({**TINY, "noise_multiplicity": k}, train.info, context=QUIET).fit(train, PrivacyBudget(5.0, DELTA), ledger)
        ledgers.append([e.to_dict() for e in ledger.events])
    assert ledgers[0] == ledgers[1]


# ------------------------------------------------------------------------------- privacy bookkeeping


def test_ledger_records_the_steps_opacus_took_and_stays_within_target() -> None:
    train = _data()
    method = DPDM(TINY, train.info, context=QUIET)
    ledger, budget = PrivacyLedger(), PrivacyBudget(2.0, DELTA)
    method.fit(train, budget, ledger)
    (event,) = ledger.events
    assert event.steps == method.steps_taken == dpsgd_steps(40, 10, 1)
    assert event.sample_rate == pytest.approx(10 / 40)
    assert event.noise_multiplier == pytest.approx(method.noise_multiplier)
    assert sum(n for _, _, n in method._opacus_accountant.history) == event.steps
    assert 0 < ledger.epsilon(budget) <= 2.0


def test_empty_poisson_batches_still_take_a_counted_noise_only_step(monkeypatch: pytest.MonkeyPatch) -> None:
    train = _data(n=20)
    sizes: list[int] = []
    original = DPDM._backward

    def spy(self, net, x, y, draws, step):  # type: ignore[no-untyped-def]
        sizes.append(int(x.shape[0]))
        return original(self, net, x, y, draws, step)

    monkeypatch.setattr(DPDM, "_backward", spy)
    method = DPDM({**TINY, "batch_size": 1}, train.info, context=QUIET)
    before = [p.detach().clone() for p in method.net.parameters()]
    ledger = PrivacyLedger()
    method.fit(train, PrivacyBudget(10.0, DELTA), ledger)
    assert 0 in sizes, f"no empty batch drawn (sizes {sizes}); the test needs one"
    assert ledger.events[0].steps == len(sizes) == 20
    assert any(not torch.equal(a, b) for a, b in zip(before, method.net.parameters()))


def test_gradient_noise_is_seeded_from_os_entropy_not_the_run_seed() -> None:
    data = _data(n=4)
    seeds = []
    for _ in range(2):
        method = DPDM(TINY, data.info, seed=0, context=QUIET)
        opt = torch.optim.SGD(method.net.parameters(), lr=0.1)
        _, opt, _ = make_private_denoiser(method.net, opt, DataLoader(TensorDataset(data.images, data.labels)),
                                          noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4)
        assert opt.generator is not None, "noise would come from torch's global (seedable) RNG"
        seeds.append(opt.generator.initial_seed())
    assert seeds[0] != seeds[1]


def test_the_private_network_has_no_batchnorm() -> None:
    method = DPDM(TINY, _data().info, context=QUIET)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in method.net.modules())
    method.net.conv_in = torch.nn.Sequential(method.net.conv_in, torch.nn.BatchNorm2d(8))
    with pytest.raises(ValueError, match="BatchNorm2d"):
        dpdm_module.validate_private_net(method.net)


# ------------------------------------------------------------------------------- sampling, checkpoints


@pytest.mark.parametrize("conditional", [True, False])
def test_samples_have_the_shape_range_and_balanced_labels(conditional: bool) -> None:
    train = _data()
    method = DPDM({**TINY, "conditional": conditional}, train.info, context=QUIET)
    method.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    images, labels = method.sample(21)
    assert images.shape == (21, 1, 8, 8) and images.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1 and torch.isfinite(images).all()
    if conditional:
        assert sorted(torch.bincount(labels, minlength=10).tolist()) == [2] * 9 + [3]
    else:
        assert (labels == -1).all()


# ------------------------------------------------------------------------------- EDM training noise levels


def test_training_noise_levels_are_log_normal_at_the_configured_p_mean_and_p_std(monkeypatch) -> None:
    """ln σ = p_mean + p_std·u, u the draw's first column (the CPU default's p_mean is not EDM's; docs/dpdm.md)."""
    seen: dict[str, torch.Tensor] = {}

    def spy(net, scheduler, x, sigma, labels):
        seen["sigma"] = sigma.detach().clone()
        return x

    monkeypatch.setattr(dpdm_module, "denoise", spy)
    method = DPDM({**TINY, "p_mean": 0.7, "p_std": 0.5}, _data().info, context=QUIET)
    draws = torch.randn(6, 1 + 8 * 8, generator=torch.Generator().manual_seed(0))
    edm_row_losses(method.net, method.scheduler, method.config, torch.zeros(6, 1, 8, 8), None, draws)
    assert torch.allclose(seen["sigma"], torch.exp(0.7 + 0.5 * draws[:, 0]))


# ------------------------------------------------------------------------------- classifier-free guidance


def test_label_dropout_sets_the_null_label_on_a_fraction_p_of_rows() -> None:
    labels = torch.arange(20_000) % 10
    v = torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    dropped = drop_labels(labels, v, 0.1, null=10)
    null = dropped == 10
    assert abs(float(null.float().mean()) - 0.1) < 0.01
    assert torch.equal(dropped[~null], labels[~null])
    assert torch.equal(drop_labels(labels, v, 0.0, null=10), labels)


def test_training_sees_the_null_label_only_where_the_draw_drops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    method = DPDM({**TINY, "label_dropout": 0.5}, _data().info, context=QUIET)
    seen: list[torch.Tensor] = []
    original = dpdm_module.denoise
    monkeypatch.setattr(dpdm_module, "denoise", lambda net, sch, x, s, y: seen.append(y) or original(net, sch, x, s, y))
    draws = method.draws(8, torch.Generator().manual_seed(1)).flatten(0, 1)
    labels = torch.arange(draws.shape[0]) % 10
    edm_row_losses(method.net, method.scheduler, method.config, torch.zeros(draws.shape[0], 1, 8, 8), labels, draws)
    expect = torch.where(torch.special.ndtr(draws[:, -1]) < 0.5, 10, labels)
    assert torch.equal(seen[0], expect) and 0 < int((expect == 10).sum()) < draws.shape[0]


def test_guided_denoiser_is_one_plus_w_conditional_minus_w_null() -> None:
    method = DPDM({**TINY, "label_dropout": 0.1, "guidance_scale": 2.0}, _data().info, context=QUIET)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    sigma, y = torch.full((4,), 1.5), torch.tensor([0, 3, 5, 9])
    with torch.no_grad():
        cond = denoise(method.net, method.scheduler, x, sigma, y)
        uncond = denoise(method.net, method.scheduler, x, sigma, torch.full_like(y, 10))
        got = method._guided_denoise(method.net, method.scheduler, x, sigma, y)
    assert torch.allclose(got, 3 * cond - 2 * uncond, atol=1e-5)
    assert not torch.allclose(got, cond, atol=1e-5)


def test_guidance_without_label_dropout_or_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="label_dropout > 0"):
        DPDM.Config(guidance_scale=1.0, label_dropout=0.0)
    with pytest.raises(ValueError, match="conditional"):
        DPDM.Config(guidance_scale=1.0, label_dropout=0.1, conditional=False)


def test_without_label_dropout_there_is_no_null_class_and_no_dropout_draw() -> None:
    method = DPDM(TINY, _data().info, context=QUIET)
    assert method.net.class_embedding.num_embeddings == 10
    assert method.draws(2, torch.Generator().manual_seed(0)).shape == (2, 3, 1 + 64)
    with_null = DPDM({**TINY, "label_dropout": 0.1}, _data().info, context=QUIET)
    assert with_null.net.class_embedding.num_embeddings == 11
    assert with_null.draws(2, torch.Generator().manual_seed(0)).shape == (2, 3, 2 + 64)


def test_save_load_round_trip_samples_identically(tmp_path) -> None:
    train = _data()
    method = DPDM(TINY, train.info, seed=3, context=QUIET)
    method.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    method.save(tmp_path / "ckpt")
    loaded = get_method("dpdm").load(tmp_path / "ckpt", context=QUIET)
    a, la = method.sample(7, seed=11)
    b, lb = loaded.sample(7, seed=11)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert loaded.noise_multiplier == method.noise_multiplier and loaded.steps_taken == method.steps_taken


def test_non_private_run_records_nothing() -> None:
    train = _data()
    method = DPDM(TINY, train.info, context=QUIET)
    ledger = PrivacyLedger()
    method.fit(train, PrivacyBudget(math.inf, DELTA), ledger)
    assert len(ledger) == 0 and method.noise_multiplier is None and method.steps_taken == dpsgd_steps(40, 10, 1)


def test_registered_through_the_entry_point_and_declares_public_data() -> None:
    assert get_method("dpdm") is DPDM
    assert DPDM.capabilities.public_data and DPDM.capabilities.dp_sgd


# ------------------------------------------------------------------------------- public pre-training


def test_pretraining_is_cached_on_public_data_config_and_seed(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = DPDM._pretrain

    def counting(self, public):  # type: ignore[no-untyped-def]
        calls.append(self.seed)
        return original(self, public)

    monkeypatch.setattr(DPDM, "_pretrain", counting)
    train, public = _data(), _data(n=32, seed=9, name="pub")
    context = RunContext(progress=False, cache_dir=tmp_path, public_data=public)
    states = []
    for eps, seed, lr in [(1.0, 0, 2e-3), (10.0, 0, 2e-3), (10.0, 1, 2e-3), (10.0, 0, 1e-3)]:
        method = DPDM({**TINY, "pretrain_lr": lr}, train.info, seed=seed, context=context)
        states.append(method.pretrained_state(public))
        assert method.pretrained_on == "pub"
    assert calls == [0, 1, 0], "the same public data, pre-training config and seed must pre-train once"
    for a, b in zip(states[0].values(), states[1].values()):
        assert torch.equal(a, b)
    assert len(list((tmp_path / "dpdm-pretrain").glob("*.pt"))) == 3


def test_fit_starts_from_the_pretrained_network(tmp_path) -> None:
    train, public = _data(), _data(n=32, seed=9, name="pub")
    method = DPDM(TINY, train.info, context=RunContext(progress=False, cache_dir=tmp_path, public_data=public))
    ledger = PrivacyLedger()
    method.fit(train, PrivacyBudget(10.0, DELTA), ledger)
    assert len(ledger) == 1  # pre-training records nothing: it never sees private data
    loaded = get_method("dpdm").load(method.save(tmp_path / "ckpt"), context=QUIET)
    assert loaded.pretrained_on == "pub"


# ------------------------------------------------------------------------------- the runner's public data

PRIVATE_TOY = "dpdm-private-toy"


@pytest.fixture
def private_toy():
    """A 40-image 8×8 private dataset of its own family, so scikit-learn's ``digits`` is public for it."""
    from dpgen_bench.data import DATASETS, DatasetSpec, register_dataset

    info = DatasetInfo(PRIVATE_TOY, 1, 8, 8, 10, tuple(str(d) for d in range(10)))

    def load() -> ImageDataset:
        d = _data(n=40, seed=4)
        return ImageDataset(d.images, d.labels, info, "all")

    register_dataset(DatasetSpec(info=info, size=40, family="dpdm-private-toy", description="test data", load=load))
    yield PRIVATE_TOY
    DATASETS.unregister(PRIVATE_TOY)


def _grid(output_dir, dataset: str, public: dict | None = None, name: str = "dpdm") -> dict:
    one_step = {**TINY, "epochs": 0.3, "sampler_steps": 1}  # one DP-SGD step per cell
    entry = {"name": name, "label": "dpdm+public", "config": {**one_step, "pretrain_epochs": 0.01}, "public_data": public}
    return {
        "dataset": dataset,
        "methods": [{"name": "dpdm", "config": one_step}, entry],
        "epsilons": [10, math.inf],
        "seeds": [0],
        # FD-digitcnn cannot be computed on 8×8 images: a cheap metric row (missing, with its reason).
        "evaluation": {"metrics": ["fd-digitcnn"], "n_samples": 20},
        "output_dir": str(output_dir),
    }


def test_runner_hands_public_data_once_per_pretraining_and_records_it(tmp_path, private_toy, monkeypatch) -> None:
    from dpgen_bench.runner.benchmark import run_benchmark
    from dpgen_bench.runner.config import parse_config

    seen: list[tuple[str, tuple[int, ...]]] = []
    original = DPDM._pretrain

    def counting(self, public):  # type: ignore[no-untyped-def]
        seen.append((public.info.name, tuple(public.images.shape)))
        return original(self, public)

    monkeypatch.setattr(DPDM, "_pretrain", counting)
    summary = run_benchmark(parse_config(_grid(tmp_path / "out", private_toy, {"dataset": "digits"})),
                            progress=False, render=False)
    assert summary.ok, summary.failed
    assert seen == [("digits@1x8x8", (1797, 1, 8, 8))], "two cells, same public data and seed: one pre-training"
    df = summary.root / "results.csv"
    import pandas as pd

    rows = pd.read_csv(df)
    by_label = rows.groupby("method")["public_dataset"].agg(lambda s: set(s.fillna("")))
    assert by_label["dpdm+public"] == {"digits"} and by_label["dpdm"] == {""}
    keys = rows.groupby("method")["cell_key"].agg(set)
    assert not keys["dpdm"] & keys["dpdm+public"]


def test_digits_are_resized_to_the_private_shape() -> None:
    from dpgen_bench.runner.public import load_public_data

    public = load_public_data({"dataset": "digits", "resize": "bilinear"}, DatasetInfo("mnist-5k", 1, 28, 28, 10))
    assert public.images.shape == (1797, 1, 28, 28) and public.info.shape == (1, 28, 28)
    assert 0 <= float(public.images.min()) and float(public.images.max()) <= 1
    assert public.meta["public_source"] == "digits"


@pytest.mark.parametrize("public", ["mnist", "mnist-5k"])
def test_public_data_overlapping_the_private_data_is_refused_up_front(tmp_path, public: str) -> None:
    from dpgen_bench.runner.config import ConfigFileError, parse_config, resolve_methods

    config = parse_config(_grid(tmp_path, "mnist-5k", {"dataset": public}))
    with pytest.raises(ConfigFileError, match=rf"public dataset '{public}'.*private dataset 'mnist-5k'"):
        resolve_methods(config)


def test_public_data_for_a_method_that_does_not_declare_it_is_refused(tmp_path) -> None:
    from dpgen_bench.runner.config import ConfigFileError, parse_config, resolve_methods

    config = parse_config(_grid(tmp_path, "mnist-5k", {"dataset": "digits"}, name="dp-cgan") | {"methods": [
        {"name": "dp-cgan", "public_data": {"dataset": "digits"}}]})
    with pytest.raises(ConfigFileError, match=r"dp-cgan.*does not declare that it uses public data"):
        resolve_methods(config)


def _what_the_step_adds(method: DPDM, x, y, draws, clip: float) -> list[torch.Tensor]:
    """The gradient one private step applies (σ = 0, divisor 1): the clipped gradient sum."""
    net = copy.deepcopy(method.net)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    net, opt, _ = make_private_denoiser(net, opt, loader, noise_multiplier=0.0, max_grad_norm=clip,
                                        expected_batch_size=1, grad_sample_mode=method.config.grad_sample_mode)
    opt.zero_grad(set_to_none=True)
    method._private_step(net, opt, x, y, draws, step=0)
    return [p.grad.detach().clone() for p in net.parameters()]


def test_physical_batches_give_the_same_step_as_one_pass() -> None:
    data = _data(n=5)
    whole = DPDM(TINY, data.info, seed=0, context=QUIET)
    chunked = DPDM({**TINY, "physical_batch_size": 2}, data.info, seed=0, context=QUIET)  # 3 chunks, 1 masked row
    draws = whole.draws(5, torch.Generator().manual_seed(2))
    a = _what_the_step_adds(whole, data.images, data.labels, draws, 1e-3)
    b = _what_the_step_adds(chunked, data.images, data.labels, draws, 1e-3)
    for g, h in zip(a, b):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-9)


def test_with_physical_batches_every_pass_has_the_public_chunk_size_whatever_the_poisson_batch(monkeypatch) -> None:
    # Memory must be a function of public sizes: a pass over a private batch's actual size would show in the
    # peak memory. Every forward/backward runs on exactly physical_batch_size rows, empty batches included.
    seen: list[int] = []
    original = DPDM._chunk_backward

    def spy(self, net, x, y, draws, step):  # type: ignore[no-untyped-def]
        seen.append(int(x.shape[0]))
        return original(self, net, x, y, draws, step)

    monkeypatch.setattr(DPDM, "_chunk_backward", spy)
    train = _data(n=20)
    method = DPDM({**TINY, "batch_size": 3, "physical_batch_size": 4}, train.info, context=QUIET)
    method.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    assert seen and set(seen) == {4}


def test_a_non_finite_private_row_is_zeroed_and_never_stops_training(monkeypatch) -> None:
    # Stopping on the private batch's loss would release an un-noised bit: the NaN row of example 0 is zeroed
    # (sensitivity holds: it depends on example 0 alone) and the step equals the step without example 0.
    data = _data(n=4)
    method = DPDM(TINY, data.info, seed=0, context=QUIET)
    draws = method.draws(4, torch.Generator().manual_seed(3))
    clean = _what_the_step_adds(method, data.images[1:], data.labels[1:], draws[1:], 1e-3)
    original, k = dpdm_module.edm_row_losses, TINY["noise_multiplicity"]

    def poisoned(net, scheduler, cfg, x, labels, d):  # type: ignore[no-untyped-def]
        losses = original(net, scheduler, cfg, x, labels, d)
        return torch.cat([losses[:k] * float("nan"), losses[k:]]) if x.shape[0] == 4 * k else losses

    monkeypatch.setattr(dpdm_module, "edm_row_losses", poisoned)
    dirty = _what_the_step_adds(method, data.images, data.labels, draws, 1e-3)
    for g, h in zip(clean, dirty):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-9)


def test_divergence_is_decided_on_the_parameters_after_the_noised_step(monkeypatch) -> None:
    train = _data(n=20)
    method = DPDM({**TINY, "batch_size": 5}, train.info, context=QUIET)
    monkeypatch.setattr(dpdm_module, "parameters_finite", lambda module: False)
    with pytest.raises(dpdm_module.TrainingDivergedError, match="after noised step 1"):
        method.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())


def test_pretraining_cache_key_holds_every_field_pretraining_may_read() -> None:
    info = _data().info
    public = _data(n=8, seed=9, name="pub")
    key = DPDM(TINY, info, context=QUIET).pretrain_key(public)
    assert DPDM({**TINY, "noise_multiplicity": 5}, info, context=QUIET).pretrain_key(public) != key
    assert DPDM({**TINY, "lr": 1e-4}, info, context=QUIET).pretrain_key(public) == key  # DP fine-tuning only
    fields = set(dpdm_module.DPDMConfig.model_fields)
    assert set(dpdm_module.DPDMConfig().pretrain_key_fields()) == fields - dpdm_module.NOT_IN_PRETRAINING


def test_pretraining_leaves_the_methods_own_network_alone() -> None:
    train, public = _data(), _data(n=32, seed=9, name="pub")
    method = DPDM(TINY, train.info, context=RunContext(progress=False, public_data=public))
    before = [p.detach().clone() for p in method.net.parameters()]
    state = method.pretrained_state(public)
    assert all(torch.equal(a, b) for a, b in zip(before, method.net.parameters()))
    assert any(not torch.equal(state[k], v) for k, v in method.net.state_dict().items())
