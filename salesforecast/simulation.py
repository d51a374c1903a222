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
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

__all__ = ["simulate_bookings"]


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
        won = rng.random((len(a), n_sims)) < np.minimum(p[:, None] * shock[None, :], 1.0)
        rows = c.ravel()
        cols = np.tile(np.arange(len(a)), c.shape[0])
        membership = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_groups, len(a)))
        out += membership @ (won * np.nan_to_num(a)[:, None])
    if new_deals is not None:
        nd = np.atleast_2d(np.asarray(new_deals, dtype="float64"))
        if nd.size and nd.shape[0] > 0:
            if nd.shape[1] != n_groups:
                raise ValueError(f"new_deals has {nd.shape[1]} groups, expected {n_groups}")
            out += nd[rng.integers(0, nd.shape[0], n_sims)].T
    return out
