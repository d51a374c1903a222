"""Pipeline movement between two dates (a reconciling waterfall) and pipeline coverage of quota.

The pipeline at a moment is the open pipeline exactly as `salesforecast.snapshots.pipeline_snapshots` rebuilds
it; with a fiscal ``period`` (``FY2024Q3``) it is the *in-period pipeline*: the open deals whose close date, as it
stood then, falls in the period, as is usual in RevOps. A deal is *in scope* at a moment when it is in that
pipeline.

The waterfall compares each deal's state just before ``start`` with its state just before ``end`` (the window
is ``[start, end)``, half-open as the period bounds: the levels are the snapshots one microsecond before each
moment, so that a change made at ``start`` itself, such as a deal closed at 00:00 of the period's first day, is
a movement of the window; to include what happened at a moment such as a report date, as `pipeline_coverage`
does at its ``as_of``, end the window one microsecond after it, as `salesforecast.review.waterfall_window` does)
and attributes the change once, so that, in count and in amount::

    opening + created + pulled in + slipped in + reopened + amount increased
            - amount decreased - won - lost - pushed out - pulled out = closing

Rules (the contract the tests check)
------------------------------------
- A deal *enters* when it is out of scope at ``start`` and, at ``end``, in scope, or closed during the window
  ``[start, end)`` with a close date in the period (any close date without a period). How it entered depends
  on where it was at ``start``: not yet created -> ``created``; open with a close date after the period (or
  none) -> ``pulled in``; open with a close date before the period -> ``slipped in``; closed -> ``reopened``.
  It enters with its amount at ``end`` (its closing amount when it closed).
- A deal *leaves* when it was in scope at ``start`` or entered, and at ``end`` is closed (``won`` or ``lost``,
  with its closing amount) or open but out of scope (``pushed out`` when its close date is now after the
  period or missing, ``pulled out`` when before it, with its amount at ``end``). A deal created and closed
  inside the window is therefore in ``created`` and in ``won`` or ``lost``.
- A deal in scope at ``start`` whose amount at ``end`` (its closing amount, or its amount when it left the
  scope) differs from its amount at ``start`` puts the difference in ``amount increased`` or
  ``amount decreased``; those steps move amount, not count.
- A deal that left and came back within the window, or entered and left again without closing, is judged by
  its two end states only (net zero). A missing amount counts as 0.

Amounts reconcile exactly up to floating-point rounding (exactly for whole-number amounts).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from salesforecast._utils import NAT, to_us
from salesforecast.schema import CRMData
from salesforecast.snapshots import DEFAULT_COLUMNS, stage_intervals, unknown_before

__all__ = [
    "COVERAGE_ADDITIVE",
    "STEPS",
    "UndatedPipelineWarning",
    "coverage_deals",
    "coverage_table",
    "coverage_total",
    "owner_counts",
    "pipeline_coverage",
    "pipeline_waterfall",
    "waterfall_deals",
    "warn_undated",
]


class UndatedPipelineWarning(UserWarning):
    """Open deals without an expected close date: no in-period pipeline (coverage) can count them."""

    label = "Open deals without a close date"


#: Waterfall steps in display order with their direction: ``start``/``end`` are levels, ``in`` adds, ``out``
#: subtracts.
STEPS: tuple[tuple[str, str], ...] = (
    ("opening pipeline", "start"),
    ("created", "in"),
    ("pulled in", "in"),
    ("slipped in", "in"),
    ("reopened", "in"),
    ("amount increased", "in"),
    ("amount decreased", "out"),
    ("won", "out"),
    ("lost", "out"),
    ("pushed out", "out"),
    ("pulled out", "out"),
    ("closing pipeline", "end"),
)


def _timestamp(value: Any, name: str) -> pd.Timestamp:
    if value is None:
        raise ValueError(f"{name} is required: give a date such as '2024-07-01'")
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"{name} is missing (NaT); give a date")
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")


def _state_at(iv: pd.DataFrame, codes: np.ndarray, n_deals: int, t: pd.Timestamp) -> np.ndarray:
    """Row of `iv` holding each deal's state at `t` (-1 when the deal did not exist yet)."""
    ti = to_us(t)
    start = iv["start"].to_numpy("datetime64[us]").view(np.int64)
    end = iv["end"].to_numpy("datetime64[us]").view(np.int64)
    hold = (start <= ti) & ((end == NAT) | (end > ti))
    rows = np.full(n_deals, -1, dtype=np.int64)
    rows[codes[hold]] = np.flatnonzero(hold)
    return rows


