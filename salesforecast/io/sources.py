"""Reading one tabular source (CSV, Excel, Parquet) as raw values, and the value parsers of mapped imports.

`read_file_source` reads what a CRM or a spreadsheet exports, however it is shaped: any encoding (a byte-order
mark is always removed), a delimiter it sniffs among ``, ; TAB |`` when none is given, quoted newlines, title
rows above the header, trailing empty columns, a chosen sheet of a workbook. CSV values come back as text
(only empty fields are missing) so that `salesforecast.schema.validate` can name exactly which value failed;
Excel and Parquet columns keep their types.

The parsers turn the text of one column into values before `validate` sees it: `parse_number` (decimal
commas, thousands separators, currency symbols), `parse_dates` (several formats within one column, Excel
serial day numbers) and `map_values` (the export's words for stages, flags and categories). A value a parser
cannot read stays as its original text, so that `validate` quarantines its row with the reason; it never
silently becomes missing.

Rules about headers:

- Header names are stripped of surrounding spaces. A requested column matches its header exactly, else
  ignoring case and repeated spaces when that match is unique.
- Columns without a header are dropped when they hold no value (exports often end lines with delimiters);
  one that holds values is named ``column N`` (its 1-based position).
- A header name that appears twice is an error when that column is requested (or when every column is read),
  because either column may be the one meant. Duplicated columns that are not requested are ignored: an export
  with two ``Notes`` columns imports fine when neither is mapped.
- A CSV line with more fields than the header (an unquoted delimiter inside a value) becomes a row marked
  as malformed: `validate` quarantines it as ``malformed row`` with its line and fields. Extra fields that are all
  empty (trailing delimiters) are not a problem; lines with fewer fields are padded with missing values.
- A quoted value may hold line breaks. A line whose quote is never closed, or swallows later lines that read as
  rows of their own (an unbalanced quote), is a malformed row too, and the next line is read as a row of its own
  (`salesforecast.schema.csv_records`): no row is merged into another.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesforecast.config import suggest
from salesforecast.process import normalize_name
from salesforecast.schema import DataFileError, csv_records, decode_text, is_malformed, malformed_row

__all__ = [
    "DELIMITERS",
    "FORMATS",
    "MissingColumnsError",
    "is_malformed",
    "key_text",
    "map_values",
    "mark_missing",
    "parse_dates",
    "parse_number",
    "read_file_source",
    "source_format",
]

#: Source formats and the file suffixes that imply them.
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz"),
    "excel": (".xlsx", ".xlsm", ".xls"),
    "parquet": (".parquet", ".pq"),
}
_FORMAT_NAMES = {"csv": "csv", "tsv": "csv", "txt": "csv", "excel": "excel", "xlsx": "excel", "xls": "excel"}
_FORMAT_NAMES["parquet"] = "parquet"

#: Delimiters tried, in this order of preference, when none is given.
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
#: Names a delimiter may be given by (in mappings and on the command line), and the character each means.
DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}

#: Excel serial day numbers accepted as dates: 1950-01-01 to 2099-12-31 (day 0 is 1899-12-30).
EXCEL_SERIAL_RANGE: tuple[int, int] = (18264, 73415)
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")


class MissingColumnsError(DataFileError):
    """Requested columns that a source does not have.

    Attributes
    ----------
    missing : list of str
        The requested names not found.
    available : list of str
        The source's column names.
    """

    def __init__(self, message: str, *, missing: list[str], available: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.missing = missing
        self.available = available


# ---------------------------------------------------------------------------------------------- reading
def source_format(path: str | Path, format: str | None = None) -> str:
    """The format of a source file: ``"csv"``, ``"excel"`` or ``"parquet"``.

    Parameters
    ----------
    path : path
        The file; its suffix decides when `format` is None.
    format : str, optional
        ``csv``, ``tsv``, ``txt``, ``excel``, ``xlsx``, ``xls`` or ``parquet``.

    Raises
    ------
    DataFileError
        An unknown format, or a suffix that does not tell.

    Examples
    --------
    >>> source_format("deals.CSV"), source_format("owners.xlsx"), source_format("x.dat", "tsv")
    ('csv', 'excel', 'csv')
    """
    if format is not None:
        fmt = _FORMAT_NAMES.get(str(format).strip().lower())
        if fmt is None:
            raise DataFileError(
                f"{path}: unknown format {format!r}; use one of {sorted(_FORMAT_NAMES)}", file=str(path)
            )
        return fmt
    name = Path(path).name.lower()
    for fmt, suffixes in FORMATS.items():
        if name.endswith(suffixes):
            return fmt
    raise DataFileError(
        f"{path}: cannot tell the format from the file name; give `format:` (csv, tsv, xlsx or parquet)",
        file=str(path),
    )


def read_file_source(
    path: str | Path,
    *,
    format: str | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    sheet: str | None = None,
    skip_rows: int = 0,
    columns: Sequence[str] | None = None,
    missing: Sequence[str] = (),
    table: str | None = None,
) -> pd.DataFrame:
    r"""Read one tabular file (CSV, Excel or Parquet) as raw values.

    Parameters
    ----------
    path : path
        The file. ``.csv``, ``.tsv``, ``.txt`` (optionally gzipped), ``.xlsx``/``.xls``, ``.parquet``.
    format : str, optional
        Overrides the suffix: ``csv``, ``tsv``, ``excel``, ``xlsx``, ``xls`` or ``parquet``.
    delimiter : str, optional
        The CSV delimiter (or ``comma``, ``semicolon``, ``tab``, ``pipe``). None sniffs it among
        `DELIMITERS` from the first lines (a tab for ``.tsv`` files).
    encoding : str
        The CSV text encoding (``utf-8``, ``latin-1``, ``cp1252``...). A byte-order mark is always removed;
        a UTF-16 byte-order mark overrides the encoding.
    sheet : str, optional
        The Excel sheet, by name; None reads the first sheet.
    skip_rows : int
        Lines (CSV) or rows (Excel) above the header to skip, such as a report title.
    columns : sequence of str, optional
        Read only these columns, in this order (the frame's columns carry these names). None reads all.
    missing : sequence of str
        Texts that mean "no value" in this export (e.g. ``-``, ``n/a``); read as missing.
    table : str, optional
        The canonical table this source feeds, for error messages.

    Returns
    -------
    pandas.DataFrame
        One row per data record (row 1 is the first after the header). CSV columns are ``str`` with missing
        values only where a field is empty (or in `missing`); Excel and Parquet columns keep their types
        (a column mixing numbers and text becomes text).

    Raises
    ------
    MissingColumnsError
        A requested column is not in the source; the message lists the source's columns.
    DataFileError
        No such file, an empty file, undecodable bytes (naming the byte offset and the encoding to try),
        an unclosed quote in the header, a requested header that appears twice, a missing sheet, an unreadable
        file.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "deals.csv"
    >>> text = 'Deal;Wert;Notiz;;\nD1;1.234,50;;;\nD2;99;"Große\nLieferung";;\n'
    >>> _ = path.write_bytes(text.encode("latin-1"))
    >>> df = read_file_source(path, encoding="latin-1")
    >>> df.columns.tolist()
    ['Deal', 'Wert', 'Notiz']
    >>> df["Notiz"].tolist()
    [nan, 'Große\nLieferung']
    """
    path = Path(path).expanduser()
    fmt = source_format(path, format)
    if not path.exists():
        raise DataFileError(f"{path}: no such file", file=str(path), table=table)
    if path.is_dir():
        raise DataFileError(f"{path}: is a folder; expected a {fmt} file", file=str(path), table=table)
    if not path.is_file():  # /dev/zero, /dev/urandom, a FIFO: reading it would not end, or block
        raise DataFileError(
            f"{path}: is not a regular file (a device, pipe or socket); expected a {fmt} file",
            file=str(path),
            table=table,
        )
    if not isinstance(skip_rows, int | np.integer) or isinstance(skip_rows, bool) or skip_rows < 0:
        raise DataFileError(f"{path}: skip_rows must be a whole number >= 0, got {skip_rows!r}", file=str(path))
    if fmt == "csv":
        if delimiter is None and path.name.lower().endswith((".tsv", ".tsv.gz")):
            delimiter = "\t"
        names, cols = _read_csv(path, delimiter, encoding, int(skip_rows), table)
    elif fmt == "excel":
        names, cols = _read_excel(path, sheet, int(skip_rows), table)
    else:
        names, cols = _read_parquet(path, table)
    frame = _select(path, names, cols, columns, table)
    return mark_missing(frame, missing)


def _decode(path: Path, data: bytes, encoding: str, table: str | None) -> str:
    """Bytes to text (`salesforecast.schema.decode_text`), naming the mapping key that sets the encoding."""
    return decode_text(data, encoding, path=path, table=table, hint="set `encoding: {encoding}` for this source")


def _resolve_delimiter(path: Path, delimiter: str) -> str:
    d = DELIMITER_NAMES.get(delimiter.strip().lower(), delimiter) if delimiter.strip() else delimiter
    if len(d) != 1 or d in '"\r\n':
        raise DataFileError(
            f"{path}: delimiter must be one character (or comma, semicolon, tab, pipe), got {delimiter!r}",
            file=str(path),
        )
    return d


def _sniff(text: str) -> str:
    """The delimiter whose header has most fields among those most data lines agree with (``,`` if none)."""
    sample = "\n".join(text.split("\n", 60)[:60])
    best, best_score = ",", (False, 1, 0.0)
    for d in DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=d) if r]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        data = rows[1:-1] if len(rows) > 2 else rows[1:]  # the last sampled line may be cut
        agree = sum(1 for r in data if len(r) == width or (len(r) > width and not "".join(r[width:]).strip()))
        share = agree / len(data) if data else 1.0
        score = (share >= 0.9, width, share)
        if score > best_score:
            best, best_score = d, score
    return best


def _read_csv(
    path: Path, delimiter: str | None, encoding: str, skip_rows: int, table: str | None
) -> tuple[list[str], list[pd.Series]]:
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataFileError(f"{path}: not a gzip file ({exc})", file=str(path), table=table) from None
    text = _decode(path, data, encoding, table)
    skipped = 0
    if skip_rows:
        parts = text.split("\n", skip_rows)
        if len(parts) <= skip_rows:
            raise DataFileError(
                f"{path}: skip_rows is {skip_rows} but the file has only {len(parts)} line(s)", file=str(path)
            )
        text, skipped = parts[-1], skip_rows
    stripped = text.lstrip("\r\n")
    skipped += text[: len(text) - len(stripped)].count("\n")
    text = stripped.rstrip()
    if not text:
        raise DataFileError(f"{path}: the file is empty; expected a header row", file=str(path), table=table)
    d = _sniff(text) if delimiter is None else _resolve_delimiter(path, delimiter)
    records = csv_records(text, d, first_line=skipped + 1)
    head = records[0]
    if head.fields is None:
        raise DataFileError(
            f"{path}: the header (line {head.line}) cannot be read: {head.problem}", file=str(path), table=table
        )
    header = [h.strip() for h in head.fields]
    width = len(header)
    fixed: list[list[str]] = []
    for rec in records[1:]:
        row = rec.fields
        if row is None:  # an unbalanced quote: its line is set aside, the next line is a row of its own
            fixed.append(malformed_row([rec.text], width, rec.problem, rec.line))
            continue
        n = len(row)
        if n == width:
            fixed.append(row)
        elif n < width:
            fixed.append(row + [""] * (width - n))
        elif not "".join(row[width:]).strip():
            fixed.append(row[:width])
        else:
            fixed.append(
                malformed_row(row, width, f"line {rec.line} has {n} fields where the header has {width}", rec.line)
            )
    columns = list(zip(*fixed, strict=True)) if fixed else [()] * width
    series = []
    for values in columns:
        s = pd.Series(values, dtype="str")
        series.append(s.where(s != ""))
    return header, series


def _cell_text(value: Any) -> Any:
    """A spreadsheet cell as text (whole floats without ``.0``); missing stays missing."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat(sep=" ")
    return str(value)


def _typed_column(values: pd.Series) -> pd.Series:
    """A column of spreadsheet cells: numbers, datetimes or text; mixed columns become text."""
    s = pd.Series(values.tolist(), dtype=object).infer_objects()
    if s.dtype == object:
        return s.map(_cell_text).astype("str")
    if s.dtype.kind == "f" and s.notna().any() and bool((s.dropna() % 1 == 0).all()):
        return s.astype("Int64")  # whole numbers with gaps stay whole (ids must not become '1001.0')
    return s


def _read_excel(path: Path, sheet: str | None, skip_rows: int, table: str | None) -> tuple[list[str], list[pd.Series]]:
    try:
        book = pd.ExcelFile(path)
    except ImportError as exc:
        raise DataFileError(
            f"{path}: this Excel format needs a package that is not installed ({exc}); save the sheet as .xlsx",
            file=str(path),
            table=table,
        ) from None
    except Exception as exc:  # openpyxl and zipfile raise many types for a file that is not a workbook
        raise DataFileError(f"{path}: not a readable Excel file ({exc})", file=str(path), table=table) from None
    with book:
        names = [str(n) for n in book.sheet_names]
        name = names[0] if sheet is None else str(sheet)
        if name not in names:
            raise DataFileError(f"{path}: no sheet {name!r}; sheets are {names}", file=str(path), table=table)
        raw = pd.read_excel(
            book, sheet_name=book.sheet_names[names.index(name)], header=None, skiprows=skip_rows, dtype=object
        )
    filled = raw.notna() & ~raw.map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
    rows_with_values = np.flatnonzero(filled.any(axis=1).to_numpy())
    if len(rows_with_values) == 0:
        raise DataFileError(f"{path}: sheet {name!r} is empty; expected a header row", file=str(path), table=table)
    raw = raw.iloc[rows_with_values[0] : rows_with_values[-1] + 1].reset_index(drop=True)
    header = [("" if pd.isna(v) else str(_cell_text(v)).strip()) for v in raw.iloc[0].tolist()]
    body = raw.iloc[1:].reset_index(drop=True)
    return header, [_typed_column(body.iloc[:, i]) for i in range(body.shape[1])]


def _read_parquet(path: Path, table: str | None) -> tuple[list[str], list[pd.Series]]:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataFileError(f"{path}: not a readable Parquet file ({exc})", file=str(path), table=table) from None
    return [str(c).strip() for c in df.columns], [df.iloc[:, i].reset_index(drop=True) for i in range(df.shape[1])]


def _blank(s: pd.Series) -> pd.Series:
    """Missing, or text that is empty or only spaces."""
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s.isna()
    return s.isna() | (s.astype("str").str.strip() == "")


def _select(
    path: Path, names: list[str], cols: list[pd.Series], columns: Sequence[str] | None, table: str | None
) -> pd.DataFrame:
    """Drop empty unnamed columns, check duplicates, pick the requested columns by name."""
    malformed = is_malformed(cols[0]) if cols else None
    keep_names, keep_cols = [], []
    for i, (name, col) in enumerate(zip(names, cols, strict=True)):
        if not name:
            if bool((_blank(col) | (malformed if i == 0 and malformed is not None else False)).all()):
                continue
            name = f"column {i + 1}"
        keep_names.append(name)
        keep_cols.append(col)
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(keep_names):
        positions.setdefault(name, []).append(i)

    def duplicate(name: str) -> DataFileError:
        where = " and ".join(str(i + 1) for i, n in enumerate(names) if n == name)
        return DataFileError(
            f"{path}: the header names {name!r} more than once (columns {where}); either could be meant, so"
            " rename them in the export (duplicated columns that are not mapped are ignored)",
            file=str(path),
            table=table,
            column=name,
        )

    if columns is None:
        dups = [n for n, p in positions.items() if len(p) > 1]
        if dups:
            raise duplicate(dups[0])
        wanted = [(n, p[0]) for n, p in positions.items()]
    else:
        folded: dict[str, list[str]] = {}
        for name in positions:
            folded.setdefault(normalize_name(name), []).append(name)
        wanted, absent = [], []
        for req in dict.fromkeys(str(c) for c in columns):
            name = req.strip() if req.strip() in positions else None
            if name is None and len(folded.get(normalize_name(req), [])) == 1:
                name = folded[normalize_name(req)][0]
            if name is None:
                absent.append(req)
                continue
            if len(positions[name]) > 1:
                raise duplicate(name)
            wanted.append((req, positions[name][0]))
        if absent:
            said = ", ".join(repr(a) + suggest(a, keep_names) for a in absent)
            raise MissingColumnsError(
                f"{path}: no column {said}; its columns are: {', '.join(map(repr, keep_names))}",
                missing=absent,
                available=keep_names,
                file=str(path),
                table=table,
                column=absent[0],
            )
    frame = pd.DataFrame({req: keep_cols[pos] for req, pos in wanted})
    if malformed is not None and malformed.any() and len(frame.columns):
        rows = malformed.to_numpy()
        marks = cols[0].to_numpy()[rows]
        frame = frame.astype({c: "str" for c in frame.columns if not _is_text_dtype(frame[c])})
        frame.loc[rows, :] = np.nan
        frame.loc[rows, frame.columns[0]] = marks
    return frame


def _is_text_dtype(s: pd.Series) -> bool:
    return s.dtype == "str" or s.dtype == object


def mark_missing(frame: pd.DataFrame, missing: Sequence[str]) -> pd.DataFrame:
    """Make text values equal to one of `missing` (after stripping spaces) missing.

    Examples
    --------
    >>> mark_missing(pd.DataFrame({"a": ["x", " - ", "n/a"]}), ["-", "n/a"])["a"].tolist()
    ['x', nan, nan]
    """
    tokens = {str(t).strip() for t in missing}
    if not tokens:
        return frame
    out = frame.copy()
    for c in out.columns:
        s = out[c]
        if _is_text_dtype(s):
            out[c] = s.mask(s.astype("str").str.strip().isin(tokens).fillna(False).astype(bool))
    return out


# ---------------------------------------------------------------------------------------------- parsers
def key_text(series: pd.Series) -> pd.Series:
    """Values as stripped text, missing where blank; whole numbers without ``.0`` (for matching keys).

    Examples
    --------
    >>> key_text(pd.Series([1001.0, None, 7.5])).tolist()
    ['1001', nan, '7.5']
    """
    if pd.api.types.is_float_dtype(series.dtype) or series.dtype == object:
        series = series.map(_cell_text)
    s = series.astype("str").str.strip()
    return s.where(s != "")


def _tidy(out: pd.Series) -> pd.Series:
    """An object column of parser results: float64/datetime64 when every value parsed, else kept mixed."""
    present = out.dropna()
    if len(present) and all(isinstance(v, str) for v in present):
        return out.astype("str")
    return out


_CURRENCY = r"(?:US\$|[A-Z]{3}|[€$£¥₹₽₩¢₺₪฿]|Fr\.)"
# Digits are ASCII only ([0-9], not \d): other scripts' digits (１２３, ٣٤) stay text, so `validate` quarantines
# their rows as ``unparseable number``, as it does for a canonical folder.
_NUMBER_SHAPE = re.compile(
    rf"(?P<neg1>[-+−])?\s*{_CURRENCY}?\s*(?P<neg2>[-+−])?\s*"
    rf"(?P<num>[0-9.,'’ ]*[0-9][0-9.,'’ ]*(?:[eE][-+]?[0-9]+)?|[.,][0-9]+)"
    rf"\s*(?P<neg3>-)?\s*(?:{_CURRENCY}|%)?"
)


def _number_pattern(decimal: str, thousands: str | None) -> re.Pattern[str]:
    dec = re.escape(decimal)
    frac = rf"(?:{dec}[0-9]*)?"
    exp = r"(?:[eE][-+]?[0-9]+)?"
    if thousands:
        sep = {" ": "[ ]", "'": "['’]", "’": "['’]"}.get(thousands, re.escape(thousands))
        integer = rf"(?:[0-9]{{1,3}}(?:{sep}[0-9]{{3}})+|[0-9]+)"
    else:
        integer = r"[0-9]+"
    return re.compile(rf"(?:{integer}{frac}|{dec}[0-9]+){exp}")


def parse_number(series: pd.Series, decimal: str = ".", thousands: str | None = None) -> pd.Series:
    """Parse exported numbers: decimal commas, thousands separators, currency, percent signs, negatives.

    Parameters
    ----------
    series : pandas.Series
        Text (or numbers, returned as float64).
    decimal : {".", ","}
        The decimal mark.
    thousands : str, optional
        The thousands separator (``.``, ``,``, ``'``, or ``" "``, which also matches non-breaking spaces).
        When given, groups must have three digits: ``1.5`` with ``thousands="."`` is not read as 15.

    Returns
    -------
    pandas.Series
        float64 when every value parses; otherwise an object column where the values that do not parse keep
        their original text (`validate` quarantines those rows as ``unparseable number``). Missing stays
        missing.

    Notes
    -----
    A currency symbol or ISO code before or after the number (``€``, ``$``, ``EUR``...) and a trailing ``%``
    are removed: ``12,5 %`` is 12.5, not 0.125. Negatives: ``-5``, ``−5``, ``(5)`` (accounting) and ``5-``.

    Examples
    --------
    >>> s = pd.Series(["1.234,50", "€ 99", "(12,00)", "7 %", None])
    >>> parse_number(s, decimal=",", thousands=".").tolist()
    [1234.5, 99.0, -12.0, 7.0, nan]
    >>> parse_number(pd.Series(["1.5", "2"]), decimal=",", thousands=".").tolist()
    ['1.5', 2.0]
    """
    if decimal not in (".", ","):
        raise ValueError(f"decimal must be '.' or ',', got {decimal!r}")
    thousands = thousands or None
    if thousands == decimal:
        raise ValueError(f"thousands and decimal are both {decimal!r}")
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    text = key_text(series).reset_index(drop=True)
    pattern = _number_pattern(decimal, thousands)
    drop = None
    if thousands:
        drop = re.compile("[ ]" if thousands == " " else "['’]" if thousands in "'’" else re.escape(thousands))

    def one(value: str) -> float | None:
        v = re.sub(r"[\u00a0\u202f\u2009]", " ", value).strip()
        paren = v.startswith("(") and v.endswith(")")
        if paren:
            v = v[1:-1].strip()
        m = _NUMBER_SHAPE.fullmatch(v)
        if m is None:
            return None
        num = m.group("num").strip()
        signs = [m.group(k) for k in ("neg1", "neg2", "neg3") if m.group(k)]
        if not pattern.fullmatch(num) or len(signs) > 1:
            return None
        if drop is not None:
            num = drop.sub("", num)
        x = float(num.replace(",", ".")) if decimal == "," else float(num)
        negative = paren != (bool(signs) and signs[0] in "-−")
        return -x if negative else x

    # plain numbers (the bulk of a column) vectorised; the rest (currency, signs, parentheses) value by value
    plain = text.str.fullmatch(pattern.pattern).fillna(False).astype(bool)
    cleaned = text[plain] if drop is None else text[plain].str.replace(drop.pattern, "", regex=True)
    values = pd.Series(np.nan, index=text.index, dtype="float64")
    values[plain] = pd.to_numeric(cleaned.str.replace(",", ".", regex=False) if decimal == "," else cleaned)
    rest = text.notna() & ~plain
    if rest.any():
        parsed = {u: one(u) for u in text[rest].unique()}
        values[rest] = text[rest].map(parsed).astype("float64")
    bad = (text.notna() & values.isna()).to_numpy()
    if not bad.any():
        return values.set_axis(series.index)
    out = values.astype(object)
    out[bad] = series.to_numpy()[bad]
    return out.set_axis(series.index)


_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:$|[T ])")
_DAYFIRST_FORMATS = [
    f"%d{sep}%m{sep}{year}{time}" for sep in "./-" for year in ("%Y", "%y") for time in ("", " %H:%M", " %H:%M:%S")
]
_MONTHFIRST_FORMATS = [
    f"%m{sep}%d{sep}{year}{time}"
    for sep in "/.-"
    for year in ("%Y", "%y")
    for time in ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")
]


