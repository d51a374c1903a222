"""Lead scoring: calibrated conversion probabilities for prospects, with tiers and plain-words reasons.

`LeadScoringModel` learns ``P(converted | features)`` from a table of past leads (or any binary outcome: a call
that ends in a subscription, a deal that is won). It follows scikit-learn's estimator contract and takes a pandas
DataFrame as it comes out of a CRM: strings, numbers with gaps, dates.

Method
------
Preprocessing (learned in `fit`, applied in every method)
    Numeric columns (numbers, booleans, nullable types, time spans in days) keep their value; infinities count as
    missing. Text and categorical columns keep the levels with at least ``rare_level_min`` rows (at most
    ``max_levels`` of them, the most frequent); the others are grouped into one level ``other``, and a level not
    seen in `fit` is read as ``other`` too (as missing when nothing was grouped). A missing text value is its own
    level, ``(missing)``. Datetime columns become parts: month and day of week (categorical) and, when a
    ``date_column`` is given, the age in days at that date (``date - value``; negative when the value is after
    the date, which deserves a look: it may not be known yet when the lead is scored). ``datetimes="error"``
    refuses them instead, naming the columns. The month and day of week stay only when they improve the
    validation score (``date_parts="auto"``, see below). Text columns whose values are all different (ids,
    e-mails, free text) cannot generalise: they are dropped with a warning naming them (``id_columns="error"``
    refuses them). Columns with a single value are dropped. Everything dropped is listed in ``dropped_columns_``
    with the reason.
Date parts
    Month and weekday effects learned from a year or less rarely carry over (on a real marketing funnel they cost
    about 0.05 AUC: 0.62 against 0.67 without). With ``date_parts="auto"`` the base model is fitted on the
    training rows with and without them, and they stay only when the mean per-row decrease of the validation log
    loss exceeds one standard error of that paired difference; both scores are in ``date_parts_scores_``.
Estimators
    ``"hgb"`` (default): scikit-learn's `~sklearn.ensemble.HistGradientBoostingClassifier` with native
    categorical splits and native missing values (a missing value is sent to whichever side of each split fits
    the data: it learns what median imputation plus a missing indicator would, without assuming either); small
    trees (8 leaves, at least 100 rows a leaf, L2 penalty 1) and learning rate 0.1 (0.3 from 500,000 rows learnt
    from on, i.e. with ``max_rows`` raised or None, where a third as many trees keep scoring fast at a negligible
    cost); trees are added until 20 more improve the validation log loss by less than 1e-4 (at most 1000). Small
    additive trees suit lead data, where most of the signal is a sum of feature effects: on the synthetic leads
    of `salesforecast.datasets.generate` they recover the true probabilities more closely than scikit-learn's
    defaults (31 leaves, 20 rows a leaf).
    ``"logistic"``: L2-regularised `~sklearn.linear_model.LogisticRegression` (``C=1``) on one-hot levels and
    standardised numbers, missing numbers imputed with the training median plus a 0/1 missing indicator for the
    columns that had gaps. Non-negative numbers with a long right tail (skewness above 1: company sizes, counts
    of e-mails or visits) enter as ``log(1 + x)``, whose effect is usually closer to linear in the log-odds.
    ``estimator_params`` overrides any of these settings.
Validation rows and refit
    A share ``validation_size`` of the rows is held out. With ``validation="time"`` (the default) they are the
    latest rows: by ``date_column`` when it is given (rows sharing the boundary date all go to validation), else
    the last rows in the order given (so pass time-ordered rows, as most exports are). ``validation="random"``
    draws a stratified random sample instead; use it only when the rows have no time order that matters. The
    base model is fitted on the other rows; the validation rows pick the number of trees (the one with the lowest
    validation log loss), the calibration and the importances (``summary``). With ``refit=True`` the base model
    is then fitted again on all rows with those settings, so the latest rows, often the most relevant, are not
    lost to validation; the calibration map learned on the validation rows is kept. ``refit="auto"`` (the
    default) refits below 200,000 rows; above, the held-out share is large in itself and a refit would double
    the fitting time.
Sampling
    Beyond ``max_rows`` rows (250,000 by default) the model learns from a random sample of that many
    (`stratified_sample`): every outcome is drawn at the same rate, so the sample keeps the outcome rate and the
    time order of all rows, and each sampled row carries the weight ``(N_k / N) / (n_k / n)`` of its outcome ``k``
    (``N_k`` of the ``N`` rows, ``n_k`` of the ``n`` sampled), which makes the weighted outcome rate exactly that
    of all rows; the weights (within rounding of 1) go into the base model's and the calibration's fits. The
    features' levels, the leakage check, the validation split, the calibration and the importances are learned on
    the sample; the quantile tiers cut the scores of all rows given (a random 100,000 of them). The same rows
    and seed give the same sample. ``n_rows_in_`` and ``n_rows_fit_`` say how many rows were given and learned
    from (`salesforecast.leads.model_notes` tells the reader). On the leads of a generated CRM of a million
    deals the sample scored the later leads as well as all 1.1 million training leads did (holdout ROC AUC 0.8116
    against 0.8115; benchmarks/README.md), with a bounded fit time and memory whatever the number of leads.
Calibration
    A monotone map from the base model's log-odds ``s`` to a probability, learned on the validation rows:
    ``"sigmoid"`` (Platt: ``1 / (1 + exp(-(a s + b)))``), ``"isotonic"`` (a non-decreasing, piecewise linear fit)
    or None (the base model's own probability). ``"auto"`` fits both on the first half of the validation rows
    and scores them on the second half (time order kept; with ``validation="random"``, out-of-fold over 5
    stratified folds); it keeps sigmoid unless isotonic's Brier score is lower by more than one standard error
    of the paired difference, then refits it on all validation rows. On a few thousand rows isotonic's freedom
    mostly fits noise: on the synthetic leads, choosing by the lower score alone sometimes picked isotonic, and
    its probabilities were then further from the truth (mean absolute error 0.031 against 0.026). The held-out
    scores are in ``calibration_scores_``.
Leakage guard
    ``exclude`` drops columns by name. `fit` computes each feature's single-feature AUC on (up to 200,000) rows:
    numbers by rank (Mann-Whitney) AUC in both directions, with missing values put first and then last; levels
    by the AUC of their outcome rate. A feature with AUC above ``leakage_auc`` alone separates the classes,
    which real predictors rarely do: it is usually recorded after, or because of, the outcome (a conversion
    date, a status, a tag set by the sales team, a closing rep's id filled only for converted leads). With
    ``leakage="drop"`` (the default) such a column is left out of the fit, listed in ``dropped_leaky_`` with its
    AUC, and `fit` warns with `LeakageWarning` saying so; ``leakage="warn"`` keeps it and only warns. The AUCs
    of every candidate feature are in ``feature_auc_``.
Tiers
    ``tier_method="quantile"`` cuts at quantiles of the scores of the training rows (a random 100,000 of them on
    larger data): equal shares by default, or ``tier_cuts``, the cumulative shares of the top tiers (e.g.
    ``(0.1, 0.3, 0.6)``). ``"probability"`` cuts at fixed probabilities (``tier_cuts``, decreasing, e.g.
    ``(0.5, 0.2, 0.05)``). The first tier holds the highest scores; a score equal to a cut gets the better tier.
    Tied scores (a yes/no feature, a model that learned nothing) can put quantile cuts on one value, so that a
    tier would hold no training lead and "A" all of them: such tiers merge with the next, `fit` warns with
    `TierWarning`, and fewer tiers are used (``tier_thresholds_`` lists them).
Explanations
    A feature's effect on a lead is the change in the base model's predicted log-odds when the feature's value
    is replaced by its reference value (the training median of a number, the most frequent level of a category):
    ``effect_j(x) = f(x) - f(x with x_j = reference_j)``. For ``"logistic"`` it is exact and additive:
    ``coefficient x (value - reference)`` summed over the feature's columns. For ``"hgb"`` it is computed by
    re-prediction, vectorised over all features and over rows in batches (``n_features + 1`` predictions per
    row); interactions make it an approximation (the effects need not sum to the total). The strongest effects
    become reasons such as ``"lead_source = Referral raises the odds"``. Calibration is monotone, so it does not
    change the direction of a reason. Values that explain nothing to a reader are never reasons, though the
    score uses them: identifiers (a column named like ``*_id``, or whose values look like hashes, UUIDs or
    ``ACC-00042``), columns whose rows are mostly in rare values (``not_reasons_``), and a rare or new level.
Is it better than chance?
    `auc_interval` gives the ROC AUC with DeLong's interval; `salesforecast.leads.check_holdout` uses it on a
    time-honest holdout and warns (`WeakModelWarning`) when the interval includes 0.5 or the conversions are too
    few to tell. `fit` warns too when the validation AUC is below 0.55.
Importance (``summary``)
    Permutation importance on (up to ``importance_rows``) validation rows with the base model fitted without
    them: the drop in AUC and the rise in log loss when a feature's column is shuffled (3 shuffles), the mean
    absolute effect (explanations above, on up to 2,000 of those rows) and the single-feature AUC. Computed
    the first time ``summary`` is read, not in `fit`.
Rolling origin
    `LeadScoringModel.rolling_origin` replays how the model would have done in production: rows in time order,
    ``n_splits`` consecutive test blocks at the end, and before each block a fresh model fitted on all earlier
    rows (an expanding window).

Metrics (``evaluate``, ``rolling_origin``) come from `salesforecast.metrics.score_table`: ``n``, ``base_rate``,
``roc_auc``, ``pr_auc`` (average precision), ``brier``, ``log_loss``, ``top_decile_lift`` (conversion rate of the
best-scored 10% over the base rate), ``alift`` (area under the cumulative gains curve: x the share of leads
contacted best first, y the share of conversions reached; 0.5 for a random order, ``1 - base_rate / 2`` for a
perfect one) and ``ks`` (the largest gap between the score distributions of converted and other leads).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from salesforecast.metrics import score_table
from salesforecast.models.activity_features import feature_label

__all__ = [
    "MAX_ROWS",
    "LeadScoringModel",
    "LeakageWarning",
    "TierWarning",
    "WeakModelWarning",
    "auc_interval",
    "stratified_sample",
]

#: Label of the level that groups rare and unseen levels.
OTHER = "other"
#: Label of a missing text value.
MISSING = "(missing)"
#: Rows used by the leakage check (a random sample beyond it).
_LEAKAGE_ROWS = 200_000
#: Validation rows whose explanations give ``mean_abs_effect`` in ``summary``.
_EFFECT_ROWS = 2_000
#: Rows at or above which ``refit="auto"`` does not refit (the 20% held out is then large, and refitting doubles the
#: fitting time).
_REFIT_ROWS = 200_000
#: Training rows (a random sample beyond it) whose scores give the quantile tiers.
_TIER_ROWS = 100_000
#: Default of ``max_rows``: the rows a fit learns from at most (a sample stratified by outcome beyond it). On the
#: leads of a generated CRM of 1M deals (1,114,120 training leads, 724,768 later ones) the holdout ROC AUC of a
#: model fitted on this many was 0.8116, against 0.8115 fitted on all of them (0.8100 on 100,000; 0.8108 on
#: 500,000), with the two fits of report 03 in about 10 s each (benchmarks/README.md, "Lead scoring on a sample").
MAX_ROWS = 250_000
#: Shuffles per feature of the permutation importance.
_REPEATS = 3
#: Stacked rows per batch of the re-prediction attribution (rows x (features + 1)).
_ATTRIBUTION_BATCH = 200_000
#: Fewer conversions than this among the training rows and a weak validation is blamed on too little data (the same
#: rule as `salesforecast.leads.MIN_TRAIN_CONVERSIONS`).
_FEW_CONVERSIONS = 30
#: `fit` warns when the validation ROC AUC is below this.
_WEAK_AUC = 0.55
#: Probabilities are kept inside [_EPS, 1 - _EPS] (log loss stays finite).
_EPS = 1e-6
#: Below this many rows the trees are grown and evaluated on one thread: OpenMP's start-up and spin-waits cost
#: more than they save on small data, and much more on a busy machine (a 3,000-row fit: 0.35 s against 2.9 s).
_PARALLEL_ROWS = 100_000
#: Column names of identifiers (``lead_id``, ``owner key``, ``ownerId``): their values are never reasons.
_ID_NAME = re.compile(r"(?i:(^|[_\s.\-])(id|key|uuid|guid|hash)$)|[a-z](Id|ID|Key)$")
#: Values that look like machine identifiers: hex hashes and UUIDs, or a short prefix and a long number.
_ID_VALUE = re.compile(r"^[0-9a-fA-F\-]{16,}$|^[A-Za-z]{0,6}[-_]?\d{4,}$")
#: A text column whose distinct values are this share or more id-like is an identifier (no reasons).
_ID_VALUE_SHARE = 0.8
#: A text column with more than this share of its rows in rare levels (grouped into ``other``) gives no reasons.
_RARE_ROW_SHARE = 0.5
#: Date parts whose place in the model the validation score decides (``date_parts="auto"``).
_CALENDAR_PARTS = ("month", "day_of_week")
#: Training rows (a random sample beyond it) on which ``date_parts="auto"`` compares the model with and without them.
_DATE_PART_ROWS = 100_000
_MONTHS = np.array(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], dtype=object)
_WEEKDAYS = np.array(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], dtype=object)
#: From this many training rows on, the default learning rate is `_LARGE_LEARNING_RATE`: that much data supports
#: larger steps, and a third as many trees keeps scoring a million rows within seconds (measured in
#: benchmarks/lead_scoring_speed.py: AUC 0.786 against 0.788 at 1M rows).
_LARGE_ROWS = 500_000
_LARGE_LEARNING_RATE = 0.3
_HGB_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 1000,
    "max_leaf_nodes": 8,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    "n_iter_no_change": 20,
    "tol": 1e-4,
}
_LOGISTIC_DEFAULTS: dict[str, Any] = {"C": 1.0, "max_iter": 2000}


def _threads(n_rows: int) -> Any:
    """A context that keeps OpenMP to one thread for small data (see `_PARALLEL_ROWS`)."""
    return threadpool_limits(1, user_api="openmp") if n_rows < _PARALLEL_ROWS else contextlib.nullcontext()


class LeakageWarning(UserWarning):
    """A feature alone separates the outcomes: it may be recorded after (or because of) the outcome."""


class WeakModelWarning(UserWarning):
    """The model ranks leads no better than chance, or rests on too few conversions to tell."""


class TierWarning(UserWarning):
    """Scores tie so often that the tiers asked for cannot be formed: fewer tiers are used."""


# ------------------------------------------------------------------------------------------------ metrics
def _rank_auc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUC of each column of `scores` (n, k) for outcomes `y` (0/1): Mann-Whitney with average ranks for ties."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return np.full(scores.shape[1], np.nan)
    ranks = rankdata(scores, axis=0)
    return (ranks[y == 1].sum(axis=0) - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def auc_interval(y: Any, p: Any, level: float = 0.95) -> tuple[float, float, float]:
    """ROC AUC of scores `p` for 0/1 outcomes `y`, with DeLong's confidence interval.

    DeLong, DeLong & Clarke-Pearson (1988): each converted lead's *placement* ``V10`` is the share of the other
    leads scored below it (ties count half), each other lead's ``V01`` the share of converted leads scored above
    it; the AUC is the mean of either, and its variance ``var(V10) / m + var(V01) / n`` (``m`` converted, ``n``
    others). The interval is ``AUC +- z sd``, clipped to [0, 1]. It rests on a normal approximation that needs a
    few tens of conversions (see `salesforecast.leads.MIN_HOLDOUT_CONVERSIONS`).

    Parameters
    ----------
    y : array-like
        Outcomes, 1 (or True) for converted.
    p : array-like
        Scores; higher means more likely to convert.
    level : float
        Confidence level of the interval.

    Returns
    -------
    auc, low, high : float
        NaN when `y` holds fewer than two rows of either outcome.

    Examples
    --------
    >>> auc, low, high = auc_interval([0, 0, 1, 0, 1, 1, 0, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.35, 0.9])
    >>> round(auc, 4), bool(low < auc < high)
    (0.875, True)
    """
    from scipy.stats import norm

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level!r}")
    yb = np.asarray(y, dtype="float64")
    s = np.asarray(p, dtype="float64")
    if yb.shape != s.shape or yb.ndim != 1:
        raise ValueError(f"y and p must be 1-D and of the same length, got shapes {yb.shape} and {s.shape}")
    pos, neg = s[yb == 1], s[yb != 1]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return float("nan"), float("nan"), float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    v10 = (ranks[:m] - rankdata(pos)) / n  # share of the other leads below each converted lead
    v01 = 1.0 - (ranks[m:] - rankdata(neg)) / m  # share of the converted leads above each other lead
    auc = float(v10.mean())
    sd = math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    z = float(norm.ppf(0.5 + level / 2.0))
    return auc, max(0.0, auc - z * sd), min(1.0, auc + z * sd)


def stratified_sample(y: Any, n: int, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random sample of `n` rows drawn at the same rate from each outcome, with weights that keep its rates exact.

    Each outcome ``k`` (``N_k`` of the ``N`` rows) gets ``n_k = round(n N_k / N)`` rows (at least one while it has
    any), drawn without replacement; a sampled row of outcome ``k`` weighs ``(N_k / N) / (n_k / n)``, so the
    weighted share of each outcome in the sample equals its share in all rows, and the weights average 1 (they
    differ from 1 only by the rounding of ``n_k``). Equal rates keep the sample's outcome rate, hence a model's
    calibration, and its time order: nothing needs reweighting beyond that rounding.

    Parameters
    ----------
    y : array-like
        Outcome of each row (any labels).
    n : int
        Rows to draw; `n` at or above ``len(y)`` keeps every row (weights 1).
    seed : int, optional
        Seed of the draw: the same `y`, `n` and seed give the same rows.

    Returns
    -------
    rows : ndarray of int64
        Positions of the sampled rows, increasing.
    weights : ndarray of float64
        The weight of each sampled row.

    Examples
    --------
    >>> y = np.r_[np.ones(300), np.zeros(700)]
    >>> rows, w = stratified_sample(y, 100, seed=0)
    >>> len(rows), int(y[rows].sum()), float(np.average(y[rows], weights=w))
    (100, 30, 0.3)
    """
    labels = np.asarray(y)
    total = len(labels)
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n >= total:
        return np.arange(total, dtype=np.int64), np.ones(total)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    take = np.maximum(np.rint(n * counts / total).astype(np.int64), 1)
    take[np.argmax(counts)] += n - take.sum()  # the rounding goes to the most frequent outcome
    take = np.minimum(take, counts)
    rows, weights = [], []
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        rows.append(rng.choice(members, int(take[k]), replace=False))
        weights.append(np.full(int(take[k]), (counts[k] / total) / (take[k] / take.sum())))
    positions, w = np.concatenate(rows), np.concatenate(weights)
    order = np.argsort(positions, kind="stable")
    return positions[order].astype(np.int64), w[order]


