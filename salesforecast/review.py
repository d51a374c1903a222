"""Pipeline review as of a date: the deal lists a manager acts on, with the reasons and the learned chance of winning.

`deal_lists` gives four lists of the deals open at the report date (`DEAL_LISTS`): slipped or pushed this period,
overdue close dates, stalled, created this period; each sorted by amount at risk (`AMOUNT_AT_RISK`) and split by
close date (`TIMINGS`: this period's deals first, then earlier, later and undated ones, never mixed), cut to the top
deals with the count and total of the rest. `deals_at_risk` is the older single list of risk flags.

Uses only what was known at ``as_of``: the pipeline is rebuilt with `pipeline_snapshots`, process
deviations with `deal_adherence(..., as_of=as_of)`, and the stage-conversion model is fitted on the history
known at ``as_of`` (`known_at`).
"""

from __future__ import annotations

import html
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from salesforecast import activities as steps
from salesforecast._utils import NEVER, release_memory, to_us
from salesforecast.adherence import UnrecordedHistoryWarning, deal_adherence
from salesforecast.history import DealHistory
from salesforecast.labels import format_amount
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.movement import UndatedPipelineWarning, waterfall_deals
from salesforecast.schema import CRMData
from salesforecast.snapshots import known_at, pipeline_snapshots, unknown_before, unrecorded_fields

