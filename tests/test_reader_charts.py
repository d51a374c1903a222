"""Charts that read (issue 14, item 5): few series, one colour and label per method, outcome colours, readable
labels, one money format per axis, a finished period's outcome, and a leaderboard whose WAPEs carry intervals and
whose advice calls a tie a tie."""

from __future__ import annotations

import itertools
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D

from salesforecast import plotting
from salesforecast.forecast import (
    METHODS,
    NOT_TRUSTED,
    ForecastWarning,
    bootstrap_wape,
    featured_methods,
    forecasts_at,
    leaderboard,
    recommend,
)

END = pd.Timestamp("2024-09-30")
DEFAULT = [name for name, m in METHODS.items() if m.default]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _results(errors: dict[str, float], periods: int = 8, weeks=(12, 6, 0), seed: int = 0) -> pd.DataFrame:
    """Backtest-shaped rows: each method's forecast = actual x (1 + its error x noise), per period and cutoff."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(periods):
        actual = 1_000_000.0 + 50_000 * p
        end = END + pd.DateOffset(months=3 * p)
        noise = rng.normal(0, 1, size=(len(errors), len(weeks)))
        for k, (method, err) in enumerate(errors.items()):
            for j, w in enumerate(weeks):
                rows.append(
                    {
                        "period": f"P{p}",
                        "cutoff": end - pd.Timedelta(weeks=w),
                        "days_before_period_end": 7.0 * w,
                        "group": "total",
                        "group_value": "total",
                        "method": method,
                        "forecast": actual * (1 + err * abs(noise[k, j])),
                        "p10": np.nan,
                        "p90": np.nan,
                        "actual": actual,
                    }
                )
    return pd.DataFrame(rows)


def _method_lines(ax) -> list[Line2D]:
    return [line for line in ax.lines if line.get_gid() in METHODS]


def _lab(colour: str) -> np.ndarray:
    rgb = np.array(mcolors.to_rgb(colour))
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ rgb / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


# ------------------------------------------------------------------------------------------ method series
def test_method_colours_are_far_apart():
    """Two methods' colours differ by at least 20 CIELAB units (the dark blue and dark green were near-identical)."""
    closest = min(
        (np.linalg.norm(_lab(a.colour) - _lab(b.colour)), a.name, b.name)
        for a, b in itertools.combinations(METHODS.values(), 2)
    )
    assert closest[0] >= 20, closest
    # thin dark lines look alike whatever their hue: few dark colours (L* under 50), far apart (main had five, two
    # of them 31 units apart: ETS brown and the oracle's dark grey; Monte Carlo's dark blue beside them)
    dark = [m for m in METHODS.values() if _lab(m.colour)[0] < 50]
    assert len(dark) <= 3, [m.name for m in dark]
    assert all(np.linalg.norm(_lab(a.colour) - _lab(b.colour)) >= 45 for a, b in itertools.combinations(dark, 2))


def test_trend_and_leaderboard_draw_at_most_five_series_by_default_in_registry_colours_and_labels():
    results = _results({m: 0.05 + 0.02 * k for k, m in enumerate(DEFAULT)}, periods=6)
    board = leaderboard(results, by="weeks")
    ax = plotting.plot_leaderboard(board)
    lines = _method_lines(ax)
    assert 1 <= len(lines) <= plotting.SERIES_MAX - 1
    assert len([h for h in ax.get_legend().legend_handles]) <= plotting.SERIES_MAX
    for line in lines:
        assert mcolors.same_color(line.get_color(), METHODS[line.get_gid()].colour)
        assert line.get_label() == METHODS[line.get_gid()].label  # never the snake_case name
    one = results[results["period"] == "P5"]
    ax = plotting.plot_forecast_trend(one, board=leaderboard(results, by="band"))
    labelled = [line for line in ax.lines if not line.get_label().startswith("_")]
    assert len(labelled) <= plotting.SERIES_MAX and "actual" in [line.get_label() for line in labelled]
    assert {line.get_gid() for line in _method_lines(ax)} == set(featured_methods(leaderboard(results, by="band")))
    ax = plotting.plot_forecast_trend(one)  # no board: still at most four methods and the actual
    assert len(_method_lines(ax)) == plotting.SERIES_MAX - 1
    # the others on demand
    ax = plotting.plot_forecast_trend(one, methods="all")
    assert {line.get_gid() for line in _method_lines(ax)} == set(DEFAULT)
    ax = plotting.plot_leaderboard(board, methods=["ets"])
    assert [line.get_gid() for line in _method_lines(ax)] == ["ets"]


