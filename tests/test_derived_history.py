"""A history derived from dates alone (current-state exports) leaks nothing into the forecasts.

A current-state export holds each deal's stage, creation and close dates; the mapping derives a minimal history from
them (`salesforecast.datasets.shapes.history_from_dates` gives the same from a generated CRM). That history records
no past close dates: read today, an open deal's close date at a past cutoff would be the date it actually closed,
and a forecast replayed at that cutoff would know which deals close in the period. These tests hold the rule that
such a field is unknown at past cutoffs, that no method then gains over the full history beyond noise, and that a
method whose model relied on features flagged as leakage is marked and never recommended.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.datasets.shapes import history_from_dates
from salesforecast.forecast import HORIZONS, NOT_TRUSTED, backtest, leaderboard, recommend
from salesforecast.models.lead_scoring import LeakageWarning
from salesforecast.models.opportunity_scoring import opportunity_features
from salesforecast.movement import UndatedPipelineWarning, pipeline_coverage, pipeline_waterfall, waterfall_deals
from salesforecast.snapshots import known_at, pipeline_snapshots, unrecorded_fields

METHODS = ["crm_weighted", "stage_conversion", "opportunity_score", "run_rate"]


@pytest.fixture(scope="module")
def crm():
    return generate(n_opportunities=2500, seed=0)[0]


@pytest.fixture(scope="module")
def runs(crm):
    derived = history_from_dates(crm)
    full = backtest(crm, methods=METHODS, groups=["total"], n_jobs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        der = backtest(derived, methods=METHODS, groups=["total"], n_jobs=1)
    return full, der, caught


def test_a_derived_history_knows_no_past_close_date_and_the_current_ones_today(crm):
    derived = history_from_dates(crm)
    assert unrecorded_fields(crm) == () and unrecorded_fields(derived) == ("amount", "close_date", "forecast_category")
    past = pd.Timestamp("2024-06-03")
    snap = pipeline_snapshots(derived, [past, derived.as_of])
    then, now = snap[snap["as_of"] == past], snap[snap["as_of"] == derived.as_of]
    assert len(then) > 100 and then["close_date"].isna().all()
    # forecast category: the stage's default, not today's (a won deal's 'closed')
    assert (then["forecast_category"] == then["stage"].map(crm.process.forecast_category)).all()
    # the amount is today's (see salesforecast.snapshots for why that is kept)
    amounts = crm.opportunities.set_index("opportunity_id")["amount"]
    assert (then["amount"].to_numpy() == amounts.reindex(then["opportunity_id"]).to_numpy()).all()
    # today, the open deals carry their current close dates (the live pipeline)
    opps = crm.opportunities.set_index("opportunity_id")
    assert (now["close_date"].to_numpy() == opps["close_date"].reindex(now["opportunity_id"]).to_numpy()).all()
    # the model features of the past are those of the data known then: no close date, no days to close
    feats = opportunity_features(derived, [past])
    assert feats["days_to_close"].isna().all() and feats["close_in_period"].isna().all()
    # known_at agrees: a replay from the data known then sees the same pipeline
    known = known_at(derived, past)
    open_then = known.opportunities[~known.opportunities["is_closed"]]
    assert len(open_then) and open_then["close_date"].isna().all()
    pd.testing.assert_frame_equal(pipeline_snapshots(known, [past]), then.reset_index(drop=True))


def test_no_method_gains_from_a_history_derived_from_dates(runs):
    """Per method and horizon band, the WAPE of the derived history is not below the full history's beyond noise.

    Noise: the standard error of the WAPE difference from a paired bootstrap over the replayed periods (the periods
    are the independent units; cutoffs of one period share its outcome). Bound: 3 standard errors (12 comparisons,
    one-sided: about 2% of false alarms in all).
    """
    full, der, _ = runs
    rng = np.random.default_rng(0)
    gains = []
    for method in METHODS:
        err = {}
        for name, res in (("full", full), ("derived", der)):
            rows = res[(res["method"] == method) & res["forecast"].notna() & res["actual"].notna()].copy()
            weeks = np.floor(rows["days_before_period_end"] / 7)
            rows["band"] = ""
            for label, (lo, hi) in HORIZONS.items():
                rows.loc[(weeks >= lo) & (weeks <= hi), "band"] = label
            rows["abs"] = (rows["forecast"] - rows["actual"]).abs()
            err[name] = rows.groupby(["band", "period"])[["abs", "actual"]].sum()
        both = err["full"].join(err["derived"], suffixes=("_full", "_derived"), how="inner")
        for band, part in both.groupby(level="band"):
            a = part["actual_full"].to_numpy()
            diff = part["abs_full"].to_numpy() - part["abs_derived"].to_numpy()  # > 0: derived is better
            gain = diff.sum() / a.sum()
            idx = rng.integers(0, len(a), size=(4000, len(a)))
            se = float(np.std(diff[idx].sum(axis=1) / a[idx].sum(axis=1)))
            gains.append((method, band, gain, se))
            assert gain <= 3 * se + 1e-9, (method, band, gain, se)
    assert len(gains) == len(METHODS) * len(HORIZONS)


def test_crm_weighted_says_how_much_pipeline_it_leaves_out(runs):
    full, der, caught = runs
    assert "crm_weighted_left_out" not in full.attrs or full.attrs["crm_weighted_left_out"]["max_share"] == 0
    share = der.attrs["crm_weighted_left_out"]
    assert share["mean_share"] == pytest.approx(1.0) and share["cutoffs"] > 50  # no past close date at all
    (msg,) = [str(w.message) for w in caught if "CRM-weighted" in str(w.message)]
    assert "left out 100% of the open pipeline amount" in msg and "time to close" in msg
    # it forecasts only what is won already: the learned methods place the pipeline by time to close
    wide = der[der["group"] == "total"].pivot_table(index="cutoff", columns="method", values="forecast")
    assert (wide["stage_conversion"] > wide["crm_weighted"]).mean() > 0.9


def test_recommend_names_no_method_flagged_as_leaky(runs):
    _, der, _ = runs
    board = leaderboard(der, by="band")
    assert "trust" in board.columns
    best = set(recommend(board)["best"])
    assert not best & set(board.loc[board["trust"] == NOT_TRUSTED, "method"])


def test_a_method_relying_on_a_leaky_column_is_marked_and_never_recommended():
    """A column filled only for won deals (a signed-contract flag) feeds the opportunity score: the leakage guard
    flags it, the leaderboard marks the method and the recommendation skips it even where it scores best."""
    data, _ = generate(n_opportunities=1500, seed=5, years=2)
    opps = data.opportunities.assign(signed_contract=np.where(data.opportunities["is_won"], "yes", None))
    leaky = dataclasses.replace(data, opportunities=opps)
    with pytest.warns(LeakageWarning, match=r"opportunity score forecast is not trusted.*signed_contract") as rec:
        res = backtest(
            leaky,
            methods=["opportunity_score", "run_rate"],
            groups=["total"],
            periods=2,
            opportunity_params={"model_params": {"leakage_auc": 0.85}},
        )
    assert sum("is not trusted" in str(w.message) for w in rec) == 1  # one warning, not one per period
    flagged = res.loc[res["method"] == "opportunity_score", "leakage"]
    assert flagged.str.contains("signed_contract").all()
    assert (res.loc[res["method"] == "run_rate", "leakage"] == "").all()
    board = leaderboard(res, by="method")
    assert board.set_index("method")["trust"].to_dict() == {"opportunity_score": NOT_TRUSTED, "run_rate": ""}
    # even when the leaky method scores best, it is never the advice
    board.loc[board["method"] == "opportunity_score", "wape"] = 0.0
    assert recommend(board)["best"].tolist() == ["run_rate"]


def test_a_replay_from_the_derived_data_known_then_gives_the_same_forecasts(crm, runs):
    """The backtest's forecast at t equals the one made from ``known_at(derived, t)``: the rule that a field the
    history never recorded is unknown at past dates is the same whether the later data exist or not."""
    derived = history_from_dates(crm)
    _, der, _ = runs
    for t in (pd.Timestamp("2025-04-15"), pd.Timestamp("2025-06-03")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            replay = backtest(known_at(derived, t), methods=METHODS, groups=["total"], cutoffs=[t], n_jobs=1)
        full = der[der["cutoff"] == t].set_index("method")["forecast"]
        got = replay.set_index("method")["forecast"]
        np.testing.assert_allclose(got[METHODS].to_numpy(), full[METHODS].to_numpy(), rtol=1e-9)


def test_the_waterfall_and_coverage_of_a_past_period_know_no_close_date_of_a_derived_history(crm):
    """Before the data's as_of an open deal's close date is unknown there too: no final close date leaks in."""
    derived = history_from_dates(crm)
    period, start, end = "FY2024Q3", pd.Timestamp("2024-07-01"), pd.Timestamp("2024-10-01")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the undated pipeline is said by a warning (tested in test_movement)
        full = pipeline_coverage(crm, period, as_of=start)
        der = pipeline_coverage(derived, period, as_of=start)
    # the full history knows which deals were expected to close in the quarter; a derived one cannot
    assert full["open_pipeline"].iloc[0] > 0 and der["open_pipeline"].iloc[0] == 0
    assert der["undated_deals"].iloc[0] == len(known_at(derived, start).opportunities.query("not is_closed"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        won = [pipeline_coverage(d, period, as_of=end)["closed_won"].iloc[0] for d in (crm, derived)]
    assert won[0] == won[1] > 0  # wins are recorded facts: the quarter's bookings are the same in both
    with pytest.warns(UndatedPipelineWarning, match="counted as 'pulled in' to FY2024Q3 were open at the window's"):
        steps = pipeline_waterfall(derived, start, end, period=period).set_index("step")
    assert steps.loc["opening pipeline", "count"] == 0  # not "the deals that did close in the quarter"
    deals = waterfall_deals(derived, start, end, period=period)
    assert deals.loc[deals["close_date_start"].notna() & (deals["stage_start"] != "Closed Won"), "step"].empty
    # the won deals of the window are the same as with the full history (closes are recorded facts)
    full_won = waterfall_deals(crm, start, end, period=period).query("step == 'won'")["opportunity_id"]
    assert set(deals.query("step == 'won'")["opportunity_id"]) == set(full_won)
