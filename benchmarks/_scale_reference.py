"""Two independent references for `salesforecast.snapshots.pipeline_snapshots`, and the row comparison.

Used by ``benchmarks/scale.py`` (speed and equality at 100k and 1M opportunities) and by
``tests/test_bench_reference.py`` (the equality check itself, on small generated data).

- `duckdb_snapshots`: the as-of snapshots in SQL, straight from a Parquet canonical folder: validity intervals from
  window functions (``lead(changed_at) over (partition by opportunity_id order by changed_at)``), then a range
  join of the dates against them.
- `pandas_loop_snapshots`: what an analyst's notebook would do: for each date, the history up to it, the last row
  per opportunity, the open stages.

Both follow the rules of `salesforecast.snapshots` that matter for generated data (every opportunity's history
starts with a change at its creation; every change records stage, amount, close date and forecast category): a
deal is in the snapshot at ``t`` iff it was created at or before ``t`` and its last change at or before ``t`` is in
an open stage; changes with the same timestamp apply in reading order. They do not implement the rules for
opportunities without history, histories starting later than creation, missing fields, or closed deals whose
history never closes: on such data they would differ, and `compare_rows` would say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

#: Static opportunity columns copied into the snapshots (the default of `pipeline_snapshots` on generated data).
STATIC_COLUMNS: tuple[str, ...] = ("owner", "team", "region", "segment", "product", "lead_source", "account_id")
#: The columns the equality check of the benchmark is about.
KEY_COLUMNS: tuple[str, ...] = ("as_of", "opportunity_id", "stage", "amount")

_DAY_US = 86_400_000_000


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def snapshot_sql(folder: str | Path, static_columns: Sequence[str] = STATIC_COLUMNS) -> str:
    """The DuckDB query of `duckdb_snapshots` (parameters: ``$dates``, a list of timestamps; ``$open``, stage names)."""
    folder = Path(folder)
    hist = _literal(folder / "stage_history.parquet")
    opps = _literal(folder / "opportunities.parquet")
    static = "".join(f", o.{_ident(c)}" for c in static_columns)
    return f"""
with
dates as (select unnest($dates)::timestamp as as_of),
opps as (select * from read_parquet({opps})),
hist as (
    -- file_row_number: the reading order, which breaks ties between changes with the same timestamp
    select opportunity_id, changed_at, stage, amount, close_date, forecast_category, file_row_number as seq
    from read_parquet({hist}, file_row_number = true)
),
ordered as (
    select
        h.*,
        o.created_at,
        row_number() over w = 1 as is_first,
        lead(h.changed_at) over w as next_change,
        lag(h.stage) over w as prev_stage
    from hist h join opps o using (opportunity_id)
    window w as (partition by h.opportunity_id order by h.changed_at, h.seq)
),
intervals as (
    -- the state of a change holds from the change (from creation, for the first one) until the next change
    select
        *,
        case when is_first then created_at else greatest(changed_at, created_at) end as valid_from,
        case  -- open-ended for the last change (greatest skips NULLs); never ending before it started
            when next_change is null then timestamp '9999-12-31'
            else greatest(next_change, changed_at, created_at)
        end as valid_to
    from ordered
),
entered as (
    -- when the deal entered the stage: the start of the last change that changed the stage (starts only grow)
    select
        *,
        max(case when prev_stage is distinct from stage then valid_from end) over (
            partition by opportunity_id order by changed_at, seq rows unbounded preceding
        ) as stage_entered_at
    from intervals
)
select
    d.as_of,
    i.opportunity_id,
    i.stage,
    i.amount,
    i.close_date,
    i.forecast_category,
    i.created_at,
    i.stage_entered_at,
    (epoch_us(d.as_of) - epoch_us(i.stage_entered_at)) / {_DAY_US}.0 as days_in_stage,
    (epoch_us(d.as_of) - epoch_us(i.created_at)) / {_DAY_US}.0 as age_days
    {static}