def _to_naive_utc(parsed: pd.Series) -> pd.Series:
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")


def _from_serial(numbers: pd.Series) -> pd.Series:
    """Excel serial day numbers (1900 date system) to timestamps, rounded to the second; NaT outside the range."""
    lo, hi = EXCEL_SERIAL_RANGE
    days = numbers.where(numbers.between(lo, hi + 1, inclusive="left"))
    return (_EXCEL_EPOCH + pd.to_timedelta(days, unit="D")).dt.round("s").astype("datetime64[us]")


def parse_dates(
    series: pd.Series,
    formats: Sequence[str] | None = None,
    *,
    dayfirst: bool = False,
    excel_serial: bool = False,
) -> pd.Series:
    """Parse exported dates, trying each format in turn per value (several formats may share one column).

    Parameters
    ----------
    series : pandas.Series
        Text, numbers (Excel serials) or datetimes (returned as naive UTC ``datetime64[us]``).
    formats : sequence of str, optional
        `strftime` formats (``%d.%m.%Y``, ``%d.%m.%Y %H:%M``...). ISO 8601 values are always accepted.
        None: ISO 8601 and numeric dates like ``30.01.2024`` or ``1/30/2024 2:05 PM``, read day-first or
        month-first as `dayfirst` says (never guessed per value).
    dayfirst : bool
        With ``formats=None``, read ``03/04/2024`` as 3 April (True) or March 4 (False).
    excel_serial : bool
        Read numbers (and texts of five digits) as Excel serial day numbers: ``45321`` is 2024-01-30. Only
        serials from 1950 to 2099 (`EXCEL_SERIAL_RANGE`) are dates; other numbers stay as they are.

    Returns
    -------
    pandas.Series
        ``datetime64[us]`` (naive UTC; values with an offset are converted) when every value parses;
        otherwise an object column where the values that do not parse keep their original text (`validate`
        quarantines those rows as ``unparseable date``). Missing stays missing.

    Examples
    --------
    >>> s = pd.Series(["30.01.2024", "31.01.2024 14:05", "2024-02-01", None])
    >>> parse_dates(s, ["%d.%m.%Y", "%d.%m.%Y %H:%M"]).dt.strftime("%Y-%m-%d %H:%M").tolist()
    ['2024-01-30 00:00', '2024-01-31 14:05', '2024-02-01 00:00', nan]
    >>> parse_dates(pd.Series([45321, 45321.5]), excel_serial=True).astype("str").tolist()
    ['2024-01-30 00:00:00', '2024-01-30 12:00:00']
    >>> parse_dates(pd.Series(["30.01.2024", "soon"]), ["%d.%m.%Y"]).tolist()
    [Timestamp('2024-01-30 00:00:00'), 'soon']
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return _to_naive_utc(series)
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series.astype("datetime64[us]")
    if pd.api.types.is_bool_dtype(series.dtype):
        return series
    index = series.index
    values = series.reset_index(drop=True)
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    if pd.api.types.is_numeric_dtype(values.dtype):
        if not excel_serial:
            return series
        result = _from_serial(values.astype("float64"))
    else:
        objects = values.astype(object)
        stamps = objects.map(lambda v: not isinstance(v, str) and hasattr(v, "isoformat")).astype(bool)
        if stamps.any():  # typed cells among text (Excel): already dates
            result[stamps] = _to_naive_utc(pd.to_datetime(objects[stamps], utc=True))
        text = key_text(values.where(~stamps))
        iso = text.str.match(_ISO).fillna(False).astype(bool)
        if iso.any():
            result[iso] = _to_naive_utc(pd.to_datetime(text[iso], format="ISO8601", errors="coerce", utc=True))
        if excel_serial:
            digits = text.str.fullmatch(r"[0-9]{5}(?:\.[0-9]+)?").fillna(False).astype(bool) & result.isna()
            if digits.any():
                result[digits] = _from_serial(pd.to_numeric(text[digits]))
        todo = list(formats) if formats is not None else (_DAYFIRST_FORMATS if dayfirst else _MONTHFIRST_FORMATS)
        for fmt in todo:
            remaining = text.notna() & result.isna()
            if not remaining.any():
                break
            parsed = pd.to_datetime(text[remaining], format=fmt, errors="coerce", utc=True)
            parsed = parsed[parsed.notna()]
            if len(parsed):
                result[parsed.index] = _to_naive_utc(parsed)
    bad = (~_blank(values) & result.isna()).to_numpy()
    if not bad.any():
        return result.set_axis(index)
    out = result.astype(object)
    out[bad] = values[bad]
    return out.set_axis(index)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_cell_text(value))


def map_values(series: pd.Series, mapping: Mapping[Any, Any]) -> pd.Series:
    """Replace an export's values by canonical ones (stages, flags, categories); others pass unchanged.

    Keys match case- and whitespace-insensitively (``"gewonnen "`` matches ``Gewonnen``); numbers match their
    text (``1`` matches ``1.0`` in a spreadsheet). A key mapped to None makes the value missing.

    Examples
    --------
    >>> stages = {"Gewonnen": "Closed Won", "Verloren": "Closed Lost"}
    >>> map_values(pd.Series(["Gewonnen", "verloren", "Angebot"]), stages).tolist()
    ['Closed Won', 'Closed Lost', 'Angebot']
    >>> map_values(pd.Series(["ja", "nein", None]), {"ja": True, "nein": False}).tolist()
    [True, False, nan]
    """
    lookup = {normalize_name(_scalar_text(k)): v for k, v in mapping.items()}
    text = key_text(series)
    keys = {u: normalize_name(u) for u in text.dropna().unique()}
    matched = text.map(lambda u: lookup.get(keys[u], _UNMATCHED) if isinstance(u, str) else _UNMATCHED)
    hit = matched.map(lambda v: v is not _UNMATCHED).astype(bool).to_numpy()
    if not hit.any():
        return series
    out = series.astype(object).reset_index(drop=True)
    out[hit] = matched[hit].to_numpy()
    return _tidy(out.set_axis(series.index))


_UNMATCHED = object()
