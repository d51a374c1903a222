"""Canonical tables, their validation, and the quarantine.

Every importer ends here: raw tables (as read from CSV, Parquet or a database, any dtypes) go through
`validate`, which parses each column into its canonical type, checks each row with a pandera schema and the
cross-table rules, and splits the rows into accepted tables and a quarantine. No row is dropped silently:
for every table, ``read == accepted + quarantined``.

Quarantine reasons: `REASON_DEFINITIONS` (one per quarantined row, the first that applies, in that order).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from salesforecast._utils import isin
from salesforecast._utils import spreadsheet_csv as _spreadsheet_csv
from salesforecast._utils import unescape_spreadsheet as _unescape_spreadsheet
from salesforecast.config import excerpt as _excerpt
from salesforecast.process import FORECAST_CATEGORIES, PERIOD_PATTERN, SalesProcess, normalize_forecast_category

__all__ = [
    "QUARANTINE_COLUMNS",
    "REASONS",
    "SNAPSHOT_STATIC_COLUMNS",
    "REASON_DEFINITIONS",
    "TABLES",
    "MALFORMED_MARK",
    "OPEN_MAY_LACK",
    "PARTITIONS_MANIFEST",
    "CRMData",
    "EVENT_COLUMNS",
    "ColumnSpec",
    "DataFileError",
    "TableSpec",
    "decode_text",
    "empty_table",
    "holds_partitions",
    "is_malformed",
    "malformed_row",
    "read_canonical",
    "validate",
]

#: Opportunity columns a pipeline snapshot copies when the opportunities have them (their current values: the
#: canonical tables do not historise them). `salesforecast.snapshots` and the snapshot store both use them.
SNAPSHOT_STATIC_COLUMNS: tuple[str, ...] = (
    "owner",
    "team",
    "region",
    "segment",
    "product",
    "lead_source",
    "account_id",
)

#: Each quarantine reason and what it means, in priority order (a row gets the first that applies).
REASON_DEFINITIONS: dict[str, str] = {
    "malformed row": "a CSV line that does not parse: more fields than the header (e.g. an unquoted comma), or an"
    " unbalanced quote (the line is set aside and the next line read as a row of its own)",
    "empty row": "a line with no values at all",
    "unparseable date": "a date column holds text that is not an ISO date (YYYY-MM-DD) or timestamp",
    "unparseable number": "a numeric column holds text that is not a number (or is infinite)",
    "unparseable boolean": "a flag is not one of true/false, 1/0, yes/no",
    "missing required value": "a required column is empty",
    "closed without close date": "a closed deal (is_closed true) has no close_date; open deals may have none"
    " (a CRM that keeps no expected close date)",
    "negative amount": "an amount is below zero",
    "unknown stage": "the stage is neither a stage of the process map nor one of its aliases",
    "unknown forecast category": "not one of omitted, pipeline, best case, most likely, commit, closed",
    "invalid period": "not a period label (2024-07, FY2024Q3, FY2024)",
    "duplicate id": "the table's key repeats an earlier valid row's key (the first valid row is kept)",
    "close date before creation": "close_date is more than a day before the day the opportunity was created "
    "(a day of slack: creation times are UTC, close dates often local dates)",
    "flags contradict stage": "is_closed / is_won disagree with the stage (or won but not closed)",
    "conversion before creation": "a lead's converted_at is before its created_at",
    "no deal or lead": "an activity names neither an opportunity_id nor a lead_id",
    "unknown opportunity": "a stage_history or activities row names an opportunity that is not in opportunities",
    "opportunity quarantined": "a stage_history or activities row of an opportunity that was itself quarantined",
    "unknown lead": "an activity names a lead that is not in leads",
    "lead quarantined": "an activity of a lead that was itself quarantined",
    "change before creation": "a stage change more than a day before its opportunity was created",
}
REASONS: tuple[str, ...] = tuple(REASON_DEFINITIONS)
_REASON_RANK = {r: i for i, r in enumerate(REASONS)}

QUARANTINE_COLUMNS = ("table", "row", "column", "value", "reason", "details", "original")


class DataFileError(ValueError):
    """A whole input file cannot be used (missing column, empty, wrong delimiter, undecodable bytes).

    The message names the file, the table and, where it applies, the column and what was expected.
    """

    def __init__(
        self, message: str, *, file: str | None = None, table: str | None = None, column: str | None = None
    ) -> None:
        super().__init__(message)
        self.file = file
        self.table = table
        self.column = column


@dataclass(frozen=True)
class ColumnSpec:
    """A canonical column: its name, kind and whether it is required.

    Kinds: ``id`` and ``text`` (str), ``datetime`` (datetime64[us], naive UTC), ``number`` (float64),
    ``bool``, ``stage`` (a stage of the process map), ``category`` (a forecast category), ``period``.
    """

    name: str
    kind: str
    required: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A canonical table: its columns and its key (unique per row)."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()

    @property
    def required(self) -> list[str]:
        """Names of the required columns."""
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> ColumnSpec | None:
        """The spec of a canonical column, or None."""
        return next((c for c in self.columns if c.name == name), None)


def _cols(required: dict[str, str], optional: dict[str, str]) -> tuple[ColumnSpec, ...]:
    return tuple(ColumnSpec(n, k, True) for n, k in required.items()) + tuple(
        ColumnSpec(n, k, False) for n, k in optional.items()
    )


TABLES: dict[str, TableSpec] = {
    "opportunities": TableSpec(
        "opportunities",
        _cols(
            {
                "opportunity_id": "id",
                "owner": "text",
                "created_at": "datetime",
                "stage": "stage",
                "amount": "number",
                "close_date": "datetime",
                "is_closed": "bool",
                "is_won": "bool",
            },
            {
                "team": "text",
                "region": "text",
                "segment": "text",
                "account_id": "id",
                "lead_id": "id",
                "lead_source": "text",
                "product": "text",
                "forecast_category": "category",
            },
        ),
        key=("opportunity_id",),
    ),
    "stage_history": TableSpec(
        "stage_history",
        _cols(
            {"opportunity_id": "id", "changed_at": "datetime", "stage": "stage"},
            {"amount": "number", "close_date": "datetime", "forecast_category": "category"},
        ),
    ),
    "leads": TableSpec(
        "leads",
        _cols(
            {"lead_id": "id", "created_at": "datetime", "converted": "bool"},
            {"converted_at": "datetime", "opportunity_id": "id", "owner": "text", "lead_source": "text"},
        ),
        key=("lead_id",),
    ),
    "forecast_submissions": TableSpec(
        "forecast_submissions",
        _cols(
            {
                "submitted_at": "datetime",
                "owner": "text",
                "period": "period",
                "category": "category",
                "amount": "number",
            },
            {"team": "text"},
        ),
        key=("submitted_at", "owner", "period", "category"),
    ),
    "quotas": TableSpec(
        "quotas",
        _cols({"owner": "text", "period": "period", "amount": "number"}, {}),
        key=("owner", "period"),
    ),
    "activities": TableSpec(
        "activities",
        _cols(
            {"activity_id": "id", "occurred_at": "datetime", "type": "activity_type"},
            {
                "owner": "text",
                "opportunity_id": "id",
                "lead_id": "id",
                "subject": "text",
                "outcome": "text",
                "duration": "number",
            },
        ),
        key=("activity_id",),
    ),
}

#: Required columns that may be empty while a deal is open (``is_closed`` false): the column must be there, and a
#: closed deal needs a value (else it is quarantined as ``closed without close date``).
OPEN_MAY_LACK: dict[str, tuple[str, ...]] = {"opportunities": ("close_date",)}

#: Optional columns always present in accepted tables (all-missing when the source lacks them).
_ALWAYS = {
    "stage_history": ("amount", "close_date", "forecast_category"),
    "leads": ("converted_at", "opportunity_id"),
    "activities": ("owner", "opportunity_id", "lead_id"),
}

_DTYPES = {
    "id": "str",
    "text": "str",
    "stage": "str",
    "category": "str",
    "activity_type": "str",
    "period": "str",
    "datetime": "datetime64[us]",
    "number": "float64",
    "bool": "bool",
}


def _written_by_to_folder(path: Path) -> bool:
    """Whether an entry of a canonical folder is one `CRMData.to_folder` writes (or a table file readers read)."""
    if path.is_dir():
        return False
    tables = {f"{t}{suffix}" for t in TABLES for suffix in (".csv", ".csv.gz", ".parquet")}
    return path.name in tables or path.name in ("process.yml", "notes.txt", "quarantine.csv")


def empty_table(name: str) -> pd.DataFrame:
    """An empty accepted table with the canonical columns (required and always-present) and dtypes."""
    spec = TABLES[name]
    cols = [c for c in spec.columns if c.required or c.name in _ALWAYS.get(name, ())]
    return pd.DataFrame({c.name: pd.Series([], dtype=_DTYPES[c.kind]) for c in cols})


# ---------------------------------------------------------------------------------------------- parsing
_TRUE = {"true", "t", "1", "1.0", "yes", "y"}
_FALSE = {"false", "f", "0", "0.0", "no", "n"}


def _is_text(s: pd.Series) -> bool:
    """True for text-like columns (str, object, categorical): not numbers, times or flags."""
    t = pd.api.types
    return not (t.is_numeric_dtype(s.dtype) or t.is_bool_dtype(s.dtype) or t.is_datetime64_any_dtype(s.dtype))


#: pandas' default ``str`` dtype (Arrow storage, NaN as missing): the columns the Arrow fast paths handle.
_STR = pd.StringDtype("pyarrow", na_value=np.nan)


def _arrow_strings(s: pd.Series) -> pyarrow.ChunkedArray | None:
    """The Arrow array behind a ``str`` Series, or None for any other dtype or storage."""
    if s.dtype == _STR and isinstance(s.array, pd.arrays.ArrowStringArray):
        return s.array.__arrow_array__()
    return None


def _str_series(values: pyarrow.Array | pyarrow.ChunkedArray, index: pd.Index, name: Any = None) -> pd.Series:
    """A ``str`` Series over an Arrow string array, without converting its values."""
    if isinstance(values, pyarrow.Array):
        values = pyarrow.chunked_array([values])
    if not pyarrow.types.is_large_string(values.type):
        values = values.cast(pyarrow.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(values, dtype=_STR), index=index, name=name, copy=False)


def _is_blank(s: pd.Series) -> pd.Series:
    """Missing or empty/whitespace-only text."""
    if _arrow_strings(s) is not None:
        return _parse_text(s).isna()
    if _is_text(s):
        return s.isna() | (s.astype("str").str.strip() == "")
    return s.isna()


def _parse_text(s: pd.Series) -> pd.Series:
    """Text with surrounding whitespace removed; missing where blank.

    ``str`` columns are trimmed in Arrow, with the same kernel as ``Series.str.strip``; when no value has
    surrounding whitespace the column keeps its values (no copy).
    """
    arr = _arrow_strings(s)
    if arr is None:
        out = s.astype("str").str.strip()
        return out.mask(_is_blank(s))
    trimmed = pc.utf8_trim_whitespace(arr)
    if pc.sum(pc.binary_length(trimmed)).as_py() == pc.sum(pc.binary_length(arr)).as_py():
        trimmed = arr  # trimming only removes bytes: same total length, nothing was removed
    empty = pc.equal(pc.binary_length(trimmed), 0)
    if pc.any(empty).as_py():
        trimmed = pc.if_else(empty, pyarrow.scalar(None, trimmed.type), trimmed)
    return _str_series(trimmed, s.index, s.name)


def _same_strings(a: pyarrow.Array, b: pyarrow.Array) -> bool:
    """Whether two Arrow string arrays hold the same values, none missing."""
    if len(a) != len(b) or a.null_count or b.null_count:
        return False
    return len(a) == 0 or bool(pc.all(pc.equal(a, b.cast(a.type))).as_py())


def _per_unique(text: pd.Series, func: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """An element-wise function of a Series, computed once per distinct value.

    Parameters
    ----------
    text : pandas.Series
        The values; missing values stay missing (the result's own missing value).
    func : callable
        Maps a Series of distinct, non-missing values to a Series of results of the same length.

    Returns
    -------
    pandas.Series
        ``func`` of each value, with the index and name of `text`.
    """
    arr = _arrow_strings(text)
    if arr is not None:  # str: the distinct values and codes straight from Arrow
        encoded = pc.dictionary_encode(arr).combine_chunks()
        mapped = func(_str_series(encoded.dictionary, pd.RangeIndex(len(encoded.dictionary))))
        mapped_arr = _arrow_strings(mapped)
        if mapped_arr is not None:
            mapped_arr = mapped_arr.combine_chunks()
            if _same_strings(mapped_arr, encoded.dictionary):  # canonical already (a canonical folder): no copy
                return text
            return _str_series(mapped_arr.take(encoded.indices), text.index, text.name)
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    else:
        codes, uniques = text.factorize()
        mapped = func(pd.Series(uniques))
    return pd.Series(mapped.array.take(codes, allow_fill=True), index=text.index, name=text.name, copy=False)


def _parse_datetime(s: pd.Series, text: pd.Series | None = None) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s.astype("datetime64[us]")
    text = _parse_text(s) if text is None else text
    # ISO 8601 with or without time, "T" or space, and an optional offset; offsets are converted to UTC.
    # A full date is required: "2024" or "2024-06" would silently become the first of the period.
    text = text.where(text.str.match(r"\d{4}-\d{2}-\d{2}(?:$|[T ])"))
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def _parse_number(s: pd.Series, text: pd.Series | None = None) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("float64")
    if pd.api.types.is_numeric_dtype(s.dtype):
        out = s.astype("float64")
    else:
        out = pd.to_numeric(_parse_text(s) if text is None else text, errors="coerce").astype("float64")
    finite = np.isfinite(out.to_numpy())
    if finite.all():
        return out
    return out.mask(~np.isfinite(out.fillna(0.0)))


def _bool_keys(text: pd.Series) -> pd.Series:
    """Flags of parsed text: True / False for the known spellings, missing otherwise."""
    key = text.str.casefold()
    out = pd.Series(pd.NA, index=text.index, dtype="boolean")
    out[key.isin(_TRUE).fillna(False).astype(bool)] = True
    out[key.isin(_FALSE).fillna(False).astype(bool)] = False
    return out


def _parse_bool(s: pd.Series, text: pd.Series | None = None) -> pd.Series:
    """Flags as ``boolean``; text is matched once per distinct value."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean")
    text = _parse_text(s) if text is None else text
    if text.dtype == _STR:
        return _per_unique(text, _bool_keys).rename(None)
    return _bool_keys(text)


