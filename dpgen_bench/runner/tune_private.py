"""``tune.select_on: private``: best-of-K search on the private split, its cost accounted (Papernot & Steinke).

Each candidate's config comes from the space with public randomness; K ~ D_{η,γ} (E[K] = ``trials``) is drawn
from OS entropy and never released. Candidates may have different privacy plans, so one reference RDP curve
bounds them all: every config c of the (finite) space is calibrated to the same per-candidate target e with
the ``rdp`` accountant, R(λ) = max_c ε_c(λ), and e is the largest value for which the search's ε from R meets
the target (:func:`dpgen_bench.privacy.tuning.tuning_epsilon`). A candidate trains with the budget (e, δ, rdp),
so its own calibration reproduces σ_c, and its ledger is checked against R after the fit. The output is the
best candidate (by its score on the declared tuning split, never on the test split) with its test metrics and
"ε incl. tuning".
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import write_atomic
from ..jobs.provenance import code_version
from .config import BenchConfig, ConfigFileError, MethodSpec, TuneSpec
from .tune_search import TuneResult, _better, _fit_and_score, _score, _write, candidate, tune_context, tuning_epsilon_target

RDP_SLACK = 1e-9
"""Relative float slack when checking a candidate's ledger against the reference curve."""


def gamma_for_mean(eta: float, mean: float) -> float:
    """γ with E[K] = ``mean`` for K ~ D_{η,γ} (bisection; the mean falls as γ grows)."""
    from ..privacy.tuning import tnb_mean

    if mean <= 1:
        raise ConfigFileError(f"tune.trials: private selection needs an expected number of candidates > 1, got {mean}")
    lo, hi = 1e-12, 1 - 1e-12
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tnb_mean(eta, mid) > mean else (lo, mid)
    return (lo + hi) / 2


def reference(cls, entry: MethodSpec, spec: TuneSpec, n_hat: int, epsilon: float, delta: float, gamma: float):
    """(per-candidate ε e, reference RDP curve R, ε incl. tuning) for the whole space (module docstring)."""
    from ..method import build_config
    from ..privacy.budget import PrivacyBudget
    from ..privacy.calibration import CalibrationError, calibrate
    from ..privacy.tuning import events_rdp, tuning_epsilon_from_rdp

    plans = []
    for values in itertools.product(*spec.space.values()):
        plan = cls.privacy_plan(build_config(cls.Config, {**entry.config, **dict(zip(spec.space, values))}), n_hat)
        if plan is None:
            raise ConfigFileError(f"tune: method {entry.name!r} does not declare its privacy plan ahead, so private "
                                  f"selection cannot be calibrated; use select_on: tuning-split")
        plans.append(plan)

    def curve(e: float) -> np.ndarray:
        budget = PrivacyBudget(e, delta, accountant="rdp")
        return np.max([events_rdp(p(calibrate(p, budget))) for p in plans], axis=0)

    def fits(e: float) -> bool:
        try:
            return tuning_epsilon_from_rdp(curve(e), delta, spec.eta, gamma) <= epsilon
        except CalibrationError:
            return False

    hi, lo = epsilon, epsilon / 2
    while not fits(lo):  # halve until the whole search fits (a per-candidate ε below ~0.1 is out of RDP's reach)
        hi, lo = lo, lo / 2
        if lo < 1e-2:
            raise ConfigFileError(f"tune: ε={epsilon:g} cannot pay for a search with E[K]={spec.trials}; lower trials")
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if tuning_epsilon_from_rdp(curve(mid), delta, spec.eta, gamma) <= epsilon else (lo, mid)
    r = curve(lo)
    return lo, r, tuning_epsilon_from_rdp(r, delta, spec.eta, gamma)


