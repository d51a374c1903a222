"""Helpers shared by the CRM export importers (`salesforecast.io.salesforce`, `salesforecast.io.hubspot`).

An export names its columns its own way (``Close Date``, ``closedate``, ``CloseDate``), keeps values as text, and
may hold CSV lines with more fields than the header; each importer translates the rows into raw canonical tables,
hands them to `salesforecast.schema.validate` and adds notes on what it found. These functions are the steps both
importers take in the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from salesforecast.schema import CRMData, DataFileError, is_malformed

__all__ = [
    "carry_malformed",
    "custom_columns",
    "custom_field_column",
    "find_column",
    "header_key",
    "need_column",
    "parse_times",
    "quarantine_notes",
    "text_column",
    "with_notes",
]


def header_key(name: object) -> str:
    """Matching key of a column header: case-folded, inner whitespace collapsed.

    Parameters
    ----------
    name : object
        A header, as read.

    Returns
    -------
    str

    Examples
    --------
    >>> header_key("  Close   Date ")
    'close date'
    """
    return re.sub(r"\s+", " ", str(name)).strip().casefold()


def find_column(df: pd.DataFrame, *names: str) -> str | None:
    """The first column of `df` matching one of `names` (compared by `header_key`), or None.

    Parameters
    ----------
    df : DataFrame
        The export's rows.
    *names : str
        Header names to look for, the preferred one first.

    Returns
    -------
    str or None
        The column's name as it is in `df`.

    Examples
    --------
    >>> find_column(pd.DataFrame(columns=["Deal ID", "Amount"]), "Record ID", "deal id")
    'Deal ID'
    """
    lookup: dict[str, str] = {}
    for c in df.columns:
        lookup.setdefault(header_key(c), c)
    for name in names:
        if header_key(name) in lookup:
            return lookup[header_key(name)]
    return None


def need_column(df: pd.DataFrame, path: Path | str, table: str, *names: str) -> str:
    """`find_column`, or a `DataFileError` naming the file, the column and the `table` it is needed for."""
    col = find_column(df, *names)
    if col is None:
        alt = f" (or {', '.join(repr(n) for n in names[1:])})" if len(names) > 1 else ""
        raise DataFileError(
            f"{path}: no column {names[0]!r}{alt}; it is required to build the {table} table"
            f" (found {[str(c) for c in df.columns][:20]})",
            file=str(path),
            table=table,
            column=names[0],
        )
    return col


def text_column(df: pd.DataFrame, col: str | None) -> pd.Series:
    """A column as raw text (all missing when `col` is None).

    Parameters
    ----------
    df : DataFrame
        The export's rows.
    col : str or None
        The column, typically found by `find_column`.

    Returns
    -------
    Series
        Text (``str`` dtype) aligned to `df`'s index.
    """
    if col is None:
        return pd.Series([None] * len(df), index=df.index, dtype="str")
    return df[col].astype("str")


def carry_malformed(source: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """Keep `read_table_file`'s mark of malformed CSV lines in the first column, where `validate` looks for it.

    Parameters
    ----------
    source : DataFrame
        The rows as read from the export file.
    out : DataFrame
        The translated rows (same index); changed in place.

    Returns
    -------
    DataFrame
        `out`, whose first column holds the source's mark on the malformed lines.
    """
    if not len(source.columns) or not len(out.columns) or source.iloc[:, 0].dtype != "str":
        return out
    first = source.iloc[:, 0]
    bad = is_malformed(first).to_numpy(dtype=bool)
    if bad.any():
        col = out.columns[0]
        out[col] = out[col].astype("str").mask(pd.Series(bad, index=out.index), first)
    return out


def parse_times(text: pd.Series) -> pd.Series:
    """Text -> naive UTC datetimes, as `validate` parses them (NaT where not a full ISO date).

    Parameters
    ----------
    text : Series
        Times as text: ``YYYY-MM-DD``, ``YYYY-MM-DD hh:mm:ss`` or ISO 8601 with ``Z``/offsets.

    Returns
    -------
    Series
        ``datetime64`` without time zone (converted to UTC).

    Examples
    --------
    >>> parse_times(pd.Series(["2024-03-01T10:00:00+02:00", "01/03/2024"])).tolist()
    [Timestamp('2024-03-01 08:00:00'), NaT]
    """
    text = text.astype("str").str.strip()
    text = text.where(text.str.match(r"\d{4}-\d{2}-\d{2}(?:$|[T ])"))
    return pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)


def quarantine_notes(data: CRMData, hint: str) -> list[str]:
    """Notes on stage names the process map does not know (the commonest cause of a large quarantine).

    Parameters
    ----------
    data : CRMData
        Validated data.
    hint : str
        What the reader can do about it, appended to the note (it differs per importer).

    Returns
    -------
    list of str
        One note when opportunities were quarantined as ``unknown stage``, else none.
    """
    q = data.quarantine
    notes = []
    unknown = q[(q["table"] == "opportunities") & (q["reason"] == "unknown stage")]
    if len(unknown):
        counts = unknown["value"].value_counts()
        listed = ", ".join(f"{v!r} ({n})" for v, n in counts.head(8).items())
        more = f" and {len(counts) - 8} more" if len(counts) > 8 else ""
        notes.append(
            f"{len(unknown)} of {int(data.counts.loc['opportunities', 'read'])} opportunities were quarantined as"
            f" 'unknown stage': {listed}{more} are not stages of the process map {data.process.name!r}. {hint}"
        )
    return notes


def with_notes(data: CRMData, notes: Iterable[str]) -> CRMData:
    """The same data with `notes` added to its notes (empty and repeated notes dropped, order kept).

    Parameters
    ----------
    data : CRMData
        Validated data.
    notes : iterable of str
        Notes to add.

    Returns
    -------
    CRMData
        A copy; `data` is not changed.
    """
    notes = tuple(dict.fromkeys(n for n in (*data.notes, *notes) if n))
    return CRMData(**{**data.__dict__, "notes": notes})


def custom_field_column(field: str) -> str:
    """A Salesforce custom field's API name as a feature column.

    Examples
    --------
    >>> custom_field_column("Title_Seniority__c"), custom_field_column("NumberOfDemos__c")
    ('title_seniority', 'number_of_demos')
    """
    base = re.sub(r"__c$", "", str(field).strip(), flags=re.IGNORECASE)
    base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base)
    return re.sub(r"[^0-9a-zA-Z]+", "_", base).strip("_").lower()


def custom_columns(df: pd.DataFrame, taken: Iterable[str]) -> dict[str, pd.Series]:
    """Custom fields (``Xyz__c``) as feature columns named ``xyz`` (``xyz_custom`` when the name is taken).

    Parameters
    ----------
    df : DataFrame
        The export's rows.
    taken : iterable of str
        Column names already used by the translated table.

    Returns
    -------
    dict of str to Series
        Feature column name -> the field's raw text.
    """
    taken = set(taken)
    out = {}
    for c in df.columns:
        if not re.search(r"__c$", str(c), flags=re.IGNORECASE):
            continue
        name = custom_field_column(c)
        if not name:
            continue
        if name in taken or name in out:
            name = f"{name}_custom"
        out[name] = text_column(df, c)
    return out
