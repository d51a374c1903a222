"""LeadScoringModel: contract, preprocessing, leakage guard, tiers, explanations, validation, recovery of the truth."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.utils.validation import check_is_fitted

from salesforecast.datasets import generate
from salesforecast.metrics import roc_auc, score_table
from salesforecast.models import LeadScoringModel
from salesforecast.models.lead_scoring import LeakageWarning, _rank_auc

REPO = Path(__file__).resolve().parents[1]
UCI = REPO.parent / "shared" / "data" / "uci-bank-marketing" / "bank-additional-full.csv"
REASON = re.compile(r"^\S.* = .+ (raises|lowers) the odds$")


def make_leads(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Leads with a known logistic truth: `engagement` is the planted strongest feature, `region` has no effect."""
    rng = np.random.default_rng(seed)
    source = rng.choice(["Web", "Referral", "Event", "Partner"], n, p=[0.5, 0.2, 0.2, 0.1])
    engagement = rng.normal(50, 15, n).round(1)
    visits = rng.poisson(3, n).astype(float)
    visits[rng.random(n) < 0.1] = np.nan
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 700, n)), unit="D")
    eta = -1.5 + 0.15 * (engagement - 50) + np.select([source == "Referral", source == "Event"], [0.8, -0.4], 0.0)
    eta = eta + 0.1 * np.nan_to_num(visits, nan=3.0)
    p = 1 / (1 + np.exp(-eta))
    y = pd.Series(np.where(rng.random(n) < p, "yes", "no"), dtype="str")
    X = pd.DataFrame(
        {
            "lead_source": pd.Series(source, dtype="str"),
            "engagement": engagement,
            "visits": visits,
            "region": pd.Series(rng.choice(["North", "South", "East"], n), dtype="str"),
            "created_at": created.astype("datetime64[us]"),
        }
    )
    return X, y, p


@pytest.fixture(scope="module")
def leads():
    return make_leads()


@pytest.fixture(scope="module")
def fitted(leads) -> LeadScoringModel:
    X, y, _ = leads
    return LeadScoringModel(date_column="created_at").fit(X, y)


# ------------------------------------------------------------------------------------------------ contract
# The estimator contract shared by every model (fit returns self, NotFittedError, get/set_params, clone, same seed
# same output, predict_proba's type) is tests/test_contract.py; what is particular to this model is here.
def test_fit_sets_classes_and_feature_names(leads):
    X, y, _ = leads
    model = LeadScoringModel().fit(X, y)
    assert model.classes_.tolist() == ["no", "yes"]
    assert set(model.predict(X)) <= {"no", "yes"}
    assert model.n_features_in_ == X.shape[1]
    assert list(model.feature_names_in_) == list(X.columns)


def test_contract_params_and_clone(leads):
    X, y, _ = leads
    model = LeadScoringModel("logistic", exclude=["region"], tier_cuts=(0.1, 0.3, 0.6), random_state=3)
    params = model.get_params()
    assert params["estimator"] == "logistic" and params["exclude"] == ["region"] and params["random_state"] == 3
    assert model.set_params(calibration="sigmoid") is model and model.calibration == "sigmoid"
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    model.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(model))
    # same settings, same data: same scores
    np.testing.assert_allclose(clone(model).fit(X, y).predict_proba(X), model.predict_proba(X))
    # a fitted model survives pickling (deployment), and scikit-learn's tools take it as a classifier
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(X), model.predict_proba(X))

    def auc(est, Xt, yt):  # predict_proba is a Series of P(classes_[1]), not scikit-learn's (n, 2) array
        return roc_auc_score(yt == est.classes_[1], est.predict_proba(Xt))

    assert cross_val_score(LeadScoringModel(), X, y, cv=2, scoring=auc).min() > 0.8


def test_init_stores_settings_only_and_fit_validates_them(leads):
    X, y, _ = leads
    model = LeadScoringModel(estimator="forest", validation_size=2.0)  # no error before fit
    assert model.estimator == "forest"
    with pytest.raises(ValueError, match="estimator must be one of"):
        model.fit(X, y)
    with pytest.raises(ValueError, match="validation_size"):
        LeadScoringModel(validation_size=2.0).fit(X, y)
    with pytest.raises(ValueError, match="tier_cuts"):
        LeadScoringModel(tier_method="probability").fit(X, y)
    with pytest.raises(ValueError, match="needs 3 values"):
        LeadScoringModel(tier_cuts=(0.5,)).fit(X, y)
    with pytest.raises(ValueError, match="two outcomes"):
        LeadScoringModel().fit(X, np.ones(len(X)))
    with pytest.raises(ValueError, match="y has 3 values"):
        LeadScoringModel().fit(X, y[:3])


