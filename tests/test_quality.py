"""The data-quality measures (salesforecast.quality) and the data-quality notebook."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from salesforecast import quality
from salesforecast.schema import REASONS, validate

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "01_data_quality.ipynb"


def _records(df: pd.DataFrame, columns: list[str]) -> list[list]:
    return [
        [None if (isinstance(v, float) and math.isnan(v)) else v for v in row] for row in df[columns].values.tolist()
    ]


def test_table_counts(crm_data):
    out = quality.table_counts(crm_data)
    assert list(out.columns) == ["table", "read", "accepted", "quarantined", "pct_quarantined"]
    assert _records(out, ["table", "read", "accepted", "quarantined"]) == [
        ["opportunities", 10, 5, 5],
        ["stage_history", 11, 8, 3],
        ["leads", 4, 3, 1],
        ["forecast_submissions", 0, 0, 0],
        ["quotas", 0, 0, 0],
        ["activities", 0, 0, 0],
    ]
    pct = out["pct_quarantined"].tolist()
    assert pct[:3] == pytest.approx([50.0, 300 / 11, 25.0])
    assert math.isnan(pct[3]) and math.isnan(pct[4])
    assert (out["read"] == out["accepted"] + out["quarantined"]).all()


def test_quarantine_by_reason(crm_data):
    out = quality.quarantine_by_reason(crm_data)
    assert _records(out, ["table", "reason", "rows"]) == [
        ["opportunities", "unknown stage", 2],
        ["opportunities", "unparseable date", 1],
        ["opportunities", "negative amount", 1],
        ["opportunities", "duplicate id", 1],
        ["stage_history", "unparseable date", 1],
        ["stage_history", "unknown stage", 1],
        ["stage_history", "unknown opportunity", 1],
        ["leads", "conversion before creation", 1],
    ]
    assert out["pct_of_table"].tolist() == pytest.approx([20.0, 10.0, 10.0, 10.0, 100 / 11, 100 / 11, 100 / 11, 25.0])
    assert out["definition"].str.len().gt(10).all()


def test_reason_definitions_cover_every_schema_reason():
    assert set(quality.REASON_DEFINITIONS) == set(REASONS)


def test_quarantine_examples_keep_original_values(crm_data):
    out = quality.quarantine_examples(crm_data)
    assert list(out.columns) == ["table", "reason", "row", "column", "value", "original"]
    assert _records(out, ["table", "reason", "row", "column", "value"]) == [
        ["opportunities", "unknown stage", 5, "stage", "Discovery"],
        ["opportunities", "unknown stage", 9, "stage", "Demo"],
        ["opportunities", "unparseable date", 6, "created_at", "2024-13-01"],
        ["opportunities", "negative amount", 7, "amount", "-5"],
        ["opportunities", "duplicate id", 8, "opportunity_id", "O1"],
        ["stage_history", "unparseable date", 10, "changed_at", "yesterday"],
        ["stage_history", "unknown stage", 7, "stage", "Discovery"],
        ["stage_history", "unknown opportunity", 8, "opportunity_id", "OX"],
        ["leads", "conversion before creation", 3, "converted_at, created_at", "2024-01-05 / 2024-01-10"],
    ]
    assert out.loc[1, "original"] == (
        "opportunity_id=O8; owner=dan; created_at=2024-03-05; stage=Demo; amount=900; close_date=2024-06-30;"
        " is_closed=false; is_won=false; team=<script>alert(1)</script>"
    )
    assert out.loc[8, "original"].endswith("converted_at=2024-01-05; opportunity_id=")
    first_only = quality.quarantine_examples(crm_data, n=1)
    assert first_only[["table", "reason"]].value_counts().max() == 1
    assert first_only["row"].tolist()[:2] == [5, 6]
    with pytest.raises(ValueError, match="n must be"):
        quality.quarantine_examples(crm_data, n=0)


def test_date_coverage(crm_data):
    out = quality.date_coverage(crm_data)
    assert _records(out, ["table", "column", "with_value", "missing", "after_as_of"]) == [
        ["opportunities", "created_at", 5, 0, 0],
        ["opportunities", "close_date", 5, 0, 3],
        ["stage_history", "changed_at", 8, 0, 0],
        ["stage_history", "close_date", 0, 8, 0],
        ["leads", "created_at", 3, 0, 0],
        ["leads", "converted_at", 1, 2, 0],
    ]
    ts = pd.Timestamp
    assert out["first"].tolist()[:3] == [ts("2024-01-05"), ts("2024-02-15"), ts("2024-01-05")]
    assert out["last"].tolist()[:3] == [ts("2024-03-10"), ts("2024-06-30"), ts("2024-03-12")]
    assert pd.isna(out.loc[3, "first"]) and pd.isna(out.loc[3, "last"])
    assert out["pct_missing"].tolist() == pytest.approx([0, 0, 0, 100, 0, 200 / 3])
    # an earlier as-of date: values on a later day than 2024-02-01 (O3, created that day, is not after)
    early = quality.date_coverage(crm_data, as_of="2024-02-01")
    assert early["after_as_of"].tolist() == [2, 5, 3, 0, 0, 0]


def test_stage_conformance(crm_data):
    out = quality.stage_conformance(crm_data)
    used = out[out["rows"] > 0]
    assert _records(used, ["stage", "canonical_stage", "kind", "opportunities", "stage_history"]) == [
        ["Prospecting", "Prospecting", "open", 4, 5],
        ["Qualification", "Qualification", "open", 1, 1],
        ["Needs Analysis", "Needs Analysis", "open", 0, 1],
        ["Negotiation/Review", "Negotiation/Review", "open", 1, 1],
        ["Closed Won", "Closed Won", "won", 1, 1],
        ["Closed Lost", "Closed Lost", "lost", 1, 1],
        ["Discovery", "not in process map", None, 1, 1],
        ["Demo", "not in process map", None, 1, 0],
    ]
    # every stage of the map is listed, in process order, also the unused ones
    assert out["stage"].tolist()[:10] == crm_data.process.stage_names
    assert out.loc[out["stage"] == "Value Proposition", "rows"].item() == 0
    assert out.loc[out["stage"] == "Negotiation/Review", "probability"].item() == pytest.approx(0.9)
    assert out.loc[out["stage"] == "Demo", "probability"].isna().all()
    assert out["rows"].sum() == 21  # 10 opportunities + 11 stage changes, accepted or quarantined
    assert out["pct_of_rows"].sum() == pytest.approx(100.0)


def test_stage_map_share(crm_data):
    out = quality.stage_map_share(crm_data)
    assert _records(out, ["table", "rows", "in_map", "not_in_map"]) == [
        ["opportunities", 10, 8, 2],
        ["stage_history", 11, 10, 1],
    ]
    assert out["pct_in_map"].tolist() == pytest.approx([80.0, 1000 / 11])


def test_history_coverage(crm_data):
    out = quality.history_coverage(crm_data)
    assert _records(out, ["measure", "opportunities"]) == [
        ["opportunities", 5],
        ["with stage history", 4],
        ["without stage history", 1],
        ["one change only", 1],
        ["single-timestamp history", 1],
        ["last change differs from current stage", 1],
    ]
    assert out["pct_of_opportunities"].tolist() == pytest.approx([100, 80, 20, 20, 20, 20])
    assert out["definition"].str.len().gt(10).all()


def _clean_data():
    return validate(
        {
            "opportunities": pd.DataFrame(
                {
                    "opportunity_id": ["A", "B"],
                    "owner": ["ann", "bo"],
                    "created_at": ["2024-01-02", "2024-01-05"],
                    "stage": ["Prospecting", "Closed Won"],
                    "amount": ["100", "50"],
                    "close_date": ["2024-03-01", "2024-02-01"],
                    "is_closed": ["0", "1"],
                    "is_won": ["0", "1"],
                }
            )
        }
    )


def test_clean_data_without_optional_tables():
    data = _clean_data()
    assert quality.quarantine_by_reason(data).empty
    examples = quality.quarantine_examples(data)
    assert examples.empty and list(examples.columns) == ["table", "reason", "row", "column", "value", "original"]
    assert quality.date_coverage(data)["table"].tolist() == ["opportunities", "opportunities"]
    assert quality.stage_map_share(data)["rows"].tolist() == [2, 0]
    assert math.isnan(quality.stage_map_share(data)["pct_in_map"].iloc[1])
    hist = quality.history_coverage(data).set_index("measure")["opportunities"]
    assert hist["without stage history"] == 2
    assert hist["last change differs from current stage"] == 0


def test_report_as_of(crm_data):
    assert quality.report_as_of(crm_data) == pd.Timestamp("2024-03-12")
    assert quality.report_as_of(crm_data, "2024-06-30") == pd.Timestamp("2024-06-30")
    assert quality.report_as_of(crm_data, "2024-06-30T02:00:00+02:00") == pd.Timestamp("2024-06-30")
    with pytest.raises(ValueError, match="as_of must be 'latest' or an ISO date"):
        quality.report_as_of(crm_data, "last tuesday")


# ---------------------------------------------------------------------------------------------- the notebook
def test_notebook_renders_on_a_canonical_folder(crm_folder, tmp_path, capsys, monkeypatch):
    from salesforecast.reports import run_reports

    config = tmp_path / "reports.yml"
    config.write_text(
        f"notebooks: {json.dumps(str(REPO / 'notebooks'))}\nreports:\n  - notebook: 01_data_quality\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(crm_folder.parent)  # a relative source, as `-p source=./crm` gives it
    result = run_reports(config, tmp_path / "out", params={"source": f"./{crm_folder.name}"}, jobs=1)
    assert result.exit_code == 0, capsys.readouterr().out
    (res,) = result.results
    assert res.html.name == "01_data_quality__crm.html"
    page = res.html.read_text(encoding="utf-8")
    for heading in (
        "Rows read, accepted and quarantined",
        "Quarantine by reason",
        "Date coverage",
        "Stage names and the process map",
        "Stage history coverage",
    ):
        assert heading in page
    assert "not in process map" in page and "single-timestamp history" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert "quality.table_counts" not in page  # no code in the report
    assert "<script src=" not in page
