"""What was done at each step: activities on deals and leads, and the stages' exit criteria.

The process map's ``exit_criteria`` (`salesforecast.process.ExitCriterion`) say what a deal should have done before
it leaves a stage: a meeting, a follow-up within three days of the meeting, a proposal, a field filled. This module
checks them against the ``activities`` table.

Definitions (the contract the tests check)
------------------------------------------
Activity in a stage visit
    An activity of the deal whose ``occurred_at`` is on or after the *day* the visit started (CRMs often store an
    activity's date without a time, at midnight, while the stage change carries one) and at or before the visit's
    end: the moment the deal left the stage, or the cutoff for a visit still open then.
Criterion met
    ``{activity: T, min: n}``: at least ``n`` activities of type ``T`` in the visit. With ``within_days: d``: the
    first activity of type ``T`` at or after the anchor came within ``d`` days of it (and at least ``n`` came after
    the anchor); the anchor is the first activity of type ``after`` in the visit when ``after`` is given (no such
    activity: not met), else the day the visit started. ``{field: F}``: the visit's ``F`` value is filled (the caller
    gives the value as known when the visit ended); a visit without that column cannot tell (missing).

The measures (replayable at any date: the visits as `salesforecast.history.DealHistory` knows them at ``as_of``,
and only the activities that happened by then)
-----------------------------------------------------------------------------------------------------------------
`criteria_adherence`
    One row per deal and visit to a stage with exit criteria, checked by `criteria_check` up to the moment the deal
    left the stage (or ``as_of``); a field criterion reads the history row in force when the visit ended. A visit is
    *completed* once the deal left the stage; its outcome is the deal's at ``as_of``.
`criteria_by_rep`
    Per rep and stage: completed visits and the share that met the criteria (visits in progress are not judged).
`criteria_outcomes` (does it pay?)
    Per stage: completed visits of deals closed by ``as_of`` that met the criteria against those that did not, of
    the same rep and, where such visits exist, the same segment, amount band and age band; the matched difference
    in win rate and in cycle days with deal-bootstrap intervals, and a verdict.
`activity_gaps`
    Per deal open at ``as_of``: activities so far and days since the last one (since creation when none); over
    `GAP_LIMIT_DAYS` the deal's amount is at risk.
`first_response`
    Per lead created by ``as_of``: hours from its creation to its first activity (from the day it was created, as
    above), NaN while it has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from salesforecast._utils import DAY_US, NAT, sorted_unique, to_us
from salesforecast.adherence import as_timestamp, wilson
from salesforecast.history import DealHistory
from salesforecast.process import ExitCriterion, SalesProcess
from salesforecast.schema import CRMData
from salesforecast.snapshots import known_at

__all__ = [
    "AGE_BANDS",
    "GAP_LIMIT_DAYS",
    "MIN_DEALS",
    "READ_COLUMNS",
    "activity_gaps",
    "criteria_adherence",
    "criteria_by_rep",
    "criteria_check",
    "criteria_outcomes",
    "first_response",
    "first_response_summary",
]

_DAY = pd.Timedelta(days=1)


def criteria_check(visits: pd.DataFrame, activities: pd.DataFrame, process: SalesProcess) -> pd.DataFrame:
    """Check each stage visit against its stage's exit criteria, with the activities of its deal.

    Parameters
    ----------
    visits : pandas.DataFrame
        One row per stage visit: ``opportunity_id``, ``stage`` (canonical name), ``entered_at`` and ``until`` (when
        the deal left the stage, or the cutoff for a visit still open then); optionally a column per field a
        criterion names (its value when the visit ended).
    activities : pandas.DataFrame
        The canonical ``activities`` table (``opportunity_id``, ``type``, ``occurred_at``); rows after a visit's
        ``until`` never count, so passing activities recorded later leaks nothing.
    process : SalesProcess
        The process map whose ``exit_criteria`` apply.

    Returns
    -------
    pandas.DataFrame
        Indexed like `visits`: ``n_criteria`` (int64, 0 for a stage without criteria), ``n_met`` (int64),
        ``met`` (nullable boolean: all criteria met; missing without criteria or when a field cannot be told)
        and ``unmet`` (the unmet criteria in words, ``"; "``-joined; empty when all are met).

    Examples
    --------
    >>> p = SalesProcess.from_dict({"stages": [{"name": "Discovery", "exit_criteria": [{"activity": "meeting"},
    ...     {"activity": "follow_up", "after": "meeting", "within_days": 3}]}, {"name": "Won", "kind": "won"},
    ...     {"name": "Lost", "kind": "lost"}]})
    >>> visits = pd.DataFrame({"opportunity_id": ["A", "B"], "stage": ["Discovery"] * 2,
    ...     "entered_at": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 00:00"]),
    ...     "until": pd.to_datetime(["2024-01-20", "2024-01-20"])})
    >>> acts = pd.DataFrame({"opportunity_id": ["A", "A", "B", "B"],
    ...     "type": ["meeting", "follow_up", "meeting", "follow_up"],
    ...     "occurred_at": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-02", "2024-01-09"])})
    >>> criteria_check(visits, acts, p)[["n_met", "met", "unmet"]].values.tolist()
    [[2, True, ''], [1, False, 'follow up within 3 days of the meeting']]
    """
    n = len(visits)
    n_criteria = np.zeros(n, dtype=np.int64)
    n_met = np.zeros(n, dtype=np.int64)
    unknown = np.zeros(n, dtype=bool)
    unmet = np.full(n, "", dtype=object)
    stages = visits["stage"].to_numpy(dtype=object)
    named = sorted({t for cs in process.exit_criteria.values() for c in cs for t in (c.activity, c.after) if t})
    acts = _rows(activities, ["opportunity_id", "type", "occurred_at"], _of_types(activities, named))
    deals = pd.Index(visits["opportunity_id"].unique())
    coded = _DealActivities(acts, deals, named)  # once for every stage
    deal = deals.get_indexer(visits["opportunity_id"])
    until = visits["until"].to_numpy("datetime64[us]")
    for stage, criteria in process.exit_criteria.items():
        rows = np.flatnonzero(stages == stage)
        if not len(rows):
            continue
        sub = visits.iloc[rows]
        start = _visit_starts(sub)
        types = {t for c in criteria for t in (c.activity, c.after) if t}
        pairs = coded.inside(deal[rows], start, until[rows], types)
        n_criteria[rows] = len(criteria)
        for c in criteria:
            if c.field is not None:
                if c.field not in sub.columns:
                    unknown[rows] = True
                    continue
                ok = sub[c.field].notna().to_numpy(dtype=bool)
            else:
                ok = _activity_met(c, pairs, start, len(rows))
            n_met[rows] += ok
            miss, words = rows[~ok], c.describe()
            unmet[miss] = np.where(unmet[miss] == "", words, unmet[miss] + f"; {words}")  # object arrays: no loop
    met = pd.array(n_met == n_criteria, dtype="boolean")
    met[(n_criteria == 0) | (unknown & (unmet == ""))] = pd.NA  # no criteria, or only a field left untold
    return pd.DataFrame(
        {
            "n_criteria": n_criteria,
            "n_met": n_met,
            "met": met,
            "unmet": pd.array(unmet, dtype="str"),
        },
        index=visits.index,
    )


class _DealActivities:
    """The activities of some deals on integer codes, sorted by deal then time: those inside a visit by bisection.

    Coded once per `criteria_check` (the deal ids and type names of millions of activities are looked up once, not
    per stage), and no pair of a visit with an activity outside it is ever built: each visit's activities are one
    contiguous range of the sorted ``(deal, time)`` keys.
    """

    def __init__(self, acts: pd.DataFrame, deals: pd.Index, named: Sequence[str]) -> None:
        self.named = list(named)
        code = deals.get_indexer(acts["opportunity_id"]).astype(np.int64)
        kind = pd.Index(self.named).get_indexer(acts["type"]).astype(np.int64)
        at = acts["occurred_at"].to_numpy("datetime64[us]").view(np.int64)
        keep = (code >= 0) & (kind >= 0) & (at != NAT)  # an undated activity is inside no visit
        code, kind, at = code[keep], kind[keep], at[keep]
        order = np.lexsort((at, code))  # by deal, then time (stable: table order among equal times)
        self.kind, self.at = kind[order], at[order]
        self.grid = sorted_unique(self.at)
        self.width = np.int64(len(self.grid) + 1)
        self.key = code[order] * self.width + np.searchsorted(self.grid, self.at)  # increasing

    def inside(self, deal: np.ndarray, start: np.ndarray, until: np.ndarray, types: set[str]) -> pd.DataFrame:
        """The activities of `types` inside each visit: ``visit`` (position), ``type``, ``at``.

        Visit ``i`` is deal code ``deal[i]`` from ``start[i]`` to ``until[i]`` (both included, ``datetime64[us]``;
        NaT at either end: none inside). Rows by visit, then time.
        """
        named = sorted(types)
        remap = np.full(len(self.named), -1, dtype=np.int64)  # a coded type -> its position among `named`
        for j, t in enumerate(named):
            if t in self.named:
                remap[self.named.index(t)] = j
        kind = remap[self.kind]
        sel = kind >= 0
        key, at, kind = self.key[sel], self.at[sel], kind[sel]
        s, u = start.view(np.int64), until.view(np.int64)
        valid = (s != NAT) & (u != NAT) & (deal >= 0)
        base = np.maximum(deal, 0) * self.width
        lo = np.searchsorted(key, base + np.searchsorted(self.grid, s, "left"), "left")
        hi = np.searchsorted(key, base + np.searchsorted(self.grid, u, "right"), "left")
        n = np.where(valid, np.maximum(hi - lo, 0), 0)
        visit = np.repeat(np.arange(len(deal), dtype=np.int64), n)
        pos = np.arange(len(visit), dtype=np.int64) - np.repeat(np.cumsum(n) - n - lo, n)
        return pd.DataFrame(
            {
                "visit": visit,
                "type": pd.Categorical.from_codes(kind[pos], categories=named),
                "at": at[pos].view("datetime64[us]"),
            }
        )


def _visit_starts(sub: pd.DataFrame) -> np.ndarray:
    """When each visit starts counting activities: the day it entered the stage (``datetime64[us]``)."""
    return sub["entered_at"].dt.floor("D").to_numpy("datetime64[us]")


def _visit_activities(sub: pd.DataFrame, acts: pd.DataFrame, types: set[str]) -> pd.DataFrame:
    """The activities of the given types inside each visit: ``visit`` (position in `sub`), ``type``, ``at``.

    The pairs of an inner merge of the visits with the activities on the deal, kept where the activity falls
    inside the visit (from the day it entered the stage to ``until``, both included), by visit then time; built on
    integer codes (`_DealActivities`): no table of deal ids is copied per pair.
    """
    deals = pd.Index(sub["opportunity_id"].unique())
    coded = _DealActivities(acts, deals, sorted(types))
    until = sub["until"].to_numpy("datetime64[us]")
    return coded.inside(deals.get_indexer(sub["opportunity_id"]), _visit_starts(sub), until, types)


def _activity_met(c: ExitCriterion, pairs: pd.DataFrame, start: np.ndarray, n: int) -> np.ndarray:
    """Whether each of `n` visits meets the activity criterion `c` (see the module's definitions)."""
    of_type = pairs[pairs["type"] == c.activity]
    if c.within_days is None:
        counts = np.bincount(of_type["visit"].to_numpy(dtype=np.int64), minlength=n)
        return counts >= c.min
    if c.after is not None:
        anchors = pairs[pairs["type"] == c.after].groupby("visit")["at"].min()
        anchor = pd.Series(anchors, index=pd.RangeIndex(n)).to_numpy(dtype="datetime64[us]")
    else:
        anchor = start.astype("datetime64[us]")
    visit = of_type["visit"].to_numpy(dtype=np.int64)
    at = of_type["at"].to_numpy(dtype="datetime64[us]")
    after_anchor = at >= anchor[visit]  # NaT anchor (no `after` activity): never
    visit, at = visit[after_anchor], at[after_anchor]
    counts = np.bincount(visit, minlength=n)
    first = pd.Series(at).groupby(visit).min().reindex(range(n)).to_numpy(dtype="datetime64[us]")
    in_time = (first - anchor) <= np.timedelta64(int(c.within_days * 86_400_000_000), "us")
    return in_time & (counts >= c.min)


# ------------------------------------------------------------------------------------------- measures
#: Bands of a deal's age when it entered a stage (days since its creation): ``(low, high, label)``, ``[low, high)``.
AGE_BANDS: tuple[tuple[float, float, str], ...] = (
    (0.0, 7.0, "under 7 days"),
    (7.0, 30.0, "7 to 30 days"),
    (30.0, 90.0, "30 to 90 days"),
    (90.0, np.inf, "90 days or more"),
)

#: `criteria_outcomes` says the data cannot tell when fewer closed deals than this met a stage's criteria, or
#: fewer did not.
MIN_DEALS = 10

#: What the activity measures and features read of an activity: its deal or lead, its type and its time (never its
#: id, owner, subject, outcome or duration); a step that reads nothing else may drop the other columns.
READ_COLUMNS: tuple[str, ...] = ("opportunity_id", "lead_id", "type", "occurred_at")

#: `activity_gaps`: an open deal without an activity for longer than this many days is at risk.
GAP_LIMIT_DAYS = 14.0

#: The static columns of a deal `criteria_adherence` carries when the opportunities have them.
_STATIC = ("owner", "team", "segment")


def _amount_bands(amount: np.ndarray) -> np.ndarray:
    """Quartile bands of the amounts (``"up to 12,000"``, ``"12,000 to 30,000"``, ``"over 80,000"``; ``"unknown"``)."""
    out = np.full(len(amount), "unknown", dtype=object)
    ok = ~np.isnan(amount)
    if not ok.any():
        return out
    edges = np.unique(np.quantile(amount[ok], [0.25, 0.5, 0.75]))
    names = [f"up to {edges[0]:,.0f}"]
    names += [f"{a:,.0f} to {b:,.0f}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    names.append(f"over {edges[-1]:,.0f}")
    out[ok] = np.asarray(names, dtype=object)[np.searchsorted(edges, amount[ok], side="left")]
    return out


def _age_bands(days: np.ndarray) -> np.ndarray:
    """The `AGE_BANDS` label of each age in days (missing: ``"unknown"``)."""
    lows = np.array([b[0] for b in AGE_BANDS[1:]])
    names = np.asarray([b[2] for b in AGE_BANDS] + ["unknown"], dtype=object)
    band = np.searchsorted(lows, days, side="right")
    return names[np.where(np.isnan(days), len(AGE_BANDS), band)]


def _rows(acts: pd.DataFrame, columns: Sequence[str], keep: np.ndarray | None) -> pd.DataFrame:
    """`columns` of the rows of `acts` where `keep` holds (all of them: a view, no copy)."""
    out = acts[list(columns)]
    return out if keep is None else out[keep]


def _of_types(acts: pd.DataFrame, types: Sequence[str]) -> np.ndarray:
    """Activities of a deal and of one of `types`."""
    return acts["opportunity_id"].notna().to_numpy(dtype=bool) & acts["type"].isin(list(types)).to_numpy(dtype=bool)


def _activities_until(data: CRMData, as_of: pd.Timestamp, columns: Sequence[str], of: str) -> pd.DataFrame:
    """`columns` of the activities known at `as_of` of a deal or a lead (`of`: its id column), and no others.

    Only what happened by then (a later activity is never seen); no copy of the table when every row is kept.
    """
    acts = data.activities
    keep = (acts["occurred_at"] <= as_of).to_numpy(dtype=bool) & acts[of].notna().to_numpy(dtype=bool)
    return _rows(acts, columns, keep)


def criteria_adherence(data: CRMData, as_of: Any = None) -> pd.DataFrame:
    """One row per deal and visit to a stage with exit criteria, as known at `as_of`: whether its criteria were met.

    The visits are `salesforecast.history.DealHistory.visits` at `as_of` (so the rules of as-of reconstruction
    apply: deals known then, changes up to then, a visit still open then is not completed); each is checked with
    `criteria_check` (the one definition of a criterion met) against the activities that happened by `as_of`.

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities, stage_history, activities) and the process map whose ``exit_criteria``
        apply.
    as_of : date, optional
        Use only what was known then (default: ``data.as_of``); an activity after it never counts.

    Returns
    -------
    pandas.DataFrame
        By ``opportunity_id`` then entry time: ``opportunity_id``, ``owner``, ``team``, ``segment`` (those the
        opportunities have), ``stage``, ``entered_at``, ``left_at`` (NaT while the deal is still in the stage at
        `as_of`), ``completed`` (left the stage by `as_of`), ``amount`` (from the history row in force when the
        visit ended: the row of the move out, or the one at `as_of`) and ``amount_band`` (its quartile among these
        visits), ``age_days`` (days from the deal's creation to its entry into the stage) and ``age_band``
        (`AGE_BANDS`), ``n_criteria``, ``n_met``, ``met``, ``unmet`` (`criteria_check`), ``outcome`` (won, lost or
        open at `as_of`) and ``cycle_days`` (creation to entering the closed stage; closed deals only). A field
        a criterion names is read from the same history row when the history has it, else from the opportunities
        as they stand. ``attrs``: ``as_of``, ``stages`` (the stages with criteria, in process order) and
        ``criteria`` (stage -> the criteria in words).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> from dataclasses import replace
    >>> from salesforecast.process import SalesProcess
    >>> data = load_sample()
    >>> spec = data.process.to_dict()
    >>> for stage in spec["stages"]:
    ...     _ = stage.pop("exit_criteria", None)
    >>> spec["stages"][1]["exit_criteria"] = [{"activity": "meeting"}]
    >>> bare = replace(data, process=SalesProcess.from_dict(spec), activities=data.activities.iloc[:0])
    >>> rows = criteria_adherence(bare)
    >>> rows["stage"].unique().tolist(), bool(rows["met"].any())  # without activities: none met
    (['Qualification'], False)
    """
    process = data.process
    as_of = as_timestamp(as_of, data)
    crit = process.exit_criteria
    stages = [s for s in process.open_stages if s in crit]
    h = DealHistory.from_data(data)
    v = h.visits(as_of)
    names = np.asarray(process.stage_names, dtype=object)
    codes = [process.stage_names.index(s) for s in stages]
    idx = np.flatnonzero(np.isin(v.stage, codes))
    deal = v.deal[idx]
    pos = v.deal_pos[deal]
    opps = h.opportunities
    entered = v.entered[idx]
    end = entered + v.duration[idx]
    completed = v.dest[idx] != -1
    # the deal's outcome at as_of and when it closed: its last visit known then (as DealHistory.visits counts them)
    t = to_us(as_of)
    d_all, _, s_all = h.visit_starts
    kept = h.known_deals(as_of) if t < h.data_end else np.ones(len(h.ids), dtype=bool)
    keep = kept[d_all] & (s_all <= t)
    code, starts = (np.cumsum(kept) - 1)[d_all[keep]], s_all[keep]
    last = np.r_[code[1:] != code[:-1], True][: len(code)]
    final_start = np.full(len(v.final), NAT, dtype=np.int64)
    final_start[code[last]] = starts[last]
    won, lost = np.isin(v.final, h.won_codes), np.isin(v.final, h.lost_codes)
    created = opps["created_at"].to_numpy("datetime64[us]").view(np.int64)[v.deal_pos]
    cycle = np.where(won | lost, (final_start - created) / DAY_US, np.nan)
    ids = opps["opportunity_id"].take(pos).reset_index(drop=True)
    rows = h.row_at(ids.to_numpy(), end)
    amount = np.where(rows >= 0, h.amount[np.maximum(rows, 0)], np.nan)
    age = np.maximum(entered - created[deal], 0) / DAY_US
    visits = pd.DataFrame({"opportunity_id": ids})
    for c in _STATIC:
        if c in opps.columns:
            visits[c] = opps[c].take(pos).reset_index(drop=True)
    visits["stage"] = pd.Series(names[v.stage[idx]], dtype="str")
    visits["entered_at"] = entered.view("datetime64[us]")
    visits["until"] = end.view("datetime64[us]")
    fields = {c.field for s in stages for c in crit[s] if c.field is not None}
    for f in sorted(fields):
        if f in h.frame.columns:
            visits[f] = h.frame[f].take(np.maximum(rows, 0)).reset_index(drop=True).where(rows >= 0)
        elif f in opps.columns:
            visits[f] = opps[f].take(pos).reset_index(drop=True)
    acts = _activities_until(data, as_of, ["opportunity_id", "type", "occurred_at"], of="opportunity_id")
    checked = criteria_check(visits, acts, process)
    out = visits.drop(columns=["until", *sorted(fields & set(visits.columns) - set(_STATIC))])
    out["left_at"] = np.where(completed, end, NAT).view("datetime64[us]")
    out["completed"] = completed
    out["amount"] = amount
    out["amount_band"] = pd.Series(_amount_bands(amount), dtype="str")
    out["age_days"] = age
    out["age_band"] = pd.Series(_age_bands(age), dtype="str")
    out = pd.concat([out, checked], axis=1)
    out["outcome"] = pd.Series(np.where(won, "won", np.where(lost, "lost", "open"))[deal], dtype="str")
    out["cycle_days"] = cycle[deal]
    out.attrs["as_of"] = as_of
    out.attrs["stages"] = stages
    out.attrs["criteria"] = {s: "; ".join(c.describe() for c in crit[s]) for s in stages}
    return out


def criteria_by_rep(adherence: pd.DataFrame, by: str = "owner") -> pd.DataFrame:
    """Per rep (or team) and stage with exit criteria: the completed visits and the share that met the criteria.

    Parameters
    ----------
    adherence : pandas.DataFrame
        The output of `criteria_adherence`.
    by : str
        The column of the unit (``"owner"``, ``"team"``).

    Returns
    -------
    pandas.DataFrame
        One row per unit and stage, by unit then the stages' process order: `by`, ``team`` (when `by` is
        ``owner`` and the table has teams: the rep's team), ``stage``, ``visits`` (completed visits: the deal left
        the stage by the report date), ``visits_met`` (of them, those that met every criterion), ``share_met``
        (``visits_met / visits``; a visit whose criteria cannot be told, a field the data lack, is left out of
        both) and ``open_visits`` (visits still in progress, not judged yet).

    Examples
    --------
    >>> t = pd.DataFrame({"owner": ["Ann", "Ann", "Bo"], "stage": ["S"] * 3, "completed": [True, True, False],
    ...     "met": pd.array([True, False, True], dtype="boolean")})
    >>> criteria_by_rep(t)[["owner", "visits", "visits_met", "share_met", "open_visits"]].values.tolist()
    [['Ann', 2, 1, 0.5, 0], ['Bo', 0, 0, nan, 1]]
    """
    for c in (by, "stage", "completed", "met"):
        if c not in adherence.columns:
            raise KeyError(f"adherence has no column {c!r}; pass the output of criteria_adherence")
    done = adherence["completed"].to_numpy(dtype=bool)
    known = adherence["met"].notna().to_numpy(dtype=bool)
    frame = pd.DataFrame(
        {
            by: adherence[by],
            "stage": adherence["stage"],
            "visits": (done & known).astype(np.int64),
            "visits_met": (done & adherence["met"].fillna(False).to_numpy(dtype=bool)).astype(np.int64),
            "open_visits": (~done).astype(np.int64),
        }
    )
    out = frame.groupby([by, "stage"], sort=True, dropna=False)[["visits", "visits_met", "open_visits"]].sum()
    out = out.reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["share_met"] = np.where(out["visits"] > 0, out["visits_met"] / out["visits"].clip(lower=1), np.nan)
    order = list(adherence.attrs.get("stages") or sorted(adherence["stage"].dropna().unique()))
    rank = pd.Index(order).get_indexer(out["stage"])
    out = out.assign(_rank=np.where(rank < 0, len(order), rank)).sort_values([by, "_rank"], kind="stable")
    columns = [by, "stage", "visits", "visits_met", "share_met", "open_visits"]
    if by == "owner" and "team" in adherence.columns:
        team = adherence.groupby("owner", sort=False, dropna=False)["team"].first()
        out["team"] = out["owner"].map(team)
        columns.insert(1, "team")
    return out[columns].reset_index(drop=True)


def _levels(columns: Sequence[str]) -> list[list[str]]:
    """The matching keys, finest first: stage and rep always, then segment, amount band, age band dropped in turn."""
    held = ["stage"] + [c for c in ("owner",) if c in columns]
    loose = [c for c in ("segment", "amount_band", "age_band") if c in columns]
    return [held + loose[: len(loose) - i] for i in range(len(loose) + 1)]


def _matched(
    y: np.ndarray, treated: np.ndarray, groups: Sequence[np.ndarray], weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matched comparison of `y` (treated - comparable) under each row of `weights` (replicates x visits).

    Each treated visit is compared with the mean `y` of the untreated visits of its group at the finest level of
    `groups` (codes per visit, finest first, each level nested in the next) that has any; the differences are
    averaged with the treated visits' weights. Treated visits of one finest group share their comparison, so the
    work is per group, not per visit. Returns per replicate the difference and the treated mean, and per treated
    visit the level it was matched at (-1: none) under the first replicate.
    """
    t = np.flatnonzero(treated)
    c = np.flatnonzero(~treated)
    n = len(y)
    finest, inverse = np.unique(groups[0][t], return_inverse=True)  # the finest groups holding treated visits
    first_t = t[np.unique(inverse, return_index=True)[1]]  # a treated visit of each: its groups at every level
    tm = sparse.csr_matrix((np.ones(len(t)), (inverse, t)), shape=(len(finest), n))
    wy = (weights * y).T
    t_w, t_y = np.asarray(tm @ weights.T), np.asarray(tm @ wy)  # per finest group: treated weight and weighted y
    comparable = np.full(t_w.shape, np.nan)
    level = np.full(len(finest), -1, dtype=np.int64)
    for i, g in enumerate(groups):
        m = sparse.csr_matrix((np.ones(len(c)), (g[c], c)), shape=(int(g.max()) + 1, n))
        cn, cy = np.asarray(m @ weights.T)[g[first_t]], np.asarray(m @ wy)[g[first_t]]
        fill = np.isnan(comparable) & (cn > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            comparable = np.where(fill, cy / np.where(cn > 0, cn, 1.0), comparable)
        level[(level < 0) & fill[:, 0]] = i
    ok = ~np.isnan(comparable)
    den = np.where(ok, t_w, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.where(den > 0, np.where(ok, t_y, 0.0).sum(axis=0) / den, np.nan)
        other = np.where(den > 0, np.where(ok, t_w * np.nan_to_num(comparable), 0.0).sum(axis=0) / den, np.nan)
    return own - other, own, level[inverse]


#: Bootstrap replicates are drawn and compared in chunks of at most this many weights (replicates x visits).
_BOOT_CELLS = 4_000_000


def _bootstrap(
    won: np.ndarray,
    cycle: np.ndarray,
    met: np.ndarray,
    groups: Sequence[np.ndarray],
    deals: pd.Series,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """`n_boot` replicates of the matched win-rate and cycle differences, deals resampled with their visits.

    Each replicate draws as many deals as there are, uniformly with replacement (the count of each deal is its
    visits' weight).
    The replicates are drawn in chunks (`_BOOT_CELLS` weights at most), so memory stays bounded at any size.
    """
    deal = pd.factorize(deals)[0]
    n_deals = int(deal.max()) + 1
    chunk = max(1, _BOOT_CELLS // max(len(deal), 1))
    wins, cycles = [], []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        picks = rng.integers(0, n_deals, size=(size, n_deals)) + (np.arange(size) * n_deals)[:, None]
        counts = np.bincount(picks.ravel(), minlength=size * n_deals).reshape(size, n_deals)
        draws = counts[:, deal].astype("float64")
        wins.append(_matched(won, met, groups, draws)[0])
        cycles.append(_matched(cycle, met, groups, draws)[0])
    return np.concatenate(wins), np.concatenate(cycles)


def _pays_verdict(
    stage: str, n1: int, n0: int, matched: int, d: float, lo: float, hi: float, ci: float, min_deals: int, one: str
) -> str:
    """One plain-English line on whether meeting `stage`'s exit criteria went with winning more often."""
    if one:
        return f"Every closed deal that passed {stage} was {one}, so win rates cannot tell whether its criteria pay."
    if n1 < min_deals or n0 < min_deals:
        return (
            f"Too few closed deals to tell: {n1:,} met the {stage} criteria and {n0:,} did not (at least {min_deals} "
            "on each side are needed)."
        )
    if matched == 0 or np.isnan(d):
        return (
            f"No deal that met the {stage} criteria has a comparable deal of the same rep that did not: no comparison."
        )
    level = f"{ci:.0%} interval"
    pts = abs(d) * 100
    if lo > 0 or hi < 0:
        way, a, b = ("more", lo, hi) if lo > 0 else ("less", -hi, -lo)
        return (
            f"Deals that met the {stage} criteria won {pts:.1f} points {way} often than comparable deals that did not "
            f"({level} {a * 100:.1f} to {b * 100:.1f} points; {matched:,} deals matched)."
        )
    way = "more" if d > 0 else "less"
    return (
        f"The data cannot tell whether the {stage} criteria pay: deals that met them won {pts:.1f} points {way} often "
        f"than comparable deals that did not, but the {level} ({lo * 100:+.1f} to {hi * 100:+.1f} points) includes "
        "no difference."
    )


def criteria_outcomes(
    adherence: pd.DataFrame, ci: float = 0.9, n_boot: int = 1000, seed: int = 0, min_deals: int = MIN_DEALS
) -> pd.DataFrame:
    """Does meeting a stage's exit criteria pay? Per stage: win rate and cycle time, met vs comparable not met.

    Parameters
    ----------
    adherence : pandas.DataFrame
        The output of `criteria_adherence` (possibly filtered, e.g. to one team).
    ci : float
        Confidence level of the intervals, in (0, 1).
    n_boot : int
        Bootstrap replicates.
    seed : int
        Seed of the bootstrap; the same inputs give the same output.
    min_deals : int
        Fewer closed deals than this on either side (met, not met): the verdict says the data cannot tell.

    Returns
    -------
    pandas.DataFrame
        One row per stage with exit criteria (index ``stage``, process order):

        ``criteria``
            The stage's criteria in words.
        ``deals_met``, ``deals_not_met``, ``win_rate_met``, ``win_rate_not_met``
            Completed visits of closed deals that met / did not meet the criteria, and their raw win rates (won /
            closed): a raw comparison, biased by whatever differs between the two groups (the rep above all).
        ``n_matched``, ``n_comparable``, ``deals_compared``
            The met visits that have comparable visits, the not-met visits compared with them, and their sum.
        ``win_rate_matched``, ``win_rate_comparable``
            The matched met visits' win rate, and the mean win rate of their comparable visits.
        ``win_rate_diff``, ``ci_low``, ``ci_high``
            ``win_rate_matched - win_rate_comparable``, with its percentile-bootstrap interval.
        ``cycle_days_diff``, ``cycle_ci_low``, ``cycle_ci_high``
            The same matched difference of the mean cycle days (creation to close), with its interval.
        ``verdict``
            One plain-English line; it says when the data cannot tell (fewer than `min_deals` closed deals on a
            side, no comparable deals, an interval that includes no difference, one outcome only).

    Notes
    -----
    *Who is compared.* Completed visits (the deal left the stage by the report date) of deals closed by then, whose
    criteria can be told: an open deal has no outcome yet, and a visit in progress may still meet its criteria.

    *Like with like.* A visit that met the criteria is compared with the visits that did not, in the same stage,
    **of the same rep**, of the same segment, amount band (quartile) and age band (days from creation to entering
    the stage, `AGE_BANDS`). The rep is held fixed because compliance is a habit of the rep (some reps skip
    follow-ups) and reps differ in how often they win: across reps, the comparison would credit the criteria with
    the skill of the reps who meet them. When a met visit has no such visit, the match is coarsened, dropping the
    age band, then the amount band, then the segment, but never the rep or the stage; a met visit of a rep without
    any not-met visit in the stage is left out (``n_matched`` counts the others). The difference is averaged over
    the matched met visits (the effect on those that met the criteria): when meeting the criteria changes a deal's
    win probability by the same amount whoever the rep, this estimates that change, "the same deal with vs without
    the criteria met", without the bias of the rep. It stays observational: a cause of both meeting the criteria
    and winning that is none of these (a deal lost before its follow-up was due looks like a deal that skipped
    it) is not removed.

    *Intervals.* Deals are resampled with replacement (each deal with all its visits to the stage) `n_boot` times,
    the whole matched comparison redone on each resample (vectorised: one sparse product per level), and the
    interval is the central `ci` of the replicates.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> n = 400
    >>> met = rng.random(n) < 0.5
    >>> t = pd.DataFrame({"opportunity_id": [f"D{i}" for i in range(n)], "owner": rng.choice(["A", "B"], n),
    ...     "stage": "S", "completed": True, "met": pd.array(met, dtype="boolean"),
    ...     "outcome": np.where(rng.random(n) < np.where(met, 0.6, 0.3), "won", "lost"), "cycle_days": 30.0})
    >>> out = criteria_outcomes(t, n_boot=200)
    >>> bool(out.loc["S", "ci_low"] < 0.3 < out.loc["S", "ci_high"]), out.loc["S", "verdict"][:40]
    (True, 'Deals that met the S criteria won 33.7 p')
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be a confidence level between 0 and 1 (e.g. 0.9), got {ci!r}")
    for c in ("opportunity_id", "stage", "completed", "met", "outcome", "cycle_days"):
        if c not in adherence.columns:
            raise KeyError(f"adherence has no column {c!r}; pass the output of criteria_adherence")
    alpha = (1 - ci) / 2
    z = float(stats.norm.ppf(0.5 + ci / 2))
    base = adherence[
        adherence["completed"].to_numpy(dtype=bool)
        & adherence["outcome"].isin(["won", "lost"]).to_numpy(dtype=bool)
        & adherence["met"].notna().to_numpy(dtype=bool)
    ].reset_index(drop=True)
    stages = list(adherence.attrs.get("stages") or sorted(adherence["stage"].dropna().unique()))
    words = adherence.attrs.get("criteria", {})
    levels = _levels(list(base.columns))
    rng = np.random.default_rng(seed)
    rows = []
    for stage in stages:  # a loop over the stages with criteria, not over deals
        sub = base[base["stage"].eq(stage).to_numpy(dtype=bool)].reset_index(drop=True)
        met = sub["met"].to_numpy(dtype=bool)
        won = sub["outcome"].eq("won").to_numpy(dtype="float64")
        cycle = sub["cycle_days"].to_numpy(dtype="float64")
        n1, n0 = int(met.sum()), int((~met).sum())
        w1, w0 = wilson(float(won[met].sum()), n1, z), wilson(float(won[~met].sum()), n0, z)
        one = ("won" if won.all() else "lost" if not won.any() else "") if len(sub) else ""
        row = {
            "stage": stage,
            "criteria": words.get(stage, ""),
            "deals_met": n1,
            "deals_not_met": n0,
            "win_rate_met": w1[0],
            "win_rate_not_met": w0[0],
        }
        est = {k: np.nan for k in ("win_rate_matched", "win_rate_comparable", "win_rate_diff", "ci_low", "ci_high")}
        est |= {k: np.nan for k in ("cycle_days_diff", "cycle_ci_low", "cycle_ci_high")}
        n_matched = n_comparable = 0
        if n1 and n0:
            groups = [sub.groupby(keys, sort=True, dropna=False).ngroup().to_numpy(dtype=np.int64) for keys in levels]
            d, own, level = _matched(won, met, groups, np.ones((1, len(sub))))
            n_matched = int((level >= 0).sum())
            t = np.flatnonzero(met)
            used = np.zeros(len(sub), dtype=bool)
            for i, g in enumerate(groups):
                used |= ~met & np.isin(g, g[t[level == i]])
            n_comparable = int(used.sum())
            if n_matched:
                boot, cboot = _bootstrap(won, cycle, met, groups, sub["opportunity_id"], n_boot, rng)
                cd = _matched(cycle, met, groups, np.ones((1, len(sub))))[0]
                est = {
                    "win_rate_matched": float(own[0]),
                    "win_rate_comparable": float(own[0] - d[0]),
                    "win_rate_diff": float(d[0]),
                    "ci_low": float(np.nanquantile(boot, alpha)),
                    "ci_high": float(np.nanquantile(boot, 1 - alpha)),
                    "cycle_days_diff": float(cd[0]),
                    "cycle_ci_low": float(np.nanquantile(cboot, alpha)),
                    "cycle_ci_high": float(np.nanquantile(cboot, 1 - alpha)),
                }
        if one:
            est |= {"win_rate_diff": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        row |= {"n_matched": n_matched, "n_comparable": n_comparable, "deals_compared": n_matched + n_comparable}
        row |= est
        row["verdict"] = _pays_verdict(
            stage, n1, n0, n_matched, est["win_rate_diff"], est["ci_low"], est["ci_high"], ci, min_deals, one
        )
        rows.append(row)
    columns = [
        "stage",
        "criteria",
        "deals_met",
        "deals_not_met",
        "win_rate_met",
        "win_rate_not_met",
        "n_matched",
        "n_comparable",
        "deals_compared",
        "win_rate_matched",
        "win_rate_comparable",
        "win_rate_diff",
        "ci_low",
        "ci_high",
        "cycle_days_diff",
        "cycle_ci_low",
        "cycle_ci_high",
        "verdict",
    ]
    out = pd.DataFrame(rows, columns=columns).set_index("stage")
    for c in ("criteria", "verdict"):
        out[c] = out[c].astype("str")
    out.attrs["ci"] = ci
    out.attrs["matched_on"] = levels[0] if levels else ["stage"]
    out.attrs["basis"] = "completed stage visits of deals closed by the report date"
    return out


def activity_gaps(data: CRMData, as_of: Any = None, limit_days: float = GAP_LIMIT_DAYS) -> pd.DataFrame:
    """Per deal open at `as_of`: its activities so far and the days since the last one.

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        The report date (default: ``data.as_of``): the deals open then (`salesforecast.snapshots.known_at`) and the
        activities that happened by then.
    limit_days : float
        A deal with no activity for longer than this is at risk.

    Returns
    -------
    pandas.DataFrame
        One row per open deal, by ``opportunity_id``: ``opportunity_id``, ``owner``, ``team`` (when present),
        ``stage``, ``amount``, ``created_at``, ``activities`` (logged by `as_of`), ``last_activity_at`` (NaT when
        none), ``days_since_activity`` (days from the last activity, or from the deal's creation when it has none,
        to `as_of`), ``over_limit`` (that exceeds `limit_days`) and ``amount_at_risk`` (the amount of a deal over
        the limit, else 0). ``attrs``: ``as_of``, ``limit_days``.

    Examples
    --------
    >>> from dataclasses import replace
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> gaps = activity_gaps(replace(data, activities=data.activities.iloc[:0]))  # none: counted from creation
    >>> bool((gaps["activities"] == 0).all()), bool(gaps["over_limit"].any())
    (True, True)
    """
    if not limit_days > 0:
        raise ValueError(f"limit_days must be a positive number of days, got {limit_days!r}")
    as_of = as_timestamp(as_of, data)
    known = known_at(data, as_of) if as_of < data.as_of else data
    opps = known.opportunities
    opps = opps[~opps["is_closed"].to_numpy(dtype=bool)]
    columns = ["opportunity_id", *[c for c in ("owner", "team") if c in opps.columns], "stage", "amount", "created_at"]
    out = opps[columns].sort_values("opportunity_id", kind="stable").reset_index(drop=True)
    acts = _activities_until(data, as_of, ["opportunity_id", "occurred_at"], of="opportunity_id")
    per = acts.groupby("opportunity_id")["occurred_at"].agg(["size", "max"]) if len(acts) else None
    if per is None or per.empty:
        out["activities"] = np.zeros(len(out), dtype=np.int64)
        out["last_activity_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us]")
    else:
        out["activities"] = out["opportunity_id"].map(per["size"]).fillna(0).astype(np.int64)
        out["last_activity_at"] = out["opportunity_id"].map(per["max"]).astype("datetime64[us]")
    since = out["last_activity_at"].fillna(out["created_at"])
    out["days_since_activity"] = ((as_of - since) / pd.Timedelta(days=1)).clip(lower=0).astype("float64")
    out["over_limit"] = out["days_since_activity"].gt(limit_days).to_numpy(dtype=bool)
    out["amount_at_risk"] = np.where(out["over_limit"], out["amount"].fillna(0.0), 0.0)
    out.attrs["as_of"] = as_of
    out.attrs["limit_days"] = float(limit_days)
    return out


def first_response(data: CRMData, as_of: Any = None) -> pd.DataFrame:
    """Per lead created by `as_of`: the hours from its creation to its first activity.

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        The report date (default: ``data.as_of``); an activity after it is not seen.

    Returns
    -------
    pandas.DataFrame
        One row per lead, by ``lead_id``: ``lead_id``, ``owner`` (when present), ``created_at``, ``activities``
        (the lead's activities by `as_of`), ``first_activity_at`` and ``hours_to_first_activity`` (NaN when none
        yet). An activity counts from the *day* the lead was created (an activity stored as a date, at midnight,
        on that day is a response the same day: 0 hours), as in `criteria_check`.

    Examples
    --------
    >>> from dataclasses import replace
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> responses = first_response(replace(data, activities=data.activities.iloc[:0]))  # no activities: none yet
    >>> len(responses) == len(data.leads), bool(responses["hours_to_first_activity"].isna().all())
    (True, True)
    """
    as_of = as_timestamp(as_of, data)
    leads = data.leads
    leads = leads[(leads["created_at"] <= as_of).to_numpy(dtype=bool)]
    columns = ["lead_id", *[c for c in ("owner",) if c in leads.columns], "created_at"]
    out = leads[columns].sort_values("lead_id", kind="stable").reset_index(drop=True)
    acts = _activities_until(data, as_of, ["lead_id", "occurred_at"], of="lead_id")
    if acts.empty:
        out["activities"] = np.zeros(len(out), dtype=np.int64)
        out["first_activity_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us]")
    else:
        pairs = acts.merge(out[["lead_id", "created_at"]], on="lead_id", how="inner")
        pairs = pairs[(pairs["occurred_at"] >= pairs["created_at"].dt.floor("D")).to_numpy(dtype=bool)]
        per = pairs.groupby("lead_id")["occurred_at"].agg(["size", "min"])
        out["activities"] = out["lead_id"].map(per["size"]).fillna(0).astype(np.int64)
        out["first_activity_at"] = out["lead_id"].map(per["min"]).astype("datetime64[us]")
    hours = (out["first_activity_at"] - out["created_at"]) / pd.Timedelta(hours=1)
    out["hours_to_first_activity"] = hours.clip(lower=0).astype("float64")
    out.attrs["as_of"] = as_of
    return out


def first_response_summary(responses: pd.DataFrame) -> dict[str, float]:
    """The summary of `first_response`: leads, how many had a response, and how fast.

    Returns
    -------
    dict
        ``leads``, ``responded`` (with at least one activity), ``share_responded``, ``median_hours`` and
        ``p90_hours`` (over the leads that had a response; NaN when none), ``share_within_24h`` (of all leads).

    Examples
    --------
    >>> r = pd.DataFrame({"hours_to_first_activity": [1.0, 3.0, 30.0, np.nan]})
    >>> s = first_response_summary(r)
    >>> s["responded"], s["median_hours"], s["share_within_24h"]
    (3, 3.0, 0.5)
    """
    h = responses["hours_to_first_activity"].to_numpy(dtype="float64")
    done = h[~np.isnan(h)]
    n = len(h)
    return {
        "leads": n,
        "responded": len(done),
        "share_responded": len(done) / n if n else np.nan,
        "median_hours": float(np.median(done)) if len(done) else np.nan,
        "p90_hours": float(np.quantile(done, 0.9)) if len(done) else np.nan,
        "share_within_24h": float((done <= 24).sum() / n) if n else np.nan,
    }
