from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesforecast.datasets import load_sample
from salesforecast.schema import CRMData, validate
from salesforecast.snapshots import pipeline_snapshots, stage_intervals
from tests.factories import random_crm


def _naive(data: CRMData, dates) -> pd.DataFrame:
    """Per date, per deal: the last change at or before t (reading order breaks ties), by plain loops."""
    p = data.process
    hist = data.stage_history.reset_index(drop=True)
    rows = []
    for t in pd.to_datetime(sorted(set(dates))):
        for opp in data.opportunities.itertuples(index=False):
            if opp.created_at > t:
                continue
            h = hist[hist["opportunity_id"] == opp.opportunity_id]
            h = h.assign(_seq=np.arange(len(h))).sort_values(["changed_at", "_seq"], kind="stable")
            known = h[h["changed_at"] <= t]
            upto = known if len(known) else h.iloc[:1]
            state = upto.iloc[-1]
            if state["stage"] not in p.open_stages:
                continue
            amounts = upto["amount"].dropna()
            closes = upto["close_date"].dropna()
            # when the deal entered its current stage: the earliest row of the trailing run of that stage;
            # the first row of a history holds from creation on
            run_start = len(upto) - 1
            while run_start > 0 and upto.iloc[run_start - 1]["stage"] == state["stage"]:
                run_start -= 1
            entered = opp.created_at if run_start == 0 else max(upto.iloc[run_start]["changed_at"], opp.created_at)
            rows.append(
                {
                    "as_of": t,
                    "opportunity_id": opp.opportunity_id,
                    "stage": state["stage"],
                    "amount": _first_known(amounts, h["amount"], opp.amount),
                    "close_date": _first_known(closes, h["close_date"], opp.close_date),
                    "stage_entered_at": entered,
                }
            )
    return pd.DataFrame(rows)


def _first_known(upto, whole, current):
    """The last value known so far; else the opportunity's current value (never a later history row)."""
    return upto.iloc[-1] if len(upto) else current


def _dates(data: CRMData, n: int, seed: int) -> list[pd.Timestamp]:
    rng = np.random.default_rng(seed)
    lo = data.opportunities["created_at"].min().value
    hi = data.stage_history["changed_at"].max().value
    picks = rng.integers(lo, hi, size=n)
    # include exact change times: a change at t is known at t
    exact = data.stage_history["changed_at"].sample(min(3, len(data.stage_history)), random_state=seed)
    return sorted({pd.Timestamp(int(x)) for x in picks} | set(exact))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 100_000))
def test_equals_naive_reference_on_random_data(seed):
    data = validate(random_crm(25, seed=seed))
    dates = _dates(data, 6, seed)
    got = pipeline_snapshots(data, dates)
    want = _naive(data, dates)
    assert len(got) == len(want)
    if not len(want):
        return
    want = want.sort_values(["as_of", "opportunity_id"]).reset_index(drop=True)
    cols = ["as_of", "opportunity_id", "stage", "amount", "close_date", "stage_entered_at"]
    pd.testing.assert_frame_equal(got[cols], want[cols].astype(got[cols].dtypes.to_dict()), check_dtype=False)


