"""Run the report notebooks with papermill and render them as self-contained HTML.

A YAML configuration (``reports.yml`` at the repository root) lists the reports: a notebook of
``notebooks/`` and one or more parameter sets. `run_reports` validates all of it before anything runs,
executes every report (in parallel, each in its own kernel), renders the HTML with the code hidden and
writes a run folder::

    reports/
      20261127T231500Z/              one folder per run
        01_data_quality.html
        04_forecast_accuracy__emea.html
        02_broken.failed.ipynb       the executed notebook of a failed report, for debugging
        index.html                   every report of the run: what it answers, for whom, its headline; status
        manifest.json
      latest -> .latest-20261127T231500Z
                                     the newest good HTML of every report, with its own index.html

``reports/latest`` is replaced atomically at the end of a run, and a report that failed keeps its last
good HTML there. A failing notebook never stops the others.

What limits a report's numbers opens it: the warnings raised in its cells and the notes of the load
(`salesforecast.session.record_limits`, started in every report's kernel) are gathered into a
``<section id="read-this-first">`` box right under the report's header (`render_html`); the box is absent when
nothing limits the numbers. A report whose data cannot support it (a cell raised
`salesforecast.session.ReportNeeds`) gets, at its usual HTML path, a one-page "what this report needs"
(``<section id="report-needs">``, status ``needs``) instead of a traceback.

Exit status of `RunResult.exit_code` (and ``salesforecast report``): `EXIT_OK` (0) every report rendered;
`EXIT_NEEDS` (3) no report failed, and some rendered a "what this report needs" page; `EXIT_FAILED` (1) some
report failed; `EXIT_CONFIG` (2) the configuration is invalid and nothing ran.

The configuration::

    notebooks: notebooks       # optional: the notebook folder, relative to this file
    output: reports            # optional: where run folders go, relative to this file
    timeout: 1800              # optional: seconds a cell may run (default: no limit)
    reports:
      - notebook: 01_data_quality
      - notebook: 04_forecast_accuracy
        title: Forecast accuracy, {team}   # optional; else the notebook's first heading; {name}: a parameter's value
        description: Which forecast to trust, and where the quarter lands   # optional; for the index
        audience: VP Sales, RevOps         # optional; for the index
        parameters:                        # one mapping, or a list of them (one report each)
          - {team: EMEA, period: FY2024Q3}
          - {team: AMER, period: FY2024Q3}
      - notebook: 04_forecast_accuracy
        when: {source: sample}             # optional: run only when these parameters have these values
        parameters: {as_of: "2025-11-17"}  # (a value or a list of them; after -p and --as-of are applied)
      - notebook: 05_pipeline_review
        title: Pipeline review, {team}
        for_each: team                     # optional: one report per team of the source (a page per manager)

``for_each: COLUMN`` expands each parameter set of its entry into one per value of that opportunities column in
the set's source (``-p source=`` first, else the set's, else the notebook's default), read when the run starts
(`source_values`: the column alone from a canonical folder's opportunities file, else the loaded source), each with
the parameter COLUMN set to the value. A set that gives COLUMN itself (or ``-p COLUMN=``) stays one report. The
notebook must declare COLUMN and ``source``; a column the source lacks is a `ConfigError` naming it.

A report's file is named after its notebook and the slug of each parameter that differs from the
notebook's default (``04_forecast_accuracy__emea__fy2024q3.html``). Reports that would share a title get the
parameters that tell them apart (`_distinct_titles`). Every page opens with a navigation bar (`_nav_html`: the
index, the run's other pages, the page's sections), written once the whole run is rendered (`NAV_SLOT`).
The notebook helpers `report_header`, `format_table` and `fold_rows` (a per-rep table that holds at 400 reps: the
roll-up, the reps that matter, every rep folded under ``<details>``) live here too: they escape every value, since
rep, account and stage names are untrusted text.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import functools
import hashlib
import html
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from salesforecast._utils import when_text
from salesforecast.config import KeyedError, Schema, checked, load_model, read_yaml, suggest
from salesforecast.folders import replace_path
from salesforecast.io.database import has_secret, is_secret_name, mask_url
from salesforecast.labels import Figure, parameter_label

if TYPE_CHECKING:  # pragma: no cover
    import nbformat
    import numpy as np
    import pandas as pd
    from IPython.display import HTML
    from pandas.io.formats.style import Styler

__all__ = [
    "DEFAULT_CONFIG",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_NEEDS",
    "EXIT_OK",
    "KERNEL_NAME",
    "ConfigError",
    "Figure",
    "ReportPlan",
    "ReportResult",
    "ReportSpec",
    "ReportsFile",
    "RunResult",
    "add_report_arguments",
    "FOLD_ABOVE",
    "FOLD_TOP",
    "fold_rows",
    "format_table",
    "headline",
    "kernel_name",
    "load_config",
    "output_name",
    "render_html",
    "render_needs_html",
    "report_header",
    "run_from_args",
    "run_reports",
    "source_values",
]

#: The repository root (the package is installed in editable mode from it).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The configuration `salesforecast report` uses without ``--config``.
DEFAULT_CONFIG = REPO_ROOT / "reports.yml"
#: The kernelspec ``make venv`` registers inside the project's environment.
KERNEL_NAME = "salesforecast"

#: Exit status: every report rendered.
EXIT_OK = 0
#: Exit status: some report failed (the others rendered).
EXIT_FAILED = 1
#: Exit status: the configuration is invalid; nothing ran.
EXIT_CONFIG = 2
#: Exit status: no report failed, and some rendered a "what this report needs" page (the data cannot support them).
EXIT_NEEDS = 3

_NO_DEFAULT = object()


class ConfigError(ValueError):
    """The report configuration is invalid; the message names the file, the report and the key."""


# ------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class ReportSpec:
    """One report to render: a notebook and one parameter set.

    Attributes
    ----------
    name : str
        The output name (file stem): the notebook name, then ``__slug`` per non-default parameter.
    notebook : str
        The notebook's name, without ``.ipynb``.
    path : Path
        The notebook file.
    title : str
        The report's title, for the index.
    parameters : dict
        The parameters papermill injects (given ones only; the notebook's defaults apply to the rest).
    timeout : float or None
        Seconds a cell may run; None for no limit.
    description : str
        What the report answers, for the index: the entry's ``description:``, else the notebook's first paragraph.
    audience : str
        Who reads it (the entry's ``audience:``); "" when not said.
    """

    name: str
    notebook: str
    path: Path
    title: str
    parameters: dict[str, Any]
    timeout: float | None = None
    description: str = ""
    audience: str = ""


@dataclass(frozen=True)
class ReportPlan:
    """A validated configuration: the file, the output folder, the reports to render and those skipped.

    ``skipped`` holds the selected reports whose ``when:`` condition does not hold for the parameters of this run,
    each with the reason (``runs only when source is 'sample' (here: ...)``).
    """

    config: Path
    output: Path
    specs: list[ReportSpec]
    skipped: list[tuple[ReportSpec, str]] = field(default_factory=list)


def _coerce(value: Any, type_name: str, where: str) -> Any:
    """Check (and for text from the command line, convert) a parameter value against its declared type."""
    from_text = isinstance(value, str)
    if type_name == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (date, datetime)):  # YAML reads 2024-06-30 as a date
            return value.isoformat()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif type_name == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
    elif type_name == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_text:
            with contextlib.suppress(ValueError):
                return float(value)
    elif type_name == "bool":
        if isinstance(value, bool):
            return value
        if from_text and value.strip().lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.strip().lower() in {"true", "yes", "1"}
    else:  # untyped or another type: pass YAML values through, read command-line text as YAML
        return yaml.safe_load(value) if from_text else value
    raise ConfigError(
        f"{where}: expected a value of type {type_name}, got {mask_url(repr(value))} ({type(value).__name__})"
    )


def _default_value(info: Mapping[str, Any]) -> Any:
    try:
        return ast.literal_eval(str(info.get("default")))
    except (ValueError, SyntaxError):
        return _NO_DEFAULT


#: Text that is a file path (named by its last part in file names and titles).
_PATH = re.compile(r"[\w .~:+@=,-]*[/\\][\w .~:+@=,/\\-]*")


def _slug(value: Any) -> str:
    """A lowercase file-name slug of a parameter value; paths are named by their last component."""
    text = value.isoformat() if isinstance(value, (date, datetime)) else mask_url(str(value))
    if _PATH.fullmatch(text):  # a path: name it by its last part
        text = re.split(r"[/\\]+", text.rstrip("/\\"))[-1] or text
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return slug or hashlib.sha1(text.encode()).hexdigest()[:8]


#: Parameters that say where a report runs, not what it shows: left out of its name (the same report wherever it ran).
WHERE_ONLY = frozenset({"dask"})


def output_name(notebook: str, parameters: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """The file stem of a report: the notebook, then the slug of each parameter that differs from its default.

    Parameters
    ----------
    notebook : str
        The notebook's name, without ``.ipynb``.
    parameters : mapping
        The report's parameters.
    defaults : mapping
        The notebook's parameters and their defaults, in the order of its parameters cell.

    Returns
    -------
    str

    Examples
    --------
    >>> output_name("04_forecast_accuracy", {"team": "Team EMEA", "period": "FY2024Q3"},
    ...             {"team": "all", "period": "FY2024Q3", "seed": 0})
    '04_forecast_accuracy__team-emea'
    >>> output_name("01_data_quality", {"source": "/data/raw/acme"}, {"source": "sample"})
    '01_data_quality__acme'
    >>> output_name("04_forecast_accuracy", {"dask": "tcp://10.0.3.17:8786"}, {"dask": ""})  # where, not what
    '04_forecast_accuracy'
    """
    order = list(defaults) + [k for k in parameters if k not in defaults]
    parts = [notebook]
    for key in order:
        if key in WHERE_ONLY:
            continue
        if key in parameters and parameters[key] != defaults.get(key, _NO_DEFAULT):
            parts.append(_slug(parameters[key]))
    return "__".join(parts)


def _read_notebook(path: Path, where: str) -> nbformat.NotebookNode:
    """A notebook of the configuration, or a `ConfigError` naming the file when it is not a readable notebook."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # NotJSONError, a validation error, binary bytes, a JSON list: not a notebook
        why = str(exc).splitlines()[0] if str(exc).strip() else ""
        why = mask_url(why if len(why) <= 80 else why[:77] + "...")
        raise ConfigError(
            f"{where}: {_relative(path)} is not a readable Jupyter notebook ({type(exc).__name__}"
            f"{': ' + why if why else ''}); restore it or save it again from Jupyter, or remove it from reports:"
        ) from None


def _notebook_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = re.match(r"#+\s+(.*\S)", line)
                if m:
                    return m.group(1)
    return fallback


def _plain(markdown: str) -> str:
    """Markdown as plain text: emphasis, code marks and link targets dropped, whitespace collapsed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)  # [text](url) -> text
    text = re.sub(r"(\*\*|__|\*|`)", "", text)
    return " ".join(text.split())


def _notebook_description(nb: nbformat.NotebookNode, limit: int = 400) -> str:
    r"""The notebook's first paragraph of prose (after its title) as plain text, cut at `limit` characters.

    Examples
    --------
    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T\n\nWhich **deals** `win`.\n\nMore.")])
    >>> _notebook_description(nb)
    'Which deals win.'
    """
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for block in re.split(r"\n\s*\n", cell.source):
            block = block.strip()
            if block and not block.startswith(("#", "|", "```", "<", "-", "*", ">")):
                text = _plain(block)
                if len(text) > limit:
                    text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
                return text
    return ""


_PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: Parameters whose value alone names what a report is about ("Pipeline review, EMEA", not "team EMEA").
_NAMED_BY_VALUE = ("team", "owner", "period", "segment", "region", "source")


def _value_text(value: Any) -> str:
    """A parameter value in a title: a date as ``17 Nov 2025``, a path by its last part, a secret masked."""
    text = value.isoformat() if isinstance(value, (date, datetime)) else mask_url(str(value))
    with contextlib.suppress(ValueError):
        day = date.fromisoformat(text[:10])
        if len(text) == 10:
            return f"{day.day} {day:%b %Y}"
    if _PATH.fullmatch(text):  # a path: named by its last part
        text = re.split(r"[/\\]+", text.rstrip("/\\"))[-1] or text
    return text


def _title_part(key: str, value: Any) -> str:
    """One parameter in a title: ``as of 17 Nov 2025``, ``EMEA`` (a team), ``history 4``."""
    if key == "as_of":
        return f"as of {_value_text(value)}"
    if key in _NAMED_BY_VALUE:
        return _value_text(value)
    return f"{key.replace('_', ' ')} {_value_text(value)}"


def _fill_title(title: str, filled: Mapping[str, Any], where: str) -> str:
    """Replace each ``{name}`` of a configured title by the value of the parameter `name`."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in filled:
            raise ConfigError(f"{where}: title: {{{key}}} names no parameter (its parameters: {sorted(filled)})")
        return _value_text(filled[key])

    return _PLACEHOLDER.sub(value, title)


def _distinct_titles(titles: Sequence[str], sets: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[str]:
    """Give reports that share a title one each: the title, then the parameters that tell them apart.

    `sets` holds each report's given parameters and its notebook's defaults. Within a group of equal titles the
    parameters whose values differ between its reports are added, in the notebooks' order, until the titles
    differ (a parameter that tells none more apart is left out); each report names only those of them it sets away
    from the default (``Forecast accuracy`` and ``Forecast accuracy, as of 17 Nov 2025``). Titles still shared
    come back as "" (the caller adds the report's name).

    Examples
    --------
    >>> _distinct_titles(["F", "F"], [({}, {"as_of": None, "history": 8}),
    ...                               ({"as_of": "2025-11-17", "history": 4}, {"as_of": None, "history": 8})])
    ['F', 'F, as of 17 Nov 2025']
    """
    out = list(titles)
    groups: dict[str, list[int]] = {}
    for i, title in enumerate(titles):
        groups.setdefault(title, []).append(i)
    for title, members in groups.items():
        if len(members) < 2:
            continue
        filled = [dict(sets[i][1]) | dict(sets[i][0]) for i in members]
        keys = list(dict.fromkeys(k for i in members for k in [*sets[i][1], *sets[i][0]]))
        differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in filled}) > 1]

        def named(keys: Sequence[str], title: str = title, members: list[int] = members) -> list[str]:
            out = []
            for i in members:
                given, defaults = sets[i]
                parts = [
                    _title_part(k, given[k]) for k in keys if k in given and given[k] != defaults.get(k, _NO_DEFAULT)
                ]
                out.append(", ".join([title, *parts]))
            return out

        chosen: list[str] = []
        for key in differ:  # a parameter joins the titles only when it tells more of them apart
            if len(set(named([*chosen, key]))) > len(set(named(chosen))):
                chosen.append(key)
            if len(set(named(chosen))) == len(members):
                break
        for i, name in zip(members, named(chosen), strict=True):
            out[i] = name
    counts: dict[str, int] = {}
    for title in out:
        counts[title] = counts.get(title, 0) + 1
    return out if all(n == 1 for n in counts.values()) else [t if counts[t] == 1 else "" for t in out]


