"""Salesforce importer: the real demo export, the round trip through write_salesforce, and bad input."""

import csv
from pathlib import Path

import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.io.salesforce import is_salesforce_folder, read_salesforce, write_salesforce
from salesforecast.schema import TABLES, DataFileError

SAMPLE = Path("/work/shared/data/salesforce-export-sample")

OPP_HEADER = ["Id", "OwnerId", "CreatedDate", "StageName", "Amount", "CloseDate", "IsClosed", "IsWon"]
OPP_ROWS = [
    ["0061", "0051", "2024-01-05 10:00:00", "Prospecting", "1000", "2024-03-31", "0", "0"],
    ["0062", "0051", "2024-01-06T10:00:00.000Z", "Closed Won", "2000", "2024-02-15", "1", "1"],
    ["0063", "0052", "2024-01-07T12:00:00.000+0200", "Closed Lost", "500", "2024-02-20", "true", "false"],
]
KEYS = {
    "opportunities": ["opportunity_id"],
    "stage_history": ["opportunity_id", "changed_at", "stage", "amount", "close_date"],
    "leads": ["lead_id"],
    "forecast_submissions": ["submitted_at", "owner", "period", "category"],
    "quotas": ["owner", "period"],
}


def write_csv(path: Path, header, rows, encoding="utf-8", bom=False) -> Path:
    """A Salesforce-style CSV: every field quoted."""
    with open(path, "w", encoding=encoding, newline="") as fh:
        if bom:
            fh.write("\ufeff")
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def opp_folder(tmp_path: Path, rows=None, header=None, **kwargs) -> Path:
    write_csv(tmp_path / "Opportunity.csv", header or OPP_HEADER, OPP_ROWS if rows is None else rows, **kwargs)
    return tmp_path


def assert_counts_add_up(data) -> None:
    c = data.counts
    assert (c["read"] == c["accepted"] + c["quarantined"]).all()
    for name in TABLES:
        assert len(data.tables[name]) == c.loc[name, "accepted"]
    assert len(data.quarantine) == c["quarantined"].sum()


