"""Reading configuration files: YAML in, a pydantic model out, one message style for every mistake.

The process map (`salesforecast.process`), the mapping file (`salesforecast.io.mapping`) and the report
configuration (`salesforecast.reports`) are declared as pydantic models built on `Schema`, and read with
`read_yaml` and `load_model`. A mistake becomes a `Problem`: the key path (``stages[1] ('Demo').probability``,
``tables.opportunities.columns``), and a message that says what was expected and what was given, with a
"did you mean" for a misspelt key or word. Each consumer raises its own exception type from it, so callers and
the command line's exit codes do not depend on pydantic. It sits on the ground floor (layer 0), so every module that
reads a configuration file may use it.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, WithJsonSchema, model_validator

__all__ = [
    "KeyedError",
    "Problem",
    "Schema",
    "UnknownKeys",
    "checked",
    "closest",
    "excerpt",
    "given",
    "key_path",
    "load_model",
    "mapping_of",
    "names",
    "parse_yaml",
    "read_yaml",
    "suggest",
    "text_of",
]

#: A key path: names of mapping keys and positions in lists, from the top of the file.
Loc = tuple[str | int, ...]


def closest(word: object, choices: Iterable[object]) -> str | None:
    """The choice a misspelt word most likely meant (difflib, similarity 0.7 or more), or None.

    Examples
    --------
    >>> closest("colums", ["columns", "values"]), closest("xyz", ["columns"])
    ('columns', None)
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.7)
    return close[0] if close else None


def suggest(word: object, choices: Iterable[object]) -> str:
    """A " (did you mean 'x'?)" hint for a misspelt word (`closest`), or "" when nothing is close.

    Examples
    --------
    >>> suggest("colums", ["columns", "values"])
    " (did you mean 'columns'?)"
    >>> suggest("xyz", ["columns"])
    ''
    """
    close = closest(word, choices)
    return f" (did you mean {close!r}?)" if close is not None else ""


class _Excerpt(reprlib.Repr):
    """`reprlib.Repr` that keeps a mapping's keys in the file's order (reprlib sorts them)."""

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in list(x.items())[: self.maxdict]]
        return "{" + ", ".join(items) + (", ..." if len(x) > self.maxdict else "") + "}"


def _repr(maxstring: int = 60) -> reprlib.Repr:
    r = _Excerpt()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset, r.maxfrozenset = 2, 6, 6, 6, 6, 6
    r.maxstring = r.maxother = maxstring
    r.maxlong = 40
    return r


_EXCERPT = _repr()

#: The most items `names` lists in a message.
NAMES_SHOWN = 30


def excerpt(value: object, limit: int = 60) -> str:
    r"""A value as an error message may quote it: its repr, escaped, cut to a short excerpt.

    Messages never write out a long value (a file's contents, a YAML alias expanded a million times): texts
    are cut to about `limit` characters, lists and mappings to their first items, nesting to two levels,
    all with ``...`` where something was left out. Control characters are escaped as ``repr`` does.

    Examples
    --------
    >>> excerpt("Closed Won")
    "'Closed Won'"
    >>> excerpt("x" * 1000)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx' (1000 characters)"
    >>> excerpt([["a"] * 9] * 9)
    "[['a', 'a', 'a', 'a', 'a', 'a', ...], ['a', 'a', 'a', 'a', 'a', 'a', ...], ...]"
    >>> excerpt([[["a"]]]), excerpt({"z": 1, "a": {"b": {"c": 2}}})
    ('[[[...]]]', "{'z': 1, 'a': {'b': {...}}}")
    >>> print(excerpt("root:$6$x\x1b[31m"))
    'root:$6$x\x1b[31m'

    """
    if isinstance(value, str) and len(value) > limit:
        shown = _repr(limit).repr(value)
        return f"{shown} ({len(value)} characters)"
    if isinstance(value, bytes) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} bytes)"
    shown = _EXCERPT.repr(value)
    return shown if len(shown) <= 4 * limit else shown[: 4 * limit] + "..."


