"""The conformance checks (see the package docstring). Each raises :class:`ConformanceError` naming what broke."""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from ..data.types import DatasetInfo, ImageDataset
from ..method import GenerativeMethod
from ..privacy.accounting import DEFAULT_ACCOUNTANT, list_accountants, to_history
from ..privacy.calibration import calibrate
from ..privacy.budget import PrivacyBudget
from ..privacy.events import flatten
from ..privacy.ledger import PrivacyLedger
from ..privacy.noise import NoiseDraw, record_draw, recording_noise

DELTA = 1e-5
EPSILON = 1.0


class ConformanceError(AssertionError):
    """A method violates a privacy property the suite checks; the message says which and how."""


# ------------------------------------------------------------------------------------------------ data


def tiny_dataset(method: type[GenerativeMethod], n: int = 48, num_classes: int = 4, seed: int = 0) -> ImageDataset:
    """``n`` random images in [0, 1] of a shape the method supports, balanced labels, declared size ``n``."""
    caps = method.capabilities
    channels = caps.channels[0]
    size = caps.image_sizes[0] if caps.image_sizes else 28
    info = DatasetInfo("conformance", channels, size, size, num_classes)
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, channels, size, size, generator=gen)
    labels = torch.arange(n) % num_classes
    return ImageDataset(images, labels, info, split="train", nominal_size=n)


def neighbouring_pair(data: ImageDataset, removed: int = -1) -> tuple[ImageDataset, ImageDataset]:
    """(D, D') with D' = D without example ``removed``; both declare the same public size."""
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[removed] = False
    return data, data.subset(keep)


def _build(method: type[GenerativeMethod], data: ImageDataset, seed: int = 0) -> GenerativeMethod:
    return method(dict(method.conformance_config), data.info, seed=seed)


def _fit(method: type[GenerativeMethod], data: ImageDataset, budget: PrivacyBudget, seed: int = 0):
    instance = _build(method, data, seed)
    ledger = PrivacyLedger()
    instance.fit(data, budget, ledger)
    return instance, ledger


def _budget(accountant: str = DEFAULT_ACCOUNTANT) -> PrivacyBudget:
    return PrivacyBudget(EPSILON, DELTA, accountant=accountant)


# ------------------------------------------------------------------------------------------------ checks


def check_declarations(method: type[GenerativeMethod]) -> None:
    """The explicit contract: a name, a config with defaults, and a gradient probe for DP-SGD methods."""
    if not method.name:
        raise ConformanceError(f"{method.__name__} has no registered name")
    data = tiny_dataset(method)
    instance = _build(method, data)
    if method.capabilities.dp_sgd and instance.gradient_probe() is None:
        raise ConformanceError(
            f"{method.name} declares capabilities.dp_sgd but gradient_probe() returns None: the suite cannot "
            f"check that the rows it clips are per-example"
        )
    if not isinstance(instance.samples_labelled, bool):
        raise ConformanceError(f"{method.name}.samples_labelled must be a bool, got {instance.samples_labelled!r}")


def check_accountants(method: type[GenerativeMethod], data: ImageDataset | None = None) -> list[str]:
    """Every registered accountant: supported → a short fit spends ≤ target, with a non-empty ledger; unsupported →
    refused by ``capabilities.check_accountant`` and by ``fit`` before anything is recorded. Returns the
    supported accountant names."""
    data = data if data is not None else tiny_dataset(method)
    supported = []
    for accountant in list_accountants():
        budget = _budget(accountant)
        try:
            method.capabilities.check_accountant(accountant)
        except ValueError:
            instance, ledger = _build(method, data), PrivacyLedger()
            try:
                instance.fit(data, budget, ledger)
            except ValueError:
                if len(ledger):
                    raise ConformanceError(f"{method.name} with accountant {accountant!r}: refused only after "
                                           f"recording {len(ledger)} release(s)") from None
                continue
            raise ConformanceError(f"{method.name} declares it cannot use accountant {accountant!r}, but fit() "
                                   f"trained with it")
        instance, ledger = _fit(method, data, budget)
        if len(ledger) == 0:
            raise ConformanceError(f"{method.name} trained privately with {accountant!r} but recorded nothing")
        _check_ledger_matches_plan(method, instance, ledger, budget, data)
        spent = ledger.epsilon(budget)
        if not budget.admits(spent):
            raise ConformanceError(f"{method.name} with accountant {accountant!r}: the ledger spends ε={spent:.6g} "
                                   f"> target {budget.epsilon}")
        supported.append(accountant)
    return supported


