import pandas as pd

from salesforecast.datasets import load_sample
from salesforecast.leads import lead_dataset


def test_outcomes_known_at_the_date_only():
    data = load_sample()
    as_of = pd.Timestamp("2025-03-31")
    ds = lead_dataset(data, as_of, maturity_days=180)
    leads = data.leads.set_index("lead_id")
    # nothing created after as_of; every known lead is converted by as_of or old enough
    assert ds.X["created_at"].max() <= as_of and ds.open["created_at"].max() <= as_of
    conv_later = leads["converted_at"] > as_of
    assert ds.y[conv_later.reindex(ds.y.index).fillna(False).to_numpy()].eq(0).all()
    assert (ds.X["created_at"] <= as_of - pd.Timedelta(days=180)).all()  # only matured leads are scored
    # open leads: young and not converted by as_of
    assert (ds.open["created_at"] > as_of - pd.Timedelta(days=180)).all()
    opened = leads.loc[ds.open.index]
    assert (~opened["converted"] | (opened["converted_at"] > as_of)).all()
    # the split covers every lead created by as_of exactly once, with no outcome column among the features
    assert len(ds.X) + len(ds.open) + ds.young_converted == int((leads["created_at"] <= as_of).sum())
    assert ds.young_converted > 0
    assert not {"converted", "converted_at", "opportunity_id"} & set(ds.X.columns)
    # the same split from the data as it was known then
    from salesforecast.snapshots import known_at

    past = lead_dataset(known_at(data, as_of), as_of)
    pd.testing.assert_series_equal(past.y, ds.y)


def test_holdout_is_time_honest():
    from salesforecast.leads import lead_holdout

    data = load_sample()
    train, X_test, y_test = lead_holdout(data, "2025-12-31", maturity_days=180, holdout_months=6)
    start = pd.Timestamp("2025-12-31") - pd.Timedelta(days=180) - pd.DateOffset(months=6)
    assert train.as_of == start
    assert not set(train.X.index) & set(X_test.index)
    assert (train.X["created_at"] <= start - pd.Timedelta(days=180)).all()
    assert (X_test["created_at"] > start - pd.Timedelta(days=180)).all()
    # training labels are what was known at the holdout start: a conversion after it does not count
    leads = data.leads.set_index("lead_id")
    later = leads.loc[train.y.index, "converted_at"] > start
    assert train.y[later.to_numpy()].eq(0).all()
    assert 0 < y_test.mean() < 1


def test_holdout_error_names_the_empty_side_the_dates_and_a_setting_that_works():
    import dataclasses
    import re

    import pytest

    from salesforecast.leads import lead_holdout

    data = load_sample()  # leads created 2023-01-01 to 2025-12-31 (by 2025-12-30 at midnight of the 31st)
    # training side empty: the holdout start reaches back before the first lead could be mature
    with pytest.raises(ValueError) as err:
        lead_holdout(data, "2025-12-31", maturity_days=180, holdout_months=40)
    msg = str(err.value)
    assert "no leads before the holdout start 2022-03-04" in msg
    assert "training takes the leads mature at the holdout start, created by 2021-09-05" in msg
    assert "created from 2023-01-01 to 2025-12-30" in msg and "mature at the report date: up to 2025-07-03" in msg
    months = int(re.search(r"use holdout_months=(\d+)", msg).group(1))
    assert months == 24
    lead_holdout(data, "2025-12-31", maturity_days=180, holdout_months=months)  # the advice works
    # holdout side empty: no lead created in the holdout window (the leads stop in 2023)
    early = dataclasses.replace(data, leads=data.leads[data.leads["created_at"] < "2024-01-01"])
    with pytest.raises(ValueError) as err:
        lead_holdout(early, "2025-12-31", maturity_days=180, holdout_months=6)
    msg = str(err.value)
    assert "no leads from the holdout start 2025-01-04" in msg and "training takes" not in msg
    assert "the holdout takes the leads created after 2024-07-08 and mature at the report date, by 2025-07-04" in msg
    assert "created from 2023-01-01 to 2023-12-31" in msg
    months = int(re.search(r"use holdout_months=(\d+)", msg).group(1))
    lead_holdout(early, "2025-12-31", maturity_days=180, holdout_months=months)
    # both sides empty, no holdout_months fits: a maturity_days that does
    with pytest.raises(ValueError) as err:
        lead_holdout(data, "2023-05-01", maturity_days=180, holdout_months=6)
    msg = str(err.value)
    assert "no leads on either side of the holdout start 2022-05-02" in msg and "created from 2023-01-01" in msg
    days, months = map(int, re.search(r"use maturity_days=(\d+) and holdout_months=(\d+)", msg).groups())
    lead_holdout(data, "2023-05-01", maturity_days=days, holdout_months=months)


def test_rank_and_tier_tables():
    from salesforecast.leads import lead_dataset, rank_leads, tier_table
    from salesforecast.models.lead_scoring import LeadScoringModel

    ds = lead_dataset(load_sample(), "2025-12-31")
    model = LeadScoringModel(estimator="logistic", date_column="created_at").fit(ds.X, ds.y)
    ranked = rank_leads(model, ds.open, top=2)
    assert ranked["probability"].is_monotonic_decreasing and len(ranked) == len(ds.open)
    assert ranked["tier"].isin(["A", "B", "C", "D"]).all()
    assert ranked["reasons"].str.contains("the odds").all()
    table = tier_table(model.tiers(ds.X), ds.y)
    assert table["leads"].sum() == len(ds.X) and abs(table["share_of_leads"].sum() - 1) < 1e-9
    assert table["conversion_rate"].iloc[0] > table["conversion_rate"].iloc[-1]


def test_rank_leads_without_open_leads_gives_an_empty_well_formed_table():
    from salesforecast.leads import lead_dataset, rank_leads
    from salesforecast.models.lead_scoring import LeadScoringModel

    ds = lead_dataset(load_sample(), "2025-12-31")
    model = LeadScoringModel(estimator="logistic", date_column="created_at").fit(ds.X, ds.y)
    ranked = rank_leads(model, ds.open, top=2)
    empty = rank_leads(model, ds.open.iloc[:0], top=2)  # no lead open at the report date
    assert empty.empty and list(empty.columns) == list(ranked.columns)  # had only probability, tier, reasons
    pd.testing.assert_series_equal(empty.dtypes, ranked.dtypes)
    assert empty.index.name == "lead_id"
    assert empty.reset_index()["created_at"].empty  # the report's table reads it: KeyError before
