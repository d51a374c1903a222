import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesforecast.movement import STEPS, pipeline_coverage, pipeline_waterfall, waterfall_deals
from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData, empty_table, validate
from salesforecast.snapshots import pipeline_snapshots
from tests.factories import deal_tables

PROCESS = SalesProcess.default()
OPEN = PROCESS.open_stages
BASE = pd.Timestamp("2024-01-01")
SIGN = {"start": 1, "in": 1, "out": -1, "end": 0}


# ---------------------------------------------------------------------------------------------- random histories
def _random_tables(
    integer: Callable[[int, int], int], choice: Callable[[Sequence[Any]], Any], n: int
) -> dict[str, pd.DataFrame]:
    """Raw canonical tables with `n` random histories, drawing with `integer(lo, hi)` and `choice(seq)`.

    Histories mix forward moves, skips, regressions, close-date pushes and pull-ins, amount changes (no stage
    change), wins and losses (the close date becomes the closing day, the amount may get a discount),
    reopenings, same-time ties and missing amounts / close dates in history rows.
    """
    opps, hist = [], []
    for i in range(n):
        oid = f"D{i:03d}"
        created = BASE + pd.Timedelta(days=integer(0, 200), minutes=integer(0, 1439))
        day0 = created.normalize()
        stage = integer(0, len(OPEN) - 1)
        close = day0 + pd.Timedelta(days=integer(0, 150))
        amount = float(integer(0, 60) * 500)
        t = created
        rows = [(t, OPEN[stage], amount, close)]
        closed = None
        for _ in range(integer(1, 7)):
            t = t + pd.Timedelta(minutes=choice([0, 30, 60 * 24, 60 * 24 * 9, 60 * 24 * 25, 60 * 24 * 50]))
            kind = choice(["close_date", "move", "close_date", "amount", "move", "won", "lost"])
            if closed is not None:
                if choice([False, True]):
                    continue  # nothing changes on a closed deal but its reopening
                kind = "reopen"
            if kind == "move":
                stage = int(np.clip(stage + choice([-2, -1, 1, 1, 2, 3]), 0, len(OPEN) - 1))
                rows.append((t, OPEN[stage], amount, close))
            elif kind == "reopen":
                closed = None
                stage = integer(0, len(OPEN) - 1)
                close = max(t.normalize(), day0) + pd.Timedelta(days=integer(0, 90))
                rows.append((t, OPEN[stage], amount, close))
            elif kind == "close_date":
                close = max(day0, close + pd.Timedelta(days=choice([40, -50, -20, -5, 10, 70, 100])))
                rows.append((t, OPEN[stage], amount, close))
            elif kind == "amount":
                amount = float(integer(0, 60) * 500)
                rows.append((t, OPEN[stage], amount, close))
            else:
                closed = kind
                close = max(t.normalize(), day0)
                if kind == "won" and choice([False, True]) and amount >= 500:
                    amount -= 500.0
                rows.append((t, PROCESS.won_stage if kind == "won" else PROCESS.lost_stage, amount, close))
        for j, (when, stg, amt, cd) in enumerate(rows):
            drop_amount = j > 0 and integer(0, 9) == 0
            drop_close = j > 0 and integer(0, 9) == 0
            hist.append(
                {
                    "opportunity_id": oid,
                    "changed_at": when,
                    "stage": stg,
                    "amount": np.nan if drop_amount else amt,
                    "close_date": pd.NaT if drop_close else cd,
                }
            )
        opps.append(
            {
                "opportunity_id": oid,
                "owner": f"rep{i % 3}",
                "team": f"team{i % 2}",
                "created_at": created,
                "stage": rows[-1][1],
                "amount": rows[-1][2],
                "close_date": rows[-1][3],
                "is_closed": closed is not None,
                "is_won": closed == "won",
            }
        )
    opp_df = pd.DataFrame(opps)
    hist_df = pd.DataFrame(hist)
    for df, c in ((opp_df, "created_at"), (opp_df, "close_date"), (hist_df, "changed_at"), (hist_df, "close_date")):
        df[c] = df[c].astype("datetime64[us]")
    return {"opportunities": opp_df, "stage_history": hist_df}


