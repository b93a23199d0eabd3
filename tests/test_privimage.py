"""PrivImage (``baselines/privimage.py``, docs/privimage.md): the DP semantic query — its histogram, its L2
sensitivity √k, its noise through the shared noise function and its place in the ledger beside DPDM's DP-SGD
steps —, the selection and the selected public subset the diffusion model pre-trains on (cached by content,
recorded in the checkpoint and the ledger note), and the clear errors for a missing pool or missing weights."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from dpgen_bench.audit.broken import broken_class, variants_for
from dpgen_bench.context import RunContext
from dpgen_bench.data.types import DatasetInfo, ImageDataset
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import GaussianEvent, PoissonSubsampledGaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.privacy.noise import recording_noise
from dpgen_bench_baselines.dpdm import DPDM
from dpgen_bench_baselines.privimage import (
    QUERY_NOTE,
    PrivImage,
    select_public_classes,
    selected_subset,
    semantic_histogram,
    synthetic_pool,
)
from dpgen_bench_baselines.public_classifier import (
    MissingClassifierWeightsError,
    TorchvisionClassifierSpec,
    public_classifier,
)

INFO = DatasetInfo("privimage-test", 1, 8, 8, 2)
BUDGET = PrivacyBudget(1.0, 1e-5)
TINY = dict(PrivImage.conformance_config)


def _data(n: int = 32, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.rand(n, *INFO.shape, generator=g), torch.arange(n) % 2, INFO, split="train",
                        nominal_size=n)


def _method(**changes) -> PrivImage:
    return PrivImage({**TINY, **changes}, INFO, seed=0, context=RunContext(progress=False))


# ------------------------------------------------------------------------------------------ the query


def test_the_histogram_counts_each_examples_top_k_classes_in_its_own_row():
    top = torch.tensor([[0, 3], [3, 1], [2, 0]])
    hist = semantic_histogram(top, torch.tensor([0, 1, 0]), n_rows=2, n_classes=4)
    assert hist.tolist() == [[2, 0, 1, 1], [0, 1, 0, 1]]
    assert hist.dtype == torch.float64


@pytest.mark.parametrize("k", [1, 3])
def test_the_declared_sensitivity_bounds_what_one_example_moves_the_histogram(k):
    """Remove each example in turn: the exact histogram moves by its k-hot vector (L2 √k). The noise drawn must
    declare at least that sensitivity and have std σ_q × it, with σ_q the one the ledger records."""
    method, data = _method(top_k=k), _data()
    pool = method.public_pool()
    full = method.semantic_query(data, pool, None)
    moved = max((full - method.semantic_query(data.subset(torch.arange(len(data)) != i), pool, None)).norm().item()
                for i in range(len(data)))
    assert moved == pytest.approx(math.sqrt(k))
    with recording_noise() as draws:
        method.semantic_query(data, pool, 7.0)
    (draw,) = draws
    assert draw.sensitivity >= moved - 1e-9, "the query's noise is calibrated for less than one example moves it"
    assert draw.std == pytest.approx(7.0 * draw.sensitivity)


def test_charging_a_k_hot_vector_as_sensitivity_one_is_caught_by_the_sensitivity_check():
    broken = broken_class(PrivImage, "unit-sensitivity")({**TINY, "top_k": 4}, INFO, seed=0,
                                                         context=RunContext(progress=False))
    with recording_noise() as draws:
        broken.semantic_query(_data(), broken.public_pool(), 7.0)
    assert draws[0].sensitivity == 1.0 < math.sqrt(4)  # what the check above refuses
    assert "unit-sensitivity" in variants_for(PrivImage) and "per-row-clip" in variants_for(PrivImage)


@pytest.mark.parametrize("variant", [None, "unit-sensitivity", "tenth-noise"])
def test_an_audit_of_the_query_alone_flags_its_broken_variants_and_not_the_real_one(variant):
    """The mechanism audit (docs/audit.md) of the real query code on D and D ∪ {white image}; the
    claim is its ledger event GaussianEvent(σ_q). 600 trials, k = 16: charging the k-hot vector as sensitivity 1 is 4× too
    little noise."""
    from dpgen_bench.audit import audit_mechanism, with_canary
    from dpgen_bench.privacy.accounting import epsilon

    cls = PrivImage if variant is None else broken_class(PrivImage, variant)
    method = cls({**TINY, "top_k": 16}, INFO, seed=0, context=RunContext(progress=False))
    pool, data, sigma_q = method.public_pool(), _data(8), 4.0
    neighbour = with_canary(data, torch.ones(INFO.shape), 0)
    diff = method.semantic_query(neighbour, pool, None) - method.semantic_query(data, pool, None)
    assert diff.norm().item() == pytest.approx(4.0)  # √k
    claim = epsilon([GaussianEvent(sigma_q)], 1e-5, "gdp")
    bug = contextlib.nullcontext() if variant is None else variants_for(PrivImage)[variant].patches()
    with bug:  # (a broken class patches only its fit and audit_release; the query is called directly here)
        result = audit_mechanism(lambda d: method.semantic_query(d, pool, sigma_q).flatten(), data, neighbour,
                                 trials=600, delta=1e-5, mean_difference=diff.flatten(), claimed_epsilon=claim)
    assert result.gdp_violation == (variant is not None), result


@pytest.mark.slow  # ~8 s: two calibrations of the composed plan on a loaded machine
def test_a_private_fit_records_the_query_and_the_dp_sgd_steps_in_one_ledger_that_meets_the_target():
    method, data, ledger = _method(), _data(), PrivacyLedger()
    method.fit(data, BUDGET, ledger)
    query = [e for e in ledger.entries if e.note.startswith(QUERY_NOTE)]
    assert len(query) == 1, "the semantic query is missing from the ledger"
    assert query[0].event == GaussianEvent(TINY["query_noise_multiplier"])
    steps = [e.event for e in ledger.entries if isinstance(e.event, PoissonSubsampledGaussianEvent)]
    assert len(steps) == 1 and len(ledger) == 2
    plan = PrivImage.privacy_plan(method.config, data.public_size())
    assert ledger.events == plan(steps[0].noise_multiplier)  # the declared plan (its calibration: the spend below)
    spent = ledger.epsilon(BUDGET)
    assert BUDGET.admits(spent) and spent == pytest.approx(1.0, abs=0.01)
    only_steps = PrivacyLedger()
    only_steps.record(steps[0])
    assert only_steps.epsilon(BUDGET) < spent - 0.01  # the query's share is really charged


def test_a_non_private_fit_records_nothing_and_uses_the_exact_histogram():
    method, ledger = _method(), PrivacyLedger()
    with recording_noise() as draws:
        method.fit(_data(), PrivacyBudget(math.inf, 1e-5), ledger)
    assert len(ledger) == 0 and not draws and method.selection is not None


# ------------------------------------------------------------------------------------------ selection


def test_each_private_class_takes_its_top_k_public_classes_not_taken_before():
    noisy = torch.tensor([[5.0, 4.0, 1.0, 0.0, 3.0], [6.0, 1.0, 2.0, 0.0, 5.0]])
    assert select_public_classes(noisy, 2) == [[0, 1], [2, 4]]


def test_the_subset_is_the_selected_classes_relabelled_with_the_private_class_that_chose_them():
    pool = synthetic_pool(INFO, classes=6, per_class=3, seed=0)
    sub = selected_subset(pool, [[4], [1, 2]], INFO, conditional=True)
    assert len(sub) == 9 and sub.info.num_classes == INFO.num_classes and sub.info.shape == INFO.shape
    src = pool.labels[torch.isin(pool.labels, torch.tensor([1, 2, 4]))]
    assert sub.labels.tolist() == [1 if c in (1, 2) else 0 for c in src.tolist()]
    assert "[[4],[1,2]]" in sub.info.name and sub.meta["privimage_selection"] == "[[4],[1,2]]"
    assert selected_subset(pool, [[4, 1]], INFO, conditional=False).labels.tolist() == [0] * 6


def test_the_pretraining_cache_key_changes_with_the_selection():
    method = _method()
    pool = method.public_pool()
    one = selected_subset(pool, [[0], [1]], INFO, True)
    other = selected_subset(pool, [[0], [2]], INFO, True)
    assert method.pretrain_key(one) != method.pretrain_key(other)


def test_the_pretraining_data_is_recorded_in_the_checkpoint_and_the_ledger_note(tmp_path):
    method, ledger = _method(), PrivacyLedger()
    method.fit(_data(), BUDGET, ledger)
    assert method.selection and str(method.selection).replace(" ", "") in method.pretrained_on.replace(" ", "")
    assert str(method.selection).replace(" ", "") in ledger.entries[0].note
    loaded = PrivImage.load(method.save(tmp_path / "ckpt"), context=RunContext(progress=False))
    assert loaded.selection == method.selection and loaded.pretrained_on == method.pretrained_on


def test_the_pretraining_is_cached_by_content_with_the_selection_in_the_key(tmp_path):
    method = PrivImage(TINY, INFO, seed=0, context=RunContext(progress=False, cache_dir=tmp_path))
    method.fit(_data(), PrivacyBudget(math.inf, 1e-5), PrivacyLedger())
    cached = sorted(p.parent.name for p in tmp_path.rglob("*.pt"))
    assert cached == ["dpdm-pretrain", "privimage-classifier"]


# ------------------------------------------------------------------------------------------ errors


def test_without_public_data_the_fit_refuses_naming_the_fix():
    with pytest.raises(ValueError, match="public_data"):
        _method(pool="public_data").fit(_data(), BUDGET, PrivacyLedger())


def test_a_pool_with_too_few_classes_for_top_k_is_refused_naming_both_counts():
    method = _method(top_k=2, synthetic_classes_per_row=1)  # 4 classes, needs 2 x 2 = 4: fine
    method.public_pool()
    pool = synthetic_pool(INFO, classes=3, per_class=2, seed=0)
    with pytest.raises(ValueError, match="needs at least 4 public classes.*has 3"):
        method.semantic_query(_data(), pool, None)


def test_missing_torchvision_weights_name_the_path(tmp_path):
    missing = tmp_path / "resnet18.pth"
    spec = TorchvisionClassifierSpec(arch="resnet18", weights=str(missing))
    with pytest.raises(MissingClassifierWeightsError, match=str(missing)):
        public_classifier(synthetic_pool(INFO, 4, 2, 0), spec, seed=0)
    config = PrivImage.Config(classifier={"kind": "torchvision", "arch": "resnet18", "weights": str(missing)})
    assert list(PrivImage.required_files(config).values()) == [str(missing)]
    assert list(PrivImage.pretrained_components(config).values()) == [("imagenet",)]


def test_the_runner_refuses_a_run_whose_classifier_weights_are_missing_before_training(tmp_path):
    from dpgen_bench.runner.benchmark import prepare
    from dpgen_bench.runner.config import ConfigFileError, parse_config

    missing = tmp_path / "weights" / "resnet50.pth"
    config = parse_config({
        "dataset": "mnist-5k", "epsilons": [1], "seeds": [0], "output_dir": str(tmp_path / "out"),
        "methods": [{"name": "privimage", "public_data": {"dataset": "digits"},
                     "config": {"classifier": {"kind": "torchvision", "arch": "resnet50", "weights": str(missing)}}}],
        "evaluation": {"metrics": ["accuracy"], "n_samples": 100},
    })
    with pytest.raises(ConfigFileError, match="weights.*" + str(missing).replace(".", r"\.")):
        prepare(config)
    assert not (tmp_path / "out").exists()


def test_a_torchvision_classifier_with_local_weights_scores_the_pools_classes(tmp_path):
    import torchvision

    from dpgen_bench_baselines.public_classifier import top_k_classes

    torch.save(torchvision.models.get_model("resnet18", weights=None, num_classes=6).state_dict(), tmp_path / "w.pth")
    pool = synthetic_pool(INFO, classes=6, per_class=1, seed=0)
    spec = TorchvisionClassifierSpec(arch="resnet18", weights=str(tmp_path / "w.pth"), input_size=32)
    top = top_k_classes(public_classifier(pool, spec, seed=0), pool.images, k=2)
    assert top.shape == (6, 2) and int(top.max()) < 6 and bool((top[:, 0] != top[:, 1]).all())
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), tmp_path / "w1k.pth")
    with pytest.raises(ValueError, match="w1k.pth.*6 output classes"):  # ImageNet's 1000-class head, 6-class pool
        public_classifier(pool, spec.model_copy(update={"weights": str(tmp_path / "w1k.pth")}), seed=0)


def test_privimage_shares_dpdms_tuning_split_settings_and_is_unmarked_only_with_the_split_held_out():
    from dpgen_bench.registry import get_method
    from dpgen_bench.runner.tuned_on import tuned_on_reported_data

    assert get_method("privimage") is PrivImage and PrivImage.tuned_on == DPDM.tuned_on == "mnist-5k:tuning"
    assert tuned_on_reported_data(PrivImage.tuned_on, "mnist-5k", tuning_split=True) is False
    assert tuned_on_reported_data(PrivImage.tuned_on, "mnist-5k", tuning_split=False) is True
    ours, dpdm = PrivImage.Config(), DPDM.Config()
    assert (ours.p_mean, ours.ema_decay) == (dpdm.p_mean, dpdm.ema_decay)  # one source: DPDM's tuning-split choice