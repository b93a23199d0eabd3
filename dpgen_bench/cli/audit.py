"""`dpgen-bench audit [CONFIG] [--set key.path=value ...]`: the empirical privacy audits of a benchmark config
(``docs/audit.md``): an ε lower bound beside every claimed ε, with the broken variants as power checks. Writes
``audit.csv`` in the results directory and re-renders the tables. Resumable: finished audits are skipped.

Exit codes: 0 every audit finished and none of the correct methods was flagged, 1 an audit failed or a
correct method was flagged (its implementation releases more than its ledger says), 2 invalid config.
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="list the audits, run nothing")
    p.set_defaults(handler=_audit)


def _audit(args) -> int:
    from . import UsageError
    from ..runner.audits import audit_dir, build_audit_cells, run_audits
    from ..runner.config import ConfigFileError, check_output_dir, load_config, resolve_methods
    from ..runner.store import StoreLockedError

    overrides = list(args.overrides) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])
    try:
        config = load_config(args.config, overrides)
        check_output_dir(config.output_dir)
        if args.dry_run:
            for cell in build_audit_cells(config, resolve_methods(config)):
                state = "done" if (audit_dir(config.output_dir) / f"{cell.key}.json").exists() else "to run"
                print(f"{cell.key}  {cell.name}  [{state}]")
            return 0
        summary = run_audits(config, force=args.force, progress=not args.no_progress)
    except (ConfigFileError, StoreLockedError) as exc:
        raise UsageError(str(exc)) from None
    return report(summary, config.output_dir)


def report(summary, output_dir) -> int:
    """Print what the audits found, re-render the tables; the exit code of ``dpgen-bench audit``."""
    from pathlib import Path

    from ..runner.audits import read_audit_rows
    from ..runner.benchmark import render_outputs

    root = Path(output_dir)
    if (root / "results.csv").exists():
        render_outputs(root)
    frame = read_audit_rows(root)
    print(f"{len(summary.ran)} audit(s) run, {len(summary.skipped)} already done; {root / 'audit.csv'}")
    if not frame.empty:
        cols = ["method", "variant", "audit_kind", "target_epsilon", "claimed_epsilon", "epsilon_lower", "flagged",
                "epsilon_lower_gdp", "flagged_gdp"]
        print(frame[frame["status"] == "ok"][cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for name, error in summary.failed:
        print(f"FAILED {name}: {error}")
    flagged = (frame["flagged"] == True) | (frame["flagged_gdp"] == True)  # noqa: E712 (NaN for one-run rows)
    wrong = frame[(frame["status"] == "ok") & (frame["variant"] == "correct") & flagged]
    for _, row in wrong.iterrows():
        print(f"FLAGGED {row['method']} at ε={row['target_epsilon']:g} ({row['audit_kind']}): lower bound "
              f"{row['epsilon_lower']:.3f} (under a Gaussian trade-off {row['epsilon_lower_gdp']:.3f}) > claimed "
              f"{row['claimed_epsilon']:.3f}")
    return 1 if summary.failed or len(wrong) else 0