def _score_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """`salesforecast.metrics.score_table` as a dict (metrics of scores `p` for 0/1 outcomes `y`)."""
    row = score_table(np.asarray(y, dtype="float64"), np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0))
    return {k: float(v) for k, v in row.iloc[0].items()}


# ------------------------------------------------------------------------------------------------ features
@dataclass
class _Feature:
    """One model feature (a column of the encoded matrix) and how it is made from X."""

    name: str  # model feature name, e.g. "lead_source" or "created_at_month"
    source: str  # the column of X it comes from
    kind: str  # "numeric" or "categorical"
    part: str | None = None  # None (the column itself), "month", "day_of_week" or "age_days"
    levels: pd.Index | None = None  # categorical: kept levels; their position is the code
    other_code: int | None = None  # code of the "other" level (rare and unseen levels), None when nothing grouped
    missing_code: int | None = None  # code of the "(missing)" level
    reference: float = float("nan")  # median (numeric) or code of the most frequent level
    has_missing: bool = False  # numeric: missing values in training (logistic adds an indicator)
    no_reason: str | None = None  # why the feature's values are never given as reasons (ids, hashes, rare levels)


def _is_datetime(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype)


def _is_numeric(s: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)) and not isinstance(
        s.dtype, pd.CategoricalDtype
    )


def _naive_datetimes(s: pd.Series) -> pd.Series:
    """Datetimes as timezone-naive UTC."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s


def _numeric_values(s: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for missing and infinite values (time spans in days)."""
    if pd.api.types.is_timedelta64_dtype(s.dtype):
        v = s.dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan) / 86_400.0
    else:
        v = s.to_numpy(dtype="float64", na_value=np.nan)
    v = np.array(v, dtype="float64", copy=True)
    v[~np.isfinite(v)] = np.nan
    return v


def _text_values(s: pd.Series) -> pd.Series:
    """A column as pandas' ``str`` dtype (missing kept missing)."""
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.na_value is np.nan:
        return s
    return s.astype("str")


def _fit_levels(values: pd.Series, min_count: int, max_levels: int) -> tuple[pd.Index, int | None, int | None]:
    """Kept levels of a text column (missing as ``(missing)``), with the codes of ``other`` and ``(missing)``."""
    counts = values.fillna(MISSING).value_counts(sort=True)
    keep = counts[counts >= min_count].index[:max_levels]
    keep = [str(v) for v in keep if str(v) != OTHER]
    grouped = len(keep) < len(counts)
    levels = keep + [OTHER] if grouped else keep
    idx = pd.Index(levels, dtype="str")
    other = idx.get_loc(OTHER) if grouped else None
    missing = idx.get_loc(MISSING) if MISSING in keep else None
    return idx, other, missing


def _level_codes(values: pd.Series, levels: pd.Index) -> np.ndarray:
    """Position of each value in `levels`, -1 when absent or missing.

    Arrow-backed text (pandas' default ``str``) is looked up by pyarrow's ``index_in``, ten times faster than a
    pandas hash lookup (20 ms against 220 ms for a million values).
    """
    arr = values.array
    if isinstance(arr, pd.arrays.ArrowStringArray) and len(levels):
        data = pa.array(arr)
        found = pc.index_in(data, value_set=pa.array(levels.to_numpy(dtype=object), type=data.type))
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return levels.get_indexer(values).astype(np.int64)


