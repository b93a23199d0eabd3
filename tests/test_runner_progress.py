"""The run's progress view and warnings: bars on a terminal, plain lines in a log, each warning once."""

from __future__ import annotations

import io
import warnings

from dpgen_bench.runner.progress import CellProgress, one_line_warnings


def test_a_non_interactive_log_gets_one_plain_line_per_cell_with_elapsed_and_eta():
    out = io.StringIO()
    view = CellProgress(3, interactive=False, stream=out)
    assert not view.cell_bars  # the cells' own bars stay off in a log
    for i, status in enumerate(["ok", "failed", "ok"]):
        view.start(f"cell{i}")
        view.finish(f"cell{i}", {"status": status, "error": "boom" if status == "failed" else None,
                                 "cell": {"epsilon": float("inf")}})
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].startswith("[2/3] cell1: failed (boom)")
    assert all("elapsed" in line and "ETA" in line for line in lines)
    assert "\r" not in out.getvalue() and "\x1b[" not in out.getvalue()


def test_log_lines_stop_timing_once_a_private_cell_has_finished():
    # A private cell's duration depends on the private n and Poisson batch sizes: no line may time it.
    out = io.StringIO()
    view = CellProgress(3, interactive=False, stream=out)
    for i, eps in enumerate([float("inf"), 1.0, float("inf")]):
        view.finish(f"cell{i}", {"status": "ok", "cell": {"epsilon": eps}})
    lines = out.getvalue().splitlines()
    assert "elapsed" in lines[0]
    assert all("elapsed" not in line and "ETA" not in line for line in lines[1:])


def test_a_terminal_gets_a_cell_bar_and_lets_the_cell_draw_beneath_it():
    out = io.StringIO()
    view = CellProgress(2, interactive=True, stream=out)
    assert view.cell_bars
    view.finish("a", {"status": "ok"})
    view.close()
    assert "cells" in out.getvalue() and "[1/2]" not in out.getvalue()


def test_progress_off_prints_nothing():
    out = io.StringIO()
    view = CellProgress(2, enabled=False, stream=out)
    view.finish("a", {"status": "ok"})
    view.close()
    assert out.getvalue() == ""


def test_each_distinct_warning_is_shown_once_as_one_line():
    out = io.StringIO()
    with warnings.catch_warnings():
        one_line_warnings(out)
        for _ in range(8):
            warnings.warn("evaluated in its training space\nsecond line", UserWarning)
        warnings.warn("another", RuntimeWarning)
    assert out.getvalue().splitlines() == [
        "warning: UserWarning: evaluated in its training space",
        "warning: RuntimeWarning: another",
    ]


def test_the_log_lines_count_running_and_failed_cells():
    out = io.StringIO()
    view = CellProgress(3, interactive=False, stream=out)
    for name in ("a", "b", "c"):  # an out-of-process executor submits every cell before any finishes
        view.start(name)
    view.finish("b", {"status": "failed", "error": "worker died"})
    view.finish("a", {"status": "ok"})
    view.close()
    first, second = out.getvalue().splitlines()
    assert "running 2 · failed 1" in first and "running 1 · failed 1" in second
