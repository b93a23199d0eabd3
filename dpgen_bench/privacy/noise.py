"""Where the noise of a private release comes from.

Noise that protects private data must not be reproducible from anything public. Run seeds are public
(they are written into every results row), so release noise never uses them: it comes from a generator
seeded with 63 bits of operating-system entropy, fresh for every call. Training randomness that is not
release noise (initialisation, latent codes of generated batches) may stay seeded, per use, with
:func:`public_generator`.

Caveat: ``torch.Generator`` is a Mersenne Twister, not a cryptographic generator, and floating-point
Gaussian samplers have known side channels (Mironov 2012); like Opacus without ``secure_mode`` this is
adequate for research benchmarks, not for deployments.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from typing import Iterator

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
    entropy draw across several releases, or in tests of the noise's distribution.
    """
    if not std >= 0:
        raise ValueError(f"noise std must be >= 0, got {std!r}")
    if sensitivity is not None and not sensitivity > 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity!r}")
    record_draw(shape, std, sensitivity)
    gen = generator if generator is not None else release_generator(device)
    return torch.randn(tuple(shape), generator=gen, dtype=dtype, device=torch.device(device)) * std


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
