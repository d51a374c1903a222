"""The report suite as users run it: on the sample (its one-minute target) and on generated CRMs of 100k and 1M.

Run from the repository root::

    .venv/bin/python benchmarks/report_suite.py [--sizes 100000 1000000] [--data-dir DIR] [--skip-sample] [--no-save]

1. **The sample** (what ``make reports`` runs): `salesforecast.reports.run_reports` on the default configuration into a
   temporary folder with as many jobs as cores, twice (the first run also warms the file cache and the kernel's
   imports); the faster is kept, against its target of one minute.
2. **Each size of** ``--sizes``: the CRM of ``generate(n_opportunities=n, seed=5)`` written as Parquet by
   ``to_folder``, then ``salesforecast report --jobs 1 -p source=FOLDER`` in a subprocess, exactly as a new user
   would run it on the folder (the default ``reports.yml``: the reports whose ``when:`` holds off the sample; one
   report at a time). Per report: its wall time and its kernel's peak resident memory (``peak_rss`` of the run's
   ``manifest.json``: the kernel process's ``VmHWM``, read before its shutdown); the whole command's wall time; the
   time ratio between the two sizes per report. The CRM folder is ``DIR/crm100k`` (``crm1m``, ``crm<n>``) when
   ``--data-dir DIR`` holds it (shared folders are read, never regenerated), else the one ``benchmarks/scale.py``
   generates and keeps under the git-ignored ``benchmarks/.scratch/`` (reused while the generator is unchanged).

Targets at 1M opportunities on 2 cores (`TARGETS`): every report <= 5 minutes and <= 6 GB peak, the whole suite
<= 12 minutes, and every report's time at 1M <= 12 x its time at 100k.

Writes ``benchmarks/results/report_suite.json`` (the sample's figures at the top level, each size under ``sizes``,
the ratios and targets; a size not run this time keeps its earlier figures, with their date) and the table between
the ``report-suite`` markers of ``benchmarks/README.md``; ``benchmarks/summary.py`` reads it. ``--no-save`` prints
only. Timings taken while other processes run are noisy: the load average before and after each run is recorded.
A run of 1M opportunities takes tens of minutes and several GB: on a shared machine run it under its lock
(``flock /work/heavy.lock .venv/bin/python benchmarks/report_suite.py --sizes 100000 1000000``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import update_readme

from salesforecast.reports import DEFAULT_CONFIG, output_name, run_reports

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "report_suite.json"
MARKER = "report-suite"
TARGET_SECONDS = 60.0  # the sample's whole suite, as many jobs as cores
SEED = 5
SIZES_DEFAULT = (100_000, 1_000_000)
#: Targets of the suite on a generated CRM, at `TARGET_SIZE` opportunities, one report at a time on 2 cores.
TARGET_SIZE = 1_000_000
TARGETS = {
    "report_seconds": 300.0,  # every report
    "report_peak_gb": 6.0,  # every report's kernel, GB = 1024**3 bytes
    "suite_seconds": 720.0,  # the whole `salesforecast report` command
    "ratio": 12.0,  # every report's time at 1M / its time at 100k
}
GB = 1024**3


def size_label(n: int) -> str:
    """``100k``, ``1m``, else the number: the suffix of the shared CRM folders (``/work/data/crm100k``).

    Examples
    --------
    >>> size_label(100_000), size_label(1_000_000), size_label(12_345)
    ('100k', '1m', '12345')
    """
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def crm_folder(n: int, data_dir: Path | None) -> tuple[Path, str]:
    """The Parquet folder of ``generate(n_opportunities=n, seed=5)`` and where it came from."""
    if data_dir is not None:
        shared = data_dir / f"crm{size_label(n)}"
        if (shared / "opportunities.parquet").exists():
            return shared, "shared folder"
    from scale import ensure_data  # generates it once into benchmarks/.scratch (git-ignored), in a subprocess

    folder, info = ensure_data(n, SEED)
    return folder, "reused from benchmarks/.scratch" if info.get("reused") else "generated"


def machine() -> dict[str, Any]:
    """The cores, memory, platform and Python of this machine."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {
        "cores": os.cpu_count() or 1,
        "memory_gb": None if memory is None else round(memory / GB, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _command() -> list[str]:
    exe = Path(sys.executable).with_name("salesforecast")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "salesforecast.cli"]


