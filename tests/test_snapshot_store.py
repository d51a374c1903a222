"""The snapshot store: weekly snapshots of a generated CRM, the history rebuilt from them, atomic appends."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.io import snapshot_store
from salesforecast.io.snapshot_store import append_snapshot, history_from_snapshots, read_snapshots
from salesforecast.schema import DataFileError, validate
from salesforecast.snapshots import known_at, pipeline_snapshots

BACKENDS = ["parquet", "duckdb"]
STATE = ["stage", "amount", "close_date"]


def _store(tmp_path: Path, backend: str) -> Path:
    return tmp_path / ("snapshots.duckdb" if backend == "duckdb" else "snapshots")


@pytest.fixture(scope="module")
def crm():
    return generate(n_opportunities=300, seed=1)[0]


@pytest.fixture(scope="module")
def weekly(crm):
    """The CRM as it was known at each Sunday of a year: what a weekly job would have snapshotted."""
    dates = pd.date_range("2024-01-07", periods=40, freq="7D")
    return {t: known_at(crm, t) for t in dates}


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request, tmp_path_factory, weekly):
    """A store of each backend holding the weekly snapshots, and the row counts `append_snapshot` returned."""
    store = _store(tmp_path_factory.mktemp(request.param), request.param)
    written = {t: append_snapshot(state, store, as_of=t) for t, state in weekly.items()}
    return store, written


def _naive_history(snaps: pd.DataFrame) -> set[tuple]:
    """Reference: a loop over the deals' snapshots in date order, keeping the first and every changed state."""
    rows, last = set(), {}
    for r in snaps.sort_values("as_of", kind="stable").itertuples(index=False):
        state = tuple(None if pd.isna(getattr(r, c)) else getattr(r, c) for c in STATE)
        if last.get(r.opportunity_id) != state:
            rows.add((r.opportunity_id, r.as_of, *state))
        last[r.opportunity_id] = state
    return rows


def test_snapshots_hold_the_open_pipeline(filled, crm, weekly):
    store, written = filled
    snaps = read_snapshots(store)
    truth = pipeline_snapshots(crm, list(weekly))  # rebuilt from stage_history, independently of known_at
    cols = ["as_of", "opportunity_id", *STATE, "forecast_category", "owner", "team", "created_at"]
    pd.testing.assert_frame_equal(snaps[cols], truth[cols], check_dtype=False)
    assert snaps.groupby("as_of").size().to_dict() == {t: n for t, n in written.items() if n}
    assert snaps["as_of"].dtype == "datetime64[us]" and snaps["opportunity_id"].dtype == "str"


def test_history_reproduces_the_weekly_changes(filled, crm, weekly):
    store, _ = filled
    hist = history_from_snapshots(store)
    dates = list(weekly)
    assert list(hist.columns) == ["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"]
    assert not hist.duplicated(["opportunity_id", "changed_at"]).any()

    # the stage of every deal at every date, straight from the true stage history
    h = crm.stage_history.sort_values("changed_at", kind="stable")
    opps = crm.opportunities.set_index("opportunity_id")
    open_stages = set(crm.process.open_stages)
    stage_at = {}
    for t in dates:
        last = h.loc[h["changed_at"] <= t].groupby("opportunity_id")["stage"].last()
        created = opps.index[opps["created_at"] <= t]
        stage_at[t] = {d: s for d, s in last.items() if s in open_stages and d in created}

    # every stage change between two consecutive snapshots appears once, dated at the later snapshot
    expected = {
        (d, t1, s1)
        for t0, t1 in zip(dates, dates[1:], strict=False)
        for d, s1 in stage_at[t1].items()
        if d in stage_at[t0] and stage_at[t0][d] != s1
    }
    prev = hist.groupby("opportunity_id")["stage"].shift()
    moves = hist.loc[prev.notna() & (prev != hist["stage"])]
    got = set(zip(moves["opportunity_id"], moves["changed_at"], moves["stage"], strict=True))
    assert got == expected and len(expected) > 50

    # first rows: each deal at its first snapshot
    first = hist.groupby("opportunity_id")["changed_at"].min()
    first_seen = {}
    for t in dates:
        for d in stage_at[t]:
            first_seen.setdefault(d, t)
    assert first.to_dict() == first_seen

    # and the whole history against a naive loop (stage, amount or close date changed)
    got_rows = {
        (r[0], r[1], *(None if pd.isna(v) else v for v in r[2:]))
        for r in hist[["opportunity_id", "changed_at", *STATE]].itertuples(index=False)
    }
    assert got_rows == _naive_history(read_snapshots(store))


