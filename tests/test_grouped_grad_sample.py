"""``grad_sample_mode="grouped"``: one gradient per example straight from the hooks equals what today's path
(Opacus hooks: per-row gradients, then the group's sum or mean) clips, layer by layer and for the two trainers
that group rows (DPDM's K draws, the DP-CGAN discriminator's (real, fake) pair). Tolerance: relative error
‖got − expected‖ / ‖expected‖ ≤ 1e-5 per parameter (float32). ``DPGEN_BENCH_TEST_DEVICE=cuda`` runs them on a GPU
(TF32 off there: it is a precision option of its own, not part of the equality)."""

from __future__ import annotations

import copy
import os
import warnings

import pytest
import torch
from opacus.grad_sample import GradSampleModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpgen_bench import DatasetInfo
from dpgen_bench.conformance import checks
from dpgen_bench.context import RunContext
from dpgen_bench_baselines.dp_gan import DPCGAN
from dpgen_bench_baselines.dpdm import DPDM, average_over_draws, make_private_denoiser
from dpgen_bench_baselines.grouped_grad_sample import GroupedGradSampleModule, grouped_rows
from dpgen_bench_baselines.per_sample_conv import PerSampleConv2d, register_with_opacus

RTOL = 1e-5
DEVICE = os.environ.get("DPGEN_BENCH_TEST_DEVICE", "cpu")
QUIET = RunContext(device=DEVICE, progress=False)


@pytest.fixture(autouse=True)
def _full_precision_convolutions():
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


def assert_rel_close(got: list[torch.Tensor], expected: list[torch.Tensor], names: list[str]) -> None:
    """‖got − expected‖ / ‖expected‖ ≤ RTOL per parameter. A parameter whose exact gradient is zero (attention's
    key bias: softmax ignores a shift shared by all keys) is compared against 1e-3 of the whole gradient's norm."""
    floor = 1e-3 * float(torch.sqrt(sum(e.double().pow(2).sum() for e in expected)))
    for g, e, name in zip(got, expected, names):
        assert g.shape == e.shape, f"{name}: shape {tuple(g.shape)} != {tuple(e.shape)}"
        err = float((g - e).double().norm()) / max(float(e.double().norm()), floor, 1e-30)
        assert err <= RTOL, f"{name}: relative error {err:.2e} > {RTOL}"


class _Attention(nn.Module):
    """diffusers' attention processor on a (N, C, H, W) map: GroupNorm, q/k/v/out Linear projections."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        from diffusers.models.attention_processor import Attention

        self.attn = Attention(c, heads=2, dim_head=c // 2, norm_num_groups=2, residual_connection=True,
                              bias=True, upcast_softmax=True, _from_deprecated_attn_block=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


class _Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 6)  # no padding_idx: Opacus's per-row sampler ignores it, autograd does not
        self.lin = nn.Linear(6, 3)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lin(self.emb(idx))


# Each case: a layer (with what it needs around it) and an input of B·K rows.
LAYERS = {
    "per-sample-conv": (lambda: PerSampleConv2d(3, 4, 3, stride=2, padding=1), lambda n: torch.randn(n, 3, 9, 9)),
    "conv-grouped-dilated": (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
                             lambda n: torch.randn(n, 4, 7, 7)),
    "linear-sequence": (lambda: nn.Linear(5, 7), lambda n: torch.randn(n, 4, 5)),
    "group-norm": (lambda: nn.Sequential(nn.Conv2d(2, 4, 1), nn.GroupNorm(2, 4)), lambda n: torch.randn(n, 2, 5, 5)),
    "attention": (_Attention, lambda n: torch.randn(n, 8, 4, 4)),
    "embedding": (_Embed, lambda n: torch.randint(0, 5, (n, 3))),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_grouped_gradient_of_each_layer_is_the_mean_of_its_rows_per_row_gradients(name: str) -> None:
    register_with_opacus()
    make, inputs = LAYERS[name]
    b, k = 3, 4
    torch.manual_seed(0)
    layer = make().to(DEVICE)
    x = inputs(b * k).to(DEVICE)
    rows, grouped = GradSampleModule(copy.deepcopy(layer)), GroupedGradSampleModule(copy.deepcopy(layer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # full backward hooks on inputs without grad
        (rows(x) ** 2).sum().div(b * k).backward()
        with grouped_rows(grouped, k):
            (grouped(x) ** 2).sum().div(b * k).backward()
    names = [f"{name} {n}" for n, _ in rows.named_parameters()]
    expected = [p.grad_sample.view(b, k, *p.shape).mean(1) for p in rows.parameters()]
    assert_rel_close([q.grad_sample for q in grouped.parameters()], expected, names)


# ------------------------------------------------------------------------------------------------- DPDM

TINY = {"epochs": 1, "batch_size": 4, "noise_multiplicity": 3, "channels": (8, 8), "norm_groups": 4,
        "attention_head_dim": 4, "label_dropout": 0.5}
INFO = DatasetInfo("toy", 1, 8, 8, 3)


def _dpdm_rows_and_clipped(mode: str, x, y, draws, clip: float, **extra) -> tuple[list[torch.Tensor], list]:
    method = DPDM({**TINY, **extra, "grad_sample_mode": mode}, INFO, seed=0, context=QUIET)
    net = method.net.train()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    net, opt, _ = make_private_denoiser(net, opt, DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=len(x)),
                                        noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=1,
                                        grad_sample_mode=mode)
    opt.zero_grad(set_to_none=True)
    method._backward(net, x, y, draws, step=0)
    rows = [p.grad_sample.detach().clone() for p in net.parameters()]
    opt.pre_step()  # clip + (zero) noise + 1 / expected_batch_size = 1
    return rows, [(n, p.grad.detach().clone()) for n, p in net.named_parameters()]


@pytest.mark.parametrize("physical_batch_size", [None, 2])
def test_dpdm_grouped_mode_clips_the_same_k_averaged_gradients_as_hooks(physical_batch_size) -> None:
    """Every parameter of the U-Net (convs, GroupNorm, attention, class and time embeddings): the per-example rows
    and the clipped sum (σ = 0, C small enough to clip every row) agree with hooks + ``average_over_draws``."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(5, 1, 8, 8, generator=g).to(DEVICE), torch.randint(0, 3, (5,), generator=g).to(DEVICE)
    draws = DPDM({**TINY}, INFO, context=QUIET).draws(5, g)
    extra = {"physical_batch_size": physical_batch_size}
    rows_h, clipped_h = _dpdm_rows_and_clipped("hooks", x, y, draws, 1e-3, **extra)
    rows_g, clipped_g = _dpdm_rows_and_clipped("grouped", x, y, draws, 1e-3, **extra)
    names = [n for n, _ in clipped_h]
    assert_rel_close(rows_g, rows_h, [f"rows of {n}" for n in names])
    assert_rel_close([c for _, c in clipped_g], [c for _, c in clipped_h], [f"clipped sum of {n}" for n in names])


