"""Tests of the synthetic data generator and the committed sample.

The statistical checks compare 20,000 generated opportunities with the returned ground truth, within
sampling error (4-4.5 standard errors).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import SAMPLE_PARAMS, GroundTruth, generate, load_sample, sample_folder
from salesforecast.process import SalesProcess, Stage
from salesforecast.schema import TABLES

ROOT = Path(__file__).resolve().parents[1]
KIND_DTYPES = {
    "id": "str",
    "text": "str",
    "stage": "str",
    "category": "str",
    "period": "str",
    "datetime": "datetime64[us]",
    "number": "float64",
    "bool": "bool",
    "activity_type": "str",
}
DOCUMENTED_SHAPES = {
    "opportunities": (3000, 16),
    "stage_history": (13823, 6),
    "leads": (6600, 15),
    "forecast_submissions": (7536, 6),
    "quotas": (288, 3),
    "activities": (37221, 9),
}


def _csv_bytes(tables: dict[str, pd.DataFrame]) -> dict[str, bytes]:
    return {name: df.to_csv(index=False).encode() for name, df in tables.items()}


@pytest.fixture(scope="module")
def small() -> tuple:
    return generate(n_opportunities=1200, seed=3)


@pytest.fixture(scope="module")
def big() -> tuple[dict[str, pd.DataFrame], GroundTruth]:
    data, truth = generate(n_opportunities=20_000, seed=11)
    assert data.quarantine.empty
    return data.tables, truth


@pytest.fixture(scope="module")
def sample_generated() -> tuple:
    return generate(**SAMPLE_PARAMS)


def _make_sample_module():
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "scripts" / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_tables_and_truth():
    a, ta = generate(n_opportunities=300, seed=5)
    b, tb = generate(n_opportunities=300, seed=5)
    assert _csv_bytes(a.tables) == _csv_bytes(b.tables)
    pd.testing.assert_series_equal(ta.lead_probability, tb.lead_probability)
    pd.testing.assert_series_equal(ta.rep_bias, tb.rep_bias)
    assert ta.params == tb.params


def test_different_seed_differs():
    a, _ = generate(n_opportunities=300, seed=5)
    b, _ = generate(n_opportunities=300, seed=6)
    ca, cb = _csv_bytes(a.tables), _csv_bytes(b.tables)
    assert all(ca[name] != cb[name] for name in ("opportunities", "stage_history", "leads", "forecast_submissions"))


# ------------------------------------------------------------------------------------------ validity
def test_zero_quarantine_and_canonical_dtypes(small):
    data, truth = small
    assert data.quarantine.empty
    assert (data.counts["read"] == data.counts["accepted"]).all()
    assert (data.counts["accepted"] > 0).all()
    assert set(data.sources.values()) == {"generate(seed=3)"}
    for name, spec in TABLES.items():
        df = data.tables[name]
        for col in spec.columns:
            assert col.name in df.columns, (name, col.name)
            assert str(df[col.name].dtype) == KIND_DTYPES[col.kind], (name, col.name, df[col.name].dtype)
    for col in ("industry", "title_seniority", "country"):
        assert data.leads[col].dtype == "str"
    for col in ("employees", "engagement_score", "email_opens", "web_visits", "form_fill_seconds"):
        assert data.leads[col].dtype == "float64"
    assert isinstance(truth, GroundTruth)
    assert truth.params["n_opportunities"] == 1200 and truth.params["seed"] == 3


def test_ids_and_values(small):
    data, _ = small
    o = data.opportunities
    assert o["opportunity_id"].iloc[0] == "OPP-0000001"
    assert o["opportunity_id"].is_unique and o["created_at"].is_monotonic_increasing
    assert o["owner"].str.fullmatch(r"\S+ \S+").all()
    assert set(o["segment"]) == {"SMB", "Mid-Market", "Enterprise"}
    assert set(o["team"]) == {"NA East", "NA West", "EMEA", "APAC"}
    assert o.groupby("owner")["team"].nunique().eq(1).all()
    assert (o["close_date"] == o["close_date"].dt.normalize()).all()
    assert (o["amount"] > 0).all()
    assert set(o["forecast_category"]) <= {"pipeline", "best_case", "commit", "closed", "omitted"}


def test_leads_and_opportunities_link_both_ways(small):
    data, _ = small
    o, leads = data.opportunities, data.leads
    from_lead = o[o["lead_id"].notna()]
    assert 0.3 < len(from_lead) / len(o) < 0.5
    linked = leads[leads["opportunity_id"].notna()]
    assert linked["converted"].all()
    assert (leads.loc[~leads["converted"], "converted_at"].isna()).all()
    assert leads.loc[leads["converted"], "converted_at"].notna().all()
    assert (leads["converted"] & leads["opportunity_id"].isna()).any()  # converted to a contact only
    m = from_lead.merge(linked, on="lead_id", suffixes=("", "_lead"))
    assert len(m) == len(from_lead) == len(linked)
    assert (m["opportunity_id"] == m["opportunity_id_lead"]).all()
    assert (m["created_at"] == m["converted_at"]).all()
    assert (m["owner"] == m["owner_lead"]).all()
    assert (m["lead_source"] == m["lead_source_lead"]).all()
    assert (o.loc[o["lead_id"].isna(), "lead_source"] == "Existing Customer").all()


def test_history_is_consistent_with_opportunities(small):
    data, truth = small
    o, h = data.opportunities, data.stage_history
    assert h["opportunity_id"].is_monotonic_increasing
    assert h.groupby("opportunity_id")["changed_at"].apply(lambda s: s.is_monotonic_increasing).all()
    assert not h.duplicated(["opportunity_id", "changed_at"]).any()
    first = h.groupby("opportunity_id").head(1).set_index("opportunity_id")
    last = h.groupby("opportunity_id").tail(1).set_index("opportunity_id")
    oo = o.set_index("opportunity_id")
    assert (first["changed_at"] == oo["created_at"]).all()
    for col in ("stage", "amount", "close_date", "forecast_category"):
        assert (last[col] == oo[col]).all(), col
    closed = oo["is_closed"]
    assert (oo.loc[closed, "close_date"] == last.loc[closed, "changed_at"].dt.normalize()).all()
    assert (h["changed_at"] < truth.as_of).all() and (o["created_at"] < truth.as_of).all()
    assert (~oo["is_closed"]).sum() > 0  # deals still open as of the end stay open
    # closed rows carry the closed categories; commit only on the last open stage
    assert (h.loc[h["stage"] == "Closed Won", "forecast_category"] == "closed").all()
    assert (h.loc[h["stage"] == "Closed Lost", "forecast_category"] == "omitted").all()
    assert set(h.loc[h["forecast_category"] == "commit", "stage"]) == {"Negotiation/Review"}
    assert (h["forecast_category"] == "best_case").any()


def test_close_dates_slip(small):
    data, _ = small
    h = data.stage_history
    same_stage = h["stage"].eq(h.groupby("opportunity_id")["stage"].shift())
    pushes = h[same_stage]
    assert len(pushes) > 0.02 * len(h)  # rows that only move the close date
    prev_close = h.groupby("opportunity_id")["close_date"].shift()
    assert (h.loc[same_stage, "close_date"] > prev_close[same_stage]).mean() > 0.95
    assert (h["amount"] != h.groupby("opportunity_id")["amount"].shift()).sum() > 0


def test_submissions_and_quotas(small):
    data, truth = small
    s, q = data.forecast_submissions, data.quotas
    reps = set(truth.rep_bias.index)
    assert set(s["owner"]) == reps == set(q["owner"]) == set(data.opportunities["owner"])
    assert (s["submitted_at"].dt.day_of_week == 0).all()
    assert set(s["category"]) == {"commit", "best_case"}
    periods = [f"FY{y}Q{k}" for y in (2023, 2024, 2025) for k in (1, 2, 3, 4)]
    assert sorted(set(s["period"])) == periods and sorted(set(q["period"])) == periods
    cal = data.process.calendar
    assert (cal.period(s["submitted_at"]) == s["period"]).all()
    wide = s.pivot_table(index=["submitted_at", "owner"], columns="category", values="amount")
    assert (wide["best_case"] >= wide["commit"]).all()
    weeks = s[s["category"] == "commit"].groupby(["owner", "period"]).size()
    assert weeks.between(12, 14).all()
    assert len(q) == len(reps) * 12 and (q["amount"] > 0).all()
    expected = truth.expected_bookings.reindex(q["owner"]).to_numpy()
    np.testing.assert_allclose(q["amount"], np.round(1.1 * expected, -3))


# ------------------------------------------------------------------------------------------ the truth
def test_transition_matrix_is_a_mixture_and_rows_sum_to_one(big):
    _, truth = big
    tm = truth.transition_matrix
    process = SalesProcess.default()
    assert list(tm.index) == process.open_stages and list(tm.columns) == process.stage_names
    np.testing.assert_allclose(tm.sum(axis=1), 1.0)
    assert (tm.to_numpy() >= 0).all() and (np.diag(tm.to_numpy()[:, : len(tm)]) == 0).all()
    short, long_ = truth.stall_transition_matrix["short"], truth.stall_transition_matrix["long"]
    assert (short.to_numpy() >= 0).all() and (long_.to_numpy() >= 0).all()
    np.testing.assert_allclose(0.8 * short + 0.2 * long_, tm, atol=1e-12)
    assert (long_["Closed Lost"] > tm["Closed Lost"]).all() and (short["Closed Lost"] < tm["Closed Lost"]).all()
    assert truth.step_cap_probability.max() < 1e-12
    np.testing.assert_allclose(truth.initial_stage.sum(), 1.0)
    d = truth.stage_duration
    assert len(d) == 8 * 3
    med = d.pivot(index="stage", columns="segment", values="median_days")
    assert (med["Enterprise"] > med["Mid-Market"]).all() and (med["Mid-Market"] > med["SMB"]).all()


def _first_entries(h: pd.DataFrame) -> pd.DataFrame:
    """Rows where the stage changes (the first row of each deal included)."""
    prev = h.groupby("opportunity_id")["stage"].shift()
    return h[h["stage"].ne(prev)]


def test_empirical_transitions_match_the_truth(big):
    tables, truth = big
    o, h = tables["opportunities"], tables["stage_history"]
    early = o.loc[o["created_at"] < pd.Timestamp("2024-07-01"), "opportunity_id"]
    changes = _first_entries(h[h["opportunity_id"].isin(early)])
    nxt = changes.groupby("opportunity_id")["stage"].shift(-1)
    pairs = pd.DataFrame({"from": changes["stage"], "to": nxt}).dropna()
    tm = truth.transition_matrix
    counts = pd.crosstab(pairs["from"], pairs["to"]).reindex(index=tm.index, columns=tm.columns, fill_value=0)
    n = counts.sum(axis=1).to_numpy()[:, None]
    assert n.min() > 1000
    emp = counts.to_numpy() / n
    p = tm.to_numpy()
    assert (counts.to_numpy()[p == 0] == 0).all()  # impossible transitions never happen
    se = np.sqrt(p * (1 - p) / n)
    z = np.abs(emp - p)[p > 0] / se[p > 0]
    assert z.max() < 4.5, z.max()


def test_empirical_win_rate_by_stage_matches_win_probability(big):
    tables, truth = big
    o, h = tables["opportunities"], tables["stage_history"]
    oo = o.set_index("opportunity_id")
    early = oo.index[oo["created_at"] < pd.Timestamp("2024-07-01")]
    assert oo.loc[early, "is_closed"].mean() > 0.999
    changes = _first_entries(h[h["opportunity_id"].isin(early)])
    entered = changes.drop_duplicates(["opportunity_id", "stage"])
    entered = entered[entered["stage"].isin(truth.win_probability.index)]
    entered = entered.join(oo[["is_closed", "is_won"]], on="opportunity_id")
    entered = entered[entered["is_closed"]]
    rate = entered.groupby("stage")["is_won"].agg(["mean", "size"]).reindex(truth.win_probability.index)
    p = truth.win_probability
    z = (rate["mean"] - p).abs() / np.sqrt(p * (1 - p) / rate["size"])
    assert z.max() < 4.0, z


def test_win_probability_by_power_iteration():
    _, truth = generate(n_opportunities=50, seed=0)
    tm = truth.transition_matrix
    k = len(tm)
    full = np.eye(tm.shape[1])
    full[:k] = tm.to_numpy()
    dist = np.linalg.matrix_power(full, 2000)  # every open state is absorbed by then
    won_col = list(tm.columns).index("Closed Won")
    np.testing.assert_allclose(dist[:k, won_col], truth.win_probability.to_numpy(), atol=1e-10)
    assert truth.win_probability.is_monotonic_increasing
    assert 0.1 < truth.win_probability.iloc[0] < 0.25 and truth.win_probability.iloc[-1] > 0.75


def test_win_probability_by_monte_carlo():
    _, truth = generate(n_opportunities=50, seed=0)
    tm = truth.transition_matrix
    k = len(tm)
    cum = np.cumsum(tm.to_numpy(), axis=1)
    rng = np.random.default_rng(1)
    n = 40_000
    state = np.repeat(np.arange(k), n // k)
    for _ in range(200):
        live = state < k
        if not live.any():
            break
        u = rng.random(live.sum())
        state[live] = (u[:, None] >= cum[state[live]]).sum(axis=1)
    won = (state == k).reshape(k, -1).mean(axis=1)
    se = np.sqrt(won * (1 - won) / (n // k))
    assert np.all(np.abs(won - truth.win_probability.to_numpy()) < 4.5 * se + 1e-9)


def test_lead_conversion_matches_lead_probability(big):
    tables, truth = big
    leads = tables["leads"]
    p = truth.lead_probability.reindex(leads["lead_id"]).to_numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-truth.lead_linear_predictor(leads))), p, rtol=1e-12)
    assert truth.lead_coefficients["form_fill_seconds"] == 0.0
    assert 0.15 < leads["converted"].mean() < 0.25
    settled = (leads["created_at"] < truth.as_of - pd.Timedelta(days=181)).to_numpy()
    y = leads["converted"].to_numpy()[settled].astype(float)
    ps = p[settled]
    se = np.sqrt(ps.mean() * (1 - ps.mean()) / len(ps))
    assert abs(y.mean() - ps.mean()) < 4 * se
    decile = pd.qcut(ps, 10, labels=False)
    cal = (
        pd.DataFrame({"y": y, "p": ps, "d": decile}).groupby("d").agg(y=("y", "mean"), p=("p", "mean"), n=("y", "size"))
    )
    z = (cal["y"] - cal["p"]).abs() / np.sqrt(cal["p"] * (1 - cal["p"]) / cal["n"])
    assert z.max() < 4.0, cal
    assert cal["y"].is_monotonic_increasing or np.corrcoef(cal["y"], cal["p"])[0, 1] > 0.99


def test_commit_calls_reveal_rep_bias(big):
    tables, truth = big
    o, s = tables["opportunities"], tables["forecast_submissions"]
    won = o[o["is_won"]]
    actual = won.groupby([won["owner"], SalesProcess.default().calendar.period(won["close_date"])])["amount"]
    actual = actual.sum().rename_axis(["owner", "period"])
    commit = s[s["category"] == "commit"]
    last = commit[commit["submitted_at"] == commit.groupby(["owner", "period"])["submitted_at"].transform("max")]
    last = last.set_index(["owner", "period"])["amount"]
    both = pd.concat([last.rename("commit"), actual.rename("actual")], axis=1).fillna(0.0)
    per_rep = both.groupby(level="owner").sum()
    ratio = per_rep["commit"] / per_rep["actual"]
    rho = ratio.corr(truth.rep_bias.reindex(ratio.index), method="spearman")
    assert rho > 0.8
    assert truth.rep_bias.min() < 0.85 and truth.rep_bias.max() > 1.15  # clearly biased reps exist


def test_end_of_quarter_wins_bunch_up(big):
    tables, _ = big
    o = tables["opportunities"]
    won = o.loc[o["is_won"], "close_date"]
    quarter_end = won.dt.to_period("Q").dt.end_time.dt.normalize()
    days_left = (quarter_end - won).dt.days
    assert (days_left <= 2).mean() > 0.10  # ~3% without the push
    no_push, _ = generate(n_opportunities=3000, seed=11, eoq_delay=0.0)
    o2 = no_push.opportunities
    won2 = o2.loc[o2["is_won"], "close_date"]
    assert ((won2.dt.to_period("Q").dt.end_time.dt.normalize() - won2).dt.days <= 2).mean() < 0.07


def test_custom_process_and_fiscal_calendar():
    stages = (
        Stage("Discovery", probability=0.1),
        Stage("Demo", probability=0.3),
        Stage("Proposal", probability=0.6, forecast_category="best_case"),
        Stage("Closed Won", "won", 1.0, "closed"),
        Stage("Closed Lost", "lost", 0.0, "omitted"),
    )
    from salesforecast.process import FiscalCalendar

    process = SalesProcess(stages, name="mini", calendar=FiscalCalendar(start_month=2))
    data, truth = generate(n_opportunities=400, seed=2, start="2023-02-01", years=2, process=process)
    assert data.quarantine.empty
    assert list(truth.transition_matrix.index) == ["Discovery", "Demo", "Proposal"]
    assert set(data.opportunities["stage"]) <= set(process.stage_names)
    assert sorted(set(data.quotas["period"]))[0] == "FY2024Q1"
    assert truth.win_probability.is_monotonic_increasing


def test_argument_errors():
    with pytest.raises(ValueError, match="n_opportunities"):
        generate(n_opportunities=0)
    with pytest.raises(ValueError, match="n_reps"):
        generate(n_opportunities=10, n_reps=5)


# ------------------------------------------------------------------------------------------ the sample
def test_committed_sample_is_reproduced_by_the_script(tmp_path):
    module = _make_sample_module()
    written = module.make_sample(tmp_path)
    committed = sample_folder()
    names = sorted(p.name for p in committed.iterdir() if p.is_file())
    assert names == sorted(p.name for p in written)
    total = 0
    for name in names:
        new, old = (tmp_path / name).read_bytes(), (committed / name).read_bytes()
        total += len(old)
        if name.endswith(".gz"):  # compare the CSV text (robust to another zlib build)
            new, old = gzip.decompress(new), gzip.decompress(old)
        assert new == old, name
    assert total < 1_000_000


def test_load_sample_has_the_documented_shape_and_equals_generate(sample_generated):
    data = load_sample()
    assert data.quarantine.empty
    assert {name: df.shape for name, df in data.tables.items()} == DOCUMENTED_SHAPES
    generated, truth = sample_generated
    for name in TABLES:
        pd.testing.assert_frame_equal(data.tables[name], generated.tables[name], check_exact=True)
    assert data.process.stage_names == SalesProcess.default().stage_names
    assert truth.params == {
        **SAMPLE_PARAMS,
        "process": "Salesforce standard",
        "n_reps": 24,
        "lead_share": 0.4,
        "eoq_delay": 0.5,
        "max_steps": 40,
        "activities": True,
    }
    assert list(data.process.exit_criteria) == ["Qualification", "Value Proposition", "Proposal/Price Quote"]
    assert list(truth.activity_effect.index) == list(data.process.exit_criteria)


def test_pyproject_ships_the_sample():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"datasets/sample/*"' in text


@pytest.mark.slow
def test_large_generation():
    data, truth = generate(n_opportunities=200_000, seed=1)
    assert len(data.opportunities) == 200_000
    assert data.quarantine.empty
    assert len(truth.lead_probability) == len(data.leads)
