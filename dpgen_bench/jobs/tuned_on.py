"""Where a row's settings were chosen (``tuned_on``), and whether that was the reported data itself.

Choosing hyper-parameters by evaluating on the private data is a release no ledger counts (Papernot & Steinke,
ICLR 2022), and it biases the reported utility upwards. Every method declares what its defaults were chosen on
(:attr:`GenerativeMethod.tuned_on <dpgen_bench.method.GenerativeMethod.tuned_on>`), a config entry may declare
its own (``tuned_on:``), and every results row carries it. Values:

* ``"paper"``: taken from the method's paper (chosen on the paper's data, not this benchmark's runs);
* ``"none"``: not tuned at all (arbitrary or compute-driven choices);
* ``"<dataset>"`` or ``"<dataset>:<part>"`` with ``<part>`` in ``train``, ``test``, ``tuning``: chosen by
  evaluating on that registered dataset (all of it, or that part of its split);
* ``"undeclared"``: nobody said (a config entry that overrides settings without ``tuned_on:``).

A row is *tuned on the reported data* (marked ¶ in tables) when its settings were chosen on the reported
dataset's family other than through the declared tuning split of the same dataset in a run that holds that
split out (``tuning_split: true``), which never reaches training or evaluation (``docs/honest_settings.md``).
"""

from __future__ import annotations

TUNING_PARTS = ("train", "test", "tuning")
NOT_DATA = ("paper", "none")
UNDECLARED = "undeclared"


def parse_tuned_on(value: str) -> tuple[str, str | None] | None:
    """``(dataset, part or None)`` for a dataset source, None for ``paper`` / ``none`` / ``undeclared``.
    ValueError naming the value and the valid forms for anything else (unknown dataset or part)."""
    from ..data import list_datasets

    if value in NOT_DATA or value == UNDECLARED:
        return None
    dataset, _, part = str(value).partition(":")
    if dataset not in list_datasets():
        raise ValueError(f"tuned_on {value!r}: {dataset!r} is not a registered dataset; give 'paper', 'none', a "
                         f"dataset ({', '.join(list_datasets())}) or '<dataset>:<part>' with part in {list(TUNING_PARTS)}")
    if part and part not in TUNING_PARTS:
        raise ValueError(f"tuned_on {value!r}: unknown part {part!r}; valid parts: {list(TUNING_PARTS)}")
    return dataset, part or None


def tuned_on_reported_data(tuned_on: str, dataset: str, tuning_split: bool) -> bool | None:
    """True if settings chosen on ``tuned_on`` were chosen on the reported ``dataset``'s own data (its family,
    not its held-out tuning split); None if undeclared; False otherwise. ``tuning_split``: whether the run
    held the declared tuning split out of train and test."""
    from ..data import dataset_spec

    if tuned_on == UNDECLARED:
        return None
    source = parse_tuned_on(tuned_on)
    if source is None:
        return False
    name, part = source
    if dataset_spec(name).family != dataset_spec(dataset).family:
        return False
    return not (part == "tuning" and name == dataset and tuning_split)


def resolve_tuned_on(declared: str | None, method_default: str, overrides: dict) -> str:
    """A config entry's tuning source: its own ``tuned_on:`` if given, else the method's declaration when the
    entry keeps every default, else ``undeclared`` (overrides chosen on something nobody named)."""
    if declared is not None:
        return declared
    return method_default if not overrides else UNDECLARED
