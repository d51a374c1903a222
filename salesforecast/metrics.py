"""Accuracy metrics: plain array functions.

This module holds the array layer: each function takes observed outcomes and predictions as 1-D array-likes and
returns a number or a small table. All of them check their inputs through one private validator, which raises a
`ValueError` naming the argument and the bad value.

Probability forecasts of a binary outcome (a deal is won or not):

- `brier_score`: mean squared difference between the forecast probability and the 0/1 outcome (lower is
  better).
- `brier_decomposition`: Murphy's split of the Brier score into reliability, resolution and uncertainty.
- `calibration_table`: forecasts grouped into bins, with the mean forecast, the observed rate and its confidence
  interval per bin; the data of a reliability diagram.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

__all__ = ["BrierDecomposition", "brier_decomposition", "brier_score", "calibration_table"]


def _check_binary_forecast(y_true: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate outcomes (0/1 or bool) and probabilities in [0, 1]; return both as float arrays."""
    y = np.asarray(y_true)
    q = np.asarray(p)
    if y.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {y.shape}")
    if q.ndim != 1:
        raise ValueError(f"p must be one-dimensional, got shape {q.shape}")
    if len(y) != len(q):
        raise ValueError(f"y_true and p must have the same length, got {len(y)} and {len(q)}")
    if len(y) == 0:
        raise ValueError("y_true and p are empty; a metric needs at least one forecast")
    try:
        y = y.astype("float64")
    except (TypeError, ValueError):
        raise ValueError(f"y_true must hold 0/1 or True/False outcomes, got dtype {y.dtype}") from None
    try:
        q = q.astype("float64")
    except (TypeError, ValueError):
        raise ValueError(f"p must hold probabilities (numbers from 0 to 1), got dtype {q.dtype}") from None
    bad_y = ~np.isin(y, (0.0, 1.0))
    if bad_y.any():
        i = int(np.flatnonzero(bad_y)[0])
        raise ValueError(f"y_true must hold 0/1 outcomes; y_true[{i}] = {float(y[i]):g}")
    bad_p = ~((q >= 0.0) & (q <= 1.0))  # also catches NaN
    if bad_p.any():
        i = int(np.flatnonzero(bad_p)[0])
        raise ValueError(f"p must hold probabilities from 0 to 1; p[{i}] = {float(q[i]):g}")
    return y, q


def brier_score(y_true: Any, p: Any) -> float:
    """Brier score of probability forecasts of a binary outcome (lower is better).

    ``BS = (1 / N) * sum_i (p_i - y_i) ** 2``

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes (1: the deal was won).
    p : array-like of float, shape (N,)
        Forecast probabilities of outcome 1, each in [0, 1].

    Returns
    -------
    float
        From 0 (perfect) to 1; a constant forecast of the base rate ``o`` scores ``o (1 - o)``.

    Raises
    ------
    ValueError
        Different lengths, no forecasts, outcomes other than 0/1, probabilities outside [0, 1] or missing.

    Examples
    --------
    >>> round(brier_score([1, 0, 1], [0.9, 0.2, 0.6]), 6)
    0.07
    """
    y, q = _check_binary_forecast(y_true, p)
    return float(np.mean((q - y) ** 2))


class BrierDecomposition(NamedTuple):
    """Murphy's decomposition of the Brier score (see `brier_decomposition`)."""

    brier: float
    reliability: float
    resolution: float
    uncertainty: float


