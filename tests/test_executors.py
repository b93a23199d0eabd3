"""Executors (docs/executors.md): the same toy grid on a real local Ray and on submitit's local back-end gives the
serial run's cells and values; a worker killed mid-cell is retried; a killed driver's rerun completes only the
missing cells; the driver alone writes the store."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import runner_toy
from dpgen_bench.cli import main
from dpgen_bench.executors import CellRun, RaySpec, make_executor, override_executor
from dpgen_bench.executors.ray_executor import check_reachable
from dpgen_bench.runner.audits import run_audits
from dpgen_bench.runner.benchmark import prepare, run_benchmark
from dpgen_bench.runner.config import ConfigFileError, parse_config
from dpgen_bench.runner.store import ResultsStore

pytestmark = pytest.mark.slow

TESTS_DIR = str(Path(__file__).resolve().parent)
CHEAP_EVAL = {"metrics": ["accuracy"], "n_samples": 50, "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5,
                                                                    "logreg_max_iter": 50}}}
# Columns that must not depend on where a cell ran. Values at ε = ∞ are deterministic (no release noise); at a
# finite ε the release noise is fresh OS entropy by design, so only the calibrated spend is compared there.
SAME = ["cell_key", "status", "dataset", "method", "method_config_hash", "target_epsilon", "spent_epsilon", "delta",
        "seed", "split_seed", "n_train_nominal", "metric", "direction", "n_real", "n_fake", "torch_threads"]


def _config(out: Path, executor: dict, **changes):
    """The 2 methods × ε {10, ∞} × 2 seeds toy grid; one torch thread per cell everywhere (same thread count,
    same arithmetic); workers find ``runner_toy`` through the executor's PYTHONPATH."""
    grid = dict(epsilons=[10, math.inf], evaluation=CHEAP_EVAL)
    grid.update(changes)
    env = {"PYTHONPATH": TESTS_DIR, **executor.pop("env", {})}
    return parse_config(runner_toy.tiny_config(out, executor={"threads_per_cell": 1, "env": env, **executor}, **grid))


def _frame(out: Path) -> pd.DataFrame:
    return ResultsStore(out).frame().sort_values(["cell_key", "metric"]).reset_index(drop=True)


