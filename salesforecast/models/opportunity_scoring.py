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
    The sample holds the rows with the smallest random keys of each stratum, a row's key a function of its deal's
    id, its date and ``random_state`` only: the same sample whatever part of the deals holds a row, so `fit_parts`
    over partitions learns from the very rows `fit` does (the same model). The rows are given to the classifier in
    the order of (date, deal).
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

import functools
import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from salesforecast._utils import DAY_US, NAT, LocalTasks, isin, read_part, to_us, us
from salesforecast.activities import READ_COLUMNS as ACTIVITY_COLUMNS
from salesforecast.history import DealHistory
from salesforecast.models.activity_features import deal_activity_features, deal_feature_names
from salesforecast.schema import CRMData
from salesforecast.snapshots import (
    HISTORY_FIELDS,
    LEAD_CUT_COLUMNS,
    known_at,
    pipeline_snapshots,
    to_dates,
    unrecorded_fields,
)

__all__ = [
    "HISTORY_FEATURES",
    "MAX_ROWS",
    "STATE_FEATURES",
    "OpportunityScoringModel",
    "OwnerRecords",
    "opportunity_features",
    "opportunity_targets",
    "owner_records",
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
    records: OwnerRecords | None = None,
    unknown: Mapping[str, np.datetime64 | None] | None = None,
    activity_features: bool = False,
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
    records : OwnerRecords, optional
        The owners' records at (at least) these dates over more deals than `data`'s: when `data` is a part of the
        deals (a partition, `salesforecast.scale`), the sum of every part's `owner_records`. Default: `data`'s.
    unknown : mapping, optional
        As `salesforecast.snapshots.pipeline_snapshots`: the whole's rules for a part of it (default: `data`'s).
    activity_features : bool
        The activity features even when no activity of `data` names a deal: a part of a whole whose other deals
        have some (its deals then have none).

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
        data, dates, columns=static, rows=rows, intervals=h.intervals if h.built_from(data) else None, unknown=unknown
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
    rec = owner_records(h, dates) if records is None else records.at(dates.asi8)
    has_owner = "owner" in data.opportunities.columns
    closed, won = rec.of(out["owner"] if has_owner and "owner" in out.columns else None, date_pos)
    out["owner_closed_deals"] = closed
    out["owner_won_deals"] = won
    overall = rec.overall_rate()[date_pos]
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
    acts = deal_activity_features(activities, process, out, always=activity_features)
    for name in acts.columns:
        out[name] = acts[name].to_numpy()
    return out


def _closed_counts(h: DealHistory, dates: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, ...]:
    """(closed, won) deals per group and date: intervals in a closed stage covering the date (difference array)."""
    closed_row = h.stage >= h.k
    won_row = np.isin(h.stage, h.won_codes)
    lo = np.searchsorted(dates, h.start, side="left")
    hi = np.searchsorted(dates, h.end, side="left")
    width = len(dates) + 1
    out = []
    for mask in (closed_row, won_row):
        g = group[mask]
        ok = g >= 0
        flat_lo = g[ok] * width + lo[mask][ok]
        flat_hi = g[ok] * width + hi[mask][ok]
        diff = np.bincount(flat_lo, minlength=n_groups * width) - np.bincount(flat_hi, minlength=n_groups * width)
        out.append(np.cumsum(diff.reshape(n_groups, width), axis=1)[:, : len(dates)].astype(np.int64))
    return tuple(out)


