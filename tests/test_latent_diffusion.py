"""DP-LDM and DP-LoRA (``baselines/latent_diffusion.py``, ``dp_ldm.py``, ``dp_lora.py``): the trainable set is
what each declares and nothing else moves; clipping bounds one example's effect on a step by C; per-example
gradients of the trainable parameters (peft's adapters included) are those of per-example autograd through the
frozen encoder; the shared public pre-training and the pre-trained-weights route.

Tiny models: 8×8 images, an autoencoder (4, 8) to 3×4×4 latents, a 2-level latent U-Net of 8 channels.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dpgen_bench import DatasetInfo, ImageDataset, PrivacyBudget, PrivacyLedger, get_method
from dpgen_bench.audit import noiseless_difference, with_canary
from dpgen_bench.audit.broken import broken_class, variants_for
from dpgen_bench.audit.canaries import canary_for
from dpgen_bench.context import RunContext
from dpgen_bench_baselines.dp_ldm import DPLDM
from dpgen_bench_baselines.dp_lora import DPLoRA
from dpgen_bench_baselines.dpdm import edm_row_losses, make_private_denoiser, trainable
from dpgen_bench_baselines.latent_diffusion import PretrainedWeightsError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = {"epochs": 1, "batch_size": 10, "noise_multiplicity": 2, "channels": (8, 8), "ae_channels": (4, 8),
        "norm_groups": 4, "attention_head_dim": 4, "context_dim": 8, "sampler_steps": 2, "pretrain_epochs": 1,
        "pretrain_batch_size": 16, "ae_epochs": 1, "ae_batch_size": 16}
DELTA = 1e-5
QUIET = RunContext(progress=False)
METHODS = [DPLDM, DPLoRA]


def _data(n: int = 40, seed: int = 0, name: str = "toy") -> ImageDataset:
    info = DatasetInfo(name, 1, 8, 8, 10)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (torch.rand(n, 1, 8, 8, generator=gen) * 0.5 + labels.view(-1, 1, 1, 1) / 20).clamp(0, 1)
    return ImageDataset(images, labels, info, "train", nominal_size=n)


def _specified_trainable(cls, names: list[str]) -> set[str]:
    """What each paper fine-tunes, written independently of the code's own declaration: DP-LDM the spatial
    transformers (attention blocks) and the class embedding; DP-LoRA the adapters alone."""
    if cls is DPLDM:
        return {n for n in names if n.startswith(("down_attn.", "mid_attn.", "up_attn.", "class_embedding."))}
    return {n for n in names if ".lora_A." in n or ".lora_B." in n}


def test_both_are_registered_through_the_entry_point_with_public_data_and_dp_sgd() -> None:
    assert get_method("dp-ldm") is DPLDM and get_method("dp-lora") is DPLoRA
    for cls in METHODS:
        assert cls.capabilities_for(cls.Config()).public_data and cls.capabilities_for(cls.Config()).dp_sgd


@pytest.mark.parametrize("cls", METHODS, ids=["dp-ldm", "dp-lora"])
def test_the_trainable_set_is_the_papers(cls) -> None:
    method = cls(TINY, _data().info, context=QUIET)
    names = [n for n, _ in method.net.named_parameters()]
    expected = _specified_trainable(cls, names)
    assert expected and len(expected) < len(names)
    assert {n for n, p in method.net.named_parameters() if p.requires_grad} == expected
    if cls is DPLoRA:  # one (A, B) pair per attention projection: 4 per attention, 2 attentions per transformer
        transformers = sum(1 for n in names if n.endswith(".norm.weight") and "_attn" in n)
        assert len(expected) == 2 * 4 * 2 * transformers


@pytest.mark.parametrize("cls", METHODS, ids=["dp-ldm", "dp-lora"])
def test_dp_fine_tuning_moves_the_declared_parameters_and_nothing_else(cls, tmp_path) -> None:
    """After pre-training on public data, a private fit changes only the paper's trainable set: every other
    denoiser parameter and the whole autoencoder are bit-identical to the pre-trained ones (a frozen parameter
    that moved would have been updated without clipping or noise)."""
    train, public = _data(), _data(n=32, seed=9, name="pub")
    method = cls(TINY, train.info, context=RunContext(progress=False, cache_dir=tmp_path, public_data=public))
    start = copy.deepcopy(method.net)
    method._load_pretrained(start, method._public_start(method.context.public_data))  # cached: fit loads the same state
    ae_start = copy.deepcopy(method.autoencoder.state_dict())
    method.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    names = [n for n, _ in method.net.named_parameters()]
    expected = _specified_trainable(cls, names)
    assert {id(p) for p in method._opt.params} == {id(p) for n, p in method.net.named_parameters() if n in expected}
    before = dict(start.named_parameters())
    moved = {n for n, p in method.net.named_parameters() if not torch.equal(p, before[n])}
    assert moved - expected == set(), f"parameters outside the trainable set moved: {sorted(moved - expected)[:5]}"
    assert moved, "the DP steps trained nothing"
    for key, value in method.autoencoder.state_dict().items():
        assert torch.equal(value, ae_start[key]), f"autoencoder {key} moved during DP fine-tuning"


def test_a_frozen_parameter_updated_without_noise_makes_the_fit_fail() -> None:
    """The guard every fit runs: an un-noised update of a frozen parameter from the private batch is refused."""

    class Leaky(DPLDM):
        def _private_step(self, net, opt, x, y, draws, step):  # type: ignore[no-untyped-def]
            super()._private_step(net, opt, x, y, draws, step)
            with torch.no_grad():
                self.net.conv_in.bias += x.mean()  # private data, no clipping, no noise

    train = _data()
    with pytest.raises(RuntimeError, match="outside the declared trainable set"):
        Leaky(TINY, train.info, context=QUIET).fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    DPLDM(TINY, train.info, context=QUIET).fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())  # honest: fine


# ------------------------------------------------------------------------------- clipping and sensitivity


def _clipped_sum_by_hand(method, x, y, draws, clip: float) -> list[torch.Tensor]:
    """Σ_i clip(mean_k ∇_θ ℓ(E(x_i), draw_ik)) over the trainable θ, by plain autograd per draw on a copy."""
    net = copy.deepcopy(method.net)
    params = trainable(net)
    total = [torch.zeros_like(p) for p in params]
    for i in range(x.shape[0]):
        z = method._to_model_space(x[i:i + 1])
        per_draw = []
        for j in range(draws.shape[1]):
            net.zero_grad(set_to_none=True)
            edm_row_losses(net, method.scheduler, method.config, z, y[i:i + 1], draws[i, j:j + 1]).sum().backward()
            per_draw.append([p.grad.detach().clone() for p in params])
        mean = [torch.stack(g).mean(0) for g in zip(*per_draw)]
        factor = min(1.0, clip / (float(torch.sqrt(sum((g**2).sum() for g in mean))) + 1e-6))  # Opacus's factor
        total = [t + factor * g for t, g in zip(total, mean)]
    return total


def _what_opacus_clips(method, x, y, draws, clip: float) -> list[torch.Tensor]:
    net = copy.deepcopy(method.net)
    opt = torch.optim.SGD(trainable(net), lr=1.0)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    net, opt, _ = make_private_denoiser(net, opt, loader, noise_multiplier=0.0, max_grad_norm=clip,
                                        expected_batch_size=1, grad_sample_mode=method.config.grad_sample_mode)
    opt.zero_grad(set_to_none=True)
    method._backward(net, x, y, draws, step=0)
    opt.pre_step()  # clip + (zero) noise + scale by 1 / expected_batch_size = 1
    return [p.grad.detach().clone() for p in opt.params]


@pytest.mark.parametrize("mode", ["grouped", "hooks"])
@pytest.mark.parametrize("cls", METHODS, ids=["dp-ldm", "dp-lora"])
def test_the_clipped_row_is_the_k_mean_of_per_draw_gradients_through_the_frozen_encoder(cls, mode) -> None:
    """What Opacus clips for example i is ∇_θ (1/K Σ_k ℓ(E(x_i), σ_ik, n_ik)) for every trainable θ — peft's
    LoRA layers included (their per-sample gradients come from Opacus's Linear hooks)."""
    data = _data(n=3)
    method = cls({**TINY, "grad_sample_mode": mode}, data.info, seed=0, context=QUIET)
    if cls is DPLoRA:  # B = 0 at initialisation makes A's gradient zero: give the adapters a generic start
        with torch.no_grad():
            for p in trainable(method.net):
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    x, y = data.images, data.labels
    draws = method.draws(3, torch.Generator().manual_seed(5))
    clip = 1e-4  # every row clipped: the clipping unit matters
    expected = _clipped_sum_by_hand(method, x, y, draws, clip)
    got = _what_opacus_clips(method, x, y, draws, clip)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-10)


