"""SIGKILL mid-grid: results.csv stays parseable and duplicate-free; the rerun finishes only the missing cells."""

from __future__ import annotations

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
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import parse_config

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent


def _records(out: Path) -> list[Path]:
    return [p for p in (out / "cells").glob("*.json") if not p.name.startswith(".")] if (out / "cells").exists() else []


def test_killed_run_leaves_a_valid_store_and_the_rerun_completes_only_missing_cells(tmp_path):
    proc, out = _start_run(tmp_path, 1, [1, 2, 5, 10])
    config = yaml.safe_load((tmp_path / "bench.yaml").read_text())
    try:
        _wait_for_records(proc, out, 2)  # kill after two of eight cells, while the third is running
        time.sleep(0.3)  # land somewhere inside the next cell
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = len(_records(out))
    assert 2 <= done < 8, f"the kill must land mid-grid, {done} of 8 cells had finished"

    df = pd.read_csv(out / "results.csv")  # parseable; rows only for finished cells, none duplicated
    assert not df.duplicated(["cell_key", "metric"]).any()
    assert df["cell_key"].nunique() <= done and set(df["status"]) <= {"ok"}

    summary = run_benchmark(parse_config(config), progress=False, render=False)
    assert len(summary.skipped) == done and len(summary.ran) == 8 - done and not summary.failed
    final = pd.read_csv(out / "results.csv")
    assert final["cell_key"].nunique() == 8 and len(final) == 8 * 3
    assert not final.duplicated(["cell_key", "metric"]).any()


def _start_run(tmp_path: Path, jobs: int, cells_eps: list[float]) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "out"
    config = runner_toy.tiny_config(
        out,
        methods=[{"name": "toy-means"}],
        epsilons=cells_eps,
        seeds=[0, 1],
        evaluation={"metrics": ["accuracy"], "n_samples": 50, "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5}}},
    )
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    # Every cell of the run to be stopped takes ≥ 1.5 s (so a stop lands mid-grid); the test's own rerun of the
    # same cells does not sleep (the pause is not in the config, so the cell keys are the same).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
           runner_toy.SLEEP: "1.5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dpgen_bench", "run", str(path), "--no-progress", "--jobs", str(jobs)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # A run is Ctrl-C-able even when the test suite itself was started in the background (`cmd &` in a
        # script), which makes the shell ignore SIGINT for it and every child it spawns.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return proc, out


def _wait_for_records(proc: subprocess.Popen, out: Path, n: int) -> None:
    deadline = time.monotonic() + 240
    while len(_records(out)) < n:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_promptly_with_one_line_and_a_valid_store(tmp_path, jobs):
    proc, out = _start_run(tmp_path, jobs, [1, 2, 5, 10])  # 8 cells of ≥ 1.5 s each
    try:
        _wait_for_records(proc, out, 1)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        proc.wait(timeout=60)
        stopped_after = time.monotonic() - t0
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == 130, err[-2000:]
    assert stopped_after < 15, f"took {stopped_after:.1f} s to stop"
    assert "Traceback" not in err
    done = len(_records(out))
    assert "interrupted; " in err and "rerun to continue" in err
    assert done < 8, "queued cells must not be started after Ctrl-C"
    df = pd.read_csv(out / "results.csv")  # every finished cell is in results.csv, nothing else
    assert df["cell_key"].nunique() == done and len(df) == 3 * done
    summary = run_benchmark(parse_config(yaml.safe_load((tmp_path / "bench.yaml").read_text())), progress=False,
                            render=False)
    assert len(summary.skipped) == done and len(summary.ran) == 8 - done and not summary.failed


def test_sigkill_of_a_jobs_parent_takes_its_workers_with_it(tmp_path):
    proc, out = _start_run(tmp_path, 2, [1, 2, 5, 10])
    try:
        _wait_for_records(proc, out, 1)
        workers = [pid for pid in _children(proc.pid) if "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) >= 2, "expected the worker processes to be running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def test_a_second_run_on_the_same_output_directory_is_refused_naming_the_holder(tmp_path, capsys):
    proc, out = _start_run(tmp_path, 1, [1, 2, 5, 10])
    try:
        _wait_for_records(proc, out, 1)
        assert main(["run", str(tmp_path / "bench.yaml"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"in use by another run (pid {proc.pid}" in err
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    # the killed run's lock is stale now: the next run takes it over and finishes the grid
    assert (out / ".lock").exists()
    summary = run_benchmark(parse_config(yaml.safe_load((tmp_path / "bench.yaml").read_text())), progress=False,
                            render=False)
    assert not summary.failed and len(summary.skipped) + len(summary.ran) == 8
    assert not (out / ".lock").exists()


def test_a_run_with_nothing_to_do_rewrites_no_provenance(tmp_path):
    config = parse_config(runner_toy.tiny_config(tmp_path / "out", epsilons=[1], seeds=[0], methods=[{"name": "toy-means"}],
                                                 evaluation={"metrics": ["fd-digitcnn"], "n_samples": 20}))
    run_benchmark(config, progress=False, render=False)
    env = tmp_path / "out" / "environment.json"
    before = (env.read_text(), env.stat().st_mtime_ns)
    summary = run_benchmark(config, progress=False, render=False)
    assert len(summary.skipped) == 1 and (env.read_text(), env.stat().st_mtime_ns) == before
