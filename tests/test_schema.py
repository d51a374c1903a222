import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesforecast.process import SalesProcess
from salesforecast.schema import REASONS, TABLES, DataFileError, read_canonical, validate
from tests.factories import as_text, random_crm


def _extra_tables() -> dict[str, pd.DataFrame]:
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(8)],
            "created_at": [f"2024-01-{i + 1:02d}" for i in range(8)],
            "converted": ["true", "false", "1", "0", "yes", "no", "True", "FALSE"],
            "converted_at": ["2024-02-01", "", "2024-02-03", "", "2024-02-05", "", "2024-02-07", ""],
            "employees": ["10", "200", "", "40", "5", "6", "7", "8"],
            "industry": ["a", "b", "c", "NA", "a", "b", "c", "a"],
        }
    )
    subs = pd.DataFrame(
        {
            "submitted_at": ["2024-01-08", "2024-01-08", "2024-01-15", "2024-01-15"],
            "owner": ["rep0", "rep0", "rep1", "rep1"],
            "period": ["FY2024Q1", "FY2024Q1", "fy2024q1", "FY2024-Q1"],
            "category": ["Commit", "Best Case", "commit", "best_case"],
            "amount": ["1000", "2000", "1500", "2500.5"],
        }
    )
    quotas = pd.DataFrame(
        {"owner": ["rep0", "rep1", "rep2"], "period": ["FY2024Q1"] * 3, "amount": ["10000", "12000", "9000"]}
    )
    return {"leads": leads, "forecast_submissions": subs, "quotas": quotas}


def _activities(opportunity_ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "activity_id": ["A1", "A2", "A3"],
            "occurred_at": ["2024-01-03T10:00:00", "2024-01-04", "2024-01-05"],
            "type": ["Call", "Meeting", "Follow-Up"],
            "opportunity_id": [opportunity_ids[0], opportunity_ids[1], ""],
            "lead_id": ["", "", "L2"],
            "duration": ["30", "", "5"],
        }
    )


def _write_folder(path, tables):
    path.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_csv(path / f"{name}.csv", index=False)
    return path


@pytest.fixture
def valid_tables():
    t = {k: as_text(v) for k, v in random_crm(30, seed=3).items()}
    t.update(_extra_tables())
    t["activities"] = _activities(t["opportunities"]["opportunity_id"].tolist())
    return t


def test_valid_folder_loads_clean(tmp_path, valid_tables):
    data = read_canonical(_write_folder(tmp_path / "crm", valid_tables))
    assert data.quarantine.empty, data.quarantine
    assert data.activities["type"].tolist() == ["call", "meeting", "follow_up"]
    assert data.activities["duration"].tolist()[::2] == [30.0, 5.0]
    for name in TABLES:
        c = data.counts.loc[name]
        assert c["read"] == len(valid_tables[name]) == c["accepted"]
    o = data.opportunities
    assert o["created_at"].dtype == "datetime64[us]"
    assert o["amount"].dtype == "float64"
    assert o["is_won"].dtype == bool
    assert o["opportunity_id"].dtype == "str"
    assert data.stage_history["changed_at"].dtype == "datetime64[us]"
    # booleans in many spellings, periods and categories normalised
    assert data.leads["converted"].tolist() == [True, False, True, False, True, False, True, False]
    assert data.forecast_submissions["period"].tolist() == ["FY2024Q1"] * 4
    assert data.forecast_submissions["category"].tolist() == ["commit", "best_case", "commit", "best_case"]
    # "NA" is a value, not a missing one; numeric feature columns become numbers
    assert data.leads["industry"].tolist()[3] == "NA"
    assert data.leads["employees"].dtype == "float64"


def test_round_trip_csv_and_parquet(tmp_path, valid_tables):
    data = validate(valid_tables)
    for fmt in ("csv", "parquet"):
        again = read_canonical(data.to_folder(tmp_path / fmt, fmt=fmt))
        for name in TABLES:
            pd.testing.assert_frame_equal(getattr(again, name), getattr(data, name), check_dtype=True)


