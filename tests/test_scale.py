"""The data in partitions by opportunity (`salesforecast.scale`), and its steps on a real Dask cluster.

The cluster is a `dask.distributed.LocalCluster` of two worker processes (small data): each task reads its own
partition from the folder, as a remote worker would from shared storage.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import generate, load_sample
from salesforecast.datasets.shapes import history_from_dates
from salesforecast.io import load
from salesforecast.scale import MANIFEST, PartitionedCRM, partition_of, partitioned_snapshots, write_partitions
from salesforecast.schema import DataFileError
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
    dates = pd.date_range("2024-01-01", periods=4, freq="QS")
    pd.testing.assert_frame_equal(
        partitioned_snapshots(parts, dates, columns=["owner", "priority"]),
        pipeline_snapshots(data, dates, columns=["owner", "priority"]),
    )
    assert (folder / "shared" / "quarantine.csv").is_file()
    assert (folder / "shared" / "notes.txt").read_text(encoding="utf-8") == "a note of the load\n"
    assert not any((folder / f"part-{i:05d}" / "quarantine.csv").exists() for i in range(8))


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