def test_featured_methods_are_the_trusted_best_never_the_oracle_or_a_leaky_one():
    results = _results({"run_rate": 0.01, "oracle": 0.001, "monte_carlo": 0.05, "ets": 0.3, "crm_weighted": 0.4})
    results["leakage"] = np.where(results["method"] == "run_rate", "closed_at", "")
    board = leaderboard(results, by="band")
    assert board.loc[board["method"] == "run_rate", "trust"].eq(NOT_TRUSTED).all()
    picked = featured_methods(board, n=2)
    assert picked[0] == "monte_carlo" and len(picked) == 2
    # the same runner-up at every horizon is featured once, and the submitted commit follows the runners-up
    many = leaderboard(_results({"monte_carlo": 0.05, "ets": 0.1, "submitted_commit": 0.3, "crm_weighted": 0.2}))
    assert featured_methods(many) == ["monte_carlo", "ets", "submitted_commit", "crm_weighted"]
    assert "run_rate" not in featured_methods(board) and "oracle" not in featured_methods(board)
    ax = plotting.plot_forecast_trend(results[results["period"] == "P0"])  # leakage column read without a board
    assert "run_rate" not in {line.get_gid() for line in _method_lines(ax)}


def test_learned_and_crm_default_keep_their_colours_across_the_charts():
    summary = pd.DataFrame(
        {"stage": ["A", "B"], "win_probability": [0.2, 0.5], "lower": [0.1, 0.4], "upper": [0.3, 0.6]}
    ).assign(crm_probability=[0.1, 0.3])
    table = pd.DataFrame(
        {"mean_predicted": [0.2, 0.6], "observed_rate": [0.25, 0.55], "ci_lower": [0.1, 0.4], "ci_upper": [0.3, 0.7]}
    ).assign(count=[10, 10])
    win = plotting.plot_win_probability(summary)
    # the calibration tables come sorted by name: "crm_default" first, which used to take the first colour
    rel = plotting.plot_reliability({"crm_default": table, "learned": table})

    def colour_of(ax, label):
        handles, labels = ax.get_legend_handles_labels()
        h = handles[labels.index(label)]
        h = h[0] if isinstance(h, tuple) or hasattr(h, "lines") else h
        line = h.lines[0] if hasattr(h, "lines") else h
        return mcolors.to_hex(line.get_color())

    assert colour_of(rel, "CRM default") == colour_of(win, "CRM default")
    assert colour_of(rel, "learned") == colour_of(win, "learned (with interval)")
    assert colour_of(rel, "learned") != colour_of(rel, "CRM default")


def test_segment_lines_stop_at_five_and_the_others_come_on_demand():
    table = pd.DataFrame(np.linspace(0.1, 0.9, 8 * 3).reshape(8, 3), index=[f"seg{i}" for i in range(8)])
    ax = plotting.plot_segment_win_probability(table)
    assert len(ax.lines) == plotting.SERIES_MAX and "3 more" in ax.get_legend().get_title().get_text()
    assert len(plotting.plot_segment_win_probability(table, segments="all").lines) == 8
    assert [ln.get_label() for ln in plotting.plot_segment_win_probability(table, segments=["seg7"]).lines] == ["seg7"]


# ------------------------------------------------------------------------------------ outcome colours, axes
def test_waterfall_won_is_green_and_lost_red():
    waterfall = pd.DataFrame(
        {
            "step": ["opening pipeline", "created", "won", "lost", "pushed out", "closing pipeline"],
            "direction": ["start", "in", "out", "out", "out", "end"],
            "amount": [100.0, 50.0, 30.0, 40.0, 10.0, 70.0],
        }
    )
    ax = plotting.plot_waterfall(waterfall)
    bars = {s: b.get_facecolor() for s, b in zip(waterfall["step"], ax.patches, strict=False)}
    assert mcolors.same_color(bars["won"], plotting.OUTCOME_COLOURS["won"])
    assert mcolors.same_color(bars["lost"], plotting.OUTCOME_COLOURS["lost"])
    assert mcolors.to_rgb(plotting.OUTCOME_COLOURS["won"])[1] > mcolors.to_rgb(plotting.OUTCOME_COLOURS["won"])[0]
    assert not mcolors.same_color(bars["won"], bars["created"])  # won is not an inflow either
    assert "won" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_row_counts_use_a_linear_axis_with_labelled_values():
    counts = pd.DataFrame({"table": ["stage_history", "quotas"], "accepted": [13_823, 288], "quarantined": [0, 0]})
    ax = plotting.plot_table_counts(counts)
    assert ax.get_xscale() == "linear"
    widths = [p.get_width() for p in ax.patches[:2]]
    assert widths[1] / widths[0] == pytest.approx(288 / 13_823)  # 2%, not two thirds
    assert {t.get_text().strip() for t in ax.texts} == {"13,823 read", "288 read"}