def _missing(n: int, kind: str, index: pd.Index | None = None) -> pd.Series:
    """An all-missing column of a kind's canonical dtype."""
    if kind == "datetime":
        return pd.Series(np.full(n, np.datetime64("NaT"), dtype="datetime64[us]"), index=index)
    if kind == "number":
        return pd.Series(np.full(n, np.nan), index=index)
    return _str_series(pyarrow.nulls(n, pyarrow.large_string()), pd.RangeIndex(n) if index is None else index)


def _map_stage_names(text: pd.Series, process: SalesProcess) -> pd.Series:
    """Canonical stage names; unknown names stay as written (the schema flags them)."""
    return process.map_stages(text).fillna(text)


def _map_categories(text: pd.Series) -> pd.Series:
    """Canonical forecast categories; unknown labels stay as written (the schema flags them)."""
    uniques = pd.unique(text.dropna())
    mapped = text.map({u: normalize_forecast_category(u) for u in uniques}).astype("str")
    return mapped.fillna(text)


def _map_periods(text: pd.Series) -> pd.Series:
    """Period labels upper-cased, ``FY2024 - Q3`` written ``FY2024Q3``."""
    return text.str.upper().str.replace(r"^(FY\d{4})\s*-?\s*(Q[1-4])$", r"\1\2", regex=True)


def _parse_column(s: pd.Series, kind: str, process: SalesProcess, text: pd.Series | None = None) -> pd.Series:
    """Parse a raw column into its kind's canonical dtype (`text`: ``_parse_text(s)`` if already known)."""
    if kind in ("id", "text"):
        return _parse_text(s) if text is None else text
    if kind == "datetime":
        return _parse_datetime(s, text)
    if kind == "number":
        return _parse_number(s, text)
    if kind == "bool":
        return _parse_bool(s, text)
    if kind in ("stage", "category", "period", "activity_type"):
        text = _parse_text(s) if text is None else text
        if kind == "stage":
            func = lambda u: _map_stage_names(u, process)  # noqa: E731
        elif kind == "activity_type":
            func = process.map_activity_types
        else:
            func = _map_categories if kind == "category" else _map_periods
        # element-wise: computed once per distinct name (a few dozen), then spread over the rows
        return _per_unique(text, func) if text.dtype == _STR else func(text)
    raise ValueError(f"unknown column kind {kind!r}")


#: Prefix of the first field of a row that stands for a CSV line with more fields than its header: the rest of
#: the field is the line's fields as a JSON list, and `validate` quarantines the row as ``malformed row`` with them.
MALFORMED_MARK = "\x00malformed:"


def malformed_row(fields: list[str], width: int, problem: str = "", line: int | None = None) -> list[str]:
    """The row that stands for a CSV line that does not parse, as readers keep it for `validate`.

    Parameters
    ----------
    fields : list of str
        The line's fields, all of them (or the line itself when it cannot be split into fields).
    width : int
        Number of columns of the header.
    problem : str
        What is wrong, naming the line (``"line 7 has 10 fields where the header has 9"``); `validate` shows it
        as the quarantined value.
    line : int, optional
        The physical line the record starts on; kept in the quarantine's original.

    Returns
    -------
    list of str
        `width` values: `MALFORMED_MARK` followed by the fields as JSON, then empty strings.

    Examples
    --------
    >>> row = malformed_row(["a", "b", "c"], 2)
    >>> row[0] == MALFORMED_MARK + '["a", "b", "c"]', row[1]
    (True, '')
    """
    payload: Any = fields if not problem and line is None else {"fields": fields, "line": line, "problem": problem}
    return [MALFORMED_MARK + json.dumps(payload, ensure_ascii=False)] + [""] * (width - 1)


def _malformed_payload(value: str) -> dict[str, Any]:
    """The fields, line and problem a `malformed_row` mark holds."""
    try:
        payload = json.loads(value[len(MALFORMED_MARK) :])
    except ValueError:  # a value that only looks like the mark (an input file can hold anything)
        return {"fields": [value], "problem": ""}
    if isinstance(payload, dict):
        return payload if isinstance(payload.get("fields"), list) else {**payload, "fields": [value]}
    return {"fields": payload if isinstance(payload, list) else [value]}


def is_malformed(s: pd.Series) -> pd.Series:
    """True where a value is the mark of a CSV line with more fields than its header (see `malformed_row`).

    Parameters
    ----------
    s : Series
        A column as read (usually the first); only ``str`` columns can hold the mark.

    Returns
    -------
    Series
        Booleans aligned to `s`.

    Examples
    --------
    >>> is_malformed(pd.Series(malformed_row(["a", "b", "c"], 2), dtype="str")).tolist()
    [True, False]
    """
    if s.dtype != "str":
        return pd.Series(False, index=s.index)
    return s.str.startswith(MALFORMED_MARK).fillna(False).astype(bool)


_UNPARSEABLE = {"datetime": "unparseable date", "number": "unparseable number", "bool": "unparseable boolean"}


# ---------------------------------------------------------------------------------------------- pandera
_ColumnCheck = tuple[str, Callable[[pd.Series], pd.Series]]
_WideCheck = tuple[str, Callable[[pd.DataFrame], pd.Series]]


