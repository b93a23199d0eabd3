"""Extension points: a dataset, a feature extractor and an accountant registered from user code (here, the
test) are listed, shown by the CLI and usable end to end; malformed, duplicate and unknown names are refused
with messages naming what is wrong (both origins of a duplicate, the valid names for an unknown one)."""

from __future__ import annotations

import json
import math
import re
import warnings

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

import dpgen_bench.privacy.calibration as calibration_module
import runner_toy  # noqa: F401  (registers the toy methods)
from dpgen_bench.cli import main
from dpgen_bench.data import (
    DATASETS,
    DatasetInfo,
    DatasetSpec,
    ImageDataset,
    UnknownDatasetError,
    dataset_spec,
    list_datasets,
    load_dataset,
    load_splits,
    register_dataset,
)
from dpgen_bench.features import (
    EXTRACTORS,
    FeatureExtractor,
    PrivateExtractorError,
    UnknownExtractorError,
    check_public_extractor,
    extractor_trained_on,
    get_extractor,
    list_extractors,
    register_extractor,
)
from dpgen_bench.named_registry import DuplicateNameError, UnknownNameError
from dpgen_bench.privacy import (
    ACCOUNTANTS,
    Accountant,
    GaussianEvent,
    PrivacyBudget,
    PrivacyLedger,
    UnknownAccountantError,
    UnsupportedEventError,
    calibrate,
    calibrate_gaussian_releases,
    dpsgd_plan,
    epsilon,
    gaussian_releases_plan,
    get_accountant,
    list_accountants,
    register_accountant,
)
from dpgen_bench.privacy.accounting import analytic_gaussian_epsilon, gaussian_mu
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import parse_config

TOY_DATASET = "toy-8x8"
TOY_FAMILY = "toy-squares"
TOY_INFO = DatasetInfo(TOY_DATASET, channels=1, height=8, width=8, num_classes=2, class_names=("dark", "bright"))
TOY_EXTRACTOR = "toy-pool"
TOY_ACCOUNTANT = "toy-doubled"
DELTA = 1e-5


@pytest.fixture(autouse=True)
def _quiet_plugin_warnings():
    with warnings.catch_warnings():  # `dpgen-bench list` warns about unrelated broken method plugins
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ------------------------------------------------------------------------------------------------ toys


def _load_toy() -> ImageDataset:
    """40 seeded 1×8×8 images, 2 classes (class 1 is brighter), float32 in [0, 1]: the loader contract."""
    labels = torch.arange(40) % 2
    noise = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return ImageDataset(images=(0.5 * noise + 0.5 * labels.view(-1, 1, 1, 1)).clamp(0, 1), labels=labels, info=TOY_INFO)


def _toy_spec(load=_load_toy, size: int = 40) -> DatasetSpec:
    return DatasetSpec(info=TOY_INFO, size=size, family=TOY_FAMILY, description="40 random 8x8 squares", load=load)


