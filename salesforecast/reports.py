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
        index.html                   every report of the run: parameters, status, duration, link
        manifest.json
      latest -> .latest-20261127T231500Z
                                     the newest good HTML of every report, with its own index.html

``reports/latest`` is replaced atomically at the end of a run, and a report that failed keeps its last
good HTML there. A failing notebook never stops the others.

The configuration::

    notebooks: notebooks       # optional: the notebook folder, relative to this file
    output: reports            # optional: where run folders go, relative to this file
    timeout: 1800              # optional: seconds a cell may run (default: no limit)
    reports:
      - notebook: 01_data_quality
      - notebook: 04_forecast_accuracy
        title: Forecast accuracy by team   # optional; else the notebook's first heading
        parameters:                        # one mapping, or a list of them (one report each)
          - {team: EMEA, period: FY2024Q3}
          - {team: AMER, period: FY2024Q3}

A report's file is named after its notebook and the slug of each parameter that differs from the
notebook's default (``04_forecast_accuracy__emea__fy2024q3.html``). The notebook helpers `report_header`
and `format_table` live here too: they escape every value, since rep, account and stage names are
untrusted text.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from salesforecast.config import KeyedError, Schema, checked, load_model, read_yaml, suggest
from salesforecast.io.database import mask_url

if TYPE_CHECKING:  # pragma: no cover
    import nbformat
    import pandas as pd
    from IPython.display import HTML
    from pandas.io.formats.style import Styler

__all__ = [
    "DEFAULT_CONFIG",
    "KERNEL_NAME",
    "ConfigError",
    "ReportPlan",
    "ReportResult",
    "ReportSpec",
    "ReportsFile",
    "RunResult",
    "add_report_arguments",
    "format_table",
    "kernel_name",
    "load_config",
    "output_name",
    "render_html",
    "report_header",
    "run_from_args",
    "run_reports",
]

#: The repository root (the package is installed in editable mode from it).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The configuration `salesforecast report` uses without ``--config``.
DEFAULT_CONFIG = REPO_ROOT / "reports.yml"
#: The kernelspec ``make venv`` registers inside the project's environment.
KERNEL_NAME = "salesforecast"

_SECRET_NAME = re.compile(r"(^|_)(password|passwd|pwd|secret|token|api_?key|credentials?)($|_)", re.IGNORECASE)
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
    """

    name: str
    notebook: str
    path: Path
    title: str
    parameters: dict[str, Any]
    timeout: float | None = None


@dataclass(frozen=True)
class ReportPlan:
    """A validated configuration: the file, the output folder and the reports to render."""

    config: Path
    output: Path
    specs: list[ReportSpec]


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
    raise ConfigError(f"{where}: expected a value of type {type_name}, got {value!r} ({type(value).__name__})")


def _default_value(info: Mapping[str, Any]) -> Any:
    try:
        return ast.literal_eval(str(info.get("default")))
    except (ValueError, SyntaxError):
        return _NO_DEFAULT


def _slug(value: Any) -> str:
    """A lowercase file-name slug of a parameter value; paths are named by their last component."""
    text = value.isoformat() if isinstance(value, (date, datetime)) else str(value)
    if re.fullmatch(r"[\w .~:+@=,-]*[/\\][\w .~:+@=,/\\-]*", text):  # a path: name it by its last part
        text = re.split(r"[/\\]+", text.rstrip("/\\"))[-1] or text
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return slug or hashlib.sha1(text.encode()).hexdigest()[:8]


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
    """
    order = list(defaults) + [k for k in parameters if k not in defaults]
    parts = [notebook]
    for key in order:
        if key in parameters and parameters[key] != defaults.get(key, _NO_DEFAULT):
            parts.append(_slug(parameters[key]))
    return "__".join(parts)


def _notebook_title(path: Path, fallback: str) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = re.match(r"#+\s+(.*\S)", line)
                if m:
                    return m.group(1)
    return fallback