def _check_secrets(params: Mapping[Any, Any], where: str) -> None:
    """Refuse parameters named like a secret or holding one (`has_secret`); the message never shows the value."""
    for key, value in params.items():
        if has_secret(key):
            raise ConfigError(
                f"{where}: a parameter name holds a URL with a password (or a password setting); secrets are read"
                " from the environment, never passed as report parameters"
            )
        if is_secret_name(key):
            raise ConfigError(
                f"{where}: parameter {str(key)!r} looks like a secret; secrets (passwords, tokens) are read from"
                " the environment, never passed as report parameters"
            )
        if has_secret(value):
            raise ConfigError(
                f"{where}: parameter {str(key)!r} holds a URL with a password (or a connection string or setting with"
                " one); give it without the password and set the password in the environment"
            )


def _relative(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (for messages)."""
    with contextlib.suppress(ValueError):
        return str(path.absolute().relative_to(Path.cwd()))
    return str(path)


def _seconds(value: Any) -> float | None:
    """A timeout: a positive number of seconds, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return float(value)


def _parameter_sets(value: Any) -> list[dict[Any, Any]]:
    """A report's parameter sets: none (the notebook's defaults), one mapping, or a non-empty list of mappings."""
    sets = [{}] if value is None else [value] if isinstance(value, Mapping) else value
    if not isinstance(sets, list) or not sets or not all(isinstance(s, Mapping) for s in sets):
        raise ValueError(f"must be a mapping or a non-empty list of mappings, got {value!r}")
    return [dict(s) for s in sets]


def _conditions(value: Any) -> dict[str, list[Any]]:
    """A ``when:`` condition: a mapping of parameter names to a value or a non-empty list of values."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping of parameter names to values, e.g. {{source: sample}}, got {value!r}")
    out: dict[str, list[Any]] = {}
    for key, allowed in value.items():
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values or any(isinstance(v, (Mapping, list)) for v in values):
            raise KeyedError(f"must be a value or a non-empty list of values, got {allowed!r}", str(key))
        out[str(key)] = values
    return out


def _any_text(value: Any) -> str:
    """A notebook or folder name; anything YAML gives is taken as its text."""
    return str(value)


_TIMEOUT = checked(_seconds, {"type": "number", "exclusiveMinimum": 0, "description": "seconds a cell may run"})


class ReportEntry(Schema):
    """One entry of ``reports:``: a notebook of the notebook folder (or just its name) and its parameter sets."""

    unknown_keys = "all"

    notebook: checked(lambda v: str(v).removesuffix(".ipynb"), {"type": "string"})
    title: checked(
        lambda v: str(v) if v else None,
        {
            "type": "string",
            "description": "the report's title (page title, heading, index); {name} is replaced by the value of"
            " the parameter name; default: the notebook's first heading",
        },
    ) = None
    description: checked(
        lambda v: " ".join(str(v).split()) if v else None,
        {
            "type": "string",
            "description": "what the report answers, one line for the index; default: the notebook's first paragraph",
        },
    ) = None
    audience: checked(
        lambda v: " ".join(str(v).split()) if v else None,
        {"type": "string", "description": "who reads it, for the index (e.g. VP Sales, RevOps)"},
    ) = None
    parameters: checked(_parameter_sets, {"type": ["object", "array", "null"], "items": {"type": "object"}}) = Field(
        default_factory=lambda: [{}]
    )
    timeout: _TIMEOUT = None
    for_each: checked(
        lambda v: str(v).strip() if v is not None and str(v).strip() else None,
        {
            "type": "string",
            "description": "one report per value of this opportunities column of the source, e.g. team: the"
            " parameter of that name is set to each value (read from the source when the run starts)",
        },
    ) = None
    when: checked(
        _conditions,
        {
            "type": "object",
            "description": "run only when each named parameter has this value (or one of these values), after -p"
            " and --as-of are applied; e.g. {source: sample}",
            "additionalProperties": {
                "anyOf": [
                    {"type": ["string", "number", "boolean", "null"]},
                    {"type": "array", "minItems": 1, "items": {"type": ["string", "number", "boolean", "null"]}},
                ]
            },
        },
    ) = Field(default_factory=dict)


class ReportsFile(Schema):
    """The report configuration (see the module docstring); `model_json_schema()` describes it for editors.

    Validated with ``context={"base": <the file's folder>}``: each report's notebook must exist.

    Examples
    --------
    Without a ``base`` in the context the notebooks are not looked for:

    >>> from salesforecast.config import load_model
    >>> reports = ["04_forecast_accuracy", {"notebook": "05_x.ipynb", "parameters": {"team": "EMEA"}}]
    >>> cfg = load_model(ReportsFile, {"reports": reports})
    >>> cfg.notebooks, [r.notebook for r in cfg.reports], cfg.reports[1].parameters
    ('notebooks', ['04_forecast_accuracy', '05_x'], [{'team': 'EMEA'}])
    >>> cfg.notebook_path(cfg.reports[0], Path("config")).as_posix()
    'config/notebooks/04_forecast_accuracy.ipynb'
    >>> str(load_model(ReportsFile, {"reports": ["04_forecast_accuracy"], "timeout": 0}))
    'timeout: must be a positive number of seconds, got 0'
    >>> str(load_model(ReportsFile, {"report": ["04_forecast_accuracy"]}))
    "unknown key(s) ['report'] (did you mean 'reports'?); allowed: ['notebooks', 'output', 'reports', 'timeout']"
    >>> load_model(ReportsFile, {"reports": [{"notebook": "04_x", "when": {"source": "sample"}}]}).reports[0].when
    {'source': ['sample']}
    """

    unknown_keys = "all"

    notebooks: checked(_any_text, {"type": "string"}) = "notebooks"
    output: checked(_any_text, {"type": "string"}) = "reports"
    timeout: _TIMEOUT = None
    reports: list[ReportEntry] = Field(min_length=1)

    @field_validator("reports", mode="before")
    @classmethod
    def _names_are_entries(cls, value: Any) -> Any:
        return [{"notebook": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    def notebook_path(self, entry: ReportEntry, base: Path) -> Path:
        """The notebook file of a report, for a configuration in the folder `base`."""
        return base / self.notebooks / f"{entry.notebook}.ipynb"

    @model_validator(mode="after")
    def _notebooks_exist(self, info: ValidationInfo) -> ReportsFile:
        base = (info.context or {}).get("base")
        for i, entry in enumerate(self.reports if base is not None else ()):
            nb_path = self.notebook_path(entry, base)
            if not nb_path.is_file():
                found = sorted(p.stem for p in nb_path.parent.glob("*.ipynb"))
                hint = suggest(entry.notebook, found)
                raise KeyedError(f"no notebook {_relative(nb_path)}{hint}; notebooks there: {found}", "reports", i)
        return self


def _fast_values(source: Any, column: str) -> list[str] | None:
    """The values of `column` read from the opportunities file of a canonical folder (or the sample) alone.

    None when the source is no canonical folder, or the column is not found this way (the caller loads the source).
    """
    import pandas as pd

    from salesforecast.datasets import sample_folder
    from salesforecast.schema import find_table_file, header_key

    folder = sample_folder() if str(source) == "sample" else Path(str(source)).expanduser()
    if not folder.is_dir():
        return None
    path = find_table_file(folder, "opportunities")
    if path is None:
        return None
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = [n for n in pq.read_schema(path).names if header_key(n) == column]
        values = pd.read_parquet(path, columns=names[:1])[names[0]] if names else None
    else:
        names = [n for n in pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns if header_key(n) == column]
        values = (
            pd.read_csv(path, usecols=names[:1], dtype="str", keep_default_na=False, encoding="utf-8-sig")[names[0]]
            if names
            else None
        )
    if values is None:
        return None
    text = values.dropna().astype("str").str.strip()
    return sorted(set(text[text != ""]))


def source_values(source: Any, column: str) -> list[str]:
    """The distinct values of a column of a report source's opportunities, sorted: what ``for_each`` expands.

    A canonical folder (and the sample) is read cheaply: only the column, from the opportunities file. Any other
    source (an export, a mapping file, a database) is loaded (`salesforecast.io.load`) and its column read.

    Parameters
    ----------
    source : str or path
        A report's ``source`` parameter.
    column : str
        An opportunities column, e.g. ``team``.

    Returns
    -------
    list of str
        The column's non-empty values (surrounding spaces trimmed, as the loader trims them), sorted.

    Raises
    ------
    ConfigError
        When the source cannot be read, or its opportunities have no such column (named, with the columns).

    Examples
    --------
    >>> source_values("sample", "team")
    ['APAC', 'EMEA', 'NA East', 'NA West']
    """
    from salesforecast.io import load
    from salesforecast.schema import DataFileError

    shown = mask_url(str(source))
    try:
        fast = _fast_values(source, column)
    except (OSError, ValueError, KeyError, ImportError, UnicodeDecodeError, DataFileError):
        fast = None  # a file the fast path cannot read: the loader reads it, and says what is wrong
    if fast is not None:
        return fast
    try:
        opportunities = load(source).opportunities
    except (OSError, ValueError) as exc:
        raise ConfigError(f"for_each: cannot read the {column} values of source {shown!r}: {exc}") from None
    if column not in opportunities.columns:
        raise ConfigError(
            f"for_each: {column!r} is not a column of the opportunities of source {shown!r}"
            f" (its columns: {list(opportunities.columns)})"
        )
    text = opportunities[column].dropna().astype("str").str.strip()
    return sorted(set(text[text != ""]))


def _entry_label(item: Any) -> str | None:
    """A reports entry as key paths show it: ``reports[0] (04_forecast_accuracy)``."""
    notebook = item.get("notebook") if isinstance(item, Mapping) else item
    return None if notebook is None else str(notebook).removesuffix(".ipynb")


def _each_value(
    column: str,
    sets: list[dict[Any, Any]],
    cli_params: Mapping[str, Any],
    defaults: Mapping[str, Any],
    base: Path,
    where: str,
    values_of: Callable[[Any, str], list[str]],
) -> list[dict[Any, Any]]:
    """Expand a ``for_each: column`` entry: each parameter set once per value of the column in its source.

    The source is the set's ``source`` (a ``-p source=`` first, else the set's, else the notebook's default). A
    set that gives the column's parameter itself, or a ``-p`` of it, is kept as it is (one report).
    """
    out: list[dict[Any, Any]] = []
    for given in sets:
        if column in cli_params or column in given:
            out.append(given)
            continue
        if "source" in cli_params:
            source = _absolute_path(cli_params["source"], Path.cwd())
        elif "source" in given:
            source = _absolute_path(given["source"], base)
        else:
            source = defaults.get("source", _NO_DEFAULT)
        if source is _NO_DEFAULT or source in ("", None):
            raise ConfigError(f"{where}: for_each: {column!r} needs a source (the set gives none, nor a default)")
        try:
            values = values_of(source, column)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not values:
            raise ConfigError(
                f"{where}: for_each: {column!r}: the opportunities of source {mask_url(str(source))!r} hold no"
                f" {column} value"
            )
        out.extend(dict(given) | {column: value} for value in values)
    return out


def load_config(
    config: str | Path,
    only: Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    as_of: str | None = None,
) -> ReportPlan:
    """Read and validate a report configuration; nothing runs.

    Parameters
    ----------
    config : path
        The YAML file.
    only : sequence of str, optional
        Keep only these reports: notebook names (every parameter set) or output names.
    params : mapping, optional
        Parameters set on every selected report whose notebook declares them (command-line ``-p key=value``,
        like ``--as-of``); text values are converted to the type the notebook declares. A key that no selected
        report declares is an error.
        Relative paths (``data/raw/acme``, ``./acme``) that exist are made absolute: those given here
        against the working directory, those in the file against the file's folder, since the notebooks
        run in their own folder.
    as_of : str, optional
        Sets the ``as_of`` parameter of every selected report whose notebook has one.

    Returns
    -------
    ReportPlan
        The resolved output folder and the list of `ReportSpec`.

    Raises
    ------
    ConfigError
        A missing or malformed file, an unknown key, an unknown notebook or one that is not a readable notebook,
        a parameter the notebook does not declare or of the wrong type, a parameter that looks like a secret or
        holds one (`salesforecast.io.database.has_secret`), two reports with the same parameters, or an `only`
        name that matches nothing.
    """
    import papermill

    path = Path(config)
    src = _relative(path)
    raw, problem = read_yaml(path, "report configuration")
    base = path.resolve().parent
    model = load_model(ReportsFile, raw, label=_entry_label, context={"base": base}) if problem is None else problem
    if not isinstance(model, ReportsFile):
        raise ConfigError(f"{src}: {model}")
    output = base / model.output
    cli_params = dict(params or {})
    _check_secrets(cli_params, "-p")

    specs: list[ReportSpec] = []
    skip: list[str | None] = []  # why each report does not run here (its `when:` does not hold), or None
    effective: list[str] = []
    origins: list[str] = []
    declares: list[set[str]] = []  # each report's declared parameters (a -p key must be declared by one selected)
    titling: list[tuple[dict[str, Any], dict[str, Any]]] = []  # each report's parameters and defaults (titles)
    values_of = functools.cache(source_values)  # for_each: each source's values read once
    for i, entry in enumerate(model.reports):
        notebook = entry.notebook
        where = f"{src}: reports[{i}] ({notebook})"
        nb_path = model.notebook_path(entry, base)
        nb = _read_notebook(nb_path, where)
        declared = papermill.inspect_notebook(str(nb_path))
        defaults = {k: _default_value(v) for k, v in declared.items()}
        sets = entry.parameters
        title = entry.title or _notebook_title(nb, notebook)
        description = entry.description or _notebook_description(nb)
        timeout = entry.timeout or model.timeout
        for key in entry.when:
            if key not in declared:
                known = list(declared) or "none: the notebook has no cell tagged 'parameters'"
                raise ConfigError(
                    f"{where}: when: {key!r} is not a parameter of {_relative(nb_path)} (its parameters: {known})"
                )
        if entry.for_each is not None:
            for key in (entry.for_each, "source"):
                if key not in declared:
                    known = list(declared) or "none: the notebook has no cell tagged 'parameters'"
                    raise ConfigError(
                        f"{where}: for_each: {entry.for_each!r} needs the notebook to have the parameters"
                        f" {entry.for_each!r} and 'source'; {_relative(nb_path)} has no {key!r} (its parameters:"
                        f" {known})"
                    )
            sets = _each_value(entry.for_each, sets, cli_params, defaults, base, where, values_of)
        for j, given in enumerate(sets):
            set_where = where if len(sets) == 1 else f"{where}: parameters[{j}]"
            merged = dict(given)
            merged.update(cli_params)
            _check_secrets(merged, set_where)  # as written, before any message could show a value
            if as_of is not None and "as_of" in declared:
                merged["as_of"] = as_of
            final: dict[str, Any] = {}
            for key, value in merged.items():
                key = str(key)
                if key not in declared:
                    if key in cli_params and key not in given:
                        continue  # -p applies to the selected reports that declare it (checked below)
                    known = list(declared) or "none: the notebook has no cell tagged 'parameters'"
                    raise ConfigError(
                        f"{set_where}: parameter {key!r} is not a parameter of {_relative(nb_path)}"
                        f" (its parameters: {known})"
                    )
                value = _coerce(value, str(declared[key].get("inferred_type_name")), f"{set_where}: {key}")
                final[key] = _absolute_path(value, Path.cwd() if key in cli_params else base)
            _check_secrets(final, set_where)
            filled = {k: v for k, v in defaults.items() if v is not _NO_DEFAULT} | final
            skip.append(_unmet(entry.when, filled, declared, f"{where}: when"))
            # the same report wherever it runs: a scheduler's address does not make it another
            effective.append(
                json.dumps({k: v for k, v in filled.items() if k not in WHERE_ONLY}, sort_keys=True, default=str)
            )
            origins.append(set_where.removeprefix(f"{src}: "))
            declares.append(set(declared))
            titling.append((final, {k: v for k, v in defaults.items() if v is not _NO_DEFAULT}))
            specs.append(
                ReportSpec(
                    name=output_name(notebook, final, defaults),
                    notebook=notebook,
                    path=nb_path,
                    title=_fill_title(title, filled, set_where) if entry.title else title,
                    parameters=final,
                    timeout=timeout,
                    description=description,
                    audience=entry.audience or "",
                )
            )
    specs = _disambiguate(specs, effective, origins, src)
    titles = _distinct_titles([s.title for s in specs], titling)
    specs = [dataclasses.replace(s, title=t or f"{s.title} ({s.name})") for s, t in zip(specs, titles, strict=True)]
    selected = [True] * len(specs)
    if only:
        wanted = set(only)
        missing = sorted(wanted - {s.notebook for s in specs} - {s.name for s in specs})
        if missing:
            names = sorted({s.notebook for s in specs} | {s.name for s in specs})
            raise ConfigError(f"{src}: --only {missing[0]!r} names no report; reports: {names}")
        selected = [s.notebook in wanted or s.name in wanted for s in specs]
    chosen = [s for s, keep, why in zip(specs, selected, skip, strict=True) if keep and why is None]
    skipped = [(s, why) for s, keep, why in zip(specs, selected, skip, strict=True) if keep and why is not None]
    chosen_declares = [d for d, keep in zip(declares, selected, strict=True) if keep]
    for key in cli_params:
        if not any(str(key) in d for d in chosen_declares):
            names = sorted({s.notebook for s in chosen} | {s.notebook for s, _ in skipped})
            given = "--dask (-p 'dask')" if key == "dask" else f"-p {str(key)!r}"
            raise ConfigError(
                f"{src}: {given} is a parameter of none of the selected reports ({', '.join(names)}); "
                "papermill --help-notebook notebooks/NAME.ipynb lists a notebook's parameters"
            )
    if not chosen and skipped:
        reasons = "; ".join(f"{s.name} {why}" for s, why in skipped)
        raise ConfigError(f"{src}: nothing to run: every selected report is skipped here: {reasons}")
    return ReportPlan(config=path, output=output, specs=chosen, skipped=skipped)


def _shown(value: Any) -> str:
    """A parameter value in a message: text quoted (a password in a URL masked), anything else as written."""
    return mask_url(repr(value)) if isinstance(value, str) else mask_url(str(value))


def _unmet(
    when: Mapping[str, list[Any]], filled: Mapping[str, Any], declared: Mapping[str, Any], where: str
) -> str | None:
    """Why a report's ``when:`` condition does not hold for its parameters `filled`, or None when it holds."""
    for key, allowed in when.items():
        wanted = [_coerce(v, str(declared[key].get("inferred_type_name")), f"{where}: {key}") for v in allowed]
        value = filled.get(key, _NO_DEFAULT)
        if value not in wanted:
            shown = " or ".join(_shown(v) for v in wanted)
            here = "no value" if value is _NO_DEFAULT else _shown(value)
            return f"runs only when {key} is {shown} (here: {here})"
    return None


def _absolute_path(value: Any, base: Path) -> Any:
    """Make a relative path absolute against `base`: the notebooks run in their own folder.

    Only text that looks like a path (holds a slash or a backslash, or starts with ``.`` or ``~``) and names
    an existing file or folder under `base` is changed; anything else is returned as it is.
    """
    if not isinstance(value, str) or not re.search(r"[/\\]|^[.~]", value):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path) if value.startswith("~") else value
    candidate = base / path
    return str(candidate.resolve()) if candidate.exists() else value


def _disambiguate(specs: list[ReportSpec], effective: list[str], origins: list[str], src: str) -> list[ReportSpec]:
    """Give reports whose names collide a short hash of their parameters; identical reports are an error.

    `effective` holds each report's parameters with the notebook's defaults filled in (as JSON), so two
    sets that differ only by spelling out a default count as the same report.
    """
    seen: dict[tuple[str, str], int] = {}
    for i, s in enumerate(specs):
        key = (s.notebook, effective[i])
        if key in seen:
            raise ConfigError(f"{src}: {origins[seen[key]]} and {origins[i]} have the same parameters {s.parameters}")
        seen[key] = i
    counts: dict[str, int] = {}
    for s in specs:
        counts[s.name] = counts.get(s.name, 0) + 1
    out = []
    for s, key in zip(specs, effective, strict=True):
        if counts[s.name] > 1:
            digest = hashlib.sha1(key.encode()).hexdigest()[:6]
            s = dataclasses.replace(s, name=s.name + f"-{digest}")
        out.append(s)
    return out


# ------------------------------------------------------------------------------------ execution
@dataclass
class ReportResult:
    """The outcome of one report.

    Attributes
    ----------
    spec : ReportSpec
    status : {"ok", "needs", "failed"}
        ``needs``: the data cannot support the report (a cell raised `salesforecast.session.ReportNeeds`); `html`
        is then the "what this report needs" page.
    seconds : float
        Wall time of execution and rendering.
    html : Path or None
        The rendered HTML in the run folder (None when the report failed).
    failed_notebook : Path or None
        The executed notebook of a failure (``<name>.failed.ipynb``), when execution got that far.
    error : str or None
        ``ename: evalue`` of the exception that stopped the notebook.
    needs : str or None
        For status ``needs``: what the report needs and the data lacks (the `ReportNeeds` message).
    headline : str or None
        The first paragraph of the page's ``<section id="headline">`` (`page_headline`), for the index.
    peak_rss : int or None
        The peak resident memory of the report's kernel process in bytes (its ``VmHWM``, read just before the kernel
        is shut down, `process_peak_rss`): what the notebook's computation held at most, the Python process and its
        libraries included. None where it cannot be read: not on Linux (no ``/proc``), or the kernel died first.
    """

    spec: ReportSpec
    status: Literal["ok", "needs", "failed"]
    seconds: float
    html: Path | None = None
    failed_notebook: Path | None = None
    error: str | None = None
    needs: str | None = None
    headline: str | None = None
    peak_rss: int | None = None


@dataclass
class RunResult:
    """The outcome of `run_reports`.

    Attributes
    ----------
    run_dir : Path
        The run folder (``reports/<timestamp>``).
    latest_dir : Path
        ``reports/latest``.
    results : list of ReportResult
        In configuration order.
    """

    run_dir: Path
    latest_dir: Path
    results: list[ReportResult] = field(default_factory=list)
    skipped: list[tuple[ReportSpec, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[ReportResult]:
        """The reports that failed."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def needing(self) -> list[ReportResult]:
        """The reports the data cannot support: each rendered a "what this report needs" page."""
        return [r for r in self.results if r.status == "needs"]

    @property
    def exit_code(self) -> int:
        """The exit status: `EXIT_FAILED`, `EXIT_NEEDS` or `EXIT_OK`.

        `EXIT_FAILED` (1) when some report failed, else `EXIT_NEEDS` (3) when some rendered a "what this report
        needs" page, else `EXIT_OK` (0).
        """
        if self.failed:
            return EXIT_FAILED
        return EXIT_NEEDS if self.needing else EXIT_OK


def kernel_name() -> str:
    """The kernel reports run in: ``salesforecast`` when that kernelspec belongs to this environment.

    ``make venv`` registers it inside ``.venv``; elsewhere (a conda env, a plain install) the native
    ``python3`` kernel is used, which runs the current interpreter.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        return "python3"
    exe = Path(spec.argv[0]) if spec.argv else Path()
    if exe.is_absolute() and Path(sys.prefix).resolve() in exe.parent.resolve().parents:
        return KERNEL_NAME
    return "python3"


@functools.cache
def _kernel_manager_base() -> type:
    """The reports' kernel manager: no interrupt for an idle kernel at shutdown, encrypted channels where possible.

    jupyter_client (8.x) sends the kernel SIGINT before its shutdown request; a kernel inside a message handler
    then logs ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel`` to its stderr, which is the report
    command's, after a notebook that ran fine. So the interrupt is sent only while a cell still runs (a timeout:
    it stops the cell so the kernel can shut down); an idle kernel stops on the shutdown request alone. A cell's
    own error comes back in its execute reply and still fails the report. The per-run subclass
    (`_kernel_manager_class`) says whether a cell runs.

    The channels are encrypted (CurveZMQ) where jupyter_client and zmq can: the kernels hold CRM data, and
    unencrypted any local user could read their TCP traffic (and ipykernel warns about it once per report).

    Just before the shutdown, the kernel process's peak resident memory is read into the run's `_KernelRun`.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class _ReportKernelManager(AsyncKernelManager):
        cell_running: threading.Event | None = None
        run: _KernelRun | None = None

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down and not (self.cell_running is not None and self.cell_running.is_set()):
                return  # idle: the shutdown request follows, an interrupt would only be logged as an error
            await super()._async_interrupt_kernel()

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            pid = getattr(self.provisioner, "pid", None)
            if self.run is not None and pid is not None and self.has_kernel:  # still alive: its peak is readable
                self.run.peak_rss = process_peak_rss(int(pid))
            await super().shutdown_kernel(now=now, restart=restart)

    if not (zmq.has("curve") and hasattr(AsyncKernelManager, "transport_encryption")):
        return _ReportKernelManager

    class _EncryptedKernelManager(_ReportKernelManager):
        @default("transport_encryption")
        def _default_transport_encryption(self) -> str:
            return "auto"  # encrypt when the kernelspec declares support (ipykernel's does)

    return _EncryptedKernelManager


def _kernel_manager_class(run: _KernelRun) -> type:
    """A kernel manager class for one notebook run: it reads whether a cell runs from `run`, and writes its peak."""
    return type("_RunKernelManager", (_kernel_manager_base(),), {"cell_running": run.cell_running, "run": run})


def process_peak_rss(pid: int) -> int | None:
    """The peak resident memory of a running process in bytes: ``VmHWM`` of ``/proc/PID/status`` (Linux).

    Returns
    -------
    int or None
        None where it cannot be read: no ``/proc`` (macOS, Windows), or no such process.

    Examples
    --------
    >>> import os, sys
    >>> peak = process_peak_rss(os.getpid())
    >>> peak is None if not sys.platform.startswith("linux") else peak > 10_000_000
    True
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError):
        return None
    return None


def memory_text(nbytes: float) -> str:
    """Bytes as GB (GiB, 1024**3 bytes, as the benchmarks count) with one decimal, or MB under 1 GB.

    Examples
    --------
    >>> memory_text(3.2 * 1024**3), memory_text(310 * 1024**2)
    ('3.2 GB', '310 MB')
    """
    if nbytes >= 1024**3:
        return f"{nbytes / 1024**3:.1f} GB"
    return f"{nbytes / 1024**2:.0f} MB"


#: A report says which section of its notebook runs (`_KernelRun`) only once it has run this many seconds, so a long
#: run (a 1M-opportunity CRM) does not look hung and a short one prints nothing more than its result line.
PROGRESS_AFTER_SECONDS = 20.0
#: Past `PROGRESS_AFTER_SECONDS`, a cell that keeps running is said again every this many seconds (a backtest cell runs
#: for minutes on a large CRM, under one heading).
PROGRESS_EVERY_SECONDS = 60.0

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)


class _KernelRun:
    """What the kernel manager and nbclient's hooks share while one report runs.

    `cell_running` is set from a code cell's execute request to its reply; `peak_rss` receives the kernel's peak
    resident memory at shutdown. Once the report has run longer than `PROGRESS_AFTER_SECONDS`, `say` gets
    ``  NAME: § HEADING (cell K/N, S s)`` when a code cell starts under a heading other than the last one said, and
    while one cell runs, once the threshold is passed and again every `PROGRESS_EVERY_SECONDS` (from `watch`'s
    thread; a report whose long first cell started before the threshold is said at it): K counts the
    notebook's code cells (papermill's injected parameters left out), N is their number, S the report's seconds so far.
    """

    def __init__(self, name: str, code_cells: int, say: Callable[[str], Any] | None, start: float) -> None:
        self.name, self.code_cells, self.say, self.start = name, code_cells, say, start
        self.cell_running = threading.Event()
        self.peak_rss: int | None = None
        self.heading: str | None = None
        self.said: str | None = None
        self.said_at = start
        self.done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _line(self, now: float) -> str:
        section = f"\u00a7 {self.heading} " if self.heading else ""
        return f"  {self.name}: {section}(cell {self.done}/{self.code_cells}, {now - self.start:.0f} s)"

    def cell_start(self, cell: Any = None, **_: Any) -> None:
        """The ``on_cell_start`` hook (every cell, markdown too): a markdown cell's last heading is the section."""
        if cell is not None and cell.get("cell_type") == "markdown":
            headings = _HEADING.findall(str(cell.get("source", "")))
            if headings:
                self.heading = _plain(headings[-1])

    def cell_execute(self, cell: Any = None, **_: Any) -> None:
        """The ``on_cell_execute`` hook of nbclient (a code cell about to run)."""
        self.cell_running.set()
        if cell is not None and "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            return
        with self._lock:
            self.done += 1
            now = time.monotonic()
            if self.say is None or self.heading is None or self.heading == self.said:
                return
            if now - self.start >= PROGRESS_AFTER_SECONDS:
                self.said, self.said_at = self.heading, now
                self.say(self._line(now))

    def cell_executed(self, **_: Any) -> None:
        """The ``on_cell_executed`` hook of nbclient (its reply came)."""
        self.cell_running.clear()

    def tick(self) -> None:
        """Past the threshold, while a cell runs: say it if nothing was said yet, or the last line is old enough."""
        with self._lock:
            now = time.monotonic()
            if self.say is None or not self.cell_running.is_set() or now - self.start < PROGRESS_AFTER_SECONDS:
                return
            if self.said_at == self.start or now - self.said_at >= PROGRESS_EVERY_SECONDS:  # the first line, or due
                self.said, self.said_at = self.heading, now
                self.say(self._line(now))

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """While inside, a thread calls `tick` every second (none without `say`)."""
        if self.say is None:
            yield
            return

        def loop() -> None:
            while not self._stop.wait(min(1.0, PROGRESS_EVERY_SECONDS)):
                self.tick()

        thread = threading.Thread(target=loop, name=f"progress-{self.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()


def _code_cells(path: Path) -> int:
    """The code cells nbclient executes in the notebook at `path` (those with some source); 0 when unreadable."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:
        return 0
    return sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())


_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{% block extra_css %}
<style type="text/css">
main { max-width: 1200px; margin: 0 auto; }
.jp-RenderedHTMLCommon table { font-size: 13px; }
NAV_CSS
</style>
{% endblock extra_css %}
"""
#: The bar at the top of every report page (`_nav_html`): fixed, so the index and the sections are one click away
#: anywhere on the page; one line high (the sibling links scroll sideways when too many), over a spacer of its
#: height; headings a link jumps to land below it. It closes the page's body in the document (`_with_nav`), so the
#: report's own text comes first for a reader of the source, a screen reader, or a test that looks for a heading.
_NAV_CSS = """
body:has(> #report-nav)::before { content: ""; display: block; height: 40px; }
#report-nav { position: fixed; top: 0; left: 0; right: 0; z-index: 100; display: flex; flex-wrap: nowrap;
  align-items: center; gap: 4px 14px; max-width: 1200px; margin: 0 auto; padding: 7px 14px; box-sizing: border-box;
  background: #f3f5f8; border-bottom: 1px solid #d5dae1; font: 14px/1.4 system-ui, -apple-system, "Segoe UI",
  Roboto, sans-serif; }
#report-nav a { color: #1a56a8; text-decoration: none; } #report-nav a:hover { text-decoration: underline; }
#report-nav .nav-index { font-weight: 600; white-space: nowrap; }
#report-nav ul.nav-siblings { display: flex; flex-wrap: nowrap; gap: 2px 14px; list-style: none; margin: 0;
  padding: 0 0 0 14px; border-left: 1px solid #c8ced6; overflow-x: auto; min-width: 0; scrollbar-width: thin; }
#report-nav ul.nav-siblings li { margin: 0; white-space: nowrap; }
#report-nav [aria-current="page"] { font-weight: 600; color: #222; }
#report-nav .nav-needs { color: #8a5a00; font-size: 12px; }
#report-nav details { position: relative; } #report-nav details.nav-toc { margin-left: auto; }
#report-nav summary { cursor: pointer; color: #1a56a8; white-space: nowrap; }
#report-nav details > .nav-menu { position: absolute; right: 0; top: 1.8em; min-width: 300px; max-width: 520px;
  max-height: 70vh; overflow: auto; background: #fff; border: 1px solid #c8ced6; border-radius: 4px;
  box-shadow: 0 4px 14px rgba(0, 0, 0, 0.15); padding: 6px 14px; margin: 0; }
#report-nav details.nav-all > .nav-menu { left: 0; right: auto; }
#report-nav .nav-menu li { margin: 3px 0; list-style: none; } #report-nav ol.nav-menu { padding-left: 14px; }
h2[id], h3[id], section[id] { scroll-margin-top: 52px; }
"""
_render_lock = threading.Lock()
_exporter: Any = None


def _html_exporter() -> Any:
    global _exporter
    if _exporter is None:
        from jinja2 import DictLoader
        from nbconvert import HTMLExporter

        _exporter = HTMLExporter(
            template_name="lab",
            extra_loaders=[DictLoader({"salesforecast_report.html.j2": _TEMPLATE.replace("NAV_CSS", _NAV_CSS)})],
            template_file="salesforecast_report.html.j2",
            exclude_input=True,
            exclude_input_prompt=True,
            exclude_output_prompt=True,
        )
    return _exporter


#: Run in every report's kernel at startup: warnings and load notes go to the read-this-first box
#: (`salesforecast.session.record_limits`), from the first cell on.
_KERNEL_STARTUP = '__import__("salesforecast.session").session.record_limits()'
_STDERR_WARNING = re.compile(r"^\S[^\n]*?:\d+: ([A-Za-z_][\w.]*Warning): ([^\n]+)$", re.MULTILINE)


def _data_outputs(nb: nbformat.NotebookNode) -> Iterator[tuple[Any, Any]]:
    """Each output of the notebook's code cells, with its cell."""
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            for output in cell.get("outputs", []):
                yield cell, output


def _payload(output: Any, mimetype: str) -> dict[str, Any] | None:
    """The JSON payload of a display output of `mimetype`, or None."""
    if output.get("output_type") not in ("display_data", "execute_result"):
        return None
    data = output.get("data") or {}
    value = data.get(mimetype)
    if isinstance(value, str):  # JSON kept as text by some writers
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return dict(value) if isinstance(value, Mapping) else None


def report_limits(nb: nbformat.NotebookNode) -> list[dict[str, str]]:
    """What limits an executed report's numbers, in the order it arose, each once.

    The display outputs `salesforecast.session.record_limits` publishes (warnings raised in the cells, the load's
    notes), and, should a warning have reached stderr all the same, the warnings Python wrote there.

    Returns
    -------
    list of dict
        ``{"kind": "note" | "warning", "label", "category", "message"}``.
    """
    from salesforecast.session import LIMIT_MIMETYPE, NOTE_LABEL, warning_label

    out: dict[tuple[str, str, str], dict[str, str]] = {}
    for _, output in _data_outputs(nb):
        payload = _payload(output, LIMIT_MIMETYPE)
        if payload is not None and isinstance(payload.get("message"), str):
            kind = "note" if payload.get("kind") == "note" else "warning"
            limit = {
                "kind": kind,
                "label": str(payload.get("label") or (NOTE_LABEL if kind == "note" else "Note")),
                "category": str(payload.get("category") or kind),
                "message": payload["message"],
            }
            out.setdefault((kind, "" if kind == "note" else limit["category"], limit["message"]), limit)
        elif output.get("output_type") == "stream" and output.get("name") == "stderr":
            for match in _STDERR_WARNING.finditer(str(output.get("text", ""))):
                name = match.group(1).rsplit(".", 1)[-1]
                label = warning_label(type(name, (Warning,), {}))
                limit = {"kind": "warning", "label": label, "category": name, "message": match.group(2).strip()}
                out.setdefault(("warning", name, limit["message"]), limit)
    notes = [v for v in out.values() if v["kind"] == "note"]
    return notes + [v for v in out.values() if v["kind"] == "warning"]


_BOX_STYLE = (
    "border:1px solid #d9a400;border-left:6px solid #d9a400;background:#fff8e1;border-radius:4px;"
    "padding:6px 14px 8px 14px;margin:0 0 1.5em 0;font-size:14px;line-height:1.45"
)


def _read_this_first(limits: Sequence[Mapping[str, str]]) -> str:
    """The read-this-first box (escaped); "" when nothing limits the numbers."""
    if not limits:
        return ""
    items = "".join(
        f"<li><b>{html.escape(str(limit['label']))}:</b> {html.escape(str(limit['message']))}</li>" for limit in limits
    )
    return (
        f'<section id="read-this-first" style="{_BOX_STYLE}">'
        '<h2 style="font-size:16px;margin:4px 0 4px 0">Read this first</h2>'
        '<p style="margin:0 0 4px 0">What limits the numbers of this report: what the data load could not fix, and'
        " what the analyses found while they ran.</p>"
        f'<ul style="margin:0;padding-left:22px">{items}</ul>'
        "</section>"
    )


def _inline_note(limit: Mapping[str, str]) -> dict[str, Any]:
    """A warning where it arose: a small note (its full text is in the read-this-first box)."""
    text = (
        '<div class="salesforecast-limit" style="font-size:12px;color:#6b5200;margin:2px 0 6px 0">'
        f"&#9888; <b>{html.escape(str(limit['label']))}:</b> {html.escape(str(limit['message']))}</div>"
    )
    return {"output_type": "display_data", "metadata": {}, "data": {"text/html": text}}


def _is_header(out: Mapping[str, Any]) -> bool:
    text = (out.get("data") or {}).get("text/html", "") if out.get("output_type") != "stream" else ""
    text = "".join(text) if isinstance(text, list) else str(text)
    return 'class="salesforecast-header"' in text


def _header_cell(nb: nbformat.NotebookNode) -> int | None:
    """The index of the cell showing the report's header (`report_header`), None without one."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code" and any(_is_header(o) for o in cell.get("outputs", [])):
            return index
    return None


def _is_headline(out: Mapping[str, Any]) -> bool:
    text = (out.get("data") or {}).get("text/html", "") if out.get("output_type") != "stream" else ""
    text = "".join(text) if isinstance(text, list) else str(text)
    return 'class="salesforecast-headline"' in text


def _hoist_headline(nb: nbformat.NotebookNode) -> None:
    """Move the report's headline (`headline`, the first one) to right after its header, wherever it was shown.

    A notebook shows its headline once the numbers behind it are computed, which may be late in the notebook;
    the page opens with it all the same.
    """
    found = next(((cell, out) for cell, out in _data_outputs(nb) if _is_headline(out)), None)
    if found is None:
        return
    cell, out = found
    cell["outputs"] = [o for o in cell["outputs"] if o is not out]
    for c, o in _data_outputs(nb):
        if _is_header(o):
            c["outputs"].insert(next(i for i, x in enumerate(c["outputs"]) if x is o) + 1, out)
            return
    import nbformat

    at = next(
        (i + 1 for i, c in enumerate(nb.cells) if c.get("cell_type") == "markdown" and c.source.startswith("#")), 0
    )
    nb.cells.insert(at, nbformat.v4.new_code_cell(source="", outputs=[out]))


def _place_box(nb: nbformat.NotebookNode, box: str) -> None:
    """Put the box right after the headline (`headline`), else the header (`report_header`), else the title."""
    import nbformat

    output = nbformat.v4.new_output("display_data", data={"text/html": box})
    for cell, out in _data_outputs(nb):
        if _is_headline(out):
            outputs = cell["outputs"]
            outputs.insert(next(i for i, o in enumerate(outputs) if o is out) + 1, output)
            return
    for cell, out in _data_outputs(nb):
        if _is_header(out):
            outputs = cell["outputs"]
            outputs.insert(next(i for i, o in enumerate(outputs) if o is out) + 1, output)
            return
    at = next(
        (i + 1 for i, c in enumerate(nb.cells) if c.get("cell_type") == "markdown" and c.source.startswith("#")), 0
    )
    nb.cells.insert(at, nbformat.v4.new_code_cell(source="", outputs=[output]))


#: Where a report page's navigation bar goes: `render_html` and `render_needs_html` write it, `_fill_navs` replaces
#: it once every report of the run is rendered (the bar links only to the pages the run made).
NAV_SLOT = "<!--salesforecast:nav-->"
#: More sibling reports than this, and the bar lists them in a menu instead of in line.
_NAV_INLINE = 8


class _PageReader(HTMLParser):
    """Reads a rendered page: its ``h2`` sections with an id (the table of contents) and its headline's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str, str]] = []
        self.headline: list[str] = []
        self._h2: tuple[str, list[str]] | None = None
        self._skip = 0  # inside an anchor link (the pilcrow nbconvert adds)
        self._headline_depth = 0  # >0 inside <section id="headline">
        self._para = 0  # 1 inside its first paragraph, 2 after it
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("id") == "headline" and not self._headline_depth:
            self._headline_depth = 1
        elif self._headline_depth and tag == "section":
            self._headline_depth += 1
        if self._headline_depth and tag == "p" and self._para == 0:
            self._para = 1
        if tag == "h2" and a.get("id"):
            self._h2 = (str(a["id"]), [])
        elif tag == "a" and "anchor-link" in str(a.get("class") or ""):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._skip:
            self._skip -= 1
        elif tag == "h2" and self._h2 is not None:
            text = " ".join("".join(self._h2[1]).split())
            if text:
                self.sections.append((self._h2[0], text))
            self._h2 = None
        elif tag == "p" and self._para == 1:
            self._para = 2
        elif tag == "section" and self._headline_depth:
            self._headline_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._h2 is not None and not self._skip:
            self._h2[1].append(data)
        if self._headline_depth and self._para == 1:
            self.headline.append(data)


def _read_page(page: str) -> _PageReader:
    reader = _PageReader()
    reader.feed(page)
    reader.close()
    return reader


def page_sections(page: str) -> list[tuple[str, str]]:
    """The sections of a rendered report: ``(id, text)`` of each ``h2`` with an id (a notebook's ``##`` heading).

    Examples
    --------
    >>> page_sections('<h2 id="Rep-bias">Rep <i>bias</i><a class="anchor-link" href="#Rep-bias">¶</a></h2><h2>x</h2>')
    [('Rep-bias', 'Rep bias')]
    """
    return _read_page(page).sections


def page_headline(page: str, limit: int = 240) -> str | None:
    """The headline of a rendered report for the index: the first paragraph of its ``<section id="headline">``.

    Plain text (tags dropped, entities read, whitespace collapsed), cut at `limit` characters; None without one.

    Examples
    --------
    >>> page_headline('<section id="headline"><p>We make it: <b>1.2M</b> of 1.0M.</p><p>more</p></section>')
    'We make it: 1.2M of 1.0M.'
    >>> page_headline("<p>no headline</p>") is None
    True
    """
    text = " ".join("".join(_read_page(page).headline).split())
    if not text:
        return None
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _nav_html(
    current: str | None, pages: Sequence[tuple[str, str, str]], sections: Sequence[tuple[str, str]] = ()
) -> str:
    """The navigation bar of a report page, all links relative (the page sits beside ``index.html``).

    Parameters
    ----------
    current : str or None
        The file name of this page (shown, not linked).
    pages : sequence of (file name, title, status)
        The run's pages, in the configuration's order; status ``needs`` is marked.
    sections : sequence of (id, text)
        This page's sections (`page_sections`): the "On this page" menu.
    """

    def item(href: str, title: str, status: str) -> str:
        mark = ' <span class="nav-needs">(needs data)</span>' if status == "needs" else ""
        if href == current:
            return f'<li><span aria-current="page">{html.escape(title)}</span>{mark}</li>'
        return f"<li>{_link(href, title)}{mark}</li>"

    items = "".join(item(*p) for p in pages)
    parts = ['<nav id="report-nav" aria-label="Reports of this run">', _link("index.html", "\u2190 All reports")]
    if len(pages) > _NAV_INLINE:
        parts.append(
            f'<details class="nav-all"><summary>Reports of this run ({len(pages)})</summary>'
            f'<ul class="nav-menu">{items}</ul></details>'
        )
    elif pages:
        parts.append(f'<ul class="nav-siblings">{items}</ul>')
    if sections:
        toc = "".join(
            f'<li><a href="#{html.escape(quote(i, safe=_ID_SAFE), quote=True)}">{html.escape(t)}</a></li>'
            for i, t in sections
        )
        parts.append(
            f'<details class="nav-toc"><summary>On this page</summary><ol class="nav-menu">{toc}</ol></details>'
        )
    parts.append("</nav>")
    return "".join(parts).replace("<a ", '<a class="nav-index" ', 1)


#: Characters an anchor of nbconvert's heading ids keeps unencoded in a fragment (``#This-period:-where...``).
_ID_SAFE = "-._~:,'!$()*+;=@/?"


def _with_nav(page: str, nav: str) -> str:
    """`page` with `nav` in its slot (`NAV_SLOT`, the last one), or closing its body when it has none; once.

    The bar is shown at the top (fixed, `_NAV_CSS`) but stands last in the document, after the report's text.
    """
    at = page.rfind(NAV_SLOT)
    if at >= 0:
        return page[:at] + nav + page[at + len(NAV_SLOT) :]
    return _closing_body(page, nav)


def _closing_body(page: str, nav: str) -> str:
    """`page` with `nav` as the last thing in its body."""
    at = page.rfind("</body>")
    return page if at < 0 else page[:at] + nav + "\n" + page[at:]


_H1 = re.compile(r"<h1(?P<attrs>[^>]*)>.*?</h1>", re.DOTALL)


def _retitle(page: str, title: str) -> str:
    """The page with its ``<title>`` and first ``<h1>`` saying `title` (escaped), keeping the heading's anchor."""
    page = re.sub(
        r"<title>.*?</title>", lambda _: f"<title>{html.escape(title)}</title>", page, count=1, flags=re.DOTALL
    )
    match = _H1.search(page)
    if match is None:
        return page
    anchor = re.search(r'\sid="([^"]*)"', match.group("attrs"))
    link = f'<a class="anchor-link" href="#{anchor.group(1)}">\u00b6</a>' if anchor else ""
    return page[: match.start()] + f"<h1{match.group('attrs')}>{html.escape(title)}{link}</h1>" + page[match.end() :]


def render_html(nb: nbformat.NotebookNode, title: str, nav: str = "") -> str:
    """Render an executed notebook as a self-contained HTML page with the code hidden.

    The report's answer opens it: its headline (`headline`, wherever the notebook showed it) right after the
    header. What limits the report's numbers (`report_limits`: warnings raised in its cells, the load's notes)
    follows, in a ``<section id="read-this-first">`` box right after the headline (after the header, else the
    title, when there is no headline); each warning is also noted, small, where it arose. Without any, there is
    no box. Inputs, prompts and the rest of stderr are left out; nothing is loaded from a CDN (the lab
    template's require.js, MathJax and mermaid scripts are dropped); images are inline. Every text from the
    data is escaped.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook.
    title : str
        The page title and the text of its first heading (escaped): each parameter set's own title.
    nav : str
        The navigation bar (`_nav_html`), or `NAV_SLOT` for one filled in later; it closes the page's body and is
        shown at its top.

    Returns
    -------
    str
    """
    import copy

    from salesforecast.session import LIMIT_MIMETYPE, NEEDS_MIMETYPE

    nb = copy.deepcopy(nb)
    limits = report_limits(nb)
    header = _header_cell(nb)
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        # a warning raised before the header is shown (e.g. while loading) is said by the box just below it: a
        # note where it arose would stand above the header, repeating the box
        above_box = header is not None and index <= header
        kept = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                continue
            if _payload(o, NEEDS_MIMETYPE) is not None:
                continue
            limit = _payload(o, LIMIT_MIMETYPE)
            if limit is not None:
                if limit.get("kind") != "note" and not above_box and isinstance(limit.get("message"), str):
                    kept.append(_inline_note({"label": limit.get("label") or "Note", "message": limit["message"]}))
                continue
            kept.append(o)
        cell["outputs"] = kept
    _hoist_headline(nb)
    box = _read_this_first(limits)
    if box:
        _place_box(nb, box)
    with _render_lock:
        body, _ = _html_exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = _retitle(body, title)
    return _closing_body(body, nav) if nav else body


_NEEDS_CSS = (
    """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 2rem auto; max-width: 900px; color: #222; padding: 0 1rem; line-height: 1.5; }
h1 { font-size: 1.6rem; margin-bottom: 0.3rem; } h2 { font-size: 1.2rem; }
h3 { font-size: 1rem; margin: 1.2em 0 0.3em 0; }
p.meta { color: #555; font-size: 13px; margin-top: 0; }
#report-needs { border: 1px solid #b5b5b5; border-left: 6px solid #3b6db3; border-radius: 4px;
                padding: 4px 18px 12px 18px; background: #f5f8fc; margin: 1rem 0 1.5rem 0; }
table.params th { text-align: left; padding: 2px 12px 2px 0; font-weight: 600; } code { font-size: 13px; }
details.salesforecast-parameters { font-size: 13px; margin: 0 0 0.5rem 0; }
details.salesforecast-parameters summary { cursor: pointer; color: #444; }
"""
    + _NAV_CSS
)


def _items(texts: Iterable[Any]) -> str:
    return "".join(f"<li>{html.escape(str(t))}</li>" for t in texts)


def render_needs_html(
    title: str,
    needs: Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
    limits: Sequence[Mapping[str, str]] = (),
    generated_at: datetime | None = None,
    nav: str = "",
) -> str:
    """The one page a report renders when its data cannot support it: what it needs and what the data lacks.

    Parameters
    ----------
    title : str
        The report's title.
    needs : mapping
        `salesforecast.session.ReportNeeds.payload`: ``message`` and, when known, ``needs``, ``lacking``,
        ``fixes`` and ``notes``.
    parameters : mapping, optional
        The report's parameters (passwords in URLs are masked).
    limits : sequence of mapping
        What the report had found before it stopped (`report_limits`): shown in its read-this-first box.
    generated_at : datetime, optional
        Default: now (UTC).
    nav : str
        The navigation bar (`_nav_html`), or `NAV_SLOT` for one filled in later.

    Returns
    -------
    str
        A self-contained HTML page holding ``<section id="report-needs">``; every text is escaped, and no
        traceback is shown.

    Examples
    --------
    >>> page = render_needs_html("Lead <scoring>", {"message": "This report needs leads.", "needs": ["leads"]})
    >>> '<section id="report-needs">' in page and "Lead &lt;scoring&gt;" in page and "Traceback" not in page
    True
    """
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    params = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(mask_url(str(v)))}</code></td></tr>"
        for k, v in (parameters or {}).items()
    )
    message = str(needs.get("message") or "This report cannot run on this data.")
    fixes = list(needs.get("fixes") or [])
    if not fixes:
        fixes = [
            'Provide the data named above (the README\'s "Your own data" says what each report needs), or run'
            " the report on another source."
        ]
    fixes.append(
        "The data-quality report (01_data_quality) and salesforecast validate SOURCE show what the source holds"
        " and which rows were quarantined, and why."
    )
    parts = [
        f"<h1>{html.escape(str(title))}</h1>",
        '<p class="meta">This report was not produced: the data cannot support it.'
        f" Generated {html.escape(generated)}.</p>",
    ]
    if params:
        n = len(parameters or {})
        parts.append(
            f'<details class="salesforecast-parameters"><summary>Parameters ({n})</summary>'
            f'<table class="params">{params}</table></details>'
        )
    parts.append('<section id="report-needs">')
    parts.append("<h2>What this report needs</h2>")
    parts.append(f"<p>{html.escape(message)}</p>")
    if needs.get("needs"):
        parts.append(f"<h3>The report needs</h3><ul>{_items(needs['needs'])}</ul>")
    if needs.get("lacking"):
        parts.append(f"<h3>What the data lacks</h3><ul>{_items(needs['lacking'])}</ul>")
    parts.append(f"<h3>How to fix it</h3><ul>{_items(fixes)}</ul>")
    notes = list(needs.get("notes") or []) or [str(x["message"]) for x in limits if x.get("kind") == "note"]
    if notes:
        parts.append(f"<h3>Notes from the data load</h3><ul>{_items(notes)}</ul>")
    parts.append("</section>")
    found = [x for x in limits if x.get("kind") != "note"]
    if found:
        parts.append(_read_this_first(found))
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(str(title))}: what this report needs</title>
<style>{_NEEDS_CSS}</style>
</head>
<body>
{body}
{nav}
</body>
</html>
"""


def _needs_of(partial: Path, exc: Any) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """The `ReportNeeds` that stopped a report (its payload, else its message) and the limits found before."""
    from salesforecast.session import NEEDS_MIMETYPE

    needs: dict[str, Any] | None = None
    limits: list[dict[str, str]] = []
    with contextlib.suppress(Exception):
        import nbformat

        nb = nbformat.read(partial, as_version=4)
        limits = report_limits(nb)
        for _, output in _data_outputs(nb):
            needs = _payload(output, NEEDS_MIMETYPE) or needs
    if needs is None and getattr(exc, "ename", None) == "ReportNeeds":
        needs = {"message": str(getattr(exc, "evalue", "") or "")}
    if needs is not None:
        needs["message"] = mask_url(str(needs.get("message") or ""))
    return needs, limits


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


#: A kernel that dies before its first reply ran no cell: its report is started again, at most this many times more.
_KERNEL_START_RETRIES = 2


def _kernel_start_retried(run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `run`, again when the kernel died before replying to ``kernel_info`` (before any cell ran).

    Two kernels starting at once on one machine may pick the same free port (jupyter_client picks ports, then the
    kernel binds them: ``ZMQError: Address already in use``); the report then fails though nothing is wrong with
    it. Nothing ran, so starting it again is safe; any other error is raised as it is.
    """
    for attempt in range(_KERNEL_START_RETRIES + 1):
        try:
            return run(*args, **kwargs)
        except RuntimeError as exc:
            if "before replying to kernel_info" not in str(exc) or attempt == _KERNEL_START_RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _execute(spec: ReportSpec, run_dir: Path, kernel: str, say: Callable[[str], Any] | None = None) -> ReportResult:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    start = time.monotonic()
    partial = run_dir / f".{spec.name}.partial.ipynb"
    error: str | None = None
    headline: str | None = None
    run = _KernelRun(spec.name, _code_cells(spec.path), say, start)  # progress lines, a running cell, the peak
    try:
        with run.watch():
            nb = _kernel_start_retried(
                papermill.execute_notebook,
                str(spec.path),
                str(partial),
                parameters=dict(spec.parameters),
                kernel_name=kernel,
                # the kernel starts in the notebook's folder (nbclient's resources), without papermill's cwd=, which
                # changes the working directory of this whole process while reports run in threads
                resources={"metadata": {"path": str(spec.path.parent)}},
                progress_bar=False,
                log_output=False,
                execution_timeout=spec.timeout,
                kernel_manager_class=_kernel_manager_class(run),
                on_cell_start=run.cell_start,
                on_cell_execute=run.cell_execute,
                on_cell_executed=run.cell_executed,
                extra_arguments=[f"--IPKernelApp.exec_lines={_KERNEL_STARTUP}"],
            )
        html_path = run_dir / f"{spec.name}.html"
        page = render_html(nb, spec.title, nav=NAV_SLOT)
        headline = page_headline(page)
        _write_atomic(html_path, page)
    except PapermillExecutionError as exc:
        needs, limits = _needs_of(partial, exc)
        if needs is not None:  # the data cannot support the report: say what it needs, in place of the report
            html_path = run_dir / f"{spec.name}.html"
            _write_atomic(html_path, render_needs_html(spec.title, needs, spec.parameters, limits, nav=NAV_SLOT))
            partial.unlink(missing_ok=True)
            return ReportResult(
                spec, "needs", time.monotonic() - start, html=html_path, needs=needs["message"], peak_rss=run.peak_rss
            )
        error = mask_url(f"{exc.ename}: {exc.evalue} (cell [{exc.exec_count}])")
    except Exception as exc:  # a dead kernel, a timeout, a rendering error: the report fails, the run goes on
        error = mask_url(f"{type(exc).__name__}: {exc}".strip())
    seconds = time.monotonic() - start
    if error is None:
        partial.unlink(missing_ok=True)
        return ReportResult(spec, "ok", seconds, html=html_path, headline=headline, peak_rss=run.peak_rss)
    failed = None
    if partial.exists():
        failed = run_dir / f"{spec.name}.failed.ipynb"
        with contextlib.suppress(Exception):  # kept as it is when it cannot be read back
            _mask_outputs(partial)
        os.replace(partial, failed)
    return ReportResult(spec, "failed", seconds, failed_notebook=failed, error=error, peak_rss=run.peak_rss)


