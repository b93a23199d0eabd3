"""The benchmark config: strict validation (exit 2 naming the problem, nothing trained), --set overrides,
δ rule, cell keys, the embedded default and the shipped configs."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

import runner_toy
from dpgen_bench.cli import main
from dpgen_bench.jobs.store import read_rows
from dpgen_bench.runner.config import (
    ConfigFileError,
    apply_override,
    default_config_data,
    load_config,
    parse_config,
    resolve_methods,
)
from dpgen_bench.runner.execute import budget_for
from dpgen_bench.runner.grid import build_cells

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _set(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return data


def _drop(data: dict, key: str) -> dict:
    data = copy.deepcopy(data)
    del data[key]
    return data


# (what is wrong, how to make it wrong, what the message must name)
MALFORMED = [
    ("unknown top-level key", lambda c: {**c, "epsilon": 1}, "epsilon: unknown key"),
    ("unknown evaluation key", lambda c: _set(c, "evaluation.n_sample", 10), "evaluation.n_sample: unknown key"),
    ("unknown method-spec key", lambda c: _set(c, "methods.0.steps", 10), "methods.0.steps: unknown key"),
    ("ε = 0", lambda c: {**c, "epsilons": [1, 0]}, "epsilons[1] must be > 0"),
    ("ε < 0", lambda c: {**c, "epsilons": [-1]}, "epsilons[0] must be > 0"),
    ("ε not a number", lambda c: {**c, "epsilons": ["ten"]}, "epsilons.0"),
    ("ε empty", lambda c: {**c, "epsilons": []}, "epsilons"),
    ("ε listed twice", lambda c: {**c, "epsilons": [1, 1]}, "epsilons lists a value twice"),
    ("δ = 1.5", lambda c: {**c, "delta": 1.5}, "delta must be in (0, 1)"),
    ("δ = 0", lambda c: {**c, "delta": 0}, "delta must be in (0, 1)"),
    ("δ rule unknown", lambda c: {**c, "delta": "1/n"}, "'1/n'"),
    ("seed not an int", lambda c: {**c, "seeds": ["a"]}, "seeds.0"),
    ("accountant unknown", lambda c: {**c, "accountant": "moments"}, "accountant"),
    ("n_samples = 0", lambda c: _set(c, "evaluation.n_samples", 0), "evaluation.n_samples"),
    ("dataset missing", lambda c: _drop(c, "dataset"), "dataset: required key is missing"),
    ("unknown dataset", lambda c: {**c, "dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ("unknown method", lambda c: _set(c, "methods.0.name", "dp-nope"), "unknown method 'dp-nope'"),
    ("method config unknown key", lambda c: _set(c, "methods.0.config", {"sprad": 0.1}), "'sprad'"),
    ("method config wrong type", lambda c: _set(c, "methods.0.config", {"spread": "wide"}), "spread"),
    ("ε set inside a method", lambda c: _set(c, "methods.0.config", {"epsilon": 3}), "may not set ['epsilon']"),
    ("accountant set inside a method", lambda c: _set(c, "methods.0.config", {"accountant": "rdp"}), "may not set ['accountant']"),
    ("method cannot handle dataset", lambda c: {**c, "dataset": "cifar10"}, "cannot handle dataset 'cifar10'"),
    ("two methods with one label", lambda c: {**c, "methods": [{"name": "toy-means"}, {"name": "toy-means"}]}, "label(s) ['toy-means'] used twice"),
    ("unknown metric", lambda c: _set(c, "evaluation.metrics", ["fid", "kid"]), "unknown metric(s) ['kid']"),
    ("per-metric count for a metric not run", lambda c: _set(c, "evaluation.n_samples_per_metric", {"fid": 10}), "n_samples_per_metric"),
    ("unknown classifier budget", lambda c: _set(c, "evaluation.options", {"accuracy": {"cnn_epoch": 1}}),
     "metric 'accuracy': no option 'cnn_epoch'; valid options: logreg_max_iter=100"),
    ("device not a device", lambda c: {**c, "device": "gpu0"}, "device"),
    ("plugin not importable", lambda c: {**c, "plugins": ["no_such_module_xyz"]}, "no_such_module_xyz"),
]


@pytest.mark.parametrize("problem,mutate,named", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_exits_2_naming_the_problem_before_training(problem, mutate, named, tmp_path, capsys):
    out = tmp_path / "out"
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(mutate(runner_toy.tiny_config(out))))
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dpgen-bench: error:") and named in err, err
    assert not out.exists(), "nothing may be written (or trained) for an invalid config"


@pytest.mark.parametrize(
    "text,named",
    [
        ("dataset: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_unreadable_config_file_exits_2(text, named, tmp_path, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    assert named in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_set_overrides_are_validated_like_the_file(tmp_path, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(runner_toy.tiny_config(tmp_path / "out")))
    assert main(["run", str(path), "--set", "epsilons=[1, -2]"]) == 2
    assert "epsilons[1] must be > 0" in capsys.readouterr().err
    assert main(["run", str(path), "--set", "methods.toy-means.config.spred=0.3"]) == 2
    assert "'spred'" in capsys.readouterr().err
    assert main(["run", str(path), "--set", "methods.nope.config.x=1"]) == 2
    assert "no entry 'nope'" in capsys.readouterr().err
    assert main(["run", str(path), "--set", "seeds"]) == 2
    assert "key.path=value" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("assignment, text", [("epsilons=[1,2", "'[1,2'"), ("evaluation={metrics: [fid]", "'{metrics: [fid]'")])
def test_a_set_value_that_is_not_yaml_is_refused_not_read_as_a_string(tmp_path, capsys, assignment, text):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(runner_toy.tiny_config(tmp_path / "out")))
    assert main(["run", str(path), "--set", assignment]) == 2
    err = capsys.readouterr().err
    assert f"--set {assignment.split('=')[0]}: {text} is not valid YAML" in err, err
    assert not (tmp_path / "out").exists()


def test_a_config_reports_every_problem_at_once_schema_and_methods_alike(tmp_path, capsys):
    config = runner_toy.tiny_config(tmp_path / "out")
    del config["evaluation"]  # schema: required key missing
    config["seeds"] = ["a"]  # schema: type error
    config["methods"][0]["config"] = {"spread": "wide"}  # method config: type error (checked by the method)
    config["methods"][1]["name"] = "dp-nope"  # unknown method
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "invalid benchmark config (4 problems):" in err, err
    for named in ("evaluation: required key is missing", "seeds.0", "methods[0] (toy-means).config", "spread",
                  "methods[1] (toy-blurry).name: unknown method 'dp-nope'"):
        assert named in err, (named, err)
    assert not (tmp_path / "out").exists()


def test_a_valid_schema_reports_every_method_metric_and_machine_problem_at_once(tmp_path, capsys):
    (tmp_path / "FILE").write_text("not a directory")
    config = runner_toy.tiny_config(tmp_path / "FILE" / "out")
    config["methods"][0]["config"] = {"spred": 0.1}
    config["methods"][1]["name"] = "dp-nope"
    config["evaluation"]["metrics"] = ["accuracy", "kid"]
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    for named in ("'spred'", "unknown method 'dp-nope'", "unknown metric(s) ['kid']", "which is a file"):
        assert named in err, (named, err)
    assert "(4 problems)" in err


def test_set_overrides_reach_the_cells(tmp_path, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(runner_toy.tiny_config(tmp_path / "out")))
    overrides = ["epsilons=[2]", "seeds=[5]", "methods.toy-means.config.spread=0.3", "methods.1.label=flat"]
    assert main(["run", str(path), "--dry-run", *sum([["--set", o] for o in overrides], [])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["digits/toy-means/eps=2/seed=5", "digits/flat/eps=2/seed=5"]
    config = load_config(path, overrides)
    assert config.methods[0].config == {"spread": 0.3}


def test_apply_override_parses_yaml_values_and_creates_mapping_keys():
    data = {"evaluation": {"metrics": ["fid"]}, "methods": [{"name": "a"}]}
    apply_override(data, "evaluation.n_samples_per_metric.fid=60000")
    apply_override(data, "delta=1/(n ln n)")
    apply_override(data, "methods.a.config.lr=1e-3")
    assert data["evaluation"]["n_samples_per_metric"] == {"fid": 60000}
    assert data["delta"] == "1/(n ln n)"
    assert data["methods"][0]["config"] == {"lr": 1e-3}
    with pytest.raises(ConfigFileError, match="index 3 out of range"):
        apply_override(data, "methods.3.name=x")


def test_delta_rule_is_one_over_n_ln_n_of_the_train_split():
    cfg = parse_config(runner_toy.tiny_config("unused"))
    cell = build_cells(cfg, resolve_methods(cfg))[0]
    budget = budget_for(cell, 1438)
    assert budget.delta == pytest.approx(1 / (1438 * math.log(1438)))
    assert budget.delta_rule == "1/(n ln n)"
    fixed = parse_config({**runner_toy.tiny_config("unused"), "delta": 1e-5})
    assert budget_for(build_cells(fixed, resolve_methods(fixed))[0], 1438).delta == 1e-5


def test_cell_key_depends_on_everything_that_changes_results_and_nothing_else():
    base = runner_toy.tiny_config("out-a")

    def key(config):
        cfg = parse_config(config)
        return build_cells(cfg, resolve_methods(cfg))[0].key

    k = key(base)
    assert key({**base, "output_dir": "out-b", "device": "cpu:0"}) == k
    assert key(_set(base, "methods.0.config", {"spread": 0.1})) == k  # the default, spelled out
    assert key(_set(base, "methods.0.config", {"spread": 0.2})) != k
    assert key({**base, "delta": 1e-5}) != k
    assert key({**base, "accountant": "rdp"}) != k
    assert key(_set(base, "evaluation.n_samples", 50)) != k
    assert key({**base, "split_seed": 1}) != k


def test_method_configs_carry_no_accountant_it_travels_with_the_budget():
    """Calibration and the runner's re-check read the budget's accountant; no method has its own."""
    from dpgen_bench.runner.execute import budget_for
    from dpgen_bench.runner.grid import build_cells

    cfg = parse_config({**runner_toy.tiny_config("unused"), "dataset": "mnist-5k", "accountant": "rdp",
                        "methods": [{"name": "dp-mepf", "config": {"steps": 1}}, {"name": "dp-gan"}]})
    resolved = resolve_methods(cfg)
    assert all("accountant" not in type(c).model_fields for c in resolved.values())
    cell = build_cells(cfg, resolved)[0]
    budget = budget_for(cell, 4000)
    assert budget.accountant == "rdp" and budget.delta == pytest.approx(1 / (4000 * math.log(4000)))


def test_gdp_with_a_dp_sgd_method_is_refused_before_training():
    cfg = parse_config({**runner_toy.tiny_config("unused"), "dataset": "mnist-5k", "accountant": "gdp",
                        "methods": [{"name": "dp-mepf", "config": {"steps": 1}}, {"name": "dp-cgan"}]})
    with pytest.raises(ConfigFileError, match="accountant: method 'dp-cgan'.*'gdp' cannot account Poisson-subsampled"):
        resolve_methods(cfg)


def test_an_extractor_trained_on_the_private_family_is_refused_for_training():
    """digitcnn was trained on MNIST: not public for mnist-5k (a subset of MNIST), but fine for sklearn digits."""
    bad = parse_config({**runner_toy.tiny_config("unused"), "dataset": "mnist-5k",
                        "methods": [{"name": "dp-mepf", "config": {"extractor": "digitcnn"}}]})
    with pytest.raises(ConfigFileError, match="methods\\[0\\] \\(dp-mepf\\).config: feature extractor 'digitcnn' was trained on 'mnist'"):
        resolve_methods(bad)
    ok = parse_config({**runner_toy.tiny_config("unused"), "dataset": "digits",
                       "methods": [{"name": "dp-mepf", "config": {"extractor": "digitcnn"}}]})
    assert resolve_methods(ok)["dp-mepf"].extractor == "digitcnn"


def test_embedded_default_is_mnist5k_three_methods_at_eps_1_10_and_non_private():
    data = default_config_data()
    cfg = parse_config(data)
    assert cfg.dataset == "mnist-5k" and cfg.epsilons == [1.0, 10.0, math.inf] and cfg.seeds == [0]
    # a user's run goes to the git-ignored runs/ folder, never into the committed evidence under results/
    assert cfg.output_dir == "runs/default"
    assert [m.name for m in cfg.methods] == ["dp-mepf", "dp-cgan", "dp-merf"]
    assert {"fid", "fd-digitcnn", "accuracy", "prdc"} <= set(cfg.evaluation.metrics)
    mepf = cfg.methods[0].config
    assert mepf["extractor"] == "efficientnet-lite0" and mepf["moments"] == "phi1+phi2" and mepf["labelled"]
    # every method override is explicit (the default run must not drift with library defaults)
    assert all(m.config for m in cfg.methods)


def test_embedded_default_resolves_every_method():
    cfg = load_config(None)
    resolved = resolve_methods(cfg)
    assert set(resolved) == {"DP-MEPF", "DP-CGAN", "DP-MERF"}


@pytest.mark.parametrize("path", [
    # the DPImageBench grids calibrate every method's thousands of DP-SGD steps at each ε: seconds each
    pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.name.startswith("dpimagebench-") else [])
    for p in CONFIGS])
def test_shipped_config_parses_and_every_method_and_dataset_resolves(path):
    cfg = load_config(path)
    resolved = resolve_methods(cfg)  # dataset metadata, method configs, capabilities, metric names
    assert len(resolved) == len(cfg.methods)
    cells = build_cells(cfg, resolved)
    assert len({c.key for c in cells}) == len(cfg.methods) * len(cfg.epsilons) * len(cfg.seeds)


def test_shipped_configs_cover_the_published_protocols():
    by_name = {p.stem: load_config(p) for p in CONFIGS}
    mepf = {k: v for k, v in by_name.items() if k.startswith("dp-mepf-")}
    assert {v.dataset for v in mepf.values()} == {"mnist", "fashion-mnist", "cifar10", "celeba32", "celeba64"}
    assert all(v.epsilons == [0.2, 1, 2, 5, 10] for v in mepf.values())
    cifar = [v for v in mepf.values() if v.dataset == "cifar10"]
    assert sorted(v.methods[0].config["labelled"] for v in cifar) == [False, True]
    bench = [v for k, v in by_name.items() if k.startswith("dpimagebench-")]
    assert bench and all(v.epsilons == [1, 10] and v.evaluation.sample_count("fid") == 60000 for v in bench)


def test_jobs_refuses_in_process_methods_that_workers_cannot_import(tmp_path):
    from dpgen_bench.runner.benchmark import run_benchmark

    cfg = parse_config(runner_toy.tiny_config(tmp_path / "out", plugins=[]))
    with pytest.raises(ConfigFileError, match="list that module under 'plugins'"):
        run_benchmark(cfg, jobs=2, progress=False)
    assert not (tmp_path / "out").exists()


def test_jobs_refuses_an_in_process_metric_and_dataset_that_workers_cannot_see(tmp_path):
    import dataclasses

    from dpgen_bench.data import DATASETS, dataset_spec, register_dataset
    from dpgen_bench.metrics import METRICS, register_metric
    from dpgen_bench.runner.benchmark import run_benchmark

    register_metric("test-only-metric", results={"test-only-metric": "lower"})(lambda ctx: {"test-only-metric": 0.0})
    digits = dataset_spec("digits")
    register_dataset(dataclasses.replace(digits, info=dataclasses.replace(digits.info, name="test-only-digits")))
    try:
        config = runner_toy.tiny_config(tmp_path / "out", dataset="test-only-digits")
        config["evaluation"]["metrics"] = ["test-only-metric"]
        with pytest.raises(ConfigFileError) as err:
            run_benchmark(parse_config(config), jobs=2, progress=False)
        assert "metric 'test-only-metric'" in str(err.value) and "dataset 'test-only-digits'" in str(err.value)
        assert "list that module under 'plugins'" in str(err.value)
        assert not (tmp_path / "out").exists()
    finally:
        METRICS.unregister("test-only-metric")
        DATASETS.unregister("test-only-digits")



def test_progress_is_not_a_method_config_key_it_comes_with_the_run_context():
    from dpgen_bench import get_method
    from dpgen_bench.method import ConfigError, build_config

    for name in ("dp-gan", "dp-mepf", "dp-merf"):
        with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['progress'\]"):
            build_config(get_method(name).Config, {"progress": False})


def test_the_default_config_has_the_cell_keys_of_the_committed_reference_run():
    """The end-of-run comparison matches cells by key: a key change must come with a regenerated reference."""
    from dpgen_bench.runner.grid import build_cells

    config = parse_config(default_config_data())
    keys = {c.key for c in build_cells(config, resolve_methods(config))}
    reference = set(read_rows(Path(__file__).parents[1] / "results" / "default" / "results.csv")["cell_key"])
    assert keys == reference


def _bad_run(tmp_path, capsys, **changes) -> str:
    import yaml

    from dpgen_bench.cli import main

    config = {**runner_toy.tiny_config(tmp_path / "out"), **changes}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", str(path), "--no-progress"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "output_dir, message",
    [("", "must not be empty"), ("FILE", "is a file"), ("FILE/sub", "which is a file"),
     ("/proc/dpgen-bench-out", "cannot create '/proc/dpgen-bench-out': No such file or directory"),
     ("/sys/dpgen-bench-out", "cannot create '/sys/dpgen-bench-out'")],
)
def test_an_output_dir_that_cannot_be_written_is_refused_before_anything_runs(tmp_path, capsys, output_dir, message):
    (tmp_path / "FILE").write_text("not a directory")
    output_dir = output_dir.replace("FILE", str(tmp_path / "FILE"))
    err = _bad_run(tmp_path, capsys, output_dir=output_dir)
    assert "output_dir" in err and message in err


def test_a_dataset_whose_files_are_missing_is_refused_before_anything_runs(tmp_path, capsys):
    err = _bad_run(tmp_path, capsys, dataset="mnist", data_dir=str(tmp_path / "nodata"), output_dir=str(tmp_path / "o"),
                   methods=[{"name": "toy-means"}])
    assert "'mnist' is not available: missing" in err and "train-images-idx3-ubyte" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is visible here")
def test_cuda_without_a_gpu_is_refused_before_anything_runs(tmp_path, capsys):
    err = _bad_run(tmp_path, capsys, device="cuda", output_dir=str(tmp_path / "o"))
    assert "device: 'cuda' requested but no usable CUDA GPU" in err


def test_more_samples_than_memory_holds_are_refused_before_anything_runs(tmp_path, capsys):
    err = _bad_run(tmp_path, capsys, output_dir=str(tmp_path / "o"),
                   evaluation={"metrics": ["accuracy"], "n_samples": 10**11})
    assert "evaluation.n_samples" in err and "GiB" in err


def test_an_epsilon_no_noise_can_reach_is_refused_before_anything_runs(tmp_path, capsys):
    err = _bad_run(tmp_path, capsys, dataset="mnist-5k", output_dir=str(tmp_path / "o"), epsilons=[1e-7],
                   methods=[{"name": "dp-merf", "config": {"steps": 1}}])
    assert "epsilons: ε=1e-07 is unreachable for methods[0] (dp-merf)" in err


def test_every_built_in_method_declares_its_privacy_plan():
    from dpgen_bench.registry import get_method

    for name in ("dp-mepf", "dp-merf", "dp-gan", "dp-cgan"):
        cls = get_method(name)
        assert cls.privacy_plan(cls.Config(), 4000) is not None, name


def test_a_key_neutral_field_leaves_the_key_at_its_default_and_enters_it_otherwise():
    from dpgen_bench_baselines.dp_gan import DPGANConfig

    default, chunked = DPGANConfig(), DPGANConfig(physical_batch_size=32)
    assert "physical_batch_size" not in default.key_dump()
    assert chunked.key_dump()["physical_batch_size"] == 32
    assert {k: v for k, v in chunked.key_dump().items() if k != "physical_batch_size"} == default.key_dump()


def test_the_dpimagebench_diffusion_entries_spell_out_the_papers_dp_sgd_settings():
    """DPDM, PrivImage, DP-FETA, DP-LDM and DP-LoRA default to CPU settings chosen on mnist-5k's tuning split
    (p_mean 1.0, B = 100, 10 epochs); an entry of a paper grid that left one out would run the CPU value silently."""
    paper_keys = {"batch_size", "epochs", "lr", "p_mean", "p_std", "noise_multiplicity", "max_grad_norm"}
    diffusion = {"dpdm", "privimage", "dp-feta", "dp-ldm", "dp-lora"}
    for path in (p for p in CONFIGS if p.name.startswith("dpimagebench-")):
        entries = [m for m in load_config(path).methods if m.name in diffusion]
        assert {m.name for m in entries} == diffusion, path.name
        for m in entries:
            assert paper_keys <= set(m.config), (path.name, m.display, sorted(paper_keys - set(m.config)))
