"""`dpgen-bench table RESULTS_DIR [--format md|latex|csv]` and `dpgen-bench plot RESULTS_DIR`: re-render
tables and plots from a results directory's cell records (the source of truth; ``results.csv`` is derived from
them, and a mismatch is reported)."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("table", help="print a comparison table from a results directory")
    p.add_argument("results_dir", help="directory written by `dpgen-bench run`")
    p.add_argument("--format", "-f", choices=("md", "latex", "csv"), default="md", help="table format (default md)")
    p.add_argument("--output", "-o", default=None, help="write to this file instead of printing")
    p.add_argument("--published", nargs="?", const="", default=None, metavar="DATASET",
                   help="also show DPImageBench's published rows (default: those of the results' dataset family), "
                        "in a section of their own, never in a mean (Markdown only; docs/protocol.md)")
    p.set_defaults(handler=_table)

    q = sub.add_parser("plot", help="re-render the plots of a results directory")
    q.add_argument("results_dir", help="directory written by `dpgen-bench run`")
    q.add_argument("--output-dir", "-o", default=None, help="where to write the PNGs (default RESULTS_DIR/plots)")
    q.set_defaults(handler=_plot)


def _results(results_dir: str):
    from . import UsageError
    from ..jobs.store import ResultsStore

    root = Path(results_dir)
    if not root.is_dir():
        raise UsageError(f"results directory {results_dir!r} does not exist")
    store = ResultsStore(root)
    records = store.frame()
    if not len(records):
        raise UsageError(f"no finished cells in {results_dir!r} (no readable cells/*.json); run `dpgen-bench run` first")
    problem = store.consistency()
    if problem:
        print(f"warning: {problem}; the table is built from the cell records (a rerun of `dpgen-bench run` "
              f"rewrites results.csv)", file=sys.stderr)
    return records


def _table(args) -> int:
    from ..jobs.store import write_atomic
    from ..runner.tables import render

    from . import UsageError

    df = _results(args.results_dir)
    published = None
    if args.published is not None:
        from ..reference import published_for

        datasets = [args.published] if args.published else sorted(set(df["dataset"].dropna().astype(str)))
        try:
            published = __import__("pandas").concat([published_for(d) for d in datasets], ignore_index=True)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if args.format != "md":
            raise UsageError(f"--published works with --format md only, not {args.format!r}")
    text = render(df, args.format, published=published)
    if args.output:
        write_atomic(args.output, text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def _plot(args) -> int:
    from ..runner.plots import write_plots

    df = _results(args.results_dir)
    for path in write_plots(df, args.results_dir, args.output_dir):
        print(f"wrote {path}")
    return 0
