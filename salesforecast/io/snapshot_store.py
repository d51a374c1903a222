"""A snapshot store for CRMs that keep no stage history.

Some CRMs (or exports of them) hold only the current state of each deal. Taking a snapshot of the open pipeline
at regular dates (a daily or weekly scheduled job: ``salesforecast snapshot MAPPING.yml --store PATH``) and
differencing consecutive snapshots rebuilds a stage history at the resolution of the snapshots.

- `append_snapshot` appends the current state of every open opportunity, dated at a day, to a store.
- `read_snapshots` reads every snapshot back.
- `history_from_snapshots` turns the snapshots into canonical ``stage_history`` rows.

Two backends, chosen by the store's name:

- a folder of Parquet files (any name not ending in ``.duckdb``): one file per snapshot date,
  ``YYYY-MM-DD.parquet``. Each file is written to a hidden temporary file in the folder, flushed to disk and
  then renamed over the final name (an atomic replace), so an interrupted write leaves the store as it was:
  every earlier date intact, a date being rewritten still holding its previous rows. Stray temporary files
  (a killed writer) start with a dot and are ignored by readers; the next append that finds no other append at
  work (a shared lock on the folder, `salesforecast._folders.writers_lock`) removes them.
- a DuckDB file (a name ending in ``.duckdb``): a table ``snapshots``, written in one transaction (the rows of
  the date deleted, the new rows inserted, then a commit), rolled back on any error.

Appending twice on the same date replaces that date's rows: a rerun of a scheduled job never duplicates rows.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesforecast._utils import isin
from salesforecast.folders import fsync_dir, writers_lock
from salesforecast.schema import SNAPSHOT_STATIC_COLUMNS, CRMData, DataFileError

__all__ = [
    "SNAPSHOT_COLUMNS",
    "STATIC_COLUMNS",
    "append_snapshot",
    "history_from_snapshots",
    "read_snapshots",
]

logger = logging.getLogger(__name__)

#: The state of a deal in every snapshot (``as_of`` is the snapshot's day).
SNAPSHOT_COLUMNS: tuple[str, ...] = ("as_of", "opportunity_id", "stage", "amount", "close_date", "forecast_category")
#: Opportunity columns copied into each snapshot when the opportunities table has them: those of the pipeline
#: snapshots, with the creation time after the owner.
STATIC_COLUMNS: tuple[str, ...] = (SNAPSHOT_STATIC_COLUMNS[0], "created_at", *SNAPSHOT_STATIC_COLUMNS[1:])
_DTYPES = {
    "as_of": "datetime64[us]",
    "opportunity_id": "str",
    "stage": "str",
    "amount": "float64",
    "close_date": "datetime64[us]",
    "forecast_category": "str",
    "owner": "str",
    "created_at": "datetime64[us]",
    "team": "str",
    "region": "str",
    "segment": "str",
    "product": "str",
    "lead_source": "str",
    "account_id": "str",
}
_HISTORY_COLUMNS = ("opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category")
_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.parquet")
_TABLE = "snapshots"


# ---------------------------------------------------------------------------------------------- helpers
def _is_duckdb(store: Path) -> bool:
    return store.suffix.lower() == ".duckdb"


def _snapshot_day(as_of: Any) -> pd.Timestamp:
    """The snapshot's day: `as_of` (default now) in UTC, without time zone, at midnight."""
    if as_of is None:
        return pd.Timestamp.now(tz="UTC").tz_localize(None).normalize().as_unit("us")
    if isinstance(as_of, (int, float, np.number)) and not isinstance(as_of, bool):
        raise ValueError(f"as_of must be a date (e.g. '2024-06-30'), not a number: {as_of!r}")
    try:
        day = pd.Timestamp(as_of)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"as_of: {exc}") from None
    if pd.isna(day):
        raise ValueError("as_of is missing")
    if day.tz is not None:
        day = day.tz_convert("UTC").tz_localize(None)
    return day.normalize().as_unit("us")


def _coerce(frame: pd.DataFrame) -> pd.DataFrame:
    """Snapshot columns in their canonical order and dtypes (other columns follow, as they are)."""
    order = [c for c in (*SNAPSHOT_COLUMNS, *STATIC_COLUMNS) if c in frame.columns]
    order += [c for c in frame.columns if c not in order]
    out = {}
    for c in order:
        s = frame[c]
        dtype = _DTYPES.get(c)
        if dtype is not None and str(s.dtype) != dtype:
            if dtype == "datetime64[us]" and isinstance(s.dtype, pd.DatetimeTZDtype):
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            s = s.astype(dtype)
        out[c] = s.reset_index(drop=True)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)), columns=order)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=_DTYPES[c]) for c in SNAPSHOT_COLUMNS})


