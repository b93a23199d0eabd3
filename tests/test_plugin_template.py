"""The worked outside plugin (examples/plugin_template): pip-installed, listed, runnable, no core changes.

The template is built by pip with the test environment's setuptools (``--no-build-isolation``, so no network)
and installed with ``--target`` into a temporary site folder put on ``sys.path``: discovery then goes through
its ``*.dist-info/entry_points.txt`` exactly as for a plugin in site-packages, and the shared venv is untouched.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from dpgen_bench import registry
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.ledger import PrivacyLedger

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "plugin_template"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("plugin")
    src = work / "src"
    shutil.copytree(TEMPLATE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))  # keep the repo clean
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(src)],
        check=True,
    )
    sys.path.insert(0, str(site))
    registry.refresh()
    yield site
    sys.path.remove(str(site))
    for mod in [m for m in sys.modules if m.startswith("dpgen_noisy_means")]:
        del sys.modules[mod]
    registry.refresh()


def _entry(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # built-ins still being written may warn; not this test's subject
        assert name in registry.list_methods()
        return registry.method_entry(name)


def test_installed_template_is_listed_with_its_own_package_as_source(plugin_site):
    entry = _entry("noisy-means")
    assert entry.source == "dpgen-bench-noisy-means"
    assert entry.cls.__module__ == "dpgen_noisy_means.method"


def test_dpgen_bench_list_shows_the_plugin_and_its_source(plugin_site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "dpgen_bench", "list"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "noisy-means" in line)
    assert "dpgen-bench-noisy-means" in row


def test_template_fits_at_epsilon_1_records_both_releases_and_stays_in_budget(plugin_site, tiny_dataset):
    cls = _entry("noisy-means").cls
    method = cls({"sample_std": 0.1}, tiny_dataset.info, seed=0)
    budget = PrivacyBudget(1.0, 1e-5)
    ledger = PrivacyLedger()
    method.fit(tiny_dataset, budget, ledger)
    assert len(ledger) == 2 and all(isinstance(e, GaussianEvent) for e in ledger.events)
    assert any("counts" in e.note for e in ledger.entries) and any("sums" in e.note for e in ledger.entries)
    assert ledger.within(budget)
    images, labels = method.sample(30, seed=1)
    assert images.shape == (30, 1, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.bincount(labels, minlength=10).tolist() == [3] * 10


def test_template_non_private_run_releases_exact_class_means_and_records_nothing(plugin_site, tiny_dataset):
    cls = _entry("noisy-means").cls
    method = cls({"sample_std": 0.0}, tiny_dataset.info)
    ledger = PrivacyLedger()
    method.fit(tiny_dataset, PrivacyBudget(math.inf, 1e-5), ledger)
    assert len(ledger) == 0
    images, labels = method.sample(10, labels=torch.arange(10))
    for c in range(10):
        torch.testing.assert_close(images[c], tiny_dataset.images[tiny_dataset.labels == c].mean(0))


def test_template_checkpoint_round_trip_samples_identically(plugin_site, tiny_dataset, tmp_path):
    cls = _entry("noisy-means").cls
    method = cls(None, tiny_dataset.info, seed=3)
    method.fit(tiny_dataset, PrivacyBudget(2.0, 1e-5), PrivacyLedger())
    method.save(tmp_path)
    again = cls.load(tmp_path)
    assert torch.equal(method.sample(8, seed=5)[0], again.sample(8, seed=5)[0])


def test_template_passes_the_conformance_suite(plugin_site):
    """What a plugin author runs (``python -m pytest --pyargs dpgen_bench.conformance -k noisy-means``)."""
    from dpgen_bench.conformance import checks, contract

    cls = _entry("noisy-means").cls
    checks.check_declarations(cls)
    assert checks.check_accountants(cls) == ["prv", "rdp", "prv-accountant", "gdp"]
    checks.check_fresh_release_noise(cls)
    checks.check_public_stream(cls)
    assert checks.check_neighbouring_independence(cls) is False  # no DP-SGD
    assert contract.check_contract(cls) == ["grey28", "rgb32", "grey8"]  # the interface contract, every shape


def test_unlabelled_template_says_its_sample_labels_mean_nothing(plugin_site, tiny_dataset):
    cls = _entry("noisy-means").cls
    assert cls({"use_labels": False}, tiny_dataset.info).samples_labelled is False
    assert cls({"use_labels": True}, tiny_dataset.info).samples_labelled is True


def test_conformance_suite_runs_on_an_installed_plugin_with_pyargs(plugin_site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "dpgen_bench.conformance",
         "-k", "noisy-means"],
        env=env, capture_output=True, text=True, cwd=plugin_site,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # privacy suite: 5 passed (the noise drawn is checked: the template declares its sensitivities) + the DP-SGD
    # check skipped; contract suite: 3 shapes × (construction + 2 budgets × 7 checks of a fitted model) + the
    # refusal of unsupported shapes = 46
    assert "51 passed, 1 skipped" in out.stdout
