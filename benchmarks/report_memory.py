"""Memory of each report, cell by cell: the resident set after each code cell and the peak within it.

Runs a notebook's code cells in order, as its kernel would (an IPython shell, the parameters cell with
``source`` and any ``-p name=value`` set after it), in a fresh process per report, and prints for each cell its
wall time, the resident set after it (``VmRSS``) and its peak (``VmHWM``, reset before each cell through
``/proc/self/clear_refs``), then the report's peak; after the loading cell it lists what each table of the loaded
data holds in memory. On a large CRM run it under the machine's lock:

    flock /work/heavy.lock .venv/bin/python benchmarks/report_memory.py -p source=/work/data/crm1m
    .venv/bin/python benchmarks/report_memory.py --only 05_pipeline_review -p source=/work/data/crm100k

Linux only (it reads ``/proc/self/status``). With ``--json FILE`` the figures are written there as well.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("01_data_quality", "02_stage_conversion", "04_forecast_accuracy", "05_pipeline_review")
GB = 1024**3


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _table_memory(data: object) -> list[tuple[str, int, float]]:
    """Each table of a CRMData: rows and deep memory in GB."""
    out = []
    for name in ("opportunities", "stage_history", "leads", "activities", "forecast_submissions", "quotas"):
        df = getattr(data, name, None)
        if df is not None and len(df):
            out.append((name, len(df), float(df.memory_usage(deep=True).sum()) / GB))
    q = getattr(data, "quarantine", None)
    if q is not None and len(q):
        out.append(("quarantine", len(q), float(q.memory_usage(deep=True).sum()) / GB))
    return out


def _leave_out(methods: list[str]) -> None:
    """Leave `methods` out of the backtest's default methods (e.g. to measure the rest of 04 apart)."""
    from salesforecast import forecast

    check = forecast._check_methods

    def chosen(asked: object, truth: object) -> list:
        return [m for m in check(asked, truth) if asked is not None or m.name not in methods]

    forecast._check_methods = chosen


def run_one(notebook: str, params: dict[str, str], leave_out: list[str]) -> dict[str, object]:
    """Run one notebook's code cells in this process and return its figures (printed as it goes)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    if leave_out:
        _leave_out(leave_out)
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell

    nb = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4)
    shell = InteractiveShell.instance()
    shell.display_formatter.active_types = ["text/plain"]  # as cheap as possible: no HTML rendering measured
    cells = []
    can_reset = _reset_peak()
    start_rss = _status("VmRSS")
    print(f"== {notebook}: start {start_rss / GB:.2f} GB", flush=True)
    overall = 0
    listed = False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = cell.source
        if "parameters" in cell.metadata.get("tags", []):
            source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
        _reset_peak()
        t = time.perf_counter()
        devnull = open(os.devnull, "w")  # noqa: SIM115 - the cell's output is not measured
        saved = sys.stdout
        sys.stdout = devnull
        try:
            result = shell.run_cell(source, silent=False, store_history=False)
        finally:
            sys.stdout = saved
            devnull.close()
        wall = time.perf_counter() - t
        rss, peak = _status("VmRSS"), _status("VmHWM")
        overall = max(overall, peak)
        first = source.strip().splitlines()[-1][:70] if source.strip() else ""
        print(f"  [{i:2d}] {wall:7.1f} s  rss {rss / GB:5.2f} GB  peak {peak / GB:5.2f} GB  {first}", flush=True)
        cells.append(
            {"cell": i, "seconds": round(wall, 2), "rss_gb": round(rss / GB, 3), "peak_gb": round(peak / GB, 3)}
        )
        if result.error_in_exec is not None or result.error_before_exec is not None:
            err = result.error_in_exec or result.error_before_exec
            print(f"  cell {i} failed: {type(err).__name__}: {err}", flush=True)
            break
        ns = shell.user_ns
        if "report" in ns and not listed:
            listed = True
            for name, n, gb in _table_memory(ns["report"].data):
                print(f"       {name:22s} {n:>11,} rows {gb:6.2f} GB", flush=True)
    if not can_reset:
        print("  (no /proc/self/clear_refs: each peak is the peak so far)")
    print(f"== {notebook}: peak {overall / GB:.2f} GB", flush=True)
    return {"notebook": notebook, "left_out": leave_out, "peak_gb": round(overall / GB, 3), "cells": cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(NOTEBOOKS), help="notebooks to run (default: 01 02 04 05)")
    parser.add_argument("-p", action="append", default=[], metavar="NAME=VALUE", help="a parameter of every report")
    parser.add_argument(
        "--leave-out", nargs="*", default=[], metavar="METHOD", help="forecast methods left out of the defaults"
    )
    parser.add_argument("--json", type=Path, help="write the figures there")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.p)
    if args.child:
        figures = run_one(args.child, params, args.leave_out)
        print("JSON " + json.dumps(figures), flush=True)
        return
    out = []
    for nb in args.only:
        cmd = [sys.executable, __file__, "--child", nb] + [a for p in args.p for a in ("-p", p)]
        cmd += ["--leave-out", *args.leave_out] if args.leave_out else []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("JSON "):
                    out.append(json.loads(line[5:]))
                else:
                    print(line, end="", flush=True)
    print("\n| report | peak |\n|---|---|")
    for f in out:
        print(f"| {f['notebook']} | {f['peak_gb']:.2f} GB |")
    if args.json:
        args.json.write_text(json.dumps({"params": params, "reports": out}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
