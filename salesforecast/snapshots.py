"""The pipeline exactly as it stood at any dates: as-of reconstruction from stage_history.

The core is `stage_intervals`: each opportunity's history turned into validity intervals ``[start, end)``,
one per change, holding the state (stage, amount, close date, forecast category) from that change on.
`pipeline_snapshots` then joins dates against the intervals with two binary searches (no loop over dates
or deals). Both work per opportunity only: any partition of opportunities by ``opportunity_id`` gives the
same rows as the whole, so they can run partitioned.

Rules (the contract the tests check):

- A deal is in the snapshot at ``t`` iff it was created at or before ``t`` and its state at ``t`` is an
  open stage.
- Its state at ``t`` is its last change at or before ``t``. Between creation and its first recorded
  change, it is in the state of the first change (the stage it was created in). Changes with the same
  timestamp apply in the order they were read.
- Amount, close date and forecast category are carried forward from the last change that had them. Before
  the first change that had one, the opportunity's current value is used: the only place current values
  enter, and only for fields the CRM did not historise up to then (never a later history row, so that a
  replay from `known_at(data, t)` sees the same values). A missing forecast category is the process map's
  default for the stage.
- A history that starts more than a day after the opportunity was created says nothing about the stage
  before its first change: the deal is counted open in an unknown stage (missing ``stage``) from creation
  to that change, never in the later stage.
- An opportunity with no history rows is in its current stage from creation on (when that stage is open);
  a closed one with no history is counted open in an unknown stage (missing ``stage``) until its close date.
  A closed opportunity whose history never reaches a terminal stage closes at its close date (or at its last
  change, when that is later).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from salesforecast._utils import isin
from salesforecast.schema import CRMData

__all__ = ["known_at", "pipeline_snapshots", "stage_intervals", "to_dates"]

#: Static opportunity columns copied into snapshots when present.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "owner",
    "team",
    "region",
    "segment",
    "product",
    "lead_source",
    "account_id",
)

_MAX = np.iinfo(np.int64).max


def to_dates(as_of: Any) -> pd.DatetimeIndex:
    """Turn one date or many into a sorted, unique `DatetimeIndex` at microsecond resolution.

    Examples
    --------
    >>> to_dates(["2024-03-01", "2024-01-01", "2024-03-01"]).strftime("%Y-%m-%d").tolist()
    ['2024-01-01', '2024-03-01']
    """
    if isinstance(as_of, (str, pd.Timestamp, np.datetime64)) or not isinstance(as_of, Iterable):
        as_of = [as_of]
    as_of = list(as_of) if not isinstance(as_of, (pd.Index, pd.Series, np.ndarray)) else as_of
    if any(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in as_of):
        raise ValueError(f"as_of must be dates (e.g. '2024-06-30'), not numbers: {list(as_of)[:3]}")
    if isinstance(as_of, (pd.Index, pd.Series, np.ndarray)) and pd.api.types.is_datetime64_any_dtype(as_of):
        idx = pd.DatetimeIndex(as_of)
    else:
        try:
            idx = pd.DatetimeIndex([pd.Timestamp(x) for x in as_of])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"as_of: {exc}") from None
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    if idx.hasnans:
        raise ValueError("as_of contains a missing date")
    return idx.as_unit("us").unique().sort_values()


def _intervals(data: CRMData) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """`stage_intervals`, each row's opportunity code (rank of its id in sorted order) and row in opportunities."""
    process = data.process
    opps = data.opportunities
    hist = data.stage_history
    cols = ["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"]
    ev = hist[cols].copy()
    ev["_seq"] = np.arange(len(ev), dtype=np.int64)

    has_hist = isin(opps["opportunity_id"], hist["opportunity_id"])
    extra = []
    # opportunities without history: their current state from creation (unknown stage when closed now)
    bare = opps.loc[~has_hist]
    if len(bare):
        first = pd.DataFrame(
            {
                "opportunity_id": bare["opportunity_id"],
                "changed_at": bare["created_at"],
                "stage": bare["stage"].where(~bare["is_closed"]),
                "amount": bare["amount"],
                "close_date": bare["close_date"],
                "forecast_category": bare.get("forecast_category", pd.Series(index=bare.index, dtype="str")).where(
                    ~bare["is_closed"]
                ),
            }
        )
        extra.append(first)
    # history that starts more than a day after creation: open in an unknown stage until its first change
    first_change = hist.groupby("opportunity_id", sort=False)["changed_at"].min()
    with_hist = opps.loc[has_hist]
    late = with_hist.loc[
        first_change.reindex(with_hist["opportunity_id"].to_numpy()).to_numpy("datetime64[us]")
        > (with_hist["created_at"] + pd.Timedelta(days=1)).to_numpy("datetime64[us]")
    ]
    if len(late):
        extra.append(
            pd.DataFrame(
                {
                    "opportunity_id": late["opportunity_id"],
                    "changed_at": late["created_at"],
                    "stage": pd.Series(pd.NA, index=late.index, dtype="str"),
                    "amount": np.nan,
                    "close_date": pd.Series(pd.NaT, index=late.index, dtype="datetime64[us]"),
                    "forecast_category": pd.Series(pd.NA, index=late.index, dtype="str"),
                }
            )
        )
    # closed opportunities whose history never reaches a terminal stage: close them at their close date
    closed_in_hist = hist.loc[process.is_closed(hist["stage"]), "opportunity_id"]
    last_change = hist.groupby("opportunity_id", sort=False)["changed_at"].max()
    need_close = opps.loc[opps["is_closed"] & ~isin(opps["opportunity_id"], closed_in_hist)]
    if len(need_close):
        when = need_close["close_date"]
        prior = pd.Series(
            last_change.reindex(need_close["opportunity_id"].to_numpy()).to_numpy("datetime64[us]"),
            index=need_close.index,
        )
        when = when.where(prior.isna() | (when >= prior), prior)
        when = when.where(when >= need_close["created_at"], need_close["created_at"])
        extra.append(
            pd.DataFrame(
                {
                    "opportunity_id": need_close["opportunity_id"],
                    "changed_at": when,
                    "stage": need_close["stage"],
                    "amount": need_close["amount"],
                    "close_date": need_close["close_date"],
                    "forecast_category": pd.Series(pd.NA, index=need_close.index, dtype="str"),
                }
            )
        )
    if extra:
        add = pd.concat(extra, ignore_index=True)
        add["_seq"] = np.arange(len(ev), len(ev) + len(add), dtype=np.int64)
        ev = pd.concat([ev, add], ignore_index=True)

    # order: opportunity (as integer codes, fast), change time, then reading order
    codes, _ = pd.factorize(ev["opportunity_id"], sort=True)
    t = ev["changed_at"].to_numpy("datetime64[us]").view(np.int64)
    order = np.lexsort((ev["_seq"].to_numpy(), t, codes))
    ev = ev.iloc[order].reset_index(drop=True)
    codes = codes[order]
    t = t[order]

    opp_pos = pd.Index(opps["opportunity_id"]).get_indexer(ev["opportunity_id"])
    created = pd.Series(opps["created_at"].to_numpy("datetime64[us]")[opp_pos])
    created_i = created.to_numpy("datetime64[us]").view(np.int64)
    first_of_opp = np.ones(len(codes), dtype=bool)
    first_of_opp[1:] = codes[1:] != codes[:-1]
    last_of_opp = np.ones(len(codes), dtype=bool)
    last_of_opp[:-1] = codes[1:] != codes[:-1]
    start = np.maximum(t, created_i)
    start[first_of_opp] = created_i[first_of_opp]
    end = np.r_[start[1:], 0]
    end[last_of_opp] = _MAX
    end = np.maximum(end, start)  # a later change cannot end a state before it started

    # carry amount, close date and category forward within each opportunity
    group = pd.Series(codes)
    carried = ev[["amount", "close_date", "forecast_category"]].groupby(group.to_numpy()).ffill()
    # nothing recorded yet: the opportunity's current value (never a later history row: that would differ from
    # what known_at(data, t) can rebuild, and a replay at t must see the same values either way)
    amount = carried["amount"].fillna(pd.Series(opps["amount"].to_numpy("float64")[opp_pos]))
    close_date = carried["close_date"].fillna(pd.Series(opps["close_date"].to_numpy("datetime64[us]")[opp_pos]))
    category = carried["forecast_category"].fillna(ev["stage"].map(process.forecast_category))

    stage = ev["stage"]
    is_open = stage.isin(process.open_stages) | stage.isna()
    # runs of the same stage: a new run starts at each opportunity's first row or a change of stage
    filled = stage.fillna("\x00")
    new_run = first_of_opp | filled.ne(filled.shift()).to_numpy()
    run_id = np.cumsum(new_run)
    run_start = pd.Series(start).groupby(run_id).transform("min").to_numpy()

    out = pd.DataFrame(
        {
            "opportunity_id": ev["opportunity_id"],
            "start": start.view("datetime64[us]"),
            "end": np.where(end == _MAX, np.iinfo(np.int64).min, end).view("datetime64[us]"),
            "stage": stage,
            "is_open": is_open.to_numpy(),
            "amount": amount.to_numpy(dtype="float64"),
            "close_date": close_date.to_numpy("datetime64[us]"),
            "forecast_category": category.astype("str"),
            "stage_entered_at": run_start.view("datetime64[us]"),
            "created_at": created.to_numpy("datetime64[us]"),
        }
    )
    return out, codes, opp_pos


