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
    young = ds.X["created_at"] > as_of - pd.Timedelta(days=180)
    assert ds.y[young.to_numpy()].eq(1).all()  # young leads are known only when they converted
    # open leads: young and not converted by as_of
    assert (ds.open["created_at"] > as_of - pd.Timedelta(days=180)).all()
    opened = leads.loc[ds.open.index]
    assert (~opened["converted"] | (opened["converted_at"] > as_of)).all()
    # the split covers every lead created by as_of exactly once, with no outcome column among the features
    assert len(ds.X) + len(ds.open) == int((leads["created_at"] <= as_of).sum())
    assert not {"converted", "converted_at", "opportunity_id"} & set(ds.X.columns)
    # the same split from the data as it was known then
    from salesforecast.snapshots import known_at

    past = lead_dataset(known_at(data, as_of), as_of)
    pd.testing.assert_series_equal(past.y, ds.y)
