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
    tables:                         # required
      opportunities:                # required: the one table every mapping describes
        source: deals.csv           # required: a file, or {file: deals.csv, <any defaults key>, sheet:, format:}
                                    #   or {database: warehouse, table: crm.deals} or {database:, query: "..."}
        columns:                    # canonical column: source column (omit to take canonical headers as they are)
          opportunity_id: Deal ID
          created_at: Created
          stage: Phase
          amount: Value
          close_date: Expected close
          industry: Branche         # any other name is kept as a feature column
        lookups:                    # columns from another source, joined on a key (e.g. owners by user id)
          - source: {file: owners.xlsx, sheet: Owners}
            key: Owner ID           # the column of this table's source
            on: User ID             # the lookup source's column holding the same values (default: key)
            columns: {owner: Name, team: Team}
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

Each table is built in this order: read the source columns the mapping names (see
`salesforecast.io.sources.read_file_source` for encodings, delimiters, headers and duplicated header names),
join the lookups, apply the value maps (to the export's own text), parse dates and numbers, add constants,
derive (from the mapped stage). Then:

- Values that cannot be parsed (a date in none of the formats, ``1.5`` with ``thousands: "."``) stay as they
  were written, so `validate` quarantines their rows with the reason; nothing silently becomes missing.
- A line that is empty, or has more fields than the header, stays such a row (constants and derived values
  are not added to it), so it is quarantined as ``empty row`` or ``malformed row``.
- ``derive_from_dates`` writes, per accepted opportunity and entry with a date, one change to that stage
  (``outcome``: only for closed deals); rows of one deal are ordered by date, then by entry.
- Without any stage history, `CRMData.notes` says which analyses that limits; a derived history is noted as
  minimal (what it holds and lacks). Lookup keys that match nothing and numbers in date columns that look like
  Excel serial days are noted too.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from salesforecast.io.sources import (
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
from salesforecast.process import ProcessError, SalesProcess
from salesforecast.schema import TABLES, CRMData, DataFileError, validate

__all__ = [
    "LookupSpec",
    "MappingError",
    "MappingSpec",
    "PROCESS_PRESETS",
    "SourceOptions",
    "SourceSpec",
    "TableMapping",
    "import_mapping",
    "is_mapping_file",
    "load_mapping",
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
    """Columns joined from another source: rows of `source` whose `on` column equals this table's `key`."""

    key_path: str
    source: SourceSpec
    key: str
    on: str
    columns: dict[str, str]


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

    @property
    def mapped(self) -> list[str]:
        """Canonical columns read from a source (``columns`` and lookups)."""
        names = list(self.columns or {})
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
                        None, None, f"the key {key!r} is given twice", key_node.start_mark
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

_TOP_KEYS = ("process", "defaults", "databases", "tables", "description")
_PARSE_KEYS = ("decimal", "thousands", "dates", "dayfirst", "excel_serial", "missing")
_DEFAULT_KEYS = ("encoding", "delimiter", "skip_rows", *_PARSE_KEYS)
_FILE_KEYS = ("file", "format", "sheet", *_DEFAULT_KEYS)
_DB_KEYS = ("database", "table", "query", *_PARSE_KEYS)
_TABLE_KEYS = ("source", "columns", "lookups", "values", "dates", "numbers", "constants", "derive")
_LOOKUP_KEYS = ("source", "key", "on", "columns")
_DATABASE_KEYS = ("url_env", "duckdb")
_STAGE_WORDS = ("first_open_stage", "outcome", "current_stage")
_DERIVE_FROM_STAGE = {
    "opportunities": ("is_closed", "is_won", "forecast_category"),
    "stage_history": ("forecast_category",),
}
_DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
_STRFTIME = set("aAbBcdfGHIjmMpSuUVwWyYzZ%:")


def _key(prefix: str, *parts: str | int) -> str:
    """A key path: `prefix` (already a path) then each part, quoted when not a plain name.

    ``_key("tables.stage_history", "derive_from_dates", "Engaged date")`` is
    ``tables.stage_history.derive_from_dates."Engaged date"``; integers are list positions (``lookups[0]``).
    """
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) else '"' + part.replace('"', '\\"') + '"'
        out += ("." if out else "") + text
    return out


def _names(values: Sequence[Any]) -> str:
    return ", ".join(repr(str(v)) for v in values)


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    """Builds a `MappingSpec` from the parsed YAML, raising a `MappingError` naming the key path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base_dir = path.parent

    def error(self, key: str, message: str, table: str | None = None) -> MappingError:
        return MappingError(f"{self.path}: {key}: {message}", file=str(self.path), key=key, table=table)

    def mapping(self, value: Any, key: str, allowed: Sequence[str] | None = None, what: str = "") -> dict[Any, Any]:
        if not isinstance(value, dict):
            shown = "nothing" if value is None else f"{type(value).__name__} {value!r}"
            raise self.error(key, f"must be a mapping{what}, got {shown}")
        if allowed is not None:
            unknown = [k for k in value if k not in allowed]
            if unknown:
                hint = _suggest(str(unknown[0]), allowed)
                raise self.error(key, f"unknown key {str(unknown[0])!r}{hint}; allowed keys: {', '.join(allowed)}")
        return value

    def text(self, value: Any, key: str, what: str = "a text") -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float) or not str(value).strip():
            raise self.error(key, f"must be {what}, got {value!r}")
        return str(value).strip() if isinstance(value, str) else str(value)

    def texts(self, value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"must be a text or a list of texts, got {value!r}")
        return tuple(self.text(v, f"{key}[{i}]") for i, v in enumerate(value))

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    # ------------------------------------------------------------------ options and sources
    def options(self, raw: Mapping[str, Any], base: SourceOptions, key: str) -> SourceOptions:
        changes: dict[str, Any] = {}
        for name, value in raw.items():
            k = _key(key, name)
            if name == "encoding":
                enc = self.text(value, k, "an encoding such as utf-8, latin-1 or cp1252")
                try:
                    codecs.lookup(enc)
                except LookupError:
                    raise self.error(k, f"unknown encoding {enc!r}; use e.g. utf-8, latin-1 or cp1252") from None
                changes[name] = enc
            elif name == "delimiter":
                d = _DELIMITER_NAMES.get(str(value).strip().lower(), value) if isinstance(value, str) else value
                if not isinstance(d, str) or len(d) != 1 or d in '"\r\n':
                    raise self.error(k, f"must be one character (or comma, semicolon, tab, pipe), got {value!r}")
                changes[name] = d
            elif name == "skip_rows":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise self.error(k, f"must be a whole number >= 0, got {value!r}")
                changes[name] = value
            elif name == "sheet":
                changes[name] = self.text(value, k, "a sheet name")
            elif name == "format":
                try:
                    source_format("x", self.text(value, k))
                except DataFileError:
                    raise self.error(k, f"unknown format {value!r}; use csv, tsv, xlsx, xls or parquet") from None
                changes[name] = str(value)
            elif name == "decimal":
                if value not in (".", ","):
                    raise self.error(k, f"must be '.' or ',', got {value!r}")
                changes[name] = value
            elif name == "thousands":
                if value in (None, "", "none"):
                    value = None
                elif value not in (".", ",", "'", "’", " "):
                    raise self.error(k, f"must be '.', ',', \"'\", ' ' or none, got {value!r}")
                changes[name] = value
            elif name == "dates":
                changes[name] = self.formats(value, k)
            elif name in ("dayfirst", "excel_serial"):
                changes[name] = self.flag(value, k)
            elif name == "missing":
                changes[name] = tuple(str(v) for v in ([value] if isinstance(value, str | int | float) else value))
        out = replace(base, **changes)
        if out.thousands is not None and out.thousands == out.decimal:
            raise self.error(_key(key, "thousands"), f"is the decimal mark {out.decimal!r} too; they must differ")
        return out

    def formats(self, value: Any, key: str) -> tuple[str, ...]:
        formats = self.texts(value, key)
        for i, fmt in enumerate(formats):
            directives = re.findall(r"%(.)", fmt)
            bad = [d for d in directives if d not in _STRFTIME]
            if not directives or bad:
                raise self.error(
                    f"{key}[{i}]",
                    f"{fmt!r} is not a date format; write it with strftime codes such as %d.%m.%Y or %m/%d/%Y %H:%M",
                )
        return formats

    def source(self, raw: Any, key: str, defaults: SourceOptions, databases: Mapping[str, Any]) -> SourceSpec:
        if isinstance(raw, str):
            raw = {"file": raw}
        raw = self.mapping(raw, key, what=" (file: ... or database: ...) or a file name")
        if "file" in raw and "database" in raw:
            raise self.error(key, "give either file: or database:, not both")
        if "file" in raw:
            self.mapping(raw, key, _FILE_KEYS)
            file = self.text(raw["file"], _key(key, "file"), "a file name")
            path = Path(file).expanduser()
            path = path if path.is_absolute() else self.base_dir / path
            options = self.options({k: v for k, v in raw.items() if k != "file"}, defaults, key)
            try:
                source_format(file, options.format)
            except DataFileError:
                raise self.error(
                    _key(key, "file"),
                    f"cannot tell the format of {file!r} from its name; add format: csv, xlsx or parquet",
                ) from None
            return SourceSpec(key=key, options=options, file=file, path=path)
        if "database" in raw:
            self.mapping(raw, key, _DB_KEYS)
            name = self.text(raw["database"], _key(key, "database"), "a database name")
            if name not in databases:
                defined = f"defined: {_names(databases)}" if databases else "no databases: section defines any"
                raise self.error(_key(key, "database"), f"{name!r} is not defined under databases ({defined})")
            if ("table" in raw) == ("query" in raw):
                raise self.error(key, "a database source needs table: (a table name) or query: (a SELECT), one of them")
            table = self.text(raw["table"], _key(key, "table")) if "table" in raw else None
            query = self.text(raw["query"], _key(key, "query")) if "query" in raw else None
            options = self.options({k: v for k, v in raw.items() if k in _PARSE_KEYS}, defaults, key)
            return SourceSpec(key=key, options=options, database=name, table=table, query=query)
        raise self.error(key, "needs file: (a CSV, Excel or Parquet file) or database: (a name under databases)")

    def databases(self, raw: Any) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for name, spec in self.mapping(raw, "databases").items():
            key = _key("databases", str(name))
            if isinstance(spec, dict) and "url" in spec:
                raise self.error(
                    _key(key, "url"),
                    "a mapping file must hold no database URL (it may carry a password); put the URL in an"
                    " environment variable and name it: url_env: SALESFORECAST_DB_URL",
                )
            spec = self.mapping(spec, key, _DATABASE_KEYS)
            if len(spec) != 1:
                raise self.error(key, "give one of url_env: (an environment variable) or duckdb: (a file)")
            kind, value = next(iter(spec.items()))
            if kind == "url_env" and (
                not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value.strip())
            ):
                raise self.error(
                    _key(key, "url_env"),
                    "must be the name of an environment variable (e.g. SALESFORECAST_DB_URL) that holds the URL,"
                    " not the URL itself (the value is not shown)",
                )
            out[str(name)] = {kind: self.text(value, _key(key, kind))}
        return out

    # ------------------------------------------------------------------ tables
    def table(self, name: str, raw: Any, defaults: SourceOptions, databases: Mapping[str, Any]) -> TableMapping:
        key = _key("tables", name)
        if isinstance(raw, str):
            raw = {"source": raw}
        if name == "stage_history" and isinstance(raw, dict) and "from_snapshots" in raw:
            others = [k for k in raw if k != "from_snapshots"]
            if others:
                raise self.error(
                    key, f"from_snapshots builds the whole table from a snapshot store; remove {others[0]!r}"
                )
            store = Path(self.text(raw["from_snapshots"], _key(key, "from_snapshots"), "a snapshot store path"))
            return TableMapping(name=name, source=None, from_snapshots=store)
        if name == "stage_history" and isinstance(raw, dict) and "derive_from_dates" in raw:
            others = [k for k in raw if k != "derive_from_dates"]
            if others:
                raise self.error(
                    key, f"derive_from_dates builds the whole table from the opportunities source; remove {others[0]!r}"
                )
            entries = self.mapping(raw["derive_from_dates"], _key(key, "derive_from_dates"))
            if not entries:
                raise self.error(_key(key, "derive_from_dates"), "needs at least one date column")
            derived = {
                self.text(col, _key(key, "derive_from_dates")): self.text(
                    stage, _key(key, "derive_from_dates", str(col)), f"a stage name or one of {_STAGE_WORDS}"
                )
                for col, stage in entries.items()
            }
            return TableMapping(name=name, source=None, derive_from_dates=derived)
        allowed = (*_TABLE_KEYS, "derive_from_dates") if name == "stage_history" else _TABLE_KEYS
        raw = self.mapping(raw, key, allowed)
        if "source" not in raw:
            raise self.error(key, "needs source: (a file or a database table)", table=name)
        source = self.source(raw["source"], _key(key, "source"), defaults, databases)
        spec = TABLES[name]
        columns = None
        if "columns" in raw:
            columns = self.column_map(raw["columns"], _key(key, "columns"))
        lookups = tuple(
            self.lookup(item, _key(key, "lookups") + f"[{i}]", defaults, databases)
            for i, item in enumerate(self.list(raw.get("lookups", []), _key(key, "lookups")))
        )
        mapped = list(columns or {})
        for lk in lookups:
            for canon in lk.columns:
                if canon in mapped:
                    raise self.error(f"{lk.key_path}.columns", f"{canon!r} is mapped twice (in columns and a lookup)")
                mapped.append(canon)
        identity = columns is None

        def known(column: str, section: str) -> None:
            if not identity and column not in mapped:
                raise self.error(
                    _key(key, section),
                    f"{column!r} is not a mapped column of {name} (mapped: {_names(mapped)}){_suggest(column, mapped)}",
                )

        values: dict[str, dict[Any, Any]] = {}
        for col, vmap in self.mapping(raw.get("values", {}), _key(key, "values")).items():
            col = str(col)
            known(col, "values")
            what = f" of {col}'s source values to canonical values (e.g. {{Gewonnen: Closed Won}})"
            vmap = self.mapping(vmap, _key(key, "values", col), what=what)
            for k, v in vmap.items():
                if isinstance(v, dict | list):
                    raise self.error(_key(key, "values", col, str(k)), f"must be a single value, got {v!r}")
            values[col] = vmap
        dates: dict[str, tuple[str, ...]] = {}
        for col, fmts in self.mapping(raw.get("dates", {}), _key(key, "dates")).items():
            col = str(col)
            known(col, "dates")
            c = spec.column(col)
            if c is not None and c.kind != "datetime":
                raise self.error(_key(key, "dates", col), f"{col!r} is a {c.kind} column of {name}, not a date")
            dates[col] = self.formats(fmts, _key(key, "dates", col))
        numbers = tuple(
            self.text(v, _key(key, "numbers")) for v in self.list(raw.get("numbers", []), _key(key, "numbers"))
        )
        for col in numbers:
            known(col, "numbers")
            c = spec.column(col)
            if c is not None and c.kind != "number":
                raise self.error(_key(key, "numbers"), f"{col!r} is a {c.kind} column of {name}, not a number")
        constants: dict[str, Any] = {}
        for col, value in self.mapping(raw.get("constants", {}), _key(key, "constants")).items():
            col = str(col)
            if col in mapped:
                raise self.error(_key(key, "constants", col), f"{col!r} is mapped from the source too; keep one")
            if isinstance(value, dict | list) or value is None:
                raise self.error(_key(key, "constants", col), f"must be a single value, got {value!r}")
            constants[col] = value
        derive: dict[str, tuple[str, str]] = {}
        for target, rule in self.mapping(raw.get("derive", {}), _key(key, "derive")).items():
            target = str(target)
            k = _key(key, "derive", target)
            if target in mapped or target in constants:
                raise self.error(k, f"{target!r} is mapped or constant too; keep one")
            rule = self.mapping(rule, k, ("from", "present"), what=" like {from: stage} or {present: column}")
            if len(rule) != 1:
                raise self.error(k, "give one of from: stage or present: <column>")
            how, column = next(iter(rule.items()))
            column = self.text(column, _key(k, how), "a column name")
            if how == "from":
                allowed_targets = _DERIVE_FROM_STAGE.get(name, ())
                if column != "stage" or target not in allowed_targets:
                    raise self.error(
                        k,
                        f"from: stage derives {', '.join(allowed_targets) or 'nothing'} in {name}"
                        f" (from the process map); got {target!r} from {column!r}",
                    )
            if not identity and column not in mapped and column not in constants:
                raise self.error(_key(k, how), f"{column!r} is not a mapped column of {name}")
            derive[target] = (how, column)
        tm = TableMapping(
            name=name,
            source=source,
            columns=columns,
            values=values,
            dates=dates,
            numbers=numbers,
            constants=constants,
            derive=derive,
            lookups=lookups,
        )
        if not identity:
            missing = [c for c in spec.required if c not in tm.provided]
            if missing:
                extras = [c for c in tm.provided if spec.column(c) is None]
                close = difflib.get_close_matches(missing[0], extras, n=1, cutoff=0.7)
                hints = f" ({close[0]!r} may be a misspelling of it)" if close else ""
                how = ""
                if set(missing) & {"is_closed", "is_won"}:
                    how = "; flags can come from the stage: derive: {is_closed: {from: stage}, is_won: {from: stage}}"
                raise self.error(
                    _key(key, "columns"),
                    f"no column for the required {_names(missing)}{hints} (required: {_names(spec.required)}){how}",
                    table=name,
                )
        return tm

    def list(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, got {value!r}")
        return value

    def column_map(self, raw: Any, key: str) -> dict[str, str]:
        raw = self.mapping(raw, key, what=" of canonical column to source column (e.g. {amount: Value})")
        if not raw:
            raise self.error(key, "maps no column")
        return {str(canon): self.text(src, _key(key, str(canon)), "a source column name") for canon, src in raw.items()}

    def lookup(self, raw: Any, key: str, defaults: SourceOptions, databases: Mapping[str, Any]) -> LookupSpec:
        raw = self.mapping(raw, key, _LOOKUP_KEYS)
        for needed in ("source", "key", "columns"):
            if needed not in raw:
                raise self.error(key, f"needs {needed}: (allowed keys: {', '.join(_LOOKUP_KEYS)})")
        source = self.source(raw["source"], f"{key}.source", defaults, databases)
        lk_key = self.text(raw["key"], f"{key}.key", "a source column name")
        on = self.text(raw.get("on", lk_key), f"{key}.on", "a column name of the lookup source")
        return LookupSpec(key, source, lk_key, on, self.column_map(raw["columns"], f"{key}.columns"))

    # ------------------------------------------------------------------ the file
    def spec(self, raw: Any) -> MappingSpec:
        if raw is None:
            raise MappingError(f"{self.path}: the mapping file is empty; it needs tables:", file=str(self.path))
        if not isinstance(raw, dict):
            raise MappingError(
                f"{self.path}: a mapping file is a YAML mapping with tables:, got {type(raw).__name__}",
                file=str(self.path),
            )
        unknown = [k for k in raw if k not in _TOP_KEYS]
        if unknown:
            hint = _suggest(str(unknown[0]), _TOP_KEYS)
            raise self.error(str(unknown[0]), f"unknown key{hint}; allowed keys: {', '.join(_TOP_KEYS)}")
        process: str | Path | None = None
        if raw.get("process") is not None:
            p = self.text(raw["process"], "process", "a process YAML file or 'default'")
            if p.lower() in PROCESS_PRESETS:
                process = p.lower()
            elif p.lower().endswith((".yml", ".yaml")):
                path = Path(p).expanduser()
                process = path if path.is_absolute() else self.base_dir / path
            else:
                raise self.error(
                    "process", f"{p!r} is neither a process YAML file (.yml) nor one of {', '.join(PROCESS_PRESETS)}"
                )
        defaults = self.options(
            self.mapping(raw.get("defaults", {}), "defaults", _DEFAULT_KEYS), SourceOptions(), "defaults"
        )
        databases = self.databases(raw["databases"]) if raw.get("databases") is not None else {}
        if "tables" not in raw:
            raise self.error("tables", "missing; a mapping needs tables: with at least opportunities:")
        tables_raw = self.mapping(raw["tables"], "tables")
        unknown = [t for t in tables_raw if t not in TABLES]
        if unknown:
            hint = _suggest(str(unknown[0]), list(TABLES))
            raise self.error(
                _key("tables", str(unknown[0])), f"unknown table{hint}; canonical tables: {', '.join(TABLES)}"
            )
        if "opportunities" not in tables_raw:
            raise self.error(
                "tables.opportunities", "missing; opportunities is the one table every mapping must describe"
            )
        tables = {
            name: self.table(name, tables_raw[name], defaults, databases) for name in TABLES if name in tables_raw
        }
        return MappingSpec(path=self.path, process=process, defaults=defaults, databases=databases, tables=tables)


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{path}: mapping file not found", file=str(path)) from None
    except IsADirectoryError:
        raise MappingError(f"{path}: is a folder; expected a mapping YAML file", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise MappingError(
            f"{path}: bytes at offset {exc.start} are not UTF-8; save the mapping file as UTF-8", file=str(path)
        ) from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML ({exc})", file=str(path)) from None


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
        Not YAML, an unknown key, a missing ``tables.opportunities``, a required column with no source, a value
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
    return _Checker(path).spec(_load_yaml(path))


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
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
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
    rows were quarantined, ``quarantine.csv``. Table files and notes a previous import left there are removed
    first, so that a table the mapping no longer has is not read back.

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
    """
    spec = read_mapping(path)
    data = _load(spec, process)
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise MappingError(f"{out}: is a file; expected a folder to write the canonical tables to", file=str(out))
    sources = {s.path.resolve() for s in _all_sources(spec) if s.path is not None}
    stale = [out / f"{name}{suffix}" for name in TABLES for suffix in (".csv", ".csv.gz", ".parquet")]
    for file in stale:
        if file.exists() and file.resolve() in sources:
            raise MappingError(
                f"{spec.path}: {file} is a source of this mapping and would be overwritten; write to another folder",
                file=str(spec.path),
            )
    for file in [*stale, out / "notes.txt"]:
        if file.is_file():
            file.unlink()
    data.to_folder(out, fmt)
    quarantine = out / "quarantine.csv"
    if len(data.quarantine):
        data.quarantine.to_csv(quarantine, index=False, lineterminator="\n")
    elif quarantine.is_file():
        quarantine.unlink()
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
            phrases.append(phrase + _suggest(m, available))
    key = key or src.key
    return MappingError(
        f"{spec.path}: {key}: {' and '.join(phrases)}, which {src.label} does not have; columns are: "
        f"{_names(available)}",
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
        dict(db), table=src.table, query=src.query, columns=columns, base_dir=spec.base_dir, name=src.database
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
        colmap: dict[str, str] = {}
        for header in frame.columns:
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
        needed = list(dict.fromkeys([*colmap.values(), *(lk.key for lk in tm.lookups), *side_columns]))
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
            f"{spec.path}: {lk.key_path}.on: {lk.on!r} repeats values in {lk.source.label} ({_names(repeated[:5])});"
            " a lookup needs one row per key",
            file=str(spec.path),
            key=f"{lk.key_path}.on",
            table=tm.name,
        )
    position = {k: i for i, k in enumerate(keys) if isinstance(k, str)}
    wanted = key_text(frame[lk.key]).reset_index(drop=True)
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
    if unmatched.any():
        examples = _names(pd.unique(wanted[unmatched])[:3])
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
                f"{spec.path}: {key}: {stage!r} is not a stage of the process map ({_names(proc.stage_names)})"
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
        " category (snapshots use today's values for those); stages between the dated ones look skipped, and time in"
        " stage is measured only between these dates."
    )
    if undated:
        note += (
            f" {undated} of {len(open_opps)} open deals are now in a stage that none of these dates records:"
            " snapshots keep them in their last dated stage (map a 'stage changed' date to current_stage if the"
            " export has one)."
        )
    return hist[["opportunity_id", "changed_at", "stage"]].reset_index(drop=True), note
