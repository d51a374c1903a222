import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from salesforecast import plotting


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


END = pd.Timestamp("2024-09-30")
METHODS = ["submitted_commit", "crm_weighted", "monte_carlo"]


def _results(periods=("FY2024Q3",), group_values=("EMEA",), weeks=(13, 8, 4, 0)):
    rows = []
    for period in periods:
        for gv in group_values:
            for k, method in enumerate(METHODS):
                for w in weeks:
                    forecast = 1_000_000.0 + 10_000 * k + 1_000 * w
                    q = method == "monte_carlo"
                    rows.append(
                        {
                            "period": period,
                            "cutoff": END - pd.Timedelta(weeks=w),
                            "days_before_period_end": 7.0 * w,
                            "group": "team",
                            "group_value": gv,
                            "method": method,
                            "forecast": forecast,
                            "p10": forecast * 0.8 if q else np.nan,
                            "p50": forecast if q else np.nan,
                            "p90": forecast * 1.2 if q else np.nan,
                            "actual": 1_050_000.0,
                        }
                    )
    return pd.DataFrame(rows)


def _board():
    rows = []
    for method, b in [("submitted_commit", -0.2), ("crm_weighted", 0.3), ("monte_carlo", 0.0)]:
        for w in range(13, -1, -1):
            rows.append(
                {
                    "method": method,
                    "weeks_before_end": w,
                    "wape": abs(b) * w / 13 + 0.02,
                    "bias": b * w / 13,
                    "coverage": 0.7 + 0.01 * w if method == "monte_carlo" else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _png(ax):
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png")
    return buf.getvalue()


def test_forecast_trend_one_line_per_method_band_and_actual():
    ax = plotting.plot_forecast_trend(_results())
    lines = {line.get_gid() or line.get_label(): line for line in ax.lines}
    assert set(METHODS) <= set(lines)
    assert lines["monte_carlo"].get_label() == "Monte Carlo"  # the registry's label, never the snake_case name
    for method in METHODS:
        line = lines[method]
        assert len(line.get_xdata()) == 4
        assert mcolors.same_color(line.get_color(), plotting.METHOD_COLOURS[method])
    # sorted by cutoff, dates on x
    assert np.allclose(lines["submitted_commit"].get_ydata(), [1_013_000, 1_008_000, 1_004_000, 1_000_000])
    actual = lines["actual"]
    assert actual.get_linestyle() == "--" and list(actual.get_ydata()) == [1_050_000.0, 1_050_000.0]
    band = [c for c in ax.collections if c.get_label() == "Monte Carlo P10–P90 range"]
    assert len(band) == 1
    ys = band[0].get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(0.8 * 1_020_000) and ys.max() == pytest.approx(1.2 * 1_033_000)
    assert ax.get_title() == "FY2024Q3: forecast vs actual (team EMEA)"
    assert "actual" in _legend(ax) and "Monte Carlo P10–P90 range" in _legend(ax)
    assert ax.get_ylabel() == "bookings (amount)" and ax.yaxis.get_major_formatter()(2e6, 0) == "2.0M"
    assert any(t.get_text() == "actual 1.05M" for t in ax.texts)
    # the top axis counts the weeks left to the period end
    top = ax.child_axes[0]
    assert top.get_xlabel() == "weeks before period end"
    assert top._functions[0](mdates.date2num(END - pd.Timedelta(weeks=4))) == pytest.approx(4.0)


def test_forecast_trend_methods_subset_no_band_and_same_axes():
    fig, ax = plt.subplots()
    out = plotting.plot_forecast_trend(_results(), ax=ax, methods=["crm_weighted"], interval_method=None)
    assert out is ax
    assert [line.get_label() for line in ax.lines] == ["CRM-weighted pipeline", "actual"]
    assert not ax.collections
    with pytest.raises(ValueError, match="best_case"):
        plotting.plot_forecast_trend(_results(), methods=["best_case"])


def test_forecast_trend_refuses_several_periods_or_groups():
    with pytest.raises(ValueError, match="FY2024Q3.*FY2024Q4"):
        plotting.plot_forecast_trend(_results(periods=("FY2024Q3", "FY2024Q4")))
    with pytest.raises(ValueError, match="team=AMER"):
        plotting.plot_forecast_trend(_results(group_values=("EMEA", "AMER")))
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_forecast_trend(_results().iloc[:0])


def test_forecast_trend_handles_nan_and_escapes_names():
    r = _results(group_values=("Ann $mith",))
    r["method"] = r["method"].replace({"crm_weighted": "my$method"})
    r.loc[r["method"] == "submitted_commit", "forecast"] = np.nan  # all missing: left out
    r.loc[r.index[-1], ["p10", "p90"]] = np.nan  # the band stops where the quantiles stop
    r["actual"] = np.nan  # open period: no actual line
    ax = plotting.plot_forecast_trend(r)
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["Monte Carlo", r"my\$method"]
    assert ax.get_title() == r"FY2024Q3: forecast vs actual (team Ann \$mith)"
    assert len(ax.collections) == 1
    _png(ax)


def test_forecast_trend_single_cutoff_band():
    ax = plotting.plot_forecast_trend(_results(weeks=(2,)).assign(group="total", group_value="total"))
    assert [c.get_label() for c in ax.collections] == ["Monte Carlo P10–P90 range"]
    assert ax.get_title() == "FY2024Q3: forecast vs actual"
    assert all(len(line.get_xdata()) == 1 for line in ax.lines if line.get_gid() in METHODS)


def test_method_colours_are_stable_and_distinct():
    a = plotting._method_colours(["monte_carlo", "x_new", "y_new"])
    b = plotting._method_colours(["y_new", "oracle", "x_new"])
    assert a["x_new"] == b["x_new"] and a["y_new"] == b["y_new"]
    assert a["monte_carlo"] == plotting.METHOD_COLOURS["monte_carlo"]
    names = [f"m{i}" for i in range(len(plotting._FALLBACK_COLOURS))]
    assert len(set(plotting._method_colours(names).values())) == len(names)


@pytest.mark.parametrize("metric", ["wape", "bias", "coverage"])
def test_leaderboard_lines_reversed_horizon_percent(metric):
    ax = plotting.plot_leaderboard(_board(), metric=metric)
    method_lines = [line for line in ax.lines if line.get_gid() in METHODS]
    expected = ["monte_carlo"] if metric == "coverage" else ["submitted_commit", "crm_weighted", "monte_carlo"]
    assert [line.get_gid() for line in method_lines] == expected  # all-NaN coverage methods left out
    assert list(method_lines[0].get_xdata()) == list(range(14))
    left, right = ax.get_xlim()
    assert left > right  # 13 ... 0: time flows toward the period end
    assert ax.yaxis.get_major_formatter()(0.25, 0).startswith("25")
    assert ax.yaxis.get_major_formatter()(0.25, 0).endswith("%")
    assert ax.get_xlabel() == "weeks before period end"
    refs = [line for line in ax.lines if line.get_gid() not in METHODS]
    if metric == "bias":
        assert [list(line.get_ydata()) for line in refs] == [[0.0, 0.0]]
    elif metric == "coverage":
        assert [list(line.get_ydata()) for line in refs] == [[0.8, 0.8]] and "nominal 80%" in _legend(ax)
    else:
        assert refs == [] and ax.get_ylim()[0] == 0
    _png(ax)


def test_leaderboard_checks_input():
    with pytest.raises(ValueError, match="mape"):
        plotting.plot_leaderboard(_board(), "mape")
    with pytest.raises(ValueError, match="one row per method"):
        plotting.plot_leaderboard(pd.concat([_board(), _board()]))


def test_interval_coverage_band_nominal_and_lines():
    fig, ax = plt.subplots()
    out = plotting.plot_interval_coverage(_board(), nominal=0.8, ax=ax)
    assert out is ax
    assert [line.get_label() for line in ax.lines] == ["Monte Carlo", "nominal 80%"]
    assert np.allclose(ax.lines[0].get_ydata(), [0.7 + 0.01 * w for w in range(14)])
    band = [p for p in ax.patches if p.get_label() == "acceptable (70%–90%)"]
    assert len(band) == 1
    ys = band[0].get_path().transformed(band[0].get_patch_transform()).vertices[:, 1]
    assert ys.min() == pytest.approx(0.7) and ys.max() == pytest.approx(0.9)
    assert ax.get_xlim()[0] > ax.get_xlim()[1]
    with pytest.raises(ValueError, match="nominal"):
        plotting.plot_interval_coverage(_board(), nominal=80)
    _png(ax)


def test_rep_bias_bars_follow_bands_sorted_and_escaped():
    table = pd.DataFrame(
        {
            "owner": ["ann", "Ann $mith", "bo", "cy"],
            "ratio": [1.0, 0.8, 0.5, np.nan],
            "team": ["EMEA", "EMEA", None, "AMER"],
        }
    )
    ax = plotting.plot_rep_bias(table)
    bars = list(ax.containers[0])
    assert [b.get_width() for b in bars] == [0.5, 0.8, 1.0, 0.0]  # sorted by ratio, no data last
    colours = [b.get_facecolor() for b in bars]
    expected = [plotting._RED, plotting._ORANGE, plotting._GREEN, plotting._GREY]
    assert all(mcolors.same_color(c, e) for c, e in zip(colours, expected, strict=True))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bo", r"Ann \$mith (EMEA)", "ann (EMEA)", "cy (AMER)"]
    texts = [t.get_text().strip() for t in ax.texts]
    assert texts == ["50%", "80%", "100%", "no data"]
    assert [list(line.get_xdata()) for line in ax.lines] == [[1.0, 1.0]]
    legend = _legend(ax)
    assert legend[:3] == ["good: 85–115%", "watch: 70–85% or 115–130%", "off: under 70% or over 130%"]
    assert "no data" in legend and "on target (100%)" in legend
    # tinted background bands, green around 100%
    spans = [p for p in ax.patches if p not in bars]
    green = [p for p in spans if mcolors.same_color(p.get_facecolor()[:3], mcolors.to_rgb(plotting._GREEN))]
    assert len(spans) == 5 and len(green) == 1
    assert green[0].get_x() == pytest.approx(0.85) and green[0].get_width() == pytest.approx(0.30)
    assert ax.xaxis.get_major_formatter()(1.0, 0) == "100%"
    _png(ax)


def test_rep_bias_band_edges_outliers_and_same_axes():
    fig, ax = plt.subplots()
    table = pd.DataFrame({"owner": list("abcdef"), "ratio": [0.85, 1.15, 0.7, 1.3, 10.0, np.inf]})
    assert plotting.plot_rep_bias(table, ax=ax) is ax
    assert [plotting._ratio_band(r) for r in table["ratio"]] == ["good", "good", "watch", "watch", "off", "off"]
    widths = [b.get_width() for b in ax.containers[0]]
    assert max(widths) == ax.get_xlim()[1] == plotting._RATIO_AXIS_CAP  # outliers drawn to the edge
    texts = [t.get_text().strip() for t in ax.texts]
    assert "1000%" in texts and "no actual" in texts
    assert "no data" not in _legend(ax)
    empty = plotting.plot_rep_bias(pd.DataFrame({"owner": [], "ratio": []}))
    assert len(empty.containers[0]) == 0
    _png(empty)


def test_bookings_distribution_quantiles_and_references():
    rng = np.random.default_rng(1)
    samples = rng.gamma(20, 50_000, 5_000)
    samples[:10] = np.nan
    fig, ax = plt.subplots()
    out = plotting.plot_bookings_distribution(
        samples, ax=ax, commit=900_000, best_case=1_300_000, actual=1_050_000, won_to_date=float("nan")
    )
    assert out is ax
    p10, p50, p90 = np.percentile(samples[10:], [10, 50, 90])
    lines = {line.get_label(): line.get_xdata()[0] for line in ax.lines}
    assert lines[f"P10: {plotting._amount(p10)}"] == pytest.approx(p10)
    assert lines[f"P50: {plotting._amount(p50)}"] == pytest.approx(p50)
    assert lines[f"P90: {plotting._amount(p90)}"] == pytest.approx(p90)
    assert lines["submitted commit: 900k"] == 900_000
    assert lines["best case: 1.3M"] == 1_300_000
    assert lines["actual: 1.05M"] == 1_050_000
    assert not any(label.startswith("closed-won") for label in lines)  # NaN: not drawn
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == pytest.approx(1.0)  # share of simulations
    assert ax.get_title() == "Simulated bookings"
    assert _legend(ax)[0] == "4,990 simulations"
    assert ax.xaxis.get_major_formatter()(1.5e6, 0) == "1.5M"
    _png(ax)


def test_bookings_distribution_references_stay_visible_and_bad_input():
    ax = plotting.plot_bookings_distribution(
        np.full(100, 500_000.0), won_to_date=100_000, commit=2_000_000, finished=False
    )  # agreeing draws of an open period (finished=None would draw them as the outcome)
    lo, hi = ax.get_xlim()
    assert lo < 100_000 and hi > 2_000_000
    assert "closed-won to date: 100k" in _legend(ax)
    with pytest.raises(ValueError, match="1-D"):
        plotting.plot_bookings_distribution(np.ones((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        plotting.plot_bookings_distribution([np.nan])


def test_method_colours_exported():
    assert "METHOD_COLOURS" in plotting.__all__  # every plot function's export and PNG: tests/test_contract.py
