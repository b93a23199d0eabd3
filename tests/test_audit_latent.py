"""The DP-SGD mechanism audit of DP-LDM and DP-LoRA over their real private step (DPDM's ``audit_release``: one
q = 1 step of the latent denoiser, only the declared trainable parameters released), with power checks: the
correct step is not flagged; a tenth of the noise and unclipped gradients (the library's seams) and per-row
clipping of the K noise draws (declared by DPDM, inherited) are, under the Gaussian trade-off that holds for one
unsubsampled Gaussian step (docs/audit.md)."""

from __future__ import annotations

import pytest
import torch

from dpgen_bench.audit import audit_method, with_canary
from dpgen_bench.audit.broken import broken_class
from dpgen_bench.audit.canaries import canary_for
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench_baselines.dp_ldm import DPLDM
from dpgen_bench_baselines.dp_lora import DPLoRA

INFO = DatasetInfo("audit-digits", 1, 8, 8, 2)
N, K, C = 2, 8, 1e-3  # C small: the canary's gradient norm is above C (checked); K = 8: per-row-clip moves the step by up to 8 C
# ε = 3 (μ ≈ 0.72): a tenth of the noise moves the release by ≈ 7 σ, far past what 60 trials can miss; at ε = 1
# (μ ≈ 0.25) the GDP bound of tenth-noise and of per-row-clip fell below the claim on some RNG states (CI).
BUDGET = PrivacyBudget(3.0, 1e-5, accountant="gdp")
TRIALS = 60

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def _audit(cls):
    config = dict(cls.conformance_config, batch_size=N, noise_multiplicity=K, max_grad_norm=C)
    method = cls(config, INFO, seed=0, context=RunContext(progress=False))
    g = torch.Generator().manual_seed(0)
    data = ImageDataset(torch.rand(N, *INFO.shape, generator=g) * 0.5, torch.arange(N) % 2, INFO, split="train",
                        nominal_size=N)
    return method, data, with_canary(data, *canary_for(method, data))


@pytest.mark.parametrize("base", [DPLDM, DPLoRA], ids=["dp-ldm", "dp-lora"])
def test_the_correct_latent_step_is_not_flagged(base):
    method, data, neighbour = _audit(base)
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS, calibration_fraction=0.3)
    assert result.claimed_epsilon == pytest.approx(3.0, abs=1e-3) and result.direction.startswith("known")
    assert not result.violation and not result.gdp_violation, result


@pytest.mark.parametrize("variant", ["tenth-noise", "unclipped", "per-row-clip"])
@pytest.mark.parametrize("base", [DPLDM, DPLoRA], ids=["dp-ldm", "dp-lora"])
def test_a_broken_latent_step_is_flagged(base, variant):
    method, data, neighbour = _audit(broken_class(base, variant))
    result = audit_method(method, data, neighbour, BUDGET, trials=TRIALS, calibration_fraction=0.3)
    assert result.claimed_epsilon == pytest.approx(3.0, abs=1e-3)  # the ledger still claims ε = 3
    assert result.gdp_violation, result