def _check_secrets(params: Mapping[str, Any], where: str) -> None:
    for key, value in params.items():
        if _SECRET_NAME.search(str(key)):
            raise ConfigError(
                f"{where}: parameter {key!r} looks like a secret; secrets (passwords, tokens) are read from"
                " the environment, never passed as report parameters"
            )
        if isinstance(value, str) and mask_url(value) != value:
            raise ConfigError(
                f"{where}: parameter {key!r} holds a URL with a password (or a connection string with one); give it"
                " without the password and set the password in the environment"
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


def _any_text(value: Any) -> str:
    """A notebook or folder name; anything YAML gives is taken as its text."""
    return str(value)


_TIMEOUT = checked(_seconds, {"type": "number", "exclusiveMinimum": 0, "description": "seconds a cell may run"})


class ReportEntry(Schema):
    """One entry of ``reports:``: a notebook of the notebook folder (or just its name) and its parameter sets."""

    unknown_keys = "all"

    notebook: checked(lambda v: str(v).removesuffix(".ipynb"), {"type": "string"})
    title: checked(lambda v: str(v) if v else None, {"type": "string"}) = None
    parameters: checked(_parameter_sets, {"type": ["object", "array", "null"], "items": {"type": "object"}}) = Field(
        default_factory=lambda: [{}]
    )
    timeout: _TIMEOUT = None


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


def _entry_label(item: Any) -> str | None:
    """A reports entry as key paths show it: ``reports[0] (04_forecast_accuracy)``."""
    notebook = item.get("notebook") if isinstance(item, Mapping) else item
    return None if notebook is None else str(notebook).removesuffix(".ipynb")


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
        A missing or malformed file, an unknown key, an unknown notebook, a parameter the notebook does not
        declare or of the wrong type, a parameter that looks like a secret, two reports with the same
        parameters, or an `only` name that matches nothing.
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
    effective: list[str] = []
    origins: list[str] = []
    declares: list[set[str]] = []  # each report's declared parameters (a -p key must be declared by one selected)
    for i, entry in enumerate(model.reports):
        notebook = entry.notebook
        where = f"{src}: reports[{i}] ({notebook})"
        nb_path = model.notebook_path(entry, base)
        declared = papermill.inspect_notebook(str(nb_path))
        defaults = {k: _default_value(v) for k, v in declared.items()}
        sets = entry.parameters
        title = entry.title or _notebook_title(nb_path, notebook)
        timeout = entry.timeout or model.timeout
        for j, given in enumerate(sets):
            set_where = where if len(sets) == 1 else f"{where}: parameters[{j}]"
            merged = dict(given)
            merged.update(cli_params)
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
            effective.append(json.dumps(filled, sort_keys=True, default=str))
            origins.append(set_where.removeprefix(f"{src}: "))
            declares.append(set(declared))
            specs.append(
                ReportSpec(
                    name=output_name(notebook, final, defaults),
                    notebook=notebook,
                    path=nb_path,
                    title=title,
                    parameters=final,
                    timeout=timeout,
                )
            )
    specs = _disambiguate(specs, effective, origins, src)
    selected = [True] * len(specs)
    if only:
        wanted = set(only)
        missing = sorted(wanted - {s.notebook for s in specs} - {s.name for s in specs})
        if missing:
            names = sorted({s.notebook for s in specs} | {s.name for s in specs})
            raise ConfigError(f"{src}: --only {missing[0]!r} names no report; reports: {names}")
        selected = [s.notebook in wanted or s.name in wanted for s in specs]
    chosen = [s for s, keep in zip(specs, selected, strict=True) if keep]
    chosen_declares = [d for d, keep in zip(declares, selected, strict=True) if keep]
    for key in cli_params:
        if not any(str(key) in d for d in chosen_declares):
            names = sorted({s.notebook for s in chosen})
            raise ConfigError(
                f"{src}: -p {str(key)!r} is a parameter of none of the selected reports ({', '.join(names)}); "
                "papermill --help-notebook notebooks/NAME.ipynb lists a notebook's parameters"
            )
    return ReportPlan(config=path, output=output, specs=chosen)


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
            s = ReportSpec(s.name + f"-{digest}", s.notebook, s.path, s.title, s.parameters, s.timeout)
        out.append(s)
    return out


# ------------------------------------------------------------------------------------ execution
@dataclass
class ReportResult:
    """The outcome of one report.

    Attributes
    ----------
    spec : ReportSpec
    status : {"ok", "failed"}
    seconds : float
        Wall time of execution and rendering.
    html : Path or None
        The rendered HTML in the run folder (None when the report failed).
    failed_notebook : Path or None
        The executed notebook of a failure (``<name>.failed.ipynb``), when execution got that far.
    error : str or None
        ``ename: evalue`` of the exception that stopped the notebook.
    """

    spec: ReportSpec
    status: Literal["ok", "failed"]
    seconds: float
    html: Path | None = None
    failed_notebook: Path | None = None
    error: str | None = None


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

    @property
    def failed(self) -> list[ReportResult]:
        """The reports that failed."""
        return [r for r in self.results if r.status != "ok"]

    @property
    def exit_code(self) -> int:
        """0 when every report rendered, 1 when some failed."""
        return 1 if self.failed else 0


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
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class _ReportKernelManager(AsyncKernelManager):
        cell_running: threading.Event | None = None

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down and not (self.cell_running is not None and self.cell_running.is_set()):
                return  # idle: the shutdown request follows, an interrupt would only be logged as an error
            await super()._async_interrupt_kernel()

    if not (zmq.has("curve") and hasattr(AsyncKernelManager, "transport_encryption")):
        return _ReportKernelManager

    class _EncryptedKernelManager(_ReportKernelManager):
        @default("transport_encryption")
        def _default_transport_encryption(self) -> str:
            return "auto"  # encrypt when the kernelspec declares support (ipykernel's does)

    return _EncryptedKernelManager


def _kernel_manager_class(cell_running: threading.Event) -> type:
    """A kernel manager class for one notebook run; `cell_running` is set while a cell executes (see the hooks)."""
    return type("_RunKernelManager", (_kernel_manager_base(),), {"cell_running": cell_running})


_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{% block extra_css %}
<style type="text/css">
main { max-width: 1200px; margin: 0 auto; }
.jp-RenderedHTMLCommon table { font-size: 13px; }
</style>
{% endblock extra_css %}
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
            extra_loaders=[DictLoader({"salesforecast_report.html.j2": _TEMPLATE})],
            template_file="salesforecast_report.html.j2",
            exclude_input=True,
            exclude_input_prompt=True,
            exclude_output_prompt=True,
        )
    return _exporter