def _encode_levels(values: pd.Series, f: _Feature) -> np.ndarray:
    """Codes of a text column for feature `f` (float; NaN where neither the level nor ``other`` exists)."""
    assert f.levels is not None
    code = _level_codes(values, f.levels).astype("float64")
    miss = values.isna().to_numpy()
    unknown = (code < 0) & ~miss
    fallback = np.nan if f.other_code is None else f.other_code
    code[miss] = fallback if f.missing_code is None else f.missing_code
    code[unknown] = fallback
    return code


def _date_parts(s: pd.Series, ref: pd.Series | None) -> dict[str, np.ndarray | pd.Series]:
    """Month and day-of-week labels of a datetime column, and its age in days at `ref` when given."""
    s = _naive_datetimes(s)
    month = s.dt.month.to_numpy(dtype="float64", na_value=np.nan)
    dow = s.dt.day_of_week.to_numpy(dtype="float64", na_value=np.nan)
    ok_m, ok_d = ~np.isnan(month), ~np.isnan(dow)
    lab_m = np.full(len(s), None, dtype=object)
    lab_m[ok_m] = _MONTHS[month[ok_m].astype(np.int64) - 1]
    lab_d = np.full(len(s), None, dtype=object)
    lab_d[ok_d] = _WEEKDAYS[dow[ok_d].astype(np.int64)]
    out: dict[str, np.ndarray | pd.Series] = {
        "month": pd.Series(lab_m, index=s.index, dtype="str"),
        "day_of_week": pd.Series(lab_d, index=s.index, dtype="str"),
    }
    if ref is not None:
        a = s.to_numpy("datetime64[us]")
        r = _naive_datetimes(ref).to_numpy("datetime64[us]")
        days = (r - a) / np.timedelta64(1, "D")
        out["age_days"] = np.asarray(days, dtype="float64")
    return out


class _Encoder:
    """Turns a DataFrame into the float matrix the estimators see (one column per `_Feature`)."""

    def __init__(self, features: list[_Feature], date_column: str | None) -> None:
        self.features = features
        self.date_column = date_column

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> np.ndarray:
        return np.array([f.kind == "categorical" for f in self.features], dtype=bool)

    @property
    def reference(self) -> np.ndarray:
        return np.array([f.reference for f in self.features], dtype="float64")

    def sources(self) -> list[str]:
        needed = list(dict.fromkeys(f.source for f in self.features))
        if self.date_column is not None and any(f.part == "age_days" for f in self.features):
            needed.append(self.date_column)
        return list(dict.fromkeys(needed))

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.sources() if c not in X.columns]
        if missing:
            raise ValueError(
                f"X has no column {missing[0]!r}, which the model was fitted with; needed columns: {self.sources()}"
            )
        Z = np.empty((len(X), len(self.features)), dtype="float64", order="F")  # filled column by column
        parts: dict[str, dict[str, Any]] = {}
        for j, f in enumerate(self.features):
            s = X[f.source]
            if f.part is not None:
                if f.source not in parts:
                    dc = self.date_column
                    ref = _as_datetimes(X[dc], dc) if dc is not None and f.source != dc else None
                    parts[f.source] = _date_parts(_as_datetimes(s, f.source, "X column"), ref)
                v = parts[f.source][f.part]
            else:
                v = s
            if f.kind == "numeric":
                Z[:, j] = _numeric_values(v) if isinstance(v, pd.Series) else v
            else:
                Z[:, j] = _encode_levels(_text_values(v), f)
        return Z

    def display(self, X: pd.DataFrame, j: int, rows: np.ndarray, Zcol: np.ndarray) -> np.ndarray:
        """The value of feature `j` in words for the given rows (for explanations)."""
        f = self.features[j]
        out = np.empty(len(rows), dtype=object)
        if f.kind == "numeric":
            for i, v in enumerate(Zcol):
                out[i] = MISSING if np.isnan(v) else _fmt(v)
            return out
        assert f.levels is not None
        levels = np.asarray(f.levels, dtype=object)
        if f.part is None:
            raw = _text_values(X[f.source].iloc[rows]).to_numpy(dtype=object, na_value=None)
        else:
            raw = np.array([levels[int(c)] if not np.isnan(c) else None for c in Zcol], dtype=object)
        for i, (c, r) in enumerate(zip(Zcol, raw, strict=True)):
            if r is None:
                out[i] = MISSING
            elif np.isnan(c) or (f.other_code is not None and int(c) == f.other_code and str(r) != OTHER):
                out[i] = f"{r} (rare or new level)"
            else:
                out[i] = str(r)
        return out


def _no_reason(name: str, values: pd.Series) -> str | None:
    """Why a text column's values explain nothing to a reader (None when they do).

    Identifiers (a name like ``owner_id``, or values like hex hashes, UUIDs, ``ACC-00042``) name a record, not a
    property of the lead; a column whose rows are mostly in levels seen fewer than ``rare_level_min`` times has
    too few leads per value for any value to stand for a pattern.
    """
    if _ID_NAME.search(name):
        return "an identifier (its name)"
    counts = values.dropna().value_counts()
    if counts.empty:
        return None
    distinct = counts.index.to_series()
    if len(distinct) > 1000:
        distinct = distinct.sample(1000, random_state=0)
    if distinct.astype("str").str.fullmatch(_ID_VALUE).mean() >= _ID_VALUE_SHARE:
        return "an identifier (its values look like ids or hashes)"
    return None


def _slog(x: Any) -> Any:
    """Signed ``log1p``: ``sign(x) log(1 + |x|)``."""
    return np.sign(x) * np.log1p(np.abs(x))


def _fmt(v: float) -> str:
    """A number for a sentence: integers without decimals, others with 4 significant digits."""
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.4g}"


