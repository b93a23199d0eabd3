"""Train dp-cgan or dp-gan on mnist-5k; report FD-digitcnn of its samples, logistic-regression accuracy
(dp-cgan only: dp-gan's sample labels mean nothing) and wall time.

Protocol (docs/dp_gan.md reference points): the stratified 4,000-train / 1,000-test split of ``mnist-5k``
(seed 0; declared train size 4,000), δ = 1e-5, PRV-calibrated DP-SGD on the discriminator, 5,000 samples
(class-balanced for dp-cgan), a logistic regression on flattened pixels trained on the samples and tested
on the 1,000 real test images, FD-digitcnn against the same 1,000 test images.

    python examples/eval_dpgan_mnist5k.py --epsilon 10
    python examples/eval_dpgan_mnist5k.py --method dp-gan --epsilon 1 --json out.json

``--epsilon inf`` is the non-private reference. ``--threads`` sets torch's intra-op threads (1 is faster for
these small models when the cores are shared with other work).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from dpgen_bench.allocator import retain_freed_memory
from dpgen_bench.context import RunContext
from dpgen_bench.data import ImageDataset, load_splits
from dpgen_bench.metrics import compute_metrics
from dpgen_bench.metrics.accuracy import logreg_accuracy
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_baselines.dp_gan import DPCGAN, DPGAN


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=["dp-cgan", "dp-gan"], default="dp-cgan")
    ap.add_argument("--epsilon", type=float, required=True, help="target ε (> 0, or inf for non-private)")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--config", default="{}", help="JSON object of DPGANConfig overrides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)
    retain_freed_memory()  # as the runner does: no per-step page faults of large temporaries
    if args.threads:
        torch.set_num_threads(args.threads)

    splits = load_splits("mnist-5k", seed=0, test_fraction=0.2)
    cls = DPCGAN if args.method == "dp-cgan" else DPGAN
    method = cls(json.loads(args.config), splits.info, seed=args.seed, context=RunContext(device=args.device, progress=False))
    budget = PrivacyBudget(args.epsilon, args.delta)
    ledger = PrivacyLedger()
    t0, c0 = time.perf_counter(), time.process_time()
    method.fit(splits.train, budget, ledger)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    images, labels = method.sample(args.samples, seed=args.seed)
    synthetic = ImageDataset(images, labels, splits.info, "synthetic")
    acc = logreg_accuracy(synthetic, splits.test, seed=args.seed) if method.samples_labelled else None
    (fd,) = compute_metrics(["fd-digitcnn"], splits.test, synthetic, seed=args.seed)
    total_s = time.perf_counter() - t0
    result = {
        "method": args.method,
        "dataset": "mnist-5k (4,000 train / 1,000 test, seed 0)",
        "epsilon_target": args.epsilon,
        "epsilon_spent_prv": ledger.epsilon(budget) if budget.is_private else math.inf,
        "delta": args.delta,
        "noise_multiplier": method.noise_multiplier,
        "steps": method.steps_taken,
        "config": method.config.model_dump(),
        "seed": args.seed,
        "n_samples": args.samples,
        "acc_logreg": acc,
        "fd_digitcnn": fd.value,
        "train_wall_s": round(train_s, 1),
        "train_cpu_s": round(train_cpu_s, 1),  # wall time on shared cores is mostly waiting
        "total_wall_s": round(total_s, 1),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
