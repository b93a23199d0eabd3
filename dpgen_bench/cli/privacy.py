"""`dpgen-bench privacy epsilon|calibrate|accountants`: ε for given noise, noise for a target ε, and the
registered accountant backends.

Mechanisms are described on the command line and composed:

* a Poisson-subsampled DP-SGD run: ``--sample-rate q`` (or ``--dataset-size n --batch-size b``) with
  ``--steps T`` or ``--epochs E``; its noise multiplier is ``--sigma`` (for ``epsilon``) or the calibrated σ;
* one-shot Gaussian releases: ``--gaussian σ`` (repeatable; ``epsilon`` only);
  ``--release s`` (repeatable; ``calibrate`` only): a release whose noise multiplier is σ / s;
* ``--events JSON``: a list of serialised events (``events_to_json``), e.g. a ledger (``epsilon`` only).

δ is ``--delta`` or, with ``--dataset-size n`` and no ``--delta``, the rule 1/(n·ln n).
Neighbouring relation: add/remove one example (every row carries ``NEIGHBOURING``). ``--all-backends``
prints one row per registered backend; ``--json`` prints machine-readable output.

Nothing here imports the privacy layer before a handler runs (it takes seconds, and ``build_parser`` runs for
every command), so help texts point at the registry instead of listing its names.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from . import UsageError


def register(sub) -> None:
    p = sub.add_parser(
        "privacy",
        help="privacy accounting: epsilon for given noise, or noise for a target epsilon",
        description="Privacy accounting under add/remove-one neighbouring.",
    )
    psub = p.add_subparsers(dest="privacy_command", metavar="ACTION")
    psub.required = True

    e = psub.add_parser(
        "epsilon",
        help="epsilon spent by given mechanisms",
        description="Epsilon spent by a DP-SGD run and/or one-shot Gaussian releases (composed).",
    )
    _common(e)
    e.add_argument("--sigma", type=float, help="noise multiplier of the DP-SGD run (relative to L2 sensitivity)")
    e.add_argument(
        "--gaussian", type=float, action="append", default=[], metavar="SIGMA",
        help="a one-shot Gaussian release with this noise multiplier (repeat to compose several)",
    )
    e.add_argument("--events", help="JSON list of serialised events (as written by events_to_json / a ledger)")
    e.set_defaults(handler=_epsilon)

    c = psub.add_parser(
        "calibrate",
        help="smallest noise multiplier for a target epsilon",
        description="Smallest noise multiplier sigma whose planned mechanisms spend at most --epsilon.",
    )
    _common(c)
    c.add_argument("--epsilon", type=float, required=True, help="target epsilon (> 0)")
    c.add_argument(
        "--release", type=float, action="append", default=[], metavar="S",
        help="a one-shot Gaussian release with relative L2 sensitivity S (noise multiplier sigma/S); repeatable",
    )
    c.add_argument("--rtol", type=float, default=None, help="relative tolerance on sigma (default 1e-3)")
    c.set_defaults(handler=_calibrate)

    a = psub.add_parser(
        "accountants",
        help="the registered accountant backends",
        description="Every registered accountant backend: stated error, what it can account, where it comes from.",
    )
    a.add_argument("--json", action="store_true", help="machine-readable JSON output")
    a.set_defaults(handler=_accountants)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--delta", type=float, default=None, help="delta in (0, 1); default 1/(n ln n) with --dataset-size")
    p.add_argument("--sample-rate", type=float, default=None, help="Poisson sampling rate q in (0, 1]")
    p.add_argument("--dataset-size", type=int, default=None, help="private dataset size n (for q = b/n and delta rule)")
    p.add_argument("--batch-size", type=int, default=None, help="expected batch size b (q = b/n)")
    p.add_argument("--steps", type=int, default=None, help="number of DP-SGD steps")
    p.add_argument("--epochs", type=float, default=None, help="number of epochs (steps = epochs * int(1/q))")
    p.add_argument(
        "--accountant", default=None,
        help="a registered accountant backend (`dpgen-bench privacy accountants`); default: the library's "
        "DEFAULT_ACCOUNTANT",
    )
    p.add_argument("--all-backends", action="store_true", help="one row per registered backend, side by side")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")


# --------------------------------------------------------------------------------------------------------


def _delta(args) -> tuple[float, str]:
    from ..privacy import PrivacyBudget, check_delta

    if args.delta is not None:
        try:
            return check_delta(args.delta, "--delta"), "fixed"
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.dataset_size is not None:
        try:
            b = PrivacyBudget.from_rule(1.0, args.dataset_size)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return b.delta, b.delta_rule
    raise UsageError("give --delta, or --dataset-size to use delta = 1/(n ln n)")


def _dpsgd(args) -> tuple[float, int] | None:
    """(q, steps) of the DP-SGD run described by the arguments, or None if there is none."""
    from ..privacy.events import check_positive_int
    from ..privacy.plans import epochs_to_steps

    has_rate = args.sample_rate is not None or args.batch_size is not None
    has_len = args.steps is not None or args.epochs is not None
    if not has_rate and not has_len:
        return None
    try:
        q = _sample_rate(args)
        if (args.steps is None) == (args.epochs is None):
            raise UsageError("a DP-SGD run needs exactly one of --steps or --epochs")
        if args.steps is not None:
            return q, check_positive_int("--steps", args.steps)
        return q, epochs_to_steps(q, args.epochs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _sample_rate(args) -> float:
    """q from ``--sample-rate``, or from ``--batch-size`` / ``--dataset-size``; ValueError or UsageError."""
    from ..privacy.events import check_sample_rate
    from ..privacy.plans import sample_rate

    if args.sample_rate is not None:
        if args.batch_size is not None:
            raise UsageError("give --sample-rate or --batch-size (with --dataset-size), not both")
        return check_sample_rate(args.sample_rate)
    if args.batch_size is not None:
        if args.dataset_size is None:
            raise UsageError("--batch-size needs --dataset-size")
        return sample_rate(args.batch_size, args.dataset_size)
    raise UsageError("a DP-SGD run needs --sample-rate, or --batch-size with --dataset-size")


def _backends(args) -> list[str]:
    """The accountants to report: every registered one with --all-backends, else --accountant (or the default)."""
    from ..privacy import DEFAULT_ACCOUNTANT, UnknownAccountantError, get_accountant, list_accountants

    if args.all_backends:
        return list_accountants()
    name = DEFAULT_ACCOUNTANT if args.accountant is None else args.accountant
    try:
        get_accountant(name)
    except UnknownAccountantError as exc:  # the message lists the registered names
        raise UsageError(str(exc)) from None
    return [name]


def _accountants(args) -> int:
    from ..privacy import ACCOUNTANTS, DEFAULT_ACCOUNTANT, NEIGHBOURING

    rows = []
    for name, acc in ACCOUNTANTS.items():
        rows.append({"accountant": name, "default": name == DEFAULT_ACCOUNTANT, "subsampling": acc.subsampling,
                     "abs_error": acc.abs_error, "rel_error": acc.rel_error, "discretised": acc.discretised,
                     "neighbouring": NEIGHBOURING, "origin": ACCOUNTANTS.origin(name), "description": acc.description})
    if args.json:
        json.dump({"rows": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    import pandas as pd

    frame = pd.DataFrame(rows).drop(columns=["neighbouring", "origin", "description"])
    with pd.option_context("display.float_format", lambda v: f"{v:g}"):
        print(frame.to_string(index=False))
    print(f"neighbouring relation: {NEIGHBOURING}")
    for row in rows:
        print(f"{row['accountant']}: {row['description']} (from {row['origin']})")
    return 0


def _epsilon(args) -> int:
    from ..privacy import (
        NEIGHBOURING,
        GaussianEvent,
        PoissonSubsampledGaussianEvent,
        accountant_tolerance,
        epsilon,
        events_from_json,
        events_to_json,
    )

    delta, rule = _delta(args)
    events: list = []
    try:
        if args.events:
            events.extend(events_from_json(args.events))
        events.extend(GaussianEvent(s) for s in args.gaussian)
        run = _dpsgd(args)
        if run is not None:
            if args.sigma is None:
                raise UsageError("a DP-SGD run needs --sigma (its noise multiplier)")
            events.append(PoissonSubsampledGaussianEvent(args.sigma, *run))
        elif args.sigma is not None:
            raise UsageError("--sigma is the DP-SGD noise multiplier: give --sample-rate and --steps/--epochs too "
                             "(use --gaussian SIGMA for a one-shot release)")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise UsageError(str(exc)) from None
    if not events:
        raise UsageError("nothing to account: give --gaussian, a DP-SGD run (--sigma, --sample-rate, --steps) or --events")

    rows = []
    for acc in _backends(args):
        row: dict[str, Any] = {"accountant": acc, "epsilon": None, "tolerance": None, "delta": delta,
                               "delta_rule": rule, "neighbouring": NEIGHBOURING, "error": None}
        try:
            eps = epsilon(events, delta, accountant=acc)
            row["epsilon"], row["tolerance"] = eps, accountant_tolerance(acc, eps)
        except Exception as exc:  # noqa: BLE001 - one failing backend must not hide the others
            if not args.all_backends:
                raise UsageError(f"accountant {acc!r}: {exc}") from None
            row["error"] = str(exc)
        rows.append(row)
    _emit(args, rows, {"events": json.loads(events_to_json(events))}, value_key="epsilon")
    return 0


def _calibrate(args) -> int:
    from ..privacy import (
        NEIGHBOURING,
        DEFAULT_RTOL,
        GaussianEvent,
        PoissonSubsampledGaussianEvent,
        PrivacyBudget,
        calibrate,
        epsilon,
        events_to_json,
    )

    delta, rule = _delta(args)
    backends = _backends(args)
    try:
        budgets = {acc: PrivacyBudget(args.epsilon, delta, rule, acc) for acc in backends}
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    budget = budgets[backends[0]]
    if not budget.is_private:
        raise UsageError(f"--epsilon must be finite to calibrate noise, got {args.epsilon}")
    for s in args.release:
        if not (math.isfinite(s) and s > 0):
            raise UsageError(f"--release sensitivity must be finite and > 0, got {s!r}")
    run = _dpsgd(args)
    releases = tuple(args.release)
    if run is None and not releases:
        raise UsageError("nothing to calibrate: give a DP-SGD run (--sample-rate, --steps) and/or --release S")
    rtol = DEFAULT_RTOL if args.rtol is None else args.rtol

    def plan(sigma: float) -> list:
        events: list = [GaussianEvent(sigma / s) for s in releases]
        if run is not None:
            events.append(PoissonSubsampledGaussianEvent(sigma, *run))
        return events

    rows = []
    for acc in backends:
        row: dict[str, Any] = {"accountant": acc, "sigma": None, "epsilon": None, "target_epsilon": args.epsilon,
                               "delta": delta, "delta_rule": rule, "neighbouring": NEIGHBOURING, "error": None}
        try:
            sigma = calibrate(plan, budgets[acc], rtol=rtol)
            row["sigma"], row["epsilon"] = sigma, epsilon(plan(sigma), delta, accountant=acc)
        except Exception as exc:  # noqa: BLE001 - one failing backend must not hide the others
            if not args.all_backends:
                raise UsageError(f"accountant {acc!r}: {exc}") from None
            row["error"] = str(exc)
        rows.append(row)
    _emit(args, rows, {"plan": json.loads(events_to_json(plan(1.0))), "plan_sigma": 1.0, "rtol": rtol},
          value_key="sigma")
    return 0


def _emit(args, rows: list[dict], extra: dict, value_key: str) -> None:
    if args.json:
        json.dump({"rows": rows, **extra}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    import pandas as pd

    frame = pd.DataFrame(rows).drop(columns=["error"])
    with pd.option_context("display.float_format", lambda v: f"{v:.6g}"):
        print(frame.to_string(index=False))
    for row in rows:
        if row["error"]:
            print(f"{row['accountant']}: {row['error']}")
