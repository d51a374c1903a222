"""Forecast methods and the backtest: hand-computed references, additivity, no leakage, determinism, errors."""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import generate, load_sample
from salesforecast.datasets.shapes import history_from_dates
from salesforecast.forecast import (
    METHODS,
    ForecastWarning,
    backtest,
    data_end,
    definitions,
    forecast_period,
    leaderboard,
    missing_methods,
    recommend,
    submission_bias,
    submissions_note,
)
from salesforecast.metrics import wape
from salesforecast.models.opportunity_scoring import opportunity_features
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.session import ReportNeeds
from salesforecast.snapshots import known_at, pipeline_snapshots

PERIOD = "FY2025Q2"
CUTS = [pd.Timestamp("2025-04-15"), pd.Timestamp("2025-05-27")]
KEY = ["cutoff", "group", "group_value", "method"]
ADDITIVE = ["submitted_commit", "submitted_best_case", "crm_weighted", "stage_conversion", "opportunity_score"]


@pytest.fixture(scope="module")
def data():
    return load_sample()


@pytest.fixture(scope="module")
def results(data):
    return backtest(data, cutoffs=CUTS, periods=[PERIOD], n_sims=500)


def _won_by(data, t, start, end):
    """Closed won as known at t with a close date in [start, end): from the truncated tables, naively."""
    opps = known_at(data, t).opportunities
    inside = opps["is_won"] & (opps["close_date"] >= start) & (opps["close_date"] < end)
    return float(opps.loc[inside, "amount"].sum())


def test_output_is_one_long_table(results):
    assert list(results.columns) == [
        "period",
        "cutoff",
        "days_before_period_end",
        "group",
        "group_value",
        "method",
        "forecast",
        "p10",
        "p50",
        "p90",
        "actual",
        "leakage",
    ]
    assert set(results["method"]) == set(METHODS) - {"oracle"}
    assert not results.duplicated(KEY).any()
    total = results[results["group"] == "total"]
    assert total.groupby("cutoff").size().eq(len(METHODS) - 1).all()
    end = pd.Timestamp("2025-07-01")
    assert (total["days_before_period_end"] == (end - total["cutoff"]).dt.days).all()


def test_actual_is_the_closed_won_amount_of_the_period(data, results):
    opps = data.opportunities
    won = opps[opps["is_won"] & (opps["close_date"] >= "2025-04-01") & (opps["close_date"] < "2025-07-01")]
    total = results[results["group"] == "total"]
    assert np.allclose(total["actual"], won["amount"].sum())
    teams = results[(results["group"] == "team") & (results["method"] == "crm_weighted")]
    by_team = won.groupby("team")["amount"].sum()
    for _, row in teams.iterrows():
        assert row["actual"] == pytest.approx(by_team.get(row["group_value"], 0.0))


def test_crm_weighted_matches_a_hand_computation(data, results):
    process = data.process
    for t in CUTS:
        snap = pipeline_snapshots(data, t)
        inside = (snap["close_date"] >= "2025-04-01") & (snap["close_date"] < "2025-07-01")
        weighted = (snap["amount"] * snap["stage"].map(process.probability) * inside).sum()
        expected = _won_by(data, t, pd.Timestamp("2025-04-01"), pd.Timestamp("2025-07-01")) + weighted
        got = results.loc[
            (results["cutoff"] == t) & (results["method"] == "crm_weighted") & (results["group"] == "total"),
            "forecast",
        ]
        assert got.iloc[0] == pytest.approx(expected)


