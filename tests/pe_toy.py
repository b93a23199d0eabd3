"""A public toy generation API for PE tests: a sample is one grey level (its state), 8×8 grey images."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from dpgen_bench_methods.pe_api import PE_APIS, GenerationAPI, Population, register_pe_api

BLOB_API = "test-blob"


class BlobAPI(GenerationAPI):
    """RANDOM_API: a uniform grey level per sample; VARIATION_API: the level nudged by 0.1·strength·N(0, 1)."""

    channels = (1,)
    trained_on = ()  # a constant grey level: fitted on nothing

    def random(self, labels, generator):
        return self._population(torch.rand(len(labels), 1, generator=generator), labels)

    def variation(self, population, strength, generator):
        noise = strength * 0.1 * torch.randn(population.state.shape, generator=generator)
        return self._population((population.state + noise).clamp(0, 1), population.labels)

    @staticmethod
    def _population(state: torch.Tensor, labels: torch.Tensor) -> Population:
        return Population(state.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone(), labels.clone(), state)


@contextmanager
def blob_api_registered() -> Iterator[str]:
    """``BlobAPI`` registered as :data:`BLOB_API` for the duration of the block."""
    if BLOB_API not in PE_APIS:
        register_pe_api(BLOB_API)(BlobAPI)
    try:
        yield BLOB_API
    finally:
        PE_APIS.unregister(BLOB_API)
