"""Scale: the pipeline core at 100k and 1M generated opportunities, step by step, each in a fresh process.

Run from the repository root::

    .venv/bin/python benchmarks/scale.py [--sizes 100000 1000000] [--seed 0] [--out benchmarks/results] [--no-save]

For each size, `generate(n, seed)` is written once as a Parquet canonical folder under ``benchmarks/.scratch/`` (reused
by later runs: keyed by size, seed and the generator's source). Each step runs in its own subprocess, which reports
its wall time and peak resident memory (``VmHWM`` of ``/proc/self/status``, reset once the data are loaded: the
peak of the step, with the data it works on in memory). The steps after the first read the validated data from a
pickle the first one leaves in a per-run folder (deleted at the end), so that loading is not repeated:

1. ``load``: `read_canonical` on the Parquet folder (reading and validation);
2. ``snapshots``: `pipeline_snapshots` at 156 weekly dates over the data's three years;
3. ``duckdb``: reference A, the same snapshots (same columns and order) computed by DuckDB in SQL straight from the
   Parquet files: validity intervals from window functions, then a range join of the dates against them
   (``benchmarks/_scale_reference.py``); its rows are checked equal to ours;
4. ``pandas_loop``: reference B, a plain pandas loop over the dates, as in an analyst's notebook (per date: history up
   to it, last row per opportunity, open stages), on the data in memory; also checked equal to ours;
5. ``fit``: ``StageConversionModel(n_bootstrap=0).fit(data)``;
6. ``backtest``: ``backtest(data, periods=12, groups=("total", "team", "owner"), min_history_days=0)``: every
   method ``04_forecast_accuracy`` runs by default (the entries of `salesforecast.forecast.METHODS` marked
   ``default``: the submitted calls, ``crm_weighted``, ``run_rate``, ``stage_conversion``, ``opportunity_score``,
   ``ets``, ``seasonal_naive``, ``monte_carlo``; only ``oracle``, which needs the generator's truth, is left out),
   so that no slow method hides outside the figure; 12 quarters x 13-14 weekly cutoffs. ``min_history_days=0``
   because the default (365) leaves only the last 8 quarters of three years of data; the first quarter then has
   no history to fit the models on and has the methods without a model only. With its default ``n_jobs``: the
   Monte Carlo draws of the cutoffs run in one thread per core beside the main thread (the results do not depend
   on it). The JSON gives the quarters each method forecast;
7. ``partitions``: the data split into 4 partitions by a hash of ``opportunity_id`` (opportunities and their stage
   history; leads, submissions and quotas are left whole in each, which the checked computations do not read):
   `pipeline_snapshots` on each partition, put together, must equal the whole (the rows of step 2, exactly); the
   ``crm_weighted`` backtest on each partition (same periods and cutoffs), summed over the partitions, must equal the
   whole's (the crm_weighted rows of step 6) for every period, cutoff, group and group value, forecast and actual
   (to 1e-9 relative: sums in another order). That is the claim: snapshot reconstruction and the backtest's
   aggregation need no cross-opportunity state. The time is the 4 partitions one after the other (split,
   snapshots, crm_weighted backtest); the JSON also gives the largest one, the wall time with 4 workers. The learned
   methods (``stage_conversion``, ``monte_carlo``) need sums over every partition before each step (the model's fit,
   the horizon calibration, the shock): `salesforecast.scale` runs them over partitions, measured by
   ``benchmarks/dask_scale.py`` (``make bench-dask``).

Writes ``<out>/scale-<date>.json`` (machine, versions, per size and step: seconds and peak RSS; the ratios) and the
table between the ``scale`` markers of ``benchmarks/README.md``, and prints it. Exit status 1 when a step failed or a
reference disagreed with ours.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import update_readme

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRATCH = HERE / ".scratch"
RESULTS = HERE / "results"
MARKER = "scale"
RESULT_PREFIX = "@@scale-result "

START = "2023-01-01"  # generate()'s default start: three years of data, to 2026-01-01
N_DATES = 156
N_PARTITIONS = 4
GROUPS = ("total", "team", "owner")
BACKTEST_PERIODS = 12

STEPS: dict[str, str] = {
    "load": "1. load + validate: `read_canonical` (Parquet)",
    "snapshots": f"2. `pipeline_snapshots`, {N_DATES} weekly dates",
    "snapshots_compact": f"2b. the same, text columns dictionary-encoded (`strings='category'`), {N_DATES} dates",
    "duckdb": "3. reference A: DuckDB SQL from the Parquet files",
    "pandas_loop": "4. reference B: pandas loop over the dates",
    "fit": "5. `StageConversionModel(n_bootstrap=0).fit`",
    "backtest": f"6. backtest, every default method of 04, {BACKTEST_PERIODS} quarters",
    "partitions": f"7. {N_PARTITIONS} partitions: snapshots + crm_weighted backtest",
}
#: Targets at 1M opportunities: seconds per step (when it has one), peak RSS for every step, scaling 1M / 100k.
TARGET_SIZE = 1_000_000
TARGET_SECONDS = {"load": 20.0, "fit": 10.0, "backtest": 60.0}
TARGET_RSS_GB = 6.0
TARGET_SNAPSHOT_VS_DUCKDB = 1.0
TARGET_SCALING = 1.2  # time ratio between two sizes <= 1.2 x the size ratio (12 for 1M / 100k)


# ------------------------------------------------------------------------------------------------ helpers
def weekly_dates() -> pd.DatetimeIndex:
    """The snapshot dates: every 7 days from the data's start, 156 of them (the last on 2025-12-21)."""
    return pd.date_range(START, periods=N_DATES, freq="7D")


