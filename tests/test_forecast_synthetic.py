"""On synthetic data with known truth: the learned methods against the oracle, honest intervals, rep biases.

`generate` knows the true dynamics, so the ``oracle`` method (the true probability that each open deal is won
before the period ends) has the error no method can remove. The learned stage-conversion and Monte Carlo methods
must come within 10% of its WAPE at every horizon, the Monte Carlo 80% intervals must cover 70-90% of outcomes, and
each rep's forecast bias must be recovered within 0.05.
"""

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.forecast import backtest, leaderboard, submission_bias

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic():
    return generate(n_opportunities=20_000, seed=3, n_reps=24)


@pytest.fixture(scope="module")
def results(synthetic):
    data, truth = synthetic
    return backtest(
        data, methods=["stage_conversion", "monte_carlo", "oracle", "crm_weighted"], truth=truth, n_sims=500
    )


@pytest.mark.parametrize("group", ["total", "team", "owner"])
def test_learned_methods_come_within_10_percent_of_the_oracle_at_every_horizon(results, group):
    board = leaderboard(results, group=group, by="band", metrics=("wape",))
    wape = board.pivot(index="horizon", columns="method", values="wape")
    assert len(wape) == 3
    ratio = wape[["stage_conversion", "monte_carlo"]].div(wape["oracle"], axis=0)
    assert (ratio <= 1.10).all().all(), ratio
    assert (wape["crm_weighted"] > 2 * wape["oracle"]).all()  # the CRM's stage defaults are far off here


def test_week_by_week_the_rep_level_forecasts_stay_within_10_percent_of_the_oracle(results):
    board = leaderboard(results, group="owner", by="weeks", metrics=("wape",))
    wape = board.pivot(index="weeks_before_end", columns="method", values="wape")
    assert len(wape) >= 13
    ratio = wape[["stage_conversion", "monte_carlo"]].div(wape["oracle"], axis=0)
    assert (ratio <= 1.10).all().all(), ratio


def test_monte_carlo_80_percent_intervals_cover_70_to_90_percent(results):
    mc = results[results["method"] == "monte_carlo"]
    inside = (mc["actual"] >= mc["p10"]) & (mc["actual"] <= mc["p90"])
    assert 0.70 <= inside.mean() <= 0.90
    by_group = inside.groupby(mc["group"]).mean()
    assert by_group.between(0.70, 0.90).all(), by_group  # reps, teams, and the 8 x 13 company forecasts
    board = leaderboard(results, group="owner", by="band", metrics=("coverage",)).dropna()
    assert board.loc[board["method"] == "monte_carlo", "coverage"].between(0.70, 0.90).all()


def test_each_reps_bias_is_recovered_within_005(synthetic):
    data, truth = synthetic
    table = submission_bias(data).set_index("owner")
    error = (table["bias"] - truth.rep_bias.reindex(table.index)).abs()
    assert len(table) == 24 and error.max() <= 0.05, error.sort_values().tail()
    # the plain late-quarter ratio is further off: the calls still blend in the run-rate guess
    late = (table["late_ratio"] - truth.rep_bias.reindex(table.index)).abs()
    assert late.mean() > error.mean()


def test_the_oracle_is_a_floor_for_the_pipeline_methods(results):
    board = leaderboard(results, group="owner", by="method", metrics=("wape",)).set_index("method")["wape"]
    assert board["oracle"] <= board[["stage_conversion", "monte_carlo"]].min() * 1.02
    assert np.isfinite(board).all() and isinstance(board, pd.Series)
