"""Comparison tables from ``results.csv``: methods × (metric, ε), mean ± std over seeds, best in bold.

A column is a result as the runner recorded it: its name (``metric``: ``FID``, ``FD-digitcnn``, ``acc-logreg``,
...) and its ``direction``, which decides the bold best. Nothing is re-derived from the name: each metric unit
names its results honestly (FID only in Inception-v3 space, see :mod:`dpgen_bench.metrics.frechet_metrics`)
and declares their directions. Metrics that could not be computed get no column; their reasons are listed
under the table. A value computed in the feature space the method trained on is marked † (biased in the
method's favour, DESIGN.md §7). Formats: Markdown, LaTeX (booktabs) and CSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

FORMATS = ("md", "latex", "csv")
ARROW = {"lower": "↓", "higher": "↑"}
LATEX_ARROW = {"lower": r"$\downarrow$", "higher": r"$\uparrow$"}


def eps_label(eps: float) -> str:
    return "∞" if math.isinf(eps) else f"{eps:g}"


def format_number(x: float) -> str:
    """3 significant decimals for values < 1 (accuracies), 2 below 100, 1 above (distances)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    a = abs(x)
    if a >= 100:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


@dataclass
class TableCell:
    mean: float
    std: float | None
    n: int
    best: bool = False
    same_space: bool = False
    """Computed in the feature space the method was trained on (shown with †)."""

    def text(self) -> str:
        mark = "†" if self.same_space else ""
        if self.std is None or self.n < 2:
            return format_number(self.mean) + mark
        return f"{format_number(self.mean)} ± {format_number(self.std)}{mark}"


@dataclass
class ComparisonTable:
    """The pivot: ``rows`` (method labels) × ``columns`` ((metric label, direction, ε))."""

    rows: list[str]
    columns: list[tuple[str, str, float]]
    cells: dict[tuple[str, tuple[str, str, float]], TableCell]
    notes: list[str] = field(default_factory=list)
    spent: dict[tuple[str, float], float] = field(default_factory=dict)
    """(method, target ε) → largest ε spent over seeds."""
    accountants: list[str] = field(default_factory=list)
    audited: dict[tuple[str, float], str] = field(default_factory=dict)
    """(method, target ε) → the correct method's ε lower bounds from ``audit.csv`` (``docs/audit.md``)."""
    power: list[str] = field(default_factory=list)
    """One line per broken-variant audit (the power checks)."""
    tuning_marks: dict[str, str] = field(default_factory=dict)
    """Row → ``‡`` (settings tuned on the reported data) or ``§`` (tuning source undeclared)."""

    def label(self, row: str) -> str:
        """The row's name with its tuning mark, if any."""
        return row + self.tuning_marks.get(row, "")

    @property
    def metrics(self) -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        for label, direction, _ in self.columns:
            if (label, direction) not in seen:
                seen.append((label, direction))
        return seen

    def get(self, row: str, col: tuple[str, str, float]) -> TableCell | None:
        return self.cells.get((row, col))


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    df = df[(df["status"] == "ok") & df["metric"].notna()].copy()
    df["target_epsilon"] = df["target_epsilon"].astype(float)
    if df["dataset"].nunique() > 1:  # one table per results dir normally has one dataset
        df["row"] = df["dataset"].astype(str) + " / " + df["method"].astype(str)
    else:
        df["row"] = df["method"].astype(str)
    return df


def _audit_lines(audit: pd.DataFrame | None) -> tuple[dict[tuple[str, float], str], list[str]]:
    """The ε-audited cells (mechanism bound, its Gaussian-trade-off bound after "·", one-run bound in brackets)
    and the power-check lines."""
    if audit is None or audit.empty:
        return {}, []
    ok = audit[audit["status"] == "ok"]
    audited: dict[tuple[str, float], str] = {}
    for (method, eps), g in ok[ok["variant"] == "correct"].groupby(["method", "target_epsilon"], sort=False):
        rows = {kind: r for kind, (_, r) in zip(g["audit_kind"], g.iterrows())}
        text = _bounds_text(rows["mechanism"]) if "mechanism" in rows else "–"
        if "one-run" in rows:
            text += f" [{float(rows['one-run']['epsilon_lower']):.3f}]"
        if any(_flags(r) for r in rows.values()):
            text += " FLAGGED"
        audited[(str(method), float(eps))] = text
    power = []
    for _, r in ok[ok["variant"] != "correct"].iterrows():
        flags = _flags(r)
        verdict = ("flagged" if "flagged" in flags else "flagged under a Gaussian trade-off only") if flags \
            else "NOT flagged"
        power.append(f"{r['method']} [{r['variant']}] ε={eps_label(float(r['target_epsilon']))} ({r['audit_kind']}): "
                     f"lower bound {_bounds_text(r)} vs claimed {float(r['claimed_epsilon']):.3f} — {verdict}")
    return audited, power


