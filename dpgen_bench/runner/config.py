"""The benchmark config: a strict pydantic schema, YAML loading, ``--set`` overrides and up-front checks.

ε is set in exactly one place (``epsilons``); δ is a value in (0, 1) or the rule ``"1/(n ln n)"`` (n = size
of the private train split). Everything that can be checked before training is checked here, so a bad
config fails with a message naming the offending key (``ConfigFileError`` → exit code 2) and nothing trains.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from ..privacy.accounting import ACCOUNTANTS, DEFAULT_ACCOUNTANT, UnknownAccountantError, check_delta, get_accountant
from ..errors import _SCHEMA_PREFIX, ConfigFileError  # noqa: F401 (re-exported: the old place)
from ..executors.base import ExecutorSpec
from ..jobs.evaluation import EvaluationSpec  # noqa: F401 (re-exported: part of the config schema)
from ..jobs.evaluation import newer_path, upgrade_older_spelling
from ..plugins import PluginImportError, load_plugins
from ..privacy.budget import DELTA_RULE


# Keys a method override may not contain: the budget comes from the top-level ``epsilons``/``delta`` only,
# and the accountant from the top-level ``accountant`` (it travels with the budget to calibration and to the
# runner's ledger check, so both use the same backend).
_BUDGET_KEYS = {"epsilon", "eps", "epsilons", "delta", "target_epsilon", "target_delta", "budget", "accountant"}




def attempt(problems: list[str], check, *args: Any) -> Any:
    """``check(*args)``, or None with its :class:`ConfigFileError`'s problems appended to ``problems``: lets a
    validator run every independent check and report all that fail at once."""
    try:
        return check(*args)
    except ConfigFileError as exc:
        problems += exc.problems
        return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PublicDataSpec(_Strict):
    """Public data a method entry hands its method (``RunContext.public_data``), e.g. for pre-training.

    Allowed only for methods whose capabilities declare ``public_data``, and never from the private dataset's
    family (checked before anything trains, :func:`dpgen_bench.jobs.public.check_public_data`). Part of the
    cell key and recorded in every row (``public_dataset``)."""

    dataset: str = Field(min_length=1)
    """A registered dataset (``dpgen-bench list datasets``), loaded whole (all its examples are public)."""
    resize: Literal["bilinear", "nearest", "none"] = "bilinear"
    """How images of another size are resized to the private images' size (``none``: refuse a size mismatch).
    Channels are matched too: grey → RGB by repetition, RGB → grey by the channel mean."""
    data_dir: str | None = None
    """Where its files live (None: the benchmark's ``data_dir``)."""
    download: bool = False
    """Allow downloading it (torchvision datasets; needs network access)."""


class MethodSpec(_Strict):
    """One method in the grid: a registered name, an optional display label and config overrides."""

    name: str = Field(min_length=1)
    """Registered method name (``dpgen-bench list methods``)."""
    label: str | None = None
    """Name shown in tables and used in ``--set methods.<label>...``; defaults to ``name``."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the method's own config (validated by the method's ``Config``)."""
    public_data: PublicDataSpec | None = None
    """Public data for a method that declares it uses some (``Capabilities.public_data``); None: none."""
    tuned_on: str | None = None
    """What this entry's settings were chosen on (``paper``, ``none``, ``<dataset>``, ``<dataset>:tuning``;
    :mod:`dpgen_bench.jobs.tuned_on`). None: the method's own declaration if the entry overrides nothing,
    else ``undeclared``. Recorded in every row (``tuned_on``), never part of a cell's key."""

    @field_validator("config")
    @classmethod
    def _no_budget_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(_BUDGET_KEYS & set(value))
        if bad:
            raise ValueError(
                f"method config may not set {bad}: ε, δ and the accountant are set once, by the top-level "
                f"'epsilons', 'delta' and 'accountant' keys"
            )
        return value

    @property
    def display(self) -> str:
        return self.label or self.name


class GenericAuditSpec(_Strict):
    """The generic mechanism audit (``dpgen_bench.audit.generic``): many whole fits on D and D ∪ {canary},
    the checkpoint as the release. Runs for every method, beside the hook-based audit where there is one."""

    trials: int = Field(default=200, ge=20)
    """Fits per neighbouring dataset (2 × trials fits in all, plus one timing fit)."""
    max_seconds: float | None = Field(default=120.0, gt=0)
    """Wall-time cap per audit: the trials are cut, before any runs, to what the timing fit says fits
    (the row says ``capped``); None: no cap."""
    examples: int = Field(default=32, ge=1)
    """D: the first ``examples`` train examples, declared as their own size."""


def _known_variants(value: list[str]) -> list[str]:
    """``value`` if every name is a broken variant of some registered method, else UnknownNameError naming it."""
    from ..audit.broken import check_variant_name
    from ..registry import get_method, list_methods

    classes = []
    for method in list_methods():
        try:
            classes.append(get_method(method))
        except Exception:  # noqa: BLE001 - a plugin that fails to load is reported by `dpgen-bench list`
            continue
    for name in value:
        check_variant_name(name, classes)  # UnknownNameError listing the valid names
    return value


class AuditMethodSpec(_Strict):
    """How one method is audited, where its benchmark setting would make the mechanism audit slow or weak."""

    examples: int | None = Field(default=None, ge=1)
    """Audit on the first ``examples`` examples of the train split, declared as its size (None: the whole
    split with its declared size). Every trial is one full release on it."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the method's config for the audit only, e.g. ``batch_size`` = ``examples`` (q = 1) and
    ``epochs: 2`` for a DP-SGD method: two full-batch steps whose noiseless release is exact."""
    trials: int | None = Field(default=None, ge=20)
    """Releases per neighbouring dataset of this method's hook audits, replacing ``audit.trials`` for it (None:
    that one), e.g. fewer for a method whose release is a network's DP-SGD step."""
    generic: GenericAuditSpec | None = None
    """This method's generic-audit setting, replacing ``audit.generic`` for it (None: that one), e.g. fewer
    trials and a larger cap for a method whose fit takes seconds."""
    variants: list[str] | None = None
    """This method's power checks, replacing ``audit.variants`` for it (None: those), e.g. only the variant a
    setting chosen for this entry has power against."""

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _known_variants(value)

    @field_validator("config")
    @classmethod
    def _no_budget_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(_BUDGET_KEYS & set(value))
        if bad:
            raise ValueError(f"audit config may not set {bad}: the budget comes from 'epsilons' and 'delta'")
        return value


class OneRunAuditSpec(_Strict):
    """The black-box one-run audit (Steinke, Nasr, Jagielski 2023; ``docs/audit.md``)."""

    canaries: int = Field(default=100, ge=2)
    """m: canaries, each added to the train split with probability ½ (public coin flips)."""
    extractor: str = "efficientnet-lite0"
    """Public feature space of the membership score (distance to the nearest synthetic sample)."""
    n_samples: int = Field(default=2000, ge=1)
    """Synthetic samples drawn from the fitted method for the scores."""


class AuditSpec(_Strict):
    """The ``audit:`` section: empirical ε lower bounds beside every claimed ε (``dpgen-bench audit``;
    ``audit: true`` also runs them at the end of ``dpgen-bench run``). Never part of a cell's key."""

    enabled: bool = False
    """Run the audits at the end of ``dpgen-bench run`` (``dpgen-bench audit`` runs them regardless)."""
    trials: int = Field(default=1000, ge=20)
    """Releases per neighbouring dataset of each mechanism audit (the bound tightens like log(trials))."""
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    """Confidence of every lower bound (Clopper–Pearson)."""
    variants: list[str] = Field(
        default_factory=lambda: ["tenth-noise", "unclipped", "batch-coupled", "per-row-clip", "original-accounting"])
    """Deliberately broken variants audited beside each method they apply to (the power checks;
    ``dpgen_bench.audit.broken``): the generic ones and those the registered methods declare."""
    methods: dict[str, AuditMethodSpec] = Field(default_factory=dict)
    """Per method label: its audit setting (default: its benchmark config on the whole train split)."""
    one_run: OneRunAuditSpec | None = None
    """Also run the one-run black-box audit of the whole pipeline (one extra fit per method and ε)."""
    generic: GenericAuditSpec | None = Field(default_factory=GenericAuditSpec)
    """The generic mechanism audit of every method (``null``: off; the report then says so)."""

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[str]) -> list[str]:
        return _known_variants(value)