# ------------------------------------------------------------------ corruption: the invariant and the reasons
CORRUPTIONS = {
    "opportunities": {
        "blank_owner": ("owner", lambda r, df: "", "missing required value"),
        "bad_created": ("created_at", lambda r, df: "31/31/2024", "unparseable date"),
        "bad_amount": ("amount", lambda r, df: "12k", "unparseable number"),
        "negative": ("amount", lambda r, df: "-100", "negative amount"),
        "stage": ("stage", lambda r, df: "Haggling", "unknown stage"),
        "close_before": (
            "close_date",
            lambda r, df: (pd.Timestamp(df.at[r, "created_at"]) - pd.Timedelta(days=3)).strftime("%Y-%m-%d"),
            "close date before creation",
        ),
        "flags": ("is_won", lambda r, df: "1" if df.at[r, "is_won"] == "0" else "0", "flags contradict stage"),
        "bad_flag": ("is_closed", lambda r, df: "maybe", "unparseable boolean"),
    },
    "stage_history": {
        "bad_time": ("changed_at", lambda r, df: "yesterday", "unparseable date"),
        "stage": ("stage", lambda r, df: "Limbo", "unknown stage"),
        "orphan": ("opportunity_id", lambda r, df: "NOPE-1", "unknown opportunity"),
        "blank_stage": ("stage", lambda r, df: "", "missing required value"),
    },
    "leads": {
        "conv_before": ("converted_at", lambda r, df: "2023-01-01", "conversion before creation"),
        "bad_bool": ("converted", lambda r, df: "perhaps", "unparseable boolean"),
    },
    "forecast_submissions": {
        "category": ("category", lambda r, df: "gut feeling", "unknown forecast category"),
        "period": ("period", lambda r, df: "Q5-2024", "invalid period"),
        "amount": ("amount", lambda r, df: "-1", "negative amount"),
    },
    "quotas": {
        "amount": ("amount", lambda r, df: "lots", "unparseable number"),
        "period": ("period", lambda r, df: "2024", "invalid period"),
    },
}


@st.composite
def corruption_plans(draw):
    plan = []
    sizes = {"opportunities": 30, "stage_history": None, "leads": 8, "forecast_submissions": 4, "quotas": 3}
    for table, kinds in CORRUPTIONS.items():
        n = sizes[table]
        k = draw(st.integers(0, 4))
        for _ in range(k):
            row = draw(st.integers(0, (n or 60) - 1))
            kind = draw(st.sampled_from(sorted(kinds)))
            plan.append((table, row, kind))
    dup = draw(st.booleans())
    return plan, dup


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption_plans(), st.integers(0, 10_000))
def test_corrupted_rows_are_quarantined_with_their_reason(tmp_path_factory, plan_dup, seed):
    plan, dup = plan_dup
    tables = {k: as_text(v) for k, v in random_crm(30, seed=seed).items()}
    tables.update(_extra_tables())
    expected: dict[tuple[str, int], str] = {}
    for table, row, kind in plan:
        df = tables[table]
        row = row % len(df)
        if (table, row) in expected:
            continue
        column, make, reason = CORRUPTIONS[table][kind]
        df.loc[row, column] = make(row, df)
        expected[(table, row)] = reason
    opps = tables["opportunities"]
    if dup:  # the last row takes the id of the first clean row: a duplicate, and its own history is orphaned
        clean = [r for r in range(len(opps) - 1) if ("opportunities", r) not in expected]
        last = len(opps) - 1
        if clean and ("opportunities", last) not in expected:
            old_id = opps.loc[last, "opportunity_id"]
            opps.loc[last, "opportunity_id"] = opps.loc[clean[0], "opportunity_id"]
            expected[("opportunities", last)] = "duplicate id"
            hist = tables["stage_history"]
            for r in np.flatnonzero((hist["opportunity_id"] == old_id).to_numpy()):
                expected.setdefault(("stage_history", int(r)), "unknown opportunity")
    # history rows of quarantined opportunities cascade
    bad_ids = {
        opps.loc[r, "opportunity_id"]
        for (t, r), why in expected.items()
        if t == "opportunities" and why != "duplicate id"
    }
    hist = tables["stage_history"]
    for r in np.flatnonzero(hist["opportunity_id"].isin(bad_ids).to_numpy()):
        expected.setdefault(("stage_history", int(r)), "opportunity quarantined")

    folder = _write_folder(tmp_path_factory.mktemp("crm"), tables)
    data = read_canonical(folder)
    for name in TABLES:
        c = data.counts.loc[name]
        assert c["read"] == len(tables.get(name, ()))
        assert c["read"] == c["accepted"] + c["quarantined"]
        assert len(getattr(data, name)) == c["accepted"]
    got = {(t, int(r) - 1): why for t, r, why in data.quarantine[["table", "row", "reason"]].itertuples(index=False)}
    assert got == expected
    assert set(data.quarantine["reason"]) <= set(REASONS)
    # the original row is kept verbatim
    for rec in data.quarantine.itertuples(index=False):
        original = json.loads(rec.original)
        src = tables[rec.table].iloc[rec.row - 1]
        assert original == {k: (None if pd.isna(v) or v == "" else str(v)) for k, v in src.items()}


