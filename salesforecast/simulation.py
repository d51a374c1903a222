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
the same draws, so a team's samples are the sums of its owners' samples. `simulate_bookings_parts` does the same
over deals split into parts (the partitions of `salesforecast.scale`, each on its worker): the shock and the
past period of each future are drawn once and shared, each part draws its own deals from its own stream, and the
parts' futures are added.

The model behind the probabilities is never perfect, and the data may shift (win rates that fall between years, a
short history): the backtest calibrates the interval on its own earlier periods (`salesforecast.forecast`,
``IntervalCalibration``) and stretches the simulated futures about their mean by the widening it finds
(`widen_samples`). Limits of an interval reach the reader as an `IntervalWarning`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from salesforecast._utils import LocalTasks

__all__ = [
    "IntervalWarning",
    "bookings_from_parts",
    "draw_part",
    "part_streams",
    "simulate_bookings",
    "simulate_bookings_parts",
    "widen_samples",
]


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
    _check_shock(shock_sd)
    a, p, c = _live_deals(amount, probability, codes, n_groups)
    out = _base(base, n_groups, n_sims)
    if len(a):
        out += _simulate_pipeline(a, p, c, n_groups, _shock(shock_sd, n_sims, rng), rng)
    return out + _new_deals(new_deals, n_groups, n_sims, rng)


def _check_shock(shock_sd: float) -> None:
    if not np.isfinite(shock_sd) or shock_sd < 0:
        raise ValueError(f"shock_sd must be a number >= 0, got {shock_sd!r}")


