"""End to end: a tiny grid (2 methods × 2 ε × 2 seeds) through run → results.csv → tables → plots → rerun."""

from __future__ import annotations

import math
import os

import pandas as pd
import pytest
import yaml

import runner_toy  # noqa: F401  (registers the toy methods)
from dpgen_bench.cli import main
from dpgen_bench.jobs.store import read_rows
from dpgen_bench.privacy.budget import SPEND_RTOL
from dpgen_bench.runner.benchmark import run_benchmark, threads_per_job
from dpgen_bench.runner.config import parse_config, resolve_methods
from dpgen_bench.runner.grid import build_cells
from dpgen_bench.runner.store import COLUMNS, ResultsStore
from dpgen_bench.runner.tables import build_table, render

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    config = parse_config(runner_toy.tiny_config(out))
    summary = run_benchmark(config, progress=False)
    return config, summary, out


def test_every_cell_ran_and_succeeded(grid):
    _, summary, _ = grid
    assert summary.total == 8
    assert len(summary.ran) == 8 and not summary.skipped
    assert summary.failed == []


def test_results_csv_is_long_format_with_every_design_column(grid):
    _, _, out = grid
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    # 8 cells × (acc-logreg, acc-mlp, acc-cnn, FD-digitcnn)
    assert len(df) == 32
    assert not df.duplicated(["cell_key", "metric"]).any()
    assert set(df["status"]) == {"ok"}
    assert set(df["neighbouring"]) == {"add/remove-one"}
    assert set(df["delta_rule"]) == {"1/(n ln n)"}
    # δ from the declared train size of digits (1,797 − round(0.2 · 1,797)), never the split's actual length
    assert set(df["n_train_nominal"]) == {1438} and "n_train" not in df.columns
    assert df["delta"].iloc[0] == pytest.approx(1 / (1438 * math.log(1438)))
    assert df["code_version"].notna().all() and df["torch_version"].notna().all()
    # Every cell here is private: time and memory follow the private n, so they are withheld with a reason.
    assert df["peak_memory_mb"].isna().all() and df["wall_time_s"].isna().all()
    assert df["resources_missing_reason"].str.contains("private").all()
    assert set(df["tuned_on"]) == {"none", "undeclared"}  # toy-blurry overrides spread without declaring
    assert set(df["torch_threads"]) == {threads_per_job(1)}  # set deliberately, recorded per row


def test_spent_epsilon_is_recomputed_and_within_target(grid):
    _, _, out = grid
    df = read_rows(out / "results.csv").drop_duplicates("cell_key")
    for _, row in df.iterrows():
        assert 0 < row["spent_epsilon"] <= row["target_epsilon"] * (1 + SPEND_RTOL)
    # Calibration is tight: the spend is close to the target, not trivially 0.
    assert (df["spent_epsilon"] > 0.9 * df["target_epsilon"]).all()


def test_uncomputable_metric_is_missing_with_reason_never_zero(grid):
    _, summary, out = grid
    df = pd.read_csv(out / "results.csv")
    fd = df[df["metric"] == "FD-digitcnn"]
    assert len(fd) == 8 and fd["value"].isna().all()
    assert fd["missing_reason"].str.contains("28x28").all()
    assert [m for m, _ in summary.missing] == ["FD-digitcnn"]


def test_table_has_methods_by_metric_and_epsilon_with_mean_std_and_bold_best(grid):
    _, _, out = grid
    df = pd.read_csv(out / "results.csv")
    table = build_table(df)
    assert sorted(table.rows) == ["toy-blurry", "toy-means"]
    assert [(label, eps) for label, _, eps in table.columns] == [
        (m, e) for m in ("acc-cnn", "acc-logreg", "acc-mlp") for e in (1.0, 10.0)
    ]
    for col in table.columns:
        cells = [table.get(r, col) for r in table.rows]
        assert all(c.n == 2 and c.std is not None for c in cells)
        assert sum(c.best for c in cells) >= 1
        best = max(c.mean for c in cells)  # accuracies: higher is better
        assert all(c.best == (c.mean == best) for c in cells)
    # mean ± std is the seeds' mean and sample std
    sub = df[(df["method"] == "toy-means") & (df["metric"] == "acc-logreg") & (df["target_epsilon"] == 10)]
    cell = table.get("toy-means", ("acc-logreg", "higher", 10.0))
    assert cell.mean == pytest.approx(sub["value"].mean())
    assert cell.std == pytest.approx(sub["value"].std(ddof=1))
    md = render(df, "md")
    assert "acc-logreg ↑ ε=1" in md and " ± " in md and "**" in md
    assert "FD-digitcnn not computed" in md  # no column, a note with the reason
    assert "| FD-digitcnn" not in md and "FID" not in md


