"""What both modes of ``dpgen-bench tune`` share (:mod:`dpgen_bench.runner.tune`): the result, the entry and
its candidates, scoring a candidate, and writing ``chosen.yaml`` / ``tune.json``."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..files import write_atomic
from ..jobs.provenance import code_version
from .config import BenchConfig, ConfigFileError, MethodSpec, TuneSpec, dump_config, resolve_methods


@dataclass
class TuneResult:
    """What ``dpgen-bench tune`` chose and where it wrote it."""

    chosen: dict[str, Any]
    """The chosen values of the space's keys."""
    score: float | None
    """The chosen candidate's score on the validation data (``tuning-split``: released; ``private``: None)."""
    epsilon: float
    epsilon_incl_tuning: float
    """The whole search's ε (``tuning-split``: the private data was not touched, so ε of the final run alone)."""
    trials: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def entry_of(config: BenchConfig, spec: TuneSpec) -> tuple[int, MethodSpec]:
    """The methods entry ``tune.method`` names (by label, then name); ConfigFileError listing them if none."""
    for i, entry in enumerate(config.methods):
        if spec.method in (entry.display, entry.name):
            return i, entry
    raise ConfigFileError(f"tune.method: no methods entry {spec.method!r}; entries: {[m.display for m in config.methods]}")


def candidate(spec: TuneSpec, t: int) -> dict[str, Any]:
    """Trial ``t``'s values: each key's value drawn uniformly from its list with public randomness, independently
    of the other trials (the private mode's guarantee needs independent draws; a config may come twice)."""
    from ..privacy.noise import public_generator

    g = public_generator(spec.seed, "tune", t)
    return {key: values[int(torch.randint(len(values), (1,), generator=g))] for key, values in spec.space.items()}


def distinct_candidates(spec: TuneSpec) -> list[dict[str, Any]]:
    """The tuning-split mode's candidates: ``spec.trials`` different configs of the space in a public random
    order, or all of them if the space has fewer (a config drawn twice would spend a trial on nothing new)."""
    from ..privacy.noise import public_generator

    grid = [dict(zip(spec.space, values)) for values in itertools.product(*spec.space.values())]
    order = torch.randperm(len(grid), generator=public_generator(spec.seed, "tune-order"))
    return [grid[int(i)] for i in order[: spec.trials]]


def tuning_epsilon_target(config: BenchConfig, spec: TuneSpec) -> float:
    finite = [e for e in config.epsilons if math.isfinite(e)]
    eps = spec.epsilon if spec.epsilon is not None else (max(finite) if finite else math.inf)
    if spec.select_on == "private" and not math.isfinite(eps):
        raise ConfigFileError("tune.epsilon: private selection needs a finite ε (set tune.epsilon or a finite epsilons)")
    return float(eps)


def check_tune(config: BenchConfig) -> tuple[TuneSpec, int, MethodSpec, Any]:
    """Validate the ``tune:`` section before anything trains: the entry, every candidate config of the space,
    the metric among what the evaluation computes; returns (spec, entry index, entry, method class)."""
    from ..method import ConfigError, build_config
    from ..registry import get_method

    if config.tune is None:
        raise ConfigFileError("tune: the config has no 'tune' section (method, space, trials, select_on, metric)")
    spec = config.tune
    resolve_methods(config)
    i, entry = entry_of(config, spec)
    cls = get_method(entry.name)
    for values in itertools.product(*spec.space.values()):
        try:
            build_config(cls.Config, {**entry.config, **dict(zip(spec.space, values))})
        except ConfigError as exc:
            raise ConfigFileError(f"tune.space: {dict(zip(spec.space, values))}: {exc}") from None
    return spec, i, entry, cls


def _score(rows: list[dict[str, Any]], metric: str) -> tuple[float | None, str]:
    """The value and direction of ``metric`` among evaluation rows; ConfigFileError if it is not computed."""
    for r in rows:
        if r["metric"] == metric:
            return r["value"], r["direction"]
    raise ConfigFileError(f"tune.metric: {metric!r} is not among the evaluation's results {sorted({r['metric'] for r in rows})}")


def _better(a: float | None, b: float | None, direction: str) -> bool:
    if a is None:
        return False
    return b is None or (a < b if direction == "lower" else a > b)


def tune_context(config: BenchConfig, entry: MethodSpec, info, root: Path):
    """The RunContext every candidate fits with: the config's device, a cache under ``root``, and the entry's
    ``public_data`` loaded as a cell loads it (converted to ``info``'s shape), so a method that pre-trains on
    public data is tuned as it will run."""
    from ..context import RunContext
    from ..jobs.public import with_public_data

    public = entry.public_data.model_dump(mode="json") if entry.public_data is not None else None
    return with_public_data(RunContext(device=config.device, progress=False, cache_dir=root / "cache"), public,
                            info, data_dir=config.data_dir, download=config.download)


def _fit_and_score(cls, method_config, train, validation, budget, evaluation, root: Path, seed: int, context):
    """Fit a candidate on ``train`` within ``budget``, score its samples against ``validation``; returns
    (method, ledger, evaluation rows)."""
    from ..privacy.ledger import PrivacyLedger
    from ..jobs.training import draw_samples, evaluate_samples

    method = cls(method_config, train.info, seed=seed, context=context)
    ledger = PrivacyLedger()
    method.fit(train, budget, ledger)
    images, labels = draw_samples(method, evaluation, seed)
    rows = evaluate_samples(images, labels, method.samples_labelled, validation, evaluation, root=root, seed=seed,
                            split_seed=seed, train_extractor=cls.training_extractor(method.config), device=context.device)
    return method, ledger, rows


def chosen_config(config: BenchConfig, index: int, entry: MethodSpec, chosen: dict[str, Any], tuned_on: str,
                  **changes: Any) -> BenchConfig:
    """``config`` with entry ``index`` set to the chosen values and ``tuned_on``, the tuning split held out of
    train and test, and no ``tune`` section (so ``dpgen-bench run`` reruns it as is)."""
    methods = list(config.methods)
    methods[index] = entry.model_copy(update={"config": {**entry.config, **chosen}, "tuned_on": tuned_on})
    return config.model_copy(update={"methods": methods, "tuning_split": True, "tune": None, **changes})


def _write(config, spec, index, entry, chosen, tuned_on, root: Path, record: dict[str, Any], **changes) -> list[Path]:
    out = chosen_config(config, index, entry, chosen, tuned_on, **changes)
    record = {**record, "code_version": code_version()}
    return [write_atomic(root / "chosen.yaml", dump_config(out)),
            write_atomic(root / "tune.json", json.dumps(record, indent=1, sort_keys=True, default=str))]


def load_chosen(path: str | Path) -> dict[str, Any]:
    """The chosen config YAML as data (tests, scripts)."""
    return yaml.safe_load(Path(path).read_text())
