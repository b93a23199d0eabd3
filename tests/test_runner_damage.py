"""Damage to a results directory is detected: a finished cell is done only while its record reads and its
artefacts verify; plotting survives a junk image; `table` reads the records and says what is inconsistent."""

from __future__ import annotations

import pytest
import yaml

import runner_toy
from dpgen_bench.cli import main
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import parse_config
from dpgen_bench.runner.store import ResultsStore

pytestmark = pytest.mark.slow


@pytest.fixture
def finished(tmp_path):
    config = runner_toy.tiny_config(tmp_path / "out", epsilons=[1], seeds=[0, 1], methods=[{"name": "toy-means"}],
                                    evaluation={"metrics": ["accuracy"], "n_samples": 60,
                                                "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5}}})
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(config))
    summary = run_benchmark(parse_config(config), progress=False)
    assert len(summary.ran) == 2 and not summary.failed
    store = ResultsStore(tmp_path / "out")
    keys = sorted(r["key"] for r in store.records())
    return tmp_path, store, keys


@pytest.mark.parametrize("artefact", ["checkpoint/state.pt", "samples.npz"])
def test_a_deleted_artefact_makes_the_cell_damaged_and_the_rerun_recomputes_it(finished, capsys, artefact):
    tmp_path, store, (key, other) = finished
    (store.cells_dir / key / artefact).unlink()
    assert store.cell_state(key) == f"damaged: {artefact} is missing" and store.is_done(other)
    assert main(["run", str(tmp_path / "bench.yaml"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "was finished but is damaged" in captured.err and "1 run, 1 already finished" in captured.out
    assert store.is_done(key)


def test_a_truncated_cell_record_is_reported_and_recomputed(finished, capsys):
    tmp_path, store, (key, _) = finished
    path = store.record_path(key)
    path.write_text(path.read_text()[:100])
    assert main(["run", str(tmp_path / "bench.yaml"), "--no-progress"]) == 0
    assert "record does not read" in capsys.readouterr().err and store.is_done(key)


def test_a_junk_sample_grid_is_damage_and_does_not_crash_plotting(finished, capsys):
    tmp_path, store, keys = finished
    for key in keys:
        (store.cells_dir / key / "samples.png").write_bytes(b"not a png at all")
        assert store.cell_state(key).startswith("damaged: samples.png differs")
    assert main(["plot", str(tmp_path / "out")]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_table_on_a_damaged_results_csv_reads_the_records_and_says_so(finished, capsys, damage):
    tmp_path, store, _ = finished
    csv = store.csv_path
    text = csv.read_text()
    csv.write_text(text[: len(text) // 3] if damage == "truncate" else '"unterminated,\x00junk\n1,2,3,4\n')
    assert main(["table", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "warning: results.csv" in captured.err and "built from the cell records" in captured.err
    assert "acc-logreg" in captured.out and "Traceback" not in captured.err
    assert " ± " in captured.out  # both seeds are in it (mean ± std), not what the damaged CSV kept


def test_pruning_checkpoints_keeps_cells_finished_rows_unchanged_and_records_what_was_dropped(finished):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("prune_results", Path(__file__).parents[1] / "tools/prune_results.py")
    prune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prune)
    tmp_path, store, keys = finished
    rows_before = [store.load_record(k)["rows"] for k in keys]
    assert prune.prune_folder(tmp_path / "out") > 0
    for key, rows in zip(keys, rows_before):
        record = store.load_record(key)
        assert not (store.cells_dir / key / "checkpoint").exists()
        assert "checkpoint/state.pt" in record["pruned_artefacts"] and record["rows"] == rows
        assert store.cell_state(key) == "done"
    assert prune.prune_folder(tmp_path / "out") == 0  # idempotent
