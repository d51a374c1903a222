"""StageConversionModel: visits against a naive loop, recovery of the generator's truth, contract, leakage."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn.base import clone

from salesforecast._utils import DAY_US, isin, to_us
from salesforecast.calibration import compare_with_crm
from salesforecast.datasets import generate, load_sample
from salesforecast.history import DealHistory
from salesforecast.metrics import brier_score
from salesforecast.models import StageConversionModel, stage_visits
from salesforecast.models.stage_conversion import _life_table, _risk_deficit
from salesforecast.schema import CRMData, validate
from salesforecast.snapshots import known_at, pipeline_snapshots
from tests.factories import random_crm

DAY = pd.Timedelta(days=1)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def sample() -> CRMData:
    return load_sample()


@pytest.fixture(scope="module")
def gen20k():
    return generate(n_opportunities=20_000, seed=11)


@pytest.fixture(scope="module")
def model20k(gen20k) -> StageConversionModel:
    return StageConversionModel(n_bootstrap=200, random_state=0).fit(gen20k[0])


@pytest.fixture(scope="module")
def seg_model20k(gen20k) -> StageConversionModel:
    return StageConversionModel(segment="segment", n_bootstrap=0).fit(gen20k[0])


def _true_conditional_win(truth, stage: str, segment: str, days: np.ndarray) -> np.ndarray:
    """The generator's win probability of a deal that has sat `days` in `stage` (visit drawn afresh)."""
    sd = truth.stage_duration.set_index(["stage", "segment"]).loc[(stage, segment)]
    si = truth.win_probability.index.get_loc(stage)
    value = np.r_[truth.win_probability.to_numpy(), 1.0, 0.0]
    short = truth.stall_transition_matrix["short"].to_numpy()[si] @ value
    long_ = truth.stall_transition_matrix["long"].to_numpy()[si] @ value
    done = norm.cdf((np.log(np.maximum(days, 1e-9)) - sd["mu"]) / sd["sigma"])
    w_short = np.clip(0.8 - done, 0.0, None)
    w_long = np.where(done > 0.8, 1.0 - done, 0.2)
    return (w_short * short + w_long * long_) / (w_short + w_long)


# ------------------------------------------------------------------------------------------------ visits
def _naive_visits(data: CRMData, as_of: pd.Timestamp) -> pd.DataFrame:
    """Visits by plain loops: order each deal's changes, collapse runs of one stage, pair each run with the next."""
    p = data.process
    hist = data.stage_history.reset_index(drop=True)
    rows = []
    for opp in data.opportunities.itertuples(index=False):
        h = hist[hist["opportunity_id"] == opp.opportunity_id]
        h = h.assign(_seq=np.arange(len(h))).sort_values(["changed_at", "_seq"], kind="stable")
        if h.empty:
            if opp.is_closed:
                continue  # stage unknown until it closed
            changes = [(opp.created_at, opp.stage)]
        else:
            # a history starting more than a day after creation says nothing about the stage before it
            late = h["changed_at"].iloc[0] > opp.created_at + DAY
            changes = [
                (max(t, opp.created_at) if i > 0 or late else opp.created_at, s)
                for i, (t, s) in enumerate(zip(h["changed_at"], h["stage"], strict=True))
            ]
            if opp.is_closed and not any(s in p.closed_stages for s in h["stage"]):
                when = max(opp.close_date, h["changed_at"].max(), opp.created_at)
                changes.append((when, opp.stage))
        runs: list[tuple[pd.Timestamp, str]] = []
        for t, s in changes:
            if not runs or runs[-1][1] != s:
                runs.append((t, s))
        for i, (t, s) in enumerate(runs):
            if s not in p.open_stages:
                continue
            if i + 1 < len(runs):
                rows.append((opp.opportunity_id, s, t, runs[i + 1][1], (runs[i + 1][0] - t) / DAY, False))
            else:
                rows.append((opp.opportunity_id, s, t, None, (as_of - t) / DAY, True))
    cols = ["opportunity_id", "stage", "entered_at", "next_stage", "days", "censored"]
    return pd.DataFrame(rows, columns=cols)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 100_000))
def test_visits_equal_naive_loop_on_random_histories(seed):
    tables = random_crm(30, seed=seed)
    hist = tables["stage_history"]
    first = ~hist["opportunity_id"].duplicated()
    late = hist["opportunity_id"].str[1:].astype(int) % 4 == 0
    tables["stage_history"] = hist.loc[~(first & late)]  # some histories start after creation
    data = validate(tables)
    got = stage_visits(data)
    want = _naive_visits(data, data.as_of)
    assert len(got) == len(want)
    key = ["opportunity_id", "entered_at", "stage"]
    got = got.sort_values(key, kind="stable").reset_index(drop=True)
    want = want.sort_values(key, kind="stable").reset_index(drop=True)
    assert got["opportunity_id"].tolist() == want["opportunity_id"].tolist()
    assert got["stage"].tolist() == want["stage"].tolist()
    assert got["next_stage"].fillna("-").tolist() == want["next_stage"].fillna("-").tolist()
    assert (got["entered_at"].to_numpy() == want["entered_at"].to_numpy("datetime64[us]")).all()
    np.testing.assert_allclose(got["days"], want["days"].astype(float), atol=1e-9)
    assert got["censored"].tolist() == want["censored"].tolist()


