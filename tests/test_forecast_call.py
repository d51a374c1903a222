"""The forecast call of 04 (issue 14, items 1 and 2): `salesforecast.call.period_call` answers "will we make the
quarter, and how sure are we" in a sentence and figures, and gives the call per team and rep with the total: the
total adds up, the week-earlier figures are the forecast as it stood a week before, a rep whose commit lies outside
our P10-P90 is marked, and data without quotas, calls or teams leave the columns out and say so. One render of 04
checks the page: the headline first after the header, with the figures the data give."""

from __future__ import annotations

import dataclasses
import html
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from salesforecast import forecast as fc
from salesforecast.call import ABOVE, ADDITIVE, BELOW, PeriodCall, call_groups, period_call, trusted_at
from salesforecast.datasets import generate
from salesforecast.labels import format_amount
from salesforecast.movement import pipeline_coverage
from salesforecast.snapshots import known_at
from tests.factories import render_report

AS_OF = pd.Timestamp("2024-11-14")  # mid FY2024Q4 (the generated calendar is the calendar year)
N_SIMS = 200


@pytest.fixture(scope="module")
def crm():
    data, _ = generate(n_opportunities=800, seed=5, years=2)
    return data


@pytest.fixture(scope="module")
def view(crm):
    return known_at(crm, AS_OF)


@pytest.fixture(scope="module")
def call(view):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return period_call(view, as_of=AS_OF, n_sims=N_SIMS, seed=0)


def _quiet_call(data, **kwargs) -> PeriodCall:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return period_call(data, n_sims=N_SIMS, seed=0, **kwargs)


def _latest_calls(subs: pd.DataFrame, period: str, t: pd.Timestamp, category: str = "commit") -> pd.Series:
    s = subs.loc[(subs["period"] == period) & (subs["category"] == category) & (subs["submitted_at"] <= t)]
    return s.sort_values("submitted_at", kind="stable").groupby("owner")["amount"].last()


def _level(call: PeriodCall, level: str, key: str) -> pd.DataFrame:
    rows = call.table.loc[call.table["level"] == level]
    return rows.set_index(key)


def test_the_total_is_the_sum_of_the_teams_and_of_the_reps(call, view):
    assert call.period == "FY2024Q4" and call.weeks_left == 6 and call_groups(view) == ("total", "team", "owner")
    total = _level(call, "total", "rep").iloc[0]
    teams, reps = _level(call, "team", "team"), _level(call, "owner", "rep")
    assert len(teams) == view.opportunities["team"].nunique() and len(reps) == view.opportunities["owner"].nunique()
    for column in ADDITIVE:
        assert total[column] == pytest.approx(teams[column].sum(), abs=0.01), column
        assert total[column] == pytest.approx(reps[column].sum(), abs=0.01), column
    # the quota is the quotas' table; the commit and best case the reps' latest calls by the forecast date
    assert total["quota"] == view.quotas.loc[view.quotas["period"] == "FY2024Q4", "amount"].sum() > 0
    subs = view.forecast_submissions
    commit = _latest_calls(subs, "FY2024Q4", AS_OF)
    assert total["commit"] == pytest.approx(commit.sum())
    assert reps["commit"].dropna().to_dict() == pytest.approx(commit.to_dict())
    best = _latest_calls(subs, "FY2024Q4", AS_OF, "best_case")
    assert total["best_case"] == pytest.approx(best.sum())
    # closed won and open pipeline are the pipeline review's (05) figures
    cov = pipeline_coverage(view, "FY2024Q4", as_of=AS_OF, by="owner")
    assert reps["closed_won"].to_dict() == pytest.approx(cov["closed_won"].reindex(reps.index).fillna(0).to_dict())
    assert reps["open_pipeline"].to_dict() == pytest.approx(
        cov["open_pipeline"].reindex(reps.index).fillna(0).to_dict()
    )
    # our forecast is the Monte Carlo's: the total's P50 is the median of its simulated futures
    assert total["forecast_p50"] == pytest.approx(np.quantile(call.forecast.samples, 0.5))
    assert (reps["forecast_p10"] <= reps["forecast_p50"]).all() and (reps["forecast_p50"] <= reps["forecast_p90"]).all()
    np.testing.assert_allclose(reps["projected_attainment"], reps["forecast_p50"] / reps["quota"])
    # every rep has their team, and their historical call ratio
    owner_team = view.opportunities.sort_values("created_at", kind="stable").groupby("owner")["team"].last()
    assert reps["team"].to_dict() == owner_team.reindex(reps.index).to_dict()
    ratio = fc.submission_bias(view, as_of=AS_OF).set_index("owner")["bias"]
    assert reps["call_ratio"].to_dict() == pytest.approx(ratio.reindex(reps.index).to_dict())


