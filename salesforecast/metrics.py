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
- `log_loss`: mean negative log-likelihood of the outcomes (lower is better).

Ranking (how well the scores order the outcomes; only the order of the scores matters, and tied scores count as
contacted together in random order):

- `roc_auc`: probability that a positive outranks a negative; `ks_statistic`: largest gap between the score
  distributions of the two classes; `pr_auc`: average precision.
- `cumulative_gains`, `lift_table`, `top_decile_lift`, `alift`: the share of positives reached when contacting
  the best scores first, lift by decile, and the area under the gains curve.
- `score_table`: all of the above for one set of forecasts, in one row.

Point and probabilistic forecasts of an amount (bookings, revenue; ``A`` the actual, ``F`` the forecast; each
docstring states how zero actuals are handled):

- `forecast_ratio`: ``sum(F) / sum(A)``, the "accuracy %" many CRMs print (1 is perfect); `bias`:
  ``sum(F - A) / sum(A)`` (positive: over-forecast).
- `wape`: ``sum|F - A| / sum|A|``; `absolute_accuracy`: ``1 - WAPE``; `mape`: mean ``|F - A| / |A|`` over the
  rows with ``A != 0``; `smape`: mean ``2|F - A| / (|F| + |A|)``; `mase`: mean absolute error over that of a
  seasonal naive forecast in-sample; `hit_rate`: share of rows within a relative tolerance of the actual.
- `pinball_loss`: the loss of a quantile forecast; `interval_coverage`: share of actuals inside their interval;
  `winkler_score`: interval width plus a penalty for misses; `crps_samples`: CRPS of sample forecasts.
- `evaluate`: any of these per group of a long table of forecasts, counting the rows left out for missing
  values. `METRICS` is its registry: one `Metric` per name (label, array function, per-group implementation,
  definition, direction, units, kind), which leaderboards and report tables read too; adding a metric is adding
  one entry. `METRIC_DEFINITIONS`: a one-sentence definition of each of its metrics, for reports (built from
  `METRICS` at import: read `METRICS` itself for entries added later).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "BrierDecomposition",
    "METRICS",
    "METRIC_DEFINITIONS",
    "Metric",
    "absolute_accuracy",
    "alift",
    "bias",
    "brier_decomposition",
    "brier_score",
    "calibration_table",
    "crps_samples",
    "cumulative_gains",
    "evaluate",
    "forecast_ratio",
    "hit_rate",
    "interval_coverage",
    "ks_statistic",
    "lift_table",
    "log_loss",
    "mape",
    "mase",
    "pinball_loss",
    "pr_auc",
    "roc_auc",
    "score_table",
    "smape",
    "top_decile_lift",
    "wape",
    "winkler_score",
]


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


# ------------------------------------------------------------------------------------------------ ranking metrics
class _Blocks(NamedTuple):
    """Forecasts sorted by descending score and grouped into blocks of tied scores (see `_ranked_blocks`)."""

    score: np.ndarray  # the score of each block, descending
    count: np.ndarray  # forecasts in each block
    pos: np.ndarray  # positives (y == 1) in each block
    n: int
    n_pos: float


def _ranked_blocks(y: np.ndarray, q: np.ndarray) -> _Blocks:
    """Group validated forecasts into blocks of equal score, highest score first (O(N log N))."""
    order = np.argsort(-q, kind="stable")
    qs, ys = q[order], y[order]
    starts = np.flatnonzero(np.r_[True, qs[1:] != qs[:-1]])
    count = np.diff(np.r_[starts, len(qs)])
    pos = np.add.reduceat(ys, starts)
    return _Blocks(qs[starts], count.astype("float64"), pos, len(qs), float(ys.sum()))


def _require_classes(y: np.ndarray, name: str, positives: bool = True, negatives: bool = True) -> None:
    """Raise a ValueError naming the metric when a class it needs is absent from `y_true`."""
    n_pos = int(y.sum())
    if positives and n_pos == 0:
        raise ValueError(f"{name} is undefined when y_true holds no positive outcome (1); all {len(y)} are 0")
    if negatives and n_pos == len(y):
        raise ValueError(f"{name} is undefined when y_true holds no negative outcome (0); all {len(y)} are 1")


def roc_auc(y_true: Any, p: Any) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative.

    ``AUC = (1 / (N1 N0)) * sum_{i: y_i = 1} sum_{j: y_j = 0} ([p_i > p_j] + 0.5 [p_i = p_j])``

    computed in O(N log N) as the Mann-Whitney statistic with average ranks for ties:
    ``AUC = (R1 - N1 (N1 + 1) / 2) / (N1 N0)``, ``R1`` the sum of the (average) ranks of the positives.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes; both classes must be present.
    p : array-like of float, shape (N,)
        Scores (probabilities) in [0, 1]; only their order matters.

    Returns
    -------
    float
        From 0 to 1; 0.5 for a score that does not separate the classes (e.g. a constant), 1 for a perfect ranking.
        Invariant under any strictly increasing transformation of `p`; ``roc_auc(y, 1 - p) = 1 - roc_auc(y, p)``.

    Raises
    ------
    ValueError
        Invalid input (see `brier_score`), or only one class in `y_true` (AUC is undefined).

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc([0, 1], [0.5, 0.5])
    0.5
    """
    y, q = _check_binary_forecast(y_true, p)
    _require_classes(y, "roc_auc")
    b = _ranked_blocks(y, q)
    neg = b.count - b.pos
    pos_above = np.cumsum(b.pos) - b.pos  # positives scored strictly higher than the block
    # a negative in a block is outranked by the positives above it and half-outranked by the tied ones
    wins = np.sum(neg * (pos_above + 0.5 * b.pos))
    return float(wins / (b.n_pos * (b.n - b.n_pos)))


def pr_auc(y_true: Any, p: Any) -> float:
    """Average precision: the area under the precision-recall curve as a step function.

    With the distinct scores ``t_1 > t_2 > ... > t_K`` as thresholds (a forecast is selected when ``p >= t_k``),
    ``P_k`` the precision and ``R_k`` the recall (share of all positives selected) at ``t_k`` and ``R_0 = 0``:

    ``AP = sum_k (R_k - R_{k-1}) P_k``

    the definition of scikit-learn's ``average_precision_score`` (no interpolation; tied scores enter together).

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes; at least one must be positive.
    p : array-like of float, shape (N,)
        Scores (probabilities) in [0, 1].

    Returns
    -------
    float
        From 0 to 1; 1 for a perfect ranking; a random score gets about the base rate ``mean(y)``, a constant
        score exactly the base rate. Invariant under strictly increasing transformations of `p`.

    Raises
    ------
    ValueError
        Invalid input, or no positive outcome (recall is undefined).

    Examples
    --------
    >>> round(pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 6)
    0.833333
    """
    y, q = _check_binary_forecast(y_true, p)
    _require_classes(y, "pr_auc", negatives=False)
    b = _ranked_blocks(y, q)
    tp = np.cumsum(b.pos)
    precision = tp / np.cumsum(b.count)
    return float(np.sum(b.pos / b.n_pos * precision))


def log_loss(y_true: Any, p: Any, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of binary outcomes under probability forecasts (lower is better).

    ``LL = -(1 / N) * sum_i [y_i log(clip(p_i)) + (1 - y_i) log(clip(1 - p_i))]``, ``clip(x)`` limiting ``x`` to
    ``[eps, 1 - eps]`` (natural logarithm).

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes.
    p : array-like of float, shape (N,)
        Forecast probabilities of outcome 1, in [0, 1].
    eps : float
        Forecasts are clipped to ``[eps, 1 - eps]``, so a confident miss costs ``-log(eps)`` (34.5 for the
        default) instead of infinity. ``0 <= eps < 0.5``; ``eps=0`` gives ``inf`` for a confident miss.

    Returns
    -------
    float
        From 0 (perfect, with ``eps=0``) up; a constant forecast of the base rate ``o`` scores the binary entropy
        ``-o log o - (1 - o) log(1 - o)`` (natural logarithm, nats).

    Examples
    --------
    >>> round(log_loss([1, 0], [0.8, 0.4]), 6)
    0.366985
    """
    y, q = _check_binary_forecast(y_true, p)
    if not 0.0 <= float(eps) < 0.5:
        raise ValueError(f"eps must be in [0, 0.5), got {eps!r}")
    # clip p for the positives and 1 - p for the negatives (exact for p >= 0.5), so both ends get the same floor
    with np.errstate(divide="ignore"):
        ll = np.where(y == 1.0, np.log(np.clip(q, eps, 1.0 - eps)), np.log(np.clip(1.0 - q, eps, 1.0 - eps)))
    return float(-np.mean(ll))


