"""Point and probabilistic accuracy metrics of amounts: naive references, zero actuals, properties, `evaluate`."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import salesforecast.metrics as metrics_module
from salesforecast.metrics import (
    METRIC_DEFINITIONS,
    absolute_accuracy,
    bias,
    crps_samples,
    evaluate,
    forecast_ratio,
    hit_rate,
    interval_coverage,
    mape,
    mase,
    pinball_loss,
    smape,
    wape,
    winkler_score,
)

POINT = (forecast_ratio, absolute_accuracy, bias, wape, mape, smape, hit_rate)


def _amounts(min_size: int = 1, max_size: int = 40, lo: float = 0.0, hi: float = 1e6):
    """Lists of amounts, often zero or whole numbers, as float arrays."""
    value = st.one_of(st.floats(lo, hi), st.integers(int(lo), int(hi)).map(float), st.just(0.0))
    return st.lists(value, min_size=min_size, max_size=max_size).map(np.array)


def _pairs(min_size: int = 1, max_size: int = 40):
    """(actual, forecast) arrays of one length."""
    return st.integers(min_size, max_size).flatmap(
        lambda n: st.tuples(_amounts(n, n), _amounts(n, n)),
    )


def _random_forecasts(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = np.round(rng.lognormal(8, 1, n), 2)
    a[rng.random(n) < 0.1] = 0.0
    f = np.round(a * rng.lognormal(0, 0.3, n) + rng.normal(0, 100, n).clip(0), 2)
    return a, f


# ------------------------------------------------------------------------------------------------ naive references
@pytest.mark.parametrize("seed", range(5))
def test_point_metrics_equal_naive_references(seed):
    a, f = _random_forecasts(seed)
    nz = a != 0
    assert forecast_ratio(a, f) == pytest.approx(np.sum(f) / np.sum(a), rel=1e-12)
    assert absolute_accuracy(a, f) == pytest.approx(1 - np.sum(np.abs(f - a)) / np.sum(np.abs(a)), rel=1e-12)
    assert bias(a, f) == pytest.approx(np.sum(f - a) / np.sum(a), rel=1e-12)
    assert wape(a, f) == pytest.approx(np.sum(np.abs(f - a)) / np.sum(np.abs(a)), rel=1e-12)
    assert mape(a, f) == pytest.approx(np.mean(np.abs(f[nz] - a[nz]) / np.abs(a[nz])), rel=1e-12)
    naive_smape = np.mean(
        [0.0 if x == y == 0 else 2 * abs(y - x) / (abs(y) + abs(x)) for x, y in zip(a, f, strict=True)]
    )
    assert smape(a, f) == pytest.approx(naive_smape, rel=1e-12)
    assert hit_rate(a, f, tolerance=0.2) == pytest.approx(np.mean(np.abs(f - a) <= 0.2 * np.abs(a)), abs=1e-12)


@pytest.mark.parametrize("season_length", [1, 4, 12])
def test_mase_equals_naive_reference(season_length):
    a, f = _random_forecasts(season_length, n=30)
    y = np.random.default_rng(9).normal(1000, 200, 20)
    naive_scale = np.mean([abs(y[t] - y[t - season_length]) for t in range(season_length, len(y))])
    assert mase(a, f, y, season_length=season_length) == pytest.approx(np.mean(np.abs(f - a)) / naive_scale)


def test_mase_short_insample_falls_back_to_lag_one_and_needs_two_points():
    a, f = [100.0, 200.0], [110.0, 150.0]
    assert mase(a, f, [100, 120, 110], season_length=4) == pytest.approx(30 / 15)  # 3 points < m + 1 = 5: m = 1
    assert mase(a, f, [100, 120, 110, 130, 140], season_length=4) == pytest.approx(30 / 40)  # |140 - 100|
    assert math.isnan(mase(a, f, [100], season_length=1))
    assert math.isnan(mase(a, f, [], season_length=1))


@pytest.mark.parametrize("seed", range(3))
def test_probabilistic_metrics_equal_naive_references(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(100, 30, 300)
    mid = a + rng.normal(0, 20, 300)
    lo, hi = mid - rng.uniform(0, 40, 300), mid + rng.uniform(0, 40, 300)
    for q in (0.1, 0.5, 0.9):
        naive = np.mean([q * (x - y) if x >= y else (1 - q) * (y - x) for x, y in zip(a, mid, strict=True)])
        assert pinball_loss(a, mid, q) == pytest.approx(naive, rel=1e-12)
    assert interval_coverage(a, lo, hi) == np.mean((lo <= a) & (a <= hi))
    naive_w = np.mean(
        [
            (u - low) + (2 / 0.1) * max(low - x, 0) + (2 / 0.1) * max(x - u, 0)
            for x, low, u in zip(a, lo, hi, strict=True)
        ]
    )
    assert winkler_score(a, lo, hi, alpha=0.1) == pytest.approx(naive_w, rel=1e-12)


def _crps_double_sum(a: float, x: np.ndarray) -> float:
    s = len(x)
    return sum(abs(xj - a) for xj in x) / s - sum(abs(xj - xk) for xj in x for xk in x) / (2 * s * s)


@pytest.mark.parametrize("seed", range(4))
def test_crps_equals_double_sum_definition(seed):
    rng = np.random.default_rng(seed)
    n, s = 6, 25
    a = rng.normal(0, 2, n)
    x = np.round(rng.normal(0, 2, (n, s)), 1)  # rounding makes ties
    assert crps_samples(a, x) == pytest.approx(np.mean([_crps_double_sum(a[i], x[i]) for i in range(n)]), rel=1e-12)
    assert crps_samples(a[0], x[0]) == pytest.approx(_crps_double_sum(a[0], x[0]), rel=1e-12)  # one row, 1-D
    assert crps_samples(a, x[:, :1]) == pytest.approx(np.mean(np.abs(x[:, 0] - a)))  # one sample: absolute error


@pytest.mark.parametrize(("actual", "mu", "sigma"), [(0.0, 0.0, 1.0), (3.0, 1.0, 2.0), (-250.0, 100.0, 80.0)])
def test_crps_approaches_normal_closed_form(actual, mu, sigma):
    z = (actual - mu) / sigma
    exact = sigma * (z * (2 * NormalDist().cdf(z) - 1) + 2 * NormalDist().pdf(z) - 1 / math.sqrt(math.pi))
    samples = np.random.default_rng(1).normal(mu, sigma, 40_000)
    assert crps_samples(actual, samples) == pytest.approx(exact, rel=0.02)


# ------------------------------------------------------------------------------------------------ zero actuals
def test_zero_actual_handling():
    nan = float("nan")
    cases = [
        # (metric, actual, forecast, expected)
        (forecast_ratio, [0, 0], [1, 2], nan),
        (forecast_ratio, [0, 5], [1, 4], 1.0),
        (absolute_accuracy, [0, 0], [0, 0], nan),
        (absolute_accuracy, [0, 0], [1, 0], nan),
        (bias, [0, 0], [3, 0], nan),
        (bias, [0, 10], [3, 10], 0.3),
        (wape, [0, 0], [0, 0], 0.0),
        (wape, [0, 0], [0, 1], nan),
        (wape, [0, 10], [5, 10], 0.5),
        (mape, [0, 0], [1, 1], nan),
        (mape, [0, 10], [99, 12], 0.2),  # the row with A = 0 is left out
        (smape, [0, 0], [0, 0], 0.0),
        (smape, [0, 10], [5, 10], 1.0),  # (2 + 0) / 2
        (hit_rate, [0, 0], [0, 1e-9], 0.5),
        (hit_rate, [7, 100, 100], [7.7, 110, 110.001], 2 / 3),  # on the tolerance is a hit, whatever the rounding
    ]
    for metric, a, f, expected in cases:
        got = metric(a, f)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected), (metric.__name__, a, f)


def test_mase_zero_scale():
    assert mase([5, 5], [5, 5], [3, 3, 3]) == 0.0
    assert math.isnan(mase([5, 5], [5, 6], [3, 3, 3]))
    assert mase([0, 0], [0, 2], [0, 4]) == pytest.approx(0.25)  # zero actuals are ordinary rows


# ------------------------------------------------------------------------------------------------ properties
@settings(max_examples=60, deadline=None)
@given(_amounts(lo=-1e6), _amounts(min_size=2, max_size=10))
def test_perfect_forecast(a, insample):
    assert wape(a, a) == 0.0
    assert smape(a, a) == 0.0
    assert hit_rate(a, a) == 1.0
    assert pinball_loss(a, a, 0.3) == 0.0
    assert crps_samples(a, a[:, None]) == 0.0
    assert mase(a, a, insample) == 0.0
    if (a != 0).any():
        assert mape(a, a) == 0.0
    if a.sum() != 0:
        assert bias(a, a) == 0.0
        assert forecast_ratio(a, a) == 1.0
    else:
        assert math.isnan(bias(a, a)) and math.isnan(forecast_ratio(a, a))


@settings(max_examples=60, deadline=None)
@given(_pairs(), st.floats(1e-3, 1e3))
def test_wape_bias_ratio_are_scale_invariant(data, c):
    a, f = data
    assume(a.sum() >= 1.0)
    tol = 1e-9 * (1 + f.sum() / a.sum())
    for metric in (wape, bias, forecast_ratio, absolute_accuracy):
        assert metric(c * a, c * f) == pytest.approx(metric(a, f), rel=1e-9, abs=tol), metric.__name__


@settings(max_examples=60, deadline=None)
@given(_pairs())
def test_pinball_at_median_is_half_the_mean_absolute_error(data):
    a, f = data
    assert pinball_loss(a, f, 0.5) == pytest.approx(0.5 * np.mean(np.abs(f - a)), rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(_pairs(), st.floats(0.01, 0.99))
def test_interval_containing_everything(data, alpha):
    a, f = data
    lo, hi = np.minimum(a, f) - 1.0, np.maximum(a, f) + 2.0
    assert interval_coverage(a, lo, hi) == 1.0
    assert winkler_score(a, lo, hi, alpha=alpha) == pytest.approx(np.mean(hi - lo), rel=1e-12)
    assert interval_coverage(a, a, a) == 1.0  # a degenerate interval at the actual covers it
    assert winkler_score(a, a, a) == 0.0


@settings(max_examples=40, deadline=None)
@given(_pairs(max_size=15), st.integers(1, 8))
def test_crps_sorted_formula_matches_double_sum(data, n_samples):
    a, f = data
    x = f[:, None] + np.linspace(-1.0, 1.0, n_samples)[None, :] * (1 + f[:, None] / 10)
    expected = np.mean([_crps_double_sum(a[i], x[i]) for i in range(len(a))])
    assert crps_samples(a, x) == pytest.approx(expected, rel=1e-9, abs=1e-6)


# ------------------------------------------------------------------------------------------------ input checks
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: wape([1, np.nan], [1, 2]), r"actual must hold finite numbers; actual\[1\] = nan"),
        (lambda: bias([1, 2], [1, np.inf]), r"forecast must hold finite numbers; forecast\[1\] = inf"),
        (lambda: mape([1, 2], [1]), "actual and forecast must have the same length, got 2 and 1"),
        (lambda: smape([], []), "actual is empty"),
        (lambda: forecast_ratio([[1, 2]], [[1, 2]]), "actual must be one-dimensional"),
        (lambda: absolute_accuracy(["x"], [1]), "actual must hold numbers"),
        (lambda: wape(pd.Series([1.0, None], dtype="Float64"), [1, 2]), r"actual\[1\] = nan"),
        (lambda: mase([1], [1], [1, np.nan]), r"insample\[1\] = nan"),
        (lambda: mase([1], [1], [1, 2], season_length=0), "season_length must be a positive integer"),
        (lambda: hit_rate([1], [1], tolerance=-0.1), "tolerance must be a non-negative number"),
        (lambda: pinball_loss([1], [1], q=1.0), "q must be strictly between 0 and 1, got 1.0"),
        (lambda: pinball_loss([1], [np.nan], q=0.5), r"quantile_forecast\[0\] = nan"),
        (lambda: interval_coverage([1, 2], [0, 3], [2, 2]), r"lower\[1\] = 3 > upper\[1\] = 2"),
        (lambda: winkler_score([1], [0], [2], alpha=0), "alpha must be strictly between 0 and 1"),
        (lambda: crps_samples([1, 2], [[1, 2]]), "actual and samples must have the same length, got 2 and 1"),
        (lambda: crps_samples([1], [[1, np.nan]]), r"samples\[0, 1\] = nan"),
        (lambda: crps_samples([1], np.zeros((1, 0))), "at least one sample"),
    ],
)
def test_invalid_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------------------------ evaluate
def _long_table(seed: int = 0, n_periods: int = 12) -> pd.DataFrame:
    """Forecasts of 3 teams' bookings by 2 methods at 2 cutoffs per quarter, with some values missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for team, level in [("A", 1000.0), ("B", 5000.0), ("C", 0.0)]:
        actuals = np.round(level * (1 + 0.3 * np.sin(np.arange(n_periods) * np.pi / 2)) + rng.normal(0, 100, n_periods))
        if team == "C":
            actuals = np.where(rng.random(n_periods) < 0.5, 0.0, np.abs(actuals))
        for t, a in enumerate(actuals):
            for method in ("naive", "model"):
                for cutoff in (30, 60):
                    f = max(a * rng.lognormal(0, 0.2) + rng.normal(0, 50), 0.0)
                    rows.append((team, f"P{t:02d}", method, cutoff, a, f, 0.7 * f, f, 1.3 * f))
    df = pd.DataFrame(rows, columns=["team", "period", "method", "cutoff", "actual", "forecast", "p10", "p50", "p90"])
    df.loc[rng.random(len(df)) < 0.05, "forecast"] = np.nan
    df.loc[rng.random(len(df)) < 0.05, "p90"] = np.nan
    df.loc[rng.random(len(df)) < 0.03, "actual"] = np.nan
    return df