@st.composite
def crm_tables(draw: Callable[..., Any], max_deals: int = 10) -> dict[str, pd.DataFrame]:
    """Hypothesis strategy: `_random_tables` with 2 to `max_deals` deals."""
    n = draw(st.integers(2, max_deals))
    return _random_tables(lambda lo, hi: draw(st.integers(lo, hi)), lambda seq: draw(st.sampled_from(seq)), n)


def random_tables(n: int, seed: int) -> dict[str, pd.DataFrame]:
    """`_random_tables` with numpy's seeded generator (for many windows over one larger data set)."""
    rng = np.random.default_rng(seed)
    return _random_tables(lambda lo, hi: int(rng.integers(lo, hi + 1)), lambda seq: seq[int(rng.integers(len(seq)))], n)


def _crm(tables: dict[str, pd.DataFrame]) -> CRMData:
    data = validate(tables)
    assert data.quarantine.empty, data.quarantine[["table", "reason", "original"]].to_string()
    return data


def fast_crm(tables: dict[str, pd.DataFrame]) -> CRMData:
    """`CRMData` from tables known to be valid, without `validate` (10x faster, for property tests).

    `test_fast_crm_equals_validate` checks that it gives what `validate` gives on `crm_tables`.
    """
    opps = tables["opportunities"].astype(
        {"opportunity_id": "str", "owner": "str", "stage": "str", "amount": "float64", "team": "str"}
    )
    hist = tables["stage_history"].astype({"opportunity_id": "str", "stage": "str", "amount": "float64"})
    hist["forecast_category"] = pd.Series(pd.NA, index=hist.index, dtype="str")
    return CRMData(
        opportunities=opps.reset_index(drop=True),
        stage_history=hist.reset_index(drop=True),
        leads=empty_table("leads"),
        forecast_submissions=empty_table("forecast_submissions"),
        quotas=empty_table("quotas"),
        process=PROCESS,
        quarantine=pd.DataFrame(),
        counts=pd.DataFrame(),
    )


@settings(max_examples=5, deadline=None)
@given(crm_tables())
def test_fast_crm_equals_validate(tables):
    slow, fast = _crm(tables), fast_crm(tables)
    for name in ("opportunities", "stage_history"):
        pd.testing.assert_frame_equal(getattr(fast, name), getattr(slow, name)[getattr(fast, name).columns])


def _in_scope_snapshot(data: CRMData, when: pd.Timestamp, period: str | None) -> tuple[int, float]:
    snap = pipeline_snapshots(data, [when])
    if period is not None:
        lo, hi = data.process.calendar.period_bounds(period)
        snap = snap[(snap["close_date"] >= lo) & (snap["close_date"] < hi)]
    return len(snap), float(snap["amount"].fillna(0).sum())


def _level(wf: pd.DataFrame, step: str, col: str) -> float:
    return wf.loc[wf["step"] == step, col].iloc[0]


@st.composite
def crm_and_window(draw) -> tuple[dict[str, pd.DataFrame], pd.Timestamp, pd.Timestamp, str | None]:
    """Random tables, a window around their activity, and a period (none, or one near the window)."""
    tables = draw(crm_tables())
    times = tables["stage_history"]["changed_at"]
    anchor = times.iloc[draw(st.integers(0, len(times) - 1))]
    start = (anchor - pd.Timedelta(hours=draw(st.integers(0, 60 * 24)))).floor("h")
    end = start + pd.Timedelta(hours=draw(st.integers(0, 150 * 24)))
    cal = PROCESS.calendar
    nearby = [
        None,
        cal.period([start], "quarter").iloc[0],
        cal.period([end], "quarter").iloc[0],
        cal.period([end + pd.Timedelta(days=91)], "quarter").iloc[0],
        cal.period([start], "month").iloc[0],
        cal.period([start], "year").iloc[0],
    ]
    return tables, start, end, draw(st.sampled_from(nearby))


