"""HubSpot importer: a HubSpot-shaped deals export written from generate(), several pipelines, and bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.io.hubspot import hubspot_process, is_hubspot_export, read_hubspot
from salesforecast.schema import TABLES, DataFileError

_FORECAST_LABEL = {
    "omitted": "Not forecasted",
    "pipeline": "Pipeline",
    "best_case": "Best case",
    "commit": "Commit",
    "closed": "Closed won",
}


def first_entries(history: pd.DataFrame) -> pd.DataFrame:
    """Each deal's visits (rows where the stage changes), first visit per stage, with the time it was left."""
    h = history.sort_values(["opportunity_id", "changed_at"], kind="stable").reset_index(drop=True)
    new_visit = h["stage"] != h.groupby("opportunity_id")["stage"].shift()
    visits = h.loc[new_visit, ["opportunity_id", "changed_at", "stage"]].copy()
    visits["exited_at"] = visits.groupby("opportunity_id")["changed_at"].shift(-1)
    return visits.drop_duplicates(["opportunity_id", "stage"]).reset_index(drop=True)


def hubspot_export(data, pipeline: str = "Sales Pipeline", first_id: int = 10_000_000) -> tuple[pd.DataFrame, dict]:
    """A HubSpot deals export (as text) of generated data, with 'Date entered/exited <stage> (<pipeline>)' columns.

    Returns the frame and the map from generated opportunity ids to HubSpot record ids.
    """
    label = {s.name: s.aliases[0] for s in data.process.stages}
    o = data.opportunities
    ids = {opp: str(first_id + i) for i, opp in enumerate(o["opportunity_id"])}
    minutes = "%Y-%m-%d %H:%M"
    frame = pd.DataFrame(
        {
            "Record ID": o["opportunity_id"].map(ids),
            "Deal Name": "Deal " + o["opportunity_id"],
            "Deal Stage": o["stage"].map(label),
            "Amount": o["amount"].map(lambda v: np.format_float_positional(v, trim="-")),
            "Close Date": o["close_date"].dt.strftime("%Y-%m-%d"),
            "Create Date": o["created_at"].dt.strftime(minutes),
            "Deal owner": o["owner"],
            "Pipeline": pipeline,
            "HubSpot Team": o["team"],
            "Forecast category": o["forecast_category"].map(_FORECAST_LABEL),
        }
    )
    visits = first_entries(data.stage_history)
    entered = visits.pivot(index="opportunity_id", columns="stage", values="changed_at")
    exited = visits.pivot(index="opportunity_id", columns="stage", values="exited_at")
    for stage in data.process.stage_names:
        for what, table in (("entered", entered), ("exited", exited)):
            values = table[stage] if stage in table.columns else pd.Series(dtype="datetime64[us]")
            column = values.reindex(o["opportunity_id"]).dt.strftime(minutes).fillna("").to_numpy()
            frame[f"Date {what} {label[stage]} ({pipeline})"] = column
    return frame.astype("str"), ids


