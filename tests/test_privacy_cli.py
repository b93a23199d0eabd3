"""`dpgen-bench privacy epsilon|calibrate`: values, side-by-side backends, JSON output, bad input → exit 2."""

from __future__ import annotations

import json

import pytest

from dpgen_bench.cli import main
from dpgen_bench.privacy import GaussianEvent, PoissonSubsampledGaussianEvent, epsilon, events_to_json


def _json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_epsilon_of_one_shot_gaussian_matches_library(capsys):
    out = _json(capsys, ["privacy", "epsilon", "--gaussian", "5", "--delta", "1e-5", "--accountant", "gdp"])
    (row,) = out["rows"]
    assert row["accountant"] == "gdp"
    assert row["epsilon"] == pytest.approx(0.7255, abs=5e-5)
    assert row["neighbouring"] == "add/remove-one"
    assert row["delta_rule"] == "fixed"


def test_epsilon_of_composed_mechanisms_all_backends_side_by_side(capsys):
    argv = ["privacy", "epsilon", "--gaussian", "5", "--gaussian", "8", "--sigma", "1.0", "--sample-rate", "0.01",
            "--steps", "100", "--delta", "1e-5", "--all-backends"]
    rows = {r["accountant"]: r for r in _json(capsys, argv)["rows"]}
    assert set(rows) == {"prv", "rdp", "prv-accountant", "gdp"}
    events = [GaussianEvent(5.0), GaussianEvent(8.0), PoissonSubsampledGaussianEvent(1.0, 0.01, 100)]
    assert rows["rdp"]["epsilon"] == pytest.approx(epsilon(events, 1e-5, "rdp"))
    assert rows["prv"]["epsilon"] == pytest.approx(epsilon(events, 1e-5, "prv"))
    # gdp cannot account subsampling: its row says why instead of a number
    assert rows["gdp"]["epsilon"] is None and "Poisson-subsampled" in rows["gdp"]["error"]


def test_epsilon_text_output_has_one_row_per_backend(capsys):
    assert main(["privacy", "epsilon", "--gaussian", "5", "--delta", "1e-5", "--all-backends"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["accountant", "epsilon"]
    assert [ln.split()[0] for ln in lines[1:]] == ["prv", "rdp", "prv-accountant", "gdp"]


def test_epsilon_from_epochs_and_batch_settings_uses_opacus_step_count(capsys):
    argv = ["privacy", "epsilon", "--sigma", "1.0", "--dataset-size", "60000", "--batch-size", "256",
            "--epochs", "2", "--delta", "1e-5", "--accountant", "rdp"]
    out = _json(capsys, argv)
    assert out["events"] == [{"type": "poisson_subsampled_gaussian", "noise_multiplier": 1.0,
                              "sample_rate": 256 / 60000, "steps": 468}]


def test_epsilon_of_serialised_ledger_events(capsys):
    events = [GaussianEvent(3.0), PoissonSubsampledGaussianEvent(2.0, 0.05, 20)]
    out = _json(capsys, ["privacy", "epsilon", "--events", events_to_json(events), "--delta", "1e-5",
                         "--accountant", "rdp"])
    assert out["rows"][0]["epsilon"] == pytest.approx(epsilon(events, 1e-5, "rdp"))


def test_delta_rule_from_dataset_size_is_recorded(capsys):
    out = _json(capsys, ["privacy", "epsilon", "--gaussian", "5", "--dataset-size", "4000", "--accountant", "gdp"])
    row = out["rows"][0]
    assert row["delta_rule"] == "1/(n ln n)"
    assert row["delta"] == pytest.approx(1 / (4000 * __import__("math").log(4000)))


def test_calibrate_two_releases_reports_sigma_and_spend(capsys):
    out = _json(capsys, ["privacy", "calibrate", "--epsilon", "1", "--delta", "1e-5", "--release", "1",
                         "--release", "1", "--accountant", "gdp"])
    row = out["rows"][0]
    assert row["sigma"] == pytest.approx(5.2759, rel=2e-3)
    assert row["epsilon"] <= 1.0
    assert out["plan"] == [{"type": "gaussian", "noise_multiplier": 1.0}] * 2


def test_calibrate_dpsgd_all_backends(capsys):
    argv = ["privacy", "calibrate", "--epsilon", "2", "--delta", "1e-5", "--sample-rate", "0.05", "--steps", "50",
            "--all-backends"]
    rows = {r["accountant"]: r for r in _json(capsys, argv)["rows"]}
    for acc in ("prv", "rdp", "prv-accountant"):
        assert rows[acc]["epsilon"] <= 2.0
    assert rows["rdp"]["sigma"] >= rows["prv"]["sigma"]
    assert rows["gdp"]["sigma"] is None and rows["gdp"]["error"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["privacy", "calibrate", "--epsilon", "0", "--delta", "1e-5", "--release", "1"], "epsilon must be > 0"),
        (["privacy", "epsilon", "--gaussian", "5", "--delta", "2"], "delta must be in (0, 1), got 2.0"),
        (["privacy", "epsilon", "--sigma", "1", "--sample-rate", "1.5", "--steps", "3", "--delta", "1e-5"],
         "sample_rate must be in (0, 1], got 1.5"),
        (["privacy", "epsilon", "--sigma", "1", "--sample-rate", "0.1", "--steps", "0", "--delta", "1e-5"],
         "--steps must be an integer >= 1, got 0"),
        (["privacy", "epsilon", "--gaussian", "-1", "--delta", "1e-5"], "noise_multiplier must be"),
        (["privacy", "epsilon", "--gaussian", "5", "--delta", "1e-5", "--accountant", "foo"], "unknown accountant"),
        (["privacy", "epsilon", "--sigma", "1", "--sample-rate", "0.1", "--steps", "5", "--delta", "1e-5",
          "--accountant", "gdp"], "Poisson-subsampled"),
        (["privacy", "calibrate", "--epsilon", "0.005", "--delta", "1e-5", "--release", "1"], "unreachable"),
        (["privacy", "epsilon", "--delta", "1e-5"], "nothing to account"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