@settings(max_examples=30, deadline=None)
@given(crm_and_window())
def test_waterfall_reconciles_exactly_on_random_histories(case):
    tables, start, end, period = case
    data = fast_crm(tables)
    wf = pipeline_waterfall(data, start, end, period=period)
    sign = wf["direction"].map(SIGN).astype("int64")
    # opening + inflows - outflows = closing, exactly, in count and in amount
    assert int((wf["count"] * sign).sum()) == int(_level(wf, "closing pipeline", "count"))
    assert float((wf["amount"] * sign).sum()) == float(_level(wf, "closing pipeline", "amount"))
    # the two levels are the pipeline exactly as pipeline_snapshots rebuilds it (just before start and end)
    assert (_level(wf, "opening pipeline", "count"), _level(wf, "opening pipeline", "amount")) == _in_scope_snapshot(
        data, start - pd.Timedelta(microseconds=1), period
    )
    assert (_level(wf, "closing pipeline", "count"), _level(wf, "closing pipeline", "amount")) == _in_scope_snapshot(
        data, end - pd.Timedelta(microseconds=1), period
    )
    # every deal's own change is attributed once: its rows reconcile on their own
    rows = waterfall_deals(data, start, end, period=period)
    signed = rows.assign(
        c=rows["count"] * rows["direction"].map(SIGN).astype("int64"),
        a=rows["amount"] * rows["direction"].map(SIGN).astype("int64"),
    )
    per_deal = signed.groupby("opportunity_id")[["c", "a"]].sum()
    closing = rows[rows["step"] == "closing pipeline"].set_index("opportunity_id")
    want = pd.DataFrame({"c": closing["count"], "a": closing["amount"]}).reindex(per_deal.index, fill_value=0)
    pd.testing.assert_frame_equal(per_deal, want.astype(per_deal.dtypes.to_dict()), check_names=False)
    # a deal enters at most once and leaves at most once
    flows = rows[rows["direction"].isin(["in", "out"]) & (rows["count"] > 0)]
    assert not flows.duplicated(["opportunity_id", "direction"]).any()
    assert (wf["amount"] >= 0).all() and (wf["count"] >= 0).all()
    if period is None:
        assert wf.loc[wf["step"].isin(["pulled in", "slipped in", "pushed out", "pulled out"]), "deals"].eq(0).all()


def _check_reconciles(data: CRMData, start: pd.Timestamp, end: pd.Timestamp, period: str | None) -> pd.DataFrame:
    wf = pipeline_waterfall(data, start, end, period=period)
    sign = wf["direction"].map(SIGN).astype("int64")
    assert int((wf["count"] * sign).sum()) == int(_level(wf, "closing pipeline", "count"))
    assert float((wf["amount"] * sign).sum()) == float(_level(wf, "closing pipeline", "amount"))
    return wf


def test_every_bucket_reconciles_over_many_windows_of_one_random_crm():
    data = fast_crm(random_tables(150, seed=7))
    rng = np.random.default_rng(1)
    seen: set[str] = set()
    cal = PROCESS.calendar
    for _ in range(25):
        start = BASE + pd.Timedelta(hours=int(rng.integers(0, 330 * 24)))
        end = start + pd.Timedelta(hours=int(rng.integers(0, 120 * 24)))
        for period in (None, cal.period([start], "quarter").iloc[0], cal.period([end], "quarter").iloc[0]):
            wf = _check_reconciles(data, start, end, period)
            seen |= set(wf.loc[wf["deals"] > 0, "step"])
    # the random data exercise every step, so the reconciliation above is not vacuous
    assert seen == {s for s, _ in STEPS}


