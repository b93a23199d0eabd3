"""The one schema of stored rows: the columns of ``results.csv`` (training cells and evaluations of outside
samples) and of ``audit.csv`` (audits), and the :class:`Table` each kind of job writes to. Every producer of a row
(a finished or failed job of any kind) and every reader (the store, the tables) takes its columns from here."""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = [
    "cell_key",
    "status",
    "error",
    "dataset",
    "method",
    "method_name",
    "method_config_hash",
    "method_config",
    "tuned_on",
    "tuned_on_reported_data",
    "target_epsilon",
    "spent_epsilon",
    "accountant",
    "delta",
    "delta_rule",
    "neighbouring",
    "seed",
    "split",
    "split_seed",
    "public_dataset",
    "n_train_nominal",
    "n_test",
    "metric",
    "value",
    "direction",
    "missing_reason",
    "n_real",
    "n_fake",
    "extractor",
    "train_extractor",
    "same_space_as_training",
    "metric_details",
    "ledger",
    "fit_time_s",
    "wall_time_s",
    "peak_memory_mb",
    "peak_gpu_memory_mb",
    "resources_missing_reason",
    "torch_threads",
    "python_version",
    "torch_version",
    "opacus_version",
    "dpgen_bench_version",
    "code_version",
    "device",
    "finished_at",
]
"""Columns of ``results.csv`` (docs/metrics.md), in order."""

AUDIT_COLUMNS = [
    "audit_key", "status", "error", "dataset", "method", "method_name", "variant", "audit_kind", "target_epsilon",
    "claimed_epsilon", "epsilon_lower", "confidence", "flagged", "mu_lower", "epsilon_lower_gdp", "flagged_gdp",
    "gaussian_tradeoff", "delta", "accountant", "trials", "trials_requested", "capped", "examples", "release",
    "canary", "public_dataset",
    "separation", "direction", "canaries", "guesses", "correct", "seconds", "method_config", "finished_at",
    "code_version",
]
"""Columns of ``audit.csv``: ``status`` ``ok``, ``failed`` or ``not-run`` (the budget cap left too few trials;
``error`` says why); ``variant`` is ``correct`` or a broken variant's name; ``audit_kind`` ``hook`` (the
mechanism audit through the method's ``audit_release``), ``generic`` (whole fits, the checkpoint released) or
``one-run``; ``flagged`` = lower bound > claimed ε; ``mu_lower``, ``epsilon_lower_gdp``, ``flagged_gdp``: the
bound under a Gaussian trade-off curve (``dpgen_bench.audit.bounds``, (2)), filled only where
``gaussian_tradeoff`` (every audited event an unsubsampled Gaussian); ``trials_requested``/``capped``: the
generic audit's budget cap; ``release`` (``checkpoint``/``samples``) and ``canary`` (the rule that chose it);
``public_dataset``: public data the fits pre-trained on, as in the method's cells; ``separation`` the
estimated Gaussian-DP μ of the mechanism statistic."""

AUDIT_KINDS = ("hook", "generic", "one-run")

TEXT_COLUMNS = ("cell_key", "audit_key", "method_config_hash", "dataset", "method", "method_name", "python_version",
                "torch_version", "opacus_version", "dpgen_bench_version", "code_version")
"""Columns read back as text whatever they hold: a hex key or a version can look like a number (commit
``9770589`` would read as an int, a key ``12e4…`` as a float, version ``2.10`` as 2.1)."""


@dataclass(frozen=True)
class Table:
    """Where the records of one kind of job live in a results directory, and the CSV derived from them."""

    folder: str
    """Sub-folder of the results directory holding one ``<key>.json`` record per job (and ``<key>/`` artefacts)."""
    csv: str
    """The CSV rebuilt from the records after every job."""
    columns: tuple[str, ...]
    """Its columns, in order (:data:`COLUMNS` or :data:`AUDIT_COLUMNS`)."""
    key_column: str
    """The column naming each row's job."""
    done: tuple[str, ...] = ("ok",)
    """Statuses of a finished job (one whose record verifies is skipped on a rerun)."""
    sort_by: tuple[str, ...] | None = None
    """Row order of the CSV; None: the order of the jobs' keys."""
    only_columns: bool = False
    """Whether the CSV holds exactly ``columns`` (else extra columns follow them)."""


RESULTS = Table("cells", "results.csv", tuple(COLUMNS), "cell_key",
                sort_by=("dataset", "method", "target_epsilon", "seed", "metric"))
"""Training cells and evaluations of outside samples: ``cells/<key>.json`` → ``results.csv``."""

AUDITS = Table("audit", "audit.csv", tuple(AUDIT_COLUMNS), "audit_key", done=("ok", "not-run"), only_columns=True)
"""Audits: ``audit/<key>.json`` → ``audit.csv`` (``not-run``: a stated reason, e.g. the budget cap, is final)."""