def _scope_words(period: str | None) -> str:
    return f"open with a close date in {period}" if period else "open"


def _end_words(end: pd.Timestamp) -> tuple[str, str]:
    """How the definitions name the state at `end` and the closes counted up to it.

    The state is taken just before `end`; an `end` one microsecond after a whole second (as
    `salesforecast.review.waterfall_window` passes to include the report date) is that second, included.
    """
    at = end - pd.Timedelta(microseconds=1)
    if at == at.floor("s"):
        when = f"{at:%Y-%m-%d %H:%M}" if at.second == 0 else f"{at:%Y-%m-%d %H:%M:%S}"
        return f"at {when} (included)", f"by {when} (included)"
    return f"just before {end:%Y-%m-%d %H:%M}", f"before {end:%Y-%m-%d %H:%M}"


def _definitions(start: pd.Timestamp, end: pd.Timestamp, period: str | None) -> dict[str, str]:
    # the states are taken just before each moment (the window is [start, end))
    s = f"{start:%Y-%m-%d %H:%M}"
    e_state, e_by = _end_words(end)
    scope = _scope_words(period)
    closes = f"closed in the window with a close date in {period}" if period else "closed in the window"
    where = "in scope" if period else "in the pipeline"
    return {
        "opening pipeline": f"deals {scope} just before {s}",
        "created": f"deals created from {s} that are {scope} {e_state} or {closes}",
        "pulled in": (
            f"open just before {s} with a close date after {period} (or none), then {scope} {e_state} or {closes}"
            if period
            else "not used without a period"
        ),
        "slipped in": (
            f"open just before {s} with a close date before {period} (overdue or earlier), "
            f"then {scope} {e_state} or {closes}"
            if period
            else "not used without a period"
        ),
        "reopened": f"closed just before {s}, then {scope} {e_state} or closed again in the window",
        "amount increased": (
            f"deals {where} just before {s}: amount {e_state} (at closing, or when they left) "
            f"above that just before {s}"
        ),
        "amount decreased": (
            f"deals {where} just before {s}: amount {e_state} (at closing, or when they left) "
            f"below that just before {s}"
        ),
        "won": f"deals {where} just before {s} or entered since, closed won {e_by} (closing amount)",
        "lost": f"deals {where} just before {s} or entered since, closed lost {e_by} (closing amount)",
        "pushed out": (
            f"deals {where} just before {s}, open {e_state} with a close date after {period} (or none)"
            if period
            else "not used without a period"
        ),
        "pulled out": (
            f"deals {where} just before {s}, open {e_state} with a close date before {period}"
            if period
            else "not used without a period"
        ),
        "closing pipeline": f"deals {scope} {e_state}",
    }


def _unknown_if_open(
    data: CRMData, close_us: np.ndarray, is_open: np.ndarray, at: pd.Timestamp, unknown: Any = "data"
) -> np.ndarray:
    """Close dates (int64 microseconds) as known at `at`: NaT for open deals when the history did not record them.

    `unknown`: the time before which they are unknown (None: never), default the data's own rule.
    """
    if isinstance(unknown, str):
        unknown = unknown_before(data, "close_date")
    if unknown is None or np.datetime64(pd.Timestamp(at), "us") >= unknown:
        return close_us
    return np.where(is_open, NAT, close_us)


