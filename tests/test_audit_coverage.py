"""`dpgen-bench audit` leaves nothing out silently: every method and ε gets the generic audit (no hook needed),
the report says per method and ε which audits ran and which could not and why, and a method that could not be
audited at all fails the command unless --allow-unaudited. Shown on the audit toys (an honest plugin and one
that adds a tenth of its recorded noise)."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import yaml

from dpgen_bench.audit.toys import TOYS
from dpgen_bench.cli import main
from dpgen_bench.registry import unregister_method

pytestmark = pytest.mark.slow


@pytest.fixture
def toys_registered():
    """The toys as registered plugins for this test only (they must not leak into other tests' method lists)."""
    yield "dpgen_bench.audit.toy_plugins"
    for toy in TOYS:
        try:
            unregister_method(toy.name)
        except Exception:
            pass
    sys.modules.pop("dpgen_bench.audit.toy_plugins", None)


def _config(tmp_path, plugins_module, **audit) -> str:
    config = {
        "dataset": "digits", "epsilons": [1], "delta": 1.0e-5, "seeds": [0], "accountant": "gdp",
        "methods": [{"name": "audit-toy-honest", "label": "honest"},
                    {"name": "audit-toy-tenth-noise", "label": "tenth-noise"}],
        "evaluation": {"metrics": ["fd-digitcnn"]}, "output_dir": str(tmp_path / "out"),
        "plugins": [plugins_module],
        "audit": {"generic": {"trials": 600, "examples": 40, "max_seconds": 3600}, **audit},  # no time cap: the trial count must not depend on load
    }
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_plugins_without_a_hook_get_the_generic_audit_and_the_under_noised_one_is_flagged(tmp_path, toys_registered,
                                                                                          capsys):
    code = main(["audit", _config(tmp_path, toys_registered), "--no-progress"])
    out = capsys.readouterr().out
    df = pd.read_csv(tmp_path / "out" / "audit.csv").set_index("method")
    assert list(df["audit_kind"]) == ["generic", "generic"] and (df["status"] == "ok").all()
    assert not df.loc["honest", "flagged"] and df.loc["tenth-noise", "flagged"]
    assert df.loc["tenth-noise", "epsilon_lower"] > 1.5 and df.loc["tenth-noise", "gaussian_tradeoff"]
    assert "FLAGGED tenth-noise at ε=1 (generic)" in out
    assert "honest ε=1: generic: ran, 600 trials; hook: could not (NoisyPixelMean has no audit_release hook); " \
           "one-run: could not (not configured (audit.one_run))" in out
    assert code == 1  # a correct (unbroken-variant) method was flagged


def test_a_method_no_audit_can_run_for_fails_the_command_unless_allowed(tmp_path, toys_registered, capsys):
    path = _config(tmp_path, toys_registered, generic=None)
    assert main(["audit", path, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "0 audit(s) run" in out
    assert "UNAUDITED honest at ε=1: no audit finished; pass --allow-unaudited to accept" in out
    assert "generic: could not (switched off (audit.generic: null))" in out
    assert main(["audit", path, "--no-progress", "--allow-unaudited"]) == 0
    assert "(allowed by --allow-unaudited)" in capsys.readouterr().out


def test_dry_run_lists_the_audits_that_will_not_run_with_their_reason(tmp_path, toys_registered, capsys):
    assert main(["audit", _config(tmp_path, toys_registered), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "honest[correct]/generic/eps=1  [to run]" in out
    assert "honest/hook/eps=1  [not run: NoisyPixelMean has no audit_release hook]" in out


def test_an_audit_the_budget_cap_stops_is_reported_not_run_once_and_is_no_failure(tmp_path, toys_registered, capsys):
    # A capped generic audit is final with its reason: "NOT RUN", never "FAILED"; with nothing else audited the
    # command still needs --allow-unaudited, and then exits 0.
    path = _config(tmp_path, toys_registered, generic={"trials": 600, "examples": 40, "max_seconds": 1e-6})
    assert main(["audit", path, "--no-progress", "--allow-unaudited"]) == 0
    out = capsys.readouterr().out
    assert "NOT RUN honest[correct]/generic/eps=1: 600 trials would take ~" in out
    assert "FAILED" not in out and "not run: not run" not in out and "not-run: not run" not in out
    assert "honest ε=1: generic: could not (not-run: 600 trials would take ~" in out
