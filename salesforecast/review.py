"""Pipeline review as of a date: the deals at risk, with the reasons and the learned chance of winning them.

Uses only what was known at ``as_of``: the pipeline is rebuilt with `pipeline_snapshots`, process
deviations with `deal_adherence(..., as_of=as_of)`, and the stage-conversion model is fitted on the history
known at ``as_of`` (`known_at`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from salesforecast.adherence import deal_adherence
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.schema import CRMData
from salesforecast.snapshots import known_at, pipeline_snapshots

__all__ = [
    "COVERAGE_FORMULAS",
    "QUOTA_COLUMNS",
    "RISK_DEFINITIONS",
    "coverage_table",
    "deals_at_risk",
    "no_movement_sentence",
    "nothing_to_compare",
    "waterfall_window",
]

#: The attainment and coverage columns of `coverage_table` in words, for the reader (the formulas of
#: `movement.pipeline_coverage` are in its ``attrs["formula"]``, in column names).
COVERAGE_FORMULAS = (
    "**attainment** = closed won / quota; **coverage** = open pipeline / (quota - closed won), and **weighted "
    "coverage** the same with the weighted pipeline: how many times the pipeline covers what is left to win. Once "
    "closed won reaches the quota nothing is left to cover, so both coverages are blank (–) and the note says so."
)

#: The risk flags and what they mean.
RISK_DEFINITIONS: dict[str, str] = {
    "stalled": "in its current stage longer than the stage's stall limit (the process map's max_days, else the "
    "90th percentile of completed visits)",
    "pushed >2": "close date moved later more than twice",
    "skipped stage": "jumped over at least one stage of the process map",
}

#: The columns of `salesforecast.movement.pipeline_coverage` that need a quota.
QUOTA_COLUMNS: tuple[str, ...] = ("quota", "remaining_quota", "attainment", "coverage", "weighted_coverage", "note")


def coverage_table(coverage: pd.DataFrame, total: bool = True) -> tuple[pd.DataFrame, str | None]:
    """The attainment table the review shows, with its total row, and the sentence saying when there is no quota.

    Parameters
    ----------
    coverage : pandas.DataFrame
        `salesforecast.movement.pipeline_coverage` (``attrs["period"]`` names the period).
    total : bool, default True
        Add the total row (`salesforecast.movement.coverage_total`: sums of the amounts and counts, attainment and
        coverage recomputed from the sums) under a table of two rows or more.

    Returns
    -------
    table : pandas.DataFrame
        `coverage` with its index as a column, and its total row last. When no row has a quota (the quota is
        unknown, NaN, on every row), the columns that need one (`QUOTA_COLUMNS`) are left out rather than shown
        empty.
    sentence : str or None
        When no row has a quota: that the data have no quota for the period, so there is no attainment or
        coverage to show; when the table has no row at all (by team or rep, no deal and no quota): that there is
        nothing to attain or cover. When only some rows lack one: how many, and that their quota figures show as "–".
        None when every row has a quota.

    Examples
    --------
    >>> import numpy as np
    >>> cov = pd.DataFrame({"quota": [np.nan], "closed_won": [5.0], "note": ["no quota for the period"]},
    ...                    index=pd.Index(["FY2024Q3"], name="period"))
    >>> cov.attrs["period"] = "FY2024Q3"
    >>> table, sentence = coverage_table(cov)
    >>> table.columns.tolist()
    ['period', 'closed_won']
    >>> sentence[:48]
    'The data have no quotas for FY2024Q3, so neither'
    """
    from salesforecast.movement import coverage_total

    period = coverage.attrs.get("period", "the period")
    shown = pd.concat([coverage, coverage_total(coverage)]) if total and len(coverage) > 1 else coverage
    table = shown.reset_index()
    if coverage.empty:  # by team or rep: no row without a deal or a quota
        return table, (
            f"No deal was won with a close date in {period} or open with one at the report date, and the data have "
            f"no quota for {period}: there is nothing to attain or cover."
        )
    missing = coverage["quota"].isna()
    if len(coverage) and missing.all():
        table = table.drop(columns=[c for c in QUOTA_COLUMNS if c in table.columns])
        return table, (
            f"The data have no quotas for {period}, so neither attainment nor coverage of a quota can be shown: "
            "the table gives what was won and what is open."
        )
    if missing.any():
        n, by = int(missing.sum()), coverage.index.name or "row"
        verb = "has" if n == 1 else "have"
        return table, (
            f"{n} of the {len(coverage)} rows (by {by}) {verb} no quota for {period}: quota, attainment and "
            "coverage there are unknown and show as –."
        )
    return table, None


def no_movement_sentence(waterfall: pd.DataFrame) -> str | None:
    """The sentence that replaces a waterfall in which no deal was in scope or moved (an empty chart).

    Parameters
    ----------
    waterfall : pandas.DataFrame
        `salesforecast.movement.pipeline_waterfall` (``attrs`` holds ``start``, ``end`` and ``period``).

    Returns
    -------
    str or None
        None when some deal was in the pipeline or moved; else a sentence naming the period and the window.
    """
    if int(waterfall["count"].abs().sum()) or float(waterfall["amount"].abs().sum()):
        return None
    start, end = waterfall.attrs["start"], waterfall.attrs["end"] - pd.Timedelta(microseconds=1)
    period = waterfall.attrs.get("period")
    scope = f"the {period} pipeline (open deals with a close date in {period})" if period else "the pipeline"
    return (
        f"No deal was in {scope} from {start:%Y-%m-%d} through {end:%Y-%m-%d}, and none entered, closed or left "
        "it: there is no movement to show."
    )


def nothing_to_compare(outcomes: pd.DataFrame, deals: pd.DataFrame) -> str | None:
    """The sentence that replaces the outcome table when no closed deal has any deviation (a table of dashes).

    Parameters
    ----------
    outcomes : pandas.DataFrame
        `salesforecast.adherence.deviation_outcomes` (``label``, ``n_with``).
    deals : pandas.DataFrame
        `salesforecast.adherence.deal_adherence` (``outcome``: won, lost or open), the deals it compared.

    Returns
    -------
    str or None
        None when some closed deal has some deviation (the table has something to say); else a sentence: no deal
        has closed yet, or of the closed deals none had any of the deviations.
    """
    if len(outcomes) and (outcomes["n_with"] > 0).any():
        return None
    n = int((deals["outcome"] != "open").sum())
    if n == 0:
        return "No deal had closed by the report date, so there is no outcome to compare."
    labels = [str(x) for x in outcomes["label"]]
    listed = ", ".join(labels[:-1]) + f" or {labels[-1]}" if len(labels) > 1 else "".join(labels) or "deviated"
    deal = "closed deal" if n == 1 else "closed deals"
    return f"Of the {n:,} {deal} by the report date, none {listed}: there is no deviation whose outcome to compare."


def waterfall_window(data: CRMData, period_start: Any, as_of: Any) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The window of the review's pipeline waterfall: from the period's start through the report date, included.

    `salesforecast.movement.pipeline_waterfall` takes the half-open window ``[start, end)`` (each state just
    before its moment). The review's attainment table (`salesforecast.movement.pipeline_coverage`) takes the
    state *at* the report date, so that a deal closed at the report date itself (a date without a time is
    00:00, as ``as_of="latest"`` resolves on date-only data) counts as closed. To agree with it, the waterfall's
    end is one microsecond after the report date: the closing pipeline is the one at the report date and the
    report date's closes are in ``won`` and ``lost``.

    Parameters
    ----------
    data : CRMData
        The reviewed data (its opportunities' ``created_at``).
    period_start : date
        The start of the reviewed period.
    as_of : date
        The report date.

    Returns
    -------
    tuple of pandas.Timestamp, or None
        ``(start, end)``: start is the period's start, or the first deal's creation when that is later (no
        pipeline existed before it); end is `as_of` plus one microsecond. None when the report date is before
        start (a period that has not begun: no window to move in yet).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> start, end = waterfall_window(load_sample(), "2024-07-01", "2024-08-15")
    >>> str(start), str(end)
    ('2024-07-01 00:00:00', '2024-08-15 00:00:00.000001')
    """
    start = pd.Timestamp(period_start).as_unit("us")
    first = data.opportunities["created_at"].min() if len(data.opportunities) else pd.NaT
    if pd.notna(first):
        start = max(start, pd.Timestamp(first).as_unit("us"))
    as_of_ts = pd.Timestamp(as_of).as_unit("us")
    if as_of_ts < start:
        return None
    return start, as_of_ts + pd.Timedelta(microseconds=1)


