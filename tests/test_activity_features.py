"""Activity features in the opportunity and lead scores (issue 19 item 4): known at the cutoff, never later.

The CRM is `generate`'s, with its own activities removed and the test's put in (so the test does not depend on
what the generator simulates): on deals, calls and e-mails at random plus an early meeting that most won deals
and few lost ones have; on leads, a first response that is fast for most converted leads and slow for most others.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

import salesforecast.leads as leads_module
import salesforecast.models.opportunity_scoring as opp_module
from salesforecast.datasets import generate
from salesforecast.leads import lead_dataset, lead_holdout, model_notes
from salesforecast.models.activity_features import (
    deal_activity_features,
    deal_feature_names,
    lead_activity_features,
)
from salesforecast.models.lead_scoring import LeadScoringModel
from salesforecast.models.opportunity_scoring import (
    OpportunityScoringModel,
    opportunity_features,
    opportunity_targets,
)
from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData, empty_table

DAY = pd.Timedelta(days=1)
T1, T2 = pd.Timestamp("2024-06-03"), pd.Timestamp("2024-09-02")  # two snapshot dates (Mondays)
FIT_AT = pd.Timestamp("2025-01-01")
CRITERIA = [{"activity": "meeting"}, {"activity": "call", "min": 2}]  # on Qualification


def _activities(rows: dict) -> pd.DataFrame:
    """A canonical activities table from columns (ids made up, missing links as missing)."""
    n = len(rows["occurred_at"])
    out = empty_table("activities").reindex(range(n))
    out["activity_id"] = pd.array([f"ACT-{i:07d}" for i in range(n)], dtype="str")
    out["occurred_at"] = pd.to_datetime(rows["occurred_at"]).astype("datetime64[us]")
    out["type"] = pd.array(rows["type"], dtype="str")
    for c in ("opportunity_id", "lead_id"):
        out[c] = pd.array(rows.get(c, [None] * n), dtype="str")
    return out


def _deal_activities(data: CRMData, rng: np.random.Generator) -> pd.DataFrame:
    """Calls and e-mails spread over each deal's life, and an early meeting for 85% of won deals, 15% of lost."""
    opps = data.opportunities
    last = data.stage_history.groupby("opportunity_id")["changed_at"].max()
    end = opps["opportunity_id"].map(last).fillna(data.as_of).to_numpy("datetime64[us]")
    start = opps["created_at"].to_numpy("datetime64[us]")
    life = (end - start).astype("int64")
    n_noise = rng.poisson(4, len(opps))
    deal = np.repeat(np.arange(len(opps)), n_noise)
    at = start[deal] + (rng.random(len(deal)) * life[deal]).astype("int64").astype("timedelta64[us]")
    kind = np.where(rng.random(len(deal)) < 0.5, "call", "email")
    p_meet = np.where(opps["is_won"].to_numpy(dtype=bool), 0.85, 0.15)
    met = np.flatnonzero(rng.random(len(opps)) < p_meet)
    meet_at = start[met] + (rng.random(len(met)) * 10 * 86_400e6).astype("int64").astype("timedelta64[us]")
    ids = opps["opportunity_id"].to_numpy(dtype=object)
    return _activities(
        {
            "occurred_at": np.r_[at, meet_at],
            "type": np.r_[kind, np.full(len(met), "meeting")],
            "opportunity_id": np.r_[ids[deal], ids[met]],
        }
    )


def _lead_activities(data: CRMData, rng: np.random.Generator) -> pd.DataFrame:
    """A first response within 2 hours for 80% of converted leads and 15% of the others (else 1-5 days), a follow-up."""
    leads = data.leads
    created = leads["created_at"].to_numpy("datetime64[us]")
    fast = rng.random(len(leads)) < np.where(leads["converted"].to_numpy(dtype=bool), 0.8, 0.15)
    hours = np.where(fast, rng.random(len(leads)) * 2, 24 + rng.random(len(leads)) * 96)
    first = created + (hours * 3600e6).astype("int64").astype("timedelta64[us]")
    follow = first + (rng.random(len(leads)) * 5 * 86_400e6).astype("int64").astype("timedelta64[us]")
    responded = rng.random(len(leads)) < 0.9
    ids = leads["lead_id"].to_numpy(dtype=object)
    return _activities(
        {
            "occurred_at": np.r_[first[responded], follow],
            "type": np.r_[np.full(responded.sum(), "call"), np.full(len(leads), "email")],
            "lead_id": np.r_[ids[responded], ids],
        }
    )


