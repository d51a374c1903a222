"""Opportunity scoring: leakage-free features, owner records, targets, the model against the stage baseline."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from salesforecast._utils import LocalTasks, isin
from salesforecast.adherence import deal_adherence
from salesforecast.datasets import generate, load_sample
from salesforecast.history import DealHistory
from salesforecast.metrics import roc_auc
from salesforecast.models.opportunity_scoring import (
    HISTORY_FEATURES,
    STATE_FEATURES,
    OpportunityScoringModel,
    _quotas,
    _row_keys,
    _smallest,
    opportunity_features,
    opportunity_targets,
)
from salesforecast.schema import CRMData, validate
from salesforecast.snapshots import LEAD_CUT_COLUMNS, known_at, pipeline_snapshots
from tests.factories import complete_history_crm

CUTOFFS = ["2024-01-01", "2024-06-17 13:30", "2025-03-03"]


@pytest.fixture(scope="module")
def sample() -> CRMData:
    return load_sample()


@pytest.fixture(scope="module")
def gen5k() -> CRMData:
    return generate(n_opportunities=5_000, seed=0)[0]


def _future_rewritten(data: CRMData, cutoff: pd.Timestamp) -> CRMData:
    """A different future after the cutoff: every later change wins, at another amount and close date."""
    h = data.stage_history.copy()
    later = h["changed_at"] > cutoff
    h.loc[later, "stage"] = "Closed Won"
    h.loc[later, "amount"] = 1.0
    h.loc[later, "close_date"] = pd.Timestamp("2030-01-01")
    opps = data.opportunities.copy()
    moved = isin(opps["opportunity_id"], h.loc[later, "opportunity_id"])
    opps.loc[moved, ["stage", "is_closed", "is_won"]] = ["Closed Won", True, True]
    return replace(data, opportunities=opps, stage_history=h)


# ------------------------------------------------------------------------------------------------ no leakage
@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_features_of_a_date_do_not_depend_on_later_data(sample, cutoff):
    cutoff = pd.Timestamp(cutoff)
    full = opportunity_features(sample, cutoff)
    assert len(full) > 50
    pd.testing.assert_frame_equal(opportunity_features(known_at(sample, cutoff), cutoff), full)
    # a rewritten future changes the static current values of some deals (stage is not static), nothing else
    pd.testing.assert_frame_equal(opportunity_features(_future_rewritten(sample, cutoff), cutoff), full)
    # several dates at once give the same rows for each date
    many = opportunity_features(sample, [pd.Timestamp("2023-06-01"), cutoff, pd.Timestamp("2025-09-01")])
    pd.testing.assert_frame_equal(many.loc[many["as_of"] == cutoff].reset_index(drop=True), full)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 100_000))
def test_features_without_future_on_random_histories(seed):
    data = validate(complete_history_crm(30, seed=seed))
    for cutoff in [pd.Timestamp(x) for x in ("2024-02-01", "2024-03-10 12:00", "2024-05-01")]:
        full = opportunity_features(data, cutoff)
        pd.testing.assert_frame_equal(opportunity_features(known_at(data, cutoff), cutoff), full)


@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_owner_records_are_the_owners_closed_deals_as_known_then(gen5k, cutoff):
    f = opportunity_features(gen5k, cutoff)
    adh = deal_adherence(known_at(gen5k, cutoff), as_of=cutoff)
    closed = adh.loc[adh["outcome"].isin(["won", "lost"])]
    per_owner = closed.groupby("owner")["outcome"].agg(closed="size", won=lambda s: int((s == "won").sum()))
    got = f[["owner", "owner_closed_deals", "owner_won_deals"]].drop_duplicates().set_index("owner")
    want = per_owner.reindex(got.index, fill_value=0)
    assert (got["owner_closed_deals"] == want["closed"]).all() and (got["owner_won_deals"] == want["won"]).all()


def test_features_equal_a_naive_loop_over_deals(sample):
    cutoff = pd.Timestamp("2024-09-02")
    f = opportunity_features(sample, cutoff, prior_strength=0.0).set_index("opportunity_id")
    hist = sample.stage_history.sort_values(["opportunity_id", "changed_at"], kind="stable")
    process = sample.process
    open_stages = process.open_stages
    known = hist.loc[hist["changed_at"] <= cutoff]
    for oid, rows in list(known.groupby("opportunity_id"))[:400]:  # the reference loops over deals
        stages = rows["stage"].tolist()
        if stages[-1] not in open_stages:
            assert oid not in f.index
            continue
        row = f.loc[oid]
        pushes = skips = regressions = 0
        for i in range(1, len(rows)):
            a, b = stages[i - 1], stages[i]
            if a in open_stages and b in open_stages:
                if rows["close_date"].iloc[i] > rows["close_date"].iloc[i - 1]:
                    pushes += 1
                ia, ib = open_stages.index(a), open_stages.index(b)
                skips += max(ib - ia - 1, 0)
                regressions += ib < ia
        assert (row["close_date_pushes"], row["skipped_stages"], row["regressions"]) == (pushes, skips, regressions)
        assert row["stage_index"] == open_stages.index(stages[-1])
        assert row["days_since_change"] == pytest.approx((cutoff - rows["changed_at"].iloc[-1]) / pd.Timedelta(days=1))
        assert row["days_to_close"] == pytest.approx((rows["close_date"].iloc[-1] - cutoff) / pd.Timedelta(days=1))
        assert row["amount_change_pct"] == pytest.approx(rows["amount"].iloc[-1] / rows["amount"].iloc[0] - 1)
    # the owner's raw win rate (prior_strength=0) by a loop over closed deals
    last = known.groupby("opportunity_id").tail(1)
    closed = last.loc[last["stage"].isin(process.closed_stages)]
    owner = sample.opportunities.set_index("opportunity_id")["owner"]
    for name in f["owner"].unique()[:5]:
        mine = closed.loc[closed["opportunity_id"].map(owner) == name]
        rates = f.loc[f["owner"] == name, "owner_win_rate"]
        assert rates.nunique() == 1
        assert rates.iloc[0] == pytest.approx((mine["stage"] == process.won_stage).mean())


# ------------------------------------------------------------------------------------------------ hand-made cases
def _tables(opps: list[tuple], hist: list[tuple]) -> CRMData:
    o = pd.DataFrame(
        opps, columns=["opportunity_id", "owner", "created_at", "stage", "amount", "close_date", "is_closed", "is_won"]
    )
    h = pd.DataFrame(hist, columns=["opportunity_id", "changed_at", "stage", "amount", "close_date"])
    for df, cols in ((o, ["created_at", "close_date"]), (h, ["changed_at", "close_date"])):
        for c in cols:
            df[c] = pd.to_datetime(df[c], format="ISO8601").astype("datetime64[us]")
    data = validate({"opportunities": o, "stage_history": h})
    assert len(data.quarantine) == 0
    return data


@pytest.fixture(scope="module")
def hand() -> CRMData:
    """Owners ann, bo, cy; the cutoff 2024-04-01 splits their deals' histories."""
    c = "2024-09-30"
    return _tables(
        [
            ("A1", "ann", "2024-01-02", "Closed Won", 100, "2024-02-01", True, True),
            ("A2", "ann", "2024-01-03", "Closed Lost", 100, "2024-03-10", True, False),
            ("A3", "ann", "2024-01-05", "Closed Won", 100, "2024-05-01", True, True),
            ("A4", "ann", "2024-02-01", "Prospecting", 100, c, False, False),
            ("A5", "ann", "2024-01-10", "Closed Won", 100, "2024-04-01", True, True),
            ("B1", "bo", "2024-01-04", "Closed Lost", 100, "2024-01-15", True, False),
            ("B2", "bo", "2024-03-01", "Closed Won", 100, "2024-08-15", True, True),
            ("C1", "cy", "2024-03-15", "Qualification", 100, c, False, False),
        ],
        [
            ("A1", "2024-01-02", "Prospecting", 100, c),
            ("A1", "2024-02-01 10:00", "Closed Won", 100, "2024-02-01"),
            ("A2", "2024-01-03", "Qualification", 100, c),
            ("A2", "2024-03-10 10:00", "Closed Lost", 100, "2024-03-10"),
            ("A3", "2024-01-05", "Prospecting", 100, c),
            ("A3", "2024-05-01 10:00", "Closed Won", 100, "2024-05-01"),
            ("A4", "2024-02-01", "Prospecting", 100, c),
            ("A4", "2024-02-15 10:00", "Closed Lost", 100, "2024-02-15"),
            ("A4", "2024-03-01 10:00", "Prospecting", 100, c),  # reopened: not closed at the cutoff
            ("A5", "2024-01-10", "Prospecting", 100, c),
            ("A5", "2024-04-01 00:00", "Closed Won", 100, "2024-04-01"),  # closed exactly at the cutoff: known
            ("B1", "2024-01-04", "Prospecting", 100, c),
            ("B1", "2024-01-15 10:00", "Closed Lost", 100, "2024-01-15"),
            ("B2", "2024-03-01", "Prospecting", 100, c),
            ("B2", "2024-08-15 10:00", "Closed Won", 100, "2024-08-15"),
            ("C1", "2024-03-15", "Qualification", 100, c),
        ],
    )


