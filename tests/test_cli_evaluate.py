"""`dpgen-bench evaluate`: samples made elsewhere get the same metrics, rows and table as a benchmark cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dpgen_bench.cli import main
from dpgen_bench.data import load_splits
from dpgen_bench.runner.store import COLUMNS, ResultsStore

pytestmark = pytest.mark.slow

CHEAP = ["--metrics", "accuracy"]


@pytest.fixture(scope="module")
def digits_test():
    return load_splits("digits").test


def _npz(tmp_path, images, labels=None):
    path = tmp_path / "mine.npz"
    np.savez(path, images=images, **({} if labels is None else {"labels": labels}))
    return path


def test_an_npz_of_real_test_images_scores_high_with_the_same_rows_as_a_cell(tmp_path, capsys, digits_test):
    images = (digits_test.images.numpy() * 255).round().astype(np.uint8)  # NCHW uint8
    path = _npz(tmp_path, images, digits_test.labels.numpy())
    out = tmp_path / "eval"
    assert main(["evaluate", str(path), "--dataset", "digits", "--epsilon", "1", "-o", str(out), *CHEAP]) == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert set(df["metric"]) == {"acc-logreg", "acc-mlp", "acc-cnn"} and set(df["method"]) == {"mine"}
    assert df["spent_epsilon"].isna().all() and (df["target_epsilon"] == 1).all()  # a claim, not verified
    assert df.loc[df["metric"] == "acc-logreg", "value"].iloc[0] > 0.8
    assert "acc-logreg" in capsys.readouterr().out
    key = df["cell_key"].iloc[0]
    assert ResultsStore(out).is_done(key) and (out / "cells" / key / "samples.png").exists()


def test_a_folder_of_class_subfolders_is_labelled_and_nhwc_float_npz_works(tmp_path, digits_test):
    folder = tmp_path / "pngs"
    for i, (img, y) in enumerate(zip(digits_test.images[:40], digits_test.labels[:40])):
        (folder / str(int(y))).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).save(folder / str(int(y)) / f"{i}.png")
    assert main(["evaluate", str(folder), "--dataset", "digits", "-o", str(tmp_path / "a"), *CHEAP]) == 0
    nhwc = digits_test.images[:40].permute(0, 2, 3, 1).numpy()
    path = _npz(tmp_path, nhwc)  # no labels: unlabelled, so accuracy is missing with a reason
    assert main(["evaluate", str(path), "--dataset", "digits", "-o", str(tmp_path / "b"), *CHEAP]) == 0
    df = pd.read_csv(tmp_path / "b" / "results.csv")
    assert df["value"].isna().all() and df["missing_reason"].str.contains("unlabelled").all()


@pytest.mark.parametrize(
    "make, message",
    [(lambda t: _npz(t, np.zeros((5, 1, 28, 28), np.uint8)), "the dataset's are (1, 8, 8)"),
     (lambda t: _npz(t, np.full((5, 1, 8, 8), 2.0, np.float32)), "in [0, 1]"),
     (lambda t: t / "nothing.npz", "expected an .npz file or a folder"),
     (lambda t: (t / "junk.npz").write_bytes(b"junk") and t / "junk.npz", "not a readable .npz")],
)
def test_bad_samples_exit_2_naming_the_problem_and_write_nothing(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["evaluate", str(path), "--dataset", "digits", "-o", str(tmp_path / "out"), *CHEAP]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_unknown_metric_or_dataset_exits_2(tmp_path, capsys, digits_test):
    path = _npz(tmp_path, (digits_test.images[:5].numpy() * 255).astype(np.uint8))
    assert main(["evaluate", str(path), "--dataset", "digits", "--metrics", "fidd", "-o", str(tmp_path / "o")]) == 2
    assert "unknown metric(s) ['fidd']" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--dataset", "nope", "-o", str(tmp_path / "o")]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("epsilon", ["-3", "0", "nan"])
def test_a_claimed_epsilon_that_is_not_positive_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, epsilon):
    path = _npz(tmp_path, np.zeros((5, 1, 8, 8), np.uint8))
    out = tmp_path / "out"
    assert main(["evaluate", str(path), "--dataset", "digits", "--epsilon", epsilon, "-o", str(out), *CHEAP]) == 2
    err = capsys.readouterr().err
    assert "--epsilon must be > 0, or inf" in err and f"got {float(epsilon):g}" in err
    assert not out.exists()
