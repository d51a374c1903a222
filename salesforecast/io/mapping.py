"""Mapped imports: a YAML mapping file says how any CRM or spreadsheet export becomes the canonical tables.

A mapping names, per canonical table, its source (a CSV, Excel or Parquet file, or a database table or query),
which source column feeds which canonical column, the export's words for stages and flags, its date and
number formats, constants, and what can be derived. `load_mapping` reads every source, applies all of that,
and hands the tables to `salesforecast.schema.validate`, so every row is accepted or quarantined with its
reason. The file is checked up front: every error names the mapping file and the key path.

A complete mapping (every key is optional unless marked *required*)::

    description: Acme CRM export, weekly   # free text, ignored
    process: process.yml            # the process map: a YAML file (relative to this one), or default (Salesforce's
                                    # standard stages), salesforce, hubspot (HubSpot's default pipeline)
    defaults:                       # options for every source; each source may override them
      encoding: latin-1             # text encoding of CSV files (utf-8 by default; a BOM is always removed)
      delimiter: ";"                # , ; tab | (or comma, semicolon, tab, pipe); sniffed when not given
      skip_rows: 0                  # lines/rows above the header (a report title)
      decimal: ","                  # decimal mark of numbers: "." (default) or ","
      thousands: "."                # thousands separator: ".", ",", "'", " " or none (default)
      dates: ["%d.%m.%Y", "%d.%m.%Y %H:%M"]   # formats tried in turn per value; ISO 8601 always accepted
      dayfirst: false               # without dates formats: 03/04/2024 is 3 April (true) or March 4 (false)
      excel_serial: false           # numbers like 45321 in date columns are Excel serial days (2024-01-30)
      missing: ["-", "n/a"]         # texts that mean "no value"
    databases:                      # read by salesforecast.io.database.read_database
      warehouse: {url_env: SALESFORECAST_DB_URL}   # an environment variable holds the URL (never this file)
      local: {duckdb: crm.duckdb}                  # a DuckDB file, relative to this file
    allow_paths: [../shared]        # folders besides this file's whose files the mapping may read (see below)
    tables:                         # required: at least one table
      opportunities:                # the deals (a mapping of leads alone describes a marketing funnel)
        source: deals.csv           # required: a file, or {file: deals.csv, <any defaults key>, sheet:, format:}
                                    #   or {database: warehouse, table: crm.deals} or {database:, query: "..."}
        columns:                    # canonical column: source column (omit to take canonical headers as they are)
          opportunity_id: Deal ID
          created_at: Created
          stage: Phase
          amount: Value
          close_date: Expected close
          industry: Branche         # any other name is kept as a feature column
          # a value may be an expression of source columns (operands are columns or expressions):
          # lead_source: {first: [Quelle, Kampagne]}         # the first non-missing of several
          # amount: {if: {Phase: Gewonnen}, then: Abschlusswert, else: Wert}   # by condition (value or [values])
          # segment: {lookup: {source: accounts.csv, key: Kunde, on: Name, column: Segment}}  # one looked-up column
          # region: {value: DACH}                             # a constant
        keep: all                   # keep every source column not used above as a feature, under its own name
        drop: [Interne Notiz]       # ...except these (only with keep: all)
        lookups:                    # columns from another source, joined on a key (e.g. owners by user id)
          - source: {file: owners.xlsx, sheet: Owners}
            key: Owner ID           # the column of this table's source
            on: User ID             # the lookup source's column holding the same values (default: key)
            columns: {owner: Name, team: Team}
            values: {U-07: U7}      # the key's values as this table writes them -> as the lookup source does
        values:                     # the export's words, per canonical column (case-insensitive keys)
          stage: {Gewonnen: Closed Won, Verloren: Closed Lost}
        dates: {created_at: ["%d.%m.%Y %H:%M", "%d.%m.%Y"]}   # per-column formats (override defaults)
        numbers: [discount]         # feature columns to parse as numbers (amount always is)
        constants: {region: DACH}   # a value for every row
        derive:                     # values the export does not hold
          is_closed: {from: stage}  # from the process map: is_closed, is_won, forecast_category
          is_won: {from: stage}
          # converted: {present: converted_at}   # true where another column has a value
      stage_history:                # a source like any table, or, for a CRM that keeps no history:
        derive_from_dates:          # date column of the opportunities source: the stage the deal entered then
          created_at: first_open_stage   # the first open stage of the process
          Engaged date: Needs Analysis   # a stage of the process (a source column of the opportunities source)
          close_date: outcome            # the won/lost stage, for closed deals
          # Stage changed: current_stage # the deal's current stage
        # from_snapshots: snapshots/    # or: the history rebuilt from a snapshot store (salesforecast snapshot)
      leads: {source: leads.csv, columns: {...}}
      forecast_submissions: ...
      quotas: {source: {file: owners.xlsx, sheet: Targets, skip_rows: 1}, columns: {...}}
      activities:                   # calls, meetings, emails... of the deals or leads (needs one of those tables)
        source: activities.csv
        columns: {activity_id: Id, occurred_at: Datum, type: Art, opportunity_id: Deal ID, lead_id: Lead ID,
                  owner: Besitzer, subject: Betreff, outcome: Ergebnis, duration: Minuten}
        values:
          type: {Anruf: call, Termin: meeting, Dankesbrief: follow_up}   # else the process map's activity_types

Each table is built in this order: read the source columns the mapping names (see
`salesforecast.io.sources.read_file_source` for encodings, delimiters, headers and duplicated header names; with
``keep: all``, every column), join the lookups (after mapping the key's values), evaluate the column expressions
(their values are then parsed with the options of the table's source), keep the unused columns, apply the value
maps (to the export's own text), parse dates and numbers, add constants, derive (from the mapped stage). Then:

- Values that cannot be parsed (a date in none of the formats, ``1.5`` with ``thousands: "."``) stay as they
  were written, so `validate` quarantines their rows with the reason; nothing silently becomes missing.
- A line that is empty, or has more fields than the header, stays such a row (constants and derived values
  are not added to it), so it is quarantined as ``empty row`` or ``malformed row``.
- ``derive_from_dates`` writes, per accepted opportunity and entry with a date, one change to that stage
  (``outcome``: only for closed deals); rows of one deal are ordered by date, then by entry.
- ``keep: all`` keeps no column under the name of a canonical column (validation would read it as that column);
  a note names such columns when the table gets the column from nowhere else.
- Open deals may have no close date (a CRM that keeps no expected close date); closed deals need one.
- A mapping may describe any of the tables (leads alone, for a marketing funnel); a stage history needs the
  opportunities it belongs to.
- A mapping reads only what it names, and only in its own folder (and below) or the folders under
  ``allow_paths``: a path elsewhere, or a link to one, is refused before anything is read; a source must be a
  regular file; a ``query:`` is one read-only SELECT (`salesforecast.io.database.check_select`), run by DuckDB
  with no access to other files. YAML aliases may add at most `salesforecast.config.MAX_ALIAS_VALUES` values.
- Without any stage history, `CRMData.notes` says which analyses that limits; a derived history is noted as
  minimal (what it holds and lacks). Lookup keys that match nothing and numbers in date columns that look like
  Excel serial days are noted too.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, create_model, field_validator, model_validator

from salesforecast.config import (
    KeyedError,
    Problem,
    Schema,
    UnknownKeys,
    checked,
    closest,
    excerpt,
    given,
    key_path,
    load_model,
    mapping_of,
    names,
    parse_yaml,
    read_yaml,
    suggest,
    text_of,
)
from salesforecast.io.sources import (
    DELIMITER_NAMES,
    EXCEL_SERIAL_RANGE,
    MissingColumnsError,
    is_malformed,
    key_text,
    map_values,
    mark_missing,
    parse_dates,
    parse_number,
    read_file_source,
    source_format,
)
from salesforecast.process import ProcessError, SalesProcess, normalize_name
from salesforecast.schema import TABLES, CRMData, DataFileError, validate

__all__ = [
    "LookupSpec",
    "MappingError",
    "MappingFile",
    "MappingSpec",
    "PROCESS_PRESETS",
    "SourceOptions",
    "SourceSpec",
    "TableMapping",
    "import_mapping",
    "is_mapping_file",
    "load_mapping",
    "mapping_keys",
    "mapping_keys_markdown",
    "read_mapping",
]


class MappingError(DataFileError):
    """A mapping file is invalid or does not fit its sources; the message names the file and the key path.

    Attributes
    ----------
    key : str or None
        The key path in the mapping, e.g. ``tables.opportunities.columns``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        table: str | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message, file=file, table=table, column=column)
        self.key = key


# ---------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class SourceOptions:
    """How to read and parse one source (the mapping's ``defaults`` merged with the source's own keys)."""

    encoding: str = "utf-8"
    delimiter: str | None = None
    skip_rows: int = 0
    sheet: str | None = None
    format: str | None = None
    decimal: str = "."
    thousands: str | None = None
    dates: tuple[str, ...] | None = None
    dayfirst: bool = False
    excel_serial: bool = False
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceSpec:
    """One source: a file (``file``, ``path``) or a database table or query (``database`` and ``table``/``query``)."""

    key: str
    options: SourceOptions
    file: str | None = None
    path: Path | None = None
    database: str | None = None
    table: str | None = None
    query: str | None = None

    @property
    def label(self) -> str:
        """The source as the mapping names it (for messages)."""
        if self.file is not None:
            return self.file
        return f"database {self.database!r} {'table ' + repr(self.table) if self.table else 'query'}"