def test_history_rebuilds_the_snapshots(filled, crm, weekly):
    """The history validates, and replayed by pipeline_snapshots it gives every stored state back.

    Except on the day a deal closed: the snapshot at midnight saw it open, while the replay, which has no close
    row, closes it at its close date (that same midnight), as `salesforecast.snapshots` does for any deal
    whose history never reaches a won or lost stage.
    """
    store, _ = filled
    hist = history_from_snapshots(store, crm)
    rebuilt = validate({"opportunities": crm.opportunities, "stage_history": hist}, process=crm.process)
    assert len(rebuilt.quarantine) == 0
    replay = pipeline_snapshots(rebuilt, list(weekly))
    snaps = read_snapshots(store)
    keys = ["as_of", "opportunity_id", *STATE]
    both = snaps[keys].merge(replay[keys], how="left", indicator=True)
    missed = both.loc[both["_merge"] != "both"]
    closed = crm.opportunities.set_index("opportunity_id").loc[missed["opportunity_id"]]
    assert closed["is_closed"].all()
    assert (closed["close_date"].to_numpy() == missed["as_of"].to_numpy()).all()
    assert len(missed) < 0.05 * len(snaps)


def test_same_date_twice_replaces(tmp_path, weekly):
    dates = list(weekly)
    for backend in BACKENDS:
        store = _store(tmp_path, backend)
        append_snapshot(weekly[dates[0]], store, as_of=dates[0])
        append_snapshot(weekly[dates[1]], store, as_of=dates[1])
        before = read_snapshots(store)
        n = append_snapshot(weekly[dates[1]], store, as_of=dates[1] + pd.Timedelta(hours=15))  # a rerun, same day
        again = read_snapshots(store)
        pd.testing.assert_frame_equal(again, before)
        assert n == (again["as_of"] == dates[1]).sum()
        # a later state stored under the same day replaces that day only
        n = append_snapshot(weekly[dates[5]], store, as_of=str(dates[1].date()))
        after = read_snapshots(store)
        assert not after.duplicated(["as_of", "opportunity_id"]).any()
        assert (after["as_of"] == dates[1]).sum() == n
        pd.testing.assert_frame_equal(
            after.loc[after["as_of"] == dates[0]].reset_index(drop=True),
            before.loc[before["as_of"] == dates[0]].reset_index(drop=True),
        )