def test_membership_rule_and_state_on_hand_made_history():
    opps = pd.DataFrame(
        {
            "opportunity_id": ["A", "B", "C"],
            "owner": ["ann", "bo", "cy"],
            "created_at": ["2024-01-01 09:00:00", "2024-01-05 00:00:00", "2024-01-10 00:00:00"],
            "stage": ["Closed Won", "Qualification", "Prospecting"],
            "amount": [100, 200, 300],
            "close_date": ["2024-02-01", "2024-03-01", "2024-03-15"],
            "is_closed": [True, False, False],
            "is_won": [True, False, False],
        }
    )
    hist = pd.DataFrame(
        {
            "opportunity_id": ["A", "A", "A", "A", "B", "B", "B"],
            "changed_at": [
                "2024-01-01 09:00:00",
                "2024-01-10 00:00:00",
                "2024-01-20 00:00:00",
                "2024-02-01 00:00:00",
                "2024-01-05 00:00:00",
                "2024-01-20 00:00:00",
                "2024-01-20 00:00:00",
            ],
            "stage": [
                "Prospecting",
                "Needs Analysis",
                "Qualification",
                "Closed Won",
                "Prospecting",
                "Prospecting",
                "Qualification",
            ],
            "amount": [90, None, 110, 100, 200, None, None],
            "close_date": ["2024-01-25", None, "2024-01-30", "2024-02-01", None, None, None],
        }
    )
    data = validate({"opportunities": opps, "stage_history": hist})
    snap = pipeline_snapshots(
        data, ["2024-01-01 08:59:59", "2024-01-01 09:00:00", "2024-01-10", "2024-01-20", "2024-02-01", "2024-04-01"]
    )
    by = {(str(r.as_of), r.opportunity_id): r for r in snap.itertuples()}
    assert ("2024-01-01 08:59:59", "A") not in by  # not yet created
    a = by[("2024-01-01 09:00:00", "A")]
    assert (a.stage, a.amount, str(a.close_date.date())) == ("Prospecting", 90.0, "2024-01-25")
    a = by[("2024-01-10 00:00:00", "A")]  # skip to Needs Analysis; amount carried forward
    assert (a.stage, a.amount, a.days_in_stage) == ("Needs Analysis", 90.0, 0.0)
    a = by[("2024-01-20 00:00:00", "A")]  # regression to Qualification
    assert (a.stage, a.amount, str(a.close_date.date())) == ("Qualification", 110.0, "2024-01-30")
    assert ("2024-02-01 00:00:00", "A") not in by  # closed at the moment of the change
    b = by[("2024-01-20 00:00:00", "B")]  # two changes at the same moment: the later row wins
    assert b.stage == "Qualification"
    assert b.stage_entered_at == pd.Timestamp("2024-01-20")
    assert by[("2024-04-01 00:00:00", "B")].days_in_stage == pytest.approx(72.0)
    # C has no history: its current stage from creation on, with a current amount
    assert by[("2024-01-20 00:00:00", "C")].stage == "Prospecting"
    assert ("2024-01-01 09:00:00", "C") not in by
    assert snap["as_of"].dtype == "datetime64[us]"
    assert (snap["owner"].dtype == "str") and snap.loc[snap["opportunity_id"] == "B", "owner"].eq("bo").all()


def test_closed_without_terminal_history_closes_at_close_date():
    opps = pd.DataFrame(
        {
            "opportunity_id": ["A", "B"],
            "owner": ["ann", "bo"],
            "created_at": ["2024-01-01", "2024-01-01"],
            "stage": ["Closed Lost", "Closed Won"],
            "amount": [100, 50],
            "close_date": ["2024-02-01", "2024-03-01"],
            "is_closed": [True, True],
            "is_won": [False, True],
        }
    )
    hist = pd.DataFrame({"opportunity_id": ["A"], "changed_at": ["2024-01-01"], "stage": ["Value Proposition"]})
    data = validate({"opportunities": opps, "stage_history": hist})
    snap = pipeline_snapshots(data, ["2024-01-15", "2024-02-15", "2024-03-15"])
    got = [(str(r.as_of.date()), r.opportunity_id, None if pd.isna(r.stage) else r.stage) for r in snap.itertuples()]
    assert got == [
        ("2024-01-15", "A", "Value Proposition"),
        ("2024-01-15", "B", None),  # closed, no history: open in an unknown stage until it closed
        ("2024-02-15", "B", None),
    ]