def test_unknown_stage_via_alias_is_accepted(valid_tables):
    valid_tables["opportunities"].loc[0, "stage"] = "  closed   won "
    valid_tables["opportunities"].loc[0, "is_closed"] = "1"
    valid_tables["opportunities"].loc[0, "is_won"] = "1"
    data = validate(valid_tables)
    assert data.opportunities.loc[0, "stage"] == "Closed Won"
    assert "opportunities" not in set(data.quarantine["table"])


def test_custom_process_rejects_default_stage_names(valid_tables, tmp_path):
    p = tmp_path / "p.yml"
    p.write_text("stages: [{name: Discovery}, {name: Won, kind: won}, {name: Lost, kind: lost}]\n")
    data = validate(valid_tables, process=p)
    assert data.counts.loc["opportunities", "accepted"] == 0
    assert set(data.quarantine.loc[data.quarantine["table"] == "opportunities", "reason"]) == {"unknown stage"}
    assert data.process.open_stages == ["Discovery"]


def test_folder_process_yml_is_used(tmp_path, valid_tables):
    folder = _write_folder(tmp_path / "crm", valid_tables)
    SalesProcess.default().to_yaml(folder / "process.yml")
    assert read_canonical(folder).process == SalesProcess.default()


def test_timezones_become_naive_utc():
    t = random_crm(3, seed=1)
    opps = as_text(t["opportunities"])
    opps.loc[0, "created_at"] = "2024-01-01T10:00:00+02:00"
    opps.loc[0, "close_date"] = "2024-06-01"
    data = validate({"opportunities": opps})
    assert data.opportunities.loc[0, "created_at"] == pd.Timestamp("2024-01-01 08:00:00")


# ------------------------------------------------------------------ whole-file errors
def test_missing_required_column_names_file_and_column(tmp_path, valid_tables):
    valid_tables["opportunities"] = valid_tables["opportunities"].drop(columns="close_date")
    folder = _write_folder(tmp_path / "crm", valid_tables)
    with pytest.raises(DataFileError, match="close_date") as exc:
        read_canonical(folder)
    assert "opportunities.csv" in str(exc.value)
    assert exc.value.column == "close_date"


def test_empty_file(tmp_path, valid_tables):
    folder = _write_folder(tmp_path / "crm", valid_tables)
    (folder / "stage_history.csv").write_text("")
    with pytest.raises(DataFileError, match="stage_history.csv: the file is empty"):
        read_canonical(folder)


def test_header_only_file_is_an_empty_table(tmp_path, valid_tables):
    folder = _write_folder(tmp_path / "crm", valid_tables)
    (folder / "quotas.csv").write_text("owner,period,amount\n")
    data = read_canonical(folder)
    assert data.counts.loc["quotas"].tolist() == [0, 0, 0]


def test_wrong_delimiter(tmp_path, valid_tables):
    folder = _write_folder(tmp_path / "crm", valid_tables)
    valid_tables["opportunities"].to_csv(folder / "opportunities.csv", sep=";", index=False)
    with pytest.raises(DataFileError, match="separated by semicolons"):
        read_canonical(folder)


def test_undecodable_bytes(tmp_path, valid_tables):
    folder = _write_folder(tmp_path / "crm", valid_tables)
    raw = (folder / "opportunities.csv").read_bytes()
    (folder / "opportunities.csv").write_bytes(raw.replace(b"rep1", "r\u00e9p1".encode("latin-1"), 1))
    with pytest.raises(DataFileError, match=r"opportunities.csv: bytes at offset \d+ cannot be decoded as utf-8"):
        read_canonical(folder)