@pytest.fixture(scope="module")
def bare() -> CRMData:
    """`generate`'s CRM without activities, exit criteria on Qualification only (the test's, not the generator's)."""
    data = generate(n_opportunities=1500, seed=1, activities=False)[0]
    spec = data.process.to_dict()
    for stage in spec["stages"]:
        stage.pop("exit_criteria", None)
        if stage["name"] == "Qualification":
            stage["exit_criteria"] = CRITERIA
    return replace(data, process=SalesProcess.from_dict(spec), activities=empty_table("activities"))


@pytest.fixture(scope="module")
def crm(bare) -> CRMData:
    rng = np.random.default_rng(7)
    acts = pd.concat([_deal_activities(bare, rng), _lead_activities(bare, rng)], ignore_index=True)
    acts["activity_id"] = pd.array([f"ACT-{i:07d}" for i in range(len(acts))], dtype="str")
    return replace(bare, activities=acts)


def _plus_later(data: CRMData, after: pd.Series | pd.Timestamp, ids: pd.Series, column: str) -> CRMData:
    """The data with two extra activities of each id (a meeting and a call) after its own `after` time."""
    after = pd.Series(after, index=ids.index) if isinstance(after, pd.Timestamp) else after
    at = pd.concat([after + pd.Timedelta(minutes=1), after + 3 * DAY])
    extra = _activities(
        {"occurred_at": at.to_numpy(), "type": ["meeting"] * len(ids) + ["call"] * len(ids), column: [*ids, *ids]}
    )
    acts = pd.concat([data.activities, extra], ignore_index=True)
    acts["activity_id"] = pd.array([f"ACT-{i:07d}" for i in range(len(acts))], dtype="str")
    return replace(data, activities=acts)


@pytest.fixture(scope="module")
def feats(crm) -> pd.DataFrame:
    return opportunity_features(crm, [T1, T2])


# ------------------------------------------------------------------------------------------------ definitions
def test_deal_features_equal_a_hand_count_at_two_dates(crm, feats):
    acts = crm.activities[crm.activities["opportunity_id"].notna()]
    qual = feats[feats["stage"] == "Qualification"]
    picks = [*qual.index, *feats.index[feats["as_of"] == T1][:3], *feats.index[feats["as_of"] == T2][-3:]]
    assert set(feats.loc[picks, "as_of"]) == {T1, T2} and qual["stage_criteria_met"].nunique() > 1
    for i in picks:
        row = feats.loc[i]
        t = row["as_of"]
        mine = acts[(acts["opportunity_id"] == row["opportunity_id"]) & (acts["occurred_at"] <= t)]
        assert row["activities"] == len(mine)
        for kind in ("meeting", "call"):
            assert row[f"activities_{kind}"] == (mine["type"] == kind).sum()
        assert row["activities_14d"] == (mine["occurred_at"] > t - 14 * DAY).sum()
        last = mine["occurred_at"].max() if len(mine) else row["created_at"]
        assert row["days_since_activity"] == pytest.approx((t - last) / DAY)
        if row["stage"] == "Qualification":
            visit = mine[mine["occurred_at"] >= row["stage_entered_at"].floor("D")]
            met = int((visit["type"] == "meeting").sum() >= 1) + int((visit["type"] == "call").sum() >= 2)
            assert row["stage_criteria_met"] == met / 2
        else:
            assert np.isnan(row["stage_criteria_met"])


def test_deal_features_count_the_criteria_types(crm, feats):
    """The types the exit criteria name (call, meeting) are counted one by one; the others only in the total."""
    assert deal_feature_names(crm.process) == [
        "activities",
        "activities_call",
        "activities_meeting",
        "activities_14d",
        "days_since_activity",
        "stage_criteria_met",
    ]
    assert set(deal_feature_names(crm.process)) <= set(feats.columns)
    assert (feats["activities"] >= feats["activities_call"] + feats["activities_meeting"]).all()
    assert (feats["activities"] > feats["activities_call"] + feats["activities_meeting"]).any()  # e-mails


