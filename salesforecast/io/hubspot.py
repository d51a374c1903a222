"""HubSpot deal exports: one CSV or XLSX file of deals in, canonical tables out.

A HubSpot deals export (CRM > Deals > Export) has one row per deal with property labels as headers:
``Record ID`` (older exports ``Deal ID``), ``Deal Name``, ``Deal Stage``, ``Amount``, ``Close Date``,
``Create Date``, ``Deal owner``, ``Pipeline``, and, when the stage-calculated properties are exported, one
``Date entered <stage label> (<pipeline name>)`` column per stage (also ``Date exited ...``, ``Cumulative time
in ...``, which are not needed). `read_hubspot` turns the rows into opportunities and the ``Date entered``
columns into a stage history (one row per stage entered, at that time), then calls
`salesforecast.schema.validate`: quarantine rules and counts are the canonical loader's.

Header matching ignores case and spacing. Optional columns: ``HubSpot Team`` (-> ``team``), ``Deal Type``
(-> ``type``), ``Original Source Type``/``Original Source``/``Lead Source`` (-> ``lead_source``),
``Associated Company IDs (Primary)``/``Associated Company ID`` (-> ``account_id``), ``Forecast category``
(-> ``forecast_category``; "Not forecasted" is ``omitted``, "Closed won" ``closed``).

Engagement exports (calls, meetings, emails, notes, tasks) beside the deals file, or given as ``activities=``,
become the ``activities`` table: `salesforecast.io.activities` names their columns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from salesforecast.io.activities import hubspot_activities, hubspot_activity_files, number_by_file
from salesforecast.io.common import (
    carry_malformed,
    find_column,
    header_key,
    parse_times,
    quarantine_notes,
    text_column,
    with_notes,
)
from salesforecast.process import SalesProcess, Stage, normalize_name
from salesforecast.schema import CRMData, DataFileError, read_table_file, validate

__all__ = ["hubspot_process", "is_hubspot_export", "read_hubspot"]

#: HubSpot's default sales pipeline: (internal id, label shown in HubSpot, probability).
_DEFAULT_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", 0.2),
    ("qualifiedtobuy", "Qualified To Buy", 0.4),
    ("presentationscheduled", "Presentation Scheduled", 0.6),
    ("decisionmakerboughtin", "Decision Maker Bought-In", 0.8),
    ("contractsent", "Contract Sent", 0.9),
)

_ID_COLUMNS = ("Record ID", "Deal ID", "hs_object_id")
_STAGE_COLUMNS = ("Deal Stage", "dealstage")
_CREATE_COLUMNS = ("Create Date", "createdate")
_CLOSE_COLUMNS = ("Close Date", "closedate")
_AMOUNT_COLUMNS = ("Amount", "amount")
_OWNER_COLUMNS = ("Deal owner", "Deal Owner", "hubspot_owner_id")
_OPTIONAL = {
    "opportunity_name": ("Deal Name", "dealname"),
    "team": ("HubSpot Team", "hubspot_team_id"),
    "type": ("Deal Type", "dealtype"),
    "lead_source": ("Original Source Type", "Original Source", "Lead Source"),
    "account_id": ("Associated Company IDs (Primary)", "Associated Company ID", "Associated Company IDs"),
    "forecast_category": ("Forecast category", "Forecast Category", "hs_manual_forecast_category"),
}
_FORECAST_LABELS = {"not forecasted": "omitted", "closed won": "closed"}
_DATE_ENTERED = re.compile(r"^\s*date entered\s+['\"]?(?P<stage>.+?)(?:\s+\((?P<pipeline>[^()]*)\))?['\"]?\s*$", re.I)


def hubspot_process() -> SalesProcess:
    """HubSpot's default deal pipeline as a process map.

    Stages (internal ids, with the labels HubSpot shows as aliases): appointmentscheduled 20%,
    qualifiedtobuy 40%, presentationscheduled 60%, decisionmakerboughtin 80%, contractsent 90% (all in the
    pipeline forecast category), closedwon (won, 100%), closedlost (lost, 0%). Calendar fiscal year.

    Examples
    --------
    >>> p = hubspot_process()
    >>> p.open_stages[0], p.canonical_stage("Decision Maker Bought-In")
    ('appointmentscheduled', 'decisionmakerboughtin')
    """
    stages = [Stage(sid, "open", p, "pipeline", aliases=(label,)) for sid, label, p in _DEFAULT_STAGES]
    stages.append(Stage("closedwon", "won", 1.0, "closed", aliases=("Closed Won",)))
    stages.append(Stage("closedlost", "lost", 0.0, "omitted", aliases=("Closed Lost",)))
    return SalesProcess(tuple(stages), name="HubSpot default pipeline")


def _read(path: Path, encoding: str, table: str = "opportunities") -> pd.DataFrame:
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        try:
            return pd.read_excel(path, dtype="str")
        except Exception as exc:  # openpyxl raises several types for a damaged workbook
            raise DataFileError(f"{path}: not a readable Excel file ({exc})", file=str(path), table=table) from None
    return read_table_file(path, table, encoding=encoding, duplicates="number")


def is_hubspot_export(path: str | Path) -> bool:
    """True when `path` is a CSV/XLSX file whose header looks like a HubSpot deals export.

    Examples
    --------
    >>> is_hubspot_export("/no/such/file.csv")
    False
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            header = [str(c) for c in pd.read_excel(path, nrows=0).columns]
        else:
            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                header = [str(c) for c in pd.read_csv(fh, nrows=0).columns]
    except Exception:  # anything unreadable is not a HubSpot export
        return False
    keys = {header_key(c) for c in header}
    return bool(keys & {header_key(c) for c in _STAGE_COLUMNS}) and bool(keys & {header_key(c) for c in _ID_COLUMNS})


