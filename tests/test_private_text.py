"""What a private job may write as text (dpgen_bench.jobs.private_text): figures scrubbed, words and code kept."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from io import StringIO

import pytest

from dpgen_bench.jobs.base import Job
from dpgen_bench.jobs.notices import one_line_warnings, warnings_from
from dpgen_bench.jobs.private_text import UNSCRUBBED_ENV, UNSCRUBBED_MARK, exception_report, scrub_figures
from dpgen_bench.jobs.schema import RESULTS


@pytest.mark.parametrize("text, scrubbed", [
    ("mat1 and mat2 shapes cannot be multiplied (37x64 and 32x1)",
     "mat1 and mat2 shapes cannot be multiplied (#x# and #x#)"),
    ("expected torch.Size([37, 1, 28, 28]), got 36", "expected torch.Size([#, #, #, #]), got #"),
    ("loss is 0.6931 at lr 1e-4, object at 0x7f3a2c", "loss is # at lr #, object at #x#"),
    ("Conv2d weight of dtype float32 on cuda:0", "Conv2d weight of dtype float32 on cuda:#"),
    ("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 139.72 GiB total)",
     "CUDA out of memory. Tried to allocate # MiB (GPU #; # GiB total)"),
])
def test_every_figure_is_scrubbed_and_every_word_kept(text: str, scrubbed: str) -> None:
    assert scrub_figures(text) == scrubbed


def _raise_with(batch: int) -> BaseException:
    try:
        try:
            raise IndexError(f"index {batch} is out of bounds for dimension 0 with size {batch}")
        except IndexError as inner:
            raise RuntimeError(f"step failed on a batch of {batch}") from inner
    except RuntimeError as exc:
        return exc


def test_a_private_report_keeps_types_and_frames_and_scrubs_every_message_of_the_chain() -> None:
    error, report = exception_report(_raise_with(37), private=True)
    assert error == "RuntimeError: step failed on a batch of #"
    assert "37" not in report and "IndexError: index # is out of bounds" in report and "_raise_with" in report
    assert exception_report(_raise_with(38), private=True) == (error, report)


def test_a_non_private_report_is_the_full_traceback() -> None:
    error, report = exception_report(_raise_with(37), private=False)
    assert error == "RuntimeError: step failed on a batch of 37" and "size 37" in report


def test_the_opt_in_keeps_a_private_report_whole_and_marks_it(monkeypatch) -> None:
    monkeypatch.setenv(UNSCRUBBED_ENV, "1")
    error, report = exception_report(_raise_with(37), private=True)
    assert error == UNSCRUBBED_MARK + "RuntimeError: step failed on a batch of 37"
    assert report.startswith(UNSCRUBBED_MARK.strip()) and "size 37" in report


@dataclass(frozen=True)
class _Job(Job):
    epsilon: float
    table = RESULTS

    def key_data(self):
        return {"epsilon": self.epsilon}

    @property
    def name(self) -> str:
        return "toy"

    @property
    def private(self) -> bool:
        return self.epsilon != float("inf")

    def row_facts(self):
        return {}

    def run(self, root, device="cpu", progress=False):
        raise NotImplementedError


def test_a_private_job_whose_worker_died_records_no_figure_of_the_death_message() -> None:
    why = "Ray worker died: OutOfMemoryError: memory used was 120.5GB / 128GB when the task ran"
    assert _Job(1.0).failed_record(why)["error"] == scrub_figures(why)
    assert _Job(float("inf")).failed_record(why)["error"] == why


def test_a_private_cells_warning_lines_neither_print_nor_count_private_figures() -> None:
    stream = StringIO()
    with warnings.catch_warnings():
        one_line_warnings(stream)
        with warnings_from("cell", private=True):
            for batch in (37, 41):  # two Poisson batch sizes: one line, not two
                warnings.warn(f"target size torch.Size([{batch}]) differs from the input size", UserWarning)
        with warnings_from("public-cell"):
            warnings.warn("target size torch.Size([37]) differs from the input size", UserWarning)
    assert stream.getvalue().splitlines() == [
        "warning: cell: UserWarning: target size torch.Size([#]) differs from the input size",
        "warning: public-cell: UserWarning: target size torch.Size([37]) differs from the input size"]