__all__ = [
    "AMOUNT_AT_RISK",
    "COVERAGE_FORMULAS",
    "DEAL_LISTS",
    "LIST_COLUMNS",
    "QUOTA_COLUMNS",
    "RISK_DEFINITIONS",
    "STEP_DEFINITIONS",
    "StepReview",
    "TIMINGS",
    "DealList",
    "DealListPart",
    "DealLists",
    "coverage_table",
    "deal_lists",
    "deals_at_risk",
    "list_caption",
    "no_movement_sentence",
    "criteria_table",
    "nothing_to_compare",
    "step_review",
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


# ---------------------------------------------------------------------------------------------------- deal lists
#: How the deal lists are sorted, for the reader (under each list).
AMOUNT_AT_RISK = (
    "Sorted by **amount at risk**, largest first: amount × (1 − learned win probability), the part of the amount the "
    "history expects to be lost (a deal in an unknown stage counts its whole amount)."
)


@dataclass(frozen=True)
class DealList:
    """One list of open deals a manager acts on (`DEAL_LISTS`).

    Attributes
    ----------
    name : str
        Its key, and the name of its boolean column in `DealLists.deals`.
    title : str
        Its heading.
    definition : str
        Which deals it holds, in words (``{period}`` stands for the period's label).
    columns : tuple of str
        Its own columns, shown after those every list shows (`LIST_COLUMNS`).
    flag : str
        The word for it in the other lists' ``other_flags`` column.
    """

    name: str
    title: str
    definition: str
    columns: tuple[str, ...]
    flag: str


#: The deal lists of the pipeline review, in report order. Every list holds deals open at the report date.
DEAL_LISTS: dict[str, DealList] = {
    d.name: d
    for d in (
        DealList(
            "slipped",
            "Slipped or pushed this period",
            "Open at the report date, and since {period} began its close date moved out of {period} (later, or "
            "removed: the waterfall's **pushed out**; earlier: its **pulled out**) or was pushed later at least once.",
            ("close_date_at_start", "slip"),
            "slipped",
        ),
        DealList(
            "overdue",
            "Overdue close dates",
            "Open at the report date with a close date on an earlier day: the deal should have closed by now (a deal "
            "due on the report date itself is not overdue yet).",
            ("days_overdue",),
            "overdue",
        ),
        DealList(
            "stalled",
            "Stalled",
            "Open at the report date and in its current stage longer than the stage's stall limit (the process map's "
            "max_days, else the 90th percentile of the stage's completed visits).",
            ("stall_limit_days",),
            "stalled",
        ),
        DealList(
            "created",
            "Created this period",
            "Created since {period} began (through the report date) and still open at the report date.",
            ("created_at",),
            "new this period",
        ),
    )
}

#: The columns every deal list shows, in order (``team`` when the data have teams); each list adds its own, then
#: ``other_flags`` (the other lists the deal is in, and its other risk flags, in words).
LIST_COLUMNS: tuple[str, ...] = (
    "opportunity_id",
    "owner",
    "team",
    "stage",
    "amount",
    "amount_at_risk",
    "win_probability",
    "days_in_stage",
    "close_date",
)

#: The parts of every list, in display order, by the deal's close date at the report date against the period: this
#: period's deals first, then (in the slipped list only) those that moved out of the period since it began (the
#: waterfall's pushed out and pulled out: this period's business when it began), then those overdue from an earlier
#: period, then later ones, then those without a close date.
TIMINGS: tuple[str, ...] = ("this_period", "moved_out", "earlier", "later", "no_close_date")

_TIMING_HEADINGS = {
    "this_period": "Closing in {period}",
    "moved_out": "Moved out of {period} (the waterfall's pushed out and pulled out)",
    "earlier": "Close date before {period}",
    "later": "Closing after {period}",
    "no_close_date": "No close date",
}
#: Parts a report folds under their caption: not this period's business (overdue from an earlier period, closing
#: later, no close date), so that the page stays a few screens long at hundreds of reps.
_FOLDED = ("earlier", "later", "no_close_date")
_TIMES = {1: "once", 2: "twice"}


@dataclass(frozen=True)
class DealListPart:
    """The deals of one list with one timing (`TIMINGS`): the rows shown and what the caption says of them all.

    Attributes
    ----------
    name : str
        The list (a key of `DEAL_LISTS`).
    timing : str
        One of `TIMINGS`.
    heading : str
        ``Closing in FY2024Q3``, ``Closing after FY2024Q3``...
    rows : pandas.DataFrame
        The deals shown, largest amount at risk first: `LIST_COLUMNS` present, the list's own columns and
        ``other_flags``.
    total : int
        Deals of the part (shown or not).
    amount, at_risk : float
        Their amount and amount at risk.
    caption : str
        ``25 of 312 deals, ...`` when cut, ``All 7 deals, ...`` else: shown of total, and the totals.
    folded : bool
        A part a report may fold: not this period's business (an earlier or later period, no close date).
    """

    name: str
    timing: str
    heading: str
    rows: pd.DataFrame
    total: int
    amount: float
    at_risk: float
    caption: str
    folded: bool


def _deals(n: int) -> str:
    return f"{n:,} deal" if n == 1 else f"{n:,} deals"


def list_caption(shown: int, total: int, amount: float, at_risk: float, rest: float, currency: str | None) -> str:
    """The caption of a deal list: how many of how many are shown, and the amounts of all and of the rest.

    Parameters
    ----------
    shown, total : int
        Deals shown, deals in the list.
    amount, at_risk : float
        The amount and the amount at risk of all `total` deals.
    rest : float
        The amount of the deals not shown.
    currency : str, optional
        ISO 4217 code of the amounts.

    Returns
    -------
    str

    Examples
    --------
    >>> list_caption(25, 312, 4_210_000, 2_100_000, 1_300_000, "EUR")
    '25 of 312 deals, largest amount at risk first. All 312: €4.21M, of which €2.1M at risk; the 287 not shown: €1.3M.'
    >>> list_caption(1, 1, 12_500, 2_500, 0, None)
    'All of 1 deal: 12.5k, of which 2.5k at risk.'
    """
    money = {
        "amount": format_amount(amount, currency, short=True),
        "risk": format_amount(at_risk, currency, short=True),
    }
    if shown >= total:
        every = "All of 1 deal" if total == 1 else f"All {total:,} deals"
        return f"{every}: {money['amount']}, of which {money['risk']} at risk."
    return (
        f"{shown:,} of {_deals(total)}, largest amount at risk first. All {total:,}: {money['amount']}, of which "
        f"{money['risk']} at risk; the {total - shown:,} not shown: {format_amount(rest, currency, short=True)}."
    )


@dataclass(frozen=True)
class DealLists:
    """The deal lists of a pipeline review (`deal_lists` builds them).

    Attributes
    ----------
    deals : pandas.DataFrame
        Every deal open at the report date, largest amount at risk first (then amount, then id): ``opportunity_id,
        owner``, ``team`` (when the data have teams), ``stage, amount, win_probability`` (learned; missing in an
        unknown stage), ``amount_at_risk`` (`AMOUNT_AT_RISK`), ``days_in_stage`` (whole days, missing when unknown),
        ``close_date`` and ``timing`` (`TIMINGS` but ``moved_out``, which the slipped list takes from
        ``waterfall_step``); per list of `DEAL_LISTS` a boolean column of its name
        (``slipped, overdue, stalled, created``) and its own columns: ``close_date_at_start`` (as it stood when the
        period began; missing for a deal created since), ``slip`` (what moved, in words), ``waterfall_step`` (``pushed
        out`` or ``pulled out`` when `salesforecast.movement.pipeline_waterfall` counts the deal there, else
        missing), ``pushes_this_period``, ``days_overdue`` (whole days), ``stall_limit_days``, ``created_at``; and
        ``pushed_3plus``, ``skipped_stage`` (the risk flags of `deals_at_risk`), ``flags`` (every flag in words).
    period : str
        The period's label.
    period_bounds : tuple of pandas.Timestamp
        ``[start, end)`` of the period.
    as_of : pandas.Timestamp
        The report date.
    window : tuple of pandas.Timestamp, or None
        The waterfall's window (`waterfall_window`); None when the period begins after the report date.
    top, top_other : int
        Deals shown of a part of this period's business, and of a folded part (earlier, later, undated).
    currency : str or None
        ISO 4217 code of the amounts.
    notes : tuple of str
        Sentences on what limits the lists: open deals without a close date, unknown days in stage.
    unknown : dict of str to str
        Per list that cannot be told on these data: why (the report says it instead of the list).
    """

    deals: pd.DataFrame
    period: str
    period_bounds: tuple[pd.Timestamp, pd.Timestamp]
    as_of: pd.Timestamp
    window: tuple[pd.Timestamp, pd.Timestamp] | None
    top: int
    top_other: int
    currency: str | None
    notes: tuple[str, ...]
    unknown: dict[str, str]

    def title(self, name: str) -> str:
        """The heading of list `name`."""
        return DEAL_LISTS[name].title

    def definition(self, name: str) -> str:
        """The definition of list `name`, with the period named."""
        return DEAL_LISTS[name].definition.format(period=self.period)

    def members(self, name: str) -> pd.DataFrame:
        """Every deal of list `name` (all its parts), largest amount at risk first; none when it is unknown."""
        if name not in DEAL_LISTS:
            raise KeyError(f"no deal list {name!r}; the lists: {', '.join(DEAL_LISTS)}")
        if name in self.unknown:
            return self.deals.iloc[:0]
        return self.deals.loc[self.deals[name].to_numpy(dtype=bool)]

    def parts(self, name: str) -> list[DealListPart]:
        """List `name` split by close date (`TIMINGS` order), each cut to its top deals, empty parts left out."""
        members = self.members(name)
        spec = DEAL_LISTS[name]
        columns = [c for c in LIST_COLUMNS if c in members.columns] + list(spec.columns)
        out = []
        timings = members["timing"].to_numpy(dtype=object)
        if name == "slipped":  # expected in the period when it began, then moved out: apart from later deals
            timings = np.where(members["waterfall_step"].notna().to_numpy(), "moved_out", timings)
        for timing in TIMINGS:
            part = members.loc[timings == timing]
            if part.empty:
                continue
            keep = self.top_other if timing in _FOLDED else self.top
            shown = part.head(keep)
            rows = shown[columns].reset_index(drop=True)
            rows["other_flags"] = _other_flags(shown, name).to_numpy()
            amount = float(part["amount"].fillna(0.0).sum())
            at_risk = float(part["amount_at_risk"].fillna(0.0).sum())
            rest = amount - float(shown["amount"].fillna(0.0).sum())
            out.append(
                DealListPart(
                    name=name,
                    timing=timing,
                    heading=_TIMING_HEADINGS[timing].format(period=self.period),
                    rows=rows,
                    total=len(part),
                    amount=amount,
                    at_risk=at_risk,
                    caption=list_caption(len(shown), len(part), amount, at_risk, rest, self.currency),
                    folded=timing in _FOLDED,
                )
            )
        return out

    def nothing_open(self) -> str | None:
        """The sentence that replaces the lists when no deal is open at the report date; None when some is."""
        return f"No deal is open at {self.as_of:%Y-%m-%d}, so none is at risk." if self.deals.empty else None

    def empty_sentence(self, name: str) -> str | None:
        """Why list `name` shows no deal (unknown on these data, no deal open, none qualifies); None when it has one."""
        if name in self.unknown:
            return self.unknown[name]
        if len(self.members(name)):
            return None
        day, period = f"{self.as_of:%Y-%m-%d}", self.period
        if self.deals.empty:
            return self.nothing_open()
        return {
            "slipped": f"No deal open at {day} had its close date moved out of {period} or pushed since {period} "
            "began.",
            "overdue": f"No deal open at {day} has a close date before it.",
            "stalled": f"No deal open at {day} has sat in its stage longer than the stage's stall limit.",
            "created": f"No deal created since {period} began is still open at {day}.",
        }[name]

    def summary(self) -> pd.DataFrame:
        """The lists in one table: how many deals each holds, for how much.

        Returns
        -------
        pandas.DataFrame
            One row per list of `DEAL_LISTS`: ``list`` (its title), ``deals``, ``amount``, ``amount_at_risk``,
            ``deals_this_period`` and ``amount_this_period`` (those closing in the period); missing for a list that
            cannot be told on these data (`unknown`).
        """
        rows = []
        for name, spec in DEAL_LISTS.items():
            m = self.members(name)
            now = m.loc[m["timing"].to_numpy() == "this_period"]
            told = name not in self.unknown
            rows.append(
                {
                    "list": spec.title,
                    "deals": len(m) if told else pd.NA,
                    "amount": float(m["amount"].fillna(0.0).sum()) if told else np.nan,
                    "amount_at_risk": float(m["amount_at_risk"].fillna(0.0).sum()) if told else np.nan,
                    "deals_this_period": len(now) if told else pd.NA,
                    "amount_this_period": float(now["amount"].fillna(0.0).sum()) if told else np.nan,
                }
            )
        out = pd.DataFrame(rows)
        for c in ("deals", "deals_this_period"):
            out[c] = out[c].astype("Int64")
        out["list"] = out["list"].astype("str")
        return out


def _other_flags(deals: pd.DataFrame, name: str) -> pd.Series:
    """Per deal, its flags in words except the list's own (``overdue; stalled``), empty when none."""
    own = DEAL_LISTS[name].flag
    return deals["flags"].map(lambda text: "; ".join(w for w in str(text).split("; ") if w and w != own)).astype("str")


def _times(n: int) -> str:
    return _TIMES.get(n, f"{n} times")


def deal_lists(
    data: CRMData,
    period: str,
    as_of: Any = None,
    model: StageConversionModel | None = None,
    adherence: pd.DataFrame | None = None,
    top: int = 10,
    top_other: int = 10,
) -> DealLists:
    """The deals a manager acts on at a report date: slipped or pushed, overdue, stalled, created this period.

    Every list (`DEAL_LISTS`) holds deals open at `as_of` (the pipeline as `pipeline_snapshots` rebuilds it), with
    their owner, amount, stage, whole days in stage, close date and learned win probability, sorted by amount at
    risk (`AMOUNT_AT_RISK`) and split by close date against the period (`TIMINGS`).

    Definitions (the contract the tests check):

    - **slipped**: open at `as_of` and, in the window of the review's waterfall (`waterfall_window`: from the
      period's start through `as_of`), counted by `salesforecast.movement.waterfall_deals` as ``pushed out`` or
      ``pulled out`` of the period, or with its close date pushed (moved later while open, as
      `salesforecast.history` defines a push) by a change in the window. The waterfall's pushed-out deals are
      therefore exactly the rows with ``waterfall_step == "pushed out"``, with the waterfall's amounts.
    - **overdue**: open at `as_of` with a close date whose day is before the day of `as_of`.
    - **stalled**: open at `as_of` and over its stage's stall limit (``stalled_now`` of
      `salesforecast.adherence.deal_adherence`), for deals whose days in stage are known.
    - **created**: open at `as_of`, created in the period at or before `as_of`.
    - **days in stage** are unknown (missing) for a deal without any stage-history change known at `as_of`, and for
      every deal when the history known then records no move from one open stage to another (a history derived
      from dates: creation and closing only).

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities and stage_history).
    period : str
        The reviewed fiscal period (``FY2024Q3``).
    as_of : date, optional
        The report date (default: the data's as-of). Only what was known then is used.
    model : StageConversionModel, optional
        Fitted on the data known at `as_of`; by default one is fitted here on ``known_at(data, as_of)``.
    adherence : pandas.DataFrame, optional
        ``deal_adherence(data, as_of=as_of)`` when the caller has it (computed here otherwise).
    top : int, default 10
        Deals shown of a part of this period's business (closing in the period, or moved out of it since it began);
        the caption gives the count and total of all.
    top_other : int, default 10
        Deals shown of a folded part (overdue from an earlier period, closing later, without a close date).

    Returns
    -------
    DealLists

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> lists = deal_lists(load_sample(), "FY2025Q4")
    >>> overdue = lists.members("overdue")
    >>> bool((overdue["close_date"] < lists.as_of.normalize()).all())
    True
    >>> [p.heading for p in lists.parts("slipped")][:2]
    ['Closing in FY2025Q4', "Moved out of FY2025Q4 (the waterfall's pushed out and pulled out)"]
    """
    if top < 1 or top_other < 1:
        raise ValueError(f"top and top_other must be at least 1, got {top} and {top_other}")
    process = data.process
    as_of = pd.Timestamp(data.as_of if as_of is None else as_of)
    lo, hi = process.calendar.period_bounds(period)
    day = f"{as_of:%Y-%m-%d}"
    snap = pipeline_snapshots(data, as_of).reset_index(drop=True)
    ids = snap["opportunity_id"]
    n = len(snap)
    if adherence is None:
        with warnings.catch_warnings():  # unknown pushes: said by the lists' notes, and missing in adherence
            warnings.simplefilter("ignore", UnrecordedHistoryWarning)
            adherence = deal_adherence(data, as_of=as_of)
    adh = adherence.drop_duplicates("opportunity_id").set_index("opportunity_id").reindex(ids.to_numpy())

    proba = np.full(n, np.nan)
    known_stage = snap["stage"].notna().to_numpy()
    if known_stage.any():
        if model is None:
            model = StageConversionModel(process=process).fit(known_at(data, as_of))
        proba[known_stage] = np.asarray(model.predict_proba(snap.loc[known_stage]), dtype=float)
    amount = snap["amount"].to_numpy(dtype="float64")
    at_risk = np.round(np.where(np.isnan(proba), amount, amount * (1.0 - proba)))  # whole units: an expectation

    # days in stage: known for a deal with a change known at as_of, in a history that records moves between stages
    h = DealHistory.from_data(data)
    code = h.ids.get_indexer(ids)
    as_us = to_us(as_of)
    has_history = np.where(code >= 0, h.first_change[np.maximum(code, 0)], NEVER) <= as_us
    k, prev, here = h.k, h.moves.previous, h.stage
    moved = h.moves.stage_change & (prev >= 0) & (prev < k) & (here >= 0) & (here < k) & (h.start <= as_us)
    moves_recorded = bool(moved.any())
    days_known = has_history & moves_recorded
    days = np.floor(snap["days_in_stage"].to_numpy(dtype="float64"))
    days_in_stage = pd.array(np.where(days_known & np.isfinite(days), days, np.nan), dtype="Int64")

    # close dates at as_of, and the split of every list by them
    close = pd.Series(snap["close_date"].to_numpy("datetime64[us]"))
    timing = np.select(
        [close.isna().to_numpy(), (close < lo).to_numpy(), (close >= hi).to_numpy()],
        ["no_close_date", "earlier", "later"],
        "this_period",
    )
    as_day = as_of.normalize()
    close_day = close.dt.normalize()
    overdue = (close_day < as_day).fillna(False).to_numpy(dtype=bool)
    days_overdue = pd.array(np.where(overdue, (as_day - close_day).dt.days, np.nan), dtype="Int64")

    unknown: dict[str, str] = {}
    notes: list[str] = []
    window = waterfall_window(data, lo, as_of)
    close_at_start = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    step = pd.Series(np.full(n, np.nan, dtype=object), dtype="str")
    pushes = np.zeros(n, dtype=np.int64)
    created = np.zeros(n, dtype=bool)
    if window is None:
        unknown["slipped"] = (
            f"{period} begins on {lo:%Y-%m-%d}, after the report date ({day}): no deal could slip out of it yet."
        )
        unknown["created"] = (
            f"{period} begins on {lo:%Y-%m-%d}, after the report date ({day}): no deal was created in it yet."
        )
    else:
        start = window[0]
        before_start = np.full(n, to_us(start) - 1, dtype=np.int64)
        rows = h.row_at(ids, before_start)
        ok = rows >= 0
        cd = np.where(ok, h.close_known(np.maximum(rows, 0), before_start), np.iinfo(np.int64).min)
        close_at_start = np.where(ok, cd, np.iinfo(np.int64).min).view("datetime64[us]")
        created_at = snap["created_at"].to_numpy("datetime64[us]")
        created = (created_at >= np.datetime64(lo, "us")) & (created_at < np.datetime64(hi, "us"))
        if "close_date" in unrecorded_fields(data):
            unknown["slipped"] = (
                "Which deals slipped cannot be told: the stage history did not record close dates, so whether a "
                "deal's close date moved is unknown."
            )
        else:
            with warnings.catch_warnings():  # undated deals: said by the waterfall above and by the notes here
                warnings.simplefilter("ignore", UndatedPipelineWarning)
                moves = waterfall_deals(data, *window, period=period)
            out = moves.loc[moves["step"].isin(["pushed out", "pulled out"])]
            step = ids.map(pd.Series(out["step"].to_numpy(), index=out["opportunity_id"].to_numpy())).astype("str")
            in_window = (h.start >= to_us(start)) & (h.start <= as_us) & (h.moves.close_date_days > 0)
            counted = np.bincount(h.deal[in_window], minlength=len(h.ids))
            pushes = np.where(code >= 0, counted[np.maximum(code, 0)], 0).astype(np.int64)
    slipped = step.notna().to_numpy() | (pushes > 0)
    slip = np.where(
        step.to_numpy(dtype=object) == "pulled out",
        f"moved before {period}",
        np.where(
            step.to_numpy(dtype=object) == "pushed out",
            np.where(close.isna().to_numpy(), f"close date removed (left {period})", f"pushed out of {period}"),
            [f"pushed {_times(int(p))}" if p else "" for p in pushes],
        ),
    )

    stalled = adh["stalled_now"].fillna(False).to_numpy(dtype=bool) & days_known
    limits = adherence.attrs.get("stall_limit_days", {})
    stall_limit = snap["stage"].map(limits).astype("float64").to_numpy()
    pushed_3plus = (adh["close_date_pushes"].astype("float64") > 2).to_numpy(dtype=bool)
    skipped = (adh["skipped_stages"].astype("float64") > 0).to_numpy(dtype=bool)

    # the notes: what limits the lists on these data
    close_before = unknown_before(data, "close_date")
    if n and close_before is not None and np.datetime64(as_of, "us") < close_before:
        notes.append(
            f"No close date of a deal open at {day} is known: the stage history did not record close dates, and the "
            "report date is before the data's last change. No deal can be told overdue; every one is listed under "
            "'No close date'."
        )
    elif (timing == "no_close_date").any():
        m = int((timing == "no_close_date").sum())
        verb = "has" if m == 1 else "have"
        notes.append(
            f"{m:,} of the {n:,} deals open at {day} {verb} no close date: they cannot be overdue or slip out of "
            f"{period} (unless their close date was removed this period), and each list shows them apart, under "
            "'No close date'."
        )
    if n and not moves_recorded:
        why = (
            "the stage history known at the report date records no move from one open stage to another (a history "
            "derived from the deals' dates records only when each deal was created and closed)"
            if has_history.any()
            else "no deal open at the report date has a stage history (the data hold each deal's current state only)"
        )
        notes.append(f"Days in stage are unknown (–): {why}, so how long a deal has sat in its stage cannot be told.")
        unknown["stalled"] = "Which deals stalled cannot be told: days in stage are unknown (see above)."
    elif (~has_history).any():
        m = int((~has_history).sum())
        verb, their = ("has", "its") if m == 1 else ("have", "their")
        notes.append(
            f"{m:,} of the {n:,} deals open at {day} {verb} no stage history: {their} days in stage are unknown (–), "
            "and stalls are not judged without them."
        )

    flags = {
        "slipped": slipped & ("slipped" not in unknown),
        "overdue": overdue,
        "stalled": stalled,
        "created": created,
    }
    words = [*(DEAL_LISTS[name].flag for name in flags), "pushed 3+ times", "skipped a stage"]
    marks = np.column_stack([*flags.values(), pushed_3plus, skipped]) if n else np.zeros((0, len(words)), dtype=bool)
    text = ["; ".join(w for w, f in zip(words, row, strict=True) if f) for row in marks]
    deals = pd.DataFrame(
        {
            "opportunity_id": ids,
            "owner": snap["owner"],
            **({"team": snap["team"]} if "team" in snap.columns else {}),
            "stage": snap["stage"],
            "amount": amount,
            "win_probability": proba,
            "amount_at_risk": at_risk,
            "days_in_stage": days_in_stage,
            "close_date": close.to_numpy("datetime64[us]"),
            "timing": pd.Series(timing, dtype="str"),
            **flags,
            "close_date_at_start": close_at_start,
            "slip": pd.Series(slip, dtype="str"),
            "waterfall_step": step,
            "pushes_this_period": pushes,
            "days_overdue": days_overdue,
            "stall_limit_days": stall_limit,
            "created_at": snap["created_at"].dt.normalize().to_numpy("datetime64[us]"),  # the day, as close dates
            "pushed_3plus": pushed_3plus,
            "skipped_stage": skipped,
            "flags": pd.Series(text, dtype="str"),
        }
    )
    order = np.lexsort(
        (
            ids.to_numpy(dtype=object).astype(str),
            -np.nan_to_num(amount, nan=-np.inf),
            -np.nan_to_num(at_risk, nan=-np.inf),
        )
    )
    deals = deals.iloc[order].reset_index(drop=True)
    return DealLists(
        deals=deals,
        period=period,
        period_bounds=(pd.Timestamp(lo), pd.Timestamp(hi)),
        as_of=as_of,
        window=window,
        top=int(top),
        top_other=int(top_other),
        currency=process.currency,
        notes=tuple(notes),
        unknown=unknown,
    )


# ------------------------------------------------------------------------------------------- what was done at each step
#: How to give the review activities, in the sentence that stands in for the section when the data have none.
HOW_TO_ADD_ACTIVITIES = (
    "an activities table (columns activity_id, occurred_at, type, and opportunity_id or lead_id; owner, subject, "
    "outcome and duration optional)"
)
#: How to give the process map exit criteria, likewise.
HOW_TO_ADD_CRITERIA = (
    "exit criteria per stage in the process map YAML, for example `exit_criteria: [{activity: meeting}, "
    "{activity: follow_up, after: meeting, within_days: 3}, {field: amount}]`"
)

#: The section's measures in words, for the reader (the rules are `salesforecast.activities`').
STEP_DEFINITIONS = (
    "A stage's **exit criteria** (the process map's) say what a deal should have before it leaves the stage: "
    "activities (a meeting; a follow-up within 3 days of the meeting) or a filled field. A stage visit **met** them "
    "when every criterion held with the deal's activities from the day it entered the stage to the moment it left "
    "(an activity after the report date never counts). **Share met** is over the visits completed by the report "
    "date (the deal left the stage); visits still in progress are not judged yet. **Days since last activity**: "
    "from the deal's last activity, or its creation when it has none, to the report date. **Does it pay**: closed "
    "deals whose visit met a stage's criteria against comparable deals whose visit did not (same stage, same rep, "
    "same segment, amount band and age band where the data allow), the difference in win rate (percentage points) "
    "and in cycle days (creation to close), with 90% bootstrap intervals; the verdict says when the data cannot "
    "tell."
)


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def _md(text: Any) -> str:
    r"""`text` as literal Markdown: HTML-escaped, and Markdown's punctuation backslash-escaped (no link, no emphasis).

    Examples
    --------
    >>> _md("<b>[x](javascript:y)</b> *z*") == r"&lt;b&gt;\[x\]\(javascript:y\)&lt;/b&gt; \*z\*"
    True
    """
    return _MARKDOWN.sub(r"\\\1", html.escape(str(text)))


def _share_table(adherence: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per `by` value: completed visits, their share that met the criteria, and that share per stage (wide)."""
    long = steps.criteria_by_rep(adherence, by=by)
    visits = long.groupby(by, sort=True, dropna=False)[["visits", "visits_met"]].sum()
    out = pd.DataFrame(index=visits.index)
    if "team" in long.columns and by != "team":
        out["team"] = long.groupby(by, sort=True, dropna=False)["team"].first()
    out["visits"] = visits["visits"]
    out["share_met"] = (visits["visits_met"] / visits["visits"]).where(visits["visits"] > 0)
    wide = long.pivot_table(index=by, columns="stage", values="share_met", aggfunc="first", dropna=False, sort=False)
    for stage in adherence.attrs.get("stages") or sorted(long["stage"].unique()):
        if stage in wide.columns:
            out[f"{stage}: share met"] = wide[stage].reindex(out.index).astype("float64")
    return out


def criteria_table(adherence: pd.DataFrame, by: str = "owner") -> pd.DataFrame:
    """Per rep (or team): completed stage visits, the share that met the exit criteria, and that share per stage.

    Parameters
    ----------
    adherence : pandas.DataFrame
        `salesforecast.activities.criteria_adherence`.
    by : str
        ``owner`` (with the rep's team when the data have teams) or ``team``.

    Returns
    -------
    pandas.DataFrame
        Indexed by `by`: ``team`` (per rep, when present), ``visits`` (completed visits whose criteria can be told),
        ``share_met`` (of them, those that met every criterion) and one ``"<stage>: share met"`` column per stage with
        criteria (missing where the rep completed no visit of that stage). `salesforecast.rollup.teams_and_company`
        takes it as its ``by_group``.

    Examples
    --------
    >>> t = pd.DataFrame({"owner": ["Ann", "Ann", "Bo"], "stage": ["S", "T", "S"], "completed": True,
    ...     "met": pd.array([True, False, True], dtype="boolean")})
    >>> criteria_table(t).round(2).values.tolist()
    [[2.0, 0.5, 1.0, 0.0], [1.0, 1.0, 1.0, nan]]
    """
    return _share_table(adherence, by)


@dataclass(frozen=True)
class StepReview:
    """The review's section on what was done at each step, computed once (`step_review`).

    Attributes
    ----------
    note : str or None
        The sentence that stands in for the criteria tables when the data cannot show them (no activities, or a
        process map without exit criteria), saying how to add what is missing; None when they show.
    criteria : pandas.DataFrame or None
        `salesforecast.activities.criteria_adherence` at the report date (None when `note`).
    outcomes : pandas.DataFrame or None
        `salesforecast.activities.criteria_outcomes` of it.
    gaps : pandas.DataFrame or None
        `salesforecast.activities.activity_gaps` (None without activities).
    responses : pandas.DataFrame or None
        `salesforecast.activities.first_response` (None without activities on leads).
    currency : str or None
        The amounts' currency.
    """

    note: str | None
    criteria: pd.DataFrame | None
    outcomes: pd.DataFrame | None
    gaps: pd.DataFrame | None
    responses: pd.DataFrame | None
    currency: str | None = None

    def met(self) -> tuple[int, int]:
        """Completed visits that met their stage's criteria, and completed visits whose criteria can be told."""
        if self.criteria is None:
            return 0, 0
        c = self.criteria
        told = c["completed"].to_numpy(dtype=bool) & c["met"].notna().to_numpy(dtype=bool)
        return int((told & c["met"].fillna(False).to_numpy(dtype=bool)).sum()), int(told.sum())

    def criteria_sentence(self) -> str:
        """The criteria in force and how often they were met, in one or two sentences (Markdown; names escaped)."""
        if self.criteria is None:
            return self.note or ""
        words = self.criteria.attrs.get("criteria", {})
        rules = "; ".join(f"**{_md(stage)}**: {_md(text)}" for stage, text in words.items())
        met, told = self.met()
        if not told:
            return f"Exit criteria ({rules}). No deal had left a stage with criteria by the report date."
        return (
            f"Exit criteria ({rules}). {met:,} of the {told:,} stage visits completed by the report date met them "
            f"({met / told:.0%})."
        )

    def gap_sentence(self) -> str:
        """How many open deals went longer than the limit without an activity, and their amount."""
        g = self.gaps
        if g is None:
            return ""
        limit = g.attrs.get("limit_days", steps.GAP_LIMIT_DAYS)
        if g.empty:
            return "No deal was open at the report date, so none can have gone quiet."
        over = g["over_limit"].to_numpy(dtype=bool)
        if not over.any():
            return f"Every one of the {len(g):,} open deals had an activity in the last {limit:g} days."
        amount = format_amount(float(g.loc[over, "amount_at_risk"].sum()), self.currency, short=True)
        return (
            f"**{int(over.sum()):,} of the {len(g):,} open deals** had no activity for more than {limit:g} days at "
            f"the report date (counted from the deal's creation when it has none): **{amount}** of open pipeline."
        )

    def gap_rows(self) -> pd.DataFrame:
        """The open deals over the limit, the largest amount first, in the columns a reader needs."""
        if self.gaps is None or self.gaps.empty:
            return pd.DataFrame()
        g = self.gaps[self.gaps["over_limit"].to_numpy(dtype=bool)]
        columns = [
            c
            for c in (
                "opportunity_id",
                "owner",
                "team",
                "stage",
                "amount",
                "activities",
                "last_activity_at",
                "days_since_activity",
            )
            if c in g.columns
        ]
        return g.sort_values(["amount", "opportunity_id"], ascending=[False, True], kind="stable")[columns].reset_index(
            drop=True
        )

    def pays_table(self) -> pd.DataFrame:
        """The does-it-pay table for the reader: per stage, the sides, the matched differences and their intervals.

        The intervals are written as text on one line (``"-15.2 to +3.9 pp"``, ``"0 to +16"`` days; ``"–"`` when
        there is none) so the table stays narrow; the verdicts are `pays_verdicts`.
        """
        if self.outcomes is None or self.outcomes.empty:
            return pd.DataFrame()
        o = self.outcomes

        def signed(x: float, digits: int) -> str:
            text = f"{x:+.{digits}f}"
            return text[1:] if float(text) == 0 else text  # "0", never "-0" or "+0"

        def span(low: pd.Series, high: pd.Series, scale: float, digits: int, unit: str) -> pd.Series:
            text = [  # one line: non-breaking spaces
                f"{signed(a * scale, digits)}\u00a0to\u00a0{signed(b * scale, digits)}{unit}"
                if pd.notna(a) and pd.notna(b)
                else "–"
                for a, b in zip(low, high, strict=True)
            ]
            return pd.Series(text, index=o.index, dtype="str")

        out = o[["deals_met", "deals_not_met", "deals_compared", "win_rate_matched", "win_rate_comparable"]].copy()
        out["win_rate_diff"] = o["win_rate_diff"]
        out["win_rate_interval"] = span(o["ci_low"], o["ci_high"], 100.0, 1, "\u00a0pp")
        out["cycle_days_diff"] = o["cycle_days_diff"]
        out["cycle_interval"] = span(o["cycle_ci_low"], o["cycle_ci_high"], 1.0, 0, "")
        return out.reset_index()

    def pays_verdicts(self) -> str:
        """The verdict of each stage, one Markdown bullet per stage (escaped: `_md`)."""
        if self.outcomes is None or self.outcomes.empty:
            return ""
        return "\n".join(f"- **{_md(stage)}**: {_md(verdict)}" for stage, verdict in self.outcomes["verdict"].items())

    def response_sentence(self) -> str | None:
        """The first response to new leads in one sentence (None without lead activities or leads)."""
        if self.responses is None or self.responses.empty:
            return None
        s = steps.first_response_summary(self.responses)
        if not s["responded"]:
            return f"None of the {s['leads']:,} leads had an activity by the report date."
        return (
            f"**First response to new leads**: {s['responded']:,} of the {s['leads']:,} leads created by the report "
            f"date had an activity ({s['share_responded']:.0%}); the median time from the lead's creation to its "
            f"first activity was {s['median_hours']:.1f} hours (90th percentile {s['p90_hours']:.1f}); "
            f"{s['share_within_24h']:.0%} of all leads had one within 24 hours."
        )


def step_review(data: CRMData, as_of: Any, seed: int = 0, limit_days: float = steps.GAP_LIMIT_DAYS) -> StepReview:
    """What was done at each step, as known at `as_of`: exit criteria met, whether that pays, gaps, first response.

    Parameters
    ----------
    data : CRMData
        The review's data (its team or rep only, when the review is restricted).
    as_of : date
        The report date.
    seed : int
        Seed of the bootstrap intervals.
    limit_days : float
        An open deal without an activity for longer than this is at risk (`salesforecast.activities.activity_gaps`).

    Returns
    -------
    StepReview
        Without activities, only `StepReview.note` (the sentence saying how to add them, and the exit criteria
        when the map has none); with activities but no exit criteria, the note, the gaps and the first responses;
        with both, everything.

    Examples
    --------
    >>> from dataclasses import replace
    >>> from salesforecast.datasets import load_sample
    >>> from salesforecast.process import SalesProcess
    >>> data = load_sample()
    >>> spec = data.process.to_dict()
    >>> for stage in spec["stages"]:
    ...     _ = stage.pop("exit_criteria", None)
    >>> bare = replace(data, process=SalesProcess.from_dict(spec), activities=data.activities.iloc[:0])
    >>> r = step_review(bare, data.as_of)
    >>> r.criteria is None, r.note.startswith("The data have no activities and the process map no exit criteria")
    (True, True)
    """
    has_acts, has_criteria = not data.activities.empty, bool(data.process.exit_criteria)
    currency = data.process.currency
    if not has_acts:
        missing = "The data have no activities" + ("" if has_criteria else " and the process map no exit criteria")
        how = HOW_TO_ADD_ACTIVITIES + ("" if has_criteria else f", and {HOW_TO_ADD_CRITERIA}")
        note = (
            f"{missing}, so what was done at each step (exit criteria met, days without activity, first response to "
            f"leads) cannot be shown: add {how}."
        )
        return StepReview(note, None, None, None, None, currency)
    gaps = steps.activity_gaps(data, as_of=as_of, limit_days=limit_days)
    on_leads = data.activities["lead_id"].notna().any() and not data.leads.empty
    responses = steps.first_response(data, as_of=as_of) if on_leads else None
    if not has_criteria:
        note = (
            "The process map has no exit criteria, so whether each stage's work was done before a deal moved on "
            f"cannot be judged: add {HOW_TO_ADD_CRITERIA}."
        )
        return StepReview(note, None, None, gaps, responses, currency)
    criteria = steps.criteria_adherence(data, as_of=as_of)
    outcomes = steps.criteria_outcomes(criteria, ci=0.9, seed=seed)
    release_memory()  # the visits paired with their activities, millions of rows at 1M deals
    return StepReview(None, criteria, outcomes, gaps, responses, currency)
