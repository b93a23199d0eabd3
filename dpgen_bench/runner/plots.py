"""Headless matplotlib plots of a results directory: metric vs ε per method, and sample grids
(rows = methods, columns = ε) per dataset."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display needed, safe in worker processes and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .tables import ARROW, _ok_rows, eps_label  # noqa: E402


def _save(fig, path: Path) -> Path:
    from .store import write_atomic
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return write_atomic(path, buf.getvalue())


def plot_metrics_vs_epsilon(df: pd.DataFrame, path: str | Path) -> Path | None:
    """One panel per metric: mean ± std over seeds (the value, with one seed) against ε (log axis), one line per
    method; a method whose values are computed in its own training feature space is marked † (legend and panel).

    The non-private (ε = ∞) reference, if present, is drawn as a dashed horizontal line.
    Returns None when there is nothing to plot.
    """
    ok = _ok_rows(df)
    ok = ok[ok["value"].notna()]
    if ok.empty:
        return None
    metrics = list(dict.fromkeys(zip(ok["metric"], ok["direction"])))
    suptitle, marked = metrics_plot_text(ok)
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    methods = list(dict.fromkeys(ok["row"]))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, (label, direction) in zip(axes.flat, metrics):
        part = ok[(ok["metric"] == label) & (ok["direction"] == direction)]
        for method in methods:
            g = part[part["row"] == method].groupby("target_epsilon")["value"]
            stats = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1)}).fillna({"std": 0.0})
            finite = stats[[math.isfinite(e) for e in stats.index]]
            name = f"{method} †" if method in marked.get(label, ()) else method
            if not finite.empty:
                ax.errorbar(finite.index, finite["mean"], yerr=finite["std"], marker="o", capsize=3,
                            label=name, color=colours[method])
            if any(math.isinf(e) for e in stats.index):
                ax.axhline(stats.loc[math.inf, "mean"], ls="--", lw=1, color=colours[method],
                           label=f"{name} (non-private)")
        ax.set_xscale("log")
        ax.set_xlabel("target ε")
        dagger = f"\n† {', '.join(marked[label])}" if marked.get(label) else ""
        ax.set_title(f"{label} {ARROW.get(direction, '')}{dagger}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), bbox_to_anchor=(0.5, -0.02 - 0.04 * (len(labels) > 4)))
    fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, Path(path))


def metrics_plot_text(ok: pd.DataFrame) -> tuple[str, dict[str, list[str]]]:
    """The metrics plot's title — what a point is ("one seed", or the mean ± std over k seeds) and what † means
    when it is used — and, per metric, the methods whose values are marked † (computed in the feature space the
    method trained on), as the tables mark them."""
    seeds = int(ok.groupby(["row", "target_epsilon", "metric"])["seed"].nunique().max())
    spread = "one seed" if seeds <= 1 else f"mean ± std over {seeds} seeds"
    marked: dict[str, list[str]] = {}
    if "same_space_as_training" in ok:
        flagged = ok[ok["same_space_as_training"].astype(str).str.lower().eq("true")]
        for metric, g in flagged.groupby("metric", sort=False):
            marked[str(metric)] = list(dict.fromkeys(g["row"].astype(str)))
    datasets = ", ".join(sorted(set(ok["dataset"].astype(str))))
    title = f"{datasets}: metric vs ε ({spread})"
    if marked:
        title += "\n† computed in the feature space the method was trained on (biased in its favour)"
    return title, marked


def plot_sample_grids(df: pd.DataFrame, root: str | Path, directory: str | Path) -> list[Path]:
    """One figure per dataset: rows = methods, columns = ε, each the stored ``samples.png`` of the
    lowest seed."""
    root = Path(root)
    ok = df[df["status"] == "ok"].drop_duplicates("cell_key").copy()
    ok["target_epsilon"] = ok["target_epsilon"].astype(float)
    out = []
    for dataset, d in ok.groupby("dataset", sort=False):
        methods = list(dict.fromkeys(d["method"]))
        eps_values = sorted(set(d["target_epsilon"]))
        fig, axes = plt.subplots(len(methods), len(eps_values), figsize=(2.6 * len(eps_values), 2.8 * len(methods)), squeeze=False)
        for i, method in enumerate(methods):
            for j, eps in enumerate(eps_values):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                sub = d[(d["method"] == method) & (d["target_epsilon"] == eps)].sort_values("seed")
                png = root / "cells" / str(sub["cell_key"].iloc[0]) / "samples.png" if len(sub) else None
                image, why = _read_grid(png)
                if image is not None:
                    ax.imshow(image, cmap="gray")
                else:
                    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
                if i == 0:
                    ax.set_title(f"ε = {eps_label(eps)}")
                if j == 0:
                    ax.set_ylabel(method)
        fig.suptitle(f"{dataset}: samples (rows = methods, columns = ε; one row per class)")
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(dataset))
        out.append(_save(fig, Path(directory) / f"samples_{safe}.png"))
    return out


def _read_grid(png: Path | None):
    """(image, None), or (None, why it cannot be shown): a damaged file must not sink the whole figure."""
    if png is None or not png.exists():
        return None, "no samples"
    try:
        return plt.imread(png), None
    except Exception:  # PIL/matplotlib raise various errors for a corrupt file
        return None, "unreadable samples.png"


def write_plots(df: pd.DataFrame, root: str | Path, directory: str | Path | None = None) -> list[Path]:
    """Render all plots of a results directory into ``directory`` (default ``root/plots``)."""
    directory = Path(directory) if directory is not None else Path(root) / "plots"
    paths = []
    p = plot_metrics_vs_epsilon(df, directory / "metrics_vs_epsilon.png")
    if p is not None:
        paths.append(p)
    paths.extend(plot_sample_grids(df, root, directory))
    return paths