def test_numpy_input_and_pandas_dtypes():
    rng = np.random.default_rng(1)
    n = 1500
    x = rng.normal(size=(n, 3))
    y = rng.random(n) < 1 / (1 + np.exp(-2 * x[:, 0]))
    model = LeadScoringModel().fit(x, y)
    assert model.feature_names_ == ["x0", "x1", "x2"]
    assert model.evaluate(x, y)["roc_auc"] > 0.75
    X = pd.DataFrame(
        {
            "count": pd.array(rng.integers(0, 5, n), dtype="Int64"),
            "flag": rng.random(n) < 0.5,
            "kind": pd.Categorical(rng.choice(["a", "b"], n)),
            "text": pd.Series(rng.choice(["u", "v", None], n), dtype="str"),
            "wait": pd.to_timedelta(rng.integers(0, 100, n), unit="h"),
        }
    )
    X.loc[:10, "count"] = pd.NA
    with pytest.warns(UserWarning, match="barely ranks"):  # these columns are unrelated to y
        fitted = LeadScoringModel().fit(X, y)
    assert fitted.feature_names_ == ["count", "flag", "kind", "text", "wait"]
    assert fitted.predict_proba(X).shape == (n,)


# ------------------------------------------------------------------------------------------------ preprocessing
def test_unknown_and_rare_levels(leads):
    X, y, _ = leads
    X = X.copy()
    X.loc[:29, "region"] = [f"tiny-{i % 3}" for i in range(30)]  # three levels of 10 rows: grouped into "other"
    for est in ("hgb", "logistic"):
        model = LeadScoringModel(est, rare_level_min=20).fit(X, y)
        levels = model._encoder_.features[model.feature_names_.index("region")].levels.tolist()
        assert "other" in levels and not any(v.startswith("tiny") for v in levels)
        new = X.head(3).copy()
        new["region"] = pd.Series(["Atlantis", "tiny-1", None], dtype="str")
        p = model.predict_proba(new).to_numpy()
        np.testing.assert_allclose(p, model.predict_proba(new.assign(region="other")).to_numpy())
    # a rare or new level explains nothing to a reader: it is never a reason, though the score uses it
    words = model.explain(new, top=6).filter(like="reason_").iloc[:2].stack().dropna()
    assert len(words) and not words.str.startswith("region = ").any()
    j = model.feature_names_.index("region")
    assert np.abs(model._effects(model._check_X(new.head(2)))[:, j]).max() > 0


def test_unknown_level_without_other_is_missing():
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"source": pd.Series(rng.choice(["Web", "Event"], 600), dtype="str")})
    X["score"] = rng.normal(size=600)
    y = rng.random(600) < 1 / (1 + np.exp(-X["score"] - (X["source"] == "Event")))
    for est in ("hgb", "logistic"):
        model = LeadScoringModel(est).fit(X, y)
        p = model.predict_proba(pd.DataFrame({"source": ["Webinar", None], "score": [0.0, 0.0]}))
        assert np.isfinite(p).all()


def test_datetime_columns_become_parts_with_age_at_the_date_column(leads):
    X, y, _ = leads
    X = X.copy()
    X["last_touch_at"] = X["created_at"] - pd.to_timedelta(np.arange(len(X)) % 40, unit="D")
    model = LeadScoringModel(date_column="created_at", date_parts="keep").fit(X, y)
    names = model.feature_names_
    assert {"created_at_month", "created_at_day_of_week", "last_touch_at_month", "last_touch_at_age_days"} <= set(names)
    assert "created_at_age_days" not in names
    Z = model._encoder_.transform(X)
    np.testing.assert_allclose(Z[:, names.index("last_touch_at_age_days")], np.arange(len(X)) % 40)
    # the date column is needed at predict time for the ages
    with pytest.raises(ValueError, match="'created_at'"):
        model.predict_proba(X.drop(columns=["created_at"]))
    # timezone-aware and text dates are read too
    X2 = X.assign(created_at=X["created_at"].dt.tz_localize("UTC"), last_touch_at=X["last_touch_at"].astype("str"))
    np.testing.assert_allclose(model.predict_proba(X2), model.predict_proba(X))