def test_evaluate_matches_direct_calls_per_group():
    df = _long_table()
    names = list(METRIC_DEFINITIONS)
    out = evaluate(df, names, by=["team", "method"], tolerance=0.15, alpha=0.3, period="period")
    assert list(out.columns) == ["team", "method", "n", "n_missing", *names]
    assert out[["team", "method"]].values.tolist() == sorted(df[["team", "method"]].drop_duplicates().values.tolist())
    for row in out.itertuples(index=False):
        g = df[(df["team"] == row.team) & (df["method"] == row.method)]
        ok = g[["actual", "forecast", "p10", "p50", "p90"]].notna().all(axis=1)
        assert (row.n, row.n_missing) == (ok.sum(), (~ok).sum())
        u = g[ok]
        a, f = u["actual"], u["forecast"]
        history = df[(df["team"] == row.team) & df["actual"].notna()].drop_duplicates(["period", "actual"])
        insample = history.sort_values("period")["actual"]
        expected = {
            "forecast_ratio": forecast_ratio(a, f),
            "absolute_accuracy": absolute_accuracy(a, f),
            "bias": bias(a, f),
            "wape": wape(a, f),
            "mape": mape(a, f),
            "smape": smape(a, f),
            "mase": mase(a, f, insample, season_length=4),
            "hit_rate": hit_rate(a, f, tolerance=0.15),
            "pinball": np.mean([pinball_loss(a, u[c], q) for q, c in [(0.1, "p10"), (0.5, "p50"), (0.9, "p90")]]),
            "coverage": interval_coverage(a, u["p10"], u["p90"]),
            "winkler": winkler_score(a, u["p10"], u["p90"], alpha=0.3),
        }
        for name, value in expected.items():
            assert getattr(row, name) == pytest.approx(value, rel=1e-9, nan_ok=True), (row.team, row.method, name)