def waterfall_deals(data: CRMData, start: Any, end: Any, period: str | None = None) -> pd.DataFrame:
    """Per-deal attribution of the pipeline movement between two dates (the drill-down of `pipeline_waterfall`).

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities and stage_history).
    start, end : date
        The window ``[start, end)``: the pipeline is taken as it stood just before each moment (a date without a
        time is midnight at its start, so none of that day's changes are known yet, not even those made at
        00:00): a deal closed at 00:00 of the period's first day is a movement of the window, one closed at
        `end` is not.
    period : str, optional
        A fiscal period label (``FY2024Q3``, ``2024-07``, ``FY2024``): count only the open pipeline whose close
        date falls in it. None: all open pipeline.

    Returns
    -------
    pandas.DataFrame
        One row per (deal, step) the deal contributes to, steps in `STEPS` order then by ``opportunity_id``:
        ``step, direction, opportunity_id, count, amount`` (``count`` is 1 except for the amount steps, 0;
        ``amount`` is positive, its sign given by ``direction``), then the deal's static columns present
        (``owner``, ``team``, ...) and its state at both ends: ``stage_start, amount_start,
        close_date_start, stage_end, amount_end, close_date_end`` (missing at ``start`` for deals created
        later). The rules are in this module's docstring.

    Warns
    -----
    UndatedPipelineWarning
        With a `period`, when deals counted as ``pulled in`` were open at `start` with no close date known then
        (none in the export, or a history that did not record close dates): the split between the opening
        pipeline and ``pulled in`` cannot be told for them.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> rows = waterfall_deals(load_sample(), "2024-07-01", "2024-10-01", period="FY2024Q3")
    >>> rows.loc[rows["step"] == "created", "count"].sum() > 0
    np.True_
    """
    start_ts, end_ts = _timestamp(start, "start"), _timestamp(end, "end")
    if end_ts < start_ts:
        raise ValueError(f"end ({end_ts}) is before start ({start_ts}); the window runs from start to end")
    process = data.process
    if period is not None:
        lo, hi = process.calendar.period_bounds(period)
        lo_i, hi_i = to_us(lo), to_us(hi)
    iv = stage_intervals(data)
    codes, uniques = pd.factorize(iv["opportunity_id"])
    n = len(uniques)
    # both states are taken just before their moment, so the window is [start, end) as the period bounds are:
    # a change made at `start` itself (a deal closed at 00:00 of the period's first day) is a movement of the
    # window (taken at `start` it was in neither the opening nor the flows), one made at `end` is the next's
    tick = pd.Timedelta(microseconds=1)
    rs, re_ = _state_at(iv, codes, n, start_ts - tick), _state_at(iv, codes, n, end_ts - tick)

    is_open = iv["is_open"].to_numpy(dtype=bool)
    close_i = iv["close_date"].to_numpy("datetime64[us]").view(np.int64)
    amount = np.nan_to_num(iv["amount"].to_numpy(dtype="float64"), nan=0.0)
    entered = iv["stage_entered_at"].to_numpy("datetime64[us]").view(np.int64)
    won_row = iv["stage"].isin(process.won_stages).to_numpy()

    def take(a: np.ndarray, rows: np.ndarray, fill: Any) -> np.ndarray:
        return np.where(rows >= 0, a[np.maximum(rows, 0)], fill)

    exists_s = rs >= 0
    open_s, open_e = take(is_open, rs, False), take(is_open, re_, False)
    cd_s, cd_e = take(close_i, rs, NAT), take(close_i, re_, NAT)
    # a history that never recorded close dates (derived from dates) knows no open deal's close date before the
    # data's as_of: today's value is when the deal really closed (`salesforecast.snapshots` rules)
    cd_s = _unknown_if_open(data, cd_s, open_s, start_ts - tick)
    cd_e = _unknown_if_open(data, cd_e, open_e, end_ts - tick)
    amt_s, amt_e = take(amount, rs, 0.0), take(amount, re_, 0.0)
    alive = re_ >= 0  # created by end
    closed_e = alive & ~open_e
    closed_in_window = closed_e & (take(entered, re_, NAT) >= to_us(start_ts))
    if period is None:
        in_p_s = np.ones(n, dtype=bool)
        in_p_e = np.ones(n, dtype=bool)
        before_s = before_e = np.zeros(n, dtype=bool)
    else:
        in_p_s = (cd_s != NAT) & (cd_s >= lo_i) & (cd_s < hi_i)
        in_p_e = (cd_e != NAT) & (cd_e >= lo_i) & (cd_e < hi_i)
        before_s = (cd_s != NAT) & (cd_s < lo_i)
        before_e = (cd_e != NAT) & (cd_e < lo_i)
    in_s = exists_s & open_s & in_p_s
    in_e = alive & open_e & in_p_e
    closes = closed_in_window & (in_s | in_p_e)
    enter = ~in_s & (in_e | closes)
    moved_out = in_s & open_e & ~in_p_e
    delta = np.where(in_s, amt_e - amt_s, 0.0)
    won_e = take(won_row, re_, False)

    steps = {
        "opening pipeline": (in_s, np.ones(n), amt_s),
        "created": (enter & ~exists_s, np.ones(n), amt_e),
        "pulled in": (enter & exists_s & open_s & ~before_s, np.ones(n), amt_e),
        "slipped in": (enter & exists_s & open_s & before_s, np.ones(n), amt_e),
        "reopened": (enter & exists_s & ~open_s, np.ones(n), amt_e),
        "amount increased": (delta > 0, np.zeros(n), np.abs(delta)),
        "amount decreased": (delta < 0, np.zeros(n), np.abs(delta)),
        "won": (closes & won_e, np.ones(n), amt_e),
        "lost": (closes & ~won_e, np.ones(n), amt_e),
        "pushed out": (moved_out & ~before_e, np.ones(n), amt_e),
        "pulled out": (moved_out & before_e, np.ones(n), amt_e),
        "closing pipeline": (in_e, np.ones(n), amt_e),
    }
    if period is not None:
        undated_in = enter & exists_s & open_s & (cd_s == NAT)
        if undated_in.any():
            warnings.warn(
                f"{int(undated_in.sum()):,} deals (amount {amt_e[undated_in].sum():,.0f}) counted as 'pulled in' to "
                f"{period} were open at the window's start with no close date known then (the export has none for "
                "them, or the history did not record close dates): whether they were already expected in the period "
                "cannot be told, so the opening pipeline may be understated by them and 'pulled in' overstated.",
                UndatedPipelineWarning,
                stacklevel=2,
            )
    direction = dict(STEPS)
    deal_idx, step_idx = [], []
    for j, (name, _) in enumerate(STEPS):  # a loop over the twelve steps
        sel = np.flatnonzero(steps[name][0])
        deal_idx.append(sel)
        step_idx.append(np.full(len(sel), j))
    d = np.concatenate(deal_idx)
    j = np.concatenate(step_idx)
    count = np.concatenate([steps[name][1][sel] for (name, _), sel in zip(STEPS, deal_idx, strict=True)])
    amt = np.concatenate([steps[name][2][sel] for (name, _), sel in zip(STEPS, deal_idx, strict=True)])
    names = np.array([s for s, _ in STEPS], dtype=object)
    out = pd.DataFrame(
        {
            "step": pd.Series(names[j], dtype="str"),
            "direction": pd.Series(np.array([direction[s] for s in names], dtype=object)[j], dtype="str"),
            "opportunity_id": pd.Series(np.asarray(uniques, dtype=object)[d], dtype="str"),
            "count": count.astype(np.int64),
            "amount": amt,
        }
    )
    opps = data.opportunities
    pos = pd.Index(opps["opportunity_id"]).get_indexer(out["opportunity_id"])
    for c in DEFAULT_COLUMNS:
        if c in opps.columns:
            out[c] = opps[c].take(pos).reset_index(drop=True)
    stage = iv["stage"]  # read for the deals listed only: no object array of every interval's name

    def stage_at(rows: np.ndarray) -> pd.Series:
        return pd.Series(np.where(rows >= 0, stage.take(np.maximum(rows, 0)).to_numpy(), None), dtype="str")

    nat = np.datetime64("NaT", "us")
    rs_d, re_d = rs[d], re_[d]
    out["stage_start"] = stage_at(rs_d)
    out["amount_start"] = np.where(rs_d >= 0, amt_s[d], np.nan)
    out["close_date_start"] = np.where(rs_d >= 0, cd_s[d].view("datetime64[us]"), nat)
    out["stage_end"] = stage_at(re_d)
    out["amount_end"] = amt_e[d]
    out["close_date_end"] = cd_e[d].view("datetime64[us]")
    out.attrs.update({"start": start_ts, "end": end_ts, "period": period})
    return out