def test_run_rate_matches_a_naive_pandas_reference(data, results):
    """Won to date + the trailing quarter's bookings per day (as known at the cutoff) x the days left, per team too."""
    start, end = pd.Timestamp("2025-04-01"), pd.Timestamp("2025-07-01")
    length = (end - start) / pd.Timedelta(days=1)  # FY2025Q2: 91 days
    for t in CUTS:
        opps = known_at(data, t).opportunities
        won = opps[opps["is_won"]]
        to_date = won[(won["close_date"] >= start) & (won["close_date"] < end)]
        trailing = won[(won["close_date"] >= t - pd.Timedelta(days=length)) & (won["close_date"] < t)]
        left = (end - t) / pd.Timedelta(days=1)
        rows = results[(results["cutoff"] == t) & (results["method"] == "run_rate")]
        total = rows.loc[rows["group"] == "total", "forecast"].iloc[0]
        assert total == pytest.approx(to_date["amount"].sum() + trailing["amount"].sum() / length * left, rel=1e-12)
        teams = rows[rows["group"] == "team"].set_index("group_value")["forecast"]
        expected = (
            to_date.groupby("team")["amount"]
            .sum()
            .add(trailing.groupby("team")["amount"].sum() / length * left, fill_value=0.0)
        )
        assert len(teams) >= 2
        pd.testing.assert_series_equal(
            teams.sort_index(), expected.reindex(teams.index).fillna(0.0).sort_index(), check_names=False, rtol=1e-12
        )


def test_run_rate_is_missing_without_a_whole_earlier_period(data):
    first = pd.Timestamp(data.opportunities["created_at"].min())
    res = backtest(data, methods=["run_rate"], cutoffs=[first + pd.Timedelta(days=20)], groups=["total"])
    assert res["forecast"].isna().all()


def test_submissions_are_each_reps_latest_call(data, results):
    subs = data.forecast_submissions
    for t in CUTS:
        s = subs[(subs["period"] == PERIOD) & (subs["category"] == "commit") & (subs["submitted_at"] <= t)]
        latest = s.sort_values("submitted_at").groupby("owner")["amount"].last()
        rows = results[(results["cutoff"] == t) & (results["method"] == "submitted_commit")]
        assert rows.loc[rows["group"] == "total", "forecast"].iloc[0] == pytest.approx(latest.sum())
        owners = rows[rows["group"] == "owner"].set_index("group_value")["forecast"]
        pd.testing.assert_series_equal(owners.reindex(latest.index), latest, check_names=False)


def test_groups_add_up_to_the_total(results):
    for method in [*ADDITIVE, "monte_carlo", "bias_corrected_commit"]:
        rows = results[results["method"] == method]
        for t in CUTS:
            at = rows[rows["cutoff"] == t]
            total = at.loc[at["group"] == "total", "forecast"].iloc[0]
            for group in ("team", "owner"):
                assert at.loc[at["group"] == group, "forecast"].sum() == pytest.approx(total, rel=1e-9), (method, group)


def test_quantiles_are_ordered_and_only_where_a_method_has_them(results):
    with_q = results[results["p10"].notna()]
    assert set(with_q["method"]) == {m for m in set(results["method"]) if METHODS[m].quantiles}
    assert {"monte_carlo", "ets", "seasonal_naive"} <= set(with_q["method"])
    assert (with_q["p10"] <= with_q["p50"] + 1e-9).all() and (with_q["p50"] <= with_q["p90"] + 1e-9).all()


def test_every_method_is_free_of_leakage(data, results):
    """A forecast at cutoff t is the same with the data after t removed."""
    for t in CUTS:
        truncated = backtest(known_at(data, t), cutoffs=[t], periods=[PERIOD], n_sims=500)
        assert truncated["actual"].isna().all()  # the period is not over in the truncated data
        full = results[results["cutoff"] == t]
        merged = full.merge(truncated, on=KEY, how="left", suffixes=("", "_t"), indicator=True)
        # group values listed only in the full table are those with bookings later and nothing known at t
        only_full = merged[merged["_merge"] == "left_only"]
        assert (only_full["forecast"].fillna(0) == 0).all()
        both = merged[merged["_merge"] == "both"]
        assert set(both["method"]) == set(METHODS) - {"oracle"}
        for col in ("forecast", "p10", "p50", "p90"):
            np.testing.assert_allclose(both[col], both[f"{col}_t"], rtol=1e-9, equal_nan=True, err_msg=col)


def test_same_seed_same_results_and_cutoffs_do_not_interact(data, results):
    again = backtest(data, methods=["monte_carlo"], cutoffs=CUTS[1:], periods=[PERIOD], n_sims=500)
    first = results[(results["method"] == "monte_carlo") & (results["cutoff"] == CUTS[1])]
    np.testing.assert_array_equal(first["p90"].to_numpy(), again["p90"].to_numpy())
    other = backtest(data, methods=["monte_carlo"], cutoffs=CUTS[1:], periods=[PERIOD], n_sims=500, seed=1)
    assert not np.array_equal(other["p90"].to_numpy(), again["p90"].to_numpy())


