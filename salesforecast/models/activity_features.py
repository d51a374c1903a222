"""Activity features known at a cutoff: what was done on a deal or a lead so far, for the opportunity and lead scores.

The ``activities`` table (`salesforecast.schema`) records calls, meetings, e-mails and the organisation's own
types (read through the process map). These functions turn it into model features at a cutoff, leakage-free by
construction: an activity counts at cutoff ``t`` when its ``occurred_at`` is at or before ``t`` (a change made at
``t`` is known at ``t``, the snapshots' convention), so the features of ``t`` are the same with or without the
activities recorded after ``t``. Without activities (no table, or none on deals / on leads) they add no column,
so the models are then exactly what they are without this module.

Deal features at a snapshot date ``t`` (`deal_activity_features`)
    - ``activities``: the deal's activities so far; ``activities_<type>``: those of each type the process map's
      exit criteria name (their ``activity`` and ``after`` types), or of ``call``, ``meeting`` and ``email`` when
      the map has no criteria.
    - ``activities_14d``: activities in the 14 days up to ``t`` (after ``t - 14 days``, at or before ``t``).
    - ``days_since_activity``: days from the last activity so far to ``t``; from the deal's creation when it has
      none yet.
    - ``stage_criteria_met`` (only when the map has exit criteria): ``n_met / n_criteria`` of the deal's current
      stage visit cut at ``t`` (from ``stage_entered_at`` to ``t``), by `salesforecast.activities.criteria_check`,
      the one definition of a criterion met; missing for a stage without criteria. A ``{field: F}`` criterion
      sees ``F`` only when it is part of the deal's state at ``t`` (``amount``, ``close_date``,
      ``forecast_category``, as the history had them); any other field cannot be told at ``t`` and counts as unmet.

Lead features at the lead's cutoff (`lead_activity_features`)
    The cutoff is given per lead (`salesforecast.leads.lead_dataset`: the end of the lead's first
    ``activity_days``, or the data's date when earlier).

    - ``activities``: the lead's activities so far.
    - ``first_response_hours``: hours from the lead's creation to its first activity at or after it; censored:
      the hours to the cutoff when there is none by then, and ``responded`` (1.0 / 0.0) says which.
    - ``days_since_activity``: days from the last activity so far to the cutoff; from the lead's creation when
      it has none.

Vectorised: activities sorted by (deal, time) once, then each (deal, cutoff) is answered by binary search on a
combined integer key (as `salesforecast.history.DealHistory.row_at` does); Python loops run only over the handful
of activity types.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from salesforecast._utils import DAY_US, NAT, sorted_unique, us
from salesforecast.activities import criteria_check
from salesforecast.process import SalesProcess

__all__ = [
    "DEAL_ACTIVITY_TYPES",
    "FEATURES",
    "LEAD_ACTIVITY_FEATURES",
    "RECENT_DAYS",
    "activity_types_counted",
    "deal_activity_features",
    "deal_feature_names",
    "feature_label",
    "lead_activity_features",
]

#: Activity types counted one by one on deals when the process map's exit criteria name none.
DEAL_ACTIVITY_TYPES: tuple[str, ...] = ("call", "meeting", "email")
#: The window of ``activities_14d``, in days.
RECENT_DAYS = 14
#: The lead features, in order.
LEAD_ACTIVITY_FEATURES: tuple[str, ...] = ("activities", "first_response_hours", "responded", "days_since_activity")
#: Deal state columns a ``{field: F}`` criterion may see at a snapshot date (as the history had them then).
_STATE_FIELDS = ("amount", "close_date", "forecast_category")
_HOUR_US = 3_600_000_000


#: The activity features the package derives, as a reader sees them (`feature_label`).
FEATURES: dict[str, str] = {
    "activities": "activities so far",
    "days_since_activity": "days since the last activity",
    "stage_criteria_met": "exit criteria of the current stage met so far",
    "first_response_hours": "hours to the first response",
    "responded": "responded to",
}


def feature_label(name: Any) -> Any:
    """A model feature as a reader sees it: the activity features the package derives in words, others as given.

    The data's own columns (``engagement_score``) keep the name the user's files give them.

    Examples
    --------
    >>> feature_label("activities_meeting"), feature_label("activities_14d"), feature_label("engagement_score")
    ('meeting activities so far', 'activities in the last 14 days', 'engagement_score')
    """
    if not isinstance(name, str):
        return name
    if name in FEATURES:
        return FEATURES[name]
    if name.startswith("activities_"):
        rest = name.removeprefix("activities_")
        if rest.endswith("d") and rest[:-1].isdigit():
            return f"activities in the last {rest[:-1]} days"
        return f"{rest.replace('_', ' ')} activities so far"
    return name


def activity_types_counted(process: SalesProcess) -> list[str]:
    """The activity types counted one by one on deals: those the exit criteria name, else call, meeting and email.

    Examples
    --------
    >>> activity_types_counted(SalesProcess.default())
    ['call', 'meeting', 'email']
    """
    named = {t for criteria in process.exit_criteria.values() for c in criteria for t in (c.activity, c.after) if t}
    return sorted(named) if named else list(DEAL_ACTIVITY_TYPES)


def deal_feature_names(process: SalesProcess) -> list[str]:
    """The columns `deal_activity_features` adds (when some activity names a deal), in order.

    Examples
    --------
    >>> deal_feature_names(SalesProcess.default())
    ['activities', 'activities_call', 'activities_meeting', 'activities_email', 'activities_14d', 'days_since_activity']
    """
    names = ["activities", *(f"activities_{t}" for t in activity_types_counted(process)), f"activities_{RECENT_DAYS}d"]
    names.append("days_since_activity")
    if process.exit_criteria:
        names.append("stage_criteria_met")
    return names


def _coded(acts: pd.DataFrame, column: str, ids: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The dated activities' owner codes and times, the code of each of `ids` (-1: none), and which are dated."""
    act_ids = pd.Index(acts[column].unique())
    code = act_ids.get_indexer(acts[column]).astype(np.int64)
    at = us(acts["occurred_at"])
    ok = at != NAT
    return code[ok], at[ok], act_ids.get_indexer(ids).astype(np.int64), ok


