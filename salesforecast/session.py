"""The shared opening of every report: load the source, fix the report date, take the known-at view, filter.

Each notebook of ``notebooks/`` starts from the same steps with the same parameters (``source``, ``process``,
``as_of`` and, where the report has them, ``team``, ``owner``, ``period``). `open_report` takes them as the
parameters cell holds them and returns a `ReportData` with what the notebook reads; the views are built when first
read, so a report that needs only the loaded data pays for nothing else.

What limits a report's numbers reaches its reader. Inside a Jupyter kernel, `record_limits` (started by the report
runner as each report's kernel starts, and by `open_report`, e.g. in JupyterLab) turns every Python warning a cell
raises (leakage, small samples, a weak model, rows left out), and `open_report` every note of the load
(`CRMData.notes`), into a display output of type `LIMIT_MIMETYPE`, once per category and message.
The report runner (`salesforecast.reports.render_html`) gathers them into the ``read-this-first`` box under the
report's header. A report that the data cannot support raises `ReportNeeds` (`open_report` checks the report's
declared ``needs``); the runner then renders a one-page "what this report needs" instead of a traceback.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from salesforecast._utils import listed, release_memory
from salesforecast.activities import READ_COLUMNS as ACTIVITY_COLUMNS
from salesforecast.io import load
from salesforecast.process import SalesProcess
from salesforecast.quality import report_as_of
from salesforecast.schema import EVENT_COLUMNS, CRMData, holds_partitions
from salesforecast.snapshots import LEAD_CUT_COLUMNS, known_at

__all__ = [
    "LIMIT_MIMETYPE",
    "NEEDS",
    "NEEDS_MIMETYPE",
    "Need",
    "READS",
    "ReportData",
    "ReportNeeds",
    "missing_needs",
    "open_report",
    "publish_notes",
    "quarantine_notes",
    "record_limits",
    "warning_label",
]

#: What the forecast and pipeline-review reports read of the two largest tables (`open_report`'s `columns`):
#: activities by deal or lead, type and time (not their ids, owners, subjects, outcomes or durations: about a
#: gigabyte at 12M activities), and of the leads the columns `known_at` and `CRMData.filter` cut by.
READS: dict[str, tuple[str, ...]] = {
    "activities": ACTIVITY_COLUMNS,
    "leads": (*LEAD_CUT_COLUMNS, "owner", "team"),
}

#: The display output of one limit of a report: ``{"kind": "warning" | "note", "label", "category", "message"}``.
LIMIT_MIMETYPE = "application/vnd.salesforecast.limit+json"
#: The display output of a `ReportNeeds` that stopped a report (`ReportNeeds.payload`).
NEEDS_MIMETYPE = "application/vnd.salesforecast.report-needs+json"
#: The label of a load note in the read-this-first box.
NOTE_LABEL = "From the data load"


# ------------------------------------------------------------------------------------------------ report needs
class ReportNeeds(ValueError):
    """The data cannot support a report: what the report needs, and what the data lacks.

    Raised by `open_report` for a report's declared ``needs`` (`missing_needs`), and by analyses that find out
    later (``ReportNeeds(message)``). The report runner renders, in place of the report, a one-page "what this
    report needs" with the message, the needs, what is lacking, how to fix it and the notes of the load.

    Parameters
    ----------
    message : str
        A complete sentence: what the report needs and what the data lacks.
    needs : sequence of str, optional
        What the report needs, one description each (``"the stage history: ..."``).
    lacking : sequence of str, optional
        What the data lacks, one sentence per need not met.
    fixes : sequence of str, optional
        How to provide each (the mapping key, the export to take).
    notes : sequence of str, optional
        The notes of the load (`CRMData.notes`).

    Examples
    --------
    >>> error = ReportNeeds("This report needs leads; the source has none.", needs=["leads"])
    >>> isinstance(error, ValueError), str(error), error.payload()["needs"]
    (True, 'This report needs leads; the source has none.', ['leads'])
    """

    def __init__(
        self,
        message: str,
        *,
        needs: Sequence[str] = (),
        lacking: Sequence[str] = (),
        fixes: Sequence[str] = (),
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = str(message)
        self.needs = tuple(str(n) for n in needs)
        self.lacking = tuple(str(n) for n in lacking)
        self.fixes = tuple(str(n) for n in fixes)
        self.notes = tuple(str(n) for n in notes)

    def payload(self) -> dict[str, Any]:
        """The exception as the runner reads it (JSON): ``message, needs, lacking, fixes, notes``."""
        return {
            "message": self.message,
            "needs": list(self.needs),
            "lacking": list(self.lacking),
            "fixes": list(self.fixes),
            "notes": list(self.notes),
        }

    def _render_traceback_(self) -> list[str]:
        """What IPython shows in place of a traceback: the message (the runner shows the rest)."""
        return [f"ReportNeeds: {self.message}"]


@dataclass(frozen=True)
class Need:
    """One thing a report may need from the data (an entry of `NEEDS`).

    Attributes
    ----------
    name : str
        The name `open_report`'s ``needs`` takes.
    description : str
        What the report needs, for the reader.
    lacking : callable
        ``lacking(data, as_of)``: None when the data has it, else a sentence saying what it lacks.
    fix : str
        How to provide it: the mapping key, the export to take.
    """

    name: str
    description: str
    lacking: Callable[[CRMData, pd.Timestamp], str | None]
    fix: str


def _day(t: pd.Timestamp) -> str:
    return f"{pd.Timestamp(t):%Y-%m-%d}"


def _absent(data: CRMData, table: str, what: str) -> str | None:
    """Why `table` holds no row: not provided, or every row quarantined; None when it has rows."""
    if len(getattr(data, table)):
        return None
    counts = data.counts
    quarantined = int(counts.loc[table, "quarantined"]) if table in counts.index else 0
    if quarantined == 0:
        return f"the source provides no {what} (no {table} table, or an empty one)"
    return (
        f"all {quarantined:,} rows of {table} read were quarantined (the data-quality report, 01_data_quality,"
        " gives the reasons)"
    )


def _rows_by(data: CRMData, table: str, column: str, as_of: pd.Timestamp) -> pd.DataFrame:
    df = getattr(data, table)
    return df[df[column] <= as_of] if column in df.columns else df.iloc[:0]


def _lacks_any_table(data: CRMData, as_of: pd.Timestamp) -> str | None:
    return None if int(data.counts["read"].sum()) > 0 else "the source holds no row in any table"


def _lacks_opportunities(data: CRMData, as_of: pd.Timestamp) -> str | None:
    absent = _absent(data, "opportunities", "opportunities (deals)")
    if absent is not None:
        return absent
    if _rows_by(data, "opportunities", "created_at", as_of).empty:
        return f"no opportunity was created on or before the report date {_day(as_of)}"
    return None


def _progressed(hist: pd.DataFrame) -> bool:
    """True when some deal's history has changes at two or more moments (a deal seen moving)."""
    if hist.empty:
        return False
    for part in (hist.iloc[:100_000], hist) if len(hist) > 100_000 else (hist,):
        pairs = part[["opportunity_id", "changed_at"]].drop_duplicates()
        if bool(pairs["opportunity_id"].duplicated().any()):
            return True
    return False


