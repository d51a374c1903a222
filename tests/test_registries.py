"""The method and metric registries: complete entries, one place to add a method, directions read from the registry."""

import dataclasses
import itertools

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from salesforecast import forecast, plotting
from salesforecast.datasets import load_sample
from salesforecast.forecast import (
    METHODS,
    NEEDS,
    BacktestCutoff,
    ForecastMethod,
    backtest,
    definitions,
    leaderboard,
    recommend,
)
from salesforecast.metrics import METRIC_DEFINITIONS, METRICS, evaluate, pinball_loss
from salesforecast.reports import format_table
from salesforecast.snapshots import pipeline_snapshots

PERIOD = "FY2025Q2"
CUTS = [pd.Timestamp("2025-04-15"), pd.Timestamp("2025-05-27")]


@pytest.fixture(scope="module")
def data():
    return load_sample()


# ------------------------------------------------------------------------------------------------ methods
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_entry_is_complete(name):
    m = METHODS[name]
    assert m.name == name
    assert m.label.strip() and m.label != "" and len(m.definition) > 30, name
    assert mcolors.is_color_like(m.colour), name
    assert m.needs and m.needs <= set(NEEDS), name
    assert callable(m.forecast) and (m.prepare is None or callable(m.prepare))


def _lab(colour: str) -> np.ndarray:
    """CIELAB coordinates of a colour (sRGB, D65)."""
    rgb = np.array(mcolors.to_rgb(colour))
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    f = np.cbrt(np.maximum(xyz / np.array([0.95047, 1.0, 1.08883]), 0.008856))
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_method_labels_and_colours_are_distinct():
    labels = [m.label for m in METHODS.values()]
    assert len(set(labels)) == len(labels)
    # every two methods' colours are told apart at a glance: a colour difference (CIE76 delta E) of 25 or more
    for (a, ma), (b, mb) in itertools.combinations(METHODS.items(), 2):
        assert np.linalg.norm(_lab(ma.colour) - _lab(mb.colour)) >= 25, (a, b)
    assert plotting.METHOD_COLOURS == {name: m.colour for name, m in METHODS.items()}
    assert {m.linestyle for m in METHODS.values()} <= {"-", "--", ":"}


def test_an_unknown_need_is_refused():
    with pytest.raises(ValueError, match="unknown need 'crystal ball'"):
        ForecastMethod("x", "x", "x", "#000000", lambda cut: None, needs=frozenset({"crystal ball"}))


def test_the_default_methods_and_the_truth_come_from_the_entries(data):
    res = backtest(data, cutoffs=CUTS[:1], periods=[PERIOD], groups=["total"], n_sims=100)
    assert list(dict.fromkeys(res["method"])) == [m.name for m in METHODS.values() if m.default]
    with_q = res.loc[res["p10"].notna(), "method"]
    assert set(with_q) <= {m.name for m in METHODS.values() if m.quantiles}


def _half_pipeline(cut: BacktestCutoff) -> np.ndarray:
    """A toy method: closed won to date + half the open pipeline."""
    return cut.won + cut.ctx.groups.sum(cut.snap.codes, 0.5 * cut.snap.amount)


TOY = ForecastMethod(
    name="half_pipeline",
    label="half the pipeline",
    definition="closed won to date + half of every open deal's amount (a toy method of the tests)",
    colour="#000000",
    forecast=_half_pipeline,
    needs=frozenset({"pipeline"}),
)


def test_a_registered_method_runs_in_the_backtest_and_the_leaderboard(data, monkeypatch):
    with pytest.raises(TypeError, match="register 'half_pipeline' first"):  # an unregistered one has no definition
        backtest(data, methods=["crm_weighted", TOY], cutoffs=CUTS, periods=[PERIOD], groups=["total"])
    monkeypatch.setitem(forecast.METHODS, TOY.name, TOY)
    res = backtest(
        data, methods=["crm_weighted", "half_pipeline"], cutoffs=CUTS, periods=[PERIOD], groups=["total", "team"]
    )
    assert set(res["method"]) == {"crm_weighted", "half_pipeline"}
    crm = res[res["method"] == "crm_weighted"].set_index(["cutoff", "group_value"])["forecast"]
    toy = res[res["method"] == "half_pipeline"].set_index(["cutoff", "group_value"])["forecast"]
    for t in CUTS:
        snap = pipeline_snapshots(data, t)
        won = crm.loc[(t, "total")] - _crm_pipeline(data, snap)
        assert toy.loc[(t, "total")] == pytest.approx(won + 0.5 * snap["amount"].fillna(0).sum())
    board = leaderboard(res, by="method")
    assert set(board["method"]) == {"crm_weighted", "half_pipeline"}


def _crm_pipeline(data, snap):
    inside = (snap["close_date"] >= "2025-04-01") & (snap["close_date"] < "2025-07-01")
    return float((snap["amount"] * snap["stage"].map(data.process.probability) * inside).sum())