def _row_checks(
    spec: TableSpec, columns: list[str], process: SalesProcess
) -> tuple[dict[str, list[_ColumnCheck]], list[_WideCheck]]:
    """The row checks of a parsed table: per canonical column, and across columns. Names are quarantine reasons.

    Returns
    -------
    column_checks : dict
        For each canonical column present, in order, its ``(reason, check)`` pairs (a check maps the
        column's non-missing values to True where they pass).
    wide : list
        ``(reason, check)`` pairs of the row-wise rules (a check maps the frame to True where a row passes).
    """
    column_checks: dict[str, list[_ColumnCheck]] = {}
    for name in columns:
        c = spec.column(name)
        if c is None:
            continue
        checks: list[_ColumnCheck] = []
        if c.kind == "number" and name == "amount":
            checks.append(("negative amount", lambda s: s >= 0))
        if c.kind == "stage":
            checks.append(("unknown stage", lambda s, names=tuple(process.stage_names): s.isin(names)))
        if c.kind == "category":
            checks.append(("unknown forecast category", lambda s: s.isin(FORECAST_CATEGORIES)))
        if c.kind == "period":
            checks.append(("invalid period", lambda s: s.str.fullmatch(PERIOD_PATTERN)))
        column_checks[name] = checks

    wide: list[_WideCheck] = []
    if spec.name == "opportunities":
        wide.append(
            (
                "closed without close date",
                lambda df: ~(df["is_closed"].fillna(False).astype(bool) & df["close_date"].isna()),
            )
        )
        wide.append(
            (
                "close date before creation",
                lambda df: ~(df["close_date"] < df["created_at"].dt.floor("D") - pd.Timedelta(days=1)).fillna(False),
            )
        )
        won, closed = process.won_stages, process.closed_stages

        def _flags_ok(df: pd.DataFrame) -> pd.Series:
            stage_closed = df["stage"].isin(closed)
            stage_won = df["stage"].isin(won)
            ok = (df["is_closed"] == stage_closed) & (df["is_won"] == stage_won) & ~(df["is_won"] & ~df["is_closed"])
            return ok.fillna(True).astype(bool)

        wide.append(("flags contradict stage", _flags_ok))
    if spec.name == "leads" and "converted_at" in columns:
        wide.append(("conversion before creation", lambda df: ~(df["converted_at"] < df["created_at"]).fillna(False)))
    return column_checks, wide


def _pandera_schema(spec: TableSpec, columns: list[str], process: SalesProcess) -> pa.DataFrameSchema:
    """The pandera schema of a parsed table. Check names are quarantine reasons."""
    column_checks, wide = _row_checks(spec, columns, process)
    pa_cols: dict[str, pa.Column] = {}
    for name, checks in column_checks.items():
        c = spec.column(name)
        assert c is not None
        dtype = {"bool": "boolean"}.get(c.kind, _DTYPES[c.kind])
        pa_cols[name] = pa.Column(
            dtype,
            checks=[pa.Check(fn, name=reason) for reason, fn in checks],
            nullable=not c.required or name in OPEN_MAY_LACK.get(spec.name, ()),
            required=c.required,
        )
    return pa.DataFrameSchema(
        pa_cols,
        checks=[pa.Check(fn, name=reason) for reason, fn in wide],
        strict=False,
        coerce=False,
        name=spec.name,
    )


def _suspect_rows(frame: pd.DataFrame, spec: TableSpec, process: SalesProcess) -> np.ndarray:
    """Rows the pandera schema may fail: all its row-level failures are among them (vectorised, no pandera).

    A row is suspect when a required value is missing, a present value fails its column's check, or a row-wise
    rule does not hold (pandera then also passes rows whose values are all missing: a superset is enough).
    Validating only these rows finds the same failures as validating the whole frame, since every check is
    row by row. When a check cannot be evaluated here, every row is suspect.
    """
    n = len(frame)
    try:
        column_checks, wide = _row_checks(spec, list(frame.columns), process)
        suspect = np.zeros(n, dtype=bool)
        may_lack = OPEN_MAY_LACK.get(spec.name, ())
        for name, checks in column_checks.items():
            s = frame[name]
            missing = s.isna().to_numpy(dtype=bool)
            c = spec.column(name)
            if c is not None and c.required and name not in may_lack:
                suspect |= missing
            for _, fn in checks:
                passed = fn(s)
                if not isinstance(passed, pd.Series) or len(passed) != n:
                    return np.ones(n, dtype=bool)
                suspect |= ~passed.fillna(False).to_numpy(dtype=bool) & ~missing
        for _, fn in wide:
            passed = fn(frame)
            if not isinstance(passed, pd.Series) or len(passed) != n:
                return np.ones(n, dtype=bool)
            suspect |= ~passed.fillna(False).to_numpy(dtype=bool)
    except Exception:  # noqa: BLE001 - pandera reports what the check does on such data
        return np.ones(n, dtype=bool)
    return suspect


def _reason_of(row: pd.Series) -> str:
    check = str(row["check"])
    if check == "not_nullable":
        return "missing required value"
    if "uniqu" in check or "duplicate" in check:
        return "duplicate id"
    if check in _REASON_RANK:
        return check
    raise RuntimeError(f"unexpected validation failure {check!r} in column {row['column']!r}")


# ---------------------------------------------------------------------------------------------- the split
@dataclass
class _Problems:
    """Collects (row position, column, value, reason) for one table; keeps the first-ranked reason per row."""

    rows: list[np.ndarray] = field(default_factory=list)
    columns: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def add(self, positions: np.ndarray, column: str | None, values: Any, reason: str) -> None:
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return
        self.rows.append(positions)
        n = len(positions)
        self.columns.append(np.full(n, column if column is not None else "", dtype=object))
        vals = np.asarray(pd.Series(values).astype("str").fillna(""), dtype=object) if values is not None else None
        self.values.append(vals if vals is not None else np.full(n, "", dtype=object))
        self.reasons.append(np.full(n, reason, dtype=object))

    def positions(self) -> np.ndarray:
        """Row positions with at least one problem so far."""
        return np.unique(np.concatenate(self.rows)) if self.rows else np.array([], dtype=np.int64)

    def frame(self) -> pd.DataFrame:
        if not self.rows:
            return pd.DataFrame({"pos": pd.Series([], dtype="int64"), "column": [], "value": [], "reason": []})
        df = pd.DataFrame(
            {
                "pos": np.concatenate(self.rows),
                "column": np.concatenate(self.columns),
                "value": np.concatenate(self.values),
                "reason": np.concatenate(self.reasons),
            }
        )
        df["rank"] = df["reason"].map(_REASON_RANK)
        df = df.sort_values(["pos", "rank"], kind="stable")
        per_column = df.drop_duplicates(["pos", "column"], keep="first")  # one entry per column: its first reason
        details = (
            (per_column["column"].astype("str") + ": " + per_column["reason"]).groupby(per_column["pos"]).agg("; ".join)
        )
        first = df.drop_duplicates("pos", keep="first").set_index("pos")
        first["details"] = details
        return first.reset_index().drop(columns="rank")


def _originals(raw: pd.DataFrame, positions: np.ndarray) -> list[str]:
    """The original values of the given rows, as JSON objects (values as text; missing -> null)."""
    sub = raw.iloc[positions]
    out = []
    for rec in sub.to_dict(orient="records"):
        head = next(iter(rec.values()), None)
        if isinstance(head, str) and head.startswith(MALFORMED_MARK):
            payload = _malformed_payload(head)
            kept = {k: payload[k] for k in ("line", "fields") if payload.get(k) is not None}
            out.append(json.dumps(kept, ensure_ascii=False))
            continue
        clean = {}
        for k, v in rec.items():
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
                clean[str(k)] = None
            else:
                clean[str(k)] = str(v)
        out.append(json.dumps(clean, ensure_ascii=False))
    return out