def test_steps_are_fixed_and_empty_window_is_flat():
    data = _crm(_hand_made())
    wf = pipeline_waterfall(data, "2024-07-01", "2024-07-01", period="FY2024Q3")
    assert wf["step"].tolist() == [s for s, _ in STEPS]
    flows = wf[wf["direction"].isin(["in", "out"])]
    assert flows[["deals", "count", "amount"]].eq(0).all().all()
    assert _level(wf, "opening pipeline", "count") == _level(wf, "closing pipeline", "count")
    with pytest.raises(ValueError, match="before start"):
        pipeline_waterfall(data, "2024-08-01", "2024-07-01")


# ---------------------------------------------------------------------------------------------- hand-made buckets
def _hand_made() -> dict[str, pd.DataFrame]:
    """One deal per bucket; window 2024-06-15 .. 2024-09-15, period FY2024Q3 (Jul 1 - Oct 1)."""
    deals = {
        # id: (created, [(changed_at, stage, amount, close_date), ...])
        "STAY": ("2024-06-01", [("2024-06-01", "Prospecting", 1000, "2024-08-30")]),
        "CREATED": ("2024-08-01", [("2024-08-01", "Qualification", 2000, "2024-09-20")]),
        "CREATED_WON": (
            "2024-07-01",
            [("2024-07-01", "Prospecting", 500, "2024-09-01"), ("2024-08-10", "Closed Won", 450, "2024-08-10")],
        ),
        "PULLED_IN": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 3000, "2024-11-15"), ("2024-08-01", "Prospecting", 3000, "2024-09-25")],
        ),
        "SLIPPED_IN": (
            "2024-05-01",
            [("2024-05-01", "Prospecting", 4000, "2024-06-28"), ("2024-07-20", "Prospecting", 4000, "2024-09-10")],
        ),
        "REOPENED": (
            "2024-05-01",
            [
                ("2024-05-01", "Prospecting", 5000, "2024-06-30"),
                ("2024-06-10", "Closed Lost", 5000, "2024-06-10"),
                ("2024-08-01", "Qualification", 5000, "2024-09-28"),
            ],
        ),
        "UP": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 1000, "2024-08-30"), ("2024-07-01", "Qualification", 1500, "2024-08-30")],
        ),
        "DOWN": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 2000, "2024-08-30"), ("2024-07-01", "Prospecting", 1200, "2024-08-30")],
        ),
        "WON": (
            "2024-06-01",
            [
                ("2024-06-01", "Negotiation/Review", 3000, "2024-08-30"),
                ("2024-08-20", "Closed Won", 2700, "2024-08-20"),
            ],
        ),
        "LOST": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 700, "2024-08-30"), ("2024-08-05", "Closed Lost", 700, "2024-08-05")],
        ),
        "PUSHED": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 800, "2024-08-30"), ("2024-09-01", "Prospecting", 800, "2024-10-20")],
        ),
        "PULLED_OUT": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 900, "2024-08-01"), ("2024-06-20", "Prospecting", 900, "2024-06-28")],
        ),
        # no step: never in scope, closed before start, created after end, created and lost outside the period
        "OUTSIDE": ("2024-06-01", [("2024-06-01", "Prospecting", 100, "2024-12-01")]),
        "CLOSED_BEFORE": (
            "2024-05-01",
            [("2024-05-01", "Prospecting", 100, "2024-07-30"), ("2024-06-01", "Closed Won", 100, "2024-06-01")],
        ),
        "LATE": ("2024-09-20", [("2024-09-20", "Prospecting", 100, "2024-09-25")]),
        "IN_OUT_Q2": (
            "2024-06-16",
            [("2024-06-16", "Prospecting", 100, "2024-06-25"), ("2024-06-20", "Closed Lost", 100, "2024-06-20")],
        ),
    }
    return deal_tables(deals, owner=lambda i, oid: "ann" if oid < "M" else "bo")