def test_a_method_added_to_the_registry_is_in_every_reader(data, monkeypatch):
    monkeypatch.setitem(forecast.METHODS, TOY.name, TOY)
    res = backtest(data, cutoffs=CUTS[:1], periods=[PERIOD], groups=["total"], n_sims=100)
    assert "half_pipeline" in set(res["method"])  # a default method: in the default list
    assert definitions(["half_pipeline"])["definition"].iloc[0] == TOY.definition
    assert plotting._method_colours(["half_pipeline", "ets"])["half_pipeline"] == "#000000"
    assert plotting._method_order(["half_pipeline", "submitted_commit"]) == ["submitted_commit", "half_pipeline"]
    hidden = dataclasses.replace(TOY, name="hidden_toy", default=False)
    monkeypatch.setitem(forecast.METHODS, hidden.name, hidden)
    res = backtest(data, cutoffs=CUTS[:1], periods=[PERIOD], groups=["total"], n_sims=100)
    assert "hidden_toy" not in set(res["method"])
    chosen = backtest(data, methods=["hidden_toy"], cutoffs=CUTS[:1], periods=[PERIOD], groups=["total"])
    assert set(chosen["method"]) == {"hidden_toy"}


# ------------------------------------------------------------------------------------------------ metrics
@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_entry_is_complete(name):
    m = METRICS[name]
    assert m.name == name and m.label.strip()
    assert m.direction in ("lower", "higher", "closer")
    assert (m.ideal is not None) == (m.direction == "closer")
    assert m.units in ("percent", "ratio", "amount")
    assert m.kind in ("point", "interval", "quantile")
    assert METRIC_DEFINITIONS[name] == m.definition and "better" in m.definition
    if m.direction != "closer":
        assert m.better in m.definition, name
    else:
        assert "closer to" in m.definition, name
    assert callable(m.function) and callable(m.grouped)


@pytest.mark.parametrize("name", [n for n, m in METRICS.items() if not m.needs_series])
def test_evaluate_of_one_group_is_the_entrys_array_function(name):
    rng = np.random.default_rng(3)
    a = rng.uniform(50, 150, 40)
    f = a * rng.lognormal(0, 0.2, 40)
    df = pd.DataFrame({"actual": a, "forecast": f, "p10": 0.8 * f, "p50": f, "p90": 1.2 * f})
    m = METRICS[name]
    if m.kind == "point":
        expected = m.function(a, f)
    elif m.kind == "interval":
        expected = m.function(a, df["p10"], df["p90"])
    else:
        expected = np.mean([pinball_loss(a, df[c], q) for q, c in ((0.1, "p10"), (0.5, "p50"), (0.9, "p90"))])
    assert evaluate(df, name)[name].item() == pytest.approx(expected, rel=1e-12)


def _results(values: dict[str, float]) -> pd.DataFrame:
    """A backtest-shaped table: each method forecasts two periods (actuals 100 and 120) at actual + its value."""
    rows = []
    for period, actual in (("P1", 100.0), ("P2", 120.0)):
        for method, v in values.items():
            f = actual + v
            rows.append(("total", "total", period, method, f, f - 20, f, f + 20, actual))
    out = pd.DataFrame(
        rows, columns=["group", "group_value", "period", "method", "forecast", "p10", "p50", "p90", "actual"]
    )
    out["days_before_period_end"] = 30.0
    return out


@pytest.mark.parametrize("metric", list(METRICS))
def test_leaderboard_ranks_by_each_metrics_direction(metric):
    res = _results({"over": 30.0, "under": -10.0, "close": 5.0})
    board = leaderboard(res, metrics=(metric,), by="method")
    values = board[metric].to_numpy()
    key = METRICS[metric].rank_key(pd.Series(values)).to_numpy()
    assert (np.diff(key) >= 0).all(), (metric, board)
    if METRICS[metric].direction == "higher":
        assert (np.diff(values) <= 0).all()
    assert recommend(board, metric=metric)["best"].iloc[0] == board["method"].iloc[0]
    assert board.attrs["metrics"] == [metric]


def test_report_tables_show_metrics_in_their_units():
    res = _results({"over": 30.0, "under": -10.0})
    board = leaderboard(res, metrics=("wape", "mase", "pinball"), by="method")
    html = format_table(board, precision=1).to_html()
    assert all(f"{v:.1%}" in html for v in board["wape"])  # wape in percent, read from the registry
    assert "%" not in format_table(board[["method", "pinball"]].assign(x=1), precision=1).to_html().split("<tbody")[1]
    assert "12.5%" in format_table(pd.DataFrame({"bias": [0.125]}), metrics=["bias"]).to_html()
    with pytest.raises(ValueError, match="unknown metric"):
        recommend(board, metric="accuracy")