def _check_table(name: str, raw: pd.DataFrame, process: SalesProcess, source: str) -> tuple[pd.DataFrame, _Problems]:
    """Parse and check one table; return the parsed frame (all rows) and its problems."""
    spec = TABLES[name]
    raw = _canonical_headers(raw, spec)
    missing = [c for c in spec.required if c not in raw.columns]
    if missing:
        raise DataFileError(
            f"{source}: table {name!r} has no column {missing[0]!r}; required columns are {spec.required}"
            f" (found {', '.join(_excerpt(str(c), 30) for c in raw.columns[:12])}"
            f"{f' and {len(raw.columns) - 12} more' if len(raw.columns) > 12 else ''})",
            file=source,
            table=name,
            column=missing[0],
        )
    raw = raw.reset_index(drop=True)
    problems = _Problems()
    texts: dict[Any, pd.Series] = {}  # _parse_text of each str column, computed once
    blanks: dict[Any, np.ndarray] = {}

    def text_of(c: Any) -> pd.Series | None:
        """``_parse_text(raw[c])`` for a ``str`` column (cached), else None."""
        if c not in texts:
            col = raw[c]
            if _arrow_strings(col) is None:
                return None
            texts[c] = _parse_text(col)
        return texts[c]

    def blank_of(c: Any) -> np.ndarray:
        """``_is_blank(raw[c])`` as a boolean array (cached)."""
        if c not in blanks:
            text = text_of(c)
            blanks[c] = (text.isna() if text is not None else _is_blank(raw[c])).to_numpy(dtype=bool)
        return blanks[c]

    if len(raw.columns):
        first = raw.iloc[:, 0]
        malformed = is_malformed(first).to_numpy(dtype=bool)
        where = np.flatnonzero(malformed)
        said = [_malformed_payload(v).get("problem", "") for v in first.iloc[where]] if len(where) else None
        problems.add(where, None, said, "malformed row")
        empty = blank_of(raw.columns[0]).copy()
        for c in raw.columns[1:]:
            if not empty.any():  # a row is empty when every column is blank: no candidate left
                break
            empty &= blank_of(c)
        problems.add(np.flatnonzero(empty & ~malformed), None, None, "empty row")
    parsed: dict[str, pd.Series] = {}
    for c in spec.columns:
        if c.name not in raw.columns:
            if c.name in _ALWAYS.get(name, ()):
                parsed[c.name] = _missing(len(raw), c.kind, raw.index)
            continue
        col = raw[c.name]
        value = _parse_column(col, c.kind, process, text_of(c.name))
        if c.kind in _UNPARSEABLE:
            bad = value.isna().to_numpy(dtype=bool) & ~blank_of(c.name)
            problems.add(np.flatnonzero(bad), c.name, col[bad], _UNPARSEABLE[c.kind])
        parsed[c.name] = value
    extras = [c for c in raw.columns if spec.column(str(c)) is None]
    frame = pd.DataFrame(parsed, index=raw.index)
    if extras:  # all at once: one insert per column fragments a wide frame (pandas' PerformanceWarning)
        inferred = pd.DataFrame({c: _infer_extra(raw[c], text_of(c)) for c in extras}, index=raw.index)
        frame = pd.concat([frame, inferred], axis=1)
    texts.clear()

    # pandera validates only the rows that may fail (all of them fail nothing on clean data): the same failures
    suspect = np.flatnonzero(_suspect_rows(frame, spec, process))
    if len(suspect):
        schema = _pandera_schema(spec, list(frame.columns), process)
        try:
            schema.validate(frame.iloc[suspect] if len(suspect) < len(frame) else frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            fc = exc.failure_cases
            fc = fc[fc["index"].notna()]
            for (column, check), grp in fc.groupby(["column", "check"], dropna=False, sort=False):
                reason = _reason_of(pd.Series({"check": check, "column": column}))
                pos = np.unique(grp["index"].astype("int64").to_numpy())
                if reason in _WIDE_COLUMNS:  # a row-wise rule: report the columns it compares
                    cols = [c for c in _WIDE_COLUMNS[reason] if c in raw.columns]
                    vals = _join_columns(raw[cols].iloc[pos])
                    problems.add(pos, ", ".join(cols), vals, reason)
                else:
                    problems.add(pos, str(column), raw[column].iloc[pos] if column in raw.columns else None, reason)
    if spec.key:
        # duplicates among the rows that pass every other check: the first such row is kept
        bad = problems.positions()
        ok = np.ones(len(frame), dtype=bool)
        ok[bad] = False
        dup = np.zeros(len(frame), dtype=bool)
        dup[ok] = _duplicated(frame.loc[ok, list(spec.key)] if len(bad) else frame[list(spec.key)])
        key_label = ", ".join(spec.key)
        vals = _join_columns(raw.loc[dup, list(spec.key)])
        problems.add(np.flatnonzero(dup), key_label, vals, "duplicate id")
    return frame, problems


def _duplicated(keys: pd.DataFrame) -> np.ndarray:
    """``keys.duplicated(keep="first")`` as an array; one ``str`` key column is done on its factorized codes."""
    if keys.shape[1] == 1 and keys.iloc[:, 0].dtype == _STR:
        arr = _arrow_strings(keys.iloc[:, 0])
        n = len(keys)
        if arr is not None and n > 1 and arr.null_count == 0:
            # ids in strictly increasing order (as exports often are) are all distinct: no hashing needed
            if pc.all(pc.less(arr.slice(0, n - 1), arr.slice(1))).as_py():
                return np.zeros(n, dtype=bool)
        codes, uniques = keys.iloc[:, 0].factorize()
        if len(codes):
            # codes number the values in order of first appearance: a row is a first occurrence when its code
            # exceeds every earlier code (missing values, code -1, repeat each other as in pandas)
            seen = np.maximum.accumulate(codes)
            first = np.empty(len(codes), dtype=bool)
            first[0] = codes[0] >= 0
            first[1:] = codes[1:] > seen[:-1]
            if int(first.sum()) == len(uniques):  # the order of appearance holds (else: pandas below)
                dup = ~first
                nulls = np.flatnonzero(codes < 0)
                if len(nulls):
                    dup[nulls[0]] = False
                return dup
    return keys.duplicated(keep="first").to_numpy(dtype=bool)


def _join_columns(df: pd.DataFrame) -> pd.Series:
    """Each row's values as one text, ``a / b / c`` (vectorised)."""
    parts = [df[c].astype("str").fillna("") for c in df.columns]
    out = parts[0]
    for p in parts[1:]:
        out = out + " / " + p
    return out


_WIDE_COLUMNS = {
    "closed without close date": ("close_date", "is_closed"),
    "close date before creation": ("close_date", "created_at"),
    "flags contradict stage": ("stage", "is_closed", "is_won"),
    "conversion before creation": ("converted_at", "created_at"),
}


def header_key(name: object) -> str:
    """A header as the loader matches it to a canonical column: case, surrounding spaces, inner spaces/dashes.

    >>> header_key(" Close-Date "), header_key("Stage Name")
    ('close_date', 'stage_name')
    """
    return re.sub(r"[\s\-]+", "_", str(name).strip()).casefold()


def _canonical_headers(raw: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Match headers to canonical names ignoring case, surrounding spaces and inner spaces/dashes."""
    canon = {c.name for c in spec.columns}
    renames = {}
    for col in raw.columns:
        key = header_key(col)
        if col not in canon and key in canon and key not in raw.columns and key not in renames.values():
            renames[col] = key
    return raw.rename(columns=renames) if renames else raw


def _infer_extra(col: pd.Series, text: pd.Series | None = None) -> pd.Series:
    """Feature columns beyond the contract: numbers when every non-empty value is a number, else text.

    `text` is ``_parse_text(col)`` when already known. For a ``str`` column the numbers are parsed once per
    distinct value: the same values as parsing every row (``pd.to_numeric`` infers its result from the set of
    values, missing included, which the distinct values keep).
    """
    if col.dtype != "str" and col.dtype != object:
        return col
    text = _parse_text(col) if text is None else text
    if text.dtype == _STR:
        codes, uniques = text.factorize()
        if len(uniques) == 0:
            return text
        values = pd.Series(uniques)
        if (codes < 0).any():  # keep a missing value among those parsed, as when parsing every row
            values = pd.concat([values, pd.Series([None], dtype=_STR)], ignore_index=True)
        num = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()[: len(uniques)]
        if np.isnan(num).any():
            return text
        out = num[codes]
        out[codes < 0] = np.nan
        return pd.Series(out, index=text.index, name=text.name)
    num = pd.to_numeric(text, errors="coerce")
    if text.notna().any() and num[text.notna()].notna().all():
        return num.astype("float64")
    return text


def _finalize(name: str, frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    spec = TABLES[name]
    out = (frame if keep.all() else frame.loc[keep]).reset_index(drop=True)
    for c in spec.columns:
        if c.name in out.columns and c.kind == "bool":
            out[c.name] = out[c.name].astype(bool)
    canon = [c.name for c in spec.columns if c.name in out.columns]
    return out[canon + [c for c in out.columns if c not in canon]]


#: The date columns that record an event (``table``, ``column``): `CRMData.as_of` is the last of them. An
#: opportunity's ``close_date`` counts only for closed deals (an open deal's is an expected date).
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("opportunities", "created_at"),
    ("opportunities", "close_date"),
    ("stage_history", "changed_at"),
    ("leads", "created_at"),
    ("leads", "converted_at"),
    ("forecast_submissions", "submitted_at"),
    ("activities", "occurred_at"),
)


@dataclass
class CRMData:
    """Validated canonical tables, the process map they were checked against, and the quarantine.

    Attributes
    ----------
    opportunities, stage_history, leads, forecast_submissions, quotas, activities : pandas.DataFrame
        Accepted rows in canonical columns and dtypes (empty tables when the source had none).
    process : SalesProcess
        The process map used for stage names.
    quarantine : pandas.DataFrame
        One row per rejected input row: ``table, row, column, value, reason, details, original``;
        ``row`` is the 1-based data row in the source (row 1 is the first row after the header).
    counts : pandas.DataFrame
        Per table: ``read, accepted, quarantined`` (``read == accepted + quarantined``).
    sources : dict
        Where each table came from (file path or description).
    notes : tuple of str
        What an importer found worth telling the reader and could not fix (e.g. "the stage history has no real
        progression: every change carries the same timestamp"); the data-quality report lists them.
    """

    opportunities: pd.DataFrame
    stage_history: pd.DataFrame
    leads: pd.DataFrame
    forecast_submissions: pd.DataFrame
    quotas: pd.DataFrame
    process: SalesProcess
    quarantine: pd.DataFrame
    counts: pd.DataFrame
    sources: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    activities: pd.DataFrame = field(default_factory=lambda: empty_table("activities"))

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The canonical tables by name (`TABLES`' order)."""
        return {name: getattr(self, name) for name in TABLES}

    @property
    def as_of(self) -> pd.Timestamp:
        """The latest time the data knows of: the last event in any table (NaT when the data holds none).

        The events are `EVENT_COLUMNS`: a deal's creation and stage changes, a closed deal's close date, a lead's
        creation and conversion, a forecast submission. Open deals' close dates are expectations, not events.
        """
        times = []
        for table, column in EVENT_COLUMNS:
            frame = getattr(self, table)
            if column not in frame.columns or not len(frame):
                continue
            values = frame[column]
            if table == "opportunities" and column == "close_date":
                values = values[frame["is_closed"].astype(bool)]
            times.append(values.max())
        known = [t for t in times if pd.notna(t)]
        return pd.Timestamp(max(known)) if known else pd.NaT

    def filter(self, team: str | None = None, owner: str | None = None) -> CRMData:
        """The same data restricted to one team and/or one owner (``None`` or ``""``: no restriction).

        Opportunities are kept by their ``team`` / ``owner`` columns, stage_history by its opportunities,
        leads, forecast submissions and quotas by owner (a team's owners are the owners of its opportunities,
        plus submissions tagged with the team). Quarantine and counts are those of the whole load.

        Raises
        ------
        KeyError
            When `team` is given and opportunities have no ``team`` column.
        ValueError
            When `team` or `owner` names nobody in the data (a typo, or another CRM's name): the message lists
            the known ones.
        """
        opps = self.opportunities
        if team:
            if "team" not in opps.columns:
                raise KeyError("opportunities has no 'team' column to filter on")
            teams = set(opps["team"].dropna().astype("str"))
            if "team" in self.forecast_submissions.columns:
                teams |= set(self.forecast_submissions["team"].dropna().astype("str"))
            if team not in teams:
                raise ValueError(f"team {team!r} is not in the data; teams: {sorted(teams)}")
            opps = opps[opps["team"] == team]
        if owner:
            owners_known = set()
            for df in (self.opportunities, self.leads, self.forecast_submissions, self.quotas):
                if "owner" in df.columns:
                    owners_known |= set(df["owner"].dropna().astype("str"))
            if owner not in owners_known:
                shown = sorted(owners_known)
                more = f" ... ({len(shown)} in all)" if len(shown) > 30 else ""
                raise ValueError(f"owner {owner!r} is not in the data; owners: {shown[:30]}{more}")
            opps = opps[opps["owner"] == owner]
        if not team and not owner:
            return self
        owners = set(opps["owner"].dropna()) if team else {owner}
        if owner:
            owners &= {owner}

        def by_owner(df: pd.DataFrame) -> pd.DataFrame:
            if "owner" not in df.columns:
                return df.iloc[:0]
            keep = isin(df["owner"], list(owners))
            if team and "team" in df.columns:
                keep &= df["team"].isna() | (df["team"] == team)
            return df[keep].reset_index(drop=True)

        return CRMData(
            opportunities=opps.reset_index(drop=True),
            stage_history=self.stage_history[
                isin(self.stage_history["opportunity_id"], opps["opportunity_id"])
            ].reset_index(drop=True),
            leads=by_owner(self.leads),
            forecast_submissions=by_owner(self.forecast_submissions),
            quotas=by_owner(self.quotas),
            activities=self._activities_of(opps, by_owner(self.leads)),
            process=self.process,
            quarantine=self.quarantine,
            counts=self.counts,
            sources=dict(self.sources),
            notes=self.notes,
        )

    def _activities_of(self, opportunities: pd.DataFrame, leads: pd.DataFrame) -> pd.DataFrame:
        """The activities of these opportunities and leads (an activity without either is kept by neither)."""
        acts = self.activities
        if acts.empty:
            return acts
        keep = isin(acts["opportunity_id"], opportunities["opportunity_id"]) | (
            acts["opportunity_id"].isna() & isin(acts["lead_id"], leads["lead_id"])
        )
        return acts[keep.to_numpy(dtype=bool)].reset_index(drop=True)

    def quarantine_summary(self) -> pd.DataFrame:
        """Quarantined rows counted by table and reason."""
        q = self.quarantine
        if q.empty:
            return pd.DataFrame(
                {
                    "table": pd.Series([], dtype="str"),
                    "reason": pd.Series([], dtype="str"),
                    "rows": pd.Series([], dtype="int64"),
                }
            )
        return q.groupby(["table", "reason"], sort=True).size().rename("rows").reset_index()

    def to_folder(self, folder: str | Path, fmt: str = "csv") -> Path:
        """Write the accepted tables as a canonical folder (``csv`` or ``parquet``) and return its path.

        Timestamps are written as ISO 8601 text in CSV; empty tables are skipped. The process map is written
        as ``process.yml`` beside them, the importer's `notes` (if any) as ``notes.txt``, one per line, and the
        quarantined rows (if any) as ``quarantine.csv``: `read_canonical` reads both back, so a folder written by
        an importer still tells how many rows were read and why some were set aside.

        The folder is written whole (`salesforecast._folders.staged_folder`): staged beside `folder` and swapped
        in by one rename, so a process killed at any moment leaves the earlier folder or the new one, never a
        mix, and the folder holds exactly this data's files (none left from an earlier import). An existing
        `folder` may hold only files this method writes (an earlier import's): a folder with anything else is
        refused (`DataFileError`) and left as it is, as is a path that is a file or lies under one.
        """
        from salesforecast.folders import staged_folder

        if fmt not in ("csv", "parquet"):
            raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
        with staged_folder(folder, owned=_written_by_to_folder) as stage:
            self._write_folder(stage, fmt)
        return Path(folder)

    def _write_folder(self, folder: Path, fmt: str) -> Path:
        """Write the files of `to_folder` into `folder` (a new, empty folder)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, df in self.tables.items():
            if df.empty and name != "opportunities":
                continue
            if fmt == "csv":
                df.to_csv(folder / f"{name}.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S", lineterminator="\n")
            elif fmt == "parquet":
                df.to_parquet(folder / f"{name}.parquet", index=False)
            else:
                raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
        self.process.to_yaml(folder / "process.yml")
        if self.notes:
            (folder / "notes.txt").write_text("".join(f"{n}\n" for n in self.notes), encoding="utf-8")
        if len(self.quarantine):
            _spreadsheet_csv(self.quarantine, folder / "quarantine.csv")  # formulas escaped: people open it
        return folder


def validate(
    tables: Mapping[str, pd.DataFrame],
    process: SalesProcess | str | Path | None = None,
    sources: Mapping[str, str] | None = None,
) -> CRMData:
    """Parse, check and split raw tables into accepted canonical tables and a quarantine.

    Parameters
    ----------
    tables : mapping of table name to DataFrame
        Raw tables with canonical column names (values may be text or already typed). Each table is
        optional (at least one is needed): a missing one is accepted as an empty table (leads without
        opportunities, for a marketing funnel).
    process : SalesProcess, path or "default", optional
        The process map stage names are checked against.
    sources : mapping, optional
        A description of each table's origin (a file path), used in messages and the quarantine.

    Returns
    -------
    CRMData

    Raises
    ------
    DataFileError
        When a table misses a required column, an unknown table name is given, or no table at all.

    Examples
    --------
    >>> raw = {"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "B"], "owner": ["ann", "bo"], "created_at": ["2024-01-02", "2024-01-05"],
    ...     "stage": ["prospecting", "Nowhere"], "amount": ["100", "50"], "close_date": ["2024-03-01", "2024-03-01"],
    ...     "is_closed": ["0", "0"], "is_won": ["0", "0"]})}
    >>> data = validate(raw)
    >>> data.counts.loc["opportunities"].tolist()
    [2, 1, 1]
    >>> data.quarantine["reason"].tolist()
    ['unknown stage']
    """
    process = SalesProcess.resolve(process)
    sources = dict(sources or {})
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise DataFileError(f"unknown table(s) {unknown}; canonical tables are {list(TABLES)}")
    if not any(tables.get(name) is not None for name in TABLES):
        raise DataFileError(f"no table given; canonical tables are {list(TABLES)}")
    accepted: dict[str, pd.DataFrame] = {}
    quarantine_parts: list[pd.DataFrame] = []
    counts: dict[str, dict[str, int]] = {}
    quarantined_opps: pd.Series | None = None
    quarantined_ids: dict[str, pd.Series] = {}
    for name in TABLES:
        if name not in tables or tables[name] is None:
            accepted[name] = empty_table(name)
            counts[name] = {"read": 0, "accepted": 0, "quarantined": 0}
            continue
        source = sources.setdefault(name, f"<{name}>")
        raw = tables[name].reset_index(drop=True)
        frame, problems = _check_table(name, raw, process, source)
        if name == "stage_history" and len(frame):
            _check_history_links(frame, raw, accepted["opportunities"], quarantined_opps, problems)
        if name == "activities" and len(frame):
            _check_activity_links(frame, raw, accepted, quarantined_ids, problems)
        bad = problems.frame()
        keep = np.ones(len(frame), dtype=bool)
        keep[bad["pos"].to_numpy(dtype=np.int64)] = False
        accepted[name] = _finalize(name, frame, keep)
        if name == "opportunities":
            quarantined_opps = frame.loc[~keep, "opportunity_id"].dropna()
        if TABLES[name].key and TABLES[name].key[0] in ("opportunity_id", "lead_id"):
            quarantined_ids[name] = frame.loc[~keep, TABLES[name].key[0]].dropna()
        if len(bad):
            pos = bad["pos"].to_numpy(dtype=np.int64)
            quarantine_parts.append(
                pd.DataFrame(
                    {
                        "table": name,
                        "row": pos + 1,
                        "column": bad["column"].astype("str"),
                        "value": bad["value"].astype("str"),
                        "reason": bad["reason"].astype("str"),
                        "details": bad["details"].astype("str"),
                        "original": _originals(raw, pos),
                    }
                )
            )
        counts[name] = {"read": len(raw), "accepted": int(keep.sum()), "quarantined": int((~keep).sum())}
    quarantine = (
        pd.concat(quarantine_parts, ignore_index=True)
        if quarantine_parts
        else pd.DataFrame({c: pd.Series([], dtype="int64" if c == "row" else "str") for c in QUARANTINE_COLUMNS})
    )
    counts_df = pd.DataFrame.from_dict(counts, orient="index")[["read", "accepted", "quarantined"]]
    counts_df.index.name = "table"
    return CRMData(
        opportunities=accepted["opportunities"],
        stage_history=accepted["stage_history"],
        leads=accepted["leads"],
        forecast_submissions=accepted["forecast_submissions"],
        quotas=accepted["quotas"],
        activities=accepted["activities"],
        process=process,
        quarantine=quarantine,
        counts=counts_df.astype("int64"),
        sources=sources,
    )


def _check_history_links(
    frame: pd.DataFrame,
    raw: pd.DataFrame,
    opportunities: pd.DataFrame,
    quarantined_opps: pd.Series | None,
    problems: _Problems,
) -> None:
    """Cross-table rules of stage_history: known opportunity, not changed long before it was created.

    `opportunities` are the accepted ones (their ids are unique). The lookups run in Arrow on ``str`` ids.
    """
    ids = frame["opportunity_id"]
    ids_arr, opp_arr = _arrow_strings(ids), _arrow_strings(opportunities["opportunity_id"])
    if ids_arr is None or opp_arr is None:
        known = isin(ids, opportunities["opportunity_id"]).to_numpy(dtype=bool)
        in_quarantine = (
            isin(ids, quarantined_opps).to_numpy(dtype=bool)
            if quarantined_opps is not None
            else np.zeros(len(ids), dtype=bool)
        )
        created = pd.Series(
            opportunities.set_index("opportunity_id")["created_at"].reindex(ids.to_numpy()).to_numpy(),
            index=ids.index,
        )
    else:
        # row of each id among the opportunities (-1: none); missing ids match nothing
        where = pc.index_in(ids_arr, value_set=opp_arr.combine_chunks(), skip_nulls=True)
        where = pc.fill_null(where, -1).to_numpy(zero_copy_only=False)
        known = where >= 0
        in_quarantine = np.zeros(len(ids), dtype=bool)
        if quarantined_opps is not None and quarantined_opps.notna().any():
            q_arr = _arrow_strings(quarantined_opps)
            if q_arr is None:
                in_quarantine = isin(ids, quarantined_opps).to_numpy(dtype=bool)
            else:
                value_set = pc.drop_null(q_arr.combine_chunks())
                in_quarantine = pc.is_in(ids_arr, value_set=value_set, skip_nulls=True).to_numpy(zero_copy_only=False)
                in_quarantine = np.asarray(in_quarantine, dtype=bool)
        opp_created = opportunities["created_at"].to_numpy()
        if len(opp_created):
            stamps = opp_created[where]  # -1 takes the last one: overwritten next
            stamps[~known] = np.datetime64("NaT")
        else:
            stamps = np.full(len(ids), np.datetime64("NaT"), dtype=opp_created.dtype)
        created = pd.Series(stamps, index=ids.index)
    orphan = ids.notna().to_numpy(dtype=bool) & ~known
    problems.add(
        np.flatnonzero(orphan & in_quarantine),
        "opportunity_id",
        raw["opportunity_id"][orphan & in_quarantine],
        "opportunity quarantined",
    )
    problems.add(
        np.flatnonzero(orphan & ~in_quarantine),
        "opportunity_id",
        raw["opportunity_id"][orphan & ~in_quarantine],
        "unknown opportunity",
    )
    early = (frame["changed_at"] < created - pd.Timedelta(days=1)).fillna(False).astype(bool)
    problems.add(np.flatnonzero(early.to_numpy()), "changed_at", raw["changed_at"][early], "change before creation")


def _check_activity_links(
    frame: pd.DataFrame,
    raw: pd.DataFrame,
    accepted: Mapping[str, pd.DataFrame],
    quarantined: Mapping[str, pd.Series],
    problems: _Problems,
) -> None:
    """Cross-table rules of activities: a deal or a lead named, and known (accepted) where named.

    An activity naming both is checked against its opportunity (the lead is then context only).
    """
    opp = frame["opportunity_id"] if "opportunity_id" in frame.columns else _missing(len(frame), "id", frame.index)
    lead = frame["lead_id"] if "lead_id" in frame.columns else _missing(len(frame), "id", frame.index)
    has_opp, has_lead = opp.notna().to_numpy(dtype=bool), lead.notna().to_numpy(dtype=bool)
    neither = ~has_opp & ~has_lead
    column = "opportunity_id" if "opportunity_id" in raw.columns else "lead_id" if "lead_id" in raw.columns else None
    problems.add(np.flatnonzero(neither), column, raw[column][neither] if column else None, "no deal or lead")
    for ids, has, table, known_col in (
        (opp, has_opp, "opportunities", "opportunity_id"),
        (lead, has_lead & ~has_opp, "leads", "lead_id"),
    ):
        if not has.any():
            continue
        known = isin(ids, accepted[table][known_col]).to_numpy(dtype=bool)
        gone = quarantined.get(table)
        in_q = (
            isin(ids, gone).to_numpy(dtype=bool) if gone is not None and len(gone) else np.zeros(len(ids), dtype=bool)
        )
        what = "opportunity" if table == "opportunities" else "lead"
        orphan = has & ~known
        problems.add(np.flatnonzero(orphan & in_q), known_col, raw[known_col][orphan & in_q], f"{what} quarantined")
        problems.add(np.flatnonzero(orphan & ~in_q), known_col, raw[known_col][orphan & ~in_q], f"unknown {what}")


# ---------------------------------------------------------------------------------------------- reading files
_SUFFIXES = (".csv", ".csv.gz", ".parquet")


#: The file of a folder of partitions (`salesforecast.scale.write_partitions`) that says what it holds.
PARTITIONS_MANIFEST = "partitions.json"


def holds_partitions(source: Any) -> bool:
    """Whether `source` is a folder of partitions (`salesforecast.scale.write_partitions`), not a canonical folder.

    Examples
    --------
    >>> holds_partitions("sample")
    False
    """
    return isinstance(source, (str, Path)) and (Path(source) / PARTITIONS_MANIFEST).is_file()


def find_table_file(folder: Path, name: str) -> Path | None:
    """The file of table `name` in a canonical folder (``name.csv``, ``.csv.gz``, ``.parquet``...), None if absent.

    Raises `DataFileError` when the path is no file or the table is given twice.
    """
    found = [folder / f"{name}{s}" for s in _SUFFIXES if (folder / f"{name}{s}").exists()]
    for path in found:
        if not path.is_file():
            raise DataFileError(f"{path}: is not a file; expected the {name} table", file=str(path), table=name)
    if len(found) > 1:
        raise DataFileError(
            f"{folder}: table {name!r} is given twice ({', '.join(p.name for p in found)}); keep one",
            file=str(folder),
            table=name,
        )
    return found[0] if found else None


def decode_text(
    data: bytes, encoding: str, *, path: str | Path, table: str | None = None, hint: str, utf8_wins: bool = False
) -> str:
    """Bytes of a text file to text, or a `DataFileError` saying which bytes fail and which encoding to try.

    A byte-order mark is removed; a UTF-16 one overrides `encoding`. A file that is UTF-8 but is read as a
    one-byte encoding (which would silently garble its accents) is refused too.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    encoding : str
        The encoding to read them as (``utf-8``, ``latin-1``, ``cp1252``...).
    path : path
        The file, for messages.
    table : str, optional
        The table the file holds, for messages.
    hint : str
        How the reader gives an encoding, with ``{encoding}`` where the suggested one goes (e.g.
        ``"run with --encoding {encoding}"`` or ``"set `encoding: {encoding}` for this source"``).
    utf8_wins : bool
        When `encoding` is a one-byte encoding and the bytes are valid UTF-8 with non-ASCII characters, read
        them as UTF-8 (one encoding given for a folder of files, some of which are UTF-8) instead of refusing.

    Returns
    -------
    str

    Raises
    ------
    DataFileError
        An unknown encoding, undecodable bytes (with their offset, line and a guess), or UTF-8 read as another.

    Examples
    --------
    >>> decode_text("Größe".encode("latin-1"), "latin-1", path="x.csv", hint="--encoding {encoding}")
    'Größe'
    """
    import codecs

    try:
        codec = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise DataFileError(
            f"{path}: unknown encoding {encoding!r}; use e.g. utf-8, latin-1 or cp1252", file=str(path), table=table
        ) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not data.startswith(codecs.BOM_UTF32_LE):
        codec = "utf-16"
    elif data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    head = data[:4096]
    utf16 = None
    if not codec.startswith("utf-16"):
        for guess, zeros in (("utf-16-le", head[1::2]), ("utf-16-be", head[0::2])):
            if len(zeros) > 1 and zeros.count(0) > len(zeros) * 0.4 and _decodes(data[: len(data) // 2 * 2], guess):
                utf16 = guess
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        shown = data[exc.start : exc.start + 8]
        where = f"bytes at offset {exc.start} cannot be decoded as {encoding} (line {line}: {shown!r})"
        if utf16 is not None:
            raise DataFileError(
                f"{path}: {where}; the file is probably {utf16} (UTF-16 without a byte-order mark): "
                + hint.format(encoding=utf16),
                file=str(path),
                table=table,
            ) from None
        if _looks_binary(data):
            raise DataFileError(
                f"{path}: not a text file: {where}, and it holds control bytes no CSV text has; expected the"
                f" {table or 'table'} as CSV text",
                file=str(path),
                table=table,
            ) from None
        guess = next((g for g in ("utf-8", "cp1252", "latin-1") if g != codec and _decodes(data, g)), "latin-1")
        raise DataFileError(
            f"{path}: {where}; the file is probably {guess}: " + hint.format(encoding=guess) + " (or save it as UTF-8)",
            file=str(path),
            table=table,
        ) from None
    if utf16 is not None:  # decodes (NUL is a character) but every other byte is NUL: UTF-16 text
        raise DataFileError(
            f"{path}: every other byte is NUL: the file is probably {utf16} (UTF-16 without a byte-order mark),"
            f" not {encoding}; " + hint.format(encoding=utf16),
            file=str(path),
            table=table,
        )
    if not codec.startswith("utf") and not data.isascii() and _decodes(data, "utf-8"):
        if utf8_wins:
            return data.decode("utf-8").removeprefix("\ufeff")
        sample = next(ch for ch in data.decode("utf-8") if ord(ch) > 127)
        raise DataFileError(
            f"{path}: the file is UTF-8 but is read as {encoding}, which would turn {sample!r} into"
            f" {sample.encode('utf-8').decode(codec, errors='replace')!r}; " + hint.format(encoding="utf-8"),
            file=str(path),
            table=table,
        )
    return text.removeprefix("\ufeff")


def _looks_binary(data: bytes) -> bool:
    """True when the first 4 KB hold NUL or many other control bytes (a compressed or binary file, not text)."""
    head = data[:4096]
    controls = sum(head.count(bytes([b])) for b in (*range(0, 9), 11, 12, *range(14, 32)))
    return b"\x00" in head or controls > len(head) // 20


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


#: Hint of `read_table_file`'s messages on how to give a file's encoding.
ENCODING_HINT = "run with --encoding {encoding} (encoding='{encoding}' in Python)"


@dataclass(frozen=True)
class _Record:
    """One CSV record: its first physical line (1-based), its fields, or the reason it cannot be read."""

    line: int
    fields: list[str] | None
    problem: str = ""
    text: str = ""  # the first line, when the record cannot be read


def _cut(line: str, limit: int = 2000) -> str:
    line = line.rstrip("\r\n")
    return line if len(line) <= limit else line[:limit] + "…"


def _lines_from(lines: list[str], start: int) -> Any:
    for i in range(start, len(lines)):
        yield lines[i]


def _one_line_fields(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def _shape(value: str) -> str:
    """The shape of a value: runs of letters -> ``a``, of digits -> ``9`` (``OPP-0000101`` -> ``a-9``)."""
    return _DIGITS.sub("9", _LETTERS.sub("a", value.strip().strip('"')))


_LETTERS = re.compile(r"[^\W\d_]+")
_DIGITS = re.compile(r"[0-9]+")


def _row_like(fields: list[str], width: int, ref: list[str] | None) -> bool:
    """Whether a line's fields read as a row of its own: `width` of them, shaped like the row before the span.

    `ref` is the last row read on one line, or the next one (None when no row is on one line: then no line
    reads as a row, since a table whose every row spans lines has no row shape to recognise). A line
    of free text with as many delimiters as a row (``Called, no answer, retry Monday``) rarely has the shape of a
    row's ids, dates and amounts (the fields of `ref` with digits, or all when none has); a row swallowed by a
    stray quote does: most of those fields have the same shape as in `ref`.
    """
    if len(fields) < width or (len(fields) > width and "".join(fields[width:]).strip()):
        return False
    if ref is None or len(ref) < width:  # no row to compare with (every row spans lines): a value, not rows
        return False
    telling = _telling_shapes(tuple(ref[:width]))
    same = sum(_shape(fields[i]) == shape for i, shape in telling)
    return same >= max(min(2, len(telling)), math.ceil(0.6 * len(telling)))


@functools.lru_cache(maxsize=8)
def _telling_shapes(ref: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """The fields of a row that tell a row from text, and their shapes.

    Those with digits (ids, dates, amounts), or every field when none has.
    """
    shapes = [_shape(f) for f in ref]
    telling = [i for i, r in enumerate(shapes) if "9" in r] or list(range(len(ref)))
    return tuple((i, shapes[i]) for i in telling)


def _next_row(lines: list[str], start: int, width: int, delimiter: str) -> list[str] | None:
    """The fields of the first of the next 1,000 records from line `start` that is one line of `width` fields."""
    reader = csv.reader(_lines_from(lines, start), delimiter=delimiter)
    before = 0
    try:
        for k, fields in enumerate(reader):
            if reader.line_num - before == 1 and len(fields) == width:
                return fields
            before = reader.line_num
            if k >= 1000:
                break
    except csv.Error:
        pass
    return None


def _span_problem(
    lines: list[str], fields: list[str], width: int, delimiter: str, first: int, ref: list[str] | None = None
) -> str:
    """Why a record spanning several lines is not a value with line breaks but rows merged by a stray quote.

    `ref` is the last row read on one line, whose shape a swallowed row shares (`_row_like`).
    """
    last = first + len(lines) - 1
    try:
        list(csv.reader(lines, delimiter=delimiter, strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return f"a quote opened on line {first} is never closed (an unbalanced '\"')"
        if len(lines) == 1:  # text after a closing quote ('"a"b'): read leniently, as spreadsheets do
            return ""
        return f"a quote opened on line {first} closes on line {last} inside a value (an unbalanced '\"')"
    if len(lines) == 1:
        return ""
    extra = fields[width:]
    if len(fields) < width or (extra and "".join(extra).strip()):
        return (
            f"a quote opened on line {first} runs to line {last}, giving {len(fields)} fields where the header has"
            f" {width} (an unbalanced '\"')"
        )
    for k, line in enumerate(lines[1:-1], start=first + 1):
        if _row_like(_one_line_fields(line, delimiter), width, ref):
            return (
                f"a quote opened on line {first} runs to line {last}, swallowing line {k}, which reads as a row of"
                " its own (an unbalanced '\"')"
            )
    # two lines that each hold a whole row's delimiters: a stray quote in each, not a value with a line break
    ends = (lines[0], lines[-1])
    if (
        width > 1
        and ref is not None
        and all(line.count(delimiter) >= width - 1 for line in ends)  # cheap first: a value's last line rarely has
        and all(_row_like(line.rstrip("\r\n").split(delimiter)[:width], width, ref) for line in ends)
    ):
        return (
            f"a quote opened on line {first} runs to line {last}, and both lines hold a whole row's fields"
            " (an unbalanced '\"')"
        )
    return ""


def csv_records(text: str, delimiter: str = ",", width: int | None = None, first_line: int = 1) -> list[_Record]:
    """Split CSV text into records, each with the physical line it starts on; never merges rows silently.

    A quoted value may hold line breaks. A quote that opens a value which is never closed, runs past the
    field size limit, or swallows lines that read as whole rows of their own (an unbalanced quote) makes its
    first line a record of its own that cannot be read, with the reason; reading goes on with the next line.
    So every physical line belongs to exactly one record.

    Parameters
    ----------
    text : str
        The CSV text; LF, CRLF and a lone CR end lines (a quoted value keeps its line breaks as written).
    delimiter : str
        The field separator.
    width : int, optional
        The header's number of fields; None takes the first record's.
    first_line : int
        The physical line number of the text's first line (for messages).

    Returns
    -------
    list of _Record
        Records in order; the first is the header.
    """
    return _csv_split(text, delimiter, width, first_line)[0]


def _csv_split(text: str, delimiter: str, width: int | None, first_line: int) -> tuple[list[_Record], list[str]]:
    """`csv_records`, and the physical lines (each with its line end) the records were read from."""
    lines = list(io.StringIO(text, newline=""))  # each with its line end: \n, \r\n or \r (kept in values)
    out: list[_Record] = []
    ref: list[str] | None = None  # the last row read on one line: the shape of a row (`_row_like`)
    looked = False  # whether the rows after the first span were searched for one (once: not per span)
    start, n = 0, len(lines)
    while start < n:
        reader = csv.reader(_lines_from(lines, start), delimiter=delimiter)
        pos = start  # index of the line the next record starts on
        try:
            for fields in reader:
                end = start + reader.line_num
                if width is None:  # the header: a quote in it that spans lines is a stray one
                    if end - pos > 1:
                        problem = (
                            f"a quote opened on line {first_line + pos} runs to line {first_line + end - 1}"
                            " (an unbalanced '\"')"
                        )
                        out.append(_Record(first_line + pos, None, problem, _cut(lines[pos])))
                        start = pos + 1
                        break
                    width = len(fields)
                if end - pos > 1 or (end == n and '"' in lines[pos]):
                    if ref is None and out and not looked:  # no row read yet: the first row after this record
                        ref, looked = _next_row(lines, end, width, delimiter), True
                    problem = _span_problem(lines[pos:end], fields, width, delimiter, first_line + pos, ref)
                    if problem:
                        out.append(_Record(first_line + pos, None, problem, _cut(lines[pos])))
                        start = pos + 1
                        break
                out.append(_Record(first_line + pos, fields))
                if end - pos == 1 and len(fields) == width and len(out) > 1:  # a row, not the header
                    ref = fields
                pos = end
            else:
                start = n
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                problem = (
                    f"a quote opened on line {first_line + pos} is not closed within"
                    f" {csv.field_size_limit()} characters (an unbalanced '\"')"
                )
            else:
                problem = f"line {first_line + pos} is not well-formed CSV ({exc})"
            out.append(_Record(first_line + pos, None, problem, _cut(lines[pos])))
            start = pos + 1
    return out, lines


def read_table_file(
    path: str | Path, table: str, encoding: str = "utf-8", delimiter: str = ",", *, duplicates: str = "refuse"
) -> pd.DataFrame:
    """Read one canonical table file (CSV, gzipped CSV or Parquet) as raw values.

    CSV values are read as text (only empty fields are missing; ``"NA"`` stays a value) so that `validate`
    can say exactly which value failed to parse. Every physical line of a CSV file belongs to exactly one row
    (a quoted value may span lines): a line with more fields than the header, or with a quote that is never
    closed or swallows the lines after it, becomes a row marked as malformed (`malformed_row`, with the line
    and the reason), which `validate` quarantines; the next line is read as a row of its own.

    Parameters
    ----------
    path : path
        The file: ``.csv``, ``.csv.gz`` or ``.parquet``.
    table : str
        The canonical table it holds, for messages.
    encoding : str
        The text encoding of a CSV file (a byte-order mark is always removed; a UTF-16 one overrides it).
    delimiter : str
        The field separator of a CSV file.
    duplicates : {"refuse", "number"}
        A header naming a column twice: refused (a canonical table, where every column is used and either could
        be the one meant), or the later ones numbered ``name.1``, ``name.2`` (a CRM export, whose importer picks
        the columns it knows by name and ignores the rest).

    Returns
    -------
    pandas.DataFrame
        One row per record after the header; CSV columns are ``str``.

    Raises
    ------
    DataFileError
        Empty file, undecodable bytes, a delimiter other than the expected one, a header naming a column twice
        or with an unbalanced quote, a corrupt gzip or Parquet file, an unreadable file.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataFileError(f"{path}: not a readable Parquet file ({exc})", file=str(path), table=table) from None
        if duplicates == "refuse":
            _check_duplicate_names(path, table, [str(c) for c in frame.columns])
        return frame
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror})", file=str(path), table=table) from None
    if path.suffix == ".gz":
        import gzip
        import zlib

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFileError(
                f"{path}: not a readable gzip file ({exc}); it is truncated or corrupt: compress the CSV again",
                file=str(path),
                table=table,
            ) from None
    if not data.strip():
        raise DataFileError(
            f"{path}: the file is empty; expected a header row with the {table} columns", file=str(path), table=table
        )
    text = decode_text(data, encoding, path=path, table=table, hint=ENCODING_HINT, utf8_wins=True)
    body = text.lstrip("\r\n")
    skipped = text[: len(text) - len(body)].replace("\r\n", "\n").replace("\r", "\n").count("\n")
    text = body.rstrip() + "\n"
    if not text.strip():
        raise DataFileError(
            f"{path}: the file is empty; expected a header row with the {table} columns", file=str(path), table=table
        )
    header = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    if delimiter not in header:
        for other, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if other in header:
                raise DataFileError(
                    f"{path}: the header is separated by {label}, not {delimiter!r}; expected a comma-separated"
                    f" file (header: {_excerpt(header, 120)})",
                    file=str(path),
                    table=table,
                )
    first = csv_records(header + "\n", delimiter, first_line=skipped + 1)[0]
    if first.fields is None:
        raise DataFileError(
            f"{path}: the header (line {first.line}) cannot be read: {first.problem}; header: {_excerpt(header)}",
            file=str(path),
            table=table,
        )
    names = [h if h.strip() else f"Unnamed: {i}" for i, h in enumerate(first.fields)]
    if duplicates == "refuse":
        _check_duplicate_names(path, table, names)
    else:
        names = _numbered(names)
    frame = _read_csv_fast(text, delimiter, len(names))
    if frame is None:
        frame = _read_csv_records(text, delimiter, len(names), skipped + 1)
    frame.columns = names
    return frame


