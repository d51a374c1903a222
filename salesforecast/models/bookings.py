"""Time-series forecasts of period bookings: exponential smoothing (ETS) and a seasonal-naive baseline.

These methods look only at the closed-won amount of past periods, never at the pipeline: they are the baseline
every pipeline method should beat, and the only method left when a CRM keeps no usable pipeline history.

``BookingsModel(method="ets")``
    statsmodels' `~statsmodels.tsa.exponential_smoothing.ets.ETSModel` with additive errors, fitted by maximum
    likelihood. Additive seasonality of ``season_length`` periods is used once the series holds at least
    ``min_cycles`` full seasons; a damped additive trend once it holds 8 periods (without a season) or 4 full
    seasons (with one); before that, simple exponential smoothing. Quantiles come from the model's forecast
    variance under normal errors, floored at zero (bookings cannot be negative). That variance is statsmodels'
    maximum-likelihood one, the in-sample mean squared error ``SSE / n``; on a dozen quarters with up to ten
    fitted parameters (smoothing weights and initial states) it is far too small, so it is scaled by
    ``n / (n - k)`` (``SSE / (n - k)``, ``k`` the parameters fitted); no interval when ``n <= k``.
``BookingsModel(method="seasonal_naive")``
    The forecast is the value one season earlier (the same quarter last year). With fewer past periods than a
    season there is no such value: the forecast and its quantiles are missing (NaN), and ``spec_`` says so.
    Quantiles are normal around it with the root mean square of the in-sample
    seasonal-naive errors (drift counts as error), times the square root of the seasons ahead (no interval with
    fewer than 3 errors).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["BookingsModel"]


class BookingsModel(BaseEstimator):
    """Forecast the bookings of the next periods from the bookings of past periods.

    Parameters
    ----------
    method : {"ets", "seasonal_naive"}
        See the module docstring.
    season_length : int
        Periods per season: 4 for fiscal quarters, 12 for months.
    quantiles : sequence of float
        Quantile levels returned by `predict`, each in (0, 1).
    min_cycles : int
        Full seasons needed before the ETS model gets a seasonal component.

    Attributes
    ----------
    n_periods_ : int
        Length of the series fitted.
    spec_ : str
        The model actually fitted, e.g. ``"ETS(A,Ad,A)"``, ``"ETS(A,N,N)"``, ``"seasonal naive (lag 4)"``, or
        ``"seasonal naive: no forecast (...)"`` with fewer periods than a season.
    history_ : numpy.ndarray
        The fitted series.

    Examples
    --------
    >>> y = pd.Series([100.0, 120, 90, 150, 110, 130, 95, 160], index=[f"FY2023Q{i}" for i in range(1, 5)]
    ...               + [f"FY2024Q{i}" for i in range(1, 5)])
    >>> BookingsModel(method="seasonal_naive").fit(y).predict(1)["forecast"].tolist()
    [110.0]
    >>> BookingsModel(method="seasonal_naive").fit(y[:3]).predict(1)["forecast"].tolist()  # less than a season
    [nan]
    """

    def __init__(
        self,
        method: Literal["ets", "seasonal_naive"] = "ets",
        season_length: int = 4,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        min_cycles: int = 2,
    ) -> None:
        self.method = method
        self.season_length = season_length
        self.quantiles = quantiles
        self.min_cycles = min_cycles

    def _check(self, y: Any) -> np.ndarray:
        if self.method not in ("ets", "seasonal_naive"):
            raise ValueError(f"method must be 'ets' or 'seasonal_naive', got {self.method!r}")
        m = self.season_length
        if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 1:
            raise ValueError(f"season_length must be a positive integer, got {m!r}")
        for q in self.quantiles:
            if not isinstance(q, numbers.Real) or not 0.0 < float(q) < 1.0:
                raise ValueError(f"quantiles must lie in (0, 1), got {q!r}")
        values = np.asarray(y, dtype="float64")
        if values.ndim != 1 or len(values) == 0:
            raise ValueError("y must be a non-empty 1-D series of bookings per period")
        if not np.isfinite(values).all():
            raise ValueError(
                f"y holds a missing or infinite value at position {int(np.flatnonzero(~np.isfinite(values))[0])}"
            )
        return values

    def fit(self, y: pd.Series | Sequence[float]) -> BookingsModel:
        """Fit on bookings per period, oldest first, one value per period (zeros included).

        Parameters
        ----------
        y : pandas.Series or sequence of float

        Returns
        -------
        BookingsModel
            self, fitted.
        """
        values = self._check(y)
        m = int(self.season_length)
        self.history_ = values
        self.n_periods_ = len(values)
        self._fit = None
        if self.method == "seasonal_naive":
            # the value one season earlier; with less than a season of history there is none (predict gives NaN)
            self._lag = m if len(values) >= m else None
            self.spec_ = (
                f"seasonal naive (lag {m})"
                if self._lag
                else f"seasonal naive: no forecast ({len(values)} periods, fewer than a season of {m})"
            )
            return self
        if len(values) < 4 or np.ptp(values) == 0:
            self._lag = m if len(values) >= m else 1
            self.spec_ = "naive (too short for ETS)"
            return self
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        n = len(values)
        seasonal = "add" if n >= max(self.min_cycles, 2) * m and m > 1 else None
        # a damped trend next to a season needs 4 seasons of data (and is slow to fit); alone, 8 periods
        trend = "add" if (n >= 4 * m if seasonal else n >= 8) else None
        index = pd.period_range("2000-01", periods=len(values), freq="M")
        scale = float(np.abs(values).mean()) or 1.0  # fit in units of the mean: better conditioned
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ETSModel(
                pd.Series(values / scale, index=index),
                error="add",
                trend=trend,
                damped_trend=trend is not None,
                seasonal=seasonal,
                seasonal_periods=m if seasonal else None,
            )
            self._fit = model.fit(disp=False, maxiter=200)
        self._scale = scale
        # smoothing weights and initial states fitted (statsmodels' df_model adds sigma2, and its last initial
        # seasonal is not free: it is fixed at 0, the level taking it up)
        k = len(self._fit.param_names) - (1 if seasonal else 0)
        # SSE / n (the MLE) -> SSE / (n - k): without it the P10-P90 covered about half of held-out values
        self._variance_factor = n / (n - k) if n > k else math.nan
        self.spec_ = f"ETS(A,{'Ad' if trend else 'N'},{'A' if seasonal else 'N'})"
        return self

    def predict(self, horizon: int = 1) -> pd.DataFrame:
        """Forecast the next `horizon` periods.

        Returns
        -------
        pandas.DataFrame
            One row per step ahead (``step`` 1, 2, ...): ``forecast`` and one column per quantile (``p10``,
            ``p50``, ``p90`` for the default levels; NaN when the method gives no interval); never negative. All
            NaN for ``seasonal_naive`` fitted on fewer periods than a season (no value one season earlier).
        """
        check_is_fitted(self, "history_")
        if not isinstance(horizon, numbers.Integral) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        y = self.history_
        n = len(y)
        qs = [float(q) for q in self.quantiles]
        cols = {f"p{round(q * 100):02d}": q for q in qs}
        out = pd.DataFrame({"step": np.arange(1, horizon + 1)})
        if self._fit is None and self._lag is None:  # seasonal naive on less than a season: no forecast
            out["forecast"] = math.nan
            for name in cols:
                out[name] = math.nan
            return out
        if self._fit is None:
            lag = self._lag
            idx = n - lag + (np.arange(horizon) % lag)
            point = y[idx]
            errors = y[lag:] - y[:-lag] if n > lag else np.zeros(0)
            sigma = float(np.sqrt(np.mean(errors**2))) if len(errors) >= 3 else math.nan
            k = np.arange(horizon) // lag + 1  # seasons ahead
            out["forecast"] = point
            for name, q in cols.items():
                out[name] = np.maximum(point + NormalDist().inv_cdf(q) * sigma * np.sqrt(k), 0.0)
            out["forecast"] = np.maximum(out["forecast"], 0.0)
            return out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = self._fit.get_prediction(start=n, end=n + horizon - 1)
            mean = np.asarray(pred.predicted_mean, dtype="float64") * self._scale
            variance = np.maximum(np.asarray(pred.forecast_variance, dtype="float64"), 0.0) * self._variance_factor
            sd = np.sqrt(variance) * self._scale
        out["forecast"] = np.maximum(mean, 0.0)
        for name, q in cols.items():
            z = NormalDist().inv_cdf(q)
            out[name] = np.maximum(mean + z * sd, 0.0) if np.isfinite(sd).all() else math.nan
        return out

    @property
    def summary(self) -> pd.DataFrame:
        """What was fitted, one row per item with its definition (as the other models' ``summary``).

        Rows (index ``item``): ``method``, ``spec``, ``n_periods``, ``season_length``, ``quantiles``. Columns
        ``value`` (text) and ``definition``.

        Examples
        --------
        >>> BookingsModel(method="seasonal_naive").fit([100.0, 120, 90, 150, 110]).summary.loc["spec", "value"]
        'seasonal naive (lag 4)'
        """
        check_is_fitted(self, "history_")
        rows = [
            ("method", str(self.method), "the method asked for (see the module docstring)"),
            ("spec", self.spec_, "the model actually fitted"),
            ("n_periods", str(self.n_periods_), "periods of bookings fitted, oldest first"),
            ("season_length", str(self.season_length), "periods per season"),
            ("quantiles", ", ".join(f"{float(q):g}" for q in self.quantiles), "quantile levels of `predict`"),
        ]
        return pd.DataFrame(rows, columns=["item", "value", "definition"]).set_index("item")
