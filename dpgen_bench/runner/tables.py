"""Comparison tables from ``results.csv``: methods × (metric, ε), mean ± std over seeds, best in bold.

A column is a result as the runner recorded it: its name (``metric``: ``FID``, ``FD-digitcnn``, ``acc-logreg``,
...) and its ``direction``, which decides the bold best. Nothing is re-derived from the name: each metric unit
names its results honestly (FID only in Inception-v3 space, see :mod:`dpgen_bench.metrics.frechet_metrics`)
and declares their directions. Metrics that could not be computed get no column; their reasons are listed
under the table. A value computed in the feature space the method trained on is marked † (biased in the
method's favour, docs/metrics.md). Formats: Markdown, LaTeX (booktabs) and CSV, each carrying the same legend,
ε-spent table and notes (the LaTeX output is a complete ``table`` float; the CSV has them as columns).
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
    not_private: bool = False
    """Its computation used private data outside the ledger (e.g. epoch selection on the sensitive validation
    split; shown with ‡)."""

    def text(self) -> str:
        mark = ("†" if self.same_space else "") + ("‡" if self.not_private else "")
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
    row_notes: dict[str, list[str]] = field(default_factory=dict)
    """Row → the notes that concern it (what ``notes`` says, per method: the CSV's ``notes`` column)."""

    @property
    def seeds(self) -> int:
        """The most seeds behind any value (1: every value is a single run, with no spread)."""
        return max((c.n for c in self.cells.values()), default=0)

    @property
    def marked(self) -> bool:
        """Whether some value carries † (computed in the feature space its method trained on)."""
        return any(c.same_space for c in self.cells.values())

    def legend(self) -> str:
        """What a reader needs to read the values: spread, bold, arrows and, where used, †."""
        spread = "One seed per value (no spread)" if self.seeds <= 1 else f"Mean ± std over {self.seeds} seeds"
        text = f"{spread}; best per column in bold; ↓ lower is better, ↑ higher is better."
        if self.marked:
            text += " †: computed in the feature space the method was trained on (biased in its favour)."
        if TUNED_ON_REPORTED in self.tuning_marks.values():
            text += f" {TUNED_ON_REPORTED}: settings tuned on the reported data (not in ε; docs/honest_settings.md)."
        if TUNING_UNDECLARED in self.tuning_marks.values():
            text += f" {TUNING_UNDECLARED}: what the settings were tuned on is not declared."
        return text

    tuning_marks: dict[str, str] = field(default_factory=dict)
    """Row → ``¶`` (settings tuned on the reported data) or ``§`` (tuning source undeclared)."""

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
    """The ε-audited cells (hook bound, its Gaussian-trade-off bound after "·", the generic audit's in braces,
    one-run bound in brackets)
    and the power-check lines."""
    if audit is None or audit.empty:
        return {}, []
    ok = audit[audit["status"] == "ok"]
    audited: dict[tuple[str, float], str] = {}
    for (method, eps), g in ok[ok["variant"] == "correct"].groupby(["method", "target_epsilon"], sort=False):
        rows = {kind: r for kind, (_, r) in zip(g["audit_kind"], g.iterrows())}
        hook = rows.get("hook", rows.get("mechanism"))  # "mechanism": rows written before the generic audit
        text = _bounds_text(hook) if hook is not None else "–"
        if "generic" in rows:
            text += f" {{{_bounds_text(rows['generic'])}}}"
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


def _details(text: Any) -> dict:
    """A row's ``metric_details`` (JSON text) as a dict; {} when absent or unreadable."""
    import json

    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _notices(have: pd.DataFrame) -> list[str]:
    """The distinct ``notice`` texts metric units recorded in their details (protocol caveats), ‡ first."""
    if "metric_details" not in have:
        return []
    found: dict[str, None] = {}
    for text in have["metric_details"]:
        notice = _details(text).get("notice")
        if isinstance(notice, str):
            found[notice] = None
    return [("‡ " if "not private" in n else "") + n for n in sorted(found, key=lambda n: "not private" not in n)]


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
                cells[(row, col)] = TableCell(float(values.mean()), std, int(len(values)), same_space=bool(same),
                                              not_private=any(_details(d).get("not_private") is True
                                                              for d in g.get("metric_details", [])))
            means = [c.mean for (r, c2), c in cells.items() if c2 == col]
            best = min(means) if direction == "lower" else max(means)
            for (r, c2), c in cells.items():
                if c2 == col and c.mean == best and len(means) > 1:
                    c.best = True
    # Metrics that could not be computed: say why, once per (metric, reason).
    notes: list[str] = []
    row_notes: dict[str, list[str]] = {}
    missing = ok[ok["value"].isna()]
    for (label, reason), g in missing.groupby(["metric", "missing_reason"], dropna=False, sort=False):
        where = ", ".join(sorted(set(g["row"])))
        why = reason if isinstance(reason, str) else "no reason given"
        notes.append(f"{label} not computed ({where}): {why}")
        for row in sorted(set(g["row"])):
            row_notes.setdefault(row, []).append(f"{label} not computed: {why}")
    if "same_space_as_training" in have:
        flagged = have[have["same_space_as_training"].astype(str).str.lower().eq("true")]
        for (row, extractor), g in flagged.groupby(["row", "extractor"], sort=False):
            labels = ", ".join(dict.fromkeys(g["metric"]))
            what = f"{labels} computed in the {extractor} feature space the method was trained on (biased in its favour)"
            notes.append(f"† {row}: {what}")
            row_notes.setdefault(str(row), []).append(f"† {what}")
    notes += _notices(have)
    failed = df[df["status"] != "ok"]
    for _, r in failed.iterrows():
        what = f"FAILED cell {r['method']} ε={eps_label(float(r['target_epsilon']))} seed={r['seed']}: {r['error']}"
        notes.append(what)
        row_notes.setdefault(str(r["method"]), []).append(what)
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
    return ComparisonTable(rows, columns, cells, notes + tuning_notes, spent, accountants, audited, power, row_notes, marks)


TUNED_ON_REPORTED = "¶"
TUNING_UNDECLARED = "§"


def _tuning_marks(ok: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """¶ for rows whose settings were tuned on the reported data (any of their cells), § for undeclared ones,
    with one note each naming the source (``dpgen_bench.jobs.tuned_on``). Rows of results written before
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
    text += "\n" + t.legend() + "\n"
    if t.spent:
        eps_values = sorted({e for _, e in t.spent})
        text += f"\n{_spend_title(t)}:\n\n"
        text += "| method | " + " | ".join(f"target ε={eps_label(e)}" for e in eps_values) + " |\n"
        text += "|:---|" + "|".join(["---:"] * len(eps_values)) + "|\n"
        for row in t.rows:
            vals = [t.spent.get((row, e)) for e in eps_values]
            text += "| " + t.label(row) + " | " + " | ".join(_spend_text(v) for v in vals) + " |\n"
        if _unverified(t):
            text += f"\n{UNVERIFIED}\n"
    if t.audited:
        eps_values = sorted({e for _, e in t.audited})
        text += f"\n{AUDITED}:\n\n"
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


UNVERIFIED = "“not verified”: samples evaluated with `dpgen-bench evaluate`; their ε is the author's claim."
AUDITED = ("ε audited (empirical lower bounds at the audit's confidence: hook-based mechanism audit · the same under a "
           "Gaussian trade-off curve where it holds; the generic audit in braces; one-run black-box audit in brackets; "
           "a bound above ε spent would be FLAGGED; docs/audit.md)")


def _spend_title(t: ComparisonTable) -> str:
    return f"ε spent (largest over seeds, accountant {', '.join(t.accountants) or 'none'})"


def _unverified(t: ComparisonTable) -> bool:
    return any(v is not None and math.isnan(v) for v in t.spent.values())


def _spend_text(v: float | None) -> str:
    if v is None:
        return "–"
    if math.isnan(v):
        return "not verified"
    return "∞" if math.isinf(v) else f"{v:.3f}"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "$": r"\$", "{": r"\{",
                "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"±": r"$\pm$", "∞": r"$\infty$", "–": "--", "†": r"$^\dagger$", "↓": r"$\downarrow$", "↑": r"$\uparrow$",
                "ε": r"$\varepsilon$", "δ": r"$\delta$", "·": r"$\cdot$", "“": "``", "”": "''", "≤": r"$\leq$",
                "‡": r"$^\ddagger$", "§": r"$^\S$", "¶": r"$^\P$"}


def _tex(s: str) -> str:
    """Plain text as LaTeX: special characters escaped (one pass, so no escape is escaped again), then the
    symbols the tables use as math."""
    return "".join(_TEX_UNICODE.get(ch, _TEX_SPECIAL.get(ch, ch)) for ch in s)


def _latex_results(t: ComparisonTable) -> list[str]:
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
    return lines + [r"\bottomrule", r"\end{tabular}"]


def _latex_spend(t: ComparisonTable) -> list[str]:
    eps_values = sorted({e for _, e in t.spent})
    head = ["Method"] + [_tex(f"target ε={eps_label(e)}") for e in eps_values]
    lines = [r"\begin{tabular}{l" + "c" * len(eps_values) + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    for row in t.rows:
        lines.append(" & ".join([_tex(row)] + [_tex(_spend_text(t.spent.get((row, e)))) for e in eps_values]) + r" \\")
    return lines + [r"\bottomrule", r"\end{tabular}"]


def to_latex(t: ComparisonTable) -> str:
    """A complete ``table`` float (needs ``booktabs``): the results tabular, its legend as the caption, the ε-spent
    tabular, then the notes (metrics not computed and why, what † marks, failed cells, audits) in a footnote-size
    block — everything the Markdown table says."""
    caption = _tex(t.legend())
    lines = [r"% dpgen-bench comparison table; needs \usepackage{booktabs}", r"\begin{table}[ht]", r"\centering",
             rf"\caption{{{caption}}}", *_latex_results(t)]
    if t.spent:
        lines += [r"\par\medskip", rf"{_tex(_spend_title(t))}\par\smallskip", *_latex_spend(t)]
    notes = ([UNVERIFIED] if t.spent and _unverified(t) else []) + t.notes
    if t.audited:
        notes.append(AUDITED + ": " + "; ".join(f"{row} ε={eps_label(e)}: {text}" for (row, e), text in t.audited.items()))
    notes += [f"Power check: {line}" for line in t.power]
    if notes:
        lines += [r"\par\smallskip", r"{\footnotesize\raggedright"] + [_tex(n) + r"\par" for n in notes] + ["}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(t: ComparisonTable) -> str:
    """Wide CSV: one row per method; for each (metric, ε) the mean, std, number of seeds and the † mark
    (``same_space_as_training``); then the ε spent per target ε (as the Markdown spend table), the accountant, and
    ``notes``: what the Markdown notes say about that method (metrics not computed and why, † explained, failures)."""
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
    for e in sorted({e for _, e in t.spent}):
        data[f"eps={eps_label(e)} spent"] = {row: _spend_text(t.spent.get((row, e))) for row in t.rows}
    data["accountant"] = {row: ", ".join(t.accountants) for row in t.rows}
    data["notes"] = {row: " | ".join(t.row_notes.get(row, [])) for row in t.rows}
    if t.tuning_marks:
        data["tuned on reported data"] = {row: t.tuning_marks.get(row) == TUNED_ON_REPORTED for row in t.rows}
    frame = pd.DataFrame(data, index=pd.Index(t.rows, name="method"))
    return frame.to_csv()


def published_markdown(published: pd.DataFrame, source: str) -> str:
    """A separate Markdown section of published reference rows (``dpgen_bench.reference``): method ×
    (metric, ε), values exactly as published. It is built from ``published`` alone, so no published number can
    enter a measured mean, and says so."""
    if published.empty:
        return ""
    cols = list(dict.fromkeys(zip(published["metric"], published["epsilon"].astype(float), published["unit"])))
    header = ["method (published)"] + [f"{m}{f' ({u})' if u else ''} ε={eps_label(e)}" for m, e, u in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * len(cols)) + "|"]
    for method, g in published.groupby("method", sort=False):
        by = {(m, float(e)): v for m, e, v in zip(g["metric"], g["epsilon"], g["value"])}
        lines.append("| " + " | ".join([f"{method} [published]"] + [
            by.get((m, e), "–") for m, e, _ in cols]) + " |")
    datasets = ", ".join(dict.fromkeys(published["dataset"]))
    return (f"\nPublished reference rows ({datasets}; {source}). Not measured here, never part of the means above; "
            f"their protocol (official split, 60,000 samples, sensitive-val selection, FID against the train split) "
            f"differs from the rows above unless those say protocol dpimagebench at full settings:\n\n"
            + "\n".join(lines) + "\n")


def render(df: pd.DataFrame, fmt: Literal["md", "latex", "csv"] = "md", audit: pd.DataFrame | None = None,
           published: pd.DataFrame | None = None) -> str:
    """Render a results frame (and, in Markdown, its ``audit.csv`` frame and published reference rows,
    :mod:`dpgen_bench.reference`, in a section of their own) as a comparison table in ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {list(FORMATS)}")
    if published is not None and fmt != "md":
        raise ValueError(f"published reference rows are shown in the Markdown table only, not {fmt!r}")
    table = build_table(df, audit)
    text = {"md": to_markdown, "latex": to_latex, "csv": to_csv}[fmt](table)
    if published is not None:
        from ..reference import SOURCE

        text += published_markdown(published, SOURCE)
    return text


EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv"}


def write_tables(df: pd.DataFrame, directory, audit: pd.DataFrame | None = None) -> list:
    """Write ``table.md``, ``table.tex`` and ``table.csv`` into ``directory`` (atomically); return the paths.
    ``audit``: the ``audit.csv`` frame, if the results directory has one."""
    from pathlib import Path

    from .store import write_atomic

    directory = Path(directory)
    return [write_atomic(directory / f"table.{EXTENSIONS[f]}", render(df, f, audit)) for f in FORMATS]