def test_the_week_earlier_figures_are_the_forecast_a_week_before(call, view):
    week = AS_OF - pd.Timedelta(days=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        then = fc.forecast_period(view, as_of=week, period=call.period, groups=call_groups(view), n_sims=N_SIMS, seed=0)
    assert call.week_ago is not None and call.week_ago.as_of == week
    rows = then.table
    reps = _level(call, "owner", "rep")
    p50 = rows.loc[(rows["group"] == "owner") & (rows["method"] == "monte_carlo")].set_index("group_value")["p50"]
    expected = reps["forecast_p50"] - p50.reindex(reps.index).fillna(0.0)
    assert reps["forecast_change"].to_dict() == pytest.approx(expected.to_dict())
    total = _level(call, "total", "rep").iloc[0]
    mc_total = rows.loc[(rows["group"] == "total") & (rows["method"] == "monte_carlo"), "p50"].iloc[0]
    assert total["forecast_change"] == pytest.approx(total["forecast_p50"] - mc_total)
    # the calls as known a week earlier (pandas on the submissions)
    subs = view.forecast_submissions
    before = _latest_calls(subs, call.period, week).reindex(reps.index).fillna(0.0)
    now = reps["commit"].fillna(0.0)
    assert reps["commit_change"].fillna(0.0).to_dict() == pytest.approx((now - before).to_dict())
    assert total["commit_change"] == pytest.approx(now.sum() - before.sum())
    # the open pipeline as it stood then
    cov = pipeline_coverage(view, call.period, as_of=week, by="owner")["open_pipeline"]
    expected = reps["open_pipeline"] - cov.reindex(reps.index).fillna(0.0)
    assert reps["pipeline_change"].to_dict() == pytest.approx(expected.to_dict())
    assert total["pipeline_change"] != 0  # a week of a live quarter moves the pipeline


def test_a_rep_whose_commit_lies_outside_our_range_is_marked_in_words(view):
    reps = view.opportunities.groupby("owner")["amount"].sum().sort_values()
    high, low = reps.index[0], reps.index[-1]  # the smallest book calls 50M, the largest 0
    subs = view.forecast_submissions
    extra = subs.loc[subs["period"] == "FY2024Q4"].tail(2).copy()
    extra["owner"], extra["amount"], extra["category"] = [high, low], [5e7, 0.0], "commit"
    extra["submitted_at"] = AS_OF - pd.Timedelta(hours=1)
    extra["team"] = view.opportunities.set_index("owner")["team"].groupby(level=0).last().reindex([high, low]).values
    data = dataclasses.replace(view, forecast_submissions=pd.concat([subs, extra], ignore_index=True))
    call = _quiet_call(data, as_of=AS_OF)
    rows = _level(call, "owner", "rep")
    assert rows.loc[high, "commit_vs_range"] == ABOVE and rows.loc[high, "commit"] == 5e7
    if rows.loc[low, "forecast_p10"] > 0:
        assert rows.loc[low, "commit_vs_range"] == BELOW
    marked = call.marked()
    assert marked["rep"].iloc[0] == high  # farthest from our P50 first
    assert set(marked["commit_vs_range"]) <= {ABOVE, BELOW}
    inside = rows.loc[rows["commit_vs_range"] == "within"]
    assert ((inside["commit"] >= inside["forecast_p10"]) & (inside["commit"] <= inside["forecast_p90"])).all()
    sentence = call.marked_sentence()
    assert f"above our P90 (calling more than we see): {high}" in sentence
    assert sentence.startswith(f"{len(marked)} of the {rows['commit'].notna().sum()} reps who called")
    # the headline's commit is the total, set against our range
    assert call.commit > call.p90 and "is above our P90" in call.sentence()


def test_without_quotas_the_call_says_so_and_sets_the_forecast_against_the_commit(view):
    call = _quiet_call(dataclasses.replace(view, quotas=view.quotas.iloc[:0]), as_of=AS_OF)
    teams = call.teams()
    assert "quota" not in teams.columns and "projected_attainment" not in teams.columns
    assert "commit" in teams.columns and len(teams) == 5
    assert any(n.startswith("The data hold no quota for FY2024Q4") for n in call.notes())
    sentence = call.sentence()
    assert "the data hold no quota for FY2024Q4" in sentence
    assert f"against the reps' commit of {format_amount(call.commit, None, short=True)}" in sentence
    assert call.chance_commit == pytest.approx(np.mean(call.forecast.samples >= call.commit))
    labels = [f.label for f in call.figures()]
    assert "Chance of the commit" in labels and "Chance of quota" not in labels
    assert next(f for f in call.figures() if f.label.startswith("Quota")).value == "none"


def test_without_calls_there_is_no_commit_column_and_a_sentence_says_why(view):
    call = _quiet_call(dataclasses.replace(view, forecast_submissions=view.forecast_submissions.iloc[:0]), as_of=AS_OF)
    for table in (call.teams(), call.reps()):
        assert not {"commit", "best_case", "commit_vs_range", "commit_change", "call_ratio"} & set(table.columns)
        assert {"quota", "forecast_p50", "forecast_change", "pipeline_change"} <= set(table.columns)
    assert any("no forecast call (commit or best case) for FY2024Q4" in n for n in call.notes())
    assert call.marked_sentence() == "" and call.marked().empty
    assert "commit" not in call.sentence()
    assert next(f for f in call.figures() if f.label == "Reps' commit").value == "none"


def test_without_teams_the_call_is_per_rep(view):
    data = dataclasses.replace(
        view,
        opportunities=view.opportunities.drop(columns="team"),
        forecast_submissions=view.forecast_submissions.drop(columns="team"),
    )
    call = _quiet_call(data, as_of=AS_OF)
    assert call_groups(data) == ("total", "owner") and set(call.table["level"]) == {"total", "owner"}
    assert call.teams()["team"].tolist() == ["total"]
    reps = call.reps()
    assert "team" not in reps.columns and len(reps) == 1 + data.opportunities["owner"].nunique()
    assert "The deals carry no team: the call is per rep." in call.notes()
    total = _level(call, "total", "rep").iloc[0]
    for column in ADDITIVE:
        assert total[column] == pytest.approx(_level(call, "owner", "rep")[column].sum(), abs=0.01)


def test_a_finished_period_reads_its_outcome_then_the_next_one_from_its_first_day(crm):
    end = pd.Timestamp("2024-09-30")  # FY2024Q3's last day
    view = known_at(crm, end + pd.Timedelta(days=1))
    call = _quiet_call(view, as_of=end)
    assert (call.ended, call.period, call.as_of) == ("FY2024Q3", "FY2024Q4", pd.Timestamp("2024-10-01"))
    opps = view.opportunities
    won = opps["is_won"] & opps["close_date"].between("2024-07-01", "2024-09-30 23:59")
    assert call.ended_actual == pytest.approx(opps.loc[won, "amount"].sum())
    quota = view.quotas.loc[view.quotas["period"] == "FY2024Q3", "amount"].sum()
    assert call.ended_quota == pytest.approx(quota)
    sentence = call.sentence()
    verdict = "made" if call.ended_actual >= quota else "missed"
    assert sentence.startswith(f"**FY2024Q3 {verdict} its quota**: {format_amount(call.ended_actual, None, True)}")
    assert "FY2024Q4 quota" in sentence and "closed won to date" not in sentence
    assert call.week_ago is None and not [c for c in call.teams().columns if c.endswith("_change")]
    assert any(n.startswith("FY2024Q4 is forecast from its first day (2024-10-01)") for n in call.notes())
    assert call.figures()[0].label == "FY2024Q3 closed won"


def _bands(periods: int, tie: bool = False) -> pd.DataFrame:
    """A leaderboard by band: Monte Carlo best at every horizon (10%, interval 8-12%), run rate next."""
    rows = []
    for band in fc.HORIZONS:
        rows.append(
            {"horizon": band, "method": "monte_carlo", "n": 10, "wape": 0.10, "wape_low": 0.08, "wape_high": 0.12}
        )
        second = 0.11 if tie else 0.30
        rows.append(
            {"horizon": band, "method": "run_rate", "n": 10, "wape": second, "wape_low": 0.09, "wape_high": 0.4}
        )
    board = pd.DataFrame(rows)
    board["horizon"] = pd.Categorical(board["horizon"], categories=list(fc.HORIZONS), ordered=True)
    board.attrs.update({"metrics": ["wape"], "ci": 0.9, "periods": [f"FY2023Q{i}" for i in range(1, periods + 1)]})
    return board


def test_the_headline_names_the_figures_and_the_method_trusted_at_this_horizon(view, call):
    full = dataclasses.replace(call, **_headline_fields(view, _bands(4)))
    amt = lambda x: format_amount(x, None, short=True)  # noqa: E731
    sentence = full.sentence()
    for figure in (full.quota, full.won_to_date, full.p50, full.p10, full.p90, full.commit):
        assert amt(figure) in sentence, (amt(figure), sentence)
    assert f"{full.chance_quota:.0%} chance of reaching it" in sentence
    assert full.chance_quota == pytest.approx(np.mean(call.forecast.samples >= full.quota))
    assert "With 6 weeks left, the most accurate method on 4 past quarters has been Monte Carlo" in sentence
    assert "off by 10% on average, WAPE, 90% interval 8%-12%" in sentence
    labels = [f.label for f in full.figures()]
    assert labels == [
        "Quota FY2024Q4",
        "Closed won",
        "Reps' commit",
        "Our forecast P50",
        "Chance of quota",
        "Most accurate at 6 weeks left",
    ]
    assert full.figures()[-1].value == "Monte Carlo" and full.figures()[-1].detail.startswith("WAPE 10% (8%-12%)")


def _headline_fields(view, bands) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.ForecastWarning)
        trusted = trusted_at(bands, 6)
    return {k: v for k, v in trusted.items() if k in {f.name for f in dataclasses.fields(PeriodCall)}}


