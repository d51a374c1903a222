"""Mapped imports (salesforecast.io.mapping): any export through a YAML mapping into the canonical tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from salesforecast.io.mapping import (
    MappingError,
    MappingSpec,
    import_mapping,
    is_mapping_file,
    load_mapping,
    read_mapping,
)
from salesforecast.schema import DataFileError, read_canonical

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mapping" / "acme.yml"

# A German CRM export: latin-1, ";", decimal commas, thousands dots, dd.mm.yyyy dates (with and without time,
# one ISO), a quoted newline, trailing empty columns, flags as ja/nein, "-" for no value.
# D5's value is "k. A." (unparseable number), D6's created date is 31.02.2024 (unparseable date).
DEALS = (
    "Deal ID;Besitzer;Erstellt;Phase;Wert;Abschluss;Gewonnen?;Notiz;Engaged date;;\r\n"
    "D1;ann;08.01.2024 09:15;Gewonnen;12.500,00;29.02.2024;ja;-;15.01.2024;;\r\n"
    'D2;bo;10.01.2024;Verloren;4.200,50;15.03.2024;nein;"zwei\r\nZeilen";;;\r\n'
    "D3;ann;22.01.2024;Prospecting;38.000;2024-06-30;nein;;05.02.2024;;\r\n"
    "D4;Zoë;05.02.2024 14:30;Needs Analysis;950,5;31.05.2024;nein;;;;\r\n"
    "D5;Zoë;06.02.2024;Prospecting;k. A.;31.05.2024;nein;;;;\r\n"
    "D6;bo;31.02.2024;Prospecting;100;31.05.2024;nein;;;;\r\n"
)

MAPPING = """\
defaults: {encoding: latin-1, delimiter: ";", decimal: ",", thousands: ".", missing: ["-"],
           dates: ["%d.%m.%Y %H:%M", "%d.%m.%Y"]}
tables:
  opportunities:
    source: deals.csv
    columns:
      opportunity_id: Deal ID
      owner: Besitzer
      created_at: Erstellt
      stage: Phase
      amount: Wert
      close_date: Abschluss
      is_won: Gewonnen?
      note: Notiz
    values:
      stage: {Gewonnen: Closed Won, Verloren: Closed Lost}
      is_won: {ja: true, nein: false}
    constants: {team: EMEA}
    derive: {is_closed: {from: stage}}
"""


def write_export(folder: Path, mapping: str = MAPPING, deals: str = DEALS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deals.csv").write_bytes(deals.encode("latin-1"))
    (folder / "crm.yml").write_text(mapping, encoding="utf-8")
    return folder / "crm.yml"


def mapping_error(tmp_path: Path, text: str) -> MappingError:
    path = write_export(tmp_path, text)
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    return err.value


# ---------------------------------------------------------------------------------------------- a messy export
def test_messy_export_loads_and_failing_rows_are_quarantined_with_reasons(tmp_path):
    data = load_mapping(write_export(tmp_path))
    assert data.counts.loc["opportunities"].tolist() == [6, 4, 2]
    counts = data.counts
    assert (counts["read"] == counts["accepted"] + counts["quarantined"]).all()
    q = data.quarantine.set_index("row")
    assert q.loc[5, ["column", "value", "reason"]].tolist() == ["amount", "k. A.", "unparseable number"]
    assert q.loc[6, ["column", "value", "reason"]].tolist() == ["created_at", "31.02.2024", "unparseable date"]
    opps = data.opportunities.set_index("opportunity_id")
    assert opps["amount"].tolist() == [12500.0, 4200.5, 38000.0, 950.5]
    assert opps.loc["D1", "created_at"] == pd.Timestamp("2024-01-08 09:15")
    assert opps.loc["D3", "close_date"] == pd.Timestamp("2024-06-30")  # ISO among dd.mm.yyyy
    assert opps["stage"].tolist() == ["Closed Won", "Closed Lost", "Prospecting", "Needs Analysis"]
    assert opps["is_closed"].tolist() == [True, True, False, False]
    assert opps["is_won"].tolist() == [True, False, False, False]
    assert opps["team"].unique().tolist() == ["EMEA"]
    assert opps.loc["D2", "note"] == "zwei\r\nZeilen"
    assert pd.isna(opps.loc["D1", "note"])  # "-" is no value
    assert data.sources["opportunities"] == str(tmp_path / "deals.csv")


def test_no_history_note_says_what_it_limits(tmp_path):
    data = load_mapping(write_export(tmp_path))
    assert data.stage_history.empty
    note = data.notes[0]
    assert note.startswith("No stage history")
    assert "conversion" in note and "snapshots and backtests" in note and "derive_from_dates" in note


def test_utf8_bom_and_comma_delimiter_sniffed(tmp_path):
    deals = "\ufeffid,owner,created,stage,amount,close,closed,won\nD1,ann,2024-01-02,Prospecting,1,2024-03-01,0,0\n"
    mapping = """\