def _uniform_bins(q: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each probability among `n_bins` equal-width bins of [0, 1] (1.0 falls in the last bin)."""
    return np.minimum((q * n_bins).astype(np.int64), n_bins - 1)


def brier_decomposition(y_true: Any, p: Any, n_bins: int | None = 10) -> BrierDecomposition:
    """Murphy's decomposition of the Brier score into reliability, resolution and uncertainty.

    The forecasts are grouped into bins ``k`` (``n_k`` forecasts, mean forecast ``p̄_k``, observed rate ``ō_k``;
    ``ō`` the overall rate, ``N`` the number of forecasts):

    - reliability ``REL = (1 / N) * sum_k n_k (p̄_k - ō_k) ** 2``
    - resolution ``RES = (1 / N) * sum_k n_k (ō_k - ō) ** 2``
    - uncertainty ``UNC = ō (1 - ō)``

    and ``BS = REL - RES + UNC`` exactly when all forecasts in a bin are equal (``n_bins=None`` makes each
    distinct forecast value its own bin, so the identity is exact); with wider bins the within-bin spread of the
    forecasts makes the identity approximate. Reliability (lower is better) measures miscalibration, resolution
    (higher is better) how far the forecasts separate deals with different outcome rates, uncertainty is the
    Brier score of always forecasting the base rate.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes.
    p : array-like of float, shape (N,)
        Forecast probabilities in [0, 1].
    n_bins : int or None
        Number of equal-width bins of [0, 1] (a forecast of exactly 1 falls in the last bin), or None for one bin
        per distinct forecast value.

    Returns
    -------
    BrierDecomposition
        Named tuple ``(brier, reliability, resolution, uncertainty)``; ``brier`` is the exact Brier score.

    Examples
    --------
    >>> d = brier_decomposition([1, 0, 1, 0], [0.8, 0.8, 0.2, 0.2], n_bins=None)
    >>> [round(x, 6) for x in d]
    [0.34, 0.09, 0.0, 0.25]
    >>> bool(np.isclose(d.reliability - d.resolution + d.uncertainty, d.brier))
    True
    """
    y, q = _check_binary_forecast(y_true, p)
    if n_bins is None:
        _, bins = np.unique(q, return_inverse=True)
    else:
        if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer or None, got {n_bins!r}")
        bins = _uniform_bins(q, int(n_bins))
    n = len(y)
    counts = np.bincount(bins).astype("float64")
    used = counts > 0
    p_mean = np.bincount(bins, weights=q)[used] / counts[used]
    o_mean = np.bincount(bins, weights=y)[used] / counts[used]
    base = float(y.mean())
    reliability = float(np.sum(counts[used] * (p_mean - o_mean) ** 2) / n)
    resolution = float(np.sum(counts[used] * (o_mean - base) ** 2) / n)
    uncertainty = base * (1.0 - base)
    return BrierDecomposition(float(np.mean((q - y) ** 2)), reliability, resolution, uncertainty)


def calibration_table(
    y_true: Any,
    p: Any,
    n_bins: int = 10,
    strategy: Literal["quantile", "uniform"] = "quantile",
    ci: float = 0.9,
) -> pd.DataFrame:
    """Forecasts grouped into bins: mean forecast against observed rate, the data of a reliability diagram.

    Per bin ``k`` with ``n_k`` forecasts: ``mean_predicted = mean(p_i)``, ``observed_rate = mean(y_i)`` and a
    Wilson score interval for the observed rate at level `ci`:

    ``(ō + z²/2n) / (1 + z²/n) ± z / (1 + z²/n) * sqrt(ō (1 - ō) / n + z² / 4n²)`` with ``ō`` the bin's observed
    rate, ``n`` its count and ``z = Φ⁻¹((1 + ci) / 2)``.

    A calibrated forecaster has ``observed_rate ≈ mean_predicted`` in every bin.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes.
    p : array-like of float, shape (N,)
        Forecast probabilities in [0, 1].
    n_bins : int
        Number of bins asked for.
    strategy : {"quantile", "uniform"}
        ``"quantile"``: edges at quantiles of `p`, so bins hold about equal counts (repeated edges are merged, so
        there may be fewer bins); ``"uniform"``: equal-width bins of [0, 1]. Empty bins are left out.
    ci : float
        Level of the interval for the observed rate, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin, in order: ``bin`` (0-based), ``lower``, ``upper`` (bin edges; a bin holds
        ``lower <= p < upper``, the last one also ``p == upper``), ``mean_predicted``, ``observed_rate``,
        ``count``, ``ci_lower``, ``ci_upper``.

    Examples
    --------
    >>> t = calibration_table([0, 0, 1, 1, 1, 0], [0.1, 0.2, 0.7, 0.8, 0.9, 0.3], n_bins=2)
    >>> t[["bin", "mean_predicted", "observed_rate", "count"]].round(3).values.tolist()
    [[0.0, 0.2, 0.0, 3.0], [1.0, 0.8, 1.0, 3.0]]
    """
    y, q = _check_binary_forecast(y_true, p)
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must be a level between 0 and 1 (e.g. 0.9), got {ci!r}")
    if strategy == "quantile":
        edges = np.unique(np.quantile(q, np.linspace(0.0, 1.0, int(n_bins) + 1)))
        if len(edges) == 1:
            edges = np.array([edges[0], edges[0]])
        bins = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, len(edges) - 2)
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
        bins = _uniform_bins(q, int(n_bins))
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    n_edges = len(edges) - 1
    counts = np.bincount(bins, minlength=n_edges).astype("float64")
    used = np.flatnonzero(counts > 0)
    n = counts[used]
    p_mean = np.bincount(bins, weights=q, minlength=n_edges)[used] / n
    rate = np.bincount(bins, weights=y, minlength=n_edges)[used] / n
    z = NormalDist().inv_cdf(0.5 + float(ci) / 2.0)
    denom = 1.0 + z**2 / n
    centre = (rate + z**2 / (2.0 * n)) / denom
    half = z / denom * np.sqrt(rate * (1.0 - rate) / n + z**2 / (4.0 * n**2))
    return pd.DataFrame(
        {
            "bin": used.astype(np.int64),
            "lower": edges[used],
            "upper": edges[used + 1],
            "mean_predicted": p_mean,
            "observed_rate": rate,
            "count": n.astype(np.int64),
            "ci_lower": np.clip(centre - half, 0.0, 1.0),
            "ci_upper": np.clip(centre + half, 0.0, 1.0),
        }
    )