EXPECTED = {
    "STAY": {("opening pipeline", 1000), ("closing pipeline", 1000)},
    "CREATED": {("created", 2000), ("closing pipeline", 2000)},
    "CREATED_WON": {("created", 450), ("won", 450)},
    "PULLED_IN": {("pulled in", 3000), ("closing pipeline", 3000)},
    "SLIPPED_IN": {("slipped in", 4000), ("closing pipeline", 4000)},
    "REOPENED": {("reopened", 5000), ("closing pipeline", 5000)},
    "UP": {("opening pipeline", 1000), ("amount increased", 500), ("closing pipeline", 1500)},
    "DOWN": {("opening pipeline", 2000), ("amount decreased", 800), ("closing pipeline", 1200)},
    "WON": {("opening pipeline", 3000), ("amount decreased", 300), ("won", 2700)},
    "LOST": {("opening pipeline", 700), ("lost", 700)},
    "PUSHED": {("opening pipeline", 800), ("pushed out", 800)},
    "PULLED_OUT": {("opening pipeline", 900), ("pulled out", 900)},
}


def test_each_bucket_on_hand_made_deals():
    data = _crm(_hand_made())
    rows = waterfall_deals(data, "2024-06-15", "2024-09-15", period="FY2024Q3")
    got = {oid: set(zip(g["step"], g["amount"].astype(int), strict=True)) for oid, g in rows.groupby("opportunity_id")}
    assert got == EXPECTED
    wf = pipeline_waterfall(data, "2024-06-15", "2024-09-15", period="FY2024Q3").set_index("step")
    assert wf.loc["amount increased", ["deals", "count", "amount"]].tolist() == [1, 0, 500.0]
    assert wf.loc["won", ["deals", "count", "amount"]].tolist() == [2, 2, 3150.0]
    assert wf.loc["opening pipeline", "count"] == 7
    assert wf.loc["closing pipeline", "count"] == 7
    assert "close date in FY2024Q3" in wf.loc["opening pipeline", "definition"]
    assert rows.attrs["period"] == "FY2024Q3"
    assert {"owner", "team", "stage_start", "stage_end", "close_date_end"} <= set(rows.columns)


def test_without_period_all_open_pipeline_counts():
    data = _crm(_hand_made())
    rows = waterfall_deals(data, "2024-06-15", "2024-09-15")
    got = {oid: {s for s, _ in zip(g["step"], g["amount"], strict=True)} for oid, g in rows.groupby("opportunity_id")}
    # close-date moves no longer matter; a deal open at both ends stays in the pipeline
    for oid in ("PULLED_IN", "PUSHED", "PULLED_OUT", "OUTSIDE"):
        assert got[oid] == {"opening pipeline", "closing pipeline"}
    assert got["SLIPPED_IN"] == {"opening pipeline", "closing pipeline"}
    assert got["IN_OUT_Q2"] == {"created", "lost"}
    assert got["REOPENED"] == {"reopened", "closing pipeline"}
    assert "CLOSED_BEFORE" not in got and "LATE" not in got