class TuneSpec(_Strict):
    """The ``tune:`` section read by ``dpgen-bench tune`` (``docs/honest_settings.md``): random search over a
    declared space for one method entry. Never part of a cell's key; ``dpgen-bench run`` ignores it."""

    method: str = Field(min_length=1)
    """The label (or name) of the ``methods`` entry to tune; its ``config`` is the base every candidate changes."""
    space: dict[str, list[Any]] = Field(min_length=1)
    """Config key → the values to draw from (uniformly, independently per key)."""
    trials: int = Field(default=4, ge=1)
    """Candidates drawn (``tuning-split``); for ``private``, the *expected* number E[K] (K is random and secret)."""
    select_on: Literal["tuning-split", "private"] = "tuning-split"
    """``tuning-split``: train and score candidates on the declared tuning split (free: it never reaches training
    or evaluation). ``private``: train them on the private train split at a calibrated share of the budget (the
    number of candidates random, Papernot & Steinke 2022), score on the tuning split; the total meets ε."""
    metric: str = Field(min_length=1)
    """A result name the evaluation computes (e.g. ``acc-logreg``); its recorded direction decides the best."""
    epsilon: float | None = Field(default=None, gt=0)
    """The ε candidates are tuned at (default: the largest finite ε of ``epsilons``)."""
    seed: int = 0
    """Seed of the public draws (candidate configs, the tuning split's own train/validation split)."""
    eta: float = Field(default=1.0, gt=-1)
    """η of the truncated negative binomial number of candidates (``private``; 1: geometric)."""

    @field_validator("space")
    @classmethod
    def _values(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = sorted(k for k, v in value.items() if not v)
        if empty:
            raise ValueError(f"space key(s) {empty} list no values")
        bad = sorted(_BUDGET_KEYS & set(value))
        if bad:
            raise ValueError(f"space may not set {bad}: the budget comes from 'epsilons' and 'delta'")
        return value


def _audit_spec(value: Any) -> Any:
    """``audit: true`` / ``false`` is shorthand for ``{enabled: true}`` / the defaults."""
    if isinstance(value, bool):
        return {"enabled": value}
    return value


class BenchConfig(_Strict):
    """A whole benchmark: dataset × methods × ε × seeds, one accountant, one evaluation protocol."""

    dataset: str = Field(min_length=1)
    """Dataset name (``dpgen-bench list datasets``)."""
    data_dir: str | None = None
    """Where dataset files live (None: the data layer's default)."""
    download: bool = False
    """Allow downloading datasets that need it (torchvision)."""
    split_seed: int = 0
    """Seed of the deterministic stratified train/test split (same for every cell; ``split: pooled`` only)."""
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Test share of the pooled split (``split: pooled`` only)."""
    split: Literal["pooled", "official"] = "pooled"
    """``pooled``: the benchmark's seeded stratified split of all examples; ``official``: the field's split
    (official train minus a seed-0 validation part / official test; ``docs/protocol.md``), for datasets that
    have one (mnist, fashion-mnist, cifar10, celeba32/64). Recorded in every row (``split`` column)."""
    tuning_split: bool = False
    """Hold the dataset's declared tuning split (``<dataset>:tuning``, 10 % with a fixed seed) out of train and
    test, so settings chosen on it are not chosen on the reported data (``mnist-5k``: 3,600 / 900 / 500)."""
    methods: list[MethodSpec] = Field(min_length=1)
    epsilons: list[float] = Field(min_length=1)
    """Target ε values (> 0; ``.inf`` for a non-private reference run). The only place ε is set."""
    delta: float | Literal["1/(n ln n)"] = 1e-5
    """δ ∈ (0, 1), or the rule ``"1/(n ln n)"`` computed from the train-split size."""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    accountant: str = DEFAULT_ACCOUNTANT
    """An accountant backend registered in :data:`dpgen_bench.privacy.accounting.ACCOUNTANTS`; it travels with
    every budget. Checked by :func:`resolve_methods`, after ``plugins`` are imported (a plugin may register one)."""
    evaluation: EvaluationSpec
    output_dir: str = "results/run"
    device: str = "cpu"
    plugins: list[str] = Field(default_factory=list)
    """Extra modules to import before resolving methods (they may call ``register_method``)."""
    executor: SerializeAsAny[ExecutorSpec] = Field(default_factory=lambda: _executor_spec("local"))
    """What runs the cells: ``local`` (default), ``ray`` or ``slurm`` with its keys (``docs/executors.md``).
    Not part of any cell's key: the executor changes where a cell runs, never what it computes."""

    audit: AuditSpec = Field(default_factory=AuditSpec)
    """Empirical privacy audits (``docs/audit.md``); ``audit: true`` runs them after the grid."""
    tune: TuneSpec | None = None
    """Hyper-parameter search for one method entry, run by ``dpgen-bench tune`` (``docs/honest_settings.md``)."""

    @field_validator("audit", mode="before")
    @classmethod
    def _audit(cls, value: Any) -> Any:
        return _audit_spec(value)

    @field_validator("executor", mode="before")
    @classmethod
    def _executor(cls, value: Any) -> ExecutorSpec:
        return _executor_spec(value)

    @field_validator("epsilons")
    @classmethod
    def _eps(cls, value: list[float]) -> list[float]:
        for i, e in enumerate(value):
            if math.isnan(e) or e <= 0:
                raise ValueError(f"epsilons[{i}] must be > 0 (or .inf for non-private), got {e!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"epsilons lists a value twice: {value}")
        return value

    @field_validator("delta")
    @classmethod
    def _delta(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            return value
        try:
            check_delta(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (or give the rule {DELTA_RULE!r})") from None
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds lists a value twice: {value}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        import torch

        try:
            torch.device(value)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"not a torch device: {value!r} ({exc})") from None
        return value

    @model_validator(mode="after")
    def _labels(self) -> "BenchConfig":
        labels = [m.display for m in self.methods]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"methods: label(s) {dup} used twice; give each entry a distinct 'label'")
        unknown = sorted(set(self.audit.methods) - set(labels))
        if unknown:
            raise ValueError(f"audit.methods names {unknown}, which are not method labels of this config {labels}")
        return self

    @property
    def delta_rule(self) -> str:
        return DELTA_RULE if isinstance(self.delta, str) else "fixed"


# ---------------------------------------------------------------------------------------------- loading


def _executor_spec(value: Any) -> ExecutorSpec:
    """``executor:`` validated by the named executor's own spec (unknown keys refused, like everywhere)."""
    from ..executors import parse_executor_spec

    try:
        return parse_executor_spec(value)
    except ValidationError as exc:  # re-raised as one message: pydantic nests it under 'executor'
        raise ValueError(_format_validation_error(exc).removeprefix("invalid benchmark config: ")) from None


def _format_validation_error(exc: ValidationError) -> str:
    return _SCHEMA_PREFIX + "; ".join(_validation_problems(exc))


def _validation_problems(exc: ValidationError) -> list[str]:
    """One ``loc: message`` line per schema error (duplicates from union branches removed)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{loc}: {msg} (got {err.get('input')!r})" if err["type"] != "missing" else f"{loc}: {msg}")
    # Unions (delta: float | rule) produce one error per branch; keep the message short but complete.
    return list(dict.fromkeys(lines))


def parse_config(data: Mapping[str, Any]) -> BenchConfig:
    """Validate a mapping into :class:`BenchConfig`; raise :class:`ConfigFileError` naming every bad key.

    When the schema fails, the parts it did not complain about are still checked as far as they can be on
    their own (method names and configs, dataset, metrics, accountant), so every problem is reported at once
    rather than one per attempt."""
    if not isinstance(data, Mapping):
        raise ConfigFileError(f"a benchmark config must be a mapping of keys, got {type(data).__name__}")
    plugin_problems = _plugin_phase(data.get("plugins"))
    try:
        config = BenchConfig.model_validate(dict(data))
    except ValidationError as exc:
        schema = _validation_problems(exc)
        bad = {tuple(err["loc"][:2]) for err in exc.errors()} | {tuple(err["loc"][:1]) for err in exc.errors()}
        problems = [_SCHEMA_PREFIX + line for line in schema] + plugin_problems
        raise ConfigFileError(problems + _unvalidated_problems(dict(data), bad)) from None
    if plugin_problems:
        raise ConfigFileError(plugin_problems)
    return config


def _unvalidated_problems(data: dict[str, Any], bad: set[tuple]) -> list[str]:
    """Problems of the parts of a config the schema accepted, checked on the raw mapping (``bad``: the
    locations, as 1- and 2-tuples, where the schema already complained; those are not checked again)."""
    from ..registry import UnknownMethodError, get_method
    from ..method import ConfigError, build_config

    problems: list[str] = []
    if isinstance(data.get("dataset"), str) and ("dataset",) not in bad:
        from .. import data as datasets

        try:
            datasets.dataset_spec(data["dataset"])
        except datasets.UnknownDatasetError as exc:
            problems.append(f"dataset: {exc}")
    if isinstance(data.get("accountant"), str) and ("accountant",) not in bad:
        try:
            get_accountant(data["accountant"])
        except UnknownAccountantError as exc:
            problems.append(f"accountant: {exc}")
    for i, spec in enumerate(data.get("methods") if isinstance(data.get("methods"), list) else []):
        if ("methods", i) in bad or not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            continue
        where = f"methods[{i}] ({spec.get('label') or spec['name']})"
        try:
            build_config(get_method(spec["name"]).Config, dict(spec.get("config") or {}))
        except UnknownMethodError as exc:
            problems.append(f"{where}.name: {exc}")
        except ConfigError as exc:
            problems.append(f"{where}.config: {exc}")
    metrics = (data.get("evaluation") or {}).get("metrics") if isinstance(data.get("evaluation"), Mapping) else None
    if isinstance(metrics, list) and ("evaluation", "metrics") not in bad:
        try:
            check_metrics_names([str(m) for m in metrics])
        except ConfigFileError as exc:
            problems += exc.problems
    return problems


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
    return data


def default_config_data() -> dict[str, Any]:
    """The embedded default benchmark (``dpgen_bench/runner/default.yaml``)."""
    text = resources.files("dpgen_bench.runner").joinpath("default.yaml").read_text()
    return yaml.safe_load(text)


def _parse_value(text: str, key: str = "value") -> Any:
    """A ``--set`` value as YAML; ``1e-3`` (a string to YAML 1.1) becomes a float as a user means it.

    Text that is not valid YAML (``[1,2``) is an error, not a string: it is almost always a typo, and read as a
    string it would fail later under a misleading message, or not at all."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        what = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigFileError(f"--set {key}: {text!r} is not valid YAML ({what}); quote a string, e.g. "
                              f"{key}='\"...\"'") from None
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "infinity") else value
        except ValueError:
            return value
    return value


def apply_override(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``key.path=value`` (value parsed as YAML) to ``data`` in place and return it.

    A path step into a list is an index (``methods.0.config.steps``) or, for ``methods``, a method's
    label/name (``methods.dp-mepf.config.steps``). Missing mapping keys are created (validation then
    refuses unknown ones with the full path in the message).
    """
    if "=" not in assignment:
        raise ConfigFileError(f"--set expects key.path=value, got {assignment!r}")
    path_text, value_text = assignment.split("=", 1)
    keys = [k for k in path_text.strip().split(".")]
    if not path_text.strip() or any(not k for k in keys):
        raise ConfigFileError(f"--set has an empty key in {path_text!r}")
    keys = newer_path(keys)  # evaluation.prdc_k → evaluation.options.prdc.k (the older spelling still works)
    value = _parse_value(value_text, path_text.strip())
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            idx = None
            if key.lstrip("-").isdigit():
                idx = int(key)
                if not (-len(node) <= idx < len(node)):
                    raise ConfigFileError(f"--set {path_text}: index {key} out of range (list has {len(node)} items)")
            else:
                for i, item in enumerate(node):
                    if isinstance(item, dict) and key in (item.get("label"), item.get("name")):
                        idx = i
                        break
                if idx is None:
                    names = [item.get("label") or item.get("name") for item in node if isinstance(item, dict)]
                    raise ConfigFileError(f"--set {path_text}: no entry {key!r} in {'.'.join(keys[:depth]) or 'list'}; entries: {names}")
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if key not in node or node[key] is None:
                    node[key] = {}
                node = node[key]
        else:
            raise ConfigFileError(f"--set {path_text}: {where!r} goes into a {type(node).__name__}, not a mapping or list")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
    """Read ``path`` (or the embedded default), apply ``--set`` overrides, validate the schema."""
    data = read_yaml(path) if path is not None else default_config_data()
    if isinstance(data.get("evaluation"), Mapping):
        try:  # a stored config of the older spelling, so that --set paths of either spelling override it
            data["evaluation"] = upgrade_older_spelling(data["evaluation"])
        except ValueError:
            pass  # a contradiction in the file itself: validation names it
    for assignment in overrides:
        apply_override(data, assignment)
    return parse_config(data)


def dump_config(config: BenchConfig, method_configs: Mapping[str, Any] | None = None) -> str:
    """YAML of the validated config (what is saved next to the results).

    With ``method_configs`` (label → validated MethodConfig from :func:`resolve_methods`) every method's
    config is spelled out in full, defaults included, so the file reruns the same cells even if a
    method's defaults change later.
    """
    data = config.model_dump(mode="json")
    if method_configs is not None:
        for spec in data["methods"]:
            resolved = method_configs[spec.get("label") or spec["name"]]
            spec["config"] = resolved.model_dump(mode="json") if hasattr(resolved, "model_dump") else dict(resolved)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# ----------------------------------------------------------------------------- checks before training


def _plugin_phase(plugins: Any) -> list[str]:
    """Before validation: installed plugins and the config's ``plugins:`` modules register what the rest of the
    config may name (executor, dataset, accountant, methods...). Returns one problem per module that does not
    import (all of them, not the first); a malformed list is left to validation."""
    if not isinstance(plugins, list):
        plugins = []
    problems = []
    for module in [m for m in plugins if isinstance(m, str)] or [None]:
        try:
            load_plugins([module] if module else [])
        except PluginImportError as exc:
            problems.append(str(exc))
    return problems


def import_plugins(config: BenchConfig) -> None:
    """The plugin phase for an already parsed config (idempotent: imported modules are cached)."""
    problems = _plugin_phase(list(config.plugins))
    if problems:
        raise ConfigFileError(problems)


def resolve_methods(config: BenchConfig) -> dict[str, Any]:
    """Check, before anything trains, that the dataset exists, every method exists, its config overrides
    validate, it can handle the dataset and the accountant, and any feature extractor it trains against is
    public for this dataset (not trained on the same family of data); every metric name is known.

    Returns ``{label: validated MethodConfig}``. Raises one :class:`ConfigFileError` naming every problem found
    (each method's first one: its later checks depend on its config)."""
    import_plugins(config)  # first: plugins may register datasets and accountants as well as methods
    problems: list[str] = []
    info = attempt(problems, dataset_info, config)
    attempt(problems, check_accountant_name, config)
    resolved = {spec.display: attempt(problems, _resolve_method, config, i, spec, info)
                for i, spec in enumerate(config.methods)}
    attempt(problems, check_metrics, config)
    if problems:
        raise ConfigFileError(problems)
    return resolved


def _resolve_method(config: BenchConfig, i: int, spec: MethodSpec, info) -> Any:
    """One method entry's validated config; ConfigFileError with its first problem. ``info``: the dataset's
    public metadata, or None when the dataset is unknown (then only the name and config are checked)."""
    from ..method import ConfigError, build_config
    from ..registry import UnknownMethodError, get_method

    where = f"methods[{i}] ({spec.display})"
    try:
        cls = get_method(spec.name)
    except UnknownMethodError as exc:
        raise ConfigFileError(f"{where}.name: {exc}") from None
    try:
        method_config = build_config(cls.Config, dict(spec.config))
    except ConfigError as exc:
        raise ConfigFileError(f"{where}.config: {exc}") from None
    if info is not None:
        try:
            cls.capabilities_for(method_config).check(info)
        except (ValueError, TypeError) as exc:
            raise ConfigFileError(f"{where}: method {spec.name!r} cannot handle dataset {config.dataset!r}: {exc}") from None
    try:
        cls.capabilities.check_accountant(config.accountant)
    except ValueError as exc:
        raise ConfigFileError(f"accountant: method {spec.name!r}: {exc}") from None
    if spec.public_data is not None:
        from ..jobs.public import PublicDataError, check_public_data

        try:
            check_public_data(spec.public_data, config.dataset, spec.name, cls.capabilities_for(method_config))
        except PublicDataError as exc:
            raise ConfigFileError(f"{where}.public_data: {exc}") from None
    extractor = cls.training_extractor(method_config)
    if extractor is not None:
        from ..features import check_public_extractor

        try:
            check_public_extractor(extractor, config.dataset, cls.training_extractor_options(method_config))
        except (ValueError, KeyError) as exc:
            msg = exc.args[0] if exc.args else str(exc)
            raise ConfigFileError(f"{where}.config: {msg}") from None
    if info is not None:
        check_pretrained_components(config, cls, method_config, where)
    check_tuned_on(spec, where)
    if info is not None:
        check_reachable(config, cls, method_config, where)
    return method_config


def check_pretrained_components(config: BenchConfig, cls, method_config, where: str) -> None:
    """ConfigFileError if a pre-trained part the method declares (:meth:`GenerativeMethod.pretrained_components`)
    cannot say what it was trained on, or was trained on the private dataset's family."""
    from ..data import dataset_spec

    family = dataset_spec(config.dataset).family
    try:
        parts = cls.pretrained_components(method_config)
    except ValueError as exc:
        raise ConfigFileError(f"{where}.config: {exc}") from None
    for what, trained_on in parts.items():
        if family in trained_on:
            raise ConfigFileError(
                f"{where}.config: {what} was trained on {family!r} data, the family of the private dataset "
                f"{config.dataset!r}, so it is not public for it; use one trained on other data")


def check_tuned_on(spec: MethodSpec, where: str) -> None:
    """ConfigFileError if the entry's ``tuned_on`` (or its method's declaration) is not a valid tuning source."""
    from ..registry import get_method
    from .tuned_on import parse_tuned_on

    for value, key in ((spec.tuned_on, f"{where}.tuned_on"), (get_method(spec.name).tuned_on, f"{where}: method {spec.name!r} declares tuned_on")):
        if value is None:
            continue
        try:
            parse_tuned_on(value)
        except ValueError as exc:
            raise ConfigFileError(f"{key}: {exc}") from None


def check_accountant_name(config: BenchConfig) -> None:
    """ConfigFileError listing the registered accountants if ``config.accountant`` is not one of them."""
    try:
        get_accountant(config.accountant)
    except UnknownAccountantError as exc:
        raise ConfigFileError(f"accountant: {exc}") from None


def check_reachable(config: BenchConfig, cls, method_config, where: str) -> None:
    """ConfigFileError if no noise multiplier meets one of the target ε for this method's privacy plan.

    The plan is the method's own (:meth:`GenerativeMethod.privacy_plan`) at the split's declared size, and
    the budget the one the cells will get (δ rule included), so this is the check ``fit``'s calibration makes
    (one accountant evaluation per ε at the largest noise multiplier, not the search)."""
    from ..data.splits import declared_train_size
    from ..privacy.budget import PrivacyBudget
    from ..privacy.calibration import CalibrationError
    from ..privacy.calibration import check_reachable as check_target

    try:
        n_hat = declared_train_size(config.dataset, config.split, config.test_fraction, config.tuning_split)
    except ValueError as exc:
        raise ConfigFileError(f"split: {exc}") from None
    try:
        plan = cls.privacy_plan(method_config, n_hat)
    except ValueError as exc:
        raise ConfigFileError(f"{where}.config: {exc}") from None
    if plan is None or config.accountant not in ACCOUNTANTS:  # an unknown accountant: check_accountant_name says so
        return
    for eps in config.epsilons:
        if math.isinf(eps):
            continue
        try:
            check_target(plan, PrivacyBudget.from_setting(eps, config.delta, n_hat, config.accountant))
        except CalibrationError as exc:
            raise ConfigFileError(f"epsilons: ε={eps:g} is unreachable for {where}: {exc}") from None


def check_environment(config: BenchConfig) -> None:
    """What the machine must provide, checked before anything trains or is written (one ConfigFileError
    listing every problem): a writable output directory, the dataset's files (unless downloads are allowed),
    the device, and memory for the requested samples."""
    from .. import data

    problems: list[str] = []
    attempt(problems, check_output_dir, config.output_dir)
    try:
        spec = data.dataset_spec(config.dataset)
    except data.UnknownDatasetError:  # reported by resolve_methods
        spec = None
    if spec is not None and not config.download and not spec.available(config.data_dir):
        missing = [str(p) for p in spec.expected_files(config.data_dir) if not p.exists()]
        problems.append(
            f"dataset: {config.dataset!r} is not available: missing {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}; put the files there, set data_dir, or set download: true "
            f"(needs network access)"
        )
    if not config.executor.remote:  # a cluster's cells run on its nodes: the executor checks GPUs per cell
        attempt(problems, _check_device, config.device)
    if spec is not None:
        attempt(problems, _check_sample_memory, config, spec.info)
    attempt(problems, _check_public_files, config)
    if problems:
        raise ConfigFileError(problems)


def check_required_files(config: BenchConfig, method_configs: dict[str, Any]) -> None:
    """ConfigFileError naming every local file a method entry needs (:meth:`GenerativeMethod.required_files`,
    e.g. pre-trained weights) that does not exist."""
    from pathlib import Path

    from ..registry import get_method

    missing = []
    for i, spec in enumerate(config.methods):
        method_config = method_configs.get(spec.display)
        if method_config is None:
            continue
        for what, path in get_method(spec.name).required_files(method_config).items():
            if not Path(path).expanduser().is_file():
                missing.append(f"methods[{i}] ({spec.display}).config: {what} not found at {str(path)!r}")
    if missing:
        raise ConfigFileError(missing)


def _check_public_files(config: BenchConfig) -> None:
    """ConfigFileError if a method entry's public dataset is not available (and may not be downloaded)."""
    from .. import data

    for i, method in enumerate(config.methods):
        public = method.public_data
        if public is None or public.download or config.download:
            continue
        data_dir = public.data_dir or config.data_dir
        spec = data.dataset_spec(public.dataset)
        if not spec.available(data_dir):
            missing = [str(p) for p in spec.expected_files(data_dir) if not p.exists()]
            raise ConfigFileError(f"methods[{i}] ({method.display}).public_data: {public.dataset!r} is not available: "
                                  f"missing {', '.join(missing[:3])}; put the files there or set download: true")


def check_output_dir(output_dir: str) -> None:
    """ConfigFileError unless ``output_dir`` is non-empty and is (or can be made) a writable directory.

    Both are tried, not inferred from permission bits (root passes every ``os.access`` check but still cannot
    write to a read-only mount, and nobody can make a folder in ``/proc``): the first missing folder of the
    path is made and removed again, and a temporary file is made and removed in the directory the run would
    write into. The message names the path that failed."""
    import os
    import tempfile

    if not str(output_dir).strip():
        raise ConfigFileError("output_dir: must not be empty (it would write into the current directory)")
    path = Path(output_dir)
    to_make: list[Path] = []  # missing folders, innermost first
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        to_make.append(parent)
    if not parent.is_dir():
        what = "is a file" if parent == path else f"is under {str(parent)!r}, which is a file"
        raise ConfigFileError(f"output_dir: {output_dir!r} {what}")
    if not to_make:
        try:
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError as exc:
            raise ConfigFileError(f"output_dir: {str(parent)!r} is not writable ({exc.strerror})") from None
        return
    first = to_make[-1]
    try:
        os.mkdir(first)
    except OSError as exc:
        raise ConfigFileError(f"output_dir: cannot create {str(first)!r}: {exc.strerror}") from None
    try:
        with tempfile.TemporaryFile(dir=first):
            pass
    except OSError as exc:
        raise ConfigFileError(f"output_dir: cannot write in {str(first)!r}: {exc.strerror}") from None
    finally:
        try:
            os.rmdir(first)
        except OSError:  # another process put something there meanwhile: leave it
            pass


def _check_device(device: str) -> None:
    import torch

    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigFileError(f"device: {device!r} requested but no usable CUDA GPU is visible (torch "
                              f"{torch.__version__}, cuda {torch.version.cuda}); use device: cpu")
    if kind == "cuda":
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigFileError(f"device: {device!r} but only {torch.cuda.device_count()} GPU(s) are visible")


def _available_memory_bytes() -> int | None:
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


SAMPLE_MEMORY_FACTOR = 4
"""Copies of the sample tensor a cell holds at once (float32 samples, the uint8 file, metric batches, slack)."""


def _check_sample_memory(config: BenchConfig, info) -> None:
    c, h, w = info.shape
    need = config.evaluation.max_samples * c * h * w * 4 * SAMPLE_MEMORY_FACTOR
    have = _available_memory_bytes()
    if have is not None and need > have:
        raise ConfigFileError(
            f"evaluation.n_samples: {config.evaluation.max_samples} samples of {c}x{h}x{w} need about "
            f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB of memory available; ask for fewer"
        )


def dataset_info(config: BenchConfig):
    """Public metadata of ``config.dataset`` without loading it."""
    from .. import data

    try:
        return data.dataset_spec(config.dataset).info
    except data.UnknownDatasetError as exc:  # its message lists the registered names
        raise ConfigFileError(f"dataset: {exc}") from None


def check_metrics(config: BenchConfig) -> None:
    check_metrics_names(config.evaluation.metrics)


def check_metrics_names(names: list[str]) -> None:
    """ConfigFileError naming any unknown metric and the valid names (the dpimagebench protocol's names are
    registered metrics too)."""
    from ..metrics import list_metrics

    known = set(list_metrics())
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ConfigFileError(f"evaluation.metrics: unknown metric(s) {unknown}; available: {sorted(known)}")