def _check_duplicate_names(path: Path, table: str, names: list[str]) -> None:
    """Refuse a header that names a column twice: either column could be the one meant."""
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        seen.setdefault(name.strip(), []).append(i + 1)
    for name, where in seen.items():
        if len(where) > 1:
            raise DataFileError(
                f"{path}: the header names {_excerpt(name)} more than once (columns"
                f" {' and '.join(map(str, where[:5]))}); either could be the {table} column meant, so rename or"
                " remove one",
                file=str(path),
                table=table,
                column=name,
            )


def _numbered(names: list[str]) -> list[str]:
    """Header names with repeats numbered as pandas does: ``a, a`` -> ``a, a.1``.

    Examples
    --------
    >>> _numbered(["a", "b", "a", "a.1"])
    ['a', 'b', 'a.2', 'a.1']
    """
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        new, k = name, 0
        while new in seen:
            k += 1
            new = f"{name}.{k}"
            while new in taken and new != name:
                k += 1
                new = f"{name}.{k}"
        seen.add(new)
        out.append(new)
    return out


def _read_csv_fast(text: str, delimiter: str, width: int) -> pd.DataFrame | None:
    """The rows of a CSV text by pandas' C parser, or None unless each line after the header is one row.

    None (the careful reader must run) when a line has more fields than the header, a quote spans lines (a
    value with line breaks, or rows merged by a stray quote), or the rows do not fill the header's width.
    """
    lines = text.count("\n") + text.count("\r") - text.count("\r\n") - 1  # after the header
    if lines == 0:
        return pd.DataFrame({i: pd.Series([], dtype="str") for i in range(width)})
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text),
                header=None,
                skiprows=1,
                dtype="str",
                keep_default_na=False,
                na_values=[""],
                sep=delimiter,
                skip_blank_lines=False,  # blank lines are rows (quarantined as empty), so row numbers stay true
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error):
        return None
    return frame if frame.shape == (lines, width) else None