def test_resolved_config_environment_and_artefacts_are_saved(grid):
    config, _, out = grid
    saved = parse_config(yaml.safe_load((out / "config.yaml").read_text()))
    # the saved config spells out every method default and reruns exactly the same cells
    assert saved.methods[0].config == {"spread": 0.1, "fail_seed": None, "overspend": False, "sleep_s": 0.0}
    keys = lambda c: [cell.key for cell in build_cells(c, resolve_methods(c))]  # noqa: E731
    assert keys(saved) == keys(config)
    assert "torch_version" in (out / "environment.json").read_text()
    for key in read_rows(out / "results.csv")["cell_key"].unique():
        cell = out / "cells" / key
        for name in ("samples.npz", "samples.png", "ledger.json", "checkpoint/state.pt", "checkpoint/method.json"):
            assert (cell / name).exists(), f"{key}: {name} missing"
    import numpy as np

    npz = np.load(out / "cells" / key / "samples.npz")
    assert npz["images"].shape == (100, 1, 8, 8) and npz["labels"].shape == (100,)
    for name in ("tables/table.md", "tables/table.tex", "tables/table.csv", "plots/metrics_vs_epsilon.png", "plots/samples_digits.png"):
        assert (out / name).stat().st_size > 0


def test_a_cell_checkpoint_reloads_and_reproduces_the_cells_saved_samples(grid):
    """The runner's checkpoint alone (no private data) regenerates the cell's samples.npz at the cell's seed."""
    import json

    import numpy as np

    from dpgen_bench.registry import get_method

    _, _, out = grid
    row = pd.read_csv(out / "results.csv").iloc[-1]
    cell = out / "cells" / row["cell_key"]
    meta = json.loads((cell / "checkpoint" / "method.json").read_text())
    method = get_method(meta["method"]).load(cell / "checkpoint")
    saved = np.load(cell / "samples.npz")
    images, labels = method.sample(len(saved["labels"]), seed=int(row["seed"]))
    assert np.array_equal((images.numpy() * 255.0).round().astype(np.uint8), saved["images"])
    assert np.array_equal(labels.numpy(), saved["labels"])