def test_results_do_not_depend_on_the_threads(data):
    kw = {"methods": ["monte_carlo"], "cutoffs": CUTS, "periods": [PERIOD], "n_sims": 300, "return_samples": True}
    one, one_samples = backtest(data, n_jobs=1, **kw)
    two, two_samples = backtest(data, n_jobs=3, **kw)
    pd.testing.assert_frame_equal(one, two)
    assert one_samples.keys() == two_samples.keys()
    for t in one_samples:
        np.testing.assert_array_equal(one_samples[t], two_samples[t])
    with pytest.raises(ValueError, match="n_jobs"):
        backtest(data, n_jobs=0, **kw)


def test_monte_carlo_centres_on_the_stage_conversion_forecast(data):
    res = backtest(data, methods=["stage_conversion", "monte_carlo"], cutoffs=CUTS, periods=[PERIOD], n_sims=4000)
    total = res[res["group"] == "total"].pivot_table(index="cutoff", columns="method", values="forecast")
    np.testing.assert_allclose(total["monte_carlo"], total["stage_conversion"], rtol=0.03)


def test_default_periods_are_closed_and_start_after_a_year_of_history(data):
    res = backtest(data, methods=["crm_weighted"], cutoffs="start", groups=["total"])
    assert res["period"].tolist() == [f"FY{y}Q{q}" for y in (2024, 2025) for q in (1, 2, 3, 4)]
    assert res["actual"].notna().all()
    assert data_end(data) == pd.Timestamp("2026-01-01")
    last = backtest(data, methods=["crm_weighted"], cutoffs="start", groups=["total"], periods=3)
    assert last["period"].tolist() == ["FY2025Q2", "FY2025Q3", "FY2025Q4"]


def test_a_period_without_history_leaves_the_learned_methods_missing(data):
    res = backtest(
        data,
        methods=["crm_weighted", "stage_conversion", "monte_carlo"],
        periods=["FY2023Q1"],
        cutoffs="start",
        groups=["total"],
        min_history_days=0,
    )
    got = res.set_index("method")["forecast"]
    assert np.isnan(got["stage_conversion"]) and np.isnan(got["monte_carlo"])
    assert got["crm_weighted"] >= 0


def test_weekly_cutoffs_cover_the_period(data):
    res = backtest(data, methods=["crm_weighted"], periods=["FY2024Q3"], groups=["total"])
    assert res["cutoff"].min() == pd.Timestamp("2024-07-01")
    assert res["cutoff"].diff().dropna().eq(pd.Timedelta(days=7)).all()
    assert res["cutoff"].max() < pd.Timestamp("2024-10-01") and len(res) == 14


def test_bias_corrected_commit_divides_by_the_earlier_bias(data, results):
    bias = submission_bias(data, as_of=pd.Timestamp("2025-04-01")).set_index("owner")["bias"]
    rows = results[(results["cutoff"] == CUTS[1]) & (results["group"] == "owner")]
    wide = rows.pivot_table(index="group_value", columns="method", values="forecast")
    ratio = (wide["submitted_commit"] / wide["bias_corrected_commit"]).dropna()
    np.testing.assert_allclose(ratio, bias.reindex(ratio.index), rtol=1e-9)


def test_forecast_period_gives_the_distribution_of_the_open_period(data):
    fc = forecast_period(data, as_of="2025-11-15", methods=["crm_weighted", "monte_carlo"], n_sims=300)
    assert fc.period == "FY2025Q4" and fc.as_of == pd.Timestamp("2025-11-15")
    assert len(fc.samples) == 300 and (fc.samples >= fc.won_to_date).all()
    assert fc.won_to_date == pytest.approx(
        _won_by(data, pd.Timestamp("2025-11-15"), pd.Timestamp("2025-10-01"), pd.Timestamp("2026-01-01"))
    )
    assert fc.point("monte_carlo") == pytest.approx(fc.samples.mean())
    with pytest.raises(ValueError, match="starts after as_of"):
        forecast_period(data, as_of="2025-11-15", period="FY2026Q1")


