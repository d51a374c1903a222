"""Read tables from databases: DuckDB (embedded, also over Parquet files) and any SQLAlchemy database.

A mapping file names a database with one of two entries:

- ``{duckdb: "crm.duckdb"}``: a DuckDB file (relative to the mapping file's folder), opened read-only. With
  ``{duckdb: ":memory:"}`` and a query such as ``select * from read_parquet('deals/*.parquet')``, DuckDB reads
  Parquet (or CSV) files directly; relative file names in the query resolve against the mapping file's folder.
- ``{url_env: "SALESFORECAST_DB_URL"}``: an SQLAlchemy URL (``postgresql+psycopg://user:password@host/db``)
  taken from that environment variable. A URL written in the file itself (``url:``) is refused: passwords come
  from the environment and never from a file, a notebook parameter or a report.

`read_database` selects only the columns asked for (identifiers quoted, so any name works) and streams the
result in chunks (a server-side cursor with SQLAlchemy, Arrow record batches with DuckDB) instead of fetching
one ``SELECT *`` into memory. Its errors name the database entry, the table and the column; connection errors
show the URL with the password masked (``postgresql://user:***@host/db``). No password reaches an error
message, a log line or an exception's text: driver messages are scrubbed of it before they are passed on.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import numpy as np
import pandas as pd

from salesforecast.schema import DataFileError

__all__ = [
    "DatabaseError",
    "check_select",
    "find_secrets",
    "has_secret",
    "is_secret_name",
    "mask_url",
    "quote_identifier",
    "read_database",
]

logger = logging.getLogger(__name__)

#: The keys a database entry may hold.
DATABASE_KEYS: tuple[str, ...] = ("duckdb", "url_env")

# What is a secret in a text (`find_secrets`; `mask_url`, `has_secret` and the report runner's check all use it).
# A URL's password as SQLAlchemy's make_url reads it: the user part runs to the first ":" (it may hold "@" or
# spaces), the password from there to the next "@" on the line (it may hold "/", ":", "?", "#" or spaces). The
# "@" is looked up with str.find, not by the pattern, so that a long line of URLs without one costs linear time.
_URL_HEAD = re.compile(r"\b[a-z][\w+.\-]*://[^:/\n]{0,256}:", re.IGNORECASE)
# key=value settings: libpq (password=x, password = 'x y'), ODBC (PWD=x y; PWD={x;y}), URL queries (?password=x),
# JSON and dict reprs ("password": "x"), YAML-like text (password: x). Whether the key names a secret is decided by
# `is_secret_name`; only then is its value read: a quoted string, an ODBC {braced} value, text without "=" up to a
# ";" (at most 512 characters), or a word.
_KEY = re.compile(r"""(?<![\w.\-])(?P<q>['"]?)(?P<key>[A-Za-z_][\w.\-]*)(?P=q)[ \t]*(?:=|:(?!//))[ \t]*""")
_VALUE = re.compile(
    r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|\{(?:[^}\n]|\}\})*\}|[^;\n=]{0,512}?[^\s;=](?=[ \t]*;)|[^\s;&]+"""
)
# A key is a secret's when it holds one of these words anywhere (sslpassword, client_secret, AccessToken) ...
_SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "apikey", "api_key", "api-key", "credential")
# ... or one of these as a whole word of it (db_pwd, auth-token, AccessToken, x.pass; not n_tokens or bypass).
_SECRET_PARTS = frozenset({"pwd", "pass", "token", "sig"})
_MASK = "***"


def is_secret_name(name: object) -> bool:
    """Whether a parameter, setting or query key names a secret (a password, token, API key or credential).

    Examples
    --------
    >>> [is_secret_name(k) for k in ("password", "PWD", "sslpassword", "db_pwd", "AccessToken", "apiKey")]
    [True, True, True, True, True, True]
    >>> [is_secret_name(k) for k in ("source", "user", "n_tokens", "bypass", "passes")]
    [False, False, False, False, False]
    """
    text = str(name)
    lower = text.lower()
    if any(word in lower for word in _SECRET_WORDS):
        return True
    parts = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", text)
    return any(part.lower() in _SECRET_PARTS for part in parts)


def _is_placeholder(value: str) -> bool:
    """An empty or already masked value (``''``, ``***``, ``{***}``): nothing but stars, quotes, brackets, spaces."""
    return re.search(r"[^\s'\"{}()\[\],;*]", value) is None


def _secret_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) of every secret value in `text`, in order and not overlapping."""
    spans: list[tuple[int, int]] = []
    pos, at, newline = 0, -1, -1
    while (m := _URL_HEAD.search(text, pos)) is not None:
        start = m.end()
        if at < start:  # the next "@" and line end, found again only once passed: linear in the text
            at = text.find("@", start)
            at = len(text) if at < 0 else at
        if newline < start:
            newline = text.find("\n", start)
            newline = len(text) if newline < 0 else newline
        if start < at < min(newline, len(text)):
            if not _is_placeholder(text[start:at]):
                spans.append((start, at))
            pos = at + 1
        else:
            pos = start
    pos = 0
    while (m := _KEY.search(text, pos)) is not None:
        value = _VALUE.match(text, m.end()) if is_secret_name(m.group("key")) else None
        if value is None:  # another setting's value may hold a secret's setting (a URL's query): look inside it
            pos = m.end("key")
            continue
        if not _is_placeholder(value.group()):
            spans.append(value.span())
        pos = max(value.end(), m.end())
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _located(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The text the secrets were found in (as written, else percent-decoded once or twice) and their spans."""
    for _ in range(3):
        spans = _secret_spans(text)
        decoded = unquote(text)
        if spans or decoded == text:
            return text, spans
        text = decoded
    return text, _secret_spans(text)


def _mask_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], _MASK]
        last = end
    return "".join(out) + text[last:]


def find_secrets(text: object) -> list[str]:
    """The secrets written in a text: URL passwords and the values of password-like settings.

    The one rule for what is a secret: `mask_url` hides exactly these, `has_secret` asks whether there are any,
    and ``salesforecast report`` refuses a parameter that holds one. Percent-encoded text (a URL query holding
    an ODBC string, ``odbc_connect=...PWD%3Dx``) is searched decoded too.

    Parameters
    ----------
    text : object
        Any text (anything else is read as ``str(text)``): a parameter value, a URL, a message.

    Returns
    -------
    list of str
        Each secret as written (quotes included), in order of appearance; empty when there is none.
        ``***`` (an already masked value) and empty values are not secrets.

    Examples
    --------
    >>> find_secrets("postgresql://bob:hun/ter2@db/crm")
    ['hun/ter2']
    >>> find_secrets("host=db user=bob password=hunter2")
    ['hunter2']
    >>> find_secrets("Driver={x};UID=bob;PWD=hun ter2;Server=y")
    ['hun ter2']
    >>> find_secrets("postgresql://bob:***@db/crm"), find_secrets("sqlite:///crm.db")
    ([], [])
    """
    text, spans = _located(str(text))
    return [text[a:b] for a, b in spans]


def has_secret(value: object) -> bool:
    """Whether a value holds a secret: a text with one (`find_secrets`), or a mapping or list holding one.

    In a mapping a key named like a secret (`is_secret_name`) with a non-empty value counts too:
    ``{"url": "postgresql://db/crm", "password": "x"}`` holds a secret.

    Examples
    --------
    >>> has_secret("postgresql://bob@db/crm"), has_secret({"db": {"password": "x"}}), has_secret(["a", 3])
    (False, True, False)
    """
    if isinstance(value, Mapping):
        return any(
            (is_secret_name(k) and v not in (None, "") and not _is_placeholder(str(v)))
            or has_secret(k)
            or has_secret(v)
            for k, v in value.items()
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(has_secret(v) for v in value)
    if value is None or isinstance(value, (bool, int, float)):
        return False
    return bool(find_secrets(value))


class DatabaseError(DataFileError):
    """A database cannot be read: bad entry, missing variable, connection failure, unknown table or column.

    ``file`` holds the database (a DuckDB path or the masked URL), ``table`` and ``column`` what was asked for.
    The message never holds a password.
    """


def mask_url(text: str) -> str:
    """Hide the secrets of a text (passwords of URLs, values of ``password=`` settings) as `find_secrets` finds them.

    Parameters
    ----------
    text : str
        Any text: a URL, an error message, a log line, a parameter value.

    Returns
    -------
    str
        The text with every secret written ``***``: ``scheme://user:***@host``, ``password=***``, ``PWD=***;``.
        It differs from `text` exactly when `find_secrets` finds one (a percent-encoded secret is masked in the
        decoded text, which is then returned).

    Examples
    --------
    >>> mask_url("postgresql+psycopg://ann:s3cret@db.example.com:5432/crm")
    'postgresql+psycopg://ann:***@db.example.com:5432/crm'
    >>> mask_url("host=db user=ann password=s3cret dbname=crm")
    'host=db user=ann password=*** dbname=crm'
    >>> mask_url("postgresql://bob:hun/ter2@db/crm?sslpassword=k3y")
    'postgresql://bob:***@db/crm?sslpassword=***'
    >>> mask_url("sqlite:///crm.db")
    'sqlite:///crm.db'
    """
    text = str(text)
    for _ in range(8):  # until nothing is left to find: a masked value may run into a secret after it
        located, spans = _located(text)
        if not spans:
            break
        text = _mask_spans(located, spans)
    return text


def _scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """`mask_url`, and every occurrence of a known secret (as written or URL-encoded) replaced by ``***``."""
    text = mask_url(str(text))
    forms = {f for s in secrets if s for f in (s, quote(s, safe=""), quote_plus(s, safe=""), quote(s))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def quote_identifier(name: str, quote_char: str = '"') -> str:
    """Quote one SQL identifier: wrap it in double quotes and double the quotes inside.

    Examples
    --------
    >>> quote_identifier('Amount (USD)')
    '"Amount (USD)"'
    >>> quote_identifier('we"ird')
    '"we""ird"'
    """
    if not isinstance(name, str) or name == "" or "\x00" in name:
        raise ValueError(f"not a valid identifier: {name!r}")
    return f"{quote_char}{name.replace(quote_char, quote_char * 2)}{quote_char}"


def _split_table(table: str) -> list[str]:
    """The parts of a possibly qualified table name (``sales.deals``); a part may be double-quoted (``"My Schema"``)."""
    parts: list[str] = []
    i, n = 0, len(table)
    while i < n:
        if table[i] == '"':
            j, buf = i + 1, []
            while True:
                k = table.find('"', j)
                if k < 0:
                    raise ValueError(f"table name {table!r}: unbalanced double quote")
                buf.append(table[j:k])
                if k + 1 < n and table[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                break
            parts.append("".join(buf))
            i = k + 1
        else:
            k = table.find(".", i)
            k = n if k < 0 else k
            parts.append(table[i:k].strip())
            i = k
        if i < n:
            if table[i] != ".":
                raise ValueError(f"table name {table!r}: expected '.' after a quoted name")
            i += 1
            if i == n:
                raise ValueError(f"table name {table!r}: ends with '.'")
    if not parts or any(p == "" for p in parts) or len(parts) > 3:
        raise ValueError(f"table name {table!r}: expected table, schema.table or database.schema.table")
    return parts


# ---------------------------------------------------------------------------------------------- the entry
def _check_entry(db: Any) -> tuple[str, str]:
    """The kind (``duckdb`` or ``url_env``) and value of a database entry; raises on anything else."""
    if not isinstance(db, Mapping):
        raise DatabaseError(
            f"database: expected a mapping such as {{duckdb: crm.duckdb}} or {{url_env: SALESFORECAST_DB_URL}},"
            f" got {type(db).__name__}"
        )
    if "url" in db:
        # never echo the value: it may hold a password
        raise DatabaseError(
            "database: a literal 'url' is refused, because a password must not be written in a file; put the URL"
            " in an environment variable and name the variable with url_env (e.g. url_env: SALESFORECAST_DB_URL)"
        )
    unknown = [str(k) for k in db if k not in DATABASE_KEYS]
    if unknown:
        raise DatabaseError(f"database: unknown key(s) {', '.join(map(repr, unknown))}; expected duckdb or url_env")
    given = [k for k in DATABASE_KEYS if k in db]
    if len(given) != 1:
        raise DatabaseError(
            "database: give exactly one of duckdb (a DuckDB file, or ':memory:') and url_env (the name of an"
            f" environment variable holding an SQLAlchemy URL); got {given or 'neither'}"
        )
    kind = given[0]
    value = db[kind]
    if not isinstance(value, (str, os.PathLike)) or str(value).strip() == "":
        raise DatabaseError(f"database: {kind} must be a non-empty string, got {value!r}")
    return kind, str(value)


def _check_request(
    table: str | None, query: str | None, columns: Sequence[str] | None, chunksize: int, where: str
) -> list[str] | None:
    if (table is None) == (query is None):
        raise DatabaseError(f"{where}: give exactly one of table and query", file=where)
    if table is not None and (not isinstance(table, str) or not table.strip()):
        raise DatabaseError(f"{where}: table must be a non-empty string, got {table!r}", file=where)
    if query is not None and (not isinstance(query, str) or not query.strip()):
        raise DatabaseError(f"{where}: query must be a non-empty string", file=where)
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)) or chunksize < 1:
        raise DatabaseError(f"{where}: chunksize must be a positive integer, got {chunksize!r}", file=where)
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    cols = list(columns)
    bad = [c for c in cols if not isinstance(c, str) or c == ""]
    if bad:
        raise DatabaseError(f"{where}: column names must be non-empty strings, got {bad[0]!r}", file=where)
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise DatabaseError(f"{where}: column {dup[0]!r} asked for twice", file=where, column=dup[0])
    if not cols:
        raise DatabaseError(f"{where}: columns is empty; give None to read every column", file=where)
    return cols


def _what(table: str | None) -> str:
    return f"table {table!r}" if table is not None else "the query"


def _check_columns(
    where: str, table: str | None, columns: Sequence[str] | None, available: Sequence[str], file: str
) -> list[str] | None:
    """The database's names of the requested columns (None: all), each present once.

    A name matches exactly, or else the one available name equal to it but for case (``Amount`` finds
    ``amount``: PostgreSQL folds unquoted names to lower case). Without a request, no column name may repeat.
    """
    resolved = None
    if columns is not None:
        resolved = []
        for c in columns:
            if c in available:
                resolved.append(c)
                continue
            same = [a for a in available if a.casefold() == c.casefold()]
            if len(same) != 1:
                raise _missing_columns_error(where, table, c, available, file)
            resolved.append(same[0])
    counts = pd.Series(list(available), dtype=object).value_counts()
    repeated = [c for c in (resolved if resolved is not None else available) if counts.get(c, 0) > 1]
    if repeated:
        raise DatabaseError(
            f"{where}: {_what(table)} has two columns named {repeated[0]!r}; give them distinct names (AS ...)",
            file=file,
            table=table,
            column=repeated[0],
        )
    return resolved


def _missing_columns_error(
    where: str, table: str | None, missing: str, available: Sequence[str], file: str
) -> DatabaseError:
    same = [a for a in available if a.casefold() == missing.casefold()]
    hint = f" (several columns match but for case: {', '.join(map(repr, same))})" if same else ""
    shown = ", ".join(map(repr, list(available)[:40])) + (", ..." if len(available) > 40 else "")
    return DatabaseError(
        f"{where}: {_what(table)} has no column {missing!r}{hint}; its columns: {shown}",
        file=file,
        table=table,
        column=missing,
    )


# ---------------------------------------------------------------------------------------------- frames
def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Give driver values pandas dtypes: Decimal -> float64, date -> datetime64[us], text -> str."""
    out = {}
    for name in frame.columns:
        s = frame[name]
        if s.dtype == object:
            values = s.dropna()
            if len(values) and all(isinstance(v, decimal.Decimal) for v in values):
                s = s.astype("float64")
            elif len(values) and all(type(v) is dt.date for v in values):
                s = pd.to_datetime(s).astype("datetime64[us]")
            else:
                s = s.infer_objects()
        elif pd.api.types.is_datetime64_dtype(s.dtype) and s.dtype != "datetime64[us]":
            s = s.astype("datetime64[us]")
        out[name] = s
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)), columns=frame.columns)


