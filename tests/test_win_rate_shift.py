"""Tests of `generate(..., win_rate_shift=...)`: win probabilities that change between years, with an exact oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.snapshots import pipeline_snapshots, stage_intervals


def test_default_shift_gives_the_same_tables_and_params():
    a, ta = generate(n_opportunities=400, seed=11)
    b, tb = generate(n_opportunities=400, seed=11, win_rate_shift=0.0)
    for name, table in a.tables.items():
        if table is not None:
            pd.testing.assert_frame_equal(table, b.tables[name], check_exact=True)
    assert ta.params == tb.params and "win_rate_shift" not in ta.params
    assert np.all(ta.win_rate_factor(["2023-02-01", "2025-02-01"]) == 1.0)


def test_shift_is_deterministic_and_recorded():
    a, ta = generate(n_opportunities=400, seed=11, win_rate_shift=-1 / 3)
    b, _ = generate(n_opportunities=400, seed=11, win_rate_shift=-1 / 3)
    pd.testing.assert_frame_equal(a.opportunities, b.opportunities, check_exact=True)
    assert ta.params["win_rate_shift"] == pytest.approx(-1 / 3)
    assert ta.win_rate_factor(["2023-12-31", "2024-01-01"]).tolist() == pytest.approx([1.0, 2 / 3])
    _, rise = generate(n_opportunities=50, seed=1, win_rate_shift=1.0)
    assert rise.win_rate_factor(["2023-12-31", "2024-01-01"]).tolist() == [0.5, 1.0]


@pytest.mark.parametrize("bad", [-1.5, float("nan"), float("inf")])
def test_shift_must_be_a_relative_change_of_at_least_minus_one(bad):
    with pytest.raises(ValueError, match="win_rate_shift"):
        generate(n_opportunities=50, seed=1, win_rate_shift=bad)


def test_a_full_fall_leaves_no_win_after_the_first_year_and_the_oracle_knows():
    data, truth = generate(n_opportunities=1500, seed=4, win_rate_shift=-1.0)
    iv = stage_intervals(data)
    won_at = iv.loc[iv["stage"].eq(data.process.won_stage), "start"]
    assert len(won_at) > 50 and won_at.max() < pd.Timestamp("2024-01-01")
    snap = pipeline_snapshots(data, "2023-12-10")
    p_year_one = truth.win_within(snap, "2024-01-01")
    p_later = truth.win_within(snap, "2025-01-01")
    assert p_year_one.sum() > 1.0
    np.testing.assert_allclose(p_later.to_numpy(), p_year_one.to_numpy())  # no win after the boundary counts


def test_the_oracle_stays_calibrated_under_a_fall_of_a_third():
    """Observed wins by the quarter end against the oracle's sum, at snapshots in the first and later years."""
    data, truth = generate(n_opportunities=6000, seed=8, win_rate_shift=-1 / 3)
    iv = stage_intervals(data)
    won_at = iv.loc[iv["stage"].eq(data.process.won_stage)].groupby("opportunity_id")["start"].min()
    ends = {
        "2023-05-15": "2023-07-01",
        "2023-11-20": "2024-01-01",
        "2024-05-15": "2024-07-01",
        "2025-08-10": "2025-10-01",
    }
    z = []
    for when, end in ends.items():
        snap = pipeline_snapshots(data, when)
        p = truth.win_within(snap, end)
        obs = (snap["opportunity_id"].map(won_at) < pd.Timestamp(end)).fillna(False).astype(float)
        z.append(float((obs.sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())))
    assert np.all(np.abs(z) < 3.5), z


def test_the_same_state_a_year_later_wins_two_thirds_as_often():
    """Same stage, segment and time in stage; the window a year later (same quarter layout): factor 2/3 exactly."""
    _, truth = generate(n_opportunities=300, seed=2, win_rate_shift=-1 / 3)
    snap = pd.DataFrame({"stage": list(truth.win_probability.index), "segment": "SMB", "days_in_stage": 3.0})
    p_2023 = truth.win_within(snap, "2023-12-01", as_of="2023-03-01 10:00", n_sims=2000)
    p_2024 = truth.win_within(snap, "2024-12-01", as_of="2024-03-01 10:00", n_sims=2000)
    assert p_2023.min() > 0.05
    np.testing.assert_allclose(p_2024.to_numpy(), p_2023.to_numpy() * 2 / 3, rtol=1e-12)