def test_leaderboard_scores_each_method_and_recommends_the_best(results):
    board = leaderboard(results, group="owner", metrics=("wape", "bias", "coverage"), by="method")
    rows = results[(results["group"] == "owner") & (results["method"] == "crm_weighted")]
    got = board.set_index("method").loc["crm_weighted"]
    assert got["wape"] == pytest.approx(wape(rows["actual"], rows["forecast"]))
    assert got["n"] == len(rows)
    assert np.isnan(got["coverage"]) and 0 <= board.set_index("method").loc["monte_carlo", "coverage"] <= 1
    assert board["wape"].is_monotonic_increasing
    best = recommend(board)
    assert best["best"].iloc[0] == board.loc[board["method"] != "oracle", "method"].iloc[0]
    weekly = leaderboard(results, by="weeks")
    assert set(weekly["weeks_before_end"]) == {11, 5}  # 77 and 35 days left
    defs = definitions(board["method"], ["wape", "bias"])
    assert defs["definition"].str.len().gt(20).all() and len(defs) == len(board) + 2


def test_errors_name_the_problem(data):
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        backtest(data, methods=["magic"])
    with pytest.raises(ValueError, match="truth"):
        backtest(data, methods=["oracle"])
    with pytest.raises(ValueError, match="cutoffs"):
        backtest(data, cutoffs="daily")
    with pytest.raises(ReportNeeds, match="no closed quarter to replay") as needs:  # a needs page in 04
        backtest(data, min_history_days=5000)
    assert "min_history_days" in needs.value.payload()["fixes"][0]
    with pytest.raises(ValueError, match="opportunities has no column 'region_x'"):
        backtest(data, groups=["region_x"], periods=[PERIOD])
    with pytest.raises(ValueError, match="no forecast of a closed period"):
        leaderboard(backtest(known_at(data, CUTS[0]), methods=["crm_weighted"], cutoffs=[CUTS[0]], periods=[PERIOD]))


# ---------------------------------------------------------------------------------------------- review findings
def _revalidate(data, **tables):
    from salesforecast.schema import validate

    raw = {k: v.copy() for k, v in data.tables.items()} | tables
    out = validate(raw, process=data.process)
    assert len(out.quarantine) == 0
    return out


def test_a_grouping_submissions_do_not_carry_leaves_the_calls_out(data):
    res = backtest(
        data,
        methods=["submitted_commit", "crm_weighted"],
        cutoffs=CUTS[:1],
        periods=[PERIOD],
        groups=["total", "segment"],
    )
    seg = res[(res["group"] == "segment")]
    assert seg.loc[seg["method"] == "submitted_commit", "forecast"].isna().all()
    assert seg.loc[seg["method"] == "crm_weighted", "forecast"].notna().all()
    assert res.loc[(res["group"] == "total") & (res["method"] == "submitted_commit"), "forecast"].notna().all()


def test_horizon_calibration_does_not_depend_on_the_minute_of_the_cutoff(data):
    kw = {"methods": ["stage_conversion"], "periods": [PERIOD], "groups": ["total"]}
    got = [backtest(data, cutoffs=[pd.Timestamp(f"2025-05-15 23:{m}")], **kw)["forecast"].iloc[0] for m in (54, 55, 56)]
    assert max(got) / min(got) < 1.005, got


def test_a_rep_without_a_usable_bias_gets_the_median_reps(data):
    subs = data.forecast_submissions.copy()
    rep = subs["owner"].iloc[0]
    subs.loc[(subs["owner"] == rep) & (subs["period"] < PERIOD), "amount"] = 0.0  # always called nothing before
    changed = _revalidate(data, forecast_submissions=subs)
    res = backtest(
        changed,
        methods=["submitted_commit", "bias_corrected_commit"],
        cutoffs=CUTS[1:],
        periods=[PERIOD],
        groups=["total", "owner"],
    )
    wide = res.pivot_table(index="group_value", columns="method", values="forecast")
    assert np.isfinite(wide.loc["total"]).all() and wide.loc["total", "bias_corrected_commit"] < 1e9
    bias = submission_bias(changed, as_of="2025-04-01").set_index("owner")["bias"]
    usable = bias[np.isfinite(bias) & (bias > 0)]
    assert wide.loc[rep, "bias_corrected_commit"] == pytest.approx(wide.loc[rep, "submitted_commit"] / usable.median())