def run_private_tune(config: BenchConfig, spec: TuneSpec, index: int, entry: MethodSpec, cls):
    from ..data import load_splits
    from ..method import build_config
    from ..privacy.budget import PrivacyBudget
    from ..privacy.noise import release_generator
    from ..privacy.tuning import events_rdp, sample_tnb
    from ..jobs.training import draw_samples, evaluate_samples

    root = Path(config.output_dir) / "tune"
    splits = load_splits(config.dataset, seed=config.split_seed, test_fraction=config.test_fraction,
                         data_dir=config.data_dir, download=config.download, tuning=True)
    n_hat = splits.train.public_size()
    target = tuning_epsilon_target(config, spec)
    delta = PrivacyBudget.from_setting(target, config.delta, n_hat, config.accountant).delta
    gamma = gamma_for_mean(spec.eta, spec.trials)
    per_candidate, ref, eps_incl = reference(cls, entry, spec, n_hat, target, delta, gamma)
    budget = PrivacyBudget(per_candidate, delta, accountant="rdp")
    context = tune_context(config, entry, splits.train.info, root)
    best, best_score, best_method, direction = None, None, None, "higher"
    k = sample_tnb(spec.eta, gamma, release_generator())  # secret: never written anywhere
    print(f"tune: private search of {entry.display} (E[K] = {spec.trials:g} candidates, each at RDP ε "
          f"{per_candidate:.4f}; ε incl. tuning {eps_incl:.4f}). The number of candidates and their scores are "
          f"secret: nothing is printed until the search ends, and its wall time grows with the number: do not "
          f"publish it.", file=sys.stderr, flush=True)
    for t in range(k):
        values = candidate(spec, t)
        method, ledger, rows = _fit_and_score(cls, build_config(cls.Config, {**entry.config, **values}), splits.train,
                                              splits.tuning, budget, config.evaluation, root, spec.seed, context)
        if np.any(events_rdp(ledger.events) > ref * (1 + RDP_SLACK) + 1e-12):
            raise RuntimeError(f"candidate {values} released more than the reference RDP curve it was calibrated to")
        score, direction = _score(rows, spec.metric)
        if _better(score, best_score, direction):
            best, best_score, best_method = values, score, method
    if best is None:
        raise RuntimeError(f"no candidate produced a {spec.metric} score")
    images, labels = draw_samples(best_method, config.evaluation, spec.seed)
    rows = evaluate_samples(images, labels, best_method.samples_labelled, splits.test, config.evaluation, root=root,
                            seed=spec.seed, split_seed=config.split_seed,
                            train_extractor=cls.training_extractor(best_method.config), device=context.device)
    best_method.save(root / "chosen" / "checkpoint")
    facts = {"dataset": config.dataset, "method": entry.display, "method_name": entry.name, "status": "ok",
             "cell_key": f"tune-{entry.display}", "seed": spec.seed, "split_seed": config.split_seed,
             "target_epsilon": target, "spent_epsilon": eps_incl, "epsilon_incl_tuning": eps_incl,
             "accountant": "rdp (Papernot & Steinke 2022, Thm 2)", "delta": delta,
             "method_config": json.dumps(best_method.config.model_dump(mode="json"), sort_keys=True),
             "tuned_on": "private selection (accounted)", "tuned_on_reported_data": False,
             "n_train_nominal": n_hat, "resources_missing_reason": "private search: not recorded",
             "code_version": code_version()}
    frame = pd.DataFrame([{**facts, **r} for r in rows])
    write_atomic(root / "results.csv", frame.to_csv(index=False))
    result = TuneResult(best, None, target, eps_incl)
    result.outputs = [root / "results.csv"] + _write(
        config, spec, index, entry, best, f"{config.dataset}:train", root, {
            "select_on": "private", "metric": spec.metric, "direction": direction, "chosen": best,
            "score_on_tuning_split": best_score, "target_epsilon": target, "delta": delta,
            "epsilon_incl_tuning": eps_incl, "per_candidate_rdp_epsilon": per_candidate, "eta": spec.eta,
            "gamma": gamma, "expected_candidates": spec.trials,
            "note": "the number of candidates run and their scores are secret; results.csv holds the chosen "
                    "candidate's test metrics; rerunning chosen.yaml on the private data would cost its ε again"})
    return result
