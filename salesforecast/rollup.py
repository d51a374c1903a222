"""Per-rep tables that hold at 400 reps: each rep's team, team roll-ups, and what ranks the reps that matter.

A per-rep section of a report shows the team roll-up, then the reps that matter, then the rest folded
(`salesforecast.reports.fold_rows`, and the ``top=`` of the per-rep charts of `salesforecast.plotting`). This
module computes what those need:

- `owner_teams`: each rep's team (the team of their latest deal).
- `roll_up`: a per-rep table summed per team (amounts and counts summed, ratios weighted), with a company row.
- `teams_and_company`: a roll-up computed from per-deal rows (e.g. the adherence shares per team and overall).
- `distance_from_target`: how far a ratio lies from 100% (200% as far as 50%), to rank the most biased reps.
- `coverage_gap`: the open pipeline still missing to cover each row's remaining quota, to rank the largest gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ALL_TEAMS",
    "coverage_gap",
    "distance_from_target",
    "latest_team_deals",
    "owner_teams",
    "roll_up",
    "teams_and_company",
]

#: The name of the company row of a roll-up.
ALL_TEAMS = "all teams"


def owner_teams(opportunities: pd.DataFrame, as_of: Any = None, *others: pd.DataFrame) -> pd.Series:
    """Each rep's team: the team of their latest deal created by `as_of`.

    Of a rep's deals created at the same instant, the one with the greatest ``opportunity_id`` (whatever the order
    of the rows), as the backtest takes a call's team.

    Parameters
    ----------
    opportunities : pandas.DataFrame
        Columns ``owner``, ``created_at`` and, when the data have teams, ``team``.
    as_of : date, optional
        Only deals created by then count (default: all).
    *others : pandas.DataFrame
        Tables that name the team of reps without a deal, e.g. the forecast submissions (``owner``, ``team`` and
        ``submitted_at``): their latest row by then.

    Returns
    -------
    pandas.Series
        Indexed by owner (sorted), the team (``str``); empty when the data have no ``team`` column.

    Examples
    --------
    >>> opps = pd.DataFrame({"owner": ["a", "a", "b"], "team": ["X", "Y", "X"],
    ...                      "created_at": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-05"])})
    >>> owner_teams(opps).to_dict()
    {'a': 'Y', 'b': 'X'}
    >>> calls = pd.DataFrame({"owner": ["c"], "team": ["Z"], "submitted_at": pd.to_datetime(["2024-01-01"])})
    >>> owner_teams(opps, None, calls).to_dict()  # c made calls, and no deal
    {'a': 'Y', 'b': 'X', 'c': 'Z'}
    """
    if "team" not in opportunities.columns:
        return pd.Series(dtype="str", name="team")
    teams = pd.Series(dtype="str", name="team")
    for table in (opportunities, *others):
        if "team" not in table.columns or table.empty:
            continue
        latest = _latest_with_team(table, as_of)
        found = pd.Series(latest["team"].to_numpy(), index=latest["owner"].to_numpy(), dtype="str", name="team")
        teams = found if teams.empty else teams.combine_first(found)
    return teams.sort_index().rename("team")


def latest_team_deals(opportunities: pd.DataFrame, as_of: Any = None) -> pd.DataFrame:
    """Each rep's latest deal with a team created by `as_of`: what `owner_teams` reads of the deals.

    Of parts of the deals (partitions by opportunity), these put together and given to `owner_teams` give the
    whole's teams.

    Parameters
    ----------
    opportunities : pandas.DataFrame
        Columns ``owner``, ``created_at``, ``team`` and, when it has one, ``opportunity_id``.
    as_of : date, optional
        Only deals created by then count (default: all).

    Returns
    -------
    pandas.DataFrame
        One row per rep with a team: the deal's ``owner``, ``created_at``, ``opportunity_id``, ``team``.
    """
    return _latest_with_team(opportunities, as_of)[[c for c in _LATEST if c in opportunities.columns]]


#: What `latest_team_deals` keeps of a deal.
_LATEST = ("owner", "created_at", "opportunity_id", "team")


def _latest_with_team(table: pd.DataFrame, as_of: Any) -> pd.DataFrame:
    """Each owner's latest row with a team by `as_of` (by ``created_at``, or ``submitted_at`` for calls)."""
    when = "created_at" if "created_at" in table.columns else "submitted_at"
    known = table if as_of is None else table.loc[table[when] <= pd.Timestamp(as_of)]
    known = known.loc[known["team"].notna()]
    # of deals created at the same instant, the greatest id (as the backtest's calls take it), not the last row
    order = [when, "opportunity_id"] if "opportunity_id" in known.columns else [when]
    return known.sort_values(order, kind="stable").drop_duplicates("owner", keep="last")


def roll_up(
    table: pd.DataFrame,
    teams: pd.Series,
    *,
    sums: Sequence[str] = (),
    weighted: Mapping[str, str] | None = None,
    owner: str = "owner",
    count: str = "reps",
    total: bool = True,
) -> pd.DataFrame:
    """A per-rep table summed per team, with the company total.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per rep, the rep in column `owner`.
    teams : pandas.Series
        Each rep's team, indexed by rep (`owner_teams`); a rep without one is rolled up under ``"no team"``.
        Empty (data without teams): the company row alone.
    sums : sequence of str
        Columns summed (amounts, counts); a team whose reps all lack a value has none.
    weighted : mapping of str to str, optional
        Columns averaged over the team's reps, weighted by another column, e.g. ``{"bias": "actual"}``: a call
        ratio weighted by bookings is the team's calls per unit booked. Reps missing either value are left out.
    owner : str
        The rep column of `table`.
    count : str
        The name of the column counting the team's reps.
    total : bool
        Add the company row (`ALL_TEAMS`) after the teams (not after a single team: it would repeat it).

    Returns
    -------
    pandas.DataFrame
        Columns ``team``, `count`, then `sums` and `weighted` in the table's order; one row per team (sorted),
        then the company row.

    Examples
    --------
    >>> reps = pd.DataFrame({"owner": ["a", "b", "c"], "actual": [100.0, 300.0, 50.0], "bias": [2.0, 1.0, np.nan]})
    >>> teams = pd.Series({"a": "X", "b": "X", "c": "Y"})
    >>> roll_up(reps, teams, sums=["actual"], weighted={"bias": "actual"}).to_dict("list")
    {'team': ['X', 'Y', 'all teams'], 'reps': [2, 1, 3], 'actual': [400.0, 50.0, 450.0], 'bias': [1.25, nan, 1.25]}
    >>> roll_up(reps, pd.Series(dtype="str"), sums=["actual"]).to_dict("list")  # data without teams: the company
    {'team': ['all teams'], 'reps': [3], 'actual': [450.0]}
    """
    weighted = dict(weighted or {})
    missing = [c for c in [owner, *sums, *weighted, *weighted.values()] if c not in table.columns]
    if missing:
        raise KeyError(f"roll_up: the table has no column {missing[0]!r}; columns: {list(table.columns)}")
    team = pd.Series(teams.reindex(table[owner].to_numpy()).to_numpy(), index=table.index, dtype="str")
    frame = table.assign(_team=team.fillna("no team"))
    groups = [(name, rows) for name, rows in frame.groupby("_team", sort=True)] if len(teams) else []
    if total and len(groups) != 1:  # one team (a team's own page): its row is the company's
        groups.append((ALL_TEAMS, frame))
    rows = []
    for name, part in groups:
        row: dict[str, Any] = {"team": name, count: int(part[owner].nunique())}
        for c in sums:
            row[c] = float(part[c].sum(min_count=1))
        for c, weight in weighted.items():
            values, weights = part[c].astype(float), part[weight].astype(float)
            ok = values.notna() & weights.notna() & np.isfinite(values)
            w = weights[ok]
            row[c] = float((values[ok] * w).sum() / w.sum()) if ok.any() and w.sum() > 0 else np.nan
        rows.append(row)
    rolled = [c for c in table.columns if c in sums or c in weighted]  # in the table's order
    return pd.DataFrame(rows, columns=["team", count, *rolled])


def teams_and_company(rows: pd.DataFrame, by_group: Callable[[pd.DataFrame, str], pd.DataFrame]) -> pd.DataFrame:
    """A roll-up computed from the rows themselves: `by_group` per team, then over every row as the company.

    Parameters
    ----------
    rows : pandas.DataFrame
        E.g. `salesforecast.adherence.deal_adherence` (one row per deal, a ``team`` column when the data have
        teams).
    by_group : callable
        ``by_group(rows, column)`` gives one row per value of `column`, indexed by it, e.g.
        `salesforecast.adherence.adherence_by`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``team``: one row per team, then `ALL_TEAMS` (the company row alone for data without teams; the
        team's row alone when there is one team).

    Examples
    --------
    >>> deals = pd.DataFrame({"team": ["X", "X", "Y"], "won": [1, 0, 1]})
    >>> teams_and_company(deals, lambda d, by: d.groupby(by)[["won"]].mean())["won"].round(2).to_dict()
    {'X': 0.5, 'Y': 1.0, 'all teams': 0.67}
    """
    parts = [by_group(rows, "team")] if "team" in rows.columns and rows["team"].notna().any() else []
    if not parts or len(parts[0]) != 1:
        parts.append(by_group(rows.assign(team=ALL_TEAMS), "team"))
    out = pd.concat(parts)
    out.index.name = "team"
    return out


def distance_from_target(ratios: pd.Series | np.ndarray, target: float = 1.0) -> np.ndarray:
    """How far each ratio lies from `target`, in log terms: 200% is as far from 100% as 50%.

    A ratio of 0 or infinity is infinitely far; a missing or negative ratio gets -1 (ranked last).

    Examples
    --------
    >>> distance_from_target(np.array([2.0, 0.5, 1.0, np.nan, 0.0])).round(3).tolist()
    [0.693, 0.693, 0.0, -1.0, inf]
    """
    r = np.asarray(ratios, dtype=float) / target
    with np.errstate(divide="ignore", invalid="ignore"):
        far = np.abs(np.log(np.where(r > 0, r, np.nan)))
    far = np.where(r == 0, np.inf, far)
    return np.where(np.isnan(far), -1.0, far)


def coverage_gap(coverage: pd.DataFrame) -> pd.Series:
    """The open pipeline each row still lacks to cover its remaining quota (`pipeline_coverage` columns).

    ``remaining_quota - open_pipeline``: the largest first are the gaps to look at. A row without a quota (the
    column absent or the value missing) has no gap to rank by: -inf, last.

    Examples
    --------
    >>> cov = pd.DataFrame({"remaining_quota": [100.0, 50.0, np.nan], "open_pipeline": [20.0, 80.0, 5.0]})
    >>> coverage_gap(cov).tolist()
    [80.0, -30.0, -inf]
    """
    if "remaining_quota" not in coverage.columns:
        return pd.Series(-np.inf, index=coverage.index)
    pipeline = coverage["open_pipeline"].astype(float).fillna(0.0)
    gap = coverage["remaining_quota"].astype(float) - pipeline
    return gap.fillna(-np.inf)