def test_lead_features_equal_a_hand_count(crm):
    ds = lead_dataset(crm, "2025-06-30")
    acts = crm.activities[crm.activities["lead_id"].notna()]
    X = pd.concat([ds.X, ds.open])
    young = ds.open.index[ds.open["created_at"] > pd.Timestamp("2025-06-27")][:2]
    assert len(young)
    for lead in [*X.index[:5], *young]:
        row = X.loc[lead]
        cutoff = min(row["created_at"] + 3 * DAY, pd.Timestamp("2025-06-30"))
        mine = acts[(acts["lead_id"] == lead) & (acts["occurred_at"] <= cutoff)]
        assert row["activities"] == len(mine)
        answered = mine[mine["occurred_at"] >= row["created_at"]]
        first = answered["occurred_at"].min() if len(answered) else cutoff
        assert row["responded"] == float(len(answered) > 0)
        assert row["first_response_hours"] == pytest.approx((first - row["created_at"]) / pd.Timedelta(hours=1))
        last = mine["occurred_at"].max() if len(mine) else row["created_at"]
        assert row["days_since_activity"] == pytest.approx((cutoff - last) / DAY)


# ------------------------------------------------------------------------------------------------ no leakage
def test_deal_activities_after_the_date_change_nothing(crm, feats):
    ids = crm.opportunities["opportunity_id"]
    later = _plus_later(crm, T1, ids, "opportunity_id")  # after T1, some before T2
    again = opportunity_features(later, [T1, T2])
    at1 = (feats["as_of"] == T1).to_numpy()
    pd.testing.assert_frame_equal(again[at1], feats[at1])
    assert not again.loc[~at1, "activities"].equals(feats.loc[~at1, "activities"])  # T2 sees them: the test bites


def test_lead_activities_after_the_cutoff_change_nothing(crm):
    as_of = pd.Timestamp("2025-06-30")
    ds = lead_dataset(crm, as_of)
    leads = crm.leads
    cutoff = (leads["created_at"] + 3 * DAY).clip(upper=as_of)
    plus = _plus_later(crm, cutoff, leads["lead_id"], "lead_id")
    later = lead_dataset(plus, as_of)
    pd.testing.assert_frame_equal(later.X, ds.X)
    pd.testing.assert_frame_equal(later.open, ds.open)
    longer = lead_dataset(plus, as_of, activity_days=10)  # a later cutoff sees them: the test bites
    assert (longer.X["activities"] > lead_dataset(crm, as_of, activity_days=10).X["activities"]).all()


@pytest.fixture(scope="module")
def fitted(crm) -> OpportunityScoringModel:
    return OpportunityScoringModel(snapshot_freq="MS").fit(crm, as_of=FIT_AT)


def test_the_fit_never_sees_activities_after_its_date(crm, fitted):
    later = _plus_later(crm, FIT_AT, crm.opportunities["opportunity_id"], "opportunity_id")
    other = OpportunityScoringModel(snapshot_freq="MS").fit(later, as_of=FIT_AT)
    a, b = fitted.score_pipeline(crm), other.score_pipeline(later)
    pd.testing.assert_frame_equal(a, b)


# ------------------------------------------------------------------------------------------------ no activities
def test_without_activities_the_opportunity_score_is_as_before(bare, monkeypatch):
    with_change = OpportunityScoringModel(snapshot_freq="MS").fit(bare, as_of=FIT_AT)
    p_with = with_change.score_pipeline(bare, "2025-03-03")
    none = lambda acts, process, snap, always=False: pd.DataFrame(index=snap.index)  # noqa: E731 (the code before the change)
    monkeypatch.setattr(opp_module, "deal_activity_features", none)
    before = OpportunityScoringModel(snapshot_freq="MS").fit(bare, as_of=FIT_AT)
    p_before = before.score_pipeline(bare, "2025-03-03")
    pd.testing.assert_frame_equal(p_with, p_before)
    assert p_with["win_probability"].to_numpy().tobytes() == p_before["win_probability"].to_numpy().tobytes()
    assert with_change.feature_names_ == before.feature_names_
    assert not set(deal_feature_names(bare.process)) & set(with_change.feature_names_)
    pd.testing.assert_frame_equal(with_change.summary, before.summary)
    assert "activity_features" not in with_change.summary.index


