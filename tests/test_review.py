import dataclasses

import pandas as pd
import pytest

from salesforecast.datasets import load_sample
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.review import deals_at_risk
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