def _lacks_stage_history(data: CRMData, as_of: pd.Timestamp) -> str | None:
    absent = _absent(data, "stage_history", "stage history")
    if absent is not None:
        return absent
    hist = _rows_by(data, "stage_history", "changed_at", as_of)
    if not _progressed(hist):
        return (
            f"the stage history ({len(hist):,} changes up to {_day(as_of)}) never shows a deal moving: each deal has"
            " one change, or all its changes at one moment (a migration's load time), so no stage-to-stage"
            " conversion or time in stage can be measured"
        )
    return None


def _lacks_leads(data: CRMData, as_of: pd.Timestamp) -> str | None:
    absent = _absent(data, "leads", "leads")
    if absent is not None:
        return absent
    if _rows_by(data, "leads", "created_at", as_of).empty:
        return f"no lead was created on or before the report date {_day(as_of)}"
    return None


def _lacks_converted_leads(data: CRMData, as_of: pd.Timestamp) -> str | None:
    leads = _rows_by(data, "leads", "created_at", as_of)
    if leads.empty:
        return _lacks_leads(data, as_of) or "no leads"
    converted = leads["converted"].fillna(False).astype(bool)
    if "converted_at" in leads.columns:
        converted &= ~(leads["converted_at"] > as_of).fillna(False).astype(bool)
    n = int(converted.sum())
    if n == 0:
        return f"none of the {len(leads):,} leads created up to {_day(as_of)} had converted by then"
    if n == len(leads):
        return f"all {len(leads):,} leads created up to {_day(as_of)} converted: there is nothing to tell apart"
    return None