def test_submissions_count_for_the_team_known_at_the_cutoff_and_per_team(data):
    opps = data.opportunities.copy()
    rep = opps["owner"].iloc[0]
    old_team = opps.loc[opps["owner"] == rep, "team"].iloc[0]
    new_team = next(t for t in opps["team"].unique() if t != old_team)
    opps.loc[(opps["owner"] == rep) & (opps["created_at"] >= "2025-06-01"), "team"] = new_team  # moves later
    subs = data.forecast_submissions.drop(columns="team")
    manager = pd.DataFrame(
        {
            "submitted_at": pd.to_datetime(["2025-05-01 10:00", "2025-05-01 11:00"]),
            "owner": ["Mgr Lee", "Mgr Lee"],
            "period": [PERIOD, PERIOD],
            "category": ["commit", "commit"],
            "amount": [100_000.0, 200_000.0],
            "team": [old_team, new_team],
        }
    )
    changed = _revalidate(data, opportunities=opps, forecast_submissions=pd.concat([subs, manager], ignore_index=True))
    kw = {"methods": ["submitted_commit"], "cutoffs": [CUTS[1]], "periods": [PERIOD], "groups": ["total", "team"]}
    full = backtest(changed, **kw).set_index("group_value")["forecast"]
    truncated = backtest(known_at(changed, CUTS[1]), **kw).set_index("group_value")["forecast"]
    pd.testing.assert_series_equal(full, truncated)  # the later move does not leak into the team roll-up
    base = backtest(_revalidate(data, opportunities=opps, forecast_submissions=subs), **kw).set_index("group_value")
    delta = full - base["forecast"]
    assert delta["total"] == 300_000 and delta[old_team] == 100_000 and delta[new_team] == 200_000


def test_a_call_without_a_team_counts_for_its_reps_latest_deals_team_whatever_the_rows_order(data):
    opps = data.opportunities.copy()
    rep = opps["owner"].iloc[0]
    known = opps.loc[(opps["owner"] == rep) & (opps["created_at"] <= CUTS[1])].sort_values("created_at")
    two = known.index[-2:]  # the rep's two latest deals by the cutoff, created at the same instant, in two teams
    opps.loc[two, "created_at"] = known["created_at"].iloc[-2]  # the later moved back: its history still after
    first, second = sorted(opps["team"].unique())[:2]
    ids = opps.loc[two, "opportunity_id"]
    opps.loc[ids.idxmax(), "team"], opps.loc[ids.idxmin(), "team"] = second, first  # the greatest id: `second`
    subs = data.forecast_submissions.drop(columns="team")
    kw = {"methods": ["submitted_commit"], "cutoffs": [CUTS[1]], "periods": [PERIOD], "groups": ["total", "team"]}
    got = []
    for rows in (opps, opps.iloc[::-1]):
        with_rep = backtest(_revalidate(data, opportunities=rows, forecast_submissions=subs), **kw)
        without = backtest(_revalidate(data, opportunities=rows, forecast_submissions=subs[subs["owner"] != rep]), **kw)
        got.append(with_rep.set_index("group_value")["forecast"] - without.set_index("group_value")["forecast"])
    pd.testing.assert_series_equal(got[0], got[1])
    assert got[0]["total"] > 0 and got[0][second] == got[0]["total"] and np.nan_to_num(got[0].get(first, 0.0)) == 0


def test_recommend_ranks_each_metric_in_its_own_direction():
    board = pd.DataFrame(
        {
            "method": ["a", "b", "c"],
            "wape": [0.3, 0.1, 0.2],
            "bias": [-0.05, 0.2, 0.1],
            "coverage": [0.5, 0.78, 0.95],
            "hit_rate": [0.2, 0.1, 0.4],
            "pinball": [5000.0, 300.0, 900.0],
        }
    )
    best = {m: recommend(board, metric=m)["best"].iloc[0] for m in ("wape", "bias", "coverage", "hit_rate", "pinball")}
    assert best == {"wape": "b", "bias": "a", "coverage": "b", "hit_rate": "c", "pinball": "b"}
    assert "pinball loss 300" in recommend(board, metric="pinball")["advice"].iloc[0]  # the metric's label


