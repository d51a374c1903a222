"""Small shared helpers of every layer: Arrow strings, times as int64 microseconds, grouped sums."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: The pandas ``str`` dtype (Arrow storage, missing as NaN).
STR = pd.StringDtype("pyarrow", na_value=np.nan)


def arrow_strings(s: Any) -> pa.Array | None:
    """The values of a Series (or Index) of the pandas ``str`` dtype as one contiguous Arrow array.

    Parameters
    ----------
    s : Any
        Usually a `pandas.Series` or `pandas.Index`.

    Returns
    -------
    pyarrow.Array or None
        ``None`` when `s` is not of the ``str`` dtype (Arrow storage, missing as NaN; the callers then take their
        general path, which keeps any other dtype as it is).
    """
    if not isinstance(s, (pd.Series, pd.Index)) or s.dtype != STR:
        return None
    chunked = s.array.__arrow_array__()
    if isinstance(chunked, pa.ChunkedArray):
        return chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
    return chunked


def str_series(values: pa.Array | pa.ChunkedArray, index: pd.Index | None = None) -> pd.Series:
    """A pandas ``str`` Series over Arrow strings.

    Parameters
    ----------
    values : pyarrow.Array or pyarrow.ChunkedArray
        Strings or large strings (or a dictionary array of them, decoded here).
    index : pandas.Index, optional
        The index of the result (default: a `RangeIndex`).

    Returns
    -------
    pandas.Series
    """
    return pd.Series(pd.arrays.ArrowStringArray(values, dtype=STR), index=index, copy=False)


def decode(codes: np.ndarray, dictionary: pa.Array) -> pa.Array:
    """The values of `dictionary` at integer `codes` (negative: missing).

    Parameters
    ----------
    codes : numpy.ndarray
        Integer (int32 or int64) positions in `dictionary`; negative values are missing.
    dictionary : pyarrow.Array
        The values.

    Returns
    -------
    pyarrow.Array
        Of the type of `dictionary`; wrap strings with `str_series`.
    """
    missing = codes < 0
    return dictionary.take(pa.array(codes, mask=missing if missing.any() else None))


def encode(values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Dictionary-encode Arrow values: int32 codes (-1 for missing) and the distinct values.

    Parameters
    ----------
    values : pyarrow.Array

    Returns
    -------
    codes : numpy.ndarray
        Possibly read-only (a view of Arrow memory).
    dictionary : pyarrow.Array
    """
    enc = values.dictionary_encode()
    indices = enc.indices if enc.indices.null_count == 0 else enc.indices.fill_null(-1)
    return indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), enc.dictionary


def positions(keys: pa.Array, values: pa.Array) -> np.ndarray:
    """Position of each of `keys` in `values` (-1 where absent or missing); `values` must be unique.

    Keys that repeat in runs (a history grouped by opportunity) are looked up once per run.

    Parameters
    ----------
    keys, values : pyarrow.Array
        Arrays of the same type.

    Returns
    -------
    numpy.ndarray
        int64, one per key.
    """
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    heads: np.ndarray | None = None
    if n > 1:
        change = pc.not_equal(keys.slice(1), keys.slice(0, n - 1)).fill_null(True)
        heads = np.flatnonzero(np.r_[True, change.to_numpy(zero_copy_only=False)])
        if len(heads) > n // 2:
            heads = None
    lookup = keys if heads is None else keys.take(pa.array(heads))
    same = (
        len(lookup) == len(values)
        and lookup.null_count == 0
        and values.null_count == 0
        and pc.all(pc.equal(lookup, values)).as_py()
    )
    if same:  # the keys' runs are the values, in order (both tables sorted the same way)
        found = np.arange(len(lookup), dtype=np.int64)
    else:
        found = pc.index_in(lookup, value_set=values, skip_nulls=True).fill_null(-1)
        found = found.to_numpy(zero_copy_only=False).astype(np.int64)
    if heads is None:
        return found
    return np.repeat(found, np.diff(np.r_[heads, n]))


def isin(s: pd.Series, values: Any) -> pd.Series:
    """``s.isin(values)`` that stays fast for millions of string values.

    pandas' arrow-backed ``str`` dtype builds one Python scalar per element of `values` in ``isin``; a hash
    lookup (Arrow's ``is_in`` when both sides are Arrow strings, else through an `Index` of the unique values)
    does the same in vectorised code. Missing never matches.
    """
    left = arrow_strings(s)
    right = arrow_strings(values)
    if left is not None and right is not None:
        if right.null_count:
            right = right.drop_null()
        if len(right) == 0:
            return pd.Series(np.zeros(len(s), dtype=bool), index=s.index)
        if right.type != left.type:
            right = right.cast(left.type)
        found = pc.is_in(left, value_set=right, skip_nulls=True).fill_null(False)
        return pd.Series(found.to_numpy(zero_copy_only=False), index=s.index)
    uniques = pd.Index(pd.unique(pd.Series(values).dropna()))
    if len(uniques) == 0:
        return pd.Series(np.zeros(len(s), dtype=bool), index=s.index)
    return pd.Series(uniques.get_indexer(s) >= 0, index=s.index)