def test_evaluate_one_row_without_by_and_point_metrics_ignore_the_interval():
    df = _long_table(1).query("team == 'A'")
    out = evaluate(df, ["wape", "bias"])
    assert list(out.columns) == ["n", "n_missing", "wape", "bias"]
    ok = df["actual"].notna() & df["forecast"].notna()  # a missing p90 does not matter here
    assert (out["n"].item(), out["n_missing"].item()) == (ok.sum(), (~ok).sum())
    assert out["wape"].item() == pytest.approx(wape(df.loc[ok, "actual"], df.loc[ok, "forecast"]))


def test_evaluate_counts_missing_rows():
    df = pd.DataFrame(
        {
            "team": ["A", "A", "A", "B", "B"],
            "actual": [100.0, None, 50.0, 10.0, 20.0],
            "forecast": [90.0, 80.0, 50.0, None, None],
            "p10": [80.0, 70.0, 40.0, 5.0, 15.0],
            "p90": [120.0, 90.0, None, 15.0, 25.0],
        }
    )
    out = evaluate(df, ["wape", "coverage"], by="team")
    assert out[["team", "n", "n_missing"]].values.tolist() == [["A", 1, 2], ["B", 0, 2]]
    assert out["wape"].tolist()[0] == pytest.approx(0.1)
    assert math.isnan(out["wape"].tolist()[1]) and math.isnan(out["coverage"].tolist()[1])
    only_interval = evaluate(df, "coverage", by="team")
    assert only_interval[["n", "n_missing", "coverage"]].values.tolist() == [[1, 2, 1.0], [2, 0, 1.0]]


