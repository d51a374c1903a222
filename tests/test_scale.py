"""The data in partitions by opportunity (`salesforecast.scale`), and its steps on a real Dask cluster.

The cluster is a `dask.distributed.LocalCluster` of two worker processes (small data): each task reads its own
partition from the folder, as a remote worker would from shared storage.
"""

from __future__ import annotations

import functools
import gc
import glob
import json
import os
import pickle
import time
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from salesforecast._utils import SUM_GROUP, LocalTasks
from salesforecast.datasets import generate, load_sample
from salesforecast.datasets.shapes import history_from_dates
from salesforecast.history import DealHistory
from salesforecast.io import load
from salesforecast.models.lead_scoring import LeakageWarning
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.scale import (
    MANIFEST,
    DaskTasks,
    PartitionedCRM,
    Stored,
    generate_partitions,
    partition_of,
    partitioned_backtest,
    partitioned_fit,
    partitioned_period_call,
    partitioned_snapshots,
    partitioned_submission_bias,
    write_partitions,
)
from salesforecast.schema import DataFileError
from salesforecast.simulation import simulate_bookings, simulate_bookings_parts
from salesforecast.snapshots import pipeline_snapshots, unrecorded_fields


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def crm():
    return generate(n_opportunities=1_500, seed=3, years=2)[0]


def test_the_partition_of_an_id_is_stable_and_every_table_splits_with_its_deals(crm, tmp_path):
    # the hash is part of the contract: a folder written today is read the same way by every later version
    assert partition_of(["OPP-0000001", "OPP-0000002", "OPP-0000003", "x"], 8).tolist() == [6, 0, 3, 5]
    folder = write_partitions(crm, tmp_path / "parts", 4)
    parts = PartitionedCRM(folder)
    assert parts.n_partitions == 4 and parts.as_of == crm.as_of
    read = [parts.read(i) for i in range(4)]
    for name in ("opportunities", "stage_history"):
        whole = getattr(crm, name)
        assert parts.rows(name) == [len(getattr(p, name)) for p in read] and sum(parts.rows(name)) == len(whole)
    # each partition holds its deals' history and activities, and no other deal's
    for i, p in enumerate(read):
        ids = set(p.opportunities["opportunity_id"])
        assert (partition_of(p.opportunities["opportunity_id"], 4) == i).all()
        assert set(p.stage_history["opportunity_id"]) <= ids and set(p.activities["opportunity_id"]) <= ids
    # nothing lost: the deals' activities in the partitions, the leads' in shared/, the small tables once
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    on_deals = int(crm.activities["opportunity_id"].notna().sum())
    assert sum(parts.rows("activities")) == on_deals
    assert manifest["shared"]["activities"] == len(crm.activities) - on_deals
    assert manifest["shared"]["leads"] == len(crm.leads) > 0
    got = pd.concat([p.opportunities for p in read]).sort_values("opportunity_id", ignore_index=True)
    pd.testing.assert_frame_equal(got, crm.opportunities.sort_values("opportunity_id", ignore_index=True))


def test_snapshots_on_a_cluster_equal_the_whole_row_for_row(crm, tmp_path, client):
    dates = pd.date_range("2024-01-01", "2025-06-30", freq="W-MON")
    expected = pipeline_snapshots(crm, dates)
    parts = PartitionedCRM(write_partitions(crm, tmp_path / "parts", 3))
    pd.testing.assert_frame_equal(partitioned_snapshots(parts, dates, client=client), expected)
    pd.testing.assert_frame_equal(partitioned_snapshots(parts, dates), expected)  # without a cluster: the same
    # more partitions than some have deals: the empty ones add nothing
    many = PartitionedCRM(write_partitions(load_sample(), tmp_path / "many", 7))
    pd.testing.assert_frame_equal(
        partitioned_snapshots(many, dates, columns=["owner"], client=client),
        pipeline_snapshots(load_sample(), dates, columns=["owner"]),
    )


def test_a_partition_follows_the_wholes_rules_for_fields_the_history_never_recorded(tmp_path, client):
    # a history derived from date columns records no close date: before the whole's end an open deal's close date is
    # unknown; a partition's own end is earlier, and its snapshots must still apply the whole's
    data = history_from_dates(load_sample())
    assert "close_date" in unrecorded_fields(data)
    parts = PartitionedCRM(write_partitions(data, tmp_path / "parts", 5))
    ends = [parts.read(i).as_of for i in range(5)]
    assert min(ends) < data.as_of
    # between the earliest partition's end and the whole's: known in that partition by its own rule, not the whole's
    between = min(ends) + (data.as_of - min(ends)) / 2
    dates = pd.DatetimeIndex([min(ends).normalize(), between, data.as_of + pd.Timedelta(days=1)])
    expected = pipeline_snapshots(data, dates)
    got = partitioned_snapshots(parts, dates, client=client)
    pd.testing.assert_frame_equal(got, expected)
    assert got["close_date"].notna().any() and got.loc[got["as_of"] < data.as_of, "close_date"].isna().all()
    # no history at all: the forecast category is unknown too (the stage's default before the whole's end)
    sample = load_sample()
    opps = sample.opportunities
    open_ = ~opps["is_closed"].to_numpy(dtype=bool)
    bare = replace(
        sample,
        stage_history=sample.stage_history.iloc[:0],
        opportunities=opps.assign(forecast_category=np.where(open_, "Commit", opps["forecast_category"])),
    )
    parts = PartitionedCRM(write_partitions(bare, tmp_path / "bare", 5))
    expected = pipeline_snapshots(bare, dates)
    pd.testing.assert_frame_equal(partitioned_snapshots(parts, dates, client=client), expected)
    assert (expected.loc[expected["as_of"] > bare.as_of, "forecast_category"] == "Commit").all()
    assert (expected.loc[expected["as_of"] < bare.as_of, "forecast_category"] != "Commit").any()