tables:
  opportunities:
    source: deals.csv
    columns: {opportunity_id: id, owner: owner, created_at: created, stage: stage, amount: amount,
              close_date: close, is_closed: closed, is_won: won}
"""
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "deals.csv").write_text(deals, encoding="utf-8")
    (folder / "crm.yml").write_text(mapping, encoding="utf-8")
    data = load_mapping(folder / "crm.yml")
    assert data.counts.loc["opportunities"].tolist() == [1, 1, 0]


def test_undecodable_source_names_file_offset_and_the_key_to_set(tmp_path):
    mapping = MAPPING.replace("encoding: latin-1", "encoding: utf-8")
    err = mapping_error(tmp_path, mapping)
    msg = str(err)
    assert "crm.yml: tables.opportunities.source:" in msg
    assert "deals.csv" in msg and "offset" in msg and "encoding: cp1252" in msg


def test_a_duplicated_header_is_an_error_only_when_mapped(tmp_path):
    mapping = MAPPING.replace("      note: Notiz\n", "")
    path = write_export(tmp_path, mapping, DEALS.replace("Notiz", "Besitzer", 1))
    with pytest.raises(MappingError, match=r"names 'Besitzer' more than once \(columns 2 and 8\)") as err:
        load_mapping(path)
    assert "crm.yml: tables.opportunities.columns:" in str(err.value)
    path = write_export(tmp_path, mapping, DEALS.replace("Notiz", "Engaged date", 1))
    assert load_mapping(path).counts.loc["opportunities", "read"] == 6


def test_excel_serial_dates_and_an_xlsx_source(tmp_path):
    frame = pd.DataFrame(
        {
            "Deal": ["D1", "D2", "D3"],
            "Owner": ["ann", "bo", "cy"],
            "Created": [45321, 45322.5, 45323],  # 2024-01-30, 2024-01-31 12:00, 2024-02-01
            "Stage": ["Closed Won", "Prospecting", "Prospecting"],
            "Amount": [1000, 250.5, 10],
            "Close": pd.to_datetime(["2024-02-15", "2024-04-30", "2024-05-31"]),
        }
    )
    with pd.ExcelWriter(tmp_path / "crm.xlsx") as xl:
        pd.DataFrame({"Report": ["Deals, exported 2024-05-01"]}).to_excel(xl, sheet_name="Info", index=False)
        frame.to_excel(xl, sheet_name="Deals", index=False)
    mapping = """\
tables:
  opportunities:
    source: {file: crm.xlsx, sheet: Deals, excel_serial: true}
    columns: {opportunity_id: Deal, owner: Owner, created_at: Created, stage: Stage, amount: Amount, close_date: Close}
    derive: {is_closed: {from: stage}, is_won: {from: stage}}
"""
    (tmp_path / "crm.yml").write_text(mapping, encoding="utf-8")
    data = load_mapping(tmp_path / "crm.yml")
    assert data.counts.loc["opportunities"].tolist() == [3, 3, 0]
    assert data.opportunities["created_at"].tolist() == [
        pd.Timestamp("2024-01-30"),
        pd.Timestamp("2024-01-31 12:00"),
        pd.Timestamp("2024-02-01"),
    ]
    assert data.opportunities["amount"].tolist() == [1000.0, 250.5, 10.0]
    assert data.sources["opportunities"].endswith("crm.xlsx (sheet Deals)")

    # without excel_serial the numbers are quarantined as dates, and a note says what to set
    (tmp_path / "crm.yml").write_text(mapping.replace(", excel_serial: true", ""), encoding="utf-8")
    data = load_mapping(tmp_path / "crm.yml")
    assert data.counts.loc["opportunities"].tolist() == [3, 0, 3]
    assert set(data.quarantine["reason"]) == {"unparseable date"}
    assert any("excel_serial: true" in n for n in data.notes)


def test_parquet_source_with_typed_columns(tmp_path):
    pd.DataFrame(
        {
            "id": ["P1", "P2"],
            "rep": ["ann", "bo"],
            "created": pd.to_datetime(["2024-01-02", "2024-01-03"]),
            "phase": ["won", "Prospecting"],
            "value": [10.0, 20.0],
            "close": pd.to_datetime(["2024-02-01", "2024-03-01"]),
            "closed": [True, False],
            "won": [True, False],
        }
    ).to_parquet(tmp_path / "deals.parquet")
    mapping = """\