def _mask_outputs(path: Path) -> None:
    """Mask the secrets (`mask_url`) in the text outputs of a failed notebook: its tracebacks, errors and prints."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts = [("text", output.get("text")), ("evalue", output.get("evalue"))]
            texts += [(mime, value) for mime, value in output.get("data", {}).items() if mime.startswith("text/")]
            for key, value in texts:
                if isinstance(value, str) and mask_url(value) != value:
                    (output if key in ("text", "evalue") else output["data"])[key] = mask_url(value)
                    changed = True
            if isinstance(output.get("traceback"), list):
                masked = [mask_url(line) for line in output["traceback"]]
                changed |= masked != output["traceback"]
                output["traceback"] = masked
    if changed:
        nbformat.write(nb, path)


def _execute_safely(
    spec: ReportSpec, run_dir: Path, kernel: str, say: Callable[[str], Any] | None = None
) -> ReportResult:
    start = time.monotonic()
    try:
        return _execute(spec, run_dir, kernel, say)
    except Exception as exc:  # e.g. the run folder became unwritable: still one failed report, not a crash
        return ReportResult(spec, "failed", time.monotonic() - start, error=mask_url(f"{type(exc).__name__}: {exc}"))


def _print_flushed(line: str) -> None:
    print(line, flush=True)


def _new_run_dir(out: Path) -> tuple[Path, str]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        name = stamp if n == 0 else f"{stamp}-{n}"
        path = out / name
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path, name
    raise RuntimeError(f"{out}: cannot create a run folder named {stamp}")


def run_reports(
    config: str | Path = DEFAULT_CONFIG,
    out_dir: str | Path | None = None,
    only: Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    as_of: str | None = None,
    echo: Callable[[str], Any] | None = None,
) -> RunResult:
    """Execute the configured reports and render them to HTML.

    Parameters
    ----------
    config : path
        The YAML configuration (see the module docstring).
    out_dir : path, optional
        Where the run folder and ``latest`` go; default: the configuration's ``output`` (``reports/``).
    only : sequence of str, optional
        Run only these reports (notebook or output names).
    params : mapping, optional
        Parameters set on every selected report (see `load_config`).
    jobs : int, optional
        Reports executed at the same time; default: the number of cores.
    as_of : str, optional
        The ``as_of`` parameter of every report whose notebook has one.
    echo : callable, optional
        Receives the lines: one per report as it ends (status, wall time, the kernel's peak memory), a summary, and
        while a report runs longer than `PROGRESS_AFTER_SECONDS`, one per section of its notebook that starts (see
        `_KernelRun`); default: print them (flushed). Called from the reports' threads, one line at a time.

    Returns
    -------
    RunResult
        ``exit_code`` is 0 when every report rendered, 3 when none failed but some rendered a "what this report
        needs" page, and 1 when some failed. Reports whose ``when:`` does not hold are skipped (and said so).

    Raises
    ------
    ConfigError
        When the configuration is invalid (nothing has run).
    """
    emit = echo or _print_flushed
    say_lock = threading.Lock()

    def say(line: str) -> None:
        with say_lock:
            emit(line)

    plan = load_config(config, only=only, params=params, as_of=as_of)
    if jobs is not None and (isinstance(jobs, bool) or int(jobs) < 1):
        raise ConfigError(f"--jobs must be a positive number, got {jobs!r}")
    # absolute: papermill's file handler changes the process's working directory around each read and write, and
    # reports run in threads, so a relative output path could be resolved from another folder
    out = (Path(out_dir) if out_dir is not None else plan.output).absolute()
    workers = max(1, min(int(jobs or os.cpu_count() or 1), len(plan.specs)))
    kernel = kernel_name()
    run_dir, run_id = _new_run_dir(out)
    for spec, why in plan.skipped:
        say(f"skipped {spec.name}: {why}")
    say(f"{len(plan.specs)} report(s), {workers} at a time, kernel {kernel!r} -> {_relative(run_dir)}")
    started = datetime.now(UTC)
    by_spec: dict[int, ReportResult] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="report") as pool:
        futures = {pool.submit(_execute_safely, s, run_dir, kernel, say): i for i, s in enumerate(plan.specs)}
        for future in as_completed(futures):
            res = future.result()
            by_spec[futures[future]] = res
            status = {"ok": "ok", "needs": "needs"}.get(res.status, "FAILED")
            peak = "" if res.peak_rss is None else f"  peak {memory_text(res.peak_rss)}"
            line = f"{status:>6}  {res.spec.name}  {res.seconds:.1f} s{peak}"
            said = res.error if res.status == "failed" else res.needs
            say(line if said is None else f"{line}  {said}")
    results = [by_spec[i] for i in range(len(plan.specs))]
    _fill_navs(results)
    result = RunResult(run_dir=run_dir, latest_dir=out / "latest", results=results, skipped=list(plan.skipped))
    generated = started.strftime("%Y-%m-%d %H:%M UTC")
    run_entries = [_entry(r, run_id, generated) for r in results]
    _write_manifest(run_dir / "manifest.json", run_entries)
    _write_atomic(run_dir / "index.html", _index_html(f"Reports of run {run_id}", run_entries, run_id, here=run_id))
    _update_latest(out, run_dir, run_id, run_entries)
    failed, needing = result.failed, result.needing
    skipped = f", {len(plan.skipped)} skipped" if plan.skipped else ""
    say(
        f"{len(results) - len(failed) - len(needing)} rendered, {len(needing)} need data they lack (a page says"
        f" what), {len(failed)} failed{skipped}; index: {_relative(out / 'latest' / 'index.html')}"
    )
    for r in failed:
        kept = f" (notebook kept: {_relative(r.failed_notebook)})" if r.failed_notebook else ""
        say(f"failed: {r.spec.name}: {r.error}{kept}")
    return result


# ------------------------------------------------------------------------------------ index and latest
def _fill_navs(results: Sequence[ReportResult]) -> None:
    """Write each page's navigation bar into its slot: the index, the run's other pages, the page's sections."""
    pages = [(r.html.name, r.spec.title, r.status) for r in results if r.html is not None]
    for r in results:
        if r.html is None:
            continue
        with contextlib.suppress(OSError):  # a page that cannot be read back keeps its (invisible) slot
            page = r.html.read_text(encoding="utf-8")
            _write_atomic(r.html, _with_nav(page, _nav_html(r.html.name, pages, page_sections(page))))


def _entry(r: ReportResult, run_id: str, generated: str) -> dict[str, Any]:
    return {
        "name": r.spec.name,
        "notebook": r.spec.notebook,
        "title": r.spec.title,
        "description": r.spec.description,
        "audience": r.spec.audience,
        "headline": mask_url(r.headline) if r.headline else None,
        "parameters": {
            k: (mask_url(v) if isinstance(v, str) else v if isinstance(v, (int, float, bool)) else mask_url(str(v)))
            for k, v in r.spec.parameters.items()
        },
        "status": r.status,
        "seconds": round(r.seconds, 1),
        "peak_rss": r.peak_rss,  # bytes, the kernel's VmHWM; None where it cannot be read (not Linux)
        "html": r.html.name if r.html else None,
        "failed_notebook": r.failed_notebook.name if r.failed_notebook else None,
        "error": r.error,  # masked where it was made (`_execute`)
        "needs": r.needs,
        "run": run_id,
        "generated": generated,
        "html_run": run_id if r.html else None,
    }


def _masked(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest entry with its parameters, error and needs masked (`mask_url`): also those of earlier runs."""
    out = dict(entry)
    params = out.get("parameters")
    if isinstance(params, Mapping):
        out["parameters"] = {k: mask_url(v) if isinstance(v, str) else v for k, v in params.items()}
    for key in ("error", "needs", "headline"):
        if isinstance(out.get(key), str):
            out[key] = mask_url(out[key])
    return out


def _write_manifest(path: Path, entries: Iterable[Mapping[str, Any]]) -> None:
    entries = [_masked(e) for e in entries]
    _write_atomic(path, json.dumps({e["name"]: e for e in entries}, indent=2, sort_keys=False) + "\n")


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } p.meta { color: #555; margin-top: 0.3rem; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; } td.num { text-align: right; white-space: nowrap; }
td.report { width: 70%; } a.report { font-size: 16px; font-weight: 600; color: #1a56a8; text-decoration: none; }
a.report:hover { text-decoration: underline; }
p.what { margin: 3px 0 0 0; line-height: 1.45; } p.headline { margin: 4px 0 0 0; font-weight: 600; }
p.for, p.params { margin: 3px 0 0 0; color: #555; font-size: 13px; }
td.log { color: #555; font-size: 13px; }
.ok { color: #1b7a1b; font-weight: 600; } .failed { color: #b00020; font-weight: 600; }
.needs { color: #8a5a00; font-weight: 600; }
code { font-size: 12px; } .note { color: #666; font-size: 12px; }
"""


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(quote(href), quote=True)}">{html.escape(text)}</a>'


def _index_html(heading: str, entries: Sequence[Mapping[str, Any]], run_id: str, here: str | None) -> str:
    """The index page: one row per report, what it answers first (title, description, headline, audience).

    The run log (status, duration, generation time, notes) follows, smaller. `here` is the run folder the page sits
    in (None for latest). Every text is escaped and secrets are masked.
    """
    rows = []
    for e in entries:
        params = e.get("parameters") or {}
        shown = " &middot; ".join(
            f"{html.escape(parameter_label(k))} <code>{html.escape(mask_url(str(v)))}</code>" for k, v in params.items()
        )
        notes = []
        title = str(e.get("title") or e["name"])
        if e.get("html"):
            report = _link(e["html"], title).replace("<a ", '<a class="report" ', 1)
            if e.get("status") == "failed" and e.get("html_run"):
                notes.append(f"showing the last good report, of run {html.escape(str(e['html_run']))}")
        else:
            report = f'<span class="report">{html.escape(title)}</span>'
        if e.get("failed_notebook"):
            prefix = "" if here == e.get("run") else f"../{e.get('run')}/"
            notes.append("executed notebook: " + _link(prefix + e["failed_notebook"], e["failed_notebook"]))
        if e.get("error"):
            notes.append(f"<code>{html.escape(mask_url(str(e['error'])))}</code>")
        if e.get("status") == "needs" and e.get("needs"):
            notes.append(html.escape(mask_url(str(e["needs"]))))
        about = [report]
        if e.get("description"):
            about.append(f'<p class="what">{html.escape(mask_url(str(e["description"])))}</p>')
        if e.get("headline") and e.get("status") == "ok":
            about.append(f'<p class="headline">{html.escape(mask_url(str(e["headline"])))}</p>')
        if e.get("audience"):
            about.append(f'<p class="for">For: {html.escape(mask_url(str(e["audience"])))}</p>')
        about.append(
            f'<p class="params">{shown or "default parameters"}'
            f' <span class="note">({html.escape(str(e["name"]))})</span></p>'
        )
        status = e.get("status") if e.get("status") in ("ok", "needs") else "failed"
        rss = e.get("peak_rss")
        peak = (
            f'<br><span class="note" title="the peak resident memory of the report\'s kernel">peak '
            f"{memory_text(float(rss))}</span>"
            if isinstance(rss, (int, float)) and not isinstance(rss, bool)
            else ""
        )
        rows.append(
            "<tr>"
            f'<td class="report">{"".join(about)}</td>'
            f'<td class="{status}">{status}</td>'
            f'<td class="num log">{float(e.get("seconds") or 0):.1f} s{peak}</td>'
            f'<td class="log">{html.escape(str(e.get("generated", "")))}<br><span class="note">run '
            f"{html.escape(str(e.get('run', '')))}</span>"
            f'{"<br>" if notes else ""}<span class="note">{"<br>".join(notes)}</span></td>'
            "</tr>"
        )
    n_failed = sum(1 for e in entries if e.get("status") not in ("ok", "needs"))
    n_needs = sum(1 for e in entries if e.get("status") == "needs")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(heading)}</title>
