"""`dpgen-bench tune`: random search over a declared space, on the declared tuning split (free) or on the
private split with the search's cost accounted (Papernot & Steinke 2022)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

import runner_toy  # noqa: F401  (registers the toy methods)
from dpgen_bench.cli import main
from dpgen_bench.jobs.store import read_rows
from dpgen_bench.runner.config import ConfigFileError, parse_config
from dpgen_bench.runner.tune import load_chosen, run_tune

EVAL = {"metrics": ["accuracy"], "n_samples": 60,
        "options": {"accuracy": {"cnn_epochs": 1, "mlp_max_iter": 5, "logreg_max_iter": 30}}}


def _config(tmp_path, **tune) -> dict:
    return {"dataset": "digits", "methods": [{"name": "toy-means", "label": "toy"}], "epsilons": [10, math.inf],
            "delta": 1e-5, "evaluation": EVAL, "output_dir": str(tmp_path / "run"), "plugins": ["runner_toy"],
            "tune": {"method": "toy", "space": {"spread": [0.02, 3.0]}, "trials": 4, "metric": "acc-logreg", **tune}}


def test_tuning_split_search_picks_the_better_candidate_and_declares_its_source(tmp_path):
    result = run_tune(parse_config(_config(tmp_path)))
    assert result.chosen == {"spread": 0.02}  # pixel noise of std 3 buries the class means
    assert result.epsilon == result.epsilon_incl_tuning == 10.0
    record = json.loads((tmp_path / "run" / "tune" / "tune.json").read_text())
    assert len(record["trials"]) == 2 and record["tuned_on"] == "digits:tuning"  # the space has 2 configs
    chosen = load_chosen(tmp_path / "run" / "tune" / "chosen.yaml")
    assert chosen["tuning_split"] is True and chosen.get("tune") is None
    assert chosen["methods"][0]["config"] == {"spread": 0.02} and chosen["methods"][0]["tuned_on"] == "digits:tuning"


def test_the_chosen_config_reruns_unmarked(tmp_path):
    from dpgen_bench.runner.benchmark import run_benchmark
    from dpgen_bench.runner.config import load_config

    run_tune(parse_config(_config(tmp_path, trials=1)))
    config = load_config(tmp_path / "run" / "tune" / "chosen.yaml")
    summary = run_benchmark(config.model_copy(update={"epsilons": [10.0]}), progress=False)
    df = pd.read_csv(summary.root / "results.csv")
    assert set(df["tuned_on"]) == {"digits:tuning"} and not df["tuned_on_reported_data"].any()
    assert "¶" not in (summary.root / "tables" / "table.md").read_text()


def test_private_search_meets_the_target_including_tuning_and_releases_only_the_best(tmp_path):
    result = run_tune(parse_config(_config(tmp_path, select_on="private", trials=3)))
    assert result.epsilon_incl_tuning <= 10.0 and result.epsilon_incl_tuning > 9.0
    rows = read_rows(tmp_path / "run" / "tune" / "results.csv")
    assert (rows["epsilon_incl_tuning"] <= 10.0).all() and set(rows["metric"]) >= {"acc-logreg"}
    from dpgen_bench.runner.tables import render

    assert "ε incl. tuning" in render(rows, "md")
    record = json.loads((tmp_path / "run" / "tune" / "tune.json").read_text())
    assert "trials" not in record and record["per_candidate_rdp_epsilon"] < 10.0  # K and the others stay secret
    from dpgen_bench.jobs.provenance import code_version

    assert set(rows["code_version"]) == {code_version()} and record["code_version"] == code_version()


def test_a_bad_space_or_metric_is_refused_before_anything_trains(tmp_path):
    bad = _config(tmp_path)
    bad["tune"]["space"] = {"no_such_key": [1]}
    with pytest.raises(ConfigFileError, match="no_such_key"):
        run_tune(parse_config(bad))
    bad = _config(tmp_path, method="nope")
    with pytest.raises(ConfigFileError, match="no methods entry 'nope'"):
        run_tune(parse_config(bad))


def test_the_cli_prints_the_choice_and_the_epsilon_incl_tuning(tmp_path, capsys):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, trials=1)))
    assert main(["tune", str(path)]) == 0
    out = capsys.readouterr().out
    assert "chosen: {'spread'" in out and "ε incl. tuning" in out


def test_a_tuning_split_search_says_each_candidate_as_it_finishes_and_keeps_the_trials_so_far(tmp_path, capsys,
                                                                                            monkeypatch):
    import dpgen_bench.runner.tune as tune

    seen = []
    real = tune._progress
    monkeypatch.setattr(tune, "_progress", lambda root, record: (seen.append(len(record["trials"])), real(root, record)))
    run_tune(parse_config(_config(tmp_path, trials=2)))
    err = capsys.readouterr().err
    assert "candidate 1/2 {'spread'" in err and "candidate 2/2" in err and "acc-logreg" in err
    assert seen == [1, 2]  # tune.json held the finished trials before the search ended


def test_a_tuning_split_search_tries_different_configs_in_a_public_random_order(tmp_path):
    from dpgen_bench.runner.tune_search import distinct_candidates

    spec = parse_config(_config(tmp_path, space={"a": [1, 2, 3], "b": [0, 1]}, trials=5)).tune
    drawn = distinct_candidates(spec)
    assert len(drawn) == 5 and len({tuple(sorted(c.items())) for c in drawn}) == 5
    assert drawn == distinct_candidates(spec)  # public: the same seed gives the same order
    assert len(distinct_candidates(spec.model_copy(update={"trials": 9}))) == 6  # never more than the space


def test_a_private_search_prints_neither_the_number_of_candidates_nor_their_scores(tmp_path, capsys):
    run_tune(parse_config(_config(tmp_path, select_on="private", trials=3)))
    err = capsys.readouterr().err
    assert "private search" in err and "secret" in err and "candidate" not in err.replace("candidates", "")
    assert "wall time grows with the number" in err
    assert "acc-logreg" not in err


@pytest.mark.parametrize("select_on", ["tuning-split", pytest.param("private", marks=pytest.mark.slow)])
def test_every_candidate_fits_with_the_entrys_public_data(tmp_path, monkeypatch, select_on):
    """A method that pre-trains on public data is tuned as it will run: the candidates' context carries the
    entry's ``public_data`` (the search once fitted DP-LDM with none, its networks at random initialisation)."""
    from dpgen_bench.runner import tune, tune_private

    seen = []

    class Stop(Exception):
        pass

    def first_fit(cls, method_config, train, validation, budget, evaluation, root, seed, context):
        seen.append(context.public_data)
        raise Stop

    monkeypatch.setattr(tune, "_fit_and_score", first_fit)
    monkeypatch.setattr(tune_private, "_fit_and_score", first_fit)
    config = {"dataset": "mnist-5k", "epsilons": [10], "delta": 1e-5, "evaluation": EVAL,
              "output_dir": str(tmp_path / "run"),
              "methods": [{"name": "dpdm", "label": "DPDM+public", "public_data": {"dataset": "digits"}}],
              "tune": {"method": "DPDM+public", "space": {"p_mean": [0.0, 1.0]}, "trials": 2,
                       "metric": "acc-logreg", "select_on": select_on}}
    with pytest.raises(Stop):
        run_tune(parse_config(config))
    assert len(seen) == 1 and seen[0] is not None
    assert len(seen[0]) == 1797 and tuple(seen[0].images.shape[1:]) == (1, 28, 28)  # all of digits, mnist's shape