@dataclass(frozen=True)
class LookupSpec:
    """Columns joined from another source: rows of `source` whose `on` column equals this table's `key`.

    `values` maps the key's values as this table writes them to the lookup source's (applied before matching).
    """

    key_path: str
    source: SourceSpec
    key: str
    on: str
    columns: dict[str, str]
    values: dict[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Expression:
    """A column's value computed from the source (a ``columns:`` entry that is not a plain column name).

    `kind` is one of ``column`` (a source column: `column`), ``value`` (a constant: `value`), ``first`` (the first
    non-missing of `items`), ``if`` (``items[0]`` where the source column `column` holds one of `equals`, else
    ``items[1]`` when given) and ``lookup`` (`lookup`'s one column). `source` is the lookup's unresolved source
    entry until `TableEntry.spec` resolves it.
    """

    kind: str
    key_path: str = ""
    column: str | None = None
    value: Any = None
    items: tuple[Expression, ...] = ()
    equals: tuple[Any, ...] = ()
    lookup: LookupSpec | None = None
    source: Any = None

    def columns(self) -> list[tuple[str, str]]:
        """``(key path, source column)`` for every column of this table's source the expression reads."""
        out = []
        if self.kind in ("column", "if") and self.column is not None:
            out.append((self.key_path, self.column))
        if self.kind == "lookup":
            assert self.lookup is not None
            out.append((f"{self.key_path}.key", self.lookup.key))
        for item in self.items:
            out += item.columns()
        return out

    def resolve(self, defaults: SourceOptions, base_dir: Path) -> Expression:
        """The expression with its lookups' sources resolved (relative to `base_dir`)."""
        items = tuple(item.resolve(defaults, base_dir) for item in self.items)
        lookup = self.lookup
        if self.kind == "lookup" and self.source is not None:
            assert lookup is not None
            lookup = replace(lookup, source=self.source.spec(f"{self.key_path}.source", defaults, base_dir))
        return replace(self, items=items, lookup=lookup, source=None)


@dataclass(frozen=True)
class TableMapping:
    """How one canonical table is built (see the module docstring for each key)."""

    name: str
    source: SourceSpec | None
    columns: dict[str, str] | None = None
    values: dict[str, dict[Any, Any]] = field(default_factory=dict)
    dates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    numbers: tuple[str, ...] = ()
    constants: dict[str, Any] = field(default_factory=dict)
    derive: dict[str, tuple[str, str]] = field(default_factory=dict)
    lookups: tuple[LookupSpec, ...] = ()
    derive_from_dates: dict[str, str] | None = None
    from_snapshots: Path | None = None
    expressions: dict[str, Expression] = field(default_factory=dict)
    keep: bool = False
    drop: tuple[str, ...] = ()

    @property
    def mapped(self) -> list[str]:
        """Canonical columns read from a source (``columns``, their expressions, and lookups)."""
        names = list(self.columns or {}) + [c for c in self.expressions if c not in (self.columns or {})]
        for lk in self.lookups:
            names += list(lk.columns)
        return names

    @property
    def provided(self) -> list[str]:
        """Every canonical column this table gets: mapped, constant or derived."""
        return self.mapped + list(self.constants) + list(self.derive)


@dataclass(frozen=True)
class MappingSpec:
    """A validated mapping file."""

    path: Path
    process: str | Path | None
    defaults: SourceOptions
    databases: dict[str, dict[str, str]]
    tables: dict[str, TableMapping]
    allow_paths: tuple[Path, ...] = ()

    @property
    def base_dir(self) -> Path:
        """The folder relative paths are resolved against: the mapping file's."""
        return self.path.parent


# ---------------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 booleans (``yes``/``no``/``on``/``off`` stay text) and no duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {excerpt(key)} is given twice", key_node.start_mark
                    )
                seen.add(key)
            except TypeError:  # an unhashable key; PyYAML reports it
                pass
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

#: Process maps a mapping may name instead of a YAML file: Salesforce's standard stages or HubSpot's pipeline.
PROCESS_PRESETS: tuple[str, ...] = ("default", "salesforce", "hubspot")

_PARSE_KEYS = ("decimal", "thousands", "dates", "dayfirst", "excel_serial", "missing")
_DEFAULT_KEYS = ("encoding", "delimiter", "skip_rows", *_PARSE_KEYS)
_FILE_KEYS = ("file", "format", "sheet", *_DEFAULT_KEYS)
_DB_KEYS = ("database", "table", "query", *_PARSE_KEYS)
_STAGE_WORDS = ("first_open_stage", "outcome", "current_stage")
_DERIVE_FROM_STAGE = {
    "opportunities": ("is_closed", "is_won", "forecast_category"),
    "stage_history": ("forecast_category",),
}
_STRFTIME = set("aAbBcdfGHIjmMpSuUVwWyYzZ%:")


def _key(prefix: str, *parts: str | int) -> str:
    """A key path: `prefix` (already a path) then each part, quoted when not a plain name.

    ``_key("tables.stage_history", "derive_from_dates", "Engaged date")`` is
    ``tables.stage_history.derive_from_dates."Engaged date"``; integers are list positions (``lookups[0]``).
    """
    tail = key_path(parts)
    return prefix + tail if not prefix or not tail or tail.startswith("[") else f"{prefix}.{tail}"


# ---------------------------------------------------------------------------------------------- the schema
def _encoding(value: Any) -> str:
    enc = text_of("an encoding such as utf-8, latin-1 or cp1252")(value)
    try:
        codecs.lookup(enc)
    except LookupError:
        raise ValueError(f"unknown encoding {excerpt(enc)}; use e.g. utf-8, latin-1 or cp1252") from None
    return enc


def _delimiter(value: Any) -> str:
    d = DELIMITER_NAMES.get(value.strip().lower(), value) if isinstance(value, str) else value
    if not isinstance(d, str) or len(d) != 1 or d in '"\r\n':
        raise ValueError(f"must be one character (or comma, semicolon, tab, pipe), got {excerpt(value)}")
    return d


def _format(value: Any) -> str:
    try:
        source_format("x", text_of()(value))
    except DataFileError:
        raise ValueError(f"unknown format {excerpt(value)}; use csv, tsv, xlsx, xls or parquet") from None
    return str(value)


def _thousands(value: Any) -> str | None:
    if value in (None, "", "none"):
        return None
    if value not in (".", ",", "'", "’", " "):
        raise ValueError(f"must be '.', ',', \"'\", ' ' or none, got {excerpt(value)}")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    """One text or a non-empty list of texts (an error names the position in the list)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"must be a text or a list of texts, got {excerpt(value)}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(text_of()(item))
        except ValueError as exc:
            raise KeyedError(str(exc), *([i] if isinstance(value, list) else [])) from None
    return tuple(out)


def _date_formats(value: Any) -> tuple[str, ...]:
    """Date formats written with strftime codes, tried in turn."""
    formats = _texts(value)
    for i, fmt in enumerate(formats):
        directives = re.findall(r"%(.)", fmt)
        if not directives or any(d not in _STRFTIME for d in directives):
            raise KeyedError(
                f"{excerpt(fmt)} is not a date format; write it with strftime codes such as %d.%m.%Y or %m/%d/%Y %H:%M",
                i,
            )
    return formats


def _missing(value: Any) -> tuple[str, ...]:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return (str(value),)
    if not isinstance(value, list):
        raise ValueError(f"must be a text or a list of texts that mean no value, got {given(value)}")
    for i, v in enumerate(value):
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise KeyedError(f"must be a text that means no value (e.g. n/a), got {given(v)}", i)
    return tuple(str(v) for v in value)


def _single(value: Any) -> Any:
    if isinstance(value, dict | list) or value is None:
        raise ValueError(f"must be a single value, got {excerpt(value)}")
    return value


_TEXT = {"type": "string"}
_TEXTS = {"type": ["string", "array"], "items": {"type": "string"}}
_COLUMN_MAP = {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1}
_COLUMN_EXPRS = {"type": "object", "additionalProperties": {"type": ["string", "object"]}, "minProperties": 1}


class ParseOptions(Schema):
    """How values are parsed: number marks, date formats, texts that mean no value."""

    decimal: Literal[".", ","] = Field(".", description='The decimal mark of numbers: "." (default) or ",".')
    thousands: checked(_thousands, {"enum": [".", ",", "'", "’", " ", "none", None]}) = Field(
        None,
        description='The thousands separator: ".", ",", "\'", " " or none (default); groups must have three digits.',
    )
    dates: checked(_date_formats, _TEXTS) = Field(
        None,
        description="Date formats (strftime codes such as %d.%m.%Y %H:%M) tried in turn per value; ISO 8601 is "
        "always accepted.",
    )
    dayfirst: bool = Field(
        False, description="Without dates formats: 03/04/2024 is 3 April (true) or March 4 (false, default)."
    )
    excel_serial: bool = Field(
        False, description="Numbers like 45321 in date columns are Excel serial days (2024-01-30)."
    )
    missing: checked(_missing, _TEXTS) = Field(
        (), description='Texts that mean "no value" (e.g. ["-", "n/a"]); an empty field always does.'
    )

    def options(self, base: SourceOptions) -> SourceOptions:
        """`base` with the options this section gives (a key written ``none`` or ``null`` counts as given)."""
        names = {f.name for f in fields(SourceOptions)}
        return replace(base, **{k: getattr(self, k) for k in self.model_fields_set if k in names})

    def check_marks(self, base: SourceOptions) -> None:
        """Raise a `KeyedError` when the merged thousands separator is the decimal mark."""
        out = self.options(base)
        if out.thousands is not None and out.thousands == out.decimal:
            raise KeyedError(f"is the decimal mark {out.decimal!r} too; they must differ", "thousands")


class ReadOptions(ParseOptions):
    """How files are read (and values parsed)."""

    encoding: checked(_encoding, _TEXT) = Field(
        "utf-8",
        description="Text encoding of CSV files (utf-8 by default; a BOM is always removed), e.g. latin-1 or cp1252.",
    )
    delimiter: checked(_delimiter, _TEXT) = Field(
        None, description="The CSV delimiter: , ; tab | (or comma, semicolon, tab, pipe); sniffed when not given."
    )
    skip_rows: int = Field(0, ge=0, description="Lines (rows) above the header to skip, e.g. a report title.")


class Defaults(ReadOptions):
    """``defaults:``: options for every source; each source may override them."""

    @model_validator(mode="before")
    @classmethod
    def _keys_in_order(cls, data: Any) -> Any:
        return cls.check_keys(data, _DEFAULT_KEYS)

    @model_validator(mode="after")
    def _marks_differ(self) -> Defaults:
        self.check_marks(SourceOptions())
        return self


class SourceEntry(ReadOptions):
    """A source: a file name, ``{file: ..., <any defaults key>, sheet:, format:}`` or a database table or query."""

    file: checked(text_of("a file name"), _TEXT) = Field(
        None,
        description="A CSV, TSV, Excel or Parquet file, relative to the mapping file (a source may be written as "
        "the file name alone).",
    )
    format: checked(_format, _TEXT) = Field(
        None, description="csv, tsv, xlsx, xls or parquet, when the file name does not tell."
    )
    sheet: checked(text_of("a sheet name"), _TEXT) = Field(None, description="The Excel sheet (default: the first).")
    database: checked(text_of("a database name"), _TEXT) = Field(
        None, description="A name under databases: read from that database instead of a file (with table: or query:)."
    )
    table: checked(text_of(), _TEXT) = Field(
        None,
        description="With database: the table to read (schema.table); only the columns the mapping needs are read.",
    )
    query: checked(text_of(), _TEXT) = Field(
        None,
        description="With database: one SELECT (or WITH ... SELECT) that only reads; with a DuckDB database it may "
        "read files in the mapping file's folder (and allow_paths), e.g. select * from read_csv('deals.csv') (paths "
        "relative to the mapping file).",
    )

    @model_validator(mode="before")
    @classmethod
    def _file_or_database(cls, data: Any) -> Any:
        data = {"file": data} if isinstance(data, str) else data
        if not isinstance(data, Mapping):
            raise ValueError(f"must be a mapping (file: ... or database: ...) or a file name, got {given(data)}")
        if "file" in data and "database" in data:
            raise ValueError("give either file: or database:, not both")
        if "file" in data:
            return cls.check_keys(data, _FILE_KEYS)
        if "database" in data:
            cls.check_keys(data, _DB_KEYS)
            if ("table" in data) == ("query" in data):
                raise ValueError("a database source needs table: (a table name) or query: (a SELECT), one of them")
            return data
        raise ValueError("needs file: (a CSV, Excel or Parquet file) or database: (a name under databases)")

    @model_validator(mode="after")
    def _format_is_known(self) -> SourceEntry:
        if self.file is not None:
            try:
                source_format(self.file, self.format)
            except DataFileError:
                raise KeyedError(
                    f"cannot tell the format of {self.file!r} from its name; add format: csv, xlsx or parquet", "file"
                ) from None
        return self

    def spec(self, key: str, defaults: SourceOptions, base_dir: Path) -> SourceSpec:
        """The source as `load_mapping` reads it; relative file paths are relative to `base_dir`."""
        options = self.options(defaults)
        if self.file is None:
            return SourceSpec(key=key, options=options, database=self.database, table=self.table, query=self.query)
        path = Path(self.file).expanduser()
        path = path if path.is_absolute() else base_dir / path
        return SourceSpec(key=key, options=options, file=self.file, path=path)


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value.strip()):
        raise ValueError(
            "must be the name of an environment variable (e.g. SALESFORECAST_DB_URL) that holds the URL,"
            " not the URL itself (the value is not shown)"
        )
    return value.strip()


class DatabaseEntry(Schema):
    """An entry of ``databases:``: an environment variable holding the URL, or a DuckDB file."""

    url_env: checked(_env_name, _TEXT) = Field(
        None,
        description="The name of the environment variable holding an SQLAlchemy URL (the URL, with its password, is"
        " never written in the mapping).",
    )
    duckdb: checked(text_of("a DuckDB file"), _TEXT) = Field(
        None,
        description='A DuckDB file relative to the mapping file, or ":memory:" to query CSV or Parquet files with '
        "query:.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_url(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "url" in data:
            raise KeyedError(
                "a mapping file must hold no database URL (it may carry a password); put the URL in an"
                " environment variable and name it: url_env: SALESFORECAST_DB_URL",
                "url",
            )
        cls.check_keys(data)
        if isinstance(data, Mapping) and len(data) != 1:
            raise ValueError("give one of url_env: (an environment variable) or duckdb: (a file)")
        return data

    def spec(self) -> dict[str, str]:
        """The entry as `salesforecast.io.database.read_database` takes it."""
        return {k: getattr(self, k) for k in self.model_fields_set}


def _column_map(value: Any) -> dict[str, str]:
    out = mapping_of(
        lambda canon, src: text_of("a source column name")(src),
        " of canonical column to source column (e.g. {amount: Value})",
    )(value)
    if not out:
        raise ValueError("maps no column")
    return out


_EXPRESSION_KEYS = ("first", "if", "lookup", "value")
_LOOKUP_KEYS = ("source", "key", "on", "column", "values")


def _key_values(value: Any) -> dict[Any, Any]:
    """A value map of lookup keys: this table's values to the lookup source's."""
    if not isinstance(value, Mapping):
        raise ValueError(
            f"must be a mapping of this table's key values to the lookup source's (e.g. {{GTXPro: GTX Pro}}),"
            f" got {given(value)}"
        )
    for k, v in value.items():
        if isinstance(v, dict | list):
            raise KeyedError(f"must be a single value, got {excerpt(v)}", str(k))
    return dict(value)


def _expression(value: Any) -> str | Expression:
    """A ``columns:`` value: a source column name, or an expression (see `Expression`); errors name the key below."""
    if not isinstance(value, Mapping):
        return text_of("a source column name or an expression ({first: ...}, {if: ...}, {lookup: ...}, {value: ...})")(
            value
        )
    return _expression_node(value)


def _leaf(value: Any, *keys: str | int) -> Expression:
    """An expression's operand: a source column name or a nested expression."""
    try:
        node = _expression(value)
    except KeyedError as exc:
        raise KeyedError(exc.message, *keys, *exc.keys) from None
    except ValueError as exc:
        raise KeyedError(str(exc), *keys) from None
    return Expression("column", column=node) if isinstance(node, str) else node