def test_datetime_refusal_names_the_column(leads):
    X, y, _ = leads
    X = X.assign(last_touch_at=X["created_at"])
    with pytest.raises(ValueError, match=r"\['last_touch_at'\] hold datetimes.*datetimes='error'"):
        LeadScoringModel(date_column="created_at", datetimes="error").fit(X, y)
    with pytest.raises(ValueError, match=r"\['created_at', 'last_touch_at'\] hold datetimes"):
        LeadScoringModel(datetimes="error").fit(X, y)
    with pytest.raises(ValueError, match="date_column 'signup' is not a column"):
        LeadScoringModel(date_column="signup").fit(X, y)
    with pytest.raises(ValueError, match="date_column 'lead_source' must hold dates"):
        LeadScoringModel(date_column="lead_source").fit(X, y)


def test_id_like_text_columns_are_dropped_with_a_warning_naming_them(leads):
    X, y, _ = leads
    X = X.assign(lead_id=pd.Series([f"L{i:05d}" for i in range(len(X))], dtype="str"))
    with pytest.warns(UserWarning, match=r"\['lead_id'\] are text with a different value on every row"):
        model = LeadScoringModel().fit(X, y)
    assert "lead_id" not in model.feature_names_
    assert model.dropped_columns_["lead_id"].startswith("id-like")
    with pytest.raises(ValueError, match=r"\['lead_id'\].*exclude them"):
        LeadScoringModel(id_columns="error").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LeadScoringModel(exclude=["lead_id"]).fit(X, y)  # excluded: no warning


def test_exclude_drops_columns_and_checks_names(leads):
    X, y, _ = leads
    model = LeadScoringModel(exclude=["region", "created_at"]).fit(X, y)
    assert not any(f.startswith(("region", "created_at")) for f in model.feature_names_)
    assert model.dropped_columns_["region"] == "excluded"
    model.predict_proba(X.drop(columns=["region", "created_at"]))  # excluded columns are not needed later
    with pytest.raises(ValueError, match="exclude names 'regoin', which is not a column of X"):
        LeadScoringModel(exclude=["regoin"]).fit(X, y)
    with pytest.raises(ValueError, match="list of column names"):
        LeadScoringModel(exclude="region").fit(X, y)


def test_exclude_none_excludes_nothing_like_the_default(leads):
    X, y, _ = leads
    default = LeadScoringModel().fit(X, y)
    model = LeadScoringModel(exclude=None).fit(X, y)  # raised TypeError: 'NoneType' object is not iterable
    assert model.feature_names_ == default.feature_names_
    assert "excluded" not in model.dropped_columns_.values()
    np.testing.assert_allclose(model.predict_proba(X), default.predict_proba(X))
    assert clone(model).get_params()["exclude"] is None


def test_constant_columns_are_dropped(leads):
    X, y, _ = leads
    model = LeadScoringModel().fit(X.assign(country="US", empty=np.nan), y)
    assert model.dropped_columns_["country"] == "a single value"
    assert model.dropped_columns_["empty"] == "a single value"


# ------------------------------------------------------------------------------------------------ leakage
def test_leakage_warning_names_the_planted_column(leads):
    X, y, _ = leads
    rng = np.random.default_rng(5)
    won = (y == "yes").to_numpy()
    tags = np.where(won, "customer", "nurture")
    flip = rng.random(len(X)) < 0.03
    tags[flip] = np.where(won[flip], "nurture", "customer")
    X = X.assign(tags=pd.Series(tags, dtype="str"), converted_days=np.where(won, rng.uniform(1, 30, len(X)), np.nan))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LeadScoringModel(leakage="warn").fit(X, y)
    leaks = [str(w.message) for w in caught if issubclass(w.category, LeakageWarning)]
    assert len(leaks) == 2
    assert {"tags", "converted_days"} <= set(model.feature_names_) and model.dropped_leaky_ == {}
    assert any(m.startswith("column 'tags' alone separates the outcomes: single-feature AUC 0.9") for m in leaks)
    assert any("'converted_days'" in m and "exclude=['converted_days']" in m for m in leaks)
    assert model.feature_auc_["tags"] > 0.95 and model.feature_auc_["converted_days"] > 0.99
    assert model.feature_auc_["engagement"] < 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeakageWarning)
        LeadScoringModel(exclude=["tags", "converted_days"]).fit(X, y)
        LeadScoringModel(leakage_auc=None).fit(X, y)
    assert issubclass(LeakageWarning, UserWarning)