def run_size(n: int, data_dir: Path | None) -> dict[str, Any]:
    """``salesforecast report --jobs 1 -p source=FOLDER`` on the CRM of `n` opportunities: its figures."""
    folder, origin = crm_folder(n, data_dir)
    print(f"\n== {n:,} opportunities: {folder} ({origin})", flush=True)
    with tempfile.TemporaryDirectory(prefix="report-suite-") as out:
        cmd = [*_command(), "report", "--config", str(DEFAULT_CONFIG), "--jobs", "1", "-p", f"source={folder}"]
        cmd += ["--out", out]
        load_before = _load()
        start = time.perf_counter()
        code = subprocess.run(cmd, cwd=REPO, check=False).returncode  # its lines (progress too) go to our stdout
        wall = time.perf_counter() - start
        load_after = _load()
        try:
            manifest = json.loads((Path(out) / "latest" / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
    reports = {
        # named as without -p source (the file names carry the folder's slug): the same report at every size
        output_name(e["notebook"], {k: v for k, v in e["parameters"].items() if k != "source"}, {}): {
            "status": e.get("status"),
            "seconds": e.get("seconds"),
            "peak_rss_gb": None if e.get("peak_rss") is None else round(e["peak_rss"] / GB, 2),
            **({"error": e["error"]} if e.get("error") else {}),
        }
        for e in manifest.values()
    }
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "n_opportunities": n,
        "seed": SEED,
        "source": str(folder),
        "jobs": 1,
        "machine": machine(),
        "command": "salesforecast report --jobs 1 -p source=FOLDER",
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "reports": reports,
    }


def run_sample() -> dict[str, Any]:
    """The default configuration on the sample, as many jobs as cores, twice: the faster run's figures."""
    jobs = os.cpu_count() or 1
    runs = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = run_reports(DEFAULT_CONFIG, Path(out), jobs=jobs)
            wall = time.perf_counter() - start
        if result.exit_code != 0:
            raise SystemExit(f"the report suite failed: {[r.error for r in result.failed]}")
        runs.append(
            {
                "wall_seconds": round(wall, 1),
                "reports": {r.spec.name: round(r.seconds, 1) for r in result.results},
                "peak_rss_gb": {
                    r.spec.name: None if r.peak_rss is None else round(r.peak_rss / GB, 2) for r in result.results
                },
            }
        )
    best = min(runs, key=lambda r: r["wall_seconds"])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "jobs": jobs,
        "target_seconds": TARGET_SECONDS,
        "wall_seconds": best["wall_seconds"],
        "runs": [r["wall_seconds"] for r in runs],
        "reports": best["reports"],
        "peak_rss_gb": best["peak_rss_gb"],
        "met": best["wall_seconds"] <= TARGET_SECONDS,
    }