def _snapshot_rows(iv: pd.DataFrame, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Which open states hold at which dates: rows of `iv` (from `_intervals`) and the index of the date in `dates`.

    Ordered by date, then by row of `iv` (so by opportunity id: `iv` is sorted by opportunity, and one opportunity
    has at most one state at a time). Cost O(states x log(dates) + output rows).
    """
    d = dates.asi8 if dates.unit == "us" else dates.as_unit("us").asi8
    start = iv["start"].to_numpy("datetime64[us]").view(np.int64)
    end_raw = iv["end"].to_numpy("datetime64[us]").view(np.int64)
    end = np.where(end_raw == np.iinfo(np.int64).min, _MAX, end_raw)
    lo = np.searchsorted(d, start, side="left")
    hi = np.searchsorted(d, end, side="left")
    n = np.where(iv["is_open"].to_numpy(), hi - lo, 0)
    total = int(n.sum())
    rows = np.repeat(np.arange(len(iv)), n)
    offsets = np.cumsum(n) - n
    date_idx = lo[rows] + (np.arange(total) - offsets[rows])
    # a stable sort on the date alone keeps the rows of each date in the order of iv (radix sort for small ints)
    small = np.int16 if len(d) < 2**15 else np.int64
    order = np.argsort(date_idx.astype(small), kind="stable")
    return rows[order], date_idx[order]


def stage_intervals(data: CRMData) -> pd.DataFrame:
    """Each opportunity's history as validity intervals.

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    pandas.DataFrame
        One row per state: ``opportunity_id, start, end, stage, is_open, amount, close_date,
        forecast_category, stage_entered_at, created_at``; ``[start, end)`` is when the state held (``end`` is
        NaT for the current state), sorted by opportunity then start. ``stage_entered_at`` is when the deal
        entered the stage of this state (a run of consecutive changes in the same stage counts once).
        ``stage`` is missing where it is unknown (a closed opportunity without history, before it closed).
    """
    return _intervals(data)[0]


def pipeline_snapshots(
    data: CRMData,
    as_of: Any,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The open pipeline as it stood at each date, rebuilt from stage_history.

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities and stage_history).
    as_of : date, str or sequence of dates
        The moments to rebuild. A date without a time means midnight at its start: a change made during
        that day is not yet known. Duplicates are dropped.
    columns : sequence of str, optional
        Static opportunity columns to copy in (default: those of `DEFAULT_COLUMNS` present). Their current
        values are used: the canonical tables do not historise them.

    Returns
    -------
    pandas.DataFrame
        One row per (as_of, open opportunity), sorted by as_of then opportunity_id: ``as_of,
        opportunity_id, stage, amount, close_date, forecast_category, created_at, stage_entered_at,
        days_in_stage, age_days`` and the static columns. ``days_in_stage`` counts from when the deal entered
        its current stage; ``age_days`` from its creation (both fractional days).

    Notes
    -----
    The rules are in this module's docstring. Cost is O(changes x log(dates) + output rows); nothing depends
    on other opportunities, so partitions by opportunity_id can be computed separately and concatenated.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> snap = pipeline_snapshots(data, ["2024-01-01", "2024-04-01"])
    >>> snap.groupby("as_of").size().gt(0).all()
    np.True_
    """
    dates = to_dates(as_of)
    iv, _, iv_opp_pos = _intervals(data)
    rows, date_idx = _snapshot_rows(iv, dates)

    sel = iv.iloc[rows].reset_index(drop=True)
    when = pd.Series(dates[date_idx], name="as_of")
    day = np.timedelta64(86_400_000_000, "us")
    out = pd.DataFrame(
        {
            "as_of": when.to_numpy("datetime64[us]"),
            "opportunity_id": sel["opportunity_id"],
            "stage": sel["stage"],
            "amount": sel["amount"],
            "close_date": sel["close_date"],
            "forecast_category": sel["forecast_category"],
            "created_at": sel["created_at"],
            "stage_entered_at": sel["stage_entered_at"],
        }
    )
    asof_us = out["as_of"].to_numpy("datetime64[us]")
    out["days_in_stage"] = (asof_us - sel["stage_entered_at"].to_numpy("datetime64[us]")) / day
    out["age_days"] = (asof_us - sel["created_at"].to_numpy("datetime64[us]")) / day
    if columns is None:
        columns = [c for c in DEFAULT_COLUMNS if c in data.opportunities.columns]
    missing = [c for c in columns if c not in data.opportunities.columns]
    if missing:
        raise KeyError(f"opportunities has no column {missing[0]!r}; available: {list(data.opportunities.columns)}")
    if columns:
        pos = iv_opp_pos[rows]
        for c in columns:
            out[c] = data.opportunities[c].take(pos).reset_index(drop=True)
    return out


def known_at(data: CRMData, cutoff: Any) -> CRMData:
    """The data as they were known at `cutoff`: no change, creation or submission after it.

    Stage history keeps the changes at or before `cutoff`; opportunities keep those created at or before it, with
    their state (stage, closed and won flags, amount, close date, forecast category) rebuilt from the last change
    known at `cutoff` (fields the history never recorded keep their current values, as in
    `salesforecast.snapshots.pipeline_snapshots`; a deal closed now whose history never reaches a won or lost stage
    keeps its closed state when the snapshots close it by `cutoff`). An opportunity with no history row known at
    `cutoff` is kept only when it has no history at all and is open now or closed by `cutoff` (its state then
    cannot have changed); otherwise its state at `cutoff` is unknown and it is left out (`pipeline_snapshots`, by
    contrast, puts a deal whose first change comes within a day of its creation in that stage from creation on,
    even before the change was made). Leads created after
    `cutoff` are dropped and conversions after it undone; forecast submissions after it are dropped; quotas are
    kept.

    Parameters
    ----------
    data : CRMData
    cutoff : date

    Returns
    -------
    CRMData
        A copy; the quarantine and counts are those of `data`.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> past = known_at(data, "2024-06-30")
    >>> bool(past.stage_history["changed_at"].max() <= pd.Timestamp("2024-06-30"))
    True
    >>> int(past.opportunities["is_closed"].sum()) < int(data.opportunities["is_closed"].sum())
    True
    """
    cutoff = pd.Timestamp(cutoff)
    process = data.process
    opps = data.opportunities
    hist = data.stage_history
    created = opps.loc[opps["created_at"] <= cutoff]
    known_rows = (hist["changed_at"] <= cutoff).to_numpy() & isin(
        hist["opportunity_id"], created["opportunity_id"]
    ).to_numpy()
    h = hist.loc[known_rows]
    has_any = isin(created["opportunity_id"], hist["opportunity_id"])
    has_known = isin(created["opportunity_id"], h["opportunity_id"])
    bare_ok = ~has_any & (~created["is_closed"] | (created["close_date"] <= cutoff))
    kept = created.loc[has_known | bare_ok].copy()
    # closed now, but the history never reaches a won or lost stage: snapshots close such a deal at its close date
    # (or last change); when that is at or before the cutoff, it was already closed then
    no_terminal = ~isin(kept["opportunity_id"], hist.loc[process.is_closed(hist["stage"]), "opportunity_id"])
    last_change = hist.groupby("opportunity_id", sort=False)["changed_at"].max()
    last_change = last_change.reindex(kept["opportunity_id"].to_numpy()).to_numpy("datetime64[us]")
    close_when = np.maximum(
        kept["close_date"].to_numpy("datetime64[us]"), kept["created_at"].to_numpy("datetime64[us]")
    )
    close_when = np.where(np.isnat(last_change), close_when, np.maximum(close_when, last_change))
    closed_then = kept["is_closed"].to_numpy() & no_terminal.to_numpy() & (close_when <= cutoff.to_datetime64())
    current = kept[["stage", "is_closed", "is_won", "close_date"]].copy()
    if len(h):
        cols = [c for c in ("stage", "amount", "close_date", "forecast_category") if c in h.columns]
        last = h.sort_values("changed_at", kind="stable").groupby("opportunity_id", sort=False)[cols].last()
        last = last.reindex(kept["opportunity_id"].to_numpy())
        for c in cols:
            known = last[c].notna().to_numpy()
            if c in kept.columns:
                values = kept[c].to_numpy(copy=True)
                values[known] = last[c].to_numpy()[known]
                kept[c] = pd.Series(values, index=kept.index, dtype=kept[c].dtype)
        stage = kept["stage"]
        in_hist = has_known.loc[kept.index].to_numpy()
        kept["is_closed"] = np.where(in_hist, process.is_closed(stage).to_numpy(), kept["is_closed"].to_numpy())
        kept["is_won"] = np.where(in_hist, process.is_won(stage).to_numpy(), kept["is_won"].to_numpy())
        for c in current.columns:
            kept[c] = kept[c].where(~closed_then, current[c])
    leads = data.leads
    if len(leads) and "created_at" in leads.columns:
        leads = leads.loc[leads["created_at"] <= cutoff].copy()
        if "converted_at" in leads.columns:
            later = (leads["converted_at"] > cutoff).fillna(False).to_numpy(dtype=bool)
            leads["converted"] = leads["converted"].to_numpy() & ~later
            leads["converted_at"] = leads["converted_at"].mask(later)
            if "opportunity_id" in leads.columns:
                leads["opportunity_id"] = leads["opportunity_id"].mask(later)
    subs = data.forecast_submissions
    if len(subs) and "submitted_at" in subs.columns:
        subs = subs.loc[subs["submitted_at"] <= cutoff]
    return replace(
        data,
        opportunities=kept.reset_index(drop=True),
        stage_history=h.reset_index(drop=True),
        leads=leads.reset_index(drop=True),
        forecast_submissions=subs.reset_index(drop=True),
    )


# ------------------------------------------------------------------------------------------------ life tables