def test_single_feature_auc_matches_sklearn(leads):
    X, y, _ = leads
    model = LeadScoringModel(leakage_auc=None).fit(X, y)
    yb = (y == "yes").to_numpy()
    for col in ("engagement", "visits"):
        v = X[col].to_numpy()
        ok = ~np.isnan(v)
        lo, hi = np.where(ok, v, -1e9), np.where(ok, v, 1e9)
        ref = max(max(a, 1 - a) for a in (roc_auc_score(yb, lo), roc_auc_score(yb, hi)))
        assert model.feature_auc_[col] == pytest.approx(ref, abs=1e-12)
    rate = pd.Series(yb).groupby(X["lead_source"]).transform("mean")
    assert model.feature_auc_["lead_source"] == pytest.approx(roc_auc_score(yb, rate), abs=1e-12)


# ------------------------------------------------------------------------------------------------ tiers
def test_tiers_are_ordered_by_conversion(leads, fitted):
    X, y, _ = leads
    Xn, yn, _ = make_leads(6000, seed=9)
    tiers = fitted.tiers(Xn)
    assert tiers.index.equals(Xn.index)
    assert list(tiers.cat.categories) == ["A", "B", "C", "D"] and tiers.cat.ordered
    rate = (yn == "yes").groupby(tiers, observed=True).mean()
    assert rate.index.tolist() == ["A", "B", "C", "D"]
    assert rate.is_monotonic_decreasing and rate["A"] > 2 * rate["D"]
    share = fitted.tiers(X).value_counts(normalize=True)
    np.testing.assert_allclose(share.sort_index(), 0.25, atol=0.02)
    th = fitted.tier_thresholds_
    assert th.is_monotonic_decreasing and th.iloc[-1] == 0.0


def test_probability_tiers_cut_at_the_given_probabilities(leads):
    X, y, _ = leads
    model = LeadScoringModel(tier_labels=("hot", "warm", "cold"), tier_method="probability", tier_cuts=(0.5, 0.2))
    model.fit(X, y)
    p = model.predict_proba(X).to_numpy()
    expected = np.where(p >= 0.5, "hot", np.where(p >= 0.2, "warm", "cold"))
    assert (model.tiers(X).astype("str").to_numpy() == expected).all()
    assert model.tiers_of([0.5, 0.2, 0.1999]).astype("str").tolist() == ["hot", "warm", "cold"]


# ------------------------------------------------------------------------------------------------ explain
def test_explain_gives_plain_words_and_the_planted_strongest_feature_first(leads, fitted):
    X, _, _ = leads
    ex = fitted.explain(X.head(500), top=3)
    assert ex.index.equals(X.head(500).index)
    assert ex.columns.tolist()[:4] == ["probability", "reason_1", "reason_2", "reason_3"]
    np.testing.assert_allclose(ex["probability"], fitted.predict_proba(X.head(500)).to_numpy())
    assert ex["reason_1"].map(lambda r: bool(REASON.match(r))).all()
    assert ex["feature_1"].value_counts().index[0] == "engagement"
    assert (ex["effect_1"].abs() >= ex["effect_2"].abs().fillna(0)).all()
    # direction: high engagement raises the odds, low lowers them
    hi = fitted.explain(X.head(1).assign(engagement=95.0), top=1)
    lo = fitted.explain(X.head(1).assign(engagement=5.0), top=1)
    assert hi.loc[0, "reason_1"] == "engagement = 95 raises the odds"
    assert lo.loc[0, "reason_1"] == "engagement = 5 lowers the odds"
    assert fitted.summary["feature"].iloc[0] == "engagement"


def test_explain_categorical_and_missing_wording(leads):
    X, y, _ = leads
    model = LeadScoringModel("logistic").fit(X, y)
    row = X.head(1).assign(lead_source="Referral", engagement=X["engagement"].median())
    words = model.explain(row, top=4).filter(like="reason_").iloc[0].dropna().tolist()
    assert "lead_source = Referral raises the odds" in words
    row = X.head(1).assign(visits=np.nan)
    words = model.explain(row, top=6).filter(like="reason_").iloc[0].dropna().tolist()
    assert any(w.startswith("visits = (missing) ") for w in words)