def test_what_a_partition_holds_is_the_wholes(tmp_path):
    """Activities of a deal and a lead go with the deal; extra columns keep the whole's type in every partition;
    the quarantine and the notes are written once, in shared/."""
    data = load_sample()
    acts = data.activities.copy()
    both = acts.index[acts["opportunity_id"].notna()][:50]
    acts.loc[both, "lead_id"] = data.leads["lead_id"].iloc[:50].to_numpy()
    opps = data.opportunities.assign(
        priority=["high" if i == 0 else str(i % 3) for i in range(len(data.opportunities))]
    )
    quarantine = pd.DataFrame(
        {
            "table": ["opportunities"],
            "row": [7],
            "column": ["amount"],
            "value": ["-5"],
            "reason": ["negative amount"],
            "details": [""],
            "original": [""],
        }
    )
    data = replace(data, activities=acts, opportunities=opps, quarantine=quarantine, notes=("a note of the load",))
    folder = write_partitions(data, tmp_path / "parts", 8)
    parts = PartitionedCRM(folder)
    read = [parts.read(i) for i in range(8)]
    in_parts = pd.concat([p.activities for p in read])
    assert set(acts.loc[both, "activity_id"]) <= set(in_parts["activity_id"])
    shared = pd.read_parquet(folder / "shared" / "activities.parquet")
    assert shared["opportunity_id"].isna().all() and len(shared) + len(in_parts) == len(acts)
    assert all(p.opportunities["priority"].dtype == opps["priority"].dtype for p in read)
    lean = parts.read(3, activities=False)  # for the steps that read no activity
    assert len(lean.activities) == 0 < len(read[3].activities)
    pd.testing.assert_frame_equal(lean.opportunities, read[3].opportunities)
    pd.testing.assert_frame_equal(lean.stage_history, read[3].stage_history)
    dates = pd.date_range("2024-01-01", periods=4, freq="QS")
    pd.testing.assert_frame_equal(
        partitioned_snapshots(parts, dates, columns=["owner", "priority"]),
        pipeline_snapshots(data, dates, columns=["owner", "priority"]),
    )
    assert (folder / "shared" / "quarantine.csv").is_file()
    assert (folder / "shared" / "notes.txt").read_text(encoding="utf-8") == "a note of the load\n"
    assert not any((folder / f"part-{i:05d}" / "quarantine.csv").exists() for i in range(8))


def _same_model(a: StageConversionModel, b: StageConversionModel, rtol: float = 1e-12) -> None:
    """The counts and the bins exactly; the probabilities and times to the order of floating-point sums."""
    pd.testing.assert_frame_equal(a.transition_counts_, b.transition_counts_)
    pd.testing.assert_frame_equal(a.duration_edges_, b.duration_edges_)
    pd.testing.assert_series_equal(a.n_visits_, b.n_visits_)
    counts = ["visits", "completed", "censored"]
    pd.testing.assert_frame_equal(a.time_in_stage_[counts], b.time_in_stage_[counts])
    pd.testing.assert_frame_equal(a.summary, b.summary, rtol=rtol)
    pd.testing.assert_frame_equal(a.transition_matrix_, b.transition_matrix_, rtol=rtol)
    pd.testing.assert_frame_equal(a.conditional_win_probability_, b.conditional_win_probability_, rtol=rtol)
    pd.testing.assert_series_equal(a.expected_days_to_close_, b.expected_days_to_close_, rtol=rtol)
    if a.segment is not None:  # the segments in the whole's order, with the column's type
        pd.testing.assert_frame_equal(a.segment_win_probability_, b.segment_win_probability_, rtol=rtol)
        pd.testing.assert_frame_equal(a.segment_transition_matrix_, b.segment_transition_matrix_, rtol=rtol)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"segment": "segment", "shrinkage": 5.0, "half_life_days": 180.0, "window_months": 15, "duration_bins": 7},
    ],
    ids=["default", "segments-recency-window"],
)
def test_the_stage_conversion_fit_on_a_cluster_is_the_wholes(crm, tmp_path, client, params):
    parts = PartitionedCRM(write_partitions(crm, tmp_path / "parts", 3))
    # the whole's end (a partition's own is earlier), and the data as known then, every result kept on disk
    for as_of, on in ((None, client), ("2024-09-30", DaskTasks(client, store=0))):
        whole = StageConversionModel(n_bootstrap=0, **params).fit(crm, as_of=as_of)
        got = partitioned_fit(StageConversionModel(n_bootstrap=0, **params), parts, as_of, client=on)
        _same_model(got, whole)
        snap = pipeline_snapshots(crm, whole.as_of_ - pd.Timedelta(days=30), columns=["segment"])
        np.testing.assert_allclose(got.predict_proba(snap), whole.predict_proba(snap), rtol=0, atol=1e-9)
        end = whole.as_of_ + pd.Timedelta(days=60)
        np.testing.assert_allclose(
            got.predict_close_within(snap, end), whole.predict_close_within(snap, end), rtol=0, atol=1e-9
        )
    # with unit weights the transition rows are sums of whole numbers: the same floats, not merely close
    plain = StageConversionModel(n_bootstrap=0, **params)
    if "half_life_days" not in params:
        assert partitioned_fit(plain, parts).transition_matrix_.equals(
            StageConversionModel(n_bootstrap=0).fit(crm).transition_matrix_
        )