def _expression_node(value: Mapping[Any, Any]) -> Expression:
    kinds = [k for k in value if k in _EXPRESSION_KEYS]
    if not kinds:
        hint = suggest(next(iter(value), ""), _EXPRESSION_KEYS)
        raise ValueError(
            f"an expression is one of {{first: [...]}}, {{if: {{column: value}}, then: ..., else: ...}},"
            f" {{lookup: {{source:, key:, column:}}}} or {{value: ...}}; got keys {names(value)}{hint}"
        )
    kind = kinds[0]
    allowed = ("if", "then", "else") if kind == "if" else (kind,)
    unknown = [str(k) for k in value if k not in allowed]
    if unknown:
        raise UnknownKeys(unknown, list(allowed), "first")
    if kind == "value":
        return Expression("value", value=_single(value["value"]))
    if kind == "first":
        items = value["first"]
        if not isinstance(items, list) or len(items) < 2:
            raise KeyedError(f"must be a list of two or more columns or expressions, got {given(items)}", "first")
        return Expression("first", items=tuple(_leaf(item, "first", i) for i, item in enumerate(items)))
    if kind == "if":
        cond = value["if"]
        if not isinstance(cond, Mapping) or len(cond) != 1:
            raise KeyedError(
                f"must be one source column and the value(s) it must hold, e.g. {{Deal stage: Won}}, got {given(cond)}",
                "if",
            )
        column, wanted = next(iter(cond.items()))
        column = text_of("a source column name")(column)
        wanted = wanted if isinstance(wanted, list) else [wanted]
        for i, w in enumerate(wanted):
            if isinstance(w, dict | list) or w is None:
                raise KeyedError(
                    f"must be a single value, got {excerpt(w)}", "if", column, *([i] if len(wanted) > 1 else [])
                )
        if "then" not in value:
            raise ValueError("needs then: (the value where the condition holds) and may have else:")
        items = [_leaf(value["then"], "then")]
        if "else" in value:
            items.append(_leaf(value["else"], "else"))
        return Expression("if", column=column, equals=tuple(wanted), items=tuple(items))
    spec = value["lookup"]
    if not isinstance(spec, Mapping):
        raise KeyedError(
            f"must be a mapping with source:, key:, column: (and on:, values:), got {given(spec)}", "lookup"
        )
    unknown = [str(k) for k in spec if k not in _LOOKUP_KEYS]
    if unknown:
        raise KeyedError(UnknownKeys(unknown, list(_LOOKUP_KEYS), "first").message, "lookup")
    for needed in ("source", "key", "column"):
        if needed not in spec:
            raise KeyedError(f"needs {needed}: (allowed keys: {', '.join(_LOOKUP_KEYS)})", "lookup")
    source = load_model(SourceEntry, spec["source"])
    if isinstance(source, Problem):
        raise KeyedError(source.message, "lookup", "source", *source.loc)
    texts = {}
    for name in ("key", "column", "on"):
        if name in spec:
            try:
                texts[name] = text_of("a column name")(spec[name])
            except ValueError as exc:
                raise KeyedError(str(exc), "lookup", name) from None
    try:
        key_values = _key_values(spec.get("values", {}))
    except KeyedError as exc:
        raise KeyedError(exc.message, "lookup", "values", *exc.keys) from None
    except ValueError as exc:
        raise KeyedError(str(exc), "lookup", "values") from None
    lookup = LookupSpec(
        "",
        None,  # resolved by Expression.resolve
        texts["key"],
        texts.get("on", texts["key"]),
        {"": texts["column"]},
        key_values,
    )
    return Expression("lookup", lookup=lookup, source=source)


def _with_paths(expr: Expression, path: str) -> Expression:
    """The expression with each node's key path set (for messages)."""
    if expr.kind == "first":
        items = tuple(_with_paths(item, _key(path, "first", i)) for i, item in enumerate(expr.items))
    elif expr.kind == "if":
        items = tuple(_with_paths(item, _key(path, w)) for item, w in zip(expr.items, ("then", "else"), strict=False))
    else:
        items = expr.items
    lookup = expr.lookup
    if lookup is not None:
        lookup = replace(lookup, key_path=_key(path, "lookup"))
    key_path = _key(path, "if") if expr.kind == "if" else _key(path, "lookup") if expr.kind == "lookup" else path
    return replace(expr, key_path=key_path, items=items, lookup=lookup)


def _lookup_nodes(expr: Expression, loc: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], Expression]]:
    """The lookup nodes of an expression, each with the key path of its source."""
    if expr.kind == "lookup":
        return [((*loc, "lookup", "source"), expr)]
    if expr.kind == "first":
        return [n for i, item in enumerate(expr.items) for n in _lookup_nodes(item, (*loc, "first", i))]
    if expr.kind == "if":
        pairs = zip(expr.items, ("then", "else"), strict=False)
        return [n for item, w in pairs for n in _lookup_nodes(item, (*loc, w))]
    return []


def _column_exprs(value: Any) -> dict[str, str | Expression]:
    out = mapping_of(
        lambda canon, src: _expression(src),
        " of canonical column to source column or expression (e.g. {amount: Value})",
    )(value)
    if not out:
        raise ValueError("maps no column")
    return out


def _value_maps(value: Any) -> dict[str, dict[Any, Any]]:
    def value_map(column: str, vmap: Any) -> dict[Any, Any]:
        if not isinstance(vmap, dict):
            raise ValueError(
                f"must be a mapping of {column}'s source values to canonical values (e.g. {{Gewonnen: Closed Won}}),"
                f" got {given(vmap)}"
            )
        for k, v in vmap.items():
            if isinstance(v, dict | list):
                raise KeyedError(f"must be a single value, got {excerpt(v)}", str(k))
        return vmap

    return mapping_of(value_map)(value)


def _derive_rules(value: Any) -> dict[str, tuple[str, str]]:
    def rule(target: str, raw: Any) -> tuple[str, str]:
        if not isinstance(raw, Mapping):
            raise ValueError(f"must be a mapping like {{from: stage}} or {{present: column}}, got {given(raw)}")
        unknown = [str(k) for k in raw if k not in ("from", "present")]
        if unknown:
            raise UnknownKeys(unknown, ["from", "present"], "first")
        if len(raw) != 1:
            raise ValueError("give one of from: stage or present: <column>")
        how, column = next(iter(raw.items()))
        try:
            return how, text_of("a column name")(column)
        except ValueError as exc:
            raise KeyedError(str(exc), how) from None

    return mapping_of(rule)(value)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list, got {excerpt(value)}")
    return value


