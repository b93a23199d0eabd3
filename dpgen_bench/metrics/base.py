"""What a metric is: a registered unit that declares its results, and the numbers it reports.

A metric (or a family: ``accuracy`` → three classifiers) is a :class:`MetricUnit`: its config name, the result
names it produces with a direction each, the feature space it is computed in (None: pixels), the options it
takes (a :class:`MetricOptions` model: typed fields, defaults, validation) and a compute function over a
:class:`~dpgen_bench.metrics.context.MetricContext` (plus its validated options, if it declares any; a config
passes them under ``evaluation.options.<metric>``). The compute function returns a
:class:`Measurement` (or a bare float) per declared result; :meth:`MetricUnit.evaluate` checks that against the
declaration and records each as a :class:`MetricResult` with the counts, direction and extractor filled in —
so a unit cannot report a direction or a feature space it did not declare.

A metric of your own (it then appears in ``list_metrics()`` / ``dpgen-bench list`` and a benchmark config may
name it; with ``--jobs`` > 1 register it in a module listed under the config's ``plugins``)::

    from dpgen_bench.metrics import MetricContext, register_metric

    @register_metric("mean-brightness-gap", results={"mean-brightness-gap": "lower"})
    def mean_brightness_gap(ctx: MetricContext) -> dict[str, float]:
        # |mean real pixel − mean synthetic pixel|, in [0, 1]
        return {"mean-brightness-gap": abs(float(ctx.real.images.mean() - ctx.synthetic.images.mean()))}

A metric with options declares them as a model and receives them validated::

    class GapOptions(MetricOptions):
        channel: int | None = None   # one channel's gap; None: all channels

    @register_metric("channel-gap", results={"channel-gap": "lower"}, options=GapOptions)
    def channel_gap(ctx: MetricContext, options: GapOptions) -> dict[str, float]: ...

``METRICS.unregister(name)`` removes one (tests, notebooks).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..named_registry import DuplicateNameError, Registry, UnknownNameError, origin_of
from .context import MetricContext

Direction = Literal["lower", "higher"]
DIRECTIONS: tuple[Direction, ...] = ("lower", "higher")


class SameFeatureSpaceWarning(UserWarning):
    """A method is evaluated in the feature space it was trained to match: the number flatters it."""


class MetricSkippedWarning(UserWarning):
    """A requested metric could not be computed (its reason is in ``MetricResult.missing_reason``)."""


class UnknownMetricError(UnknownNameError):
    """A metric name that is not registered; the message lists the registered names."""


class MetricOptionsError(ValueError):
    """Options a metric does not take, or values it refuses; the message names the metric and its valid options."""


class MetricOptions(BaseModel):
    """The options of one metric: subclass with typed, documented fields whose defaults are the metric's standard
    setting. Unknown keys are refused; instances are frozen (they are part of a job's key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def describe(cls) -> str:
        """``name=default`` of every option, comma-separated (``-`` when there are none): what ``dpgen-bench list``
        shows and what an error lists as the valid options."""
        return ", ".join(f"{name}={field.get_default(call_default_factory=True)!r}"
                         for name, field in cls.model_fields.items()) or "-"


class NoOptions(MetricOptions):
    """A metric that takes no options."""


@dataclass(frozen=True)
class MetricResult:
    """One reported number.

    ``value``: the metric (None when it could not be computed; see ``missing_reason``). ``direction``: whether
    lower or higher is better. ``n_real`` / ``n_fake``: sample counts behind the value. ``extractor``: the
    feature space (None for pixel-space metrics). ``same_space_as_training``: the method trained on this
    extractor. ``details``: implementation, resize mode, classifier, cache use, ...
    """

    name: str
    value: float | None
    direction: Direction
    n_real: int
    n_fake: int
    extractor: str | None = None
    missing_reason: str | None = None
    same_space_as_training: bool = False
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'lower' or 'higher', got {self.direction!r}")
        if (self.value is None) == (self.missing_reason is None):
            raise ValueError(f"metric {self.name!r}: exactly one of value / missing_reason must be set")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Measurement:
    """What a compute function reports for one result: a value, or why there is none (a metric that cannot
    be computed is missing with a reason, never 0), plus details recorded with it (implementation, cache use)."""

    value: float | None
    missing_reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def missing(cls, reason: str, details: Mapping[str, Any] | None = None) -> Measurement:
        return cls(None, reason, dict(details or {}))


ComputeFn = Callable[..., Mapping[str, "float | Measurement"]]
"""A unit's computation: (the call's context[, its validated options]) → {declared result name: value or
:class:`Measurement`}; the options argument is passed only to a unit that declares an options model."""


def _checked_results(metric: str, results: Mapping[str, Direction]) -> dict[str, Direction]:
    out = dict(results)
    if not out:
        raise ValueError(f"metric {metric!r} declares no results")
    for result, direction in out.items():
        if not isinstance(result, str) or not result:
            raise ValueError(f"metric {metric!r}: result names must be non-empty strings, got {result!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"metric {metric!r}: direction of {result!r} must be 'lower' or 'higher', got {direction!r}")
    return out


@dataclass(frozen=True)
class MetricUnit:
    """A registered metric: config ``name``, ``results`` (result name → direction, in report order), the
    ``feature_space`` its results are computed in (a name of
    :data:`~dpgen_bench.metrics.feature_spaces.FEATURE_SPACES`; None for pixel-space metrics) — or, for a
    metric whose space is one of its options, ``space_option``: the field of its options that names it (PRDC:
    ``space``) — its ``options`` model (None: it takes none, and ``compute`` gets the context only) and
    ``compute``."""

    name: str
    results: Mapping[str, Direction]
    compute: ComputeFn
    feature_space: str | None = None
    space_option: str | None = None
    options: type[MetricOptions] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"metric name must be a non-empty string, got {self.name!r}")
        if not callable(self.compute):
            raise TypeError(f"metric {self.name!r}: compute must be a callable (MetricContext) -> dict, got {self.compute!r}")
        if self.feature_space is not None and self.space_option is not None:
            raise ValueError(f"metric {self.name!r}: give a fixed feature_space or a space_option, not both")
        if self.options is not None and not (isinstance(self.options, type) and issubclass(self.options, MetricOptions)):
            raise TypeError(f"metric {self.name!r}: options must be a MetricOptions subclass, got {self.options!r}")
        if self.space_option is not None and self.space_option not in self.options_model.model_fields:
            raise ValueError(f"metric {self.name!r}: space_option {self.space_option!r} is not one of its options "
                             f"({self.options_model.describe()})")
        # a read-only copy: the declaration cannot change after registration
        object.__setattr__(self, "results", MappingProxyType(_checked_results(self.name, self.results)))

    @property
    def options_model(self) -> type[MetricOptions]:
        return self.options or NoOptions

    def parse_options(self, given: Mapping[str, Any] | MetricOptions | None = None) -> MetricOptions:
        """``given`` (a mapping of option → value, an instance of the options model, or None: the defaults)
        validated into the options model. Raises :class:`MetricOptionsError` naming the metric, what is wrong
        and every valid option with its default."""
        model = self.options_model
        if isinstance(given, model):
            return given
        if given is not None and not isinstance(given, Mapping):
            raise MetricOptionsError(f"metric {self.name!r}: options must be a mapping of option: value, got "
                                     f"{type(given).__name__}; valid options: {model.describe()}")
        try:
            return model.model_validate(dict(given or {}))
        except ValidationError as exc:
            problems = "; ".join(_option_problem(err) for err in exc.errors())
            valid = "it takes no options" if model is NoOptions else f"valid options: {model.describe()}"
            raise MetricOptionsError(f"metric {self.name!r}: {problems}; {valid}") from None

    def space(self, options: MetricOptions | None = None) -> str | None:
        """The feature space of a call with ``options``: the one ``space_option`` names if given, else
        ``feature_space``."""
        if self.space_option is None:
            return self.feature_space
        return getattr(options if options is not None else self.parse_options(), self.space_option)

    def evaluate(self, ctx: MetricContext, options: Mapping[str, Any] | MetricOptions | None = None) -> list[MetricResult]:
        """Run ``compute`` on ``ctx`` with ``options`` (validated by :meth:`parse_options`) and record one
        :class:`MetricResult` per declared result (in declared order). Warns (:class:`MetricSkippedWarning`) for
        each missing result and (:class:`SameFeatureSpaceWarning`) for each value computed in the method's own
        training space."""
        parsed = self.parse_options(options)
        measured = self.compute(ctx) if self.options is None else self.compute(ctx, parsed)
        if not isinstance(measured, Mapping) or set(measured) != set(self.results):
            got = sorted(measured) if isinstance(measured, Mapping) else type(measured).__name__
            raise TypeError(f"metric {self.name!r} returned {got}; it declares the results {list(self.results)}")
        space = self.space(parsed)
        extractor = ctx.space(space).extractor if space is not None else None
        same = extractor is not None and ctx.trained_in(extractor)
        results = [self._record(name, measured[name], ctx, extractor, same) for name in self.results]
        for r in results:  # stacklevel 3: the caller of compute_metrics
            if r.same_space_as_training and r.value is not None:
                warnings.warn(
                    f"{r.name} is computed in the {extractor} feature space the method was trained on; "
                    "it is biased in the method's favour",
                    SameFeatureSpaceWarning,
                    stacklevel=3,
                )
            if r.missing_reason is not None:
                warnings.warn(f"{r.name} skipped: {r.missing_reason}", MetricSkippedWarning, stacklevel=3)
        return results

    def _record(
        self, name: str, measured: float | Measurement, ctx: MetricContext, extractor: str | None, same: bool
    ) -> MetricResult:
        m = measured if isinstance(measured, Measurement) else Measurement(float(measured))
        return MetricResult(
            name=name,
            value=None if m.value is None else float(m.value),
            direction=self.results[name],
            n_real=ctx.n_real,
            n_fake=ctx.n_fake,
            extractor=extractor,
            missing_reason=m.missing_reason,
            same_space_as_training=same,
            details=dict(m.details),
        )


METRICS: Registry[MetricUnit] = Registry("metric", error=UnknownMetricError)
"""Every registered metric, by config name, in registration order. Add with :func:`register_metric`."""


def _option_problem(err: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"no option {where!r}"
    return f"option {where}: {err['msg']} (got {err.get('input')!r})"


def register_metric(
    name: str,
    *,
    results: Mapping[str, Direction],
    feature_space: str | None = None,
    space_option: str | None = None,
    options: type[MetricOptions] | None = None,
    origin: str | None = None,
) -> Callable[[ComputeFn], ComputeFn]:
    """Decorator: register the decorated compute function as metric ``name`` (see :class:`MetricUnit` for
    the arguments) and return it unchanged.

    Raises :class:`~dpgen_bench.named_registry.DuplicateNameError`, naming both origins (default: the
    function's ``module.qualname``), if ``name`` is taken or another metric already produces one of
    ``results`` (two sources of one result name would make a table column ambiguous)."""

    def wrap(compute: ComputeFn) -> ComputeFn:
        unit = MetricUnit(name, results, compute, feature_space, space_option, options)
        where = origin or origin_of(compute)
        _refuse_taken_results(unit, where)
        METRICS.register(name, unit, origin=where)
        return compute

    return wrap


def _refuse_taken_results(unit: MetricUnit, origin: str) -> None:
    for other_name, other in METRICS.items():
        taken = [r for r in unit.results if r in other.results]
        if taken and other_name != unit.name:  # a taken config name is refused by the registry itself
            raise DuplicateNameError(
                f"metric {unit.name!r} (by {origin}) declares result(s) {taken}, already produced by metric "
                f"{other_name!r} (by {METRICS.origin(other_name)})"
            )


def list_metrics() -> list[str]:
    """Metric names accepted in configs, in registration order."""
    return METRICS.names()