@pytest.mark.parametrize("stages", [6, 16])
def test_heatmap_labels_are_readable(stages):
    names = [f"stage {i}" for i in range(stages)]
    matrix = pd.DataFrame(np.full((stages, stages), 1.0 / stages), index=names, columns=names)
    matrix.iloc[:, 0] += 0.3
    matrix = matrix.div(matrix.sum(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(9, 6))
    plotting.plot_transition_heatmap(matrix, ax=ax)
    fig.canvas.draw()
    px = fig.dpi / 72  # rendered pixels per point
    assert min(t.get_fontsize() for t in ax.texts) * px >= 9 * 100 / 72 * 0.99
    ticks = ax.get_xticklabels() + ax.get_yticklabels()
    assert min(t.get_fontsize() for t in ticks) >= 10
    if stages > 12:  # many: shares under 10% left out, column labels vertical
        assert len(ax.texts) == stages and ax.get_xticklabels()[0].get_rotation() == 90


def test_money_ticks_use_one_format_per_axis():
    fmt = plotting.MoneyFormatter()
    assert fmt.format_ticks([0, 5e5, 1e6, 1.5e6, 2e6]) == ["0", "0.5M", "1.0M", "1.5M", "2.0M"]
    assert fmt.format_ticks([0, 1e6, 2e6, 3e6]) == ["0", "1M", "2M", "3M"]
    assert fmt.format_ticks([0, 250e3, 500e3]) == ["0", "250k", "500k"]
    assert fmt.format_ticks([0, 2.5e9, 5e9]) == ["0", "2.5B", "5.0B"]
    assert fmt.format_ticks([0, 250, 500]) == ["0", "250", "500"]
    ax = plotting.plot_bookings_distribution(np.random.default_rng(0).normal(1.5e6, 4e5, 500))
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text() not in ("", "0")]
    assert labels and all(label.endswith("M") for label in labels)  # never "500.0k" beside "1.0M"
    assert len({len(label.split(".")[-1]) for label in labels}) == 1


def test_legends_sit_outside_the_data():
    summary = pd.DataFrame({"stage": ["A", "B"], "entered": [100, 60], "converted": [60, 30]})
    for ax in (
        plotting.plot_funnel(summary),
        plotting.plot_table_counts(pd.DataFrame({"table": ["t"], "accepted": [5], "quarantined": [1]})),
    ):
        ax.figure.canvas.draw()
        legend = ax.get_legend().get_window_extent()
        assert legend.x0 >= ax.get_window_extent().x1  # right of the axes, not over the bars


# ------------------------------------------------------------------------------------ a finished period
def test_a_finished_period_draws_the_outcome_against_the_forecasts():
    samples = np.full(1000, 1_745_000.0)  # the quarter's last day: every simulation is the outcome
    ax = plotting.plot_bookings_distribution(
        samples,
        commit=1_970_000.0,
        won_to_date=1_745_000.0,
        forecasts={"submitted_commit": 1_970_000.0, "monte_carlo": 1_500_000.0, "stage_conversion": 1_600_000.0},
    )
    outcome = [line for line in ax.lines if line.get_label().startswith("outcome")]
    assert len(outcome) == 1 and outcome[0].get_xdata()[0] == 1_745_000.0
    assert [t.get_text() for t in ax.get_yticklabels()] == ["submitted commit", "Monte Carlo", "stage conversion"]
    assert ax.get_xlim()[0] == 0  # the axis starts at 0, not at 1.74M
    assert any("+13% vs outcome" in t.get_text() for t in ax.texts)  # 1.97M against 1.745M
    assert not ax.patches or all(p.get_height() < 1 for p in ax.patches)  # bars, no one-bin histogram
    actual = plotting.plot_bookings_distribution(samples, actual=1_800_000.0, commit=1.9e6)
    assert [line.get_xdata()[0] for line in actual.lines] == [1_800_000.0]
    assert [t.get_text() for t in actual.get_yticklabels()] == ["submitted commit"]  # no forecasts: the calls
    # the quarter's last day on the sample: 93% of the draws at the outcome, a few open deals still drawn as won
    nearly = np.r_[np.full(930, 1_745_000.0), np.linspace(1_750_000.0, 2_100_000.0, 70)]
    ax = plotting.plot_bookings_distribution(nearly)
    assert [line.get_label() for line in ax.lines] == ["outcome: 1.75M"]
    # told it has ended, whatever the draws; told it has not, a histogram even of agreeing draws
    spread = np.random.default_rng(0).normal(1.5e6, 2e5, 500)
    ax = plotting.plot_bookings_distribution(spread, actual=1.6e6, finished=True, forecasts={"ets": 1.4e6})
    assert [line.get_label() for line in ax.lines] == ["outcome: 1.6M"]
    assert len(plotting.plot_bookings_distribution(samples, finished=False).patches) >= 1


