"""The pipeline on a Dask cluster (issue 16): the partitioned steps measured against one process.

For each generated CRM (`generate(n, seed=5)` as Parquet: ``DIR/crm100k``, ``DIR/crm1m`` with ``--data-dir DIR``,
else generated once into ``benchmarks/.scratch/`` as `make bench` does), three fresh processes, each with its own
peak memory (``VmHWM``):

1. ``single``: the data loaded (`read_canonical`), then in this one process: ``pipeline_snapshots`` at 156 weekly
   dates, ``StageConversionModel(n_bootstrap=0).fit``, and ``backtest`` of the pipeline methods (``crm_weighted``,
   ``stage_conversion``, ``monte_carlo``; the default periods, cutoffs and groups), then the ``backtest`` of
   ``opportunity_score`` alone (its own peak). Its outputs are kept for 3;
2. ``write``: the data loaded and written as N partitions (``write_partitions``, ``benchmarks/.scratch/dask/``,
   git-ignored);
3. ``cluster``: on a ``LocalCluster`` of W worker processes with a memory limit each, each step reading the
   partitions on the workers: ``partitioned_snapshots``, ``partitioned_fit``, ``partitioned_backtest``; each
   step's peak on the client and on each worker (the peaks started anew between steps: ``/proc/self/clear_refs``),
   and the differences from 1: snapshot rows differing, the model's counts
   and edges equal, the largest relative difference of the sums' forecasts (``crm_weighted``,
   ``stage_conversion``), and the Monte Carlo's company-total difference as a share of its P10-P90 (its futures are
   drawn per partition: Monte Carlo error, not a defect); then ``partitioned_backtest`` of ``opportunity_score``
   (its fit over the partitions at each refit, each partition's pipeline scored on its worker) against 1's.

With ``--generated N ...``, CRMs too large for one process: written by ``generate_partitions(folder, N, P,
seed=5)`` (one partition in memory at a time; ``P = N / --deals-per-partition``, 125,000 by default, so the
partition size is the same at every N), then step 3 without the snapshots (which gather every row on the client)
and with nothing to compare: the fit and the backtest's time and peaks on the cluster, to see how they grow with
the data at a fixed partition size.

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


def _reset_hwm() -> None:
    """Start this process's peak anew (Linux: ``5`` written to ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _timed(out: dict[str, object], name: str, fn: object, *args: object, **kwargs: object) -> object:
    t = time.perf_counter()
    value = fn(*args, **kwargs)
    out[name] = round(time.perf_counter() - t, 2)
    return value


