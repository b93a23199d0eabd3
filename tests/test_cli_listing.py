"""`dpgen-bench list / datasets / info`: what they print and their exit codes (0 ok, 2 bad input)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dpgen_bench import registry
from dpgen_bench.cli import main
from dpgen_bench.data import list_datasets
from dpgen_bench.registry import register_method, unregister_method


def _method_class():
    from pydantic import Field

    from dpgen_bench.method import Capabilities, GenerativeMethod, MethodConfig

    class Cfg(MethodConfig):
        width: int = Field(7, ge=1, description="layer width")

    class M(GenerativeMethod):
        Config = Cfg
        capabilities = Capabilities(labelled=True, unlabelled=False, channels=(1,))

        def fit(self, train, budget, ledger): ...
        def generate(self, n, labels, generator): ...
        def checkpoint_state(self): return {}
        def load_checkpoint_state(self, state): ...

    return M


def _listed_from_entry_points() -> list[str]:
    registry.refresh()
    return [n for n in registry.list_methods() if registry.method_entry(n).source == "dpgen-bench"]


@pytest.fixture(autouse=True)
def _quiet_plugin_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def test_list_prints_a_methods_table_with_sources_and_every_dataset(capsys, tmp_path):
    assert main(["list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    methods, datasets = out.split("Datasets", 1)
    assert "source" in methods and "labelled" in methods and "channels" in methods
    first_words = {line.split()[0] for line in datasets.splitlines()[2:] if line.strip()}
    assert set(list_datasets()) <= first_words
    mnist5k = next(line for line in datasets.splitlines() if line.split()[:1] == ["mnist-5k"])
    assert "5000" in mnist5k and "1x28x28" in mnist5k and mnist5k.split()[-2:] == ["yes", "yes"]
    cifar = next(line for line in datasets.splitlines() if line.split()[:1] == ["cifar10"])
    assert "60000" in cifar and "3x32x32" in cifar and cifar.split()[-1] == "no"


def test_datasets_reports_a_torchvision_dataset_available_once_its_files_are_in_data_dir(capsys, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f).write_bytes(b"")
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["mnist"].split()[-1] == "yes" and rows["fashion-mnist"].split()[-1] == "no"


def test_info_on_an_unknown_name_exits_2_listing_methods_and_datasets(capsys):
    assert main(["info", "mnist-50k"]) == 2
    err = capsys.readouterr().err
    assert "'mnist-50k'" in err and "mnist-5k" in err and "cifar10" in err and "methods:" in err


def test_info_of_a_method_prints_its_source_capabilities_and_config_defaults(capsys):
    register_method("cli-info-test")(_method_class())
    try:
        assert main(["info", "cli-info-test"]) == 0
    finally:
        unregister_method("cli-info-test")
    out = capsys.readouterr().out
    assert "<registered in-process>" in out and "'labelled': True" in out
    assert "width = 7" in out and "layer width" in out


def test_info_shows_a_default_factorys_value_and_marks_required_keys_never_pydantic_internals(capsys):
    from pydantic import Field

    from dpgen_bench.method import Capabilities, GenerativeMethod, MethodConfig

    class Cfg(MethodConfig):
        options: dict = Field(default_factory=lambda: {"k": 1})
        width: int  # no default

    class M(GenerativeMethod):
        Config = Cfg
        capabilities = Capabilities(labelled=True, unlabelled=False, channels=(1,))

        def fit(self, train, budget, ledger): ...
        def generate(self, n, labels, generator): ...
        def checkpoint_state(self): return {}
        def load_checkpoint_state(self, state): ...

    register_method("cli-info-factory-test")(M)
    try:
        assert main(["info", "cli-info-factory-test"]) == 0
        assert main(["info", "dp-mepf"]) == 0
    finally:
        unregister_method("cli-info-factory-test")
    out = capsys.readouterr().out
    assert "Pydantic" not in out
    assert "options = {'k': 1}" in out and "width = (required)" in out
    assert "extractor_options = {}" in out


def test_list_with_two_sources_for_one_method_name_exits_2_naming_both(capsys):
    clash = next(iter(_listed_from_entry_points()), None)
    if clash is None:
        pytest.skip("no entry-point method loads in this environment")
    register_method(clash)(_method_class())
    try:
        assert main(["list"]) == 2
    finally:
        unregister_method(clash)
    err = capsys.readouterr().err
    assert f"'{clash}'" in err and "dpgen-bench" in err and "test_cli_listing" in err


def test_info_of_a_dataset_prints_shape_classes_and_split_sizes(capsys):
    assert main(["info", "digits", "--load"]) == 0
    out = capsys.readouterr().out
    assert "(1, 8, 8)" in out and "1438 train / 359 test" in out


def test_info_load_prints_no_class_counts_of_either_split(capsys):
    # The train split's class counts are private, and the stratified test split's would give them away.
    from dpgen_bench.data import load_splits

    assert main(["info", "digits", "--load"]) == 0
    out = capsys.readouterr().out
    splits = load_splits("digits")
    for part in (splits.train, splits.test):
        assert str(part.class_counts().tolist()) not in out
        assert ", ".join(str(c) for c in part.class_counts().tolist()) not in out


def test_info_load_of_a_missing_torchvision_dataset_exits_2_and_writes_nothing(capsys, tmp_path):
    assert main(["info", "fashion-mnist", "--load", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte") in err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_subcommand_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["lsit"])
    assert exc.value.code == 2
    assert "list" in capsys.readouterr().err  # argparse names the valid choices


@pytest.mark.parametrize("command", ["run", "table"])
def test_run_and_table_names_are_reserved(command):
    from dpgen_bench.cli import build_parser

    assert command in build_parser()._subparsers._group_actions[0].choices


def test_the_installed_console_script_lists_datasets_and_exits_2_on_unknown_names():
    script = Path(sys.executable).with_name("dpgen-bench")  # installed by pip next to the venv's python
    assert script.is_file(), f"console script missing: {script}"
    out = subprocess.run([str(script), "datasets"], capture_output=True, text=True)
    assert out.returncode == 0 and "mnist-5k" in out.stdout
    bad = subprocess.run([str(script), "info", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "mnist-5k" in bad.stderr


def test_help_is_light_it_does_not_import_torch():
    code = ("import sys, dpgen_bench.cli as cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_list_into_a_closed_pipe_ends_quietly_without_a_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "dpgen_bench", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that has already hung up when the table is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_listing_methods_does_not_import_opacus_or_the_feature_extractors():
    """`dpgen-bench list` needs the method classes (torch), not what they use only when training."""
    code = ("import sys\nfrom dpgen_bench.cli import main\nmain(['list'])\n"
            "print('opacus' in sys.modules, 'dpgen_bench.features' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_list_shows_what_pe_supports_with_its_default_api_and_survives_a_config_without_defaults(capsys):
    from dpgen_bench.method import Capabilities, GenerativeMethod, MethodConfig

    class Required(MethodConfig):
        width: int  # no default: the listing cannot build a default config

    class NoDefaults(GenerativeMethod):
        Config = Required
        capabilities = Capabilities(labelled=True, unlabelled=False, channels=(3,))

        def fit(self, train, budget, ledger): ...
        def generate(self, n, labels, generator): ...
        def checkpoint_state(self): return {}
        def load_checkpoint_state(self, state): ...

    register_method("needs-width-test")(NoDefaults)
    try:
        assert main(["list"]) == 0
    finally:
        unregister_method("needs-width-test")
    methods = capsys.readouterr().out.split("Datasets", 1)[0]
    rows = {line.split()[0]: line.split() for line in methods.splitlines()[2:] if line.strip()}
    assert rows["pe"][-2:] == ["1", "8,28,32"]  # the digit simulator's shapes, not the class-level "1,3 any"
    assert rows["needs-width-test"][-2:] == ["3", "any"]
