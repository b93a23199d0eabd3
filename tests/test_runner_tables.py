"""Tables and the results store, on hand-made results (no training)."""

from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest

from dpgen_bench.runner.plots import write_plots
from dpgen_bench.runner.store import COLUMNS, ResultsStore, write_atomic
from dpgen_bench.runner.tables import build_table, render


def _row(method, eps, seed, metric, value, direction="lower", extractor=None, reason=None, status="ok", error=None):
    return {
        "cell_key": f"{method}-{eps}-{seed}",
        "status": status,
        "error": error,
        "dataset": "mnist-5k",
        "method": method,
        "target_epsilon": eps,
        "spent_epsilon": eps * 0.99,
        "accountant": "prv",
        "seed": seed,
        "metric": metric,
        "value": value,
        "direction": direction,
        "missing_reason": reason,
        "extractor": extractor,
    }


def _frame(rows):
    return pd.DataFrame(rows)


@pytest.fixture
def results():
    rows = []
    for seed, jitter in ((0, 0.0), (1, 2.0)):
        rows += [
            _row("DP-MEPF", 1.0, seed, "FD-digitcnn", 10.0 + jitter, extractor="digitcnn"),
            _row("DP-MEPF", 10.0, seed, "FD-digitcnn", 5.0 + jitter, extractor="digitcnn"),
            _row("DP-CGAN", 1.0, seed, "FD-digitcnn", 30.0 + jitter, extractor="digitcnn"),
            _row("DP-CGAN", 10.0, seed, "FD-digitcnn", 4.0 + jitter, extractor="digitcnn"),
            _row("DP-MEPF", 1.0, seed, "acc-logreg", 0.70 + jitter / 100, "higher"),
            _row("DP-MEPF", 10.0, seed, "acc-logreg", 0.78 + jitter / 100, "higher"),
            _row("DP-CGAN", 1.0, seed, "acc-logreg", 0.46 + jitter / 100, "higher"),
            _row("DP-CGAN", 10.0, seed, "acc-logreg", 0.80 + jitter / 100, "higher"),
            _row("DP-MEPF", 1.0, seed, "FID", None, extractor="inception-v3-tf-2015-12-05", reason="Inception weights not found"),
            _row("DP-CGAN", 1.0, seed, "FID", None, extractor="inception-v3-tf-2015-12-05", reason="Inception weights not found"),
        ]
    return _frame(rows)


def test_columns_are_the_recorded_result_names_never_renamed():
    # Naming is the metric unit's job (FID only in Inception space); the table prints what was recorded.
    df = _frame([
        _row("A", 1.0, 0, "FD-random-cnn", 3.0, extractor="random-cnn"),
        _row("A", 1.0, 0, "fid", 4.0, extractor="efficientnet-lite0"),
        _row("B", 1.0, 0, "FD-random-cnn", 5.0, extractor="random-cnn"),
    ])
    assert [label for label, _, _ in build_table(df).columns] == ["FD-random-cnn", "fid"]


def test_best_follows_the_recorded_direction_not_the_metric_name():
    # Names that suggest the opposite direction: only the recorded direction may decide the bold cell.
    df = _frame([
        _row("A", 1.0, 0, "acc-logreg", 0.9, "lower"), _row("B", 1.0, 0, "acc-logreg", 0.5, "lower"),
        _row("A", 1.0, 0, "FD-x", 10.0, "higher"), _row("B", 1.0, 0, "FD-x", 20.0, "higher"),
    ])
    table = build_table(df)
    assert table.get("B", ("acc-logreg", "lower", 1.0)).best and not table.get("A", ("acc-logreg", "lower", 1.0)).best
    assert table.get("B", ("FD-x", "higher", 1.0)).best and not table.get("A", ("FD-x", "higher", 1.0)).best
    assert "acc-logreg ↓ ε=1" in render(df, "md") and "FD-x ↑ ε=1" in render(df, "md")


def test_best_is_bold_by_each_metrics_direction(results):
    table = build_table(results)
    fd1 = ("FD-digitcnn", "lower", 1.0)
    fd10 = ("FD-digitcnn", "lower", 10.0)
    acc10 = ("acc-logreg", "higher", 10.0)
    assert table.get("DP-MEPF", fd1).best and not table.get("DP-CGAN", fd1).best
    assert table.get("DP-CGAN", fd10).best and not table.get("DP-MEPF", fd10).best
    assert table.get("DP-CGAN", acc10).best and not table.get("DP-MEPF", acc10).best
    cell = table.get("DP-MEPF", fd1)
    assert cell.mean == pytest.approx(11.0) and cell.std == pytest.approx(math.sqrt(2.0)) and cell.n == 2


def test_missing_fid_gets_no_column_but_a_note_with_the_reason(results):
    table = build_table(results)
    assert {label for label, _, _ in table.columns} == {"FD-digitcnn", "acc-logreg"}
    md = render(results, "md")
    assert "FID not computed (DP-CGAN, DP-MEPF): Inception weights not found" in md
    assert "FID ↓" not in md