def _status() -> dict[str, float]:
    """VmRSS and VmHWM of this process in GB (empty where /proc is missing)."""
    out = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line[:5]] = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return out


def _reset_peak() -> bool:
    """Reset the kernel's peak RSS of this process (Linux >= 4.0); False when it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_gb() -> float:
    status = _status()
    if "VmHWM" in status:
        return status["VmHWM"]
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**3 if sys.platform == "darwin" else peak / 1024**2


class _Measure:
    """Wall time and peak RSS of a block, with the memory already resident before it."""

    def __enter__(self) -> _Measure:
        gc.collect()
        self.data_rss_gb = _status().get("VmRSS", float("nan"))
        self.peak_reset = _reset_peak()
        self.cpu0 = os.times()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        cpu = os.times()
        self.user_seconds = cpu.user - self.cpu0.user  # CPU time of this process (all its threads)
        self.sys_seconds = cpu.system - self.cpu0.system  # kernel time: mostly supplying fresh memory
        self.peak_rss_gb = _peak_gb()

    def figures(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 2),
            "peak_rss_gb": round(self.peak_rss_gb, 2),
            "rss_before_gb": round(self.data_rss_gb, 2),
            "peak_is_step_only": self.peak_reset,
            "user_seconds": round(self.user_seconds, 2),
            "sys_seconds": round(self.sys_seconds, 2),
        }


REPEAT = 1  # runs of each measured call (the child's --repeat): the fastest is kept, the highest peak


def _timed(fn: Any) -> tuple[Any, dict[str, Any]]:
    """Call `fn` `REPEAT` times, each measured; its last result and the figures (fastest time, highest peak)."""
    runs = []
    result = None
    for _ in range(REPEAT):
        result = None  # let the previous result go before the next run
        with _Measure() as m:
            result = fn()
        runs.append(m.figures())
    figures = min(runs, key=lambda r: r["seconds"])
    figures = {**figures, "peak_rss_gb": max(r["peak_rss_gb"] for r in runs)}
    if REPEAT > 1:
        figures["runs_seconds"] = [r["seconds"] for r in runs]
    return result, figures


def _generator_key() -> str:
    source = (REPO / "salesforecast" / "datasets" / "_generate.py").read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]


def data_folder(n: int, seed: int) -> Path:
    return SCRATCH / f"generated-n{n}-seed{seed}"


def _load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def _open_stages(folder: Path) -> list[str]:
    from salesforecast.process import SalesProcess

    process = SalesProcess.resolve(folder / "process.yml" if (folder / "process.yml").exists() else None)
    return list(process.open_stages)


def partition(data: Any, part: int, n: int = N_PARTITIONS) -> Any:
    """The opportunities of partition `part` and their stage history (the other tables whole)."""
    from salesforecast.scale import partition_of

    opps = data.opportunities
    hist = data.stage_history
    keep = partition_of(opps["opportunity_id"], n) == part
    keep_hist = partition_of(hist["opportunity_id"], n) == part
    return replace(
        data,
        opportunities=opps.loc[keep].reset_index(drop=True),
        stage_history=hist.loc[keep_hist].reset_index(drop=True),
    )


# ------------------------------------------------------------------------------------------------ the steps
def step_generate(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    from salesforecast.datasets import generate

    with _Measure() as m:
        data, _ = generate(n, seed=seed)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        data.to_folder(tmp, fmt="parquet")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    info = {"n": n, "seed": seed, "generator": _generator_key(), "rows": {k: len(v) for k, v in data.tables.items()}}
    (folder / "READY.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {**m.figures(), "rows": info["rows"]}


def step_load(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    from salesforecast.schema import read_canonical

    data, figures = _timed(lambda: read_canonical(folder))
    out = {**figures, "rows": {k: len(v) for k, v in data.tables.items()}, "quarantined": len(data.quarantine)}
    with open(work / "data.pkl", "wb") as f:  # the validated data, for the next steps (not timed)
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    return out


def step_snapshots(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    from salesforecast.snapshots import pipeline_snapshots

    data = _load_pickle(work / "data.pkl")
    dates = weekly_dates()
    snap, figures = _timed(lambda: pipeline_snapshots(data, dates))
    snap.to_parquet(work / "ours.parquet", index=False)  # for the references' equality checks (not timed)
    return {**figures, "rows": len(snap), "dates": len(dates)}


def step_snapshots_compact(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    from salesforecast.snapshots import pipeline_snapshots

    data = _load_pickle(work / "data.pkl")
    dates = weekly_dates()
    snap, figures = _timed(lambda: pipeline_snapshots(data, dates, strings="category"))
    return {**figures, "rows": len(snap), "dates": len(dates)}


def _check(ours_path: Path, other: pd.DataFrame) -> dict[str, Any]:
    from _scale_reference import KEY_COLUMNS, compare_rows

    ours = pd.read_parquet(ours_path)
    shared = [c for c in ours.columns if c in other.columns]
    return {
        "key_columns": list(KEY_COLUMNS),
        "key": compare_rows(ours, other, KEY_COLUMNS),
        "all_columns": shared,
        "all": compare_rows(ours, other, shared),
        "same_order": bool(
            len(ours) == len(other)
            and ours[["as_of", "opportunity_id"]].equals(other[["as_of", "opportunity_id"]].reset_index(drop=True))
        ),
    }


def step_duckdb(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    import duckdb
    from _scale_reference import duckdb_snapshots

    open_stages = _open_stages(folder)
    dates = weekly_dates()
    con = duckdb.connect()
    threads = con.sql("select current_setting('threads')").fetchall()[0][0]
    snap, figures = _timed(lambda: duckdb_snapshots(folder, dates, open_stages, con=con))
    out = {**figures, "rows": len(snap), "threads": int(threads)}
    out["check"] = _check(work / "ours.parquet", snap)
    return out


def step_pandas_loop(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    from _scale_reference import pandas_loop_snapshots

    data = _load_pickle(work / "data.pkl")
    dates = weekly_dates()
    open_stages = list(data.process.open_stages)
    snap, figures = _timed(lambda: pandas_loop_snapshots(data.stage_history, data.opportunities, dates, open_stages))
    out = {**figures, "rows": len(snap)}
    out["check"] = _check(work / "ours.parquet", snap)
    return out


def step_fit(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    from salesforecast.models.stage_conversion import StageConversionModel

    data = _load_pickle(work / "data.pkl")
    return _timed(lambda: StageConversionModel(n_bootstrap=0).fit(data))[1]


def backtest_methods() -> list[str]:
    """The methods of step 6: those `backtest` (and so ``04_forecast_accuracy``) runs by default."""
    from salesforecast.forecast import METHODS

    return [name for name, m in METHODS.items() if m.default]


def step_backtest(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    from salesforecast.forecast import backtest

    data = _load_pickle(work / "data.pkl")
    methods = backtest_methods()
    res, figures = _timed(
        lambda: backtest(data, methods=methods, periods=BACKTEST_PERIODS, groups=GROUPS, min_history_days=0)
    )
    # the whole's crm_weighted forecasts, for the partitions step (not timed)
    res.loc[res["method"] == "crm_weighted"].to_parquet(work / "crm_weighted.parquet", index=False)
    have = res.dropna(subset=["forecast"])
    return {
        **figures,
        "methods": methods,
        "periods": sorted(res["period"].unique().tolist()),
        "cutoffs": int(res["cutoff"].nunique()),
        "rows": len(res),
        "periods_with_forecast": {m_: int(have.loc[have["method"] == m_, "period"].nunique()) for m_ in methods},
    }


def _crm_backtest(data: Any, periods: Any) -> pd.DataFrame:
    from salesforecast.forecast import backtest

    return backtest(data, methods=["crm_weighted"], periods=periods, groups=GROUPS, min_history_days=0)


def step_partitions(n: int, seed: int, folder: Path, work: Path) -> dict[str, Any]:
    from _scale_reference import compare_rows

    from salesforecast.scale import partition_of
    from salesforecast.snapshots import pipeline_snapshots

    data = _load_pickle(work / "data.pkl")
    dates = weekly_dates()
    # the whole's crm_weighted rows: those of step 6 (computed here, before the measure, when it did not run)
    crm_path = work / "crm_weighted.parquet"
    whole_bt = pd.read_parquet(crm_path) if crm_path.exists() else _crm_backtest(data, BACKTEST_PERIODS)
    periods = sorted(whole_bt["period"].unique())
    key = ["period", "cutoff", "group", "group_value"]

    parts, snaps, bts = [], [], []
    with _Measure() as m:
        for i in range(N_PARTITIONS):
            t0 = time.perf_counter()
            part = partition(data, i)
            split_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            snaps.append(pipeline_snapshots(part, dates))
            snap_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            bts.append(_crm_backtest(part, periods)[[*key, "forecast", "actual"]])
            bt_s = time.perf_counter() - t0
            parts.append(
                {
                    "opportunities": len(part.opportunities),
                    "split_seconds": round(split_s, 2),
                    "snapshots_seconds": round(snap_s, 2),
                    "backtest_seconds": round(bt_s, 2),
                    "snapshot_rows": len(snaps[-1]),
                }
            )
            del part
    seconds = m.seconds
    del data
    # the snapshots: each partition's rows must be exactly the whole's rows (step 2) of its opportunities; the
    # partitions are disjoint and cover every opportunity, so together they are the whole
    whole_snap = pd.read_parquet(work / "ours.parquet")
    whole_part = partition_of(whole_snap["opportunity_id"], N_PARTITIONS)
    for i, snap in enumerate(snaps):
        expected = whole_snap.loc[whole_part == i].reset_index(drop=True)
        equal = bool(expected.equals(snap))
        parts[i]["snapshots_identical"] = equal
        parts[i]["snapshot_differences"] = None if equal else compare_rows(expected, snap, list(expected.columns))
    snaps.clear()
    summed = pd.concat(bts, ignore_index=True).groupby(key, sort=False)[["forecast", "actual"]].sum()
    whole = whole_bt.set_index(key)[["forecast", "actual"]]
    extra = summed.index.difference(whole.index)  # group values the parts show and the whole does not
    aligned = summed.reindex(whole.index, fill_value=0.0)
    worst: dict[str, Any] = {}
    bad = 0
    for col in ("forecast", "actual"):
        a, b = whole[col].to_numpy(), aligned[col].to_numpy()
        close = np.isclose(b, a, rtol=1e-9, atol=1e-6)
        bad += int((~close).sum())
        worst[col] = {
            "max_abs_diff": float(np.max(np.abs(b - a))) if len(a) else 0.0,
            "max_rel_diff": float(np.max(np.abs(b - a) / np.maximum(np.abs(a), 1.0))) if len(a) else 0.0,
        }
    return {
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(m.peak_rss_gb, 2),
        "rss_before_gb": round(m.data_rss_gb, 2),
        "peak_is_step_only": m.peak_reset,
        "user_seconds": round(m.user_seconds, 2),
        "sys_seconds": round(m.sys_seconds, 2),
        "note": "seconds: the 4 partitions one after the other (split, snapshots, crm_weighted backtest), their "
        "results held together; the equality checks come after the measure",
        "largest_partition_seconds": round(
            max(p["split_seconds"] + p["snapshots_seconds"] + p["backtest_seconds"] for p in parts), 2
        ),
        "whole": "the rows of step 2 (snapshots) and the crm_weighted rows of step 6 (backtest)"
        if crm_path.exists()
        else "the rows of step 2 (snapshots) and a crm_weighted backtest of the whole",
        "partitions": parts,
        "snapshots_equal": all(p["snapshots_identical"] for p in parts)
        and sum(p["snapshot_rows"] for p in parts) == len(whole_snap),
        "snapshot_rows": len(whole_snap),
        "crm_weighted_rows": len(whole),
        "crm_weighted_mismatches": bad + len(extra),
        "crm_weighted_equal": bad == 0 and len(extra) == 0,
        "crm_weighted_differences": worst,
        "crm_weighted_periods": periods,
    }


STEP_FUNCTIONS = {
    "generate": step_generate,
    "load": step_load,
    "snapshots": step_snapshots,
    "snapshots_compact": step_snapshots_compact,
    "duckdb": step_duckdb,
    "pandas_loop": step_pandas_loop,
    "fit": step_fit,
    "backtest": step_backtest,
    "partitions": step_partitions,
}


def child(step: str, n: int, seed: int, folder: Path, work: Path, repeat: int = 1) -> None:
    """Run one step in this process and print its figures on the last line of stdout."""
    global REPEAT
    REPEAT = max(1, repeat)
    figures = STEP_FUNCTIONS[step](n, seed, folder, work)
    print(RESULT_PREFIX + json.dumps(figures), flush=True)


# ------------------------------------------------------------------------------------------------ the parent
def run_step(step: str, n: int, seed: int, folder: Path, work: Path, repeat: int = 1) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", step, "--size", str(n), "--seed", str(seed)]
    cmd += ["--folder", str(folder), "--work", str(work), "--repeat", str(repeat)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        reason = f"exit status {proc.returncode}" + (" (killed: out of memory?)" if proc.returncode < 0 else "")
        print(proc.stdout, end="")
        return {"error": reason, "process_seconds": round(wall, 1)}
    figures = json.loads(lines[-1][len(RESULT_PREFIX) :])
    figures["process_seconds"] = round(wall, 1)  # with the interpreter's start, imports and loading the data
    return figures


def ensure_data(n: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The Parquet canonical folder of `generate(n, seed)`: reused when present and from the same generator."""
    folder = data_folder(n, seed)
    ready = folder / "READY.json"
    if ready.exists():
        info = json.loads(ready.read_text(encoding="utf-8"))
        if info.get("generator") == _generator_key():
            return folder, {"reused": True, "rows": info["rows"]}
    figures = run_step("generate", n, seed, folder, SCRATCH)
    if "error" in figures:
        raise SystemExit(f"generate({n}, seed={seed}) failed: {figures['error']}")
    return folder, {"reused": False, **figures}