def test_evaluate_mase_scale_per_series():
    # one series per team, 4 quarters, seasonal change |y_t - y_{t-1}| (4 periods < m + 1 = 5: m = 1)
    periods = ["2024Q1", "2024Q2", "2024Q3", "2024Q4"]
    df = pd.DataFrame(
        {
            "team": ["A"] * 8 + ["B"] * 4,
            "method": ["x", "y"] * 4 + ["x"] * 4,
            "period": [p for p in periods for _ in range(2)] + periods,
            "actual": [100.0] * 2 + [120.0] * 2 + [100.0] * 2 + [120.0] * 2 + [7.0] * 4,
        }
    )
    df["forecast"] = df["actual"] + np.where(df["method"] == "x", 10.0, -40.0)
    df.loc[df["team"] == "B", "forecast"] = 7.0
    out = evaluate(df, "mase", by=["team", "method"])
    assert out["mase"].tolist() == [pytest.approx(0.5), pytest.approx(2.0), 0.0]  # B: zero scale, zero errors
    df.loc[11, "forecast"] = 8.0
    assert math.isnan(evaluate(df, "mase", by="team")["mase"].iloc[1])  # zero scale, non-zero error
    # by including the period keeps the team as the series
    per_period = evaluate(df, "mase", by=["team", "period"])
    assert per_period.loc[per_period["team"] == "A", "mase"].tolist() == pytest.approx([1.25] * 4)
    with pytest.raises(ValueError, match="different actuals in period"):
        evaluate(df, "mase")  # the whole table as one series mixes A and B


