"""Train DP-MEPF (or DP-MERF) on mnist-5k and report downstream logistic-regression accuracy.

Trains on the 4,000-image private split at (ε, δ = 1e-5), samples 5,000 class-balanced images, fits a
logistic regression on their flattened pixels and tests it on the 1,000 held-out real test images.

    python examples/eval_mepf_mnist5k.py --epsilon 10
    python examples/eval_mepf_mnist5k.py --epsilon inf          # non-private reference run
    python examples/eval_mepf_mnist5k.py --epsilon 1 --steps 1500 --extractor random-cnn
    python examples/eval_mepf_mnist5k.py --method dp-merf --epsilon 10

Prints one JSON line with the accuracy, the spent ε (recomputed from the ledger) and wall times.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from sklearn.linear_model import LogisticRegression

from dpgen_bench.allocator import retain_freed_memory
from dpgen_bench.data import load_splits
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench_methods.dp_mepf import DPMEPF
from dpgen_bench_methods.dp_merf import DPMERF

METHODS = {"dp-mepf": DPMEPF, "dp-merf": DPMERF}


def logreg_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    """Accuracy on the test set of a logistic regression trained on flattened [0, 1] pixels."""
    clf = LogisticRegression(max_iter=1000)
    clf.fit(train_x.flatten(1).numpy(), train_y.numpy())
    return float(clf.score(test_x.flatten(1).numpy(), test_y.numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilon", type=float, default=10.0, help="target ε (> 0), or 'inf' for non-private")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default: the config's)")
    parser.add_argument("--method", choices=sorted(METHODS), default="dp-mepf")
    parser.add_argument("--extractor", default="efficientnet-lite0", help="DP-MEPF's feature extractor")
    parser.add_argument("--n-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra DP-MEPF config values, e.g. lr=0.002 moments=phi1 (JSON-parsed)")
    args = parser.parse_args()
    retain_freed_memory()  # as the runner does: no per-step page faults of large temporaries
    if args.threads:
        torch.set_num_threads(args.threads)

    config: dict = {"extractor": args.extractor} if args.method == "dp-mepf" else {}
    if args.steps is not None:
        config["steps"] = args.steps
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value

    t0 = time.perf_counter()
    splits = load_splits("mnist-5k")
    budget = PrivacyBudget(args.epsilon, args.delta)
    ledger = PrivacyLedger()
    method = METHODS[args.method](config, splits.info, seed=args.seed)
    method.fit(splits.train, budget, ledger)
    t_fit = time.perf_counter() - t0
    images, labels = method.sample(args.n_samples, seed=args.seed)
    acc = logreg_accuracy(images, labels, splits.test.images, splits.test.labels)
    result = {
        "method": args.method,
        "epsilon_target": args.epsilon if math.isfinite(args.epsilon) else "inf",
        "epsilon_spent_prv": ledger.epsilon(budget) if budget.is_private else None,
        "delta": args.delta,
        "accuracy_logreg": acc,
        "config": method.config.model_dump(mode="json"),
        "sigma": method.release_summary.get("sigma"),
        "release_s": round(method.history.get("release_s", float("nan")), 1),
        "train_s": round(method.history.get("train_s", float("nan")), 1),
        "fit_wall_s": round(t_fit, 1),
        "total_wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