def test_rerun_computes_nothing_new(grid):
    config, _, out = grid
    csv_before = (out / "results.csv").read_text()
    records = sorted((out / "cells").glob("*.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in records}
    again = run_benchmark(config, progress=False, render=False)
    assert again.ran == [] and len(again.skipped) == 8
    assert {p: p.stat().st_mtime_ns for p in records} == mtimes
    assert (out / "results.csv").read_text() == csv_before


def test_force_recomputes_finished_cells(tmp_path):
    one = parse_config(
        runner_toy.tiny_config(
            tmp_path, methods=[{"name": "toy-means"}], epsilons=[1], seeds=[0],
            evaluation={"metrics": ["accuracy"], "n_samples": 60, "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5}}},
        )
    )
    assert len(run_benchmark(one, progress=False, render=False).ran) == 1
    assert run_benchmark(one, progress=False, render=False).ran == []
    forced = run_benchmark(one, progress=False, render=False, force=True)
    assert len(forced.ran) == 1 and forced.skipped == []
    assert len(ResultsStore(tmp_path).read_results()) == 3


def test_results_csv_describes_the_grid_of_the_saved_config(tmp_path):
    """Changing a method's config makes new cells; the old records stay in cells/ as a cache, but results.csv
    (like config.yaml) describes only the grid that was just run."""
    base = runner_toy.tiny_config(
        tmp_path, methods=[{"name": "toy-means"}], epsilons=[1], seeds=[0],
        evaluation={"metrics": ["accuracy"], "n_samples": 60, "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5}}},
    )
    run_benchmark(parse_config(base), progress=False, render=False)
    changed = {**base, "methods": [{"name": "toy-means", "config": {"spread": 0.2}}]}
    summary = run_benchmark(parse_config(changed), progress=False, render=False)
    assert len(summary.ran) == 1  # a changed method config is a different cell
    df = ResultsStore(tmp_path).read_results()
    assert df["cell_key"].nunique() == 1 and '"spread": 0.2' in df["method_config"].iloc[0]
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2
    assert run_benchmark(parse_config(base), progress=False, render=False).ran == []  # the cache is reused


def test_table_and_plot_commands_rerender_from_stored_results(grid, capsys, tmp_path):
    _, _, out = grid
    assert main(["table", str(out), "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"$\pm$" in tex and r"\textbf{" in tex and r"$\varepsilon=10$" in tex
    assert main(["table", str(out), "--format", "csv"]) == 0
    csv = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out), index_col=0)
    # methods × (metric, ε, {mean, std, n_seeds, same_space_as_training}), + whether tuned on the reported data
    # per (metric, ε): mean, std, n_seeds, same-space flag; one tuning column; ε spent per ε; accountant; notes
    assert csv.shape == (2, 3 * 2 * 4 + 1 + 2 + 2) and "tuned on reported data" in csv.columns
    assert {"eps=1 spent", "eps=10 spent", "accountant", "notes"} <= set(csv.columns)
    assert main(["plot", str(out), "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "metrics_vs_epsilon.png").stat().st_size > 0
    assert (tmp_path / "samples_digits.png").stat().st_size > 0
    assert main(["table", str(tmp_path / "nowhere")]) == 2


def test_failing_cells_are_recorded_and_the_rest_still_run(tmp_path, capsys):
    config = runner_toy.tiny_config(
        tmp_path / "out",
        methods=[
            {"name": "toy-means", "config": {"fail_seed": 1}},
            {"name": "toy-global", "config": {"overspend": True}},
        ],
        epsilons=[1],
        evaluation={"metrics": ["accuracy"], "n_samples": 60, "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5}}},
    )
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    # A private cell's error has its figures scrubbed (even the public seed): the message could print private ones.
    assert "digits/toy-means/eps=1/seed=1: RuntimeError: toy failure for seed #" in err
    assert "digits/toy-global/eps=1/seed=0: PrivacyCheckError" in err
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    failed = df[df["status"] == "failed"]
    assert len(failed) == 3 and failed["metric"].isna().all() and failed["error"].notna().all()
    ok = df[df["status"] == "ok"]
    assert set(ok["method"]) == {"toy-means"} and set(ok["seed"]) == {0} and len(ok) == 3
    # the overspent cell reports what it really spent, above its target
    over = failed[failed["method"] == "toy-global"]
    assert (over["spent_epsilon"] > 1.0).all()
    # failed cells are retried on the next run (and fail again); finished ones are not
    rerun = run_benchmark(parse_config(config), progress=False, render=False)
    assert len(rerun.skipped) == 1 and len(rerun.ran) == 3 and len(rerun.failed) == 3


def test_parallel_jobs_write_one_complete_store(tmp_path):
    config = parse_config(
        runner_toy.tiny_config(
            tmp_path / "out",
            epsilons=[float("inf")],  # non-private: each worker's peak memory is recorded (private rows withhold it)
            seeds=[0],
            evaluation={"metrics": ["accuracy"], "n_samples": 60, "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5}}},
        )
    )
    summary = run_benchmark(config, jobs=2, progress=False, render=False)
    assert summary.failed == [] and len(summary.ran) == 2
    df = ResultsStore(tmp_path / "out").read_results()
    assert len(df) == 2 * 3 and df["cell_key"].nunique() == 2
    assert df["peak_memory_mb"].notna().all()
    assert set(df["torch_threads"]) == {threads_per_job(2)}  # the cores split between the two workers
    assert not df.duplicated(["cell_key", "metric"]).any()
    assert not [p for p in os.listdir(tmp_path / "out" / "cells") if p.endswith(".tmp")]


def test_unconditional_methods_get_no_downstream_accuracy(tmp_path):
    config = parse_config(
        runner_toy.tiny_config(
            tmp_path, methods=[{"name": "toy-unconditional"}], epsilons=[1], seeds=[0],
            evaluation={"metrics": ["accuracy"], "n_samples": 60},
        )
    )
    summary = run_benchmark(config, progress=False, render=False)
    assert summary.failed == []
    df = ResultsStore(tmp_path).read_results()
    assert len(df) == 3 and df["value"].isna().all()
    assert df["missing_reason"].str.contains("unlabelled").all()