def test_owner_win_rate_uses_only_deals_closed_by_the_date(hand):
    f = opportunity_features(hand, "2024-04-01", prior_strength=2.0).set_index("opportunity_id")
    assert sorted(f.index) == ["A3", "A4", "B2", "C1"]  # A5 closed at the cutoff
    # ann: A1 won, A2 lost, A5 won (A3 wins later, A4 reopened); bo: B1 lost; overall 2 won of 4
    assert f.loc["A3", ["owner_closed_deals", "owner_won_deals"]].tolist() == [3, 2]
    assert f.loc["B2", ["owner_closed_deals", "owner_won_deals"]].tolist() == [1, 0]
    assert f.loc["C1", ["owner_closed_deals", "owner_won_deals"]].tolist() == [0, 0]
    assert f.loc["A3", "owner_win_rate"] == pytest.approx((2 + 2 * 0.5) / (3 + 2))
    assert f.loc["B2", "owner_win_rate"] == pytest.approx((0 + 2 * 0.5) / (1 + 2))
    assert f.loc["C1", "owner_win_rate"] == pytest.approx(0.5)  # no record: the overall rate
    assert f.loc["A4", "stage_changes"] == 2 and f.loc["A4", "regressions"] == 0  # to Closed Lost and back
    later = opportunity_features(hand, "2024-06-01").set_index("opportunity_id")
    assert later.loc["A4", ["owner_closed_deals", "owner_won_deals"]].tolist() == [4, 3]  # A3 won in May
    # before anything closed there is no overall rate; with no prior the rate is the raw one or missing
    early = opportunity_features(hand, "2024-01-10", prior_strength=0.0)
    assert early["owner_win_rate"].isna().all() and (early["owner_closed_deals"] == 0).all()