def _live_deals(amount: Any, probability: Any, codes: Any, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The deals that can be won (probability > 0): amount, probability, codes (checked)."""
    a = np.asarray(amount, dtype="float64")
    p = np.nan_to_num(np.asarray(probability, dtype="float64"), nan=0.0)
    c = np.atleast_2d(np.asarray(codes, dtype=np.int64))
    if c.shape[1] != len(a) or len(p) != len(a):
        raise ValueError(f"amount ({len(a)}), probability ({len(p)}) and codes ({c.shape[1]}) differ in length")
    if len(a) and (c.min() < 0 or c.max() >= n_groups):
        raise ValueError(f"codes must lie in [0, {n_groups}); got {c.min()}..{c.max()}")
    # only deals that can be won draw random numbers: adding or removing a deal with probability 0 (or an unknown
    # stage) changes no other deal's draws
    live = p > 0
    return np.nan_to_num(a[live]), p[live], c[:, live]


def _base(base: Any, n_groups: int, n_sims: int) -> np.ndarray:
    out = np.zeros((n_groups, n_sims))
    if base is not None:
        out += np.asarray(base, dtype="float64")[:, None]
    return out


def _shock(shock_sd: float, n_sims: int, rng: np.random.Generator) -> np.ndarray:
    """The shared shock of each future: lognormal with mean 1 and log-sd `shock_sd` (ones at 0, no draw)."""
    return np.exp(shock_sd * rng.standard_normal(n_sims) - shock_sd**2 / 2) if shock_sd > 0 else np.ones(n_sims)


def _new_deals(new_deals: Any, n_groups: int, n_sims: int, rng: np.random.Generator) -> np.ndarray | float:
    """Per future, the new-deal bookings of one past period drawn at random (0 without any)."""
    if new_deals is None:
        return 0.0
    nd = np.atleast_2d(np.asarray(new_deals, dtype="float64"))
    if not nd.size or nd.shape[0] == 0:
        return 0.0
    if nd.shape[1] != n_groups:
        raise ValueError(f"new_deals has {nd.shape[1]} groups, expected {n_groups}")
    return nd[rng.integers(0, nd.shape[0], n_sims)].T


def part_streams(
    shock_sd: float, n_sims: int, rng: np.random.Generator, n_parts: int
) -> tuple[np.ndarray, list[np.random.SeedSequence]]:
    """What every part of `simulate_bookings_parts` shares: each future's shock, and a seed per part.

    Drawn from `rng` in this order (the shock, then the parts' seeds); the new deals are drawn after the parts'
    draws (`bookings_from_parts`).
    """
    _check_shock(shock_sd)
    shock = _shock(shock_sd, n_sims, rng)
    return shock, np.random.SeedSequence(int(rng.integers(2**63))).spawn(n_parts)


def draw_part(amount: Any, probability: Any, codes: Any, n_groups: int, shock: np.ndarray, seed: Any) -> np.ndarray:
    """One part's deals won in every future under the shared `shock`, from its own stream: ``(n_groups, n_sims)``."""
    a, p, c = _live_deals(amount, probability, codes, n_groups)
    if not len(a):
        return np.zeros((n_groups, len(shock)))
    return _simulate_pipeline(a, p, c, n_groups, shock, np.random.default_rng(seed))


def bookings_from_parts(
    drawn: Any, n_groups: int, base: Any, new_deals: Any, n_sims: int, rng: np.random.Generator
) -> np.ndarray:
    """The futures of `simulate_bookings_parts`: `base`, plus every part's draws, plus a past period's new deals."""
    out = _base(base, n_groups, n_sims)
    for d in drawn:  # in the parts' order
        out += d
    return out + _new_deals(new_deals, n_groups, n_sims, rng)


def _part_draws(part: Any, seed: Any, n_groups: int, shock: np.ndarray) -> np.ndarray:
    """Task: `draw_part` of a part given as ``(amount, probability, codes)``."""
    amount, probability, codes = part
    return draw_part(amount, probability, codes, n_groups, shock, seed)


def simulate_bookings_parts(
    parts: Sequence[Any],
    n_groups: int,
    base: Any | None = None,
    new_deals: Any | None = None,
    shock_sd: float = 0.0,
    n_sims: int = 1000,
    rng: np.random.Generator | int | None = 0,
    tasks: Any = None,
) -> np.ndarray:
    """`simulate_bookings` over deals split into parts, each part drawn where it lives.

    The shared shock of each future and its past period of new deals are drawn once, here; each part draws its
    deals' wins under that shock from its own stream (``numpy.random.SeedSequence`` spawned from `rng`, one child
    per part: `part_streams`, `draw_part`), and the parts' futures are added (`bookings_from_parts`). The futures
    follow the same distribution as `simulate_bookings`'s of all the deals (the deals are independent given the
    shock); for a given number of parts and seed they are the same wherever the parts run, but they are not the
    same draws as one process's, nor as another number of parts': their quantiles agree within Monte Carlo error.

    Parameters
    ----------
    parts : sequence
        Per part, its ``(amount, probability, codes)`` as `simulate_bookings` takes them (codes among all parts'
        `n_groups`), or the handle `tasks` has for it (a future on a Dask worker).
    n_groups, base, new_deals, shock_sd, n_sims, rng
        As `simulate_bookings`.
    tasks : optional
        Where the parts' draws run (`salesforecast._utils.LocalTasks`, the default, or
        `salesforecast.scale.DaskTasks`).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_groups, n_sims)``.

    Examples
    --------
    >>> parts = [([100.0], [1.0], [0]), ([50.0, 20.0], [0.0, 1.0], [1, 0])]
    >>> simulate_bookings_parts(parts, 2, base=[10.0, 0.0], n_sims=3)[:, 0].tolist()
    [130.0, 0.0]
    """
    tasks = LocalTasks() if tasks is None else tasks
    rng = np.random.default_rng(rng)
    shock, seeds = part_streams(shock_sd, n_sims, rng, len(parts))
    drawn = tasks.sum(tasks.map(_part_draws, parts, seeds, n_groups=n_groups, shock=shock))  # added where they are
    return bookings_from_parts([drawn], n_groups, base, new_deals, n_sims, rng)


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
    # each grouping's codes above the last one's (as `salesforecast.forecast` numbers them): a cell at a time adds to
    # every group in the order add.at would
    if (cells.max(axis=1)[:-1] < cells.min(axis=1)[1:]).all():
        for j in range(cells.shape[1]):
            out[cells[:, j]] += sums[j]
        return out
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
