"""`dpgen-bench audit` and `audit: true`: the audit grid of a config, audit.csv, the tables' ε-audited line,
resumability."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import runner_toy
from dpgen_bench.cli import main
from dpgen_bench.runner.audits import AUDIT_COLUMNS, build_audit_cells
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import ConfigFileError, parse_config, resolve_methods

pytestmark = pytest.mark.slow

MERF = {"name": "dp-merf", "config": {"n_features": 50, "steps": 1}}


def _config(out, **audit):
    audit = {"enabled": True, "trials": 300, "variants": ["tenth-noise"], "methods": {"dp-merf": {"examples": 200}},
             "one_run": {"canaries": 40, "extractor": "random-cnn", "n_samples": 100},
             "generic": {"trials": 20, "examples": 16}, **audit}
    return runner_toy.tiny_config(out, methods=[MERF, {"name": "toy-means"}], epsilons=[1, math.inf], seeds=[0],
                                  audit=audit)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("audited")
    config = parse_config(_config(out))
    summary = run_benchmark(config, progress=False)
    return config, summary, out


def test_audit_true_writes_one_row_per_method_variant_kind_and_finite_epsilon(audited):
    config, summary, out = audited
    assert summary.ok and summary.audit.ok, (summary.failed, summary.audit.failed)
    df = pd.read_csv(out / "audit.csv")
    assert list(df.columns) == AUDIT_COLUMNS
    got = sorted(zip(df["method"], df["variant"], df["audit_kind"], df["target_epsilon"]))
    # toy-means has no audit_release: the generic and the black-box audits; no audit at ε = ∞ (nothing to audit)
    assert got == [("dp-merf", "correct", "generic", 1.0), ("dp-merf", "correct", "hook", 1.0),
                   ("dp-merf", "correct", "one-run", 1.0), ("dp-merf", "tenth-noise", "hook", 1.0),
                   ("toy-means", "correct", "generic", 1.0), ("toy-means", "correct", "one-run", 1.0)]
    assert (df["status"] == "ok").all() and (df["epsilon_lower"] >= 0).all()


def test_the_correct_method_is_not_flagged_and_its_broken_variant_is(audited):
    _, _, out = audited
    df = pd.read_csv(out / "audit.csv").set_index(["method", "variant", "audit_kind"])
    correct, broken = df.loc[("dp-merf", "correct", "hook")], df.loc[("dp-merf", "tenth-noise", "hook")]
    assert correct["claimed_epsilon"] == pytest.approx(1.0, abs=1e-3) and not correct["flagged"]
    assert broken["flagged"] and broken["epsilon_lower"] > 1.5
    # the same scores under a Gaussian trade-off curve: at least as high, same verdicts; not for one-run rows
    assert not correct["flagged_gdp"] and broken["flagged_gdp"]
    assert broken["epsilon_lower_gdp"] >= broken["epsilon_lower"] and correct["mu_lower"] >= 0
    assert correct["examples"] == 200 and correct["trials"] == 300
    one_run = df.loc[("toy-means", "correct", "one-run")]
    assert one_run["canaries"] == 40 and one_run["guesses"] == 8 and 0 <= one_run["correct"] <= 8
    assert not one_run["flagged"] and pd.isna(one_run["epsilon_lower_gdp"]) and pd.isna(one_run["flagged_gdp"])
    generic = df.loc[("toy-means", "correct", "generic")]
    assert generic["trials"] == 20 and generic["examples"] == 16 and not generic["flagged"]
    assert generic["canary"] == "outlier: the all-ones image in class 0" and generic["release"].startswith("checkpoint")


def test_the_table_gains_an_epsilon_audited_line_beside_epsilon_spent_and_the_power_checks(audited):
    _, _, out = audited
    table = (out / "tables" / "table.md").read_text()
    spent, audited_at = table.index("ε spent"), table.index("ε audited")
    assert spent < audited_at
    line = next(l for l in table[audited_at:].splitlines() if l.startswith("| dp-merf |"))
    assert "[" in line  # the one-run bound in brackets beside the mechanism bound
    assert " · " in line  # the mechanism audit's bound under a Gaussian trade-off after the assumption-free one
    assert "dp-merf [tenth-noise] ε=1" in table and "— flagged" in table


def test_dpgen_bench_audit_resumes_and_reruns_nothing_finished(audited, capsys, tmp_path):
    config, _, out = audited
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(_config(out)))
    before = (out / "audit.csv").read_text()
    assert main(["audit", str(path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "0 audit(s) run, 6 already done" in printed
    assert (out / "audit.csv").read_text() == before


def test_audit_methods_must_name_labels_of_the_config(tmp_path):
    with pytest.raises(ConfigFileError, match=r"audit.methods names \['nope'\]"):
        parse_config(_config(tmp_path, methods={"nope": {"examples": 3}}))


def test_an_unknown_broken_variant_is_refused_naming_the_valid_ones(tmp_path):
    with pytest.raises(ConfigFileError, match="unknown broken variant 'nope'.*tenth-noise"):
        parse_config(_config(tmp_path, variants=["nope"]))


def test_a_methods_own_variants_replace_the_configs_for_it_and_unknown_ones_are_refused(tmp_path):
    def hook_variants(**audit):
        config = parse_config(_config(tmp_path, **audit))
        return {c.variant for c in build_audit_cells(config, resolve_methods(config)) if c.kind == "hook"}

    assert hook_variants() == {"correct", "tenth-noise"}
    assert hook_variants(methods={"dp-merf": {"examples": 200, "variants": []}}) == {"correct"}
    with pytest.raises(ConfigFileError, match="unknown broken variant 'nope'.*tenth-noise"):
        parse_config(_config(tmp_path, methods={"dp-merf": {"variants": ["nope"]}}))


def test_audit_cells_change_key_with_what_determines_them(tmp_path):
    a = parse_config(_config(tmp_path))
    b = parse_config(_config(tmp_path, trials=400))
    ka = {c.name: c.key for c in build_audit_cells(a, resolve_methods(a))}
    kb = {c.name: c.key for c in build_audit_cells(b, resolve_methods(b))}
    mechanism = [n for n in ka if "/hook/" in n]  # audit.trials is the hook audits' trial count
    assert all(ka[n] != kb[n] for n in mechanism) and all(ka[n] == kb[n] for n in ka if n not in mechanism)


def test_an_audit_fits_with_the_entrys_public_data(tmp_path, monkeypatch):
    """An audit of a method that pre-trains on public data audits it as its cells run: the audit's context carries
    the entry's ``public_data`` (the same loader as a cell's and a tuning candidate's)."""
    from dpgen_bench.jobs import audit as audit_job

    seen = []
    monkeypatch.setattr(audit_job, "run_audit_cell", lambda cell, splits, context: seen.append(context.public_data)
                        or {"status": "ok", "error": None})
    config = parse_config({"dataset": "mnist-5k", "epsilons": [10], "delta": 1e-5,
                           "evaluation": {"metrics": ["fd-digitcnn"]}, "output_dir": str(tmp_path / "run"),
                           "methods": [{"name": "dpdm", "label": "DPDM+public", "public_data": {"dataset": "digits"}}],
                           "audit": {"variants": ["tenth-noise"], "generic": None}})
    cells = build_audit_cells(config, resolve_methods(config))
    cells[0].run(tmp_path / "run")
    assert len(seen) == 1 and seen[0] is not None
    assert len(seen[0]) == 1797 and tuple(seen[0].images.shape[1:]) == (1, 28, 28)  # all of digits, mnist's shape