def _snapshot_rows(data: CRMData, day: pd.Timestamp) -> pd.DataFrame:
    """The open opportunities of `data`, one row each, in snapshot columns, dated `day`."""
    opps = data.opportunities
    missing = [c for c in ("opportunity_id", "stage", "amount", "close_date", "is_closed") if c not in opps.columns]
    if missing:
        raise DataFileError(f"opportunities has no column {missing[0]!r}", table="opportunities", column=missing[0])
    is_open = ~opps["is_closed"].fillna(False).to_numpy(dtype=bool)
    rows = opps.loc[is_open]
    out = {"as_of": pd.Series(np.full(len(rows), day.to_datetime64(), dtype="datetime64[us]"))}
    for c in SNAPSHOT_COLUMNS[1:]:
        if c in rows.columns:
            out[c] = rows[c].reset_index(drop=True)
        else:  # forecast_category is optional in opportunities: missing means the stage's default downstream
            out[c] = pd.Series([None] * len(rows), dtype=_DTYPES[c])
    for c in STATIC_COLUMNS:
        if c in rows.columns:
            out[c] = rows[c].reset_index(drop=True)
    frame = _coerce(pd.DataFrame(out))
    return frame.sort_values("opportunity_id", kind="stable", ignore_index=True)


def _arrow(frame: pd.DataFrame) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


# ---------------------------------------------------------------------------------------------- Parquet
def _write_parquet(table: Any, path: Path) -> None:
    """Write an Arrow table to `path` and flush it to disk."""
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TMP = re.compile(r"\.\d{4}-\d{2}-\d{2}\.parquet\..+\.tmp")


