"""Brier score, its decomposition and calibration tables: naive references, properties, input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from salesforecast.metrics import BrierDecomposition, brier_decomposition, brier_score, calibration_table


def _forecasts(min_size: int = 1, max_size: int = 60):
    """(y, p) pairs: 0/1 outcomes and probabilities, often repeated values and the ends 0 and 1."""
    prob = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]))
    return st.lists(st.tuples(st.integers(0, 1), prob), min_size=min_size, max_size=max_size).map(
        lambda rows: (np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    )


# ------------------------------------------------------------------------------------------------ naive references
def _naive_brier(y, p) -> float:
    return sum((pi - yi) ** 2 for yi, pi in zip(y, p, strict=True)) / len(y)


def _naive_decomposition(y, p, n_bins) -> tuple[float, float, float]:
    groups: dict[float, list[tuple[float, float]]] = {}
    for yi, pi in zip(y, p, strict=True):
        key = pi if n_bins is None else min(int(pi * n_bins), n_bins - 1)
        groups.setdefault(key, []).append((yi, pi))
    n, base = len(y), sum(y) / len(y)
    rel = res = 0.0
    for members in groups.values():
        o = sum(m[0] for m in members) / len(members)
        f = sum(m[1] for m in members) / len(members)
        rel += len(members) * (f - o) ** 2 / n
        res += len(members) * (o - base) ** 2 / n
    return rel, res, base * (1 - base)


@settings(max_examples=100, deadline=None)
@given(_forecasts(), st.sampled_from([None, 1, 3, 10]))
def test_equal_naive_references(data, n_bins):
    y, p = data
    assert brier_score(y, p) == pytest.approx(_naive_brier(y, p), abs=1e-12)
    d = brier_decomposition(y, p, n_bins=n_bins)
    assert isinstance(d, BrierDecomposition)
    assert (d.reliability, d.resolution, d.uncertainty) == pytest.approx(_naive_decomposition(y, p, n_bins), abs=1e-12)
    assert d.brier == pytest.approx(brier_score(y, p), abs=1e-15)


def test_calibration_table_equals_loop_and_statsmodels_wilson():
    rng = np.random.default_rng(3)
    p = rng.random(500)
    y = (rng.random(500) < p**1.5).astype(int)
    for strategy in ("quantile", "uniform"):
        t = calibration_table(y, p, n_bins=7, strategy=strategy, ci=0.8)
        if strategy == "uniform":
            edges = np.linspace(0, 1, 8)
        else:
            edges = np.quantile(p, np.linspace(0, 1, 8))
        for row in t.itertuples():
            last = row.bin == len(edges) - 2
            inside = (p >= edges[row.bin]) & ((p < edges[row.bin + 1]) | (last & (p <= edges[row.bin + 1])))
            assert row.count == inside.sum()
            assert row.mean_predicted == pytest.approx(p[inside].mean())
            assert row.observed_rate == pytest.approx(y[inside].mean())
            lo, hi = proportion_confint(y[inside].sum(), inside.sum(), alpha=0.2, method="wilson")
            assert (row.ci_lower, row.ci_upper) == pytest.approx((lo, hi), abs=1e-12)
        assert t["count"].sum() == 500
    q = calibration_table(y, p, n_bins=10)
    assert q["count"].max() - q["count"].min() <= 1  # quantile bins: equal counts


# ------------------------------------------------------------------------------------------------ properties
@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=1, max_size=50))
def test_perfect_forecasts_score_zero(outcomes):
    y = np.array(outcomes)
    assert brier_score(y, y.astype(float)) == 0.0
    d = brier_decomposition(y, y.astype(float), n_bins=None)
    assert d.reliability == 0.0 and d.resolution == pytest.approx(d.uncertainty)


@settings(max_examples=150, deadline=None)
@given(_forecasts())
def test_decomposition_identity_and_bounds(data):
    y, p = data
    exact = brier_decomposition(y, p, n_bins=None)  # one bin per distinct forecast: the identity is exact
    assert exact.reliability - exact.resolution + exact.uncertainty == pytest.approx(exact.brier, abs=1e-12)
    for n_bins in (None, 1, 10):
        d = brier_decomposition(y, p, n_bins=n_bins)
        assert 0.0 <= d.brier <= 1.0
        assert d.reliability >= 0.0 and d.resolution >= 0.0
        assert d.resolution <= d.uncertainty + 1e-12 <= 0.25 + 1e-12
    one = brier_decomposition(y, p, n_bins=1)
    assert one.resolution == pytest.approx(0.0, abs=1e-15)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 9)), min_size=1, max_size=60))
def test_identity_is_exact_when_forecasts_are_constant_in_each_bin(rows):
    y = np.array([r[0] for r in rows])
    p = np.array([(r[1] + 0.5) / 10 for r in rows])  # one forecast value per tenth
    d = brier_decomposition(y, p, n_bins=10)
    assert d.reliability - d.resolution + d.uncertainty == pytest.approx(d.brier, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(_forecasts(), st.integers(1, 12), st.sampled_from(["quantile", "uniform"]))
def test_calibration_table_properties(data, n_bins, strategy):
    y, p = data
    t = calibration_table(y, p, n_bins=n_bins, strategy=strategy)
    assert t["count"].sum() == len(y) and (t["count"] > 0).all()
    assert t["bin"].is_monotonic_increasing and t["bin"].is_unique
    assert (t["lower"] - 1e-12 <= t["mean_predicted"]).all() and (t["mean_predicted"] <= t["upper"] + 1e-12).all()
    assert (t["ci_lower"] <= t["observed_rate"] + 1e-12).all() and (t["observed_rate"] <= t["ci_upper"] + 1e-12).all()
    assert np.average(t["observed_rate"], weights=t["count"]) == pytest.approx(y.mean())
    assert len(t) <= n_bins


def test_accepts_bools_lists_and_series():
    y = pd.Series([True, False, True])
    p = pd.Series([0.9, 0.2, 0.6], index=[5, 6, 7])
    assert brier_score(y, p) == pytest.approx(0.07)
    assert brier_score([1, 0, 1], [0.9, 0.2, 0.6]) == pytest.approx(0.07)


# ------------------------------------------------------------------------------------------------ input checks
@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([1, 0], [0.5], "same length"),
        ([], [], "empty"),
        ([1, 2], [0.5, 0.5], r"y_true\[1\] = 2"),
        ([1, 0], [0.5, 1.5], r"p\[1\] = 1.5"),
        ([1, 0], [0.5, np.nan], r"p\[1\] = nan"),
        ([1, np.nan], [0.5, 0.5], r"y_true\[1\]"),
        ([[1, 0]], [[0.5, 0.5]], "one-dimensional"),
        (["won", "lost"], [0.5, 0.5], "y_true"),
    ],
)
def test_bad_inputs_name_the_argument(y, p, match):
    for fn in (brier_score, brier_decomposition, calibration_table):
        with pytest.raises(ValueError, match=match):
            fn(y, p)


def test_bad_options():
    with pytest.raises(ValueError, match="n_bins"):
        brier_decomposition([1], [0.5], n_bins=0)
    with pytest.raises(ValueError, match="n_bins"):
        calibration_table([1], [0.5], n_bins=0)
    with pytest.raises(ValueError, match="strategy"):
        calibration_table([1], [0.5], strategy="kmeans")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ci"):
        calibration_table([1], [0.5], ci=1.2)


def test_one_distinct_forecast_gives_one_bin():
    t = calibration_table([1, 0, 0, 1], [0.3] * 4, n_bins=5)
    assert len(t) == 1 and t["count"].iloc[0] == 4 and t["observed_rate"].iloc[0] == 0.5