def test_logistic_effects_are_exact_and_additive(leads):
    X, y, _ = leads
    model = LeadScoringModel("logistic", calibration=None, exclude=["created_at"]).fit(X, y)
    Z = model._encoder_.transform(X.head(200))
    E = model._effects(Z)
    ref = np.tile(model._encoder_.reference, (1, 1))
    logit = model._raw(model.estimator_, Z)
    logit_ref = model._raw(model.estimator_, ref)
    np.testing.assert_allclose(E.sum(axis=1), logit - logit_ref, atol=1e-9)


def test_hgb_effects_match_a_naive_loop(fitted, leads):
    X, _, _ = leads
    Z = fitted._encoder_.transform(X.head(50))
    E = fitted._effects(Z)
    ref = fitted._encoder_.reference
    base = fitted._raw(fitted.estimator_, Z)
    for j in range(Z.shape[1]):
        Zj = Z.copy()
        Zj[:, j] = ref[j]
        np.testing.assert_allclose(E[:, j], base - fitted._raw(fitted.estimator_, Zj), atol=1e-12)


def test_summary_columns_and_noise_feature_last(fitted):
    s = fitted.summary
    assert s.columns.tolist() == [
        "feature",
        "source",
        "kind",
        "importance",
        "importance_std",
        "log_loss_increase",
        "mean_abs_effect",
        "single_feature_auc",
        "reference",
    ]
    assert s["importance"].is_monotonic_decreasing
    assert s.set_index("feature").loc["region", "importance"] < 0.01
    assert s is not fitted.summary  # a copy each time


# ------------------------------------------------------------------------------------------------ calibration
def test_calibration_improves_brier_on_a_miscalibrated_model(leads):
    X, y, _ = leads
    Xn, yn, _ = make_leads(6000, seed=10)
    # a heavily penalised logistic regression squeezes its probabilities toward the base rate
    squeezed = {"estimator": "logistic", "estimator_params": {"C": 1e-4}}
    raw = LeadScoringModel(calibration=None, **squeezed).fit(X, y).evaluate(Xn, yn)
    for method in ("sigmoid", "isotonic", "auto"):
        cal = LeadScoringModel(calibration=method, **squeezed).fit(X, y)
        m = cal.evaluate(Xn, yn)
        assert m["brier"] < raw["brier"] - 0.01, method
        assert m["roc_auc"] == pytest.approx(raw["roc_auc"], abs=0.01)
    assert cal.calibration_ in ("sigmoid", "isotonic")
    assert cal.calibration_scores_["calibration"].tolist() == ["sigmoid", "isotonic"]


# ------------------------------------------------------------------------------------------------ validation
def test_time_validation_holds_out_the_latest_rows(leads):
    X, y, _ = leads
    shuffled = X.sample(frac=1.0, random_state=0)
    ys = y.loc[shuffled.index]
    model = LeadScoringModel(date_column="created_at").fit(shuffled, ys)
    val = model.validation_index_
    assert len(val) == int(np.ceil(0.2 * len(X)))
    cutoff = shuffled["created_at"].loc[val].min()
    assert (shuffled["created_at"].drop(index=val) < cutoff).all()
    # without a date column: the last rows as given
    plain = LeadScoringModel(validation_size=0.25).fit(X, y)
    assert plain.validation_index_.equals(X.index[-1000:])
    # random: stratified, spread over the whole period
    rnd = LeadScoringModel(validation="random").fit(X, y)
    assert (y.loc[rnd.validation_index_] == "yes").mean() == pytest.approx((y == "yes").mean(), abs=0.005)
    assert rnd.validation_index_.min() < 500 < 3500 < rnd.validation_index_.max()


def test_time_validation_keeps_a_date_on_one_side():
    rng = np.random.default_rng(3)
    n = 1000
    X = pd.DataFrame(
        {"score": rng.normal(size=n), "day": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) // 100, "D")}
    )
    y = rng.random(n) < 1 / (1 + np.exp(-X["score"]))
    model = LeadScoringModel(date_column="day", validation_size=0.15).fit(X, y)
    assert model.validation_index_.equals(X.index[800:])  # the boundary date (day 8) goes to validation whole


