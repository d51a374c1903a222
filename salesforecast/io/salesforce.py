"""Salesforce exports: a folder of object CSV files in, canonical tables out (and back).

`read_salesforce` translates the files of a Salesforce export (Data Export Service, Data Loader, Workbench:
one CSV per object, API field names as headers) into RAW canonical tables and hands them to
`salesforecast.schema.validate`, so quarantine rules and counts are the canonical loader's: every row of
every file read is accepted or quarantined, none is dropped here. What the translation finds and cannot fix
(a history that is a data load, owners without names, dates without times...) is returned in `CRMData.notes`.

Files (names and headers matched case-insensitively; ``.csv`` or ``.csv.gz``)
---------------------------------------------------------------------------
``Opportunity.csv`` (mandatory)
    ``Id, OwnerId, CreatedDate, StageName, Amount, CloseDate`` (required), ``IsClosed, IsWon`` (derived from
    the stage when absent), ``AccountId, LeadSource, ForecastCategoryName`` (or ``ForecastCategory``),
    ``Name`` (-> ``opportunity_name``), ``Type`` (-> ``type``), ``Owner.Name`` (owner name without
    User.csv), ``LeadId``/``Lead__c``, and custom fields ``Xyz__c`` (-> feature column ``xyz``; ``Team__c``
    sets the team).
``OpportunityHistory.csv``
    ``OpportunityId, CreatedDate`` (the time of the change) ``, StageName`` (required), ``Amount, CloseDate,
    ForecastCategory``.
``Lead.csv``
    ``Id, CreatedDate, IsConverted`` (required), ``ConvertedDate, ConvertedOpportunityId, OwnerId,
    LeadSource``, the features ``Industry, NumberOfEmployees, Country, Title, Rating, AnnualRevenue`` and
    custom fields. (``Status`` is not read: "Closed - Converted" would leak the outcome into lead scoring.)
    An opportunity's ``lead_id`` is the lead whose ``ConvertedOpportunityId`` names it.
``User.csv`` (and ``UserRole.csv``)
    ``Id, Name`` (or ``FirstName, LastName``): owners become user names. The team is the user's role
    (``UserRole.Name``, or ``UserRoleId`` looked up in ``UserRole.csv``), else the user's ``Title``.
``OpportunityStage.csv``
    ``ApiName`` (or ``MasterLabel``), ``SortOrder, DefaultProbability, IsClosed, IsWon, IsActive,
    ForecastCategoryName``: the process map, when `process` is not given. ``Organization.csv``
    (``FiscalYearStartMonth, UsesStartDateAsFiscalYearName``) sets its fiscal calendar.
``ForecastingSubmissionItem.csv`` + ``ForecastingSubmission.csv``, or ``ForecastingItem.csv``
    Forecast calls: owner (``ForecastOwnerId``/``OwnerId``), period (``PeriodId`` looked up in ``Period.csv``
    or ``PeriodStartDate``/``StartDate``, labelled with the process's fiscal calendar), category
    (``ForecastingItemCategory``: the cumulative rollups ``CommitForecast, BestCaseForecast,
    MostLikelyForecast, OpenPipeline`` are the calls ``commit, best_case, most_likely, pipeline``;
    ``ClosedOnly`` is ``closed``), amount (``Amount``/``ForecastAmount``), time (``SubmissionDateTime``).
``ForecastingQuota.csv`` (or ``Quota.csv``)
    ``QuotaOwnerId, StartDate`` (or ``PeriodId``) ``, QuotaAmount``.
``Task.csv`` and ``Event.csv``
    Activities: ``Id`` and ``WhatId`` (an opportunity) / ``WhoId`` (a lead; a contact is kept as ``contact_id``),
    the time (Task ``ActivityDate``, Event ``StartDateTime``/``ActivityDateTime``), ``Type`` else
    ``TaskSubtype``/``EventSubtype``, ``OwnerId``, ``Subject``, ``CallDisposition``/``Status``,
    ``DurationInMinutes``/``CallDurationInSeconds``: the rules are in `salesforecast.io.activities`. A quarantined
    activity's row is its row in its own file, which the quarantine's details name.

Values: booleans ``"0"/"1"`` or ``"true"/"false"``; times ``YYYY-MM-DD hh:mm:ss`` (Salesforce exports UTC) or
ISO 8601 with ``Z``/offsets (converted to naive UTC).

`write_salesforce` writes canonical data back in that shape; the module's tests check the round trip.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from salesforecast.io.activities import number_by_file, salesforce_activities
from salesforecast.io.common import (
    carry_malformed,
    custom_columns,
    find_column,
    header_key,
    need_column,
    parse_times,
    quarantine_notes,
    text_column,
    with_notes,
)
from salesforecast.process import (
    FiscalCalendar,
    ProcessError,
    SalesProcess,
    Stage,
    currency_code,
    normalize_forecast_category,
)
from salesforecast.schema import CRMData, DataFileError, read_table_file, validate

__all__ = ["is_salesforce_folder", "read_salesforce", "write_salesforce"]

_SUFFIXES = (".csv", ".csv.gz")


# ---------------------------------------------------------------------------------------------- shared helpers


def _parse_flags(text: pd.Series) -> pd.Series:
    """Text flags -> nullable booleans (true/1/yes, false/0/no)."""
    key = text.astype("str").str.strip().str.casefold()
    out = pd.Series(pd.NA, index=text.index, dtype="boolean")
    out[key.isin({"true", "1", "1.0", "yes", "y", "t"}).fillna(False).astype(bool)] = True
    out[key.isin({"false", "0", "0.0", "no", "n", "f"}).fillna(False).astype(bool)] = False
    return out


def _stage_flags(stage: pd.Series, process: SalesProcess) -> tuple[pd.Series, pd.Series]:
    """is_closed / is_won of each stage name (False for names the process does not know)."""
    canonical = process.map_stages(stage.astype("str").str.strip())
    return process.is_closed(canonical).astype(bool), process.is_won(canonical).astype(bool)


def _most_common(times: pd.Series) -> tuple[pd.Timestamp | None, int]:
    """The most frequent value of a datetime Series and its count."""
    counts = times.dropna().value_counts()
    if counts.empty:
        return None, 0
    return pd.Timestamp(counts.index[0]), int(counts.iloc[0])


# ---------------------------------------------------------------------------------------------- files
def _sf_file(folder: Path, name: str) -> Path | None:
    """The file of object `name` in `folder` (``Name.csv`` / ``Name.csv.gz``, any case), or None."""
    wanted = {f"{name}{s}".casefold() for s in _SUFFIXES}
    found = sorted(p for p in folder.iterdir() if p.name.casefold() in wanted)
    if len(found) > 1:
        raise DataFileError(
            f"{folder}: object {name} is given twice ({', '.join(p.name for p in found)}); keep one",
            file=str(folder),
        )
    if found and not found[0].is_file():
        raise DataFileError(f"{found[0]}: is not a file; expected the {name} export", file=str(found[0]))
    return found[0] if found else None


def is_salesforce_folder(path: str | Path) -> bool:
    """True when `path` is a folder holding a Salesforce ``Opportunity.csv`` (any case, or ``.csv.gz``).

    Examples
    --------
    >>> is_salesforce_folder("/no/such/folder")
    False
    """
    path = Path(path)
    if not path.is_dir():
        return False
    wanted = {f"opportunity{s}" for s in _SUFFIXES}
    return any(p.name.casefold() in wanted and p.is_file() for p in path.iterdir())


class _Export:
    """The files of one export folder, read on demand as raw text tables."""

    def __init__(self, folder: Path, encoding: str) -> None:
        self.folder = folder
        self.encoding = encoding
        self.paths: dict[str, Path | None] = {}
        self.frames: dict[str, pd.DataFrame] = {}

    def path(self, name: str) -> Path | None:
        if name not in self.paths:
            self.paths[name] = _sf_file(self.folder, name)
        return self.paths[name]

    def read(self, name: str, table: str) -> pd.DataFrame | None:
        if name not in self.frames:
            path = self.path(name)
            if path is None:
                return None
            self.frames[name] = read_table_file(path, table, encoding=self.encoding, duplicates="number")
        return self.frames[name]


# ---------------------------------------------------------------------------------------------- users
def _id_table(table: Mapping[str, str]) -> dict[str, str]:
    """An Id lookup that also answers for 15-character Ids (Salesforce reports export those)."""
    out = dict(table)
    for k, v in table.items():
        if len(k) == 18:
            out.setdefault(k[:15], v)
    return out


def _map_ids(ids: pd.Series, table: Mapping[str, str]) -> pd.Series:
    """Look Ids up in an `_id_table` (an 18-character Id also by its 15-character prefix); missing where unknown."""
    mapping = {}
    for u in pd.unique(ids.dropna()):
        v = table.get(u)
        if v is None and len(u) == 18:
            v = table.get(u[:15])
        if v is not None:
            mapping[u] = v
    return ids.map(mapping).astype("str")


class _Users:
    """Salesforce user Id -> name and team."""

    def __init__(self, names: Mapping[str, str], teams: Mapping[str, str], source: str | None) -> None:
        self.names = _id_table(names)
        self.teams = _id_table(teams)
        self.source = source

    def name(self, ids: pd.Series) -> pd.Series:
        """User names (the Id itself where the user is unknown)."""
        return _map_ids(ids, self.names).fillna(ids)

    def team(self, ids: pd.Series) -> pd.Series:
        """User teams (missing where unknown)."""
        return _map_ids(ids, self.teams)

    def unknown(self, ids: pd.Series) -> set[str]:
        """Ids that are not users."""
        return set(ids.dropna()[_map_ids(ids, self.names).isna()].unique()) if self.names else set()


def _read_users(export: _Export) -> _Users:
    users = export.read("User", "users")
    if users is None:
        return _Users({}, {}, None)
    path = export.path("User")
    ids = text_column(users, need_column(users, path, "users", "Id"))
    name_col = find_column(users, "Name")
    if name_col is not None:
        names = text_column(users, name_col).str.strip()
    else:
        first, last = find_column(users, "FirstName"), find_column(users, "LastName")
        if last is None:
            raise DataFileError(
                f"{path}: no column 'Name' (or 'FirstName', 'LastName'); needed to name the owners",
                file=str(path),
                table="users",
                column="Name",
            )
        names = (text_column(users, first).fillna("") + " " + text_column(users, last).fillna("")).str.strip()
    team = None
    role_col = find_column(users, "UserRole.Name", "UserRoleName", "Role", "RoleName")
    if role_col is not None:
        team = text_column(users, role_col).str.strip()
    else:
        roles = export.read("UserRole", "users")
        role_id = find_column(users, "UserRoleId")
        if roles is not None and role_id is not None:
            rpath = export.path("UserRole")
            role_names = dict(
                zip(
                    text_column(roles, need_column(roles, rpath, "users", "Id")),
                    text_column(roles, need_column(roles, rpath, "users", "Name")).str.strip(),
                    strict=True,
                )
            )
            team = _map_ids(text_column(users, role_id), _id_table(role_names))
    if (team is None or team.isna().all()) and find_column(users, "Title") is not None:
        team = text_column(users, find_column(users, "Title")).str.strip()
    keep = ids.notna() & names.notna() & (names != "")
    name_map = dict(zip(ids[keep], names[keep], strict=True))
    team_map = {}
    if team is not None:
        ok = ids.notna() & team.notna() & (team != "")
        team_map = dict(zip(ids[ok], team[ok], strict=True))
    return _Users(name_map, team_map, str(path))


# ---------------------------------------------------------------------------------------------- process map
def _calendar(export: _Export) -> FiscalCalendar | None:
    org = export.read("Organization", "process")
    if org is None:
        return None
    path = export.path("Organization")
    col = find_column(org, "FiscalYearStartMonth")
    if col is None or org.empty:
        return None
    value = str(org[col].iloc[0]).strip()
    try:
        month = int(float(value))
        naming_col = find_column(org, "UsesStartDateAsFiscalYearName")
        start_named = bool(naming_col and _parse_flags(org[naming_col]).fillna(False).iloc[0])
        return FiscalCalendar(month, "start" if start_named else "end")
    except (ValueError, ProcessError):
        raise DataFileError(
            f"{path}: FiscalYearStartMonth {value!r} is not a month number from 1 to 12",
            file=str(path),
            table="process",
            column=col,
        ) from None


def _currency(export: _Export) -> str | None:
    """The organisation's currency (Organization.csv's DefaultCurrencyIsoCode), None when the export has none."""
    org = export.read("Organization", "process")
    col = find_column(org, "DefaultCurrencyIsoCode") if org is not None else None
    if col is None or org.empty or pd.isna(org[col].iloc[0]) or not str(org[col].iloc[0]).strip():
        return None
    value = str(org[col].iloc[0]).strip()
    try:
        return currency_code(value)
    except ValueError:
        path = export.path("Organization")
        raise DataFileError(
            f"{path}: DefaultCurrencyIsoCode {value[:20]!r} is not a currency code of three letters (EUR, USD)",
            file=str(path),
            table="process",
            column=col,
        ) from None


def _process_from_stages(
    stages: pd.DataFrame, path: Path, used: set[str], calendar: FiscalCalendar | None, notes: list[str]
) -> SalesProcess:
    """A `SalesProcess` from an OpportunityStage export (inactive stages kept only when deals use them)."""
    table = "process"
    name_col = find_column(stages, "ApiName", "MasterLabel")
    if name_col is None:
        need_column(stages, path, table, "ApiName", "MasterLabel")
    label_col = find_column(stages, "MasterLabel")
    names = text_column(stages, name_col).str.strip()
    labels = text_column(stages, label_col).str.strip()
    closed = _parse_flags(text_column(stages, need_column(stages, path, table, "IsClosed")))
    won = _parse_flags(text_column(stages, need_column(stages, path, table, "IsWon")))
    active_col = find_column(stages, "IsActive")
    active = (
        _parse_flags(text_column(stages, active_col)).fillna(True)
        if active_col
        else pd.Series(True, index=stages.index)
    )
    order_col = find_column(stages, "SortOrder")
    order = (
        pd.to_numeric(text_column(stages, order_col), errors="coerce") if order_col else pd.Series(np.nan, stages.index)
    )
    prob_col = find_column(stages, "DefaultProbability")
    prob = (
        pd.to_numeric(text_column(stages, prob_col), errors="coerce") if prob_col else pd.Series(np.nan, stages.index)
    )
    cat_col = find_column(stages, "ForecastCategoryName", "ForecastCategory")
    cats = text_column(stages, cat_col)

    def bad(column: str | None, i: int, value: object, expected: str) -> DataFileError:
        return DataFileError(
            f"{path}: row {i + 1}, column {column!r}: {value!r} is not {expected}",
            file=str(path),
            table=table,
            column=column,
        )

    rows = []
    kept_inactive = []
    for i in range(len(stages)):
        name = names.iloc[i]
        if pd.isna(name) or not name:
            raise bad(name_col, i, name, "a stage name")
        if pd.isna(closed.iloc[i]):
            raise bad(
                find_column(stages, "IsClosed"), i, stages.iloc[i][find_column(stages, "IsClosed")], "a boolean (0/1)"
            )
        if pd.isna(won.iloc[i]):
            raise bad(find_column(stages, "IsWon"), i, stages.iloc[i][find_column(stages, "IsWon")], "a boolean (0/1)")
        keys = {header_key(name)} | ({header_key(labels.iloc[i])} if pd.notna(labels.iloc[i]) else set())
        if not active.iloc[i]:
            if not keys & used:
                continue  # an inactive stage no deal uses
            kept_inactive.append(name)
        kind = "open" if not closed.iloc[i] else ("won" if won.iloc[i] else "lost")
        p = prob.iloc[i]
        if prob_col and pd.notna(stages[prob_col].iloc[i]) and pd.isna(p):
            raise bad(prob_col, i, stages[prob_col].iloc[i], "a probability (0-100)")
        cat_raw = cats.iloc[i]
        cat = normalize_forecast_category(cat_raw) if pd.notna(cat_raw) else None
        if pd.notna(cat_raw) and cat is None:
            raise bad(cat_col, i, cat_raw, "a forecast category (Omitted, Pipeline, Best Case, Commit, Closed)")
        rows.append((kind != "open", order.iloc[i], i, name, kind, p, cat, labels.iloc[i]))
    scale = 100.0 if prob.dropna().gt(1).any() else 1.0  # Salesforce writes percentages; accept fractions too
    rows.sort(key=lambda r: (r[0], r[1] if pd.notna(r[1]) else np.inf, r[2]))
    built = []
    for _, _, _, name, kind, p, cat, label in rows:
        default_p = {"won": 1.0, "lost": 0.0}.get(kind, 0.0)
        default_cat = {"won": "closed", "lost": "omitted"}.get(kind, "pipeline")
        aliases = (label,) if pd.notna(label) and label and header_key(label) != header_key(name) else ()
        built.append(
            Stage(
                name=name,
                kind=kind,
                probability=float(p) / scale if pd.notna(p) else default_p,
                forecast_category=cat or default_cat,
                aliases=aliases,
            )
        )
    try:
        process = SalesProcess(
            tuple(built), name="Salesforce opportunity stages", calendar=calendar or FiscalCalendar()
        )
    except ProcessError as exc:
        raise DataFileError(f"{path}: not a usable stage list: {exc}", file=str(path), table=table) from None
    if kept_inactive:
        notes.append(
            f"OpportunityStage.csv: the inactive stage(s) {', '.join(map(repr, kept_inactive))} are still used by"
            " opportunities or their history; they are kept in the process map at their sort order."
        )
    return process


# ---------------------------------------------------------------------------------------------- periods
def _period_labels(
    starts: pd.Series, types: pd.Series | None, calendar: FiscalCalendar, what: str, notes: list[str]
) -> pd.Series:
    """Fiscal period labels of period start dates; `types` (Month/Quarter/Year) from Period.csv when known.

    A start date that cannot be read, or a period type without a canonical label (Week), stays as written
    so that `validate` quarantines the row as "invalid period".
    """
    dates = parse_times(starts)
    raw = starts.astype("str")
    out = raw.copy()
    ok = dates.notna()
    if types is None:
        d = dates[ok]
        is_q_start = bool(((d.dt.day == 1) & ((d.dt.month - calendar.start_month) % 3 == 0)).all())
        freq = "quarter" if is_q_start else "month"
        out[ok] = calendar.period(d, freq)
        if ok.any():
            notes.append(
                f"{what}: the period type is not in the export (no Period.csv with Id, Type); periods are read as"
                f" fiscal {freq}s because {'every' if is_q_start else 'not every'} start date is the first day"
                " of a fiscal quarter."
            )
        return out
    kind = types.astype("str").str.strip().str.casefold()
    for name, freq in (("month", "month"), ("quarter", "quarter"), ("year", "year")):
        sel = ok & (kind == name).fillna(False)
        if sel.any():
            out[sel] = calendar.period(dates[sel], freq)
    other = ok & ~kind.isin(["month", "quarter", "year"]).fillna(False)
    out[other] = types[other].astype("str") + " from " + raw[other]
    return out


def _period_table(export: _Export) -> tuple[dict[str, str], dict[str, str]] | None:
    periods = export.read("Period", "periods")
    if periods is None:
        return None
    path = export.path("Period")
    ids = text_column(periods, need_column(periods, path, "periods", "Id"))
    start = text_column(periods, need_column(periods, path, "periods", "StartDate"))
    kind = text_column(periods, find_column(periods, "Type"))
    return (
        _id_table(dict(zip(ids, start, strict=True))),
        _id_table(dict(zip(ids, kind.fillna(""), strict=True))),
    )


def _periods_of(
    df: pd.DataFrame,
    path: Path,
    table: str,
    export: _Export,
    calendar: FiscalCalendar,
    notes: list[str],
    start_names: tuple[str, ...],
) -> pd.Series:
    """The period label of each row: from PeriodId (with Period.csv) or a start-date column."""
    what = path.name
    pid = find_column(df, "PeriodId")
    lookup = _period_table(export)
    if pid is not None and lookup is not None:
        ids = text_column(df, pid)
        starts = _map_ids(ids, lookup[0])
        types = _map_ids(ids, lookup[1]).replace("", None)
        start_col = find_column(df, *start_names)
        if start_col is not None:  # rows whose PeriodId is not in Period.csv: fall back to the start date
            starts = starts.fillna(text_column(df, start_col))
        known = types.notna().any()
        labels = _period_labels(starts, types.fillna("Quarter") if known else None, calendar, what, notes)
        return labels.fillna(ids)  # a PeriodId that names no period stays as written: an invalid period
    start_col = find_column(df, *start_names)
    if start_col is None:
        label_col = find_column(df, "Period", "PeriodLabel")
        if label_col is not None:
            return text_column(df, label_col)
        if pid is not None:
            raise DataFileError(
                f"{path}: PeriodId needs Period.csv (Id, StartDate, Type) in the folder, or a"
                f" {start_names[0]!r} column, to tell the period",
                file=str(path),
                table=table,
                column=pid,
            )
        need_column(df, path, table, *start_names, "PeriodId")
    return _period_labels(text_column(df, start_col), None, calendar, what, notes)


# ---------------------------------------------------------------------------------------------- tables
#: Standard fields read as feature columns (API name -> column).
_OPP_FIELDS = {"Name": "opportunity_name", "Type": "type"}
_LEAD_FIELDS = {
    "Industry": "industry",
    "NumberOfEmployees": "employees",
    "Country": "country",
    "Title": "title",
    "Rating": "rating",
    "AnnualRevenue": "annual_revenue",
}
_ROLLUPS = {
    "commitforecast": "commit",
    "bestcaseforecast": "best_case",
    "mostlikelyforecast": "most_likely",
    "openpipeline": "pipeline",
    "closedonly": "closed",
}


def _opportunities(
    opp: pd.DataFrame, path: Path, users: _Users, process: SalesProcess, lead_of: Mapping[str, str], notes: list[str]
) -> pd.DataFrame:
    t = "opportunities"
    ids = text_column(opp, need_column(opp, path, t, "Id"))
    owner_ids = text_column(opp, need_column(opp, path, t, "OwnerId"))
    owner_name_col = find_column(opp, "Owner.Name", "OwnerName")
    if users.names:
        owner = users.name(owner_ids)
    elif owner_name_col is not None:
        owner = text_column(opp, owner_name_col).fillna(owner_ids)
    else:
        owner = owner_ids
    stage = text_column(opp, need_column(opp, path, t, "StageName"))
    out = pd.DataFrame(
        {
            "opportunity_id": ids,
            "owner": owner,
            "created_at": text_column(opp, need_column(opp, path, t, "CreatedDate")),
            "stage": stage,
            "amount": text_column(opp, need_column(opp, path, t, "Amount")),
            "close_date": text_column(opp, need_column(opp, path, t, "CloseDate")),
        },
        index=opp.index,
    )
    closed_col, won_col = find_column(opp, "IsClosed"), find_column(opp, "IsWon")
    if closed_col is None or won_col is None:
        is_closed, is_won = _stage_flags(stage, process)
        notes.append(f"{path.name}: no IsClosed/IsWon columns; is_closed and is_won are derived from the stage.")
    out["is_closed"] = text_column(opp, closed_col) if closed_col else is_closed
    out["is_won"] = text_column(opp, won_col) if won_col else is_won
    team_col = find_column(opp, "Team__c")
    if team_col is not None:
        out["team"] = text_column(opp, team_col)
    elif users.teams:
        out["team"] = users.team(owner_ids)
    elif find_column(opp, "Owner.UserRole.Name") is not None:
        out["team"] = text_column(opp, find_column(opp, "Owner.UserRole.Name"))
    for field, name in (("AccountId", "account_id"), ("LeadSource", "lead_source")):
        if find_column(opp, field) is not None:
            out[name] = text_column(opp, find_column(opp, field))
    lead_col = find_column(opp, "LeadId", "Lead__c", "Lead")
    if lead_col is not None:
        out["lead_id"] = text_column(opp, lead_col)
    elif lead_of:
        out["lead_id"] = ids.map(dict(lead_of)).astype("str")
    cat_col = find_column(opp, "ForecastCategoryName", "ForecastCategory")
    if cat_col is not None:
        out["forecast_category"] = text_column(opp, cat_col)
    for field, name in _OPP_FIELDS.items():
        if find_column(opp, field) is not None:
            out[name] = text_column(opp, find_column(opp, field))
    used = [c for c in (team_col, lead_col) if c is not None]
    for name, values in custom_columns(opp.drop(columns=used), out.columns).items():
        out[name] = values
    return carry_malformed(opp, out)


def _history(hist: pd.DataFrame, path: Path) -> pd.DataFrame:
    t = "stage_history"
    out = pd.DataFrame(
        {
            "opportunity_id": text_column(hist, need_column(hist, path, t, "OpportunityId")),
            "changed_at": text_column(hist, need_column(hist, path, t, "CreatedDate")),
            "stage": text_column(hist, need_column(hist, path, t, "StageName")),
        },
        index=hist.index,
    )
    for field, name in (("Amount", "amount"), ("CloseDate", "close_date")):
        if find_column(hist, field) is not None:
            out[name] = text_column(hist, find_column(hist, field))
    cat_col = find_column(hist, "ForecastCategory", "ForecastCategoryName")
    if cat_col is not None:
        out["forecast_category"] = text_column(hist, cat_col)
    return carry_malformed(hist, out)


def _leads(lead: pd.DataFrame, path: Path, users: _Users, notes: list[str]) -> pd.DataFrame:
    t = "leads"
    created = text_column(lead, need_column(lead, path, t, "CreatedDate"))
    out = pd.DataFrame(
        {
            "lead_id": text_column(lead, need_column(lead, path, t, "Id")),
            "created_at": created,
            "converted": text_column(lead, need_column(lead, path, t, "IsConverted")),
        },
        index=lead.index,
    )
    conv_col = find_column(lead, "ConvertedDate")
    if conv_col is not None:
        conv = text_column(lead, conv_col)
        # ConvertedDate is a date (the org's local day) without time; created_at a UTC time. A lead converted on
        # the day it was created would read as converted at midnight, before its creation, and be quarantined.
        date_only = conv.str.strip().str.fullmatch(r"\d{4}-\d{2}-\d{2}(?:[T ]00:00(?::00(?:\.0+)?)?Z?)?").fillna(False)
        c_time, c_day = parse_times(created), parse_times(conv)
        early = date_only & (c_day < c_time) & (c_day >= c_time.dt.normalize() - pd.Timedelta(days=1))
        early = early.fillna(False).astype(bool)
        if early.any():
            conv = conv.mask(early, created)
            notes.append(
                f"{path.name}: ConvertedDate is a date without a time; {int(early.sum())} lead(s) converted on the"
                " day they were created (or the day before, in UTC) get converted_at = created_at instead of a"
                " midnight before their creation. Conversion times are known to the day only."
            )
        out["converted_at"] = conv
    if find_column(lead, "ConvertedOpportunityId") is not None:
        out["opportunity_id"] = text_column(lead, find_column(lead, "ConvertedOpportunityId"))
    if find_column(lead, "OwnerId") is not None:
        out["owner"] = users.name(text_column(lead, find_column(lead, "OwnerId")))
    if find_column(lead, "LeadSource") is not None:
        out["lead_source"] = text_column(lead, find_column(lead, "LeadSource"))
    for field, name in _LEAD_FIELDS.items():
        if find_column(lead, field) is not None:
            out[name] = text_column(lead, find_column(lead, field))
    for name, values in custom_columns(lead, out.columns).items():
        out[name] = values
    return carry_malformed(lead, out)


def _categories(values: pd.Series) -> pd.Series:
    """Forecasting rollup names -> canonical categories (other values unchanged, for `validate` to judge)."""
    key = values.astype("str").str.strip().str.casefold().str.replace(r"[\s_]+", "", regex=True)
    return key.map(_ROLLUPS).astype("str").fillna(values.astype("str"))


def _submissions(
    export: _Export, users: _Users, calendar: FiscalCalendar, notes: list[str]
) -> tuple[pd.DataFrame, Path] | None:
    t = "forecast_submissions"
    items = export.read("ForecastingSubmissionItem", t)
    if items is not None:
        path = export.path("ForecastingSubmissionItem")
        subs = export.read("ForecastingSubmission", t)
        if subs is None:
            raise DataFileError(
                f"{path}: ForecastingSubmissionItem.csv needs ForecastingSubmission.csv (owner, period and time of"
                " each submission) in the same folder",
                file=str(path),
                table=t,
            )
        spath = export.path("ForecastingSubmission")
        sub_id = text_column(items, need_column(items, path, t, "ForecastingSubmissionId"))
        id_col = need_column(subs, spath, t, "Id")
        if subs[id_col].duplicated().any():
            dup = subs[id_col][subs[id_col].duplicated()].iloc[0]
            raise DataFileError(f"{spath}: submission Id {dup!r} repeats", file=str(spath), table=t, column=id_col)
        matched = subs.set_index(id_col).reindex(sub_id.to_numpy())  # a missing submission: an empty row
        matched.index = items.index
        owner_ids = text_column(matched, need_column(subs, spath, t, "ForecastOwnerId", "OwnerId"))
        time_col = need_column(subs, spath, t, "SubmissionDateTime", "SubmittedDate", "CreatedDate")
        if header_key(time_col) == "createddate":
            notes.append(f"{spath.name}: no SubmissionDateTime; CreatedDate is taken as the time of each call.")
        submitted = text_column(matched, time_col)
        period = _periods_of(matched, spath, t, export, calendar, notes, ("PeriodStartDate", "StartDate"))
        category = text_column(items, need_column(items, path, t, "ForecastingItemCategory", "ForecastCategoryName"))
        amount = text_column(items, need_column(items, path, t, "Amount", "ForecastAmount"))
        source = items
    else:
        items = export.read("ForecastingItem", t)
        if items is None:
            return None
        path = export.path("ForecastingItem")
        owner_ids = text_column(items, need_column(items, path, t, "OwnerId", "ForecastOwnerId"))
        time_col = need_column(
            items, path, t, "SubmissionDateTime", "SubmittedDate", "LastModifiedDate", "SystemModstamp"
        )
        if header_key(time_col) in ("lastmodifieddate", "systemmodstamp"):
            notes.append(
                f"{path.name}: ForecastingItem rows are the live forecast, not dated submissions; {time_col} (when"
                " each row last changed) is taken as the time of the call, and earlier calls are not in the export."
            )
        submitted = text_column(items, time_col)
        period = _periods_of(items, path, t, export, calendar, notes, ("PeriodStartDate", "StartDate"))
        category = text_column(items, need_column(items, path, t, "ForecastingItemCategory", "ForecastCategoryName"))
        amount = text_column(items, need_column(items, path, t, "ForecastAmount", "Amount"))
        source = items
    mapped = _categories(category)
    only = category.str.strip().str.fullmatch(r"(?i)(pipeline|bestcase|mostlikely|commit)only").fillna(False)
    if only.any():
        notes.append(
            f"{path.name}: {int(only.sum())} row(s) are single-category rollups (CommitOnly, BestCaseOnly, ...), which"
            " leave out closed deals and are not forecast calls; they are quarantined as 'unknown forecast"
            " category'. The cumulative rollups (CommitForecast, BestCaseForecast, ...) are the calls."
        )
    out = pd.DataFrame(
        {
            "submitted_at": submitted,
            "owner": users.name(owner_ids),
            "period": period,
            "category": mapped,
            "amount": amount,
        },
        index=source.index,
    )
    if users.teams:
        out["team"] = users.team(owner_ids)
    return carry_malformed(source, out), path


def _quotas(
    export: _Export, users: _Users, calendar: FiscalCalendar, notes: list[str]
) -> tuple[pd.DataFrame, Path] | None:
    t = "quotas"
    name = "ForecastingQuota" if export.path("ForecastingQuota") is not None else "Quota"
    quotas = export.read(name, t)
    if quotas is None:
        return None
    path = export.path(name)
    out = pd.DataFrame(
        {
            "owner": users.name(text_column(quotas, need_column(quotas, path, t, "QuotaOwnerId", "OwnerId"))),
            "period": _periods_of(quotas, path, t, export, calendar, notes, ("StartDate", "PeriodStartDate")),
            "amount": text_column(quotas, need_column(quotas, path, t, "QuotaAmount", "Amount")),
        },
        index=quotas.index,
    )
    return carry_malformed(quotas, out), path


# ---------------------------------------------------------------------------------------------- read
def read_salesforce(
    folder: str | Path, process: SalesProcess | str | Path | None = None, *, encoding: str = "utf-8"
) -> CRMData:
    """Read a Salesforce export folder into validated canonical tables.

    Parameters
    ----------
    folder : path
        A folder holding ``Opportunity.csv`` and optionally ``OpportunityHistory.csv``, ``Lead.csv``,
        ``User.csv`` (+ ``UserRole.csv``), ``OpportunityStage.csv`` (+ ``Organization.csv``), forecasting
        exports (``ForecastingSubmissionItem.csv`` + ``ForecastingSubmission.csv``, or ``ForecastingItem.csv``;
        ``Period.csv``), ``ForecastingQuota.csv`` and the activities ``Task.csv`` and ``Event.csv``. The files and
        fields are described in the module docstring.
    process : SalesProcess, path of a process YAML, "default" or None
        The process map. The default (None or ``"default"``, see `SalesProcess.resolve`) builds it from
        ``OpportunityStage.csv`` when the folder has one, else uses Salesforce's standard stages (with the fiscal
        year of ``Organization.csv`` when present).
    encoding : str
        Text encoding of the files (a UTF-8 byte-order mark is always accepted).

    Returns
    -------
    CRMData
        Accepted tables, quarantine and counts (``read == accepted + quarantined`` for every table, rows
        numbered as in the files: a quarantined activity's in Task.csv or Event.csv, named in its details), and
        `CRMData.notes` on what the export cannot tell (a history that is a data load, owners without names, ...).

    Raises
    ------
    DataFileError
        No such folder, no ``Opportunity.csv``, a required column missing (named), or a file that cannot be
        read (wrong encoding, not a CSV file).

    Examples
    --------
    >>> import tempfile
    >>> from salesforecast.datasets import generate
    >>> data, _ = generate(n_opportunities=200, seed=3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     back = read_salesforce(write_salesforce(data, tmp))
    >>> back.counts.loc["opportunities"].tolist()
    [200, 200, 0]
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataFileError(
            f"{folder}: no such folder; expected a Salesforce export holding Opportunity.csv", file=str(folder)
        )
    export = _Export(folder, encoding)
    opp_path = export.path("Opportunity")
    if opp_path is None:
        raise DataFileError(
            f"{folder}: no Opportunity.csv; a Salesforce export folder holds at least Opportunity.csv"
            f" (found {sorted(p.name for p in folder.iterdir())[:20]})",
            file=str(folder / "Opportunity.csv"),
            table="opportunities",
        )
    notes: list[str] = []
    opp = export.read("Opportunity", "opportunities")
    hist = export.read("OpportunityHistory", "stage_history")
    hist_path = export.path("OpportunityHistory")

    if SalesProcess.is_default(process):
        calendar = _calendar(export)
        stages = export.read("OpportunityStage", "process")
        if stages is not None:
            used = set()
            for df in (opp, hist):
                col = find_column(df, "StageName") if df is not None else None
                if col is not None:
                    used |= {header_key(v) for v in pd.unique(df[col].dropna())}
            process = _process_from_stages(stages, export.path("OpportunityStage"), used, calendar, notes)
        elif calendar is not None:
            default = SalesProcess.default()
            process = SalesProcess(default.stages, name=default.name, calendar=calendar)
        currency = _currency(export)
        if currency is not None:  # the organisation's currency, shown in the reports
            process = replace(SalesProcess.resolve(process), currency=currency)
    process = SalesProcess.resolve(process)

    users = _read_users(export)
    tables: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {"opportunities": str(opp_path)}

    lead = export.read("Lead", "leads")
    lead_of: dict[str, str] = {}
    if lead is not None:
        lpath = export.path("Lead")
        tables["leads"] = _leads(lead, lpath, users, notes)
        sources["leads"] = str(lpath)
        links = tables["leads"][["lead_id", "opportunity_id"]] if "opportunity_id" in tables["leads"] else None
        if links is not None:
            links = links.dropna()
            lead_of = dict(zip(links["opportunity_id"][::-1], links["lead_id"][::-1], strict=True))  # first wins
    tables["opportunities"] = _opportunities(opp, opp_path, users, process, lead_of, notes)
    if hist is not None:
        tables["stage_history"] = _history(hist, hist_path)
        sources["stage_history"] = str(hist_path)
    subs = _submissions(export, users, process.calendar, notes)
    if subs is not None:
        tables["forecast_submissions"], spath = subs
        sources["forecast_submissions"] = str(spath)
    quotas = _quotas(export, users, process.calendar, notes)
    if quotas is not None:
        tables["quotas"], qpath = quotas
        sources["quotas"] = str(qpath)
    activity_files = [
        (name, frame, export.path(name))
        for name in ("Task", "Event")
        if (frame := export.read(name, "activities")) is not None
    ]
    acts = salesforce_activities(
        activity_files,
        users.name,
        tables["opportunities"]["opportunity_id"],
        tables["leads"]["lead_id"] if "leads" in tables else pd.Series([], dtype="str"),
        notes,
    )
    if acts is not None:
        tables["activities"] = acts.raw
        sources["activities"] = acts.source

    # ---- what the export cannot tell
    owner_col = find_column(opp, "OwnerId")
    if users.source is None and find_column(opp, "Owner.Name", "OwnerName") is None and len(opp):
        notes.append(
            "No User.csv in the export: owners are Salesforce user Ids (OwnerId), not names, and there is no team."
            " Export User.csv (Id, Name, UserRoleId) with UserRole.csv to get names and teams."
        )
    elif users.names:
        unknown = users.unknown(text_column(opp, owner_col))
        if unknown:
            notes.append(
                f"{len(unknown)} opportunity owner Id(s) are not in User.csv (e.g. {sorted(unknown)[0]!r}); those"
                " owners are shown by their Id."
            )
    named = [("Opportunity.csv", opp), ("OpportunityHistory.csv", hist), ("Lead.csv", lead)]
    named += [(path.name, frame) for _, frame, path in activity_files]
    for name, df in named:
        col = find_column(df, "IsDeleted") if df is not None else None
        if col is not None:
            deleted = int(_parse_flags(df[col]).fillna(False).sum())
            if deleted:
                notes.append(
                    f"{name}: {deleted} row(s) have IsDeleted = 1 (deleted in Salesforce, exported by 'Export All');"
                    " they are read like the others."
                )
    created = parse_times(tables["opportunities"]["created_at"])
    load_time, load_n = _most_common(created)
    created_is_load = load_n > 1 and load_n > len(created) / 2
    if created_is_load:
        notes.append(
            f"Opportunity.csv: {load_n} of {len(created)} opportunities have the same CreatedDate {load_time}: the"
            " time the records were loaded, not when the deals began. Deal ages, creation cohorts and the pipeline"
            " as it stood before that time are not real."
        )
    if "stage_history" in tables and len(tables["stage_history"]):
        h = tables["stage_history"]
        changed = parse_times(h["changed_at"])
        t_hist, n_hist = _most_common(changed)
        n_opps = h.loc[changed == t_hist, "opportunity_id"].nunique() if t_hist is not None else 0
        if n_hist > 1 and n_opps > 1 and n_hist > len(h) / 2:
            share = "all" if n_hist == len(h) else f"{n_hist} of"
            notes.append(
                f"OpportunityHistory.csv: {share} {len(h)} history rows ({n_opps} opportunities) carry the same"
                f" timestamp {t_hist}: a data load, not the deals' progression through the stages. No times are"
                " invented: stage durations, conversion timing between stages, the pipeline as it stood at past"
                " dates and backtests of forecasts cannot be measured from this history; only each deal's current"
                " state is real."
            )

    data = validate(tables, process=process, sources=sources)
    if acts is not None:  # a quarantined activity: its row in Task.csv or Event.csv
        data = number_by_file(data, acts.files)

    q = data.quarantine
    early = q[(q["table"] == "opportunities") & (q["reason"] == "close date before creation")]
    if len(early):
        total = int(data.counts.loc["opportunities", "read"])
        lost_hist = int(((q["table"] == "stage_history") & (q["reason"] == "opportunity quarantined")).sum())
        cause = (
            f" Here CreatedDate is the load time {load_time}, so the rule rejects deals whose dates are probably"
            " fine; the importer keeps the canonical rule rather than invent creation dates. To keep these deals,"
            " export their original creation date as CreatedDate (a data migration can set it with Salesforce's"
            " 'Set Audit Fields upon Record Creation')."
            if created_is_load
            else ""
        )
        notes.append(
            f"{len(early)} of {total} opportunities were quarantined as 'close date before creation' (CloseDate more"
            f" than a day before CreatedDate), and {lost_hist} history row(s) with them ('opportunity"
            f" quarantined').{cause}"
        )
    notes.extend(
        quarantine_notes(
            data, "Give the organisation's process map (process=...) or include OpportunityStage.csv in the export."
        )
    )
    return with_notes(data, notes)


# ---------------------------------------------------------------------------------------------- write
_CATEGORY_LABEL = {
    "omitted": "Omitted",
    "pipeline": "Pipeline",
    "best_case": "Best Case",
    "most_likely": "Most Likely",
    "commit": "Commit",
    "closed": "Closed",
}
_CATEGORY_API = {
    "omitted": "Omitted",
    "pipeline": "Pipeline",
    "best_case": "BestCase",
    "most_likely": "MostLikely",
    "commit": "Forecast",
    "closed": "Closed",
}
_CALL_ROLLUP = {
    "commit": "CommitForecast",
    "best_case": "BestCaseForecast",
    "most_likely": "MostLikelyForecast",
    "pipeline": "OpenPipeline",
    "closed": "ClosedOnly",
    "omitted": "Omitted",
}


def _fmt_time(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.strftime("%Y-%m-%d %H:%M:%S").astype("str").fillna("")


def _fmt_date(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.strftime("%Y-%m-%d").astype("str").fillna("")


def _fmt_bool(s: pd.Series) -> pd.Series:
    return s.map({True: "1", False: "0"}).astype("str").fillna("")


def _fmt_num(s: pd.Series) -> pd.Series:
    """Numbers as the shortest text that reads back to the same float (no exponent, no trailing ``.0``)."""
    values = s.to_numpy(dtype=float)
    uniques = pd.unique(values[~np.isnan(values)])
    table = {v: np.format_float_positional(v, trim="-") for v in uniques}
    return pd.Series([table.get(v, "") if not np.isnan(v) else "" for v in values], index=s.index, dtype="str")


def _fmt_any(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        return _fmt_bool(s)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return _fmt_time(s)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return _fmt_num(s)
    return s.astype("str").fillna("")


def _custom_field(column: str) -> str:
    """A feature column as a custom field API name: ``title_seniority`` -> ``Title_Seniority__c``."""
    parts = [p for p in re.split(r"[^0-9a-zA-Z]+", str(column)) if p]
    return "_".join(p[:1].upper() + p[1:] for p in parts) + "__c"


def _ids(prefix: str, n: int) -> list[str]:
    """Salesforce-shaped 18-character Ids: a 3-character key prefix and a zero-padded counter."""
    return [f"{prefix}{i:015d}" for i in range(1, n + 1)]


def _write(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, quoting=csv.QUOTE_ALL, lineterminator="\n", encoding="utf-8")


def write_salesforce(data: CRMData, folder: str | Path) -> Path:
    """Write canonical data as a Salesforce-shaped export folder (the inverse of `read_salesforce`).

    Files: ``Opportunity.csv``, ``OpportunityStage.csv`` and ``Organization.csv`` (from ``data.process``),
    ``User.csv`` and ``UserRole.csv`` (one user per owner; the role is the owner's team), and when the tables
    have rows ``OpportunityHistory.csv``, ``Lead.csv``, ``Period.csv``, ``ForecastingSubmission.csv`` +
    ``ForecastingSubmissionItem.csv``, ``ForecastingQuota.csv`` and the activities as ``Event.csv`` (meetings)
    and ``Task.csv`` (the others; ``ActivityDate`` the day, ``CompletedDateTime`` the time). Every field is
    quoted, booleans are ``"0"/"1"``, times ``YYYY-MM-DD hh:mm:ss`` (UTC), dates ``YYYY-MM-DD``, as Salesforce
    exports them. Feature columns without a standard field become custom fields (``segment`` -> ``Segment__c``).

    What does not round-trip: times finer than a second; times of day of ``close_date`` and ``converted_at``
    (Salesforce Date fields: the day is kept, and a lead converted on its creation day reads back converted at
    its creation time); the process map's name, aliases, stall limits (``max_days``), ``activity_types`` and
    exit criteria; a submission's team
    when it differs from its owner's; integer feature columns read back as floats, boolean ones as 0/1 numbers,
    datetime ones as text; ids are written as they are (no Salesforce Id is invented for deals, leads or
    accounts, activities, only for users, roles, periods and forecast records).

    Parameters
    ----------
    data : CRMData
        Validated canonical data.
    folder : path
        The folder to write (created when missing; existing files of the same names are replaced).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    user_id, owner_team = _write_users(data, folder)
    _write_process(data.process, folder)
    _write_opportunities(data, folder, user_id, owner_team)
    _write_history(data, folder)
    _write_leads(data, folder, user_id)
    _write_forecasts(data, folder, user_id)
    _write_activities(data, folder, user_id)
    return folder


def _write_users(data: CRMData, folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """User.csv and UserRole.csv: one user per owner of any table, the role being the owner's commonest team."""
    owners: set[str] = set()
    for df in data.tables.values():
        if "owner" in df.columns:
            owners.update(pd.unique(df["owner"].dropna()).tolist())
    names = sorted(owners)
    user_id = dict(zip(names, _ids("005", len(names)), strict=True))
    parts = [df[["owner", "team"]] for df in (data.opportunities, data.forecast_submissions) if "team" in df.columns]
    pairs = pd.concat(parts, ignore_index=True).dropna() if parts else pd.DataFrame()
    owner_team: dict[str, str] = {}
    if len(pairs):
        owner_team = pairs.groupby("owner")["team"].agg(lambda s: s.value_counts().index[0]).to_dict()
    teams = sorted(set(owner_team.values()))
    role_id = dict(zip(teams, _ids("00E", len(teams)), strict=True))
    first_last = [n.split(" ", 1) if " " in n else ["", n] for n in names]
    users = pd.DataFrame(
        {
            "Id": [user_id[o] for o in names],
            "Name": names,
            "FirstName": [f for f, _ in first_last],
            "LastName": [last for _, last in first_last],
            "IsActive": "1",
            "UserRoleId": [role_id.get(owner_team.get(o), "") for o in names],
        }
    )
    _write(users, folder / "User.csv")
    if teams:
        _write(pd.DataFrame({"Id": [role_id[t] for t in teams], "Name": teams}), folder / "UserRole.csv")
    return user_id, owner_team


def _write_process(process: SalesProcess, folder: Path) -> None:
    """OpportunityStage.csv (the stages in order) and Organization.csv (the fiscal calendar)."""
    st = process.stages
    stages = pd.DataFrame(
        {
            "Id": _ids("01J", len(st)),
            "ApiName": [s.name for s in st],
            "MasterLabel": [s.name for s in st],
            "IsActive": "1",
            "SortOrder": [str(i + 1) for i in range(len(st))],
            "IsClosed": ["1" if s.kind != "open" else "0" for s in st],
            "IsWon": ["1" if s.kind == "won" else "0" for s in st],
            "ForecastCategory": [_CATEGORY_API[s.forecast_category] for s in st],
            "ForecastCategoryName": [_CATEGORY_LABEL[s.forecast_category] for s in st],
            "DefaultProbability": _fmt_num(pd.Series([round(100 * s.probability, 10) for s in st])),
        }
    )
    _write(stages, folder / "OpportunityStage.csv")
    cal = process.calendar
    org = pd.DataFrame(
        {
            "Id": _ids("00D", 1),
            "Name": [process.name],
            "FiscalYearStartMonth": [str(cal.start_month)],
            "UsesStartDateAsFiscalYearName": ["1" if cal.naming == "start" and cal.start_month != 1 else "0"],
        }
    )
    _write(org, folder / "Organization.csv")


def _optional_text(df: pd.DataFrame, column: str, default: str | pd.Series = "") -> str | pd.Series:
    return df[column].astype("str").fillna("") if column in df.columns else default


def _write_opportunities(data: CRMData, folder: Path, user_id: dict[str, str], owner_team: dict[str, str]) -> None:
    opps = data.opportunities
    prob = data.process.probability
    out = pd.DataFrame(
        {
            "Id": opps["opportunity_id"].astype("str"),
            "IsDeleted": "0",
            "AccountId": _optional_text(opps, "account_id"),
            "Name": _optional_text(opps, "opportunity_name", opps["opportunity_id"].astype("str")),
            "StageName": opps["stage"].astype("str"),
            "Amount": _fmt_num(opps["amount"]),
            "Probability": _fmt_num(opps["stage"].map(prob * 100).astype("float64")),
            "CloseDate": _fmt_date(opps["close_date"]),
            "Type": _optional_text(opps, "type"),
            "LeadSource": _optional_text(opps, "lead_source"),
            "IsClosed": _fmt_bool(opps["is_closed"]),
            "IsWon": _fmt_bool(opps["is_won"]),
        },
        index=opps.index,
    )
    if "forecast_category" in opps:
        out["ForecastCategory"] = opps["forecast_category"].map(_CATEGORY_API).astype("str").fillna("")
        out["ForecastCategoryName"] = opps["forecast_category"].map(_CATEGORY_LABEL).astype("str").fillna("")
    out["OwnerId"] = opps["owner"].map(user_id).astype("str").fillna("")
    out["CreatedDate"] = _fmt_time(opps["created_at"])
    if "team" in opps:  # the team is the owner's role; a custom field only when deals of one owner differ
        role_team = opps["owner"].map(owner_team).astype("str")
        if not (role_team.fillna("\0") == opps["team"].astype("str").fillna("\0")).all():
            out["Team__c"] = opps["team"].astype("str").fillna("")
    if "lead_id" in opps:  # the link is Lead.ConvertedOpportunityId; a custom field only when that cannot say it
        leads = data.leads
        linked = pd.Series(dtype="str")
        if "opportunity_id" in leads.columns and len(leads):
            pairs = leads.dropna(subset=["opportunity_id"]).drop_duplicates("opportunity_id")
            linked = pd.Series(pairs["lead_id"].to_numpy(), index=pairs["opportunity_id"].to_numpy(), dtype="str")
        derived = opps["opportunity_id"].map(linked).astype("str")
        if not (derived.fillna("\0") == opps["lead_id"].astype("str").fillna("\0")).all():
            out["Lead__c"] = opps["lead_id"].astype("str").fillna("")
    handled = {"opportunity_id", "owner", "created_at", "stage", "amount", "close_date", "is_closed", "is_won"}
    handled |= {"account_id", "lead_source", "forecast_category", "team", "lead_id", *_OPP_FIELDS.values()}
    for c in opps.columns:
        if c not in handled:
            out[_custom_field(c)] = _fmt_any(opps[c])
    _write(out, folder / "Opportunity.csv")


def _write_history(data: CRMData, folder: Path) -> None:
    h = data.stage_history
    if not len(h):
        return
    prob = data.process.probability
    hist = pd.DataFrame(
        {
            "Id": _ids("008", len(h)),
            "OpportunityId": h["opportunity_id"].astype("str").to_numpy(),
            "CreatedDate": _fmt_time(h["changed_at"]).to_numpy(),
            "StageName": h["stage"].astype("str").to_numpy(),
            "Amount": _fmt_num(h["amount"]).to_numpy(),
            "Probability": _fmt_num(h["stage"].map(prob * 100).astype("float64")).to_numpy(),
            "CloseDate": _fmt_date(h["close_date"]).to_numpy(),
            "ForecastCategory": h["forecast_category"].map(_CATEGORY_API).astype("str").fillna("").to_numpy(),
            "IsDeleted": "0",
        }
    )
    _write(hist, folder / "OpportunityHistory.csv")


def _write_leads(data: CRMData, folder: Path, user_id: dict[str, str]) -> None:
    leads = data.leads
    if not len(leads):
        return
    out = pd.DataFrame(
        {
            "Id": leads["lead_id"].astype("str"),
            "IsDeleted": "0",
            "OwnerId": leads["owner"].map(user_id).astype("str").fillna("") if "owner" in leads else "",
            "LeadSource": _optional_text(leads, "lead_source"),
            "Status": np.where(leads["converted"].to_numpy(dtype=bool), "Closed - Converted", "Open - Not Contacted"),
            "IsConverted": _fmt_bool(leads["converted"]),
            "ConvertedDate": _fmt_date(leads["converted_at"]),
            "ConvertedOpportunityId": _optional_text(leads, "opportunity_id"),
            "CreatedDate": _fmt_time(leads["created_at"]),
        },
        index=leads.index,
    )
    standard = {column: field for field, column in _LEAD_FIELDS.items()}
    done = {"lead_id", "created_at", "converted", "converted_at", "opportunity_id", "owner", "lead_source"}
    for c in leads.columns:
        if c not in done:
            out[standard.get(c) or _custom_field(c)] = _fmt_any(leads[c])
    _write(out, folder / "Lead.csv")


def _write_forecasts(data: CRMData, folder: Path, user_id: dict[str, str]) -> None:
    """Period.csv, ForecastingSubmission.csv + ForecastingSubmissionItem.csv and ForecastingQuota.csv."""
    subs, quotas, cal = data.forecast_submissions, data.quotas, data.process.calendar
    labels = sorted(set(subs["period"].dropna()) | set(quotas["period"].dropna()))
    if not labels:
        return
    period_id = dict(zip(labels, _ids("026", len(labels)), strict=True))
    bounds = {lb: cal.period_bounds(lb) for lb in labels}
    start = {lb: b[0].strftime("%Y-%m-%d") for lb, b in bounds.items()}
    periods = pd.DataFrame(
        {
            "Id": [period_id[lb] for lb in labels],
            "Type": [
                "Month" if re.fullmatch(r"\d{4}-\d{2}", lb) else "Quarter" if "Q" in lb else "Year" for lb in labels
            ],
            "StartDate": [start[lb] for lb in labels],
            "EndDate": [(bounds[lb][1] - pd.Timedelta(days=1)).strftime("%Y-%m-%d") for lb in labels],
            "IsForecastPeriod": "1",
        }
    )
    _write(periods, folder / "Period.csv")
    if len(subs):
        keys = ["submitted_at", "owner", "period"]
        group = subs.groupby(keys, sort=False).ngroup().to_numpy()  # numbered in order of first appearance
        first = subs.drop_duplicates(keys).reset_index(drop=True)
        sub_ids = np.array(_ids("0Fs", len(first)))
        latest = first.groupby(["owner", "period"])["submitted_at"].transform("max") == first["submitted_at"]
        submissions = pd.DataFrame(
            {
                "Id": sub_ids,
                "ForecastOwnerId": first["owner"].map(user_id).astype("str").fillna(""),
                "PeriodId": first["period"].map(period_id).astype("str").fillna(""),
                "PeriodStartDate": first["period"].map(start).astype("str").fillna(""),
                "SubmissionDateTime": _fmt_time(first["submitted_at"]),
                "IsLatest": _fmt_bool(latest),
                "Status": "Submitted",
            }
        )
        _write(submissions, folder / "ForecastingSubmission.csv")
        items = pd.DataFrame(
            {
                "Id": _ids("0Ft", len(subs)),
                "ForecastingSubmissionId": sub_ids[group],
                "ForecastingItemCategory": subs["category"].map(_CALL_ROLLUP).astype("str").fillna("").to_numpy(),
                "Amount": _fmt_num(subs["amount"]).to_numpy(),
            }
        )
        _write(items, folder / "ForecastingSubmissionItem.csv")
    if len(quotas):
        quota = pd.DataFrame(
            {
                "Id": _ids("0J9", len(quotas)),
                "QuotaOwnerId": quotas["owner"].map(user_id).astype("str").fillna("").to_numpy(),
                "PeriodId": quotas["period"].map(period_id).astype("str").fillna("").to_numpy(),
                "StartDate": quotas["period"].map(start).astype("str").fillna("").to_numpy(),
                "QuotaAmount": _fmt_num(quotas["amount"]).to_numpy(),
                "IsAmount": "1",
                "IsQuantity": "0",
            }
        )
        _write(quota, folder / "ForecastingQuota.csv")


def _write_activities(data: CRMData, folder: Path, user_id: dict[str, str]) -> None:
    """Event.csv (meetings) and Task.csv (every other type), as Salesforce exports them."""
    acts = data.activities
    if not len(acts):
        return
    meeting = (acts["type"] == "meeting").to_numpy(dtype=bool)
    common = {
        "IsDeleted": "0",
        "WhatId": _optional_text(acts, "opportunity_id"),
        "WhoId": _optional_text(acts, "lead_id"),
        "OwnerId": acts["owner"].map(user_id).astype("str").fillna("") if "owner" in acts else "",
        "Subject": _optional_text(acts, "subject"),
        "Type": acts["type"].astype("str"),
    }
    frame = pd.DataFrame({"Id": acts["activity_id"].astype("str"), **common}, index=acts.index)
    done = {"activity_id", "occurred_at", "type", "opportunity_id", "lead_id", "owner", "subject", "outcome"}
    custom = {c: _custom_field(c) for c in acts.columns if c not in done and c != "duration"}
    if meeting.any():
        ev = frame[meeting].copy()
        ev["EventSubtype"] = "Event"
        ev["StartDateTime"] = _fmt_time(acts.loc[meeting, "occurred_at"])
        ev["ActivityDateTime"] = ev["StartDateTime"]
        ev["ActivityDate"] = _fmt_date(acts.loc[meeting, "occurred_at"])
        if "duration" in acts:
            ev["DurationInMinutes"] = _fmt_num(acts.loc[meeting, "duration"])
        if "outcome" in acts:  # Event has no status field: a custom one
            ev["Outcome__c"] = _optional_text(acts.loc[meeting], "outcome")
        for c, f in custom.items():
            ev[f] = _fmt_any(acts.loc[meeting, c])
        _write(ev, folder / "Event.csv")
    if (~meeting).any():
        task = frame[~meeting].copy()
        task["TaskSubtype"] = "Task"
        task["ActivityDate"] = _fmt_date(acts.loc[~meeting, "occurred_at"])
        task["CompletedDateTime"] = _fmt_time(acts.loc[~meeting, "occurred_at"])
        task["Status"] = _optional_text(acts.loc[~meeting], "outcome")
        if "duration" in acts:
            task["CallDurationInSeconds"] = _fmt_num(acts.loc[~meeting, "duration"] * 60)
        for c, f in custom.items():
            task[f] = _fmt_any(acts.loc[~meeting, c])
        _write(task, folder / "Task.csv")