tables:
  opportunities:
    source: deals.parquet
    columns: {opportunity_id: id, owner: rep, created_at: created, stage: phase, amount: value, close_date: close,
              is_closed: closed, is_won: won}
"""
    (tmp_path / "crm.yml").write_text(mapping, encoding="utf-8")
    data = load_mapping(tmp_path / "crm.yml")
    assert data.counts.loc["opportunities"].tolist() == [2, 2, 0]
    assert data.opportunities["stage"].tolist() == ["Closed Won", "Prospecting"]


def test_lookup_joins_owner_names_and_notes_unknown_keys(tmp_path):
    deals = "Deal;Owner ID;Created;Stage;Value;Close\nD1;101;02.01.2024;Prospecting;1;01.03.2024\n"
    deals += "D2;102;03.01.2024;Prospecting;2;01.03.2024\nD3;999;04.01.2024;Prospecting;3;01.03.2024\n"
    (tmp_path / "deals.csv").write_text(deals, encoding="utf-8")
    pd.DataFrame({"User ID": [101, 102], "Name": ["Ann", "Bo"], "Team": ["North", "South"]}).to_excel(
        tmp_path / "owners.xlsx", index=False, sheet_name="Owners"
    )
    mapping = """\
defaults: {dates: ["%d.%m.%Y"]}
tables:
  opportunities:
    source: deals.csv
    columns: {opportunity_id: Deal, created_at: Created, stage: Stage, amount: Value, close_date: Close}
    lookups:
      - {source: {file: owners.xlsx, sheet: Owners}, key: Owner ID, on: User ID, columns: {owner: Name, team: Team}}
    derive: {is_closed: {from: stage}, is_won: {from: stage}}
"""
    (tmp_path / "crm.yml").write_text(mapping, encoding="utf-8")
    data = load_mapping(tmp_path / "crm.yml")
    assert data.opportunities[["owner", "team"]].to_numpy().tolist() == [["Ann", "North"], ["Bo", "South"]]
    assert data.quarantine[["row", "column", "reason"]].to_numpy().tolist() == [[3, "owner", "missing required value"]]
    assert any("'999'" in n and "owner, team" in n for n in data.notes)

    pd.DataFrame({"User ID": [101, 101], "Name": ["Ann", "Al"], "Team": ["N", "N"]}).to_excel(
        tmp_path / "owners.xlsx", index=False, sheet_name="Owners"
    )
    with pytest.raises(MappingError, match=r"lookups\[0\]\.on: 'User ID' repeats values in owners.xlsx \('101'\)"):
        load_mapping(tmp_path / "crm.yml")


def test_process_from_the_mapping_or_the_argument(tmp_path):
    process = (
        "stages: [{name: Lead, aliases: [Prospecting, Needs Analysis]}, {name: Signed, kind: won},"
        " {name: Dropped, kind: lost}]\n"
    )
    (tmp_path / "acme-process.yml").write_text(process, encoding="utf-8")
    mapping = "process: acme-process.yml\n" + MAPPING.replace("Closed Won", "Signed").replace("Closed Lost", "Dropped")
    data = load_mapping(write_export(tmp_path, mapping))
    assert data.process.stage_names == ["Lead", "Signed", "Dropped"]
    assert data.opportunities["stage"].tolist() == ["Signed", "Dropped", "Lead", "Lead"]
    assert data.opportunities["is_closed"].tolist() == [True, True, False, False]
    data = load_mapping(tmp_path / "crm.yml", process="salesforce")
    assert data.counts.loc["opportunities", "quarantined"] == 4  # Signed and Dropped are no default stages
    (tmp_path / "acme-process.yml").unlink()
    with pytest.raises(MappingError, match="crm.yml: process: .*not found"):
        load_mapping(tmp_path / "crm.yml")
    from salesforecast.io.hubspot import hubspot_process

    assert load_mapping(write_export(tmp_path, "process: hubspot\n" + MAPPING)).process == hubspot_process()
    err = read_error(tmp_path, "process: pipedrive\n" + MAPPING)
    assert err.key == "process" and "nor one of default, salesforce, hubspot" in str(err)


# ---------------------------------------------------------------------------------------------- derived history
HISTORY = """\
  stage_history:
    derive_from_dates:
      created_at: first_open_stage
      Engaged date: Needs Analysis
      close_date: outcome
