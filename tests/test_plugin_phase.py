"""The plugin phase runs before a config is parsed: an executor (or any other extension) registered by an
installed package's ``dpgen_bench.plugins`` entry point, or by a module under ``plugins:``, can be named in the
same config."""

from __future__ import annotations

import importlib
import math
import sys
import textwrap

import pytest

import runner_toy
from dpgen_bench import plugins
from dpgen_bench.executors import EXECUTORS
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import ConfigFileError, parse_config

PLUGIN = textwrap.dedent('''
    from typing import Literal
    from dpgen_bench.executors import LocalExecutor, LocalSpec, register_executor

    RAN = []

    class CountingSpec(LocalSpec):
        name: Literal["counting"] = "counting"

    class CountingExecutor(LocalExecutor):
        """The local executor, counting the cells it runs."""
        Spec = CountingSpec

        def run(self, cells, run_one, on_start, on_done, *, progress=False):
            RAN.extend(cells)
            return super().run(cells, run_one, on_start, on_done, progress=progress)

    register_executor("counting", CountingExecutor)
''')


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package `counting_executor` installed on sys.path with a dpgen_bench.plugins entry point."""
    (tmp_path / "counting_executor.py").write_text(PLUGIN)
    dist = tmp_path / "counting_executor-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-executor\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dpgen_bench.plugins]\ncounting = counting_executor\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_installed_loaded", False)
    yield tmp_path
    sys.modules.pop("counting_executor", None)
    if "counting" in EXECUTORS:
        EXECUTORS.unregister("counting")
    importlib.invalidate_caches()


def _config(out, **changes):
    grid = dict(methods=[{"name": "toy-means"}], epsilons=[math.inf], seeds=[0])
    return runner_toy.tiny_config(out, executor={"name": "counting"}, **{**grid, **changes})


def test_an_installed_packages_executor_runs_a_grid_named_in_the_config(installed_plugin, tmp_path):
    config = parse_config(_config(tmp_path / "out"))
    summary = run_benchmark(config, progress=False, render=False)
    assert config.executor.name == "counting" and len(summary.ran) == 1 and not summary.failed
    assert len(sys.modules["counting_executor"].RAN) == 1


def test_an_executor_from_a_plugins_module_is_known_while_the_config_is_parsed(tmp_path, monkeypatch):
    (tmp_path / "counting_module.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        config = parse_config(_config(tmp_path / "out", plugins=["runner_toy", "counting_module"]))
        assert config.executor.name == "counting"
    finally:
        sys.modules.pop("counting_module", None)
        EXECUTORS.unregister("counting")


def test_a_plugins_module_that_does_not_import_is_named_in_the_error(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot import module 'no_such_plugin_module'"):
        parse_config(_config(tmp_path / "out", plugins=["no_such_plugin_module"]))