def _assert_same_results(got: pd.DataFrame, want: pd.DataFrame, cells: int = 8) -> None:
    assert len(got) == len(want) == cells * 3 and set(got["status"]) == {"ok"}
    pd.testing.assert_frame_equal(got[SAME], want[SAME], check_exact=True)
    noiseless = want["target_epsilon"] == math.inf
    assert got.loc[noiseless, "value"].tolist() == want.loc[noiseless, "value"].tolist()  # exact floats


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("serial")
    summary = run_benchmark(_config(out, {"name": "local"}), progress=False, render=False)
    assert len(summary.ran) == 8 and not summary.failed
    return _frame(out)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for every test here (its start-up costs seconds); the executor joins it, leaves it open."""
    ray = pytest.importorskip("ray")  # the [test] extra installs it: this never skips in CI
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_runs_the_grid_with_the_serial_runs_cells_and_values(serial, ray_session, tmp_path):
    summary = run_benchmark(_config(tmp_path, {"name": "ray"}), progress=False, render=False)
    assert len(summary.ran) == 8 and not summary.failed
    _assert_same_results(_frame(tmp_path), serial)
    for key in _frame(tmp_path)["cell_key"].unique():  # each worker's output is kept in its cell's folder
        assert "--- attempt on" in (tmp_path / "cells" / key / "log.txt").read_text()


def test_submitit_runs_the_grid_with_the_serial_runs_cells_and_values(serial, tmp_path):
    # Seed 0's half of the grid: every submitit job is a fresh interpreter (seconds of imports each).
    config = _config(tmp_path, {"name": "slurm", "cluster": "local", "poll_s": 0.2}, seeds=[0])
    summary = run_benchmark(config, progress=False, render=False)
    assert len(summary.ran) == 4 and not summary.failed
    want = serial[serial["seed"] == 0].reset_index(drop=True)
    _assert_same_results(_frame(tmp_path), want, cells=4)


def test_a_ray_worker_killed_mid_cell_is_retried_and_the_cell_finishes(ray_session, tmp_path):
    _kill_one_worker_and_check_the_retry("ray", tmp_path)


def test_a_submitit_job_killed_mid_cell_is_retried_and_the_cell_finishes(tmp_path):
    _kill_one_worker_and_check_the_retry("slurm", tmp_path)


def _kill_one_worker_and_check_the_retry(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    executor = {"name": name, "max_retries": 1, "env": {runner_toy.DIE_ONCE: str(marker)}}
    seeds = [0, 1]
    if name == "slurm":  # every submitit job is a fresh interpreter (seconds of imports): one cell, two jobs
        executor.update(cluster="local", poll_s=0.2, result_wait_s=1.0)
        seeds = [0]
    out = tmp_path / "out"
    config = _config(out, executor, methods=[{"name": "toy-means"}], epsilons=[math.inf], seeds=seeds)
    summary = run_benchmark(config, progress=False, render=False)
    assert marker.exists(), "no worker was killed"
    assert len(summary.ran) == len(seeds) and not summary.failed
    df = pd.read_csv(out / "results.csv")
    assert df["cell_key"].nunique() == len(seeds) and not df.duplicated(["cell_key", "metric"]).any()
    logs = [(out / "cells" / key / "log.txt").read_text().count("--- attempt on") for key in df["cell_key"].unique()]
    assert sorted(logs) == [1, 2][-len(seeds):]  # the killed cell ran twice, the other once


def test_a_cell_whose_worker_dies_beyond_its_retries_is_recorded_failed_with_the_reason(ray_session, tmp_path):
    out = tmp_path / "out"
    changes = dict(methods=[{"name": "toy-means"}], epsilons=[math.inf])
    executor = {"name": "ray", "max_retries": 0, "env": {runner_toy.DIE_ONCE: str(tmp_path / "killed")}}
    summary = run_benchmark(_config(out, executor, **changes), progress=False, render=False)
    assert len(summary.failed) == 1 and "Ray worker died 1 time(s)" in summary.failed[0][1]
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["status"].unique()) == ["failed", "ok"] and df["error"].str.contains("died").any()
    rerun = run_benchmark(_config(out, {"name": "ray"}, **changes), progress=False, render=False)
    assert len(rerun.skipped) == 1 and len(rerun.ran) == 1 and not rerun.failed


def test_a_killed_ray_driver_leaves_a_valid_store_and_the_rerun_completes_only_missing_cells(ray_session, tmp_path):
    out = tmp_path / "out"
    changes = dict(methods=[{"name": "toy-means"}])  # 4 cells: ε {10, ∞} × 2 seeds
    config = _config(out, {"name": "ray"}, **changes)
    slowed = _config(out, {"name": "ray", "env": {runner_toy.SLEEP: "1.0"}}, **changes)  # same cell keys
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(slowed.model_dump(mode="json")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")])}
    address = ray_session.get_runtime_context().gcs_address  # the driver joins this session's cluster
    proc = subprocess.Popen([sys.executable, "-m", "dpgen_bench", "run", str(path), "--no-progress",
                             "--address", address], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # A fresh interpreter imports torch and joins Ray before its first cell: minutes on 2 loaded cores.
        deadline = time.monotonic() + 300
        while len(ResultsStore(out).records()) < 1:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    done = len(ResultsStore(out).records())
    assert 1 <= done < 4, f"the kill must land mid-grid, {done} of 4 cells had finished"
    df = pd.read_csv(out / "results.csv")  # parseable; rows only for finished cells, none duplicated
    assert not df.duplicated(["cell_key", "metric"]).any() and df["cell_key"].nunique() <= done

    summary = run_benchmark(config, progress=False, render=False)
    assert len(summary.skipped) == done and len(summary.ran) == 4 - done and not summary.failed
    final = pd.read_csv(out / "results.csv")
    assert final["cell_key"].nunique() == 4 and len(final) == 4 * 3
    assert not final.duplicated(["cell_key", "metric"]).any()


def test_a_resource_request_no_node_can_meet_is_refused_instead_of_waiting_forever(ray_session):
    with pytest.raises(ConfigFileError, match="each cell asks for {'GPU': 1.0}"):
        make_executor(RaySpec(num_gpus=1)).open()  # this session has no GPU


def test_a_worker_only_writes_its_cell_folder_and_returns_the_record(tmp_path):
    config = _config(tmp_path, {"name": "local"}, methods=[{"name": "toy-means"}], epsilons=[math.inf], seeds=[0])
    (cell,), store, _ = prepare(config)
    record = CellRun(root=str(tmp_path), device="cpu", threads=1, plugins=("runner_toy",))(cell)
    assert record["status"] == "ok" and record["key"] == cell.key
    written = {p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*") if p.is_file()}
    assert all(part == ("cells", cell.key) or part[0] == "cache" for part in written), written
    assert not store.record_path(cell.key).exists() and not store.csv_path.exists()  # the driver's job
    assert (store.cells_dir / cell.key / "log.txt").read_text().startswith("--- attempt on")


def test_a_missing_extra_is_refused_naming_the_install_command(tmp_path, monkeypatch):
    config = _config(tmp_path, {"name": "ray"})
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    with pytest.raises(ConfigFileError, match=r"pip install 'dpgen-bench\[ray\]'"):
        make_executor(config.executor).check(config)
    monkeypatch.setitem(sys.modules, "submitit", None)
    slurm = _config(tmp_path, {"name": "slurm"})
    with pytest.raises(ConfigFileError, match=r"pip install 'dpgen-bench\[slurm\]'"):
        make_executor(slurm.executor).check(slurm)


def test_executor_settings_are_strict_and_the_command_line_overrides_them(tmp_path, capsys, monkeypatch):
    with pytest.raises(ConfigFileError, match="partition: unknown key"):
        _config(tmp_path, {"name": "ray", "partition": "gpu"})
    with pytest.raises(ConfigFileError, match="unknown executor 'spark'.*local, ray, slurm"):
        _config(tmp_path, {"name": "spark"})
    no_slurm = _config(tmp_path, {"name": "slurm"})
    with monkeypatch.context() as m, pytest.raises(ConfigFileError, match="sbatch"):  # refused, never run locally
        m.setenv("PATH", str(tmp_path))  # no sbatch anywhere on it
        make_executor(no_slurm.executor).check(no_slurm)
    cuda = _config(tmp_path, {"name": "ray"}, device="cuda")
    with pytest.raises(ConfigFileError, match="executor.num_gpus"):
        make_executor(cuda.executor).check(cuda)
    ray = RaySpec(num_gpus=1, address="auto")
    assert override_executor(ray, name="ray", address="h:6379") == RaySpec(num_gpus=1, address="h:6379")
    assert override_executor(ray, name="local", jobs=3).model_dump()["jobs"] == 3
    with pytest.raises(ValueError, match="--jobs sets the local executor"):
        override_executor(ray, jobs=2)
    with pytest.raises(ConfigFileError, match="cannot reach a Ray cluster at '127.0.0.1:1'"):
        check_reachable("127.0.0.1:1")  # ray.init would retry for minutes
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(runner_toy.tiny_config(tmp_path / "out")))
    assert main(["run", str(path), "--address", "h:1", "--dry-run"]) == 2
    assert "--address is the Ray cluster's address" in capsys.readouterr().err


AUDIT_SAME = ["audit_key", "status", "method", "variant", "audit_kind", "target_epsilon", "claimed_epsilon", "trials",
              "examples", "delta"]
"""Columns of an audit row that must not depend on where it ran (the bounds come from fresh OS-entropy noise)."""


def _audit_config(out: Path, executor: dict):
    """Two hook audits of a one-step DP-MERF at ε = 1: the correct method and its tenth-noise variant."""
    audit = {"enabled": True, "trials": 40, "variants": ["tenth-noise"], "methods": {"dp-merf": {"examples": 50}},
             "generic": None}
    return _config(out, executor, methods=[{"name": "dp-merf", "config": {"n_features": 20, "steps": 1}}],
                   epsilons=[1], seeds=[0], audit=audit)


def _audit_frame(executor: dict, out: Path) -> pd.DataFrame:
    summary = run_audits(_audit_config(out, executor), progress=False)
    assert summary.ok and len(summary.ran) == 2, summary.failed
    return pd.read_csv(out / "audit.csv").sort_values("audit_key").reset_index(drop=True)[AUDIT_SAME]


def test_audits_are_jobs_the_jobs_2_and_ray_executors_give_the_serial_audits_rows(ray_session, tmp_path):
    serial = _audit_frame({"name": "local"}, tmp_path / "serial")
    assert set(serial["variant"]) == {"correct", "tenth-noise"} and (serial["claimed_epsilon"] > 0).all()
    for name, executor in [("jobs2", {"name": "local", "jobs": 2}), ("ray", {"name": "ray"})]:
        pd.testing.assert_frame_equal(_audit_frame(executor, tmp_path / name), serial, check_exact=True)
    again = run_audits(_audit_config(tmp_path / "ray", {"name": "ray"}), progress=False)
    assert again.ran == [] and len(again.skipped) == 2  # resumable: the store knows the finished audits
