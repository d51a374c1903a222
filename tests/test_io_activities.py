"""Activities importers: Salesforce Task.csv/Event.csv, HubSpot engagement exports, mapping files and databases.

The Salesforce fixture is a Salesforce-shaped export written by `write_salesforce` from a small generated CRM (the
tests' own layout), with Task.csv and Event.csv written here by hand: good rows and one of each kind of trouble.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from salesforecast import quality
from salesforecast.cli import main
from salesforecast.datasets import generate
from salesforecast.io import load, read_hubspot, read_salesforce, write_salesforce
from salesforecast.io.activities import hubspot_activity_files, number_by_file
from salesforecast.io.mapping import MappingError
from salesforecast.schema import TABLES, DataFileError, read_canonical, validate
from salesforecast.session import quarantine_notes
from tests.postgres import postgres_url

SAMPLE = Path("/work/shared/data/salesforce-export-sample")

TASK_HEADER = [
    "Id",
    "IsDeleted",
    "WhatId",
    "WhoId",
    "OwnerId",
    "Subject",
    "Type",
    "TaskSubtype",
    "ActivityDate",
    "CompletedDateTime",
    "Status",
    "CallDisposition",
    "CallDurationInSeconds",
]
EVENT_HEADER = [
    "Id",
    "IsDeleted",
    "WhatId",
    "WhoId",
    "OwnerId",
    "Subject",
    "Type",
    "EventSubtype",
    "StartDateTime",
    "ActivityDateTime",
    "ActivityDate",
    "DurationInMinutes",
]


def write_csv(path: Path, header, rows) -> Path:
    """A Salesforce-style CSV: every field quoted."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def assert_counts_add_up(data) -> None:
    c = data.counts
    assert (c["read"] == c["accepted"] + c["quarantined"]).all()
    for name in TABLES:
        assert len(data.tables[name]) == c.loc[name, "accepted"]
    assert len(data.quarantine) == c["quarantined"].sum()


# ---------------------------------------------------------------------------------------------- Salesforce
@pytest.fixture(scope="module")
def crm():
    return generate(n_opportunities=40, seed=4)[0]


@pytest.fixture(scope="module")
def sf_folder(crm, tmp_path_factory):
    """A Salesforce export with Task.csv (8 rows) and Event.csv (4 rows)."""
    folder = write_salesforce(crm, tmp_path_factory.mktemp("sf_activities"))
    users = pd.read_csv(folder / "User.csv", dtype="str")
    uid = dict(zip(users["Name"], users["Id"], strict=True))
    o1, o2 = crm.opportunities.iloc[0], crm.opportunities.iloc[1]
    lead = crm.leads["lead_id"].iloc[0]
    u1, u2 = uid[o1["owner"]], uid[o2["owner"]]
    day = o1["created_at"] + pd.Timedelta(days=2)
    d, t = day.strftime("%Y-%m-%d"), day.strftime("%Y-%m-%d 14:30:00")
    task = [  # Id, IsDeleted, WhatId, WhoId, OwnerId, Subject, Type, TaskSubtype, ActivityDate, Completed, Status,
        #         CallDisposition, CallDurationInSeconds
        ["00T000000000001AAA", "0", o1["opportunity_id"], "", u1, "Intro call", "", "Call", d, t, "Completed",
         "Left voicemail", "90"],
        ["00T000000000002AAA", "0", o2["opportunity_id"], "0030000000000C1AAA", u2, "Thanks", "Thank-you letter",
         "Task", d, "", "Completed", "", ""],
        ["00T000000000003AAA", "1", "006000000000DELAAA", "", u1, "On a deleted deal", "", "Email", d, "",
         "Completed", "", ""],
        ["00T000000000004AAA", "0", "", "", u1, "About nothing", "", "Task", d, "", "Not Started", "", ""],
        ["00T000000000005AAA", "0", "", "0030000000000C2AAA", u1, "A contact only", "", "Call", d, "", "Completed",
         "", "30"],
        ["00T000000000006AAA", "0", "", lead, u2, "Lead first call", "", "Call", d, "", "Completed", "Connected",
         "300"],
        ["00T000000000007AAA", "0", o1["opportunity_id"], "", u1, "Bad date", "", "Call", "31/02/2024", "",
         "Completed", "", ""],
        ["00T000000000008AAA", "0", "0010000000000ACAAA", "00Q00000000NONAAA", u1, "Unknown lead", "", "Email", d,
         "", "Completed", "", ""],
    ]  # fmt: skip
    event = [  # Id, IsDeleted, WhatId, WhoId, OwnerId, Subject, Type, EventSubtype, Start, ActivityDateTime, Date, Min
        ["00U000000000001AAA", "0", o1["opportunity_id"], "", u1, "Discovery", "", "Event", t, t, d, "45"],
        ["00U000000000002AAA", "0", o2["opportunity_id"], "", u2, "Demo", "Demo", "Event", "next tuesday", "", "",
         "60"],
        ["00U000000000003AAA", "0", o2["opportunity_id"], "", "005NOTAUSER000AAA", "Pricing", "Meeting", "Event", t,
         t, d, "30"],
        ["00U000000000003AAA", "0", o2["opportunity_id"], "", u2, "Pricing again", "", "Event", t, t, d, "30"],
    ]  # fmt: skip
    write_csv(folder / "Task.csv", TASK_HEADER, task)
    write_csv(folder / "Event.csv", EVENT_HEADER, event)
    return folder