def test_markdown_marks_direction_and_bolds_mean_pm_std(results):
    md = render(results, "md")
    header = md.splitlines()[0]
    assert "FD-digitcnn ↓ ε=1" in header and "acc-logreg ↑ ε=10" in header
    assert "**11.00 ± 1.41**" in md  # DP-MEPF FD at ε=1, best
    assert "target ε=10" in md and "9.900" in md  # the ε-spent table


def test_single_seed_shows_the_mean_without_a_spread():
    df = _frame([_row("A", 1.0, 0, "acc-logreg", 0.5, "higher"), _row("B", 1.0, 0, "acc-logreg", 0.6, "higher")])
    md = render(df, "md")
    assert "| A | 0.500 |" in md and "| B | **0.600** |" in md and "±" not in md.split("\n\n")[0]


def test_latex_is_booktabs_with_escaped_names(results):
    df = results.assign(method=results["method"].str.replace("DP-MEPF", "DP_MEPF & co"))
    tex = render(df, "latex")
    lines = tex.splitlines()
    first = lines.index(r"\begin{tabular}{l cc cc}")
    assert lines[first + 1] == r"\toprule"
    assert r"\multicolumn{2}{c}{FD-digitcnn $\downarrow$}" in tex and r"\cmidrule(lr){2-3}" in tex
    assert r"DP\_MEPF \& co" in tex and r"\textbf{11.00 $\pm$ 1.41}" in tex
    assert lines[lines.index(r"\bottomrule", first) + 1] == r"\end{tabular}"


def test_latex_is_a_complete_table_with_the_legend_the_spend_and_every_note_of_the_markdown(results):
    tex = render(results, "latex")
    lines = tex.splitlines()
    assert lines[1] == r"\begin{table}[ht]" and lines[-1] == r"\end{table}"
    caption = next(line for line in lines if line.startswith(r"\caption{"))
    assert r"Mean $\pm$ std over 2 seeds; best per column in bold" in caption
    assert tex.count(r"\begin{tabular}") == 2  # results, then the ε spent per method and target ε
    assert r"$\varepsilon$ spent (largest over seeds, accountant prv)" in tex
    assert r"DP-MEPF & 0.990 & 9.900 \\" in tex
    assert "FID not computed (DP-CGAN, DP-MEPF): Inception weights not found" in tex  # the FID notice