def test_targets_by_hand(hand):
    f = opportunity_features(hand, "2024-04-01")
    ever = opportunity_targets(hand, f, horizon="ever").set_index("opportunity_id")
    assert ever["target"].to_dict() == pytest.approx({"A3": 1.0, "A4": np.nan, "B2": 1.0, "C1": np.nan}, nan_ok=True)
    assert ever["outcome"].to_dict() == {"A3": "won", "A4": "open", "B2": "won", "C1": "open"}
    assert ever.loc["B2", "outcome_at"] == pd.Timestamp("2024-08-15 10:00")
    assert ever.attrs["n_unknown"] == 2 and ever.attrs["known_by"] == hand.as_of
    period = opportunity_targets(hand, f, horizon="period").set_index("opportunity_id")  # FY2024Q2 ends 2024-07-01
    # B2 is won after the quarter; A4 and C1 were open when it ended, before the data end
    assert period["target"].to_dict() == {"A3": 1.0, "A4": 0.0, "B2": 0.0, "C1": 0.0}
    assert period.attrs["n_unknown"] == 0
    # known by 2024-06-01: the quarter has not ended; only A3 has an outcome
    early = opportunity_targets(hand, f, horizon="period", known_by="2024-06-01").set_index("opportunity_id")
    assert early["known"].to_dict() == {"A3": True, "A4": False, "B2": False, "C1": False}
    early_ever = opportunity_targets(hand, f, horizon="ever", known_by="2024-06-01").set_index("opportunity_id")
    assert early_ever["known"].sum() == 1 and early_ever.loc["A3", "target"] == 1.0
    with pytest.raises(ValueError, match="horizon"):
        opportunity_targets(hand, f, horizon="quarter")
    with pytest.raises(KeyError, match="period_end"):
        opportunity_targets(hand, f.drop(columns="period_end"), horizon="period")


def test_targets_equal_a_naive_loop(sample):
    f = opportunity_features(sample, ["2024-03-04", "2025-06-02"])
    hist = sample.stage_history.sort_values("changed_at", kind="stable")
    by_deal = {oid: rows for oid, rows in hist.groupby("opportunity_id")}
    process = sample.process
    end = sample.as_of
    for horizon in ("ever", "period"):
        t = opportunity_targets(sample, f, horizon=horizon)
        for i in range(0, len(f), 7):  # every 7th row
            rows = by_deal[f["opportunity_id"].iloc[i]]
            when = end if horizon == "ever" else min(f["period_end"].iloc[i] - pd.Timedelta(microseconds=1), end)
            stage = rows.loc[rows["changed_at"] <= when, "stage"].iloc[-1]
            closed = stage in process.closed_stages
            known = closed or (horizon == "period" and f["period_end"].iloc[i] <= end)
            assert t["known"].iloc[i] == known
            if known:
                assert t["target"].iloc[i] == float(stage == process.won_stage)


