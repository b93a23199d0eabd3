"""`dpgen-bench run [CONFIG] [--set key.path=value ...]`: train every method at matched (ε, δ), evaluate,
write results.csv, tables and plots. Without CONFIG the embedded default benchmark runs.

Exit codes: 0 every cell finished, 1 some cell failed (listed), 2 invalid config (nothing trained),
130 interrupted by Ctrl-C (finished cells kept; rerun to continue).
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a benchmark grid (dataset × methods × ε × seeds)",
        description="Run a benchmark grid. Without CONFIG, runs the embedded default benchmark "
        "(mnist-5k; DP-MEPF, DP-CGAN, DP-MERF at ε ∈ {1, 10, ∞}; output in runs/default).",
    )
    p.add_argument("config", nargs="?", default=None, help="YAML benchmark config (default: the embedded one)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (YAML syntax), e.g. --set epsilons=[1,10] "
        "--set methods.dp-mepf.config.steps=100; repeatable",
    )
    p.add_argument("--output-dir", "-o", default=None, help="results directory (same as --set output_dir=...)")
    p.add_argument("--force", action="store_true", help="recompute finished cells too")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="local executor: cells run in parallel processes (default: the config's, else 1)")
    p.add_argument("--executor", default=None, metavar="NAME",
                   help="what runs the cells: local, ray or slurm (default: the config's 'executor', else local); "
                   "see docs/executors.md")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to join (auto, HOST:PORT or ray://HOST:10001); with --executor ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true", help="validate the config and list the cells, train nothing")
    p.set_defaults(handler=_run)


def _run(args) -> int:
    from . import UsageError
    from ..runner.benchmark import RunInterrupted, prepare, run_benchmark
    from ..runner.config import ConfigFileError, load_config
    from ..runner.progress import one_line_warnings
    from .executor_args import with_executor
    from ..jobs.store import StoreLockedError

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    try:
        config = load_config(args.config, overrides)
        config = with_executor(config, args)
        if args.dry_run:
            cells, store, _ = prepare(config)
            for cell in cells:
                state = "done" if store.is_done(cell.key) else "to run"
                print(f"{cell.key}  {cell.name}  [{state}]")
            return 0
        one_line_warnings()
        summary = run_benchmark(config, force=args.force, progress=not args.no_progress)
    except (ConfigFileError, StoreLockedError) as exc:
        raise UsageError(str(exc)) from None
    except RunInterrupted as exc:
        print(f"dpgen-bench run: {exc}; results so far in {exc.summary.root}/results.csv", file=sys.stderr)
        return 130  # 128 + SIGINT, what shells report for an interrupted command
    for name, problem in summary.damaged:
        print(f"warning: {name} was finished but is damaged ({problem}); recomputed it", file=sys.stderr)
    print(
        f"dpgen-bench run: {summary.total} cell(s): {len(summary.ran)} run, {len(summary.skipped)} already finished, "
        f"{len(summary.failed)} failed; results in {summary.root}/results.csv"
    )
    for metric, reason in summary.missing:
        print(f"notice: {metric} skipped: {reason.splitlines()[0] if reason else 'no reason given'}")
    for path in summary.outputs:
        print(f"  wrote {path}")
    if summary.ran or summary.skipped:
        from ..runner.report import run_report

        print()
        print(run_report(summary.root))
    if summary.audit is not None:
        from .audit import report

        print()
        if report(summary.audit, summary.root):
            return 1
    if summary.failed:
        print("failed cells:", file=sys.stderr)
        for name, error in summary.failed:
            print(f"  {name}: {error}", file=sys.stderr)
        return 1
    return 0
