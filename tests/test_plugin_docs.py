"""docs/plugins.md, followed as written: its files are the template's, its commands run in a fresh folder.

The page's ``<!-- plugins:file PATH -->`` blocks are written to PATH; ``method.py``, which the page says to
copy, is copied from the template, and every ``<!-- plugins:excerpt PATH -->`` block must appear in it verbatim.
Then every ``<!-- plugins:run -->`` block runs line by line, with two substitutions only so that the shared
environment stays untouched and nothing is fetched: ``pip install X`` installs into a temporary site folder
(``--target``, offline) and ``dpgen-bench`` is this checkout's ``python -m dpgen_bench``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "plugins.md"
TEMPLATE = ROOT / "examples" / "plugin_template"

pytestmark = pytest.mark.slow


def _blocks(kind: str) -> list[tuple[str, str]]:
    """(argument of the marker, code) of every fenced block right after ``<!-- plugins:KIND ARG -->``."""
    pattern = rf"<!-- plugins:{kind}\s*(\S*) -->\s*```\w*\n(.*?)```"
    return re.findall(pattern, PAGE.read_text(), re.S)


def test_the_conformance_extra_brings_pytest():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("pytest") for dep in extras["conformance"])
    assert "pip install 'dpgen-bench[conformance]'" in PAGE.read_text()


def test_the_pages_files_are_the_templates_and_its_excerpts_are_in_it():
    for path, code in _blocks("file"):
        if path.startswith("my-plugin/"):
            assert code == (TEMPLATE / path.removeprefix("my-plugin/")).read_text(), path
    excerpts = _blocks("excerpt")
    assert len(excerpts) >= 5
    for path, code in excerpts:
        assert code in (TEMPLATE / path.removeprefix("my-plugin/")).read_text(), code


def test_the_template_declares_its_privacy_plan_and_the_audit_hooks():
    text = (TEMPLATE / "dpgen_noisy_means" / "method.py").read_text()
    for name in ("def privacy_plan(", "def audit_release(", "def audit_canary("):
        assert name in text


def _run_line(line: str, cwd: Path, site: Path) -> subprocess.CompletedProcess:
    words = shlex.split(line)
    if words[:2] == ["pip", "install"]:
        words = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                 "--target", str(site), *words[2:]]
    elif words[0] == "dpgen-bench":
        words = [sys.executable, "-m", "dpgen_bench", *words[1:]]
    elif words[:3] == ["python", "-m", "pytest"]:
        words = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *words[3:]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), OMP_NUM_THREADS="1")
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_following_the_page_from_an_empty_folder_passes_conformance_and_the_audit(tmp_path):
    work, site = tmp_path / "work", tmp_path / "site"
    work.mkdir()
    for path, code in _blocks("file"):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(code)
    shutil.copy(TEMPLATE / "dpgen_noisy_means" / "method.py", work / "my-plugin" / "dpgen_noisy_means" / "method.py")
    outputs = {}
    for _, block in _blocks("run"):
        for line in (x.split("#")[0].strip() for x in block.splitlines()):
            if line:
                out = _run_line(line, work, site)
                assert out.returncode == 0, f"{line}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
                outputs[line] = out.stdout
    listed = next(row for row in outputs["dpgen-bench list"].splitlines() if "noisy-means" in row)
    assert "dpgen-bench-noisy-means" in listed
    assert "sample_std = 0.15" in outputs["dpgen-bench info noisy-means"]
    assert "51 passed, 1 skipped" in outputs["python -m pytest --pyargs dpgen_bench.conformance -k noisy-means"]
    audit = outputs["dpgen-bench audit noisy-means.yaml"]
    assert "2 audit(s) run" in audit and "noisy-means" in audit and "generic: ran, 200 trials" in audit
    assert (work / "runs" / "noisy-means" / "audit.csv").is_file()
    assert not (TEMPLATE / "build").exists() and not list(TEMPLATE.glob("*.egg-info"))  # the repo stays clean
