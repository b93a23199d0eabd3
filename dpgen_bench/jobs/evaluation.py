"""What a job evaluates: the metrics and sample counts of a benchmark config's ``evaluation:`` section, carried by
every training cell (part of its key)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    accuracy: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the downstream classifiers' budgets (:class:`dpgen_bench.metrics.accuracy.AccuracyConfig`)."""
    prdc_k: int = Field(default=5, ge=1)
    """k of the k-NN manifolds of precision/recall/density/coverage."""
    prdc_space: Literal["effnet", "digitcnn"] = "effnet"
    """Feature space of precision/recall/density/coverage."""
    fid_weights_path: str | None = None
    """Local Inception-v3 (2015-12-05 TF) checkpoint for FID; None: torch hub cache or download."""
    protocol: Literal["dpgen-bench", "dpimagebench"] = "dpgen-bench"
    """``dpgen-bench``: this library's metrics against the test split (the default). ``dpimagebench``: the
    field's protocol (``docs/protocol.md``): ``metrics`` may then name ``accuracy`` (three classifiers, mean),
    ``fid`` and ``prdc`` (FID / precision / recall k=4 against the sensitive train split); ``n_samples``
    should be 60,000."""
    selection: list[Literal["synthetic-val", "sensitive-val"]] = Field(default_factory=lambda: ["synthetic-val"])
    """dpimagebench protocol: the classifier epoch selection modes reported (``acc-dpi-<mode>``);
    ``sensitive-val`` is DPImageBench's (not private, flagged), ``synthetic-val`` the honest one."""
    dpimagebench: dict[str, Any] = Field(default_factory=dict)
    """dpimagebench protocol: deviations for CPU runs and tests
    (:class:`dpgen_bench.metrics.dpimagebench.ProtocolOptions`: ``synthetic_val_size``, ``classifiers``:
    protocol|tiny, ``epochs``, ``batch_size``); any of them marks the results not comparable."""

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

    @field_validator("accuracy")
    @classmethod
    def _accuracy(cls, value: dict[str, Any]) -> dict[str, Any]:
        import dataclasses

        from ..metrics.accuracy import AccuracyConfig

        fields = {f.name: f for f in dataclasses.fields(AccuracyConfig)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; valid keys: {sorted(fields)}")
        for key, v in value.items():
            default = getattr(AccuracyConfig(), key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(default, int) and not isinstance(v, int)):
                raise ValueError(f"{key} must be a {type(default).__name__}, got {v!r}")
            if v <= 0:
                raise ValueError(f"{key} must be > 0, got {v!r}")
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
        return self

    def protocol_options(self):
        """The :class:`~dpgen_bench.metrics.dpimagebench.ProtocolOptions` of this evaluation."""
        from ..metrics.dpimagebench import ProtocolOptions

        return ProtocolOptions(**self.dpimagebench)

    def sample_count(self, metric: str) -> int:
        return int(self.n_samples_per_metric.get(metric, self.n_samples))

    @property
    def max_samples(self) -> int:
        return max(self.sample_count(m) for m in self.metrics)