class LookupEntry(Schema):
    """An entry of ``lookups:``: columns joined from another source on a key."""

    source: SourceEntry = Field(description="The lookup's source: the same keys as a table's source (required).")
    key: checked(text_of("a source column name"), _TEXT) = Field(
        description="The column of this table's source whose values are looked up (required)."
    )
    on: checked(text_of("a column name of the lookup source"), _TEXT) = Field(
        None,
        description="The lookup source's column holding the same values (default: the key's name); one row per value.",
    )
    columns: checked(_column_map, _COLUMN_MAP) = Field(
        description="Canonical (or feature) column: the lookup source column it takes (required)."
    )
    values: checked(_key_values, {"type": "object"}) = Field(
        default_factory=dict,
        description="The key's values as this table writes them mapped to the lookup source's (e.g. {GTXPro: GTX "
        "Pro}), applied before matching.",
    )

    @model_validator(mode="before")
    @classmethod
    def _needs(cls, data: Any) -> Any:
        cls.check_keys(data)
        for needed in ("source", "key", "columns"):
            if isinstance(data, Mapping) and needed not in data:
                raise ValueError(f"needs {needed}: (allowed keys: {', '.join(cls.allowed_keys())})")
        return data


class TableEntry(Schema):
    """How one canonical table is built (see the module docstring); `table` is its name."""

    table: ClassVar[str] = ""

    source: SourceEntry = Field(
        None,
        description="Where the table is read from: a file name, {file: ..., <any defaults key>, sheet:, format:},"
        " or {database: NAME, table: ...} / {database: NAME, query: ...} (required, except for a derived history).",
    )
    columns: checked(_column_exprs, _COLUMN_EXPRS) = Field(
        None,
        description="Canonical column: a source column, or an expression: {first: [A, B, ...]} (the first non-"
        "missing), {if: {Column: value or [values]}, then: A, else: B}, {lookup: {source:, key:, "
        "column:, on:, values:}} (one column of another source), {value: constant}; operands are source"
        " columns or expressions. Any other name is kept as a feature column. Omitted: canonical "
        "headers are taken as they are.",
    )
    keep: Literal["all"] = Field(
        None,
        description="all: keep every source column the mapping does not use as a feature column under its own name "
        "(leads and opportunities features), instead of listing them.",
    )
    drop: checked(lambda v: _texts(_list(v)), {"type": "array", "items": _TEXT}) = Field(
        (), description="With keep: all, source columns not to keep (ids, columns filled only after the outcome)."
    )
    lookups: list[LookupEntry] = Field(
        default_factory=list,
        description="Columns joined from other sources on a key (e.g. owner names and teams by user id).",
    )
    values: checked(_value_maps, {"type": "object", "additionalProperties": {"type": "object"}}) = Field(
        default_factory=dict,
        description="The export's words per canonical column, e.g. {stage: {Gewonnen: Closed Won}} (keys matched"
        " ignoring case and spacing; a value mapped to null becomes missing).",
    )
    dates: checked(mapping_of(lambda c, v: _date_formats(v)), {"type": "object", "additionalProperties": _TEXTS}) = (
        Field(
            default_factory=dict,
            description="Date formats per column, overriding the source's dates (a feature column listed here is"
            " parsed as a date).",
        )
    )
    numbers: checked(lambda v: _texts(_list(v)) if v != [] else (), {"type": "array", "items": _TEXT}) = Field(
        (),
        description="Feature columns to parse as numbers with the source's decimal and thousands marks (amount "
        "always is).",
    )
    constants: checked(mapping_of(lambda c, v: _single(v)), {"type": "object"}) = Field(
        default_factory=dict, description="A value for every row, per column (e.g. {region: DACH})."
    )
    derive: checked(_derive_rules, {"type": "object"}) = Field(
        default_factory=dict,
        description="Values the export does not hold: {from: stage} (is_closed, is_won, forecast_category from the "
        "process map) or {present: column} (true where that column has a value).",
    )

    @model_validator(mode="before")
    @classmethod
    def _file_name_is_source(cls, data: Any) -> Any:
        return {"source": data} if isinstance(data, str) else data

    def whole(self) -> bool:
        """True when the table is built without a source of its own (stage_history only)."""
        return False

    def mapped(self) -> list[str]:
        """Canonical columns read from a source (``columns`` and lookups)."""
        return [*(self.columns or {}), *(c for lk in self.lookups for c in lk.columns)]

    @model_validator(mode="after")
    def _columns_fit(self) -> TableEntry:
        if self.whole():
            return self
        name, spec = self.table, TABLES[self.table]
        if self.source is None:
            raise ValueError("needs source: (a file or a database table)")
        mapped = list(self.columns or {})
        for i, lk in enumerate(self.lookups):
            for canon in lk.columns:
                if canon in mapped:
                    raise KeyedError(f"{canon!r} is mapped twice (in columns and a lookup)", "lookups", i, "columns")
                mapped.append(canon)
        identity = self.columns is None
        if self.drop and self.keep is None:
            raise KeyedError("drop: leaves columns out of keep: all; add keep: all or remove drop", "drop")

        def known(column: str, *keys: str) -> None:
            if self.keep is not None and spec.column(column) is None:
                return  # a kept source column (checked against the source when it is read)
            if not identity and column not in mapped:
                raise KeyedError(
                    f"{column!r} is not a mapped column of {name} (mapped: {names(mapped)}){suggest(column, mapped)}",
                    *keys,
                )

        def of_kind(column: str, kind: str, *keys: str) -> None:
            c = spec.column(column)
            if c is not None and c.kind != kind:
                raise KeyedError(
                    f"{column!r} is a {c.kind} column of {name}, not a {kind.replace('datetime', 'date')}", *keys
                )

        for col in self.values:
            known(col, "values")
        for col in self.dates:
            known(col, "dates")
            of_kind(col, "datetime", "dates", col)
        for col in self.numbers:
            known(col, "numbers")
            of_kind(col, "number", "numbers")
        for col in self.constants:
            if col in mapped:
                raise KeyedError(f"{col!r} is mapped from the source too; keep one", "constants", col)
        for target, (how, column) in self.derive.items():
            if target in mapped or target in self.constants:
                raise KeyedError(f"{target!r} is mapped or constant too; keep one", "derive", target)
            if how == "from":
                targets = _DERIVE_FROM_STAGE.get(name, ())
                if column != "stage" or target not in targets:
                    raise KeyedError(
                        f"from: stage derives {', '.join(targets) or 'nothing'} in {name}"
                        f" (from the process map); got {target!r} from {column!r}",
                        "derive",
                        target,
                    )
            if not identity and column not in mapped and column not in self.constants:
                raise KeyedError(f"{column!r} is not a mapped column of {name}", "derive", target, how)
        provided = [*mapped, *self.constants, *self.derive]
        missing = [c for c in spec.required if c not in provided]
        if not identity and missing:
            extras = [c for c in provided if spec.column(c) is None]
            close = closest(missing[0], extras)
            hints = f" ({close!r} may be a misspelling of it)" if close is not None else ""
            how = ""
            if set(missing) & {"is_closed", "is_won"}:
                how = "; flags can come from the stage: derive: {is_closed: {from: stage}, is_won: {from: stage}}"
            raise KeyedError(
                f"no column for the required {names(missing)}{hints} (required: {names(spec.required)}){how}", "columns"
            )
        return self

    def spec(self, defaults: SourceOptions, base_dir: Path) -> TableMapping:
        """The table as `load_mapping` builds it."""
        key = _key("tables", self.table)
        lookups = tuple(
            LookupSpec(
                _key(key, "lookups", i),
                lk.source.spec(_key(key, "lookups", i, "source"), defaults, base_dir),
                lk.key,
                lk.key if lk.on is None else lk.on,
                lk.columns,
                lk.values,
            )
            for i, lk in enumerate(self.lookups)
        )
        columns = expressions = None
        if self.columns is not None:
            columns = {c: v for c, v in self.columns.items() if isinstance(v, str)}
            expressions = {
                c: _with_paths(v, _key(key, "columns", c)).resolve(defaults, base_dir)
                for c, v in self.columns.items()
                if isinstance(v, Expression)
            }
        return TableMapping(
            name=self.table,
            source=self.source.spec(_key(key, "source"), defaults, base_dir),
            columns=columns,
            values=self.values,
            dates=self.dates,
            numbers=self.numbers,
            constants=self.constants,
            derive=self.derive,
            lookups=lookups,
            expressions=expressions or {},
            keep=self.keep is not None,
            drop=tuple(self.drop),
        )