class _Timeline:
    """Activities sorted by (owner key, time), answering "how many by time x" for many (key, x) at once."""

    def __init__(self, codes: np.ndarray, at: np.ndarray, queries: list[np.ndarray]) -> None:
        self.order = np.lexsort((at, codes))
        self.at = at[self.order]
        grid = sorted_unique(np.concatenate([at, *queries]))
        self.grid = grid
        self.width = np.int64(len(grid) + 1)
        self.key = codes[self.order] * self.width + np.searchsorted(grid, self.at)

    def upto(self, code: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Position after the last activity of `code` at or before `x` (int64 microseconds)."""
        return np.searchsorted(self.key, np.maximum(code, 0) * self.width + np.searchsorted(self.grid, x), "right")

    def first(self, code: np.ndarray) -> np.ndarray:
        """Position of the first activity of `code`."""
        return np.searchsorted(self.key, np.maximum(code, 0) * self.width, "left")

    def last_at(self, n: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Time of the activity before position `hi` where `n` (the count up to it) is positive, else `NAT`."""
        if not len(self.at):
            return np.full(len(hi), NAT, dtype=np.int64)
        return np.where(n > 0, self.at[np.maximum(hi - 1, 0)], NAT)


def _linked(activities: pd.DataFrame, column: str) -> pd.DataFrame:
    if activities is None or not len(activities) or column not in activities.columns:
        return activities.iloc[:0] if activities is not None else pd.DataFrame()
    return activities.loc[activities[column].notna().to_numpy(dtype=bool)]


def deal_activity_features(
    activities: pd.DataFrame, process: SalesProcess, snapshots: pd.DataFrame, always: bool = False
) -> pd.DataFrame:
    """Activity features of each (date, open deal) snapshot row, from the activities known at its date.

    The definitions are in this module's docstring.

    Parameters
    ----------
    activities : pandas.DataFrame
        The canonical ``activities`` table (``opportunity_id``, ``type``, ``occurred_at``); rows of leads only
        (no ``opportunity_id``) are ignored. Rows after a snapshot's date never count for it.
    process : SalesProcess
        The process map (its exit criteria name the types counted and give ``stage_criteria_met``).
    snapshots : pandas.DataFrame
        Rows of `salesforecast.snapshots.pipeline_snapshots`: ``as_of``, ``opportunity_id``, ``created_at``,
        ``stage``, ``stage_entered_at`` (and the state columns a field criterion may name).
    always : bool
        The columns even when no activity names a deal (the rows' deals then have none: a part of the deals of a
        whole whose other deals have some, `salesforecast.scale`).

    Returns
    -------
    pandas.DataFrame
        Indexed like `snapshots`: ``activities``, ``activities_<type>`` (int64), ``activities_14d`` (int64),
        ``days_since_activity`` (float64) and, when the map has exit criteria, ``stage_criteria_met`` (float64,
        missing for a stage without criteria). No column at all when no activity names a deal (unless `always`).

    Examples
    --------
    >>> snap = pd.DataFrame({"as_of": pd.to_datetime(["2024-01-10", "2024-02-10"]), "opportunity_id": ["A", "A"],
    ...     "created_at": pd.to_datetime(["2024-01-01"] * 2), "stage": ["Prospecting"] * 2,
    ...     "stage_entered_at": pd.to_datetime(["2024-01-01"] * 2)})
    >>> acts = pd.DataFrame({"opportunity_id": ["A", "A", "A"], "type": ["call", "meeting", "call"],
    ...     "occurred_at": pd.to_datetime(["2024-01-02", "2024-01-05", "2024-02-01"])})
    >>> f = deal_activity_features(acts, SalesProcess.default(), snap)
    >>> f[["activities", "activities_call", "activities_14d", "days_since_activity"]].values.tolist()
    [[2.0, 1.0, 2.0, 5.0], [3.0, 2.0, 1.0, 9.0]]
    """
    if activities is not None and {"opportunity_id", "type", "occurred_at"} <= set(activities.columns):
        activities = activities[["opportunity_id", "type", "occurred_at"]]  # the rows kept copy only what is read
    acts = _linked(activities, "opportunity_id")
    out = pd.DataFrame(index=snapshots.index)
    if not len(acts):
        if not always:
            return out
        acts = pd.DataFrame(
            {
                "opportunity_id": pd.Series([], dtype="str"),
                "type": pd.Series([], dtype="str"),
                "occurred_at": pd.Series([], dtype="datetime64[us]"),
            }
        )
    code, at, q, ok = _coded(acts, "opportunity_id", snapshots["opportunity_id"])
    found = q >= 0
    t = us(snapshots["as_of"])
    since = t - RECENT_DAYS * DAY_US
    tl = _Timeline(code, at, [t, since])
    lo = tl.first(q)
    hi = np.where(found, tl.upto(q, t), lo)
    n = hi - lo
    out["activities"] = n
    counted = activity_types_counted(process)
    types = pd.Index(counted).get_indexer(acts["type"])[ok][tl.order]  # codes: no Python string per activity
    for i, name in enumerate(counted):
        cum = np.r_[0, np.cumsum(types == i)]
        out[f"activities_{name}"] = cum[hi] - cum[lo]
    out[f"activities_{RECENT_DAYS}d"] = hi - np.where(found, np.maximum(tl.upto(q, since), lo), lo)
    last = tl.last_at(n, hi)
    created = us(snapshots["created_at"])
    ref = np.where(last != NAT, last, created)
    out["days_since_activity"] = np.where(ref != NAT, (t - ref) / DAY_US, np.nan)
    if process.exit_criteria:
        out["stage_criteria_met"] = _criteria_share(acts, process, snapshots)
    return out


def _criteria_share(acts: pd.DataFrame, process: SalesProcess, snapshots: pd.DataFrame) -> np.ndarray:
    """``n_met / n_criteria`` of each row's current stage visit cut at its date (missing without criteria)."""
    share = np.full(len(snapshots), np.nan)
    rows = np.flatnonzero(snapshots["stage"].isin(list(process.exit_criteria)).to_numpy(dtype=bool))
    if not len(rows):
        return share
    fields = {c.field for criteria in process.exit_criteria.values() for c in criteria if c.field}
    columns = ["opportunity_id", "stage", "stage_entered_at", "as_of", *sorted(fields & set(_STATE_FIELDS))]
    visits = snapshots[[c for c in columns if c in snapshots.columns]].take(rows).reset_index(drop=True)
    visits = visits.rename(columns={"stage_entered_at": "entered_at", "as_of": "until"})
    check = criteria_check(visits, acts, process)
    n_criteria = check["n_criteria"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        share[rows] = np.where(n_criteria > 0, check["n_met"].to_numpy(dtype="float64") / n_criteria, np.nan)
    return share


def lead_activity_features(activities: pd.DataFrame, leads: pd.DataFrame, cutoff: Any) -> pd.DataFrame:
    """Activity features of each lead at its cutoff, from the activities known then.

    The definitions are in this module's docstring.

    Parameters
    ----------
    activities : pandas.DataFrame
        The canonical ``activities`` table (``lead_id``, ``occurred_at``); rows without a ``lead_id`` are ignored,
        rows after a lead's cutoff never count for it.
    leads : pandas.DataFrame
        ``lead_id`` and ``created_at``.
    cutoff : array-like of datetimes
        One per lead: when its features are read.

    Returns
    -------
    pandas.DataFrame
        Indexed like `leads`: `LEAD_ACTIVITY_FEATURES` (``activities`` int64, the others float64). No column at
        all when no activity names a lead.

    Examples
    --------
    >>> leads = pd.DataFrame({"lead_id": ["L1", "L2"], "created_at": pd.to_datetime(["2024-01-01"] * 2)})
    >>> acts = pd.DataFrame({"lead_id": ["L1", "L1"], "type": ["call", "email"],
    ...     "occurred_at": pd.to_datetime(["2024-01-01 06:00", "2024-01-05 00:00"])})
    >>> f = lead_activity_features(acts, leads, pd.to_datetime(["2024-01-04"] * 2))
    >>> f.values.tolist()
    [[1.0, 6.0, 1.0, 2.75], [0.0, 72.0, 0.0, 3.0]]
    """
    if activities is not None and {"lead_id", "occurred_at"} <= set(activities.columns):
        activities = activities[["lead_id", "occurred_at"]]  # the rows kept copy only what is read
    acts = _linked(activities, "lead_id")
    out = pd.DataFrame(index=leads.index)
    if not len(acts):
        return out
    code, at, q, _ = _coded(acts, "lead_id", leads["lead_id"])
    t = us(cutoff)
    created = us(leads["created_at"])
    # the first activity at or after creation: the count by the cutoff minus the count before creation
    tl = _Timeline(code, at, [t, created - 1])
    lo = tl.first(q)
    hi = np.where(q >= 0, tl.upto(q, t), lo)
    n = hi - lo
    last = tl.last_at(n, hi)
    before = np.where(q >= 0, tl.upto(q, created - 1), lo)
    responded = hi > before
    first = np.where(responded, tl.at[np.minimum(before, max(len(tl.at) - 1, 0))] if len(tl.at) else NAT, NAT)
    out["activities"] = n
    out["first_response_hours"] = np.where(responded, first - created, t - created) / _HOUR_US
    out["responded"] = responded.astype("float64")
    ref = np.where(last != NAT, last, created)
    out["days_since_activity"] = (t - ref) / DAY_US
    return out