@pytest.fixture(scope="module")
def sf_process(crm):
    return replace(crm.process, activity_types={"follow_up": ("Thank-you letter",)})


@pytest.fixture(scope="module")
def sf_data(sf_folder, sf_process):
    return read_salesforce(sf_folder, process=sf_process)


def _q(data):
    q = data.quarantine
    return q[q["table"] == "activities"].sort_values(["details", "row"]).reset_index(drop=True)


def _where(data) -> list[tuple[str, int, str]]:
    """(file named in the details, row, reason) of each quarantined activity, sorted."""
    q = _q(data)
    return sorted(
        (d.split(":")[0], int(r), reason) for d, r, reason in zip(q["details"], q["row"], q["reason"], strict=True)
    )


def test_salesforce_tasks_and_events_import_with_their_quarantine(sf_data):
    assert sf_data.counts.loc["activities"].tolist() == [12, 5, 7]
    assert_counts_add_up(sf_data)
    assert _where(sf_data) == [  # each row as numbered in its own file (1 = the first row after the header)
        ("Event.csv", 2, "unparseable date"),
        ("Event.csv", 4, "duplicate id"),
        ("Task.csv", 3, "unknown opportunity"),  # a deleted deal, not in Opportunity.csv
        ("Task.csv", 4, "no deal or lead"),  # neither WhatId nor WhoId
        ("Task.csv", 5, "no deal or lead"),  # a contact (003) is not a lead
        ("Task.csv", 7, "unparseable date"),
        ("Task.csv", 8, "unknown lead"),  # an account (001) is no deal; 00Q is a lead, not in Lead.csv
    ]
    folder = Path(sf_data.sources["opportunities"]).parent
    assert sf_data.sources["activities"] == f"{folder / 'Task.csv'} + {folder / 'Event.csv'}"
    assert any("12 rows read from Task.csv (8), Event.csv (4)" in n for n in sf_data.notes)
    assert any("Task.csv: 1 row(s) have IsDeleted = 1" in n for n in sf_data.notes)


def test_salesforce_activity_counts_reach_the_data_quality_report(sf_data):
    counts = quality.table_counts(sf_data).set_index("table").loc["activities"]
    assert counts[["read", "accepted", "quarantined"]].tolist() == [12, 5, 7]
    by_reason = quality.quarantine_by_reason(sf_data)
    acts = by_reason[by_reason["table"] == "activities"].set_index("reason")
    assert dict(zip(acts.index, acts["rows"], strict=True)) == {
        "unparseable date": 2,
        "duplicate id": 1,
        "no deal or lead": 2,
        "unknown opportunity": 1,
        "unknown lead": 1,
    }
    examples = quality.quarantine_examples(sf_data, n=5)
    examples = examples[examples["table"] == "activities"].sort_values(["row", "original"])
    assert examples["row"].tolist() == [2, 3, 4, 4, 5, 7, 8]  # Task.csv row 4 and Event.csv row 4 are two rows
    files = examples["original"].str.extract(r"^file=(\w+\.csv); activity_id=(\w+);")
    assert files.values.tolist() == [
        ["Event.csv", "00U000000000002AAA"],
        ["Task.csv", "00T000000000003AAA"],
        ["Event.csv", "00U000000000003AAA"],
        ["Task.csv", "00T000000000004AAA"],
        ["Task.csv", "00T000000000005AAA"],
        ["Task.csv", "00T000000000007AAA"],
        ["Task.csv", "00T000000000008AAA"],
    ]
    (note,) = [n for n in quarantine_notes(sf_data) if "activities" in n]
    assert note.startswith("7 of the 12 activities rows read (58%) were set aside")


