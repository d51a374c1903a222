"""The pipeline exactly as it stood at any dates: as-of reconstruction from stage_history.

The core is `stage_intervals`: each opportunity's history turned into validity intervals ``[start, end)``,
one per change, holding the state (stage, amount, close date, forecast category) from that change on.
`pipeline_snapshots` then joins dates against the intervals with two binary searches (no loop over dates
or deals). Both work per opportunity only: any partition of opportunities by ``opportunity_id`` gives the
same rows as the whole, so they can run partitioned. One rule reads two facts of the whole data instead: whether
the history records a field at all (`unrecorded_fields`) and the data's ``as_of``. Called on a partition, it reads
them from the partition, so a partition whose history happens to hold no close date, or ends earlier than the
whole, would give other rows: a partitioned run passes the whole's (`pipeline_snapshots`' ``unknown``, as
`salesforecast.scale` does).

Rules (the contract the tests check):

- A deal is in the snapshot at ``t`` iff it was created at or before ``t`` and its state at ``t`` is an
  open stage.
- Its state at ``t`` is its last change at or before ``t``. Between creation and its first recorded
  change, it is in the state of the first change (the stage it was created in). Changes with the same
  timestamp apply in the order they were read.
- Amount, close date and forecast category are carried forward from the last change that had them. Before
  the first change that had one, the opportunity's current value is used: the only place current values
  enter, and only for fields the CRM did not historise up to then (never a later history row, so that a
  replay from `known_at(data, t)` sees the same values). A missing forecast category is the process map's
  default for the stage.
- A field the history never recorded (`unrecorded_fields`: its stage_history column holds no value at all, as in a
  history derived from date columns or a CRM without history) is not known at past dates: at a date before the
  data's ``as_of``, an open deal's close date is missing and its forecast category is the stage's default, instead
  of today's values (a close date read today is the date the deal actually closed: a forecast at a past date would
  know which deals close in the period). The current values hold from ``as_of`` on (the live pipeline). The amount
  keeps its current value: a deal's size is what a current-state export states for every deal, and it says nothing
  of whether or when the deal closes, so a past forecast that reads it learns only what the deal was worth (a CRM
  that rewrites the amount of lost deals, e.g. to 0, would break this; check amounts of lost deals in such an
  export).
- An open deal in an unknown stage (the two rules above) has no close date either: the state the history does not
  tell includes its close date (today's would be the date the deal actually closed).
- A history that starts more than a day after the opportunity was created says nothing about the stage
  before its first change: the deal is counted open in an unknown stage (missing ``stage``) from creation
  to that change, never in the later stage.
- An opportunity with no history rows is in its current stage from creation on (when that stage is open);
  a closed one with no history is counted open in an unknown stage (missing ``stage``) until its close date.
  A closed opportunity whose history never reaches a terminal stage closes at its close date (or at its last
  change, when that is later).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from salesforecast._utils import DAY_US, NAT, NEVER, arrow_strings, decode, encode, isin, positions, str_series
from salesforecast.schema import SNAPSHOT_STATIC_COLUMNS, CRMData

__all__ = [
    "HISTORY_FIELDS",
    "LEAD_CUT_COLUMNS",
    "EncodedIntervals",
    "encoded_intervals",
    "known_at",
    "pipeline_snapshots",
    "snapshot_rows",
    "stage_intervals",
    "to_dates",
    "unknown_before",
    "unrecorded_fields",
]

#: Static opportunity columns copied into snapshots when present.
DEFAULT_COLUMNS: tuple[str, ...] = SNAPSHOT_STATIC_COLUMNS

#: The stage_history columns that record a deal's state besides its stage.
HISTORY_FIELDS: tuple[str, ...] = ("amount", "close_date", "forecast_category")


def unrecorded_fields(data: CRMData) -> tuple[str, ...]:
    """The fields of `HISTORY_FIELDS` the stage history never recorded: no value at all in its column.

    A history derived from date columns (a mapping's ``derive_from_dates``, or
    `salesforecast.datasets.shapes.history_from_dates`) records stages only; data without any stage history record
    nothing. At dates before the data's ``as_of``, `pipeline_snapshots` and `known_at` then know no close date of an
    open deal, and its forecast category is the stage's default (see the rules of this module).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> from salesforecast.datasets.shapes import history_from_dates
    >>> data = load_sample()
    >>> unrecorded_fields(data), unrecorded_fields(history_from_dates(data))
    ((), ('amount', 'close_date', 'forecast_category'))
    """
    hist = data.stage_history
    return tuple(c for c in HISTORY_FIELDS if c not in hist.columns or not hist[c].notna().any())


def unknown_before(data: CRMData, field: str) -> np.datetime64 | None:
    """The time before which `field` of an open deal is unknown (the data's ``as_of``); None when it is recorded.

    `field` is one of `HISTORY_FIELDS`; the amount is never unknown (see the rules of this module).
    """
    hist = data.stage_history
    if field == "amount" or (field in hist.columns and hist[field].notna().any()) or pd.isna(data.as_of):
        return None
    return np.datetime64(pd.Timestamp(data.as_of), "us")


def to_dates(as_of: Any) -> pd.DatetimeIndex:
    """Turn one date or many into a sorted, unique `DatetimeIndex` at microsecond resolution.

    Examples
    --------
    >>> to_dates(["2024-03-01", "2024-01-01", "2024-03-01"]).strftime("%Y-%m-%d").tolist()
    ['2024-01-01', '2024-03-01']
    """
    if isinstance(as_of, (str, pd.Timestamp, np.datetime64)) or not isinstance(as_of, Iterable):
        as_of = [as_of]
    as_of = list(as_of) if not isinstance(as_of, (pd.Index, pd.Series, np.ndarray)) else as_of
    if any(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in as_of):
        raise ValueError(f"as_of must be dates (e.g. '2024-06-30'), not numbers: {list(as_of)[:3]}")
    if isinstance(as_of, (pd.Index, pd.Series, np.ndarray)) and pd.api.types.is_datetime64_any_dtype(as_of):
        idx = pd.DatetimeIndex(as_of)
    else:
        try:
            idx = pd.DatetimeIndex([pd.Timestamp(x) for x in as_of])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"as_of: {exc}") from None
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    if idx.hasnans:
        raise ValueError("as_of contains a missing date")
    return idx.as_unit("us").unique().sort_values()


def _intervals(data: CRMData) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """`stage_intervals`, each row's opportunity code (rank of its id in sorted order) and row in opportunities.

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    iv : pandas.DataFrame
        `stage_intervals` (sorted by opportunity id, then start, then reading order).
    codes : numpy.ndarray
        int64, each row's opportunity code: the rank of its id among the sorted ids.
    opp_pos : numpy.ndarray
        int64, each row's position in ``data.opportunities``.
    """
    enc = encoded_intervals(data)
    return enc.frame, enc.codes, enc.opp_pos


@dataclass(frozen=True)
class EncodedIntervals:
    """`stage_intervals` with the codes of its rows (and, from the fast path, of its string columns).

    ``frame`` is the `stage_intervals` table, ``codes`` (int64) each row's opportunity code (the rank of its id
    among the sorted ids) and ``opp_pos`` (int64) each row's position in ``data.opportunities``.

    ``ids[codes]`` is the ``opportunity_id`` column, ``stage_vocab[stage]`` the ``stage`` column and
    ``category_vocab[category]`` the ``forecast_category`` column (code -1: missing). The codes are ``None``
    when the intervals came from `_intervals_plain`.
    """

    frame: pd.DataFrame
    codes: np.ndarray
    opp_pos: np.ndarray
    ids: pa.Array | None = None
    stage: np.ndarray | None = None
    stage_vocab: pa.Array | None = None
    category: np.ndarray | None = None
    category_vocab: pa.Array | None = None


def encoded_intervals(data: CRMData) -> EncodedIntervals:
    """`stage_intervals` of `data` with the codes of its rows (vectorised when the data allow, else plain pandas).

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    EncodedIntervals

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> enc = encoded_intervals(data)
    >>> enc.frame.equals(stage_intervals(data)), len(enc.codes) == len(enc.opp_pos) == len(enc.frame)
    (True, True)
    >>> ids = data.opportunities["opportunity_id"].take(enc.opp_pos)
    >>> bool((ids.to_numpy() == enc.frame["opportunity_id"].to_numpy()).all()), bool((np.diff(enc.codes) >= 0).all())
    (True, True)
    """
    fast = _intervals_fast(data)
    if fast is not None:
        return fast
    frame, codes, opp_pos = _intervals_plain(data)
    return EncodedIntervals(frame, codes, opp_pos)


def _us_view(s: pd.Series) -> np.ndarray | None:
    """int64 microseconds of a ``datetime64[us]`` Series (NaT: int64 min); None for any other dtype."""
    if s.dtype != np.dtype("datetime64[us]"):
        return None
    return s.to_numpy().view(np.int64)


def _vocabulary(*dictionaries: pa.Array, extra: Iterable[str] = ()) -> tuple[dict[str, int], list[np.ndarray]]:
    """Merge dictionaries of strings into one: the code of each value, and per dictionary its codes there.

    Each returned mapping ends with an extra -1, so that ``mapping[codes]`` keeps missing (-1) as missing.
    """
    names: dict[str, int] = {}
    maps = []
    for d in dictionaries:
        codes = [names.setdefault(v, len(names)) for v in d.to_pylist()]
        maps.append(np.array([*codes, -1], dtype=np.int32))
    for v in extra:
        names.setdefault(v, len(names))
    return names, maps


def _per_name(names: dict[str, int], f: Any, missing: Any, dtype: Any) -> np.ndarray:
    """``f(name)`` for each code of `names`, then `missing` (for code -1)."""
    return np.array([*(f(name) for name in names), missing], dtype=dtype)


def _intervals_fast(data: CRMData) -> EncodedIntervals | None:
    """`_intervals` in vectorised integer code, for validated tables (None when they are not of that shape).

    The shape: Arrow-backed string ids (no missing, unique in opportunities, every history id among them),
    stages and forecast categories; ``datetime64[us]`` times (creation and change times never missing);
    ``float64`` amounts; boolean ``is_closed``. Everything else goes to `_intervals_plain`, the reference this
    must equal exactly.

    Each opportunity's rows are laid out in the order `_intervals_plain` sorts them into: the open-in-an-unknown-
    stage row of a late history (or the current-state row of a deal without history; never both), its history
    (by change time, then reading order), then the closing row of a closed deal whose history never reaches a
    terminal stage (at or after its last change, and read after it). So only the history needs sorting, and
    usually it already is sorted.
    """
    process = data.process
    opps = data.opportunities
    hist = data.stage_history
    n, h = len(opps), len(hist)
    opp_cols = ("opportunity_id", "created_at", "stage", "amount", "close_date", "is_closed")
    hist_cols = ("opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category")
    if n == 0 or h == 0 or not (set(opp_cols) <= set(opps.columns) and set(hist_cols) <= set(hist.columns)):
        return None
    oid, hid = arrow_strings(opps["opportunity_id"]), arrow_strings(hist["opportunity_id"])
    o_stage, h_stage = arrow_strings(opps["stage"]), arrow_strings(hist["stage"])
    h_cat = arrow_strings(hist["forecast_category"])
    with_cat = "forecast_category" in opps.columns
    o_cat = arrow_strings(opps["forecast_category"]) if with_cat else pa.nulls(n, pa.large_string())
    created, t = _us_view(opps["created_at"]), _us_view(hist["changed_at"])
    o_close, h_close = _us_view(opps["close_date"]), _us_view(hist["close_date"])
    if (
        oid is None
        or hid is None
        or o_stage is None
        or h_stage is None
        or h_cat is None
        or o_cat is None
        or created is None
        or t is None
        or o_close is None
        or h_close is None
        or oid.null_count
        or hid.null_count
        or opps["is_closed"].dtype != np.dtype(bool)
        or opps["amount"].dtype != np.dtype("float64")
        or hist["amount"].dtype != np.dtype("float64")
        or (created == NAT).any()
        or (t == NAT).any()
    ):
        return None
    o_amount = opps["amount"].to_numpy()
    h_amount = hist["amount"].to_numpy()
    o_closed = opps["is_closed"].to_numpy()

    # opportunity codes: ranks of the ids (usually already sorted: then the rank is the position)
    if n == 1 or pc.all(pc.less(oid.slice(0, n - 1), oid.slice(1))).as_py():
        by_code: np.ndarray | None = None
        ids = oid
    else:
        by_code = pc.sort_indices(oid).to_numpy().astype(np.int64)
        ids = oid.take(pa.array(by_code))
        if pc.any(pc.equal(ids.slice(0, n - 1), ids.slice(1))).as_py():
            return None  # duplicate ids: the plain way raises
    hpos = positions(hid, oid)
    if (hpos < 0).any():
        return None
    if by_code is None:
        hcode = hpos
    else:
        rank = np.empty(n, dtype=np.int64)
        rank[by_code] = np.arange(n, dtype=np.int64)
        hcode = rank[hpos]
        created, o_close, o_amount, o_closed = (a[by_code] for a in (created, o_close, o_amount, o_closed))

    # string columns as int32 codes into merged vocabularies
    hs, hs_dict = encode(h_stage)
    os_, os_dict = encode(o_stage)
    stage_names, (hs_map, os_map) = _vocabulary(hs_dict, os_dict)
    hs, os_ = hs_map[hs], os_map[os_]
    hc, hc_dict = encode(h_cat)
    oc, oc_dict = encode(o_cat)
    default_cat = process.forecast_category
    cat_names, (hc_map, oc_map) = _vocabulary(hc_dict, oc_dict, extra=default_cat.dropna().tolist())
    hc, oc = hc_map[hc], oc_map[oc]
    if by_code is not None:
        os_, oc = os_[by_code], oc[by_code]

    # history by opportunity code, change time, reading order
    order = _history_order(hcode, t)
    if order is not None:
        hcode, t, hs, hc, h_amount, h_close = (a[order] for a in (hcode, t, hs, hc, h_amount, h_close))

    # per opportunity: which extra rows it gets
    cnt = np.bincount(hcode, minlength=n)
    hstart = np.cumsum(cnt) - cnt
    has = cnt > 0
    first_t = t[np.minimum(hstart, h - 1)]
    last_t = t[np.clip(hstart + cnt - 1, 0, h - 1)]
    late = has & (first_t > created + DAY_US)
    bare = ~has
    closed_stage = _per_name(stage_names, set(process.closed_stages).__contains__, False, bool)
    reaches_close = np.zeros(n, dtype=bool)
    reaches_close[hcode[closed_stage[hs]]] = True
    need_close = o_closed & ~reaches_close
    pre = (late | bare).astype(np.int64)
    n_c = pre + cnt + need_close
    stop = np.cumsum(n_c)
    off = stop - n_c
    m = int(stop[-1])

    # place history rows, the rows before them and the closing rows
    pre_codes = np.flatnonzero(pre)
    cl = np.flatnonzero(need_close)
    dest_h = None
    if m != h:
        dest_h = (off - hstart + pre)[hcode]
        dest_h += np.arange(h, dtype=np.int64)
    dest_pre = off[pre_codes]
    dest_cl = off[cl] + pre[cl] + cnt[cl]
    pre_bare = bare[pre_codes]
    pre_open = pre_bare & ~o_closed[pre_codes]

    def place(hist_values: np.ndarray, pre_values: np.ndarray, close_values: np.ndarray) -> np.ndarray:
        if dest_h is None:
            return hist_values
        out = np.empty(m, dtype=hist_values.dtype)
        out[dest_h] = hist_values
        out[dest_pre] = pre_values
        out[dest_cl] = close_values
        return out

    when = o_close[cl]
    when = np.where(has[cl], np.maximum(when, last_t[cl]), when)  # NaT is int64 min: never the maximum
    when = np.maximum(when, created[cl])
    t_all = place(t, created[pre_codes], when)
    stage = place(hs, np.where(pre_open, os_[pre_codes], -1), os_[cl])
    amount = place(h_amount, np.where(pre_bare, o_amount[pre_codes], np.nan), o_amount[cl])
    close_date = place(h_close, np.where(pre_bare, o_close[pre_codes], NAT), o_close[cl])
    category = place(hc, np.where(pre_open, oc[pre_codes], -1), np.full(len(cl), -1, dtype=np.int32))
    dest_h = None  # free it

    # (below, large temporaries are few and reused: at millions of rows, fresh memory is much of the cost)
    code = hcode if m == h else np.repeat(np.arange(n, dtype=np.int64), n_c)  # (no extra rows: the same)
    opp_pos = code.copy() if by_code is None else by_code[code]
    created_r = np.repeat(created, n_c)
    first = np.zeros(m, dtype=bool)
    first[off] = True
    start = np.maximum(t_all, created_r)
    del t_all
    start[off] = created_r[off]
    end = np.empty(m, dtype=np.int64)
    end[:-1] = start[1:]
    end[stop - 1] = NEVER
    np.maximum(end, start, out=end)  # a later change cannot end a state before it started
    end[end == NEVER] = NAT

    # carry amount, close date and category forward within each opportunity; nothing recorded yet: the current
    # value (amount, close date) or the stage's default category
    width = np.int32 if m < 2**31 else np.int64
    row = np.arange(m, dtype=width)
    src = np.empty(m, dtype=width)

    def last_where(mark: np.ndarray) -> np.ndarray:
        """Per row, the last row at or before it (within its opportunity) where `mark` (else its first row)."""
        np.logical_or(mark, first, out=mark)
        np.multiply(row, mark, out=src)
        return np.maximum.accumulate(src, out=src)

    amount = amount.take(last_where(~np.isnan(amount)))
    miss = np.isnan(amount)
    amount[miss] = o_amount[code[miss]]
    close_date = close_date.take(last_where(close_date != NAT))
    miss = close_date == NAT
    close_date[miss] = o_close[code[miss]]
    category = category.take(last_where(category >= 0))
    miss = category < 0
    default_code = _per_name(
        stage_names, lambda s: cat_names.get(default_cat.get(s), -1) if s in default_cat.index else -1, -1, np.int32
    )
    category[miss] = default_code[stage[miss]]
    del miss

    is_open = _per_name(stage_names, set(process.open_stages).__contains__, True, bool)[stage]
    # runs of the same stage (missing counts as "\x00", as in the plain way): each run starts at its first row,
    # since start never decreases within an opportunity
    same = stage if "\x00" not in stage_names else np.where(stage < 0, stage_names["\x00"], stage)
    new_run = np.zeros(m, dtype=bool)
    np.not_equal(same[1:], same[:-1], out=new_run[1:])
    run_start = start.take(last_where(new_run))

    stage_vocab = pa.array(list(stage_names), pa.large_string())
    category_vocab = pa.array(list(cat_names), pa.large_string())
    frame = pd.DataFrame(
        {
            "opportunity_id": str_series(decode(code, ids)),
            "start": start.view("datetime64[us]"),
            "end": end.view("datetime64[us]"),
            "stage": str_series(decode(stage, stage_vocab)),
            "is_open": is_open,
            "amount": amount,
            "close_date": close_date.view("datetime64[us]"),
            "forecast_category": str_series(decode(category, category_vocab)),
            "stage_entered_at": run_start.view("datetime64[us]"),
            "created_at": created_r.view("datetime64[us]"),
        },
        copy=False,  # fresh arrays: no need to copy them into consolidated blocks
    )
    return EncodedIntervals(frame, code, opp_pos, ids, stage, stage_vocab, category, category_vocab)


def _sorted_by(keys: np.ndarray, t: np.ndarray) -> bool:
    """Whether rows are in order of `keys`, then `t` (both int64)."""
    if len(keys) < 2:
        return True
    if not (keys[1:] >= keys[:-1]).all():
        return False
    return not ((keys[1:] == keys[:-1]) & (t[1:] < t[:-1])).any()


def _intervals_plain(data: CRMData) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """`_intervals` in plain pandas, for any tables: the reference of `_intervals_fast`."""
    process = data.process
    opps = data.opportunities
    hist = data.stage_history
    cols = ["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"]
    ev = hist[cols].copy()
    ev["_seq"] = np.arange(len(ev), dtype=np.int64)

    has_hist = isin(opps["opportunity_id"], hist["opportunity_id"])
    extra = []
    # opportunities without history: their current state from creation (unknown stage when closed now)
    bare = opps.loc[~has_hist]
    if len(bare):
        first = pd.DataFrame(
            {
                "opportunity_id": bare["opportunity_id"],
                "changed_at": bare["created_at"],
                "stage": bare["stage"].where(~bare["is_closed"]),
                "amount": bare["amount"],
                "close_date": bare["close_date"],
                "forecast_category": bare.get("forecast_category", pd.Series(index=bare.index, dtype="str")).where(
                    ~bare["is_closed"]
                ),
            }
        )
        extra.append(first)
    # history that starts more than a day after creation: open in an unknown stage until its first change
    first_change = hist.groupby("opportunity_id", sort=False)["changed_at"].min()
    with_hist = opps.loc[has_hist]
    late = with_hist.loc[
        first_change.reindex(with_hist["opportunity_id"].to_numpy()).to_numpy("datetime64[us]")
        > (with_hist["created_at"] + pd.Timedelta(days=1)).to_numpy("datetime64[us]")
    ]
    if len(late):
        extra.append(
            pd.DataFrame(
                {
                    "opportunity_id": late["opportunity_id"],
                    "changed_at": late["created_at"],
                    "stage": pd.Series(pd.NA, index=late.index, dtype="str"),
                    "amount": np.nan,
                    "close_date": pd.Series(pd.NaT, index=late.index, dtype="datetime64[us]"),
                    "forecast_category": pd.Series(pd.NA, index=late.index, dtype="str"),
                }
            )
        )
    # closed opportunities whose history never reaches a terminal stage: close them at their close date
    closed_in_hist = hist.loc[process.is_closed(hist["stage"]), "opportunity_id"]
    last_change = hist.groupby("opportunity_id", sort=False)["changed_at"].max()
    need_close = opps.loc[opps["is_closed"] & ~isin(opps["opportunity_id"], closed_in_hist)]
    if len(need_close):
        when = need_close["close_date"]
        prior = pd.Series(
            last_change.reindex(need_close["opportunity_id"].to_numpy()).to_numpy("datetime64[us]"),
            index=need_close.index,
        )
        when = when.where(prior.isna() | (when >= prior), prior)
        when = when.where(when >= need_close["created_at"], need_close["created_at"])
        extra.append(
            pd.DataFrame(
                {
                    "opportunity_id": need_close["opportunity_id"],
                    "changed_at": when,
                    "stage": need_close["stage"],
                    "amount": need_close["amount"],
                    "close_date": need_close["close_date"],
                    "forecast_category": pd.Series(pd.NA, index=need_close.index, dtype="str"),
                }
            )
        )
    if extra:
        add = pd.concat(extra, ignore_index=True)
        add["_seq"] = np.arange(len(ev), len(ev) + len(add), dtype=np.int64)
        ev = pd.concat([ev, add], ignore_index=True)

    # order: opportunity (as integer codes, fast), change time, then reading order
    codes, _ = pd.factorize(ev["opportunity_id"], sort=True)
    t = ev["changed_at"].to_numpy("datetime64[us]").view(np.int64)
    order = np.lexsort((ev["_seq"].to_numpy(), t, codes))
    ev = ev.iloc[order].reset_index(drop=True)
    codes = codes[order]
    t = t[order]

    opp_pos = pd.Index(opps["opportunity_id"]).get_indexer(ev["opportunity_id"])
    created = pd.Series(opps["created_at"].to_numpy("datetime64[us]")[opp_pos])
    created_i = created.to_numpy("datetime64[us]").view(np.int64)
    first_of_opp = np.ones(len(codes), dtype=bool)
    first_of_opp[1:] = codes[1:] != codes[:-1]
    last_of_opp = np.ones(len(codes), dtype=bool)
    last_of_opp[:-1] = codes[1:] != codes[:-1]
    start = np.maximum(t, created_i)
    start[first_of_opp] = created_i[first_of_opp]
    end = np.r_[start[1:], 0]
    end[last_of_opp] = NEVER
    end = np.maximum(end, start)  # a later change cannot end a state before it started

    # carry amount, close date and category forward within each opportunity
    group = pd.Series(codes)
    carried = ev[["amount", "close_date", "forecast_category"]].groupby(group.to_numpy()).ffill()
    # nothing recorded yet: the opportunity's current value (never a later history row: that would differ from
    # what known_at(data, t) can rebuild, and a replay at t must see the same values either way)
    amount = carried["amount"].fillna(pd.Series(opps["amount"].to_numpy("float64")[opp_pos]))
    close_date = carried["close_date"].fillna(pd.Series(opps["close_date"].to_numpy("datetime64[us]")[opp_pos]))
    category = carried["forecast_category"].fillna(ev["stage"].map(process.forecast_category))

    stage = ev["stage"]
    is_open = stage.isin(process.open_stages) | stage.isna()
    # runs of the same stage: a new run starts at each opportunity's first row or a change of stage
    filled = stage.fillna("\x00")
    new_run = first_of_opp | filled.ne(filled.shift()).to_numpy()
    run_id = np.cumsum(new_run)
    run_start = pd.Series(start).groupby(run_id).transform("min").to_numpy()

    out = pd.DataFrame(
        {
            "opportunity_id": ev["opportunity_id"],
            "start": start.view("datetime64[us]"),
            "end": np.where(end == NEVER, NAT, end).view("datetime64[us]"),
            "stage": stage,
            "is_open": is_open.to_numpy(),
            "amount": amount.to_numpy(dtype="float64"),
            "close_date": close_date.to_numpy("datetime64[us]"),
            "forecast_category": category.astype("str"),
            "stage_entered_at": run_start.view("datetime64[us]"),
            "created_at": created.to_numpy("datetime64[us]"),
        }
    )
    return out, codes, opp_pos


def snapshot_rows(iv: pd.DataFrame, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Which open states hold at which dates: rows of `iv` and the index of the date in `dates`.

    Parameters
    ----------
    iv : pandas.DataFrame
        `stage_intervals` (columns ``start``, ``end``, ``is_open`` are read).
    dates : pandas.DatetimeIndex
        Sorted, unique (`to_dates`).

    Returns
    -------
    rows, date_idx : numpy.ndarray
        int64: the row of `iv` and the position of its date in `dates`, ordered by date, then by row of `iv` (so
        by opportunity id: `iv` is sorted by opportunity, and one opportunity has at most one state at a time).
        Cost O(states x log(dates) + output rows).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> iv, dates = stage_intervals(data), to_dates(["2025-01-01", "2025-04-01"])
    >>> rows, date_idx = snapshot_rows(iv, dates)
    >>> np.bincount(date_idx).tolist(), len(rows) == len(pipeline_snapshots(data, dates))
    ([144, 139], True)
    >>> bool(iv["is_open"].take(rows).all())
    True
    """
    d = dates.asi8 if dates.unit == "us" else dates.as_unit("us").asi8
    start = iv["start"].to_numpy("datetime64[us]").view(np.int64)
    end = iv["end"].to_numpy("datetime64[us]").view(np.int64)
    lo = np.searchsorted(d, start, side="left")
    n = np.searchsorted(d, end, side="left")
    n[end == NAT] = len(d)  # the current state (no end): at every date from its start on
    n -= lo
    n[~iv["is_open"].to_numpy()] = 0
    held = np.flatnonzero(n)
    lengths = n[held]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # the dates of each state are consecutive: a cumulative sum of steps of 1, with a jump at each state's first
    # date (small ints: every partial sum is a date index)
    small = np.int16 if len(d) < 2**15 else np.int64
    first_date = lo[held]
    seg = np.cumsum(lengths) - lengths
    step = np.ones(total, dtype=small)
    step[seg[1:]] = first_date[1:] - (first_date[:-1] + lengths[:-1] - 1)
    step[0] = first_date[0]
    date_idx = np.cumsum(step, dtype=small, out=step)
    rows = np.repeat(held, lengths)
    # a stable sort on the date alone keeps the rows of each date in the order of iv (radix sort for small ints)
    order = np.argsort(date_idx, kind="stable")
    return rows[order], date_idx[order].astype(np.int64)