def _check_ledger_matches_plan(method, instance, ledger: PrivacyLedger, budget: PrivacyBudget, data) -> None:
    """What was recorded is what the method's declared plan calibrates to (when it declares one)."""
    plan = method.privacy_plan(instance.config, data.public_size())
    if plan is None:
        return
    planned = to_history(plan(calibrate(plan, budget)))
    if to_history(ledger.events) != planned:
        raise ConformanceError(f"{method.name}: the ledger {to_history(ledger.events)} is not the declared plan "
                               f"calibrated to the budget, {planned}")


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from tensors_in(v)


def check_fresh_release_noise(method: type[GenerativeMethod], data: ImageDataset | None = None) -> None:
    """Two private fits with the same public seed on the same data must not give the same checkpoint: release
    noise seeded from the (public) run seed could be subtracted by anyone."""
    data = data if data is not None else tiny_dataset(method)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        instance, _ = _fit(method, data, _budget())
        states.append(list(tensors_in(instance.checkpoint_state())))
    first, second = states
    if len(first) == len(second) and all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, second)):
        raise ConformanceError(
            f"{method.name}: two private fits with the same seed gave identical checkpoints; release noise must "
            f"come from OS entropy (dpgen_bench.privacy.noise), never from the public run seed"
        )


class _GeneratorTrace:
    """Every ``torch.Generator`` made while active, and which were seeded from OS entropy (secret)."""

    def __init__(self) -> None:
        self.generators: list[torch.Generator] = []
        self.secret_seeds: set[int] = set()

    def public_states(self) -> list[tuple[int, bytes]]:
        """(initial seed, final state) of every generator not seeded from OS entropy, sorted."""
        out = [(g.initial_seed(), bytes(g.get_state().numpy().tobytes())) for g in self.generators
               if g.initial_seed() not in self.secret_seeds]
        return sorted(out)


@contextmanager
def _trace_generators() -> Iterator[_GeneratorTrace]:
    trace = _GeneratorTrace()
    original_generator, original_randbits = torch.Generator, secrets.randbits

    class TracedGenerator(original_generator):  # type: ignore[misc, valid-type]
        def __new__(cls, *args: Any, **kwargs: Any) -> "TracedGenerator":
            generator = super().__new__(cls, *args, **kwargs)
            trace.generators.append(generator)
            return generator

        def seed(self) -> int:  # seeded from the OS: secret
            value = super().seed()
            trace.secret_seeds.add(int(value))
            return value

    def randbits(k: int) -> int:
        value = original_randbits(k)
        trace.secret_seeds.add(int(value))
        return value

    torch.Generator, secrets.randbits = TracedGenerator, randbits  # type: ignore[misc, assignment]
    try:
        yield trace
    finally:
        torch.Generator, secrets.randbits = original_generator, original_randbits  # type: ignore[misc]


def _public_footprint(method: type[GenerativeMethod], data: ImageDataset) -> tuple[list, list, bytes]:
    with _trace_generators() as trace:
        torch.manual_seed(0)
        _, ledger = _fit(method, data, _budget())
        global_state = bytes(torch.get_rng_state().numpy().tobytes())
    events = [e.to_dict() for e in ledger.events]
    return events, trace.public_states(), global_state