def test_the_headline_claims_no_more_than_the_read_this_first_box(view, call):
    few = dataclasses.replace(call, **_headline_fields(view, _bands(2)))
    assert "on only 2 past quarters, a first impression" in few.sentence()
    tie = dataclasses.replace(call, **_headline_fields(view, _bands(4, tie=True)))
    assert "Monte Carlo and run rate have been equally accurate on 4 past quarters" in tie.sentence()
    assert tie.figures()[-1].value == "a tie"
    # a caution on the intervals: a rough chance, never "very likely", and the reason in words
    sure = dataclasses.replace(call, chance_quota=0.95, won_to_date=0.0)
    assert sure.sentence().startswith("**We will very likely make")
    rough = dataclasses.replace(sure, interval_caution="it is calibrated on 2 earlier periods only")
    text = rough.sentence()
    assert text.startswith("**We will probably make") and "a rough 95% chance" in text
    assert text.endswith("Read the P10-P90 as a rough range: it is calibrated on 2 earlier periods only.")
    # nothing left open to simulate: no range of one value
    flat = dataclasses.replace(call, p10=call.won_to_date, p50=call.won_to_date, p90=call.won_to_date)
    assert "(every simulated future the same)" in flat.sentence() and "P10-P90" not in flat.sentence().split(".")[0]