def render_html(nb: nbformat.NotebookNode, title: str) -> str:
    """Render an executed notebook as a self-contained HTML page with the code hidden.

    Inputs, prompts and stderr output (warnings) are left out; nothing is loaded from a CDN (the lab
    template's require.js, MathJax and mermaid scripts are dropped); images are inline.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook.
    title : str
        The page title (escaped).

    Returns
    -------
    str
    """
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            outputs = cell.get("outputs", [])
            cell["outputs"] = [
                o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    with _render_lock:
        body, _ = _html_exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _execute(spec: ReportSpec, run_dir: Path, kernel: str) -> ReportResult:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    start = time.monotonic()
    partial = run_dir / f".{spec.name}.partial.ipynb"
    error: str | None = None
    cell_running = threading.Event()  # set from a cell's execute request to its reply (nbclient's hooks)
    try:
        nb = papermill.execute_notebook(
            str(spec.path),
            str(partial),
            parameters=dict(spec.parameters),
            kernel_name=kernel,
            cwd=str(spec.path.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=spec.timeout,
            kernel_manager_class=_kernel_manager_class(cell_running),
            on_cell_execute=lambda **_: cell_running.set(),
            on_cell_executed=lambda **_: cell_running.clear(),
        )
        html_path = run_dir / f"{spec.name}.html"
        _write_atomic(html_path, render_html(nb, spec.title))
    except PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue} (cell [{exc.exec_count}])"
    except Exception as exc:  # a dead kernel, a timeout, a rendering error: the report fails, the run goes on
        error = f"{type(exc).__name__}: {exc}".strip()
    seconds = time.monotonic() - start
    if error is None:
        partial.unlink(missing_ok=True)
        return ReportResult(spec, "ok", seconds, html=html_path)
    failed = None
    if partial.exists():
        failed = run_dir / f"{spec.name}.failed.ipynb"
        os.replace(partial, failed)
    return ReportResult(spec, "failed", seconds, failed_notebook=failed, error=error)


def _execute_safely(spec: ReportSpec, run_dir: Path, kernel: str) -> ReportResult:
    start = time.monotonic()
    try:
        return _execute(spec, run_dir, kernel)
    except Exception as exc:  # e.g. the run folder became unwritable: still one failed report, not a crash
        return ReportResult(spec, "failed", time.monotonic() - start, error=f"{type(exc).__name__}: {exc}")


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
        Receives one progress line per report and a summary; default: print them (flushed).

    Returns
    -------
    RunResult
        ``exit_code`` is 0 when every report rendered and 1 when some failed.

    Raises
    ------
    ConfigError
        When the configuration is invalid (nothing has run).
    """
    say = echo or _print_flushed
    plan = load_config(config, only=only, params=params, as_of=as_of)
    if jobs is not None and (isinstance(jobs, bool) or int(jobs) < 1):
        raise ConfigError(f"--jobs must be a positive number, got {jobs!r}")
    out = Path(out_dir) if out_dir is not None else plan.output
    workers = max(1, min(int(jobs or os.cpu_count() or 1), len(plan.specs)))
    kernel = kernel_name()
    run_dir, run_id = _new_run_dir(out)
    say(f"{len(plan.specs)} report(s), {workers} at a time, kernel {kernel!r} -> {_relative(run_dir)}")
    started = datetime.now(UTC)
    by_spec: dict[int, ReportResult] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="report") as pool:
        futures = {pool.submit(_execute_safely, s, run_dir, kernel): i for i, s in enumerate(plan.specs)}
        for future in as_completed(futures):
            res = future.result()
            by_spec[futures[future]] = res
            status = "ok" if res.status == "ok" else "FAILED"
            line = f"{status:>6}  {res.spec.name}  {res.seconds:.1f} s"
            say(line if res.error is None else f"{line}  {res.error}")
    results = [by_spec[i] for i in range(len(plan.specs))]
    result = RunResult(run_dir=run_dir, latest_dir=out / "latest", results=results)
    generated = started.strftime("%Y-%m-%d %H:%M UTC")
    run_entries = [_entry(r, run_id, generated) for r in results]
    _write_manifest(run_dir / "manifest.json", run_entries)
    _write_atomic(run_dir / "index.html", _index_html(f"Reports of run {run_id}", run_entries, run_id, here=run_id))
    _update_latest(out, run_dir, run_id, run_entries)
    failed = result.failed
    say(
        f"{len(results) - len(failed)} rendered, {len(failed)} failed"
        f"; index: {_relative(out / 'latest' / 'index.html')}"
    )
    for r in failed:
        kept = f" (notebook kept: {_relative(r.failed_notebook)})" if r.failed_notebook else ""
        say(f"failed: {r.spec.name}: {r.error}{kept}")
    return result


# ------------------------------------------------------------------------------------ index and latest
def _entry(r: ReportResult, run_id: str, generated: str) -> dict[str, Any]:
    return {
        "name": r.spec.name,
        "notebook": r.spec.notebook,
        "title": r.spec.title,
        "parameters": {
            k: (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in r.spec.parameters.items()
        },
        "status": r.status,
        "seconds": round(r.seconds, 1),
        "html": r.html.name if r.html else None,
        "failed_notebook": r.failed_notebook.name if r.failed_notebook else None,
        "error": r.error,
        "run": run_id,
        "generated": generated,
        "html_run": run_id if r.html else None,
    }


def _write_manifest(path: Path, entries: Iterable[Mapping[str, Any]]) -> None:
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
h1 { font-size: 1.5rem; } p.meta { color: #555; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; white-space: nowrap; }
.ok { color: #1b7a1b; font-weight: 600; } .failed { color: #b00020; font-weight: 600; }
code { font-size: 12px; } .note { color: #666; font-size: 12px; }
"""


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(quote(href), quote=True)}">{html.escape(text)}</a>'