def _closed(data: CRMData, as_of: pd.Timestamp, won: bool) -> str | None:
    absent = _lacks_opportunities(data, as_of)
    if absent is not None:
        return absent
    opps = data.opportunities
    flag = opps["is_won"] if won else opps["is_closed"]
    done = flag.fillna(False).astype(bool) & (opps["close_date"] <= as_of).fillna(False).astype(bool)
    if not bool(done.any()):
        what = "won" if won else "closed (won or lost)"
        return f"none of the {len(opps):,} opportunities was {what} with a close date on or before {_day(as_of)}"
    if not won:  # win rates need both outcomes: an export of won deals alone makes every stage win 100%
        won_done = done & opps["is_won"].fillna(False).astype(bool)
        n_won, n_closed = int(won_done.sum()), int(done.sum())
        if n_won in (0, n_closed):
            outcome, other = ("won", "lost") if n_won else ("lost", "won")
            return (
                f"all {n_closed:,} opportunities closed by {_day(as_of)} were {outcome}, none {other}: win rates "
                "need both outcomes (an export of won deals alone makes every stage look certain to win)"
            )
    return None


def _lacks_table(table: str, what: str, column: str) -> Callable[[CRMData, pd.Timestamp], str | None]:
    def lacking(data: CRMData, as_of: pd.Timestamp) -> str | None:
        absent = _absent(data, table, what)
        if absent is not None:
            return absent
        if column and _rows_by(data, table, column, as_of).empty:
            return f"no {what} dated on or before the report date {_day(as_of)}"
        return None

    return lacking


_MAP_TABLE = "in a mapping file, tables.{table} (or {table}.csv in a canonical folder)"

#: What a report may need, by name (`open_report`'s ``needs``).
NEEDS: dict[str, Need] = {
    need.name: need
    for need in (
        Need(
            "any_table",
            "some data: rows in at least one table",
            _lacks_any_table,
            "Check the source path and the mapping file's sources (salesforecast validate SOURCE lists what was read).",
        ),
        Need(
            "opportunities",
            "opportunities: one row per deal (opportunity_id, owner, created_at, stage, amount, is_closed, is_won)",
            _lacks_opportunities,
            f"Map the deals export: {_MAP_TABLE.format(table='opportunities')}; salesforecast validate SOURCE shows"
            " why rows were quarantined.",
        ),
        Need(
            "stage_history",
            "a stage history that shows deals moving between stages (when each deal entered each stage)",
            _lacks_stage_history,
            "Map the CRM's stage-history export (tables.stage_history in a mapping file); or, when the deals export"
            " has a date per stage, derive one with tables.stage_history.derive_from_dates; or take weekly snapshots"
            " (salesforecast snapshot) and map tables.stage_history.from_snapshots.",
        ),
        Need(
            "leads",
            "leads: one row per prospect (lead_id, created_at, converted)",
            _lacks_leads,
            f"Map the leads export: {_MAP_TABLE.format(table='leads')}.",
        ),
        Need(
            "converted_leads",
            "leads of both outcomes: some converted and some not, by the report date",
            _lacks_converted_leads,
            "Map the converted flag of tables.leads (columns.converted, or derive: {converted: {present:"
            " converted_at}}), and its values (values.converted) when the export writes it in words.",
        ),
        Need(
            "closed_deals",
            "closed deals of both outcomes: opportunities won and opportunities lost, with their close dates",
            lambda data, as_of: _closed(data, as_of, won=False),
            "Map is_closed and is_won of tables.opportunities (or derive them from the stage: derive: {is_closed:"
            " {from: stage}, is_won: {from: stage}}), and close_date; check the report date (--as-of).",
        ),
        Need(
            "won_deals",
            "won deals: opportunities closed won, with their close date (the bookings forecasts are checked against)",
            lambda data, as_of: _closed(data, as_of, won=True),
            "Map is_won of tables.opportunities (or derive it from the stage: derive: {is_won: {from: stage}}) and"
            " close_date, and the won stage's name in the process map; check the report date (--as-of).",
        ),
        Need(
            "forecast_submissions",
            "forecast submissions: the reps' forecast calls (submitted_at, owner, period, category, amount)",
            _lacks_table("forecast_submissions", "forecast submissions", "submitted_at"),
            f"Map the forecast calls: {_MAP_TABLE.format(table='forecast_submissions')}.",
        ),
        Need(
            "quotas",
            "quotas: a target per owner and period",
            _lacks_table("quotas", "quotas", ""),
            f"Map the targets: {_MAP_TABLE.format(table='quotas')}.",
        ),
    )
}


