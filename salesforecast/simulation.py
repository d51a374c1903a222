"""Monte Carlo distribution of a period's bookings.

The bookings of a period, seen from a cutoff date inside it, are

    closed-won to date  +  sum over open deals of amount_i * B_i  +  N

with ``B_i`` ~ Bernoulli(p_i), ``p_i`` the probability that deal ``i`` is won before the period ends, and ``N``
the bookings of deals not yet created at the cutoff but created and won before the period ends. Deals are not
independent in practice: a strong or weak quarter lifts or sinks all of them together (budget freezes, a
competitor's launch, the economy). A shared, period-level shock ``u`` multiplies every deal's probability in a
simulated future (``u`` lognormal with mean 1 and log-sd ``shock_sd``; probabilities capped at 1), so that the
interval is not overconfident. ``N`` is drawn from the new-deal bookings of past periods over the same remaining
window (one past period per simulated future, the same for every group, so the totals add up).

`simulate_bookings` draws the futures and sums them per group; every grouping (total, team, owner) is summed from
the same draws, so a team's samples are the sums of its owners' samples.

The model behind the probabilities is never perfect, and the data may shift (win rates that fall between years, a
short history): the backtest calibrates the interval on its own earlier periods (`salesforecast.forecast`,
``IntervalCalibration``) and stretches the simulated futures about their mean by the widening it finds
(`widen_samples`). Limits of an interval reach the reader as an `IntervalWarning`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["IntervalWarning", "simulate_bookings", "widen_samples"]


class IntervalWarning(UserWarning):
    """A forecast interval rests on little (few earlier periods) or held past outcomes too rarely or too often."""


def simulate_bookings(
    amount: Any,
    probability: Any,
    codes: Any,
    n_groups: int,
    base: Any | None = None,
    new_deals: Any | None = None,
    shock_sd: float = 0.0,
    n_sims: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> np.ndarray:
    """Simulate the bookings of a period per group.

    Parameters
    ----------
    amount, probability : array-like of shape (n_deals,)
        Each open deal's amount and probability of being won before the period ends (missing: 0).
    codes : array-like of int, shape (n_deals,) or (n_groupings, n_deals)
        The group of each deal in each grouping, as codes in ``[0, n_groups)`` (codes of several groupings are
        offset so that they do not overlap; a deal counts once in every grouping).
    n_groups : int
        Number of group codes.
    base : array-like of shape (n_groups,), optional
        Bookings already certain (closed won to date) per group.
    new_deals : array-like of shape (n_periods, n_groups), optional
        Bookings of deals created and won within the remaining window, in each of some past periods; each
        simulated future draws one row.
    shock_sd : float
        Log-sd of the shared multiplicative shock on the probabilities (0: deals independent).
    n_sims : int
        Number of simulated futures.
    rng : numpy Generator or seed

    Returns
    -------
    numpy.ndarray
        Shape ``(n_groups, n_sims)``: simulated bookings.

    Examples
    --------
    >>> s = simulate_bookings([100.0, 50.0], [1.0, 0.0], [0, 1], n_groups=2, base=[10.0, 0.0], n_sims=5)
    >>> s[:, 0].tolist()
    [110.0, 0.0]
    """
    rng = np.random.default_rng(rng)
    a = np.asarray(amount, dtype="float64")
    p = np.nan_to_num(np.asarray(probability, dtype="float64"), nan=0.0)
    c = np.atleast_2d(np.asarray(codes, dtype=np.int64))
    if c.shape[1] != len(a) or len(p) != len(a):
        raise ValueError(f"amount ({len(a)}), probability ({len(p)}) and codes ({c.shape[1]}) differ in length")
    if len(a) and (c.min() < 0 or c.max() >= n_groups):
        raise ValueError(f"codes must lie in [0, {n_groups}); got {c.min()}..{c.max()}")
    if not np.isfinite(shock_sd) or shock_sd < 0:
        raise ValueError(f"shock_sd must be a number >= 0, got {shock_sd!r}")
    out = np.zeros((n_groups, n_sims))
    if base is not None:
        out += np.asarray(base, dtype="float64")[:, None]
    # only deals that can be won draw random numbers: adding or removing a deal with probability 0 (or an unknown
    # stage) changes no other deal's draws
    live = p > 0
    a, p, c = a[live], p[live], c[:, live]
    if len(a):
        shock = np.exp(shock_sd * rng.standard_normal(n_sims) - shock_sd**2 / 2) if shock_sd > 0 else np.ones(n_sims)
        out += _simulate_pipeline(np.nan_to_num(a), p, c, n_groups, shock, rng)
    if new_deals is not None:
        nd = np.atleast_2d(np.asarray(new_deals, dtype="float64"))
        if nd.size and nd.shape[0] > 0:
            if nd.shape[1] != n_groups:
                raise ValueError(f"new_deals has {nd.shape[1]} groups, expected {n_groups}")
            out += nd[rng.integers(0, nd.shape[0], n_sims)].T
    return out


#: Most deals drawn per block (x n_sims uniforms): a block's arrays stay in the processor's cache.
_BLOCK_DEALS = 512


def _simulate_pipeline(
    a: np.ndarray, p: np.ndarray, c: np.ndarray, n_groups: int, shock: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(n_groups, n_sims): sum per group of the amounts of the deals won in each simulated future.

    Deals are taken cell by cell (a cell: deals with the same group in every grouping), in blocks of at most
    `_BLOCK_DEALS` deals of one cell. A block draws its uniforms (float32: 24 bits are plenty against a
    probability; a deal is won when its uniform is below ``p * shock``, so always when that reaches 1), and its won
    amounts are summed per simulated future by a matrix-vector product; the cells are added to their groups at the
    end. The draws depend only on the deals, their order within a cell and the cells' order (by group codes), so a
    deal that cannot be won, left out before, changes nothing.
    """
    n_sims = len(shock)
    cells, cell_of = np.unique(c, axis=1, return_inverse=True)  # cells sorted by their group codes
    cell_of = np.asarray(cell_of).reshape(-1)
    order = np.argsort(cell_of, kind="stable")
    a, p, cell_of = a[order], p[order], cell_of[order]
    bounds = np.flatnonzero(np.r_[True, cell_of[1:] != cell_of[:-1], True])
    sums = np.zeros((cells.shape[1], n_sims))
    shock32 = shock.astype(np.float32)
    p32 = p.astype(np.float32)
    for cell, (lo_cell, hi_cell) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):  # a loop over cells
        for lo in range(lo_cell, hi_cell, _BLOCK_DEALS):  # and over blocks of a large cell
            hi = min(lo + _BLOCK_DEALS, hi_cell)
            won = rng.random((hi - lo, n_sims), dtype=np.float32) < p32[lo:hi, None] * shock32[None, :]
            sums[cell] += a[lo:hi] @ won.astype(np.float64)
    out = np.zeros((n_groups, n_sims))
    for row in cells:  # a loop over groupings: each cell adds to one group of each
        np.add.at(out, row, sums)
    return out