def test_warns_when_the_model_does_not_rank_its_validation_rows():
    rng = np.random.default_rng(8)
    X = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.choice(["u", "v"], 2000)})
    y = rng.random(2000) < 0.3  # unrelated to X
    with pytest.warns(UserWarning, match=r"barely ranks its later validation rows \(validation ROC AUC 0\.[45]"):
        LeadScoringModel().fit(X, y)


def test_refit_and_best_iteration(leads):
    X, y, _ = leads
    model = LeadScoringModel().fit(X, y)
    assert model.refitted_ and model.estimator_ is not model.validation_estimator_
    assert model.estimator_.n_iter_ == model.best_iter_ <= model.n_iter_
    kept = LeadScoringModel(refit=False).fit(X, y)
    assert not kept.refitted_ and kept.estimator_ is kept.validation_estimator_


def test_rolling_origin_fold_structure(leads):
    X, y, _ = leads
    model = LeadScoringModel(date_column="created_at")
    folds = model.rolling_origin(X, y, n_splits=3, test_size=0.1)
    assert not hasattr(model, "classes_")  # the model itself is not fitted
    assert folds["fold"].tolist() == [1, 2, 3]
    assert (folds["train_start"] == 0).all()
    assert (folds["train_stop"] == folds["test_start"]).all()
    assert folds["test_stop"].tolist()[:-1] == folds["test_start"].tolist()[1:]
    assert folds["test_stop"].iloc[-1] == len(X)
    assert folds["n_train"].is_monotonic_increasing
    np.testing.assert_allclose(folds["n"], 400, atol=2)
    assert (folds["test_from"] >= X["created_at"].iloc[folds["test_start"]].to_numpy()).all()
    assert {"roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "alift", "ks", "base_rate"} <= set(
        folds.columns
    )
    assert folds["roc_auc"].between(0.7, 0.95).all()
    # fold 2 is exactly a model fitted on the rows before its block
    a, b = folds.loc[1, ["test_start", "test_stop"]]
    direct = clone(model).fit(X.iloc[:a], y.iloc[:a]).evaluate(X.iloc[a:b], y.iloc[a:b])
    assert folds.loc[1, "roc_auc"] == pytest.approx(direct["roc_auc"])
    with pytest.raises(ValueError, match="too few earlier rows"):
        model.rolling_origin(X, y, n_splits=10, test_size=0.1)


def test_rolling_origin_predictions_follow_the_dates(leads):
    X, y, _ = leads
    shuffled = X.sample(frac=1.0, random_state=1)
    ys = y.loc[shuffled.index]
    folds, pred = LeadScoringModel(date_column="created_at").rolling_origin(
        shuffled, ys, n_splits=2, test_size=500, return_predictions=True
    )
    assert pred.columns.tolist() == ["fold", "probability"] and len(pred) == 1000
    assert pred.index.equals(X.index[-1000:])  # the latest rows, in time order, whatever the input order
    for k, group in pred.groupby("fold"):
        yk = (ys.loc[group.index] == "yes").to_numpy()
        assert roc_auc(yk, group["probability"].to_numpy()) == pytest.approx(folds.loc[k - 1, "roc_auc"])


# ------------------------------------------------------------------------------------------------ metrics
def test_evaluate_is_the_score_table_of_the_probabilities(fitted, leads):
    X, y, _ = leads
    m = fitted.evaluate(X, y)
    ref = score_table((y == "yes").to_numpy(), fitted.predict_proba(X).to_numpy()).iloc[0]
    pd.testing.assert_series_equal(m, ref, check_names=False)
    with pytest.raises(ValueError, match="not one of the fitted outcomes"):
        fitted.evaluate(X, np.where(y == "yes", "won", "lost"))


def test_rank_auc_columns_match_roc_auc():
    rng = np.random.default_rng(7)
    p = np.round(rng.random(3000), 2)  # many ties
    y = (rng.random(3000) < p).astype(int)
    auc = roc_auc(y, p)
    assert _rank_auc(np.c_[p, 1 - p], y) == pytest.approx([auc, 1 - auc])


