"""Data shapes derived from a complete generated CRM (salesforecast.datasets.shapes)."""

from __future__ import annotations

import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.datasets.shapes import history_from_dates
from salesforecast.io.mapping import load_mapping
from salesforecast.schema import validate


@pytest.fixture(scope="module")
def small():
    return generate(n_opportunities=300, seed=3, years=1)[0]


def test_history_from_dates_is_what_the_mapping_derives_from_the_same_export(small, tmp_path):
    opps = small.opportunities[
        ["opportunity_id", "owner", "created_at", "stage", "amount", "close_date", "is_closed", "is_won"]
    ]
    opps.to_csv(tmp_path / "deals.csv", index=False)
    (tmp_path / "crm.yml").write_text(
        "tables:\n"
        "  opportunities:\n"
        "    source: deals.csv\n"
        "    columns: {opportunity_id: opportunity_id, owner: owner, created_at: created_at, stage: stage,"
        " amount: amount, close_date: close_date, is_closed: is_closed, is_won: is_won}\n"
        "  stage_history:\n"
        "    derive_from_dates: {created_at: first_open_stage, close_date: outcome}\n",
        encoding="utf-8",
    )
    mapped = load_mapping(tmp_path / "crm.yml").stage_history
    derived = history_from_dates(small).stage_history
    pd.testing.assert_frame_equal(derived, mapped)


def test_history_from_dates_keeps_dates_only_and_validates_unchanged(small):
    derived = history_from_dates(small)
    hist = derived.stage_history
    assert hist[["amount", "close_date", "forecast_category"]].isna().all().all()
    closed = small.opportunities[small.opportunities["is_closed"]]
    assert len(hist) == len(small.opportunities) + len(closed)
    last = hist.groupby("opportunity_id")["stage"].last()
    assert (last[closed["opportunity_id"]].to_numpy() == closed["stage"].to_numpy()).all()
    assert (hist.groupby("opportunity_id")["stage"].first() == "Prospecting").all()
    # the opportunities and other tables are untouched, counts and notes describe the new history
    pd.testing.assert_frame_equal(derived.opportunities, small.opportunities)
    pd.testing.assert_frame_equal(derived.leads, small.leads)
    assert derived.counts.loc["stage_history"].tolist() == [len(hist)] * 2 + [0]
    assert derived.notes[0].startswith("The stage history is minimal")
    # validating it again changes nothing: canonical columns and dtypes
    again = validate(derived.tables, derived.process)
    pd.testing.assert_frame_equal(again.stage_history, hist)


def test_history_from_dates_can_keep_the_stage_a_deal_was_created_in(small):
    recorded = history_from_dates(small, first_stage="recorded").stage_history
    first = small.stage_history.groupby("opportunity_id")["stage"].first()
    got = recorded.groupby("opportunity_id")["stage"].first()
    assert got.equals(first.reindex(got.index))
    assert got.nunique() > 1
    with pytest.raises(ValueError, match="first_stage"):
        history_from_dates(small, first_stage="creation")