def write(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    frame.to_csv(path, index=False, lineterminator="\n", **kwargs)
    return path


def assert_counts_add_up(data) -> None:
    c = data.counts
    assert (c["read"] == c["accepted"] + c["quarantined"]).all()
    for name in TABLES:
        assert len(data.tables[name]) == c.loc[name, "accepted"]


def expected_history(data, ids: dict) -> pd.DataFrame:
    h = first_entries(data.stage_history)[["opportunity_id", "changed_at", "stage"]]
    return h.assign(opportunity_id=h["opportunity_id"].map(ids).astype("str"))


def sort(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def sales():
    return generate(n_opportunities=300, seed=5, process=hubspot_process())[0]


@pytest.fixture(scope="module")
def renewals():
    return generate(n_opportunities=60, seed=6, process=hubspot_process())[0]


@pytest.fixture(scope="module")
def export(sales, tmp_path_factory):
    frame, ids = hubspot_export(sales)
    return write(frame, tmp_path_factory.mktemp("hubspot") / "deals.csv"), frame, ids


# ---------------------------------------------------------------------------------------------- process
def test_hubspot_process():
    p = hubspot_process()
    assert p.open_stages == [
        "appointmentscheduled",
        "qualifiedtobuy",
        "presentationscheduled",
        "decisionmakerboughtin",
        "contractsent",
    ]
    assert p.probability.tolist() == [0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 0.0]
    assert (p.won_stage, p.lost_stage) == ("closedwon", "closedlost")
    assert p.canonical_stage("qualified to buy") == "qualifiedtobuy"
    assert p.canonical_stage("Closed Lost") == "closedlost"


# ---------------------------------------------------------------------------------------------- a clean export
def test_counts_and_opportunities(sales, export):
    path, _, ids = export
    data = read_hubspot(path)
    assert_counts_add_up(data)
    assert data.counts.loc["opportunities"].tolist() == [300, 300, 0]
    assert data.quarantine.empty
    o = sales.opportunities.assign(opportunity_id=sales.opportunities["opportunity_id"].map(ids).astype("str"))
    cols = ["opportunity_id", "owner", "created_at", "stage", "amount", "close_date", "is_closed", "is_won"]
    cols += ["team", "forecast_category"]
    pd.testing.assert_frame_equal(sort(data.opportunities[cols]), sort(o[cols]))
    assert set(data.opportunities["pipeline"]) == {"Sales Pipeline"}
    assert data.opportunities["opportunity_name"].iloc[0].startswith("Deal OPP-")


def test_history_is_the_first_entry_per_stage(sales, export):
    path, _, ids = export
    data = read_hubspot(path)
    expected = expected_history(sales, ids)
    assert data.counts.loc["stage_history"].tolist() == [len(expected), len(expected), 0]
    got = data.stage_history[["opportunity_id", "changed_at", "stage"]]
    pd.testing.assert_frame_equal(sort(got), sort(expected))
    assert data.stage_history["amount"].isna().all()
    assert any("one row per stage a deal entered" in n for n in data.notes)


def test_history_is_in_time_order_per_deal(export):
    data = read_hubspot(export[0])
    h = data.stage_history
    assert h.groupby("opportunity_id", sort=False)["changed_at"].apply(lambda s: s.is_monotonic_increasing).all()
    order = hubspot_process().order
    first = h.groupby("opportunity_id", sort=False).head(1)
    assert (first["stage"].map(order) < order["closedwon"]).all()  # every deal starts in an open stage


def test_labels_or_internal_ids_and_stage_suffix(tmp_path, export):
    _, frame, _ = export
    f = frame.head(20).copy()
    f.loc[:4, "Deal Stage"] = f.loc[:4, "Deal Stage"] + " (Sales Pipeline)"
    ids = {s.aliases[0]: s.name for s in hubspot_process().stages}
    f.loc[5:9, "Deal Stage"] = f.loc[5:9, "Deal Stage"].map(ids)
    data = read_hubspot(write(f, tmp_path / "d.csv"))
    assert data.counts.loc["opportunities"].tolist() == [20, 20, 0]


def test_unknown_stage_labels_are_quarantined(tmp_path, sales, export):
    _, frame, ids = export
    f = frame.copy()
    f.loc[:2, "Deal Stage"] = "Demo Booked"
    f["Date entered Demo Booked (Sales Pipeline)"] = ""
    f.loc[:4, "Date entered Demo Booked (Sales Pipeline)"] = "2026-06-01 10:00"
    data = read_hubspot(write(f, tmp_path / "d.csv"))
    assert_counts_add_up(data)
    q = data.quarantine
    opp_q = q[q["table"] == "opportunities"]
    assert opp_q["reason"].tolist() == ["unknown stage"] * 3
    assert opp_q["value"].tolist() == ["Demo Booked"] * 3
    hist_q = q[q["table"] == "stage_history"]
    assert (hist_q["reason"] == "unknown stage").sum() == 5
    lost = set(f.loc[:2, "Record ID"])
    n_expected = len(expected_history(sales, ids))
    n_of_lost = int(expected_history(sales, ids)["opportunity_id"].isin(lost).sum())
    assert (hist_q["reason"] == "opportunity quarantined").sum() == n_of_lost
    assert data.counts.loc["stage_history"].tolist() == [n_expected + 5, n_expected - n_of_lost, n_of_lost + 5]
    assert any("'Demo Booked' (3)" in n for n in data.notes)


def test_several_pipelines(tmp_path, sales, renewals, export):
    _, frame, sales_ids = export
    other, renewal_ids = hubspot_export(renewals, pipeline="Renewals", first_id=20_000_000)
    both = pd.concat([frame, other], ignore_index=True).fillna("")
    path = write(both.sample(frac=1.0, random_state=0), tmp_path / "all.csv")
    with pytest.raises(DataFileError, match="2 pipelines.*'Sales Pipeline' \\(300 deals\\).*pipeline=") as err:
        read_hubspot(path)
    assert err.value.column == "Pipeline"
    with pytest.raises(DataFileError, match="no deal is in pipeline 'Upsell'"):
        read_hubspot(path, pipeline="Upsell")

    data = read_hubspot(path, pipeline="sales pipeline")
    assert data.counts.loc["opportunities"].tolist() == [300, 300, 0]
    pd.testing.assert_frame_equal(
        sort(data.stage_history[["opportunity_id", "changed_at", "stage"]]), sort(expected_history(sales, sales_ids))
    )
    assert any("60 deal(s) of other pipelines ('Renewals': 60) were not read" in n for n in data.notes)

    data = read_hubspot(path, pipeline="Renewals")
    assert data.counts.loc["opportunities"].tolist() == [60, 60, 0]
    pd.testing.assert_frame_equal(
        sort(data.stage_history[["opportunity_id", "changed_at", "stage"]]),
        sort(expected_history(renewals, renewal_ids)),
    )


def test_xlsx_export(tmp_path, export):
    path, frame, _ = export
    small = frame.head(30)
    xlsx = tmp_path / "deals.xlsx"
    small.to_excel(xlsx, index=False)
    from_xlsx = read_hubspot(xlsx)
    from_csv = read_hubspot(write(small, tmp_path / "deals.csv"))
    assert from_xlsx.counts.loc["opportunities"].tolist() == [30, 30, 0]
    for name in ("opportunities", "stage_history"):
        pd.testing.assert_frame_equal(from_xlsx.tables[name], from_csv.tables[name])
    assert is_hubspot_export(xlsx) and is_hubspot_export(path)


def test_is_hubspot_export(tmp_path):
    assert not is_hubspot_export(tmp_path / "missing.csv")
    other = tmp_path / "other.csv"
    other.write_text("Id,StageName\n1,Prospecting\n", encoding="utf-8")
    assert not is_hubspot_export(other)


def test_timezone_converts_to_utc(tmp_path):
    f = pd.DataFrame(
        {
            "Deal ID": ["1"],
            "Deal Stage": ["Contract Sent"],
            "Amount": ["100"],
            "Close Date": ["2024-07-31"],
            "Create Date": ["2024-07-01 10:00"],
            "Deal Owner": ["Ann"],
            "Date entered Contract Sent (Sales Pipeline)": ["2024-07-01 10:00"],
        }
    )
    path = write(f, tmp_path / "d.csv")
    utc = read_hubspot(path, timezone="Europe/Berlin")
    assert utc.opportunities["created_at"].iloc[0] == pd.Timestamp("2024-07-01 08:00")
    assert utc.stage_history["changed_at"].iloc[0] == pd.Timestamp("2024-07-01 08:00")
    assert read_hubspot(path).opportunities["created_at"].iloc[0] == pd.Timestamp("2024-07-01 10:00")


def test_no_date_entered_columns(tmp_path, export):
    _, frame, _ = export
    f = frame[[c for c in frame.columns if not c.startswith("Date ")]].head(10)
    data = read_hubspot(write(f, tmp_path / "d.csv"))
    assert data.counts.loc["stage_history", "read"] == 0
    assert any("no stage history" in n for n in data.notes)


# ---------------------------------------------------------------------------------------------- bad input
def test_bom_prefixed_utf8(tmp_path, export):
    _, frame, _ = export
    data = read_hubspot(write(frame.head(10), tmp_path / "d.csv", encoding="utf-8-sig"))
    assert data.counts.loc["opportunities"].tolist() == [10, 10, 0]
    assert (tmp_path / "d.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_latin1_owner_names(tmp_path, export):
    _, frame, _ = export
    f = frame.head(10).copy()
    f["Deal owner"] = "Jonas Müller"
    path = write(f, tmp_path / "d.csv", encoding="latin-1")
    data = read_hubspot(path, encoding="latin-1")
    assert set(data.opportunities["owner"]) == {"Jonas Müller"}
    with pytest.raises(DataFileError, match="cannot be decoded as utf-8") as err:
        read_hubspot(path)
    assert err.value.file == str(path)


def test_missing_file_and_required_column(tmp_path, export):
    with pytest.raises(DataFileError, match="no such file"):
        read_hubspot(tmp_path / "missing.csv")
    _, frame, _ = export
    path = write(frame.head(5).drop(columns=["Amount"]), tmp_path / "d.csv")
    with pytest.raises(DataFileError, match="no column 'Amount'") as err:
        read_hubspot(path)
    assert err.value.column == "Amount" and err.value.file == str(path)


def test_unparseable_values_are_quarantined_and_counted(tmp_path, export):
    _, frame, _ = export
    f = frame.head(10).copy()
    f.loc[1, "Create Date"] = "31/12/2023"
    f.loc[2, "Amount"] = "n/a"
    col = next(c for c in f.columns if c.startswith("Date entered") and f.loc[3, c])
    f.loc[3, col] = "soon"
    data = read_hubspot(write(f, tmp_path / "d.csv"))
    assert_counts_add_up(data)
    q = data.quarantine
    opp = q[q["table"] == "opportunities"].set_index("row")["reason"].to_dict()
    assert opp == {2: "unparseable date", 3: "unparseable number"}
    hist = q[q["table"] == "stage_history"]
    assert (hist["reason"] == "unparseable date").sum() == 1
    assert hist.loc[hist["reason"] == "unparseable date", "value"].tolist() == ["soon"]
    assert data.counts.loc["opportunities"].tolist() == [10, 8, 2]


def test_pipeline_columns_without_pipeline_column(tmp_path, export, renewals):
    _, frame, _ = export
    other, _ = hubspot_export(renewals, pipeline="Renewals", first_id=20_000_000)
    both = pd.concat([frame.head(5), other.head(5)], ignore_index=True).fillna("").drop(columns=["Pipeline"])
    path = write(both, tmp_path / "d.csv")
    with pytest.raises(DataFileError, match="name 2 pipelines"):
        read_hubspot(path)
    data = read_hubspot(path, pipeline="Renewals")
    assert data.counts.loc["opportunities", "read"] == 10
    assert set(data.stage_history["opportunity_id"]) == set(other["Record ID"].head(5))
    assert any("no Pipeline column; all deals were read" in n for n in data.notes)