def test_without_activities_the_lead_tables_are_as_before(bare, monkeypatch):
    leads_only = replace(bare, activities=_activities({"occurred_at": [], "type": []}))
    now = lead_dataset(leads_only, "2025-06-30")
    monkeypatch.setattr(leads_module, "lead_activity_features", lambda acts, leads, cutoff: pd.DataFrame())
    before = lead_dataset(bare, "2025-06-30")
    pd.testing.assert_frame_equal(now.X, before.X)
    pd.testing.assert_frame_equal(now.open, before.open)


def test_deal_only_activities_add_no_lead_features_and_the_reverse(crm):
    deals_only = replace(crm, activities=crm.activities[crm.activities["opportunity_id"].notna()])
    assert "first_response_hours" not in lead_dataset(deals_only, "2025-06-30").X.columns
    leads_only = replace(crm, activities=crm.activities[crm.activities["lead_id"].notna()])
    assert deal_activity_features(leads_only.activities, crm.process, opportunity_features(crm, T1)).empty


# ------------------------------------------------------------------------------------------------ signal
def _holdout_auc(model: OpportunityScoringModel, data: CRMData) -> float:
    dates = pd.date_range(FIT_AT, "2025-07-01", freq="MS")
    f = opportunity_features(data, dates)
    tg = opportunity_targets(data, f, horizon="ever")
    known = tg["known"].to_numpy()
    return roc_auc_score(tg.loc[known, "target"], model.predict_proba(f[known]))


def test_activities_that_carry_signal_improve_the_opportunity_score(bare, crm, fitted):
    without = OpportunityScoringModel(snapshot_freq="MS").fit(bare, as_of=FIT_AT)
    auc_with, auc_without = _holdout_auc(fitted, crm), _holdout_auc(without, bare)
    assert auc_with > auc_without + 0.05, (auc_with, auc_without)
    assert {"activities", "activities_meeting", "stage_criteria_met"} <= set(fitted.model_.feature_names_in_)
    assert "activities_meeting" in fitted.summary.loc["activity_features", "value"]


def test_activities_that_carry_signal_improve_the_lead_score(bare, crm):
    aucs = {}
    for name, data in (("with", crm), ("without", bare)):
        train, X_test, y_test = lead_holdout(data, "2025-12-31")
        model = LeadScoringModel(date_column="created_at", random_state=0).fit(train.X, train.y)
        aucs[name] = roc_auc_score(y_test, model.predict_proba(X_test))
        if name == "with":
            assert "first_response_hours" in model.feature_names_in_
            (note,) = [n for n in model_notes(model) if n.startswith("The score also reads what was done")]
            assert "first 3 days" in note and "first_response_hours" not in note  # words, not column names
            # a lead's reasons name the activity features in words too (the gallery's reader scan found
            # "days_since_activity = 1.285 raises the odds" on 03's page)
            reasons = model.explain(X_test, top=len(model.feature_names_in_)).filter(like="reason_")
            said = pd.Series(reasons.to_numpy().ravel()).dropna()
            derived = ("days_since_activity", "first_response_hours", "activities =", "responded =")
            assert not said.str.startswith(derived).any(), said[said.str.startswith(derived)].head()
            assert said.str.startswith(("days since the last activity", "hours to the first response")).any()
    assert aucs["with"] > aucs["without"] + 0.05, aucs


@pytest.mark.parametrize("days", [0, -1.0, float("nan"), float("inf"), True, "3"])
def test_activity_days_must_be_positive(crm, days):
    with pytest.raises(ValueError, match=f"activity_days must be a positive number of days, got {days!r}"):
        lead_dataset(crm, "2025-06-30", activity_days=days)


