"""Write a reference run's ``seed_spread.csv``: the seed-to-seed standard deviation of every (method, ε, metric).

``dpgen-bench run`` compares a fresh run of the default benchmark with ``results/default`` and judges each
difference against this file (``dpgen_bench.runner.report``). The spread comes from the reference run's own
seed plus extra runs of the *same cells but the seed* (check with ``dpgen-bench run CONFIG --dry-run``): the
sample standard deviation (ddof = 1) over all seeds that have a value. Pairs with fewer than 2 seeds are left
out, so the report says "spread not measured" for them. Private ε only (the ε = ∞ cells are deterministic).

Usage: ``python tools/seed_spread.py results/default OTHER_SEEDS_RESULTS_CSV [...]`` (writes
``results/default/seed_spread.csv`` and the extra rows as ``seed_spread_runs.csv``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from dpgen_bench.files import write_atomic
from dpgen_bench.jobs.store import read_rows


def seed_spread(reference: pd.DataFrame, extra: pd.DataFrame, source: str) -> pd.DataFrame:
    """std (ddof 1) and seed count per (method, target_epsilon, metric) over the reference's and the extra rows of
    the methods the extra rows cover, finite ε only."""
    methods = set(extra["method"])
    rows = pd.concat([reference[reference["method"].isin(methods)], extra])
    rows = rows[rows["status"].eq("ok") & rows["value"].notna() & rows["target_epsilon"].map(math.isfinite)]
    rows = rows.drop_duplicates(["method", "target_epsilon", "metric", "seed"])
    spread = rows.groupby(["method", "target_epsilon", "metric"])["value"].agg(std="std", n_seeds="count").reset_index()
    spread = spread[spread["n_seeds"] >= 2]
    spread["std"] = spread["std"].map(lambda v: float(f"{v:.4g}"))
    spread["source"] = source
    return spread


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[0])
    reference = read_rows(folder / "results.csv")
    extra = pd.concat([read_rows(p) for p in argv[1:]])
    seeds = ", ".join(str(s) for s in sorted(extra["seed"].unique()))
    ref_seeds = ", ".join(str(s) for s in sorted(reference["seed"].unique()))
    spread = seed_spread(reference, extra, f"{folder.as_posix()} (seed {ref_seeds}) + seed_spread_runs.csv (seeds {seeds})")
    write_atomic(folder / "seed_spread_runs.csv", extra.to_csv(index=False))
    write_atomic(folder / "seed_spread.csv", spread.to_csv(index=False))
    print(f"wrote {folder / 'seed_spread.csv'}: {len(spread)} (method, ε, metric) pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