def ks_statistic(y_true: Any, p: Any) -> float:
    """Kolmogorov-Smirnov statistic: the largest distance between the score distributions of the two classes.

    ``KS = max_t |F1(t) - F0(t)|`` with ``F1``, ``F0`` the empirical CDFs of the scores of the positives and of
    the negatives; equivalently ``max_t |TPR(t) - FPR(t)|`` over thresholds ``t`` (the largest vertical gap
    between the ROC curve and the diagonal). Ties enter together (the CDFs are evaluated at distinct scores).

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes; both classes must be present.
    p : array-like of float, shape (N,)
        Scores (probabilities) in [0, 1].

    Returns
    -------
    float
        From 0 (the classes have the same score distribution) to 1 (perfect separation). Invariant under
        strictly increasing transformations of `p` and unchanged by ``p -> 1 - p``.

    Raises
    ------
    ValueError
        Invalid input, or only one class.

    Examples
    --------
    >>> ks_statistic([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.5
    """
    y, q = _check_binary_forecast(y_true, p)
    _require_classes(y, "ks_statistic")
    b = _ranked_blocks(y, q)
    tpr = np.cumsum(b.pos) / b.n_pos
    fpr = np.cumsum(b.count - b.pos) / (b.n - b.n_pos)
    return float(np.max(np.abs(tpr - fpr)))


def _gains_vertices(y: np.ndarray, q: np.ndarray) -> tuple[_Blocks, np.ndarray, np.ndarray]:
    """Blocks and the gains curve's vertices ``(contacted, positives)``, cumulative counts from (0, 0)."""
    b = _ranked_blocks(y, q)
    return b, np.r_[0.0, np.cumsum(b.count)], np.r_[0.0, np.cumsum(b.pos)]


def cumulative_gains(y_true: Any, p: Any) -> pd.DataFrame:
    """Cumulative gains curve: the share of all positives reached when contacting the highest scores first.

    Forecasts are contacted in order of decreasing score. At fraction ``x`` of the ``N`` forecasts contacted the
    gain is ``G(x) = (positives among the top x N) / N1``. Tied scores are contacted together in random order, and
    the curve is its expectation: linear inside each block of tied scores, so it is deterministic (independent of
    the input order). The curve runs from (0, 0) to (1, 1); a random score follows the diagonal, a perfect one
    reaches 1 at ``x = N1 / N``.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes; at least one must be positive.
    p : array-like of float, shape (N,)
        Scores (probabilities) in [0, 1].

    Returns
    -------
    pandas.DataFrame
        The vertices of the curve (linear between them): one row for the origin, then one per distinct score,
        highest first. Columns ``score`` (the block's score, missing at the origin), ``contacted`` and
        ``positives`` (cumulative counts), ``fraction_contacted`` (x), ``fraction_positives`` (the gain
        ``G(x)``), ``lift`` (``G(x) / x``, the cumulative lift; missing at the origin).

    Raises
    ------
    ValueError
        Invalid input, or no positive outcome.

    Examples
    --------
    >>> g = cumulative_gains([0, 1, 1, 0], [0.2, 0.9, 0.5, 0.5])
    >>> g[["fraction_contacted", "fraction_positives"]].values.tolist()
    [[0.0, 0.0], [0.25, 0.5], [0.75, 1.0], [1.0, 1.0]]
    """
    y, q = _check_binary_forecast(y_true, p)
    _require_classes(y, "cumulative_gains", negatives=False)
    b, contacted, positives = _gains_vertices(y, q)
    x = contacted / b.n
    gain = positives / b.n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(x > 0, gain / x, np.nan)
    return pd.DataFrame(
        {
            "score": np.r_[np.nan, b.score],
            "contacted": contacted.astype(np.int64),
            "positives": positives.astype(np.int64),
            "fraction_contacted": x,
            "fraction_positives": gain,
            "lift": lift,
        }
    )


