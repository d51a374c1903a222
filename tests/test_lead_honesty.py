"""Lead scoring that says what it cannot do (issue 13, "weak models say so").

A score no better than chance is called so, with no tiers or reasons; tied scores use fewer tiers; identifiers,
hashes and rare levels are no reasons; date parts stay only when they help; a column filled only for converted
leads is left out. `weak_funnel` builds a marketing funnel whose conversions have nothing to do with its features.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from salesforecast.datasets import generate
from salesforecast.leads import (
    MIN_HOLDOUT_CONVERSIONS,
    MIN_TRAIN_CONVERSIONS,
    check_holdout,
    lead_dataset,
    lead_holdout,
    model_notes,
    rank_leads,
)
from salesforecast.models.lead_scoring import (
    LeadScoringModel,
    LeakageWarning,
    TierWarning,
    WeakModelWarning,
    auc_interval,
)
from salesforecast.schema import CRMData


def weak_funnel(n_leads: int = 400, seed: int = 0, months: int = 11, rate: float = 0.10) -> CRMData:
    """A leads-only CRM over `months` months whose conversion (about `rate`) is unrelated to every feature.

    The leads and their features are the generator's; each lead converts by a coin toss of probability `rate`,
    after a delay of 3 to 60 days (never after the data's end), with no opportunity: opportunities, stage
    history, forecast submissions and quotas are empty, as in a marketing-funnel export.
    """
    data, _ = generate(n_opportunities=max(200, n_leads // 2), seed=seed, years=1)
    rng = np.random.default_rng(seed)
    leads = data.leads
    start = leads["created_at"].min()
    end = start + pd.DateOffset(months=months)
    leads = leads[leads["created_at"] < end]
    leads = leads.iloc[np.sort(rng.choice(len(leads), min(n_leads, len(leads)), replace=False))].copy()
    converted = rng.random(len(leads)) < rate
    delay = pd.to_timedelta(rng.uniform(3, 60, len(leads)), unit="D")
    at = (leads["created_at"] + delay).where(converted)
    converted &= (at < end).to_numpy()
    leads["converted"] = converted
    leads["converted_at"] = at.where(converted).astype("datetime64[us]")
    leads["opportunity_id"] = pd.Series(pd.NA, index=leads.index, dtype="str")
    data.leads = leads.reset_index(drop=True)
    for table in ("opportunities", "stage_history", "forecast_submissions", "quotas"):
        setattr(data, table, getattr(data, table).iloc[:0])
    return data


def test_weak_funnel_is_leads_only_with_about_a_tenth_converted():
    data = weak_funnel()
    assert data.opportunities.empty and data.stage_history.empty
    assert 300 <= len(data.leads) <= 400
    assert 0.06 <= data.leads["converted"].mean() <= 0.12
    span = data.leads["created_at"].max() - data.leads["created_at"].min()
    assert pd.Timedelta(days=300) <= span <= pd.Timedelta(days=336)


# ------------------------------------------------------------------------------------------------ the report
def _render(tmp_path, data: CRMData, as_of: str, **params) -> str:
    from salesforecast.reports import DEFAULT_CONFIG, run_reports

    folder = data.to_folder(tmp_path / "crm")
    result = run_reports(
        DEFAULT_CONFIG,
        tmp_path / "out",
        only=["03_lead_scoring"],
        params={"source": str(folder), **params},
        jobs=1,
        as_of=as_of,
    )
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    (page,) = (tmp_path / "out" / "latest").glob("03_lead_scoring*.html")
    return page.read_text(encoding="utf-8")


def test_report_on_a_weak_leads_only_funnel_says_no_better_than_chance_and_shows_no_tiers_or_reasons(tmp_path):
    """The issue's marketing funnel: 11 months, a tenth converted, conversion unrelated to the features, no
    opportunities. The report rendered tier A with 100% of the leads and reasons; now it says so and shows none."""
    data = weak_funnel()
    as_of = str((data.leads["created_at"].min() + pd.DateOffset(months=11)).date())
    text = _render(tmp_path, data, as_of, maturity_days=60, holdout_months=3)
    assert "Traceback" not in text
    assert "no better than chance on this data" in text
    assert re.search(r"trained on [\d,]+ leads \([\d,]+ conversions\)", text)
    assert "fewer than the 30 needed to tell" in text and "same score" in text
    assert "training (outcomes known at the holdout start)" in text  # the leads and conversions table
    assert "No tiers: the lead score is no better than chance" in text
    assert "No drivers: the lead score is no better than chance" in text
    assert "open leads at" in text and "not ranked" in text
    assert "share_of_conversions" not in text and "share of conversions" not in text.replace("the share of", "")
    assert "raises the odds" not in text and "lowers the odds" not in text


def test_report_on_generated_leads_without_teams_shows_tiers_and_reasons(tmp_path):
    """The generator's leads carry a real signal: tiers and reasons show; the CRM has no team column; a closing
    rep's name, filled only for converted leads, is left out and named, never a reason."""
    data, _ = generate(n_opportunities=800, seed=11, years=2)
    data.opportunities = data.opportunities.drop(columns=["team"])
    rng = np.random.default_rng(0)
    closers = rng.choice(["Closer Ann", "Closer Bo", "Closer Cy"], len(data.leads))
    data.leads["closed_by"] = pd.Series(closers, dtype="str").where(data.leads["converted"].to_numpy())
    text = _render(tmp_path, data, str(data.as_of.date()))
    assert re.search(r"Left out of the model as probable leakage: (&#x27;|')closed_by(&#x27;|') \(single-feature", text)
    assert "closed_by = " not in text
    assert "Traceback" not in text
    assert "ranks later leads better than chance" in text and "no better than chance on this data" not in text
    assert ">A<" in text and ">D<" in text  # the tier table
    assert "raises the odds" in text or "lowers the odds" in text
    assert "_month = " not in text and "_day_of_week = " not in text  # the generator's dates carry no signal


# ------------------------------------------------------------------------------------------------ AUC interval
def _delong_by_definition(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """DeLong's AUC and variance from the pairwise kernel psi (1 above, 1/2 tied, 0 below), by plain loops."""
    pos, neg = p[y == 1], p[y == 0]
    psi = np.array([[1.0 if a > b else 0.5 if a == b else 0.0 for b in neg] for a in pos])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)


def test_auc_interval_is_delongs_on_a_known_case_with_ties():
    rng = np.random.default_rng(3)
    y = (rng.random(120) < 0.3).astype(int)
    p = np.round(rng.normal(0, 1, 120) + 0.8 * y, 1)  # rounded: many ties between and within the classes
    auc, low, high = auc_interval(y, p)
    ref_auc, ref_var = _delong_by_definition(y, p)
    assert auc == pytest.approx(roc_auc_score(y, p), abs=1e-12) and auc == pytest.approx(ref_auc, abs=1e-12)
    half = 1.959963984540054 * np.sqrt(ref_var)
    assert (low, high) == pytest.approx((ref_auc - half, ref_auc + half), abs=1e-12)
    # the hand example of the docstring: 15 of 16 pairs ordered, 2 positives below... by definition too
    y8, p8 = np.array([0, 0, 1, 0, 1, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.35, 0.9])
    assert auc_interval(y8, p8)[0] == _delong_by_definition(y8, p8)[0] == 0.875
    assert np.isnan(auc_interval([1, 0, 0], [0.2, 0.1, 0.3])).all()  # one converted lead: no interval


def test_auc_interval_covers_the_true_auc_about_95_times_in_100():
    """Binormal scores, converted ~ N(1, 1) and others ~ N(0, 1): the true AUC is Phi(1 / sqrt(2)) = 0.7602."""
    from scipy.stats import norm

    truth = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        y = (rng.random(300) < 0.2).astype(int)
        p = rng.normal(0, 1, 300) + y
        _auc, low, high = auc_interval(y, p)
        hits += low <= truth <= high
    assert 0.92 <= hits / 400 <= 0.98, hits


# ------------------------------------------------------------------------------------------------ the verdict
def test_check_holdout_says_no_better_than_chance_when_the_interval_includes_half():
    rng = np.random.default_rng(1)
    y = (rng.random(3000) < 0.1).astype(int)
    with pytest.warns(WeakModelWarning, match="no better than chance on this data") as caught:
        check = check_holdout(y, y, rng.random(3000))  # scores unrelated to the outcome
    assert not check.better_than_chance and check.auc_low < 0.5 < check.auc_high
    assert "interval" in check.verdict and "includes 0.5" in check.verdict
    assert str(caught[0].message) == check.verdict
    assert check.table()["conversions"].tolist() == [int(y.sum()), int(y.sum())]
    # scores that rank: no warning, and the verdict says so
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakModelWarning)
        good = check_holdout(y, y, y + rng.normal(0, 1, 3000))
    assert good.better_than_chance and good.auc_low > 0.5 and "better than chance" in good.verdict


