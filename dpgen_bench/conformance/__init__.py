"""The privacy conformance suite: generic checks every registered method must pass, plugins included.

The runner's ledger re-check only redoes arithmetic: it cannot see a method that releases something other
than what it records. These checks look at the implementation's behaviour instead, without knowing anything
about the method beyond the :class:`~dpgen_bench.method.GenerativeMethod` interface:

* :func:`check_accountants` — for every accountant the method supports, a short fit's ledger spends at most
  the target; an accountant it cannot use is refused before training (nothing recorded);
* :func:`check_fresh_release_noise` — two fits with the same public seed release different things;
* :func:`check_public_stream` — fits on neighbouring datasets (one example removed, the same declared size)
  record the same ledger and consume exactly the same public randomness, so nothing that depends on the
  private data (its size, batch sizes, labels) leaks through seeded draws or through q, T, σ, δ;
* :func:`check_neighbouring_independence` — for DP-SGD methods: the per-example gradient rows the private
  optimiser clips are unchanged for every example i when another example j is removed or changed.

Run it over every installed method (built-ins and plugins)::

    python -m pytest --pyargs dpgen_bench.conformance          # all methods
    python -m pytest --pyargs dpgen_bench.conformance -k my-method

A method makes the suite fast by declaring ``conformance_config`` (config overrides that make ``fit`` take
seconds); a DP-SGD method (``capabilities.dp_sgd``) must provide ``gradient_probe()``.
"""

from .checks import (
    ConformanceError,
    check_accountants,
    check_declarations,
    check_fresh_release_noise,
    check_neighbouring_independence,
    check_public_stream,
    neighbouring_pair,
    tiny_dataset,
)

__all__ = [
    "ConformanceError",
    "check_accountants",
    "check_declarations",
    "check_fresh_release_noise",
    "check_neighbouring_independence",
    "check_public_stream",
    "neighbouring_pair",
    "tiny_dataset",
]