def check_public_stream(method: type[GenerativeMethod], data: ImageDataset | None = None, pairs: int = 3) -> None:
    """Private fits on neighbouring datasets (same seed, same declared size) must record the same ledger
    (q, T, σ, δ never come from the private length) and leave every public random generator, and torch's
    global one, in the same state (public draws never consumed in data-dependent amounts).

    ``pairs`` neighbours are tried (the first, middle and last example removed): a leak through amounts that
    vary randomly (e.g. Poisson batch sizes) can match by chance in one pair, rarely in three."""
    data = data if data is not None else tiny_dataset(method)
    reference = _public_footprint(method, data)
    for removed in [0, len(data) // 2, len(data) - 1][:pairs]:
        _, d_prime = neighbouring_pair(data, removed)
        _compare_footprints(method.name, reference, _public_footprint(method, d_prime))


def _compare_footprints(name: str, footprint: tuple, footprint_p: tuple) -> None:
    (events, public, global_state), (events_p, public_p, global_state_p) = footprint, footprint_p
    if events != events_p:
        raise ConformanceError(
            f"{name}: the ledger depends on the private data beyond its noised releases (one example "
            f"removed): {events} vs {events_p}; sample rates, step counts and σ must use the declared size "
            f"ImageDataset.public_size(), never len()"
        )
    if len(public) != len(public_p) or [s for s, _ in public] != [s for s, _ in public_p]:
        raise ConformanceError(
            f"{name}: a neighbouring dataset made a different set of public random generators "
            f"({len(public)} vs {len(public_p)})"
        )
    if public != public_p:
        diff = [seed for (seed, a), (_, b) in zip(public, public_p) if a != b]
        raise ConformanceError(
            f"{name}: public random generators (seeds {diff[:5]}) consumed different amounts on a "
            f"neighbouring dataset, so later public draws depend on private data; draw a fixed amount per use "
            f"or seed per use (dpgen_bench.privacy.noise.public_generator)"
        )
    if global_state != global_state_p:
        raise ConformanceError(
            f"{name}: torch's global random generator was consumed differently on a neighbouring dataset"
        )


def check_neighbouring_independence(
    method: type[GenerativeMethod], data: ImageDataset | None = None, m: int = 6, atol: float = 1e-6
) -> bool:
    """DP-SGD methods: row i of the clipped per-example gradients must not change when example j ≠ i is removed
    from, or changed in, the batch (same per-example draws). Returns False for a method without a probe."""
    data = data if data is not None else tiny_dataset(method)
    probe = _build(method, data).gradient_probe()
    if probe is None:
        if method.capabilities.dp_sgd:
            raise ConformanceError(f"{method.name} is a DP-SGD method without a gradient_probe()")
        return False
    x, y = data.images[:m], data.labels[:m]
    draws = probe.draws(m, torch.Generator().manual_seed(1))
    rows = probe.rows(x, y, draws)
    if rows.shape[0] != m:
        raise ConformanceError(f"{method.name}: the probe returned {rows.shape[0]} rows for {m} examples")
    scale = atol * max(1.0, float(rows.abs().max()))
    for j in sorted({0, m // 2, m - 1}):
        keep = torch.arange(m) != j
        removed = probe.rows(x[keep], y[keep], draws[keep])
        changed_x, changed_y = x.clone(), y.clone()
        changed_x[j], changed_y[j] = data.images[m], (y[j] + 1) % data.info.num_classes
        changed = probe.rows(changed_x, changed_y, draws)
        for what, got in (("removed", removed), ("changed", changed[keep])):
            worst = float((got - rows[keep]).abs().max())
            if worst > scale:
                raise ConformanceError(
                    f"{method.name}: when example {j} is {what}, the gradient rows of the other examples change "
                    f"(max |Δ| = {worst:.3g}); the per-step sensitivity is then not the clipping norm — something "
                    f"mixes rows of the batch (BatchNorm, batch-size-dependent draws, ...)"
                )
    return True


# ------------------------------------------------------------------------------------------------ noise drawn


NOISE_RTOL = 1e-6
"""Relative tolerance between a draw's σ = std / sensitivity and the σ of a ledger event."""


class NoiseUnchecked(str):
    """The reason the noise actually drawn could not be checked (e.g. it is drawn outside the library's
    seams); returned by :func:`check_noise_draws`, reported as a skip, never as a pass."""


@contextmanager
def recording_all_noise() -> Iterator[list[NoiseDraw]]:
    """Record every release-noise draw inside the block: :func:`~dpgen_bench.privacy.noise.gaussian_noise`
    (with its declared sensitivity) and Opacus's gradient noise (``opacus.optimizers.optimizer._generate_noise``:
    every Opacus optimiser, also one a plugin builds without :func:`dpgen_bench.privacy.dpsgd.make_private`),
    whose sensitivity is the optimiser's clipping norm C."""
    try:
        import opacus.optimizers.optimizer as dp_optimizer
    except ImportError:  # no Opacus: only gaussian_noise can be seen
        with recording_noise() as draws:
            yield draws
        return
    real_generate, real_add_noise = dp_optimizer._generate_noise, dp_optimizer.DPOptimizer.add_noise
    clips: list[float] = []

    def generate(std, reference, *args, **kwargs):
        record_draw(tuple(reference.shape), float(std), clips[-1] if clips else None, "opacus")
        return real_generate(std, reference, *args, **kwargs)

    def add_noise(self, *args, **kwargs):
        clips.append(float(self.max_grad_norm))
        try:
            return real_add_noise(self, *args, **kwargs)
        finally:
            clips.pop()

    dp_optimizer._generate_noise, dp_optimizer.DPOptimizer.add_noise = generate, add_noise
    try:
        with recording_noise() as draws:
            yield draws
    finally:
        dp_optimizer._generate_noise, dp_optimizer.DPOptimizer.add_noise = real_generate, real_add_noise


def _drawn(method: type[GenerativeMethod], data: ImageDataset) -> tuple[list[NoiseDraw], PrivacyLedger]:
    with recording_all_noise() as draws:
        torch.manual_seed(0)
        _, ledger = _fit(method, data, _budget())
    return list(draws), ledger


def check_noise_draws(method: type[GenerativeMethod], data: ImageDataset | None = None) -> NoiseUnchecked | None:
    """The noise a private fit actually draws, against its ledger and on a neighbouring dataset.

    Every draw through ``gaussian_noise`` or Opacus is recorded (shape, std, declared sensitivity). Each draw
    that declares its sensitivity must have std / sensitivity equal to the σ of one of the ledger's events
    (an implementation that records σ but draws σ/10 fails here), and fits on D and on D without its last
    example must draw the same sequence of (shape, std, sensitivity) (a scale that depends on the
    private data, e.g. on the parity of len(train), fails here).

    Returns None when everything was checked, or a :class:`NoiseUnchecked` reason when some of it could not be:
    no draw was recorded while the ledger has events (the noise comes from elsewhere), a draw declared no
    sensitivity, or a ledger event has no draw of its σ."""
    data = data if data is not None else tiny_dataset(method)
    draws, ledger = _drawn(method, data)
    if not len(ledger):
        raise ConformanceError(f"{method.name} trained privately but recorded nothing")
    if not draws:
        return NoiseUnchecked(
            f"{method.name}: its ledger has {len(ledger)} event(s) but no noise was drawn through "
            f"dpgen_bench.privacy.noise.gaussian_noise or Opacus; the noise it adds cannot be checked")
    sigmas = sorted({float(e.noise_multiplier) for e in flatten(ledger.events)})
    for i, draw in enumerate(draws):
        if draw.sensitivity is None:
            continue
        implied = draw.std / draw.sensitivity
        if not any(abs(implied - s) <= NOISE_RTOL * s for s in sigmas):
            raise ConformanceError(
                f"{method.name}: noise draw {i} ({draw.source}, shape {draw.shape}) has std {draw.std:.6g} = "
                f"{implied:.6g} × its declared sensitivity {draw.sensitivity:.6g}, but the ledger records σ in "
                f"{[round(s, 6) for s in sigmas]}: the noise added is not the noise accounted for")
    for removed in (len(data) - 1,):  # one neighbour: every fit costs seconds for a DP-SGD method
        _, d_prime = neighbouring_pair(data, removed)
        other, _ = _drawn(method, d_prime)
        if [(d.shape, d.std, d.sensitivity) for d in other] != [(d.shape, d.std, d.sensitivity) for d in draws]:
            first = next((i for i, (a, b) in enumerate(zip(draws, other)) if a != b), min(len(draws), len(other)))
            raise ConformanceError(
                f"{method.name}: the noise drawn depends on the private data: with example {removed} removed, "
                f"{len(other)} draws instead of {len(draws)}, the first difference at draw {first} "
                f"({draws[first] if first < len(draws) else None} vs {other[first] if first < len(other) else None})")
    undeclared = sum(d.sensitivity is None for d in draws)
    if undeclared:
        return NoiseUnchecked(f"{method.name}: {undeclared} of {len(draws)} noise draws declare no sensitivity "
                              f"(gaussian_noise(..., sensitivity=...)): their scale was compared across "
                              f"neighbours only, not with the ledger")
    drawn_sigmas = {d.std / d.sensitivity for d in draws}
    missing = [s for s in sigmas if not any(abs(s - t) <= NOISE_RTOL * s for t in drawn_sigmas)]
    if missing:
        return NoiseUnchecked(f"{method.name}: ledger σ {missing} has no matching draw; that noise is drawn "
                              f"elsewhere and cannot be checked")
    return None