def test_check_holdout_says_too_few_conversions_to_tell_even_for_a_good_score():
    y_train = np.r_[np.ones(MIN_TRAIN_CONVERSIONS - 1), np.zeros(500)]
    y_test = np.r_[np.ones(MIN_HOLDOUT_CONVERSIONS + 5), np.zeros(500)]
    p_test = y_test + np.random.default_rng(2).normal(0, 0.3, len(y_test))  # AUC about 0.99
    with pytest.warns(WeakModelWarning, match=f"{MIN_TRAIN_CONVERSIONS - 1} conversions are fewer than the 30"):
        check = check_holdout(y_train, y_test, p_test)
    assert not check.better_than_chance and check.auc > 0.95
    assert check.train_conversions == MIN_TRAIN_CONVERSIONS - 1 and check.test_leads == len(y_test)
    with pytest.warns(WeakModelWarning, match="holdout's 3 conversions are fewer than the 20"):
        check_holdout(
            np.r_[np.ones(50), np.zeros(500)], np.r_[np.ones(3), np.zeros(50)], np.r_[np.ones(3), np.zeros(50)]
        )


def test_a_model_of_a_large_weak_funnel_is_no_better_than_chance():
    """Enough conversions to judge (3,000 leads): the interval itself says the score is a coin toss."""
    data = weak_funnel(3000, seed=4)
    as_of = data.leads["created_at"].min() + pd.DateOffset(months=11)
    train, X_test, y_test = lead_holdout(data, as_of, maturity_days=60, holdout_months=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LeadScoringModel(date_column="created_at").fit(train.X, train.y)
    with pytest.warns(WeakModelWarning, match="includes 0.5"):
        check = check_holdout(train.y, y_test, model.predict_proba(X_test))
    assert check.train_conversions >= MIN_TRAIN_CONVERSIONS and check.test_conversions >= MIN_HOLDOUT_CONVERSIONS
    assert not check.better_than_chance


# ------------------------------------------------------------------------------------------------ leakage
def _generated_leads(seed: int = 4, n: int = 1500) -> tuple[pd.DataFrame, pd.Series]:
    data, truth = generate(n_opportunities=n, seed=seed)
    ds = lead_dataset(data, truth.as_of)
    return ds.X, ds.y


def test_a_column_filled_only_for_converted_leads_is_left_out_named_and_never_a_reason():
    """The closing rep's id, brought in by a lookup, is known only once a lead converted."""
    X, y = _generated_leads()
    rng = np.random.default_rng(0)
    closers = np.array([f"{rng.integers(16**12):012x}" for _ in range(6)])  # hash-like rep ids
    X = X.assign(closer_id=pd.Series(np.where(y == 1, rng.choice(closers, len(y)), None), index=X.index, dtype="str"))
    with pytest.warns(LeakageWarning) as caught:
        model = LeadScoringModel(date_column="created_at").fit(X, y)
    (msg,) = [str(w.message) for w in caught if "closer_id" in str(w.message)]
    assert msg.startswith("column 'closer_id' was left out of the model as probable leakage")
    assert re.search(r"single-feature AUC (0\.9\d\d|1\.000) > 0\.9", msg) and "leakage='warn'" in msg
    assert set(model.dropped_leaky_) == {"closer_id"} and model.dropped_leaky_["closer_id"] > 0.95
    assert (
        model.dropped_columns_["closer_id"]
        == f"probable leakage (single-feature AUC {model.dropped_leaky_['closer_id']:.3f})"
    )
    assert "closer_id" not in model.feature_names_
    reasons = rank_leads(model, X.head(300))["reasons"]
    assert reasons.str.len().gt(0).all() and not reasons.str.contains("closer_id").any()
    assert model_notes(model)[0].startswith(
        "Left out of the model as probable leakage: 'closer_id' (single-feature AUC"
    )
    # leakage="warn" keeps the behaviour before: warned and kept
    with pytest.warns(LeakageWarning, match="'closer_id' alone separates the outcomes"):
        kept = LeadScoringModel(date_column="created_at", leakage="warn").fit(X, y)
    assert "closer_id" in kept.feature_names_ and kept.dropped_leaky_ == {}


def test_leakage_setting_is_checked():
    X, y = _generated_leads(n=600)
    with pytest.raises(ValueError, match="leakage must be one of"):
        LeadScoringModel(leakage="ignore").fit(X, y)
    with pytest.raises(ValueError, match="date_parts must be one of"):
        LeadScoringModel(date_parts="sometimes").fit(X, y)


# ------------------------------------------------------------------------------------------------ tiers
def test_tied_scores_use_fewer_tiers_and_say_so():
    """A single yes/no feature gives two distinct scores: 'A' would hold 100% of leads at some cut."""
    rng = np.random.default_rng(0)
    flag = rng.random(4000) < 0.3
    X = pd.DataFrame({"referred": pd.Series(np.where(flag, "yes", "no"), dtype="str")})
    y = rng.random(4000) < np.where(flag, 0.4, 0.1)
    with pytest.warns(TierWarning, match=r"tie too often for 4 tiers .* 2 tiers are used instead \(A: 30%, B: 70%"):
        model = LeadScoringModel("logistic").fit(X, y)
    assert model.tier_thresholds_.index.tolist() == ["A", "B"]
    tiers = model.tiers(X)
    assert tiers.cat.categories.tolist() == ["A", "B"]
    assert (tiers == "A").to_numpy().tolist() == flag.tolist()
    assert "2 tiers (A, B) are used" in " ".join(model_notes(model))


def test_one_score_for_every_lead_gives_one_tier():
    model = LeadScoringModel()
    model.tier_labels, model.tier_method, model.tier_cuts = ("A", "B", "C", "D"), "quantile", None
    with pytest.warns(TierWarning, match="every training lead gets the same score .* one tier instead of 4"):
        th = model._tier_thresholds(np.full(50, 0.1))
    assert th.index.tolist() == ["A"] and th.iloc[0] == 0.0
    # a few leads above a large tie keep a tier of their own (quantile cuts would all fall on the tie: A = 100%)
    p = np.r_[np.full(90, 0.1), np.linspace(0.2, 0.5, 10)]
    with pytest.warns(TierWarning, match=r"2 tiers are used instead \(A: 10%, B: 90% of the leads\)"):
        th = model._tier_thresholds(p)
    assert th.tolist() == [0.2, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TierWarning)  # distinct scores: the four tiers, no warning
        assert model._tier_thresholds(np.linspace(0, 1, 50)).index.tolist() == ["A", "B", "C", "D"]


# ------------------------------------------------------------------------------------------------ reasons
def test_ids_hashes_and_mostly_rare_values_are_no_reasons_but_still_scored():
    """A landing page's hash, an owner id and a mostly-rare campaign tag move the score but are never reasons."""
    rng = np.random.default_rng(5)
    n = 4000
    pages = np.array([f"{rng.integers(16**15):032x}" for _ in range(8)])
    page = rng.choice(pages, n)
    owner_id = rng.choice([f"R{i:02d}" for i in range(5)], n)
    campaign = np.where(rng.random(n) < 0.7, [f"tag {i}" for i in rng.integers(0, 2000, n)], "spring")
    engagement = rng.normal(0, 1, n)
    eta = -1.5 + engagement + 1.5 * (page == pages[0]) + 1.0 * (owner_id == "R01") + 0.8 * (campaign == "spring")
    y = rng.random(n) < 1 / (1 + np.exp(-eta))
    X = pd.DataFrame(
        {
            "landing_page": pd.Series(page, dtype="str"),
            "owner_id": pd.Series(owner_id, dtype="str"),
            "campaign": pd.Series(campaign, dtype="str"),
            "engagement": engagement,
            "accountId": rng.integers(0, 50, n),  # a numeric id, named like one
        }
    )
    model = LeadScoringModel("logistic").fit(X, y)
    assert set(model.not_reasons_) == {"landing_page", "owner_id", "campaign", "accountId"}
    assert model.not_reasons_["landing_page"] == "an identifier (its values look like ids or hashes)"
    assert model.not_reasons_["owner_id"] == "an identifier (its name)"
    assert model.not_reasons_["campaign"].startswith("most of its rows (")
    assert {"landing_page", "owner_id", "campaign", "accountId"} <= set(model.feature_names_)  # still scored
    ex = model.explain(X, top=4)
    assert ex["feature_1"].eq("engagement").any()
    used = set(ex.filter(like="feature_").stack().dropna())
    assert used == {"engagement"}
    j = model.feature_names_.index("landing_page")
    assert np.abs(model._effects(model._check_X(X.head(200)))[:, j]).max() > 0.5


def test_date_parts_stay_only_when_they_improve_the_validation_score():
    """Leads created on a weekend convert far less: the weekday stays. On the generator's leads, where dates carry
    no signal, the month and weekday leave and the held-out AUC does not suffer."""
    rng = np.random.default_rng(6)
    n = 5000
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 700, n)), unit="D")
    weekend = created.day_of_week >= 5
    engagement = rng.normal(0, 1, n)
    y = rng.random(n) < 1 / (1 + np.exp(-(-1.0 + engagement - 2.5 * weekend)))
    X = pd.DataFrame({"engagement": engagement, "created_at": created.astype("datetime64[us]")})
    model = LeadScoringModel(date_column="created_at").fit(X, y)
    assert "created_at_day_of_week" in model.feature_names_
    s = model.date_parts_scores_.set_index("date_parts")
    assert (
        s.loc["with", "log_loss"] < s.loc["without", "log_loss"]
        and s.loc["with", "roc_auc"] > s.loc["without", "roc_auc"]
    )

    X, y = _generated_leads(seed=7, n=3000)
    cut = int(0.7 * len(X))
    auto = LeadScoringModel(date_column="created_at").fit(X.iloc[:cut], y.iloc[:cut])
    assert not {"created_at_month", "created_at_day_of_week"} & set(auto.feature_names_)
    assert auto.dropped_columns_["created_at_month"].startswith("a date part that did not improve the validation")
    # named by the date column, not as a Python tuple of feature names
    assert model_notes(auto)[-1].startswith("The month and weekday of the dates (created_at) were left out")
    keep = LeadScoringModel(date_column="created_at", date_parts="keep").fit(X.iloc[:cut], y.iloc[:cut])
    assert "created_at_month" in keep.feature_names_
    a_auto = roc_auc_score(y.iloc[cut:], auto.predict_proba(X.iloc[cut:]))
    a_keep = roc_auc_score(y.iloc[cut:], keep.predict_proba(X.iloc[cut:]))
    assert a_auto >= a_keep - 0.005, (a_auto, a_keep)


def test_date_parts_are_decided_on_a_sample_of_large_training_sets(monkeypatch):
    """Beyond _DATE_PART_ROWS training rows the comparison runs on a sample; the chosen model is then fitted on all
    rows, exactly as date_parts='keep' (or 'drop') would fit it."""
    from salesforecast.models import lead_scoring

    rng = np.random.default_rng(8)
    n = 3000
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 700, n)), unit="D")
    engagement = rng.normal(0, 1, n)
    y = rng.random(n) < 1 / (1 + np.exp(-(-1.0 + engagement - 2.5 * (created.day_of_week >= 5))))
    X = pd.DataFrame({"engagement": engagement, "created_at": created.astype("datetime64[us]")})
    monkeypatch.setattr(lead_scoring, "_DATE_PART_ROWS", 1000)
    auto = LeadScoringModel(date_column="created_at").fit(X, y)
    keep = LeadScoringModel(date_column="created_at", date_parts="keep").fit(X, y)
    assert "created_at_day_of_week" in auto.feature_names_
    pd.testing.assert_series_equal(auto.validation_metrics_, keep.validation_metrics_)
    np.testing.assert_allclose(auto.predict_proba(X), keep.predict_proba(X))
