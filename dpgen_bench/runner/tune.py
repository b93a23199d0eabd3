"""``dpgen-bench tune CONFIG``: random search over a declared space for one method entry, selecting honestly.

Two modes (``tune.select_on``, ``docs/honest_settings.md``):

* ``tuning-split`` (free): the declared tuning split of the dataset (``load_splits(..., tuning=True)``), which
  never reaches training or evaluation of a run with ``tuning_split: true``, is split once more (stratified,
  20 %); each of ``trials`` different candidates (at most the space's size) trains on its first part at the
  tuning ε and is scored on the second.
  The tuning examples are sacrificed: they get no protection (their scores are written out).
* ``private``: K ~ truncated negative binomial with E[K] = ``trials`` (secret, OS entropy), each candidate drawn
  independently (a config may come twice: the guarantee needs independent draws),
  trains on the private train split at a share of the budget calibrated so that the best-of-K search meets
  the target ε in total (:mod:`dpgen_bench.privacy.tuning`), scored on the tuning split. Only the best
  candidate is output: its config, its model, and its test metrics with "ε incl. tuning"; K and the other
  candidates stay unreleased.

Either way the output is ``<output_dir>/tune/``: ``chosen.yaml`` (the benchmark config with the entry set to
the chosen config and ``tuned_on`` declared) and ``tune.json`` (what was done; for ``tuning-split`` every trial).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from ..files import write_atomic
from .config import BenchConfig, MethodSpec, TuneSpec
from .tune_search import (TuneResult, _better, _fit_and_score, _score, _write, check_tune, distinct_candidates,  # noqa: F401
                          chosen_config, load_chosen, tune_context, tuning_epsilon_target)

VALIDATION_FRACTION = 0.2
"""Share of the tuning split that scores ``tuning-split`` candidates (the rest trains them)."""


def run_tune(config: BenchConfig) -> TuneResult:
    """Run the search of ``config.tune`` and write ``<output_dir>/tune/`` (see the module docstring)."""
    spec, index, entry, cls = check_tune(config)
    if spec.select_on == "private":
        from .tune_private import run_private_tune

        return run_private_tune(config, spec, index, entry, cls)
    return _run_tuning_split(config, spec, index, entry, cls)


def _tuning_parts(config: BenchConfig, seed: int):
    from ..data import load_splits
    from ..data.splits import split_dataset

    tuning = load_splits(config.dataset, seed=config.split_seed, test_fraction=config.test_fraction,
                         data_dir=config.data_dir, download=config.download, tuning=True).tuning
    return split_dataset(tuning, seed=seed, test_fraction=VALIDATION_FRACTION)


def _run_tuning_split(config: BenchConfig, spec: TuneSpec, index: int, entry: MethodSpec, cls) -> TuneResult:
    from ..method import build_config
    from ..privacy.budget import PrivacyBudget

    root = Path(config.output_dir) / "tune"
    parts = _tuning_parts(config, spec.seed)
    eps = tuning_epsilon_target(config, spec)
    budget = PrivacyBudget.from_setting(eps, config.delta, parts.train.public_size(), config.accountant)
    context = tune_context(config, entry, parts.train.info, root)
    trials, best, best_score, direction = [], None, None, "higher"
    candidates = distinct_candidates(spec)
    fewer = f" (all the space has; tune.trials is {spec.trials})" if len(candidates) < spec.trials else ""
    _say(f"tune: {len(candidates)} different candidates{fewer} of {entry.display} on the tuning split of "
         f"{config.dataset} ({len(parts.train)} train / {len(parts.test)} score), ε {eps:g} each")
    for t, values in enumerate(candidates):
        method_config = build_config(cls.Config, {**entry.config, **values})
        torch.manual_seed(spec.seed)
        _, ledger, rows = _fit_and_score(cls, method_config, parts.train, parts.test, budget, config.evaluation,
                                         root, spec.seed, context)
        score, direction = _score(rows, spec.metric)
        trials.append({"trial": t, "config": values, "score": score,
                       "spent_epsilon_on_tuning_split": float(ledger.epsilon(budget)) if budget.is_private else math.inf})
        if _better(score, best_score, direction):
            best, best_score = values, score
        _say(f"tune: candidate {t + 1}/{len(candidates)} {values}: {spec.metric} {score}")
        _progress(root, {"status": f"running: {t + 1} of {len(candidates)} candidates done", "trials": trials})
    if best is None:
        raise RuntimeError(f"no candidate produced a {spec.metric} score; see {root / 'tune.json'}")
    tuned_on = f"{config.dataset}:tuning"
    result = TuneResult(best, best_score, eps, eps, trials)
    result.outputs = _write(config, spec, index, entry, best, tuned_on, root, {
        "select_on": spec.select_on, "metric": spec.metric, "direction": direction, "tuned_at_epsilon": eps,
        "chosen": best, "score": best_score, "trials": trials, "tuned_on": tuned_on,
        "epsilon_incl_tuning": "the final run's ε: the search touched only the declared tuning split"})
    return result


def _say(line: str) -> None:
    """One plain progress line on stderr (a search runs for hours; a log should not stay silent)."""
    print(line, file=sys.stderr, flush=True)


def _progress(root: Path, record: dict) -> None:
    """The trials so far in ``tune.json`` (tuning-split mode only: its trials are public; the final write
    replaces it), so an interrupted search leaves what it found."""
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / "tune.json", json.dumps(record, indent=1, sort_keys=True, default=str))
