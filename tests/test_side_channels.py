"""No side channels in a private cell's row: nothing in it may change with the actual (private) dataset size.

The same private cell is run on two private datasets of the same declared size that differ by one example
(add/remove neighbours, so every figure the row carries must be a function of public quantities or a noised
release); every column of the rows except the metric results must come out identical. ε = ∞ cells keep their
time and memory (nothing is private there)."""

from __future__ import annotations

import math

import pytest
import torch

import runner_toy  # noqa: F401  (registers the toy methods)
from dpgen_bench.data import DATASETS, DatasetInfo, DatasetSpec, ImageDataset, register_dataset
from dpgen_bench.runner import execute
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import parse_config
from dpgen_bench.runner.store import ResultsStore

NAME = "side-channel-toy"
INFO = DatasetInfo(NAME, 1, 8, 8, 2, ("dim", "bright"))
METRIC_COLUMNS = {"metric", "value", "direction", "missing_reason", "n_real", "n_fake", "extractor",
                  "same_space_as_training", "metric_details"}
"""The released metric results (functions of the noised model and the public test split): allowed to differ."""
SIZE = {"n": 40}


def _load() -> ImageDataset:
    # Class 0 gets the extra example; round(0.2·21) = round(0.2·20) = 4, so the test split keeps its size.
    n = SIZE["n"]
    labels = torch.cat([torch.zeros(20 + (n - 40), dtype=torch.long), torch.ones(20, dtype=torch.long)])
    noise = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(n))
    return ImageDataset(images=(0.5 * noise + 0.5 * labels.view(-1, 1, 1, 1)).clamp(0, 1), labels=labels, info=INFO)


@pytest.fixture
def toy_dataset():
    register_dataset(DatasetSpec(info=INFO, size=40, family="side-channel-toy", description="40 or 41 squares",
                                 load=_load))
    yield NAME
    DATASETS.unregister(NAME)
    execute._splits.cache_clear()


def _rows(tmp_path, n: int, epsilon: float):
    SIZE["n"] = n
    execute._splits.cache_clear()
    out = tmp_path / f"n{n}-eps{epsilon}"
    config = {"dataset": NAME, "methods": [{"name": "toy-means"}], "epsilons": [epsilon], "delta": 1e-3,
              "seeds": [0], "evaluation": {"metrics": ["accuracy"], "n_samples": 20,
                                           "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5, "logreg_max_iter": 20}}},
              "output_dir": str(out), "plugins": ["runner_toy"]}
    run_benchmark(parse_config(config), progress=False, render=False)
    return ResultsStore(out).frame()


def test_a_private_cells_row_carries_nothing_that_changes_with_the_actual_n(toy_dataset, tmp_path):
    a, b = _rows(tmp_path, 40, 1.0), _rows(tmp_path, 41, 1.0)
    assert (a["status"] == "ok").all() and (b["status"] == "ok").all()
    for col in sorted(set(a.columns) - METRIC_COLUMNS):
        left, right = a[col].tolist(), b[col].tolist()
        same = [x == y or (x is None and y is None) or (isinstance(x, float) and isinstance(y, float)
                                                        and math.isnan(x) and math.isnan(y)) for x, y in zip(left, right)]
        assert all(same), f"column {col!r} of a private cell differs between n=40 and n=41: {left} vs {right}"
    row = a.iloc[0]
    assert row["fit_time_s"] is None and row["peak_memory_mb"] is None and row["wall_time_s"] is None
    assert "private" in row["resources_missing_reason"]
    assert len(str(row["finished_at"])) == 10  # the day only: with the log's start time it would time the cell


def test_a_non_private_cell_keeps_its_time_and_memory(toy_dataset, tmp_path):
    row = _rows(tmp_path, 40, math.inf).iloc[0]
    assert row["fit_time_s"] > 0 and row["wall_time_s"] > 0 and row["peak_memory_mb"] > 0
    assert row["resources_missing_reason"] is None


def test_the_driver_tells_the_progress_view_that_a_private_cell_started(toy_dataset, tmp_path, monkeypatch):
    """Heartbeats stop timing once a private cell *starts* (before any finishes): the driver must say so."""
    from dpgen_bench.runner.progress import CellProgress

    started: dict[str, bool] = {}
    original = CellProgress.start

    def start(self, name: str, private: bool = False) -> None:
        started[name] = private
        original(self, name, private=private)

    monkeypatch.setattr(CellProgress, "start", start)
    _rows(tmp_path, 40, 1.0), _rows(tmp_path, 40, math.inf)
    assert started == {f"{NAME}/toy-means/eps=1/seed=0": True, f"{NAME}/toy-means/eps=inf/seed=0": False}
