"""Each deal's history through the sales process, built once: its visits to stages and its moves, as known at a date.

`DealHistory` holds the stage intervals of `salesforecast.snapshots.stage_intervals` (so the rules of as-of
reconstruction apply) as integer arrays, built once per data set, and answers the questions the models, the process
measures and the backtest ask of them at any date: the visits known then, the moves so far, the state of a deal at a
time, the open pipeline at dates, the wins. Everything is vectorised over all deals (no Python loop over deals).

Definitions (the contract the tests check)
------------------------------------------
Visit
    A run of consecutive history rows of a deal in the same stage. A row that only changes the close date or the
    amount is not a stage change, so it does not start a new visit. A visit lasts from the start of its first row to
    the start of the next visit; the current visit of a deal still open at ``as_of`` lasts until ``as_of`` and is
    *not completed* (censored). The visits to open stages are numbered 1, 2, ... per deal.
Visits as known at a date
    `DealHistory.visits` cuts the whole history at ``as_of``: with ``known_only`` only the deals
    `salesforecast.snapshots.known_at` keeps at ``as_of`` count (created by then, and with a change known by then, or
    without history and open now or closed by then), with their changes up to ``as_of``; a change after ``as_of`` is
    not known yet, so it only censors the visit it ends.
Skipped stages
    In a forward move between two open stages, the open stages jumped over: Prospecting -> Needs Analysis skips
    Qualification (one skipped stage). A deal created in a later stage has skipped nothing (creation is not a move).
    A move from an open stage into a won stage (*win skip* in `Moves`) skips the ``k - 1 - previous`` open stages
    after the one it left (none from the last open stage); those are counted apart, as stages skipped at the win:
    only winners can have them, so their outcome cannot be compared.
Regression
    A backward move between two open stages (Value Proposition -> Qualification). A move from a closed stage back to
    an open one is counted apart: a *reopen*.
Close-date push / pull-in
    A history row, made while the deal was open and leaving it in an open stage, that moved the close date later
    (push) or earlier (pull-in), by the difference in days. The close date written when a deal closes is its actual
    close date, an outcome and not a revision, so it is not counted.
Amount change
    Likewise, a row made while the deal was open and leaving it open that changed the amount.

A move belongs to the row that makes it (`DealHistory.moves`); a deal's first row makes none. The running counts of
a deal's moves up to each row are `DealHistory.so_far`; `salesforecast.adherence` sums them per deal and adds its own
measures (stalls, outcome and cycle, whether following the map pays).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from salesforecast._utils import DAY_US, NAT, NEVER, arrow_strings, group_cumsum, positions, sorted_unique, to_us
from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData
from salesforecast.snapshots import EncodedIntervals, encoded_intervals, snapshot_rows, unknown_before

__all__ = ["DealHistory", "Moves", "Visits"]


@dataclass(frozen=True, eq=False)
class Visits:
    """Visits to open stages as arrays: one entry per visit, by deal then entry time (`DealHistory.visits`).

    Attributes
    ----------
    deal : numpy.ndarray
        int64, the deal code among the deals counted (``0 .. len(deal_pos) - 1``).
    stage : numpy.ndarray
        int64, the open-stage code (``0 .. k - 1``, the process map's order).
    dest : numpy.ndarray
        int64, the code of the next stage, -1 while the visit is open (censored).
    entered : numpy.ndarray
        int64 microseconds: when the visit started.
    days : numpy.ndarray
        float64: days to the next stage, or to ``as_of`` when censored.
    final : numpy.ndarray
        Per deal counted: the code of its last known stage (-1 unknown).
    duration : numpy.ndarray
        int64 microseconds: `days` before the division (exact, for sorting).
    deal_pos : numpy.ndarray
        Per deal counted: its row in opportunities.
    """

    deal: np.ndarray
    stage: np.ndarray
    dest: np.ndarray
    entered: np.ndarray
    days: np.ndarray
    final: np.ndarray
    duration: np.ndarray
    deal_pos: np.ndarray


@dataclass(frozen=True, eq=False)
class Moves:
    """The move each interval row makes from the row before it (none on a deal's first row); see the module docstring.

    Attributes
    ----------
    previous : numpy.ndarray
        int64, the stage code of the row before (-1 on a deal's first row).
    stage_change : numpy.ndarray
        bool, the row changes the stage: a new visit starts.
    skip : numpy.ndarray
        bool, a forward move between open stages that jumps over at least one.
    skipped : numpy.ndarray
        int64, the open stages jumped over by a skip (0 elsewhere).
    regression : numpy.ndarray
        bool, a backward move between open stages.
    reopen : numpy.ndarray
        bool, a move from a closed stage to an open one.
    win_skip : numpy.ndarray
        bool, a move from an open stage into a won stage.
    skipped_at_win : numpy.ndarray
        int64, the open stages after the one left by a win skip (``k - 1 - previous``; 0 elsewhere).
    close_date_days : numpy.ndarray
        float64, days the close date moved by a revision while open (> 0 push, < 0 pull-in, 0 none).
    amount_change : numpy.ndarray
        float64, the change of the amount by a revision while open (0 none).
    """

    previous: np.ndarray
    stage_change: np.ndarray
    skip: np.ndarray
    skipped: np.ndarray
    regression: np.ndarray
    reopen: np.ndarray
    win_skip: np.ndarray
    skipped_at_win: np.ndarray
    close_date_days: np.ndarray
    amount_change: np.ndarray


@dataclass(frozen=True, eq=False)
class DealHistory:
    """Every deal's stage intervals as integer arrays, built once; visits, moves and states at any date.

    Build it with `DealHistory.from_data`. Interval rows are sorted by deal, then start (then reading order), as in
    `salesforecast.snapshots.stage_intervals`; times are int64 microseconds since the epoch (`NAT` missing).

    Attributes
    ----------
    process : SalesProcess
        The process map that codes the stages.
    opportunities : pandas.DataFrame
        The opportunities of the data (``deal_pos`` indexes them).
    frame : pandas.DataFrame
        `stage_intervals` of the data.
    deal : numpy.ndarray
        Per row: int64 deal code, the rank of its opportunity id among the sorted ids.
    stage : numpy.ndarray
        Per row: int64 stage code in the process map's order (`SalesProcess.stage_codes`; -1 unknown).
    start, end : numpy.ndarray
        Per row: when the state held, ``[start, end)``; ``end`` is `NEVER` for a deal's current state.
    entered, created, close : numpy.ndarray
        Per row: when the deal entered the stage, when it was created, its close date as it stood (`NAT` missing).
    amount : numpy.ndarray
        Per row: float64 amount as it stood.
    is_open : numpy.ndarray
        Per row: bool, an open stage (or an unknown one).
    ids : pandas.Index
        Per deal: its opportunity id.
    deal_pos : numpy.ndarray
        Per deal: its row in ``opportunities``.
    deal_created : numpy.ndarray
        Per deal: creation time.
    first_change : numpy.ndarray
        Per deal: its first stage_history change (`NEVER` without history).
    deal_closed : numpy.ndarray
        Per deal: bool, closed now.
    deal_close : numpy.ndarray
        Per deal: its current close date (`NEVER` when missing).
    as_of : pandas.Timestamp
        The data's ``as_of`` (the data end).
    data_end : int
        The same, in microseconds.
    close_unknown_before : int
        When the history never recorded close dates (`salesforecast.snapshots.unrecorded_fields`): `data_end`, the
        time before which an open deal's close date is unknown (`close_known`); else `NAT`.
    intervals : EncodedIntervals, optional
        `frame` with its codes, as `salesforecast.snapshots.encoded_intervals` built it: what
        `salesforecast.snapshots.pipeline_snapshots` reads, so snapshots of the same data need not rebuild it
        (`built_from`).
    stage_history : pandas.DataFrame, optional
        The stage history of the data (with ``opportunities`` and ``process``, what `built_from` compares).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> h = DealHistory.from_data(data)
    >>> len(h.ids) == len(data.opportunities), len(h.deal) == len(h.frame)
    (True, True)
    >>> v = h.visits("2025-01-01")
    >>> entered = v.entered.view("datetime64[us]")
    >>> bool((entered <= np.datetime64("2025-01-01")).all()), bool((v.stage < len(data.process.open_stages)).all())
    (True, True)
    >>> int(h.so_far["regressions"].sum()) > 0
    True
    """

    process: SalesProcess
    opportunities: pd.DataFrame
    frame: pd.DataFrame
    deal: np.ndarray
    stage: np.ndarray
    start: np.ndarray
    end: np.ndarray
    entered: np.ndarray
    created: np.ndarray
    close: np.ndarray
    amount: np.ndarray
    is_open: np.ndarray
    ids: pd.Index
    deal_pos: np.ndarray
    deal_created: np.ndarray
    first_change: np.ndarray
    deal_closed: np.ndarray
    deal_close: np.ndarray
    as_of: pd.Timestamp
    data_end: int
    close_unknown_before: int = NAT
    intervals: EncodedIntervals | None = None
    stage_history: pd.DataFrame | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_data(cls, data: CRMData) -> DealHistory:
        """The history of `data`, its stages coded by ``data.process``.

        Parameters
        ----------
        data : CRMData
            Validated data (opportunities and stage_history).

        Returns
        -------
        DealHistory
        """
        enc = encoded_intervals(data)
        iv = enc.frame
        opps = data.opportunities
        hist = data.stage_history
        deal = np.asarray(enc.codes, dtype=np.int64)
        opp_pos = np.asarray(enc.opp_pos, dtype=np.int64)
        n = len(deal)
        first = np.r_[True, deal[1:] != deal[:-1]] if n else np.zeros(0, dtype=bool)
        deal_pos = opp_pos[np.flatnonzero(first)]
        first_change = np.full(len(deal_pos), NEVER, dtype=np.int64)
        if len(hist) and len(deal_pos):
            deal_of_opp = np.full(len(opps) + 1, -1, dtype=np.int64)  # the last entry: not an opportunity
            deal_of_opp[deal_pos] = np.arange(len(deal_pos))
            keys, values = arrow_strings(hist["opportunity_id"]), arrow_strings(opps["opportunity_id"])
            if keys is not None and values is not None:
                pos = positions(keys, values)
            else:
                pos = pd.Index(opps["opportunity_id"]).get_indexer(hist["opportunity_id"])
            hist_deal = deal_of_opp[pos]
            ok = hist_deal >= 0
            changed = hist["changed_at"].to_numpy("datetime64[us]").view(np.int64)
            np.minimum.at(first_change, hist_deal[ok], changed[ok])
        close_now = opps["close_date"].to_numpy("datetime64[us]").view(np.int64)[deal_pos]
        before = unknown_before(data, "close_date")
        end = iv["end"].to_numpy("datetime64[us]").view(np.int64)

        def times(column: str) -> np.ndarray:
            return iv[column].to_numpy("datetime64[us]").view(np.int64)

        return cls(
            process=data.process,
            opportunities=opps,
            frame=iv,
            deal=deal,
            stage=data.process.stage_codes(iv["stage"]),
            start=times("start"),
            end=np.where(end == NAT, NEVER, end),
            entered=times("stage_entered_at"),
            created=times("created_at"),
            close=times("close_date"),
            amount=iv["amount"].to_numpy("float64"),
            is_open=iv["is_open"].to_numpy(dtype=bool),
            ids=pd.Index(opps["opportunity_id"].take(deal_pos)),
            deal_pos=deal_pos,
            deal_created=opps["created_at"].to_numpy("datetime64[us]").view(np.int64)[deal_pos],
            first_change=first_change,
            deal_closed=opps["is_closed"].to_numpy(dtype=bool)[deal_pos],
            deal_close=np.where(close_now == NAT, NEVER, close_now),
            as_of=data.as_of,
            data_end=to_us(data.as_of),
            close_unknown_before=NAT if before is None else int(before.astype(np.int64)),
            intervals=enc,
            stage_history=hist,
        )

    def slim(self, keep: Sequence[str] = ()) -> DealHistory:
        """The history without its tables: of the opportunities, the `keep` columns only; no frame of intervals.

        What stays is what the visits, the deal counts and the pipeline's arrays read (`visits`, `known_deals`,
        `won_rows`, `close_known`, `opportunity_codes` of a kept column): a partition's history kept on a worker
        for many fits holds about 40% of the memory. `snapshot_rows` needs the frame: rebuild the pipeline first.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> h = DealHistory.from_data(load_sample())
        >>> s = h.slim(["segment"])
        >>> list(s.opportunities.columns), len(s.frame), bool((s.visits(h.as_of).days == h.visits(h.as_of).days).all())
        (['segment'], 0, True)
        """
        opps = self.opportunities[[c for c in keep if c in self.opportunities.columns]]
        return replace(
            self,
            opportunities=opps,
            frame=self.frame.iloc[:0],
            stage_history=self.stage_history.iloc[:0],
            intervals=None,
        )

    def built_from(self, data: CRMData) -> bool:
        """Whether this history was built from these very tables of `data` (the same objects, not equal copies).

        Then its `intervals` are ``encoded_intervals(data)`` and a step on `data` may read them instead of
        rebuilding them.

        Examples
        --------
        >>> from dataclasses import replace
        >>> from salesforecast.datasets import load_sample
        >>> data = load_sample()
        >>> h = DealHistory.from_data(data)
        >>> h.built_from(data), h.built_from(replace(data, stage_history=data.stage_history.copy()))
        (True, False)
        """
        return (
            self.opportunities is data.opportunities
            and self.stage_history is data.stage_history
            and self.process is data.process
        )

    # ------------------------------------------------------------------ stages
    @property
    def k(self) -> int:
        """The number of open stages (codes ``0 .. k - 1``)."""
        return len(self.process.open_stages)

    @cached_property
    def won_codes(self) -> np.ndarray:
        """Codes of the won stages."""
        names = self.process.stage_names
        return np.array([names.index(s) for s in self.process.won_stages], dtype=np.int64)

    @cached_property
    def lost_codes(self) -> np.ndarray:
        """Codes of the lost stages."""
        names = self.process.stage_names
        return np.array([names.index(s) for s in self.process.lost_stages], dtype=np.int64)

    @cached_property
    def first(self) -> np.ndarray:
        """Per row: bool, the deal's first row."""
        d = self.deal
        return np.r_[True, d[1:] != d[:-1]][: len(d)]

    @cached_property
    def new_visit(self) -> np.ndarray:
        """Per row: bool, a visit (run of one stage) starts here: the deal's first row or a change of stage."""
        s = self.stage
        return self.first | np.r_[True, s[1:] != s[:-1]][: len(s)]

    @cached_property
    def visit_starts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per visit of the whole history (by deal, then time): its deal, stage and start (the rows `new_visit`)."""
        rows = np.flatnonzero(self.new_visit)
        return self.deal[rows], self.stage[rows], self.start[rows]

    # ------------------------------------------------------------------ visits
    def known_deals(self, as_of: Any) -> np.ndarray:
        """Per deal: whether `salesforecast.snapshots.known_at` keeps it at `as_of`.

        Kept: created by then, and with a change known by then, or without history and open now or closed by then.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> from salesforecast.snapshots import known_at
        >>> data = load_sample()
        >>> h = DealHistory.from_data(data)
        >>> kept = h.known_deals("2025-01-01")
        >>> len(kept) == len(h.ids), int(kept.sum()) == len(known_at(data, "2025-01-01").opportunities)
        (True, True)
        >>> bool(h.known_deals(h.as_of).all())
        True
        """
        t = to_us(as_of)
        no_hist = self.first_change == NEVER
        return (self.deal_created <= t) & (
            (self.first_change <= t) | (no_hist & (~self.deal_closed | (self.deal_close <= t)))
        )

    def visits(self, as_of: Any, known_only: bool = True) -> Visits:
        """Visits to the open stages as known at `as_of` (the definitions are in the module docstring).

        Parameters
        ----------
        as_of : date
        known_only : bool
            Count only the deals ``known_at(data, as_of)`` keeps, with their changes up to `as_of` (when `as_of` is
            before the data end); otherwise every deal, and changes after `as_of` only censor.

        Returns
        -------
        Visits

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> data = load_sample()
        >>> h = DealHistory.from_data(data)
        >>> v = h.visits("2025-01-01")
        >>> len(v.final) == int(h.known_deals("2025-01-01").sum()), len(v.deal_pos) == len(v.final)
        (True, True)

        The first deal's first visit, and the visits still open on 2025-01-01 (censored: no next stage yet):

        >>> names = data.process.stage_names
        >>> names[v.stage[0]], names[v.dest[0]], round(float(v.days[0]), 2)
        ('Prospecting', 'Qualification', 1.22)
        >>> censored = v.dest == -1
        >>> ends = (v.entered[censored] + v.duration[censored]).view("datetime64[us]")
        >>> bool((ends == np.datetime64("2025-01-01")).all()), int(censored.sum()) > 0
        (True, True)
        """
        t_end = to_us(as_of)
        deal, stage, start = self.visit_starts
        deal_pos = self.deal_pos
        if known_only and t_end < self.data_end:
            kept = self.known_deals(as_of)
            sel = kept[deal] & (start <= t_end)
            new_code = np.cumsum(kept) - 1
            deal, stage, start = new_code[deal[sel]], stage[sel], start[sel]
            deal_pos = deal_pos[kept]
        has_next = np.r_[deal[1:] == deal[:-1], False] if len(deal) else np.zeros(0, dtype=bool)
        nxt_stage = np.r_[stage[1:], -1]
        nxt_start = np.r_[start[1:], 0]
        last_run = ~has_next
        final = np.full(len(deal_pos), -1, dtype=np.int64)
        final[deal[last_run]] = stage[last_run]
        dest = np.where(has_next, nxt_stage, -1)
        end = np.where(has_next, nxt_start, t_end)
        late = has_next & (nxt_start > t_end)  # a change after as_of is not known yet: censor
        dest = np.where(late, -1, dest)
        end = np.where(late, t_end, end)
        k = self.k
        keep = (stage >= 0) & (stage < k) & (start <= t_end) & ~(has_next & ~late & (nxt_stage < 0))
        duration = end[keep] - start[keep]
        return Visits(
            deal=deal[keep],
            stage=stage[keep],
            dest=dest[keep],
            entered=start[keep],
            days=duration / DAY_US,
            final=final,
            duration=duration,
            deal_pos=deal_pos,
        )

    # ------------------------------------------------------------------ moves
    @cached_property
    def moves(self) -> Moves:
        """The move each row makes from the row before (see `Moves` and the module docstring).

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> data = load_sample()
        >>> h = DealHistory.from_data(data)
        >>> m, names = h.moves, data.process.stage_names
        >>> bool(m.stage_change[h.first].any())  # a deal's first row makes no move
        False

        The first regression and the first skip of the sample:

        >>> i = int(np.flatnonzero(m.regression)[0])
        >>> h.frame["opportunity_id"].iloc[i], names[m.previous[i]], names[h.stage[i]]
        ('OPP-0000009', 'Id. Decision Makers', 'Value Proposition')
        >>> j = int(np.flatnonzero(m.skip)[0])
        >>> names[m.previous[j]], names[h.stage[j]], int(m.skipped[j])
        ('Needs Analysis', 'Id. Decision Makers', 1)
        """
        return self._moves()

    def _moves(self) -> Moves:
        """`moves`, computed (not kept)."""
        n, k = len(self.stage), self.k
        si, first = self.stage, self.first
        row_open = (si >= 0) & (si < k)
        prev = np.r_[-1, si[:-1]][:n]
        moved = ~first & (si != prev)
        a_open = (prev >= 0) & (prev < k)
        a_closed = np.isin(prev, self.won_codes) | np.isin(prev, self.lost_codes)
        skip = moved & a_open & row_open & (si > prev + 1)
        win_skip = moved & a_open & np.isin(si, self.won_codes)
        prev_open = np.r_[False, self.is_open[:-1]][:n]
        revision = ~first & prev_open & row_open
        cd = self.close
        cd_prev = np.r_[NAT, cd[:-1]][:n]
        cd_ok = revision & (cd != NAT) & (cd_prev != NAT)
        amount = self.amount
        am_diff = np.where(revision, amount - np.r_[np.nan, amount[:-1]][:n], 0.0)
        return Moves(
            previous=np.where(first, -1, prev),
            stage_change=moved,
            skip=skip,
            skipped=np.where(skip, si - prev - 1, 0),
            regression=moved & a_open & row_open & (si < prev),
            reopen=moved & a_closed & row_open,
            win_skip=win_skip,
            skipped_at_win=np.where(win_skip, k - 1 - prev, 0),
            close_date_days=np.where(cd_ok, (cd - cd_prev) / DAY_US, 0.0),
            amount_change=np.nan_to_num(am_diff, nan=0.0),
        )

    @cached_property
    def so_far(self) -> dict[str, np.ndarray]:
        """Per row: the deal's moves up to and including it, by name.

        ``close_date_pushes``, ``days_pushed``, ``close_date_pull_ins``, ``skipped_stages``, ``regressions``,
        ``stage_changes`` and ``amount_changes`` (the names of the `salesforecast.adherence` counts).
        """
        return {name: group_cumsum(v, self.first) for name, v in self._events()}

    def so_far_at(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """`so_far` at these rows only, without keeping it (read from `so_far` when that was built).

        Each count is summed over every row and gathered at `rows` in turn, so a few rows of a history of millions
        (the sample a fit learns from, one date's pipeline) never hold the seven counts of every row at once.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> h = DealHistory.from_data(load_sample())
        >>> rows = np.array([0, 5, 9])
        >>> at = h.so_far_at(rows)
        >>> "so_far" in vars(h), all((at[name] == h.so_far[name][rows]).all() for name in at)
        (False, True)
        """
        if "so_far" in self.__dict__:
            return {name: cum[rows] for name, cum in self.so_far.items()}
        return {name: group_cumsum(v, self.first)[rows] for name, v in self._events()}

    def _events(self) -> Iterator[tuple[str, np.ndarray]]:
        """The counts of `so_far` row by row, one at a time."""
        # the moves kept when something else read them, else computed and let go: ten arrays of every row (a
        # quarter of a gigabyte at 1M deals) that the counts do not need once summed
        m = self.__dict__["moves"] if "moves" in self.__dict__ else self._moves()
        cd = m.close_date_days
        yield "close_date_pushes", (cd > 0).astype(np.int64)
        yield "days_pushed", np.where(cd > 0, cd, 0.0)
        yield "close_date_pull_ins", (cd < 0).astype(np.int64)
        yield "skipped_stages", m.skipped
        yield "regressions", m.regression.astype(np.int64)
        yield "stage_changes", m.stage_change.astype(np.int64)
        yield "amount_changes", (m.amount_change != 0).astype(np.int64)

    @cached_property
    def amount_initial(self) -> np.ndarray:
        """Per row: the deal's amount in its first row (at creation)."""
        return self.amount[np.flatnonzero(self.first)][np.cumsum(self.first) - 1]

    # ------------------------------------------------------------------ states at times
    def row_at(self, ids: pd.Series | np.ndarray, times: np.ndarray) -> np.ndarray:
        """Row in force at each (opportunity, time): the last one starting at or before the time.

        Parameters
        ----------
        ids : pandas.Series or numpy.ndarray
            Opportunity ids.
        times : numpy.ndarray
            int64 microseconds, one per id.

        Returns
        -------
        numpy.ndarray
            int64 rows; -1 where the opportunity has no interval starting by then (or none at all).

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> h = DealHistory.from_data(load_sample())
        >>> ids = h.ids[:2]
        >>> rows = h.row_at(ids, np.array([h.deal_created[0], h.data_end]))  # at creation; at the data end
        >>> h.frame["opportunity_id"].take(rows).tolist(), h.frame["stage"].take(rows).tolist()
        (['OPP-0000001', 'OPP-0000002'], ['Prospecting', 'Closed Won'])
        >>> h.row_at(ids[:1], h.deal_created[:1] - 1), h.row_at(["no such deal"], np.array([h.data_end]))
        (array([-1]), array([-1]))
        """
        code = self.ids.get_indexer(ids).astype(np.int64)
        grid = sorted_unique(np.r_[self.start, times])
        width = np.int64(len(grid) + 1)
        key_iv = self.deal * width + np.searchsorted(grid, self.start)
        key_q = np.maximum(code, 0) * width + np.searchsorted(grid, times)
        row = np.searchsorted(key_iv, key_q, side="right") - 1
        ok = (code >= 0) & (row >= 0)
        ok[ok] &= self.deal[row[ok]] == code[ok]
        return np.where(ok, row, -1)

    def rows_known(self, as_of: Any) -> np.ndarray:
        """Per row: bool, the state had started by `as_of` (the rows known then: a prefix of each deal's rows)."""
        return self.start <= to_us(as_of)

    def snapshot_rows(self, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """The open states at `dates` (sorted, unique): rows and date positions, by date then deal.

        The rows of ``pipeline_snapshots(data, dates)``, in its order (`salesforecast.snapshots.snapshot_rows`).
        """
        return snapshot_rows(self.frame, dates)

    def close_known(self, rows: np.ndarray, times: Any) -> np.ndarray:
        """Close date of each row's state as known at `times` (int64 microseconds, `NAT` missing).

        ``close[rows]``, except where it is unknown (`NAT`): in an open state in an unknown stage, and, when the
        history never recorded close dates, in an open state at a time before the data's ``as_of``
        (`close_unknown_before`); the rules of `salesforecast.snapshots`, as
        `salesforecast.snapshots.pipeline_snapshots` gives them.

        Parameters
        ----------
        rows : numpy.ndarray
            Interval rows.
        times : int, numpy.ndarray or date
            One time, or one per row.
        """
        close = np.where(self.stage[rows] < 0, NAT, self.close[rows])  # an unknown state: no close date either
        if self.close_unknown_before == NAT:
            return close
        t = np.asarray(to_us(times) if not isinstance(times, np.ndarray) else times, dtype=np.int64)
        unknown = (t < self.close_unknown_before) & self.is_open[rows]
        return np.where(unknown, NAT, close)

    def won_rows(self) -> np.ndarray:
        """Rows in a won stage, by close date (stable): the wins of a period of close dates are one slice.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> data = load_sample()
        >>> h = DealHistory.from_data(data)
        >>> won = h.won_rows()
        >>> sorted(set(h.frame["stage"].take(won))), len(won) == int(data.opportunities["is_won"].sum())
        (['Closed Won'], True)
        >>> bool((np.diff(h.close[won]) >= 0).all())
        True
        """
        won = np.flatnonzero(np.isin(self.stage, self.won_codes))
        return won[np.argsort(self.close[won].view("datetime64[us]"), kind="stable")]

    def opportunity_codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Codes of an opportunities column (-1 missing) and its sorted values (object array); computed once."""
        cache = self.__dict__.setdefault("_codes", {})
        if column not in cache:
            codes, values = pd.factorize(self.opportunities[column], sort=True)
            cache[column] = (codes, np.asarray(values, dtype=object))
        return cache[column]
