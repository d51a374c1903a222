"""Time-series bookings forecasts: seasonal naive exactly, ETS on series with a known shape."""

import numpy as np
import pandas as pd
import pytest

from salesforecast.models.bookings import BookingsModel


def test_seasonal_naive_repeats_last_season_with_a_normal_interval():
    y = np.array([10.0, 20, 30, 40, 12, 22, 32, 42, 14, 24, 34, 44])
    out = BookingsModel(method="seasonal_naive").fit(y).predict(5)
    assert out["forecast"].tolist() == [14.0, 24.0, 34.0, 44.0, 14.0]
    assert BookingsModel(method="seasonal_naive").fit([1.0, 2.0, 3.0, 4.0]).predict(1)["forecast"].iloc[0] == 1.0
    sigma = np.sqrt(np.mean((y[4:] - y[:-4]) ** 2))  # every error is 2
    assert out["p90"].iloc[0] - out["forecast"].iloc[0] == pytest.approx(1.2815516 * sigma, rel=1e-6)
    assert out["p90"].iloc[4] - out["forecast"].iloc[4] == pytest.approx(1.2815516 * sigma * np.sqrt(2), rel=1e-6)


def test_ets_follows_a_seasonal_pattern_and_orders_its_quantiles():
    rng = np.random.default_rng(0)
    season = np.array([100.0, 150.0, 120.0, 200.0])
    y = np.tile(season, 4) + rng.normal(0, 3, 16)
    model = BookingsModel(method="ets").fit(pd.Series(y))
    assert model.spec_.endswith(",A)")
    out = model.predict(4)
    np.testing.assert_allclose(out["forecast"], season, rtol=0.08)
    assert (out["p10"] <= out["p50"]).all() and (out["p50"] <= out["p90"]).all()
    assert (out["p90"] - out["p10"]).iloc[0] < 40  # the noise is small, so is the interval


def test_short_and_flat_series_fall_back_and_never_go_negative():
    assert BookingsModel().fit([5.0, 5.0, 5.0]).spec_.startswith("naive")
    out = BookingsModel(method="seasonal_naive").fit([0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0]).predict(1)
    assert (out[["forecast", "p10", "p50", "p90"]] >= 0).all().all()
    assert BookingsModel(method="seasonal_naive").fit([1.0, 2.0, 3.0]).predict(1)["p90"].isna().all()  # 2 errors


@pytest.mark.parametrize(
    ("kwargs", "y", "match"),
    [
        ({"method": "arima"}, [1.0, 2.0], "method"),
        ({"season_length": 0}, [1.0, 2.0], "season_length"),
        ({"quantiles": (0.1, 1.5)}, [1.0, 2.0], "quantiles"),
        ({}, [1.0, np.nan], "missing"),
        ({}, [], "non-empty"),
    ],
)
def test_bad_settings_and_series_are_named(kwargs, y, match):
    with pytest.raises(ValueError, match=match):
        BookingsModel(**kwargs).fit(y)


def test_seasonal_naive_gives_no_forecast_with_less_than_a_season():
    """Fewer periods than a season: no value one season earlier, so NaN, never the last value relabelled."""
    model = BookingsModel(method="seasonal_naive", season_length=4).fit([100.0, 120.0, 90.0])
    out = model.predict(2)
    assert out[["forecast", "p10", "p50", "p90"]].isna().all().all()
    assert "no forecast" in model.spec_
    monthly = BookingsModel(method="seasonal_naive", season_length=12).fit(np.arange(1.0, 12.0))
    assert monthly.predict(1)["forecast"].isna().all()
    full = BookingsModel(method="seasonal_naive", season_length=12).fit(np.arange(1.0, 13.0))
    assert full.predict(1)["forecast"].tolist() == [1.0]


def test_ets_interval_covers_about_eighty_percent_of_held_out_values():
    """P10-P90 on a seasonal series with known normal noise: ~80% of the next values fall inside, over many draws.

    With statsmodels' maximum-likelihood variance (SSE / n, a dozen fitted parameters on 16 quarters) it covered
    about half.
    """
    rng = np.random.default_rng(0)
    season = np.array([1.0, 1.3, 1.1, 1.6]) * 1e6
    n, hits = 16, []
    for _ in range(120):
        y = np.tile(season, 5)[: n + 1] + rng.normal(0.0, 1e5, n + 1)
        model = BookingsModel(method="ets").fit(y[:n])
        assert model.spec_ == "ETS(A,Ad,A)"
        p = model.predict(1).iloc[0]
        hits.append(p["p10"] <= y[n] <= p["p90"])
    assert 0.6 <= np.mean(hits) <= 0.95
