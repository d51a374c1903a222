"""Stage conversion learned from stage history: transitions, win probabilities, time in stage.

`StageConversionModel` treats a deal's path through the sales process as a semi-Markov process: a sequence of
*visits* to open stages, each with a duration and a next stage, ending in a won or a lost stage.

Estimator
---------
Visits
    Each opportunity's history (`salesforecast.history.DealHistory`) is collapsed into runs of the same stage:
    history rows that only change the amount or the close date are not transitions. A visit starts when the deal
    enters an open stage and ends at the next change of stage, which may be a skip, a regression or a close.
    Visits still open at the data's ``as_of`` are *censored*: their duration is known to exceed ``as_of - entered``
    but their next stage is not known yet.
Transitions (the embedded jump chain) and why censoring needs care
    Where a visit goes depends on how long it lasted (in the generator behind `salesforecast.datasets.generate`,
    long visits lose twice as often). Dropping the censored visits would over-represent short visits among recent
    ones (a recent visit is only complete when it was short), so the loss rate would come out too low. The model
    uses the competing-risks life table instead (the actuarial form of the Aalen-Johansen estimator): per open
    stage, visit durations are grouped into ``duration_bins`` bins at quantiles of the stage's observed durations;
    in bin ``b`` with ``n_b`` visits at risk and ``d_bj`` ending in stage ``j``, the cause-specific hazard is
    ``h_bj = d_bj / r_b``, ``S_{b+1} = S_b (1 - sum_j h_bj)`` and the cumulative incidence ``F_j`` grows by
    ``S_b h_bj``. The risk set ``r_b`` is ``n_b`` less, for each visit censored in the bin, the share of the bin's
    events that came after its censoring (the actuarial ``n_b - c_b / 2`` when both are spread evenly; exact
    when a censoring falls before or after all of the bin's events). The transition row is ``P_sj = F_j`` at the
    longest duration; the little mass left by visits censored in the last bin is given to the destinations of
    that bin (the longest visits). With no censoring this is exactly the
    share of completed visits going to each stage. Censoring at the data end is independent of how a visit
    evolves, so the estimator is consistent where dropping censored visits is not (on 200,000 generated deals,
    dropping them overstates every win probability by about 0.002, more than the bootstrap half-width; the life
    table is within it).
Time in stage
    The same life table, read as a survival curve: censored visits count as at risk up to their censoring time
    (neither dropped, which would shorten the tail, nor counted as completed). Inside a bin durations are spread
    uniformly; the last bin is open-ended, with a constant hazard (events over days at risk in it), so the tail
    decays exponentially instead of stopping at the longest visit seen.
Win probability and time to close
    With ``Q`` the open-to-open part of ``P`` and ``R`` the open-to-terminal part, the fundamental matrix is
    ``N = (I - Q)^-1``, the absorption probabilities ``B = N R`` and the win probability of a stage the sum of
    ``B`` over the won stages. The mean holding time ``m_s`` of a stage is the area under its life-table survival
    curve; the expected days to close are ``N m``.
Confidence intervals
    A Poisson bootstrap over opportunities: each replicate gives every opportunity a Poisson(1) weight, which
    multiplies all its visits (so the regressions and repeated visits of one deal move together). The life-table
    counts of a replicate are one sparse matrix product (life-table cells x opportunities times opportunities x
    replicates), so there is no loop over deals; the interval is the percentile interval of the replicates.
Time already spent in the stage
    ``P(next = j | visit lasted at least d) = (P_sj - F_j(d)) / S(d)`` comes from the same life table at each bin
    edge ``d``; chained with the (fresh-visit) win probabilities of the next stages, it gives the win probability
    of a deal that has sat ``d`` days in its stage, with no assumed shape. Between edges it is interpolated
    linearly in ``d``; beyond the last edge with at least 10 (weighted) visits still at risk it stays constant.
Time to win
    ``W_j(t)``, the probability of winning within ``t`` days of entering stage ``j``, solves the Markov renewal
    equation ``W_j = F_{j,won} + sum_k dF_jk * W_k`` on a half-day grid (FFT convolutions, iterated to
    convergence); a deal that has sat ``d`` days in stage ``s`` is won within ``h`` days with probability
    ``[F_{s,won}(d + h) - F_{s,won}(d) + sum_k (dF_sk(d + .) * W_k)(h)] / S_s(d)``, with ``F`` piecewise linear
    inside the bins and exponential in the last one (see "Time in stage"). Horizons beyond ten years are
    evaluated at ten years.
Segments
    With ``segment`` set, each segment gets its own life table, shrunk toward the overall one with ``shrinkage``
    pseudo-visits: ``F_g <- (n_g F_g + k F) / (n_g + k)`` (``n_g`` the segment's weighted visits to the stage).
    Its transition rows are then the posterior mean under a Dirichlet prior with ``k`` pseudo-counts centred on the
    overall row, and the duration-dependent quantities are shrunk coherently with them.
Window and recency
    ``window_months`` keeps the visits that *entered* their stage in the last ``window_months`` months before
    ``as_of`` (visits still open are censored). Selecting on the entry time, not on the close, keeps the estimator
    unbiased: "deals closed in the window" would keep only deals that were fast enough to close in it.
    ``half_life_days`` weights each visit by ``0.5 ** (age / half_life_days)``, its age measured from its entry
    (again not from its end, which would favour long visits).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from salesforecast._utils import DAY_US, NEVER, LocalTasks, to_us
from salesforecast.history import DealHistory, Visits
from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData, validate

__all__ = ["StageConversionModel", "stage_visits"]

#: Weighted visits that must still be at risk at a duration for the model to condition on it.
_MIN_AT_RISK = 10.0
#: Step (days) of the time grid of `StageConversionModel.predict_close_within`.
_GRID_DAYS = 0.5
#: Longest horizon (days) `StageConversionModel.predict_close_within` computes; longer ones are evaluated at it.
_MAX_HORIZON_DAYS = 3653.0


# ------------------------------------------------------------------------------------------------ visits
def stage_visits(data: CRMData, as_of: Any = None) -> pd.DataFrame:
    """Each opportunity's visits to open stages, as `StageConversionModel` sees them.

    Consecutive history rows in the same stage form one visit (rows that only move the close date or the amount
    are not transitions); skips, regressions and closes end a visit.

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        The data end (default ``data.as_of``): changes after it are ignored and visits open at it are censored.

    Returns
    -------
    pandas.DataFrame
        One row per visit, by opportunity and entry time: ``opportunity_id, stage, entered_at, next_stage``
        (missing while the visit is open), ``days`` (to the next stage, or to `as_of` for open visits) and
        ``censored`` (the visit was still open at `as_of`).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> v = stage_visits(load_sample())
    >>> v.columns.tolist()
    ['opportunity_id', 'stage', 'entered_at', 'next_stage', 'days', 'censored']
    >>> bool((v["stage"] != v["next_stage"]).all())
    True
    """
    as_of = data.as_of if as_of is None else pd.Timestamp(as_of)
    v = DealHistory.from_data(data).visits(as_of, known_only=False)
    names = np.asarray(data.process.stage_names, dtype=object)
    nxt = pd.Series(np.where(v.dest >= 0, names[np.maximum(v.dest, 0)], None), dtype="str")
    return pd.DataFrame(
        {
            "opportunity_id": data.opportunities["opportunity_id"].take(v.deal_pos[v.deal]).reset_index(drop=True),
            "stage": pd.Series(names[v.stage], dtype="str"),
            "entered_at": v.entered.view("datetime64[us]"),
            "next_stage": nxt,
            "days": v.days,
            "censored": v.dest < 0,
        }
    )


def _events_before(
    key_e: np.ndarray, dur_e: np.ndarray, w_e: np.ndarray, key_c: np.ndarray, dur_c: np.ndarray, dbits: int
) -> np.ndarray:
    """Per censoring ``(key_c, dur_c)``: the weight of the events of its bin at or before its duration.

    The events are sorted once by (bin, duration), packed in one integer with `dbits` bits of duration, and each
    censoring is placed among them by a binary search; the events of the earlier bins are then taken off.
    """
    if len(key_c) == 0 or len(key_e) == 0:
        return np.zeros(len(key_c))
    n_keys = int(max(key_e.max(), key_c.max())) + 1
    # (bin, duration, censored last) packed in one integer: an event comes before a censoring of its bin at the
    # same or a longer duration
    packed_c = _packed(key_c, dur_c, dbits) | 1
    packed_e = _packed(key_e, dur_e, dbits)
    # the weight of the events before each censoring (in its bin and every earlier one) ...
    if w_e.min() == w_e.max():  # one weight for all: counting is enough, no permutation to carry
        before_all = np.searchsorted(np.sort(packed_e), packed_c) * float(w_e[0])
    else:
        order = np.argsort(packed_e)
        cum = np.concatenate([[0.0], np.cumsum(w_e[order])])
        before_all = cum[np.searchsorted(packed_e[order], packed_c)]
    # ... less the events of the earlier bins
    per_bin = np.bincount(key_e, weights=w_e, minlength=n_keys)
    earlier = np.concatenate([[0.0], np.cumsum(per_bin)[:-1]])
    return before_all - earlier[key_c]


def _packed(key: np.ndarray, duration: np.ndarray, dbits: int) -> np.ndarray:
    """(bin, duration) in one integer, `dbits` bits of duration (and a free low bit), checked to fit."""
    if len(key) and (int(key.max()).bit_length() + dbits + 1 > 62 or key.min() < 0 or duration.min() < 0):
        raise ValueError("visit durations out of range (negative, or beyond a thousand years)")
    return (key.astype(np.int64) << (dbits + 1)) | (duration.astype(np.int64) << 1)


def _censored_index(key: np.ndarray, duration: np.ndarray, w: np.ndarray, dbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Censored visits sorted by (bin, duration), packed (`_packed`), and the cumulative sums of their weights."""
    packed = _packed(key, duration, dbits)
    order = np.argsort(packed, kind="stable")
    return packed[order], np.concatenate([[0.0], np.cumsum(w[order])])