def test_evaluate_quantiles_default_to_the_columns_present():
    df = _long_table(2).dropna().drop(columns="p50")
    got = evaluate(df, "pinball")["pinball"].item()
    expected = (pinball_loss(df["actual"], df["p10"], 0.1) + pinball_loss(df["actual"], df["p90"], 0.9)) / 2
    assert got == pytest.approx(expected)
    explicit = evaluate(df, "pinball", quantiles={0.5: "forecast"})["pinball"].item()
    assert explicit == pytest.approx(pinball_loss(df["actual"], df["forecast"], 0.5))
    assert evaluate(df, "winkler")["winkler"].item() == pytest.approx(winkler_score(df["actual"], df["p10"], df["p90"]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ["wape", "accuracy"]}, "unknown metric 'accuracy'; valid names: forecast_ratio, .*winkler"),
        ({"metrics": []}, "metrics is empty"),
        ({"metrics": "wape", "by": "region"}, r"column 'region' is not in df; columns: \['team'"),
        ({"metrics": "wape", "forecast": "fc"}, "column 'fc' is not in df"),
        ({"metrics": "coverage", "upper": "p95"}, "column 'p95' is not in df"),
        ({"metrics": "mase", "period": "quarter"}, "column 'quarter' is not in df"),
        ({"metrics": "pinball", "quantiles": {0.5: "median"}}, "column 'median' is not in df"),
        ({"metrics": "pinball", "quantiles": {50: "p50"}}, "quantile level must be strictly between 0 and 1"),
        ({"metrics": "winkler", "alpha": 1.5}, "alpha must be strictly between 0 and 1"),
        ({"metrics": "wape", "by": "n"}, "clashes with an output column"),
        ({"metrics": "wape", "actual": "team"}, "column 'team' must hold numbers"),
    ],
)
def test_evaluate_raises_on_unknown_metrics_and_columns(kwargs, match):
    df = _long_table(3).assign(n=1)
    with pytest.raises(ValueError, match=match):
        evaluate(df, **kwargs)


