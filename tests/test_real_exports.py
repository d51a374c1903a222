"""What real exports hold, loader side: open deals without close dates, leads without deals, no teams, keep: all,
column expressions (fallback, condition, lookup with key value maps), and the data's latest event.

The two shapes are those of issue 13, built here from small CSVs: a B2B CRM export that keeps each deal's current
state (an engage date, a close date for closed deals only, amounts as close values for won deals and list prices
from a product file otherwise, teams in a side file), and a marketing funnel (leads, and a file of the leads that
closed, keyed by lead id).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from salesforecast import quality
from salesforecast.io import load
from salesforecast.io.mapping import MappingError, import_mapping, load_mapping, read_mapping
from salesforecast.leads import lead_dataset
from salesforecast.schema import read_canonical, validate

REPO = Path(__file__).resolve().parents[1]

PIPELINE = """\
opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value,industry,employees
O1,Ann,GTXPro,Acme,Won,2024-01-05,2024-02-10,1100,retail,120
O2,Bo,MG Special,Beta,Lost,2024-01-07,2024-03-01,0,software,15
O3,Ann,GTX Basic,Acme,Engaging,2024-02-01,,,retail,120
O4,Cy,GTXPro,Gamma,Prospecting,,,,medical,900
O5,Bo,GTX Basic,Beta,Won,2024-02-11,,600,software,15
O6,Cy,MG Special,Gamma,Engaging,2024-02-20,,,medical,900
"""
PRODUCTS = "product,series,sales_price\nGTX Pro,GTX,4821\nGTX Basic,GTX,550\nMG Special,MG,55\n"
TEAMS = "sales_agent,manager,regional_office\nAnn,Dustin,Central\nBo,Melvin,East\nCy,Dustin,Central\n"

B2B = """\
tables:
  opportunities:
    source: sales_pipeline.csv
    keep: all                                   # every column not named below is a feature column
    drop: [account]
    columns:
      opportunity_id: opportunity_id
      owner: sales_agent
      product: product
      stage: deal_stage
      created_at: {first: [engage_date, {value: "2024-01-01"}]}
      close_date: close_date
      amount:
        if: {deal_stage: Won}
        then: close_value
        else: {lookup: {source: products.csv, key: product, column: sales_price, values: {GTXPro: GTX Pro}}}
    lookups:
      - {source: sales_teams.csv, key: sales_agent, columns: {team: manager}}
    values: {stage: {Engaging: Qualification, Won: Closed Won, Lost: Closed Lost}}
    derive: {is_closed: {from: stage}, is_won: {from: stage}}
  stage_history:
    derive_from_dates: {created_at: first_open_stage, engage_date: Qualification, close_date: outcome}
"""


def write_b2b(folder: Path, mapping: str = B2B) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sales_pipeline.csv").write_text(PIPELINE, encoding="utf-8")
    (folder / "products.csv").write_text(PRODUCTS, encoding="utf-8")
    (folder / "sales_teams.csv").write_text(TEAMS, encoding="utf-8")
    (folder / "crm.yml").write_text(mapping, encoding="utf-8")
    return folder / "crm.yml"


LEADS = """\
mql_id,first_contact_date,landing_page_id,origin,device
L1,2024-01-02,p1,organic,mobile
L2,2024-01-05,p2,paid,desktop
L3,2024-02-05,p1,paid,mobile
L4,2024-03-01,p3,social,desktop
"""
# conversions recorded after the last lead was created (2024-03-01); seller_id is known only for converted leads
CLOSED = "mql_id,won_date,seller_id\nL1,2024-02-01,s9\nL3,2024-04-15,s7\n"

FUNNEL = """\
tables:
  leads:
    source: leads.csv
    keep: all
    columns: {lead_id: mql_id, created_at: first_contact_date, lead_source: origin}
    lookups:
      - {source: closed_deals.csv, key: mql_id, columns: {converted_at: won_date}}
    derive: {converted: {present: converted_at}}
