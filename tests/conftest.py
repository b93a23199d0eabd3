"""Shared fixtures. Keep this small: fixtures used by one test file belong in that file."""

from __future__ import annotations

import os
import re

import pytest
import torch

from dpgen_bench.data import DatasetInfo, DatasetSplits, ImageDataset, load_splits


@pytest.fixture(scope="session")
def mnist5k_splits() -> DatasetSplits:
    """The embedded default: mnist-5k, seed 0, 4,000 train / 1,000 test (loaded once per session).

    Shared across tests: do not modify its tensors in place (take ``.subset(...)`` or ``.clone()``).
    """
    return load_splits("mnist-5k", seed=0, test_fraction=0.2)


@pytest.fixture
def tiny_dataset() -> ImageDataset:
    """64 synthetic 1×28×28 images in [0, 1] with 10 classes (6 or 7 per class), seeded."""
    gen = torch.Generator().manual_seed(1234)
    labels = torch.arange(64) % 10
    # Class-dependent brightness so a generator that learns anything can be told apart from noise.
    images = (torch.rand((64, 1, 28, 28), generator=gen) * 0.5 + labels.view(-1, 1, 1, 1) / 20.0).clamp(0, 1)
    info = DatasetInfo("tiny", channels=1, height=28, width=28, num_classes=10, class_names=tuple(map(str, range(10))))
    return ImageDataset(images=images, labels=labels, info=info, split="train", nominal_size=64)


# The runner sets each training process's torch threads (executors.threads_per_job: the cores split between
# its jobs, capped by OMP_NUM_THREADS). Without the cap, every in-process run and every `dpgen-bench` subprocess
# of a test would take both cores while the other xdist worker runs too: OpenMP threads then wait on each
# other, and a 0.03 ms op took 50 ms (the plugin page's audit: 90 s instead of 30 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny models: one intra-op thread is fastest, and two oversubscribe a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- parallel runs (README: `-n 2 --dist loadgroup`): xdist hands out single tests, except that the tests of one
#    file sharing a module- or class-scoped fixture (a grid run once and read by many tests, a local Ray) form one
#    group that one worker runs together, so that fixture is built once, as under `--dist loadfile`. xdist hands
#    out the groups first (it orders work units by size); in a worker, the single tests marked `slow` are moved
#    ahead of the quick ones, so the run does not end with one worker busy on a long test while the other idles.
#    An explicit `@pytest.mark.xdist_group` is left as it is.
#    The contract suite's `fitted` fixture is function-scoped but caches one fit per (method, shape, ε) in its
#    process: the tests of one such parameter form a group too, so each tiny fit runs once, not once per worker.
PER_PARAMETER_CACHES = ("fitted",)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks into the test ids
def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if _shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
        elif cached := _cached_parameter(item):
            item.add_marker(pytest.mark.xdist_group(f"{item.nodeid.split('::')[0]}::{cached}"))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike (xdist checks the collections match)
        items.sort(key=lambda item: not (item.get_closest_marker("slow") and not item.get_closest_marker("xdist_group")))


def pytest_configure(config):
    # xdist (3.8) groups by appending "@group" to each test id through `item._nodeid`, which pytest 9.2 no longer
    # reads (pytest-xdist#1386): the groups would be silently ignored and every worker would build the shared
    # fixtures again (a second local Ray). Refuse rather than run ungrouped.
    if config.getoption("dist", "no") == "loadgroup" and not hasattr(pytest.Item, "_nodeid"):
        raise pytest.UsageError(
            f"--dist loadgroup does not group tests under pytest {pytest.__version__} (pytest-xdist#1386); "
            "install pytest<9.2, as pyproject.toml's test extra asks")


def _cached_parameter(item) -> str | None:
    """``name=value`` of the first :data:`PER_PARAMETER_CACHES` fixture ``item`` is parametrised over, or None."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return next((re.sub(r"[^\w.=-]+", "-", f"{name}={params[name]}").strip("-") for name in PER_PARAMETER_CACHES
                 if name in params), None)


def _shares_a_fixture(item) -> bool:
    infos = getattr(item, "_fixtureinfo", None)
    return infos is not None and any(
        defs[-1].scope in ("module", "class") for defs in infos.name2fixturedefs.values() if defs)


# -- the `slow` marker means something: `pytest -m "not slow"` is the quick loop (README), and a test that takes
#    longer than SLOW_TEST_S without the marker is named at the end of the run, so the quick loop stays quick.
SLOW_TEST_S = 10.0
_unmarked_slow: list[tuple[str, float]] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and report.duration > SLOW_TEST_S and "slow" not in report.keywords:
        _unmarked_slow.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter):
    if _unmarked_slow:
        terminalreporter.write_sep("-", f"tests over {SLOW_TEST_S:.0f} s without @pytest.mark.slow (mark them)")
        for nodeid, seconds in sorted(_unmarked_slow, key=lambda t: -t[1]):
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")