def test_forecast_period_reports_one_group_value_and_reads_any_spelling_of_current(data):
    fc = forecast_period(data, as_of="2025-05-15", methods=["monte_carlo"], groups=("team",), n_sims=200)
    first = fc.table.iloc[0]
    assert fc.won_to_date <= fc.samples.min()
    opps = data.opportunities
    won = opps[opps["is_won"] & (opps["team"] == first["group_value"]) & (opps["close_date"] >= "2025-04-01")]
    assert fc.won_to_date == pytest.approx(won.loc[won["close_date"] < "2025-05-15", "amount"].sum())
    labels = {
        p: forecast_period(data, as_of="2025-06-15", period=p, methods=["crm_weighted"]).period
        for p in ("current", "Current", "latest")
    }
    assert set(labels.values()) == {"FY2025Q2"}


def test_edge_inputs_give_clear_results(data):
    with pytest.raises(ValueError, match="at least one grouping"):
        backtest(data, groups=[])
    early = backtest(
        data,
        methods=["opportunity_score", "crm_weighted"],
        cutoffs=["2023-01-01"],
        periods=["FY2023Q1"],
        groups=["total"],
    )
    assert early.set_index("method")["forecast"].isna()["opportunity_score"]


def test_every_method_runs_on_imported_data(data, results, tmp_path):
    """A Salesforce-shaped export of the sample, imported back: every method forecasts, the deal-level ones
    exactly as on the canonical tables (the opportunity score sees feature columns typed by the round trip)."""
    from salesforecast.io import read_salesforce, write_salesforce

    imported = read_salesforce(write_salesforce(data, tmp_path / "export"))
    res = backtest(imported, cutoffs=CUTS[:1], periods=[PERIOD], n_sims=500)
    total = res[res["group"] == "total"].set_index("method")["forecast"]
    assert total.notna().all(), total[total.isna()]
    canonical = results[(results["group"] == "total") & (results["cutoff"] == CUTS[0])].set_index("method")["forecast"]
    same = ["submitted_commit", "crm_weighted", "stage_conversion", "monte_carlo", "ets", "seasonal_naive"]
    np.testing.assert_allclose(total[same], canonical[same], rtol=1e-9)


def test_seasonal_naive_is_missing_without_a_year_of_history_and_else_last_years_quarter(data):
    """< 4 past quarters: no 'same quarter a year earlier', so NaN (not the previous quarter); >= 4: that quarter."""
    first = pd.Timestamp(data.opportunities["created_at"].min()).to_period("Q").start_time
    cal = data.process.calendar
    periods = [cal.period([first + pd.DateOffset(months=3 * k)], "quarter").iloc[0] for k in (1, 3, 4, 6)]
    res = backtest(
        data, methods=["seasonal_naive"], periods=periods, cutoffs="start", groups=["total"], min_history_days=0
    )
    got = res.set_index("period")["forecast"]
    for k, label in zip((1, 3, 4, 6), periods, strict=True):
        start, _ = cal.period_bounds(label)
        if k < 4:  # k past quarters: less than a season
            assert np.isnan(got[label]), label
        else:
            a_year_ago = cal.period([start - pd.DateOffset(years=1)], "quarter").iloc[0]
            lo, hi = cal.period_bounds(a_year_ago)
            assert got[label] == pytest.approx(_won_by(data, start, lo, hi), rel=1e-12), label
            assert got[label] > 0


def test_ets_interval_is_not_degenerate_on_the_sample(data):
    """The backtest's ETS P10-P90 has width and covers most actuals (half of them with the ML variance)."""
    res = backtest(data, methods=["ets"], groups=["total"])
    assert res["p10"].notna().all() and (res["p90"] > res["p10"]).all()
    covered = (res["p10"] <= res["actual"]) & (res["actual"] <= res["p90"])
    assert covered.mean() >= 0.75


