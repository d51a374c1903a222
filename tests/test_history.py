"""`DealHistory`: each move type on hand-built histories, and its views equal the plain references.

The references: `stage_visits(known_at(data, t))` for the visits as known at ``t``, a deal-by-deal scan of
`stage_intervals` for the row in force, `pipeline_snapshots` for the snapshot rows, and per-deal sums over the rows
known at ``t`` (``deal_adherence`` of ``known_at(data, t)``) for the running counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesforecast._utils import NEVER, to_us, us
from salesforecast.adherence import deal_adherence
from salesforecast.datasets import load_sample
from salesforecast.history import DealHistory
from salesforecast.models.stage_conversion import stage_visits
from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData, validate
from salesforecast.snapshots import known_at, pipeline_snapshots, stage_intervals, to_dates
from tests.factories import complete_history_crm, deal_tables, random_crm

DEFAULT = SalesProcess.default()
P, Q, N, V = DEFAULT.open_stages[:4]  # Prospecting, Qualification, Needs Analysis, Value Proposition
LAST = DEFAULT.open_stages[-1]
WON, LOST = "Closed Won", "Closed Lost"
CD = "2024-03-01"


def _history(deals: dict) -> tuple[CRMData, DealHistory]:
    """deals: id -> (created, [(changed_at, stage, amount, close_date), ...])."""
    data = validate(deal_tables(deals))
    assert data.quarantine.empty, data.quarantine.to_string()
    return data, DealHistory.from_data(data)


def _moves_of(h: DealHistory, oid: str) -> dict[str, list]:
    rows = np.flatnonzero(h.deal == h.ids.get_loc(oid))
    m = h.moves
    return {name: getattr(m, name)[rows].tolist() for name in m.__dataclass_fields__}


@pytest.fixture(scope="module")
def sample() -> CRMData:
    return load_sample()


@pytest.fixture(scope="module")
def sample_history(sample) -> DealHistory:
    return DealHistory.from_data(sample)


# ------------------------------------------------------------------------------------------------ moves
def test_skip_counts_the_open_stages_jumped_over():
    _, h = _history({"A": ("2024-01-01", [("2024-01-01", P, 100, CD), ("2024-01-05", V, 100, CD)])})
    m = _moves_of(h, "A")
    assert m["skip"] == [False, True] and m["skipped"] == [0, 2]
    assert m["stage_change"] == [False, True] and not any(m["regression"])


def test_creation_in_a_later_stage_is_not_a_skip():
    _, h = _history({"A": ("2024-01-01", [("2024-01-01", V, 100, CD), ("2024-01-05", N, 100, CD)])})
    m = _moves_of(h, "A")
    assert m["skipped"] == [0, 0] and m["regression"] == [False, True]


def test_reopen_and_win_skip_are_counted_apart():
    _, h = _history(
        {
            "R": (
                "2024-01-01",
                [("2024-01-01", P, 1, CD), ("2024-01-02", LOST, 1, "2024-01-02"), ("2024-01-03", Q, 1, CD)],
            ),
            "W": (
                "2024-01-01",
                [("2024-01-01", P, 1, CD), ("2024-01-02", Q, 1, CD), ("2024-01-04", WON, 1, "2024-01-04")],
            ),
        }
    )
    r, w = _moves_of(h, "R"), _moves_of(h, "W")
    assert r["reopen"] == [False, False, True] and not any(r["regression"]) and not any(r["skip"])
    k = len(DEFAULT.open_stages)
    assert w["win_skip"] == [False, False, True] and w["skipped_at_win"] == [0, 0, k - 2]
    assert not any(w["skip"])


def test_close_date_push_pull_in_and_amount_change_while_open_only():
    _, h = _history(
        {
            "D": (
                "2024-01-01",
                [
                    ("2024-01-01", P, 100, "2024-03-01"),
                    ("2024-01-02", P, 80, "2024-03-21"),  # pushed 20 days, amount cut
                    ("2024-01-03", Q, 80, "2024-03-11"),  # pulled in 10 days
                    ("2024-01-05", LOST, 50, "2024-01-05"),  # closing row: an outcome, not a revision
                ],
            )
        }
    )
    m = _moves_of(h, "D")
    assert m["close_date_days"] == [0.0, 20.0, -10.0, 0.0]
    assert m["amount_change"] == [0.0, -20.0, 0.0, 0.0]
    so_far = {name: v.tolist() for name, v in h.so_far.items()}
    assert so_far["close_date_pushes"] == [0, 1, 1, 1] and so_far["days_pushed"] == [0.0, 20.0, 20.0, 20.0]
    assert so_far["close_date_pull_ins"] == [0, 0, 1, 1] and so_far["amount_changes"] == [0, 1, 1, 1]
    assert so_far["stage_changes"] == [0, 0, 1, 2]


def test_a_row_that_only_revises_starts_no_visit():
    _, h = _history(
        {"A": ("2024-01-01", [("2024-01-01", P, 1, CD), ("2024-01-02", P, 2, CD), ("2024-01-03", Q, 2, CD)])}
    )
    assert h.new_visit.tolist() == [True, False, True]
    v = h.visits("2024-02-01")
    assert v.stage.tolist() == [0, 1] and v.dest.tolist() == [1, -1]
    assert v.days.tolist() == [2.0, 29.0]


# ------------------------------------------------------------------------------------------------ visits
def _visit_table(data: CRMData, v) -> pd.DataFrame:
    names = np.asarray(data.process.stage_names, dtype=object)
    return pd.DataFrame(
        {
            "opportunity_id": data.opportunities["opportunity_id"].to_numpy()[v.deal_pos[v.deal]],
            "stage": names[v.stage],
            "entered_at": v.entered.view("datetime64[us]"),
            "next_stage": np.where(v.dest >= 0, names[np.maximum(v.dest, 0)], None),
            "days": v.days,
        }
    )


def _reference_visits(data: CRMData, t: pd.Timestamp) -> pd.DataFrame:
    ref = stage_visits(known_at(data, t), as_of=t)
    return pd.DataFrame(
        {
            "opportunity_id": ref["opportunity_id"].to_numpy(dtype=object),
            "stage": ref["stage"].to_numpy(dtype=object),
            "entered_at": ref["entered_at"].to_numpy("datetime64[us]"),
            "next_stage": ref["next_stage"].astype(object).where(ref["next_stage"].notna(), None).to_numpy(),
            "days": ref["days"].to_numpy(),
        }
    )


@pytest.mark.parametrize("cutoff", ["2024-01-01", "2024-09-02 13:30", "2025-06-01"])
def test_visits_as_known_at_a_date_equal_those_of_known_at(sample, sample_history, cutoff):
    t = pd.Timestamp(cutoff)
    got = _visit_table(sample, sample_history.visits(t))
    pd.testing.assert_frame_equal(got, _reference_visits(sample, t))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from(["2024-02-01", "2024-03-10 12:00", "2024-05-01"]))
def test_visits_equal_known_at_on_random_histories(seed, cutoff):
    data = validate(random_crm(30, seed=seed))
    t = pd.Timestamp(cutoff)
    got = _visit_table(data, DealHistory.from_data(data).visits(t))
    pd.testing.assert_frame_equal(got, _reference_visits(data, t))


def test_known_deals_are_those_known_at_keeps(sample, sample_history):
    for cutoff in ("2024-01-01", "2025-01-01"):
        kept = set(known_at(sample, cutoff).opportunities["opportunity_id"])
        assert set(sample_history.ids[sample_history.known_deals(cutoff)]) == kept


# ------------------------------------------------------------------------------------------------ states
def test_row_in_force_equals_a_scan_of_the_intervals(sample, sample_history):
    iv = stage_intervals(sample)
    rng = np.random.default_rng(0)
    ids = np.r_[rng.choice(sample.opportunities["opportunity_id"].to_numpy(), 300), ["no such deal"]]
    lo, hi = to_us("2023-01-01"), to_us("2026-01-01")
    times = rng.integers(lo, hi, len(ids))
    got = sample_history.row_at(ids, times)
    start = us(iv["start"])
    for oid, t, row in zip(ids, times, got, strict=True):
        mine = np.flatnonzero((iv["opportunity_id"] == oid).to_numpy() & (start <= t))
        assert row == (mine[-1] if len(mine) else -1)


def test_snapshot_rows_equal_pipeline_snapshots(sample, sample_history):
    dates = to_dates(pd.date_range("2023-06-01", "2025-12-01", freq="MS"))
    rows, date_idx = sample_history.snapshot_rows(dates)
    snap = pipeline_snapshots(sample, dates)
    h = sample_history
    assert (snap["as_of"].to_numpy() == dates.to_numpy()[date_idx]).all()
    assert (snap["opportunity_id"].to_numpy() == h.ids.to_numpy()[h.deal[rows]]).all()
    np.testing.assert_array_equal(snap["amount"].to_numpy(), h.amount[rows])
    np.testing.assert_array_equal(us(snap["stage_entered_at"]), h.entered[rows])
    np.testing.assert_array_equal(h.stage[rows], sample.process.stage_codes(snap["stage"]))


def test_won_rows_are_won_states_by_close_date(sample_history):
    h = sample_history
    won = h.won_rows()
    assert np.isin(h.stage[won], h.won_codes).all()
    assert len(won) == int(np.isin(h.stage, h.won_codes).sum())
    assert (np.diff(h.close[won]) >= 0).all()
    assert (h.end[won] == NEVER).sum() == len(np.unique(h.deal[won][h.end[won] == NEVER]))


# ------------------------------------------------------------------------------------------------ counts
def _check_counts_so_far(data: CRMData, h: DealHistory, cutoff: str) -> None:
    """The running counts at the row in force at `cutoff` equal the per-deal counts of the data known then."""
    adh = deal_adherence(known_at(data, cutoff), as_of=cutoff).set_index("opportunity_id")
    open_now = adh.loc[adh["outcome"] == "open"]
    ids = open_now.index.to_numpy()
    row = h.row_at(ids, np.full(len(ids), to_us(cutoff)))
    assert (row >= 0).all()
    assert len(h.so_far) == 7
    for c, cum in h.so_far.items():  # named as the deal_adherence counts
        np.testing.assert_allclose(cum[row], open_now[c].to_numpy(), err_msg=c)


@pytest.mark.parametrize("cutoff", ["2024-06-17 13:30", "2025-03-03"])
def test_counts_so_far_sum_the_moves_known_then(sample, sample_history, cutoff):
    _check_counts_so_far(sample, sample_history, cutoff)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 100_000))
def test_counts_so_far_on_random_histories(seed):
    data = validate(complete_history_crm(30, seed=seed))
    h = DealHistory.from_data(data)
    for cutoff in ("2024-02-01", "2024-03-10 12:00", "2024-05-01"):
        _check_counts_so_far(data, h, cutoff)


def test_a_deals_first_row_has_no_previous_stage():
    h = DealHistory.from_data(load_sample())
    assert (h.moves.previous[h.first] == -1).all()
    later = ~h.first
    np.testing.assert_array_equal(h.moves.previous[later], h.stage[np.flatnonzero(later) - 1])