# ---------------------------------------------------------------------------------------------- coverage
def _coverage_data() -> CRMData:
    rows = {
        # id: owner, team, created, [(changed_at, stage, amount, close_date)]
        "A": ("ann", "east", "2024-06-01", [("2024-06-01", "Prospecting", 100), ("2024-07-10", "Closed Won", 100)]),
        "B": ("ann", "east", "2024-06-01", [("2024-06-01", "Negotiation/Review", 400)]),
        "C": ("ann", "east", "2024-06-01", [("2024-06-01", "Prospecting", 1000)]),
        "D": ("ann", "east", "2024-06-01", [("2024-06-01", "Prospecting", 50), ("2024-08-20", "Closed Won", 50)]),
        "E": ("bo", "west", "2024-06-01", [("2024-06-01", "Prospecting", 300), ("2024-07-05", "Closed Won", 300)]),
        "F": ("bo", "west", "2024-06-01", [("2024-06-01", "Value Proposition", 200)]),
        "G": ("cy", "west", "2024-06-01", [("2024-06-01", "Qualification", 10)]),
    }
    close = {"A": "2024-07-10", "B": "2024-09-01", "C": "2024-12-01", "D": "2024-08-20", "E": "2024-07-05"}
    close |= {"F": "2024-08-15", "G": "2024-09-30"}
    opps, hist = [], []
    for oid, (owner, team, created, changes) in rows.items():
        for when, stage, amount in changes:
            cd = when if stage.startswith("Closed") else close[oid]
            hist.append({"opportunity_id": oid, "changed_at": when, "stage": stage, "amount": amount, "close_date": cd})
        stage = changes[-1][1]
        opps.append(
            {
                "opportunity_id": oid,
                "owner": owner,
                "team": team,
                "created_at": created,
                "stage": stage,
                "amount": changes[-1][2],
                "close_date": close[oid],
                "is_closed": stage.startswith("Closed"),
                "is_won": stage == "Closed Won",
            }
        )
    quotas = pd.DataFrame(
        {
            "owner": ["ann", "bo", "ann", "bo", "ann"],
            "period": ["FY2024Q3", "FY2024Q3", "FY2024Q2", "FY2024Q2", "FY2024Q4"],
            "amount": [1000.0, 250.0, 700.0, 700.0, 900.0],
        }
    )
    opps_df, hist_df = pd.DataFrame(opps), pd.DataFrame(hist)
    for df, c in ((opps_df, "created_at"), (opps_df, "close_date"), (hist_df, "changed_at"), (hist_df, "close_date")):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    data = validate({"opportunities": opps_df, "stage_history": hist_df, "quotas": quotas})
    assert data.quarantine.empty
    return data


def test_coverage_formula_on_hand_made_case():
    data = _coverage_data()
    cov = pipeline_coverage(data, "FY2024Q3", as_of="2024-08-01")
    row = cov.loc["FY2024Q3"]
    # won by Aug 1 with a close date in Q3: A (100) and E (300); D is won later; C closes in Q4
    assert row["quota"] == 1250.0
    assert row["closed_won"] == 400.0 and row["won_deals"] == 2
    assert row["open_pipeline"] == 400.0 + 200.0 + 10.0 + 50.0 and row["open_deals"] == 4
    assert row["weighted_pipeline"] == pytest.approx(400 * 0.9 + 200 * 0.5 + 10 * 0.1 + 50 * 0.1)
    assert row["attainment"] == pytest.approx(400 / 1250)
    assert row["coverage"] == pytest.approx(660 / (1250 - 400))
    assert row["weighted_coverage"] == pytest.approx(466 / 850)
    assert "quota - closed_won" in cov.attrs["formula"]

    by_owner = pipeline_coverage(data, "FY2024Q3", as_of="2024-08-01", by="owner")
    assert by_owner.index.tolist() == ["ann", "bo", "cy"]
    bo = by_owner.loc["bo"]
    # bo: quota 250, won 300 -> quota met, coverage undefined
    assert bo["attainment"] == pytest.approx(1.2)
    assert np.isnan(bo["coverage"]) and np.isnan(bo["weighted_coverage"])
    assert bo["note"] == "quota met: coverage undefined"
    cy = by_owner.loc["cy"]
    # cy has no quota row: the quota is unknown (NaN), not 0, so is what remains of it
    assert np.isnan(cy["quota"]) and np.isnan(cy["remaining_quota"]) and np.isnan(cy["attainment"])
    assert np.isnan(cy["coverage"]) and cy["note"] == "no quota for the period"
    ann = by_owner.loc["ann"]
    assert ann["coverage"] == pytest.approx((400 + 50) / (1000 - 100))
    assert by_owner[["quota", "closed_won", "open_pipeline"]].sum().tolist() == [1250.0, 400.0, 660.0]

    by_team = pipeline_coverage(data, "FY2024Q3", as_of="2024-08-01", by="team")
    assert by_team["quota"].to_dict() == {"east": 1000.0, "west": 250.0}
    # a fiscal year sums the quarters inside it
    year = pipeline_coverage(data, "FY2024", as_of="2024-12-31")
    assert year["quota"].iloc[0] == 1000 + 250 + 700 + 700 + 900
    assert year["closed_won"].iloc[0] == 450.0