# ---------------------------------------------------------------------------------------------- queries
def check_select(query: str, where: str = "query") -> str:
    """The query when DuckDB's parser reads it as one read-only SELECT; else a `DatabaseError` saying why.

    A query is one ``SELECT`` (also ``WITH ... SELECT``, ``FROM ...``, ``VALUES``): no second statement (a query
    that closes the subquery it is wrapped in to add one), no ``COPY``, ``ATTACH``, ``INSERT``, ``SET``,
    ``INSTALL``... The statement types are DuckDB's own (`duckdb.extract_statements`); the query is also checked
    as `read_database` runs it, wrapped as a subquery.

    Parameters
    ----------
    query : str
        The SQL text.
    where : str
        Names the query in messages (the database entry).

    Returns
    -------
    str
        The query without a trailing ``;``.

    Examples
    --------
    >>> check_select("select 1 as a;")
    'select 1 as a'
    >>> try:
    ...     check_select("select 1; copy (select 1) to 'x.csv'")
    ... except DatabaseError as exc:
    ...     print(str(exc).split(";")[0])
    query: the query must be one SELECT statement
    >>> try:
    ...     check_select("select 1) q; select 2")  # closes the subquery read_database wraps it in
    ... except DatabaseError as exc:
    ...     print(str(exc).split(" (")[0])
    query: the query is not one SELECT that DuckDB can read
    """
    import duckdb

    text = query.strip().rstrip(";").rstrip()

    def statements(sql: str) -> list[Any]:
        try:
            return list(duckdb.extract_statements(sql))
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise DatabaseError(f"{where}: the query is not one SELECT that DuckDB can read ({first})") from None

    found = statements(text)
    kinds = [str(s.type).rsplit(".", 1)[-1] for s in found]
    if kinds != ["SELECT"]:
        what = f"{len(kinds)} statements ({', '.join(kinds)})" if len(kinds) != 1 else f"a {kinds[0]} statement"
        raise DatabaseError(
            f"{where}: the query must be one SELECT statement; it is {what}. A mapping's query only reads: no COPY,"
            " ATTACH, INSERT, SET or second statement"
        )
    wrapped = statements(f"SELECT * FROM ({text}\n) AS q")  # newline: a trailing -- comment
    if [str(s.type).rsplit(".", 1)[-1] for s in wrapped] != ["SELECT"]:
        raise DatabaseError(f"{where}: the query must be one SELECT statement")
    return text