def _positives_reached(contacted: np.ndarray, positives: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Expected positives among the first `c` contacts (ties in random order): the gains curve, interpolated."""
    return np.interp(c, contacted, positives)


def lift_table(y_true: Any, p: Any, n_bins: int = 10) -> pd.DataFrame:
    """Lift by score bin (deciles by default): how much richer in positives each slice of the ranking is.

    Forecasts are ordered by decreasing score and cut into `n_bins` consecutive bins of (nearly) equal size: bin
    ``k`` (1-based) holds the contacts ranked ``c_{k-1} + 1 .. c_k`` with ``c_k = floor(k N / n_bins)``. A block
    of tied scores that straddles a cut is shared in proportion (ties in random order, as in `cumulative_gains`),
    so ``positives`` may be fractional there. Per bin, with ``o = N1 / N`` the base rate:

    - ``rate = positives / n``, ``lift = rate / o``;
    - ``cumulative_lift = (positives in bins 1..k / c_k) / o``;
    - ``cumulative_gain = positives in bins 1..k / N1`` (the gains curve at ``c_k / N``).

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes; at least one must be positive.
    p : array-like of float, shape (N,)
        Scores (probabilities) in [0, 1].
    n_bins : int
        Number of bins, from 1 to N.

    Returns
    -------
    pandas.DataFrame
        One row per bin, best scores first: ``decile`` (the bin number 1..n_bins, whatever `n_bins`),
        ``min_score``, ``max_score``, ``n``, ``positives``, ``rate``, ``lift``, ``cumulative_lift``,
        ``cumulative_gain``.

    Raises
    ------
    ValueError
        Invalid input, no positive outcome, or `n_bins` not in 1..N.

    Examples
    --------
    >>> t = lift_table([1, 1, 0, 1, 0, 0, 0, 0, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], n_bins=5)
    >>> t[["decile", "n", "positives", "lift", "cumulative_gain"]].values.tolist()[:2]
    [[1.0, 2.0, 2.0, 3.3333333333333335, 0.6666666666666666], [2.0, 2.0, 1.0, 1.6666666666666667, 1.0]]
    """
    y, q = _check_binary_forecast(y_true, p)
    _require_classes(y, "lift_table", negatives=False)
    n = len(y)
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or not 1 <= n_bins <= n:
        raise ValueError(f"n_bins must be an integer from 1 to the number of forecasts ({n}), got {n_bins!r}")
    b, contacted, positives = _gains_vertices(y, q)
    cuts = (np.arange(int(n_bins) + 1) * n) // int(n_bins)
    reached = _positives_reached(contacted, positives, cuts.astype("float64"))
    size = np.diff(cuts).astype(np.int64)
    pos = np.diff(reached)
    base = b.n_pos / n
    sorted_q = np.sort(q)[::-1]
    return pd.DataFrame(
        {
            "decile": np.arange(1, int(n_bins) + 1, dtype=np.int64),
            "min_score": sorted_q[cuts[1:] - 1],
            "max_score": sorted_q[cuts[:-1]],
            "n": size,
            "positives": pos,
            "rate": pos / size,
            "lift": pos / size / base,
            "cumulative_lift": reached[1:] / cuts[1:] / base,
            "cumulative_gain": reached[1:] / b.n_pos,
        }
    )


def top_decile_lift(y_true: Any, p: Any) -> float:
    """Lift of the top 10% of scores: their rate of positives over the base rate.

    ``TDL = G(0.1) / 0.1`` with ``G`` the gains curve of `cumulative_gains` (linear inside tied blocks and
    between contacts, so ``0.1 N`` need not be a whole number); equal to ``lift_table(y, p)["lift"][0]`` when
    ``N`` is a multiple of 10.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes; at least one must be positive.
    p : array-like of float, shape (N,)
        Scores (probabilities) in [0, 1].

    Returns
    -------
    float
        From 0 to ``min(10, 1 / base_rate)``; 1 for a constant score. Invariant under strictly increasing
        transformations of `p`.

    Examples
    --------
    >>> y = [1, 0] + [0] * 8 + [1] + [0] * 9  # 2 positives in 20: base rate 0.1
    >>> top_decile_lift(y, [0.9, 0.85] + [0.1] * 18)  # the top 2 hold 1 of the 2 positives
    5.0
    """
    y, q = _check_binary_forecast(y_true, p)
    _require_classes(y, "top_decile_lift", negatives=False)
    b, contacted, positives = _gains_vertices(y, q)
    reached = float(_positives_reached(contacted, positives, np.array([0.1 * b.n]))[0])
    return reached / b.n_pos / 0.1


def alift(y_true: Any, p: Any) -> float:
    """Area under the cumulative gains curve ("ALIFT", Moro, Cortez & Rita 2014).

    ``ALIFT = integral_0^1 G(x) dx`` with ``x`` the fraction of forecasts contacted (highest scores first) and
    ``G(x)`` the fraction of positives reached (`cumulative_gains`, linear inside tied blocks, so the trapezoid
    rule over its vertices is exact).

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes; at least one must be positive.
    p : array-like of float, shape (N,)
        Scores (probabilities) in [0, 1].

    Returns
    -------
    float
        0.5 for a constant (or random) score; ``1 - o / 2`` for a perfect ranking, ``o = N1 / N`` the base rate
        (the maximum); ``o / 2`` for the reverse ranking (the minimum). It relates to the ROC AUC by
        ``ALIFT = o / 2 + (1 - o) AUC``. Invariant under strictly increasing transformations of `p`.

    Raises
    ------
    ValueError
        Invalid input, or no positive outcome.

    References
    ----------
    S. Moro, P. Cortez, P. Rita (2014), "A data-driven approach to predict the success of bank telemarketing",
    Decision Support Systems 62, 22-31.

    Examples
    --------
    >>> alift([0, 1, 1, 0], [0.2, 0.9, 0.5, 0.5])
    0.6875
    >>> alift([1, 0, 0, 0], [0.9, 0.1, 0.1, 0.1])  # perfect: 1 - 0.25 / 2
    0.875
    """
    y, q = _check_binary_forecast(y_true, p)
    _require_classes(y, "alift", negatives=False)
    b, contacted, positives = _gains_vertices(y, q)
    x, g = contacted / b.n, positives / b.n_pos
    return float(np.sum(np.diff(x) * (g[1:] + g[:-1]) / 2.0))


def score_table(y_true: Any, p: Any) -> pd.DataFrame:
    """Probability and ranking metrics of one set of forecasts, in one row.

    Columns: ``n`` (forecasts), ``base_rate`` (``mean(y)``), ``roc_auc``, ``pr_auc``, ``brier`` (`brier_score`),
    ``log_loss``, ``top_decile_lift``, ``alift``, ``ks`` (`ks_statistic`); see each function for its formula.

    A metric that is undefined for the outcomes at hand is missing instead of raising, so that tables over many
    groups can be built: ``roc_auc`` and ``ks`` need both classes, ``pr_auc``, ``top_decile_lift`` and ``alift``
    at least one positive.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool, shape (N,)
        Observed outcomes.
    p : array-like of float, shape (N,)
        Forecast probabilities in [0, 1].

    Returns
    -------
    pandas.DataFrame
        One row.

    Examples
    --------
    >>> t = score_table([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> t[["n", "base_rate", "roc_auc", "ks"]].values.tolist()
    [[4.0, 0.5, 0.75, 0.5]]
    >>> score_table([0, 0], [0.1, 0.2])[["roc_auc", "brier"]].round(3).values.tolist()
    [[nan, 0.025]]
    """
    y, q = _check_binary_forecast(y_true, p)
    has_pos, has_neg = bool(y.sum() > 0), bool(y.sum() < len(y))
    both = has_pos and has_neg
    row = {
        "n": len(y),
        "base_rate": float(y.mean()),
        "roc_auc": roc_auc(y, q) if both else np.nan,
        "pr_auc": pr_auc(y, q) if has_pos else np.nan,
        "brier": brier_score(y, q),
        "log_loss": log_loss(y, q),
        "top_decile_lift": top_decile_lift(y, q) if has_pos else np.nan,
        "alift": alift(y, q) if has_pos else np.nan,
        "ks": ks_statistic(y, q) if both else np.nan,
    }
    return pd.DataFrame([row])


# ------------------------------------------------------------------------------------------------ amount forecasts
def _check_amounts(arrays: dict[str, Any], matrix: str | None = None, min_length: int = 1) -> list[np.ndarray]:
    """Validate amounts: finite numbers of one common length; return them as float arrays, in order.

    Each array must be 1-D, except the one named `matrix`, which must be 2-D with one row per forecast. Missing
    values (NaN, ``pd.NA``, None) and infinities are refused, naming the argument, the position and the value.
    """
    out: list[np.ndarray] = []
    first: tuple[str, int] | None = None
    for name, value in arrays.items():
        try:
            if isinstance(value, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
                x = value.to_numpy(dtype="float64", na_value=np.nan)
            else:
                x = np.asarray(value, dtype="float64")
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numbers, got {type(value).__name__} {value!r:.80}") from None
        ndim = 2 if name == matrix else 1
        if x.ndim != ndim:
            raise ValueError(f"{name} must be {'two' if ndim == 2 else 'one'}-dimensional, got shape {x.shape}")
        bad = ~np.isfinite(x)
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            where = ", ".join(map(str, i))
            raise ValueError(f"{name} must hold finite numbers; {name}[{where}] = {float(x[i])}")
        if first is None:
            if len(x) < min_length:
                raise ValueError(f"{name} is empty; a metric needs at least one forecast")
            first = (name, len(x))
        elif len(x) != first[1]:
            raise ValueError(f"{first[0]} and {name} must have the same length, got {first[1]} and {len(x)}")
        out.append(x)
    return out


def _check_unit_interval(name: str, value: Any) -> float:
    """Return `value` as a float strictly between 0 and 1, or raise a ValueError naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}") from None
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return v


def _check_tolerance(tolerance: Any) -> float:
    """Return `tolerance` as a finite non-negative float, or raise a ValueError."""
    try:
        v = float(tolerance)
    except (TypeError, ValueError):
        raise ValueError(f"tolerance must be a non-negative number (0.1 = within 10%), got {tolerance!r}") from None
    if not (np.isfinite(v) and v >= 0.0):
        raise ValueError(f"tolerance must be a non-negative number (0.1 = within 10%), got {tolerance!r}")
    return v


def _check_season_length(season_length: Any) -> int:
    """Return `season_length` as a positive int, or raise a ValueError."""
    if not isinstance(season_length, (int, np.integer)) or isinstance(season_length, bool) or season_length < 1:
        raise ValueError(f"season_length must be a positive integer (periods per season), got {season_length!r}")
    return int(season_length)


def _ratio(num: float, den: float) -> float:
    """``num / den``, or NaN when ``den == 0``."""
    return float(num / den) if den != 0 else float("nan")


# Relative slack of `hit_rate` so that a forecast exactly at the tolerance (7.7 against 7 at 10%) counts as a hit
# whatever the rounding of ``7.7 - 7`` and ``0.1 * 7``; with A == 0 only F == 0 passes.
_HIT_SLACK = 1e-12


def _hits(a: np.ndarray, f: np.ndarray, tolerance: float) -> np.ndarray:
    """Rows with ``|F - A| <= tolerance |A|`` (up to rounding), as a bool array."""
    return np.abs(f - a) <= tolerance * np.abs(a) + _HIT_SLACK * np.maximum(np.abs(a), np.abs(f))


def _pinball_terms(a: np.ndarray, f: np.ndarray, q: float) -> np.ndarray:
    """Per-row pinball loss ``max(q (A - F), (q - 1)(A - F))``."""
    d = a - f
    return np.maximum(q * d, (q - 1.0) * d)


def _winkler_terms(a: np.ndarray, lo: np.ndarray, hi: np.ndarray, alpha: float) -> np.ndarray:
    """Per-row Winkler score: width plus ``2 / alpha`` times the distance outside the interval."""
    return (hi - lo) + (2.0 / alpha) * (np.maximum(lo - a, 0.0) + np.maximum(a - hi, 0.0))


def _check_interval(lo: np.ndarray, hi: np.ndarray) -> None:
    """Raise a ValueError at the first row with ``lower > upper``."""
    bad = lo > hi
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"lower must not exceed upper; lower[{i}] = {lo[i]:g} > upper[{i}] = {hi[i]:g}")


def forecast_ratio(actual: Any, forecast: Any) -> float:
    """Total forecast over total actual: the "forecast accuracy %" many CRMs print (1 is perfect).

    ``ratio = sum_i F_i / sum_i A_i``

    Over- and under-forecasts of single rows cancel out, so this measures the total (``bias + 1``), not the
    accuracy of the rows; pair it with `wape`.

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts (finite).
    forecast : array-like of float, shape (N,)
        Forecast amounts (finite).

    Returns
    -------
    float
        1 for a forecast of the right total, above 1 for an over-forecast. NaN when ``sum(A) == 0`` (zero
        actuals are otherwise ordinary rows).

    Raises
    ------
    ValueError
        Different lengths, no rows, or a missing or infinite value (naming the argument and the row).

    Examples
    --------
    >>> forecast_ratio([100, 200, 0, 100], [110, 150, 20, 100])
    0.95
    """
    a, f = _check_amounts({"actual": actual, "forecast": forecast})
    return _ratio(f.sum(), a.sum())


def absolute_accuracy(actual: Any, forecast: Any) -> float:
    """One minus the WAPE: the share of the total actual that the forecast got right (1 is perfect).

    ``accuracy = 1 - sum_i |F_i - A_i| / sum_i |A_i|``

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    forecast : array-like of float, shape (N,)
        Forecast amounts.

    Returns
    -------
    float
        At most 1; negative when the absolute errors exceed the total actual. NaN when ``sum |A| == 0`` (all
        actuals zero), even for an all-zero forecast: unlike `wape`, which gives 0.0 for that case, a share of
        nothing is not reported as an accuracy.

    Examples
    --------
    >>> absolute_accuracy([100, 200, 0, 100], [110, 150, 20, 100])
    0.8
    """
    a, f = _check_amounts({"actual": actual, "forecast": forecast})
    return 1.0 - _ratio(np.abs(f - a).sum(), np.abs(a).sum())


def bias(actual: Any, forecast: Any) -> float:
    """Total over-forecast as a share of the total actual (positive: over-forecast; 0 is unbiased).

    ``bias = sum_i (F_i - A_i) / sum_i A_i``  (``= forecast_ratio - 1``)

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    forecast : array-like of float, shape (N,)
        Forecast amounts.

    Returns
    -------
    float
        NaN when ``sum(A) == 0``; zero actuals are otherwise ordinary rows.

    Examples
    --------
    >>> bias([100, 200, 0, 100], [110, 150, 20, 100])
    -0.05
    """
    a, f = _check_amounts({"actual": actual, "forecast": forecast})
    return _ratio((f - a).sum(), a.sum())


def wape(actual: Any, forecast: Any) -> float:
    """Weighted absolute percentage error: total absolute error over total absolute actual (lower is better).

    ``WAPE = sum_i |F_i - A_i| / sum_i |A_i|``

    the MAPE with each row weighted by its actual, so rows with a zero actual count with their error and need no
    special case.

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    forecast : array-like of float, shape (N,)
        Forecast amounts.

    Returns
    -------
    float
        A fraction (0.2 = 20%), from 0 (perfect) up. When ``sum |A| == 0`` (all actuals zero): 0.0 if every
        forecast is 0 too, else NaN.

    Examples
    --------
    >>> wape([100, 200, 0, 100], [110, 150, 20, 100])
    0.2
    >>> wape([0, 0], [0, 0]), wape([0, 0], [0, 5])
    (0.0, nan)
    """
    a, f = _check_amounts({"actual": actual, "forecast": forecast})
    err, scale = np.abs(f - a).sum(), np.abs(a).sum()
    if scale == 0:
        return 0.0 if err == 0 else float("nan")
    return float(err / scale)


def mape(actual: Any, forecast: Any) -> float:
    """Mean absolute percentage error over the rows with a non-zero actual (lower is better).

    ``MAPE = (1 / N') * sum_{i: A_i != 0} |F_i - A_i| / |A_i|``, ``N'`` the number of rows with ``A_i != 0``.

    Zero-safe: rows with a zero actual (where the percentage error is undefined) are left out; `wape` and `smape`
    keep them.

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    forecast : array-like of float, shape (N,)
        Forecast amounts.

    Returns
    -------
    float
        A fraction (0.1 = 10%), from 0 (perfect) up; NaN when every actual is 0.

    Examples
    --------
    >>> round(mape([100, 200, 0, 100], [110, 150, 20, 100]), 6)  # (0.1 + 0.25 + 0) / 3; the row A = 0 is left out
    0.116667
    """
    a, f = _check_amounts({"actual": actual, "forecast": forecast})
    keep = a != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(f[keep] - a[keep]) / np.abs(a[keep])))