def test_coverage_without_quotas_is_unknown_not_zero():
    """The fresh-eyes run on data without quotas showed "quota 0.00 ... remaining quota -162,361.00": an unknown
    quota is NaN (shown as "–" by `format_table`), and so are what remains of it, attainment and coverage."""
    from dataclasses import replace

    from salesforecast.reports import format_table

    with_quotas = _coverage_data()
    data = replace(with_quotas, quotas=empty_table("quotas"))
    for by in (None, "owner", "team"):
        cov = pipeline_coverage(data, "FY2024Q3", as_of="2024-08-01", by=by)
        for c in ("quota", "remaining_quota", "attainment", "coverage", "weighted_coverage"):
            assert cov[c].isna().all(), (by, c)
        assert (cov["note"] == "no quota for the period").all()
        # the deal figures do not depend on quotas
        same = pipeline_coverage(with_quotas, "FY2024Q3", as_of="2024-08-01", by=by)
        cols = ["closed_won", "won_deals", "open_pipeline", "open_deals", "weighted_pipeline"]
        pd.testing.assert_frame_equal(cov[cols], same.loc[cov.index, cols])
    html = format_table(pipeline_coverage(data, "FY2024Q3", as_of="2024-08-01").reset_index()).to_html()
    assert "–" in html and "-400" not in html
    # a quota explicitly 0 stays 0 (known), with attainment and coverage undefined
    zero = replace(with_quotas, quotas=with_quotas.quotas.assign(amount=0.0))
    row = pipeline_coverage(zero, "FY2024Q3", as_of="2024-08-01").iloc[0]
    assert row["quota"] == 0 and row["remaining_quota"] == -400.0 and np.isnan(row["attainment"])


def test_coverage_errors_name_the_problem():
    data = _coverage_data()
    with pytest.raises(KeyError, match="no column 'region'"):
        pipeline_coverage(data, "FY2024Q3", as_of="2024-08-01", by="region")
    with pytest.raises(ValueError, match="not a fiscal period"):
        pipeline_coverage(data, "Q3 2024", as_of="2024-08-01")


def test_won_includes_deals_closed_on_the_periods_first_day():
    """Deals closed at 00:00 of the period's first day, and later that day, are won in the waterfall."""
    deals = {
        "MIDNIGHT": (
            "2024-06-01",
            [
                ("2024-06-01", "Negotiation/Review", 1000, "2024-07-01"),
                ("2024-07-01", "Closed Won", 1100, "2024-07-01"),
            ],
        ),
        "MIDNIGHT_NEW": ("2024-07-01", [("2024-07-01", "Closed Won", 300, "2024-07-01")]),
        "MORNING": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 2000, "2024-08-15"), ("2024-07-01 09:30", "Closed Won", 2000, "2024-07-01")],
        ),
        "LATER": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 400, "2024-08-15"), ("2024-08-20", "Closed Won", 500, "2024-08-20")],
        ),
        "LOST_MIDNIGHT": (
            "2024-06-01",
            [("2024-06-01", "Prospecting", 700, "2024-07-01"), ("2024-07-01", "Closed Lost", 700, "2024-07-01")],
        ),
        "WON_BEFORE": (
            "2024-05-01",
            [("2024-05-01", "Prospecting", 900, "2024-06-30"), ("2024-06-30 23:00", "Closed Won", 900, "2024-06-30")],
        ),
    }
    tables = deal_tables(deals)
    data = _crm(tables)
    wf = _check_reconciles(data, pd.Timestamp("2024-07-01"), pd.Timestamp("2024-10-01"), "FY2024Q3").set_index("step")
    opps = tables["opportunities"]
    won = opps[opps["is_won"] & (opps["close_date"] >= "2024-07-01") & (opps["close_date"] < "2024-10-01")]
    assert len(won) == 4  # the plain pandas count: MIDNIGHT, MIDNIGHT_NEW, MORNING, LATER
    assert wf.loc["won", ["deals", "amount"]].tolist() == [len(won), float(won["amount"].sum())]
    assert wf.loc["lost", "deals"] == 1
    cov = pipeline_coverage(data, "FY2024Q3", as_of="2024-10-01")
    assert cov[["won_deals", "closed_won"]].iloc[0].tolist() == [len(won), float(won["amount"].sum())]
    rows = waterfall_deals(data, "2024-07-01", "2024-10-01", period="FY2024Q3")
    midnight = set(rows.loc[rows["opportunity_id"] == "MIDNIGHT", "step"])
    assert midnight == {"opening pipeline", "amount increased", "won"}


