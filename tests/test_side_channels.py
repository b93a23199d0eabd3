"""No side channels in a private cell's row, error or log: nothing in them may change with the actual (private)
dataset size.

The same private cell is run on two private datasets of the same declared size that differ by one example
(add/remove neighbours, so every figure the row carries must be a function of public quantities or a noised
release); every column of the rows except the metric results must come out identical, and so must the run's
log lines, a failed cell's error and its ``error.txt``. ε = ∞ cells keep their time, memory and full errors
(nothing is private there)."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch

import runner_toy  # noqa: F401  (registers the toy methods)
from dpgen_bench.data import DATASETS, DatasetInfo, DatasetSpec, ImageDataset, register_dataset
from dpgen_bench.jobs.notices import one_line_warnings
from dpgen_bench.jobs.private_text import UNSCRUBBED_ENV, UNSCRUBBED_MARK
from dpgen_bench.registry import register_method, unregister_method
from dpgen_bench.runner import execute
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import parse_config
from dpgen_bench.runner.store import ResultsStore

NAME = "side-channel-toy"
INFO = DatasetInfo(NAME, 1, 8, 8, 2, ("dim", "bright"))
METRIC_COLUMNS = {"metric", "value", "direction", "missing_reason", "n_fake", "extractor",
                  "same_space_as_training", "metric_details"}
"""The released metric results (functions of the noised model and the evaluation data): allowed to differ. Not
``n_real``: the test split is drawn per class from the private data, so its actual length follows n."""
SIZE = {"n": 40}
DECLARED_TEST = 8
"""round(0.2 · 40), the declared test size of the toy dataset (declared size 40)."""


def _load() -> ImageDataset:
    # Class 0 gets the extra examples: n = 40, 41 → 4 test examples in class 0; n = 42 → 4, n = 43 → 5
    # (round(0.2 · 23)), so the second neighbouring pair also changes the actual test length.
    n = SIZE["n"]
    labels = torch.cat([torch.zeros(20 + (n - 40), dtype=torch.long), torch.ones(20, dtype=torch.long)])
    noise = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(n))
    return ImageDataset(images=(0.5 * noise + 0.5 * labels.view(-1, 1, 1, 1)).clamp(0, 1), labels=labels, info=INFO)


def _train_length(n: int) -> int:
    return n - (round(0.2 * (20 + n - 40)) + 4)


class LeakyFailure(runner_toy.ToyMeans):
    """Fails the way a shape mismatch does: its warning and its error print the actual train length."""

    def fit(self, train, budget, ledger) -> None:
        warnings.warn(f"input of torch.Size([{len(train)}, 1, 8, 8]) rows", UserWarning)
        raise ValueError(f"shape mismatch: got {tuple(train.images.shape)}, expected ({len(train) + 1}, 1, 8, 8)")


@pytest.fixture
def toy_dataset():
    register_dataset(DatasetSpec(info=INFO, size=40, family="side-channel-toy", description="40 to 43 squares",
                                 load=_load))
    yield NAME
    DATASETS.unregister(NAME)
    execute._splits.cache_clear()


@pytest.fixture
def leaky_method():
    register_method("toy-leaky-failure")(LeakyFailure)
    yield "toy-leaky-failure"
    unregister_method("toy-leaky-failure")


def _rows(tmp_path, n: int, epsilon: float, method: str = "toy-means", capfd=None):
    SIZE["n"] = n
    execute._splits.cache_clear()
    out = tmp_path / f"n{n}-eps{epsilon}-{method}"
    config = {"dataset": NAME, "methods": [{"name": method}], "epsilons": [epsilon], "delta": 1e-3,
              "seeds": [0], "evaluation": {"metrics": ["accuracy"], "n_samples": 20,
                                           "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5, "logreg_max_iter": 20}}},
              "output_dir": str(out), "plugins": ["runner_toy"]}
    if capfd is not None:
        capfd.readouterr()
    run_benchmark(parse_config(config), progress=capfd is not None, render=False)
    frame = ResultsStore(out).frame()
    if capfd is None:
        return frame
    captured = capfd.readouterr()
    return frame, (captured.out + captured.err).replace(str(out), "<out>")


def _same(left: list, right: list) -> list[bool]:
    return [x == y or (x is None and y is None) or (isinstance(x, float) and isinstance(y, float)
                                                     and math.isnan(x) and math.isnan(y)) for x, y in zip(left, right)]


@pytest.mark.parametrize("n", [40, 42], ids=["train-length-differs", "test-length-differs"])
def test_a_private_cells_row_and_log_lines_carry_nothing_that_changes_with_the_actual_n(toy_dataset, tmp_path,
                                                                                       capfd, n):
    (a, log_a), (b, log_b) = _rows(tmp_path, n, 1.0, capfd=capfd), _rows(tmp_path, n + 1, 1.0, capfd=capfd)
    assert (a["status"] == "ok").all() and (b["status"] == "ok").all()
    for col in sorted(set(a.columns) - METRIC_COLUMNS):
        left, right = a[col].tolist(), b[col].tolist()
        assert all(_same(left, right)), f"column {col!r} of a private cell differs between n={n} and n={n + 1}: {left} vs {right}"
    assert log_a == log_b, f"the run's log lines differ between n={n} and n={n + 1}"
    assert set(a["n_real"]) == {DECLARED_TEST}  # the declared test size, whatever the actual one
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


def _error_file(tmp_path, frame) -> str:
    (key,) = set(frame["cell_key"])
    return next(tmp_path.glob(f"*/cells/{key}/error.txt")).read_text()


def test_a_failed_private_cells_error_and_traceback_carry_no_figure_of_the_actual_n(toy_dataset, leaky_method,
                                                                                    tmp_path, capfd):
    runs = []
    for n in (40, 41):
        with warnings.catch_warnings():  # the warning lines every run's processes show (restored afterwards)
            one_line_warnings()
            runs.append(_rows(tmp_path, n, 1.0, leaky_method, capfd=capfd))
    (a, log_a), (b, log_b) = runs
    assert set(a["status"]) == set(b["status"]) == {"failed"}
    message = "ValueError: shape mismatch: got (#, #, #, #), expected (#, #, #, #)"
    assert a["error"].tolist() == b["error"].tolist() == [message]
    text_a, text_b = _error_file(tmp_path, a), _error_file(tmp_path, b)
    assert text_a == text_b and text_a.splitlines()[-1] == message
    assert log_a == log_b and "input of torch.Size([#, #, #, #]) rows" in log_a
    for n, frame, text, log in ((40, a, text_a, log_a), (41, b, text_b, log_b)):
        figure = re.compile(rf"\b{_train_length(n)}\b")
        for where, what in (("row", frame["error"].iloc[0]), ("error.txt", text), ("log", log)):
            assert not figure.search(what), f"the {where} of a private cell prints its train length: {what}"


@pytest.mark.filterwarnings("ignore:input of torch.Size")
def test_a_failed_non_private_cell_keeps_its_full_error(toy_dataset, leaky_method, tmp_path):
    frame = _rows(tmp_path, 40, math.inf, leaky_method)
    assert f"got ({_train_length(40)}, 1, 8, 8)" in frame["error"].iloc[0]
    assert f"got ({_train_length(40)}, 1, 8, 8)" in _error_file(tmp_path, frame)


@pytest.mark.filterwarnings("ignore:input of torch.Size")
def test_the_opt_in_keeps_a_private_cells_full_error_and_marks_the_row(toy_dataset, leaky_method, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv(UNSCRUBBED_ENV, "1")
    frame = _rows(tmp_path, 40, 1.0, leaky_method)
    error = frame["error"].iloc[0]
    assert error.startswith(UNSCRUBBED_MARK) and f"got ({_train_length(40)}, 1, 8, 8)" in error
    assert _error_file(tmp_path, frame).startswith(UNSCRUBBED_MARK.strip())
