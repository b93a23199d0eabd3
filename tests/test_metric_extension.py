"""A metric registered from user code is a first-class metric: listed, accepted by a config, computed in a
benchmark run and tabulated with the direction it declared. Registration refuses taken names (naming both
origins) and undeclared results; an unknown name lists the valid ones."""

from __future__ import annotations

import pytest
import torch

import runner_toy  # noqa: F401  (registers the toy methods)
from dpgen_bench.cli import main
from dpgen_bench.data import DatasetInfo, ImageDataset
from dpgen_bench.metrics import METRICS, MetricContext, compute_metrics, list_metrics, register_metric
from dpgen_bench.named_registry import DuplicateNameError, UnknownNameError
from dpgen_bench.runner.benchmark import run_benchmark
from dpgen_bench.runner.config import ConfigFileError, check_metrics_names, parse_config
from dpgen_bench.runner.store import ResultsStore
from dpgen_bench.runner.tables import build_table, render

GAP = "mean-brightness-gap"


def mean_brightness_gap(ctx: MetricContext) -> dict[str, float]:
    """|mean real pixel − mean synthetic pixel|, in [0, 1]: 0 when the overall brightness matches."""
    return {GAP: abs(float(ctx.real.images.mean()) - float(ctx.synthetic.images.mean()))}


@pytest.fixture
def gap_metric():
    register_metric(GAP, results={GAP: "lower"})(mean_brightness_gap)
    yield GAP
    METRICS.unregister(GAP)


@pytest.fixture
def scratch_names():
    """Names a test may register; removed afterwards whether or not the registration succeeded."""
    names: list[str] = []
    yield names
    for name in names:
        METRICS.unregister(name)


def _grey(n: int, level: float) -> ImageDataset:
    images = torch.full((n, 1, 4, 4), level)
    return ImageDataset(images, torch.arange(n) % 2, DatasetInfo("flat", 1, 4, 4, 2))


def test_a_registered_metric_is_listed_with_its_results_direction_and_space(gap_metric, capsys):
    assert list_metrics()[-1] == GAP
    assert main(["list"]) == 0
    metrics_section = capsys.readouterr().out.partition("\nMetrics")[2]
    rows = {line.split()[0]: line.split() for line in metrics_section.splitlines() if line.strip()}
    assert rows.get(GAP) == [GAP, GAP, "lower", "pixels", "-"]  # metric, results, direction, feature space, options
    assert rows.get("prdc")[-2:] == ["k=5,", "space='effnet'"]  # the options a metric declares, with defaults


def test_a_registered_metric_is_computed_in_pixel_space_with_its_declared_direction(gap_metric):
    (res,) = compute_metrics([GAP], _grey(4, 0.5), _grey(3, 0.25))
    assert (res.name, res.value, res.direction, res.extractor) == (GAP, 0.25, "lower", None)
    assert (res.n_real, res.n_fake, res.missing_reason, res.same_space_as_training) == (4, 3, None, False)


def test_a_registered_metric_runs_in_a_benchmark_and_reaches_the_table_with_its_direction(gap_metric, tmp_path):
    config = parse_config(runner_toy.tiny_config(tmp_path, epsilons=[1], seeds=[0],
                                                 evaluation={"metrics": [GAP], "n_samples": 60}))
    summary = run_benchmark(config, jobs=1, progress=False, render=False)  # jobs=1: in-process registration
    assert summary.failed == [] and len(summary.ran) == 2
    df = ResultsStore(tmp_path).read_results()
    assert set(df["metric"]) == {GAP} and set(df["direction"]) == {"lower"} and df["value"].notna().all()
    table = build_table(df)
    assert [c[:2] for c in table.columns] == [(GAP, "lower")]
    cells = {row: table.get(row, table.columns[0]) for row in table.rows}
    assert len({c.mean for c in cells.values()}) == 2  # the two methods differ, so "best" is decided
    best = min(cells, key=lambda row: cells[row].mean)  # lower is better
    assert [row for row, c in cells.items() if c.best] == [best]
    assert f"{GAP} ↓ ε=1" in render(df, "md")


def test_registering_a_taken_metric_name_is_refused_naming_both_origins(gap_metric):
    def imposter(ctx: MetricContext) -> dict[str, float]:
        return {GAP: 0.0}

    with pytest.raises(DuplicateNameError) as err:
        register_metric(GAP, results={GAP: "higher"})(imposter)
    assert "test_metric_extension.mean_brightness_gap" in str(err.value)
    assert "imposter" in str(err.value)
    assert METRICS.get(GAP).compute is mean_brightness_gap  # the first registration stands


def test_declaring_a_result_another_metric_produces_is_refused_naming_both_origins(scratch_names):
    scratch_names.append("my-fid")
    with pytest.raises(DuplicateNameError) as err:
        register_metric("my-fid", results={"FID": "lower"})(mean_brightness_gap)
    assert "'fid'" in str(err.value) and "frechet_metrics" in str(err.value) and "mean_brightness_gap" in str(err.value)
    assert "my-fid" not in list_metrics()


def test_a_declaration_without_a_valid_direction_is_refused(scratch_names):
    scratch_names.append("sideways")
    with pytest.raises(ValueError, match="'lower' or 'higher'"):
        register_metric("sideways", results={"sideways": "up"})(mean_brightness_gap)  # type: ignore[dict-item]
    assert "sideways" not in list_metrics()


def test_a_unit_that_returns_other_results_than_it_declares_is_refused(scratch_names):
    scratch_names.append("liar")
    register_metric("liar", results={"liar": "lower"})(mean_brightness_gap)  # returns GAP, not "liar"
    with pytest.raises(TypeError, match=r"'liar' returned \['mean-brightness-gap'\].*\['liar'\]"):
        compute_metrics(["liar"], _grey(4, 0.5), _grey(3, 0.25))


def test_an_unknown_metric_name_lists_every_registered_name(gap_metric):
    with pytest.raises(UnknownNameError) as err:
        compute_metrics(["mean-brightness-gapp"], _grey(4, 0.5), _grey(3, 0.25))
    assert "'mean-brightness-gapp'" in str(err.value)
    assert all(name in str(err.value) for name in list_metrics()) and GAP in str(err.value)
    with pytest.raises(ConfigFileError, match=GAP):  # a config check names it too
        check_metrics_names(["mean-brightness-gapp"])
    check_metrics_names([GAP, "fid"])  # and accepts it
