"""tools/seed_spread.py: the spread the main command's comparison judges differences against."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd


def _tool():
    spec = importlib.util.spec_from_file_location("seed_spread", Path(__file__).parents[1] / "tools/seed_spread.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(method, eps, seed, value, status="ok"):
    return {"method": method, "target_epsilon": eps, "metric": "acc-logreg", "seed": seed, "value": value,
            "status": status}


def test_spread_is_the_sample_std_over_the_seeds_of_private_cells_of_the_extra_runs_methods():
    reference = pd.DataFrame([_rows("A", 1.0, 0, 0.5), _rows("A", math.inf, 0, 0.9), _rows("B", 1.0, 0, 0.1)])
    extra = pd.DataFrame([_rows("A", 1.0, 1, 0.6), _rows("A", 1.0, 2, 0.7), _rows("A", 1.0, 3, None),
                          _rows("A", 1.0, 4, 0.0, status="failed")])
    spread = _tool().seed_spread(reference, extra, "src")
    assert spread[["method", "target_epsilon", "n_seeds"]].values.tolist() == [["A", 1.0, 3]]
    assert spread["std"].iloc[0] == 0.1 and spread["source"].iloc[0] == "src"
