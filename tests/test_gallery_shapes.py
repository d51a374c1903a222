"""The gallery's shapes are what they say, deterministic, and written as canonical folders."""

import filecmp

import pandas as pd
import pytest

from salesforecast.datasets.gallery import BASE, SHAPES, base_crm, write_gallery, write_shape


@pytest.fixture(scope="module")
def shapes():
    return {name: shape.build(0) for name, shape in SHAPES.items()}


def test_every_shape_has_a_one_line_description_and_its_name():
    for name, shape in SHAPES.items():
        assert shape.name == name
        assert shape.description and "\n" not in shape.description and len(shape.description) < 100


def test_same_seed_writes_the_same_files_and_another_seed_other_ones(tmp_path):
    first = write_gallery(tmp_path / "a", seed=3)
    again = write_gallery(tmp_path / "b", seed=3)
    assert list(first) == list(SHAPES)
    for name in SHAPES:
        files = sorted(p.name for p in first[name].iterdir())
        assert files == sorted(p.name for p in again[name].iterdir())
        match, mismatch, errors = filecmp.cmpfiles(first[name], again[name], files, shallow=False)
        assert mismatch == [] and errors == [], name
    other = write_shape("no_quotas", tmp_path / "c", seed=4)
    assert not filecmp.cmp(other / "opportunities.csv", first["no_quotas"] / "opportunities.csv", shallow=False)


def test_an_unknown_shape_is_named_with_the_known_ones(tmp_path):
    with pytest.raises(KeyError, match="no shape 'nope'; shapes: \\['current_state_only'"):
        write_shape("nope", tmp_path)


def test_the_base_ends_mid_quarter_and_the_last_day_shape_on_a_quarter_end(shapes):
    base = base_crm(0)
    assert base.as_of.normalize() == pd.Timestamp("2024-11-14")  # FY2024Q4 runs to 2024-12-31
    assert len(base.opportunities) == BASE["n_opportunities"]
    assert shapes["ends_on_period_last_day"].as_of.normalize() == pd.Timestamp("2024-12-31")


def test_the_shapes_hold_what_they_say(shapes):
    s = shapes
    assert s["current_state_only"].stage_history.empty and len(s["current_state_only"].opportunities) == 500
    derived = s["history_from_dates"].stage_history
    assert derived[["amount", "close_date", "forecast_category"]].isna().all().all()
    assert derived.groupby("opportunity_id").size().max() == 2  # created, and closed

    opps = s["open_deals_without_close_dates"].opportunities
    assert opps.loc[~opps["is_closed"], "close_date"].isna().all() and (~opps["is_closed"]).sum() > 10
    assert opps.loc[opps["is_closed"], "close_date"].notna().all()
    hist = s["open_deals_without_close_dates"]
    open_rows = ~hist.process.is_closed(hist.stage_history["stage"])
    assert hist.stage_history.loc[open_rows, "close_date"].isna().all()

    won = s["only_won_deals"]
    assert won.opportunities["is_won"].all() and len(won.opportunities) > 30
    assert set(won.stage_history["opportunity_id"]) == set(won.opportunities["opportunity_id"])

    teams = s["no_teams"]
    assert "team" not in teams.opportunities.columns and "region" not in teams.opportunities.columns
    assert "team" not in teams.forecast_submissions.columns

    one = s["one_rep"]
    for table in ("opportunities", "leads", "forecast_submissions", "quotas"):
        assert getattr(one, table)["owner"].nunique() == 1, table
    assert one.opportunities["team"].nunique() == 1
    base = base_crm(0)
    assert one.quotas["amount"].sum() == base.quotas["amount"].sum()
    assert one.forecast_submissions["amount"].sum() == base.forecast_submissions["amount"].sum()

    assert s["no_submissions"].forecast_submissions.empty and not s["no_submissions"].quotas.empty
    assert s["no_quotas"].quotas.empty and not s["no_quotas"].forecast_submissions.empty

    leads_only = s["leads_only"]
    assert leads_only.opportunities.empty and leads_only.stage_history.empty and len(leads_only.leads) > 500
    assert leads_only.leads["opportunity_id"].isna().all() and leads_only.leads["converted"].any()

    monthly = s["monthly_periods"]
    for table in ("forecast_submissions", "quotas"):
        assert monthly.__getattribute__(table)["period"].str.fullmatch(r"\d{4}-\d{2}").all(), table
    assert monthly.quotas["amount"].sum() == pytest.approx(base.quotas["amount"].sum(), rel=1e-3)
    assert SHAPES["monthly_periods"].parameters == {"period": "2024-11", "frequency": "month"}


def test_the_funnel_has_eleven_months_of_ramping_leads(shapes):
    data = shapes["leads_ramp_11_months"]
    created = data.leads["created_at"]
    assert created.min() >= pd.Timestamp("2023-02-01") and created.max() < pd.Timestamp("2024-01-01")
    per_month = created.dt.to_period("M").value_counts().sort_index()
    assert len(per_month) == 11
    assert per_month.iloc[-3:].sum() > 3 * per_month.iloc[:3].sum()  # the ramp
    assert data.opportunities["lead_id"].isin(data.leads["lead_id"]).all()
    assert data.forecast_submissions.empty and data.quotas.empty


def test_win_rates_drop_in_the_second_year(shapes):
    """Deals closed from the second year on are won less often (the shape's seed; the shift is -1/3)."""
    opps = shapes["win_rate_shift"].opportunities
    closed = opps[opps["is_closed"]]
    later = closed["close_date"] >= pd.Timestamp(BASE["start"]) + pd.DateOffset(years=1)
    first_year, second_year = closed.loc[~later, "is_won"].mean(), closed.loc[later, "is_won"].mean()
    assert min(later.sum(), (~later).sum()) > 150
    assert second_year < 0.75 * first_year