# comments, E'...' strings (backslash escapes), '...' strings, "names", $tag$...$tag$ quotes, ';', anything else
_SQL_TOKENS = re.compile(
    r"""--[^\n]*|/\*.*?\*/|[eE]'(?:\\.|''|[^'\\])*'|'(?:[^']|'')*'|"(?:[^"]|"")*"|\$(\w*)\$.*?\$\1\$|;"""
    r"""|[^-/'"$;eE]+|.""",
    re.S,
)


def _one_statement(query: str, where: str) -> str:
    """A query for any SQL dialect: one statement beginning with SELECT, WITH or VALUES (checked lexically).

    Strings, quoted names, comments and PostgreSQL dollar quotes are skipped; a ``;`` elsewhere but at the end
    means a second statement. The query without its trailing ``;`` and comments is returned.
    """
    tokens = [m.group(0) for m in _SQL_TOKENS.finditer(query.strip())]
    n = len(tokens)
    while n and (tokens[n - 1] == ";" or not tokens[n - 1].strip() or tokens[n - 1].startswith(("--", "/*"))):
        n -= 1
    code = [t for t in tokens[:n] if not t.startswith(("--", "/*"))]
    words = "".join(code).lstrip("( \t\r\n").split(None, 1)
    if ";" in code or not words or words[0].lower() not in ("select", "with", "values", "table"):
        raise DatabaseError(
            f"{where}: the query must be one SELECT statement (no ';' between statements, no INSERT, COPY or SET)"
        )
    return "".join(tokens[:n]).strip()


