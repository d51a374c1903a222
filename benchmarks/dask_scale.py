"""The pipeline on a Dask cluster (issue 16): what is partitioned so far, measured against one process.

For each generated CRM (`generate(n, seed=5)` as Parquet: ``DIR/crm100k``, ``DIR/crm1m`` with ``--data-dir DIR``,
else generated once into ``benchmarks/.scratch/`` as `make bench` does), in a fresh process:

1. ``write_partitions`` of the loaded data into N partitions (``benchmarks/.scratch/dask/``, git-ignored);
2. ``pipeline_snapshots`` of the whole at 156 weekly dates in this process (time, this process's peak);
3. ``partitioned_snapshots`` of the same dates on a ``LocalCluster`` of W worker processes with a memory limit each
   (time on the client, the client's peak, each worker's peak ``VmHWM``), and the rows differing from step 2.

Run from the repository root (``make bench-dask``; under the machine's lock on a shared machine)::

    .venv/bin/python benchmarks/dask_scale.py --data-dir /work/data --sizes 100000 1000000

Results: ``results/dask_scale.json`` and the table between the ``dask`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRATCH = HERE / ".scratch" / "dask"
NAMES = {100_000: "crm100k", 1_000_000: "crm1m", 10_000_000: "crm10m"}
GB = 1024**3
SEED = 5  # the report suite's CRMs (report_suite.py)


def _hwm() -> float:
    """This process's peak resident memory (VmHWM) in GB (NaN where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return float("nan")


def run_one(folder: Path, n_partitions: int, workers: int, memory_limit: str) -> dict[str, object]:
    """Steps 1-3 on one CRM, in this process (see the module docstring)."""
    from dask.distributed import Client, LocalCluster
    from scale import weekly_dates

    from salesforecast.scale import PartitionedCRM, partitioned_snapshots, write_partitions
    from salesforecast.schema import read_canonical
    from salesforecast.snapshots import pipeline_snapshots

    out: dict[str, object] = {"source": str(folder), "partitions": n_partitions, "workers": workers}
    data = read_canonical(folder)
    out["opportunities"] = len(data.opportunities)
    target = SCRATCH / folder.name
    t = time.perf_counter()
    write_partitions(data, target, n_partitions)
    out["write_seconds"] = round(time.perf_counter() - t, 2)
    dates = weekly_dates()
    t = time.perf_counter()
    whole = pipeline_snapshots(data, dates)
    out["single_seconds"] = round(time.perf_counter() - t, 2)
    out["single_peak_gb"] = round(_hwm(), 2)
    out["rows"] = len(whole)
    del data
    crm = PartitionedCRM(target)
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        t = time.perf_counter()
        parts = partitioned_snapshots(crm, dates, client=client)
        out["cluster_seconds"] = round(time.perf_counter() - t, 2)
        peaks = client.run(_hwm)
        out["worker_peak_gb"] = sorted(round(v, 2) for v in peaks.values())
    out["client_peak_gb"] = round(_hwm(), 2)
    if parts.equals(whole):
        out["rows_differing"] = 0
    elif len(parts) != len(whole):
        out["rows_differing"] = abs(len(parts) - len(whole))  # at least; the rows do not line up
    else:  # rows by position: a value differs, missing on one side only, or both missing (NaN != NaN) left out
        same = (parts == whole) | (parts.isna() & whole.isna())
        out["rows_differing"] = int((~same).any(axis=1).sum())
    out["overhead"] = round(out["cluster_seconds"] / out["single_seconds"], 2)
    return out


def _table(runs: list[dict]) -> str:
    lines = [
        "| CRM | partitions x workers | write partitions | snapshots, one process (peak) "
        "| snapshots on the cluster (client peak; each worker's peak) | cluster / one process | rows differing |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['opportunities']:,} opportunities, {r['rows']:,} snapshot rows | {r['partitions']} x {r['workers']} "
            f"| {r['write_seconds']} s | {r['single_seconds']} s ({r['single_peak_gb']} GB) "
            f"| {r['cluster_seconds']} s ({r['client_peak_gb']} GB; {', '.join(map(str, r['worker_peak_gb']))} GB) "
            f"| {r['overhead']} | {r['rows_differing']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="holds crm100k, crm1m (Parquet); default: generated once"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="8GB", help="per worker (dask's memory_limit)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a child run: one CRM, JSON on stdout
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.partitions, args.workers, args.memory_limit)))
        return 0
    runs = []
    for n in args.sizes:
        if args.data_dir is None:  # generate(n, seed=5) once into benchmarks/.scratch (git-ignored), as make bench
            from scale import ensure_data

            folder = ensure_data(n, SEED)[0]
        else:
            folder = args.data_dir / NAMES.get(n, f"crm{n}")
        if not folder.is_dir():
            print(f"error: {folder} is missing: write generate(n, seed=5) there (fmt='parquet')", file=sys.stderr)
            return 1
        cmd = [sys.executable, __file__, "--one", str(folder), "--partitions", str(args.partitions)]
        cmd += ["--workers", str(args.workers), "--memory-limit", args.memory_limit]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE)})
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(_table(runs[-1:]).splitlines()[-1], flush=True)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    table = _table(runs)
    print(table)
    if not args.no_save:
        from _common import update_readme

        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        meta = {
            "date": stamp,
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "dask_scale.json").write_text(json.dumps({**meta, "runs": runs}, indent=2) + "\n", encoding="utf-8")
        update_readme(
            f"Run {stamp} on {os.cpu_count()} cores ({platform.platform()}); LocalCluster, one thread per worker, "
            f"memory limit {args.memory_limit} each; 156 weekly dates.\n\n{table}",
            "dask",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