def test_a_dagger_is_explained_in_every_format_and_one_seed_is_said_not_a_spread():
    rows = []
    for method, same in (("DP-MEPF", True), ("DP-CGAN", False)):
        row = _row(method, 1.0, 0, "precision", 0.9 if same else 0.5, "higher", extractor="efficientnet-lite0")
        row["same_space_as_training"] = same
        rows.append(row)
    df = _frame(rows)
    md, tex = render(df, "md"), render(df, "latex")
    assert "One seed per value (no spread)" in md and "Mean ± std" not in md
    assert "†: computed in the feature space the method was trained on" in md
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption{"))
    assert r"One seed per value (no spread)" in caption
    assert r"$^\dagger$: computed in the feature space the method was trained on" in caption
    assert r"$^\dagger$ DP-MEPF: precision computed in the efficientnet-lite0 feature space" in tex
    import io

    csv = pd.read_csv(io.StringIO(render(df, "csv")), index_col=0)
    assert csv.loc["DP-MEPF", "precision (higher is better) eps=1 same_space_as_training"]
    assert csv.loc["DP-MEPF", "notes"].startswith("† precision computed in the efficientnet-lite0 feature space")
    assert pd.isna(csv.loc["DP-CGAN", "notes"])


def test_latex_escapes_every_special_character_once():
    from dpgen_bench.runner.tables import _tex

    assert _tex(r"a_b {c} 50% ~x^2 \ & #") == r"a\_b \{c\} 50\% \textasciitilde{}x\textasciicircum{}2 \textbackslash{} \& \#"


def test_csv_table_has_mean_std_seed_count_and_same_space_columns(results):
    import io

    csv = pd.read_csv(io.StringIO(render(results, "csv")), index_col=0)
    assert csv.shape == (2, 4 * 4 + 2 + 2)  # + ε spent at ε = 1 and 10, the accountant, the notes
    assert csv.loc["DP-MEPF", "FD-digitcnn (lower is better) eps=1 mean"] == pytest.approx(11.0)
    assert csv.loc["DP-MEPF", "FD-digitcnn (lower is better) eps=1 n_seeds"] == 2


def test_csv_carries_the_spend_the_accountant_and_each_methods_notes(results):
    import io

    csv = pd.read_csv(io.StringIO(render(results, "csv")), index_col=0)
    assert csv.loc["DP-MEPF", "eps=10 spent"] == pytest.approx(9.9) and csv.loc["DP-CGAN", "eps=1 spent"] == pytest.approx(0.99)
    assert set(csv["accountant"]) == {"prv"}
    assert csv.loc["DP-CGAN", "notes"] == "FID not computed: Inception weights not found"


def test_failed_cells_are_listed_not_averaged(results):
    df = pd.concat([results, _frame([_row("DP-MEPF", 1.0, 2, None, None, status="failed", error="PrivacyCheckError: too much")])])
    table = build_table(df)
    assert table.get("DP-MEPF", ("FD-digitcnn", "lower", 1.0)).n == 2
    assert any("FAILED cell DP-MEPF ε=1 seed=2: PrivacyCheckError" in n for n in table.notes)


def test_unknown_format_is_refused(results):
    with pytest.raises(ValueError, match="unknown table format 'html'"):
        render(results, "html")


def test_the_metrics_plot_says_one_seed_when_there_is_one_and_marks_the_dagger(results):
    from dpgen_bench.runner.plots import metrics_plot_text
    from dpgen_bench.runner.tables import _ok_rows

    title, marked = metrics_plot_text(_ok_rows(results))
    assert "mean ± std over 2 seeds" in title and "†" not in title and marked == {}
    one = results[results["seed"] == 0].copy()
    one["same_space_as_training"] = (one["method"] == "DP-MEPF") & (one["metric"] == "FD-digitcnn")
    title, marked = metrics_plot_text(_ok_rows(one))
    assert "(one seed)" in title and "± std" not in title
    assert "† computed in the feature space the method was trained on" in title
    assert marked == {"FD-digitcnn": ["DP-MEPF"]}


def test_plots_render_headless(results, tmp_path):
    paths = write_plots(results.assign(status="ok"), tmp_path, tmp_path / "plots")
    assert [p.name for p in paths] == ["metrics_vs_epsilon.png", "samples_mnist-5k.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


# --------------------------------------------------------------------------------------------- the store


def test_write_atomic_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "a" / "results.csv"
    write_atomic(target, "x,y\n1,2\n")
    write_atomic(target, "x,y\n3,4\n")
    assert target.read_text() == "x,y\n3,4\n"
    assert os.listdir(target.parent) == ["results.csv"]


def test_records_ignore_leftover_temporaries_and_unreadable_files(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_record({"key": "k1", "status": "ok", "artefacts": {},
                        "rows": [{"cell_key": "k1", "metric": "m", "value": 1.0, "status": "ok"}]})
    # what a process killed inside write_atomic can leave behind, and a file truncated by some other tool
    (store.cells_dir / ".k2.json.123.abcd.tmp").write_text('{"key": "k2", "sta')
    (store.cells_dir / "k3.json").write_text('{"key": "k3", "sta')
    assert [r["key"] for r in store.records()] == ["k1"]
    assert store.is_done("k1") and not store.is_done("k2") and not store.is_done("k3")
    assert store.cell_state("k2") == "missing" and store.cell_state("k3").startswith("damaged: the record does not read")


def test_results_csv_is_rebuilt_from_records_without_duplicates(tmp_path):
    store = ResultsStore(tmp_path)
    for key in ("a", "b"):
        store.write_record(
            {
                "key": key,
                "status": "ok",
                "rows": [
                    {"cell_key": key, "status": "ok", "dataset": "d", "method": "m", "target_epsilon": math.inf, "seed": 0, "metric": name, "value": 1.0}
                    for name in ("x", "y")
                ],
            }
        )
    for _ in range(3):
        store.rebuild_csv()
    store.write_record({**store.load_record("a"), "status": "ok"})  # a recomputed cell replaces its rows
    store.rebuild_csv()
    df = store.read_results()
    assert list(df.columns) == COLUMNS and len(df) == 4
    assert not df.duplicated(["cell_key", "metric"]).any()
    assert math.isinf(df["target_epsilon"].iloc[0])  # ε = ∞ (non-private) survives JSON and CSV
    assert json.loads((store.cells_dir / "a.json").read_text())["rows"][0]["target_epsilon"] == {"__float__": "inf"}
    store.rebuild_csv(keys=["b"])
    assert set(store.read_results()["cell_key"]) == {"b"}


def test_keys_and_versions_that_look_like_numbers_come_back_as_text(tmp_path):
    # A short commit of digits only (9770589) read back as an int once and failed a provenance check; a hex key
    # like 12e4… would come back as a float and match no cell.
    store = ResultsStore(tmp_path)
    row = {"cell_key": "12e4567890123456", "status": "ok", "dataset": "d", "method": "m", "target_epsilon": 1.0,
           "seed": 0, "metric": "x", "value": 1.0, "code_version": "9770589", "torch_version": "2.10"}
    store.write_record({"key": "12e4567890123456", "status": "ok", "rows": [row]})
    store.rebuild_csv()
    back = store.read_results().iloc[0]
    assert (back["cell_key"], back["code_version"], back["torch_version"]) == ("12e4567890123456", "9770589", "2.10")
    assert store.consistency() is None


def test_values_computed_in_the_training_feature_space_are_marked_and_explained():
    rows = []
    for method, same in (("DP-MEPF", True), ("DP-CGAN", False)):
        row = _row(method, 1.0, 0, "precision", 0.9 if same else 0.5, "higher", extractor="efficientnet-lite0")
        row["same_space_as_training"] = same
        rows.append(row)
    md = render(_frame(rows), "md")
    assert "0.900†" in md and "0.500†" not in md
    assert "† DP-MEPF: precision computed in the efficientnet-lite0 feature space" in md
    assert r"0.900$^\dagger$" in render(_frame(rows), "latex")
