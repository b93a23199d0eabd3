"""Published reference numbers, shipped as package data: facts transcribed from their source, never measured
here and never mixed into a measured mean (tables show them in a section of their own; ``docs/protocol.md``).

``dpimagebench.csv``: DPImageBench's accuracy table (13 methods × 7 datasets × ε ∈ {1, 10}, %) and its seven
ε = 10 fidelity tables, from the README of github.com/2019ChenGong/DPImageBench at commit 565f8d7, section
"7. Main Results" (the file's header says the same; ``readme_line`` locates every row).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

SOURCE = ("DPImageBench (Gong et al., CCS 2025), README.md of github.com/2019ChenGong/DPImageBench at commit "
          "565f8d7, section \"7. Main Results\"")
COLUMNS = ("table", "method", "dataset", "epsilon", "metric", "value", "unit", "readme_line")


def published_dpimagebench() -> pd.DataFrame:
    """All published rows (columns :data:`COLUMNS`; ``value`` the printed text, accuracy in %; ``unit`` "%"
    or empty)."""
    with resources.files(__name__).joinpath("dpimagebench.csv").open() as f:
        # values stay text, exactly as printed (50.0, 0.00, 8.94): a float would re-format them
        df = pd.read_csv(f, comment="#", dtype={"value": str, "unit": str}, keep_default_na=False)
    if tuple(df.columns) != COLUMNS:
        raise ValueError(f"dpimagebench.csv has columns {list(df.columns)}, expected {list(COLUMNS)}")
    return df


def published_for(dataset: str) -> pd.DataFrame:
    """The published rows of ``dataset``: a published name (``mnist``, ``cifar100``, ``camelyon`` ...) or a
    registered dataset, matched by its family (``mnist-5k`` → ``mnist``; ``celeba32`` → ``celeba32``).
    ValueError listing the published names if there are none."""
    df = published_dpimagebench()
    names = sorted(set(df["dataset"]))
    key = dataset
    if key not in names:
        from ..data import DATASETS

        if key in DATASETS:
            spec = DATASETS.get(key)
            key = spec.family if spec.family in names else key
    if key not in names:
        raise ValueError(f"no published DPImageBench rows for dataset {dataset!r}; published: {names}")
    return df[df["dataset"] == key].reset_index(drop=True)


__all__ = ["COLUMNS", "SOURCE", "published_dpimagebench", "published_for"]
