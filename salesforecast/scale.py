"""Beyond one machine: the canonical data split into partitions by opportunity, and steps run on them with Dask.

A CRM too large for one process is written as partitions (`write_partitions`): each holds a share of the
opportunities, chosen by a stable hash of ``opportunity_id`` (`partition_of`), with their stage history and their
activities; the tables that are not a deal's (leads, forecast submissions, quotas, activities of leads only) are
written once, in ``shared/``. ``partitions.json`` records the count, the rows of every table in every partition and
what the steps need of the whole: its end (``as_of``) and the times before which fields the history never
recorded are unknown (`salesforecast.snapshots.unknown_before`), so a partition's snapshots follow the whole's
rules, not its own.

`PartitionedCRM` reads such a folder (a path, or any place the workers can read: a shared file system); its steps
take a ``dask.distributed.Client`` and run one task per partition on the workers, each reading its own partition,
so only small results come back to the client. Without a client they run one partition after another in this
process, with the same result.

So far: `partitioned_snapshots` (equal to `salesforecast.snapshots.pipeline_snapshots` of the whole, row for row).

Examples
--------
>>> import tempfile
>>> from salesforecast.datasets import load_sample
>>> from salesforecast.snapshots import pipeline_snapshots
>>> data = load_sample()
>>> folder = write_partitions(data, tempfile.mkdtemp() + "/parts", 3)
>>> crm = PartitionedCRM(folder)
>>> crm.n_partitions, sum(crm.rows("opportunities")) == len(data.opportunities)
(3, True)
>>> snap = partitioned_snapshots(crm, ["2024-01-01", "2025-01-01"])
>>> snap.equals(pipeline_snapshots(data, ["2024-01-01", "2025-01-01"]))
True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesforecast.folders import staged_folder
from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData, empty_table
from salesforecast.snapshots import HISTORY_FIELDS, pipeline_snapshots, to_dates, unknown_before

__all__ = ["MANIFEST", "PartitionedCRM", "partition_of", "partitioned_snapshots", "write_partitions"]

#: The file that says a folder holds partitions, and what they hold.
MANIFEST = "partitions.json"

#: The tables written per partition (the activities of its deals); the others are written once, in ``shared/``.
PARTITIONED = ("opportunities", "stage_history", "activities")
SHARED = "shared"


def partition_of(ids: pd.Series | Sequence[str], n: int) -> np.ndarray:
    """The partition of each opportunity id: a stable hash of the id (pandas' `hash_pandas_object`) modulo `n`.

    The same id falls in the same partition in every run, process and machine (the hash does not depend on a seed or
    on the other ids), so a table keyed by ``opportunity_id`` splits the same way as the opportunities.

    Examples
    --------
    >>> partition_of(["OPP-1", "OPP-2", "OPP-1"], 4).tolist() == partition_of(["OPP-1", "OPP-2", "OPP-1"], 4).tolist()
    True
    >>> int(partition_of(["OPP-1"], 1)[0])
    0
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of partitions must be an integer >= 1, got {n!r}")
    values = pd.Series(ids).astype("str")
    hashed = pd.util.hash_pandas_object(values, index=False).to_numpy()
    return (hashed % np.uint64(n)).astype(np.int64)


def _part_name(i: int) -> str:
    return f"part-{i:05d}"


def _groups(part: np.ndarray, n: int) -> list[np.ndarray]:
    """Row positions of each partition ``0 .. n - 1`` (ascending within each)."""
    order = np.argsort(part, kind="stable")
    return np.split(order, np.searchsorted(part[order], np.arange(1, n)))


def _written_by_write_partitions(path: Path) -> bool:
    """Whether an entry of a partitions folder is one `write_partitions` writes."""
    name = path.name
    return (path.is_file() and name == MANIFEST) or (
        path.is_dir() and (name == SHARED or (name.startswith("part-") and name[5:].isdigit()))
    )


def write_partitions(data: CRMData, folder: str | Path, n: int) -> Path:
    """Write `data` as `n` partitions by opportunity (Parquet), for `PartitionedCRM` and a cluster's workers.

    Parameters
    ----------
    data : CRMData
        Validated data.
    folder : str or Path
        Where to write: ``part-00000/`` ... (each a canonical folder of its opportunities, their stage history and
        their activities), ``shared/`` (leads, forecast submissions, quotas, activities of no deal, and the load's
        quarantine and notes) and ``partitions.json``. The folder is written whole (staged and swapped in, as
        `CRMData.to_folder`); an existing folder may hold only what this writes.
    n : int
        The number of partitions (>= 1).

    Returns
    -------
    Path
        `folder`.

    Notes
    -----
    A partition is a valid canonical folder by itself (`read_canonical` reads it), but its ``as_of`` is its own
    last event: what the whole's steps need of the whole (its end, and the times before which the fields the history
    never recorded are unknown) is in ``partitions.json`` and `PartitionedCRM` passes it on.
    """
    whole_opps = partition_of(data.opportunities["opportunity_id"], n)
    of_hist = partition_of(data.stage_history["opportunity_id"], n)
    acts = data.activities
    on_deal = acts["opportunity_id"].notna().to_numpy(dtype=bool) if len(acts) else np.zeros(0, dtype=bool)
    of_acts = partition_of(acts["opportunity_id"], n) if len(acts) else np.zeros(0, dtype=np.int64)
    unknown = {f: unknown_before(data, f) for f in HISTORY_FIELDS}
    manifest: dict[str, Any] = {
        "n_partitions": int(n),
        "key": "opportunity_id",
        "hash": "pandas.util.hash_pandas_object(opportunity_id as str, index=False) % n",
        "as_of": None if pd.isna(data.as_of) else pd.Timestamp(data.as_of).isoformat(),
        "unknown_before": {f: None if t is None else pd.Timestamp(t).isoformat() for f, t in unknown.items()},
        "partitions": {},
    }
    bare = replace(
        data,
        **{t: empty_table(t) for t in ("leads", "forecast_submissions", "quotas")},
        quarantine=data.quarantine.iloc[:0],
        notes=(),
    )
    with staged_folder(folder, owned=_written_by_write_partitions) as stage:
        # each table's rows grouped by partition once (a stable sort keeps their order within a partition)
        opp_rows, hist_rows = _groups(whole_opps, n), _groups(of_hist, n)
        act_rows = _groups(np.where(on_deal, of_acts, n), n + 1)  # activities of no deal: the last group
        for i in range(n):
            part = replace(
                bare,
                opportunities=data.opportunities.take(opp_rows[i]).reset_index(drop=True),
                stage_history=data.stage_history.take(hist_rows[i]).reset_index(drop=True),
                activities=acts.take(act_rows[i]).reset_index(drop=True),
            )
            part.to_folder(stage / _part_name(i), "parquet")
            manifest["partitions"][_part_name(i)] = {t: len(getattr(part, t)) for t in PARTITIONED}
        shared = replace(
            data,
            opportunities=empty_table("opportunities"),
            stage_history=empty_table("stage_history"),
            activities=acts.take(act_rows[n]).reset_index(drop=True),
        )
        shared.to_folder(stage / SHARED, "parquet")
        manifest["shared"] = {t: len(getattr(shared, t)) for t in ("leads", "forecast_submissions", "quotas")}
        manifest["shared"]["activities"] = len(shared.activities)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Path(folder)


@dataclass(frozen=True)
class PartitionedCRM:
    """A folder written by `write_partitions`: its partitions, read one at a time (on a worker or here).

    Parameters
    ----------
    folder : str or Path
        The folder (a path every worker can read, e.g. on a shared file system).

    Raises
    ------
    FileNotFoundError
        When `folder` holds no ``partitions.json`` (the message says how to write one).
    """

    folder: str | Path

    def __post_init__(self) -> None:
        if not (Path(self.folder) / MANIFEST).is_file():
            raise FileNotFoundError(
                f"{self.folder}: no {MANIFEST}; write the partitions first "
                "(salesforecast.scale.write_partitions(data, folder, n))"
            )

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """``partitions.json``: the partition count, the rows of each table per partition, the whole's end."""
        return json.loads((Path(self.folder) / MANIFEST).read_text(encoding="utf-8"))

    @property
    def n_partitions(self) -> int:
        """The number of partitions."""
        return int(self.manifest["n_partitions"])

    @property
    def as_of(self) -> pd.Timestamp:
        """The whole data's ``as_of`` (its last event), not a partition's."""
        value = self.manifest["as_of"]
        return pd.NaT if value is None else pd.Timestamp(value)

    @property
    def unknown_before(self) -> dict[str, np.datetime64 | None]:
        """Per field of `HISTORY_FIELDS`: `unknown_before` of the whole data (None: recorded)."""
        return {
            f: None if t is None else np.datetime64(pd.Timestamp(t), "us")
            for f, t in self.manifest["unknown_before"].items()
        }

    def rows(self, table: str) -> list[int]:
        """The rows of `table` (one of ``opportunities``, ``stage_history``, ``activities``) in each partition."""
        if table not in PARTITIONED:
            raise ValueError(f"table must be one of {PARTITIONED}, got {table!r}")
        return [int(self.manifest["partitions"][_part_name(i)][table]) for i in range(self.n_partitions)]

    def read(self, i: int) -> CRMData:
        """Partition `i`: its opportunities, their stage history and their activities, as written.

        The tables were validated when the data were loaded, before `write_partitions`; they are read back as they
        were written, not inferred again from a partition's values alone (a column keeps the whole's type, whatever
        values the partition happens to hold). The quarantine and counts are in ``shared/``.
        """
        if not 0 <= int(i) < self.n_partitions:
            last = self.n_partitions - 1
            raise IndexError(f"partition {i} of {self.folder}: there are {self.n_partitions} (0 to {last})")
        folder = Path(self.folder) / _part_name(int(i))
        tables = {
            t: pd.read_parquet(folder / f"{t}.parquet") if (folder / f"{t}.parquet").is_file() else empty_table(t)
            for t in PARTITIONED
        }
        none = pd.DataFrame()  # no quarantine or counts of its own: the whole's are in shared/
        return CRMData(
            **tables,
            leads=empty_table("leads"),
            forecast_submissions=empty_table("forecast_submissions"),
            quotas=empty_table("quotas"),
            process=SalesProcess.from_yaml(folder / "process.yml"),
            quarantine=none,
            counts=none,
        )


def _partition_snapshots(
    folder: str, i: int, dates: pd.DatetimeIndex, columns: list[str] | None, unknown: dict[str, Any]
) -> pd.DataFrame:
    """The task of one partition: read it, rebuild its pipeline at `dates` under the whole's rules (`unknown`)."""
    return pipeline_snapshots(PartitionedCRM(folder).read(i), dates, columns=columns, unknown=unknown)


def partitioned_snapshots(
    crm: PartitionedCRM, as_of: Any, columns: Sequence[str] | None = None, client: Any = None
) -> pd.DataFrame:
    """`pipeline_snapshots` of the whole data, one task per partition (on a Dask cluster when `client` is given).

    Parameters
    ----------
    crm : PartitionedCRM
    as_of : date or dates
        As `pipeline_snapshots`.
    columns : sequence of str, optional
        As `pipeline_snapshots`.
    client : dask.distributed.Client, optional
        Each partition's task runs on a worker, which reads the partition itself (the folder must be readable
        there); the client gathers the rows. Default: the partitions one after another in this process.

    Returns
    -------
    pandas.DataFrame
        Equal to ``pipeline_snapshots(data, as_of, columns)`` of the data the partitions were written from: the
        same rows in the same order (by ``as_of``, then ``opportunity_id``), the same values.
    """
    dates = to_dates(as_of)
    cols = None if columns is None else list(columns)
    folder = str(crm.folder)
    parts = range(crm.n_partitions)
    unknown = crm.unknown_before  # the whole's, read once here (the same for every task)
    if client is None:
        frames = [_partition_snapshots(folder, i, dates, cols, unknown) for i in parts]
    else:
        # pure=False: a folder rewritten between two calls is read again, never answered from an earlier result
        futures = client.map(
            _partition_snapshots,
            [folder] * len(parts),
            list(parts),
            dates=dates,
            columns=cols,
            unknown=unknown,
            pure=False,
        )
        frames = client.gather(futures)
    frames = [f for f in frames if len(f)] or frames[:1]
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["as_of", "opportunity_id"], kind="stable", ignore_index=True)