def _is_true(value: Any) -> bool:
    return str(value).lower() == "true"


def _flags(row: pd.Series) -> list[str]:
    """Which of the row's bounds exceed its claim: ``flagged`` (assumption-free), ``flagged_gdp``."""
    return [c for c in ("flagged", "flagged_gdp") if _is_true(row.get(c))]


def _bounds_text(row: pd.Series) -> str:
    """"<assumption-free bound>" and, for a mechanism audit, " · <bound under a Gaussian trade-off>"."""
    text = f"{float(row['epsilon_lower']):.3f}"
    gdp = row.get("epsilon_lower_gdp")
    if gdp is not None and not pd.isna(gdp):
        text += f" · {float(gdp):.3f}"
    return text


def build_table(df: pd.DataFrame, audit: pd.DataFrame | None = None) -> ComparisonTable:
    """Pivot a results frame (``results.csv``) into a :class:`ComparisonTable`; ``audit`` (``audit.csv``)
    adds the ε-audited line and the power checks."""
    ok = _ok_rows(df)
    rows = list(dict.fromkeys(ok["row"]))
    have = ok[ok["value"].notna()]
    metric_order = list(dict.fromkeys(zip(have["metric"], have["direction"])))
    eps_values = sorted(set(have["target_epsilon"]))
    columns: list[tuple[str, str, float]] = []
    cells: dict = {}
    for label, direction in metric_order:
        part = have[(have["metric"] == label) & (have["direction"] == direction)]
        for eps in eps_values:
            col = (label, direction, eps)
            sub = part[part["target_epsilon"] == eps]
            if sub.empty:
                continue
            columns.append(col)
            for row, g in sub.groupby("row", sort=False):
                values = g["value"].astype(float)
                std = float(values.std(ddof=1)) if len(values) > 1 else None
                same = g["same_space_as_training"].astype(str).str.lower().eq("true").any() \
                    if "same_space_as_training" in g else False
                cells[(row, col)] = TableCell(float(values.mean()), std, int(len(values)), same_space=bool(same))
            means = [c.mean for (r, c2), c in cells.items() if c2 == col]
            best = min(means) if direction == "lower" else max(means)
            for (r, c2), c in cells.items():
                if c2 == col and c.mean == best and len(means) > 1:
                    c.best = True
    # Metrics that could not be computed: say why, once per (metric, reason).
    notes = []
    missing = ok[ok["value"].isna()]
    for (label, reason), g in missing.groupby(["metric", "missing_reason"], dropna=False, sort=False):
        where = ", ".join(sorted(set(g["row"])))
        notes.append(f"{label} not computed ({where}): {reason if isinstance(reason, str) else 'no reason given'}")
    if "same_space_as_training" in have:
        flagged = have[have["same_space_as_training"].astype(str).str.lower().eq("true")]
        for (row, extractor), g in flagged.groupby(["row", "extractor"], sort=False):
            labels = ", ".join(dict.fromkeys(g["metric"]))
            notes.append(f"† {row}: {labels} computed in the {extractor} feature space the method was trained on "
                         f"(biased in its favour)")
    failed = df[df["status"] != "ok"]
    for _, r in failed.iterrows():
        notes.append(f"FAILED cell {r['method']} ε={eps_label(float(r['target_epsilon']))} seed={r['seed']}: {r['error']}")
    spent: dict[tuple[str, float], float] = {}
    sp = ok.drop_duplicates("cell_key")
    for (row, eps), g in sp.groupby(["row", "target_epsilon"], sort=False):
        spent[(row, float(eps))] = float(g["spent_epsilon"].astype(float).max())
    accountants = sorted(set(sp["accountant"].dropna().astype(str)))
    audited, power = _audit_lines(audit)
    marks, tuning_notes = _tuning_marks(ok)
    if "epsilon_incl_tuning" in ok and ok["epsilon_incl_tuning"].notna().any():
        for (row, eps), g in ok.drop_duplicates("cell_key").groupby(["row", "target_epsilon"], sort=False):
            incl = g["epsilon_incl_tuning"].dropna().astype(float)
            if len(incl):
                tuning_notes.append(f"{row} ε={eps_label(float(eps))}: ε incl. tuning {incl.max():.3f} (settings chosen "
                                    f"on the private data by a search whose cost is accounted, docs/honest_settings.md)")
    return ComparisonTable(rows, columns, cells, notes + tuning_notes, spent, accountants, audited, power, marks)


