"""Forecast methods, and the backtest that replays them at past cutoffs against what actually closed.

Every method forecasts the **bookings of a fiscal period**: the closed-won amount of the deals whose close date
falls in the period (what a CRM's "closed won this quarter" report shows once the period is over). A forecast is
made at a *cutoff* inside the period and may use only what was known at the cutoff: the pipeline as it stood
(`salesforecast.snapshots.pipeline_snapshots`), the deals won by then, the submissions made by then, and models
fitted on the data known then (`salesforecast.snapshots.known_at`).

Methods (`METHODS` is their registry: one `ForecastMethod` each, with its label, definition, printed beside the
numbers in the reports, colour, needs and implementation; adding a method is adding one entry):

``submitted_commit``, ``submitted_best_case``
    The latest forecast call of each rep for the period made at or before the cutoff, summed over the reps of a
    team and of the company. Missing when nobody in the group has submitted yet.
``bias_corrected_commit``
    Each rep's latest commit divided by that rep's historical bias (`submission_bias`, learned from the calls and
    bookings of earlier, closed periods only; a rep without a usable bias of their own gets the median rep's).
``crm_weighted``
    Closed won to date + each open deal whose close date (as it stood) falls in the period, times the process
    map's default probability of its stage: the weighted pipeline most CRMs print.
``stage_conversion``
    Closed won to date + each open deal's amount times the probability that it is won before the period ends
    (`StageConversionModel.predict_close_within`: stage, days in stage, time left; per ``segment`` when the data
    have one), calibrated by horizon and stage on earlier periods (the quarter-end push: ``calibrate_periods``; deals
    won over wins expected, times the amount booked over the amount forecast) + the expected
    bookings of deals not yet created (below).
``opportunity_score``
    As ``stage_conversion``, with the probability from `OpportunityScoringModel` (target ``"period"``), learned
    from past snapshots of deal features (at most ``max_rows`` (date, deal) rows per refit, 75,000 by default: a
    sample stratified by date and outcome when there are more).
``run_rate``
    Closed won to date + the closed-won bookings per day of the trailing period (the period's length up to the
    cutoff, e.g. the last 91 days for a quarter of 91 days; deals won by the cutoff with a close date in that
    window) x the days left in the period: the run rate every RevOps team uses as its yardstick. Missing when the
    data do not cover a whole trailing period.
``ets``, ``seasonal_naive``
    Time series of the bookings of past periods only (`BookingsModel`); they ignore the pipeline.
``monte_carlo``
    The distribution of ``stage_conversion``: each open deal won or not by a Bernoulli draw, a shared
    period-level shock on the probabilities, and new-deal bookings drawn from past periods
    (`salesforecast.simulation.simulate_bookings`), widened by how far earlier periods' outcomes fell from it at
    the same time before their end (`IntervalCalibration`; ``interval_calibration(results)`` says how many periods
    each interval rests on). Point forecast: the mean; quantiles P10/P50/P90.
``oracle`` (synthetic data only)
    As ``monte_carlo`` with the TRUE probabilities of the generator (`GroundTruth.win_within`) and no shock: what a
    perfect model of deal progress would forecast. Its error is the part no method can remove.

New deals: the bookings of deals created after the cutoff and won before the period ends are estimated from the
``new_deal_periods`` most recent closed periods: in each, the bookings of deals created in the same remaining window
before its end (same number of days) and won before its end. Their mean is added to the learned methods.

Group values are the opportunity's (current) ``team`` and ``owner``; submissions count for their ``owner`` and the
owner's team as known at the cutoff (the team of their latest deal created by then), or the team the submission
names. Everything a forecast at cutoff ``t`` uses is the same with or without the data after ``t``: `backtest` on
``known_at(data, t)`` gives the same forecasts at ``t`` (tested for every method). Two data shapes bend that rule
slightly, both from what the canonical tables cannot say (see `salesforecast.snapshots`): a field the history
records only from some later change on (before it, past snapshots use the opportunity's current value, which the
learned models then see in training), and a deal whose first recorded change comes after its creation (the
snapshots count it open from creation, in an unknown stage or, within a day, in that first stage; `known_at`
leaves it out until the change). Deals in an unknown stage weigh nothing in the pipeline methods.

Fields the history never recorded (a history derived from date columns, or none: `salesforecast.snapshots`) are
unknown at past cutoffs, never today's values: an open deal then has no close date (today's would be the date it
actually closed, and the forecast would know which deals close in the period). ``crm_weighted`` cannot place such a
deal, nor an open deal without an expected close date, in a period: it leaves it out and says how much
(`ForecastWarning`); ``stage_conversion`` and ``monte_carlo`` never read close dates (stage, time in stage, time left),
and ``opportunity_score`` learns from the features it has (its close-date features are missing), so they forecast
such deals by their time to close.

Leakage: the model behind ``opportunity_score`` checks each feature's single-feature AUC
(`salesforecast.models.lead_scoring.LeakageWarning`). A method whose model relied on a flagged feature in a replayed
period is marked in `backtest`'s ``leakage`` column, `leaderboard` marks it `NOT_TRUSTED`, and `recommend` never
names it.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import numbers
import operator
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from salesforecast._utils import DAY_US, NEVER, LocalTasks, added, read_part, release_memory
from salesforecast.history import DealHistory
from salesforecast.metrics import METRICS, evaluate
from salesforecast.models.bookings import BookingsModel
from salesforecast.models.lead_scoring import LeakageWarning
from salesforecast.models.opportunity_scoring import (
    OpportunityScoringModel,
    OwnerRecords,
    opportunity_features,
    owner_records,
)
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.schema import CRMData
from salesforecast.session import ReportNeeds
from salesforecast.simulation import (
    IntervalWarning,
    bookings_from_parts,
    draw_part,
    part_streams,
    simulate_bookings,
    widen_samples,
)
from salesforecast.snapshots import pipeline_snapshots, to_dates

__all__ = [
    "BacktestCutoff",
    "BacktestPeriod",
    "ForecastMethod",
    "FEW_PERIODS",
    "ForecastWarning",
    "METHODS",
    "NEEDS",
    "PARTITIONED_METHODS",
    "PIPELINE_METHODS",
    "backtest",
    "backtest_parts",
    "data_end",
    "definitions",
    "HORIZONS",
    "PeriodForecast",
    "recommend",
    "featured_methods",
    "forecasts_at",
    "method_label",
    "bootstrap_wape",
    "forecast_period",
    "forecast_period_parts",
    "interval_calibration",
    "interval_held",
    "interval_summary",
    "IntervalCalibration",
    "leaderboard",
    "missing_methods",
    "submission_bias",
    "submission_bias_parts",
    "submissions_note",
]

_DAY = pd.Timedelta(days=1)
_MISSING = "(none)"

#: The leaderboard's mark of a method whose model relied on features flagged as leakage (`leaderboard`).
NOT_TRUSTED = "not trusted (leakage)"


class ForecastWarning(UserWarning):
    """Something limits a forecast's numbers (e.g. pipeline a method could not place in a period)."""


#: Fewest replayed periods a recommendation rests on without a warning. The cutoffs of one period share its outcome
#: (a forecast error at week 3 and at week 4 of a quarter are far from independent), so a leaderboard holds about as
#: many independent results as periods: with ``n`` periods, of two equally good methods one wins all ``n`` by chance
#: with probability ``2 * 0.5**n`` (25% with 3, 12.5% with 4). Four quarters are also one full year (every season once).
FEW_PERIODS = 4

#: The period `forecast_period` forecasts while its `backtest` runs (its warnings then speak of that period, not of
#: replayed ones: a report raises both and its reader must tell them apart).
_FORECASTING: ContextVar[str | None] = ContextVar("_FORECASTING", default=None)


def _scope(replayed: str) -> str:
    """The opening of a warning about the periods of a backtest: replayed ones, or the one `forecast_period` asks."""
    label = _FORECASTING.get()
    return replayed if label is None else f"For {label}, the period forecast now,"


_SEASON = {"month": 12, "quarter": 4, "year": 1}


def data_end(data: CRMData) -> pd.Timestamp:
    """The end of the data: midnight after the day of their last event (a period ending then is complete).

    A last event at midnight (a date without a time, as exports write close dates) belongs to that day: data whose
    last event is dated 2025-12-31 end at 2026-01-01, so a quarter ending on 2025-12-31 counts as closed.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data_end(load_sample())
    Timestamp('2026-01-01 00:00:00')
    """
    return pd.Timestamp(data.as_of).normalize() + _DAY


# --------------------------------------------------------------------------------------------- context
@dataclass
class _Groups:
    """Group labels of every grouping, concatenated into one code space."""

    names: list[str]
    labels: list[np.ndarray]
    offsets: np.ndarray
    index: dict[str, pd.Index] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def codes(self, table: pd.DataFrame) -> np.ndarray:
        """Codes (n_groupings, n_rows) of a table holding the grouping columns (``total`` needs none)."""
        out = np.empty((len(self.names), len(table)), dtype=np.int64)
        for i, name in enumerate(self.names):
            if name == "total":
                out[i] = self.offsets[i]
                continue
            if name not in table.columns:  # e.g. submissions have no segment: they count in no value of it
                out[i] = -1
                continue
            pos = self.index[name].get_indexer(table[name].astype("str").fillna(_MISSING))
            pos = np.where(pos < 0, len(self.labels[i]) - 1, pos)  # unseen: "(none)"
            out[i] = pos + self.offsets[i]
        return out

    def sum(self, codes: np.ndarray, values: Any) -> np.ndarray:
        """Per group code: the sum of `values` (missing counts 0; rows coded -1 are left out)."""
        w = np.tile(np.nan_to_num(np.asarray(values, dtype="float64")), codes.shape[0])
        c = codes.ravel()
        keep = c >= 0
        return np.bincount(c[keep], w[keep], minlength=self.size)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "group": np.repeat(self.names, [len(x) for x in self.labels]),
                "group_value": np.concatenate(self.labels).astype(object),
            }
        ).astype("str")


def _group_values(opps: pd.DataFrame, subs: pd.DataFrame, groups: Sequence[str]) -> dict[str, set[str]]:
    """The values of each grouping (but ``total``) in the opportunities and the submissions."""
    out = {}
    for g in groups:
        if g == "total":
            continue
        if g not in opps.columns:
            raise ValueError(f"groups: opportunities has no column {g!r}; available: {list(opps.columns)}")
        values = set(pd.unique(opps[g].dropna().astype("str")))
        if g in subs.columns:
            values |= set(pd.unique(subs[g].dropna().astype("str")))
        out[g] = values
    return out


def _groups(data: CRMData, groups: Sequence[str]) -> _Groups:
    return _groups_of(groups, _group_values(data.opportunities, data.forecast_submissions, groups))


def _groups_of(groups: Sequence[str], found: Mapping[str, set[str]]) -> _Groups:
    """The code space of `groups`, each grouping's values `found` sorted, then ``(none)``."""
    names, labels = [], []
    index = {}
    for g in groups:
        if g == "total":
            names.append(g)
            labels.append(np.array(["total"], dtype=object))
            continue
        lab = np.array([*sorted(found[g] - {_MISSING}), _MISSING], dtype=object)
        names.append(g)
        labels.append(lab)
        index[g] = pd.Index(lab)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in labels])]).astype(np.int64)
    return _Groups(names, labels, offsets, index)


@dataclass
class _Snap:
    """The open pipeline at one date, as arrays (what `pipeline_snapshots` gives, for the columns used here)."""

    t: pd.Timestamp
    opp: np.ndarray  # row in opportunities
    stage: np.ndarray  # stage code in the process map's order (-1 unknown)
    amount: np.ndarray  # 0 where missing
    days: np.ndarray  # days in stage
    ctx: _Context
    rows: np.ndarray  # rows of the deal history (its stage intervals)

    def __len__(self) -> int:
        return len(self.opp)

    @property
    def close(self) -> np.ndarray:
        """Close date (as it stood; missing where not known then, `DealHistory.close_known`), datetime64[us]."""
        return self.ctx.history.close_known(self.rows, self.t).view("datetime64[us]")

    @property
    def codes(self) -> np.ndarray:
        """(groupings, rows): group codes."""
        return self.ctx.opp_codes[:, self.opp]


def _clean_days(days: np.ndarray) -> np.ndarray:
    """Days in stage as the stage-conversion model reads them (missing or negative: 0)."""
    return np.where(np.isfinite(days), np.maximum(days, 0.0), 0.0)


