"""Lead scoring on a sample of rows (``max_rows``): the weights, calibration, determinism, what the reader is told;
and 03's faster paths (the open leads explained only as far as listed, the holdout from the report's lead table)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import load_sample
from salesforecast.leads import lead_dataset, lead_holdout, model_notes, rank_leads
from salesforecast.models.lead_scoring import LeadScoringModel, stratified_sample


def make_leads(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Time-ordered leads with a known logistic truth (a conversion rate near 0.2)."""
    rng = np.random.default_rng(seed)
    source = rng.choice(["Web", "Referral", "Event"], n, p=[0.6, 0.2, 0.2])
    engagement = rng.normal(50, 15, n).round(1)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 700, n)), unit="D")
    eta = -1.8 + 0.08 * (engagement - 50) + np.where(source == "Referral", 1.0, 0.0)
    p = 1 / (1 + np.exp(-eta))
    X = pd.DataFrame(
        {
            "lead_source": pd.Series(source, dtype="str"),
            "engagement": engagement,
            "created_at": created.astype("datetime64[us]"),
        }
    )
    return X, (rng.random(n) < p).astype(int), p


@pytest.mark.parametrize("rate", [0.03, 0.3, 0.5])
def test_the_weighted_sample_has_the_rate_of_all_rows(rate):
    y = (np.random.default_rng(1).random(10_007) < rate).astype(int)
    rows, w = stratified_sample(y, 1_000, seed=3)
    assert len(rows) == 1_000 and len(np.unique(rows)) == 1_000 and np.all(np.diff(rows) > 0)
    assert np.average(y[rows], weights=w) == pytest.approx(y.mean(), abs=1e-12)  # exactly, not only on average
    assert abs(y[rows].mean() - y.mean()) <= 1 / 1_000  # each outcome drawn at the same rate, within rounding
    assert np.mean(w) == pytest.approx(1.0, abs=1e-3) and np.ptp(w) < 0.01  # weights only undo the rounding
    labels = np.where(y == 1, "yes", "no")  # any labels
    rows2, w2 = stratified_sample(labels, 1_000, seed=3)
    np.testing.assert_array_equal(rows, rows2)
    np.testing.assert_array_equal(w, w2)


def test_the_sample_is_deterministic_with_the_seed_and_keeps_a_rare_outcome():
    y = np.zeros(5_000, dtype=int)
    y[[10, 2_000, 4_999]] = 1  # 3 of 5,000: a proportional share of 100 rows rounds to 0
    a, _ = stratified_sample(y, 100, seed=0)
    b, _ = stratified_sample(y, 100, seed=0)
    c, _ = stratified_sample(y, 100, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert y[a].sum() >= 1  # every outcome present stays in the sample
    rows, w = stratified_sample(y, 5_000)  # as many as there are: all rows, weight 1
    np.testing.assert_array_equal(rows, np.arange(5_000))
    assert (w == 1).all()
    with pytest.raises(ValueError, match="positive integer"):
        stratified_sample(y, 0)


@pytest.fixture(scope="module")
def leads():
    return make_leads(12_000)


@pytest.fixture(scope="module")
def fits(leads):
    X, y, _ = leads
    train = slice(0, 10_000)
    full = LeadScoringModel(date_column="created_at", random_state=0).fit(X[train], y[train])
    sampled = LeadScoringModel(date_column="created_at", random_state=0, max_rows=3_000).fit(X[train], y[train])
    return full, sampled


def test_a_sampled_fit_learns_from_max_rows_and_stays_calibrated(leads, fits):
    X, y, p_true = leads
    full, sampled = fits
    assert (full.n_rows_in_, full.n_rows_fit_, full.sample_rate_) == (10_000, 10_000, 1.0)
    assert (sampled.n_rows_in_, sampled.n_rows_fit_, sampled.sample_rate_) == (10_000, 3_000, 0.3)
    assert len(sampled.validation_index_) == 600  # 20% of the rows learned from
    later = slice(10_000, None)
    p_full, p_sample = full.predict_proba(X[later]).to_numpy(), sampled.predict_proba(X[later]).to_numpy()
    # calibrated: the mean probability is the observed rate, and the probabilities are close to the full fit's
    assert abs(p_sample.mean() - y[later].mean()) < 0.02
    assert abs(p_sample.mean() - p_full.mean()) < 0.01
    assert np.abs(p_sample - p_full).mean() < 0.03
    assert np.abs(p_sample - p_true[later]).mean() < 0.04  # and close to the truth
    # the tiers cut the scores of all rows given: a quarter of them each
    shares = sampled.tiers(X.iloc[:10_000]).value_counts(normalize=True)
    assert shares.between(0.22, 0.28).all()


def test_a_sampled_fit_is_deterministic_and_no_sample_changes_nothing(leads, fits):
    X, y, _ = leads
    full, sampled = fits
    again = LeadScoringModel(date_column="created_at", random_state=0, max_rows=3_000).fit(X[:10_000], y[:10_000])
    pd.testing.assert_series_equal(again.predict_proba(X[10_000:]), sampled.predict_proba(X[10_000:]))
    other = LeadScoringModel(date_column="created_at", random_state=1, max_rows=3_000).fit(X[:10_000], y[:10_000])
    assert not np.allclose(other.predict_proba(X[10_000:]), sampled.predict_proba(X[10_000:]))
    # max_rows None, or not reached, fits exactly what the full fit does
    for max_rows in (None, 10_000):
        same = LeadScoringModel(date_column="created_at", random_state=0, max_rows=max_rows).fit(X[:10_000], y[:10_000])
        pd.testing.assert_series_equal(same.predict_proba(X[10_000:]), full.predict_proba(X[10_000:]))


def test_the_notes_say_how_many_leads_the_model_learnt_from(fits):
    full, sampled = fits
    said = " ".join(model_notes(sampled))
    assert "learnt from 3,000 of the 10,000 training leads" in said and "(30.0%)" in said
    assert "learnt from" not in " ".join(model_notes(full))


@pytest.mark.parametrize("max_rows", [999, 0, 2.5, True])
def test_max_rows_must_be_a_row_count(leads, max_rows):
    X, y, _ = leads
    with pytest.raises(ValueError, match="max_rows"):
        LeadScoringModel(max_rows=max_rows).fit(X, y)


def test_rank_leads_explains_only_the_leads_listed_and_the_same_ones():
    ds = lead_dataset(load_sample(), "2025-12-31")
    model = LeadScoringModel(estimator="logistic", date_column="created_at").fit(ds.X, ds.y)
    every = rank_leads(model, ds.open, top=2)
    first = rank_leads(model, ds.open, top=2, rows=5)
    pd.testing.assert_frame_equal(first, every.head(5))
    assert len(rank_leads(model, ds.open, rows=10 * len(ds.open))) == len(ds.open)
    with pytest.raises(ValueError, match="rows"):
        rank_leads(model, ds.open, rows=0)


def test_the_holdout_from_the_reports_lead_table_is_the_same():
    data = load_sample()
    now = lead_dataset(data, "2025-12-31", 180)
    built = lead_holdout(data, "2025-12-31", 180, 6)
    reused = lead_holdout(data, "2025-12-31", 180, 6, now=now)
    pd.testing.assert_frame_equal(built[0].X, reused[0].X)
    pd.testing.assert_frame_equal(built[1], reused[1])
    pd.testing.assert_series_equal(built[2], reused[2])
    with pytest.raises(ValueError, match="same settings"):
        lead_holdout(data, "2025-12-31", 90, 6, now=now)