def test_missing_folder_and_opportunities(tmp_path):
    with pytest.raises(DataFileError, match="no such folder"):
        read_canonical(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(DataFileError, match="no opportunities file"):
        read_canonical(tmp_path / "x")


def test_table_given_twice(tmp_path, valid_tables):
    folder = _write_folder(tmp_path / "crm", valid_tables)
    validate(valid_tables).opportunities.to_parquet(folder / "opportunities.parquet")
    with pytest.raises(DataFileError, match="given twice"):
        read_canonical(folder)


# ------------------------------------------------------------------ messy real-world files
HDR = "opportunity_id,owner,created_at,stage,amount,close_date,is_closed,is_won"
GOOD = "A,ann,2024-01-02,Prospecting,100,2024-03-01,false,false"


def _one(tmp_path, text: str | bytes):
    folder = tmp_path / "crm"
    folder.mkdir(exist_ok=True)
    path = folder / "opportunities.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return read_canonical(folder)


def test_malformed_line_is_quarantined_not_fatal(tmp_path):
    data = _one(
        tmp_path,
        f"{HDR}\n{GOOD}\nC,cy,2024-01-02,Prospecting,1,000,2024-03-01,false,false\nD,di,2024-01-03,"
        "Prospecting,5,2024-03-01,false,false\n",
    )
    assert data.counts.loc["opportunities"].tolist() == [3, 2, 1]
    q = data.quarantine.iloc[0]
    assert (q["row"], q["reason"]) == (2, "malformed row")
    assert json.loads(q["original"])["fields"][:6] == ["C", "cy", "2024-01-02", "Prospecting", "1", "000"]
    assert data.opportunities["opportunity_id"].tolist() == ["A", "D"]


def test_blank_lines_are_counted_rows_and_row_numbers_stay_true(tmp_path):
    data = _one(tmp_path, f"{HDR}\n{GOOD}\n\n,,,,,,,\nC,cy,2024-01-02,Bogus,100,2024-03-01,false,false\n\n\n")
    assert data.counts.loc["opportunities"].tolist() == [4, 1, 3]
    got = data.quarantine[["row", "reason"]].values.tolist()
    assert got == [[2, "empty row"], [3, "empty row"], [4, "unknown stage"]]


def test_trailing_commas_headers_and_boms(tmp_path):
    data = _one(
        tmp_path,
        "\ufeff" + HDR.replace("opportunity_id", " Opportunity_ID").replace("is_won", "Is Won") + "\n" + GOOD + ",\n",
    )
    assert data.quarantine.empty and data.opportunities.loc[0, "opportunity_id"] == "A"
    with pytest.raises(DataFileError, match="empty"):
        _one(tmp_path, b"\xef\xbb\xbf\r\n")


def test_dates_need_a_full_day_and_close_dates_get_a_day_of_slack(tmp_path):
    rows = [
        "A,ann,2024,Prospecting,1,2024-03-01,false,false",  # year only: unparseable
        "B,bo,2024-01-02,Prospecting,1,2024-06,false,false",  # month only: unparseable
        "C,cy,2024-01-02T04:00:00Z,Prospecting,1,2024-01-01,false,false",  # same local day: accepted
        "D,di,2024-01-03T04:00:00Z,Prospecting,1,2024-01-01,false,false",  # two days before: quarantined
    ]
    data = _one(tmp_path, HDR + "\n" + "\n".join(rows) + "\n")
    got = dict(zip(data.quarantine["row"], data.quarantine["reason"], strict=True))
    assert got == {1: "unparseable date", 2: "unparseable date", 4: "close date before creation"}


def test_most_likely_category_and_parquet_categoricals(tmp_path):
    t = random_crm(4, seed=9)
    opps = t["opportunities"].assign(forecast_category="Most Likely")
    opps["owner"] = opps["owner"].astype("category")
    opps["owner"] = opps["owner"].cat.add_categories([""])
    opps.loc[0, "owner"] = ""
    folder = tmp_path / "pq"
    folder.mkdir()
    opps.to_parquet(folder / "opportunities.parquet")
    data = read_canonical(folder)
    assert data.quarantine[["row", "reason"]].values.tolist() == [[1, "missing required value"]]
    assert set(data.opportunities["forecast_category"]) == {"most_likely"}


def test_import_notes_survive_filtering_and_a_canonical_folder(tmp_path):
    from salesforecast.datasets import load_sample

    data = load_sample()
    data.notes = ("the history has no real progression", "owners are user ids")
    assert data.filter(team="EMEA").notes == data.notes
    back = read_canonical(data.to_folder(tmp_path / "crm"))
    assert back.notes == data.notes
    assert load_sample().notes == ()  # the sample has nothing to confess


def test_a_folder_written_by_an_importer_keeps_its_quarantine(tmp_path):
    raw = {
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": ["A", "B"],
                "owner": ["ann", "bob"],
                "created_at": ["2024-01-02", "2024-01-03"],
                "stage": ["Prospecting", "Prospecting"],
                "amount": ["100", "-5"],
                "close_date": ["2024-03-01", "2024-03-01"],
                "is_closed": ["0", "0"],
                "is_won": ["0", "0"],
            }
        )
    }
    data = validate(raw)
    assert data.counts.loc["opportunities", "quarantined"] == 1
    back = read_canonical(data.to_folder(tmp_path / "crm"))
    assert back.counts.loc["opportunities"].tolist() == [2, 1, 1]  # read, accepted, quarantined as imported
    assert back.quarantine["reason"].tolist() == ["negative amount"]
    assert "quarantined at import" in back.quarantine["details"].iloc[0]