# ------------------------------------------------------------------------------------------------ time and arrays
#: One day in microseconds (times are held as int64 microseconds since the epoch, the view of ``datetime64[us]``).
DAY_US = 86_400_000_000
#: Missing time (``NaT``) as int64 microseconds.
NAT = np.iinfo(np.int64).min
#: "Never" as int64 microseconds: later than every time (an open-ended state's end, a deal without a change).
NEVER = np.iinfo(np.int64).max


def when_text(t: Any) -> str:
    """A time as a reader writes it: the day alone at midnight, else the day and the minute.

    Examples
    --------
    >>> when_text("2024-06-30"), when_text("2024-06-30 14:05:09")
    ('2024-06-30', '2024-06-30 14:05')
    """
    stamp = pd.Timestamp(t)
    return f"{stamp:%Y-%m-%d}" if stamp == stamp.normalize() else f"{stamp:%Y-%m-%d %H:%M}"


def to_us(ts: Any) -> int:
    """One time (``Timestamp``, ``datetime64``, date string) as int64 microseconds since the epoch.

    Examples
    --------
    >>> to_us("1970-01-02")
    86400000000
    """
    return int(pd.Timestamp(ts).to_datetime64().astype("datetime64[us]").astype(np.int64))


def us(values: Any) -> np.ndarray:
    """Datetimes (array, Series or Index) as int64 microseconds; ``NaT`` becomes `NAT`.

    Examples
    --------
    >>> us(pd.Series(pd.to_datetime(["1970-01-01", None]))).tolist() == [0, NAT]
    True
    """
    return np.asarray(values).astype("datetime64[us]").view(np.int64)