TUNED_ON_REPORTED = "‡"
TUNING_UNDECLARED = "§"


def _tuning_marks(ok: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """‡ for rows whose settings were tuned on the reported data (any of their cells), § for undeclared ones,
    with one note each naming the source (``dpgen_bench.runner.tuned_on``). Rows of results written before
    the ``tuned_on`` column existed get no mark."""
    if "tuned_on" not in ok or ok["tuned_on"].isna().all():
        return {}, []
    marks, notes = {}, []
    for row, g in ok.drop_duplicates("cell_key").groupby("row", sort=False):
        sources = ", ".join(sorted(set(g["tuned_on"].dropna().astype(str))))
        verdicts = g["tuned_on_reported_data"].astype(str).str.lower() if "tuned_on_reported_data" in g \
            else pd.Series(dtype=str)
        if verdicts.eq("true").any():
            marks[row] = TUNED_ON_REPORTED
            notes.append(f"{TUNED_ON_REPORTED} {row}: settings tuned on the reported data (tuned_on: {sources}); "
                         f"no ledger counts that selection, so its ε does not bound it and its utility is biased upwards")
        elif g["tuned_on"].astype(str).eq("undeclared").any():
            marks[row] = TUNING_UNDECLARED
            notes.append(f"{TUNING_UNDECLARED} {row}: what its settings were tuned on is undeclared (give tuned_on: in "
                         f"the config entry)")
    return marks, notes


# -------------------------------------------------------------------------------------------- render


def to_markdown(t: ComparisonTable) -> str:
    header = ["method"] + [f"{label} {ARROW.get(d, '')} ε={eps_label(e)}" for label, d, e in t.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * len(t.columns)) + "|"]
    for row in t.rows:
        out = [t.label(row)]
        for col in t.columns:
            c = t.get(row, col)
            out.append("–" if c is None else (f"**{c.text()}**" if c.best else c.text()))
        lines.append("| " + " | ".join(out) + " |")
    text = "\n".join(lines) + "\n"
    text += "\nMean ± std over seeds; best per column in bold; ↓ lower is better, ↑ higher is better.\n"
    if t.spent:
        eps_values = sorted({e for _, e in t.spent})
        text += f"\nε spent (largest over seeds, accountant {', '.join(t.accountants) or 'none'}):\n\n"
        text += "| method | " + " | ".join(f"target ε={eps_label(e)}" for e in eps_values) + " |\n"
        text += "|:---|" + "|".join(["---:"] * len(eps_values)) + "|\n"
        for row in t.rows:
            vals = [t.spent.get((row, e)) for e in eps_values]
            text += "| " + t.label(row) + " | " + " | ".join(_spend_text(v) for v in vals) + " |\n"
        if any(v is not None and math.isnan(v) for v in t.spent.values()):
            text += "\n“not verified”: samples evaluated with `dpgen-bench evaluate`; their ε is the author's claim.\n"
    if t.audited:
        eps_values = sorted({e for _, e in t.audited})
        text += ("\nε audited (empirical lower bounds at the audit's confidence: mechanism audit · the same under a Gaussian "
                 "trade-off curve; one-run black-box audit in brackets; a bound above ε spent would be FLAGGED; "
                 "docs/audit.md):\n\n")
        text += "| method | " + " | ".join(f"target ε={eps_label(e)}" for e in eps_values) + " |\n"
        text += "|:---|" + "|".join(["---:"] * len(eps_values)) + "|\n"
        for row in dict.fromkeys([r for r, _ in t.audited]):
            text += "| " + row + " | " + " | ".join(t.audited.get((row, e), "–") for e in eps_values) + " |\n"
    if t.power:
        text += "\nPower checks (deliberately broken variants; the audit should flag them):\n\n"
        text += "".join(f"- {line}\n" for line in t.power)
    if t.notes:
        text += "\nNotes:\n\n" + "".join(f"- {n}\n" for n in t.notes)
    return text