# ---------------------------------------------------------------------------------------------- DuckDB
def _duckdb_source(table: str | None, query: str | None) -> str:
    if table is not None:
        return ".".join(quote_identifier(p) for p in _split_table(table))
    return f"({query}\n) AS q"  # newline: a trailing -- comment


def _lock_down(con: Any, base: Path, allowed: Sequence[Path]) -> None:
    """Confine a DuckDB connection: reads only under `allowed` folders, no extensions, settings locked.

    External access is switched off, so files outside the folders cannot be read, written or attached, and no
    extension is installed or loaded; ``lock_configuration`` keeps a query from switching it back on.
    """
    folders = sorted({str(Path(a).resolve()).rstrip(os.sep) + os.sep for a in [base, *allowed]})
    con.execute("SET allowed_directories = ?", [folders])
    # relative file names in a query (read_parquet('deals/*.parquet')) resolve against the mapping's folder
    con.execute("SET file_search_path = ?", [str(base.resolve())])
    for setting in ("autoinstall_known_extensions", "autoload_known_extensions", "enable_external_access"):
        con.execute(f"SET {setting} = false")
    con.execute("SET lock_configuration = true")


_CWD_LOCK = threading.Lock()


@contextmanager
def _working_folder(folder: Path) -> Iterator[None]:
    """Run in `folder` (DuckDB resolves a query's relative file names against the working directory first)."""
    with _CWD_LOCK:
        try:
            before: str | None = os.getcwd()
        except OSError:  # the working directory is gone
            before = None
        os.chdir(folder)
        try:
            yield
        finally:
            if before is not None:
                os.chdir(before)