def _index_html(heading: str, entries: Sequence[Mapping[str, Any]], run_id: str, here: str | None) -> str:
    """The index page: one row per report. `here` is the run folder the page sits in (None for latest)."""
    rows = []
    for e in entries:
        params = e.get("parameters") or {}
        shown = (
            "<br>".join(
                f"<code>{html.escape(str(k))}</code> = <code>{html.escape(mask_url(str(v)))}</code>"
                for k, v in params.items()
            )
            or '<span class="note">defaults</span>'
        )
        notes = []
        if e.get("html"):
            report = _link(e["html"], e.get("title") or e["name"])
            if e.get("status") != "ok" and e.get("html_run"):
                notes.append(f"showing the last good report, of run {html.escape(str(e['html_run']))}")
        else:
            report = html.escape(str(e.get("title") or e["name"]))
        if e.get("failed_notebook"):
            prefix = "" if here == e.get("run") else f"../{e.get('run')}/"
            notes.append("executed notebook: " + _link(prefix + e["failed_notebook"], e["failed_notebook"]))
        if e.get("error"):
            notes.append(f"<code>{html.escape(str(e['error']))}</code>")
        status = "ok" if e.get("status") == "ok" else "failed"
        rows.append(
            "<tr>"
            f'<td>{report}<br><span class="note">{html.escape(str(e["name"]))}</span></td>'
            f"<td>{shown}</td>"
            f'<td class="{status}">{status}</td>'
            f'<td class="num">{float(e.get("seconds") or 0):.1f} s</td>'
            f'<td>{html.escape(str(e.get("generated", "")))}<br><span class="note">run '
            f"{html.escape(str(e.get('run', '')))}</span></td>"
            f'<td class="note">{"<br>".join(notes)}</td>'
            "</tr>"
        )
    n_failed = sum(1 for e in entries if e.get("status") != "ok")
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
<p class="meta">{len(entries)} report(s), {n_failed} failed. Latest run: {html.escape(run_id)}.
Each report states its data source, parameters, as-of date and generation time in its header.</p>
<table>
<thead><tr><th>report</th><th>parameters</th><th>status</th><th>duration</th><th>generated</th><th>notes</th></tr></thead>
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
    """Rebuild ``out/latest``: earlier entries overlaid by this run's; failures keep their last good HTML."""
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
            if e["status"] != "ok" and prev and prev.get("html") and old_dir and (old_dir / prev["html"]).exists():
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
    """Point ``out/latest`` at `snapshot` atomically (a symlink replaced with `os.replace`)."""
    latest = out / "latest"
    tmp = out / f".latest-link-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(snapshot.name, target_is_directory=True)
    except OSError:  # no symlinks here: a directory, swapped by two renames
        if latest.exists():
            aside = out / f".latest-old-{os.getpid()}"
            os.replace(latest, aside)
            os.replace(snapshot, latest)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(snapshot, latest)
        return
    if latest.is_dir() and not latest.is_symlink():  # a real folder from an older layout
        aside = out / f".latest-old-{os.getpid()}"
        os.replace(latest, aside)
        os.replace(tmp, latest)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, latest)


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
    return stamp.strftime("%Y-%m-%d") if stamp == stamp.normalize() else stamp.strftime("%Y-%m-%d %H:%M")