"""


def test_minimal_history_derived_from_dates(tmp_path):
    data = load_mapping(write_export(tmp_path, MAPPING + HISTORY))
    hist = data.stage_history
    rows = [(r.opportunity_id, r.changed_at.strftime("%Y-%m-%d %H:%M"), r.stage) for r in hist.itertuples()]
    assert rows == [
        ("D1", "2024-01-08 09:15", "Prospecting"),
        ("D1", "2024-01-15 00:00", "Needs Analysis"),
        ("D1", "2024-02-29 00:00", "Closed Won"),
        ("D2", "2024-01-10 00:00", "Prospecting"),
        ("D2", "2024-03-15 00:00", "Closed Lost"),
        ("D3", "2024-01-22 00:00", "Prospecting"),
        ("D3", "2024-02-05 00:00", "Needs Analysis"),
        ("D4", "2024-02-05 14:30", "Prospecting"),
    ]
    # only accepted opportunities get rows: D5 and D6 were quarantined
    assert data.counts.loc["stage_history"].tolist() == [8, 8, 0]
    assert "derived from dates" in data.sources["stage_history"]
    note = data.notes[0]
    assert note.startswith("The stage history is minimal")
    assert "Engaged date -> Needs Analysis (2 rows)" in note
    assert "1 of 2 open deals" in note  # D4 is in Needs Analysis, which no date records


def test_derived_history_feeds_snapshots(tmp_path):
    from salesforecast.snapshots import pipeline_snapshots

    data = load_mapping(write_export(tmp_path, MAPPING + HISTORY))
    snap = pipeline_snapshots(data, ["2024-01-20", "2024-03-01"])
    jan = snap[snap["as_of"] == pd.Timestamp("2024-01-20")].set_index("opportunity_id")["stage"].to_dict()
    assert jan == {"D1": "Needs Analysis", "D2": "Prospecting"}


def test_derived_history_with_an_unknown_stage_or_column(tmp_path):
    err = mapping_error(tmp_path, MAPPING + HISTORY.replace("Needs Analysis", "Demo"))
    assert 'tables.stage_history.derive_from_dates."Engaged date"' in str(err)
    assert "'Demo' is not a stage" in str(err)
    err = mapping_error(tmp_path, MAPPING + HISTORY.replace("Engaged date:", "Engagement:"))
    assert "crm.yml: tables.stage_history.derive_from_dates: 'Engagement'" in str(err)
    assert "which deals.csv does not have" in str(err)
    err = mapping_error(tmp_path, MAPPING + HISTORY + "    source: deals.csv\n")
    assert "tables.stage_history: derive_from_dates builds the whole table" in str(err)


# ---------------------------------------------------------------------------------------------- YAML errors
def read_error(tmp_path: Path, text: str) -> MappingError:
    path = tmp_path / "crm.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as err:
        read_mapping(path)
    assert str(err.value).startswith(f"{path}: ")
    return err.value


def test_unknown_keys_are_named_with_their_path(tmp_path):
    err = read_error(tmp_path, MAPPING.replace("    constants:", "    constant:"))
    assert err.key == "tables.opportunities"
    assert "unknown key 'constant' (did you mean 'constants'?)" in str(err)
    err = read_error(tmp_path, "tabels: {}\n")
    assert "tabels: unknown key (did you mean 'tables'?)" in str(err)
    err = read_error(tmp_path, MAPPING.replace("defaults: {", "defaults: {encodng: utf-8, "))
    assert "crm.yml: defaults: unknown key 'encodng'" in str(err)
    err = read_error(tmp_path, MAPPING + "  deals: {source: x.csv}\n")
    assert "tables.deals: unknown table" in str(err)


def test_a_mapping_needs_one_table_and_a_history_needs_opportunities(tmp_path):
    """Leads alone are a mapping (a marketing funnel); no table, or a history of no deals, is an error."""
    assert "crm.yml: tables: missing" in str(read_error(tmp_path, "process: default\n"))
    err = read_error(tmp_path, "tables: {}\n")
    assert err.key == "tables" and "describes no table" in str(err)
    err = read_error(tmp_path, "tables:\n  stage_history: {derive_from_dates: {created_at: first_open_stage}}\n")
    assert err.key == "tables.stage_history" and "describe opportunities too" in str(err)
    (tmp_path / "q.csv").write_text("owner,period,amount\nann,FY2024Q1,100\n", encoding="utf-8")
    path = tmp_path / "crm.yml"
    path.write_text("tables:\n  quotas: {source: q.csv}\n", encoding="utf-8")
    assert set(read_mapping(path).tables) == {"quotas"}


def test_column_mapped_to_a_source_column_that_does_not_exist(tmp_path):
    err = mapping_error(tmp_path, MAPPING.replace("amount: Wert", "amount: Value"))
    msg = str(err)
    assert msg.startswith(f"{tmp_path / 'crm.yml'}: tables.opportunities.columns: 'amount' maps to 'Value',")
    assert "which deals.csv does not have; columns are: 'Deal ID', 'Besitzer', 'Erstellt'" in msg
    assert err.key == "tables.opportunities.columns" and err.column == "Value"
    assert isinstance(err, DataFileError)


def test_value_map_that_is_not_a_mapping(tmp_path):
    err = read_error(tmp_path, MAPPING.replace("is_won: {ja: true, nein: false}", "is_won: [ja, nein]"))
    assert err.key == "tables.opportunities.values.is_won"
    assert "must be a mapping of is_won's source values to canonical values" in str(err)
    err = read_error(tmp_path, MAPPING.replace("      is_won: {ja", "      is_lost: {ja"))
    assert "tables.opportunities.values: 'is_lost' is not a mapped column" in str(err)


def test_required_column_without_a_source(tmp_path):
    err = read_error(tmp_path, MAPPING.replace("    derive: {is_closed: {from: stage}}\n", ""))
    assert err.key == "tables.opportunities.columns"
    assert "no column for the required 'is_closed'" in str(err) and "derive:" in str(err)
    err = read_error(tmp_path, MAPPING.replace("amount: Wert", "ammount: Wert"))
    assert "the required 'amount' ('ammount' may be a misspelling of it)" in str(err)


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (('decimal: ","', 'decimal: ";"'), "defaults.decimal", "must be '.' or ','"),
        (('thousands: "."', 'thousands: ","'), "defaults.thousands", "decimal mark ',' too"),
        (('dates: ["%d.%m.%Y %H:%M", "%d.%m.%Y"]', 'dates: ["dd.mm.yyyy"]'), "defaults.dates[0]", "not a date format"),
        (("encoding: latin-1", "encoding: latin-9x"), "defaults.encoding", "unknown encoding"),
        (("source: deals.csv", "source: deals.dat"), "tables.opportunities.source.file", "cannot tell the format"),
        (
            ("constants: {team: EMEA}", "constants: {team: [a, b]}"),
            "tables.opportunities.constants.team",
            "single value",
        ),
        (("constants: {team: EMEA}", "constants: {owner: x}"), "tables.opportunities.constants.owner", "mapped"),
        (
            ("derive: {is_closed: {from: stage}}", "derive: {is_closed: {from: owner}}"),
            "tables.opportunities.derive.is_closed",
            "from: stage derives",
        ),
        (
            ("      stage: {Gewonnen", "      stage: {Gewonnen: [a]}\n      x: {Gewonnen"),
            "tables.opportunities.values.stage.Gewonnen",
            "single value",
        ),
    ],
)
def test_bad_values_name_their_key(tmp_path, change, key, message):
    assert change[0] in MAPPING
    err = read_error(tmp_path, MAPPING.replace(*change))
    assert err.key == key
    assert message in str(err)


def test_duplicate_yaml_keys_and_yaml_syntax(tmp_path):
    err = read_error(
        tmp_path, MAPPING.replace("      owner: Besitzer\n", "      owner: Besitzer\n      owner: Notiz\n")
    )
    assert "the key 'owner' is given twice" in str(err) and "line 9" in str(err)
    assert "not valid YAML" in str(read_error(tmp_path, "tables: [\n"))
    assert "is empty" in str(read_error(tmp_path, ""))
    with pytest.raises(MappingError, match="mapping file not found"):
        read_mapping(tmp_path / "nope.yml")


def test_yes_no_and_on_stay_text_in_mappings(tmp_path):
    mapping = MAPPING.replace("{ja: true, nein: false}", "{yes: true, no: false}")
    spec = read_mapping(write_export(tmp_path, mapping))
    assert spec.tables["opportunities"].values["is_won"] == {"yes": True, "no": False}
    assert isinstance(spec, MappingSpec)


# ---------------------------------------------------------------------------------------------- databases
DB_MAPPING = """\
databases:
  warehouse: {url_env: SALESFORECAST_TEST_UNSET_URL}
