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
* :func:`check_noise_draws` — the noise a fit actually draws (through ``gaussian_noise`` with its declared
  sensitivity, or Opacus) has std = σ × sensitivity for a σ of the ledger, and is the same on neighbouring
  datasets; a method whose noise the suite cannot see is reported *unchecked* (a skip with the reason);
* :func:`check_neighbouring_independence` — for DP-SGD methods: the per-example gradient rows the private
  optimiser clips are unchanged for every example i when another example j is removed or changed.

Run it over every installed method (built-ins and plugins)::

    python -m pytest --pyargs dpgen_bench.conformance          # all methods
    python -m pytest --pyargs dpgen_bench.conformance -k my-method

A method makes the suite fast by declaring ``conformance_config`` (config overrides that make ``fit`` take
seconds); a DP-SGD method (``capabilities.dp_sgd``) must provide ``gradient_probe()``.

The same command also runs the *contract* suite (:mod:`.contract`, ``test_contract.py``): on tiny datasets of
every shape the capabilities accept, fitted at ε = 10 and ε = ∞, ``sample`` returns what the interface promises
(shape, dtype, CPU, [0, 1], labels), is deterministic per seed, refuses bad input, survives ``save``/``load``
without the data, and unsupported dataset shapes are refused naming the problem.
"""

from .checks import (
    ConformanceError,
    NoiseUnchecked,
    check_accountants,
    check_declarations,
    check_fresh_release_noise,
    check_neighbouring_independence,
    check_noise_draws,
    check_public_stream,
    neighbouring_pair,
    recording_all_noise,
    tiny_dataset,
)
from .contract import ContractError, check_contract

__all__ = [
    "ConformanceError",
    "ContractError",
    "NoiseUnchecked",
    "check_accountants",
    "check_contract",
    "check_declarations",
    "check_fresh_release_noise",
    "check_neighbouring_independence",
    "check_noise_draws",
    "check_public_stream",
    "neighbouring_pair",
    "recording_all_noise",
    "tiny_dataset",
]