def test_deal_feature_boundaries():
    """An activity at the date counts; one exactly 14 days before is outside the 14-day window; no rows, no error."""
    t = pd.Timestamp("2024-03-01")
    snap = pd.DataFrame(
        {
            "as_of": [t, t],
            "opportunity_id": pd.array(["A", "B"], dtype="str"),
            "created_at": [t - 30 * DAY, t - 5 * DAY],
            "stage": pd.array(["Qualification", "Prospecting"], dtype="str"),
            "stage_entered_at": [t - 20 * DAY + pd.Timedelta(hours=9), t - 5 * DAY],
        }
    )
    acts = _activities(
        {
            "occurred_at": [t - 20 * DAY, t - 14 * DAY, t, t + pd.Timedelta(microseconds=1)],
            "type": ["meeting", "call", "call", "call"],
            "opportunity_id": ["A", "A", "A", "A"],
        }
    )
    process = SalesProcess.from_dict(
        {
            "stages": [
                {"name": "Prospecting"},
                {"name": "Qualification", "exit_criteria": CRITERIA},
                {"name": "Won", "kind": "won"},
                {"name": "Lost", "kind": "lost"},
            ]
        }
    )
    f = deal_activity_features(acts, process, snap)
    assert f["activities"].tolist() == [3, 0]
    assert f["activities_call"].tolist() == [2, 0]
    assert f["activities_14d"].tolist() == [1, 0]
    assert f["days_since_activity"].tolist() == [0.0, 5.0]
    # the meeting at midnight of the day the visit began counts (criteria_check's rule), and two calls: all met
    assert f["stage_criteria_met"].iloc[0] == 1.0 and np.isnan(f["stage_criteria_met"].iloc[1])
    empty = deal_activity_features(acts, process, snap.iloc[:0])
    assert list(empty.columns) == deal_feature_names(process) and empty.empty


_DAYS = st.integers(0, 40)  # whole days from 2024-01-01, so that times often coincide


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    acts=st.lists(st.tuples(st.sampled_from("ABC"), _DAYS, st.sampled_from(["call", "email", "meeting"])), max_size=12),
    rows=st.lists(st.tuples(st.sampled_from("ABCD"), _DAYS, _DAYS), min_size=1, max_size=6),
)
def test_features_equal_a_brute_force_count(acts, rows):
    """Random small tables (ties, activities at the date, deals and leads without any): the loops' answer."""
    day0 = pd.Timestamp("2024-01-01")
    table = _activities(
        {
            "occurred_at": [day0 + d * DAY for _, d, _ in acts] or pd.DatetimeIndex([]),
            "type": [k for _, _, k in acts],
            "opportunity_id": [i for i, _, _ in acts],
            "lead_id": [i for i, _, _ in acts],
        }
    )
    snap = pd.DataFrame(
        {
            "as_of": [day0 + max(a, b) * DAY for _, a, b in rows],
            "opportunity_id": pd.array([i for i, _, _ in rows], dtype="str"),
            "created_at": [day0 + min(a, b) * DAY for _, a, b in rows],
            "stage": pd.array(["Prospecting"] * len(rows), dtype="str"),
            "stage_entered_at": [day0 + min(a, b) * DAY for _, a, b in rows],
        }
    )
    deal = deal_activity_features(table, SalesProcess.default(), snap)
    lead = lead_activity_features(table, snap.rename(columns={"opportunity_id": "lead_id"}), snap["as_of"])
    if not acts:
        assert deal.empty and lead.empty and list(deal.index) == list(snap.index)
        return
    for r, (i, t, created) in enumerate(zip(snap["opportunity_id"], snap["as_of"], snap["created_at"], strict=True)):
        seen = [(d, k) for j, d, k in acts if j == i and day0 + d * DAY <= t]
        assert deal["activities"].iloc[r] == lead["activities"].iloc[r] == len(seen)
        for kind in ("call", "email", "meeting"):
            assert deal[f"activities_{kind}"].iloc[r] == sum(k == kind for _, k in seen)
        assert deal["activities_14d"].iloc[r] == sum(day0 + d * DAY > t - 14 * DAY for d, _ in seen)
        last = max((day0 + d * DAY for d, _ in seen), default=created)
        assert deal["days_since_activity"].iloc[r] == lead["days_since_activity"].iloc[r] == (t - last) / DAY
        answers = [day0 + d * DAY for d, _ in seen if day0 + d * DAY >= created]
        assert lead["responded"].iloc[r] == float(bool(answers))
        hours = (min(answers, default=t) - created) / pd.Timedelta(hours=1)
        assert lead["first_response_hours"].iloc[r] == hours
