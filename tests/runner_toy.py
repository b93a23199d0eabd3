"""Tiny, honest DP methods for the runner tests (imported as a config ``plugin``, also in subprocesses).

``toy-means``: per-class noisy pixel sums and noisy class counts (two Gaussian releases calibrated together
by the shared calibrator, both recorded in the ledger); samples are the noisy class means plus pixel noise.
``toy-global``: one noisy global mean (ignores labels, so its sample labels mean nothing). The tiny grid's
second, worse method is ``toy-means`` with noisier samples, labelled ``toy-blurry``.

Knobs for failure tests: ``fail_seed`` raises in ``fit`` for that seed; ``overspend`` records an extra
release the calibration did not plan for (the runner's privacy check must catch it); ``sleep_s`` slows
``fit`` down so a test can kill the run between cells. The environment variable ``RUNNER_TOY_DIE_ONCE`` (a file
path; tests set it through the executor's ``env``) makes the first ``fit`` that creates that file SIGKILL its own
process mid-cell, as a worker killed for memory or lost with its node would die. ``RUNNER_TOY_SLEEP_S`` (seconds)
slows every ``fit`` of that process like ``sleep_s``, without entering the cell keys: a test slows only the run
it kills, and its rerun of the same grid in the test process finishes at full speed.
"""

from __future__ import annotations

import math
import os
import signal
import time

import torch

from dpgen_bench.method import Capabilities, GenerativeMethod, MethodConfig
from dpgen_bench.privacy.calibration import calibrate_gaussian_releases, gaussian_releases_plan
from dpgen_bench.privacy.events import GaussianEvent
from dpgen_bench.privacy.noise import gaussian_noise
from dpgen_bench.registry import get_method, list_methods, register_method


class ToyConfig(MethodConfig):
    spread: float = 0.1
    """Std of the pixel noise added to the class mean when sampling (public, post-processing)."""
    fail_seed: int | None = None
    overspend: bool = False
    sleep_s: float = 0.0


DIE_ONCE = "RUNNER_TOY_DIE_ONCE"
SLEEP = "RUNNER_TOY_SLEEP_S"


def _die_once(what: str) -> None:
    """SIGKILL this process if ``$RUNNER_TOY_DIE_ONCE`` names a file that does not exist yet (creating it,
    with the pid and ``what``, first: exactly one cell of a run dies, once)."""
    marker = os.environ.get(DIE_ONCE)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()} {what}\n".encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


class _NoisyMeans(GenerativeMethod):
    Config = ToyConfig
    capabilities = Capabilities(channels=(1,))
    conformance_config = {}
    per_class = True
    tuned_on = "none"  # a toy: nothing was tuned

    @property
    def samples_labelled(self) -> bool:
        return self.per_class  # toy-global ignores labels: its sample labels carry no information

    @classmethod
    def privacy_plan(cls, config, nominal_size):
        return gaussian_releases_plan([1.0, 1.0])  # what fit calibrates (overspend adds an unplanned release)

    def fit(self, train, budget, ledger) -> None:
        _die_once(f"{self.seed} {budget.epsilon}")
        if self.config.fail_seed is not None and self.seed == self.config.fail_seed:
            raise RuntimeError(f"toy failure for seed {self.seed}")
        pause = self.config.sleep_s + float(os.environ.get(SLEEP) or 0.0)
        if pause:
            time.sleep(pause)
        x = train.images.reshape(len(train), -1)
        d = x.shape[1]
        k = self.info.num_classes if self.per_class else 1
        y = train.labels if self.per_class else torch.zeros(len(train), dtype=torch.long)
        sums = torch.zeros(k, d).index_add_(0, y, x)
        counts = torch.bincount(y, minlength=k).double()
        if budget.is_private:
            # Add/remove one example changes one class's pixel sum by ≤ √d (pixels in [0, 1]) and one count by 1.
            # Release noise from OS entropy: the run seed is public.
            sigma = calibrate_gaussian_releases([1.0, 1.0], budget)
            sums = sums + gaussian_noise((k, d), sigma * math.sqrt(d), sensitivity=math.sqrt(d), dtype=torch.float32)
            counts = counts + gaussian_noise((k,), sigma, sensitivity=1.0)
            ledger.record(GaussianEvent(sigma), "per-class pixel sums (sensitivity sqrt(d))")
            ledger.record(GaussianEvent(sigma), "per-class counts (sensitivity 1)")
            if self.config.overspend:
                ledger.record(GaussianEvent(sigma), "an unplanned extra release")
        self.means = (sums / counts.clamp(min=1.0).float()[:, None]).clamp(0, 1)

    def generate(self, n, labels, generator):
        rows = self.means[labels] if labels is not None else self.means[torch.zeros(n, dtype=torch.long)]
        x = rows + self.config.spread * torch.randn(rows.shape, generator=generator)
        return x.clamp(0, 1).reshape(n, *self.info.shape)

    def checkpoint_state(self):
        return {"means": self.means}

    def load_checkpoint_state(self, state):
        self.means = state["means"]


class ToyMeans(_NoisyMeans):
    per_class = True


class ToyGlobal(_NoisyMeans):
    per_class = False


class ToyUnconditional(_NoisyMeans):
    """Declares it cannot generate class-conditionally: its sample labels carry no information."""

    per_class = False
    capabilities = Capabilities(labelled=False, channels=(1,))


if "toy-means" not in list_methods():
    register_method("toy-means")(ToyMeans)
    register_method("toy-global")(ToyGlobal)
    register_method("toy-unconditional")(ToyUnconditional)
ToyMeans = get_method("toy-means")  # noqa: F811  (the registered class, if imported twice under two names)


def tiny_config(output_dir, **changes) -> dict:
    """A tiny grid on the offline ``digits`` set (2 toy methods × ε ∈ {1, 10} × seeds {0, 1}) with cheap
    metrics: downstream accuracy with minimal classifier budgets, and FD-digitcnn (not computable on 8×8
    images, so it must come out missing with a reason)."""
    config = {
        "dataset": "digits",
        "methods": [{"name": "toy-means"}, {"name": "toy-means", "label": "toy-blurry", "config": {"spread": 0.6}}],
        "epsilons": [1, 10],
        "delta": "1/(n ln n)",
        "seeds": [0, 1],
        "accountant": "prv",
        "evaluation": {
            "metrics": ["accuracy", "fd-digitcnn"],
            "n_samples": 100,
            "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 10, "logreg_max_iter": 50}},
        },
        "output_dir": str(output_dir),
        "plugins": ["runner_toy"],
    }
    config.update(changes)
    return config