def sorted_common(a: pd.DataFrame, b: pd.DataFrame, keys, drop=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    cols = [c for c in a.columns if c in b.columns and c not in drop]
    order = keys + [c for c in cols if c not in keys]
    a = a[cols].sort_values(order, kind="stable").reset_index(drop=True)
    b = b[cols].sort_values(order, kind="stable").reset_index(drop=True)
    return a, b


# ---------------------------------------------------------------------------------------------- round trip
@pytest.fixture(scope="module")
def generated():
    return generate(n_opportunities=500, seed=1)[0]


@pytest.fixture(scope="module")
def exported(generated, tmp_path_factory):
    return write_salesforce(generated, tmp_path_factory.mktemp("salesforce"))


@pytest.fixture(scope="module")
def reread(exported):
    return read_salesforce(exported)


@pytest.mark.parametrize("name", list(KEYS))
def test_round_trip_gives_the_same_tables(generated, reread, name):
    original, back = generated.tables[name], reread.tables[name]
    assert len(original) > 0
    assert set(original.columns) <= set(back.columns)
    drop = ("converted_at",) if name == "leads" else ()  # a Salesforce Date field: see the next test
    a, b = sorted_common(original, back, KEYS[name], drop)
    pd.testing.assert_frame_equal(a, b)


def test_round_trip_keeps_conversion_days(generated, reread):
    original = generated.leads.set_index("lead_id")
    back = reread.leads.set_index("lead_id").loc[original.index]
    same_day = original["converted_at"].dt.normalize() == original["created_at"].dt.normalize()
    expected = original["converted_at"].dt.normalize().mask(same_day, original["created_at"])
    pd.testing.assert_series_equal(back["converted_at"], expected, check_names=False)


def test_round_trip_process_and_counts(generated, reread):
    a, b = generated.process, reread.process
    assert b.stage_names == a.stage_names
    assert [s.kind for s in b.stages] == [s.kind for s in a.stages]
    pd.testing.assert_series_equal(b.probability, a.probability)
    pd.testing.assert_series_equal(b.forecast_category, a.forecast_category)
    assert b.calendar == a.calendar
    assert reread.quarantine.empty
    assert reread.notes == ()
    assert_counts_add_up(reread)
    pd.testing.assert_frame_equal(reread.counts, generated.counts)


def test_written_files_are_salesforce_shaped(exported):
    assert is_salesforce_folder(exported)
    text = (exported / "Opportunity.csv").read_text(encoding="utf-8").splitlines()
    assert text[0].startswith('"Id","IsDeleted","AccountId","Name","StageName","Amount"')
    row = next(csv.DictReader(text))
    assert row["IsClosed"] in ("0", "1") and row["IsWon"] in ("0", "1")
    assert pd.Timestamp(row["CreatedDate"]).strftime("%Y-%m-%d %H:%M:%S") == row["CreatedDate"]
    assert row["OwnerId"].startswith("005") and len(row["OwnerId"]) == 18
    assert row["Segment__c"]  # feature columns become custom fields
    stages = pd.read_csv(exported / "OpportunityStage.csv", dtype="str")
    assert stages["DefaultProbability"].tolist()[:3] == ["10", "10", "20"]
    for name in ("OpportunityHistory", "Lead", "User", "UserRole", "Period", "ForecastingSubmission"):
        assert (exported / f"{name}.csv").exists(), name


def test_is_salesforce_folder(tmp_path):
    assert not is_salesforce_folder(tmp_path)
    assert not is_salesforce_folder(tmp_path / "nope")
    write_csv(tmp_path / "opportunity.csv", OPP_HEADER, OPP_ROWS)
    assert is_salesforce_folder(tmp_path)
    assert not is_salesforce_folder(tmp_path / "opportunity.csv")


# ---------------------------------------------------------------------------------------------- the real sample
@pytest.mark.skipif(not SAMPLE.is_dir(), reason="the shared Salesforce demo export is not available")
def test_real_demo_export():
    data = read_salesforce(SAMPLE)
    assert_counts_add_up(data)
    c = data.counts
    assert c.loc["opportunities"].tolist() == [31, 1, 30]
    assert c.loc["stage_history"].tolist() == [62, 2, 60]
    reasons = data.quarantine.groupby(["table", "reason"]).size().to_dict()
    assert reasons == {
        ("opportunities", "close date before creation"): 30,
        ("stage_history", "opportunity quarantined"): 60,
    }
    notes = " ".join(data.notes)
    assert "all 62 history rows (31 opportunities) carry the same timestamp 2018-10-13 17:16:45" in notes
    assert "stage durations" in notes and "backtests" in notes
    assert "30 of 31 opportunities were quarantined as 'close date before creation'" in notes
    assert "No User.csv" in notes
    opp = data.opportunities.iloc[0]
    assert opp["stage"] == "Id. Decision Makers" and opp["forecast_category"] == "pipeline"
    assert opp["opportunity_name"] == "Edge Emergency Generator"
    assert opp["main_competitors"] == "John Deere, Mitsubishi, Hawkpower"  # a custom field
    assert data.stage_history["changed_at"].nunique() == 1  # no time was invented


# ---------------------------------------------------------------------------------------------- formats
def test_timestamps_with_z_and_offsets_are_utc(tmp_path):
    data = read_salesforce(opp_folder(tmp_path))
    times = data.opportunities.set_index("opportunity_id")["created_at"]
    assert times.dtype == "datetime64[us]"
    assert times.tolist() == [pd.Timestamp("2024-01-05 10:00"), pd.Timestamp("2024-01-06 10:00")] + [
        pd.Timestamp("2024-01-07 10:00")
    ]
    assert data.opportunities["is_won"].tolist() == [False, True, False]


def test_headers_and_file_names_ignore_case(tmp_path):
    header = [h.lower() for h in OPP_HEADER]
    write_csv(tmp_path / "OPPORTUNITY.CSV", header, OPP_ROWS)
    write_csv(
        tmp_path / "opportunityhistory.csv",
        ["OPPORTUNITYID", "createddate", "stagename"],
        [["0061", "2024-01-05 10:00:00", "Prospecting"]],
    )
    data = read_salesforce(tmp_path)
    assert len(data.opportunities) == 3 and len(data.stage_history) == 1


def test_bom_prefixed_utf8(tmp_path):
    data = read_salesforce(opp_folder(tmp_path, bom=True))
    assert data.opportunities["opportunity_id"].tolist() == ["0061", "0062", "0063"]


def test_latin1_user_names(tmp_path):
    opp_folder(tmp_path, encoding="latin-1")
    write_csv(
        tmp_path / "User.csv",
        ["Id", "Name", "Title"],
        [["0051", "Jonas Müller", "EMEA"], ["0052", "Zoë Brontë", "APAC"]],
        encoding="latin-1",
    )
    data = read_salesforce(tmp_path, encoding="latin-1")
    assert data.opportunities["owner"].tolist() == ["Jonas Müller", "Jonas Müller", "Zoë Brontë"]
    assert data.opportunities["team"].tolist() == ["EMEA", "EMEA", "APAC"]
    with pytest.raises(DataFileError, match="User.csv.*cannot be decoded as utf-8") as err:
        read_salesforce(tmp_path)
    assert err.value.file.endswith("User.csv")


def test_users_roles_and_15_character_ids(tmp_path):
    rows = [[*r[:1], "005000000000001AAA", *r[2:]] for r in OPP_ROWS]
    opp_folder(tmp_path, rows=rows)
    write_csv(
        tmp_path / "User.csv",
        ["Id", "FirstName", "LastName", "UserRoleId"],
        [["005000000000001", "Ann", "Lee", "00E1"]],
    )
    write_csv(tmp_path / "UserRole.csv", ["Id", "Name"], [["00E1", "NA East"]])
    data = read_salesforce(tmp_path)
    assert set(data.opportunities["owner"]) == {"Ann Lee"}
    assert set(data.opportunities["team"]) == {"NA East"}
    assert not any("User.csv" in n for n in data.notes)


# ---------------------------------------------------------------------------------------------- bad input
def test_missing_opportunity_file(tmp_path):
    write_csv(tmp_path / "Lead.csv", ["Id"], [["1"]])
    with pytest.raises(DataFileError, match="no Opportunity.csv") as err:
        read_salesforce(tmp_path)
    assert err.value.table == "opportunities"
    with pytest.raises(DataFileError, match="no such folder"):
        read_salesforce(tmp_path / "missing")


@pytest.mark.parametrize("column", ["Amount", "CreatedDate", "StageName"])
def test_missing_required_column(tmp_path, column):
    keep = [i for i, h in enumerate(OPP_HEADER) if h != column]
    opp_folder(tmp_path, rows=[[r[i] for i in keep] for r in OPP_ROWS], header=[OPP_HEADER[i] for i in keep])
    with pytest.raises(DataFileError, match=f"no column '{column}'") as err:
        read_salesforce(tmp_path)
    assert err.value.column == column
    assert err.value.file.endswith("Opportunity.csv")


def test_missing_required_history_column(tmp_path):
    opp_folder(tmp_path)
    write_csv(tmp_path / "OpportunityHistory.csv", ["OpportunityId", "StageName"], [["0061", "Prospecting"]])
    with pytest.raises(DataFileError, match="OpportunityHistory.csv: no column 'CreatedDate'"):
        read_salesforce(tmp_path)


def test_bad_values_are_quarantined_and_counted(tmp_path):
    rows = [
        *OPP_ROWS,
        ["0064", "0051", "13/01/2024", "Prospecting", "100", "2024-03-31", "0", "0"],
        ["0065", "0051", "2024-01-08 09:00:00", "Prospecting", "1.000,50", "2024-03-31", "0", "0"],
        ["0066", "0051", "2024-01-08 09:00:00", "Discovery", "100", "2024-03-31", "0", "0"],
    ]
    opp_folder(tmp_path, rows=rows)
    with open(tmp_path / "Opportunity.csv", "a", encoding="utf-8") as fh:  # one line with a field too many
        fh.write('"0067","0051","2024-01-08 09:00:00","Prospecting","100","2024-03-31","0","0","extra"\n')
    write_csv(
        tmp_path / "OpportunityHistory.csv",
        ["OpportunityId", "CreatedDate", "StageName", "Amount"],
        [
            ["0061", "2024-01-05 10:00:00", "Prospecting", "1000"],
            ["0061", "yesterday", "Qualification", "1000"],
            ["0064", "2024-01-05 10:00:00", "Prospecting", "100"],
            ["0099", "2024-01-05 10:00:00", "Prospecting", "abc"],
        ],
    )
    data = read_salesforce(tmp_path)
    assert_counts_add_up(data)
    assert data.counts.loc["opportunities"].tolist() == [7, 3, 4]
    assert data.counts.loc["stage_history"].tolist() == [4, 1, 3]
    q = data.quarantine.set_index(["table", "row"])["reason"].to_dict()
    assert q[("opportunities", 4)] == "unparseable date"
    assert q[("opportunities", 5)] == "unparseable number"
    assert q[("opportunities", 6)] == "unknown stage"
    assert q[("opportunities", 7)] == "malformed row"
    assert q[("stage_history", 2)] == "unparseable date"
    assert q[("stage_history", 3)] == "opportunity quarantined"
    assert q[("stage_history", 4)] == "unparseable number"
    assert any("'Discovery' (1)" in n for n in data.notes)


def test_flags_derived_from_stage_when_absent(tmp_path):
    keep = [i for i, h in enumerate(OPP_HEADER) if h not in ("IsClosed", "IsWon")]
    opp_folder(tmp_path, rows=[[r[i] for i in keep] for r in OPP_ROWS], header=[OPP_HEADER[i] for i in keep])
    data = read_salesforce(tmp_path)
    assert data.opportunities["is_closed"].tolist() == [False, True, True]
    assert data.opportunities["is_won"].tolist() == [False, True, False]
    assert any("derived from the stage" in n for n in data.notes)


# ------------------------------------------------------------------------------------ process, leads, forecasts
STAGE_HEADER = ["ApiName", "MasterLabel", "SortOrder", "DefaultProbability", "IsClosed", "IsWon", "IsActive"]


def stage_rows():
    return [
        ["Closed Won", "Won", "9", "100", "1", "1", "1"],
        ["Discovery", "Discovery", "1", "10", "0", "0", "1"],
        ["Demo", "Demo", "2", "30", "0", "0", "1"],
        ["Old Stage", "Old Stage", "3", "40", "0", "0", "0"],
        ["Retired", "Retired", "4", "50", "0", "0", "0"],
        ["Proposal", "Proposal", "5", "60", "0", "0", "1"],
        ["Closed Lost", "Lost", "10", "0", "1", "0", "1"],
    ]


def test_process_from_opportunity_stage_export(tmp_path):
    rows = [
        [r[0], "0051", "2024-01-05 10:00:00", r[1], "10", "2024-03-31", r[2], r[3]]
        for r in (
            ("1", "Discovery", "0", "0"),
            ("2", "Old Stage", "0", "0"),
            ("3", "Won", "1", "1"),
        )
    ]
    opp_folder(tmp_path, rows=rows)
    write_csv(
        tmp_path / "OpportunityStage.csv",
        STAGE_HEADER + ["ForecastCategoryName"],
        [
            [*r, "Closed" if r[0] == "Closed Won" else "Omitted" if r[0] == "Closed Lost" else "Best Case"]
            for r in stage_rows()
        ],
    )
    write_csv(tmp_path / "Organization.csv", ["Id", "FiscalYearStartMonth"], [["00D1", "2"]])
    data = read_salesforce(tmp_path)
    p = data.process
    assert p.stage_names == ["Discovery", "Demo", "Old Stage", "Proposal", "Closed Won", "Closed Lost"]
    assert p.probability["Demo"] == pytest.approx(0.3)
    assert p.forecast_category["Demo"] == "best_case"
    assert p.canonical_stage("won") == "Closed Won"
    assert p.calendar.start_month == 2
    assert data.counts.loc["opportunities", "accepted"] == 3
    assert any("'Old Stage'" in n and "inactive" in n for n in data.notes)


def test_bad_opportunity_stage_value(tmp_path):
    opp_folder(tmp_path)
    rows = stage_rows()
    rows[2][3] = "thirty"
    write_csv(tmp_path / "OpportunityStage.csv", STAGE_HEADER, rows)
    with pytest.raises(DataFileError, match="DefaultProbability.*'thirty'") as err:
        read_salesforce(tmp_path)
    assert err.value.column == "DefaultProbability"
    rows = [r for r in stage_rows() if r[0] != "Closed Lost"]
    write_csv(tmp_path / "OpportunityStage.csv", STAGE_HEADER, rows)
    with pytest.raises(DataFileError, match="lost stage"):
        read_salesforce(tmp_path)


def test_leads_link_opportunities_and_conversion_days(tmp_path):
    opp_folder(tmp_path)
    write_csv(
        tmp_path / "Lead.csv",
        [
            "Id",
            "CreatedDate",
            "IsConverted",
            "ConvertedDate",
            "ConvertedOpportunityId",
            "Industry",
            "Status",
            "Score__c",
        ],
        [
            ["00Q1", "2024-01-02 15:30:00", "1", "2024-01-02", "0061", "Retail", "Closed - Converted", "5"],
            ["00Q2", "2024-01-01 08:00:00", "1", "2024-01-06", "0062", "Software", "Closed - Converted", "7"],
            ["00Q3", "2024-01-03 08:00:00", "0", "", "", "Retail", "Open", ""],
        ],
    )
    data = read_salesforce(tmp_path)
    leads = data.leads.set_index("lead_id")
    assert leads.loc["00Q1", "converted_at"] == pd.Timestamp("2024-01-02 15:30")  # same day: creation time
    assert leads.loc["00Q2", "converted_at"] == pd.Timestamp("2024-01-06")
    assert "status" not in leads.columns  # "Closed - Converted" would leak the outcome
    assert leads["score"].tolist()[:2] == [5.0, 7.0]
    lead_of = data.opportunities.set_index("opportunity_id")["lead_id"]
    assert lead_of[["0061", "0062"]].tolist() == ["00Q1", "00Q2"] and pd.isna(lead_of["0063"])
    assert any("ConvertedDate is a date without a time; 1 lead" in n for n in data.notes)


def test_forecasting_items_without_period_table(tmp_path):
    opp_folder(tmp_path)
    write_csv(
        tmp_path / "ForecastingItem.csv",
        ["OwnerId", "StartDate", "ForecastingItemCategory", "ForecastAmount", "LastModifiedDate"],
        [
            ["0051", "2024-04-01", "CommitForecast", "1000", "2024-04-15T09:00:00.000Z"],
            ["0051", "2024-04-01", "BestCaseForecast", "1500", "2024-04-15T09:00:00.000Z"],
            ["0051", "2024-04-01", "CommitOnly", "800", "2024-04-15T09:00:00.000Z"],
            ["0052", "2024-07-01", "Commit", "x", "2024-04-15T09:00:00.000Z"],
        ],
    )
    write_csv(
        tmp_path / "ForecastingQuota.csv",
        ["QuotaOwnerId", "StartDate", "QuotaAmount"],
        [["0051", "2024-04-01", "5000"]],
    )
    data = read_salesforce(tmp_path)
    assert_counts_add_up(data)
    subs = data.forecast_submissions
    assert subs["category"].tolist() == ["commit", "best_case"]
    assert subs["period"].tolist() == ["FY2024Q2"] * 2
    assert subs["submitted_at"].iloc[0] == pd.Timestamp("2024-04-15 09:00")
    reasons = data.quarantine.query("table == 'forecast_submissions'")["reason"].tolist()
    assert reasons == ["unknown forecast category", "unparseable number"]
    assert data.quotas["period"].tolist() == ["FY2024Q2"]
    notes = " ".join(data.notes)
    assert "single-category rollups" in notes and "live forecast" in notes and "fiscal quarters" in notes


def test_forecasting_submission_without_submission_table(tmp_path):
    opp_folder(tmp_path)
    write_csv(
        tmp_path / "ForecastingSubmissionItem.csv",
        ["Id", "ForecastingSubmissionId", "ForecastingItemCategory", "Amount"],
        [],
    )
    with pytest.raises(DataFileError, match="needs ForecastingSubmission.csv"):
        read_salesforce(tmp_path)


def test_forecast_submissions_with_period_table(tmp_path):
    opp_folder(tmp_path)
    write_csv(
        tmp_path / "Period.csv",
        ["Id", "Type", "StartDate", "EndDate"],
        [["0261", "Month", "2024-05-01", "2024-05-31"], ["0262", "Week", "2024-05-06", "2024-05-12"]],
    )
    write_csv(
        tmp_path / "ForecastingSubmission.csv",
        ["Id", "ForecastOwnerId", "PeriodId", "SubmissionDateTime"],
        [["0Fs1", "0051", "0261", "2024-05-06T09:00:00Z"], ["0Fs2", "0051", "0262", "2024-05-06T09:00:00Z"]]
        + [["0Fs3", "0051", "0269", "2024-05-06T09:00:00Z"]],
    )
    write_csv(
        tmp_path / "ForecastingSubmissionItem.csv",
        ["Id", "ForecastingSubmissionId", "ForecastingItemCategory", "Amount"],
        [["1", "0Fs1", "CommitForecast", "100"], ["2", "0Fs2", "CommitForecast", "100"]]
        + [["3", "0Fs3", "CommitForecast", "100"], ["4", "0FsX", "CommitForecast", "100"]],
    )
    data = read_salesforce(tmp_path)
    assert_counts_add_up(data)
    assert data.forecast_submissions["period"].tolist() == ["2024-05"]
    q = data.quarantine.query("table == 'forecast_submissions'").set_index("row")
    assert q["reason"].to_dict() == {2: "invalid period", 3: "invalid period", 4: "missing required value"}
    assert q.loc[2, "value"] == "Week from 2024-05-06" and q.loc[3, "value"] == "0269"
