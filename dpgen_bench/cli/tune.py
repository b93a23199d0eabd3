"""`dpgen-bench tune CONFIG [--set ...]`: random search over the config's ``tune:`` space for one method entry,
selecting on the declared tuning split (free) or on the private split with the cost accounted
(``docs/honest_settings.md``). Writes ``<output_dir>/tune/chosen.yaml``, which ``dpgen-bench run`` reruns.

Exit codes: 0 done, 2 invalid config (nothing trained)."""

from __future__ import annotations

import math


def register(sub) -> None:
    p = sub.add_parser("tune", help="choose a method's settings honestly (tuning split, or private with ε accounted)")
    p.add_argument("config", help="YAML benchmark config with a 'tune:' section")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (YAML syntax); repeatable")
    p.set_defaults(handler=_tune)


def _tune(args) -> int:
    from . import UsageError
    from ..runner.config import ConfigFileError, load_config
    from ..runner.tune import run_tune

    try:
        result = run_tune(load_config(args.config, args.overrides))
    except ConfigFileError as exc:
        raise UsageError(str(exc)) from None
    incl = "∞" if math.isinf(result.epsilon_incl_tuning) else f"{result.epsilon_incl_tuning:.4f}"
    print(f"chosen: {result.chosen}")
    print(f"ε {result.epsilon:g}; ε incl. tuning {incl}")
    for path in result.outputs:
        print(f"wrote {path}")
    return 0
