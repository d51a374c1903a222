"""Opportunity scoring: the win probability of each open deal, learned from past pipeline snapshots.

A deal's chance of being won changes while it moves: the same deal is a weak prospect in week 2 and a likely win
in week 20. So the unit of learning is a *snapshot row*, one open deal at one date, described only by what was
known at that date, and labelled with what happened to it later. Leakage-free by construction:

Features (`opportunity_features`)
    Built from `salesforecast.snapshots.pipeline_snapshots` and `salesforecast.history.DealHistory`; every
    value of the row at date ``t`` depends only on history rows with ``changed_at <= t`` (a change made at ``t`` is
    known at ``t``, the snapshots' convention), so the features of ``t`` are the same with or without the data
    after ``t``. Two exceptions come from the canonical tables themselves: static columns (below), and an amount
    or close date the history did not record, which the snapshots fill from the history's first value or the
    current one (see `salesforecast.snapshots`).

    - The state at ``t``: ``stage``, ``stage_index`` (its position among the open stages, 0-based; missing for an
      unknown stage), ``stage_probability`` (the process map's default probability of the stage),
      ``forecast_category``, ``amount``, ``days_in_stage``, ``age_days``, ``days_since_change`` (since the last
      history row), ``days_to_close`` (from ``t`` to the close date as it stood; negative when overdue),
      ``period``/``period_end`` (the fiscal period containing ``t``, its exclusive end), ``days_to_period_end``
      and ``close_in_period`` (the close date as it stood falls before ``period_end``, overdue dates included).
    - The history so far (history rows up to ``t``, with the definitions of `salesforecast.history`):
      ``close_date_pushes``, ``days_pushed``, ``close_date_pull_ins``, ``skipped_stages``, ``regressions``,
      ``stage_changes``, ``amount_changes`` and ``amount_change_pct`` (amount at ``t`` over the amount at creation,
      minus 1). They equal the counts of ``deal_adherence(known_at(data, t), as_of=t)``.
    - The owner's track record: ``owner_closed_deals`` and ``owner_won_deals``, the owner's deals whose state at
      ``t`` was closed (lost or won; a deal closed at ``t`` counts), and ``owner_win_rate``, shrunk toward the
      overall rate at ``t``: ``(won + m * overall) / (closed + m)`` with ``m = prior_strength``. An open deal is
      never among its own owner's closed deals.
    - Static opportunity columns (``owner, team, region, segment, product, lead_source, ...``, and ``from_lead``
      when there is a ``lead_id``): the canonical tables do not historise them, so their *current* values are used.
      A column filled in only when a deal closes (a loss reason, say) would leak the outcome: leave it out with
      ``columns=``.
    - What was done on the deal so far, when the data have an ``activities`` table naming deals
      (`salesforecast.models.activity_features.deal_activity_features`): ``activities`` and ``activities_<type>``
      (the types the exit criteria name, else call, meeting, email), ``activities_14d``, ``days_since_activity``
      and, with exit criteria, ``stage_criteria_met`` (the share of the current stage's criteria met by ``t``, by
      `salesforecast.activities.criteria_check`). Only activities at or before ``t`` count. Without activities
      these columns are absent and the model is exactly the one without them.

Targets (`opportunity_targets`)
    ``horizon="ever"``: the deal is won in the end (its state at ``known_by``, the data end by default, is won);
    known only for deals closed by then. ``horizon="period"``: the deal is won before the end of the fiscal period
    containing the snapshot date (its state just before ``period_end`` is won); known when the deal was closed
    then, or when the period ended by ``known_by`` (a deal still open at the period end was not won in it).

Model (`OpportunityScoringModel`)
    ``fit(data, as_of)`` uses only the data known at ``as_of`` (`salesforecast.snapshots.known_at`): snapshot rows at
    dates before ``as_of`` (every ``snapshot_freq``), labelled with outcomes known at ``as_of``. Rows whose outcome is
    still unknown are left out and counted. The classifier is `salesforecast.models.lead_scoring.LeadScoringModel`
    on the feature columns, with the latest snapshot dates as its validation rows. ``owner_closed_deals`` is left
    out of the classifier by default: it only grows with time, so later dates fall outside the range it was
    trained on (the owner's record enters through ``owner_win_rate``). With more training rows than ``max_rows``
    (75,000 by default), it learns from a sample of them, stratified by snapshot date and outcome in proportion
    (no weights needed), and builds the features of the sampled rows only; the summary says so (``learnt_from``).
Censoring, and why ``min_known``
    At a snapshot date shortly before ``as_of`` the outcomes known are those of the deals that closed fast: early
    losses and quick wins, while slow deals (often the future wins) are still open. Training on them teaches the
    model that recent-looking deals lose. A snapshot date where the share of known outcomes is below ``min_known``
    is therefore left out entirely. For ``"period"`` every row of a period that ended by ``as_of`` is known, so
    only dates of the current period are affected. For ``"ever"`` the bias shrinks but never vanishes (a few very
    long deals stay open); on the synthetic data of `salesforecast.datasets.generate`, whose final outcome depends
    on little beyond the stage (a Markov chain with a small stall effect), the learned "ever" model ranks later
    deals slightly *worse* than the stage's default probability (AUC about 0.01-0.02 lower), while the "period"
    model, which can use the close date and the time left in the period, ranks them clearly better.

Vectorised throughout: one pass over the history with grouped cumulative counts, joins by binary search, and the
owners' records by a difference array over (owner, date); Python loops run only over the distinct fiscal periods of
the snapshot dates and over the handful of history counters.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from salesforecast._utils import DAY_US, NAT, isin, to_us, us
from salesforecast.activities import READ_COLUMNS as ACTIVITY_COLUMNS
from salesforecast.history import DealHistory
from salesforecast.models.activity_features import deal_activity_features, deal_feature_names
from salesforecast.schema import CRMData
from salesforecast.snapshots import LEAD_CUT_COLUMNS, known_at, pipeline_snapshots, to_dates

__all__ = [
    "HISTORY_FEATURES",
    "MAX_ROWS",
    "STATE_FEATURES",
    "OpportunityScoringModel",
    "opportunity_features",
    "opportunity_targets",
]

#: Default most (date, deal) rows `OpportunityScoringModel` learns from: above it, a sample of them (see ``max_rows``).
MAX_ROWS = 75_000

#: The smallest ``max_rows`` accepted: fewer rows leave too few for the classifier's validation.
MIN_ROWS = 1_000

#: Opportunity columns that hold the deal's changing state (taken from the history, never as current values).
_STATE_COLUMNS = (
    "opportunity_id",
    "created_at",
    "stage",
    "amount",
    "close_date",
    "is_closed",
    "is_won",
    "forecast_category",
)

#: Numeric features of the state at the snapshot date.
STATE_FEATURES: tuple[str, ...] = (
    "stage_index",
    "stage_probability",
    "amount",
    "days_in_stage",
    "age_days",
    "days_since_change",
    "days_to_close",
    "days_to_period_end",
    "close_in_period",
)

#: Numeric features of the history up to the snapshot date.
HISTORY_FEATURES: tuple[str, ...] = (
    "close_date_pushes",
    "days_pushed",
    "close_date_pull_ins",
    "skipped_stages",
    "regressions",
    "stage_changes",
    "amount_changes",
    "amount_change_pct",
    "owner_closed_deals",
    "owner_win_rate",
)

#: Columns of the feature table that are keys, dates or counts behind a rate, never model inputs.
_NOT_FEATURES = (
    "as_of",
    "opportunity_id",
    "close_date",
    "created_at",
    "stage_entered_at",
    "period",
    "period_end",
    "owner_won_deals",
)


# ------------------------------------------------------------------------------------------- helpers
def _period_ends(data: CRMData, dates: pd.DatetimeIndex, period: str) -> tuple[pd.Series, np.ndarray]:
    """Fiscal period label and exclusive end (us) of each date (a loop over the distinct periods)."""
    cal = data.process.calendar
    labels = cal.period(dates, period)
    ends = {lab: to_us(cal.period_bounds(lab)[1]) for lab in labels.unique()}
    return labels.reset_index(drop=True), np.array([ends[x] for x in labels], dtype=np.int64)


def _static_columns(data: CRMData, columns: Sequence[str] | None) -> list[str]:
    opps = data.opportunities
    if columns is None:
        return [c for c in opps.columns if c not in _STATE_COLUMNS]
    columns = list(columns)
    missing = [c for c in columns if c not in opps.columns]
    if missing:
        raise KeyError(f"opportunities has no column {missing[0]!r}; available: {list(opps.columns)}")
    bad = [c for c in columns if c in _STATE_COLUMNS]
    if bad:
        raise ValueError(
            f"columns: {bad[0]!r} is part of the deal's changing state, which comes from stage_history as it stood;"
            f" static columns are the others: {[c for c in opps.columns if c not in _STATE_COLUMNS]}"
        )
    return columns


# ------------------------------------------------------------------------------------------- features
def opportunity_features(
    data: CRMData,
    as_of: Any,
    columns: Sequence[str] | None = None,
    period: Literal["month", "quarter", "year"] = "quarter",
    prior_strength: float = 20.0,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
    history: DealHistory | None = None,
) -> pd.DataFrame:
    """One row per (date, open opportunity), with features known at that date only.

    The features and their definitions are in the docstring of this module,
    `salesforecast.models.opportunity_scoring`.

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities and stage_history).
    as_of : date or sequence of dates
        The snapshot dates (as in `salesforecast.snapshots.pipeline_snapshots`: a date means midnight at its start).
    columns : sequence of str, optional
        Static opportunity columns to copy (default: every column of opportunities that is not part of the deal's
        state: ``opportunity_id, created_at, stage, amount, close_date, is_closed, is_won, forecast_category``).
    period : {"month", "quarter", "year"}
        Fiscal period for ``period``, ``period_end``, ``days_to_period_end`` and ``close_in_period``.
    prior_strength : float
        Pseudo-deals ``m`` pulling each owner's win rate toward the overall rate (0: the raw rate).
    rows : tuple of numpy.ndarray, optional
        Only these snapshot rows (``rows`` of `salesforecast.snapshots.pipeline_snapshots`: a subset of
        ``DealHistory.snapshot_rows(dates)``, in its order); each row's features are the same as among all rows.
    history : DealHistory, optional
        ``DealHistory.from_data(data)``, when the caller has it already (it is not built again).

    Returns
    -------
    pandas.DataFrame
        The rows of ``pipeline_snapshots(data, as_of, columns=...)`` in the same order (``as_of, opportunity_id,
        stage, amount, close_date, forecast_category, created_at, stage_entered_at, days_in_stage, age_days`` and
        the static columns), plus `STATE_FEATURES`, `HISTORY_FEATURES`, ``owner_won_deals``, ``period``,
        ``period_end`` and ``from_lead`` (with a ``lead_id`` column), and the activity features when the data
        have activities on deals (see this module's docstring).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> f = opportunity_features(load_sample(), ["2024-01-01", "2024-07-01"])
    >>> f.groupby("as_of").size().tolist()
    [129, 143]
    >>> row = f.iloc[0]
    >>> row["stage"], int(row["close_date_pushes"]), int(row["owner_closed_deals"]), int(row["owner_won_deals"])
    ('Negotiation/Review', 2, 8, 2)
    """
    if not isinstance(prior_strength, numbers.Real) or not prior_strength >= 0 or not math.isfinite(prior_strength):
        raise ValueError(f"prior_strength must be a number >= 0 (pseudo-deals), got {prior_strength!r}")
    process = data.process
    dates = to_dates(as_of)
    static = _static_columns(data, columns)
    h = DealHistory.from_data(data) if history is None else history
    # the history's intervals when it is this data's (not rebuilt: millions of rows at 1M deals)
    snap = pipeline_snapshots(
        data, dates, columns=static, rows=rows, intervals=h.intervals if h.built_from(data) else None
    )
    t = us(snap["as_of"])
    row = h.row_at(snap["opportunity_id"], t)
    if (row < 0).any():  # cannot happen: every snapshot row comes from an interval
        raise RuntimeError("opportunity_features: a snapshot row has no history interval")
    out = snap
    k = h.k
    si = h.stage[row]
    out["stage_index"] = np.where((si >= 0) & (si < k), si, np.nan)
    out["stage_probability"] = out["stage"].map(process.probability).astype("float64")
    out["days_since_change"] = (t - h.start[row]) / DAY_US
    cd = us(out["close_date"])
    out["days_to_close"] = np.where(cd == NAT, np.nan, (cd - t) / DAY_US)
    date_pos = np.searchsorted(dates.asi8, t)
    labels, ends = _period_ends(data, dates, period)
    end_t = ends[date_pos]
    out["period"] = labels.take(date_pos).reset_index(drop=True)
    out["period_end"] = end_t.view("datetime64[us]")
    out["days_to_period_end"] = (end_t - t) / DAY_US
    out["close_in_period"] = np.where(cd == NAT, np.nan, (cd < end_t).astype("float64"))
    for name, counts in h.so_far_at(row).items():
        out[name] = counts
    init = h.amount_initial[row]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["amount_change_pct"] = np.where(init > 0, out["amount"].to_numpy(dtype="float64") / init - 1.0, np.nan)
    closed, won = _owner_records(data, h, dates, out.get("owner"), date_pos)
    out["owner_closed_deals"] = closed
    out["owner_won_deals"] = won
    overall = _overall_rate(data, h, dates)[date_pos]
    m = float(prior_strength)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["owner_win_rate"] = np.where(closed + m > 0, (won + m * overall) / (closed + m), np.nan)
    if "lead_id" in out.columns:
        out["from_lead"] = out["lead_id"].notna().to_numpy()
    activities = data.activities
    if activities is not None and len(out) and {"opportunity_id", "occurred_at"} <= set(activities.columns):
        # each row's features read its own deal's activities up to its date, so the others (other deals', later
        # ones: most of the table for a few dates or a fit's sample) need not be copied or sorted; without any
        # left, the full table gives the same zeros
        theirs = isin(activities["opportunity_id"], out["opportunity_id"]).to_numpy(dtype=bool) & (
            activities["occurred_at"] <= out["as_of"].max()
        ).to_numpy(dtype=bool)
        if theirs.any() and not theirs.all():
            activities = activities.loc[theirs, ["opportunity_id", "type", "occurred_at"]]
    acts = deal_activity_features(activities, process, out)
    for name in acts.columns:
        out[name] = acts[name].to_numpy()
    return out


def _closed_counts(h: DealHistory, dates: pd.DatetimeIndex, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, ...]:
    """(closed, won) deals per group and date: intervals in a closed stage covering the date (difference array)."""
    closed_row = h.stage >= h.k
    won_row = np.isin(h.stage, h.won_codes)
    d = dates.asi8
    lo = np.searchsorted(d, h.start, side="left")
    hi = np.searchsorted(d, h.end, side="left")
    width = len(d) + 1
    out = []
    for mask in (closed_row, won_row):
        g = group[mask]
        ok = g >= 0
        flat_lo = g[ok] * width + lo[mask][ok]
        flat_hi = g[ok] * width + hi[mask][ok]
        diff = np.bincount(flat_lo, minlength=n_groups * width) - np.bincount(flat_hi, minlength=n_groups * width)
        out.append(np.cumsum(diff.reshape(n_groups, width), axis=1)[:, : len(d)])
    return tuple(out)


def _owner_records(
    data: CRMData, h: DealHistory, dates: pd.DatetimeIndex, owner: pd.Series | None, date_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closed and won deals of each snapshot row's owner at its date (zeros without an owner column)."""
    if owner is None or "owner" not in data.opportunities.columns:
        zeros = np.zeros(len(date_pos), dtype=np.int64)
        return zeros, zeros
    opps = data.opportunities
    owner_codes, owners = pd.factorize(opps["owner"])  # -1 for a missing owner
    deal_owner = owner_codes[h.deal_pos]
    row_owner = deal_owner[h.deal]
    closed, won = _closed_counts(h, dates, row_owner, max(len(owners), 1))
    snap_owner = pd.Index(owners).get_indexer(owner)
    has = snap_owner >= 0
    c = np.where(has, closed[np.maximum(snap_owner, 0), date_pos], 0)
    w = np.where(has, won[np.maximum(snap_owner, 0), date_pos], 0)
    return c.astype(np.int64), w.astype(np.int64)


def _overall_rate(data: CRMData, h: DealHistory, dates: pd.DatetimeIndex) -> np.ndarray:
    """Won / closed deals of all owners at each date (missing before the first close)."""
    closed, won = _closed_counts(h, dates, np.zeros(len(h.stage), dtype=np.int64), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(closed[0] > 0, won[0] / closed[0], np.nan)


# ------------------------------------------------------------------------------------------- targets
def opportunity_targets(
    data: CRMData,
    features: pd.DataFrame,
    horizon: Literal["ever", "period"] = "ever",
    known_by: Any = None,
) -> pd.DataFrame:
    """What became of each snapshot row: won or not, and whether that is known yet.

    - ``horizon="ever"``: ``target = 1`` when the deal's state at `known_by` is a won stage, 0 when it is a lost
      stage; unknown (missing) when it is still open then.
    - ``horizon="period"``: ``target = 1`` when the deal's state just before ``period_end`` (the end of the fiscal
      period containing the snapshot date, from `opportunity_features`) is a won stage, i.e. it was won before the
      period ended; 0 when it was lost then, or still open at a ``period_end`` that is not after `known_by`; unknown
      when it is open at `known_by`, before the period ended.

    Parameters
    ----------
    data : CRMData
        The data holding the outcomes (later than the features, by nature).
    features : pandas.DataFrame
        Output of `opportunity_features` (columns ``as_of, opportunity_id`` and, for ``"period"``,
        ``period_end``).
    horizon : {"ever", "period"}
    known_by : date, optional
        Outcomes are read as known at this time (default ``data.as_of``, the data end); nothing after it is used.

    Returns
    -------
    pandas.DataFrame
        Aligned to `features` (same index): ``as_of, opportunity_id``, ``target`` (1.0, 0.0 or missing),
        ``known`` (bool), ``outcome`` (``won``, ``lost`` or ``open`` in the state read) and ``outcome_at`` (when the
        deal entered that closed stage; missing when open). ``attrs`` holds ``horizon``, ``known_by`` and
        ``n_unknown`` (rows whose outcome is not known yet: leave them out of training and scoring).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> f = opportunity_features(data, ["2024-01-01", "2025-12-01"])
    >>> t = opportunity_targets(data, f, horizon="ever")
    >>> int(t["known"].sum()), t.attrs["n_unknown"]
    (199, 88)
    >>> round(float(t.loc[t["known"], "target"].mean()), 3)
    0.342
    """
    if horizon not in ("ever", "period"):
        raise ValueError(f"horizon must be 'ever' or 'period', got {horizon!r}")
    for c in ("as_of", "opportunity_id") + (("period_end",) if horizon == "period" else ()):
        if c not in features.columns:
            raise KeyError(f"features has no column {c!r}; pass the output of opportunity_features")
    known_by = data.as_of if known_by is None else pd.Timestamp(known_by)
    h = DealHistory.from_data(data)
    end = us(features["period_end"]) if horizon == "period" else None
    won, closed, known, row = _outcomes(h, features["opportunity_id"], end, to_us(known_by))
    entered = h.entered[np.maximum(row, 0)]
    out = pd.DataFrame(
        {
            "as_of": features["as_of"].to_numpy(),
            "opportunity_id": features["opportunity_id"].to_numpy(),
            "target": np.where(known, won.astype("float64"), np.nan),
            "known": known,
            "outcome": pd.Series(np.where(won, "won", np.where(closed, "lost", "open")), dtype="str").to_numpy(),
            "outcome_at": np.where(closed, entered, NAT).view("datetime64[us]"),
        },
        index=features.index,
    )
    out["outcome"] = out["outcome"].astype("str")
    out.attrs.update({"horizon": horizon, "known_by": known_by, "n_unknown": int((~known).sum())})
    return out


def _outcomes(
    h: DealHistory, ids: Any, period_end: np.ndarray | None, known_by: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``won, closed, known`` (bool) and the history row read, per (deal, period end) (`opportunity_targets`).

    `period_end` (int64 us, one per id) for ``horizon="period"``; None for ``"ever"`` (the state at `known_by`).
    """
    n = len(ids)
    if period_end is None:
        when = np.full(n, known_by, dtype=np.int64)
        ended = np.zeros(n, dtype=bool)
    else:
        when = np.minimum(period_end - 1, known_by)
        ended = period_end <= known_by
    row = h.row_at(ids, when)
    si = np.where(row >= 0, h.stage[np.maximum(row, 0)], -1)
    won = np.isin(si, h.won_codes)
    closed = si >= h.k
    return won, closed, closed | ended, row


def _row_outcomes(
    h: DealHistory, deal: np.ndarray, date_pos: np.ndarray, ends: np.ndarray | None, known_by: int
) -> tuple[np.ndarray, np.ndarray]:
    """``known`` and ``won`` of snapshot rows given by deal code and date position (`opportunity_targets`' rules).

    The outcome depends on the deal and the end of the period of the date only (``"period"``; on the deal only for
    ``"ever"``: `ends` None), so it is read once per distinct (deal, period end) and spread back to the rows.
    """
    if ends is None:
        pair_end = np.zeros(len(deal), dtype=np.int64)
    else:
        _, pair_end = np.unique(ends, return_inverse=True)
        pair_end = pair_end.reshape(-1)[date_pos]
    width = int(pair_end.max()) + 1 if len(pair_end) else 1
    pairs, inverse = np.unique(deal * width + pair_end, return_inverse=True)
    end_values = None if ends is None else np.unique(ends)[pairs % width]
    won, _, known, _ = _outcomes(h, h.ids.take(pairs // width), end_values, known_by)
    inverse = inverse.reshape(-1)
    return known[inverse], won[inverse]


def _proportional_sample(strata: np.ndarray, n: int, random_state: Any) -> np.ndarray:
    """Positions of a sample of `n` rows, each stratum holding its share of them (sorted positions).

    Proportional allocation (largest remainders, ties to the earlier stratum) then a uniform draw without
    replacement within each stratum: every row has the same chance ``n / len(strata)`` up to the rounding of one
    row per stratum, so the sample needs no weights (each row stands for ``len(strata) / n`` rows).
    """
    codes, counts = np.unique(strata, return_inverse=True, return_counts=True)[1:]
    codes = codes.reshape(-1)
    exact = counts * (n / len(strata))
    quota = np.floor(exact).astype(np.int64)
    extra = n - int(quota.sum())
    if extra > 0:
        quota[np.argsort(-(exact - quota), kind="stable")[:extra]] += 1
    keys = check_random_state(random_state).random_sample(len(strata))
    order = np.lexsort((keys, codes))  # by stratum, then at random within it
    first = np.cumsum(counts) - counts
    rank = np.arange(len(strata)) - np.repeat(first, counts)
    return np.sort(order[rank < np.repeat(quota, counts)])


# ------------------------------------------------------------------------------------------- model
def _flagged(classifier: Any) -> dict[str, float]:
    """Features of a fitted `LeadScoringModel` whose single-feature AUC passes its leakage guard (highest first)."""
    guard = getattr(classifier, "leakage_auc", None)
    auc = getattr(classifier, "feature_auc_", None)
    if guard is None or auc is None:
        return {}
    over = auc[auc > guard].sort_values(ascending=False)
    return {str(k): float(v) for k, v in over.items()}


class OpportunityScoringModel(BaseEstimator):
    """Win probability of each open opportunity, learned from past pipeline snapshots without leakage.

    Each training row is an open deal at a past snapshot date, described by `opportunity_features` (what was
    known then) and labelled by `opportunity_targets` (what became of it, as known at the fit's ``as_of``). The
    classifier is `salesforecast.models.lead_scoring.LeadScoringModel`. See `salesforecast.models.opportunity_scoring`
    for every definition.

    Parameters
    ----------
    target : {"ever", "period"}
        ``"ever"``: the deal is won at all; ``"period"``: it is won before the end of the fiscal period containing
        the scoring date.
    estimator : {"hgb", "logistic"}
        Passed to `LeadScoringModel`: gradient-boosted trees or a regularised logistic regression.
    snapshot_freq : str
        Pandas frequency of the training snapshot dates (``"W-MON"``: Mondays at midnight; ``"MS"``: month starts).
    period : {"month", "quarter", "year"}
        Fiscal period of the ``"period"`` target and of the period features.
    lookback_days : float, optional
        Train on snapshot dates in the last `lookback_days` days before ``as_of`` only (default: all).
    min_known : float
        Snapshot dates where the share of rows with a known outcome is below this are left out (see the module
        docstring); from 0 (keep every known row) to 1.
    prior_strength : float
        Shrinkage of the owners' win rates, in pseudo-deals (see `opportunity_features`).
    columns : sequence of str, optional
        Static opportunity columns (see `opportunity_features`).
    exclude : sequence of str
        Feature-table columns never given to the classifier: identifiers, and ``owner_closed_deals`` (it grows with
        time; the owner enters through ``owner_win_rate``).
    model_params : dict, optional
        Further keyword arguments of `LeadScoringModel` (e.g. ``{"calibration": "isotonic"}``).
    random_state : int, optional
        Passed to `LeadScoringModel` when it takes one, and the seed of the sample of ``max_rows`` (the same data,
        settings and seed give the same fit).
    max_rows : int or None
        The most training rows (known (date, deal) rows at the dates used) the classifier learns from (default
        `MAX_ROWS`, at least 1,000; None: all). Above it, a random sample of `max_rows` of them, stratified by
        snapshot date and outcome with proportional allocation: every date keeps its share of the rows, so the
        time left in the period (``days_to_period_end``) and the latest dates the classifier validates on keep
        theirs, and within a date the won and lost rows keep theirs, so the sample's event rate is the training
        rows' (to one row per stratum) and each row stands for the same number of rows: the probabilities need no
        reweighting. Only the sampled rows' features are built, so memory follows `max_rows`, not the snapshot
        count. The rows of a deal at consecutive weekly dates are close to copies of each other, which is why a
        sample loses little (see ``benchmarks/README.md`` for the backtest accuracy with and without it).

    Attributes
    ----------
    model_ : LeadScoringModel
        The fitted classifier.
    feature_names_ : list of str
        The columns it uses.
    as_of_ : pandas.Timestamp
        The fit's data end.
    training_ : pandas.DataFrame
        One row per snapshot date with open deals: ``as_of, open_deals, known, share_known, used, positives,
        sampled`` (``sampled``: the rows learnt from, ``known`` at a used date unless ``max_rows`` sampled them).
    n_unknown_ : int
        Snapshot rows (at the dates used) left out because their outcome was unknown at ``as_of``.
    n_known_ : int
        Training rows: snapshot rows with a known outcome at the dates used.
    n_train_ : int
        The rows the classifier learnt from: ``n_known_``, or ``max_rows`` when it sampled them.
    process_ : SalesProcess
    leaky_features_ : dict
        Feature -> single-feature AUC of the features the classifier's leakage guard flagged (above its
        ``leakage_auc``; `LeakageWarning`): each alone separates won from lost rows, which a feature known before
        the outcome rarely does. In a history that never recorded past close dates, ``close_in_period`` and
        ``days_to_close`` were such features when the close date read today (the actual one) stood in for the
        one known then; `salesforecast.snapshots` now leaves it unknown, so the features are missing instead.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> model = OpportunityScoringModel(snapshot_freq="MS").fit(data, as_of="2025-01-01")
    >>> scored = model.score_pipeline(data, "2025-01-01")
    >>> bool(scored["win_probability"].between(0, 1).all())
    True
    """

    def __init__(
        self,
        target: Literal["ever", "period"] = "ever",
        estimator: str = "hgb",
        snapshot_freq: str = "W-MON",
        period: Literal["month", "quarter", "year"] = "quarter",
        lookback_days: float | None = None,
        min_known: float = 0.9,
        prior_strength: float = 20.0,
        columns: Sequence[str] | None = None,
        exclude: Sequence[str] = ("opportunity_id", "owner", "account_id", "lead_id", "owner_closed_deals"),
        model_params: dict[str, Any] | None = None,
        random_state: Any = 0,
        max_rows: int | None = MAX_ROWS,
    ) -> None:
        self.target = target
        self.estimator = estimator
        self.snapshot_freq = snapshot_freq
        self.period = period
        self.lookback_days = lookback_days
        self.min_known = min_known
        self.prior_strength = prior_strength
        self.columns = columns
        self.exclude = exclude
        self.model_params = model_params
        self.random_state = random_state
        self.max_rows = max_rows

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        if self.target not in ("ever", "period"):
            raise ValueError(f"target must be 'ever' or 'period', got {self.target!r}")
        if self.period not in ("month", "quarter", "year"):
            raise ValueError(f"period must be 'month', 'quarter' or 'year', got {self.period!r}")
        try:
            pd.tseries.frequencies.to_offset(self.snapshot_freq)
        except (ValueError, TypeError):
            raise ValueError(
                f"snapshot_freq must be a pandas frequency such as 'W-MON' or 'MS', got {self.snapshot_freq!r}"
            ) from None
        lb = self.lookback_days
        if lb is not None and (not isinstance(lb, numbers.Real) or isinstance(lb, bool) or not lb > 0):
            raise ValueError(f"lookback_days must be a positive number of days or None, got {lb!r}")
        mk = self.min_known
        if not isinstance(mk, numbers.Real) or isinstance(mk, bool) or not 0.0 <= mk <= 1.0:
            raise ValueError(f"min_known must be a share from 0 to 1, got {mk!r}")
        ps = self.prior_strength
        if not isinstance(ps, numbers.Real) or isinstance(ps, bool) or not ps >= 0 or not math.isfinite(ps):
            raise ValueError(f"prior_strength must be a number >= 0 (pseudo-deals), got {ps!r}")
        mr = self.max_rows
        if mr is not None and (not isinstance(mr, numbers.Integral) or isinstance(mr, bool) or mr < MIN_ROWS):
            raise ValueError(
                f"max_rows must be a whole number of (date, deal) rows of at least {MIN_ROWS:,}, or None to learn "
                f"from every row, got {mr!r}"
            )
        if self.model_params is not None and not isinstance(self.model_params, dict):
            raise ValueError(
                f"model_params must be a dict of LeadScoringModel settings or None, got {self.model_params!r}"
            )

    def _dates(self, data: CRMData, as_of: pd.Timestamp) -> pd.DatetimeIndex:
        first = data.opportunities["created_at"].min()
        if self.lookback_days is not None:
            first = max(first, as_of - pd.Timedelta(days=float(self.lookback_days)))
        dates = pd.date_range(first.normalize(), as_of, freq=self.snapshot_freq)
        return dates[dates < as_of]

    def _classifier(self) -> Any:
        from salesforecast.models.lead_scoring import LeadScoringModel

        params = dict(self.model_params or {})
        params.setdefault("estimator", self.estimator)
        params.setdefault("random_state", self.random_state)
        # validation rows = the latest snapshot dates; the date orders the rows but is no feature
        params.setdefault("date_column", "as_of")
        params["exclude"] = tuple(dict.fromkeys([*params.get("exclude", ()), "as_of"]))
        return LeadScoringModel(**params)

    # ------------------------------------------------------------------ fit
    def fit(self, data: CRMData, as_of: Any = None) -> OpportunityScoringModel:
        """Learn win probabilities from the snapshots before `as_of`, labelled with outcomes known at `as_of`.

        Parameters
        ----------
        data : CRMData
            Validated data.
        as_of : date, optional
            The fit's data end (default ``data.as_of``). Only the data known then are used (`known_at`).

        Returns
        -------
        OpportunityScoringModel
            self, fitted.
        """
        self._check_params()
        if not isinstance(data, CRMData):
            raise TypeError(f"fit expects a CRMData (see salesforecast.schema.validate), got {type(data).__name__}")
        as_of = data.as_of if as_of is None else pd.Timestamp(as_of)
        if pd.isna(as_of):
            raise ValueError("fit: the data hold no dates; nothing to learn from")
        if as_of < data.as_of:
            # the data as known then (the same rows, hence the same `as_of` and unknown fields, as `known_at` of
            # the whole); of the activities and leads only the columns the features read and known_at cuts by are
            # copied (millions of rows at every refit: subjects, outcomes, owners or lead sources would only cost
            # memory; the features read no lead column)
            acts, leads = data.activities, data.leads
            read = [c for c in ACTIVITY_COLUMNS if c in acts.columns]
            cut_by = [c for c in LEAD_CUT_COLUMNS if c in leads.columns]
            data = known_at(replace(data, activities=acts[read], leads=leads[cut_by]), as_of)
        dates = self._dates(data, as_of)
        if len(dates) == 0:
            raise ValueError(f"fit: no {self.snapshot_freq!r} snapshot date before as_of={as_of}")
        # the snapshot rows as (history row, date) codes and their outcomes, without their features: the features
        # are built for the rows learnt from only (all the known rows at the dates used, or a sample of them)
        h = DealHistory.from_data(data)
        rows, date_pos = h.snapshot_rows(dates)
        ends = _period_ends(data, dates, self.period)[1] if self.target == "period" else None
        known, won = _row_outcomes(h, h.deal[rows], date_pos, ends, to_us(as_of))
        won &= known
        per_date = pd.DataFrame(
            {
                "as_of": dates.as_unit("us"),
                "open_deals": np.bincount(date_pos, minlength=len(dates)),
                "known": np.bincount(date_pos, weights=known, minlength=len(dates)).astype(np.int64),
                "positives": np.bincount(date_pos, weights=won, minlength=len(dates)).astype(np.int64),
            }
        )
        per_date["share_known"] = per_date["known"] / per_date["open_deals"]
        per_date["used"] = per_date["share_known"] >= self.min_known
        use_date = per_date["used"].to_numpy()
        keep = use_date[date_pos] & known
        y = won[keep]
        if len(y) == 0 or y.min() == y.max():
            raise ValueError(
                f"fit: the training rows need won and lost outcomes; got {len(y)} rows with "
                f"{int(np.sum(y))} won (snapshot dates used: {int(use_date.sum())} of "
                f"{int((per_date['open_deals'] > 0).sum())})"
            )
        take = np.flatnonzero(keep)
        n_known, n_won = len(take), int(y.sum())
        if self.max_rows is not None and n_known > self.max_rows:  # strata: snapshot date (so horizon) x outcome
            take = take[_proportional_sample(date_pos[take] * 2 + won[take], int(self.max_rows), self.random_state)]
        per_date["sampled"] = np.bincount(date_pos[take], minlength=len(dates))
        learnt = (rows[take], date_pos[take])
        y = won[take]
        del rows, date_pos, known, keep, won, take  # every open (date, deal) row: freed before the features are built
        feats = opportunity_features(
            data,
            dates,
            columns=self.columns,
            period=self.period,
            prior_strength=self.prior_strength,
            rows=learnt,
            history=h,
        )
        del learnt
        names = self._feature_names(feats)
        X = feats[[*names, "as_of"]]
        self.model_ = self._classifier().fit(X, y.astype(np.int64))
        self.leaky_features_ = _flagged(self.model_)
        self.feature_names_ = names
        self.as_of_ = as_of
        self.process_ = data.process
        per_date = per_date.loc[per_date["open_deals"] > 0].reset_index(drop=True)
        self.training_ = per_date[["as_of", "open_deals", "known", "share_known", "used", "positives", "sampled"]]
        self.n_unknown_ = int(per_date.loc[per_date["used"], "open_deals"].sum()) - n_known
        self.n_known_ = n_known
        self.n_train_ = len(y)
        self.n_train_deals_ = int(feats["opportunity_id"].nunique())
        self.base_rate_ = n_won / n_known
        return self

    def _feature_names(self, feats: pd.DataFrame) -> list[str]:
        skip = set(_NOT_FEATURES) | set(self.exclude)
        return [c for c in feats.columns if c not in skip and not pd.api.types.is_datetime64_any_dtype(feats[c])]

    # ------------------------------------------------------------------ predict
    def predict_proba(self, features: pd.DataFrame) -> pd.Series:
        """Win probability of each snapshot row.

        Parameters
        ----------
        features : pandas.DataFrame
            Output of `opportunity_features` (at any dates; for a fit at ``as_of``, dates from ``as_of`` on are the
            honest ones to score).

        Returns
        -------
        pandas.Series
            ``win_probability``, aligned to the index of `features`: of being won at all (``target="ever"``) or
            before the end of the fiscal period of the row's date (``target="period"``).
        """
        check_is_fitted(self)
        missing = [c for c in self.feature_names_ if c not in features.columns]
        if missing:
            raise KeyError(f"features has no column {missing[0]!r}; pass the output of opportunity_features")
        if len(features) == 0:
            return pd.Series(np.zeros(0), index=features.index, name="win_probability", dtype="float64")
        X = features[[*self.feature_names_, "as_of"]] if "as_of" in features.columns else features[self.feature_names_]
        p = self.model_.predict_proba(X.reset_index(drop=True)).to_numpy()
        return pd.Series(p.astype("float64"), index=features.index, name="win_probability")

    def score_pipeline(self, data: CRMData, as_of: Any = None) -> pd.DataFrame:
        """The open pipeline at `as_of` with each deal's win probability.

        Parameters
        ----------
        data : CRMData
        as_of : date or dates, optional
            Default: the fit's ``as_of``.

        Returns
        -------
        pandas.DataFrame
            `opportunity_features` at `as_of` plus ``win_probability`` and ``expected_amount`` (probability times
            amount), sorted by ``win_probability`` (highest first) within each date.
        """
        check_is_fitted(self)
        as_of = self.as_of_ if as_of is None else as_of
        feats = opportunity_features(
            data, as_of, columns=self.columns, period=self.period, prior_strength=self.prior_strength
        )
        feats["win_probability"] = self.predict_proba(feats)
        feats["expected_amount"] = feats["win_probability"] * feats["amount"]
        return feats.sort_values(["as_of", "win_probability"], ascending=[True, False], kind="stable").reset_index(
            drop=True
        )

    # ------------------------------------------------------------------ report
    @property
    def summary(self) -> pd.DataFrame:
        """What the model was trained on, one row per item with its definition.

        Rows (index ``item``): ``target``, ``estimator``, ``as_of``, ``snapshot_dates`` (used / built),
        ``first_snapshot``, ``last_snapshot``, ``training_rows``, ``learnt_from`` (the rows the classifier learnt
        from: all, or a sample of ``max_rows``), ``training_deals``, ``positives``, ``base_rate``,
        ``unknown_outcome_rows``, ``features``, ``activity_features`` (only when the model uses activity
        features), ``leaky_features``. Columns ``value`` (text) and ``definition``.
        """
        check_is_fitted(self)
        tr = self.training_
        used = tr.loc[tr["used"]]
        target = (
            "won at all (final outcome)"
            if self.target == "ever"
            else f"won before the end of the fiscal {self.period} of the snapshot date"
        )
        rows = [
            ("target", self.target, target),
            ("estimator", str(self.estimator), "classifier of LeadScoringModel"),
            ("as_of", f"{self.as_of_:%Y-%m-%d %H:%M}", "data end of the fit: nothing later is used"),
            (
                "snapshot_dates",
                f"{len(used)} / {len(tr)}",
                f"snapshot dates ({self.snapshot_freq}) used / built; a date is used when at least "
                f"{self.min_known:.0%} of its open deals have a known outcome",
            ),
            ("first_snapshot", f"{used['as_of'].min():%Y-%m-%d}" if len(used) else "", "first date used"),
            ("last_snapshot", f"{used['as_of'].max():%Y-%m-%d}" if len(used) else "", "last date used"),
            ("training_rows", f"{self.n_known_:,}", "(date, open deal) rows with a known outcome at the dates used"),
            (
                "learnt_from",
                f"{self.n_train_:,} ({self.n_train_ / self.n_known_:.1%}, a sample)"
                if self.n_train_ < self.n_known_
                else f"{self.n_train_:,} (all)",
                "training rows the classifier learnt from: all of them up to max_rows"
                + ("" if self.max_rows is None else f" ({self.max_rows:,})")
                + ", else a random sample of max_rows stratified by snapshot date and outcome in proportion (each "
                "date's won and lost rows keep their share, to a row), so each row stands for the same number of "
                "training rows and the probabilities need no reweighting",
            ),
            ("training_deals", f"{self.n_train_deals_:,}", "distinct deals among the rows learnt from"),
            ("positives", f"{int(used['positives'].sum()):,}", "training rows whose deal was won (target 1)"),
            ("base_rate", f"{self.base_rate_:.3f}", "positives / training rows"),
            (
                "unknown_outcome_rows",
                f"{self.n_unknown_:,}",
                "rows at the dates used left out: the deal was still open at as_of",
            ),
            ("features", ", ".join(self.feature_names_), "columns of opportunity_features given to the classifier"),
        ]
        from_activities = [c for c in self.feature_names_ if c in deal_feature_names(self.process_)]
        if from_activities:  # only with activities: without them the summary is as it always was
            rows.append(
                (
                    "activity_features",
                    ", ".join(from_activities),
                    "features from the activities table, each counting only activities at or before the snapshot "
                    "date (so, days since the last one, the current stage's exit criteria met so far)",
                )
            )
        rows += [
            (
                "leaky_features",
                ", ".join(f"{k} (AUC {v:.2f})" for k, v in self.leaky_features_.items()) or "none",
                "features that alone separate won from lost rows (single-feature AUC above the leakage guard): "
                "probably recorded after the outcome; a model using them is not to be trusted",
            ),
        ]
        out = pd.DataFrame(rows, columns=["item", "value", "definition"]).astype("str")
        return out.set_index("item")