from entered i
join dates d on d.as_of >= i.valid_from and d.as_of < i.valid_to
join opps o on o.opportunity_id = i.opportunity_id
where list_contains($open, i.stage)
order by d.as_of, i.opportunity_id
"""


def duckdb_snapshots(
    folder: str | Path,
    dates: Sequence[Any],
    open_stages: Sequence[str],
    static_columns: Sequence[str] = STATIC_COLUMNS,
    con: Any = None,
) -> pd.DataFrame:
    """The open pipeline at each of `dates`, computed by DuckDB from the Parquet files of a canonical folder.

    Parameters
    ----------
    folder : path
        A canonical folder with ``opportunities.parquet`` and ``stage_history.parquet`` (`CRMData.to_folder`).
    dates : sequence of dates
        The as-of moments (midnights, for dates without a time).
    open_stages : sequence of str
        The open stages of the process map (``data.process.open_stages``).
    static_columns : sequence of str
        Opportunity columns copied in.
    con : duckdb connection, optional
        Default: a new in-memory connection.

    Returns
    -------
    pandas.DataFrame
        The columns of `pipeline_snapshots`, sorted by as_of then opportunity_id.
    """
    import duckdb

    con = duckdb.connect() if con is None else con
    params = {
        "dates": [pd.Timestamp(d).to_pydatetime() for d in dates],
        "open": list(open_stages),
    }
    return con.sql(snapshot_sql(folder, static_columns), params=params).to_arrow_table().to_pandas()


def pandas_loop_snapshots(
    stage_history: pd.DataFrame,
    opportunities: pd.DataFrame,
    dates: Sequence[Any],
    open_stages: Sequence[str],
    static_columns: Sequence[str] = STATIC_COLUMNS,
) -> pd.DataFrame:
    """The open pipeline at each of `dates`, the way an analyst's notebook would compute it: a loop over the dates.

    Per date: the history rows at or before it, the last one per opportunity (changes with the same timestamp in
    reading order), those in an open stage; then the opportunities' creation time and static columns. Returns
    ``as_of, opportunity_id, stage, amount, close_date, forecast_category, created_at`` and the static columns,
    sorted by as_of then opportunity_id.
    """
    cols = ["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"]
    hist = stage_history[cols].sort_values(["opportunity_id", "changed_at"], kind="stable")
    frames = []
    for t in pd.DatetimeIndex(dates):
        known = hist[hist["changed_at"] <= t]
        last = known.drop_duplicates("opportunity_id", keep="last")
        now_open = last[last["stage"].isin(open_stages)].drop(columns="changed_at")
        frames.append(now_open.assign(as_of=t))
    snap = pd.concat(frames, ignore_index=True)
    snap["as_of"] = snap["as_of"].astype("datetime64[us]")
    static = opportunities[["opportunity_id", "created_at", *static_columns]]
    snap = snap.merge(static, on="opportunity_id", how="left")
    snap = snap[snap["created_at"] <= snap["as_of"]]
    front = ["as_of", "opportunity_id", "stage", "amount", "close_date", "forecast_category", "created_at"]
    return snap[[*front, *static_columns]].sort_values(["as_of", "opportunity_id"], ignore_index=True)


def compare_rows(ours: pd.DataFrame, other: pd.DataFrame, columns: Sequence[str] = KEY_COLUMNS) -> dict[str, int]:
    """Compare two snapshot tables as sets of rows over `columns` (exact values, amounts included).

    Returns
    -------
    dict
        ``rows`` (ours), ``other_rows``, ``only_ours`` and ``only_other`` (rows of one with no equal row in the
        other), ``mismatches`` (their sum: 0 when the sets are equal) and ``duplicates`` (repeated
        ``(as_of, opportunity_id)`` pairs in either table: 0 expected, a snapshot holds a deal once).
    """
    cols = list(columns)
    a = ours[cols].reset_index(drop=True)
    b = other[cols].reset_index(drop=True)
    for c in cols:  # the same dtypes on both sides (e.g. text from DuckDB as another string dtype)
        if a[c].dtype != b[c].dtype:
            b[c] = b[c].astype(a[c].dtype)
    dup = int(a.duplicated(["as_of", "opportunity_id"]).sum())
    if len(a) == len(b) and a.equals(b):  # the usual case, in the same order: no merge needed
        return {
            "rows": len(a),
            "other_rows": len(b),
            "only_ours": 0,
            "only_other": 0,
            "mismatches": 0,
            "duplicates": 2 * dup,
        }
    dup += int(b.duplicated(["as_of", "opportunity_id"]).sum())
    both = a.merge(b, on=cols, how="outer", indicator=True)
    only_ours = int((both["_merge"] == "left_only").sum())
    only_other = int((both["_merge"] == "right_only").sum())
    return {
        "rows": len(a),
        "other_rows": len(b),
        "only_ours": only_ours,
        "only_other": only_other,
        "mismatches": only_ours + only_other,
        "duplicates": dup,
    }