def _smape_terms(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per-row ``2 |F - A| / (|F| + |A|)``, 0 where ``F == A == 0``."""
    den = np.abs(f) + np.abs(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den == 0, 0.0, 2.0 * np.abs(f - a) / den)


def smape(actual: Any, forecast: Any) -> float:
    """Symmetric mean absolute percentage error (lower is better).

    ``sMAPE = (1 / N) * sum_i 2 |F_i - A_i| / (|F_i| + |A_i|)``

    with a row where ``F_i == A_i == 0`` counting 0 (a perfect forecast). A zero actual with a non-zero forecast
    counts 2, the maximum.

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    forecast : array-like of float, shape (N,)
        Forecast amounts.

    Returns
    -------
    float
        From 0 (perfect) to 2.

    Examples
    --------
    >>> round(smape([100, 200, 0, 100], [110, 150, 20, 100]), 6)  # (20/210 + 100/350 + 2 + 0) / 4
    0.595238
    """
    a, f = _check_amounts({"actual": actual, "forecast": forecast})
    return float(np.mean(_smape_terms(a, f)))


def _seasonal_scale(y: np.ndarray, season_length: int) -> float:
    """Mean absolute seasonal difference of a series (m = 1 if it is too short; NaN under 2 points)."""
    if len(y) < 2:
        return float("nan")
    m = season_length if len(y) >= season_length + 1 else 1
    return float(np.mean(np.abs(y[m:] - y[:-m])))


def mase(actual: Any, forecast: Any, insample: Any, season_length: int = 1) -> float:
    """Mean absolute scaled error: the mean absolute error over that of a seasonal naive forecast (lower is better).

    ``MASE = mean_i |F_i - A_i| / ((1 / (T - m)) * sum_{t=m+1..T} |y_t - y_{t-m}|)``

    with ``y_1..y_T`` the in-sample series (in time order) and ``m = season_length``; when ``T < m + 1`` the
    scale uses ``m = 1``. Zero actuals are ordinary rows.

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    forecast : array-like of float, shape (N,)
        Forecast amounts.
    insample : array-like of float, shape (T,)
        The series that sets the scale, in time order (usually the history before the forecasts).
    season_length : int
        Periods per season ``m`` (4 for quarters in a year, 1 for the plain naive forecast).

    Returns
    -------
    float
        Below 1 when the forecast errs less than the seasonal naive forecast did in-sample. NaN when `insample`
        has fewer than 2 points; when the scale is 0 (a constant series): 0.0 if every error is 0, else NaN.

    Examples
    --------
    >>> mase([100, 200], [110, 150], insample=[100, 120, 100, 120])  # mean error 30 over mean change 20
    1.5
    """
    a, f = _check_amounts({"actual": actual, "forecast": forecast})
    (y,) = _check_amounts({"insample": insample}, min_length=0)
    m = _check_season_length(season_length)
    err, scale = float(np.mean(np.abs(f - a))), _seasonal_scale(y, m)
    if scale == 0:
        return 0.0 if err == 0 else float("nan")
    return err / scale


def hit_rate(actual: Any, forecast: Any, tolerance: float = 0.10) -> float:
    """Share of rows forecast within a relative tolerance of the actual (higher is better).

    ``hit rate = (1 / N) * #{i : |F_i - A_i| <= tolerance * |A_i|}``

    up to floating-point rounding (a relative slack of 1e-12, so 7.7 against 7 is a hit at 10%). A row with a
    zero actual is a hit if and only if its forecast is 0 too.

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    forecast : array-like of float, shape (N,)
        Forecast amounts.
    tolerance : float
        Relative tolerance, non-negative (0.1 = within 10% of the actual).

    Returns
    -------
    float
        From 0 to 1 (1: every row within the tolerance).

    Examples
    --------
    >>> hit_rate([100, 200, 0, 100], [110, 150, 20, 100])  # rows 1 and 4 are within 10%
    0.5
    """
    a, f = _check_amounts({"actual": actual, "forecast": forecast})
    return float(np.mean(_hits(a, f, _check_tolerance(tolerance))))


def pinball_loss(actual: Any, quantile_forecast: Any, q: float) -> float:
    """Mean pinball (quantile) loss of a forecast of the `q` quantile (lower is better).

    ``L_q = (1 / N) * sum_i max(q (A_i - F_i), (q - 1) (A_i - F_i))``

    An actual above the forecast costs ``q`` per unit, one below it ``1 - q``; the expected loss is smallest for
    the true ``q`` quantile. At ``q = 0.5`` it is half the mean absolute error.

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    quantile_forecast : array-like of float, shape (N,)
        Forecasts of the `q` quantile (e.g. the p90 column for ``q = 0.9``).
    q : float
        Quantile level, strictly between 0 and 1.

    Returns
    -------
    float
        From 0 (perfect) up, in units of the amounts.

    Examples
    --------
    >>> round(pinball_loss([100, 200], [110, 150], q=0.9), 6)  # (0.1 * 10 + 0.9 * 50) / 2
    23.0
    """
    a, f = _check_amounts({"actual": actual, "quantile_forecast": quantile_forecast})
    return float(np.mean(_pinball_terms(a, f, _check_unit_interval("q", q))))


def interval_coverage(actual: Any, lower: Any, upper: Any) -> float:
    """Share of actuals inside their forecast interval (closer to the nominal level is better).

    ``coverage = (1 / N) * #{i : L_i <= A_i <= U_i}``

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    lower, upper : array-like of float, shape (N,)
        Interval bounds (e.g. the p10 and p90 forecasts, a nominal 80% interval), ``lower <= upper``.

    Returns
    -------
    float
        From 0 to 1; a calibrated p10-p90 interval covers about 0.8.

    Raises
    ------
    ValueError
        Invalid input (see `forecast_ratio`), or a row with ``lower > upper``.

    Examples
    --------
    >>> interval_coverage([100, 200, 50], lower=[90, 210, 0], upper=[120, 260, 50])
    0.6666666666666666
    """
    a, lo, hi = _check_amounts({"actual": actual, "lower": lower, "upper": upper})
    _check_interval(lo, hi)
    return float(np.mean((lo <= a) & (a <= hi)))


def winkler_score(actual: Any, lower: Any, upper: Any, alpha: float = 0.2) -> float:
    """Mean Winkler (interval) score: width plus a penalty for actuals outside the interval (lower is better).

    ``W = (1 / N) * sum_i [(U_i - L_i) + (2 / alpha) (L_i - A_i) [A_i < L_i] + (2 / alpha) (A_i - U_i) [A_i > U_i]]``

    for a central ``1 - alpha`` interval; a proper score for the ``alpha / 2`` and ``1 - alpha / 2`` quantiles.

    Parameters
    ----------
    actual : array-like of float, shape (N,)
        Observed amounts.
    lower, upper : array-like of float, shape (N,)
        Interval bounds, ``lower <= upper``.
    alpha : float
        One minus the nominal level of the interval, strictly between 0 and 1 (0.2 for p10-p90).

    Returns
    -------
    float
        From 0 up, in units of the amounts; equal to the mean width when every actual is covered.

    Raises
    ------
    ValueError
        Invalid input, a row with ``lower > upper``, or `alpha` outside (0, 1).

    Examples
    --------
    >>> winkler_score([100, 300], lower=[90, 210], upper=[120, 260], alpha=0.2)  # (30 + 50 + 10 * 40) / 2
    240.0
    """
    a, lo, hi = _check_amounts({"actual": actual, "lower": lower, "upper": upper})
    _check_interval(lo, hi)
    return float(np.mean(_winkler_terms(a, lo, hi, _check_unit_interval("alpha", alpha))))


def crps_samples(actual: Any, samples: Any) -> float:
    """Continuous ranked probability score of sample (ensemble) forecasts, mean over rows (lower is better).

    For a row with actual ``A`` and samples ``x_1..x_S``, the CRPS of their empirical distribution:

    ``CRPS = (1 / S) * sum_j |x_j - A| - (1 / (2 S²)) * sum_j sum_k |x_j - x_k|``

    computed in O(S log S) per row from the sorted samples ``x_(1) <= .. <= x_(S)`` with
    ``sum_j sum_k |x_j - x_k| = 2 * sum_j (2j - S - 1) x_(j)``. This is the CRPS of the empirical distribution
    itself: as an estimate of the CRPS of the distribution the samples were drawn from it is biased upwards by
    ``E|X - X'| / (2S)``. With one sample it is the absolute error; it generalises the absolute error to
    distributions.

    Parameters
    ----------
    actual : float or array-like of float, shape (N,)
        Observed amounts.
    samples : array-like of float, shape (N, S), or shape (S,) for a single row
        Samples of each row's forecast distribution.

    Returns
    -------
    float
        From 0 up, in units of the amounts (the mean of the rows' CRPS).

    Examples
    --------
    >>> crps_samples(100, [90, 110])  # (10 + 10) / 2 - (0 + 20 + 20 + 0) / 8
    5.0
    >>> crps_samples([100, 0], [[90, 110], [0, 0]])
    2.5
    """
    try:
        one_row = np.ndim(samples) == 1
    except ValueError:  # ragged rows: reported by the validator
        one_row = False
    if one_row:
        samples = [samples]
    if np.ndim(actual) == 0:
        actual = [actual]
    a, s = _check_amounts({"actual": actual, "samples": samples}, matrix="samples")
    if s.shape[1] == 0:
        raise ValueError(f"samples needs at least one sample per row, got shape {s.shape}")
    n_samples = s.shape[1]
    s = np.sort(s, axis=1)
    weights = 2.0 * np.arange(1, n_samples + 1) - n_samples - 1.0
    spread = (s @ weights) / n_samples**2  # = (1 / (2 S²)) * sum_j sum_k |x_j - x_k|
    return float(np.mean(np.mean(np.abs(s - a[:, None]), axis=1) - spread))


_NOT_SERIES = ("method", "cutoff", "days_before_period_end", "horizon")
_DEFAULT_QUANTILES = {0.1: "p10", 0.5: "p50", 0.9: "p90"}


def _column_list(name: str, value: Any) -> list[str]:
    """`by` / `series` as a list of column names (None: no column)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise ValueError(f"{name} must be a column name or a list of them, got {value!r}") from None


def _amount_column(df: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column as float64 with NaN where missing; a ValueError for text or infinite values."""
    col = df[column]
    if not (pd.api.types.is_numeric_dtype(col.dtype) or col.isna().all()):
        raise ValueError(f"column {column!r} must hold numbers, got dtype {col.dtype}")
    x = col.to_numpy(dtype="float64", na_value=np.nan)
    inf = np.isinf(x)
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        raise ValueError(f"column {column!r} must hold finite numbers; row {df.index[i]!r} is {x[i]}")
    return x


def _series_scales(df: pd.DataFrame, series: list[str], period: str, y: np.ndarray, season_length: int) -> np.ndarray:
    """The MASE scale of each row's series (see `evaluate`), aligned with the rows of `df`; NaN if undefined."""
    if series:
        sid = df.groupby(series, sort=False, dropna=False, observed=True).ngroup().to_numpy()
    else:
        sid = np.zeros(len(df), dtype=np.int64)
    n_series = int(sid.max()) + 1 if len(sid) else 0
    known = ~np.isnan(y) & df[period].notna().to_numpy()
    rows = np.flatnonzero(known)
    t = pd.DataFrame({"sid": sid[rows], "period": df[period].to_numpy()[rows], "y": y[rows], "row": rows})
    t = t.drop_duplicates(["sid", "period", "y"])
    clash = t.duplicated(["sid", "period"], keep=False).to_numpy()
    if clash.any():
        first = t[clash].iloc[0]
        values = t.loc[clash & (t["sid"] == first["sid"]).to_numpy() & (t["period"] == first["period"]).to_numpy()]
        where = f"series {dict(df.iloc[int(first['row'])][series])} " if series else ""
        raise ValueError(
            f"{where}has different actuals in period {first['period']!r}: {sorted(values['y'].tolist())}; the MASE "
            f"scale needs one actual per series and period: pass series=[...] naming the columns of a series"
        )
    t = t.sort_values(["sid", "period"], kind="stable")
    s, v = t["sid"].to_numpy(), t["y"].to_numpy()

    def seasonal_diff(m: int) -> np.ndarray:
        d = np.full(len(v), np.nan)
        if len(v) > m:
            d[m:] = np.where(s[m:] == s[:-m], np.abs(v[m:] - v[:-m]), np.nan)
        return d

    points = np.bincount(s, minlength=n_series)
    d = np.where(points[s] >= season_length + 1, seasonal_diff(season_length), seasonal_diff(1))
    ok = ~np.isnan(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.bincount(s[ok], weights=d[ok], minlength=n_series) / np.bincount(s[ok], minlength=n_series)
    return scale[sid]


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den``, NaN where ``den == 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


# ------------------------------------------------------------------------------------------------ the registry
class _Rows:
    """The rows `evaluate` scores (no missing value), with the per-group sums the metrics share (each once)."""

    def __init__(
        self,
        codes: np.ndarray,
        n_groups: int,
        values: Mapping[str, np.ndarray],
        q_values: Mapping[float, np.ndarray],
        tolerance: float,
        alpha: float,
        scale: Callable[[], np.ndarray],
    ) -> None:
        self.codes, self.n_groups = codes, n_groups
        self.a = values["actual"]
        self.f = values.get("forecast")
        self.lo, self.hi = values.get("lower"), values.get("upper")
        self.q_values = q_values
        self.tolerance, self.alpha = tolerance, alpha
        self.scale = scale  # the MASE scale of each row (computed only when asked for)
        self.n = self.total()

    def total(self, w: np.ndarray | None = None) -> np.ndarray:
        """Per group: the sum of `w` over its rows (None: the number of rows)."""
        return np.bincount(self.codes, weights=w, minlength=self.n_groups).astype("float64")

    @cached_property
    def abs_err(self) -> np.ndarray:
        return self.total(np.abs(self.f - self.a))

    @cached_property
    def abs_a(self) -> np.ndarray:
        return self.total(np.abs(self.a))

    @cached_property
    def sum_a(self) -> np.ndarray:
        return self.total(self.a)


def _grouped_forecast_ratio(r: _Rows) -> np.ndarray:
    return _divide(r.total(r.f), r.sum_a)


def _grouped_absolute_accuracy(r: _Rows) -> np.ndarray:
    return 1.0 - _divide(r.abs_err, r.abs_a)


def _grouped_bias(r: _Rows) -> np.ndarray:
    return _divide(r.total(r.f - r.a), r.sum_a)


def _grouped_wape(r: _Rows) -> np.ndarray:
    return np.where((r.abs_a == 0) & (r.abs_err == 0) & (r.n > 0), 0.0, _divide(r.abs_err, r.abs_a))


def _grouped_mape(r: _Rows) -> np.ndarray:
    nonzero = r.a != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(nonzero, np.abs(r.f - r.a) / np.abs(r.a), 0.0)
    return _divide(r.total(terms), r.total(nonzero.astype("float64")))


def _grouped_smape(r: _Rows) -> np.ndarray:
    return _divide(r.total(_smape_terms(r.a, r.f)), r.n)


def _grouped_hit_rate(r: _Rows) -> np.ndarray:
    return _divide(r.total(_hits(r.a, r.f, r.tolerance).astype("float64")), r.n)


def _grouped_mase(r: _Rows) -> np.ndarray:
    scale = r.scale()
    err = np.abs(r.f - r.a)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(np.isnan(scale), np.nan, np.where(err == 0, 0.0, err / scale))
    result = _divide(r.total(terms), r.n)
    return np.where(np.isinf(result), np.nan, result)


def _grouped_pinball(r: _Rows) -> np.ndarray:
    terms = sum(_pinball_terms(r.a, x, q) for q, x in r.q_values.items()) / len(r.q_values)
    return _divide(r.total(terms), r.n)


def _grouped_coverage(r: _Rows) -> np.ndarray:
    return _divide(r.total(((r.lo <= r.a) & (r.a <= r.hi)).astype("float64")), r.n)


def _grouped_winkler(r: _Rows) -> np.ndarray:
    return _divide(r.total(_winkler_terms(r.a, r.lo, r.hi, r.alpha)), r.n)


@dataclass(frozen=True)
class Metric:
    """One accuracy metric of a long table of forecasts: what `evaluate`, leaderboards and report tables read.

    Attributes
    ----------
    name : str
        The column `evaluate` writes (``"wape"``).
    label : str
        The name a reader sees (``"WAPE"``).
    definition : str
        One sentence, printed beside the numbers.
    direction : {"lower", "higher", "closer"}
        Which values are better: the lower, the higher, or the closer to `ideal`.
    units : {"percent", "ratio", "amount"}
        ``"percent"``: a fraction shown as a percentage (0.125 -> 12.5%); ``"ratio"``: a plain number (MASE);
        ``"amount"``: in units of the forecast amounts.
    kind : {"point", "interval", "quantile"}
        What it scores, and so the columns it needs: the point forecast, the interval bounds, or the quantiles.
    function : callable
        The array function of the same idea (``function(actual, forecast)`` for most point metrics; see each).
    grouped : callable
        Per group of `evaluate`'s rows: the metric from the shared per-group sums (``grouped(rows) -> array``).
    ideal : float, optional
        The best value, for ``direction="closer"`` (0 for bias, 1 for the forecast ratio, 0.8 for the coverage of
        a P10-P90 interval).
    needs_series : bool
        Needs the series and period of each row (MASE's scale).

    Examples
    --------
    >>> wape = METRICS["wape"]
    >>> wape.label, wape.direction, wape.units, wape.kind, wape.better
    ('WAPE', 'lower', 'percent', 'point', 'lower is better')
    >>> wape.format(0.123), METRICS["bias"].better
    ('12.3%', 'closer to 0 is better')
    >>> wape.function(np.array([100.0, 200.0]), np.array([110.0, 170.0]))  # (10 + 30) / 300
    0.13333333333333333
    """

    name: str
    label: str
    definition: str
    direction: Literal["lower", "higher", "closer"]
    units: Literal["percent", "ratio", "amount"]
    kind: Literal["point", "interval", "quantile"]
    function: Callable[..., float]
    grouped: Callable[[_Rows], np.ndarray]
    ideal: float | None = None
    needs_series: bool = False

    @property
    def better(self) -> str:
        """Which values are better, in words (``"closer to 0.8 is better"``)."""
        if self.direction == "closer":
            return f"closer to {self.ideal:g} is better"
        return f"{self.direction} is better"

    def rank_key(self, values: pd.Series) -> pd.Series:
        """Sort key of values of the metric: the smallest key is the best value.

        Examples
        --------
        >>> METRICS["coverage"].rank_key(pd.Series([0.5, 0.78, 0.95])).round(2).tolist()
        [0.3, 0.02, 0.15]
        """
        if self.direction == "higher":
            return -values
        if self.direction == "closer":
            return (values - self.ideal).abs()
        return values

    def format(self, value: float) -> str:
        """A value as a sentence shows it: a percentage (``12.5%``) or three significant digits (``1,230``).

        Examples
        --------
        >>> METRICS["wape"].format(0.1234), METRICS["pinball"].format(312.4)
        ('12.3%', '312')
        """
        return f"{value:.1%}" if self.units == "percent" else f"{value:,.3g}"


#: Every metric of `evaluate`, in its documented order: add an entry here to add a metric.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            name="forecast_ratio",
            label="forecast ratio",
            definition=(
                "Forecast ratio: total forecast over total actual, sum(F) / sum(A), the 'forecast accuracy %' many "
                "CRMs print; 1 is the right total, above 1 an over-forecast, closer to 1 is better."
            ),
            direction="closer",
            ideal=1.0,
            units="percent",
            kind="point",
            function=forecast_ratio,
            grouped=_grouped_forecast_ratio,
        ),
        Metric(
            name="absolute_accuracy",
            label="absolute accuracy",
            definition=(
                "Absolute accuracy: 1 - sum|F - A| / sum|A|, one minus the WAPE, the share of the total actual "
                "forecast right (it can be negative); 1 is perfect, higher is better."
            ),
            direction="higher",
            units="percent",
            kind="point",
            function=absolute_accuracy,
            grouped=_grouped_absolute_accuracy,
        ),
        Metric(
            name="bias",
            label="over/under-forecast",
            definition=(
                "Over/under-forecast (bias): sum(F - A) / sum(A), the net over-forecast (positive) or "
                "under-forecast (negative) as a share of the total actual; 0 is unbiased, closer to 0 is better."
            ),
            direction="closer",
            ideal=0.0,
            units="percent",
            kind="point",
            function=bias,
            grouped=_grouped_bias,
        ),
        Metric(
            name="wape",
            label="WAPE",
            definition=(
                "WAPE (weighted absolute percentage error): sum|F - A| / sum|A|, the total absolute error as a "
                "share of the total actual; 0 is perfect, lower is better."
            ),
            direction="lower",
            units="percent",
            kind="point",
            function=wape,
            grouped=_grouped_wape,
        ),
        Metric(
            name="mape",
            label="MAPE",
            definition=(
                "MAPE (mean absolute percentage error): the mean of |F - A| / |A| over the rows with a non-zero "
                "actual; 0 is perfect, lower is better."
            ),
            direction="lower",
            units="percent",
            kind="point",
            function=mape,
            grouped=_grouped_mape,
        ),
        Metric(
            name="smape",
            label="sMAPE",
            definition=(
                "sMAPE (symmetric MAPE): the mean of 2|F - A| / (|F| + |A|), from 0 (perfect) to 2, a row with F = "
                "A = 0 counting 0; lower is better."
            ),
            direction="lower",
            units="percent",
            kind="point",
            function=smape,
            grouped=_grouped_smape,
        ),
        Metric(
            name="mase",
            label="MASE",
            definition=(
                "MASE (mean absolute scaled error): mean|F - A| divided by the mean absolute seasonal change of the "
                "series' actuals, mean|y_t - y_(t-m)|; below 1 errs less than the typical seasonal change, lower is "
                "better."
            ),
            direction="lower",
            units="ratio",
            kind="point",
            function=mase,
            grouped=_grouped_mase,
            needs_series=True,
        ),
        Metric(
            name="hit_rate",
            label="hit rate",
            definition=(
                "Hit rate: the share of rows with |F - A| <= tolerance x |A| (within 10% of the actual by default); "
                "1 is perfect, higher is better."
            ),
            direction="higher",
            units="percent",
            kind="point",
            function=hit_rate,
            grouped=_grouped_hit_rate,
        ),
        Metric(
            name="pinball",
            label="pinball loss",
            definition=(
                "Pinball loss: the mean over rows and quantile levels q of max(q (A - F_q), (q - 1)(A - F_q)), the "
                "accuracy of the quantile forecasts (p10, p50, p90) in units of the amount; lower is better."
            ),
            direction="lower",
            units="amount",
            kind="quantile",
            function=pinball_loss,
            grouped=_grouped_pinball,
        ),
        Metric(
            name="coverage",
            label="interval coverage",
            definition=(
                "Interval coverage: the share of rows with lower <= A <= upper; closer to the interval's nominal "
                "level (0.8 for p10 to p90) is better."
            ),
            direction="closer",
            ideal=0.8,
            units="percent",
            kind="interval",
            function=interval_coverage,
            grouped=_grouped_coverage,
        ),
        Metric(
            name="winkler",
            label="Winkler score",
            definition=(
                "Winkler score: the mean of the interval width U - L plus 2 / alpha times the distance by which A "
                "falls outside [L, U] (alpha = 0.2 for p10 to p90); lower is better."
            ),
            direction="lower",
            units="amount",
            kind="interval",
            function=winkler_score,
            grouped=_grouped_winkler,
        ),
    )
}

#: A one-sentence definition of each `evaluate` metric, for reports (a view of `METRICS`).
METRIC_DEFINITIONS: dict[str, str] = {name: m.definition for name, m in METRICS.items()}


def evaluate(
    df: pd.DataFrame,
    metrics: str | Sequence[str] = ("wape", "bias", "mape", "coverage"),
    by: str | Sequence[str] | None = None,
    *,
    actual: str = "actual",
    forecast: str = "forecast",
    lower: str = "p10",
    upper: str = "p90",
    quantiles: Mapping[float, str] | None = None,
    period: str = "period",
    series: str | Sequence[str] | None = None,
    season_length: int = 4,
    tolerance: float = 0.10,
    alpha: float | None = None,
) -> pd.DataFrame:
    """Accuracy metrics of a long table of forecasts (one row per forecast), per group.

    Each metric is the array function of the same idea, computed over the rows of a group (see
    `METRICS` for each one's definition, direction and units):

    - ``forecast_ratio``, ``absolute_accuracy``, ``bias``, ``wape``, ``mape``, ``smape``, ``hit_rate`` (with
      `tolerance`): of the `forecast` column against the `actual` column;
    - ``mase``: ``mean|F - A|`` over the group divided by its series' scale, see below;
    - ``pinball``: `pinball_loss` averaged over the quantile levels of `quantiles`;
    - ``coverage`` (`interval_coverage`) and ``winkler`` (`winkler_score` with `alpha`) of the interval from the
      `lower` to the `upper` column.

    Missing values are never dropped silently: a row whose actual or any column a requested metric needs is
    missing (the forecast for point metrics and ``mase``, the bounds for interval metrics, the quantile columns
    for ``pinball``) is left out of every metric of the call and counted in ``n_missing``, so all metrics of a
    row are computed over the same ``n`` rows. Call `evaluate` once per metric to use each metric's own rows.

    MASE scale: each row belongs to a series, identified by the `series` columns (default: the `by` columns
    other than `period` and ``method``, ``cutoff``, ``days_before_period_end``, ``horizon``, which name
    forecasts of one series, not different series; none: the whole table is one series). Per series, the
    distinct ``(period, actual)`` pairs of the rows with a known actual and period are ordered by period, and the
    scale is their mean absolute seasonal difference ``mean|y_t - y_{t-m}|``, ``m = season_length`` (``m = 1``
    for a series with fewer than ``m + 1`` periods; consecutive known periods count as adjacent). So the scale
    comes from the series' own actuals over the table's periods, not from the history before each forecast. A
    group's MASE is ``mean_i |F_i - A_i| / scale_i`` (one series per group: ``mean|F - A| / scale``); it is NaN
    when a series has fewer than 2 periods, and with a zero scale it is 0 if every error is 0, else NaN.

    Parameters
    ----------
    df : pandas.DataFrame
        The forecasts, one row each.
    metrics : str or sequence of str
        Metric names, in the order of the output columns: the keys of `METRICS`.
    by : str or sequence of str, optional
        Columns to group by (missing values form a group of their own); None: one group.
    actual, forecast, lower, upper, period : str
        Column names: the observed amount, the point forecast, the interval bounds and the period of the actual
        (``period`` is used by ``mase`` only: any sortable values, e.g. dates or "2024Q1").
    quantiles : mapping of float to str, optional
        ``{quantile level: column}`` for ``pinball``; default ``{0.1: "p10", 0.5: "p50", 0.9: "p90"}``
        restricted to the columns present in `df`.
    series : str or sequence of str, optional
        Columns that identify a series for the ``mase`` scale (see above).
    season_length : int
        ``m`` of the ``mase`` scale (4: quarters in a year).
    tolerance : float
        Relative tolerance of ``hit_rate`` (0.1: within 10%).
    alpha : float, optional
        ``alpha`` of ``winkler``, one minus the interval's nominal level; None means 0.2 (p10 to p90).

    Returns
    -------
    pandas.DataFrame
        One row per group, sorted by `by`: the `by` columns, ``n`` (rows used), ``n_missing`` (rows left out
        because a value they need is missing), then one float column per metric; NaN where a metric cannot be
        computed for the group (no rows, or a zero denominator, as in the array functions).

    Raises
    ------
    ValueError
        An unknown metric name or a missing column (the message lists the valid ones), a column that does not
        hold numbers or holds an infinite value, a row with ``lower > upper``, an invalid parameter, or (for
        ``mase``) two different actuals for one series and period.

    Examples
    --------
    >>> df = pd.DataFrame(
    ...     {
    ...         "team": ["A", "A", "B", "B"],
    ...         "actual": [100.0, 200.0, 50.0, 80.0],
    ...         "forecast": [110.0, 150.0, None, 80.0],
    ...         "p10": [90.0, 160.0, 40.0, 70.0],
    ...         "p90": [120.0, 190.0, 60.0, 90.0],
    ...     }
    ... )
    >>> evaluate(df, ["wape", "bias", "coverage"], by="team").round(4).values.tolist()
    [['A', 2, 0, 0.2, -0.1333, 0.5], ['B', 1, 1, 0.0, 0.0, 1.0]]
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ValueError(f"metrics is empty; valid names: {', '.join(METRICS)}")
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; valid names: {', '.join(METRICS)}")
    names = list(dict.fromkeys(names))
    chosen = [METRICS[name] for name in names]
    kinds = {x.kind for x in chosen}
    by_cols = _column_list("by", by)
    reserved = [c for c in by_cols if c in ("n", "n_missing", *names)]
    if reserved:
        raise ValueError(f"by column {reserved[0]!r} clashes with an output column; rename it")
    tol = _check_tolerance(tolerance)
    level = 0.2 if alpha is None else _check_unit_interval("alpha", alpha)
    m = _check_season_length(season_length)

    # the value columns each metric needs, and the other columns
    value_cols = {"actual": actual}
    if "point" in kinds:
        value_cols["forecast"] = forecast
    if "interval" in kinds:
        value_cols.update(lower=lower, upper=upper)
    q_cols: dict[float, str] = {}
    if "quantile" in kinds:
        first = next(x.name for x in chosen if x.kind == "quantile")
        if quantiles is None:
            q_cols = {q: c for q, c in _DEFAULT_QUANTILES.items() if c in df.columns}
            if not q_cols:
                raise ValueError(
                    f"{first} needs quantile columns, and none of {list(_DEFAULT_QUANTILES.values())} is in df; "
                    f"pass quantiles={{level: column}}; columns: {list(df.columns)}"
                )
        else:
            q_cols = {_check_unit_interval("quantile level", q): c for q, c in dict(quantiles).items()}
            if not q_cols:
                raise ValueError("quantiles is empty; pass {quantile level: column}, e.g. {0.5: 'p50'}")
    needs_series = any(x.needs_series for x in chosen)
    series_cols: list[str] = []
    if needs_series:
        series_cols = (
            _column_list("series", series)
            if series is not None
            else [c for c in by_cols if c != period and c not in _NOT_SERIES]
        )
    needed = [*by_cols, *value_cols.values(), *q_cols.values()]
    if needs_series:
        needed += [*series_cols, period]
    for column in dict.fromkeys(needed):
        if column not in df.columns:
            raise ValueError(f"column {column!r} is not in df; columns: {list(df.columns)}")

    # rows with every needed value, and their group
    values = {role: _amount_column(df, column) for role, column in value_cols.items()}
    q_values = {q: _amount_column(df, column) for q, column in q_cols.items()}
    used = np.ones(len(df), dtype=bool)
    for x in [*values.values(), *q_values.values()]:
        used &= ~np.isnan(x)
    if by_cols:
        groups = df.groupby(by_cols, sort=True, dropna=False, observed=True)
        codes = groups.ngroup().to_numpy()
        out = groups.size().index.to_frame(index=False)
    else:
        codes = np.zeros(len(df), dtype=np.int64)
        out = pd.DataFrame(index=range(1))
    n_groups = len(out)
    rows = _Rows(
        codes[used],
        n_groups,
        {role: x[used] for role, x in values.items()},
        {q: x[used] for q, x in q_values.items()},
        tol,
        level,
        lambda: _series_scales(df, series_cols, period, values["actual"], m)[used],
    )
    out["n"] = rows.n.astype(np.int64)
    out["n_missing"] = np.bincount(codes, minlength=n_groups).astype(np.int64) - out["n"].to_numpy()

    if "lower" in values:
        lo, hi = rows.lo, rows.hi
        bad = lo > hi
        if bad.any():
            i = int(np.flatnonzero(used)[np.flatnonzero(bad)[0]])
            raise ValueError(
                f"column {lower!r} must not exceed column {upper!r}; row {df.index[i]!r} has {lo[bad][0]:g} > "
                f"{hi[bad][0]:g}"
            )
    for metric in chosen:
        out[metric.name] = metric.grouped(rows).astype("float64")
    return out
