"""Release noise must not be reproducible from public seeds."""

import pytest
import torch

from dpgen_bench.privacy.noise import gaussian_noise, release_generator


def test_release_noise_ignores_the_global_torch_seed():
    torch.manual_seed(0)
    a = gaussian_noise((1000,), 1.0)
    torch.manual_seed(0)
    b = gaussian_noise((1000,), 1.0)
    assert not torch.equal(a, b)


def test_release_generators_are_independently_seeded():
    assert release_generator().initial_seed() != release_generator().initial_seed()


def test_gaussian_noise_has_the_requested_std():
    x = gaussian_noise((200_000,), 3.0)
    assert x.dtype == torch.float64
    assert abs(x.std().item() - 3.0) < 0.03
    assert abs(x.mean().item()) < 0.03


def test_negative_noise_std_is_refused():
    with pytest.raises(ValueError, match="-1"):
        gaussian_noise((3,), -1.0)
