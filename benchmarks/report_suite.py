"""Wall time of the whole report suite on the sample (what `make reports` runs), against its one-minute target.

Runs `salesforecast.reports.run_reports` on the default configuration into a temporary folder with as many jobs as
cores, twice (the first run also warms the file cache and the kernel's imports), and keeps the faster. Writes
``benchmarks/results/report_suite.json`` and the table in ``benchmarks/README.md``.

    .venv/bin/python benchmarks/report_suite.py
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import update_readme

from salesforecast.reports import DEFAULT_CONFIG, run_reports

TARGET_SECONDS = 60.0
RESULTS = Path(__file__).resolve().parent / "results" / "report_suite.json"


def main() -> None:
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
            {"wall_seconds": round(wall, 1), "reports": {r.spec.name: round(r.seconds, 1) for r in result.results}}
        )
    best = min(runs, key=lambda r: r["wall_seconds"])
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {"cores": jobs, "platform": platform.platform(), "python": platform.python_version()},
        "jobs": jobs,
        "target_seconds": TARGET_SECONDS,
        "wall_seconds": best["wall_seconds"],
        "runs": [r["wall_seconds"] for r in runs],
        "reports": best["reports"],
        "met": best["wall_seconds"] <= TARGET_SECONDS,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    rows = "\n".join(f"| `{name}` | {sec:.1f} s |" for name, sec in best["reports"].items())
    table = (
        f"Measured {figures['date']} on {jobs} cores ({figures['machine']['platform']}), `make reports` with "
        f"{jobs} jobs: **{best['wall_seconds']:.1f} s** wall for {len(best['reports'])} reports and the index "
        f"(target {TARGET_SECONDS:.0f} s: {'met' if figures['met'] else 'MISSED'}; runs: "
        f"{', '.join(f'{r:.1f}' for r in figures['runs'])} s).\n\n| report | its own time |\n|---|---|\n{rows}"
    )
    update_readme(table, "report-suite")
    print(table)


if __name__ == "__main__":
    main()