def _stage_per_column(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping, got {given(value)}")
    if not value:
        raise ValueError("needs at least one date column")
    out = {}
    for column, stage in value.items():
        col = text_of()(column)  # a column that is no text is reported at derive_from_dates itself
        try:
            out[col] = text_of(f"a stage name or one of {_STAGE_WORDS}")(stage)
        except ValueError as exc:
            raise KeyedError(str(exc), col) from None
    return out


class HistoryTableEntry(TableEntry):
    """``stage_history:``: a source like any table, or derived from dates of the opportunities, or from snapshots."""

    derive_from_dates: checked(_stage_per_column, {"type": "object", "additionalProperties": _TEXT}) = Field(
        None,
        description="stage_history only: a minimal history from date columns of the opportunities source, each date"
        " column: the stage entered then (a stage name, first_open_stage, outcome for closed deals, or "
        "current_stage).",
    )
    from_snapshots: checked(text_of("a snapshot store path"), _TEXT) = Field(
        None, description="stage_history only: the history rebuilt from a snapshot store (salesforecast snapshot)."
    )

    @model_validator(mode="before")
    @classmethod
    def _whole_table_alone(cls, data: Any) -> Any:
        for whole, what in (("from_snapshots", "a snapshot store"), ("derive_from_dates", "the opportunities source")):
            if isinstance(data, Mapping) and whole in data:
                others = [k for k in data if k != whole]
                if others:
                    raise ValueError(f"{whole} builds the whole table from {what}; remove {others[0]!r}")
        return data

    def whole(self) -> bool:
        """True for ``derive_from_dates`` and ``from_snapshots``."""
        return self.derive_from_dates is not None or self.from_snapshots is not None

    def spec(self, defaults: SourceOptions, base_dir: Path) -> TableMapping:
        """The table as `load_mapping` builds it."""
        if self.from_snapshots is not None:
            return TableMapping(name=self.table, source=None, from_snapshots=Path(self.from_snapshots))
        if self.derive_from_dates is not None:
            return TableMapping(name=self.table, source=None, derive_from_dates=self.derive_from_dates)
        return super().spec(defaults, base_dir)


def _table_entry(name: str) -> type[TableEntry]:
    base = HistoryTableEntry if name == "stage_history" else TableEntry
    title = "".join(w.title() for w in name.split("_"))
    doc = f"``tables.{name}``: how the {name} table is built."
    return type(f"{title}Entry", (base,), {"__module__": __name__, "__doc__": doc, "table": name})


class _TablesBase(Schema):
    @model_validator(mode="before")
    @classmethod
    def _canonical_tables(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for name in data:
                if name not in TABLES:
                    hint = suggest(name, TABLES)
                    raise KeyedError(f"unknown table{hint}; canonical tables: {', '.join(TABLES)}", str(name))
            if not data:
                raise ValueError(f"describes no table; canonical tables: {', '.join(TABLES)}")
            if "stage_history" in data and "opportunities" not in data:
                raise KeyedError(
                    "a stage history is the changes of deals: describe opportunities too (or remove stage_history)",
                    "stage_history",
                )
            if "activities" in data and "opportunities" not in data and "leads" not in data:
                raise KeyedError(
                    "activities belong to deals or leads: describe opportunities or leads too (or remove activities)",
                    "activities",
                )
        return data


Tables = create_model(
    "Tables",
    __base__=_TablesBase,
    __doc__="``tables:``: how each canonical table is built; at least one (leads alone for a marketing funnel).",
    __module__=__name__,
    **{name: (_table_entry(name), None) for name in TABLES},
)


def _process(value: Any) -> str:
    p = text_of("a process YAML file or 'default'")(value)
    if p.lower() not in PROCESS_PRESETS and not p.lower().endswith((".yml", ".yaml")):
        raise ValueError(f"{excerpt(p)} is neither a process YAML file (.yml) nor one of {', '.join(PROCESS_PRESETS)}")
    return p


class MappingFile(Schema):
    """A mapping file (see the module docstring); `model_json_schema()` describes it for editors."""

    process: checked(lambda v: None if v is None else _process(v), _TEXT) = Field(
        None,
        description="The process map: a YAML file relative to the mapping, or default (Salesforce's standard "
        "stages), salesforce, hubspot.",
    )
    defaults: Defaults = Field(
        default_factory=Defaults,
        description="Options for every source (encoding, delimiter, skip_rows, decimal, thousands, dates, dayfirst,"
        " excel_serial, missing); each source may override them.",
    )
    databases: dict[str, DatabaseEntry] = Field(
        default_factory=dict, description="Databases sources may read, by name: {url_env: VARIABLE} or {duckdb: FILE}."
    )
    tables: Tables = Field(
        None,
        description="How each canonical table is built: opportunities, stage_history, leads, forecast_submissions, "
        "quotas, activities (at least one; leads alone for a marketing funnel).",
    )
    allow_paths: checked(lambda v: _texts(v), _TEXTS) = Field(
        (),
        description="Folders outside the mapping file's own whose files sources, DuckDB databases and queries may "
        "read (relative to the mapping file, or absolute). Without it, a mapping reads files only in its own "
        "folder and the folders below it.",
    )
    description: Any = Field(None, description="Free text about the mapping, ignored.")

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, data: Any) -> Any:
        if data is None:
            raise ValueError("the mapping file is empty; it needs tables:")
        if not isinstance(data, Mapping):
            raise ValueError(f"a mapping file is a YAML mapping with tables:, got {type(data).__name__}")
        return data

    @field_validator("databases", mode="before")
    @classmethod
    def _no_databases(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _sources_fit(self) -> MappingFile:
        if self.tables is None:
            raise KeyedError(
                "missing; a mapping needs tables: with at least one table (opportunities, leads...)", "tables"
            )
        defaults = self.defaults.options(SourceOptions())
        for loc, src in self.sources():
            try:
                src.check_marks(defaults)
            except KeyedError as exc:
                raise KeyedError(exc.message, *loc, *exc.keys) from None
            if src.database is not None and src.database not in self.databases:
                defined = f"defined: {names(self.databases)}" if self.databases else "no databases: section defines any"
                raise KeyedError(f"{src.database!r} is not defined under databases ({defined})", *loc, "database")
        return self

    def sources(self) -> list[tuple[tuple[str | int, ...], SourceEntry]]:
        """Every source with its key path: each table's, then its lookups'."""
        out = []
        for name in TABLES:
            table = getattr(self.tables, name)
            if table is not None and table.source is not None:
                out.append((("tables", name, "source"), table.source))
            for i, lk in enumerate(table.lookups if table is not None else ()):
                out.append((("tables", name, "lookups", i, "source"), lk.source))
            for canon, value in ((table.columns or {}) if table is not None else {}).items():
                if isinstance(value, Expression):
                    out += [(loc, e.source) for loc, e in _lookup_nodes(value, ("tables", name, "columns", canon))]
        return out

    def spec(self, path: Path) -> MappingSpec:
        """The checked mapping, with paths relative to the mapping file made absolute."""
        process: str | Path | None = None
        if self.process is not None:
            process = (
                self.process.lower() if self.process.lower() in PROCESS_PRESETS else Path(self.process).expanduser()
            )
            if isinstance(process, Path) and not process.is_absolute():
                process = path.parent / process
        defaults = self.defaults.options(SourceOptions())
        tables = {
            name: table.spec(defaults, path.parent)
            for name in TABLES
            if (table := getattr(self.tables, name)) is not None
        }
        databases = {name: db.spec() for name, db in self.databases.items()}
        allow = tuple(
            p if p.is_absolute() else path.parent / p for p in (Path(a).expanduser() for a in self.allow_paths)
        )
        return MappingSpec(
            path=path, process=process, defaults=defaults, databases=databases, tables=tables, allow_paths=allow
        )


# ---------------------------------------------------------------------------------------------- the keys
def _nested(annotation: Any) -> tuple[type[Schema] | None, str]:
    """The section model a field holds and how its keys continue the path: ``.``, ``.NAME.`` or ``[].``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Schema):
        return annotation, "."
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], Schema):
        return args[0], "[]."
    if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], Schema):
        return args[1], ".NAME."
    return None, ""


def mapping_keys() -> list[tuple[str, str]]:
    """Every key a mapping file may hold and what it is, from the schema that checks the file.

    The keys and descriptions are those of `MappingFile` and its sections (the same that ``salesforecast schema
    mapping`` prints). Each section is listed once: a lookup's source takes the keys of a table's source, a
    source the keys of ``defaults``, every table the keys of ``tables.TABLE`` (``stage_history`` two more).

    Returns
    -------
    list of (key, description)
        ``TABLE`` and ``NAME`` stand for a canonical table and a name you choose; ``[]`` for each list item.

    Examples
    --------
    >>> keys = dict(mapping_keys())
    >>> "tables.TABLE.keep" in keys, "tables.stage_history.derive_from_dates" in keys
    (True, True)
    """
    rows: list[tuple[str, str]] = []
    listed: set[type] = set()

    def walk(model: type[Schema], prefix: str, skip: set[str]) -> None:
        listed.add(model)
        for name, info in model.model_fields.items():
            if name in skip:
                continue
            key = prefix + name
            rows.append((key, " ".join((info.description or "").split())))
            if info.annotation is Tables:
                base = set(TableEntry.model_fields)
                walk(TableEntry, f"{key}.TABLE.", set())
                walk(HistoryTableEntry, f"{key}.stage_history.", base)
                continue
            section, tail = _nested(info.annotation)
            if section is not None and section not in listed:
                inherited = set(ReadOptions.model_fields) if section is SourceEntry else set()
                walk(section, key + tail, inherited)

    walk(MappingFile, "", set())
    return rows


def mapping_keys_markdown() -> str:
    """`mapping_keys` as the Markdown table the README shows (one row per key)."""
    lines = ["| key | what it holds |", "|---|---|"]
    for key, text in mapping_keys():
        lines.append(f"| `{key}` | {text.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- public API
def read_mapping(path: str | Path) -> MappingSpec:
    r"""Read and check a mapping file (without reading its sources).

    Parameters
    ----------
    path : path
        The mapping YAML file (see the module docstring for its keys).

    Returns
    -------
    MappingSpec

    Raises
    ------
    MappingError
        Not YAML, an unknown key, no table under ``tables``, a required column with no source, a value
        map that is not a mapping, an undefined database...: the message names the file and the key path.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "crm.yml"
    >>> _ = path.write_text("tables:\n  opportunities:\n    source: deals.csv\n    colums: {}\n")
    >>> try:
    ...     read_mapping(path)
    ... except MappingError as exc:
    ...     print(exc.key, "|", str(exc).split("; ")[0].split(": ")[-1])
    tables.opportunities | unknown key 'colums' (did you mean 'columns'?)
    """
    path = Path(path).expanduser()
    raw, problem = read_yaml(path, "mapping file", _Loader)
    model = load_model(MappingFile, raw) if problem is None else Problem((), "", problem)
    if isinstance(model, Problem):
        table = model.loc[1] if len(model.loc) > 1 and model.loc[0] == "tables" and model.loc[1] in TABLES else None
        raise MappingError(f"{path}: {model}", file=str(path), key=model.key or None, table=table)
    spec = model.spec(path)
    _confine(spec)
    return spec


def _confine(spec: MappingSpec) -> None:
    """Refuse a file the mapping names outside its folder and its ``allow_paths`` (before anything is read).

    Paths are resolved (``..`` and symbolic links followed), so neither ``../../etc/shadow`` nor a link in the
    mapping's folder to a file elsewhere gets through.
    """
    for i, folder in enumerate(spec.allow_paths):
        if not folder.is_dir():
            key = _key("allow_paths", i) if len(spec.allow_paths) > 1 else "allow_paths"
            raise MappingError(
                f"{spec.path}: {key}: {excerpt(str(folder), 200)} is not a folder", file=str(spec.path), key=key
            )
    roots = [spec.base_dir.resolve(), *(f.resolve() for f in spec.allow_paths)]
    named: list[tuple[str, Path, str | None]] = []
    if isinstance(spec.process, Path):
        named.append(("process", spec.process, None))
    for name, db in spec.databases.items():
        duck = db.get("duckdb")
        if duck is not None and duck.strip() != ":memory:":
            named.append((_key("databases", name, "duckdb"), spec.base_dir / Path(duck).expanduser(), None))
    for src in _all_sources(spec):
        if src.path is not None:
            table = src.key.split(".")[1] if src.key.startswith("tables.") else None
            named.append((src.key, src.path, table))
    history = spec.tables.get("stage_history")
    if history is not None and history.from_snapshots is not None:
        store = history.from_snapshots
        named.append(("tables.stage_history.from_snapshots", spec.base_dir / store.expanduser(), "stage_history"))
    for key, path, table in named:
        real = path.resolve()
        if not any(real == root or real.is_relative_to(root) for root in roots):
            plain = Path(os.path.normpath(path.absolute()))
            shown = excerpt(str(path), 200) + (f" (a link to {excerpt(str(real), 200)})" if real != plain else "")
            raise MappingError(
                f"{spec.path}: {key}: {shown} is outside the mapping file's folder; a mapping reads files only in its"
                " own folder and below, or in folders it lists under allow_paths (add the file's folder there if"
                " this mapping may read it)",
                file=str(spec.path),
                key=key,
                table=table,
            )


def is_mapping_file(path: str | Path) -> bool:
    """True when `path` is a YAML file whose top level has ``tables:`` (a mapping, not a process map).

    Examples
    --------
    >>> is_mapping_file("no-such-file.yml")
    False
    """
    path = Path(path)
    if path.suffix.lower() not in (".yml", ".yaml") or not path.is_file():
        return False
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"), _Loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and "tables" in raw


def load_mapping(path: str | Path, process: SalesProcess | str | Path | None = None) -> CRMData:
    """Load validated CRM data through a mapping file.

    Reads every source, renames its columns, joins lookups, applies value maps, parses dates and numbers,
    adds constants and derived columns (and a derived stage history), then calls `validate`.

    Parameters
    ----------
    path : path
        The mapping YAML file.
    process : SalesProcess, path or preset name, optional
        Overrides the mapping's ``process:`` (a preset is one of `PROCESS_PRESETS`); the default (None or
        ``"default"``, see `SalesProcess.resolve`) is the mapping's own ``process:``, else Salesforce's stages.

    Returns
    -------
    CRMData
        ``sources`` names each table's file or database table; ``notes`` says what the import could not fix
        (no or a minimal stage history, lookup keys not found, numbers that look like Excel dates).

    Raises
    ------
    MappingError
        The mapping is invalid or does not fit its sources (a mapped column the source lacks, an unset
        environment variable, a stage name the process does not know...).
    DataFileError
        A whole source cannot be used (see `read_file_source`); `MappingError` is one.
    """
    return _load(read_mapping(path), process)


def import_mapping(
    path: str | Path, out_dir: str | Path, process: SalesProcess | str | Path | None = None, fmt: str = "csv"
) -> CRMData:
    """Load through a mapping and write the accepted tables as a canonical folder.

    The folder gets the tables (`CRMData.to_folder`, with ``process.yml`` and the import's notes) and, when
    rows were quarantined, ``quarantine.csv``. It is written whole and swapped in by one rename: a killed import
    leaves the earlier folder, and no file of an earlier import (a table the mapping no longer has) is left.

    Parameters
    ----------
    path : path
        The mapping YAML file.
    out_dir : path
        The canonical folder to write (created when missing).
    process : SalesProcess, path or preset name, optional
        Overrides the mapping's ``process:``, as in `load_mapping`.
    fmt : {"csv", "parquet"}
        The table file format.

    Returns
    -------
    CRMData
        The loaded data, as `load_mapping` returns it.

    Raises
    ------
    MappingError
        As `load_mapping`; also when `out_dir` holds one of the mapping's own source files under a canonical
        table name (it would be overwritten).
    DataFileError
        When `out_dir` cannot be written or holds files an import does not write (`CRMData.to_folder`).
    """
    spec = read_mapping(path)
    data = _load(spec, process)
    out = Path(out_dir).expanduser()
    sources = {s.path.resolve() for s in _all_sources(spec) if s.path is not None}
    stale = [out / f"{name}{suffix}" for name in TABLES for suffix in (".csv", ".csv.gz", ".parquet")]
    for file in stale:
        if file.exists() and file.resolve() in sources:
            raise MappingError(
                f"{spec.path}: {file} is a source of this mapping and would be overwritten; write to another folder",
                file=str(spec.path),
            )
    data.to_folder(out, fmt)
    return data


def _describe(src: SourceSpec) -> str:
    """A source for `CRMData.sources`: the file path (and sheet), or the database table or query."""
    if src.path is None:
        return src.label
    return f"{src.path} (sheet {src.options.sheet})" if src.options.sheet else str(src.path)


def _all_sources(spec: MappingSpec) -> list[SourceSpec]:
    out = []
    for tm in spec.tables.values():
        if tm.source is not None:
            out.append(tm.source)
        out += [lk.source for lk in tm.lookups]
        for expr in tm.expressions.values():
            out += [e.lookup.source for _, e in _lookup_nodes(expr, ()) if e.lookup is not None]
    return out


# ---------------------------------------------------------------------------------------------- loading
def _named_process(process: SalesProcess | str | Path | None) -> SalesProcess:
    """A process map: a `SalesProcess`, a YAML path, or a preset name (`PROCESS_PRESETS`); None is the default."""
    if isinstance(process, str) and process.strip().lower() in PROCESS_PRESETS:
        if process.strip().lower() == "hubspot":
            from salesforecast.io.hubspot import hubspot_process

            return hubspot_process()
        return SalesProcess.default()
    return SalesProcess.resolve(process)


def _resolve_process(spec: MappingSpec, process: SalesProcess | str | Path | None) -> SalesProcess:
    if not SalesProcess.is_default(process):  # the default is the mapping's own process map
        return _named_process(process)
    try:
        return _named_process(spec.process)
    except ProcessError as exc:
        raise MappingError(f"{spec.path}: process: {exc}", file=str(spec.path), key="process") from None


def _load(spec: MappingSpec, process: SalesProcess | str | Path | None) -> CRMData:
    proc = _resolve_process(spec, process)
    history = spec.tables.get("stage_history")
    derived = history.derive_from_dates if history is not None else None
    stages = _history_stages(spec, derived, proc) if derived else {}
    notes: list[str] = []
    raw: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    side = None
    for name, tm in spec.tables.items():
        if tm.source is None:
            continue
        side_columns = _side_columns(tm, derived) if name == "opportunities" and derived else []
        raw[name], extra = _build_table(spec, tm, proc, side_columns, notes)
        sources[name] = _describe(tm.source)
        if name == "opportunities":
            side = extra
    if history is not None and history.from_snapshots is not None:
        raw["stage_history"], note = _snapshot_history(spec, history.from_snapshots, raw.get("opportunities"))
        sources["stage_history"] = f"snapshot store {history.from_snapshots}"
        notes.insert(0, note)
    elif derived:
        raw["stage_history"], note = _derive_history(spec, derived, stages, raw["opportunities"], side, proc, sources)
        sources["stage_history"] = f"derived from dates of {sources['opportunities']} ({', '.join(derived)})"
        notes.insert(0, note)
        amount = spec.tables["opportunities"].expressions.get("amount")
        if amount is not None and amount.kind == "if":  # e.g. the close value when won, else a list price
            notes.insert(
                1,
                f"The amount is a value by condition on {amount.column!r} ({amount.key_path}), and the derived history"
                " records no past amounts: at a past date a deal shows today's amount, so one later won already"
                " shows the value it was won at. Its outcome can show through its amount, and forecasts that weigh"
                " the past pipeline by amount can look better than they could have been then.",
            )
    elif "opportunities" not in raw:
        notes.insert(0, _NO_OPPORTUNITIES.format(mapping=spec.path.name))
    elif "stage_history" not in raw:
        notes.insert(0, _NO_HISTORY.format(mapping=spec.path.name))
    data = validate(raw, proc, sources)
    return replace(data, notes=tuple(data.notes) + tuple(notes))


def _snapshot_history(spec: MappingSpec, store: Path, opportunities: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """stage_history rebuilt from a snapshot store (`salesforecast.io.snapshot_store`), and the note saying so."""
    from salesforecast.io.snapshot_store import history_from_snapshots, read_snapshots

    path = store if store.is_absolute() else spec.path.parent / store
    if not path.exists():
        raise MappingError(
            f"{spec.path}: tables.stage_history.from_snapshots: no snapshot store at {path} (take snapshots with "
            "`salesforecast snapshot MAPPING.yml --store PATH`)",
            file=str(spec.path),
            key="tables.stage_history.from_snapshots",
        )
    snaps = read_snapshots(path)
    history = history_from_snapshots(snaps, opportunities)
    dates = pd.DatetimeIndex(snaps["as_of"].unique()).sort_values() if len(snaps) else pd.DatetimeIndex([])
    span = f"{len(dates)} snapshots from {dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}" if len(dates) else "no snapshot"
    note = (
        f"Stage history rebuilt from a snapshot store ({span}): each change is dated at the first snapshot that "
        "saw it, so up to one snapshot interval late; stages a deal passed through between two snapshots are "
        "missing, and nothing before the first snapshot is known (deals are seen from then on in their stage then)."
    )
    return history, note


_NO_OPPORTUNITIES = (
    "No opportunities: {mapping} describes no opportunities table, so the data holds leads (and what else it"
    " maps) but no deals. The data-quality and lead-scoring reports work on leads; stage conversion, forecast"
    " accuracy and the pipeline review need deals and say so."
)

_NO_HISTORY = (
    "No stage history: {mapping} maps no stage_history table and derives none. Stage conversion rates learn"
    " nothing (no deal is ever seen moving between stages); snapshots and backtests see every open deal only in"
    " its current stage, as if it had been there since creation, and a closed deal in an unknown stage until its"
    " close date; time in stage, skipped stages, regressions and stalls cannot be measured. If the export has"
    " stage dates, derive a minimal history with stage_history: derive_from_dates; if not, take weekly snapshots"
    " (salesforecast snapshot) and map stage_history: {{from_snapshots: PATH}}."
)


def _read(
    spec: MappingSpec,
    src: SourceSpec,
    columns: list[str] | None,
    table: str,
    refs: Mapping[str, list[tuple[str, str]]],
) -> pd.DataFrame:
    """Read a source; missing columns become a `MappingError` naming the keys that map them."""
    o = src.options
    try:
        if src.database is not None:
            return _read_database(spec, src, columns, table)
        assert src.path is not None
        return read_file_source(
            src.path,
            format=o.format,
            delimiter=o.delimiter,
            encoding=o.encoding,
            sheet=o.sheet,
            skip_rows=o.skip_rows,
            columns=columns,
            missing=o.missing,
            table=table,
        )
    except MissingColumnsError as exc:
        raise _missing_columns(spec, src, exc.missing, exc.available, table, refs) from None
    except MappingError:
        raise
    except DataFileError as exc:
        key = refs[exc.column][0][0] if exc.column in refs else src.key
        raise MappingError(f"{spec.path}: {key}: {exc}", file=str(spec.path), key=key, table=table) from None


def _missing_columns(
    spec: MappingSpec,
    src: SourceSpec,
    missing: list[str],
    available: list[str],
    table: str,
    refs: Mapping[str, list[tuple[str, str]]],
) -> MappingError:
    key, phrases = None, []
    for m in missing:
        for where, phrase in refs.get(m, [(src.key, repr(m))]):
            key = key or where
            phrases.append(phrase + suggest(m, available))
    key = key or src.key
    return MappingError(
        f"{spec.path}: {key}: {' and '.join(phrases)}, which {src.label} does not have; columns are: "
        f"{names(available)}",
        file=str(spec.path),
        key=key,
        table=table,
        column=missing[0],
    )


def _read_database(spec: MappingSpec, src: SourceSpec, columns: list[str] | None, table: str) -> pd.DataFrame:
    assert src.database is not None
    db = spec.databases[src.database]
    var = db.get("url_env")
    if var is not None and not os.environ.get(var):
        key = _key("databases", src.database, "url_env")
        raise MappingError(
            f"{spec.path}: {key}: the environment variable {var} is not set; set it to the database URL"
            f" (e.g. postgresql+psycopg://user@host/db) before loading ({src.key} reads from it)",
            file=str(spec.path),
            key=key,
            table=table,
        )
    from salesforecast.io.database import read_database  # lazily: a file-only mapping needs no database driver

    # read_database returns the requested columns under the requested names (matched ignoring case, as
    # PostgreSQL folds unquoted names) and names a missing one itself
    frame = read_database(
        dict(db),
        table=src.table,
        query=src.query,
        columns=columns,
        base_dir=spec.base_dir,
        name=src.database,
        allowed_dirs=spec.allow_paths,
    )
    return mark_missing(frame.reset_index(drop=True), src.options.missing)


def _side_columns(tm: TableMapping, derived: Mapping[str, str]) -> list[str]:
    """derive_from_dates columns that are source columns of the opportunities source (not canonical ones)."""
    canonical = set(tm.provided) if tm.columns is not None else {c.name for c in TABLES["opportunities"].columns}
    return [c for c in derived if c not in canonical]


def _canonical_name(header: str, names: set[str]) -> str | None:
    key = re.sub(r"[\s\-]+", "_", str(header).strip()).casefold()
    return key if key in names else None


def _build_table(
    spec: MappingSpec, tm: TableMapping, proc: SalesProcess, side_columns: list[str], notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """One raw canonical table from its source, and (for opportunities) the parsed extra date columns."""
    assert tm.source is not None
    src, opts, tspec = tm.source, tm.source.options, TABLES[tm.name]
    key = _key("tables", tm.name)
    if tm.columns is None:
        frame = _read(spec, src, None, tm.name, {})
        names = {c.name for c in tspec.columns}
        drop_refs = {c: [(_key(key, "drop"), f"drop names {c!r}")] for c in tm.drop}
        dropped = set(_match_headers(spec, src, frame, list(tm.drop), tm.name, drop_refs).values())
        colmap: dict[str, str] = {}
        for header in frame.columns:
            if str(header) in dropped:
                continue
            canon = _canonical_name(header, names) or str(header)
            colmap.setdefault(canon, str(header))
        missing_side = [c for c in side_columns if c not in frame.columns]
        if missing_side:
            raise _missing_columns(
                spec, src, missing_side, list(map(str, frame.columns)), tm.name, _side_refs(missing_side)
            )
    else:
        colmap = dict(tm.columns)
        refs: dict[str, list[tuple[str, str]]] = {}
        for canon, scol in colmap.items():
            refs.setdefault(scol, []).append((_key(key, "columns"), f"{canon!r} maps to {scol!r}"))
        for lk in tm.lookups:
            refs.setdefault(lk.key, []).append((f"{lk.key_path}.key", f"the lookup key {lk.key!r}"))
        for col, entries in _side_refs(side_columns).items():
            refs.setdefault(col, []).extend(entries)
        expr_columns = []
        for canon, expr in tm.expressions.items():
            for where, col in expr.columns():
                refs.setdefault(col, []).append((where, f"{canon!r} reads {col!r}"))
                expr_columns.append(col)
        needed = list(dict.fromkeys([*colmap.values(), *(lk.key for lk in tm.lookups), *side_columns, *expr_columns]))
        if tm.keep:  # every column, the mapped ones under the names the mapping gives them
            frame = _read(spec, src, None, tm.name, refs)
            found = _match_headers(spec, src, frame, needed, tm.name, refs)
            drop_refs = {c: [(_key(key, "drop"), f"drop names {c!r}")] for c in tm.drop}
            dropped = set(_match_headers(spec, src, frame, list(tm.drop), tm.name, drop_refs).values())
            used = set(found.values()) | dropped
            kept = [str(h) for h in frame.columns if str(h) not in used]
            frame = pd.DataFrame({**{c: frame[h] for c, h in found.items()}, **{h: frame[h] for h in kept}})
        else:
            frame = _read(spec, src, needed, tm.name, refs)
    frame = frame.reset_index(drop=True)
    n = len(frame)
    malformed = is_malformed(frame.iloc[:, 0]).to_numpy() if len(frame.columns) else np.zeros(n, dtype=bool)
    blank = np.ones(n, dtype=bool)
    for c in frame.columns:
        blank &= _blank(frame[c]).to_numpy()
    out: dict[str, pd.Series] = {canon: frame[scol] for canon, scol in colmap.items()}
    options = dict.fromkeys(out, opts)
    for lk in tm.lookups:
        joined = _lookup(spec, tm, lk, frame, notes)
        out.update(joined)
        options.update(dict.fromkeys(joined, lk.source.options))
    for canon, expr in tm.expressions.items():  # parsed with the options of the table's source
        out[canon] = _evaluate(spec, tm, canon, expr, frame, notes)
        options[canon] = opts
    if tm.keep and tm.columns is not None:
        _keep_columns(spec, tm, frame, needed, out, options, notes)
    elif tm.columns is None:  # canonical headers as they are: a value map for a column the source lacks is a mistake
        _listed_columns_exist(spec, tm, out)
    for canon, vmap in tm.values.items():
        if canon in out:
            out[canon] = map_values(out[canon], vmap)
    for canon in list(out):
        c = tspec.column(canon)
        kind = c.kind if c is not None else "datetime" if canon in tm.dates else "number" if canon in tm.numbers else ""
        o = options[canon]
        if kind == "datetime":
            out[canon] = parse_dates(
                out[canon], tm.dates.get(canon, o.dates), dayfirst=o.dayfirst, excel_serial=o.excel_serial
            )
            if not o.excel_serial:
                _serial_hint(out[canon], f"{tm.name}.{canon}", o, notes)
        elif kind == "number":
            out[canon] = parse_number(out[canon], decimal=o.decimal, thousands=o.thousands)
    for canon, value in tm.constants.items():
        out[canon] = pd.Series([value] * n, dtype=object).mask(blank)
    for target, (how, column) in tm.derive.items():
        out[target] = _derived(out.get(column), how, target, proc, n).mask(blank)
    order = [c.name for c in tspec.columns if c.name in out] + [c for c in out if tspec.column(c) is None]
    result = pd.DataFrame({c: out[c].reset_index(drop=True) for c in order}, index=pd.RangeIndex(n))
    if malformed.any():  # the marked line goes to the first column validate reads; nothing else of it is used
        first = next((c for c in result.columns if _is_textual(tspec, c)), result.columns[0])
        result = result[[first, *[c for c in result.columns if c != first]]].astype(object)
        marks = frame.iloc[:, 0].to_numpy()[malformed]
        result.loc[malformed, :] = np.nan
        result.loc[malformed, first] = marks
        result[first] = result[first].astype("str")
    side = None
    if side_columns:
        side = pd.DataFrame(
            {
                c: parse_dates(frame[c], opts.dates, dayfirst=opts.dayfirst, excel_serial=opts.excel_serial)
                for c in side_columns
            },
            index=pd.RangeIndex(n),
        )
    return result, side


def _match_headers(
    spec: MappingSpec,
    src: SourceSpec,
    frame: pd.DataFrame,
    wanted: Sequence[str],
    table: str,
    refs: Mapping[str, list[tuple[str, str]]],
) -> dict[str, str]:
    """Each wanted column's header in `frame`: the same name, or the one header equal to it ignoring case and spacing.

    Raises the `MappingError` of `_missing_columns` (naming the keys in `refs`) for a column the source lacks.
    """
    headers = [str(h) for h in frame.columns]
    folded: dict[str, list[str]] = {}
    for h in headers:
        folded.setdefault(normalize_name(h), []).append(h)
    out, absent = {}, []
    for name in dict.fromkeys(wanted):
        if name.strip() in headers:
            out[name] = name.strip()
        elif len(folded.get(normalize_name(name), [])) == 1:
            out[name] = folded[normalize_name(name)][0]
        else:
            absent.append(name)
    if absent:
        raise _missing_columns(spec, src, absent, headers, table, refs)
    return out


def _keep_columns(
    spec: MappingSpec,
    tm: TableMapping,
    frame: pd.DataFrame,
    used: Sequence[str],
    out: dict[str, pd.Series],
    options: dict[str, SourceOptions],
    notes: list[str],
) -> None:
    """``keep: all``: every source column the mapping does not use becomes a feature column under its own name.

    A column named like a canonical column of the table is not kept (validation would take it for that column):
    when the table does not get that column otherwise, a note says so.
    """
    tspec, key = TABLES[tm.name], _key("tables", tm.name)
    canonical = {c.name for c in tspec.columns}
    skipped = []
    for header in frame.columns:
        if header in used or header in out:
            continue
        canon = _canonical_name(header, canonical)
        if canon is not None:
            if canon not in out:
                skipped.append(header)
            continue
        out[header] = frame[header]
        options[header] = tm.source.options if tm.source is not None else SourceOptions()
    if skipped:
        notes.append(
            f"{tm.name}: keep: all leaves out {names(skipped)}: a kept column may not take the name of a canonical"
            f" column; map it under {key}.columns if it is that column."
        )
    _listed_columns_exist(spec, tm, out)


def _listed_columns_exist(spec: MappingSpec, tm: TableMapping, out: Mapping[str, Any]) -> None:
    """Refuse a column under ``values``, ``dates`` or ``numbers`` that the table does not get (it would be ignored)."""
    key = _key("tables", tm.name)
    for section in ("values", "dates", "numbers"):
        for column in getattr(tm, section):
            if column not in out:
                where = _key(key, section, column) if section != "numbers" else _key(key, section)
                raise MappingError(
                    f"{spec.path}: {where}: {excerpt(column)} is neither a mapped column nor a column of"
                    f" {tm.source.label if tm.source else tm.name}{suggest(column, list(out))} (columns: {names(out)})",
                    file=str(spec.path),
                    key=where,
                    table=tm.name,
                    column=column,
                )


def _evaluate(
    spec: MappingSpec, tm: TableMapping, canon: str, expr: Expression, frame: pd.DataFrame, notes: list[str]
) -> pd.Series:
    """The raw values of a column expression (see `Expression`), one per row of `frame` (an object Series)."""
    n = len(frame)
    if expr.kind == "column":
        assert expr.column is not None
        return frame[expr.column].reset_index(drop=True).astype(object)
    if expr.kind == "value":
        return pd.Series([expr.value] * n, dtype=object)
    if expr.kind == "lookup":
        assert expr.lookup is not None
        lk = replace(expr.lookup, columns={canon: next(iter(expr.lookup.columns.values()))})
        return _lookup(spec, tm, lk, frame, notes)[canon].reset_index(drop=True).astype(object)
    if expr.kind == "first":
        result = _evaluate(spec, tm, canon, expr.items[0], frame, notes)
        for item in expr.items[1:]:
            missing = _blank(result)
            if not missing.any():
                break
            result = result.where(~missing, _evaluate(spec, tm, canon, item, frame, notes))
        return result
    assert expr.kind == "if" and expr.column is not None
    wanted = {normalize_name(v) for v in key_text(pd.Series(list(expr.equals), dtype=object)).dropna()}
    text = key_text(frame[expr.column]).reset_index(drop=True)
    holds = text.map(lambda v: isinstance(v, str) and normalize_name(v) in wanted).astype(bool)
    then = _evaluate(spec, tm, canon, expr.items[0], frame, notes)
    if len(expr.items) > 1:
        other = _evaluate(spec, tm, canon, expr.items[1], frame, notes)
    else:
        other = pd.Series([np.nan] * n, dtype=object)
    return then.where(holds, other)


def _side_refs(columns: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    return {c: [(_key("tables", "stage_history", "derive_from_dates"), repr(c))] for c in columns}


def _is_textual(tspec: Any, column: str) -> bool:
    c = tspec.column(column)
    return c is not None and c.kind in ("id", "text")


def _blank(s: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s.isna()
    return s.isna() | (s.astype("str").str.strip() == "")


def _derived(source: pd.Series | None, how: str, target: str, proc: SalesProcess, n: int) -> pd.Series:
    """A derived column: flags or forecast category from the stage, or presence of another column."""
    if source is None:
        return pd.Series([None] * n, dtype=object)
    source = source.reset_index(drop=True)
    present = ~_blank(source)
    if how == "present":
        return present.astype("boolean")
    stage = proc.map_stages(key_text(source))
    if target == "forecast_category":
        return stage.map(proc.forecast_category.to_dict()).where(present)
    # an unknown stage gets False: its row is quarantined as "unknown stage", not as a missing flag
    stages = proc.won_stages if target == "is_won" else proc.closed_stages
    return stage.isin(stages).astype("boolean").where(present)


def _serial_hint(parsed: pd.Series, where: str, o: SourceOptions, notes: list[str]) -> None:
    """A note when values that failed to parse as dates look like Excel serial day numbers."""
    if parsed.dtype != object:
        if pd.api.types.is_numeric_dtype(parsed.dtype):
            numbers = parsed.dropna()
        else:
            return
    else:
        failed = parsed[parsed.map(lambda v: not isinstance(v, pd.Timestamp) and not pd.isna(v)).astype(bool)]
        numbers = pd.to_numeric(key_text(failed), errors="coerce").dropna()
    lo, hi = EXCEL_SERIAL_RANGE
    serial = numbers[(numbers >= lo) & (numbers <= hi)]
    if len(serial):
        notes.append(
            f"{where}: {len(serial)} value(s) look like Excel serial day numbers (e.g. {key_text(serial).iloc[0]});"
            " they are quarantined as unparseable dates. If they are dates, set excel_serial: true for this source."
        )


def _lookup(
    spec: MappingSpec, tm: TableMapping, lk: LookupSpec, frame: pd.DataFrame, notes: list[str]
) -> dict[str, pd.Series]:
    refs: dict[str, list[tuple[str, str]]] = {lk.on: [(f"{lk.key_path}.on", f"the lookup column {lk.on!r}")]}
    for canon, col in lk.columns.items():
        refs.setdefault(col, []).append((f"{lk.key_path}.columns", f"{canon!r} maps to {col!r}"))
    other = _read(spec, lk.source, list(dict.fromkeys([lk.on, *lk.columns.values()])), tm.name, refs)
    keys = key_text(other[lk.on]).reset_index(drop=True)
    repeated = keys[keys.notna() & keys.duplicated(keep=False)].unique()
    if len(repeated):
        raise MappingError(
            f"{spec.path}: {lk.key_path}.on: {lk.on!r} repeats values in {lk.source.label} ({names(repeated[:5])});"
            " a lookup needs one row per key",
            file=str(spec.path),
            key=f"{lk.key_path}.on",
            table=tm.name,
        )
    position = {k: i for i, k in enumerate(keys) if isinstance(k, str)}
    wanted = key_text(map_values(frame[lk.key], lk.values) if lk.values else frame[lk.key]).reset_index(drop=True)
    pos = wanted.map(lambda k: position.get(k, -1) if isinstance(k, str) else -1).to_numpy(dtype=np.int64)
    found = pos >= 0
    out = {}
    for canon, col in lk.columns.items():
        values = other[col].reset_index(drop=True)
        if len(values) == 0:
            out[canon] = pd.Series([np.nan] * len(pos), dtype=object)
        else:
            out[canon] = values.take(np.maximum(pos, 0)).reset_index(drop=True).where(found)
    unmatched = wanted.notna().to_numpy() & ~found
    presence = {column for how, column in tm.derive.values() if how == "present"}
    if unmatched.any() and not set(lk.columns) <= presence:  # absent = no (e.g. a file of the converted leads)
        examples = names(pd.unique(wanted[unmatched])[:3])
        notes.append(
            f"{tm.name}: {int(unmatched.sum())} row(s) have a {lk.key!r} not found in {lk.on!r} of"
            f" {lk.source.label} (e.g. {examples}); their {', '.join(lk.columns)} are missing."
        )
    return out


def _history_stages(spec: MappingSpec, derived: Mapping[str, str], proc: SalesProcess) -> dict[str, str]:
    """Each derive_from_dates entry's stage: a canonical stage name or one of the words."""
    out = {}
    opportunities = spec.tables["opportunities"]
    for column, stage in derived.items():
        c = TABLES["opportunities"].column(column)
        if c is not None and c.kind != "datetime" and column in opportunities.provided:
            key = _key("tables", "stage_history", "derive_from_dates")
            raise MappingError(
                f"{spec.path}: {key}: {column!r} is the {c.kind} column of opportunities, not a date",
                file=str(spec.path),
                key=key,
                table="stage_history",
            )
        if stage in _STAGE_WORDS:
            out[column] = stage if stage != "first_open_stage" else proc.open_stages[0]
            continue
        canonical = proc.canonical_stage(stage)
        if canonical is None:
            key = _key("tables", "stage_history", "derive_from_dates", column)
            raise MappingError(
                f"{spec.path}: {key}: {stage!r} is not a stage of the process map ({names(proc.stage_names)})"
                f" nor one of {', '.join(_STAGE_WORDS)}",
                file=str(spec.path),
                key=key,
                table="stage_history",
            )
        out[column] = canonical
    return out


def _derive_history(
    spec: MappingSpec,
    derived: Mapping[str, str],
    stages: Mapping[str, str],
    opportunities: pd.DataFrame,
    side: pd.DataFrame | None,
    proc: SalesProcess,
    sources: Mapping[str, str],
) -> tuple[pd.DataFrame, str]:
    """A minimal stage history from date columns of the accepted opportunities, and the note describing it."""
    first = validate({"opportunities": opportunities}, proc, {"opportunities": sources["opportunities"]})
    keep = np.ones(len(opportunities), dtype=bool)
    keep[first.quarantine["row"].to_numpy(dtype=np.int64) - 1] = False
    opps = first.opportunities
    side = (
        side.iloc[np.flatnonzero(keep)].reset_index(drop=True) if side is not None else pd.DataFrame(index=opps.index)
    )
    parts = []
    counts = []
    for entry, (column, what) in enumerate(derived.items()):
        dates = side[column] if column in side.columns else opps[column]
        present = ~_blank(dates)
        if what == "outcome":
            rows, stage = present & opps["is_closed"], opps["stage"]
        elif what == "current_stage":
            rows, stage = present, opps["stage"]
        else:
            rows, stage = present, pd.Series(stages[column], index=opps.index, dtype="str")
        rows = rows.to_numpy(dtype=bool)
        counts.append(int(rows.sum()))
        parts.append(
            pd.DataFrame(
                {
                    "opportunity_id": opps["opportunity_id"][rows],
                    "changed_at": dates[rows],
                    "stage": stage[rows],
                    "_opp": np.flatnonzero(rows),
                    "_entry": entry,
                }
            )
        )
    hist = pd.concat(parts, ignore_index=True)
    hist["_at"] = pd.to_datetime(
        hist["changed_at"].map(lambda v: v if isinstance(v, pd.Timestamp) else pd.NaT), errors="coerce"
    )
    hist = hist.sort_values(["_opp", "_at", "_entry"], kind="stable", na_position="last")
    # two open stages dated the same moment (created_at and an engage date that are one column, or equal): the
    # deal entered the later one then; a row for each would be a visit of no time to the earlier stage
    open_row = ~hist["stage"].isin(proc.closed_stages).to_numpy(dtype=bool)
    same = (hist["_opp"].to_numpy() == np.roll(hist["_opp"].to_numpy(), -1)) & (
        hist["_at"].to_numpy() == np.roll(hist["_at"].to_numpy(), -1)
    )
    same[-1:] = False
    collapsed = same & open_row & np.roll(open_row, -1)
    n_collapsed = int(hist["_opp"].to_numpy()[collapsed].size)
    hist = hist[~collapsed]
    dated = set(zip(hist["opportunity_id"], hist["stage"], strict=True))
    open_opps = opps[~opps["is_closed"]]
    undated = sum((i, s) not in dated for i, s in zip(open_opps["opportunity_id"], open_opps["stage"], strict=True))
    words = {"outcome": "the won/lost stage of closed deals", "current_stage": "the current stage"}
    described = "; ".join(
        f"{column} -> {words.get(what, stages[column])} ({count} rows)"
        for (column, what), count in zip(derived.items(), counts, strict=True)
    )
    note = (
        f"The stage history is minimal: derived from dates of {sources['opportunities']} ({described}). It holds"
        " only these dated stages: no other stage changes, and no changes of amount, close date or forecast"
        " category (at a past date an open deal's close date is therefore unknown, and its amount is today's); stages"
        " between the dated ones look skipped, and time in"
        " stage is measured only between these dates."
    )
    if n_collapsed:
        note += (
            f" {n_collapsed} deals had two of these stages dated the same moment: they enter the later one then"
            " (no visit of no time to the earlier one)."
        )
    if undated:
        note += (
            f" {undated} of {len(open_opps)} open deals are now in a stage that none of these dates records:"
            " snapshots keep them in their last dated stage (map a 'stage changed' date to current_stage if the"
            " export has one)."
        )
    return hist[["opportunity_id", "changed_at", "stage"]].reset_index(drop=True), note