def _need(name: str) -> Need:
    key = re.sub(r"[\s-]+", "_", str(name).strip().lower())
    if key not in NEEDS:
        raise ValueError(f"no report need {name!r}; the needs: {', '.join(NEEDS)}")
    return NEEDS[key]


def missing_needs(data: CRMData, as_of: pd.Timestamp, needs: Iterable[str]) -> list[tuple[Need, str]]:
    """The needs the data does not meet, each with what it lacks.

    Parameters
    ----------
    data : CRMData
        The data as loaded.
    as_of : pandas.Timestamp
        The report date: only what was there by then counts.
    needs : iterable of str
        Names of `NEEDS` (``"closed deals"`` and ``"closed-deals"`` mean ``"closed_deals"``).

    Returns
    -------
    list of (Need, str)
        In the order asked; empty when every need is met. A need that lacks for the reason an earlier one does
        (no leads at all: no converted leads either) is not repeated.

    Raises
    ------
    ValueError
        For a name that is not a need.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> missing_needs(data, data.as_of, ["opportunities", "stage history", "leads"])
    []
    >>> [(need.name, lacking) for need, lacking in missing_needs(data, pd.Timestamp("2000-01-01"), ["leads"])]
    [('leads', 'no lead was created on or before the report date 2000-01-01')]
    """
    out: list[tuple[Need, str]] = []
    for need in dict.fromkeys(_need(n) for n in needs):
        lacking = need.lacking(data, as_of)
        if lacking is not None and all(lacking != said for _, said in out):  # no leads: no converted leads either
            out.append((need, lacking))
    return out


def _needs_error(missing: list[tuple[Need, str]], notes: Sequence[str]) -> ReportNeeds:
    words = [need.name.replace("_", " ") for need, _ in missing]
    names = listed(words)
    lacks = "; ".join(lacking for _, lacking in missing)
    return ReportNeeds(
        f"This report needs {names}, which the data lacks: {lacks}.",
        needs=[need.description for need, _ in missing],
        lacking=[lacking[:1].upper() + lacking[1:] + "." for _, lacking in missing],
        fixes=list(dict.fromkeys(need.fix for need, _ in missing)),
        notes=notes,
    )


# ------------------------------------------------------------------------------------------------ limits
_LABELS = {
    "UserWarning": "Note",
    "RuntimeWarning": "Calculation",
    "FutureWarning": "Future change",
    "DeprecationWarning": "Outdated code",
    "PendingDeprecationWarning": "Outdated code",
    "ConvergenceWarning": "Model did not converge",
}


def warning_label(category: type[Warning]) -> str:
    """A warning category as the reader sees it: its ``label`` attribute, else its name in words.

    Examples
    --------
    >>> from salesforecast.models.lead_scoring import LeakageWarning
    >>> warning_label(LeakageWarning), warning_label(UserWarning), warning_label(RuntimeWarning)
    ('Leakage', 'Note', 'Calculation')
    >>> class SmallSampleWarning(UserWarning): ...
    >>> warning_label(SmallSampleWarning)
    'Small sample'
    """
    label = getattr(category, "label", None)
    if isinstance(label, str) and label.strip():
        return label.strip()
    name = getattr(category, "__name__", str(category))
    if name in _LABELS:
        return _LABELS[name]
    stem = name.removesuffix("Warning") or name
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", stem).strip().lower()
    return words[:1].upper() + words[1:]