class _PoolExtractor(FeatureExtractor):
    """Average-pools k×k patches (one learnable scale, so freezing has something to freeze)."""

    name = TOY_EXTRACTOR

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(k)
        self.scale = nn.Parameter(torch.ones(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (self.pool(x) * self.scale).flatten(1)


def _pool_factory(**options) -> FeatureExtractor:
    return _PoolExtractor(**options)


def _doubled_gdp(history, delta: float) -> float:
    """ε of the history composed with itself (every release counted twice): exact gdp, but pessimistic by
    design, so a test can tell this accountant's numbers from gdp's."""
    return analytic_gaussian_epsilon(math.sqrt(2.0) * gaussian_mu(history), delta)


def _toy_accountant(name: str = TOY_ACCOUNTANT, **changes) -> Accountant:
    fields = dict(description="gdp of every release counted twice (a test toy)", compute=_doubled_gdp,
                  abs_error=0.0, rel_error=1e-6, subsampling=False)
    return Accountant(name, **{**fields, **changes})


@pytest.fixture
def toy_dataset():
    spec = register_dataset(_toy_spec())
    yield spec
    DATASETS.unregister(TOY_DATASET)


@pytest.fixture
def toy_extractor():
    register_extractor(TOY_EXTRACTOR, trained_on=(TOY_FAMILY,))(_pool_factory)
    yield TOY_EXTRACTOR
    EXTRACTORS.unregister(TOY_EXTRACTOR)


@pytest.fixture
def toy_accountant():
    acc = register_accountant(_toy_accountant())
    yield acc
    ACCOUNTANTS.unregister(TOY_ACCOUNTANT)


def _cli(capsys, argv: list[str]) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ datasets


def test_a_registered_dataset_is_listed_offline_first_and_shown_by_the_cli(toy_dataset, capsys, tmp_path):
    names = list_datasets()
    assert TOY_DATASET in names and dataset_spec(TOY_DATASET) is toy_dataset
    offline = [n for n in names if dataset_spec(n).offline]
    assert names[: len(offline)] == sorted(offline) and TOY_DATASET in offline  # own loader → offline
    for argv in (["datasets", "--data-dir", str(tmp_path)], ["list", "--data-dir", str(tmp_path)]):
        row = next(line.split() for line in _cli(capsys, argv).splitlines() if line.split()[:1] == [TOY_DATASET])
        assert row[1:4] == ["40", "1x8x8", "2"] and row[-2:] == ["yes", "yes"]  # size, shape, classes; offline, available
    info = _cli(capsys, ["info", TOY_DATASET, "--load"])
    assert "32 train / 8 test" in info and "[16, 16]" not in info  # declared sizes, never class counts


def test_a_registered_dataset_loads_and_splits(toy_dataset):
    splits = load_splits(TOY_DATASET, seed=3)
    assert splits.train.images.dtype == torch.float32 and splits.info == TOY_INFO
    assert splits.train.class_counts().tolist() == [16, 16] and splits.test.class_counts().tolist() == [4, 4]
    assert splits.train.public_size() == 32 and splits.test.public_size() == 8


def test_a_registered_dataset_declares_the_spec_size_not_the_loaded_length():
    register_dataset(_toy_spec(size=100))  # 40 examples on disk, 100 declared: n̂ is what was declared
    try:
        ds = load_dataset(TOY_DATASET)
        assert len(ds) == 40 and ds.nominal_size == 100  # the actual length is private under add/remove
        splits = load_splits(TOY_DATASET)
        assert splits.train.public_size() == 80 and len(splits.train) == 32
    finally:
        DATASETS.unregister(TOY_DATASET)


def _scaled_to_255():
    ds = _load_toy()
    return ImageDataset(ds.images * 255.0, ds.labels, ds.info)


def _wrong_info():
    ds = _load_toy()
    return ImageDataset(ds.images, ds.labels, DatasetInfo(TOY_DATASET, 1, 8, 8, 3))


def _label_out_of_range():
    ds = _load_toy()
    return ImageDataset(ds.images, ds.labels * 2, ds.info)


@pytest.mark.parametrize(
    "loader,named",
    [(_scaled_to_255, "returned pixels in [0.0549299, 254.975], expected [0, 1]"), (_wrong_info, "but the spec declares"),
     (_label_out_of_range, "labels in [0, 2]"), (lambda: "not a dataset", "returned str")],
    ids=["pixels-0-255", "wrong-info", "labels-out-of-range", "not-a-dataset"],
)
def test_a_loader_breaking_the_contract_is_refused_when_loading(loader, named):
    register_dataset(_toy_spec(load=loader))
    try:
        with pytest.raises((ValueError, TypeError), match=re.escape(named)):
            load_dataset(TOY_DATASET)
    finally:
        DATASETS.unregister(TOY_DATASET)


@pytest.mark.slow
def test_a_registered_dataset_and_accountant_run_a_tiny_benchmark(toy_dataset, toy_accountant, tmp_path):
    out = tmp_path / "out"
    config = runner_toy.tiny_config(
        out, dataset=TOY_DATASET, accountant=TOY_ACCOUNTANT, methods=[{"name": "toy-means"}], epsilons=[2.0],
        seeds=[0], evaluation={"metrics": ["accuracy"], "n_samples": 20,
                               "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 10, "logreg_max_iter": 50}}},
    )
    summary = run_benchmark(parse_config(config), progress=False, render=False)
    assert summary.failed == [] and len(summary.ran) == 1
    df = pd.read_csv(out / "results.csv")
    assert set(df["status"]) == {"ok"} and set(df["dataset"]) == {TOY_DATASET}
    assert set(df["accountant"]) == {TOY_ACCOUNTANT} and set(df["n_train_nominal"]) == {32}
    row = df.iloc[0]
    ledger = PrivacyLedger.from_dicts(json.loads(row["ledger"]))
    budget = PrivacyBudget(row["target_epsilon"], row["delta"], row["delta_rule"], TOY_ACCOUNTANT)
    assert row["spent_epsilon"] == pytest.approx(ledger.epsilon(budget)) and ledger.within(budget)
    # Calibrated with the toy itself: under plain gdp the same releases spend clearly less than the target.
    assert epsilon(ledger.events, row["delta"], "gdp") < 0.8 * row["target_epsilon"]


# ------------------------------------------------------------------------------------------------ extractors


def test_a_registered_extractor_is_listed_built_frozen_and_differentiable(toy_extractor):
    assert TOY_EXTRACTOR in list_extractors() and extractor_trained_on(TOY_EXTRACTOR) == (TOY_FAMILY,)
    ext = get_extractor(TOY_EXTRACTOR, k=4)
    assert isinstance(ext, _PoolExtractor) and not ext.training
    assert not any(p.requires_grad for p in ext.parameters())
    x = torch.rand(3, 1, 8, 8, requires_grad=True)
    feats = ext(x)
    assert feats.shape == (3, 4)
    feats.sum().backward()
    assert x.grad is not None and torch.all(x.grad > 0)


def test_a_registered_extractor_is_not_public_for_its_own_family(toy_extractor, toy_dataset, tmp_path, capsys):
    with pytest.raises(PrivateExtractorError, match=f"{TOY_EXTRACTOR!r} was trained on {TOY_FAMILY!r}"):
        check_public_extractor(TOY_EXTRACTOR, TOY_DATASET)
    check_public_extractor(TOY_EXTRACTOR, "digits")  # another family: public, no error
    # The CLI refuses a method that would train against it on that dataset, before anything trains.
    path = tmp_path / "bench.yaml"
    config = runner_toy.tiny_config(tmp_path / "out", dataset=TOY_DATASET, epsilons=[1.0], seeds=[0],
                                    methods=[{"name": "dp-mepf", "config": {"extractor": TOY_EXTRACTOR}}])
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"feature extractor {TOY_EXTRACTOR!r} was trained on {TOY_FAMILY!r} data" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ accountants


def test_a_registered_accountant_is_listed_and_usable_from_the_cli(toy_accountant, capsys):
    assert TOY_ACCOUNTANT in list_accountants() and get_accountant(TOY_ACCOUNTANT) is toy_accountant
    rows = {r["accountant"]: r for r in json.loads(_cli(capsys, ["privacy", "accountants", "--json"]))["rows"]}
    assert rows[TOY_ACCOUNTANT]["origin"] == f"{__name__}._doubled_gdp" and not rows[TOY_ACCOUNTANT]["subsampling"]
    assert [r["accountant"] for r in rows.values() if r["default"]] == ["prv"]
    argv = ["privacy", "epsilon", "--gaussian", "5", "--delta", "1e-5", "--json"]
    (row,) = json.loads(_cli(capsys, argv + ["--accountant", TOY_ACCOUNTANT]))["rows"]
    assert row["epsilon"] == pytest.approx(epsilon([GaussianEvent(5.0)] * 2, DELTA, "gdp"), rel=1e-9)
    every = [r["accountant"] for r in json.loads(_cli(capsys, argv + ["--all-backends"]))["rows"]]
    assert every == list_accountants() and TOY_ACCOUNTANT in every


def test_a_registered_accountant_drives_budget_calibration_and_ledger(toy_accountant):
    budget = PrivacyBudget(1.0, DELTA, accountant=TOY_ACCOUNTANT)
    sigma = calibrate_gaussian_releases([1.0, 1.0], budget, rtol=1e-6)
    # Two releases counted twice = four releases under gdp: σ = 2 · (σ of one release at ε = 1, 3.7306).
    assert sigma == pytest.approx(2 * 3.7306, abs=2e-4)
    ledger = PrivacyLedger()
    for _ in range(2):
        ledger.record(GaussianEvent(sigma), "a release")
    assert ledger.epsilon(budget) == pytest.approx(1.0, abs=1e-5) and ledger.within(budget)
    # Its declared limits are honoured: no subsampling, and the error lists only backends that can do it.
    with pytest.raises(UnsupportedEventError, match="Use one of prv, rdp, prv-accountant\\.$"):
        calibrate(dpsgd_plan(0.1, 10), budget)


def test_a_discretised_accountant_gets_the_coarse_guide_and_a_closed_form_one_does_not(monkeypatch, toy_accountant):
    register_accountant(_toy_accountant("toy-discretised", discretised=True, abs_error=0.01))
    built: list[float] = []
    real = calibration_module._CoarsePRV

    class Spy(real):
        def __init__(self, plan, delta):
            built.append(delta)
            super().__init__(plan, delta)

    monkeypatch.setattr(calibration_module, "_CoarsePRV", Spy)
    try:
        plan = gaussian_releases_plan([1.0, 1.0])
        exact = calibrate(plan, PrivacyBudget(1.0, DELTA, accountant=TOY_ACCOUNTANT))
        assert built == []
        guided = calibrate(plan, PrivacyBudget(1.0, DELTA, accountant="toy-discretised"))
        assert built == [DELTA]
        assert guided == pytest.approx(exact, rel=2e-3)  # the guide only locates σ; the backend decides
    finally:
        ACCOUNTANTS.unregister("toy-discretised")


# ------------------------------------------------------------------------------------------------ refusals


def test_a_name_registered_twice_is_refused_naming_both_origins(toy_dataset, toy_extractor, toy_accountant):
    def _other_loader() -> ImageDataset:
        return _load_toy()

    with pytest.raises(DuplicateNameError, match=r"dataset 'toy-8x8' registered twice: by .*\._load_toy and by "
                                                 r".*_other_loader"):
        register_dataset(_toy_spec(load=_other_loader))
    with pytest.raises(DuplicateNameError, match="dataset 'mnist-5k' registered twice: by dpgen_bench.data.registry"):
        register_dataset(DatasetSpec(info=DatasetInfo("mnist-5k", 1, 28, 28, 10), size=5000, family="mnist",
                                     description="a second mnist-5k", load=_other_loader))
    with pytest.raises(DuplicateNameError, match=r"feature extractor 'random-cnn' registered twice: by "
                                                 r"dpgen_bench\.features\.random_cnn\..* and by .*_pool_factory"):
        register_extractor("random-cnn", trained_on=())(_pool_factory)
    with pytest.raises(DuplicateNameError, match=r"accountant 'gdp' registered twice: by dpgen_bench\.privacy\.accounting "
                                                 r"and by .*_doubled_gdp"):
        register_accountant(_toy_accountant("gdp"))
    # The refused second registrations changed nothing.
    assert dataset_spec(TOY_DATASET) is toy_dataset and get_accountant("gdp").compute is not _doubled_gdp


def test_an_unknown_name_lists_the_valid_names_including_registered_ones(toy_dataset, toy_extractor, toy_accountant,
                                                                         capsys):
    lookups = [
        (lambda: dataset_spec("nope"), UnknownDatasetError, [TOY_DATASET, "mnist-5k", "cifar10"]),
        (lambda: get_extractor("nope"), UnknownExtractorError, [TOY_EXTRACTOR, "random-cnn"]),
        (lambda: PrivacyBudget(1.0, DELTA, accountant="nope"), UnknownAccountantError, [TOY_ACCOUNTANT, "prv", "gdp"]),
    ]
    for lookup, error, names in lookups:
        with pytest.raises(error) as caught:
            lookup()
        assert isinstance(caught.value, UnknownNameError) and isinstance(caught.value, KeyError)
        assert isinstance(caught.value, ValueError)  # callers catching either keep working
        assert "'nope'" in str(caught.value) and all(n in str(caught.value) for n in names), str(caught.value)
    assert main(["privacy", "epsilon", "--gaussian", "5", "--delta", "1e-5", "--accountant", "nope"]) == 2
    assert f"unknown accountant 'nope'; available: " in (err := capsys.readouterr().err) and TOY_ACCOUNTANT in err


@pytest.mark.parametrize(
    "register,error,named",
    [
        (lambda: DatasetSpec(info=TOY_INFO, size=40, family=TOY_FAMILY, description=""), ValueError, "exactly one of"),
        (lambda: _toy_spec(size=0), ValueError, "size must be an integer >= 1"),
        (lambda: register_dataset("toy-8x8"), TypeError, "expects a DatasetSpec"),
        (lambda: register_extractor("toy-x", trained_on="imagenet"), TypeError, "tuple of family names"),
        (lambda: _toy_accountant("toy-x", abs_error=-0.1), ValueError, "abs_error must be a finite number >= 0"),
        (lambda: register_accountant(_doubled_gdp), TypeError, "expects an Accountant"),
    ],
    ids=["dataset-no-loader", "dataset-size-0", "dataset-not-a-spec", "extractor-trained-on-a-string",
         "accountant-negative-error", "accountant-not-an-accountant"],
)
def test_a_malformed_registration_is_refused_naming_the_problem(register, error, named):
    before = (list_datasets(), list_extractors(), list_accountants())
    with pytest.raises(error, match=named):
        register()
    assert (list_datasets(), list_extractors(), list_accountants()) == before