def test_parquet_write_interrupted_after_the_temp_file(tmp_path, weekly, monkeypatch):
    dates = list(weekly)
    store = _store(tmp_path, "parquet")
    for t in dates[:3]:
        append_snapshot(weekly[t], store, as_of=t)
    before = read_snapshots(store)
    real = snapshot_store._write_parquet

    def crash(table, path):
        real(table, path)
        assert path.exists()  # the temporary file is written...
        raise KeyboardInterrupt("killed")  # ...and the process dies before the rename

    monkeypatch.setattr(snapshot_store, "_write_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        append_snapshot(weekly[dates[3]], store, as_of=dates[3])  # a new date
    with pytest.raises(KeyboardInterrupt):
        append_snapshot(weekly[dates[6]], store, as_of=dates[1])  # rewriting a stored date
    pd.testing.assert_frame_equal(read_snapshots(store), before)
    assert sorted(p.name for p in store.iterdir()) == [f"{t:%Y-%m-%d}.parquet" for t in dates[:3]]
    # a writer killed outright leaves a partial temporary file behind: readers ignore it
    (store / f".{dates[3]:%Y-%m-%d}.parquet.dead.tmp").write_bytes(b"PAR1\x00\x01")
    pd.testing.assert_frame_equal(read_snapshots(store), before)
    monkeypatch.undo()
    append_snapshot(weekly[dates[3]], store, as_of=dates[3])
    assert read_snapshots(store)["as_of"].nunique() == 4


def test_duckdb_write_interrupted_mid_transaction(tmp_path, weekly, monkeypatch):
    dates = list(weekly)
    store = _store(tmp_path, "duckdb")
    for t in dates[:3]:
        append_snapshot(weekly[t], store, as_of=t)
    before = read_snapshots(store)
    real = snapshot_store._insert_duckdb

    def crash(con, view):
        real(con, view)  # the old rows of the date are deleted and the new ones inserted...
        raise RuntimeError("disk full")  # ...then the write fails before the commit

    monkeypatch.setattr(snapshot_store, "_insert_duckdb", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        append_snapshot(weekly[dates[3]], store, as_of=dates[3])
    with pytest.raises(RuntimeError, match="disk full"):
        append_snapshot(weekly[dates[6]], store, as_of=dates[1])
    pd.testing.assert_frame_equal(read_snapshots(store), before)


def test_as_of_is_a_utc_day(tmp_path, weekly):
    state = next(iter(weekly.values()))
    store = _store(tmp_path, "parquet")
    append_snapshot(state, store, as_of="2024-03-10T23:30:00-05:00")  # 04:30 UTC on the 11th
    append_snapshot(state, store)
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    assert sorted(read_snapshots(store)["as_of"].unique()) == [pd.Timestamp("2024-03-11"), today]
    with pytest.raises(ValueError, match="not a number"):
        append_snapshot(state, store, as_of=20240311)


def test_empty_snapshot_and_missing_store(tmp_path, crm):
    closed = crm.opportunities.loc[crm.opportunities["is_closed"]]
    data = validate({"opportunities": closed}, process=crm.process)
    for backend in BACKENDS:
        store = _store(tmp_path, backend)
        assert append_snapshot(data, store, as_of="2024-01-07") == 0
        assert read_snapshots(store).empty
        assert history_from_snapshots(store).empty
    with pytest.raises(DataFileError, match="no snapshot store"):
        read_snapshots(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataFileError, match="not a snapshot store"):
        append_snapshot(data, tmp_path / "file.txt", as_of="2024-01-07")


def test_history_keeps_only_known_opportunities():
    snaps = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2024-01-07", "2024-01-07", "2024-01-14", "2024-01-14", "2024-01-21"]),
            "opportunity_id": ["A", "B", "A", "B", "A"],
            "stage": ["Prospecting", "Qualification", "Prospecting", "Qualification", "Prospecting"],
            "amount": [100.0, np.nan, 100.0, np.nan, 100.0],
            "close_date": pd.to_datetime(["2024-02-01", None, "2024-03-01", None, "2024-03-01"]),
        }
    )
    hist = history_from_snapshots(snaps)
    # A: first, then a close-date push; B: first only (missing amount twice is no change); B's disappearance: nothing
    assert list(zip(hist["opportunity_id"], hist["changed_at"].dt.day, strict=True)) == [("A", 7), ("A", 14), ("B", 7)]
    assert hist["forecast_category"].isna().all()
    only_a = history_from_snapshots(snaps, pd.DataFrame({"opportunity_id": ["A"]}))
    assert set(only_a["opportunity_id"]) == {"A"}
    assert len(history_from_snapshots(snaps, fields=["stage"])) == 2
    with pytest.raises(KeyError, match="nope"):
        history_from_snapshots(snaps, fields=["nope"])


def test_a_mapping_takes_its_stage_history_from_a_snapshot_store(tmp_path):
    """A CRM that keeps no history: weekly snapshots of its current state become the mapping's stage_history."""
    from salesforecast.datasets import generate
    from salesforecast.io import load_mapping
    from salesforecast.snapshots import known_at

    data, _ = generate(n_opportunities=300, seed=9, years=1)
    store = tmp_path / "snapshots"
    weeks = pd.date_range("2023-03-06", "2023-12-25", freq="7D")
    for t in weeks:
        append_snapshot(known_at(data, t), store, as_of=t)
    crm = tmp_path / "crm"
    opps = data.opportunities
    (crm).mkdir()
    opps.to_csv(crm / "opportunities.csv", index=False)
    mapping = tmp_path / "crm.yml"
    mapping.write_text(
        "tables:\n  opportunities: crm/opportunities.csv\n  stage_history: {from_snapshots: snapshots}\n",
        encoding="utf-8",
    )
    loaded = load_mapping(mapping)
    hist = loaded.stage_history
    assert len(hist) > len(weeks) and hist["changed_at"].isin(weeks).all()
    assert loaded.counts.loc["stage_history", "quarantined"] == 0
    assert any("snapshot store" in n and f"{len(weeks)} snapshots" in n for n in loaded.notes)
    # each deal's stage at a snapshot date is what the snapshot saw
    t = weeks[20]
    seen = read_snapshots(store).query("as_of == @t").set_index("opportunity_id")["stage"]
    rebuilt = hist[hist["changed_at"] <= t].groupby("opportunity_id")["stage"].last().reindex(seen.index)
    assert (rebuilt == seen).all()