class _Recorder:
    """The kernel's warning hook: each warning, once per category and message, becomes a limit output."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, str]] = set()
        self.previous: Callable[..., Any] = warnings.showwarning

    def publish(self, kind: str, label: str, category: str, message: str) -> None:
        key = (kind, category, message)
        if key in self.seen:
            return
        self.seen.add(key)
        from IPython.display import publish_display_data

        payload = {"kind": kind, "label": label, "category": category, "message": message}
        publish_display_data({LIMIT_MIMETYPE: payload, "text/plain": f"{label}: {message}"})

    def showwarning(self, message: Any, category: type[Warning], filename: str, lineno: int, *args: Any) -> None:
        try:
            self.publish("warning", warning_label(category), category.__name__, str(message))
        except Exception:  # no display (not in a kernel after all): the warning is shown as Python would
            self.previous(message, category, filename, lineno, *args)


_recorder: _Recorder | None = None


def _kernel_shell() -> Any:
    """The IPython shell of a Jupyter kernel, or None (plain Python, a terminal IPython, tests)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def _show_needs(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> None:
    """IPython's handler of `ReportNeeds`: publish what the report needs, then the usual (short) error.

    The runner takes the notes of the load from the exception, else from the notes published before it.
    """
    from IPython.display import publish_display_data

    payload = value.payload() if isinstance(value, ReportNeeds) else {"message": str(value)}
    publish_display_data({NEEDS_MIMETYPE: payload, "text/plain": f"ReportNeeds: {payload['message']}"})
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def record_limits() -> bool:
    """In a Jupyter kernel, send every warning and note that limits the report to its read-this-first box.

    From the call on, each warning a cell raises is published once per category and message as a display output
    of type `LIMIT_MIMETYPE` (``kind: "warning"``), in place of the text Python writes to stderr (which reports
    leave out); the warnings filters still decide which warnings are raised at all. A `ReportNeeds` that ends a
    cell is published as `NEEDS_MIMETYPE` before its error. Calling it again changes nothing; outside a kernel it
    does nothing.

    Returns
    -------
    bool
        True when the hook is in place (a kernel), False otherwise.
    """
    global _recorder
    shell = _kernel_shell()
    if shell is None:
        return False
    if _recorder is None:
        _recorder = _Recorder()
    if warnings.showwarning != _recorder.showwarning:
        _recorder.previous = warnings.showwarning
        warnings.showwarning = _recorder.showwarning
    if ReportNeeds not in getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((ReportNeeds,), _show_needs)
    return True


def quarantine_notes(data: CRMData, most: int = 3) -> tuple[str, ...]:
    """One sentence per table with quarantined rows: how many were set aside, of how many, and the main reasons.

    Rows set aside are in no number of a report, so a report says so under its title (the data-quality report
    lists each row).

    Examples
    --------
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "B"], "owner": ["ann", "bob"], "created_at": ["2024-01-02", "yesterday"],
    ...     "stage": ["Prospecting", "Prospecting"], "amount": ["100", "50"], "close_date": ["", ""],
    ...     "is_closed": ["0", "0"], "is_won": ["0", "0"]})})
    >>> quarantine_notes(data)[0][:75]
    '1 of the 2 opportunities rows read (50%) were set aside (quarantined) and a'
    """
    q = data.quarantine
    if q.empty:
        return ()
    counts = data.counts
    out = []
    for table, rows in q.groupby("table", sort=False):
        n = len(rows)  # one entry per quarantined row; two files of one table (Task.csv, Event.csv) share numbers
        read = int(counts.loc[table, "read"]) if table in counts.index else n
        reasons = rows["reason"].value_counts()
        top = ", ".join(f"{reason} ({count:,})" for reason, count in reasons.head(most).items())
        more = f" and {len(reasons) - most} more reasons" if len(reasons) > most else ""
        out.append(
            f"{n:,} of the {read:,} {str(table).replace('_', ' ')} rows read ({n / max(read, 1):.0%}) were set aside "
            f"(quarantined) and are in no number of this report: {top}{more}. The data-quality report lists them."
        )
    return tuple(out)


def publish_notes(notes: Iterable[str]) -> None:
    """Put the load's notes in the report's read-this-first box (in a report's kernel; elsewhere nothing)."""
    if _recorder is not None and _kernel_shell() is not None:
        for note in notes:
            _recorder.publish("note", NOTE_LABEL, "note", str(note))


@dataclass
class ReportData:
    """What a report works on, from `open_report`.

    Attributes
    ----------
    data : CRMData
        The source as loaded: every row, up to the data's end (the quarantine and counts are the load's).
    as_of : pandas.Timestamp
        The report date (`salesforecast.quality.report_as_of`: the data's latest time for ``"latest"``).
    team, owner : str or None
        The team and the rep the report is restricted to (None: all).
    period : str or None
        The fiscal quarter the report is about (``"current"`` resolved at `as_of`), when one was asked for.
    known : CRMData
        `data` as known at `as_of` (`salesforecast.snapshots.known_at`): nothing created, changed or submitted later.
    view : CRMData
        `known` restricted to `team` and `owner` (`CRMData.filter`).
    selection : CRMData
        `data` (not cut at `as_of`) restricted to `team` and `owner`: the rows a report lists as they are now.
    period_bounds : tuple of pandas.Timestamp
        Start and (exclusive) end of `period`: ``start <= t < end``.
    notes : tuple of str
        What the load found and could not fix (`CRMData.notes`), for the report's read-this-first box.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> report = ReportData(data, pd.Timestamp("2025-06-30"), team="EMEA", period="FY2025Q2")
    >>> report.period_bounds
    (Timestamp('2025-04-01 00:00:00'), Timestamp('2025-07-01 00:00:00'))
    >>> bool(report.known.opportunities["created_at"].max() <= report.as_of)
    True
    >>> view, selection = report.view.opportunities, report.selection.opportunities
    >>> sorted(set(view["team"])), len(view) < len(selection), sorted(set(selection["team"]))
    (['EMEA'], True, ['EMEA'])
    """

    data: CRMData
    as_of: pd.Timestamp
    team: str | None = None
    owner: str | None = None
    period: str | None = None
    notes: tuple[str, ...] = field(default=())

    @cached_property
    def known(self) -> CRMData:
        """`data` as known at `as_of` (built on first use)."""
        known = known_at(self.data, self.as_of)
        release_memory()
        return known

    @cached_property
    def view(self) -> CRMData:
        """`known` restricted to `team` and `owner` (built on first use)."""
        return self.known.filter(team=self.team, owner=self.owner)

    @cached_property
    def selection(self) -> CRMData:
        """`data` restricted to `team` and `owner` (built on first use)."""
        return self.data.filter(team=self.team, owner=self.owner)

    @property
    def period_bounds(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Start and (exclusive) end of `period` (a ValueError without one)."""
        if self.period is None:
            raise ValueError("no period: pass period= to open_report")
        return self.data.process.calendar.period_bounds(self.period)


def _defining(name: str) -> set[str]:
    """The columns of table `name` that `open_report` keeps whatever `columns` asks.

    What says whose a row is and when it happened: the ids, the event dates `CRMData.as_of` reads, the lead columns
    `known_at` cuts by, and but for activities (which follow their deal or lead) the owner and team a filter reads.
    """
    keep = {"opportunity_id", "lead_id", *(c for table, c in EVENT_COLUMNS if table == name)}
    if name == "leads":
        keep |= set(LEAD_CUT_COLUMNS)
    if name != "activities":
        keep |= {"owner", "team"}
    return keep


def _only(name: str, table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Table `name` with those of `columns` it has and its `_defining` ones (in its order; the others let go)."""
    wanted = set(columns) | _defining(name)
    keep = [c for c in table.columns if c in wanted]
    return table if len(keep) == len(table.columns) else table[keep].copy()


def open_report(
    source: str | Path = "sample",
    process: SalesProcess | str | Path | None = "default",
    as_of: str = "latest",
    team: str | None = "",
    owner: str | None = "",
    period: str | None = None,
    needs: Sequence[str] = (),
    columns: Mapping[str, Sequence[str]] | None = None,
) -> ReportData:
    """Open the data of a report: the one call at the top of every notebook.

    Parameters
    ----------
    source : str or path
        What `salesforecast.io.load` takes: ``"sample"``, a canonical folder, an export, a mapping file.
    process : SalesProcess, path, "salesforce", "default" or None
        The process map; ``"default"`` (or None) is the source's own, else Salesforce's standard stages
        (`SalesProcess.resolve`).
    as_of : str
        The report date: ``"latest"`` or an ISO date (`salesforecast.quality.report_as_of`).
    team, owner : str, optional
        Restrict the views to one team and/or one rep (``""`` or None: all), as the notebooks' parameters hold them.
    period : str, optional
        A fiscal quarter (``"FY2024Q3"``) or ``"current"`` (the quarter holding the report date).
    needs : sequence of str, optional
        What the report cannot do without, as names of `NEEDS` (``"opportunities"``, ``"stage_history"``,
        ``"leads"``, ``"converted_leads"``, ``"closed_deals"``, ``"won_deals"``, ``"forecast_submissions"``,
        ``"quotas"``, ``"any_table"``), checked on the data up to the report date.
    columns : mapping of str to sequence of str, optional
        The only columns of these tables the report reads (e.g. `READS`): the others are dropped once the data are
        loaded and checked, so a large CRM holds less memory through the report. Rows, quarantine, counts and the
        load's notes are those of the whole tables; a column a table lacks is skipped. The columns that say whose
        a row is and when it happened (ids, event dates, the lead columns of `known_at`, owner and team) are kept
        whatever is asked, so the report date, the known-at cut and a team or rep filter stay those of the data.

    Returns
    -------
    ReportData

    Raises
    ------
    ReportNeeds
        When the data does not meet some of `needs`: all of them are named, with what the data lacks and how to
        provide it.
    ReportNeeds
        Also when `team` or `owner` names nobody in the data, or `team` is asked of data without teams.
    ValueError
        When `as_of` is no date.

    Notes
    -----
    In a Jupyter kernel it first calls `record_limits` and publishes the load's notes, so the report's
    read-this-first box holds them and every warning raised from then on.

    Examples
    --------
    >>> report = open_report("sample", as_of="2025-06-30", period="current")
    >>> report.as_of, report.period
    (Timestamp('2025-06-30 00:00:00'), 'FY2025Q2')
    >>> bool(report.view.opportunities["created_at"].max() <= report.as_of)
    True
    """
    asked = [_need(n) for n in needs]  # a misspelt need is the notebook's mistake: say so before loading
    if holds_partitions(source):  # partitions are read where they live, by the steps that run over them
        raise ReportNeeds(
            f"This report reads the whole data in one process; {source} holds partitions by opportunity, which "
            "only the forecast-accuracy report reads (partition by partition, on a Dask cluster when one is given).",
            needs=["the data as one canonical folder, an export or a mapping file"],
            lacking=[f"{source} holds partitions (partitions.json), not the tables of a canonical folder"],
            fixes=[
                "Run this report on the source the partitions were written from (or on a canonical folder: "
                "salesforecast import SOURCE FOLDER), or run only the forecast-accuracy report on the partitions "
                "(--only 04_forecast_accuracy)."
            ],
        )
    record_limits()
    data = load(source, process=process)
    if columns:
        data = replace(data, **{t: _only(t, getattr(data, t), keep) for t, keep in columns.items()})
    release_memory()  # what the load freed (raw columns, Arrow buffers): before the report's own peaks
    notes = tuple(data.notes) + quarantine_notes(data)
    publish_notes(notes)
    names = [n.name for n in asked]
    try:
        date = report_as_of(data, as_of)
    except ValueError:  # e.g. "latest" of data without dates: what the report needs says more, when it is lacking
        missing = missing_needs(data, pd.Timestamp.max, names)
        if missing:
            raise _needs_error(missing, notes) from None
        raise
    missing = missing_needs(data, date, names)
    if missing:
        raise _needs_error(missing, notes)
    label = data.process.calendar.resolve(period, date) if period is not None else None
    report = ReportData(data, date, team or None, owner or None, label, notes)
    if report.team or report.owner:  # a team or rep the data do not hold: a page that says so, not a traceback
        try:
            report.__dict__["selection"] = data.filter(team=report.team, owner=report.owner)  # the cached property
        except (KeyError, ValueError) as exc:
            who = " and ".join(f"{k} {v!r}" for k, v in (("team", report.team), ("owner", report.owner)) if v)
            problem = str(exc.args[0]) if exc.args else str(exc)
            raise ReportNeeds(
                f"This report was asked for {who}: {problem}.",
                needs=[f"the {who} the report is restricted to"],
                lacking=[problem],
                fixes=["Leave team and owner empty for everybody, or name one the data hold (as listed)."],
                notes=notes,
            ) from None
    return report
