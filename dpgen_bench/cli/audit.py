"""`dpgen-bench audit [CONFIG] [--set key.path=value ...]`: the empirical privacy audits of a benchmark config
(``docs/audit.md``): an ε lower bound beside every claimed ε, with the broken variants as power checks. Writes
``audit.csv`` in the results directory and re-renders the tables. Resumable: finished audits are skipped. The
audits run on the config's executor like the grid's cells (``--jobs N``, ``--executor ray``, ``--address``).

For every method and finite ε it reports which audits ran (``hook``, ``generic``, ``one-run``) and which could
not, and why: nothing is skipped silently.

Exit codes: 0 every audit finished, none of the correct methods was flagged and every method was audited at
every ε by at least one audit; 1 an audit failed, a correct method was flagged (its implementation releases
more than its ledger says) or a method could not be audited at all (unless ``--allow-unaudited``); 2 invalid
config.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="empirical ε lower bounds for every method and ε of a config (mechanism + power checks)",
        description="Audit every method and finite ε of a benchmark config: the mechanism audit of the "
        "method and of its deliberately broken variants, optionally the one-run black-box audit "
        "('audit:' section; docs/audit.md). Without CONFIG, the embedded default benchmark.",
    )
    p.add_argument("config", nargs="?", default=None, help="YAML benchmark config (default: the embedded one)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (YAML syntax), e.g. --set audit.trials=2000; repeatable")
    p.add_argument("--output-dir", "-o", default=None, help="results directory (same as --set output_dir=...)")
    p.add_argument("--force", action="store_true", help="recompute finished audits too")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="local executor: audits run in parallel processes (default: the config's, else 1)")
    p.add_argument("--executor", default=None, metavar="NAME",
                   help="what runs the audits: local, ray or slurm (default: the config's 'executor'); "
                   "see docs/executors.md")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to join (auto, HOST:PORT or ray://HOST:10001); with --executor ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="list the audits, run nothing")
    p.add_argument("--allow-unaudited", action="store_true",
                   help="exit 0 even if a method could not be audited at some ε (it is still reported)")
    p.set_defaults(handler=_audit)


def _audit(args) -> int:
    from . import UsageError
    from ..runner.audits import audit_dir, audit_gaps, build_audit_cells, run_audits
    from ..runner.config import ConfigFileError, check_output_dir, load_config, resolve_methods
    from ..jobs.store import StoreLockedError

    from .executor_args import with_executor

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    overrides = list(args.overrides) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])
    try:
        config = with_executor(load_config(args.config, overrides), args)
        check_output_dir(config.output_dir)
        if args.dry_run:
            resolved = resolve_methods(config)
            for cell in build_audit_cells(config, resolved):
                state = "done" if (audit_dir(config.output_dir) / f"{cell.key}.json").exists() else "to run"
                print(f"{cell.key}  {cell.name}  [{state}]")
            for gap in audit_gaps(config, resolved):
                print(f"{'-' * 16}  {gap.method}/{gap.kind}/eps={gap.epsilon:g}  [not run: {gap.reason}]")
            return 0
        summary = run_audits(config, force=args.force, progress=not args.no_progress)
    except (ConfigFileError, StoreLockedError) as exc:
        raise UsageError(str(exc)) from None
    return report(summary, config.output_dir, allow_unaudited=args.allow_unaudited)


def report(summary, output_dir, allow_unaudited: bool = False) -> int:
    """Print what the audits found and, per method and ε, which audits ran and which could not (and why);
    re-render the tables; the exit code of ``dpgen-bench audit``."""
    from pathlib import Path

    import pandas as pd

    from ..runner.audits import read_audit_rows
    from ..runner.benchmark import render_outputs

    root = Path(output_dir)
    if (root / "results.csv").exists():
        render_outputs(root)
    frame = read_audit_rows(root, summary.keys or None)
    print(f"{len(summary.ran)} audit(s) run, {len(summary.skipped)} already done; {root / 'audit.csv'}")
    if not frame.empty:
        cols = ["method", "variant", "audit_kind", "target_epsilon", "claimed_epsilon", "epsilon_lower", "flagged",
                "epsilon_lower_gdp", "flagged_gdp", "trials"]
        print(frame[frame["status"] == "ok"][cols].to_string(index=False, float_format=lambda x: f"{x:.3f}",
                                                             na_rep="n/a"))
    for name, error in summary.failed:
        print(f"FAILED {name}: {error}")
    for name, reason in summary.not_run:
        print(f"NOT RUN {name}: {reason}")
    flagged = (frame["flagged"] == True) | (frame["flagged_gdp"] == True)  # noqa: E712 (NaN where not computed)
    wrong = frame[(frame["status"] == "ok") & (frame["variant"] == "correct") & flagged]
    for _, row in wrong.iterrows():
        gdp = row["epsilon_lower_gdp"]
        under = f" (under a Gaussian trade-off {gdp:.3f})" if not pd.isna(gdp) else ""
        print(f"FLAGGED {row['method']} at ε={row['target_epsilon']:g} ({row['audit_kind']}): lower bound "
              f"{row['epsilon_lower']:.3f}{under} > claimed {row['claimed_epsilon']:.3f}")
    unaudited = print_coverage(frame, summary.gaps)
    for method, eps in unaudited:
        print(f"UNAUDITED {method} at ε={eps:g}: no audit finished"
              + (" (allowed by --allow-unaudited)" if allow_unaudited else "; pass --allow-unaudited to accept"))
    return 1 if summary.failed or len(wrong) or (unaudited and not allow_unaudited) else 0


def print_coverage(frame, gaps) -> list[tuple[str, float]]:
    """Print, per method and finite ε, every audit of the correct method: ``ran`` (with its trials and whether
    the budget cap cut them), ``could not`` with the reason; returns the (method, ε) with no finished audit."""
    import pandas as pd

    coverage: dict[tuple[str, float], list[str]] = {}
    finished: dict[tuple[str, float], bool] = {}
    correct = frame[frame["variant"] == "correct"] if not frame.empty else frame
    for _, row in correct.iterrows():
        key = (str(row["method"]), float(row["target_epsilon"]))
        finished.setdefault(key, False)
        kind, status = row["audit_kind"], row["status"]
        if status == "ok":
            finished[key] = True
            trials = "" if pd.isna(row.get("trials")) else f", {int(row['trials'])} trials"
            if str(row.get("capped")).lower() == "true":
                trials += f" (capped from {int(row['trials_requested'])} by audit.generic.max_seconds)"
            coverage.setdefault(key, []).append(f"{kind}: ran{trials}")
        else:
            coverage.setdefault(key, []).append(f"{kind}: could not ({status}: {row['error']})")
    for gap in gaps:
        key = (gap.method, float(gap.epsilon))
        finished.setdefault(key, False)
        coverage.setdefault(key, []).append(f"{gap.kind}: could not ({gap.reason})")
    if coverage:
        print("audit coverage:")
    for (method, eps), lines in coverage.items():
        print(f"  {method} ε={eps:g}: " + "; ".join(lines))
    return [key for key, ok in finished.items() if not ok]