def run_single(folder: Path, scratch: Path) -> dict[str, object]:
    """Step 1 (see the module docstring)."""
    import warnings

    from scale import weekly_dates

    from salesforecast._utils import release_memory
    from salesforecast.forecast import PIPELINE_METHODS, backtest
    from salesforecast.models.stage_conversion import StageConversionModel
    from salesforecast.schema import read_canonical
    from salesforecast.snapshots import pipeline_snapshots

    out: dict[str, object] = {}
    data = _timed(out, "load_seconds", read_canonical, folder)
    out["opportunities"] = len(data.opportunities)
    snaps = _timed(out, "snapshots_seconds", pipeline_snapshots, data, weekly_dates())
    out["rows"] = len(snaps)
    snaps.to_parquet(scratch / "snapshots.parquet")
    del snaps
    model = _timed(out, "fit_seconds", StageConversionModel(n_bootstrap=0).fit, data)
    model.transition_counts_.to_parquet(scratch / "transition_counts.parquet")
    model.duration_edges_.rename(columns=str).to_parquet(scratch / "duration_edges.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        board = _timed(out, "backtest_seconds", backtest, data, list(PIPELINE_METHODS))
    out["backtest_rows"] = len(board)
    board.to_parquet(scratch / "backtest.parquet")
    out["peak_gb"] = round(_hwm(), 2)
    del board
    release_memory()
    _reset_hwm()  # the opportunity score's own peak (the data loaded included)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        board = _timed(out, "score_seconds", backtest, data, ["opportunity_score"])
    board.to_parquet(scratch / "score.parquet")
    out["score_peak_gb"] = round(_hwm(), 2)
    return out


def run_write(folder: Path, target: Path, n_partitions: int) -> dict[str, object]:
    """Step 2."""
    from salesforecast.scale import write_partitions
    from salesforecast.schema import read_canonical

    out: dict[str, object] = {}
    data = read_canonical(folder)
    _timed(out, "write_seconds", write_partitions, data, target, n_partitions)
    out["write_peak_gb"] = round(_hwm(), 2)
    return out


#: The generated CRMs whose backtest `--repeats` times (the larger ones take minutes a run).
REPEATED_UP_TO = 1_000_000


def run_generated(target: Path, n: int, n_partitions: int) -> dict[str, object]:
    """``generate_partitions`` of `n` opportunities (see the module docstring)."""
    from salesforecast.scale import generate_partitions

    out: dict[str, object] = {"opportunities": n}
    _timed(out, "generate_seconds", generate_partitions, target, n, n_partitions, seed=SEED)
    out["generate_peak_gb"] = round(_hwm(), 2)
    return out


def run_cluster(
    target: Path, scratch: Path, workers: int, memory_limit: str, compare: bool = True, repeats: int = 1
) -> dict[str, object]:
    """Step 3 (without the snapshots and the comparison when not `compare`); the backtest `repeats` times, its time
    the median (``cluster_backtest_seconds_runs``: each run's)."""
    import warnings

    import numpy as np
    import pandas as pd
    from dask.distributed import Client, LocalCluster
    from scale import weekly_dates

    from salesforecast._utils import release_memory
    from salesforecast.models.stage_conversion import StageConversionModel
    from salesforecast.scale import PartitionedCRM, partitioned_backtest, partitioned_fit, partitioned_snapshots

    out: dict[str, object] = {}
    crm = PartitionedCRM(target)
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):

        def peaks(step: str) -> None:  # this step's peak on the client and on each worker, then anew for the next
            out[f"{step}_client_peak_gb"] = round(_hwm(), 2)
            out[f"{step}_worker_peak_gb"] = sorted(round(v, 2) for v in client.run(_hwm).values())
            for run in (lambda f: f(), client.run):  # what the step freed given back, so the next starts afresh
                run(release_memory)
                run(_reset_hwm)

        if compare:
            snaps = _timed(out, "cluster_snapshots_seconds", partitioned_snapshots, crm, weekly_dates(), client=client)
            whole = pd.read_parquet(scratch / "snapshots.parquet")
            out["snapshot_rows_differing"] = (
                0 if snaps.equals(whole) else int(max(len(snaps), len(whole)) - min(len(snaps), len(whole))) or -1
            )
            del snaps, whole
            peaks("snapshots")
        model = _timed(
            out, "cluster_fit_seconds", partitioned_fit, StageConversionModel(n_bootstrap=0), crm, client=client
        )
        if compare:
            out["model_counts_equal"] = bool(
                model.transition_counts_.equals(pd.read_parquet(scratch / "transition_counts.parquet"))
                and model.duration_edges_.rename(columns=str).equals(
                    pd.read_parquet(scratch / "duration_edges.parquet")
                )
            )
        peaks("fit")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            board = _timed(out, "cluster_backtest_seconds", partitioned_backtest, crm, client=client)
            runs = [out["cluster_backtest_seconds"]]
            for _ in range(repeats - 1):  # the same cluster: each run's time (the peaks: over every run)
                del board
                board = _timed(out, "cluster_backtest_seconds", partitioned_backtest, crm, client=client)
                runs.append(out["cluster_backtest_seconds"])
            if repeats > 1:
                out["cluster_backtest_seconds_runs"] = runs
                out["cluster_backtest_seconds"] = float(np.median(runs))
        peaks("backtest")
        out["backtest_rows"] = len(board)
        if compare:  # the opportunity score: its fit over the partitions, each partition's pipeline scored there
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scored = _timed(
                    out, "cluster_score_seconds", partitioned_backtest, crm, ["opportunity_score"], client=client
                )
            peaks("score")
    if not compare:
        return out
    whole = pd.read_parquet(scratch / "score.parquet")
    key = ["period", "cutoff", "group", "group_value", "method", "leakage"]
    out["score_rows_equal"] = bool(scored[key].reset_index(drop=True).equals(whole[key].reset_index(drop=True)))
    a, b = whole["forecast"].to_numpy(), scored["forecast"].to_numpy()
    out["score_max_relative_difference"] = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), 1.0)))
    whole = pd.read_parquet(scratch / "backtest.parquet")
    key = ["period", "cutoff", "group", "group_value", "method"]
    out["backtest_rows_equal"] = bool(board[key].reset_index(drop=True).equals(whole[key].reset_index(drop=True)))
    sums = (whole["method"] != "monte_carlo").to_numpy()
    a, b = whole.loc[sums, "forecast"].to_numpy(), board.loc[sums, "forecast"].to_numpy()
    out["sums_max_relative_difference"] = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), 1.0)))
    mc = ((whole["method"] == "monte_carlo") & (whole["group"] == "total")).to_numpy()
    width = (whole.loc[mc, "p90"] - whole.loc[mc, "p10"]).to_numpy()
    apart = np.abs(whole.loc[mc, "forecast"].to_numpy() - board.loc[mc, "forecast"].to_numpy()) / width
    out["monte_carlo_total_mean_difference_of_p10_p90"] = round(float(np.median(apart)), 4)
    return out