def _duckdb_error(where: str, table: str | None, file: str, exc: Exception, what: str = "") -> DatabaseError:
    """A DuckDB error as a `DatabaseError`; a refused file access says which folders a query may read."""
    text = str(exc).strip()
    if len(text) > 600:  # DuckDB may quote lines of a file: a short excerpt at most
        text = text[:600] + f"... ({len(text)} characters)"
    if "PermissionException" in type(exc).__name__ or text.startswith("Permission Error"):
        first = text.splitlines()[0].removeprefix("Permission Error: ")
        return DatabaseError(
            f"{where}: the query may read files only in the mapping's folder and the folders under allow_paths,"
            f" and write, attach or install nothing ({first})",
            file=file,
            table=table,
        )
    return DatabaseError(f"{where}: {what or 'cannot read ' + _what(table)}: {text}", file=file, table=table)


def _read_duckdb(
    where: str,
    path_text: str,
    base_dir: Path | None,
    table: str | None,
    query: str | None,
    columns: list[str] | None,
    chunksize: int,
    allowed: Sequence[Path] = (),
) -> pd.DataFrame:
    import duckdb
    import pyarrow as pa

    base = Path(base_dir) if base_dir is not None else Path.cwd()
    memory = path_text.strip() == ":memory:"
    path = None if memory else (base / Path(path_text).expanduser())
    file = ":memory:" if path is None else str(path)
    if path is not None and not path.is_file():
        raise DatabaseError(f"{where}: no DuckDB file at {path}", file=file, table=table)
    if query is not None:
        query = check_select(query, where)
    if not base.is_dir():
        raise DatabaseError(f"{where}: no folder {base} to read files from", file=file, table=table)
    try:
        con = duckdb.connect(":memory:") if path is None else duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise DatabaseError(f"{where}: cannot open {file}: {exc}", file=file, table=table) from None
    with _working_folder(base):
        try:
            _lock_down(con, base, allowed)
            try:
                source = _duckdb_source(table, query)
            except ValueError as exc:
                raise DatabaseError(f"{where}: {exc}", file=file, table=table) from None
            try:
                available = [d[0] for d in con.execute(f"SELECT * FROM {source} LIMIT 0").description]
            except duckdb.CatalogException as exc:
                if table is not None:
                    tables = [
                        ".".join(r) if r[0] != "main" else r[1]
                        for r in con.execute(
                            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2"
                        ).fetchall()
                    ]
                    first = str(exc).strip().splitlines()[0]  # the rest is DuckDB's guess among system tables
                    raise DatabaseError(
                        f"{where}: no table {table!r} ({first}); tables: {', '.join(tables) or 'none'}",
                        file=file,
                        table=table,
                    ) from None
                raise _duckdb_error(where, table, file, exc, "the query failed") from None
            except duckdb.Error as exc:
                raise _duckdb_error(where, table, file, exc) from None
            names = _check_columns(where, table, columns, available, file)
            select = "*" if names is None else ", ".join(quote_identifier(c) for c in names)
            sql = f"SELECT {select} FROM {source}"
            logger.debug("%s: %s (batches of %d rows)", where, sql, chunksize)
            try:
                rel = con.sql(sql)
                reader = (
                    rel.to_arrow_reader(chunksize)
                    if hasattr(rel, "to_arrow_reader")
                    else rel.fetch_arrow_reader(chunksize)
                )
                batches = []
                for i, batch in enumerate(reader):
                    batches.append(batch)
                    logger.debug("%s: chunk %d (%d rows)", where, i + 1, batch.num_rows)
                arrow = pa.Table.from_batches(batches, schema=reader.schema)
            except duckdb.Error as exc:
                raise _duckdb_error(where, table, file, exc) from None
        finally:
            con.close()
    frame = arrow.to_pandas(date_as_object=False)
    return _tidy(frame)