def stage_intervals(data: CRMData) -> pd.DataFrame:
    """Each opportunity's history as validity intervals.

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    pandas.DataFrame
        One row per state: ``opportunity_id, start, end, stage, is_open, amount, close_date,
        forecast_category, stage_entered_at, created_at``; ``[start, end)`` is when the state held (``end`` is
        NaT for the current state), sorted by opportunity then start. ``stage_entered_at`` is when the deal
        entered the stage of this state (a run of consecutive changes in the same stage counts once).
        ``stage`` is missing where it is unknown (a closed opportunity without history, before it closed).
    """
    return _intervals(data)[0]


def pipeline_snapshots(
    data: CRMData,
    as_of: Any,
    columns: Sequence[str] | None = None,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
    intervals: EncodedIntervals | None = None,
    unknown: Mapping[str, np.datetime64 | None] | None = None,
    strings: Literal["str", "category"] = "str",
) -> pd.DataFrame:
    """The open pipeline as it stood at each date, rebuilt from stage_history.

    Parameters
    ----------
    data : CRMData
        Validated data (opportunities and stage_history).
    as_of : date, str or sequence of dates
        The moments to rebuild. A date without a time means midnight at its start: a change made during
        that day is not yet known. Duplicates are dropped.
    columns : sequence of str, optional
        Static opportunity columns to copy in (default: those of `DEFAULT_COLUMNS` present). Their current
        values are used: the canonical tables do not historise them.
    rows : tuple of numpy.ndarray, optional
        Only these rows: ``(rows, date_idx)``, a subset of ``snapshot_rows(stage_intervals(data), dates)`` (``dates``
        = ``to_dates(as_of)``) in its order, e.g. a sample of them. Default: all of them.
    intervals : EncodedIntervals, optional
        ``encoded_intervals(data)`` when the caller holds it already (e.g. `salesforecast.history.DealHistory`'s
        ``intervals``), so it is not rebuilt: millions of rows at 1M deals. It must come from the same `data`.
    unknown : mapping, optional
        Per field of `HISTORY_FIELDS`, the time before which it is unknown (`unknown_before`; None: recorded), when
        `data` is a part of a larger whole whose rules apply (`salesforecast.scale`). Default: `data`'s own.
    strings : {"str", "category"}
        The type of the text columns (``opportunity_id``, ``stage``, ``forecast_category`` and the static columns
        of the ``str`` type): ``str`` (the default), or ``category``, dictionary-encoded (the same values, as
        ``astype("str")`` gives them back): each row holds a small integer code instead of its string, so millions
        of rows take a fraction of the memory and of the time to build (the values themselves are built once).

    Returns
    -------
    pandas.DataFrame
        One row per (as_of, open opportunity), sorted by as_of then opportunity_id: ``as_of,
        opportunity_id, stage, amount, close_date, forecast_category, created_at, stage_entered_at,
        days_in_stage, age_days`` and the static columns. ``days_in_stage`` counts from when the deal entered
        its current stage; ``age_days`` from its creation (both fractional days).

    Notes
    -----
    The rules are in this module's docstring. Cost is O(changes x log(dates) + output rows); nothing depends
    on other opportunities, so partitions by opportunity_id can be computed separately and concatenated.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> snap = pipeline_snapshots(data, ["2024-01-01", "2024-04-01"])
    >>> snap.groupby("as_of").size().gt(0).all()
    np.True_
    """
    if strings not in ("str", "category"):
        raise ValueError(f"strings must be 'str' or 'category', got {strings!r}")
    compact = strings == "category"
    dates = to_dates(as_of)
    enc = encoded_intervals(data) if intervals is None else intervals
    iv = enc.frame
    rows, date_idx = snapshot_rows(iv, dates) if rows is None else rows

    asof_us = dates.as_unit("us").asi8[date_idx].view("datetime64[us]")
    del date_idx
    entered = iv["stage_entered_at"].to_numpy("datetime64[us]")[rows]
    created = iv["created_at"].to_numpy("datetime64[us]")[rows]
    day = np.timedelta64(DAY_US, "us")
    elapsed = np.subtract(asof_us, entered)
    days_in_stage = elapsed / day
    age_days = np.divide(np.subtract(asof_us, created, out=elapsed), day)
    del elapsed
    if enc.ids is not None and enc.stage is not None and enc.category is not None:
        # strings from integer codes: a gather of small ints, then one decode per column
        opportunity_id = _text(enc.codes[rows], enc.ids, compact)
        stage = _text(enc.stage[rows], enc.stage_vocab, compact)
        category = _text(enc.category[rows], enc.category_vocab, compact)
    else:
        sel = iv[["opportunity_id", "stage", "forecast_category"]].iloc[rows].reset_index(drop=True)
        if compact:
            sel = sel.astype("category")
        opportunity_id, stage, category = sel["opportunity_id"], sel["stage"], sel["forecast_category"]
    close_date = iv["close_date"].to_numpy("datetime64[us]")[rows]
    close_date[stage.isna().to_numpy()] = np.datetime64("NaT")  # an unknown state: no close date either
    before = unknown_before(data, "close_date") if unknown is None else unknown.get("close_date")
    if before is not None:  # a close date the history did not record: unknown at past dates
        close_date[asof_us < before] = np.datetime64("NaT", "us")
    out = pd.DataFrame(
        {
            "as_of": asof_us,
            "opportunity_id": opportunity_id,
            "stage": stage,
            "amount": iv["amount"].to_numpy()[rows],
            "close_date": close_date,
            "forecast_category": category,
            "created_at": created,
            "stage_entered_at": entered,
            "days_in_stage": days_in_stage,
            "age_days": age_days,
        },
        copy=False,  # fresh arrays: no need to copy them into consolidated blocks
    )
    before = unknown_before(data, "forecast_category") if unknown is None else unknown.get("forecast_category")
    if before is not None and len(out):  # not recorded: the stage's default at past dates
        default = out["stage"].astype("str").map(data.process.forecast_category).astype("str")
        recorded = out["forecast_category"].astype("str").where(asof_us >= before, default)
        out["forecast_category"] = recorded.astype("category") if compact else recorded
    if columns is None:
        columns = [c for c in DEFAULT_COLUMNS if c in data.opportunities.columns]
    missing = [c for c in columns if c not in data.opportunities.columns]
    if missing:
        raise KeyError(f"opportunities has no column {missing[0]!r}; available: {list(data.opportunities.columns)}")
    if columns:
        pos = enc.opp_pos[rows]
        # opportunities sorted by id: the positions rise within each date, a direct gather reads memory in order
        in_order = bool((np.diff(enc.opp_pos) >= 0).all())
        for c in columns:
            out[c] = _static_column(data.opportunities[c], pos, in_order, compact)
    return out


