import dataclasses

import pandas as pd
import pytest

from salesforecast.adherence import deal_adherence, deviation_outcomes
from salesforecast.datasets import generate, load_sample
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.movement import pipeline_coverage, pipeline_waterfall, waterfall_deals
from salesforecast.review import (
    QUOTA_COLUMNS,
    coverage_table,
    deals_at_risk,
    no_movement_sentence,
    nothing_to_compare,
    waterfall_window,
)
from salesforecast.snapshots import known_at, pipeline_snapshots


@pytest.fixture(scope="module")
def sample():
    return load_sample()


def test_deals_at_risk_are_open_flagged_and_scored(sample):
    as_of = pd.Timestamp("2025-06-30")
    risky = deals_at_risk(sample, as_of)
    open_ids = set(pipeline_snapshots(sample, as_of)["opportunity_id"])
    assert len(risky) and set(risky["opportunity_id"]) <= open_ids
    flagged = risky["stalled"] | (risky["close_date_pushes"] > 2) | (risky["skipped_stages"] > 0)
    assert flagged.all()
    assert (risky["risks"].str.len() > 0).all()
    assert risky["amount"].is_monotonic_decreasing
    assert risky["win_probability"].between(0, 1).all()
    # stalled deals are scored below a fresh deal in the same stage
    model = StageConversionModel(process=sample.process).fit(known_at(sample, as_of))
    stalled = risky[risky["stalled"]].head(5)
    fresh = stalled.assign(days_in_stage=0.0)
    assert (model.predict_proba(fresh).to_numpy() >= stalled["win_probability"].to_numpy() - 1e-12).all()


def test_deals_at_risk_ignores_the_future(sample):
    as_of = pd.Timestamp("2025-03-31")
    whole = deals_at_risk(sample, as_of)
    past = deals_at_risk(known_at(sample, as_of), as_of)
    pd.testing.assert_frame_equal(whole, past)


def test_filter_by_team_and_owner(sample):
    emea = sample.filter(team="EMEA")
    assert set(emea.opportunities["team"]) == {"EMEA"}
    assert set(emea.stage_history["opportunity_id"]) <= set(emea.opportunities["opportunity_id"])
    assert set(emea.quotas["owner"]) <= set(emea.opportunities["owner"])
    assert len(emea.quotas) and len(emea.forecast_submissions)
    rep = emea.opportunities["owner"].iloc[0]
    one = sample.filter(owner=rep)
    assert set(one.opportunities["owner"]) == {rep} and set(one.quotas["owner"]) == {rep}
    assert sample.filter() is sample
    no_team = dataclasses.replace(sample, opportunities=sample.opportunities.drop(columns="team"))
    with pytest.raises(KeyError, match="team"):
        no_team.filter(team="EMEA")


def _won_at_report_date():
    """Generated data seen at the moment of its last win: the report date is that win's time."""
    data, _ = generate(n_opportunities=400, seed=3)
    hist = data.stage_history
    wins = hist[hist["stage"].isin(data.process.won_stages)].sort_values("changed_at", kind="stable")
    last = wins.iloc[-1]
    view = known_at(data, last["changed_at"])
    label = view.process.calendar.resolve("current", last["close_date"])
    return view, last, label


def test_a_deal_won_at_the_report_date_is_won_in_the_waterfall_as_in_the_attainment_table():
    """The fresh-eyes run: with the report date at the data's last event (date-only data: 00:00 of the last day),
    the waterfall ended just before it and said won 207 while the attainment table said 208; the deal won at the
    report date was closing pipeline. `waterfall_window` ends the window just after the report date."""
    view, last, label = _won_at_report_date()
    as_of = pd.Timestamp(last["changed_at"])
    assert view.as_of == as_of
    lo, hi = view.process.calendar.period_bounds(label)
    assert lo <= last["close_date"] < hi
    start, end = waterfall_window(view, lo, as_of)
    assert start == max(lo, view.opportunities["created_at"].min())
    assert end == as_of + pd.Timedelta(microseconds=1)

    coverage = pipeline_coverage(view, label, as_of=as_of)
    won_ids = set(waterfall_deals(view, start, end, period=label).query("step == 'won'")["opportunity_id"])
    assert last["opportunity_id"] in won_ids
    waterfall = pipeline_waterfall(view, start, end, period=label).set_index("step")
    row = coverage.iloc[0]
    assert waterfall.loc["won", "count"] == row["won_deals"]
    assert waterfall.loc["won", "amount"] == pytest.approx(row["closed_won"])
    assert waterfall.loc["closing pipeline", "count"] == row["open_deals"]
    assert waterfall.loc["closing pipeline", "amount"] == pytest.approx(row["open_pipeline"])
    by_report_date = f"closed won by {as_of:%Y-%m-%d %H:%M} (included)"
    assert by_report_date in waterfall.loc["won", "definition"]
    # the window that ended at the report date itself left that deal out (the bug)
    before = waterfall_deals(view, start, as_of, period=label)
    assert last["opportunity_id"] not in set(before.query("step == 'won'")["opportunity_id"])