def _need(df: pd.DataFrame, path: Path, names: tuple[str, ...]) -> str:
    col = find_column(df, *names)
    if col is None:
        raise DataFileError(
            f"{path}: no column {names[0]!r}; a HubSpot deals export needs Record ID, Deal Stage, Create Date,"
            f" Close Date, Amount and Deal owner (found {[str(c) for c in df.columns][:20]})",
            file=str(path),
            table="opportunities",
            column=names[0],
        )
    return col


def _to_utc(text: pd.Series, timezone: str | None) -> pd.Series:
    """Local times in `timezone` as naive UTC ISO text; values that are not dates stay as written."""
    if timezone is None:
        return text
    s = text.astype("str").str.strip()
    iso = s.str.match(r"\d{4}-\d{2}-\d{2}(?:$|[T ])").fillna(False).astype(bool)
    has_offset = s.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True).fillna(False).astype(bool)
    local = iso & ~has_offset
    parsed = pd.to_datetime(s.where(local), format="ISO8601", errors="coerce")
    utc = parsed.dt.tz_localize(timezone, ambiguous=np.zeros(len(parsed), dtype=bool), nonexistent="shift_forward")
    utc = utc.dt.tz_convert("UTC").dt.tz_localize(None)
    out = utc.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").astype("str")
    return out.where(parsed.notna(), text.astype("str"))