def _text(codes: np.ndarray, dictionary: pa.Array, compact: bool) -> pd.Series:
    """The strings of `dictionary` at `codes` (negative: missing): ``str``, or ``category`` when `compact`."""
    if compact:
        values = pd.Index(str_series(dictionary))
        return pd.Series(pd.Categorical.from_codes(np.asarray(codes), categories=values, validate=False))
    return str_series(decode(codes, dictionary))


def _static_column(
    col: pd.Series | pd.DataFrame, pos: np.ndarray, in_order: bool, compact: bool = False
) -> pd.Series | pd.DataFrame:
    """``col.take(pos).reset_index(drop=True)``, faster for Arrow strings (dictionary-encoded when `compact`).

    Those are gathered directly when `pos` mostly rises (`in_order`) or the values are mostly distinct, else
    through their dictionary codes (a gather of small ints, then from a dictionary that stays in cache).
    """
    strings = arrow_strings(col)
    if strings is None:
        return col.take(pos).reset_index(drop=True)
    if compact:
        codes, dictionary = encode(strings)
        return _text(codes[pos], dictionary, True)
    if not in_order:
        codes, dictionary = encode(strings)
        if len(dictionary) <= len(strings) // 8:
            return str_series(decode(codes[pos], dictionary))
    return str_series(strings.take(pa.array(pos)))