def pipeline_waterfall(data: CRMData, start: Any, end: Any, period: str | None = None) -> pd.DataFrame:
    """How the pipeline moved between two dates: a waterfall that reconciles exactly.

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities and stage_history).
    start, end : date
        The window ``[start, end)`` (see `waterfall_deals`).
    period : str, optional
        A fiscal period label: count only the open pipeline whose close date falls in it (in-period
        pipeline). None: all open pipeline.

    Returns
    -------
    pandas.DataFrame
        One row per step of `STEPS`, in order: ``step``, ``direction`` (``start``, ``in``, ``out``, ``end``),
        ``deals`` (deals attributed to the step), ``count`` (their effect on the number of open deals: equal to
        ``deals``, except 0 for the amount steps), ``amount`` (positive; its sign is the direction) and
        ``definition`` (the step in plain words). ``opening + in - out = closing`` holds for ``count`` and
        ``amount``. Steps without deals are kept, with zeros. ``attrs`` holds ``start``, ``end``, ``period``.

    Notes
    -----
    Each deal's state at `start` is compared with its state at `end` and the change attributed once; the
    rules are in the docstring of `salesforecast.movement`. `waterfall_deals` gives the per-deal rows.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> wf = pipeline_waterfall(load_sample(), "2024-07-01", "2024-10-01", period="FY2024Q3")
    >>> wf["step"].tolist()[:3]
    ['opening pipeline', 'created', 'pulled in']
    >>> sign = wf["direction"].map({"start": 1, "in": 1, "out": -1, "end": 0})
    >>> int((wf["count"] * sign).sum()) == int(wf.loc[wf["step"] == "closing pipeline", "count"].iloc[0])
    True
    """
    rows = waterfall_deals(data, start, end, period)
    agg = rows.groupby("step", sort=False).agg(deals=("opportunity_id", "size"), count=("count", "sum"))
    agg["amount"] = rows.groupby("step", sort=False)["amount"].sum()
    names = [s for s, _ in STEPS]
    agg = agg.reindex(names, fill_value=0)
    defs = _definitions(rows.attrs["start"], rows.attrs["end"], period)
    out = pd.DataFrame(
        {
            "step": pd.Series(names, dtype="str"),
            "direction": pd.Series([d for _, d in STEPS], dtype="str"),
            "deals": agg["deals"].to_numpy(dtype=np.int64),
            "count": agg["count"].to_numpy(dtype=np.int64),
            "amount": agg["amount"].to_numpy(dtype="float64"),
            "definition": pd.Series([defs[s] for s in names], dtype="str"),
        }
    )
    out.attrs.update(rows.attrs)
    return out