def _read_csv_records(text: str, delimiter: str, width: int, first_line: int) -> pd.DataFrame:
    """The rows of a CSV text by `csv_records`: one per record, malformed ones marked, short ones padded.

    The records that need a change (a malformed line, surplus fields) are written anew and the text parsed by
    pandas' C parser (fast on a large file with a few bad lines); should its rows not match the records, they
    are built from the records directly.
    """
    records, lines = _csv_split(text, delimiter, width, first_line)
    records = records[1:]
    rows: list[list[str] | None] = []  # None: the record's lines as they are
    for rec in records:
        fields = rec.fields
        if fields is None:
            rows.append(malformed_row([rec.text], width, rec.problem, rec.line))
        elif len(fields) <= width:
            rows.append(None)
        elif not "".join(fields[width:]).strip():  # trailing delimiters
            rows.append(fields[:width])
        else:
            problem = f"line {rec.line} has {len(fields)} fields where the header has {width}"
            rows.append(malformed_row(fields, width, problem, rec.line))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    bounds = [rec.line - first_line for rec in records] + [len(lines)]
    for k, row in enumerate(rows):
        if row is None:
            chunk = "".join(lines[bounds[k] : bounds[k + 1]])
            out.write(chunk if chunk.endswith(("\n", "\r")) else chunk + "\n")
        else:
            writer.writerow(row)
    frame = None
    if records:
        try:
            frame = pd.read_csv(
                io.StringIO(out.getvalue()),
                header=None,
                names=list(range(width)),
                dtype="str",
                keep_default_na=False,
                na_values=[""],
                sep=delimiter,
                skip_blank_lines=False,
            )
        except (pd.errors.ParserError, csv.Error):
            frame = None
    if frame is not None and len(frame) == len(records):
        return frame
    full = []
    for rec, row in zip(records, rows, strict=True):
        fields = row if row is not None else rec.fields
        full.append(fields + [""] * (width - len(fields)))
    columns = list(zip(*full, strict=True)) if full else [()] * width
    built = {}
    for i, values in enumerate(columns):
        col = pd.Series(values, dtype="str")
        built[i] = col.where(col != "")
    return pd.DataFrame(built)