def test_partitions_concatenate_to_the_whole():
    data = validate(random_crm(60, seed=7))
    dates = _dates(data, 12, 7)
    whole = pipeline_snapshots(data, dates)
    ids = data.opportunities["opportunity_id"]
    parts = []
    for k in range(3):
        keep = ids[ids.str[-1].astype(int) % 3 == k]
        sub = validate(
            {
                "opportunities": data.opportunities[data.opportunities["opportunity_id"].isin(keep)],
                "stage_history": data.stage_history[data.stage_history["opportunity_id"].isin(keep)],
            }
        )
        parts.append(pipeline_snapshots(sub, dates))
    merged = pd.concat(parts).sort_values(["as_of", "opportunity_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, whole)


def test_intervals_tile_each_deal_life():
    data = validate(random_crm(40, seed=11))
    iv = stage_intervals(data)
    for _, g in iv.groupby("opportunity_id"):
        assert g["start"].iloc[0] == g["created_at"].iloc[0]
        assert (g["end"].iloc[:-1].to_numpy() == g["start"].iloc[1:].to_numpy()).all()
        assert pd.isna(g["end"].iloc[-1])


def test_no_dates_and_bad_columns():
    data = validate(random_crm(5, seed=1))
    assert pipeline_snapshots(data, []).empty
    with pytest.raises(KeyError, match="nope"):
        pipeline_snapshots(data, "2024-02-01", columns=["nope"])


def test_history_starting_late_is_unknown_stage_until_first_change():
    opps = pd.DataFrame(
        {
            "opportunity_id": ["A", "B"],
            "owner": ["ann", "bo"],
            "created_at": ["2024-01-01", "2024-01-01"],
            "stage": ["Closed Won", "Negotiation/Review"],
            "amount": [100, 50],
            "close_date": ["2024-06-15", "2024-09-01"],
            "is_closed": [True, False],
            "is_won": [True, False],
        }
    )
    hist = pd.DataFrame(
        {
            "opportunity_id": ["A", "B"],
            "changed_at": ["2024-06-15", "2024-06-15"],
            "stage": ["Closed Won", "Negotiation/Review"],
            "amount": [100, 40],
        }
    )
    data = validate({"opportunities": opps, "stage_history": hist})
    snap = pipeline_snapshots(data, ["2024-03-01", "2024-07-01"])
    march = snap[snap["as_of"] == pd.Timestamp("2024-03-01")].set_index("opportunity_id")
    # both deals existed and were open in March, in a stage the history does not tell: never the later stage
    assert sorted(march.index) == ["A", "B"]
    assert march["stage"].isna().all()
    assert march.loc["B", "amount"] == 50.0  # no amount recorded by then: the current one, never a later row
    assert march["close_date"].isna().all()  # nor a close date (A's would be the date it was won)
    july = snap[snap["as_of"] == pd.Timestamp("2024-07-01")]
    assert july["opportunity_id"].tolist() == ["B"] and july["stage"].tolist() == ["Negotiation/Review"]


def test_empty_data_gives_empty_snapshots():
    data = validate({k: v.iloc[:0] for k, v in random_crm(3, seed=2).items()})
    snap = pipeline_snapshots(data, ["2024-01-01"])
    assert snap.empty and "stage" in snap.columns
    assert stage_intervals(data).empty
    assert pd.isna(data.as_of)


def test_as_of_must_be_dates():
    data = validate(random_crm(3, seed=2))
    with pytest.raises(ValueError, match="not numbers"):
        pipeline_snapshots(data, 20240101)
    with pytest.raises(ValueError, match="as_of"):
        pipeline_snapshots(data, ["2024-13-45"])


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 100_000))
def test_snapshot_at_t_needs_nothing_after_t(seed):
    from salesforecast.snapshots import known_at

    data = validate(random_crm(25, seed=seed))
    for t in _dates(data, 3, seed):
        full = pipeline_snapshots(data, t)
        past = pipeline_snapshots(known_at(data, t), t)
        cols = ["opportunity_id", "stage", "amount", "close_date", "stage_entered_at"]
        pd.testing.assert_frame_equal(full[cols].reset_index(drop=True), past[cols].reset_index(drop=True))


@pytest.mark.parametrize("shape", ["full", "history_from_dates", "no_history_ids"])
def test_compact_text_columns_hold_the_same_values(shape):
    # strings="category": every text column dictionary-encoded, the same values as the str ones (missing stages of
    # unknown states, forecast categories the history never recorded: the stage's default at past dates)
    from salesforecast.datasets.shapes import history_from_dates

    data = load_sample()
    if shape == "history_from_dates":
        data = history_from_dates(data)
    elif shape == "no_history_ids":  # some deals without any history row: their state from creation
        hist = data.stage_history
        data = replace(data, stage_history=hist[hist["opportunity_id"] > "OPP-0150"].reset_index(drop=True))
    dates = pd.date_range("2023-06-01", "2025-12-01", freq="MS")
    plain = pipeline_snapshots(data, dates)
    compact = pipeline_snapshots(data, dates, strings="category")
    text = [c for c in plain.columns if plain[c].dtype == "str"]
    assert {"opportunity_id", "stage", "forecast_category", "owner"} <= set(text)
    assert all(isinstance(compact[c].dtype, pd.CategoricalDtype) for c in text)
    pd.testing.assert_frame_equal(compact.astype(dict.fromkeys(text, "str")), plain)
    with pytest.raises(ValueError, match="strings must be 'str' or 'category'"):
        pipeline_snapshots(data, dates, strings="arrow")
