"""Plugins written against the first method interface (``sample()`` overridden, no ``generate``, no
``samples_labelled``), registered through real entry-point metadata in a temporary site folder: one is adapted
with a one-line deprecation notice and runs; one that cannot be adapted is refused when it loads, before any
training, with its package and what to change, and ``dpgen-bench list`` shows it with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from dpgen_bench import registry
from dpgen_bench.method import INTERFACE_VERSION
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger

PLUGIN = '''
import math
import torch
from dpgen_bench.method import Capabilities, GenerativeMethod
from dpgen_bench.privacy.calibration import calibrate_gaussian_releases
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.noise import gaussian_noise


class V1Mean(GenerativeMethod):
    """Written against interface 1: overrides sample(n, labels=None, seed=None) -> (images, labels)."""

    capabilities = Capabilities(labelled=False, unlabelled=True)

    def fit(self, train, budget, ledger):
        x = train.images.flatten(1).double().clamp(0, 1)
        total = x.sum(0)
        if budget.is_private:
            sigma = calibrate_gaussian_releases([1.0], budget)
            total = total + gaussian_noise(total.shape, sigma * math.sqrt(x.shape[1]), sensitivity=math.sqrt(x.shape[1]))
            ledger.record(GaussianEvent(sigma), "pixel sum")
        self.mean = (total / train.public_size()).clamp(0, 1).float()

    def sample(self, n, labels=None, seed=None):
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        x = (self.mean + 0.1 * torch.randn(n, self.mean.numel(), generator=g)).clamp(0, 1)
        return x.reshape(n, *self.info.shape), torch.full((n,), -1, dtype=torch.long)

    def checkpoint_state(self):
        return {"mean": self.mean}

    def load_checkpoint_state(self, state):
        self.mean = state["mean"]


class V1BothWays(V1Mean):
    """Interface 1 and able to train both ways, with no samples_labelled: cannot be adapted."""

    capabilities = Capabilities(labelled=True, unlabelled=True)
'''


@pytest.fixture(scope="module")
def v1_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("v1site")
    (site / "dpgen_v1_plugin").mkdir()
    (site / "dpgen_v1_plugin" / "__init__.py").write_text("")
    (site / "dpgen_v1_plugin" / "mean.py").write_text(PLUGIN.split("class V1BothWays")[0])
    (site / "dpgen_v1_plugin" / "both.py").write_text(
        "from dpgen_bench.method import Capabilities\nfrom dpgen_v1_plugin.mean import V1Mean\n\n\nclass V1BothWays"
        + PLUGIN.split("class V1BothWays")[1])
    info = site / "dpgen_v1_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dpgen-v1-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [dpgen_bench.methods]
        v1-mean = dpgen_v1_plugin.mean:V1Mean
        v1-both-ways = dpgen_v1_plugin.both:V1BothWays
        """))
    sys.path.insert(0, str(site))
    registry.refresh()
    yield site
    sys.path.remove(str(site))
    for mod in [m for m in sys.modules if m.startswith("dpgen_v1_plugin")]:
        del sys.modules[mod]
    registry.refresh()


def test_the_interface_declares_its_version():
    assert INTERFACE_VERSION == 2


def test_a_first_interface_plugin_that_overrides_sample_is_adapted_with_one_notice_and_runs(v1_site, tiny_dataset):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cls = registry.get_method("v1-mean")
    notices = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "dpgen_v1_plugin.mean.V1Mean overrides sample() (method interface 1)" in notices[0]
    assert "rename it to generate(self, n, labels, generator) returning the images only" in notices[0]
    method = cls(None, tiny_dataset.info, seed=0)
    method.fit(tiny_dataset, PrivacyBudget(1.0, 1e-5, accountant="gdp"), PrivacyLedger())
    images, labels = method.sample(5, seed=3)
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.float32 and (labels == -1).all()
    assert torch.equal(images, method.sample(5, seed=3)[0]) and not torch.equal(images, method.sample(5, seed=4)[0])
    with pytest.raises(ValueError, match="n must be an integer"):  # the checked sample() of interface 2
        method.sample(-1)


def test_a_first_interface_plugin_without_samples_labelled_is_refused_naming_its_package_and_the_fix(v1_site):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(registry.PluginLoadError) as err:
            registry.get_method("v1-both-ways")
    message = str(err.value)
    assert "from package 'dpgen-v1-plugin' is installed but failed to load" in message
    assert "dpgen_v1_plugin.both.V1BothWays can train both labelled and unlabelled" in message
    assert "add a property `samples_labelled(self) -> bool`" in message
    assert [f.name for f in registry.failed_plugins()] == ["v1-both-ways"]


def test_dpgen_bench_list_shows_the_plugin_that_failed_to_load_and_why(v1_site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(v1_site), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "dpgen_bench", "list"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    print(out.stdout.split("Datasets")[0], out.stderr, sep="\n")  # shown in the report (pytest -s)
    failed = out.stdout.split("Method plugins that failed to load")[1].split("\n\n")[0]
    assert "v1-both-ways" in failed and "dpgen-v1-plugin" in failed and "samples_labelled" in failed
    assert "v1-mean" in out.stdout.split("Method plugins that failed to load")[0]  # the adapted one is usable
    assert "overrides sample() (method interface 1)" in out.stderr  # its one-line notice