"""


def write_funnel(folder: Path, mapping: str = FUNNEL) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leads.csv").write_text(LEADS, encoding="utf-8")
    (folder / "closed_deals.csv").write_text(CLOSED, encoding="utf-8")
    (folder / "crm.yml").write_text(mapping, encoding="utf-8")
    return folder / "crm.yml"


def mapping_error(path: Path) -> MappingError:
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    return err.value


# ---------------------------------------------------------------------------------------------- close dates
def _deals(close_dates: list[str], closed: list[str]) -> dict[str, pd.DataFrame]:
    n = len(close_dates)
    stages = ["Closed Won" if c == "1" else "Prospecting" for c in closed]
    return {
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": [f"D{i}" for i in range(n)],
                "owner": ["ann"] * n,
                "created_at": ["2024-01-02"] * n,
                "stage": stages,
                "amount": ["100"] * n,
                "close_date": close_dates,
                "is_closed": closed,
                "is_won": closed,
            }
        )
    }


def test_open_deals_may_lack_a_close_date_closed_deals_may_not():
    data = validate(_deals(["", "2024-03-01", "", "2024-02-01"], ["0", "0", "1", "1"]))
    assert data.counts.loc["opportunities"].tolist() == [4, 3, 1]
    (row,) = data.quarantine.to_dict(orient="records")
    assert (row["row"], row["reason"], row["column"]) == (3, "closed without close date", "close_date, is_closed")
    opps = data.opportunities.set_index("opportunity_id")
    assert pd.isna(opps.loc["D0", "close_date"]) and not opps.loc["D0", "is_closed"]
    assert str(opps["close_date"].dtype) == "datetime64[us]"
    # a close date that is not a date is still "unparseable date", open or not
    data = validate(_deals(["soon", ""], ["0", "0"]))
    assert data.quarantine["reason"].tolist() == ["unparseable date"]


def test_the_close_date_column_itself_is_still_required():
    tables = _deals(["2024-03-01"], ["0"])
    tables["opportunities"] = tables["opportunities"].drop(columns="close_date")
    with pytest.raises(Exception, match="has no column 'close_date'"):
        validate(tables)


def test_quality_counts_open_deals_without_a_close_date():
    data = validate(_deals(["", "2024-03-01", "", "2024-06-01", "2024-02-01"], ["0", "0", "0", "0", "1"]))
    out = quality.open_deal_close_dates(data, as_of="2024-04-01").set_index("measure")
    assert out["deals"].to_dict() == {"open deals": 4, "without a close date": 2, "close date passed": 1}
    assert out["pct_of_open"].tolist() == pytest.approx([100.0, 50.0, 25.0])
    assert out["definition"].str.len().gt(40).all()
    cov = quality.date_coverage(data, as_of="2024-04-01").set_index("column")
    assert cov.loc["close_date", ["with_value", "missing"]].tolist() == [3, 2]


# ---------------------------------------------------------------------------------------------- the B2B shape
def test_b2b_current_state_export_maps_with_expressions_a_side_teams_file_and_keep_all(tmp_path):
    data = load_mapping(write_b2b(tmp_path))
    raw = pd.read_csv(tmp_path / "sales_pipeline.csv")
    assert data.counts.loc["opportunities"].tolist() == [6, 5, 1]  # O5: won without a close date
    (q,) = data.quarantine.to_dict(orient="records")
    assert (q["row"], q["reason"]) == (5, "closed without close date")
    opps = data.opportunities.set_index("opportunity_id")
    # amount: the close value of won deals, else the product's list price (GTXPro written GTX Pro in products.csv)
    assert opps["amount"].to_dict() == {"O1": 1100.0, "O2": 55.0, "O3": 550.0, "O4": 4821.0, "O6": 55.0}
    won = raw[(raw["deal_stage"] == "Won") & raw["close_date"].notna()]
    assert opps.loc[opps["is_won"], "amount"].sum() == won["close_value"].sum()
    # created_at falls back to a constant where the deal was never engaged
    assert opps.loc["O4", "created_at"] == pd.Timestamp("2024-01-01")
    assert opps.loc["O3", "created_at"] == pd.Timestamp("2024-02-01")
    assert opps["team"].to_dict() == {"O1": "Dustin", "O2": "Melvin", "O3": "Dustin", "O4": "Dustin", "O6": "Dustin"}
    # open deals keep no close date
    assert opps.loc[["O3", "O4", "O6"], "close_date"].isna().all()
    # keep: all keeps every column the mapping does not use, typed; drop leaves one out; used columns are not kept
    extras = [
        c
        for c in data.opportunities.columns
        if c
        not in {
            "opportunity_id",
            "owner",
            "created_at",
            "stage",
            "amount",
            "close_date",
            "is_closed",
            "is_won",
            "team",
            "product",
        }
    ]
    assert extras == ["industry", "employees"]
    assert opps["employees"].dtype == "float64" and opps.loc["O4", "industry"] == "medical"
    # the history derived from the dates: a deal created the moment it was engaged (created_at is the engage
    # date) enters Qualification then, with no visit of no time to Prospecting; closed deals reach their outcome
    hist = data.stage_history
    assert hist[hist["opportunity_id"] == "O1"]["stage"].tolist() == ["Qualification", "Closed Won"]
    assert not hist.duplicated(["opportunity_id", "changed_at"]).any()
    assert any("had two of these stages dated the same moment: they enter the later one" in n for n in data.notes)
    # an amount by condition on the outcome, with no past amounts recorded: the load says it can give outcomes away
    (said,) = [n for n in data.notes if "The amount is a value by condition on 'deal_stage'" in n]
    assert "one later won already shows the value it was won at" in said
    assert hist[hist["opportunity_id"] == "O4"]["stage"].tolist() == ["Prospecting"]
    cd = quality.open_deal_close_dates(data).set_index("measure")["deals"]
    assert cd["open deals"] == 3 and cd["without a close date"] == 3


def test_kept_columns_reach_the_lead_scoring_input(tmp_path):
    data = load_mapping(write_funnel(tmp_path))
    assert {"landing_page_id", "device"} <= set(data.leads.columns)
    assert "mql_id" not in data.leads.columns and "origin" not in data.leads.columns  # mapped: not kept again
    ds = lead_dataset(data, as_of="2024-06-30", maturity_days=30)
    assert {"landing_page_id", "device", "lead_source"} <= set(ds.X.columns)


# ---------------------------------------------------------------------------------------------- leads only
def test_a_mapping_of_leads_alone_loads_and_latest_is_the_last_conversion(tmp_path):
    data = load(write_funnel(tmp_path))
    assert data.counts["read"].to_dict() == {
        "opportunities": 0,
        "stage_history": 0,
        "leads": 4,
        "forecast_submissions": 0,
        "quotas": 0,
        "activities": 0,
    }
    assert data.opportunities.empty and "close_date" in data.opportunities.columns
    assert data.leads["converted"].tolist() == [True, False, True, False]
    # the last lead was created on 2024-03-01; a conversion was recorded on 2024-04-15
    assert data.as_of == pd.Timestamp("2024-04-15")
    assert quality.report_as_of(data) == pd.Timestamp("2024-04-15")
    assert any(n.startswith("No opportunities:") for n in data.notes)
    # a lead missing from the closed-deals file did not convert: that is what the lookup says, not a problem
    assert not any("not found" in n for n in data.notes)
    # the canonical folder an import writes reads back (empty opportunities, leads)
    out = tmp_path / "canonical"
    import_mapping(tmp_path / "crm.yml", out)
    again = read_canonical(out)
    assert again.counts.loc["leads"].tolist() == [4, 4, 0] and again.opportunities.empty
    assert again.as_of == pd.Timestamp("2024-04-15")


def test_a_canonical_folder_of_leads_alone_loads(tmp_path):
    (tmp_path / "leads.csv").write_text(
        "lead_id,created_at,converted,converted_at\nA,2024-01-01,1,2024-05-02\nB,2024-02-01,0,\n", encoding="utf-8"
    )
    data = read_canonical(tmp_path)
    assert data.counts.loc["leads", "accepted"] == 2 and len(data.opportunities) == 0
    assert data.as_of == pd.Timestamp("2024-05-02")


def test_latest_is_the_last_event_of_any_table():
    tables = _deals(["2024-03-01", "2024-05-20"], ["0", "1"])
    assert validate(tables).as_of == pd.Timestamp("2024-05-20")  # a close; an open deal's expected date is none
    tables["forecast_submissions"] = pd.DataFrame(
        {
            "submitted_at": ["2024-06-03T09:00:00"],
            "owner": ["ann"],
            "period": ["FY2024Q2"],
            "category": ["commit"],
            "amount": ["10"],
        }
    )
    assert validate(tables).as_of == pd.Timestamp("2024-06-03 09:00")
    tables["opportunities"].loc[0, "close_date"] = "2030-01-01"  # an open deal expected far ahead: not an event
    assert validate(tables).as_of == pd.Timestamp("2024-06-03 09:00")


def test_data_quality_report_renders_on_leads_alone(tmp_path, capsys):
    from salesforecast.reports import run_reports

    mapping = write_funnel(tmp_path / "funnel")
    config = tmp_path / "reports.yml"
    config.write_text(
        f"notebooks: {json.dumps(str(REPO / 'notebooks'))}\nreports:\n  - notebook: 01_data_quality\n",
        encoding="utf-8",
    )
    result = run_reports(config, tmp_path / "out", params={"source": str(mapping)}, jobs=1)
    assert result.exit_code == 0, capsys.readouterr().out
    page = result.results[0].html.read_text(encoding="utf-8")
    assert "No opportunities:" in page and "Close dates of open deals" in page
    assert "2024-04-15" in page  # the report date is the last conversion


# ---------------------------------------------------------------------------------------------- no team
def test_no_team_anywhere_loads_with_the_column_absent(tmp_path):
    folder = tmp_path / "crm"
    folder.mkdir()
    pd.DataFrame(_deals(["2024-03-01", ""], ["1", "0"])["opportunities"]).to_csv(
        folder / "opportunities.csv", index=False
    )
    data = read_canonical(folder)
    assert "team" not in data.opportunities.columns and data.counts.loc["opportunities", "accepted"] == 2
    assert data.filter(team="", owner="ann") is not None
    with pytest.raises(KeyError, match="no 'team' column"):
        data.filter(team="EMEA")
    for measure in (quality.table_counts, quality.history_coverage, quality.open_deal_close_dates):
        assert len(measure(data))


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        (
            'created_at: {first: [engage_date, {value: "2024-01-01"}]}',
            "created_at: {first: [engage_date]}",
            "tables.opportunities.columns.created_at.first",
            "must be a list of two or more columns or expressions",
        ),
        (
            'created_at: {first: [engage_date, {value: "2024-01-01"}]}',
            "created_at: {frist: [engage_date, close_date]}",
            "tables.opportunities.columns.created_at",
            "(did you mean 'first'?)",
        ),
        (
            'created_at: {first: [engage_date, {value: "2024-01-01"}]}',
            "created_at: {first: [engage_date, {vaule: 1}]}",
            "tables.opportunities.columns.created_at.first[1]",
            "(did you mean 'value'?)",
        ),
        (
            "if: {deal_stage: Won}",
            "if: {deal_stage: Won, close_value: 1}",
            "tables.opportunities.columns.amount.if",
            "must be one source column and the value(s) it must hold",
        ),
        (
            "key: product, column: sales_price,",
            "key: product,",
            "tables.opportunities.columns.amount.else.lookup",
            "needs column:",
        ),
        (
            "source: products.csv, key",
            "source: {file: products.csv, delimter: ';'}, key",
            "tables.opportunities.columns.amount.else.lookup.source.delimter",
            "unknown key (did you mean 'delimiter'?)",
        ),
        (
            "values: {GTXPro: GTX Pro}",
            "values: [GTXPro]",
            "tables.opportunities.columns.amount.else.lookup.values",
            "must be a mapping of this table's key values",
        ),
    ],
)
def test_expression_mistakes_name_the_key(tmp_path, old, new, key, message):
    assert old in B2B
    path = write_b2b(tmp_path, B2B.replace(old, new, 1))
    with pytest.raises(MappingError) as err:
        read_mapping(path)
    assert err.value.key == key, str(err.value)
    assert f"crm.yml: {key}: " in str(err.value) and message in str(err.value)


def test_columns_an_expression_reads_must_be_in_the_source(tmp_path):
    err = mapping_error(write_b2b(tmp_path, B2B.replace("then: close_value", "then: close_val")))
    assert err.key == "tables.opportunities.columns.amount.then"
    assert "'amount' reads 'close_val' (did you mean 'close_value'?), which sales_pipeline.csv does not have" in str(
        err
    )
    err = mapping_error(write_b2b(tmp_path, B2B.replace("if: {deal_stage: Won}", "if: {stage: Won}")))
    assert err.key == "tables.opportunities.columns.amount.if"
    err = mapping_error(write_b2b(tmp_path, B2B.replace("column: sales_price", "column: price")))
    assert err.key == "tables.opportunities.columns.amount.else.lookup.columns"
    assert "products.csv does not have" in str(err)


def test_keep_and_drop_mistakes_name_the_key(tmp_path):
    err = mapping_error(write_b2b(tmp_path, B2B.replace("drop: [account]", "drop: [acount]")))
    assert err.key == "tables.opportunities.drop" and "'acount'" in str(err) and "'account'" in str(err)
    with pytest.raises(MappingError) as exc:
        read_mapping(write_b2b(tmp_path, B2B.replace("    keep: all ", "    # keep: all ")))
    assert exc.value.key == "tables.opportunities.drop" and "add keep: all" in str(exc.value)
    with pytest.raises(MappingError) as exc:
        read_mapping(write_b2b(tmp_path, B2B.replace("keep: all", "keep: everything")))
    assert exc.value.key == "tables.opportunities.keep"
    mapping = B2B.replace("drop: [account]", "drop: [account]\n    numbers: [employes]")
    err = mapping_error(write_b2b(tmp_path, mapping))
    assert err.key == "tables.opportunities.numbers" and "(did you mean 'employees'?)" in str(err)


def test_keep_all_does_not_take_a_canonical_name_for_a_feature(tmp_path):
    pipeline = PIPELINE.replace("industry,employees", "industry,Region").replace("retail,120", "retail,north")
    path = write_b2b(tmp_path)
    (tmp_path / "sales_pipeline.csv").write_text(pipeline, encoding="utf-8")
    data = load_mapping(path)
    assert "Region" not in data.opportunities.columns and "region" not in data.opportunities.columns
    assert any("keep: all leaves out 'Region'" in n for n in data.notes)


def test_drop_applies_when_the_source_has_canonical_headers(tmp_path):
    """Without columns:, every column is kept already; keep: all with drop: still leaves the dropped ones out."""
    (tmp_path / "leads.csv").write_text(
        "lead_id,created_at,converted,channel,closer_id\nA,2024-01-01,1,web,s1\nB,2024-02-01,0,mail,\n",
        encoding="utf-8",
    )
    path = tmp_path / "crm.yml"
    path.write_text("tables:\n  leads: {source: leads.csv, keep: all, drop: [closer_id]}\n", encoding="utf-8")
    data = load_mapping(path)
    assert "closer_id" not in data.leads.columns and "channel" in data.leads.columns
    path.write_text("tables:\n  leads: {source: leads.csv, keep: all, drop: [closer]}\n", encoding="utf-8")
    assert mapping_error(path).key == "tables.leads.drop"