def test_the_bins_are_the_wholes_quantiles_with_ties_and_many_small_parts(crm):
    # stage changes at whole days: many visits of equal duration, ranks falling inside runs of ties; 11 parts,
    # some with a handful of visits to a stage
    hist = crm.stage_history.assign(changed_at=crm.stage_history["changed_at"].dt.floor("D"))
    data = replace(crm, stage_history=hist)
    opps = data.opportunities
    part = partition_of(opps["opportunity_id"], 11)
    of_hist = partition_of(hist["opportunity_id"], 11)
    histories = [
        DealHistory.from_data(replace(data, opportunities=opps[part == i], stage_history=hist[of_hist == i]))
        for i in range(11)
    ]
    for bins in (3, 20, 64):
        whole = StageConversionModel(n_bootstrap=0, duration_bins=bins).fit(data)
        got = StageConversionModel(n_bootstrap=0, duration_bins=bins).fit_parts(histories, data.process, data.as_of)
        _same_model(got, whole)
        inner = whole.duration_edges_.iloc[:, 1:-1].to_numpy()
        assert (inner == np.round(inner)).mean() > 0.5  # most edges on a run of tied durations, found exactly
    assert whole.duration_edges_.diff(axis=1).eq(0).any().any()  # at 64 bins, ties give flat bins


def test_segments_keep_the_columns_order_and_type_over_partitions(crm):
    # a categorical column is ordered by its categories, an integer one stays integer; a segment may live in one
    # partition only, and a partition may hold no deal at all
    opps = crm.opportunities
    order = ["SMB", "Mid-Market", "Enterprise"]
    tiers = {"SMB": 3, "Mid-Market": 2, "Enterprise": 1}
    for column in (opps["segment"].astype(pd.CategoricalDtype(order)), opps["segment"].map(tiers).astype("int64")):
        data = replace(crm, opportunities=opps.assign(tier=column))
        hist = data.stage_history
        by_segment = data.opportunities["segment"].map({"SMB": 0, "Mid-Market": 1, "Enterprise": 2}).to_numpy()
        of_hist = pd.Series(by_segment, index=data.opportunities["opportunity_id"]).reindex(hist["opportunity_id"])
        histories = [
            DealHistory.from_data(
                replace(
                    data,
                    opportunities=data.opportunities[by_segment == i],
                    stage_history=hist[of_hist.eq(i).to_numpy()],
                )
            )
            for i in (2, 0, 1, 3)  # partition 3: empty
        ]
        whole = StageConversionModel(n_bootstrap=0, segment="tier").fit(data)
        got = StageConversionModel(n_bootstrap=0, segment="tier").fit_parts(histories, data.process, data.as_of)
        _same_model(got, whole)
        expected = order if isinstance(column.dtype, pd.CategoricalDtype) else [1, 2, 3]
        assert got.segment_win_probability_.index.tolist() == expected
        assert got.segment_win_probability_.index.dtype == whole.segment_win_probability_.index.dtype


def test_the_bootstrap_over_partitions_draws_per_partition_with_the_same_spread(crm, tmp_path, client):
    one = PartitionedCRM(write_partitions(crm, tmp_path / "one", 1))
    three = PartitionedCRM(write_partitions(crm, tmp_path / "three", 3))
    whole = StageConversionModel(n_bootstrap=300, random_state=4).fit(crm)
    # one partition is the whole: the same draws
    same = partitioned_fit(StageConversionModel(n_bootstrap=300, random_state=4), one)
    pd.testing.assert_frame_equal(same.bootstrap_win_probability_, whole.bootstrap_win_probability_)
    # three: each partition its own stream (reproducible), the replicates as spread as the whole's
    got = partitioned_fit(StageConversionModel(n_bootstrap=300, random_state=4), three, client=client)
    again = partitioned_fit(StageConversionModel(n_bootstrap=300, random_state=4), three)
    pd.testing.assert_frame_equal(got.bootstrap_win_probability_, again.bootstrap_win_probability_)
    assert not got.bootstrap_win_probability_.equals(whole.bootstrap_win_probability_)
    sd_whole, sd_parts = whole.bootstrap_win_probability_.std(), got.bootstrap_win_probability_.std()
    assert ((sd_parts / sd_whole - 1).abs() < 0.25).all()  # 300 replicates: the sd is known to about 4%
    width = whole.win_probability_ci_["upper"] - whole.win_probability_ci_["lower"]
    centre = (got.win_probability_ci_.mean(axis=1) - whole.win_probability_ci_.mean(axis=1)).abs()
    assert (centre < 0.25 * width).all()


def test_a_partitioned_fit_says_what_is_wrong(crm, tmp_path, client):
    parts = PartitionedCRM(write_partitions(crm, tmp_path / "parts", 2))
    with pytest.raises(ValueError, match="no column 'no_such_column' to segment by"):
        partitioned_fit(StageConversionModel(segment="no_such_column"), parts, client=client)
    with pytest.raises(ValueError, match="no stage visits to learn from"):
        partitioned_fit(StageConversionModel(n_bootstrap=0), parts, as_of="2000-01-01")