def test_waterfall_window_of_a_period_not_begun_is_none(sample):
    assert waterfall_window(sample, "2026-01-01", "2025-12-31") is None
    start, end = waterfall_window(sample, "2025-10-01", "2025-10-01")
    assert start == pd.Timestamp("2025-10-01") and end == start + pd.Timedelta(microseconds=1)


def test_coverage_table_leaves_out_unknown_quotas_and_says_so(sample):
    with_quotas = pipeline_coverage(sample, "FY2025Q2", as_of="2025-05-15", by="team")
    table, sentence = coverage_table(with_quotas)
    assert sentence is None and table.columns.tolist() == ["team", *with_quotas.columns]
    no_quotas = dataclasses.replace(sample, quotas=sample.quotas.iloc[:0])
    cov = pipeline_coverage(no_quotas, "FY2025Q2", as_of="2025-05-15", by="team")
    table, sentence = coverage_table(cov)
    assert not set(QUOTA_COLUMNS) & set(table.columns) and len(table) == len(cov) + 1  # and the total row
    assert sentence.startswith("The data have no quotas for FY2025Q2, so neither attainment nor coverage")
    # one team without a quota: kept, shown as "–", counted in the sentence
    east = with_quotas.index[0]
    owners = sample.opportunities.loc[sample.opportunities["team"] == east, "owner"].unique()
    partial = dataclasses.replace(sample, quotas=sample.quotas.loc[~sample.quotas["owner"].isin(owners)])
    table, sentence = coverage_table(pipeline_coverage(partial, "FY2025Q2", as_of="2025-05-15", by="team"))
    assert "quota" in table.columns and table["quota"].isna().sum() == 1
    assert sentence.startswith(f"1 of the {len(table) - 1} rows (by team) has no quota for FY2025Q2")
    # no deal and no quota in the period: no row, and a sentence instead of an empty table
    table, sentence = coverage_table(pipeline_coverage(no_quotas, "FY2020Q1", by="team"))
    assert table.empty and sentence.startswith("No deal was won with a close date in FY2020Q1")


def test_a_waterfall_where_nothing_moved_is_a_sentence(sample):
    lo, _ = sample.process.calendar.period_bounds("FY2020Q1")
    window = waterfall_window(sample, lo, sample.as_of)
    empty = pipeline_waterfall(sample, *window, period="FY2020Q1")
    assert no_movement_sentence(empty) == (
        "No deal was in the FY2020Q1 pipeline (open deals with a close date in FY2020Q1) from "
        f"{window[0]:%Y-%m-%d} through {sample.as_of:%Y-%m-%d}, and none entered, closed or left it: there is no "
        "movement to show."
    )
    lo, _ = sample.process.calendar.period_bounds("FY2025Q2")
    assert (
        no_movement_sentence(pipeline_waterfall(sample, *waterfall_window(sample, lo, "2025-05-15"), "FY2025Q2"))
        is None
    )


def test_nothing_to_compare_replaces_a_table_of_dashes(sample):
    full, _ = generate(n_opportunities=400, seed=3)
    first = full.opportunities["created_at"].min()
    young = known_at(full, first + pd.Timedelta(days=12))  # one deal closed, without any deviation
    deals = deal_adherence(young)
    outcomes = deviation_outcomes(deals, ci=0.9, seed=0)
    assert (outcomes["n_with"] == 0).all() and (deals["outcome"] != "open").sum() == 1
    assert nothing_to_compare(outcomes, deals) == (
        "Of the 1 closed deal by the report date, none skipped a stage, went back a stage, stalled in a stage, had "
        "their close date pushed, had their close date pushed more than twice or had their amount cut: there is no "
        "deviation whose outcome to compare."
    )
    newborn = deal_adherence(known_at(full, first + pd.Timedelta(hours=1)))
    assert nothing_to_compare(deviation_outcomes(newborn, ci=0.9, seed=0), newborn) == (
        "No deal had closed by the report date, so there is no outcome to compare."
    )
    deals = deal_adherence(sample, as_of="2025-06-30")
    assert nothing_to_compare(deviation_outcomes(deals, ci=0.9, seed=0), deals) is None