def _period_quota(quotas: pd.DataFrame, period: str, calendar: Any) -> pd.DataFrame:
    """Quota rows whose period lies inside `period` (a year sums its quarters; a quarter its months)."""
    lo, hi = calendar.period_bounds(period)
    labels = pd.unique(quotas["period"].dropna())
    inside = {}
    for label in labels:  # a loop over the distinct period labels of the quotas table
        try:
            a, b = calendar.period_bounds(label)
        except ValueError:
            continue
        inside[label] = bool(a >= lo and b <= hi)
    return quotas.loc[quotas["period"].map(inside).fillna(False).astype(bool)]


#: The columns of `pipeline_coverage` that add up over rows (teams, reps): a total row sums them; the other
#: columns (remaining quota, attainment, coverages, note) are recomputed from the sums, never summed.
COVERAGE_ADDITIVE: tuple[str, ...] = (
    "quota",
    "closed_won",
    "won_deals",
    "open_pipeline",
    "open_deals",
    "weighted_pipeline",
    "undated_pipeline",
    "undated_deals",
)


def _coverage_ratios(out: pd.DataFrame) -> pd.DataFrame:
    """`out` (the additive columns of `pipeline_coverage`) with the remaining quota, the ratios and the note."""
    out = out.copy()
    out["remaining_quota"] = out["quota"] - out["closed_won"]
    has_quota = out["quota"] > 0
    gap = out["remaining_quota"] > 0
    out["attainment"] = (out["closed_won"] / out["quota"]).where(has_quota)
    out["coverage"] = (out["open_pipeline"] / out["remaining_quota"]).where(has_quota & gap)
    out["weighted_coverage"] = (out["weighted_pipeline"] / out["remaining_quota"]).where(has_quota & gap)
    note = np.where(~has_quota, "no quota for the period", np.where(~gap, "quota met: coverage undefined", ""))
    out["note"] = pd.Series(note, index=out.index, dtype="str")
    return out


