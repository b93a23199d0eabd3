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

import hashlib
import secrets

import torch


def release_generator(device: str | torch.device = "cpu") -> torch.Generator:
    """A generator for DP release noise, seeded from OS entropy (never from a run seed)."""
    return torch.Generator(device=torch.device(device)).manual_seed(secrets.randbits(63))


def gaussian_noise(
    shape: tuple[int, ...] | torch.Size,
    std: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """N(0, std²) noise of ``shape`` for a DP release (``std`` = σ · sensitivity, ≥ 0).

    ``generator`` defaults to a fresh :func:`release_generator`; pass one only to share a single entropy
    draw across several releases, or in tests of the noise's distribution.
    """
    if not std >= 0:
        raise ValueError(f"noise std must be >= 0, got {std!r}")
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