def _peaks(r: dict, step: str) -> str:
    workers = ", ".join(map(str, r[f"{step}_worker_peak_gb"]))
    return f"client {r[f'{step}_client_peak_gb']} GB; workers {workers} GB"


def _seconds(r: dict) -> str:
    """The backtest's time: the median of its runs, their range when there were several."""
    runs = r.get("cluster_backtest_seconds_runs")
    spread = f", median of {len(runs)}: {min(runs)}-{max(runs)} s" if runs else ""
    return f"{r['cluster_backtest_seconds']} s{spread}"


def _generated_table(runs: list[dict]) -> str:
    lines = [
        "| CRM (generate_partitions) | partitions x workers | generate | fit on the cluster (its peaks) "
        "| backtest on the cluster (its peaks) | backtest rows |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['opportunities']:,} opportunities | {r['partitions']} x {r['workers']} "
            f"| {r['generate_seconds']} s ({r['generate_peak_gb']} GB) "
            f"| {r['cluster_fit_seconds']} s ({_peaks(r, 'fit')}) "
            f"| {_seconds(r)} ({_peaks(r, 'backtest')}) | {r['backtest_rows']:,} |"
        )
    return "\n".join(lines)


def _table(runs: list[dict]) -> str:
    lines = [
        "| CRM | partitions x workers | step | one process | on the cluster (its peaks) | cluster / one process "
        "| equal? |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        crm = f"{r['opportunities']:,} opportunities"
        shape = f"{r['partitions']} x {r['workers']}"

        steps = [
            (
                "snapshots (156 dates)",
                "snapshots_seconds",
                "cluster_snapshots_seconds",
                f"{r['rows']:,} rows, {r['snapshot_rows_differing']} differing",
            ),
            (
                "stage-conversion fit",
                "fit_seconds",
                "cluster_fit_seconds",
                "counts and edges equal" if r["model_counts_equal"] else "counts differ",
            ),
            (
                "backtest, pipeline methods",
                "backtest_seconds",
                "cluster_backtest_seconds",
                f"{r['backtest_rows']:,} rows{'' if r['backtest_rows_equal'] else ' (rows differ)'}; sums to "
                f"{r['sums_max_relative_difference']:.0e}; Monte Carlo total "
                f"{r['monte_carlo_total_mean_difference_of_p10_p90']} of its P10-P90 (median)",
            ),
        ]
        names = ["snapshots", "fit", "backtest"]
        if "score_seconds" in r:
            steps.append(
                (
                    "backtest, opportunity score",
                    "score_seconds",
                    "cluster_score_seconds",
                    f"{'the same rows and leakage flags' if r['score_rows_equal'] else 'rows differ'}; forecasts "
                    f"to {r['score_max_relative_difference']:.0e} (one process peaks at {r['score_peak_gb']} GB)",
                )
            )
            names.append("score")
        for (name, one, many, equal), step in zip(steps, names, strict=True):
            ratio = round(r[many] / r[one], 2) if r[one] else float("nan")
            lines.append(
                f"| {crm} | {shape} | {name} | {r[one]} s | {r[many]} s ({_peaks(r, step)}) | {ratio} | {equal} |"
            )
        lines.append(
            f"| {crm} | {shape} | load; peak memory | {r['load_seconds']} s; {r['peak_gb']} GB | | | "
            f"write partitions {r['write_seconds']} s ({r['write_peak_gb']} GB) |"
        )
    return "\n".join(lines)


def _child(args: list[str]) -> dict[str, object]:
    cmd = [sys.executable, __file__, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE)})
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(done.returncode)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="holds crm100k, crm1m (Parquet); default: generated once"
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="8GB", help="per worker (dask's memory_limit)")
    parser.add_argument(
        "--generated", type=int, nargs="*", default=[], help="also: CRMs of these sizes from generate_partitions"
    )
    parser.add_argument(
        "--step", choices=["single", "write", "cluster", "generate", "generated"], help=argparse.SUPPRESS
    )  # a child run
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--deals-per-partition",
        type=int,
        default=125_000,
        help="the generated CRMs' partition size (their partitions: n / this), the same at every size",
    )
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help=f"the backtest of a generated CRM of up to {REPEATED_UP_TO:,} deals this many times (its median: one"
        " run varies by up to a tenth on a shared machine)",
    )
    parser.add_argument(
        "--keep-compared",
        action="store_true",
        help="keep the saved comparison runs (results/dask_scale.json) and measure only the generated CRMs",
    )
    args = parser.parse_args(argv)
    if args.step is not None:
        scratch = SCRATCH / "outputs"
        scratch.mkdir(parents=True, exist_ok=True)
        target = SCRATCH / "parts"
        if args.step == "single":
            result = run_single(args.source, scratch)
        elif args.step == "write":
            result = run_write(args.source, target, args.partitions)
        elif args.step == "generate":
            result = run_generated(target, args.n, args.partitions)
        elif args.step == "generated":
            repeats = args.repeats if args.n <= REPEATED_UP_TO else 1
            result = run_cluster(target, scratch, args.workers, args.memory_limit, compare=False, repeats=repeats)
        else:
            result = run_cluster(target, scratch, args.workers, args.memory_limit)
        print(json.dumps(result))
        return 0
    runs, kept, saved_generated = [], "", []
    if args.keep_compared and (RESULTS / "dask_scale.json").exists():
        saved = json.loads((RESULTS / "dask_scale.json").read_text(encoding="utf-8"))
        runs, kept = saved.get("runs", []), f" (the comparison with one process: the run of {saved.get('date')})"
    if (RESULTS / "dask_scale.json").exists():  # the generated CRMs not measured again keep their saved rows
        saved = json.loads((RESULTS / "dask_scale.json").read_text(encoding="utf-8"))
        saved_generated = [g for g in saved.get("generated", []) if g["opportunities"] not in args.generated]
    for n in args.sizes if not kept else []:
        if args.data_dir is None:  # generate(n, seed=5) once into benchmarks/.scratch (git-ignored), as make bench
            from scale import ensure_data

            folder = ensure_data(n, SEED)[0]
        else:
            folder = args.data_dir / NAMES.get(n, f"crm{n}")
        if not folder.is_dir():
            print(f"error: {folder} is missing: write generate(n, seed=5) there (fmt='parquet')", file=sys.stderr)
            return 1
        shutil.rmtree(SCRATCH, ignore_errors=True)
        run: dict[str, object] = {"source": str(folder), "partitions": args.partitions, "workers": args.workers}
        common = ["--partitions", str(args.partitions), "--workers", str(args.workers)]
        common += ["--memory-limit", args.memory_limit, "--source", str(folder)]
        for step in ("single", "write", "cluster"):
            run.update(_child(["--step", step, *common]))
        runs.append(run)
        print(_table(runs[-1:]), flush=True)
    generated = []
    for n in args.generated:
        shutil.rmtree(SCRATCH, ignore_errors=True)
        n_partitions = max(1, round(n / args.deals_per_partition))
        run = {"partitions": n_partitions, "workers": args.workers}
        common = ["--partitions", str(n_partitions), "--workers", str(args.workers)]
        common += ["--memory-limit", args.memory_limit, "--n", str(n), "--repeats", str(args.repeats)]
        for step in ("generate", "generated"):
            run.update(_child(["--step", step, *common]))
        generated.append(run)
        print(_generated_table(generated[-1:]), flush=True)
    if saved_generated:
        sizes = ", ".join(f"{g['opportunities']:,}" for g in saved_generated)
        kept += f" (the generated CRMs of {sizes} opportunities: their saved runs of {saved.get('date')})"
        generated = sorted(saved_generated + generated, key=lambda g: g["opportunities"])
    shutil.rmtree(SCRATCH, ignore_errors=True)
    table = _table(runs) if runs else ""
    if generated:
        table += ("\n\n" if table else "") + _generated_table(generated)
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
        (RESULTS / "dask_scale.json").write_text(
            json.dumps({**meta, "runs": runs, "generated": generated}, indent=2) + "\n", encoding="utf-8"
        )
        update_readme(
            f"Run {stamp}{kept} on {os.cpu_count()} cores ({platform.platform()}); LocalCluster, one thread per "
            f"worker, memory limit {args.memory_limit} each; 156 weekly dates; the backtest with its defaults "
            f"(every quarter closed a year after the first deal, weekly cutoffs, total, team and owner).\n\n{table}",
            "dask",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