# ------------------------------------------------------------------------------------------------ the model
def test_model_beats_the_stage_baseline_on_later_snapshots(gen5k):
    start = time.perf_counter()
    cut = pd.Timestamp("2025-01-01")
    later = opportunity_features(gen5k, pd.date_range(cut, "2025-09-30", freq="W-MON"))
    aucs = {}
    for target in ("period", "ever"):
        model = OpportunityScoringModel(target=target).fit(gen5k, as_of=cut)
        y = opportunity_targets(gen5k, later, horizon=target)
        known = y["known"].to_numpy()
        p = model.predict_proba(later)
        assert p.index.equals(later.index) and p.between(0, 1).all()
        aucs[target] = (
            roc_auc(y["target"][known], p[known]),
            roc_auc(y["target"][known], later.loc[known, "stage_probability"]),
        )
    elapsed = time.perf_counter() - start
    auc, baseline = aucs["period"]
    assert auc > 0.7 and auc > baseline + 0.02, aucs
    # the final outcome depends on little beyond the stage in the generator: the model ranks, but not better
    assert aucs["ever"][0] > 0.7, aucs
    assert elapsed < 60


@pytest.mark.parametrize("max_rows", [None, 1_000])  # 1,000: a sample of the 2,538 training rows
def test_fit_uses_only_what_was_known_at_as_of(sample, max_rows):
    cut = pd.Timestamp("2024-11-15")  # the snapshots of October and November are in the current quarter
    settings = {"snapshot_freq": "MS", "target": "period", "max_rows": max_rows}
    model = OpportunityScoringModel(**settings).fit(sample, as_of=cut)
    on_past = OpportunityScoringModel(**settings).fit(known_at(sample, cut), as_of=cut)
    rewritten = OpportunityScoringModel(**settings).fit(_future_rewritten(sample, cut), cut)
    assert model.n_train_ == (model.n_known_ if max_rows is None else max_rows)
    f = opportunity_features(sample, cut)
    for other in (on_past, rewritten):
        pd.testing.assert_frame_equal(other.training_, model.training_)
        pd.testing.assert_series_equal(other.predict_proba(f), model.predict_proba(f))
    tr = model.training_
    assert (tr["as_of"] < cut).all() and tr["used"].any() and not tr["used"].all()  # the current quarter is left out
    assert (tr.loc[tr["used"], "share_known"] >= 0.9).all()
    assert model.n_known_ == int(tr.loc[tr["used"], "known"].sum()) and model.n_train_ == tr["sampled"].sum()


@pytest.mark.parametrize("later_activities", [True, False])
def test_fit_at_a_date_sees_the_data_known_at_that_date_when_other_tables_run_later(sample, later_activities):
    # close dates the history never recorded are unknown before the data's end: when only leads and submissions
    # run past the fit's date, a fit at that date must still see the deals as `known_at` of the whole data does
    # (the same rows of every table, hence the same end), not their current close dates; and activity features
    # only when some activity of a deal was known then
    data = replace(sample, stage_history=sample.stage_history.assign(close_date=pd.NaT))
    deals_end = data.as_of - pd.Timedelta(days=60)
    cut = known_at(data, deals_end)
    current = data.opportunities.set_index("opportunity_id")["close_date"]
    opps = cut.opportunities.assign(close_date=cut.opportunities["opportunity_id"].map(current).to_numpy())
    at = deals_end + pd.Timedelta(days=20)
    acts = data.activities
    after = acts.loc[(isin(acts["opportunity_id"], opps["opportunity_id"]) & (acts["occurred_at"] > at)).to_numpy()]
    later = replace(data, opportunities=opps, stage_history=cut.stage_history, activities=after)
    assert later.leads["created_at"].max() > at and len(after) > 100  # leads and activities run past the fit's date
    if not later_activities:
        later = replace(later, activities=after.iloc[:0])
    settings = {"snapshot_freq": "W-MON", "target": "period", "max_rows": None}
    model = OpportunityScoringModel(**settings).fit(later, as_of=at)
    on_past = OpportunityScoringModel(**settings).fit(known_at(later, at), as_of=at)
    pd.testing.assert_frame_equal(on_past.training_, model.training_)
    assert model.feature_names_ == on_past.feature_names_ and "days_since_activity" not in model.feature_names_
    f = opportunity_features(known_at(later, at), at)
    pd.testing.assert_series_equal(on_past.predict_proba(f), model.predict_proba(f))


