"""The run's progress view and warnings: bars on a terminal, plain lines in a log, each warning once."""

from __future__ import annotations

import io
import sys
import time
import warnings

from tqdm.auto import tqdm

from dpgen_bench.metrics import SameFeatureSpaceWarning
from dpgen_bench.runner.progress import CellProgress, one_line_warnings, warnings_from


def test_a_non_interactive_log_gets_one_plain_line_per_cell_with_elapsed_and_eta():
    out = io.StringIO()
    view = CellProgress(3, interactive=False, stream=out, heartbeat_s=None)
    assert not view.cell_bars  # without a heartbeat to read them, the cells' own bars stay off in a log
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
    view = CellProgress(3, interactive=False, stream=out, heartbeat_s=None)
    for name in ("a", "b", "c"):  # an out-of-process executor submits every cell before any finishes
        view.start(name)
    view.finish("b", {"status": "failed", "error": "worker died"})
    view.finish("a", {"status": "ok"})
    view.close()
    first, second = out.getvalue().splitlines()
    assert "running 2 · failed 1" in first and "running 1 · failed 1" in second


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_heartbeat_names_the_running_cell_its_time_the_step_of_its_bar_and_the_time_left():
    out, clock = io.StringIO(), FakeClock()
    view = CellProgress(3, interactive=False, stream=out, heartbeat_s=3600, clock=clock)  # beats driven by hand
    try:
        view.start("a")
        clock.now += 100
        view.finish("a", {"status": "ok", "cell": {"epsilon": float("inf")}})  # non-private: times may be shown
        view.start("mnist-5k/DP-MEPF/eps=inf/seed=0")
        clock.now += 75
        assert view.cell_bars  # live, so the heartbeat can read them ...
        bar = tqdm(total=1000, desc="DP-MEPF generator")  # ... drawn into a sink, not into the log
        bar.update(400)
        view.beat()
        bar.close()
    finally:
        view.close()
    beat = out.getvalue().splitlines()[-1]
    assert beat.startswith("… mnist-5k/DP-MEPF/eps=inf/seed=0: running 1:15 · step 400/1000 (DP-MEPF generator), ~")
    assert "left in it · done 1/3 · elapsed 2:55 · ETA 5:50" in beat, beat
    assert "\r" not in out.getvalue() and "\x1b[" not in out.getvalue()


def test_once_a_private_cell_has_started_heartbeats_show_its_step_but_no_time():
    out, clock = io.StringIO(), FakeClock()
    view = CellProgress(2, interactive=False, stream=out, heartbeat_s=3600, clock=clock)
    try:
        view.start("mnist-5k/DP-MEPF/eps=1/seed=0", private=True)
        clock.now += 75
        bar = tqdm(total=1000, desc="DP-MEPF generator")
        bar.update(400)
        view.beat()
        bar.close()
        view.finish("mnist-5k/DP-MEPF/eps=1/seed=0", {"status": "ok", "cell": {"epsilon": 1.0}})
    finally:
        view.close()
    beat, done = out.getvalue().splitlines()[-2:]
    assert "step 400/1000" in beat and "(private: no times shown)" in beat, beat
    assert not any(word in beat + done for word in ("1:15", "left in it", "elapsed", "ETA")), (beat, done)


def test_in_a_log_cell_bars_never_reach_stderr_but_other_writes_do_and_stderr_is_given_back():
    err = io.StringIO()
    real, sys.stderr = sys.stderr, err
    try:
        view = CellProgress(2, interactive=False, stream=io.StringIO(), heartbeat_s=3600)
        for _ in tqdm(range(5), desc="a bar", mininterval=0):
            pass
        print("a warning line", file=sys.stderr)
        view.close()
        assert sys.stderr is err
    finally:
        sys.stderr = real
    assert err.getvalue() == "a warning line\n"


def test_a_log_is_never_silent_longer_than_the_heartbeat_interval():
    out = io.StringIO()
    view = CellProgress(2, interactive=False, stream=out, heartbeat_s=0.05)
    view.start("slow-cell")
    time.sleep(0.4)
    view.close()
    beats = [line for line in out.getvalue().splitlines() if line.startswith("… slow-cell: running")]
    assert len(beats) >= 3, out.getvalue()
    count = len(out.getvalue().splitlines())
    time.sleep(0.15)
    assert len(out.getvalue().splitlines()) == count  # closed: the heartbeat has stopped


def test_warnings_raised_inside_a_cell_name_it_once_per_cell():
    out = io.StringIO()
    with warnings.catch_warnings():
        one_line_warnings(out)
        for eps in ("1", "10"):
            with warnings_from(f"mnist-5k/DP-MEPF/eps={eps}/seed=0"):
                for _ in range(2):
                    warnings.warn("FD-digitcnn is computed in the digitcnn feature space", SameFeatureSpaceWarning)
        warnings.warn("outside any cell", UserWarning)
    assert out.getvalue().splitlines() == [
        "warning: mnist-5k/DP-MEPF/eps=1/seed=0: SameFeatureSpaceWarning: FD-digitcnn is computed in the digitcnn feature space",
        "warning: mnist-5k/DP-MEPF/eps=10/seed=0: SameFeatureSpaceWarning: FD-digitcnn is computed in the digitcnn feature space",
        "warning: UserWarning: outside any cell",
    ]