def test_the_rendered_report_opens_with_the_headline_and_holds_the_call(crm, tmp_path):
    folder = known_at(crm, AS_OF + pd.Timedelta(hours=18)).to_folder(tmp_path / "crm")
    # (the mid-quarter set of reports.yml, history 4, runs on the sample only: -p history would make the two equal)
    page = render_report(tmp_path, "04_forecast_accuracy", folder, n_sims=N_SIMS, as_of=f"{AS_OF:%Y-%m-%d}")
    soup = BeautifulSoup(page, "html.parser")
    header = soup.select_one(".salesforecast-header")
    headline = soup.select_one("section#headline")
    assert header is not None and headline is not None
    # the first thing a reader sees after the header is the headline
    shown = ["section", "h2", "table", "img", "pre", "p"]
    after = [el for el in header.find_all_next(shown) if header not in el.parents]
    assert after[0] is headline, after[0]
    text = headline.get_text(" ", strip=True)
    figures = {
        f.select_one("div").get_text(strip=True): f.select_one(".headline-value").get_text(strip=True)
        for f in headline.select(".headline-figure")
    }
    quota = crm.quotas.loc[crm.quotas["period"] == "FY2024Q4", "amount"].sum()
    subs = crm.forecast_submissions
    commit = _latest_calls(subs, "FY2024Q4", AS_OF).sum()
    amt = lambda x: format_amount(x, None, short=True)  # noqa: E731
    assert figures["Quota FY2024Q4"] == amt(quota) and figures["Reps' commit"] == amt(commit)
    assert {"Closed won", "Our forecast P50", "Chance of quota"} <= set(figures)
    assert re.search(r"Most accurate at 6 weeks left", text)
    assert "P10-P90" in text and "chance of reaching it" in text and "WAPE" in text
    assert re.search(r"on (only )?\d past quarters", text)
    # the forecast call: the team roll-up in the open, every rep under <details>
    body = html.unescape(page)
    call_at = body.index("The forecast call: this period by team and rep")
    assert call_at < body.index("Which method to trust, and when")
    section = soup.find(id=re.compile("The-forecast-call"))
    assert section is not None
    folded = [d for d in soup.find_all("details") if "The call of every rep" in d.get_text()]
    assert len(folded) == 1 and len(folded[0].find_all("tr")) == 2 + crm.opportunities["owner"].nunique()
    assert "commit vs our range" in body[call_at:] and "our P50, change in a week" in body[call_at:]


def test_a_weeks_change_is_signed_and_names_the_currency():
    from salesforecast.labels import format_value, label
    from salesforecast.reports import format_table

    assert format_value(12000.0, "signed_amount") == "+12,000" and format_value(-3500.4, "signed_amount") == "-3,500"
    assert format_value(0.3, "signed_amount") == "0" and format_value(float("nan"), "signed_amount") == "–"
    assert label("commit_change", "EUR") == "commit, change in a week (EUR)"
    page = format_table(pd.DataFrame({"rep": ["<b>ann</b>"], "forecast_change": [-2220.0]}), currency="EUR").to_html()
    assert "our P50, change in a week (EUR)" in page and "-2,220" in page and "&lt;b&gt;ann&lt;/b&gt;" in page


def test_the_rep_chart_reads_as_the_call_ratio_not_a_bias():
    import matplotlib.pyplot as plt

    from salesforecast import plotting
    from salesforecast.labels import label

    ax = plotting.plot_rep_bias(pd.DataFrame({"owner": ["ann", "bo"], "ratio": [0.9, 1.4]}))
    assert ax.get_xlabel() == f"{label('call_ratio')}, 100% = on target" and "bias" not in ax.get_title().lower()
    plt.close(ax.figure)