def test_filter_names_unknown_teams_and_owners():
    from salesforecast.datasets import load_sample

    data = load_sample()
    with pytest.raises(ValueError, match=r"team 'AMER' is not in the data; teams: \['APAC', 'EMEA'"):
        data.filter(team="AMER")
    with pytest.raises(ValueError, match="owner 'Nobody' is not in the data"):
        data.filter(owner="Nobody")


def test_activities_links_are_checked_and_every_row_counted():
    """An activity needs a deal or a lead that was accepted; the rest is quarantined with its reason."""
    tables = {k: as_text(v) for k, v in random_crm(6, seed=1).items()}
    ids = tables["opportunities"]["opportunity_id"].tolist()
    bad = tables["opportunities"].copy()
    bad.loc[0, "stage"] = "Nowhere"  # this deal is quarantined, and so is its activity
    tables["opportunities"] = bad
    tables["leads"] = _extra_tables()["leads"]
    acts = pd.DataFrame(
        {
            "activity_id": ["A1", "A2", "A3", "A4", "A5", "A6"],
            "occurred_at": ["2024-01-03"] * 6,
            "type": ["call", "meeting", "email", "task", "call", "Thank-you letter"],
            "opportunity_id": [ids[0], "NOPE", "", "", ids[1], ""],
            "lead_id": ["", "", "", "L99", "", "L1"],
        }
    )
    process = SalesProcess.from_dict(
        {**SalesProcess.default().to_dict(), "activity_types": {"follow_up": ["thank you letter"]}}
    )
    data = validate({**tables, "activities": acts}, process=process)
    q = data.quarantine[data.quarantine["table"] == "activities"].set_index("row")["reason"].to_dict()
    assert q == {1: "opportunity quarantined", 2: "unknown opportunity", 3: "no deal or lead", 4: "unknown lead"}
    assert data.activities["activity_id"].tolist() == ["A5", "A6"]
    assert data.activities["type"].tolist() == ["call", "follow_up"]
    assert data.counts.loc["activities"].tolist() == [6, 2, 4]


def test_names_already_canonical_keep_their_column_others_are_mapped_per_value():
    from salesforecast.schema import _per_unique

    text = pd.Series(["Won", "Lost", None, "Won"], dtype="str", name="stage")
    same = _per_unique(text, lambda u: u)
    assert same is text  # nothing to map: the column itself, no copy of 12M values
    upper = _per_unique(text, lambda u: u.str.upper())
    assert upper.tolist()[:2] == ["WON", "LOST"] and upper.isna().tolist() == [False, False, True, False]
    dropped = _per_unique(text, lambda u: u.where(u != "Lost"))  # a name mapped to nothing: missing, not kept
    assert dropped.isna().tolist() == [False, True, True, False] and dropped.dtype == text.dtype
    empty = text.iloc[:0]
    assert _per_unique(empty, lambda u: u).tolist() == []