# ------------------------------------------------------------------------------------------------ recovery
@pytest.fixture(scope="module")
def generated_leads():
    data, truth = generate(n_opportunities=20_000, seed=3)
    leads = data.leads
    old = leads[leads["created_at"] < truth.as_of - pd.Timedelta(days=180)].reset_index(drop=True)
    p_true = truth.lead_probability.reindex(old["lead_id"]).to_numpy()
    # outcome fields and the lead's owner are not features
    X = old.drop(columns=["converted", "converted_at", "opportunity_id", "owner", "lead_id"])
    return X, old["converted"].to_numpy(), p_true


@pytest.mark.parametrize("estimator", ["hgb", "logistic"])
def test_recovers_the_true_lead_probabilities(generated_leads, estimator):
    X, y, p_true = generated_leads
    cut = int(0.75 * len(X))  # held out: the latest quarter of the (uncensored) leads
    model = LeadScoringModel(estimator, date_column="created_at").fit(X.iloc[:cut], y[:cut])
    p = model.predict_proba(X.iloc[cut:]).to_numpy()
    mae = np.abs(p - p_true[cut:]).mean()
    auc, auc_true = roc_auc_score(y[cut:], p), roc_auc_score(y[cut:], p_true[cut:])
    assert mae <= 0.03, mae
    assert abs(auc - auc_true) <= 0.01, (auc, auc_true)
    top = model.summary["feature"].iloc[:4].tolist()
    assert "engagement_score" in top and "lead_source" in top
    assert model.summary.set_index("feature").loc["country", "importance"] < 0.002


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 11, 17])
def test_recovers_the_true_lead_probabilities_other_seeds(seed):
    data, truth = generate(n_opportunities=20_000, seed=seed)
    leads = data.leads
    old = leads[leads["created_at"] < truth.as_of - pd.Timedelta(days=180)].reset_index(drop=True)
    p_true = truth.lead_probability.reindex(old["lead_id"]).to_numpy()
    X = old.drop(columns=["converted", "converted_at", "opportunity_id", "owner", "lead_id"])
    y = old["converted"].to_numpy()
    cut = int(0.75 * len(X))
    for estimator in ("hgb", "logistic"):
        model = LeadScoringModel(estimator, date_column="created_at").fit(X.iloc[:cut], y[:cut])
        p = model.predict_proba(X.iloc[cut:]).to_numpy()
        assert np.abs(p - p_true[cut:]).mean() <= 0.03
        assert abs(roc_auc_score(y[cut:], p) - roc_auc_score(y[cut:], p_true[cut:])) <= 0.01


def test_leads_table_leaks_are_caught():
    """The leads table's own outcome fields are flagged when they are left in."""
    data, truth = generate(n_opportunities=1500, seed=4)
    leads = data.leads[data.leads["created_at"] < truth.as_of - pd.Timedelta(days=180)]
    with pytest.warns(LeakageWarning, match="'converted_at'"):
        LeadScoringModel(exclude=["lead_id", "converted", "opportunity_id"]).fit(leads, leads["converted"])


# ------------------------------------------------------------------------------------------------ UCI
def test_uci_bank_marketing_subsample_auc():
    if not UCI.exists():
        pytest.skip(f"UCI Bank Marketing file not found at {UCI} (see benchmarks/README.md)")
    df = pd.read_csv(UCI, sep=";")
    sub, _ = train_test_split(df, train_size=8000, stratify=df["y"], random_state=0)
    sub = sub.sort_index()  # keep the file's time order
    y = sub.pop("y")
    X = sub.drop(columns=["duration"])  # known only after the call
    aucs = []
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y):
        model = LeadScoringModel(validation="random").fit(X.iloc[tr], y.iloc[tr])
        aucs.append(model.evaluate(X.iloc[te], y.iloc[te])["roc_auc"])
    assert np.mean(aucs) >= 0.78, aucs


def test_large_data_gets_the_large_learning_rate():
    from salesforecast.models import lead_scoring as ls

    model = LeadScoringModel()
    small = model._make_estimator(_encoder_stub(), 1_000)
    large = model._make_estimator(_encoder_stub(), ls._LARGE_ROWS)
    assert small.learning_rate == ls._HGB_DEFAULTS["learning_rate"]
    assert large.learning_rate == ls._LARGE_LEARNING_RATE
    chosen = LeadScoringModel(estimator_params={"learning_rate": 0.05})._make_estimator(_encoder_stub(), 10**7)
    assert chosen.learning_rate == 0.05  # an explicit setting always wins


def _encoder_stub():
    class _Enc:
        categorical = None

    return _Enc()