def widen_samples(samples: Any, widening: Any, floor: Any | None = None) -> np.ndarray:
    """Stretch simulated futures about their mean: ``max(floor, mean + k * (x - mean))`` per group.

    The transformation is monotone, so every quantile moves the same way: the P10-P90 of the result is the
    P10-P90 of `samples` stretched by ``k`` about the mean (``k > 1`` widens, ``k < 1`` narrows), and cut at
    `floor` (bookings never fall below what is already won). The mean is kept unless the floor cuts.

    Parameters
    ----------
    samples : array-like of shape (n_groups, n_sims)
        Simulated bookings (`simulate_bookings`).
    widening : float or array-like of shape (n_groups,)
        ``k`` per group (at least 0).
    floor : float or array-like of shape (n_groups,), optional
        The least value of each group (e.g. its closed won to date).

    Returns
    -------
    numpy.ndarray
        Same shape as `samples`.

    Examples
    --------
    >>> widen_samples([[90.0, 100.0, 110.0]], 2.0).tolist()
    [[80.0, 100.0, 120.0]]
    >>> widen_samples([[90.0, 100.0, 110.0]], 2.0, floor=[85.0]).tolist()
    [[85.0, 100.0, 120.0]]
    """
    x = np.atleast_2d(np.asarray(samples, dtype="float64"))
    k = np.broadcast_to(np.asarray(widening, dtype="float64"), (x.shape[0],))
    if not np.all(np.isfinite(k)) or np.any(k < 0):
        raise ValueError(f"widening must be finite numbers >= 0, got {widening!r}")
    mean = x.mean(axis=1, keepdims=True)
    out = mean + k[:, None] * (x - mean)
    if floor is not None:
        out = np.maximum(out, np.broadcast_to(np.asarray(floor, dtype="float64"), (x.shape[0],))[:, None])
    return out