def test_close_date_moves_are_not_transitions():
    opps = pd.DataFrame(
        {
            "opportunity_id": ["A"],
            "owner": ["ann"],
            "created_at": ["2024-01-01"],
            "stage": ["Closed Won"],
            "amount": [100],
            "close_date": ["2024-03-01"],
            "is_closed": [True],
            "is_won": [True],
        }
    )
    hist = pd.DataFrame(
        {
            "opportunity_id": ["A"] * 5,
            "changed_at": ["2024-01-01", "2024-01-05", "2024-01-09", "2024-01-20", "2024-03-01"],
            "stage": ["Prospecting", "Prospecting", "Needs Analysis", "Qualification", "Closed Won"],
            "close_date": ["2024-02-01", "2024-02-15", "2024-02-15", "2024-03-01", "2024-03-01"],
        }
    )
    v = stage_visits(validate({"opportunities": opps, "stage_history": hist}))
    assert v["stage"].tolist() == ["Prospecting", "Needs Analysis", "Qualification"]  # a skip, then a regression
    assert v["next_stage"].tolist() == ["Needs Analysis", "Qualification", "Closed Won"]
    assert v["days"].tolist() == [8.0, 11.0, 41.0]


def _loop_life_table(events: np.ndarray, cens: np.ndarray, deficit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Competing-risks life table of one stage, bin by bin."""
    nb, n_dest = events.shape
    at_risk = events.sum() + cens.sum()
    surv, F = 1.0, np.zeros((nb + 1, n_dest))
    for b in range(nb):
        eff = at_risk - deficit[b]
        h = events[b] / eff if eff > 0 else np.zeros(n_dest)
        F[b + 1] = F[b] + surv * h
        surv *= 1.0 - h.sum()
        at_risk -= events[b].sum() + cens[b]
    last = events[-1]
    alloc = last / last.sum() if last.sum() > 0 else F[-1] / F[-1].sum()
    P = F[-1] + surv * alloc
    F[-1] = P
    return F, P


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.floats(0.0, 0.6))
def test_life_table_equals_loop_reference(seed, nb, censored_share):
    rng = np.random.default_rng(seed)
    events = rng.poisson(3.0, size=(3, nb, 5)).astype(float)
    cens = rng.poisson(10.0 * censored_share, size=(3, nb)).astype(float)
    deficit = cens * rng.random((3, nb))
    events[0, -1] = 0.0  # a last bin without events
    events[0, 0] += 1.0
    F, P, observed = _life_table(events, cens, deficit)
    assert observed.all()
    for s in range(3):
        want_F, want_P = _loop_life_table(events[s], cens[s], deficit[s])
        np.testing.assert_allclose(F[s], want_F, atol=1e-12)
        np.testing.assert_allclose(P[s], want_P, atol=1e-12)
    np.testing.assert_allclose(P.sum(axis=-1), 1.0)


def _closed_only(data: CRMData) -> CRMData:
    opps = data.opportunities.loc[data.opportunities["is_closed"]]
    hist = data.stage_history.loc[isin(data.stage_history["opportunity_id"], opps["opportunity_id"])]
    return replace(data, opportunities=opps.reset_index(drop=True), stage_history=hist.reset_index(drop=True))


def test_without_censoring_rows_are_shares_of_completed_visits(sample):
    m = StageConversionModel(n_bootstrap=0).fit(_closed_only(sample))
    assert m.time_in_stage_["censored"].sum() == 0
    counts = m.transition_counts_
    np.testing.assert_allclose(m.transition_matrix_, counts.div(counts.sum(axis=1), axis=0), atol=1e-12)


def _loop_risk_deficit(key, days, dest, w) -> np.ndarray:
    out = np.zeros(len(key))
    for i in np.flatnonzero(dest < 0):
        same = (key == key[i]) & (dest >= 0)
        total = w[same].sum()
        if total > 0:
            out[i] = w[i] * w[same & (days > days[i])].sum() / total
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_risk_deficit_equals_loop_reference(seed):
    rng = np.random.default_rng(seed)
    n = 60
    key = rng.integers(0, 4, n)
    days = rng.integers(0, 8, n)  # durations in whole microseconds; ties between events and censorings
    dest = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 3, n))
    w = rng.random(n) + 0.1 if seed % 2 else np.full(n, 0.5)  # a weight per visit, or one for all
    np.testing.assert_allclose(_risk_deficit(key, days, dest, w), _loop_risk_deficit(key, days, dest, w), atol=1e-12)


def test_censored_long_visits_are_not_dropped():
    """Half the deals win after a day, half lose after 100 days; the last losers are still open at as_of."""
    n = 400
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="D")
    win = np.arange(n) % 2 == 0
    closed_at = created + pd.to_timedelta(np.where(win, 1, 100), unit="D")
    as_of = pd.Timestamp("2024-01-01") + pd.Timedelta(days=n)
    done = closed_at < as_of
    ids = [f"O{i:04d}" for i in range(n)]
    final = np.where(done, np.where(win, "Closed Won", "Closed Lost"), "Negotiation/Review")
    opps = pd.DataFrame(
        {
            "opportunity_id": ids,
            "owner": "ann",
            "created_at": created,
            "stage": final,
            "amount": 100.0,
            "close_date": closed_at.normalize(),
            "is_closed": done,
            "is_won": done & win,
        }
    )
    hist = pd.concat(
        [
            pd.DataFrame({"opportunity_id": ids, "changed_at": created, "stage": "Negotiation/Review"}),
            pd.DataFrame({"opportunity_id": np.array(ids)[done], "changed_at": closed_at[done], "stage": final[done]}),
        ],
        ignore_index=True,
    )
    data = validate({"opportunities": opps, "stage_history": hist})
    # the deals only ever sit in one stage; the others are named as words, not as a Python list
    with pytest.warns(UserWarning, match=r"no completed visit to stage\(s\) Prospecting, Qualification, [^\[']+: "):
        m = StageConversionModel(n_bootstrap=0).fit(data, as_of=as_of)
    v = stage_visits(data, as_of=as_of)
    completed = v.loc[~v["censored"]]
    naive = (completed["next_stage"] == "Closed Won").mean()
    assert naive > 0.56  # dropping the open visits drops only losers
    assert m.win_probability_["Negotiation/Review"] == pytest.approx(0.5, abs=1e-9)


# ------------------------------------------------------------------------------------------------ recovery
def test_win_probability_recovered_within_002(model20k, gen20k):
    truth = gen20k[1]
    err = (model20k.win_probability_ - truth.win_probability).abs()
    assert err.max() < 0.02, err.round(4).to_dict()


def test_transition_matrix_within_sampling_error(model20k, gen20k):
    truth = gen20k[1].transition_matrix
    est = model20k.transition_matrix_
    assert list(est.index) == list(truth.index) and list(est.columns) == list(truth.columns)
    n = model20k.n_visits_.to_numpy()[:, None]
    se = np.sqrt(truth.to_numpy() * (1.0 - truth.to_numpy()) / n)
    assert (np.abs(est.to_numpy() - truth.to_numpy()) <= 4.0 * se + 0.003).all()
    np.testing.assert_allclose(est.sum(axis=1), 1.0)


def test_intervals_bracket_the_estimate(model20k):
    ci = model20k.win_probability_ci_
    assert (ci["lower"] <= model20k.win_probability_).all()
    assert (model20k.win_probability_ <= ci["upper"]).all()
    assert ((ci["upper"] - ci["lower"]) < 0.06).all()
    assert model20k.bootstrap_win_probability_.shape == (200, 8)


def test_absorbing_chain_identities(model20k):
    m = model20k
    k = len(m.process_.open_stages)
    P = m.transition_matrix_.to_numpy()
    Q = P[:, :k]
    # B = R + Q B and E = m + Q E (first-step analysis)
    B = m.absorption_probability_.to_numpy()
    np.testing.assert_allclose(B, P[:, k:] + Q @ B, atol=1e-10)
    E = m.expected_days_to_close_.to_numpy()
    np.testing.assert_allclose(E, m.time_in_stage_["mean_days"].to_numpy() + Q @ E, rtol=1e-10)
    np.testing.assert_allclose(m.fundamental_matrix_.to_numpy() @ (np.eye(k) - Q), np.eye(k), atol=1e-10)


def _kaplan_meier_quantile(days: np.ndarray, completed: np.ndarray, q: float) -> float:
    """Duration at which the Kaplan-Meier survival curve first falls to 1 - q (censored visits at risk until then)."""
    surv = 1.0
    for t in np.unique(days[completed]):
        at_risk = (days >= t).sum()
        surv *= 1.0 - ((days == t) & completed).sum() / at_risk
        if surv <= 1.0 - q:
            return float(t)
    return float("nan")


def test_time_in_stage_agrees_with_kaplan_meier(model20k, gen20k):
    v = stage_visits(gen20k[0])
    t = model20k.time_in_stage_
    assert (t["visits"] == t["completed"] + t["censored"]).all()
    for stage in ("Prospecting", "Perception Analysis"):
        one = v.loc[v["stage"] == stage]
        days, completed = one["days"].to_numpy(), ~one["censored"].to_numpy()
        for col, q in (("median_days", 0.5), ("p75_days", 0.75), ("p90_days", 0.9)):
            assert t.loc[stage, col] == pytest.approx(_kaplan_meier_quantile(days, completed, q), rel=0.03)
        # dropping the open visits would shorten the tail
        assert t.loc[stage, "p90_days"] > np.quantile(days[completed], 0.9)
    done = v.loc[~v["censored"]].groupby("stage")["days"]
    np.testing.assert_allclose(t["mean_days"], done.mean().reindex(t.index), rtol=0.1)


def test_predict_proba_falls_with_days_in_stage_as_the_truth_says(seg_model20k, gen20k):
    truth = gen20k[1]
    p80 = truth.stage_duration.set_index(["stage", "segment"])["p80_days"]
    for stage in ("Needs Analysis", "Proposal/Price Quote"):
        for segment in ("SMB", "Mid-Market"):
            days = np.array([0.0, 0.5, 1.5]) * p80[(stage, segment)]
            snap = pd.DataFrame({"stage": stage, "segment": segment, "days_in_stage": days})
            got = seg_model20k.predict_proba(snap).to_numpy()
            want = _true_conditional_win(truth, stage, segment, days)
            assert got[0] > got[1] > got[2]
            np.testing.assert_allclose(got, want, atol=0.03)
            assert want[0] - want[2] > 0.08  # the truth does fall: a real effect was recovered


def test_predict_proba_without_segments(model20k):
    snap = pd.DataFrame(
        {
            "stage": ["Prospecting", "Prospecting", "Closed Won", "Closed Lost", None, "Prospecting"],
            "days_in_stage": [0.0, 200.0, 3.0, 3.0, 3.0, np.nan],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    p = model20k.predict_proba(snap)
    assert p.index.tolist() == snap.index.tolist()
    assert p[10] == pytest.approx(model20k.win_probability_["Prospecting"])
    assert p[10] - p[11] > 0.03  # deals that sat long in Prospecting lose more
    assert (p[12], p[13]) == (1.0, 0.0)
    assert np.isnan(p[14])
    assert p[15] == p[10]  # missing days: a fresh visit
    fresh = model20k.predict_proba(snap.drop(columns="days_in_stage"))
    assert fresh[11] == p[10]


def test_predict_close_within_is_monotone_and_below_predict_proba(model20k, gen20k):
    data = gen20k[0]
    as_of = pd.Timestamp("2025-03-01")
    snap = pipeline_snapshots(data, as_of).sample(400, random_state=0)
    pp = model20k.predict_proba(snap).to_numpy()
    ends = [as_of - DAY, as_of, as_of + 0.2 * DAY, as_of + 7 * DAY, as_of + 45 * DAY, as_of + 91 * DAY]
    ends += [as_of + 365 * DAY, as_of + 3000 * DAY]
    grid = np.column_stack([model20k.predict_close_within(snap, e).to_numpy() for e in ends])
    assert (grid[:, :2] == 0).all()
    assert (np.diff(grid, axis=1) >= -1e-12).all()
    assert (grid <= pp[:, None] + 1e-12).all()
    np.testing.assert_allclose(grid[:, -1], pp, atol=0.01)
    # one end date per row gives the same as one call per end date
    per_row = np.array(ends[2:6] * 100)
    got = model20k.predict_close_within(snap, per_row).to_numpy()
    want = grid[np.arange(400), 2 + np.arange(400) % 4]
    np.testing.assert_allclose(got, want, atol=1e-12)
    no_as_of = snap.drop(columns="as_of")
    np.testing.assert_allclose(model20k.predict_close_within(no_as_of, ends[4], as_of=as_of), grid[:, 4])
    with pytest.raises(ValueError, match="as_of"):
        model20k.predict_close_within(no_as_of, ends[4])


def test_predict_close_within_matches_realised_wins(gen20k):
    data = gen20k[0]
    cutoff = pd.Timestamp("2024-10-01")
    m = StageConversionModel(n_bootstrap=0, segment="segment").fit(data, as_of=cutoff)
    snap = pipeline_snapshots(data, cutoff)
    h = data.stage_history
    won_at = snap["opportunity_id"].map(h.loc[h["stage"] == "Closed Won"].groupby("opportunity_id")["changed_at"].min())
    for days in (30, 91, 182):
        end = cutoff + days * DAY
        p = m.predict_close_within(snap, end).to_numpy()
        actual = int((won_at < end).sum())
        sd = np.sqrt((p * (1 - p)).sum())
        assert abs(p.sum() - actual) < 4 * sd + 0.08 * p.sum(), (days, p.sum(), actual)


# ------------------------------------------------------------------------------------------------ segments
def _with_cohort(data: CRMData, n_tiny: int, seed: int = 0) -> CRMData:
    opps = data.opportunities.copy()
    rng = np.random.default_rng(seed)
    tiny = rng.choice(len(opps), size=n_tiny, replace=False)
    cohort = np.full(len(opps), "Main", dtype=object)
    cohort[tiny] = "Tiny"
    opps["cohort"] = pd.Series(cohort, dtype="str")
    return replace(data, opportunities=opps)


def test_segments_are_shrunk_toward_the_overall_model(sample):
    # closed deals only: without censoring a life table is exactly the shares of completed visits, whatever its bins
    data = _with_cohort(_closed_only(sample), 60)
    fits = {
        kappa: StageConversionModel(segment="cohort", shrinkage=kappa, n_bootstrap=0).fit(data)
        for kappa in (0.0, 20.0, 1e12)
    }
    overall = fits[20.0].transition_matrix_
    tiny = {kappa: m.segment_transition_matrix_.loc["Tiny"] for kappa, m in fits.items()}
    # infinite prior: the overall rows; no prior: the segment alone
    np.testing.assert_allclose(tiny[1e12], overall, atol=1e-9)
    alone_opps = data.opportunities.loc[data.opportunities["cohort"] == "Tiny"]
    alone = replace(
        data,
        opportunities=alone_opps,
        stage_history=data.stage_history.loc[isin(data.stage_history["opportunity_id"], alone_opps["opportunity_id"])],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stages the tiny segment never completes
        solo = StageConversionModel(n_bootstrap=0).fit(alone, as_of=data.as_of)
    seen = solo.transition_counts_.sum(axis=1) > 0
    np.testing.assert_allclose(tiny[0.0].loc[seen], solo.transition_matrix_.loc[seen], atol=1e-12)
    # 20 pseudo-visits: the Dirichlet posterior mean between the two
    n = solo.n_visits_.to_numpy()[:, None]
    want = (n * tiny[0.0].to_numpy() + 20.0 * overall.to_numpy()) / (n + 20.0)
    np.testing.assert_allclose(tiny[20.0].loc[seen], want[seen.to_numpy()], atol=1e-12)
    gap = {
        kappa: (m.segment_win_probability_.loc["Tiny"] - m.win_probability_).abs().sum() for kappa, m in fits.items()
    }
    assert gap[1e12] < 1e-9 < gap[20.0] < gap[0.0]


def test_segmented_predictions_use_the_segment(seg_model20k):
    m = seg_model20k
    assert m.segment_win_probability_.index.tolist() == ["Enterprise", "Mid-Market", "SMB"]
    snap = pd.DataFrame({"stage": "Qualification", "segment": ["SMB", "Enterprise", "Nowhere", None]})
    p = m.predict_proba(snap)
    assert p[0] == pytest.approx(m.segment_win_probability_.loc["SMB", "Qualification"])
    assert p[1] == pytest.approx(m.segment_win_probability_.loc["Enterprise", "Qualification"])
    assert p[2] == p[3] == pytest.approx(m.win_probability_["Qualification"])  # unknown segment: overall
    with pytest.raises(ValueError, match="segment"):
        m.predict_proba(snap.drop(columns="segment"))


# ------------------------------------------------------------------------------------------------ options
def test_window_keeps_visits_entered_in_the_window(sample):
    m = StageConversionModel(window_months=6, n_bootstrap=0).fit(sample)
    v = stage_visits(sample)
    inside = v["entered_at"] >= sample.as_of - pd.DateOffset(months=6)
    assert m.n_visits_.sum() == inside.sum()
    assert 0 < m.n_visits_.sum() < len(v)
    with pytest.raises(ValueError, match="no stage visits"):
        StageConversionModel(window_months=1, n_bootstrap=0).fit(sample, as_of=sample.as_of + 400 * DAY)


def test_half_life_weights(sample):
    plain = StageConversionModel(n_bootstrap=0).fit(sample)
    flat = StageConversionModel(half_life_days=1e12, n_bootstrap=0).fit(sample)
    recent = StageConversionModel(half_life_days=60, n_bootstrap=0).fit(sample)
    pd.testing.assert_series_equal(flat.win_probability_, plain.win_probability_, atol=1e-9)
    assert not np.allclose(recent.win_probability_, plain.win_probability_, atol=1e-4)
    assert recent.n_visits_.equals(plain.n_visits_)  # counts are not weights


def test_summary(sample):
    m = StageConversionModel(n_bootstrap=50).fit(sample)
    s = m.summary
    assert s.columns.tolist() == [
        "stage",
        "entered",
        "converted",
        "conversion_rate",
        "closed",
        "won",
        "observed_win_rate",
        "crm_probability",
        "win_probability",
        "lower",
        "upper",
        "difference",
        "learned_from",
        "median_days",
        "p90_days",
    ]
    assert (s["learned_from"] == "history").all()
    assert s["stage"].tolist() == sample.process.open_stages
    v = stage_visits(sample)
    entered = v.groupby("stage")["opportunity_id"].nunique().reindex(s["stage"]).to_numpy()
    assert s["entered"].tolist() == entered.tolist()
    later = v["next_stage"].map(sample.process.order) > v["stage"].map(sample.process.order)
    later &= v["next_stage"] != "Closed Lost"
    conv = v.loc[later].groupby("stage")["opportunity_id"].nunique().reindex(s["stage"]).fillna(0)
    assert s["converted"].tolist() == conv.astype(int).tolist()
    np.testing.assert_allclose(s["difference"], s["win_probability"] - s["crm_probability"])
    assert (s["lower"] <= s["win_probability"]).all() and (s["win_probability"] <= s["upper"]).all()
    assert (s["observed_win_rate"].between(0, 1)).all()


def test_fit_on_a_tiny_messy_folder_falls_back_to_crm_defaults(crm_data):
    with pytest.warns(UserWarning, match="no completed visit"):
        m = StageConversionModel(n_bootstrap=20).fit(crm_data)
    assert m.win_probability_.between(0, 1).all()
    assert m.transition_matrix_.loc["Value Proposition", "Closed Won"] == pytest.approx(0.5)  # CRM default 50%


def test_summary_presents_a_stage_no_deal_left_as_the_crm_default_not_learned(crm_data):
    """A stage without a completed visit predicts with the CRM default (the model's fallback) but the summary shows
    no learned probability, interval or difference for it (they were the default with a zero-width interval)."""
    with pytest.warns(UserWarning, match="no completed visit"):
        m = StageConversionModel(n_bootstrap=20).fit(crm_data)
    s = m.summary.set_index("stage")
    row = s.loc["Value Proposition"]
    assert row["learned_from"] == "no deal left it: CRM default"
    assert np.isnan(row[["win_probability", "lower", "upper", "difference"]].astype(float)).all()
    assert m.win_probability_["Value Proposition"] == pytest.approx(0.5)  # the prediction keeps the fallback
    seen = s[s["learned_from"] == "history"]
    assert len(seen) and seen["win_probability"].notna().all()


# ------------------------------------------------------------------------------------------------ contract
# The estimator contract shared by every model is tests/test_contract.py; what is particular to this model is here.
def test_estimator_settings(sample):
    m = StageConversionModel(n_bootstrap=10).fit(sample)
    params = m.get_params()
    assert params["n_bootstrap"] == 10 and params["shrinkage"] == 20.0 and params["segment"] is None
    assert set(params) == {
        "process",
        "window_months",
        "half_life_days",
        "segment",
        "shrinkage",
        "n_bootstrap",
        "ci",
        "duration_bins",
        "random_state",
    }
    assert "StageConversionModel(" in repr(m)
    # same settings and data: the same fit, bootstrap included
    first, again = clone(m).fit(sample), clone(m).fit(sample)
    pd.testing.assert_frame_equal(again.win_probability_ci_, first.win_probability_ci_)


def test_fit_accepts_tables_by_keyword(sample):
    by_data = StageConversionModel(n_bootstrap=0).fit(sample)
    by_tables = StageConversionModel(n_bootstrap=0, process=sample.process).fit(
        stage_history=sample.stage_history, opportunities=sample.opportunities, as_of=sample.as_of
    )
    pd.testing.assert_frame_equal(by_tables.transition_matrix_, by_data.transition_matrix_)
    # the data's end counts every table (its last activity here), the two tables' only theirs: open deals' exposure
    # runs to a different end, so the fits differ unless the end is given
    assert sample.activities["occurred_at"].max() > sample.stage_history["changed_at"].max()
    with pytest.raises(TypeError, match="both"):
        StageConversionModel().fit(stage_history=sample.stage_history)
    with pytest.raises(TypeError, match="not both"):
        StageConversionModel().fit(sample, opportunities=sample.opportunities)
    with pytest.raises(TypeError, match="CRMData"):
        StageConversionModel().fit(sample.opportunities)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("window_months", 0),
        ("half_life_days", -3),
        ("shrinkage", -1.0),
        ("n_bootstrap", 2.5),
        ("ci", 1.0),
        ("duration_bins", 0),
        ("segment", 3),
    ],
)
def test_bad_settings_name_the_parameter(sample, param, value):
    with pytest.raises(ValueError, match=param):
        StageConversionModel(**{param: value}).fit(sample)


def test_unknown_segment_column(sample):
    with pytest.raises(ValueError, match="no column 'tier'"):
        StageConversionModel(segment="tier").fit(sample)


# ------------------------------------------------------------------------------------------------ leakage-free backtest
def test_known_at_rebuilds_the_pipeline_at_the_cutoff(sample):
    cutoff = pd.Timestamp("2024-05-15 12:00")
    past = known_at(sample, cutoff)
    assert past.stage_history["changed_at"].max() <= cutoff
    assert past.opportunities["created_at"].max() <= cutoff
    cols = ["opportunity_id", "stage", "stage_entered_at", "days_in_stage", "amount", "close_date"]
    pd.testing.assert_frame_equal(pipeline_snapshots(past, cutoff)[cols], pipeline_snapshots(sample, cutoff)[cols])
    state = past.opportunities.set_index("opportunity_id")
    assert (state["is_closed"] == sample.process.is_closed(state["stage"])).all()
    assert (state["is_won"] == sample.process.is_won(state["stage"])).all()


def _awkward_tables(n: int, seed: int, bare: bool = False) -> dict[str, pd.DataFrame]:
    """`random_crm` with the history shapes the rules must handle: closed deals whose history never closes them,
    histories that start after creation, and (with `bare`) deals without any history."""
    tables = random_crm(n, seed=seed)
    hist = tables["stage_history"]
    odd = hist["opportunity_id"].str[1:].astype(int)
    no_terminal = hist["stage"].isin(["Closed Won", "Closed Lost"]) & (odd % 3 == 0)  # closed, history not
    late = ~hist["opportunity_id"].duplicated() & (odd % 4 == 1)  # history starts after creation
    drop = no_terminal | late | ((odd % 7 == 2) if bare else False)
    tables["stage_history"] = hist.loc[~drop]
    return tables


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 100_000))
def test_known_at_agrees_with_snapshots_on_random_histories(seed):
    data = validate(_awkward_tables(30, seed))
    cols = ["opportunity_id", "stage", "stage_entered_at"]
    for cutoff in [pd.Timestamp(x) for x in ("2024-02-01", "2024-03-10 12:00", "2024-05-01")]:
        want = pipeline_snapshots(data, cutoff)[cols]
        # left out of known_at: unknown stages, and deals whose first change (made within a day of creation, so
        # the snapshot places them in its stage from creation on) comes after the cutoff
        first = data.stage_history.groupby("opportunity_id")["changed_at"].min()
        not_yet = want["opportunity_id"].map(first) > cutoff
        want = want.loc[want["stage"].notna() & ~not_yet].reset_index(drop=True)
        got = pipeline_snapshots(known_at(data, cutoff), cutoff)[cols]
        pd.testing.assert_frame_equal(got, want)


def _future_rewritten(data: CRMData, cutoff: pd.Timestamp) -> CRMData:
    """Everything after the cutoff replaced by a different future: every later change becomes a loss."""
    h = data.stage_history.copy()
    later = h["changed_at"] > cutoff
    h.loc[later, "stage"] = "Closed Lost"
    opps = data.opportunities.copy()
    moved = isin(opps["opportunity_id"], h.loc[later, "opportunity_id"])
    opps.loc[moved, "stage"] = "Closed Lost"
    opps.loc[moved, "is_closed"] = True
    opps.loc[moved, "is_won"] = False
    return replace(data, opportunities=opps, stage_history=h)


def test_compare_with_crm_fits_only_on_the_past(sample):
    cutoff = pd.Timestamp("2024-07-01")
    settings_ = StageConversionModel(n_bootstrap=30, segment="segment")
    result = compare_with_crm(sample, cutoff, model=settings_)
    assert not hasattr(settings_, "win_probability_")  # the template is cloned, not fitted
    on_past = clone(settings_).fit(known_at(sample, cutoff), as_of=cutoff)
    on_other_future = clone(settings_).fit(_future_rewritten(sample, cutoff), as_of=cutoff)
    for other in (on_past, on_other_future):
        pd.testing.assert_frame_equal(result.model.transition_matrix_, other.transition_matrix_)
        pd.testing.assert_frame_equal(result.model.win_probability_ci_, other.win_probability_ci_)
        pd.testing.assert_frame_equal(result.model.segment_win_probability_, other.segment_win_probability_)
        pd.testing.assert_frame_equal(result.model.conditional_win_probability_, other.conditional_win_probability_)
        assert result.model.as_of_ == other.as_of_ == cutoff


def test_compare_with_crm_scores(sample):
    result = compare_with_crm(sample, "2024-07-01", n_bins=5)
    s = result.scores
    assert s.index.tolist() == ["crm_default", "learned"]
    assert s.columns.tolist() == [
        "n",
        "brier",
        "reliability",
        "resolution",
        "uncertainty",
        "mean_predicted",
        "observed_rate",
    ]
    pred = result.predictions
    assert (s["n"] == len(pred)).all() and len(pred) > 50
    for method in ("crm_default", "learned"):
        assert s.loc[method, "brier"] == pytest.approx(brier_score(pred["won"], pred[method]))
    open_then = pipeline_snapshots(sample, "2024-07-01")["opportunity_id"]
    assert isin(pred["opportunity_id"], open_then).all()
    outcome = sample.opportunities.set_index("opportunity_id").loc[pred["opportunity_id"]]
    assert outcome["is_closed"].all() and (outcome["is_won"].to_numpy() == pred["won"].to_numpy()).all()
    cal = result.calibration
    assert set(cal["method"]) == {"crm_default", "learned"}
    assert cal.groupby("method")["count"].sum().eq(len(pred)).all()
    assert s.loc["learned", "reliability"] < s.loc["crm_default", "reliability"]
    # nothing to score is an empty comparison with its reason, not an error (tests/test_crm_check.py)
    assert compare_with_crm(sample, sample.opportunities["created_at"].min() - DAY).reason.startswith(
        "No deal was open"
    )


# ------------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_intervals_cover_the_truth_at_about_their_level():
    covered = []
    for seed in range(40):
        data, truth = generate(n_opportunities=4000, seed=1000 + seed)
        m = StageConversionModel(n_bootstrap=200, ci=0.9, random_state=seed).fit(data)
        ci = m.win_probability_ci_
        covered.append(((ci["lower"] <= truth.win_probability) & (truth.win_probability <= ci["upper"])).to_numpy())
    rate = np.mean(covered)
    # 320 intervals, correlated within a data set: a wide binomial band around 0.9
    assert 0.8 <= rate <= 0.97, rate


def _fitted_state(model: StageConversionModel) -> dict:
    out = {
        name: getattr(model, name)
        for name in (
            "transition_matrix_",
            "transition_counts_",
            "win_probability_",
            "conditional_win_probability_",
            "time_in_stage_",
            "expected_days_to_close_",
            "segment_win_probability_",
        )
    }
    out["summary"] = model.summary
    return out


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 100_000))
def test_fit_at_a_date_equals_fit_on_the_data_known_then(seed):
    # fit(as_of=t) cuts the runs of the whole history at t instead of rebuilding known_at(data, t): the two must
    # agree, also for histories that start after creation, closed deals whose history never closes them, deals
    # without history (open, closed before t, closed after t) and cutoffs inside a day of a creation
    tables = _awkward_tables(40, seed, bare=True)
    hist = tables["stage_history"].copy()
    # some deals' first change comes half a day after their creation (a cutoff in between: not known yet)
    first = ~hist["opportunity_id"].duplicated()
    slow = first & (hist["opportunity_id"].str[1:].astype(int) % 5 == 3)
    hist.loc[slow, "changed_at"] = pd.to_datetime(hist.loc[slow, "changed_at"]) + pd.Timedelta(hours=12)
    tables["stage_history"] = hist
    data = validate(tables)
    assert len(data.quarantine) == 0
    cutoffs = [pd.Timestamp(x) for x in ("2024-02-01", "2024-03-10 12:00", "2024-05-01")]
    created = data.opportunities.set_index("opportunity_id")["created_at"]
    slow_ids = hist.loc[slow, "opportunity_id"]
    cutoffs += [created[slow_ids.iloc[0]] + pd.Timedelta(hours=6)]  # between a creation and its first change
    for cutoff in cutoffs:
        for kw in ({"segment": "team"}, {"half_life_days": 90.0}):
            try:
                want = StageConversionModel(n_bootstrap=10, **kw).fit(known_at(data, cutoff), as_of=cutoff)
            except ValueError:
                with pytest.raises(ValueError):
                    StageConversionModel(n_bootstrap=10, **kw).fit(data, as_of=cutoff)
                continue
            got = StageConversionModel(n_bootstrap=10, **kw).fit(data, as_of=cutoff)
            a, b = _fitted_state(got), _fitted_state(want)
            for name in a:
                if a[name] is None:
                    assert b[name] is None
                elif isinstance(a[name], pd.DataFrame):
                    pd.testing.assert_frame_equal(a[name], b[name], rtol=1e-12, atol=1e-12)
                else:
                    pd.testing.assert_series_equal(a[name], b[name], rtol=1e-12, atol=1e-12)
            pd.testing.assert_frame_equal(got.win_probability_ci_, want.win_probability_ci_, rtol=1e-12, atol=1e-12)
            snap = pipeline_snapshots(data, cutoff, columns=["team"])
            np.testing.assert_allclose(
                got.predict_close_within(snap, cutoff + pd.Timedelta(days=40)).to_numpy(),
                want.predict_close_within(snap, cutoff + pd.Timedelta(days=40)).to_numpy(),
                rtol=1e-12,
                atol=1e-12,
            )


@pytest.mark.parametrize("as_of", ["2024-06-01", "2025-06-01"])
def test_fit_history_at_a_date_equals_fit_on_the_data_known_then(sample, as_of):
    history = DealHistory.from_data(sample)
    a = StageConversionModel(n_bootstrap=0, segment="segment").fit_history(history, as_of)
    b = StageConversionModel(n_bootstrap=0, segment="segment").fit(sample, as_of=as_of)
    c = StageConversionModel(n_bootstrap=0, segment="segment").fit(known_at(sample, as_of), as_of=as_of)
    pd.testing.assert_frame_equal(a.transition_matrix_, b.transition_matrix_)
    pd.testing.assert_frame_equal(a.transition_matrix_, c.transition_matrix_)
    snap = pipeline_snapshots(sample, as_of, columns=["segment"])
    np.testing.assert_array_equal(a.predict_proba(snap), b.predict_proba(snap))
    code, group = sample.process.stage_codes(snap["stage"]), a.segment_groups(pd.unique(snap["segment"]))
    group = group[pd.factorize(snap["segment"])[0]]
    start = np.full(len(snap), to_us(as_of))
    end = start + 90 * DAY_US
    q = a.predict_close_within_codes(code, group, snap["days_in_stage"].to_numpy(), start, end)
    np.testing.assert_array_equal(q, a.predict_close_within(snap, pd.Timestamp(as_of) + pd.Timedelta(days=90)))


def test_fit_history_needs_a_history(sample):
    with pytest.raises(TypeError, match="DealHistory"):
        StageConversionModel().fit_history(sample)
    with pytest.raises(ValueError, match="no column 'nope'"):
        StageConversionModel(segment="nope").fit_history(DealHistory.from_data(sample))


def test_fit_history_refuses_a_process_map_other_than_the_historys(sample):
    from salesforecast.io.hubspot import hubspot_process

    history = DealHistory.from_data(sample)
    with pytest.raises(ValueError, match="is not the history's"):
        StageConversionModel(n_bootstrap=0, process=hubspot_process()).fit_history(history)
    for same in (None, "default", sample.process):  # the history's own map, however it is named
        StageConversionModel(n_bootstrap=0, process=same).fit_history(history, "2025-01-01")


def test_report_shows_a_stage_no_deal_left_as_the_crm_default(tmp_path, crm_folder):
    """02 on the tiny folder: the stage without a completed visit reads "no deal left it: CRM default" with "–" for
    its learned probability, not the default with a zero-width interval presented as learned."""
    import re

    from salesforecast.reports import DEFAULT_CONFIG, run_reports

    result = run_reports(
        DEFAULT_CONFIG,
        tmp_path / "out",
        only=["02_stage_conversion"],
        params={"source": str(crm_folder), "segment": ""},
        jobs=1,
    )
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    (page,) = (tmp_path / "out" / "latest").glob("02_stage_conversion*.html")
    text = page.read_text(encoding="utf-8")
    row = re.search(r"<tr>(?:(?!</tr>).)*>Value Proposition<(?:(?!</tr>).)*</tr>", text, re.DOTALL)
    assert row, "the summary row of the stage"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.DOTALL)
    assert "no deal left it: CRM default" in cells and cells.count("–") >= 4  # learned, lower, upper, difference