def test_a_sample_of_max_rows_keeps_each_date_and_outcome_share(gen5k):
    """Above max_rows the fit learns from a sample in proportion to (date, outcome): calibrated without weights."""
    cut = pd.Timestamp("2025-01-01")
    full = OpportunityScoringModel(target="period", max_rows=None).fit(gen5k, as_of=cut)
    part = OpportunityScoringModel(target="period", max_rows=4_000).fit(gen5k, as_of=cut)
    assert part.n_known_ == full.n_known_ == full.n_train_ > 20_000 and part.n_train_ == 4_000
    pd.testing.assert_frame_equal(part.training_.drop(columns="sampled"), full.training_.drop(columns="sampled"))
    tr = part.training_
    # each date keeps its share of the training rows (two strata per date, each rounded to a row)
    share = np.where(tr["used"], tr["known"], 0) * (4_000 / full.n_known_)
    assert (
        np.abs(tr["sampled"] - share).max() <= 2
        and (full.training_["sampled"] == np.where(tr["used"], tr["known"], 0)).all()
    )
    assert part.base_rate_ == full.base_rate_
    assert part.summary.loc["learnt_from", "value"].endswith("a sample)")
    assert full.summary.loc["learnt_from", "value"] == f"{full.n_known_:,} (all)"
    # calibrated as the full fit: the mean probability on later snapshots matches the later win rate
    later = opportunity_features(gen5k, pd.date_range(cut, "2025-03-31", freq="W-MON"))
    y = opportunity_targets(gen5k, later, horizon="period")
    known = y["known"].to_numpy()
    rate = y.loc[known, "target"].mean()
    p_full, p_part = (m.predict_proba(later)[known].mean() for m in (full, part))
    assert abs(p_part - p_full) < 0.015 and abs(p_part - rate) < 0.03, (p_part, p_full, rate)
    # the same data and seed give the same sample; another seed another one
    again = OpportunityScoringModel(target="period", max_rows=4_000).fit(gen5k, as_of=cut)
    pd.testing.assert_series_equal(again.predict_proba(later), part.predict_proba(later))


def test_keyed_sample_keeps_each_stratum_share_whatever_part_holds_a_row():
    rng = np.random.default_rng(3)
    strata = rng.choice([0, 1, 2, 5], size=10_000, p=[0.6, 0.3, 0.0999, 0.0001])
    deal_hash = rng.integers(0, 2**63, size=10_000).astype(np.uint64)
    date_us = rng.integers(0, 50, size=10_000) * 7 * 86_400_000_000
    counts = np.bincount(strata, minlength=6)
    quota = _quotas(counts, 1_000)
    assert quota.sum() == 1_000 and (quota <= counts).all()
    # each stratum holds its share of the sample, to one row: the sample's weights are equal
    assert np.abs(quota - counts * 0.1).max() < 1

    def drawn(salt, parts):
        """Rows with the smallest keys of each stratum, found from each part's smallest (as fit_parts does)."""
        keys = _row_keys(deal_hash, date_us, salt)
        found = [_smallest(strata[p], keys[p], quota) for p in parts]
        s_all, k_all = _smallest(*(np.concatenate(x) for x in zip(*found, strict=True)), quota)
        ends = np.searchsorted(s_all, np.arange(len(quota)), side="right") - 1
        largest = np.where(quota > 0, k_all[np.maximum(ends, 0)], np.uint64(0))
        return np.flatnonzero((quota > 0)[strata] & (keys <= largest[strata]))

    whole = drawn(7, [np.arange(10_000)])
    assert len(whole) == 1_000 and (np.bincount(strata[whole], minlength=6) == quota).all()
    split = rng.integers(0, 3, size=10_000)
    np.testing.assert_array_equal(drawn(7, [np.flatnonzero(split == i) for i in range(3)]), whole)
    assert not np.array_equal(drawn(8, [np.arange(10_000)]), whole)  # another seed, another sample
    # the keys are uniform: each row about as likely to be drawn (no bias by deal or date)
    often = np.zeros(10_000)
    for salt in range(200):
        often[drawn(salt, [np.arange(10_000)])] += 1
    big = strata == 0
    assert abs(often[big].mean() / 200 - quota[0] / counts[0]) < 0.002


