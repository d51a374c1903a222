"""The references of benchmarks/scale.py (DuckDB SQL, a pandas loop) give exactly `pipeline_snapshots`' rows.

So the benchmark's equality check is itself checked: on small generated data, at about 20 dates (some of them exactly
at a change, where the boundary rule decides), both references return the same rows as ours, in every shared column,
and `compare_rows` does count a difference when there is one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.snapshots import pipeline_snapshots

pytest.importorskip("duckdb")

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "_scale_reference.py"


def _load_reference():
    spec = importlib.util.spec_from_file_location("_scale_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    data, _ = generate(n_opportunities=2000, seed=1)
    folder = data.to_folder(tmp_path_factory.mktemp("generated") / "canonical", fmt="parquet")
    changes = data.stage_history["changed_at"]
    # 17 dates at odd times of day over the three years, and 3 exactly at a change (the change is known then)
    dates = [*pd.date_range("2023-01-20 10:30", "2025-12-30 16:00", periods=17), *changes.iloc[[50, 2000, 6000]]]
    ours = pipeline_snapshots(data, dates)
    return data, folder, dates, ours


def test_snapshots_are_not_trivial(generated):
    data, _, dates, ours = generated
    assert ours["as_of"].nunique() == len(dates) == 20
    assert len(ours) > 1000
    assert ours["stage"].isin(data.process.open_stages).all()


def test_duckdb_reference_equals_ours(generated):
    data, folder, dates, ours = generated
    duck = ref.duckdb_snapshots(folder, dates, data.process.open_stages)
    assert list(duck.columns) == list(ours.columns)
    for columns in (ref.KEY_COLUMNS, list(ours.columns)):
        diff = ref.compare_rows(ours, duck, columns)
        assert diff["mismatches"] == 0 and diff["duplicates"] == 0, diff
        assert diff["rows"] == diff["other_rows"] == len(ours)
    # same order too: DuckDB sorts as ours does
    pd.testing.assert_frame_equal(duck, ours, check_dtype=False)


def test_pandas_loop_equals_ours(generated):
    data, _, dates, ours = generated
    loop = ref.pandas_loop_snapshots(data.stage_history, data.opportunities, dates, data.process.open_stages)
    shared = [c for c in ours.columns if c in loop.columns]
    assert len(shared) == 14
    for columns in (ref.KEY_COLUMNS, shared):
        diff = ref.compare_rows(ours, loop, columns)
        assert diff["mismatches"] == 0 and diff["duplicates"] == 0, diff


def test_compare_rows_counts_differences(generated):
    _, _, _, ours = generated
    other = ours.copy()
    other.loc[5, "amount"] += 10.0  # one row changed: one only in ours, one only in the other
    other = other.drop(index=7)  # one row missing: one more only in ours
    diff = ref.compare_rows(ours, other)
    assert (diff["only_ours"], diff["only_other"], diff["mismatches"]) == (2, 1, 3)
    twice = pd.concat([ours, ours.iloc[:3]], ignore_index=True)
    assert ref.compare_rows(ours, twice)["duplicates"] == 3