class _Periods:
    """The calendar of a backtest: its periods from the data's first day to their end, and the groups it scores.

    What the client of a backtest over partitions (`backtest_parts`) knows of the whole: no deal, only sums.
    """

    def __init__(self, cal: Any, period: str, groups: _Groups, first_day: pd.Timestamp, end: pd.Timestamp) -> None:
        self.cal = cal
        self.period = period
        self.groups = groups
        self.first_day = first_day
        self.end = end
        self._periods: tuple[list[tuple[str, pd.Timestamp, pd.Timestamp]], pd.Timestamp] | None = None
        self._bounds: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
        self.interval_notes: list[dict[str, Any]] = []  # the Monte Carlo's interval calibration at each cutoff

    def bounds(self, label: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        if label not in self._bounds:
            self._bounds[label] = self.cal.period_bounds(label)
        return self._bounds[label]

    def past_periods(self, t: pd.Timestamp, n: int) -> list[str]:
        """The `n` most recent periods that ended at or before `t` and started on or after the first day."""
        t = pd.Timestamp(t)
        if self._periods is None or t > self._periods[1]:  # every period from the first day to t, once
            labels = self.cal.periods_between(self.first_day, max(t, self.end), self.period)
            self._periods = ([(label, *self.bounds(label)) for label in labels], max(t, self.end))
        out = [label for label, s, e in self._periods[0] if s >= self.first_day and e <= t]
        return out[-n:] if n else out


class _Whole(NamedTuple):
    """What a context takes from the whole data.

    Its groups, first day and end, and (a partition's) the time before which an open deal's close date is unknown
    (`DealHistory.close_unknown_before`; None: the data's own).
    """

    groups: _Groups
    first_day: pd.Timestamp
    end: pd.Timestamp
    close_unknown_before: int | None = None


class _Context(_Periods):
    """What every cutoff needs, computed once: the deal history, the wins, the group codes, the periods.

    With `whole`, the context of a partition of the data: its deals, under the whole's groups, calendar and rules.
    """

    def __init__(self, data: CRMData, period: str, groups: Sequence[str], whole: _Whole | None = None) -> None:
        opps = data.opportunities
        if whole is None:
            first_day = pd.Timestamp(opps["created_at"].min()).normalize()
            whole = _Whole(_groups(data, groups), first_day, data_end(data))
        super().__init__(data.process.calendar, period, whole.groups, whole.first_day, whole.end)
        self.data = data
        self.static = [g for g in self.groups.names if g != "total"]
        process = data.process
        self.history = h = DealHistory.from_data(data)
        if whole.close_unknown_before is not None:  # a partition: the whole's rule, not its own (its end is earlier)
            self.history = h = replace(h, close_unknown_before=whole.close_unknown_before)
        self.opp_codes = self.groups.codes(opps)  # (groupings, opportunities)
        names = pd.Index(process.stage_names)
        self.crm_probability = np.append(process.probability.reindex(names).fillna(0.0).to_numpy("float64"), 0.0)
        # won states by close date: a period's wins are one slice (`_won_rows`)
        won = h.won_rows()
        self.won_start = h.start[won].view("datetime64[us]")
        end = h.end[won]
        self.won_end = np.where(end == NEVER, np.datetime64("9999-12-31", "us").astype(np.int64), end).view(
            "datetime64[us]"
        )
        self.won_close = h.close[won].view("datetime64[us]")
        self.won_created = h.created[won].view("datetime64[us]")
        self.won_amount = h.amount[won]
        self.won_opp = h.deal_pos[h.deal[won]]
        self.won_codes = self.opp_codes[:, self.won_opp]
        owner_codes, owner_values = pd.factorize(opps["owner"].astype("str"))
        self.owners = pd.Index(sorted(set(owner_values)))
        self.opp_owner = np.append(self.owners.get_indexer(owner_values), -1)[owner_codes]
        self.won_owner = self.opp_owner[self.won_opp]
        final = opps["is_won"].to_numpy(dtype=bool)
        self.final_close = opps["close_date"].to_numpy("datetime64[us]")[final]
        self.final_amount = opps["amount"].to_numpy("float64")[final]
        self.final_codes = self.opp_codes[:, final]
        self._snap_rows: dict[pd.Timestamp, np.ndarray] = {}
        self.factorized: dict[str, tuple[np.ndarray, Any]] = {}  # codes and values of opportunity columns
        self.pair_moments: dict[tuple, tuple[np.ndarray, ...]] = {}  # `_pair_moments`, by pair

    def add_snapshots(self, dates: Iterable[Any]) -> None:
        """Rebuild the open pipeline at `dates` (once: `snap` then reads it at any of them)."""
        idx = to_dates(list(dates))
        rows, date_idx = self.history.snapshot_rows(idx)
        cuts = np.searchsorted(date_idx, np.arange(len(idx) + 1))
        for i, t in enumerate(idx):
            self._snap_rows[pd.Timestamp(t)] = rows[cuts[i] : cuts[i + 1]]

    def snap(self, t: pd.Timestamp) -> _Snap:
        """The pipeline at `t` (a date given to `add_snapshots`; none there: empty)."""
        rows = self._snap_rows.get(pd.Timestamp(t), np.zeros(0, dtype=np.int64))
        h = self.history
        t64 = np.datetime64(pd.Timestamp(t), "us")
        return _Snap(
            t=pd.Timestamp(t),
            opp=h.deal_pos[h.deal[rows]],
            stage=h.stage[rows],
            amount=np.nan_to_num(h.amount[rows]),
            days=_clean_days((t64 - h.entered[rows].view("datetime64[us]")) / np.timedelta64(DAY_US, "us")),
            ctx=self,
            rows=rows,
        )

    def slim(self, keep: Sequence[str]) -> None:
        """Drop what the pipeline methods never read once the pipeline is rebuilt (`add_snapshots`).

        The tables but the opportunities' `keep` columns, and the history's frame of intervals (its arrays stay).

        A partition's context stays on its worker for a whole backtest (`backtest_parts`): slim, it holds about
        40% of the memory (0.14 GB for 125,000 deals instead of 0.33). Only the pipeline methods run on it after.
        """
        self.history = self.history.slim(keep)
        d = self.data
        self.data = replace(
            d,
            opportunities=self.history.opportunities,
            stage_history=d.stage_history.iloc[:0],
            activities=d.activities.iloc[:0],
        )
        release_memory()

    def has_snap(self, t: pd.Timestamp) -> bool:
        """Whether the pipeline was rebuilt at `t` and had an open deal then."""
        rows = self._snap_rows.get(pd.Timestamp(t))
        return rows is not None and len(rows) > 0

    def _won_rows(self, t: pd.Timestamp, start: Any, end: Any) -> np.ndarray:
        """Won states that hold at `t`, with a close date in ``[start, end)`` (positions in the won arrays)."""
        lo, hi = np.searchsorted(self.won_close, [np.datetime64(start, "us"), np.datetime64(end, "us")])
        t64 = np.datetime64(t, "us")
        held = (self.won_start[lo:hi] <= t64) & (self.won_end[lo:hi] > t64)
        return lo + np.flatnonzero(held)

    def won_known(self, t: pd.Timestamp, start: Any, end: Any, created_after: Any = None) -> np.ndarray:
        """Per group: amount of deals whose state at `t` is won, with a close date in ``[start, end)``."""
        idx = self._won_rows(t, start, end)
        if created_after is not None:
            idx = idx[self.won_created[idx] > np.datetime64(created_after, "us")]
        return self.groups.sum(self.won_codes[:, idx], self.won_amount[idx])

    def won_by_owner(self, t: pd.Timestamp, start: Any, end: Any) -> np.ndarray:
        """Per owner of `owners`: amount of deals whose state at `t` is won, with a close date in the range."""
        idx = self._won_rows(t, start, end)
        idx = idx[self.won_owner[idx] >= 0]
        return np.bincount(self.won_owner[idx], self.won_amount[idx], minlength=len(self.owners))

    def actual(self, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
        """Per group: final bookings of ``[start, end)``; NaN when the period is not over at the data end."""
        if end > self.end:
            return np.full(self.groups.size, np.nan)
        m = (self.final_close >= np.datetime64(start, "us")) & (self.final_close < np.datetime64(end, "us"))
        idx = np.flatnonzero(m)
        return self.groups.sum(self.final_codes[:, idx], self.final_amount[idx])

    def new_deals(self, t: pd.Timestamp, end: pd.Timestamp, n_periods: int) -> np.ndarray:
        """(n past periods, groups): bookings of deals created in the last ``end - t`` of each and won in it."""
        remaining = end - t
        rows = []
        for label in self.past_periods(t, n_periods):
            s, e = self.bounds(label)
            rows.append(self.won_known(t, s, e, created_after=e - remaining))
        return np.array(rows).reshape(len(rows), self.groups.size)


# --------------------------------------------------------------------------------------------- submissions
def _latest_submissions(subs: pd.DataFrame, label: str, category: str, t: pd.Timestamp) -> pd.DataFrame:
    """Each submitter's latest call for the period at `t` (per team too, when someone calls for several teams)."""
    s = subs.loc[(subs["period"] == label) & (subs["category"] == category) & (subs["submitted_at"] <= t)]
    if len(s) == 0:
        return s
    key = ["owner", "team"] if "team" in s.columns else ["owner"]
    return s.sort_values("submitted_at", kind="stable").drop_duplicates(key, keep="last")


def _owner_team(opps: pd.DataFrame, t: pd.Timestamp) -> pd.Series:
    """Each owner's team as known at `t`: the team of their latest deal created by then."""
    return _teams_of([_latest_deals(opps, t)])


#: What `_latest_deals` keeps of a deal.
_LATEST_DEAL = ["owner", "created_at", "opportunity_id", "team"]


def _latest_deals(opps: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Each owner's latest deal created by `t`: its owner, creation time, id and team (of the data, or of a part).

    Of deals created at the same time, the greatest ``opportunity_id``, whatever the order of the rows: the latest
    deals of parts of the data, put together, give the whole's again.
    """
    if "team" not in opps.columns:
        return pd.DataFrame(columns=_LATEST_DEAL)
    known = opps.loc[opps["created_at"] <= t, _LATEST_DEAL]
    return known.sort_values(["created_at", "opportunity_id"], kind="stable").drop_duplicates("owner", keep="last")


def _teams_of(latest: list[pd.DataFrame | None]) -> pd.Series:
    """Each owner's team: that of their latest deal among the parts' `_latest_deals`.

    Of deals created at the same time, the greatest ``opportunity_id``, whatever the order of the rows.
    """
    found = [f for f in latest if f is not None and len(f)]
    if not found:
        return pd.Series(dtype="str")
    deals = pd.concat(found, ignore_index=True) if len(found) > 1 else found[0]
    deals = deals.sort_values(["created_at", "opportunity_id"], kind="stable").drop_duplicates("owner", keep="last")
    return pd.Series(deals["team"].to_numpy(), index=deals["owner"].to_numpy())


def _with_team(table: pd.DataFrame, owner_team: pd.Series) -> pd.DataFrame:
    if "team" in table.columns and table["team"].notna().all():
        return table
    out = table.copy()
    team = pd.Series(owner_team.reindex(out["owner"].to_numpy()).to_numpy(), index=out.index, dtype="str")
    out["team"] = out["team"].fillna(team) if "team" in out.columns else team
    return out


_BIAS_COLUMNS = ["owner", "periods", "submissions", "bias", "run_rate", "late_ratio", "late_submitted", "actual"]


def _bias_table(ctx: _Context, as_of: pd.Timestamp, category: str, weeks: float) -> pd.DataFrame:
    """Per owner: the blend model of `submission_bias` fitted on the periods closed by `as_of`."""
    closed = ctx.past_periods(as_of, 0)
    return _bias_fit(ctx.data.forecast_submissions, ctx, closed, _booked(ctx, as_of, closed), as_of, category, weeks)


def _booked(ctx: _Context, as_of: pd.Timestamp, closed: list[str]) -> dict[str, pd.Series]:
    """Per closed period: each owner's won bookings known at `as_of` (of the data, or of a part: they add up)."""
    return {p: pd.Series(ctx.won_by_owner(as_of, *ctx.bounds(p)), index=ctx.owners) for p in closed}


def _bias_fit(
    subs: pd.DataFrame,
    cal: _Periods,
    closed: list[str],
    booked: dict[str, pd.Series],
    as_of: pd.Timestamp,
    category: str,
    weeks: float,
) -> pd.DataFrame:
    """`_bias_table` from each closed period's bookings per owner (`_booked`)."""
    if len(subs) == 0:
        return pd.DataFrame(columns=_BIAS_COLUMNS)
    s = subs.loc[
        subs["period"].isin(closed) & (subs["category"] == category) & (subs["submitted_at"] <= as_of)
    ].reset_index(drop=True)
    if len(s) == 0:
        return pd.DataFrame(columns=_BIAS_COLUMNS)
    bounds = {p: cal.bounds(p) for p in closed}
    names = s["owner"].astype("str")
    actual = np.array([booked[p].get(o, 0.0) for p, o in zip(s["period"], names, strict=True)], dtype="float64")
    start = pd.to_datetime(s["period"].map(lambda p: bounds[p][0])).to_numpy("datetime64[us]")
    end = pd.to_datetime(s["period"].map(lambda p: bounds[p][1])).to_numpy("datetime64[us]")
    t = s["submitted_at"].to_numpy("datetime64[us]")
    lam = np.clip((t - start) / (end - start), 0.0, 1.0)
    y = s["amount"].to_numpy("float64")
    x1, x2 = 1.0 - lam, lam * actual
    owner = s["owner"].astype("str").to_numpy()
    w = np.ones(len(s))
    for _ in range(2):  # least squares, then weighted by 1 / fitted^2 (the noise of a call is proportional to it)
        g = (
            pd.DataFrame(
                {
                    "o": owner,
                    "a11": w * x1 * x1,
                    "a12": w * x1 * x2,
                    "a22": w * x2 * x2,
                    "b1": w * x1 * y,
                    "b2": w * x2 * y,
                }
            )
            .groupby("o", sort=True)
            .sum()
        )
        det = g["a11"] * g["a22"] - g["a12"] ** 2
        ok = det > 1e-12 * (g["a11"] * g["a22"]).clip(lower=1e-300)
        beta = ((g["a11"] * g["b2"] - g["a12"] * g["b1"]) / det.where(ok)).where(ok)
        alpha = ((g["a22"] * g["b1"] - g["a12"] * g["b2"]) / det.where(ok)).where(ok)
        fit = alpha.reindex(owner).to_numpy() * x1 + beta.reindex(owner).to_numpy() * x2
        w = np.where(np.isfinite(fit) & (fit > 0), 1.0 / np.maximum(fit, 1e-9) ** 2, 0.0)
    late = t >= end - np.timedelta64(int(weeks * 7 * DAY_US), "us")
    frame = pd.DataFrame({"owner": owner, "period": s["period"].to_numpy(), "late": late, "y": y, "a": actual})
    per = (
        frame.loc[frame["late"]]
        .groupby(["owner", "period"], sort=True)
        .agg(late_submitted=("y", "mean"), actual=("a", "first"))
        .groupby("owner")
        .sum()
    )
    out = frame.groupby("owner", sort=True).agg(periods=("period", "nunique"), submissions=("y", "size"))
    out["late_submitted"] = per["late_submitted"].reindex(out.index)
    out["actual"] = per["actual"].reindex(out.index)
    out["late_ratio"] = out["late_submitted"] / out["actual"].where(out["actual"] > 0)
    out["run_rate"] = alpha.reindex(out.index)
    bias = beta.reindex(out.index)
    usable = bias.notna() & (bias > 0) & (out["periods"] >= 2)
    out["bias"] = bias.where(usable, out["late_ratio"])
    return out.reset_index()[_BIAS_COLUMNS]


def submission_bias(
    data: CRMData,
    as_of: Any = None,
    period: str = "quarter",
    category: str = "commit",
    weeks: float = 4,
) -> pd.DataFrame:
    """Each rep's forecast bias, learned from their calls in past closed periods.

    A rep's call for a period drifts from a run-rate guess at its start toward what they see closing at its end. The
    model, fitted per rep by weighted least squares over every submission of `category` for the periods closed by
    `as_of`::

        call = run_rate * (1 - lam) + bias * lam * actual

    with ``lam`` the elapsed fraction of the period at the submission and ``actual`` the rep's closed-won bookings of
    the period (as known at `as_of`). ``bias`` is what the rep calls per unit they will book: 1 is on target, above 1
    an optimist, below 1 a sandbagger. Weights are ``1 / fitted^2`` (a call's noise grows with its size).

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        Use only periods ended and submissions made by then (default: the data end).
    period : {"month", "quarter", "year"}
    category : str
        The forecast category of the submissions (``"commit"``, ``"best_case"``...).
    weeks : float
        The late window for ``late_ratio``.

    Returns
    -------
    pandas.DataFrame
        One row per owner: ``owner, periods`` (closed periods with a submission), ``submissions``, ``bias`` (the
        model's; where it cannot be fitted, fewer than 2 periods or a degenerate design, ``late_ratio``),
        ``run_rate`` (the call at the start of a period), ``late_ratio = late_submitted / actual`` (the plain
        ratio of the mean call in the last `weeks` weeks of each period to what was booked, summed over periods),
        ``late_submitted`` and ``actual``.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> table = submission_bias(load_sample())
    >>> list(table.columns)
    ['owner', 'periods', 'submissions', 'bias', 'run_rate', 'late_ratio', 'late_submitted', 'actual']
    """
    ctx = _Context(data, period, ("total",))
    as_of = ctx.end if as_of is None else pd.Timestamp(as_of)
    return _bias_table(ctx, as_of, category, weeks)


# --------------------------------------------------------------------------------------------- plan
#: Default history before the first replayed period (days), shortened on short data (`_history_days`).
_HISTORY_DAYS = 365
#: Periods the shortened default history leaves to replay at most, and the periods of history it keeps at least.
_REPLAY_PERIODS, _MIN_HISTORY_PERIODS = 4, 2


def _history_days(ctx: _Context, min_history_days: float | None) -> float:
    """The history needed before the first default period: `min_history_days`, or the adaptive default (None).

    The default is 365 days when at least `_REPLAY_PERIODS` closed periods start after it. On shorter data it is
    shortened to the start of the earliest of the last `_REPLAY_PERIODS` closed periods that still have about
    `_MIN_HISTORY_PERIODS` periods of data before them (90% of their nominal length: a quarter is 90 to 92 days),
    so 15 months of quarters replay the last three with at least six months of history before them.
    """
    if min_history_days is not None:
        if not isinstance(min_history_days, numbers.Real) or isinstance(min_history_days, bool):
            raise ValueError(f"min_history_days must be a number of days or None, got {min_history_days!r}")
        return float(min_history_days)
    whole = [ctx.bounds(label) for label in ctx.cal.periods_between(ctx.first_day, ctx.end, ctx.period)]
    starts = [s for s, e in whole if s >= ctx.first_day and e <= ctx.end]
    year = ctx.first_day + pd.Timedelta(days=_HISTORY_DAYS)
    least = pd.Timedelta(days=0.9 * _MIN_HISTORY_PERIODS * 365.25 / _SEASON[ctx.period])
    eligible = [s for s in starts if s - ctx.first_day >= least]
    if sum(s >= year for s in starts) >= _REPLAY_PERIODS or not eligible:
        return float(_HISTORY_DAYS)
    first = eligible[max(0, len(eligible) - _REPLAY_PERIODS)]
    return min((first - ctx.first_day) / _DAY, float(_HISTORY_DAYS))


def _closed(ctx: _Context, min_history_days: float) -> list[str]:
    first = ctx.first_day + pd.Timedelta(days=min_history_days)
    labels = []
    for label in ctx.cal.periods_between(first, ctx.end, ctx.period):
        s, e = ctx.cal.period_bounds(label)
        if s >= first and e <= ctx.end:
            labels.append(label)
    return labels


def _plan(ctx: _Context, cutoffs: Any, periods: Sequence[str] | int | None, min_history_days: float) -> pd.DataFrame:
    cal, freq = ctx.cal, ctx.period
    if periods is None:
        labels = _closed(ctx, min_history_days)
    elif isinstance(periods, numbers.Integral) and not isinstance(periods, bool):
        labels = _closed(ctx, min_history_days)[-int(periods) :] if periods > 0 else []
    else:
        labels = [cal.resolve(p, ctx.end, freq) for p in ([periods] if isinstance(periods, str) else periods)]
    rows = []
    if isinstance(cutoffs, str):
        if cutoffs not in ("weekly", "start"):
            raise ValueError(f"cutoffs must be 'weekly', 'start' or a list of dates, got {cutoffs!r}")
        for label in labels:
            s, e = cal.period_bounds(label)
            ts = pd.date_range(s, e - _DAY, freq="7D") if cutoffs == "weekly" else pd.DatetimeIndex([s])
            rows += [(label, s, e, t) for t in ts if t <= ctx.end]
    else:
        dates = pd.DatetimeIndex([pd.Timestamp(x) for x in (cutoffs if isinstance(cutoffs, Iterable) else [cutoffs])])
        for t in dates.sort_values().unique():
            label = str(cal.period(pd.DatetimeIndex([t]), freq).iloc[0])
            if periods is not None and label not in labels:
                continue
            s, e = cal.period_bounds(label)
            rows.append((label, s, e, t))
    plan = pd.DataFrame(rows, columns=["period", "start", "end", "cutoff"])
    if len(plan) == 0:
        span = f"the data run from {ctx.first_day:%Y-%m-%d} to {ctx.end:%Y-%m-%d}"
        if periods is None or isinstance(periods, numbers.Integral):
            problem = (
                f"backtest: no closed {freq} to replay: {span}, and a {freq} is replayed only when it has ended and "
                f"starts at least {min_history_days:g} days after the first deal (min_history_days; by default a "
                f"year, or about {_MIN_HISTORY_PERIODS} {freq}s on short data)"
            )
        else:
            problem = f"backtest: no cutoff to replay in {', '.join(labels) or 'no period'}: {span}"
        raise ReportNeeds(
            problem,
            needs=[f"at least one closed {freq} with about {_MIN_HISTORY_PERIODS} {freq}s of data before it"],
            lacking=[problem],
            fixes=[
                f"Export more history (the report replays {freq}s that ended before the report date), lower "
                "min_history_days, or replay months instead of quarters (frequency: month)."
            ],
        )
    for c in ("start", "end", "cutoff"):
        plan[c] = pd.to_datetime(plan[c]).astype("datetime64[us]")
    return plan


def _check_methods(methods: Sequence[str] | str | None, truth: Any) -> list[ForecastMethod]:
    """The registry entries of the methods asked for (names from `METHODS`)."""
    if methods is None:  # the default ones, and those needing the truth when it is given
        items: list[Any] = [
            name for name, m in METHODS.items() if m.default or ("truth" in m.needs and truth is not None)
        ]
    else:
        items = [methods] if isinstance(methods, str) else list(methods)
    for item in items:
        if isinstance(item, ForecastMethod):  # a method the reports could not name: its definition and colour
            raise TypeError(
                f"methods: register {item.name!r} first (forecast.METHODS[{item.name!r}] = method), then name it: "
                "the reports, the leaderboard's definitions and the charts find a method by its name"
            )
    unknown = [m for m in items if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; known: {list(METHODS)}")
    chosen: dict[str, ForecastMethod] = {}
    for item in items:
        m = METHODS[item]
        chosen.setdefault(m.name, m)
        if "truth" in m.needs and truth is None:
            raise ValueError(f"the {m.name} method needs truth= (the GroundTruth of generate)")
    return list(chosen.values())


def _seed(seed: int, t: pd.Timestamp, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(pd.Timestamp(t).value // 10**9) + 2**40, salt])


# --------------------------------------------------------------------------------------------- the backtest
def _segment_of(ctx: _Context, model: StageConversionModel) -> np.ndarray:
    """Per opportunity: its group in `model` (0: the overall model; segments from 1)."""
    if model.segment is None:
        return np.zeros(len(ctx.data.opportunities), dtype=np.int64)
    if model.segment not in ctx.factorized:
        ctx.factorized[model.segment] = pd.factorize(ctx.data.opportunities[model.segment])
    codes, uniques = ctx.factorized[model.segment]
    return model.segment_groups(uniques)[codes]


def _predict_within(
    model: StageConversionModel, seg: np.ndarray, snaps: Sequence[_Snap], ends: Sequence[Any]
) -> list[np.ndarray]:
    """`predict_close_within` of several snapshots (each with its period end) in one call; missing stage: 0."""
    sizes = [len(x) for x in snaps]
    if sum(sizes) == 0:
        return [np.zeros(0) for _ in snaps]
    start = np.repeat(np.array([np.datetime64(x.t, "us") for x in snaps]), sizes).view(np.int64)
    end = np.repeat(np.array([np.datetime64(pd.Timestamp(x), "us") for x in ends]), sizes).view(np.int64)
    q = model.predict_close_within_codes(
        np.concatenate([x.stage for x in snaps]),
        seg[np.concatenate([x.opp for x in snaps])],
        np.concatenate([x.days for x in snaps]),
        start,
        end,
    )
    return np.split(np.nan_to_num(q, nan=0.0), np.cumsum(sizes)[:-1])


def _shock_sd(ctx: _Context, model: StageConversionModel, seg: np.ndarray, refit_at: pd.Timestamp, n_new: int) -> float:
    """Over-dispersion of past periods' bookings beyond the Bernoulli variance, as a log-sd of a shared shock.

    For each of the last 8 periods closed at `refit_at`: expected ``E`` and Bernoulli variance ``V`` of its bookings
    from its start (pipeline then, the model fitted at `refit_at`, new deals of the periods before it), and the
    actual ``A`` as known at `refit_at`, all for the company total.
    ``shock^2 = max(0, sum((A - E)^2 - V) / sum(X^2))`` with ``X`` the pipeline part.
    """
    periods = _shock_periods(ctx, refit_at, ctx.has_snap)
    if not periods:
        return 0.0
    return _shock_from(_shock_terms(ctx, model, seg, periods, refit_at, n_new))


def _shock_periods(ctx: _Periods, refit_at: pd.Timestamp, has_snap: Callable[[pd.Timestamp], bool]) -> list[tuple]:
    """The last 8 periods closed at `refit_at` with an open pipeline at their start: ``(label, start, end)``.

    None when fewer than 3: too few to estimate the shock from (it is 0 then).
    """
    periods = [(p, *ctx.bounds(p)) for p in ctx.past_periods(refit_at, 8)]
    periods = [(p, s, e) for p, s, e in periods if has_snap(s)]
    return periods if len(periods) >= 3 else []


def _shock_terms(
    ctx: _Context,
    model: StageConversionModel,
    seg: np.ndarray,
    periods: list[tuple],
    refit_at: pd.Timestamp,
    n_new: int,
) -> list[tuple[float, float, np.ndarray, float, float]]:
    """Per period of `_shock_periods`, the company total's sums over deals (additive over parts of the deals).

    ``X`` (expected pipeline bookings), its Bernoulli variance, the new deals of each earlier period, the won at its
    start and its actual as known at `refit_at`.
    """
    lo, hi = ctx.groups.offsets[0], ctx.groups.offsets[1]  # every grouping sums to the total: take the first
    snaps = [ctx.snap(s) for _, s, _ in periods]
    qs = _predict_within(model, seg, snaps, [e for _, _, e in periods])
    terms = []
    for (_, s, e), snap, q in zip(periods, snaps, qs, strict=True):
        a = snap.amount
        terms.append(
            (
                float(np.sum(a * q)),
                float(np.sum(a * a * q * (1 - q))),
                ctx.new_deals(s, e, n_new)[:, lo:hi].sum(axis=1),
                float(ctx.won_known(s, s, e)[lo:hi].sum()),
                float(ctx.won_known(refit_at, s, e)[lo:hi].sum()),
            )
        )
    return terms


def _shock_from(terms: list[tuple[float, float, np.ndarray, float, float]]) -> float:
    """The shock's log-sd from `_shock_terms` (see `_shock_sd`)."""
    num, den = 0.0, 0.0
    for x, var, nd, base, actual in terms:
        expected = x + base + (float(nd.mean()) if len(nd) else 0.0)
        var += float(nd.var()) if len(nd) else 0.0
        num += (actual - expected) ** 2 - var
        den += x * x
    return float(math.sqrt(max(num, 0.0) / den)) if den > 0 else 0.0


def _left(end: pd.Timestamp, t: pd.Timestamp) -> int:
    """Time left in the period at `t`, in whole microseconds (the key of the horizon factors)."""
    return int((pd.Timestamp(end) - pd.Timestamp(t)) // pd.Timedelta(microseconds=1))


def _calibration_pairs(ctx: _Context, refit_at: pd.Timestamp, left: Iterable[int], n_periods: int) -> list[tuple]:
    """(period, start, end, time left in microseconds, cutoff) of the earlier periods replayed at `refit_at`."""
    pairs = []
    for label in ctx.past_periods(refit_at, n_periods):
        ps, pe = ctx.bounds(label)
        for d in sorted(set(left)):
            t = pe - pd.Timedelta(microseconds=d)
            if t >= ps:
                pairs.append((label, ps, pe, d, t))
    return pairs


class _Replay(NamedTuple):
    """The model fitted at a refit date, replayed at the calibration pairs (earlier periods, same time left).

    Per replayed deal (rows of the pairs' snapshots, pair by pair): ``pair`` (index in `pairs`), ``y`` (what the deal
    booked in that period, as known at the refit date), ``q`` (the model's probability of winning before that
    period's end), ``amount``, ``codes`` (group codes, groupings x rows) and
    ``stage`` (its stage code at the replay; `n_stages` open stages, codes outside ``0..n_stages - 1`` unknown).
    """

    pairs: list[tuple]
    pair: np.ndarray
    y: np.ndarray
    q: np.ndarray
    amount: np.ndarray
    codes: np.ndarray
    stage: np.ndarray
    n_stages: int


def _replay(
    ctx: _Context,
    model: StageConversionModel,
    seg: np.ndarray,
    refit_at: pd.Timestamp,
    pairs: list[tuple],
    all_pairs: bool = False,
) -> _Replay:
    """Replay the model fitted at `refit_at` at every calibration pair that had an open pipeline (see `_Replay`).

    `all_pairs`: `pairs` are those the whole data had an open pipeline at (a partition replays them all, even where
    it has no deal, so that every partition's sums share one index).
    """
    used = [(pair, ctx.snap(pair[4])) for pair in pairs if all_pairs or ctx.has_snap(pair[4])]
    if not used:
        empty, none = np.zeros(0), np.zeros(0, dtype=np.int64)
        return _Replay([], none, empty, empty, empty, np.zeros((len(ctx.groups.names), 0)), none, 0)
    sizes = [len(snap) for _, snap in used]
    key = np.repeat(np.arange(len(used)), sizes)
    q = np.concatenate(_predict_within(model, seg, [snap for _, snap in used], [pair[2] for pair, _ in used]))
    start = np.array([np.datetime64(pair[1], "us") for pair, _ in used])[key]
    end = np.array([np.datetime64(pair[2], "us") for pair, _ in used])[key]
    amount = np.concatenate([snap.amount for _, snap in used])
    opp = np.concatenate([snap.opp for _, snap in used])
    # what each deal booked: won at refit_at with a close date in the period replayed
    t64 = np.datetime64(refit_at, "us")
    known = np.flatnonzero((ctx.won_start <= t64) & (ctx.won_end > t64))
    n_opps = len(ctx.data.opportunities)
    booked_close = np.full(n_opps, np.datetime64("NaT"), dtype="datetime64[us]")
    booked_amount = np.zeros(n_opps)
    booked_close[ctx.won_opp[known]] = ctx.won_close[known]
    booked_amount[ctx.won_opp[known]] = np.nan_to_num(ctx.won_amount[known])
    close = booked_close[opp]
    y = np.where((close >= start) & (close < end), booked_amount[opp], 0.0)
    stage = np.concatenate([snap.stage for _, snap in used]).astype(np.int64)
    k = len(model.process_.open_stages)
    return _Replay([pair for pair, _ in used], key, y, q, amount, ctx.opp_codes[:, opp], stage, k)


#: Horizon factors pool the earlier periods' replays at nearby times left: weight ``1 - |difference| / window`` (0: one
#: horizon each). The quarter-end effect changes smoothly with the time left; pooling steadies each factor.
HORIZON_SMOOTH_DAYS = 0.0

#: Pseudo-wins of the horizon's factor behind each stage's factor. The quarter-end push weighs most on the deals
#: about to win (a late stage, late in the period), so each open stage gets its own factor at each time left, shrunk
#: toward the horizon's (all stages pooled) by this many expected wins: a stage whose replays expect few wins keeps
#: about the horizon's factor.
STAGE_FACTOR_PRIOR = 20.0


class _HorizonSums(NamedTuple):
    """Wins expected (``x``) and counted (``y``) per (earlier period, horizon, stage), and the amount ratio.

    The factors count deals, not amounts: whether a replayed deal was won in its period says how the model's timing
    fares, while its amount says nothing about it and, with a few large deals among many small ones, would make a
    factor learned from eight periods as noisy as one period's bookings. The change of amount between the replay
    and the booking (discounts at signature) is a separate ratio: booked amount over the amount at the replay, over
    the won deals (``booked`` and ``quoted`` per earlier period and horizon: a horizon's factors depend on its
    replays only, so the cutoffs of a backtest never change each other's forecasts).

    Pooled over nearby horizons (`HORIZON_SMOOTH_DAYS`); ``horizons`` is the time left (microseconds, sorted),
    ``pair_h`` and ``pair_p`` each pair's horizon and period index; the last stage column gathers deals of an
    unknown stage.
    """

    horizons: np.ndarray
    pair_h: np.ndarray
    pair_p: np.ndarray
    x: np.ndarray
    y: np.ndarray
    n: np.ndarray
    booked: np.ndarray
    quoted: np.ndarray

    def factor(self, prior: float, leave_out: np.ndarray | None = None, at: np.ndarray | None = None) -> np.ndarray:
        """Per horizon, one factor per stage and a last one for all stages: wins over expected wins times the ratio.

        The horizon's factor is ``(wins + prior * unit) / (expected + prior * unit)``, ``unit`` the wins expected of
        one replay (`prior` periods' worth of shrinkage toward 1); each stage's is ``(wins_s + k * f) / (expected_s
        + k)`` with ``k = STAGE_FACTOR_PRIOR`` and ``f`` the horizon's. All are multiplied by the amount ratio. With
        `leave_out` and `at` (arrays of period and horizon indices): the factors at each `at` horizon learned
        without the `leave_out` period. Shape ``(horizons or len(at), stages + 1)``.
        """
        xs, ys = self.x.sum(axis=0), self.y.sum(axis=0)  # (horizons, stages)
        tn = self.n.sum(axis=0)
        booked, quoted = self.booked.sum(axis=0), self.quoted.sum(axis=0)  # (horizons,)
        unit = np.divide(xs.sum(axis=1), tn, out=np.zeros(len(tn)), where=tn > 0)
        if leave_out is not None and at is not None:
            xs, ys, unit = xs[at] - self.x[leave_out, at], ys[at] - self.y[leave_out, at], unit[at]
            booked, quoted = booked[at] - self.booked[leave_out, at], quoted[at] - self.quoted[leave_out, at]
        ratio = np.divide(booked, quoted, out=np.ones_like(quoted), where=quoted > 0)
        num, den = ys.sum(axis=1) + prior * unit, xs.sum(axis=1) + prior * unit
        overall = np.divide(num, den, out=np.ones_like(num), where=den > 0)
        k = STAGE_FACTOR_PRIOR
        per_stage = (ys + k * overall[:, None]) / (xs + k)
        return np.column_stack([per_stage[:, :-1], overall]) * ratio[:, None]


def _horizon_sums(replay: _Replay) -> _HorizonSums:
    """The sums of `_HorizonSums` from a replay."""
    horizons, pair_h = np.unique(np.array([pair[3] for pair in replay.pairs], dtype=np.int64), return_inverse=True)
    periods, pair_p = np.unique(np.array([pair[0] for pair in replay.pairs], dtype=object), return_inverse=True)
    n_pairs, n_h, n_p = len(replay.pairs), len(horizons), len(periods)
    n_s = replay.n_stages + 1
    stage = np.where((replay.stage >= 0) & (replay.stage < replay.n_stages), replay.stage, replay.n_stages)
    won = replay.y > 0
    cell = (pair_p[replay.pair] * n_h + pair_h[replay.pair]) * n_s + stage
    x = np.bincount(cell, replay.q, minlength=n_p * n_h * n_s).reshape(n_p, n_h, n_s)
    y = np.bincount(cell, won.astype("float64"), minlength=n_p * n_h * n_s).reshape(n_p, n_h, n_s)
    n = np.bincount(pair_p * n_h + pair_h, minlength=n_p * n_h).reshape(n_p, n_h).astype("float64")
    ph = (pair_p[replay.pair] * n_h + pair_h[replay.pair])[won]
    booked = np.bincount(ph, replay.y[won], minlength=n_p * n_h).reshape(n_p, n_h).astype("float64")
    quoted = np.bincount(ph, replay.amount[won], minlength=n_p * n_h).reshape(n_p, n_h).astype("float64")
    if n_pairs and HORIZON_SMOOTH_DAYS > 0:
        gap = np.abs(horizons[:, None] - horizons[None, :]) / (HORIZON_SMOOTH_DAYS * DAY_US)
        w = np.maximum(1.0 - gap, 0.0)
        x, y, n = np.einsum("phs,hk->pks", x, w), np.einsum("phs,hk->pks", y, w), n @ w
        booked, quoted = booked @ w, quoted @ w
    return _HorizonSums(horizons, pair_h, pair_p, x, y, n, booked, quoted)


def _horizon_factors(replay: _Replay, prior: float) -> dict[int, np.ndarray]:
    """Per time left: per stage, (deals won) / (wins the model expected of them) in earlier periods, x amount ratio.

    The stage-conversion model knows stages and durations, not the calendar: deals that wait for the end of the
    quarter to sign (the quarter-end push) look stalled to it. Replaying the model (fitted at the refit date) at the
    same time before the end of each earlier closed period (`_replay`), and comparing with what those deals did
    (as known at the refit date), gives factors per horizon and stage (`_HorizonSums.factor`: counted in deals,
    shrunk toward 1 by `prior` periods' worth of wins and toward the horizon's by `STAGE_FACTOR_PRIOR`, times the
    amount booked over the amount at the replay). Each value is an array over the open stages, then one for a deal
    of unknown stage (`_calibrated`).
    """
    if not replay.pairs:
        return {}
    return _factors_of(_horizon_sums(replay), prior)


def _factors_of(sums: _HorizonSums, prior: float) -> dict[int, np.ndarray]:
    """`_horizon_factors` from the sums (of the whole, or added over parts)."""
    factor = sums.factor(prior)
    return {int(d): f for d, f in zip(sums.horizons, factor, strict=True) if np.isfinite(f).all()}


def _calibrated(q: np.ndarray, factors: Mapping[int, np.ndarray], left: int, stage: np.ndarray) -> np.ndarray:
    """Probabilities `q` of deals at `stage` (codes) times the factor of their stage at time `left`, at most 1."""
    f = factors.get(left)
    if f is None:
        return np.minimum(q, 1.0)
    idx = np.where((stage >= 0) & (stage < len(f) - 1), stage, len(f) - 1)
    return np.minimum(q * f[idx], 1.0)


#: The normal quantile of an 80% central interval: a calibrated P10-P90 spans ``mean +- 1.2816 sd``.
_Z80 = 1.2815515655446004
#: Horizons pooled for the interval calibration: earlier periods' replays within this many days of the time left.
INTERVAL_WINDOW_DAYS = 7
#: The wide prior of the interval calibration: with ``n`` earlier periods fewer than `INTERVAL_FEW_PERIODS`, the
#: widening is ``(n * k_past + (INTERVAL_FEW_PERIODS - n) * INTERVAL_PRIOR_WIDENING) / INTERVAL_FEW_PERIODS``
#: (with none, the interval is `INTERVAL_PRIOR_WIDENING` times as wide as simulated), and `backtest` says so
#: (`IntervalWarning`).
INTERVAL_PRIOR_WIDENING = 2.0
INTERVAL_FEW_PERIODS = 4


@dataclass
class IntervalCalibration:
    """Past errors of the Monte Carlo's distribution at one refit, by horizon: how much to widen its P10-P90.

    Built by `_interval_calibration` from the earlier periods replayed at the same time left (`_replay`). For every
    replayed (period, time left) and group value with some uncertainty, the score is the least stretch of the
    simulated P10-P90 about its mean that would have held the outcome (`_needed_widening`: the simulated
    distribution taken as normal, with the expected value and variance of `simulate_bookings` in closed form:
    Bernoulli deals, the shared shock, a drawn past period of new deals, cut at the won to date; the probabilities
    with the horizon factor learned without that period, so the score is out of sample for the factor). A
    calibrated P10-P90 needs a stretch above 1 in 20% of cases.

    `widening` pools the scores of each grouping (``total``, ``team``, ``owner``...) within `INTERVAL_WINDOW_DAYS`
    of a time left; their 80th percentile is the widening the past asks for (a split-conformal quantile; never a
    narrowing: the model replayed on earlier periods was fitted on their outcomes, so their errors understate the
    errors to come, and on the stable generator a narrowing lowers the coverage below 80%), shrunk
    toward the wide prior ``INTERVAL_PRIOR_WIDENING`` when fewer than ``INTERVAL_FEW_PERIODS`` (4) earlier periods
    stand behind it: ``k = (n * k_past + (4 - n) * k_prior) / 4`` for ``n < 4``. The simulated futures
    are then stretched about their mean by ``k`` (`salesforecast.simulation.widen_samples`).

    Attributes
    ----------
    score, grouping, left, period : numpy.ndarray
        One entry per scored (earlier period, time left, group value): the score, the grouping's index, the time
        left (microseconds) and the period's index in `periods`.
    periods : list of str
        The earlier periods replayed.
    names : list of str
        The groupings, in the order of `grouping`.
    """

    score: np.ndarray
    grouping: np.ndarray
    left: np.ndarray
    period: np.ndarray
    periods: list[str]
    names: list[str]

    def widening(self, left: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per grouping at `left` microseconds before the period end: widening ``k``, earlier periods, past coverage.

        The past coverage is the share of pooled scores up to 1 (how often the simulated P10-P90, before widening,
        held the outcome in the earlier periods; NaN without any).
        """
        near = np.abs(self.left - int(left)) <= INTERVAL_WINDOW_DAYS * DAY_US
        n_group = len(self.names)
        k = np.full(n_group, INTERVAL_PRIOR_WIDENING)
        n = np.zeros(n_group, dtype=np.int64)
        covered = np.full(n_group, np.nan)
        for i in range(n_group):  # a loop over groupings
            pick = near & (self.grouping == i)
            if not pick.any():
                continue
            z = self.score[pick]
            n[i] = len(np.unique(self.period[pick]))
            k_past = max(float(np.quantile(z, 0.8)), 1.0)  # a widening only: see the class docstring
            few = max(INTERVAL_FEW_PERIODS - int(n[i]), 0)
            k[i] = (min(int(n[i]), INTERVAL_FEW_PERIODS) * k_past + few * INTERVAL_PRIOR_WIDENING) / max(
                INTERVAL_FEW_PERIODS, 1
            )
            covered[i] = float(np.mean(z <= 1.0))
        # rounded: the model's probabilities differ in their last bits with the other horizons predicted with them,
        # and the intervals of a cutoff must not depend on which other cutoffs are replayed
        return np.round(k, 4), n, covered


def _needed_widening(actual: np.ndarray, expected: np.ndarray, sd: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """The least stretch ``k`` of a P10-P90 about its mean (`widen_samples`) that holds each outcome.

    The simulated distribution is taken as normal with mean `expected` and standard deviation `sd`, cut at `floor`
    (the won to date): P10 ``max(floor, E - 1.2816 sd)``, P90 ``E + 1.2816 sd``. Stretched by ``k`` (never below
    the floor), it holds an outcome ``A >= E`` when ``k >= (A - E) / (1.2816 sd)``, and ``A < E`` when
    ``k >= (E - max(A, floor)) / (E - P10)``: an outcome at the floor (nothing more won) needs ``k >= 1`` at least,
    so lumpy distributions (a rep with a few big deals) are not narrowed past their floor.
    """
    up = (actual - expected) / (_Z80 * sd)
    lower = np.minimum(expected - floor, _Z80 * sd)
    with np.errstate(invalid="ignore", divide="ignore"):
        down = np.where(lower > 0, (expected - np.maximum(actual, floor)) / lower, (expected - actual) / (_Z80 * sd))
    return np.where(actual >= expected, up, down)


def _pair_moments(
    ctx: _Context, t: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp, n_new: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per group at a replayed cutoff `t` of ``[start, end)``: won to date, new deals, their mean and variance.

    The new deals are those of the earlier periods (``(n periods, groups)``).
    None of it depends on the refit date, and later refits replay the same earlier cutoffs: kept on the context.
    """
    key = (pd.Timestamp(t), pd.Timestamp(end), int(n_new))
    if key not in ctx.pair_moments:
        nd = ctx.new_deals(t, end, n_new)
        ctx.pair_moments[key] = (ctx.won_known(t, start, end), nd, *_new_deal_moments(nd, ctx.groups.size))
    return ctx.pair_moments[key]


def _new_deal_moments(new_deals: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the mean and the variance over the past periods of their new deals' bookings (0 without any)."""
    nd = np.asarray(new_deals, dtype="float64").reshape(-1, size)
    if not len(nd):
        return np.zeros(size), np.zeros(size)
    return nd.mean(axis=0), nd.var(axis=0)


def _interval_calibration(
    ctx: _Context, replay: _Replay, prior: float, refit_at: pd.Timestamp, shock_sd: float, n_new: int
) -> IntervalCalibration:
    """The scores of `IntervalCalibration` from the replayed earlier periods (their outcomes as known at `refit_at`)."""
    G = ctx.groups
    if not replay.pairs:
        empty = np.zeros(0)
        return IntervalCalibration(
            empty, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), [], list(G.names)
        )
    sums = _horizon_sums(replay)
    # each pair's probabilities with the factor of its horizon learned without its own period (leave one out)
    factor = sums.factor(prior, leave_out=sums.pair_p, at=sums.pair_h)  # (pairs, stages + 1)
    terms = _calibration_terms(ctx, replay, factor, refit_at, n_new)
    return _calibration_scores(G, replay.pairs, shock_sd, *terms[:4], [m[1:] for m in terms[4]])


def _calibration_terms(
    ctx: _Context, replay: _Replay, factor: np.ndarray, refit_at: pd.Timestamp, n_new: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per replayed pair and group, the sums over deals behind the interval calibration (additive over parts).

    ``x`` (expected pipeline bookings with the leave-one-out `factor`), its Bernoulli variance, the actual as known
    at `refit_at` and the won at the pair's cutoff (the floor); per pair, the new deals of the earlier periods
    (``(n periods, groups)``), with their mean and variance.
    """
    G = ctx.groups
    stage = np.where((replay.stage >= 0) & (replay.stage < replay.n_stages), replay.stage, replay.n_stages)
    q = np.minimum(replay.q * np.where(np.isfinite(factor), factor, 1.0)[replay.pair, stage], 1.0)
    a = replay.amount
    n_pairs, n_groupings = len(replay.pairs), replay.codes.shape[0]
    cell = (replay.pair[None, :] * G.size + replay.codes).ravel()
    size = n_pairs * G.size
    x = np.bincount(cell, np.tile(a * q, n_groupings), minlength=size).reshape(n_pairs, G.size)
    var = np.bincount(cell, np.tile(a * a * q * (1.0 - q), n_groupings), minlength=size).reshape(n_pairs, G.size)
    floor = np.zeros((n_pairs, G.size))
    actual = np.zeros((n_pairs, G.size))
    outcome: dict[str, np.ndarray] = {}
    moments = []
    for j, (label, ps, pe, _d, t) in enumerate(replay.pairs):  # a loop over replayed (period, time left)
        if label not in outcome:
            outcome[label] = ctx.won_known(refit_at, ps, pe)
        actual[j] = outcome[label]
        floor[j], nd, nd_mean, nd_var = _pair_moments(ctx, t, ps, pe, n_new)
        moments.append((nd, nd_mean, nd_var))
    return x, var, actual, floor, moments


def _calibration_scores(
    G: _Groups,
    pairs: list[tuple],
    shock_sd: float,
    x: np.ndarray,
    var: np.ndarray,
    actual: np.ndarray,
    floor: np.ndarray,
    moments: list[tuple[np.ndarray, np.ndarray]],
) -> IntervalCalibration:
    """`IntervalCalibration` from the sums of `_calibration_terms` and the new deals' mean and variance per pair.

    The sums are the whole's, or added over parts.
    """
    names = list(G.names)
    periods = list(dict.fromkeys(pair[0] for pair in pairs))
    var = var + x * x * math.expm1(shock_sd**2)  # the shared shock: Var(X u) = X^2 (exp(sd^2) - 1) for E[u] = 1
    expected = x.copy()
    for j, (nd_mean, nd_var) in enumerate(moments):
        expected[j] += nd_mean
        var[j] += nd_var
    expected += floor
    sd = np.sqrt(np.maximum(var, 0.0))
    ok = sd > 1e-9 * np.maximum(np.abs(expected), 1.0)
    j_idx, g_idx = np.nonzero(ok)
    score = _needed_widening(actual[ok], expected[ok], sd[ok], floor[ok])
    grouping = np.searchsorted(G.offsets, g_idx, side="right") - 1
    left = np.array([pair[3] for pair in pairs], dtype=np.int64)[j_idx]
    period = np.array([periods.index(pair[0]) for pair in pairs], dtype=np.int64)[j_idx]
    return IntervalCalibration(score, grouping.astype(np.int64), left, period, periods, names)


def _ets(ctx: _Context, s: pd.Timestamp, method: str, quantiles: Sequence[float]) -> np.ndarray:
    """(groups, 4): forecast and quantiles of the period from past periods' bookings known at its start `s`.

    ``seasonal_naive`` runs per group value, and is missing (NaN) with fewer past periods than a season. ``ets`` is
    fitted on the company total and split top-down: each group value gets the total times its share of the
    bookings of the last four periods (fitting an ETS per rep on a dozen noisy quarters is slow and no better).
    """
    return _ets_of(ctx, _bookings_series(ctx, s), method, quantiles)


def _bookings_series(ctx: _Context, s: pd.Timestamp) -> np.ndarray:
    """(closed periods, groups): each period's bookings as known at `s` (sums over deals: additive over parts)."""
    past = ctx.past_periods(s, 0)
    return np.array([ctx.won_known(s, *ctx.bounds(p)) for p in past]).reshape(len(past), ctx.groups.size)


def _ets_of(ctx: _Periods, series: np.ndarray, method: str, quantiles: Sequence[float]) -> np.ndarray:
    """`_ets` from the bookings series (`_bookings_series`, of the whole or added over parts)."""
    out = np.full((ctx.groups.size, 1 + len(quantiles)), np.nan)
    if len(series) == 0:
        return out
    model = BookingsModel(method=method, season_length=_SEASON[ctx.period], quantiles=quantiles)
    if method == "seasonal_naive" and len(series) < _SEASON[ctx.period]:
        return out  # no period one year earlier: missing, not the last period mislabelled
    out[:, 0] = 0.0
    if method == "seasonal_naive":
        for g in np.flatnonzero(series.sum(axis=0) > 0):  # a loop over group values with bookings
            pred = model.fit(series[:, g]).predict(1).iloc[0]
            out[g] = pred.iloc[1:].to_numpy("float64")
        return out
    lo, hi = ctx.groups.offsets[0], ctx.groups.offsets[1]
    total = series[:, lo:hi].sum(axis=1)  # every grouping sums to the company total
    if total.sum() <= 0:
        return out
    pred = model.fit(total).predict(1).iloc[0].iloc[1:].to_numpy("float64")
    recent = series[-4:].sum(axis=0)
    for name, lo, hi in zip(ctx.groups.names, ctx.groups.offsets[:-1], ctx.groups.offsets[1:], strict=True):
        share = recent[lo:hi] / recent[lo:hi].sum() if recent[lo:hi].sum() > 0 else np.zeros(hi - lo)
        out[lo:hi] = share[:, None] * pred[None, :]
        if name == "total":
            out[lo:hi] = pred[None, :]
    return out


# --------------------------------------------------------------------------------------------- the method registry
_QUANTILES = (0.1, 0.5, 0.9)

#: What a forecast method may declare it needs. The backtest prepares each input once per period (and refit) when a
#: chosen method needs it, and hands it to the method in its `BacktestCutoff`.
NEEDS: dict[str, str] = {
    "pipeline": "the open pipeline at the cutoff (`BacktestCutoff.snap`)",
    "stage_conversion model": "the stage-conversion model fitted at the refit date and calibrated by horizon and "
    "stage: the probability of each open deal being won before the period ends (`BacktestCutoff.stage_probability`)",
    "period shock": "the over-dispersion of past periods' bookings, a log-sd (`BacktestPeriod.shock_sd`)",
    "new deals": "the bookings of deals created after the cutoff and won in the period, in the last closed periods "
    "(`BacktestCutoff.new_deals`)",
    "opportunity score": "OpportunityScoringModel fitted at the refit date, scoring the pipeline at each cutoff "
    "(`BacktestPeriod.opportunity_scores`)",
    "submissions": "the reps' forecast calls made by the cutoff",
    "submission bias": "each rep's commit bias, learned from the periods closed at the refit date "
    "(`BacktestPeriod.bias`)",
    "bookings history": "the closed-won bookings of earlier periods",
    "simulation": "simulated futures (`BacktestCutoff.simulate`), drawn in threads",
    "truth": "the generator's GroundTruth (synthetic data only: backtest's truth=)",
}


@dataclass
class BacktestPeriod:
    """One period of a backtest at one refit date, with the inputs its methods share (each prepared once).

    Attributes
    ----------
    label : str
    start, end : pandas.Timestamp
        The period is ``[start, end)``.
    refit_at : pandas.Timestamp
        The date the models are fitted at (the period start, or the cutoff with ``refit="cutoff"``).
    ctx : _Context
        The backtest's data context (`won_known`, `snap`, `new_deals`, `past_periods`, `bounds`, `groups`...).
    shock_sd : float
        ``"period shock"``: the log-sd of the shared period shock of the Monte Carlo.
    opportunity_scores : pandas.Series or None
        ``"opportunity score"``: probability of each open deal by ``(as_of, opportunity_id)``; None when the model
        could not be fitted.
    bias : pandas.Series or None
        ``"submission bias"``: each owner's commit bias; `bias_fallback` for an owner without a usable one.
    prepared : dict
        What each method's own `ForecastMethod.prepare` returned for the period, by method name.
    leakage : dict
        Per method whose model's leakage guard flagged features at this refit: feature -> single-feature AUC
        (the ``leakage`` column of `backtest`; `leaderboard` marks the method `NOT_TRUSTED`).
    intervals : IntervalCalibration or None
        ``"period shock"``: the Monte Carlo's interval calibration by horizon from earlier periods (None when
        ``calibrate_periods=0``).
    """

    label: str
    start: pd.Timestamp
    end: pd.Timestamp
    refit_at: pd.Timestamp
    ctx: _Context
    shock_sd: float = 0.0
    opportunity_scores: pd.Series | None = None
    bias: pd.Series | None = None
    bias_fallback: float = 1.0
    prepared: dict[str, Any] = field(default_factory=dict)
    leakage: dict[str, dict[str, float]] = field(default_factory=dict)
    intervals: IntervalCalibration | None = None


@dataclass(frozen=True)
class _Settings:
    """The backtest's settings and shared tables that the methods read."""

    data: CRMData
    truth: Any
    n_sims: int
    seed: int
    opps_by_created: pd.DataFrame


class _Draws(NamedTuple):
    """A simulation a method asked for (`BacktestCutoff.simulate`), drawn after the cutoffs, in threads."""

    args: tuple
    keep: bool


@dataclass
class BacktestCutoff:
    """What a forecast method sees at one cutoff: only what was known then.

    Attributes
    ----------
    period : BacktestPeriod
        The period forecast, with its shared inputs.
    t : pandas.Timestamp
        The cutoff.
    snap : _Snap
        The open pipeline at `t` (``opp, stage, amount, days, close, codes``).
    won : numpy.ndarray
        Per group (see `_Groups`): closed won known at `t` with a close date in the period.
    new_deals : numpy.ndarray
        ``"new deals"``: (past periods, groups) bookings of deals created in the same remaining window of each of the
        last closed periods and won in it (empty when no chosen method needs it).
    stage_probability : numpy.ndarray or None
        ``"stage_conversion model"``: per open deal of `snap`, the calibrated probability of being won before the
        period ends; None when the model could not be fitted.
    settings : _Settings

    Examples
    --------
    The backtest builds one per cutoff and hands it to each chosen method's ``forecast``:

    >>> import dataclasses
    >>> [f.name for f in dataclasses.fields(BacktestCutoff)]
    ['period', 't', 'snap', 'won', 'new_deals', 'stage_probability', 'settings']
    >>> callable(METHODS["crm_weighted"].forecast), NEEDS["pipeline"]
    (True, 'the open pipeline at the cutoff (`BacktestCutoff.snap`)')
    >>> from salesforecast.datasets import load_sample
    >>> res = backtest(load_sample(), methods=["crm_weighted", "run_rate"], periods=["FY2025Q2"], cutoffs="start",
    ...                groups=["total"])
    >>> res[["cutoff", "method", "forecast", "actual"]].astype({"cutoff": str}).to_numpy().tolist()
    [['2025-04-01', 'crm_weighted', 2293287.0, 2113190.0], ['2025-04-01', 'run_rate', 2543990.0, 2113190.0]]
    """

    period: BacktestPeriod
    t: pd.Timestamp
    snap: _Snap
    won: np.ndarray
    new_deals: np.ndarray
    stage_probability: np.ndarray | None
    settings: _Settings

    @property
    def ctx(self) -> _Context:
        """The backtest's data context (the period's)."""
        return self.period.ctx

    @property
    def start(self) -> pd.Timestamp:
        """The period's first instant."""
        return self.period.start

    @property
    def end(self) -> pd.Timestamp:
        """The period's end (exclusive)."""
        return self.period.end

    @cached_property
    def new_deals_mean(self) -> np.ndarray:
        """Per group: the mean of `new_deals` over the past periods (0 without any)."""
        return _new_deal_moments(self.new_deals, self.ctx.groups.size)[0]

    def simulate(self, p: np.ndarray, shock_sd: float, salt: int, keep_samples: bool = False) -> _Draws:
        """Simulated bookings (`simulate_bookings`) of the period: the method's forecast is their mean and quantiles.

        Each open deal of `snap` is won with probability `p` under a shared shock of log-sd `shock_sd`, plus
        `won` and a draw of `new_deals`. `salt` gives the method its own random stream at each cutoff;
        `keep_samples`: these are the samples ``backtest(return_samples=True)`` returns.
        """
        s = self.settings
        args = (
            self.snap.amount,
            p,
            self.snap.codes,
            self.ctx.groups.size,
            self.won,
            self.new_deals,
            shock_sd,
            s.n_sims,
            _seed(s.seed, self.t, salt),
        )
        return _Draws(args, keep_samples)


@dataclass(frozen=True)
class ForecastMethod:
    """One forecast method: what `backtest`, `leaderboard`, the reports and the charts know of it.

    Attributes
    ----------
    name : str
        The name in `backtest`'s ``method`` column.
    label : str
        The name a reader sees.
    definition : str
        One sentence, printed beside the numbers.
    colour : str
        Its colour in every chart (`salesforecast.plotting.METHOD_COLOURS`), distinct from the others'.
    forecast : callable
        ``forecast(cutoff: BacktestCutoff)``: per group, the point forecast (shape ``(groups,)``), or the point
        forecast and P10/P50/P90 (``(groups, 4)``), or the `BacktestCutoff.simulate` draws, or None (missing at this
        cutoff).
    needs : frozenset of str
        Inputs from `NEEDS` (the backtest prepares the shared ones only when a chosen method needs them).
    default : bool
        In `backtest`'s default methods.
    quantiles : bool
        Gives P10/P50/P90.
    prepare : callable, optional
        ``prepare(period: BacktestPeriod)``: the method's own work once per period and refit, read at each cutoff
        from ``cutoff.period.prepared[name]``.
    linestyle : str
        Its line in the charts (matplotlib style): ``"-"`` for a contender, ``"--"`` for a yardstick (the run
        rate), ``":"`` for a reference that knows the outcome (the oracle).

    Examples
    --------
    >>> m = METHODS["run_rate"]
    >>> m.label, sorted(m.needs), m.default, m.quantiles, m.linestyle
    ('run rate', ['bookings history'], True, False, '--')
    >>> [name for name, method in METHODS.items() if method.quantiles]
    ['ets', 'seasonal_naive', 'monte_carlo', 'oracle']
    >>> ForecastMethod("mine", "mine", "won to date", "#000000", lambda cut: cut.won, frozenset({"pipline"}))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: method 'mine': unknown need 'pipline'; known: ['pipeline', 'stage_conversion model', ...]
    """

    name: str
    label: str
    definition: str
    colour: str
    forecast: Callable[[BacktestCutoff], Any]
    needs: frozenset[str] = frozenset()
    default: bool = True
    quantiles: bool = False
    prepare: Callable[[BacktestPeriod], Any] | None = None
    linestyle: str = "-"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.needs) - set(NEEDS))
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown need {unknown[0]!r}; known: {list(NEEDS)}")


#: The forecast category of each method summing the reps' latest calls.
_CALL_CATEGORY: dict[str, str] = {"submitted_commit": "commit", "submitted_best_case": "best_case"}


def _latest_calls(cut: BacktestCutoff, category: str) -> pd.DataFrame:
    """Each rep's latest call of `category` for the period at the cutoff, with the team known then."""
    return _calls_at(
        cut.settings.data.forecast_submissions,
        cut.period.label,
        category,
        cut.t,
        lambda: _owner_team(cut.settings.opps_by_created, cut.t),
    )


def _calls_at(
    subs: pd.DataFrame, label: str, category: str, t: pd.Timestamp, owner_team: Callable[[], pd.Series]
) -> pd.DataFrame:
    """`_latest_calls` from the submissions.

    `owner_team` gives each owner's team at `t`; it is asked for only when a call has none.
    """
    latest = _latest_submissions(subs, label, category, t)
    if len(latest) and ("team" not in latest.columns or latest["team"].isna().any()):  # team from the deals
        latest = _with_team(latest, owner_team())
    return latest


def _sum_calls(G: _Groups, calls: pd.DataFrame, values: np.ndarray) -> np.ndarray | None:
    """Per group: the sum of the calls' `values` (missing where nobody in the group has called)."""
    if len(calls) == 0:
        return None
    codes = G.codes(calls)
    counted = G.sum(codes, np.isfinite(values))
    return np.where(counted > 0, G.sum(codes, values), np.nan)


def _corrected(calls: pd.DataFrame, bias: pd.Series, fallback: float) -> np.ndarray:
    """Each commit call divided by its rep's bias (`fallback` for a rep without a usable one)."""
    b = bias.reindex(calls["owner"].astype("str").to_numpy()).to_numpy("float64")
    return calls["amount"].to_numpy("float64") / np.where(np.isfinite(b) & (b > 0), b, fallback)


def _submitted(category: str) -> Callable[[BacktestCutoff], np.ndarray | None]:
    def forecast(cut: BacktestCutoff) -> np.ndarray | None:
        calls = _latest_calls(cut, category)
        return _sum_calls(cut.ctx.groups, calls, calls["amount"].to_numpy("float64"))

    return forecast


def _bias_corrected_commit(cut: BacktestCutoff) -> np.ndarray | None:
    calls = _latest_calls(cut, "commit")
    return _sum_calls(cut.ctx.groups, calls, _corrected(calls, cut.period.bias, cut.period.bias_fallback))


def _crm_weighted(cut: BacktestCutoff) -> np.ndarray:
    return cut.won + _crm_sum(cut.ctx, cut.snap, cut.start, cut.end)


def _crm_sum(ctx: _Context, snap: _Snap, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """Per group: the open deals' amount x the CRM probability of their stage, for those closing in the period."""
    p = ctx.crm_probability[snap.stage]  # unknown stage (-1): the appended 0
    cd = snap.close
    inside = (cd >= np.datetime64(start, "us")) & (cd < np.datetime64(end, "us"))
    return ctx.groups.sum(snap.codes, snap.amount * p * inside)


def _left_out(snap: _Snap) -> tuple[float, float, int]:
    """The open pipeline's amount, and the amount and deals without a close date then (left out by crm_weighted)."""
    undated = np.isnat(snap.close)
    return float(snap.amount.sum()), float(snap.amount[undated].sum()), int(undated.sum())


def _run_rate(cut: BacktestCutoff) -> np.ndarray | None:
    """Closed won to date + the trailing period's bookings per day (as known at the cutoff) x the days left."""
    length = cut.end - cut.start  # the trailing period: as long as the one forecast, up to the cutoff
    since = cut.t - length
    if since < cut.ctx.first_day:
        return None  # the data do not cover a whole trailing period yet
    per_day = cut.ctx.won_known(cut.t, since, cut.t) / (length / _DAY)
    return cut.won + per_day * ((cut.end - cut.t) / _DAY)


def _stage_conversion(cut: BacktestCutoff) -> np.ndarray | None:
    if cut.stage_probability is None:
        return None
    G = cut.ctx.groups
    return _expected(G, cut.won, G.sum(cut.snap.codes, cut.snap.amount * cut.stage_probability), cut.new_deals)


def _opportunity_score(cut: BacktestCutoff) -> np.ndarray | None:
    scores = cut.period.opportunity_scores
    if scores is None:
        return None
    pipeline = _score_sum(cut.ctx, cut.snap, cut.settings.data.opportunities["opportunity_id"], scores)
    return _expected(cut.ctx.groups, cut.won, pipeline, cut.new_deals)


def _bookings_model(method: str) -> Callable[[BacktestPeriod], np.ndarray]:
    def prepare(period: BacktestPeriod) -> np.ndarray:
        return _ets(period.ctx, period.start, method, _QUANTILES)

    return prepare


def _prepared(cut: BacktestCutoff, name: str) -> np.ndarray:
    return cut.period.prepared[name]


def _monte_carlo(cut: BacktestCutoff) -> _Draws | None:
    """The simulated futures of the stage-conversion probabilities, stretched by the interval calibration."""
    if cut.stage_probability is None:
        return None
    draws = cut.simulate(cut.stage_probability, cut.period.shock_sd, salt=1, keep_samples=True)
    calibration = cut.period.intervals
    if calibration is None:
        return draws
    return draws._replace(args=(*draws.args, _widening(cut.ctx, cut.period.label, cut.t, cut.end, calibration)))


def _widening(
    ctx: _Periods, label: str, t: pd.Timestamp, end: pd.Timestamp, calibration: IntervalCalibration
) -> np.ndarray:
    """Per group code: the Monte Carlo's widening at cutoff `t` (noted on `ctx` for `interval_calibration`)."""
    k, n, covered = calibration.widening(_left(end, t))
    G = ctx.groups
    for i, name in enumerate(G.names):
        ctx.interval_notes.append(
            {
                "period": label,
                "cutoff": t,
                "days_before_period_end": (end - t) / _DAY,
                "group": name,
                "calibration_periods": int(n[i]),
                "widening": float(k[i]),
                "past_coverage": float(covered[i]),
            }
        )
    return np.repeat(k, np.diff(G.offsets))


_NOTE_COLUMNS = [
    "period",
    "cutoff",
    "days_before_period_end",
    "group",
    "calibration_periods",
    "widening",
    "past_coverage",
]


def _interval_notes(out: Any, ctx: _Context) -> Any:
    """The backtest output with ``attrs["interval_calibration"]`` set, warning when the intervals rest on little.

    ``attrs["interval_calibration"]`` holds the table of `interval_calibration` as a JSON text (pandas compares and
    deep-copies ``attrs`` with every operation on the table: one string keeps that cheap and safe).
    """
    table = out[0] if isinstance(out, tuple) else out
    notes = pd.DataFrame(ctx.interval_notes, columns=_NOTE_COLUMNS)
    columns = {c: notes[c].tolist() for c in _NOTE_COLUMNS}
    columns["cutoff"] = [pd.Timestamp(t).isoformat() for t in columns["cutoff"]]
    table.attrs["interval_calibration"] = json.dumps(columns)
    if len(notes):
        fewest = notes.groupby("period")["calibration_periods"].min()
        few = fewest[fewest < INTERVAL_FEW_PERIODS]
        if len(few):
            label = _FORECASTING.get()
            if label is None:
                what = (
                    f"In the replayed periods, the Monte Carlo 80% interval of {len(few)} of the {len(fewest)} periods "
                    f"rests on fewer than {INTERVAL_FEW_PERIODS} earlier periods (as few as {int(few.min())})"
                )
            else:
                what = (
                    f"For {label}, the period forecast now, the Monte Carlo 80% interval rests on fewer than "
                    f"{INTERVAL_FEW_PERIODS} earlier periods ({int(few.min())})"
                )
            warnings.warn(
                f"{what} at the same time before the period end, so it leans on a wide default: it is wider than "
                "the simulation alone, and its coverage is less certain than on a longer history.",
                IntervalWarning,
                stacklevel=3,
            )
    held = interval_held(table)
    if held is not None and not INTERVAL_HELD[0] <= held[0] <= INTERVAL_HELD[1]:
        share, n = held
        warnings.warn(
            f"The Monte Carlo 80% interval held the company total's outcome at {share:.0%} of the {n} "
            f"replayed cutoffs ({'too narrow' if share < INTERVAL_HELD[0] else 'too wide'} for an 80% interval): "
            "read its P10-P90 as a rough range, not as odds.",
            IntervalWarning,
            stacklevel=3,
        )
    return out


#: The shares of replayed outcomes inside the Monte Carlo P10-P90 that read as an honest 80% interval (outside:
#: too narrow or too wide, `interval_held`), and the fewest replayed cutoffs that share is judged on.
INTERVAL_HELD = (0.6, 0.95)
INTERVAL_HELD_CUTOFFS = 8


def interval_held(results: pd.DataFrame, group: str = "total") -> tuple[float, int] | None:
    """How often the Monte Carlo P10-P90 held the outcome at a `backtest`'s replayed cutoffs of `group`.

    A backtest warns (`IntervalWarning`) when the share of the company total's lies outside `INTERVAL_HELD`: its
    P10-P90 then reads as a rough range, not as odds, and a report's headline says no more.

    Returns
    -------
    (float, int) or None
        The share held and the cutoffs it is judged on; None with fewer than `INTERVAL_HELD_CUTOFFS` of them.

    Examples
    --------
    >>> res = pd.DataFrame({"method": "monte_carlo", "group": "total", "actual": [1.0] * 8,
    ...                     "p10": [0.5] * 4 + [2.0] * 4, "p90": [1.5] * 4 + [3.0] * 4})
    >>> interval_held(res)
    (0.5, 8)
    """
    mc = results.loc[
        (results["method"] == "monte_carlo")
        & (results["group"] == group)
        & results["actual"].notna()
        & results["p10"].notna()
    ]
    if len(mc) < INTERVAL_HELD_CUTOFFS:
        return None
    return float(((mc["actual"] >= mc["p10"]) & (mc["actual"] <= mc["p90"])).mean()), len(mc)


def interval_calibration(results: pd.DataFrame) -> pd.DataFrame:
    """What the Monte Carlo 80% intervals of a `backtest` rest on: one row per (period, cutoff, grouping).

    Parameters
    ----------
    results : pandas.DataFrame
        `backtest` output (it carries the table in ``attrs["interval_calibration"]``).

    Returns
    -------
    pandas.DataFrame
        ``period, cutoff, days_before_period_end, group, calibration_periods`` (earlier periods behind the interval
        at that time left, `IntervalCalibration`), ``widening`` (the stretch of the simulated futures about their
        mean) and ``past_coverage`` (how often the simulated P10-P90, before widening, held the outcome in those
        earlier periods). Empty without ``monte_carlo``, with ``calibrate_periods=0``, or for a table that lost its
        ``attrs``.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> res = backtest(load_sample(), methods=["monte_carlo"], periods=["FY2025Q2"], cutoffs="start",
    ...                groups=["total"], n_sims=200)
    >>> interval_calibration(res)[["period", "group", "calibration_periods"]].to_numpy().tolist()
    [['FY2025Q2', 'total', 7]]
    """
    raw = json.loads(results.attrs.get("interval_calibration") or "{}")
    notes = pd.DataFrame({c: raw.get(c, []) for c in _NOTE_COLUMNS})
    notes["cutoff"] = pd.to_datetime(notes["cutoff"]).astype("datetime64[us]")
    for c in ("period", "group"):
        notes[c] = notes[c].astype("str")
    notes["calibration_periods"] = notes["calibration_periods"].astype(np.int64)
    for c in ("days_before_period_end", "widening", "past_coverage"):
        notes[c] = notes[c].astype("float64")
    return notes


def interval_summary(results: pd.DataFrame, group: str = "total") -> str:
    """One sentence on what the Monte Carlo 80% intervals of a `backtest` rest on (for a report, under the chart).

    Parameters
    ----------
    results : pandas.DataFrame
        `backtest` output (its ``attrs["interval_calibration"]``).
    group : str
        The grouping described.

    Returns
    -------
    str
        E.g. "The Monte Carlo 80% interval (total) is calibrated on 3 to 8 earlier periods (median 8) at the same
        time before the period end, widened 1.1 to 2.0 times (median 1.2) ..."; a sentence saying it is not
        calibrated when the backtest has no calibration.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> res = backtest(load_sample(), methods=["monte_carlo"], periods=["FY2025Q2"], cutoffs="start",
    ...                groups=["total"], n_sims=200)
    >>> interval_summary(res).startswith("The Monte Carlo 80% interval (total) is calibrated on 7 earlier periods")
    True
    """
    notes = interval_calibration(results)
    if not (notes["group"] == group).any():
        return (
            f"The Monte Carlo 80% interval ({group}) is the simulation's P10-P90 as drawn, not calibrated on earlier "
            "periods (no calibration in these results)."
        )
    rows = notes.loc[notes["group"] == group]

    def span(values: pd.Series, fmt: str) -> str:
        lo, hi, mid = values.min(), values.max(), values.median()
        if fmt == "d":
            lo, hi, mid = int(lo), int(hi), int(round(mid))
        if lo == hi:
            return format(lo, fmt)
        return f"{lo:{fmt}} to {hi:{fmt}} (median {mid:{fmt}})"

    n, k = rows["calibration_periods"], rows["widening"]
    past = rows["past_coverage"].dropna()
    text = (
        f"The Monte Carlo 80% interval ({group}) is calibrated on {span(n, 'd')} earlier "
        f"period{'s' if n.max() != 1 else ''} at the same time before the period end: the simulated range is "
        f"widened {span(k, '.2f')} times"
    )
    if len(past):
        text += f" (as drawn, it held {past.mean():.0%} of those periods' outcomes)"
    text += "."
    if n.min() < INTERVAL_FEW_PERIODS:
        text += f" With fewer than {INTERVAL_FEW_PERIODS} earlier periods it leans on a wide default."
    return text


def _oracle(cut: BacktestCutoff) -> _Draws:
    data, s = cut.settings.data, cut.settings
    columns = [c for c in ("owner", "team", "segment", *cut.ctx.static) if c in data.opportunities.columns]
    frame = pipeline_snapshots(data, [cut.t], columns=columns)
    p = s.truth.win_within(frame, cut.end, n_sims=400, seed=s.seed, process=data.process).fillna(0.0).to_numpy()
    return cut.simulate(p, 0.0, salt=2)


#: Every forecast method, in the order of the tables and charts: adding a method is adding one entry.
METHODS: dict[str, ForecastMethod] = {
    m.name: m
    for m in (
        ForecastMethod(
            name="submitted_commit",
            label="submitted commit",
            definition="reps' latest commit call for the period, summed over the group",
            colour="#e69f00",
            forecast=_submitted(_CALL_CATEGORY["submitted_commit"]),
            needs=frozenset({"submissions"}),
        ),
        ForecastMethod(
            name="submitted_best_case",
            label="submitted best case",
            definition="reps' latest best-case call for the period, summed over the group",
            colour="#f0b67f",
            forecast=_submitted(_CALL_CATEGORY["submitted_best_case"]),
            needs=frozenset({"submissions"}),
        ),
        ForecastMethod(
            name="bias_corrected_commit",
            label="bias-corrected commit",
            definition="each rep's latest commit divided by the rep's historical call ratio (commit called over what "
            "was booked, learned from earlier closed periods)",
            colour="#cc79a7",
            forecast=_bias_corrected_commit,
            needs=frozenset({"submissions", "submission bias"}),
        ),
        ForecastMethod(
            name="crm_weighted",
            label="CRM-weighted pipeline",
            definition="closed won to date + open deals closing in the period (as dated then) x the CRM stage's "
            "default probability",
            colour="#8c564b",
            forecast=_crm_weighted,
            needs=frozenset({"pipeline"}),
        ),
        ForecastMethod(
            name="run_rate",
            label="run rate",
            definition="closed won to date + the closed-won bookings per day of the trailing period (as long as the "
            "period, up to the cutoff, as known then) x the days left in the period; ignores the open pipeline",
            colour="#8a8a8a",
            forecast=_run_rate,
            needs=frozenset({"bookings history"}),
            linestyle="--",
        ),
        ForecastMethod(
            name="stage_conversion",
            label="stage conversion",
            definition="closed won to date + open deals x learned probability of winning before the period ends "
            "(stage, days in stage) + expected bookings of deals not yet created",
            colour="#2ca02c",
            forecast=_stage_conversion,
            needs=frozenset({"pipeline", "stage_conversion model", "new deals"}),
        ),
        ForecastMethod(
            name="opportunity_score",
            label="opportunity score",
            definition="closed won to date + open deals x opportunity-score probability of winning in the period "
            "+ expected bookings of deals not yet created",
            colour="#17becf",
            forecast=_opportunity_score,
            needs=frozenset({"pipeline", "opportunity score", "new deals"}),
        ),
        ForecastMethod(
            name="ets",
            label="ETS",
            definition="exponential smoothing (ETS) of past periods' bookings; ignores the pipeline",
            colour="#9467bd",
            forecast=lambda cut: _prepared(cut, "ets"),
            needs=frozenset({"bookings history"}),
            quantiles=True,
            prepare=_bookings_model("ets"),
        ),
        ForecastMethod(
            name="seasonal_naive",
            label="seasonal naive",
            definition="bookings of the same period one year earlier; ignores the pipeline; missing with less than a "
            "year of past periods",
            colour="#bcbd22",
            forecast=lambda cut: _prepared(cut, "seasonal_naive"),
            needs=frozenset({"bookings history"}),
            quantiles=True,
            prepare=_bookings_model("seasonal_naive"),
        ),
        ForecastMethod(
            name="monte_carlo",
            label="Monte Carlo",
            definition="mean of simulated bookings: closed won to date + each open deal won by a Bernoulli draw with "
            "the learned probability under a shared period shock + new-deal bookings of a past period; its P10-P90 "
            "widened by how far earlier periods' outcomes fell from it at the same time left",
            colour="#1f5fbf",
            forecast=_monte_carlo,
            needs=frozenset({"pipeline", "stage_conversion model", "period shock", "new deals", "simulation"}),
            quantiles=True,
        ),
        ForecastMethod(
            name="oracle",
            label="oracle",
            definition="as monte_carlo with the generator's true probabilities and no shock (synthetic data only): "
            "the error no method can remove",
            colour="#000000",
            forecast=_oracle,
            needs=frozenset({"pipeline", "new deals", "simulation", "truth"}),
            default=False,
            quantiles=True,
            linestyle=":",
        ),
    )
}

#: Methods that need only the pipeline and the stage-conversion model (the fast core of the backtest).
PIPELINE_METHODS: tuple[str, ...] = ("crm_weighted", "stage_conversion", "monte_carlo")

#: Methods `backtest_parts` replays over partitions: the pipeline methods, those of the bookings history and the reps'
#: calls.
PARTITIONED_METHODS: tuple[str, ...] = (
    *PIPELINE_METHODS,
    "run_rate",
    "ets",
    "seasonal_naive",
    "submitted_commit",
    "submitted_best_case",
    "bias_corrected_commit",
    "opportunity_score",
)


def _check_backtest(period: str, refit: str, n_sims: Any, shock: Any) -> None:
    if period not in _SEASON:
        raise ValueError(f"period must be 'month', 'quarter' or 'year', got {period!r}")
    if refit not in ("period", "cutoff"):
        raise ValueError(f"refit must be 'period' or 'cutoff', got {refit!r}")
    if not isinstance(n_sims, numbers.Integral) or n_sims < 10:
        raise ValueError(f"n_sims must be an integer >= 10, got {n_sims!r}")
    if not (shock == "auto" or (isinstance(shock, numbers.Real) and shock >= 0)):
        raise ValueError(f"shock must be 'auto' or a number >= 0, got {shock!r}")


def _groupings(groups: Sequence[str] | str | None, columns: Iterable[str]) -> list[str]:
    """The groupings scored: `groups`, or ``total`` and the team and owner columns the opportunities have."""
    if groups is None:
        groups = ["total", *(g for g in ("team", "owner") if g in columns)]
    groups = list(dict.fromkeys([groups] if isinstance(groups, str) else groups))
    if not groups:
        raise ValueError("groups must name at least one grouping: 'total', 'team', 'owner' or an opportunity column")
    return groups


def _refits(
    ctx: _Periods, plan: pd.DataFrame, refit: str, needs: frozenset[str], calibrate_periods: int, shock: Any
) -> tuple[dict[tuple, list[tuple]], set[pd.Timestamp]]:
    """The refit date of every cutoff of `plan` (a column added), the calibration pairs of each refit, the dates.

    The dates the pipeline is rebuilt at: every cutoff, every pair, and every period start for the shock estimate.
    """
    snap_dates = set(plan["cutoff"])
    plan["refit_at"] = plan["start"] if refit == "period" else plan["cutoff"]
    plan["refit_at"] = plan[["refit_at", "cutoff"]].min(axis=1)
    calibration: dict[tuple, list[tuple]] = {}
    if "stage_conversion model" in needs and calibrate_periods > 0:
        for key, chunk in plan.groupby(["period", "refit_at"], sort=True):
            left = [_left(e, t) for e, t in zip(chunk["end"], chunk["cutoff"], strict=True)]
            calibration[key] = _calibration_pairs(ctx, pd.Timestamp(key[1]), left, calibrate_periods)
            snap_dates.update(pair[4] for pair in calibration[key])
    if "period shock" in needs and shock == "auto":
        for label in ctx.past_periods(plan["cutoff"].max(), 0):
            snap_dates.add(ctx.bounds(label)[0])
    return calibration, snap_dates


def backtest(
    data: CRMData,
    methods: Sequence[str] | None = None,
    period: str = "quarter",
    cutoffs: str | Sequence[Any] = "weekly",
    groups: Sequence[str] | None = None,
    truth: Any = None,
    *,
    periods: Sequence[str] | int | None = None,
    refit: str = "period",
    n_sims: int = 1000,
    shock: float | str = "auto",
    new_deal_periods: int = 4,
    segment: str | None = "segment",
    calibrate_periods: int = 8,
    calibrate_prior: float = 0.5,
    bias_weeks: float = 4,
    opportunity_params: dict[str, Any] | None = None,
    min_history_days: float | None = None,
    seed: int = 0,
    return_samples: bool = False,
    n_jobs: int | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[pd.Timestamp, np.ndarray]]:
    """Replay every forecast method at every cutoff of past periods, and join what actually closed.

    Parameters
    ----------
    data : CRMData
        Validated data. Periods ending after `data_end` have a missing actual.
    methods : sequence of str, optional
        Names from `METHODS` (a new method is an entry added there, so that every reader finds it). Default: the
        entries marked ``default`` (all but ``oracle``), plus those needing the truth when `truth` is given.
    period : {"month", "quarter", "year"}
        The fiscal period forecast.
    cutoffs : "weekly", "start" or sequence of dates
        ``"weekly"``: the period's start and every 7 days after; ``"start"``: its first day only; or explicit
        dates, each forecasting the period that contains it.
    groups : sequence of str, optional
        ``"total"`` and/or opportunity columns (``"team"``, ``"owner"``, ``"segment"``...). Default: ``"total"``,
        ``"team"`` and ``"owner"``, those the opportunities have (data without teams are scored without them).
    truth : GroundTruth, optional
        Adds the ``oracle`` method (data from `salesforecast.datasets.generate`).
    periods : sequence of str or int, optional
        Period labels to replay (default: every period that starts at least `min_history_days` after the first
        deal and ended by the data end; an integer ``n``: the last ``n`` of those).
    refit : {"period", "cutoff"}
        Fit the models on the data known at each period's start (default; forecasts later in the period use that
        fit, still without leakage) or at every cutoff.
    n_sims : int
        Simulated futures of ``monte_carlo`` and ``oracle``.
    shock : float or "auto"
        Log-sd of the shared period shock of ``monte_carlo``; ``"auto"`` estimates it at each refit from the last
        closed periods (see `salesforecast.simulation`).
    new_deal_periods : int
        Closed periods averaged for the bookings of deals not yet created.
    segment : str or None
        Opportunity column the stage-conversion model is segmented by, when present (deals of different segments
        move at different speeds: an enterprise deal rarely closes within the quarter it reaches negotiation).
    calibrate_periods : int
        Earlier closed periods replayed at each refit to calibrate the stage-conversion probabilities by horizon
        (days before the period end): the model knows stages and durations, not the calendar, so a quarter-end
        push looks like stalling to it. 0 turns the calibration off.
    calibrate_prior : float
        Shrinkage of the calibration factors toward 1, in periods' worth of expected wins. The quarter-end
        factors are large (2-4 in the last days on the generator): a strong shrinkage biases the late forecasts
        low. The factors count deals (won over expected wins, per open stage, shrunk toward the horizon's by
        `STAGE_FACTOR_PRIOR` expected wins) times the amount booked over the amount forecast: 1.07x / 1.09x /
        1.09x the oracle's company WAPE early / mid / late, pooled over seeds 101-103 x 20,000 deals, where
        factors learned from amounts gave 1.03x / 1.06x / 1.11x (`tests/test_oracle_gap.py`).
    bias_weeks : float
        Late window of `submission_bias` for ``bias_corrected_commit``.
    opportunity_params : dict, optional
        Settings of the `OpportunityScoringModel` behind ``opportunity_score`` (its ``target`` is ``"period"`` and
        its ``period`` the backtest's), e.g. ``{"estimator": "logistic"}``, ``{"model_params": {"leakage_auc":
        0.85}}`` or ``{"max_rows": None}`` (each refit learns from a sample of at most ``max_rows`` (date, deal)
        rows by default, 75,000: see `OpportunityScoringModel`).
    min_history_days : float, optional
        Default periods start this long after the first deal (the models need history). Default (None): 365 days,
        shortened on short data so that four closed periods are replayed, but never to less than two whole periods
        (15 months of data: two quarters of history, three quarters replayed).
    seed : int
        Seed of the simulations (each cutoff draws from its own stream, so results do not depend on which other
        cutoffs are replayed).
    return_samples : bool
        Also return the ``monte_carlo`` samples: a dict cutoff -> array (group rows of the output order, n_sims).
    n_jobs : int, optional
        Threads drawing the simulated futures of ``monte_carlo`` and ``oracle`` (default: the machine's cores).
        The results do not depend on it: each cutoff draws from its own random stream.

    Returns
    -------
    pandas.DataFrame
        One row per (period, cutoff, group, group_value, method): ``period, cutoff, days_before_period_end, group,
        group_value, method, forecast, p10, p50, p90, actual, leakage`` (quantiles missing where a method has none;
        ``leakage``: the features the method's model relied on that its leakage guard flagged, with their
        single-feature AUC, "" for none). Group values appear for the periods where they had pipeline, bookings or
        submissions. With ``crm_weighted``, ``attrs["crm_weighted_left_out"]`` holds the share of the open pipeline
        amount without a close date as known then, which that method cannot place in a period: ``mean_share`` and
        ``max_share`` over the cutoffs, and ``cutoffs``.

    Warns
    -----
    LeakageWarning
        A method's model relied on flagged features in some period (`leaderboard` marks it `NOT_TRUSTED`).
    ForecastWarning
        The CRM-weighted method left out open deals without a close date.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> res = backtest(data, methods=["crm_weighted", "stage_conversion"], periods=["FY2025Q2"], cutoffs="start",
    ...                groups=["total"])
    >>> res[["period", "method", "group_value"]].to_numpy().tolist()
    [['FY2025Q2', 'crm_weighted', 'total'], ['FY2025Q2', 'stage_conversion', 'total']]
    """
    _check_backtest(period, refit, n_sims, shock)
    chosen = _check_methods(methods, truth)
    groups = _groupings(groups, data.opportunities.columns)
    ctx = _Context(data, period, groups)
    plan = _plan(ctx, cutoffs, periods, _history_days(ctx, min_history_days))
    quantiles = _QUANTILES
    G = ctx.groups

    needs = frozenset().union(*(m.needs for m in chosen))  # the inputs to prepare: what the chosen methods need
    needs_sc = "stage_conversion model" in needs
    needs_new = "new deals" in needs
    calibration, snap_dates = _refits(ctx, plan, refit, needs, calibrate_periods, shock)
    ctx.add_snapshots(snap_dates)
    runs = ctx.history if needs_sc else None
    settings = _Settings(
        data=data,
        truth=truth,
        n_sims=int(n_sims),
        seed=seed,
        opps_by_created=data.opportunities.sort_values("created_at", kind="stable"),
    )

    frames = []
    names = {m.name for m in chosen}
    left_out: list[tuple[pd.Timestamp, float, float, int]] = []
    samples: dict[tuple[pd.Timestamp, str], np.ndarray] = {}
    # the Monte Carlo draws of each cutoff (its own random stream) run in threads: the results do not depend on it
    threads = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
    if threads < 1:
        raise ValueError(f"n_jobs must be a positive integer or None, got {n_jobs!r}")
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 and ("simulation" in needs or needs_sc) else None
    pending: list[tuple[np.ndarray, pd.Timestamp, str, bool, Any]] = []
    try:
        # the stage-conversion fits (with their horizon calibration and shock) do not depend on each other: with
        # threads they run ahead of the cutoffs that use them
        refits: dict[tuple, Any] = {}
        groups = list(plan.groupby(["period", "refit_at"], sort=True))  # one fit per period (or cutoff)
        keys = [key for key, _ in groups]
        seg = segment if segment is not None and segment in data.opportunities.columns else None

        def submit(i: int) -> None:  # the fit of the i-th period, if any (each asked for once)
            if needs_sc and i < len(keys):
                args = (ctx, runs, seg, pd.Timestamp(keys[i][1]), calibration.get(keys[i]), calibrate_prior)
                extra = ("period shock" in needs, shock, new_deal_periods)
                refits[keys[i]] = pool.submit(_refit, *args, *extra) if pool else _Lazy(_refit, *args, *extra)

        submit(0)
        for i, ((label, refit_at), chunk) in enumerate(groups):
            s, e = pd.Timestamp(chunk["start"].iloc[0]), pd.Timestamp(chunk["end"].iloc[0])
            refit_at = pd.Timestamp(refit_at)
            actual = ctx.actual(s, e)
            sc_model, sc_seg, factors, shock_sd, intervals = (
                refits.pop((label, refit_at)).result() if needs_sc else (None, None, {}, 0.0, None)
            )
            per = BacktestPeriod(label, s, e, refit_at, ctx, shock_sd=shock_sd, intervals=intervals)
            if "opportunity score" in needs:
                release_memory()  # what the last period's simulations and this period's fit freed, before the peak
                per.opportunity_scores, leaky = _opportunity_scores(
                    ctx, refit_at, list(chunk["cutoff"]), opportunity_params
                )
                if leaky:
                    per.leakage.update({m.name: leaky for m in chosen if "opportunity score" in m.needs})
                release_memory()  # the fit's tables are freed: their memory back before the next step's peak
            # the next period's fit runs ahead in a thread while this period's cutoffs are forecast (after the
            # opportunity score's fit, whose peak it would add to; one at a time: each holds its replayed pipelines)
            submit(i + 1)
            if "submission bias" in needs:
                per.bias, per.bias_fallback = _commit_bias(ctx, refit_at, bias_weeks)
            for m in chosen:
                if m.prepare is not None:
                    per.prepared[m.name] = m.prepare(per)

            chunk_q = {}
            cuts = [pd.Timestamp(t) for t in chunk["cutoff"]]
            chunk_snaps = {t: ctx.snap(t) for t in cuts}
            if sc_model is not None:
                qs = _predict_within(sc_model, sc_seg, list(chunk_snaps.values()), [e] * len(cuts))
                chunk_q = {
                    t: _calibrated(q, factors, _left(e, t), chunk_snaps[t].stage) for t, q in zip(cuts, qs, strict=True)
                }
            for t in cuts:
                nd = ctx.new_deals(t, e, new_deal_periods) if needs_new else np.zeros((0, G.size))
                cut = BacktestCutoff(per, t, chunk_snaps[t], ctx.won_known(t, s, e), nd, chunk_q.get(t), settings)
                days = (e - t) / _DAY
                if "crm_weighted" in names:
                    left_out.append((t, *_left_out(chunk_snaps[t])))
                for m in chosen:
                    fc = np.full((G.size, 4), np.nan)
                    value = m.forecast(cut)
                    expected = None
                    if isinstance(value, _Draws):
                        keep = value.keep and return_samples
                        job_args = (value.args, quantiles, keep)
                        job = pool.submit(_simulate, *job_args) if pool else _Lazy(_simulate, *job_args)
                        pending.append((fc, t, m.name, keep, job))
                        amount, p, codes, _, base, new = value.args[:6]
                        expected = _expected(G, base, G.sum(codes, amount * np.nan_to_num(p)), new)
                    elif value is not None:
                        value = np.asarray(value, dtype="float64")
                        if value.ndim == 1:
                            fc[:, 0] = value
                        else:
                            fc[:] = value
                    leak = _leak_text(per.leakage.get(m.name))
                    frames.append((label, t, days, m.name, fc, actual, leak, expected))

        for fc, t, name, keep, job in pending:  # the simulations, in the order they were asked for
            mean, quants, sims = job.result()
            fc[:, 0] = mean
            fc[:, 1:] = quants
            if keep:
                samples[(t, name)] = sims
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    out = _assemble(frames, G, return_samples, samples)
    ctx._snap_rows.clear()  # the pipelines of every cutoff, the fits and the frames are done with: their memory back
    del frames, pending, settings
    release_memory()
    _warn_leakage(out[0] if return_samples else out)
    if left_out:
        table = pd.DataFrame(left_out, columns=["cutoff", "open_amount", "undated_amount", "undated_deals"])
        (out[0] if return_samples else out).attrs["crm_weighted_left_out"] = _left_out_shares(table)
        _warn_left_out(table)
    return _interval_notes(out, ctx)


def _leak_text(leaky: dict[str, float] | None) -> str:
    """The ``leakage`` column: flagged features with their single-feature AUC ("" for none)."""
    return ", ".join(f"{k} (AUC {v:.2f})" for k, v in (leaky or {}).items())


def _warn_leakage(results: pd.DataFrame) -> None:
    """One `LeakageWarning` per method whose model relied on flagged features in some replayed period."""
    flagged = results.loc[results["leakage"] != "", ["method", "period", "leakage"]].drop_duplicates()
    for method, part in flagged.groupby("method", sort=True):
        periods = sorted(part["period"].unique())
        total = results.loc[results["method"] == method, "period"].nunique()
        name = METHODS[method].label if method in METHODS else method
        label = _FORECASTING.get()
        listed = f"{', '.join(periods[:6])}{' ...' if len(periods) > 6 else ''}"
        opening = (
            f"The {name} forecast is not trusted: in {len(periods)} of {total} periods replayed ({listed})"
            if label is None
            else f"For {label}, the period forecast now, the {name} forecast is not trusted:"
        )
        warnings.warn(
            f"{opening} its model relied on features that alone separate won from lost deals "
            f"({part['leakage'].iloc[-1]}), "
            "which a feature known before the outcome rarely does: they were probably recorded after it (e.g. a close "
            "date read today standing in for the one known then). Its accuracy in the leaderboard is likely "
            f"flattering; the leaderboard marks it '{NOT_TRUSTED}' and the recommendation leaves it out.",
            LeakageWarning,
            stacklevel=3,
        )


def _left_out_shares(table: pd.DataFrame) -> dict[str, float]:
    """Share of the open pipeline amount without a close date: mean and largest over the cutoffs, and how many."""
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (table["undated_amount"] / table["open_amount"]).fillna(0.0)
    return {"mean_share": float(share.mean()), "max_share": float(share.max()), "cutoffs": float(len(table))}


def _warn_left_out(table: pd.DataFrame) -> None:
    """A `ForecastWarning` when the CRM-weighted method could not place open deals in a period (no close date)."""
    if not (table["undated_deals"] > 0).any():
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (table["undated_amount"] / table["open_amount"]).fillna(0.0)
    cuts = len(table)
    when = (
        f"at {pd.Timestamp(table['cutoff'].iloc[0]):%Y-%m-%d}"
        if cuts == 1
        else f"on average over the {cuts} cutoffs (up to {share.max():.0%})"
    )
    warnings.warn(
        f"{_scope('In the replayed periods,')} the CRM-weighted forecast left out {share.mean():.0%} of the open "
        f"pipeline amount {when}: deals without a "
        "close date as known then (open deals without an expected close date, or a history that never recorded "
        "past close dates) cannot be placed in a period, so it counts them in none and under-forecasts. The "
        "stage-conversion and opportunity-score forecasts include them by their time to close.",
        ForecastWarning,
        stacklevel=3,
    )


def _opportunity_scores(
    ctx: _Context, refit_at: pd.Timestamp, cuts: list[pd.Timestamp], params: dict[str, Any] | None = None
) -> tuple[pd.Series | None, dict[str, float]]:
    """`OpportunityScoringModel` fitted at `refit_at`: each open deal's probability at `cuts`, and flagged features.

    The probability is None when the model could not be fitted; the features are those its leakage guard flagged
    (`OpportunityScoringModel.leaky_features_`).
    """
    if refit_at <= ctx.first_day:
        return None, {}
    model = _score_model(params, ctx.period, lambda m: m.fit(ctx.data, as_of=refit_at))
    if model is None:
        return None, {}
    return _win_probabilities(model, ctx.data, cuts, ctx.period, ctx.history), dict(model.leaky_features_)


#: Held by the opportunity score's fits in a backtest (`_score_model`).
_SCORE_FITS = threading.Lock()


def _score_model(
    params: dict[str, Any] | None, period: str, fit: Callable[[OpportunityScoringModel], OpportunityScoringModel]
) -> OpportunityScoringModel | None:
    """The opportunity score's model (target ``"period"``) as `fit` fits it; None with too little history to learn.

    Its flagged features are not warned of here: they are summed up over the periods (`_warn_leakage`). One fit at
    a time: periods replayed in threads (`backtest_parts`) would otherwise interleave their `catch_warnings` blocks,
    which save and restore the process's filters, and could leave the leakage warning silenced for good.
    """
    try:
        with _SCORE_FITS, warnings.catch_warnings():
            warnings.simplefilter("ignore", LeakageWarning)
            return fit(OpportunityScoringModel(**{**(params or {}), "target": "period", "period": period}))
    except ValueError:
        return None  # the method is missing for this period


def _commit_bias(ctx: _Context, refit_at: pd.Timestamp, weeks: float) -> tuple[pd.Series, float]:
    """Each owner's commit bias learned at `refit_at`, and the median rep's (for a rep without a usable one)."""
    return _bias_and_fallback(_bias_table(ctx, refit_at, "commit", weeks))


def _bias_and_fallback(table: pd.DataFrame) -> tuple[pd.Series, float]:
    """Each owner's commit bias of a `_bias_table`, and the median rep's (for a rep without a usable one)."""
    bias = table.set_index("owner")["bias"].astype("float64")
    usable = bias[np.isfinite(bias) & (bias > 0)]
    # a rep without a usable bias of their own (new, or never booked) gets the median rep's
    return bias, float(usable.median()) if len(usable) else 1.0


def _refit(
    ctx: _Context,
    runs: DealHistory,
    segment: str | None,
    refit_at: pd.Timestamp,
    pairs: list[tuple],
    prior: float,
    monte_carlo: bool,
    shock: float | str,
    n_new: int,
) -> tuple[StageConversionModel | None, np.ndarray | None, dict[int, np.ndarray], float, IntervalCalibration | None]:
    """The stage-conversion model fitted at `refit_at`: segment codes, horizon factors, shock, interval calibration.

    The shock is a log-sd; the Monte Carlo's interval calibration is None when `pairs` is None (turned off).
    """
    try:
        model = StageConversionModel(n_bootstrap=0, segment=segment).fit_history(runs, refit_at)
    except ValueError:
        return None, None, {}, 0.0, None  # no stage history yet: the methods are missing for this period
    seg = _segment_of(ctx, model)
    replay = _replay(ctx, model, seg, refit_at, pairs or [])
    factors = _horizon_factors(replay, prior)
    shock_sd, intervals = 0.0, None
    if monte_carlo:
        shock_sd = _shock_sd(ctx, model, seg, refit_at, n_new) if shock == "auto" else float(shock)
        if pairs is not None:
            intervals = _interval_calibration(ctx, replay, prior, refit_at, shock_sd, n_new)
    return model, seg, factors, shock_sd, intervals


class _Lazy:
    """A computation run when its result is first asked for, read like a future (no thread pool)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def result(self) -> Any:
        if self.args is not None:
            self.value, self.args = self.fn(*self.args), None
        return self.value


def _simulate(args: tuple, quantiles: Sequence[float], keep: bool) -> tuple[np.ndarray, np.ndarray, Any]:
    """`simulate_bookings` of one cutoff, summarised: mean and quantiles per group (and the samples if `keep`)."""
    amount, p, codes, n_groups, base, new_deals, shock_sd, n_sims, rng, *widen = args
    sims = simulate_bookings(
        amount, p, codes, n_groups, base=base, new_deals=new_deals, shock_sd=shock_sd, n_sims=n_sims, rng=rng
    )
    return _summarise(sims, base, widen[0] if widen else None, quantiles, keep)


def _summarise(
    sims: np.ndarray, base: np.ndarray, widen: np.ndarray | None, quantiles: Sequence[float], keep: bool
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Simulated futures (groups x futures) summarised: mean and quantiles per group (and the samples if `keep`)."""
    mean = sims.mean(axis=1)  # the point forecast: the expected bookings of the simulation, before any widening
    if widen is not None:  # the interval calibration: futures stretched about their mean, never below the won to date
        sims = widen_samples(sims, widen, floor=base)
    quants = np.quantile(sims, quantiles, axis=1).T
    # when fewer than 10% of the futures exceed the mean (most end at the won to date, a few win a large deal), the
    # P10-P90 would leave out the point forecast: the interval is extended to it
    quants[:, 0] = np.minimum(quants[:, 0], mean)
    quants[:, -1] = np.maximum(quants[:, -1], mean)
    return mean, quants, sims if keep else None


def _expected(G: _Groups, won: np.ndarray, pipeline: np.ndarray, new_deals: np.ndarray) -> np.ndarray:
    """Per group: the expected bookings of a simulation, or of the stage-conversion and opportunity-score methods.

    Won to date + the pipeline's expected wins + the mean of the past periods' new deals.
    """
    return won + pipeline + _new_deal_moments(new_deals, G.size)[0]


def _assemble(frames: list, G: _Groups, return_samples: bool, samples: dict) -> Any:
    if not frames:
        raise ValueError("backtest: nothing was forecast")
    # a group value is listed for a period when it has an actual, a forecast or a submission there (and total always)
    by_period: dict[str, np.ndarray] = {}
    total = np.zeros(G.size, dtype=bool)
    for name, off in zip(G.names, G.offsets[:-1], strict=True):
        total[off] |= name == "total"
    for label, _t, _d, _m, fc, actual, _leak, expected in frames:
        # a simulation's mean is random (0 when no future wins a deal): its expected value says whether it forecasts
        forecast = fc[:, 0] if expected is None else expected
        active = (np.nan_to_num(actual) != 0) | (np.nan_to_num(forecast) != 0) | total
        by_period[label] = by_period.get(label, np.zeros(G.size, dtype=bool)) | active
    keeps = [np.flatnonzero(by_period[f[0]]) for f in frames]
    sizes = np.array([len(k) for k in keeps])
    rows = np.concatenate(keeps)
    fc = np.concatenate([f[4][k] for f, k in zip(frames, keeps, strict=True)])
    base = G.frame()
    out = pd.DataFrame(
        {
            "period": np.repeat(np.array([f[0] for f in frames], dtype=object), sizes),
            "cutoff": np.repeat(np.array([np.datetime64(f[1], "us") for f in frames]), sizes),
            "days_before_period_end": np.repeat(np.array([f[2] for f in frames], dtype="float64"), sizes),
            "group": base["group"].to_numpy()[rows],
            "group_value": base["group_value"].to_numpy()[rows],
            "method": np.repeat(np.array([f[3] for f in frames], dtype=object), sizes),
            "forecast": fc[:, 0],
            "p10": fc[:, 1],
            "p50": fc[:, 2],
            "p90": fc[:, 3],
            "actual": np.concatenate([f[5][k] for f, k in zip(frames, keeps, strict=True)]),
            "leakage": np.repeat(np.array([f[6] for f in frames], dtype=object), sizes),
        }
    )
    for c in ("period", "group", "group_value", "method", "leakage"):
        out[c] = out[c].astype("str")
    if return_samples:
        kept = {}
        for f, k in zip(frames, keeps, strict=True):
            if (f[1], f[3]) in samples:  # the samples of the method that keeps them (monte_carlo)
                kept[f[1]] = samples[(f[1], f[3])][k]
        return out, kept
    return out


# --------------------------------------------------------------------------------------------- over partitions
# The backtest of the pipeline methods over deals split into parts (the partitions of `salesforecast.scale`), each
# part on its worker. Every quantity the methods read is a sum over deals (won, actual, new deals, the expected
# bookings, the calibration's and the shock's sums), so each part computes its own and the client adds them; the
# model is `StageConversionModel.fit_parts`; the Monte Carlo draws each part's deals under a shock shared by all
# (`salesforecast.simulation.part_streams`). The client holds the calendar and the sums, never a deal.
@dataclass
class _PartRefit:
    """A part's model fitted at a refit date, its segment codes and its replay (None: no model).

    Without the part's context: the tasks after the refit take both (`_part_refit_sums`, `_part_calibration_terms`,
    `_part_cutoffs`), so a context kept on a worker's disk (`salesforecast.scale.Stored`) is written once, not with
    every period's refit.
    """

    model: StageConversionModel | None = None
    seg: np.ndarray | None = None
    replay: _Replay | None = None


def _part_meta(part: Any, groups: Sequence[str]) -> dict[str, Any]:
    """Task: a part's first deal, its opportunity columns and the values of the `groups` it has."""
    data = read_part(part)
    opps = data.opportunities
    return {
        "first": opps["created_at"].min() if len(opps) else pd.NaT,
        "columns": list(opps.columns),
        "values": _group_values(opps, data.forecast_submissions, [g for g in groups if g in opps.columns]),
    }


def _part_booked(ctx: _Context, as_of: pd.Timestamp, closed: list[str]) -> dict[str, pd.Series]:
    """Task: the part's won bookings per owner of each closed period, as known at `as_of` (`_booked`)."""
    return _booked(ctx, as_of, closed)


def _part_context(part: Any, period: str, whole: _Whole, dates: list[pd.Timestamp], keep: list[str]) -> _Context:
    """Task: a part's backtest context under the whole's groups and rules, its pipeline rebuilt at `dates`.

    Slim (`_Context.slim`): of the opportunities, the `keep` columns only.
    """
    ctx = _Context(read_part(part), period, whole.groups.names, whole=whole)
    ctx.add_snapshots(dates)
    ctx.slim(keep)
    return ctx


def _part_open(ctx: _Context, dates: list[pd.Timestamp]) -> np.ndarray:
    """Task: per date, the part's open deals then."""
    return np.array([len(ctx.snap(t)) for t in dates], dtype=np.int64)


def _part_history(ctx: _Context) -> DealHistory:
    """Task: the part's deal history (for `StageConversionModel.fit_parts`)."""
    return ctx.history


def _part_refit(
    ctx: _Context, model: StageConversionModel | None, refit_at: pd.Timestamp, pairs: list[tuple]
) -> _PartRefit:
    """Task: the part's replay of the model fitted at `refit_at` at the calibration `pairs` the whole used."""
    if model is None:
        return _PartRefit()
    seg = _segment_of(ctx, model)
    return _PartRefit(model, seg, _replay(ctx, model, seg, refit_at, pairs, all_pairs=True))


def _part_refit_sums(
    part: _PartRefit, ctx: _Context, shock_periods: list[tuple], refit_at: pd.Timestamp, n_new: int
) -> tuple[tuple[np.ndarray, ...] | None, list[tuple] | None]:
    """Task: the part's horizon sums (`_horizon_sums`: x, y, booked, quoted) and shock terms (`_shock_terms`)."""
    sums = None
    if part.replay is not None and part.replay.pairs:
        h = _horizon_sums(part.replay)
        sums = (h.x, h.y, h.booked, h.quoted)  # additive; the index and the pairs' counts are the client's
    terms = _shock_terms(ctx, part.model, part.seg, shock_periods, refit_at, n_new) if shock_periods else None
    return sums, terms


def _part_calibration_terms(
    part: _PartRefit, ctx: _Context, factor: np.ndarray, refit_at: pd.Timestamp, n_new: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Task: the part's `_calibration_terms`, with each pair's new deals (their mean and variance are the whole's)."""
    x, var, actual, floor, moments = _calibration_terms(ctx, part.replay, factor, refit_at, n_new)
    return x, var, actual, floor, [m[0] for m in moments]


def _part_cutoffs(
    part: _PartRefit,
    ctx: _Context,
    streams: list[tuple[np.ndarray, Any]] | None,
    cuts: list[pd.Timestamp],
    start: pd.Timestamp,
    end: pd.Timestamp,
    factors: dict[int, np.ndarray],
    n_new: int,
    crm: bool,
    new: bool,
    history: bool = False,
    teams: bool = False,
) -> dict[str, Any]:
    """Task: the part's sums at every cutoff of a period, and its Monte Carlo draws under the shared `streams`.

    With `history`, the bookings of the trailing period at each cutoff (``run_rate``) and of every closed period
    at the period's start (``ets``, ``seasonal_naive``); with `teams`, each owner's latest deal at each cutoff
    (`_latest_deals`: the team of a call that names none).

    ``{"sums": {"actual": ..., "cuts": [per cutoff: won, new deals, the methods' sums]}, "draws": (cutoffs,
    groups, futures) or None}``: the draws are added over the parts where they are (`tasks.sum`), never gathered
    part by part.
    """
    G = ctx.groups
    snaps = [ctx.snap(t) for t in cuts]
    qs = None
    if part.model is not None:
        raw = _predict_within(part.model, part.seg, snaps, [end] * len(cuts))
        qs = [_calibrated(q, factors, _left(end, t), x.stage) for t, q, x in zip(cuts, raw, snaps, strict=True)]
    out, draws = [], []
    for j, (t, snap) in enumerate(zip(cuts, snaps, strict=True)):
        r: dict[str, Any] = {"won": ctx.won_known(t, start, end)}
        if new:
            r["new"] = ctx.new_deals(t, end, n_new)
        if crm:
            r["crm"] = _crm_sum(ctx, snap, start, end)
            r["left_out"] = _left_out(snap)
        if history and t - (end - start) >= ctx.first_day:  # run_rate's trailing period, as long as the period
            r["trailing"] = ctx.won_known(t, t - (end - start), t)
        if teams:
            r["latest"] = _latest_deals(ctx.data.opportunities, t)
        if qs is not None:
            r["stage"] = G.sum(snap.codes, snap.amount * qs[j])
            if streams is not None:
                shock, seed = streams[j]
                draws.append(draw_part(snap.amount, qs[j], snap.codes, G.size, shock, seed))
        out.append(r)
    sums = {"actual": ctx.actual(start, end), "cuts": out}
    if history:
        sums["series"] = _bookings_series(ctx, start)
    return {"sums": sums, "draws": np.stack(draws) if draws else None}


def _part_owner_records(ctx: _Context, dates: list[pd.Timestamp]) -> OwnerRecords:
    """Task: the part's owners' closed and won deals at `dates` (`owner_records`: added over the parts)."""
    return owner_records(ctx.history, dates)


def _part_scores(
    part: Any,
    ctx: _Context,
    model: OpportunityScoringModel,
    cuts: list[pd.Timestamp],
    records: OwnerRecords,
    unknown: Mapping[str, Any] | None,
) -> list[np.ndarray]:
    """Task: per cutoff, the part's expected bookings per group by the opportunity score (amount x probability).

    The part's features at the cutoffs read the owners' `records` over every part, under the whole's rules.
    """
    data = read_part(part)
    history = replace(DealHistory.from_data(data), close_unknown_before=ctx.history.close_unknown_before)
    p = _win_probabilities(model, data, cuts, ctx.period, history, records, unknown, model.uses_activities)
    ids = ctx.data.opportunities["opportunity_id"]
    return [_score_sum(ctx, ctx.snap(t), ids, p) for t in cuts]


def _win_probabilities(
    model: OpportunityScoringModel,
    data: CRMData,
    cuts: list[pd.Timestamp],
    period: str,
    history: DealHistory,
    records: OwnerRecords | None = None,
    unknown: Mapping[str, Any] | None = None,
    activity_features: bool = False,
) -> pd.Series:
    """Each open deal's win probability at `cuts` by `model`, by (date, opportunity id)."""
    feats = opportunity_features(
        data,
        cuts,
        columns=model.columns,
        period=period,
        prior_strength=model.prior_strength,
        history=history,
        records=records,
        unknown=unknown,
        activity_features=activity_features,
    )
    feats["p"] = model.predict_proba(feats)
    return feats.set_index(["as_of", "opportunity_id"])["p"]


def _score_sum(ctx: _Context, snap: _Snap, ids: pd.Series, scores: pd.Series) -> np.ndarray:
    """Per group, the pipeline's amount x win probability (a deal without a score: 0)."""
    key = pd.MultiIndex.from_arrays([np.full(len(snap), np.datetime64(snap.t, "us")), ids.take(snap.opp).to_numpy()])
    p = scores.reindex(key).fillna(0.0).to_numpy()
    return ctx.groups.sum(snap.codes, snap.amount * p)


def _scored_parts(
    parts: Sequence[Any],
    ctxs: list[Any],
    cal: _Periods,
    refit_at: pd.Timestamp,
    cuts: list[pd.Timestamp],
    params: dict[str, Any] | None,
    process: Any,
    as_of: Any,
    unknown: Mapping[str, Any] | None,
    tasks: Any,
) -> tuple[list[np.ndarray] | None, dict[str, float]]:
    """The opportunity score over parts: per cutoff the whole's sums per group, and the features flagged as leaks.

    None when the model could not be fitted at `refit_at` (as `_opportunity_scores`).
    """
    if refit_at <= cal.first_day:
        return None, {}
    model = _score_model(params, cal.period, lambda m: m.fit_parts(parts, process, as_of, refit_at, unknown, tasks))
    if model is None:
        return None, {}
    records = functools.reduce(operator.add, tasks.gather(tasks.map(_part_owner_records, ctxs, dates=cuts)))
    found = tasks.gather(tasks.map(_part_scores, parts, ctxs, model=model, cuts=cuts, records=records, unknown=unknown))
    return [_added([f[j] for f in found]) for j in range(len(cuts))], dict(model.leaky_features_)


def _pick(result: dict[str, Any], key: str) -> Any:
    """Task: one entry of a task's result (where it lives)."""
    return result[key]


def _no_replay(pairs: list[tuple], n_stages: int) -> _Replay:
    """A replay of `pairs` with no deal (the index of `_horizon_sums`)."""
    none, empty = np.zeros(0, dtype=np.int64), np.zeros(0)
    return _Replay(pairs, none, empty, empty, empty, np.zeros((0, 0), dtype=np.int64), none, n_stages)


def _no_intervals(G: _Groups) -> IntervalCalibration:
    """The interval calibration with no earlier period replayed (the wide prior everywhere)."""
    none = np.zeros(0, np.int64)
    return IntervalCalibration(np.zeros(0), none, none, none, [], list(G.names))


def _added(values: list[Any]) -> Any:
    """The sum of the parts' values (arrays, numbers, or tuples and lists of them, element by element), in order."""
    return functools.reduce(added, values)


def backtest_parts(
    parts: Sequence[Any],
    process: Any,
    as_of: Any,
    submissions: pd.DataFrame,
    methods: Sequence[str] | None = None,
    period: str = "quarter",
    cutoffs: str | Sequence[Any] = "weekly",
    groups: Sequence[str] | None = None,
    *,
    periods: Sequence[str] | int | None = None,
    refit: str = "period",
    n_sims: int = 1000,
    shock: float | str = "auto",
    new_deal_periods: int = 4,
    segment: str | None = "segment",
    calibrate_periods: int = 8,
    calibrate_prior: float = 0.5,
    bias_weeks: float = 4,
    min_history_days: float | None = None,
    seed: int = 0,
    close_unknown_before: Any = None,
    tasks: Any = None,
    return_samples: bool = False,
    opportunity_params: dict[str, Any] | None = None,
    unknown: Mapping[str, Any] | None = None,
) -> Any:
    """`backtest` over deals split into parts, each part read where it lives (the methods of `PARTITIONED_METHODS`).

    Each part (its opportunities with all their history: a partition of `salesforecast.scale`) rebuilds its own
    pipeline at every cutoff and computes its sums: won to date, actuals, new deals, the CRM-weighted and the
    stage-conversion expected bookings per group, the sums behind the horizon calibration, the shock and the
    interval calibration, and (asked for) the bookings of the trailing and of every closed period, each owner's
    bookings of the closed periods (the reps' commit bias) and each owner's latest deal (the team of a call that
    names none). The client adds them and reads the reps' calls itself (``submissions``); the stage-conversion model
    is learned from every part (`StageConversionModel.fit_parts`: the censored visits, one per open deal at most,
    are the only per-visit rows that travel, as cell, duration and weight), and the Monte Carlo draws each part's
    deals under a shock and a past period of new deals drawn once (the scheme of
    `salesforecast.simulation.simulate_bookings_parts`: `part_streams`, `draw_part`, `bookings_from_parts`).

    Parameters
    ----------
    parts : sequence
        Per part, its `CRMData` (opportunities and their stage history), the handle `tasks` has for it, or a
        function of no argument that reads it (called where the part's tasks run: then nothing holds the tables
        once the part's context is built, `salesforecast.scale.partitioned_backtest`).
    process : SalesProcess
        The process map (its calendar sets the periods).
    as_of : date
        The whole data's ``as_of``.
    submissions : pandas.DataFrame
        The forecast submissions (their teams and owners are group values, as in `backtest`).
    methods : sequence of str, optional
        Among `PARTITIONED_METHODS` (default: `PIPELINE_METHODS`).
    period, cutoffs, groups, periods, refit, n_sims, shock, new_deal_periods, segment, calibrate_periods, \
calibrate_prior, bias_weeks, min_history_days, seed
        As `backtest`.
    close_unknown_before : int, optional
        The whole's `DealHistory.close_unknown_before` (microseconds; `NAT` when its history records close dates).
        Default: each part's own rule.
    tasks : optional
        Where the parts' tasks run (`salesforecast._utils.LocalTasks`, the default, or
        `salesforecast.scale.DaskTasks`).
    return_samples : bool
        As `backtest`: also the Monte Carlo's simulated futures per cutoff (the sums of the parts' draws).
    opportunity_params : dict, optional
        As `backtest`: the settings of the opportunity score's model, fitted over the parts at each refit date
        (`OpportunityScoringModel.fit_parts`: the whole's model) and scoring each part's pipeline where it lives.
    unknown : mapping, optional
        The whole's `salesforecast.snapshots.unknown_before` per field (what the opportunity score's features
        follow; `salesforecast.scale.PartitionedCRM.unknown_before`). Default: each part's own.

    Returns
    -------
    pandas.DataFrame or (pandas.DataFrame, dict)
        As ``backtest(data, methods, ...)`` of the whole data: the same rows. Every method but ``monte_carlo``
        equal to the order of floating-point sums (1e-9 relative); ``monte_carlo``'s futures are drawn per part
        (see `simulate_bookings_parts`), so its mean and P10/P50/P90 agree within Monte Carlo error, not to the
        last digit, and are the same for a given number of parts and seed.
    """
    tasks = LocalTasks() if tasks is None else tasks
    _check_backtest(period, refit, n_sims, shock)
    chosen = _check_methods(PIPELINE_METHODS if methods is None else methods, None)
    others = [m.name for m in chosen if m.name not in PARTITIONED_METHODS]
    if others:
        raise ValueError(
            f"methods: {others[0]!r} does not run over partitions yet, only {list(PARTITIONED_METHODS)}; "
            "replay it with backtest(data) on one machine"
        )
    asked = ["total", "team", "owner"] if groups is None else groups
    meta = tasks.gather(tasks.map(_part_meta, parts, groups=[asked] if isinstance(asked, str) else list(asked)))
    columns = meta[0]["columns"]
    groups = _groupings(groups, columns)
    found = _group_values(pd.DataFrame(columns=columns), submissions, groups)  # checks the columns; submissions'
    for m in meta:
        for g, values in m["values"].items():
            found[g] |= values
    firsts = [pd.Timestamp(m["first"]) for m in meta if pd.notna(m["first"])]
    if not firsts:
        raise ValueError("backtest: no opportunity in any part: nothing to replay")
    first = min(firsts)
    G = _groups_of(groups, found)
    cal = _Periods(process.calendar, period, G, first.normalize(), pd.Timestamp(as_of).normalize() + _DAY)
    plan = _plan(cal, cutoffs, periods, _history_days(cal, min_history_days))
    needs = frozenset().union(*(m.needs for m in chosen))
    needs_sc, needs_new = "stage_conversion model" in needs, "new deals" in needs
    monte_carlo = "period shock" in needs
    calibration, snap_dates = _refits(cal, plan, refit, needs, calibrate_periods, shock)
    dates = list(to_dates(list(snap_dates)))

    # every part's context (its pipeline at every date), kept where the part lives
    whole = _Whole(G, cal.first_day, cal.end, close_unknown_before)
    seg = segment if segment is not None and segment in columns else None
    # a call without a team takes its rep's team then: their latest deal's, over every part
    teams = (
        "submissions" in needs
        and "team" in columns
        and ("team" not in submissions.columns or bool(submissions["team"].isna().any()))
    )
    scores = "opportunity score" in needs
    keep = ([seg] if seg else []) + (_LATEST_DEAL if teams else []) + (["opportunity_id", "owner"] if scores else [])
    ctxs = tasks.map(_part_context, parts, period=period, whole=whole, dates=dates, keep=keep)
    n_open = _added(tasks.gather(tasks.map(_part_open, ctxs, dates=dates)))
    open_at = {pd.Timestamp(t): int(n) > 0 for t, n in zip(dates, n_open, strict=True)}

    def has_snap(t: Any) -> bool:
        return open_at.get(pd.Timestamp(t), False)

    histories = tasks.map(_part_history, ctxs) if needs_sc else None
    names = {m.name for m in chosen}
    chunks = list(plan.groupby(["period", "refit_at"], sort=True))

    def replay(chunk_at: tuple) -> tuple[list[tuple], list[tuple], list[dict[str, Any]], tuple[Any, list[tuple]], dict]:
        """One period (and refit date): its rows, the CRM-weighted forecast's left-out pipeline, its interval notes.

        With its bookings series and the rows the bookings-history models fill after the threads, and the Monte
        Carlo's futures per cutoff when `return_samples`.
        """
        (label, refit_at), chunk = chunk_at
        frames: list[tuple] = []
        left_out: list[tuple] = []
        notes = copy.copy(cal)  # the calendar, with this period's own interval notes
        notes.interval_notes = []
        later: list[tuple[np.ndarray, str]] = []  # the bookings-history models' rows, filled after the threads
        kept: dict[tuple[pd.Timestamp, str], np.ndarray] = {}
        s, e = pd.Timestamp(chunk["start"].iloc[0]), pd.Timestamp(chunk["end"].iloc[0])
        refit_at = pd.Timestamp(refit_at)
        model, factors, shock_sd, intervals = None, {}, 0.0, None
        if needs_sc:
            try:
                model = StageConversionModel(n_bootstrap=0, segment=seg).fit_parts(
                    histories, process, refit_at, tasks=tasks
                )
            except ValueError:
                model = None  # no stage history yet: the methods are missing for this period
        pairs = calibration.get((label, refit_at))
        used = [pair for pair in (pairs or []) if has_snap(pair[4])]
        fitted = tasks.map(_part_refit, ctxs, model=model, refit_at=refit_at, pairs=used)
        if model is not None:
            shock_periods = _shock_periods(cal, refit_at, has_snap) if monte_carlo and shock == "auto" else []
            sums = tasks.gather(
                tasks.map(
                    _part_refit_sums,
                    fitted,
                    ctxs,
                    shock_periods=shock_periods,
                    refit_at=refit_at,
                    n_new=new_deal_periods,
                )
            )
            horizon = None
            if used:
                # the index of the sums (periods, horizons, each pair's) and the pairs per cell from the pairs alone;
                # every part replayed the same pairs (all_pairs), so their sums share it
                index = _horizon_sums(_no_replay(used, len(process.open_stages)))
                x, y, booked, quoted = _added([part_sums for part_sums, _ in sums])
                horizon = index._replace(x=x, y=y, booked=booked, quoted=quoted)
                factors = _factors_of(horizon, calibrate_prior)
            if monte_carlo:
                if shock != "auto":
                    shock_sd = float(shock)
                elif shock_periods:
                    shock_sd = _shock_from(_added([terms for _, terms in sums]))
                if pairs is not None:
                    intervals = _no_intervals(G)
                    if horizon is not None:
                        factor = horizon.factor(calibrate_prior, leave_out=horizon.pair_p, at=horizon.pair_h)
                        x, var, actual, floor, nds = _added(
                            tasks.gather(
                                tasks.map(
                                    _part_calibration_terms,
                                    fitted,
                                    ctxs,
                                    factor=factor,
                                    refit_at=refit_at,
                                    n_new=new_deal_periods,
                                )
                            )
                        )
                        moments = [_new_deal_moments(nd, G.size) for nd in nds]
                        intervals = _calibration_scores(G, used, shock_sd, x, var, actual, floor, moments)
        bias, fallback = None, 1.0
        if "submission bias" in needs:  # each rep's commit bias from the reps' bookings, added over the parts
            closed = cal.past_periods(refit_at, 0)
            found = tasks.gather(tasks.map(_part_booked, ctxs, as_of=refit_at, closed=closed))
            table = _bias_fit(submissions, cal, closed, _booked_sum(found, closed), refit_at, "commit", bias_weeks)
            bias, fallback = _bias_and_fallback(table)
        cuts = [pd.Timestamp(t) for t in chunk["cutoff"]]
        scored, leak = None, ""
        if scores:  # the opportunity score: the whole's model, each part's pipeline scored where it lives
            scored, leaky = _scored_parts(
                parts, ctxs, cal, refit_at, cuts, opportunity_params, process, as_of, unknown, tasks
            )
            leak = _leak_text(leaky)
        draw = model is not None and "monte_carlo" in names
        rngs = [_seed(seed, t, 1) for t in cuts] if draw else []
        streams = [part_streams(shock_sd, n_sims, rng, len(parts)) for rng in rngs]
        per_part = [[(shock_t, seeds[i]) for shock_t, seeds in streams] if draw else None for i in range(len(parts))]
        done = tasks.map(
            _part_cutoffs,
            fitted,
            ctxs,
            per_part,
            cuts=cuts,
            start=s,
            end=e,
            factors=factors,
            n_new=new_deal_periods,
            crm="crm_weighted" in names,
            new=needs_new,
            history="bookings history" in needs,
            teams=teams,
        )
        results = tasks.gather(tasks.map(_pick, done, key="sums"))
        drawn = tasks.sum(tasks.map(_pick, done, key="draws")) if draw else None  # (cutoffs, groups, futures)
        del done
        actual = _added([r["actual"] for r in results])
        series = _added([r["series"] for r in results]) if "bookings history" in needs else None
        for j, t in enumerate(cuts):
            at = [r["cuts"][j] for r in results]
            won = _added([r["won"] for r in at])
            nd = _added([r["new"] for r in at]) if needs_new else np.zeros((0, G.size))
            days = (e - t) / _DAY
            if "crm_weighted" in names:
                left_out.append((t, *_added([r["left_out"] for r in at])))
            owner_team = partial(_teams_of, [r.get("latest") for r in at])  # the parts' latest deals (with teams)

            for m in chosen:
                fc = np.full((G.size, 4), np.nan)
                expected = None
                if m.name in _CALL_CATEGORY or m.name == "bias_corrected_commit":
                    calls = _calls_at(submissions, label, _CALL_CATEGORY.get(m.name, "commit"), t, owner_team)
                    values = calls["amount"].to_numpy("float64") if len(calls) else np.zeros(0)
                    if m.name == "bias_corrected_commit" and len(calls):
                        values = _corrected(calls, bias, fallback)
                    summed = _sum_calls(G, calls, values)
                    if summed is not None:
                        fc[:, 0] = summed
                elif m.name == "crm_weighted":
                    fc[:, 0] = won + _added([r["crm"] for r in at])
                elif m.name == "run_rate":
                    if "trailing" in at[0]:  # as `_run_rate`: the trailing period's bookings per day x the days left
                        per_day = _added([r["trailing"] for r in at]) / ((e - s) / _DAY)
                        fc[:, 0] = won + per_day * ((e - t) / _DAY)
                elif series is not None and m.name in ("ets", "seasonal_naive"):
                    later.append((fc, m.name))  # fitted after the threads (`_ets_of` is not thread-safe)
                elif model is not None and m.name == "stage_conversion":
                    fc[:, 0] = _expected(G, won, _added([r["stage"] for r in at]), nd)
                elif scored is not None and m.name == "opportunity_score":
                    fc[:, 0] = _expected(G, won, scored[j], nd)
                elif model is not None and m.name == "monte_carlo":
                    expected = _expected(G, won, _added([r["stage"] for r in at]), nd)
                    sims = bookings_from_parts([drawn[j]], G.size, won, nd, int(n_sims), rngs[j])
                    widen = None if intervals is None else _widening(notes, label, t, e, intervals)
                    mean, quants, futures = _summarise(sims, won, widen, _QUANTILES, return_samples)
                    fc[:, 0], fc[:, 1:] = mean, quants
                    if return_samples:
                        kept[(t, m.name)] = futures
                leaked = leak if "opportunity score" in m.needs else ""
                frames.append((label, t, days, m.name, fc, actual, leaked, expected))
        return frames, left_out, notes.interval_notes, (series, later), kept

    # periods are independent: several in flight at once (`tasks.concurrency`) hide the cluster's round trips
    at_once = max(1, min(int(getattr(tasks, "concurrency", 1)), len(chunks)))
    if at_once > 1:
        pool = ThreadPoolExecutor(max_workers=at_once)
        try:
            done_periods = list(pool.map(replay, chunks))
        finally:  # a period that failed: the periods not started yet are not run
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        done_periods = [replay(c) for c in chunks]
    frames, left_out, samples = [], [], {}
    for period_frames, period_left_out, period_notes, (series, later), kept in done_periods:  # in the periods' order
        frames += period_frames
        samples.update(kept)
        left_out += period_left_out
        cal.interval_notes += period_notes
        # the ETS and the seasonal naive fitted here, in one thread: their fits set warning filters, process-wide
        prepared = {m: _ets_of(cal, series, m, _QUANTILES) for m in sorted({name for _, name in later})}
        for fc, name in later:
            fc[:] = prepared[name]
    out = _assemble(frames, G, return_samples, samples)
    if left_out:
        table = pd.DataFrame(left_out, columns=["cutoff", "open_amount", "undated_amount", "undated_deals"])
        (out[0] if return_samples else out).attrs["crm_weighted_left_out"] = _left_out_shares(table)
        _warn_left_out(table)
    _warn_leakage(out[0] if return_samples else out)
    return _interval_notes(out, cal)


@dataclass
class PeriodForecast:
    """Every method's forecast of one period at one date (`forecast_period`).

    Attributes
    ----------
    period : str
    as_of : pandas.Timestamp
        The forecast date (the cutoff).
    table : pandas.DataFrame
        The `backtest` rows of this cutoff (``actual`` is missing while the period is open).
    samples : numpy.ndarray
        Simulated bookings (``monte_carlo``) of the first group value (the company total with the default groups).
    won_to_date : float
        Closed won by `as_of` with a close date in the period, for that group value.
    note : str
        A sentence for the reader when the period forecast is not the one containing the report date (that one had
        ended: `forecast_period`), "" otherwise.
    ended : str
        That ended period ("" when the period forecast contains the report date).
    ended_actual : float
        Its closed-won bookings, the company total (NaN when no period ended).
    """

    period: str
    as_of: pd.Timestamp
    table: pd.DataFrame
    samples: np.ndarray
    won_to_date: float
    note: str = ""
    ended: str = ""
    ended_actual: float = math.nan

    def point(self, method: str) -> float:
        """The first group value's point forecast of `method` (NaN when it has none)."""
        rows = self.table.loc[self.table["method"] == method, "forecast"]
        return float(rows.iloc[0]) if len(rows) else math.nan


def forecast_period(
    data: CRMData,
    as_of: Any = None,
    period: str = "current",
    freq: str = "quarter",
    methods: Sequence[str] | None = None,
    groups: Sequence[str] = ("total",),
    **kwargs: Any,
) -> PeriodForecast:
    """Forecast one period at one date with every method, with the Monte Carlo distribution of its bookings.

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        The forecast date (default: the data end). Only what was known then is used.
    period : str
        A period label, or ``"current"``: the period containing `as_of`, unless it has ended by then. A period ends
        with its last day, and the report date's day counts whole (as in `data_end`, and as a report's date reads
        its data): on a quarter's last day (or at the next one's first instant) the quarter is over, its bookings
        are known and the `backtest` scores it as closed. Forecasting it then would only repeat what was won, so
        "current" is the next period, forecast from its first day, and `PeriodForecast.note` says so with the ended
        period's closed-won bookings (a RevOps analyst on the last day of a quarter asks where the next one lands).
    freq : {"month", "quarter", "year"}
    methods, groups, **kwargs
        As for `backtest`.

    Returns
    -------
    PeriodForecast

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> fc = forecast_period(load_sample(), as_of="2025-05-15", methods=["crm_weighted", "monte_carlo"], n_sims=200)
    >>> fc.period, len(fc.samples), bool(fc.won_to_date <= fc.point("monte_carlo"))
    ('FY2025Q2', 200, True)
    """
    as_of = data_end(data) if as_of is None else pd.Timestamp(as_of)
    ctx = _Context(data, freq, groups)
    lo, hi = ctx.groups.offsets[0], ctx.groups.offsets[1]  # every grouping sums to the company total
    label, t, s, e, note, ended, ended_actual = _period_at(
        data.process.calendar,
        period,
        freq,
        as_of,
        data_end(data),
        lambda s, e: float(np.nansum(ctx.actual(s, e)[lo:hi])),
    )
    chosen = _check_methods(methods, kwargs.get("truth"))
    token = _FORECASTING.set(label)  # its warnings speak of this period, not of replayed ones
    try:
        table, samples = backtest(
            data,
            methods=[m.name for m in chosen],
            period=freq,
            cutoffs=[t],
            groups=groups,
            periods=[label],
            return_samples=True,
            **kwargs,
        )
    finally:
        _FORECASTING.reset(token)
    first = table.iloc[0]  # the group value the samples and point forecasts are of
    frame = ctx.groups.frame()
    code = np.flatnonzero(
        (frame["group"] == first["group"]).to_numpy() & (frame["group_value"] == first["group_value"]).to_numpy()
    )[0]
    won = float(ctx.won_known(t, s, e)[code])
    return _period_forecast(label, t, table, samples, won, note, ended, ended_actual)


def _period_at(
    cal: Any, period: str, freq: str, as_of: pd.Timestamp, end: pd.Timestamp, actual: Any
) -> tuple[str, pd.Timestamp, pd.Timestamp, pd.Timestamp, str, str, float]:
    """The period `forecast_period` forecasts at `as_of`: its label, the forecast date, its bounds and its note.

    `end` is the data end; ``actual(start, end)`` the company's closed-won bookings of a period (asked for only
    when the current period had ended: its note states them). Also the ended period's label and bookings.
    """
    current = str(period).strip().lower() in ("current", "latest", "")
    # at a period's first instant, the period containing as_of is the one that just ended (an exclusive data end)
    label = cal.resolve(period, as_of - pd.Timedelta(microseconds=1) if current else as_of, freq)
    s, e = cal.period_bounds(label)
    note, ended, ended_actual = "", "", math.nan
    day_end = as_of.normalize() + _DAY  # the report date's day counts whole
    if current and e <= min(day_end, end):  # the period had ended: forecast the next one from its start
        ended, ended_actual = label, float(actual(s, e))
        label = cal.resolve(period, e, freq)
        s, e = cal.period_bounds(label)
        as_of = s
        note = (
            f"{ended} ended on {s - _DAY:%Y-%m-%d}, by the report date: its bookings are known ({ended_actual:,.0f} "
            f"closed won), so the forecast is of the next {freq}, {label}, from its first day ({s:%Y-%m-%d})."
        )
    if s > as_of:
        raise ValueError(
            f"forecast_period: {label} starts after as_of {as_of:%Y-%m-%d}; the methods forecast a period from a date "
            "inside it (use the current period, or as_of within the period)"
        )
    return label, min(as_of, e - pd.Timedelta(microseconds=1)), s, e, note, ended, ended_actual


def _period_forecast(
    label: str, t: pd.Timestamp, table: pd.DataFrame, samples: dict, won: float, note: str, ended: str, actual: float
) -> PeriodForecast:
    sims = samples.get(pd.Timestamp(t))
    return PeriodForecast(
        period=label,
        as_of=pd.Timestamp(t),
        table=table,
        samples=sims[0] if sims is not None and len(sims) else np.zeros(0),
        won_to_date=won,
        note=note,
        ended=ended,
        ended_actual=actual,
    )


def _part_totals(
    part: Any, freq: str, whole: _Whole, t: pd.Timestamp | None, s: pd.Timestamp, e: pd.Timestamp
) -> float:
    """Task: the part's closed-won bookings of ``[s, e)`` as known at `t` (None: the period's outcome)."""
    ctx = _Context(read_part(part), freq, ("total",), whole=whole)
    return float(np.nansum(ctx.actual(s, e) if t is None else ctx.won_known(t, s, e)))


def _whole_total(
    parts: Sequence[Any], process: Any, as_of: Any, freq: str, close_unknown_before: Any, tasks: Any
) -> tuple[_Whole, _Periods]:
    """The whole's rules for contexts of the company total only, and its periods (a step over the parts)."""
    meta = tasks.gather(tasks.map(_part_meta, parts, groups=["total"]))
    firsts = [pd.Timestamp(m["first"]) for m in meta if pd.notna(m["first"])]
    if not firsts:
        raise ValueError("no opportunity in any part: nothing to forecast")
    G, end = _groups_of(["total"], {}), pd.Timestamp(as_of).normalize() + _DAY
    whole = _Whole(G, min(firsts).normalize(), end, close_unknown_before)
    return whole, _Periods(process.calendar, freq, G, whole.first_day, end)


def _part_booked_at(part: Any, freq: str, whole: _Whole, as_of: pd.Timestamp, closed: list[str]) -> dict:
    """Task: the part's `_booked`, its context (the company total's) built here."""
    return _booked(_Context(read_part(part), freq, ("total",), whole=whole), as_of, closed)


def _booked_sum(found: list[dict[str, pd.Series]], closed: list[str]) -> dict[str, pd.Series]:
    """The parts' `_booked` added: each owner's bookings of each closed period."""
    return {p: pd.concat([f[p] for f in found]).groupby(level=0, sort=True).sum() for p in closed}


def submission_bias_parts(
    parts: Sequence[Any],
    process: Any,
    as_of: Any,
    submissions: pd.DataFrame,
    report_as_of: Any = None,
    period: str = "quarter",
    category: str = "commit",
    weeks: float = 4,
    *,
    close_unknown_before: Any = None,
    tasks: Any = None,
) -> pd.DataFrame:
    """`submission_bias` over deals split into parts: each owner's bookings added over the parts, the fit here.

    Parameters
    ----------
    parts, process, as_of, submissions, close_unknown_before, tasks
        As `backtest_parts`.
    report_as_of : date, optional
        `submission_bias`'s `as_of` (default: the data end).
    period, category, weeks
        As `submission_bias`.

    Returns
    -------
    pandas.DataFrame
        As ``submission_bias`` of the whole data (its sums in another order: equal to 1e-9).
    """
    tasks = LocalTasks() if tasks is None else tasks
    whole, cal = _whole_total(parts, process, as_of, period, close_unknown_before, tasks)
    at = cal.end if report_as_of is None else pd.Timestamp(report_as_of)
    closed = cal.past_periods(at, 0)
    found = tasks.gather(tasks.map(_part_booked_at, parts, freq=period, whole=whole, as_of=at, closed=closed))
    return _bias_fit(submissions, cal, closed, _booked_sum(found, closed), at, category, weeks)


def forecast_period_parts(
    parts: Sequence[Any],
    process: Any,
    as_of: Any,
    submissions: pd.DataFrame,
    report_as_of: Any = None,
    period: str = "current",
    freq: str = "quarter",
    methods: Sequence[str] | None = None,
    groups: Sequence[str] = ("total",),
    *,
    close_unknown_before: Any = None,
    tasks: Any = None,
    **kwargs: Any,
) -> PeriodForecast:
    """`forecast_period` over deals split into parts (`backtest_parts` at one cutoff).

    Parameters
    ----------
    parts, process, as_of, submissions, close_unknown_before, tasks
        As `backtest_parts` (`as_of`: the whole data's).
    report_as_of : date, optional
        The forecast date (default: the data end).
    period, freq, methods, groups, **kwargs
        As `forecast_period` (`methods` among `PARTITIONED_METHODS`; default: every one of them the data can feed);
        `groups` must begin with ``"total"`` (``won_to_date`` and the samples are the company's).

    Returns
    -------
    PeriodForecast
        As ``forecast_period`` of the whole data (``monte_carlo`` within Monte Carlo error: see `backtest_parts`).
    """
    tasks = LocalTasks() if tasks is None else tasks
    groups = list(groups)
    if not groups or groups[0] != "total":
        raise ValueError(f"forecast_period_parts: groups must begin with 'total', got {groups}")
    whole, cal = _whole_total(parts, process, as_of, freq, close_unknown_before, tasks)
    end = cal.end
    at = end if report_as_of is None else pd.Timestamp(report_as_of)

    def total(t: pd.Timestamp | None, s: pd.Timestamp, e: pd.Timestamp) -> float:
        return float(sum(tasks.gather(tasks.map(_part_totals, parts, freq=freq, whole=whole, t=t, s=s, e=e))))

    label, t, s, e, note, ended, ended_actual = _period_at(
        process.calendar, period, freq, at, end, lambda s, e: total(None, s, e)
    )
    names = list(PARTITIONED_METHODS) if methods is None else list(methods)
    token = _FORECASTING.set(label)  # its warnings speak of this period, not of replayed ones
    try:
        table, samples = backtest_parts(
            parts,
            process,
            as_of,
            submissions,
            names,
            period=freq,
            cutoffs=[t],
            groups=groups,
            periods=[label],
            close_unknown_before=close_unknown_before,
            tasks=tasks,
            return_samples=True,
            **kwargs,
        )
    finally:
        _FORECASTING.reset(token)
    return _period_forecast(label, t, table, samples, total(t, s, e), note, ended, ended_actual)


#: Horizon bands of the leaderboard: label -> (fewest, most) whole weeks left in the period at the cutoff.
HORIZONS: dict[str, tuple[int, int]] = {
    "early (9+ weeks left)": (9, 10_000),
    "mid (5-8 weeks left)": (5, 8),
    "late (0-4 weeks left)": (0, 4),
}


def leaderboard(
    results: pd.DataFrame,
    group: str = "total",
    metrics: Sequence[str] = ("wape", "bias", "coverage", "hit_rate"),
    by: str = "weeks",
    ci: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy of every method by horizon, over a backtest's closed periods.

    Parameters
    ----------
    results : pandas.DataFrame
        `backtest` output.
    group : str
        The grouping evaluated (``"total"``, ``"team"``, ``"owner"``): every group value counts as one forecast.
    metrics : sequence of str
        Names of `salesforecast.metrics.evaluate` metrics (`salesforecast.metrics.METRICS`). Each metric
        uses the rows where it can be computed (an interval metric skips methods without quantiles).
    by : {"weeks", "band", "method"}
        One row per (whole weeks left at the cutoff, method), per (`HORIZONS` band, method), or per method.
    ci : float, optional
        With a level such as 0.9, each WAPE gets an interval, ``wape_low`` and ``wape_high`` (when ``"wape"`` is
        among `metrics`): a bootstrap over the replayed periods (`bootstrap_wape`), so that a reader sees how much
        a method's error owes to which periods happened to be replayed, and `recommend` can call a tie a tie.
    n_boot, seed : int
        Bootstrap resamples and their seed (the same seed gives the same intervals).

    Returns
    -------
    pandas.DataFrame
        ``weeks_before_end`` or ``horizon`` (in time order, earliest first) then ``method``, ``n`` (forecasts with a
        value and an actual) and one column per metric; within a horizon, methods sorted by the first metric, best
        first (in the metric's direction in `salesforecast.metrics.METRICS`). ``attrs["metrics"]`` names the metric
        columns (report tables format them by their units: `salesforecast.reports.format_table`). When the results
        have a ``leakage`` column (`backtest`), a ``trust`` column: `NOT_TRUSTED` for a method whose model relied on
        features flagged as leakage in any period scored (its accuracy is likely flattering), "" otherwise.
    """
    if by not in ("weeks", "band", "method"):
        raise ValueError(f"by must be 'weeks', 'band' or 'method', got {by!r}")
    rows = results.loc[(results["group"] == group) & results["actual"].notna() & results["forecast"].notna()].copy()
    if len(rows) == 0:
        raise ValueError(f"leaderboard: no forecast of a closed period for group {group!r} in the results")
    weeks = np.floor(rows["days_before_period_end"].to_numpy() / 7).astype(np.int64)
    keys: list[str] = ["method"]
    if by == "weeks":
        rows["weeks_before_end"] = weeks
        keys = ["weeks_before_end", "method"]
    elif by == "band":
        band = np.full(len(rows), "", dtype=object)
        for label, (lo, hi) in HORIZONS.items():
            band[(weeks >= lo) & (weeks <= hi)] = label
        rows["horizon"] = pd.Categorical(band, categories=list(HORIZONS), ordered=True)
        keys = ["horizon", "method"]
    parts = []
    for metric in metrics:  # each metric on its own usable rows (an interval metric needs quantiles)
        part = evaluate(rows, metrics=[metric], by=keys).set_index(keys)
        parts.append(part[[metric]] if parts else part[["n", metric]])
    board = pd.concat(parts, axis=1).reset_index()
    first = metrics[0]
    board["_k"] = _rank_key(first, board[first])
    if by == "method":
        board = board.sort_values("_k", kind="stable")
    else:  # horizons in time order (most weeks left first), best method first within each
        board = board.sort_values([keys[0], "_k"], ascending=[by == "band", True], kind="stable")
    board = board.drop(columns="_k").reset_index(drop=True)
    if "leakage" in rows.columns:
        leaky = set(rows.loc[rows["leakage"].fillna("").astype("str") != "", "method"])
        board["trust"] = np.where(board["method"].isin(leaky), NOT_TRUSTED, "")
        board["trust"] = board["trust"].astype("str")
    if ci is not None and "wape" in metrics:
        bounds = bootstrap_wape(rows, keys, ci=ci, n_boot=n_boot, seed=seed)
        board = board.merge(bounds, on=keys, how="left", validate="one_to_one")
        point = board["wape"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):  # a percentile interval may miss its point: widen it to hold it
            board["wape_low"] = np.fmin(board["wape_low"].to_numpy(dtype=float), point)
            board["wape_high"] = np.fmax(board["wape_high"].to_numpy(dtype=float), point)
        board.attrs["ci"] = float(ci)
    board.attrs["metrics"] = list(metrics)
    board.attrs["periods"] = sorted(str(p) for p in rows["period"].unique())
    return board


def bootstrap_wape(
    rows: pd.DataFrame, keys: Sequence[str], ci: float = 0.9, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """A percentile-bootstrap interval for the WAPE of each cell of `keys`, resampling whole periods.

    The forecasts of one period share its surprises (a quarter's big deal slips for every method at every cutoff),
    so the unit resampled is the period: each of `n_boot` resamples draws the replayed periods with replacement and
    recomputes every cell's WAPE, sum|forecast - actual| / sum|actual|, over the periods drawn. The draws are the
    same for every cell (a paired bootstrap), from ``numpy.random.default_rng(seed)``: the same rows and seed give
    the same intervals.

    Parameters
    ----------
    rows : pandas.DataFrame
        Scored forecasts: columns ``period``, ``forecast``, ``actual`` and `keys`.
    keys : sequence of str
        The cells (e.g. ``["weeks_before_end", "method"]``).
    ci : float
        Level of the interval, in (0, 1).
    n_boot : int
        Resamples (at least 100).
    seed : int

    Returns
    -------
    pandas.DataFrame
        `keys`, ``wape_low`` and ``wape_high`` (NaN where no resample has a nonzero actual).

    Examples
    --------
    >>> rows = pd.DataFrame({"period": ["a", "b", "c", "d"], "method": "m", "forecast": [90.0, 120, 100, 70],
    ...                      "actual": [100.0, 100, 100, 100]})
    >>> bootstrap_wape(rows, ["method"], ci=0.9, seed=1).round(3).values.tolist()
    [['m', 0.075, 0.25]]
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), e.g. 0.9, got {ci}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    keys = list(keys)
    missing = [c for c in ("period", "forecast", "actual", *keys) if c not in rows.columns]
    if missing:
        raise ValueError(f"bootstrap_wape needs column(s) {missing}; the rows have {list(rows.columns)}")
    periods = sorted(rows["period"].astype("str").unique())
    n_periods = len(periods)
    data = rows[keys].copy()
    data["_p"] = pd.Categorical(rows["period"].astype("str"), categories=periods)
    actual = rows["actual"].to_numpy(dtype=float)
    data["_e"] = np.abs(rows["forecast"].to_numpy(dtype=float) - actual)
    data["_a"] = np.abs(actual)
    sums = data.groupby([*keys, "_p"], observed=True, sort=True)[["_e", "_a"]].sum()
    err = sums["_e"].unstack("_p").reindex(columns=periods).fillna(0.0)  # a period a cell lacks weighs nothing
    act = sums["_a"].unstack("_p").reindex(columns=periods).fillna(0.0)
    cells = err.index
    err, act = err.to_numpy(dtype=float), act.to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_periods, size=(n_boot, n_periods))
    weight = np.stack([np.bincount(d, minlength=n_periods) for d in draws]).astype(float)  # (n_boot, periods)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (err @ weight.T) / (act @ weight.T)  # (cells, n_boot)
    boot[~np.isfinite(boot)] = np.nan
    tail = (1.0 - ci) / 2.0
    out = cells.to_frame(index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell without any actual: NaN bounds
        out["wape_low"] = np.nanquantile(boot, tail, axis=1)
        out["wape_high"] = np.nanquantile(boot, 1.0 - tail, axis=1)
    return out


def recommend(board: pd.DataFrame, metric: str = "wape", exclude: Sequence[str] = ("oracle",)) -> pd.DataFrame:
    """The most accurate method at each horizon of a `leaderboard`, with a sentence a reader can act on.

    "Most accurate" by `metric`, in its direction in `salesforecast.metrics.METRICS`: the smallest error (WAPE,
    MAPE, MASE, pinball...), the bias nearest 0, the coverage nearest 80%, the forecast ratio nearest 1, the highest
    hit rate or absolute accuracy. A method the leaderboard marks `NOT_TRUSTED` (leakage) is never named.

    A leaderboard scored on fewer than `FEW_PERIODS` replayed periods (its ``attrs["periods"]``) holds too few
    independent outcomes to tell methods apart: each advice then says on how many periods it rests, and a
    `ForecastWarning` says that a method's lead may be chance.

    Returns
    -------
    pandas.DataFrame
        One row per horizon: the horizon column, ``best`` (the method with the best value), the metric value,
        ``runner_up``, ``tie`` and ``advice``; ``attrs["metrics"]`` names the metric column (report tables format
        it by its units). ``tie`` is True when the data cannot tell the best from the runner-up: their values are
        equal as shown (16.1% vs 16.1%), or, when the leaderboard has intervals (``leaderboard(..., ci=0.9)``),
        each value lies inside the other's interval. The advice then names no winner ("16.1% vs 16.1%: a tie
        within the intervals ..."); otherwise it says which method to trust, with its interval. Methods appear
        under their `METHODS` labels.

    Warns
    -----
    ForecastWarning
        When the leaderboard rests on fewer than `FEW_PERIODS` replayed periods.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid names: {', '.join(METRICS)}")
    fmt = METRICS[metric].format
    horizon = next((c for c in ("horizon", "weeks_before_end") if c in board.columns), None)
    b = board.loc[~board["method"].isin(exclude) & board[metric].notna()]
    if "trust" in b.columns:
        b = b.loc[b["trust"].fillna("").astype("str") != NOT_TRUSTED]
    periods = board.attrs.get("periods")
    few = ""
    if periods is not None and len(periods) < FEW_PERIODS:
        n = len(periods)
        few = f"{n} replayed period{'s' if n != 1 else ''} only"
        chance = min(2 * 0.5**n, 1.0)
        warnings.warn(
            f"The recommended forecast methods rest on {n} replayed period{'s' if n != 1 else ''} "
            f"({', '.join(periods)}): with fewer than {FEW_PERIODS}, a method's lead may be chance (of two equally "
            f"good methods, one is better in every one of {n} period{'s' if n != 1 else ''} {chance:.0%} of the "
            "time). Read the recommendation as a first impression, and replay more periods when the data allow.",
            ForecastWarning,
            stacklevel=2,
        )
    rows = []
    label = METRICS[metric].label
    low, high = f"{metric}_low", f"{metric}_high"
    level = board.attrs.get("ci")
    has_ci = low in b.columns and high in b.columns
    groups = b.groupby(horizon, sort=False, observed=True) if horizon else [("all", b)]
    for h, part in groups:
        ranked = part.sort_values(metric, key=lambda v: _rank_key(metric, v), kind="stable")
        if len(ranked) == 0:
            continue
        best = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        tie = second is not None and _is_tie(best, second, metric, low, high, has_ci)

        def shown(row: pd.Series, named: bool = True) -> str:
            text = fmt(row[metric])
            if has_ci and np.isfinite(row[low]) and np.isfinite(row[high]):
                interval = f"{level:.0%} interval " if level is not None else "interval "
                text += f", {interval}{fmt(row[low])}–{fmt(row[high])}"
            return f"{method_label(row['method'])} ({label} {text})" if named else f"({text})"

        if tie:
            advice = (
                f"{fmt(best[metric])} vs {fmt(second[metric])}: a tie within the intervals between "
                f"{shown(best)} and {shown(second)}; neither is the more accurate on these periods"
            )
        else:
            advice = f"trust {shown(best)}"
            if second is not None:
                advice += f"; next {method_label(second['method'])} {shown(second, named=False)}"
        if few:
            advice += f" (from {few}: the lead may be chance)"
        rows.append(
            {
                horizon or "horizon": h,
                "best": best["method"],
                metric: best[metric],
                "runner_up": None if second is None else second["method"],
                "tie": bool(tie),
                "advice": advice,
            }
        )
    out = pd.DataFrame(rows, columns=[horizon or "horizon", "best", metric, "runner_up", "tie", "advice"])
    out.attrs["metrics"] = [metric]
    return out


def method_label(name: object) -> str:
    """The name a reader sees for a method: its `METHODS` label, else the name as given.

    Examples
    --------
    >>> method_label("monte_carlo"), method_label("mine")
    ('Monte Carlo', 'mine')
    """
    method = METHODS.get(str(name))
    return method.label if method is not None else str(name)


def _is_tie(best: pd.Series, second: pd.Series, metric: str, low: str, high: str, has_ci: bool) -> bool:
    """Whether the data cannot tell `best` from `second`: equal as shown, or each inside the other's interval."""
    fmt = METRICS[metric].format
    if fmt(best[metric]) == fmt(second[metric]):
        return True
    if not has_ci:
        return False
    b, s = float(best[metric]), float(second[metric])
    b_lo, b_hi, s_lo, s_hi = (float(x) for x in (best[low], best[high], second[low], second[high]))
    if not all(np.isfinite([b_lo, b_hi, s_lo, s_hi])):
        return False
    return bool(b_lo <= s <= b_hi and s_lo <= b <= s_hi)


def featured_methods(
    board: pd.DataFrame, metric: str = "wape", n: int = 4, exclude: Sequence[str] = ("oracle",)
) -> list[str]:
    """The methods a chart shows by default: the trusted ones `recommend` names, at most `n`.

    In order: the best method of each horizon (as `recommend` ranks them, so never a method marked `NOT_TRUSTED`
    and never one of `exclude`), then the runners-up, then the submitted commit (the call a reader compares every
    forecast with) when it is scored, then the others by their mean rank over the horizons. The charts draw these
    plus the actuals: ``n=4`` keeps a chart at five series.

    Parameters
    ----------
    board : pandas.DataFrame
        A `leaderboard`.
    metric : str
        The metric that ranks (`salesforecast.metrics.METRICS`); when the board lacks it, its first metric column.
    n : int
        How many methods at most.
    exclude : sequence of str
        Methods never featured (the oracle knows the outcome).

    Returns
    -------
    list of str
        Method names, most worth showing first.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if metric not in board.columns:
        metric = next((m for m in board.attrs.get("metrics", ()) if m in board.columns), metric)
    if metric not in board.columns or metric not in METRICS:
        return [m for m in dict.fromkeys(board["method"].astype("str")) if m not in exclude][:n]
    b = board.loc[~board["method"].isin(exclude)]
    if "trust" in b.columns:
        b = b.loc[b["trust"].fillna("").astype("str") != NOT_TRUSTED]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)  # the charts need the names, not the warning again
        advice = recommend(b, metric=metric, exclude=exclude)
    chosen: list[str] = list(dict.fromkeys(advice["best"].dropna().astype("str"))) if len(advice) else []
    runners = advice["runner_up"].dropna().astype("str") if "runner_up" in advice.columns else []
    chosen = list(dict.fromkeys([*chosen, *runners]))
    if "submitted_commit" in set(b.loc[b[metric].notna(), "method"]) and "submitted_commit" not in chosen:
        chosen.append("submitted_commit")
    horizon = next((c for c in ("horizon", "weeks_before_end") if c in b.columns), None)
    scored = b.loc[b[metric].notna()].assign(_k=lambda t: _rank_key(metric, t[metric]))
    if horizon is not None:
        scored = scored.assign(_r=scored.groupby(horizon, observed=True)["_k"].rank(method="average"))
    else:
        scored = scored.assign(_r=scored["_k"].rank(method="average"))
    by_rank = scored.groupby("method", sort=False)["_r"].mean().sort_values(kind="stable")
    chosen += [str(m) for m in by_rank.index if str(m) not in chosen]
    return chosen[:n]


def forecasts_at(
    results: pd.DataFrame, period: str, methods: Iterable[str], weeks_before_end: float = 6, group: str = "total"
) -> tuple[dict[str, float], str]:
    """Each method's forecast of `period` made about `weeks_before_end` weeks before its end, from a `backtest`.

    For setting a finished period's outcome against what the methods said while it was still open
    (`salesforecast.plotting.plot_bookings_distribution`). The cutoff is the one nearest to `weeks_before_end`
    weeks before the end, of the first group value of `group`.

    Returns
    -------
    (dict, str)
        Method name to forecast (methods without one left out), and when they were made ("6 weeks before the
        end", "" when `results` holds no forecast of the period).
    """
    rows = results.loc[(results["period"].astype("str") == str(period)) & (results["group"] == group)]
    rows = rows.loc[rows["forecast"].notna()]
    if rows.empty:
        return {}, ""
    rows = rows.loc[rows["group_value"] == rows["group_value"].iloc[0]]
    days = rows["days_before_period_end"].to_numpy(dtype=float)
    target = days[np.argmin(np.abs(days - 7.0 * weeks_before_end))]
    at = rows.loc[days == target].set_index(rows.loc[days == target, "method"].astype("str"))["forecast"]
    weeks = int(round(target / 7.0))
    when = f"{weeks} week{'s' if weeks != 1 else ''} before the end" if weeks else "in the last week"
    return {m: float(at[m]) for m in methods if m in at.index}, when


#: Why a method of `METHODS` gives no forecast, by the first of its needs the data may lack (`missing_methods`).
_MISSING_WHY = {
    "submissions": "they need {need}, and the data hold none for these periods",
    "truth": "they need {need}",
    "opportunity score": "they need {need}, and it could not be fitted on the data known then",
    "stage_conversion model": "they need {need}, and it could not be fitted on the data known then",
}


def missing_methods(results: pd.DataFrame, group: str = "total") -> str:
    """One sentence per reason naming the methods of a `backtest` that gave no forecast at all, and why.

    A method is missing when none of its rows for `group` holds a forecast. The reason comes from the registry:
    the first of its `ForecastMethod.needs` the data may lack (the reps' calls for the submitted and bias-corrected
    commits), else its definition (``seasonal_naive`` needs a year of earlier periods).

    Parameters
    ----------
    results : pandas.DataFrame
        `backtest` output.
    group : str
        The grouping read (``"total"`` by default).

    Returns
    -------
    str
        "" when every method has a forecast.

    Examples
    --------
    >>> res = pd.DataFrame({"group": "total", "method": ["run_rate", "seasonal_naive"], "forecast": [1.0, None]})
    >>> missing_methods(res)[:70]
    'No forecast from seasonal naive: bookings of the same period one year '
    """
    rows = results.loc[results["group"] == group]
    has = rows["forecast"].notna().groupby(rows["method"], sort=False).any()
    missing = [m for m in has.index if not has[m]]
    reasons: dict[str, list[str]] = {}
    for m in missing:
        method = METHODS.get(m)
        if method is None:
            why = "it is no method of the registry"
        else:
            need = next((n for n in _MISSING_WHY if n in method.needs), None)
            why = _MISSING_WHY[need].format(need=NEEDS[need]) if need else method.definition
        reasons.setdefault(why, []).append(method_label(m))
    return " ".join(f"No forecast from {', '.join(names)}: {why}." for why, names in reasons.items())


def submissions_note(data: CRMData | pd.DataFrame, as_of: Any = None) -> str:
    """A sentence when the data hold no forecast submission made by `as_of` (so no rep bias to show), else "".

    `data`: the data, or their forecast submissions table.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> submissions_note(load_sample())
    ''
    """
    subs = data if isinstance(data, pd.DataFrame) else data.forecast_submissions
    if as_of is not None and len(subs) and "submitted_at" in subs.columns:
        subs = subs.loc[subs["submitted_at"] <= pd.Timestamp(as_of)]
    if len(subs):
        return ""
    return (
        "The data have no forecast submissions (the reps' commit and best-case calls) made by the report date: there "
        "is no rep bias to measure, and the submitted and bias-corrected commit methods give no forecast."
    )


def _rank_key(metric: str, values: pd.Series) -> pd.Series:
    """Sort key of a metric's values: smaller is better (the metric's direction in `salesforecast.metrics.METRICS`)."""
    return METRICS[metric].rank_key(values)


_TERMS = {
    "n": "forecasts scored: one per cutoff and group value, with a forecast and a closed period's actual",
    "horizon": "whole weeks left in the period at the cutoff, in bands (early: 9 or more, mid: 5-8, late: 0-4)",
    "weeks_before_end": "whole weeks left in the period at the cutoff",
}


def definitions(methods: Iterable[str] | None = None, metrics: Iterable[str] = ()) -> pd.DataFrame:
    """Definitions of methods and metrics, for printing beside a table (``name, kind, definition``).

    Methods are read from `METHODS`, metrics from `salesforecast.metrics.METRICS` (and the leaderboard's own
    columns ``n``, ``horizon``, ``weeks_before_end``); unknown names are left out.

    Examples
    --------
    >>> definitions(["run_rate"], ["wape"])["name"].tolist()
    ['run_rate', 'wape']
    """
    rows = [(m, "method", METHODS[m].definition) for m in (methods if methods is not None else METHODS) if m in METHODS]
    rows += [
        (m, "metric", METRICS[m].definition if m in METRICS else _TERMS[m])
        for m in metrics
        if m in METRICS or m in _TERMS
    ]
    return pd.DataFrame(rows, columns=["name", "kind", "definition"]).astype("str")