def _opp_keys(opp_ids: pd.Series, hist_ids: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer keys for opportunity ids: equal ids get equal keys, a missing id gets -1.

    Returns the key of each opportunity row, of each history row, and the number of keys. For unique Arrow string
    ids that cover the history's (validated data), the key is the opportunity's position.
    """
    n = len(opp_ids)
    o, hh = arrow_strings(opp_ids), arrow_strings(hist_ids)
    if o is not None and hh is not None and o.null_count == 0:
        unique = n < 2 or pc.all(pc.less(o.slice(0, n - 1), o.slice(1))).as_py() or pc.count_distinct(o).as_py() == n
        if unique:
            hpos = positions(hh, o)
            if (hpos >= 0).all():
                return np.arange(n, dtype=np.int64), hpos, n
    both = pd.concat([opp_ids, hist_ids], ignore_index=True)
    keys, uniques = pd.factorize(both)
    keys = keys.astype(np.int64)
    return keys[:n], keys[n:], len(uniques)


def _flag(n: int, keys: np.ndarray) -> np.ndarray:
    """Boolean per key: True at `keys` (missing keys, -1, ignored)."""
    out = np.zeros(n + 1, dtype=bool)
    out[keys] = True  # -1 lands on the spare last slot
    return out[:n]


def _at(per_key: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``per_key[keys]``, False for missing keys (-1)."""
    return np.r_[per_key, False][keys]


def _gather(values: np.ndarray, idx: np.ndarray, fill: Any) -> np.ndarray:
    """``values[idx]``, `fill` where ``idx < 0``."""
    out = np.full(len(idx), fill, dtype=values.dtype)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def _history_order(keys: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """The order of history rows by key, then time (int64), then reading order; None when already so."""
    if _sorted_by(keys, t):
        return None
    if not (t[1:] >= t[:-1]).all():  # (a history in order of time needs one sort, by key)
        by_time = np.argsort(t, kind="stable")
        return by_time[np.argsort(keys[by_time], kind="stable")]
    return np.argsort(keys, kind="stable")


def _last_rows(key_sorted: np.ndarray, order: np.ndarray | None, n: int, use: np.ndarray) -> np.ndarray:
    """Per key, the history row (position in the table) of its last row where `use` (-1: none).

    `key_sorted` and `use` are in the order `order` (from `_history_order`; None: table order).
    """
    out = np.full(n, -1, dtype=np.int64)
    pick = np.flatnonzero(use)
    k = key_sorted[pick]
    last = np.ones(len(pick), dtype=bool)
    last[:-1] = k[1:] != k[:-1]
    last &= k >= 0
    out[k[last]] = pick[last] if order is None else order[pick[last]]
    return out


def _replace_known(current: pd.Series, source: pd.Series, src: np.ndarray) -> pd.Series:
    """`current` with the values of `source` at rows `src` where ``src >= 0``, in the dtype of `current`."""
    known = src >= 0
    cur, new = arrow_strings(current), arrow_strings(source)
    if cur is not None and new is not None:  # Arrow strings: no Python objects
        taken = decode(src, new)  # missing where src < 0: exactly where the current value stays
        return str_series(pc.coalesce(taken, cur.cast(taken.type)), index=current.index)
    values = current.to_numpy(copy=True)
    values[known] = source.to_numpy()[src[known]]
    return pd.Series(values, index=current.index, dtype=current.dtype)


#: The lead columns `known_at` cuts by and `salesforecast.schema.CRMData.as_of` reads (a step that reads no other
#: lead column can drop the rest before a cut and get the same data).
LEAD_CUT_COLUMNS: tuple[str, ...] = ("lead_id", "created_at", "converted", "converted_at", "opportunity_id")


def known_at(data: CRMData, cutoff: Any, unknown: Mapping[str, np.datetime64 | None] | None = None) -> CRMData:
    """The data as they were known at `cutoff`: no change, creation or submission after it.

    Stage history keeps the changes at or before `cutoff`; opportunities keep those created at or before it, with
    their state (stage, closed and won flags, amount, close date, forecast category) rebuilt from the last change
    known at `cutoff` (a field the history recorded only from some change on keeps its current value before it, as
    in `salesforecast.snapshots.pipeline_snapshots`; a field it never recorded, `unrecorded_fields`, is unknown for
    deals open at a `cutoff` before the data's ``as_of``: no close date, the stage's default forecast category, the
    current amount; a deal closed now whose history never reaches a won or lost stage
    keeps its closed state when the snapshots close it by `cutoff`). An opportunity with no history row known at
    `cutoff` is kept only when it has no history at all and is open now or closed by `cutoff` (its state then
    cannot have changed); otherwise its state at `cutoff` is unknown and it is left out (`pipeline_snapshots`, by
    contrast, puts a deal whose first change comes within a day of its creation in that stage from creation on,
    even before the change was made). Leads created after
    `cutoff` are dropped and conversions after it undone; forecast submissions after it are dropped; activities
    after it, and those of deals and leads not kept, are dropped; quotas are kept.

    Parameters
    ----------
    data : CRMData
    cutoff : date
    unknown : mapping, optional
        Per field of `HISTORY_FIELDS`, the time before which it is unknown (`unknown_before`; None: recorded), when
        `data` is a part of a whole whose rules apply (a partition, `salesforecast.scale`); default: `data`'s own.

    Returns
    -------
    CRMData
        A copy; the quarantine and counts are those of `data`.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> past = known_at(data, "2024-06-30")
    >>> bool(past.stage_history["changed_at"].max() <= pd.Timestamp("2024-06-30"))
    True
    >>> int(past.opportunities["is_closed"].sum()) < int(data.opportunities["is_closed"].sum())
    True
    """
    cutoff = pd.Timestamp(cutoff)
    process = data.process
    opps = data.opportunities
    hist = data.stage_history
    okey, hkey, n_keys = _opp_keys(opps["opportunity_id"], hist["opportunity_id"])
    created = (opps["created_at"] <= cutoff).to_numpy()
    key_created = _flag(n_keys, okey[created])
    known_rows = (hist["changed_at"] <= cutoff).to_numpy() & _at(key_created, hkey)
    h = hist.loc[known_rows] if not known_rows.all() else hist
    has_any = _at(_flag(n_keys, hkey), okey)
    has_known = _at(_flag(n_keys, hkey[known_rows]), okey)
    bare_ok = ~has_any & (~opps["is_closed"] | (opps["close_date"] <= cutoff)).to_numpy()
    keep = created & (has_known | bare_ok)
    kept_pos = np.flatnonzero(keep)
    kept = opps.iloc[kept_pos] if len(kept_pos) < len(opps) else opps.copy(deep=False)
    kkey = okey[kept_pos]
    # closed now, but the history never reaches a won or lost stage: snapshots close such a deal at its close date
    # (or last change); when that is at or before the cutoff, it was already closed then
    no_terminal = ~_at(_flag(n_keys, hkey[process.is_closed(hist["stage"]).to_numpy()]), kkey)
    # the history by opportunity, change time, reading order: last change, last known value of each column
    changed = hist["changed_at"]
    t = changed.to_numpy("datetime64[us]").view(np.int64)
    order = _history_order(hkey, changed.to_numpy().view(np.int64) if changed.dtype.kind == "M" else t)
    key_sorted = hkey if order is None else hkey[order]
    last_row = _last_rows(key_sorted, order, n_keys, np.ones(len(hist), dtype=bool))
    last_change = _gather(t, _gather(last_row, kkey, -1), NAT).view("datetime64[us]")
    close_when = np.maximum(
        kept["close_date"].to_numpy("datetime64[us]"), kept["created_at"].to_numpy("datetime64[us]")
    )
    close_when = np.where(np.isnat(last_change), close_when, np.maximum(close_when, last_change))
    closed_then = kept["is_closed"].to_numpy() & no_terminal & (close_when <= cutoff.to_datetime64())
    current = kept[["stage", "is_closed", "is_won", "close_date"]]
    if len(h):
        cols = [c for c in ("stage", "amount", "close_date", "forecast_category") if c in h.columns]
        known_sorted = known_rows if order is None else known_rows[order]
        for c in cols:
            valid = hist[c].notna().to_numpy()
            use = known_sorted & (valid if order is None else valid[order])
            rows = last_row if use.all() else _last_rows(key_sorted, order, n_keys, use)
            src = _gather(rows, kkey, -1)
            if c in kept.columns:
                kept[c] = _replace_known(kept[c], hist[c], src)
        stage = kept["stage"]
        in_hist = has_known[kept_pos]
        kept["is_closed"] = np.where(in_hist, process.is_closed(stage).to_numpy(), kept["is_closed"].to_numpy())
        kept["is_won"] = np.where(in_hist, process.is_won(stage).to_numpy(), kept["is_won"].to_numpy())
        if closed_then.any():  # (else the state stays as rebuilt)
            for c in current.columns:
                kept[c] = kept[c].where(~closed_then, current[c])
    still_open = ~kept["is_closed"].to_numpy(dtype=bool)

    def unknown_then(field: str) -> bool:  # the field is not recorded and `cutoff` is before the data's end
        before = unknown_before(data, field) if unknown is None else unknown.get(field)
        return before is not None and cutoff < pd.Timestamp(before)

    if unknown_then("close_date") and still_open.any():
        kept["close_date"] = kept["close_date"].mask(still_open)  # not recorded: unknown then (see the rules)
    if unknown_then("forecast_category") and "forecast_category" in kept:
        default = kept["stage"].map(process.forecast_category).astype(kept["forecast_category"].dtype)
        kept["forecast_category"] = kept["forecast_category"].where(~still_open, default)
    leads = data.leads
    if len(leads) and "created_at" in leads.columns:
        created_leads = (leads["created_at"] <= cutoff).to_numpy()
        leads = leads.loc[created_leads] if not created_leads.all() else leads.copy(deep=False)
        if "converted_at" in leads.columns:
            later = (leads["converted_at"] > cutoff).fillna(False).to_numpy(dtype=bool)
            leads["converted"] = leads["converted"].to_numpy() & ~later
            leads["converted_at"] = leads["converted_at"].mask(later)
            if "opportunity_id" in leads.columns:
                leads["opportunity_id"] = leads["opportunity_id"].mask(later)
    subs = data.forecast_submissions
    if len(subs) and "submitted_at" in subs.columns:
        known_subs = (subs["submitted_at"] <= cutoff).to_numpy(dtype=bool)
        subs = subs.loc[known_subs] if not known_subs.all() else subs.copy(deep=False)
    acts = data.activities
    if len(acts):
        of_kept = isin(acts["opportunity_id"], kept["opportunity_id"]) | (
            acts["opportunity_id"].isna() & isin(acts["lead_id"], leads["lead_id"])
        )
        known_acts = (of_kept & (acts["occurred_at"] <= cutoff)).to_numpy(dtype=bool)
        # every activity kept (the report date is the data's end): the same columns, not a copy of millions of rows
        acts = acts.loc[known_acts] if not known_acts.all() else acts.copy(deep=False)
    return replace(
        data,
        opportunities=kept.reset_index(drop=True),
        stage_history=h.reset_index(drop=True),
        leads=leads.reset_index(drop=True),
        forecast_submissions=subs.reset_index(drop=True),
        activities=acts.reset_index(drop=True),
    )


# ------------------------------------------------------------------------------------------------ life tables