# ---------------------------------------------------------------------------------------------- SQLAlchemy
def _url_from_env(where: str, variable: str) -> tuple[Any, str, str]:
    """The SQLAlchemy URL in an environment variable, its masked text and its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = os.environ.get(variable)
    if text is None or text.strip() == "":
        raise DatabaseError(
            f"{where}: the environment variable {variable} is not set; set it to an SQLAlchemy URL such as"
            " postgresql+psycopg://user:password@host:5432/dbname",
        )
    try:
        url = make_url(text.strip())
    except (ArgumentError, ValueError):
        # the driver's message may quote the text, password included: say what is expected instead
        raise DatabaseError(
            f"{where}: {variable} does not hold an SQLAlchemy URL; expected"
            " dialect+driver://user:password@host:port/dbname (special characters in the password %-encoded)",
        ) from None
    password = url.password or ""
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername=_postgres_driver())
    masked = url.render_as_string(hide_password=True)
    return url, masked, str(password)


def _postgres_driver() -> str:
    """``postgresql+psycopg2`` when psycopg2 is installed, else ``postgresql+psycopg`` (psycopg 3)."""
    import importlib.util

    return "postgresql+psycopg2" if importlib.util.find_spec("psycopg2") else "postgresql+psycopg"


@contextmanager
def _engine(url: Any, where: str, masked: str, password: str) -> Iterator[Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = 15
    try:
        engine = create_engine(url, poolclass=NullPool, hide_parameters=True, connect_args=connect_args)
    except (SQLAlchemyError, ImportError) as exc:
        raise DatabaseError(f"{where}: cannot use {masked}: {_scrub(str(exc), [password])}", file=masked) from None
    try:
        yield engine
    finally:
        engine.dispose()


#: Per SQLAlchemy dialect, the statement that makes the session read-only before a table or query is read.
_READ_ONLY = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
}


def _read_sqlalchemy(
    label: str,
    variable: str,
    table: str | None,
    query: str | None,
    columns: list[str] | None,
    chunksize: int,
) -> pd.DataFrame:
    import sqlalchemy as sa
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    url, masked, password = _url_from_env(label, variable)
    where = f"{label} at {masked}"
    secrets = [password]

    def fail(message: str, exc: BaseException, **kw: Any) -> DatabaseError:
        detail = getattr(exc, "orig", None) or exc
        return DatabaseError(f"{where}: {message}: {_scrub(str(detail).strip(), secrets)}", file=masked, **kw)

    with _engine(url, where, masked, password) as engine:
        preparer = engine.dialect.identifier_preparer
        try:
            if table is not None:
                source = ".".join(preparer.quote_identifier(p) for p in _split_table(table))
            else:
                source = f"({_one_statement(query, where)}\n) q"  # type: ignore[arg-type]
        except ValueError as exc:
            raise DatabaseError(f"{where}: {exc}", file=masked, table=table) from None
        logger.debug("%s: connecting", where)
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise fail("cannot connect", exc, table=table) from None
        with conn:
            read_only = _READ_ONLY.get(engine.dialect.name)
            if read_only is not None:  # a data-modifying CTE or function in a query fails instead of writing
                try:
                    conn.execute(sa.text(read_only))
                    conn.commit()  # the session's setting holds from the next transaction on
                except DBAPIError as exc:
                    raise fail("cannot make the session read-only", exc, table=table) from None
            try:
                probe = conn.execute(sa.text(f"SELECT * FROM {source} WHERE 1 = 0"))
                available = list(probe.keys())
                probe.close()
            except DBAPIError as exc:
                conn.rollback()
                if table is not None:
                    raise _table_error(conn, table, where, masked, exc, secrets) from None
                raise fail("the query failed", exc) from None
            names = _check_columns(where, table, columns, available, masked)
            select = "*" if names is None else ", ".join(preparer.quote_identifier(c) for c in names)
            sql = f"SELECT {select} FROM {source}"
            logger.debug("%s: %s (chunks of %d rows)", where, sql, chunksize)
            frames = []
            try:
                result = conn.execution_options(stream_results=True, yield_per=chunksize).execute(sa.text(sql))
                keys = list(result.keys())
                for i, part in enumerate(result.partitions(chunksize)):
                    frames.append(pd.DataFrame.from_records(part, columns=keys, coerce_float=False))
                    logger.debug("%s: chunk %d (%d rows)", where, i + 1, len(part))
                result.close()
            except SQLAlchemyError as exc:
                raise fail(f"cannot read {_what(table)}", exc, table=table) from None
    if not frames:
        frames = [pd.DataFrame({k: pd.Series([], dtype=object) for k in keys})]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return _tidy(frame)


def _table_error(
    conn: Any, table: str, where: str, masked: str, exc: BaseException, secrets: Sequence[str]
) -> DatabaseError:
    """The error for a table that cannot be read: missing (with the tables there are) or another failure."""
    import sqlalchemy as sa

    detail = _scrub(str(getattr(exc, "orig", None) or exc).strip(), secrets)
    parts = _split_table(table)
    name, schema = parts[-1], (parts[-2] if len(parts) > 1 else None)
    try:
        inspector = sa.inspect(conn)
        exists = inspector.has_table(name, schema=schema)
        names = (
            [] if exists else sorted(inspector.get_table_names(schema=schema) + inspector.get_view_names(schema=schema))
        )
    except Exception:  # noqa: BLE001 - the inspector is only a hint; the driver's message is the answer
        exists, names = True, []
    if not exists:
        shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
        in_schema = f" in schema {schema!r}" if schema else ""
        return DatabaseError(
            f"{where}: no table {table!r}{in_schema}; tables: {shown or 'none'} ({detail})", file=masked, table=table
        )
    return DatabaseError(f"{where}: cannot read table {table!r}: {detail}", file=masked, table=table)


# ---------------------------------------------------------------------------------------------- entry point
def read_database(
    db: Mapping[str, Any],
    *,
    table: str | None = None,
    query: str | None = None,
    columns: list[str] | None = None,
    base_dir: Path | None = None,
    chunksize: int = 100_000,
    name: str | None = None,
    allowed_dirs: Sequence[Path] = (),
) -> pd.DataFrame:
    """Read a table or a query's result from a database, only the columns asked for, in chunks.

    Parameters
    ----------
    db : mapping
        A mapping file's database entry: ``{"duckdb": "crm.duckdb"}`` (a DuckDB file, relative to `base_dir`;
        ``":memory:"`` for an empty in-memory database whose query reads files, e.g. ``select * from
        read_parquet('deals/*.parquet')``) or ``{"url_env": "SALESFORECAST_DB_URL"}`` (the name of the
        environment variable holding an SQLAlchemy URL; ``postgresql://`` uses the installed psycopg driver).
        A literal ``url`` is refused.
    table : str, optional
        A table or view, optionally qualified (``sales.deals``; parts may be double-quoted). Names are quoted,
        so they are case-sensitive and may hold any character.
    query : str, optional
        A SELECT statement instead of a table (exactly one of `table` and `query`). With `columns`, it is
        wrapped as a subquery: ``SELECT "a", "b" FROM (query) q``. It must be one read-only SELECT (`check_select`
        with DuckDB's parser; for other databases one statement beginning with SELECT, WITH or VALUES, run in a
        read-only session on PostgreSQL, SQLite and MySQL). A DuckDB query reads files only under `base_dir` and
        `allowed_dirs`, and cannot write, attach or load anything: the connection has external access off and
        its configuration locked.
    columns : list of str, optional
        The columns to read, in this order (default: all). A name without an exact match finds the one column
        equal to it but for case (PostgreSQL folds unquoted names to lower case); the frame's columns are
        named as requested.
    base_dir : path, optional
        The folder relative DuckDB paths and the files a DuckDB query reads resolve against (default: the
        working directory): the mapping file's folder.
    chunksize : int
        Rows fetched per round trip (SQLAlchemy ``yield_per`` on a server-side cursor; DuckDB Arrow batches).
    name : str, optional
        The entry's name in the mapping file (``warehouse`` under ``databases:``), shown in error messages.
    allowed_dirs : sequence of path, optional
        Folders besides `base_dir` whose files a DuckDB query may read (a mapping's ``allow_paths``).

    Returns
    -------
    pandas.DataFrame
        One column per requested column, in order; raw values with pandas dtypes (text as ``str``, numbers as
        int64/float64 -- decimals as float64 --, dates and timestamps as ``datetime64[us]``, time zones kept).
        Validation and parsing into canonical columns is `salesforecast.schema.validate`'s job.

    Raises
    ------
    DatabaseError
        A `DataFileError` naming the database entry, the table and the column: an invalid entry (a literal
        ``url``, unknown keys), an unset environment variable, a connection failure (the URL shown with its
        password masked), an unknown table (with the tables there are) or column (with the columns there are),
        a failing query. No message holds the password.

    Examples
    --------
    >>> import duckdb, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with duckdb.connect(str(folder / "crm.duckdb")) as con:
    ...     _ = con.execute("create table deals as select 'D1' as id, 100.0 as amount, 'EMEA' as team")
    >>> read_database({"duckdb": "crm.duckdb"}, table="deals", columns=["amount", "id"], base_dir=folder)
       amount  id
    0   100.0  D1
    """
    label = "database" if name is None else f"database {name!r}"
    try:
        kind, value = _check_entry(db)
    except DatabaseError as exc:
        raise DatabaseError(str(exc).replace("database", label, 1)) from None
    where = f"{label} {{{kind}: {value}}}"
    cols = _check_request(table, query, columns, chunksize, where)
    if kind == "duckdb":
        frame = _read_duckdb(where, value, base_dir, table, query, cols, int(chunksize), tuple(allowed_dirs))
    else:
        frame = _read_sqlalchemy(where, value, table, query, cols, int(chunksize))
    if cols is not None:
        frame.columns = cols  # selected in this order; named as requested
    logger.debug("%s: read %d rows x %d columns from %s", where, len(frame), frame.shape[1], _what(table))
    return frame