# ------------------------------------------------------------------------------------------ short and partial data
def test_a_quarter_ending_on_the_datas_last_day_is_closed(data):
    """Exports write close dates without a time: data whose last event is 2025-03-31 00:00 end with that day, so
    FY2025Q1 is closed and replayed (it counted as unfinished when the data end was that midnight)."""
    derived = history_from_dates(data)  # closes at midnight of their close date
    cut = known_at(derived, "2025-03-31")
    assert cut.as_of == pd.Timestamp("2025-03-31")
    assert data_end(cut) == pd.Timestamp("2025-04-01")
    res = backtest(cut, methods=["run_rate"], cutoffs="start", groups=["total"], periods=1)
    assert res["period"].tolist() == ["FY2025Q1"] and res["actual"].notna().all()


def test_the_default_history_adapts_to_fifteen_months_of_data():
    full, _ = generate(n_opportunities=1200, seed=3, years=2)
    short = known_at(full, "2024-04-01")  # the first deal on 2023-01-02, the last day 2024-03-31
    res = backtest(short, methods=["run_rate"], cutoffs="start", groups=["total"])
    # about two quarters of history, the three later quarters replayed
    assert res["period"].tolist() == ["FY2023Q3", "FY2023Q4", "FY2024Q1"]
    # a year of history leaves none (the first deal came a day after FY2024Q1's start minus a year)
    with pytest.raises(ValueError, match=r"starts at least 365 days after the first deal \(min_history_days"):
        backtest(short, methods=["run_rate"], min_history_days=365)
    res = backtest(short, methods=["run_rate"], cutoffs="start", groups=["total"], min_history_days=300)
    assert res["period"].tolist() == ["FY2024Q1"]
    # long data keep a year of history (the sample: test_default_periods_are_closed_and_start_after_a_year_...)


def test_data_without_teams_are_forecast_without_the_team_group(data):
    teamless = dataclasses.replace(
        data,
        opportunities=data.opportunities.drop(columns="team"),
        forecast_submissions=data.forecast_submissions.drop(columns="team"),
    )
    res = backtest(teamless, methods=["crm_weighted", "submitted_commit"], cutoffs=CUTS, periods=[PERIOD])
    assert set(res["group"]) == {"total", "owner"}
    fc = forecast_period(teamless, as_of="2025-05-15", methods=["crm_weighted", "monte_carlo"], n_sims=200)
    assert np.isfinite(fc.point("monte_carlo"))
    with pytest.raises(ValueError, match="no column 'team'"):
        backtest(teamless, groups=["team"], periods=[PERIOD])


def test_open_deals_without_a_close_date_are_forecast_by_time_to_close(data):
    """Open deals without an expected close date (a real export's): the learned methods forecast them, the
    CRM-weighted method leaves them out and says how much (validation accepts them: built here by replacing the
    columns, as the loader will give them)."""
    opps, hist = data.opportunities, data.stage_history
    open_now = opps.loc[~opps["is_closed"], "opportunity_id"]
    undated = dataclasses.replace(
        data,
        opportunities=opps.assign(close_date=opps["close_date"].where(opps["is_closed"])),
        stage_history=hist.assign(close_date=hist["close_date"].where(~hist["opportunity_id"].isin(open_now))),
    )
    methods = ["crm_weighted", "stage_conversion", "opportunity_score", "monte_carlo"]
    with pytest.warns(ForecastWarning, match=r"CRM-weighted forecast left out 100% of the open pipeline amount at"):
        fc = forecast_period(undated, methods=methods, period="FY2026Q1", n_sims=200)
    won = fc.won_to_date
    assert fc.point("crm_weighted") == won  # nothing dated in the period: only what is won
    for m in ("stage_conversion", "opportunity_score", "monte_carlo"):
        assert fc.point(m) > won, m  # the open deals count by their time to close
    # the same forecast with the close dates: the learned stage-conversion method does not read them at all
    dated = forecast_period(data, methods=["stage_conversion"], period="FY2026Q1", n_sims=200)
    assert fc.point("stage_conversion") == pytest.approx(dated.point("stage_conversion"))
    # and the models and features take them
    feats = opportunity_features(undated, [undated.as_of])
    assert len(feats) == len(open_now) and feats["days_to_close"].isna().all()
    assert StageConversionModel(n_bootstrap=0).fit(undated).transition_matrix_.shape[0] > 0


