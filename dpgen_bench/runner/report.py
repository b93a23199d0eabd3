"""The end-of-run report: the compact results table (with the spend), and how this run compares with the
committed reference run of the same config.

The reference of a run whose output directory is ``<anything>/NAME`` is ``results/NAME`` of the source
checkout (e.g. ``runs/default`` → ``results/default``), if it exists and is not the run itself. Cells are
matched by their key (the hash of the fully resolved config), so only identical settings are compared. A
difference is judged against the seed-to-seed spread measured for that (method, ε, metric), read from the
reference's ``seed_spread.csv`` (columns ``method, target_epsilon, metric, std, n_seeds``) where it has one:
two single runs differ by a value of std √2·σ, and σ is estimated from ``n_seeds`` runs, so the 95 % range is
±t₀.₉₇₅(n_seeds − 1)·√2·std (Student's t; with 3 seeds t = 4.30).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..jobs.store import read_rows
from .tables import eps_label, render

SPREAD_FILE = "seed_spread.csv"


REPO = Path(__file__).resolve().parents[2]


def reference_dir(output_dir: str | Path, repo: Path = REPO) -> Path | None:
    """``results/<name of output_dir>`` in the source checkout, or None (pip install, none committed, or itself)."""
    candidate = repo / "results" / Path(output_dir).name
    if not (candidate / "results.csv").is_file():
        return None
    if candidate.resolve() == Path(output_dir).resolve():
        return None
    return candidate


def tolerance(std: float, n_seeds: int) -> float:
    """Half-width of the 95 % range of the difference of two single runs, from a std over ``n_seeds`` runs."""
    from scipy.stats import t

    return float(t.ppf(0.975, max(int(n_seeds) - 1, 1)) * math.sqrt(2.0) * std)


def _spread(reference: Path) -> dict[tuple[str, float, str], float]:
    """(method, ε, metric) → the tolerance on a difference (see :func:`tolerance`)."""
    path = reference / SPREAD_FILE
    if not path.is_file():
        return {}
    df = read_rows(path)
    n = df["n_seeds"] if "n_seeds" in df else pd.Series(3, index=df.index)
    return {(str(r.method), float(r.target_epsilon), str(r.metric)): tolerance(float(r.std), int(k))
            for r, k in zip(df.itertuples(), n)}


def compare_with_reference(run: pd.DataFrame, reference: pd.DataFrame, spread: dict | None = None) -> pd.DataFrame:
    """One row per (cell, metric) present in both, with this run's value, the reference value, the difference
    and, where a tolerance is known (``spread``: (method, ε, metric) → tolerance), whether |difference| ≤ it."""
    spread = spread or {}
    cols = ["cell_key", "method", "target_epsilon", "metric", "value"]
    mine = run[(run["status"] == "ok") & run["value"].notna()][cols]
    theirs = reference[(reference["status"] == "ok") & reference["value"].notna()][["cell_key", "metric", "value"]]
    both = mine.merge(theirs, on=["cell_key", "metric"], suffixes=("", "_reference"))
    both["difference"] = both["value"] - both["value_reference"]
    stds = [spread.get((m, float(e), str(k))) for m, e, k in zip(both["method"], both["target_epsilon"], both["metric"])]
    both["tolerance"] = stds
    both["within_spread"] = [None if s is None else bool(abs(d) <= s) for d, s in zip(both["difference"], stds)]
    return both.drop(columns="cell_key").reset_index(drop=True)


def _comparison_text(cmp: pd.DataFrame, reference: Path) -> str:
    if cmp.empty:
        return f"No cell of this run matches the reference run in {reference} (different settings).\n"
    lines = [f"Compared with the committed reference run ({reference}), same cells:", ""]
    for r in cmp.itertuples():
        verdict = "spread not measured" if r.within_spread is None else (
            f"within the run-to-run range ±{r.tolerance:.3g}" if r.within_spread
            else f"OUTSIDE the run-to-run range ±{r.tolerance:.3g}")
        lines.append(f"  {r.method} ε={eps_label(float(r.target_epsilon))} {r.metric}: {r.value:.4g} vs "
                     f"{r.value_reference:.4g} (Δ {r.difference:+.3g}; {verdict})")
    return "\n".join(lines) + "\n"


def spend_lines(df: pd.DataFrame) -> str:
    """One line per cell: the ε recomputed from its ledger against its target, with the accountant."""
    lines = ["ε spent per cell (recomputed from its ledger):"]
    for r in df.drop_duplicates("cell_key").itertuples():
        spent = r.spent_epsilon
        if pd.isna(spent):
            what = "not verified (external samples)" if r.status == "ok" else f"{r.status}"
        elif math.isinf(float(spent)):
            what = "non-private (∞)"
        else:
            what = f"{float(spent):.4f} of {float(r.target_epsilon):g} ({r.accountant})"
        lines.append(f"  {r.dataset}/{r.method}/eps={eps_label(float(r.target_epsilon))}/seed={r.seed}: {what}")
    return "\n".join(lines) + "\n"


def run_report(root: str | Path, repo: Path = REPO) -> str:
    """The table (with spend) of ``root``'s results, per-cell spend, then the comparison with its reference."""
    root = Path(root)
    df = read_rows(root / "results.csv")
    text = render(df, "md") + "\n" + spend_lines(df)
    reference = reference_dir(root, repo)
    if reference is not None:
        cmp = compare_with_reference(df, read_rows(reference / "results.csv"), _spread(reference))
        text += "\n" + _comparison_text(cmp, reference)
    return text
