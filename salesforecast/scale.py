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
process, with the same result. On a cluster a partition always runs on the same worker, and what its tasks keep
between the tasks of a step is written to that worker's local disk and mapped back when read (`Stored`): a worker's
memory follows the size of a partition, not of the data.

So far: `partitioned_snapshots` (equal to `salesforecast.snapshots.pipeline_snapshots` of the whole, row for row),
`partitioned_fit` (a `StageConversionModel` learned from every partition's sums, or an `OpportunityScoringModel`
from every partition's counts and its share of the training sample: the model of the whole),
`partitioned_backtest` (`salesforecast.forecast.backtest` of the methods of
`salesforecast.forecast.PARTITIONED_METHODS`, every default method, from every partition's sums; the Monte Carlo
within its error), `partitioned_period_call` and `partitioned_submission_bias` (the forecast report's call).
`generate_partitions` writes a generated CRM straight into partitions, for benchmarks beyond one process.

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

import contextlib
import json
import mmap
import os
import pickle
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from salesforecast._utils import NAT, LocalTasks, added, listed, release_memory, summed_in_groups
from salesforecast.call import PeriodCall, owner_teams_parts, period_call, period_call_parts
from salesforecast.datasets import generate
from salesforecast.folders import staged_folder
from salesforecast.forecast import (
    METHODS,
    PARTITIONED_METHODS,
    PIPELINE_METHODS,
    backtest,
    backtest_parts,
    submission_bias,
    submission_bias_parts,
)
from salesforecast.history import DealHistory
from salesforecast.io.database import mask_url
from salesforecast.models.opportunity_scoring import OpportunityScoringModel
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.process import SalesProcess
from salesforecast.rollup import owner_teams
from salesforecast.schema import PARTITIONS_MANIFEST, CRMData, empty_table, holds_partitions
from salesforecast.session import ReportNeeds, open_report, publish_notes
from salesforecast.snapshots import HISTORY_FIELDS, pipeline_snapshots, to_dates, unknown_before

__all__ = [
    "MANIFEST",
    "STORE_BYTES",
    "DaskTasks",
    "ForecastData",
    "PartitionedCRM",
    "dask_client",
    "generate_partitions",
    "open_forecast",
    "partition_of",
    "partitioned_backtest",
    "partitioned_fit",
    "partitioned_period_call",
    "partitioned_snapshots",
    "partitioned_submission_bias",
    "Stored",
    "write_partitions",
]

#: The file that says a folder holds partitions, and what they hold.
MANIFEST = PARTITIONS_MANIFEST

#: The tables written per partition (the activities of its deals); the others are written once, in ``shared/``.
PARTITIONED = ("opportunities", "stage_history", "activities")
SHARED = "shared"
#: The tables written whole in ``shared/`` (with the activities of no deal).
SHARED_TABLES = ("leads", "forecast_submissions", "quotas")


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


def _write_partition(part: CRMData, stage: Path, i: int, manifest: dict[str, Any]) -> None:
    """Write partition `i` (its deals' tables, as a canonical Parquet folder) and record its rows in `manifest`."""
    part.to_folder(stage / _part_name(i), "parquet")
    manifest["partitions"][_part_name(i)] = {t: len(getattr(part, t)) for t in PARTITIONED}


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
        **{t: empty_table(t) for t in SHARED_TABLES},
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
            _write_partition(part, stage, i, manifest)
        shared = replace(
            data,
            opportunities=empty_table("opportunities"),
            stage_history=empty_table("stage_history"),
            activities=acts.take(act_rows[n]).reset_index(drop=True),
        )
        shared.to_folder(stage / SHARED, "parquet")
        manifest["shared"] = {t: len(getattr(shared, t)) for t in SHARED_TABLES}
        manifest["shared"]["activities"] = len(shared.activities)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Path(folder)


#: The id columns `generate_partitions` prefixes with the partition (each chunk numbers its own from 1).
_ID_COLUMNS = ("opportunity_id", "account_id", "lead_id", "activity_id")


def generate_partitions(
    folder: str | Path,
    n_opportunities: int,
    n_partitions: int,
    seed: int = 0,
    *,
    activities: bool = False,
    **params: Any,
) -> Path:
    """Generate a CRM of `n_opportunities` straight into partitions, one partition in memory at a time.

    Partition ``i`` is ``salesforecast.datasets.generate`` of its share of the opportunities, seeded from
    ``(seed, i)`` (``numpy.random.SeedSequence``), in one organisation: the same reps and teams in every partition
    (the whole's default rep count, unless `params` give ``n_reps``), the same horizon and process map. Its ids are
    prefixed with the partition (``P00003-OPP-0000001``), so they are unique over the whole. So a benchmark's 10M or
    100M opportunities never have to fit in one process: the generator holds one partition's tables at a time, and
    ``shared/`` (the leads, and their activities with activities on) is appended partition by partition.

    Parameters
    ----------
    folder : str or Path
        Where to write (as `write_partitions`: written whole, a user's folder refused).
    n_opportunities : int
        Over all partitions (split as evenly as possible).
    n_partitions : int
        At least 1.
    seed : int
    activities : bool
        Simulate activities (12 or so per deal: off by default, as the steps over partitions read none).
    **params
        Other arguments of `generate` (``start``, ``years``, ``process``, ``n_reps``, ``win_rate_shift``...).

    Returns
    -------
    Path
        `folder`, for `PartitionedCRM`.

    Notes
    -----
    A deal's partition is its generating chunk, not `partition_of` its id (``partitions.json`` says
    ``"split": "generated"``): every step over partitions needs only that a deal's rows are in one partition.
    The forecast submissions and quotas are left empty: a rep's call is about all their deals, which no chunk holds.
    Each chunk is an independent draw of the same organisation, so the whole is as if the organisation's deals had
    been simulated in `n_partitions` groups (the same distribution, not the same draws as ``generate(n)``).

    Examples
    --------
    >>> import tempfile
    >>> crm = PartitionedCRM(generate_partitions(tempfile.mkdtemp() + "/gen", 600, 3, seed=1))
    >>> crm.n_partitions, sum(crm.rows("opportunities"))
    (3, 600)
    >>> crm.read(2).opportunities["opportunity_id"].iloc[0]
    'P00002-OPP-0000001'
    """
    if not isinstance(n_partitions, (int, np.integer)) or n_partitions < 1:
        raise ValueError(f"the number of partitions must be an integer >= 1, got {n_partitions!r}")
    if not isinstance(n_opportunities, (int, np.integer)) or n_opportunities < n_partitions:
        raise ValueError(
            f"n_opportunities must be an integer >= n_partitions ({n_partitions}), got {n_opportunities!r}"
        )

    n = int(n_opportunities)
    params.setdefault("n_reps", int(np.clip(n // 125, 12, 400)))  # generate's default for the whole
    sizes = [n // n_partitions + (i < n % n_partitions) for i in range(n_partitions)]
    seeds = [int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0]) for i in range(n_partitions)]
    manifest: dict[str, Any] = {
        "n_partitions": int(n_partitions),
        "key": "opportunity_id",
        "hash": None,
        "split": "generated",
        "generator": {"n_opportunities": n, "seed": int(seed), "seeds": seeds, "activities": bool(activities)},
        "partitions": {},
        "shared": dict.fromkeys((*SHARED_TABLES, "activities"), 0),
    }
    ends: list[pd.Timestamp] = []
    recorded: dict[str, bool] = dict.fromkeys(HISTORY_FIELDS, False)
    writers: dict[str, Any] = {}
    with staged_folder(folder, owned=_written_by_write_partitions) as stage:
        (stage / SHARED).mkdir()
        try:
            for i, (size, chunk_seed) in enumerate(zip(sizes, seeds, strict=True)):  # a loop over partitions
                data = generate(size, chunk_seed, activities=activities, **params)[0]
                prefix = f"P{i:05d}-"
                tables = {
                    name: df.assign(**{c: prefix + df[c] for c in _ID_COLUMNS if c in df.columns})
                    for name, df in data.tables.items()
                }
                acts = tables["activities"]
                on_deal = acts["opportunity_id"].notna().to_numpy(dtype=bool)
                part = replace(
                    data,
                    opportunities=tables["opportunities"],
                    stage_history=tables["stage_history"],
                    activities=acts.loc[on_deal].reset_index(drop=True),
                    **{t: empty_table(t) for t in SHARED_TABLES},
                )
                _write_partition(part, stage, i, manifest)
                for name, rows in (("leads", tables["leads"]), ("activities", acts.loc[~on_deal])):
                    table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
                    if name not in writers:
                        writers[name] = pq.ParquetWriter(stage / SHARED / f"{name}.parquet", table.schema)
                    writers[name].write_table(table.cast(writers[name].schema))
                    manifest["shared"][name] += len(rows)
                ends.append(data.as_of)
                for f in HISTORY_FIELDS:
                    recorded[f] |= unknown_before(data, f) is None
                if i == 0:
                    data.process.to_yaml(stage / SHARED / "process.yml")
                del data, tables, part, acts
        finally:
            for w in writers.values():
                w.close()
        as_of = max(ends)
        manifest["as_of"] = as_of.isoformat()
        manifest["unknown_before"] = {f: None if recorded[f] else as_of.isoformat() for f in HISTORY_FIELDS}
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

    @cached_property
    def process(self) -> SalesProcess:
        """The process map the partitions were written with (every partition holds the same)."""
        return SalesProcess.from_yaml(Path(self.folder) / _part_name(0) / "process.yml")

    def shared(self, table: str) -> pd.DataFrame:
        """A table written once, in ``shared/``, as written: read here, on the client (small beside the deals).

        One of ``leads``, ``forecast_submissions``, ``quotas`` and ``activities`` (of no deal).
        """
        tables = (*SHARED_TABLES, "activities")
        if table not in tables:
            raise ValueError(f"table must be one of {tables}, got {table!r}")
        path = Path(self.folder) / SHARED / f"{table}.parquet"
        return pd.read_parquet(path) if path.is_file() else empty_table(table)

    def rows(self, table: str) -> list[int]:
        """The rows of `table` (one of ``opportunities``, ``stage_history``, ``activities``) in each partition."""
        if table not in PARTITIONED:
            raise ValueError(f"table must be one of {PARTITIONED}, got {table!r}")
        return [int(self.manifest["partitions"][_part_name(i)][table]) for i in range(self.n_partitions)]

    def read(self, i: int, activities: bool = True) -> CRMData:
        """Partition `i`: its opportunities, their stage history and their activities, as written.

        The tables were validated when the data were loaded, before `write_partitions`; they are read back as they
        were written, not inferred again from a partition's values alone (a column keeps the whole's type, whatever
        values the partition happens to hold). The quarantine and counts are in ``shared/``. With `activities`
        False, the activities are left unread (an empty table): the steps that never read them (the pipeline, the
        stage-conversion fit, the backtest of the pipeline methods) keep less in memory.
        """
        if not 0 <= int(i) < self.n_partitions:
            last = self.n_partitions - 1
            raise IndexError(f"partition {i} of {self.folder}: there are {self.n_partitions} (0 to {last})")
        folder = Path(self.folder) / _part_name(int(i))
        tables = {
            t: pd.read_parquet(folder / f"{t}.parquet") if (folder / f"{t}.parquet").is_file() else empty_table(t)
            for t in PARTITIONED
            if activities or t != "activities"
        }
        tables.setdefault("activities", empty_table("activities"))
        none = pd.DataFrame()  # no quarantine or counts of its own: the whole's are in shared/
        return CRMData(
            **tables,
            leads=empty_table("leads"),
            forecast_submissions=empty_table("forecast_submissions"),
            quotas=empty_table("quotas"),
            process=self.process,
            quarantine=none,
            counts=none,
        )


STORE_BYTES = 2**20
"""A task's result whose arrays take more bytes than this is kept on its worker's disk (`Stored`)."""


class Stored:
    """A task's result kept in a file on its worker's local disk, its arrays mapped from the file when read.

    A worker of a backtest over partitions keeps every partition's context between tasks (its pipeline at every
    cutoff, its history, its wins): in memory, a worker would hold its share of the whole data. Kept here, a worker
    holds only what its running task reads: `load` maps the file (the operating system's page cache serves it, no
    copy), and the arrays are released with the task, so a worker's memory follows the partition, not the data.

    The object is pickled with its arrays out of band (protocol 5) and written as one file: the pickle, then each
    array at a 64-byte boundary. Loaded, the arrays are read-only views of the file. The file is removed with the
    object that wrote it (the worker releases the result). Sent to another process, it travels as the object
    itself: gathered by the client, the value; fetched by another worker of the same `run`, kept on that worker's
    disk in turn.

    Parameters
    ----------
    path : str
        The file.
    nbytes : int
        The bytes of its arrays.
    run : str, optional
        The `DaskTasks` run it belongs to (its files' folder on every worker).
    threshold : int
        The bytes above which a result of the run is kept on disk.
    """

    __slots__ = ("_pid", "nbytes", "path", "run", "threshold")

    def __init__(self, path: str, nbytes: int, run: str | None = None, threshold: int = STORE_BYTES) -> None:
        self.path, self.nbytes, self._pid = path, nbytes, os.getpid()
        self.run, self.threshold = run, threshold

    @classmethod
    def keep(cls, value: Any, folder: str, threshold: int = STORE_BYTES, run: str | None = None) -> Any:
        """`value` written in `folder` when its arrays take more than `threshold` bytes (a `Stored`), else a copy.

        The copy holds no view of another result's file: a small result that kept one (a slice of a partition's
        arrays, say) would keep that file's pages in the worker's memory for as long as it lives.
        """
        buffers: list[pickle.PickleBuffer] = []
        head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        views = [b.raw() for b in buffers]
        nbytes = sum(v.nbytes for v in views)
        if nbytes + len(head) <= threshold:
            return pickle.loads(head, buffers=[bytearray(v) for v in views])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{uuid.uuid4().hex}.pickle")
        offsets, at = [], _aligned(8 * (2 + 2 * len(views)) + len(head))
        for v in views:
            offsets += [at, v.nbytes]
            at = _aligned(at + v.nbytes)
        with open(path, "wb") as f:
            f.write(np.array([len(head), len(views), *offsets], dtype="<i8").tobytes())
            f.write(head)
            for v, off in zip(views, offsets[::2], strict=True):
                f.seek(off)
                f.write(v)
        return cls(path, nbytes, run, threshold)

    def load(self) -> Any:
        """The object, its arrays mapped read-only from the file."""
        with open(self.path, "rb") as f:
            mapped = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        n_head, n_views = (int(x) for x in np.frombuffer(mapped[:16], dtype="<i8"))
        table = np.frombuffer(mapped[16 : 16 + 16 * n_views], dtype="<i8").reshape(-1, 2)
        start = 16 + 16 * n_views
        views = [mapped[off : off + n] for off, n in table.tolist()]
        return pickle.loads(mapped[start : start + n_head], buffers=views)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _arrived, (self.load(), self.run, self.threshold)

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():  # only the process that wrote it removes the file
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _aligned(at: int) -> int:
    return -(-at // 64) * 64


def _arrived(value: Any, run: str | None, threshold: int) -> Any:
    """A `Stored` sent elsewhere: on a worker of its run, kept on that worker's disk in turn; elsewhere, the value.

    A result fetched by another worker (an addition of `DaskTasks.sum` needs two) stays there as long as the client
    holds it: on disk, it holds no memory.
    """
    folder = _RUN_FOLDERS.get(run) if run is not None else None  # known where a task of the run has run
    return value if folder is None else Stored.keep(value, folder, threshold, run)


def _loaded(value: Any) -> Any:
    return value.load() if isinstance(value, Stored) else value


@dataclass(frozen=True)
class DaskTasks:
    """Run the tasks of a step split over partitions on a Dask cluster.

    ``map`` submits one task per partition, its result kept on the worker (a future); ``gather`` brings results to
    the client. `salesforecast._utils.LocalTasks` runs the same tasks here.

    Partition ``i`` always runs on the same worker (the ``i``-th of the workers in turn), where its results stay;
    a result whose arrays take more than `store` bytes is kept on that worker's local disk (`Stored`), so a worker
    holds in memory only what its running task reads (one thread per worker; with more, what its tasks read). The
    workers are those of the cluster when the step starts:
    a worker added later gets no partition, and a step whose worker is lost waits for it (its partitions' tasks
    are bound to it): run the step again.

    Parameters
    ----------
    client : dask.distributed.Client
    store : int or None
        Results above this many bytes of arrays are kept on the workers' disks (None: every result in memory).
    concurrency : int
        Periods of a backtest replayed at once (`salesforecast.forecast.backtest_parts`): their tasks queue on the
        workers together, so a worker is not idle while the client waits for one period's answers.
    """

    client: Any
    store: int | None = STORE_BYTES
    concurrency: int = 2
    run: str = field(default_factory=lambda: uuid.uuid4().hex)

    @cached_property
    def workers(self) -> list[str]:
        """The workers' addresses, in order: partition ``i`` runs on ``workers[i % len(workers)]``."""
        found = sorted(self.client.nthreads())  # every worker (scheduler_info lists a few in some versions)
        if not found:
            raise ValueError("DaskTasks: the cluster has no worker")
        return found

    def map(self, fn: Any, handles: Any, *per_part: Any, **shared: Any) -> list[Any]:
        """One task ``fn(handle, *the partition's values, **shared)`` per partition; futures.

        Every value travels as a task's argument, not as a keyword of ``Client.submit`` (whose keywords are not
        meant for arrays); a shared value over 64 KB pickled (every censored visit, a fitted model) is sent to the
        workers once (``scatter``), not with every task: the client would hold a copy per partition. The tasks
        are not pure: a folder rewritten between two steps is read again, never answered from an earlier result.
        """
        handles = list(handles)
        values = [self.client.scatter(v, broadcast=True, hash=False) if _large(v) else v for v in shared.values()]
        columns = [list(p) for p in per_part]
        call = partial(_call, fn=fn, n_per_part=len(per_part), names=tuple(shared), store=self.store, run=self.run)
        name = getattr(fn, "__name__", "task").strip("_")
        return [
            self.client.submit(
                call,
                handle,
                *(c[i] for c in columns),
                *values,
                key=f"{name}-{i}-{uuid.uuid4().hex}",  # the dashboard shows the step's function by name
                workers=[self.workers[i % len(self.workers)]],
                allow_other_workers=False,
            )
            for i, handle in enumerate(handles)
        ]

    def gather(self, results: Any) -> list[Any]:
        """The results, on the client."""
        return [_loaded(r) for r in self.client.gather(list(results))]

    def sum(self, results: Any) -> Any:
        """The results added on the workers in `LocalTasks.sum`'s order (`summed_in_groups`): only the total travels.

        The groups of consecutive results are added at once, each one addition after another, every sum kept on
        disk as the results are: a worker holds two results at a time per thread, whatever the number of
        partitions.
        """

        def add(a: Any, b: Any) -> Any:
            return self.client.submit(_add, a, b, store=self.store, run=self.run, pure=False)

        return _loaded(self.client.gather(summed_in_groups(list(results), add)))

    def close(self) -> None:
        """Remove this run's files from the workers' disks (each is removed with its result, this catches the rest).

        A worker that cannot be reached keeps its files: a warning names it and the folder. The next step takes the
        cluster's workers as they are then.
        """
        self.__dict__.pop("workers", None)
        try:
            answers = self.client.run(_remove_run, self.run, on_error="return")
        except Exception as exc:  # the cluster is gone: nothing to reach
            answers = {"the cluster": exc}
        for worker, answer in answers.items():
            if isinstance(answer, BaseException):
                warnings.warn(
                    f"DaskTasks: the files of run {self.run} could not be removed from {worker} ({answer!r}): "
                    f"remove salesforecast/{self.run} from its local directory",
                    RuntimeWarning,
                    stacklevel=2,
                )


def _large(value: Any) -> bool:
    """Whether a value shared by every task of a step takes more than 64 KB pickled (then it is scattered once)."""
    if value is None or isinstance(value, (bool, int, float, str, pd.Timestamp)):
        return False
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes > 2**16
    return len(pickle.dumps(value, protocol=5)) > 2**16


def _call(
    handle: Any, *values: Any, fn: Any, n_per_part: int, names: tuple[str, ...], store: int | None, run: str
) -> Any:
    """A `DaskTasks` task: ``fn(handle, *per-partition values, **shared values)``, the values given in order.

    Values kept on disk are mapped; a result over `store` bytes is kept on this worker's disk.
    """
    handle, *values = (_loaded(v) for v in (handle, *values))
    return _kept(fn(handle, *values[:n_per_part], **dict(zip(names, values[n_per_part:], strict=True))), store, run)


def _add(a: Any, b: Any, store: int | None, run: str) -> Any:
    """A `DaskTasks.sum` task: two results added, the sum kept as `_call` keeps a result."""
    return _kept(added(_loaded(a), _loaded(b)), store, run)


def _kept(result: Any, store: int | None, run: str) -> Any:
    """A task's result as its worker keeps it: on its disk when over `store` bytes (`Stored.keep`)."""
    return result if store is None else Stored.keep(result, _run_folder(run), store, run)


#: The folder of each run's files in this process (a worker's), once one of its tasks has run here.
_RUN_FOLDERS: dict[str, str] = {}


def _run_folder(run: str, worker: Any = None) -> str:
    """The folder of a run's files on this worker (in a task, or `worker` as ``Client.run`` gives it)."""
    if worker is None:
        from distributed import get_worker

        worker = get_worker()
    folder = os.path.join(worker.local_directory, "salesforecast", run)
    _RUN_FOLDERS[run] = folder  # for the results of the run that arrive from other workers (`_arrived`)
    return folder


def _remove_run(run: str, dask_worker: Any = None) -> None:
    shutil.rmtree(_run_folder(run, dask_worker), ignore_errors=True)
    _RUN_FOLDERS.pop(run, None)


@contextlib.contextmanager
def _tasks(client: Any) -> Iterator[LocalTasks | DaskTasks]:
    """Where a step's tasks run (a cluster with `client`, else here), its files removed when the step ends.

    `client` may be a `DaskTasks` already (to set how its results are kept).
    """
    tasks = client if isinstance(client, DaskTasks) else LocalTasks() if client is None else DaskTasks(client)
    try:
        yield tasks
    finally:
        tasks.close()


def _partition_snapshots(
    i: int, folder: str, dates: pd.DatetimeIndex, columns: list[str] | None, unknown: dict[str, Any]
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
    client : dask.distributed.Client or DaskTasks, optional
        Each partition's task runs on a worker, which reads the partition itself (the folder must be readable
        there); the client gathers the rows. Default: the partitions one after another in this process.

    Returns
    -------
    pandas.DataFrame
        Equal to ``pipeline_snapshots(data, as_of, columns)`` of the data the partitions were written from: the
        same rows in the same order (by ``as_of``, then ``opportunity_id``), the same values.
    """
    cols = None if columns is None else list(columns)
    with _tasks(client) as tasks:  # the whole's rule for fields never recorded, read once here (the same for all)
        frames = tasks.gather(
            tasks.map(
                _partition_snapshots,
                range(crm.n_partitions),
                folder=str(crm.folder),
                dates=to_dates(as_of),
                columns=cols,
                unknown=crm.unknown_before,
            )
        )
    frames = [f for f in frames if len(f)] or frames[:1]
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["as_of", "opportunity_id"], kind="stable", ignore_index=True)


def _partition_history(i: int, folder: str, keep: list[str]) -> DealHistory:
    """Task: the deal history of partition `i`, slim (`DealHistory.slim`: kept on the worker for the fit's tasks)."""
    history = DealHistory.from_data(PartitionedCRM(folder).read(i, activities=False)).slim(keep)
    release_memory()
    return history


def partitioned_fit(
    model: StageConversionModel | OpportunityScoringModel,
    crm: PartitionedCRM,
    as_of: Any = None,
    client: Any = None,
) -> StageConversionModel | OpportunityScoringModel:
    """Fit a `StageConversionModel` or an `OpportunityScoringModel` on every partition, each read where it lives.

    The model of the whole data. For the stage-conversion model, each partition's deal history is built on a
    worker and stays there; the fit's tasks (`StageConversionModel.fit_parts`) send the client only sums (counts
    per life-table cell, exposure, deal counts), the counts that place the duration bins' edges exactly, and the
    censored visits of every partition. For the opportunity score, each partition counts its snapshot rows and
    its owners' records, and builds the features of its rows drawn for the training sample; the client fits the
    classifier on them (`OpportunityScoringModel.fit_parts`: the same model as ``model.fit(data, as_of)``, to the
    bit).

    Parameters
    ----------
    model : StageConversionModel or OpportunityScoringModel
        Its parameters (window, half-life, segment, bins...) are the fit's; it is fitted in place and returned.
    crm : PartitionedCRM
    as_of : date, optional
        The whole's end (default, ``crm.as_of``) or an earlier date: the data as known then.
    client : dask.distributed.Client or DaskTasks, optional
        Default: the partitions one after another in this process. A `DaskTasks` sets how results are kept.

    Returns
    -------
    StageConversionModel or OpportunityScoringModel
        `model`, fitted: the same counts, edges and (with unit weights) transition rows as ``model.fit(data,
        as_of)`` on the data the partitions were written from; the other tables equal to the order of
        floating-point sums (1e-12). With ``n_bootstrap`` the replicates are drawn per partition (see
        `StageConversionModel.fit_parts`).

    Examples
    --------
    >>> import tempfile
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> crm = PartitionedCRM(write_partitions(data, tempfile.mkdtemp() + "/parts", 3))
    >>> a = partitioned_fit(StageConversionModel(n_bootstrap=0), crm)
    >>> b = StageConversionModel(n_bootstrap=0).fit(data)
    >>> a.transition_counts_.equals(b.transition_counts_), a.duration_edges_.equals(b.duration_edges_)
    (True, True)
    """
    if isinstance(model, OpportunityScoringModel):  # each partition read with its activities (features read them)
        with _tasks(client) as tasks:
            readers = _parts_of(crm, activities=True)[0]
            return model.fit_parts(readers, crm.process, crm.as_of, as_of, tasks=tasks, **_score_rules(crm))
    keep = [] if model.segment is None else [model.segment]
    with _tasks(client) as tasks:
        histories = tasks.map(_partition_history, range(crm.n_partitions), folder=str(crm.folder), keep=keep)
        return model.fit_parts(histories, crm.process, crm.as_of if as_of is None else as_of, tasks=tasks)


def _read_partition(i: int, folder: str, activities: bool = False) -> CRMData:
    """Task: partition `i`, read on the worker; without its activities unless asked (the pipeline methods read none)."""
    return PartitionedCRM(folder).read(i, activities=activities)


def partitioned_backtest(
    crm: PartitionedCRM, methods: Sequence[str] = PIPELINE_METHODS, client: Any = None, **kwargs: Any
) -> pd.DataFrame:
    """`salesforecast.forecast.backtest` over the partitions (on a cluster with `client`).

    The pipeline methods by default; those of the bookings history (run rate, ETS, seasonal naive) and of the reps'
    calls (submitted commit and best case, bias-corrected commit: the submissions from ``shared/``) on request.

    Each partition is read on a worker and its context (its pipeline at every cutoff, its history, its wins) is
    kept there, on the worker's disk (`DaskTasks`); the client receives sums per group only
    (`salesforecast.forecast.backtest_parts`).

    Parameters
    ----------
    crm : PartitionedCRM
    methods : sequence of str
        Among ``salesforecast.forecast.PARTITIONED_METHODS``: ``crm_weighted``, ``stage_conversion``,
        ``monte_carlo`` (the default, ``PIPELINE_METHODS``), ``run_rate``, ``ets``, ``seasonal_naive``,
        ``submitted_commit``, ``submitted_best_case``, ``bias_corrected_commit``, ``opportunity_score`` (its model
        fitted over the partitions, `OpportunityScoringModel.fit_parts`; each partition read with its activities).
    client : dask.distributed.Client or DaskTasks, optional
        Default: the partitions one after another in this process. A `DaskTasks` sets how results are kept.
    **kwargs
        `backtest`'s settings: ``period``, ``cutoffs``, ``groups``, ``periods``, ``refit``, ``n_sims``,
        ``shock``, ``new_deal_periods``, ``segment``, ``calibrate_periods``, ``calibrate_prior``, ``bias_weeks``,
        ``min_history_days``, ``seed``.

    Returns
    -------
    pandas.DataFrame
        As ``backtest(data, methods, ...)`` of the data the partitions were written from (``monte_carlo`` within
        Monte Carlo error: see `backtest_parts`).

    Examples
    --------
    >>> import tempfile
    >>> from salesforecast.datasets import load_sample
    >>> from salesforecast.forecast import backtest
    >>> data = load_sample()
    >>> crm = PartitionedCRM(write_partitions(data, tempfile.mkdtemp() + "/parts", 3))
    >>> settings = {"periods": ["FY2025Q2"], "cutoffs": "start", "groups": ["total"]}
    >>> got = partitioned_backtest(crm, ["crm_weighted", "stage_conversion"], **settings)
    >>> whole = backtest(data, ["crm_weighted", "stage_conversion"], **settings)
    >>> got["forecast"].round(6).tolist() == whole["forecast"].round(6).tolist()
    True
    """
    scores = "opportunity_score" in methods
    with _tasks(client) as tasks:
        return backtest_parts(
            *_parts_of(crm, activities=scores),
            crm.shared("forecast_submissions"),
            methods,
            tasks=tasks,
            **_rules(crm),
            **_score_rules(crm),
            **kwargs,
        )


def _parts_of(crm: PartitionedCRM, activities: bool = False) -> tuple[list[Any], SalesProcess, pd.Timestamp]:
    """A reader per partition (called on the worker: the tables are read there), the process map, the data's end.

    With `activities`, each partition's activities too (the opportunity score's features read them).
    """
    folder = str(crm.folder)
    readers = [partial(_read_partition, i, folder, activities) for i in range(crm.n_partitions)]
    return readers, crm.process, crm.as_of


def _rules(crm: PartitionedCRM) -> dict[str, Any]:
    """The whole's rule for open deals' close dates (`salesforecast.forecast.backtest_parts`' argument)."""
    before = crm.unknown_before["close_date"]
    return {"close_unknown_before": NAT if before is None else int(before.astype(np.int64))}


def _score_rules(crm: PartitionedCRM) -> dict[str, Any]:
    """The whole's rules for the opportunity score's features (`salesforecast.forecast.backtest_parts`' argument)."""
    return {"unknown": crm.unknown_before}


def partitioned_period_call(
    crm: PartitionedCRM,
    client: Any = None,
    as_of: Any = None,
    period: str = "current",
    freq: str = "quarter",
    bands: pd.DataFrame | None = None,
    results: pd.DataFrame | None = None,
    group: str = "total",
    n_sims: int = 1000,
    seed: int = 0,
    **kwargs: Any,
) -> PeriodCall:
    """`salesforecast.call.period_call` over the partitions (on a cluster with `client`): the report's forecast call.

    The forecasts now and a week earlier run as `partitioned_backtest` does (at one cutoff each, the methods of
    ``salesforecast.forecast.PARTITIONED_METHODS``); closed won, the open pipeline and each rep's bookings are
    added over the partitions on the workers; the quotas and the reps' calls are read from ``shared/`` here
    (`salesforecast.call.period_call_parts`).

    Parameters
    ----------
    crm : PartitionedCRM
    client : dask.distributed.Client or DaskTasks, optional
        Default: the partitions one after another in this process.
    as_of : date, optional
        The report date (default: the data end). The partitions hold the data as they stand at their end: a
        forecast at an earlier date uses only what was known then, as the backtest does.
    period, freq, bands, results, group, n_sims, seed, **kwargs
        As `salesforecast.call.period_call` (``bands`` and ``results`` from `partitioned_backtest`).

    Returns
    -------
    PeriodCall
        As ``period_call`` of the data the partitions were written from (the Monte Carlo's figures within Monte
        Carlo error).
    """
    with _tasks(client) as tasks:
        methods = kwargs.get("methods")
        parts, process, end = _parts_of(crm, activities=methods is None or "opportunity_score" in methods)
        for name, value in _score_rules(crm).items():  # the opportunity score's features follow the whole's rules
            kwargs.setdefault(name, value)
        return period_call_parts(
            parts,
            process,
            end,
            crm.shared("forecast_submissions"),
            crm.shared("quotas"),
            as_of,
            period,
            freq,
            bands,
            results,
            group,
            n_sims,
            seed,
            tasks=tasks,
            **_rules(crm),
            **kwargs,
        )


def partitioned_submission_bias(
    crm: PartitionedCRM, client: Any = None, as_of: Any = None, period: str = "quarter", **kwargs: Any
) -> pd.DataFrame:
    """`salesforecast.forecast.submission_bias` over the partitions: each rep's bookings added on the workers.

    Parameters
    ----------
    crm : PartitionedCRM
    client : dask.distributed.Client or DaskTasks, optional
    as_of, period, **kwargs
        As `submission_bias` (``category``, ``weeks``).

    Returns
    -------
    pandas.DataFrame
        As ``submission_bias`` of the whole data.
    """
    with _tasks(client) as tasks:
        return submission_bias_parts(
            *_parts_of(crm), crm.shared("forecast_submissions"), as_of, period, tasks=tasks, **_rules(crm), **kwargs
        )


def dask_client(address: str | None = None) -> Any:
    """A client of the Dask scheduler at `address`, else at ``DASK_SCHEDULER_ADDRESS``; None when neither is set.

    Parameters
    ----------
    address : str, optional
        E.g. ``tcp://scheduler:8786`` (what ``dask scheduler`` prints, or a `LocalCluster`'s ``scheduler_address``).

    Raises
    ------
    ValueError
        When no scheduler answers there (the message names the address and where it came from).
    """
    given = (address or "").strip()
    where = "the dask parameter" if given else "DASK_SCHEDULER_ADDRESS"
    address = given or os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip()
    if not address:
        return None
    from distributed import Client

    try:
        return Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ValueError(  # the whole message masked: the library's own repeats the address
            mask_url(
                f"no Dask scheduler answers at {address} ({where}): {exc}. Start one (dask scheduler; dask worker "
                "ADDRESS on each machine) or leave the address empty to run here"
            )
        ) from None


@dataclass
class ForecastData:
    """The data of the forecast-accuracy report: the report's view in this process, or partitions (`open_forecast`).

    Its methods run the report's steps where the data are: `backtest`, `period_call`, `submission_bias` and
    `owner_teams` of the view, or over the partitions (on the cluster of `client`, else here, one partition after
    another).

    Attributes
    ----------
    process : SalesProcess
    as_of : pandas.Timestamp
        The report date.
    view : CRMData or None
        The data known at `as_of` (`salesforecast.session.open_report`), for a source read in this process.
    crm : PartitionedCRM or None
        The partitions, for a partitioned source.
    client : dask.distributed.Client or None
        The cluster the partitions' steps run on (None: here).
    """

    process: SalesProcess
    as_of: pd.Timestamp
    view: CRMData | None = None
    crm: PartitionedCRM | None = None
    client: Any = field(default=None, repr=False)
    scheduler: str = ""

    @property
    def where(self) -> str:
        """Where the steps ran, in a sentence for the reader ("" for a source read here with no cluster asked for)."""
        if self.crm is None:
            return (
                f"A Dask scheduler was given ({self.scheduler}), but the source is not partitioned: the report ran "
                "in its own process (salesforecast import SOURCE --out FOLDER --partitions N writes partitions)."
                if self.scheduler
                else ""
            )
        on = "one after another in this process"
        if self.client is not None:
            on = f"on a Dask cluster of {len(self.client.nthreads())} workers"
        left = [m.label for m in METHODS.values() if m.default and m.name not in PARTITIONED_METHODS]
        return (
            f"The data are read in {self.crm.n_partitions} partitions by opportunity, {on}. The methods that run "
            f"over partitions are replayed; {listed(left)} {'does' if len(left) == 1 else 'do'} not run over "
            f"partitions yet and {'is' if len(left) == 1 else 'are'} left out."
            if left
            else f"The data are read in {self.crm.n_partitions} partitions by opportunity, {on}."
        )

    @property
    def submissions(self) -> pd.DataFrame:
        """The forecast submissions (the reps' calls)."""
        return self.view.forecast_submissions if self.crm is None else self.crm.shared("forecast_submissions")

    @property
    def has_teams(self) -> bool:
        """Whether the opportunities have a ``team`` column."""
        if self.crm is None:
            return "team" in self.view.opportunities.columns
        files = (Path(self.crm.folder) / _part_name(i) / "opportunities.parquet" for i in range(self.crm.n_partitions))
        return any("team" in pq.read_schema(f).names for f in files if f.is_file())

    def backtest(self, **kwargs: Any) -> pd.DataFrame:
        """`salesforecast.forecast.backtest` of the view, or `partitioned_backtest` of every partitioned method."""
        if self.crm is None:
            return backtest(self.view, **kwargs)
        return partitioned_backtest(self.crm, PARTITIONED_METHODS, client=self.client, **kwargs)

    def period_call(self, **kwargs: Any) -> PeriodCall:
        """`salesforecast.call.period_call` at the report date, or `partitioned_period_call`."""
        if self.crm is None:
            return period_call(self.view, as_of=self.as_of, **kwargs)
        return partitioned_period_call(self.crm, self.client, self.as_of, methods=PARTITIONED_METHODS, **kwargs)

    def submission_bias(self) -> pd.DataFrame:
        """`salesforecast.forecast.submission_bias` at the report date, or `partitioned_submission_bias`."""
        if self.crm is None:
            return submission_bias(self.view, as_of=self.as_of)
        return partitioned_submission_bias(self.crm, self.client, self.as_of)

    def owner_teams(self) -> pd.Series:
        """Each rep's team at the report date (`salesforecast.rollup.owner_teams`; its parts' over partitions)."""
        if self.crm is None:
            return owner_teams(self.view.opportunities, self.as_of, self.view.forecast_submissions)
        if not self.has_teams:  # as `owner_teams` of opportunities without teams
            return pd.Series(dtype="str", name="team")
        with _tasks(self.client) as tasks:
            return owner_teams_parts(_parts_of(self.crm)[0], self.as_of, self.submissions, tasks)


def open_forecast(
    source: str | Path = "sample",
    process: Any = "default",
    as_of: str = "latest",
    team: str | None = "",
    owner: str | None = "",
    dask: str | None = "",
    **kwargs: Any,
) -> ForecastData:
    """Open the data of the forecast-accuracy report: a source read here, or partitions read where they live.

    Parameters
    ----------
    source, process, as_of, team, owner, **kwargs
        As `salesforecast.session.open_report` (its `needs` and `columns` in `kwargs`). A folder of partitions
        (`write_partitions`, ``salesforecast import --partitions N``) is read partition by partition; it is
        reported at its latest date, for every team and rep, with the process map it was written with, and of its
        `needs` only the opportunities are checked here (the columns are the partitions' own; the load's notes,
        kept in ``shared/``, reach the report as `open_report`'s do).
    dask : str, optional
        A Dask scheduler's address (default: ``DASK_SCHEDULER_ADDRESS``): a partitioned source's steps run on its
        cluster, whose workers read the partitions (on storage every worker reaches). Without one, they run here.

    Returns
    -------
    ForecastData

    Raises
    ------
    salesforecast.session.ReportNeeds
        When a partitioned source is asked for what it cannot give (a date before its end, a team or a rep, another
        process map), or holds no opportunity (the report renders a page that says so).
    ValueError
        When no scheduler answers at `dask`.
    """
    if not holds_partitions(source):
        report = open_report(source, process=process, as_of=as_of, team=team, owner=owner, **kwargs)
        # a scheduler asked for by this report (not one the environment names for any Dask program)
        return ForecastData(
            report.view.process, report.as_of, view=report.view, scheduler=mask_url((dask or "").strip())
        )
    crm = PartitionedCRM(source)
    asked = {"as_of": (str(as_of).strip().casefold(), "latest"), "team": (team or "", ""), "owner": (owner or "", "")}
    asked["process"] = (str(process or "default"), "default")
    for name, (value, default) in asked.items():
        if value != default:  # a page that says so (a `ReportNeeds` is a ValueError), not a traceback
            raise ReportNeeds(
                f"{name}={value!r}: {source} holds partitions, which a report reads at their latest date, for every "
                f"team and rep, with the process map they were written with ({name}={default!r}); for another view, "
                "write partitions of it (salesforecast import ... --partitions N) or read a canonical folder",
                needs=[f"{name}={default!r} on partitions"],
                lacking=[f"{name}={value!r} was asked for"],
                fixes=[
                    f"Leave {name} at {default!r}, or write partitions of the data as wanted (salesforecast import "
                    "... --partitions N), or run the report on a canonical folder."
                ],
            )
    if sum(crm.rows("opportunities")) == 0:
        raise ReportNeeds(
            f"This report needs opportunities; the partitions in {source} hold none.",
            needs=["opportunities"],
            lacking=["no opportunity in any partition"],
            fixes=["Write the partitions from a source with opportunities (salesforecast import ... --partitions N)."],
        )
    notes = Path(source) / SHARED / "notes.txt"  # what the load found, as `open_report` shows it
    if notes.is_file():
        publish_notes(line for line in notes.read_text(encoding="utf-8").splitlines() if line.strip())
    return ForecastData(crm.process, crm.as_of, crm=crm, client=dask_client(dask))
