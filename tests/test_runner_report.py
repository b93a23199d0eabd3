"""The end-of-run report: table with spend, and the comparison with a committed reference run."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

import runner_toy
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import parse_config
from dpgen_bench.runner.report import compare_with_reference, reference_dir, run_report, tolerance

pytestmark = pytest.mark.slow


def _rows(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    return pd.DataFrame([{"cell_key": k, "method": "m", "target_epsilon": 1.0, "metric": metric, "value": v,
                          "status": "ok"} for (k, metric), v in values.items()])


def test_comparison_gives_the_difference_and_judges_it_against_the_measured_seed_spread():
    run = _rows({("a", "acc-logreg"): 0.80, ("b", "acc-logreg"): 0.50})
    ref = _rows({("a", "acc-logreg"): 0.70, ("c", "acc-logreg"): 0.10})
    cmp = compare_with_reference(run, ref, {("m", 1.0, "acc-logreg"): tolerance(0.02, 3)})  # ±0.12
    assert len(cmp) == 1  # only cells with the same key (identical settings) are compared
    row = cmp.iloc[0]
    assert row["difference"] == pytest.approx(0.10) and bool(row["within_spread"]) is True
    assert tolerance(0.02, 3) == pytest.approx(4.303 * 2**0.5 * 0.02, rel=1e-3)  # Student t, 2 dof
    strict = compare_with_reference(run, ref, {("m", 1.0, "acc-logreg"): tolerance(0.02, 30)})  # ±0.058
    assert bool(strict.iloc[0]["within_spread"]) is False
    assert compare_with_reference(run, ref).iloc[0]["within_spread"] is None  # spread not measured: said so


def test_report_prints_the_table_with_spend_and_compares_with_the_reference(tmp_path):
    config = runner_toy.tiny_config(tmp_path / "runs" / "tiny", epsilons=[1], seeds=[0], methods=[{"name": "toy-means"}],
                                    evaluation={"metrics": ["accuracy"], "n_samples": 60,
                                                "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5}}})
    run_benchmark(parse_config(config), progress=False, render=False)
    repo = tmp_path / "repo"
    assert reference_dir(tmp_path / "runs" / "tiny", repo) is None and "Compared" not in run_report(
        tmp_path / "runs" / "tiny", repo)
    shutil.copytree(tmp_path / "runs" / "tiny", repo / "results" / "tiny")  # a committed reference of the same grid
    text = run_report(tmp_path / "runs" / "tiny", repo)
    assert "acc-logreg ↑ ε=1" in text and "ε spent" in text
    assert "digits/toy-means/eps=1/seed=0: 0.99" in text and "of 1 (prv)" in text  # per-cell spend
    assert "Compared with the committed reference run" in text and "Δ +0" in text and "spread not measured" in text
