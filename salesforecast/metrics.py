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
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "BrierDecomposition",
    "alift",
    "brier_decomposition",
    "brier_score",
    "calibration_table",
    "cumulative_gains",
    "ks_statistic",
    "lift_table",
    "log_loss",
    "pr_auc",
    "roc_auc",
    "score_table",
    "top_decile_lift",
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