def names(values: Iterable[object]) -> str:
    """Values as a quoted, comma-separated list for messages; each an `excerpt`, at most `NAMES_SHOWN` of them.

    Examples
    --------
    >>> names(["a", 1])
    "'a', '1'"
    >>> names(range(40)).endswith("'29', ... (10 more)")
    True
    """
    shown, more = [], 0
    for i, v in enumerate(values):
        if i < NAMES_SHOWN:
            shown.append(excerpt(str(v)))
        else:
            more += 1
    return ", ".join(shown) + (f", ... ({more} more)" if more else "")


class KeyedError(ValueError):
    """A validator's error about a key below the value it validates (the rest of the key path in `keys`).

    Parameters
    ----------
    message : str
        The message, without the key path.
    *keys : str or int
        Mapping keys and list positions below the validated value; none for the value itself.

    Examples
    --------
    A `checked` field's check raises it to name the key it found wrong (`mapping_of` does, for the entry's key);
    `load_model` puts that key after the field's path:

    >>> try:
    ...     mapping_of(lambda key, value: float(value))({"Demo": "high"})
    ... except KeyedError as error:
    ...     print(error.keys, error.message)
    ('Demo',) could not convert string to float: 'high'
    >>> class Weights(Schema):
    ...     weights: checked(mapping_of(lambda key, value: float(value)), {"type": "object"})
    >>> str(load_model(Weights, {"weights": {"Demo": "high"}}))
    "weights.Demo: could not convert string to float: 'high'"
    """

    def __init__(self, message: str, *keys: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.keys: Loc = keys


class UnknownKeys(KeyedError):
    """Keys a section does not allow; `Schema` raises it before pydantic's own ``extra_forbidden`` error."""

    def __init__(self, unknown: Sequence[str], allowed: Sequence[str], style: Literal["first", "all"]) -> None:
        hint = suggest(unknown[0], allowed)
        if style == "all":
            message = f"unknown key(s) {sorted(unknown)}{hint}; allowed: {sorted(allowed)}"
        else:
            message = f"unknown key {unknown[0]!r}{hint}; allowed keys: {', '.join(allowed)}"
        super().__init__(message)
        self.unknown = list(unknown)
        self.allowed = list(allowed)
        self.style = style


class Schema(BaseModel):
    """Base of the configuration models: unknown keys forbidden and named with the keys a section allows.

    A subclass may set `unknown_keys` to ``"all"`` to list every unknown key (``unknown key(s) ['a', 'b']``)
    rather than the first one with its "did you mean".

    Examples
    --------
    >>> class Deal(Schema):
    ...     amount: float
    ...     stage: str = "Prospecting"
    >>> Deal.allowed_keys(), Deal.model_validate({"amount": 10.0}).stage
    (['amount', 'stage'], 'Prospecting')
    >>> str(load_model(Deal, {"amuont": 10.0}))
    "amuont: unknown key (did you mean 'amount'?); allowed keys: amount, stage"
    >>> class Deals(Schema):
    ...     unknown_keys = "all"
    ...     amount: float
    >>> str(load_model(Deals, {"amount": 1.0, "a": 2, "b": 3}))
    "unknown key(s) ['a', 'b']; allowed: ['amount']"
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    unknown_keys: ClassVar[Literal["first", "all"]] = "first"

    @classmethod
    def allowed_keys(cls) -> list[str]:
        """The keys a section of this model may hold, as the file writes them (aliases where set)."""
        return [f.alias or name for name, f in cls.model_fields.items()]

    @classmethod
    def check_keys(cls, data: Any, allowed: Sequence[str] | None = None) -> Any:
        """Raise `UnknownKeys` when the mapping `data` holds a key not in `allowed` (default: the model's keys).

        A subclass whose own "before" validator looks at the keys calls it first, so that a misspelt key is
        reported as one rather than as the key it lacks.
        """
        if isinstance(data, Mapping):
            allowed = list(cls.allowed_keys() if allowed is None else allowed)
            unknown = [str(k) for k in data if k not in allowed]
            if unknown:
                raise UnknownKeys(unknown, allowed, cls.unknown_keys)
        return data

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        return cls.check_keys(data)


@dataclass(frozen=True)
class Problem:
    """The first mistake in a configuration file.

    Attributes
    ----------
    loc : tuple
        The key path as keys and list positions.
    key : str
        The key path as the message writes it; ``""`` for the whole file.
    message : str
        What is wrong, without the key path.

    Examples
    --------
    >>> str(Problem(("stages", 1, "probability"), "stages[1] ('Demo').probability", "must be <= 1, got 2"))
    "stages[1] ('Demo').probability: must be <= 1, got 2"
    >>> str(Problem((), "", "process file not found"))
    'process file not found'
    """

    loc: Loc
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


def key_path(loc: Loc, data: Any = None, label: Callable[[Any], str | None] | None = None) -> str:
    """A key path as text: ``tables.opportunities.lookups[0].on``; keys that are not plain names are quoted.

    Parameters
    ----------
    loc : tuple
        Keys and list positions.
    data : Any, optional
        The file's parsed YAML, to label list items with `label`.
    label : callable, optional
        Given a list item, a label shown after its position (``stages[1] ('Demo')``), or None.

    Examples
    --------
    >>> key_path(("tables", "stage_history", "derive_from_dates", "Engaged date"))
    'tables.stage_history.derive_from_dates."Engaged date"'
    >>> key_path(("stages", 1, "probability"), {"stages": [{}, {"name": "Demo"}]}, lambda s: repr(s.get("name")))
    "stages[1] ('Demo').probability"
    """
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and -len(node) <= part < len(node) else None
            shown = label(node) if label is not None and node is not None else None
            if shown:
                out += f" ({shown})"
            continue
        text = part if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) else '"' + part.replace('"', '\\"') + '"'
        out += ("." if out else "") + text
        node = node.get(part) if isinstance(node, Mapping) else None
    return out


_EXPECTED = {
    "string_type": "a text",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _message(error: Mapping[str, Any]) -> tuple[Loc, str]:
    """The key path and the message of one pydantic error (see `load_model`)."""
    loc: Loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))  # drop union/function tags
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, KeyedError):
        if isinstance(cause, UnknownKeys) and cause.style == "first" and not loc:
            hint = suggest(cause.unknown[0], cause.allowed)  # at the top: the key is the path
            return (cause.unknown[0],), f"unknown key{hint}; allowed keys: {', '.join(cause.allowed)}"
        return loc + cause.keys, cause.message
    if kind == "value_error" or kind == "assertion_error":
        return loc, str(cause) if cause is not None else error["msg"]
    if kind == "missing":
        return loc, "missing"
    if kind == "extra_forbidden":
        return loc[:-1], f"unknown key {loc[-1]!r}" if loc else "unknown key"
    if kind == "literal_error":
        choices = re.findall(r"'((?:[^'\\]|\\.)*)'", str(ctx.get("expected", "")))
        return loc, f"must be {ctx.get('expected')}, got {excerpt(value)}{suggest(value, choices)}"
    if kind in _BOUNDS:
        bound = next(v for k, v in ctx.items() if k in ("ge", "gt", "le", "lt"))
        return loc, f"must be {_BOUNDS[kind]} {bound}, got {excerpt(value)}"
    if kind in ("too_short", "too_long"):
        return (
            loc,
            f"must not be empty, got {excerpt(value)}" if kind == "too_short" else f"is too long: {excerpt(value)}",
        )
    expected = _EXPECTED.get(kind)
    if expected:
        return loc, f"must be {expected}, got {given(value)}"
    return loc, f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {given(value)}"


def load_model(
    model: type[BaseModel],
    data: Any,
    label: Callable[[Any], str | None] | None = None,
    context: Mapping[str, Any] | None = None,
) -> BaseModel | Problem:
    """Validate a file's parsed YAML against its model; the first mistake as a `Problem`.

    Parameters
    ----------
    model : type of pydantic.BaseModel
        The file's schema (a `Schema`).
    data : Any
        The parsed YAML.
    label : callable, optional
        Labels list items in key paths (see `key_path`).
    context : mapping, optional
        Passed to the validators (pydantic's validation context).

    Returns
    -------
    pydantic.BaseModel or Problem
        The validated model, or the first error pydantic reports, with its key path and message.

    Examples
    --------
    >>> class Point(Schema):
    ...     x: int
    >>> str(load_model(Point, {"x": "one"}))
    "x: must be a whole number, got 'one' (str)"
    >>> str(load_model(Point, {"x": 1, "z": 2}))
    'z: unknown key; allowed keys: x'
    """
    try:
        return model.model_validate(data, strict=True, context=dict(context or {}))
    except ValidationError as exc:
        loc, message = _message(exc.errors()[0])
        return Problem(loc, key_path(loc, data, label), message)


#: The most values a YAML file's aliases (``*name``) may add when expanded: a few kilobytes of anchors and aliases
#: can otherwise stand for gigabytes of values ("billion laughs").
MAX_ALIAS_VALUES = 100_000


class YAMLLimitError(yaml.YAMLError):
    """A YAML document whose aliases expand beyond `MAX_ALIAS_VALUES` values, or refer to themselves."""


def _alias_growth(root: yaml.Node) -> int:
    """How many values the document's aliases add when written out (raises `YAMLLimitError` past the limit).

    Each node is visited once (sizes are memoized), so the check costs what the composed file costs, whatever
    the aliases expand to.
    """
    size: dict[int, int] = {}
    active: set[int] = set()
    unique = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node)
            size[key] = min(1 + sum(size[id(c)] for c in children), 1 + MAX_ALIAS_VALUES * 100)
            continue
        if key in size:
            continue
        if key in active:
            mark = node.start_mark
            raise YAMLLimitError(
                f"an anchor refers to itself (line {mark.line + 1}, column {mark.column + 1}); a configuration"
                " file cannot hold a recursive value"
            )
        unique += 1
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                mark = child.start_mark
                raise YAMLLimitError(
                    f"an anchor refers to itself (line {mark.line + 1}, column {mark.column + 1}); a configuration"
                    " file cannot hold a recursive value"
                )
            if id(child) not in size:
                stack.append((child, False))
    growth = size[id(root)] - unique
    if growth > MAX_ALIAS_VALUES:
        raise YAMLLimitError(
            f"its aliases (*name) expand to more than {MAX_ALIAS_VALUES:,} values; write the values out or use"
            " fewer aliases"
        )
    return growth


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_yaml(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    r"""Parse one YAML document safely: `loader` (a SafeLoader), aliases limited to `MAX_ALIAS_VALUES` values.

    Raises
    ------
    yaml.YAMLError
        Not valid YAML (`YAMLLimitError` for aliases that expand too far or refer to themselves).

    Examples
    --------
    >>> parse_yaml("base: &b {a: 1}\nother: *b")
    {'base': {'a': 1}, 'other': {'a': 1}}
    >>> bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    ...     f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh")
    ... )
    >>> try:
    ...     parse_yaml(bomb)
    ... except YAMLLimitError as exc:
    ...     print(exc)
    its aliases (*name) expand to more than 100,000 values; write the values out or use fewer aliases
    """
    parser = loader(text)
    try:
        try:
            node = parser.get_single_node()
        except RecursionError:
            raise YAMLLimitError("values are nested too deeply") from None
        if node is None:
            return None
        _alias_growth(node)
        return parser.construct_document(node)
    finally:
        parser.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    r"""A YAML error in one line: where (line, column) and what, with a hint for tabs and Python tags.

    Examples
    --------
    >>> try:
    ...     parse_yaml("a: 1\nb: [2\n")
    ... except yaml.YAMLError as exc:
    ...     print(yaml_problem(exc))
    line 3, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 2, column 4)
    """
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc)
    problem = " ".join(str(exc.problem or "").split())
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = ""
    if exc.context:
        cmark = exc.context_mark
        at = f" at line {cmark.line + 1}, column {cmark.column + 1}" if cmark is not None and cmark is not mark else ""
        context = f" ({' '.join(str(exc.context).split())}{at})"
    hint = ""
    if "'\\t'" in problem:  # PyYAML writes the tab escaped
        hint = "; indent with spaces, not tabs"
    elif "constructor for the tag" in problem:
        hint = "; tags (!!python/..., !custom) are not allowed: a configuration file holds plain values"
    return f"{where}{problem}{context}{hint}"


def read_yaml(path: Path, what: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> tuple[Any, str | None]:
    """Parse a YAML file (`parse_yaml`); a file that cannot be read gives a one-line message naming the problem.

    Parameters
    ----------
    path : Path
        The file.
    what : str
        What the file is, for messages (``"process file"``, ``"mapping file"``).
    loader : yaml.SafeLoader subclass
        The YAML loader.

    Returns
    -------
    (data, problem)
        The parsed YAML and None, or None and what is wrong (without the file name): for YAML that does not
        parse, ``not valid YAML at line L, column C: ...``; for bytes that are not UTF-8, their offset, line
        and column.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     good, bad = Path(folder) / "process.yml", Path(folder) / "bad.yml"
    ...     _ = good.write_text("{name: demo, stages: [Lead, Won]}", encoding="utf-8")
    ...     _ = bad.write_text("stages: [Lead", encoding="utf-8")
    ...     print(read_yaml(good, "process file"))
    ...     print(read_yaml(Path(folder) / "missing.yml", "process file"))
    ...     print(read_yaml(bad, "process file")[1][:14])
    ({'name': 'demo', 'stages': ['Lead', 'Won']}, None)
    (None, 'process file not found')
    not valid YAML
    """
    if path.exists() and not path.is_file() and not path.is_dir():  # a device or a pipe: reading may never end
        return None, f"is not a regular file; expected a {what}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"{what} not found"
    except IsADirectoryError:
        return None, f"is a folder; expected a {what}"
    except OSError as exc:
        return None, f"cannot read the {what} ({exc.strerror or exc})"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, (
            f"bytes at offset {exc.start} are not UTF-8 (line {line}, column {column}:"
            f" {excerpt(data[exc.start : exc.start + 4])}); save the {what} as UTF-8"
        )
    try:
        return parse_yaml(text, loader), None  # a SafeLoader or a subclass of it
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc)
        return None, f"not valid YAML at {problem}" if problem.startswith("line ") else f"not valid YAML: {problem}"


def checked(check: Callable[[Any], Any], json_schema: Mapping[str, Any]) -> Any:
    """A field type checked (and converted) by `check` alone, shown to editors as `json_schema`.

    `check` takes the value as the YAML gives it and returns it, converted where needed, or raises a
    `ValueError` whose message says what is expected and what was given (without the key path).

    Examples
    --------
    >>> class Row(Schema):
    ...     n: checked(lambda v: v if isinstance(v, int) else 1 / 0, {"type": "integer"}) = 0
    >>> Row.model_json_schema()["properties"]["n"]["type"]
    'integer'
    """
    return Annotated[Any, PlainValidator(check), WithJsonSchema(dict(json_schema))]


def text_of(what: str = "a text", strip: bool = True) -> Callable[[Any], str]:
    """A `checked` check for a name: text, or a number taken as text; never empty, never true/false.

    Examples
    --------
    >>> text_of("a sheet name")(2024)
    '2024'
    >>> text_of("a sheet name")(" ")
    Traceback (most recent call last):
    ...
    ValueError: must be a sheet name, got ' '
    """

    def check(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float) or not str(value).strip():
            raise ValueError(f"must be {what}, got {excerpt(value)}")
        return str(value).strip() if strip and isinstance(value, str) else str(value)

    return check


def given(value: Any) -> str:
    """A value as messages show what was given: its repr and type, or "nothing".

    Examples
    --------
    >>> given(["ja", "nein"]), given(None)
    ("['ja', 'nein'] (list)", 'nothing')

    The value is an `excerpt`: a long one is cut.
    """
    return "nothing" if value is None else f"{excerpt(value)} ({type(value).__name__})"


def mapping_of(check: Callable[[str, Any], Any], what: str = "") -> Callable[[Any], dict[str, Any]]:
    """A `checked` check for a mapping: each value checked by ``check(key, value)``; keys are taken as text.

    An error about one entry names its key in the key path (``values.stage``); a `KeyedError` from `check`
    goes below it.

    Examples
    --------
    >>> mapping_of(lambda k, v: int(v), " of names to counts")({"a": "1"})
    {'a': 1}
    >>> mapping_of(lambda k, v: v, " of names to counts")(["a"])
    Traceback (most recent call last):
    ...
    ValueError: must be a mapping of names to counts, got ['a'] (list)
    """

    def check_mapping(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a mapping{what}, got {given(value)}")
        out = {}
        for key, item in value.items():
            try:
                out[str(key)] = check(str(key), item)
            except KeyedError as exc:
                raise KeyedError(exc.message, str(key), *exc.keys) from None
            except ValueError as exc:
                raise KeyedError(str(exc), str(key)) from None
        return out

    return check_mapping
