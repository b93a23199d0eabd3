"""`dpgen-bench list`, `dpgen-bench datasets` and `dpgen-bench info NAME`: what is installed and available."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("list", help="methods (with their source package), datasets and metrics")
    _data_dir_option(p)
    p.set_defaults(handler=_list)

    p = sub.add_parser("datasets", help="datasets with sizes and availability")
    _data_dir_option(p)
    p.set_defaults(handler=_datasets)

    p = sub.add_parser("info", help="details of one method or dataset")
    p.add_argument("name", help="a method or dataset name (see `dpgen-bench list`)")
    _data_dir_option(p)
    p.add_argument(
        "--download", action="store_true",
        help="for a torchvision dataset: download missing files into --data-dir (needs network)",
    )
    p.add_argument("--load", action="store_true", help="for a dataset: load and check it, print the declared split sizes (never class counts: private)")
    p.set_defaults(handler=_info)


def _data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, default=None,
        help="folder holding torchvision datasets (default: $DPGEN_BENCH_DATA_DIR or ~/.cache/dpgen-bench/data)",
    )


def _table(rows: list[dict]) -> str:
    import pandas as pd

    if not rows:
        return "(none)"
    return pd.DataFrame(rows).to_string(index=False)


def _methods() -> list[str]:
    """Registered method names; plugin warnings become one-line messages, duplicates a usage error."""
    from ..registry import DuplicateMethodError, list_methods
    from . import UsageError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            names = list_methods()
        except DuplicateMethodError as exc:
            raise UsageError(str(exc)) from None
    for w in caught:
        print(f"dpgen-bench: warning: {str(w.message).removeprefix('dpgen-bench: ')}", file=sys.stderr)
    return names


def _default_capabilities(cls):
    """What ``cls`` supports with its default config (e.g. PE's API); its class-level ``capabilities`` if the
    config has no complete defaults (a plugin's may not)."""
    from ..method import ConfigError, build_config

    try:
        return cls.capabilities_for(build_config(cls.Config, {}))
    except ConfigError:
        return cls.capabilities


def methods_rows() -> list[dict]:
    from ..registry import method_entry

    rows = []
    for name in _methods():
        entry = method_entry(name)
        caps = _default_capabilities(entry.cls)
        rows.append({
            "method": name,
            "source": entry.source,
            "labelled": "yes" if caps.labelled else "no",
            "unlabelled": "yes" if caps.unlabelled else "no",
            "channels": ",".join(str(c) for c in caps.channels),
            "sizes": "any" if caps.image_sizes is None else ",".join(str(s) for s in caps.image_sizes),
        })
    return rows


def datasets_rows(data_dir: Path | None) -> list[dict]:
    from ..data import dataset_spec, list_datasets

    rows = []
    for name in list_datasets():
        spec = dataset_spec(name)
        c, h, w = spec.info.shape
        rows.append({
            "dataset": name,
            "size": spec.size,
            "shape": f"{c}x{h}x{w}",
            "classes": spec.info.num_classes,
            "offline": "yes" if spec.offline else "no (torchvision download)",
            "available": "yes" if spec.available(data_dir) else "no",
        })
    return rows


def metrics_rows() -> list[dict]:
    """One row per registered metric: config name, result names, direction(s), feature space, and the options it
    takes with their defaults (``evaluation.options.<metric>`` in a config)."""
    from ..metrics import METRICS

    rows = []
    for name, unit in METRICS.items():
        directions = list(unit.results.values())
        rows.append({
            "metric": name,
            "results": ", ".join(unit.results),
            # one word when all results agree, else one per result, in the order of "results"
            "direction": directions[0] if len(set(directions)) == 1 else ", ".join(directions),
            "feature space": unit.feature_space or (f"option {unit.space_option}" if unit.space_option else "pixels"),
            "options": unit.options_model.describe(),
        })
    return rows


def _list(args: argparse.Namespace) -> int:
    print("Methods (what each supports with its default config)")
    print(_table(methods_rows()))
    from ..registry import failed_plugins

    failed = failed_plugins()
    if failed:
        print()
        print("Method plugins that failed to load (not usable until fixed)")
        print(_table([{"method": f.name, "source": f.source, "reason": f.reason} for f in failed]))
    print()
    _datasets(args)
    print()
    print("Metrics (config name, the results it records and which way is better)")
    print(_table(metrics_rows()))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from ..data import default_data_dir

    print(f"Datasets (data dir: {args.data_dir or default_data_dir()})")
    print(_table(datasets_rows(args.data_dir)))
    return 0


def _default_text(field) -> str:
    """A config field's default as a user would write it: the value (a default factory's too), or
    ``(required)`` for a field without one."""
    if field.is_required():
        return "(required)"
    return repr(field.get_default(call_default_factory=True))


def _info(args: argparse.Namespace) -> int:
    from ..data import DatasetUnavailableError, dataset_spec, list_datasets, load_splits
    from ..registry import method_entry
    from . import UsageError

    methods = _methods()
    if args.name in methods:
        entry = method_entry(args.name)
        print(f"method: {entry.name}\nsource package: {entry.source}\nclass: {entry.cls.__module__}.{entry.cls.__qualname__}")
        print(f"supports: {entry.cls.capabilities.to_dict()}")
        print("config (defaults):")
        for key, field in entry.cls.Config.model_fields.items():
            desc = f"  — {field.description}" if field.description else ""
            print(f"  {key} = {_default_text(field)}{desc}")
        return 0
    if args.name not in list_datasets():
        raise UsageError(
            f"unknown method or dataset {args.name!r}; methods: {', '.join(methods) or '(none)'}; "
            f"datasets: {', '.join(list_datasets())}"
        )
    spec = dataset_spec(args.name)
    print(f"dataset: {spec.name}\n{spec.description}")
    print(f"shape (C, H, W): {spec.info.shape}; classes: {spec.info.num_classes} {list(spec.info.class_names)}")
    print(f"examples: {spec.size}; offline: {'yes' if spec.offline else 'no'}; available: {'yes' if spec.available(args.data_dir) else 'no'}")
    for path in spec.expected_files(args.data_dir):
        print(f"  needs {path}")
    if args.load or args.download:
        try:
            splits = load_splits(args.name, data_dir=args.data_dir, download=args.download)
        except DatasetUnavailableError as exc:
            raise UsageError(str(exc)) from None
        # Declared facts only: the actual train length and its class counts are private (add/remove-one), and
        # the test split's counts would give the train's away (the split is stratified).
        print(f"split (seed 0, test fraction 0.2): declared {splits.train.public_size()} train / "
              f"{splits.test.public_size()} test; loaded and checked against the loader contract")
        print("class counts: not shown (private on the train split; the test split's would reveal them)")
    return 0