# ------------------------------------------------------------------------------------------ what the report says
def test_recommend_says_and_warns_when_the_leaderboard_rests_on_fewer_than_four_periods(data):
    """A recommendation from one or two replayed quarters read as settled ("trust opportunity_score (wape 2.7%)")."""
    kw = {"methods": ["crm_weighted", "run_rate"], "groups": ["total"], "cutoffs": "start"}
    few = leaderboard(backtest(data, periods=2, **kw), by="band")
    assert few.attrs["periods"] == ["FY2025Q3", "FY2025Q4"]
    with pytest.warns(ForecastWarning, match=r"rest on 2 replayed periods \(FY2025Q3, FY2025Q4\): with fewer than 4"):
        advice = recommend(few)["advice"]
    assert advice.str.endswith("(from 2 replayed periods only: the lead may be chance)").all()
    enough = leaderboard(backtest(data, periods=4, **kw), by="band")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ForecastWarning)
        assert not recommend(enough)["advice"].str.contains("may be chance").any()


def test_forecast_period_after_its_last_day_forecasts_the_next_period_and_says_so(data):
    """On a quarter's last day the backtest counts the quarter closed, yet "This period" forecast it again."""
    for as_of in ("2025-06-30", "2025-06-30 15:00", "2025-07-01"):
        fc = forecast_period(data, as_of=as_of, methods=["crm_weighted", "monte_carlo"], n_sims=100)
        assert fc.period == "FY2025Q3" and fc.as_of == pd.Timestamp("2025-07-01")
        opps = data.opportunities
        won = opps["is_won"] & (opps["close_date"] >= "2025-04-01") & (opps["close_date"] < "2025-07-01")
        assert fc.note == (
            f"FY2025Q2 ended on 2025-06-30, by the report date: its bookings are known "
            f"({opps.loc[won, 'amount'].sum():,.0f} closed won), so the forecast is of the next quarter, FY2025Q3, "
            "from its first day (2025-07-01)."
        )
        assert fc.won_to_date == 0.0
    inside = forecast_period(data, as_of="2025-06-29", methods=["crm_weighted"])
    assert inside.period == "FY2025Q2" and inside.note == ""


def _short_without_calls() -> object:
    """15 generated months, current state only with the history derived from dates, and no forecast calls."""
    raw, _ = generate(n_opportunities=1200, seed=3, years=2)
    short = history_from_dates(known_at(raw, "2024-04-01"))
    return dataclasses.replace(short, forecast_submissions=short.forecast_submissions.iloc[:0])


def test_warnings_of_the_replayed_periods_and_of_the_period_forecast_now_say_which_they_are_about():
    """The report's box showed the CRM-weighted and interval warnings twice, with different figures and no subject."""
    short = _short_without_calls()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backtest(short, methods=["crm_weighted", "monte_carlo"], groups=["total"], n_sims=100)
        forecast_period(
            short, as_of="2024-03-10", methods=["crm_weighted", "monte_carlo"], n_sims=100, min_history_days=180
        )
    msgs = [str(w.message) for w in caught]
    texts = [m for m in msgs if "CRM-weighted forecast left out" in m]
    texts += [m for m in msgs if "80% interval" in m and "earlier periods" in m]
    assert len(texts) == 4 and len(set(texts)) == 4, texts
    replayed = [t for t in texts if t.startswith("In the replayed periods, the ")]
    now = [t for t in texts if t.startswith("For FY2024Q1, the period forecast now, the ")]
    assert len(replayed) == 2 and len(now) == 2, texts


def test_the_report_says_which_methods_gave_no_forecast_and_why():
    short = _short_without_calls()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = backtest(short, groups=["total"], n_sims=100, cutoffs="start")
    text = missing_methods(res)
    assert text.startswith(
        "No forecast from submitted commit, submitted best case, bias-corrected commit: they need the reps' "
        "forecast calls made by the cutoff, and the data hold none for these periods. No forecast from "
        "seasonal naive: bookings of the same period one year earlier"
    )
    assert "less than a year of past periods" in text and "run rate" not in text
    assert submissions_note(short).startswith("The data have no forecast submissions")
    assert submissions_note(load_sample()) == ""
    assert missing_methods(backtest(load_sample(), methods=["run_rate"], periods=1, cutoffs="start")) == ""