def test_coverage_counts_open_deals_without_a_close_date_apart_and_warns():
    """Open deals may lack a close date (real exports often keep none until a deal closes): the in-period
    pipeline cannot count them, and the coverage silently showed no open pipeline at all; now the table counts
    them as undated pipeline and a warning says how many, how much, and that coverage leaves them out."""
    from salesforecast.movement import UndatedPipelineWarning

    deals = {
        "DATED": ("2024-06-01", [("2024-06-01", "Prospecting", 100.0, "2024-08-15")]),
        "UNDATED1": ("2024-06-02", [("2024-06-02", "Prospecting", 40.0, None)]),
        "UNDATED2": ("2024-06-03", [("2024-06-03", "Qualification", 20.0, None)]),
        "WON": (
            "2024-06-04",
            [("2024-06-04", "Prospecting", 30.0, None), ("2024-07-10", "Closed Won", 30.0, "2024-07-10")],
        ),
    }
    tables = deal_tables(deals)
    tables["quotas"] = pd.DataFrame(
        {"owner": ["ann", "bo"], "period": ["FY2024Q3", "FY2024Q3"], "amount": [500.0, 500.0]}
    )
    data = _crm(tables)
    with pytest.warns(UndatedPipelineWarning) as caught:
        cov = pipeline_coverage(data, "FY2024Q3", as_of="2024-08-01")
    (message,) = {str(w.message) for w in caught}
    assert message.startswith("2 of the 3 deals open at 2024-08-01 (amount 60) have no expected close date")
    assert "the open pipeline and coverage of FY2024Q3 leave them out" in message
    row = cov.loc["FY2024Q3"]
    assert row["open_pipeline"] == 100.0 and row["open_deals"] == 1  # only the dated deal is in-period
    assert row["undated_pipeline"] == 60.0 and row["undated_deals"] == 2
    assert row["closed_won"] == 30.0 and row["coverage"] == pytest.approx(100.0 / (1000.0 - 30.0))
    with pytest.warns(UndatedPipelineWarning):
        by_owner = pipeline_coverage(data, "FY2024Q3", as_of="2024-08-01", by="owner")
    # deal_tables alternates owners: DATED and UNDATED2 are ann's, UNDATED1 and WON bo's
    assert by_owner["undated_pipeline"].to_dict() == {"ann": 20.0, "bo": 40.0}
    assert by_owner["undated_deals"].dtype == np.int64
    # a dated pipeline raises no warning, and counts no undated deal
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndatedPipelineWarning)
        dated = pipeline_coverage(data, "FY2024Q3", as_of="2024-06-01 12:00")
    assert dated["undated_deals"].tolist() == [0] and dated["open_deals"].tolist() == [1]