tables:
  opportunities:
    source: {database: warehouse, table: crm.deals}
    columns: {opportunity_id: id, owner: owner, created_at: created, stage: stage, amount: amount, close_date: close}
    derive: {is_closed: {from: stage}, is_won: {from: stage}}
"""


def test_database_that_is_not_defined(tmp_path, monkeypatch):
    monkeypatch.setenv("SALESFORECAST_TEST_UNSET_URL", "postgresql://ann:s3cret@db.example.com/crm")
    err = read_error(tmp_path, DB_MAPPING.replace("database: warehouse", "database: wh"))
    assert err.key == "tables.opportunities.source.database"
    assert "'wh' is not defined under databases (defined: 'warehouse')" in str(err)
    assert "s3cret" not in str(err)


def test_database_url_variable_that_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("SALESFORECAST_TEST_UNSET_URL", raising=False)
    path = tmp_path / "crm.yml"
    path.write_text(DB_MAPPING, encoding="utf-8")
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert err.value.key == "databases.warehouse.url_env"
    assert "SALESFORECAST_TEST_UNSET_URL is not set" in str(err.value)


def test_database_url_is_never_written_in_the_mapping(tmp_path):
    err = read_error(
        tmp_path, DB_MAPPING.replace("url_env: SALESFORECAST_TEST_UNSET_URL", "url: postgresql://a:s3cret@h/d")
    )
    assert err.key == "databases.warehouse.url" and "environment variable" in str(err)
    assert "s3cret" not in str(err)
    err = read_error(tmp_path, DB_MAPPING.replace("SALESFORECAST_TEST_UNSET_URL", "'postgresql://a:s3cret@h/d'"))
    assert err.key == "databases.warehouse.url_env" and "s3cret" not in str(err)
    err = read_error(tmp_path, DB_MAPPING.replace("table: crm.deals", "table: crm.deals, query: select 1"))
    assert "table: (a table name) or query:" in str(err)


# ---------------------------------------------------------------------------------------------- the example
def test_example_mapping_loads_with_the_expected_counts():
    data = load_mapping(EXAMPLE)
    assert data.counts.loc["opportunities"].tolist() == [12, 10, 2]
    assert data.counts.loc["stage_history"].tolist() == [22, 22, 0]
    assert data.counts.loc["quotas"].tolist() == [6, 6, 0]
    assert sorted(data.quarantine["reason"]) == ["missing required value", "unparseable number"]
    assert data.process.name == "Acme sales process"
    opps = data.opportunities.set_index("opportunity_id")
    assert opps.loc["A-1001", ["owner", "team", "stage", "amount"]].tolist() == [
        "Jürgen Weiß",
        "Nord",
        "Closed Won",
        12500.0,
    ]
    assert opps.loc["A-1002", "deal_name"] == "Wartung\nFiliale Süd"
    assert opps.loc["A-1012", "close_date"] == pd.Timestamp("2024-05-31")
    assert len(data.notes) == 2  # the minimal history, and the owner id 104 that owners.xlsx does not have


def test_import_mapping_writes_a_folder_that_reads_back_the_same(tmp_path):
    out = tmp_path / "canonical"
    out.mkdir()
    (out / "leads.csv").write_text("stale", encoding="utf-8")  # a previous import's table is removed
    data = import_mapping(EXAMPLE, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.txt",
        "opportunities.csv",
        "process.yml",
        "quarantine.csv",
        "quotas.csv",
        "stage_history.csv",
    ]
    back = read_canonical(out)
    assert back.process == data.process
    assert back.notes == data.notes
    for name, table in data.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], table, check_dtype=False, obj=name)
        assert back.tables[name].dtypes.astype(str).tolist() == table.dtypes.astype(str).tolist()
    # the rows the import set aside come back with the folder: read = accepted + quarantined, as imported
    assert back.counts.equals(data.counts)
    assert back.quarantine["reason"].tolist() == data.quarantine["reason"].tolist()


def test_import_mapping_refuses_to_overwrite_a_source(tmp_path):
    mapping = MAPPING.replace("source: deals.csv", "source: opportunities.csv")
    folder = tmp_path / "x"
    path = write_export(folder, mapping)
    (folder / "deals.csv").rename(folder / "opportunities.csv")
    with pytest.raises(MappingError, match="is a source of this mapping"):
        import_mapping(path, folder)


def test_is_mapping_file(tmp_path):
    assert is_mapping_file(EXAMPLE)
    assert not is_mapping_file(EXAMPLE.parent / "process.yml")
    assert not is_mapping_file(EXAMPLE.parent / "deals.csv")
    (tmp_path / "bad.yml").write_text("tables: [", encoding="utf-8")
    assert not is_mapping_file(tmp_path / "bad.yml")
    assert not is_mapping_file(tmp_path)


BROKEN_MAPPING = "tables:\n  opportunities:\n    source: deals.csv\n   columns: {id: Id\n"  # line 4 indented wrong


@pytest.mark.parametrize("suffix", [".yml", ".yaml"])
def test_a_mapping_file_that_is_not_valid_yaml_gives_the_parsers_error_not_not_a_data_source(tmp_path, suffix):
    from salesforecast.io import load

    path = tmp_path / f"crm{suffix}"
    path.write_text(BROKEN_MAPPING, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML")
    assert "line 4, column 4" in message and "expected <block end>" in message
    assert "not a data source" not in message
    assert info.value.file == str(path)


def test_a_valid_yaml_file_that_is_no_mapping_is_still_not_a_data_source():
    from salesforecast.io import load

    with pytest.raises(DataFileError, match="not a data source") as info:
        load(EXAMPLE.parent / "process.yml")
    assert not isinstance(info.value, MappingError)


def test_blank_and_malformed_lines_are_quarantined_not_filled_by_constants(tmp_path):
    deals = DEALS.splitlines(keepends=True)
    deals.insert(2, ";;;;;;;;;;\r\n")  # a blank record between D1 and D2
    deals.append("D7;ann;06.02.2024;Prospecting;100;31.05.2024;nein;x;;;;extra\r\n")  # one field too many
    data = load_mapping(write_export(tmp_path, deals="".join(deals)))
    q = data.quarantine.set_index("row")["reason"]
    assert q[2] == "empty row"
    assert q[8] == "malformed row"
    assert data.counts.loc["opportunities"].tolist() == [8, 4, 4]
    assert '"extra"' in data.quarantine.set_index("row").loc[8, "original"]


def test_canonical_headers_need_no_columns_and_presence_derives_a_flag(tmp_path):
    write_export(tmp_path)
    (tmp_path / "leads.csv").write_text(
        "Lead ID;Created At;Converted At;Owner\nL1;2024-01-02;2024-01-09;ann\nL2;2024-01-03;;bo\n", encoding="latin-1"
    )
    (tmp_path / "quotas.csv").write_text("Owner;Period;Amount\nann;FY2024Q1;1.000,00\n", encoding="latin-1")
    mapping = MAPPING + (
        "  leads:\n    source: leads.csv\n    derive: {converted: {present: converted_at}}\n  quotas: quotas.csv\n"
    )
    data = load_mapping(write_export(tmp_path, mapping))
    assert data.leads[["lead_id", "converted"]].to_numpy().tolist() == [["L1", True], ["L2", False]]
    assert data.leads["converted_at"].tolist()[0] == pd.Timestamp("2024-01-09")
    assert data.quotas["amount"].tolist() == [1000.0]
    assert data.counts.loc[["leads", "quotas"], "quarantined"].tolist() == [0, 0]


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (
            ("derive: {is_closed: {from: stage}}", "derive: {is_closed: {form: stage}}"),
            "tables.opportunities.derive.is_closed",
            "unknown key 'form' (did you mean 'from'?); allowed keys: from, present",
        ),
        (
            ("  opportunities:", "  oportunities:"),
            "tables.oportunities",
            "unknown table (did you mean 'opportunities'?); canonical tables: opportunities, stage_history",
        ),
        (
            ("source: deals.csv", "source: {file: deals.csv, dayfirst: yes}"),
            "tables.opportunities.source.dayfirst",
            "must be true or false, got 'yes' (str)",
        ),
        (
            ("source: deals.csv", "source: {file: deals.csv, skip_rows: -1}"),
            "tables.opportunities.source.skip_rows",
            "must be >= 0, got -1",
        ),
        (
            ("source: deals.csv", "source: {file: deals.csv, table: x}"),
            "tables.opportunities.source",
            "unknown key 'table'; allowed keys: file, format, sheet, encoding",
        ),
        (
            ("      owner: Besitzer\n", "      owner: [Besitzer]\n"),
            "tables.opportunities.columns.owner",
            "must be a source column name or an expression ({first: ...}, {if: ...}, {lookup: ...}, {value: ...}),"
            " got ['Besitzer']",
        ),
        (
            ("      is_won: {ja", "      is_wn: {ja"),
            "tables.opportunities.values",
            "'is_wn' is not a mapped column of opportunities (mapped: 'opportunity_id',",
        ),
        (
            ('dates: ["%d.%m.%Y %H:%M", "%d.%m.%Y"]', 'dates: ["%d.%m.%Y", [1]]'),
            "defaults.dates[1]",
            "must be a text, got [1]",
        ),
        (
            ("constants: {team: EMEA}", "constants: [team]"),
            "tables.opportunities.constants",
            "must be a mapping, got ['team'] (list)",
        ),
        (("tables:", "tables: []\nx:"), "x", "unknown key; allowed keys: process, defaults, databases, tables"),
    ],
)
def test_schema_messages_name_the_key_path_the_value_and_a_close_word(tmp_path, change, key, message):
    assert change[0] in MAPPING
    err = read_error(tmp_path, MAPPING.replace(*change, 1))
    assert err.key == key
    assert f"crm.yml: {key}: {message}" in str(err)


def test_schema_messages_for_lookups_and_derived_history(tmp_path):
    lookup = "    lookups:\n      - {source: owners.xlsx, key: Owner ID, columns: {team: Team}}\n"
    err = read_error(tmp_path, MAPPING + lookup.replace("key: Owner ID, ", ""))
    assert (
        err.key == "tables.opportunities.lookups[0]"
        and "needs key: (allowed keys: source, key, on, columns, values)" in str(err)
    )
    err = read_error(tmp_path, MAPPING + lookup.replace("team: Team", "owner: Name"))
    assert err.key == "tables.opportunities.lookups[0].columns" and "'owner' is mapped twice" in str(err)
    err = read_error(tmp_path, MAPPING + "  stage_history:\n    derive_from_dates: {created_at: [a]}\n")
    assert err.key == "tables.stage_history.derive_from_dates.created_at"
    assert "must be a stage name or one of ('first_open_stage', 'outcome', 'current_stage'), got ['a']" in str(err)
    err = read_error(tmp_path, MAPPING + "  stage_history: {from_snapshots: snaps/, columns: {}}\n")
    assert "tables.stage_history: from_snapshots builds the whole table from a snapshot store; remove 'columns'" in (
        str(err)
    )
    assert err.table == "stage_history"


def test_mapping_json_schema_describes_the_file():
    from salesforecast.io.mapping import MappingFile

    schema = MappingFile.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["$defs"]["Tables"]["properties"]) == {
        "opportunities",
        "stage_history",
        "leads",
        "forecast_submissions",
        "quotas",
        "activities",
    }
    assert "derive_from_dates" in schema["$defs"]["StageHistoryEntry"]["properties"]