def test_forecasts_at_takes_the_cutoff_nearest_to_the_weeks_asked():
    results = _results({"monte_carlo": 0.1, "ets": 0.2}, periods=2, weeks=(12, 7, 0))
    got, when = forecasts_at(results, "P1", ["monte_carlo", "ets", "run_rate"], weeks_before_end=6)
    rows = results[(results["period"] == "P1") & (results["days_before_period_end"] == 49)]
    assert got == dict(zip(rows["method"], rows["forecast"], strict=True)) and when == "7 weeks before the end"
    assert forecasts_at(results, "P9", ["monte_carlo"]) == ({}, "")


# ------------------------------------------------------------------------------------ intervals and ties
def test_bootstrap_interval_is_seeded_and_holds_the_point_wape():
    results = _results({"monte_carlo": 0.1, "ets": 0.25})
    a = leaderboard(results, by="band", ci=0.9, seed=3)
    b = leaderboard(results, by="band", ci=0.9, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["wape_low"], leaderboard(results, by="band", ci=0.9, seed=4)["wape_low"])
    assert (a["wape_low"] <= a["wape"]).all() and (a["wape"] <= a["wape_high"]).all()
    assert (a["wape_high"] > a["wape_low"]).all() and a.attrs["ci"] == 0.9
    wide = leaderboard(results, by="band", ci=0.99, seed=3)
    assert (wide["wape_high"] - wide["wape_low"] >= a["wape_high"] - a["wape_low"] - 1e-12).all()
    with pytest.raises(ValueError, match="ci"):
        leaderboard(results, ci=90)


def test_bootstrap_resamples_whole_periods():
    """Two periods, one perfect and one 20% off: each resample's WAPE is 0, 10% or 20% (whole periods drawn)."""
    rows = pd.DataFrame({"period": ["a", "b"], "method": "m", "forecast": [100.0, 120.0], "actual": [100.0, 100.0]})
    out = bootstrap_wape(rows, ["method"], ci=0.98, n_boot=2000, seed=0)
    assert out["wape_low"].iloc[0] == pytest.approx(0.0) and out["wape_high"].iloc[0] == pytest.approx(0.2)


def test_recommend_calls_a_tie_a_tie_and_names_a_clear_winner():
    board = pd.DataFrame(
        {
            "horizon": ["late", "late", "late", "early", "early"],
            "method": ["stage_conversion", "monte_carlo", "run_rate", "monte_carlo", "ets"],
            "wape": [0.161, 0.1612, 0.4, 0.10, 0.30],
            "wape_low": [0.12, 0.118, 0.33, 0.08, 0.25],
            "wape_high": [0.203, 0.209, 0.47, 0.12, 0.36],
        }
    )
    board.attrs["ci"] = 0.9
    out = recommend(board).set_index("horizon")
    late, early = out.loc["late"], out.loc["early"]
    assert late["tie"] and late["advice"].startswith("16.1% vs 16.1%: a tie within the intervals")
    assert "trust" not in late["advice"] and "stage conversion" in late["advice"] and "Monte Carlo" in late["advice"]
    assert not early["tie"] and early["advice"].startswith("trust Monte Carlo (WAPE 10.0%, 90% interval 8.0%–12.0%)")
    # apart as shown but each inside the other's interval: still a tie
    board.loc[1, "wape"] = 0.17
    assert recommend(board).set_index("horizon").loc["late", "tie"]
    # apart and outside each other's interval: a winner
    board.loc[1, ["wape", "wape_low", "wape_high"]] = [0.25, 0.21, 0.29]
    late = recommend(board).set_index("horizon").loc["late"]
    assert not late["tie"] and late["advice"].startswith("trust stage conversion")
    # without intervals, only an equal value as shown is a tie
    plain = board.drop(columns=["wape_low", "wape_high"])
    plain.loc[1, "wape"] = 0.1612
    assert recommend(plain).set_index("horizon").loc["late", "tie"]


def test_the_interval_chart_names_no_winner_of_a_tie():
    results = _results({"stage_conversion": 0.1, "monte_carlo": 0.1, "ets": 0.6}, periods=6)
    board = leaderboard(results, by="band", ci=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        verdict = recommend(board)
    ax = plotting.plot_method_intervals(board)
    texts = [t.get_text() for t in ax.texts]
    assert sum("a tie within the intervals" in t for t in texts) == int(verdict["tie"].sum()) >= 1
    assert sum("best:" in t for t in texts) == int((~verdict["tie"]).sum())  # a winner only where there is one
    dots = [line for line in ax.lines if line.get_gid() in METHODS]
    assert dots and all(mcolors.same_color(d.get_color(), METHODS[d.get_gid()].colour) for d in dots)
    assert [t.get_text() for t in ax.get_yticklabels()][:1] != ["stage_conversion"]