def test_features_of_some_rows_are_those_among_all_rows(sample):
    dates = pd.date_range("2024-01-01", "2024-06-30", freq="W-MON")
    full = opportunity_features(sample, dates)
    rows, date_idx = DealHistory.from_data(sample).snapshot_rows(dates)
    some = np.flatnonzero(np.random.default_rng(0).random(len(rows)) < 0.3)
    part = opportunity_features(sample, dates, rows=(rows[some], date_idx[some]))
    pd.testing.assert_frame_equal(part, full.iloc[some].reset_index(drop=True))


def test_score_pipeline_and_summary(sample):
    model = OpportunityScoringModel(snapshot_freq="MS").fit(sample, as_of="2025-01-01")
    scored = model.score_pipeline(sample)
    assert (scored["as_of"] == pd.Timestamp("2025-01-01")).all()
    assert len(scored) == len(pipeline_snapshots(sample, "2025-01-01"))
    assert scored["win_probability"].is_monotonic_decreasing
    assert np.allclose(scored["expected_amount"], scored["win_probability"] * scored["amount"])
    s = model.summary
    assert s.index.tolist() == [
        "target",
        "estimator",
        "as_of",
        "snapshot_dates",
        "first_snapshot",
        "last_snapshot",
        "training_rows",
        "learnt_from",
        "training_deals",
        "positives",
        "base_rate",
        "unknown_outcome_rows",
        "features",
        "activity_features",
        "leaky_features",
    ]
    assert s.loc["leaky_features", "value"] == "none" and model.leaky_features_ == {}
    assert s.loc["training_rows", "value"] == f"{model.n_train_:,}" and s["definition"].str.len().gt(5).all()
    assert "owner" not in model.feature_names_ and "owner_closed_deals" not in model.feature_names_
    assert {"stage", "days_in_stage", "close_date_pushes", "owner_win_rate"} <= set(model.feature_names_)
    assert set(STATE_FEATURES) | set(HISTORY_FEATURES) - {"owner_closed_deals"} <= set(model.feature_names_)


# ------------------------------------------------------------------------------------------------ contract
# The estimator contract shared by every model is tests/test_contract.py; what is particular to this model is here.
def test_estimator_settings_and_refusals(sample):
    m = OpportunityScoringModel(snapshot_freq="MS", estimator="logistic")
    m.fit(sample, as_of="2025-01-01")
    params = m.get_params()
    assert params["target"] == "ever" and params["snapshot_freq"] == "MS" and params["estimator"] == "logistic"
    again = clone(m).fit(sample, as_of="2025-01-01")
    f = opportunity_features(sample, "2025-01-01")
    pd.testing.assert_series_equal(again.predict_proba(f), clone(m).fit(sample, as_of="2025-01-01").predict_proba(f))
    with pytest.raises(KeyError, match="opportunity_features"):
        m.predict_proba(f.drop(columns="stage"))
    assert m.predict_proba(f.iloc[:0]).empty


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("target", "quarter"),
        ("period", "week"),
        ("snapshot_freq", "fortnightly"),
        ("lookback_days", 0),
        ("min_known", 1.5),
        ("prior_strength", -1),
        ("model_params", "fast"),
        ("max_rows", 999),
        ("max_rows", 2.5e5),
        ("max_rows", True),
    ],
)
def test_bad_settings_name_the_parameter(hand, param, value):
    with pytest.raises(ValueError, match=param):
        OpportunityScoringModel(**{param: value}).fit(hand)


def test_fit_errors(hand, sample):
    with pytest.raises(TypeError, match="CRMData"):
        OpportunityScoringModel().fit(sample.opportunities)
    with pytest.raises(ValueError, match="won and lost"):
        OpportunityScoringModel().fit(hand, as_of="2024-02-10")
    with pytest.raises(ValueError, match="no 'MS' snapshot date"):
        OpportunityScoringModel(snapshot_freq="MS").fit(hand, as_of="2024-01-03")
    with pytest.raises(ValueError, match="prior_strength"):
        opportunity_features(hand, "2024-04-01", prior_strength=-2)
    with pytest.raises(KeyError, match="no column 'tier'"):
        opportunity_features(hand, "2024-04-01", columns=["tier"])
    with pytest.raises(ValueError, match="changing state"):
        opportunity_features(hand, "2024-04-01", columns=["amount"])


def test_lookback_keeps_recent_snapshot_dates(sample):
    m = OpportunityScoringModel(snapshot_freq="W-MON", lookback_days=200, min_known=0.0).fit(sample, as_of="2025-01-01")
    assert m.training_["as_of"].min() >= pd.Timestamp("2025-01-01") - pd.Timedelta(days=200)
    assert len(m.training_) == 29