def test_partitions_say_what_is_wrong(crm, tmp_path):
    with pytest.raises(ValueError, match="integer >= 1"):
        write_partitions(crm, tmp_path / "parts", 0)
    with pytest.raises(FileNotFoundError, match="no partitions.json; write the partitions first"):
        PartitionedCRM(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.docx").write_text("the user's", encoding="utf-8")
    with pytest.raises(DataFileError):
        write_partitions(crm, mine, 2)
    assert (mine / "notes.docx").read_text(encoding="utf-8") == "the user's"
    parts = PartitionedCRM(write_partitions(crm, tmp_path / "parts", 2))
    with pytest.raises(DataFileError, match="holds partitions .partitions.json.: read it with .*PartitionedCRM"):
        load(parts.folder)
    with pytest.raises(IndexError, match="there are 2"):
        parts.read(2)
    assert np.array_equal(parts.rows("opportunities"), [len(parts.read(i).opportunities) for i in range(2)])


def test_the_import_command_writes_partitions(tmp_path, capsys):
    from salesforecast.cli import main

    out = tmp_path / "parts"
    assert main(["import", "sample", "--out", str(out), "--partitions", "3"]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    parts = PartitionedCRM(out)
    assert parts.n_partitions == 3 and sum(parts.rows("opportunities")) == len(load_sample().opportunities)
    assert main(["import", "sample", "--out", str(tmp_path / "csv"), "--partitions", "3", "--format", "csv"]) == 2
    assert "written as Parquet" in capsys.readouterr().err and not (tmp_path / "csv").exists()
    assert main(["import", "sample", "--out", str(tmp_path / "none"), "--partitions", "0"]) == 2
    err = capsys.readouterr().err
    assert "whole number >= 1, got 0" in err and "format" not in err


def _run_files(dask_worker) -> list[str]:
    """On a worker (``Client.run``): the files `DaskTasks` runs keep on its disk."""
    return glob.glob(os.path.join(dask_worker.local_directory, "salesforecast", "*", "*"))


def test_a_result_kept_on_disk_is_mapped_when_read_and_removed_with_it(tmp_path, client):
    table = pd.DataFrame({"amount": np.arange(5.0), "owner": pd.array(list("abcde"), dtype="str")})
    value = {"rows": np.arange(1000), "table": table, "label": "Q1"}
    kept = Stored.keep(value, str(tmp_path), threshold=0)
    assert isinstance(kept, Stored) and os.path.exists(kept.path) and kept.nbytes >= 8000
    back = kept.load()
    assert not back["rows"].flags.writeable and (back["rows"] == value["rows"]).all()  # a read-only map of the file
    assert back["table"].equals(table) and back["label"] == "Q1"
    assert isinstance(pickle.loads(pickle.dumps(kept)), dict)  # sent elsewhere, it travels as the value
    path = kept.path
    small = Stored.keep(back, str(tmp_path), threshold=2**20)  # small: kept in memory, a copy of its own
    assert not isinstance(small, Stored) and not np.shares_memory(small["rows"], back["rows"])
    del kept, back
    assert not os.path.exists(path)
    # on the cluster: partition i on the i-th worker in turn, big results on its disk until released
    tasks = DaskTasks(client, store=2**12)
    big = tasks.map(np.arange, [10**5, 10**5, 10])  # partitions 0 and 2 on the first worker
    pytest.importorskip("dask.distributed").wait(big)
    where = client.who_has(big)
    assert [where[f.key][0] for f in big] == [tasks.workers[i % len(tasks.workers)] for i in range(3)]
    assert sorted(len(files) for files in client.run(_run_files).values()) == [1, 1]
    assert [len(a) for a in tasks.gather(big)] == [10**5, 10**5, 10]
    assert int(tasks.sum(tasks.map(np.ones, [10**4] * 3)).sum()) == 3 * 10**4
    # over more partitions than a group: added in groups at once, in one process's order to the bit
    values = np.random.default_rng(3).lognormal(0, 8, size=(2 * SUM_GROUP + 3, 64))
    here = LocalTasks().sum(list(values))
    assert np.array_equal(tasks.sum(tasks.map(np.array, list(values))), here)
    assert not np.array_equal(functools.reduce(np.add, values), here)  # the grouping shows in the bits
    # a result fetched by the other worker is kept on that one's disk too (an addition of the sum needs two)
    first = tasks.workers[0]
    assert client.submit(lambda kept: len(kept.load()), big[1], workers=[first], pure=False).result() == 10**5
    held = client.run(lambda dask_worker, key=big[1].key: type(dask_worker.data[key]).__name__, workers=[first])
    assert held == {first: "Stored"}
    del big
    for _ in range(100):  # the workers release the results a moment after the client lets them go
        client.run(gc.collect)
        if not any(client.run(_run_files).values()):
            break
        time.sleep(0.1)
    assert not any(client.run(_run_files).values())
    tasks.close()


def _split(k: int, amount: np.ndarray, p: np.ndarray, codes: np.ndarray) -> list[tuple]:
    return [(amount[i::k], p[i::k], codes[:, i::k]) for i in range(k)]


def test_the_monte_carlo_over_partitions_is_the_wholes_distribution(client):
    rng = np.random.default_rng(0)
    n = 3_000
    amount, p = rng.lognormal(10.0, 1.0, n), rng.uniform(0.0, 0.5, n)
    p[::10] = 0.0  # deals that cannot be won draw nothing
    team = rng.integers(0, 4, n)
    codes = np.vstack([np.zeros(n, dtype=np.int64), 1 + team])  # the total and four teams
    base_teams = rng.uniform(0.0, 3e4, 4)
    base = np.r_[base_teams.sum(), base_teams]
    new_teams = rng.uniform(0.0, 1e5, (6, 4))
    new = np.c_[new_teams.sum(axis=1), new_teams]
    args = {"n_groups": 5, "base": base, "new_deals": new, "shock_sd": 0.5, "n_sims": 4_000, "rng": 1}
    whole = simulate_bookings(amount, p, codes, **args)
    sd = whole.std(axis=1)
    for k in (1, 3, 7):
        got = simulate_bookings_parts(_split(k, amount, p, codes), **args)
        if k == 3:  # a fixed number of parts: the same futures on a cluster as here, and again
            np.testing.assert_array_equal(simulate_bookings_parts(_split(3, amount, p, codes), **args, tasks=None), got)
            on_cluster = simulate_bookings_parts(_split(3, amount, p, codes), **args, tasks=DaskTasks(client))
            np.testing.assert_array_equal(on_cluster, got)
        # every grouping from the same draws: the teams add up to the total in every future
        np.testing.assert_allclose(got[1:].sum(axis=0), got[0], rtol=1e-12)
        # the whole's distribution, within Monte Carlo error (4,000 futures: about 0.04 sd between two runs)
        assert (np.abs(got.mean(axis=1) - whole.mean(axis=1)) < 0.1 * sd).all()
        for q in (0.1, 0.5, 0.9):
            assert (np.abs(np.quantile(got, q, axis=1) - np.quantile(whole, q, axis=1)) < 0.15 * sd).all()
        # one shock for all the parts: a shock per part would shrink the spread of the total
        assert abs(got[0].std() / sd[0] - 1) < 0.1
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 5\)"):
        simulate_bookings_parts([(amount[:2], p[:2], [[0, 5], [1, 1]])], **args)


def _compare_backtests(got: pd.DataFrame, whole: pd.DataFrame, reseeded: pd.DataFrame | None = None) -> None:
    """The same rows and sums; the Monte Carlo's within its error (its futures are drawn per partition): no
    farther from the whole's than the whole's with another seed (`reseeded`), give or take."""
    key = ["period", "cutoff", "days_before_period_end", "group", "group_value", "method"]
    pd.testing.assert_frame_equal(got[key], whole[key])
    pd.testing.assert_series_equal(got["leakage"], whole["leakage"])  # the opportunity score's flagged features
    np.testing.assert_allclose(got["actual"], whole["actual"], rtol=1e-12)
    sums = (whole["method"] != "monte_carlo").to_numpy()
    for column in ("forecast", "p10", "p50", "p90"):  # the ETS's and the seasonal naive's quantiles too
        np.testing.assert_allclose(got.loc[sums, column], whole.loc[sums, column], rtol=1e-9)
    assert got.attrs == whole.attrs  # the CRM-weighted left-out shares; the intervals' widening at every cutoff
    if reseeded is None:
        return
    mc = (whole["method"] == "monte_carlo").to_numpy().copy()
    width = (whole.loc[mc, "p90"] - whole.loc[mc, "p10"]).to_numpy()
    mc[mc] = width > 0  # where the futures spread (a rep's lone deal won in none of them does not)
    width = width[width > 0]
    # over every cutoff and group, the middle and the 90th percentile of the differences, not the largest: a group
    # with few deals left (a rep, a team in the last days) has a lumpy distribution whose P50 may jump by a deal's
    # amount between two runs of the same process
    for column in ("forecast", "p10", "p50", "p90"):
        apart = np.abs(got.loc[mc, column] - whole.loc[mc, column]).to_numpy() / width
        chance = np.abs(reseeded.loc[mc, column] - whole.loc[mc, column]).to_numpy() / width
        for q, slack in ((0.5, 0.01), (0.9, 0.02)):
            assert np.quantile(apart, q) <= 2 * np.quantile(chance, q) + slack, (column, q)


def test_the_backtest_of_the_pipeline_methods_on_a_cluster_is_the_wholes(crm, tmp_path, client):
    from salesforecast.forecast import PARTITIONED_METHODS, PIPELINE_METHODS, backtest

    parts = PartitionedCRM(write_partitions(crm, tmp_path / "parts", 3))
    whole = backtest(crm, list(PIPELINE_METHODS))
    assert set(whole["group"]) == {"total", "team", "owner"} and whole["period"].nunique() >= 3
    got = partitioned_backtest(parts, client=client)
    _compare_backtests(got, whole, reseeded=backtest(crm, list(PIPELINE_METHODS), seed=1))
    # a fixed number of partitions: the same futures on the cluster as here, and with every result on the disks
    pd.testing.assert_frame_equal(partitioned_backtest(parts), got)
    pd.testing.assert_frame_equal(partitioned_backtest(parts, client=DaskTasks(client, store=0)), got)
    assert not any(client.run(_run_files).values())  # the run's files removed
    # refits at every cutoff, a fixed shock without interval calibration, months by segment
    # the methods of the bookings history too: run rate, ETS, seasonal naive (each period's bookings added)
    # periods replayed in threads: the ETS's fits (which silence warnings in a block) run after them, or a thread's
    # exit from the block could leave every warning of the process silenced
    blanket = ("ignore", None, Warning, None, 0)
    silenced = warnings.filters.count(blanket)
    _compare_backtests(
        partitioned_backtest(parts, PARTITIONED_METHODS, client=DaskTasks(client, concurrency=4), periods=3),
        backtest(crm, list(PARTITIONED_METHODS), periods=3),
    )
    assert warnings.filters.count(blanket) == silenced
    assert not [f for f in warnings.filters if f[2] is LeakageWarning]  # the score's fits, one at a time
    # the reps' calls, half of them without a team: their rep's team then, from the deals of every partition; a
    # rep moves to another team midway, and partition 0 holds none of their later deals (it alone would say the old)
    subs, opps = crm.forecast_submissions, crm.opportunities
    rep = subs["owner"].iloc[0]
    later = ((opps["owner"] == rep) & (opps["created_at"] > opps["created_at"].median())).to_numpy()
    gone = opps.loc[later & (partition_of(opps["opportunity_id"], 3) == 0), "opportunity_id"]
    moved = opps["team"].where(~later, next(t for t in opps["team"].unique() if t != opps.loc[later, "team"].iloc[0]))
    moved = replace(
        crm,
        opportunities=opps.assign(team=moved).loc[~opps["opportunity_id"].isin(gone)].reset_index(drop=True),
        stage_history=crm.stage_history.loc[~crm.stage_history["opportunity_id"].isin(gone)].reset_index(drop=True),
        activities=crm.activities.loc[~crm.activities["opportunity_id"].isin(gone)].reset_index(drop=True),
        forecast_submissions=subs.assign(team=subs["team"].where(np.arange(len(subs)) % 2 == 0)),
    )
    calls = ["submitted_commit", "submitted_best_case", "bias_corrected_commit"]
    on_cluster = partitioned_backtest(
        PartitionedCRM(write_partitions(moved, tmp_path / "moved", 3)), calls, client=client, periods=3
    )
    assert on_cluster.groupby("method")["forecast"].count().min() > 100  # calls in every replayed period
    _compare_backtests(on_cluster, backtest(moved, calls, periods=3))
    for settings in (
        {"refit": "cutoff", "periods": 1},
        {"shock": 0.3, "calibrate_periods": 0, "segment": None, "periods": 2},
        {"period": "month", "periods": 3, "groups": ["total", "segment"]},
    ):
        _compare_backtests(
            partitioned_backtest(parts, client=client, **settings),
            backtest(crm, list(PIPELINE_METHODS), **settings),
            reseeded=backtest(crm, list(PIPELINE_METHODS), **settings, seed=1),
        )


def test_the_monte_carlo_of_a_backtest_over_partitions_has_the_wholes_distribution(crm, tmp_path):
    from salesforecast.forecast import backtest

    parts = PartitionedCRM(write_partitions(crm, tmp_path / "parts", 5))
    settings = {"periods": 2, "cutoffs": "start", "groups": ["total", "team"], "n_sims": 20_000}
    whole = backtest(crm, ["monte_carlo"], **settings)
    got = partitioned_backtest(parts, ["monte_carlo"], **settings)
    _compare_backtests(got, whole, reseeded=backtest(crm, ["monte_carlo"], **settings, seed=1))
    # the rows listed do not depend on the draws: a rep whose deals win in no simulated future is still listed
    sample = load_sample()
    few = PartitionedCRM(write_partitions(sample, tmp_path / "few", 3))
    months = {"period": "month", "periods": ["2023-04"], "min_history_days": 0}
    rows = [len(backtest(sample, ["monte_carlo"], **months, seed=s)) for s in (0, 1)]
    assert rows[0] == rows[1] == len(partitioned_backtest(few, ["monte_carlo"], **months))
    with pytest.raises(ValueError, match="oracle method needs truth="):  # every other method runs over partitions
        partitioned_backtest(parts, ["crm_weighted", "oracle"])


@pytest.mark.parametrize(
    "settings",
    [
        {"snapshot_freq": "MS", "max_rows": None},
        {"snapshot_freq": "W-MON", "max_rows": 1_000},  # a sample of the whole's rows, drawn whatever part holds one
        {"snapshot_freq": "10D", "max_rows": 1_000, "lookback_days": 400},  # dates not anchored to the calendar
    ],
    ids=["all-rows", "sample", "unanchored-dates"],
)
def test_the_opportunity_score_fit_on_a_cluster_is_the_wholes(crm, tmp_path, client, settings):
    from salesforecast.models.opportunity_scoring import OpportunityScoringModel, opportunity_features

    parts = PartitionedCRM(write_partitions(crm, tmp_path / "parts", 3))
    later = opportunity_features(crm, pd.date_range("2024-06-01", periods=8, freq="MS"))
    for as_of, on in ((None, client), ("2024-09-30", DaskTasks(client, store=0))):
        model = {"target": "period", "random_state": 4, **settings}
        whole = OpportunityScoringModel(**model).fit(crm, as_of=as_of)
        got = partitioned_fit(OpportunityScoringModel(**model), parts, as_of, client=on)
        # the same rows learnt from (the same sample), so the same classifier: the same probabilities, to the bit
        pd.testing.assert_frame_equal(got.training_, whole.training_)
        assert (got.n_train_, got.n_known_, got.n_train_deals_) == (
            whole.n_train_,
            whole.n_known_,
            whole.n_train_deals_,
        )
        pd.testing.assert_series_equal(got.predict_proba(later), whole.predict_proba(later))
        pd.testing.assert_frame_equal(got.summary, whole.summary)
    # another seed draws another sample (where there is one to draw)
    if settings["max_rows"]:
        other = partitioned_fit(OpportunityScoringModel(**{**model, "random_state": 5}), parts, client=client)
        assert not other.predict_proba(later).equals(whole.predict_proba(later))


def test_the_opportunity_score_over_partitions_follows_the_wholes_rules(tmp_path):
    # close dates and forecast categories the history never recorded: unknown before the whole's end, whatever a
    # partition's own end (here the whole's end is a forecast submission, in shared/, weeks after the last deal
    # event: at the cutoffs between, a partition by its own rules would know its open deals' close dates); the
    # owners' track records over every partition (a partition holds few of a rep's deals)
    from salesforecast.forecast import backtest
    from salesforecast.models.opportunity_scoring import OpportunityScoringModel, opportunity_features

    data = history_from_dates(generate(n_opportunities=1_200, seed=5, years=2)[0])
    assert "close_date" in unrecorded_fields(data)
    last, subs = data.as_of, data.forecast_submissions
    late = subs.iloc[[-1]].assign(submitted_at=last + pd.Timedelta(days=75))
    data = replace(data, forecast_submissions=pd.concat([subs, late], ignore_index=True))
    parts = PartitionedCRM(write_partitions(data, tmp_path / "parts", 4))
    assert parts.as_of == data.as_of > max(parts.read(i).as_of for i in range(4))
    later = opportunity_features(data, pd.date_range(last - pd.Timedelta(days=150), periods=6, freq="MS"))
    for as_of in (None, "2024-06-30"):
        model = {"target": "period", "random_state": 0, "snapshot_freq": "W-MON", "max_rows": 2_000}
        whole = OpportunityScoringModel(**model).fit(data, as_of=as_of)
        got = partitioned_fit(OpportunityScoringModel(**model), parts, as_of)
        pd.testing.assert_series_equal(got.predict_proba(later), whole.predict_proba(later))
    settings = {
        "period": "month",
        "periods": 3,
        "groups": ["total", "owner"],
        "opportunity_params": {"random_state": 0},
    }
    got = partitioned_backtest(parts, ["opportunity_score"], **settings)
    assert (pd.to_datetime(got["cutoff"]) > last).any()  # cutoffs after the partitions' own ends
    _compare_backtests(got, backtest(data, ["opportunity_score"], **settings))
    # the whole records close dates, one partition's history none: it follows the whole (its deals' close dates
    # known at every date), as the model, which learnt from close dates, reads them
    data = generate(n_opportunities=1_200, seed=5, years=2)[0]
    hist = data.stage_history
    blank = partition_of(hist["opportunity_id"], 3) == 0
    data = replace(data, stage_history=hist.assign(close_date=hist["close_date"].mask(blank)))
    parts = PartitionedCRM(write_partitions(data, tmp_path / "blank", 3))
    assert "close_date" in unrecorded_fields(parts.read(0)) and "close_date" not in unrecorded_fields(data)
    settings = {"periods": 2, "groups": ["total", "owner"], "opportunity_params": {"random_state": 0}}
    _compare_backtests(
        partitioned_backtest(parts, ["opportunity_score"], **settings),
        backtest(data, ["opportunity_score"], **settings),
    )


def test_the_generator_writes_partitions_one_at_a_time_of_one_organisation(tmp_path, client):
    from salesforecast.forecast import PIPELINE_METHODS
    from salesforecast.schema import read_canonical

    folder = generate_partitions(tmp_path / "gen", 1_800, 3, seed=4, activities=True, years=2)
    crm = PartitionedCRM(folder)
    assert crm.n_partitions == 3 and crm.rows("opportunities") == [600, 600, 600]
    read = [crm.read(i) for i in range(3)]
    ids = pd.concat([p.opportunities["opportunity_id"] for p in read])
    assert ids.is_unique and all(ids.str.startswith("P0000"))
    # one organisation: the same reps and teams in every partition, and a seed of its own in each
    owners = [set(p.opportunities["owner"]) for p in read]
    assert owners[0] == owners[1] == owners[2]
    assert not read[0].opportunities["amount"].equals(read[1].opportunities["amount"])
    # every partition is a valid canonical folder; the leads and their activities in shared/, linked to the deals
    for i in range(3):
        again = read_canonical(folder / f"part-{i:05d}")
        assert len(again.quarantine) == 0 and len(again.opportunities) == 600
    leads = crm.shared("leads")
    assert crm.manifest["shared"]["leads"] == len(leads) > 0 and leads["lead_id"].is_unique
    linked = ids.to_frame().merge(
        pd.concat([p.opportunities[["opportunity_id", "lead_id"]] for p in read]).dropna(), on="opportunity_id"
    )
    assert set(linked["lead_id"]) <= set(leads["lead_id"]) and len(linked) > 0
    assert crm.shared("activities")["opportunity_id"].isna().all() and len(crm.shared("activities")) > 0
    assert sum(crm.rows("activities")) > 0 and crm.as_of >= max(p.as_of for p in read)  # leads are in shared/
    # the same arguments, the same partitions
    twin = PartitionedCRM(generate_partitions(tmp_path / "twin", 1_800, 3, seed=4, activities=True, years=2))
    pd.testing.assert_frame_equal(twin.read(1).stage_history, read[1].stage_history)
    # the steps over partitions run on it
    board = partitioned_backtest(crm, PIPELINE_METHODS, client=client, periods=1, cutoffs="start")
    assert set(board["method"]) == set(PIPELINE_METHODS) and board["forecast"].notna().all()
    with pytest.raises(ValueError, match="n_opportunities must be an integer >= n_partitions"):
        generate_partitions(tmp_path / "few", 2, 3)


def test_a_backtest_over_partitions_follows_the_wholes_rule_for_close_dates_never_recorded(tmp_path):
    # a history derived from date columns records no close date: before the whole's end an open deal's close date is
    # unknown; at a cutoff after a partition's own end, that partition must still apply the whole's rule
    from salesforecast.forecast import backtest

    data = history_from_dates(load_sample())
    parts = PartitionedCRM(write_partitions(data, tmp_path / "parts", 5))
    ends = [parts.read(i).as_of for i in range(5)]
    between = min(ends) + (data.as_of - min(ends)) / 2
    settings = {"cutoffs": [between], "groups": ["total"]}
    whole = backtest(data, ["crm_weighted"], **settings)
    got = partitioned_backtest(parts, ["crm_weighted"], **settings)
    np.testing.assert_allclose(got["forecast"], whole["forecast"], rtol=1e-12)  # a partition's own rule: +4%


def _compare_calls(got, whole, reseeded) -> None:
    """Two `PeriodCall`s: the same rows, sums and sentences' figures; the Monte Carlo's within its error."""
    a, b = got.table, whole.table
    labels = ["level", "team", "rep", "commit_vs_range"]
    pd.testing.assert_frame_equal(a[labels[:3]], b[labels[:3]])
    drawn = ["forecast_p10", "forecast_p50", "forecast_p90", "projected_attainment", "forecast_change"]
    for column in b.columns.difference(labels + drawn):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-9, err_msg=column)  # NaN where NaN
    for name in ("period", "as_of", "weeks_left", "quota", "won_to_date", "commit", "open_pipeline", "ended"):
        assert getattr(got, name) == getattr(whole, name) or np.isclose(getattr(got, name), getattr(whole, name))
    _compare_backtests(got.forecast.table, whole.forecast.table, reseeded.forecast.table)
    if whole.week_ago is not None:
        _compare_backtests(got.week_ago.table, whole.week_ago.table, reseeded.week_ago.table)
    width = (b["forecast_p90"] - b["forecast_p10"]).to_numpy()
    for column in drawn[:3]:
        apart = np.abs(a[column] - b[column]).to_numpy() / width
        chance = np.abs(reseeded.table[column] - b[column]).to_numpy() / width
        assert np.nanquantile(apart, 0.5) <= 2 * np.nanquantile(chance, 0.5) + 0.01, column