def _audited(cls, clip: float = 1e-3):
    info = DatasetInfo("audit-digits", 1, 8, 8, 2)
    method = cls({**TINY, "batch_size": 2, "noise_multiplicity": 4, "max_grad_norm": clip}, info, seed=0,
                 context=QUIET)
    g = torch.Generator().manual_seed(0)
    data = ImageDataset(torch.rand(2, 1, 8, 8, generator=g) * 0.5, torch.arange(2) % 2, info, split="train",
                        nominal_size=2)
    return method, data, with_canary(data, *canary_for(method, data))


@pytest.mark.parametrize("cls", METHODS, ids=["dp-ldm", "dp-lora"])
def test_one_example_moves_the_audited_step_by_c_and_each_bug_by_what_it_leaks(cls) -> None:
    """Noiseless, ‖Δ‖·B/C: exactly 1 for the real step; K when the K identical audit rows are clipped one by one
    (``per-row-clip``); the canary's whole gradient over C when nothing is clipped."""
    budget = PrivacyBudget(1.0, DELTA, accountant="gdp")

    def shift(variant: str | None) -> float:
        method, data, neighbour = _audited(cls if variant is None else broken_class(cls, variant))
        return noiseless_difference(method, data, neighbour, budget).norm().item() * 2 / method.config.max_grad_norm

    assert shift(None) == pytest.approx(1.0, rel=1e-3)
    assert shift("per-row-clip") == pytest.approx(4.0, rel=1e-3)
    assert shift("unclipped") > 5.0
    assert {"tenth-noise", "unclipped", "per-row-clip"} <= set(variants_for(cls))


