"""A gallery of data shapes: small generated CRMs shaped like the exports real organisations have.

Real exports are short, partial and odd: a funnel of leads that started eleven months ago, a CRM that keeps only
each deal's current state, open deals without an expected close date, a file of won deals only, no teams, one rep,
no forecast calls, no quotas, leads without any opportunity, monthly forecast periods, data that end on the last
day of a quarter, win rates that shift between years. Each shape of `SHAPES` derives one of them from `generate`
(small sizes, a fixed seed: the same seed gives the same shape, byte for byte) and `write_shape` writes it as a
canonical folder that every report reads with ``-p source=FOLDER``. The generated CRM has activities (calls,
meetings, follow-ups, proposals, with the generator's exit criteria in its process map); the shapes of exports that
would not carry them (a marketing funnel, a current state, a closed-deals file, leads only) are generated without.

The shapes are what the report suite is tested on (``tests/test_gallery_*.py``): every report on every shape
either renders an honest report or says what it needs; the README's "Your own data" lists the outcomes.

Examples
--------
>>> sorted(SHAPES)[:3]
['current_state_only', 'ends_on_period_last_day', 'history_from_dates']
>>> data = SHAPES["no_teams"].build(0)
>>> "team" in data.opportunities.columns, len(data.opportunities) > 100
(False, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesforecast.datasets._generate import generate
from salesforecast.datasets.shapes import history_from_dates as _derive_history
from salesforecast.schema import CRMData, empty_table

__all__ = ["BASE", "SHAPES", "Shape", "base_crm", "write_gallery", "write_shape"]

#: The generated CRM every shape starts from (unless it says otherwise): two years from 2022-11-15, so the data
#: end in the middle of a quarter (the last change is on 2024-11-14, in FY2024Q4).
BASE: dict[str, Any] = {"n_opportunities": 500, "start": "2022-11-15", "years": 2}


@dataclass(frozen=True)
class Shape:
    """One shape of the gallery.

    Attributes
    ----------
    name : str
        The shape's key in `SHAPES` (also the folder name `write_gallery` uses).
    description : str
        One line: what the export holds.
    build : callable
        ``build(seed) -> CRMData``: the shape's tables (not re-validated: some shapes hold what only newer
        versions of the loader accept, e.g. open deals without a close date).
    parameters : dict
        Report parameters the shape needs to mean what it says (e.g. a monthly ``period``), set on every report
        that declares them.
    """

    name: str
    description: str
    build: Callable[[int], CRMData]
    parameters: Mapping[str, Any] = field(default_factory=dict)


def base_crm(seed: int = 0, **overrides: Any) -> CRMData:
    """The gallery's starting point: ``generate(**BASE, seed=seed, **overrides)``.

    Parameters
    ----------
    seed : int
        Seed of the generator.
    **overrides
        Other arguments of `generate` (``start``, ``years``, ``lead_share``, ...).

    Returns
    -------
    CRMData
    """
    data, _ = generate(**{**BASE, "seed": int(seed), **overrides})
    return data


def _drop(data: CRMData, **tables: pd.DataFrame | None) -> CRMData:
    """`data` with some tables replaced; None leaves a table empty (the shape's export has none)."""
    return replace(data, **{name: empty_table(name) if df is None else df for name, df in tables.items()})


# ----------------------------------------------------------------------------------------------------- the shapes
def leads_ramp_11_months(seed: int = 0) -> CRMData:
    """A marketing funnel 11 months old: leads ramping up from a trickle, opportunities only from converted leads.

    One generated year (2023) whose leads of the first month are left out: the funnel started on 2023-02-01. A
    lead created at fraction ``f`` of the 11 months is kept with probability ``0.1 + 0.9 f`` (the ramp); the
    opportunities are those opened by the kept leads, with their history. No forecast calls, no quotas (a
    marketing export: no activities either).
    """
    data = base_crm(seed, n_opportunities=400, start="2023-01-01", years=1, lead_share=1.0, activities=False)
    start, end = pd.Timestamp("2023-02-01"), pd.Timestamp("2024-01-01")
    leads = data.leads
    frac = ((leads["created_at"] - start) / (end - start)).to_numpy(dtype=float)
    keep = (frac >= 0) & (np.random.default_rng(seed).random(len(leads)) < 0.1 + 0.9 * frac)
    leads = leads[keep].reset_index(drop=True)
    opps = data.opportunities
    opps = opps[opps["lead_id"].isin(leads["lead_id"])].reset_index(drop=True)
    hist = data.stage_history
    hist = hist[hist["opportunity_id"].isin(opps["opportunity_id"])].reset_index(drop=True)
    return _drop(data, opportunities=opps, stage_history=hist, leads=leads, forecast_submissions=None, quotas=None)


def current_state_only(seed: int = 0) -> CRMData:
    """Each deal as it stands now and nothing of how it got there: no stage history, no activities."""
    return _drop(base_crm(seed, activities=False), stage_history=None)


def history_from_dates(seed: int = 0) -> CRMData:
    """The current state only, with the stage history derived from the deals' dates by the mapping.

    `salesforecast.datasets.shapes.history_from_dates` rebuilds what an export's dates say (created in the first
    stage, closed in the final one): no other past stage, and no past amount, close date or forecast category. No
    activities (a current-state export).
    """
    return _derive_history(base_crm(seed, activities=False))


def open_deals_without_close_dates(seed: int = 0) -> CRMData:
    """A CRM that records a close date only once a deal closes: open deals and open-stage history rows have none."""
    data = base_crm(seed)
    opps = data.opportunities.copy()
    opps["close_date"] = opps["close_date"].where(opps["is_closed"])
    hist = data.stage_history.copy()
    hist["close_date"] = hist["close_date"].where(data.process.is_closed(hist["stage"]))
    return _drop(data, opportunities=opps, stage_history=hist)


def only_won_deals(seed: int = 0) -> CRMData:
    """A closed-deals file of won deals only (the lost and open ones were never exported), with their history.

    No activities (a closed-deals file does not carry them).
    """
    data = base_crm(seed, activities=False)
    opps = data.opportunities[data.opportunities["is_won"]].reset_index(drop=True)
    hist = data.stage_history[data.stage_history["opportunity_id"].isin(opps["opportunity_id"])]
    return _drop(data, opportunities=opps, stage_history=hist.reset_index(drop=True))


def no_teams(seed: int = 0) -> CRMData:
    """No team (nor region) anywhere: opportunities and forecast calls name the rep only."""
    data = base_crm(seed)
    return _drop(
        data,
        opportunities=data.opportunities.drop(columns=["team", "region"]),
        forecast_submissions=data.forecast_submissions.drop(columns=["team"]),
    )


def one_rep(seed: int = 0) -> CRMData:
    """A one-person sales team: every deal, lead, activity, call and quota belongs to one rep of one team.

    The generated reps' deals, leads and activities are given to the first rep; the weekly calls and the quotas are
    summed per week (period) into that rep's.
    """
    data = base_crm(seed)
    rep = str(data.opportunities["owner"].iloc[0])
    team = str(data.opportunities["team"].iloc[0])
    opps = data.opportunities.assign(owner=rep, team=team)
    leads = data.leads.assign(owner=rep)
    activities = data.activities.assign(owner=rep)
    subs = data.forecast_submissions
    subs = (
        subs.groupby(["submitted_at", "period", "category"], as_index=False, sort=True)["amount"]
        .sum()
        .assign(owner=rep, team=team)[list(subs.columns)]
    )
    quotas = data.quotas.groupby("period", as_index=False, sort=True)["amount"].sum().assign(owner=rep)
    return _drop(
        data,
        opportunities=opps,
        leads=leads,
        activities=activities,
        forecast_submissions=subs,
        quotas=quotas[["owner", "period", "amount"]],
    )


def no_submissions(seed: int = 0) -> CRMData:
    """No forecast calls: the reps' commit and best-case submissions are not exported."""
    return _drop(base_crm(seed), forecast_submissions=None)


def no_quotas(seed: int = 0) -> CRMData:
    """No quotas: targets live in a spreadsheet the export does not include."""
    return _drop(base_crm(seed), quotas=None)


def leads_only(seed: int = 0) -> CRMData:
    """Leads only: no opportunity, stage history, activity, forecast call or quota (a lead-capture tool's export)."""
    data = base_crm(seed, activities=False)
    leads = data.leads.assign(opportunity_id=pd.Series(pd.NA, index=data.leads.index, dtype="str"))
    return _drop(
        data,
        opportunities=data.opportunities.iloc[:0],
        stage_history=None,
        leads=leads,
        forecast_submissions=None,
        quotas=None,
    )


def monthly_periods(seed: int = 0) -> CRMData:
    """Forecast calls and quotas by calendar month (``2024-07``) instead of fiscal quarter.

    Each weekly call is for the month it is made in (a third of the quarter's call, rounded to 100); each quarterly
    quota becomes three monthly quotas of a third. The reports run with ``period`` set to the month the data end in.
    """
    data = base_crm(seed)
    cal = data.process.calendar
    subs = data.forecast_submissions.copy()
    subs["period"] = cal.period(subs["submitted_at"], "month")
    subs["amount"] = (subs["amount"] / 3.0 / 100.0).round() * 100.0
    quotas = data.quotas
    months = []
    for label in quotas["period"].unique():  # a loop over quarters
        start, _ = cal.period_bounds(label)
        for k in range(3):
            months.append((label, str((start + pd.DateOffset(months=k)).strftime("%Y-%m"))))
    month_of = pd.DataFrame(months, columns=["period", "month"]).astype("str")
    quotas = quotas.merge(month_of, on="period", how="inner", sort=False)
    quotas = pd.DataFrame(
        {"owner": quotas["owner"], "period": quotas["month"], "amount": (quotas["amount"] / 3.0).round(0)}
    )
    return _drop(data, forecast_submissions=subs, quotas=quotas)


def ends_on_period_last_day(seed: int = 0) -> CRMData:
    """Two years from 2023-01-01: the last change is on 2024-12-31, the last day of a quarter and of a year."""
    return base_crm(seed, start="2023-01-01")


def win_rate_shift(seed: int = 0) -> CRMData:
    """Win rates that drop by a third in the second year (``generate(win_rate_shift=-1/3)``)."""
    return base_crm(seed, win_rate_shift=-1 / 3)


#: The month the data end in (`BASE`): the period of the monthly shape's reports.
_LAST_MONTH = "2024-11"

SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape(
            "leads_ramp_11_months", "11 months of leads ramping up; opportunities only from them", leads_ramp_11_months
        ),
        Shape("current_state_only", "each deal's current state, no stage history", current_state_only),
        Shape("history_from_dates", "current state, history derived from the deals' dates", history_from_dates),
        Shape(
            "open_deals_without_close_dates",
            "open deals have no expected close date",
            open_deals_without_close_dates,
        ),
        Shape("only_won_deals", "won deals only, with their history", only_won_deals),
        Shape("no_teams", "no team or region column", no_teams),
        Shape("one_rep", "every deal, lead, call and quota is one rep's", one_rep),
        Shape("no_submissions", "no forecast calls", no_submissions),
        Shape("no_quotas", "no quotas", no_quotas),
        Shape("leads_only", "leads only: no opportunities, history, calls or quotas", leads_only),
        Shape(
            "monthly_periods",
            f"calls and quotas by calendar month; reports for the month {_LAST_MONTH}",
            monthly_periods,
            {"period": _LAST_MONTH, "frequency": "month"},
        ),
        Shape("ends_on_period_last_day", "data ending on a quarter's last day (2024-12-31)", ends_on_period_last_day),
        Shape("win_rate_shift", "win rates a third lower in the second year", win_rate_shift),
    )
}


def write_shape(name: str, folder: str | Path, seed: int = 0) -> Path:
    """Write one shape of `SHAPES` as a canonical folder (`CRMData.to_folder`) and return its path.

    Parameters
    ----------
    name : str
        A key of `SHAPES`.
    folder : path
        The folder to write (created; an earlier canonical folder there is replaced whole, `CRMData.to_folder`).
    seed : int
        Seed of the generator: the same seed writes the same files.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    KeyError
        When `name` is no shape (the message lists them).
    """
    if name not in SHAPES:
        raise KeyError(f"no shape {name!r}; shapes: {sorted(SHAPES)}")
    return SHAPES[name].build(int(seed)).to_folder(folder)


def write_gallery(folder: str | Path, seed: int = 0, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Write shapes (all by default) as canonical folders ``folder/<name>`` and return their paths by name."""
    root = Path(folder)
    return {name: write_shape(name, root / name, seed) for name in (SHAPES if names is None else names)}
