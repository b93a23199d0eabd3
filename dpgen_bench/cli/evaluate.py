"""`dpgen-bench evaluate SAMPLES.npz|FOLDER --dataset NAME`: the benchmark's metrics on samples made elsewhere,
written as the same result rows (and table) as a benchmark cell."""

from __future__ import annotations

import math


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate your own samples (.npz or a folder of images) with the benchmark's metrics",
        description="Evaluate samples made by your own code against a dataset's held-out test split, with the "
        "same metrics and result rows as `dpgen-bench run`. The .npz holds 'images' (uint8 [0,255] or float "
        "[0,1], NCHW or NHWC) and optional 'labels'; a folder holds image files, in class sub-folders 0/, 1/, ... "
        "to be labelled.",
    )
    p.add_argument("samples", help="an .npz file or a folder of images")
    p.add_argument("--dataset", required=True, help="dataset whose test split is the reference (e.g. mnist-5k)")
    p.add_argument("--label", default=None, help="method name shown in tables (default: the file or folder name)")
    p.add_argument("--epsilon", type=float, default=math.inf,
                   help="the ε you claim for these samples (recorded as the target, not verified; default ∞)")
    p.add_argument("--metrics", default="fd-digitcnn,accuracy,prdc", help="comma-separated metric names")
    p.add_argument("--output-dir", "-o", default="runs/evaluate", help="results directory (default runs/evaluate)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=_evaluate)


def _evaluate(args) -> int:
    from pydantic import ValidationError

    from . import UsageError
    from ..data import DatasetUnavailableError, UnknownDatasetError
    from ..runner.config import ConfigFileError, check_metrics_names, check_output_dir
    from ..jobs.external import SamplesError, evaluate_external
    from ..runner.report import run_report
    from ..jobs.store import StoreLockedError

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if math.isnan(args.epsilon) or args.epsilon <= 0:  # the ε a table would print beside the samples
        raise UsageError(f"--epsilon must be > 0, or inf for non-private samples; got {args.epsilon:g}")
    try:
        check_output_dir(args.output_dir)
        check_metrics_names(metrics)
        record = evaluate_external(
            args.samples, dataset=args.dataset, label=args.label or _name(args.samples), metrics=metrics,
            output_dir=args.output_dir, claimed_epsilon=args.epsilon, split_seed=args.split_seed,
            test_fraction=args.test_fraction, data_dir=args.data_dir, device=args.device,
        )
    except (SamplesError, ConfigFileError, StoreLockedError, UnknownDatasetError, DatasetUnavailableError) as exc:
        raise UsageError(str(exc).splitlines()[0] if isinstance(exc, DatasetUnavailableError) else str(exc)) from None
    except ValidationError as exc:
        raise UsageError(f"invalid evaluation settings: {exc.errors()[0]['msg']}") from None
    print(f"dpgen-bench evaluate: {len(record['rows'])} metric rows for {record['name']} in {args.output_dir}/results.csv")
    print()
    print(run_report(args.output_dir))
    return 0


def _name(path: str) -> str:
    from pathlib import Path

    p = Path(path)
    return p.stem if p.is_file() else p.name