def run_size(n: int, seed: int, steps: list[str], repeat: int = 1) -> dict[str, Any]:
    folder, gen = ensure_data(n, seed)
    work = SCRATCH / f"run-{os.getpid()}-n{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    needed = set(steps)
    if needed & {"duckdb", "pandas_loop", "partitions"}:
        needed.add("snapshots")  # the references and the partitions are checked against its rows
    needed.add("load")  # the other steps read the data it validated
    out: dict[str, Any] = {"data": gen, "steps": {}}
    try:
        for step in STEPS:
            if step not in needed:
                continue
            print(f"[{n:,}] {step} ...", flush=True)
            figures = run_step(step, n, seed, folder, work, repeat if step != "partitions" else 1)
            out["steps"][step] = figures
            if "error" in figures:
                print(f"[{n:,}] {step}: FAILED ({figures['error']})", flush=True)
                if step in ("load", "snapshots"):
                    break  # the later steps need their output
            else:
                print(f"[{n:,}] {step}: {figures['seconds']:.2f} s, peak {figures['peak_rss_gb']:.2f} GB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps_ = out["steps"]
    ours = steps_.get("snapshots", {}).get("seconds")
    ratios = {}
    for ref, name in (("duckdb", "snapshots_vs_duckdb"), ("pandas_loop", "snapshots_vs_pandas_loop")):
        if ours is not None and steps_.get(ref, {}).get("seconds"):
            ratios[name] = round(ours / steps_[ref]["seconds"], 3)
    out["ratios"] = ratios
    return out


def scaling(sizes: dict[str, Any]) -> dict[str, Any]:
    """Time ratios between each size and the next smaller one, per step."""
    ns = sorted(int(k) for k in sizes)
    out = {}
    for small, big in zip(ns, ns[1:], strict=False):
        per_step, per_step_user = {}, {}
        for step in STEPS:
            a = sizes[str(small)]["steps"].get(step, {}).get("seconds")
            b = sizes[str(big)]["steps"].get(step, {}).get("seconds")
            if a and b:
                per_step[step] = round(b / a, 2)
            ua = sizes[str(small)]["steps"].get(step, {}).get("user_seconds")
            ub = sizes[str(big)]["steps"].get(step, {}).get("user_seconds")
            if ua and ub:
                per_step_user[step] = round(ub / ua, 2)
        out[f"{big}/{small}"] = {
            "size_ratio": big / small,
            "target": TARGET_SCALING * big / small,
            "steps": per_step,
            "user_cpu": per_step_user,
        }
    return out


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    import duckdb
    import pyarrow

    versions = {
        "python": platform.python_version(),
        "salesforecast": version("salesforecast"),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
    }
    try:
        import sklearn

        versions["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    return {
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(mem, 1),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        },
        "versions": versions,
    }


