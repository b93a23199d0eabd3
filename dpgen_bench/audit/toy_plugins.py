"""Importing this module registers the audit toys of :mod:`dpgen_bench.audit.toys` as methods
(``audit-toy-honest``, ``audit-toy-tenth-noise``, ``audit-toy-parity``), e.g. through ``plugins:
[dpgen_bench.audit.toy_plugins]`` in a benchmark config, so that ``dpgen-bench audit`` shows what a flagged
plugin looks like beside an honest one. They are deliberately not built-ins: two of them are broken."""

from __future__ import annotations

from dpgen_bench.registry import register_method

from .toys import TOYS

for _toy in TOYS:
    register_method(_toy.name)(_toy)