def deals_at_risk(
    data: CRMData,
    as_of: Any = None,
    model: StageConversionModel | None = None,
    max_pushes: int = 2,
) -> pd.DataFrame:
    """Open deals at `as_of` that stalled, were pushed more than `max_pushes` times or skipped a stage.

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        The review date (default: the data's as-of). Only what was known then is used.
    model : StageConversionModel, optional
        A model fitted on data known at `as_of`; by default one is fitted here on ``known_at(data, as_of)``.
    max_pushes : int
        A deal is at risk when its close date was pushed more than this many times.

    Returns
    -------
    pandas.DataFrame
        One row per open deal at risk, largest amount first: ``opportunity_id, owner, team, stage, amount,
        close_date, days_in_stage, close_date_pushes, skipped_stages, stalled, risks`` (the flags in words),
        ``win_probability`` (learned, given its stage and days in stage) and ``crm_probability``.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> risky = deals_at_risk(load_sample(), "2025-06-30")
    >>> bool(risky["win_probability"].between(0, 1).all())
    True
    """
    as_of = pd.Timestamp(data.as_of if as_of is None else as_of)
    snap = pipeline_snapshots(data, as_of).reset_index(drop=True)
    deals = deal_adherence(data, as_of=as_of).set_index("opportunity_id")
    cols = ["close_date_pushes", "skipped_stages", "stalled_now"]
    flags = deals[cols].reindex(snap["opportunity_id"].to_numpy()).reset_index(drop=True)
    stalled = flags["stalled_now"].fillna(False).astype(bool)
    pushed = flags["close_date_pushes"].fillna(0).to_numpy() > max_pushes
    skipped = flags["skipped_stages"].fillna(0).to_numpy() > 0
    at_risk = stalled.to_numpy() | pushed | skipped
    if model is None:
        model = StageConversionModel(process=data.process).fit(known_at(data, as_of))
    known = snap["stage"].notna().to_numpy()
    proba = np.full(len(snap), np.nan)
    if known.any():
        proba[known] = np.asarray(model.predict_proba(snap.loc[known]), dtype=float)
    words = np.array(
        [
            "; ".join(w for w, f in zip(("stalled", f"pushed >{max_pushes}", "skipped stage"), row, strict=True) if f)
            for row in zip(stalled.to_numpy(), pushed, skipped, strict=True)
        ],
        dtype=object,
    )
    out = pd.DataFrame(
        {
            "opportunity_id": snap["opportunity_id"],
            "owner": snap["owner"],
            "team": snap["team"] if "team" in snap.columns else pd.Series(pd.NA, index=snap.index, dtype="str"),
            "stage": snap["stage"],
            "amount": snap["amount"],
            "close_date": snap["close_date"],
            "days_in_stage": snap["days_in_stage"],
            # unknown (missing) when the history did not record close dates, else 0 for a deal never pushed
            "close_date_pushes": (
                flags["close_date_pushes"].astype("float64")
                if "close_date" in deals.attrs.get("unrecorded", ())
                else flags["close_date_pushes"].fillna(0).astype("int64")
            ),
            "skipped_stages": flags["skipped_stages"].fillna(0).astype("int64"),
            "stalled": stalled,
            "risks": pd.Series(words, dtype="str"),
            "win_probability": proba,
            "crm_probability": snap["stage"].map(data.process.probability).astype("float64"),
        }
    )
    return out[at_risk].sort_values("amount", ascending=False, kind="stable").reset_index(drop=True)
