"""Process adherence: how each deal moved through the stage map, and whether following the map pays.

A standardized sales process is an ordered list of open stages every deal should pass. This module reads each
deal's history (`salesforecast.history.DealHistory`, so the rules of as-of reconstruction apply) and measures its
deviations from the map, vectorised over all deals (no Python loop over deals).

Definitions (the contract the tests check)
------------------------------------------
Visits, skipped stages, regressions, close-date pushes and pull-ins, and amount changes are defined in
`salesforecast.history` (one definition for this module, the opportunity scores and the stage-conversion model).
Per deal, ``skipped_stages`` counts the open stages jumped over in forward moves between open stages,
``stages_skipped_at_win`` those jumped over by a move into the won stage, ``regressions`` the backward moves between
open stages and ``reopened`` the moves from a closed stage back to an open one; ``close_date_pushes``/``days_pushed``
and ``close_date_pull_ins``/``days_pulled_in`` the close-date revisions while open, ``amount_changes`` and
``amount_decreases`` the amount revisions while open. The measures below are this module's own.

Stall
    A visit to an open stage that lasted longer than the stage's limit. The limit of a stage is, in order of
    precedence: the process map's ``max_days``; else ``stall_days[stage]`` when given (for example the
    time-in-stage p90 learned by a stage-conversion model); else the 90th percentile of the completed visit
    durations of that stage in the data (known at ``as_of``). A stage without any of them has no limit. The
    current visit of an open deal counts once it already exceeds the limit at ``as_of``.
Net amount change
    ``amount_net_change`` is the amount of the deal's last open state minus its amount at creation; a discount
    given in the closing row itself is not counted (only won deals get one, which would bias any comparison
    of outcomes).
Outcome and cycle
    ``won``, ``lost`` or ``open`` from the deal's last state known at ``as_of``; ``cycle_days`` runs from
    creation to the moment the deal entered its final closed stage (closed deals only).

Each deviation also has a *visit of first occurrence*: the visit entered by the first skip or regression, the
first stalled visit, the visit during which (or on entering which) the close date was first pushed (the third
time for ``pushed_3plus``), or the amount first cut. `deviation_outcomes` uses it to compare like with like.

Everything is computed from what was known at ``as_of``: later changes are ignored and deals created after it
are left out, so the same call replays a past date.

Does following the map pay?
---------------------------
Comparing closed deals with a deviation against those without it is misleading on its own: a deal lost in
its first stage had no chance to skip, regress, be pushed or stall, so every deviation looks like a sign of
winning (on the sample, deals that stalled win *more* often than the others, although each long visit
doubles the chance of losing). `deviation_outcomes` therefore reports, beside that raw comparison, a
stage-matched one: each deal with the deviation is compared with the deals that were in the *same stage*
without having had it (yet), and those stage-specific win rates are averaged with the weights of the
deviating deals. In the language of causal inference this is a sequential (landmark) comparison; it removes
the exposure bias, but remains observational.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from salesforecast._utils import DAY_US, NAT, group_cumsum, release_memory, sorted_unique, to_us
from salesforecast.history import DealHistory
from salesforecast.schema import CRMData
from salesforecast.snapshots import DEFAULT_COLUMNS, unrecorded_fields

__all__ = [
    "OneOutcomeWarning",
    "UnrecordedHistoryWarning",
    "DEVIATIONS",
    "PATH_SEPARATOR",
    "Deviation",
    "adherence_by",
    "as_timestamp",
    "deal_adherence",
    "deviation_outcomes",
    "stall_limits",
    "wilson",
]

#: Separator of the stage names in the ``path`` column of `deal_adherence`.
PATH_SEPARATOR = " > "


class OneOutcomeWarning(UserWarning):
    """Every closed deal had the same outcome (all won, or all lost): win rates cannot be compared."""

    label = "One outcome only"


class UnrecordedHistoryWarning(UserWarning):
    """The stage history never recorded close dates or amounts: pushes, pull-ins and amount cuts are unknown."""

    label = "History without close dates or amounts"


#: Per history field that can be unrecorded: the `deal_adherence` columns that become unknown (missing) and the
#: deviations of `DEVIATIONS` that cannot be measured without it.
UNMEASURED_WITHOUT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "close_date": (
        ("close_date_pushes", "days_pushed", "close_date_pull_ins", "days_pulled_in"),
        ("pushed", "pushed_3plus"),
    ),
    "amount": (
        ("amount_changes", "amount_decreases", "amount_net_change", "amount_pct_change"),
        ("amount_decreased",),
    ),
}

_NOT_RECORDED = {
    **dict.fromkeys(
        ("pushed", "pushed_3plus"),
        "Close-date pushes are unknown: the history did not record close dates, so deals whose close date was pushed"
        " are not compared.",
    ),
    "amount_decreased": "Amount cuts are unknown: the history did not record amounts, so deals whose amount was cut"
    " are not compared.",
}


@dataclass(frozen=True)
class Deviation:
    """A deviation from the process map that a deal either shows or not.

    Attributes
    ----------
    name : str
        Short key (``skipped_stage``); `adherence_by` names its share column ``share_<name>`` and
        `deal_adherence` its first-occurrence column ``<name>_visit``.
    label : str
        Plain-English predicate completing "Deals that ..." (``skipped a stage``).
    definition : str
        The rule in terms of `deal_adherence` columns.
    column : str
        The `deal_adherence` column the rule reads; the deal shows the deviation when
        ``column > threshold``.
    threshold : float
        See `column`.
    """

    name: str
    label: str
    definition: str
    column: str
    threshold: float = 0.0

    def flag(self, deals: pd.DataFrame) -> pd.Series:
        """Boolean Series: the deal shows this deviation (missing values count as no; see `known`)."""
        if self.column not in deals.columns:
            raise KeyError(f"deals has no column {self.column!r}; pass the output of deal_adherence")
        return (deals[self.column] > self.threshold).fillna(False).astype(bool)

    def known(self, deals: pd.DataFrame) -> pd.Series:
        """Boolean Series: the history recorded what this deviation needs for the deal (its column is not missing)."""
        if self.column not in deals.columns:
            raise KeyError(f"deals has no column {self.column!r}; pass the output of deal_adherence")
        return deals[self.column].notna()


#: The deviations compared by `adherence_by` and `deviation_outcomes`, in report order.
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "skipped_stage",
        "skipped a stage",
        "jumped over at least one open stage in a forward move between open stages (skipped_stages >= 1)",
        "skipped_stages",
    ),
    Deviation(
        "regression",
        "went back a stage",
        "moved back at least once between open stages (regressions >= 1)",
        "regressions",
    ),
    Deviation(
        "stalled",
        "stalled in a stage",
        "stayed in a stage longer than its stall limit at least once (stalls >= 1)",
        "stalls",
    ),
    Deviation(
        "pushed",
        "had their close date pushed",
        "close date moved later at least once while open (close_date_pushes >= 1)",
        "close_date_pushes",
    ),
    Deviation(
        "pushed_3plus",
        "had their close date pushed more than twice",
        "close date moved later three or more times while open (close_date_pushes > 2)",
        "close_date_pushes",
        2.0,
    ),
    Deviation(
        "amount_decreased",
        "had their amount cut",
        "amount lowered at least once while open (amount_decreases >= 1)",
        "amount_decreases",
    ),
)


# ------------------------------------------------------------------------------------------- inputs
def as_timestamp(value: Any, data: CRMData) -> pd.Timestamp:
    """``value`` as a timezone-naive Timestamp; ``data.as_of`` when None."""
    if value is None:
        return data.as_of
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError("as_of is missing (NaT); give a date")
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _stall_days_mapping(stall_days: Any, data: CRMData) -> dict[str, float]:
    """Normalise `stall_days` (mapping, Series, DataFrame with a p90 column, or a fitted model) to stage -> days."""
    if stall_days is None:
        return {}
    if hasattr(stall_days, "time_in_stage_"):
        stall_days = stall_days.time_in_stage_
    if isinstance(stall_days, pd.DataFrame):
        col = next((c for c in stall_days.columns if str(c).lower() in ("p90", "p90_days", "q90")), None)
        if col is None:
            raise ValueError(
                f"stall_days: a DataFrame needs a 'p90' or 'p90_days' column; got columns {list(stall_days.columns)}"
            )
        stall_days = stall_days.set_index("stage")[col] if "stage" in stall_days.columns else stall_days[col]
    if not isinstance(stall_days, (Mapping, pd.Series)):
        raise TypeError(f"stall_days must map stage names to days, got {type(stall_days).__name__}")
    out: dict[str, float] = {}
    for name, days in dict(stall_days).items():
        stage = data.process.canonical_stage(name)
        if stage is None or stage not in data.process.open_stages:
            raise ValueError(f"stall_days: {name!r} is not an open stage; open stages: {data.process.open_stages}")
        if days is not None and pd.notna(days):
            if float(days) <= 0:
                raise ValueError(f"stall_days[{name!r}]: must be a positive number of days, got {days!r}")
            out[stage] = float(days)
    return out


def _limits(
    open_stages: Sequence[str],
    max_days: Sequence[float | None],
    given: Mapping[str, float],
    visit_stage: np.ndarray,
    visit_days: np.ndarray,
    completed: np.ndarray,
) -> pd.DataFrame:
    """The stall-limit table from the three sources (see the module docstring for the precedence)."""
    k = len(open_stages)
    sel = completed & (visit_stage >= 0) & (visit_stage < k)
    grouped = pd.Series(visit_days[sel]).groupby(visit_stage[sel])
    p90 = grouped.quantile(0.9).reindex(range(k))
    n_done = grouped.size().reindex(range(k), fill_value=0)
    limit, source = [], []
    for i, name in enumerate(open_stages):  # a loop over the stages of the map
        if max_days[i] is not None:
            limit.append(float(max_days[i]))
            source.append("process map max_days")
        elif name in given:
            limit.append(given[name])
            source.append("stall_days")
        elif pd.notna(p90.iloc[i]):
            limit.append(float(p90.iloc[i]))
            source.append("data p90")
        else:
            limit.append(np.nan)
            source.append("none (no completed visit)")
    return pd.DataFrame(
        {
            "stage": pd.Series(list(open_stages), dtype="str"),
            "limit_days": np.asarray(limit, dtype="float64"),
            "source": pd.Series(source, dtype="str"),
            "completed_visits": n_done.to_numpy(dtype="int64"),
            "p90_days": p90.to_numpy(dtype="float64"),
        }
    )


# ------------------------------------------------------------------------------------------- core
def _compute(data: CRMData, stall_days: Any, as_of: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-deal adherence table and the stall-limit table."""
    process = data.process
    as_of = as_timestamp(as_of, data)
    given = _stall_days_mapping(stall_days, data)
    h = DealHistory.from_data(data)
    open_stages = process.open_stages
    k = len(open_stages)

    # the rows known at as_of (a prefix of each deal's rows) and the deals created by then, renumbered
    rows = np.flatnonzero(h.rows_known(as_of))
    present = np.zeros(len(h.ids), dtype=bool)
    present[h.deal[rows]] = True
    codes = (np.cumsum(present) - 1)[h.deal[rows]]
    n_deals, n = int(present.sum()), len(rows)
    si = h.stage[rows]  # -1: unknown stage
    row_open = (si >= 0) & (si < k)
    end_i = h.end[rows]
    end_i = np.where(end_i > to_us(as_of), NAT, end_i)  # the state after as_of is open-ended
    as_of_i = np.datetime64(as_of.as_unit("us").to_datetime64(), "us").view(np.int64)
    first = h.first[rows]
    last = np.r_[codes[1:] != codes[:-1], True][:n]

    # ---------------------------------------------------------------- visits (runs of one stage)
    new_run = h.new_visit[rows]
    run_of_row = np.cumsum(new_run) - 1
    run_first = np.flatnonzero(new_run)
    run_last = np.r_[run_first[1:] - 1, n - 1][: len(run_first)]
    n_runs = len(run_first)
    run_code, run_si = codes[run_first], si[run_first]
    run_deal_start = first[run_first]
    run_end_i = end_i[run_last]
    run_done = run_end_i != NAT
    run_days = (np.where(run_done, run_end_i, as_of_i) - h.start[rows[run_first]]) / DAY_US
    run_open = (run_si >= 0) & (run_si < k)
    visit_no = np.where(run_open, group_cumsum(run_open.astype(np.int64), run_deal_start), 0)

    max_days = [process.stage(s).max_days for s in open_stages]
    limits = _limits(open_stages, max_days, given, run_si, run_days, run_done & run_open)
    lim = np.r_[limits["limit_days"].to_numpy(), np.nan]
    run_limit = lim[np.where(run_open, run_si, k)]
    stalled = run_open & (run_days > run_limit)
    excess = np.where(stalled, run_days - run_limit, 0.0)
    max_excess = np.zeros(n_deals)
    np.maximum.at(max_excess, run_code[stalled], excess[stalled])
    stalled_now = np.zeros(n_deals, dtype=bool)
    stalled_now[run_code[stalled & ~run_done]] = True

    # ---------------------------------------------------------------- moves into each visit (see DealHistory)
    moves = h.moves
    into = rows[run_first]
    prev_si = moves.previous[into]
    moved = moves.stage_change[into]
    skip_in = moves.skip[into]
    regress_in = moves.regression[into]
    win_skip = moves.win_skip[into]
    reopen_in = moves.reopen[into]
    n_skipped = moves.skipped[into]

    # ---------------------------------------------------------------- close-date and amount revisions while open
    cd_diff = moves.close_date_days[rows]
    push, pull = cd_diff > 0, cd_diff < 0
    amount = h.amount[rows]
    am_diff = moves.amount_change[rows]
    run_push = np.bincount(run_of_row[push], minlength=n_runs)
    run_cut = np.bincount(run_of_row[am_diff < 0], minlength=n_runs)

    def per_deal(mask: np.ndarray, keys: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(keys[mask], weights=w, minlength=n_deals)

    # first occurrence of each deviation: the visit where its cumulative event count first exceeds the threshold
    events = {
        "skipped_stage": skip_in.astype(np.int64),
        "regression": regress_in.astype(np.int64),
        "stalled": stalled.astype(np.int64),
        "pushed": run_push,
        "pushed_3plus": run_push,
        "amount_decreased": run_cut,
    }
    first_visit: dict[str, np.ndarray] = {}
    for dev in DEVIATIONS:  # a loop over the six deviations
        e = np.where(run_open, events[dev.name], 0)
        cum = group_cumsum(e, run_deal_start)
        hit = (cum > dev.threshold) & (cum - e <= dev.threshold)
        fv = np.zeros(n_deals, dtype=np.int64)
        fv[run_code[hit]] = visit_no[hit]
        first_visit[dev.name] = fv

    # ---------------------------------------------------------------- amounts, outcome and cycle
    amount_initial = amount[first]
    last_open_row = np.full(n_deals, -1, dtype=np.int64)
    np.maximum.at(last_open_row, codes[row_open], np.flatnonzero(row_open))
    amount_last_open = np.where(last_open_row >= 0, amount[np.maximum(last_open_row, 0)], np.nan)
    net = amount_last_open - amount_initial
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(amount_initial > 0, net / amount_initial, np.nan)
    last_si = si[last]
    won, lost = np.isin(last_si, h.won_codes), np.isin(last_si, h.lost_codes)
    created = h.created[rows[first]].view("datetime64[us]")
    entered_last = h.entered[rows[last]].view("datetime64[us]")
    closed_at = np.where(won | lost, entered_last, np.datetime64("NaT", "us"))

    out = pd.DataFrame({"opportunity_id": pd.Series(h.ids[present], dtype=h.frame["opportunity_id"].dtype)})
    opps = data.opportunities
    pos = h.deal_pos[present]
    for c in DEFAULT_COLUMNS:
        if c in opps.columns:
            out[c] = opps[c].take(pos).reset_index(drop=True)
    stage_col = h.frame["stage"]  # read per deal below: no object array of every history row's name
    out["created_at"] = created
    out["stage"] = pd.Series(stage_col.take(rows[last]).to_numpy(), dtype="str")
    out["outcome"] = pd.Series(np.where(won, "won", np.where(lost, "lost", "open")), dtype="str")
    out["closed_at"] = closed_at
    out["cycle_days"] = (closed_at - created) / np.timedelta64(DAY_US, "us")
    first_known = np.full(n_deals, n, dtype=np.int64)
    np.minimum.at(first_known, codes[si >= 0], np.flatnonzero(si >= 0))
    out["entry_stage"] = pd.Series(
        np.where(first_known < n, stage_col.take(rows[np.minimum(first_known, max(n - 1, 0))]).to_numpy(), None),
        dtype="str",
    )
    out["path"] = _paths(run_code[run_open], visit_no[run_open], run_si[run_open], n_deals, open_stages)
    out["visits"] = per_deal(run_open, run_code).astype(np.int64)
    out["stage_changes"] = per_deal(moved, run_code).astype(np.int64)
    out["skipped_stages"] = per_deal(skip_in, run_code, n_skipped).astype(np.int64)
    out["skipped_stage_names"] = _skipped_names(
        run_code[skip_in], prev_si[skip_in], run_si[skip_in], n_deals, open_stages
    )
    out["stages_skipped_at_win"] = per_deal(win_skip, run_code, moves.skipped_at_win[into].astype("float64")).astype(
        np.int64
    )
    out["regressions"] = per_deal(regress_in, run_code).astype(np.int64)
    out["reopened"] = per_deal(reopen_in, run_code).astype(np.int64)
    out["stalls"] = per_deal(stalled, run_code).astype(np.int64)
    out["max_stall_excess_days"] = max_excess
    out["stalled_now"] = stalled_now
    out["close_date_pushes"] = per_deal(push, codes).astype(np.int64)
    out["days_pushed"] = per_deal(push, codes, cd_diff)
    out["close_date_pull_ins"] = per_deal(pull, codes).astype(np.int64)
    out["days_pulled_in"] = -per_deal(pull, codes, cd_diff) + 0.0
    out["amount_changes"] = per_deal(am_diff != 0, codes).astype(np.int64)
    out["amount_decreases"] = per_deal(am_diff < 0, codes).astype(np.int64)
    out["amount_initial"] = amount_initial
    out["amount_last_open"] = amount_last_open
    out["amount_final"] = amount[last]
    out["amount_net_change"] = net
    out["amount_pct_change"] = pct
    for dev in DEVIATIONS:
        out[f"{dev.name}_visit"] = first_visit[dev.name]
    # a field the history never recorded: its revisions are unknown, not zero
    unrecorded = [f for f in UNMEASURED_WITHOUT if f in unrecorded_fields(data)]
    for field in unrecorded:
        columns, names = UNMEASURED_WITHOUT[field]
        out[list(columns) + [f"{name}_visit" for name in names]] = np.nan
    if unrecorded:
        out.attrs["unrecorded"] = tuple(unrecorded)
    out.attrs["as_of"] = as_of
    out.attrs["stall_limit_days"] = dict(zip(limits["stage"], limits["limit_days"], strict=True))
    out.attrs["stall_limit_source"] = dict(zip(limits["stage"], limits["source"], strict=True))
    return out, limits


def _paths(deal: np.ndarray, visit: np.ndarray, stage: np.ndarray, n_deals: int, names: Sequence[str]) -> pd.Series:
    """Per deal, the open stages of its visits in order joined by `PATH_SEPARATOR`.

    Each deal's path is first one integer (its visits' stage codes as the digits of a number in base ``k + 1``, the
    first visit the lowest digit), so that the text is built once per distinct path (a few hundred, where there are
    millions of visits) and given to the deals by a gather. Paths too long for an integer are joined a visit
    number at a time.
    """
    max_visit = int(visit.max()) if len(visit) else 0
    base = len(names) + 1
    if max_visit == 0 or max_visit * np.log2(base) >= 62:
        return _paths_joined(deal, visit, stage, n_deals, names)
    code = np.zeros(n_deals, dtype=np.int64)
    np.add.at(code, deal, (stage.astype(np.int64) + 1) * base ** (visit.astype(np.int64) - 1))
    distinct, inverse = np.unique(code, return_inverse=True)
    texts = []
    for c in distinct.tolist():
        parts = []
        while c:
            c, digit = divmod(c, base)
            parts.append(names[digit - 1])
        texts.append(PATH_SEPARATOR.join(parts))
    return pd.Series(pd.array(texts, dtype="str").take(inverse.reshape(-1)), dtype="str")


def _paths_joined(
    deal: np.ndarray, visit: np.ndarray, stage: np.ndarray, n_deals: int, names: Sequence[str]
) -> pd.Series:
    """`_paths` a visit number at a time (any number of visits)."""
    text = pd.Series(np.full(n_deals, "", dtype=object), dtype="str")
    label = pd.Series(np.asarray(names, dtype=object)[stage], dtype="str")
    max_visit = int(visit.max()) if len(visit) else 0
    for j in range(1, max_visit + 1):
        sel = visit == j
        who = deal[sel]
        part = label[sel].to_numpy()
        if j == 1:
            text.iloc[who] = part
        else:
            text.iloc[who] = (text.iloc[who] + PATH_SEPARATOR + part).to_numpy()
    return text


def _skipped_names(
    deal: np.ndarray, a: np.ndarray, b: np.ndarray, n_deals: int, open_stages: Sequence[str]
) -> pd.Series:
    """Per deal, the distinct skipped open stages in process order, joined by ``"; "`` (empty when none)."""
    k = len(open_stages)
    n_each = b - a - 1
    rows = np.repeat(np.arange(len(deal)), n_each)
    offset = np.arange(len(rows)) - np.repeat(np.cumsum(n_each) - n_each, n_each)
    stage = a[rows] + 1 + offset
    who = deal[rows]
    if k <= 62:  # one bit per stage: the distinct sets are few, so the text is built once per set
        mask = np.zeros(n_deals, dtype=np.int64)
        np.bitwise_or.at(mask, who, np.left_shift(np.int64(1), stage.astype(np.int64)))
        uniq = sorted_unique(mask)
        inverse = np.searchsorted(uniq, mask)
        text = ["; ".join(open_stages[i] for i in range(k) if (int(m) >> i) & 1) for m in uniq]
        return pd.Series(np.asarray(text, dtype=object)[inverse], dtype="str")
    pairs = pd.DataFrame({"deal": who, "stage": stage}).drop_duplicates().sort_values(["deal", "stage"])
    joined = pairs.assign(name=np.asarray(open_stages, dtype=object)[pairs["stage"]]).groupby("deal")["name"]
    return joined.agg("; ".join).reindex(range(n_deals), fill_value="").astype("str").reset_index(drop=True)


# ------------------------------------------------------------------------------------------- public API
def stall_limits(data: CRMData, stall_days: Any = None, as_of: Any = None) -> pd.DataFrame:
    """The stall limit of each open stage and where it comes from.

    Parameters
    ----------
    data : CRMData
    stall_days : mapping, Series or fitted model, optional
        Stage -> days, used for stages whose process map has no ``max_days``; for example the time-in-stage
        p90 learned by a stage-conversion model. A model object with a ``time_in_stage_`` DataFrame holding
        a ``p90`` (or ``p90_days``) column indexed by stage (or with a ``stage`` column) is accepted as is.
    as_of : date, optional
        Only visits completed by then enter the data p90 (default: ``data.as_of``).

    Returns
    -------
    pandas.DataFrame
        One row per open stage: ``stage, limit_days, source, completed_visits, p90_days``. ``source`` is
        ``process map max_days``, ``stall_days``, ``data p90`` or ``none (no completed visit)``; ``p90_days``
        is the 90th percentile of the completed visit durations of the stage, whatever the source.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> limits = stall_limits(load_sample(), stall_days={"Prospecting": 30})
    >>> limits.loc[0, ["stage", "source"]].tolist(), float(limits.loc[0, "limit_days"])
    (['Prospecting', 'stall_days'], 30.0)
    >>> limits["source"].iloc[1]
    'data p90'
    """
    return _compute(data, stall_days, as_of)[1]


def deal_adherence(data: CRMData, stall_days: Any = None, as_of: Any = None) -> pd.DataFrame:
    """One row per opportunity: how it moved through the stage map.

    The definitions (visit, skip, regression, stall, push, amount change, outcome, cycle) are in the
    docstring of this module, `salesforecast.adherence`.

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities and stage_history).
    stall_days : mapping, Series or fitted model, optional
        Stall limits for stages whose process map has no ``max_days`` (see `stall_limits`); stages in neither
        get the p90 of their completed visits in the data.
    as_of : date, optional
        Use only what was known then (default: ``data.as_of``, the last change in the data).

    Returns
    -------
    pandas.DataFrame
        One row per opportunity created by `as_of`, sorted by ``opportunity_id``:

        - ``opportunity_id``, the static columns present (``owner, team, region, segment, product,
          lead_source, account_id``), ``created_at``, ``stage`` (last known), ``outcome`` (won, lost, open),
          ``closed_at`` and ``cycle_days`` (creation to entering the final closed stage; closed deals only);
        - ``entry_stage`` (the first known stage), ``path`` (the open stages visited, in order, joined by
          `PATH_SEPARATOR`), ``visits`` (visits to open stages), ``stage_changes`` (moves between stages,
          closing included);
        - ``skipped_stages`` (open stages jumped over in forward moves between open stages, counted each time),
          ``skipped_stage_names`` (the distinct skipped stages in process order, ``"; "``-separated, empty
          when none), ``stages_skipped_at_win``, ``regressions``, ``reopened``;
        - ``stalls`` (visits over their stage's limit), ``max_stall_excess_days`` (the longest excess over the
          limit, 0 when none), ``stalled_now`` (the current visit of an open deal is already over its limit);
        - ``close_date_pushes``, ``days_pushed`` (total days the close date moved later),
          ``close_date_pull_ins``, ``days_pulled_in``;
        - ``amount_changes``, ``amount_decreases``, ``amount_initial``, ``amount_last_open``, ``amount_final``
          (the last known amount, including any change made when the deal closed), ``amount_net_change``
          (last open minus initial) and ``amount_pct_change`` (that over the initial amount; missing when
          the initial amount is 0);
        - ``<deviation>_visit`` for each of `DEVIATIONS` (``skipped_stage_visit``, ``stalled_visit``, ...): the
          number of the visit in which the deal first showed it, 0 when it never did.

        When the stage history never recorded close dates (`salesforecast.snapshots.unrecorded_fields`, e.g. a
        history derived from date columns), ``close_date_pushes``, ``days_pushed``, ``close_date_pull_ins``,
        ``days_pulled_in``, ``pushed_visit`` and ``pushed_3plus_visit`` are missing (NaN): unknown, not zero. When
        it never recorded amounts, ``amount_changes``, ``amount_decreases``, ``amount_net_change``,
        ``amount_pct_change`` and ``amount_decreased_visit`` are missing likewise.

        ``attrs`` holds ``as_of``, ``stall_limit_days`` and ``stall_limit_source`` (stage -> value), and
        ``unrecorded`` (the unrecorded fields among ``close_date`` and ``amount``) when there are any.

    Warns
    -----
    UnrecordedHistoryWarning
        Once per call, when the history never recorded close dates or amounts: which deviations cannot be
        measured and why.

    Notes
    -----
    Vectorised: one pass over the sorted history with numpy group counts, cost O(history rows); the only
    Python loops run over the stages of the map, the six deviations and the visit numbers (for ``path``).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> deals = deal_adherence(load_sample())
    >>> len(deals)
    3000
    >>> deals["outcome"].value_counts().index.tolist()
    ['lost', 'won', 'open']
    >>> deals.loc[deals["skipped_stages"] > 0, ["path", "skipped_stage_names"]].iloc[0].tolist()
    ['Needs Analysis > Id. Decision Makers > Perception Analysis', 'Value Proposition']
    """
    out = _compute(data, stall_days, as_of)[0]
    release_memory()  # the history's intermediate arrays, millions of rows at 1M deals
    unrecorded = out.attrs.get("unrecorded", ())
    if unrecorded:
        warnings.warn(_unrecorded_message(unrecorded), UnrecordedHistoryWarning, stacklevel=2)
    return out


def _unrecorded_message(unrecorded: Sequence[str]) -> str:
    """The sentence of `UnrecordedHistoryWarning` for the unrecorded history fields (``close_date``, ``amount``)."""
    parts, left_out, needed = [], [], []
    if "close_date" in unrecorded:
        parts.append(
            "close-date pushes and pull-ins are unknown: the stage history did not record close dates, so whether a "
            "deal's close date was pushed cannot be measured (shown as missing, not as zero)"
        )
        left_out.append("close-date pushes")
        needed.append("close-date changes")
    if "amount" in unrecorded:
        parts.append(
            "amount cuts are unknown: the stage history did not record amounts, so whether a deal's amount was "
            "lowered while open cannot be measured (shown as missing, not as zero)"
        )
        left_out.append("amount cuts")
        needed.append("amount changes")
    text = "; ".join(parts)
    return (
        f"{text[0].upper()}{text[1:]}. The process-adherence tables leave out {' and '.join(left_out)} and compare"
        f" only the other deviations; a history that records {' and '.join(needed)} is needed for them."
    )


def _flags(deals: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({d.name: d.flag(deals) for d in DEVIATIONS}, index=deals.index)


def adherence_by(deals: pd.DataFrame, by: str | Sequence[str] = "owner") -> pd.DataFrame:
    """Roll `deal_adherence` up per rep, team or any other column.

    Parameters
    ----------
    deals : pandas.DataFrame
        The output of `deal_adherence`.
    by : str or sequence of str
        Grouping column(s), e.g. ``"owner"`` or ``"team"``.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``deals``, ``open_deals``, ``closed_deals``, ``won_deals``; for each deviation in
        `DEVIATIONS` the share of the group's deals showing it (``share_skipped_stage``, ``share_regression``,
        ``share_stalled``, ``share_pushed``, ``share_pushed_3plus``, ``share_amount_decreased``);
        ``share_followed_map`` (no skip, no regression, no stall); ``mean_pushes`` (close-date pushes per deal);
        ``win_rate`` (won / closed deals; missing without closed deals) and ``median_cycle_days`` (closed
        deals). Shares are over all deals of the group, open ones included; they describe behaviour and are
        not adjusted for exposure (see `deviation_outcomes`). A deviation the history cannot measure (close-date
        pushes or amount cuts in a history that never recorded close dates or amounts, see `deal_adherence`) has a
        missing share (and ``mean_pushes``), not 0.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> by_team = adherence_by(deal_adherence(load_sample()), by="team")
    >>> by_team.index.tolist()
    ['APAC', 'EMEA', 'NA East', 'NA West']
    >>> int(by_team["deals"].sum())
    3000
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in keys if c not in deals.columns]
    if missing:
        raise KeyError(f"deals has no column {missing[0]!r}; available: {list(deals.columns)}")
    flags = _flags(deals)
    closed = deals["outcome"].isin(["won", "lost"])
    on_map = ~(flags["skipped_stage"] | flags["regression"] | flags["stalled"])
    frame = pd.DataFrame(
        {
            **{k: deals[k] for k in keys},
            "deals": 1,
            "open_deals": (~closed).astype(np.int64),
            "closed_deals": closed.astype(np.int64),
            "won_deals": deals["outcome"].eq("won").astype(np.int64),
            **{f"share_{d.name}": flags[d.name].astype("float64").where(d.known(deals)) for d in DEVIATIONS},
            "share_followed_map": on_map.astype("float64"),
            "mean_pushes": deals["close_date_pushes"].astype("float64"),
            "_cycle": deals["cycle_days"].where(closed),
        }
    )
    g = frame.groupby(keys, sort=True, dropna=False)
    sums = g[["deals", "open_deals", "closed_deals", "won_deals"]].sum()
    means = g[[c for c in frame.columns if c.startswith("share_")] + ["mean_pushes"]].mean()
    out = pd.concat([sums, means], axis=1)
    out["win_rate"] = (out["won_deals"] / out["closed_deals"]).where(out["closed_deals"] > 0)
    out["median_cycle_days"] = g["_cycle"].median()
    return out


# ------------------------------------------------------------------------------------------- statistics
def wilson(k: float, n: float, z: float) -> tuple[float, float, float]:
    """Proportion and Wilson score interval (all missing when n == 0)."""
    if n <= 0:
        return np.nan, np.nan, np.nan
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return float(p), float(centre - half), float(centre + half)


def _newcombe(p1: float, l1: float, u1: float, p2: float, l2: float, u2: float) -> tuple[float, float, float]:
    """Difference p1 - p2 and Newcombe's hybrid score interval from the two single-sample intervals."""
    d = p1 - p2
    return d, d - float(np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)), d + float(np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def _bootstrap_medians(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`n_boot` bootstrap replicates of the median of `values`, drawn exactly without resampling arrays.

    The r-th order statistic of n draws from the empirical distribution is ``x_(ceil(n U))`` with
    ``U ~ Beta(r, n - r + 1)`` (the r-th of n uniform order statistics), and the next one is
    ``U' = U + (1 - U) Beta(1, n - r)``. So each replicate costs O(1), and memory is O(n_boot).
    """
    x = np.sort(values[~np.isnan(values)])
    n = len(x)
    if n == 0:
        return np.full(n_boot, np.nan)
    if n == 1:
        return np.full(n_boot, x[0])
    r = (n + 1) // 2
    u1 = rng.beta(r, n - r + 1, size=n_boot)
    lo = x[np.minimum((u1 * n).astype(np.int64), n - 1)]
    if n % 2:
        return lo
    u2 = u1 + (1 - u1) * rng.beta(1, n - r, size=n_boot)
    hi = x[np.minimum((u2 * n).astype(np.int64), n - 1)]
    return (lo + hi) / 2


def _interval(b: np.ndarray, alpha: float) -> tuple[float, float]:
    if np.isnan(b).all():
        return np.nan, np.nan
    lo, hi = np.quantile(b, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _visits_long(deals: pd.DataFrame, open_stages: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``path`` column exploded: (deal row position, visit number, open-stage index) per visit."""
    parts = deals["path"].fillna("").astype("str").str.split(PATH_SEPARATOR)
    flat = parts.explode()
    row = np.repeat(np.arange(len(deals)), parts.str.len().to_numpy())
    keep = flat.ne("").to_numpy()
    visit = group_cumsum(np.ones(len(row), dtype=np.int64), np.r_[True, row[1:] != row[:-1]][: len(row)])
    stage = pd.Index(list(open_stages)).get_indexer(flat).astype(np.int64)  # -1: not an open stage
    if (keep & (stage < 0)).any():
        bad = flat[keep & (stage < 0)].iloc[0]
        raise ValueError(f"deals.path: {bad!r} is not an open stage of the process map {list(open_stages)}")
    return row[keep], visit[keep], stage[keep]


def _matched(
    first_visit: np.ndarray,
    row: np.ndarray,
    visit: np.ndarray,
    stage: np.ndarray,
    won: np.ndarray,
    k: int,
    z: float,
) -> dict[str, float]:
    """Stage-matched comparison of one deviation (see `deviation_outcomes`); arrays over closed deals."""
    fv = first_visit[row]
    treated = (fv > 0) & (visit == fv)
    control = (fv == 0) | (visit < fv)
    key = row[control] * k + stage[control]
    c_key = sorted_unique(key)
    c_row, c_stage = c_key // k, c_key % k
    n2 = np.bincount(c_stage, minlength=k).astype("float64")
    k2 = np.bincount(c_stage, weights=won[c_row].astype("float64"), minlength=k)
    t_row, t_stage = row[treated], stage[treated]
    ok = n2[t_stage] > 0
    t_row, t_stage = t_row[ok], t_stage[ok]
    n1 = len(t_row)
    if n1 == 0:
        return {"n": 0, "p1": np.nan, "l1": np.nan, "u1": np.nan, "p2": np.nan, "l2": np.nan, "u2": np.nan}
    w = np.bincount(t_stage, minlength=k) / n1
    with np.errstate(divide="ignore", invalid="ignore"):
        p2s = np.where(n2 > 0, k2 / n2, 0.0)
        var_s = np.where(n2 > 0, p2s * (1 - p2s) / n2, 0.0)
    p2 = float(np.sum(w * p2s))
    se2 = float(np.sqrt(np.sum(w**2 * var_s)))
    p1, l1, u1 = wilson(float(won[t_row].sum()), n1, z)
    return {"n": n1, "p1": p1, "l1": l1, "u1": u1, "p2": p2, "l2": max(p2 - z * se2, 0.0), "u2": min(p2 + z * se2, 1.0)}


def _verdict(label: str, n_with: int, n1: int, p1: float, p2: float, d: float, lo: float, hi: float, ci: float) -> str:
    """One plain-English line on the stage-matched difference in win rate (`n1` deviating deals matched)."""
    its = label.replace("their", "its")
    if n_with == 0:
        return f"No closed deal {its}; nothing to compare."
    if n1 == 0:
        return f"No deal without the deviation was in the same stages as the {n_with:,} closed deals that {label}."
    level = f"{ci:.0%} CI"
    versus = f"than comparable deals in the same stages ({p1:.1%} vs {p2:.1%}, {n1:,} closed deals)"
    pts = abs(d) * 100
    if lo > 0:
        return (
            f"Deals that {label} won {pts:.1f} points more often ({level} {lo * 100:.1f} to {hi * 100:.1f}) {versus}."
        )
    if hi < 0:
        return (
            f"Deals that {label} won {pts:.1f} points less often ({level} {-hi * 100:.1f} to {-lo * 100:.1f}) {versus}."
        )
    way = "more" if d > 0 else "less"
    return (
        f"Deals that {label} won {pts:.1f} points {way} often {versus}, but the {level} ({lo * 100:+.1f} to"
        f" {hi * 100:+.1f} points) includes no difference."
    )


def deviation_outcomes(deals: pd.DataFrame, ci: float = 0.9, n_boot: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Does following the map pay? Closed deals with vs without each deviation: win rate and cycle time.

    Parameters
    ----------
    deals : pandas.DataFrame
        The output of `deal_adherence` (possibly filtered, e.g. to one team).
    ci : float
        Confidence level of every interval, in (0, 1).
    n_boot : int
        Bootstrap replicates for the median-cycle intervals.
    seed : int
        Seed of the bootstrap; the same inputs give the same output.

    Returns
    -------
    pandas.DataFrame
        One row per deviation of `DEVIATIONS` (index ``deviation``), columns:

        ``label``, ``definition``
            The deviation in words and as a rule on `deal_adherence` columns.
        ``n_with``, ``n_without``, ``wins_with``, ``wins_without``
            Closed deals with / without the deviation, and how many of them were won.
        ``win_rate_with``, ``win_rate_without`` and their ``_low``, ``_high``
            Won / closed deals, with Wilson score intervals.
        ``raw_diff`` and ``raw_diff_low``, ``raw_diff_high``
            ``win_rate_with - win_rate_without``, with Newcombe's hybrid score interval (method 10). This raw
            gap is biased by exposure: see Notes.
        ``n_matched``, ``win_rate_matched``, ``win_rate_comparable`` and its ``_low``, ``_high``
            The stage-matched comparison: the deviating deals that have comparable deals
            (``win_rate_matched`` is their win rate) and the stage-standardised win rate of the comparable
            deals (normal interval).
        ``win_rate_diff`` and ``win_rate_diff_low``, ``win_rate_diff_high``
            ``win_rate_matched - win_rate_comparable``, the headline: Newcombe's hybrid combination of the
            Wilson interval of the first and the normal interval of the second.
        ``median_cycle_with``, ``median_cycle_without``, ``median_cycle_diff`` and their ``_low``, ``_high``
            Median days from creation to close of closed deals with / without the deviation and their
            difference, with percentile-bootstrap intervals. Descriptive: a deviation such as a stall makes
            a cycle longer by definition.
        ``verdict``
            One plain-English line on the headline difference.

        A deviation the history cannot measure (missing ``<deviation>_visit`` or rule column: close-date pushes or
        amount cuts in a history that never recorded close dates or amounts, see `deal_adherence`) is left out;
        ``attrs["not_recorded"]`` maps its name to a sentence saying why (absent when every deviation is measured).

    Warns
    -----
    OneOutcomeWarning
        When every closed deal was won (or every one lost): the win-rate differences and their intervals are
        then NaN and each verdict says that only the cycle times compare.

    Notes
    -----
    Only closed deals (``outcome`` won or lost) enter: an open deal has no outcome yet, and counting it as
    not won would bias every win rate down for deviations that keep deals open longer. Win rate is won /
    closed deals, by count.

    *Why the raw gap misleads.* A deal lost in its first stage had no chance to skip, go back, be pushed or
    stall; deals that live longer have more chances to deviate, so every deviation looks like a sign of winning.

    *Stage-matched comparison.* For a deviation, each deviating deal is placed in the stage of the visit in
    which it first deviated (see `deal_adherence`, ``<deviation>_visit``; a skip or a regression belongs to
    the visit it led into). Its comparable deals are the closed deals that visited the same stage without
    having deviated yet, up to the end of that visit (counted once per deal and stage; a deal is comparable in
    every stage it passed before its own first deviation). The comparable win rate of a stage is their
    won share; ``win_rate_comparable`` averages those rates over stages with the weights of the deviating deals,
    so both sides are in the same stages. Deviating deals in a stage without any comparable deal are left out
    (``n_matched`` counts the rest). The comparison is observational (an association, not the effect of the
    deviation), and its interval treats deals as independent although one deal can be comparable in several
    stages, so it is somewhat too narrow.

    The bootstrap resamples each group's cycle days with replacement (independently for the two groups); it
    draws the median of each replicate exactly from the order-statistic distribution (vectorised, memory
    O(n_boot)), seeded by `seed`.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> out = deviation_outcomes(deal_adherence(load_sample()))
    >>> out.index.tolist()[:3]
    ['skipped_stage', 'regression', 'stalled']
    >>> bool(out.loc["stalled", "raw_diff"] > 0 > out.loc["stalled", "win_rate_diff"])
    True
    >>> out.loc["stalled", "verdict"].startswith("Deals that stalled in a stage won")
    True
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be a confidence level between 0 and 1 (e.g. 0.9), got {ci!r}")
    needed = ["outcome", "cycle_days", "path"] + [f"{d.name}_visit" for d in DEVIATIONS]
    missing = [c for c in needed if c not in deals.columns]
    if missing:
        raise KeyError(f"deals has no column {missing[0]!r}; pass the output of deal_adherence")
    z = float(stats.norm.ppf(0.5 + ci / 2))
    alpha = (1 - ci) / 2
    closed_mask = deals["outcome"].isin(["won", "lost"]).to_numpy()
    closed = deals.loc[closed_mask]
    won = closed["outcome"].eq("won").to_numpy()
    cycle = closed["cycle_days"].to_numpy(dtype="float64")
    flags = _flags(closed)
    open_stages = _stages_of(closed)
    row, visit, stage = _visits_long(closed, open_stages)
    rng = np.random.default_rng(seed)
    rows = []
    not_recorded = {}
    for dev in DEVIATIONS:  # a loop over the six deviations, not over deals
        if deals[f"{dev.name}_visit"].isna().any() or not dev.known(deals).all():
            not_recorded[dev.name] = _NOT_RECORDED.get(
                dev.name, f"Whether deals {dev.label} is not recorded by this history, so they are not compared."
            )
            continue
        f = flags[dev.name].to_numpy()
        n1, n2 = int(f.sum()), int((~f).sum())
        k1, k2 = int((won & f).sum()), int((won & ~f).sum())
        w1, w2 = wilson(k1, n1, z), wilson(k2, n2, z)
        raw = _newcombe(*w1, *w2) if n1 and n2 else (np.nan, np.nan, np.nan)
        m = _matched(closed[f"{dev.name}_visit"].to_numpy(), row, visit, stage, won, len(open_stages), z)
        if m["n"]:
            diff = _newcombe(m["p1"], m["l1"], m["u1"], m["p2"], m["l2"], m["u2"])
        else:
            diff = (np.nan, np.nan, np.nan)
        b1, b2 = _bootstrap_medians(cycle[f], n_boot, rng), _bootstrap_medians(cycle[~f], n_boot, rng)
        med1 = float(np.median(cycle[f])) if n1 else np.nan
        med2 = float(np.median(cycle[~f])) if n2 else np.nan
        (c1l, c1h), (c2l, c2h), (cdl, cdh) = _interval(b1, alpha), _interval(b2, alpha), _interval(b1 - b2, alpha)
        rows.append(
            {
                "deviation": dev.name,
                "label": dev.label,
                "definition": dev.definition,
                "n_with": n1,
                "n_without": n2,
                "wins_with": k1,
                "wins_without": k2,
                "win_rate_with": w1[0],
                "win_rate_with_low": w1[1],
                "win_rate_with_high": w1[2],
                "win_rate_without": w2[0],
                "win_rate_without_low": w2[1],
                "win_rate_without_high": w2[2],
                "raw_diff": raw[0],
                "raw_diff_low": raw[1],
                "raw_diff_high": raw[2],
                "n_matched": int(m["n"]),
                "win_rate_matched": m["p1"],
                "win_rate_comparable": m["p2"],
                "win_rate_comparable_low": m["l2"],
                "win_rate_comparable_high": m["u2"],
                "win_rate_diff": diff[0],
                "win_rate_diff_low": diff[1],
                "win_rate_diff_high": diff[2],
                "median_cycle_with": med1,
                "median_cycle_with_low": c1l,
                "median_cycle_with_high": c1h,
                "median_cycle_without": med2,
                "median_cycle_without_low": c2l,
                "median_cycle_without_high": c2h,
                "median_cycle_diff": med1 - med2,
                "median_cycle_diff_low": cdl,
                "median_cycle_diff_high": cdh,
                "verdict": _verdict(dev.label, n1, int(m["n"]), m["p1"], m["p2"], diff[0], diff[1], diff[2], ci),
            }
        )
    out = pd.DataFrame(rows).set_index("deviation")
    n_closed, n_won = len(won), int(won.sum())
    if n_closed and n_won in (0, n_closed):  # all won or all lost: no win rate can differ, whatever the deviation
        outcome = "won" if n_won else "lost"
        void = [f"{p}{x}" for p in ("raw_diff", "win_rate_diff") for x in ("", "_low", "_high")]
        out[void] = np.nan
        out["verdict"] = [
            f"Every closed deal was {outcome}, so win rates cannot tell whether deals that {label} do better; "
            "only the cycle times compare."
            if n_with
            else verdict
            for label, n_with, verdict in zip(out["label"], out["n_with"], out["verdict"], strict=True)
        ]
        warnings.warn(
            f"Every one of the {n_closed:,} closed deals was {outcome} (no {'lost' if n_won else 'won'} deal), so "
            "the win rates cannot show whether following the process map pays: the win-rate differences are "
            "left out and only cycle times compare. An export that keeps only "
            f"{outcome} deals cannot say what {'loses' if n_won else 'wins'} deals.",
            OneOutcomeWarning,
            stacklevel=2,
        )
    for c in ("label", "definition", "verdict"):
        out[c] = out[c].astype("str")
    out.attrs["ci"] = ci
    if not_recorded:
        out.attrs["not_recorded"] = not_recorded
    out.attrs["basis"] = "closed deals only (won or lost); open deals are excluded"
    return out


def _stages_of(deals: pd.DataFrame) -> list[str]:
    """The open stages named in ``path``, in process order when the table says it (``attrs``), else sorted."""
    limits = deals.attrs.get("stall_limit_days")
    if limits:
        return list(limits)
    parts = deals["path"].fillna("").astype("str").str.split(PATH_SEPARATOR).explode()
    return sorted(set(parts[parts.ne("")].tolist()))
