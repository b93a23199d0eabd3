"""Example dpgen-bench plugin: per-class noisy pixel means, sampled with added pixel noise."""

from .method import NoisyClassMeans

__all__ = ["NoisyClassMeans"]