def _spend_text(v: float | None) -> str:
    if v is None:
        return "–"
    if math.isnan(v):
        return "not verified"
    return "∞" if math.isinf(v) else f"{v:.3f}"


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("_", r"\_"), ("$", r"\$")):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$").replace("∞", r"$\infty$").replace("–", "--").replace("†", r"$^\dagger$").replace("‡", r"$^\ddagger$").replace("§", r"$^\S$")


def to_latex(t: ComparisonTable) -> str:
    metrics = t.metrics
    groups = [[c for c in t.columns if (c[0], c[1]) == m] for m in metrics]
    spec = "l" + "".join(" " + "c" * len(g) for g in groups)
    lines = [r"\begin{tabular}{" + spec + "}", r"\toprule"]
    top, rules, col = [""], [], 2
    for (label, d), g in zip(metrics, groups):
        top.append(rf"\multicolumn{{{len(g)}}}{{c}}{{{_tex(label)} {LATEX_ARROW.get(d, '')}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + len(g) - 1}}}")
        col += len(g)
    lines.append(" & ".join(top) + r" \\")
    lines.append(" ".join(rules))
    eps_tex = [r"\infty" if math.isinf(e) else f"{e:g}" for _, _, e in t.columns]
    lines.append(" & ".join(["Method"] + [rf"$\varepsilon={e}$" for e in eps_tex]) + r" \\")
    lines.append(r"\midrule")
    for row in t.rows:
        out = [_tex(t.label(row))]
        for c in t.columns:
            cell = t.get(row, c)
            if cell is None:
                out.append("--")
            else:
                txt = _tex(cell.text())
                out.append(rf"\textbf{{{txt}}}" if cell.best else txt)
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(t: ComparisonTable) -> str:
    """Wide CSV: one row per method; for each (metric, ε) the mean, std and number of seeds."""
    data = {}
    for c in t.columns:
        label, d, e = c
        stem = f"{label} ({'lower' if d == 'lower' else 'higher'} is better) eps={eps_label(e)}"
        for row in t.rows:
            cell = t.get(row, c)
            data.setdefault(f"{stem} mean", {})[row] = None if cell is None else cell.mean
            data.setdefault(f"{stem} std", {})[row] = None if cell is None else cell.std
            data.setdefault(f"{stem} n_seeds", {})[row] = None if cell is None else cell.n
            data.setdefault(f"{stem} same_space_as_training", {})[row] = None if cell is None else cell.same_space
    if t.tuning_marks:
        data["tuned on reported data"] = {row: t.tuning_marks.get(row) == TUNED_ON_REPORTED for row in t.rows}
    frame = pd.DataFrame(data, index=pd.Index(t.rows, name="method"))
    return frame.to_csv()


def render(df: pd.DataFrame, fmt: Literal["md", "latex", "csv"] = "md", audit: pd.DataFrame | None = None) -> str:
    """Render a results frame (and, in Markdown, its ``audit.csv`` frame) as a comparison table in ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {list(FORMATS)}")
    table = build_table(df, audit)
    return {"md": to_markdown, "latex": to_latex, "csv": to_csv}[fmt](table)


EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv"}


def write_tables(df: pd.DataFrame, directory, audit: pd.DataFrame | None = None) -> list:
    """Write ``table.md``, ``table.tex`` and ``table.csv`` into ``directory`` (atomically); return the paths.
    ``audit``: the ``audit.csv`` frame, if the results directory has one."""
    from pathlib import Path

    from .store import write_atomic

    directory = Path(directory)
    return [write_atomic(directory / f"table.{EXTENSIONS[f]}", render(df, f, audit)) for f in FORMATS]