# ------------------------------------------------------------------------------------------------ the table
def _fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s" if x < 100 else f"{x:.0f} s"


def _cell(fig: dict[str, Any] | None) -> str:
    if not fig:
        return "not run"
    if "error" in fig:
        return f"FAILED ({fig['error']})"
    return f"{_fmt_s(fig['seconds'])}, {fig['peak_rss_gb']:.2f} GB"


def _yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def markdown(result: dict[str, Any]) -> str:
    sizes = result["sizes"]
    ns = sorted(int(k) for k in sizes)
    at = sizes.get(str(TARGET_SIZE))
    scal = result.get("scaling", {})
    pair = f"{TARGET_SIZE}/{TARGET_SIZE // 10}"
    scal_pair = scal.get(pair)
    head = "| figure | target (at 1M) | " + " | ".join(f"{n:,} opportunities" for n in ns)
    head += " | time 1M / 100k (target <= 12; user CPU) | met |"
    lines = [
        f"Run {result['date']} on {result['machine']['cores']} cores, {result['machine']['memory_gb']:g} GB "
        f"({result['machine']['platform']}), shared with other jobs; Python {result['versions']['python']}, pandas "
        f"{result['versions']['pandas']}, DuckDB {result['versions']['duckdb']} ({result['duckdb_threads']} threads)."
        f" `generate(n, seed={result['seed']})`; each step in a fresh process: wall time, peak RSS (with the data in "
        f"memory). Full figures: `results/{result['file']}`.",
        "",
        head,
        "|" + "---|" * (4 + len(ns)),
    ]
    for step, label in STEPS.items():
        targets = []
        if step in TARGET_SECONDS:
            targets.append(f"<= {TARGET_SECONDS[step]:g} s")
        targets.append(f"<= {TARGET_RSS_GB:g} GB")
        cells = [_cell(sizes[str(n)]["steps"].get(step)) for n in ns]
        ratio = scal_pair["steps"].get(step) if scal_pair else None
        user_ratio = scal_pair.get("user_cpu", {}).get(step) if scal_pair else None
        met = None
        if at and step in at["steps"] and "error" not in at["steps"][step]:
            fig = at["steps"][step]
            met = fig["peak_rss_gb"] <= TARGET_RSS_GB and fig["seconds"] <= TARGET_SECONDS.get(step, float("inf"))
            if ratio is not None:
                met = met and ratio <= TARGET_SCALING * 10
        elif at and step in at["steps"]:
            met = False
        lines.append(
            f"| {label} | {', '.join(targets)} | {' | '.join(cells)} | "
            f"{'-' if ratio is None else f'{ratio:.1f}'}"
            f"{'' if user_ratio is None else f' (user CPU {user_ratio:.1f})'} | {_yes(met)} |"
        )

    def ratio_row(name: str, label: str, target: str, limit: float | None) -> str:
        vals = [sizes[str(n)]["ratios"].get(name) for n in ns]
        cells = ["-" if v is None else f"{v:.2f}" for v in vals]
        v_at = at["ratios"].get(name) if at else None
        met = None if (limit is None or v_at is None) else v_at <= limit
        return f"| {label} | {target} | {' | '.join(cells)} | | {_yes(met) if limit is not None else ''} |"

    lines.append(
        ratio_row("snapshots_vs_duckdb", "snapshots: time ours / DuckDB", f"<= {TARGET_SNAPSHOT_VS_DUCKDB:g}", 1.0)
    )
    lines.append(ratio_row("snapshots_vs_pandas_loop", "snapshots: time ours / pandas loop", "(none)", None))

    def equal_row(ref: str, label: str) -> str:
        cells, oks = [], []
        for n in ns:
            fig = sizes[str(n)]["steps"].get(ref)
            if not fig or "error" in fig:
                cells.append("-")
                continue
            key, every = fig["check"]["key"], fig["check"]["all"]
            oks.append(key["mismatches"] == 0 and key["duplicates"] == 0)
            cells.append(
                f"{key['mismatches']} of {key['rows']:,} rows (all {len(fig['check']['all_columns'])} shared "
                f"columns: {every['mismatches']})"
            )
        met = all(oks) if oks else None
        return f"| {label} | 0 | {' | '.join(cells)} | | {_yes(met)} |"

    lines.append(equal_row("duckdb", "rows differing from ours: DuckDB (as_of, opportunity_id, stage, amount)"))
    lines.append(equal_row("pandas_loop", "rows differing from ours: pandas loop (same columns)"))
    cells, oks = [], []
    for n in ns:
        fig = sizes[str(n)]["steps"].get("partitions")
        if not fig or "error" in fig:
            cells.append("-")
            continue
        oks.append(fig["snapshots_equal"] and fig["crm_weighted_equal"])
        cells.append(
            f"snapshots {'equal' if fig['snapshots_equal'] else 'DIFFER'} ({fig['snapshot_rows']:,} rows); "
            f"crm_weighted {'equal' if fig['crm_weighted_equal'] else 'DIFFERS'} ({fig['crm_weighted_rows']:,} rows,"
            f" max rel. diff {fig['crm_weighted_differences']['forecast']['max_rel_diff']:.0e})"
        )
    lines.append(
        f"| {N_PARTITIONS} partitions put together vs the whole | equal | {' | '.join(cells)} | | "
        f"{_yes(all(oks) if oks else None)} |"
    )
    worst = None
    if at:
        peaks = [f["peak_rss_gb"] for f in at["steps"].values() if "peak_rss_gb" in f]
        worst = max(peaks) if peaks else None
    peak_cells = []
    for n in ns:
        peaks = [f["peak_rss_gb"] for f in sizes[str(n)]["steps"].values() if "peak_rss_gb" in f]
        peak_cells.append(f"{max(peaks):.2f} GB" if peaks else "-")
    lines.append(
        f"| peak RSS, largest step | <= {TARGET_RSS_GB:g} GB | {' | '.join(peak_cells)} | | "
        f"{_yes(None if worst is None else worst <= TARGET_RSS_GB)} |"
    )
    if scal_pair is None:
        lines.append("")
        lines.append("The 1M column and the 1M / 100k ratios appear when both sizes run in one call (the default).")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(STEPS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each measured call N times, keep the fastest (default 1)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results JSON")
    parser.add_argument("--no-save", action="store_true", help="print only: no JSON, no README table")
    parser.add_argument("--child", choices=list(STEP_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, args.seed, args.folder, args.work, args.repeat)
        return 0

    SCRATCH.mkdir(parents=True, exist_ok=True)
    (SCRATCH / ".gitignore").write_text("*\n", encoding="utf-8")  # scratch data never goes into git
    import duckdb

    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        **machine(),
        "duckdb_threads": int(duckdb.connect().sql("select current_setting('threads')").fetchall()[0][0]),
        "seed": args.seed,
        "settings": {
            "repeat": args.repeat,
            "snapshot_dates": f"{N_DATES} dates every 7 days from {START} (midnight)",
            "backtest": {
                "methods": backtest_methods(),
                "periods": BACKTEST_PERIODS,
                "groups": list(GROUPS),
                "min_history_days": 0,
            },
            "partitions": N_PARTITIONS,
            "peak_rss": "VmHWM of the step's process, reset after the data are loaded (so: the data plus the step)",
            "targets_at": TARGET_SIZE,
        },
        "sizes": {},
    }
    for n in sorted(set(args.sizes)):
        result["sizes"][str(n)] = run_size(n, args.seed, args.steps, args.repeat)
    result["scaling"] = scaling(result["sizes"])
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    name = f"scale-{result['date']}.json"
    result["file"] = name
    table = markdown(result)
    print()
    print(table)
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / name).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        update_readme(table, MARKER)
        print(f"wrote {args.out / name} and the '{MARKER}' table of benchmarks/README.md")
    failed = any("error" in f for s in result["sizes"].values() for f in s["steps"].values())
    differs = any(
        f.get("check", {}).get("key", {}).get("mismatches", 0)
        or f.get("snapshots_equal") is False
        or f.get("crm_weighted_equal") is False
        for s in result["sizes"].values()
        for f in s["steps"].values()
    )
    return 1 if failed or differs else 0


if __name__ == "__main__":
    sys.exit(main())