def coverage_total(coverage: pd.DataFrame, label: str | None = None) -> pd.DataFrame:
    """The total row of a `pipeline_coverage` table: sums of the additive columns, ratios recomputed from the sums.

    Parameters
    ----------
    coverage : pandas.DataFrame
        `pipeline_coverage` (one row per team, rep or other value, or one row for the period).
    label : str, optional
        The total row's index value; default ``"Total (all teams)"``, ``"Total (all reps)"`` (by owner), else
        ``"Total"``.

    Returns
    -------
    pandas.DataFrame
        One row with `coverage`'s columns, dtypes, index name and ``attrs``. The `COVERAGE_ADDITIVE` columns are
        the sums over the rows; ``quota`` is the sum of the known quotas (NaN when no row has one: unknown, not 0).
        ``remaining_quota = quota - closed_won``, ``attainment``, ``coverage`` and ``weighted_coverage`` are
        computed from those sums as `pipeline_coverage` computes them for a row, never summed or averaged. When
        some rows have a quota and others not, the total's ``note`` says how many have one (their deals count
        in closed won and pipeline, their quota nowhere). An empty table gives a row of zeros without quota.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> by_team = pipeline_coverage(load_sample(), "FY2024Q3", as_of="2024-08-15", by="team")
    >>> total = coverage_total(by_team)
    >>> total.index.tolist(), bool(total["attainment"].iloc[0] == total["closed_won"].iloc[0] / total["quota"].iloc[0])
    (['Total (all teams)'], True)
    >>> whole = pipeline_coverage(load_sample(), "FY2024Q3", as_of="2024-08-15")  # the same as one row for the period
    >>> bool(((total.to_numpy()[0, :-1] - whole.to_numpy()[0, :-1]) ** 2 < 1e-9).all())
    True
    """
    name = coverage.index.name
    if label is None:
        plural = {"team": "teams", "owner": "reps"}.get(str(name))
        label = f"Total (all {plural})" if plural else "Total"
    sums = {}
    for c in COVERAGE_ADDITIVE:
        if c in coverage.columns:
            sums[c] = [coverage[c].sum(min_count=1) if c == "quota" else coverage[c].sum()]
    total = _coverage_ratios(pd.DataFrame(sums, index=pd.Index([label], name=name, dtype="str")))
    known = coverage["quota"].notna() if "quota" in coverage.columns else pd.Series(False, index=coverage.index)
    if known.any() and not known.all():
        rule = str(total["note"].iloc[0])
        part = f"quota known for {int(known.sum())} of {len(coverage)} rows: the others' deals count, not their quota"
        total["note"] = pd.Series([f"{part}; {rule}" if rule else part], index=total.index, dtype="str")
    total = total[[c for c in coverage.columns if c in total.columns]]
    total = total.astype({c: coverage[c].dtype for c in total.columns if c != "note"})
    total.attrs.update(coverage.attrs)
    return total