<style>{_INDEX_CSS}</style>
</head>
<body>
<h1>{html.escape(heading)}</h1>
<p class="meta">{len(entries)} report(s), {n_failed} failed, {n_needs} need data the source lacks (status needs:
the report's page says what it needs). Latest run: {html.escape(run_id)}.
Each report states its data source, parameters, as-of date and generation time in its header.</p>
<table>
<thead><tr><th>report</th><th>status</th><th>duration, memory</th><th>generated, notes</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body>
</html>
"""


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out/.lock`` (POSIX) while ``latest`` is rebuilt."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(out / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _place(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (a copy where links are not possible)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _update_latest(out: Path, run_dir: Path, run_id: str, run_entries: Sequence[Mapping[str, Any]]) -> None:
    """Rebuild ``out/latest``: earlier entries overlaid by this run's; failures keep their last good HTML.

    A "what this report needs" page (status ``needs``) is this run's answer for the data and replaces the report.
    """
    with _locked(out):
        latest = out / "latest"
        old_dir = latest.resolve() if latest.exists() else None
        merged = _read_manifest(old_dir) if old_dir else {}
        snapshot = out / f".latest-{run_id}"
        if snapshot.exists():
            shutil.rmtree(snapshot)
        snapshot.mkdir()
        for e in run_entries:
            entry = dict(e)
            prev = merged.get(e["name"])
            failed = e["status"] == "failed"  # a needs page is this run's answer for the data: it replaces
            if failed and prev and prev.get("html") and old_dir and (old_dir / prev["html"]).exists():
                entry["html"] = prev["html"]
                entry["html_run"] = prev.get("html_run")
            merged[e["name"]] = entry
        for e in merged.values():
            if not e.get("html"):
                continue
            home = run_dir if e.get("html_run") == run_id else old_dir
            src = home / e["html"] if home is not None else None
            if src is None or not src.exists():
                e["html"] = e["html_run"] = None
                continue
            _place(src, snapshot / e["html"])
        entries = list(merged.values())
        _write_manifest(snapshot / "manifest.json", entries)
        _write_atomic(snapshot / "index.html", _index_html("Latest reports", entries, run_id, here=None))
        _swap_latest(out, snapshot)
        superseded = old_dir is not None and old_dir.name.startswith(".latest-") and old_dir.name != snapshot.name
        if superseded and old_dir.parent == out.resolve():
            shutil.rmtree(old_dir, ignore_errors=True)


def _swap_latest(out: Path, snapshot: Path) -> None:
    """Point ``out/latest`` at `snapshot` atomically (a symlink put in place by `replace_path`)."""
    latest = out / "latest"
    tmp = out / f".latest-link-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(snapshot.name, target_is_directory=True)
    except OSError:  # no symlinks here: the folder itself
        replace_path(snapshot, latest)
        return
    replace_path(tmp, latest)  # over a link, or over a real folder from an older layout


# ------------------------------------------------------------------------------------ notebook helpers
def _when(value: Any) -> str:
    """A date as ``2024-06-30``, or ``2024-06-30 14:05`` when it has a time of day; ``n/a`` when missing."""
    import pandas as pd

    if value is None:
        return "n/a"
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return str(value)
    if pd.isna(stamp):
        return "n/a"
    return when_text(stamp)


def report_header(
    title: str,
    params: Mapping[str, Any],
    as_of: Any = None,
    generated_at: datetime | None = None,
) -> HTML:
    """The header of a report: one line (title, data as-of date, source, generation time), then the parameters.

    The parameters are folded in a closed ``<details class="salesforecast-parameters">`` (a click opens them), so
    the report's first screen is its answer, not its settings. Every value is escaped.

    Parameters
    ----------
    title : str
        The report's title.
    params : mapping
        The notebook's parameters and their values (passwords in URLs are masked).
    as_of : timestamp, str or None
        The data's as-of date.
    generated_at : datetime, optional
        Default: now (UTC).

    Returns
    -------
    IPython.display.HTML

    Examples
    --------
    >>> h = report_header("Data <quality>", {"source": "<script>"}, "2024-06-30")
    >>> "&lt;script&gt;" in h.data and "<script>" not in h.data
    True
    """
    from IPython.display import HTML

    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    rows = "".join(
        f'<tr><th style="text-align:left;padding:2px 12px 2px 0">{html.escape(parameter_label(k))}</th>'
        f'<td style="text-align:left"><code>{html.escape(mask_url(str(v)))}</code></td></tr>'
        for k, v in params.items()
    )
    source = params.get("source")
    shown_source = f" &middot; source <b>{html.escape(_value_text(source))}</b>" if source not in (None, "") else ""
    parameters = (
        '<details class="salesforecast-parameters" style="margin:4px 0 0 0;font-size:13px">'
        f'<summary style="cursor:pointer;color:#444">Parameters ({len(params)})</summary>'
        f'<table style="margin:6px 0 0 0;font-size:13px">{rows}</table>'
        "</details>"
        if params
        else ""
    )
    return HTML(
        '<div class="salesforecast-header" style="border:1px solid #ccc;border-radius:4px;padding:6px 12px;'
        'margin:0.5em 0 1.2em 0;background:#fafafa">'
        f'<div style="font-size:15px"><b>{html.escape(str(title))}</b>'
        f" &middot; data as of <b>{html.escape(_when(as_of))}</b>{shown_source}"
        f' &middot; <span style="color:#555">generated {html.escape(generated)}</span></div>'
        f"{parameters}"
        "</div>"
    )


_TONES = {"good": "#1a7f37", "bad": "#b42318", "warn": "#9a6700"}


_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _marked(text: str) -> str:
    """Escape a sentence, then turn its ``**bold**`` runs into ``<b>`` (the only markup a headline takes)."""
    return _BOLD.sub(r"<b>\1</b>", html.escape(str(text)))


def headline(sentence: str, figures: Sequence[Figure] = (), note: str = "") -> HTML:
    """A report's answer, first on its page: one sentence and three to six figures.

    The sentence answers the report's question (``"We will probably miss the quarter: ..."``); the figures
    back it. `render_html` moves the headline right after the report's header wherever the notebook shows it
    (so a notebook may show it once its numbers are computed), with the read-this-first box, when there is
    one, right after it; the run's index quotes its sentence (`page_headline`). Every text is escaped;
    ``**bold**`` in the sentence and the note is the only markup kept.

    Parameters
    ----------
    sentence : str
        The answer, in words, claiming no more than the read-this-first box allows.
    figures : sequence of Figure
        The figures behind it.
    note : str
        An optional second, smaller line (how sure, what it rests on).

    Returns
    -------
    IPython.display.HTML
        A ``<section id="headline" class="salesforecast-headline">``.

    Examples
    --------
    >>> h = headline("We **will** make it <b>", [Figure("Quota", "€1.0M"), Figure("P50", "€1.2M", "P10-P90 …")])
    >>> "<b>will</b>" in h.data and "&lt;b&gt;" in h.data and h.data.count('class="headline-figure"')
    2
    """
    from IPython.display import HTML

    cards = "".join(
        '<div class="headline-figure" style="border:1px solid #d0d7de;border-radius:6px;padding:6px 14px 7px 14px;'
        'background:#fff;min-width:120px">'
        f'<div style="font-size:12px;color:#57606a">{html.escape(str(f.label))}</div>'
        '<div class="headline-value" style="font-size:22px;font-weight:600;'
        f'color:{_TONES.get(f.tone or "", "#1f2328")}">'
        f"{html.escape(str(f.value))}</div>"
        + (f'<div style="font-size:12px;color:#57606a">{html.escape(str(f.detail))}</div>' if f.detail else "")
        + "</div>"
        for f in figures
    )
    return HTML(
        '<section id="headline" class="salesforecast-headline" style="margin:0 0 1.2em 0">'
        f'<p style="font-size:18px;line-height:1.4;margin:0 0 8px 0">{_marked(sentence)}</p>'
        + (f'<div style="display:flex;flex-wrap:wrap;gap:10px">{cards}</div>' if cards else "")
        + (f'<p style="font-size:13px;color:#57606a;margin:6px 0 0 0">{_marked(note)}</p>' if note else "")
        + "</section>"
    )


def _label(column: Any) -> str:
    """A column as a table shows it: its `salesforecast.labels` label (``pct_missing`` -> ``% missing``)."""
    from salesforecast.labels import label

    return label(column)


def _date_text(value: Any) -> str:
    text = _when(value)
    return "–" if text == "n/a" else text


def format_table(
    df: pd.DataFrame,
    percent: Sequence[str] = (),
    dates: Sequence[str] = (),
    precision: int = 2,
    index: bool = False,
    fractions: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    currency: str | None = None,
    kinds: Mapping[str, str] | None = None,
    caption: str | None = None,
) -> Styler:
    """A DataFrame styled for a report: human labels and units, escaped text, whole amounts and counts.

    Each column is written by its kind of values (see `salesforecast.labels`): the explicit arguments first, then
    the metrics of the table, then the registry `salesforecast.labels.COLUMNS`, then the dtype (an integer column
    as a count, a boolean one as ``yes`` / ``no``, a datetime one as a date). Headers are the registry's labels,
    an amount's with the currency when there is one; names of the code in a ``method`` column (and the other
    ``code`` columns) show under their labels; missing values show as ``–``, never ``NaN`` or ``None``.

    Parameters
    ----------
    df : pandas.DataFrame
    percent : sequence of str
        Columns holding percentages (0-100), shown like ``12.5%``.
    dates : sequence of str
        Datetime columns, shown as ``2024-06-30`` (``2024-06-30 14:05`` when there is a time of day).
    precision : int, default 2
        Decimals of the float columns of no known kind.
    index : bool, default False
        Show the index.
    fractions : sequence of str
        Columns holding fractions (0-1: rates, probabilities), shown as percentages like ``12.5%``.
    metrics : sequence of str, optional
        Columns holding accuracy metrics of `salesforecast.metrics.METRICS`, each shown in its units and under its
        label; default: the table's ``attrs["metrics"]``, which `salesforecast.forecast.leaderboard` and
        `salesforecast.forecast.recommend` set, so a report never restates which of their columns are
        percentages.
    currency : str, optional
        ISO 4217 code of the amounts (the process map's ``currency``), named in the amount columns' headers;
        default: the table's ``attrs["currency"]``, else none.
    kinds : mapping of str to str, optional
        Kinds of values of columns (one of `salesforecast.labels.KINDS`), over the registry's.
    caption : str, optional
        A line above the table (escaped), e.g. what its dashes mean.

    Returns
    -------
    pandas.io.formats.style.Styler
        Every cell and label is HTML-escaped; text columns are left-aligned.

    Examples
    --------
    >>> import pandas as pd
    >>> html = format_table(pd.DataFrame({"name": ["<b>x</b>"], "pct": [12.345]}), percent=["pct"]).to_html()
    >>> "&lt;b&gt;x&lt;/b&gt;" in html and "12.3%" in html
    True
    >>> "25.0%" in format_table(pd.DataFrame({"rate": [0.25]}), fractions=["rate"]).to_html()
    True
    >>> "12.5%" in format_table(pd.DataFrame({"wape": [0.125]}), metrics=["wape"]).to_html()
    True
    >>> page = format_table(pd.DataFrame({"method": ["monte_carlo"], "p50": [1234567.891]}), currency="EUR").to_html()
    >>> "Monte Carlo" in page and "P50 (EUR)" in page and "1,234,568" in page
    True
    """
    from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_integer_dtype, is_numeric_dtype

    from salesforecast.labels import format_value, kind_of, label
    from salesforecast.metrics import METRICS

    currency = currency if currency is not None else df.attrs.get("currency")
    named = df.attrs.get("metrics", ()) if metrics is None else metrics
    metric_columns = {c for c in named if c in df.columns and c in METRICS}
    chosen: dict[Any, str] = {}
    for c in df.columns:
        col = df[c]
        if c in (kinds or {}):
            kind = kinds[c]
        elif c in percent:
            kind = "percent"
        elif c in fractions:
            kind = "fraction"
        elif c in dates:
            kind = "date"
        elif c in metric_columns:
            units = METRICS[c].units
            kind = "signed_fraction" if c == "bias" else {"percent": "fraction", "amount": "amount"}.get(units, "ratio")
        elif is_bool_dtype(col):
            kind = "bool"
        elif is_datetime64_any_dtype(col):
            kind = "date"
        else:
            known = kind_of(c)
            numeric = is_numeric_dtype(col) and not is_bool_dtype(col)
            if known is not None and (numeric or known in ("code", "text", "bool", "date")):
                kind = known
            elif is_integer_dtype(col):
                kind = "count"
            elif numeric:
                kind = "number"
            elif col.dropna().map(lambda v: isinstance(v, bool)).all() and col.notna().any():
                kind = "bool"
            else:
                kind = "code" if known == "code" else "text"
        chosen[c] = kind

    def header(c: Any) -> str:
        shown = METRICS[c].label if c in metric_columns else label(c)
        if currency and chosen[c] in ("amount", "signed_amount") and not shown.endswith(f"({currency})"):
            shown = f"{shown} ({currency})"
        return html.escape(shown)

    styler = df.style.format(escape="html", precision=precision, thousands=",", na_rep="–")
    styler = styler.format_index(escape="html", axis=0, na_rep="–")
    styler = styler.format_index(header, axis=1)
    for c, kind in chosen.items():
        if kind == "text":
            continue
        styler = styler.format(lambda v, k=kind: html.escape(format_value(v, k, precision)), subset=[c], na_rep="–")
    text = [c for c in df.columns if chosen[c] in ("text", "code", "bool")]
    text = [c for c in text if not (is_numeric_dtype(df[c]) and chosen[c] != "bool")]
    if text:
        left = [{"selector": "th", "props": [("text-align", "left")]}]
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
        styler = styler.set_table_styles({c: left for c in text}, overwrite=False)
    # a number, a date or an id on one line: "+10.8 pp", "2024-06-30", "OPP-0001"
    whole = [c for c in df.columns if chosen[c] not in ("text", "code") or str(c).endswith("_id")]
    if whole:
        styler = styler.set_properties(subset=whole, **{"white-space": "nowrap"})
    if df.empty:
        styler = styler.set_caption("(no rows)")
    elif caption:
        styler = styler.set_caption(html.escape(caption))
    if not index:
        styler = styler.hide(axis="index")
    return styler


#: Per-rep tables and charts show every row up to this many; above it, the roll-up, the top rows and a fold.
FOLD_ABOVE = 20
#: Rows of a folded table (and bars of a folded chart) shown open by default.
FOLD_TOP = 12


def fold_rows(
    table: pd.DataFrame,
    key: str | Callable[[pd.DataFrame], pd.Series] | pd.Series | np.ndarray,
    *,
    ranked: str,
    what: str = "reps",
    top: int = FOLD_TOP,
    above: int = FOLD_ABOVE,
    ascending: bool = False,
    rollup: pd.DataFrame | None = None,
    rollup_caption: str | None = None,
    **format_args: Any,
) -> HTML:
    """A per-rep table that holds at scale: the roll-up, the rows that matter, and every row folded.

    Up to `above` rows, the whole table is shown as `format_table` shows it (and `rollup` is not). Above it: the
    roll-up table when one is given (e.g. the teams), then the `top` rows ranked by `key`, then "... and N more
    reps." and the whole table, every row in its given order, under a closed ``<details>`` a reader can open.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per rep (or any other unit), in the order the full table shows them (e.g. by name).
    key : str, callable, Series or array
        What ranks the rows that matter: a column, a function of the table returning one value per row, or the
        values themselves, one per row in the table's order (e.g. the distance of a ratio from 100%,
        `salesforecast.rollup.distance_from_target`). Rows whose key is missing come last.
    ranked : str
        How the open rows were chosen, in words, for the line above them (``"the furthest from 100% first"``).
    what : str
        What a row is, plural (``"reps"``).
    top : int
        Rows shown open when the table is folded.
    above : int
        The table is folded only when it has more rows than this.
    ascending : bool
        Rank the smallest keys first (default: the largest).
    rollup : pandas.DataFrame, optional
        The roll-up shown first when the table is folded (e.g. one row per team, or the company total).
    rollup_caption : str, optional
        The roll-up table's caption.
    **format_args
        Passed to `format_table` for every table (``currency``, ``fractions``, ``precision``...); a ``caption``
        captions the open rows and the full table.

    Returns
    -------
    IPython.display.HTML
        Every text is escaped (`format_table`, and `what` and `ranked` here); the fold is a
        ``<details class="salesforecast-fold">``.

    Examples
    --------
    >>> import pandas as pd
    >>> reps = pd.DataFrame({"owner": [f"rep {i:02d}" for i in range(30)], "deals": range(30)})
    >>> page = fold_rows(reps, "deals", ranked="the most deals first", top=5).data
    >>> page.count("<tr>") - 2, "and 25 more reps" in page, page.index("rep 29") < page.index("<details")
    (35, True, True)
    >>> "<details" in fold_rows(reps.head(20), "deals", ranked="the most deals first").data
    False
    """
    import numpy as np
    import pandas as pd
    from IPython.display import HTML

    n = len(table)
    if n <= above:
        return HTML(format_table(table, **format_args).to_html())
    values = key(table) if callable(key) else table[key] if isinstance(key, str) else key
    values = pd.Series(np.asarray(values), index=table.index)  # one value per row, in the table's order
    order = values.sort_values(ascending=ascending, na_position="last", kind="stable").index
    shown = table.loc[order[:top]]
    more = n - len(shown)
    caption = format_args.pop("caption", None)
    parts = ['<div class="salesforecast-fold">']
    if rollup is not None and not rollup.empty:
        parts.append(format_table(rollup, **format_args, caption=rollup_caption).to_html())
    lead = f"{len(shown)} of {n} {what}, {ranked}" + (f". {caption}" if caption else "")
    parts.append(f'<p class="fold-lead" style="margin:0.8em 0 0.3em 0">{html.escape(lead)}:</p>')
    parts.append(format_table(shown, **format_args).to_html())
    parts.append(
        f'<p class="fold-more" style="margin:0.4em 0">… and {more} more {html.escape(what)}.</p>'
        '<details class="salesforecast-fold" style="margin:0 0 1em 0">'
        f'<summary style="cursor:pointer">All {n} {html.escape(what)} (a table)</summary>'
        + format_table(table, **format_args, caption=caption).to_html()
        + "</details></div>"
    )
    return HTML("".join(parts))


# ------------------------------------------------------------------------------------ command line
def _default_config() -> Path:
    local = Path("reports.yml")
    return local if local.exists() else DEFAULT_CONFIG


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``salesforecast report`` to `parser`."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="report configuration (default: reports.yml here, else the repository's)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this report: a notebook name (all its parameter sets) or an output name; repeatable",
    )
    parser.add_argument("--as-of", default=None, metavar="DATE", help="as_of of every report that has one")
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a notebook parameter on every report, e.g. -p source=data/raw/acme; repeatable",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: reports/ beside the config)")
    parser.add_argument("--jobs", type=int, default=None, help="reports run at the same time (default: cores)")
    parser.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler, e.g. tcp://scheduler:8786: the forecast-accuracy report of a partitioned source runs"
        " on its cluster (the same as -p dask=ADDRESS; default: DASK_SCHEDULER_ADDRESS, else in the report's process)",
    )


def _parse_params(pairs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-p {mask_url(repr(pair))}: expected KEY=VALUE, e.g. -p source=data/raw/acme")
        out[key.strip()] = value
    return out


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``salesforecast report`` and return its exit status.

    0 (`EXIT_OK`) all rendered, 1 (`EXIT_FAILED`) some failed, 2 (`EXIT_CONFIG`) configuration error, 3
    (`EXIT_NEEDS`) none failed and some rendered a "what this report needs" page.
    """
    try:
        result = run_reports(
            config=args.config or _default_config(),
            out_dir=args.out,
            only=args.only,
            params=_parse_params(args.parameter) | ({"dask": args.dask} if getattr(args, "dask", None) else {}),
            jobs=args.jobs,
            as_of=args.as_of,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return result.exit_code