def _as_datetimes(s: pd.Series, name: str | None, role: str = "date_column") -> pd.Series:
    """A column as timezone-naive datetimes (parsing ISO text), or a ValueError naming it."""
    if _is_datetime(s):
        return _naive_datetimes(s)
    try:
        return _naive_datetimes(pd.to_datetime(s, format="ISO8601"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{role} {name!r} must hold dates; could not read it as dates ({exc})") from None


def _as_frame(X: Any) -> pd.DataFrame:
    """X as a DataFrame; arrays get columns ``x0, x1, ...``."""
    if isinstance(X, pd.DataFrame):
        return X
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X must be a DataFrame or a 2-D array, got an array of shape {arr.shape}")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


# ------------------------------------------------------------------------------------------------ model
class LeadScoringModel(ClassifierMixin, BaseEstimator):
    """Calibrated lead-conversion probabilities with tiers, plain-words reasons and a leakage guard.

    The method is described in `salesforecast.models.lead_scoring`.

    Parameters
    ----------
    estimator : {"hgb", "logistic"}
        Gradient-boosted trees with native categorical support (default), or a regularised logistic regression
        (interpretable: one coefficient per level and per standardised number).
    calibration : {"auto", "isotonic", "sigmoid"} or None
        Map from the base model's log-odds to probabilities, learned on the validation rows; ``"auto"`` tries both
        on held-out validation rows and keeps sigmoid unless isotonic has a clearly lower Brier score; None keeps
        the base model's probabilities.
    exclude : sequence of str or None
        Columns never used (leaky columns, ids, the outcome's own fields). Each must be a column of X. None, like
        the default ``()``, excludes nothing.
    date_column : str, optional
        The date of each row (e.g. the lead's ``created_at``): validation rows are the latest ones, datetime
        features get their age at this date, and the date's month and day of week become features (unless the
        column is also in `exclude`, where it still orders the rows).
    validation : {"time", "random"}
        Latest rows (by `date_column`, else the last rows as given) or a stratified random sample.
    validation_size : float
        Share of the rows held out to choose the number of trees, the calibration and the importances.
    refit : bool or "auto"
        Refit the base model on all rows once the number of trees and the calibration are chosen; ``"auto"``
        refits below 200,000 rows.
    tier_labels : sequence of str
        Tier labels, best first (the method `tiers` assigns them).
    tier_method : {"quantile", "probability"}
        Tiers by quantiles of the training scores or by fixed probability cut-offs.
    tier_cuts : sequence of float, optional
        One fewer than `tier_labels`. Quantile: increasing cumulative shares of the top tiers (default equal shares).
        Probability: decreasing lower bounds of the tiers (required).
    rare_level_min : int
        Levels with fewer training rows are grouped into ``other``.
    max_levels : int
        At most this many levels per column are kept (the most frequent; at most 250).
    datetimes : {"parts", "error"}
        Turn datetime columns into parts, or refuse them with an error naming them.
    id_columns : {"drop", "error"}
        What to do with text columns whose values are all different: drop them with a warning, or refuse them.
    leakage_auc : float or None
        A column whose single feature reaches this AUC is probable leakage (`LeakageWarning`); None turns the
        check off.
    leakage : {"drop", "warn"}
        What to do with probable leakage: leave the column out of the fit and say so (default; listed in
        ``dropped_leaky_`` and ``dropped_columns_``), or keep it and only warn.
    date_parts : {"auto", "keep", "drop"}
        The month and day-of-week features of datetime columns: kept only when they lower the validation log loss
        of the base model by more than one standard error (``"auto"``; both scores in ``date_parts_scores_``),
        always, or never. On a real marketing
        funnel they cost about 0.05 AUC: month effects learned from one year rarely carry over to the next.
    estimator_params : dict, optional
        Settings passed to the scikit-learn estimator, overriding the defaults.
    importance_rows : int
        Validation rows used for the permutation importance of ``summary``.
    max_rows : int or None
        The most rows the model learns from: beyond it, a random sample of this many, drawn at the same rate from
        each outcome and weighted so that its outcome rate is that of all rows (`stratified_sample`; see "Sampling"
        in the module docstring). None learns from every row.
    random_state : int
        Seed of the random split, the importances and the estimator.

    Attributes
    ----------
    classes_ : ndarray
        The two outcome labels; the second is the positive class ("converted").
    feature_names_ : list of str
        The model's features (columns of X after dropping, and datetime parts).
    dropped_columns_ : dict
        Column (or date part) -> why it is not used.
    dropped_leaky_ : dict
        Column -> single-feature AUC of the columns left out as probable leakage (``leakage="drop"``).
    not_reasons_ : dict
        Feature -> why its values are never given as reasons (identifiers, hashes, mostly rare values); the model
        still uses it.
    date_parts_scores_ : pandas.DataFrame
        Validation ROC AUC and log loss of the base model with and without the date parts (``date_parts="auto"``
        with date parts to decide on; empty otherwise).
    estimator_ : estimator
        The fitted scikit-learn estimator (on all rows when ``refitted_``).
    calibration_ : str or None
        The calibration in use.
    calibration_scores_ : pandas.DataFrame
        Held-out Brier score and log loss of each calibration tried (``"auto"``).
    n_iter_ : int or None
        Trees grown before early stopping ended (``"hgb"``).
    validation_index_ : pandas.Index
        Index labels of the validation rows.
    validation_metrics_ : pandas.Series
        `evaluate`-style metrics on the validation rows, from the model fitted without them (its calibration map
        is learned on those rows, so the probability scores are slightly optimistic).
    feature_auc_ : pandas.Series
        Single-feature AUC of each feature (the leakage check).
    reference_ : pandas.Series
        Reference value of each feature (explanations).
    tier_thresholds_ : pandas.Series
        Lowest probability of each tier in use (fewer than ``tier_labels`` when tied scores merge tiers; see
        `tiers`).
    refitted_ : bool
        Whether ``estimator_`` was refitted on all rows.
    validation_estimator_ : estimator
        The estimator fitted without the validation rows (calibration and ``summary`` come from it).
    best_iter_ : int or None
        Trees at the lowest validation loss (``"hgb"``); the refitted model has this many.
    n_rows_in_ : int
        Rows given to `fit`.
    n_rows_fit_ : int
        Rows the model learned from: `n_rows_in_`, or ``max_rows`` when it sampled.
    sample_rate_ : float
        ``n_rows_fit_ / n_rows_in_`` (1.0 without sampling).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"source": rng.choice(["Web", "Referral", "Event"], 3000),
    ...                   "engagement": rng.normal(50, 15, 3000).round(1)})
    >>> logit = (X["engagement"] - 60) / 10 + 1.5 * (X["source"] == "Referral")
    >>> y = rng.random(3000) < 1 / (1 + np.exp(-logit))
    >>> model = LeadScoringModel(random_state=0).fit(X, y)
    >>> model.predict_proba(X.head(2)).shape
    (2,)
    >>> model.tiers(X).value_counts().sort_index().index.tolist()
    ['A', 'B', 'C', 'D']
    >>> model.summary["feature"].iloc[0]
    'engagement'
    """

    def __init__(
        self,
        estimator: str = "hgb",
        *,
        calibration: str | None = "auto",
        exclude: Sequence[str] | None = (),
        date_column: str | None = None,
        validation: str = "time",
        validation_size: float = 0.2,
        refit: bool | str = "auto",
        tier_labels: Sequence[str] = ("A", "B", "C", "D"),
        tier_method: str = "quantile",
        tier_cuts: Sequence[float] | None = None,
        rare_level_min: int = 20,
        max_levels: int = 100,
        datetimes: str = "parts",
        id_columns: str = "drop",
        leakage_auc: float | None = 0.90,
        leakage: str = "drop",
        date_parts: str = "auto",
        estimator_params: dict[str, Any] | None = None,
        importance_rows: int = 5_000,
        max_rows: int | None = MAX_ROWS,
        random_state: int | None = 0,
    ) -> None:
        self.estimator = estimator
        self.calibration = calibration
        self.exclude = exclude
        self.date_column = date_column
        self.validation = validation
        self.validation_size = validation_size
        self.refit = refit
        self.tier_labels = tier_labels
        self.tier_method = tier_method
        self.tier_cuts = tier_cuts
        self.rare_level_min = rare_level_min
        self.max_levels = max_levels
        self.datetimes = datetimes
        self.id_columns = id_columns
        self.leakage_auc = leakage_auc
        self.leakage = leakage
        self.date_parts = date_parts
        self.estimator_params = estimator_params
        self.importance_rows = importance_rows
        self.max_rows = max_rows
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        def choice(name: str, allowed: tuple[Any, ...]) -> None:
            v = getattr(self, name)
            if v not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {v!r}")

        choice("estimator", ("hgb", "logistic"))
        choice("refit", (True, False, "auto"))
        choice("calibration", ("auto", "isotonic", "sigmoid", None))
        choice("validation", ("time", "random"))
        choice("tier_method", ("quantile", "probability"))
        choice("datetimes", ("parts", "error"))
        choice("id_columns", ("drop", "error"))
        choice("leakage", ("drop", "warn"))
        choice("date_parts", ("auto", "keep", "drop"))
        vs = self.validation_size
        if not isinstance(vs, numbers.Real) or not 0.0 < vs < 1.0:
            raise ValueError(f"validation_size must be a share between 0 and 1 (e.g. 0.2), got {vs!r}")
        if isinstance(self.exclude, str):
            raise ValueError(f"exclude must be a list of column names, got the string {self.exclude!r}")
        limits = [("rare_level_min", 1), ("max_levels", 1), ("importance_rows", 100)]
        for name, lo in limits + ([("max_rows", 1000)] if self.max_rows is not None else []):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if self.max_levels > 250:
            raise ValueError(f"max_levels must be at most 250 (the gradient-boosting limit), got {self.max_levels}")
        la = self.leakage_auc
        if la is not None and (not isinstance(la, numbers.Real) or not 0.5 <= la <= 1.0):
            raise ValueError(f"leakage_auc must be an AUC between 0.5 and 1 or None, got {la!r}")
        tiers = list(self.tier_labels)
        if len(tiers) < 1 or len(set(tiers)) != len(tiers):
            raise ValueError(f"tier_labels must be distinct labels, best first, got {self.tier_labels!r}")
        cuts = None if self.tier_cuts is None else [float(c) for c in self.tier_cuts]
        if cuts is not None and len(cuts) != len(tiers) - 1:
            raise ValueError(f"tier_cuts needs {len(tiers) - 1} values for tier_labels {tiers}, got {self.tier_cuts!r}")
        if self.tier_method == "probability":
            if cuts is None:
                raise ValueError("tier_method='probability' needs tier_cuts: decreasing probabilities, e.g. (0.5, 0.2)")
            if not all(0 < c < 1 for c in cuts) or any(a <= b for a, b in zip(cuts, cuts[1:], strict=False)):
                raise ValueError(f"probability tier_cuts must decrease strictly within (0, 1), got {self.tier_cuts!r}")
        elif cuts is not None and (
            not all(0 < c < 1 for c in cuts) or any(a >= b for a, b in zip(cuts, cuts[1:], strict=False))
        ):
            raise ValueError(f"quantile tier_cuts must be increasing shares within (0, 1), got {self.tier_cuts!r}")

    def _binary_y(self, y: Any, n: int) -> np.ndarray:
        """Outcomes as 0/1 (the second of the two sorted labels is 1); sets ``classes_``."""
        ys = pd.Series(np.asarray(y) if not isinstance(y, pd.Series) else y.to_numpy())
        if len(ys) != n:
            raise ValueError(f"X has {n} rows but y has {len(ys)} values")
        if ys.isna().any():
            i = int(np.flatnonzero(ys.isna().to_numpy())[0])
            raise ValueError(f"y has missing outcomes (first at position {i}); drop those rows or label them")
        classes = np.unique(ys.to_numpy())
        if len(classes) != 2:
            raise ValueError(
                f"y must hold exactly two outcomes (converted or not), got {len(classes)}: {classes[:5].tolist()}"
            )
        self.classes_ = classes
        return (ys.to_numpy() == classes[1]).astype(np.int64)

    # ------------------------------------------------------------------ features
    def _learn_features(self, X: pd.DataFrame) -> _Encoder:
        """Decide each column's treatment (sets ``dropped_columns_``) and learn levels and references."""
        exclude = [] if self.exclude is None else list(self.exclude)
        unknown = [c for c in exclude if c not in X.columns]
        if unknown:
            raise ValueError(f"exclude names {unknown[0]!r}, which is not a column of X; columns: {list(X.columns)}")
        dc = self.date_column
        if dc is not None and dc not in X.columns:
            raise ValueError(f"date_column {dc!r} is not a column of X; columns: {list(X.columns)}")
        ref = _as_datetimes(X[dc], dc) if dc is not None else None
        min_count, max_levels = int(self.rare_level_min), int(self.max_levels)
        dropped: dict[str, str] = {c: "excluded" for c in exclude}
        feats: list[_Feature] = []
        ids: list[str] = []
        dates: list[str] = []
        for col in X.columns:
            if col in exclude:
                continue
            name = str(col)
            s = X[col]
            if _is_datetime(s) or (col == dc):
                if self.datetimes == "error" and col != dc:
                    dates.append(name)
                    continue
                parts = _date_parts(ref if col == dc else s, None if col == dc else ref)
                for part, v in parts.items():
                    if isinstance(v, pd.Series):
                        levels, other, miss = _fit_levels(v, min_count, max_levels)
                        f = _Feature(f"{name}_{part}", name, "categorical", part, levels, other, miss)
                    else:
                        f = _Feature(f"{name}_{part}", name, "numeric", part)
                    feats.append(f)
                continue
            if _is_numeric(s) or pd.api.types.is_timedelta64_dtype(s.dtype):
                why = "an identifier (its name)" if _ID_NAME.search(name) else None
                feats.append(_Feature(name, name, "numeric", no_reason=why))
                continue
            t = _text_values(s)
            n_ok = int(t.notna().sum())
            if n_ok >= 20 and t.nunique() == n_ok:
                ids.append(name)
                continue
            levels, other, miss = _fit_levels(t, min_count, max_levels)
            why = _no_reason(name, t)
            ok = t.notna()
            rare = int((ok & ~t.isin(levels.tolist())).sum())
            if why is None and other is not None and rare > _RARE_ROW_SHARE * int(ok.sum()):
                share = rare / max(int(ok.sum()), 1)
                why = f"most of its rows ({share:.0%}) hold values seen fewer than {min_count} times"
            feats.append(_Feature(name, name, "categorical", None, levels, other, miss, no_reason=why))
        if dates:
            raise ValueError(
                f"X columns {dates} hold datetimes, which datetimes='error' refuses: exclude them, turn them into "
                "numbers (e.g. days since an event), or use datetimes='parts' (month, day of week, age in days at "
                "date_column)"
            )
        if ids:
            msg = (
                f"X columns {ids} are text with a different value on every row (ids, e-mails, free text): "
                "they cannot generalise"
            )
            if self.id_columns == "error":
                raise ValueError(msg + "; exclude them")
            warnings.warn(msg + "; they are dropped (pass exclude= to silence this)", UserWarning, stacklevel=3)
            dropped.update({c: "id-like text (all values different)" for c in ids})
        enc = _Encoder(feats, dc)
        Z = enc.transform(X)
        kept: list[_Feature] = []
        for j, f in enumerate(feats):
            v = Z[:, j]
            ok = ~np.isnan(v)
            if not ok.any() or np.all(v[ok] == v[ok][0]) and ok.all():
                dropped[f.name] = "a single value"
                continue
            if f.kind == "numeric":
                f.reference = float(np.median(v[ok]))
                f.has_missing = bool((~ok).any())
            else:
                codes = v[ok].astype(np.int64)
                f.reference = float(np.bincount(codes).argmax())
            kept.append(f)
        if not kept:
            raise ValueError(f"X has no usable feature column; dropped: {dropped}")
        self.dropped_columns_ = dropped
        return _Encoder(kept, dc if dc is not None and any(f.part == "age_days" for f in kept) else None)

    # ------------------------------------------------------------------ leakage
    def _check_leakage(
        self, Z: np.ndarray, y: np.ndarray, enc: _Encoder, rng: np.random.Generator
    ) -> tuple[pd.Series, dict[str, float]]:
        """Single-feature AUC of each feature (numbers: rank AUC both ways; levels: outcome-rate AUC); warn.

        Returns the AUCs and the flagged source columns with their highest single-feature AUC.
        """
        n = len(y)
        rows = np.sort(rng.choice(n, _LEAKAGE_ROWS, replace=False)) if n > _LEAKAGE_ROWS else np.arange(n)
        Zs, ys = Z[rows], y[rows]
        cat = enc.categorical
        scores = np.empty_like(Zs)
        for j in np.flatnonzero(cat):
            code = np.where(np.isnan(Zs[:, j]), -1, Zs[:, j]).astype(np.int64) + 1
            tot = np.bincount(code)
            pos = np.bincount(code, weights=ys, minlength=len(tot))
            rate = pos / np.maximum(tot, 1)
            scores[:, j] = rate[code]
        num = ~cat
        lo = np.where(np.isnan(Zs[:, num]), -np.inf, Zs[:, num])
        scores[:, num] = lo
        auc = _rank_auc(scores, ys)
        has_nan = np.isnan(Zs[:, num]).any(axis=0)
        if has_nan.any():
            hi = np.where(np.isnan(Zs[:, num]), np.inf, Zs[:, num])[:, has_nan]
            a_hi = _rank_auc(hi, ys)
            a_num = auc[num]
            a_lo = a_num[has_nan]
            a_num[has_nan] = np.where(np.abs(a_hi - 0.5) > np.abs(a_lo - 0.5), a_hi, a_lo)
            auc[num] = a_num
        auc = np.maximum(auc, 1.0 - auc)
        out = pd.Series(auc, index=pd.Index(enc.names, dtype="str"), name="single_feature_auc")
        flagged: dict[str, tuple[str, float]] = {}
        if self.leakage_auc is not None:
            for f, a in zip(enc.features, auc, strict=True):
                if a > self.leakage_auc and (f.source not in flagged or a > flagged[f.source][1]):
                    flagged[f.source] = (f.name, float(a))
            for source, (name, a) in flagged.items():
                via = "" if name == source else f" (as {name!r})"
                if self.leakage == "drop":
                    msg = (
                        f"column {source!r}{via} was left out of the model as probable leakage: alone it "
                        f"separates the outcomes (single-feature AUC {a:.3f} > {self.leakage_auc}), which a field "
                        "known before the outcome rarely does; it is usually recorded after or because of the "
                        "outcome (e.g. filled only for converted leads or won deals). If it is known before, keep it "
                        "with leakage='warn'"
                    )
                else:
                    msg = (
                        f"column {source!r}{via} alone separates the outcomes: single-feature AUC {a:.3f} > "
                        f"leakage_auc={self.leakage_auc}. Is it known before the outcome? If it is recorded after or "
                        f"because of it, drop it with exclude=[{source!r}] (or leakage='drop')"
                    )
                warnings.warn(msg, LeakageWarning, stacklevel=3)
        return out, {source: a for source, (_name, a) in flagged.items()}

    # ------------------------------------------------------------------ estimators
    def _make_estimator(self, enc: _Encoder, n_rows: int = 0) -> BaseEstimator:
        extra = dict(self.estimator_params or {})
        if self.estimator == "hgb":
            params = {**_HGB_DEFAULTS, **extra}
            if "learning_rate" not in extra and n_rows >= _LARGE_ROWS:
                params["learning_rate"] = _LARGE_LEARNING_RATE
            return HistGradientBoostingClassifier(
                categorical_features=enc.categorical,
                early_stopping=True,
                random_state=self.random_state,
                **params,
            )
        return LogisticRegression(random_state=self.random_state, **{**_LOGISTIC_DEFAULTS, **extra})

    def _learn_design(self, Z: np.ndarray, enc: _Encoder) -> dict[str, Any]:
        """Logistic design: per numeric feature median, log or not, mean and sd; per categorical its levels."""
        spec: dict[str, Any] = {"num": [], "cat": []}
        for j, f in enumerate(enc.features):
            if f.kind == "numeric":
                v = np.where(np.isnan(Z[:, j]), f.reference, Z[:, j])
                sd = float(v.std())
                log = bool(v.min() >= 0 and sd > 0 and np.mean(((v - v.mean()) / sd) ** 3) > 1.0)
                if log:
                    v = _slog(v)
                    sd = float(v.std())
                spec["num"].append((j, f.reference, log, float(v.mean()), sd if sd > 0 else 1.0, f.has_missing))
            else:
                assert f.levels is not None
                spec["cat"].append((j, len(f.levels)))
        return spec

    def _design(self, Z: np.ndarray) -> sparse.csr_matrix:
        """The logistic model's matrix: standardised numbers, missing indicators, one-hot levels."""
        n = len(Z)
        blocks: list[Any] = []
        for j, med, log, mean, sd, has_missing in self._design_["num"]:
            miss = np.isnan(Z[:, j])
            v = np.where(miss, med, Z[:, j])
            v = ((_slog(v) if log else v) - mean) / sd
            blocks.append(sparse.csr_matrix(v[:, None]))
            if has_missing:
                blocks.append(sparse.csr_matrix(miss.astype("float64")[:, None]))
        for j, k in self._design_["cat"]:
            c = Z[:, j]
            ok = ~np.isnan(c)
            rows = np.flatnonzero(ok)
            blocks.append(sparse.csr_matrix((np.ones(len(rows)), (rows, c[ok].astype(np.int64))), shape=(n, k)))
        return sparse.hstack(blocks, format="csr")

    def _fit_base(
        self,
        Z: np.ndarray,
        y: np.ndarray,
        Zv: np.ndarray | None,
        yv: np.ndarray | None,
        enc: _Encoder,
        w: np.ndarray | None = None,
        wv: np.ndarray | None = None,
    ):
        """The base model on rows `Z` (weights `w`, None: equal), early-stopped on `Zv` (hgb) when given."""
        est = self._make_estimator(enc, len(Z) + (0 if Zv is None else len(Zv)))
        with _threads(len(Z)):
            if self.estimator == "logistic":
                est.fit(self._design(Z), y, sample_weight=w)
            elif Zv is None:
                est.set_params(early_stopping=False)
                est.fit(Z, y, sample_weight=w)
            else:
                est.fit(Z, y, sample_weight=w, X_val=Zv, y_val=yv, sample_weight_val=wv)
        return est

    def _raw(self, est: Any, Z: np.ndarray) -> np.ndarray:
        """The base model's log-odds."""
        if self.estimator == "logistic":
            return np.asarray(est.decision_function(self._design(Z)), dtype="float64")
        with _threads(len(Z)):
            return np.asarray(est.decision_function(Z), dtype="float64")

    # ------------------------------------------------------------------ calibration
    @staticmethod
    def _fit_calibrator(method: str | None, s: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> Any:
        if method is None:
            return None
        if method == "sigmoid":
            return LogisticRegression(C=1e6, max_iter=1000).fit(s[:, None], y, sample_weight=w)
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y, sample_weight=w)

    @staticmethod
    def _apply_calibrator(method: str | None, cal: Any, s: np.ndarray) -> np.ndarray:
        if method is None:
            p = 1.0 / (1.0 + np.exp(-s))
        elif method == "sigmoid":
            p = cal.predict_proba(s[:, None])[:, 1]
        else:
            p = cal.predict(s)
        return np.clip(p, _EPS, 1.0 - _EPS)

    def _choose_calibration(
        self, s: np.ndarray, y: np.ndarray, rng: np.random.Generator, w: np.ndarray | None = None
    ) -> str | None:
        """The calibration with the lower held-out Brier score among sigmoid and isotonic (sets scores_).

        The calibrators are fitted with the rows' weights `w` (sampling); the held-out scores are unweighted, as
        the weights of a `stratified_sample` differ from 1 only by rounding.
        """
        if self.calibration != "auto":
            self.calibration_scores_ = pd.DataFrame(columns=["calibration", "brier", "log_loss"])
            return self.calibration
        methods = ["sigmoid", "isotonic"]
        pred = {m: np.full(len(s), np.nan) for m in methods}
        if self.validation == "time":
            half = len(s) // 2
            splits = [(np.arange(half), np.arange(half, len(s)))]
        else:
            k = int(min(5, np.bincount(y).min()))
            skf = StratifiedKFold(n_splits=max(k, 2), shuffle=True, random_state=int(rng.integers(2**31 - 1)))
            splits = list(skf.split(s[:, None], y))
        held = np.zeros(len(s), dtype=bool)
        for tr, te in splits:
            if len(np.unique(y[tr])) < 2:
                continue
            held[te] = True
            for m in methods:
                cal = self._fit_calibrator(m, s[tr], y[tr], None if w is None else w[tr])
                pred[m][te] = self._apply_calibrator(m, cal, s[te])
        rows = []
        for m in methods:
            if held.any():
                sc = _score_metrics(y[held], pred[m][held])
                rows.append({"calibration": m, "brier": sc["brier"], "log_loss": sc["log_loss"]})
            else:
                rows.append({"calibration": m, "brier": np.nan, "log_loss": np.nan})
        table = pd.DataFrame(rows)
        self.calibration_scores_ = table
        if not held.any():
            return "sigmoid"
        # isotonic (flexible) must beat sigmoid (two parameters) by more than one standard error of the paired
        # difference of squared errors: on a few thousand rows its extra freedom mostly fits noise
        d = (pred["sigmoid"][held] - y[held]) ** 2 - (pred["isotonic"][held] - y[held]) ** 2
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.inf
        return "isotonic" if d.mean() > se else "sigmoid"

    # ------------------------------------------------------------------ split
    def _time_order(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Row positions in time order and the sorted dates (None without a date column)."""
        if self.date_column is None:
            return np.arange(len(X)), None
        d = _as_datetimes(X[self.date_column], self.date_column)
        if d.isna().any():
            raise ValueError(
                f"date_column {self.date_column!r} has {int(d.isna().sum())} missing dates; time-ordered "
                "validation needs a date on every row"
            )
        v = d.to_numpy("datetime64[us]").view(np.int64)
        order = np.argsort(v, kind="stable")
        return order, v[order]

    @staticmethod
    def _boundary(pos: int, dates: np.ndarray | None) -> int:
        """Move a split position back to the first row of its date, so one date never straddles a split."""
        if dates is None or pos <= 0 or pos >= len(dates):
            return pos
        return int(np.searchsorted(dates, dates[pos], side="left"))

    def _split(self, X: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(y)
        n_val = int(math.ceil(self.validation_size * n))
        if self.validation == "random":
            sss = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=self.random_state)
            tr, va = next(sss.split(np.zeros((n, 1)), y))
            return np.sort(tr), np.sort(va)
        order, dates = self._time_order(X)
        b = self._boundary(n - n_val, dates)
        if b <= 0:
            raise ValueError(f"date_column {self.date_column!r}: all rows share one date, no earlier rows to train on")
        return order[:b], order[b:]

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any) -> LeadScoringModel:
        """Learn the preprocessing, the base model, its calibration, tiers and importances.

        Parameters
        ----------
        X : pandas.DataFrame
            One row per lead; feature columns of any type (see the module docstring). Arrays are accepted
            (columns ``x0, x1, ...``).
        y : array-like
            Outcome of each row, two distinct values (0/1, bool, "no"/"yes"); the second of the sorted labels is the
            positive class.

        Returns
        -------
        LeadScoringModel
            self, fitted.

        Raises
        ------
        ValueError
            Bad settings, unknown columns in `exclude` or `date_column`, refused datetime or id columns, outcomes
            that are not two classes, validation rows with a single class.

        Warns
        -----
        LeakageWarning
            A feature alone separates the outcomes (single-feature AUC above `leakage_auc`).
        LeakageWarning
            A column is left out (``leakage="drop"``) or kept (``"warn"``) as probable leakage.
        TierWarning
            Tied scores leave fewer distinct quantile tiers than asked.
        WeakModelWarning
            The validation ROC AUC is below 0.55 (the model barely ranks the validation rows).
        UserWarning
            Id-like text columns are dropped.
        """
        self._check_params()
        X = _as_frame(X)
        yb = self._binary_y(y, len(X))
        if len(X) < 20:
            raise ValueError(f"X has {len(X)} rows; lead scoring needs at least 20")
        rng = np.random.default_rng(self.random_state)
        self.n_features_in_ = X.shape[1]
        if all(isinstance(c, str) for c in X.columns):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        given = X
        self.n_rows_in_ = self.n_rows_fit_ = len(X)
        w = None
        if self.max_rows is not None and len(X) > self.max_rows:
            rows, w = stratified_sample(yb, int(self.max_rows), self.random_state)
            X, yb = X.iloc[rows], yb[rows]
            self.n_rows_fit_ = len(rows)
        self.sample_rate_ = self.n_rows_fit_ / self.n_rows_in_
        enc = self._learn_features(X)
        Z = enc.transform(X)
        self.feature_auc_, leaky = self._check_leakage(Z, yb, enc, rng)
        self.dropped_leaky_ = dict(leaky) if self.leakage == "drop" else {}
        if self.dropped_leaky_:
            keep = [j for j, f in enumerate(enc.features) if f.source not in self.dropped_leaky_]
            if not keep:
                raise ValueError(
                    f"every feature of X alone separates the outcomes (probable leakage, single-feature AUC "
                    f"{self.dropped_leaky_}): nothing is left to learn from; pass leakage='warn' to keep them"
                )
            enc, Z = self._subset(enc, keep), Z[:, keep]
            for source, a in self.dropped_leaky_.items():
                self.dropped_columns_[source] = f"probable leakage (single-feature AUC {a:.3f})"

        tr, va = self._split(X, yb)
        for name, idx in (("training", tr), ("validation", va)):
            if len(np.unique(yb[idx])) < 2:
                raise ValueError(
                    f"the {name} rows ({len(idx)}) hold a single outcome; give more rows or change validation_size"
                )
        self.validation_index_ = X.index[va]
        enc, Z, est = self._choose_date_parts(enc, Z, yb, tr, va, w)
        self._encoder_ = enc
        self.feature_names_ = enc.names
        self.reference_ = pd.Series(
            [self._reference_label(j) for j in range(len(enc.features))], index=enc.names, dtype="str", name="reference"
        )
        self.not_reasons_ = {f.name: f.no_reason for f in enc.features if f.no_reason is not None}
        self.n_iter_ = int(est.n_iter_) if self.estimator == "hgb" else None
        # the trees at the lowest validation loss (early stopping runs n_iter_no_change trees past it)
        self.best_iter_ = max(int(np.argmax(est.validation_score_)), 1) if self.estimator == "hgb" else None
        s_val = self._raw(est, Z[va])
        # calibration rows in time order (the validation positions are sorted by time already for "time")
        w_va = None if w is None else w[va]
        method = self._choose_calibration(s_val, yb[va], rng, w_va)
        self.calibration_ = method
        self._calibrator_ = self._fit_calibrator(method, s_val, yb[va], w_va)
        p_val = self._apply_calibrator(method, self._calibrator_, s_val)
        self.validation_metrics_ = pd.Series(_score_metrics(yb[va], p_val), name="validation")
        auc = self.validation_metrics_["roc_auc"]
        if auc < _WEAK_AUC:
            where = "later" if self.validation == "time" else "held-out"
            n_pos = int(np.sum(yb))
            cause = (
                f"with only {n_pos:,} conversions among its {len(yb):,} training rows (fewer than "
                f"{_FEW_CONVERSIONS}), too little data is the likelier cause than drift"
                if n_pos < _FEW_CONVERSIONS
                else "check for drift, or for features that only describe the past"
            )
            warnings.warn(
                f"the model barely ranks its {where} validation rows (validation ROC AUC {auc:.3f} on {len(va):,} of "
                f"its own training rows, not the holdout): what it learned from the training rows does not carry "
                f"over; {cause}",
                WeakModelWarning,
                stacklevel=2,
            )
        self.estimator_ = self.validation_estimator_ = est
        kept = va if len(va) <= self.importance_rows else va[np.sort(rng.choice(len(va), self.importance_rows, False))]
        self._importance_rows_ = (Z[kept], yb[kept])
        self._summary_cache = None

        self.refitted_ = bool(self.refit if self.refit != "auto" else len(yb) < _REFIT_ROWS)
        if self.refitted_:
            if self.estimator == "hgb":
                final = self._make_estimator(enc, len(Z))
                final.set_params(max_iter=self.best_iter_, early_stopping=False)
                with _threads(len(Z)):
                    final.fit(Z, yb, sample_weight=w)
            else:
                final = self._fit_base(Z, yb, None, None, enc, w)
            self.estimator_ = final
        if w is None:
            rows = np.sort(rng.choice(len(Z), _TIER_ROWS, replace=False)) if len(Z) > _TIER_ROWS else slice(None)
            Z_tiers = Z[rows]
        else:  # the tiers cut the scores of all rows given, not only of the sample (a random _TIER_ROWS of them)
            n_given = len(given)
            rows = np.sort(rng.choice(n_given, _TIER_ROWS, replace=False)) if n_given > _TIER_ROWS else slice(None)
            Z_tiers = enc.transform(given.iloc[rows])
        p_fit = self._apply_calibrator(method, self._calibrator_, self._raw(self.estimator_, Z_tiers))
        self.tier_thresholds_ = self._tier_thresholds(p_fit)
        return self

    @staticmethod
    def _subset(enc: _Encoder, keep: Sequence[int]) -> _Encoder:
        """The encoder of features `keep` (positions); the date column only while an age feature needs it."""
        feats = [enc.features[j] for j in keep]
        dc = enc.date_column if any(f.part == "age_days" for f in feats) else None
        return _Encoder(feats, dc)

    def _fit_candidate(
        self,
        enc: _Encoder,
        Z: np.ndarray,
        y: np.ndarray,
        tr: np.ndarray,
        va: np.ndarray,
        w: np.ndarray | None = None,
    ) -> tuple[Any, np.ndarray, dict[str, float]]:
        """The base model on the training rows of features `enc`, its log loss on each validation row and scores."""
        if self.estimator == "logistic":
            self._design_ = self._learn_design(Z, enc)
        est = self._fit_base(Z[tr], y[tr], Z[va], y[va], enc, *((None, None) if w is None else (w[tr], w[va])))
        p = np.clip(1.0 / (1.0 + np.exp(-self._raw(est, Z[va]))), _EPS, 1.0 - _EPS)
        losses = -np.where(y[va] == 1, np.log(p), np.log1p(-p))
        return est, losses, _score_metrics(y[va], p)

    def _choose_date_parts(
        self, enc: _Encoder, Z: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, w: np.ndarray | None = None
    ) -> tuple[_Encoder, np.ndarray, Any]:
        """Keep the month and day-of-week features only when they improve the validation log loss (``"auto"``).

        They improve it when the mean per-row decrease of the log loss is larger than one standard error of that
        paired difference (as for the choice of isotonic calibration): on a few hundred validation rows, twelve
        month levels lower the log loss by chance about half the time. Sets ``date_parts_scores_`` and records the
        parts left out in ``dropped_columns_``. Returns the encoder, matrix and base model (fitted on the
        training rows) to use. On more than `_DATE_PART_ROWS` training rows the two candidates are fitted on a
        random `_DATE_PART_ROWS` of them (the decision needs no more, and it then costs a fraction of one fit);
        the chosen features are then fitted on all training rows.
        """
        parts = [j for j, f in enumerate(enc.features) if f.part in _CALENDAR_PARTS]
        rest = [j for j in range(len(enc.features)) if j not in parts]
        self.date_parts_scores_ = pd.DataFrame(columns=["date_parts", "roc_auc", "log_loss"])
        if not parts or self.date_parts == "keep" or not rest:
            est, _losses, _scores = self._fit_candidate(enc, Z, y, tr, va, w)
            return enc, Z, est
        enc_without, Z_without = self._subset(enc, rest), Z[:, rest]
        if self.date_parts == "drop":
            est, _losses, _scores = self._fit_candidate(enc_without, Z_without, y, tr, va, w)
            why = "a date part (date_parts='drop')"
        else:
            sub = tr
            if len(tr) > _DATE_PART_ROWS:
                sub = np.sort(np.random.default_rng(self.random_state).choice(tr, _DATE_PART_ROWS, replace=False))
            est, loss_without, without = self._fit_candidate(enc_without, Z_without, y, sub, va, w)
            est_with, loss_with, with_ = self._fit_candidate(enc, Z, y, sub, va, w)
            gain = loss_without - loss_with
            se = gain.std(ddof=1) / math.sqrt(len(gain)) if len(gain) > 1 else math.inf
            self.date_parts_scores_ = pd.DataFrame(
                [
                    {"date_parts": "with", "roc_auc": with_["roc_auc"], "log_loss": with_["log_loss"]},
                    {"date_parts": "without", "roc_auc": without["roc_auc"], "log_loss": without["log_loss"]},
                ]
            )
            if gain.mean() > se:
                if len(sub) < len(tr):
                    est_with, _losses, _scores = self._fit_candidate(enc, Z, y, tr, va, w)
                return enc, Z, est_with
            if len(sub) < len(tr):
                est, _losses, _scores = self._fit_candidate(enc_without, Z_without, y, tr, va, w)
            elif self.estimator == "logistic":
                self._design_ = self._learn_design(Z_without, enc_without)
            why = (
                f"a date part that did not improve the validation score (log loss {with_['log_loss']:.4f} with the "
                f"date parts, {without['log_loss']:.4f} without, a standard error {se:.4f}; ROC AUC "
                f"{with_['roc_auc']:.3f} against {without['roc_auc']:.3f})"
            )
        for j in parts:
            self.dropped_columns_[enc.features[j].name] = why
        return enc_without, Z_without, est

    def _reference_label(self, j: int) -> str:
        f = self._encoder_.features[j]
        if f.kind == "numeric":
            return _fmt(f.reference)
        assert f.levels is not None
        return str(f.levels[int(f.reference)])

    # ------------------------------------------------------------------ predict
    def _check_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = _as_frame(X)
        return self._encoder_.transform(X)

    def _proba(self, Z: np.ndarray) -> np.ndarray:
        return self._apply_calibrator(self.calibration_, self._calibrator_, self._raw(self.estimator_, Z))

    def predict_proba(self, X: Any) -> pd.Series:
        """Probability of the positive outcome (``classes_[1]``, e.g. converted) of each row.

        Every model of `salesforecast.models` returns the same type from ``predict_proba``: a float Series of the
        positive-class probability aligned to the input's index, because that is what the pipeline code and the
        notebooks read (a column added to the scored table, rows matched by index). scikit-learn's classifiers
        return an ``(n, 2)`` array instead: ``predict_proba(X).to_numpy()`` is its column 1, and scikit-learn's
        string scorers that read ``predict_proba`` (``scoring="roc_auc"``) need a callable scorer in its place.

        Parameters
        ----------
        X : pandas.DataFrame
            The columns used in `fit` (others are ignored); unseen levels are read as ``other``. A 2-D array is
            read as columns ``x0, x1, ...``.

        Returns
        -------
        pandas.Series
            ``probability``, aligned to the index of `X` (a RangeIndex for an array).

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(1)
        >>> X = pd.DataFrame({"source": rng.choice(["Web", "Event"], 500), "score": rng.normal(size=500)})
        >>> y = rng.random(500) < 1 / (1 + np.exp(-2 * X["score"]))
        >>> model = LeadScoringModel(calibration="sigmoid").fit(X, y)
        >>> p = model.predict_proba(pd.DataFrame({"source": ["Web", "Webinar"], "score": [2.0, -2.0]}, index=[7, 9]))
        >>> bool(p[7] > 0.5 > p[9]), p.name
        (True, 'probability')
        """
        X = _as_frame(X)
        return pd.Series(self._proba(self._check_X(X)), index=X.index, name="probability")

    def predict(self, X: Any) -> np.ndarray:
        """The more likely outcome of each row (the positive label where the probability is at least 0.5)."""
        p = self._proba(self._check_X(X))
        return self.classes_[(p >= 0.5).astype(np.int64)]

    # ------------------------------------------------------------------ tiers
    def _tier_thresholds(self, p: np.ndarray) -> pd.Series:
        labels = list(self.tier_labels)
        if self.tier_method == "probability":
            assert self.tier_cuts is not None
            cuts = [float(c) for c in self.tier_cuts]
        else:
            k = len(labels)
            shares = [float(c) for c in self.tier_cuts] if self.tier_cuts is not None else [i / k for i in range(1, k)]
            cuts = [float(np.quantile(p, 1.0 - s)) for s in shares]
            cuts = self._untied(cuts, np.asarray(p, dtype="float64"), shares)
            labels = labels[: len(cuts) + 1]
        return pd.Series([*cuts, 0.0], index=pd.Index(labels, dtype="str"), name="min_probability")

    def _untied(self, cuts: list[float], p: np.ndarray, shares: list[float]) -> list[float]:
        """Quantile cuts without the ones that leave a tier empty (tied scores), with a `TierWarning` if any.

        Tier ``i`` holds the scores in ``[cuts[i], cuts[i - 1])``. When tied scores leave a tier without any
        training lead, each cut becomes instead the distinct score whose share of leads at or above it is closest
        to the tier's cumulative share (so a few leads above a large tie still get their own tier); then, while a
        tier is empty, its lower cut is removed (the tier merges with the next; the last tier's upper cut). The
        tiers in use are the first ``len(cuts) + 1`` labels.
        """
        asked = len(cuts) + 1

        def counts_of(c: list[float]) -> np.ndarray:
            return np.bincount(np.searchsorted(-np.asarray(c), -p, side="left"), minlength=len(c) + 1)

        if not (counts_of(cuts) > 0).all():
            values = np.unique(p)  # increasing
            at_or_above = 1.0 - np.searchsorted(np.sort(p), values, side="left") / len(p)
            picked = {float(values[np.argmin(np.abs(at_or_above - s))]) for s in shares}
            cuts = sorted(picked, reverse=True)
        cuts = list(cuts)
        while cuts:
            counts = np.bincount(np.searchsorted(-np.asarray(cuts), -p, side="left"), minlength=len(cuts) + 1)
            empty = np.flatnonzero(counts == 0)
            if not len(empty):
                break
            cuts.pop(min(int(empty[0]), len(cuts) - 1))
        if len(cuts) + 1 < asked:
            distinct = len(np.unique(p))
            if distinct == 1:
                msg = (
                    f"every training lead gets the same score ({len(p)} leads): the model does not tell leads "
                    f"apart, so wherever its tiers are shown there is one tier instead of {asked}"
                )
            else:
                used = ", ".join(
                    f"{lab}: {c / len(p):.0%}" for lab, c in zip(self.tier_labels, counts_of(cuts), strict=False)
                )
                n_used = len(cuts) + 1
                msg = (
                    f"the model's scores tie too often for {asked} tiers of the asked sizes ({len(p):,} training "
                    f"leads, {distinct:,} distinct scores): wherever its tiers are shown, {n_used} "
                    f"tier{'s are' if n_used > 1 else ' is'} used instead ({used} of the leads); leads with the same "
                    "score cannot be told apart"
                )
            warnings.warn(msg, TierWarning, stacklevel=4)  # _untied <- _tier_thresholds <- fit <- caller
        return cuts

    def tiers_of(self, p: Any) -> pd.Series:
        """Tier of given probabilities (see `tiers`)."""
        check_is_fitted(self)
        q = np.asarray(p, dtype="float64")
        cuts = self.tier_thresholds_.to_numpy()[:-1]
        pos = np.searchsorted(-cuts, -q, side="left")  # a score equal to a cut belongs to the better tier
        labels = list(self.tier_thresholds_.index)  # the tiers in use (tied scores may leave fewer)
        return pd.Series(pd.Categorical.from_codes(pos, categories=labels, ordered=True), name="tier")

    def tiers(self, X: Any) -> pd.Series:
        """Tier of each row: the first tier holds the best-scored leads.

        Quantile tiers cut at quantiles of the scores of the training rows (``tier_thresholds_``), so on data like
        the training data each tier holds its share of the leads; probability tiers cut at ``tier_cuts``. Where
        scores tie so often that a quantile tier would hold no training lead (e.g. every lead scored the same, so
        "A" would hold all of them), `fit` merges it with the next and warns (`TierWarning`): fewer tiers are used,
        the first labels of ``tier_labels``.

        Parameters
        ----------
        X : pandas.DataFrame

        Returns
        -------
        pandas.Series
            Ordered categorical (best tier first), aligned to X's index.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(2)
        >>> X = pd.DataFrame({"score": rng.normal(size=2000)})
        >>> y = rng.random(2000) < 1 / (1 + np.exp(-2 * X["score"]))
        >>> model = LeadScoringModel(tier_labels=("hot", "warm", "cold"), tier_cuts=(0.2, 0.5)).fit(X, y)
        >>> t = model.tiers(X)
        >>> y.groupby(t, observed=True).mean().is_monotonic_decreasing
        True
        """
        Xf = _as_frame(X)
        out = self.tiers_of(self._proba(self._check_X(Xf)))
        out.index = Xf.index
        return out

    # ------------------------------------------------------------------ explain
    def _effects(self, Z: np.ndarray, est: Any | None = None) -> np.ndarray:
        """Change in the base model's log-odds when each feature is set to its reference, per row (n, p)."""
        est = self.estimator_ if est is None else est
        enc = self._encoder_
        ref = enc.reference
        n, p = Z.shape
        out = np.zeros((n, p))
        if self.estimator == "logistic":
            coef = np.asarray(est.coef_, dtype="float64").ravel()
            pos = 0
            for j, med, log, _mean, sd, has_missing in self._design_["num"]:
                miss = np.isnan(Z[:, j])
                v = np.where(miss, med, Z[:, j])
                t = _slog if log else (lambda x: x)
                out[:, j] = coef[pos] * (t(v) - t(ref[j])) / sd
                pos += 1
                if has_missing:
                    out[:, j] += coef[pos] * miss
                    pos += 1
            for j, k in self._design_["cat"]:
                c = coef[pos : pos + k]
                code = Z[:, j]
                val = np.where(np.isnan(code), 0.0, c[np.where(np.isnan(code), 0, code).astype(np.int64)])
                out[:, j] = val - c[int(ref[j])]
                pos += k
            return out
        base = self._raw(est, Z)
        batch = max(1, _ATTRIBUTION_BATCH // (p + 1))
        cols = np.arange(p)
        for start in range(0, n, batch):
            Zb = Z[start : start + batch]
            b = len(Zb)
            stacked = np.repeat(Zb[None, :, :], p, axis=0)  # (p, b, p)
            stacked[cols, :, cols] = ref[:, None]
            f = self._raw(est, stacked.reshape(p * b, p)).reshape(p, b)
            out[start : start + b] = (base[start : start + b][None, :] - f).T
        return out

    def explain(self, X: Any, top: int = 3) -> pd.DataFrame:
        """The strongest reasons behind each row's score, in plain words.

        A reason is a feature whose value moves the log-odds away from what the feature's reference value would
        give (see the module docstring), e.g. ``"lead_source = Referral raises the odds"`` or
        ``"engagement_score = 12 lowers the odds"``; the activity features the package derives are named in words
        (``"days since the last activity = 2 lowers the odds"``, `activity_features.feature_label`). Reasons are
        ranked by the size of the effect. Values that explain nothing to a reader are never reasons (the model still
        uses them in the score): identifiers and hashes, columns whose rows are mostly in rare values
        (``not_reasons_``), and a rare or new level (grouped into ``other``); the next strongest effect takes their
        place.

        Parameters
        ----------
        X : pandas.DataFrame
        top : int
            Reasons per row.

        Returns
        -------
        pandas.DataFrame
            Aligned to X's index: ``probability``, then ``reason_1..top`` (missing when fewer features move the
            score), ``feature_1..top`` and ``effect_1..top`` (change in log-odds; ``exp(effect)`` is the odds
            ratio against the reference value).

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(3)
        >>> X = pd.DataFrame({"source": rng.choice(["Web", "Referral"], 2000, p=[0.8, 0.2]),
        ...                   "visits": rng.poisson(3, 2000)})
        >>> y = rng.random(2000) < 1 / (1 + np.exp(-(-2 + 2 * (X["source"] == "Referral") + 0.1 * X["visits"])))
        >>> model = LeadScoringModel("logistic").fit(X, y)
        >>> model.explain(pd.DataFrame({"source": ["Referral"], "visits": [3]}), top=1).loc[0, "reason_1"]
        'source = Referral raises the odds'
        """
        if not isinstance(top, numbers.Integral) or top < 1:
            raise ValueError(f"top must be a positive integer, got {top!r}")
        Xf = _as_frame(X)
        Z = self._check_X(Xf)
        E = self._reason_effects(self._effects(Z), Z)
        n, p = E.shape
        k = min(int(top), p)
        order = np.argsort(-np.abs(E), axis=1, kind="stable")[:, :k]
        out = pd.DataFrame({"probability": self._proba(Z)}, index=Xf.index)
        names = np.asarray(self.feature_names_, dtype=object)
        rows = np.arange(n)
        for r in range(int(top)):
            reason = np.full(n, None, dtype=object)
            feature = np.full(n, None, dtype=object)
            effect = np.full(n, np.nan)
            if r < k:
                j = order[:, r]
                e = E[rows, j]
                moving = np.abs(e) > 1e-9
                for jj in np.unique(j[moving]):
                    sel = np.flatnonzero(moving & (j == jj))
                    vals = self._encoder_.display(Xf, int(jj), sel, Z[sel, jj])
                    verb = np.where(e[sel] > 0, "raises", "lowers")
                    said = feature_label(names[jj])  # the package's activity features in words
                    reason[sel] = [f"{said} = {v} {w} the odds" for v, w in zip(vals, verb, strict=True)]
                    feature[sel] = names[jj]
                effect = np.where(moving, e, np.nan)
            out[f"reason_{r + 1}"] = pd.Series(reason, index=Xf.index, dtype="str")
            out[f"feature_{r + 1}"] = pd.Series(feature, index=Xf.index, dtype="str")
            out[f"effect_{r + 1}"] = effect
        cols = ["probability"] + [f"{c}_{r + 1}" for c in ("reason", "feature", "effect") for r in range(int(top))]
        return out[cols]

    def _reason_effects(self, E: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """The effects `E` with zeros where a value is no reason (identifiers, rare or new levels)."""
        E = E.copy()
        for j, f in enumerate(self._encoder_.features):
            if f.no_reason is not None:
                E[:, j] = 0.0
            elif f.kind == "categorical":
                code = Z[:, j]
                rare = np.isnan(code)
                if f.other_code is not None:
                    rare |= code == f.other_code
                E[rare, j] = 0.0
        return E

    # ------------------------------------------------------------------ summary
    def _importance(self) -> pd.DataFrame:
        """Permutation importance (AUC drop, log-loss rise) and mean |effect| on the kept validation rows."""
        est = self.validation_estimator_
        Zs, ys = self._importance_rows_
        rng = np.random.default_rng(self.random_state)
        m, p = Zs.shape

        def metrics(raw: np.ndarray) -> tuple[float, float]:
            sc = _score_metrics(ys, 1.0 / (1.0 + np.exp(-raw)))
            return sc["roc_auc"], sc["log_loss"]

        auc0, ll0 = metrics(self._raw(est, Zs))
        drops = np.zeros((p, _REPEATS))
        rises = np.zeros((p, _REPEATS))
        cols = np.arange(p)
        per_batch = max(1, _ATTRIBUTION_BATCH // max(m, 1))  # features shuffled per prediction call
        for r in range(_REPEATS):
            for start in range(0, p, per_batch):
                js = cols[start : start + per_batch]
                stacked = np.repeat(Zs[None, :, :], len(js), axis=0)  # (k, m, p): block i shuffles feature js[i]
                for i, j in enumerate(js):
                    stacked[i, :, j] = Zs[rng.permutation(m), j]
                raw = self._raw(est, stacked.reshape(len(js) * m, p)).reshape(len(js), m)
                for i, j in enumerate(js):
                    a, ll = metrics(raw[i])
                    drops[j, r], rises[j, r] = auc0 - a, ll - ll0
        mae = np.abs(self._effects(Zs[:_EFFECT_ROWS], est)).mean(axis=0)
        enc = self._encoder_
        table = pd.DataFrame(
            {
                "feature": pd.Series(enc.names, dtype="str"),
                "source": pd.Series([f.source for f in enc.features], dtype="str"),
                "kind": pd.Series([f.kind for f in enc.features], dtype="str"),
                "importance": drops.mean(axis=1),
                "importance_std": drops.std(axis=1),
                "log_loss_increase": rises.mean(axis=1),
                "mean_abs_effect": mae,
                "single_feature_auc": self.feature_auc_.reindex(enc.names).to_numpy(),
                "reference": self.reference_.to_numpy(),
            }
        )
        return table.sort_values(["importance", "mean_abs_effect"], ascending=False, ignore_index=True)

    @property
    def summary(self) -> pd.DataFrame:
        """Global feature importance, most important first.

        Columns: ``feature``, ``source`` (its column in X), ``kind`` (numeric or categorical), ``importance``
        (mean drop in validation AUC when the feature is shuffled, 3 shuffles) and ``importance_std``,
        ``log_loss_increase`` (same, for the log loss), ``mean_abs_effect`` (mean absolute change in log-odds
        against the reference value, as in `explain`), ``single_feature_auc`` (the leakage check) and
        ``reference`` (the reference value). Computed on the validation rows (at most ``importance_rows`` of
        them), with the base model fitted without them, the first time it is asked for.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(4)
        >>> X = pd.DataFrame({"strong": rng.normal(size=3000), "noise": rng.normal(size=3000)})
        >>> y = rng.random(3000) < 1 / (1 + np.exp(-2 * X["strong"]))
        >>> LeadScoringModel().fit(X, y).summary["feature"].tolist()
        ['strong', 'noise']
        """
        check_is_fitted(self)
        if getattr(self, "_summary_cache", None) is None:
            self._summary_cache = self._importance()
        return self._summary_cache.copy()

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, X: Any, y: Any) -> pd.Series:
        """Scores of the model's probabilities against observed outcomes.

        Parameters
        ----------
        X : pandas.DataFrame
        y : array-like
            Outcomes with the labels of ``classes_``.

        Returns
        -------
        pandas.Series
            One `salesforecast.metrics.score_table` row: ``n``, ``base_rate``, ``roc_auc``, ``pr_auc``, ``brier``,
            ``log_loss``, ``top_decile_lift``, ``alift``, ``ks``.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(5)
        >>> X = pd.DataFrame({"score": rng.normal(size=4000)})
        >>> y = rng.random(4000) < 1 / (1 + np.exp(-2 * X["score"]))
        >>> model = LeadScoringModel().fit(X[:3000], y[:3000])
        >>> m = model.evaluate(X[3000:], y[3000:])
        >>> bool(m["roc_auc"] > 0.8), int(m["n"])
        (True, 1000)
        """
        check_is_fitted(self)
        Xf = _as_frame(X)
        ys = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)
        if len(ys) != len(Xf):
            raise ValueError(f"X has {len(Xf)} rows but y has {len(ys)} values")
        bad = ~np.isin(ys, self.classes_)
        if bad.any():
            raise ValueError(f"y holds {ys[bad][0]!r}, not one of the fitted outcomes {self.classes_.tolist()}")
        yb = (ys == self.classes_[1]).astype(np.int64)
        return score_table(yb, self._proba(self._check_X(Xf))).iloc[0].rename("value")

    # ------------------------------------------------------------------ rolling origin
    def rolling_origin(
        self,
        X: Any,
        y: Any,
        n_splits: int = 5,
        test_size: float | int | None = None,
        *,
        return_predictions: bool = False,
    ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
        """Rolling-origin evaluation: retrain on all earlier rows, score the next block, move on.

        Rows are put in time order (by ``date_column``, else as given). The last ``n_splits`` blocks of
        `test_size` rows are the test blocks; before each, a fresh copy of this model (same settings) is fitted
        on every earlier row (an expanding window). Rows sharing a date never straddle a boundary: the boundary
        moves back to the first row of that date. The model itself is left as it is.

        Parameters
        ----------
        X : pandas.DataFrame
        y : array-like
        n_splits : int
            Test blocks (and models fitted).
        test_size : float or int, optional
            Rows per test block: a share of all rows (float) or a count; default ``n // (n_splits + 1)``.
        return_predictions : bool
            Also return each test row's out-of-time probability.

        Returns
        -------
        folds : pandas.DataFrame
            One row per fold: ``fold``, positions in time order ``train_start, train_stop, test_start, test_stop``
            (half-open), ``n_train``, ``test_from``/``test_to`` (first and last date, with a date column), the
            fitted calibration, and the metrics of `evaluate`.
        predictions : pandas.DataFrame
            With `return_predictions`: indexed like the test rows of X, in time order: ``fold`` and
            ``probability`` (from the model of that fold).

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(6)
        >>> X = pd.DataFrame({"score": rng.normal(size=3000)})
        >>> y = rng.random(3000) < 1 / (1 + np.exp(-2 * X["score"]))
        >>> folds = LeadScoringModel().rolling_origin(X, y, n_splits=3, test_size=0.1)
        >>> folds[["train_stop", "test_start", "test_stop"]].to_numpy().tolist()
        [[2100, 2100, 2400], [2400, 2400, 2700], [2700, 2700, 3000]]
        """
        Xf = _as_frame(X)
        ys = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)
        n = len(Xf)
        if len(ys) != n:
            raise ValueError(f"X has {n} rows but y has {len(ys)} values")
        if not isinstance(n_splits, numbers.Integral) or n_splits < 1:
            raise ValueError(f"n_splits must be a positive integer, got {n_splits!r}")
        if test_size is None:
            size = n // (n_splits + 1)
        elif isinstance(test_size, numbers.Integral):
            size = int(test_size)
        elif isinstance(test_size, numbers.Real) and 0 < test_size < 1:
            size = int(round(test_size * n))
        else:
            raise ValueError(f"test_size must be a share in (0, 1) or a row count, got {test_size!r}")
        if size < 1 or n - n_splits * size < 20:
            raise ValueError(f"{n_splits} test blocks of {size} rows leave too few earlier rows out of {n} to train on")
        order, dates = self._time_order(Xf)
        edges = [self._boundary(n - (n_splits - i) * size, dates) for i in range(n_splits)] + [n]
        rows = []
        preds = []
        for i in range(n_splits):
            a, b = edges[i], edges[i + 1]
            tr, te = order[:a], order[a:b]
            if len(te) == 0:
                raise ValueError(f"fold {i + 1} has no test rows (dates shared by the whole block); use larger blocks")
            model = clone(self).fit(Xf.iloc[tr], ys[tr])
            row: dict[str, Any] = {
                "fold": i + 1,
                "train_start": 0,
                "train_stop": a,
                "test_start": a,
                "test_stop": b,
                "n_train": a,
            }
            if dates is not None:
                row["test_from"] = pd.Timestamp(dates[a], unit="us")
                row["test_to"] = pd.Timestamp(dates[b - 1], unit="us")
            row["calibration"] = model.calibration_
            row.update(model.evaluate(Xf.iloc[te], ys[te]).to_dict())
            rows.append(row)
            if return_predictions:
                p = model.predict_proba(Xf.iloc[te]).to_numpy()
                preds.append(pd.DataFrame({"fold": i + 1, "probability": p}, index=Xf.index[te]))
        out = pd.DataFrame(rows)
        out["n"] = out["n"].astype(np.int64)
        return (out, pd.concat(preds)) if return_predictions else out
