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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from salesforecast.process import ExitCriterion, SalesProcess

__all__ = ["criteria_check"]

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
    acts = activities[activities["opportunity_id"].notna()] if len(activities) else activities
    for stage, criteria in process.exit_criteria.items():
        rows = np.flatnonzero(stages == stage)
        if not len(rows):
            continue
        sub = visits.iloc[rows]
        pairs = _visit_activities(sub, acts, {t for c in criteria for t in (c.activity, c.after) if t})
        start = sub["entered_at"].dt.floor("D").to_numpy()
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
            unmet[rows[~ok]] = [f"{u}; {c.describe()}" if u else c.describe() for u in unmet[rows[~ok]]]
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


def _visit_activities(sub: pd.DataFrame, acts: pd.DataFrame, types: set[str]) -> pd.DataFrame:
    """The activities of the given types inside each visit: ``visit`` (position in `sub`), ``type``, ``at``."""
    left = pd.DataFrame(
        {
            "visit": np.arange(len(sub)),
            "opportunity_id": sub["opportunity_id"].to_numpy(),
            "start": sub["entered_at"].dt.floor("D").to_numpy(),
            "until": sub["until"].to_numpy(),
        }
    )
    right = acts.loc[acts["type"].isin(sorted(types)), ["opportunity_id", "type", "occurred_at"]]
    pairs = left.merge(right, on="opportunity_id", how="inner")
    inside = (pairs["occurred_at"] >= pairs["start"]) & (pairs["occurred_at"] <= pairs["until"])
    return pairs.loc[inside, ["visit", "type", "occurred_at"]].rename(columns={"occurred_at": "at"})


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
