"""The forecast call of the current period: will we make the quarter, how sure are we, and who calls what.

`period_call` forecasts the period of the report date once per team and rep (`forecast.forecast_period` with
groups), rebuilds the same forecast as it stood a week earlier, and sets beside it what the CRM holds (quota,
closed won, open pipeline: `movement.pipeline_coverage`, the figures of the pipeline review) and what the reps
called (their latest commit and best case, and their historical call ratio, `forecast.submission_bias`). The
result, `PeriodCall`, answers the report's question in one sentence (`PeriodCall.sentence`) and three to six
figures (`PeriodCall.figures`), and gives the forecast call per team and per rep with the company total
(`PeriodCall.teams`, `PeriodCall.reps`), marking in words each rep whose commit lies outside our P10-P90.

Data without teams give the call per rep; without quotas or forecast calls, the columns that need them are left
out and a sentence says so (`PeriodCall.notes`), never a column of dashes.

`period_call_parts` makes the same call over parts of the deals (the partitions of `salesforecast.scale`, on a
Dask cluster or here): its forecasts are `forecast.forecast_period_parts`'s, closed won and the open pipeline are
added over the parts (`movement.coverage_deals`), each rep's call ratio is `forecast.submission_bias_parts`'s and
their team `owner_teams_parts`'.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from salesforecast import forecast as fc
from salesforecast import rollup
from salesforecast._utils import NAT, LocalTasks, read_part
from salesforecast.labels import Figure, format_amount
from salesforecast.movement import coverage_deals, coverage_table, owner_counts, pipeline_coverage, warn_undated
from salesforecast.schema import CRMData

__all__ = [
    "CALL_METHODS",
    "NO_TEAM",
    "PeriodCall",
    "call_groups",
    "period_call",
    "owner_teams_parts",
    "period_call_parts",
    "trusted_at",
]

#: The methods the week-earlier forecast runs: the Monte Carlo (our P10-P50-P90) and the reps' calls.
CALL_METHODS: tuple[str, ...] = ("monte_carlo", "submitted_commit", "submitted_best_case")
#: The team of deals and calls without one (the label `forecast.backtest` groups them under).
NO_TEAM = "(none)"
#: The row of the company total (or of the team or rep a report is restricted to).
TOTAL = "total"
_WEEK = pd.Timedelta(days=7)
#: Values of the ``commit_vs_range`` column.
ABOVE, BELOW, WITHIN = "above P90", "below P10", "within"
#: Where the commit lies, in the headline's words ("" when a bound is missing).
_POSITION_WORDS = {ABOVE: "above our P90", BELOW: "below our P10", WITHIN: "within our P10-P90", "": ""}
#: Columns of the call tables that sum over the rows of a level (the total is the sum of the teams and of the reps).
ADDITIVE = ("quota", "closed_won", "commit", "best_case", "open_pipeline", "commit_change", "pipeline_change")


def call_groups(data: CRMData) -> tuple[str, ...]:
    """The groupings of the call: the total, the teams when the deals have any, and the reps.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> call_groups(load_sample())
    ('total', 'team', 'owner')
    """
    opps = data.opportunities
    has_teams = "team" in opps.columns and bool(opps["team"].notna().any())
    return ("total", "team", "owner") if has_teams else ("total", "owner")


def _chance(samples: np.ndarray, target: float) -> float:
    """Share of simulated futures at or above `target` (NaN without samples or target)."""
    if not len(samples) or not np.isfinite(target) or target <= 0:
        return math.nan
    return float(np.mean(np.asarray(samples, dtype=float) >= target))


def _a(share: float) -> str:
    """The article before a percentage read aloud: "an 11%", "an 80%", "a 12%"."""
    n = round(share * 100)
    return "an" if str(n).startswith("8") or n in (11, 18) else "a"


def _position(commit: float, p10: float, p90: float) -> str:
    if not (np.isfinite(commit) and np.isfinite(p10) and np.isfinite(p90)):
        return ""
    return ABOVE if commit > p90 else BELOW if commit < p10 else WITHIN


@dataclass
class PeriodCall:
    """Where the period is likely to land, how sure that is, and the call per team and rep (`period_call`).

    Amounts are in the process map's `currency`. ``NaN`` where the data lack a figure (no quota, no call, no
    Monte Carlo forecast).

    Attributes
    ----------
    period : str
        The period forecast (the next one when the report date's period had ended: `ended`).
    as_of : pandas.Timestamp
        The forecast date (the period's first day when it is the next one).
    weeks_left : int
        Whole weeks left in the period at `as_of` (the leaderboard's horizon).
    quota, won_to_date, commit, best_case, open_pipeline : float
        The company total (of the report's team or rep when it is restricted to one).
    p10, p50, p90 : float
        Our forecast: the Monte Carlo distribution of the period's bookings.
    chance_quota, chance_commit : float
        Shares of the simulated futures reaching the quota and the commit.
    n_sims : int
        Simulated futures.
    method, runner_up : str
        The method trusted at this horizon by the leaderboard (`forecast.recommend`), and the next.
    tie : bool
        Whether the leaderboard cannot tell `method` from `runner_up`.
    wape, wape_low, wape_high, runner_up_wape : float
        Their past error at this horizon (WAPE; the bootstrap interval of the trusted one, NaN without).
    method_forecast : float
        The trusted method's forecast now.
    horizon : str
        The leaderboard's horizon band of `weeks_left`.
    replayed : int
        Past periods the leaderboard rests on.
    scope : str
        The level the leaderboard scores ("" for the company total, "per team", "per rep").
    interval_caution : str
        Why our P10-P90 is a rough range ("" when nothing limits it), in words for the sentence.
    ended, ended_actual, ended_quota : str, float, float
        The period of the report date when it had ended, its closed-won bookings and its quota.
    currency : str or None
    table : pandas.DataFrame
        The call per level (``level``: ``total``, ``team``, ``owner``): see `period_call`.
    week_ago : salesforecast.forecast.PeriodForecast or None
        The forecast as it stood a week before `as_of` (None: the period had not started then).
    forecast : salesforecast.forecast.PeriodForecast
        Every method's forecast now, of the company total (the per-group rows are in `table`).
    """

    period: str
    as_of: pd.Timestamp
    weeks_left: int
    quota: float
    won_to_date: float
    commit: float
    best_case: float
    open_pipeline: float
    p10: float
    p50: float
    p90: float
    chance_quota: float
    chance_commit: float
    n_sims: int
    method: str = ""
    runner_up: str = ""
    tie: bool = False
    wape: float = math.nan
    wape_low: float = math.nan
    wape_high: float = math.nan
    runner_up_wape: float = math.nan
    method_forecast: float = math.nan
    horizon: str = ""
    replayed: int = 0
    scope: str = ""
    interval_caution: str = ""
    ended: str = ""
    ended_actual: float = math.nan
    ended_quota: float = math.nan
    currency: str | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    week_ago: fc.PeriodForecast | None = None
    forecast: fc.PeriodForecast | None = None
    has_quota: bool = False
    has_calls: bool = False
    has_teams: bool = False
    week_note: str = ""
    freq: str = "quarter"
    runner_up_low: float = math.nan
    runner_up_high: float = math.nan

    # ----------------------------------------------------------------------------------------- headline
    def _amount(self, x: float) -> str:
        return format_amount(x, self.currency, short=True)

    def _verdict(self) -> str:
        """How likely the quota is, in words; never "very likely" when the interval is a rough range."""
        p = self.chance_quota
        rough = bool(self.interval_caution)
        if p >= 0.9 and not rough:
            return "We will very likely make"
        if p >= 0.65:
            return "We will probably make"
        if p > 0.35:
            return "It is a toss-up whether we make"
        if p > 0.1 or rough:
            return "We will probably miss"
        return "We will very likely miss"

    def _range(self) -> str:
        return f"{self._amount(self.p10)}-{self._amount(self.p90)}"

    def _trust_text(self) -> str:
        """The method trusted at this horizon and its past error, as far as the leaderboard allows."""
        if not self.method:
            return ""
        at = (
            f"With {self.weeks_left} week{'s' if self.weeks_left != 1 else ''} left"
            if self.weeks_left
            else "In the period's last week"
        )
        past = f"{self.replayed} past {self.freq}{'s' if self.replayed != 1 else ''}"
        if self.replayed < fc.FEW_PERIODS:
            past = f"only {past}, a first impression"
        scope = f" {self.scope}" if self.scope else ""
        if self.tie:
            both = (self.wape_low, self.wape_high, self.runner_up_low, self.runner_up_high)
            intervals = (
                f", 90% intervals {self.wape_low:.0%}-{self.wape_high:.0%} and "
                f"{self.runner_up_low:.0%}-{self.runner_up_high:.0%}"
                if all(np.isfinite(both))
                else ""
            )
            return (
                f"{at}, {fc.method_label(self.method)} and {fc.method_label(self.runner_up)} have been equally "
                f"accurate on {past} (WAPE{scope} {self.wape:.0%} vs {self.runner_up_wape:.0%}{intervals}: a tie)."
            )
        interval = (
            f", 90% interval {self.wape_low:.0%}-{self.wape_high:.0%}"
            if np.isfinite(self.wape_low) and np.isfinite(self.wape_high)
            else ""
        )
        said = f", forecasting {self._amount(self.method_forecast)}" if np.isfinite(self.method_forecast) else ""
        return (
            f"{at}, the most accurate method on {past} has been {fc.method_label(self.method)}{said} "
            f"(off by {self.wape:.0%}{scope} on average, WAPE{interval})."
        )

    def _forecast_text(self) -> str:
        """Our forecast in words: its P50 and P10-P90, or the trusted method's point forecast without a Monte Carlo."""
        if np.isfinite(self.p50):
            if self._amount(self.p10) == self._amount(self.p90):  # nothing open left to win or lose
                return f"our forecast is {self._amount(self.p50)} (every simulated future the same)"
            return f"our forecast is {self._amount(self.p50)} (P10-P90 {self._range()})"
        if self.method and np.isfinite(self.method_forecast):
            return f"the {fc.method_label(self.method)} forecast is {self._amount(self.method_forecast)} (no interval)"
        return "there is no forecast with an interval"

    def sentence(self) -> str:
        """The answer to "will we make the quarter, and how sure are we", in words and figures (``**bold**`` kept).

        Claims no more than the data allow: on few replayed periods the trusted method is "a first impression", and
        with a caution on the intervals the chance is rough and never "very likely".
        """
        amt = self._amount
        parts = []
        if self.ended:
            if np.isfinite(self.ended_quota) and self.ended_quota > 0:
                made = self.ended_actual >= self.ended_quota
                parts.append(
                    f"**{self.ended} {'made' if made else 'missed'} its quota**: {amt(self.ended_actual)} closed won, "
                    f"{self.ended_actual / self.ended_quota:.0%} of {amt(self.ended_quota)}."
                )
            else:
                parts.append(
                    f"**{self.ended} has ended** with {amt(self.ended_actual)} closed won (the data have no quota "
                    "for it)."
                )
        intro = f"For {self.period}, from its first day," if self.ended else f"For {self.period},"
        has_quota = np.isfinite(self.quota) and self.quota > 0
        has_commit = np.isfinite(self.commit)
        rough = " rough" if self.interval_caution else ""
        if has_quota and self.won_to_date >= self.quota:
            parts.append(
                f"**We have made the {self.period} quota**: {amt(self.won_to_date)} closed won, "
                f"{self.won_to_date / self.quota:.0%} of {amt(self.quota)}; {self._forecast_text()}."
            )
        elif has_quota and np.isfinite(self.chance_quota):
            won = f" with {amt(self.won_to_date)} closed won to date" if not self.ended else ""
            parts.append(
                f"**{self._verdict()} the {self.period} quota of {amt(self.quota)}**: {self._forecast_text()}{won}, "
                f"{'a' if rough else _a(self.chance_quota)}{rough} {self.chance_quota:.0%} chance of reaching it."
            )
        elif has_quota:
            parts.append(
                f"The {self.period} quota is {amt(self.quota)} and {amt(self.won_to_date)} is closed won; "
                f"{self._forecast_text()}."
            )
        else:
            missing = "quota" if has_commit else "quota or commit"
            against = ""
            if has_commit and np.isfinite(self.chance_commit):
                against = (
                    f" against the reps' commit of {amt(self.commit)}, {'a' if rough else _a(self.chance_commit)}"
                    f"{rough} {self.chance_commit:.0%} chance of reaching it"
                )
            parts.append(f"{intro} {self._forecast_text()}{against}; the data hold no {missing} for {self.period}.")
        if has_commit and np.isfinite(self.p10) and (has_quota or not np.isfinite(self.chance_commit)):
            where = _position(self.commit, self.p10, self.p90)
            words = _POSITION_WORDS[where]
            parts.append(f"The reps' commit of {amt(self.commit)} is {words}.")
        elif has_commit and has_quota and not np.isfinite(self.p10):
            parts.append(f"The reps' commit is {amt(self.commit)}.")
        trust = self._trust_text()
        if trust:
            parts.append(trust)
        if self.interval_caution:
            parts.append(f"Read the P10-P90 as a rough range: {self.interval_caution}.")
        return " ".join(parts)

    def figures(self) -> list[Figure]:
        """Three to six figures behind the sentence (for `salesforecast.reports.headline`)."""
        amt = self._amount
        out: list[Figure] = []
        has_quota = np.isfinite(self.quota) and self.quota > 0
        if self.ended:
            if np.isfinite(self.ended_quota) and self.ended_quota > 0:
                share = self.ended_actual / self.ended_quota
                out.append(
                    Figure(
                        f"{self.ended} closed won",
                        amt(self.ended_actual),
                        f"{share:.0%} of its quota {amt(self.ended_quota)}",
                        "good" if share >= 1 else "bad",
                    )
                )
            else:
                out.append(Figure(f"{self.ended} closed won", amt(self.ended_actual), "no quota in the data"))
        if has_quota:
            out.append(Figure(f"Quota {self.period}", amt(self.quota)))
        else:
            out.append(Figure(f"Quota {self.period}", "none", "not in the data"))
        if not self.ended:
            detail = f"{self.won_to_date / self.quota:.0%} of quota" if has_quota else "to date"
            out.append(Figure("Closed won", amt(self.won_to_date), detail))
        if np.isfinite(self.commit):
            where = _position(self.commit, self.p10, self.p90)
            words = _POSITION_WORDS[where]
            out.append(Figure("Reps' commit", amt(self.commit), words, "warn" if where in (ABOVE, BELOW) else None))
        else:
            out.append(Figure("Reps' commit", "none", "no calls for the period"))
        if np.isfinite(self.p50):
            out.append(Figure("Our forecast P50", amt(self.p50), f"P10-P90 {self._range()}"))
        elif self.method and np.isfinite(self.method_forecast):
            out.append(Figure("Our forecast", amt(self.method_forecast), fc.method_label(self.method)))
        if has_quota and np.isfinite(self.chance_quota) and self.won_to_date < self.quota:
            p = self.chance_quota
            tone = "good" if p >= 0.65 else "bad" if p <= 0.35 else "warn"
            out.append(Figure("Chance of quota", f"{p:.0%}", "rough" if self.interval_caution else "", tone))
        elif not has_quota and np.isfinite(self.chance_commit):
            out.append(Figure("Chance of the commit", f"{self.chance_commit:.0%}"))
        if self.method:
            value = "a tie" if self.tie else fc.method_label(self.method)
            detail = f"WAPE {self.wape:.0%}"
            if self.tie:
                detail = (
                    f"{fc.method_label(self.method)} or {fc.method_label(self.runner_up)}, "
                    f"WAPE {self.wape:.0%} vs {self.runner_up_wape:.0%}"
                )
            elif np.isfinite(self.wape_low) and np.isfinite(self.wape_high):
                detail += f" ({self.wape_low:.0%}-{self.wape_high:.0%})"
            detail += f", {self.replayed} past {self.freq}{'s' if self.replayed != 1 else ''}"
            out.append(Figure(f"Most accurate at {self.weeks_left} weeks left", value, detail))
        return out[:6]

    def note(self) -> str:
        """The headline's small print: what the range and the chance are, and the date of the figures."""
        if not np.isfinite(self.p50):
            return f"Figures as of {self.as_of:%Y-%m-%d}."
        text = (
            f"P10-P90: the range of the middle 80% of {self.n_sims:,} simulated futures of the period's bookings "
            "(Monte Carlo); P50 their median"
        )
        if np.isfinite(self.chance_quota) or np.isfinite(self.chance_commit):
            text += "; the chance: the share of them reaching the target"
        return text + f". Figures as of {self.as_of:%Y-%m-%d}."

    # ----------------------------------------------------------------------------------------- the call
    def _shown(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` without the columns the data cannot fill (no quota, no calls, no week-earlier view)."""
        drop = {"level"}
        if not self.has_quota:
            drop |= {"quota", "projected_attainment"}
        if not self.has_calls:
            drop |= {"commit", "best_case", "commit_vs_range", "commit_change"}
        if self.week_ago is None:
            drop |= {"commit_change", "forecast_change", "pipeline_change"}
        if "call_ratio" in frame.columns and frame["call_ratio"].isna().all():
            drop.add("call_ratio")
        if frame["forecast_p50"].isna().all():
            drop |= {"forecast_p10", "forecast_p50", "forecast_p90", "projected_attainment", "commit_vs_range"}
            drop.add("forecast_change")
        out = frame.drop(columns=[c for c in frame.columns if c in drop])
        out.attrs["currency"] = self.currency
        return out.reset_index(drop=True)

    def teams(self) -> pd.DataFrame:
        """The company total and each team (the total alone for data without teams); columns as `period_call`'s."""
        rows = self.table.loc[self.table["level"].isin(["total", "team"])]
        return self._shown(rows.drop(columns=["rep", "call_ratio"]))

    def reps(self) -> pd.DataFrame:
        """Each rep, by team then name, after the total (``team`` left out for data without teams)."""
        rows = self.table.loc[self.table["level"].isin(["total", "owner"])]
        rows = rows.assign(team=rows["team"].where(rows["level"] != "total", ""))
        if not self.has_teams:
            rows = rows.drop(columns=["team"])
        return self._shown(rows)

    def marked(self) -> pd.DataFrame:
        """The reps whose commit lies outside our P10-P90, the farthest from our P50 first."""
        reps = self.table.loc[self.table["level"] == "owner"]
        out = reps.loc[reps["commit_vs_range"].isin([ABOVE, BELOW])]
        gap = (out["commit"] - out["forecast_p50"]).abs()
        out = out.assign(_gap=gap).sort_values("_gap", ascending=False, kind="stable").drop(columns="_gap")
        if not self.has_teams:
            out = out.drop(columns=["team"])
        return self._shown(out)

    def marked_sentence(self, most: int = 8) -> str:
        """The reps whose commit lies outside our P10-P90, by name (at most `most` each way, then how many more)."""
        if not self.has_calls:
            return ""
        reps = self.table.loc[self.table["level"] == "owner"]
        called = reps.loc[reps["commit_vs_range"].isin([ABOVE, BELOW, WITHIN])]
        if called.empty:
            return "No rep's commit can be set against our range (no Monte Carlo forecast per rep)."
        marked = self.marked()
        if marked.empty:
            return f"Every rep's commit ({len(called)} reps called) lies within our P10-P90."

        def names(where: str) -> str:
            who = [str(r) for r in marked.loc[marked["commit_vs_range"] == where, "rep"]]
            listed = ", ".join(who[:most])
            return listed + (f" and {len(who) - most} more" if len(who) > most else "")

        n = len(marked)
        parts = []
        if (marked["commit_vs_range"] == ABOVE).any():
            parts.append(f"above our P90 (calling more than we see): {names(ABOVE)}")
        if (marked["commit_vs_range"] == BELOW).any():
            parts.append(f"below our P10 (calling less than we see): {names(BELOW)}")
        return (
            f"{n} of the {len(called)} {'rep' if len(called) == 1 else 'reps'} who called "
            f"{'has' if n == 1 else 'have'} a commit outside our P10-P90; " + "; ".join(parts) + "."
        )

    def notes(self) -> list[str]:
        """What the call cannot show with these data, one sentence each."""
        out = []
        if not self.has_teams:
            out.append("The deals carry no team: the call is per rep.")
        if not self.has_quota:
            out.append(f"The data hold no quota for {self.period}: there is no quota or projected attainment to show.")
        if not self.has_calls:
            out.append(
                f"The data hold no forecast call (commit or best case) for {self.period} made by "
                f"{self.as_of:%Y-%m-%d}: there is no commit to set against our forecast."
            )
        if self.week_ago is None and self.week_note:
            out.append(self.week_note)
        if self.forecast is not None and self.table["forecast_p50"].isna().all():
            out.append("The Monte Carlo forecast could not be made on these data: no P10-P90 per team or rep.")
        return out


def _team_of_reps(deals: pd.DataFrame | None, subs: pd.DataFrame, t: pd.Timestamp) -> pd.Series:
    """Each rep's team as known at `t`: that of their latest deal created by then, else of their latest call.

    `deals`: the opportunities, or each part's `salesforecast.rollup.latest_team_deals` put together (None: the
    deals have no team).
    """
    if deals is None or "team" not in deals.columns:
        deals = pd.DataFrame({c: pd.Series(dtype="str") for c in ("owner", "opportunity_id", "team")})
        deals["created_at"] = pd.Series(dtype="datetime64[us]")
    return rollup.owner_teams(deals, t, subs)


def owner_teams_parts(parts: list[Any], as_of: Any, submissions: pd.DataFrame, tasks: Any = None) -> pd.Series:
    """Each rep's team at `as_of` (`salesforecast.rollup.owner_teams` of the deals and calls) over parts of the deals.

    Each part gives its reps' latest deals with a team (`salesforecast.rollup.latest_team_deals`); those put
    together give the whole's; a rep with no deal takes the team of their latest call (`submissions`).

    Parameters
    ----------
    parts : list
        As `salesforecast.forecast.backtest_parts`.
    as_of : date
    submissions : pandas.DataFrame
        The forecast submissions.
    tasks : optional
        Where the parts' tasks run (default: here, in turn).

    Returns
    -------
    pandas.Series
        Indexed by rep (sorted), the team.
    """
    tasks = LocalTasks() if tasks is None else tasks
    t = pd.Timestamp(as_of)
    latest = [f for f in tasks.gather(tasks.map(_latest_team_deals, parts, t=t)) if f is not None]
    return _team_of_reps(pd.concat(latest, ignore_index=True) if latest else None, submissions, t)


def _latest_team_deals(part: Any, t: pd.Timestamp) -> pd.DataFrame | None:
    """Task: a part's `salesforecast.rollup.latest_team_deals` at `t` (None: the deals have no team)."""
    opps = read_part(part).opportunities
    return rollup.latest_team_deals(opps, t) if "team" in opps.columns else None


def _has_teams(part: Any) -> bool:
    """Task: whether a part's deals carry a team."""
    opps = read_part(part).opportunities
    return "team" in opps.columns and bool(opps["team"].notna().any())


def _part_coverage(
    part: Any, period: str, t: pd.Timestamp, bys: list[str | None], unknown: Any
) -> list[tuple[pd.DataFrame, tuple[int, int, float], pd.DataFrame | None]]:
    """Task: a part's `salesforecast.movement.coverage_deals` by each of `bys`, with its deals per owner and value.

    The part read once for every level.
    """
    data = read_part(part)
    opps = data.opportunities
    return [
        (
            *coverage_deals(data, period, t, by, unknown),
            owner_counts(opps, by) if by not in (None, "owner") and by in opps.columns else None,
        )
        for by in bys
    ]


class _Data:
    """What `period_call` reads, from one process's data."""

    def __init__(self, data: CRMData) -> None:
        self.data, self.process, self.quotas = data, data.process, data.quotas
        self.end = fc.data_end(data)

    def groups(self) -> tuple[str, ...]:
        return call_groups(self.data)

    def forecast(self, **kwargs: Any) -> fc.PeriodForecast:
        return fc.forecast_period(self.data, **kwargs)

    def coverage(self, period: str, t: pd.Timestamp, bys: list[str | None]) -> list[pd.DataFrame]:
        return [pipeline_coverage(self.data, period, as_of=t, by=by) for by in bys]

    def bias(self, as_of: pd.Timestamp, freq: str) -> pd.DataFrame:
        return fc.submission_bias(self.data, as_of=as_of, period=freq)

    def teams(self, t: pd.Timestamp) -> pd.Series:
        return _team_of_reps(self.data.opportunities, self.data.forecast_submissions, t)


class _Parts:
    """What `period_call_parts` reads: sums over the parts (`salesforecast.forecast.backtest_parts`'s tasks)."""

    def __init__(
        self,
        parts: list[Any],
        process: Any,
        as_of: Any,
        submissions: pd.DataFrame,
        quotas: pd.DataFrame,
        close_unknown_before: Any,
        tasks: Any,
    ) -> None:
        self.parts, self.process, self.as_of, self.submissions, self.quotas = parts, process, as_of, submissions, quotas
        self.end = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)  # as `salesforecast.forecast.data_end`
        self.before, self.tasks = close_unknown_before, tasks

    def _common(self) -> dict[str, Any]:
        return {"close_unknown_before": self.before, "tasks": self.tasks}

    def groups(self) -> tuple[str, ...]:
        teams = any(self.tasks.gather(self.tasks.map(_has_teams, self.parts)))
        return ("total", "team", "owner") if teams else ("total", "owner")

    def forecast(self, as_of: pd.Timestamp, **kwargs: Any) -> fc.PeriodForecast:
        return fc.forecast_period_parts(
            self.parts, self.process, self.as_of, self.submissions, as_of, **kwargs, **self._common()
        )

    def coverage(self, period: str, t: pd.Timestamp, bys: list[str | None]) -> list[pd.DataFrame]:
        # the whole's rule for close dates unknown before its as_of (None: each part's own; NAT: recorded)
        before = self.before
        unknown = "data" if before is None else None if before == NAT else np.datetime64(int(before), "us")
        tasks = self.tasks
        found = tasks.gather(tasks.map(_part_coverage, self.parts, period=period, t=t, bys=bys, unknown=unknown))
        out = []
        for j, by in enumerate(bys):  # each level's sums added over the parts
            deals = pd.concat([f[j][0] for f in found]).groupby(level=0, sort=True).sum()
            counts = [f[j][2] for f in found if f[j][2] is not None]
            summed = pd.concat(counts).groupby(["owner", by], sort=True)["n"].sum().reset_index() if counts else None
            out.append(coverage_table(deals, self.quotas, self.process.calendar, period, t, by, summed))
        warn_undated(tuple(sum(f[0][1][i] for f in found) for i in range(3)), period, t)  # the same at every level
        return out

    def bias(self, as_of: pd.Timestamp, freq: str) -> pd.DataFrame:
        return fc.submission_bias_parts(
            self.parts, self.process, self.as_of, self.submissions, as_of, period=freq, **self._common()
        )

    def teams(self, t: pd.Timestamp) -> pd.Series:
        return owner_teams_parts(self.parts, t, self.submissions, self.tasks)


def _coverage(src: _Data | _Parts, period: str, t: pd.Timestamp, groups: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Quota, closed won and open pipeline at `t`, per level; teams hold every deal and quota (a total's parts)."""
    out = {}
    bys = [None, *(g for g in ("owner", "team") if g in groups)]
    tables = dict(
        zip(bys, (c[["quota", "closed_won", "open_pipeline"]] for c in src.coverage(period, t, bys)), strict=True)
    )
    total = tables[None]
    total.index = pd.Index([TOTAL], dtype="str")
    out["total"] = total
    if "owner" in groups:
        owners = tables["owner"]
        owners.index = owners.index.astype("str")
        out["owner"] = owners
    if "team" in groups:
        teams = tables["team"]
        teams.index = pd.Index([NO_TEAM if k == "(unassigned)" else str(k) for k in teams.index], dtype="str")
        teams = teams.groupby(level=0, sort=True).sum(min_count=1)
        # deals without a team are in no team's row (and in the total): they are the "(none)" team's
        rest = total.iloc[0][["closed_won", "open_pipeline"]] - teams[["closed_won", "open_pipeline"]].sum()
        if (rest.abs() > 1e-6).any():
            if NO_TEAM not in teams.index:
                teams.loc[NO_TEAM] = [math.nan, 0.0, 0.0]
            teams.loc[NO_TEAM, ["closed_won", "open_pipeline"]] += rest.to_numpy()
        out["team"] = teams.sort_index()
    return out


def _methods_by_group(table: pd.DataFrame, group: str) -> pd.DataFrame:
    """Per group value of `group`: the reps' commit and best case, and the Monte Carlo P10, P50, P90."""
    rows = table.loc[table["group"] == group]
    out = pd.DataFrame(index=pd.Index(sorted(rows["group_value"].unique()), dtype="str"))
    for method, column in (("submitted_commit", "commit"), ("submitted_best_case", "best_case")):
        values = rows.loc[rows["method"] == method].set_index("group_value")["forecast"]
        out[column] = values.reindex(out.index).to_numpy(dtype=float)
    mc = rows.loc[rows["method"] == "monte_carlo"].set_index("group_value")
    has_mc = bool(table.loc[table["method"] == "monte_carlo", "p50"].notna().any())
    for q in ("p10", "p50", "p90"):
        values = mc[q].reindex(out.index).to_numpy(dtype=float) if len(mc) else np.full(len(out), np.nan)
        # a group without any row of the Monte Carlo had nothing open or won: its bookings are 0
        out[f"forecast_{q}"] = np.where(np.isnan(values) & has_mc, 0.0, values)
    return out


def _level(
    level: str,
    cov: pd.DataFrame,
    methods: pd.DataFrame,
    cov_week: pd.DataFrame | None,
    methods_week: pd.DataFrame | None,
) -> pd.DataFrame:
    """The call of one level: the CRM's figures, the calls and our forecast, and their change in a week."""
    index = pd.Index(sorted(set(cov.index) | set(methods.index)), dtype="str")
    if level == "total":
        index = pd.Index([TOTAL], dtype="str")
    frame = cov.reindex(index)
    # a group with no deal won or open and no quota has none: 0 won, 0 open, an unknown quota
    frame[["closed_won", "open_pipeline"]] = frame[["closed_won", "open_pipeline"]].fillna(0.0)
    m = methods.reindex(index)
    for c in m.columns:
        frame[c] = m[c].to_numpy(dtype=float)
    has_mc = bool(methods["forecast_p50"].notna().any()) if len(methods) else False
    if has_mc:
        for q in ("forecast_p10", "forecast_p50", "forecast_p90"):
            frame[q] = frame[q].fillna(0.0)
    frame["projected_attainment"] = (frame["forecast_p50"] / frame["quota"]).where(frame["quota"] > 0)
    frame["commit_vs_range"] = pd.Series(
        [
            _position(c, lo, hi)
            for c, lo, hi in zip(frame["commit"], frame["forecast_p10"], frame["forecast_p90"], strict=True)
        ],
        index=frame.index,
        dtype="str",
    ).replace("", np.nan)
    if cov_week is not None and methods_week is not None:
        wk = cov_week.reindex(index)
        mw = methods_week.reindex(index)
        if has_mc:
            mw = mw.assign(forecast_p50=mw["forecast_p50"].fillna(0.0))
        frame["commit_change"] = frame["commit"].fillna(0.0) - mw["commit"].fillna(0.0)
        frame["commit_change"] = frame["commit_change"].where(frame["commit"].notna() | mw["commit"].notna())
        frame["forecast_change"] = frame["forecast_p50"] - mw["forecast_p50"]
        frame["pipeline_change"] = frame["open_pipeline"] - wk["open_pipeline"].fillna(0.0)
    else:
        for c in ("commit_change", "forecast_change", "pipeline_change"):
            frame[c] = np.nan
    return frame


_COLUMNS = [
    "level",
    "team",
    "rep",
    "quota",
    "closed_won",
    "commit",
    "best_case",
    "open_pipeline",
    "forecast_p50",
    "forecast_p10",
    "forecast_p90",
    "projected_attainment",
    "commit_vs_range",
    "call_ratio",
    "commit_change",
    "forecast_change",
    "pipeline_change",
]


def trusted_at(bands: pd.DataFrame | None, weeks: int) -> dict[str, Any]:
    """The method a leaderboard by band trusts with `weeks` left, with its past error (`forecast.recommend`).

    Returns
    -------
    dict
        ``method``, ``runner_up``, ``tie``, ``wape`` (at that horizon), ``wape_low`` and ``wape_high`` (its bootstrap
        interval, NaN without), ``runner_up_wape`` (and its interval), ``horizon`` (the band) and ``replayed`` (the
        periods the leaderboard rests on); empty when the leaderboard scores no method at that horizon.
    """
    if bands is None or bands.empty or "wape" not in bands.columns:
        return {}
    advice = fc.recommend(bands)
    if advice.empty:
        return {}
    if "horizon" in advice.columns:
        band = next((b for b, (lo, hi) in fc.HORIZONS.items() if lo <= weeks <= hi), None)
        row = advice.loc[advice["horizon"].astype("str") == str(band)]
        key, value = "horizon", band
    else:
        col = advice.columns[0]
        nearest = advice[col].astype(float).sub(weeks).abs().idxmin()
        row = advice.loc[[nearest]]
        key, value = col, advice.loc[nearest, col]
    if row.empty:
        return {}
    best = row.iloc[0]
    at = bands.loc[(bands[key].astype("str") == str(value))].set_index("method")
    out: dict[str, Any] = {
        "method": str(best["best"]),
        "runner_up": "" if pd.isna(best["runner_up"]) else str(best["runner_up"]),
        "tie": bool(best["tie"]),
        "wape": float(best["wape"]),
        "horizon": str(value),
        "replayed": len(bands.attrs.get("periods", ())),
    }
    for c in ("wape_low", "wape_high"):
        out[c] = float(at.loc[out["method"], c]) if c in at.columns and out["method"] in at.index else math.nan
    if out["runner_up"] and out["runner_up"] in at.index:
        out["runner_up_wape"] = float(at.loc[out["runner_up"], "wape"])
        for c in ("wape_low", "wape_high"):
            if c in at.columns:
                out[c.replace("wape", "runner_up")] = float(at.loc[out["runner_up"], c])
    return out


def _interval_caution(now: fc.PeriodForecast, results: pd.DataFrame | None) -> str:
    """Why our P10-P90 is a rough range, as the read-this-first box says it (`forecast.IntervalWarning`s)."""
    reasons = []
    notes = fc.interval_calibration(now.table)
    notes = notes.loc[notes["group"] == "total"]
    if len(notes) and int(notes["calibration_periods"].min()) < fc.INTERVAL_FEW_PERIODS:
        n = int(notes["calibration_periods"].min())
        reasons.append(f"it is calibrated on {n} earlier period{'s' if n != 1 else ''} only")
    held = fc.interval_held(results) if results is not None else None
    if held is not None and not fc.INTERVAL_HELD[0] <= held[0] <= fc.INTERVAL_HELD[1]:
        reasons.append(f"in the replayed periods it held {held[0]:.0%} of the outcomes, not about 80%")
    return " and ".join(reasons)


def period_call(
    data: CRMData,
    as_of: Any = None,
    period: str = "current",
    freq: str = "quarter",
    bands: pd.DataFrame | None = None,
    results: pd.DataFrame | None = None,
    group: str = "total",
    n_sims: int = 1000,
    seed: int = 0,
    **kwargs: Any,
) -> PeriodCall:
    """Forecast the period per team and rep, as now and as a week earlier, beside the quota and the reps' calls.

    Parameters
    ----------
    data : CRMData
        The report's view (the data known at the report date).
    as_of : date, optional
        The report date (default: the data end).
    period, freq : str
        As for `salesforecast.forecast.forecast_period` (``"current"``: the period of the report date, or the next
        one once it has ended, from its first day).
    bands : pandas.DataFrame, optional
        The leaderboard by horizon band (``forecast.leaderboard(results, by="band", ci=0.9)``): the method trusted at
        the period's weeks left and its past error.
    results : pandas.DataFrame, optional
        The `salesforecast.forecast.backtest` behind `bands` (how often the Monte Carlo interval held the outcome).
    group : str
        The level `bands` scores (``"total"``, ``"team"``, ``"owner"``), named beside its error.
    n_sims, seed, **kwargs
        As for `salesforecast.forecast.forecast_period`.

    Returns
    -------
    PeriodCall
        Its ``table`` holds one row per level (``level``: ``total``, ``team``, ``owner``) and ``team`` or ``rep``:
        ``quota`` (NaN: none), ``closed_won`` and ``open_pipeline`` (`salesforecast.movement.pipeline_coverage` at
        the forecast date), ``commit`` and ``best_case`` (the latest calls by then, summed; NaN: nobody called),
        ``forecast_p10``, ``forecast_p50``, ``forecast_p90`` (the Monte Carlo), ``projected_attainment`` (P50 /
        quota), ``commit_vs_range`` (``above P90``, ``below P10``, ``within``), ``call_ratio`` (the rep's
        historical call / booked, `salesforecast.forecast.submission_bias`), and ``commit_change``,
        ``forecast_change``, ``pipeline_change``: now minus a week before the forecast date, the week-earlier
        forecast made with only what was known then (NaN when the period had not started a week earlier). The
        total's quota, closed won, commit, best case and open pipeline are the sums of the teams' and of the reps'.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> call = period_call(load_sample(), as_of="2025-11-17", n_sims=200)
    >>> call.period, call.weeks_left, sorted(set(call.table["level"]))
    ('FY2025Q4', 6, ['owner', 'team', 'total'])
    """
    return _period_call(_Data(data), as_of, period, freq, bands, results, group, n_sims, seed, **kwargs)


def period_call_parts(
    parts: list[Any],
    process: Any,
    as_of: Any,
    submissions: pd.DataFrame,
    quotas: pd.DataFrame,
    report_as_of: Any = None,
    period: str = "current",
    freq: str = "quarter",
    bands: pd.DataFrame | None = None,
    results: pd.DataFrame | None = None,
    group: str = "total",
    n_sims: int = 1000,
    seed: int = 0,
    *,
    close_unknown_before: Any = None,
    tasks: Any = None,
    **kwargs: Any,
) -> PeriodCall:
    """`period_call` over deals split into parts (the partitions of `salesforecast.scale`), each read where it lives.

    The forecasts now and a week earlier are `salesforecast.forecast.forecast_period_parts`'s (the methods of
    `salesforecast.forecast.PARTITIONED_METHODS`); closed won and the open pipeline per team and rep are added
    over the parts (`salesforecast.movement.coverage_deals`), beside the quotas and the reps' calls read here;
    each rep's call ratio is `salesforecast.forecast.submission_bias_parts`'s, their team that of their latest
    deal over every part.

    Parameters
    ----------
    parts, process, as_of, submissions, close_unknown_before, tasks
        As `salesforecast.forecast.backtest_parts` (`as_of`: the whole data's).
    quotas : pandas.DataFrame
        The quotas table.
    report_as_of : date, optional
        The report date (default: the data end).
    period, freq, bands, results, group, n_sims, seed, **kwargs
        As `period_call`.

    Returns
    -------
    PeriodCall
        As ``period_call`` of the whole data: its sums equal to the order of floating-point additions, the Monte
        Carlo's P10, P50, P90 within Monte Carlo error (`salesforecast.forecast.backtest_parts`).
    """
    tasks = LocalTasks() if tasks is None else tasks
    src = _Parts(list(parts), process, as_of, submissions, quotas, close_unknown_before, tasks)
    return _period_call(src, report_as_of, period, freq, bands, results, group, n_sims, seed, **kwargs)


def _period_call(
    src: _Data | _Parts,
    as_of: Any,
    period: str,
    freq: str,
    bands: pd.DataFrame | None,
    results: pd.DataFrame | None,
    group: str,
    n_sims: int,
    seed: int,
    **kwargs: Any,
) -> PeriodCall:
    """`period_call` of the data `src` reads (one process's, or parts')."""
    as_of = src.end if as_of is None else pd.Timestamp(as_of)
    groups = src.groups()
    methods = kwargs.pop("methods", None)  # the week-earlier forecast runs `CALL_METHODS`
    now = src.forecast(
        as_of=as_of, period=period, freq=freq, methods=methods, groups=groups, n_sims=n_sims, seed=seed, **kwargs
    )
    t = now.as_of
    start, end = src.process.calendar.period_bounds(now.period)
    week = t - _WEEK
    week_ago = None
    week_note = (
        f"{now.period} is forecast from its first day ({start:%Y-%m-%d}): there is no week-earlier view of it, so no "
        "change since last week."
        if t <= start
        else f"{now.period} started on {start:%Y-%m-%d}, less than a week before the forecast date ({t:%Y-%m-%d}): "
        "there is no week-earlier view to compare with, so no change since last week."
    )
    if week >= start:
        with warnings.catch_warnings():
            # the read-this-first box speaks of the forecast now; the week-earlier one only gives the changes
            warnings.simplefilter("ignore")
            try:
                week_ago = src.forecast(
                    as_of=week,
                    period=now.period,
                    freq=freq,
                    methods=list(CALL_METHODS),
                    groups=groups,
                    n_sims=n_sims,
                    seed=seed,
                    **kwargs,
                )
            except ValueError as exc:  # nothing to forecast a week earlier (no data yet)
                week_note = f"The forecast as it stood a week earlier ({week:%Y-%m-%d}) could not be made: {exc}"
    cov = _coverage(src, now.period, t, groups)
    cov_week = None
    if week_ago is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. undated pipeline: said of the pipeline now
            cov_week = _coverage(src, now.period, week, groups)
    frames = []
    for level in groups:
        methods = _methods_by_group(now.table, level)
        methods_week = _methods_by_group(week_ago.table, level) if week_ago is not None else None
        frame = _level(level, cov[level], methods, cov_week[level] if cov_week else None, methods_week)
        frame["level"] = level
        frame["team" if level == "team" else "rep"] = frame.index
        frames.append(frame.reset_index(drop=True))
    table = pd.concat(frames, ignore_index=True)
    for c in ("team", "rep"):
        table[c] = table[c].astype("str") if c in table.columns else pd.Series(None, index=table.index, dtype="str")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.ForecastWarning)
        ratio = src.bias(as_of, freq).set_index("owner")["bias"]
    reps = table["level"] == "owner"
    table["call_ratio"] = np.where(reps, ratio.reindex(table["rep"].astype("str")).to_numpy(dtype=float), np.nan)
    teams = src.teams(t)
    table.loc[reps, "team"] = teams.reindex(table.loc[reps, "rep"].astype("str")).to_numpy()
    table.loc[table["level"] == "total", "team"] = TOTAL
    table.loc[table["level"] == "total", "rep"] = TOTAL
    table = table.sort_values(
        ["level", "team", "rep"],
        key=lambda s: s.map({"total": 0, "team": 1, "owner": 2}) if s.name == "level" else s.fillna("").str.lower(),
        kind="stable",
    )
    table = table[_COLUMNS].reset_index(drop=True)
    for c in ("level", "team", "rep", "commit_vs_range"):
        table[c] = table[c].astype("str")
    total = table.iloc[0]
    samples = now.samples
    trusted = trusted_at(bands, int((end - t) / _WEEK))
    method_forecast = math.nan
    if trusted:
        point = now.table.loc[(now.table["group"] == "total") & (now.table["method"] == trusted["method"]), "forecast"]
        method_forecast = float(point.iloc[0]) if len(point) else math.nan
    ended_quota = math.nan
    if now.ended:
        q = src.quotas
        rows = q.loc[q["period"].astype("str") == now.ended] if len(q) else q
        ended_quota = float(rows["amount"].sum()) if len(rows) else math.nan
    has_calls = bool(table["commit"].notna().any())
    quota = float(total["quota"])
    commit = float(total["commit"])
    total_only = replace(now, table=now.table.loc[now.table["group"] == "total"].reset_index(drop=True))
    total_only.table.attrs.update(now.table.attrs)
    return PeriodCall(
        period=now.period,
        as_of=t,
        weeks_left=int((end - t) / _WEEK),
        quota=quota,
        won_to_date=float(total["closed_won"]),
        commit=commit,
        best_case=float(total["best_case"]),
        open_pipeline=float(total["open_pipeline"]),
        p10=float(total["forecast_p10"]),
        p50=float(total["forecast_p50"]),
        p90=float(total["forecast_p90"]),
        chance_quota=_chance(samples, quota),
        chance_commit=_chance(samples, commit),
        n_sims=int(len(samples)),
        method=trusted.get("method", ""),
        runner_up=trusted.get("runner_up", ""),
        tie=trusted.get("tie", False),
        wape=trusted.get("wape", math.nan),
        wape_low=trusted.get("wape_low", math.nan),
        wape_high=trusted.get("wape_high", math.nan),
        runner_up_wape=trusted.get("runner_up_wape", math.nan),
        method_forecast=method_forecast,
        horizon=trusted.get("horizon", ""),
        replayed=trusted.get("replayed", 0),
        scope={"team": "per team", "owner": "per rep"}.get(group, ""),
        interval_caution=_interval_caution(now, results),
        ended=now.ended,
        ended_actual=now.ended_actual,
        ended_quota=ended_quota,
        currency=src.process.currency,
        table=table,
        week_ago=week_ago,
        forecast=total_only,
        has_quota=bool(np.isfinite(quota)),
        has_calls=has_calls,
        has_teams="team" in groups,
        week_note="" if week_ago is not None else week_note,
        freq=freq,
        runner_up_low=trusted.get("runner_up_low", math.nan),
        runner_up_high=trusted.get("runner_up_high", math.nan),
    )
