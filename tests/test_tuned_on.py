"""Honest settings: every method says what its defaults were chosen on, every row records it, and tables mark
rows whose settings were chosen on the reported data itself (no ledger counts that selection)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from dpgen_bench.data import load_splits
from dpgen_bench.data.splits import declared_split_sizes
from dpgen_bench.registry import get_method, list_methods
from dpgen_bench.runner.config import ConfigFileError, parse_config, resolve_methods
from dpgen_bench.runner.grid import build_cells
from dpgen_bench.runner.tables import render
from dpgen_bench.runner.tuned_on import parse_tuned_on, resolve_tuned_on, tuned_on_reported_data

RESULTS = Path(__file__).resolve().parents[1] / "results"
BUILT_IN_PACKAGES = ("dpgen_bench_methods", "dpgen_bench_baselines")
BUILT_IN = [n for n in list_methods() if get_method(n).__module__.split(".")[0] in BUILT_IN_PACKAGES]


def test_the_built_in_methods_are_the_thirteen_registered_by_the_package():
    assert len(BUILT_IN) == 13 and {"dp-mepf", "dp-ntk", "gs-wgan", "dp-feta", "privimage", "pe"} <= set(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_method_declares_a_valid_tuning_source(name):
    value = get_method(name).tuned_on
    assert value != "undeclared"
    parse_tuned_on(value)  # raises for an unknown dataset or part


def test_the_defaults_chosen_on_mnist_5k_say_so():
    # DP-CGAN's epochs, DP-MEPF's steps and PE's population were chosen on mnist-5k itself.
    for name in ("dp-cgan", "dp-mepf", "pe"):
        assert tuned_on_reported_data(get_method(name).tuned_on, "mnist-5k", tuning_split=False) is True


def test_defaults_chosen_on_the_tuning_split_are_unmarked_only_where_it_is_held_out():
    # DPDM's p_mean/EMA (and so DP-FETA's), DP-LDM's and DP-LoRA's p_mean and DP-Kernel's bandwidths/lr were chosen
    # on mnist-5k's tuning split.
    for name in ("dpdm", "dp-feta", "dp-ldm", "dp-lora", "dp-kernel"):
        assert get_method(name).tuned_on == "mnist-5k:tuning"
        assert tuned_on_reported_data(get_method(name).tuned_on, "mnist-5k", tuning_split=True) is False
        assert tuned_on_reported_data(get_method(name).tuned_on, "mnist-5k", tuning_split=False) is True


@pytest.mark.parametrize("name, folder", [
    ("dpdm", "tune_dpdm_mnist5k"),
    ("dp-ldm", "tune_dp_ldm_mnist5k"),
    ("dp-lora", "tune_dp_lora_mnist5k"),
    ("dp-lora", "tune_dp_lora_mnist5k/lr_edge"),
])
def test_a_default_declared_tuned_is_what_its_committed_search_chose(name, folder):
    """The committed ``dpgen-bench tune`` record is the evidence behind ``tuned_on``: a default that drifted from
    it (or a search never applied) would make the declaration false."""
    record = json.loads((RESULTS / folder / "tune.json").read_text())
    defaults = get_method(name).Config()
    assert {key: getattr(defaults, key) for key in record["chosen"]} == record["chosen"]
    assert get_method(name).tuned_on == record["tuned_on"] == "mnist-5k:tuning"


@pytest.mark.parametrize("source, tuning_split, expected", [
    ("mnist-5k", False, True),
    ("mnist-5k:test", True, True),
    ("mnist", False, True),  # the same family: mnist-5k is drawn from MNIST
    ("mnist-5k:tuning", True, False),  # held out of train and test in this run
    ("mnist-5k:tuning", False, True),  # this run trains and evaluates on the tuning examples too
    ("digits", False, False),
    ("paper", False, False),
    ("none", False, False),
    ("undeclared", False, None),
])
def test_reported_data_verdict(source, tuning_split, expected):
    assert tuned_on_reported_data(source, "mnist-5k", tuning_split) is expected


def test_bad_tuning_sources_are_refused_naming_the_valid_forms():
    with pytest.raises(ValueError, match="not a registered dataset"):
        parse_tuned_on("imagenet-22k")
    with pytest.raises(ValueError, match="valid parts"):
        parse_tuned_on("mnist-5k:validation")


def test_an_entry_that_overrides_defaults_without_declaring_is_undeclared():
    assert resolve_tuned_on(None, "paper", {}) == "paper"
    assert resolve_tuned_on(None, "paper", {"steps": 5}) == "undeclared"
    assert resolve_tuned_on("digits", "paper", {"steps": 5}) == "digits"


def test_cells_carry_the_entry_or_method_declaration_and_bad_ones_fail_the_config():
    data = {"dataset": "mnist-5k", "epsilons": [1], "evaluation": {"metrics": ["accuracy"]},
            "methods": [{"name": "dp-merf"}, {"name": "dp-merf", "label": "merf-5", "config": {"steps": 5}},
                        {"name": "dp-merf", "label": "merf-t", "config": {"steps": 5}, "tuned_on": "digits"}]}
    config = parse_config(data)
    cells = build_cells(config, resolve_methods(config))
    assert [c.tuned_on for c in cells] == ["paper", "undeclared", "digits"]
    assert cells[0].key == build_cells(config, resolve_methods(config))[0].key
    data["methods"][2]["tuned_on"] = "mnist-5k:dev"
    with pytest.raises(ConfigFileError, match=r"methods\[2\].*tuned_on.*valid parts"):
        resolve_methods(parse_config(data))


def _row(method, tuned_on, verdict):
    return {"cell_key": method, "status": "ok", "error": None, "dataset": "mnist-5k", "method": method,
            "target_epsilon": 1.0, "spent_epsilon": 0.99, "accountant": "prv", "seed": 0, "metric": "acc-logreg",
            "value": 0.5, "direction": "higher", "missing_reason": None, "extractor": None,
            "tuned_on": tuned_on, "tuned_on_reported_data": verdict}


def test_the_table_marks_rows_tuned_on_the_reported_data_and_undeclared_ones():
    df = pd.DataFrame([_row("A", "mnist-5k", True), _row("B", "digits", False), _row("C", "undeclared", None)])
    text = render(df, "md")
    assert "| A¶ |" in text and "| B |" in text and "| C§ |" in text
    assert "¶ A: settings tuned on the reported data (tuned_on: mnist-5k)" in text
    assert r"$^\P$" in render(df, "latex")


def test_the_tuning_split_is_disjoint_fixed_and_declared():
    a, b = load_splits("mnist-5k", tuning=True, seed=0), load_splits("mnist-5k", tuning=True, seed=1)
    assert torch.equal(a.tuning.images, b.tuning.images)  # one set whatever the split seed
    rows = lambda d: {bytes(x.numpy().tobytes()) for x in d.images}  # noqa: E731
    assert not rows(a.tuning) & rows(a.train) and not rows(a.tuning) & rows(a.test)
    assert (a.train.public_size(), a.test.public_size(), a.tuning.public_size()) == (3600, 900, 500)
    assert declared_split_sizes(5000, 0.2, tuning=True) == (3600, 900)
    assert load_splits("mnist-5k").tuning is None
