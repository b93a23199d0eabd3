"""The README's two commands and CI: CI must run the README's test command verbatim."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _block_after(marker: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(re.escape(marker) + r"\s*```bash\n(.*?)```", text, re.S)
    assert match, f"README.md has no ```bash block after {marker}"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_readme_has_one_self_contained_command_each_for_the_main_job_and_the_tests():
    for marker in ("<!-- readme:main-command -->", "<!-- readme:test-command -->"):
        lines = _block_after(marker)
        assert len(lines) == 1, lines
        assert lines[0].startswith("python3.11 -m venv .venv && . .venv/bin/activate && pip install -e ")
    assert "pytest" in _block_after("<!-- readme:test-command -->")[0]
    assert "dpgen-bench " in _block_after("<!-- readme:main-command -->")[0]


def test_ci_runs_the_readme_test_command_verbatim():
    out = subprocess.run([str(ROOT / ".ci" / "run"), "--print-command"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _block_after("<!-- readme:test-command -->")[0]


def test_tox_has_a_test_env_and_a_bench_env():
    tox = (ROOT / "tox.ini").read_text()
    assert "[testenv]" in tox and "[testenv:bench]" in tox and "--benchmark-only" in tox


def test_the_committed_default_run_is_the_first_timed_fresh_clone_run():
    """results/default is the output of the README's main command whose time the README states (run 1 of
    results/timing_fresh_clone): the same commit, and every row of the default config's grid."""
    import json

    summary = (ROOT / "results" / "timing_fresh_clone" / "summary.txt").read_text()
    commit = re.search(r"^commit: (\w+)$", summary, re.M)
    assert commit, summary
    environment = json.loads((ROOT / "results" / "default" / "environment.json").read_text())
    assert environment["code_version"] == commit.group(1)
    assert "committed run, `results/default`" in " ".join((ROOT / "README.md").read_text().split())


def test_the_readmes_fresh_clone_times_are_the_committed_timing_runs():
    """The min and median the README states are those of results/timing_fresh_clone/summary.txt."""
    import statistics

    summary = (ROOT / "results" / "timing_fresh_clone" / "summary.txt").read_text()
    walls = [int(w) for w in re.findall(r"rc=0 wall=(\d+) s", summary)]
    assert len(walls) >= 2, summary

    def mmss(seconds: float) -> str:
        return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"

    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"min {mmss(min(walls))}, median {mmss(statistics.median(walls))}" in text, (walls, "README.md")
    assert summary.splitlines()[0] == "command: " + _block_after("<!-- readme:main-command -->")[0]


def test_the_readmes_test_command_times_are_the_committed_timing_runs():
    """The test command's min and median in the README are those of its committed fresh-clone runs, and those
    runs timed the README's test command verbatim."""
    import statistics

    summary = (ROOT / "results" / "timing_fresh_clone" / "test_command_summary.txt").read_text()
    walls = [int(w) for w in re.findall(r"rc=0 wall=(\d+) s", summary)]
    assert len(walls) >= 2, summary
    median = statistics.median(walls)
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"min {min(walls) // 60}:{min(walls) % 60:02d}, median {int(median) // 60}:{int(median) % 60:02d}" in text
    assert summary.splitlines()[0] == "command: " + _block_after("<!-- readme:test-command -->")[0]