def pipeline_coverage(data: CRMData, period: str, as_of: Any = None, by: str | None = None) -> pd.DataFrame:
    """Quota, closed won, open pipeline, attainment and coverage of a fiscal period at a moment.

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities, stage_history, quotas).
    period : str
        A fiscal period label (``FY2024Q3``; ``FY2024`` sums the quarters' quotas inside it).
    as_of : date, optional
        The moment of the view (default: ``data.as_of``); only what was known then counts.
    by : str, optional
        ``"owner"``, ``"team"`` or another opportunities column: one row per value. Quotas are per owner; for
        another column an owner's quota goes to the value most of their deals carry.

    Returns
    -------
    pandas.DataFrame
        One row (index: the period, or the `by` values): ``quota`` (sum of the quotas of the period),
        ``closed_won`` and ``won_deals`` (deals won by `as_of` with a close date in the period),
        ``open_pipeline`` and ``open_deals`` (open at `as_of` with a close date in the period, unweighted),
        ``weighted_pipeline`` (each deal's amount times its stage's default probability in the process map;
        0 for an unknown stage), ``undated_pipeline`` and ``undated_deals`` (open at `as_of` without a close
        date: no period can claim them, so they are in neither the open pipeline nor the coverage),
        ``remaining_quota`` (``quota - closed_won``), ``attainment``
        (``closed_won / quota``), ``coverage`` (``open_pipeline / remaining_quota``), ``weighted_coverage``
        (``weighted_pipeline / remaining_quota``) and ``note``. Coverage is undefined (NaN) when the quota is
        already met (``quota <= closed_won``). A row without any quota row in ``data.quotas`` for the period
        (data without quotas, a rep without one) has an unknown quota: ``quota`` and ``remaining_quota`` are NaN,
        not 0, and so are attainment and coverage (also NaN for a quota of 0); ``note`` says so. The formulas
        are in ``attrs["formula"]``.

    Warns
    -----
    UndatedPipelineWarning
        When deals open at `as_of` have no close date (open deals may lack one): how many, their amount, and
        that the open pipeline and coverage leave them out.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> cov = pipeline_coverage(load_sample(), "FY2024Q3", as_of="2024-07-01")
    >>> cov[["quota", "closed_won"]].iloc[0].tolist()[1]
    0.0
    >>> bool(cov["coverage"].iloc[0] > 1)
    True
    """
    as_of_ts = data.as_of if as_of is None else _timestamp(as_of, "as_of")
    as_of_ts = pd.Timestamp(as_of_ts).as_unit("us")
    opps = data.opportunities
    deal_part, undated = coverage_deals(data, period, as_of_ts, by)
    counts = owner_counts(opps, by) if by not in (None, "owner") else None
    out = coverage_table(deal_part, data.quotas, data.process.calendar, period, as_of_ts, by, counts)
    warn_undated(undated, period, as_of_ts)
    return out


def coverage_deals(
    data: CRMData, period: str, as_of: pd.Timestamp, by: str | None, unknown: Any = "data"
) -> tuple[pd.DataFrame, tuple[int, int, float]]:
    """The deals' sums of `pipeline_coverage` per `by` value (``closed_won``, ``won_deals``, ``open_pipeline``...).

    Sums over deals: those of parts of the deals (partitions by opportunity) add up to the whole's. Also the
    undated deals, the open deals and the undated amount (`warn_undated`). `unknown`: the time before which open
    deals' close dates are unknown (`salesforecast.snapshots.unknown_before`; default: the data's own rule).
    """
    process = data.process
    if by is not None and by not in data.opportunities.columns:
        raise KeyError(f"opportunities has no column {by!r}; available: {list(data.opportunities.columns)}")
    lo, hi = process.calendar.period_bounds(period)
    iv = stage_intervals(data)
    codes, uniques = pd.factorize(iv["opportunity_id"])
    rows = _state_at(iv, codes, len(uniques), as_of)
    sel = rows[rows >= 0]
    state = iv.iloc[sel].reset_index(drop=True)
    is_open = state["is_open"].to_numpy(dtype=bool)
    cd_i = _unknown_if_open(
        data, state["close_date"].to_numpy("datetime64[us]").view(np.int64), is_open, as_of, unknown
    )
    cd = pd.Series(cd_i.view("datetime64[us]"))
    in_p = ((cd >= lo) & (cd < hi)).fillna(False).to_numpy(dtype=bool)
    undated = is_open & cd.isna().to_numpy(dtype=bool)
    won = state["stage"].isin(process.won_stages).to_numpy()
    amount = state["amount"].fillna(0.0).to_numpy(dtype="float64")
    prob = state["stage"].map(process.probability).astype("float64").fillna(0.0).to_numpy()
    opps = data.opportunities
    if by is None:
        key = pd.Series(np.full(len(state), period, dtype=object), dtype="str")
    else:
        pos = pd.Index(opps["opportunity_id"]).get_indexer(state["opportunity_id"])
        key = opps[by].take(pos).reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "key": key,
            "closed_won": np.where(won & in_p, amount, 0.0),
            "won_deals": (won & in_p).astype(np.int64),
            "open_pipeline": np.where(is_open & in_p, amount, 0.0),
            "open_deals": (is_open & in_p).astype(np.int64),
            "weighted_pipeline": np.where(is_open & in_p, amount * prob, 0.0),
            "undated_pipeline": np.where(undated, amount, 0.0),
            "undated_deals": undated.astype(np.int64),
        }
    )
    frame = frame.loc[(frame["won_deals"] > 0) | (frame["open_deals"] > 0) | (frame["undated_deals"] > 0)]
    return frame.groupby("key", sort=True).sum(), (int(undated.sum()), int(is_open.sum()), float(amount[undated].sum()))


