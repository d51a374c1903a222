"""Activities from CRM exports: Salesforce ``Task.csv``/``Event.csv`` and HubSpot engagement exports.

The importers (`salesforecast.io.salesforce`, `salesforecast.io.hubspot`) read the files; the functions here turn
their rows into the RAW canonical ``activities`` table (text values, canonical column names), which
`salesforecast.schema.validate` then checks like any table: an activity of no deal or lead, of an unknown or
quarantined deal or lead, with a date that is not a date, is quarantined with its reason. Nothing is dropped here:
every physical row of every file becomes one raw row, so rows read = accepted + quarantined.

One table, several files: the raw rows are the files' rows one file after the other. `number_by_file` then
writes each quarantined activity's row number as it is in its own file (1 = the first row after the header) and
names the file at the head of its ``details`` (``Event.csv: occurred_at: unparseable date``) and of its
``original`` (``file=Event.csv; activity_id=...`` in the data-quality report).

Salesforce (``Task.csv``, ``Event.csv``; headers matched case-insensitively)
    ``Id`` (required; when the two files share an Id, each file's Ids are prefixed ``Task:`` / ``Event:``),
    ``WhatId`` (-> ``opportunity_id`` when it is an opportunity of the export or an opportunity Id, prefix
    ``006``; an account, case... is no deal), ``WhoId`` (-> ``lead_id`` when it is a lead of the export or a lead
    Id, prefix ``00Q``; a contact, ``003``, is kept as ``contact_id``), one of them at least;
    the time (-> ``occurred_at``; the first non-empty of): Task ``ActivityDate, ActivityDateTime,
    CompletedDateTime, CreatedDate`` (an ``ActivityDate``, a day, takes the time of ``CompletedDateTime`` when that
    is on the same day), Event ``StartDateTime, ActivityDateTime, ActivityDate``;
    the type (-> ``type``): ``Type`` (the organisation's own picklist: its names go through the process map's
    ``activity_types``), else ``TaskSubtype``/``EventSubtype`` (Call, Email, ListEmail -> email, Task, Event ->
    meeting), else ``Task`` -> task, ``Event`` -> meeting; ``OwnerId`` (-> ``owner``, named through ``User.csv``
    like the opportunities' owners); ``Subject``; ``CallDisposition`` else ``Status`` else ``Outcome__c``
    (-> ``outcome``);
    ``DurationInMinutes``, else ``CallDurationInSeconds`` / 60 (-> ``duration`` in minutes); ``AccountId``
    (-> ``account_id``); custom fields ``Xyz__c`` (-> feature column ``xyz``).
HubSpot (engagement exports: one file per activity type, or one with a type column)
    ``Record ID``/``Activity ID``/``Engagement ID``/``hs_object_id`` (required); the time: ``Activity date``,
    ``Timestamp``, ``hs_timestamp``, ``Meeting start time``, ``hs_meeting_start_time``, else ``Create Date``;
    the type: ``Call and meeting type``/``hs_activity_type`` (the organisation's own names), else
    ``Activity type``/``Engagement type``/``Type`` (CALL, MEETING, EMAIL, INCOMING_EMAIL, NOTE, TASK), else the
    file's name (``calls``, ``meetings``, ``emails``, ``notes``, ``tasks``); ``Associated Deal IDs``/
    ``Associated Deal ID``/``Deal ID`` (-> ``opportunity_id``; the first of several, a note counts them);
    ``Associated Contact IDs`` (-> ``contact_id``: the HubSpot import has no leads table, so an activity of
    contacts alone is quarantined as ``no deal or lead``); ``Activity assigned to``/``Activity owner``/
    ``hubspot_owner_id`` (-> ``owner``); the title (``Call Title``, ``Meeting name``, ``Email subject``,
    ``Task Title``, ``Subject``, or the ``hs_`` names) -> ``subject``; ``Call outcome``/``Meeting outcome``/
    ``Task status`` (or ``hs_call_disposition``, ``hs_meeting_outcome``, ``hs_task_status``) -> ``outcome``;
    ``Call duration`` (milliseconds, as HubSpot stores ``hs_call_duration``, or ``h:mm:ss``) or ``Meeting end
    time`` - start -> ``duration`` in minutes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from salesforecast.io.common import (
    carry_malformed,
    custom_columns,
    find_column,
    need_column,
    parse_times,
    text_column,
    with_notes,
)
from salesforecast.schema import CRMData, DataFileError, is_malformed

__all__ = [
    "ActivityFiles",
    "hubspot_activities",
    "hubspot_activity_files",
    "number_by_file",
    "salesforce_activities",
]

TABLE = "activities"


@dataclass(frozen=True)
class ActivityFiles:
    """The raw activities table built from several files, and how its rows split into them.

    Attributes
    ----------
    raw : DataFrame
        Raw canonical rows, the files' rows one file after the other.
    files : tuple of (path, rows)
        Each file and its number of data rows, in the order of `raw`.
    """

    raw: pd.DataFrame
    files: tuple[tuple[Path, int], ...]

    @property
    def source(self) -> str:
        """The files as `CRMData.sources` names them (``a/Task.csv + a/Event.csv``)."""
        return " + ".join(str(p) for p, _ in self.files)


def number_by_file(data: CRMData, files: Sequence[tuple[Path, int]], table: str = TABLE) -> CRMData:
    """Quarantined rows of `table` numbered within their own file, the file named at the head of ``details``.

    Parameters
    ----------
    data : CRMData
        Validated data whose `table` rows were the files' rows one file after the other.
    files : sequence of (path, rows)
        The files in that order, with their numbers of data rows.
    table : str
        The canonical table.

    Returns
    -------
    CRMData
        A copy whose quarantine rows of `table` say ``row`` (1 = the file's first data row),
        ``details`` = ``"<file name>: <details>"`` and ``original`` = the row with ``"file": <file name>``
        first, with a note on the numbering when there are several files; unchanged when none of the rows was
        quarantined.

    Examples
    --------
    >>> from salesforecast.schema import validate
    >>> opps = pd.DataFrame({"opportunity_id": ["O1"], "owner": ["ann"], "created_at": ["2024-01-02"],
    ...     "stage": ["Prospecting"], "amount": ["10"], "close_date": [""], "is_closed": ["0"], "is_won": ["0"]})
    >>> acts = pd.DataFrame({"activity_id": ["T1", "T2", "E1"], "occurred_at": ["2024-01-03", "2024-01-04", "soon"],
    ...     "type": ["call", "email", "meeting"], "opportunity_id": ["O1", "O9", "O1"]})
    >>> data = validate({"opportunities": opps, "activities": acts})
    >>> data = number_by_file(data, [(Path("Task.csv"), 2), (Path("Event.csv"), 1)])
    >>> data.quarantine[["row", "details"]].values.tolist()
    [[2, 'Task.csv: opportunity_id: unknown opportunity'], [1, 'Event.csv: occurred_at: unparseable date']]
    """
    q = data.quarantine
    sel = (q["table"] == table).to_numpy(dtype=bool)
    if not files or not sel.any():
        return data
    ends = np.cumsum([n for _, n in files])
    starts = ends - np.array([n for _, n in files])
    rows = q.loc[sel, "row"].to_numpy(dtype=np.int64)
    which = np.searchsorted(ends, rows - 1, side="right")
    if (which >= len(files)).any():
        raise ValueError(f"{table}: quarantined row {int(rows.max())} is beyond the {int(ends[-1])} rows of the files")
    names = np.array([Path(p).name for p, _ in files], dtype=object)
    q = q.copy()
    q.loc[sel, "row"] = rows - starts[which]
    q.loc[sel, "details"] = names[which] + ": " + q.loc[sel, "details"].astype("str").to_numpy(dtype=object)
    q.loc[sel, "original"] = [_with_file(o, n) for o, n in zip(q.loc[sel, "original"], names[which], strict=True)]
    out = replace(data, quarantine=q)
    if len(files) > 1:
        listed = ", ".join(f"{Path(p).name} ({n})" for p, n in files)
        out = with_notes(
            out,
            [
                f"{table}: {int(ends[-1])} rows read from {listed}; a quarantined row is numbered as in its own file,"
                " which its details name."
            ],
        )
    return out


def _with_file(original: object, name: str) -> object:
    """A quarantine ``original`` (the row as JSON) with the file it came from as its first entry."""
    try:
        values = json.loads(str(original))
    except ValueError:
        return original
    return json.dumps({"file": name, **values}, ensure_ascii=False) if isinstance(values, dict) else original


# ---------------------------------------------------------------------------------------------- shared steps
def _blank(s: pd.Series) -> pd.Series:
    return (s.isna() | (s.astype("str").str.strip() == "")).astype(bool)


def _first_of(df: pd.DataFrame, names: Sequence[str]) -> tuple[pd.Series, pd.Series]:
    """Per row, the first non-empty value among the columns `names` that exist, and which column gave it.

    Returns the values (text, missing where every column is empty) and the column name per row ("" for none).
    """
    out = pd.Series([None] * len(df), index=df.index, dtype="str")
    used = pd.Series("", index=df.index, dtype="str")
    for name in names:
        col = find_column(df, name)
        if col is None:
            continue
        values = text_column(df, col)
        take = _blank(out) & ~_blank(values)
        out = out.mask(take, values)
        used = used.mask(take, name)
    return out, used


def _numbers(text: pd.Series) -> pd.Series:
    """Text -> float where it is a number; NaN for blanks and for text that is no number (the caller keeps it)."""
    return pd.to_numeric(text.astype("str").str.strip().replace("", None), errors="coerce")


def _minutes(text: pd.Series, per_minute: float) -> pd.Series:
    """A duration column as minutes (text), `per_minute` units a minute; what is no number stays as written."""
    values = _numbers(text)
    minutes = (values / per_minute).map(lambda v: np.format_float_positional(v, trim="-"), na_action="ignore")
    return minutes.astype("str").where(values.notna(), text.astype("str"))


def _prefixed(ids: pd.Series, *prefixes: str) -> pd.Series:
    return ids.astype("str").str.startswith(prefixes).fillna(False).astype(bool)


def _id_lookup(ids: pd.Series) -> dict[str, str]:
    """Known Ids -> themselves, also by their 15-character form (Salesforce reports export those)."""
    out: dict[str, str] = {}
    for v in pd.unique(ids.dropna().astype("str")):
        out[v] = v
        if len(v) == 18:
            out.setdefault(v[:15], v)
    return out


def _known(ids: pd.Series, lookup: dict[str, str]) -> pd.Series:
    """The export's own Id of each value; missing where unknown.

    A 15-character value finds an 18-character Id of the export, and an 18-character value a 15-character one.
    """
    text = ids.astype("str")
    found = text.map(lookup).astype("str")
    long = (text.str.len() == 18).fillna(False).astype(bool) & found.isna()
    if long.any():
        found = found.mask(long, text[long].str[:15].map(lookup).astype("str"))
    return found


# ---------------------------------------------------------------------------------------------- Salesforce
_SF_TIMES = {
    "Task": ("ActivityDate", "ActivityDateTime", "CompletedDateTime", "CreatedDate"),
    "Event": ("StartDateTime", "ActivityDateTime", "ActivityDate"),
}
_SF_SUBTYPES = {
    "call": "Call",
    "email": "Email",
    "listemail": "Email",
    "task": "Task",
    "event": "Meeting",
    "cadence": "Task",
}
_SF_DEFAULT_TYPE = {"Task": "Task", "Event": "Meeting"}


def _sf_rows(
    obj: str,
    df: pd.DataFrame,
    path: Path,
    owner_name: Callable[[pd.Series], pd.Series],
    opportunities: dict[str, str],
    leads: dict[str, str],
    notes: list[str],
) -> pd.DataFrame:
    """The raw activities of one Salesforce object file (``Task`` or ``Event``)."""
    need_column(df, path, TABLE, "Id")
    need_column(df, path, TABLE, "WhatId", "WhoId")
    need_column(df, path, TABLE, *_SF_TIMES[obj])
    what = text_column(df, find_column(df, "WhatId")).str.strip()
    who = text_column(df, find_column(df, "WhoId")).str.strip()
    opp = _known(what, opportunities)
    opp = opp.fillna(what.where(_prefixed(what, "006")))
    lead = _known(who, leads)
    lead = lead.fillna(who.where(_prefixed(who, "00Q")))
    occurred, used = _first_of(df, _SF_TIMES[obj])
    done_col = find_column(df, "CompletedDateTime")
    if obj == "Task" and done_col is not None:  # ActivityDate is a day; the completion time, on that day, is exact
        done = text_column(df, done_col)
        day_only = occurred.str.strip().str.fullmatch(r"\d{4}-\d{2}-\d{2}(?:[T ]00:00(?::00)?)?").fillna(False)
        same_day = parse_times(done).dt.normalize() == parse_times(occurred)
        occurred = occurred.mask((day_only & same_day.fillna(False)).astype(bool), done)
    later = used.isin(_SF_TIMES[obj][2:]) & (used != "")
    if obj == "Task" and later.any():
        counts = used[later].value_counts()
        listed = ", ".join(f"{n} from {c}" for c, n in counts.items())
        notes.append(
            f"{path.name}: {int(later.sum())} task(s) have no ActivityDate (no due date); their time is taken from"
            f" the next field that has one ({listed})."
        )
    own, _ = _first_of(df, ("Type",))
    sub, _ = _first_of(df, (f"{obj}Subtype",))
    sub_key = sub.str.strip().str.casefold().str.replace(r"[\s_\-]+", "", regex=True)
    sub = sub_key.map(_SF_SUBTYPES).astype("str").fillna(sub)
    kind = own.fillna(sub).fillna(_SF_DEFAULT_TYPE[obj])
    out = pd.DataFrame(
        {
            "activity_id": text_column(df, find_column(df, "Id")),
            "occurred_at": occurred,
            "type": kind,
            "opportunity_id": opp,
            "lead_id": lead,
        },
        index=df.index,
    )
    owner_col = find_column(df, "OwnerId")
    if owner_col is not None:
        out["owner"] = owner_name(text_column(df, owner_col))
    if find_column(df, "Subject") is not None:
        out["subject"] = text_column(df, find_column(df, "Subject"))
    outcome, _ = _first_of(df, ("CallDisposition", "Status", "Outcome__c"))
    out["outcome"] = outcome
    if find_column(df, "DurationInMinutes") is not None:
        out["duration"] = text_column(df, find_column(df, "DurationInMinutes"))
    if find_column(df, "CallDurationInSeconds") is not None:
        seconds = _minutes(text_column(df, find_column(df, "CallDurationInSeconds")), 60.0)
        out["duration"] = out["duration"].where(~_blank(out["duration"]), seconds) if "duration" in out else seconds
    contact = _prefixed(who, "003")
    if contact.any():
        out["contact_id"] = who.where(contact)
    if find_column(df, "AccountId") is not None:
        out["account_id"] = text_column(df, find_column(df, "AccountId"))
    outcome_col = find_column(df, "Outcome__c")
    for name, values in custom_columns(df.drop(columns=[outcome_col] if outcome_col else []), out.columns).items():
        out[name] = values
    other = ~_blank(what) & opp.isna()
    if other.any():
        notes.append(
            f"{path.name}: {int(other.sum())} {obj.lower()}(s) relate (WhatId) to records that are not opportunities"
            f" (accounts, cases...; e.g. {what[other].iloc[0][:20]!r}); they count as activities of a deal only"
            " through an opportunity, else of a lead (WhoId)."
        )
    return carry_malformed(df, out)


def salesforce_activities(
    files: Sequence[tuple[str, pd.DataFrame, Path]],
    owner_name: Callable[[pd.Series], pd.Series],
    opportunity_ids: pd.Series,
    lead_ids: pd.Series,
    notes: list[str],
) -> ActivityFiles | None:
    """The raw activities table of a Salesforce export's ``Task.csv`` and ``Event.csv``.

    Parameters
    ----------
    files : sequence of (object, rows, path)
        ``("Task", frame, path)`` and/or ``("Event", frame, path)``: the files as read (raw text).
    owner_name : callable
        OwnerId values -> owner names (the importer's users: the Id itself where the user is unknown).
    opportunity_ids, lead_ids : Series
        The Ids of the export's opportunities and leads (raw): a WhatId / WhoId among them is a deal / a lead
        whatever its prefix, and a 15-character one is written as the export's 18-character Id.
    notes : list of str
        Notes on what the files cannot tell are appended here.

    Returns
    -------
    ActivityFiles or None
        None when there is no file.

    Raises
    ------
    DataFileError
        A file without ``Id``, without both ``WhatId`` and ``WhoId``, or without any time field (named).
    """
    if not files:
        return None
    opps, leads = _id_lookup(opportunity_ids), _id_lookup(lead_ids)
    parts = [(obj, _sf_rows(obj, df, path, owner_name, opps, leads, notes), path) for obj, df, path in files]
    of_leads = sum(int((p["lead_id"].notna() & p["opportunity_id"].isna()).sum()) for _, p, _ in parts)
    if not leads and of_leads:
        notes.append(
            f"The export has no Lead.csv: {of_leads} activit(ies) of leads (WhoId 00Q...) are quarantined as"
            " 'unknown lead'. Export Lead.csv with the tasks and events to keep them."
        )
    if len(parts) > 1:
        seen = [set(p["activity_id"].dropna()) for _, p, _ in parts]
        shared = set.intersection(*seen)
        if shared:
            for obj, frame, _ in parts:
                ids = frame["activity_id"]
                keep = ids.isna() | is_malformed(ids)  # a malformed line keeps its mark, for validate to report
                frame["activity_id"] = (f"{obj}:" + ids.astype("str")).where(~keep, ids)
            notes.append(
                f"{len(shared)} Id(s) appear in both {' and '.join(p.name for _, _, p in parts)} (e.g."
                f" {sorted(shared)[0][:20]!r}); the activity ids are written Task:<Id> and Event:<Id> to keep them"
                " apart."
            )
    return _combine([(frame, path) for _, frame, path in parts], notes)


def _combine(parts: Sequence[tuple[pd.DataFrame, Path]], notes: list[str]) -> ActivityFiles:
    raw = pd.concat([frame for frame, _ in parts], ignore_index=True)
    return ActivityFiles(raw, tuple((path, len(frame)) for frame, path in parts))


# ---------------------------------------------------------------------------------------------- HubSpot
_HS_KINDS = ("calls", "meetings", "emails", "notes", "tasks", "engagements")
_HS_FILE_WORD = re.compile(r"(?<![a-z])(calls|meetings|emails|notes|tasks|engagements)(?![a-z])")
_HS_ID = ("Record ID", "Activity ID", "Engagement ID", "hs_object_id")
_HS_TIME = (
    "Activity date",
    "Timestamp",
    "hs_timestamp",
    "Meeting start time",
    "hs_meeting_start_time",
    "Create Date",
    "createdate",
)
_HS_OWN_TYPE = ("Call and meeting type", "hs_activity_type")
_HS_TYPE = ("Activity type", "Engagement type", "Type", "hs_engagement_type")
_HS_TYPE_WORDS = {
    "call": "Call",
    "meeting": "Meeting",
    "email": "Email",
    "incoming_email": "Email",
    "forwarded_email": "Email",
    "note": "Note",
    "task": "Task",
}
_HS_KIND_TYPE = {"calls": "Call", "meetings": "Meeting", "emails": "Email", "notes": "Note", "tasks": "Task"}
_HS_DEAL = ("Associated Deal IDs", "Associated Deal ID", "Associated Deals IDs", "Deal ID", "deal_id", "Deal IDs")
_HS_CONTACT = ("Associated Contact IDs", "Associated Contact ID", "Contact ID", "contact_id", "Contact IDs")
_HS_OWNER = ("Activity assigned to", "Assigned to", "Activity owner", "Owner", "hubspot_owner_id")
_HS_SUBJECT = (
    "Subject",
    "Call Title",
    "hs_call_title",
    "Meeting name",
    "Meeting title",
    "hs_meeting_title",
    "Email subject",
    "hs_email_subject",
    "Task Title",
    "hs_task_subject",
)
_HS_OUTCOME = (
    "Outcome",
    "Call outcome",
    "hs_call_disposition",
    "Meeting outcome",
    "hs_meeting_outcome",
    "Task status",
    "hs_task_status",
)
_HS_CALL_DURATION = ("Call duration", "hs_call_duration")
_HS_MEETING_END = ("Meeting end time", "hs_meeting_end_time")


def _hs_kind(path: Path) -> str | None:
    m = _HS_FILE_WORD.search(path.stem.casefold())
    return m.group(1) if m else None


def _columns(path: Path, encoding: str) -> list[str]:
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            return [str(c) for c in pd.read_excel(path, nrows=0).columns]
        with open(path, encoding=encoding, errors="replace") as fh:
            return [str(c) for c in pd.read_csv(fh, nrows=0).columns]
    except Exception:  # anything unreadable is not an engagement export
        return []


def hubspot_activity_files(deals: Path, encoding: str = "utf-8") -> list[Path]:
    """The HubSpot engagement exports beside a deals export.

    A file in the deals export's folder (``.csv``/``.xlsx``, not the deals file) whose name holds the word
    ``calls``, ``meetings``, ``emails``, ``notes``, ``tasks`` or ``engagements`` (any case, e.g.
    ``hubspot-crm-exports-calls-2024-06-01.csv``) and whose header has an id column (``Record ID``...) and an
    activity's time (``Activity date``, ``Timestamp``, ``Meeting start time``...), and no ``Deal Stage``.

    Parameters
    ----------
    deals : path
        The deals export.
    encoding : str
        Text encoding of the CSV files.

    Returns
    -------
    list of pathlib.Path
        Sorted by name.
    """
    deals = Path(deals)
    out = []
    for p in sorted(deals.parent.iterdir()):
        if p.name == deals.name or not p.is_file() or p.suffix.lower() not in (".csv", ".xlsx", ".xlsm"):
            continue
        if _hs_kind(p) is None:
            continue
        frame = pd.DataFrame(columns=_columns(p, "utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding))
        has_id = find_column(frame, *_HS_ID) is not None
        has_time = find_column(frame, *_HS_TIME[:-2]) is not None  # an activity's own time, not only Create Date
        if has_id and has_time and find_column(frame, "Deal Stage", "dealstage") is None:  # not another deals export
            out.append(p)
    return out


def _hs_minutes_of(text: pd.Series, milliseconds: bool) -> pd.Series:
    """HubSpot durations: ``h:mm:ss`` / ``mm:ss`` text or a number (milliseconds) -> minutes (text)."""
    s = text.astype("str").str.strip()
    clock = s.str.fullmatch(r"\d+(?::\d{1,2}){1,2}").fillna(False).astype(bool)
    out = _minutes(s, 60000.0 if milliseconds else 1.0)
    if clock.any():
        parts = s[clock].str.split(":")
        secs = parts.map(lambda p: sum(int(x) * 60**i for i, x in enumerate(reversed(p))))
        out = out.mask(clock, (secs / 60.0).map(lambda v: np.format_float_positional(v, trim="-")))
    return out


def _hs_rows(df: pd.DataFrame, path: Path, notes: list[str]) -> pd.DataFrame:
    """The raw activities of one HubSpot engagement export."""
    for names in (_HS_ID, _HS_TIME):
        if find_column(df, *names) is None:
            raise DataFileError(
                f"{path}: no column {names[0]!r} (or {', '.join(repr(n) for n in names[1:])}); a HubSpot engagement"
                f" export needs an id and a time (found {[str(c) for c in df.columns][:20]})",
                file=str(path),
                table=TABLE,
                column=names[0],
            )
    occurred, _ = _first_of(df, _HS_TIME)
    own, _ = _first_of(df, _HS_OWN_TYPE)
    general, _ = _first_of(df, _HS_TYPE)
    key = general.str.strip().str.casefold().str.replace(r"[\s\-]+", "_", regex=True)
    general = key.map(_HS_TYPE_WORDS).astype("str").fillna(general)
    kind = _hs_kind(path)
    kind = own.fillna(general).fillna(_HS_KIND_TYPE.get(kind or "", None))
    deals = text_column(df, find_column(df, *_HS_DEAL)).str.strip()
    several = deals.str.contains(r"[;,]", regex=True).fillna(False).astype(bool)
    first_deal = deals.str.replace(r"\s*[;,].*$", "", regex=True).replace("", None)
    if several.any():
        notes.append(
            f"{path.name}: {int(several.sum())} activit(ies) are associated with several deals; each is counted on"
            " the first deal named."
        )
    out = pd.DataFrame(
        {
            "activity_id": text_column(df, find_column(df, *_HS_ID)),
            "occurred_at": occurred,
            "type": kind,
            "opportunity_id": first_deal,
        },
        index=df.index,
    )
    contact = find_column(df, *_HS_CONTACT)
    if contact is not None:
        out["contact_id"] = text_column(df, contact)
        alone = first_deal.isna() & out["contact_id"].notna()
        if alone.any():
            notes.append(
                f"{path.name}: {int(alone.sum())} activit(ies) are associated with contacts and no deal; a HubSpot"
                " deals import has no leads table, so they are quarantined as 'no deal or lead'."
            )
    if find_column(df, *_HS_OWNER) is not None:
        out["owner"] = text_column(df, find_column(df, *_HS_OWNER))
    subject, _ = _first_of(df, _HS_SUBJECT)
    outcome, _ = _first_of(df, _HS_OUTCOME)
    out["subject"], out["outcome"] = subject, outcome
    call = find_column(df, *_HS_CALL_DURATION)
    end = find_column(df, *_HS_MEETING_END)
    duration = pd.Series([None] * len(df), index=df.index, dtype="str")
    if call is not None:
        duration = _hs_minutes_of(text_column(df, call), milliseconds=True)
    if end is not None:
        span = (parse_times(text_column(df, end)) - parse_times(occurred)).dt.total_seconds() / 60.0
        span = span.map(lambda v: np.format_float_positional(v, trim="-"), na_action="ignore").astype("str")
        duration = duration.where(~_blank(duration), span)
    if call is not None or end is not None:
        out["duration"] = duration
    return carry_malformed(df, out)


def hubspot_activities(
    files: Sequence[tuple[pd.DataFrame, Path]], notes: list[str], pipeline_note: str | None = None
) -> ActivityFiles | None:
    """The raw activities table of HubSpot engagement exports.

    Parameters
    ----------
    files : sequence of (rows, path)
        The engagement exports as read (raw text), one per activity type or one with a type column.
    notes : list of str
        Notes on what the files cannot tell are appended here.
    pipeline_note : str, optional
        When the deals were read for one pipeline: a note that activities of other pipelines' deals are
        quarantined as unknown opportunities.

    Returns
    -------
    ActivityFiles or None
        None when there is no file.
    """
    if not files:
        return None
    parts = [(_hs_rows(df, path, notes), path) for df, path in files]
    if pipeline_note:
        notes.append(pipeline_note)
    return _combine(parts, notes)