def read_hubspot(
    path: str | Path,
    process: SalesProcess | str | Path | None = None,
    pipeline: str | None = None,
    *,
    encoding: str = "utf-8",
    timezone: str | None = None,
    activities: Sequence[str | Path] | None = None,
) -> CRMData:
    """Read a HubSpot deals export (CSV or XLSX) into validated canonical tables.

    Parameters
    ----------
    path : path
        The exported file.
    process : SalesProcess, path of a process YAML, "default" or None
        The process map of the pipeline. The default (None or ``"default"``, see `SalesProcess.resolve`):
        `hubspot_process` (HubSpot's default pipeline). Stage names
        are matched to stage names and aliases, so labels ("Contract Sent") and internal ids both work.
    pipeline : str, optional
        The pipeline to read (its label, as in the ``Pipeline`` column, any case). Required when the file holds
        deals of several pipelines: a process map describes one pipeline. The other pipelines' deals are not
        read (a note says how many).
    encoding : str
        Text encoding of a CSV file (a UTF-8 byte-order mark is always accepted).
    timezone : str, optional
        HubSpot exports times in the account's time zone; give it (e.g. ``"Europe/Berlin"``) to convert them
        (the deals' and the activities') to UTC. None reads them as UTC.
    activities : sequence of paths, optional
        Engagement exports (calls, meetings, emails, notes, tasks; CSV or XLSX) read into the ``activities``
        table (`salesforecast.io.activities` lists their columns). None (the default) reads those beside the deals
        export (`salesforecast.io.activities.hubspot_activity_files`: a name with ``calls``, ``meetings``...
        and a header with an id and a time); ``[]`` reads none.

    Returns
    -------
    CRMData
        ``opportunities`` (one per deal row, ``is_closed``/``is_won`` from the stage's kind in the process
        map), ``stage_history`` (one row per ``Date entered`` value) and ``activities`` (one per engagement row),
        with quarantine, counts and notes. History rows are numbered in the order deal by deal, stage columns left
        to right; a quarantined activity's row is its row in its own file, which its details name.

    Raises
    ------
    DataFileError
        A missing file or required column, several pipelines without `pipeline`, an unknown `pipeline`, or an
        unreadable file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataFileError(f"{path}: no such file; expected a HubSpot deals export (CSV or XLSX)", file=str(path))
    raw = _read(path, encoding)
    process = SalesProcess.resolve(hubspot_process() if SalesProcess.is_default(process) else process)
    notes: list[str] = []

    # ---- one pipeline
    pipe_col = find_column(raw, "Pipeline")
    selected = None
    other_pipelines = False
    if pipe_col is not None:
        pipes = text_column(raw, pipe_col).str.strip()
        counts = pipes.value_counts()
        if pipeline is None and len(counts) > 1:
            listed = ", ".join(f"{k!r} ({v} deals)" for k, v in counts.items())
            raise DataFileError(
                f"{path}: the export holds deals of {len(counts)} pipelines ({listed}); a process map describes one"
                " pipeline: pass pipeline=... to choose one",
                file=str(path),
                table="opportunities",
                column=pipe_col,
            )
        if pipeline is not None:
            match = pipes.map(normalize_name) == normalize_name(pipeline)
            if not match.any():
                raise DataFileError(
                    f"{path}: no deal is in pipeline {pipeline!r}; the pipelines are {list(counts.index)}",
                    file=str(path),
                    table="opportunities",
                    column=pipe_col,
                )
            others = pipes[~match.fillna(False)].fillna("(none)").value_counts()
            if len(others):
                other_pipelines = True
                listed = ", ".join(f"{k!r}: {v}" for k, v in others.items())
                notes.append(
                    f"{path.name}: pipeline {pipeline!r} selected; {int(others.sum())} deal(s) of other pipelines"
                    f" ({listed}) were not read."
                )
            raw = raw[match.fillna(False).to_numpy()].reset_index(drop=True)
            selected = pipes[match.fillna(False)].iloc[0]
        elif len(counts) == 1:
            selected = counts.index[0]
    elif pipeline is not None:
        notes.append(
            f"{path.name}: pipeline={pipeline!r} was given but the export has no Pipeline column; all deals were read."
        )
        selected = pipeline

    # ---- opportunities
    ids = text_column(raw, _need(raw, path, _ID_COLUMNS)).str.strip()
    stage = text_column(raw, _need(raw, path, _STAGE_COLUMNS)).str.strip()
    if selected is not None:  # some exports write "Contract Sent (Sales Pipeline)"
        suffix = f" ({selected})"
        stage = stage.where(~stage.str.endswith(suffix).fillna(False), stage.str[: -len(suffix)])
    canonical = process.map_stages(stage)
    opps = pd.DataFrame(
        {
            "opportunity_id": ids,
            "owner": text_column(raw, _need(raw, path, _OWNER_COLUMNS)),
            "created_at": _to_utc(text_column(raw, _need(raw, path, _CREATE_COLUMNS)), timezone),
            "stage": stage,
            "amount": text_column(raw, _need(raw, path, _AMOUNT_COLUMNS)),
            "close_date": _to_utc(text_column(raw, _need(raw, path, _CLOSE_COLUMNS)), timezone),
            "is_closed": process.is_closed(canonical).astype(bool),
            "is_won": process.is_won(canonical).astype(bool),
        },
        index=raw.index,
    )
    for name, candidates in _OPTIONAL.items():
        col = find_column(raw, *candidates)
        if col is not None:
            values = text_column(raw, col)
            if name == "forecast_category":
                values = values.map(lambda v: _FORECAST_LABELS.get(normalize_name(v), v) if pd.notna(v) else v)
                values = values.astype("str")
            opps[name] = values
    if pipe_col is not None:
        opps["pipeline"] = text_column(raw, pipe_col)
    opps = carry_malformed(raw, opps)

    # ---- stage history from the "Date entered <stage> (<pipeline>)" columns
    entered = []
    column_pipes = set()
    for col in raw.columns:
        m = _DATE_ENTERED.match(str(col))
        if m is None:
            continue
        pipe = m.group("pipeline")
        if pipe is not None and selected is not None and normalize_name(pipe) != normalize_name(selected):
            continue
        column_pipes.add(normalize_name(pipe) if pipe is not None else None)
        entered.append((col, m.group("stage").strip()))
    if len(column_pipes - {None}) > 1:
        raise DataFileError(
            f"{path}: the 'Date entered' columns name {len(column_pipes - {None})} pipelines and the export has no"
            " Pipeline column to tell which deal is in which: pass pipeline=... to choose one",
            file=str(path),
            table="stage_history",
        )
    tables = {"opportunities": opps}
    if entered:
        parts = []
        for order, (col, label) in enumerate(entered):
            values = text_column(raw, col)
            has = values.notna() & (values.str.strip() != "")
            parts.append(
                pd.DataFrame(
                    {
                        "opportunity_id": ids[has].to_numpy(),
                        "changed_at": _to_utc(values[has], timezone).to_numpy(),
                        "stage": label,
                        "_deal": np.flatnonzero(has.to_numpy()),
                        "_order": order,
                    }
                )
            )
        hist = pd.concat(parts, ignore_index=True)
        hist["_time"] = parse_times(hist["changed_at"])  # deal by deal, in time order (unreadable times last)
        hist = hist.sort_values(["_deal", "_time", "_order"], kind="stable", na_position="last")
        tables["stage_history"] = hist.drop(columns=["_deal", "_time", "_order"]).reset_index(drop=True)
        notes.append(
            f"{path.name}: the stage history is built from the 'Date entered <stage>' columns: one row per stage a"
            " deal entered, at that time. HubSpot keeps one date per stage, so a stage entered twice appears once and"
            " regressions are not visible; amount, close-date and forecast-category changes are not in the export."
        )
    else:
        notes.append(
            f"{path.name}: no 'Date entered <stage>' columns, so there is no stage history: stage conversion,"
            " durations and backtests need it. Export the deals with the 'Date entered' properties of the pipeline."
        )
    # ---- activities from the engagement exports
    act_paths = hubspot_activity_files(path, encoding) if activities is None else [Path(p) for p in activities]
    others_note = (
        f"{path.name}: only the deals of pipeline {pipeline!r} were read; activities of other pipelines' deals are"
        " quarantined as 'unknown opportunity'."
        if other_pipelines
        else None
    )
    acts = hubspot_activities([(_read(p, encoding, "activities"), p) for p in act_paths], notes, others_note)
    sources = dict.fromkeys(tables, str(path))
    if acts is not None:
        tables["activities"] = acts.raw.assign(occurred_at=_to_utc(acts.raw["occurred_at"], timezone))
        sources["activities"] = acts.source
    data = validate(tables, process=process, sources=sources)
    if acts is not None:
        data = number_by_file(data, acts.files)
    notes.extend(
        quarantine_notes(
            data, "Give the pipeline's process map (process=...), with HubSpot's labels or internal ids as aliases."
        )
    )
    return with_notes(data, notes)