def read_canonical(
    folder: str | Path, process: SalesProcess | str | Path | None = None, *, encoding: str = "utf-8"
) -> CRMData:
    """Load a canonical folder: ``opportunities.csv`` and the other tables, each optional (at least one).

    A folder of leads alone (a marketing funnel) loads with empty opportunities. Each table may be ``NAME.csv``,
    ``NAME.csv.gz`` or ``NAME.parquet``. When `process` is the default (None or ``"default"``, see
    `SalesProcess.resolve`) and the folder holds a ``process.yml``, that process map is used;
    otherwise Salesforce's standard stages.

    Parameters
    ----------
    folder : path
        The folder holding the table files.
    process : SalesProcess, path or "default", optional
    encoding : str
        The text encoding of the CSV tables (``utf-8``; ``latin-1``, ``cp1252``, ``utf-16``... for files saved
        so). A byte-order mark is always removed, and a UTF-16 one is followed whatever this says.

    Returns
    -------
    CRMData
        Accepted tables, quarantine and counts; ``read == accepted + quarantined`` for every table.

    Raises
    ------
    DataFileError
        A missing folder, a folder with no table file, or any whole-file problem (see `read_table_file`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(f"{folder}: no such folder; expected a folder holding opportunities.csv", file=str(folder))
    if SalesProcess.is_default(process) and (folder / "process.yml").exists():
        process = folder / "process.yml"
    tables: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    for name in TABLES:
        path = find_table_file(folder, name)
        if path is None:
            continue
        tables[name] = read_table_file(path, name, encoding=encoding)
        sources[name] = str(path)
    if not tables:
        partitioned = holds_partitions(folder)
        raise DataFileError(
            f"{folder}: no opportunities file (opportunities.csv, .csv.gz or .parquet) nor any other table file"
            f" ({', '.join(TABLES)}); expected a canonical folder"
            + (
                "; this folder holds partitions (partitions.json): read it with salesforecast.scale.PartitionedCRM"
                if partitioned
                else ""
            ),
            file=str(folder),
            table="opportunities",
        )
    data = validate(tables, process=process, sources=sources)
    notes = folder / "notes.txt"
    if notes.is_file():  # what the importer that wrote the folder had to say
        data.notes = tuple(line for line in notes.read_text(encoding="utf-8").splitlines() if line.strip())
    earlier = folder / "quarantine.csv"
    if earlier.is_file():  # rows the importer set aside: they were read too
        data = _with_earlier_quarantine(data, earlier)
    return data


def _with_earlier_quarantine(data: CRMData, path: Path) -> CRMData:
    """Add the quarantine an importer wrote beside a canonical folder to the data's quarantine and counts."""
    todo = "; it holds the rows the import set aside: import the folder again, or remove the file"
    try:
        q = _unescape_spreadsheet(read_table_file(path, "quarantine"))
    except DataFileError as exc:
        raise DataFileError(f"{exc}{todo}", file=str(path)) from None
    missing = [c for c in QUARANTINE_COLUMNS if c not in q.columns]
    if missing:
        raise DataFileError(f"{path}: not a quarantine file: no column {missing[0]!r}{todo}", file=str(path))
    bad = np.flatnonzero(is_malformed(q.iloc[:, 0]).to_numpy(dtype=bool))
    if len(bad):
        problem = _malformed_payload(q.iloc[bad[0], 0]).get("problem") or f"row {bad[0] + 1} does not parse"
        raise DataFileError(f"{path}: not a well-formed quarantine file: {problem}{todo}", file=str(path))
    q = q[list(QUARANTINE_COLUMNS)].fillna("")
    unknown = q.loc[~q["table"].isin(list(TABLES)), "table"]
    if len(unknown):
        raise DataFileError(
            f"{path}: not a quarantine file: row {unknown.index[0] + 1} names table {_excerpt(unknown.iloc[0])},"
            f" which is not one of {', '.join(TABLES)}{todo}",
            file=str(path),
        )
    q["row"] = pd.to_numeric(q["row"], errors="coerce").fillna(0).astype("int64")
    q["details"] = q["details"].astype("str") + " (quarantined at import)"
    counts = data.counts.copy()
    per_table = q.groupby("table").size()
    for table, n in per_table.items():
        if table in counts.index:
            counts.loc[table, "read"] += int(n)
            counts.loc[table, "quarantined"] += int(n)
    quarantine = pd.concat([q.astype(data.quarantine.dtypes.to_dict()), data.quarantine], ignore_index=True)
    return replace(data, quarantine=quarantine, counts=counts)
