"""The pipeline review on short CRMs shaped like real exports (about fifteen months of deals): open deals
without an expected close date, reviewed for the quarter after the report date; and an export of won deals only.
Each rendered a silent misleading number or crashed; now each renders and says what limits it."""

import re
from dataclasses import replace

import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.datasets.gallery import write_shape
from salesforecast.reports import DEFAULT_CONFIG, run_reports
from salesforecast.snapshots import known_at
from tests.factories import render_report


def test_pipeline_review_of_next_quarter_on_short_data_without_close_dates(tmp_path):
    full, _ = generate(n_opportunities=800, seed=5, years=2)
    data = known_at(full, pd.Timestamp("2023-01-01") + pd.DateOffset(months=15))  # fifteen months
    opps = data.opportunities
    open_ids = opps.loc[~opps["is_closed"], "opportunity_id"]
    opps["close_date"] = opps["close_date"].where(opps["is_closed"])
    hist = data.stage_history
    hist["close_date"] = hist["close_date"].where(~hist["opportunity_id"].isin(open_ids))
    data = replace(data, opportunities=opps, stage_history=hist)
    as_of = data.as_of
    n_open, amount = len(open_ids), opps.loc[~opps["is_closed"], "amount"].sum()
    assert as_of.quarter == 1 and n_open > 10
    folder = data.to_folder(tmp_path / "crm")
    result = run_reports(
        DEFAULT_CONFIG,
        tmp_path / "out",
        only=["05_pipeline_review"],
        params={"source": str(folder), "period": f"FY{as_of.year}Q2"},
        jobs=1,
    )
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    (page,) = (tmp_path / "out" / "latest").glob("05_pipeline_review*.html")
    text = page.read_text(encoding="utf-8")
    assert "Traceback" not in text
    for heading in ("Attainment and coverage", "How the pipeline moved", "Deals at risk", "Does following the map"):
        assert heading in text, heading
    box = text[text.index('id="read-this-first"') :]
    assert (
        f"{n_open} of the {n_open} deals open at {as_of:%Y-%m-%d} (amount {amount:,.0f}) have no expected close date"
        in box
    )
    assert (
        f"No movement yet.</strong> FY{as_of.year}Q2 starts on {as_of.year}-04-01, after the report date "
        f"({as_of:%Y-%m-%d})" in text
    )


def test_pipeline_review_on_an_export_of_won_deals_only(tmp_path):
    """Only won deals (an export filtered to bookings): the outcome section said deals that skipped a stage "won
    0.0 points less often" with an interval, and the risk list was an empty table; now the box says win rates
    cannot compare, the verdicts say only cycle times do, and a sentence says no deal is open."""
    full, _ = generate(n_opportunities=800, seed=5, years=2)
    data = known_at(full, pd.Timestamp("2023-01-01") + pd.DateOffset(months=15))
    won = data.opportunities.loc[data.opportunities["is_won"]].reset_index(drop=True)
    hist = data.stage_history.loc[data.stage_history["opportunity_id"].isin(won["opportunity_id"])]
    data = replace(data, opportunities=won, stage_history=hist.reset_index(drop=True))
    folder = data.to_folder(tmp_path / "crm")
    text = render_report(tmp_path, "05_pipeline_review", folder)
    assert "Traceback" not in text
    box = text[text.index('id="read-this-first"') :]
    assert f"Every one of the {len(won):,} closed deals was won (no lost deal)" in box
    assert "Every closed deal was won, so win rates cannot tell whether deals that stalled in a stage do better" in text
    assert "points less often" not in text and "points more often" not in text
    assert f"No deal is open at {data.as_of:%Y-%m-%d}, so none is at risk." in text