def _deficit_sums(
    key_e: np.ndarray, dur_e: np.ndarray, w_e: np.ndarray, index: tuple[np.ndarray, np.ndarray], dbits: int, n: int
) -> np.ndarray:
    """Per bin: each event's weight times the weight of the bin's censored visits strictly before it, summed.

    A bin's censored visits miss from its risk set, together, this sum over the bin's total event weight (the sum of
    their `_deficit`s: a visit censored at ``c`` misses the events after ``c``). Sums over events, so those of parts
    of the events add up; `index` holds every part's censored visits (`_censored_index`).
    """
    packed_c, cum = index
    if len(key_e) == 0 or len(packed_c) == 0:
        return np.zeros(n)
    # the events in (bin, duration) order: the binary searches then walk the censored visits in order (6-10 times
    # faster than in the events' order, on a partition's few hundred thousand events)
    packed_e = _packed(key_e, dur_e, dbits)
    if w_e.min() == w_e.max():  # one weight for all: no permutation to carry
        packed_e, w_e = np.sort(packed_e), w_e[:1]
    else:
        order = np.argsort(packed_e)
        packed_e, w_e = packed_e[order], w_e[order]
    key_e = (packed_e >> (dbits + 1)).astype(np.intp)
    upto = cum[np.searchsorted(packed_c, packed_e, side="left")]  # censored strictly before: of its bin and earlier
    first = cum[np.searchsorted(packed_c, _packed(np.arange(n), np.zeros(n, dtype=np.int64), dbits), side="left")]
    return np.bincount(key_e, weights=w_e * (upto - first[key_e]), minlength=n)  # less those of earlier bins


def _deficit(before: np.ndarray, total: np.ndarray, w_c: np.ndarray) -> np.ndarray:
    """A censored visit's weight missing from its bin's risk set: the share of the bin's events (`total`) after it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        after = np.where(total > 0, 1.0 - before / total, 0.0)
    return w_c * np.clip(after, 0.0, 1.0)


def _risk_deficit(key: np.ndarray, duration: np.ndarray, dest: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weight by which each censored visit was missing from the risk set of the events of its bin.

    A visit censored at duration ``c`` (integer microseconds, >= 0) was at risk for the events of its bin (`key`)
    up to ``c`` and missing for the share of the bin's (weighted) events after ``c``; events at ``c`` itself count
    as before it. Events get 0.
    """
    ev = dest >= 0
    out = np.zeros(len(key))
    cens = np.flatnonzero(~ev)
    if len(cens) == 0 or not ev.any():
        return out
    dbits = int(duration.max()).bit_length()
    before = _events_before(key[ev], duration[ev], w[ev], key[cens], duration[cens], dbits)
    total = np.bincount(key[ev], weights=w[ev], minlength=int(key.max()) + 1)
    out[cens] = _deficit(before, total[key[cens]], w[cens])
    return out


