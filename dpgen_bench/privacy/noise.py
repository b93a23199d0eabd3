"""Where the noise of a private release comes from.

Noise that protects private data must not be reproducible from anything public. Run seeds are public
(they are written into every results row), so release noise never uses them: it comes from a generator
seeded with 63 bits of operating-system entropy, fresh for every call. Training randomness that is not
release noise (initialisation, latent codes of generated batches) may stay seeded, per use, with
:func:`public_generator`.

**The seam.** Every Gaussian release draws through :func:`gaussian_noise`, which looks up the sampler that
actually draws at call time (:func:`noise_sampler` replaces it within a block, for this thread or task only).
The audits' broken variants (``docs/audit.md``) replace it to draw a tenth of the noise; the conformance suite
records every draw. No caller can tell, so a method never needs to know about either.

Caveat: ``torch.Generator`` is a Mersenne Twister, not a cryptographic generator, and floating-point
Gaussian samplers have known side channels (Mironov 2012); like Opacus without ``secure_mode`` this is
adequate for research benchmarks, not for deployments.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch


def release_generator(device: str | torch.device = "cpu") -> torch.Generator:
    """A generator for DP release noise, seeded from OS entropy (never from a run seed)."""
    return torch.Generator(device=torch.device(device)).manual_seed(secrets.randbits(63))


@dataclass(frozen=True)
class NoiseDraw:
    """One draw of release noise as a :func:`recording_noise` block saw it: its ``shape``, its ``std`` and the
    L2 ``sensitivity`` the caller declared it was calibrated for (None: not declared), and where it came from
    (``gaussian_noise`` or ``opacus``)."""

    shape: tuple[int, ...]
    std: float
    sensitivity: float | None
    source: str = "gaussian_noise"

    @property
    def noise_multiplier(self) -> float | None:
        """σ = std / sensitivity, or None when no sensitivity was declared."""
        return None if not self.sensitivity else self.std / self.sensitivity


_RECORDERS: list[list[NoiseDraw]] = []


@contextlib.contextmanager
def recording_noise() -> Iterator[list[NoiseDraw]]:
    """Record every draw through :func:`gaussian_noise` (and :func:`record_draw`) made inside the block, in
    order, into the list it yields. Blocks nest (each sees the draws made while it is open). The conformance
    suite uses it to compare the noise actually drawn with the ledger (``docs/audit.md``)."""
    draws: list[NoiseDraw] = []
    _RECORDERS.append(draws)
    try:
        yield draws
    finally:
        _RECORDERS.remove(draws)


def record_draw(shape: tuple[int, ...] | torch.Size, std: float, sensitivity: float | None,
                source: str = "gaussian_noise") -> None:
    """Tell the open :func:`recording_noise` blocks about a draw made outside :func:`gaussian_noise` (e.g. the
    seam through which the conformance suite sees Opacus's gradient noise). A no-op when none is open."""
    if _RECORDERS:
        draw = NoiseDraw(tuple(int(d) for d in shape), float(std),
                         None if sensitivity is None else float(sensitivity), source)
        for draws in _RECORDERS:
            draws.append(draw)


class NoiseSampler(Protocol):
    """What draws the noise of :func:`gaussian_noise` (its arguments already checked): N(0, std²) of ``shape``."""

    def __call__(self, shape: tuple[int, ...], std: float, *, sensitivity: float | None, dtype: torch.dtype,
                 device: torch.device, generator: torch.Generator | None) -> torch.Tensor: ...


def draw_gaussian(shape: tuple[int, ...], std: float, *, sensitivity: float | None, dtype: torch.dtype,
                  device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """The honest :class:`NoiseSampler`: records the draw (:func:`record_draw`), then draws it from
    ``generator`` or a fresh :func:`release_generator`."""
    record_draw(shape, std, sensitivity)
    gen = generator if generator is not None else release_generator(device)
    return torch.randn(shape, generator=gen, dtype=dtype, device=device) * std


_SAMPLER: ContextVar[NoiseSampler] = ContextVar("dpgen_bench_noise_sampler", default=draw_gaussian)


@contextlib.contextmanager
def noise_sampler(sampler: NoiseSampler) -> Iterator[None]:
    """Within the block, :func:`gaussian_noise` draws through ``sampler`` (e.g. one that calls
    :func:`draw_gaussian` with a tenth of the std: the audits' ``tenth-noise`` variant). Blocks nest; the
    replacement is local to the running thread or task (a context variable), so parallel fits are unaffected."""
    token = _SAMPLER.set(sampler)
    try:
        yield
    finally:
        _SAMPLER.reset(token)


def gaussian_noise(
    shape: tuple[int, ...] | torch.Size,
    std: float,
    *,
    sensitivity: float | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """N(0, std²) noise of ``shape`` for a DP release (``std`` = σ · sensitivity, ≥ 0).

    ``sensitivity``: the L2 sensitivity ``std`` was calibrated for (> 0). Declare it: the conformance suite
    then checks std / sensitivity against the σ of the ledger's events (an undeclared one leaves the draw
    unchecked). ``generator`` defaults to a fresh :func:`release_generator`; pass one only to share a single
    entropy draw across several releases, or in tests of the noise's distribution. The draw goes through the
    current :class:`NoiseSampler` (:func:`draw_gaussian` unless a :func:`noise_sampler` block replaced it).
    """
    if not std >= 0:
        raise ValueError(f"noise std must be >= 0, got {std!r}")
    if sensitivity is not None and not sensitivity > 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity!r}")
    return _SAMPLER.get()(tuple(int(d) for d in shape), float(std), sensitivity=sensitivity, dtype=dtype,
                          device=torch.device(device), generator=generator)


def public_generator(seed: int, *stream: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator for *public* randomness, a deterministic function of the run seed and a stream key.

    For draws that may be known to everyone (latents and labels of generated batches, initialisation): seed
    it per use, e.g. ``public_generator(seed, "g-step", t)`` for step t, so that how much one use consumes can
    never shift what a later one draws. A single generator shared across steps would make every later draw a
    function of how many were consumed before, which leaks anything those amounts depend on (private batch
    sizes, the private dataset size) into the released model outside the noised channel.
    """
    key = hashlib.blake2b(repr((int(seed), *stream)).encode(), digest_size=8).digest()
    return torch.Generator(device=torch.device(device)).manual_seed(int.from_bytes(key, "little") >> 1)