def test_evaluate_refuses_inverted_intervals_and_infinite_values():
    df = pd.DataFrame({"actual": [1.0, 2.0], "forecast": [1.0, np.inf], "p10": [0.0, 3.0], "p90": [2.0, 2.5]})
    with pytest.raises(ValueError, match="column 'p10' must not exceed column 'p90'; row 1"):
        evaluate(df, "coverage")
    with pytest.raises(ValueError, match="column 'forecast' must hold finite numbers; row 1 is inf"):
        evaluate(df, "wape")


def test_evaluate_empty_table_and_missing_group_keys():
    df = pd.DataFrame({"team": ["A", None, "A"], "actual": [1.0, 2.0, 3.0], "forecast": [1.0, 2.0, 4.0]})
    out = evaluate(df, "wape", by="team")
    assert out["n"].tolist() == [2, 1] and pd.isna(out["team"].iloc[1])  # missing keys form the last group
    empty = evaluate(df.iloc[:0], "wape")
    assert empty[["n", "n_missing"]].values.tolist() == [[0, 0]] and math.isnan(empty["wape"].item())
    assert len(evaluate(df.iloc[:0], "wape", by="team")) == 0


def test_every_evaluate_metric_has_a_definition():
    df = _long_table(4)
    out = evaluate(df, list(METRIC_DEFINITIONS), by="team")
    assert list(out.columns[3:]) == list(METRIC_DEFINITIONS)
    for name in ("forecast_ratio", "absolute_accuracy", "bias", "wape", "mape", "smape", "mase", "hit_rate"):
        assert name in METRIC_DEFINITIONS
    for name in ("pinball", "coverage", "winkler"):
        assert name in METRIC_DEFINITIONS
    for name, text in METRIC_DEFINITIONS.items():
        assert "better" in text and text.endswith("."), name
        assert len(text) < 300, name


def test_new_names_are_exported_and_listed_in_the_module_docstring():
    new = ["METRIC_DEFINITIONS", "evaluate", "crps_samples", "winkler_score", "interval_coverage", "pinball_loss"]
    for name in [*new, "mase", *(f.__name__ for f in POINT)]:
        assert name in metrics_module.__all__ and hasattr(metrics_module, name), name
        assert f"`{name}`" in metrics_module.__doc__, name


def test_evaluate_handles_100k_rows_in_groups():
    rng = np.random.default_rng(5)
    n = 100_000
    df = pd.DataFrame(
        {
            "team": rng.choice(list("ABCDE"), n),
            "method": rng.choice(["naive", "model"], n),
            "period": rng.integers(0, 40, n),
        }
    )
    df["actual"] = 1000.0 + 10 * df["period"] + 100 * df["team"].map(ord)
    df["forecast"] = df["actual"] * rng.lognormal(0, 0.2, n)
    df["p10"], df["p50"], df["p90"] = 0.8 * df["forecast"], df["forecast"], 1.2 * df["forecast"]
    out = evaluate(df, list(METRIC_DEFINITIONS), by=["team", "method"])  # speed is measured by make bench
    assert len(out) == 10 and out["n"].sum() == n
