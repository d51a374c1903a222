"""Contract tests over every estimator and every plot function (as scikit-learn's ``test_common.py``).

The estimators are the `~sklearn.base.BaseEstimator` subclasses exported by `salesforecast.models`, the plot
functions the public functions of `salesforecast.plotting` that take ``ax``: both are discovered, so a new model or
chart is checked without touching this file, and fails here until it has an example input below (`FIT_CASES`,
`PLOT_EXAMPLES`).

Estimators (DESIGN.md, STYLE.md items 2 and 12): ``__init__`` stores its parameters and nothing else
(``get_params``/``set_params`` round trip, ``clone``), ``fit`` returns ``self`` and adds only attributes ending in
``_`` (or private ones), an unfitted model refuses to predict with scikit-learn's ``NotFittedError``, ``summary`` is
a DataFrame, the same seed gives the same output, and ``predict_proba`` returns the one agreed type: a float Series
of the positive outcome's probability aligned to the input's index.

Plot functions (STYLE.md item 4): given an ``ax`` they draw on it and return it, with ``ax=None`` they return the
Axes of a new figure; they never call ``plt.show()``, set a title or an axis label, and their figure draws and
closes cleanly.
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from salesforecast import forecast, metrics, models, plotting, quality
from salesforecast.adherence import adherence_by, deal_adherence
from salesforecast.calibration import compare_with_crm
from salesforecast.datasets import load_sample
from salesforecast.leads import lead_dataset
from salesforecast.models import BookingsModel, LeadScoringModel, OpportunityScoringModel, StageConversionModel
from salesforecast.models.opportunity_scoring import opportunity_features
from salesforecast.movement import pipeline_waterfall
from salesforecast.schema import CRMData
from salesforecast.snapshots import pipeline_snapshots

ESTIMATORS = sorted(
    (
        obj
        for name in models.__all__
        if inspect.isclass(obj := getattr(models, name)) and issubclass(obj, BaseEstimator)
    ),
    key=lambda c: c.__name__,
)
PLOTS = sorted(
    name
    for name, f in inspect.getmembers(plotting, inspect.isfunction)
    if f.__module__ == plotting.__name__ and not name.startswith("_") and "ax" in inspect.signature(f).parameters
)


@pytest.fixture(scope="module")
def sample() -> CRMData:
    return load_sample()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------------ estimators
@dataclass
class FitCase:
    """How to fit one estimator on small real data, and what to predict with it.

    ``params`` are settings for a quick fit (set with ``set_params``, as scikit-learn's common tests do);
    ``predict`` makes the model's main prediction, the one an unfitted model must refuse; ``proba_input`` is
    what ``predict_proba`` scores, for models that have it.
    """

    fit_args: tuple[Any, ...]
    predict: Callable[[Any], Any]
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    proba_input: pd.DataFrame | None = None


FIT_CASES: dict[type, Callable[[CRMData], FitCase]] = {}


def fit_case(estimator: type) -> Callable[[Callable[[CRMData], FitCase]], Callable[[CRMData], FitCase]]:
    """Register the fit case of `estimator` (a function of the sample data)."""

    def register(factory: Callable[[CRMData], FitCase]) -> Callable[[CRMData], FitCase]:
        FIT_CASES[estimator] = factory
        return factory

    return register


def _reordered(frame: pd.DataFrame, n: int = 200) -> pd.DataFrame:
    """A few rows in reverse order: an index that only an aligned result can match."""
    return frame.iloc[: min(n, len(frame))].iloc[::-1]


@fit_case(StageConversionModel)
def _stage_conversion(data: CRMData) -> FitCase:
    as_of = pd.Timestamp("2025-06-30")
    snap = _reordered(pipeline_snapshots(data, as_of))
    return FitCase((data,), lambda m: m.predict_proba(snap), {"as_of": as_of}, {"n_bootstrap": 20}, snap)


@fit_case(OpportunityScoringModel)
def _opportunity_scoring(data: CRMData) -> FitCase:
    as_of = pd.Timestamp("2025-06-30")
    feats = _reordered(opportunity_features(data, as_of))
    return FitCase((data,), lambda m: m.predict_proba(feats), {"as_of": as_of}, {}, feats)


@fit_case(LeadScoringModel)
def _lead_scoring(data: CRMData) -> FitCase:
    leads = lead_dataset(data, maturity_days=180)
    X = _reordered(leads.open)
    return FitCase((leads.X, leads.y), lambda m: m.predict_proba(X), {}, {"date_column": "created_at"}, X)


@fit_case(BookingsModel)
def _bookings(data: CRMData) -> FitCase:
    opps = data.opportunities
    won = opps[opps["is_won"].astype(bool)]
    quarters = data.process.calendar.period(won["close_date"])
    bookings = won["amount"].groupby(quarters.to_numpy()).sum().sort_index()
    return FitCase((bookings,), lambda m: m.predict(4))


@pytest.fixture(params=ESTIMATORS, ids=lambda c: c.__name__)
def case(request, sample) -> tuple[type, FitCase]:
    estimator = request.param
    if estimator not in FIT_CASES:
        pytest.fail(f"{estimator.__name__} has no fit case: register one with @fit_case in tests/test_contract.py")
    return estimator, FIT_CASES[estimator](sample)


def _new(estimator: type, case: FitCase) -> BaseEstimator:
    return estimator().set_params(**case.params)


def _fit(model: BaseEstimator, case: FitCase) -> BaseEstimator:
    return model.fit(*case.fit_args, **case.fit_kwargs)


def _same(a: Any, b: Any) -> bool:
    """Equal values (arrays and frames compared element-wise, NaN equal to NaN)."""
    if isinstance(a, pd.DataFrame | pd.Series):
        return type(a) is type(b) and a.equals(b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return bool(type(a) is type(b) and a == b)


def test_every_estimator_is_discovered():
    assert {BookingsModel, LeadScoringModel, OpportunityScoringModel, StageConversionModel} <= set(ESTIMATORS)


def test_init_stores_its_parameters_and_nothing_else(case):
    estimator, _ = case
    model = estimator()
    params = model.get_params(deep=False)
    assert list(params) == sorted(inspect.signature(estimator.__init__).parameters.keys() - {"self"})
    assert vars(model).keys() == params.keys(), "__init__ sets attributes that are not parameters"
    for name, p in inspect.signature(estimator.__init__).parameters.items():
        if name != "self":
            assert getattr(model, name) is p.default, f"__init__ changes the value of {name}"
    assert model.set_params(**params) is model
    assert all(_same(v, params[k]) for k, v in model.get_params(deep=False).items())
    twin = clone(model)
    assert twin is not model and type(twin) is estimator
    assert all(_same(v, params[k]) for k, v in twin.get_params(deep=False).items())


def test_fit_returns_self_and_adds_only_trailing_underscore_attributes(case):
    estimator, c = case
    model = _new(estimator, c)
    before = dict(vars(model))
    assert _fit(model, c) is model
    added = vars(model).keys() - before.keys()
    public = sorted(a for a in added if not a.startswith("_"))
    assert public and all(a.endswith("_") for a in public), f"fit adds public attributes without '_': {public}"
    assert all(_same(getattr(model, k), v) for k, v in before.items()), "fit changes a parameter"


def test_unfitted_model_raises_not_fitted_error(case):
    estimator, c = case
    with pytest.raises(NotFittedError):
        c.predict(_new(estimator, c))
    with pytest.raises(NotFittedError):
        _ = _new(estimator, c).summary


def test_summary_is_a_dataframe(case):
    estimator, c = case
    summary = _fit(_new(estimator, c), c).summary
    assert isinstance(summary, pd.DataFrame) and len(summary) > 0


def test_same_seed_same_output(case):
    estimator, c = case
    first = c.predict(_fit(_new(estimator, c), c))
    again = c.predict(_fit(clone(_new(estimator, c)), c))
    assert _same(first, again)


def test_predict_proba_is_a_series_of_probabilities_aligned_to_the_input(case):
    """One return type across the models (README, "Scoring leads and open deals"): the pipeline code and the
    notebooks add the probability as a column of the scored table, matched by index."""
    estimator, c = case
    if not hasattr(estimator, "predict_proba"):
        pytest.skip(f"{estimator.__name__} has no predict_proba")
    p = _fit(_new(estimator, c), c).predict_proba(c.proba_input)
    assert isinstance(p, pd.Series) and p.dtype == "float64"
    assert p.index.equals(c.proba_input.index)
    assert p.dropna().between(0, 1).all() and p.notna().any()


# ------------------------------------------------------------------------------------------------ plots
@pytest.fixture(scope="module")
def plot_inputs(sample) -> dict[str, Any]:
    """Small real inputs: the package's own outputs on the sample data (short backtest, few simulations)."""
    as_of = pd.Timestamp(sample.as_of)
    model = StageConversionModel(segment="segment", n_bootstrap=20).fit(sample)
    leads = lead_dataset(sample, maturity_days=180)
    scorer = LeadScoringModel(date_column="created_at").fit(leads.X, leads.y)
    p, y = scorer.predict_proba(leads.X), leads.y.astype(bool)
    label = sample.process.calendar.resolve("current", as_of)
    start, _ = sample.process.calendar.period_bounds(label)
    methods = ("submitted_commit", "crm_weighted", "monte_carlo")
    results = forecast.backtest(sample, methods=methods, groups=("total",), periods=2, n_sims=50, seed=0)
    return {
        "model": model,
        "calibration": compare_with_crm(sample, as_of - pd.DateOffset(months=6)).calibration,
        "gains": metrics.cumulative_gains(y, p),
        "lead_calibration": metrics.calibration_table(y, p),
        "waterfall": pipeline_waterfall(sample, start, as_of, period=label),
        "by_rep": adherence_by(deal_adherence(sample, as_of=as_of), "owner"),
        "counts": quality.table_counts(sample),
        "results": results,
        "weekly": forecast.leaderboard(results, by="weeks"),
        "bands": forecast.leaderboard(results, by="band", ci=0.9, n_boot=200),
        "bias": forecast.submission_bias(sample, as_of=as_of),
        "now": forecast.forecast_period(sample, as_of=as_of, methods=methods, n_sims=50, seed=0),
    }


#: Each plot function's example call: a function of `plot_inputs` returning (args, kwargs), ``ax`` excluded.
PLOT_EXAMPLES: dict[str, Callable[[dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "plot_funnel": lambda i: ((i["model"].summary,), {}),
    "plot_transition_heatmap": lambda i: ((i["model"].transition_matrix_,), {}),
    "plot_win_probability": lambda i: ((i["model"].summary,), {}),
    "plot_time_in_stage": lambda i: ((i["model"].summary,), {}),
    "plot_segment_win_probability": lambda i: ((i["model"].segment_win_probability_,), {}),
    "plot_reliability": lambda i: (({m: t for m, t in i["calibration"].groupby("method")},), {}),
    "plot_gains": lambda i: (({"model": i["gains"]},), {}),
    "plot_waterfall": lambda i: ((i["waterfall"],), {"value": "amount"}),
    "plot_adherence_by": lambda i: (
        (i["by_rep"], {"share_skipped_stage": "skipped a stage", "share_stalled": "stalled"}),
        {},
    ),
    "plot_table_counts": lambda i: ((i["counts"],), {}),
    "plot_forecast_trend": lambda i: ((i["results"][i["results"]["period"] == i["results"]["period"].max()],), {}),
    "plot_leaderboard": lambda i: ((i["weekly"], "wape"), {}),
    "plot_interval_coverage": lambda i: ((i["weekly"].dropna(subset=["coverage"]),), {}),
    "plot_rep_bias": lambda i: ((i["bias"].assign(ratio=i["bias"]["bias"]),), {}),
    "plot_bookings_distribution": lambda i: (
        (i["now"].samples,),
        {"commit": i["now"].point("submitted_commit"), "won_to_date": i["now"].won_to_date},
    ),
    "plot_method_intervals": lambda i: ((i["bands"],), {}),
    "plot_outcome": lambda i: ((1.0e6, {"monte_carlo": 9.0e5, "submitted_commit": 1.2e6}), {}),
}


def test_every_plot_function_has_an_example():
    missing = sorted(set(PLOTS) - PLOT_EXAMPLES.keys())
    assert not missing, f"plot functions without an example in PLOT_EXAMPLES (tests/test_contract.py): {missing}"
    assert not PLOT_EXAMPLES.keys() - set(PLOTS), "PLOT_EXAMPLES names a function plotting does not have"


def test_every_plot_function_is_exported():
    assert not set(PLOTS) - set(plotting.__all__)


def _no_show(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a plot function called show()")

    monkeypatch.setattr(plt, "show", refuse)
    monkeypatch.setattr(matplotlib.figure.Figure, "show", refuse)


def _example(
    name: str, plot_inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The example call of plot function `name`, with ``show`` refused from here on."""
    if name not in PLOT_EXAMPLES:
        pytest.fail(f"{name} has no example in PLOT_EXAMPLES")
    _no_show(monkeypatch)
    return PLOT_EXAMPLES[name](plot_inputs)


def _labelled(ax: Axes) -> bool:
    return bool(ax.get_title() or ax.get_xlabel() or ax.get_ylabel())


def _draws_and_closes(ax: Axes) -> None:
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG")
    number = ax.figure.number
    plt.close(ax.figure)
    assert number not in plt.get_fignums()


@pytest.mark.parametrize("name", PLOTS)
def test_plot_draws_on_the_given_axes_and_returns_it(name, plot_inputs, monkeypatch):
    args, kwargs = _example(name, plot_inputs, monkeypatch)
    fig, ax = plt.subplots()
    assert getattr(plotting, name)(*args, **kwargs, ax=ax) is ax
    assert plt.get_fignums() == [fig.number], "drew on a new figure besides the given one"
    assert _labelled(ax) and ax.has_data()
    _draws_and_closes(ax)
    assert not plt.get_fignums()


@pytest.mark.parametrize("name", PLOTS)
def test_plot_without_axes_makes_one_figure(name, plot_inputs, monkeypatch):
    args, kwargs = _example(name, plot_inputs, monkeypatch)
    assert not plt.get_fignums()
    ax = getattr(plotting, name)(*args, **kwargs, ax=None)
    assert isinstance(ax, Axes) and plt.get_fignums() == [ax.figure.number]
    assert _labelled(ax) and ax.has_data()
    _draws_and_closes(ax)
    assert not plt.get_fignums()
