"""DPImageBench's published numbers: shipped as transcribed facts, shown beside measured rows, never in a mean."""

from __future__ import annotations

import pandas as pd
import pytest

from dpgen_bench.reference import published_dpimagebench, published_for
from dpgen_bench.runner.tables import build_table, render


def test_the_accuracy_table_has_13_methods_by_7_datasets_by_two_epsilons_and_7_fidelity_tables():
    df = published_dpimagebench()
    acc, fid = df[df["table"] == "accuracy"], df[df["table"] == "fidelity"]
    assert (acc["method"].nunique(), acc["dataset"].nunique(), sorted(acc["epsilon"].unique())) == (13, 7, [1, 10])
    assert len(acc) == 13 * 7 * 2 and not acc.duplicated(["method", "dataset", "epsilon"]).any()
    assert len(fid) == 7 * 13 * 6 and set(fid["epsilon"]) == {10}


@pytest.mark.parametrize("method, dataset, eps, metric, value", [
    ("DP-MERF", "mnist", 1, "acc-dpi-sensitive-val", "80.3"),
    ("DPDM", "mnist", 10, "acc-dpi-sensitive-val", "97.7"),
    ("PrivImage", "cifar10", 10, "acc-dpi-sensitive-val", "78.4"),
    ("DP-LDM (SD)", "cifar100", 10, "FLD", "8.94"),
    ("PE", "cifar10", 10, "IS", "14.97"),
])
def test_values_are_the_printed_text_of_the_source(method, dataset, eps, metric, value):
    df = published_dpimagebench()
    row = df[(df["method"] == method) & (df["dataset"] == dataset) & (df["epsilon"] == eps) & (df["metric"] == metric)]
    assert row["value"].tolist() == [value]


def test_a_registered_dataset_finds_the_rows_of_its_family():
    assert set(published_for("mnist-5k")["dataset"]) == {"mnist"}
    with pytest.raises(ValueError, match="no published DPImageBench rows"):
        published_for("digits")


def _measured() -> pd.DataFrame:
    rows = [dict(status="ok", dataset="mnist", method="DP-MERF", cell_key=f"k{s}", seed=s, target_epsilon=10.0,
                 spent_epsilon=9.9, accountant="prv", metric="acc-dpi-sensitive-val", value=v, direction="higher",
                 missing_reason=None, extractor=None, same_space_as_training=False,
                 metric_details='{"not_private": true, "notice": "x not private"}', error=None)
            for s, v in enumerate([0.5, 0.7])]
    return pd.DataFrame(rows)


def test_published_rows_never_enter_a_mean():
    df, published = _measured(), published_for("mnist")
    alone = build_table(df)
    (cell,) = alone.cells.values()
    assert cell.mean == pytest.approx(0.6) and cell.not_private  # 81.3 published for DP-MERF stays out
    text = render(df, "md", published=published)
    measured_part, published_part = text.split("Published reference rows")
    assert measured_part.rstrip("\n") == render(df, "md").rstrip("\n")
    assert "0.600 ± 0.141‡" in measured_part and "81.3" not in measured_part
    assert "| DP-MERF [published] | 80.3 | 81.3 |" in published_part