def report_header(
    title: str,
    params: Mapping[str, Any],
    as_of: Any = None,
    generated_at: datetime | None = None,
) -> HTML:
    """The header of a report: title, parameters, data as-of date and generation time, all escaped.

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
        f'<tr><th style="text-align:left;padding:2px 12px 2px 0">{html.escape(str(k))}</th>'
        f'<td style="text-align:left"><code>{html.escape(mask_url(str(v)))}</code></td></tr>'
        for k, v in params.items()
    )
    return HTML(
        '<div class="salesforecast-header" style="border:1px solid #ccc;border-radius:4px;padding:8px 12px;'
        'margin:0.5em 0 1.5em 0;background:#fafafa">'
        f'<div style="font-size:15px"><b>{html.escape(str(title))}</b>'
        f" &middot; data as of <b>{html.escape(_when(as_of))}</b>"
        f' &middot; <span style="color:#555">generated {html.escape(generated)}</span></div>'
        f'<table style="margin:6px 0 0 0;font-size:13px">{rows}</table>'
        "</div>"
    )


def _label(column: Any) -> str:
    """A column as a table shows it: ``pct_missing`` -> ``% missing``, ``with_value`` -> ``with value``."""
    text = str(column)
    if text.startswith("pct_"):
        text = "% " + text[4:]
    return text.replace("_", " ")


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
) -> Styler:
    """A DataFrame styled for a report: escaped text, thousands separators, percentages, short dates.

    Parameters
    ----------
    df : pandas.DataFrame
    percent : sequence of str
        Columns holding percentages (0-100), shown like ``12.5%``.
    dates : sequence of str
        Datetime columns, shown as ``2024-06-30`` (``2024-06-30 14:05`` when there is a time of day).
    precision : int, default 2
        Decimals of the other float columns.
    index : bool, default False
        Show the index.
    fractions : sequence of str
        Columns holding fractions (0-1: rates, probabilities), shown as percentages like ``12.5%``.
    metrics : sequence of str, optional
        Columns holding accuracy metrics of `salesforecast.metrics.METRICS`, each shown in its units (a metric in
        percent like ``12.5%``); default: the table's ``attrs["metrics"]``, which `salesforecast.forecast.leaderboard`
        and `salesforecast.forecast.recommend` set, so a report never restates which of their columns are
        percentages.

    Returns
    -------
    pandas.io.formats.style.Styler
        Every cell and label is HTML-escaped; missing values are shown as ``–``; text columns are
        left-aligned; column labels are shown with spaces for underscores and ``%`` for a ``pct_`` prefix.

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
    """
    from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype

    from salesforecast.metrics import METRICS

    styler = df.style.format(escape="html", precision=precision, thousands=",", na_rep="–")
    styler = styler.format_index(escape="html", axis=0)
    styler = styler.format_index(lambda c: html.escape(_label(c)), axis=1)
    text = [c for c in df.columns if not (is_numeric_dtype(df[c]) or is_datetime64_any_dtype(df[c]))]
    if text:
        left = [{"selector": "th", "props": [("text-align", "left")]}]
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
        styler = styler.set_table_styles({c: left for c in text}, overwrite=False)
    if df.empty:
        styler = styler.set_caption("(no rows)")
    if percent:
        styler = styler.format("{:,.1f}%", subset=list(percent), na_rep="–")
    named = df.attrs.get("metrics", ()) if metrics is None else metrics
    in_percent = [c for c in named if c in df.columns and c in METRICS and METRICS[c].units == "percent"]
    fractions = list(dict.fromkeys([*fractions, *(c for c in in_percent if c not in percent)]))
    if fractions:
        styler = styler.format("{:,.1%}", subset=list(fractions), na_rep="–")
    if dates:
        styler = styler.format(_date_text, subset=list(dates), na_rep="–")
    if not index:
        styler = styler.hide(axis="index")
    return styler


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


def _parse_params(pairs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-p {pair!r}: expected KEY=VALUE, e.g. -p source=data/raw/acme")
        out[key.strip()] = value
    return out


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``salesforecast report``; returns 0 (all rendered), 1 (some failed) or 2 (configuration error)."""
    try:
        result = run_reports(
            config=args.config or _default_config(),
            out_dir=args.out,
            only=args.only,
            params=_parse_params(args.parameter),
            jobs=args.jobs,
            as_of=args.as_of,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result.exit_code