def _clean_tmp(folder: Path) -> None:
    """Remove the temporary files of appends that were killed before their rename (called by the only writer)."""
    for p in folder.iterdir():
        if _TMP.fullmatch(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _append_parquet(frame: pd.DataFrame, folder: Path, day: pd.Timestamp) -> None:
    if folder.exists() and not folder.is_dir():
        raise DataFileError(
            f"{folder}: not a snapshot store (a folder of Parquet files, or a file ending in .duckdb)", file=str(folder)
        )
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{day:%Y-%m-%d}.parquet"
    tmp = folder / f".{final.name}.{uuid.uuid4().hex}.tmp"
    with writers_lock(folder, clean=lambda: _clean_tmp(folder)):  # the first writer in removes dead ones' files
        try:
            _write_parquet(_arrow(frame), tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(folder)


def _read_parquet(folder: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    files = sorted(p for p in folder.iterdir() if _FILE.fullmatch(p.name))
    frames = []
    for p in files:
        try:
            frames.append(pq.read_table(p).to_pandas())
        except Exception as exc:  # noqa: BLE001 - any unreadable file is named with the reason
            raise DataFileError(f"{p}: unreadable snapshot file: {exc}", file=str(p)) from None
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else _empty()


# ---------------------------------------------------------------------------------------------- DuckDB
def _insert_duckdb(con: Any, view: str) -> None:
    """Insert the registered rows into the snapshots table (matched by column name)."""
    con.execute(f'INSERT INTO {_TABLE} BY NAME SELECT * FROM "{view}"')


def _append_duckdb(frame: pd.DataFrame, path: Path, day: pd.Timestamp) -> None:
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise DataFileError(f"{path}: cannot open the snapshot store: {exc}", file=str(path)) from None
    view = f"_snapshot_{uuid.uuid4().hex}"
    try:
        con.register(view, _arrow(frame))
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f'CREATE TABLE IF NOT EXISTS {_TABLE} AS SELECT * FROM "{view}" LIMIT 0')
            have = {row[0] for row in con.execute(f"DESCRIBE {_TABLE}").fetchall()}
            new = con.sql(f'SELECT * FROM "{view}" LIMIT 0')
            for name, dtype in zip(new.columns, new.types, strict=True):
                if name not in have:  # a column the CRM gained since the first snapshot
                    con.execute(f'ALTER TABLE {_TABLE} ADD COLUMN "{name.replace(chr(34), chr(34) * 2)}" {dtype}')
            con.execute(f"DELETE FROM {_TABLE} WHERE as_of = ?", [day.to_pydatetime()])
            _insert_duckdb(con, view)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()


def _read_duckdb(path: Path) -> pd.DataFrame:
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise DataFileError(f"{path}: cannot open the snapshot store: {exc}", file=str(path)) from None
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if _TABLE not in tables:
            return _empty()
        rel = con.sql(f"SELECT * FROM {_TABLE}")
        arrow = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    finally:
        con.close()
    return arrow.to_pandas()


# ---------------------------------------------------------------------------------------------- public
def append_snapshot(data: CRMData, store: str | Path, as_of: Any = None) -> int:
    """Append the current state of every open opportunity to a snapshot store.

    Parameters
    ----------
    data : CRMData
        The CRM as it stands now (typically loaded from a mapping file by a scheduled job).
    store : str or path
        A folder of Parquet files (created when missing), or a DuckDB file (a name ending in ``.duckdb``;
        created when missing) holding a table ``snapshots``.
    as_of : date, optional
        The snapshot's date (default: now, in UTC). Normalised to its day: a snapshot is dated at midnight
        (UTC) of the day it was taken, and a time zone is converted to UTC first.

    Returns
    -------
    int
        The number of rows written: one per open opportunity (``is_closed`` false).

    Notes
    -----
    Each row holds ``as_of, opportunity_id, stage, amount, close_date, forecast_category`` (missing when the
    opportunities have no forecast category) and the columns of `STATIC_COLUMNS` the opportunities have
    (``owner``, ``created_at``, ``team``...). Appending again on a date that is already stored replaces that
    date's rows (no duplicates); a snapshot with no open opportunity stores no row. The write is atomic: an
    interrupted append leaves every date stored before it as it was (module docstring).

    Examples
    --------
    >>> import tempfile
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> store = Path(tempfile.mkdtemp()) / "snapshots"
    >>> n = append_snapshot(data, store, as_of="2024-06-30")
    >>> n == int((~data.opportunities["is_closed"]).sum())
    True
    >>> append_snapshot(data, store, as_of="2024-06-30T17:45") == n  # same day: replaced, not duplicated
    True
    >>> len(read_snapshots(store)) == n
    True
    """
    day = _snapshot_day(as_of)
    frame = _snapshot_rows(data, day)
    path = Path(store).expanduser()
    if _is_duckdb(path):
        _append_duckdb(frame, path, day)
    else:
        _append_parquet(frame, path, day)
    logger.info("snapshot %s: %d open opportunities written to %s", f"{day:%Y-%m-%d}", len(frame), path)
    return len(frame)


def read_snapshots(store: str | Path) -> pd.DataFrame:
    """Every snapshot of a store.

    Parameters
    ----------
    store : str or path
        A folder of Parquet snapshot files or a ``.duckdb`` file, as written by `append_snapshot`.

    Returns
    -------
    pandas.DataFrame
        One row per (snapshot date, open opportunity), sorted by ``as_of`` then ``opportunity_id``: the columns
        of `SNAPSHOT_COLUMNS`, then the static columns stored (missing where a snapshot did not have them).

    Raises
    ------
    DataFileError
        When the store does not exist or a file of it cannot be read.
    """
    path = Path(store).expanduser()
    if not path.exists():
        raise DataFileError(f"{path}: no snapshot store here (append_snapshot creates one)", file=str(path))
    if _is_duckdb(path) and path.is_file():
        frame = _read_duckdb(path)
    elif path.is_dir():
        frame = _read_parquet(path)
    else:
        raise DataFileError(
            f"{path}: not a snapshot store (a folder of Parquet files, or a file ending in .duckdb)", file=str(path)
        )
    missing = [c for c in ("as_of", "opportunity_id", "stage") if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: the snapshots have no column {missing[0]!r}", file=str(path), column=missing[0])
    frame = _coerce(frame)
    return frame.sort_values(["as_of", "opportunity_id"], kind="stable", ignore_index=True)


def _differs(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Elementwise ``a != b`` where two missing values are equal."""
    both_missing = a.isna().to_numpy() & b.isna().to_numpy()
    equal = np.asarray(a.eq(b).fillna(False), dtype=bool)
    return ~(equal | both_missing)


def history_from_snapshots(
    store_or_frame: str | Path | pd.DataFrame,
    opportunities: pd.DataFrame | CRMData | None = None,
    *,
    fields: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Canonical stage_history rows rebuilt from the snapshots of the open pipeline.

    Parameters
    ----------
    store_or_frame : str, path or DataFrame
        A snapshot store, or snapshots as `read_snapshots` returns them (at least ``as_of, opportunity_id,
        stage``).
    opportunities : DataFrame or CRMData, optional
        When given, only deals of this opportunities table are kept (the history of a deal deleted from the CRM
        since would otherwise be quarantined by `salesforecast.schema.validate` as an unknown opportunity).
    fields : sequence of str, optional
        The columns whose change makes a row (default: ``stage``, ``amount`` and ``close_date``, those present).

    Returns
    -------
    pandas.DataFrame
        ``opportunity_id, changed_at, stage, amount, close_date, forecast_category``, sorted by opportunity
        then ``changed_at``: a row for each deal's first snapshot, and one for each later snapshot where one of
        `fields` differs from that deal's previous snapshot (two missing values are equal), dated at the
        snapshot (``changed_at`` is the snapshot's day). The values are the deal's state in that snapshot.

    Notes
    -----
    The history has the resolution of the snapshots, and says so much and no more:

    - A change is dated at the first snapshot that saw it: up to one snapshot interval after it was made.
      Several changes between two snapshots become one row holding the later state (an intermediate stage is
      never seen), and a change undone before the next snapshot leaves no row.
    - A deal's first row is dated at its first snapshot, even when it was created long before (before the first
      snapshot taken); `salesforecast.snapshots` then counts it open in an unknown stage from its creation to
      that row, never in a stage it was not seen in.
    - Only open deals are in snapshots. A deal that leaves them (won, lost, or deleted) gets no closing row: its
      close is not invented (neither its stage nor its date is known from the snapshots). The current
      opportunities table knows whether and when it closed: `salesforecast.snapshots` closes a deal whose
      history never reaches a won or lost stage at its close date (or at its last change, when later). A deal
      that leaves and later comes back (reopened) gets a row only when its state differs from its last
      snapshot.

    Examples
    --------
    >>> snaps = pd.DataFrame(
    ...     {
    ...         "as_of": pd.to_datetime(["2024-01-07", "2024-01-14", "2024-01-21"]),
    ...         "opportunity_id": ["O1", "O1", "O1"],
    ...         "stage": ["Prospecting", "Prospecting", "Qualification"],
    ...         "amount": [1000.0, 1200.0, 1200.0],
    ...     }
    ... )
    >>> history_from_snapshots(snaps)[["changed_at", "stage", "amount"]]
      changed_at          stage  amount
    0 2024-01-07    Prospecting  1000.0
    1 2024-01-14    Prospecting  1200.0
    2 2024-01-21  Qualification  1200.0
    """
    if isinstance(store_or_frame, pd.DataFrame):
        snaps = store_or_frame
        missing = [c for c in ("as_of", "opportunity_id", "stage") if c not in snaps.columns]
        if missing:
            raise KeyError(f"the snapshots have no column {missing[0]!r}; available: {list(snaps.columns)}")
        snaps = _coerce(snaps)
    else:
        snaps = read_snapshots(store_or_frame)
    if fields is None:
        fields = [c for c in ("stage", "amount", "close_date") if c in snaps.columns]
    else:
        fields = list(fields)
        absent = [c for c in fields if c not in snaps.columns]
        if absent:
            raise KeyError(f"the snapshots have no column {absent[0]!r}; available: {list(snaps.columns)}")
    if opportunities is not None:
        opps = opportunities.opportunities if isinstance(opportunities, CRMData) else opportunities
        snaps = snaps.loc[isin(snaps["opportunity_id"], opps["opportunity_id"]).to_numpy()]
    snaps = snaps.sort_values(["opportunity_id", "as_of"], kind="stable", ignore_index=True)

    ids = snaps["opportunity_id"]
    changed = np.ones(len(snaps), dtype=bool)
    if len(snaps) > 1:
        first = np.r_[True, ids.to_numpy()[1:] != ids.to_numpy()[:-1]]
        differs = np.zeros(len(snaps), dtype=bool)
        for c in fields:
            col = snaps[c]
            differs[1:] |= _differs(col.iloc[1:].reset_index(drop=True), col.iloc[:-1].reset_index(drop=True))
        changed = first | differs
    rows = snaps.loc[changed]
    out = {"opportunity_id": rows["opportunity_id"], "changed_at": rows["as_of"]}
    for c in _HISTORY_COLUMNS[2:]:
        out[c] = rows[c] if c in rows.columns else pd.Series([None] * len(rows), index=rows.index, dtype=_DTYPES[c])
    history = pd.DataFrame(out).reset_index(drop=True)
    return history.astype({"changed_at": "datetime64[us]"})