@dataclass(frozen=True)
class OwnerRecords:
    """Closed and won deals at each date, per owner and of all owners: what the owners' track records read.

    Counts of deals, so the records of deals split into parts add up to the whole's (``a + b``): a part of a
    partitioned dataset (`salesforecast.scale`) computes its own and the client adds them, so every part's features
    read the owners' records over all the deals (`opportunity_features` ``records=``).

    Attributes
    ----------
    dates : numpy.ndarray
        The dates (int64 microseconds, sorted).
    owners : pandas.Index
        The owners, sorted.
    closed, won : numpy.ndarray
        (owners, dates): the owner's deals whose state at the date is closed (lost or won) / won.
    all_closed, all_won : numpy.ndarray
        (dates,): the same over every deal, those without an owner included.
    """

    dates: np.ndarray
    owners: pd.Index
    closed: np.ndarray
    won: np.ndarray
    all_closed: np.ndarray
    all_won: np.ndarray

    def __add__(self, other: OwnerRecords) -> OwnerRecords:
        if not np.array_equal(self.dates, other.dates):
            raise ValueError("OwnerRecords: records at different dates cannot be added")
        owners = self.owners.union(other.owners)
        out = []
        for name in ("closed", "won"):
            total = np.zeros((len(owners), len(self.dates)), dtype=np.int64)
            for rec in (self, other):
                np.add.at(total, owners.get_indexer(rec.owners), getattr(rec, name))
            out.append(total)
        return OwnerRecords(self.dates, owners, *out, self.all_closed + other.all_closed, self.all_won + other.all_won)

    def at(self, dates: np.ndarray) -> OwnerRecords:
        """The records at some of the dates (each one of `dates`)."""
        dates = np.asarray(dates, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.dates, dates), max(len(self.dates) - 1, 0))
        if len(dates) and (not len(self.dates) or not np.array_equal(self.dates[pos], dates)):
            raise ValueError("OwnerRecords.at: a date the records do not hold")
        return OwnerRecords(
            dates,
            self.owners,
            self.closed[:, pos],
            self.won[:, pos],
            self.all_closed[pos],
            self.all_won[pos],
        )

    def of(self, owner: pd.Series | None, date_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Closed and won deals of each row's owner at its date (zeros for a missing or unknown owner)."""
        if owner is None or not len(self.owners):
            zeros = np.zeros(len(date_pos), dtype=np.int64)
            return zeros, zeros
        row_owner = self.owners.get_indexer(owner)
        has = row_owner >= 0
        at = np.maximum(row_owner, 0)
        closed = np.where(has, self.closed[at, date_pos], 0)
        won = np.where(has, self.won[at, date_pos], 0)
        return closed.astype(np.int64), won.astype(np.int64)

    def overall_rate(self) -> np.ndarray:
        """Won / closed deals of all owners at each date (missing before the first close)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.all_closed > 0, self.all_won / self.all_closed, np.nan)


def _padded(records: OwnerRecords, dates: np.ndarray) -> OwnerRecords:
    """A part's records at the whole's `dates`, its own being the latest of them (zeros before its first deal)."""
    pos = np.searchsorted(dates, records.dates)
    out = []
    for name in ("closed", "won"):
        full = np.zeros((len(records.owners), len(dates)), dtype=np.int64)
        full[:, pos] = getattr(records, name)
        out.append(full)
    for name in ("all_closed", "all_won"):
        full = np.zeros(len(dates), dtype=np.int64)
        full[pos] = getattr(records, name)
        out.append(full)
    return OwnerRecords(dates, records.owners, *out)


def owner_records(history: DealHistory, dates: Any) -> OwnerRecords:
    """The `OwnerRecords` of the deals of `history` at `dates` (the owner from ``history.opportunities``).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> h = DealHistory.from_data(load_sample())
    >>> r = owner_records(h, ["2024-01-01", "2025-01-01"])
    >>> r.closed.shape == (len(r.owners), 2), bool((r.closed.sum(axis=0) <= r.all_closed).all())
    (True, True)
    """
    d = to_dates(dates).asi8.astype(np.int64)
    opps = history.opportunities
    all_closed, all_won = _closed_counts(history, d, np.zeros(len(history.stage), dtype=np.int64), 1)
    owners = pd.Index([], dtype="str")
    closed = won = np.zeros((0, len(d)), dtype=np.int64)
    if "owner" in opps.columns:
        codes, owners = pd.factorize(opps["owner"], sort=True)  # -1 for a missing owner
        closed, won = _closed_counts(history, d, codes[history.deal_pos][history.deal], len(owners))
    return OwnerRecords(d, pd.Index(owners), closed, won, all_closed[0], all_won[0])


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


def _quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """Rows each stratum holds of a sample of `n` of them, in proportion to `counts`.

    Largest remainders, ties to the earlier stratum: each stratum's share of the sample is its share of the rows, to
    one row, so the sample needs no weights (each row stands for ``counts.sum() / n`` rows).
    """
    exact = counts * (n / counts.sum())
    quota = np.floor(exact).astype(np.int64)
    extra = n - int(quota.sum())
    if extra > 0:
        quota[np.argsort(-(exact - quota), kind="stable")[:extra]] += 1
    return np.minimum(quota, counts)


def _mixed(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: each 64-bit value to a pseudo-random one (a bijection)."""
    x = np.asarray(x).astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _row_keys(deal_hash: np.ndarray, date_us: np.ndarray, salt: int) -> np.ndarray:
    """The random key of each (deal, date) row: from the deal's id, the date and the salt only.

    So a row's key is the same whichever part of the deals holds it, and a sample of the rows with the smallest keys
    of each stratum is the same over parts as in one process.
    """
    return _mixed(deal_hash ^ _mixed(date_us.astype(np.int64).view(np.uint64) ^ np.uint64(salt)))


def _smallest(strata: np.ndarray, keys: np.ndarray, quota: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The `quota` smallest keys of each stratum: (strata, keys), by stratum then key."""
    order = np.lexsort((keys, strata))
    strata, keys = strata[order], keys[order]
    first = np.searchsorted(strata, strata, side="left")
    take = np.arange(len(strata)) - first < quota[strata]
    return strata[take], keys[take]


def _snapshot_dates(first: Any, as_of: pd.Timestamp, freq: str, lookback_days: float | None) -> pd.DatetimeIndex:
    """The snapshot dates a fit at `as_of` learns from: every `freq` from the first deal's day, before `as_of`."""
    if pd.isna(first):
        return pd.DatetimeIndex([], dtype="datetime64[us]")
    if lookback_days is not None:
        first = max(first, as_of - pd.Timedelta(days=float(lookback_days)))
    dates = pd.date_range(pd.Timestamp(first).normalize(), as_of, freq=freq)
    return dates[dates < as_of].as_unit("us")


def _known(data: CRMData, as_of: pd.Timestamp, unknown: Mapping[str, Any] | None) -> CRMData:
    """The data as known at `as_of` (`known_at`), with only the columns of activities and leads the fit reads.

    The same rows, hence the same ``as_of`` and unknown fields, as `known_at` of the whole; subjects, outcomes,
    owners or lead sources of millions of rows would only cost memory at every refit (the features read no lead
    column).
    """
    acts, leads = data.activities, data.leads
    read = [c for c in ACTIVITY_COLUMNS if c in acts.columns]
    cut_by = [c for c in LEAD_CUT_COLUMNS if c in leads.columns]
    return known_at(replace(data, activities=acts[read], leads=leads[cut_by]), as_of, unknown=unknown)


@dataclass
class _TrainingPart:
    """A part's snapshot rows whose outcome is known at the fit's ``as_of`` (`_part_training`), kept where it runs.

    ``rows`` (history rows), ``date_us`` (their dates), ``won`` and ``key`` (`_row_keys`, for the sample); with
    ``data`` and ``history`` (the part as known then) when kept for the features (one part), else they are rebuilt.
    ``summary``: what the client adds over the parts (`_part_training_summary`).
    """

    rows: np.ndarray
    date_us: np.ndarray
    won: np.ndarray
    key: np.ndarray
    summary: dict[str, Any]
    data: CRMData | None = None
    history: DealHistory | None = None


def _part_data(part: Any, as_of: pd.Timestamp, cut: bool, unknown: Mapping[str, Any] | None) -> CRMData:
    data = read_part(part)
    return _known(data, as_of, unknown) if cut else data


def _part_training(
    part: Any,
    as_of: pd.Timestamp,
    cut: bool,
    unknown: Mapping[str, Any] | None,
    settings: dict[str, Any],
    salt: int,
    dates: pd.DatetimeIndex | None = None,
    keep: bool = False,
) -> _TrainingPart:
    """Task: a part's snapshot rows before `as_of` with a known outcome, and its counts per date.

    The dates are every ``snapshot_freq`` from the part's first deal (or `dates`); `cut`: the part is read as known
    at `as_of` (`known_at`, under the whole's rules `unknown`).
    """
    data = _part_data(part, as_of, cut, unknown)
    h = DealHistory.from_data(data)
    if dates is None:
        first = data.opportunities["created_at"].min() if len(data.opportunities) else pd.NaT
        dates = _snapshot_dates(first, as_of, settings["snapshot_freq"], settings["lookback_days"])
    rows, date_pos = h.snapshot_rows(dates)
    ends = _period_ends(data, dates, settings["period"])[1] if settings["target"] == "period" else None
    known, won = _row_outcomes(h, h.deal[rows], date_pos, ends, to_us(as_of))
    won &= known
    n = len(dates)
    summary = {
        "dates": dates.asi8.astype(np.int64),
        "open_deals": np.bincount(date_pos, minlength=n).astype(np.int64),
        "known": np.bincount(date_pos[known], minlength=n).astype(np.int64),
        "positives": np.bincount(date_pos[won], minlength=n).astype(np.int64),
        "records": owner_records(h, dates),
        "first": data.opportunities["created_at"].min() if len(data.opportunities) else pd.NaT,
        "as_of": data.as_of,
        "recorded": {f: f not in unrecorded_fields(data) for f in HISTORY_FIELDS},
        "deal_activities": _names_deals(data.activities),
    }
    deal_hash = pd.util.hash_pandas_object(pd.Series(h.ids, dtype="str"), index=False).to_numpy()
    take = np.flatnonzero(known)
    rows, date_us, won = rows[take], dates.asi8.astype(np.int64)[date_pos[take]], won[take]
    return _TrainingPart(
        rows,
        date_us,
        won,
        _row_keys(deal_hash[h.deal[rows]], date_us, salt),
        summary,
        data if keep else None,
        h if keep else None,
    )


def _names_deals(activities: pd.DataFrame | None) -> bool:
    """Whether an activity names a deal (then the features have activity columns)."""
    return bool(
        activities is not None and "opportunity_id" in activities.columns and activities["opportunity_id"].notna().any()
    )


def _part_training_summary(part: _TrainingPart) -> dict[str, Any]:
    """Task: a part's counts per date, owners' records and what its data are known to hold (`_part_training`)."""
    return part.summary


def _strata(part: _TrainingPart, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The part's rows at the `used` dates (int64 us, sorted) and their strata (date position x outcome)."""
    pos = np.minimum(np.searchsorted(used, part.date_us), max(len(used) - 1, 0))
    at = np.flatnonzero(used[pos] == part.date_us) if len(used) else np.zeros(0, dtype=np.int64)
    return at, pos[at] * 2 + part.won[at]


def _part_sample_keys(part: _TrainingPart, used: np.ndarray, quota: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Task: the `quota` smallest keys of each stratum among the part's rows at the `used` dates."""
    at, strata = _strata(part, used)
    return _smallest(strata, part.key[at], quota)


def _part_drawn(part: _TrainingPart, used: np.ndarray, last: tuple[np.ndarray, np.ndarray] | None) -> _TrainingPart:
    """Task: the part's rows learnt from, alone (the others freed before the features are built).

    Every known row at the `used` dates, or (`last`: per stratum, the largest key drawn and whether any is) those
    of the sample.
    """
    at, strata = _strata(part, used)
    if last is not None:
        largest, drawn = last
        at = at[drawn[strata] & (part.key[at] <= largest[strata])]
    return replace(part, rows=part.rows[at], date_us=part.date_us[at], won=part.won[at], key=part.key[at])


def _part_sample(
    part: _TrainingPart,
    handle: Any,
    as_of: pd.Timestamp,
    cut: bool,
    unknown: Mapping[str, Any] | None,
    known_unknown: Mapping[str, Any] | None,
    dates: pd.DatetimeIndex,
    records: OwnerRecords,
    activities: bool,
    settings: dict[str, Any],
) -> tuple[pd.DataFrame, np.ndarray]:
    """Task: the features of the part's rows drawn (`_part_drawn`), and their outcomes.

    The features read the owners' `records` over every part (and have activity columns when the whole's
    `activities` name deals); the part is read again as known at `as_of` when it was not kept (`handle`), its
    history under the rules `known_unknown` of the whole as known then.
    """
    data, h = part.data, part.history
    if data is None:
        data = _part_data(handle, as_of, cut, unknown)
        h = DealHistory.from_data(data)
    if known_unknown is not None:  # a part: the whole's rule (its own end is earlier)
        before = known_unknown.get("close_date")
        h = replace(h, close_unknown_before=NAT if before is None else to_us(before))
    feats = opportunity_features(
        data,
        dates,
        columns=settings["columns"],
        period=settings["period"],
        prior_strength=settings["prior_strength"],
        rows=(part.rows, np.searchsorted(dates.asi8, part.date_us)),
        history=h,
        records=records,
        unknown=known_unknown,
        activity_features=activities,
    )
    return feats, part.won


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
        return self._fit_over([data], data.process, data.as_of, as_of, None, LocalTasks())

    def fit_parts(
        self,
        parts: Sequence[Any],
        process: Any,
        data_as_of: Any,
        as_of: Any = None,
        unknown: Mapping[str, Any] | None = None,
        tasks: Any = None,
    ) -> OpportunityScoringModel:
        """`fit` on deals split into parts, each part read where it lives: the same model as the fit on all of them.

        Each part counts its snapshot rows per date (open, known outcome, won) and its owners' closed and won deals
        per date; the client adds them, so the dates used and the owners' track records are the whole's. The rows
        learnt from are the whole's too: every known row, or above ``max_rows`` the rows with the smallest random
        keys of each stratum (snapshot date x outcome, in proportion), a key being a function of the deal's id, the
        date and ``random_state`` only, so a row is drawn or not whatever part holds it. Each part builds the
        features of its rows drawn; they travel to the client (``max_rows`` rows at most), which fits the classifier
        on them in the order of (date, deal), as `fit` does: the same model, to the bit.

        Parameters
        ----------
        parts : sequence
            Per part, its `CRMData` (opportunities with all their history and activities: a partition of
            `salesforecast.scale`), the handle `tasks` has for it, or a function of no argument that reads it.
        process : SalesProcess
            The process map of the parts.
        data_as_of : date
            The whole data's ``as_of`` (a part's own end is earlier).
        as_of : date, optional
            The fit's data end (default `data_as_of`); earlier: the parts as known then (`known_at`).
        unknown : mapping, optional
            The whole's `salesforecast.snapshots.unknown_before` per field (`salesforecast.scale.PartitionedCRM`'s
            ``unknown_before``): a part follows the whole's rules, not its own. Default: each part's own.
        tasks : optional
            Where the parts' tasks run: `salesforecast._utils.LocalTasks` (default) or
            `salesforecast.scale.DaskTasks`.

        Returns
        -------
        OpportunityScoringModel
            self, fitted.

        Examples
        --------
        >>> from dataclasses import replace
        >>> from salesforecast.datasets import load_sample
        >>> data = load_sample()
        >>> opps, hist = data.opportunities, data.stage_history
        >>> first = opps["opportunity_id"].iloc[::2]  # the deals split in two parts, each with its whole history
        >>> def part(mine):
        ...     o = opps[opps["opportunity_id"].isin(first) == mine]
        ...     h = hist[hist["opportunity_id"].isin(first) == mine]
        ...     return replace(data, opportunities=o, stage_history=h)
        >>> settings = {"snapshot_freq": "MS", "target": "period", "random_state": 0}
        >>> a = OpportunityScoringModel(**settings).fit_parts([part(True), part(False)], data.process, data.as_of)
        >>> b = OpportunityScoringModel(**settings).fit(data)
        >>> f = opportunity_features(data, "2025-06-01")
        >>> bool((a.predict_proba(f) == b.predict_proba(f)).all())
        True
        """
        self._check_params()
        return self._fit_over(
            list(parts), process, data_as_of, as_of, unknown, LocalTasks() if tasks is None else tasks
        )

    def _fit_over(
        self,
        parts: list[Any],
        process: Any,
        data_as_of: Any,
        as_of: Any,
        unknown: Mapping[str, Any] | None,
        tasks: Any,
    ) -> OpportunityScoringModel:
        """`fit` and `fit_parts`: one part (the whole, kept between the steps) or several (read again)."""
        data_as_of = pd.Timestamp(data_as_of)
        as_of = data_as_of if as_of is None else pd.Timestamp(as_of)
        if pd.isna(as_of):
            raise ValueError("fit: the data hold no dates; nothing to learn from")
        # the data as known then when the fit is earlier than their end: the same rows as `known_at` of the whole
        cut = bool(as_of < data_as_of)
        keep = len(parts) == 1  # one part: its tables and history kept for the features, not rebuilt
        settings = {
            "snapshot_freq": self.snapshot_freq,
            "lookback_days": self.lookback_days,
            "target": self.target,
            "period": self.period,
            "columns": self.columns,
            "prior_strength": self.prior_strength,
        }
        # the sample's salt (each row's key is computed once, where the row is)
        salt = int(check_random_state(self.random_state).randint(0, 2**31, size=2) @ np.array([2**31, 1]))
        common = {"as_of": as_of, "cut": cut, "unknown": unknown, "settings": settings}
        states = tasks.map(_part_training, parts, salt=salt, keep=keep, **common)
        found = tasks.gather(tasks.map(_part_training_summary, states))
        firsts = [f["first"] for f in found if pd.notna(f["first"])]
        dates = _snapshot_dates(min(firsts) if firsts else pd.NaT, as_of, self.snapshot_freq, self.lookback_days)
        if len(dates) == 0:
            raise ValueError(f"fit: no {self.snapshot_freq!r} snapshot date before as_of={as_of}")
        d = dates.asi8.astype(np.int64)
        if any(not np.isin(f["dates"], d).all() for f in found):
            # a frequency not anchored to the calendar (a part's own dates are not the whole's): counted again at
            # the whole's dates (every part, so each keeps running where it lives)
            states = tasks.map(_part_training, parts, salt=salt, keep=keep, dates=dates, **common)
            found = tasks.gather(tasks.map(_part_training_summary, states))
        per_date = pd.DataFrame({"as_of": dates})
        for name in ("open_deals", "known", "positives"):
            total = np.zeros(len(d), dtype=np.int64)
            for f in found:
                total[np.searchsorted(d, f["dates"])] += f[name]
            per_date[name] = total
        records = functools.reduce(operator.add, [_padded(f["records"], d) for f in found])
        known_unknown = None
        if not keep and (cut or unknown is None):
            # the whole's rules as known then: a field none of the parts recorded is unknown before the parts' last
            # event then (an event of a table the parts do not hold, later, would change nothing: no deal of theirs
            # changes between the two)
            times = [pd.Timestamp(f["as_of"]) for f in found if pd.notna(f["as_of"])]
            end = max(times) if times else pd.NaT
            recorded = {f: any(x["recorded"][f] for x in found) for f in HISTORY_FIELDS}
            known_unknown = {
                f: None if f == "amount" or recorded[f] or pd.isna(end) else np.datetime64(end, "us")
                for f in HISTORY_FIELDS
            }
        elif not keep:  # the whole as it is: its own rules
            known_unknown = unknown
        per_date["share_known"] = per_date["known"] / per_date["open_deals"]
        per_date["used"] = per_date["share_known"] >= self.min_known
        use_date = per_date["used"].to_numpy()
        n_known = int(per_date.loc[use_date, "known"].sum())
        n_won = int(per_date.loc[use_date, "positives"].sum())
        if n_known == 0 or n_won in (0, n_known):
            raise ValueError(
                f"fit: the training rows need won and lost outcomes; got {n_known} rows with "
                f"{n_won} won (snapshot dates used: {int(use_date.sum())} of "
                f"{int((per_date['open_deals'] > 0).sum())})"
            )
        used = d[use_date]
        last = None
        if self.max_rows is not None and n_known > self.max_rows:  # strata: snapshot date (so horizon) x outcome
            counts = np.zeros(2 * len(used), dtype=np.int64)
            counts[1::2] = per_date.loc[use_date, "positives"].to_numpy()
            counts[0::2] = per_date.loc[use_date, "known"].to_numpy() - counts[1::2]
            quota = _quotas(counts, int(self.max_rows))
            smallest = tasks.gather(tasks.map(_part_sample_keys, states, used=used, quota=quota))
            strata, keys = _smallest(*(np.concatenate(x) for x in zip(*smallest, strict=True)), quota)
            # per stratum the largest key drawn (a stratum with no row drawn: none)
            ends_at = np.searchsorted(strata, np.arange(len(counts)), side="right") - 1
            last = (np.where(quota > 0, keys[np.maximum(ends_at, 0)], np.uint64(0)), quota > 0)
        states = tasks.map(_part_drawn, states, used=used, last=last)  # the other rows freed
        drawn = tasks.gather(
            tasks.map(
                _part_sample,
                states,
                parts,
                known_unknown=known_unknown,
                dates=dates,
                records=records,
                activities=any(f["deal_activities"] for f in found),
                **common,
            )
        )
        del states
        feats = pd.concat([f for f, _ in drawn], ignore_index=True)
        y = np.concatenate([w for _, w in drawn])
        del drawn
        order = np.lexsort((feats["opportunity_id"].to_numpy(), feats["as_of"].to_numpy()))  # (date, deal)
        feats = feats.take(order).reset_index(drop=True)
        y = y[order]
        per_date["sampled"] = np.bincount(np.searchsorted(d, us(feats["as_of"])), minlength=len(d))
        names = self._feature_names(feats)
        X = feats[[*names, "as_of"]]
        self.model_ = self._classifier().fit(X, y.astype(np.int64))
        self.leaky_features_ = _flagged(self.model_)
        self.feature_names_ = names
        self.as_of_ = as_of
        self.process_ = process
        per_date = per_date.loc[per_date["open_deals"] > 0].reset_index(drop=True)
        self.training_ = per_date[["as_of", "open_deals", "known", "share_known", "used", "positives", "sampled"]]
        self.n_unknown_ = int(per_date.loc[per_date["used"], "open_deals"].sum()) - n_known
        self.n_known_ = n_known
        self.n_train_ = len(y)
        self.n_train_deals_ = int(feats["opportunity_id"].nunique())
        self.base_rate_ = n_won / n_known
        return self

    @property
    def uses_activities(self) -> bool:
        """Whether the fitted model reads activity features (its scoring data then need their columns)."""
        check_is_fitted(self)
        return bool(set(self.feature_names_) & set(deal_feature_names(self.process_)))

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