def test_salesforce_accepted_activities(sf_data, crm):
    acts = sf_data.activities.set_index("activity_id")
    o1 = crm.opportunities.iloc[0]
    day = (o1["created_at"] + pd.Timedelta(days=2)).normalize()
    call = acts.loc["00T000000000001AAA"]
    assert (call["opportunity_id"], call["type"], call["outcome"], call["duration"]) == (
        o1["opportunity_id"],
        "call",
        "Left voicemail",  # CallDisposition before Status
        1.5,  # 90 seconds
    )
    assert call["owner"] == o1["owner"]  # OwnerId named through User.csv
    assert call["occurred_at"] == day + pd.Timedelta(hours=14, minutes=30)  # ActivityDate's day, completion time
    thanks = acts.loc["00T000000000002AAA"]
    assert thanks["type"] == "follow_up"  # Type through the process map's activity_types
    assert thanks["contact_id"] == "0030000000000C1AAA" and thanks["occurred_at"] == day
    lead_call = acts.loc["00T000000000006AAA"]
    assert pd.isna(lead_call["opportunity_id"]) and lead_call["lead_id"] == crm.leads["lead_id"].iloc[0]
    assert lead_call["duration"] == 5.0
    meeting = acts.loc["00U000000000001AAA"]
    assert (meeting["type"], meeting["duration"], meeting["occurred_at"]) == (
        "meeting",  # EventSubtype Event
        45.0,
        day + pd.Timedelta(hours=14, minutes=30),
    )
    pricing = acts.loc["00U000000000003AAA"]  # the first of two rows with this Id is kept
    assert pricing["subject"] == "Pricing" and pricing["owner"] == "005NOTAUSER000AAA"  # unknown user: its Id
    assert sorted(acts.index) == [
        "00T000000000001AAA",
        "00T000000000002AAA",
        "00T000000000006AAA",
        "00U000000000001AAA",
        "00U000000000003AAA",
    ]


def test_salesforce_ids_shared_by_task_and_event_are_prefixed(tmp_path, sf_folder, sf_process):
    folder = tmp_path / "export"
    shutil.copytree(sf_folder, folder)
    events = pd.read_csv(folder / "Event.csv", dtype="str", keep_default_na=False)
    events.loc[0, "Id"] = "00T000000000001AAA"  # the Id of the first task
    write_csv(folder / "Event.csv", list(events.columns), events.to_numpy().tolist())
    data = read_salesforce(folder, process=sf_process)
    ids = set(data.activities["activity_id"])
    assert {"Task:00T000000000001AAA", "Event:00T000000000001AAA"} <= ids
    assert all(i.startswith(("Task:", "Event:")) for i in ids)
    assert data.counts.loc["activities"].tolist() == [12, 5, 7]
    assert any("appear in both Task.csv and Event.csv" in n for n in data.notes)


def test_salesforce_activity_of_a_quarantined_opportunity_and_15_character_ids(tmp_path):
    header = ["Id", "OwnerId", "CreatedDate", "StageName", "Amount", "CloseDate", "IsClosed", "IsWon"]
    write_csv(
        tmp_path / "Opportunity.csv",
        header,
        [
            ["006000000000001AAA", "0051", "2024-01-05 10:00:00", "Prospecting", "1000", "2024-03-31", "0", "0"],
            ["006000000000002AAA", "0051", "2024-01-05 10:00:00", "Nowhere", "1000", "2024-03-31", "0", "0"],
            ["006000000000003", "0051", "2024-01-05 10:00:00", "Prospecting", "1000", "2024-03-31", "0", "0"],
        ],
    )
    write_csv(
        tmp_path / "Event.csv",
        ["Id", "WhatId", "ActivityDate", "OwnerId"],
        [
            ["00U1", "006000000000001", "2024-01-06", "0051"],  # the 15-character form of the first deal's Id
            ["00U2", "006000000000002AAA", "2024-01-06", "0051"],  # the deal is quarantined (unknown stage)
            ["00U3", "006000000000003AAA", "2024-01-06", "0051"],  # the 18-character form of a 15-character Id
        ],
    )
    data = read_salesforce(tmp_path)
    assert not any("no Lead.csv" in n for n in data.notes)
    assert data.activities["opportunity_id"].tolist() == ["006000000000001AAA", "006000000000003"]
    assert data.activities["type"].tolist() == ["meeting"] * 2  # an Event without Type or EventSubtype
    q = _q(data)
    assert q[["row", "reason"]].values.tolist() == [[2, "opportunity quarantined"]]
    assert q["details"].iloc[0].startswith("Event.csv: opportunity_id:")


