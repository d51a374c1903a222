"""The vectorised paths of `salesforecast.snapshots` equal plain pandas references, row for row and dtype for dtype.

The references are the straightforward pandas versions (`_intervals_plain`, and below the plain assembly of
snapshots and the plain `known_at`); the data are hand-made edge cases and random histories, in table order and
shuffled.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from salesforecast._utils import arrow_strings, isin, positions
from salesforecast.schema import CRMData, validate
from salesforecast.snapshots import (
    DEFAULT_COLUMNS,
    _intervals,
    _intervals_fast,
    _intervals_plain,
    known_at,
    pipeline_snapshots,
    snapshot_rows,
    stage_intervals,
    to_dates,
)
from tests.factories import random_crm

# ------------------------------------------------------------------------------------------------ references


def _plain_isin(s: pd.Series, values) -> pd.Series:
    uniques = pd.Index(pd.unique(pd.Series(values).dropna()))
    if len(uniques) == 0:
        return pd.Series(np.zeros(len(s), dtype=bool), index=s.index)
    return pd.Series(uniques.get_indexer(s) >= 0, index=s.index)


def _plain_snapshots(data: CRMData, as_of, columns=None) -> pd.DataFrame:
    dates = to_dates(as_of)
    iv, _, iv_opp_pos = _intervals_plain(data)
    rows, date_idx = snapshot_rows(iv, dates)
    sel = iv.iloc[rows].reset_index(drop=True)
    when = pd.Series(dates[date_idx], name="as_of")
    day = np.timedelta64(86_400_000_000, "us")
    out = pd.DataFrame(
        {
            "as_of": when.to_numpy("datetime64[us]"),
            "opportunity_id": sel["opportunity_id"],
            "stage": sel["stage"],
            "amount": sel["amount"],
            "close_date": sel["close_date"],
            "forecast_category": sel["forecast_category"],
            "created_at": sel["created_at"],
            "stage_entered_at": sel["stage_entered_at"],
        }
    )
    asof_us = out["as_of"].to_numpy("datetime64[us]")
    past = out["as_of"] < data.as_of
    out["close_date"] = out["close_date"].mask(out["stage"].isna())  # an unknown state: no close date
    hist = data.stage_history
    if hist["close_date"].isna().all():  # never recorded: unknown at past dates
        out["close_date"] = out["close_date"].mask(past)
    if hist["forecast_category"].isna().all():
        default = out["stage"].map(data.process.forecast_category).astype("str")
        out["forecast_category"] = out["forecast_category"].mask(past, default)
    out["days_in_stage"] = (asof_us - sel["stage_entered_at"].to_numpy("datetime64[us]")) / day
    out["age_days"] = (asof_us - sel["created_at"].to_numpy("datetime64[us]")) / day
    if columns is None:
        columns = [c for c in DEFAULT_COLUMNS if c in data.opportunities.columns]
    for c in columns:
        out[c] = data.opportunities[c].take(iv_opp_pos[rows]).reset_index(drop=True)
    return out


def _plain_known_at(data: CRMData, cutoff) -> CRMData:
    cutoff = pd.Timestamp(cutoff)
    process = data.process
    opps = data.opportunities
    hist = data.stage_history
    created = opps.loc[opps["created_at"] <= cutoff]
    known_rows = (hist["changed_at"] <= cutoff).to_numpy() & _plain_isin(
        hist["opportunity_id"], created["opportunity_id"]
    ).to_numpy()
    h = hist.loc[known_rows]
    has_any = _plain_isin(created["opportunity_id"], hist["opportunity_id"])
    has_known = _plain_isin(created["opportunity_id"], h["opportunity_id"])
    bare_ok = ~has_any & (~created["is_closed"] | (created["close_date"] <= cutoff))
    kept = created.loc[has_known | bare_ok].copy()
    closed_ids = hist.loc[process.is_closed(hist["stage"]), "opportunity_id"]
    no_terminal = ~_plain_isin(kept["opportunity_id"], closed_ids)
    last_change = hist.groupby("opportunity_id", sort=False)["changed_at"].max()
    last_change = last_change.reindex(kept["opportunity_id"].to_numpy()).to_numpy("datetime64[us]")
    close_when = np.maximum(
        kept["close_date"].to_numpy("datetime64[us]"), kept["created_at"].to_numpy("datetime64[us]")
    )
    close_when = np.where(np.isnat(last_change), close_when, np.maximum(close_when, last_change))
    closed_then = kept["is_closed"].to_numpy() & no_terminal.to_numpy() & (close_when <= cutoff.to_datetime64())
    current = kept[["stage", "is_closed", "is_won", "close_date"]].copy()
    if len(h):
        cols = [c for c in ("stage", "amount", "close_date", "forecast_category") if c in h.columns]
        last = h.sort_values("changed_at", kind="stable").groupby("opportunity_id", sort=False)[cols].last()
        last = last.reindex(kept["opportunity_id"].to_numpy())
        for c in cols:
            known = last[c].notna().to_numpy()
            if c in kept.columns:
                values = kept[c].to_numpy(copy=True)
                values[known] = last[c].to_numpy()[known]
                kept[c] = pd.Series(values, index=kept.index, dtype=kept[c].dtype)
        stage = kept["stage"]
        in_hist = has_known.loc[kept.index].to_numpy()
        kept["is_closed"] = np.where(in_hist, process.is_closed(stage).to_numpy(), kept["is_closed"].to_numpy())
        kept["is_won"] = np.where(in_hist, process.is_won(stage).to_numpy(), kept["is_won"].to_numpy())
        for c in current.columns:
            kept[c] = kept[c].where(~closed_then, current[c])
    if cutoff < data.as_of:  # fields the history never recorded: unknown for deals open then
        open_then = ~kept["is_closed"]
        if hist["close_date"].isna().all():
            kept["close_date"] = kept["close_date"].mask(open_then)
        if hist["forecast_category"].isna().all() and "forecast_category" in kept.columns:
            default = kept["stage"].map(process.forecast_category).astype(kept["forecast_category"].dtype)
            kept["forecast_category"] = kept["forecast_category"].mask(open_then, default)
    return dataclasses.replace(data, opportunities=kept.reset_index(drop=True), stage_history=h.reset_index(drop=True))


# ------------------------------------------------------------------------------------------------ data

_D = pd.Timestamp


def _edge_tables(with_category: bool = False) -> dict[str, pd.DataFrame]:
    """Hand-made deals, one per edge case (see the comments)."""
    nan, nat = np.nan, pd.NaT
    deals = {
        # ties at one timestamp, a regression, a terminal stage; amounts and close dates partly missing
        "D01": (
            "2024-01-01 09:00",
            ("Closed Won", 130, "2024-02-01", True, True),
            [
                ("2024-01-01 09:00", "Prospecting", 100, "2024-02-01", "pipeline"),
                ("2024-01-10 00:00", "Needs Analysis", nan, nat, nan),
                ("2024-01-10 00:00", "Qualification", 120, nat, "best case"),
                ("2024-01-20 00:00", "Needs Analysis", nan, "2024-02-15", nan),
                ("2024-02-01 00:00", "Closed Won", 130, "2024-02-01", nan),
            ],
        ),
        "D02": ("2024-01-03 12:00", ("Qualification", 50, "2024-04-01", False, False), []),  # open, no history
        "D03": ("2024-01-04 12:00", ("Closed Won", 70, "2024-03-01", True, True), []),  # closed, no history
        # closed, no history, close date (a day) before its creation time: closes at creation
        "D04": ("2024-01-05 15:00", ("Closed Lost", 10, "2024-01-05", True, False), []),
        # history starting days after creation: unknown stage until then
        "D05": (
            "2024-01-01 00:00",
            ("Proposal/Price Quote", 80, "2024-03-01", False, False),
            [
                ("2024-01-05 00:00", "Qualification", 80, "2024-03-01", nan),
                ("2024-01-20 00:00", "Proposal/Price Quote", nan, nat, "commit"),
            ],
        ),
        # closed now, history never terminal, close date before the last change
        "D06": (
            "2024-01-02 00:00",
            ("Closed Lost", 40, "2024-02-01", True, False),
            [
                ("2024-01-02 00:00", "Prospecting", 40, "2024-03-01", nan),
                ("2024-02-10 00:00", "Value Proposition", nan, nat, nan),
            ],
        ),
        # closed now, history never terminal, close date after the last change
        "D07": (
            "2024-01-02 00:00",
            ("Closed Won", 60, "2024-03-01", True, True),
            [("2024-01-02 00:00", "Prospecting", nan, nat, nan)],
        ),
        # a change hours before creation (within the day of slack)
        "D08": (
            "2024-01-02 10:00",
            ("Negotiation/Review", 90, "2024-02-20", False, False),
            [
                ("2024-01-02 08:00", "Prospecting", 90, nat, nan),
                ("2024-01-03 00:00", "Negotiation/Review", nan, "2024-02-20", nan),
            ],
        ),
        # duplicate timestamps in the same stage, then a change at the same moment
        "D09": (
            "2024-01-05 00:00",
            ("Qualification", 30, "2024-02-05", False, False),
            [
                ("2024-01-05 00:00", "Prospecting", 10, nat, nan),
                ("2024-01-05 00:00", "Prospecting", 20, nat, "omitted"),
                ("2024-01-05 00:00", "Qualification", nan, nat, nan),
                ("2024-01-07 00:00", "Qualification", 30, "2024-02-05", nan),
                ("2024-01-07 00:00", "Qualification", 30, "2024-02-05", nan),
            ],
        ),
        # late history and closed without a terminal stage
        "D10": (
            "2024-01-01 00:00",
            ("Closed Lost", 20, "2024-01-15", True, False),
            [("2024-01-10 00:00", "Qualification", 20, nat, nan)],
        ),
        # categories only in history, nothing else recorded
        "D11": (
            "2024-01-03 00:00",
            ("Qualification", 15, "2024-05-01", False, False),
            [
                ("2024-01-03 00:00", "Prospecting", nan, nat, "commit"),
                ("2024-01-04 00:00", "Qualification", nan, nat, nan),
            ],
        ),
    }
    opps, hist = [], []
    for i, (oid, (created, (stage, amount, close, is_closed, is_won), rows)) in enumerate(deals.items()):
        opps.append(
            {
                "opportunity_id": oid,
                "owner": ["ann", "bo", "cy"][i % 3],
                "team": ["east", "west"][i % 2],
                "created_at": _D(created),
                "stage": stage,
                "amount": float(amount),
                "close_date": _D(close),
                "is_closed": is_closed,
                "is_won": is_won,
                "account_id": f"ACC{i % 4}",
            }
        )
        if with_category:
            opps[-1]["forecast_category"] = ["pipeline", "commit", None][i % 3] if not is_closed else "closed"
        for when, h_stage, h_amount, h_close, category in rows:
            hist.append(
                {
                    "opportunity_id": oid,
                    "changed_at": _D(when),
                    "stage": h_stage,
                    "amount": h_amount,
                    "close_date": pd.NaT if pd.isna(h_close) else _D(h_close),
                    "forecast_category": None if pd.isna(category) else category,
                }
            )
    opps_df, hist_df = pd.DataFrame(opps), pd.DataFrame(hist)
    for df, cols in ((opps_df, ("created_at", "close_date")), (hist_df, ("changed_at", "close_date"))):
        for c in cols:
            df[c] = df[c].astype("datetime64[us]")
    return {"opportunities": opps_df, "stage_history": hist_df}


def _variants(data: CRMData, seed: int = 0) -> dict[str, CRMData]:
    """The same data in other row orders (and with other index labels)."""
    rng = np.random.default_rng(seed)
    opps, hist = data.opportunities, data.stage_history
    o_perm, h_perm = rng.permutation(len(opps)), rng.permutation(len(hist))
    return {
        "as is": data,
        "shuffled": dataclasses.replace(
            data,
            opportunities=opps.iloc[o_perm].reset_index(drop=True),
            stage_history=hist.iloc[h_perm].reset_index(drop=True),
        ),
        "shuffled, labels kept": dataclasses.replace(
            data, opportunities=opps.iloc[o_perm], stage_history=hist.iloc[h_perm]
        ),
        "history reversed": dataclasses.replace(data, stage_history=hist.iloc[::-1].reset_index(drop=True)),
        "opportunities reversed": dataclasses.replace(data, opportunities=opps.iloc[::-1].reset_index(drop=True)),
    }


def _edge_data(with_category: bool = False) -> CRMData:
    data = validate(_edge_tables(with_category))
    assert len(data.quarantine) == 0, data.quarantine
    return data


def _all_dates(data: CRMData) -> list:
    times = pd.concat([data.opportunities["created_at"], data.stage_history["changed_at"]])
    return [
        "2023-12-01",
        *times.drop_duplicates().tolist(),
        *(times + pd.Timedelta(hours=1)).drop_duplicates().tolist(),
        *pd.date_range("2024-01-01", "2024-04-01", freq="3D"),
        "2030-01-01",
    ]


def _datasets():
    yield "edge", _edge_data()
    yield "edge with categories", _edge_data(with_category=True)
    for seed in (1, 2, 3):
        yield f"random {seed}", validate(random_crm(60, seed=seed))


_CASES = [(f"{name} / {how}", d) for name, data in _datasets() for how, d in _variants(data).items()]


def _assert_same_intervals(data: CRMData) -> None:
    got, got_codes, got_pos = _intervals(data)
    want, want_codes, want_pos = _intervals_plain(data)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got_codes.dtype == want_codes.dtype == np.int64
    assert got_pos.dtype == want_pos.dtype == np.int64
    np.testing.assert_array_equal(got_codes, want_codes)
    np.testing.assert_array_equal(got_pos, want_pos)


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize(("name", "data"), _CASES, ids=[c[0] for c in _CASES])
def test_intervals_equal_the_plain_way(name, data):
    assert _intervals_fast(data) is not None  # validated tables: the vectorised path, not the fallback
    _assert_same_intervals(data)
    pd.testing.assert_frame_equal(stage_intervals(data), _intervals_plain(data)[0], check_exact=True)


@pytest.mark.parametrize(("name", "data"), _CASES, ids=[c[0] for c in _CASES])
def test_snapshots_equal_the_plain_way(name, data):
    dates = _all_dates(data)
    got = pipeline_snapshots(data, dates)
    pd.testing.assert_frame_equal(got, _plain_snapshots(data, dates), check_exact=True)
    assert got["opportunity_id"].dtype == "str" and got["as_of"].dtype == "datetime64[us]"
    cols = [c for c in ("owner", "amount", "is_won", "created_at", "account_id") if c in data.opportunities.columns]
    for columns in (cols, []):
        got = pipeline_snapshots(data, dates[::3], columns=columns)
        pd.testing.assert_frame_equal(got, _plain_snapshots(data, dates[::3], columns=columns), check_exact=True)


@pytest.mark.parametrize(("name", "data"), _CASES, ids=[c[0] for c in _CASES])
def test_known_at_equals_the_plain_way(name, data):
    times = data.stage_history["changed_at"]
    for cutoff in ("2023-12-01", times.min(), times.median(), times.max() - pd.Timedelta(seconds=1), "2030-01-01"):
        got, want = known_at(data, cutoff), _plain_known_at(data, cutoff)
        for table in ("opportunities", "stage_history"):
            pd.testing.assert_frame_equal(getattr(got, table), getattr(want, table), check_exact=True)


def test_edge_cases_read_as_documented():
    data = _edge_data()
    iv = stage_intervals(data).set_index("opportunity_id")
    # no history, closed: unknown stage from creation to the close date, then the closed stage
    d03 = iv.loc["D03"]
    assert d03["stage"].isna().tolist() == [True, False] and d03["stage"].iloc[1] == "Closed Won"
    assert d03["start"].tolist() == [_D("2024-01-04 12:00"), _D("2024-03-01")]
    # closed a day before its creation time: closes at creation
    assert iv.loc["D04", "start"].tolist() == [_D("2024-01-05 15:00")] * 2
    # late history: unknown stage until its first change
    d05 = iv.loc["D05"]
    assert d05["stage"].isna().tolist() == [True, False, False]
    # never reaches a terminal stage: closes at the later of its close date and last change
    assert iv.loc["D06"]["start"].iloc[-1] == _D("2024-02-10") and iv.loc["D06"]["stage"].iloc[-1] == "Closed Lost"
    assert iv.loc["D07"]["start"].iloc[-1] == _D("2024-03-01")
    # ties: reading order; a repeated stage is one run
    d09 = iv.loc["D09"]
    assert d09["stage"].tolist()[-1] == "Qualification"
    assert d09["stage_entered_at"].iloc[-1] == _D("2024-01-05")
    # categories carried forward, else the stage's default
    assert iv.loc["D11", "forecast_category"].tolist() == ["commit", "commit"]
    assert iv.loc["D02", "forecast_category"] == "pipeline"


def test_other_shapes_take_the_plain_way():
    """Tables that were not validated (other dtypes, an unknown opportunity, no history) still give the plain
    results; duplicate opportunity ids fail the same way."""
    data = _edge_data()
    opps, hist = data.opportunities, data.stage_history
    shapes = [
        dataclasses.replace(data, opportunities=opps.astype({"opportunity_id": object})),
        dataclasses.replace(data, stage_history=hist.astype({"opportunity_id": object, "stage": object})),
        dataclasses.replace(data, stage_history=hist.assign(stage=hist["stage"].where(hist.index != 3, "\x00"))),
        dataclasses.replace(data, stage_history=hist.iloc[:0]),
        dataclasses.replace(
            data,
            opportunities=opps.astype({"owner": "string[pyarrow]", "stage": "string[pyarrow]"}),
            stage_history=hist.astype({"opportunity_id": "string[pyarrow]"}),
        ),
        dataclasses.replace(data, opportunities=opps.astype({"created_at": "datetime64[ns]"})),
    ]
    for d in shapes:
        _assert_same_intervals(d)
        dates = _all_dates(d)
        pd.testing.assert_frame_equal(pipeline_snapshots(d, dates), _plain_snapshots(d, dates), check_exact=True)
    for d in shapes + [dataclasses.replace(data, stage_history=hist.assign(opportunity_id="ZZZ"))]:
        for cutoff in ("2024-01-05", "2024-02-05"):
            got, want = known_at(d, cutoff), _plain_known_at(d, cutoff)
            pd.testing.assert_frame_equal(got.opportunities, want.opportunities, check_exact=True)
            pd.testing.assert_frame_equal(got.stage_history, want.stage_history, check_exact=True)
    dup = dataclasses.replace(data, opportunities=pd.concat([opps, opps.iloc[:1]], ignore_index=True))
    with pytest.raises(Exception) as plain:
        _intervals_plain(dup)
    with pytest.raises(type(plain.value)):
        _intervals(dup)
    got, want = known_at(dup, "2024-02-05"), _plain_known_at(dup, "2024-02-05")
    pd.testing.assert_frame_equal(got.opportunities, want.opportunities, check_exact=True)


def test_missing_stage_sorts_with_nul_as_the_plain_way():
    """The plain way treats a missing stage and the stage ``"\\x00"`` as one run; so must the fast way."""
    data = _edge_data()
    hist = data.stage_history
    d = dataclasses.replace(data, stage_history=hist.assign(stage=hist["stage"].where(hist.index != 4, "\x00")))
    _assert_same_intervals(d)


def test_isin_and_positions_agree_with_pandas():
    rng = np.random.default_rng(0)
    values = pd.Series(rng.choice(["a", "b", "c", None, "é", ""], 200), dtype="str")
    keys = pd.Series(np.repeat(rng.choice(["a", "b", "x", None, "é", ""], 60), rng.integers(1, 5, 60)), dtype="str")
    for v in (values, values.iloc[:0], values.dropna(), pd.Series([None, None], dtype="str")):
        for k in (keys, keys.iloc[:0]):
            pd.testing.assert_series_equal(isin(k, v), _plain_isin(k, v))
            pd.testing.assert_series_equal(isin(k, v.astype(object)), _plain_isin(k, v))
    uniq = pd.Series(["b", "a", "é", "", "z"], dtype="str")
    want = pd.Index(uniq).get_indexer(keys)
    want[keys.isna().to_numpy()] = -1
    np.testing.assert_array_equal(positions(arrow_strings(keys), arrow_strings(uniq)), want)
    np.testing.assert_array_equal(positions(arrow_strings(keys.iloc[:1]), arrow_strings(uniq)), want[:1])
    same = pd.Series(["a", "a", "b", "c", "c"], dtype="str")
    np.testing.assert_array_equal(
        positions(arrow_strings(same), pa.array(["a", "b", "c"], pa.large_string())), [0, 0, 1, 2, 2]
    )