def test_features_read_the_intervals_of_the_history_given_and_rebuild_them_for_other_data(sample, monkeypatch):
    """With the history of the same data the snapshots come from its intervals (not rebuilt: millions of rows at 1M
    deals); with another data's history they are built again: the same features either way."""
    import salesforecast.snapshots as snapshots

    dates = pd.date_range("2024-01-01", periods=6, freq="MS")
    h = DealHistory.from_data(sample)
    expected = opportunity_features(sample, dates)
    built = []
    original = snapshots.encoded_intervals
    monkeypatch.setattr(snapshots, "encoded_intervals", lambda data: built.append(1) or original(data))
    pd.testing.assert_frame_equal(opportunity_features(sample, dates, history=h), expected)
    assert built == []
    # data with the same opportunities but another stage history: the history of the sample is not theirs, so
    # their snapshots are built again (the sample's intervals would give the sample's stages)
    other = replace(sample, stage_history=sample.stage_history.iloc[len(sample.stage_history) // 2 :])
    assert not h.built_from(other)
    f = opportunity_features(other, dates, history=h)
    assert built == [1]
    pd.testing.assert_series_equal(f["stage"], pipeline_snapshots(other, dates)["stage"], check_index=False)
    stale = pipeline_snapshots(other, dates, intervals=h.intervals)  # what reading the sample's would give
    assert len(built) == 2 and not stale.equals(pipeline_snapshots(other, dates))
    built.clear()
    past = known_at(sample, "2024-07-01")
    pd.testing.assert_frame_equal(
        opportunity_features(past, dates, history=DealHistory.from_data(past)), opportunity_features(past, dates)
    )
    built.clear()
    snap = pipeline_snapshots(past, dates, intervals=DealHistory.from_data(past).intervals)
    assert built == []  # read from the intervals given
    pd.testing.assert_frame_equal(snap, pipeline_snapshots(past, dates))


def test_fit_at_a_date_ends_its_data_at_a_lead_conversion_known_then(sample):
    """The fit cuts the leads trimmed to `LEAD_CUT_COLUMNS`: when the last event known at the fit's date is a lead's
    conversion, that cut ends there as the whole data's does (same leads), and the fit equals the fit on the cut."""
    data = replace(sample, stage_history=sample.stage_history.assign(close_date=pd.NaT))
    deals_end = data.as_of - pd.Timedelta(days=60)
    cut = known_at(data, deals_end)
    current = data.opportunities.set_index("opportunity_id")["close_date"]
    opps = cut.opportunities.assign(close_date=cut.opportunities["opportunity_id"].map(current).to_numpy())
    leads = cut.leads.copy()
    i = int(leads.index[~leads["converted"].to_numpy(dtype=bool)][0])
    converted = deals_end + pd.Timedelta(days=15)
    leads.loc[i, "converted"], leads.loc[i, "converted_at"] = True, converted
    # the fit's date a quarter later (the weeks between the deals' end and the conversion are learnt from) and
    # leads created after it, so the fit cuts the data
    at = deals_end + pd.Timedelta(days=120)
    after = leads.head(3).assign(lead_id=["LATE-1", "LATE-2", "LATE-3"], created_at=at + pd.Timedelta(days=10))
    after = after.assign(converted=False, converted_at=pd.NaT, opportunity_id=None)
    later = replace(cut, opportunities=opps, leads=pd.concat([leads, after], ignore_index=True))
    assert later.as_of > at and known_at(later, at).as_of == converted > cut.as_of
    # the cut of the leads trimmed to LEAD_CUT_COLUMNS is the same data: the same end, the same lead rows
    trimmed = known_at(replace(later, leads=later.leads[list(LEAD_CUT_COLUMNS)]), at)
    assert trimmed.as_of == converted
    pd.testing.assert_frame_equal(trimmed.leads, known_at(later, at).leads[list(LEAD_CUT_COLUMNS)])
    settings = {"snapshot_freq": "W-MON", "target": "period", "max_rows": None}
    model = OpportunityScoringModel(**settings).fit(later, as_of=at)
    on_past = OpportunityScoringModel(**settings).fit(known_at(later, at), as_of=at)
    pd.testing.assert_frame_equal(on_past.training_, model.training_)
    f = opportunity_features(known_at(later, at), at)
    pd.testing.assert_series_equal(on_past.predict_proba(f), model.predict_proba(f))


def _split(data: CRMData, labels: np.ndarray, n: int) -> list[CRMData]:
    """The data's deals split by `labels` (0..n-1, a part may hold none), each with all its history and activities."""
    opps, hist, acts = data.opportunities, data.stage_history, data.activities
    out = []
    for lab in range(n):
        ids = opps.loc[labels == lab, "opportunity_id"]
        out.append(
            replace(
                data,
                opportunities=opps[isin(opps["opportunity_id"], ids)].reset_index(drop=True),
                stage_history=hist[isin(hist["opportunity_id"], ids)].reset_index(drop=True),
                activities=acts[isin(acts["opportunity_id"], ids)].reset_index(drop=True),
            )
        )
    return out


class _Counted(LocalTasks):
    """LocalTasks that count the tasks run, by function name."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def map(self, fn, handles, *per_part, **shared):
        handles = list(handles)
        self.ran += [fn.__name__] * len(handles)
        return super().map(fn, handles, *per_part, **shared)


@pytest.mark.parametrize("freq", ["10D", "W-MON"])
def test_a_fit_over_parts_is_the_fit_of_the_whole_whatever_the_split(sample, freq):
    # parts split by creation date (the later part's own dates start later: a frequency not anchored to the calendar
    # counts again at the whole's dates), an empty part, a part none of whose deals has an activity (its features
    # still have the activity columns, zeros, as in one process), a sample drawn across the parts
    opps = sample.opportunities
    late = (opps["created_at"] > opps["created_at"].median()).to_numpy()
    labels = np.where(late, 1, np.where(np.arange(len(opps)) % 2 == 0, 0, 3))  # 2: empty
    no_acts = opps.loc[labels == 3, "opportunity_id"]
    data = replace(sample, activities=sample.activities[~isin(sample.activities["opportunity_id"], no_acts)])
    parts = _split(data, labels, 4)
    assert len(parts[2].opportunities) == 0 and not parts[3].activities["opportunity_id"].notna().any()
    later = opportunity_features(data, pd.date_range("2025-03-01", periods=6, freq="MS"))
    for as_of in (None, "2025-05-03"):
        settings = {"snapshot_freq": freq, "target": "period", "random_state": 0, "max_rows": 1_000}
        whole = OpportunityScoringModel(**settings).fit(data, as_of=as_of)
        tasks = _Counted()
        got = OpportunityScoringModel(**settings).fit_parts(parts, data.process, data.as_of, as_of, tasks=tasks)
        assert whole.uses_activities and got.feature_names_ == whole.feature_names_
        pd.testing.assert_frame_equal(got.training_, whole.training_)
        pd.testing.assert_series_equal(got.predict_proba(later), whole.predict_proba(later))
        # each part counted once, at its own dates, when they are the whole's (an anchored frequency); else twice
        assert tasks.ran.count("_part_training") == (8 if freq == "10D" else 4), tasks.ran


def test_a_fit_over_parts_follows_the_wholes_rules_for_fields_never_recorded():
    # close dates never recorded: an open deal's close date is unknown before the whole's end, which may be an
    # event of a table the parts do not hold (here forecast submissions weeks after the last deal event): `unknown`
    from salesforecast.datasets.shapes import history_from_dates
    from salesforecast.snapshots import HISTORY_FIELDS, unknown_before

    data = history_from_dates(load_sample())
    subs = data.forecast_submissions
    last = data.as_of
    late = subs.iloc[[-1, -1]].assign(submitted_at=[last + pd.Timedelta(days=36), last + pd.Timedelta(days=60)])
    data = replace(data, forecast_submissions=pd.concat([subs, late], ignore_index=True))
    parts = [
        replace(p, forecast_submissions=subs.iloc[:0], leads=p.leads.iloc[:0])
        for p in _split(data, np.arange(len(data.opportunities)) % 3, 3)
    ]
    unknown = {f: unknown_before(data, f) for f in HISTORY_FIELDS}
    later = opportunity_features(data, pd.date_range(last - pd.Timedelta(days=120), periods=5, freq="MS"))
    settings = {"snapshot_freq": "W-MON", "target": "period", "period": "month", "random_state": 0, "min_known": 0.0}
    settings |= {"lookback_days": 400, "model_params": {"validation": "random"}}
    for as_of in (None, last + pd.Timedelta(days=50)):
        whole = OpportunityScoringModel(**settings).fit(data, as_of=as_of)
        got = OpportunityScoringModel(**settings).fit_parts(parts, data.process, data.as_of, as_of, unknown=unknown)
        pd.testing.assert_series_equal(got.predict_proba(later), whole.predict_proba(later))
        # each part by its own rules: another model (its close dates known weeks before the whole's end)
        own = OpportunityScoringModel(**settings).fit_parts(parts, data.process, data.as_of, as_of)
        assert not own.predict_proba(later).equals(whole.predict_proba(later))