@pytest.mark.parametrize(
    ("header", "column"),
    [(["WhatId", "WhoId", "ActivityDate"], "Id"), (["Id", "ActivityDate"], "WhatId"), (["Id", "WhatId"], "StartDate")],
)
def test_salesforce_activity_file_without_a_needed_column(tmp_path, header, column):
    write_csv(
        tmp_path / "Opportunity.csv",
        ["Id", "OwnerId", "CreatedDate", "StageName", "Amount", "CloseDate"],
        [["0061", "0051", "2024-01-05", "Prospecting", "10", "2024-03-31"]],
    )
    write_csv(tmp_path / "Event.csv", header, [["x"] * len(header)])
    with pytest.raises(DataFileError, match=rf"Event.csv: no column '{column}.*activities table") as err:
        read_salesforce(tmp_path)
    assert err.value.table == "activities"


def test_salesforce_activities_round_trip(crm, tmp_path):
    o = crm.opportunities
    acts = pd.DataFrame(
        {
            "activity_id": [f"A{i}" for i in range(5)],
            "occurred_at": (o["created_at"].iloc[:5] + pd.Timedelta(hours=30)).dt.floor("s").to_numpy(),
            "type": ["meeting", "call", "follow_up", "email", "meeting"],
            "owner": o["owner"].iloc[:5].to_numpy(),
            "opportunity_id": [*o["opportunity_id"].iloc[:4], None],
            "lead_id": [None, None, None, None, crm.leads["lead_id"].iloc[1]],
            "subject": ["Discovery", "Call", "Thanks", None, "Lead meeting"],
            "outcome": ["Held", "Connected", "Completed", None, None],
            "duration": [45.0, 2.5, None, None, 30.0],
        }
    )
    original = validate({**crm.tables, "activities": acts}, process=crm.process)
    assert original.counts.loc["activities"].tolist() == [5, 5, 0]
    back = read_salesforce(write_salesforce(original, tmp_path))
    assert back.quarantine.empty and back.notes == ()
    cols = list(original.activities.columns)
    pd.testing.assert_frame_equal(
        back.activities[cols].sort_values("activity_id", ignore_index=True),
        original.activities.sort_values("activity_id", ignore_index=True),
    )
    assert (tmp_path / "Event.csv").exists() and (tmp_path / "Task.csv").exists()


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="the shared Salesforce demo export is not available")
def test_salesforce_demo_export_with_tasks_and_events(tmp_path):
    for name in ("Opportunity.csv", "OpportunityHistory.csv"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    opps = read_salesforce(tmp_path)
    accepted = opps.opportunities["opportunity_id"].iloc[0]
    quarantined = opps.quarantine.loc[opps.quarantine["table"] == "opportunities", "original"]
    gone = json.loads(quarantined.iloc[0])["opportunity_id"] if len(quarantined) else None
    rows = [["00T1", accepted[:15], "", "2018-10-20", "Call"], ["00T2", "", "", "2018-10-20", "Call"]]
    if gone is not None:
        rows.append(["00T3", gone, "", "2018-10-20", "Email"])
    write_csv(tmp_path / "Task.csv", ["Id", "WhatId", "WhoId", "ActivityDate", "TaskSubtype"], rows)
    write_csv(tmp_path / "Event.csv", ["Id", "WhatId", "StartDateTime"], [["00U1", accepted, "20.10.2018"]])
    data = read_salesforce(tmp_path)
    assert_counts_add_up(data)
    assert data.activities["opportunity_id"].tolist() == [accepted]
    expected = [("Event.csv", 1, "unparseable date"), ("Task.csv", 2, "no deal or lead")]
    if gone is not None:
        expected.append(("Task.csv", 3, "opportunity quarantined"))
    assert _where(data) == expected


def test_number_by_file_leaves_other_tables_alone(sf_data):
    again = number_by_file(sf_data, [])
    assert again is sf_data
    other = sf_data.quarantine[sf_data.quarantine["table"] != "activities"]
    assert other.empty or not other["details"].str.contains("Task.csv").any()


# ---------------------------------------------------------------------------------------------- HubSpot
DEALS_HEADER = ["Record ID", "Deal Name", "Deal Stage", "Amount", "Close Date", "Create Date", "Deal owner"]


@pytest.fixture(scope="module")
def hs_folder(tmp_path_factory):
    """A HubSpot deals export with calls, meetings and notes exports beside it (and an unrelated file)."""
    folder = tmp_path_factory.mktemp("hubspot")
    write_csv(
        folder / "hubspot-crm-exports-all-deals-2024-06-01.csv",
        DEALS_HEADER,
        [
            ["101", "Acme", "Appointment Scheduled", "1000", "2024-06-30", "2024-01-02 09:00", "Ann Lee"],
            ["102", "Beta", "Closed Won", "500", "2024-03-01", "2024-01-03 09:00", "Bo Chan"],
        ],
    )
    write_csv(
        folder / "hubspot-crm-exports-calls-2024-06-01.csv",
        ["Record ID", "Activity date", "Call Title", "Call outcome", "Call duration", "Activity assigned to",
         "Associated Deal IDs", "Associated Contact IDs", "Call and meeting type"],
        [
            ["9001", "2024-01-04 10:00", "Intro", "Connected", "150000", "Ann Lee", "101", "7001", ""],
            ["9002", "2024-01-05 11:00", "Thanks", "Connected", "0:02:30", "Ann Lee", "101;102", "",
             "Thank-you letter"],
            ["9003", "2024-01-05 12:00", "Contact only", "No answer", "", "Bo Chan", "", "7002", ""],
            ["9004", "yesterday", "Bad date", "", "", "Bo Chan", "102", "", ""],
        ],
    )  # fmt: skip
    write_csv(
        folder / "hubspot-crm-exports-meetings-2024-06-01.csv",
        ["Record ID", "Meeting start time", "Meeting end time", "Meeting name", "Meeting outcome",
         "Activity assigned to", "Associated Deal IDs"],
        [
            ["9101", "2024-01-06 09:00", "2024-01-06 09:45", "Demo", "Completed", "Bo Chan", "102"],
            ["9102", "2024-01-07 09:00", "", "Other pipeline", "Scheduled", "Bo Chan", "999"],
        ],
    )  # fmt: skip
    write_csv(
        folder / "engagements-notes.csv",
        ["Engagement ID", "Timestamp", "Engagement type", "Deal ID"],
        [["9201", "2024-01-08T08:00:00Z", "NOTE", "101"]],
    )
    write_csv(folder / "tasks-for-me.csv", ["What", "When"], [["nothing", "now"]])  # no id/time: not an export
    write_csv(  # another deals export whose name holds "notes": not an engagement export
        folder / "deals-with-notes.csv", [*DEALS_HEADER, "Activity date"], [["1", "x", "y", "1", "", "", "", ""]]
    )
    return folder


@pytest.fixture(scope="module")
def hs_process():
    from salesforecast.io import hubspot_process

    return replace(hubspot_process(), activity_types={"follow_up": ("Thank-you letter",)})


def test_hubspot_engagement_exports_beside_the_deals(hs_folder, hs_process):
    deals = hs_folder / "hubspot-crm-exports-all-deals-2024-06-01.csv"
    assert [p.name for p in hubspot_activity_files(deals)] == [
        "engagements-notes.csv",
        "hubspot-crm-exports-calls-2024-06-01.csv",
        "hubspot-crm-exports-meetings-2024-06-01.csv",
    ]
    data = read_hubspot(deals, process=hs_process)
    assert data.counts.loc["activities"].tolist() == [7, 4, 3]
    assert_counts_add_up(data)
    assert _where(data) == [
        ("hubspot-crm-exports-calls-2024-06-01.csv", 3, "no deal or lead"),  # a contact is not a lead here
        ("hubspot-crm-exports-calls-2024-06-01.csv", 4, "unparseable date"),
        ("hubspot-crm-exports-meetings-2024-06-01.csv", 2, "unknown opportunity"),
    ]
    acts = data.activities.set_index("activity_id")
    assert acts["type"].to_dict() == {"9201": "note", "9001": "call", "9002": "follow_up", "9101": "meeting"}
    assert acts.loc["9001", "duration"] == 2.5 and acts.loc["9002", "duration"] == 2.5  # ms and h:mm:ss
    assert acts.loc["9101", "duration"] == 45.0  # end - start
    assert acts.loc["9002", "opportunity_id"] == "101"  # the first of two deals
    assert acts.loc["9001", "contact_id"] == 7001  # a feature column: numbers when every value is one
    assert acts.loc["9001", "owner"] == "Ann Lee"
    assert (acts.loc["9001", "subject"], acts.loc["9001", "outcome"]) == ("Intro", "Connected")
    assert acts.loc["9201", "occurred_at"] == pd.Timestamp("2024-01-08 08:00")
    assert any("1 activit(ies) are associated with several deals" in n for n in data.notes)
    assert any("associated with contacts and no deal" in n for n in data.notes)


def test_hubspot_activities_given_or_none(hs_folder):
    deals = hs_folder / "hubspot-crm-exports-all-deals-2024-06-01.csv"
    none = read_hubspot(deals, activities=[])
    assert none.counts.loc["activities"].tolist() == [0, 0, 0]
    one = read_hubspot(deals, activities=[hs_folder / "engagements-notes.csv"])
    assert one.counts.loc["activities"].tolist() == [1, 1, 0]
    assert one.sources["activities"] == str(hs_folder / "engagements-notes.csv")
    with pytest.raises(DataFileError, match=r"tasks-for-me.csv: no column 'Record ID'") as err:
        read_hubspot(deals, activities=[hs_folder / "tasks-for-me.csv"])
    assert err.value.table == "activities"


def test_hubspot_activity_times_in_the_account_time_zone_and_excel(hs_folder, tmp_path):
    deals = tmp_path / "deals.csv"
    shutil.copy(hs_folder / "hubspot-crm-exports-all-deals-2024-06-01.csv", deals)
    meetings = pd.read_csv(hs_folder / "hubspot-crm-exports-meetings-2024-06-01.csv", dtype="str")
    meetings.to_excel(tmp_path / "meetings.xlsx", index=False)
    data = read_hubspot(deals, timezone="Europe/Berlin")
    acts = data.activities.set_index("activity_id")
    assert acts.loc["9101", "occurred_at"] == pd.Timestamp("2024-01-06 08:00")  # 09:00 in Berlin, winter
    assert acts.loc["9101", "duration"] == 45.0
    assert data.counts.loc["activities"].tolist() == [2, 1, 1] and data.sources["activities"].endswith("meetings.xlsx")


def test_hubspot_through_load_and_the_cli(hs_folder, capsys):
    deals = hs_folder / "hubspot-crm-exports-all-deals-2024-06-01.csv"
    assert load(deals).counts.loc["activities"].tolist() == [7, 4, 3]
    assert main(["validate", str(deals), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["activities"] == {
        "read": 7,
        "accepted": 4,
        "quarantined": 3,
        "reasons": {"no deal or lead": 1, "unknown opportunity": 1, "unparseable date": 1},
    }


# ---------------------------------------------------------------------------------------------- the CLI
def test_cli_import_and_validate_report_activity_counts(sf_folder, tmp_path, capsys):
    out = tmp_path / "canonical"
    assert main(["import", str(sf_folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("activities"))
    assert line.split()[1:] == ["12", "5", "7"]
    back = read_canonical(out)
    assert sorted(back.activities["activity_id"]) == sorted(read_salesforce(sf_folder).activities["activity_id"])
    # the canonical folder keeps the quarantine written at import: same counts, rows as numbered in their files
    assert back.counts.loc["activities"].tolist() == [12, 5, 7]
    assert _where(back) == [(f, r, reason) for f, r, reason in _where(read_salesforce(sf_folder))]
    assert main(["validate", str(sf_folder), "--examples", "10"]) == 0
    text = capsys.readouterr().out.split("[activities]")[1].splitlines()
    assert text[1].split() == ["file", "row", "column", "value", "reason"]
    assert text[2].split()[:3] == ["Task.csv", "3", "opportunity_id"]
    assert any(line.split()[:2] == ["Event.csv", "2"] for line in text)
    assert main(["validate", str(sf_folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["activities"]["read"] == 12 and report["activities"]["reasons"]["no deal or lead"] == 2


# ---------------------------------------------------------------------------------------------- mapping files
ACT_DEALS = "Deal ID;Owner;Created;Stage;Value;Close\nD1;ann;08.01.2024;Prospecting;1.000,50;30.06.2024\n" + (
    "D2;bo;10.01.2024;Closed Won;200;15.03.2024\n"
)
ACT_ROWS = (
    "Id;Datum;Art;Deal;Wer;Minuten;Betreff\n"
    "A1;09.01.2024 10:00;Anruf;D1;ann;1,5;Hallo\n"
    "A2;11.01.2024;Termin;D2;bo;45;Demo\n"
    "A3;12.01.2024;Dankesbrief;D2;bo;;Danke\n"
    "A4;31.02.2024;Anruf;D1;ann;;kaputt\n"
    "A5;12.01.2024;Anruf;D9;ann;;unbekannt\n"
    "A6;12.01.2024;E-Mail;;ann;;niemand\n"
)
ACT_MAPPING = """\
defaults: {delimiter: ";", decimal: ",", thousands: ".", dates: ["%d.%m.%Y %H:%M", "%d.%m.%Y"]}
tables:
  opportunities:
    source: deals.csv
    columns: {opportunity_id: Deal ID, owner: Owner, created_at: Created, stage: Stage, amount: Value,
              close_date: Close}
    derive: {is_closed: {from: stage}, is_won: {from: stage}}
  activities:
    source: SOURCE
    columns: {activity_id: Id, occurred_at: Datum, type: Art, opportunity_id: Deal, owner: Wer, duration: Minuten,
              subject: Betreff}
    values:
      type: {Anruf: call, Termin: meeting, Dankesbrief: follow_up}
"""


def _check_mapped(data) -> None:
    assert data.counts.loc["activities"].tolist() == [6, 3, 3]
    assert_counts_add_up(data)
    acts = data.activities.set_index("activity_id")
    assert acts["type"].to_dict() == {"A1": "call", "A2": "meeting", "A3": "follow_up"}
    assert acts.loc["A1", "duration"] == 1.5 and acts.loc["A1", "occurred_at"] == pd.Timestamp("2024-01-09 10:00")
    q = _q(data).sort_values("row")
    assert q[["row", "reason"]].values.tolist() == [
        [4, "unparseable date"],
        [5, "unknown opportunity"],
        [6, "no deal or lead"],
    ]


def test_mapping_file_with_an_activities_table(tmp_path):
    (tmp_path / "deals.csv").write_text(ACT_DEALS, encoding="utf-8")
    (tmp_path / "acts.csv").write_text(ACT_ROWS, encoding="utf-8")
    (tmp_path / "m.yml").write_text(ACT_MAPPING.replace("SOURCE", "acts.csv"), encoding="utf-8")
    _check_mapped(load(tmp_path / "m.yml"))


def test_mapping_activities_need_deals_or_leads(tmp_path):
    (tmp_path / "m.yml").write_text("tables:\n  activities: {source: acts.csv}\n", encoding="utf-8")
    with pytest.raises(MappingError, match="activities belong to deals or leads") as err:
        load(tmp_path / "m.yml")
    assert err.value.key == "tables.activities"


def _activity_frame() -> pd.DataFrame:
    lines = [line.split(";") for line in ACT_ROWS.strip().splitlines()]
    return pd.DataFrame(lines[1:], columns=lines[0]).replace("", None)


def test_mapping_reads_activities_from_duckdb(tmp_path):
    (tmp_path / "deals.csv").write_text(ACT_DEALS, encoding="utf-8")
    acts = _activity_frame()
    with duckdb.connect(str(tmp_path / "crm.duckdb")) as con:
        con.register("acts", acts)
        con.execute("CREATE TABLE activities AS SELECT * FROM acts")
    mapping = ACT_MAPPING.replace("SOURCE", "{database: local, table: activities}")
    (tmp_path / "m.yml").write_text(mapping + "databases:\n  local: {duckdb: crm.duckdb}\n", encoding="utf-8")
    data = load(tmp_path / "m.yml")
    _check_mapped(data)
    assert data.sources["activities"] == "database 'local' table 'activities'"


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory):
    with postgres_url(tmp_path_factory) as url:
        yield url


def test_mapping_reads_activities_from_postgres(pg_url, tmp_path, monkeypatch):
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    try:
        _activity_frame().to_sql("activities", engine, index=False)
    finally:
        engine.dispose()
    monkeypatch.setenv("SALESFORECAST_TEST_ACTIVITIES_DB", pg_url.render_as_string(hide_password=False))
    (tmp_path / "deals.csv").write_text(ACT_DEALS, encoding="utf-8")
    mapping = ACT_MAPPING.replace("SOURCE", "{database: warehouse, table: activities}")
    mapping += "databases:\n  warehouse: {url_env: SALESFORECAST_TEST_ACTIVITIES_DB}\n"
    (tmp_path / "m.yml").write_text(mapping, encoding="utf-8")
    data = load(tmp_path / "m.yml")
    _check_mapped(data)
    assert data.sources["activities"] == "database 'warehouse' table 'activities'"


def test_malformed_lines_in_task_and_event_are_quarantined_in_their_file(tmp_path, sf_folder, sf_process):
    folder = tmp_path / "export"
    shutil.copytree(sf_folder, folder)
    task = (folder / "Task.csv").read_text(encoding="utf-8").splitlines()
    task.insert(2, '"00T9","0","x","y",unquoted, comma,"a","b","c","d","e","f","g","h"')  # 14 fields for 13
    (folder / "Task.csv").write_text("\n".join(task) + "\n", encoding="utf-8")
    events = pd.read_csv(folder / "Event.csv", dtype="str", keep_default_na=False)
    events.loc[0, "Id"] = "00T000000000001AAA"  # shared with Task.csv: every id is prefixed, the mark is not
    write_csv(folder / "Event.csv", list(events.columns), events.to_numpy().tolist())
    data = read_salesforce(folder, process=sf_process)
    assert data.counts.loc["activities"].tolist() == [13, 5, 8]
    assert_counts_add_up(data)
    where = _where(data)
    assert ("Task.csv", 2, "malformed row") in where and ("Task.csv", 4, "unknown opportunity") in where
    assert len(where) == 8


def test_hubspot_tasks_without_deal_column(tmp_path):
    deals = write_csv(
        tmp_path / "deals.csv",
        DEALS_HEADER,
        [["101", "Acme", "Appointment Scheduled", "1000", "2024-06-30", "2024-01-02 09:00", "Ann Lee"]],
    )
    write_csv(
        tmp_path / "tasks.csv",
        ["Record ID", "Activity date", "Task Title", "Task status", "Associated Contact IDs"],
        [["1", "2024-01-03", "Call back", "COMPLETED", "7"], ["2", "2024-01-04", "Write", "NOT_STARTED", ""]],
    )
    data = read_hubspot(deals)
    assert data.counts.loc["activities"].tolist() == [2, 0, 2]
    assert set(_q(data)["reason"]) == {"no deal or lead"}
    assert _q(data)["details"].tolist() == ["tasks.csv: opportunity_id: no deal or lead"] * 2


def test_salesforce_lead_activities_without_lead_file_are_noted(tmp_path):
    write_csv(
        tmp_path / "Opportunity.csv",
        ["Id", "OwnerId", "CreatedDate", "StageName", "Amount", "CloseDate"],
        [["0061", "0051", "2024-01-05", "Prospecting", "10", "2024-03-31"]],
    )
    write_csv(tmp_path / "Task.csv", ["Id", "WhoId", "ActivityDate"], [["00T1", "00Q1", "2024-01-06"]])
    data = read_salesforce(tmp_path)
    assert _where(data) == [("Task.csv", 1, "unknown lead")]
    assert any("no Lead.csv: 1 activit(ies) of leads" in n for n in data.notes)


def test_mapping_joins_one_file_per_kind_with_a_duckdb_query(tmp_path):
    (tmp_path / "deals.csv").write_text(ACT_DEALS, encoding="utf-8")
    (tmp_path / "calls.csv").write_text("Id;Datum;Deal\nC1;09.01.2024 10:00;D1\nC2;31.02.2024;D1\n", encoding="utf-8")
    (tmp_path / "meetings.csv").write_text("Id;Datum;Deal\nM1;11.01.2024;D2\n", encoding="utf-8")
    query = (
        "select *, 'call' as kind from read_csv('calls.csv', delim=';', all_varchar=true) union all by name"
        " select *, 'meeting' as kind from read_csv('meetings.csv', delim=';', all_varchar=true)"
    )
    mapping = ACT_MAPPING.split("  activities:")[0] + (
        "  activities:\n"
        f'    source: {{database: files, query: "{query}"}}\n'
        "    columns: {activity_id: Id, occurred_at: Datum, type: kind, opportunity_id: Deal}\n"
        "databases:\n  files: {duckdb: ':memory:'}\n"
    )
    (tmp_path / "m.yml").write_text(mapping, encoding="utf-8")
    data = load(tmp_path / "m.yml")
    assert data.counts.loc["activities"].tolist() == [3, 2, 1]
    assert data.activities.set_index("activity_id")["type"].to_dict() == {"C1": "call", "M1": "meeting"}
    assert _q(data)[["row", "reason"]].values.tolist() == [[2, "unparseable date"]]