def test_dpdm_grouped_mode_never_holds_per_row_gradients() -> None:
    """The hooks see B·K rows; what reaches grad_sample has B (averaging afterwards would be a second average)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 1, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)
    method = DPDM({**TINY, "grad_sample_mode": "grouped"}, INFO, context=QUIET)
    net, _, _ = make_private_denoiser(method.net.train(), torch.optim.SGD(method.net.parameters(), lr=1.0),
                                      DataLoader(TensorDataset(x, y), batch_size=4), noise_multiplier=0.0,
                                      max_grad_norm=1.0, expected_batch_size=4, grad_sample_mode="grouped")
    method._chunk_backward(net, x.to(DEVICE), y.to(DEVICE), method.draws(4, g), step=0)
    assert {p.grad_sample.shape[0] for p in net.parameters()} == {4}
    with pytest.raises(RuntimeError, match="not a multiple of K"):
        average_over_draws(net, 3)


# ----------------------------------------------------------------------------------------------- DP-CGAN


def _cgan_rows_and_clipped(mode: str, x, y, z, clip: float):
    method = DPCGAN({"batch_size": 4, "g_width": 8, "d_width": 8, "z_dim": 8, "grad_sample_mode": mode},
                    DatasetInfo("toy", 1, 28, 28, 10), seed=0, context=QUIET)
    from dpgen_bench_baselines.dp_gan import make_private_discriminator

    torch.manual_seed(0)
    D = method.build_discriminator().to(DEVICE)
    opt = torch.optim.SGD(D.parameters(), lr=1.0)
    D, opt, _ = make_private_discriminator(D, opt, DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=len(x)),
                                           noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=1,
                                           grad_sample_mode=mode)
    opt.zero_grad(set_to_none=True)
    method._d_backward(D, x, y, z, step=0)
    rows = [p.grad_sample.detach().clone() for p in D.parameters()]
    opt.pre_step()
    return rows, [(n, p.grad.detach().clone()) for n, p in D.named_parameters()]


def test_dp_cgan_grouped_mode_clips_the_same_per_pair_gradients_as_hooks() -> None:
    """One forward of the 2B interleaved rows, grouped by pair, gives hooks' ∇[ℓ_real(x_i) + ℓ_fake(f_i)]."""
    g = torch.Generator().manual_seed(1)
    x, y, z = (t.to(DEVICE) for t in (torch.rand(6, 1, 28, 28, generator=g), torch.randint(0, 10, (6,), generator=g),
                                       torch.randn(6, 8, generator=g)))
    rows_h, clipped_h = _cgan_rows_and_clipped("hooks", x, y, z, 1e-3)
    rows_g, clipped_g = _cgan_rows_and_clipped("grouped", x, y, z, 1e-3)
    names = [n for n, _ in clipped_h]
    assert_rel_close(rows_g, rows_h, [f"rows of {n}" for n in names])
    assert_rel_close([c for _, c in clipped_g], [c for _, c in clipped_h], [f"clipped sum of {n}" for n in names])


# ------------------------------------------------------------------------------------ privacy conformance


@pytest.mark.parametrize("base", [DPDM, DPCGAN], ids=["dpdm", "dp-cgan"])
def test_grouped_gradient_rows_are_independent_of_other_examples(base) -> None:
    """The conformance suite's neighbouring-independence check, on the grouped mode explicitly."""
    grouped = type(f"Grouped{base.__name__}", (base,),
                   {"conformance_config": {**base.conformance_config, "grad_sample_mode": "grouped"}})
    assert checks.check_neighbouring_independence(grouped)