def test_pipeline_review_without_quotas_says_so_instead_of_a_quota_of_zero(tmp_path):
    """No quotas (the gallery's shape): the table said "quota 0.00 ... remaining quota -162,361.00 ... no quota for
    the period". Now a sentence says the data have no quotas and the quota columns are left out."""
    folder = write_shape("no_quotas", tmp_path / "crm")
    text = render_report(tmp_path, "05_pipeline_review", folder)
    assert "Traceback" not in text
    assert re.search(r"The data have no quotas for FY\d{4}Q\d, so neither attainment nor coverage", text)
    headings = set(re.findall(r'<th class="col_heading[^"]*"[^>]*>([^<]*)</th>', text))
    assert {"closed won", "open pipeline"} <= headings
    assert not headings & {"quota", "left to quota", "attainment", "coverage", "weighted coverage", "note"}
    assert "no quota for the period" not in text and "quota - closed_won" not in text


def test_pipeline_review_of_a_period_without_deals_says_so_instead_of_empty_tables(tmp_path):
    """A period before the data begin: no deal, no quota. The attainment table had no row and the waterfall chart
    was all zeros; now two sentences say there is nothing to attain or cover and no movement to show."""
    result = run_reports(
        DEFAULT_CONFIG,
        tmp_path / "out",
        only=["05_pipeline_review"],
        params={"source": "sample", "period": "FY2020Q1"},
        jobs=1,
    )
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    (page,) = (tmp_path / "out" / "latest").glob("05_pipeline_review*.html")
    text = page.read_text(encoding="utf-8")
    assert "Traceback" not in text
    assert "No deal was won with a close date in FY2020Q1 or open with one at the report date" in text
    assert "No deal was in the FY2020Q1 pipeline (open deals with a close date in FY2020Q1) from 2023-01-01" in text
    moved = text[text.index("How the pipeline moved") : text.index("Adherence to the process map")]
    assert "<table" not in moved and "<img" not in moved


def test_pipeline_review_counts_the_report_dates_wins_in_the_waterfall_as_in_the_table(tmp_path):
    """Date-only data whose last event is a win (the fresh-eyes export: as_of "latest" is 00:00 of its last day).
    The waterfall ended just before the report date, so it said won 207 where the attainment table said 208."""
    from tests.test_gallery_common import coverage_rows, number, table_after

    data, _ = generate(n_opportunities=400, seed=3)
    tables = {}
    for name in ("opportunities", "stage_history", "forecast_submissions", "leads"):
        df = getattr(data, name)
        for c in df.columns:
            if str(df[c].dtype).startswith("datetime64"):
                df[c] = df[c].dt.floor("D")
        tables[name] = df
    data = replace(data, **tables)
    wins = data.stage_history[data.stage_history["stage"].isin(data.process.won_stages)]
    day = wins.loc[wins["changed_at"].dt.month.isin([2, 5, 8, 11]), "changed_at"].max()  # mid-quarter
    data = known_at(data, day)
    won_today = wins.loc[wins["changed_at"] == day, "opportunity_id"]
    assert data.as_of == day and len(won_today)
    folder = data.to_folder(tmp_path / "crm")
    text = render_report(tmp_path, "05_pipeline_review", folder)
    table, _ = coverage_rows(text)  # the teams' rows, without the total row
    steps = table_after(text, "How the pipeline moved").set_index("step")
    assert number(steps.loc["won", "count"]) == table["won deals"].map(number).sum()
    assert number(steps.loc["won", "amount"]) == pytest.approx(table["closed won"].map(number).sum(), abs=1)
    assert number(steps.loc["closing pipeline", "count"]) == table["open deals"].map(number).sum()
    assert f"closed won by {day:%Y-%m-%d} 00:00 (included)" in steps.loc["won", "definition"]


def test_pipeline_review_of_a_young_crm_says_there_is_no_outcome_to_compare(tmp_path):
    """Twelve days of deals, one closed without any deviation: the outcome section was a table of dashes
    ("nothing to compare" on every row); now one sentence says so."""
    full, _ = generate(n_opportunities=400, seed=3)
    young = known_at(full, full.opportunities["created_at"].min() + pd.Timedelta(days=12))
    folder = young.to_folder(tmp_path / "crm")
    text = render_report(tmp_path, "05_pipeline_review", folder)
    section = text[text.index("Does following the map pay?") : text.index("Deals at risk")]
    assert "Of the 1 closed deal by the report date, none skipped a stage" in section
    assert "<table" not in section and "nothing to compare" not in section
