"""The stage-conversion forecast against the oracle over seeds no other test uses, pooled, and its calibration.

A single seed's WAPE ratio to the oracle swings between about 0.85x and 1.27x (a quarter's bookings rest on a few
large deals), so the bound is checked on three seeds pooled: 8 quarters x 13 weekly cutoffs each, 20,000
opportunities, the company forecast (where the oracle's error is smallest and a bias shows most). Measured
2026-12-03: 1.066 / 1.087 / 1.091 early / mid / late (the calibration learned from amounts gave 1.026 / 1.059 /
1.114); over nine seeds (101-109) 1.042 / 1.033 / 1.068 (1.074 / 1.061 / 1.114 before).

The unit tests below check the calibration's two choices on hand-made replays: factors count deals, not amounts
(one large deal won or lost does not swing them), and each open stage gets its own factor, shrunk toward the
horizon's.
"""

import numpy as np
import pandas as pd
import pytest

from salesforecast import forecast as F
from salesforecast.datasets import generate
from salesforecast.forecast import backtest, leaderboard

SEEDS = (101, 102, 103)


@pytest.fixture(scope="module")
def pooled():
    runs = []
    for seed in SEEDS:
        data, truth = generate(n_opportunities=20_000, seed=seed, n_reps=24)
        res = backtest(data, methods=["stage_conversion", "oracle"], truth=truth, groups=["total"], n_sims=100)
        runs.append(res.assign(period=res["period"] + f"@{seed}"))  # one period label per seed and quarter
    return pd.concat(runs, ignore_index=True)


@pytest.mark.slow
def test_stage_conversion_within_10_percent_of_the_oracle_pooled_over_three_seeds(pooled):
    assert pooled["period"].nunique() == 8 * len(SEEDS)
    board = leaderboard(pooled, group="total", by="band", metrics=("wape",))
    wape = board.pivot(index="horizon", columns="method", values="wape")
    assert len(wape) == 3
    ratio = wape["stage_conversion"] / wape["oracle"]
    assert (ratio <= 1.10).all(), ratio


def _replay(stage: np.ndarray, q: np.ndarray, won: np.ndarray, amount: np.ndarray, periods: int = 4) -> F._Replay:
    """Hand-made replays: the same deals at one horizon in `periods` earlier periods (booked = amount when won)."""
    n = len(stage)
    pairs = [(f"P{i}", None, None, 7 * 86_400_000_000, None) for i in range(periods)]
    pair = np.repeat(np.arange(periods), n)
    amount_all = np.tile(amount, periods).astype("float64")
    y = np.where(np.tile(won, periods), amount_all, 0.0)
    qq = np.tile(q, periods).astype("float64")
    codes = np.zeros((1, n * periods), dtype=np.int64)
    return F._Replay(pairs, pair, y, qq, amount_all, codes, np.tile(stage, periods), 3)


def test_factors_count_deals_so_one_large_deal_does_not_swing_them():
    rng = np.random.default_rng(0)
    n = 400
    stage = np.full(n, 2)
    q = np.full(n, 0.25)
    won = rng.random(n) < 0.25
    small = np.full(n, 10_000.0)
    large = small.copy()
    large[np.flatnonzero(won)[0]] = 5_000_000.0  # one won deal 500 times larger than the rest
    f_small = F._horizon_factors(_replay(stage, q, won, small), prior=0.5)
    f_large = F._horizon_factors(_replay(stage, q, won, large), prior=0.5)
    (h,) = f_small
    assert f_large[h][2] == pytest.approx(f_small[h][2])
    # learned from amounts, the same replays would have more than doubled every deal's probability
    weighted = (large * won).sum() / (large * q).sum()
    assert weighted > 2 and abs(f_large[h][2] - 1) < 0.15


def test_each_stage_gets_its_own_factor_shrunk_toward_the_horizons():
    n = 300
    stage = np.repeat([0, 1, 2], n)
    q = np.full(3 * n, 0.2)
    won = np.zeros(3 * n, dtype=bool)
    won[2 * n : 2 * n + int(0.4 * n)] = True  # the last stage wins twice what the model expects, the others never
    won[:1] = True  # (one win in the first stage)
    f = F._horizon_factors(_replay(stage, q, won, np.full(3 * n, 1_000.0)), prior=0.0)
    (h,) = f
    factors = f[h]
    assert len(factors) == 4  # three open stages and one for a deal of unknown stage: the horizon's
    overall = won.sum() / q.sum()
    assert factors[3] == pytest.approx(overall)
    assert factors[2] > overall > factors[1] >= 0  # the stage that wins more gets more
    # shrunk: STAGE_FACTOR_PRIOR expected wins of the horizon's factor behind each stage's own
    k = F.STAGE_FACTOR_PRIOR
    expected_2 = (won[2 * n :].sum() * 4 + k * overall) / (q[2 * n :].sum() * 4 + k)
    assert factors[2] == pytest.approx(expected_2)
    assert factors[2] < won[2 * n :].sum() / q[2 * n :].sum()


def test_the_amount_ratio_carries_discounts_at_signature():
    n = 200
    stage = np.full(n, 1)
    q = np.full(n, 0.5)
    won = np.arange(n) % 2 == 0
    replay = _replay(stage, q, won, np.full(n, 1_000.0))
    replay = replay._replace(y=replay.y * 0.9)  # every won deal signed 10% below its amount at the replay
    (factor,) = F._horizon_factors(replay, prior=0.0).values()
    assert factor[1] == pytest.approx(0.9)  # wins as expected, amounts 10% lower


def test_a_deal_of_unknown_stage_gets_the_horizons_factor():
    f = {5: np.array([2.0, 3.0, 1.5])}
    q = np.array([0.1, 0.1, 0.5, 0.9])
    out = F._calibrated(q, f, 5, np.array([0, 1, -1, 1]))
    np.testing.assert_allclose(out, [0.2, 0.3, 0.75, 1.0])  # capped at 1
    np.testing.assert_allclose(F._calibrated(q, f, 6, np.zeros(4, dtype=np.int64)), q)  # no factor: as is


def test_replays_without_a_win_give_factors_below_one_and_no_amount_ratio():
    n = 50
    replay = _replay(np.full(n, 0), np.full(n, 0.1), np.zeros(n, dtype=bool), np.full(n, 1_000.0))
    (factor,) = F._horizon_factors(replay, prior=0.5).values()
    unit = n * 0.1  # the wins expected of one replay
    overall = (0.5 * unit) / (4 * unit + 0.5 * unit)
    assert factor[-1] == pytest.approx(overall)  # the amount ratio is 1 without a won deal to learn it from
    assert 0 < factor[0] < overall