def group_cumsum(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Cumulative sum of `values` restarting where `group_start` is True (rows sorted by group).

    Examples
    --------
    >>> group_cumsum(np.array([1, 2, 3, 4]), np.array([True, False, True, False])).tolist()
    [1, 3, 3, 7]
    """
    cs = np.cumsum(values)
    starts = np.flatnonzero(group_start)
    if len(starts) == 0:
        return cs
    base = (cs[starts] - values[starts])[np.cumsum(group_start) - 1]
    return cs - base


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (``np.unique`` by sorting; numpy 2.4's hash-based unique is 40x slower here).

    Examples
    --------
    >>> sorted_unique(np.array([3, 1, 3, 2])).tolist()
    [1, 2, 3]
    """
    s = np.sort(values)
    return s[np.r_[True, s[1:] != s[:-1]][: len(s)]]


# ------------------------------------------------------------------------------ CSV files meant for spreadsheets
#: OWASP's CSV-injection rule: a text cell starting with one of these is read by a spreadsheet as a formula.
FORMULA_START = "=+-@\t\r"
# A cell to escape: a formula start after any quotes already there (so that unescaping is exact, see below).
_TO_ESCAPE = re.compile(r"'*[=+\-@\t\r]")
# A cell `spreadsheet_csv` escaped: one quote too many before a formula start.
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")
# A plain number ("-5", "+1.5e3"): a spreadsheet reads it as the number, so it is left as it is.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_cell(value: Any) -> Any:
    """A cell value made safe for a spreadsheet: text a spreadsheet would run as a formula gets a leading ``'``.

    OWASP's rule: text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (after any ``'``
    already there, so that `unescape_cell` gives the value back exactly) is written with one more ``'`` in front.
    Plain numbers (``-5``, ``+1.5``) and anything that is not text are returned as they are.

    Examples
    --------
    >>> [spreadsheet_cell(v) for v in ["=1+1", "@SUM(A1)", "-5", "-2+3", "'=x", "ann", -5]]
    ["'=1+1", "'@SUM(A1)", '-5', "'-2+3", "''=x", 'ann', -5]
    """
    if isinstance(value, str) and _TO_ESCAPE.match(value) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """The value `spreadsheet_cell` was given: one leading ``'`` removed from an escaped formula start.

    Examples
    --------
    >>> [unescape_cell(v) for v in ["'=1+1", "''=x", "'ann", "-5"]]
    ['=1+1', "'=x", "'ann", '-5']
    """
    return value[1:] if isinstance(value, str) and _ESCAPED.match(value) else value


def _text_columns(df: pd.DataFrame) -> list[Any]:
    return [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype)]


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with `spreadsheet_cell` applied to the cells of its text columns (numeric columns are left alone)."""
    out = df.copy()
    for column in _text_columns(df):
        out[column] = df[column].map(spreadsheet_cell, na_action="ignore").astype(df[column].dtype)
    return out


def unescape_spreadsheet(df: pd.DataFrame) -> pd.DataFrame:
    """The inverse of `spreadsheet_safe`: `unescape_cell` on the cells of the text columns."""
    out = df.copy()
    for column in _text_columns(df):
        out[column] = df[column].map(unescape_cell, na_action="ignore").astype(df[column].dtype)
    return out


def spreadsheet_csv(df: pd.DataFrame, path: str | Path, **kwargs: Any) -> None:
    """Write `df` as a CSV file meant to be opened in a spreadsheet, its text cells escaped (`spreadsheet_cell`).

    For files people open (``quarantine.csv``), not for the canonical tables the suite reads back as data. Read
    such a file back with `unescape_spreadsheet` to get the values as they were. ``index=False`` and newline
    line endings unless `kwargs` say otherwise.
    """
    kwargs = {"index": False, "lineterminator": "\n", **kwargs}
    spreadsheet_safe(df).to_csv(path, **kwargs)


def release_memory() -> None:
    """Give back to the operating system the memory freed by a large step (a load, a replay of the pipeline).

    Arrow's memory pool and the C library's heap keep freed memory for reuse, so after a load of millions of
    rows a process holds about a gigabyte it no longer uses, and the next step's peak comes on top of it. This
    returns it (Arrow's `release_unused`; ``malloc_trim`` where the C library has one). Nothing is recomputed and no
    value changes.
    """
    pa.default_memory_pool().release_unused()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): Arrow's release is all
        pass


def listed(names: Sequence[str]) -> str:
    """Names in a sentence: "a", "a and b", "a, b and c".

    Examples
    --------
    >>> listed(["leads", "quotas", "stage history"])
    'leads, quotas and stage history'
    """
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def read_part(part: Any) -> Any:
    """A part's data: the part itself, or what its reader (a function of no argument) returns.

    Called where a task runs, so a part given as its reader is read there and kept nowhere else.
    """
    return part() if callable(part) else part


class LocalTasks:
    """Where the tasks of a step split over parts of the data run when no cluster is given: here, in turn.

    A step split over parts (one per partition of opportunities, `salesforecast.scale`) calls
    ``tasks.map(fn, handles, *per_part, **shared)``, which runs ``fn(handle, *that part's values, **shared)`` for
    each part and keeps the results where they were computed, and ``tasks.gather(results)``, which brings them to
    the caller. Here the handles are the parts themselves and both are plain calls; `salesforecast.scale.DaskTasks`
    runs the same step on a Dask cluster (its handles are futures on the workers), so one code path serves one
    process and a cluster.

    Examples
    --------
    >>> tasks = LocalTasks()
    >>> tasks.gather(tasks.map(pow, [2, 3], exp=2))
    [4, 9]
    """

    def map(self, fn: Any, handles: Any, *per_part: Any, **shared: Any) -> list[Any]:
        """``fn(handle, *the part's values of per_part, **shared)`` for each part, in order."""
        return [fn(*args, **shared) for args in zip(handles, *per_part, strict=True)]

    def gather(self, results: Any) -> list[Any]:
        """The results of `map`, here."""
        return list(results)

    def sum(self, results: Any) -> Any:
        """The results of `map` added in `summed_in_groups`' order (`salesforecast.scale.DaskTasks.sum`'s too).

        Tuples and lists of results are added element by element (`added`).
        """
        return summed_in_groups(list(results), added)

    def close(self) -> None:
        """Nothing to release here (`salesforecast.scale.DaskTasks.close` removes a cluster run's files)."""


#: How many consecutive results `summed_in_groups` adds in one group.
SUM_GROUP = 8


def summed_in_groups(results: list[Any], add: Any) -> Any:
    """The results added in groups of `SUM_GROUP` consecutive ones, then the groups' totals so, until one is left.

    Within a group the additions run one after another (a left fold). The order depends on the number of results
    only, never on where the additions run: one process (`LocalTasks.sum`) and a cluster
    (`salesforecast.scale.DaskTasks.sum`, whose groups are added at once on the workers, `add` submitting a task)
    give the same bits. Up to `SUM_GROUP` results this is a plain left fold.

    Examples
    --------
    >>> summed_in_groups([str(i) for i in range(10)], lambda a, b: f"({a}+{b})")
    '((((((((0+1)+2)+3)+4)+5)+6)+7)+(8+9))'
    """
    if not results:
        raise ValueError("summed_in_groups: nothing to add")
    while len(results) > 1:
        results = [functools.reduce(add, results[at : at + SUM_GROUP]) for at in range(0, len(results), SUM_GROUP)]
    return results[0]


def added(a: Any, b: Any) -> Any:
    """`a` + `b`, element by element when they are tuples or lists (of arrays, numbers, or tuples of them).

    Examples
    --------
    >>> added((1, [2, 3]), (10, [20, 30]))
    (11, [22, 33])
    """
    if isinstance(a, (tuple, list)):
        return type(a)(added(x, y) for x, y in zip(a, b, strict=True))
    return a + b