def test_the_forecast_call_over_partitions_is_the_wholes(crm, tmp_path, client):
    # the report's call: the period now and a week earlier per team and rep, the quotas, the reps' calls and call
    # ratios, closed won and the open pipeline (added over the partitions), on a cluster as in one process
    from salesforecast.call import period_call
    from salesforecast.forecast import PARTITIONED_METHODS, submission_bias

    parts = PartitionedCRM(write_partitions(crm, tmp_path / "parts", 3))
    settings = {"methods": list(PARTITIONED_METHODS), "n_sims": 4000}
    at = crm.opportunities["created_at"].max() - pd.Timedelta(days=40)  # inside a quarter: a week-earlier view too
    whole = period_call(crm, as_of=at, **settings)
    assert whole.week_ago is not None and whole.has_calls and whole.has_quota and whole.has_teams
    assert whole.table["call_ratio"].notna().sum() > 3 and whole.table["open_pipeline"].iloc[0] > 0
    got = partitioned_period_call(parts, client=client, as_of=at, **settings)
    _compare_calls(got, whole, period_call(crm, as_of=at, seed=1, **settings))
    # the same futures here as on the cluster (a fixed number of partitions)
    pd.testing.assert_frame_equal(partitioned_period_call(parts, as_of=at, **settings).table, got.table)
    # at the data end: the quarter had ended, the next one forecast from its first day, the ended one's bookings
    end = partitioned_period_call(parts, client=client, n_sims=500, methods=settings["methods"])
    ended = period_call(crm, n_sims=500, methods=settings["methods"])
    assert (end.period, end.ended, end.ended_actual, end.ended_quota) == (
        ended.period,
        ended.ended,
        pytest.approx(ended.ended_actual, rel=1e-12),
        pytest.approx(ended.ended_quota, rel=1e-12),
    )
    pd.testing.assert_frame_equal(
        partitioned_submission_bias(parts, client=client, as_of=at), submission_bias(crm, as_of=at), rtol=1e-9
    )


