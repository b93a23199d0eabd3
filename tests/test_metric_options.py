"""Each metric declares its options (a pydantic model on the registered unit) and validates them; a config passes
them under ``evaluation.options.<metric>``; a bad one is refused naming the metric and its valid options. The older
spelling (``evaluation.accuracy``, ``prdc_k``, ``prdc_space``) of stored configs and ``--set`` paths still reads,
and the cell keys do not change."""

from __future__ import annotations

import pytest
import torch

import runner_toy
from dpgen_bench.data import DatasetInfo, ImageDataset
from dpgen_bench.metrics import METRICS, MetricOptions, MetricOptionsError, compute_metrics, register_metric
from dpgen_bench.metrics.accuracy import AccuracyOptions
from dpgen_bench.metrics.prdc import PRDCOptions
from dpgen_bench.runner.config import ConfigFileError, load_config, parse_config, resolve_methods
from dpgen_bench.runner.grid import build_cells


class ShiftOptions(MetricOptions):
    shift: float = 0.0


def _shifted_mean(ctx, options: ShiftOptions) -> dict[str, float]:
    return {"shifted-mean": float(ctx.synthetic.images.mean()) + options.shift}


@pytest.fixture
def shifted_mean():
    register_metric("shifted-mean", results={"shifted-mean": "higher"}, options=ShiftOptions)(_shifted_mean)
    yield "shifted-mean"
    METRICS.unregister("shifted-mean")


def _grey(n: int, level: float) -> ImageDataset:
    return ImageDataset(torch.full((n, 1, 4, 4), level), torch.arange(n) % 2, DatasetInfo("flat", 1, 4, 4, 2))


def test_built_in_metrics_declare_their_options_with_defaults():
    assert METRICS.get("accuracy").options is AccuracyOptions and METRICS.get("prdc").options is PRDCOptions
    assert METRICS.get("prdc").parse_options() == PRDCOptions(k=5, space="effnet")
    assert METRICS.get("is").parse_options({"splits": 1}).splits == 1
    assert METRICS.get("fid").options is None and METRICS.get("fid").options_model.describe() == "-"


def test_a_metric_receives_its_own_validated_options(shifted_mean):
    (default,) = compute_metrics([shifted_mean], _grey(2, 0.5), _grey(2, 0.25))
    (shifted,) = compute_metrics([shifted_mean], _grey(2, 0.5), _grey(2, 0.25), options={shifted_mean: {"shift": 1}})
    assert (default.value, shifted.value) == (0.25, 1.25)


@pytest.mark.parametrize("metric,given,named", [
    ("prdc", {"kk": 3}, "no option 'kk'"),
    ("prdc", {"k": 0}, "option k: Input should be greater than or equal to 1"),
    ("prdc", {"space": "pixels"}, "option space: Input should be 'effnet', 'digitcnn' or 'inception'"),
    ("accuracy", {"cnn_epochs": 2.5}, "option cnn_epochs: Input should be a valid integer"),
    ("is", {"splits": True}, "option splits: Input should be a valid integer"),
])
def test_a_bad_option_names_the_metric_and_every_valid_option(metric, given, named):
    with pytest.raises(MetricOptionsError) as err:
        METRICS.get(metric).parse_options(given)
    message = str(err.value)
    assert message.startswith(f"metric {metric!r}: ") and named in message, message
    for option, default in METRICS.get(metric).options_model().model_dump().items():
        assert f"{option}={default!r}" in message, message


def test_a_metric_without_options_says_it_takes_none():
    with pytest.raises(MetricOptionsError, match=r"metric 'fid': no option 'k'; it takes no options"):
        compute_metrics(["fid"], _grey(2, 0.5), _grey(2, 0.5), options={"fid": {"k": 3}})


def test_options_for_a_metric_not_computed_are_refused_by_compute_metrics(shifted_mean):
    with pytest.raises(MetricOptionsError, match=r"options given for metric\(s\) \['prdc'\] that are not computed"):
        compute_metrics([shifted_mean], _grey(2, 0.5), _grey(2, 0.5), options={"prdc": {"k": 3}})


# ---------------------------------------------------------------------------------------------- configs


def _config(tmp_path, **evaluation) -> dict:
    return runner_toy.tiny_config(tmp_path / "out", evaluation={"metrics": ["accuracy", "prdc"], **evaluation})


def _key(config: dict) -> str:
    cfg = parse_config(config)
    return build_cells(cfg, resolve_methods(cfg))[0].key


@pytest.mark.parametrize("options,named", [
    ({"prdc": {"k": "five"}}, "options.prdc: metric 'prdc': option k: Input should be a valid integer"),
    ({"accuracy": {"cnn_epoch": 1}}, "metric 'accuracy': no option 'cnn_epoch'; valid options: logreg_max_iter=100"),
    ({"prdcc": {"k": 3}}, "options names unknown metric(s) ['prdcc']; registered metrics:"),
])
def test_a_config_with_a_bad_option_is_refused_naming_the_metric(tmp_path, options, named):
    with pytest.raises(ConfigFileError) as err:
        parse_config(_config(tmp_path, options=options))
    assert named in str(err.value), str(err.value)


def test_options_enter_the_cell_key_and_the_older_spelling_gives_the_same_key(tmp_path):
    newer = _config(tmp_path, options={"accuracy": {"cnn_epochs": 1}, "prdc": {"k": 3}})
    older = _config(tmp_path, accuracy={"cnn_epochs": 1}, prdc_k=3)
    assert _key(newer) == _key(older)
    assert _key(newer) != _key(_config(tmp_path, options={"accuracy": {"cnn_epochs": 1}, "prdc": {"k": 4}}))
    assert _key(_config(tmp_path)) == _key(_config(tmp_path, prdc_k=5, prdc_space="effnet", accuracy={}))
    with_is = _config(tmp_path, metrics=["accuracy", "prdc", "is"])
    assert _key(with_is) != _key(_config(tmp_path, metrics=["accuracy", "prdc", "is"], options={"is": {"splits": 1}}))
    assert _key(with_is) == _key(_config(tmp_path, metrics=["accuracy", "prdc", "is"], options={"is": {"splits": 10}}))


def test_the_older_spelling_contradicting_options_is_refused_naming_the_path_to_set(tmp_path):
    with pytest.raises(ConfigFileError, match=r"prdc_k \(older spelling of options.prdc.k\) is 3 but options.prdc.k "
                                              r"is 4; set options.prdc.k only"):
        parse_config(_config(tmp_path, options={"prdc": {"k": 4}}, prdc_k=3))


@pytest.mark.parametrize("assignment", ["evaluation.prdc_k=3", "evaluation.options.prdc.k=3"])
def test_set_paths_of_either_spelling_override_the_default_config(assignment):
    config = load_config(None, [assignment, "evaluation.accuracy.cnn_epochs=1"])
    assert config.evaluation.options["prdc"]["k"] == 3
    assert config.evaluation.options["accuracy"] == {"cnn_epochs": 1, "mlp_max_iter": 50}


def test_the_dpimagebench_protocol_refuses_options_it_would_ignore(tmp_path):
    with pytest.raises(ConfigFileError, match=r"protocol dpimagebench fixes the settings of its metrics.*\['prdc'\]"):
        parse_config(_config(tmp_path, protocol="dpimagebench", options={"prdc": {"k": 3}}))