def _life_table(events: np.ndarray, cens: np.ndarray, deficit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Competing-risks life table over the last two axes of the counts.

    Parameters
    ----------
    events : array (..., K, nb, S)
        Weighted visits of each stage ending in each duration bin with each next stage.
    cens : array (..., K, nb)
        Weighted censored visits per bin.
    deficit : array (..., K, nb)
        Per bin, the censored visits' absence from the risk set of the bin's events (`_risk_deficit`): the risk
        set of bin ``b`` is ``n_b - deficit_b`` (the actuarial ``n_b - c_b / 2`` when censoring and events are
        spread evenly in the bin; exact when a censoring falls before or after all of them).

    Returns
    -------
    F : array (..., K, nb + 1, S)
        Cumulative incidence at the bin edges; at the last edge it equals ``P``.
    P : array (..., K, S)
        Transition rows (NaN where a stage has no completed visit).
    observed : array (..., K) of bool
        The stage has at least one completed visit.
    """
    exits = events.sum(axis=-1) + cens
    at_risk = np.flip(np.cumsum(np.flip(exits, axis=-1), axis=-1), axis=-1)
    eff = at_risk - deficit
    safe = np.where(eff > 0, eff, 1.0)
    h = np.where(eff[..., None] > 0, events / safe[..., None], 0.0)
    factor = np.clip(1.0 - h.sum(axis=-1), 0.0, 1.0)
    ones = np.ones(factor.shape[:-1] + (1,))
    surv = np.concatenate([ones, np.cumprod(factor, axis=-1)], axis=-1)  # (..., K, nb + 1)
    dF = surv[..., :-1, None] * h
    zeros = np.zeros(dF.shape[:-2] + (1, dF.shape[-1]))
    F = np.concatenate([zeros, np.cumsum(dF, axis=-2)], axis=-2)
    f_end = F[..., -1, :]
    done = f_end.sum(axis=-1)
    observed = done > 0
    last = events[..., -1, :]
    last_sum = last.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        alloc = np.where(last_sum > 0, last / np.where(last_sum > 0, last_sum, 1.0), f_end / done[..., None])
        P = f_end + surv[..., -1:] * alloc
    P = np.where(observed[..., None], P, np.nan)
    F[..., -1, :] = P
    return F, P, observed


def _absorb(P: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental matrix ``N = (I - Q)^-1`` and absorption probabilities ``B = N R`` (batched over leading axes)."""
    q, r = P[..., :k], P[..., k:]
    a = np.eye(k) - q
    try:
        n = np.linalg.inv(a)
    except np.linalg.LinAlgError:
        n = np.linalg.pinv(a)
    return n, np.clip(n @ r, 0.0, 1.0)


#: Poisson(1) cumulative probabilities P(X <= x) for x = 0..12 (P(X > 12) < 1e-10).
_POISSON1_CDF = np.cumsum([math.exp(-1.0) / math.factorial(x) for x in range(13)])


def _poisson1(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Poisson(1) draws by inversion (a few comparisons per draw: faster than ``rng.poisson`` here)."""
    u = rng.random(shape, dtype=np.float32)
    out = np.zeros(shape, dtype=np.uint8)
    for c in _POISSON1_CDF[:-1].astype(np.float32):
        out += u > c
    return out.astype(np.float64)


def _tail_rate(
    events: np.ndarray, exposure: np.ndarray, at_risk: np.ndarray, fallback: np.ndarray | None = None
) -> np.ndarray:
    """Hazard of leaving a stage in its open-ended last duration bin: occurrences over exposure (per day).

    Without an event there, one pseudo-event over the exposure (or, with no exposure either, `fallback` or one per
    day) keeps the tail finite.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(events > 0, events / exposure, 1.0 / np.maximum(exposure, at_risk))
    rate = np.where(np.isfinite(rate) & (rate > 0), rate, np.nan)
    if fallback is not None:
        rate = np.where(np.isnan(rate), np.broadcast_to(fallback, rate.shape), rate)
    return np.where(np.isnan(rate), 1.0, rate)


def _fallback_rows(P: np.ndarray, observed: np.ndarray, default: np.ndarray) -> np.ndarray:
    """Rows without completed visits take `default` (the CRM probability split into won and lost)."""
    return np.where(observed[..., None], P, default)


# ------------------------------------------------------------------------------------------------ fit by parts
# A fit reads the visits of every deal, but all it needs of them are sums (cell counts, exposure, deal counts) once
# the duration bins are set. So the deals may be split into parts (the partitions of `salesforecast.scale`), each
# read where it lives: the tasks below run on one part each and only small results travel. Two quantities are not
# sums of the parts' own: the bin edges (quantiles of all the stage's durations: found as order statistics, by
# counting in every part) and the risk deficit of a censored visit (the events of its bin after it, in every part).
@dataclass(frozen=True, eq=False)
class _PartVisits:
    """One part's visits as the fit reads them (`_part_visits`), kept where the part lives between its tasks."""

    v: Visits  # the window applied
    w: np.ndarray  # per visit: its weight
    group: np.ndarray | None  # per visit: the code of its deal's segment among `labels` (-1 missing), or None
    labels: np.ndarray  # the segment values of this part's deals, in the column's order (`opportunity_codes`)
    ranks: np.ndarray | None  # a categorical column: each label's category position (its order); else None
    k: int
    n_all: int
    won_codes: np.ndarray
    lost_codes: np.ndarray
    # set by `_part_binned`, once the edges are known
    edges: np.ndarray | None = None
    bins: np.ndarray | None = None
    gvisit: np.ndarray | None = None  # per visit: its segment's code among all parts' (-1 missing)
    n_seg: int = 0

    @cached_property
    def by_stage(self) -> tuple[np.ndarray, np.ndarray]:
        """The durations sorted by stage then duration, and where each stage starts among them (``k + 1``)."""
        order = np.lexsort((self.v.duration, self.v.stage))
        return self.v.duration[order], np.searchsorted(self.v.stage[order], np.arange(self.k + 1))


def _part_visits(
    history: DealHistory,
    as_of: pd.Timestamp,
    window_months: float | None,
    half_life_days: float | None,
    segment: str | None,
) -> _PartVisits:
    """Task: the visits of a part's deals as known at `as_of`, in the window, with their weights and segments."""
    if segment is not None and segment not in history.opportunities.columns:
        raise ValueError(
            f"opportunities has no column {segment!r} to segment by; available: {list(history.opportunities.columns)}"
        )
    v = history.visits(as_of)
    t_end = to_us(as_of)
    if window_months is not None and len(v.stage):
        months = float(window_months)
        whole = int(months)
        start = as_of - pd.DateOffset(months=whole) - pd.Timedelta(days=(months - whole) * 30.4375)
        sel = v.entered >= to_us(start)
        if not sel.all():
            v = replace(
                v,
                deal=v.deal[sel],
                stage=v.stage[sel],
                dest=v.dest[sel],
                entered=v.entered[sel],
                days=v.days[sel],
                duration=v.duration[sel],
            )
    age = (t_end - v.entered) / DAY_US
    w = np.ones(len(v.stage)) if half_life_days is None else 0.5 ** (age / float(half_life_days))
    group, labels, ranks = None, np.empty(0, dtype=object), None
    if segment is not None:
        opp_codes, all_labels = history.opportunity_codes(segment)
        deal_codes = opp_codes[v.deal_pos]
        present = np.bincount(deal_codes[deal_codes >= 0], minlength=len(all_labels)) > 0  # among these deals
        group = np.append(np.cumsum(present) - 1, -1)[deal_codes][v.deal]
        labels = all_labels[present]
        dtype = history.opportunities[segment].dtype
        if isinstance(dtype, pd.CategoricalDtype):  # ordered by its categories, not by value
            ranks = np.asarray(dtype.categories.get_indexer(pd.Index(list(labels))), dtype=np.int64)
    return _PartVisits(
        v=v,
        w=w,
        group=group,
        labels=labels,
        ranks=ranks,
        k=history.k,
        n_all=len(history.process.stage_names),
        won_codes=history.won_codes,
        lost_codes=history.lost_codes,
    )


def _part_summary(p: _PartVisits, extremes: bool) -> dict[str, Any]:
    """Task: a part's visits per stage, its segment values and (with `extremes`) its shortest and longest visit."""
    out: dict[str, Any] = {"n": np.bincount(p.v.stage, minlength=p.k), "labels": p.labels, "ranks": p.ranks}
    if extremes:
        d, start = p.by_stage
        has = np.diff(start) > 0
        out["min"] = np.full(p.k, NEVER, dtype=np.int64)
        out["max"] = np.full(p.k, -1, dtype=np.int64)
        out["min"][has] = d[start[:-1][has]]
        out["max"][has] = d[start[1:][has] - 1]
    return out


def _segment_labels(summaries: list[dict[str, Any]]) -> np.ndarray:
    """Every part's segment values, in the order of the whole's codes (`DealHistory.opportunity_codes`).

    Sorted by value, or by category for a categorical column; one part's as they are.
    """
    if len(summaries) == 1:
        return summaries[0]["labels"]
    every = np.concatenate([s["labels"] for s in summaries])
    if summaries[0]["ranks"] is not None:
        ranks = np.concatenate([s["ranks"] for s in summaries])
        first = np.unique(ranks, return_index=True)[1]
        return every[first]
    return np.asarray(pd.factorize(every, sort=True)[1], dtype=object)


def _stage_edges(inner: np.ndarray, top_days: float) -> np.ndarray:
    """A stage's bin edges: 0, the inner quantiles, and just past the longest visit (never decreasing)."""
    return np.maximum.accumulate(np.concatenate([[0.0], inner, [top_days * (1.0 + 1e-9) + 1e-9]]))


def _part_edges(p: _PartVisits, nb: int) -> np.ndarray:
    """Task (one part holding every visit): the bin edges, per stage at quantiles of its durations."""
    edges = np.tile(np.linspace(0.0, 1.0, nb + 1), (p.k, 1))
    levels = np.arange(1, nb) / nb
    for s in range(p.k):  # a loop over stages
        d = p.v.days[p.v.stage == s]
        if len(d):
            edges[s] = _stage_edges(np.quantile(d, levels), float(d.max()))
    return edges


def _part_count_at_most(p: _PartVisits, stage: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Task: per row of `thresholds` (microseconds), the part's visits to `stage` of the row lasting at most each."""
    d, start = p.by_stage
    out = np.zeros(thresholds.shape, dtype=np.int64)
    for s in np.unique(stage):  # a loop over stages
        rows = stage == s
        out[rows] = np.searchsorted(d[start[s] : start[s + 1]], thresholds[rows], side="right")
    return out


def _order_statistics(
    tasks: Any, handles: list[Any], stage: np.ndarray, rank: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """The `rank`-th shortest duration (0-based) of each `stage` over all parts, exactly.

    Each round cuts every interval ``[lo, hi]`` still holding the answer at 255 points and counts, in every part,
    the visits at or below each; the interval of the first point with more than `rank` visits below holds it. A
    span of 2**47 microseconds (4 years) takes seven rounds.
    """
    lo, hi = lo.astype(np.int64).copy(), hi.astype(np.int64).copy()
    steps = np.arange(256, dtype=np.int64)
    while (open_ := lo < hi).any():
        rows = np.flatnonzero(open_)
        at = np.arange(len(rows))
        # the cut points lo + floor(span * j / 256), j = 0 .. 255 (integers: exact; span < 2**55)
        cuts = lo[rows, None] + ((hi[rows] - lo[rows])[:, None] * steps[None]) // 256
        counts = sum(tasks.gather(tasks.map(_part_count_at_most, handles, stage=stage[rows], thresholds=cuts)))
        enough = counts > rank[rows, None]
        found = enough.any(axis=1)
        first = enough.argmax(axis=1)
        # the answer is in (the cut before the first with enough, that cut]; or past the last cut
        lo[rows] = np.where(found, np.where(first > 0, cuts[at, first - 1] + 1, lo[rows]), cuts[:, -1] + 1)
        hi[rows] = np.where(found, cuts[at, first], hi[rows])
    return lo


def _quantile_edges(tasks: Any, handles: list[Any], summaries: list[dict[str, Any]], nb: int, k: int) -> np.ndarray:
    """The bin edges of `_part_edges` over parts, exactly.

    ``numpy.quantile`` of each stage's durations from its two order statistics per level (found by
    `_order_statistics`) and numpy's own interpolation between them: the same float as on the whole.
    """
    n = sum(s["n"] for s in summaries)
    low = np.min([s["min"] for s in summaries], axis=0)
    high = np.max([s["max"] for s in summaries], axis=0)
    if (high >= 2**55).any():  # the cuts' integer arithmetic (span x 255) needs spans below 2**55 microseconds
        raise ValueError("visit durations out of range (negative, or beyond a thousand years)")
    levels = np.arange(1, nb) / nb
    stages = np.flatnonzero(n > 0)
    virtual = (n[stages, None] - 1) * levels[None]  # numpy's "linear" method: (n - 1) q
    below = np.floor(virtual).astype(np.int64)
    gamma = virtual - below
    above = np.minimum(below + 1, n[stages, None] - 1)
    st = np.repeat(stages, 2 * len(levels))
    ranks = np.stack([below, above], axis=-1).reshape(len(stages), -1).ravel()
    values = _order_statistics(tasks, handles, st, ranks, low[st], high[st]).reshape(len(stages), len(levels), 2)
    edges = np.tile(np.linspace(0.0, 1.0, nb + 1), (k, 1))
    for i, s in enumerate(stages):  # a loop over stages
        days = values[i] / DAY_US
        inner = [np.quantile(days[j], gamma[i, j]) for j in range(len(levels))]
        edges[s] = _stage_edges(np.asarray(inner, dtype=np.float64), float(high[s] / DAY_US))
    return edges


def _part_binned(p: _PartVisits, edges: np.ndarray, labels: np.ndarray) -> _PartVisits:
    """Task: the part's visits binned by duration at `edges`, its segments coded among all parts' `labels`."""
    nb = edges.shape[1] - 1
    bins = np.zeros(len(p.v.stage), dtype=np.int64)
    for s in range(p.k):  # a loop over stages
        idx = np.flatnonzero(p.v.stage == s)
        if len(idx):
            bins[idx] = np.clip(np.searchsorted(edges[s], p.v.days[idx], side="right") - 1, 0, nb - 1)
    gvisit = None
    if p.group is not None:
        to_global = np.append(pd.Index(labels).get_indexer(pd.Index(p.labels)), -1).astype(np.int64)
        gvisit = to_global[p.group]
    return replace(p, edges=edges, bins=bins, gvisit=gvisit, n_seg=len(labels))


def _keys(p: _PartVisits) -> tuple[np.ndarray, np.ndarray]:
    """Per visit: its (stage, bin) cell, and its (segment, stage, bin) cell (-1 without a segment)."""
    nb = p.edges.shape[1] - 1
    sb = p.v.stage * nb + p.bins
    if p.gvisit is None:
        return sb, np.full(len(sb), -1, dtype=np.int64)
    return sb, np.where(p.gvisit >= 0, p.gvisit * (p.k * nb) + sb, -1)


def _part_censored(p: _PartVisits) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Task: the part's censored visits: their cell, their segment's cell, their duration and their weight."""
    sb, gsb = _keys(p)
    cens = p.v.dest < 0
    return sb[cens], gsb[cens], p.v.duration[cens], p.w[cens]


def _part_events_before(
    p: _PartVisits, key: np.ndarray, gkey: np.ndarray, duration: np.ndarray, dbits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Task: the part's events of each censored visit's bin (and its segment's bin) at or before it, of every part.

    With the part's events per bin and per segment's bin (the totals the shares are of).
    """
    sb, gsb = _keys(p)
    nb = p.edges.shape[1] - 1
    ev = p.v.dest >= 0
    w = p.w
    before = _events_before(sb[ev], p.v.duration[ev], w[ev], key, duration, dbits)
    total = np.bincount(sb[ev], weights=w[ev], minlength=p.k * nb)
    gev = ev & (gsb >= 0)
    gc = gkey >= 0
    gbefore = np.zeros(len(gkey))
    gbefore[gc] = _events_before(gsb[gev], p.v.duration[gev], w[gev], gkey[gc], duration[gc], dbits)
    gtotal = np.bincount(gsb[gev], weights=w[gev], minlength=p.n_seg * p.k * nb)
    return before, total, gbefore, gtotal


def _part_deficit_sums(
    p: _PartVisits, index: tuple[np.ndarray, np.ndarray], gindex: tuple[np.ndarray, np.ndarray], dbits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Task: the part's `_deficit_sums` per bin and per segment's bin against every part's censored visits.

    With the part's events per bin and per segment's bin (the totals the deficits are shares of). The part's work
    and answer follow its own events, not every part's censored visits (`_part_events_before`'s do).
    """
    sb, gsb = _keys(p)
    nb = p.edges.shape[1] - 1
    ev = p.v.dest >= 0
    w = p.w
    n, gn = p.k * nb, p.n_seg * p.k * nb
    sums = _deficit_sums(sb[ev], p.v.duration[ev], w[ev], index, dbits, n)
    total = np.bincount(sb[ev], weights=w[ev], minlength=n)
    gev = ev & (gsb >= 0)
    gsums = _deficit_sums(gsb[gev], p.v.duration[gev], w[gev], gindex, dbits, gn)
    gtotal = np.bincount(gsb[gev], weights=w[gev], minlength=gn)
    return sums, total, gsums, gtotal


def _part_statistics(
    p: _PartVisits, deficit: np.ndarray | None, gdeficit: np.ndarray | None, seed: Any, n_bootstrap: int
) -> dict[str, Any]:
    """Task: the part's sums the fit reads (every one additive over parts).

    `deficit` and `gdeficit` are its censored visits' risk deficits over all parts (None: the part holds every
    deal, and finds them itself). With `n_bootstrap`, the cell counts of each replicate, the part's deals drawn
    Poisson(1) weights from ``numpy.random.default_rng(seed)``.
    """
    v, w, k, n_all = p.v, p.w, p.k, p.n_all
    nb = p.edges.shape[1] - 1
    width = n_all + 2
    n_cells = k * nb * width
    sb, gsb = _keys(p)
    cell = sb * width + np.where(v.dest >= 0, v.dest, n_all)
    cens = v.dest < 0
    if deficit is None:
        deficit = _risk_deficit(sb, v.duration, v.dest, w)[cens]
    cell_all = np.concatenate([cell, sb[cens] * width + n_all + 1])
    w_all = np.concatenate([w, deficit])
    out: dict[str, Any] = {
        "counts": np.bincount(cell_all, weights=w_all, minlength=n_cells).reshape(k, nb, width),
    }
    # the last bin is open-ended: its exposure (days past its lower edge) and weighted visits
    in_tail = p.bins == nb - 1
    tail_x = w[in_tail] * (v.days[in_tail] - p.edges[v.stage[in_tail], nb - 1])
    out["tail_n"] = np.bincount(v.stage[in_tail], weights=w[in_tail], minlength=k)
    out["tail_exposure"] = np.bincount(v.stage[in_tail], weights=tail_x, minlength=k)
    out["visits"] = np.bincount(v.stage, minlength=k)
    out["censored"] = np.bincount(v.stage[cens], minlength=k)
    done = v.dest >= 0
    out["transitions"] = np.bincount(v.stage[done] * n_all + v.dest[done], minlength=k * n_all)
    # deal-level counts: deals that entered each stage, went on from it, closed, won
    pair = v.deal * k + v.stage
    seen = np.zeros(len(v.deal_pos) * k, dtype=bool)
    seen[pair] = True
    entered_pairs = np.flatnonzero(seen)
    later = ((v.dest > v.stage) & (v.dest < k)) | np.isin(v.dest, p.won_codes)
    seen[:] = False
    seen[pair[later]] = True
    conv_pairs = np.flatnonzero(seen)
    fin = v.final[entered_pairs // k]
    st = entered_pairs % k
    out["entered"] = np.bincount(st, minlength=k)
    out["converted"] = np.bincount(conv_pairs % k, minlength=k)
    out["closed"] = np.bincount(st[np.isin(fin, np.concatenate([p.won_codes, p.lost_codes]))], minlength=k)
    out["won"] = np.bincount(st[np.isin(fin, p.won_codes)], minlength=k)
    if p.gvisit is not None and p.n_seg:
        ok = gsb >= 0
        gc = ok & cens
        if gdeficit is None:
            gdeficit = _risk_deficit(gsb[ok], v.duration[ok], v.dest[ok], w[ok])[cens[ok]]
        out["gcounts"] = np.bincount(
            np.concatenate([p.gvisit[ok] * n_cells + cell[ok], gsb[gc] * width + n_all + 1]),
            weights=np.concatenate([w[ok], gdeficit]),
            minlength=p.n_seg * n_cells,
        ).reshape(p.n_seg, k, nb, width)
        tg = ok & in_tail
        g_tail = p.gvisit[tg] * k + v.stage[tg]
        g_x = w[tg] * (v.days[tg] - p.edges[v.stage[tg], nb - 1])
        out["g_tail_exposure"] = np.bincount(g_tail, weights=g_x, minlength=p.n_seg * k).reshape(p.n_seg, k)
        out["g_tail_n"] = np.bincount(g_tail, weights=w[tg], minlength=p.n_seg * k).reshape(p.n_seg, k)
    # the bootstrap over opportunities (Poisson weights; one sparse product per chunk of replicates)
    boot = np.zeros((n_cells, int(n_bootstrap)))  # cells x replicates, as the sparse product gives them
    if n_bootstrap and len(v.deal):
        rng = np.random.default_rng(seed)
        deal_col = np.cumsum(np.r_[True, v.deal[1:] != v.deal[:-1]]) - 1  # visits are sorted by deal
        n_used = int(deal_col[-1]) + 1
        M = sparse.csr_matrix((w_all, (cell_all, np.concatenate([deal_col, deal_col[cens]]))), shape=(n_cells, n_used))
        chunk = int(max(1, min(n_bootstrap, 4_000_000 // n_used)))
        for lo in range(0, int(n_bootstrap), chunk):  # a loop over chunks of replicates
            m = min(chunk, int(n_bootstrap) - lo)
            boot[:, lo : lo + m] = M @ _poisson1(rng, (n_used, m))
    out["bootstrap"] = boot
    return out


# ------------------------------------------------------------------------------------------------ the model
class StageConversionModel(BaseEstimator):
    """Stage-to-stage conversion, win probability and time in stage, learned from stage history.

    The estimator is described in the module docstring (`salesforecast.models.stage_conversion`): stage visits,
    a competing-risks life table per stage (censoring-aware), an absorbing Markov chain for win probabilities, a
    Poisson bootstrap over opportunities for their intervals, and the life table again for the dependence on the
    time already spent in a stage.

    Parameters
    ----------
    process : SalesProcess, path, "salesforce", "default" or None, optional
        The process map; None or ``"default"`` (`SalesProcess.is_default`): the one of the data passed to `fit`
        (with tables passed to `fit` instead of a CRMData: Salesforce's standard stages).
    window_months : float, optional
        Learn only from visits that entered their stage in the last `window_months` months before ``as_of``.
    half_life_days : float, optional
        Weight each visit by ``0.5 ** (days from its entry to as_of / half_life_days)``.
    segment : str, optional
        A column of opportunities (``"segment"``, ``"team"``...): fit one model per value, shrunk toward the
        overall model.
    shrinkage : float
        Pseudo-visits of the overall model added to each segment's (Dirichlet prior strength); 0 fits each
        segment alone.
    n_bootstrap : int
        Bootstrap replicates for `win_probability_ci_` (0: no intervals).
    ci : float
        Level of the intervals.
    duration_bins : int
        Bins of visit duration per stage, at quantiles of the stage's durations (completed and open visits), for
        the life table; their edges are also the points where the win probability given the days in stage is
        estimated (linear in between).
    random_state : int, numpy Generator or None
        Seed of the bootstrap.

    Attributes
    ----------
    process_ : SalesProcess
    as_of_ : pandas.Timestamp
        The data end: visits open then are censored.
    transition_matrix_ : pandas.DataFrame
        Open stages x all stages: probability that a visit to the row stage is followed by the column stage.
    transition_counts_ : pandas.DataFrame
        Completed (unweighted) transitions behind it, open stages x all stages.
    win_probability_ : pandas.Series
        Open stage -> probability of eventually winning from a fresh visit to it.
    win_probability_ci_ : pandas.DataFrame
        Columns ``lower, upper``: bootstrap percentile interval at level `ci` (NaN when ``n_bootstrap == 0``).
    absorption_probability_ : pandas.DataFrame
        Open stages x terminal stages (``B = N R``).
    fundamental_matrix_ : pandas.DataFrame
        ``N = (I - Q)^-1``: expected visits to each open stage (columns) from each (rows).
    expected_days_to_close_ : pandas.Series
        Open stage -> expected days from entering it to a won or lost stage (``N m``).
    time_in_stage_ : pandas.DataFrame
        Per open stage: ``visits, completed, censored, median_days, p75_days, p90_days, mean_days`` (life-table
        quantiles: censored visits count as at risk up to their censoring time; ``mean_days`` is restricted to the
        longest visit).
    n_visits_ : pandas.Series
        Open stage -> visits learned from (completed and censored).
    duration_edges_ : pandas.DataFrame
        Open stage x bin edge (days) of the life table.
    conditional_win_probability_ : pandas.DataFrame
        Long table ``stage, days, win_probability, at_risk, conditioned``: the win probability of a deal that has
        sat ``days`` in the stage, at each bin edge, with the weighted visits still at risk there; where fewer than
        10 are (``conditioned`` is False) the value of the last edge with enough is carried on.
    segment_win_probability_ : pandas.DataFrame or None
        Segment x open stage (with `segment` set).
    segment_transition_matrix_ : pandas.DataFrame or None
        Rows ``(segment, from_stage)``, columns all stages (with `segment` set).
    bootstrap_win_probability_ : pandas.DataFrame
        Replicate x open stage.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> model = StageConversionModel(n_bootstrap=50).fit(data)
    >>> model.win_probability_.round(2).head(3).tolist()
    [0.16, 0.21, 0.28]
    >>> bool((model.win_probability_ci_["lower"] <= model.win_probability_).all())
    True
    """

    def __init__(
        self,
        process: SalesProcess | str | None = None,
        window_months: float | None = None,
        half_life_days: float | None = None,
        segment: str | None = None,
        shrinkage: float = 20.0,
        n_bootstrap: int = 200,
        ci: float = 0.9,
        duration_bins: int = 20,
        random_state: Any = 0,
    ) -> None:
        self.process = process
        self.window_months = window_months
        self.half_life_days = half_life_days
        self.segment = segment
        self.shrinkage = shrinkage
        self.n_bootstrap = n_bootstrap
        self.ci = ci
        self.duration_bins = duration_bins
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        def positive(name: str) -> None:
            v = getattr(self, name)
            if v is not None and (
                not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0
            ):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}")

        positive("window_months")
        positive("half_life_days")
        s = self.shrinkage
        if not isinstance(s, numbers.Real) or isinstance(s, bool) or not s >= 0 or not math.isfinite(s):
            raise ValueError(f"shrinkage must be a number >= 0 (pseudo-visits), got {s!r}")
        b = self.n_bootstrap
        if not isinstance(b, numbers.Integral) or isinstance(b, bool) or b < 0:
            raise ValueError(f"n_bootstrap must be an integer >= 0, got {b!r}")
        if not isinstance(self.ci, numbers.Real) or not 0.0 < float(self.ci) < 1.0:
            raise ValueError(f"ci must be a level between 0 and 1 (e.g. 0.9), got {self.ci!r}")
        nb = self.duration_bins
        if not isinstance(nb, numbers.Integral) or isinstance(nb, bool) or nb < 1:
            raise ValueError(f"duration_bins must be a positive integer, got {nb!r}")
        if self.segment is not None and not isinstance(self.segment, str):
            raise ValueError(f"segment must be a column name of opportunities or None, got {self.segment!r}")

    def _resolve_data(
        self, data: CRMData | None, stage_history: pd.DataFrame | None, opportunities: pd.DataFrame | None
    ) -> CRMData:
        if data is None:
            if stage_history is None or opportunities is None:
                raise TypeError("fit needs a CRMData, or both stage_history= and opportunities=")
            process = SalesProcess.resolve(self.process)
            data = validate({"opportunities": opportunities, "stage_history": stage_history}, process=process)
            if len(data.quarantine):
                warnings.warn(
                    f"fit: {len(data.quarantine)} input rows were quarantined by validation and are not used; "
                    "see salesforecast.schema.validate",
                    UserWarning,
                    stacklevel=3,
                )
            return data
        if stage_history is not None or opportunities is not None:
            raise TypeError("give fit either a CRMData or stage_history= and opportunities=, not both")
        if not isinstance(data, CRMData):
            raise TypeError(f"fit expects a CRMData (see salesforecast.schema.validate), got {type(data).__name__}")
        return data

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        data: CRMData | None = None,
        *,
        stage_history: pd.DataFrame | None = None,
        opportunities: pd.DataFrame | None = None,
        as_of: Any = None,
    ) -> StageConversionModel:
        """Learn transitions, win probabilities and time in stage from the stage history.

        Parameters
        ----------
        data : CRMData
            Validated data; or pass `stage_history` and `opportunities` (raw or typed tables, validated here
            against `process`).
        stage_history, opportunities : pandas.DataFrame, optional
        as_of : date, optional
            The data end (default ``data.as_of``). An earlier date fits on the data as known then (`known_at`):
            nothing after it is used, and visits open at it are censored.

        Returns
        -------
        StageConversionModel
            self, fitted.
        """
        self._check_params()
        data = self._resolve_data(data, stage_history, opportunities)
        process = data.process if SalesProcess.is_default(self.process) else SalesProcess.resolve(self.process)
        names = process.stage_names
        for table in ("opportunities", "stage_history"):
            stages = getattr(data, table)["stage"]
            unknown = sorted(set(pd.unique(stages.dropna())) - set(names))
            if unknown:
                raise ValueError(f"{table}.stage: {unknown[0]!r} is not a stage of the process map; known: {names}")
        as_of = data.as_of if as_of is None else pd.Timestamp(as_of)
        if process is not data.process:
            data = replace(data, process=process)
        return self.fit_history(DealHistory.from_data(data), as_of)

    def fit_history(self, history: DealHistory, as_of: Any = None) -> StageConversionModel:
        """`fit` on a `DealHistory` of the whole data, cut at `as_of`: the data as known then.

        One history serves fits at many dates (the backtest refits at every period or cutoff); ``fit(data, as_of)``
        builds one (with the model's `process` map, when set) and calls this. Here the history's process map is the
        model's.

        Parameters
        ----------
        history : DealHistory
            ``DealHistory.from_data(data)``.
        as_of : date, optional
            The data end (default: the history's, ``data.as_of``). An earlier date fits on the data as known then
            (`salesforecast.snapshots.known_at`): the deals known then, their changes up to then.

        Returns
        -------
        StageConversionModel
            self, fitted.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> from salesforecast.history import DealHistory
        >>> data = load_sample()
        >>> h = DealHistory.from_data(data)
        >>> a = StageConversionModel(n_bootstrap=0).fit_history(h, "2025-01-01")
        >>> b = StageConversionModel(n_bootstrap=0).fit(data, as_of="2025-01-01")
        >>> bool((a.win_probability_ == b.win_probability_).all())
        True
        """
        if not isinstance(history, DealHistory):
            raise TypeError(f"fit_history expects a DealHistory, got {type(history).__name__}")
        return self.fit_parts([history], history.process, history.as_of if as_of is None else as_of)

    def fit_parts(
        self, parts: Sequence[Any], process: SalesProcess, as_of: Any, tasks: Any = None
    ) -> StageConversionModel:
        """`fit` on deals split into parts, each part read where it lives: equal to the fit on all of them.

        The fit needs of the visits only sums once the duration bins are set; the parts compute theirs and only
        those travel. The bins' edges (quantiles of each stage's durations over all parts) are found as order
        statistics by counting in every part, and the censored visits' risk deficits from every part's events of
        their bins (every part's censored visits are sent to each part; without a bootstrap, a part answers with its
        events' sums per bin, so its work follows its own events), so the model is the one `fit_history` learns
        from the whole (the same counts; the same tables up to the order of floating-point sums; with unit weights
        the same transition rows, to the last bit). With one part this is `fit_history`.

        Parameters
        ----------
        parts : sequence
            Per part, its `DealHistory` (every deal of a part with all its history), or the handle `tasks` has for
            it (a future on a Dask worker: `salesforecast.scale`).
        process : SalesProcess
            The process map the parts' histories were built with.
        as_of : date
            The data end of the whole, or an earlier date to fit on the data as known then.
        tasks : optional
            Where the parts' tasks run: `salesforecast._utils.LocalTasks` (default: here, in turn) or
            `salesforecast.scale.DaskTasks`.

        Returns
        -------
        StageConversionModel
            self, fitted.

        Notes
        -----
        With ``n_bootstrap`` and several parts, each part draws its deals' Poisson weights from its own stream
        (``numpy.random.SeedSequence(random_state).spawn``): the replicates are as likely as one process's, not the
        same draws, so the intervals agree within bootstrap error, not exactly.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> from salesforecast.history import DealHistory
        >>> data = load_sample()
        >>> from dataclasses import replace
        >>> opps, hist = data.opportunities, data.stage_history
        >>> first = opps["opportunity_id"].iloc[::2]  # the deals split in two parts, each with its whole history
        >>> def part(mine):
        ...     o = opps[opps["opportunity_id"].isin(first) == mine]
        ...     h = hist[hist["opportunity_id"].isin(first) == mine]
        ...     return DealHistory.from_data(replace(data, opportunities=o, stage_history=h))
        >>> parts = [part(True), part(False)]
        >>> a = StageConversionModel(n_bootstrap=0).fit_parts(parts, data.process, data.as_of)
        >>> b = StageConversionModel(n_bootstrap=0).fit(data)
        >>> bool((a.transition_counts_ == b.transition_counts_).all().all())
        True
        """
        self._check_params()
        if not SalesProcess.is_default(self.process) and SalesProcess.resolve(self.process) != process:
            raise ValueError(
                f"process: the model's map {SalesProcess.resolve(self.process).name!r} is not the history's "
                f"{process.name!r}; build the history with it (DealHistory.from_data(replace(data, process=...))) "
                "or leave the model's process unset"
            )
        tasks = LocalTasks() if tasks is None else tasks
        as_of = pd.Timestamp(as_of)
        self._tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # see _win_time_tables
        k, nb = len(process.open_stages), int(self.duration_bins)
        whole = len(parts) == 1
        handles = tasks.map(
            _part_visits,
            parts,
            as_of=as_of,
            window_months=self.window_months,
            half_life_days=self.half_life_days,
            segment=self.segment,
        )
        summaries = tasks.gather(tasks.map(_part_summary, handles, extremes=not whole))
        n_visits = sum(s["n"] for s in summaries)
        if not n_visits.sum():
            raise ValueError(
                "no stage visits to learn from: the stage history is empty"
                + (f" or has no visit entered in the last {self.window_months} months" if self.window_months else "")
            )
        # ---- bins of visit duration, per stage at quantiles of its durations (over every part)
        if whole:
            edges = tasks.gather(tasks.map(_part_edges, handles, nb=nb))[0]
        else:
            edges = _quantile_edges(tasks, handles, summaries, nb, k)
        labels = _segment_labels(summaries) if self.segment is not None else np.empty(0, dtype=object)
        handles = tasks.map(_part_binned, handles, edges=edges, labels=labels)
        # ---- the censored visits' risk deficits: every part's events of their bin after them
        if whole:
            deficits, gdeficits, seeds = [None], [None], [self.random_state]
            binned = None
        else:
            cens = tasks.gather(tasks.map(_part_censored, handles))
            key, gkey, dur, w_c = (np.concatenate([c[j] for c in cens]) for j in range(4))
            dbits = int(max(s["max"].max() for s in summaries)).bit_length()
            bounds = np.cumsum([0] + [len(c[0]) for c in cens])
            binned = None
            if self.n_bootstrap:  # each censored visit's own deficit (a replicate weighs it by its deal's draw)
                # added where they are: each part's answer is as long as every part's censored visits
                found = tasks.map(_part_events_before, handles, key=key, gkey=gkey, duration=dur, dbits=dbits)
                before, total, gbefore, gtotal = tasks.sum(found)
                deficit = _deficit(before, total[key], w_c)
                gdeficit = _deficit(gbefore, gtotal[np.maximum(gkey, 0)] if len(gtotal) else np.zeros(len(gkey)), w_c)
            else:  # only their sums per bin: each part's events against every censored visit, work as its events
                seg = gkey >= 0
                found = tasks.map(
                    _part_deficit_sums,
                    handles,
                    index=_censored_index(key, dur, w_c, dbits),
                    gindex=_censored_index(gkey[seg], dur[seg], w_c[seg], dbits),
                    dbits=dbits,
                )
                sums, total, gsums, gtotal = tasks.sum(found)
                with np.errstate(invalid="ignore", divide="ignore"):
                    binned = (np.where(total > 0, sums / total, 0.0), np.where(gtotal > 0, gsums / gtotal, 0.0))
                deficit, gdeficit = np.zeros(len(key)), np.zeros(len(gkey))  # the parts' rows add nothing
            deficits = [deficit[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            gdeficits = [gdeficit[a:b][gkey[a:b] >= 0] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            rng = self.random_state
            entropy = int(rng.integers(2**63)) if isinstance(rng, np.random.Generator) else rng
            seeds = np.random.SeedSequence(entropy).spawn(len(parts))
        stats = tasks.gather(
            tasks.map(_part_statistics, handles, deficits, gdeficits, seeds, n_bootstrap=int(self.n_bootstrap))
        )
        total_stats = {name: sum(s[name] for s in stats) for name in stats[0]}
        if binned is not None:  # the censored visits' deficits, summed per bin (and per segment's bin)
            total_stats["counts"][..., -1] += binned[0].reshape(total_stats["counts"].shape[:2])
            if "gcounts" in total_stats:
                total_stats["gcounts"][..., -1] += binned[1].reshape(total_stats["gcounts"].shape[:3])
        return self._finish(process, as_of, edges, labels, total_stats)

    def _finish(
        self, process: SalesProcess, as_of: pd.Timestamp, edges: np.ndarray, seg_labels: np.ndarray, st: dict[str, Any]
    ) -> StageConversionModel:
        """The model from the sums of every part (`_part_statistics`): life tables, chains, intervals, attributes."""
        names = process.stage_names
        k, n_all, nb = len(process.open_stages), len(names), edges.shape[1] - 1
        won_codes = np.array([names.index(s) for s in process.won_stages], dtype=np.int64)
        lost_codes = np.array([names.index(s) for s in process.lost_stages], dtype=np.int64)
        width = n_all + 2
        default = np.zeros((k, n_all))
        crm = process.probability.reindex(process.open_stages).to_numpy()
        default[:, won_codes[0]] = crm
        default[:, lost_codes[0]] = 1.0 - crm
        counts = st["counts"]
        F0, P0, obs0 = _life_table(counts[..., :n_all], counts[..., n_all], counts[..., n_all + 1])
        if not obs0.all():
            missing = [process.open_stages[s] for s in np.flatnonzero(~obs0)]
            warnings.warn(
                f"no completed visit to stage(s) {', '.join(missing)}: their transitions fall back to the CRM default "
                "probability (won with it, lost otherwise)",
                UserWarning,
                stacklevel=2,
            )
            P0 = _fallback_rows(P0, obs0, default)
            ramp = np.linspace(0.0, 1.0, nb + 1)[:, None]
            F0 = np.where(obs0[:, None, None], F0, ramp[None] * P0[:, None, :])
        n0 = counts[..., : n_all + 1].sum(axis=(1, 2))  # weighted visits per stage
        # the last bin is open-ended: a constant hazard there (occurrences / exposure) gives the timing of the tail
        tail_events = counts[:, nb - 1, :n_all].sum(axis=-1)
        rate0 = _tail_rate(tail_events, st["tail_exposure"], st["tail_n"])

        # ---- segments: own life tables shrunk toward the overall one
        F_groups, P_groups, n_raw, S_raw, rates = [F0], [P0], [n0], [1.0 - F0.sum(axis=-1)], [rate0]
        n_seg = len(seg_labels)
        seg_labels = list(seg_labels)  # the index infers the column's type (int, bool, str) as from the whole
        if self.segment is not None and n_seg:
            gcounts = st["gcounts"]
            Fg, Pg, obsg = _life_table(gcounts[..., :n_all], gcounts[..., n_all], gcounts[..., n_all + 1])
            ng = np.where(obsg, gcounts[..., : n_all + 1].sum(axis=(2, 3)), 0.0)
            kappa = float(self.shrinkage)
            denom = ng + kappa
            wg = np.where(denom > 0, ng / np.where(denom > 0, denom, 1.0), 0.0)[..., None, None]
            Fg_raw = np.nan_to_num(Fg)
            F_mix = wg * Fg_raw + (1.0 - wg) * F0[None]
            P_mix = F_mix[..., -1, :]
            rate_g = _tail_rate(
                gcounts[:, :, nb - 1, :n_all].sum(axis=-1), st["g_tail_exposure"], st["g_tail_n"], fallback=rate0
            )
            rate_mix = wg[..., 0, 0] * rate_g + (1.0 - wg[..., 0, 0]) * rate0
            for g in range(n_seg):
                F_groups.append(F_mix[g])
                P_groups.append(P_mix[g])
                n_raw.append(ng[g])
                S_raw.append(1.0 - Fg_raw[g].sum(axis=-1))
                rates.append(rate_mix[g])
        F_all = np.stack(F_groups)  # (G, K, nb + 1, S)
        rate_all = np.stack(rates)  # (G, K)
        P_all = np.stack(P_groups)  # (G, K, S)
        N_all, B_all = _absorb(P_all, k)
        won_cols = won_codes - k
        win_all = B_all[..., won_cols].sum(axis=-1)  # (G, K)

        # ---- win probability given the time already spent in the stage
        V = np.zeros(P_all.shape[:1] + (n_all,))
        V[:, :k] = win_all
        V[:, won_codes] = 1.0
        rest = P_all[:, :, None, :] - F_all[:, :, :nb, :]  # (G, K, nb, S): mass still to come after each edge
        surv = rest.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cw_raw = (rest * V[:, None, None, :]).sum(axis=-1) / surv
        S0_edges = 1.0 - F0[:, :nb, :].sum(axis=-1)
        at_risk = np.stack(
            [n0[:, None] * S0_edges]
            + [n_raw[g][:, None] * S_raw[g][:, :nb] + float(self.shrinkage) * S0_edges for g in range(1, len(F_groups))]
        )
        valid = (at_risk >= _MIN_AT_RISK) & (surv > 1e-12) & np.isfinite(cw_raw)
        valid[..., 0] = True
        src = np.maximum.accumulate(np.where(valid, np.arange(nb), 0), axis=-1)
        cw = np.take_along_axis(np.where(np.isfinite(cw_raw), cw_raw, 0.0), src, axis=-1)
        cw[..., 0] = win_all

        # ---- holding times and time in stage
        S_edges = 1.0 - F_all.sum(axis=-1)  # (G, K, nb + 1)
        widths = np.diff(edges[:, :nb], axis=-1)  # (K, nb - 1): the inner bins
        inner = ((S_edges[..., : nb - 1] + S_edges[..., 1:nb]) / 2.0 * widths).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            m_all = inner + np.where(S_edges[..., nb - 1] > 0, S_edges[..., nb - 1] / rate_all, 0.0)  # (G, K)
        exp_days = np.einsum("gij,gj->gi", N_all, m_all)

        open_names = process.open_stages
        quant = {}
        for label, qlev in (("median_days", 0.5), ("p75_days", 0.75), ("p90_days", 0.9)):
            vals = []
            for s in range(k):  # a loop over stages
                curve = S_edges[0, s, :nb]
                if not obs0[s]:
                    vals.append(np.nan)
                elif curve[-1] > 1.0 - qlev:  # in the exponential tail
                    vals.append(float(edges[s, nb - 1] + np.log(curve[-1] / (1.0 - qlev)) / rate0[s]))
                else:
                    vals.append(float(np.interp(1.0 - qlev, curve[::-1], edges[s, :nb][::-1])))
            quant[label] = vals
        n_visits, n_cens = st["visits"], st["censored"]

        # ---- bootstrap over opportunities: each replicate's counts, summed over the parts
        boot = np.full((int(self.n_bootstrap), k), np.nan)
        if self.n_bootstrap:
            c = st["bootstrap"].T.reshape(-1, k, nb, width)
            _, Pb, obsb = _life_table(c[..., :n_all], c[..., n_all], c[..., n_all + 1])
            Pb = _fallback_rows(Pb, obsb, default)
            _, Bb = _absorb(Pb, k)
            boot[:] = Bb[..., won_cols].sum(axis=-1)
        alpha = (1.0 - float(self.ci)) / 2.0
        if self.n_bootstrap:
            lower = np.nanquantile(boot, alpha, axis=0)
            upper = np.nanquantile(boot, 1.0 - alpha, axis=0)
        else:
            lower = upper = np.full(k, np.nan)

        # ---- attributes
        idx = pd.Index(open_names, name="stage")
        cols = pd.Index(names, name="to_stage")
        term_cols = pd.Index(names[k:], name="to_stage")
        self.process_ = process
        self.as_of_ = as_of
        self.transition_matrix_ = pd.DataFrame(P0, index=idx.rename("from_stage"), columns=cols)
        tc = st["transitions"]
        self.transition_counts_ = pd.DataFrame(
            tc.reshape(k, n_all).astype(np.int64), index=idx.rename("from_stage"), columns=cols
        )
        self.win_probability_ = pd.Series(win_all[0], index=idx, name="win_probability")
        self.win_probability_ci_ = pd.DataFrame({"lower": lower, "upper": upper}, index=idx)
        self.absorption_probability_ = pd.DataFrame(B_all[0], index=idx, columns=term_cols)
        self.fundamental_matrix_ = pd.DataFrame(
            N_all[0], index=idx.rename("from_stage"), columns=pd.Index(open_names, name="to_stage")
        )
        self.expected_days_to_close_ = pd.Series(exp_days[0], index=idx, name="expected_days_to_close")
        self.time_in_stage_ = pd.DataFrame(
            {
                "visits": n_visits.astype(np.int64),
                "completed": (n_visits - n_cens).astype(np.int64),
                "censored": n_cens.astype(np.int64),
                **quant,
                "mean_days": np.where(obs0, m_all[0], np.nan),
            },
            index=idx,
        )
        self.n_visits_ = pd.Series(n_visits.astype(np.int64), index=idx, name="visits")
        self.duration_edges_ = pd.DataFrame(edges, index=idx, columns=pd.RangeIndex(nb + 1, name="edge"))
        self.conditional_win_probability_ = pd.DataFrame(
            {
                "stage": pd.Series(np.repeat(open_names, nb), dtype="str"),
                "days": edges[:, :nb].ravel(),
                "win_probability": cw[0].ravel(),
                "at_risk": at_risk[0].ravel(),
                "conditioned": (src[0] == np.arange(nb)).ravel(),
            }
        )
        self.bootstrap_win_probability_ = pd.DataFrame(boot, columns=idx)
        if self.segment is not None:
            seg_idx = pd.Index(seg_labels, name=self.segment)
            self.segment_win_probability_ = pd.DataFrame(win_all[1:], index=seg_idx, columns=idx)
            self.segment_transition_matrix_ = pd.DataFrame(
                P_all[1:].reshape(-1, n_all),
                index=pd.MultiIndex.from_product([seg_labels, open_names], names=[self.segment, "from_stage"]),
                columns=cols,
            )
        else:
            self.segment_win_probability_ = None
            self.segment_transition_matrix_ = None
        self._state = {
            "edges": edges,
            "F": F_all,
            "tail_rate": rate_all,
            "P": P_all,
            "win": win_all,
            "cw": cw,
            "src": src,
            "segments": pd.Index(seg_labels),
            "won_codes": won_codes,
            "lost_codes": lost_codes,
            "counts": {
                "entered": st["entered"],
                "converted": st["converted"],
                "closed": st["closed"],
                "won": st["won"],
            },
        }
        return self

    # ------------------------------------------------------------------ prediction
    def _rows(self, snapshot: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per snapshot row: stage code (-1 unknown), group (0 overall, g > 0 segment) and days in stage."""
        if not isinstance(snapshot, pd.DataFrame) or "stage" not in snapshot.columns:
            raise ValueError("snapshot must be a DataFrame with a 'stage' column (see pipeline_snapshots)")
        code = self.process_.stage_codes(snapshot["stage"])
        group = np.zeros(len(snapshot), dtype=np.int64)
        if self.segment is not None:
            if self.segment not in snapshot.columns:
                raise ValueError(
                    f"snapshot has no column {self.segment!r}; the model is segmented by it "
                    "(pipeline_snapshots copies it with columns=[...])"
                )
            seg_codes, uniques = pd.factorize(snapshot[self.segment])
            group = self.segment_groups(uniques)[seg_codes]
        if "days_in_stage" in snapshot.columns:
            days = pd.to_numeric(snapshot["days_in_stage"], errors="coerce").to_numpy(dtype="float64")
            days = np.where(np.isfinite(days), np.maximum(days, 0.0), 0.0)
        else:
            days = np.zeros(len(snapshot))
        return code, group, days

    def segment_groups(self, values: Any) -> np.ndarray:
        """The model group of each segment value: 0 for the overall model, ``g >= 1`` for a segment's own.

        Parameters
        ----------
        values : array-like
            Values of the segment column (e.g. the uniques of ``pd.factorize``); values the model has not seen, and
            every value when the model is not segmented, get the overall model.

        Returns
        -------
        numpy.ndarray
            int64, one group per value and one more entry, 0, so that factorize codes (-1 missing) index it directly:
            ``model.segment_groups(uniques)[codes]``.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> m = StageConversionModel(n_bootstrap=0, segment="segment").fit(load_sample())
        >>> m.segment_groups(["SMB", "no such segment"]).tolist()
        [3, 0, 0]
        """
        check_is_fitted(self)
        if self.segment is None:
            return np.zeros(len(values) + 1, dtype=np.int64)
        pos = self._state["segments"].get_indexer(pd.Index(values))
        return np.append(np.where(pos >= 0, pos + 1, 0), 0).astype(np.int64)

    def _edge_position(self, s: int, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Conditioning edges around each duration of stage `s`: lower index, upper index, weight of the upper."""
        nb = int(self.duration_bins)
        e = self._state["edges"][s]
        b = np.clip(np.searchsorted(e[:nb], days, side="right") - 1, 0, nb - 1)
        b1 = np.minimum(b + 1, nb - 1)
        width = e[b1] - e[b]
        a = np.where((b1 > b) & (width > 0), np.clip((days - e[b]) / np.where(width > 0, width, 1.0), 0.0, 1.0), 0.0)
        return b, b1, a

    def predict_proba(self, snapshot: pd.DataFrame) -> pd.Series:
        """Probability that each deal of a pipeline snapshot is won.

        Conditioned on the deal's stage and on how long it has sat in it (``days_in_stage``, as in
        `salesforecast.snapshots.pipeline_snapshots`; without the column, a fresh visit), and on its segment when
        the model is segmented (unknown segments use the overall model).

        Parameters
        ----------
        snapshot : pandas.DataFrame
            Columns ``stage`` and optionally ``days_in_stage`` and the segment column.

        Returns
        -------
        pandas.Series
            Aligned to the snapshot's index: the win probability; 1 for rows already in a won stage, 0 in a lost
            stage, missing where the stage is unknown.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> from salesforecast.snapshots import pipeline_snapshots
        >>> data = load_sample()
        >>> model = StageConversionModel(n_bootstrap=0).fit(data, as_of="2025-01-01")
        >>> snap = pipeline_snapshots(data, "2025-01-01")
        >>> p = model.predict_proba(snap)
        >>> bool(p.between(0, 1).all()), len(p) == len(snap)
        (True, True)
        """
        check_is_fitted(self)
        code, group, days = self._rows(snapshot)
        return pd.Series(self._proba_codes(code, group, days), index=snapshot.index, name="win_probability")

    def _proba_codes(self, code: np.ndarray, group: np.ndarray, days: np.ndarray) -> np.ndarray:
        """`predict_proba` on arrays: stage codes, model groups and days in stage (see `_rows`)."""
        k = len(self.process_.open_stages)
        st = self._state
        out = np.full(len(code), np.nan)
        out[np.isin(code, st["won_codes"])] = 1.0
        out[np.isin(code, st["lost_codes"])] = 0.0
        for s in range(k):  # a loop over stages
            rows = np.flatnonzero(code == s)
            if len(rows) == 0:
                continue
            b, b1, a = self._edge_position(s, days[rows])
            cw = st["cw"][group[rows], s]
            out[rows] = (1.0 - a) * cw[np.arange(len(rows)), b] + a * cw[np.arange(len(rows)), b1]
        return np.clip(out, 0.0, 1.0)

    def _win_time_tables(self, g: int, horizon: float) -> tuple[np.ndarray, np.ndarray]:
        """Per open stage and conditioning edge: P(won within t of the edge | visit lasted to the edge).

        Returns ``T`` of shape (K, nb, G) on the grid ``t = i * _GRID_DAYS`` (entry ``i`` approximates "won within
        ``t_i + _GRID_DAYS / 2``") and the grid's knots ``[0, t_0 + step/2, t_1 + step/2, ...]``.
        """
        st = self._state
        k = len(self.process_.open_stages)
        nb = int(self.duration_bins)
        E, F, P, rate = st["edges"], st["F"][g], st["P"][g], st["tail_rate"][g]
        won = st["won_codes"]
        step = _GRID_DAYS
        n_fft = 1 << int(np.ceil(np.log2(2 * (int(np.ceil(max(horizon, step) / step)) + 2))))
        # the grid as long as the FFT allows: one table per segment and FFT size serves every shorter horizon
        cache = self.__dict__.setdefault("_tables", {})
        if (g, n_fft) in cache:
            return cache[(g, n_fft)]
        n_grid = n_fft // 2
        t = np.arange(n_grid) * step

        def cif(s: int, x: np.ndarray) -> np.ndarray:
            """Cumulative incidence of stage `s` at durations `x`: linear inside bins, exponential in the last."""
            e, last = E[s], E[s, nb - 1]
            grow = 1.0 - np.exp(-rate[s] * np.maximum(x - last, 0.0))
            out = F[s, nb - 1] + (F[s, nb] - F[s, nb - 1]) * grow[..., None]
            if nb > 1:
                i = np.clip(np.searchsorted(e[: nb - 1], x, side="right") - 1, 0, nb - 2)
                width = e[i + 1] - e[i]
                a = np.where(width > 0, np.clip((x - e[i]) / np.where(width > 0, width, 1.0), 0.0, 1.0), 1.0)
                lin = F[s, i] * (1.0 - a)[..., None] + F[s, i + 1] * a[..., None]
                out = np.where((x < last)[..., None], lin, out)
            return out

        up, lo = t + step / 2.0, np.maximum(t - step / 2.0, 0.0)
        f_up = np.stack([cif(s, up) for s in range(k)])  # (K, G, S)
        dF = f_up - np.stack([cif(s, lo) for s in range(k)])
        won_cum = f_up[..., won].sum(axis=-1)  # (K, G)
        kernel = np.fft.rfft(dF[..., :k], n=n_fft, axis=1)  # (K, nf, K)
        W = won_cum.copy()
        for _ in range(10_000):  # fixed-point iteration of the renewal equation (one more jump per round)
            conv = np.fft.irfft(np.einsum("jfk,kf->jf", kernel, np.fft.rfft(W, n=n_fft, axis=1)), n=n_fft, axis=1)
            new = won_cum + conv[:, :n_grid]
            if np.max(np.abs(new - W)) < 1e-12:
                W = new
                break
            W = new
        W_hat = np.fft.rfft(W, n=n_fft, axis=1)
        T = np.empty((k, nb, n_grid))
        for s in range(k):  # a loop over stages
            x0 = E[s, :nb]
            f0 = cif(s, x0)  # (nb, S)
            fu = cif(s, x0[:, None] + up[None, :])  # (nb, G, S)
            fl = cif(s, x0[:, None] + lo[None, :])
            won_part = fu[..., won].sum(axis=-1) - f0[:, won].sum(axis=-1)[:, None]
            k_hat = np.fft.rfft((fu - fl)[..., :k], n=n_fft, axis=1)  # (nb, nf, K)
            conv = np.fft.irfft(np.einsum("bfk,kf->bf", k_hat, W_hat), n=n_fft, axis=1)[:, :n_grid]
            surv = (P[s] - f0).sum(axis=-1)
            with np.errstate(invalid="ignore", divide="ignore"):
                tab = (won_part + conv) / surv[:, None]
            tab = np.maximum.accumulate(np.clip(np.nan_to_num(tab), 0.0, 1.0), axis=1)
            T[s] = tab[st["src"][g, s]]
        knots = np.concatenate([[0.0], up])
        cache[(g, n_fft)] = (T, knots)
        return T, knots

    def predict_close_within(self, snapshot: pd.DataFrame, end_date: Any, as_of: Any = None) -> pd.Series:
        """Probability that each deal is won before `end_date`.

        Uses the semi-Markov model: the remaining time in the current stage given the days already spent in it,
        then fresh visits to the next stages (see the module docstring, "Time to win"). The result is
        non-decreasing in `end_date` and never above `predict_proba`.

        Parameters
        ----------
        snapshot : pandas.DataFrame
            As for `predict_proba`, plus ``as_of`` (the snapshot time) unless given as an argument.
        end_date : date or array-like of dates
            One end for all rows, or one per row (e.g. the end of each deal's forecast period; exclusive).
        as_of : date, optional
            The time the snapshot describes, when it has no ``as_of`` column.

        Returns
        -------
        pandas.Series
            Aligned to the snapshot's index; 0 where `end_date` is not after the snapshot time, 1 for rows already
            won.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> from salesforecast.snapshots import pipeline_snapshots
        >>> data = load_sample()
        >>> model = StageConversionModel(n_bootstrap=0).fit(data, as_of="2025-01-01")
        >>> snap = pipeline_snapshots(data, "2025-01-01")
        >>> q1 = model.predict_close_within(snap, "2025-04-01")
        >>> bool((q1 <= model.predict_proba(snap) + 1e-12).all())
        True
        """
        check_is_fitted(self)
        code, group, days = self._rows(snapshot)
        n = len(snapshot)
        if as_of is not None:
            start = np.full(n, to_us(pd.Timestamp(as_of)), dtype=np.int64)
        elif "as_of" in snapshot.columns:
            start = snapshot["as_of"].to_numpy("datetime64[us]").view(np.int64)
        else:
            raise ValueError("snapshot has no 'as_of' column; pass as_of= (the time the snapshot describes)")
        if isinstance(end_date, (str, pd.Timestamp, np.datetime64)) or np.ndim(end_date) == 0:
            end = np.full(n, to_us(pd.Timestamp(end_date)), dtype=np.int64)
        else:
            end_idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(end_date)))
            if len(end_idx) != n:
                raise ValueError(f"end_date has {len(end_idx)} values for {n} snapshot rows")
            end = end_idx.as_unit("us").asi8
        out = self.predict_close_within_codes(code, group, days, start, end)
        return pd.Series(out, index=snapshot.index, name="win_probability_by_end")

    def predict_close_within_codes(
        self, code: np.ndarray, group: np.ndarray, days: np.ndarray, start: np.ndarray, end: np.ndarray
    ) -> np.ndarray:
        """`predict_close_within` on arrays: arrays in, one probability per row out (for callers that hold codes).

        Parameters
        ----------
        code : numpy.ndarray
            int64 stage codes in the process map's order (`SalesProcess.stage_codes`; -1 unknown).
        group : numpy.ndarray
            int64 model groups (`segment_groups`; 0 the overall model).
        days : numpy.ndarray
            float64 days already spent in the stage (finite, >= 0).
        start, end : numpy.ndarray
            int64 microseconds: the snapshot time and the (exclusive) end of the window, per row.

        Returns
        -------
        numpy.ndarray
            float64 per row, as `predict_close_within`: 1 for a won stage, 0 for a lost one or when `end` is not after
            `start`, missing for an unknown stage.

        Examples
        --------
        >>> from salesforecast._utils import to_us
        >>> from salesforecast.datasets import load_sample
        >>> m = StageConversionModel(n_bootstrap=0).fit(load_sample(), as_of="2025-01-01")
        >>> t, e = to_us("2025-01-01"), to_us("2025-04-01")
        >>> q = m.predict_close_within_codes(np.array([0, 8, -1]), np.zeros(3, dtype=np.int64), np.zeros(3),
        ...                                  np.full(3, t), np.full(3, e))
        >>> bool(0 < q[0] < 1), float(q[1]), bool(np.isnan(q[2]))
        (True, 1.0, True)
        """
        h = np.minimum((end - start) / DAY_US, _MAX_HORIZON_DAYS)
        st = self._state
        k = len(self.process_.open_stages)
        is_open = (code >= 0) & (code < k)
        known = is_open | np.isin(code, st["lost_codes"])
        out = np.where(np.isin(code, st["won_codes"]), 1.0, np.where(known, 0.0, np.nan))
        active = np.flatnonzero(is_open & (h > 0))
        if len(active) == 0:
            return out
        # rows by (segment group, stage): one sort, then a slice per pair
        key = group[active] * k + code[active]
        small = np.int16 if int(key.max()) < 2**15 else np.int64
        rows_sorted = active[np.argsort(key.astype(small), kind="stable")]
        key_sorted = group[rows_sorted] * k + code[rows_sorted]
        cuts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1], True])
        tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for lo, hi_ in zip(cuts[:-1], cuts[1:], strict=True):  # a loop over (segment, stage) pairs
            rows = rows_sorted[lo:hi_]
            g, s = int(group[rows[0]]), int(code[rows[0]])
            if g not in tables:  # the time-to-win tables of the segment, up to its longest horizon
                in_g = rows_sorted[(key_sorted >= g * k) & (key_sorted < (g + 1) * k)]
                tables[g] = self._win_time_tables(g, float(h[in_g].max()))
            T, knots = tables[g]
            b, b1, a = self._edge_position(s, days[rows])
            cw = st["cw"][g, s]
            proba = np.clip((1.0 - a) * cw[b] + a * cw[b1], 0.0, 1.0)
            # horizons come in runs (one per snapshot): the table is read at each run's horizon once, giving one
            # value per conditioning edge, and each row interpolates between its two edges
            hr = h[rows]
            run = np.r_[True, hr[1:] != hr[:-1]]
            h_run = hr[run]
            hi = np.clip(np.searchsorted(knots, h_run, side="right") - 1, 0, len(knots) - 2)
            frac = np.clip((h_run - knots[hi]) / (knots[hi + 1] - knots[hi]), 0.0, 1.0)[:, None]
            tab = np.concatenate([np.zeros((T.shape[1], 1)), T[s]], axis=1)  # (edges, grid + 1)
            at_edges = ((1.0 - frac) * tab[:, hi].T + frac * tab[:, hi + 1].T).ravel()  # (runs x edges)
            base = (np.cumsum(run) - 1) * tab.shape[0]
            within = (1.0 - a) * at_edges[base + b] + a * at_edges[base + b1]
            out[rows] = np.clip(np.minimum(within, proba), 0.0, 1.0)
        return out

    # ------------------------------------------------------------------ report
    @property
    def summary(self) -> pd.DataFrame:
        """One row per open stage: what the history says against the CRM default.

        Columns: ``stage``; ``entered`` (deals with at least one visit to the stage); ``converted`` (deals that
        moved from it to a later open stage or to a won stage) and ``conversion_rate`` (``converted / entered``);
        ``closed`` and ``won`` (deals that entered it and are closed / won now) and ``observed_win_rate``
        (``won / closed``: biased toward fast deals while many are still open); ``crm_probability`` (the process
        map's default); ``win_probability`` with its interval ``lower, upper`` (learned); ``difference``
        (learned minus default); ``learned_from`` (``"history"``, or ``"no deal left it: CRM default"`` for a stage
        without a completed visit, whose win probability, interval and difference are NaN: the model predicts
        with the CRM default there, which nothing in the history supports); ``median_days`` and ``p90_days`` in
        stage (life table, censoring-aware).

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> s = StageConversionModel(n_bootstrap=20).fit(load_sample()).summary
        >>> s.columns.tolist()[:4]
        ['stage', 'entered', 'converted', 'conversion_rate']
        """
        check_is_fitted(self)
        c = self._state["counts"]
        idx = self.win_probability_.index
        crm = self.process_.probability.reindex(idx).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            conv_rate = c["converted"] / np.where(c["entered"] > 0, c["entered"], np.nan)
            obs_rate = c["won"] / np.where(c["closed"] > 0, c["closed"], np.nan)
        # a stage no deal has left has no learned transitions: its row is the CRM default (the model still predicts
        # with it), so nothing of it is presented as learned: NaN probability, interval and difference
        left = self.transition_counts_.sum(axis=1).to_numpy() > 0
        learned = np.where(left, self.win_probability_.to_numpy(), np.nan)
        lower = np.where(left, self.win_probability_ci_["lower"].to_numpy(), np.nan)
        upper = np.where(left, self.win_probability_ci_["upper"].to_numpy(), np.nan)
        return pd.DataFrame(
            {
                "stage": pd.Series(list(idx), dtype="str"),
                "entered": c["entered"].astype(np.int64),
                "converted": c["converted"].astype(np.int64),
                "conversion_rate": conv_rate,
                "closed": c["closed"].astype(np.int64),
                "won": c["won"].astype(np.int64),
                "observed_win_rate": obs_rate,
                "crm_probability": crm,
                "win_probability": learned,
                "lower": lower,
                "upper": upper,
                "difference": learned - crm,
                "learned_from": pd.Series(
                    np.where(left, "history", "no deal left it: CRM default"), index=range(len(idx)), dtype="str"
                ),
                "median_days": self.time_in_stage_["median_days"].to_numpy(),
                "p90_days": self.time_in_stage_["p90_days"].to_numpy(),
            }
        )