def test_the_forecast_report_runs_on_a_cluster_from_the_command_line(crm, tmp_path, client, capsys, monkeypatch):
    # `salesforecast report -p source=PARTITIONS --dask ADDRESS`: the forecast-accuracy report reads the partitions
    # on the cluster's workers (their steps' tasks reach the scheduler); a report that reads the whole data in one
    # process says what it needs instead of failing
    from bs4 import BeautifulSoup
    from distributed import get_task_stream

    from salesforecast.cli import main

    parts = write_partitions(crm, tmp_path / "parts", 3)
    (parts / "shared" / "notes.txt").write_text("The export's 3 deals without an owner were quarantined.\n")  # a load's
    out = tmp_path / "out"
    argv = ["report", "-p", f"source={parts}", "-p", "n_sims=300", "-p", "history=2", "--out", str(out)]
    with get_task_stream(client) as stream:  # every task the scheduler ran meanwhile, whichever client sent it
        assert main([*argv, "--only", "04_forecast_accuracy", "--dask", client.scheduler.address]) == 0
    ran = {str(task["key"]).split("-")[0] for task in stream.data}
    assert {"part_cutoffs", "part_coverage", "part_booked_at", "latest_team_deals"} <= ran, ran
    assert {"part_training", "part_sample", "part_scores"} <= ran, ran  # the opportunity score's fit and scores
    (page,) = (out / "latest").glob("04_forecast_accuracy*.html")
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    assert soup.select_one("section#headline") is not None
    text = soup.get_text(" ")
    assert "read in 3 partitions by opportunity, on a Dask cluster of 2 workers" in text
    assert "left out" not in text  # every method of the report runs over partitions
    assert "The export's 3 deals without an owner were quarantined." in text  # the load's notes, read-this-first
    assert "Traceback" not in text
    capsys.readouterr()
    assert main([*argv[:3], "--only", "01_data_quality", "--out", str(tmp_path / "other")]) == 3
    (needs,) = (tmp_path / "other" / "latest").glob("01_data_quality*.html")
    assert "holds partitions by opportunity" in needs.read_text(encoding="utf-8")
    # a view the partitions cannot give is refused, naming what to do
    from salesforecast.scale import open_forecast

    with pytest.raises(ValueError, match="team='East'.*write partitions of it"):
        open_forecast(str(parts), team="East")
    # in a report, a page that says what to do (exit 3), not a traceback
    assert main([*argv[:3], "-p", "team=East", "--only", "04_forecast_accuracy", "--out", str(tmp_path / "t")]) == 3
    (refused,) = (tmp_path / "t" / "latest").glob("04_forecast_accuracy*.html")
    assert "Leave team at" in refused.read_text(encoding="utf-8")
    # a scheduler given for a source that is not partitioned: the page says the report ran in its own process
    assert "the source is not partitioned" in open_forecast("sample", dask=client.scheduler.address).where
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert open_forecast("sample").where == ""