def owner_counts(opps: pd.DataFrame, by: str) -> pd.DataFrame:
    """Deals per owner and `by` value (``owner``, `by`, ``n``), which give an owner's quota to a `by` value.

    The value most of their deals carry takes it (`coverage_table`). Counts of parts of the deals add up to the
    whole's.
    """
    return opps.groupby(["owner", by], observed=True).size().rename("n").reset_index()


def coverage_table(
    deal_part: pd.DataFrame,
    quotas: pd.DataFrame,
    calendar: Any,
    period: str,
    as_of: pd.Timestamp,
    by: str | None,
    counts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`pipeline_coverage`'s table from the deals' sums (`coverage_deals`) and the quotas.

    `counts`: deals per owner and `by` value (the ``owner``, ``by``, ``n`` columns; summed over parts of the deals,
    the whole's), which give an owner's quota to the `by` value most of their deals carry (for a `by` but owner).
    """
    quotas = _period_quota(quotas, period, calendar)
    if by is None:
        q_key = pd.Series(np.full(len(quotas), period, dtype=object), index=quotas.index, dtype="str")
        name = "period"
    elif by == "owner":
        q_key, name = quotas["owner"], by
    else:
        counts = counts.sort_values(["owner", "n", by], ascending=[True, False, True], kind="stable")
        owner_map = counts.drop_duplicates("owner").set_index("owner")[by]
        q_key, name = quotas["owner"].map(owner_map).fillna("(unassigned)"), by
    quota = pd.Series(quotas["amount"].to_numpy(dtype="float64"), index=q_key.to_numpy()).groupby(level=0).sum()
    index = pd.Index(sorted(set(deal_part.index) | set(quota.index)), name=name, dtype="str")
    if by is None:
        index = pd.Index([period], name=name, dtype="str")
    out = deal_part.reindex(index, fill_value=0)
    # an owner, team or period without any quota row has an unknown quota (NaN), not a quota of 0
    out.insert(0, "quota", quota.reindex(index).to_numpy(dtype="float64"))
    for c in ("won_deals", "open_deals", "undated_deals"):
        out[c] = out[c].astype(np.int64)
    out = _coverage_ratios(out)
    out.attrs.update(
        {
            "period": period,
            "as_of": as_of,
            "formula": (
                "attainment = closed_won / quota; coverage = open_pipeline / (quota - closed_won); "
                "weighted_coverage = weighted_pipeline / (quota - closed_won), weighted_pipeline = "
                "sum(amount x stage default probability); coverage is undefined (NaN) when quota <= closed_won"
            ),
            "definitions": (
                f"closed_won: deals won by {as_of:%Y-%m-%d %H:%M} with a close date in {period}; "
                f"open_pipeline: deals open at {as_of:%Y-%m-%d %H:%M} with a close date in {period}; "
                f"undated_pipeline: deals open at {as_of:%Y-%m-%d %H:%M} without a close date"
            ),
        }
    )
    return out


def warn_undated(undated: tuple[int, int, float], period: str, as_of: pd.Timestamp) -> None:
    """`pipeline_coverage`'s warning of the open deals without a close date (`coverage_deals`' count), if any."""
    n_undated, n_open, amount = undated
    if n_undated:
        warnings.warn(
            f"{n_undated} of the {n_open} deals open at {as_of:%Y-%m-%d} (amount {amount:,.0f}) "
            f"have no expected close date, so nothing says in which period they will close: the open pipeline "
            f"and coverage of {period} leave them out (the coverage table counts them as undated pipeline).",
            UndatedPipelineWarning,
            stacklevel=3,
        )