# ------------------------------------------------------------------------------- pre-training and weights


def test_dp_ldm_and_dp_lora_share_one_pretraining_keyed_on_what_it_reads() -> None:
    info, public = _data().info, _data(n=8, seed=9, name="pub")
    key = DPLDM(TINY, info, context=QUIET).pretrain_key(public)
    assert DPLoRA({**TINY, "lora_rank": 2, "lr": 1e-4}, info, context=QUIET).pretrain_key(public) == key
    assert DPLDM({**TINY, "ae_channels": (8, 8)}, info, context=QUIET).pretrain_key(public) != key
    assert DPLDM({**TINY, "ae_epochs": 2}, info, context=QUIET).pretrain_key(public) != key


def test_a_cached_pretraining_loads_as_pretrained_weights_and_fit_records_it(tmp_path) -> None:
    train, public = _data(), _data(n=32, seed=9, name="pub")
    first = DPLDM(TINY, train.info, context=RunContext(progress=False, cache_dir=tmp_path, public_data=public))
    state = first._public_start(first.context.public_data)
    assert state["public_data"] == "pub" and first.pretrained_on == "pub"
    (path,) = (tmp_path / "latent-diffusion-pretrain").glob("*.pt")
    second = DPLoRA({**TINY, "pretrained": str(path), "pretrained_trained_on": ("toy-public",)}, train.info,
                    context=QUIET)
    second.fit(train, PrivacyBudget(10.0, DELTA), PrivacyLedger())
    assert "toy-public" in second.pretrained_on
    for key, value in second.autoencoder.state_dict().items():
        assert torch.equal(value, state["autoencoder"][key])


def _config_file(tmp_path, config: dict) -> str:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": "mnist-5k", "epsilons": [1], "seeds": [0], "output_dir": str(tmp_path),
                                    "evaluation": {"metrics": ["accuracy"]},
                                    "methods": [{"name": "dp-ldm", "config": config}]}))
    return str(path)


def _dry_run(tmp_path, config: dict) -> int:
    from dpgen_bench.cli import main

    return main(["run", _config_file(tmp_path, config), "--dry-run"])


def test_missing_pretrained_weights_are_refused_before_training_with_exit_2(tmp_path, capsys) -> None:
    missing = str(tmp_path / "nowhere" / "ldm.pt")
    assert _dry_run(tmp_path, {"pretrained": missing, "pretrained_trained_on": ["imagenet"]}) == 2
    assert missing in capsys.readouterr().err
    assert list(DPLDM.required_files(DPLDM.Config(pretrained=missing,
                                                  pretrained_trained_on=("imagenet",))).values()) == [missing]
    with pytest.raises(PretrainedWeightsError, match="nowhere"):  # and fit, if it got that far, refuses too
        DPLDM({**TINY, "pretrained": missing, "pretrained_trained_on": ["imagenet"]}, _data().info,
              context=QUIET)._public_start(None)


def test_pretrained_weights_must_declare_their_data_and_not_be_the_private_family(tmp_path, capsys) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    assert _dry_run(tmp_path, {"pretrained": str(weights)}) == 2
    assert "needs pretrained_trained_on" in capsys.readouterr().err
    assert _dry_run(tmp_path, {"pretrained": str(weights), "pretrained_trained_on": ["mnist"]}) == 2
    assert "trained on 'mnist' data" in capsys.readouterr().err
    assert _dry_run(tmp_path, {"pretrained": str(weights), "pretrained_trained_on": ["imagenet"]}) == 0


def test_non_private_fit_records_nothing_and_samples_decode_to_images() -> None:
    train = _data()
    method = DPLoRA(TINY, train.info, context=QUIET)
    ledger = PrivacyLedger()
    method.fit(train, PrivacyBudget(math.inf, DELTA), ledger)
    assert len(ledger) == 0
    images, labels = method.sample(7)
    assert images.shape == (7, 1, 8, 8) and 0 <= float(images.min()) and float(images.max()) <= 1
