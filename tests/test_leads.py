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
