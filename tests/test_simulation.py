"""Monte Carlo bookings: exact cases, moments against the closed form, the shared shock, group sums."""

import numpy as np
import pytest

from salesforecast.simulation import simulate_bookings, widen_samples


def test_certain_deals_are_exact():
    s = simulate_bookings([100.0, 50.0, 7.0], [1.0, 0.0, 1.0], [0, 1, 1], n_groups=2, base=[10.0, 1.0], n_sims=50)
    assert s.shape == (2, 50)
    assert np.all(s[0] == 110.0) and np.all(s[1] == 8.0)


def test_mean_and_variance_match_the_bernoulli_sum():
    rng = np.random.default_rng(0)
    a = rng.lognormal(10, 1, 300)
    p = rng.uniform(0, 1, 300)
    s = simulate_bookings(a, p, np.zeros(300, dtype=int), n_groups=1, n_sims=20_000, rng=1)[0]
    mean, var = np.sum(a * p), np.sum(a * a * p * (1 - p))
    assert abs(s.mean() - mean) < 4 * np.sqrt(var / len(s))
    assert s.var() == pytest.approx(var, rel=0.05)


def test_shock_widens_the_distribution_and_keeps_the_mean():
    a = np.full(500, 1000.0)
    p = np.full(500, 0.3)
    codes = np.zeros(500, dtype=int)
    calm = simulate_bookings(a, p, codes, 1, n_sims=20_000, rng=2)[0]
    shocked = simulate_bookings(a, p, codes, 1, shock_sd=0.3, n_sims=20_000, rng=2)[0]
    assert shocked.std() > 2 * calm.std()
    assert shocked.mean() == pytest.approx(calm.mean(), rel=0.02)


def test_groupings_come_from_the_same_draws():
    rng = np.random.default_rng(3)
    n = 200
    owner = rng.integers(0, 5, n)
    team = owner // 3  # owners 0-2 in team 0, 3-4 in team 1
    codes = np.vstack([np.zeros(n, dtype=int), 1 + team, 3 + owner])  # total | 2 teams | 5 owners
    s = simulate_bookings(rng.uniform(1, 10, n), rng.uniform(0, 1, n), codes, 8, n_sims=300, rng=4)
    np.testing.assert_allclose(s[1] + s[2], s[0])
    np.testing.assert_allclose(s[3:].sum(axis=0), s[0])
    np.testing.assert_allclose(s[3:6].sum(axis=0), s[1])


def test_new_deals_draw_whole_past_periods():
    nd = np.array([[100.0, 60.0, 40.0], [10.0, 10.0, 0.0]])  # total, then two groups
    codes = np.vstack([np.zeros(0, dtype=int), np.zeros(0, dtype=int)])
    s = simulate_bookings([], [], codes, 3, new_deals=nd, n_sims=400, rng=5)
    assert set(np.unique(s[0])) == {10.0, 100.0}
    np.testing.assert_allclose(s[1] + s[2], s[0])


def test_same_seed_same_draws_and_clear_errors():
    args = ([5.0, 6.0], [0.5, 0.5], [0, 0], 1)
    np.testing.assert_array_equal(simulate_bookings(*args, rng=9), simulate_bookings(*args, rng=9))
    with pytest.raises(ValueError, match="codes must lie"):
        simulate_bookings([1.0], [0.5], [3], 2)
    with pytest.raises(ValueError, match="differ in length"):
        simulate_bookings([1.0, 2.0], [0.5], [0, 0], 1)
    with pytest.raises(ValueError, match="shock_sd"):
        simulate_bookings([1.0], [0.5], [0], 1, shock_sd=-1)


def test_deals_that_cannot_win_draw_no_random_numbers():
    base = simulate_bookings([5.0, 6.0, 7.0], [0.5, 0.3, 0.9], [0, 0, 0], 1, rng=3)
    more = simulate_bookings([5.0, 99.0, 6.0, 7.0], [0.5, 0.0, 0.3, 0.9], [0, 0, 0, 0], 1, rng=3)
    np.testing.assert_array_equal(base, more)


def test_widen_samples_stretches_every_quantile_about_the_mean():
    rng = np.random.default_rng(5)
    s = rng.normal(1000.0, 100.0, (2, 5000))
    out = widen_samples(s, [1.5, 0.5])
    for g, k in enumerate((1.5, 0.5)):
        mean = s[g].mean()
        assert out[g].mean() == pytest.approx(mean, rel=1e-12)
        q, q_out = np.quantile(s[g], [0.1, 0.9]), np.quantile(out[g], [0.1, 0.9])
        np.testing.assert_allclose(q_out - mean, k * (q - mean), rtol=1e-9)


def test_widen_samples_never_goes_below_the_floor_and_checks_its_input():
    s = np.array([[100.0, 110.0, 150.0, 240.0]])
    out = widen_samples(s, 3.0, floor=[100.0])
    assert out.min() == 100.0 and out[0, -1] == pytest.approx(150.0 + 3.0 * 90.0)
    assert np.array_equal(widen_samples(s, 1.0, floor=[100.0]), s)
    with pytest.raises(ValueError, match="widening"):
        widen_samples(s, -1.0)
    with pytest.raises(ValueError, match="widening"):
        widen_samples(s, np.nan)
