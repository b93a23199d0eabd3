"""What a job evaluates: the metrics, their options and sample counts of a benchmark config's ``evaluation:``
section, carried by every training cell (part of its key)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


OLDER_SPELLING = {"accuracy": ("accuracy", None), "prdc_k": ("prdc", "k"), "prdc_space": ("prdc", "space")}
"""Top-level ``evaluation`` keys of configs written before metrics declared their options → (metric, option;
None: the whole mapping)."""
OLDER_SPELLING_METRICS = {metric for metric, _ in OLDER_SPELLING.values()}


def _is_default(metric: str, option: str, value: Any) -> bool:
    from ..metrics import METRICS

    if metric not in METRICS:
        return False
    field = METRICS.get(metric).options_model.model_fields.get(option)
    return field is not None and not field.is_required() and field.get_default(call_default_factory=True) == value \
        and type(field.get_default(call_default_factory=True)) is type(value)


def upgrade_older_spelling(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """An ``evaluation`` section with the options of the older spelling moved into ``options``.

    Configs written before metrics declared their options spelt three of them at the top of ``evaluation``
    (``accuracy: {...}``, ``prdc_k``, ``prdc_space``); stored configs (``results/*/config.yaml``) still do.
    ``prdc_k`` / ``prdc_space`` equal to PRDC's defaults are dropped (they enter the key resolved, so nothing
    changes); a value that contradicts ``options`` raises ``ValueError`` naming the path to set instead."""
    data = dict(evaluation)
    options = data.get("options", {})
    if not any(key in data for key in OLDER_SPELLING) or not isinstance(options, Mapping):
        return data
    options = {name: dict(o) if isinstance(o, Mapping) else o for name, o in options.items()}
    for key, (metric, option) in OLDER_SPELLING.items():
        if key not in data:
            continue
        given = data.pop(key) if option is None else {option: data.pop(key)}
        mine = options.get(metric, {})
        if not isinstance(given, Mapping) or not isinstance(mine, Mapping):
            options[metric] = given  # not a mapping: the schema names the problem at options.<metric>
            continue
        mine = dict(mine)
        for name, value in given.items():
            new_path = f"options.{metric}.{name}"
            if name in mine and mine[name] != value:
                raise ValueError(f"{key} (older spelling of {new_path}) is {value!r} but {new_path} is "
                                 f"{mine[name]!r}; set {new_path} only")
            # accuracy overrides enter the key as given; PRDC's k and space enter it resolved (key_data)
            if option is None or not _is_default(metric, name, value):
                mine[name] = value
        if mine:
            options[metric] = mine
    data["options"] = options
    return data


def newer_path(keys: list[str]) -> list[str]:
    """A ``--set`` key path of the older spelling (``evaluation.prdc_k``, ``evaluation.accuracy.cnn_epochs``)
    as its path under ``evaluation.options``; other paths unchanged."""
    if len(keys) >= 2 and keys[0] == "evaluation" and keys[1] in OLDER_SPELLING:
        metric, option = OLDER_SPELLING[keys[1]]
        return ["evaluation", "options", metric, *([option] if option else []), *keys[2:]]
    return keys


class EvaluationSpec(BaseModel):
    """Which metrics to compute and on how many samples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: list[str] = Field(min_length=1)
    """Metric names of :func:`dpgen_bench.metrics.list_metrics` (``fid``, ``fd-digitcnn``, ``accuracy``, ``prdc`` ...)."""
    n_samples: int = Field(default=5000, ge=1)
    """Synthetic samples drawn per cell (class-balanced) for every metric without its own count."""
    n_samples_per_metric: dict[str, int] = Field(default_factory=dict)
    """Per-metric synthetic sample counts, e.g. ``{fid: 60000}`` (FID is only comparable at equal counts)."""
    n_real: int | None = Field(default=None, ge=1)
    """Real test examples used (a fixed random subset of the test split); None = the whole test split."""
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Options of single metrics, by metric name, e.g. ``{accuracy: {cnn_epochs: 3}, prdc: {k: 5, space: effnet},
    is: {splits: 10}}``. Each metric declares and validates its own (``dpgen-bench list`` shows them with their
    defaults); a metric not named here takes its defaults. Options of a registered metric not in ``metrics`` are
    validated and apply when it is computed."""
    fid_weights_path: str | None = None
    """Local Inception-v3 (2015-12-05 TF) checkpoint of every metric in Inception space (FID, IS); None: torch hub
    cache or download."""
    protocol: Literal["dpgen-bench", "dpimagebench"] = "dpgen-bench"
    """``dpgen-bench``: this library's metrics against the test split (the default). ``dpimagebench``: the
    field's protocol (``docs/protocol.md``): ``metrics`` may then name ``accuracy`` (three classifiers, mean),
    ``fid`` (FID against the sensitive train split, and IS) and ``prdc`` (precision / recall k=4 against it); ``n_samples``
    should be 60,000."""
    selection: list[Literal["synthetic-val", "sensitive-val"]] = Field(default_factory=lambda: ["synthetic-val"])
    """dpimagebench protocol: the classifier epoch selection modes reported (``acc-dpi-<mode>``);
    ``sensitive-val`` is DPImageBench's (not private, flagged), ``synthetic-val`` the honest one."""
    dpimagebench: dict[str, Any] = Field(default_factory=dict)
    """dpimagebench protocol: deviations for CPU runs and tests
    (:class:`dpgen_bench.metrics.dpimagebench.ProtocolOptions`: ``synthetic_val_size``, ``classifiers``:
    protocol|tiny, ``epochs``, ``batch_size``); any of them marks the results not comparable."""

    @model_validator(mode="before")
    @classmethod
    def _older_spelling(cls, data: Any) -> Any:
        return upgrade_older_spelling(data) if isinstance(data, Mapping) else data

    @field_validator("selection", mode="before")
    @classmethod
    def _selection(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("dpimagebench")
    @classmethod
    def _protocol_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        from ..metrics.dpimagebench import ProtocolOptions

        try:
            ProtocolOptions(**value)
        except TypeError as exc:
            import dataclasses

            raise ValueError(f"{exc}; valid keys: {[f.name for f in dataclasses.fields(ProtocolOptions)]}") from None
        return value

    @model_validator(mode="after")
    def _counts(self) -> "EvaluationSpec":
        unknown = sorted(set(self.n_samples_per_metric) - set(self.metrics))
        if unknown:
            raise ValueError(f"n_samples_per_metric names metric(s) {unknown} that are not in metrics {self.metrics}")
        for name, n in self.n_samples_per_metric.items():
            if isinstance(n, bool) or n < 1:
                raise ValueError(f"n_samples_per_metric.{name} must be an integer >= 1, got {n!r}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics lists a name twice: {self.metrics}")
        if self.protocol == "dpimagebench":
            from ..metrics.dpimagebench import PROTOCOL_METRICS

            other = sorted(set(self.metrics) - set(PROTOCOL_METRICS))
            if other:
                raise ValueError(f"protocol dpimagebench computes metrics {list(PROTOCOL_METRICS)}; got {other}")
            if self.n_samples_per_metric or self.n_real is not None:
                raise ValueError("protocol dpimagebench uses all n_samples for every metric and the whole splits: "
                                 "n_samples_per_metric and n_real do not apply")
            if self.options:
                raise ValueError(f"protocol dpimagebench fixes the settings of its metrics (docs/protocol.md); "
                                 f"options {sorted(self.options)} do not apply (its deviations go under dpimagebench)")
        self._check_options()
        return self

    def _check_options(self) -> None:
        """Each metric validates its own options. Options of a registered metric that ``metrics`` does not list
        are checked and kept (they apply when it is computed, e.g. after ``--set evaluation.metrics=...``); a
        name that is no registered metric is refused unless ``metrics`` lists it (then the config check names
        it with the registered ones)."""
        from ..metrics import METRICS, MetricOptionsError

        unknown = sorted(name for name in self.options if name not in METRICS and name not in self.metrics)
        if unknown:
            raise ValueError(f"options names unknown metric(s) {unknown}; registered metrics: {METRICS.names()}")
        for name, given in self.options.items():
            if name in METRICS:
                try:
                    METRICS.get(name).parse_options(given)
                except MetricOptionsError as exc:
                    raise ValueError(f"options.{name}: {exc}") from None

    def key_data(self) -> dict[str, Any]:
        """This evaluation's part of a job key. It keeps the shape keys had before metrics declared their own
        options — accuracy overrides as given, PRDC's k and space resolved, at the top level — so every stored
        cell keeps its key; the options of any other computed metric that declares some are added under
        ``options``, resolved (defaults included: a changed default changes the key)."""
        from ..metrics import METRICS

        data = self.model_dump(mode="json", exclude={"options"})
        data["accuracy"] = dict(self.options.get("accuracy", {}))
        prdc = METRICS.get("prdc").parse_options(self.options.get("prdc"))
        data["prdc_k"], data["prdc_space"] = prdc.k, prdc.space
        others = {name: METRICS.get(name).parse_options(self.options.get(name)).model_dump(mode="json")
                  for name in self.metrics
                  if name not in OLDER_SPELLING_METRICS and name in METRICS and METRICS.get(name).options is not None}
        if others:
            data["options"] = others
        return data

    def protocol_options(self):
        """The :class:`~dpgen_bench.metrics.dpimagebench.ProtocolOptions` of this evaluation."""
        from ..metrics.dpimagebench import ProtocolOptions

        return ProtocolOptions(**self.dpimagebench)

    def sample_count(self, metric: str) -> int:
        return int(self.n_samples_per_metric.get(metric, self.n_samples))

    @property
    def max_samples(self) -> int:
        return max(self.sample_count(m) for m in self.metrics)
