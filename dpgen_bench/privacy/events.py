"""Mechanism events: immutable values describing what was released, consumed by accountants.

In the spirit of Google's ``dp_accounting`` DpEvent tree. Every noise multiplier σ is relative to the
mechanism's L2 sensitivity under add/remove-one neighbouring (noise std = σ · sensitivity).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Union


def check_sample_rate(sample_rate: float) -> float:
    """Poisson sampling rate q as a float in (0, 1]; ValueError naming the value otherwise (NaN too).

    The one sample-rate check: events, DP-SGD plans, the Poisson loader and the CLI all call it."""
    q = float(sample_rate)
    if not (0.0 < q <= 1.0):  # False for NaN
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    return q


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1 (an integral number such as 3.0 or ``np.int64(3)`` is accepted, a bool is not);
    ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"noise_multiplier must be a finite number > 0, got {sigma!r}")
    return sigma


@dataclass(frozen=True)
class GaussianEvent:
    """One Gaussian release: noise std = ``noise_multiplier`` × L2 sensitivity (σ > 0)."""

    noise_multiplier: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier", _check_sigma(self.noise_multiplier))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "gaussian", "noise_multiplier": self.noise_multiplier}


@dataclass(frozen=True)
class PoissonSubsampledGaussianEvent:
    """``steps`` compositions of a Poisson-subsampled Gaussian (DP-SGD): rate q ∈ (0, 1], σ > 0."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier", _check_sigma(self.noise_multiplier))
        object.__setattr__(self, "sample_rate", check_sample_rate(self.sample_rate))
        object.__setattr__(self, "steps", check_positive_int("steps", self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "poisson_subsampled_gaussian",
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
        }


@dataclass(frozen=True)
class ComposedEvent:
    """Sequential composition of events (each may itself be composed)."""

    events: tuple["Event", ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "composed", "events": [e.to_dict() for e in self.events]}


Event = Union[GaussianEvent, PoissonSubsampledGaussianEvent, ComposedEvent]


def flatten(events: Event | Iterable[Event]) -> list[GaussianEvent | PoissonSubsampledGaussianEvent]:
    """The leaf events of an event or a list of events, in order."""
    if isinstance(events, (GaussianEvent, PoissonSubsampledGaussianEvent)):
        return [events]
    if isinstance(events, ComposedEvent):
        return flatten(events.events)
    out: list[GaussianEvent | PoissonSubsampledGaussianEvent] = []
    for e in events:
        if not isinstance(e, (GaussianEvent, PoissonSubsampledGaussianEvent, ComposedEvent)):
            raise TypeError(f"not a mechanism event: {e!r}")
        out.extend(flatten(e))
    return out


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of ``Event.to_dict``."""
    kind = d.get("type")
    if kind == "gaussian":
        return GaussianEvent(d["noise_multiplier"])
    if kind == "poisson_subsampled_gaussian":
        return PoissonSubsampledGaussianEvent(d["noise_multiplier"], d["sample_rate"], d["steps"])
    if kind == "composed":
        return ComposedEvent(tuple(event_from_dict(e) for e in d["events"]))
    raise ValueError(f"unknown event type {kind!r}; expected gaussian, poisson_subsampled_gaussian or composed")


def events_to_json(events: Iterable[Event]) -> str:
    """Serialise a list of events to a JSON string (the form stored in results rows)."""
    return json.dumps([e.to_dict() for e in events], sort_keys=True)


def events_from_json(text: str) -> list[Event]:
    """Inverse of :func:`events_to_json`."""
    return [event_from_dict(d) for d in json.loads(text)]