def assess(sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ratios 1M / 100k per report and every target at `TARGET_SIZE`: value, target, met (None: not measured)."""
    big, small = sizes.get(str(TARGET_SIZE)), sizes.get(str(TARGET_SIZE // 10))
    ratios: dict[str, float | None] = {}
    if big and small:
        for name, fig in big["reports"].items():
            low = small["reports"].get(name, {})
            ok = fig.get("status") != "failed" and low.get("status") != "failed"
            a, b = low.get("seconds"), fig.get("seconds")
            ratios[name] = round(b / a, 2) if ok and a and b else None
    checks: list[dict[str, Any]] = []

    def check(what: str, value: float | None, target: float, report: str | None = None, failed: bool = False) -> None:
        met = False if failed else None if value is None else bool(value <= target)
        checks.append(
            {"figure": what, "report": report, "value": value, "target": target, "met": met, "failed": failed}
        )

    if big:
        for name, fig in big["reports"].items():
            failed = fig.get("status") == "failed"  # a report that failed misses its targets
            check("seconds", fig.get("seconds"), TARGETS["report_seconds"], name, failed)
            check("peak_rss_gb", fig.get("peak_rss_gb"), TARGETS["report_peak_gb"], name, failed)
            check("ratio", ratios.get(name), TARGETS["ratio"], name, failed)
        check("suite_seconds", big["wall_seconds"], TARGETS["suite_seconds"], failed=big["exit_code"] not in (0, 3))
    met = [c["met"] for c in checks]
    return {
        "ratios": ratios,
        "checks": checks,
        "met": None if not checks or None in met else all(met),
    }


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} GB"


def _sec(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def _on(size: dict[str, Any]) -> str:
    m = size.get("machine") or {}
    return f" on {m['cores']} cores, {m.get('memory_gb')} GB" if m else ""


def _missed(check: dict[str, Any]) -> str:
    who = check["report"] or "the suite"
    if check.get("failed") or check["value"] is None:
        return f"{who} failed"
    unit = {"seconds": " s", "suite_seconds": " s", "peak_rss_gb": " GB", "ratio": " (time 1M / 100k)"}
    return f"{who} {check['value']}{unit[check['figure']]}"


def table(figures: dict[str, Any]) -> str:
    """The README's table: the sample's suite, then each size per report, against the targets."""
    lines = []
    if "wall_seconds" in figures and "reports" in figures:
        rows = "\n".join(
            f"| `{name}` | {sec:.1f} s | {_gb((figures.get('peak_rss_gb') or {}).get(name))} |"
            for name, sec in figures["reports"].items()
        )
        jobs = figures["jobs"]
        lines += [
            f"**The sample**, measured {figures['date']} on {figures['machine']['cores']} cores "
            f"({figures['machine']['platform']}), `make reports` with {jobs} jobs: **{figures['wall_seconds']:.1f} s**"
            f" wall for {len(figures['reports'])} reports and the index (target {TARGET_SECONDS:.0f} s: "
            f"{'met' if figures['met'] else 'MISSED'}; runs: {', '.join(f'{r:.1f}' for r in figures['runs'])} s).",
            "",
            "| report | its own time | its kernel's peak RSS |",
            "|---|---|---|",
            rows,
        ]
    sizes = figures.get("sizes") or {}
    if sizes:
        order = sorted(sizes, key=int)
        ratios = (figures.get("assessment") or {}).get("ratios", {})
        names = list(dict.fromkeys(name for n in order for name in sizes[n]["reports"]))
        head = "| report | " + " | ".join(
            f"{size_label(int(n)).upper().replace('K', 'k')}: wall | peak RSS" for n in order
        )
        head += " | time 1M / 100k |" if ratios else " |"
        rule = "|---|" + "---|---|" * len(order) + ("---|" if ratios else "")
        body = []
        for name in names:
            cells = []
            for n in order:
                fig = sizes[n]["reports"].get(name, {})
                status = "" if fig.get("status") in ("ok", None) else f" ({fig.get('status')})"
                cells += [_sec(fig.get("seconds")) + status, _gb(fig.get("peak_rss_gb"))]
            if ratios:
                cells.append("-" if ratios.get(name) is None else f"{ratios[name]:.1f}")
            body.append(f"| `{name}` | " + " | ".join(cells) + " |")
        suite = []
        for n in order:
            peaks = [f["peak_rss_gb"] for f in sizes[n]["reports"].values() if f.get("peak_rss_gb") is not None]
            suite += [f"**{_sec(sizes[n]['wall_seconds'])}**", _gb(max(peaks) if peaks else None) + " (largest)"]
        if ratios:
            a, b = (sizes.get(str(TARGET_SIZE // 10)) or {}), (sizes.get(str(TARGET_SIZE)) or {})
            suite.append(f"{b['wall_seconds'] / a['wall_seconds']:.1f}" if a and b else "-")
        body.append("| the whole suite | " + " | ".join(suite) + " |")
        runs = "; ".join(
            f"{int(n):,} on {sizes[n]['date']}{_on(sizes[n])} (exit status {sizes[n]['exit_code']}, load average "
            f"{sizes[n]['load_average_before']} before, {sizes[n]['load_average_after']} after)"
            for n in order
        )
        t = TARGETS
        assessment = figures.get("assessment") or {}
        missed = [c for c in assessment.get("checks", []) if c["met"] is False]
        verdict = {True: "all met", False: "", None: "not all measured"}[assessment.get("met")]
        if missed:
            verdict = "missed: " + ", ".join(dict.fromkeys(_missed(c) for c in missed))
        lines += [
            "",
            "**Generated CRMs** (`generate(n_opportunities=n, seed=5)` as Parquet), `salesforecast report --jobs 1 -p "
            "source=FOLDER` as a user runs it: one report at a time; wall time of each report (execution and "
            "rendering) and its kernel's peak resident memory (`VmHWM`, GB = 1024^3 bytes); the whole suite is the "
            f"command's wall time. Targets at 1M on 2 cores: every report <= {t['report_seconds']:.0f} s and <= "
            f"{t['report_peak_gb']:.0f} GB, the suite <= {t['suite_seconds']:.0f} s, time 1M / 100k <= "
            f"{t['ratio']:.0f} per report: **{verdict}**. Runs: {runs}. Timings taken while other processes ran "
            "(load average above 2 on 2 cores) are noisy.",
            "",
            head,
            rule,
            *body,
        ]
    return "\n".join(lines)


def save(figures: dict[str, Any], no_save: bool) -> None:
    """Write the results file and the README's table (unless `no_save`)."""
    if no_save:
        return
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    update_readme(table(figures), MARKER)
    print(f"wrote {RESULTS.relative_to(REPO)} and the '{MARKER}' table of benchmarks/README.md", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[], help=f"generated CRM sizes (make bench: {SIZES_DEFAULT})"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="where crm100k, crm1m, ... are reused from (e.g. /work/data)"
    )
    parser.add_argument("--skip-sample", action="store_true", help="do not run the sample's suite")
    parser.add_argument("--no-save", action="store_true", help="print only: no results file, no README table")
    args = parser.parse_args()

    try:
        figures: dict[str, Any] = json.loads(RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        figures = {}
    if not args.skip_sample:
        figures.update(run_sample(), machine=machine())
        save(figures, args.no_save)
    sizes = dict(figures.get("sizes") or {})
    for n in args.sizes:  # saved after each size: a long 1M run does not hold back the 100k figures
        sizes[str(n)] = run_size(n, args.data_dir)
        if sizes[str(n)]["exit_code"] not in (0, 3):
            print(f"the suite at {n:,} exited with status {sizes[str(n)]['exit_code']}", file=sys.stderr)
        figures["sizes"] = sizes
        figures["targets"] = {"size": TARGET_SIZE, **TARGETS}
        figures["assessment"] = assess(sizes)
        save(figures, args.no_save)
    if sizes and not args.sizes:  # nothing run at a size: the earlier figures, assessed and tabled again
        figures["targets"] = {"size": TARGET_SIZE, **TARGETS}
        figures["assessment"] = assess(sizes)
        save(figures, args.no_save)
    print("\n" + table(figures))
    failed = [n for n in args.sizes if sizes[str(n)]["exit_code"] not in (0, 3)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
